//! Keys: positions, key types, and the on-disk key record shared by btree nodes and the
//! journal.
//!
//! A position is `(inode, offset, snapshot)` compared in that order. A key record is a 28-byte
//! header followed by the value:
//!
//! ```text
//! offset size field
//!      0    2 bytes      header + value length (28..=28+MAX_VAL_BYTES)
//!      2    1 type       KeyType (on-disk ABI)
//!      3    1 flags      0 (reserved)
//!      4    4 size       extent size in sectors (0 for non-extents)
//!      8    8 inode      position
//!     16    8 offset
//!     24    4 snapshot
//!     28    - value      `bytes - 28` bytes, layout given by the key type
//! ```
//!
//! Deletion is not a primitive: a `deleted` key (a whiteout) overrides older versions of its
//! position in older bsets and vanishes when a node is rewritten.

use serde::Serialize;
use smallvec::SmallVec;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::FormatError;
use super::btree_ptr::BtreePtr;

/// A key position. Ordered by `(inode, offset, snapshot)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    /// Inode number (most significant).
    pub inode: u64,
    /// Offset within the inode (for extents: the end, exclusive).
    pub offset: u64,
    /// Snapshot id (least significant).
    pub snapshot: u32,
}

/// The smallest position.
pub const POS_MIN: Pos = Pos {
    inode: 0,
    offset: 0,
    snapshot: 0,
};
/// The largest position.
pub const POS_MAX: Pos = Pos {
    inode: u64::MAX,
    offset: u64::MAX,
    snapshot: u32::MAX,
};

impl Pos {
    /// A position.
    pub const fn new(inode: u64, offset: u64, snapshot: u32) -> Pos {
        Pos {
            inode,
            offset,
            snapshot,
        }
    }

    /// The next position, or `None` at [`POS_MAX`].
    pub fn successor(self) -> Option<Pos> {
        if self.snapshot < u32::MAX {
            Some(Pos {
                snapshot: self.snapshot + 1,
                ..self
            })
        } else if self.offset < u64::MAX {
            Some(Pos {
                offset: self.offset + 1,
                snapshot: 0,
                ..self
            })
        } else if self.inode < u64::MAX {
            Some(Pos {
                inode: self.inode + 1,
                offset: 0,
                snapshot: 0,
            })
        } else {
            None
        }
    }

    /// The previous position, or `None` at [`POS_MIN`].
    pub fn predecessor(self) -> Option<Pos> {
        if self.snapshot > 0 {
            Some(Pos {
                snapshot: self.snapshot - 1,
                ..self
            })
        } else if self.offset > 0 {
            Some(Pos {
                offset: self.offset - 1,
                snapshot: u32::MAX,
                ..self
            })
        } else if self.inode > 0 {
            Some(Pos {
                inode: self.inode - 1,
                offset: u64::MAX,
                snapshot: u32::MAX,
            })
        } else {
            None
        }
    }
}

impl std::fmt::Display for Pos {
    /// `inode:offset:snapshot`, or `max` for [`POS_MAX`] (the forms `from_str` parses).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == POS_MAX {
            return f.write_str("max");
        }
        write!(f, "{}:{}:{}", self.inode, self.offset, self.snapshot)
    }
}

impl std::str::FromStr for Pos {
    type Err = String;
    /// Parses `inode`, `inode:offset` or `inode:offset:snapshot`; `max` is [`POS_MAX`].
    fn from_str(s: &str) -> Result<Pos, String> {
        if s == "max" {
            return Ok(POS_MAX);
        }
        if s == "min" {
            return Ok(POS_MIN);
        }
        let mut it = s.split(':');
        let p = |v: Option<&str>| -> Result<Option<u64>, String> {
            v.map(|x| x.parse::<u64>().map_err(|_| format!("bad position {s:?}")))
                .transpose()
        };
        let inode = p(it.next())?.ok_or_else(|| format!("bad position {s:?}"))?;
        let offset = p(it.next())?.unwrap_or(0);
        let snapshot = p(it.next())?.unwrap_or(0);
        if it.next().is_some() {
            return Err(format!("bad position {s:?}: at most inode:offset:snapshot"));
        }
        let snapshot = u32::try_from(snapshot).map_err(|_| format!("bad snapshot in {s:?}"))?;
        Ok(Pos {
            inode,
            offset,
            snapshot,
        })
    }
}

/// Key types. The numbers are on-disk ABI and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum KeyType {
    /// A whiteout: the position has no value (overrides older versions).
    Deleted = 0,
    /// An opaque value (tests, tools); allowed in every btree's leaves.
    Cookie = 1,
    /// A pointer to a child node; only in interior nodes.
    BtreePtr = 2,
}

impl KeyType {
    /// Decodes the on-disk number.
    pub fn from_u8(v: u8) -> Option<KeyType> {
        match v {
            0 => Some(KeyType::Deleted),
            1 => Some(KeyType::Cookie),
            2 => Some(KeyType::BtreePtr),
            _ => None,
        }
    }
    /// Name for output.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Deleted => "deleted",
            KeyType::Cookie => "cookie",
            KeyType::BtreePtr => "btree_ptr",
        }
    }
}

/// Size of the key header.
pub const KEY_HEADER_BYTES: usize = 28;
/// Largest value.
pub const MAX_VAL_BYTES: usize = 2048;

#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct KeyHeaderDisk {
    bytes: U16,
    typ: u8,
    flags: u8,
    size: U32,
    inode: U64,
    offset: U64,
    snapshot: U32,
}

const _: () = assert!(size_of::<KeyHeaderDisk>() == KEY_HEADER_BYTES);

/// Value bytes, stored inline when small.
pub type ValBuf = SmallVec<[u8; 32]>;

/// An owned key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// Position.
    pub pos: Pos,
    /// Type.
    pub typ: KeyType,
    /// Extent size in sectors (0 for non-extents).
    pub size: u32,
    /// Value bytes.
    pub val: ValBuf,
}

impl Key {
    /// A cookie key with an opaque value.
    pub fn cookie(pos: Pos, val: &[u8]) -> Key {
        Key {
            pos,
            typ: KeyType::Cookie,
            size: 0,
            val: ValBuf::from_slice(val),
        }
    }
    /// A whiteout at `pos`.
    pub fn deleted(pos: Pos) -> Key {
        Key {
            pos,
            typ: KeyType::Deleted,
            size: 0,
            val: ValBuf::new(),
        }
    }
    /// A pointer to a child node whose max key is `pos`.
    pub fn btree_ptr(pos: Pos, ptr: &BtreePtr) -> Key {
        Key {
            pos,
            typ: KeyType::BtreePtr,
            size: 0,
            val: ValBuf::from_slice(&ptr.encode()),
        }
    }
    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        KEY_HEADER_BYTES + self.val.len()
    }
    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_key(out, self.pos, self.typ, self.size, &self.val);
    }
    /// Borrowed view.
    pub fn as_ref(&self) -> KeyRef<'_> {
        KeyRef {
            pos: self.pos,
            typ: self.typ,
            size: self.size,
            val: &self.val,
        }
    }
    /// True for whiteouts.
    pub fn is_deleted(&self) -> bool {
        self.typ == KeyType::Deleted
    }
}

/// Appends a key record to `out`.
pub fn encode_key(out: &mut Vec<u8>, pos: Pos, typ: KeyType, size: u32, val: &[u8]) {
    debug_assert!(val.len() <= MAX_VAL_BYTES);
    let bytes = u16::try_from(KEY_HEADER_BYTES + val.len()).unwrap_or(u16::MAX);
    let h = KeyHeaderDisk {
        bytes: U16::new(bytes),
        typ: typ as u8,
        flags: 0,
        size: U32::new(size),
        inode: U64::new(pos.inode),
        offset: U64::new(pos.offset),
        snapshot: U32::new(pos.snapshot),
    };
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(val);
}

/// A borrowed, decoded key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef<'a> {
    /// Position.
    pub pos: Pos,
    /// Type.
    pub typ: KeyType,
    /// Extent size in sectors.
    pub size: u32,
    /// Value bytes.
    pub val: &'a [u8],
}

impl KeyRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Key {
        Key {
            pos: self.pos,
            typ: self.typ,
            size: self.size,
            val: ValBuf::from_slice(self.val),
        }
    }
    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        KEY_HEADER_BYTES + self.val.len()
    }
    /// True for whiteouts.
    pub fn is_deleted(&self) -> bool {
        self.typ == KeyType::Deleted
    }
}

/// Reads only the position of the key record at the start of `buf` (no checks beyond length):
/// the fast path for searching sets of records that were validated when loaded.
#[inline]
pub fn peek_pos(buf: &[u8]) -> Option<Pos> {
    let (h, _) = KeyHeaderDisk::ref_from_prefix(buf).ok()?;
    Some(Pos {
        inode: h.inode.get(),
        offset: h.offset.get(),
        snapshot: h.snapshot.get(),
    })
}

/// Decodes and checks one key record at the start of `buf`; returns it and its length.
/// Checks: the length fits, the type is known, the value is valid for its type.
pub fn decode_key(buf: &[u8]) -> Result<(KeyRef<'_>, usize), FormatError> {
    let (h, _) = KeyHeaderDisk::ref_from_prefix(buf).map_err(|_| FormatError::Short {
        what: "key",
        need: KEY_HEADER_BYTES,
        have: buf.len(),
    })?;
    let bytes = usize::from(h.bytes.get());
    if !(KEY_HEADER_BYTES..=KEY_HEADER_BYTES + MAX_VAL_BYTES).contains(&bytes) {
        return Err(FormatError::invalid(
            "key",
            "bytes",
            format!("length {bytes} out of range"),
        ));
    }
    let Some(val) = buf.get(KEY_HEADER_BYTES..bytes) else {
        return Err(FormatError::Short {
            what: "key",
            need: bytes,
            have: buf.len(),
        });
    };
    let typ = KeyType::from_u8(h.typ).ok_or_else(|| {
        FormatError::invalid("key", "type", format!("unknown key type {}", h.typ))
    })?;
    if h.flags != 0 {
        return Err(FormatError::invalid(
            "key",
            "flags",
            format!("unknown flags {:#x}", h.flags),
        ));
    }
    let k = KeyRef {
        pos: Pos {
            inode: h.inode.get(),
            offset: h.offset.get(),
            snapshot: h.snapshot.get(),
        },
        typ,
        size: h.size.get(),
        val,
    };
    validate_value(&k)?;
    Ok((k, bytes))
}

/// Checks a key's value against its type (the one validate implementation per key type).
pub fn validate_value(k: &KeyRef<'_>) -> Result<(), FormatError> {
    match k.typ {
        KeyType::Deleted => {
            if !k.val.is_empty() || k.size != 0 {
                return Err(FormatError::invalid(
                    "key",
                    "value",
                    "a deleted key has a value or size",
                ));
            }
        }
        KeyType::Cookie => {
            if k.size != 0 {
                return Err(FormatError::invalid("key", "size", "a cookie has a size"));
            }
        }
        KeyType::BtreePtr => {
            let p = BtreePtr::decode(k.val)?;
            if p.min_pos > k.pos {
                return Err(FormatError::invalid(
                    "btree_ptr",
                    "min_pos",
                    format!("child range {}..={} is reversed", p.min_pos, k.pos),
                ));
            }
        }
    }
    Ok(())
}

/// Formats a key for output (the one print implementation per key type).
pub fn key_to_string(k: &KeyRef<'_>) -> String {
    match k.typ {
        KeyType::Deleted => format!("{} deleted", k.pos),
        KeyType::Cookie => {
            let shown: String = k.val.iter().take(16).map(|b| format!("{b:02x}")).collect();
            let more = if k.val.len() > 16 { "…" } else { "" };
            format!("{} cookie len {} {shown}{more}", k.pos, k.val.len())
        }
        KeyType::BtreePtr => match BtreePtr::decode(k.val) {
            Ok(p) => format!("{} btree_ptr {}", k.pos, p),
            Err(e) => format!("{} btree_ptr <invalid: {e}>", k.pos),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_pos() -> impl Strategy<Value = Pos> {
        (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(i, o, s)| Pos::new(i, o, s))
    }

    proptest! {
        #[test]
        fn successor_and_predecessor_invert_and_order(p in arb_pos()) {
            if let Some(s) = p.successor() {
                prop_assert!(s > p);
                prop_assert_eq!(s.predecessor(), Some(p));
            }
            if let Some(q) = p.predecessor() {
                prop_assert!(q < p);
                prop_assert_eq!(q.successor(), Some(p));
            }
        }

        #[test]
        fn cookie_keys_round_trip(p in arb_pos(), v in proptest::collection::vec(any::<u8>(), 0..MAX_VAL_BYTES)) {
            let k = Key::cookie(p, &v);
            let mut b = Vec::new();
            k.encode_into(&mut b);
            let (d, len) = decode_key(&b).unwrap();
            prop_assert_eq!(len, b.len());
            prop_assert_eq!(d.to_owned(), k);
            prop_assert_eq!(peek_pos(&b), Some(p));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_key(&b);
        }
    }

    #[test]
    fn pos_parses() {
        assert_eq!("1:2:3".parse::<Pos>(), Ok(Pos::new(1, 2, 3)));
        assert_eq!("7".parse::<Pos>(), Ok(Pos::new(7, 0, 0)));
        assert_eq!("max".parse::<Pos>(), Ok(POS_MAX));
        assert!("1:2:3:4".parse::<Pos>().is_err());
        assert!("1:x".parse::<Pos>().is_err());
        assert_eq!(POS_MAX.successor(), None);
        assert_eq!(POS_MIN.predecessor(), None);
    }
}
