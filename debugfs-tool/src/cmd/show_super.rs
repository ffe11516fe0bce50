//! `show-super DEVICE [--all-copies] [--json]`.

use std::path::PathBuf;

use sixfs::inspect::superblock::{show_super_json, show_super_text};
use sixfs::sb::read_superblock;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Block device or image file.
    device: PathBuf,
    /// Also print the fields of every valid copy, not only the newest.
    #[arg(long)]
    all_copies: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: &Args) -> anyhow::Result<()> {
    let dev = super::open_ro(&a.device)?;
    let read = read_superblock(&dev)?;
    let name = a.device.display().to_string();
    for c in read.bad_copies() {
        eprintln!(
            "sixfs-debug: warning: {name}: {} superblock at byte {}: {}",
            c.role, c.offset, c.status
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&show_super_json(&name, &read, a.all_copies))?
        );
    } else {
        print!("{}", show_super_text(&name, &read, a.all_copies));
    }
    Ok(())
}
