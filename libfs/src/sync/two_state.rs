//! Two-state shared lock: the pagecache add/block lock (DESIGN §4, notes §7, seeds 000/003).
//!
//! Two states, **add** and **block**. Each is shared among its holders and excludes the other:
//! buffered reads/writes and page faults hold *add* while they may insert cached pages; direct
//! IO, truncate and fallocate hold *block* while they need pages kept out. Unlike a rwlock
//! neither side serialises its own holders (concurrent direct writes run in parallel).
//!
//! # Invariants
//!
//! 1. Never both states held at once: the holder count and the state it counts live in one
//!    atomic word, changed only by compare-and-swap from "free or same state".
//! 2. Holds are counted, not owned: the lock itself only counts holders, so a hold may be
//!    released on any thread (an asynchronous direct write completes, and unlocks, on another
//!    thread; seed 004).
//! 3. **Same-thread recursion is an error, not a hang.** Each thread keeps a record of the
//!    states it took on which locks (separate from the lock's holder count). `lock_add` by a
//!    thread whose record says it holds *block* on the same lock returns [`WouldDeadlock`]
//!    (and `lock_block` likewise for *add*) instead of waiting forever for itself. That lets
//!    the direct-IO path drop its lock, do the buffered part, retake and revalidate (DESIGN §4
//!    "Recursion").
//! 4. **The record is only ever changed by its own thread, for its own holds.** A hold is
//!    either *recorded* (taken by `lock`/`try_lock`/guards, or [`adopt`](TwoStateLock::adopt)ed:
//!    it is in the record of exactly one thread, which may recurse and must release it with
//!    `unlock`/by dropping the guard) or *handed off* (in no thread's record). Handing a hold to
//!    another thread is explicit: [`TwoStateGuard::into_handoff`] (or
//!    [`TwoStateLock::hand_off`]) clears the record on the owning thread and gives a `Send`
//!    [`TwoStateHandoff`] that releases the hold without touching any thread's record (raw
//!    form: [`TwoStateLock::disown`], then [`TwoStateLock::unlock_disowned`]). So a
//!    completion thread that itself holds the same state of the lock keeps its own record when
//!    it releases a handed-over hold, and still gets `WouldDeadlock` if it then asks for the
//!    other state. A plain `unlock` on a thread that has no record of that hold only releases
//!    it (nothing else changes), but on a thread that holds the same state itself it would
//!    remove that thread's own entry: hand-offs must use the hand-off path.
//! 5. No missed wakeups (seed 002: every change that can let a waiter in must wake it). The
//!    only such change is the holder count reaching zero; the unlock that makes it zero sees the
//!    waiting bits in the same read-modify-write and wakes every waiter. Waiters set their bit
//!    under the wait mutex and retry before sleeping, so either the retry sees the release or
//!    the release sees the bit (model-checked with loom).
//!
//! No fairness, as in bcachefs: a continuous overlap of one state's holders can hold off the
//! other state. Multi-lock operations take locks with [`lock_two`] (address order, trylock and
//! back-off, never waiting while holding one of them).

use super::{AtomicU64, Condvar, Mutex, Ordering, lock, wait};
/// The two states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TwoState {
    /// Adding pages to the cache (buffered IO, faults).
    Add,
    /// Keeping pages out of the cache (direct IO, truncate, fallocate).
    Block,
}

impl TwoState {
    /// The state this one excludes.
    pub fn other(self) -> TwoState {
        match self {
            TwoState::Add => TwoState::Block,
            TwoState::Block => TwoState::Add,
        }
    }

    fn idx(self) -> usize {
        match self {
            TwoState::Add => 0,
            TwoState::Block => 1,
        }
    }
}

/// The calling thread holds the other state of this lock: waiting would wait for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("would deadlock: this thread holds the {held:?} state of this two-state lock")]
pub struct WouldDeadlock {
    /// The state this thread holds.
    pub held: TwoState,
}

const COUNT_MASK: u64 = 0xffff_ffff;
const MODE_BLOCK: u64 = 1 << 32;
const WAIT_ADD: u64 = 1 << 33;
const WAIT_BLOCK: u64 = 1 << 34;

fn wait_bit(s: TwoState) -> u64 {
    match s {
        TwoState::Add => WAIT_ADD,
        TwoState::Block => WAIT_BLOCK,
    }
}

fn mode_bits(s: TwoState) -> u64 {
    match s {
        TwoState::Add => 0,
        TwoState::Block => MODE_BLOCK,
    }
}

const SPIN_ROUNDS: u32 = if cfg!(any(loom, shuttle)) { 0 } else { 6 };

/// A two-state shared lock. See the module docs.
#[derive(Debug)]
pub struct TwoStateLock {
    /// Holder count (low 32 bits), the held state (meaningful while the count is non-zero),
    /// and one waiting bit per state.
    state: AtomicU64,
    /// Waiters per state; a waiting bit is set exactly while its count is non-zero.
    waiters: Mutex<[u32; 2]>,
    cv: Condvar,
}

impl Default for TwoStateLock {
    fn default() -> Self {
        Self::new()
    }
}

impl TwoStateLock {
    /// A free lock.
    #[cfg(not(any(loom, shuttle)))]
    pub const fn new() -> Self {
        TwoStateLock {
            state: AtomicU64::new(0),
            waiters: Mutex::new([0; 2]),
            cv: Condvar::new(),
        }
    }

    /// A free lock (not `const` under the model checkers).
    #[cfg(any(loom, shuttle))]
    pub fn new() -> Self {
        TwoStateLock {
            state: AtomicU64::new(0),
            waiters: Mutex::new([0; 2]),
            cv: Condvar::new(),
        }
    }

    /// Takes the lock in state `s`, waiting while the other state is held. Fails at once with
    /// [`WouldDeadlock`] if this thread's record says it holds the other state of this lock.
    pub fn lock(&self, s: TwoState) -> Result<(), WouldDeadlock> {
        if record::holds(self, s.other()) {
            return Err(WouldDeadlock { held: s.other() });
        }
        if !self.try_raw(s) {
            self.lock_slow(s);
        }
        record::add(self, s);
        Ok(())
    }

    /// Takes the lock in state `s` if the other state is not held (and this thread does not
    /// hold the other state itself).
    pub fn try_lock(&self, s: TwoState) -> bool {
        if record::holds(self, s.other()) || !self.try_raw(s) {
            return false;
        }
        record::add(self, s);
        true
    }

    /// Releases one recorded hold of state `s`: one that this thread took (or adopted).
    /// Removes one entry for `s` on this lock from this thread's record, if there is one; on a
    /// thread without such an entry it only releases the hold.
    ///
    /// To release a hold that another thread took and handed over, use the
    /// [`TwoStateHandoff`] (or [`unlock_disowned`](Self::unlock_disowned)) instead: if this
    /// thread also holds `s` itself, `unlock` would remove this thread's own entry.
    pub fn unlock(&self, s: TwoState) {
        record::remove(self, s);
        self.unlock_raw(s);
    }

    /// Releases one hold of state `s` that is in no thread's record (one handed over with
    /// [`disown`](Self::disown)), on any thread, without touching any thread's record.
    pub fn unlock_disowned(&self, s: TwoState) {
        self.unlock_raw(s);
    }

    /// `lock(TwoState::Add)`.
    pub fn lock_add(&self) -> Result<(), WouldDeadlock> {
        self.lock(TwoState::Add)
    }
    /// `lock(TwoState::Block)`.
    pub fn lock_block(&self) -> Result<(), WouldDeadlock> {
        self.lock(TwoState::Block)
    }
    /// `try_lock(TwoState::Add)`.
    pub fn try_lock_add(&self) -> bool {
        self.try_lock(TwoState::Add)
    }
    /// `try_lock(TwoState::Block)`.
    pub fn try_lock_block(&self) -> bool {
        self.try_lock(TwoState::Block)
    }
    /// `unlock(TwoState::Add)`.
    pub fn unlock_add(&self) {
        self.unlock(TwoState::Add);
    }
    /// `unlock(TwoState::Block)`.
    pub fn unlock_block(&self) {
        self.unlock(TwoState::Block);
    }

    /// Like [`lock`](Self::lock), returning a guard that unlocks on drop.
    pub fn guard(&self, s: TwoState) -> Result<TwoStateGuard<'_>, WouldDeadlock> {
        self.lock(s)?;
        Ok(TwoStateGuard::new(self, s))
    }

    /// Like [`try_lock`](Self::try_lock), returning a guard.
    pub fn try_guard(&self, s: TwoState) -> Option<TwoStateGuard<'_>> {
        self.try_lock(s).then(|| TwoStateGuard::new(self, s))
    }

    /// Hands one of this thread's holds of `s` off: removes its entry from this thread's
    /// record (see [`disown`](Self::disown)) and returns it as a `Send` [`TwoStateHandoff`],
    /// which releases it on whichever thread drops it.
    pub fn hand_off(&self, s: TwoState) -> TwoStateHandoff<'_> {
        self.disown(s);
        TwoStateHandoff {
            lock: self,
            state: s,
        }
    }

    /// Removes one entry for a hold of `s` from this thread's record, without unlocking: the
    /// raw form of [`hand_off`](Self::hand_off), for a hold this thread took and passes to
    /// another thread. The hold is then in no thread's record; release it with
    /// [`unlock_disowned`](Self::unlock_disowned) (any thread), or record it on the receiving
    /// thread with [`adopt`](Self::adopt) and release it there with `unlock`. Afterwards this
    /// thread may take the other state and wait (for the other thread to release).
    pub fn disown(&self, s: TwoState) {
        record::remove(self, s);
    }

    /// Records, in this thread's record, a hold of `s` that another thread took and
    /// [`disown`](Self::disown)ed; from then on it is this thread's hold (release it with
    /// `unlock`).
    pub fn adopt(&self, s: TwoState) {
        record::add(self, s);
    }

    /// The state this thread's record says it holds on this lock, if any.
    pub fn held_by_current_thread(&self) -> Option<TwoState> {
        if record::holds(self, TwoState::Add) {
            Some(TwoState::Add)
        } else if record::holds(self, TwoState::Block) {
            Some(TwoState::Block)
        } else {
            None
        }
    }

    /// The state currently held and by how many holders (racy; for assertions and display).
    pub fn holders(&self) -> Option<(TwoState, u32)> {
        let s = self.state.load(Ordering::Relaxed);
        // COUNT_MASK has 32 bits.
        #[allow(clippy::cast_possible_truncation)]
        let n = (s & COUNT_MASK) as u32;
        if n == 0 {
            return None;
        }
        Some((
            if s & MODE_BLOCK != 0 {
                TwoState::Block
            } else {
                TwoState::Add
            },
            n,
        ))
    }

    fn try_raw(&self, want: TwoState) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            let n = s & COUNT_MASK;
            if n != 0 && s & MODE_BLOCK != mode_bits(want) {
                return false;
            }
            debug_assert!(n != COUNT_MASK, "two-state lock holder count overflow");
            let new = ((s & !MODE_BLOCK) | mode_bits(want)) + 1;
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(x) => s = x,
            }
        }
    }

    fn unlock_raw(&self, s: TwoState) {
        let old = self.state.fetch_sub(1, Ordering::Release);
        debug_assert!(old & COUNT_MASK != 0, "two-state unlock without a hold");
        debug_assert!(
            old & MODE_BLOCK == mode_bits(s),
            "two-state unlock of {s:?}, but the other state is held"
        );
        if old & COUNT_MASK == 1 && old & (WAIT_ADD | WAIT_BLOCK) != 0 {
            let _g = lock(&self.waiters);
            self.cv.notify_all();
        }
    }

    #[cold]
    fn lock_slow(&self, s: TwoState) {
        for round in 0..SPIN_ROUNDS {
            for _ in 0..(1u32 << round) {
                super::spin_loop();
            }
            if self.try_raw(s) {
                return;
            }
        }
        let bit = wait_bit(s);
        let mut g = lock(&self.waiters);
        g[s.idx()] += 1;
        self.state.fetch_or(bit, Ordering::Relaxed);
        while !self.try_raw(s) {
            g = wait(&self.cv, g);
        }
        g[s.idx()] -= 1;
        if g[s.idx()] == 0 {
            self.state.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

/// A recorded hold of a [`TwoStateLock`], released on drop. It is in the record of the thread
/// that took it, so it is not `Send`: to release it on another thread, turn it into a
/// [`TwoStateHandoff`] with [`into_handoff`](Self::into_handoff) and send that.
///
/// ```compile_fail,E0277
/// fn is_send<T: Send>(_: T) {}
/// let l = sixfs::sync::two_state::TwoStateLock::new();
/// is_send(l.guard(sixfs::sync::two_state::TwoState::Add).unwrap());
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock"]
pub struct TwoStateGuard<'a> {
    lock: &'a TwoStateLock,
    state: TwoState,
    /// The hold is in this thread's record.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl<'a> TwoStateGuard<'a> {
    fn new(lock: &'a TwoStateLock, state: TwoState) -> Self {
        TwoStateGuard {
            lock,
            state,
            _not_send: std::marker::PhantomData,
        }
    }

    /// The state held.
    pub fn state(&self) -> TwoState {
        self.state
    }

    /// Hands the hold off: clears its entry in this thread's record and returns a `Send`
    /// [`TwoStateHandoff`] that releases it on whichever thread drops it, without touching
    /// that thread's record.
    pub fn into_handoff(self) -> TwoStateHandoff<'a> {
        let (lock, state) = (self.lock, self.state);
        std::mem::forget(self);
        lock.hand_off(state)
    }

    /// Keeps the lock held (and recorded on this thread) and forgets the guard; release it
    /// later on this thread with `unlock`.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for TwoStateGuard<'_> {
    fn drop(&mut self) {
        self.lock.unlock(self.state);
    }
}

/// A hold of a [`TwoStateLock`] handed from one thread to another (an asynchronous completion,
/// seed 004): it is in no thread's record, it is `Send`, and dropping it releases the hold
/// without touching any thread's record. Made by [`TwoStateGuard::into_handoff`] or
/// [`TwoStateLock::hand_off`].
#[derive(Debug)]
#[must_use = "dropping the hand-off releases the lock"]
pub struct TwoStateHandoff<'a> {
    lock: &'a TwoStateLock,
    state: TwoState,
}

impl<'a> TwoStateHandoff<'a> {
    /// The state held.
    pub fn state(&self) -> TwoState {
        self.state
    }

    /// Releases the hold (the same as dropping it).
    pub fn unlock(self) {
        drop(self);
    }

    /// Makes the hold the calling thread's own: records it in this thread's record (see
    /// [`TwoStateLock::adopt`]) and returns a guard.
    pub fn adopt(self) -> TwoStateGuard<'a> {
        let (lock, state) = (self.lock, self.state);
        std::mem::forget(self);
        lock.adopt(state);
        TwoStateGuard::new(lock, state)
    }

    /// Keeps the lock held (recorded nowhere) and forgets the hand-off; release it later, on
    /// any thread, with [`TwoStateLock::unlock_disowned`].
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for TwoStateHandoff<'_> {
    fn drop(&mut self) {
        self.lock.unlock_disowned(self.state);
    }
}

/// Takes `a` in state `sa` and `b` in state `sb`, without ever waiting while holding one of
/// them: the lower-addressed lock is taken first (blocking) and the other with a trylock; if
/// that fails, the first is released, the other taken blocking and the first tried, and so on.
///
/// If `a` and `b` are the same lock, the same state is taken twice (both holds must be
/// released) and different states are [`WouldDeadlock`]. Also fails if this thread holds the
/// other state of either lock.
pub fn lock_two(
    a: &TwoStateLock,
    sa: TwoState,
    b: &TwoStateLock,
    sb: TwoState,
) -> Result<(), WouldDeadlock> {
    if std::ptr::eq(a, b) {
        if sa != sb {
            return Err(WouldDeadlock { held: sa });
        }
        a.lock(sa)?;
        let again = a.try_lock(sa);
        debug_assert!(again, "a held state can always be taken again");
        return Ok(());
    }
    for (l, s) in [(a, sa), (b, sb)] {
        if record::holds(l, s.other()) {
            return Err(WouldDeadlock { held: s.other() });
        }
    }
    let (mut first, mut second) = if std::ptr::from_ref(a) < std::ptr::from_ref(b) {
        ((a, sa), (b, sb))
    } else {
        ((b, sb), (a, sa))
    };
    loop {
        first.0.lock(first.1)?;
        if second.0.try_lock(second.1) {
            return Ok(());
        }
        first.0.unlock(first.1);
        std::mem::swap(&mut first, &mut second);
        super::thread::yield_now();
    }
}

/// [`lock_two`] returning guards (in the order of the arguments).
pub fn guard_two<'a, 'b>(
    a: &'a TwoStateLock,
    sa: TwoState,
    b: &'b TwoStateLock,
    sb: TwoState,
) -> Result<(TwoStateGuard<'a>, TwoStateGuard<'b>), WouldDeadlock> {
    lock_two(a, sa, b, sb)?;
    Ok((TwoStateGuard::new(a, sa), TwoStateGuard::new(b, sb)))
}

/// The per-thread record of two-state holds: (lock address, state, count).
#[allow(
    clippy::missing_const_for_thread_local,
    reason = "the same declaration must also compile with loom's thread_local!, which has no const form"
)]
mod record {
    use super::{TwoState, TwoStateLock};
    use std::cell::RefCell;

    super::super::thread_local! {
        static HELD: RefCell<Vec<(usize, TwoState, u32)>> = RefCell::new(Vec::new());
    }

    fn addr(l: &TwoStateLock) -> usize {
        std::ptr::from_ref(l) as usize
    }

    // `try_with`: a guard dropped while the thread's locals are being destroyed finds no
    // record instead of panicking.

    pub(super) fn holds(l: &TwoStateLock, s: TwoState) -> bool {
        let a = addr(l);
        HELD.try_with(|h| h.borrow().iter().any(|e| e.0 == a && e.1 == s))
            .unwrap_or(false)
    }

    pub(super) fn add(l: &TwoStateLock, s: TwoState) {
        let a = addr(l);
        let _ = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            match h.iter_mut().find(|e| e.0 == a && e.1 == s) {
                Some(e) => e.2 += 1,
                None => h.push((a, s, 1)),
            }
        });
    }

    pub(super) fn remove(l: &TwoStateLock, s: TwoState) {
        let a = addr(l);
        let _ = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().position(|e| e.0 == a && e.1 == s) {
                if h[i].2 > 1 {
                    h[i].2 -= 1;
                } else {
                    h.swap_remove(i);
                }
            }
        });
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn states_exclude_each_other_and_share_among_themselves() {
        let l = TwoStateLock::new();
        l.lock_add().unwrap();
        l.lock_add().unwrap();
        assert_eq!(l.holders(), Some((TwoState::Add, 2)));
        std::thread::scope(|s| {
            s.spawn(|| assert!(!l.try_lock_block(), "block excluded while add is held"));
        });
        l.unlock_add();
        l.unlock_add();
        assert_eq!(l.holders(), None);
        l.lock_block().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(!l.try_lock_add());
                assert!(l.try_lock_block());
                l.unlock_block();
            });
        });
        l.unlock_block();
        assert_eq!(l.holders(), None);
    }

    #[test]
    fn same_thread_other_state_is_would_deadlock() {
        let l = TwoStateLock::new();
        l.lock_block().unwrap();
        assert_eq!(
            l.lock_add(),
            Err(WouldDeadlock {
                held: TwoState::Block
            })
        );
        assert!(!l.try_lock_add());
        assert_eq!(l.held_by_current_thread(), Some(TwoState::Block));
        // After disowning, another thread releases it and this thread may wait for add.
        l.disown(TwoState::Block);
        assert_eq!(l.held_by_current_thread(), None);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                l.unlock_block();
            });
            l.lock_add().unwrap();
        });
        assert_eq!(l.holders(), Some((TwoState::Add, 1)));
        l.unlock_add();
        assert_eq!(l.held_by_current_thread(), None);
    }

    #[test]
    fn failed_try_guard_releases_nothing() {
        let l = TwoStateLock::new();
        let g = l.guard(TwoState::Add).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| assert!(l.try_guard(TwoState::Block).is_none()));
        });
        assert_eq!(l.holders(), Some((TwoState::Add, 1)));
        drop(g);
        assert_eq!(l.holders(), None);
    }

    #[test]
    fn guard_released_on_another_thread() {
        let l = TwoStateLock::new();
        let g = l.guard(TwoState::Block).unwrap();
        let h = g.into_handoff();
        assert_eq!(
            l.held_by_current_thread(),
            None,
            "hand-off clears the record"
        );
        std::thread::scope(|s| {
            s.spawn(move || drop(h));
        });
        assert_eq!(l.holders(), None);
        l.lock_add().unwrap();
        l.unlock_add();
    }

    /// Seed 004: a write submitted (add taken) on thread A completes on thread B, which holds
    /// add on the same lock itself. Releasing the handed-over hold must leave B's own record,
    /// so B still gets `WouldDeadlock` for block instead of waiting for itself.
    #[test]
    fn handed_hold_released_by_a_holder_of_the_same_state_keeps_its_record() {
        let l = TwoStateLock::new();
        let h = l.guard(TwoState::Add).unwrap().into_handoff();
        std::thread::scope(|s| {
            s.spawn(|| {
                let own = l.guard(TwoState::Add).unwrap();
                assert_eq!(l.holders(), Some((TwoState::Add, 2)));
                h.unlock();
                assert_eq!(l.holders(), Some((TwoState::Add, 1)));
                // Checked first so that a broken record fails here instead of hanging below.
                assert_eq!(l.held_by_current_thread(), Some(TwoState::Add));
                assert_eq!(
                    l.lock_block(),
                    Err(WouldDeadlock {
                        held: TwoState::Add
                    })
                );
                drop(own);
                assert_eq!(l.held_by_current_thread(), None);
                l.lock_block().unwrap();
                l.unlock_block();
            });
        });
        assert_eq!(l.holders(), None);
        assert_eq!(l.held_by_current_thread(), None);
    }

    #[test]
    fn raw_disown_unlock_disowned_and_adopt() {
        let l = &TwoStateLock::new();
        // Raw hand-off, released on a thread that holds the same state itself.
        l.lock_block().unwrap();
        l.disown(TwoState::Block);
        assert_eq!(l.held_by_current_thread(), None);
        std::thread::scope(|s| {
            s.spawn(|| {
                l.lock_block().unwrap();
                l.unlock_disowned(TwoState::Block);
                assert_eq!(l.holders(), Some((TwoState::Block, 1)));
                assert_eq!(l.held_by_current_thread(), Some(TwoState::Block));
                l.unlock_block();
            });
        });
        assert_eq!(l.holders(), None);

        // A plain unlock on a thread with no record of the hold only releases it.
        let other = TwoStateLock::new();
        l.lock_add().unwrap();
        l.disown(TwoState::Add);
        std::thread::scope(|s| {
            s.spawn(|| {
                other.lock_block().unwrap();
                l.unlock_add();
                assert_eq!(l.holders(), None);
                assert_eq!(l.held_by_current_thread(), None);
                assert_eq!(other.held_by_current_thread(), Some(TwoState::Block));
                other.unlock_block();
            });
        });

        // An adopted hand-off is the receiving thread's own hold.
        l.lock_add().unwrap();
        let h = l.hand_off(TwoState::Add);
        assert_eq!(h.state(), TwoState::Add);
        std::thread::scope(|s| {
            s.spawn(move || {
                let g = h.adopt();
                assert_eq!(l.held_by_current_thread(), Some(TwoState::Add));
                assert!(l.lock_block().is_err());
                drop(g);
                assert_eq!(l.held_by_current_thread(), None);
            });
        });
        assert_eq!(l.holders(), None);
    }

    #[test]
    fn lock_two_same_and_different() {
        let a = TwoStateLock::new();
        let b = TwoStateLock::new();
        lock_two(&a, TwoState::Block, &b, TwoState::Add).unwrap();
        assert_eq!(a.holders(), Some((TwoState::Block, 1)));
        assert_eq!(b.holders(), Some((TwoState::Add, 1)));
        a.unlock_block();
        b.unlock_add();
        lock_two(&a, TwoState::Block, &a, TwoState::Block).unwrap();
        assert_eq!(a.holders(), Some((TwoState::Block, 2)));
        assert!(lock_two(&a, TwoState::Add, &b, TwoState::Add).is_err());
        a.unlock_block();
        a.unlock_block();
        assert!(lock_two(&a, TwoState::Add, &a, TwoState::Block).is_err());
        let (ga, gb) = guard_two(&b, TwoState::Block, &a, TwoState::Block).unwrap();
        assert_eq!(ga.state(), TwoState::Block);
        drop((ga, gb));
        assert_eq!(a.holders(), None);
        assert_eq!(b.holders(), None);
    }
}

/// Loom models, run as `scripts/test-all.sh` does (release build, debug assertions on):
/// `RUSTFLAGS="--cfg loom -C debug-assertions=on" cargo test -p sixfs --release --lib -- sync:: util::`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::loom_model;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicU32;
    use loom::thread;

    /// Holder counts kept beside the lock, to check that both states are never held together.
    struct Checked {
        lock: TwoStateLock,
        held: [AtomicU32; 2],
    }

    impl Checked {
        fn new() -> Arc<Checked> {
            Arc::new(Checked {
                lock: TwoStateLock::new(),
                held: [AtomicU32::new(0), AtomicU32::new(0)],
            })
        }
        fn enter(&self, s: TwoState) {
            self.lock.lock(s).unwrap();
            self.mark(s);
        }
        fn leave(&self, s: TwoState) {
            self.unmark(s);
            self.lock.unlock(s);
        }
        /// Counts a hold of `s` just taken, checking the other state is not held.
        fn mark(&self, s: TwoState) {
            self.held[s.idx()].fetch_add(1, Ordering::SeqCst);
            assert_eq!(
                self.held[s.other().idx()].load(Ordering::SeqCst),
                0,
                "both states held"
            );
        }
        /// Uncounts a hold of `s` about to be released.
        fn unmark(&self, s: TwoState) {
            self.held[s.idx()].fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn never_both_states_and_no_lost_wakeup() {
        loom_model(|| {
            let c = Checked::new();
            let c2 = c.clone();
            let t = thread::spawn(move || {
                c2.enter(TwoState::Block);
                c2.leave(TwoState::Block);
            });
            c.enter(TwoState::Add);
            c.leave(TwoState::Add);
            c.enter(TwoState::Add);
            c.leave(TwoState::Add);
            t.join().unwrap();
            assert_eq!(c.lock.holders(), None);
        });
    }

    #[test]
    fn shared_holders_then_other_state() {
        loom_model(|| {
            let c = Checked::new();
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let c = c.clone();
                    thread::spawn(move || {
                        c.enter(TwoState::Add);
                        c.leave(TwoState::Add);
                    })
                })
                .collect();
            c.enter(TwoState::Block);
            c.leave(TwoState::Block);
            for t in ts {
                t.join().unwrap();
            }
            assert_eq!(c.lock.holders(), None);
        });
    }

    #[test]
    fn same_thread_recursion_errors_while_other_thread_waits() {
        loom_model(|| {
            let c = Checked::new();
            c.enter(TwoState::Block);
            let c2 = c.clone();
            let t = thread::spawn(move || {
                c2.enter(TwoState::Add);
                c2.leave(TwoState::Add);
            });
            assert_eq!(
                c.lock.lock_add(),
                Err(WouldDeadlock {
                    held: TwoState::Block
                })
            );
            assert!(!c.lock.try_lock_add());
            c.leave(TwoState::Block);
            t.join().unwrap();
            assert_eq!(c.lock.holders(), None);
        });
    }

    /// Seed 004 with a completion thread that holds the same state itself: thread A takes add
    /// and hands it off to B; B, holding add on the same lock, releases the handed-over hold;
    /// B's own record must survive, so B's request for block is `WouldDeadlock` (it would
    /// otherwise wait for itself forever, which loom reports as a deadlock). Meanwhile A, whose
    /// record no longer has the hold, waits for block and is woken.
    #[test]
    fn handed_hold_released_by_a_holder_of_the_same_state() {
        loom_model(|| {
            let c = Checked::new();
            c.enter(TwoState::Add);
            // `TwoStateHandoff` borrows the lock and loom threads are 'static: hand off with
            // the raw pair (`hand_off` + `leak` here, `unlock_disowned` there).
            c.lock.hand_off(TwoState::Add).leak();
            assert_eq!(c.lock.held_by_current_thread(), None);
            let c2 = c.clone();
            let b = thread::spawn(move || {
                c2.enter(TwoState::Add);
                // Complete A's write.
                c2.unmark(TwoState::Add);
                c2.lock.unlock_disowned(TwoState::Add);
                assert_eq!(c2.lock.held_by_current_thread(), Some(TwoState::Add));
                assert_eq!(
                    c2.lock.lock_block(),
                    Err(WouldDeadlock {
                        held: TwoState::Add
                    })
                );
                assert!(!c2.lock.try_lock_block());
                c2.leave(TwoState::Add);
            });
            c.enter(TwoState::Block);
            c.leave(TwoState::Block);
            b.join().unwrap();
            assert_eq!(c.lock.holders(), None);
        });
    }

    /// Takes `x` in `sx` and `y` in `sy` with `lock_two`, checks exclusion, releases both.
    fn two(x: &Checked, sx: TwoState, y: &Checked, sy: TwoState) {
        lock_two(&x.lock, sx, &y.lock, sy).unwrap();
        x.mark(sx);
        y.mark(sy);
        y.unmark(sy);
        x.unmark(sx);
        x.lock.unlock(sx);
        y.lock.unlock(sy);
    }

    /// Two new locks, lower-addressed first. `lock_two` orders by address and allocation
    /// addresses differ between executions, so the models name the locks by address order to
    /// stay deterministic.
    fn two_locks() -> (Arc<Checked>, Arc<Checked>) {
        let (a, b) = (Checked::new(), Checked::new());
        if std::ptr::from_ref(&a.lock) < std::ptr::from_ref(&b.lock) {
            (a, b)
        } else {
            (b, a)
        }
    }

    /// Two threads take the same two locks in opposite argument order, one in add and one in
    /// block: both complete. (A helper that took them in argument order, waiting for the
    /// second while holding the first, deadlocks here.)
    #[test]
    fn lock_two_opposite_orders_add_against_block() {
        loom_model(|| {
            let (lo, hi) = two_locks();
            let (lo2, hi2) = (lo.clone(), hi.clone());
            let t = thread::spawn(move || two(&hi2, TwoState::Block, &lo2, TwoState::Block));
            two(&lo, TwoState::Add, &hi, TwoState::Add);
            t.join().unwrap();
            assert_eq!(lo.lock.holders(), None);
            assert_eq!(hi.lock.holders(), None);
        });
    }

    /// As above, but the threads conflict only on the higher-addressed lock, so the one whose
    /// trylock of it fails must back off (release the lower lock, wait for the higher one,
    /// then try the lower one): the back-off path, model-checked.
    #[test]
    fn lock_two_backs_off_when_only_the_second_lock_conflicts() {
        loom_model(|| {
            let (lo, hi) = two_locks();
            let (lo2, hi2) = (lo.clone(), hi.clone());
            let t = thread::spawn(move || two(&hi2, TwoState::Block, &lo2, TwoState::Add));
            two(&lo, TwoState::Add, &hi, TwoState::Add);
            t.join().unwrap();
            assert_eq!(lo.lock.holders(), None);
            assert_eq!(hi.lock.holders(), None);
        });
    }

    #[test]
    fn released_on_another_thread_wakes_waiter() {
        loom_model(|| {
            let c = Checked::new();
            c.enter(TwoState::Block);
            c.lock.disown(TwoState::Block);
            let c2 = c.clone();
            let t = thread::spawn(move || c2.leave(TwoState::Block));
            // Not an error any more: this thread no longer holds block; it waits for the
            // completion thread's release.
            c.enter(TwoState::Add);
            c.leave(TwoState::Add);
            t.join().unwrap();
            assert_eq!(c.lock.holders(), None);
        });
    }
}
