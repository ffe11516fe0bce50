//! Superblock placement on a device: reading every copy, choosing the newest valid one, and
//! writing all copies.
//!
//! Copies sit at the standard v1 places (byte 4096, right after it, and in the last 64 KiB of
//! the device) and wherever a valid copy's layout says. Reading validates every copy and takes
//! the one with the highest `seq`; invalid or older copies are reported, not fatal, as long as
//! one valid copy exists. Writing bumps `seq`, writes every copy in the layout (each padded to
//! the block size) and then flushes, so after a crash mid-write the newest copy that made it
//! intact wins.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::dev::{BlockDevice, DevError};
use crate::format::FormatError;
use crate::format::probe::{PROBE_BYTES, Signature, probe};
use crate::format::superblock::{SB_HEADER_BYTES, SB_PRIMARY_OFFSET, SbLayout, Superblock};

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

/// Reads every superblock copy and returns the newest valid one with a report on each.
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
    // A copy outside the newest layout that was only guessed (standard end location on a grown
    // file) and holds nothing is not worth reporting.
    let newest = copies
        .iter()
        .filter_map(|c| c.sb.as_ref())
        .max_by_key(|s| s.seq)
        .cloned();
    let Some(newest) = newest else {
        let mut head = vec![0u8; PROBE_BYTES.min(usize::try_from(len).unwrap_or(usize::MAX))];
        dev.read_at(&mut head, 0)?;
        let found = probe(&head).into_iter().filter(|s| *s != Signature::Sixfs);
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
    Ok(SbRead { sb: newest, copies })
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

/// Bumps `seq` and `write_time` and writes every copy in the layout, then flushes.
pub fn write_superblock(dev: &dyn BlockDevice, sb: &mut Superblock) -> Result<(), SbError> {
    sb.seq += 1;
    sb.write_time = now_ns();
    for &off in &sb.layout.offsets.clone() {
        write_copy(dev, sb, off)?;
    }
    dev.flush()?;
    sb.offset = SB_PRIMARY_OFFSET;
    Ok(())
}
