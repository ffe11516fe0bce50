//! Regression: recovery failed to open a store whose tree had three levels when, before the
//! crash, an interior node below the root had been replaced (split) and its slot reused,
//! while the root on disk still pointed at it: the walk that marks reachable nodes read the
//! on-disk root without the journal's pointer updates, found another node in the slot and
//! refused the open ("stale pointer"), though the journal held everything needed.
#![allow(clippy::unwrap_used, reason = "test code")]

mod common;

use common::*;
use sixfs::dev::Survivors;
use sixfs::format::bkey::Pos;
use sixfs::format::btree_id::BtreeId;

#[test]
fn a_replaced_interior_node_whose_slot_was_reused_does_not_stop_recovery() {
    let opts = sixfs::init::FormatOptions {
        journal_buckets: Some(64),
        ..small_opts()
    };
    let dev = new_dev(64 << 20, &opts);
    let s = open(dev.clone());
    let bt = s.btree();
    let mut model = std::collections::BTreeMap::new();
    for b in 0..60u64 {
        let kvs: Vec<(Pos, Vec<u8>)> = (0..100)
            .map(|i| (Pos::new(b, i, 0), vec![7u8; 24]))
            .collect();
        put(bt, BtreeId::Xattrs, &kvs);
        model.extend(kvs);
    }
    let height = sixfs::btree::check::check(bt).unwrap().heights[BtreeId::Xattrs as usize];
    assert!(height >= 3, "needs three levels, got {height}");
    // Everything on disk, root included.
    bt.flush_all_nodes().unwrap();
    s.flush_all().unwrap();
    let splits_before = bt
        .counters
        .splits
        .load(std::sync::atomic::Ordering::Relaxed);
    // Grow one corner of the tree so the interior node above it splits (the root takes the
    // new pointers in memory only), flushing the journal now and then so freed node slots
    // become reusable — and are reused by the splits that follow.
    for round in 0..40u64 {
        let kvs: Vec<(Pos, Vec<u8>)> = (0..50)
            .map(|i| (Pos::new(5, 1000 + round * 50 + i, 0), vec![9u8; 24]))
            .collect();
        put(bt, BtreeId::Xattrs, &kvs);
        model.extend(kvs);
        s.flush_all().unwrap();
    }
    let splits = bt
        .counters
        .splits
        .load(std::sync::atomic::Ordering::Relaxed)
        - splits_before;
    assert!(splits > 40, "only {splits} splits");
    // Power cut: the journal is durable; the root on disk is the old one.
    let img = std::sync::Arc::new(dev.crash_now(&Survivors::None, None));
    drop(s);
    let s = open(img);
    check_ok(s.btree());
    assert_eq!(dump(s.btree(), BtreeId::Xattrs), model);
}
