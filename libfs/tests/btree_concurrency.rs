//! Concurrency: several threads run transactions on overlapping key ranges — read-modify-write
//! increments of shared counters, inserts and deletes of interleaved keys that share leaves,
//! and `delete_range` over adjacent per-thread ranges of another btree — and call the
//! durability call, while splits, merges and compactions happen and a write-back thread
//! writes dirty nodes (as reclaim and memory pressure would). A watchdog fails the test if no
//! transaction commits for too long, and bounds the final checks and the close. Afterwards
//! every counter equals the number of committed increments, every other key holds exactly
//! the value its thread last wrote, the structure checks, and the same holds after a clean
//! reopen.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sixfs::format::bkey::{Key, Pos};
use sixfs::format::btree_id::BtreeId;

const THREADS: u64 = 6;
const COUNTERS: u64 = 24;
const OPS: u64 = 1500;

fn counter_pos(i: u64) -> Pos {
    Pos::new(1, i, 0)
}

fn key_pos(k: u64) -> Pos {
    Pos::new(k / 64, k % 64, 0)
}

#[test]
fn concurrent_transactions_keep_every_committed_operation() {
    // Several rounds: interleavings differ from run to run, and some races need a few tries.
    for round in 0..8 {
        one_round(round);
    }
}

fn one_round(round: u64) {
    let dev = new_dev(64 << 20, &small_opts());
    let s = Arc::new(open(dev.clone()));
    let progress = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let s = s.clone();
        let progress = progress.clone();
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(t + 100 * round);
            let mut incs = vec![0u64; COUNTERS as usize];
            let mut mine: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let mut own: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let bt = s.btree();
            for op in 0..OPS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match rng.gen_range(0..12) {
                    0..=3 => {
                        let c = rng.gen_range(0..COUNTERS);
                        bt.run(|tr| {
                            let cur = tr
                                .get(BtreeId::Inodes, counter_pos(c))?
                                .map(|k| u64::from_le_bytes(k.val[..8].try_into().unwrap()))
                                .unwrap_or(0);
                            tr.update(
                                BtreeId::Inodes,
                                Key::cookie(counter_pos(c), &(cur + 1).to_le_bytes()),
                            )
                        })
                        .expect("increment");
                        incs[c as usize] += 1;
                    }
                    4..=7 => {
                        // Insert a few of this thread's keys (interleaved with other threads').
                        let base = rng.gen_range(0..2000u64);
                        let ks: Vec<u64> = (0..rng.gen_range(1..6))
                            .map(|j| (base + j * 7) * THREADS + t)
                            .collect();
                        let (_, seq) = bt
                            .run(|tr| {
                                for k in &ks {
                                    tr.update(
                                        BtreeId::Extents,
                                        Key::cookie(key_pos(*k), &val(*k, op)),
                                    )?;
                                }
                                Ok(())
                            })
                            .expect("insert");
                        mine.extend(ks.iter().map(|k| (*k, val(*k, op))));
                        if rng.gen_bool(0.05) {
                            s.flush(seq).expect("durability call");
                        }
                    }
                    10 => {
                        // This thread's own range of Dirents: inserts, then a real
                        // delete_range (the ranges of neighbouring threads share leaves).
                        let a = rng.gen_range(0..400u64);
                        let n = rng.gen_range(1..40u64);
                        let ks: Vec<u64> = (a..a + rng.gen_range(1..8u64)).collect();
                        let (deleted, _) = bt
                            .run(|tr| {
                                for k in &ks {
                                    tr.update(
                                        BtreeId::Dirents,
                                        Key::cookie(Pos::new(t, *k, 0), &val(*k, op)),
                                    )?;
                                }
                                tr.delete_range(
                                    BtreeId::Dirents,
                                    Pos::new(t, a + 3, 0),
                                    Pos::new(t, a + 3 + n, 0),
                                )
                            })
                            .expect("delete_range");
                        let before = own.len() + ks.iter().filter(|k| !own.contains_key(k)).count();
                        own.extend(ks.iter().map(|k| (*k, val(*k, op))));
                        own.retain(|k, _| !(a + 3..=a + 3 + n).contains(k));
                        assert_eq!(
                            before - own.len(),
                            deleted,
                            "delete_range deleted a different number of keys than it saw"
                        );
                    }
                    _ => {
                        // Delete a range of this thread's keys.
                        let a = rng.gen_range(0..2000u64) * THREADS;
                        let b = a + rng.gen_range(1..200u64) * THREADS;
                        let gone: Vec<u64> = mine.range(a..=b).map(|(k, _)| *k).collect();
                        bt.run(|tr| {
                            for k in &gone {
                                tr.delete(BtreeId::Extents, key_pos(*k))?;
                            }
                            Ok(())
                        })
                        .expect("delete");
                        for k in gone {
                            mine.remove(&k);
                        }
                    }
                }
                progress.fetch_add(1, Ordering::Relaxed);
            }
            (incs, mine, own)
        }));
    }
    // Write-back alongside: node writes (under read locks) race with commits and splits.
    let writeback = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                s.btree().flush_all_nodes().expect("write-back");
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // Watchdog: fail if nothing commits for 20 s.
    let mut last = (0u64, Instant::now());
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        let p = progress.load(Ordering::Relaxed);
        if p != last.0 {
            last = (p, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(20) {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "watchdog: no transaction committed for 20 s (after {p} operations): deadlock or livelock"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    writeback.join().expect("write-back panicked");
    let mut total = vec![0u64; COUNTERS as usize];
    let mut keys: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut dirents: BTreeMap<Pos, Vec<u8>> = BTreeMap::new();
    for (t, h) in handles.into_iter().enumerate() {
        let (incs, mine, own) = h.join().expect("worker panicked");
        for (t, i) in total.iter_mut().zip(incs) {
            *t += i;
        }
        keys.extend(mine);
        dirents.extend(own.into_iter().map(|(k, v)| (Pos::new(t as u64, k, 0), v)));
    }
    let verify = |s: &sixfs::recovery::Store| {
        let counters = dump(s.btree(), BtreeId::Inodes);
        for c in 0..COUNTERS {
            let got = counters
                .get(&counter_pos(c))
                .map_or(0, |v| u64::from_le_bytes(v[..8].try_into().unwrap()));
            assert_eq!(
                got, total[c as usize],
                "counter {c}: lost or duplicated increments"
            );
        }
        let ext = dump_iter(s.btree(), BtreeId::Extents);
        let got: BTreeSet<Pos> = ext.keys().copied().collect();
        let want: BTreeSet<Pos> = keys.keys().map(|k| key_pos(*k)).collect();
        let lost: Vec<&Pos> = want.difference(&got).take(10).collect();
        let extra: Vec<&Pos> = got.difference(&want).take(10).collect();
        assert!(
            lost.is_empty() && extra.is_empty(),
            "round {round}: extents differ: lost {lost:?}, extra {extra:?}"
        );
        for (k, v) in &keys {
            assert_eq!(
                ext.get(&key_pos(*k)),
                Some(v),
                "round {round}: key {k} has another value"
            );
        }
        assert_eq!(
            dump_iter(s.btree(), BtreeId::Dirents),
            dirents,
            "round {round}: the delete_range btree differs"
        );
        check_ok(s.btree());
    };
    // The final checks and the close are bounded too (a deadlock there must not hang CI).
    let bounded = |what: &str, f: &(dyn Fn() + Sync)| {
        std::thread::scope(|sc| {
            let h = sc.spawn(f);
            let t0 = Instant::now();
            while !h.is_finished() {
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "watchdog: {what} did not finish in 60 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            h.join().expect("check panicked");
        });
    };
    bounded("verify", &|| verify(&s));
    let c = &s.btree().counters;
    println!(
        "{} ops: {} splits, {} merges, {} compactions, {} root splits; restarts: {:?}",
        progress.load(Ordering::Relaxed),
        c.splits.load(Ordering::Relaxed),
        c.merges.load(Ordering::Relaxed),
        c.compactions.load(Ordering::Relaxed),
        c.root_splits.load(Ordering::Relaxed),
        c.snapshot()
            .into_iter()
            .filter(|(n, v)| n.starts_with("restart") && *v > 0)
            .collect::<Vec<_>>()
    );
    assert!(
        c.splits.load(Ordering::Relaxed) > 0,
        "no splits: the test did not exercise structural changes"
    );
    assert!(
        c.merges.load(Ordering::Relaxed) > 0,
        "no merges: the test did not exercise structural changes"
    );
    bounded("close", &|| s.close().unwrap());
    let s2 = open(dev);
    bounded("verify after reopen", &|| verify(&s2));
}
