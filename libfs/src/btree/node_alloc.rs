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
///
/// The state is compact whatever the device size: a cursor over the slots in address order
/// (every slot at or past it is free unless listed in `ahead`), the freed slots below it, and
/// the slots marked used ahead of it (`mark_used` at open). Memory is proportional to the
/// nodes in use, never to the device; `new` costs one call of `skip` per bucket (and nothing
/// per slot) — [`SimpleNodeAlloc::with_skip_ranges`] costs only the ranges.
#[derive(Debug)]
pub struct SimpleNodeAlloc {
    inner: Mutex<Inner>,
    geo: Geo,
    total: u64,
}

/// The slot space: buckets `[first, nbuckets)` minus `skip` (sorted, disjoint, merged),
/// `per` slots of `node_size` bytes per bucket.
#[derive(Debug)]
struct Geo {
    bucket_size: u64,
    node_size: u64,
    per: u64,
    first: u64,
    nbuckets: u64,
    skip: Vec<(u64, u64)>,
}

impl Geo {
    /// The first bucket at or after `b` that is not skipped (may be `nbuckets`: the end).
    fn usable_from(&self, mut b: u64) -> u64 {
        b = b.max(self.first);
        // Ranges are sorted and merged: one pass past every range covering `b`.
        let i = self.skip.partition_point(|&(_, end)| end <= b);
        if let Some(&(start, end)) = self.skip.get(i)
            && start <= b
        {
            b = end;
        }
        b.min(self.nbuckets)
    }

    fn is_skipped(&self, b: u64) -> bool {
        let i = self.skip.partition_point(|&(_, end)| end <= b);
        self.skip.get(i).is_some_and(|&(start, _)| start <= b)
    }

    /// Sector address of slot `i` of bucket `b` (`None` on overflow).
    fn addr(&self, b: u64, i: u64) -> Option<u64> {
        let byte = b
            .checked_mul(self.bucket_size)?
            .checked_add(i.checked_mul(self.node_size)?)?;
        Some(byte / 512)
    }

    /// The (bucket, slot) of sector address `addr`, if it is a slot of this space.
    fn slot_of(&self, addr: u64) -> Option<(u64, u64)> {
        if self.per == 0 {
            return None;
        }
        let byte = addr.checked_mul(512)?;
        let b = byte / self.bucket_size;
        let within = byte % self.bucket_size;
        if !within.is_multiple_of(self.node_size) || b < self.first || b >= self.nbuckets {
            return None;
        }
        let i = within / self.node_size;
        if i >= self.per || self.is_skipped(b) {
            return None;
        }
        Some((b, i))
    }
}

#[derive(Debug)]
struct Inner {
    /// Next never-handed-out slot: bucket (== `nbuckets` at the end) and slot in it.
    cursor: (u64, u64),
    /// Free slots below the cursor (released after durability), reused first.
    freed: BTreeSet<u64>,
    /// Slots at or past the cursor that are not free (marked used, or freed and waiting).
    ahead: BTreeSet<u64>,
    /// (seq, addr) frees waiting for `seq` to be durable.
    pending: Vec<(u64, u64)>,
    used: u64,
}

impl SimpleNodeAlloc {
    /// Slots of `node_size` bytes in buckets `[first, nbuckets)` not listed in `skip`
    /// (journal buckets). Calls `skip` once per bucket; prefer
    /// [`SimpleNodeAlloc::with_skip_ranges`] when the skipped buckets are known as ranges.
    pub fn new(
        bucket_size: u64,
        node_size: u64,
        first: u64,
        nbuckets: u64,
        skip: &dyn Fn(u64) -> bool,
    ) -> SimpleNodeAlloc {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for b in first..nbuckets {
            if skip(b) {
                match ranges.last_mut() {
                    Some(r) if r.1 == b => r.1 = b + 1,
                    _ => ranges.push((b, b + 1)),
                }
            }
        }
        SimpleNodeAlloc::with_skip_ranges(bucket_size, node_size, first, nbuckets, &ranges)
    }

    /// Slots of `node_size` bytes in buckets `[first, nbuckets)` outside the bucket ranges
    /// `skip` (each `(start, end)`, end exclusive; any order, may overlap).
    pub fn with_skip_ranges(
        bucket_size: u64,
        node_size: u64,
        first: u64,
        nbuckets: u64,
        skip: &[(u64, u64)],
    ) -> SimpleNodeAlloc {
        let bucket_size = bucket_size.max(1);
        let node_size = node_size.max(1);
        let per = bucket_size / node_size;
        let mut ranges: Vec<(u64, u64)> = skip
            .iter()
            .map(|&(s, e)| (s.max(first), e.min(nbuckets)))
            .filter(|&(s, e)| s < e)
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(m) if s <= m.1 => m.1 = m.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let skipped: u64 = merged.iter().map(|&(s, e)| e - s).sum();
        let buckets = nbuckets.saturating_sub(first).saturating_sub(skipped);
        let geo = Geo {
            bucket_size,
            node_size,
            per,
            first,
            nbuckets,
            skip: merged,
        };
        let start = if per == 0 {
            nbuckets
        } else {
            geo.usable_from(first)
        };
        SimpleNodeAlloc {
            inner: Mutex::new(Inner {
                cursor: (start, 0),
                freed: BTreeSet::new(),
                ahead: BTreeSet::new(),
                pending: Vec::new(),
                used: 0,
            }),
            total: buckets.saturating_mul(per),
            geo,
        }
    }

    /// True if `addr` is at or past the cursor (so free unless in `ahead`).
    fn past_cursor(&self, s: &Inner, b: u64, i: u64) -> bool {
        (b, i) >= s.cursor && s.cursor.0 < self.geo.nbuckets
    }

    /// Hands out the slot at the cursor, skipping slots marked used ahead of it.
    fn take_at_cursor(&self, s: &mut Inner) -> Option<u64> {
        loop {
            let (b, i) = s.cursor;
            if b >= self.geo.nbuckets {
                return None;
            }
            let addr = self.geo.addr(b, i);
            s.cursor = if i + 1 < self.geo.per {
                (b, i + 1)
            } else {
                (self.geo.usable_from(b + 1), 0)
            };
            let Some(addr) = addr else {
                s.cursor = (self.geo.nbuckets, 0);
                return None;
            };
            if !s.ahead.remove(&addr) {
                return Some(addr);
            }
        }
    }
}

impl NodeAllocator for SimpleNodeAlloc {
    fn alloc(&self) -> Option<u64> {
        let mut s = self.inner.lock();
        let a = match s.freed.pop_first() {
            Some(a) => a,
            None => self.take_at_cursor(&mut s)?,
        };
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
                let Some((b, j)) = self.geo.slot_of(a) else {
                    continue;
                };
                // Past the cursor a slot is free by not being in `ahead`; below it, by
                // being in `freed`. A slot freed twice is released once.
                let released = if self.past_cursor(&s, b, j) {
                    s.ahead.remove(&a)
                } else {
                    s.freed.insert(a)
                };
                if released {
                    s.used = s.used.saturating_sub(1);
                }
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
        let Some((b, i)) = self.geo.slot_of(addr) else {
            return;
        };
        let newly = if self.past_cursor(&s, b, i) {
            s.ahead.insert(addr)
        } else {
            s.freed.remove(&addr)
        };
        if newly {
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
    use proptest::prelude::*;
    use std::collections::BTreeMap;

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

    #[test]
    fn a_terabyte_of_4k_slots_costs_no_memory() {
        // 1 TiB in 4 KiB buckets and nodes: 2^28 slots, a journal of 512 buckets.
        let n = 1u64 << 28;
        let a = SimpleNodeAlloc::with_skip_ranges(4096, 4096, 33, n, &[(33, 545)]);
        assert_eq!(a.usage(), (0, n - 33 - 512));
        assert_eq!(a.alloc(), Some(545 * 8));
        a.mark_used((n - 1) * 8);
        a.mark_used(546 * 8);
        assert_eq!(
            a.alloc(),
            Some(547 * 8),
            "a slot marked used was handed out"
        );
        assert_eq!(a.usage(), (4, n - 33 - 512));
        assert_eq!(a.inner.lock().ahead.len(), 1);
        // The closure form gives the same space.
        let b = SimpleNodeAlloc::new(4096, 4096, 33, 1 << 20, &|b| (33..545).contains(&b));
        assert_eq!(b.usage(), (0, (1 << 20) - 33 - 512));
        assert_eq!(b.alloc(), Some(545 * 8));
    }

    #[test]
    fn addresses_outside_the_slot_space_are_ignored() {
        let a = SimpleNodeAlloc::with_skip_ranges(8192, 4096, 1, 4, &[(2, 3)]);
        // Bucket 0 (before first), bucket 2 (journal), bucket 4 (past the end), unaligned.
        for addr in [0, 8, 32, 40, 64, 17] {
            a.mark_used(addr);
        }
        assert_eq!(a.usage(), (0, 4));
        a.free_after(8, 0);
        a.durable(1);
        let got: Vec<u64> = std::iter::from_fn(|| a.alloc()).collect();
        assert_eq!(got, vec![16, 24, 48, 56]);
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum St {
        Free,
        Used,
        Pending(u64),
    }

    #[derive(Clone, Debug)]
    enum Op {
        Alloc,
        Free(usize, u64),
        Durable(u64),
        MarkUsed(u64),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Alloc),
            3 => (any::<usize>(), 0u64..20).prop_map(|(i, s)| Op::Free(i, s)),
            2 => (0u64..20).prop_map(Op::Durable),
            2 => (0u64..200).prop_map(Op::MarkUsed),
        ]
    }

    proptest! {
        /// Against a model of every slot's state: alloc never returns a used slot or one
        /// waiting for durability, returns `None` only when nothing is free, counts match,
        /// and in the end every free slot is handed out exactly once.
        #[test]
        fn matches_a_model(
            per_log in 0u32..3,
            first in 0u64..3,
            nbuckets in 3u64..12,
            skip in proptest::collection::vec((0u64..12, 1u64..4), 0..3),
            ops in proptest::collection::vec(arb_op(), 0..120),
        ) {
            let node = 4096u64;
            let bucket = node << per_log;
            let ranges: Vec<(u64, u64)> = skip.iter().map(|&(s, n)| (s, s + n)).collect();
            let a = SimpleNodeAlloc::with_skip_ranges(bucket, node, first, nbuckets, &ranges);
            let mut model: BTreeMap<u64, St> = BTreeMap::new();
            for b in first..nbuckets {
                if ranges.iter().any(|&(s, e)| s <= b && b < e) {
                    continue;
                }
                for i in 0..(bucket / node) {
                    model.insert((b * bucket + i * node) / 512, St::Free);
                }
            }
            prop_assert_eq!(a.usage().1, model.len() as u64);
            for op in ops {
                match op {
                    Op::Alloc => match a.alloc() {
                        Some(x) => {
                            let st = model.get_mut(&x);
                            prop_assert_eq!(st.as_deref().copied(), Some(St::Free), "handed out {}", x);
                            if let Some(st) = st {
                                *st = St::Used;
                            }
                        }
                        None => prop_assert!(
                            !model.values().any(|s| *s == St::Free),
                            "None while a slot is free"
                        ),
                    },
                    Op::Free(i, seq) => {
                        let used: Vec<u64> = model
                            .iter()
                            .filter(|(_, s)| **s == St::Used)
                            .map(|(k, _)| *k)
                            .collect();
                        if !used.is_empty() {
                            let x = used[i % used.len()];
                            a.free_after(x, seq);
                            model.insert(x, St::Pending(seq));
                        }
                    }
                    Op::Durable(d) => {
                        a.durable(d);
                        for s in model.values_mut() {
                            if matches!(*s, St::Pending(q) if q <= d) {
                                *s = St::Free;
                            }
                        }
                    }
                    Op::MarkUsed(x) => {
                        a.mark_used(x);
                        if let Some(s) = model.get_mut(&x)
                            && *s == St::Free
                        {
                            *s = St::Used;
                        }
                    }
                }
                let busy = model.values().filter(|s| **s != St::Free).count() as u64;
                prop_assert_eq!(a.usage(), (busy, model.len() as u64));
                let newest = model
                    .values()
                    .filter_map(|s| if let St::Pending(q) = s { Some(*q) } else { None })
                    .max();
                prop_assert_eq!(a.pending_seq(), newest);
            }
            let free: Vec<u64> = model
                .iter()
                .filter(|(_, s)| **s == St::Free)
                .map(|(k, _)| *k)
                .collect();
            let mut got: Vec<u64> = std::iter::from_fn(|| a.alloc()).collect();
            got.sort_unstable();
            prop_assert_eq!(got, free);
        }
    }
}
