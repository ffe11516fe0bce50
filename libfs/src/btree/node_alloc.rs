//! Where btree nodes go on disk: the interface the btree asks for node space through, and a
//! simple implementation until the bucket allocator implements it.
//!
//! [`SimpleNodeAlloc`] treats every bucket outside the journal as node space, cut into
//! node-sized slots. Which slots are in use is not stored: it is rebuilt at open from what is
//! reachable (the on-disk tree, plus node pointers in the journal that replay will apply).
//! A freed slot becomes reusable only once the journal seq that made its node unreachable is
//! durable (invariant 3 of DESIGN §3: no node is reused before its replacement is reachable
//! on disk).

use std::collections::BTreeSet;

use parking_lot::Mutex;

/// Node space for the btree.
pub trait NodeAllocator: Send + Sync + std::fmt::Debug {
    /// A free node slot, as a sector address; `None` when there is none.
    fn alloc(&self) -> Option<u64>;
    /// `addr` is no longer referenced once journal seq `seq` is durable.
    fn free_after(&self, addr: u64, seq: u64);
    /// Journal seqs up to `durable` are durable: release slots waiting for them.
    fn durable(&self, durable: u64);
    /// Newest seq some pending free waits for (to force a journal flush when out of space).
    fn pending_seq(&self) -> Option<u64>;
    /// Marks `addr` in use (at open, from what is reachable).
    fn mark_used(&self, addr: u64);
    /// (slots in use, total slots).
    fn usage(&self) -> (u64, u64);
}

/// Every non-journal bucket is node space.
#[derive(Debug)]
pub struct SimpleNodeAlloc {
    inner: Mutex<Inner>,
    total: u64,
}

#[derive(Debug)]
struct Inner {
    free: BTreeSet<u64>,
    pending: Vec<(u64, u64)>,
    used: u64,
}

impl SimpleNodeAlloc {
    /// Slots of `node_size` bytes in buckets `[first, nbuckets)` not listed in `skip`
    /// (journal buckets).
    pub fn new(
        bucket_size: u64,
        node_size: u64,
        first: u64,
        nbuckets: u64,
        skip: &dyn Fn(u64) -> bool,
    ) -> SimpleNodeAlloc {
        let mut free = BTreeSet::new();
        let per = bucket_size / node_size;
        for b in first..nbuckets {
            if skip(b) {
                continue;
            }
            for i in 0..per {
                free.insert((b * bucket_size + i * node_size) / 512);
            }
        }
        let total = free.len() as u64;
        SimpleNodeAlloc {
            inner: Mutex::new(Inner {
                free,
                pending: Vec::new(),
                used: 0,
            }),
            total,
        }
    }
}

impl NodeAllocator for SimpleNodeAlloc {
    fn alloc(&self) -> Option<u64> {
        let mut s = self.inner.lock();
        let a = s.free.pop_first()?;
        s.used += 1;
        Some(a)
    }

    fn free_after(&self, addr: u64, seq: u64) {
        self.inner.lock().pending.push((seq, addr));
    }

    fn durable(&self, durable: u64) {
        let mut s = self.inner.lock();
        let mut i = 0;
        while i < s.pending.len() {
            if s.pending[i].0 <= durable {
                let (_, a) = s.pending.swap_remove(i);
                s.free.insert(a);
                s.used = s.used.saturating_sub(1);
            } else {
                i += 1;
            }
        }
    }

    fn pending_seq(&self) -> Option<u64> {
        self.inner.lock().pending.iter().map(|p| p.0).max()
    }

    fn mark_used(&self, addr: u64) {
        let mut s = self.inner.lock();
        if s.free.remove(&addr) {
            s.used += 1;
        }
    }

    fn usage(&self) -> (u64, u64) {
        (self.inner.lock().used, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_slots_wait_for_durability() {
        let a = SimpleNodeAlloc::new(8192, 4096, 1, 3, &|b| b == 2);
        assert_eq!(a.usage(), (0, 2));
        a.mark_used(16);
        let x = a.alloc().unwrap();
        assert_eq!(x, 24);
        assert!(a.alloc().is_none());
        a.free_after(x, 10);
        assert!(
            a.alloc().is_none(),
            "reused before the freeing seq was durable"
        );
        a.durable(9);
        assert!(a.alloc().is_none());
        a.durable(10);
        assert_eq!(a.alloc(), Some(24));
    }
}
