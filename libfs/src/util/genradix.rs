//! Generic radix tree: a sparse array from a `u64` index to `T` (notes §12, seed 000).
//!
//! Used for per-bucket state, journal entries by sequence number, cached pages by index: large
//! index spaces that are populated in runs.
//!
//! # Layout
//!
//! * Entries live in **leaves**: page-sized arrays of `PER_LEAF = 4096 / size_of::<T>()` entries
//!   (at least one; for element sizes that do not divide the page, the tail of the page is
//!   unused, so no entry straddles two leaves). Leaf `L` holds indices
//!   `L * PER_LEAF .. (L + 1) * PER_LEAF`.
//! * **Interior nodes** are exactly one page: 512 atomic child pointers.
//! * There is one tree per depth `d = 0..=8`: tree 0 is just leaf 0; tree `d ≥ 1` has `d` levels
//!   of interior nodes and holds the leaves `512^(d-1) .. 512^d`. An index uses the shallowest
//!   tree that covers its leaf, so small indices cost one or two pointer loads and one entry at
//!   index 2^40 costs only the nodes on its path (no tree ever needs re-rooting).
//!
//! # Invariants
//!
//! 1. Nodes and leaves are allocated on demand, filled with `T::default()` ("zeroed"), and
//!    never moved or freed before the tree is dropped or [`clear`](GenRadix::clear)ed (both
//!    need `&mut self`). Hence a `&T` from [`get`](GenRadix::get) or
//!    [`get_or_alloc`](GenRadix::get_or_alloc) stays valid as long as the shared borrow of the
//!    tree; users mutate entries through interior mutability (atomics, locks).
//! 2. A child pointer goes from null to a fully initialised node exactly once, by a
//!    compare-and-swap with release ordering; readers load it with acquire ordering and need no
//!    lock. Two threads racing to allocate the same node both build one; the loser frees its
//!    own (model-checked with loom).
//! 3. Memory is proportional to the populated pages: the tree owns only the nodes on the paths
//!    to allocated leaves ([`memory_bytes`](GenRadix::memory_bytes)).
//!
//! Iteration ([`iter`](GenRadix::iter), [`iter_from`](GenRadix::iter_from),
//! [`iter_rev`](GenRadix::iter_rev)) yields `(index, &T)` for every entry of every allocated
//! leaf, in index order, skipping unallocated subtrees without visiting them. It may run
//! concurrently with `get_or_alloc`, and then sees some of the new leaves.
//!
//! The unsafe code (turning the stored raw pointers back into references and boxes) is all in
//! this file; each block states why it is sound.
#![allow(
    unsafe_code,
    reason = "lock-free child pointers; every block has a SAFETY comment"
)]

use crate::sync::{AtomicPtr, AtomicUsize, Ordering};
use std::marker::PhantomData;
use std::ptr::null_mut;

/// Bytes per node ("page"). Smaller under the model checkers to keep models small.
const PAGE: usize = if cfg!(any(loom, shuttle)) { 64 } else { 4096 };
/// log2 of the interior fan-out (a page of 8-byte pointers).
const SHIFT: u32 = if cfg!(any(loom, shuttle)) { 2 } else { 9 };
const FANOUT: usize = 1 << SHIFT;
/// Deepest tree needed for leaf numbers below 2^64.
const MAX_DEPTH: usize = 64_usize.div_ceil(SHIFT as usize);

struct Interior {
    /// At level 1 the children are leaves (a `Box<[T]>` of `PER_LEAF` entries, stored as the
    /// pointer to its first element); above, they are `Box<Interior>`s.
    slots: [AtomicPtr<()>; FANOUT],
}

impl Interior {
    fn new_boxed() -> Box<Interior> {
        Box::new(Interior {
            slots: std::array::from_fn(|_| AtomicPtr::new(null_mut())),
        })
    }
}

/// A sparse array from `u64` to `T`. See the module docs.
pub struct GenRadix<T> {
    /// `roots[0]` is leaf 0; `roots[d]` is the top interior node of tree `d`.
    roots: [AtomicPtr<()>; MAX_DEPTH + 1],
    /// Bytes of nodes and leaves allocated.
    bytes: AtomicUsize,
    _owns: PhantomData<T>,
}

// SAFETY: the tree owns its `T`s (created and dropped by whichever thread allocates/drops), so
// moving it to another thread needs `T: Send`.
unsafe impl<T: Send> Send for GenRadix<T> {}
// SAFETY: shared access hands out `&T` to any thread (`T: Sync`), and `get_or_alloc` creates
// `T`s that another thread may later drop (`T: Send`); the pointers themselves are atomics.
unsafe impl<T: Send + Sync> Sync for GenRadix<T> {}

impl<T> std::fmt::Debug for GenRadix<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenRadix")
            .field("per_leaf", &Self::PER_LEAF)
            .field("memory_bytes", &self.memory_bytes())
            .finish_non_exhaustive()
    }
}

impl<T: Default> Default for GenRadix<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[inline(always)]
fn depth_of(leaf: u64) -> usize {
    if leaf < FANOUT as u64 {
        // The common case (the first 512 pages), without the division below.
        return usize::from(leaf != 0);
    }
    let bits = 64 - leaf.leading_zeros();
    bits.div_ceil(SHIFT) as usize
}

fn slot_of(leaf: u64, level: usize) -> usize {
    // Masked to SHIFT bits, so it fits.
    #[allow(clippy::cast_possible_truncation)]
    let s = ((leaf >> ((level - 1) * SHIFT as usize)) as usize) & (FANOUT - 1);
    s
}

impl<T> GenRadix<T> {
    /// Entries per leaf.
    pub const PER_LEAF: usize = {
        let sz = size_of::<T>();
        if sz == 0 || sz >= PAGE {
            if sz == 0 { PAGE } else { 1 }
        } else {
            PAGE / sz
        }
    };
    const PER_LEAF_U64: u64 = Self::PER_LEAF as u64;

    fn leaf_bytes() -> usize {
        Self::PER_LEAF * size_of::<T>()
    }

    /// An empty tree (allocates nothing).
    #[cfg(not(any(loom, shuttle)))]
    pub const fn new() -> Self {
        GenRadix {
            roots: [const { AtomicPtr::new(null_mut()) }; MAX_DEPTH + 1],
            bytes: AtomicUsize::new(0),
            _owns: PhantomData,
        }
    }

    /// An empty tree (not `const` under the model checkers).
    #[cfg(any(loom, shuttle))]
    pub fn new() -> Self {
        GenRadix {
            roots: std::array::from_fn(|_| AtomicPtr::new(null_mut())),
            bytes: AtomicUsize::new(0),
            _owns: PhantomData,
        }
    }

    fn split(idx: u64) -> (u64, usize) {
        // The remainder is below PER_LEAF, a usize.
        #[allow(clippy::cast_possible_truncation)]
        let off = (idx % Self::PER_LEAF_U64) as usize;
        (idx / Self::PER_LEAF_U64, off)
    }

    /// The entry at `idx`, if its leaf has been allocated. Lock-free.
    #[inline]
    pub fn get(&self, idx: u64) -> Option<&T> {
        let (leaf, off) = Self::split(idx);
        let p = self.leaf_ptr(leaf)?;
        // SAFETY: `p` came from a slot that only ever holds null or a leaf published by
        // `install` (release CAS, loaded here with acquire), which stays allocated until
        // `&mut self` (drop/clear); the returned borrow is tied to `&self`.
        let leaf = unsafe { Self::leaf_ref(p) };
        debug_assert!(off < leaf.len());
        // SAFETY: `off = idx % PER_LEAF` and every leaf has exactly `PER_LEAF` entries.
        Some(unsafe { leaf.get_unchecked(off) })
    }

    #[inline(always)]
    fn leaf_ptr(&self, leaf: u64) -> Option<*mut ()> {
        let d = depth_of(leaf);
        let mut p = self.roots[d].load(Ordering::Acquire);
        for level in (1..=d).rev() {
            if p.is_null() {
                return None;
            }
            // SAFETY: a non-null pointer at a level above the leaves is a published, live
            // `Interior` (see `get`).
            let node = unsafe { &*p.cast::<Interior>() };
            p = node.slots[slot_of(leaf, level)].load(Ordering::Acquire);
        }
        (!p.is_null()).then_some(p)
    }

    /// # Safety
    /// `p` must be a leaf pointer published in this tree (from `alloc_leaf`), and the
    /// tree must not be cleared or dropped during `'a`.
    unsafe fn leaf_ref<'a>(p: *mut ()) -> &'a [T] {
        // SAFETY: per the contract, `p` is the first element of a live `Box<[T]>` of
        // `PER_LEAF` initialised entries.
        unsafe { &*std::ptr::slice_from_raw_parts(p.cast::<T>().cast_const(), Self::PER_LEAF) }
    }

    /// Returns `true` if the tree has no allocated leaf.
    pub fn is_empty(&self) -> bool {
        self.next_leaf(0).is_none()
    }

    /// Bytes allocated for nodes and leaves, plus the tree header.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.bytes.load(Ordering::Relaxed)
    }

    /// Frees every node (all entries are dropped).
    pub fn clear(&mut self) {
        for d in 0..=MAX_DEPTH {
            let p = self.roots[d].swap(null_mut(), Ordering::Acquire);
            // SAFETY: `&mut self` excludes every other access; `p` is null or the root of tree
            // `d`, which has `d` interior levels.
            unsafe { Self::free(p, d) };
        }
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// # Safety
    /// `p` must be null or a node of this tree with `level` interior levels below and
    /// including it (0 = a leaf), not reachable by anyone afterwards.
    unsafe fn free(p: *mut (), level: usize) {
        if p.is_null() {
            return;
        }
        if level == 0 {
            let s = std::ptr::slice_from_raw_parts_mut(p.cast::<T>(), Self::PER_LEAF);
            // SAFETY: leaves are created by `Box::<[T]>::into_raw` with exactly `PER_LEAF`
            // entries, and the caller guarantees nobody uses it again.
            drop(unsafe { Box::from_raw(s) });
        } else {
            // SAFETY: an interior pointer came from `Box::<Interior>::into_raw`.
            let node = unsafe { Box::from_raw(p.cast::<Interior>()) };
            for s in &node.slots {
                // SAFETY: its children sit one level lower and become unreachable with it.
                unsafe { Self::free(s.load(Ordering::Acquire), level - 1) };
            }
        }
    }
}

impl<T: Default> GenRadix<T> {
    /// The entry at `idx`, allocating (default-initialised) nodes on its path if needed.
    /// Lock-free; concurrent callers for the same leaf get the same entry.
    pub fn get_or_alloc(&self, idx: u64) -> &T {
        let (leaf, off) = Self::split(idx);
        let d = depth_of(leaf);
        let mut slot = &self.roots[d];
        for level in (1..=d).rev() {
            let p = self.load_or_install(slot, true);
            // SAFETY: `load_or_install` returned a published, live `Interior` (level ≥ 1).
            let node = unsafe { &*p.cast::<Interior>() };
            slot = &node.slots[slot_of(leaf, level)];
        }
        let p = self.load_or_install(slot, false);
        // SAFETY: a published leaf of this tree; see `get`.
        let leaf = unsafe { Self::leaf_ref(p) };
        &leaf[off]
    }

    fn load_or_install(&self, slot: &AtomicPtr<()>, interior: bool) -> *mut () {
        let p = slot.load(Ordering::Acquire);
        if !p.is_null() {
            return p;
        }
        let (new, bytes) = if interior {
            (
                Box::into_raw(Interior::new_boxed()).cast::<()>(),
                size_of::<Interior>(),
            )
        } else {
            let b: Box<[T]> = (0..Self::PER_LEAF).map(|_| T::default()).collect();
            (
                Box::into_raw(b).cast::<T>().cast::<()>(),
                Self::leaf_bytes(),
            )
        };
        match slot.compare_exchange(null_mut(), new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
                new
            }
            Err(winner) => {
                // SAFETY: `new` was never published; we free what we just built.
                unsafe { Self::free(new, usize::from(interior)) };
                winner
            }
        }
    }
}

impl<T> Drop for GenRadix<T> {
    fn drop(&mut self) {
        self.clear();
    }
}

// ---- iteration ----

/// Finds the allocated leaf with the smallest number ≥ `bound` under `p` (a node with `level`
/// interior levels covering leaves `base..base + FANOUT^level`), or the largest ≤ `bound` when
/// `rev`. Bases are computed in u128 because the deepest tree's span exceeds u64.
///
/// # Safety
///
/// `p` must be null or a pointer loaded (with acquire ordering) from a root or child slot of a
/// live tree, at the depth that `level` says (`level` interior levels below and including `p`;
/// 0 = a leaf), and that tree must be neither cleared nor dropped while this call runs or while
/// the returned leaf pointer is used (a shared borrow of the tree ensures both: `clear` and
/// drop need `&mut`). Such a pointer is null or a fully built node that stays allocated.
unsafe fn find_leaf(
    p: *mut (),
    level: usize,
    base: u128,
    bound: u128,
    rev: bool,
) -> Option<(u128, *mut ())> {
    if p.is_null() {
        return None;
    }
    if level == 0 {
        return Some((base, p));
    }
    // SAFETY: per the contract, a non-null `p` at `level ≥ 1` is a published, live `Interior`
    // (slots only ever go from null to a fully built node, by a release CAS; see `get`).
    let node = unsafe { &*p.cast::<Interior>() };
    let child_span: u128 = 1u128 << ((level - 1) * SHIFT as usize);
    let rel = bound.saturating_sub(base) / child_span;
    // `rel` is clamped below FANOUT, so it fits.
    #[allow(clippy::cast_possible_truncation)]
    let start = rel.min(FANOUT as u128 - 1) as usize;
    let pick = |i: usize| {
        let child = node.slots[i].load(Ordering::Acquire);
        let cb = base + child_span * i as u128;
        let b = if rev {
            bound.min(cb + child_span - 1)
        } else {
            bound.max(cb)
        };
        // SAFETY: `child` was loaded with acquire from a slot of the live interior node `node`
        // at `level`, so it is null or a published node with `level - 1` levels, of the same
        // tree, which the caller keeps alive.
        unsafe { find_leaf(child, level - 1, cb, b, rev) }
    };
    if rev {
        if bound < base {
            return None;
        }
        (0..=start).rev().find_map(pick)
    } else {
        if rel >= FANOUT as u128 {
            return None;
        }
        (start..FANOUT).find_map(pick)
    }
}

impl<T> GenRadix<T> {
    fn next_leaf(&self, min: u128) -> Option<(u128, *mut ())> {
        let d0 = depth_of(u64::try_from(min).ok()?);
        (d0..=MAX_DEPTH).find_map(|d| {
            // SAFETY: the root of tree `d` (null or a node with `d` interior levels), loaded
            // with acquire; `&self` keeps the tree from being cleared or dropped.
            unsafe { find_leaf(self.roots[d].load(Ordering::Acquire), d, 0, min, false) }
        })
    }

    fn prev_leaf(&self, max: u128) -> Option<(u128, *mut ())> {
        let d0 = depth_of(u64::try_from(max).ok()?);
        (0..=d0).rev().find_map(|d| {
            // SAFETY: as in `next_leaf`.
            unsafe { find_leaf(self.roots[d].load(Ordering::Acquire), d, 0, max, true) }
        })
    }

    /// Every entry of every allocated leaf, in index order.
    pub fn iter(&self) -> Iter<'_, T> {
        self.iter_from(0)
    }

    /// Like [`iter`](Self::iter), starting at the first entry with index ≥ `idx`.
    pub fn iter_from(&self, idx: u64) -> Iter<'_, T> {
        let (leaf, off) = Self::split(idx);
        Iter {
            radix: self,
            next_leaf: Some(u128::from(leaf)),
            cur: None,
            first: Some((leaf, off)),
        }
    }

    /// Every entry of every allocated leaf, in decreasing index order.
    pub fn iter_rev(&self) -> IterRev<'_, T> {
        self.iter_rev_from(u64::MAX)
    }

    /// Like [`iter_rev`](Self::iter_rev), starting at the last entry with index ≤ `idx`.
    pub fn iter_rev_from(&self, idx: u64) -> IterRev<'_, T> {
        let (leaf, off) = Self::split(idx);
        IterRev {
            radix: self,
            prev_leaf: Some(u128::from(leaf)),
            cur: None,
            first: Some((leaf, off)),
        }
    }
}

/// Forward iterator over `(index, &entry)`; see [`GenRadix::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    radix: &'a GenRadix<T>,
    next_leaf: Option<u128>,
    /// The current leaf's first index, entries, and next offset.
    cur: Option<(u64, &'a [T], usize)>,
    /// The starting (leaf, offset), applied if the first leaf found is that leaf.
    first: Option<(u64, usize)>,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = (u64, &'a T);

    fn next(&mut self) -> Option<(u64, &'a T)> {
        loop {
            if let Some((base, s, i)) = &mut self.cur {
                if let Some(e) = s.get(*i) {
                    let idx = base.checked_add(*i as u64);
                    *i += 1;
                    match idx {
                        Some(idx) => return Some((idx, e)),
                        None => {
                            self.next_leaf = None;
                            self.cur = None;
                            return None;
                        }
                    }
                }
                self.cur = None;
            }
            let min = self.next_leaf?;
            let (l, p) = self.radix.next_leaf(min)?;
            self.next_leaf = l.checked_add(1).filter(|&n| n <= u128::from(u64::MAX));
            // SAFETY: `p` is a published leaf of the borrowed tree.
            let s = unsafe { GenRadix::<T>::leaf_ref(p) };
            // Leaf numbers come from u64 indices.
            #[allow(clippy::cast_possible_truncation)]
            let l = l as u64;
            let start = match self.first.take() {
                Some((fl, off)) if fl == l => off,
                _ => 0,
            };
            // l * PER_LEAF ≤ u64::MAX because leaf l holds some u64 index.
            self.cur = Some((l * GenRadix::<T>::PER_LEAF_U64, s, start));
        }
    }
}

/// Backward iterator over `(index, &entry)`; see [`GenRadix::iter_rev`].
#[derive(Debug)]
pub struct IterRev<'a, T> {
    radix: &'a GenRadix<T>,
    prev_leaf: Option<u128>,
    /// The current leaf's first index, entries, and the number of entries not yet yielded.
    cur: Option<(u64, &'a [T], usize)>,
    first: Option<(u64, usize)>,
}

impl<'a, T> Iterator for IterRev<'a, T> {
    type Item = (u64, &'a T);

    fn next(&mut self) -> Option<(u64, &'a T)> {
        loop {
            if let Some((base, s, left)) = &mut self.cur {
                while *left > 0 {
                    *left -= 1;
                    // Entries past u64::MAX (in the last, partial leaf) do not exist.
                    if let Some(idx) = base.checked_add(*left as u64) {
                        return Some((idx, &s[*left]));
                    }
                }
                self.cur = None;
            }
            let max = self.prev_leaf?;
            let (l, p) = self.radix.prev_leaf(max)?;
            self.prev_leaf = l.checked_sub(1);
            // SAFETY: `p` is a published leaf of the borrowed tree.
            let s = unsafe { GenRadix::<T>::leaf_ref(p) };
            // Leaf numbers come from u64 indices.
            #[allow(clippy::cast_possible_truncation)]
            let l = l as u64;
            let end = match self.first.take() {
                Some((fl, off)) if fl == l => off + 1,
                _ => s.len(),
            };
            self.cur = Some((l * GenRadix::<T>::PER_LEAF_U64, s, end));
        }
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64 as StdU64;

    #[test]
    fn sparse_get_and_alloc() {
        let r: GenRadix<StdU64> = GenRadix::new();
        assert!(r.get(0).is_none());
        assert!(r.is_empty());
        r.get_or_alloc(5)
            .store(7, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            r.get(5).unwrap().load(std::sync::atomic::Ordering::Relaxed),
            7
        );
        assert_eq!(
            r.get(6).unwrap().load(std::sync::atomic::Ordering::Relaxed),
            0,
            "zeroed"
        );
        assert!(r.get(1 << 40).is_none());
        let before = r.memory_bytes();
        r.get_or_alloc(1 << 40)
            .store(9, std::sync::atomic::Ordering::Relaxed);
        let cost = r.memory_bytes() - before;
        // Leaf 2^31 is in tree 4: 4 interior pages and one leaf page.
        assert_eq!(cost, 5 * 4096, "one entry at 2^40 costs its path only");
        r.get_or_alloc(u64::MAX)
            .store(1, std::sync::atomic::Ordering::Relaxed);
        let got: Vec<u64> = r.iter().map(|(i, _)| i).filter(|&i| i > 600).collect();
        assert_eq!(got.len(), 2 * GenRadix::<StdU64>::PER_LEAF);
        assert_eq!(*got.last().unwrap(), u64::MAX);
        assert_eq!(r.iter_rev().next().unwrap().0, u64::MAX);
    }

    #[test]
    fn odd_element_size_never_straddles() {
        #[derive(Default)]
        struct Odd(#[allow(dead_code)] [u8; 24]);
        assert_eq!(GenRadix::<Odd>::PER_LEAF, 170);
        let r: GenRadix<Odd> = GenRadix::new();
        r.get_or_alloc(169);
        r.get_or_alloc(170);
        assert_eq!(
            r.memory_bytes() - size_of::<GenRadix<Odd>>(),
            2 * 170 * 24 + 4096
        );
        let idx: Vec<u64> = r.iter_from(168).map(|(i, _)| i).take(4).collect();
        assert_eq!(idx, vec![168, 169, 170, 171]);
        let idx: Vec<u64> = r.iter_rev_from(171).map(|(i, _)| i).take(5).collect();
        assert_eq!(idx, vec![171, 170, 169, 168, 167]);
    }

    #[test]
    fn big_elements_one_per_leaf() {
        struct Big(#[allow(dead_code)] [u64; 1000]);
        impl Default for Big {
            fn default() -> Self {
                Big([0; 1000])
            }
        }
        assert_eq!(GenRadix::<Big>::PER_LEAF, 1);
        let r: GenRadix<Big> = GenRadix::new();
        r.get_or_alloc(3);
        assert!(r.get(3).is_some());
        assert!(r.get(2).is_none());
        assert_eq!(r.iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![3]);
    }
}

/// Loom models, run as `scripts/test-all.sh` does (release build, debug assertions on):
/// `RUSTFLAGS="--cfg loom -C debug-assertions=on" cargo test -p sixfs --release --lib -- sync:: util::`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::loom_model;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicU64;
    use loom::thread;

    #[test]
    fn concurrent_get_or_alloc_same_and_neighbouring_entries() {
        loom_model(|| {
            let r: Arc<GenRadix<AtomicU64>> = Arc::new(GenRadix::new());
            // Both indices are in tree 2 under the same interior nodes; 1 is in tree 0.
            let far = (GenRadix::<AtomicU64>::PER_LEAF * FANOUT) as u64;
            let r2 = r.clone();
            let t = thread::spawn(move || {
                r2.get_or_alloc(far).fetch_add(1, Ordering::Relaxed);
                r2.get_or_alloc(far + 1).store(5, Ordering::Relaxed);
                std::ptr::from_ref(r2.get_or_alloc(far)) as usize
            });
            r.get_or_alloc(far).fetch_add(1, Ordering::Relaxed);
            let seen = r.get(far + 1).map(|e| e.load(Ordering::Relaxed));
            assert!(matches!(seen, None | Some(0) | Some(5)));
            let mine = std::ptr::from_ref(r.get_or_alloc(far)) as usize;
            let theirs = t.join().unwrap();
            assert_eq!(
                mine, theirs,
                "two threads got different entries for one index"
            );
            assert_eq!(
                r.get(far).unwrap().load(Ordering::Relaxed),
                2,
                "an increment was lost"
            );
            assert_eq!(r.iter().count(), GenRadix::<AtomicU64>::PER_LEAF);
        });
    }
}
