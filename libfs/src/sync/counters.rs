//! Sharded counters (the userspace stand-in for per-CPU counters, notes §7).
//!
//! * [`ShardedCounter`]: a signed counter whose `add`/`sub` touch only the calling thread's
//!   shard; [`ShardedCounter::sum`] adds the shards up.
//! * [`AvailableCounter`]: the "sectors available" pool that disk reservations are built on.
//!   Each thread slot caches a batch of units taken from a global pool, so most reservations
//!   are one compare-and-swap on a line no other thread writes.
//!
//! # `AvailableCounter` invariants
//!
//! Every unit is in exactly one place: the global pool (under the mutex), one slot's cache
//! (an atomic), or with a caller who took it. Hence, with no call in flight,
//! `available() == initial + put − taken`, exactly.
//!
//! * `try_take(n)`: take `n` from this slot's cache by CAS. If the cache is short, under the
//!   mutex: if the pool has `n + batch`, move them out (`n` to the caller, `batch` to this
//!   cache); otherwise the pool is low, so recompute exactly: drain every cache into the pool
//!   and grant `n` from it, or fail. A failure therefore means that, at the time of the
//!   recompute, fewer than `n` units were left anywhere (callers still holding cached units on
//!   other slots is not a reason to fail).
//! * `put(n)`: back into this slot's cache; a cache that grows past `4 × batch` is flushed to
//!   the pool. While the pool is overdrawn, puts go straight to the pool to repay it.
//! * `take_nofail(n)`: like `try_take`, but on failure it grants anyway, driving the pool
//!   negative; the shortfall is added to [`AvailableCounter::overdrawn`]. Only for callers
//!   whose failure is impossible (writeback of already-dirty data, notes §7).
//! * `available()`: exact: drains every cache into the pool under the mutex and returns it.
//!   [`AvailableCounter::available_approx`] reads without draining.

use super::{AtomicBool, AtomicI64, AtomicU64, CachePadded, Mutex, Ordering};
use super::{default_shards, lock, thread_slot};

/// A signed counter sharded by thread slot. See the module docs.
#[derive(Debug)]
pub struct ShardedCounter {
    shards: Box<[CachePadded<AtomicI64>]>,
}

impl Default for ShardedCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardedCounter {
    /// A zero counter with the default number of shards.
    pub fn new() -> Self {
        Self::with_shards(default_shards())
    }

    /// A zero counter with `n` shards (rounded up to a power of two, at least 1).
    pub fn with_shards(n: usize) -> Self {
        let n = n.max(1).next_power_of_two();
        ShardedCounter {
            shards: (0..n).map(|_| CachePadded(AtomicI64::new(0))).collect(),
        }
    }

    #[inline]
    fn mine(&self) -> &AtomicI64 {
        &self.shards[thread_slot() & (self.shards.len() - 1)]
    }

    /// Adds `v` to this thread's shard.
    #[inline]
    pub fn add(&self, v: i64) {
        self.mine().fetch_add(v, Ordering::Relaxed);
    }

    /// Subtracts `v` from this thread's shard.
    #[inline]
    pub fn sub(&self, v: i64) {
        self.mine().fetch_sub(v, Ordering::Relaxed);
    }

    /// The sum of all shards: exact when no `add`/`sub` runs concurrently, otherwise some value
    /// the counter could have had during the call.
    pub fn sum(&self) -> i64 {
        self.shards.iter().map(|s| s.load(Ordering::Acquire)).sum()
    }

    /// Sets every shard to zero and returns the sum it had.
    pub fn take_all(&self) -> i64 {
        self.shards
            .iter()
            .map(|s| s.swap(0, Ordering::AcqRel))
            .sum()
    }
}

/// The default batch a slot takes from the pool beyond the request (bcachefs: 1024 sectors).
pub const DEFAULT_BATCH: u64 = 1024;

#[derive(Debug)]
struct Pool {
    /// Units in the pool; negative while overdrawn by `take_nofail`.
    global: i64,
    /// Total units granted by `take_nofail` beyond what was available.
    overdrawn: u64,
}

/// The "sectors available" pool. See the module docs.
#[derive(Debug)]
pub struct AvailableCounter {
    caches: Box<[CachePadded<AtomicU64>]>,
    pool: Mutex<Pool>,
    /// Set while the pool is negative; makes `put` repay the pool directly.
    in_debt: AtomicBool,
    batch: u64,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl AvailableCounter {
    /// A pool of `initial` units with [`DEFAULT_BATCH`] and the default number of slots.
    pub fn new(initial: u64) -> Self {
        Self::with_config(initial, DEFAULT_BATCH, default_shards())
    }

    /// A pool of `initial` units, refilling slot caches `batch` units beyond the request, with
    /// `slots` cache slots (rounded up to a power of two, at least 1).
    pub fn with_config(initial: u64, batch: u64, slots: usize) -> Self {
        let n = slots.max(1).next_power_of_two();
        AvailableCounter {
            caches: (0..n).map(|_| CachePadded(AtomicU64::new(0))).collect(),
            pool: Mutex::new(Pool {
                global: to_i64(initial),
                overdrawn: 0,
            }),
            in_debt: AtomicBool::new(false),
            batch,
        }
    }

    #[inline]
    fn slot(&self) -> usize {
        thread_slot() & (self.caches.len() - 1)
    }

    /// Takes `n` units if available (see the module docs for what "available" means here).
    #[inline]
    pub fn try_take(&self, n: u64) -> bool {
        let slot = self.slot();
        let c = &self.caches[slot];
        let mut cur = c.load(Ordering::Relaxed);
        while cur >= n {
            match c.compare_exchange_weak(cur, cur - n, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(x) => cur = x,
            }
        }
        self.take_slow(n, slot)
    }

    #[cold]
    fn take_slow(&self, n: u64, slot: usize) -> bool {
        let mut p = lock(&self.pool);
        let want = to_i64(n.saturating_add(self.batch));
        if p.global >= want {
            p.global -= want;
            self.caches[slot].fetch_add(self.batch, Ordering::Release);
            return true;
        }
        self.drain_caches(&mut p);
        if p.global >= to_i64(n) {
            p.global -= to_i64(n);
            return true;
        }
        false
    }

    fn drain_caches(&self, p: &mut Pool) {
        for c in self.caches.iter() {
            p.global += to_i64(c.swap(0, Ordering::AcqRel));
        }
    }

    /// Takes `n` units even if that overdraws the pool; the shortfall is counted in
    /// [`overdrawn`](Self::overdrawn).
    pub fn take_nofail(&self, n: u64) {
        if self.try_take(n) {
            return;
        }
        let mut p = lock(&self.pool);
        // Set before draining, so a concurrent `put` either sees it or is drained (both SeqCst).
        self.in_debt.store(true, Ordering::SeqCst);
        self.drain_caches(&mut p);
        let have = p.global.max(0);
        let short = to_i64(n) - have.min(to_i64(n));
        p.overdrawn += short.unsigned_abs();
        p.global -= to_i64(n);
        if p.global >= 0 {
            self.in_debt.store(false, Ordering::SeqCst);
        }
    }

    /// Returns `n` units.
    #[inline]
    pub fn put(&self, n: u64) {
        if self.in_debt.load(Ordering::SeqCst) {
            return self.put_to_pool(n);
        }
        let c = &self.caches[self.slot()];
        let now = c.fetch_add(n, Ordering::SeqCst).saturating_add(n);
        if now > self.batch.saturating_mul(4) || self.in_debt.load(Ordering::SeqCst) {
            let mut p = lock(&self.pool);
            p.global += to_i64(c.swap(0, Ordering::AcqRel));
            if p.global >= 0 {
                self.in_debt.store(false, Ordering::SeqCst);
            }
        }
    }

    #[cold]
    fn put_to_pool(&self, n: u64) {
        let mut p = lock(&self.pool);
        p.global += to_i64(n);
        if p.global >= 0 {
            self.in_debt.store(false, Ordering::SeqCst);
        }
    }

    /// Adds (or with a negative `delta`, removes) capacity, e.g. after a device grows.
    pub fn add_capacity(&self, delta: i64) {
        let mut p = lock(&self.pool);
        p.global += delta;
        self.in_debt.store(p.global < 0, Ordering::SeqCst);
    }

    /// Replaces the amount available with `total` (after an exact recompute from accounting),
    /// discarding what the caches held.
    pub fn set_available(&self, total: u64) {
        let mut p = lock(&self.pool);
        for c in self.caches.iter() {
            c.store(0, Ordering::Release);
        }
        p.global = to_i64(total);
        self.in_debt.store(false, Ordering::SeqCst);
    }

    /// Exactly how many units are available (negative while overdrawn): drains every slot
    /// cache into the pool under the mutex.
    pub fn available(&self) -> i64 {
        let mut p = lock(&self.pool);
        self.drain_caches(&mut p);
        p.global
    }

    /// The pool plus every cache, read without draining (racy).
    pub fn available_approx(&self) -> i64 {
        let g = lock(&self.pool).global;
        g + self
            .caches
            .iter()
            .map(|c| to_i64(c.load(Ordering::Relaxed)))
            .sum::<i64>()
    }

    /// Total units granted by `take_nofail` beyond what was available.
    pub fn overdrawn(&self) -> u64 {
        lock(&self.pool).overdrawn
    }

    /// The batch size.
    pub fn batch(&self) -> u64 {
        self.batch
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn sharded_counter_sums() {
        let c = ShardedCounter::with_shards(4);
        c.add(5);
        c.sub(2);
        std::thread::scope(|s| {
            s.spawn(|| c.add(10));
        });
        assert_eq!(c.sum(), 13);
        assert_eq!(c.take_all(), 13);
        assert_eq!(c.sum(), 0);
    }

    #[test]
    fn take_put_available_exact() {
        let a = AvailableCounter::with_config(10_000, 100, 4);
        assert!(a.try_take(10));
        assert_eq!(a.available(), 9_990);
        assert!(a.try_take(5));
        a.put(3);
        assert_eq!(a.available(), 9_988);
        assert!(!a.try_take(9_989));
        assert!(
            a.try_take(9_988),
            "the last unit can be taken once caches are drained"
        );
        assert_eq!(a.available(), 0);
        assert!(!a.try_take(1));
    }

    #[test]
    fn nofail_overdraws_and_is_counted() {
        let a = AvailableCounter::with_config(50, 100, 2);
        a.take_nofail(80);
        assert_eq!(a.available(), -30);
        assert_eq!(a.overdrawn(), 30);
        assert!(!a.try_take(1));
        a.put(40);
        assert_eq!(a.available(), 10);
        assert!(a.try_take(10));
        assert!(!a.try_take(1));
    }

    #[test]
    fn caches_are_flushed_when_large() {
        let a = AvailableCounter::with_config(0, 10, 1);
        a.put(100);
        assert_eq!(a.available_approx(), 100);
        assert_eq!(
            lock(&a.pool).global,
            100,
            "a cache above 4×batch was flushed to the pool"
        );
    }
}

/// Loom models, run as `scripts/test-all.sh` does (release build, debug assertions on):
/// `RUSTFLAGS="--cfg loom -C debug-assertions=on" cargo test -p sixfs --release --lib -- sync:: util::`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::loom_model;
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn takes_and_puts_account_exactly() {
        loom_model(|| {
            let a = Arc::new(AvailableCounter::with_config(10, 2, 2));
            let a2 = a.clone();
            let t = thread::spawn(move || {
                let took = a2.try_take(4);
                a2.put(1);
                took
            });
            let took = a.try_take(5);
            let other = t.join().unwrap();
            // 9 of 10 units: both must be granted, whatever the caches held.
            assert!(took && other, "a take failed although enough units existed");
            assert_eq!(a.available(), 10 - 5 - 4 + 1);
        });
    }
}
