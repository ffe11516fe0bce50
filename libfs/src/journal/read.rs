//! Reading the journal ring: every valid jset in every journal bucket.
//!
//! Each bucket is parsed from its start, jset after jset. Where there is no valid jset — the
//! end of what was written, a torn write, or damage — the scan goes on at the next block, so a
//! damaged jset never hides the ones after it (recovery then sees the hole in the sequence
//! and refuses, instead of silently replaying less). Jsets found are keyed by seq; which of
//! them matter (the newest flush jset and the range back to its `last_seq`) is recovery's
//! decision.

use std::collections::BTreeMap;

use super::JournalGeometry;
use crate::dev::{BlockDevice, DevError};
use crate::format::FormatError;
use crate::format::jset::{JsetError, decode_jset};

/// One jset found on disk (its bytes, to decode again when replaying).
#[derive(Clone, Debug)]
pub struct ScannedJset {
    /// Sequence number.
    pub seq: u64,
    /// Oldest seq it still needed.
    pub last_seq: u64,
    /// Written with a flush.
    pub flush: bool,
    /// Index of its bucket in the ring.
    pub bucket: usize,
    /// Byte offset inside the bucket.
    pub offset: u64,
    /// Bytes it occupies on disk.
    pub disk_bytes: u64,
    /// Its bytes (`disk_bytes` long).
    pub data: Vec<u8>,
}

/// Everything found in the journal.
#[derive(Clone, Debug, Default)]
pub struct JournalScan {
    /// Valid jsets by seq.
    pub jsets: BTreeMap<u64, ScannedJset>,
    /// Damaged jsets: (bucket index, byte offset in bucket, device byte offset, error).
    pub damaged: Vec<(usize, u64, u64, FormatError)>,
    /// Seqs found more than once: (seq, device offset of the copy kept, of the other).
    pub duplicates: Vec<(u64, u64, u64)>,
}

/// Reads every journal bucket and collects the valid jsets.
pub fn scan_journal(dev: &dyn BlockDevice, geo: &JournalGeometry) -> Result<JournalScan, DevError> {
    let mut scan = JournalScan::default();
    let bs = usize::try_from(geo.bucket_size).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; bs];
    for (bi, &start) in geo.buckets.iter().enumerate() {
        dev.read_at(&mut buf, start)?;
        let mut off = 0usize;
        while off < bs {
            match decode_jset(&buf[off..], geo.magic, geo.csum, geo.block_size) {
                Ok(j) => {
                    let len = j.disk_bytes;
                    let s = ScannedJset {
                        seq: j.seq,
                        last_seq: j.last_seq,
                        flush: j.is_flush(),
                        bucket: bi,
                        offset: off as u64,
                        disk_bytes: len as u64,
                        data: buf[off..(off + len).min(bs)].to_vec(),
                    };
                    match scan.jsets.entry(j.seq) {
                        std::collections::btree_map::Entry::Occupied(o) => {
                            let kept = o.get();
                            let kept_at =
                                geo.buckets.get(kept.bucket).copied().unwrap_or(0) + kept.offset;
                            scan.duplicates.push((j.seq, kept_at, start + off as u64));
                        }
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(s);
                        }
                    }
                    off += len.max(geo.block_size);
                }
                Err(JsetError::End) => off += geo.block_size,
                Err(JsetError::Corrupt(e)) => {
                    scan.damaged.push((bi, off as u64, start + off as u64, e));
                    off += geo.block_size;
                }
            }
        }
    }
    Ok(scan)
}
