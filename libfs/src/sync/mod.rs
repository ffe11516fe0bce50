//! Concurrency primitives, and the facade every other module takes its sync types from.
//!
//! | module | what it is |
//! | --- | --- |
//! | [`six`] | SIX lock: shared / intent / exclusive, with a sequence number for cheap relock |
//! | [`two_state`] | two-state shared lock (the pagecache add/block lock) with same-thread deadlock detection |
//! | [`barrier`] | write barrier: `Send` tokens released on any thread, `freeze()` waits for them all |
//! | [`counters`] | sharded counters; the "sectors available" pool with per-slot cached batches |
//!
//! `docs/locking.md` describes all of them together with the lock order.
//!
//! # The facade
//!
//! This module re-exports atomics, `Mutex`, `Condvar`, threads and `thread_local!` so that the
//! model checkers can replace them:
//!
//! * normally these are the `std` types;
//! * under `--cfg loom` they are `loom`'s (exhaustive model checking; see `docs/locking.md`
//!   for the command);
//! * under `--cfg shuttle` they are `shuttle`'s (randomised scheduling for bigger scenarios).
//!
//! **Which code goes through it** (and so is what the models check): the primitives in this
//! module ([`six`], [`two_state`], [`barrier`], [`counters`]) and
//! [`util::genradix`](crate::util::genradix). Nothing else does: `util::fault` uses `std`'s
//! `Mutex` and atomics, and `dev/`, `journal/`, `btree/` and `recovery/` use `parking_lot`
//! and `std::sync` directly. Their own synchronisation is *not* model-checked; it is covered
//! by stress tests (`libfs/tests/btree_concurrency.rs` and others). They do use the primitives
//! (the btree's node locks are [`six::SixLock`]s): the primitives are model-checked, the code
//! that uses them is not.
//!
//! Under either cfg the whole crate is still compiled, with the facade users on the replaced
//! types and everything else unchanged, so every module must compile then (and code that
//! reaches a primitive can only run inside a model). Constructors of the replaced types are not
//! `const`, which is why some `new` functions here are `const fn` only in normal builds.
//!
//! # Thread slots
//!
//! [`thread_slot`] maps the calling thread (not CPU) to a small integer; the sharded structures
//! ([`counters`], [`barrier`]) use it to pick their shard. Slots of exited threads are reused,
//! smallest first; see [`thread_slot`] for exactly when two live threads share a shard.

pub mod barrier;
pub mod counters;
pub mod six;
pub mod two_state;

#[cfg(not(any(loom, shuttle)))]
mod imp {
    pub(crate) use std::hint::spin_loop;
    pub(crate) use std::sync::atomic::{
        AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };
    pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
    pub(crate) use std::thread;
    pub(crate) use std::thread_local;
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::hint::spin_loop;
    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };
    pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
    pub(crate) use loom::thread;
    pub(crate) use loom::thread_local;
}

#[cfg(all(shuttle, not(loom)))]
mod imp {
    pub(crate) use shuttle::hint::spin_loop;
    pub(crate) use shuttle::sync::atomic::{
        AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };
    pub(crate) use shuttle::sync::{Condvar, Mutex, MutexGuard};
    pub(crate) use shuttle::thread;
    pub(crate) use shuttle::thread_local;
}

#[allow(
    unused_imports,
    reason = "the facade offers more than the primitives use today"
)]
pub(crate) use imp::*;

/// Locks a facade mutex, ignoring poisoning.
///
/// The primitives keep their real state in atomics; their mutexes only order sleeping and
/// waking, so a panic while one was held cannot leave anything half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on a facade condition variable, ignoring poisoning (see [`lock`]).
pub(crate) fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// A small integer identifying the calling thread, for picking a shard (`slot & (shards - 1)`).
///
/// Slots are per **thread**, not per CPU: a thread keeps its slot from its first call until it
/// exits, wherever it runs, and then gives the slot back. In normal builds a thread's first
/// call takes the **smallest slot number no live thread holds** (a free-list of the slots of
/// exited threads, then the next new number). Hence every slot in use is below the largest
/// number of slot-holding threads that have been alive at the same time (the peak), whatever
/// the thread churn before, and:
///
/// * while that peak is at most a structure's shard count, no two live threads share a shard;
/// * beyond it, at most ⌈peak / shards⌉ live threads share one (slots are not moved between
///   threads, so sharing that began when the peak was reached may outlast the threads that
///   caused it, until the sharers exit).
///
/// Sharing a shard only costs speed (the shards' line bounces between the sharers), never
/// correctness: any slot is a valid shard for every structure. (A thread that calls this while
/// its thread-locals are being destroyed may get, or keep using, a slot that has already been
/// given back for its last moments: harmless sharing of the same kind.)
///
/// The fast path (every call after the first) is one thread-local read. Under the model
/// checkers the number is derived from the checker's thread id instead, so that it is the same
/// in every explored execution.
#[cfg(not(any(loom, shuttle)))]
#[inline]
pub fn thread_slot() -> usize {
    let v = slots::SLOT.with(std::cell::Cell::get);
    if v != usize::MAX {
        return v;
    }
    slots::assign()
}

/// The slot allocator behind [`thread_slot`] (normal builds).
#[cfg(not(any(loom, shuttle)))]
mod slots {
    use std::cell::Cell;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::sync::Mutex as StdMutex;

    /// Hands out the smallest free slot number.
    #[derive(Debug, Default)]
    pub(super) struct SlotPool {
        /// Numbers below this have been handed out at some time.
        next: usize,
        /// Numbers below `next` that no live thread holds.
        free: BinaryHeap<Reverse<usize>>,
    }

    impl SlotPool {
        pub(super) const fn new() -> Self {
            SlotPool {
                next: 0,
                free: BinaryHeap::new(),
            }
        }

        pub(super) fn take(&mut self) -> usize {
            if let Some(Reverse(v)) = self.free.pop() {
                return v;
            }
            let v = self.next;
            self.next += 1;
            v
        }

        pub(super) fn give_back(&mut self, v: usize) {
            debug_assert!(v < self.next, "slot {v} was never handed out");
            self.free.push(Reverse(v));
        }
    }

    static POOL: StdMutex<SlotPool> = StdMutex::new(SlotPool::new());

    fn pool() -> std::sync::MutexGuard<'static, SlotPool> {
        // The pool is consistent after every call, so a poisoned lock is still good.
        POOL.lock().unwrap_or_else(|e| e.into_inner())
    }

    std::thread_local! {
        /// This thread's slot, `usize::MAX` until assigned. No destructor: the fast path is a
        /// plain thread-local read.
        pub(super) static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
        /// Owns the slot: gives it back when the thread exits. Touched only by `assign`.
        static OWNER: SlotOwner = const { SlotOwner(Cell::new(usize::MAX)) };
    }

    struct SlotOwner(Cell<usize>);

    impl Drop for SlotOwner {
        fn drop(&mut self) {
            let v = self.0.get();
            if v != usize::MAX {
                pool().give_back(v);
            }
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn assign() -> usize {
        let v = pool().take();
        SLOT.with(|s| s.set(v));
        if OWNER.try_with(|o| o.0.set(v)).is_err() {
            // Thread-locals are being destroyed: nobody would give the slot back, so return
            // it now. This thread keeps using it for its last moments (harmless sharing).
            pool().give_back(v);
        }
        v
    }

    #[cfg(test)]
    mod tests {
        use super::SlotPool;

        #[test]
        fn smallest_free_slot_first() {
            let mut p = SlotPool::new();
            assert_eq!([p.take(), p.take(), p.take(), p.take()], [0, 1, 2, 3]);
            p.give_back(2);
            p.give_back(0);
            assert_eq!(p.take(), 0);
            assert_eq!(p.take(), 2);
            assert_eq!(p.take(), 4);
            p.give_back(3);
            p.give_back(1);
            assert_eq!([p.take(), p.take(), p.take()], [1, 3, 5]);
        }
    }
}

/// See the normal-build version.
#[cfg(any(loom, shuttle))]
pub fn thread_slot() -> usize {
    use std::hash::{Hash, Hasher};
    // The id's Debug form is the checker's per-execution thread number; hashing the id itself
    // would also hash loom's execution id and make the model nondeterministic.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{:?}", thread::current().id()).hash(&mut h);
    // Truncation is fine: any value picks some shard.
    #[allow(clippy::cast_possible_truncation)]
    let v = h.finish() as usize;
    v
}

/// Pads and aligns a value to its own cache line pair, so that shards written by different
/// threads never share a line (128 bytes covers adjacent-line prefetching on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Number of shards the sharded structures use: the machine's parallelism rounded up to a power
/// of two, at least 4, at most 64. Under the model checkers it is 2, to keep models small.
pub(crate) fn default_shards() -> usize {
    if cfg!(any(loom, shuttle)) {
        return 2;
    }
    let n = std::thread::available_parallelism().map_or(4, |n| n.get());
    n.clamp(4, 64).next_power_of_two()
}

/// Runs a loom model with a bounded number of preemptions (default 3; `LOOM_MAX_PREEMPTIONS`
/// overrides), which keeps every model in this crate to seconds.
#[cfg(all(test, loom))]
pub(crate) fn loom_model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}
