//! Read-only views of a store for `sixfs-debug`: keys of a btree, the node layout, and the
//! journal.
//!
//! Everything here opens the device read-only and shared, and runs recovery on a
//! copy-on-write overlay: the journal is replayed in memory so the views show what a mount
//! would see, and nothing is ever written to the device.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::btree::Btree;
use crate::btree::node::Node;
use crate::btree::trans::child_ptr;
use crate::dev::{BlockDevice, FileDevice, OpenOptions, OverlayDevice};
use crate::format::bkey::{KeyRef, KeyType, Pos, key_to_string};
use crate::format::btree_id::BtreeId;
use crate::format::btree_node::{EntryError, decode_entry};
use crate::format::jset::{JEntryType, decode_jset};
use crate::journal::scan_journal;
use crate::recovery::open::{OpenError, journal_geometry};
use crate::recovery::{Store, StoreOptions};
use crate::sb;

/// Opens the store at `path` read-only: recovery runs on an in-memory overlay.
pub fn open_readonly(path: &Path) -> Result<Store, OpenError> {
    let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(path, &OpenOptions::default())?);
    open_overlay(dev)
}

/// Opens the store on `dev` through a write-absorbing overlay.
pub fn open_overlay(dev: Arc<dyn BlockDevice>) -> Result<Store, OpenError> {
    let overlay: Arc<dyn BlockDevice> = Arc::new(OverlayDevice::new(dev));
    Store::open(
        overlay,
        &StoreOptions {
            cache_nodes: 1 << 16,
        },
    )
}

/// One listed key.
#[derive(Clone, Debug, Serialize)]
pub struct ListedKey {
    /// Btree.
    pub btree: BtreeId,
    /// Position.
    pub pos: Pos,
    /// Key type.
    #[serde(rename = "type")]
    pub typ: KeyType,
    /// Extent size (sectors).
    pub size: u32,
    /// Value bytes, hex.
    pub value: String,
    /// The key printed by its type.
    pub text: String,
}

fn listed(btree: BtreeId, k: &KeyRef<'_>) -> ListedKey {
    ListedKey {
        btree,
        pos: k.pos,
        typ: k.typ,
        size: k.size,
        value: k.val.iter().map(|b| format!("{b:02x}")).collect(),
        text: key_to_string(k),
    }
}

/// Live keys of `btree` in `[start, end]`, at most `limit`.
pub fn list_keys(
    store: &Store,
    btree: BtreeId,
    start: Pos,
    end: Pos,
    limit: usize,
) -> Result<Vec<ListedKey>, crate::btree::BtreeError> {
    let mut out = Vec::new();
    let mut t = store.btree().trans();
    t.scan(btree, start, end, |k| {
        out.push(listed(btree, &k));
        out.len() < limit
    })
    .map_err(|e| match e {
        crate::btree::TransError::Error(e) => e,
        crate::btree::TransError::Restart(r) => crate::btree::BtreeError::escaped(r),
    })?;
    Ok(out)
}

/// One entry (bset) of a node as it is on disk.
#[derive(Clone, Debug, Serialize)]
pub struct EntryView {
    /// Offset in the node, in sectors.
    pub sector_offset: u32,
    /// Bytes on disk, padding included.
    pub bytes: usize,
    /// Keys in it.
    pub keys: u32,
    /// Newest journal seq of its keys.
    pub journal_seq: u64,
    /// Ignored because its journal seq is blacklisted.
    pub blacklisted: bool,
}

/// A node: identity, fill and on-disk entries.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    /// Btree.
    pub btree: BtreeId,
    /// Level (0 = leaf).
    pub level: u8,
    /// Smallest position covered.
    pub min: Pos,
    /// Largest position covered.
    pub max: Pos,
    /// Device byte offset.
    pub offset: u64,
    /// Random node seq.
    pub node_seq: u64,
    /// Live keys (after replay).
    pub live_keys: usize,
    /// Encoded bytes of the live keys.
    pub live_bytes: usize,
    /// Bytes of the node used on disk.
    pub disk_bytes: u64,
    /// Node size.
    pub node_size: u32,
    /// The entries found on disk, in order.
    pub entries: Vec<EntryView>,
    /// Why reading entries stopped (after the last one).
    pub end: String,
}

fn node_view(bt: &Btree, n: &Node) -> Result<NodeView, crate::dev::DevError> {
    n.lock.lock_read();
    let live = n.data().live_set();
    n.lock.unlock_read();
    let cfg = bt.config();
    let size = cfg.node_size as usize;
    let mut buf = vec![0u8; size];
    bt.dev.read_at(&mut buf, n.addr.saturating_mul(512))?;
    let mut entries = Vec::new();
    let mut off = 0usize;
    let mut seq = None;
    let end = loop {
        if off >= size {
            break "end of node".to_string();
        }
        let sector = u32::try_from(off / 512).unwrap_or(u32::MAX);
        match decode_entry(
            &buf[off..],
            cfg.magic,
            seq,
            sector,
            cfg.csum,
            cfg.block_size as usize,
        ) {
            Ok(e) => {
                seq = Some(e.info.node_seq);
                entries.push(EntryView {
                    sector_offset: sector,
                    bytes: e.disk_bytes,
                    keys: e.info.nkeys,
                    journal_seq: e.info.journal_seq,
                    blacklisted: cfg.blacklisted(e.info.journal_seq),
                });
                off += e.disk_bytes;
            }
            Err(EntryError::End) => break format!("no further entry at sector {sector}"),
            Err(EntryError::Corrupt(err)) => {
                break format!("damaged entry at sector {sector}: {err}");
            }
        }
    };
    Ok(NodeView {
        btree: n.btree,
        level: n.level,
        min: n.min,
        max: n.max,
        offset: n.addr * 512,
        node_seq: n.node_seq,
        live_keys: live.len(),
        live_bytes: live.live_bytes(),
        disk_bytes: off as u64,
        node_size: cfg.node_size,
        entries,
        end,
    })
}

/// Every node of `btree` (or of all btrees), top-down, left to right.
pub fn nodes(store: &Store, only: Option<BtreeId>) -> Result<Vec<NodeView>, OpenError> {
    let bt = store.btree();
    let mut out = Vec::new();
    for b in BtreeId::ALL {
        if only.is_some_and(|o| o != b) {
            continue;
        }
        let _g = bt.interior[b.idx()].lock();
        let mut stack = vec![bt.root(b)];
        while let Some(n) = stack.pop() {
            out.push(node_view(bt, &n)?);
            if n.level == 0 {
                continue;
            }
            n.lock.lock_read();
            let live = n.data().live_set();
            n.lock.unlock_read();
            let mut children = Vec::new();
            for k in live.iter() {
                n.lock.lock_read();
                let r = child_ptr(&n, k.pos);
                n.lock.unlock_read();
                let (max, ptr) = r.map_err(OpenError::from)?;
                children.push(crate::btree::io::get_node(bt, &ptr, b, n.level - 1, max)?);
            }
            stack.extend(children.into_iter().rev());
        }
    }
    Ok(out)
}

/// One jset found in the journal.
#[derive(Clone, Debug, Serialize)]
pub struct JsetView {
    /// Sequence number.
    pub seq: u64,
    /// Oldest seq it needed.
    pub last_seq: u64,
    /// Written with a flush.
    pub flush: bool,
    /// Journal bucket index (in ring order).
    pub bucket: usize,
    /// Device byte offset.
    pub offset: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Its seq is blacklisted.
    pub blacklisted: bool,
    /// Inside the range a crash recovery would replay now.
    pub in_replay_range: bool,
    /// Key entries: (btree, level, keys).
    pub key_entries: Vec<(BtreeId, u8, usize)>,
    /// Root entries: (btree, level, node byte offset).
    pub roots: Vec<(BtreeId, u8, u64)>,
    /// Padding entries (reserved by transactions that restarted).
    pub padding: usize,
    /// Accounting counters it carries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<(&'static str, u64)>,
    /// The keys, when asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<ListedKey>,
}

/// What the journal holds.
#[derive(Clone, Debug, Serialize)]
pub struct JournalView {
    /// Journal buckets (device byte offsets).
    pub buckets: Vec<u64>,
    /// Jsets found, by seq.
    pub jsets: Vec<JsetView>,
    /// Damaged jsets: (bucket index, device byte offset, error).
    pub damaged: Vec<(usize, u64, String)>,
    /// Blacklisted seq ranges (superblock).
    pub blacklist: Vec<(u64, u64)>,
    /// The superblock says the last shutdown was clean.
    pub clean: bool,
    /// The range recovery would replay: (last_seq, newest flush seq).
    pub replay_range: Option<(u64, u64)>,
}

/// Reads the journal of the device at `path` (read-only; nothing is replayed).
pub fn journal(dev: &dyn BlockDevice, with_keys: bool) -> Result<JournalView, OpenError> {
    let read = sb::read_superblock(dev)?;
    let s = read.sb;
    let geo = journal_geometry(&s);
    let scan = scan_journal(dev, &geo)?;
    let bl = |q: u64| s.blacklist.iter().any(|r| r.start <= q && q <= r.end);
    let newest = scan.jsets.values().rev().find(|j| j.flush && !bl(j.seq));
    let range = newest.map(|n| (n.last_seq, n.seq));
    let mut jsets = Vec::new();
    for j in scan.jsets.values() {
        let mut v = JsetView {
            seq: j.seq,
            last_seq: j.last_seq,
            flush: j.flush,
            bucket: j.bucket,
            offset: geo.buckets.get(j.bucket).copied().unwrap_or(0) + j.offset,
            bytes: j.disk_bytes,
            blacklisted: bl(j.seq),
            in_replay_range: range.is_some_and(|(l, n)| l <= j.seq && j.seq <= n),
            key_entries: Vec::new(),
            roots: Vec::new(),
            padding: 0,
            usage: Vec::new(),
            keys: Vec::new(),
        };
        if let Ok(js) = decode_jset(&j.data, geo.magic, geo.csum, geo.block_size) {
            for e in js.iter() {
                match e.typ {
                    JEntryType::BtreeKeys => {
                        v.key_entries.push((e.btree, e.level, e.keys().count()));
                        if with_keys {
                            v.keys.extend(e.keys().map(|k| listed(e.btree, &k)));
                        }
                    }
                    JEntryType::BtreeRoot => {
                        if let Some(p) = e.root() {
                            v.roots
                                .push((e.btree, e.level, p.sector.saturating_mul(512)));
                        }
                    }
                    JEntryType::Padding => v.padding += 1,
                    JEntryType::Usage => {
                        v.usage = e.usage().into_iter().map(|(c, x)| (c.name(), x)).collect();
                    }
                }
            }
        }
        jsets.push(v);
    }
    Ok(JournalView {
        buckets: geo.buckets.clone(),
        jsets,
        damaged: scan
            .damaged
            .iter()
            .map(|(b, _, at, e)| (*b, *at, e.to_string()))
            .collect(),
        blacklist: s.blacklist.iter().map(|r| (r.start, r.end)).collect(),
        clean: s.flags.contains(crate::format::superblock::SbFlags::CLEAN),
        replay_range: if s.flags.contains(crate::format::superblock::SbFlags::CLEAN) {
            None
        } else {
            range
        },
    })
}
