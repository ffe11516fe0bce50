//! Btree node entries: the log-structured on-disk form of a node.
//!
//! A node occupies `btree_node_size` bytes. It is written as a sequence of *entries*, each at
//! a block-aligned offset and padded to the block size: the first when the node is created,
//! later ones appended as the node gathers new keys (written data is never rewritten in
//! place). Every entry carries the node's identity, so it is checked on its own:
//!
//! ```text
//! offset size field
//!      0   16 csum          metadata checksum of bytes [16, 96 + keys_bytes)
//!     16    8 magic         NODE_MAGIC ^ the filesystem's magic (from its internal UUID)
//!     24    8 node_seq      random per node, the same in all its entries; an entry with
//!                           another seq is a leftover of a previous occupant: end of node
//!     32    8 journal_seq   newest journal seq of the keys in this entry (blacklist check)
//!     40    4 sector_offset this entry's offset in the node, in sectors (0 for the first)
//!     44    4 keys_bytes    length of the key records that follow
//!     48    4 nkeys         number of key records
//!     52    1 btree_id
//!     53    1 level         0 = leaf
//!     54    2 flags         0 (reserved)
//!     56   20 min_pos       smallest position the node covers
//!     76   20 max_pos       largest position the node covers
//!     96    - keys          key records (see `bkey`), strictly increasing, inside [min, max]
//! ```
//!
//! Within an entry keys are unique and sorted; across entries a later entry overrides an
//! earlier one for the same position (a `deleted` key removes it).

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::FormatError;
use super::bkey::{KeyType, Pos, decode_key};
use super::btree_id::BtreeId;
use super::csum::{ChecksumType, Csum, csum_display};

/// Base magic of node entries (xored with the filesystem's magic).
pub const NODE_MAGIC: u64 = 0x7369_7866_736e_6f64; // "sixfsnod"
/// Size of an entry header.
pub const ENTRY_HEADER_BYTES: usize = 96;
/// Deepest tree a reader follows: a pointer chain longer than this is corrupt.
pub const MAX_DEPTH: u8 = 8;

#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct PosDisk {
    inode: U64,
    offset: U64,
    snapshot: U32,
}

impl PosDisk {
    fn new(p: Pos) -> Self {
        PosDisk {
            inode: U64::new(p.inode),
            offset: U64::new(p.offset),
            snapshot: U32::new(p.snapshot),
        }
    }
    fn get(&self) -> Pos {
        Pos::new(self.inode.get(), self.offset.get(), self.snapshot.get())
    }
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct EntryDisk {
    csum: Csum,
    magic: U64,
    node_seq: U64,
    journal_seq: U64,
    sector_offset: U32,
    keys_bytes: U32,
    nkeys: U32,
    btree_id: u8,
    level: u8,
    flags: U16,
    min_pos: PosDisk,
    max_pos: PosDisk,
}

const _: () = assert!(size_of::<EntryDisk>() == ENTRY_HEADER_BYTES);

/// The identity and bookkeeping of one node entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// Random per-node seq.
    pub node_seq: u64,
    /// Newest journal seq of the keys in the entry.
    pub journal_seq: u64,
    /// Offset of the entry inside the node, in sectors.
    pub sector_offset: u32,
    /// Number of keys.
    pub nkeys: u32,
    /// Which btree.
    pub btree_id: BtreeId,
    /// Level (0 = leaf).
    pub level: u8,
    /// Smallest position covered.
    pub min_pos: Pos,
    /// Largest position covered.
    pub max_pos: Pos,
}

/// Appends an entry (header + `keys` + zero padding to `block_size`) to `out`.
/// `keys` must be valid key records in strictly increasing order.
pub fn encode_entry(
    out: &mut Vec<u8>,
    info: &EntryInfo,
    keys: &[u8],
    magic: u64,
    csum: ChecksumType,
    block_size: usize,
) {
    let start = out.len();
    let d = EntryDisk {
        csum: [0; 16],
        magic: U64::new(NODE_MAGIC ^ magic),
        node_seq: U64::new(info.node_seq),
        journal_seq: U64::new(info.journal_seq),
        sector_offset: U32::new(info.sector_offset),
        keys_bytes: U32::new(u32::try_from(keys.len()).unwrap_or(u32::MAX)),
        nkeys: U32::new(info.nkeys),
        btree_id: info.btree_id as u8,
        level: info.level,
        flags: U16::new(0),
        min_pos: PosDisk::new(info.min_pos),
        max_pos: PosDisk::new(info.max_pos),
    };
    out.extend_from_slice(d.as_bytes());
    out.extend_from_slice(keys);
    let c = csum.compute(&[&out[start + 16..]]);
    out[start..start + 16].copy_from_slice(&c);
    let len = out.len() - start;
    out.resize(start + len.next_multiple_of(block_size.max(1)), 0);
}

/// Bytes an entry with `keys_bytes` of keys takes on disk.
pub fn entry_disk_bytes(keys_bytes: usize, block_size: usize) -> usize {
    (ENTRY_HEADER_BYTES + keys_bytes).next_multiple_of(block_size.max(1))
}

/// Why an entry could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    /// Not an entry of this node (no magic, another node's seq, zeros): the end of what was
    /// written. Normal after the last entry.
    End,
    /// Looks like an entry of this node but is damaged (bad checksum, impossible fields,
    /// bad keys).
    Corrupt(FormatError),
}

/// A decoded, checked entry borrowing its key bytes.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Header fields.
    pub info: EntryInfo,
    /// The key records.
    pub keys: &'a [u8],
    /// Bytes the entry occupies, padding included.
    pub disk_bytes: usize,
}

/// Decodes the entry at the start of `buf` (which runs to the end of the node).
/// `node_seq` is the node's seq (`None` for the first entry, which defines it);
/// `sector_offset` is where `buf` starts in the node.
pub fn decode_entry(
    buf: &[u8],
    magic: u64,
    node_seq: Option<u64>,
    sector_offset: u32,
    csum: ChecksumType,
    block_size: usize,
) -> Result<Entry<'_>, EntryError> {
    let Ok((d, _)) = EntryDisk::ref_from_prefix(buf) else {
        return Err(EntryError::End);
    };
    if d.magic.get() != NODE_MAGIC ^ magic {
        return Err(EntryError::End);
    }
    if node_seq.is_some_and(|s| s != d.node_seq.get()) {
        return Err(EntryError::End);
    }
    let corrupt = |field: &'static str, detail: String| {
        Err(EntryError::Corrupt(FormatError::invalid(
            "btree node entry",
            field,
            detail,
        )))
    };
    let keys_bytes = d.keys_bytes.get() as usize;
    let Some(body) = buf.get(16..ENTRY_HEADER_BYTES.saturating_add(keys_bytes)) else {
        return corrupt(
            "keys_bytes",
            format!("{keys_bytes} bytes run past the end of the node"),
        );
    };
    let computed = csum.compute(&[body]);
    if computed != d.csum {
        return Err(EntryError::Corrupt(FormatError::BadChecksum {
            what: "btree node entry",
            stored: csum_display(&d.csum),
            computed: csum_display(&computed),
        }));
    }
    if d.sector_offset.get() != sector_offset {
        return corrupt(
            "sector_offset",
            format!(
                "entry found at sector {sector_offset} says it belongs at {}",
                d.sector_offset.get()
            ),
        );
    }
    if d.flags.get() != 0 {
        return corrupt("flags", format!("unknown flags {:#x}", d.flags.get()));
    }
    let Some(btree_id) = BtreeId::from_u8(d.btree_id) else {
        return corrupt("btree_id", format!("unknown btree id {}", d.btree_id));
    };
    if d.level >= MAX_DEPTH {
        return corrupt(
            "level",
            format!("level {} is deeper than {MAX_DEPTH}", d.level),
        );
    }
    let info = EntryInfo {
        node_seq: d.node_seq.get(),
        journal_seq: d.journal_seq.get(),
        sector_offset,
        nkeys: d.nkeys.get(),
        btree_id,
        level: d.level,
        min_pos: d.min_pos.get(),
        max_pos: d.max_pos.get(),
    };
    if info.min_pos > info.max_pos {
        return corrupt(
            "min_pos",
            format!("range {}..={} is reversed", info.min_pos, info.max_pos),
        );
    }
    let keys = &body[ENTRY_HEADER_BYTES - 16..];
    validate_keys(keys, info.nkeys, info.level, info.min_pos, info.max_pos)
        .map_err(EntryError::Corrupt)?;
    Ok(Entry {
        info,
        keys,
        disk_bytes: entry_disk_bytes(keys_bytes, block_size),
    })
}

/// Checks a run of key records: each decodes, positions strictly increase and lie inside
/// `[min, max]`, types fit the level (pointers in interior nodes, no pointers in leaves), and
/// there are exactly `nkeys`.
pub fn validate_keys(
    keys: &[u8],
    nkeys: u32,
    level: u8,
    min: Pos,
    max: Pos,
) -> Result<(), FormatError> {
    let mut at = 0usize;
    let mut n = 0u32;
    let mut prev: Option<Pos> = None;
    while at < keys.len() {
        let (k, len) = decode_key(&keys[at..])?;
        if prev.is_some_and(|p| p >= k.pos) {
            return Err(FormatError::invalid(
                "btree node entry",
                "key order",
                format!("key {} after {}", k.pos, prev.unwrap_or_default()),
            ));
        }
        if k.pos < min || k.pos > max {
            return Err(FormatError::invalid(
                "btree node entry",
                "key position",
                format!("key {} outside node range {min}..={max}", k.pos),
            ));
        }
        let ok = match (level, k.typ) {
            (_, KeyType::Deleted) => true,
            (0, KeyType::BtreePtr) => false,
            (0, _) => true,
            (_, KeyType::BtreePtr) => true,
            (_, _) => false,
        };
        if !ok {
            return Err(FormatError::invalid(
                "btree node entry",
                "key type",
                format!("{} key at level {level}", k.typ.name()),
            ));
        }
        prev = Some(k.pos);
        at += len;
        n += 1;
    }
    if n != nkeys {
        return Err(FormatError::invalid(
            "btree node entry",
            "nkeys",
            format!("says {nkeys}, holds {n}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bkey::Key;
    use proptest::prelude::*;

    fn keys_bytes(keys: &[Key]) -> Vec<u8> {
        let mut b = Vec::new();
        for k in keys {
            k.encode_into(&mut b);
        }
        b
    }

    fn info(n: u32, off: u32) -> EntryInfo {
        EntryInfo {
            node_seq: 42,
            journal_seq: 7,
            sector_offset: off,
            nkeys: n,
            btree_id: BtreeId::Extents,
            level: 0,
            min_pos: Pos::new(0, 0, 0),
            max_pos: Pos::new(100, 0, 0),
        }
    }

    #[test]
    fn entries_round_trip_and_detect_flips() {
        let keys: Vec<Key> = (0..5)
            .map(|i| Key::cookie(Pos::new(i, 0, 0), &[i as u8; 3]))
            .collect();
        let kb = keys_bytes(&keys);
        for csum in [ChecksumType::Crc32c, ChecksumType::Blake3] {
            let mut out = Vec::new();
            encode_entry(&mut out, &info(5, 0), &kb, 99, csum, 512);
            assert_eq!(out.len() % 512, 0);
            let e = decode_entry(&out, 99, None, 0, csum, 512).unwrap();
            assert_eq!(e.info, info(5, 0));
            assert_eq!(e.keys, &kb[..]);
            assert_eq!(e.disk_bytes, out.len());
            // Wrong node seq or filesystem magic: not this node's.
            assert_eq!(
                decode_entry(&out, 99, Some(41), 0, csum, 512).unwrap_err(),
                EntryError::End
            );
            assert_eq!(
                decode_entry(&out, 98, None, 0, csum, 512).unwrap_err(),
                EntryError::End
            );
            // Every flipped bit in the checksummed part is caught.
            for bit in 0..(ENTRY_HEADER_BYTES + kb.len()) * 8 {
                let mut b = out.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    decode_entry(&b, 99, Some(42), 0, csum, 512).is_err(),
                    "bit {bit}"
                );
            }
        }
    }

    #[test]
    fn bad_order_range_and_types_are_rejected() {
        let bad_order = keys_bytes(&[
            Key::cookie(Pos::new(2, 0, 0), b""),
            Key::cookie(Pos::new(1, 0, 0), b""),
        ]);
        assert!(validate_keys(&bad_order, 2, 0, Pos::default(), Pos::new(9, 0, 0)).is_err());
        let dup = keys_bytes(&[
            Key::cookie(Pos::new(1, 0, 0), b""),
            Key::cookie(Pos::new(1, 0, 0), b""),
        ]);
        assert!(validate_keys(&dup, 2, 0, Pos::default(), Pos::new(9, 0, 0)).is_err());
        let out_of_range = keys_bytes(&[Key::cookie(Pos::new(10, 0, 0), b"")]);
        assert!(validate_keys(&out_of_range, 1, 0, Pos::default(), Pos::new(9, 0, 0)).is_err());
        let cookie_in_interior = keys_bytes(&[Key::cookie(Pos::new(1, 0, 0), b"")]);
        assert!(
            validate_keys(&cookie_in_interior, 1, 1, Pos::default(), Pos::new(9, 0, 0)).is_err()
        );
        assert!(
            validate_keys(&cookie_in_interior, 2, 0, Pos::default(), Pos::new(9, 0, 0)).is_err()
        );
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..1024), seq in any::<Option<u64>>()) {
            let _ = decode_entry(&b, 0, seq, 0, ChecksumType::Crc32c, 512);
        }

        #[test]
        fn decoding_mutated_entries_never_panics(edits in proptest::collection::vec((0usize..1024, any::<u8>()), 1..6)) {
            let keys: Vec<Key> = (0..8).map(|i| Key::cookie(Pos::new(i, i, 0), &[1; 20])).collect();
            let mut out = Vec::new();
            encode_entry(&mut out, &info(8, 0), &keys_bytes(&keys), 5, ChecksumType::None, 512);
            for (at, v) in edits { let i = at % out.len(); out[i] = v; }
            let _ = decode_entry(&out, 5, None, 0, ChecksumType::None, 512);
        }
    }
}
