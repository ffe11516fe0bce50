//! Btree ids (on-disk ABI; never reused).

use serde::Serialize;

/// Which btree a key or node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum BtreeId {
    /// File data extents, at (inode, end sector, snapshot).
    Extents = 0,
    /// Inodes, at (0, inode number, snapshot).
    Inodes = 1,
    /// Directory entries, at (dir inode, name hash, snapshot).
    Dirents = 2,
    /// Extended attributes, at (inode, name hash, snapshot).
    Xattrs = 3,
    /// Bucket allocation state, at (device, bucket, 0).
    Alloc = 4,
}

/// Number of btrees.
pub const BTREE_ID_NR: usize = 5;

impl BtreeId {
    /// All btrees, in id order.
    pub const ALL: [BtreeId; BTREE_ID_NR] = [
        BtreeId::Extents,
        BtreeId::Inodes,
        BtreeId::Dirents,
        BtreeId::Xattrs,
        BtreeId::Alloc,
    ];

    /// Decodes the on-disk number.
    pub fn from_u8(v: u8) -> Option<BtreeId> {
        BtreeId::ALL.get(usize::from(v)).copied()
    }

    /// Name for output and command lines.
    pub fn name(self) -> &'static str {
        match self {
            BtreeId::Extents => "extents",
            BtreeId::Inodes => "inodes",
            BtreeId::Dirents => "dirents",
            BtreeId::Xattrs => "xattrs",
            BtreeId::Alloc => "alloc",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<BtreeId> {
        BtreeId::ALL.into_iter().find(|b| b.name() == s)
    }

    /// Index into per-btree arrays.
    pub fn idx(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for BtreeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_dense() {
        for (i, b) in BtreeId::ALL.iter().enumerate() {
            assert_eq!(b.idx(), i);
            assert_eq!(BtreeId::from_u8(i as u8), Some(*b));
            assert_eq!(BtreeId::parse(b.name()), Some(*b));
        }
        assert_eq!(BtreeId::from_u8(BTREE_ID_NR as u8), None);
    }
}
