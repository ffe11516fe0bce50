//! The journal: the commit point of every transaction.
//!
//! It knows only jsets of encoded entries, sequence numbers and pins — nothing of btrees. The
//! btree reserves room in the open jset for a transaction's keys ([`Journal::reserve`]), pins
//! the sequence number in the nodes it changed ([`Journal::pin_get`]), and registers a
//! [`JournalReclaim`] callback the journal calls when it needs pins released (the btree
//! writes nodes back). Root changes are reported with [`Journal::root_changed`] so that every
//! jset carries the roots as of its own sequence number.
//!
//! Invariants:
//! - A transaction's entries are in exactly one jset; a jset is written only when every
//!   reservation in it has been released (so every pin it implies exists).
//! - `last_seq` of a jset is fixed when the jset is closed: the oldest pinned seq, or the
//!   jset's own seq. A pin released later cannot make an already-closed jset claim more.
//!   Every reservation pins its own seq until it is released, by which time the keys it
//!   journaled are pinned in their nodes: so no jset ever claims an older, not yet written
//!   transaction is no longer needed.
//! - A reservation is granted only for a seq `s <= durable_seq + LEAD`. Btree node entries
//!   record the newest reservation seq of their keys, so no node entry on disk names a seq
//!   beyond `durable + LEAD` (new nodes of structural changes are stamped with the open seq,
//!   which may be further on, but they are unreachable unless the reservation that links
//!   them in — a later seq — became durable); after a crash, recovery blacklists
//!   `(durable, durable + LEAD]` and starts after it.
//! - Flush writes flush the device before (so node writes they depend on are durable) and
//!   after (so the jset itself is) — flush + FUA semantics.
//! - A journal bucket is reused only when every jset in it is older than the durable
//!   `last_seq`.
//! - After a failed write the journal refuses all further work (the filesystem goes
//!   read-only rather than guess what reached the disk).

mod read;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

pub use read::{JournalScan, ScannedJset, scan_journal};

use crate::dev::{BlockDevice, DevError};
use crate::format::btree_id::{BTREE_ID_NR, BtreeId};
use crate::format::btree_ptr::BtreePtr;
use crate::format::csum::ChecksumType;
use crate::format::jset::{
    JENTRY_HEADER_BYTES, JEntryType, JSET_HEADER_BYTES, JSET_NO_FLUSH, USAGE_RECORD_BYTES,
    UsageCounter, new_jset_buf, push_entry_header, push_root_entry, push_usage_entry, seal_jset,
};

/// How far (in sequence numbers) the open jset may run ahead of the durable journal.
pub const LEAD: u64 = 32;
/// Closed jsets kept in memory before a reservation must wait for writes.
const MAX_CLOSED: usize = 4;
/// Full-release rounds reclaim tries, while each frees something, before the journal is
/// called full.
const RECLAIM_ROUNDS: u32 = 8;

/// Errors of the journal layer.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Device IO failed.
    #[error(transparent)]
    Dev(#[from] DevError),
    /// An earlier write failed; the journal takes no more work.
    #[error("journal is read-only after an earlier write error: {0}")]
    ReadOnly(String),
    /// A transaction is bigger than a jset can hold.
    #[error("transaction needs {need} bytes of journal; a journal entry holds at most {max}")]
    TooBig {
        /// Bytes needed.
        need: usize,
        /// Most a jset holds.
        max: usize,
    },
    /// Reclaim could not free journal space.
    #[error("journal full: {0}")]
    Full(String),
    /// The reclaim callback failed.
    #[error("journal reclaim failed: {0}")]
    Reclaim(String),
    /// The journal is closed.
    #[error("journal is shut down")]
    Shutdown,
}

impl JournalError {
    /// The errno a POSIX caller should see.
    pub fn errno(&self) -> i32 {
        match self {
            JournalError::Dev(e) => e.errno(),
            JournalError::ReadOnly(_) => libc::EROFS,
            JournalError::TooBig { .. } => libc::E2BIG,
            JournalError::Full(_) => libc::ENOSPC,
            JournalError::Reclaim(_) => libc::EIO,
            JournalError::Shutdown => libc::ESHUTDOWN,
        }
    }
}

/// Implemented by the btree: write back whatever pins sequence numbers `<= upto`.
pub trait JournalReclaim: Send + Sync {
    /// Writes back dirty state pinning journal sequence numbers `<= upto`; returns once
    /// those pins are released (or an error).
    fn flush_pins(&self, upto: u64) -> Result<(), String>;
}

/// Where the journal lives and how it writes.
#[derive(Clone, Debug)]
pub struct JournalGeometry {
    /// Byte offsets of the journal buckets, in ring order.
    pub buckets: Vec<u64>,
    /// Bucket size in bytes.
    pub bucket_size: u64,
    /// Block size: jsets are padded to it.
    pub block_size: usize,
    /// The filesystem's magic (from its internal UUID).
    pub magic: u64,
    /// Metadata checksum.
    pub csum: ChecksumType,
}

impl JournalGeometry {
    /// Largest jset: a quarter of a bucket, at most 256 KiB, at least 4 blocks.
    pub fn jset_max(&self) -> usize {
        let b = usize::try_from(self.bucket_size).unwrap_or(usize::MAX);
        (b / 4).min(256 << 10).max(self.block_size * 4).min(b)
    }
}

/// Where writing resumes after open.
#[derive(Clone, Debug)]
pub struct JournalStart {
    /// First sequence number to use.
    pub seq: u64,
    /// Index into `buckets` of the bucket to write next.
    pub bucket: usize,
    /// Byte offset inside that bucket.
    pub offset: u64,
    /// Newest live seq in each bucket (0 = nothing live).
    pub bucket_seq: Vec<u64>,
    /// Durable seq and last_seq of the newest flush jset on disk (0 if none).
    pub durable_seq: u64,
    /// `last_seq` recorded on disk.
    pub last_seq_ondisk: u64,
    /// Roots to record until the btree reports changes.
    pub roots: Vec<(BtreeId, u8, BtreePtr)>,
}

/// A reservation in the open jset: keep it until the keys are in the btree and pinned.
#[derive(Debug)]
#[must_use = "release the reservation with Journal::res_put"]
pub struct JournalRes {
    /// The sequence number of the jset holding the entries.
    pub seq: u64,
    offset: usize,
    len: usize,
}

/// What a reservation waits for.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// Ring space: reclaim must run.
    Space,
    /// The open seq is `LEAD` ahead of the durable one: a flush must be written.
    Lead,
    /// Too many closed jsets in memory: they must be written.
    Closed,
}

#[derive(Debug)]
struct Closed {
    seq: u64,
    last_seq: u64,
    buf: Vec<u8>,
    refs: u32,
}

#[derive(Debug)]
struct State {
    cur_seq: u64,
    open: Vec<u8>,
    open_refs: u32,
    closed: VecDeque<Closed>,
    pins: BTreeMap<u64, u32>,
    /// Root history: per btree, (seq of change, level, ptr), oldest first.
    roots: Vec<Vec<(u64, u8, BtreePtr)>>,
    /// Accounting counters, written into every jset.
    usage: BTreeMap<UsageCounter, u64>,
    seq_written: u64,
    seq_durable: u64,
    last_seq_ondisk: u64,
    bucket: usize,
    offset: u64,
    bucket_seq: Vec<u64>,
    flush_wanted: u64,
    /// Recovery is replaying: the lower reservation floor applies.
    replaying: bool,
    error: Option<String>,
    shutdown: bool,
}

/// Counters for inspection and tests.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct JournalStats {
    /// Jsets written.
    pub jsets_written: u64,
    /// Of which flush writes.
    pub flush_writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Reclaim rounds run because space was short.
    pub reclaims: u64,
    /// Reservations made.
    pub reservations: u64,
}

/// The journal.
pub struct Journal {
    dev: Arc<dyn BlockDevice>,
    geo: JournalGeometry,
    state: Mutex<State>,
    cond: Condvar,
    io: Mutex<()>,
    reclaim_lock: Mutex<()>,
    reclaim: Mutex<Option<Weak<dyn JournalReclaim>>>,
    stats: Mutex<JournalStats>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Journal")
            .field("cur_seq", &s.cur_seq)
            .field("seq_durable", &s.seq_durable)
            .field("last_seq_ondisk", &s.last_seq_ondisk)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// A journal over `geo` resuming at `start`.
    pub fn new(dev: Arc<dyn BlockDevice>, geo: JournalGeometry, start: JournalStart) -> Journal {
        let mut roots = vec![Vec::new(); BTREE_ID_NR];
        for (b, level, ptr) in &start.roots {
            roots[b.idx()].push((0, *level, *ptr));
        }
        let cap = geo.jset_max();
        Journal {
            dev,
            state: Mutex::new(State {
                cur_seq: start.seq,
                open: new_jset_buf(cap),
                open_refs: 0,
                closed: VecDeque::new(),
                pins: BTreeMap::new(),
                roots,
                usage: BTreeMap::new(),
                seq_written: start.seq.saturating_sub(1),
                seq_durable: start.durable_seq,
                last_seq_ondisk: start.last_seq_ondisk,
                bucket: start.bucket,
                offset: start.offset,
                bucket_seq: start.bucket_seq,
                flush_wanted: 0,
                replaying: false,
                error: None,
                shutdown: false,
            }),
            geo,
            cond: Condvar::new(),
            io: Mutex::new(()),
            reclaim_lock: Mutex::new(()),
            reclaim: Mutex::new(None),
            stats: Mutex::new(JournalStats::default()),
        }
    }

    /// Registers the reclaim callback.
    pub fn set_reclaim(&self, r: Weak<dyn JournalReclaim>) {
        *self.reclaim.lock() = Some(r);
    }

    /// The geometry.
    pub fn geometry(&self) -> &JournalGeometry {
        &self.geo
    }

    /// The sequence number of the open jset.
    pub fn cur_seq(&self) -> u64 {
        self.state.lock().cur_seq
    }

    /// Everything up to this seq is durable.
    pub fn durable_seq(&self) -> u64 {
        self.state.lock().seq_durable
    }

    /// Counters.
    pub fn stats(&self) -> JournalStats {
        *self.stats.lock()
    }

    /// Oldest pinned seq, if any.
    pub fn oldest_pin(&self) -> Option<u64> {
        self.state.lock().pins.keys().next().copied()
    }

    fn check(&self, s: &State) -> Result<(), JournalError> {
        if let Some(e) = &s.error {
            return Err(JournalError::ReadOnly(e.clone()));
        }
        if s.shutdown {
            return Err(JournalError::Shutdown);
        }
        Ok(())
    }

    /// Bytes of ring space free for new jsets (current bucket remainder plus the run of free
    /// buckets after it).
    fn free_bytes(&self, s: &State) -> u64 {
        let n = self.geo.buckets.len();
        let mut free = self.geo.bucket_size - s.offset;
        for i in 1..n {
            let b = (s.bucket + i) % n;
            if s.bucket_seq[b] != 0 && s.bucket_seq[b] >= s.last_seq_ondisk {
                break;
            }
            free += self.geo.bucket_size;
        }
        free
    }

    /// Space a normal reservation must leave so that reclaim can always write what it needs
    /// (the closed jsets and the flush jsets reclaim writes); lower during replay.
    fn reserve_floor(&self, s: &State) -> u64 {
        let jsets = if s.replaying {
            2
        } else {
            MAX_CLOSED as u64 + 3
        };
        jsets * self.geo.jset_max() as u64
    }

    /// Closes the open jset: no more reservations go into it; fixes its `last_seq`.
    fn close_open(&self, s: &mut State) {
        let seq = s.cur_seq;
        let last_seq = s.pins.keys().next().copied().unwrap_or(seq).min(seq);
        let buf = std::mem::replace(&mut s.open, new_jset_buf(self.geo.jset_max()));
        s.closed.push_back(Closed {
            seq,
            last_seq,
            buf,
            refs: s.open_refs,
        });
        s.open_refs = 0;
        s.cur_seq += 1;
    }

    /// Appends `payload` (encoded journal entries) to the open jset and returns the
    /// reservation. Waits (and runs reclaim) when the journal is short of space.
    pub fn reserve(&self, payload: &[u8]) -> Result<JournalRes, JournalError> {
        let res = self.reserve_len(payload.len().max(JENTRY_HEADER_BYTES))?;
        if payload.is_empty() {
            self.cancel(&res);
        } else {
            self.fill(&res, payload);
        }
        Ok(res)
    }

    /// Reserves `len` bytes (≥ 8) in the open jset, to be filled with [`Journal::fill`] or
    /// given back with [`Journal::cancel`] before [`Journal::res_put`]. The jset is not
    /// written while the reservation is held, so a commit can still decide not to happen.
    /// The reservation pins its seq until `res_put`, so no jset closed meanwhile can claim
    /// (through its `last_seq`) that the reserved seq is no longer needed. Waits (writing
    /// jsets, running reclaim) when the journal is short of space.
    pub fn reserve_len(&self, len: usize) -> Result<JournalRes, JournalError> {
        loop {
            match self.try_reserve_len(len)? {
                Ok(r) => return Ok(r),
                Err(wait) => self.make_room_for(wait)?,
            }
        }
    }

    /// Like [`Journal::reserve_len`], but never waits: `None` when the reservation would
    /// have to wait for journal IO or reclaim. A caller holding btree locks then drops
    /// them, calls [`Journal::make_room`] and starts over.
    pub fn reserve_len_nowait(&self, len: usize) -> Result<Option<JournalRes>, JournalError> {
        Ok(self.try_reserve_len(len)?.ok())
    }

    /// Waits (writing jsets, running reclaim) until a reservation of `len` bytes would not
    /// have to wait. Called holding no btree locks.
    pub fn make_room(&self, len: usize) -> Result<(), JournalError> {
        self.check_len(len)?;
        loop {
            let wait = {
                let mut s = self.state.lock();
                self.check(&s)?;
                self.blocked(&mut s, len)
            };
            match wait {
                None => return Ok(()),
                Some(w) => self.make_room_for(w)?,
            }
        }
    }

    fn check_len(&self, len: usize) -> Result<(), JournalError> {
        let max = self.geo.jset_max();
        debug_assert!(len >= JENTRY_HEADER_BYTES);
        if JSET_HEADER_BYTES + len + self.roots_bytes() > max {
            return Err(JournalError::TooBig {
                need: len,
                max: max - JSET_HEADER_BYTES - self.roots_bytes(),
            });
        }
        Ok(())
    }

    /// What a reservation of `len` bytes would wait for now (`None`: nothing). Closes the
    /// open jset if `len` does not fit in it.
    fn blocked(&self, s: &mut State, len: usize) -> Option<Wait> {
        let max = self.geo.jset_max();
        if s.open.len() + len + self.roots_bytes() > max {
            self.close_open(s);
        }
        if self.free_bytes(s) < self.reserve_floor(s) + max as u64 {
            Some(Wait::Space)
        } else if s.cur_seq > s.seq_durable.saturating_add(LEAD) {
            Some(Wait::Lead)
        } else if s.closed.len() >= MAX_CLOSED {
            Some(Wait::Closed)
        } else {
            None
        }
    }

    fn try_reserve_len(&self, len: usize) -> Result<Result<JournalRes, Wait>, JournalError> {
        self.check_len(len)?;
        let mut s = self.state.lock();
        self.check(&s)?;
        if let Some(w) = self.blocked(&mut s, len) {
            return Ok(Err(w));
        }
        let offset = s.open.len();
        s.open.resize(offset + len, 0);
        s.open_refs += 1;
        let seq = s.cur_seq;
        *s.pins.entry(seq).or_insert(0) += 1;
        drop(s);
        self.stats.lock().reservations += 1;
        Ok(Ok(JournalRes { seq, offset, len }))
    }

    fn make_room_for(&self, wait: Wait) -> Result<(), JournalError> {
        // The waits below do IO and may need node writes (reclaim): no btree reader or
        // writer may hold its lock across them (intent holders — structural changes — may).
        crate::sync::six::held::assert_only_intent_held("waiting for journal space");
        match wait {
            Wait::Space => self.reclaim_space(),
            Wait::Lead => {
                let target = self.state.lock().cur_seq.saturating_sub(LEAD);
                self.write_closed(Some(target))
            }
            Wait::Closed => self.write_closed(None),
        }
    }

    fn with_res_buf(&self, res: &JournalRes, f: impl FnOnce(&mut [u8])) {
        let mut s = self.state.lock();
        let buf = if res.seq == s.cur_seq {
            Some(&mut s.open)
        } else {
            s.closed
                .iter_mut()
                .find(|c| c.seq == res.seq)
                .map(|c| &mut c.buf)
        };
        match buf.and_then(|b| b.get_mut(res.offset..res.offset + res.len)) {
            Some(b) => f(b),
            None => debug_assert!(false, "reservation for seq {} not found", res.seq),
        }
    }

    /// Copies the entries into the reserved space (`payload.len()` must equal the length
    /// reserved).
    pub fn fill(&self, res: &JournalRes, payload: &[u8]) {
        debug_assert_eq!(payload.len(), res.len);
        self.with_res_buf(res, |b| b.copy_from_slice(payload));
    }

    /// Turns the reserved space into a padding entry (the transaction did not happen).
    pub fn cancel(&self, res: &JournalRes) {
        self.with_res_buf(res, |b| {
            b.fill(0);
            let mut h = Vec::with_capacity(JENTRY_HEADER_BYTES);
            push_entry_header(
                &mut h,
                JEntryType::Padding,
                BtreeId::Extents,
                0,
                res.len - JENTRY_HEADER_BYTES,
            );
            b[..JENTRY_HEADER_BYTES].copy_from_slice(&h);
        });
    }

    /// Closes the open jset, so the next reservation starts a new one. Root changes use it:
    /// everything journaled before a root change is then in an earlier jset than the change
    /// itself, which is what replay needs to tell old interior keys from new ones.
    pub fn start_new_jset(&self) {
        let mut s = self.state.lock();
        self.close_open(&mut s);
    }

    /// Releases a reservation (after its keys are in the btree and pinned), and the pin it
    /// held on its seq.
    pub fn res_put(&self, res: JournalRes) {
        let mut s = self.state.lock();
        Self::unpin(&mut s, res.seq);
        if res.seq == s.cur_seq {
            s.open_refs -= 1;
        } else if let Some(c) = s.closed.iter_mut().find(|c| c.seq == res.seq) {
            c.refs -= 1;
            if c.refs == 0 {
                self.cond.notify_all();
            }
        } else {
            debug_assert!(false, "reservation for seq {} not found", res.seq);
        }
    }

    /// Takes a pin on `seq`: the journal keeps `seq` (and later) until [`Journal::pin_put`].
    pub fn pin_get(&self, seq: u64) {
        self.pin_add(seq, 1);
    }

    /// Takes `n` pins on `seq` (released one by one with [`Journal::pin_put`]).
    pub fn pin_add(&self, seq: u64, n: u32) {
        if n > 0 {
            *self.state.lock().pins.entry(seq).or_insert(0) += n;
        }
    }

    /// While replaying (recovery), reservations may use most of the space normally kept for
    /// reclaim: the jset range being replayed stays pinned until its keys are in nodes, and
    /// the few structural changes replay makes must be able to commit even when the crash
    /// left the journal nearly full. Reclaim frees space as replay goes.
    pub fn set_replaying(&self, on: bool) {
        self.state.lock().replaying = on;
    }

    /// Releases a pin taken with [`Journal::pin_get`].
    pub fn pin_put(&self, seq: u64) {
        Self::unpin(&mut self.state.lock(), seq);
    }

    fn unpin(s: &mut State, seq: u64) {
        match s.pins.get_mut(&seq) {
            Some(c) if *c > 1 => *c -= 1,
            Some(_) => {
                s.pins.remove(&seq);
            }
            None => debug_assert!(false, "pin_put({seq}) without pin_get"),
        }
    }

    /// Records that `btree`'s root became `ptr` (at `level`) in a change holding a reservation
    /// for `seq`. Jsets with seq ≥ `seq` carry the new root.
    pub fn root_changed(&self, seq: u64, btree: BtreeId, level: u8, ptr: BtreePtr) {
        let mut s = self.state.lock();
        s.roots[btree.idx()].push((seq, level, ptr));
    }

    /// Sets an accounting counter; every jset written from now on carries it (as of the
    /// moment the jset is written).
    pub fn set_usage(&self, counter: UsageCounter, value: u64) {
        self.state.lock().usage.insert(counter, value);
    }

    /// Bytes every jset keeps for what the journal itself appends: one root entry per btree
    /// (8-byte entry header + 28-byte key header + 48-byte ptr) and the usage entry.
    fn roots_bytes(&self) -> usize {
        BTREE_ID_NR * (8 + 28 + 48)
            + JENTRY_HEADER_BYTES
            + UsageCounter::ALL.len() * USAGE_RECORD_BYTES
    }

    /// Appends the roots as of `seq` to `buf` and prunes history no jset will need.
    fn append_roots(s: &mut State, seq: u64, buf: &mut Vec<u8>) {
        for (i, hist) in s.roots.iter_mut().enumerate() {
            let Some(pos) = hist.iter().rposition(|(c, _, _)| *c <= seq) else {
                continue;
            };
            let (_, level, ptr) = hist[pos];
            if let Some(b) = BtreeId::from_u8(u8::try_from(i).unwrap_or(u8::MAX)) {
                push_root_entry(buf, b, level, &ptr);
            }
            hist.drain(..pos);
        }
    }

    /// Writes closed jsets in order; with `Some(seq)`, closes the open jset if needed and
    /// writes (with a flush) everything up to `seq`.
    fn write_closed(&self, flush_upto: Option<u64>) -> Result<(), JournalError> {
        let _io = self.io.lock();
        loop {
            let mut s = self.state.lock();
            self.check(&s)?;
            if let Some(t) = flush_upto {
                if s.seq_durable >= t {
                    return Ok(());
                }
                s.flush_wanted = s.flush_wanted.max(t);
                if s.closed.is_empty() {
                    // Nothing closed is left to carry the flush: close the open jset (even
                    // if it is empty or past `t`) so a flush write makes `t` durable.
                    self.close_open(&mut s);
                }
            }
            let Some(front) = s.closed.front() else {
                return Ok(());
            };
            if front.refs > 0 {
                self.cond.wait_for(&mut s, Duration::from_millis(50));
                continue;
            }
            let Some(mut c) = s.closed.pop_front() else {
                return Ok(());
            };
            // A flush write when it reaches what someone waits for (it covers everything
            // before it), or when the journal nears the LEAD limit.
            let flush = (s.flush_wanted > s.seq_durable && c.seq >= s.flush_wanted)
                || c.seq + 2 >= s.seq_durable + LEAD;
            // What the entries end at: a jset put back unwritten is cut back to it, so the
            // next attempt appends roots and usage once, after the entries, not after padding.
            let unsealed = c.buf.len();
            Self::append_roots(&mut s, c.seq, &mut c.buf);
            if !s.usage.is_empty() {
                let u: Vec<(UsageCounter, u64)> = s.usage.iter().map(|(c, v)| (*c, *v)).collect();
                push_usage_entry(&mut c.buf, &u);
            }
            let flags = if flush { 0 } else { JSET_NO_FLUSH };
            seal_jset(
                &mut c.buf,
                c.seq,
                c.last_seq,
                flags,
                self.geo.magic,
                self.geo.csum,
                self.geo.block_size,
            );
            let len = c.buf.len() as u64;
            if s.offset + len > self.geo.bucket_size {
                let n = self.geo.buckets.len();
                let next = (s.bucket + 1) % n;
                if s.bucket_seq[next] != 0 && s.bucket_seq[next] >= s.last_seq_ondisk {
                    let msg = format!(
                        "no free journal bucket for seq {} (oldest needed seq {})",
                        c.seq, s.last_seq_ondisk
                    );
                    c.buf.truncate(unsealed);
                    s.closed.push_front(c);
                    return Err(JournalError::Full(msg));
                }
                s.bucket = next;
                s.offset = 0;
                s.bucket_seq[next] = 0;
            }
            let at = self.geo.buckets[s.bucket] + s.offset;
            s.offset += len;
            let bucket = s.bucket;
            drop(s);
            let r = (|| -> Result<(), DevError> {
                if flush {
                    self.dev.flush()?;
                }
                self.dev.write_at(&c.buf, at)?;
                if flush {
                    self.dev.flush()?;
                }
                Ok(())
            })();
            let mut s = self.state.lock();
            if let Err(e) = r {
                s.error = Some(e.to_string());
                self.cond.notify_all();
                return Err(e.into());
            }
            s.bucket_seq[bucket] = c.seq;
            s.seq_written = c.seq;
            if flush {
                s.seq_durable = c.seq;
                s.last_seq_ondisk = c.last_seq;
            }
            self.cond.notify_all();
            drop(s);
            let mut st = self.stats.lock();
            st.jsets_written += 1;
            st.bytes_written += len;
            if flush {
                st.flush_writes += 1;
            }
        }
    }

    /// Makes everything up to `seq` durable: writes and flushes the jsets through `seq`.
    pub fn flush(&self, seq: u64) -> Result<(), JournalError> {
        self.write_closed(Some(seq))
    }

    /// Closes the open jset (even if empty) and makes everything durable. Returns the last
    /// sequence number written. Records the current `last_seq` on disk.
    pub fn flush_all(&self) -> Result<u64, JournalError> {
        let seq = {
            let mut s = self.state.lock();
            self.check(&s)?;
            self.close_open(&mut s);
            s.cur_seq - 1
        };
        self.write_closed(Some(seq))?;
        Ok(seq)
    }

    /// Frees ring space: asks the btree to write back the oldest pins, then writes a flush
    /// jset recording the new `last_seq`.
    pub fn reclaim_space(&self) -> Result<(), JournalError> {
        let _r = self.reclaim_lock.lock();
        {
            let s = self.state.lock();
            self.check(&s)?;
            if self.free_bytes(&s) >= self.reserve_floor(&s) + 2 * self.geo.jset_max() as u64 {
                return Ok(()); // someone else reclaimed
            }
        }
        self.stats.lock().reclaims += 1;
        // Target: free at least half the ring: release pins older than the seq written
        // halfway back from now, or everything if the ring is small.
        let upto = {
            let s = self.state.lock();
            let oldest_live = s.last_seq_ondisk;
            let newest = s.cur_seq;
            oldest_live + (newest - oldest_live) / 2 + 1
        };
        let cb = self.reclaim.lock().as_ref().and_then(Weak::upgrade);
        if let Some(cb) = cb {
            cb.flush_pins(upto).map_err(JournalError::Reclaim)?;
        }
        self.flush_all()?;
        // Not enough: release everything. A round can fall short without anything being
        // stuck — the jset that records the new `last_seq` fixes it when it is closed, while
        // reservations taken just before may still pin their seqs — so go on while rounds
        // make progress, and call the journal full only when a whole round frees nothing.
        let mut last = self.state.lock().last_seq_ondisk;
        let mut round = 0u32;
        loop {
            {
                let s = self.state.lock();
                if self.free_bytes(&s) >= self.reserve_floor(&s) + self.geo.jset_max() as u64 {
                    return Ok(());
                }
                if round > 0 && (s.last_seq_ondisk == last || round > RECLAIM_ROUNDS) {
                    let oldest = s.pins.keys().next().copied();
                    return Err(JournalError::Full(format!(
                        "{} bytes free after reclaim (oldest pinned seq {}, newest {}); the \
                         journal ({} buckets) is too small",
                        self.free_bytes(&s),
                        oldest.map_or_else(|| "none".to_string(), |p| p.to_string()),
                        s.cur_seq,
                        self.geo.buckets.len()
                    )));
                }
                last = s.last_seq_ondisk;
            }
            if let Some(cb) = self.reclaim.lock().as_ref().and_then(Weak::upgrade) {
                cb.flush_pins(u64::MAX).map_err(JournalError::Reclaim)?;
            }
            self.flush_all()?;
            round += 1;
        }
    }

    /// Whether less than half the ring is free (background reclaim should run).
    pub fn wants_reclaim(&self) -> bool {
        let s = self.state.lock();
        let total = self.geo.bucket_size * self.geo.buckets.len() as u64;
        self.free_bytes(&s) < total / 2
    }

    /// Stops accepting work (after the final flush at shutdown).
    pub fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cond.notify_all();
    }

    /// True if an earlier write failed.
    pub fn has_error(&self) -> bool {
        self.state.lock().error.is_some()
    }

    /// Number of pins held (for tests).
    pub fn pins_held(&self) -> u64 {
        self.state.lock().pins.values().map(|&c| u64::from(c)).sum()
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use crate::dev::CrashDevice;
    use crate::format::jset::JEntryType;

    fn journal(buckets: usize) -> (Arc<CrashDevice>, Journal) {
        let bucket_size = 16u64 << 10;
        let dev = Arc::new(CrashDevice::new(bucket_size * (buckets as u64 + 1), 512));
        let geo = JournalGeometry {
            buckets: (1..=buckets as u64).map(|b| b * bucket_size).collect(),
            bucket_size,
            block_size: 512,
            magic: 0x5eed,
            csum: ChecksumType::Crc32c,
        };
        let start = JournalStart {
            seq: 1,
            bucket: 0,
            offset: 0,
            bucket_seq: vec![0; buckets],
            durable_seq: 0,
            last_seq_ondisk: 1,
            roots: Vec::new(),
        };
        let j = Journal::new(dev.clone(), geo, start);
        (dev, j)
    }

    fn entry() -> Vec<u8> {
        let mut p = Vec::new();
        push_entry_header(&mut p, JEntryType::Padding, BtreeId::Extents, 0, 8);
        p.extend_from_slice(&[0u8; 8]);
        p
    }

    /// The race that lost transactions: a commit holds a reservation in jset X but has not
    /// yet pinned its keys; jset X+1 closes meanwhile with nothing else pinned. X+1 must
    /// still name X as needed, or recovery from X+1 would drop X's transaction.
    #[test]
    fn a_jset_closed_while_an_older_reservation_is_held_keeps_that_seq() {
        let (dev, j) = journal(8);
        let a = j.reserve(&entry()).unwrap();
        j.start_new_jset(); // closes X with the reservation outstanding
        let b = j.reserve(&entry()).unwrap();
        assert_eq!(b.seq, a.seq + 1);
        j.res_put(b);
        j.start_new_jset(); // closes X+1
        let x = a.seq;
        j.res_put(a);
        j.flush_all().unwrap();
        let scan = scan_journal(&*dev, j.geometry()).unwrap();
        let next = scan.jsets.get(&(x + 1)).expect("jset X+1 written");
        assert!(
            next.last_seq <= x,
            "jset {} claims last_seq {} while seq {x} still had an unpinned reservation",
            x + 1,
            next.last_seq
        );
        assert_eq!(j.pins_held(), 0, "the reservations' pins were released");
    }

    /// A reservation that cannot be had without waiting is refused by the non-waiting call
    /// (a commit holding node locks then drops them), and `make_room` makes it possible.
    #[test]
    fn nowait_reservation_refuses_instead_of_waiting() {
        let (_dev, j) = journal(8);
        let held = j.reserve(&entry()).unwrap();
        j.start_new_jset(); // the oldest closed jset cannot be written while `held` is out
        for _ in 1..MAX_CLOSED {
            let r = j.reserve(&entry()).unwrap();
            j.res_put(r);
            j.start_new_jset();
        }
        let len = entry().len();
        assert!(j.reserve_len_nowait(len).unwrap().is_none());
        j.res_put(held);
        j.make_room(len).unwrap();
        let r = j.reserve_len_nowait(len).unwrap().expect("room was made");
        j.cancel(&r);
        j.res_put(r);
        assert_eq!(j.pins_held(), 0);
    }
}
