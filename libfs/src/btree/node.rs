//! In-memory btree nodes.
//!
//! A node's identity (btree, level, key range, disk address, node seq) never changes: a
//! structural change (split, merge, compaction) makes new nodes and kills the old one. Its
//! keys live in a few sorted [`KeySet`]s, oldest first; for a position in several sets the
//! newest wins, and a `deleted` key hides older versions.
//!
//! Locking contract (enforced with `debug_assert!`s):
//! - the key sets ([`NodeData`]) are read under the node's SIX lock held for read or intent,
//!   and changed only under the write lock (which requires intent);
//! - write bookkeeping ([`WriteState`]) is under its own mutex, so a node writer holding only
//!   a read lock can seal the unwritten sets; a sealed set is never changed again;
//! - `io` serialises writes of one node; it is taken after the SIX lock (never the other way
//!   round) and held without any SIX lock only during the device IO.
//!
//! Sets `[0, ws.sealed)` are written (or being written); sets from `ws.sealed` on hold keys
//! that are not on disk yet and are pinned in the journal by `ws.unwritten_pin`.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::keyset::{Bloom, KeySet};
use crate::format::bkey::{KeyRef, KeyType, Pos};
use crate::format::btree_id::BtreeId;
use crate::format::btree_ptr::BtreePtr;
use crate::sync::six::SixLock;

/// Largest insert set before it is merged into the older unwritten set.
const INSERT_SET_MAX: usize = 512;

/// The key sets of a node.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct NodeData {
    pub(crate) sets: Vec<KeySet>,
    /// Encoded bytes of the live keys (newest versions, whiteouts excluded): how full the node
    /// would be if rewritten. Kept exact on insert; used to find underfull nodes to merge.
    pub(crate) live_bytes: usize,
    /// A filter over every key in `sets[recent_from..]` (the sets inserted into since the
    /// node was last written): one check rules out all of them for a lookup.
    recent: Bloom,
    recent_from: usize,
}

/// Write bookkeeping of a node.
#[derive(Debug, Default)]
pub(crate) struct WriteState {
    /// Sets `[0, sealed)` are written or being written.
    pub(crate) sealed: usize,
    /// Bytes of the node used on disk, including a write in flight.
    pub(crate) disk_bytes: u64,
    /// Bytes actually written (completed).
    pub(crate) written_bytes: u64,
    /// Encoded bytes of keys in unsealed sets (an upper bound of the next entry's keys).
    pub(crate) unwritten_bytes: usize,
    /// Journal pin held for unsealed keys: the oldest seq among them.
    pub(crate) unwritten_pin: Option<u64>,
    /// Newest journal seq among unsealed keys.
    pub(crate) unwritten_max_seq: u64,
    /// Journal pin held for sealed keys whose write is in flight.
    pub(crate) inflight_pin: Option<u64>,
}

impl WriteState {
    /// Whether the node has keys not yet on disk.
    pub(crate) fn is_dirty(&self) -> bool {
        self.unwritten_pin.is_some() || self.inflight_pin.is_some()
    }
}

/// An in-memory btree node.
// Field order is the memory order (`repr(C)`): what every lookup touches — the lock word,
// the dead flag, the set vector and the recent-keys filter — comes first, in the first two
// cache lines after the `Arc` header.
#[repr(C)]
pub(crate) struct Node {
    /// The SIX lock guarding `data`.
    pub(crate) lock: SixLock,
    /// Set (under the write lock) when the node has been replaced; lockers must restart.
    dead: AtomicBool,
    data: UnsafeCell<NodeData>,
    /// Write bookkeeping.
    pub(crate) ws: Mutex<WriteState>,
    /// Serialises writes of this node.
    pub(crate) io: Mutex<()>,
    /// Recently used (clock eviction).
    pub(crate) accessed: AtomicBool,
    /// A merge was tried and found no small enough sibling (don't retry on every commit).
    pub(crate) merge_tried: AtomicBool,
    /// Which btree.
    pub(crate) btree: BtreeId,
    /// Level (0 = leaf).
    pub(crate) level: u8,
    /// Smallest position covered.
    pub(crate) min: Pos,
    /// Largest position covered.
    pub(crate) max: Pos,
    /// Disk address in sectors.
    pub(crate) addr: u64,
    /// Random node seq.
    pub(crate) node_seq: u64,
}

// SAFETY: `data` is only accessed under the SIX lock discipline described in the module docs:
// shared references under read/intent, a unique reference under write (which excludes every
// other holder). Everything else in `Node` is `Sync` by itself.
unsafe impl Sync for Node {}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("btree", &self.btree)
            .field("level", &self.level)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("addr", &self.addr)
            .field("dead", &self.is_dead())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with the given identity and contents.
    #[expect(
        clippy::too_many_arguments,
        reason = "a node's identity is eight plain fields"
    )]
    pub(crate) fn new(
        btree: BtreeId,
        level: u8,
        min: Pos,
        max: Pos,
        addr: u64,
        node_seq: u64,
        data: NodeData,
        ws: WriteState,
    ) -> Node {
        Node {
            lock: SixLock::new(),
            data: UnsafeCell::new(data),
            ws: Mutex::new(ws),
            io: Mutex::new(()),
            dead: AtomicBool::new(false),
            accessed: AtomicBool::new(true),
            merge_tried: AtomicBool::new(false),
            btree,
            level,
            min,
            max,
            addr,
            node_seq,
        }
    }

    /// The key sets. The caller holds the lock for read, intent or write.
    #[inline]
    pub(crate) fn data(&self) -> &NodeData {
        debug_assert!(
            self.lock.readers() > 0 || self.lock.is_intent_locked(),
            "node data read without a lock"
        );
        // SAFETY: the caller holds the SIX lock in some mode; mutation happens only under the
        // write lock, which excludes readers, and intent holders do not mutate (module docs).
        unsafe { &*self.data.get() }
    }

    /// The key sets, mutably. The caller holds the write lock.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn data_mut(&self) -> &mut NodeData {
        debug_assert!(
            self.lock.is_write_locked(),
            "node data changed without the write lock"
        );
        // SAFETY: the write lock excludes every reader and every other writer, and the caller
        // holds it for as long as it uses the reference.
        unsafe { &mut *self.data.get() }
    }

    /// A pointer to this node, for its parent.
    pub(crate) fn ptr(&self, sectors_written: u32) -> BtreePtr {
        BtreePtr {
            sector: self.addr,
            node_seq: self.node_seq,
            sectors_written,
            generation: 0,
            min_pos: self.min,
        }
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Marks the node replaced. The caller holds the write lock (so the lock's seq changes
    /// and every saved seq becomes stale).
    pub(crate) fn set_dead(&self) {
        debug_assert!(self.lock.is_write_locked());
        self.dead.store(true, Ordering::Release);
    }

    /// Whether `pos` is inside the node's range.
    pub(crate) fn covers(&self, pos: Pos) -> bool {
        self.min <= pos && pos <= self.max
    }
}

impl NodeData {
    /// A node holding one written set.
    pub(crate) fn from_set(set: KeySet) -> NodeData {
        let live_bytes = set
            .iter()
            .filter(|k| k.typ != KeyType::Deleted)
            .map(|k| k.encoded_len())
            .sum();
        NodeData {
            sets: vec![set],
            live_bytes,
            recent: Bloom::default(),
            recent_from: 1,
        }
    }

    /// The newest version of `pos` (whiteouts included).
    #[inline]
    pub(crate) fn get_raw(&self, pos: Pos) -> Option<KeyRef<'_>> {
        let (oldest, newer) = self.sets.split_first()?;
        let covered = self.recent_from.saturating_sub(1).min(newer.len());
        let (older, recent) = newer.split_at(covered);
        if self.recent.may_contain(pos) {
            for s in recent.iter().rev() {
                if let Some(i) = s.find(pos) {
                    return s.key(i);
                }
            }
        }
        for s in older.iter().rev() {
            if let Some(i) = s.find(pos) {
                return s.key(i);
            }
        }
        oldest.find_unfiltered(pos).and_then(|i| oldest.key(i))
    }

    /// The live value at `pos`.
    #[inline]
    pub(crate) fn get(&self, pos: Pos) -> Option<KeyRef<'_>> {
        self.get_raw(pos).filter(|k| k.typ != KeyType::Deleted)
    }

    /// The first live key with position ≥ `pos`.
    pub(crate) fn seek_ge(&self, mut pos: Pos) -> Option<KeyRef<'_>> {
        loop {
            let mut best: Option<(Pos, usize, usize)> = None;
            for (si, s) in self.sets.iter().enumerate() {
                let i = s.lower_bound(pos);
                if let Some(e) = s.ent(i)
                    && best.is_none_or(|(p, _, _)| e.pos() <= p)
                {
                    best = Some((e.pos(), si, i));
                }
            }
            let (p, si, i) = best?;
            let k = self.sets[si].key(i)?;
            if k.typ != KeyType::Deleted {
                return Some(k);
            }
            pos = p.successor()?;
        }
    }

    /// The last live key with position ≤ `pos`.
    pub(crate) fn seek_le(&self, mut pos: Pos) -> Option<KeyRef<'_>> {
        loop {
            let mut best: Option<(Pos, usize, usize)> = None;
            for (si, s) in self.sets.iter().enumerate() {
                let i = s.upper_bound(pos);
                if i == 0 {
                    continue;
                }
                if let Some(e) = s.ent(i - 1)
                    && best.is_none_or(|(p, _, _)| e.pos() >= p)
                {
                    best = Some((e.pos(), si, i - 1));
                }
            }
            let (p, si, i) = best?;
            let k = self.sets[si].key(i)?;
            if k.typ != KeyType::Deleted {
                return Some(k);
            }
            pos = p.predecessor()?;
        }
    }

    /// Calls `f` on every live key in `[pos, end]` in order (a k-way merge of the sets),
    /// until `f` returns false. Returns true if it stopped early or passed `end`.
    pub(crate) fn for_each_from(
        &self,
        pos: Pos,
        end: Pos,
        mut f: impl FnMut(KeyRef<'_>) -> bool,
    ) -> bool {
        let mut idx: smallvec::SmallVec<[usize; 4]> =
            self.sets.iter().map(|s| s.lower_bound(pos)).collect();
        loop {
            let mut best: Option<(Pos, usize)> = None;
            for (si, s) in self.sets.iter().enumerate() {
                if let Some(e) = s.ent(idx[si])
                    && best.is_none_or(|(p, _)| e.pos() <= p)
                {
                    best = Some((e.pos(), si));
                }
            }
            let Some((p, si)) = best else { return false };
            if p > end {
                return true;
            }
            let k = self.sets[si].key(idx[si]);
            for (sj, s) in self.sets.iter().enumerate() {
                if s.ent(idx[sj]).is_some_and(|e| e.pos() == p) {
                    idx[sj] += 1;
                }
            }
            if let Some(k) = k
                && k.typ != KeyType::Deleted
                && !f(k)
            {
                return true;
            }
        }
    }

    /// The live keys merged into one set (O(keys)).
    pub(crate) fn live_set(&self) -> KeySet {
        let refs: Vec<&KeySet> = self.sets.iter().collect();
        KeySet::merge(&refs, true)
    }

    /// Inserts `k` into the unsealed insert set, starting one if needed, and keeps the number
    /// of sets small by merging. Returns the change in unwritten bytes.
    /// Caller holds the write lock and the write-state mutex (`ws`).
    pub(crate) fn insert(&mut self, k: &KeyRef<'_>, ws: &mut WriteState) {
        // Exact: an overwrite that only added would let a node that lost most of its keys
        // (an interior node after merges below it: each merge deletes one pointer and
        // overwrites another) look full forever, so it would never merge and the tree
        // would never shrink.
        let old = self.get(k.pos).map_or(0, |o| o.encoded_len());
        let new = if k.typ == KeyType::Deleted {
            0
        } else {
            k.encoded_len()
        };
        self.live_bytes = (self.live_bytes + new).saturating_sub(old);
        if self.sets.len() == ws.sealed {
            // Everything so far is sealed: the recent-keys filter starts over with this set.
            self.recent = Bloom::with_keys(INSERT_SET_MAX);
            self.recent_from = self.sets.len();
            self.sets.push(KeySet::new());
        } else if self.sets.last().is_some_and(|s| s.len() >= INSERT_SET_MAX) {
            // Merge the unsealed sets into one and start a fresh insert set.
            if self.sets.len() - ws.sealed >= 2 {
                let n = self.sets.len();
                let merged = KeySet::merge(&[&self.sets[n - 2], &self.sets[n - 1]], false);
                self.sets.truncate(n - 2);
                self.sets.push(merged);
                ws.unwritten_bytes = self.sets_bytes_from(ws.sealed);
            }
            self.sets.push(KeySet::new());
        }
        let set = self.sets.last_mut();
        if let Some(set) = set {
            let replaced = set.insert(k);
            ws.unwritten_bytes += k.encoded_len();
            if let Some(r) = replaced {
                ws.unwritten_bytes -= r;
            }
        }
        if self.recent.full() {
            let n: usize = self.sets[self.recent_from.min(self.sets.len())..]
                .iter()
                .map(KeySet::len)
                .sum();
            self.recent = Bloom::with_keys(2 * n + 1);
            for s in &self.sets[self.recent_from.min(self.sets.len())..] {
                for e in s.iter() {
                    self.recent.add(e.pos);
                }
            }
        }
        self.recent.add(k.pos);
        self.compact_sealed(ws);
    }

    fn sets_bytes_from(&self, from: usize) -> usize {
        self.sets
            .get(from..)
            .map_or(0, |s| s.iter().map(KeySet::live_bytes).sum())
    }

    /// Keeps one sealed set: merges all sealed sets into one.
    pub(crate) fn compact_sealed(&mut self, ws: &mut WriteState) {
        // One sealed set: lookups then search at most three sets (sealed, merged unsealed,
        // insert set). Merging costs O(keys) once per node write, which is rare.
        if ws.sealed >= 2 {
            let refs: Vec<&KeySet> = self.sets[..ws.sealed].iter().collect();
            // These are the oldest sets: whiteouts have nothing older left to hide.
            let merged = KeySet::merge(&refs, true);
            self.sets.splice(..ws.sealed, [merged]);
            // The filter covers only sets after the sealed ones (reset when they were started).
            debug_assert!(self.recent_from >= ws.sealed || self.recent_from >= self.sets.len());
            self.recent_from = self.recent_from.saturating_sub(ws.sealed - 1).max(1);
            ws.sealed = 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, reason = "small test values")]
mod tests {
    use super::*;
    use crate::format::bkey::Key;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn node_data_matches_a_btreemap_across_seals(
            ops in proptest::collection::vec((0u64..200, 0u8..4), 0..3000),
        ) {
            let mut d = NodeData::default();
            let mut ws = WriteState::default();
            let mut m: BTreeMap<Pos, Key> = BTreeMap::new();
            for (i, (p, op)) in ops.into_iter().enumerate() {
                let pos = Pos::new(p, 0, 0);
                match op {
                    0 => {
                        let k = Key::deleted(pos);
                        d.insert(&k.as_ref(), &mut ws);
                        m.remove(&pos);
                    }
                    3 => {
                        // "Write" the node: seal every set.
                        ws.sealed = d.sets.len();
                        ws.unwritten_bytes = 0;
                        d.compact_sealed(&mut ws);
                    }
                    _ => {
                        let k = Key::cookie(pos, &(i as u32).to_le_bytes());
                        d.insert(&k.as_ref(), &mut ws);
                        m.insert(pos, k);
                    }
                }
                prop_assert!(d.sets.len() <= ws.sealed + 2 && ws.sealed <= 2, "{} sets, {} sealed", d.sets.len(), ws.sealed);
            }
            prop_assert_eq!(d.live_bytes, d.live_set().live_bytes());
            let live: Vec<Key> = d.live_set().iter().map(|k| k.to_owned()).collect();
            prop_assert_eq!(&live, &m.values().cloned().collect::<Vec<_>>());
            for p in 0..201u64 {
                let pos = Pos::new(p, 0, 0);
                prop_assert_eq!(d.get(pos).map(|k| k.to_owned()), m.get(&pos).cloned());
                let ge = m.range(pos..).next().map(|(_, k)| k.clone());
                prop_assert_eq!(d.seek_ge(pos).map(|k| k.to_owned()), ge);
                let le = m.range(..=pos).next_back().map(|(_, k)| k.clone());
                prop_assert_eq!(d.seek_le(pos).map(|k| k.to_owned()), le);
            }
        }
    }
}
