//! Benchmarks of the concurrency and debugging primitives, printed as ratios against peers
//! measured in the same run (DESIGN §7): `cargo bench -p sixfs --bench primitives`.
//!
//! Each figure is the median of several samples, and the two sides of a ratio are sampled
//! alternately, so slow drift on a shared machine hits both alike. Results go into
//! `docs/performance.md` ("Primitives").
#![allow(
    clippy::cast_possible_truncation,
    reason = "indices below 2^22 on 64-bit benchmark hosts"
)]

use parking_lot::RwLock;
use sixfs::sync::barrier::WriteBarrier;
use sixfs::sync::counters::{AvailableCounter, ShardedCounter};
use sixfs::sync::six::SixLock;
use sixfs::util::genradix::GenRadix;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SAMPLES: usize = 15;

/// ns per op of `f(iters)`, which must run `iters` operations.
fn time_ns(iters: u64, f: &mut dyn FnMut(u64)) -> f64 {
    let t = Instant::now();
    f(iters);
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// Calibrates an iteration count so one sample takes about 10 ms.
fn calibrate(f: &mut dyn FnMut(u64)) -> u64 {
    let mut n = 1_000u64;
    loop {
        let t = Instant::now();
        f(n);
        if t.elapsed() > Duration::from_millis(10) || n > 1 << 34 {
            return n;
        }
        n *= 2;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Medians of `a` and `b` (ns/op), sampled alternately.
fn pair(a: &mut dyn FnMut(u64), b: &mut dyn FnMut(u64)) -> (f64, f64) {
    let na = calibrate(a);
    let nb = calibrate(b);
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        va.push(time_ns(na, a));
        vb.push(time_ns(nb, b));
    }
    (median(va), median(vb))
}

fn report(what: &str, ours: f64, peer_name: &str, peer: f64, goal: Option<f64>) {
    let ratio = ours / peer;
    let verdict = match goal {
        Some(g) if ratio <= g => format!("goal <= {g}: met"),
        Some(g) => format!("goal <= {g}: NOT met"),
        None => String::new(),
    };
    println!(
        "{what:<44} {ours:>8.2} ns | {peer_name:<30} {peer:>8.2} ns | ratio {ratio:>5.2} {verdict}"
    );
}

/// One run of `f(thread_index, iters)` on two threads started together: ns per op per thread
/// (wall time), and how much of the wall time both threads were running (on a shared machine
/// the two threads do not always get two cores; without overlap there is no contention).
fn run2(f: &(dyn Fn(usize, u64) + Sync), iters: u64) -> (f64, f64) {
    let start = std::sync::Barrier::new(2);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    f(i, iters);
                    (t0, Instant::now())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("two spans");
    let last = spans.iter().map(|s| s.1).max().expect("two spans");
    let both_from = spans.iter().map(|s| s.0).max().expect("two spans");
    let both_to = spans.iter().map(|s| s.1).min().expect("two spans");
    let wall = (last - first).as_nanos() as f64;
    let overlap = both_to.saturating_duration_since(both_from).as_nanos() as f64 / wall;
    (wall / iters as f64, overlap)
}

/// Two-thread medians of `a` and `b`, sampled alternately: ((ns, overlap), (ns, overlap)).
fn pair2(
    a: &(dyn Fn(usize, u64) + Sync),
    b: &(dyn Fn(usize, u64) + Sync),
) -> ((f64, f64), (f64, f64)) {
    // Long enough (tens of ms) for the scheduler to give both threads a core.
    let iters = 4_000_000u64;
    let (mut va, mut vb, mut oa, mut ob) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..9 {
        let (t, o) = run2(a, iters);
        va.push(t);
        oa.push(o);
        let (t, o) = run2(b, iters);
        vb.push(t);
        ob.push(o);
    }
    ((median(va), median(oa)), (median(vb), median(ob)))
}

fn report2(what: &str, ours: (f64, f64), peer_name: &str, peer: (f64, f64)) {
    report(what, ours.0, peer_name, peer.0, None);
    println!(
        "{:<44} (threads ran together {:.0}% / {:.0}% of the time)",
        "",
        ours.1 * 100.0,
        peer.1 * 100.0
    );
}

#[inline(never)]
fn empty_fn() -> bool {
    black_box(false)
}

/// The rare side of the honest fault-site baseline: out of line, like a site's slow path.
#[cold]
#[inline(never)]
fn cold_path() -> u64 {
    black_box(1)
}

/// Whether the group `name` was selected (`cargo bench --bench primitives -- NAME`).
fn selected(name: &str) -> bool {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()))
}

fn main() {
    println!("sixfs primitives benchmark: ns per operation, median of {SAMPLES} samples");
    println!("{}", "-".repeat(120));

    // ---- SIX vs parking_lot, uncontended ----
    if selected("six") {
        let six = SixLock::new();
        let pl = RwLock::new(());
        let (a, b) = pair(
            &mut |n| {
                for _ in 0..n {
                    six.lock_read();
                    six.unlock_read();
                }
            },
            &mut |n| {
                for _ in 0..n {
                    drop(black_box(pl.read()));
                }
            },
        );
        report(
            "SIX read lock+unlock (uncontended)",
            a,
            "parking_lot RwLock read",
            b,
            Some(1.5),
        );
        let (a, b) = pair(
            &mut |n| {
                for _ in 0..n {
                    six.lock_intent();
                    six.unlock_intent();
                }
            },
            &mut |n| {
                for _ in 0..n {
                    drop(black_box(pl.upgradable_read()));
                }
            },
        );
        report(
            "SIX intent lock+unlock (uncontended)",
            a,
            "parking_lot upgradable_read",
            b,
            Some(1.5),
        );
        let (a, b) = pair(
            &mut |n| {
                for _ in 0..n {
                    six.lock_intent();
                    six.lock_write();
                    six.unlock_write();
                    six.unlock_intent();
                }
            },
            &mut |n| {
                for _ in 0..n {
                    drop(black_box(pl.write()));
                }
            },
        );
        report(
            "SIX intent+write lock+unlock (uncontended)",
            a,
            "parking_lot RwLock write",
            b,
            None,
        );
    }

    // ---- mixed, two threads ----
    if selected("six-mixed") {
        let six = SixLock::new();
        let pl = RwLock::new(());
        let data = AtomicU64::new(0);
        let mix = |i: usize, k: u64| -> u8 {
            // 80% read, 15% intent, 5% intent+write; threads differ in phase.
            match (k.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64) >> 56) % 20 {
                0 => 2,
                1..=3 => 1,
                _ => 0,
            }
        };
        let six_mixed = |i: usize, n: u64| {
            for k in 0..n {
                match mix(i, k) {
                    0 => {
                        six.lock_read();
                        black_box(data.load(Ordering::Relaxed));
                        six.unlock_read();
                    }
                    1 => {
                        six.lock_intent();
                        black_box(data.load(Ordering::Relaxed));
                        six.unlock_intent();
                    }
                    _ => {
                        six.lock_intent();
                        six.lock_write();
                        data.fetch_add(1, Ordering::Relaxed);
                        six.unlock_write();
                        six.unlock_intent();
                    }
                }
            }
        };
        let pl_mixed = |i: usize, n: u64| {
            for k in 0..n {
                match mix(i, k) {
                    0 => {
                        let g = pl.read();
                        black_box(data.load(Ordering::Relaxed));
                        drop(g);
                    }
                    1 => {
                        let g = pl.upgradable_read();
                        black_box(data.load(Ordering::Relaxed));
                        drop(g);
                    }
                    _ => {
                        let g =
                            parking_lot::RwLockUpgradableReadGuard::upgrade(pl.upgradable_read());
                        data.fetch_add(1, Ordering::Relaxed);
                        drop(g);
                    }
                }
            }
        };
        let (ours, peer) = pair2(&six_mixed, &pl_mixed);
        report2(
            "SIX mixed 80/15/5 read/intent/write, 2 threads",
            ours,
            "parking_lot read/upgradable/upgr.",
            peer,
        );
    }

    // ---- genradix vs Vec ----
    if selected("genradix") {
        const N: usize = 1 << 16;
        let radix: GenRadix<u64> = GenRadix::new();
        let vec: Vec<u64> = (0..N as u64).collect();
        for i in 0..N as u64 {
            let _ = radix.get_or_alloc(i);
        }
        let mut x = 0x1234_5678u64;
        let idx: Vec<u64> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % N as u64
            })
            .collect();
        let (a, b) = pair(
            &mut |n| {
                let mut s = 0u64;
                for k in 0..n {
                    let i = idx[(k & 4095) as usize];
                    s = s.wrapping_add(*black_box(&radix).get(i).unwrap_or(&0));
                }
                black_box(s);
            },
            &mut |n| {
                let mut s = 0u64;
                for k in 0..n {
                    let i = idx[(k & 4095) as usize] as usize;
                    s = s.wrapping_add(black_box(&vec)[i]);
                }
                black_box(s);
            },
        );
        report(
            "genradix get, random in 64Ki u64",
            a,
            "Vec index",
            b,
            Some(3.0),
        );
        let (a, b) = pair(
            &mut |n| {
                let mut s = 0u64;
                for k in 0..n {
                    s = s.wrapping_add(*black_box(&radix).get(k & (N as u64 - 1)).unwrap_or(&0));
                }
                black_box(s);
            },
            &mut |n| {
                let mut s = 0u64;
                for k in 0..n {
                    s = s.wrapping_add(black_box(&vec)[(k & (N as u64 - 1)) as usize]);
                }
                black_box(s);
            },
        );
        report(
            "genradix get, sequential in 64Ki u64",
            a,
            "Vec index",
            b,
            Some(3.0),
        );
        // A big array (32 MiB, leaves in tree 2): dominated by cache misses on both sides.
        const BIG: usize = 1 << 22;
        let big_radix: GenRadix<u64> = GenRadix::new();
        let big_vec: Vec<u64> = vec![1; BIG];
        for i in 0..BIG as u64 {
            let _ = big_radix.get_or_alloc(i);
        }
        let big_idx: Vec<u64> = idx
            .iter()
            .map(|&i| i.wrapping_mul(0x9e37_79b9) % BIG as u64)
            .collect();
        let (a, b) = pair(
            &mut |n| {
                let mut s = 0u64;
                for k in 0..n {
                    let i = big_idx[(k & 4095) as usize] ^ (k >> 12);
                    s = s.wrapping_add(*black_box(&big_radix).get(i % BIG as u64).unwrap_or(&0));
                }
                black_box(s);
            },
            &mut |n| {
                let mut s = 0u64;
                for k in 0..n {
                    let i = big_idx[(k & 4095) as usize] ^ (k >> 12);
                    s = s.wrapping_add(black_box(&big_vec)[(i % BIG as u64) as usize]);
                }
                black_box(s);
            },
        );
        report(
            "genradix get, random in 4Mi u64 (32 MiB)",
            a,
            "Vec index",
            b,
            Some(3.0),
        );
    }

    // ---- disabled fault site vs an empty function, and vs an inlined unknown branch ----
    if selected("fault") {
        let _ = sixfs::fault!("bench:off"); // register it (off)
        let mut site = |n: u64| {
            let mut c = 0u64;
            for _ in 0..n {
                c += u64::from(sixfs::fault!("bench:off").is_some());
            }
            black_box(c);
        };
        let (a, b) = pair(&mut site, &mut |n| {
            let mut c = 0u64;
            for _ in 0..n {
                c += u64::from(empty_fn());
            }
            black_box(c);
        });
        report(
            "disabled fault site",
            a,
            "call of an empty fn",
            b,
            Some(1.2),
        );
        // The empty function costs a call, which the inlined site does not, so the line above
        // is met trivially. The honest baseline: the cheapest thing a site could be, a branch
        // (to an out-of-line rare path) on a value the optimiser cannot see.
        let (a, b) = pair(&mut site, &mut |n| {
            let mut c = 0u64;
            for _ in 0..n {
                if black_box(false) {
                    c += cold_path();
                }
            }
            black_box(c);
        });
        report(
            "disabled fault site",
            a,
            "branch on black_box(false)",
            b,
            None,
        );
    }

    // ---- sharded counters vs one atomic, two threads ----
    if selected("counters") {
        let sc = ShardedCounter::new();
        let one = AtomicU64::new(0);
        let (ours, peer) = pair2(
            &|_, n| {
                for _ in 0..n {
                    sc.add(1);
                }
            },
            &|_, n| {
                for _ in 0..n {
                    one.fetch_add(1, Ordering::Relaxed);
                }
            },
        );
        assert_eq!(sc.sum() as u64, one.load(Ordering::Relaxed));
        report2(
            "ShardedCounter add, 2 threads",
            ours,
            "one AtomicU64 fetch_add",
            peer,
        );

        let av = AvailableCounter::new(u64::MAX / 4);
        let (ours, peer) = pair2(
            &|_, n| {
                for _ in 0..n {
                    if av.try_take(8) {
                        av.put(8);
                    }
                }
            },
            &|_, n| {
                for _ in 0..n {
                    one.fetch_sub(8, Ordering::Relaxed);
                    one.fetch_add(8, Ordering::Relaxed);
                }
            },
        );
        report2(
            "AvailableCounter take+put, 2 threads",
            ours,
            "one AtomicU64 sub+add",
            peer,
        );
    }

    // ---- write barrier vs one atomic, two threads ----
    if selected("barrier") {
        let wb = WriteBarrier::new();
        let one = AtomicU64::new(0);
        let (ours, peer) = pair2(
            &|_, n| {
                for _ in 0..n {
                    drop(black_box(wb.enter()));
                }
            },
            &|_, n| {
                for _ in 0..n {
                    one.fetch_add(1, Ordering::Acquire);
                    one.fetch_sub(1, Ordering::Release);
                }
            },
        );
        report2(
            "WriteBarrier enter+drop, 2 threads",
            ours,
            "one AtomicU64 inc+dec",
            peer,
        );
    }

    println!("{}", "-".repeat(120));
}
