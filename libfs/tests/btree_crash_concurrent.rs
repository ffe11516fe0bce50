//! Crash enumeration under concurrency: four threads commit transactions on their own key
//! ranges and call the durability call (`Store::flush(seq)`) for their own commits, a fifth
//! writes dirty nodes back all the time, and a fault site widens the window between a
//! commit's journal reservation and the moment its keys are pinned in their leaves. Every crash state must (a) open, (b) pass the structural
//! check, (c) keep every transaction whose durability call returned before the crash, and (d)
//! hold exactly the transactions with journal seq ≤ the seq it recovered to — a transaction
//! whose jset closed late must not be lost while a later one survives.
#![allow(clippy::unwrap_used, reason = "test code")]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sixfs::dev::{BlockDevice, EnumPlan};
use sixfs::format::bkey::{Key, Pos};
use sixfs::format::btree_id::BtreeId;
use sixfs::recovery::{Store, StoreOptions};

const THREADS: u64 = 4;
const TXNS: usize = 250;

type Model = BTreeMap<Pos, Vec<u8>>;
/// (seq, thread, index in thread, writes).
type Txn = (u64, u64, usize, Vec<(Pos, Option<Vec<u8>>)>);

#[test]
fn concurrent_commits_and_flushes_recover_to_a_seq_prefix() {
    // Widen the reservation-to-pin window: a delay on a third of the commits.
    sixfs::util::fault::configure("btree:commit_reserved random=3 seed=7 delay=200us").unwrap();
    let opts = sixfs::init::FormatOptions {
        bucket_size: Some(16 << 10),
        journal_buckets: Some(16),
        ..small_opts()
    };
    let dev = new_dev(8 << 20, &opts);
    dev.start_recording();
    let base = dev.flushes();
    let s = Arc::new(open(dev.clone()));
    let history: Arc<Mutex<Vec<Txn>>> = Arc::default();
    let acks: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (s, dev, history, acks) = (s.clone(), dev.clone(), history.clone(), acks.clone());
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t);
                let mut mine: Model = BTreeMap::new();
                for i in 0..TXNS {
                    let mut ops = Vec::new();
                    for _ in 0..rng.gen_range(1..5) {
                        let pos = Pos::new(t, rng.gen_range(0..150), 0);
                        if rng.gen_bool(0.3) && mine.contains_key(&pos) {
                            ops.push((pos, None));
                        } else {
                            ops.push((pos, Some(val(pos.offset, rng.r#gen()))));
                        }
                    }
                    let (_, seq) = s
                        .btree()
                        .run(|tr| {
                            for (p, v) in &ops {
                                match v {
                                    Some(v) => tr.update(BtreeId::Inodes, Key::cookie(*p, v))?,
                                    None => tr.delete(BtreeId::Inodes, *p)?,
                                }
                            }
                            Ok(())
                        })
                        .expect("commit");
                    for (p, v) in &ops {
                        match v {
                            Some(v) => mine.insert(*p, v.clone()),
                            None => mine.remove(p),
                        };
                    }
                    history.lock().unwrap().push((seq, t, i, ops));
                    if rng.gen_bool(0.15) {
                        s.flush(seq).expect("flush");
                        acks.lock().unwrap().push((dev.flushes() - base, seq));
                    }
                }
            })
        })
        .collect();
    // Write-back runs alongside (as memory pressure would), so there are moments when no
    // dirty node pins an older seq: then only the reservation itself keeps its seq alive.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writeback = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.btree().flush_all_nodes().expect("write-back");
                rounds += 1;
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
            rounds
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writeback.join().unwrap();
    assert!(rounds > 10, "only {rounds} write-back rounds ran");
    sixfs::util::fault::reset();
    drop(s);
    let mut history = Arc::try_unwrap(history).unwrap().into_inner().unwrap();
    history.sort_by_key(|h| (h.0, h.1, h.2));
    let acks = Arc::try_unwrap(acks).unwrap().into_inner().unwrap();
    assert!(acks.len() > 50, "only {} durability calls", acks.len());
    let log = dev.history();
    let points = log.points(&EnumPlan {
        random_subsets: 1,
        torn: 1,
        seed: 3,
    });
    for pt in &points {
        let img: Arc<dyn BlockDevice> = Arc::new(log.image(pt));
        let s = Store::open(img, &StoreOptions { cache_nodes: 64 })
            .unwrap_or_else(|e| panic!("crash point {pt}: open failed: {e}"));
        let r = sixfs::btree::check::check(s.btree()).unwrap();
        assert!(r.ok(), "crash point {pt}: {}", r.problems.join("\n"));
        let n = s.recovery().replayed.map_or(0, |(_, n)| n);
        let required = required_seq(&acks, pt.epoch);
        assert!(
            n >= required,
            "crash point {pt}: recovered to seq {n}, but seq {required} was acknowledged durable"
        );
        let mut want = Model::new();
        for (_, _, _, ops) in history.iter().filter(|h| h.0 <= n) {
            for (p, v) in ops {
                match v {
                    Some(v) => want.insert(*p, v.clone()),
                    None => want.remove(p),
                };
            }
        }
        let got = dump(s.btree(), BtreeId::Inodes);
        if got != want {
            let lost: Vec<_> = history
                .iter()
                .filter(|h| h.0 <= n)
                .filter(|h| {
                    h.3.iter()
                        .any(|(p, v)| v.as_ref().is_some_and(|v| got.get(p) != Some(v)))
                })
                .map(|h| (h.0, h.1, h.2))
                .take(5)
                .collect();
            panic!(
                "crash point {pt}: state is not the transactions through seq {n}; e.g. (seq, thread, index) lost or overwritten: {lost:?}"
            );
        }
    }
    println!(
        "{} transactions from {THREADS} threads, {} durability calls, {} crash states checked",
        history.len(),
        acks.len(),
        points.len()
    );
}
