//! The superblock: what a device holds and how it is laid out.
//!
//! A superblock copy is a 256-byte fixed header followed by typed, variable-length field
//! records; `bytes` gives the whole length. All integers are little-endian.
//!
//! ```text
//! offset size field
//!      0   16 magic            SB_MAGIC
//!     16    4 csum             crc32c of bytes [20, bytes)
//!     20    2 version          format version that wrote this copy
//!     22    2 version_min      oldest format version able to read it
//!     24    4 bytes            length of this copy: header + fields, multiple of 8
//!     28    4 flags            SbFlags (CLEAN, ...)
//!     32    8 seq              bumped on every superblock write; the newest valid copy wins
//!     40    8 offset           byte offset of this copy on the device
//!     48   16 uuid             internal UUID (immutable; seeds other magics)
//!     64   16 user_uuid        UUID shown to users (-U)
//!     80   32 label            UTF-8, NUL padded
//!    112    4 block_size       bytes
//!    116    4 bucket_size      bytes
//!    120    4 btree_node_size  bytes
//!    124    4 reserved
//!    128    8 dev_size         bytes the filesystem was made for
//!    136    8 nbuckets         buckets [0, nbuckets) are in use; bucket i starts at i*bucket_size
//!    144    8 first_bucket     first bucket after the superblock area at the start
//!    152    8 features         incompatible features (Features)
//!    160    8 compat           compatible features (CompatFeatures)
//!    168    8 time_created     unix time, nanoseconds
//!    176    8 write_time       unix time, nanoseconds
//!    184    1 compression      0 none, 1 lz4, 2 zstd
//!    185    1 compression_level zstd level (0 = default)
//!    186    1 data_csum        0 none, 1 crc32c, 2 blake3
//!    187    1 metadata_csum    1 crc32c, 2 blake3
//!    188    4 reserved
//!    192    1 layout.nr        number of superblock copies (1..=4)
//!    193    3 reserved
//!    196    4 layout.max_bytes space reserved for each copy
//!    200   32 layout.offsets   byte offset of every copy (unused entries 0)
//!    232   24 reserved
//!    256      fields: { type u32, bytes u32, payload padded to 8 }*
//! ```
//!
//! `magic`, `csum`, `version`, `version_min` and `bytes` keep their places in every version so
//! any build can tell what it is looking at. Field records: 1 journal (bucket ranges), 2 clean
//! (written on clean shutdown: journal seq and btree roots), 3 journal-seq blacklist (ranges).
//! Types below 0x8000 must be understood by a reader; types from 0x8000 up may be skipped.
//!
//! Invariants checked by [`Superblock::validate`], on decode and before every encode: sizes are
//! powers of two and nest (block ≤ btree node ≤ bucket), copies do not overlap each other or
//! any bucket, journal ranges lie inside the buckets and do not overlap and are bounded
//! ([`JOURNAL_RANGES_MAX`], [`JOURNAL_BUCKETS_MAX`], half the buckets), sequence numbers are
//! below [`SEQ_LIMIT`], `dev_size` is at most [`DEV_SIZE_MAX`], the CLEAN flag is set exactly
//! when the clean field is present. Decoding also checks what validation cannot see: reserved
//! bytes and record padding are zero, records come in increasing type order, and the copy is
//! at most `layout.max_bytes` (64 KiB) long — so a decoded superblock encodes back to exactly
//! the bytes it came from.

use serde::Serialize;
use uuid::Uuid;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::FormatError;
use super::csum::{ChecksumType, Compression};

/// Magic number at the start of every superblock copy.
pub const SB_MAGIC: [u8; 16] = [
    0x73, 0x69, 0x78, 0x66, 0x73, 0x21, 0x0b, 0x5e, 0xc4, 0x31, 0x9a, 0x7d, 0x2e, 0x68, 0xf0, 0x15,
];
/// The format version this build writes.
pub const SB_VERSION: u16 = 1;
/// The oldest format version this build reads.
pub const SB_VERSION_MIN_SUPPORTED: u16 = 1;
/// Byte offset of the primary copy.
pub const SB_PRIMARY_OFFSET: u64 = 4096;
/// Space reserved for each copy (v1: fixed, so backups can be found without the primary).
pub const SB_MAX_BYTES: u32 = 64 * 1024;
/// Size of the fixed header.
pub const SB_HEADER_BYTES: usize = 256;
/// Most copies a layout can list.
pub const SB_MAX_COPIES: usize = 4;
/// Fewest buckets a filesystem may have after the superblock area.
pub const MIN_BUCKETS: u64 = 32;
/// Longest label, in bytes.
pub const LABEL_MAX: usize = 32;
/// Smallest and largest block sizes.
pub const BLOCK_SIZE_RANGE: (u32, u32) = (512, 65536);
/// Smallest and largest btree node sizes.
pub const BTREE_NODE_SIZE_RANGE: (u32, u32) = (4096, 1 << 20);
/// A btree node holds at least this many blocks: every node entry is padded to a block, and
/// a node must hold its first entry plus appends (with two blocks a tree of small keys cannot
/// grow without splitting forever).
pub const MIN_BLOCKS_PER_NODE: u32 = 4;
/// Smallest and largest bucket sizes.
pub const BUCKET_SIZE_RANGE: (u32, u32) = (4096, 64 << 20);
/// Sequence numbers (superblock `seq`, journal seqs in the clean section and the blacklist)
/// are below this: nothing on disk may come near `u64::MAX`, so `+ 1` never overflows.
pub const SEQ_LIMIT: u64 = 1 << 63;
/// Largest device a superblock may describe (1 EiB).
pub const DEV_SIZE_MAX: u64 = 1 << 60;
/// Most journal buckets (in all ranges together).
pub const JOURNAL_BUCKETS_MAX: u64 = 1 << 16;
/// Most journal bucket ranges.
pub const JOURNAL_RANGES_MAX: usize = 64;

const WHAT: &str = "superblock";

/// Field record types.
const FIELD_JOURNAL: u32 = 1;
const FIELD_CLEAN: u32 = 2;
const FIELD_BLACKLIST: u32 = 3;
/// Field types from here up are optional: a reader that does not know one keeps it as it is.
pub const FIELD_OPTIONAL_FROM: u32 = 0x8000;

#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct SbHeaderDisk {
    magic: [u8; 16],
    csum: U32,
    version: U16,
    version_min: U16,
    bytes: U32,
    flags: U32,
    seq: U64,
    offset: U64,
    uuid: [u8; 16],
    user_uuid: [u8; 16],
    label: [u8; 32],
    block_size: U32,
    bucket_size: U32,
    btree_node_size: U32,
    reserved0: U32,
    dev_size: U64,
    nbuckets: U64,
    first_bucket: U64,
    features: U64,
    compat: U64,
    time_created: U64,
    write_time: U64,
    compression: u8,
    compression_level: u8,
    data_csum: u8,
    metadata_csum: u8,
    reserved1: U32,
    layout_nr: u8,
    layout_reserved: [u8; 3],
    layout_max_bytes: U32,
    layout_offsets: [U64; SB_MAX_COPIES],
    reserved2: [u8; 24],
}

const _: () = assert!(size_of::<SbHeaderDisk>() == SB_HEADER_BYTES);

#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct FieldHeaderDisk {
    typ: U32,
    bytes: U32,
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct RangeDisk {
    a: U64,
    b: U64,
}

bitflags::bitflags! {
    /// Superblock state flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
    pub struct SbFlags: u32 {
        /// Shut down cleanly: the clean field holds the btree roots; no replay is needed.
        const CLEAN = 1 << 0;
        /// A check found problems it did not repair; mounting should ask for fsck.
        const NEEDS_FSCK = 1 << 1;
    }
}

bitflags::bitflags! {
    /// Incompatible features: a build that does not know a set bit must not open the image.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
    pub struct Features: u64 {
        /// Data may be lz4-compressed.
        const LZ4 = 1 << 0;
        /// Data may be zstd-compressed.
        const ZSTD = 1 << 1;
        /// Checksums may be blake3.
        const BLAKE3 = 1 << 2;
    }
}

bitflags::bitflags! {
    /// Compatible features: informational; unknown bits are kept and ignored.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
    pub struct CompatFeatures: u64 {
    }
}

/// Filesystem-wide options stored in the superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FsOptions {
    /// Compression for new data.
    pub compression: Compression,
    /// Checksum for data extents.
    pub data_csum: ChecksumType,
    /// Checksum for btree nodes and journal entries (never `none`).
    pub metadata_csum: ChecksumType,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            compression: Compression::None,
            data_csum: ChecksumType::Crc32c,
            metadata_csum: ChecksumType::Crc32c,
        }
    }
}

/// Where the superblock copies are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SbLayout {
    /// Bytes reserved for each copy.
    pub max_bytes: u32,
    /// Byte offset of each copy; the first is the primary at [`SB_PRIMARY_OFFSET`].
    pub offsets: Vec<u64>,
}

impl SbLayout {
    /// The standard v1 layout for a device of `dev_size` bytes: the primary at 4 KiB, a backup
    /// right after it, and one in the last `SB_MAX_BYTES` (4 KiB aligned) of the device.
    pub fn standard(dev_size: u64) -> SbLayout {
        let max = u64::from(SB_MAX_BYTES);
        let end = dev_size.saturating_sub(max) & !4095;
        SbLayout {
            max_bytes: SB_MAX_BYTES,
            offsets: vec![SB_PRIMARY_OFFSET, SB_PRIMARY_OFFSET + max, end],
        }
    }

    /// The buckets a standard layout leaves for `bucket_size`: `(first_bucket, nbuckets)`.
    /// Buckets start after the two copies at the head and end before the copy at the tail.
    pub fn standard_buckets(dev_size: u64, bucket_size: u32) -> (u64, u64) {
        let l = SbLayout::standard(dev_size);
        let bs = u64::from(bucket_size).max(1);
        let head_end = SB_PRIMARY_OFFSET + 2 * u64::from(l.max_bytes);
        (head_end.div_ceil(bs), l.offsets[2] / bs)
    }
}

/// A contiguous run of buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BucketRange {
    /// First bucket.
    pub start: u64,
    /// Number of buckets.
    pub nr: u64,
}

impl BucketRange {
    /// One past the last bucket.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.nr)
    }
}

/// An inclusive range of journal sequence numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SeqRange {
    /// First sequence number in the range.
    pub start: u64,
    /// Last sequence number in the range (inclusive).
    pub end: u64,
}

/// What a clean shutdown leaves: the journal sequence to continue after, and the btree roots
/// encoded as journal entries (decoded by the journal layer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CleanSection {
    /// The last journal sequence number used before shutdown.
    pub journal_seq: u64,
    /// Journal-entry encoded btree roots.
    #[serde(skip)]
    pub entries: Vec<u8>,
}

/// A field record of an optional type (≥ [`FIELD_OPTIONAL_FROM`]) this build does not know:
/// kept as read and written back unchanged, so rewriting a superblock never drops it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OptionalField {
    /// The record type.
    pub typ: u32,
    /// Its payload.
    #[serde(skip)]
    pub payload: Vec<u8>,
}

/// A decoded, validated superblock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Superblock {
    /// Format version that wrote it.
    pub version: u16,
    /// Oldest format version able to read it.
    pub version_min: u16,
    /// State flags.
    pub flags: SbFlags,
    /// Write sequence; the newest valid copy wins.
    pub seq: u64,
    /// Byte offset of this copy (set by the writer for each copy).
    pub offset: u64,
    /// Internal UUID.
    pub uuid: Uuid,
    /// User-visible UUID.
    pub user_uuid: Uuid,
    /// Label (≤ 32 bytes of UTF-8).
    pub label: String,
    /// Block size in bytes.
    pub block_size: u32,
    /// Bucket size in bytes.
    pub bucket_size: u32,
    /// Btree node size in bytes.
    pub btree_node_size: u32,
    /// Device size the filesystem was made for, in bytes.
    pub dev_size: u64,
    /// Number of buckets.
    pub nbuckets: u64,
    /// First bucket after the superblock area.
    pub first_bucket: u64,
    /// Incompatible features.
    pub features: Features,
    /// Compatible features.
    pub compat: CompatFeatures,
    /// Creation time, unix nanoseconds.
    pub time_created: u64,
    /// Time of this write, unix nanoseconds.
    pub write_time: u64,
    /// Filesystem options.
    pub options: FsOptions,
    /// Where the copies are.
    pub layout: SbLayout,
    /// Journal buckets.
    pub journal: Vec<BucketRange>,
    /// Clean-shutdown state, if the last shutdown was clean.
    pub clean: Option<CleanSection>,
    /// Journal sequence numbers that must be ignored (never flushed before a crash).
    pub blacklist: Vec<SeqRange>,
    /// Optional field records of types this build does not know, in type order.
    pub optional: Vec<OptionalField>,
}

fn is_pow2_in(v: u32, (lo, hi): (u32, u32)) -> bool {
    v.is_power_of_two() && v >= lo && v <= hi
}

impl Superblock {
    /// Features implied by the options.
    pub fn features_for(options: &FsOptions) -> Features {
        let mut f = Features::empty();
        match options.compression {
            Compression::None => {}
            Compression::Lz4 => f |= Features::LZ4,
            Compression::Zstd { .. } => f |= Features::ZSTD,
        }
        if options.data_csum == ChecksumType::Blake3
            || options.metadata_csum == ChecksumType::Blake3
        {
            f |= Features::BLAKE3;
        }
        f
    }

    /// Total journal buckets.
    pub fn journal_buckets(&self) -> u64 {
        self.journal.iter().map(|r| r.nr).sum()
    }

    /// Checks every invariant in the module docs.
    pub fn validate(&self) -> Result<(), FormatError> {
        let inv = |field: &'static str, d: String| Err(FormatError::invalid(WHAT, field, d));
        if self.version < SB_VERSION_MIN_SUPPORTED
            || self.version_min > SB_VERSION
            || self.version_min > self.version
        {
            return Err(FormatError::Version {
                what: WHAT,
                version: self.version,
                version_min: self.version_min,
                supported_min: SB_VERSION_MIN_SUPPORTED,
                supported: SB_VERSION,
            });
        }
        if self.seq == 0 || self.seq >= SEQ_LIMIT {
            return inv(
                "seq",
                format!(
                    "{} is not in 1..2^63 (sequence numbers start at 1)",
                    self.seq
                ),
            );
        }
        if self.label.len() > LABEL_MAX || self.label.contains('\0') {
            return inv(
                "label",
                format!(
                    "{:?} is longer than {LABEL_MAX} bytes or has a NUL",
                    self.label
                ),
            );
        }
        if !is_pow2_in(self.block_size, BLOCK_SIZE_RANGE) {
            return inv(
                "block_size",
                format!(
                    "{} is not a power of two in {:?}",
                    self.block_size, BLOCK_SIZE_RANGE
                ),
            );
        }
        if !is_pow2_in(self.btree_node_size, BTREE_NODE_SIZE_RANGE)
            || u64::from(self.btree_node_size)
                < u64::from(MIN_BLOCKS_PER_NODE) * u64::from(self.block_size)
        {
            return inv(
                "btree_node_size",
                format!(
                    "{} is not a power of two in {:?} and at least {MIN_BLOCKS_PER_NODE} blocks \
                     ({} bytes)",
                    self.btree_node_size,
                    BTREE_NODE_SIZE_RANGE,
                    u64::from(MIN_BLOCKS_PER_NODE) * u64::from(self.block_size)
                ),
            );
        }
        if !is_pow2_in(self.bucket_size, BUCKET_SIZE_RANGE)
            || self.bucket_size < self.btree_node_size
        {
            return inv(
                "bucket_size",
                format!(
                    "{} is not a power of two in {:?} and at least the btree node size {}",
                    self.bucket_size, BUCKET_SIZE_RANGE, self.btree_node_size
                ),
            );
        }
        if self.options.metadata_csum == ChecksumType::None {
            return inv(
                "metadata_csum",
                "metadata checksums cannot be disabled".into(),
            );
        }
        let needed = Self::features_for(&self.options);
        if !self.features.contains(needed) {
            return inv(
                "features",
                format!(
                    "options need features {:?} but only {:?} are set",
                    needed, self.features
                ),
            );
        }
        // Layout.
        let l = &self.layout;
        if l.offsets.is_empty() || l.offsets.len() > SB_MAX_COPIES {
            return inv(
                "layout",
                format!("{} copies (must be 1..={SB_MAX_COPIES})", l.offsets.len()),
            );
        }
        if l.max_bytes != SB_MAX_BYTES {
            return inv(
                "layout",
                format!(
                    "copy size {} is not {SB_MAX_BYTES} (fixed in format version 1)",
                    l.max_bytes
                ),
            );
        }
        if self.dev_size > DEV_SIZE_MAX {
            return inv(
                "dev_size",
                format!(
                    "{} bytes is more than the largest device ({DEV_SIZE_MAX} bytes)",
                    self.dev_size
                ),
            );
        }
        if l.offsets.first() != Some(&SB_PRIMARY_OFFSET) {
            return inv(
                "layout",
                format!("primary copy not at byte {SB_PRIMARY_OFFSET}"),
            );
        }
        let max = u64::from(l.max_bytes);
        for (i, &o) in l.offsets.iter().enumerate() {
            if o % 4096 != 0 || o.checked_add(max).is_none_or(|e| e > self.dev_size) {
                return inv(
                    "layout",
                    format!(
                        "copy {i} at byte {o} is unaligned or runs past the device end {}",
                        self.dev_size
                    ),
                );
            }
            for &p in &l.offsets[..i] {
                if o < p + max && p < o + max {
                    return inv("layout", format!("copies at bytes {p} and {o} overlap"));
                }
            }
        }
        if !l.offsets.contains(&self.offset) {
            return inv(
                "offset",
                format!("{} is not one of the layout's copies", self.offset),
            );
        }
        // Buckets: [first_bucket, nbuckets) must not touch any superblock copy.
        let bs = u64::from(self.bucket_size);
        let Some(buckets_end) = self.nbuckets.checked_mul(bs) else {
            return inv("nbuckets", format!("{} buckets overflow", self.nbuckets));
        };
        if buckets_end > self.dev_size {
            return inv(
                "nbuckets",
                format!(
                    "{} buckets of {} bytes exceed the device size {}",
                    self.nbuckets, self.bucket_size, self.dev_size
                ),
            );
        }
        if self.first_bucket >= self.nbuckets || self.nbuckets - self.first_bucket < MIN_BUCKETS {
            return inv(
                "nbuckets",
                format!(
                    "buckets {}..{} leave fewer than {MIN_BUCKETS} usable buckets",
                    self.first_bucket, self.nbuckets
                ),
            );
        }
        let data_start = self.first_bucket * bs;
        for &o in &l.offsets {
            if o < buckets_end && o + max > data_start {
                return inv(
                    "first_bucket",
                    format!(
                        "superblock copy at byte {o} overlaps the buckets from byte {data_start}"
                    ),
                );
            }
        }
        // Journal: 1..=JOURNAL_RANGES_MAX ranges, at most JOURNAL_BUCKETS_MAX buckets and
        // half of the usable ones.
        let usable = self.nbuckets - self.first_bucket;
        let total = self
            .journal
            .iter()
            .try_fold(0u64, |t, r| t.checked_add(r.nr));
        if self.journal.is_empty() || self.journal.len() > JOURNAL_RANGES_MAX {
            return inv(
                "journal",
                format!(
                    "{} bucket ranges (must be 1..={JOURNAL_RANGES_MAX})",
                    self.journal.len()
                ),
            );
        }
        if total.is_none_or(|t| t > JOURNAL_BUCKETS_MAX || t > usable / 2) {
            return inv(
                "journal",
                format!(
                    "{} buckets is more than {JOURNAL_BUCKETS_MAX} or half of the {usable} usable buckets",
                    total.map_or_else(|| "an overflowing number of".to_string(), |t| t.to_string())
                ),
            );
        }
        let mut ranges = self.journal.clone();
        ranges.sort_by_key(|r| r.start);
        for (i, r) in ranges.iter().enumerate() {
            if r.nr == 0 || r.start < self.first_bucket || r.end() > self.nbuckets {
                return inv(
                    "journal",
                    format!(
                        "bucket range {}+{} is empty or outside buckets {}..{}",
                        r.start, r.nr, self.first_bucket, self.nbuckets
                    ),
                );
            }
            if i > 0 && ranges[i - 1].end() > r.start {
                return inv(
                    "journal",
                    format!("bucket ranges overlap at bucket {}", r.start),
                );
            }
        }
        // Blacklist: sorted, disjoint.
        for (i, r) in self.blacklist.iter().enumerate() {
            if r.start > r.end || (i > 0 && self.blacklist[i - 1].end >= r.start) {
                return inv(
                    "blacklist",
                    format!("range {}..={} is reversed or out of order", r.start, r.end),
                );
            }
            if r.end >= SEQ_LIMIT {
                return inv(
                    "blacklist",
                    format!("range {}..={} goes past seq 2^63", r.start, r.end),
                );
            }
        }
        // Clean section: present exactly when the CLEAN flag is set.
        if self.flags.contains(SbFlags::CLEAN) != self.clean.is_some() {
            return inv(
                "clean",
                format!(
                    "the CLEAN flag is {} but the clean section is {}",
                    if self.flags.contains(SbFlags::CLEAN) {
                        "set"
                    } else {
                        "clear"
                    },
                    if self.clean.is_some() {
                        "present"
                    } else {
                        "missing"
                    }
                ),
            );
        }
        if let Some(c) = &self.clean {
            if c.entries.len() > (l.max_bytes as usize) / 2 {
                return inv(
                    "clean",
                    format!("{} bytes of roots is too large", c.entries.len()),
                );
            }
            if c.journal_seq >= SEQ_LIMIT {
                return inv(
                    "clean",
                    format!("journal seq {} is not below 2^63", c.journal_seq),
                );
            }
        }
        // Optional fields: known-optional types only, strictly increasing.
        for (i, f) in self.optional.iter().enumerate() {
            if f.typ < FIELD_OPTIONAL_FROM || (i > 0 && self.optional[i - 1].typ >= f.typ) {
                return inv(
                    "fields",
                    format!(
                        "optional field type {:#x} is below {FIELD_OPTIONAL_FROM:#x} or out of order",
                        f.typ
                    ),
                );
            }
        }
        Ok(())
    }

    /// Encodes this superblock (with `self.offset` as the copy's offset), checksummed.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        self.validate()?;
        let out = self.encode_unvalidated();
        if out.len() > self.layout.max_bytes as usize {
            return Err(FormatError::invalid(
                WHAT,
                "bytes",
                format!(
                    "{} bytes do not fit in a {}-byte copy",
                    out.len(),
                    self.layout.max_bytes
                ),
            ));
        }
        Ok(out)
    }

    /// The checksummed encoding without validating first (what [`Superblock::encode`] writes
    /// once the superblock is valid; tests use it to make checksummed garbage). Fields that do
    /// not fit their slots are cut short.
    pub fn encode_unvalidated(&self) -> Vec<u8> {
        let mut label = [0u8; 32];
        let n = self.label.len().min(LABEL_MAX);
        label[..n].copy_from_slice(&self.label.as_bytes()[..n]);
        let mut offsets = [U64::new(0); SB_MAX_COPIES];
        for (d, &o) in offsets.iter_mut().zip(&self.layout.offsets) {
            *d = U64::new(o);
        }
        let hdr = SbHeaderDisk {
            magic: SB_MAGIC,
            csum: U32::new(0),
            version: U16::new(self.version),
            version_min: U16::new(self.version_min),
            bytes: U32::new(0),
            flags: U32::new(self.flags.bits()),
            seq: U64::new(self.seq),
            offset: U64::new(self.offset),
            uuid: *self.uuid.as_bytes(),
            user_uuid: *self.user_uuid.as_bytes(),
            label,
            block_size: U32::new(self.block_size),
            bucket_size: U32::new(self.bucket_size),
            btree_node_size: U32::new(self.btree_node_size),
            reserved0: U32::new(0),
            dev_size: U64::new(self.dev_size),
            nbuckets: U64::new(self.nbuckets),
            first_bucket: U64::new(self.first_bucket),
            features: U64::new(self.features.bits()),
            compat: U64::new(self.compat.bits()),
            time_created: U64::new(self.time_created),
            write_time: U64::new(self.write_time),
            compression: self.options.compression.type_u8(),
            compression_level: self.options.compression.level_u8(),
            data_csum: self.options.data_csum as u8,
            metadata_csum: self.options.metadata_csum as u8,
            reserved1: U32::new(0),
            layout_nr: u8::try_from(self.layout.offsets.len()).unwrap_or(0),
            layout_reserved: [0; 3],
            layout_max_bytes: U32::new(self.layout.max_bytes),
            layout_offsets: offsets,
            reserved2: [0; 24],
        };
        let mut out = hdr.as_bytes().to_vec();
        let push_field = |out: &mut Vec<u8>, typ: u32, payload: &[u8]| {
            let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(
                FieldHeaderDisk {
                    typ: U32::new(typ),
                    bytes: U32::new(len),
                }
                .as_bytes(),
            );
            out.extend_from_slice(payload);
            out.resize(out.len().next_multiple_of(8), 0);
        };
        let ranges = |v: &mut dyn Iterator<Item = (u64, u64)>| -> Vec<u8> {
            v.flat_map(|(a, b)| {
                RangeDisk {
                    a: U64::new(a),
                    b: U64::new(b),
                }
                .as_bytes()
                .to_vec()
            })
            .collect()
        };
        // Fields in increasing type order (decode insists on it: one encoding per superblock).
        push_field(
            &mut out,
            FIELD_JOURNAL,
            &ranges(&mut self.journal.iter().map(|r| (r.start, r.nr))),
        );
        if let Some(c) = &self.clean {
            let mut p = c.journal_seq.to_le_bytes().to_vec();
            p.extend_from_slice(&c.entries);
            push_field(&mut out, FIELD_CLEAN, &p);
        }
        if !self.blacklist.is_empty() {
            push_field(
                &mut out,
                FIELD_BLACKLIST,
                &ranges(&mut self.blacklist.iter().map(|r| (r.start, r.end))),
            );
        }
        for f in &self.optional {
            push_field(&mut out, f.typ, &f.payload);
        }
        let bytes = u32::try_from(out.len()).unwrap_or(u32::MAX);
        out[24..28].copy_from_slice(&bytes.to_le_bytes());
        let csum = crc32c::crc32c(&out[20..]);
        out[16..20].copy_from_slice(&csum.to_le_bytes());
        out
    }

    /// Reads the length a superblock copy claims, from its first [`SB_HEADER_BYTES`] bytes, after
    /// checking the magic. Lets a reader fetch exactly one copy.
    pub fn peek_len(buf: &[u8]) -> Result<usize, FormatError> {
        let (hdr, _) = SbHeaderDisk::ref_from_prefix(buf).map_err(|_| FormatError::Short {
            what: WHAT,
            need: SB_HEADER_BYTES,
            have: buf.len(),
        })?;
        if hdr.magic != SB_MAGIC {
            return Err(FormatError::BadMagic { what: WHAT });
        }
        let bytes = hdr.bytes.get() as usize;
        if bytes < SB_HEADER_BYTES || !bytes.is_multiple_of(8) || bytes > SB_MAX_BYTES as usize {
            return Err(FormatError::invalid(
                WHAT,
                "bytes",
                format!(
                    "length {bytes} is impossible (a multiple of 8 in {SB_HEADER_BYTES}..={SB_MAX_BYTES})"
                ),
            ));
        }
        Ok(bytes)
    }

    /// Decodes and validates one superblock copy. `buf` may run past the copy (its length is
    /// the header's `bytes`); what follows is not looked at.
    pub fn decode(buf: &[u8]) -> Result<Superblock, FormatError> {
        let bytes = Self::peek_len(buf)?;
        let Some(body) = buf.get(..bytes) else {
            return Err(FormatError::Short {
                what: WHAT,
                need: bytes,
                have: buf.len(),
            });
        };
        let (hdr, mut rest) =
            SbHeaderDisk::ref_from_prefix(body).map_err(|_| FormatError::Short {
                what: WHAT,
                need: SB_HEADER_BYTES,
                have: body.len(),
            })?;
        let computed = crc32c::crc32c(body.get(20..).unwrap_or_default());
        if computed != hdr.csum.get() {
            return Err(FormatError::BadChecksum {
                what: WHAT,
                stored: u64::from(hdr.csum.get()),
                computed: u64::from(computed),
            });
        }
        let (version, version_min) = (hdr.version.get(), hdr.version_min.get());
        if version_min > SB_VERSION || version < SB_VERSION_MIN_SUPPORTED || version_min > version {
            return Err(FormatError::Version {
                what: WHAT,
                version,
                version_min,
                supported_min: SB_VERSION_MIN_SUPPORTED,
                supported: SB_VERSION,
            });
        }
        let unknown = hdr.features.get() & !Features::all().bits();
        if unknown != 0 {
            return Err(FormatError::Features {
                what: WHAT,
                bits: unknown,
            });
        }
        let flags = SbFlags::from_bits(hdr.flags.get()).ok_or_else(|| {
            FormatError::invalid(
                WHAT,
                "flags",
                format!("unknown bits {:#x}", hdr.flags.get()),
            )
        })?;
        for (name, zero) in [
            ("reserved (bytes 124..128)", hdr.reserved0.get() == 0),
            ("reserved (bytes 188..192)", hdr.reserved1.get() == 0),
            ("reserved (bytes 193..196)", hdr.layout_reserved == [0; 3]),
            ("reserved (bytes 232..256)", hdr.reserved2 == [0; 24]),
        ] {
            if !zero {
                return Err(FormatError::invalid(WHAT, name, "not zero"));
            }
        }
        if bytes > hdr.layout_max_bytes.get() as usize {
            return Err(FormatError::invalid(
                WHAT,
                "bytes",
                format!(
                    "the copy is {bytes} bytes, more than the {} its layout reserves",
                    hdr.layout_max_bytes.get()
                ),
            ));
        }
        let label_len = hdr
            .label
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(hdr.label.len());
        if hdr.label[label_len..].iter().any(|&b| b != 0) {
            return Err(FormatError::invalid(
                WHAT,
                "label",
                "bytes after the terminating NUL",
            ));
        }
        let label = std::str::from_utf8(&hdr.label[..label_len])
            .map_err(|_| FormatError::invalid(WHAT, "label", "not UTF-8"))?
            .to_string();
        let nr = usize::from(hdr.layout_nr);
        if nr == 0 || nr > SB_MAX_COPIES {
            return Err(FormatError::invalid(WHAT, "layout", format!("{nr} copies")));
        }
        if hdr.layout_offsets[nr..].iter().any(|o| o.get() != 0) {
            return Err(FormatError::invalid(
                WHAT,
                "layout",
                "offsets listed past the copy count",
            ));
        }
        let options = FsOptions {
            compression: Compression::from_u8(hdr.compression, hdr.compression_level, WHAT)?,
            data_csum: ChecksumType::from_u8(hdr.data_csum, WHAT, "data_csum")?,
            metadata_csum: ChecksumType::from_u8(hdr.metadata_csum, WHAT, "metadata_csum")?,
        };
        let mut sb = Superblock {
            version,
            version_min,
            flags,
            seq: hdr.seq.get(),
            offset: hdr.offset.get(),
            uuid: Uuid::from_bytes(hdr.uuid),
            user_uuid: Uuid::from_bytes(hdr.user_uuid),
            label,
            block_size: hdr.block_size.get(),
            bucket_size: hdr.bucket_size.get(),
            btree_node_size: hdr.btree_node_size.get(),
            dev_size: hdr.dev_size.get(),
            nbuckets: hdr.nbuckets.get(),
            first_bucket: hdr.first_bucket.get(),
            features: Features::from_bits_retain(hdr.features.get()),
            compat: CompatFeatures::from_bits_retain(hdr.compat.get()),
            time_created: hdr.time_created.get(),
            write_time: hdr.write_time.get(),
            options,
            layout: SbLayout {
                max_bytes: hdr.layout_max_bytes.get(),
                offsets: hdr.layout_offsets[..nr].iter().map(|o| o.get()).collect(),
            },
            journal: Vec::new(),
            clean: None,
            blacklist: Vec::new(),
            optional: Vec::new(),
        };
        let mut seen_journal = false;
        let mut last_type: Option<u32> = None;
        while !rest.is_empty() {
            let (fh, after) =
                FieldHeaderDisk::ref_from_prefix(rest).map_err(|_| FormatError::Short {
                    what: WHAT,
                    need: 8,
                    have: rest.len(),
                })?;
            let len = fh.bytes.get() as usize;
            let typ = fh.typ.get();
            // `bytes` is a multiple of 8 and so is every record, so the padding is in `after`
            // whenever the payload is.
            let (Some(payload), Some(padding)) =
                (after.get(..len), after.get(len..len.next_multiple_of(8)))
            else {
                return Err(FormatError::invalid(
                    WHAT,
                    "fields",
                    format!("field type {typ} claims {len} bytes, {} left", after.len()),
                ));
            };
            if padding.iter().any(|&b| b != 0) {
                return Err(FormatError::invalid(
                    WHAT,
                    "fields",
                    format!("field type {typ} has non-zero padding"),
                ));
            }
            rest = after.get(len.next_multiple_of(8)..).unwrap_or_default();
            if last_type.is_some_and(|t| t >= typ) {
                return Err(FormatError::invalid(
                    WHAT,
                    "fields",
                    format!("field type {typ} repeated or out of order (types must increase)"),
                ));
            }
            last_type = Some(typ);
            match typ {
                FIELD_JOURNAL => {
                    seen_journal = true;
                    sb.journal = decode_ranges(payload, "journal")?
                        .into_iter()
                        .map(|(start, nr)| BucketRange { start, nr })
                        .collect();
                }
                FIELD_CLEAN => {
                    let (seq, entries) = payload.split_at_checked(8).ok_or_else(|| {
                        FormatError::invalid(WHAT, "clean", "shorter than its 8-byte header")
                    })?;
                    let mut s = [0u8; 8];
                    s.copy_from_slice(seq);
                    sb.clean = Some(CleanSection {
                        journal_seq: u64::from_le_bytes(s),
                        entries: entries.to_vec(),
                    });
                }
                FIELD_BLACKLIST => {
                    if payload.is_empty() {
                        // Never written: an empty blacklist has no field.
                        return Err(FormatError::invalid(WHAT, "blacklist", "empty field"));
                    }
                    sb.blacklist = decode_ranges(payload, "blacklist")?
                        .into_iter()
                        .map(|(start, end)| SeqRange { start, end })
                        .collect();
                }
                t if t >= FIELD_OPTIONAL_FROM => sb.optional.push(OptionalField {
                    typ: t,
                    payload: payload.to_vec(),
                }),
                t => {
                    return Err(FormatError::invalid(
                        WHAT,
                        "fields",
                        format!("unknown field type {t}"),
                    ));
                }
            }
        }
        if !seen_journal {
            return Err(FormatError::invalid(WHAT, "journal", "no journal field"));
        }
        sb.validate()?;
        Ok(sb)
    }
}

fn decode_ranges(payload: &[u8], field: &'static str) -> Result<Vec<(u64, u64)>, FormatError> {
    if !payload.len().is_multiple_of(16) {
        return Err(FormatError::invalid(
            WHAT,
            field,
            format!("{} bytes is not a whole number of ranges", payload.len()),
        ));
    }
    Ok(payload
        .chunks_exact(16)
        .filter_map(|c| RangeDisk::read_from_bytes(c).ok())
        .map(|r| (r.a.get(), r.b.get()))
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid superblock for a device of `dev_size` bytes with the given geometry.
    pub(crate) fn sample(dev_size: u64, bucket: u32, node: u32) -> Superblock {
        let layout = SbLayout::standard(dev_size);
        let (first_bucket, nbuckets) = SbLayout::standard_buckets(dev_size, bucket);
        Superblock {
            version: SB_VERSION,
            version_min: 1,
            flags: SbFlags::empty(),
            seq: 1,
            offset: SB_PRIMARY_OFFSET,
            uuid: Uuid::from_u128(0x1234),
            user_uuid: Uuid::from_u128(0x5678),
            label: "test".into(),
            block_size: 4096,
            bucket_size: bucket,
            btree_node_size: node,
            dev_size,
            nbuckets,
            first_bucket,
            features: Features::empty(),
            compat: CompatFeatures::empty(),
            time_created: 1,
            write_time: 2,
            options: FsOptions::default(),
            journal: vec![BucketRange {
                start: first_bucket,
                nr: 8,
            }],
            layout,
            clean: None,
            blacklist: vec![],
            optional: vec![],
        }
    }

    /// The sample with every kind of field record: clean section, blacklist, optional field.
    fn full_sample() -> Superblock {
        let mut sb = sample(64 << 20, 512 << 10, 256 << 10);
        sb.flags = SbFlags::CLEAN;
        sb.clean = Some(CleanSection {
            journal_seq: 77,
            entries: vec![1, 2, 3, 4, 5],
        });
        sb.blacklist = vec![SeqRange { start: 10, end: 20 }];
        sb.optional = vec![OptionalField {
            typ: 0x8001,
            payload: vec![7; 3],
        }];
        sb
    }

    fn expect_invalid(b: &[u8], field: &str) {
        match Superblock::decode(b) {
            Err(FormatError::Invalid { field: got, .. }) => {
                assert!(got.starts_with(field), "expected {field}, got {got}")
            }
            other => panic!("expected Invalid {field}, got {other:?}"),
        }
    }

    /// Recomputes the checksum over `[20, bytes)` after an edit.
    fn fix_csum(b: &mut [u8]) {
        let bytes = u32::from_le_bytes([b[24], b[25], b[26], b[27]]) as usize;
        let end = if (SB_HEADER_BYTES..=b.len()).contains(&bytes) {
            bytes
        } else {
            b.len()
        };
        let c = crc32c::crc32c(&b[20..end]);
        b[16..20].copy_from_slice(&c.to_le_bytes());
    }

    #[test]
    fn sample_round_trips() {
        for sb in [sample(64 << 20, 512 << 10, 256 << 10), full_sample()] {
            let b = sb.encode().unwrap();
            assert_eq!(Superblock::decode(&b).unwrap(), sb);
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let good = full_sample().encode().unwrap();
        for bit in 0..good.len() * 8 {
            let mut b = good.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Superblock::decode(&b).is_err(),
                "flip of bit {bit} was not detected"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected_on_disk() {
        // As read from a device: the copy followed by the zero padding of its 64 KiB area.
        // A flip in the copy is detected; one in the padding is outside the copy and harmless.
        let sb = full_sample();
        let copy = sb.encode().unwrap();
        let mut area = copy.clone();
        area.resize(SB_MAX_BYTES as usize, 0);
        for bit in 0..area.len() * 8 {
            let mut b = area.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            if bit / 8 < copy.len() {
                assert!(
                    Superblock::decode(&b).is_err(),
                    "flip of bit {bit} was not detected"
                );
            } else {
                assert_eq!(Superblock::decode(&b).as_ref(), Ok(&sb), "bit {bit}");
            }
        }
    }

    #[test]
    fn absurd_sizes_with_a_valid_checksum_are_rejected() {
        let base = sample(64 << 20, 512 << 10, 256 << 10);
        type Edit = Box<dyn Fn(&mut Superblock)>;
        let clean = || {
            Some(CleanSection {
                journal_seq: 1,
                entries: vec![],
            })
        };
        let cases: Vec<(&str, Edit)> = vec![
            ("block_size", Box::new(|s| s.block_size = 3000)),
            ("block_size", Box::new(|s| s.block_size = 1 << 20)),
            ("btree_node_size", Box::new(|s| s.btree_node_size = 1 << 30)),
            ("bucket_size", Box::new(|s| s.bucket_size = 128 << 10)),
            ("bucket_size", Box::new(|s| s.bucket_size = 0xc000_0000)),
            ("nbuckets", Box::new(|s| s.nbuckets = u64::MAX / 2)),
            ("nbuckets", Box::new(|s| s.nbuckets = s.first_bucket + 3)),
            (
                "nbuckets",
                Box::new(|s| {
                    s.dev_size = 1 << 40;
                    s.nbuckets = (1 << 40) / 1024;
                }),
            ),
            (
                "journal",
                Box::new(|s| s.journal = vec![BucketRange { start: 0, nr: 8 }]),
            ),
            (
                "journal",
                Box::new(|s| {
                    s.journal = vec![BucketRange {
                        start: s.first_bucket,
                        nr: u64::MAX,
                    }]
                }),
            ),
            (
                "journal",
                Box::new(|s| {
                    s.journal = vec![
                        BucketRange {
                            start: s.first_bucket,
                            nr: 1,
                        },
                        BucketRange {
                            start: s.first_bucket + 1,
                            nr: u64::MAX,
                        },
                    ]
                }),
            ),
            (
                "journal",
                Box::new(|s| {
                    let usable = s.nbuckets - s.first_bucket;
                    s.journal = vec![BucketRange {
                        start: s.first_bucket,
                        nr: usable / 2 + 1,
                    }]
                }),
            ),
            ("journal", Box::new(|s| s.journal.clear())),
            (
                "journal",
                Box::new(|s| {
                    s.journal = (0..65)
                        .map(|i| BucketRange {
                            start: s.first_bucket + i,
                            nr: 1,
                        })
                        .collect()
                }),
            ),
            ("layout", Box::new(|s| s.layout.offsets[2] = s.dev_size)),
            ("layout", Box::new(|s| s.layout.max_bytes = 1 << 20)),
            ("layout", Box::new(|s| s.layout.max_bytes = 4096)),
            ("dev_size", Box::new(|s| s.dev_size = u64::MAX)),
            ("seq", Box::new(|s| s.seq = u64::MAX)),
            ("seq", Box::new(|s| s.seq = SEQ_LIMIT)),
            ("seq", Box::new(|s| s.seq = 0)),
            (
                "clean",
                Box::new(move |s| {
                    s.flags = SbFlags::CLEAN;
                    s.clean = Some(CleanSection {
                        journal_seq: u64::MAX,
                        entries: vec![],
                    });
                }),
            ),
            ("clean", Box::new(|s| s.flags = SbFlags::CLEAN)),
            ("clean", Box::new(move |s| s.clean = clean())),
            (
                "blacklist",
                Box::new(|s| {
                    s.blacklist = vec![SeqRange {
                        start: 5,
                        end: u64::MAX,
                    }]
                }),
            ),
            (
                "blacklist",
                Box::new(|s| {
                    s.blacklist = vec![SeqRange { start: 5, end: 9 }, SeqRange { start: 2, end: 3 }]
                }),
            ),
        ];
        for (field, f) in cases {
            let mut sb = base.clone();
            f(&mut sb);
            assert!(sb.validate().is_err(), "{field}: validate accepted {sb:?}");
            assert!(sb.encode().is_err(), "{field}: encode accepted it");
            // A checksummed but absurd image.
            expect_invalid(&sb.encode_unvalidated(), field);
        }
    }

    #[test]
    fn reserved_bytes_must_be_zero() {
        let good = full_sample().encode().unwrap();
        for at in [124usize, 127, 188, 191, 193, 195, 232, 255] {
            let mut b = good.clone();
            b[at] = 1;
            fix_csum(&mut b);
            expect_invalid(&b, "reserved");
        }
    }

    #[test]
    fn copy_length_is_bounded_by_the_copy_area() {
        let good = full_sample().encode().unwrap();
        for bytes in [SB_MAX_BYTES + 8, 1 << 20, !7u32, 248, 257] {
            let mut b = good.clone();
            b.resize(b.len().max(bytes as usize).min(2 << 20), 0);
            b[24..28].copy_from_slice(&bytes.to_le_bytes());
            fix_csum(&mut b);
            expect_invalid(&b, "bytes");
        }
    }

    #[test]
    fn field_records_are_canonical() {
        let sb = full_sample();
        let good = sb.encode().unwrap();
        // Journal record at 256: 8-byte header + 16-byte range. Clean record at 280:
        // 8-byte header + 13-byte payload + 3 bytes of padding at 301..304.
        assert_eq!(u32::from_le_bytes(good[280..284].try_into().unwrap()), 2);
        let mut b = good.clone();
        b[302] = 1;
        fix_csum(&mut b);
        expect_invalid(&b, "fields");
        // Types out of order: swap the journal's type with the clean section's.
        let mut b = good.clone();
        b[256] = 2;
        b[280] = 1;
        fix_csum(&mut b);
        expect_invalid(&b, "fields");
        // A repeated type.
        let mut b = good.clone();
        b[280] = 1;
        fix_csum(&mut b);
        expect_invalid(&b, "fields");
        // An unknown required type.
        let mut b = good.clone();
        b[280] = 9;
        fix_csum(&mut b);
        expect_invalid(&b, "fields");
        // The unknown optional field survives a decode and re-encode.
        let d = Superblock::decode(&good).unwrap();
        assert_eq!(d.optional, sb.optional);
        assert_eq!(d.encode().unwrap(), good);
        // An empty blacklist field is never written, so it is not accepted either.
        let mut sb2 = sample(64 << 20, 512 << 10, 256 << 10);
        sb2.optional = vec![];
        let mut b = sb2.encode_unvalidated();
        b.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
        let len = b.len() as u32;
        b[24..28].copy_from_slice(&len.to_le_bytes());
        fix_csum(&mut b);
        expect_invalid(&b, "blacklist");
    }

    #[derive(Clone, Debug)]
    struct Shape {
        log_block: u32,
        log_node: u32,
        log_bucket: u32,
        head_copies: u64,
        tail_copies: u64,
        extra_first: u64,
        extra_buckets: u64,
        journal: Vec<(u64, u64)>,
        reverse_journal: bool,
        offset_pick: usize,
    }

    fn arb_shape() -> impl Strategy<Value = Shape> {
        (
            (9u32..=16, 12u32..=20, 12u32..=26),
            (1u64..=2, 0u64..=2, 0u64..3, 0u64..4096),
            proptest::collection::vec((any::<u64>(), any::<u64>()), 1..=4),
            any::<bool>(),
            any::<usize>(),
        )
            .prop_map(
                |((lb, ln, lx), (head, tail, xf, xb), journal, reverse_journal, offset_pick)| {
                    let log_node = ln.max(lb + 2).max(12);
                    Shape {
                        log_block: lb,
                        log_node,
                        log_bucket: lx.max(log_node),
                        head_copies: head,
                        tail_copies: tail,
                        extra_first: xf,
                        // Big buckets make big devices; keep the bucket count modest for them.
                        extra_buckets: if lx > 20 { xb % 64 } else { xb },
                        journal,
                        reverse_journal,
                        offset_pick,
                    }
                },
            )
    }

    /// Geometry from a shape: standard and non-standard layouts (1..=4 copies, 1 or 2 at the
    /// head, 0..=2 after the buckets), block sizes up to 64K (nodes of at least 4 blocks),
    /// buckets up to the maximum, 1..=4 journal ranges.
    fn shaped(sh: &Shape) -> Superblock {
        let block = 1u32 << sh.log_block;
        let node = 1u32 << sh.log_node;
        let bucket = 1u32 << sh.log_bucket;
        let bs = u64::from(bucket);
        let max = u64::from(SB_MAX_BYTES);
        let head_end = SB_PRIMARY_OFFSET + sh.head_copies * max;
        let first_bucket = head_end.div_ceil(bs) + sh.extra_first;
        let nbuckets = first_bucket + MIN_BUCKETS + sh.extra_buckets;
        let tail = nbuckets * bs;
        let mut offsets: Vec<u64> = (0..sh.head_copies)
            .map(|i| SB_PRIMARY_OFFSET + i * max)
            .collect();
        offsets.extend((0..sh.tail_copies).map(|i| tail + i * max));
        // Room for the tail copies, or some slack after the buckets when there are none.
        let dev_size = tail + sh.tail_copies.max(1) * max + 4096;
        let usable = nbuckets - first_bucket;
        let k = sh.journal.len() as u64;
        let slot = usable / k;
        let mut journal: Vec<BucketRange> = sh
            .journal
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| {
                let nr = 1 + a % (slot / 2).max(1);
                let off = b % (slot - nr + 1);
                BucketRange {
                    start: first_bucket + i as u64 * slot + off,
                    nr,
                }
            })
            .collect();
        if sh.reverse_journal {
            journal.reverse();
        }
        let mut sb = sample(dev_size, bucket, node);
        sb.block_size = block;
        sb.first_bucket = first_bucket;
        sb.nbuckets = nbuckets;
        sb.offset = offsets[sh.offset_pick % offsets.len()];
        sb.layout = SbLayout {
            max_bytes: SB_MAX_BYTES,
            offsets,
        };
        sb.journal = journal;
        sb
    }

    fn arb_sb() -> impl Strategy<Value = Superblock> {
        (
            arb_shape(),
            (any::<u128>(), any::<u128>()),
            "[a-zA-Z0-9é _-]{0,16}",
            1u64..SEQ_LIMIT,
            (0u8..3, 1u8..=22, 0u8..3, 1u8..3),
            proptest::option::of((
                0u64..SEQ_LIMIT,
                proptest::collection::vec(any::<u8>(), 0..200),
            )),
            proptest::collection::vec(1u64..1000, 0..6),
            (
                any::<bool>(),
                any::<u64>(),
                any::<u64>(),
                any::<(u64, u64)>(),
            ),
            proptest::collection::vec(
                (1u32..100, proptest::collection::vec(any::<u8>(), 0..40)),
                0..3,
            ),
        )
            .prop_map(
                |(
                    shape,
                    (u1, u2),
                    label,
                    seq,
                    (ct, lvl, dc, mc),
                    clean,
                    bl,
                    (needs_fsck, extra_features, compat, (t1, t2)),
                    optional,
                )| {
                    let mut sb = shaped(&shape);
                    let compression = match ct {
                        0 => Compression::None,
                        1 => Compression::Lz4,
                        _ => Compression::Zstd { level: lvl },
                    };
                    let options = FsOptions {
                        compression,
                        data_csum: ChecksumType::from_u8(dc, "", "").unwrap(),
                        metadata_csum: ChecksumType::from_u8(mc, "", "").unwrap(),
                    };
                    let mut start = 0;
                    let blacklist = bl
                        .iter()
                        .map(|&len| {
                            let r = SeqRange {
                                start: start + 1,
                                end: start + len,
                            };
                            start += len + 1;
                            r
                        })
                        .collect();
                    let mut flags = SbFlags::empty();
                    flags.set(SbFlags::CLEAN, clean.is_some());
                    flags.set(SbFlags::NEEDS_FSCK, needs_fsck);
                    let mut typ = FIELD_OPTIONAL_FROM;
                    sb.optional = optional
                        .into_iter()
                        .map(|(step, payload)| {
                            typ += step;
                            OptionalField { typ, payload }
                        })
                        .collect();
                    sb.flags = flags;
                    sb.seq = seq;
                    sb.uuid = Uuid::from_u128(u1);
                    sb.user_uuid = Uuid::from_u128(u2);
                    sb.label = label;
                    sb.features = Superblock::features_for(&options)
                        | Features::from_bits_truncate(extra_features);
                    sb.compat = CompatFeatures::from_bits_retain(compat);
                    sb.time_created = t1;
                    sb.write_time = t2;
                    sb.options = options;
                    sb.clean = clean.map(|(journal_seq, entries)| CleanSection {
                        journal_seq,
                        entries,
                    });
                    sb.blacklist = blacklist;
                    sb
                },
            )
    }

    /// The byte offsets and widths of the header's fields (for field-level mutations).
    const HEADER_FIELDS: &[(usize, usize)] = &[
        (20, 2),
        (22, 2),
        (24, 4),
        (28, 4),
        (32, 8),
        (40, 8),
        (48, 16),
        (64, 16),
        (80, 32),
        (112, 4),
        (116, 4),
        (120, 4),
        (124, 4),
        (128, 8),
        (136, 8),
        (144, 8),
        (152, 8),
        (160, 8),
        (168, 8),
        (176, 8),
        (184, 1),
        (185, 1),
        (186, 1),
        (187, 1),
        (188, 4),
        (192, 1),
        (193, 3),
        (196, 4),
        (200, 8),
        (208, 8),
        (216, 8),
        (224, 8),
        (232, 24),
    ];

    #[derive(Clone, Debug)]
    enum Mutation {
        /// Set byte `at % len` to `v`.
        Byte(usize, u8),
        /// Overwrite header field `i % n` with a little-endian value.
        Field(usize, u64),
        /// Overwrite a header field with a small value (0..=64) or a power of two.
        FieldSmall(usize, u8),
        /// Add `d` to the u32 at a random 4-aligned offset in the field records.
        Record(usize, i8),
    }

    fn arb_mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(a, v)| Mutation::Byte(a, v)),
            (any::<usize>(), any::<u64>()).prop_map(|(a, v)| Mutation::Field(a, v)),
            (any::<usize>(), any::<u8>()).prop_map(|(a, v)| Mutation::FieldSmall(a, v)),
            (any::<usize>(), any::<i8>()).prop_map(|(a, d)| Mutation::Record(a, d)),
        ]
    }

    fn mutate(b: &mut [u8], m: &Mutation) {
        let put = |b: &mut [u8], (at, w): (usize, usize), v: u64| {
            let bytes = v.to_le_bytes();
            for i in 0..w {
                b[at + i] = bytes.get(i).copied().unwrap_or(0);
            }
        };
        match *m {
            Mutation::Byte(a, v) => {
                let i = a % b.len();
                b[i] = v;
            }
            Mutation::Field(i, v) => put(b, HEADER_FIELDS[i % HEADER_FIELDS.len()], v),
            Mutation::FieldSmall(i, v) => {
                let v = if v < 64 {
                    u64::from(v)
                } else {
                    1u64 << (v % 64)
                };
                put(b, HEADER_FIELDS[i % HEADER_FIELDS.len()], v)
            }
            Mutation::Record(a, d) => {
                let words = (b.len() - SB_HEADER_BYTES) / 4;
                let at = SB_HEADER_BYTES + 4 * (a % words);
                let v = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
                let v = v.wrapping_add_signed(i32::from(d));
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    /// The mutation test is only worth something if mutants get past the checksum and both
    /// outcomes happen: some are rejected by validation, some decode (and round-trip).
    #[test]
    fn mutations_reach_both_outcomes() {
        use proptest::test_runner::{Config, TestRunner};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (ok, invalid) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut runner = TestRunner::new(Config {
            cases: 2000,
            ..Config::default()
        });
        let strat = (arb_sb(), proptest::collection::vec(arb_mutation(), 1..3));
        runner
            .run(&strat, |(sb, edits)| {
                let mut b = sb.encode().unwrap();
                for m in &edits {
                    mutate(&mut b, m);
                }
                fix_csum(&mut b);
                match Superblock::decode(&b) {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(FormatError::BadChecksum { .. }) => 0,
                    Err(_) => invalid.fetch_add(1, Ordering::Relaxed),
                };
                Ok(())
            })
            .unwrap();
        let (ok, invalid) = (ok.into_inner(), invalid.into_inner());
        assert!(ok > 100 && invalid > 100, "ok {ok}, invalid {invalid}");
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(sb in arb_sb()) {
            let b = sb.encode().unwrap();
            prop_assert!(b.len() <= SB_MAX_BYTES as usize);
            prop_assert_eq!(Superblock::decode(&b).unwrap(), sb);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Superblock::decode(&b);
        }

        /// Arbitrary bytes behind a real magic, a plausible length and a correct checksum, so
        /// decoding gets past the first checks.
        #[test]
        fn decoding_arbitrary_checksummed_bodies_never_panics(
            body in proptest::collection::vec(any::<u8>(), SB_HEADER_BYTES..2048),
        ) {
            let mut b = body;
            let len = b.len() & !7;
            b.truncate(len);
            b[..16].copy_from_slice(&SB_MAGIC);
            b[24..28].copy_from_slice(&(len as u32).to_le_bytes());
            fix_csum(&mut b);
            if let Ok(sb) = Superblock::decode(&b) {
                prop_assert_eq!(sb.encode().unwrap(), b);
            }
        }

        /// Valid superblocks with bytes and fields mutated and the checksum recomputed: decode
        /// fails cleanly, or what it returns validates and encodes back to the same bytes.
        #[test]
        fn mutated_superblocks_fail_cleanly_or_round_trip(
            sb in arb_sb(),
            edits in proptest::collection::vec(arb_mutation(), 1..6),
            trailing in 0usize..64,
        ) {
            let mut b = sb.encode().unwrap();
            // As on disk, the copy may be followed by more bytes (zero padding).
            b.resize(b.len() + trailing * 8, 0);
            for m in &edits {
                mutate(&mut b, m);
            }
            fix_csum(&mut b);
            if let Ok(d) = Superblock::decode(&b) {
                prop_assert!(d.validate().is_ok());
                let e = d.encode().unwrap();
                prop_assert_eq!(&e[..], &b[..e.len()]);
            }
        }
    }
}
