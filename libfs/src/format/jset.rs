//! Journal sets (jsets): the unit of journal writes and the commit point of transactions.
//!
//! A jset is a 56-byte header and a run of entries, padded to the block size. A transaction's
//! keys are always in one jset, so a jset is applied whole or not at all.
//!
//! ```text
//! offset size field
//!      0   16 csum          metadata checksum of bytes [16, 56 + entries_bytes)
//!     16    8 magic         JSET_MAGIC ^ the filesystem's magic
//!     24    8 seq           journal sequence number (monotonic, never reused)
//!     32    8 last_seq      oldest seq still needed: replay starts there
//!     40    4 entries_bytes length of the entries
//!     44    4 flags         bit 0 NO_FLUSH (written without a cache flush: never a replay end)
//!     48    8 reserved      0
//!     56    - entries       { bytes u32, type u8, btree_id u8, level u8, reserved u8, payload }*
//! ```
//!
//! Entry types: 0 `btree_keys` (key records for one btree and level, strictly increasing),
//! 1 `btree_root` (one `btree_ptr` key at `POS_MAX` pointing at the root; `level` is the
//! root's level), 2 `padding` (space a transaction reserved and then gave back because it
//! restarted: zeros, ignored), 3 `usage` (accounting counters as the journal knew them
//! when the jset was written: 16-byte records `{ counter u32, reserved u32 = 0, value u64 }`
//! with strictly increasing counter ids; btree id and level 0). Every jset carries a root
//! entry for every btree, and a usage entry once anything is accounted.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::FormatError;
use super::bkey::{KeyRef, KeyType, POS_MAX, Pos, decode_key};
use super::btree_id::BtreeId;
use super::btree_node::MAX_DEPTH;
use super::btree_ptr::BtreePtr;
use super::csum::{ChecksumType, Csum, csum_display};

/// Base magic of jsets (xored with the filesystem's magic).
pub const JSET_MAGIC: u64 = 0x7369_7866_736a_7365; // "sixfsjse"
/// Header size.
pub const JSET_HEADER_BYTES: usize = 56;
/// Entry header size.
pub const JENTRY_HEADER_BYTES: usize = 8;

/// Jset flag: written without a flush; replay never ends on it.
pub const JSET_NO_FLUSH: u32 = 1;

#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct JsetDisk {
    csum: Csum,
    magic: U64,
    seq: U64,
    last_seq: U64,
    entries_bytes: U32,
    flags: U32,
    reserved: U64,
}

const _: () = assert!(size_of::<JsetDisk>() == JSET_HEADER_BYTES);

#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct JEntryDisk {
    bytes: U32,
    typ: u8,
    btree_id: u8,
    level: u8,
    reserved: u8,
}

/// Journal entry types (on-disk ABI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JEntryType {
    /// Keys inserted into one btree at one level.
    BtreeKeys = 0,
    /// The root of one btree.
    BtreeRoot = 1,
    /// Reserved space that was not used (zeros, ignored).
    Padding = 2,
    /// Accounting counters ([`UsageCounter`]).
    Usage = 3,
}

/// Accounting counters carried in `usage` entries (on-disk ABI: ids never change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageCounter {
    /// Btree node slots in use.
    BtreeNodes = 0,
    /// Btree node slots on the device.
    BtreeNodeSlots = 1,
}

impl UsageCounter {
    /// Every counter, by id.
    pub const ALL: [UsageCounter; 2] = [UsageCounter::BtreeNodes, UsageCounter::BtreeNodeSlots];

    /// The counter with on-disk id `id`, if known.
    pub fn from_id(id: u32) -> Option<UsageCounter> {
        Self::ALL.into_iter().find(|c| *c as u32 == id)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            UsageCounter::BtreeNodes => "btree_nodes",
            UsageCounter::BtreeNodeSlots => "btree_node_slots",
        }
    }
}

/// Bytes of one usage record.
pub const USAGE_RECORD_BYTES: usize = 16;

/// Appends a usage entry holding `counters` (sorted by id, no repeats) to `out`.
pub fn push_usage_entry(out: &mut Vec<u8>, counters: &[(UsageCounter, u64)]) {
    debug_assert!(counters.windows(2).all(|w| w[0].0 < w[1].0));
    push_entry_header(
        out,
        JEntryType::Usage,
        BtreeId::Extents,
        0,
        counters.len() * USAGE_RECORD_BYTES,
    );
    for (c, v) in counters {
        out.extend_from_slice(&(*c as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends an entry header for `payload_len` bytes to `out`; the caller appends the payload.
pub fn push_entry_header(
    out: &mut Vec<u8>,
    typ: JEntryType,
    btree: BtreeId,
    level: u8,
    payload_len: usize,
) {
    let h = JEntryDisk {
        bytes: U32::new(u32::try_from(payload_len).unwrap_or(u32::MAX)),
        typ: typ as u8,
        btree_id: btree as u8,
        level,
        reserved: 0,
    };
    out.extend_from_slice(h.as_bytes());
}

/// Appends a `btree_root` entry for `btree` whose root at `level` is `ptr`.
pub fn push_root_entry(out: &mut Vec<u8>, btree: BtreeId, level: u8, ptr: &BtreePtr) {
    let mut payload = Vec::with_capacity(80);
    super::bkey::Key::btree_ptr(POS_MAX, ptr).encode_into(&mut payload);
    push_entry_header(out, JEntryType::BtreeRoot, btree, level, payload.len());
    out.extend_from_slice(&payload);
}

/// A new, empty jset buffer: header space followed by nothing.
pub fn new_jset_buf(capacity: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(capacity);
    v.resize(JSET_HEADER_BYTES, 0);
    v
}

/// Fills in the header of a buffer made by [`new_jset_buf`] (plus appended entries),
/// checksums it and pads it to `block_size`.
pub fn seal_jset(
    buf: &mut Vec<u8>,
    seq: u64,
    last_seq: u64,
    flags: u32,
    magic: u64,
    csum: ChecksumType,
    block_size: usize,
) {
    debug_assert!(buf.len() >= JSET_HEADER_BYTES);
    let entries_bytes = buf.len() - JSET_HEADER_BYTES;
    let h = JsetDisk {
        csum: [0; 16],
        magic: U64::new(JSET_MAGIC ^ magic),
        seq: U64::new(seq),
        last_seq: U64::new(last_seq),
        entries_bytes: U32::new(u32::try_from(entries_bytes).unwrap_or(u32::MAX)),
        flags: U32::new(flags),
        reserved: U64::new(0),
    };
    buf[..JSET_HEADER_BYTES].copy_from_slice(h.as_bytes());
    let c = csum.compute(&[&buf[16..]]);
    buf[..16].copy_from_slice(&c);
    let len = buf.len().next_multiple_of(block_size.max(1));
    buf.resize(len, 0);
}

/// Bytes a jset with `entries_bytes` of entries takes on disk.
pub fn jset_disk_bytes(entries_bytes: usize, block_size: usize) -> usize {
    (JSET_HEADER_BYTES + entries_bytes).next_multiple_of(block_size.max(1))
}

/// Why a jset could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsetError {
    /// No jset here (no magic): the end of what was written in this bucket.
    End,
    /// Looks like a jset but is damaged (a torn write or corruption).
    Corrupt(FormatError),
}

/// A decoded, checked jset borrowing its entries.
#[derive(Debug, Clone, Copy)]
pub struct Jset<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Oldest seq still needed when this was written.
    pub last_seq: u64,
    /// Flags (`JSET_NO_FLUSH`).
    pub flags: u32,
    /// The entries (checked).
    pub entries: &'a [u8],
    /// Bytes it occupies, padding included.
    pub disk_bytes: usize,
}

impl Jset<'_> {
    /// True if written with a flush (a possible replay end).
    pub fn is_flush(&self) -> bool {
        self.flags & JSET_NO_FLUSH == 0
    }
    /// Iterates the entries.
    pub fn iter(&self) -> JEntryIter<'_> {
        JEntryIter { rest: self.entries }
    }
}

/// One journal entry.
#[derive(Debug, Clone, Copy)]
pub struct JEntry<'a> {
    /// Type.
    pub typ: JEntryType,
    /// Btree.
    pub btree: BtreeId,
    /// Level.
    pub level: u8,
    /// Payload: key records.
    pub payload: &'a [u8],
}

impl<'a> JEntry<'a> {
    /// Iterates the key records of the payload (already validated).
    pub fn keys(&self) -> KeyIter<'a> {
        KeyIter { rest: self.payload }
    }
    /// For a root entry, the root pointer.
    pub fn root(&self) -> Option<BtreePtr> {
        let (k, _) = decode_key(self.payload).ok()?;
        BtreePtr::decode(k.val).ok()
    }
    /// For a usage entry, the counters (already validated; unknown ids are skipped).
    pub fn usage(&self) -> Vec<(UsageCounter, u64)> {
        self.payload
            .chunks_exact(USAGE_RECORD_BYTES)
            .filter_map(|r| {
                let id = u32::from_le_bytes(r.get(..4)?.try_into().ok()?);
                let v = u64::from_le_bytes(r.get(8..16)?.try_into().ok()?);
                UsageCounter::from_id(id).map(|c| (c, v))
            })
            .collect()
    }
}

/// Iterator over validated key records.
#[derive(Debug, Clone)]
pub struct KeyIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for KeyIter<'a> {
    type Item = KeyRef<'a>;
    fn next(&mut self) -> Option<KeyRef<'a>> {
        let (k, len) = decode_key(self.rest).ok()?;
        self.rest = self.rest.get(len..).unwrap_or_default();
        Some(k)
    }
}

/// Iterator over validated entries.
#[derive(Debug, Clone)]
pub struct JEntryIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for JEntryIter<'a> {
    type Item = JEntry<'a>;
    fn next(&mut self) -> Option<JEntry<'a>> {
        let (e, len) = decode_jentry(self.rest).ok()?;
        self.rest = self.rest.get(len..).unwrap_or_default();
        Some(e)
    }
}

fn decode_jentry(buf: &[u8]) -> Result<(JEntry<'_>, usize), FormatError> {
    let what = "journal entry";
    let (h, rest) = JEntryDisk::ref_from_prefix(buf).map_err(|_| FormatError::Short {
        what,
        need: JENTRY_HEADER_BYTES,
        have: buf.len(),
    })?;
    let len = h.bytes.get() as usize;
    let Some(payload) = rest.get(..len) else {
        return Err(FormatError::Short {
            what,
            need: JENTRY_HEADER_BYTES + len,
            have: buf.len(),
        });
    };
    let typ = match h.typ {
        0 => JEntryType::BtreeKeys,
        1 => JEntryType::BtreeRoot,
        2 => JEntryType::Padding,
        3 => JEntryType::Usage,
        t => {
            return Err(FormatError::invalid(
                what,
                "type",
                format!("unknown entry type {t}"),
            ));
        }
    };
    let btree = BtreeId::from_u8(h.btree_id).ok_or_else(|| {
        FormatError::invalid(what, "btree_id", format!("unknown btree id {}", h.btree_id))
    })?;
    if h.level >= MAX_DEPTH || h.reserved != 0 {
        return Err(FormatError::invalid(
            what,
            "level",
            format!("level {} / reserved {}", h.level, h.reserved),
        ));
    }
    let e = JEntry {
        typ,
        btree,
        level: h.level,
        payload,
    };
    match typ {
        JEntryType::BtreeKeys => {
            let mut at = 0;
            let mut prev: Option<Pos> = None;
            while at < payload.len() {
                let (k, l) = decode_key(&payload[at..])?;
                if prev.is_some_and(|p| p >= k.pos) {
                    return Err(FormatError::invalid(
                        what,
                        "key order",
                        format!("key {} out of order", k.pos),
                    ));
                }
                let ok = match (h.level, k.typ) {
                    (_, KeyType::Deleted) => true,
                    (0, KeyType::BtreePtr) => false,
                    (0, _) => true,
                    (_, t) => t == KeyType::BtreePtr,
                };
                if !ok {
                    return Err(FormatError::invalid(
                        what,
                        "key type",
                        format!("{} key at level {}", k.typ.name(), h.level),
                    ));
                }
                prev = Some(k.pos);
                at += l;
            }
        }
        JEntryType::Padding => {
            if payload.iter().any(|&b| b != 0) {
                return Err(FormatError::invalid(
                    what,
                    "padding",
                    "padding holds non-zero bytes",
                ));
            }
        }
        JEntryType::Usage => {
            if h.btree_id != 0 || h.level != 0 || !len.is_multiple_of(USAGE_RECORD_BYTES) {
                return Err(FormatError::invalid(
                    what,
                    "usage",
                    format!(
                        "btree {} level {}, {len} bytes of {USAGE_RECORD_BYTES}-byte records",
                        h.btree_id, h.level
                    ),
                ));
            }
            let mut prev: Option<u32> = None;
            for r in payload.chunks_exact(USAGE_RECORD_BYTES) {
                let id = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
                let reserved = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
                if reserved != 0 || prev.is_some_and(|p| p >= id) {
                    return Err(FormatError::invalid(
                        what,
                        "usage",
                        format!("counter {id} out of order or with reserved bits set"),
                    ));
                }
                prev = Some(id);
            }
        }
        JEntryType::BtreeRoot => {
            let (k, l) = decode_key(payload)?;
            if l != payload.len() || k.typ != KeyType::BtreePtr || k.pos != POS_MAX {
                return Err(FormatError::invalid(
                    what,
                    "root",
                    "not one btree_ptr key at the maximum position",
                ));
            }
        }
    }
    Ok((e, JENTRY_HEADER_BYTES + len))
}

/// Checks a run of journal entries outside a jset (a clean section) and iterates them;
/// `None` if any entry is invalid.
pub fn entries_iter(entries: &[u8]) -> Option<JEntryIter<'_>> {
    let mut at = 0;
    while at < entries.len() {
        let (_, l) = decode_jentry(entries.get(at..)?).ok()?;
        at += l;
    }
    Some(JEntryIter { rest: entries })
}

/// Decodes the jset at the start of `buf`.
pub fn decode_jset(
    buf: &[u8],
    magic: u64,
    csum: ChecksumType,
    block_size: usize,
) -> Result<Jset<'_>, JsetError> {
    let Ok((h, _)) = JsetDisk::ref_from_prefix(buf) else {
        return Err(JsetError::End);
    };
    if h.magic.get() != JSET_MAGIC ^ magic {
        return Err(JsetError::End);
    }
    let what = "jset";
    let corrupt = |field: &'static str, detail: String| {
        Err(JsetError::Corrupt(FormatError::invalid(
            what, field, detail,
        )))
    };
    let eb = h.entries_bytes.get() as usize;
    let Some(body) = buf.get(16..JSET_HEADER_BYTES.saturating_add(eb)) else {
        return corrupt(
            "entries_bytes",
            format!("{eb} bytes run past the end of the bucket"),
        );
    };
    let computed = csum.compute(&[body]);
    if computed != h.csum {
        return Err(JsetError::Corrupt(FormatError::BadChecksum {
            what,
            stored: csum_display(&h.csum),
            computed: csum_display(&computed),
        }));
    }
    let (seq, last_seq, flags) = (h.seq.get(), h.last_seq.get(), h.flags.get());
    if seq == 0 || last_seq > seq || last_seq == 0 {
        return corrupt("seq", format!("seq {seq} with last_seq {last_seq}"));
    }
    if flags & !JSET_NO_FLUSH != 0 || h.reserved.get() != 0 {
        return corrupt("flags", format!("unknown flags {flags:#x}"));
    }
    let entries = &body[JSET_HEADER_BYTES - 16..];
    let mut at = 0;
    while at < entries.len() {
        let (_, l) = decode_jentry(&entries[at..]).map_err(JsetError::Corrupt)?;
        at += l;
    }
    Ok(Jset {
        seq,
        last_seq,
        flags,
        entries,
        disk_bytes: jset_disk_bytes(eb, block_size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bkey::Key;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut b = new_jset_buf(4096);
        let mut keys = Vec::new();
        for i in 0..4u64 {
            Key::cookie(Pos::new(1, i, 0), b"v").encode_into(&mut keys);
        }
        push_entry_header(
            &mut b,
            JEntryType::BtreeKeys,
            BtreeId::Inodes,
            0,
            keys.len(),
        );
        b.extend_from_slice(&keys);
        let ptr = BtreePtr {
            sector: 64,
            node_seq: 9,
            sectors_written: 8,
            generation: 0,
            min_pos: Pos::default(),
        };
        push_root_entry(&mut b, BtreeId::Inodes, 1, &ptr);
        seal_jset(&mut b, 10, 7, 0, 123, ChecksumType::Crc32c, 512);
        b
    }

    #[test]
    fn jsets_round_trip_and_detect_flips() {
        let b = sample();
        let j = decode_jset(&b, 123, ChecksumType::Crc32c, 512).unwrap();
        assert_eq!(
            (j.seq, j.last_seq, j.is_flush(), j.disk_bytes),
            (10, 7, true, b.len())
        );
        let entries: Vec<_> = j.iter().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].keys().count(), 4);
        assert_eq!(entries[1].root().unwrap().sector, 64);
        assert_eq!(entries[1].level, 1);
        assert_eq!(
            decode_jset(&b, 124, ChecksumType::Crc32c, 512).unwrap_err(),
            JsetError::End
        );
        let used = JSET_HEADER_BYTES + j.entries.len();
        for bit in 0..used * 8 {
            let mut c = b.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_jset(&c, 123, ChecksumType::Crc32c, 512).is_err(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn usage_entries_round_trip_and_bad_ones_are_rejected() {
        let counters = [
            (UsageCounter::BtreeNodes, 17),
            (UsageCounter::BtreeNodeSlots, 4096),
        ];
        let mut b = new_jset_buf(4096);
        push_usage_entry(&mut b, &counters);
        seal_jset(&mut b, 5, 5, 0, 1, ChecksumType::Crc32c, 512);
        let j = decode_jset(&b, 1, ChecksumType::Crc32c, 512).unwrap();
        let e: Vec<_> = j.iter().collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].typ, JEntryType::Usage);
        assert_eq!(e[0].usage(), counters.to_vec());
        // Out of order, reserved bits, a partial record: each is refused.
        let bad = |payload: &[u8]| {
            let mut b = new_jset_buf(4096);
            push_entry_header(
                &mut b,
                JEntryType::Usage,
                BtreeId::Extents,
                0,
                payload.len(),
            );
            b.extend_from_slice(payload);
            seal_jset(&mut b, 5, 5, 0, 1, ChecksumType::Crc32c, 512);
            decode_jset(&b, 1, ChecksumType::Crc32c, 512).is_err()
        };
        let rec = |id: u32, reserved: u32, v: u64| {
            let mut r = id.to_le_bytes().to_vec();
            r.extend_from_slice(&reserved.to_le_bytes());
            r.extend_from_slice(&v.to_le_bytes());
            r
        };
        assert!(bad(&[rec(1, 0, 1), rec(0, 0, 1)].concat()), "out of order");
        assert!(bad(&[rec(0, 0, 1), rec(0, 0, 2)].concat()), "repeated");
        assert!(bad(&rec(0, 1, 1)), "reserved bits");
        assert!(bad(&rec(0, 0, 1)[..12]), "partial record");
        assert!(
            !bad(&rec(99, 0, 1)),
            "an unknown counter is kept for later versions"
        );
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = decode_jset(&b, 0, ChecksumType::Crc32c, 512);
        }

        #[test]
        fn decoding_mutated_jsets_never_panics(edits in proptest::collection::vec((0usize..4096, any::<u8>()), 1..6)) {
            let mut b = new_jset_buf(4096);
            let mut keys = Vec::new();
            Key::cookie(Pos::new(1, 1, 0), b"xyz").encode_into(&mut keys);
            push_entry_header(&mut b, JEntryType::BtreeKeys, BtreeId::Extents, 0, keys.len());
            b.extend_from_slice(&keys);
            seal_jset(&mut b, 3, 1, 0, 0, ChecksumType::None, 512);
            for (at, v) in edits { let i = at % b.len(); b[i] = v; }
            if let Ok(j) = decode_jset(&b, 0, ChecksumType::None, 512) {
                for e in j.iter() { let _ = e.keys().count(); let _ = e.root(); }
            }
        }
    }
}
