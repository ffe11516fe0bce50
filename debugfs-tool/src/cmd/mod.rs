//! One module per subcommand.

pub(crate) mod journal;
pub(crate) mod list;
pub(crate) mod nodes;
pub(crate) mod problems;
pub(crate) mod show_super;

use std::path::Path;

use sixfs::dev::file::{FileDevice, OpenOptions};
use sixfs::format::btree_id::BtreeId;

/// Parses a btree name.
pub(crate) fn parse_btree(s: &str) -> Result<BtreeId, String> {
    BtreeId::parse(s).ok_or_else(|| {
        let names: Vec<&str> = BtreeId::ALL.iter().map(|b| b.name()).collect();
        format!("unknown btree {s:?} (one of {})", names.join(", "))
    })
}

/// Opens a device read-only and shared (works while it is mounted).
pub(crate) fn open_ro(path: &Path) -> anyhow::Result<FileDevice> {
    Ok(FileDevice::open(path, &OpenOptions::default())?)
}
