//! Block devices: one trait ([`BlockDevice`]) over image files, raw block devices and the
//! in-memory crash device used by every layer's crash tests.
//!
//! Invariants every implementation keeps:
//! - `read_at`/`write_at` transfer the whole buffer or return an error; a range past
//!   [`BlockDevice::len`] is [`DevError::OutOfRange`], never a short transfer.
//! - A write is durable only after a later [`BlockDevice::flush`] returns; before that a power
//!   cut may lose it, keep it, or tear it at sector granularity (the crash device models this).
//! - Errors name the device and the byte offset.

use std::path::PathBuf;

/// Errors of the block-device layer.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// An IO error from the operating system.
    #[error("{dev}: {op} of {len} bytes at byte offset {offset} failed: {source}")]
    Io {
        /// Device or file name.
        dev: String,
        /// "read", "write" or "flush".
        op: &'static str,
        /// Byte offset of the request.
        offset: u64,
        /// Length of the request in bytes.
        len: usize,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A request past the end of the device.
    #[error(
        "{dev}: {op} of {len} bytes at byte offset {offset} is past the end of the device ({size} bytes)"
    )]
    OutOfRange {
        /// Device or file name.
        dev: String,
        /// "read" or "write".
        op: &'static str,
        /// Byte offset of the request.
        offset: u64,
        /// Length of the request in bytes.
        len: usize,
        /// Device size in bytes.
        size: u64,
    },
    /// An error injected by a test (crash device) or a fault site.
    #[error("{dev}: injected {op} error at byte offset {offset} ({detail})")]
    Injected {
        /// Device or file name.
        dev: String,
        /// "read", "write" or "flush".
        op: &'static str,
        /// Byte offset of the request (0 for flush).
        offset: u64,
        /// Which injection fired.
        detail: String,
    },
    /// Opening the device failed.
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        /// The path given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The path names something that cannot hold a filesystem (a directory, a socket, ...).
    #[error("{}: {what}", path.display())]
    NotADevice {
        /// The path given.
        path: PathBuf,
        /// What was found instead.
        what: String,
    },
    /// A device too small for what was asked.
    #[error("{dev}: {size} bytes is too small ({need} needed)")]
    TooSmall {
        /// Device name.
        dev: String,
        /// Its size.
        size: u64,
        /// Bytes needed.
        need: u64,
    },
    /// Whether the device is mounted could not be determined (mountinfo unreadable): the
    /// check fails closed.
    #[error(
        "{}: cannot tell whether it is mounted (reading /proc/self/mountinfo failed: {source}); refusing to go on",
        path.display()
    )]
    MountCheck {
        /// The path given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process holds the device (exclusive open or lock failed).
    #[error("{}: device is busy (in use by another process or mounted)", path.display())]
    Busy {
        /// The path given.
        path: PathBuf,
    },
}

impl DevError {
    /// The errno a POSIX caller should see for this error.
    pub fn errno(&self) -> i32 {
        match self {
            DevError::Io { source, .. }
            | DevError::Open { source, .. }
            | DevError::MountCheck { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            DevError::OutOfRange { .. } => libc::EINVAL,
            DevError::Injected { .. } => libc::EIO,
            DevError::TooSmall { .. } => libc::EINVAL,
            DevError::NotADevice { .. } => libc::ENOTBLK,
            DevError::Busy { .. } => libc::EBUSY,
        }
    }
}

pub mod crash;
pub mod file;
pub mod mounts;
pub mod overlay;

pub use crash::{
    CrashDevice, CrashLog, CrashPoint, DevStats, EnumPlan, ErrorOp, ErrorRule, RuleId, Survivors,
    Torn,
};
pub use file::{FileDevice, OpenOptions};
pub use overlay::OverlayDevice;

/// A block device: the only way the filesystem reaches storage.
pub trait BlockDevice: Send + Sync + std::fmt::Debug {
    /// Reads exactly `buf.len()` bytes at byte `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DevError>;
    /// Writes all of `buf` at byte `offset`. Not durable until [`BlockDevice::flush`].
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DevError>;
    /// Makes every completed write durable (a cache flush / fsync).
    fn flush(&self) -> Result<(), DevError>;
    /// Size in bytes.
    fn len(&self) -> u64;
    /// The smallest write the device handles atomically and without read-modify-write, in
    /// bytes (512 or 4096 usually).
    fn logical_block_size(&self) -> u32;
    /// A name for messages: the path, or a description of an in-memory device.
    fn name(&self) -> &str;
    /// True if the device has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A byte offset or length known to fit in memory, as `usize` (saturating).
pub(crate) fn us(x: u64) -> usize {
    usize::try_from(x).unwrap_or(usize::MAX)
}

/// Checks that `[offset, offset+len)` lies inside a device of `size` bytes.
pub fn check_range(
    dev: &str,
    op: &'static str,
    offset: u64,
    len: usize,
    size: u64,
) -> Result<(), DevError> {
    let end = offset.checked_add(len as u64);
    match end {
        Some(end) if end <= size => Ok(()),
        _ => Err(DevError::OutOfRange {
            dev: dev.to_string(),
            op,
            offset,
            len,
            size,
        }),
    }
}
