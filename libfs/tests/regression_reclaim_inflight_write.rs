//! Regression: journal reclaim must not miss a node write that another thread has in flight.
//!
//! A write-back thread seals a node's unwritten keys and starts writing them; until the write
//! completes the node's journal pin is held by that write. `flush_pins_upto` used to look only
//! at nodes with *unwritten* keys, so it returned while the pin was still held; reclaim then
//! wrote a jset whose `last_seq` still named the old seq and, after a second full round, called
//! the journal full ("the journal is too small") although nothing was stuck. Seen as a flaky
//! `Journal(Full(..))` in `btree_concurrency` on a loaded machine. Now it waits for the write:
//! when it returns, the pin is gone.
#![allow(clippy::unwrap_used, reason = "test code")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sixfs::format::bkey::{Key, Pos};
use sixfs::format::btree_id::BtreeId;

#[test]
fn flush_pins_waits_for_a_node_write_in_flight() {
    let dev = new_dev(16 << 20, &small_opts());
    let s = Arc::new(open(dev));
    s.btree()
        .run(|tr| tr.update(BtreeId::Extents, Key::cookie(Pos::new(1, 1, 0), b"v")))
        .unwrap();
    assert!(
        s.journal().pins_held() > 0,
        "the committed key pins its seq"
    );
    // The next node write stalls for 400 ms between sealing its keys and the device write.
    sixfs::util::fault::configure("btree:node_write oneshot delay=400ms").unwrap();
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || s.btree().flush_all_nodes().unwrap())
    };
    let t0 = Instant::now();
    while sixfs::util::fault::site("btree:node_write").is_none_or(|i| i.fires == 0) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the write-back never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // The write is in flight now: reclaim's write-back must wait for it.
    s.btree().flush_pins_upto(u64::MAX).unwrap();
    let pins = s.journal().pins_held();
    writer.join().unwrap();
    assert_eq!(
        pins, 0,
        "flush_pins_upto returned while a write in flight still held its pin"
    );
    sixfs::util::fault::reset();
}
