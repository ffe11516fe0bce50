//! The btree store against redb (non-durable commits) and `std::collections::BTreeMap`, measured
//! in one run and printed as ratios (DESIGN §7: absolute times on shared machines are noise).
//!
//! Workloads, each over the same N random u64 keys with 16-byte values:
//! - inserts in batched transactions (1000 keys per commit, no fsync per commit);
//! - N random point lookups of present keys;
//! - a full ordered scan.
//!
//! sixfs runs on an image file (its journal and node writes really happen) with the default
//! store options (node cache of 4,096 nodes); redb on a file with `Durability::None`. The
//! engines run in alternation, two rounds each (`SIXFS_BENCH_ROUNDS` changes it), each in a
//! fresh directory, and the best time of each is compared. Usage:
//! `cargo run --release -p sixfs-bench-compare -- [N] [DIR]` (default N = 1,000,000; DIR, where
//! the files go, is created if missing and defaults to the current directory).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};
use sixfs::dev::{BlockDevice, FileDevice, OpenOptions};
use sixfs::format::bkey::{Key, POS_MAX, POS_MIN, Pos};
use sixfs::format::btree_id::BtreeId;
use sixfs::init::{FormatOptions, format_device};
use sixfs::recovery::{Store, StoreOptions};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("bench");
const BATCH: usize = 1000;

fn value(k: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&k.to_le_bytes());
    v[8..].copy_from_slice(&(!k).to_le_bytes());
    v
}

fn pos(k: u64) -> Pos {
    Pos::new(0, k, 0)
}

#[derive(Clone, Copy)]
struct Times {
    insert: Duration,
    lookup: Duration,
    scan: Duration,
}

fn bench_sixfs(dir: &std::path::Path, keys: &[u64], lookups: &[u64]) -> Times {
    let img = dir.join("sixfs.img");
    FileDevice::create_image(&img, 8 << 30).expect("create image");
    let dev = Arc::new(
        FileDevice::open(
            &img,
            &OpenOptions {
                write: true,
                direct: false,
                exclusive: true,
            },
        )
        .expect("open"),
    );
    format_device(&*dev, &FormatOptions::default()).expect("mkfs");
    let s = Store::open(
        dev.clone() as Arc<dyn BlockDevice>,
        &StoreOptions::default(),
    )
    .expect("open store");
    let bt = s.btree();
    let t = Instant::now();
    for chunk in keys.chunks(BATCH) {
        bt.run(|tr| {
            for &k in chunk {
                tr.update(BtreeId::Extents, Key::cookie(pos(k), &value(k)))?;
            }
            Ok(())
        })
        .expect("commit");
    }
    let insert = t.elapsed();
    let mut tr = bt.trans();
    let t = Instant::now();
    for &k in lookups {
        let v = tr.get(BtreeId::Extents, pos(k)).expect("get");
        assert!(
            v.is_some_and(|v| v.val[..8] == k.to_le_bytes()[..]),
            "lookup of {k} failed"
        );
    }
    let lookup = t.elapsed();
    let t = Instant::now();
    let mut n = 0usize;
    let mut x = 0u64;
    tr.scan(BtreeId::Extents, POS_MIN, POS_MAX, |k| {
        n += 1;
        x ^= k.pos.offset;
        true
    })
    .expect("scan");
    let scan = t.elapsed();
    assert_eq!(n, keys.len());
    black_box(x);
    s.close().expect("close");
    Times {
        insert,
        lookup,
        scan,
    }
}

fn bench_redb(dir: &std::path::Path, keys: &[u64], lookups: &[u64]) -> Times {
    let db = redb::Database::create(dir.join("redb.db")).expect("redb create");
    let t = Instant::now();
    for chunk in keys.chunks(BATCH) {
        let mut tx = db.begin_write().expect("begin");
        tx.set_durability(Durability::None).expect("durability");
        {
            let mut tab = tx.open_table(TABLE).expect("table");
            for &k in chunk {
                tab.insert(k, &value(k)[..]).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let insert = t.elapsed();
    let rtx = db.begin_read().expect("read");
    let tab = rtx.open_table(TABLE).expect("table");
    let t = Instant::now();
    for &k in lookups {
        let v = tab.get(k).expect("get");
        assert!(v.is_some_and(|v| v.value()[..8] == k.to_le_bytes()[..]));
    }
    let lookup = t.elapsed();
    let t = Instant::now();
    let mut n = 0usize;
    let mut x = 0u64;
    for e in tab.iter().expect("iter") {
        let (k, _) = e.expect("entry");
        x ^= k.value();
        n += 1;
    }
    let scan = t.elapsed();
    assert_eq!(n, keys.len());
    black_box(x);
    Times {
        insert,
        lookup,
        scan,
    }
}

fn bench_btreemap(keys: &[u64], lookups: &[u64]) -> Times {
    let mut m: BTreeMap<u64, [u8; 16]> = BTreeMap::new();
    let t = Instant::now();
    for chunk in keys.chunks(BATCH) {
        for &k in chunk {
            m.insert(k, value(k));
        }
    }
    let insert = t.elapsed();
    let t = Instant::now();
    for &k in lookups {
        assert!(m.get(&k).is_some_and(|v| v[..8] == k.to_le_bytes()[..]));
    }
    let lookup = t.elapsed();
    let t = Instant::now();
    let mut x = 0u64;
    for k in m.keys() {
        x ^= *k;
    }
    let scan = t.elapsed();
    black_box(x);
    Times {
        insert,
        lookup,
        scan,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse().expect("N is a number"))
        .unwrap_or(1_000_000);
    let base = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().expect("cwd"));
    if let Err(e) = std::fs::create_dir_all(&base) {
        eprintln!("sixfs-bench-compare: cannot create {}: {e}", base.display());
        std::process::exit(1);
    }
    let rounds: usize = std::env::var("SIXFS_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2)
        .max(1);
    let fresh = || match tempfile::tempdir_in(&base) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "sixfs-bench-compare: cannot make a directory in {}: {e}",
                base.display()
            );
            std::process::exit(1);
        }
    };
    let mut rng = SmallRng::seed_from_u64(42);
    let mut keys: Vec<u64> = (0..n).map(|_| rng.r#gen()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.shuffle(&mut rng);
    let mut lookups = keys.clone();
    lookups.shuffle(&mut rng);

    let best = |a: Option<Times>, b: Times| match a {
        None => b,
        Some(a) => Times {
            insert: a.insert.min(b.insert),
            lookup: a.lookup.min(b.lookup),
            scan: a.scan.min(b.scan),
        },
    };
    let (mut six, mut redb, mut map) = (None, None, None);
    for _ in 0..rounds {
        six = Some(best(six, bench_sixfs(fresh().path(), &keys, &lookups)));
        if std::env::var_os("SIXFS_BENCH_ONLY").is_some() {
            continue;
        }
        redb = Some(best(redb, bench_redb(fresh().path(), &keys, &lookups)));
        map = Some(best(map, bench_btreemap(&keys, &lookups)));
    }
    let (Some(six), Some(redb), Some(map)) = (six, redb, map) else {
        if let Some(six) = six {
            println!(
                "sixfs only: insert {:?} lookup {:?} scan {:?}",
                six.insert, six.lookup, six.scan
            );
        }
        return;
    };

    let n = keys.len() as f64;
    let rate = |d: Duration| n / d.as_secs_f64();
    println!(
        "{} random u64 keys, 16-byte values, {BATCH} keys per commit (one run, best of {rounds} alternating rounds)",
        keys.len()
    );
    println!(
        "{:<10} {:>14} {:>14} {:>14} {:>12} {:>12}",
        "workload", "sixfs ops/s", "redb ops/s", "BTreeMap ops/s", "vs redb", "vs BTreeMap"
    );
    for (name, a, b, c) in [
        ("insert", six.insert, redb.insert, map.insert),
        ("lookup", six.lookup, redb.lookup, map.lookup),
        ("scan", six.scan, redb.scan, map.scan),
    ] {
        println!(
            "{:<10} {:>14.0} {:>14.0} {:>14.0} {:>11.2}x {:>11.2}x",
            name,
            rate(a),
            rate(b),
            rate(c),
            b.as_secs_f64() / a.as_secs_f64(),
            c.as_secs_f64() / a.as_secs_f64()
        );
    }
    println!("(ratios are sixfs throughput / peer throughput: above 1.00x sixfs is faster)");
}
