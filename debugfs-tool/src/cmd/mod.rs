//! One module per subcommand.

pub(crate) mod problems;
pub(crate) mod show_super;

use std::path::Path;

use sixfs::dev::file::{FileDevice, OpenOptions};

/// Opens a device read-only and shared (works while it is mounted).
pub(crate) fn open_ro(path: &Path) -> anyhow::Result<FileDevice> {
    Ok(FileDevice::open(path, &OpenOptions::default())?)
}
