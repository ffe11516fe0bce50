//! Random operation sequences (insert, overwrite, delete, range delete, lookups, iteration both
//! ways, flush, clean reopen, crash reopen) against a `BTreeMap` model, on the crash device.
//! After a crash the store must hold exactly the transactions up to the journal seq it
//! recovered to, and at least everything a completed flush acknowledged.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use sixfs::dev::{CrashDevice, Survivors};
use sixfs::format::bkey::{Key, Pos};
use sixfs::format::btree_id::BtreeId;
use sixfs::recovery::Store;

#[derive(Clone, Debug)]
enum Op {
    Put(u64, u64),
    Del(u64),
    DelRange(u64, u64),
}

#[derive(Clone, Debug)]
enum Step {
    Txn(Vec<Op>),
    Get(u64),
    Scan,
    Flush,
    CleanReopen,
    CrashReopen(u64),
}

const KEYS: u64 = 400;

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS, any::<u64>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..KEYS).prop_map(Op::Del),
        1 => (0..KEYS, 1u64..40).prop_map(|(a, n)| Op::DelRange(a, n)),
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => proptest::collection::vec(arb_op(), 1..12).prop_map(Step::Txn),
        3 => (0..KEYS).prop_map(Step::Get),
        1 => Just(Step::Scan),
        2 => Just(Step::Flush),
        1 => Just(Step::CleanReopen),
        2 => any::<u64>().prop_map(Step::CrashReopen),
    ]
}

fn p(k: u64) -> Pos {
    Pos::new(k / 100, k % 100, 0)
}

/// Applies `ops` and returns their concrete effect (range deletes become the deletes they
/// did), so replaying the effect on the same state gives the same result.
fn apply(m: &mut BTreeMap<Pos, Vec<u8>>, ops: &[Op]) -> Vec<Op> {
    let mut effect = Vec::new();
    for op in ops {
        match *op {
            Op::Put(k, v) => {
                m.insert(p(k), val(k, v));
                effect.push(op.clone());
            }
            Op::Del(k) => {
                m.remove(&p(k));
                effect.push(op.clone());
            }
            Op::DelRange(a, n) => {
                let keys: Vec<Pos> = m
                    .range(p(a)..=p((a + n).min(KEYS - 1)))
                    .map(|(k, _)| *k)
                    .collect();
                for k in keys {
                    m.remove(&k);
                    effect.push(Op::Del(k.inode * 100 + k.offset));
                }
            }
        }
    }
    effect
}

fn run_txn(s: &Store, ops: &[Op]) -> u64 {
    s.btree()
        .run(|t| {
            for op in ops {
                match *op {
                    Op::Put(k, v) => t.update(BtreeId::Extents, Key::cookie(p(k), &val(k, v)))?,
                    Op::Del(k) => t.delete(BtreeId::Extents, p(k))?,
                    Op::DelRange(a, n) => {
                        t.delete_range(BtreeId::Extents, p(a), p((a + n).min(KEYS - 1)))?;
                    }
                }
            }
            Ok(())
        })
        .expect("commit")
        .1
}

fn run_steps(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut dev: Arc<CrashDevice> = new_dev(16 << 20, &small_opts());
    let mut s = open(dev.clone());
    // Committed transactions since the last reopen: (seq, ops); and the model before them.
    let mut base: BTreeMap<Pos, Vec<u8>> = BTreeMap::new();
    let mut history: Vec<(u64, Vec<Op>)> = Vec::new();
    let mut model: BTreeMap<Pos, Vec<u8>> = BTreeMap::new();
    let mut acked = 0u64;
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Txn(ops) => {
                let seq = run_txn(&s, &ops);
                let effect = apply(&mut model, &ops);
                if seq == 0 {
                    prop_assert!(
                        effect.iter().all(|o| matches!(o, Op::Del(_))),
                        "step {}: updates but no commit",
                        i
                    );
                }
                history.push((seq, effect));
            }
            Step::Get(k) => {
                let mut t = s.btree().trans();
                let got = t
                    .get(BtreeId::Extents, p(k))
                    .unwrap()
                    .map(|k| k.val.to_vec());
                prop_assert_eq!(got, model.get(&p(k)).cloned(), "step {}: get {}", i, k);
            }
            Step::Scan => {
                prop_assert_eq!(
                    &dump_iter(s.btree(), BtreeId::Extents),
                    &model,
                    "step {}: iteration",
                    i
                );
                prop_assert_eq!(
                    &dump(s.btree(), BtreeId::Extents),
                    &model,
                    "step {}: scan",
                    i
                );
            }
            Step::Flush => {
                acked = s.flush_all().unwrap();
            }
            Step::CleanReopen => {
                s.close().unwrap();
                drop(s);
                s = open(dev.clone());
                prop_assert!(s.recovery().clean);
                base = model.clone();
                history.clear();
                acked = 0;
            }
            Step::CrashReopen(seed) => {
                let pending = dev.pending_writes();
                let survivors = match seed % 3 {
                    0 => Survivors::None,
                    1 => Survivors::All,
                    _ => Survivors::Some(
                        (0..pending)
                            .filter(|j| (seed >> (j % 60)) & 1 == 1)
                            .collect(),
                    ),
                };
                let img = Arc::new(dev.crash_now(&survivors, None));
                drop(s);
                dev = img;
                s = open(dev.clone());
                let n = match s.recovery().replayed {
                    Some((_, n)) => n,
                    None => u64::MAX, // clean: the superblock was written clean
                };
                prop_assert!(
                    n >= acked,
                    "step {}: recovered to {} but {} was acknowledged durable",
                    i,
                    n,
                    acked
                );
                let mut expect = base.clone();
                for (seq, ops) in &history {
                    if *seq <= n {
                        apply(&mut expect, ops);
                    }
                }
                let got = dump_iter(s.btree(), BtreeId::Extents);
                prop_assert_eq!(
                    &got,
                    &expect,
                    "step {}: state after crash ({:?}) is not the prefix up to seq {}",
                    i,
                    survivors,
                    n
                );
                check_ok(s.btree());
                model = expect;
                base = model.clone();
                history.clear();
                acked = 0;
            }
        }
    }
    prop_assert_eq!(&dump_iter(s.btree(), BtreeId::Extents), &model);
    check_ok(s.btree());
    s.close().unwrap();
    let s = open(dev);
    prop_assert_eq!(&dump(s.btree(), BtreeId::Extents), &model);
    check_ok(s.btree());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_btreemap_model(steps in proptest::collection::vec(arb_step(), 1..150)) {
        run_steps(steps)?;
    }
}
