//! Superblock placement on a device: reading every copy, choosing the newest valid one, and
//! writing all copies.
//!
//! Copies sit at the standard v1 places (byte 4096, right after it, and in the last 64 KiB of
//! the device) and wherever a valid copy's layout says. Reading validates every copy; the
//! filesystem is the one whose internal UUID the lowest valid copy (normally the primary)
//! carries, and valid copies with another UUID (left by an earlier filesystem) are reported as
//! invalid, never used. Of the rest the one with the highest `seq` wins; invalid or older
//! copies are reported (and logged as warnings), not fatal, as long as one valid copy exists.
//! A device shorter than the winning copy's `dev_size` is refused (a truncated image).
//!
//! Writing bumps `seq` and writes the primary, flushes, then writes the other copies and
//! flushes again (each copy padded to the block size). At every moment of a power cut at
//! least one copy is intact: the old backups while the primary is written, the new primary
//! while the backups are — so a reader always finds a valid superblock, old or new.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::dev::{BlockDevice, DevError};
use crate::format::FormatError;
use crate::format::probe::{PROBE_BYTES, Signature, TAIL_PROBE_BYTES, probe, probe_tail};
use crate::format::superblock::{
    SB_HEADER_BYTES, SB_PRIMARY_OFFSET, SEQ_LIMIT, SbLayout, Superblock,
};

/// Errors of the superblock layer.
#[derive(Debug, thiserror::Error)]
pub enum SbError {
    /// Device IO failed.
    #[error(transparent)]
    Dev(#[from] DevError),
    /// No copy is a valid sixfs superblock.
    #[error("{dev}: {}", no_valid_message(.copies, .found, *.size))]
    NoValid {
        /// Device name.
        dev: String,
        /// What each copy looked like.
        copies: Vec<CopyReport>,
        /// Other filesystems recognised on the device.
        found: Vec<String>,
        /// Device size in bytes.
        size: u64,
    },
    /// A superblock could not be encoded (it failed validation).
    #[error("{dev}: refusing to write an invalid superblock: {source}")]
    Encode {
        /// Device name.
        dev: String,
        /// Why.
        source: FormatError,
    },
    /// The device is shorter than the filesystem its superblock describes.
    #[error(
        "{dev}: device is {len} bytes but the superblock says the filesystem is {dev_size} bytes (truncated?)"
    )]
    Truncated {
        /// Device name.
        dev: String,
        /// Device length in bytes.
        len: u64,
        /// The size the newest valid superblock claims.
        dev_size: u64,
        /// Every copy looked at (as in [`SbRead::copies`]).
        copies: Vec<CopyReport>,
    },
}

fn no_valid_message(copies: &[CopyReport], found: &[String], size: u64) -> String {
    if let Some(f) = found.first() {
        return format!("not a sixfs filesystem: it contains {f}");
    }
    if size < SB_PRIMARY_OFFSET + SB_HEADER_BYTES as u64 {
        return format!("not a sixfs filesystem: {size} bytes is too small to hold a superblock");
    }
    let what: Vec<String> = copies
        .iter()
        .map(|c| format!("{} at byte {}: {}", c.role, c.offset, c.status))
        .collect();
    format!("no valid sixfs superblock ({})", what.join("; "))
}

/// The state of one superblock copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum CopyStatus {
    /// Valid and the newest.
    Valid {
        /// Its sequence number.
        seq: u64,
    },
    /// Valid but older than the newest copy.
    Stale {
        /// Its sequence number.
        seq: u64,
        /// The newest sequence number.
        newest: u64,
    },
    /// Not a valid superblock.
    Invalid {
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for CopyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyStatus::Valid { seq } => write!(f, "valid (seq {seq})"),
            CopyStatus::Stale { seq, newest } => write!(f, "stale (seq {seq}, newest is {newest})"),
            CopyStatus::Invalid { reason } => f.write_str(reason),
        }
    }
}

/// One copy's location and state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// "primary", "backup" or "end backup".
    pub role: &'static str,
    /// Byte offset.
    pub offset: u64,
    /// What was found there.
    pub status: CopyStatus,
    /// The decoded copy, when valid (stale or newest).
    #[serde(skip)]
    pub sb: Option<Superblock>,
}

/// The result of reading a device's superblocks.
#[derive(Clone, Debug)]
pub struct SbRead {
    /// The newest valid copy.
    pub sb: Superblock,
    /// Every copy looked at, in offset order.
    pub copies: Vec<CopyReport>,
}

impl SbRead {
    /// Copies that are not the newest valid one (invalid or stale).
    pub fn bad_copies(&self) -> impl Iterator<Item = &CopyReport> {
        self.copies
            .iter()
            .filter(|c| !matches!(c.status, CopyStatus::Valid { .. }))
    }
}

/// Reads one copy at `offset`.
pub fn read_copy(dev: &dyn BlockDevice, offset: u64) -> Result<Superblock, String> {
    let mut hdr = vec![0u8; SB_HEADER_BYTES];
    read_or_reason(dev, &mut hdr, offset)?;
    let len = Superblock::peek_len(&hdr).map_err(|e| short_reason(&e))?;
    let mut buf = vec![0u8; len];
    read_or_reason(dev, &mut buf, offset)?;
    let sb = Superblock::decode(&buf).map_err(|e| short_reason(&e))?;
    if sb.offset != offset {
        return Err(format!("copy says it belongs at byte {}", sb.offset));
    }
    Ok(sb)
}

fn read_or_reason(dev: &dyn BlockDevice, buf: &mut [u8], offset: u64) -> Result<(), String> {
    if offset.saturating_add(buf.len() as u64) > dev.len() {
        return Err("past the end of the device".into());
    }
    dev.read_at(buf, offset)
        .map_err(|e| format!("read error: {e}"))
}

fn short_reason(e: &FormatError) -> String {
    match e {
        FormatError::BadMagic { .. } => "no sixfs superblock (bad magic)".into(),
        other => other.to_string(),
    }
}

fn role(offset: u64, layout_end: Option<u64>, dev_len: u64) -> &'static str {
    if offset == SB_PRIMARY_OFFSET {
        "primary"
    } else if Some(offset) == layout_end || offset == SbLayout::standard(dev_len).offsets[2] {
        "end backup"
    } else {
        "backup"
    }
}

/// Reads every superblock copy and returns the newest valid one with a report on each; logs a
/// warning for each copy that is invalid, foreign or stale.
///
/// Fails if no copy is valid, or if the device is shorter than the filesystem the newest
/// valid copy describes ([`SbError::Truncated`]).
pub fn read_superblock(dev: &dyn BlockDevice) -> Result<SbRead, SbError> {
    let len = dev.len();
    let mut offsets: Vec<u64> = SbLayout::standard(len).offsets;
    let mut copies: Vec<CopyReport> = Vec::new();
    let mut i = 0;
    while i < offsets.len() {
        let off = offsets[i];
        i += 1;
        if copies.iter().any(|c| c.offset == off) {
            continue;
        }
        let (status, sb) = match read_copy(dev, off) {
            Ok(sb) => {
                for &o in &sb.layout.offsets {
                    if !offsets.contains(&o) {
                        offsets.push(o);
                    }
                }
                (CopyStatus::Valid { seq: sb.seq }, Some(sb))
            }
            Err(reason) => (CopyStatus::Invalid { reason }, None),
        };
        copies.push(CopyReport {
            role: "",
            offset: off,
            status,
            sb,
        });
    }
    // The filesystem is the one the lowest valid copy (the primary unless it is damaged)
    // belongs to; a valid copy with another internal UUID is a leftover of an earlier
    // filesystem and must never win, however high its seq.
    let owner = copies
        .iter()
        .filter_map(|c| c.sb.as_ref().map(|s| (c.offset, s.uuid)))
        .min_by_key(|&(o, _)| o)
        .map(|(_, u)| u);
    for c in &mut copies {
        if let (Some(sb), Some(owner)) = (&c.sb, owner)
            && sb.uuid != owner
        {
            c.status = CopyStatus::Invalid {
                reason: format!(
                    "belongs to another filesystem (internal UUID {}, not {owner})",
                    sb.uuid
                ),
            };
            c.sb = None;
        }
    }
    // A copy outside the newest layout that was only guessed (standard end location on a grown
    // file) and holds nothing is not worth reporting.
    let newest = copies
        .iter()
        .filter_map(|c| c.sb.as_ref())
        .max_by_key(|s| s.seq)
        .cloned();
    let Some(newest) = newest else {
        let found = probe_device(dev)?
            .into_iter()
            .filter(|s| *s != Signature::Sixfs);
        for c in &mut copies {
            c.role = role(c.offset, None, len);
        }
        return Err(SbError::NoValid {
            dev: dev.name().to_string(),
            copies,
            found: found.map(|s| s.to_string()).collect(),
            size: len,
        });
    };
    let layout = &newest.layout.offsets;
    copies.retain(|c| layout.contains(&c.offset) || c.sb.is_some());
    copies.sort_by_key(|c| c.offset);
    for c in &mut copies {
        c.role = role(c.offset, layout.last().copied(), len);
        if let CopyStatus::Valid { seq } = c.status
            && seq < newest.seq
        {
            c.status = CopyStatus::Stale {
                seq,
                newest: newest.seq,
            };
        }
    }
    let read = SbRead { sb: newest, copies };
    for c in read.bad_copies() {
        log::warn!(
            "{}: {} superblock at byte {}: {}",
            dev.name(),
            c.role,
            c.offset,
            c.status
        );
    }
    if len < read.sb.dev_size {
        return Err(SbError::Truncated {
            dev: dev.name().to_string(),
            len,
            dev_size: read.sb.dev_size,
            copies: read.copies,
        });
    }
    Ok(read)
}

/// The signatures found at the head and the tail of `dev` (magic numbers only; see
/// [`probe`] and [`probe_tail`]), each once, head first.
pub fn probe_device(dev: &dyn BlockDevice) -> Result<Vec<Signature>, DevError> {
    let len = dev.len();
    let n = |max: usize| usize::try_from(len).map_or(max, |l| l.min(max));
    let mut head = vec![0u8; n(PROBE_BYTES)];
    dev.read_at(&mut head, 0)?;
    let mut tail = vec![0u8; n(TAIL_PROBE_BYTES)];
    let tail_at = len - tail.len() as u64;
    dev.read_at(&mut tail, tail_at)?;
    let mut found = probe(&head);
    for s in probe_tail(&tail, len) {
        if !found.contains(&s) {
            found.push(s);
        }
    }
    Ok(found)
}

/// Now, in unix nanoseconds.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Writes `sb` as the copy at `offset` (padded with zeros to a multiple of the block size),
/// without flushing.
pub fn write_copy(dev: &dyn BlockDevice, sb: &Superblock, offset: u64) -> Result<(), SbError> {
    let mut copy = sb.clone();
    copy.offset = offset;
    let mut buf = copy.encode().map_err(|source| SbError::Encode {
        dev: dev.name().to_string(),
        source,
    })?;
    let align = (sb.block_size as usize)
        .max(dev.logical_block_size() as usize)
        .max(512);
    buf.resize(buf.len().next_multiple_of(align), 0);
    dev.write_at(&buf, offset)?;
    Ok(())
}

/// Bumps `seq` and `write_time` and writes every copy in the layout: the primary, a flush,
/// the other copies, a flush — so a power cut at any moment leaves an intact copy (the old
/// backups or the new primary). `sb` is unchanged if it cannot be written (a seq at the
/// limit, an invalid superblock).
pub fn write_superblock(dev: &dyn BlockDevice, sb: &mut Superblock) -> Result<(), SbError> {
    let seq = sb
        .seq
        .checked_add(1)
        .filter(|&s| s < SEQ_LIMIT)
        .ok_or_else(|| SbError::Encode {
            dev: dev.name().to_string(),
            source: FormatError::invalid(
                "superblock",
                "seq",
                format!(
                    "{} cannot be bumped: sequence numbers stay below 2^63",
                    sb.seq
                ),
            ),
        })?;
    let mut next = sb.clone();
    next.seq = seq;
    next.write_time = now_ns();
    next.offset = SB_PRIMARY_OFFSET;
    // Encode once up front so an invalid superblock fails before anything is written.
    next.encode().map_err(|source| SbError::Encode {
        dev: dev.name().to_string(),
        source,
    })?;
    let (primary, rest) = next
        .layout
        .offsets
        .split_first()
        .map(|(p, r)| (*p, r.to_vec()))
        .unwrap_or((SB_PRIMARY_OFFSET, Vec::new()));
    write_copy(dev, &next, primary)?;
    dev.flush()?;
    for off in rest {
        write_copy(dev, &next, off)?;
    }
    dev.flush()?;
    *sb = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::{CrashDevice, CrashPoint, Survivors, Torn};
    use crate::format::superblock::tests::sample;
    use uuid::Uuid;

    const SIZE: u64 = 64 << 20;

    fn sb() -> Superblock {
        sample(SIZE, 512 << 10, 256 << 10)
    }

    fn seqs(r: &SbRead) -> Vec<(u64, String)> {
        r.copies
            .iter()
            .map(|c| (c.offset, c.status.to_string()))
            .collect()
    }

    #[test]
    fn newest_valid_copy_wins() {
        let offs = SbLayout::standard(SIZE).offsets;
        // Every placement of the newest copy among the three.
        for (i, order) in [[9u64, 7, 8], [7, 9, 8], [8, 7, 9]].iter().enumerate() {
            let dev = CrashDevice::new(SIZE, 512);
            for (&off, &seq) in offs.iter().zip(order) {
                let mut s = sb();
                s.seq = seq;
                write_copy(&dev, &s, off).unwrap();
            }
            let r = read_superblock(&dev).unwrap();
            assert_eq!(r.sb.seq, 9, "case {i}");
            assert_eq!(
                r.sb.offset,
                offs[order.iter().position(|&s| s == 9).unwrap()]
            );
            for c in &r.copies {
                let seq = order[offs.iter().position(|&o| o == c.offset).unwrap()];
                let want = if seq == 9 {
                    CopyStatus::Valid { seq }
                } else {
                    CopyStatus::Stale { seq, newest: 9 }
                };
                assert_eq!(c.status, want, "case {i}: {:?}", seqs(&r));
            }
            assert_eq!(r.bad_copies().count(), 2);
        }
    }

    #[test]
    fn a_newer_copy_of_another_filesystem_never_wins() {
        let offs = SbLayout::standard(SIZE).offsets;
        let dev = CrashDevice::new(SIZE, 512);
        let mut ours = sb();
        ours.seq = 3;
        write_copy(&dev, &ours, offs[0]).unwrap();
        write_copy(&dev, &ours, offs[1]).unwrap();
        let mut theirs = sb();
        theirs.uuid = Uuid::from_u128(0xdead);
        theirs.seq = 1000;
        write_copy(&dev, &theirs, offs[2]).unwrap();
        let r = read_superblock(&dev).unwrap();
        assert_eq!((r.sb.seq, r.sb.uuid), (3, ours.uuid));
        let end = r.copies.iter().find(|c| c.offset == offs[2]).unwrap();
        assert!(
            matches!(&end.status, CopyStatus::Invalid { reason } if reason.contains("another filesystem")),
            "{:?}",
            end.status
        );
        assert!(end.sb.is_none());
        assert_eq!(r.bad_copies().count(), 1);
        // Even as the only valid copy besides a damaged primary, the backup decides.
        dev.write_at(&[0xffu8; 512], offs[0]).unwrap();
        let r = read_superblock(&dev).unwrap();
        assert_eq!((r.sb.seq, r.sb.uuid), (3, ours.uuid), "{:?}", seqs(&r));
    }

    /// Collects warnings (the log is process-wide: entries are told apart by device name).
    struct Capture;
    static LOGGED: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());
    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Warn
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                LOGGED.lock().push(r.args().to_string());
            }
        }
        fn flush(&self) {}
    }
    static CAPTURE: Capture = Capture;

    #[test]
    fn bad_copies_are_logged_as_warnings() {
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Warn);
        // A device of an odd size, so its name is unique among the tests.
        let size = SIZE + 4096 * 3;
        let dev = CrashDevice::new(size, 512);
        let mut s = sample(size, 512 << 10, 256 << 10);
        write_superblock(&dev, &mut s).unwrap();
        dev.write_at(&[0u8; 512], SB_PRIMARY_OFFSET).unwrap();
        let r = read_superblock(&dev).unwrap();
        assert_eq!(r.bad_copies().count(), 1);
        let logged: Vec<String> = LOGGED
            .lock()
            .iter()
            .filter(|l| l.starts_with(dev.name()))
            .cloned()
            .collect();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(
            logged[0].contains("primary superblock at byte 4096: no sixfs superblock"),
            "{}",
            logged[0]
        );
    }

    #[test]
    fn a_device_shorter_than_the_filesystem_is_refused() {
        let dev = CrashDevice::new(40 << 20, 512);
        let s = sb();
        write_copy(&dev, &s, SB_PRIMARY_OFFSET).unwrap();
        let e = read_superblock(&dev).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, SbError::Truncated { len, dev_size, .. } if len == 40 << 20 && dev_size == SIZE),
            "{msg}"
        );
        for part in [dev.name(), "41943040", "67108864", "truncated?"] {
            assert!(msg.contains(part), "{msg} lacks {part}");
        }
        assert_eq!(msg.lines().count(), 1);
    }

    #[test]
    fn a_seq_at_the_limit_is_not_bumped_and_nothing_is_written() {
        let dev = CrashDevice::new(SIZE, 512);
        let mut s = sb();
        s.seq = SEQ_LIMIT - 1;
        let before = s.clone();
        let e = write_superblock(&dev, &mut s).unwrap_err();
        assert!(e.to_string().contains("seq"), "{e}");
        assert_eq!(s, before);
        assert_eq!(dev.stats().writes, 0);
        s.seq = u64::MAX;
        assert!(write_superblock(&dev, &mut s).is_err());
        assert_eq!(dev.stats().writes, 0);
        s.seq = 41;
        write_superblock(&dev, &mut s).unwrap();
        assert_eq!(read_superblock(&dev).unwrap().sb.seq, 42);
    }

    /// Every way each pending write of an epoch can end up: lost, whole, or torn (every
    /// subset of its blocks).
    fn fates(blocks: usize) -> Vec<Option<Vec<bool>>> {
        let mut v = vec![None, Some(vec![true; blocks])];
        for m in 1..(1u32 << blocks) - 1 {
            v.push(Some((0..blocks).map(|b| m >> b & 1 == 1).collect()));
        }
        v
    }

    #[test]
    fn every_crash_point_of_a_superblock_write_leaves_a_valid_copy() {
        // 512-byte logical blocks and 4 KiB superblock blocks: each copy is 8 tear units, of
        // which the first four hold the copy (a clean section of 1.5 KiB of roots that the
        // second write changes, as a clean close does), so a torn copy mixes old and new.
        let dev = CrashDevice::new(SIZE, 512);
        let mut s = sb();
        s.flags = crate::format::superblock::SbFlags::CLEAN;
        s.clean = Some(crate::format::superblock::CleanSection {
            journal_seq: 10,
            entries: vec![1; 1536],
        });
        write_superblock(&dev, &mut s).unwrap();
        let old = s.seq;
        dev.start_recording();
        s.clean = Some(crate::format::superblock::CleanSection {
            journal_seq: 20,
            entries: vec![2; 1536],
        });
        write_superblock(&dev, &mut s).unwrap();
        let new = s.seq;
        let log = dev.history();
        let mut states = 0u64;
        let mut seen = std::collections::BTreeSet::new();
        for k in 0..log.epochs() {
            let n = log.writes_in_epoch(k);
            assert!(n <= 2, "epoch {k} has {n} writes");
            let per: Vec<Vec<Option<Vec<bool>>>> =
                (0..n).map(|w| fates(log.write_sectors(k, w))).collect();
            let combos: usize = per.iter().map(Vec::len).product();
            for mut c in 0..combos {
                let mut whole = Vec::new();
                let mut torn = Vec::new();
                for (w, f) in per.iter().enumerate() {
                    match &f[c % f.len()] {
                        None => {}
                        Some(m) if m.iter().all(|&b| b) => whole.push(w),
                        Some(m) => torn.push(Torn {
                            write: w,
                            sectors: m.clone(),
                        }),
                    }
                    c /= f.len();
                }
                let point = CrashPoint {
                    epoch: k,
                    survivors: Survivors::Some(whole),
                    torn,
                };
                let img = log.image(&point);
                let r = read_superblock(&img)
                    .unwrap_or_else(|e| panic!("no valid superblock after a cut at {point}: {e}"));
                assert!(
                    r.sb.seq == old || r.sb.seq == new,
                    "{point}: seq {}",
                    r.sb.seq
                );
                if k >= 1 {
                    assert_eq!(r.sb.seq, new, "{point}: the flushed primary was lost");
                }
                seen.insert(r.sb.seq);
                states += 1;
            }
        }
        assert_eq!(seen.len(), 2, "both the old and the new superblock occur");
        assert_eq!(states, 256 + 256 * 256 + 1, "crash states");
    }
}
