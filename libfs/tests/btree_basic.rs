//! Basic store behaviour: inserts, lookups, overwrites, deletes, splits, clean and crash
//! reopens.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

mod common;

use common::*;
use sixfs::dev::Survivors;
use sixfs::format::bkey::{Key, Pos};
use sixfs::format::btree_id::BtreeId;

#[test]
fn insert_lookup_and_clean_reopen() {
    let dev = new_dev(16 << 20, &small_opts());
    let s = open(dev.clone());
    assert!(s.recovery().clean);
    let bt = s.btree();
    let mut want = std::collections::BTreeMap::new();
    for batch in 0..40u64 {
        let kvs: Vec<(Pos, Vec<u8>)> = (0..25)
            .map(|i| {
                let k = batch * 1000 + i * 37 % 1000;
                (pos(k), val(k, batch))
            })
            .collect();
        for (p, v) in &kvs {
            want.insert(*p, v.clone());
        }
        put(bt, BtreeId::Extents, &kvs);
    }
    assert!(
        bt.counters
            .splits
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "no splits happened"
    );
    assert_eq!(dump(bt, BtreeId::Extents), want);
    assert_eq!(dump_iter(bt, BtreeId::Extents), want);
    for (p, v) in want.iter().take(50) {
        let mut t = bt.trans();
        assert_eq!(
            t.get(BtreeId::Extents, *p).unwrap().map(|k| k.val.to_vec()),
            Some(v.clone())
        );
    }
    check_ok(bt);
    s.close().unwrap();
    drop(s);
    let s = open(dev.clone());
    assert!(s.recovery().clean, "a clean close must not need replay");
    assert_eq!(dump(s.btree(), BtreeId::Extents), want);
    check_ok(s.btree());
    // Deletes and overwrites.
    let bt = s.btree();
    let keys: Vec<Pos> = want.keys().copied().collect();
    bt.run(|t| {
        for p in keys.iter().step_by(2) {
            t.delete(BtreeId::Extents, *p)?;
        }
        Ok(())
    })
    .unwrap();
    for p in keys.iter().step_by(2) {
        want.remove(p);
    }
    assert_eq!(dump_iter(bt, BtreeId::Extents), want);
    check_ok(bt);
}

#[test]
fn crash_reopen_keeps_flushed_transactions() {
    let dev = new_dev(16 << 20, &small_opts());
    let s = open(dev.clone());
    let bt = s.btree();
    let mut want = std::collections::BTreeMap::new();
    for i in 0..300u64 {
        let kv = vec![(pos(i), val(i, 1))];
        want.insert(pos(i), val(i, 1));
        let seq = put(bt, BtreeId::Inodes, &kv);
        if i % 50 == 49 {
            s.flush(seq).unwrap();
        }
    }
    let flushed = want.clone();
    // Unflushed tail.
    for i in 300..320u64 {
        put(bt, BtreeId::Inodes, &[(pos(i), val(i, 2))]);
    }
    let img = dev.crash_now(&Survivors::None, None);
    drop(s);
    let s = open(std::sync::Arc::new(img));
    assert!(!s.recovery().clean);
    let got = dump(s.btree(), BtreeId::Inodes);
    for (p, v) in &flushed {
        assert_eq!(got.get(p), Some(v), "flushed key {p} lost");
    }
    check_ok(s.btree());
    // And it keeps working after recovery.
    put(
        s.btree(),
        BtreeId::Inodes,
        &[(Pos::new(99, 99, 0), b"after".to_vec())],
    );
    s.close().unwrap();
}

#[test]
fn transactions_see_their_own_updates() {
    let dev = new_dev(16 << 20, &small_opts());
    let s = open(dev);
    let bt = s.btree();
    put(
        bt,
        BtreeId::Dirents,
        &[
            (Pos::new(1, 1, 0), b"a".to_vec()),
            (Pos::new(1, 3, 0), b"c".to_vec()),
        ],
    );
    bt.run(|t| {
        t.update(BtreeId::Dirents, Key::cookie(Pos::new(1, 2, 0), b"b"))?;
        t.delete(BtreeId::Dirents, Pos::new(1, 3, 0))?;
        assert_eq!(
            t.get(BtreeId::Dirents, Pos::new(1, 2, 0))?
                .unwrap()
                .val
                .as_slice(),
            b"b"
        );
        assert!(t.get(BtreeId::Dirents, Pos::new(1, 3, 0))?.is_none());
        let mut it = t.iter(BtreeId::Dirents, Pos::new(0, 0, 0));
        let mut seen = Vec::new();
        while let Some(k) = t.next(&mut it)? {
            seen.push(k.pos.offset);
        }
        assert_eq!(seen, vec![1, 2]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn the_tree_grows_and_shrinks_at_the_root() {
    use std::sync::atomic::Ordering::Relaxed;
    let dev = new_dev(32 << 20, &small_opts());
    let s = open(dev.clone());
    let bt = s.btree();
    let height = |bt: &sixfs::btree::Btree| {
        sixfs::btree::check::check(bt).unwrap().heights[BtreeId::Xattrs as usize]
    };
    for b in 0..60u64 {
        let kvs: Vec<(Pos, Vec<u8>)> = (0..100)
            .map(|i| (Pos::new(b, i, 0), vec![7u8; 24]))
            .collect();
        put(bt, BtreeId::Xattrs, &kvs);
    }
    let grown = height(bt);
    assert!(
        grown >= 3,
        "6000 keys in 4 KiB nodes should need three levels, got {grown}"
    );
    assert!(bt.counters.root_splits.load(Relaxed) >= 2);
    // Delete everything, then keep the tree busy so nodes get rewritten (and merged).
    for b in 0..60u64 {
        bt.run(|t| {
            t.delete_range(BtreeId::Xattrs, Pos::new(b, 0, 0), Pos::new(b, 99, 0))?;
            Ok(())
        })
        .unwrap();
    }
    for round in 0..40u64 {
        for b in (0..60u64).step_by(3) {
            put(
                bt,
                BtreeId::Xattrs,
                &[(Pos::new(b, round, 1), vec![1u8; 8])],
            );
            bt.run(|t| t.delete(BtreeId::Xattrs, Pos::new(b, round, 1)))
                .unwrap();
        }
    }
    check_ok(bt);
    let shrunk = height(bt);
    println!(
        "height {grown} -> {shrunk}; {} merges, {} root shrinks",
        bt.counters.merges.load(Relaxed),
        bt.counters.root_shrinks.load(Relaxed)
    );
    assert!(bt.counters.merges.load(Relaxed) > 0, "no merges");
    assert!(
        bt.counters.root_shrinks.load(Relaxed) > 0,
        "the root never shrank"
    );
    assert!(shrunk < grown, "height stayed {grown}");
    assert!(dump(bt, BtreeId::Xattrs).is_empty());
    s.close().unwrap();
    let s = open(dev);
    assert!(dump(s.btree(), BtreeId::Xattrs).is_empty());
    check_ok(s.btree());
}

#[test]
fn every_jset_carries_the_node_accounting() {
    let dev = new_dev(16 << 20, &small_opts());
    let total = {
        let s = open(dev.clone());
        for b in 0..10u64 {
            let kvs: Vec<(Pos, Vec<u8>)> =
                (0..60).map(|i| (Pos::new(b, i, 0), val(i, b))).collect();
            put(s.btree(), BtreeId::Inodes, &kvs);
        }
        s.flush_all().unwrap();
        s.node_usage().1
        // Dropped without closing: the next open recovers from the journal.
    };
    let s = open(dev);
    let usage: std::collections::BTreeMap<String, u64> =
        s.recovery().usage.iter().cloned().collect();
    assert_eq!(usage.get("btree_node_slots"), Some(&total), "{usage:?}");
    let nodes = usage.get("btree_nodes").copied().unwrap_or(0);
    // Five btree roots, and the inodes btree split into several leaves and a root above them.
    assert!(nodes > 6, "{usage:?}");
}
