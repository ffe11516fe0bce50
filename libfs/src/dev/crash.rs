//! The crash device: an in-memory block device that knows which writes are durable.
//!
//! Every write since the last flush is *pending*: a power cut may drop it, keep it, or tear
//! it (keep only some of its 512-byte sectors; sector writes are atomic). A flush makes every
//! pending write durable. [`CrashDevice::crash_now`] builds the image a power cut would leave
//! right now with a chosen set of pending writes surviving; with recording on, a
//! [`CrashLog`] builds the image after a power cut at *any* earlier flush boundary.
//!
//! Cost model: contents are kept in 4 KiB chunks shared copy-on-write (`Arc`) in a sparse map,
//! so unwritten space costs nothing (a "1 TiB" device is fine), an image costs one map clone
//! (pointer copies) plus the chunks touched by the writes replayed onto it, and images are
//! full `CrashDevice`s that can be written to and crashed again. A log caches the durable
//! image of the last epoch it built, so enumerating points in epoch order replays each write
//! once.
//!
//! Error injection: rules fail reads, writes or flushes at an offset range, after N matching
//! operations, a number of times or forever.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{BlockDevice, DevError, check_range, us};

const CHUNK: usize = 4096;

/// Sparse copy-on-write contents.
#[derive(Clone, Debug, Default)]
struct Image {
    chunks: HashMap<u64, Arc<[u8; CHUNK]>>,
}

impl Image {
    fn read(&self, buf: &mut [u8], offset: u64) {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let c = at / CHUNK as u64;
            let o = us(at % CHUNK as u64);
            let n = (CHUNK - o).min(buf.len() - done);
            match self.chunks.get(&c) {
                Some(ch) => buf[done..done + n].copy_from_slice(&ch[o..o + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
    }

    fn write(&mut self, data: &[u8], offset: u64) {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let c = at / CHUNK as u64;
            let o = us(at % CHUNK as u64);
            let n = (CHUNK - o).min(data.len() - done);
            let ch = self
                .chunks
                .entry(c)
                .or_insert_with(|| Arc::new([0u8; CHUNK]));
            Arc::make_mut(ch)[o..o + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// Writes only the sectors of `data` whose bit is set in `keep`.
    fn write_torn(&mut self, data: &[u8], offset: u64, keep: &[bool]) {
        for (i, k) in keep.iter().enumerate() {
            let s = i * 512;
            if *k && s < data.len() {
                let e = (s + 512).min(data.len());
                self.write(&data[s..e], offset + s as u64);
            }
        }
    }
}

/// One recorded write.
#[derive(Clone, Debug)]
struct Write {
    offset: u64,
    data: Arc<[u8]>,
}

/// Which pending writes survive a power cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Survivors {
    /// None: only durable data.
    None,
    /// All of them.
    All,
    /// The first `n` in issue order.
    Prefix(usize),
    /// These indexes (issue order).
    Some(Vec<usize>),
}

impl Survivors {
    fn contains(&self, i: usize) -> bool {
        match self {
            Survivors::None => false,
            Survivors::All => true,
            Survivors::Prefix(n) => i < *n,
            Survivors::Some(v) => v.contains(&i),
        }
    }
}

/// A write that reached the medium only partly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Torn {
    /// Index of the write (issue order within its epoch).
    pub write: usize,
    /// Which of its 512-byte sectors were written.
    pub sectors: Vec<bool>,
}

/// A power-cut moment: during `epoch` (after `epoch` flushes of the recording completed),
/// with some of that epoch's writes surviving, maybe one of them torn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashPoint {
    /// Flushes completed before the cut.
    pub epoch: usize,
    /// Which writes of the epoch survive.
    pub survivors: Survivors,
    /// A surviving-in-part write (overrides `survivors` for that write).
    pub torn: Option<Torn>,
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {} survivors {:?}", self.epoch, self.survivors)?;
        if let Some(t) = &self.torn {
            let kept: String = t
                .sectors
                .iter()
                .map(|&k| if k { '1' } else { '0' })
                .collect();
            write!(f, " torn write {} sectors {kept}", t.write)?;
        }
        Ok(())
    }
}

/// Which operations an error rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorOp {
    /// Reads.
    Read,
    /// Writes.
    Write,
    /// Flushes.
    Flush,
}

/// An injected-error rule.
#[derive(Clone, Debug)]
pub struct ErrorRule {
    /// Operation matched.
    pub op: ErrorOp,
    /// Byte range a read/write must overlap (`None`: any).
    pub range: Option<(u64, u64)>,
    /// Let this many matching operations through first.
    pub after: u64,
    /// Fail this many times (`None`: forever).
    pub times: Option<u64>,
}

/// Identifies an injected rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleId(pub usize);

/// Operation counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevStats {
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
    /// Flushes.
    pub flushes: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
}

#[derive(Debug)]
struct Recording {
    base: Image,
    epochs: Vec<Vec<Write>>,
}

#[derive(Debug)]
struct Inner {
    durable: Image,
    volatile: Image,
    pending: Vec<Write>,
    recording: Option<Recording>,
    rules: Vec<(ErrorRule, u64, u64)>,
    stats: DevStats,
}

/// The crash device.
#[derive(Debug)]
pub struct CrashDevice {
    name: String,
    size: u64,
    block: u32,
    inner: Mutex<Inner>,
}

impl CrashDevice {
    /// A zero-filled device of `size` bytes.
    pub fn new(size: u64, logical_block_size: u32) -> CrashDevice {
        CrashDevice::from_parts(size, logical_block_size, Image::default())
    }

    fn from_parts(size: u64, block: u32, img: Image) -> CrashDevice {
        CrashDevice {
            name: format!("crash device ({size} bytes)"),
            size,
            block,
            inner: Mutex::new(Inner {
                durable: img.clone(),
                volatile: img,
                pending: Vec::new(),
                recording: None,
                rules: Vec::new(),
                stats: DevStats::default(),
            }),
        }
    }

    /// A device holding `bytes` (all durable).
    pub fn from_image(bytes: &[u8], logical_block_size: u32) -> CrashDevice {
        let mut img = Image::default();
        img.write(bytes, 0);
        CrashDevice::from_parts(bytes.len() as u64, logical_block_size, img)
    }

    /// The current (volatile) contents.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; usize::try_from(self.size).unwrap_or(0)];
        self.inner.lock().volatile.read(&mut v, 0);
        v
    }

    /// Writes since the last flush.
    pub fn pending_writes(&self) -> usize {
        self.inner.lock().pending.len()
    }

    /// Flushes so far.
    pub fn flushes(&self) -> u64 {
        self.inner.lock().stats.flushes
    }

    /// Counters.
    pub fn stats(&self) -> DevStats {
        self.inner.lock().stats
    }

    /// The image a power cut would leave now, with `survivors` of the pending writes.
    pub fn crash_now(&self, survivors: &Survivors, torn: Option<&Torn>) -> CrashDevice {
        let g = self.inner.lock();
        let mut img = g.durable.clone();
        apply(&mut img, &g.pending, survivors, torn);
        CrashDevice::from_parts(self.size, self.block, img)
    }

    /// Only the durable data.
    pub fn durable_image(&self) -> CrashDevice {
        self.crash_now(&Survivors::None, None)
    }

    /// Starts recording writes and flushes from the current durable state; the writes
    /// pending now form the start of epoch 0.
    pub fn start_recording(&self) {
        let mut g = self.inner.lock();
        let epochs = vec![g.pending.clone()];
        g.recording = Some(Recording {
            base: g.durable.clone(),
            epochs,
        });
    }

    /// A snapshot of the recording (cheap: data is shared).
    pub fn history(&self) -> CrashLog {
        let g = self.inner.lock();
        let (base, epochs) = match &g.recording {
            Some(r) => (r.base.clone(), r.epochs.clone()),
            None => (g.durable.clone(), vec![g.pending.clone()]),
        };
        CrashLog {
            size: self.size,
            block: self.block,
            base,
            epochs,
            cache: Mutex::new(None),
        }
    }

    /// Adds an error rule.
    pub fn inject(&self, rule: ErrorRule) -> RuleId {
        let mut g = self.inner.lock();
        g.rules.push((rule, 0, 0));
        RuleId(g.rules.len() - 1)
    }

    /// How many times rule `id` fired.
    pub fn fired(&self, id: RuleId) -> u64 {
        self.inner.lock().rules.get(id.0).map_or(0, |r| r.2)
    }

    /// Removes every rule.
    pub fn clear_injections(&self) {
        self.inner.lock().rules.clear();
    }

    fn check_rules(
        g: &mut Inner,
        name: &str,
        op: ErrorOp,
        offset: u64,
        len: usize,
    ) -> Result<(), DevError> {
        for (i, (r, seen, fired)) in g.rules.iter_mut().enumerate() {
            if r.op != op {
                continue;
            }
            if let Some((a, b)) = r.range
                && (op == ErrorOp::Flush || offset >= b || offset + len as u64 <= a)
            {
                continue;
            }
            *seen += 1;
            if *seen > r.after && r.times.is_none_or(|t| *fired < t) {
                *fired += 1;
                let opn = match op {
                    ErrorOp::Read => "read",
                    ErrorOp::Write => "write",
                    ErrorOp::Flush => "flush",
                };
                return Err(DevError::Injected {
                    dev: name.to_string(),
                    op: opn,
                    offset,
                    detail: format!("rule {i}"),
                });
            }
        }
        Ok(())
    }
}

fn apply(img: &mut Image, writes: &[Write], survivors: &Survivors, torn: Option<&Torn>) {
    for (i, w) in writes.iter().enumerate() {
        match torn {
            Some(t) if t.write == i => img.write_torn(&w.data, w.offset, &t.sectors),
            _ => {
                if survivors.contains(i) {
                    img.write(&w.data, w.offset);
                }
            }
        }
    }
}

impl BlockDevice for CrashDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DevError> {
        check_range(&self.name, "read", offset, buf.len(), self.size)?;
        let mut g = self.inner.lock();
        Self::check_rules(&mut g, &self.name, ErrorOp::Read, offset, buf.len())?;
        g.stats.reads += 1;
        g.stats.bytes_read += buf.len() as u64;
        g.volatile.read(buf, offset);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DevError> {
        check_range(&self.name, "write", offset, buf.len(), self.size)?;
        if let Some(e) = crate::fault!("dev:crash_write") {
            return Err(DevError::Injected {
                dev: self.name.clone(),
                op: "write",
                offset,
                detail: e.to_string(),
            });
        }
        let mut g = self.inner.lock();
        Self::check_rules(&mut g, &self.name, ErrorOp::Write, offset, buf.len())?;
        g.stats.writes += 1;
        g.stats.bytes_written += buf.len() as u64;
        g.volatile.write(buf, offset);
        let w = Write {
            offset,
            data: Arc::from(buf),
        };
        if let Some(r) = &mut g.recording
            && let Some(e) = r.epochs.last_mut()
        {
            e.push(w.clone());
        }
        g.pending.push(w);
        Ok(())
    }

    fn flush(&self) -> Result<(), DevError> {
        let mut g = self.inner.lock();
        Self::check_rules(&mut g, &self.name, ErrorOp::Flush, 0, 0)?;
        g.stats.flushes += 1;
        let pending = std::mem::take(&mut g.pending);
        for w in &pending {
            g.durable.write(&w.data, w.offset);
        }
        if let Some(r) = &mut g.recording {
            r.epochs.push(Vec::new());
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.size
    }

    fn logical_block_size(&self) -> u32 {
        self.block
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// How to enumerate crash points.
#[derive(Clone, Debug)]
pub struct EnumPlan {
    /// Random survivor subsets per epoch (besides none, all and a prefix).
    pub random_subsets: usize,
    /// Torn variants per epoch.
    pub torn: usize,
    /// Seed for the random choices.
    pub seed: u64,
}

/// A recorded history of writes and flushes.
#[derive(Debug)]
pub struct CrashLog {
    size: u64,
    block: u32,
    base: Image,
    epochs: Vec<Vec<Write>>,
    cache: Mutex<Option<(usize, Image)>>,
}

impl CrashLog {
    /// Number of epochs (flushes recorded + 1).
    pub fn epochs(&self) -> usize {
        self.epochs.len()
    }

    /// Writes in epoch `k`.
    pub fn writes_in_epoch(&self, k: usize) -> usize {
        self.epochs.get(k).map_or(0, Vec::len)
    }

    /// Sectors written by write `w` of epoch `k`.
    pub fn write_sectors(&self, k: usize, w: usize) -> usize {
        self.epochs
            .get(k)
            .and_then(|e| e.get(w))
            .map_or(0, |w| w.data.len().div_ceil(512))
    }

    /// The durable image at the start of epoch `k`.
    fn durable_at(&self, k: usize) -> Image {
        let mut c = self.cache.lock();
        let (mut at, mut img) = match c.take() {
            Some((ck, img)) if ck <= k => (ck, img),
            _ => (0, self.base.clone()),
        };
        while at < k {
            if let Some(e) = self.epochs.get(at) {
                for w in e {
                    img.write(&w.data, w.offset);
                }
            }
            at += 1;
        }
        *c = Some((k, img.clone()));
        img
    }

    /// The image after a power cut at `point`.
    pub fn image(&self, point: &CrashPoint) -> CrashDevice {
        let mut img = self.durable_at(point.epoch);
        if let Some(e) = self.epochs.get(point.epoch) {
            apply(&mut img, e, &point.survivors, point.torn.as_ref());
        }
        CrashDevice::from_parts(self.size, self.block, img)
    }

    /// Crash points for every epoch: none and all survive, a random prefix, random subsets,
    /// and torn variants — deterministic for a seed, in epoch order.
    pub fn points(&self, plan: &EnumPlan) -> Vec<CrashPoint> {
        let mut rng = SmallRng::seed_from_u64(plan.seed);
        let mut out = Vec::new();
        for (k, e) in self.epochs.iter().enumerate() {
            let n = e.len();
            out.push(CrashPoint {
                epoch: k,
                survivors: Survivors::None,
                torn: None,
            });
            if n == 0 {
                continue;
            }
            out.push(CrashPoint {
                epoch: k,
                survivors: Survivors::All,
                torn: None,
            });
            if n > 1 {
                out.push(CrashPoint {
                    epoch: k,
                    survivors: Survivors::Prefix(rng.gen_range(1..n)),
                    torn: None,
                });
            }
            for _ in 0..plan.random_subsets.min(if n > 1 { usize::MAX } else { 0 }) {
                let v: Vec<usize> = (0..n).filter(|_| rng.gen_bool(0.5)).collect();
                out.push(CrashPoint {
                    epoch: k,
                    survivors: Survivors::Some(v),
                    torn: None,
                });
            }
            for _ in 0..plan.torn {
                let w = rng.gen_range(0..n);
                let secs = e[w].data.len().div_ceil(512);
                if secs < 2 {
                    continue;
                }
                let sectors: Vec<bool> = (0..secs).map(|_| rng.gen_bool(0.5)).collect();
                let v: Vec<usize> = (0..n).filter(|&i| i != w && rng.gen_bool(0.5)).collect();
                out.push(CrashPoint {
                    epoch: k,
                    survivors: Survivors::Some(v),
                    torn: Some(Torn { write: w, sectors }),
                });
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, reason = "small test values")]
mod tests {
    use super::{CrashDevice, CrashPoint, ErrorOp, ErrorRule, Survivors, Torn};
    use crate::dev::BlockDevice;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn flushed_writes_survive_and_unflushed_may_not() {
        let d = CrashDevice::new(1 << 20, 512);
        d.write_at(&[1u8; 1024], 0).unwrap();
        d.flush().unwrap();
        d.write_at(&[2u8; 512], 512).unwrap();
        d.write_at(&[3u8; 512], 4096).unwrap();
        assert_eq!(d.pending_writes(), 2);
        let mut b = [0u8; 512];
        let none = d.crash_now(&Survivors::None, None);
        none.read_at(&mut b, 512).unwrap();
        assert_eq!(
            b, [1u8; 512],
            "a flushed write was lost or an unflushed one kept"
        );
        none.read_at(&mut b, 4096).unwrap();
        assert_eq!(b, [0u8; 512]);
        let all = d.crash_now(&Survivors::All, None);
        all.read_at(&mut b, 512).unwrap();
        assert_eq!(b, [2u8; 512]);
        let second = d.crash_now(&Survivors::Some(vec![1]), None);
        second.read_at(&mut b, 512).unwrap();
        assert_eq!(b, [1u8; 512]);
        second.read_at(&mut b, 4096).unwrap();
        assert_eq!(b, [3u8; 512]);
        let first = d.crash_now(&Survivors::Prefix(1), None);
        first.read_at(&mut b, 4096).unwrap();
        assert_eq!(b, [0u8; 512]);
    }

    #[test]
    fn torn_writes_keep_exactly_the_chosen_sectors() {
        let d = CrashDevice::new(1 << 20, 512);
        let data: Vec<u8> = (0..2048).map(|i| (i / 512 + 1) as u8).collect();
        d.write_at(&data, 8192).unwrap();
        let t = Torn {
            write: 0,
            sectors: vec![true, false, false, true],
        };
        let img = d.crash_now(&Survivors::None, Some(&t));
        let mut b = vec![0u8; 2048];
        img.read_at(&mut b, 8192).unwrap();
        assert!(b[..512].iter().all(|&x| x == 1));
        assert!(b[512..1536].iter().all(|&x| x == 0));
        assert!(b[1536..].iter().all(|&x| x == 4));
    }

    #[test]
    fn error_rules_fire_exactly_as_configured() {
        let d = CrashDevice::new(1 << 20, 512);
        let id = d.inject(ErrorRule {
            op: ErrorOp::Write,
            range: Some((4096, 8192)),
            after: 2,
            times: Some(2),
        });
        let mut results = Vec::new();
        for _ in 0..6 {
            results.push(d.write_at(&[9u8; 512], 4096).is_ok());
        }
        assert_eq!(results, [true, true, false, false, true, true]);
        assert!(d.write_at(&[9u8; 512], 0).is_ok(), "outside the range");
        assert_eq!(d.fired(id), 2);
        d.inject(ErrorRule {
            op: ErrorOp::Flush,
            range: None,
            after: 0,
            times: None,
        });
        assert!(d.flush().is_err());
        assert!(d.flush().is_err());
        d.clear_injections();
        assert!(d.flush().is_ok());
    }

    #[test]
    fn images_are_full_devices_that_crash_again() {
        let d = CrashDevice::new(1 << 20, 512);
        d.write_at(&[5u8; 512], 0).unwrap();
        let img = d.crash_now(&Survivors::All, None);
        img.write_at(&[6u8; 512], 512).unwrap();
        let again = img.crash_now(&Survivors::None, None);
        let mut b = [0u8; 1024];
        again.read_at(&mut b, 0).unwrap();
        assert_eq!(&b[..512], &[5u8; 512]);
        assert_eq!(&b[512..], &[0u8; 512]);
    }

    #[test]
    fn a_terabyte_device_costs_only_what_is_written() {
        let d = CrashDevice::new(1 << 40, 4096);
        d.write_at(&[1u8; 4096], (1 << 40) - 4096).unwrap();
        assert_eq!(d.inner.lock().volatile.chunks.len(), 1);
    }

    proptest! {
        /// Images at every flush boundary equal a byte-array model replaying the same choices.
        #[test]
        fn images_match_a_model(ops in proptest::collection::vec((0u8..4, 0u64..60, 1usize..4, any::<u8>()), 1..60),
                                choice in any::<u64>()) {
            let size = 64 * 512;
            let d = CrashDevice::new(size, 512);
            d.start_recording();
            // Model: per epoch the writes; the durable image before each epoch.
            let mut epochs: Vec<Vec<(usize, Vec<u8>)>> = vec![vec![]];
            for (op, at, secs, v) in ops {
                if op == 0 {
                    d.flush().unwrap();
                    epochs.push(vec![]);
                } else {
                    let off = (at as usize % (64 - secs)) * 512;
                    let data = vec![v; secs * 512];
                    d.write_at(&data, off as u64).unwrap();
                    epochs.last_mut().unwrap().push((off, data));
                }
            }
            let log = d.history();
            prop_assert_eq!(log.epochs(), epochs.len());
            let mut rng = SmallRng::seed_from_u64(choice);
            let mut durable = vec![0u8; size as usize];
            for (k, e) in epochs.iter().enumerate() {
                let pick: Vec<usize> = (0..e.len()).filter(|_| rng.gen_bool(0.5)).collect();
                let mut model = durable.clone();
                for &i in &pick {
                    let (off, data) = &e[i];
                    model[*off..off + data.len()].copy_from_slice(data);
                }
                let img = log.image(&CrashPoint { epoch: k, survivors: Survivors::Some(pick), torn: None });
                let mut got = vec![0u8; size as usize];
                img.read_at(&mut got, 0).unwrap();
                prop_assert!(got == model, "epoch {k} differs");
                for (off, data) in e {
                    durable[*off..off + data.len()].copy_from_slice(data);
                }
            }
        }
    }
}
