//! In-memory btree nodes.
//!
//! A node's identity (btree, level, key range, disk address, node seq) never changes: a
//! structural change (split, merge, compaction) makes new nodes and kills the old one.
//!
//! Two structures, kept apart so each can be shaped for its job:
//! - the **lookup sets** ([`NodeData`]): every key of the node, in at most three sorted
//!   [`KeySet`]s, oldest first (a base, maybe a middle set, and a small insert set, so
//!   inserts stay cheap); for a position in several sets the newest wins, and a `deleted`
//!   key hides older versions. They can be merged into one at any time (what is on disk does
//!   not depend on them): by an insert once the newer sets reach a quarter of the base, and
//!   by a reader once the node has been read [`READ_HOT`] times since it last changed;
//! - the **unwritten log** (in [`WriteState`]): the key records added since the node was last
//!   written, in arrival order. A node write sorts it, keeps the newest version of each
//!   position (whiteouts included) and appends that as one entry. Its journal pin is
//!   `ws.unwritten_pin`.
//!
//! Locking contract (enforced with `debug_assert!`s):
//! - the lookup sets are read under the node's SIX lock held for read or intent, and changed
//!   only under the write lock (which requires intent);
//! - write bookkeeping ([`WriteState`]) is under its own mutex, so a node writer holding only
//!   a read lock can take the unwritten log;
//! - `io` serialises writes of one node; it is taken before the SIX lock (never the other way
//!   round) and held across the device IO, after the SIX lock is released.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::Mutex;

use super::keyset::{Bloom, KeySet};
use crate::format::bkey::{KeyRef, KeyType, Pos};
use crate::format::btree_id::BtreeId;
use crate::format::btree_ptr::BtreePtr;
use crate::sync::six::SixLock;

/// Largest insert set before it is merged into the middle set.
const INSERT_SET_MAX: usize = 512;
/// Lookups of a multi-set leaf since it last changed after which a reader merges its sets.
pub(crate) const READ_HOT: u32 = 256;

/// The lookup sets of a node.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct NodeData {
    /// Oldest first: the base, then (maybe) a middle set and the insert set.
    pub(crate) sets: Vec<KeySet>,
    /// Encoded bytes of the live keys (newest versions, whiteouts excluded): how full the node
    /// would be if rewritten. Kept exact on insert; used to find underfull nodes to merge.
    pub(crate) live_bytes: usize,
    /// A filter over every key in `sets[1..]`: one check rules them all out for a lookup.
    recent: Bloom,
    /// Lookups since the sets last changed (a hint for merging them on read).
    pub(crate) reads: AtomicU32,
}

/// Write bookkeeping of a node.
#[derive(Debug, Default)]
pub(crate) struct WriteState {
    /// Key records added since the node was last written, in arrival order.
    log: Vec<u8>,
    /// Position and offset in `log` of each record, in arrival order.
    log_ents: Vec<(Pos, u32)>,
    /// `log.len()` right after it was last deduplicated (0: never).
    log_deduped: usize,
    /// Bytes of the node used on disk, including a write in flight.
    pub(crate) disk_bytes: u64,
    /// Bytes actually written (completed).
    pub(crate) written_bytes: u64,
    /// Journal pin held for the unwritten log: the oldest seq in it.
    pub(crate) unwritten_pin: Option<u64>,
    /// Newest journal seq in the unwritten log.
    pub(crate) unwritten_max_seq: u64,
    /// Journal pin held for keys whose write is in flight.
    pub(crate) inflight_pin: Option<u64>,
}

impl WriteState {
    /// The state of a node read from disk, `bytes` of it in use and written.
    pub(crate) fn on_disk(bytes: u64) -> WriteState {
        WriteState {
            disk_bytes: bytes,
            written_bytes: bytes,
            ..WriteState::default()
        }
    }

    /// Whether the node has keys not yet on disk.
    pub(crate) fn is_dirty(&self) -> bool {
        self.unwritten_pin.is_some() || self.inflight_pin.is_some()
    }

    /// Bytes the unwritten records take: at least what the next entry's keys will take.
    pub(crate) fn unwritten_bytes(&self) -> usize {
        self.log.len()
    }

    /// Whether there is anything to write.
    pub(crate) fn has_unwritten(&self) -> bool {
        !self.log_ents.is_empty()
    }

    /// Appends a key record to the unwritten log.
    pub(crate) fn log_key(&mut self, k: &KeyRef<'_>) {
        let off = u32::try_from(self.log.len()).unwrap_or(u32::MAX);
        crate::format::bkey::encode_key(&mut self.log, k.pos, k.typ, k.size, k.val);
        self.log_ents.push((k.pos, off));
    }

    /// Drops overwritten records from the log if it grew since it was last deduplicated (so
    /// a node overwritten again and again does not look fuller than it is). Returns whether
    /// that shrank it. O(log) — amortised by only running once the log has grown.
    pub(crate) fn dedup_log(&mut self) -> bool {
        if self.log.len() <= self.log_deduped {
            return false;
        }
        let before = self.log.len();
        let set = self.unwritten_set();
        self.log.clear();
        self.log_ents.clear();
        for k in set.iter() {
            self.log_key(&k);
        }
        self.log_deduped = self.log.len();
        self.log.len() < before
    }

    /// The unwritten keys: sorted, newest version of each position, whiteouts kept.
    pub(crate) fn unwritten_set(&self) -> KeySet {
        let mut order: Vec<usize> = (0..self.log_ents.len()).collect();
        // Stable: for equal positions arrival order is kept, and the last one wins.
        order.sort_by_key(|&i| self.log_ents[i].0);
        let mut set = KeySet::with_capacity(order.len(), self.log.len());
        for (n, &i) in order.iter().enumerate() {
            let (pos, off) = self.log_ents[i];
            if order.get(n + 1).is_some_and(|&j| self.log_ents[j].0 == pos) {
                continue;
            }
            // The records were encoded by `log_key`: they decode.
            if let Some(Ok((k, _))) = self
                .log
                .get(off as usize..)
                .map(crate::format::bkey::decode_key)
            {
                set.push_sorted(&k);
            }
        }
        set.finish();
        set
    }

    /// Takes the unwritten keys for a node write (the log starts over).
    pub(crate) fn take_unwritten(&mut self) -> KeySet {
        let set = self.unwritten_set();
        self.log = Vec::new();
        self.log_ents = Vec::new();
        self.log_deduped = 0;
        set
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
            reads: AtomicU32::new(0),
        }
    }

    /// The newest version of `pos` (whiteouts included).
    #[inline]
    pub(crate) fn get_raw(&self, pos: Pos) -> Option<KeyRef<'_>> {
        let (base, newer) = self.sets.split_first()?;
        if !newer.is_empty() && self.recent.may_contain(pos) {
            for s in newer.iter().rev() {
                if let Some(i) = s.find(pos) {
                    return s.key(i);
                }
            }
        }
        base.find_unfiltered(pos).and_then(|i| base.key(i))
    }

    /// Counts a lookup; true when the sets should be merged for readers (several sets, read
    /// [`READ_HOT`] times since the last change).
    #[inline]
    pub(crate) fn note_lookup(&self) -> bool {
        self.sets.len() > 1 && self.reads.fetch_add(1, Ordering::Relaxed) + 1 == READ_HOT
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

    /// Inserts `k` into the lookup sets: into the insert set, which is merged into the middle
    /// set when full; the newer sets are merged into the base once the middle set reaches a
    /// quarter of the base (so each key is copied a few times, not once per insert). The
    /// caller holds the write lock, and logs `k` as unwritten separately.
    pub(crate) fn insert(&mut self, k: &KeyRef<'_>) {
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
        self.reads.store(0, Ordering::Relaxed);
        if self.sets.is_empty() {
            self.sets.push(KeySet::new());
        }
        if self.sets.len() == 1 {
            self.recent = Bloom::with_keys(INSERT_SET_MAX);
            self.sets.push(KeySet::new());
        } else if self.sets.last().is_some_and(|s| s.len() >= INSERT_SET_MAX) {
            if self.sets.len() >= 3 {
                let n = self.sets.len();
                let merged = KeySet::merge(&[&self.sets[n - 2], &self.sets[n - 1]], false);
                self.sets.truncate(n - 2);
                self.sets.push(merged);
            }
            if self.sets[1].len() * 4 >= self.sets[0].len() {
                self.compact();
                self.recent = Bloom::with_keys(INSERT_SET_MAX);
            }
            self.sets.push(KeySet::new());
        }
        if let Some(set) = self.sets.last_mut() {
            set.insert(k);
        }
        if self.recent.full() {
            let n: usize = self.sets[1..].iter().map(KeySet::len).sum();
            self.recent = Bloom::with_keys(2 * n + 1);
            for s in &self.sets[1..] {
                for e in s.iter() {
                    self.recent.add(e.pos);
                }
            }
        }
        self.recent.add(k.pos);
        debug_assert!(self.sets.len() <= 3);
    }

    /// Merges every set into one base (whiteouts dropped: the base holds every key of the
    /// node). The caller holds the write lock.
    pub(crate) fn compact(&mut self) {
        if self.sets.len() > 1 {
            let refs: Vec<&KeySet> = self.sets.iter().collect();
            let merged = KeySet::merge(&refs, true);
            self.sets = vec![merged];
            self.recent = Bloom::default();
        }
        self.reads.store(0, Ordering::Relaxed);
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
        fn lookup_sets_and_unwritten_log_match_models(
            ops in proptest::collection::vec((0u64..200, 0u8..7), 0..3000),
        ) {
            let mut d = NodeData::default();
            let mut ws = WriteState::default();
            let mut m: BTreeMap<Pos, Key> = BTreeMap::new();
            let mut since_write: BTreeMap<Pos, Key> = BTreeMap::new();
            for (i, (p, op)) in ops.into_iter().enumerate() {
                let pos = Pos::new(p, 0, 0);
                match op {
                    0 => {
                        let k = Key::deleted(pos);
                        d.insert(&k.as_ref());
                        ws.log_key(&k.as_ref());
                        m.remove(&pos);
                        since_write.insert(pos, k);
                    }
                    4 => {
                        // A node write takes the unwritten keys: newest version per position.
                        let got: Vec<Key> = ws.take_unwritten().iter().map(|k| k.to_owned()).collect();
                        prop_assert_eq!(&got, &since_write.values().cloned().collect::<Vec<_>>());
                        since_write.clear();
                        prop_assert!(!ws.has_unwritten());
                        prop_assert_eq!(ws.unwritten_bytes(), 0);
                    }
                    5 => d.compact(),
                    6 => {
                        ws.dedup_log();
                        let want: usize = since_write.values().map(Key::encoded_len).sum();
                        prop_assert_eq!(ws.unwritten_bytes(), want);
                    }
                    _ => {
                        let k = Key::cookie(pos, &(i as u32).to_le_bytes());
                        d.insert(&k.as_ref());
                        ws.log_key(&k.as_ref());
                        m.insert(pos, k.clone());
                        since_write.insert(pos, k);
                    }
                }
                prop_assert!(d.sets.len() <= 3, "{} sets", d.sets.len());
                let want: usize = since_write.values().map(Key::encoded_len).sum();
                prop_assert!(ws.unwritten_bytes() >= want, "the log under-counts");
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

    #[test]
    fn a_hot_multi_set_node_asks_to_be_merged_once() {
        let mut d = NodeData::default();
        for i in 0..600u64 {
            d.insert(&Key::cookie(Pos::new(i, 0, 0), b"v").as_ref());
        }
        assert!(d.sets.len() > 1);
        let asks = (0..3 * READ_HOT).filter(|_| d.note_lookup()).count();
        assert_eq!(asks, 1, "asked {asks} times");
        d.compact();
        assert_eq!(d.sets.len(), 1);
        assert!(
            !(0..3 * READ_HOT).any(|_| d.note_lookup()),
            "a one-set node never asks"
        );
    }
}
