//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/*`) through the same harnesses
//! the `cargo fuzz` targets run (`sixfs::format::fuzz`), on stable Rust: CI replays the corpus
//! without nightly or libFuzzer. A corpus directory with no harness fails the test, so a new
//! target cannot be forgotten here.
//!
//! `write_seed_corpus` (ignored; run it with `cargo test -p sixfs --test fuzz_corpus --
//! --ignored`) regenerates the seeds: valid encodings of every decoder's input and a few
//! mutated ones. Inputs the fuzzers found interesting enough to keep, and any that once
//! crashed, are added to the same directories by hand.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use std::path::{Path, PathBuf};

use sixfs::format::bkey::{Key, Pos};
use sixfs::format::btree_id::BtreeId;
use sixfs::format::btree_node::{EntryInfo, encode_entry};
use sixfs::format::btree_ptr::BtreePtr;
use sixfs::format::csum::{ChecksumType, Compression};
use sixfs::format::fuzz::{self, FUZZ_MAGIC, Params, params_byte};
use sixfs::format::jset::{
    JEntryType, new_jset_buf, push_entry_header, push_root_entry, seal_jset,
};
use sixfs::format::superblock::{
    BucketRange, CleanSection, CompatFeatures, Features, FsOptions, OptionalField,
    SB_PRIMARY_OFFSET, SbFlags, SbLayout, SeqRange, Superblock,
};

type Harness = fn(&[u8]);

/// Every fuzz target and its harness.
const TARGETS: &[(&str, Harness)] = &[
    ("superblock", fuzz::superblock),
    ("keys", fuzz::keys),
    ("btree_ptr", fuzz::btree_ptr),
    ("btree_node", fuzz::btree_node),
    ("jset", fuzz::jset),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

#[test]
fn corpus_replays_without_panics() {
    let mut total = 0u64;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("fuzz/corpus exists")
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for (t, _) in TARGETS {
        assert!(names.iter().any(|n| n == t), "no corpus for target {t}");
    }
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let harness = TARGETS
            .iter()
            .find(|(t, _)| *t == name)
            .unwrap_or_else(|| panic!("fuzz/corpus/{name} has no harness in TARGETS"))
            .1;
        let mut n = 0;
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            total += data.len() as u64;
            let r = std::panic::catch_unwind(|| harness(&data));
            assert!(r.is_ok(), "{} panicked", p.display());
            n += 1;
        }
        assert!(n > 0, "fuzz/corpus/{name} is empty");
    }
    assert!(
        total < 1 << 20,
        "the corpus is {total} bytes; keep it under 1 MiB"
    );
}

fn superblock(seq: u64, block: u32) -> Superblock {
    let dev_size = 64u64 << 20;
    let bucket = 512u32 << 10;
    let (first_bucket, nbuckets) = SbLayout::standard_buckets(dev_size, bucket);
    let options = FsOptions {
        compression: Compression::Zstd { level: 3 },
        data_csum: ChecksumType::Blake3,
        metadata_csum: ChecksumType::Crc32c,
    };
    Superblock {
        version: 1,
        version_min: 1,
        flags: SbFlags::empty(),
        seq,
        offset: SB_PRIMARY_OFFSET,
        uuid: uuid::Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0001),
        user_uuid: uuid::Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0002),
        label: "seed".into(),
        block_size: block,
        bucket_size: bucket,
        btree_node_size: 256 << 10,
        dev_size,
        nbuckets,
        first_bucket,
        features: Superblock::features_for(&options),
        compat: CompatFeatures::empty(),
        time_created: 1_700_000_000_000_000_000,
        write_time: 1_700_000_000_000_000_001,
        options,
        layout: SbLayout::standard(dev_size),
        journal: vec![BucketRange {
            start: first_bucket,
            nr: 8,
        }],
        clean: None,
        blacklist: vec![],
        optional: vec![],
    }
}

fn ptr(sector: u64) -> BtreePtr {
    BtreePtr {
        sector,
        node_seq: 0x1234_5678,
        sectors_written: 8,
        generation: 0,
        min_pos: Pos::default(),
    }
}

fn root_entries() -> Vec<u8> {
    let mut v = Vec::new();
    for (i, b) in BtreeId::ALL.iter().enumerate() {
        push_root_entry(&mut v, *b, 0, &ptr(2048 + 512 * i as u64));
    }
    v
}

fn leaf_keys() -> Vec<u8> {
    let mut k = Vec::new();
    Key::cookie(Pos::new(1, 0, 0), b"hello").encode_into(&mut k);
    Key::deleted(Pos::new(1, 5, 0)).encode_into(&mut k);
    Key::cookie(Pos::new(2, 0, 7), &[0xab; 40]).encode_into(&mut k);
    k
}

fn interior_keys() -> Vec<u8> {
    let mut k = Vec::new();
    Key::btree_ptr(Pos::new(10, 0, 0), &ptr(4096)).encode_into(&mut k);
    let mut p = ptr(8192);
    p.min_pos = Pos::new(10, 0, 1);
    Key::btree_ptr(Pos::new(20, 0, 0), &p).encode_into(&mut k);
    k
}

fn with_params(p: Params, body: &[u8]) -> Vec<u8> {
    let mut v = vec![params_byte(p)];
    v.extend_from_slice(body);
    v
}

fn p(csum: ChecksumType, block: usize, known_seq: bool, level: u8) -> Params {
    Params {
        csum,
        block,
        known_seq,
        level,
    }
}

/// Seeds: name -> bytes, per target.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    // Superblocks: plain, clean with roots, blacklist + optional field, 64K blocks padded
    // to the copy area as on disk, and a mutant whose checksum was fixed.
    let plain = superblock(1, 4096).encode().unwrap();
    let mut clean = superblock(7, 4096);
    clean.flags = SbFlags::CLEAN;
    clean.clean = Some(CleanSection {
        journal_seq: 41,
        entries: root_entries(),
    });
    let clean = clean.encode().unwrap();
    let mut full = superblock(9, 512);
    full.flags = SbFlags::NEEDS_FSCK;
    full.features |= Features::LZ4;
    full.blacklist = vec![
        SeqRange { start: 3, end: 5 },
        SeqRange { start: 9, end: 40 },
    ];
    full.optional = vec![OptionalField {
        typ: 0x8001,
        payload: b"future".to_vec(),
    }];
    let full = full.encode().unwrap();
    // (8 KiB, not the whole 64 KiB area: libFuzzer sizes inputs after the largest seed.)
    let mut padded = superblock(3, 65536).encode().unwrap();
    padded.resize(8192, 0);
    let mut mutant = clean.clone();
    mutant[116] ^= 0x40; // bucket size
    let c = crc32c::crc32c(&mutant[20..]);
    mutant[16..20].copy_from_slice(&c.to_le_bytes());
    for (n, b) in [
        ("plain", plain),
        ("clean", clean),
        ("full", full),
        ("padded", padded),
        ("mutant-bucket-size", mutant),
    ] {
        out.push(("superblock", n.to_string(), b));
    }
    // Key runs, leaf and interior.
    out.push((
        "keys",
        "leaf".into(),
        with_params(p(ChecksumType::None, 512, false, 0), &leaf_keys()),
    ));
    out.push((
        "keys",
        "interior".into(),
        with_params(p(ChecksumType::None, 512, false, 1), &interior_keys()),
    ));
    let mut bad = leaf_keys();
    bad[0] = 0xff; // length
    out.push((
        "keys",
        "mutant-length".into(),
        with_params(p(ChecksumType::None, 512, false, 0), &bad),
    ));
    // Pointers.
    out.push(("btree_ptr", "ptr".into(), ptr(4096).encode().to_vec()));
    let mut far = ptr(u64::MAX / 512);
    far.min_pos = Pos::new(u64::MAX, 1, 2);
    out.push(("btree_ptr", "far".into(), far.encode().to_vec()));
    // Node entries, each checksum, leaf and interior, first entry and a later one.
    for (i, (csum, level, keys)) in [
        (ChecksumType::None, 0u8, leaf_keys()),
        (ChecksumType::Crc32c, 0, leaf_keys()),
        (ChecksumType::Blake3, 1, interior_keys()),
    ]
    .into_iter()
    .enumerate()
    {
        let nkeys = if level == 0 { 3 } else { 2 };
        let info = EntryInfo {
            node_seq: 0x77,
            journal_seq: 5,
            sector_offset: 0,
            nkeys,
            btree_id: BtreeId::Inodes,
            level,
            min_pos: Pos::default(),
            max_pos: Pos::new(100, 0, 0),
        };
        let mut e = Vec::new();
        encode_entry(&mut e, &info, &keys, FUZZ_MAGIC, csum, 512);
        out.push((
            "btree_node",
            format!("entry-{i}"),
            with_params(p(csum, 512, i == 1, 0), &e),
        ));
    }
    // Jsets: keys + roots + padding, and a clean section's entries.
    for (i, csum) in [ChecksumType::None, ChecksumType::Crc32c]
        .into_iter()
        .enumerate()
    {
        let mut j = new_jset_buf(4096);
        let keys = leaf_keys();
        push_entry_header(
            &mut j,
            JEntryType::BtreeKeys,
            BtreeId::Extents,
            0,
            keys.len(),
        );
        j.extend_from_slice(&keys);
        j.extend_from_slice(&root_entries());
        push_entry_header(&mut j, JEntryType::Padding, BtreeId::Extents, 0, 16);
        j.extend_from_slice(&[0; 16]);
        seal_jset(&mut j, 12, 10, i as u32, FUZZ_MAGIC, csum, 512);
        out.push((
            "jset",
            format!("jset-{i}"),
            with_params(p(csum, 512, false, 0), &j),
        ));
    }
    out.push((
        "jset",
        "clean-entries".into(),
        with_params(p(ChecksumType::None, 512, false, 0), &root_entries()),
    ));
    out
}

#[test]
#[ignore = "regenerates fuzz/corpus seeds; run by hand"]
fn write_seed_corpus() {
    for (target, name, bytes) in seeds() {
        let dir = corpus_dir().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}

/// The seeds are what they claim: the valid ones decode (so the fuzzers start from deep
/// inside each decoder), and they replay.
#[test]
fn seeds_decode() {
    use sixfs::format::bkey::decode_key;
    use sixfs::format::btree_node::decode_entry;
    use sixfs::format::jset::decode_jset;
    for (target, name, b) in seeds() {
        for (t, h) in TARGETS {
            if *t == target {
                h(&b);
            }
        }
        if name.starts_with("mutant") {
            continue;
        }
        let (params, rest) = fuzz::params(&b).unwrap();
        let ok = match target {
            "superblock" => Superblock::decode(&b).is_ok(),
            "keys" => decode_key(rest).is_ok(),
            "btree_ptr" => BtreePtr::decode(&b).is_ok(),
            "btree_node" => {
                decode_entry(rest, FUZZ_MAGIC, None, 0, params.csum, params.block).is_ok()
            }
            "jset" => {
                name == "clean-entries"
                    || decode_jset(rest, FUZZ_MAGIC, params.csum, params.block).is_ok()
            }
            _ => false,
        };
        assert!(ok, "seed {target}/{name} does not decode");
    }
}
