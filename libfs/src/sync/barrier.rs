//! Write barrier: every write holds a token; freeze and unmount wait for all tokens (DESIGN §4
//! "Freeze/unmount", seed 004).
//!
//! [`WriteBarrier::enter`] returns a [`Token`] that is `Send`: a write submitted on one thread
//! may complete, and drop its token, on another. [`WriteBarrier::freeze`] makes new `enter`s wait
//! (and `try_enter`s fail) and then waits until every token is dropped; [`WriteBarrier::thaw`]
//! lets writers in again. Freezes nest: the barrier is frozen until every `freeze` has been
//! matched by a `thaw`. A `thaw` with no `freeze` outstanding does nothing.
//!
//! # Sharding
//!
//! The barrier is an array of cache-line-padded shards, each one `AtomicU64` holding a token
//! count and a FROZEN bit. A thread enters on its own shard (see [`super::thread_slot`]) and
//! the token remembers the shard, so entering and leaving each do one read-modify-write on a
//! line no other thread writes in the common case, and the count stays exact whichever thread
//! drops the token.
//!
//! # Invariants
//!
//! 1. After `freeze` returns, no token exists until the matching `thaw`: the freezer sets the
//!    FROZEN bit in every shard and then waits for every count to be zero. An `enter` adds to
//!    its shard and looks at the FROZEN bit in the same read-modify-write, so it either counts
//!    before the freezer's bit (and the freezer waits for it) or sees the bit (and backs out).
//! 2. No lost wakeup: a token drop that takes a frozen shard's count to zero, and an `enter` that
//!    backs out, wake the freezer under the barrier's mutex; the freezer checks the counts under
//!    that mutex before sleeping. `thaw` clears the bits and wakes waiting writers under it too.
//!    (Model-checked with loom.)
//! 3. A thread must not call `freeze` while it holds a token: it would wait for itself.

use super::{AtomicU64, CachePadded, Condvar, Mutex, Ordering, default_shards, lock, thread_slot};
use std::sync::Arc;

const FROZEN: u64 = 1 << 63;
const COUNT_MASK: u64 = FROZEN - 1;

/// A sharded enter/freeze barrier. See the module docs.
#[derive(Debug)]
pub struct WriteBarrier {
    shards: Box<[CachePadded<AtomicU64>]>,
    /// Number of outstanding `freeze` calls; also orders sleeping against waking.
    freezes: Mutex<u32>,
    /// The freezer waits here for tokens to drain.
    drained: Condvar,
    /// Writers wait here for `thaw`.
    thawed: Condvar,
}

impl Default for WriteBarrier {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteBarrier {
    /// An unfrozen barrier with one shard per hardware thread (at least 4).
    pub fn new() -> Self {
        Self::with_shards(default_shards())
    }

    /// An unfrozen barrier with `n` shards (rounded up to a power of two, at least 1).
    pub fn with_shards(n: usize) -> Self {
        let n = n.max(1).next_power_of_two();
        WriteBarrier {
            shards: (0..n).map(|_| CachePadded(AtomicU64::new(0))).collect(),
            freezes: Mutex::new(0),
            drained: Condvar::new(),
            thawed: Condvar::new(),
        }
    }

    #[inline]
    fn my_shard(&self) -> usize {
        thread_slot() & (self.shards.len() - 1)
    }

    /// Enters, waiting while the barrier is frozen.
    #[inline]
    pub fn enter(&self) -> Token<'_> {
        let shard = self.my_shard();
        loop {
            if self.try_enter_shard(shard) {
                return Token {
                    barrier: self,
                    shard,
                };
            }
            let mut g = lock(&self.freezes);
            while self.shards[shard].load(Ordering::Relaxed) & FROZEN != 0 {
                g = super::wait(&self.thawed, g);
            }
        }
    }

    /// Enters unless the barrier is frozen.
    #[inline]
    pub fn try_enter(&self) -> Option<Token<'_>> {
        let shard = self.my_shard();
        self.try_enter_shard(shard).then(|| Token {
            barrier: self,
            shard,
        })
    }

    /// [`enter`](Self::enter) for a barrier in an `Arc`, returning a token that owns a clone.
    pub fn enter_owned(self: &Arc<Self>) -> OwnedToken {
        let t = self.enter();
        let shard = t.shard;
        std::mem::forget(t);
        OwnedToken {
            barrier: Arc::clone(self),
            shard,
        }
    }

    /// [`try_enter`](Self::try_enter) returning an owning token.
    pub fn try_enter_owned(self: &Arc<Self>) -> Option<OwnedToken> {
        let t = self.try_enter()?;
        let shard = t.shard;
        std::mem::forget(t);
        Some(OwnedToken {
            barrier: Arc::clone(self),
            shard,
        })
    }

    #[inline]
    fn try_enter_shard(&self, shard: usize) -> bool {
        let old = self.shards[shard].fetch_add(1, Ordering::Acquire);
        debug_assert!(
            old & COUNT_MASK != COUNT_MASK,
            "write barrier count overflow"
        );
        if old & FROZEN == 0 {
            return true;
        }
        self.leave(shard);
        false
    }

    #[inline]
    fn leave(&self, shard: usize) {
        let old = self.shards[shard].fetch_sub(1, Ordering::Release);
        debug_assert!(old & COUNT_MASK != 0, "write barrier token released twice");
        if old == FROZEN | 1 {
            let _g = lock(&self.freezes);
            self.drained.notify_all();
        }
    }

    /// Blocks new entries and waits until every token is released. Nests with other freezes.
    pub fn freeze(&self) {
        let mut g = lock(&self.freezes);
        *g += 1;
        if *g == 1 {
            for s in self.shards.iter() {
                s.fetch_or(FROZEN, Ordering::AcqRel);
            }
        }
        while !self
            .shards
            .iter()
            .all(|s| s.load(Ordering::Acquire) & COUNT_MASK == 0)
        {
            g = super::wait(&self.drained, g);
        }
    }

    /// Undoes one [`freeze`](Self::freeze); the last one lets writers in again. A `thaw`
    /// without an outstanding `freeze` does nothing (in every build: it is not an error, so a
    /// caller that thaws once too often cannot unbalance later freezes or panic).
    pub fn thaw(&self) {
        let mut g = lock(&self.freezes);
        if *g == 0 {
            return;
        }
        *g -= 1;
        if *g == 0 {
            for s in self.shards.iter() {
                s.fetch_and(!FROZEN, Ordering::Release);
            }
            self.thawed.notify_all();
        }
    }

    /// Whether a freeze is in force (or under way).
    pub fn is_frozen(&self) -> bool {
        *lock(&self.freezes) > 0
    }

    /// The number of tokens outstanding (racy; for display and tests).
    pub fn active(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.load(Ordering::Relaxed) & COUNT_MASK)
            .sum()
    }
}

/// Proof of having entered a [`WriteBarrier`]; dropping it (on any thread) leaves.
#[derive(Debug)]
#[must_use = "dropping the token leaves the barrier at once"]
pub struct Token<'a> {
    barrier: &'a WriteBarrier,
    shard: usize,
}

impl Drop for Token<'_> {
    #[inline]
    fn drop(&mut self) {
        self.barrier.leave(self.shard);
    }
}

/// A [`Token`] that keeps its barrier alive (for completions that outlive the submitter's
/// borrow).
#[derive(Debug)]
#[must_use = "dropping the token leaves the barrier at once"]
pub struct OwnedToken {
    barrier: Arc<WriteBarrier>,
    shard: usize,
}

impl Drop for OwnedToken {
    #[inline]
    fn drop(&mut self) {
        self.barrier.leave(self.shard);
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use std::time::Duration;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn freeze_blocks_entry_and_thaw_reopens() {
        let b = WriteBarrier::new();
        let t = b.enter();
        assert_send(&t);
        assert_eq!(b.active(), 1);
        drop(t);
        b.freeze();
        assert!(b.is_frozen());
        assert!(b.try_enter().is_none());
        assert_eq!(b.active(), 0, "a refused try_enter backs out");
        b.freeze();
        b.thaw();
        assert!(
            b.try_enter().is_none(),
            "still frozen until every freeze is thawed"
        );
        b.thaw();
        assert!(!b.is_frozen());
        assert!(b.try_enter().is_some());
    }

    #[test]
    fn thaw_without_freeze_does_nothing() {
        let b = WriteBarrier::with_shards(2);
        b.thaw();
        assert!(!b.is_frozen());
        assert!(b.try_enter().is_some(), "still open");
        // The extra thaw did not bank a "negative freeze": one freeze still freezes, and one
        // thaw undoes it.
        b.freeze();
        assert!(b.is_frozen());
        assert!(b.try_enter().is_none());
        b.thaw();
        b.thaw();
        assert!(!b.is_frozen());
        assert!(b.try_enter().is_some());
    }

    #[test]
    fn freeze_waits_for_token_dropped_on_another_thread() {
        let b = Arc::new(WriteBarrier::new());
        let t = b.enter_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        let done = std::sync::atomic::AtomicBool::new(false);
        let done = &done;
        std::thread::scope(|s| {
            s.spawn(move || {
                let t: OwnedToken = rx.recv().unwrap();
                std::thread::sleep(Duration::from_millis(30));
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                drop(t);
            });
            tx.send(t).unwrap();
            b.freeze();
            assert!(
                done.load(std::sync::atomic::Ordering::SeqCst),
                "freeze returned early"
            );
            assert_eq!(b.active(), 0);
        });
        b.thaw();
    }

    #[test]
    fn enter_waits_for_thaw() {
        let b = WriteBarrier::new();
        b.freeze();
        let thawed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let _t = b.enter();
                assert!(
                    thawed.load(std::sync::atomic::Ordering::SeqCst),
                    "entered while frozen"
                );
            });
            std::thread::sleep(Duration::from_millis(20));
            thawed.store(true, std::sync::atomic::Ordering::SeqCst);
            b.thaw();
            h.join().unwrap();
        });
        assert_eq!(b.active(), 0);
    }
}

/// Loom models, run as `scripts/test-all.sh` does (release build, debug assertions on):
/// `RUSTFLAGS="--cfg loom -C debug-assertions=on" cargo test -p sixfs --release --lib -- sync:: util::`.
#[cfg(all(test, loom))]
#[allow(
    unsafe_code,
    reason = "loom's UnsafeCell checks that the barrier orders data accesses"
)]
mod loom_tests {
    use super::*;
    use crate::sync::loom_model;
    use loom::cell::UnsafeCell;
    use loom::thread;

    struct Fs {
        barrier: Arc<WriteBarrier>,
        /// Written only under a token, read only while frozen.
        data: UnsafeCell<u64>,
    }
    // SAFETY: `data` is accessed under the barrier's protocol, which is what the models check.
    unsafe impl Sync for Fs {}
    // SAFETY: as above.
    unsafe impl Send for Fs {}

    #[test]
    fn freeze_waits_for_token_released_on_another_thread() {
        loom_model(|| {
            let fs = Arc::new(Fs {
                barrier: Arc::new(WriteBarrier::with_shards(2)),
                data: UnsafeCell::new(0),
            });
            let tok = fs.barrier.enter_owned();
            let fs2 = fs.clone();
            // The "completion" thread: finishes the write and drops the token there.
            let t = thread::spawn(move || {
                // SAFETY: we hold a token (moved here), so no freeze has completed.
                fs2.data.with_mut(|p| unsafe { *p = 1 });
                drop(tok);
            });
            fs.barrier.freeze();
            // SAFETY: frozen: no token exists.
            let v = fs.data.with(|p| unsafe { *p });
            assert_eq!(v, 1, "freeze returned before the token was released");
            fs.barrier.thaw();
            t.join().unwrap();
        });
    }

    #[test]
    fn enter_races_freeze() {
        loom_model(|| {
            let fs = Arc::new(Fs {
                barrier: Arc::new(WriteBarrier::with_shards(2)),
                data: UnsafeCell::new(0),
            });
            let fs2 = fs.clone();
            let t = thread::spawn(move || {
                if let Some(_tok) = fs2.barrier.try_enter() {
                    // SAFETY: under a token.
                    fs2.data.with_mut(|p| unsafe { *p += 1 });
                }
            });
            fs.barrier.freeze();
            // SAFETY: frozen.
            let v = fs.data.with(|p| unsafe { *p });
            fs.barrier.thaw();
            t.join().unwrap();
            assert!(v <= 1);
            assert_eq!(fs.barrier.active(), 0);
        });
    }

    #[test]
    fn blocked_enter_woken_by_thaw() {
        loom_model(|| {
            let fs = Arc::new(Fs {
                barrier: Arc::new(WriteBarrier::with_shards(2)),
                data: UnsafeCell::new(0),
            });
            fs.barrier.freeze();
            let fs2 = fs.clone();
            let t = thread::spawn(move || {
                let _tok = fs2.barrier.enter();
                // SAFETY: under a token.
                fs2.data.with_mut(|p| unsafe { *p = 2 });
            });
            // SAFETY: frozen; the writer cannot have entered.
            let v = fs.data.with(|p| unsafe { *p });
            fs.barrier.thaw();
            t.join().unwrap();
            assert_eq!(v, 0);
            assert!(!fs.barrier.is_frozen());
        });
    }
}
