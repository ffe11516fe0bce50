//! Creating filesystems: `mkfs` (choose geometry, refuse devices in use, write superblocks).

pub mod mkfs;

pub use mkfs::{FormatOptions, MkfsError, MkfsReport, format_device, mkfs_path};
