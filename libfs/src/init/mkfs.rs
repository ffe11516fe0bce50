//! Formatting a device: choosing and checking the geometry, refusing to overwrite something
//! that looks in use, and writing the superblocks (and, from the btree layer on, the empty
//! btrees and journal).
//!
//! mkfs never writes the whole device: it writes the superblock areas at the head and tail
//! (zeroing them, which also wipes the signatures of other filesystems there) and the little
//! metadata a new filesystem needs, so formatting a 1 TiB sparse file takes milliseconds.

use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use crate::btree::NodeAllocator;
use crate::btree::io::format_empty_root;
use crate::dev::file::{FileDevice, OpenOptions};
use crate::dev::{BlockDevice, DevError, mounts};
use crate::format::btree_id::BtreeId;
use crate::format::probe::{Signature, TAIL_PROBE_BYTES};
use crate::format::superblock::{
    BLOCK_SIZE_RANGE, BTREE_NODE_SIZE_RANGE, BUCKET_SIZE_RANGE, BucketRange, CleanSection,
    CompatFeatures, FsOptions, JOURNAL_BUCKETS_MAX, LABEL_MAX, MIN_BLOCKS_PER_NODE, MIN_BUCKETS,
    SB_MAX_BYTES, SB_PRIMARY_OFFSET, SB_VERSION, SbFlags, SbLayout, Superblock,
};
use crate::recovery::open::{btree_config, encode_roots, node_allocator};
use crate::sb::{self, SbError};

/// Default block size.
pub const DEFAULT_BLOCK_SIZE: u32 = 4096;
/// Default bucket size.
pub const DEFAULT_BUCKET_SIZE: u32 = 512 << 10;
/// Default btree node size.
pub const DEFAULT_BTREE_NODE_SIZE: u32 = 256 << 10;
/// Fewest journal buckets.
pub const MIN_JOURNAL_BUCKETS: u64 = 8;
/// Most journal buckets chosen by default.
pub const MAX_DEFAULT_JOURNAL_BUCKETS: u64 = 512;

/// What to format with. `None` means "choose the default".
#[derive(Clone, Debug, Default)]
pub struct FormatOptions {
    /// Filesystem label.
    pub label: String,
    /// User-visible UUID (random if `None`).
    pub user_uuid: Option<Uuid>,
    /// Block size in bytes.
    pub block_size: Option<u32>,
    /// Bucket size in bytes.
    pub bucket_size: Option<u32>,
    /// Btree node size in bytes.
    pub btree_node_size: Option<u32>,
    /// Journal size in buckets.
    pub journal_buckets: Option<u64>,
    /// Compression and checksum options.
    pub options: FsOptions,
    /// 0: refuse anything in use; 1 (`-f`): overwrite other signatures; 2 (`-f -f`): also
    /// format a mounted device.
    pub force: u8,
}

/// Errors from formatting.
#[derive(Debug, thiserror::Error)]
pub enum MkfsError {
    /// Device IO or open failed.
    #[error(transparent)]
    Dev(#[from] DevError),
    /// Writing the superblock failed.
    #[error(transparent)]
    Sb(#[from] SbError),
    /// The device already holds something.
    #[error("{dev}: contains {}; use -f to overwrite it", list(.found))]
    InUse {
        /// Device name.
        dev: String,
        /// What was found.
        found: Vec<String>,
    },
    /// The device is mounted.
    #[error("{dev}: is mounted on {}; refusing to format a mounted filesystem (-f -f overrides)", .at.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Mounted {
        /// Device name.
        dev: String,
        /// Mount points.
        at: Vec<PathBuf>,
    },
    /// The device is smaller than the minimum for the chosen geometry.
    #[error(
        "{dev}: device is {size} bytes; the minimum with {bucket_size}-byte buckets is {min} bytes ({MIN_BUCKETS} buckets after the superblocks)"
    )]
    TooSmall {
        /// Device name.
        dev: String,
        /// Its size.
        size: u64,
        /// The minimum.
        min: u64,
        /// The bucket size that minimum assumes.
        bucket_size: u32,
    },
    /// A size or option is invalid or inconsistent with another.
    #[error("{0}")]
    Invalid(String),
    /// `--size` is needed to create an image file.
    #[error("{}: does not exist; give --size to create an image file", .0.display())]
    SizeRequired(PathBuf),
    /// `--size` was given for something that is not a regular file, or would shrink it.
    #[error("{}: {}", .0.display(), .1)]
    BadSize(PathBuf, String),
}

fn list(v: &[String]) -> String {
    v.join(" and ")
}

/// The geometry a format will use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Geometry {
    /// Block size in bytes.
    pub block_size: u32,
    /// Bucket size in bytes.
    pub bucket_size: u32,
    /// Btree node size in bytes.
    pub btree_node_size: u32,
    /// First bucket after the head superblocks.
    pub first_bucket: u64,
    /// Number of buckets.
    pub nbuckets: u64,
    /// Journal buckets.
    pub journal_buckets: u64,
}

fn check_pow2(name: &str, v: u32, (lo, hi): (u32, u32)) -> Result<(), MkfsError> {
    if !v.is_power_of_two() {
        return Err(MkfsError::Invalid(format!(
            "{name} {v} is not a power of two"
        )));
    }
    if v < lo || v > hi {
        return Err(MkfsError::Invalid(format!(
            "{name} {v} is outside {lo}..={hi}"
        )));
    }
    Ok(())
}

/// The smallest device that holds a filesystem with `bucket_size`-byte buckets.
pub fn min_device_size(bucket_size: u32) -> u64 {
    let bs = u64::from(bucket_size);
    let head_end = SB_PRIMARY_OFFSET + 2 * u64::from(SB_MAX_BYTES);
    (head_end.div_ceil(bs) + MIN_BUCKETS) * bs + u64::from(SB_MAX_BYTES)
}

/// Chooses and checks the geometry for a device of `size` bytes (and the label).
pub fn plan_geometry(
    dev_name: &str,
    size: u64,
    dev_block: u32,
    opts: &FormatOptions,
) -> Result<Geometry, MkfsError> {
    if opts.label.len() > LABEL_MAX || opts.label.contains('\0') {
        return Err(MkfsError::Invalid(format!(
            "label {:?} is longer than {LABEL_MAX} bytes or contains a NUL",
            opts.label
        )));
    }
    let block_size = opts.block_size.unwrap_or(DEFAULT_BLOCK_SIZE.max(dev_block));
    check_pow2("block size", block_size, BLOCK_SIZE_RANGE)?;
    if block_size < dev_block {
        return Err(MkfsError::Invalid(format!(
            "block size {block_size} is smaller than the device's logical block size {dev_block}"
        )));
    }
    let btree_node_size = opts.btree_node_size.unwrap_or(DEFAULT_BTREE_NODE_SIZE);
    check_pow2("btree node size", btree_node_size, BTREE_NODE_SIZE_RANGE)?;
    let bucket_size = opts
        .bucket_size
        .unwrap_or(DEFAULT_BUCKET_SIZE.max(btree_node_size));
    check_pow2("bucket size", bucket_size, BUCKET_SIZE_RANGE)?;
    let min_node = u64::from(MIN_BLOCKS_PER_NODE) * u64::from(block_size);
    if u64::from(btree_node_size) < min_node {
        return Err(MkfsError::Invalid(format!(
            "btree node size {btree_node_size} is smaller than {MIN_BLOCKS_PER_NODE} blocks \
             ({min_node} bytes for {block_size}-byte blocks): choose --btree-node-size \
             {min_node} or more, or a smaller --block-size"
        )));
    }
    if bucket_size < btree_node_size {
        return Err(MkfsError::Invalid(format!(
            "bucket size {bucket_size} is smaller than the btree node size {btree_node_size}"
        )));
    }
    let min = min_device_size(bucket_size);
    if size < min {
        return Err(MkfsError::TooSmall {
            dev: dev_name.to_string(),
            size,
            min,
            bucket_size,
        });
    }
    let (first_bucket, nbuckets) = SbLayout::standard_buckets(size, bucket_size);
    let usable = nbuckets - first_bucket;
    let journal_buckets = match opts.journal_buckets {
        Some(j) => {
            let max = (usable / 2).min(JOURNAL_BUCKETS_MAX);
            if j < MIN_JOURNAL_BUCKETS || j > max {
                return Err(MkfsError::Invalid(format!(
                    "journal of {j} buckets: must be {MIN_JOURNAL_BUCKETS}..={max} on this device"
                )));
            }
            j
        }
        None => (usable / 128).clamp(MIN_JOURNAL_BUCKETS, MAX_DEFAULT_JOURNAL_BUCKETS),
    };
    Ok(Geometry {
        block_size,
        bucket_size,
        btree_node_size,
        first_bucket,
        nbuckets,
        journal_buckets,
    })
}

/// Builds the superblock for `geometry` on a device of `size` bytes.
pub fn build_superblock(
    size: u64,
    g: &Geometry,
    opts: &FormatOptions,
) -> Result<Superblock, MkfsError> {
    if opts.label.len() > LABEL_MAX || opts.label.contains('\0') {
        return Err(MkfsError::Invalid(format!(
            "label {:?} is longer than {LABEL_MAX} bytes or contains a NUL",
            opts.label
        )));
    }
    let now = sb::now_ns();
    let sb = Superblock {
        version: SB_VERSION,
        version_min: SB_VERSION,
        flags: SbFlags::CLEAN,
        seq: 0,
        offset: SB_PRIMARY_OFFSET,
        uuid: Uuid::new_v4(),
        user_uuid: opts.user_uuid.unwrap_or_else(Uuid::new_v4),
        label: opts.label.clone(),
        block_size: g.block_size,
        bucket_size: g.bucket_size,
        btree_node_size: g.btree_node_size,
        dev_size: size,
        nbuckets: g.nbuckets,
        first_bucket: g.first_bucket,
        features: Superblock::features_for(&opts.options),
        compat: CompatFeatures::empty(),
        time_created: now,
        write_time: now,
        options: opts.options,
        layout: SbLayout::standard(size),
        journal: vec![BucketRange {
            start: g.first_bucket,
            nr: g.journal_buckets,
        }],
        clean: Some(CleanSection {
            journal_seq: 0,
            entries: Vec::new(),
        }),
        blacklist: Vec::new(),
        optional: Vec::new(),
    };
    let mut check = sb.clone();
    check.seq = 1;
    check
        .validate()
        .map_err(|e| MkfsError::Invalid(e.to_string()))?;
    Ok(sb)
}

/// Formats an opened device (no signature or mount checks: see [`mkfs_path`]).
pub fn format_device(dev: &dyn BlockDevice, opts: &FormatOptions) -> Result<Superblock, MkfsError> {
    let size = dev.len();
    let g = plan_geometry(dev.name(), size, dev.logical_block_size(), opts)?;
    let mut sb = build_superblock(size, &g, opts)?;
    // Zero the head (wiping other signatures, including a DOS/GPT label and a btrfs
    // superblock) and the last 128 KiB, which hold the end copy and the signatures kept at
    // the end of a device (a GPT backup header, md RAID 0.90/1.0 superblocks); nothing is
    // allocated there yet. Then the roots and every copy are written.
    let head = SB_PRIMARY_OFFSET + 2 * u64::from(SB_MAX_BYTES);
    let zeros = vec![0u8; usize::try_from(head).unwrap_or(0)];
    dev.write_at(&zeros, 0)?;
    let end_copy = sb.layout.offsets.last().copied().unwrap_or(size);
    let tail = end_copy
        .min(size.saturating_sub(TAIL_PROBE_BYTES as u64))
        .max(head);
    let tail_len = usize::try_from(size - tail).unwrap_or(0);
    dev.write_at(&vec![0u8; tail_len], tail)?;
    // An empty root leaf for every btree, recorded in the clean section.
    let cfg = btree_config(&sb, 16);
    let alloc = node_allocator(&sb);
    let mut roots = Vec::new();
    for b in BtreeId::ALL {
        let addr = alloc
            .alloc()
            .ok_or_else(|| MkfsError::Invalid("no room for the btree roots".into()))?;
        let ptr = format_empty_root(dev, &cfg, b, addr, rand::random::<u64>())
            .map_err(|e| MkfsError::Invalid(format!("writing the {b} btree root: {e}")))?;
        roots.push((b, 0u8, ptr));
    }
    sb.clean = Some(CleanSection {
        journal_seq: 0,
        entries: encode_roots(&roots),
    });
    dev.flush()?;
    sb::write_superblock(dev, &mut sb)?;
    Ok(sb)
}

/// What [`mkfs_path`] did.
#[derive(Clone, Debug)]
pub struct MkfsReport {
    /// The superblock written.
    pub sb: Superblock,
    /// Signatures that were overwritten (with `-f`).
    pub overwritten: Vec<String>,
    /// Whether an image file was created.
    pub created: bool,
    /// The `--size` asked for, when it was rounded down to a multiple of the block size.
    pub size_rounded_from: Option<u64>,
}

/// What the device at `path` holds, for refusing to overwrite it: the signatures at its head
/// and tail, and a sixfs filesystem if any copy of its superblock is valid (even when the
/// standard places hold none).
fn signatures(dev: &FileDevice) -> Result<Vec<String>, MkfsError> {
    let mut found = sb::probe_device(dev)?;
    if !found.contains(&Signature::Sixfs)
        && matches!(
            sb::read_superblock(dev),
            Ok(_) | Err(SbError::Truncated { .. })
        )
    {
        found.insert(0, Signature::Sixfs);
    }
    Ok(found.into_iter().map(|s| s.to_string()).collect())
}

/// Formats the device or image file at `path`: creates or grows an image file when `size` is
/// given (rounded down to a multiple of the block size), refuses mounted devices and devices
/// holding another filesystem (unless forced), then formats.
///
/// Nothing is written when it refuses: every check runs before the file is created, grown or
/// written, and the file is grown only once it is open exclusively (so a busy device is left
/// as it was). If formatting fails, a file this call created is removed and a file it grew is
/// cut back to its old length.
pub fn mkfs_path(
    path: &Path,
    size: Option<u64>,
    opts: &FormatOptions,
) -> Result<MkfsReport, MkfsError> {
    let meta = std::fs::metadata(path);
    let exists = match &meta {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(DevError::Open {
                path: path.to_path_buf(),
                source: std::io::Error::new(e.kind(), e.to_string()),
            }
            .into());
        }
    };
    let name = path.display().to_string();
    // --size: a whole number of blocks (an invalid block size is reported by plan_geometry).
    let block = u64::from(opts.block_size.unwrap_or(DEFAULT_BLOCK_SIZE).max(1));
    let requested = size;
    let size = size.map(|s| s / block * block);
    let size_rounded_from = requested.filter(|&r| Some(r) != size);
    let mut overwritten = Vec::new();
    if exists {
        let ro = FileDevice::open(path, &OpenOptions::default())?;
        if size.is_some() && ro.is_block_device() {
            return Err(MkfsError::BadSize(
                path.to_path_buf(),
                "--size applies only to image files, not to block devices".into(),
            ));
        }
        if let Some(s) = size
            && s < ro.len()
        {
            return Err(MkfsError::BadSize(
                path.to_path_buf(),
                format!(
                    "--size {s} is smaller than the file ({} bytes); mkfs never shrinks a file",
                    ro.len()
                ),
            ));
        }
        let at = mounts::mounted_at(path)?;
        if !at.is_empty() && opts.force < 2 {
            return Err(MkfsError::Mounted { dev: name, at });
        }
        // Check geometry before anything else is written.
        plan_geometry(
            &name,
            size.unwrap_or(ro.len()),
            ro.logical_block_size(),
            opts,
        )?;
        let found = signatures(&ro)?;
        if !found.is_empty() {
            if opts.force == 0 {
                return Err(MkfsError::InUse { dev: name, found });
            }
            overwritten = found;
        }
    } else if size.is_none() {
        return Err(MkfsError::SizeRequired(path.to_path_buf()));
    } else if let Some(s) = size {
        plan_geometry(&name, s, 512, opts)?;
    }
    // Every check passed: create, lock, grow, format.
    let created = !exists;
    if created {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| DevError::Open {
                path: path.to_path_buf(),
                source: e,
            })?;
    }
    let mut old_len = None;
    let result = (|| {
        let mut dev = FileDevice::open(
            path,
            &OpenOptions {
                write: true,
                direct: false,
                exclusive: true,
            },
        )?;
        if let Some(s) = size
            && s > dev.len()
        {
            old_len = Some(dev.len());
            dev.grow(s)?;
        }
        format_device(&dev, opts)
    })();
    match result {
        Ok(sb) => Ok(MkfsReport {
            sb,
            overwritten,
            created,
            size_rounded_from,
        }),
        Err(e) => {
            if created {
                let _ = std::fs::remove_file(path);
            } else if let Some(len) = old_len
                && let Ok(f) = std::fs::OpenOptions::new().write(true).open(path)
            {
                let _ = f.set_len(len);
            }
            Err(e)
        }
    }
}
