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
        b.is_multiple_of(SECTOR_SIZE)
            .then_some(Sector(b / SECTOR_SIZE))
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

/// Parses a size such as `4096`, `512K`, `64MiB`, `1T` or `2g` (binary units; an optional
/// `B`/`iB` suffix is accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size {s:?}: expected a number with an optional K/M/G/T/P suffix")
    })?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (use K, M, G, T or P)"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999P").is_err());
    }
}
