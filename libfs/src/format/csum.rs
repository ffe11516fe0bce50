//! Checksum and compression types as stored on disk, and checksum computation.
//!
//! Checksums are stored in 16 bytes whatever the type: crc32c uses the first 4 (little-endian),
//! blake3 keeps the first 16 bytes of its 256-bit hash, `none` stores zeros.

use serde::Serialize;

use super::FormatError;

/// A checksum algorithm. The numbers are on-disk ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumType {
    /// No checksum (data only).
    None = 0,
    /// CRC-32C (Castagnoli), hardware accelerated where available.
    Crc32c = 1,
    /// BLAKE3, truncated to 128 bits.
    Blake3 = 2,
}

/// A stored checksum value (16 bytes whatever the type).
pub type Csum = [u8; 16];

impl ChecksumType {
    /// Decodes the on-disk number.
    pub fn from_u8(v: u8, what: &'static str, field: &'static str) -> Result<Self, FormatError> {
        match v {
            0 => Ok(ChecksumType::None),
            1 => Ok(ChecksumType::Crc32c),
            2 => Ok(ChecksumType::Blake3),
            _ => Err(FormatError::invalid(
                what,
                field,
                format!("unknown checksum type {v}"),
            )),
        }
    }

    /// The name used on command lines and in output.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumType::None => "none",
            ChecksumType::Crc32c => "crc32c",
            ChecksumType::Blake3 => "blake3",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(ChecksumType::None),
            "crc32c" => Some(ChecksumType::Crc32c),
            "blake3" => Some(ChecksumType::Blake3),
            _ => None,
        }
    }

    /// Checksums the concatenation of `parts`.
    pub fn compute(self, parts: &[&[u8]]) -> Csum {
        let mut out = [0u8; 16];
        match self {
            ChecksumType::None => {}
            ChecksumType::Crc32c => {
                let mut c = 0u32;
                for p in parts {
                    c = crc32c::crc32c_append(c, p);
                }
                out[..4].copy_from_slice(&c.to_le_bytes());
            }
            ChecksumType::Blake3 => {
                let mut h = blake3::Hasher::new();
                for p in parts {
                    h.update(p);
                }
                let full = h.finalize();
                out.copy_from_slice(&full.as_bytes()[..16]);
            }
        }
        out
    }
}

/// The low 64 bits of a stored checksum, for messages.
pub fn csum_display(c: &Csum) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&c[..8]);
    u64::from_le_bytes(b)
}

/// A compression algorithm and level. The type numbers are on-disk ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Compression {
    /// Store data as written.
    None,
    /// LZ4 (`lz4_flex`): fast, modest ratio.
    Lz4,
    /// Zstandard at a level 1..=22 (0 = the library default, 3).
    Zstd {
        /// Compression level; 0 means the default.
        level: u8,
    },
}

/// Highest zstd level accepted.
pub const ZSTD_MAX_LEVEL: u8 = 22;

impl Compression {
    /// On-disk type number.
    pub fn type_u8(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd { .. } => 2,
        }
    }
    /// On-disk level byte.
    pub fn level_u8(self) -> u8 {
        match self {
            Compression::Zstd { level } => level,
            _ => 0,
        }
    }
    /// Decodes type and level bytes.
    pub fn from_u8(t: u8, level: u8, what: &'static str) -> Result<Self, FormatError> {
        match (t, level) {
            (0, 0) => Ok(Compression::None),
            (1, 0) => Ok(Compression::Lz4),
            (2, l) if l <= ZSTD_MAX_LEVEL => Ok(Compression::Zstd { level: l }),
            (0 | 1, l) => Err(FormatError::invalid(
                what,
                "compression level",
                format!("level {l} given for a compression type without levels"),
            )),
            (2, l) => Err(FormatError::invalid(
                what,
                "compression level",
                format!("zstd level {l} is above {ZSTD_MAX_LEVEL}"),
            )),
            (t, _) => Err(FormatError::invalid(
                what,
                "compression",
                format!("unknown compression type {t}"),
            )),
        }
    }
    /// Parses `none`, `lz4`, `zstd` or `zstd:LEVEL`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd { level: 0 }),
            _ => {
                if let Some(l) = s.strip_prefix("zstd:") {
                    match l.parse::<u8>() {
                        Ok(l) if (1..=ZSTD_MAX_LEVEL).contains(&l) => {
                            Ok(Compression::Zstd { level: l })
                        }
                        _ => Err(format!(
                            "zstd level must be 1..={ZSTD_MAX_LEVEL}, got {l:?}"
                        )),
                    }
                } else {
                    Err(format!(
                        "unknown compression {s:?} (expected none, lz4, zstd or zstd:LEVEL)"
                    ))
                }
            }
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Lz4 => f.write_str("lz4"),
            Compression::Zstd { level: 0 } => f.write_str("zstd"),
            Compression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_reference_vector() {
        // RFC 3720 B.4: 32 bytes of zeros.
        let c = ChecksumType::Crc32c.compute(&[&[0u8; 32]]);
        assert_eq!(u32::from_le_bytes([c[0], c[1], c[2], c[3]]), 0x8a91_36aa);
    }

    #[test]
    fn checksum_of_parts_equals_checksum_of_concatenation() {
        for t in [ChecksumType::Crc32c, ChecksumType::Blake3] {
            assert_eq!(
                t.compute(&[b"hello ", b"world"]),
                t.compute(&[b"hello world"])
            );
            assert_ne!(t.compute(&[b"hello world"]), t.compute(&[b"hello worle"]));
        }
    }

    #[test]
    fn compression_parses_and_prints_round_trip() {
        for s in ["none", "lz4", "zstd", "zstd:1", "zstd:22"] {
            assert_eq!(Compression::parse(s).unwrap().to_string(), s);
        }
        assert!(Compression::parse("zstd:0").is_err());
        assert!(Compression::parse("zstd:23").is_err());
        assert!(Compression::parse("gzip").is_err());
    }
}
