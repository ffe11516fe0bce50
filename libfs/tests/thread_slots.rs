//! `sync::thread_slot`: slots of exited threads are reused, smallest first, so thread churn
//! does not make live threads share shards.
//!
//! One test in its own binary (so its own process under both `cargo test` and nextest): the
//! slot allocator is process-global, and no other test may take slots meanwhile.
#![allow(clippy::unwrap_used, reason = "test code")]

use sixfs::sync::counters::ShardedCounter;
use sixfs::sync::thread_slot;
use std::sync::Barrier;

fn slot_on_new_thread() -> usize {
    std::thread::spawn(thread_slot).join().unwrap()
}

#[test]
fn exited_threads_slots_are_reused_smallest_first() {
    let main = thread_slot();
    assert_eq!(thread_slot(), main, "a thread keeps its slot");

    // Churn: a hundred threads, one after another. Each one's slot is given back when it
    // exits, so they all get the same one (with slots never reused they would get a hundred
    // different ones, and the later ones would share shards with `main`).
    let churn: Vec<usize> = (0..100).map(|_| slot_on_new_thread()).collect();
    assert!(churn.iter().all(|&s| s == churn[0]), "{churn:?}");
    assert_ne!(churn[0], main);

    // Eight threads alive at once, after the churn: the peak number of live slot holders is 9
    // (with `main`), so every slot in use is below 9, and with 16 shards no two share one.
    const LIVE: usize = 8;
    let start = Barrier::new(LIVE);
    let counter = ShardedCounter::with_shards(16);
    let mut live: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..LIVE)
            .map(|_| {
                s.spawn(|| {
                    let v = thread_slot();
                    counter.add(1);
                    // Hold the slot until every thread has one.
                    start.wait();
                    v
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(counter.sum(), LIVE as i64);
    live.push(main);
    live.sort_unstable();
    assert_eq!(
        live,
        (0..=LIVE).collect::<Vec<_>>(),
        "smallest free slots first"
    );

    // All eight were given back: the next thread gets the smallest free slot again.
    assert_eq!(slot_on_new_thread(), churn[0]);
}
