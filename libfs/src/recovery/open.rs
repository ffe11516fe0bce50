//! Opening a store (superblock, journal, btrees) with recovery, and closing it cleanly.
//!
//! Clean open: the superblock's clean section holds the roots; nothing is replayed; the
//! journal continues after the clean section's seq. Before anything else is written, a flush
//! jset carrying the roots is written and the superblock is marked not clean, so the roots are
//! always findable (in a clean superblock or a flush jset).
//!
//! Unclean open: every journal bucket is read; the newest *flush* jset `N` gives the roots and
//! its `last_seq` `L`; every seq in `[L, N]` must be present (unless blacklisted). Seqs in
//! `(N, N + LEAD]` (and any later ones found) are blacklisted in the superblock *before* the
//! journal writes again — node entries written ahead of a journal that never became durable
//! name those seqs and are ignored from now on. The keys of `[L, N]` are replayed: for each
//! position the newest version wins; interior levels first (highest first), then leaves.
//! An interior key belongs to the nodes of its level at the time: when the root grows (a new
//! level appears) or shrinks (a level disappears), keys journaled earlier for that level are
//! stale and are dropped — each root change starts a new jset, and the jsets' root entries
//! show where the root's level changed.
//!
//! Replayed keys are not journaled again: each is inserted with the seq of its jset and pins
//! it in its node (`btree::replay`); until then recovery pins it, so every jset written
//! meanwhile names a `last_seq` no newer than the oldest key not yet written back. A crash
//! during or after replay therefore finds what it still needs of `[L, N]` (plus what was
//! journaled since) and replays it again; nothing acknowledged is lost, and no jset ever
//! claims a half-replayed state. Leaves are replayed in seq order so that reclaim can free
//! journal space as replay goes (see `replay_keys`).
//!
//! Before anything allocates, every node slot the tree references is marked used: the
//! on-disk tree is walked with the replay's interior keys laid over each interior node (an
//! interior node on disk may still point at a child that was replaced — and whose slot was
//! reused — by a swap that only the journal records).
//!
//! Close: writes every dirty node, flushes the journal and writes a clean superblock with the
//! roots.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::btree::node_alloc::{NodeAllocator, SimpleNodeAlloc};
use crate::btree::{Btree, BtreeConfig, BtreeError, TransError};
use crate::dev::BlockDevice;
use crate::format::bkey::{Key, POS_MAX, Pos};
use crate::format::btree_id::{BTREE_ID_NR, BtreeId};
use crate::format::btree_ptr::BtreePtr;
use crate::format::jset::{JEntryType, decode_jset, push_root_entry};
use crate::format::superblock::{CleanSection, SbFlags, SeqRange, Superblock};
use crate::journal::{Journal, JournalError, JournalGeometry, JournalStart, LEAD, scan_journal};
use crate::sb::{self, SbError};

/// Options for [`Store::open`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Btree nodes to keep cached.
    pub cache_nodes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { cache_nodes: 4096 }
    }
}

/// Errors opening or closing a store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Superblock problem.
    #[error(transparent)]
    Sb(#[from] SbError),
    /// Btree problem (corrupt node, IO).
    #[error(transparent)]
    Btree(#[from] BtreeError),
    /// Journal problem.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Device IO.
    #[error(transparent)]
    Dev(#[from] crate::dev::DevError),
    /// The journal cannot be used to recover: the store refuses to open rather than guess.
    #[error("{dev}: {detail}; the filesystem needs fsck")]
    Unrecoverable {
        /// Device.
        dev: String,
        /// What is wrong.
        detail: String,
    },
}

impl OpenError {
    /// The errno a POSIX caller should see.
    pub fn errno(&self) -> i32 {
        match self {
            OpenError::Sb(crate::sb::SbError::Dev(e)) | OpenError::Dev(e) => e.errno(),
            OpenError::Sb(_) => libc::EINVAL,
            OpenError::Btree(e) => e.errno(),
            OpenError::Journal(e) => e.errno(),
            OpenError::Unrecoverable { .. } => libc::EUCLEAN,
        }
    }
}

impl From<TransError> for OpenError {
    fn from(e: TransError) -> Self {
        match e {
            TransError::Error(e) => OpenError::Btree(e),
            TransError::Restart(r) => OpenError::Btree(BtreeError::escaped(r)),
        }
    }
}

/// What opening did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecoveryInfo {
    /// The superblock said clean: nothing was replayed.
    pub clean: bool,
    /// Replayed journal range `(last_seq, newest flush seq)`.
    pub replayed: Option<(u64, u64)>,
    /// Keys replayed (after keeping the newest version of each position).
    pub replayed_keys: u64,
    /// The seq range newly blacklisted.
    pub blacklisted: Option<(u64, u64)>,
    /// Valid jsets found in the journal.
    pub jsets_found: u64,
    /// Damaged jsets found (torn writes after the last flush are normal).
    pub jsets_damaged: u64,
    /// Accounting counters recorded in the newest flush jset (as of its write).
    pub usage: Vec<(String, u64)>,
}

/// The filesystem's magic: the first 8 bytes of the internal UUID.
pub fn fs_magic(sb: &Superblock) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&sb.uuid.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// The journal geometry a superblock describes.
pub fn journal_geometry(sb: &Superblock) -> JournalGeometry {
    let bs = u64::from(sb.bucket_size);
    JournalGeometry {
        buckets: sb
            .journal
            .iter()
            .flat_map(|r| (r.start..r.end()).map(move |b| b * bs))
            .collect(),
        bucket_size: bs,
        block_size: sb.block_size as usize,
        magic: fs_magic(sb),
        csum: sb.options.metadata_csum,
    }
}

/// The btree configuration a superblock describes.
pub fn btree_config(sb: &Superblock, cache_nodes: usize) -> BtreeConfig {
    BtreeConfig {
        node_size: sb.btree_node_size,
        block_size: sb.block_size,
        magic: fs_magic(sb),
        csum: sb.options.metadata_csum,
        cache_nodes,
        blacklist: sb.blacklist.clone(),
        blacklisted_entries: Arc::default(),
    }
}

/// The node allocator for a superblock: every bucket that is not superblock or journal.
pub fn node_allocator(sb: &Superblock) -> SimpleNodeAlloc {
    let journal: Vec<(u64, u64)> = sb.journal.iter().map(|r| (r.start, r.end())).collect();
    SimpleNodeAlloc::with_skip_ranges(
        u64::from(sb.bucket_size),
        u64::from(sb.btree_node_size),
        sb.first_bucket,
        sb.nbuckets,
        &journal,
    )
}

/// Decodes root entries (clean section or jset) into per-btree `(level, ptr)`.
fn roots_from_entries(
    entries: impl Iterator<Item = (BtreeId, u8, BtreePtr)>,
) -> Option<[(u8, BtreePtr); BTREE_ID_NR]> {
    let mut roots: [Option<(u8, BtreePtr)>; BTREE_ID_NR] = [None; BTREE_ID_NR];
    for (b, level, p) in entries {
        roots[b.idx()] = Some((level, p));
    }
    let mut out = [(
        0u8,
        BtreePtr {
            sector: 0,
            node_seq: 0,
            sectors_written: 1,
            generation: 0,
            min_pos: Default::default(),
        },
    ); BTREE_ID_NR];
    for (o, r) in out.iter_mut().zip(roots) {
        *o = r?;
    }
    Some(out)
}

/// Parses the root entries of a clean section.
pub fn clean_roots(c: &CleanSection) -> Option<[(u8, BtreePtr); BTREE_ID_NR]> {
    let it = crate::format::jset::entries_iter(&c.entries)?;
    roots_from_entries(
        it.filter(|e| e.typ == JEntryType::BtreeRoot)
            .filter_map(|e| e.root().map(|p| (e.btree, e.level, p))),
    )
}

/// Encodes roots as clean-section entries.
pub fn encode_roots(roots: &[(BtreeId, u8, BtreePtr)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (b, l, p) in roots {
        push_root_entry(&mut v, *b, *l, p);
    }
    v
}

/// An open store: superblock, journal and btrees.
pub struct Store {
    dev: Arc<dyn BlockDevice>,
    sb: Mutex<Superblock>,
    journal: Arc<Journal>,
    bt: Arc<Btree>,
    alloc: Arc<SimpleNodeAlloc>,
    recovery: RecoveryInfo,
    closed: Mutex<bool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("device", &self.dev.name())
            .field("recovery", &self.recovery)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

struct Replay {
    /// (btree, level, pos) -> newest key (by seq, then order in the jset), with its seq.
    keys: BTreeMap<(BtreeId, std::cmp::Reverse<u8>, Pos), (u64, Key)>,
    /// (btree, level) -> seq of the latest root change that created or removed that level:
    /// interior keys at that level from older jsets are stale.
    barriers: BTreeMap<(BtreeId, u8), u64>,
}

/// The keys to replay per (btree, level), highest level first, each with its seq; stale
/// interior keys (from before a root change that created or removed their level, or for a
/// level above the current root) left out.
type ReplayKeys = BTreeMap<(BtreeId, std::cmp::Reverse<u8>), Vec<(u64, Key)>>;

impl Replay {
    fn live_keys(self, roots: &[(u8, BtreePtr); BTREE_ID_NR]) -> ReplayKeys {
        let mut by_level: ReplayKeys = BTreeMap::new();
        for ((b, lvl, _), (seq, k)) in self.keys {
            let level = lvl.0;
            let stale = level > 0
                && (level > roots[b.idx()].0
                    || self.barriers.get(&(b, level)).is_some_and(|&bar| seq < bar));
            if !stale {
                by_level.entry((b, lvl)).or_default().push((seq, k));
            }
        }
        by_level
    }
}

impl Store {
    /// Opens the store on `dev`, recovering from the journal if it was not shut down cleanly.
    pub fn open(dev: Arc<dyn BlockDevice>, opts: &StoreOptions) -> Result<Store, OpenError> {
        let read = sb::read_superblock(&*dev)?;
        let mut sbk = read.sb;
        let name = dev.name().to_string();
        let geo = journal_geometry(&sbk);
        let alloc = Arc::new(node_allocator(&sbk));
        let mut info = RecoveryInfo::default();
        let clean_roots = if sbk.flags.contains(SbFlags::CLEAN) {
            // Clean means "the roots are here, the journal holds nothing newer": without
            // them, recovering from the journal instead would be a guess.
            let roots = sbk.clean.as_ref().and_then(clean_roots);
            let seq_ok = sbk
                .clean
                .as_ref()
                .is_some_and(|c| c.journal_seq < u64::MAX / 2);
            if roots.is_none() || !seq_ok {
                return Err(OpenError::Unrecoverable {
                    dev: name,
                    detail: "the superblock is marked clean but its clean section (btree roots and journal seq) is missing or damaged".into(),
                });
            }
            roots
        } else {
            None
        };
        let (roots, start, replay) = if let (Some(roots), Some(c)) =
            (clean_roots, sbk.clean.clone())
        {
            info.clean = true;
            let start = JournalStart {
                seq: c.journal_seq + 1,
                bucket: 0,
                offset: 0,
                bucket_seq: vec![0; geo.buckets.len()],
                durable_seq: c.journal_seq,
                last_seq_ondisk: c.journal_seq + 1,
                roots: BtreeId::ALL
                    .iter()
                    .map(|&b| (b, roots[b.idx()].0, roots[b.idx()].1))
                    .collect(),
            };
            (roots, start, None)
        } else {
            let scan = scan_journal(&*dev, &geo)?;
            info.jsets_found = scan.jsets.len() as u64;
            info.jsets_damaged = scan.damaged.len() as u64;
            let old_blacklist = sbk.blacklist.clone();
            let blacklisted = |s: u64| old_blacklist.iter().any(|r| r.start <= s && s <= r.end);
            let Some(newest) = scan
                .jsets
                .values()
                .rev()
                .find(|j| j.flush && !blacklisted(j.seq))
            else {
                return Err(OpenError::Unrecoverable {
                    dev: name,
                    detail: "the superblock is not clean and the journal holds no valid flush entry to recover from".into(),
                });
            };
            let (n, l) = (newest.seq, newest.last_seq);
            let newest_at = geo.buckets.get(newest.bucket).copied().unwrap_or(0) + newest.offset;
            if let Some(s) = first_missing(l, n, &scan.jsets, &old_blacklist) {
                let damaged: Vec<String> = scan
                    .damaged
                    .iter()
                    .take(4)
                    .map(|d| format!("byte {} ({})", d.2, d.3))
                    .collect();
                return Err(OpenError::Unrecoverable {
                    dev: name,
                    detail: format!(
                        "journal entry {s} is missing from the range {l}..={n} that entry {n} (at byte {newest_at}) says must be replayed{}",
                        if damaged.is_empty() {
                            String::new()
                        } else {
                            format!("; damaged entries at {}", damaged.join(", "))
                        }
                    ),
                });
            }
            if let Some(d) = scan.duplicates.iter().find(|d| l <= d.0 && d.0 <= n) {
                return Err(OpenError::Unrecoverable {
                    dev: name,
                    detail: format!(
                        "journal entry {} is present twice (at bytes {} and {}) in the range that must be replayed",
                        d.0, d.1, d.2
                    ),
                });
            }
            let nj =
                decode_jset(&newest.data, geo.magic, geo.csum, geo.block_size).map_err(|_| {
                    OpenError::Unrecoverable {
                        dev: name.clone(),
                        detail: format!(
                            "journal entry {n} (at byte {newest_at}) no longer decodes"
                        ),
                    }
                })?;
            let Some(roots) = roots_from_entries(
                nj.iter()
                    .filter(|e| e.typ == JEntryType::BtreeRoot)
                    .filter_map(|e| e.root().map(|p| (e.btree, e.level, p))),
            ) else {
                return Err(OpenError::Unrecoverable {
                    dev: name,
                    detail: format!("journal entry {n} (at byte {newest_at}) lacks a btree root"),
                });
            };
            info.usage = nj
                .iter()
                .filter(|e| e.typ == JEntryType::Usage)
                .flat_map(|e| e.usage())
                .map(|(c, v)| (c.name().to_string(), v))
                .collect();
            // Collect the keys to replay, newest version per (btree, level, pos).
            let mut rp = Replay {
                keys: BTreeMap::new(),
                barriers: BTreeMap::new(),
            };
            let mut root_level: [Option<u8>; BTREE_ID_NR] = [None; BTREE_ID_NR];
            for (&s, j) in scan.jsets.range(l..=n) {
                if blacklisted(s) {
                    continue;
                }
                let Ok(js) = decode_jset(&j.data, geo.magic, geo.csum, geo.block_size) else {
                    let at = geo.buckets.get(j.bucket).copied().unwrap_or(0) + j.offset;
                    return Err(OpenError::Unrecoverable {
                        dev: name,
                        detail: format!("journal entry {s} (at byte {at}) no longer decodes"),
                    });
                };
                // Where the root's level changed, the levels in between were created or
                // removed at this seq.
                for e in js.iter().filter(|e| e.typ == JEntryType::BtreeRoot) {
                    if let Some(p) = e.root() {
                        alloc.mark_used(p.sector);
                    }
                    let prev = root_level[e.btree.idx()].replace(e.level);
                    if let Some(p) = prev
                        && p != e.level
                    {
                        for lvl in p.min(e.level) + 1..=p.max(e.level) {
                            rp.barriers.insert((e.btree, lvl), s);
                        }
                    }
                }
                for e in js.iter().filter(|e| e.typ == JEntryType::BtreeKeys) {
                    for k in e.keys() {
                        rp.keys.insert(
                            (e.btree, std::cmp::Reverse(e.level), k.pos),
                            (s, k.to_owned()),
                        );
                        if e.level > 0
                            && let Ok(p) = BtreePtr::decode(k.val)
                        {
                            alloc.mark_used(p.sector);
                        }
                    }
                }
            }
            let max_seen = scan.jsets.keys().next_back().copied().unwrap_or(n);
            let too_big = || OpenError::Unrecoverable {
                dev: name.clone(),
                detail: format!("journal seq {max_seen} is too large to continue from"),
            };
            let bl_end = n.checked_add(LEAD).ok_or_else(too_big)?.max(max_seen);
            let next_seq = bl_end
                .checked_add(1)
                .filter(|s| *s < u64::MAX / 2)
                .ok_or_else(too_big)?;
            info.blacklisted = Some((n + 1, bl_end));
            info.replayed = Some((l, n));
            sbk.blacklist.push(SeqRange {
                start: n + 1,
                end: bl_end,
            });
            merge_ranges(&mut sbk.blacklist);
            let mut bucket_seq = vec![0u64; geo.buckets.len()];
            for j in scan
                .jsets
                .values()
                .filter(|j| j.seq <= n && !blacklisted(j.seq))
            {
                bucket_seq[j.bucket] = bucket_seq[j.bucket].max(j.seq);
            }
            let start = JournalStart {
                seq: next_seq,
                bucket: newest.bucket,
                offset: newest.offset + newest.disk_bytes,
                bucket_seq,
                durable_seq: n,
                last_seq_ondisk: l,
                roots: BtreeId::ALL
                    .iter()
                    .map(|&b| (b, roots[b.idx()].0, roots[b.idx()].1))
                    .collect(),
            };
            (roots, start, Some(rp))
        };
        let replay = replay.map(|rp| rp.live_keys(&roots));
        // Mark what the tree references before anything allocates.
        let cfg = btree_config(&sbk, opts.cache_nodes);
        let no_keys = ReplayKeys::new();
        let overlay = replay.as_ref().unwrap_or(&no_keys);
        mark_reachable(&*dev, &cfg, start.seq, &roots, overlay, &*alloc)?;
        // Make the new state findable before writing anything else.
        let journal = Arc::new(Journal::new(dev.clone(), geo, start));
        if info.clean {
            journal.flush_all()?;
        }

        sbk.flags.remove(SbFlags::CLEAN);
        sbk.clean = None;
        sb::write_superblock(&*dev, &mut sbk)?;
        let bt = Btree::open(
            dev.clone(),
            journal.clone(),
            cfg,
            alloc.clone() as Arc<dyn NodeAllocator>,
            &roots,
        )?;
        if let Some(keys) = replay {
            info.replayed_keys = replay_keys(&bt, keys)?;
            journal.flush_all()?;
            bt.note_durable();
        }
        Ok(Store {
            dev,
            sb: Mutex::new(sbk),
            journal,
            bt,
            alloc,
            recovery: info,
            closed: Mutex::new(false),
        })
    }

    /// The btree store.
    pub fn btree(&self) -> &Arc<Btree> {
        &self.bt
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The device.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// What opening did.
    pub fn recovery(&self) -> &RecoveryInfo {
        &self.recovery
    }

    /// A copy of the in-memory superblock.
    pub fn superblock(&self) -> Superblock {
        self.sb.lock().clone()
    }

    /// (node slots in use, total node slots).
    pub fn node_usage(&self) -> (u64, u64) {
        self.alloc.usage()
    }

    /// Makes every transaction committed at or before `seq` durable.
    pub fn flush(&self, seq: u64) -> Result<(), JournalError> {
        self.journal.flush(seq)?;
        self.bt.note_durable();
        Ok(())
    }

    /// Makes everything committed so far durable; returns the last seq.
    pub fn flush_all(&self) -> Result<u64, JournalError> {
        let s = self.journal.flush_all()?;
        self.bt.note_durable();
        Ok(s)
    }

    /// Clean shutdown: writes every dirty node, flushes the journal, and writes a clean
    /// superblock holding the roots, so the next open replays nothing.
    pub fn close(&self) -> Result<(), OpenError> {
        let mut closed = self.closed.lock();
        if *closed {
            return Ok(());
        }
        // No commit may land after the final flush: it would be acknowledged durable, yet a
        // clean open replays nothing.
        self.bt.shut_down_writes();
        self.bt.flush_all_nodes()?;
        let seq = self.journal.flush_all()?;
        // Nodes written by reclaim during the flush: write again until nothing is dirty.
        self.bt.flush_all_nodes()?;
        let roots = self.bt.root_ptrs();
        let mut sbk = self.sb.lock();
        sbk.flags.insert(SbFlags::CLEAN);
        sbk.clean = Some(CleanSection {
            journal_seq: seq.max(self.journal.cur_seq() - 1),
            entries: encode_roots(&roots),
        });
        self.dev.flush()?;
        sb::write_superblock(&*self.dev, &mut sbk)?;
        self.journal.shutdown();
        *closed = true;
        Ok(())
    }
}

/// The first seq in `[l, n]` that is neither present nor blacklisted, in time linear in what
/// is present and blacklisted (not in the width of the range, which comes from disk).
fn first_missing(
    l: u64,
    n: u64,
    present: &BTreeMap<u64, crate::journal::ScannedJset>,
    blacklist: &[SeqRange],
) -> Option<u64> {
    let mut s = l;
    let mut present = present.range(l..=n).map(|(k, _)| *k).peekable();
    while s <= n {
        if present.peek() == Some(&s) {
            present.next();
        } else if let Some(r) = blacklist.iter().find(|r| r.start <= s && s <= r.end) {
            s = r.end.checked_add(1)?;
            while present.next_if(|&p| p < s).is_some() {}
            continue;
        } else {
            return Some(s);
        }
        s = s.checked_add(1)?;
    }
    None
}

/// Merges overlapping or adjacent seq ranges (kept sorted).
fn merge_ranges(v: &mut Vec<SeqRange>) {
    v.sort_by_key(|r| r.start);
    let mut out: Vec<SeqRange> = Vec::with_capacity(v.len());
    for r in v.drain(..) {
        match out.last_mut() {
            Some(l) if r.start <= l.end.saturating_add(1) => l.end = l.end.max(r.end),
            _ => out.push(r),
        }
    }
    *v = out;
}

/// Marks every node slot the tree references: the on-disk tree, with the replay's interior
/// keys (`overlay`) laid over each interior node — as it will be once they are replayed.
/// Leaves are named by their parents, not read.
fn mark_reachable(
    dev: &dyn BlockDevice,
    cfg: &BtreeConfig,
    cur_seq: u64,
    roots: &[(u8, BtreePtr); BTREE_ID_NR],
    overlay: &ReplayKeys,
    alloc: &dyn NodeAllocator,
) -> Result<(), BtreeError> {
    // A node is read once even if (on a damaged disk) several pointers name it: levels
    // strictly decrease, and with `seen` the walk is linear in the number of nodes.
    let mut seen = std::collections::HashSet::new();
    for (i, (level, ptr)) in roots.iter().enumerate() {
        let btree = BtreeId::ALL[i];
        alloc.mark_used(ptr.sector);
        let mut stack = vec![(*level, *ptr, POS_MAX)];
        while let Some((lvl, p, max)) = stack.pop() {
            if lvl == 0 || !seen.insert(p.sector) {
                continue;
            }
            let n = crate::btree::io::read_node_raw(dev, cfg, cur_seq, &p, btree, lvl, max)?;
            n.lock.lock_read();
            let live = n.data().live_set();
            n.lock.unlock_read();
            let mut keys: BTreeMap<Pos, Key> = live.iter().map(|k| (k.pos, k.to_owned())).collect();
            if let Some(over) = overlay.get(&(btree, std::cmp::Reverse(lvl))) {
                for (_, k) in over.iter().filter(|(_, k)| n.covers(k.pos)) {
                    keys.insert(k.pos, k.clone());
                }
            }
            for k in keys.values().filter(|k| !k.is_deleted()) {
                if let Ok(c) = BtreePtr::decode(&k.val) {
                    alloc.mark_used(c.sector);
                    if lvl > 1 {
                        stack.push((lvl - 1, c, k.pos));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Replays the keys: interior levels first (highest first), then the leaves in journal seq
/// order. Every key's seq is pinned until the key is in a node (which then pins it itself),
/// so jsets written meanwhile — by the splits replay causes, and by reclaim — never claim
/// that a key not yet replayed is no longer needed; and because leaves go in seq order, the
/// oldest pin moves forward as replay goes, so reclaim (writing replayed nodes back) frees
/// journal space even when the crash left the journal nearly full.
fn replay_keys(bt: &Btree, keys: ReplayKeys) -> Result<u64, OpenError> {
    let journal = bt.journal();
    let mut per_seq: BTreeMap<u64, u32> = BTreeMap::new();
    for (s, _) in keys.values().flatten() {
        *per_seq.entry(*s).or_insert(0) += 1;
    }
    for (&s, &n) in &per_seq {
        journal.pin_add(s, n);
    }
    let mut leaves: Vec<(u64, BtreeId, Key)> = Vec::new();
    let mut n = 0u64;
    journal.set_replaying(true);
    let r = (|| -> Result<(), OpenError> {
        for ((b, std::cmp::Reverse(level)), keys) in keys {
            if level == 0 {
                leaves.extend(keys.into_iter().map(|(s, k)| (s, b, k)));
                continue;
            }
            crate::btree::replay::insert_replayed(bt, b, level, &keys)?;
            for (s, _) in &keys {
                journal.pin_put(*s);
            }
            n += keys.len() as u64;
        }
        leaves.sort_by_key(|x| (x.0, x.1, x.2.pos));
        let mut i = 0;
        while i < leaves.len() {
            let (seq, b) = (leaves[i].0, leaves[i].1);
            let j = leaves[i..]
                .iter()
                .position(|x| (x.0, x.1) != (seq, b))
                .map_or(leaves.len(), |d| i + d);
            let run: Vec<(u64, Key)> = leaves[i..j].iter().map(|x| (x.0, x.2.clone())).collect();
            crate::btree::replay::insert_replayed(bt, b, 0, &run)?;
            for _ in i..j {
                journal.pin_put(seq);
            }
            n += (j - i) as u64;
            i = j;
        }
        Ok(())
    })();
    journal.set_replaying(false);
    r.map(|()| n)
}
