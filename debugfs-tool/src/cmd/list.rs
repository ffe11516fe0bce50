//! `list DEVICE [-b BTREE] [-s START] [-e END] [--limit N] [--json]`: keys of the btrees.

use std::path::PathBuf;

use sixfs::format::bkey::{POS_MAX, POS_MIN, Pos};
use sixfs::format::btree_id::BtreeId;
use sixfs::inspect::store::{list_keys, open_readonly};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Block device or image file.
    device: PathBuf,
    /// Btree to list (extents, inodes, dirents, xattrs, alloc); all when omitted.
    #[arg(short = 'b', long, value_parser = super::parse_btree)]
    btree: Option<BtreeId>,
    /// First position: INODE, INODE:OFFSET, INODE:OFFSET:SNAPSHOT or "min".
    #[arg(short = 's', long, default_value = "min")]
    start: Pos,
    /// Last position (inclusive): INODE, INODE:OFFSET, INODE:OFFSET:SNAPSHOT or "max".
    #[arg(short = 'e', long, default_value = "max")]
    end: Pos,
    /// Print at most this many keys per btree.
    #[arg(long, default_value_t = usize::MAX)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: &Args) -> anyhow::Result<()> {
    let store = open_readonly(&a.device)?;
    let trees: Vec<BtreeId> = a.btree.map_or_else(|| BtreeId::ALL.to_vec(), |b| vec![b]);
    let mut all = Vec::new();
    for b in trees {
        let keys = list_keys(&store, b, a.start.max(POS_MIN), a.end.min(POS_MAX), a.limit)?;
        all.extend(keys);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for k in &all {
            println!("{} {}", k.btree, k.text);
        }
    }
    Ok(())
}
