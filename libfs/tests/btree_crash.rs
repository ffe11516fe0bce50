//! Crash enumeration: a random transaction workload runs on a recording crash device; then,
//! for every flush boundary and sampled subsets / torn versions of the unflushed writes, the
//! image is reopened and must (a) open, (b) pass the full structural check, (c) contain every
//! transaction a completed flush acknowledged, and (d) contain no partial transaction: it
//! must equal exactly the transactions up to the journal seq it recovered to.
//!
//! Crashes during recovery are enumerated too: for a sample of the crash states, recovery
//! itself runs on a recording device, and every crash point of *that* recording must
//! recover to exactly the same state (replay loses nothing and exposes nothing half-done,
//! however often it is interrupted).
//!
//! Workloads: seed 1 and 2 keep the trees at two levels with many merges and root changes;
//! seed 3 uses a bigger key space so the trees reach three levels (interior nodes below the
//! root are replaced, and their slots reused, while the root on disk still points at them).
//!
//! CI tier: `cargo nextest run -p sixfs --test btree_crash` (≥ 500 crash states).
//! Long tier: `SIXFS_CRASH_TIER=long cargo nextest run --release -p sixfs --test btree_crash`
//! (≥ 10,000 states; figures in docs/testing.md).
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sixfs::dev::{BlockDevice, EnumPlan};
use sixfs::format::bkey::{Key, Pos};
use sixfs::format::btree_id::BtreeId;
use sixfs::recovery::{Store, StoreOptions};

struct Tier {
    seeds: Vec<u64>,
    txns: usize,
    subsets: usize,
    torn: usize,
    min_states: usize,
    /// Every `recovery_stride`-th crash state that replays something also has its recovery
    /// crashed at every point.
    recovery_stride: usize,
    min_recovery_states: usize,
}

fn tier() -> Tier {
    match std::env::var("SIXFS_CRASH_TIER").as_deref() {
        Ok("long") => Tier {
            seeds: vec![1, 2, 3, 4, 5, 6],
            txns: 6000,
            subsets: 6,
            torn: 6,
            min_states: 10_000,
            recovery_stride: 10,
            min_recovery_states: 5_000,
        },
        _ => Tier {
            seeds: vec![1, 2, 3],
            txns: 2000,
            subsets: 1,
            torn: 1,
            min_states: 500,
            recovery_stride: 60,
            min_recovery_states: 300,
        },
    }
}

type Model = BTreeMap<(BtreeId, Pos), Vec<u8>>;
/// A committed transaction: its journal seq and its writes (`None` = delete).
type Txn = (u64, Vec<(BtreeId, Pos, Option<Vec<u8>>)>);

/// Runs the workload; returns the transactions (seq, effect) and the acknowledgements
/// (flushes of the recording completed when the flush returned — a crash in a later epoch
/// must keep it — and the seq made durable).
fn workload(
    s: &Store,
    dev: &sixfs::dev::CrashDevice,
    seed: u64,
    txns: usize,
    base: u64,
) -> (Vec<Txn>, Vec<(u64, u64)>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut model: Model = BTreeMap::new();
    let mut history = Vec::new();
    let mut acks = Vec::new();
    let trees = [BtreeId::Extents, BtreeId::Inodes, BtreeId::Dirents];
    // Seeds divisible by 3 use ten times the key space: three-level trees.
    let keys = if seed.is_multiple_of(3) { 6000 } else { 600 };
    for i in 0..txns {
        let n = rng.gen_range(1..8);
        let mut ops: Vec<(BtreeId, Pos, Option<Vec<u8>>)> = Vec::new();
        for _ in 0..n {
            let b = trees[rng.gen_range(0..trees.len())];
            let k = rng.gen_range(0..keys);
            let pos = Pos::new(k / 50, k % 50, 0);
            // Some phases mostly delete, so nodes merge and roots shrink (and grow again).
            let p_del = if (i / 300) % 3 == 2 { 0.9 } else { 0.25 };
            if rng.gen_bool(p_del) && model.contains_key(&(b, pos)) {
                ops.push((b, pos, None));
            } else {
                ops.push((b, pos, Some(val(k, rng.r#gen()))));
            }
        }
        let (_, seq) = s
            .btree()
            .run(|t| {
                for (b, p, v) in &ops {
                    match v {
                        Some(v) => t.update(*b, Key::cookie(*p, v))?,
                        None => t.delete(*b, *p)?,
                    }
                }
                Ok(())
            })
            .expect("commit");
        for (b, p, v) in &ops {
            match v {
                Some(v) => model.insert((*b, *p), v.clone()),
                None => model.remove(&(*b, *p)),
            };
        }
        history.push((seq, ops));
        // Now and then write every dirty node back without flushing the journal (as memory
        // pressure would): node entries then run ahead of the durable journal.
        if (i / 500) % 4 == 1 && rng.gen_bool(0.03) {
            s.btree().flush_all_nodes().expect("node writeback");
        }
        // Irregular flushes, so journal reclaim also runs while committed transactions are
        // not yet durable.
        let p_flush = if (i / 400) % 2 == 0 { 0.3 } else { 0.0 };
        if rng.gen_bool(p_flush) || i + 1 == txns {
            let d = s.flush_all().expect("flush");
            acks.push((dev.flushes() - base, d));
        }
    }
    (history, acks)
}

fn expected(history: &[Txn], upto: u64) -> Model {
    let mut m = Model::new();
    for (seq, ops) in history {
        if *seq <= upto {
            for (b, p, v) in ops {
                match v {
                    Some(v) => m.insert((*b, *p), v.clone()),
                    None => m.remove(&(*b, *p)),
                };
            }
        }
    }
    m
}

fn contents(s: &Store) -> Model {
    let mut m = Model::new();
    for b in [BtreeId::Extents, BtreeId::Inodes, BtreeId::Dirents] {
        for (p, v) in dump(s.btree(), b) {
            m.insert((b, p), v);
        }
    }
    m
}

/// Crashes the recovery of `img` at every point: each must recover to the state recovery
/// reached uninterrupted (`upto`: the transactions through that seq). Returns the states.
fn crash_recovery(
    img: sixfs::dev::CrashDevice,
    history: &[Txn],
    upto: u64,
    seed: u64,
    outer: &sixfs::dev::CrashPoint,
) -> usize {
    let img = Arc::new(img);
    img.start_recording();
    let s = Store::open(img.clone(), &StoreOptions { cache_nodes: 64 }).expect("reopen");
    drop(s); // a crash right after recovery, too: nothing is closed
    let log = img.history();
    let points = log.points(&EnumPlan {
        random_subsets: 1,
        torn: 1,
        seed,
    });
    let want = expected(history, upto);
    for pt in &points {
        let what = format!("seed {seed}, crash point {outer}, then during recovery {pt}");
        let img2: Arc<dyn BlockDevice> = Arc::new(log.image(pt));
        let s = match Store::open(img2, &StoreOptions { cache_nodes: 64 }) {
            Ok(s) => s,
            Err(e) => panic!("{what}: open failed: {e}"),
        };
        let r = sixfs::btree::check::check(s.btree()).expect("check");
        assert!(
            r.ok(),
            "{what}: structural check:\n{}",
            r.problems.join("\n")
        );
        if contents(&s) != want {
            panic!("{what}: state is not the one recovery reached uninterrupted (seq {upto})");
        }
    }
    points.len()
}

/// Crash states checked: (during the workload, during recovery).
fn enumerate(seed: u64, t: &Tier) -> (usize, usize) {
    // Small buckets and jsets: the 256 KiB journal (~64 jsets) wraps several times, so
    // reclaim writes nodes back — sometimes while committed transactions are not yet durable,
    // so node entries run ahead of the journal and the blacklist matters.
    let opts = sixfs::init::FormatOptions {
        bucket_size: Some(16 << 10),
        journal_buckets: Some(16),
        ..small_opts()
    };
    let dev = new_dev(8 << 20, &opts);
    dev.start_recording();
    // Epoch k of the recording starts after k of its flushes: acknowledgements count those.
    let base = dev.flushes();
    let s = open(dev.clone());
    let (history, acks) = workload(&s, &dev, seed, t.txns, base);
    let c = &s.btree().counters;
    let merges = c.merges.load(std::sync::atomic::Ordering::Relaxed);
    let roots = c.root_splits.load(std::sync::atomic::Ordering::Relaxed)
        + c.root_shrinks.load(std::sync::atomic::Ordering::Relaxed);
    let splits = s
        .btree()
        .counters
        .splits
        .load(std::sync::atomic::Ordering::Relaxed);
    let reclaims = s.journal().stats().reclaims;
    drop(s);
    let log = dev.history();
    let points = log.points(&EnumPlan {
        random_subsets: t.subsets,
        torn: t.torn,
        seed,
    });
    let started = Instant::now();
    let mut skipped_states = 0;
    let mut replaying = 0;
    let mut recovery_states = 0;
    let mut max_height = 0;
    for pt in &points {
        let img: Arc<dyn BlockDevice> = Arc::new(log.image(pt));
        let s = match Store::open(img, &StoreOptions { cache_nodes: 64 }) {
            Ok(s) => s,
            Err(e) => panic!("seed {seed}, crash point {pt}: open failed: {e}"),
        };
        let r = sixfs::btree::check::check(s.btree()).expect("check");
        if s.btree()
            .config()
            .blacklisted_entries
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
        {
            skipped_states += 1;
        }
        assert!(
            r.ok(),
            "seed {seed}, crash point {pt}: structural check:\n{}",
            r.problems.join("\n")
        );
        let n = match s.recovery().replayed {
            Some((_, n)) => n,
            None => 0, // still clean: nothing was committed yet
        };
        let required = required_seq(&acks, pt.epoch);
        assert!(
            n >= required,
            "seed {seed}, crash point {pt}: recovered to seq {n}, but seq {required} was acknowledged durable"
        );
        max_height = max_height.max(r.heights.iter().copied().max().unwrap_or(0));
        let got = contents(&s);
        let want = expected(&history, n);
        if got != want {
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(k) != Some(v))
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, v)| want.get(k) != Some(v))
                .take(5)
                .collect();
            panic!(
                "seed {seed}, crash point {pt}: state is not the prefix up to seq {n}\nmissing/different: {missing:?}\nextra/different: {extra:?}"
            );
        }
        if s.recovery().replayed_keys > 0 {
            replaying += 1;
            if replaying % t.recovery_stride == 0 {
                drop(s);
                recovery_states += crash_recovery(log.image(pt), &history, n, seed, pt);
            }
        }
    }
    println!(
        "seed {seed}: {} transactions, {} epochs, {} crash states and {recovery_states} crash states during recovery checked in {:.1}s ({} splits, {merges} merges, {roots} root changes, {} journal reclaims, {skipped_states} states with blacklisted node entries, trees up to {max_height} levels)",
        history.len(),
        log.epochs(),
        points.len(),
        started.elapsed().as_secs_f64(),
        splits,
        reclaims
    );
    if seed.is_multiple_of(3) {
        assert!(
            max_height >= 3,
            "seed {seed} is meant to reach three levels, got {max_height}"
        );
    }
    // (The three-level workload deletes too little of its key space to merge.)
    assert!(
        splits > 0 && (merges > 0 || seed.is_multiple_of(3)) && reclaims > 0,
        "the workload must split ({splits}) and merge ({merges}) nodes and reclaim journal space ({reclaims})"
    );
    assert!(
        skipped_states > 0,
        "no crash state had node entries ahead of the journal: the blacklist went untested"
    );
    (points.len(), recovery_states)
}

#[test]
fn every_crash_state_recovers_to_a_transaction_prefix() {
    let t = tier();
    let seeds: Vec<u64> = match std::env::var("SIXFS_CRASH_SEED") {
        Ok(s) => vec![s.parse().expect("SIXFS_CRASH_SEED is a number")],
        Err(_) => t.seeds.clone(),
    };
    let (mut total, mut during_recovery) = (0, 0);
    let one_seed = seeds.len() == 1;
    for seed in seeds {
        let (a, b) = enumerate(seed, &t);
        total += a;
        during_recovery += b;
    }
    println!("total crash states checked: {total}, and {during_recovery} during recovery");
    if !one_seed {
        assert!(
            total >= t.min_states,
            "only {total} crash states (tier needs {})",
            t.min_states
        );
        assert!(
            during_recovery >= t.min_recovery_states,
            "only {during_recovery} crash states during recovery (tier needs {})",
            t.min_recovery_states
        );
    }
}
