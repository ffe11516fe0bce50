//! Transactions: lookups, iterators, queued updates and commit.
//!
//! A transaction queues its updates and sees them in its own lookups (an overlay over the
//! tree). Between calls it holds no locks: a lookup locks the path down to the leaf, copies
//! what it needs and unlocks; an iterator remembers its leaf and the leaf's lock seq, so the
//! next step is one `relock` when nothing changed. Commit takes intent locks on the leaves
//! it changes (in btree, position order), checks every leaf has room (else drops everything,
//! splits or compacts, and restarts), reserves journal space for the keys, takes the write
//! locks, inserts, pins the journal seq in each leaf, and unlocks. Nothing can fail after the
//! journal reservation.
//!
//! Isolation is optimistic: every leaf a transaction reads is remembered with its lock seq;
//! at commit, once the written leaves are write-locked, each read leaf is relocked by that
//! seq (without blocking). If any changed since it was read, the commit gives back its
//! journal reservation (as padding) and restarts — so a committed transaction saw exactly
//! the state it changed (serialisable), while blind writes never conflict.
//!
//! Restarts ([`TransError::Restart`]) mean "drop everything and run the transaction again";
//! [`super::Btree::run`] does that and counts the reasons. Transaction bodies must therefore
//! be idempotent.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::node::Node;
use super::{Btree, BtreeError, RestartReason, TransError, interior, io};
use crate::format::bkey::{KEY_HEADER_BYTES, Key, KeyRef, KeyType, MAX_VAL_BYTES, POS_MAX, Pos};
use crate::format::btree_id::BtreeId;
use crate::format::btree_node::{ENTRY_HEADER_BYTES, entry_disk_bytes};
use crate::format::btree_ptr::BtreePtr;
use crate::format::jset::{JEntryType, push_entry_header};
use crate::sync::six::SixLockType;

/// A transaction.
#[derive(Debug)]
pub struct BtreeTrans<'a> {
    bt: &'a Btree,
    updates: BTreeMap<(BtreeId, Pos), Key>,
    /// Leaves read, by address, with the lock seq they were first read at.
    reads: super::cache::AddrMap<(Arc<Node>, u32)>,
    /// Nodes a commit read from disk after dropping its locks (kept cached for the retry;
    /// released when a commit succeeds).
    keep: Vec<Arc<Node>>,
}

/// A cursor over one btree, used through [`BtreeTrans::next`], [`BtreeTrans::prev`] and
/// [`BtreeTrans::peek`].
#[derive(Debug, Clone)]
pub struct BtreeIter {
    btree: BtreeId,
    pos: Option<Pos>,
    leaf: Option<(Arc<Node>, u32)>,
}

impl BtreeIter {
    /// The cursor position (`None` once it ran off either end).
    pub fn pos(&self) -> Option<Pos> {
        self.pos
    }
}

fn corrupt_node(n: &Node, detail: String) -> TransError {
    TransError::Error(BtreeError::Corrupt {
        btree: n.btree,
        level: n.level,
        min: n.min,
        max: n.max,
        offset: n.addr * 512,
        detail,
    })
}

/// The child pointer of interior node `n` for `pos`: the first live key ≥ `pos`.
pub(crate) fn child_ptr(n: &Node, pos: Pos) -> Result<(Pos, BtreePtr), TransError> {
    let d = n.data();
    let Some(k) = d.seek_ge(pos) else {
        return Err(corrupt_node(
            n,
            format!("interior node has no child covering {pos}"),
        ));
    };
    if k.typ != KeyType::BtreePtr {
        return Err(corrupt_node(
            n,
            format!("interior node holds a {} key at {}", k.typ.name(), k.pos),
        ));
    }
    let p = BtreePtr::decode(k.val).map_err(|e| corrupt_node(n, e.to_string()))?;
    // The child found must cover `pos`: a gap between children (a checksum-valid but wrong
    // pointer) would otherwise hand back a node that does not hold `pos`, and a commit or a
    // backwards step would take it again and again.
    if p.min_pos > pos {
        return Err(corrupt_node(
            n,
            format!(
                "no child covers {pos}: the next child covers {}..={}",
                p.min_pos, k.pos
            ),
        ));
    }
    Ok((k.pos, p))
}

impl<'a> BtreeTrans<'a> {
    pub(crate) fn new(bt: &'a Btree) -> Self {
        BtreeTrans {
            bt,
            updates: BTreeMap::new(),
            reads: super::cache::AddrMap::default(),
            keep: Vec::new(),
        }
    }

    /// Starts (or restarts) the transaction: forgets queued updates and reads.
    pub fn begin(&mut self) {
        self.updates.clear();
        self.reads.clear();
    }

    /// Remembers that `leaf` (locked) was read at its current seq. If it was read before at
    /// another seq, the first one is kept: validation then fails, as it must.
    fn note_read(&mut self, leaf: &Arc<Node>) {
        self.reads
            .entry(leaf.addr)
            .or_insert_with(|| (leaf.clone(), leaf.lock.seq()));
    }

    /// The store.
    pub fn btree(&self) -> &'a Btree {
        self.bt
    }

    /// Walks from the root to the node at `level` covering `pos`, returning it locked with
    /// `want`. Interior nodes are read-locked with lock coupling; when a lock cannot be taken
    /// at once the parent is released first (rule 1). Nodes not in the cache are read with
    /// no locks held, then the parent is relocked by seq before the node enters the cache,
    /// so a node replaced meanwhile is never cached.
    pub(crate) fn traverse(
        bt: &Btree,
        btree: BtreeId,
        pos: Pos,
        level: u8,
        want: SixLockType,
    ) -> Result<Arc<Node>, TransError> {
        Self::traverse_io(bt, btree, pos, level, want, true, None)
    }

    /// [`Self::traverse`]; with `io_ok` false (the caller holds other node locks) a node that
    /// is not cached is not read: the traversal unlocks and returns `Restart(NodeFill)`, and
    /// the caller drops its locks and reads it ([`Self::prefetch`]) before starting over.
    /// Every node passed through is pushed to `keep` if given (holding a reference keeps a
    /// node from being evicted).
    fn traverse_io(
        bt: &Btree,
        btree: BtreeId,
        pos: Pos,
        level: u8,
        want: SixLockType,
        io_ok: bool,
        mut keep: Option<&mut Vec<Arc<Node>>>,
    ) -> Result<Arc<Node>, TransError> {
        'top: loop {
            let root = bt.root(btree);
            if root.level < level {
                return Err(corrupt_node(
                    &root,
                    format!("no level {level} below a root at level {}", root.level),
                ));
            }
            let rt = if root.level == level {
                want
            } else {
                SixLockType::Read
            };
            root.lock.lock(rt);
            // A replaced root is marked dead under its write lock before the new one is
            // installed, so a live root is the current one.
            if root.is_dead() {
                root.lock.unlock(rt);
                bt.counters.retraverse(RestartReason::RootChanged);
                continue 'top;
            }
            if !root.covers(pos) {
                let e = corrupt_node(
                    &root,
                    format!("the root covers {}..={}, not {pos}", root.min, root.max),
                );
                root.lock.unlock(rt);
                return Err(e);
            }
            let mut cur = root;
            let mut cur_t = rt;
            while cur.level > level {
                let (max, ptr) = match child_ptr(&cur, pos) {
                    Ok(v) => v,
                    Err(e) => {
                        cur.lock.unlock(cur_t);
                        return Err(e);
                    }
                };
                let child_level = cur.level - 1;
                let child = match bt.cache.get(ptr.sector) {
                    Some(c) => c,
                    None if !io_ok => {
                        cur.lock.unlock(cur_t);
                        return Err(TransError::Restart(RestartReason::NodeFill));
                    }
                    None => {
                        let seq = cur.lock.seq();
                        cur.lock.unlock(cur_t);
                        crate::sync::six::held::assert_none_held("reading a btree node");
                        let n = io::read_node_raw(
                            &*bt.dev,
                            &bt.cfg,
                            bt.journal.cur_seq(),
                            &ptr,
                            btree,
                            child_level,
                            max,
                        )
                        .map_err(TransError::Error)?;
                        bt.counters.node_reads.fetch_add(1, Ordering::Relaxed);
                        if !cur.lock.relock(cur_t, seq) {
                            bt.counters.retraverse(RestartReason::NodeFill);
                            continue 'top;
                        }
                        bt.cache.insert(Arc::new(n))
                    }
                };
                if let Some(k) = keep.as_deref_mut() {
                    k.push(child.clone());
                }
                if child.node_seq != ptr.node_seq
                    || child.btree != btree
                    || child.level != child_level
                    || child.min != ptr.min_pos
                    || child.max != max
                {
                    let e = corrupt_node(
                        &cur,
                        format!(
                            "cached node at sector {} is not the one the pointer names",
                            ptr.sector
                        ),
                    );
                    cur.lock.unlock(cur_t);
                    return Err(e);
                }
                let ct = if child_level == level {
                    want
                } else {
                    SixLockType::Read
                };
                if child.lock.try_lock(ct) {
                    cur.lock.unlock(cur_t);
                } else {
                    cur.lock.unlock(cur_t);
                    child.lock.lock(ct);
                }
                if child.is_dead() {
                    child.lock.unlock(ct);
                    bt.counters.retraverse(RestartReason::NodeDead);
                    continue 'top;
                }
                cur = child;
                cur_t = ct;
            }
            return Ok(cur);
        }
    }

    /// Reads the leaf covering `pos` into the cache (holding no locks), for a commit that
    /// gave up its locks rather than do IO under them.
    /// The nodes on the way are kept referenced by the transaction until it commits, so
    /// eviction cannot undo the read before the retry.
    fn prefetch(&mut self, btree: BtreeId, pos: Pos) -> Result<(), TransError> {
        let leaf = Self::traverse_io(
            self.bt,
            btree,
            pos,
            0,
            SixLockType::Read,
            true,
            Some(&mut self.keep),
        )?;
        leaf.lock.unlock_read();
        Ok(())
    }

    /// The live key at `pos`, if any (queued updates included).
    pub fn get(&mut self, btree: BtreeId, pos: Pos) -> Result<Option<Key>, TransError> {
        if let Some(k) = self.updates.get(&(btree, pos)) {
            return Ok((!k.is_deleted()).then(|| k.clone()));
        }
        let leaf = Self::traverse(self.bt, btree, pos, 0, SixLockType::Read)?;
        let d = leaf.data();
        let r = d.get(pos).map(|k| k.to_owned());
        let hot = d.note_lookup();
        self.note_read(&leaf);
        leaf.lock.unlock_read();
        if hot {
            merge_for_readers(&leaf);
        }
        Ok(r)
    }

    /// Queues an insert or overwrite of `key` in `btree`.
    pub fn update(&mut self, btree: BtreeId, key: Key) -> Result<(), TransError> {
        if key.val.len() > MAX_VAL_BYTES {
            return Err(TransError::Error(BtreeError::KeyTooBig {
                bytes: key.encoded_len(),
                node_size: self.bt.cfg.node_size,
            }));
        }
        if key.typ == KeyType::BtreePtr {
            return Err(TransError::Error(BtreeError::InvalidKey(format!(
                "{}: btree_ptr keys are only made by the btree itself",
                key.pos
            ))));
        }
        crate::format::bkey::validate_value(&key.as_ref())
            .map_err(|e| TransError::Error(BtreeError::InvalidKey(e.to_string())))?;
        self.updates.insert((btree, key.pos), key);
        Ok(())
    }

    /// Queues a deletion of `pos` in `btree`.
    pub fn delete(&mut self, btree: BtreeId, pos: Pos) -> Result<(), TransError> {
        self.update(btree, Key::deleted(pos))
    }

    /// Queues deletion of every live key in `[start, end]`; returns how many.
    pub fn delete_range(
        &mut self,
        btree: BtreeId,
        start: Pos,
        end: Pos,
    ) -> Result<usize, TransError> {
        let mut it = self.iter(btree, start);
        let mut n = 0;
        while let Some(k) = self.next(&mut it)? {
            if k.pos > end {
                break;
            }
            self.delete(btree, k.pos)?;
            n += 1;
        }
        Ok(n)
    }

    /// A cursor at `pos`.
    pub fn iter(&self, btree: BtreeId, pos: Pos) -> BtreeIter {
        BtreeIter {
            btree,
            pos: Some(pos),
            leaf: None,
        }
    }

    /// Moves the cursor to `pos`.
    pub fn seek(&self, it: &mut BtreeIter, pos: Pos) {
        it.pos = Some(pos);
    }

    /// The first tree key (not the overlay) with position ≥ `pos` (`forward`) or ≤ `pos`.
    fn tree_step(
        &mut self,
        it: &mut BtreeIter,
        pos: Pos,
        forward: bool,
    ) -> Result<Option<Key>, TransError> {
        let mut pos = pos;
        loop {
            let leaf = match it.leaf.take() {
                Some((n, seq)) if n.covers(pos) && n.lock.relock(SixLockType::Read, seq) => n,
                _ => Self::traverse(self.bt, it.btree, pos, 0, SixLockType::Read)?,
            };
            let d = leaf.data();
            let found = if forward {
                d.seek_ge(pos)
            } else {
                d.seek_le(pos)
            }
            .map(|k| k.to_owned());
            let hot = d.note_lookup();
            let seq = leaf.lock.seq();
            self.note_read(&leaf);
            leaf.lock.unlock_read();
            if hot {
                merge_for_readers(&leaf);
            }
            match found {
                Some(k) => {
                    it.leaf = Some((leaf, seq));
                    return Ok(Some(k));
                }
                None => {
                    let next = if forward {
                        leaf.max.successor()
                    } else {
                        leaf.min.predecessor()
                    };
                    match next {
                        Some(p) => pos = p,
                        None => return Ok(None),
                    }
                }
            }
        }
    }

    fn step(
        &mut self,
        it: &mut BtreeIter,
        forward: bool,
        advance: bool,
    ) -> Result<Option<Key>, TransError> {
        let Some(mut pos) = it.pos else {
            return Ok(None);
        };
        loop {
            let tree = self.tree_step(it, pos, forward)?;
            let range = if forward {
                (
                    Bound::Included((it.btree, pos)),
                    Bound::Included((it.btree, POS_MAX)),
                )
            } else {
                (
                    Bound::Included((it.btree, Pos::default())),
                    Bound::Included((it.btree, pos)),
                )
            };
            let mut over = self.updates.range(range);
            let ov = if forward {
                over.next()
            } else {
                over.next_back()
            }
            .map(|(_, k)| k);
            let pick = match (tree, ov) {
                (None, None) => None,
                (Some(t), None) => Some(t),
                (None, Some(o)) => Some(o.clone()),
                (Some(t), Some(o)) => {
                    let overlay_first = if forward {
                        o.pos <= t.pos
                    } else {
                        o.pos >= t.pos
                    };
                    Some(if overlay_first { o.clone() } else { t })
                }
            };
            let Some(k) = pick else {
                if advance {
                    it.pos = None;
                }
                return Ok(None);
            };
            // The overlay may delete the key the tree returned.
            let k = match self.updates.get(&(it.btree, k.pos)) {
                Some(o) => o.clone(),
                None => k,
            };
            if k.is_deleted() {
                match if forward {
                    k.pos.successor()
                } else {
                    k.pos.predecessor()
                } {
                    Some(p) => {
                        pos = p;
                        continue;
                    }
                    None => {
                        if advance {
                            it.pos = None;
                        }
                        return Ok(None);
                    }
                }
            }
            if advance {
                it.pos = if forward {
                    k.pos.successor()
                } else {
                    k.pos.predecessor()
                };
            } else {
                it.pos = Some(k.pos);
            }
            return Ok(Some(k));
        }
    }

    /// The first live key at or after the cursor; the cursor moves past it.
    pub fn next(&mut self, it: &mut BtreeIter) -> Result<Option<Key>, TransError> {
        self.step(it, true, true)
    }

    /// The last live key at or before the cursor; the cursor moves before it.
    pub fn prev(&mut self, it: &mut BtreeIter) -> Result<Option<Key>, TransError> {
        self.step(it, false, true)
    }

    /// The first live key at or after the cursor, without moving past it.
    pub fn peek(&mut self, it: &mut BtreeIter) -> Result<Option<Key>, TransError> {
        self.step(it, true, false)
    }

    /// Calls `f` on every live key of `btree` in `[start, end]`, in order, without copying,
    /// until `f` returns false. Queued updates of this transaction are not seen. `f` runs
    /// with a leaf read-locked: it must not use the store.
    pub fn scan(
        &mut self,
        btree: BtreeId,
        start: Pos,
        end: Pos,
        mut f: impl FnMut(KeyRef<'_>) -> bool,
    ) -> Result<(), TransError> {
        let mut pos = start;
        loop {
            let leaf = Self::traverse(self.bt, btree, pos, 0, SixLockType::Read)?;
            let d = leaf.data();
            let stop = d.for_each_from(pos, end, &mut f);
            let hot = d.note_lookup();
            let next = leaf.max.successor();
            self.note_read(&leaf);
            leaf.lock.unlock_read();
            if hot {
                merge_for_readers(&leaf);
            }
            if stop || leaf.max >= end {
                return Ok(());
            }
            match next {
                Some(n) => pos = n,
                None => return Ok(()),
            }
        }
    }

    /// Number of queued updates.
    pub fn pending(&self) -> usize {
        self.updates.len()
    }

    /// Commits the queued updates. Returns the journal seq holding them (0 if there were
    /// none); the transaction is durable once the journal is flushed through that seq.
    pub fn commit(&mut self) -> Result<u64, TransError> {
        if self.updates.is_empty() {
            // Read-only: valid if nothing read has changed since.
            let mut relocked = Vec::new();
            let mut valid = true;
            for (n, seq) in self.reads.values() {
                if n.lock.relock(SixLockType::Read, *seq) {
                    relocked.push(n);
                } else {
                    valid = false;
                    break;
                }
            }
            for n in relocked {
                n.lock.unlock_read();
            }
            self.reads.clear();
            return if valid {
                Ok(0)
            } else {
                Err(TransError::Restart(RestartReason::Relock))
            };
        }
        self.bt.check_error()?;
        let bt = self.bt;
        let _token = bt.enter_commit()?;
        let ups: Vec<(BtreeId, Key)> = self
            .updates
            .iter()
            .map(|((b, _), k)| (*b, k.clone()))
            .collect();
        // Take intent locks on the leaves, in order, and check each has room.
        let mut leaves: Vec<(Arc<Node>, std::ops::Range<usize>)> = Vec::new();
        let unlock_all = |leaves: &[(Arc<Node>, std::ops::Range<usize>)]| {
            for (n, _) in leaves {
                n.lock.unlock_intent();
            }
        };
        let mut i = 0;
        while i < ups.len() {
            let (b, ref k) = ups[i];
            // Later leaves are locked while holding earlier ones (in order): no IO then.
            let io_ok = leaves.is_empty();
            let leaf = match Self::traverse_io(bt, b, k.pos, 0, SixLockType::Intent, io_ok, None) {
                Ok(l) => l,
                Err(TransError::Restart(RestartReason::NodeFill)) if !io_ok => {
                    unlock_all(&leaves);
                    self.prefetch(b, k.pos)?;
                    return Err(TransError::Restart(RestartReason::NodeFill));
                }
                Err(e) => {
                    unlock_all(&leaves);
                    return Err(e);
                }
            };
            let mut j = i;
            let mut bytes = 0;
            while j < ups.len() && ups[j].0 == b && leaf.covers(ups[j].1.pos) {
                bytes += ups[j].1.encoded_len();
                j += 1;
            }
            if !fits(bt, &leaf, bytes) {
                let first = k.pos;
                let max = leaf.max;
                leaf.lock.unlock_intent();
                unlock_all(&leaves);
                // A run too big for half a node is split at its middle key, so each retry
                // halves it; otherwise the leaf is split or compacted as its contents need.
                let hint = (entry_disk_bytes(bytes, bt.cfg.block_size as usize)
                    > bt.cfg.node_size as usize / 2)
                    .then(|| ups[i + (j - i) / 2].1.pos)
                    .filter(|&h| h < max);
                interior::rewrite(bt, b, 0, first, hint, bytes).map_err(TransError::Error)?;
                return Err(TransError::Restart(RestartReason::Split));
            }
            leaves.push((leaf, i..j));
            i = j;
        }
        // Journal payload: one btree_keys entry per btree, keys sorted.
        let mut payload = Vec::new();
        let mut s = 0;
        while s < ups.len() {
            let b = ups[s].0;
            let e = ups[s..]
                .iter()
                .position(|(x, _)| *x != b)
                .map_or(ups.len(), |n| s + n);
            let len: usize = ups[s..e].iter().map(|(_, k)| k.encoded_len()).sum();
            push_entry_header(&mut payload, JEntryType::BtreeKeys, b, 0, len);
            for (_, k) in &ups[s..e] {
                k.encode_into(&mut payload);
            }
            s = e;
        }
        // Leaves both read and written: unchanged since read? (Our intent keeps them so.)
        let is_written = |n: &Arc<Node>| leaves.iter().any(|(l, _)| Arc::ptr_eq(l, n));
        if self
            .reads
            .values()
            .any(|(n, seq)| is_written(n) && n.lock.seq() != *seq)
        {
            unlock_all(&leaves);
            return Err(TransError::Restart(RestartReason::Relock));
        }
        // Waiting for journal space means IO (jset writes, reclaim writing nodes): never
        // under node locks. Without room now, drop everything, make room, start over.
        let res = match bt.journal.reserve_len_nowait(payload.len()) {
            Ok(Some(r)) => r,
            Ok(None) => {
                unlock_all(&leaves);
                crate::sync::six::held::assert_none_held("a commit waiting for journal space");
                bt.journal.make_room(payload.len())?;
                bt.note_durable();
                return Err(TransError::Restart(RestartReason::JournalRes));
            }
            Err(e) => {
                unlock_all(&leaves);
                return Err(e.into());
            }
        };
        let seq = res.seq;
        // The window between the reservation and the keys being pinned in their leaves (a
        // delay here widens it for tests; an error gives the reservation back).
        if let Some(e) = crate::fault!("btree:commit_reserved") {
            bt.journal.cancel(&res);
            bt.journal.res_put(res);
            unlock_all(&leaves);
            return Err(TransError::Error(BtreeError::Injected {
                site: e.site,
                errno: e.errno,
            }));
        }
        for (n, _) in &leaves {
            n.lock.lock_write();
        }
        // Every leaf still has room: `fits` allowed for a node write (reclaim, under a read
        // lock) between the check and now, and nobody else inserts while we hold intent.
        debug_assert!(
            leaves.iter().all(|(n, r)| {
                let bytes = ups[r.clone()].iter().map(|(_, k)| k.encoded_len()).sum();
                room_now(bt, n, bytes)
            }),
            "a leaf lost the room checked before the journal reservation"
        );
        // Leaves only read: relock at the seq they were read at, without blocking (these
        // locks are out of order: a leaf that cannot be relocked at once means a restart).
        let mut relocked: Vec<&Arc<Node>> = Vec::new();
        let mut valid = true;
        let mut reason = RestartReason::Relock;
        for (n, rseq) in self.reads.values() {
            if is_written(n) {
                continue;
            }
            if n.lock.relock(SixLockType::Read, *rseq) {
                relocked.push(n);
            } else {
                valid = false;
                if n.lock.seq() == rseq.wrapping_add(1) {
                    // Write-locked right now: the first write since our read is under way.
                    reason = RestartReason::LockContended;
                }
                break;
            }
        }
        if valid {
            bt.journal.fill(&res, &payload);
            for (n, r) in &leaves {
                insert_keys(bt, n, ups[r.clone()].iter().map(|(_, k)| k.as_ref()), seq);
            }
        } else {
            bt.journal.cancel(&res);
        }
        for n in relocked {
            n.lock.unlock_read();
        }
        // Leaves left under a quarter full are merge candidates (after unlocking).
        let quarter = node_capacity(bt) / 4;
        let underfull: Vec<(BtreeId, Pos)> = leaves
            .iter()
            .filter(|(n, _)| {
                valid && n.data().live_bytes < quarter && !n.merge_tried.load(Ordering::Relaxed)
            })
            .map(|(n, _)| (n.btree, n.min))
            .collect();
        for (n, _) in &leaves {
            n.lock.unlock_write();
            n.lock.unlock_intent();
        }
        bt.journal.res_put(res);
        if !valid {
            return Err(TransError::Restart(reason));
        }
        // The commit is done: a merge that fails (IO error, no node space) is only a missed
        // chance to shrink, so it is logged, not returned as the commit's result.
        for (b, pos) in underfull {
            if let Err(e) = interior::try_merge(bt, b, 0, pos) {
                log::warn!("{b} btree: merging the underfull node at {pos} failed: {e}");
            }
        }
        bt.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.updates.clear();
        self.reads.clear();
        self.keep.clear();
        Ok(seq)
    }
}

/// Merges a read-hot leaf's lookup sets into one (the unwritten log is untouched, so what is
/// written is the same), if its intent lock is free right now: the caller holds no lock.
/// The write lock only waits for readers, who never block holding a lock.
fn merge_for_readers(leaf: &Node) {
    if !leaf.lock.try_lock_intent() {
        return; // a commit is about to change it anyway
    }
    if !leaf.is_dead() {
        leaf.lock.lock_write();
        leaf.data_mut().compact();
        leaf.lock.unlock_write();
    }
    leaf.lock.unlock_intent();
}

/// Whether `bytes` more key bytes fit in `node`, which the caller holds intent on (so
/// nobody else inserts into it): the keys already unwritten and the new ones must fit after
/// what is on disk even if the node is written between this check and the insert (journal
/// reclaim writes nodes under a read lock): the unwritten keys then take an entry of their
/// own, and the new ones the next.
pub(crate) fn fits(bt: &Btree, node: &Node, bytes: usize) -> bool {
    let mut ws = node.ws.lock();
    let bs = bt.cfg.block_size as usize;
    let ok = |ws: &super::node::WriteState| {
        let pending = match ws.unwritten_bytes() {
            0 => 0,
            u => entry_disk_bytes(u, bs) as u64,
        };
        ws.disk_bytes + pending + entry_disk_bytes(bytes, bs) as u64 <= u64::from(bt.cfg.node_size)
    };
    // The log counts overwritten records until it is deduplicated: do that before saying no.
    ok(&ws) || (ws.dedup_log() && ok(&ws))
}

/// Whether `bytes` more key bytes fit in `node` as it is now (write-locked by the caller, so
/// no node write can start): what an insert needs.
pub(crate) fn room_now(bt: &Btree, node: &Node, bytes: usize) -> bool {
    let ws = node.ws.lock();
    let need = entry_disk_bytes(ws.unwritten_bytes() + bytes, bt.cfg.block_size as usize) as u64;
    ws.disk_bytes + need <= u64::from(bt.cfg.node_size)
}

/// Largest key bytes an empty node holds.
pub(crate) fn node_capacity(bt: &Btree) -> usize {
    (bt.cfg.node_size as usize).saturating_sub(ENTRY_HEADER_BYTES + bt.cfg.block_size as usize)
}

/// Inserts keys committed at journal seq `seq` into `node` (write-locked), pinning the seq
/// and marking the node dirty.
pub(crate) fn insert_keys<'k>(
    bt: &Btree,
    node: &Arc<Node>,
    keys: impl Iterator<Item = KeyRef<'k>>,
    seq: u64,
) {
    insert_keys_at(bt, node, keys, seq, seq);
}

/// [`insert_keys`] for keys committed at journal seqs in `[min_seq, max_seq]` (replay).
pub(crate) fn insert_keys_at<'k>(
    bt: &Btree,
    node: &Arc<Node>,
    keys: impl Iterator<Item = KeyRef<'k>>,
    min_seq: u64,
    max_seq: u64,
) {
    let d = node.data_mut();
    let mut ws = node.ws.lock();
    for k in keys {
        debug_assert!(node.covers(k.pos));
        debug_assert!(k.encoded_len() >= KEY_HEADER_BYTES);
        d.insert(&k);
        ws.log_key(&k);
    }
    note_unwritten(bt, node, &mut ws, min_seq, max_seq);
}

/// Records that `node` holds unwritten keys with journal seqs in `[min_seq, max_seq]`: pins
/// `min_seq` (moving the node's pin back if that is older than the one held: journal replay
/// inserts keys with their original seqs, in position order) and marks the node dirty.
fn note_unwritten(
    bt: &Btree,
    node: &Arc<Node>,
    ws: &mut super::node::WriteState,
    min_seq: u64,
    max_seq: u64,
) {
    debug_assert!(min_seq <= max_seq);
    ws.unwritten_max_seq = ws.unwritten_max_seq.max(max_seq);
    match ws.unwritten_pin {
        None => {
            ws.unwritten_pin = Some(min_seq);
            bt.journal.pin_get(min_seq);
            bt.dirty.lock().insert(node.addr, node.clone());
        }
        Some(p) if min_seq < p => {
            bt.journal.pin_get(min_seq);
            bt.journal.pin_put(p);
            ws.unwritten_pin = Some(min_seq);
        }
        Some(_) => {}
    }
}
