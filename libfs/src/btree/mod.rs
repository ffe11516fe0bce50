//! The copy-on-write btree store: every piece of metadata lives as a key in one of its
//! btrees.
//!
//! - `keyset`: sorted key sets (in-memory bsets); `node`: nodes and their locking contract;
//! - `cache`: nodes by address, bounded; `io`: reading and writing nodes;
//! - [`trans`]: transactions — lookups, iterators, queued updates, commit, restarts;
//! - `interior`: splits, compactions, merges and root changes (copy-on-write);
//! - [`node_alloc`]: where nodes go on disk; [`check`]: the structural check;
//! - `replay`: journal keys inserted at their original seqs during recovery.
//!
//! Locking rules (see `docs/locking.md`):
//! 1. A transaction blocks on a node lock only while holding no other node lock, except:
//! 2. a commit blocks on *intent* locks of leaves in (btree, position) order while holding
//!    intents on earlier leaves, and on *write* locks of nodes it holds intent on (waiting
//!    only for readers, who never block while holding a lock);
//! 3. structural changes of a btree are serialised by its `interior` mutex, taken while
//!    holding no node lock; its holder alone takes intent locks on interior nodes, top-down.
//!
//! Node IO is never done while holding a node's SIX lock: reads drop all locks first, writes
//! seal the keys under a read lock and write after releasing it. Structural changes write new
//! nodes while holding intents (readers go on), which is what intent locks are for.

pub(crate) mod cache;
pub mod check;
mod error;
pub(crate) mod interior;
pub(crate) mod io;
pub(crate) mod keyset;
pub(crate) mod node;
pub mod node_alloc;
pub(crate) mod replay;
pub mod trans;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

pub use error::{BtreeError, RestartReason, TransError};
pub use node_alloc::{NodeAllocator, SimpleNodeAlloc};
pub use trans::{BtreeIter, BtreeTrans};

use self::cache::NodeCache;
use self::node::Node;
use crate::dev::BlockDevice;
use crate::format::btree_id::{BTREE_ID_NR, BtreeId};
use crate::format::btree_ptr::BtreePtr;
use crate::format::csum::ChecksumType;
use crate::format::superblock::SeqRange;
use crate::journal::{Journal, JournalReclaim};
use crate::sync::barrier::WriteBarrier;

/// Static configuration of a store.
#[derive(Clone, Debug)]
pub struct BtreeConfig {
    /// Node size in bytes.
    pub node_size: u32,
    /// Block size in bytes (entries are padded to it).
    pub block_size: u32,
    /// The filesystem's magic.
    pub magic: u64,
    /// Metadata checksum.
    pub csum: ChecksumType,
    /// Nodes to keep cached.
    pub cache_nodes: usize,
    /// Journal sequence numbers to ignore in node entries.
    pub blacklist: Vec<SeqRange>,
    /// Node entries skipped because their journal seq is blacklisted (shared by clones).
    pub blacklisted_entries: Arc<AtomicU64>,
}

impl BtreeConfig {
    pub(crate) fn blacklisted(&self, seq: u64) -> bool {
        self.blacklist
            .iter()
            .any(|r| r.start <= seq && seq <= r.end)
    }
}

/// Counters (restarts by reason, structural changes, IO).
#[derive(Debug, Default)]
pub struct BtreeCounters {
    /// Transaction restarts (the closure ran again), by reason.
    restarts: [AtomicU64; RestartReason::ALL.len()],
    /// Traversals that started over from the root inside one call (the closure did not
    /// rerun), by reason.
    retraverses: [AtomicU64; RestartReason::ALL.len()],
    /// Leaf and interior splits.
    pub splits: AtomicU64,
    /// Compactions (rewrite into one new node).
    pub compactions: AtomicU64,
    /// Merges of two siblings.
    pub merges: AtomicU64,
    /// Root splits (tree grew).
    pub root_splits: AtomicU64,
    /// Root shrinks (tree shrank).
    pub root_shrinks: AtomicU64,
    /// Node entries written.
    pub node_writes: AtomicU64,
    /// Nodes read from disk.
    pub node_reads: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
}

impl BtreeCounters {
    pub(crate) fn restart(&self, r: RestartReason) {
        self.restarts[r.idx()].fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn retraverse(&self, r: RestartReason) {
        self.retraverses[r.idx()].fetch_add(1, Ordering::Relaxed);
    }
    /// Transaction restarts counted for `r`.
    pub fn restarts(&self, r: RestartReason) -> u64 {
        self.restarts[r.idx()].load(Ordering::Relaxed)
    }
    /// Traversal retries (inside one call, not a transaction restart) counted for `r`.
    pub fn retraverses(&self, r: RestartReason) -> u64 {
        self.retraverses[r.idx()].load(Ordering::Relaxed)
    }
    /// A snapshot as (name, value) pairs.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let name = |r: &RestartReason| {
            serde_json::to_value(r)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        };
        let mut v: Vec<(String, u64)> = RestartReason::ALL
            .iter()
            .map(|r| (format!("restart_{}", name(r)), self.restarts(*r)))
            .collect();
        v.extend(
            RestartReason::ALL
                .iter()
                .map(|r| (format!("retraverse_{}", name(r)), self.retraverses(*r))),
        );
        for (n, c) in [
            ("splits", &self.splits),
            ("compactions", &self.compactions),
            ("merges", &self.merges),
            ("root_splits", &self.root_splits),
            ("root_shrinks", &self.root_shrinks),
            ("node_writes", &self.node_writes),
            ("node_reads", &self.node_reads),
            ("commits", &self.commits),
        ] {
            v.push((n.to_string(), c.load(Ordering::Relaxed)));
        }
        v
    }
}

/// The btree store.
pub struct Btree {
    pub(crate) dev: Arc<dyn BlockDevice>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) cfg: BtreeConfig,
    pub(crate) cache: NodeCache,
    pub(crate) roots: Vec<RwLock<Arc<Node>>>,
    pub(crate) interior: Vec<Mutex<()>>,
    pub(crate) alloc: Arc<dyn NodeAllocator>,
    /// Nodes with keys not yet on disk, by address.
    pub(crate) dirty: Mutex<HashMap<u64, Arc<Node>>>,
    /// Counters.
    pub counters: BtreeCounters,
    pub(crate) error: Mutex<Option<String>>,
    /// Every commit holds a token; shutting down freezes it so no commit is in flight (or
    /// starts) while the final state is written.
    pub(crate) writes: WriteBarrier,
    pub(crate) shut_down: AtomicBool,
}

impl std::fmt::Debug for Btree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btree")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Btree {
    /// Opens the store on `dev` with the given roots (one per btree, as `(level, ptr)`), and
    /// registers it as the journal's reclaim callback.
    pub fn open(
        dev: Arc<dyn BlockDevice>,
        journal: Arc<Journal>,
        cfg: BtreeConfig,
        alloc: Arc<dyn NodeAllocator>,
        roots: &[(u8, BtreePtr); BTREE_ID_NR],
    ) -> Result<Arc<Btree>, BtreeError> {
        let cache = NodeCache::new(cfg.cache_nodes);
        let mut root_nodes = Vec::with_capacity(BTREE_ID_NR);
        for (i, (level, ptr)) in roots.iter().enumerate() {
            let b = BtreeId::ALL[i];
            let n = io::read_node_raw(
                &*dev,
                &cfg,
                journal.cur_seq(),
                ptr,
                b,
                *level,
                crate::format::bkey::POS_MAX,
            )?;
            root_nodes.push(RwLock::new(cache.insert(Arc::new(n))));
        }
        let bt = Arc::new(Btree {
            dev,
            journal,
            cfg,
            cache,
            roots: root_nodes,
            interior: (0..BTREE_ID_NR).map(|_| Mutex::new(())).collect(),
            alloc,
            dirty: Mutex::new(HashMap::new()),
            counters: BtreeCounters::default(),
            error: Mutex::new(None),
            writes: WriteBarrier::new(),
            shut_down: AtomicBool::new(false),
        });
        let weak: std::sync::Weak<dyn JournalReclaim> =
            Arc::downgrade(&(bt.clone() as Arc<dyn JournalReclaim>));
        bt.journal.set_reclaim(weak);
        bt.note_usage();
        Ok(bt)
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The configuration.
    pub fn config(&self) -> &BtreeConfig {
        &self.cfg
    }

    /// A new transaction.
    pub fn trans(&self) -> BtreeTrans<'_> {
        BtreeTrans::new(self)
    }

    /// Runs `f` as a transaction: begins, runs, commits, and reruns everything on a restart.
    /// Returns `f`'s value and the commit's journal seq (0 if nothing was updated).
    pub fn run<T>(
        &self,
        mut f: impl FnMut(&mut BtreeTrans<'_>) -> Result<T, TransError>,
    ) -> Result<(T, u64), BtreeError> {
        let mut t = self.trans();
        loop {
            t.begin();
            let r = f(&mut t).and_then(|v| t.commit().map(|seq| (v, seq)));
            match r {
                Ok(v) => return Ok(v),
                Err(TransError::Restart(reason)) => {
                    self.counters.restart(reason);
                    continue;
                }
                Err(TransError::Error(e)) => return Err(e),
            }
        }
    }

    /// The current root node of `btree`.
    pub(crate) fn root(&self, btree: BtreeId) -> Arc<Node> {
        self.roots[btree.idx()].read().clone()
    }

    /// Each btree's root as `(level, ptr)` (pointer with the root's current written size).
    pub fn root_ptrs(&self) -> Vec<(BtreeId, u8, BtreePtr)> {
        BtreeId::ALL
            .iter()
            .map(|&b| {
                let r = self.root(b);
                let written = sectors(r.ws.lock().written_bytes);
                (b, r.level, r.ptr(written.max(1)))
            })
            .collect()
    }

    /// Records a sticky error: the store refuses further writes.
    pub(crate) fn set_error(&self, e: &str) {
        let mut g = self.error.lock();
        if g.is_none() {
            *g = Some(e.to_string());
        }
    }

    pub(crate) fn check_error(&self) -> Result<(), BtreeError> {
        match &*self.error.lock() {
            Some(e) => Err(BtreeError::ReadOnly(e.clone())),
            None => Ok(()),
        }
    }

    /// Stops commits for good: waits for those in flight; later ones fail with
    /// [`BtreeError::ReadOnly`]. Then the caller writes the final state.
    pub fn shut_down_writes(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
        self.writes.freeze();
        // Commits that waited at the frozen barrier now enter, see the flag and fail.
        self.writes.thaw();
    }

    /// A commit's token: `None` once [`Btree::shut_down_writes`] has begun.
    pub(crate) fn enter_commit(&self) -> Result<crate::sync::barrier::Token<'_>, BtreeError> {
        let t = self.writes.enter();
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(BtreeError::ReadOnly("the store is shut down".into()));
        }
        Ok(t)
    }

    /// Writes back every dirty node (for clean shutdown and reclaim).
    pub fn flush_all_nodes(&self) -> Result<(), BtreeError> {
        self.flush_pins_upto(u64::MAX)
    }

    /// Writes back dirty nodes whose oldest unwritten key has seq ≤ `upto`, and waits for
    /// writes of such nodes already in flight (started by another thread): on return no
    /// pin ≤ `upto` taken before the call is held by a node.
    pub fn flush_pins_upto(&self, upto: u64) -> Result<(), BtreeError> {
        // Lock order is `ws` before `dirty` (a commit marks a node dirty holding its `ws`):
        // copy the dirty list, then look at each node's write state.
        let dirty: Vec<Arc<Node>> = self.dirty.lock().values().cloned().collect();
        let mut v: Vec<(u64, Arc<Node>)> = dirty
            .into_iter()
            .filter_map(|n| {
                let p = {
                    let ws = n.ws.lock();
                    // An in-flight write holds its pin until it completes; `write_node`
                    // takes the node's `io` lock first, so it waits for that write.
                    ws.unwritten_pin.into_iter().chain(ws.inflight_pin).min()
                };
                p.filter(|&p| p <= upto).map(|p| (p, n))
            })
            .collect();
        v.sort_by_key(|(p, _)| *p);
        for (_, n) in v {
            io::write_node(self, &n)?;
        }
        Ok(())
    }

    /// Nodes with unwritten keys.
    pub fn dirty_nodes(&self) -> usize {
        self.dirty.lock().len()
    }

    /// Cached nodes.
    pub fn cached_nodes(&self) -> usize {
        self.cache.len()
    }

    /// Tells the allocator which journal seqs are durable (frees waiting node slots).
    pub(crate) fn note_durable(&self) {
        self.alloc.durable(self.journal.durable_seq());
        self.note_usage();
    }

    /// Hands the node-slot accounting to the journal (every jset carries it).
    pub(crate) fn note_usage(&self) {
        use crate::format::jset::UsageCounter;
        let (used, total) = self.alloc.usage();
        self.journal.set_usage(UsageCounter::BtreeNodes, used);
        self.journal.set_usage(UsageCounter::BtreeNodeSlots, total);
    }
}

impl JournalReclaim for Btree {
    fn flush_pins(&self, upto: u64) -> Result<(), String> {
        self.flush_pins_upto(upto).map_err(|e| e.to_string())
    }
}

/// Bytes to sectors (rounding up), saturating.
pub(crate) fn sectors(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(512)).unwrap_or(u32::MAX)
}
