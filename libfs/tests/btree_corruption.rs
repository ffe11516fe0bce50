//! Corrupt nodes and journal entries are reported — with btree, level, key range and device
//! offset, and that fsck is needed — and never panic or loop: a damaged node checksum, keys
//! out of order or outside the node's range under a valid checksum, a pointer cycle (a child
//! pointer back to its parent), a gap between children, an absurd root level, a damaged journal entry in the range
//! recovery must replay, a forged journal entry claiming a huge range, and a superblock
//! marked clean without its clean section.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

mod common;

use std::sync::Arc;

use common::*;
use sixfs::btree::BtreeError;
use sixfs::dev::{BlockDevice, CrashDevice};
use sixfs::format::bkey::{Key, POS_MAX, POS_MIN, Pos, decode_key};
use sixfs::format::btree_id::BtreeId;
use sixfs::format::btree_node::{decode_entry, encode_entry};
use sixfs::format::btree_ptr::BtreePtr;
use sixfs::recovery::open::{OpenError, fs_magic, journal_geometry};
use sixfs::recovery::{Store, StoreOptions};

/// A cleanly closed store whose inodes btree has a level-1 root over several leaves.
/// Returns the device and the root pointer.
fn two_level_store() -> (Arc<CrashDevice>, BtreePtr) {
    let dev = new_dev(16 << 20, &small_opts());
    let s = open(dev.clone());
    for b in 0..12u64 {
        let kvs: Vec<(Pos, Vec<u8>)> = (0..50)
            .map(|i| (Pos::new(0, b * 50 + i, 0), val(i, b)))
            .collect();
        put(s.btree(), BtreeId::Inodes, &kvs);
    }
    let (_, level, root) = s.btree().root_ptrs()[BtreeId::Inodes as usize];
    assert_eq!(level, 1, "the test needs a two-level tree");
    s.close().unwrap();
    (dev, root)
}

struct Geo {
    magic: u64,
    csum: sixfs::format::csum::ChecksumType,
    block: usize,
    node: usize,
}

fn geo(dev: &dyn BlockDevice) -> Geo {
    let sb = sixfs::sb::read_superblock(dev).unwrap().sb;
    Geo {
        magic: fs_magic(&sb),
        csum: sb.options.metadata_csum,
        block: sb.block_size as usize,
        node: sb.btree_node_size as usize,
    }
}

/// The live key records of the node at `sector` (all its entries merged, newest version of
/// each position, whiteouts dropped), its first entry's header, and the bytes it uses.
fn live_records(
    dev: &dyn BlockDevice,
    g: &Geo,
    sector: u64,
) -> (sixfs::format::btree_node::EntryInfo, Vec<Vec<u8>>, usize) {
    let mut buf = vec![0u8; g.node];
    dev.read_at(&mut buf, sector * 512).unwrap();
    let mut live = std::collections::BTreeMap::new();
    let mut off = 0;
    let mut first = None;
    while off < g.node {
        let seq = first.map(|i: sixfs::format::btree_node::EntryInfo| i.node_seq);
        let Ok(e) = decode_entry(
            &buf[off..],
            g.magic,
            seq,
            (off / 512) as u32,
            g.csum,
            g.block,
        ) else {
            break;
        };
        first.get_or_insert(e.info);
        let mut at = 0;
        while at < e.keys.len() {
            let (k, len) = decode_key(&e.keys[at..]).unwrap();
            if k.is_deleted() {
                live.remove(&k.pos);
            } else {
                live.insert(k.pos, e.keys[at..at + len].to_vec());
            }
            at += len;
        }
        off += e.disk_bytes;
    }
    (first.unwrap(), live.into_values().collect(), off)
}

/// Rewrites the node at `sector` as one entry holding `recs` (valid checksum), followed by
/// empty entries up to `min_bytes` (so the parent's written size still holds) and zeros.
fn rewrite_node(
    dev: &dyn BlockDevice,
    g: &Geo,
    sector: u64,
    info: &sixfs::format::btree_node::EntryInfo,
    recs: &[Vec<u8>],
    min_bytes: usize,
) {
    let keys: Vec<u8> = recs.concat();
    let mut info = *info;
    info.nkeys = recs.len() as u32;
    let mut out = Vec::new();
    encode_entry(&mut out, &info, &keys, g.magic, g.csum, g.block);
    while out.len() < min_bytes {
        let mut e = info;
        e.nkeys = 0;
        e.sector_offset = (out.len() / 512) as u32;
        encode_entry(&mut out, &e, &[], g.magic, g.csum, g.block);
    }
    out.resize(g.node, 0);
    dev.write_at(&out, sector * 512).unwrap();
}

/// A live leaf of the two-level tree (the second child of the root).
fn a_leaf(dev: &dyn BlockDevice, g: &Geo, root: &BtreePtr) -> BtreePtr {
    let (_, recs, _) = live_records(dev, g, root.sector);
    let (k, _) = decode_key(&recs[1]).unwrap();
    BtreePtr::decode(k.val).unwrap()
}

fn scan_all(s: &Store) -> Result<usize, BtreeError> {
    let mut n = 0;
    let mut t = s.btree().trans();
    t.scan(BtreeId::Inodes, POS_MIN, POS_MAX, |_| {
        n += 1;
        true
    })
    .map_err(|e| match e {
        sixfs::btree::TransError::Error(e) => e,
        sixfs::btree::TransError::Restart(r) => panic!("restart {r:?}"),
    })?;
    Ok(n)
}

fn assert_corrupt(e: &BtreeError, level: u8, offset: u64, what: &str) {
    let msg = e.to_string();
    match e {
        BtreeError::Corrupt {
            btree,
            level: l,
            offset: o,
            ..
        } => {
            assert_eq!(*btree, BtreeId::Inodes, "{msg}");
            assert_eq!(*l, level, "{msg}");
            assert_eq!(*o / (4096), offset / 4096, "{msg}");
        }
        other => panic!("expected a corruption error, got {other}"),
    }
    assert!(msg.contains("needs fsck"), "{msg}");
    assert!(msg.contains(what), "message {msg:?} lacks {what:?}");
}

#[test]
fn a_damaged_leaf_is_reported_on_access_and_by_the_check() {
    let (dev, root) = two_level_store();
    let g = geo(&*dev);
    let leaf = a_leaf(&*dev, &g, &root);
    // Flip one byte inside the leaf's first entry.
    let mut b = [0u8; 1];
    let at = leaf.sector * 512 + 200;
    dev.read_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    dev.write_at(&b, at).unwrap();
    let s = Store::open(dev.clone(), &StoreOptions::default())
        .expect("a damaged leaf does not stop a clean open");
    let e = scan_all(&s).unwrap_err();
    assert_corrupt(&e, 0, leaf.sector * 512, "checksum mismatch");
    let r = sixfs::btree::check::check(s.btree()).unwrap();
    assert!(!r.ok());
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains(&format!("sector {}", leaf.sector))),
        "{:?}",
        r.problems
    );
}

#[test]
fn a_damaged_root_refuses_the_open() {
    let (dev, root) = two_level_store();
    let mut b = [0u8; 1];
    let at = root.sector * 512 + 150;
    dev.read_at(&mut b, at).unwrap();
    b[0] ^= 1;
    dev.write_at(&b, at).unwrap();
    match Store::open(dev, &StoreOptions::default()) {
        Err(OpenError::Btree(e)) => assert_corrupt(&e, 1, root.sector * 512, "first entry"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened a store with a damaged root"),
    }
}

#[test]
fn keys_out_of_order_under_a_valid_checksum_are_rejected() {
    let (dev, root) = two_level_store();
    let g = geo(&*dev);
    let leaf = a_leaf(&*dev, &g, &root);
    let (info, mut lrecs, used) = live_records(&*dev, &g, leaf.sector);
    assert!(lrecs.len() >= 2);
    lrecs.swap(0, 1);
    rewrite_node(&*dev, &g, leaf.sector, &info, &lrecs, used);
    let s = Store::open(dev.clone(), &StoreOptions::default()).unwrap();
    let e = scan_all(&s).unwrap_err();
    assert_corrupt(&e, 0, leaf.sector * 512, "key order");
}

#[test]
fn a_pointer_cycle_is_reported_not_followed() {
    let (dev, root) = two_level_store();
    let g = geo(&*dev);
    let (info, mut recs, used) = live_records(&*dev, &g, root.sector);
    // Point the first child at the root itself (with the child's range, a valid checksum).
    let (k, _) = decode_key(&recs[0]).unwrap();
    let child = BtreePtr::decode(k.val).unwrap();
    let cyc = BtreePtr {
        sector: root.sector,
        node_seq: root.node_seq,
        sectors_written: 1,
        generation: 0,
        min_pos: child.min_pos,
    };
    let mut rec = Vec::new();
    Key::btree_ptr(k.pos, &cyc).encode_into(&mut rec);
    recs[0] = rec;
    rewrite_node(&*dev, &g, root.sector, &info, &recs, used);
    let s = Store::open(dev.clone(), &StoreOptions::default()).unwrap();
    let e = scan_all(&s).unwrap_err();
    // The root is cached, so the bad pointer is caught at the parent: the node found at that
    // address is not the one the pointer names. (Uncached, the level check catches it.)
    assert_corrupt(&e, 1, root.sector * 512, "is not the one the pointer names");
}

#[test]
fn a_damaged_journal_entry_in_the_replay_range_refuses_the_open() {
    let dev = new_dev(16 << 20, &small_opts());
    {
        let s = open(dev.clone());
        for i in 0..40u64 {
            let seq = put(s.btree(), BtreeId::Inodes, &[(pos(i), val(i, 1))]);
            s.flush(seq).unwrap();
        }
        // Dropped without a clean close: recovery must replay the journal.
    }
    let sb = sixfs::sb::read_superblock(&*dev).unwrap().sb;
    let geo = journal_geometry(&sb);
    let scan = sixfs::journal::scan_journal(&*dev, &geo).unwrap();
    let newest = scan.jsets.values().rfind(|j| j.flush).unwrap();
    assert!(
        newest.last_seq < newest.seq,
        "the replay range must hold more than one entry"
    );
    let victim = scan.jsets.get(&newest.last_seq).unwrap();
    let at = geo.buckets[victim.bucket] + victim.offset + 60;
    let mut b = [0u8; 1];
    dev.read_at(&mut b, at).unwrap();
    b[0] ^= 0x80;
    dev.write_at(&b, at).unwrap();
    let msg = match Store::open(dev, &StoreOptions::default()) {
        Ok(_) => panic!("opened with a damaged journal entry in the replay range"),
        Err(e) => e.to_string(),
    };
    assert!(
        msg.contains(&format!("journal entry {} is missing", victim.seq)),
        "{msg}"
    );
    assert!(msg.contains("needs fsck"), "{msg}");
}

#[test]
fn a_key_outside_the_node_range_under_a_valid_checksum_is_rejected() {
    let (dev, root) = two_level_store();
    let g = geo(&*dev);
    let leaf = a_leaf(&*dev, &g, &root);
    let (info, mut lrecs, used) = live_records(&*dev, &g, leaf.sector);
    // Append a key just past the leaf's last position: sorted, but outside its range.
    let beyond = info.max_pos.successor().unwrap();
    let mut rec = Vec::new();
    Key::cookie(beyond, b"stray").encode_into(&mut rec);
    lrecs.push(rec);
    rewrite_node(&*dev, &g, leaf.sector, &info, &lrecs, used);
    let s = Store::open(dev.clone(), &StoreOptions::default()).unwrap();
    let e = scan_all(&s).unwrap_err();
    assert_corrupt(&e, 0, leaf.sector * 512, "outside");
}

#[test]
fn a_gap_between_children_is_reported_not_looped_on() {
    let (dev, root) = two_level_store();
    let g = geo(&*dev);
    let (info, mut recs, used) = live_records(&*dev, &g, root.sector);
    // Drop the root's second child pointer: every pointer left is valid, but nothing covers
    // the second child's range any more.
    let (k, _) = decode_key(&recs[1]).unwrap();
    let gone = BtreePtr::decode(k.val).unwrap();
    recs.remove(1);
    rewrite_node(&*dev, &g, root.sector, &info, &recs, used);
    let in_gap = gone.min_pos;
    let s = Arc::new(Store::open(dev.clone(), &StoreOptions::default()).unwrap());
    // A commit, a lookup and a backwards step into the gap each fail (bounded in time: before
    // the check a commit re-took the leaf it held, and a backwards step went round forever).
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let s = s.clone();
        std::thread::spawn(move || {
            let commit = s
                .btree()
                .run(|tr| tr.update(BtreeId::Inodes, Key::cookie(in_gap, b"x")))
                .map(|_| ());
            let mut t = s.btree().trans();
            let lookup = t.get(BtreeId::Inodes, in_gap).map(|_| ());
            tx.send((commit, lookup)).unwrap();
        });
    }
    let (commit, lookup) = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a commit or lookup into a gap between children hung");
    assert_corrupt(
        &commit.unwrap_err(),
        1,
        root.sector * 512,
        "no child covers",
    );
    match lookup {
        Err(sixfs::btree::TransError::Error(e)) => {
            assert_corrupt(&e, 1, root.sector * 512, "no child covers");
        }
        other => panic!("a lookup into the gap gave {other:?}"),
    }
    // The structural check reports it too.
    let r = sixfs::btree::check::check(s.btree()).unwrap();
    assert!(!r.problems.is_empty(), "the check missed the gap");
}

/// Opens a copy of a cleanly closed store whose clean section names the inodes root at
/// `level` (the root node itself is left alone).
fn open_with_root_level(level: u8) -> Result<Store, OpenError> {
    let (dev, root) = two_level_store();
    let mut sb = sixfs::sb::read_superblock(&*dev).unwrap().sb;
    let mut roots: Vec<(BtreeId, u8, BtreePtr)> =
        sixfs::recovery::open::clean_roots(sb.clean.as_ref().unwrap())
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, (l, p))| (BtreeId::ALL[i], *l, *p))
            .collect();
    roots[BtreeId::Inodes as usize] = (BtreeId::Inodes, level, root);
    sb.clean.as_mut().unwrap().entries = sixfs::recovery::open::encode_roots(&roots);
    sixfs::sb::write_superblock(&*dev, &mut sb).unwrap();
    Store::open(dev, &StoreOptions::default())
}

#[test]
fn an_absurd_root_level_refuses_the_open() {
    for level in [0u8, 2, 7, 200] {
        match open_with_root_level(level) {
            // The node does not match the level its pointer gives...
            Err(OpenError::Btree(e)) => {
                let msg = e.to_string();
                assert!(msg.contains("level"), "level {level}: {msg}");
                assert!(msg.contains("needs fsck"), "level {level}: {msg}");
            }
            // ... or a level beyond any tree's does not even decode as a root entry.
            Err(e @ OpenError::Unrecoverable { .. }) => {
                assert!(level >= 8, "level {level}: {e}");
                assert!(e.to_string().contains("clean section"), "{e}");
            }
            Err(other) => panic!("level {level}: unexpected error {other}"),
            Ok(_) => panic!("opened with the root recorded at level {level} (it is at 1)"),
        }
    }
}

/// Writes a valid flush jset into the first journal bucket of a store that was not closed.
fn store_with_forged_jset(seq: u64, last_seq: u64) -> Arc<CrashDevice> {
    let dev = new_dev(16 << 20, &small_opts());
    {
        let s = open(dev.clone());
        let seq = put(s.btree(), BtreeId::Inodes, &[(pos(1), val(1, 1))]);
        s.flush(seq).unwrap();
    }
    let sb = sixfs::sb::read_superblock(&*dev).unwrap().sb;
    let geo = journal_geometry(&sb);
    let mut buf = sixfs::format::jset::new_jset_buf(4096);
    sixfs::format::jset::seal_jset(
        &mut buf,
        seq,
        last_seq,
        0,
        fs_magic(&sb),
        geo.csum,
        geo.block_size,
    );
    // The last bucket: not where the store wrote (it starts at the first).
    let at = *geo.buckets.last().unwrap();
    dev.write_at(&buf, at).unwrap();
    dev
}

#[test]
fn a_forged_journal_entry_with_a_huge_range_is_refused_at_once() {
    let dev = store_with_forged_jset(1 << 60, 1);
    let t0 = std::time::Instant::now();
    let msg = match Store::open(dev, &StoreOptions::default()) {
        Ok(_) => panic!("opened from a journal entry whose range is not there"),
        Err(e) => e.to_string(),
    };
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert!(msg.contains("is missing from the range"), "{msg}");
    assert!(msg.contains("at byte"), "{msg}");
    assert!(msg.contains("needs fsck"), "{msg}");
    // With (forged) blacklist ranges covering nearly all of it, the range is not walked seq
    // by seq either.
    let dev = store_with_forged_jset(1 << 60, 1);
    let mut sb = sixfs::sb::read_superblock(&*dev).unwrap().sb;
    sb.blacklist.push(sixfs::format::superblock::SeqRange {
        start: 1 << 20,
        end: (1 << 60) - 1,
    });
    sixfs::sb::write_superblock(&*dev, &mut sb).unwrap();
    let t0 = std::time::Instant::now();
    let msg = match Store::open(dev, &StoreOptions::default()) {
        Ok(_) => panic!("opened from a forged journal entry"),
        Err(e) => e.to_string(),
    };
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert!(msg.contains("needs fsck"), "{msg}");
}

#[test]
fn a_clean_flag_without_a_clean_section_refuses_the_open() {
    let (dev, _) = two_level_store();
    let mut sb = sixfs::sb::read_superblock(&*dev).unwrap().sb;
    sb.clean.as_mut().unwrap().entries.clear();
    sixfs::sb::write_superblock(&*dev, &mut sb).unwrap();
    let msg = match Store::open(dev, &StoreOptions::default()) {
        Ok(_) => panic!("opened a clean superblock without its roots"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("clean section"), "{msg}");
    assert!(msg.contains("needs fsck"), "{msg}");
}
