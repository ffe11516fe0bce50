//! The btree store against redb (non-durable commits) and `std::collections::BTreeMap`, measured
//! in one run and printed as ratios (DESIGN §7: absolute times on shared machines are noise).
//!
//! Workloads, each over the same N random u64 keys with 16-byte values:
//! - inserts in batched transactions (1000 keys per commit, no fsync per commit);
//! - N random point lookups of present keys;
//! - a full ordered scan.
//!
//! sixfs runs on an image file (its journal and node writes really happen) with the default
//! store options (node cache of 4,096 nodes); redb on a file with `Durability::None`.
//!
//! So that machine noise hits every engine alike, the engines take turns at fine grain:
//! inserts run in alternation, one engine after the other, for `ROUNDS` rounds (each in a
//! fresh directory; the best time of each engine counts); then, over the stores of the last
//! round, lookups run in chunks of `CHUNK` keys, engine after engine, and the scan is repeated
//! engine after engine, `ROUNDS` times; each engine's total time counts. `SIXFS_BENCH_ROUNDS`
//! sets `ROUNDS` (default 3).
//!
//! Usage: `cargo run --release -p sixfs-bench-compare -- [N] [DIR]` (default N = 1,000,000;
//! DIR, where the files go, is created if missing and defaults to the current directory).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
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
const CHUNK: usize = 20_000;

fn value(k: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&k.to_le_bytes());
    v[8..].copy_from_slice(&(!k).to_le_bytes());
    v
}

fn pos(k: u64) -> Pos {
    Pos::new(0, k, 0)
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("sixfs-bench-compare: {what}: {e}");
    std::process::exit(1);
}

/// The engines under test, each loaded with the same keys.
trait Engine {
    fn name(&self) -> &'static str;
    fn lookup(&self, keys: &[u64]);
    fn scan(&self) -> usize;
}

struct Sixfs {
    store: Store,
}

impl Sixfs {
    fn load(dir: &Path, keys: &[u64]) -> (Sixfs, Duration) {
        let img = dir.join("sixfs.img");
        FileDevice::create_image(&img, 8 << 30).unwrap_or_else(|e| fail("create image", e));
        let dev = FileDevice::open(
            &img,
            &OpenOptions {
                write: true,
                direct: false,
                exclusive: true,
            },
        )
        .unwrap_or_else(|e| fail("open image", e));
        let dev: Arc<dyn BlockDevice> = Arc::new(dev);
        format_device(&*dev, &FormatOptions::default()).unwrap_or_else(|e| fail("mkfs", e));
        let store = Store::open(dev, &StoreOptions::default()).unwrap_or_else(|e| fail("open", e));
        let bt = store.btree();
        let t = Instant::now();
        for chunk in keys.chunks(BATCH) {
            bt.run(|tr| {
                for &k in chunk {
                    tr.update(BtreeId::Extents, Key::cookie(pos(k), &value(k)))?;
                }
                Ok(())
            })
            .unwrap_or_else(|e| fail("commit", e));
        }
        (Sixfs { store }, t.elapsed())
    }
}

impl Engine for Sixfs {
    fn name(&self) -> &'static str {
        "sixfs"
    }
    fn lookup(&self, keys: &[u64]) {
        let mut tr = self.store.btree().trans();
        for &k in keys {
            let v = tr
                .get(BtreeId::Extents, pos(k))
                .unwrap_or_else(|e| fail("get", e));
            assert!(
                v.is_some_and(|v| v.val[..8] == k.to_le_bytes()[..]),
                "lookup of {k} failed"
            );
        }
    }
    fn scan(&self) -> usize {
        let mut tr = self.store.btree().trans();
        let (mut n, mut x) = (0usize, 0u64);
        tr.scan(BtreeId::Extents, POS_MIN, POS_MAX, |k| {
            n += 1;
            x ^= k.pos.offset;
            true
        })
        .unwrap_or_else(|e| fail("scan", e));
        black_box(x);
        n
    }
}

struct Redb {
    db: redb::Database,
}

impl Redb {
    fn load(dir: &Path, keys: &[u64]) -> (Redb, Duration) {
        let db = redb::Database::create(dir.join("redb.db")).unwrap_or_else(|e| fail("redb", e));
        let t = Instant::now();
        for chunk in keys.chunks(BATCH) {
            let mut tx = db.begin_write().unwrap_or_else(|e| fail("redb begin", e));
            tx.set_durability(Durability::None)
                .unwrap_or_else(|e| fail("redb durability", e));
            {
                let mut tab = tx
                    .open_table(TABLE)
                    .unwrap_or_else(|e| fail("redb table", e));
                for &k in chunk {
                    tab.insert(k, &value(k)[..])
                        .unwrap_or_else(|e| fail("redb insert", e));
                }
            }
            tx.commit().unwrap_or_else(|e| fail("redb commit", e));
        }
        (Redb { db }, t.elapsed())
    }
}

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }
    fn lookup(&self, keys: &[u64]) {
        let rtx = self
            .db
            .begin_read()
            .unwrap_or_else(|e| fail("redb read", e));
        let tab = rtx
            .open_table(TABLE)
            .unwrap_or_else(|e| fail("redb table", e));
        for &k in keys {
            let v = tab.get(k).unwrap_or_else(|e| fail("redb get", e));
            assert!(v.is_some_and(|v| v.value()[..8] == k.to_le_bytes()[..]));
        }
    }
    fn scan(&self) -> usize {
        let rtx = self
            .db
            .begin_read()
            .unwrap_or_else(|e| fail("redb read", e));
        let tab = rtx
            .open_table(TABLE)
            .unwrap_or_else(|e| fail("redb table", e));
        let (mut n, mut x) = (0usize, 0u64);
        for e in tab.iter().unwrap_or_else(|e| fail("redb iter", e)) {
            let (k, _) = e.unwrap_or_else(|e| fail("redb entry", e));
            x ^= k.value();
            n += 1;
        }
        black_box(x);
        n
    }
}

struct Map {
    m: BTreeMap<u64, [u8; 16]>,
}

impl Map {
    fn load(keys: &[u64]) -> (Map, Duration) {
        let mut m = BTreeMap::new();
        let t = Instant::now();
        for chunk in keys.chunks(BATCH) {
            for &k in chunk {
                m.insert(k, value(k));
            }
        }
        (Map { m }, t.elapsed())
    }
}

impl Engine for Map {
    fn name(&self) -> &'static str {
        "BTreeMap"
    }
    fn lookup(&self, keys: &[u64]) {
        for &k in keys {
            assert!(
                self.m
                    .get(&k)
                    .is_some_and(|v| v[..8] == k.to_le_bytes()[..])
            );
        }
    }
    fn scan(&self) -> usize {
        let mut x = 0u64;
        for k in self.m.keys() {
            x ^= *k;
        }
        black_box(x);
        self.m.len()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next() {
        None => 1_000_000,
        Some(a) => a
            .parse()
            .unwrap_or_else(|e| fail(&format!("N {a:?} is not a number"), e)),
    };
    let base = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|e| fail("cwd", e)));
    if let Err(e) = std::fs::create_dir_all(&base) {
        fail(&format!("cannot create {}", base.display()), e);
    }
    let rounds: usize = std::env::var("SIXFS_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let fresh = || {
        tempfile::tempdir_in(&base)
            .unwrap_or_else(|e| fail(&format!("cannot make a directory in {}", base.display()), e))
    };
    let mut rng = SmallRng::seed_from_u64(42);
    let mut keys: Vec<u64> = (0..n).map(|_| rng.r#gen()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.shuffle(&mut rng);
    let mut lookups = keys.clone();
    lookups.shuffle(&mut rng);

    // Inserts: engines in alternation, a fresh store each round; the last round's stores stay.
    let mut insert = [Duration::MAX; 3];
    let mut last = None;
    for _ in 0..rounds {
        drop(last.take());
        let (d1, d2) = (fresh(), fresh());
        let (six, t0) = Sixfs::load(d1.path(), &keys);
        let (redb, t1) = Redb::load(d2.path(), &keys);
        let (map, t2) = Map::load(&keys);
        for (best, t) in insert.iter_mut().zip([t0, t1, t2]) {
            *best = (*best).min(t);
        }
        last = Some((six, redb, map, d1, d2));
    }
    let Some((six, redb, map, _d1, _d2)) = last else {
        return;
    };
    let engines: [&dyn Engine; 3] = [&six, &redb, &map];

    // Lookups and scans: engines take turns chunk by chunk.
    let mut lookup = [Duration::ZERO; 3];
    let mut scan = [Duration::ZERO; 3];
    for _ in 0..rounds {
        for chunk in lookups.chunks(CHUNK) {
            for (e, total) in engines.iter().zip(lookup.iter_mut()) {
                let t = Instant::now();
                e.lookup(chunk);
                *total += t.elapsed();
            }
        }
        for (e, total) in engines.iter().zip(scan.iter_mut()) {
            let t = Instant::now();
            let got = e.scan();
            *total += t.elapsed();
            assert_eq!(got, keys.len(), "{} scanned {got} keys", e.name());
        }
    }

    let nk = keys.len() as f64;
    let per = |d: Duration, reps: usize| nk * reps as f64 / d.as_secs_f64();
    println!(
        "{} random u64 keys, 16-byte values, {BATCH} keys per commit; {rounds} rounds (inserts: best round; lookups in turns of {CHUNK} keys and scans: all rounds)",
        keys.len()
    );
    println!(
        "{:<10} {:>14} {:>14} {:>14} {:>12} {:>12}",
        "workload", "sixfs ops/s", "redb ops/s", "BTreeMap ops/s", "vs redb", "vs BTreeMap"
    );
    for (name, t, reps) in [
        ("insert", insert, 1),
        ("lookup", lookup, rounds),
        ("scan", scan, rounds),
    ] {
        println!(
            "{:<10} {:>14.0} {:>14.0} {:>14.0} {:>11.2}x {:>11.2}x",
            name,
            per(t[0], reps),
            per(t[1], reps),
            per(t[2], reps),
            t[1].as_secs_f64() / t[0].as_secs_f64(),
            t[2].as_secs_f64() / t[0].as_secs_f64()
        );
    }
    println!("(ratios are sixfs throughput / peer throughput: above 1.00x sixfs is faster)");
    if let Err(e) = six.store.close() {
        fail("close", e);
    }
}
