//! `nodes DEVICE [-b BTREE] [--json]`: every btree node, its fill and its on-disk entries.

use std::path::PathBuf;

use sixfs::format::btree_id::BtreeId;
use sixfs::inspect::store::{nodes, open_readonly};
use sixfs::inspect::superblock::format_size;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Block device or image file.
    device: PathBuf,
    /// Only this btree.
    #[arg(short = 'b', long, value_parser = super::parse_btree)]
    btree: Option<BtreeId>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: &Args) -> anyhow::Result<()> {
    let store = open_readonly(&a.device)?;
    let ns = nodes(&store, a.btree)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&ns)?);
        return Ok(());
    }
    let mut root: Option<(sixfs::format::btree_id::BtreeId, u8)> = None;
    for n in &ns {
        // Nodes come root first for each btree: indent by depth below the root.
        if root.is_none_or(|(b, _)| b != n.btree) {
            root = Some((n.btree, n.level));
        }
        let depth = root.map_or(0, |(_, l)| l.saturating_sub(n.level));
        let indent = "  ".repeat(usize::from(depth));
        println!(
            "{indent}{} level {} {}..={} at byte {} seq {:#018x}: {} live keys ({}), {} of {} on disk",
            n.btree,
            n.level,
            n.min,
            n.max,
            n.offset,
            n.node_seq,
            n.live_keys,
            format_size(n.live_bytes as u64),
            format_size(n.disk_bytes),
            format_size(u64::from(n.node_size)),
        );
        for e in &n.entries {
            println!(
                "{indent}    entry at sector {}: {} bytes, {} keys, journal seq {}{}",
                e.sector_offset,
                e.bytes,
                e.keys,
                e.journal_seq,
                if e.blacklisted {
                    " (blacklisted: ignored)"
                } else {
                    ""
                }
            );
        }
        println!("{indent}    then: {}", n.end);
    }
    Ok(())
}
