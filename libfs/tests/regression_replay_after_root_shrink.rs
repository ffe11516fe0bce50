//! Regression: after the root shrank (a level disappeared) and the tree grew again, journal
//! replay applied the old level-1 node's keys to the new level-1 root — a stale pointer, two
//! children covering the same range, and a commit that self-deadlocked on a leaf it already
//! held. Found by the model test once nodes merged eagerly. Fixed by root-change barriers in
//! replay (each root change starts a new jset; older keys for a created or removed level are
//! dropped).
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use common::*;
use sixfs::format::bkey::Pos;
use sixfs::format::btree_id::BtreeId;

#[test]
fn replay_after_the_root_shrank_and_grew_again_is_consistent() {
    let dev = new_dev(32 << 20, &small_opts());
    let mut want = BTreeMap::new();
    {
        let s = open(dev.clone());
        let bt = s.btree();
        // A key in another btree, never written back: its leaf pins an early journal seq, so
        // the replay range reaches back before everything below.
        put(
            bt,
            BtreeId::Extents,
            &[(Pos::new(1, 1, 0), b"pin".to_vec())],
        );
        // Grow to two levels: level-1 keys enter the journal as leaves split.
        for b in 0..20u64 {
            let kvs: Vec<(Pos, Vec<u8>)> =
                (0..40).map(|i| (Pos::new(b, i, 0), val(i, b))).collect();
            put(bt, BtreeId::Dirents, &kvs);
        }
        // Shrink back to one level.
        for b in 0..20u64 {
            bt.run(|t| {
                t.delete_range(BtreeId::Dirents, Pos::new(b, 0, 0), Pos::new(b, 39, 0))?;
                Ok(())
            })
            .unwrap();
        }
        assert!(
            bt.counters.root_shrinks.load(Relaxed) > 0,
            "the root did not shrink"
        );
        // Grow again: a new level-1 root, while the old level-1 keys are still in the journal.
        for b in 0..8u64 {
            let kvs: Vec<(Pos, Vec<u8>)> = (0..40)
                .map(|i| (Pos::new(b, 100 + i, 0), val(i, b)))
                .collect();
            for (p, v) in &kvs {
                want.insert(*p, v.clone());
            }
            put(bt, BtreeId::Dirents, &kvs);
        }
        assert!(
            bt.counters.root_splits.load(Relaxed) >= 2,
            "the tree did not grow twice"
        );
        s.flush_all().unwrap();
        // Crash: no clean close, so everything is replayed from the journal.
    }
    let s = open(dev);
    let (l, n) = s.recovery().replayed.expect("a replay");
    assert!(
        l <= 2,
        "the replay must reach back before the shrink (replayed {l}..={n})"
    );
    check_ok(s.btree());
    assert_eq!(dump_iter(s.btree(), BtreeId::Dirents), want);
    assert_eq!(dump(s.btree(), BtreeId::Extents).len(), 1);
}
