//! Structural changes, all copy-on-write: split, compact, merge, grow and shrink at the root.
//!
//! A node is never rewritten in place. A change builds its new node(s) in memory, writes them
//! to newly allocated places, then — holding a journal reservation — write-locks the parent
//! and the old node(s) for the pointer swap only: the parent gets the new pointers as ordinary
//! journaled keys one level up (or the root changes, recorded in the journal), the old nodes
//! are marked dead and leave the cache, and their journal pins are released (their keys now
//! live in the new nodes, which are on disk). Old node space is returned to the allocator
//! only once the swap's journal seq is durable.
//!
//! All structural changes of a btree are serialised by its `interior` mutex. Its holder takes
//! intent locks from the root down (nobody else takes intent on interior nodes), may do IO
//! while holding them (readers are not blocked by intent), and may read nodes into the cache
//! freely: no pointer can change while it holds the mutex.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::keyset::KeySet;
use super::node::{Node, NodeData, WriteState};
use super::trans::{child_ptr, fits, insert_keys, node_capacity, room_now};
use super::{Btree, BtreeError, TransError, io};
use crate::format::bkey::{KEY_HEADER_BYTES, Key, Pos};
use crate::format::btree_id::BtreeId;
use crate::format::btree_node::{ENTRY_HEADER_BYTES, MAX_DEPTH};
use crate::format::btree_ptr::BTREE_PTR_BYTES;
use crate::format::jset::{JEntryType, push_entry_header};

const PTR_KEY_BYTES: usize = KEY_HEADER_BYTES + BTREE_PTR_BYTES;

fn err(e: TransError) -> BtreeError {
    match e {
        TransError::Error(e) => e,
        TransError::Restart(r) => BtreeError::escaped(r),
    }
}

pub(crate) fn unlock_intents(nodes: &[Arc<Node>]) {
    for n in nodes {
        n.lock.unlock_intent();
    }
}

/// Intent-locks the path from the root down to the node at `level` covering `pos`.
/// Index 0 is the root. The caller holds the btree's interior mutex.
pub(crate) fn lock_path(
    bt: &Btree,
    btree: BtreeId,
    pos: Pos,
    level: u8,
) -> Result<Vec<Arc<Node>>, BtreeError> {
    let root = bt.root(btree);
    root.lock.lock_intent();
    if root.level < level {
        root.lock.unlock_intent();
        return Err(BtreeError::Internal(format!(
            "{btree}: no level {level} in a tree of height {}",
            root.level + 1
        )));
    }
    let mut path = vec![root];
    while let Some(cur) = path.last().cloned()
        && cur.level > level
    {
        let r = child_ptr(&cur, pos)
            .map_err(err)
            .and_then(|(max, ptr)| io::get_node(bt, &ptr, btree, cur.level - 1, max));
        match r {
            Ok(child) => {
                child.lock.lock_intent();
                path.push(child);
            }
            Err(e) => {
                unlock_intents(&path);
                return Err(e);
            }
        }
    }
    Ok(path)
}

/// Allocates a node slot, forcing a journal flush if freed slots are waiting for one.
fn alloc_addr(bt: &Btree) -> Result<u64, BtreeError> {
    if let Some(e) = crate::fault!("btree:node_alloc") {
        return Err(BtreeError::Injected {
            site: e.site,
            errno: e.errno,
        });
    }
    if let Some(a) = bt.alloc.alloc() {
        bt.note_usage();
        return Ok(a);
    }
    if let Some(s) = bt.alloc.pending_seq() {
        bt.journal.flush(s)?;
        bt.note_durable();
        if let Some(a) = bt.alloc.alloc() {
            bt.note_usage();
            return Ok(a);
        }
    }
    let (used, total) = bt.alloc.usage();
    Err(BtreeError::NoSpace { used, total })
}

fn new_node(
    bt: &Btree,
    btree: BtreeId,
    level: u8,
    min: Pos,
    max: Pos,
    set: KeySet,
) -> Result<Arc<Node>, BtreeError> {
    let addr = alloc_addr(bt)?;
    let ws = WriteState::default();
    Ok(Arc::new(Node::new(
        btree,
        level,
        min,
        max,
        addr,
        rand::random::<u64>(),
        NodeData::from_set(set),
        ws,
    )))
}

/// Gives the slots of new nodes that never became reachable back to the allocator.
fn give_back(bt: &Btree, nodes: &[Arc<Node>]) {
    for n in nodes {
        bt.alloc.free_after(n.addr, 0);
    }
}

/// Writes new nodes; on failure gives their slots back.
fn write_new(bt: &Btree, nodes: &[Arc<Node>]) -> Result<(), BtreeError> {
    let jseq = bt.journal.cur_seq();
    for n in nodes {
        if let Err(e) = io::write_new_node(bt, n, jseq) {
            give_back(bt, nodes);
            return Err(e);
        }
    }
    Ok(())
}

fn ptr_key(n: &Node) -> Key {
    Key::btree_ptr(n.max, &n.ptr(io::written_sectors(n)))
}

/// Marks `old` dead (write-locked by the caller, who also holds its `io` lock, so no write of
/// it is in flight), drops its pins, dirty entry and cache entry.
fn retire(bt: &Btree, old: &Arc<Node>) {
    old.set_dead();
    {
        // Pins are released under `ws`, as in `io::write_node`.
        let mut ws = old.ws.lock();
        for p in [ws.unwritten_pin.take(), ws.inflight_pin.take()]
            .into_iter()
            .flatten()
        {
            bt.journal.pin_put(p);
        }
    }
    bt.dirty.lock().remove(&old.addr);
    bt.cache.remove(old.addr);
}

/// Swaps `old` (children of `parent`, all intent-locked by the caller) for `new` by inserting
/// `keys` into `parent`, then unlocks `held` (every intent the caller holds).
fn swap_in_parent(
    bt: &Btree,
    btree: BtreeId,
    parent: &Arc<Node>,
    old: &[Arc<Node>],
    new: &[Arc<Node>],
    mut keys: Vec<Key>,
    held: &[Arc<Node>],
) -> Result<(), BtreeError> {
    keys.sort_by_key(|k| k.pos);
    let mut payload = Vec::new();
    let len: usize = keys.iter().map(Key::encoded_len).sum();
    push_entry_header(
        &mut payload,
        JEntryType::BtreeKeys,
        btree,
        parent.level,
        len,
    );
    for k in &keys {
        k.encode_into(&mut payload);
    }
    let res = match bt.journal.reserve(&payload) {
        Ok(r) => r,
        Err(e) => {
            give_back(bt, new);
            unlock_intents(held);
            return Err(e.into());
        }
    };
    let seq = res.seq;
    // No write of an old node may be in flight when it dies (its slot is reused once the
    // swap is durable): take their `io` locks before their write locks, after the journal
    // reservation (whose reclaim may write them).
    let ios: Vec<_> = old.iter().map(|o| o.io.lock()).collect();
    parent.lock.lock_write();
    for o in old {
        o.lock.lock_write();
    }
    debug_assert!(
        room_now(bt, parent, len),
        "the parent lost its room for the swap"
    );
    insert_keys(bt, parent, keys.iter().map(Key::as_ref), seq);
    for o in old {
        retire(bt, o);
    }
    for n in new {
        bt.cache.insert(n.clone());
    }
    for o in old {
        o.lock.unlock_write();
    }
    drop(ios);
    parent.lock.unlock_write();
    unlock_intents(held);
    bt.journal.res_put(res);
    for o in old {
        bt.alloc.free_after(o.addr, seq);
    }
    Ok(())
}

/// Makes `new_root` the root of `btree`, retiring `old` (intent-locked by the caller), then
/// unlocks `held`.
fn swap_root(
    bt: &Btree,
    btree: BtreeId,
    new_root: &Arc<Node>,
    old: &[Arc<Node>],
    new: &[Arc<Node>],
    held: &[Arc<Node>],
) -> Result<(), BtreeError> {
    // A root change opens a new jset: interior keys journaled before it (for a level that
    // this change creates or removes) are then all in older jsets, and replay can drop them.
    bt.journal.start_new_jset();
    let res = match bt.journal.reserve(&[]) {
        Ok(r) => r,
        Err(e) => {
            give_back(bt, new);
            unlock_intents(held);
            return Err(e.into());
        }
    };
    let seq = res.seq;
    let ios: Vec<_> = old.iter().map(|o| o.io.lock()).collect();
    for o in old {
        o.lock.lock_write();
    }
    for o in old {
        retire(bt, o);
    }
    for n in new {
        bt.cache.insert(n.clone());
    }
    let root = bt.cache.insert(new_root.clone());
    *bt.roots[btree.idx()].write() = root;
    bt.journal.root_changed(
        seq,
        btree,
        new_root.level,
        new_root.ptr(io::written_sectors(new_root)),
    );
    for o in old {
        o.lock.unlock_write();
    }
    drop(ios);
    unlock_intents(held);
    bt.journal.res_put(res);
    for o in old {
        bt.alloc.free_after(o.addr, seq);
    }
    Ok(())
}

/// The position to split `live` at so each half holds about half the bytes; `None` if the
/// set cannot be split inside `[min, max)`.
fn byte_median(live: &KeySet, max: Pos) -> Option<Pos> {
    let total = live.live_bytes();
    let mut acc = 0;
    let mut prev: Option<Pos> = None;
    for k in live.iter() {
        acc += k.encoded_len();
        if acc * 2 >= total {
            return if k.pos < max { Some(k.pos) } else { prev };
        }
        prev = Some(k.pos);
    }
    prev.filter(|p| *p < max)
}

fn partition(live: &KeySet, pivot: Pos) -> (KeySet, KeySet) {
    let mut l = KeySet::new();
    let mut r = KeySet::new();
    for k in live.iter() {
        if k.pos <= pivot {
            l.push_sorted(&k);
        } else {
            r.push_sorted(&k);
        }
    }
    l.finish();
    r.finish();
    (l, r)
}

/// Rewrites the node at `level` covering `pos` so that `incoming` more key bytes fit: splits
/// it (at `hint` if given, else at its byte median), merges it with a sibling when nearly
/// empty, or compacts it into a fresh node. Grows or shrinks the tree at the root as needed.
pub(crate) fn rewrite(
    bt: &Btree,
    btree: BtreeId,
    level: u8,
    pos: Pos,
    hint: Option<Pos>,
    incoming: usize,
) -> Result<(), BtreeError> {
    bt.check_error()?;
    let _g = bt.interior[btree.idx()].lock();
    rewrite_locked(bt, btree, level, pos, hint, incoming, 0)
}

enum Plan {
    Split(Pos),
    Compact,
    Merge,
    Shrink,
}

fn rewrite_locked(
    bt: &Btree,
    btree: BtreeId,
    level: u8,
    pos: Pos,
    hint: Option<Pos>,
    incoming: usize,
    depth: u8,
) -> Result<(), BtreeError> {
    if depth >= MAX_DEPTH {
        return Err(BtreeError::TooDeep {
            btree,
            max: MAX_DEPTH,
        });
    }
    let path = lock_path(bt, btree, pos, level)?;
    let Some(node) = path.last().cloned() else {
        return Ok(());
    };
    let is_root = path.len() == 1;
    let live = node.data().live_set();
    let cap = node_capacity(bt);
    let cap2 = (bt.cfg.node_size as usize)
        .saturating_sub(2 * (ENTRY_HEADER_BYTES + bt.cfg.block_size as usize));
    let lb = live.live_bytes();
    let plan = if is_root && node.level > 0 && live.len() == 1 && incoming == 0 {
        Plan::Shrink
    } else if lb + incoming > cap2 || lb > cap * 3 / 4 {
        // Split at the hint, else at the byte median; a lone key at the node's end is split
        // off on its own so the incoming keys before it get the other half.
        let lone_at_max = || {
            live.iter()
                .last()
                .filter(|k| k.pos == node.max)
                .and(node.max.predecessor())
                .filter(|p| *p >= node.min)
        };
        let pivot = hint
            .filter(|h| node.min <= *h && *h < node.max)
            .or_else(|| byte_median(&live, node.max))
            .or_else(lone_at_max);
        match pivot {
            Some(p) => Plan::Split(p),
            None => Plan::Compact,
        }
    } else if !is_root && lb < cap / 3 {
        Plan::Merge
    } else {
        Plan::Compact
    };
    // The parent must have room for the new pointers first.
    if !is_root && matches!(plan, Plan::Split(_) | Plan::Compact | Plan::Merge) {
        let parent = &path[path.len() - 2];
        if !fits(bt, parent, 2 * PTR_KEY_BYTES) {
            unlock_intents(&path);
            rewrite_locked(
                bt,
                btree,
                level + 1,
                pos,
                None,
                2 * PTR_KEY_BYTES,
                depth + 1,
            )?;
            return rewrite_locked(bt, btree, level, pos, hint, incoming, depth + 1);
        }
    }
    match plan {
        Plan::Shrink => {
            let (max, ptr) = match child_ptr(&node, node.min) {
                Ok(v) => v,
                Err(e) => {
                    unlock_intents(&path);
                    return Err(err(e));
                }
            };
            let child = match io::get_node(bt, &ptr, btree, node.level - 1, max) {
                Ok(c) => c,
                Err(e) => {
                    unlock_intents(&path);
                    return Err(e);
                }
            };
            bt.counters.root_shrinks.fetch_add(1, Ordering::Relaxed);
            swap_root(bt, btree, &child, &[node], &[], &path)
        }
        Plan::Split(pivot) => {
            if is_root && node.level + 1 >= MAX_DEPTH {
                unlock_intents(&path);
                return Err(BtreeError::TooDeep {
                    btree,
                    max: MAX_DEPTH,
                });
            }
            let (ls, rs) = partition(&live, pivot);
            let Some(rmin) = pivot.successor() else {
                unlock_intents(&path);
                return Err(BtreeError::Internal("split at the maximum position".into()));
            };
            let made = new_node(bt, btree, node.level, node.min, pivot, ls).and_then(|l| {
                new_node(bt, btree, node.level, rmin, node.max, rs)
                    .map(|r| (l.clone(), r))
                    .inspect_err(|_| give_back(bt, &[l]))
            });
            let (l, r) = match made {
                Ok(v) => v,
                Err(e) => {
                    unlock_intents(&path);
                    return Err(e);
                }
            };
            if let Err(e) = write_new(bt, &[l.clone(), r.clone()]) {
                unlock_intents(&path);
                return Err(e);
            }
            bt.counters.splits.fetch_add(1, Ordering::Relaxed);
            if is_root {
                let mut set = KeySet::new();
                set.push_sorted(&ptr_key(&l).as_ref());
                set.push_sorted(&ptr_key(&r).as_ref());
                let root = match new_node(bt, btree, node.level + 1, node.min, node.max, set) {
                    Ok(n) => n,
                    Err(e) => {
                        give_back(bt, &[l, r]);
                        unlock_intents(&path);
                        return Err(e);
                    }
                };
                if let Err(e) = write_new(bt, std::slice::from_ref(&root)) {
                    give_back(bt, &[l, r]);
                    unlock_intents(&path);
                    return Err(e);
                }
                bt.counters.root_splits.fetch_add(1, Ordering::Relaxed);
                swap_root(bt, btree, &root, &[node], &[l, r], &path)
            } else {
                let parent = path[path.len() - 2].clone();
                let keys = vec![ptr_key(&l), ptr_key(&r)];
                swap_in_parent(bt, btree, &parent, &[node], &[l, r], keys, &path)
            }
        }
        Plan::Compact => {
            let c = match new_node(bt, btree, node.level, node.min, node.max, live) {
                Ok(n) => n,
                Err(e) => {
                    unlock_intents(&path);
                    return Err(e);
                }
            };
            if let Err(e) = write_new(bt, std::slice::from_ref(&c)) {
                unlock_intents(&path);
                return Err(e);
            }
            bt.counters.compactions.fetch_add(1, Ordering::Relaxed);
            if is_root {
                swap_root(bt, btree, &c, &[node], &[], &path)
            } else {
                let parent = path[path.len() - 2].clone();
                swap_in_parent(
                    bt,
                    btree,
                    &parent,
                    &[node],
                    std::slice::from_ref(&c),
                    vec![ptr_key(&c)],
                    &path,
                )
            }
        }
        Plan::Merge => merge(bt, btree, path, node, live, incoming, false).map(|_| ()),
    }
}

/// Merges the node at `level` covering `pos` with a sibling if it is under a quarter full
/// and a sibling is small enough; otherwise does nothing. Called after commits that leave a
/// node nearly empty, so a tree emptied by deletes shrinks back (bcachefs's foreground merge).
pub(crate) fn try_merge(bt: &Btree, btree: BtreeId, level: u8, pos: Pos) -> Result<(), BtreeError> {
    bt.check_error()?;
    let _g = bt.interior[btree.idx()].lock();
    try_merge_locked(bt, btree, level, pos)
}

fn try_merge_locked(bt: &Btree, btree: BtreeId, level: u8, pos: Pos) -> Result<(), BtreeError> {
    let path = lock_path(bt, btree, pos, level)?;
    let Some(node) = path.last().cloned() else {
        return Ok(());
    };
    if path.len() == 1 || node.data().live_bytes >= node_capacity(bt) / 4 {
        unlock_intents(&path);
        return Ok(());
    }
    let parent = path[path.len() - 2].clone();
    if !fits(bt, &parent, 2 * PTR_KEY_BYTES) {
        unlock_intents(&path);
        return Ok(()); // the parent's own rewrite will come; not worth forcing here
    }
    let live = node.data().live_set();
    let merged = merge(bt, btree, path, node, live, 0, true)?;
    // The parent lost a pointer: it may now be underfull itself.
    if merged && level + 1 < MAX_DEPTH && !parent.is_dead() {
        try_merge_locked(bt, btree, level + 1, pos)?;
    }
    Ok(())
}

/// Merges `node` (last of `path`) with a sibling if together they are small; otherwise
/// compacts it, or with `merge_only` leaves it alone. Returns whether a merge happened.
fn merge(
    bt: &Btree,
    btree: BtreeId,
    path: Vec<Arc<Node>>,
    node: Arc<Node>,
    live: KeySet,
    incoming: usize,
    merge_only: bool,
) -> Result<bool, BtreeError> {
    let parent = path[path.len() - 2].clone();
    let cap = node_capacity(bt);
    // Candidates: the right sibling, then the left one.
    let sibs: Vec<(Key, bool)> = {
        let d = parent.data();
        let right = node
            .max
            .successor()
            .filter(|_| node.max < parent.max)
            .and_then(|p| d.seek_ge(p));
        let left = node
            .min
            .predecessor()
            .filter(|_| node.min > parent.min)
            .and_then(|p| d.seek_le(p));
        right
            .map(|k| (k.to_owned(), true))
            .into_iter()
            .chain(left.map(|k| (k.to_owned(), false)))
            .collect()
    };
    let compact = |path: Vec<Arc<Node>>| -> Result<(), BtreeError> {
        let c = match new_node(
            bt,
            btree,
            node.level,
            node.min,
            node.max,
            node.data().live_set(),
        ) {
            Ok(n) => n,
            Err(e) => {
                unlock_intents(&path);
                return Err(e);
            }
        };
        if let Err(e) = write_new(bt, std::slice::from_ref(&c)) {
            unlock_intents(&path);
            return Err(e);
        }
        bt.counters.compactions.fetch_add(1, Ordering::Relaxed);
        swap_in_parent(
            bt,
            btree,
            &parent,
            std::slice::from_ref(&node),
            std::slice::from_ref(&c),
            vec![ptr_key(&c)],
            &path,
        )
    };
    let give_up = |path: Vec<Arc<Node>>| -> Result<bool, BtreeError> {
        if merge_only {
            node.merge_tried.store(true, Ordering::Relaxed);
            unlock_intents(&path);
            Ok(false)
        } else {
            compact(path).map(|()| false)
        }
    };
    // Take the first candidate small enough to merge with.
    let mut chosen: Option<(Arc<Node>, KeySet, bool)> = None;
    for (sk, is_right) in sibs {
        let sptr = match crate::format::btree_ptr::BtreePtr::decode(&sk.val) {
            Ok(p) => p,
            Err(e) => {
                unlock_intents(&path);
                return Err(BtreeError::Corrupt {
                    btree,
                    level: parent.level,
                    min: parent.min,
                    max: parent.max,
                    offset: parent.addr * 512,
                    detail: e.to_string(),
                });
            }
        };
        let sib = match io::get_node(bt, &sptr, btree, node.level, sk.pos) {
            Ok(s) => s,
            Err(e) => {
                unlock_intents(&path);
                return Err(e);
            }
        };
        // Lock the sibling in key order: a left sibling comes before `node`. (Under the
        // interior mutex nothing can replace `node` while it is briefly unlocked.)
        if is_right {
            sib.lock.lock_intent();
        } else if !sib.lock.try_lock_intent() {
            node.lock.unlock_intent();
            sib.lock.lock_intent();
            node.lock.lock_intent();
        }
        let slive = sib.data().live_set();
        if slive.live_bytes() + live.live_bytes() + incoming <= cap * 2 / 3 {
            chosen = Some((sib, slive, is_right));
            break;
        }
        sib.lock.unlock_intent();
    }
    let Some((sib, slive, is_right)) = chosen else {
        return give_up(path);
    };
    // `node` may have been unlocked to take a left sibling in order, and a commit may have
    // inserted into it meanwhile: take its keys again now that it is locked for good.
    let live = node.data().live_set();
    if slive.live_bytes() + live.live_bytes() + incoming > cap * 2 / 3 {
        sib.lock.unlock_intent();
        return give_up(path);
    }
    let (left, right, ll, rl) = if is_right {
        (&node, &sib, &live, &slive)
    } else {
        (&sib, &node, &slive, &live)
    };
    let merged = KeySet::merge(&[ll, rl], true);
    let m = match new_node(bt, btree, node.level, left.min, right.max, merged) {
        Ok(n) => n,
        Err(e) => {
            sib.lock.unlock_intent();
            unlock_intents(&path);
            return Err(e);
        }
    };
    let mut held = path.clone();
    held.push(sib.clone());
    if let Err(e) = write_new(bt, std::slice::from_ref(&m)) {
        unlock_intents(&held);
        return Err(e);
    }
    bt.counters.merges.fetch_add(1, Ordering::Relaxed);
    let old = [left.clone(), right.clone()];
    let parent_is_root = path.len() == 2;
    if parent_is_root && parent.data().live_set().len() == 2 {
        // The parent root would have one child left: the merged node becomes the root.
        bt.counters.root_shrinks.fetch_add(1, Ordering::Relaxed);
        let mut old3 = old.to_vec();
        old3.push(parent.clone());
        // The parent is intent-locked as part of `held`; retiring it needs its write lock,
        // which swap_root takes for every node in `old3`.
        return swap_root(bt, btree, &m, &old3, &[], &held).map(|()| true);
    }
    let keys = vec![Key::deleted(left.max), ptr_key(&m)];
    swap_in_parent(
        bt,
        btree,
        &parent,
        &old,
        std::slice::from_ref(&m),
        keys,
        &held,
    )
    .map(|()| true)
}
