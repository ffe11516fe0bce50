//! Random operation sequences (insert, overwrite, delete, range delete, lookups, iteration both
//! ways from arbitrary positions — also inside transactions, over their own queued updates —
//! flush, clean reopen, crash reopen with torn writes) against a `BTreeMap` model, on the
//! crash device. After a crash the store must hold exactly the transactions up to the
//! journal seq it recovered to, and at least everything a completed flush acknowledged.
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
    /// Inside the transaction: from key `.0`, `.1` steps of `peek`/`next`/`prev` (chosen by
    /// the bits of `.2`), checked against the model with the transaction's own updates.
    Walk(u64, u8, u64),
}

#[derive(Clone, Debug)]
enum Step {
    Txn(Vec<Op>),
    Get(u64),
    Scan,
    /// Outside a transaction: a walk as in [`Op::Walk`].
    Walk(u64, u8, u64),
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
        1 => (0..KEYS, 1u8..12, any::<u64>()).prop_map(|(k, n, b)| Op::Walk(k, n, b)),
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => proptest::collection::vec(arb_op(), 1..12).prop_map(Step::Txn),
        3 => (0..KEYS).prop_map(Step::Get),
        1 => Just(Step::Scan),
        2 => (0..KEYS, 1u8..30, any::<u64>()).prop_map(|(k, n, b)| Step::Walk(k, n, b)),
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
            Op::Walk(..) => {}
        }
    }
    effect
}

/// Walks a cursor from `p(k)`: each step is `next`, `prev` or `peek` (from the bits of
/// `bits`); every result must be what `model` says. Returns a description of the first
/// disagreement.
fn walk(
    t: &mut sixfs::btree::BtreeTrans<'_>,
    model: &BTreeMap<Pos, Vec<u8>>,
    k: u64,
    steps: u8,
    bits: u64,
) -> Result<Option<String>, sixfs::btree::TransError> {
    let mut it = t.iter(BtreeId::Extents, p(k));
    // The model cursor: the position the next step starts from (None: ran off an end).
    let mut at = Some(p(k));
    for i in 0..steps {
        let kind = (bits >> (2 * u32::from(i % 32))) & 3;
        let (got, want) = match kind {
            0 | 1 => {
                let got = t.next(&mut it)?;
                let want = at.and_then(|a| model.range(a..).next());
                at = want.and_then(|(p, _)| p.successor());
                (got, want)
            }
            2 => {
                let got = t.prev(&mut it)?;
                let want = at.and_then(|a| model.range(..=a).next_back());
                at = want.and_then(|(p, _)| p.predecessor());
                (got, want)
            }
            _ => {
                let got = t.peek(&mut it)?;
                let want = at.and_then(|a| model.range(a..).next());
                at = want.map(|(p, _)| *p);
                (got, want)
            }
        };
        let got = got.map(|k| (k.pos, k.val.to_vec()));
        let want = want.map(|(p, v)| (*p, v.clone()));
        if got != want {
            return Ok(Some(format!(
                "walk from {k}, step {i} (kind {kind}): got {got:?}, want {want:?}"
            )));
        }
        if at.is_none() {
            break;
        }
    }
    Ok(None)
}

/// Runs `ops` as one transaction on a store whose committed state is `model`; walks inside
/// it are checked against `model` plus the transaction's own earlier updates. Returns the
/// commit seq, or the first walk disagreement.
fn run_txn(s: &Store, model: &BTreeMap<Pos, Vec<u8>>, ops: &[Op]) -> Result<u64, String> {
    let mut bad = None;
    let (_, seq) = s
        .btree()
        .run(|t| {
            bad = None;
            let mut m = model.clone();
            for op in ops {
                match *op {
                    Op::Put(k, v) => t.update(BtreeId::Extents, Key::cookie(p(k), &val(k, v)))?,
                    Op::Del(k) => t.delete(BtreeId::Extents, p(k))?,
                    Op::DelRange(a, n) => {
                        t.delete_range(BtreeId::Extents, p(a), p((a + n).min(KEYS - 1)))?;
                    }
                    Op::Walk(k, n, bits) => {
                        if bad.is_none() {
                            bad = walk(t, &m, k, n, bits)?;
                        }
                    }
                }
                apply(&mut m, std::slice::from_ref(op));
            }
            Ok(())
        })
        .expect("commit");
    match bad {
        Some(b) => Err(b),
        None => Ok(seq),
    }
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
                let seq = match run_txn(&s, &model, &ops) {
                    Ok(seq) => seq,
                    Err(e) => return Err(TestCaseError::fail(format!("step {i}: {e}"))),
                };
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
            Step::Walk(k, n, bits) => {
                let mut t = s.btree().trans();
                if let Some(e) = walk(&mut t, &model, k, n, bits).unwrap() {
                    return Err(TestCaseError::fail(format!("step {i}: {e}")));
                }
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
                // Now and then one pending write is torn (some of its sectors written).
                let torn = (pending > 0 && seed % 5 == 4).then(|| sixfs::dev::Torn {
                    write: (seed >> 8) as usize % pending,
                    sectors: (0..64).map(|b| (seed >> (b % 61)) & 2 != 0).collect(),
                });
                let img = Arc::new(dev.crash_now(&survivors, torn.as_ref()));
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
                    "step {}: state after crash ({:?}, torn {:?}) is not the prefix up to seq {}",
                    i,
                    survivors,
                    torn,
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
