//! Shared helpers for the btree/journal tests: small filesystems on crash devices.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared by several test crates, each using a part"
)]
#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::collections::BTreeMap;
use std::sync::Arc;

use sixfs::btree::{Btree, TransError};
use sixfs::dev::{BlockDevice, CrashDevice};
use sixfs::format::bkey::{Key, POS_MAX, POS_MIN, Pos};
use sixfs::format::btree_id::BtreeId;
use sixfs::init::{FormatOptions, format_device};
use sixfs::recovery::{Store, StoreOptions};

/// Geometry small enough that a few hundred keys split nodes and the journal wraps.
pub fn small_opts() -> FormatOptions {
    FormatOptions {
        block_size: Some(512),
        btree_node_size: Some(4096),
        bucket_size: Some(64 << 10),
        journal_buckets: Some(8),
        ..FormatOptions::default()
    }
}

/// A formatted crash device.
pub fn new_dev(size: u64, opts: &FormatOptions) -> Arc<CrashDevice> {
    let dev = Arc::new(CrashDevice::new(size, 512));
    format_device(&*dev, opts).expect("mkfs");
    dev.flush().unwrap();
    dev
}

pub fn open(dev: Arc<dyn BlockDevice>) -> Store {
    Store::open(dev, &StoreOptions { cache_nodes: 64 }).expect("open")
}

pub fn pos(k: u64) -> Pos {
    Pos::new(k % 7, k, 0)
}

pub fn val(k: u64, v: u64) -> Vec<u8> {
    let mut b = k.to_le_bytes().to_vec();
    b.extend_from_slice(&v.to_le_bytes());
    b.resize(8 + (v % 24) as usize, (v & 0xff) as u8);
    b
}

/// Every live key of `btree`, via a forward scan.
pub fn dump(bt: &Btree, btree: BtreeId) -> BTreeMap<Pos, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut t = bt.trans();
    t.scan(btree, POS_MIN, POS_MAX, |k| {
        out.insert(k.pos, k.val.to_vec());
        true
    })
    .unwrap();
    out
}

/// Every live key via the iterator API, forward and backward; checks both agree.
pub fn dump_iter(bt: &Btree, btree: BtreeId) -> BTreeMap<Pos, Vec<u8>> {
    let mut t = bt.trans();
    let mut fwd = Vec::new();
    let mut it = t.iter(btree, POS_MIN);
    while let Some(k) = t.next(&mut it).unwrap() {
        fwd.push((k.pos, k.val.to_vec()));
    }
    let mut back = Vec::new();
    let mut it = t.iter(btree, POS_MAX);
    while let Some(k) = t.prev(&mut it).unwrap() {
        back.push((k.pos, k.val.to_vec()));
    }
    back.reverse();
    assert_eq!(fwd, back, "forward and backward iteration disagree");
    fwd.into_iter().collect()
}

pub fn put(bt: &Btree, btree: BtreeId, kvs: &[(Pos, Vec<u8>)]) -> u64 {
    bt.run(|t| {
        for (p, v) in kvs {
            t.update(btree, Key::cookie(*p, v))?;
        }
        Ok::<(), TransError>(())
    })
    .expect("commit")
    .1
}

pub fn check_ok(bt: &Btree) {
    let r = sixfs::btree::check::check(bt).expect("check ran");
    assert!(
        r.ok(),
        "structural check failed:\n{}",
        r.problems.join("\n")
    );
}

/// The newest seq a crash in `epoch` of a recording must keep: the largest seq among the
/// acknowledgements `(flushes of the recording completed when the durability call returned,
/// seq it made durable)` whose flush count is at most `epoch`.
pub fn required_seq(acks: &[(u64, u64)], epoch: usize) -> u64 {
    acks.iter()
        .filter(|(f, _)| *f <= epoch as u64)
        .map(|a| a.1)
        .max()
        .unwrap_or(0)
}
