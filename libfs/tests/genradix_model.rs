//! Generic radix tree against a `BTreeMap` model (proptest), plus a concurrent
//! `get_or_alloc` stress test.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use proptest::prelude::*;
use sixfs::util::genradix::GenRadix;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

type R = GenRadix<AtomicU64>;
const PER: u64 = R::PER_LEAF as u64;

#[derive(Debug, Clone)]
enum Op {
    Set(u64, u64),
    Get(u64),
    IterFrom(u64),
    IterRevFrom(u64),
}

/// Indices clustered at small values, around leaf and tree boundaries, and far out.
fn index() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..2_000,
        (0u64..8, 0u64..3).prop_map(|(k, d)| (PER << (9 * k)).wrapping_add(d).wrapping_sub(1)),
        any::<u64>(),
        (u64::MAX - 2_000)..=u64::MAX,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (index(), 1u64..1_000).prop_map(|(i, v)| Op::Set(i, v)),
        2 => index().prop_map(Op::Get),
        1 => index().prop_map(Op::IterFrom),
        1 => index().prop_map(Op::IterRevFrom),
    ]
}

/// Every index of every allocated leaf, from the model's point of view.
fn allocated(leaves: &BTreeSet<u64>) -> impl Iterator<Item = u64> + '_ {
    leaves.iter().flat_map(|&l| {
        let first = l * PER;
        (0..PER).map_while(move |o| first.checked_add(o))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn matches_btreemap(ops in proptest::collection::vec(op(), 1..60)) {
        let r = R::new();
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let mut leaves: BTreeSet<u64> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Set(i, v) => {
                    r.get_or_alloc(i).store(v, Relaxed);
                    model.insert(i, v);
                    leaves.insert(i / PER);
                }
                Op::Get(i) => {
                    let got = r.get(i).map(|e| e.load(Relaxed));
                    let want = if leaves.contains(&(i / PER)) {
                        Some(model.get(&i).copied().unwrap_or(0))
                    } else {
                        None
                    };
                    prop_assert_eq!(got, want, "get({})", i);
                }
                Op::IterFrom(i) => {
                    let got: Vec<(u64, u64)> =
                        r.iter_from(i).take(3 * R::PER_LEAF).map(|(k, e)| (k, e.load(Relaxed))).collect();
                    let want: Vec<(u64, u64)> = allocated(&leaves)
                        .filter(|&k| k >= i)
                        .take(3 * R::PER_LEAF)
                        .map(|k| (k, model.get(&k).copied().unwrap_or(0)))
                        .collect();
                    prop_assert_eq!(got, want, "iter_from({})", i);
                }
                Op::IterRevFrom(i) => {
                    let got: Vec<u64> = r.iter_rev_from(i).take(2 * R::PER_LEAF).map(|(k, _)| k).collect();
                    let mut want: Vec<u64> = allocated(&leaves).filter(|&k| k <= i).collect();
                    want.reverse();
                    want.truncate(2 * R::PER_LEAF);
                    prop_assert_eq!(got, want, "iter_rev_from({})", i);
                }
            }
        }
        // Full iteration: exactly the allocated leaves' entries, in order, holes skipped.
        // Bounded, so an iterator that never ends fails instead of eating all memory.
        let want_all: Vec<u64> = allocated(&leaves).collect();
        let all: Vec<u64> = r.iter().map(|(k, _)| k).take(want_all.len() + 1).collect();
        prop_assert_eq!(&all, &want_all);
        let nonzero: BTreeMap<u64, u64> =
            r.iter().map(|(k, e)| (k, e.load(Relaxed))).filter(|&(_, v)| v != 0).collect();
        prop_assert_eq!(nonzero, model);
        let mut rev: Vec<u64> = r.iter_rev().map(|(k, _)| k).take(all.len() + 1).collect();
        rev.reverse();
        prop_assert_eq!(rev, all);
    }
}

#[test]
fn memory_is_proportional_to_populated_pages() {
    let r = R::new();
    let empty = r.memory_bytes();
    r.get_or_alloc(1 << 40);
    let one = r.memory_bytes() - empty;
    assert!(one <= 5 * 4096, "one far entry cost {one} bytes");
    // A dense run of 100 pages costs ~100 leaves plus a few interior nodes.
    for i in 0..100 * PER {
        r.get_or_alloc(i);
    }
    let dense = r.memory_bytes() - empty - one;
    assert!(dense <= 102 * 4096, "100 dense pages cost {dense} bytes");
    assert!(dense >= 100 * 4096);
}

#[test]
fn references_stay_valid_while_tree_grows() {
    let r = R::new();
    let first = r.get_or_alloc(3);
    first.store(11, Relaxed);
    for i in (0..1_000_000u64).step_by(997) {
        r.get_or_alloc(i * 1_000_003);
    }
    assert!(std::ptr::eq(first, r.get(3).unwrap()), "an entry moved");
    assert_eq!(first.load(Relaxed), 11);
}

#[test]
fn concurrent_get_or_alloc_is_exact() {
    let r = Arc::new(R::new());
    let threads = 4;
    let per_thread = 20_000u64;
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let r = r.clone();
            std::thread::spawn(move || {
                // Overlapping index sets, sparse and dense, so threads race to allocate the
                // same leaves and interior nodes.
                for k in 0..per_thread {
                    let i = if k % 2 == 0 {
                        k * 37
                    } else {
                        (k << 20) ^ (t as u64 & 1)
                    };
                    r.get_or_alloc(i).fetch_add(1, Relaxed);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let total: u64 = r.iter().map(|(_, e)| e.load(Relaxed)).sum();
    assert_eq!(
        total,
        threads as u64 * per_thread,
        "an increment went to a lost duplicate node"
    );
    assert_eq!(r.get(37 * 2).unwrap().load(Relaxed), threads as u64);
}
