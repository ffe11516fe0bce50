//! Units as newtypes, so sectors, buckets, journal sequence numbers and bytes cannot be mixed.
//!
//! Only the conversions that make sense are provided: there is no `Deref` and no blanket
//! `From<u64>`. On disk these are plain little-endian integers, converted at the `format/`
//! boundary.

use serde::Serialize;

/// Bytes in one sector, the unit of device addressing.
pub const SECTOR_SIZE: u64 = 512;

/// A device address or length in 512-byte sectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Sector(pub u64);

impl Sector {
    /// The sector that starts at byte `b`, if `b` is sector-aligned.
    pub fn from_bytes_exact(b: u64) -> Option<Self> {
        b.is_multiple_of(SECTOR_SIZE).then_some(Sector(b / SECTOR_SIZE))
    }
    /// The byte address of this sector.
    pub fn bytes(self) -> u64 {
        self.0 * SECTOR_SIZE
    }
}

/// The index of a bucket on a device (bucket 0 starts at byte 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BucketIdx(pub u64);

/// A bucket generation: bumped whenever a bucket is reused, stored in every pointer into it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Gen(pub u8);

/// A journal sequence number: monotonic, never reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct JournalSeq(pub u64);

impl JournalSeq {
    /// The next sequence number.
    pub fn next(self) -> Self {
        JournalSeq(self.0 + 1)
    }
}

impl std::fmt::Display for Sector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sector {}", self.0)
    }
}

impl std::fmt::Display for JournalSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_conversions_reject_unaligned_bytes() {
        assert_eq!(Sector::from_bytes_exact(4096), Some(Sector(8)));
        assert_eq!(Sector::from_bytes_exact(4097), None);
        assert_eq!(Sector(8).bytes(), 4096);
    }
}
