//! # sixfs — a bcachefs-style copy-on-write filesystem in userspace
//!
//! The whole filesystem lives in this library; the binaries (`mkfs.sixfs`, `fsck.sixfs`,
//! `mount.sixfs`, `sixfs-debug`) only parse arguments and format output.
//!
//! Layers point one way down (a module may use only the modules listed below it):
//!
//! ```text
//!   inspect/   read-only views for sixfs-debug and fsck (superblock, keys, nodes, journal)
//!   init/      mkfs: choose geometry, refuse devices in use, write superblocks and empty btrees
//!   recovery/  open (journal replay, blacklist), clean close, fsck and its problem table
//!   btree/     keys, nodes, node cache, SIX-locked paths, transactions, COW updates
//!   journal/   jsets, pins, reclaim, replay input, blacklist
//!   sb/        superblock placement: read every copy, pick the newest valid, write all copies
//!   dev/       block devices: image file, raw device, in-memory crash device
//!   format/    on-disk codecs (no IO): superblock, ...
//!   sync/      SIX lock, two-state (add/block) lock, write barrier, sharded counters
//!   util/      generic radix tree, dynamic fault injection
//!   units      Sector, BucketIdx, JournalSeq, ... (no dependencies)
//! ```
//!
//! `sync/` and `util/` depend on nothing else in the crate, so they sit at the bottom: that
//! lets fault sites live on the device IO paths. `scripts/check-layers.sh` enforces the order.
//!
//! `error` stands outside the order: it wraps each layer's error and holds the one errno table.
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Test data is small numbers cast freely; library code converts with checks.
#![cfg_attr(test, allow(clippy::cast_possible_truncation))]

pub mod btree;
pub mod dev;
pub mod error;
pub mod format;
pub mod init;
pub mod inspect;
pub mod journal;
pub mod recovery;
pub mod sb;
pub mod sync;
pub mod units;
pub mod util;

pub use error::{Error, Result};
