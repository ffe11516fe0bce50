//! A sorted set of keys: the in-memory form of a bset.
//!
//! Key records are kept in their on-disk encoding in an append-only byte buffer; a sorted
//! array of small entries (position, offset, length, type) indexes them, so searching is a
//! binary search over a dense array and writing a set out is a copy of its records.
//!
//! Large sets also carry a sampled index — the position of every `STRIDE`-th entry in a dense
//! array — so a search touches a few cache lines of the index and one small block of entries
//! instead of missing the cache at every step of a binary search over the whole set (the
//! idea of bcachefs's per-cacheline auxiliary search trees, in its simplest form).
//!
//! Invariants: `ents` is sorted by position with no duplicates; every entry points at a
//! valid record in `buf` (records were validated when decoded from disk, or encoded by us);
//! `live_bytes` is the sum of the lengths of the records the entries point at (overwritten
//! records left in `buf` are garbage until the set is rebuilt); `index` is either empty or
//! `index[i] == ents[i * STRIDE].pos` for every `i`.

use crate::format::bkey::{KEY_HEADER_BYTES, KeyRef, KeyType, Pos, encode_key};

/// An index entry: the position (searched) and where the record is. 24 bytes, so a search
/// touches as few cache lines as possible; the record's length and type are in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ent {
    inode: u64,
    offset: u64,
    snapshot: u32,
    off: u32,
}

impl Ent {
    #[inline]
    fn new(pos: Pos, off: u32) -> Ent {
        Ent {
            inode: pos.inode,
            offset: pos.offset,
            snapshot: pos.snapshot,
            off,
        }
    }

    /// The key's position.
    #[inline]
    pub(crate) fn pos(&self) -> Pos {
        Pos {
            inode: self.inode,
            offset: self.offset,
            snapshot: self.snapshot,
        }
    }
}

const _: () = assert!(size_of::<Ent>() == 24);

/// Entries per index sample.
const STRIDE: usize = 16;
/// Sets smaller than this are searched directly.
const INDEX_MIN: usize = 4 * STRIDE;

/// A blocked Bloom filter over positions: one 64-byte block per key, 3 bits in it, so a
/// negative answer costs one cache line (a newer set that cannot hold the key is skipped
/// without searching it). About 10 bits per key: ~1-2% false positives.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bloom {
    blocks: Box<[[u64; 8]]>,
    keys: usize,
}

impl Bloom {
    #[inline]
    fn hash(p: Pos) -> u64 {
        let mut h = p.inode.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ p.offset.rotate_left(29);
        h = (h ^ u64::from(p.snapshot)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 31)
    }

    pub(crate) fn with_keys(n: usize) -> Bloom {
        let nblocks = (n * 10).div_ceil(512).max(1);
        Bloom {
            blocks: vec![[0u64; 8]; nblocks].into_boxed_slice(),
            keys: 0,
        }
    }

    #[inline]
    fn bits(&self, p: Pos) -> (usize, [(usize, u64); 3]) {
        let h = Self::hash(p);
        let b = ((h >> 32) as usize) % self.blocks.len().max(1);
        let bit = |s: u32| {
            let i = ((h >> s) & 511) as usize;
            (i / 64, 1u64 << (i % 64))
        };
        (b, [bit(0), bit(9), bit(18)])
    }

    pub(crate) fn add(&mut self, p: Pos) {
        if self.blocks.is_empty() {
            return;
        }
        let (b, bits) = self.bits(p);
        for (w, m) in bits {
            self.blocks[b][w] |= m;
        }
        self.keys += 1;
    }

    /// False if `p` is certainly absent; true if it may be present (or there is no filter).
    #[inline]
    pub(crate) fn may_contain(&self, p: Pos) -> bool {
        if self.blocks.is_empty() {
            return true;
        }
        let (b, bits) = self.bits(p);
        bits.iter().all(|&(w, m)| self.blocks[b][w] & m != 0)
    }

    /// Whether the filter is overloaded (more keys than it was sized for).
    pub(crate) fn full(&self) -> bool {
        self.keys * 10 > self.blocks.len() * 512
    }
}

/// A sorted set of keys.
///
/// Laid out so a search touches two cache lines of the header: the first holds the entries
/// and both index levels, the second the records and the filter.
#[derive(Clone, Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct KeySet {
    ents: Vec<Ent>,
    index: Box<[Pos]>,
    /// Every `STRIDE`-th sample of `index` (a second level, small enough to stay cached).
    top: Box<[Pos]>,
    live_bytes: usize,
    buf: Vec<u8>,
    bloom: Bloom,
}

impl KeySet {
    pub(crate) fn new() -> KeySet {
        KeySet::default()
    }

    pub(crate) fn with_capacity(keys: usize, bytes: usize) -> KeySet {
        KeySet {
            buf: Vec::with_capacity(bytes),
            ents: Vec::with_capacity(keys),
            live_bytes: 0,
            index: Box::default(),
            top: Box::default(),
            bloom: Bloom::default(),
        }
    }

    /// Builds the sampled index and the filter (call once a set is complete; `insert` drops
    /// the index and keeps the filter up to date).
    pub(crate) fn finish(&mut self) {
        self.index = if self.ents.len() >= INDEX_MIN {
            self.ents.iter().step_by(STRIDE).map(|e| e.pos()).collect()
        } else {
            Box::default()
        };
        self.top = if self.index.len() >= INDEX_MIN {
            self.index.iter().step_by(STRIDE).copied().collect()
        } else {
            Box::default()
        };
        debug_assert!(
            self.index
                .iter()
                .enumerate()
                .all(|(i, p)| self.ents[i * STRIDE].pos() == *p)
        );
        self.rebuild_bloom(self.ents.len());
        debug_assert!(
            self.index
                .iter()
                .enumerate()
                .all(|(i, p)| self.ents[i * STRIDE].pos() == *p)
        );
    }

    /// Narrows the search for `pred`'s partition point to one block using the index.
    #[inline]
    fn block(&self, pred: impl Fn(&Pos) -> bool) -> (usize, usize) {
        if self.index.is_empty() {
            return (0, self.ents.len());
        }
        // top[t] is the first top sample not satisfying `pred`, so the index's partition
        // point is in ((t-1)*STRIDE, t*STRIDE]; likewise index[j] bounds the entries.
        let j = if self.top.is_empty() {
            self.index.partition_point(|p| pred(p))
        } else {
            let t = self.top.partition_point(|p| pred(p));
            let lo = t.saturating_sub(1) * STRIDE;
            let hi = (t * STRIDE).min(self.index.len());
            lo + self.index[lo..hi].iter().take_while(|p| pred(p)).count()
        };
        let lo = j.saturating_sub(1) * STRIDE;
        let hi = (j * STRIDE + 1).min(self.ents.len());
        (lo, hi)
    }

    pub(crate) fn len(&self) -> usize {
        self.ents.len()
    }

    /// Encoded bytes of the live records.
    pub(crate) fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    /// Index of the first entry with position ≥ `pos`.
    #[inline]
    pub(crate) fn lower_bound(&self, pos: Pos) -> usize {
        let (lo, hi) = self.block(|p| *p < pos);
        let b = &self.ents[lo..hi];
        // A block is a few adjacent cache lines: scan it in order.
        lo + if b.len() <= 2 * STRIDE {
            b.iter().take_while(|e| e.pos() < pos).count()
        } else {
            b.partition_point(|e| e.pos() < pos)
        }
    }

    /// Index of the first entry with position > `pos`.
    #[inline]
    pub(crate) fn upper_bound(&self, pos: Pos) -> usize {
        let (lo, hi) = self.block(|p| *p <= pos);
        let b = &self.ents[lo..hi];
        lo + if b.len() <= 2 * STRIDE {
            b.iter().take_while(|e| e.pos() <= pos).count()
        } else {
            b.partition_point(|e| e.pos() <= pos)
        }
    }

    #[inline]
    pub(crate) fn ent(&self, i: usize) -> Option<&Ent> {
        self.ents.get(i)
    }

    /// The record bytes of entry `i`.
    #[inline]
    pub(crate) fn record(&self, i: usize) -> Option<&[u8]> {
        let e = self.ents.get(i)?;
        let off = e.off as usize;
        let hdr = self.buf.get(off..off + 2)?;
        let len = usize::from(u16::from_le_bytes([hdr[0], hdr[1]]));
        self.buf.get(off..off + len)
    }

    /// The key at entry `i`.
    #[inline]
    pub(crate) fn key(&self, i: usize) -> Option<KeyRef<'_>> {
        let rec = self.record(i)?;
        let size = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
        Some(KeyRef {
            pos: self.ents.get(i)?.pos(),
            typ: KeyType::from_u8(rec[2]).unwrap_or(KeyType::Deleted),
            size,
            val: &rec[KEY_HEADER_BYTES..],
        })
    }

    fn rebuild_bloom(&mut self, capacity: usize) {
        self.bloom = Bloom::with_keys(capacity.max(64));
        for e in &self.ents {
            self.bloom.add(e.pos());
        }
    }

    /// Exact lookup, skipping the search when the filter rules the key out.
    #[inline]
    pub(crate) fn find(&self, pos: Pos) -> Option<usize> {
        if !self.bloom.may_contain(pos) {
            return None;
        }
        self.find_unfiltered(pos)
    }

    /// Exact lookup without consulting the filter (for the last set searched, where a
    /// present key would pay for the filter and an absent one gains little).
    #[inline]
    pub(crate) fn find_unfiltered(&self, pos: Pos) -> Option<usize> {
        let i = self.lower_bound(pos);
        (self.ents.get(i)?.pos() == pos).then_some(i)
    }

    fn append_record(&mut self, k: &KeyRef<'_>) -> Ent {
        let off = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        encode_key(&mut self.buf, k.pos, k.typ, k.size, k.val);
        Ent::new(k.pos, off)
    }

    /// Inserts or replaces `k`. Returns the length of the record it replaced, if any.
    pub(crate) fn insert(&mut self, k: &KeyRef<'_>) -> Option<usize> {
        self.index = Box::default();
        self.top = Box::default();
        if self.bloom.full() || self.bloom.blocks.is_empty() {
            self.rebuild_bloom((self.ents.len() + 1) * 2);
        }
        self.bloom.add(k.pos);
        let e = self.append_record(k);
        let i = self.lower_bound(k.pos);
        self.live_bytes += k.encoded_len();
        let prev = self
            .record(i)
            .filter(|_| self.ents[i].pos() == k.pos)
            .map(<[u8]>::len);
        match self.ents.get_mut(i) {
            Some(old) if old.pos() == k.pos => {
                let prev = prev.unwrap_or(0);
                *old = e;
                self.live_bytes -= prev;
                Some(prev)
            }
            _ => {
                self.ents.insert(i, e);
                None
            }
        }
    }

    /// Appends `k`, which must sort after every key in the set.
    /// Call [`KeySet::finish`] after the last push.
    pub(crate) fn push_sorted(&mut self, k: &KeyRef<'_>) {
        debug_assert!(self.ents.last().is_none_or(|l| l.pos() < k.pos));
        let e = self.append_record(k);
        self.live_bytes += k.encoded_len();
        self.ents.push(e);
    }

    /// Builds a set from validated, strictly increasing key records.
    pub(crate) fn from_records(records: &[u8], nkeys: usize) -> KeySet {
        let mut s = KeySet::with_capacity(nkeys, records.len());
        s.buf.extend_from_slice(records);
        let mut at = 0usize;
        while at + KEY_HEADER_BYTES <= records.len() {
            let len = usize::from(u16::from_le_bytes([records[at], records[at + 1]]));
            if len < KEY_HEADER_BYTES || at + len > records.len() {
                break;
            }
            let Some(pos) = crate::format::bkey::peek_pos(&records[at..]) else {
                break;
            };
            s.ents
                .push(Ent::new(pos, u32::try_from(at).unwrap_or(u32::MAX)));
            s.live_bytes += len;
            at += len;
        }
        s.finish();
        s
    }

    /// Appends the records of all entries, in order, to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        for i in 0..self.ents.len() {
            if let Some(r) = self.record(i) {
                out.extend_from_slice(r);
            }
        }
    }

    /// Iterates keys in order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = KeyRef<'_>> + '_ {
        (0..self.ents.len()).filter_map(move |i| self.key(i))
    }

    /// Merges `sets` (oldest first) into one set: for a position in several sets the newest
    /// wins; with `drop_deleted`, whiteouts are dropped.
    pub(crate) fn merge(sets: &[&KeySet], drop_deleted: bool) -> KeySet {
        let total: usize = sets.iter().map(|s| s.len()).sum();
        let bytes: usize = sets.iter().map(|s| s.live_bytes).sum();
        let mut out = KeySet::with_capacity(total, bytes);
        let mut idx = vec![0usize; sets.len()];
        loop {
            // Smallest position among the heads; ties go to the newest set.
            let mut best: Option<(Pos, usize)> = None;
            for (si, s) in sets.iter().enumerate() {
                if let Some(e) = s.ents.get(idx[si])
                    && best.is_none_or(|(p, _)| e.pos() <= p)
                {
                    best = Some((e.pos(), si));
                }
            }
            let Some((pos, si)) = best else { break };
            if let Some(k) = sets[si].key(idx[si])
                && !(drop_deleted && k.typ == KeyType::Deleted)
            {
                out.push_sorted(&k);
            }
            for (sj, s) in sets.iter().enumerate() {
                if s.ents.get(idx[sj]).is_some_and(|e| e.pos() == pos) {
                    idx[sj] += 1;
                }
            }
        }
        out.finish();
        out
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, reason = "small test values")]
mod tests {
    use super::*;
    use crate::format::bkey::Key;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn keyset_matches_a_btreemap(ops in proptest::collection::vec((0u64..64, any::<bool>(), 0u8..255), 0..300)) {
            let mut s = KeySet::new();
            let mut m: BTreeMap<Pos, Key> = BTreeMap::new();
            for (p, del, v) in ops {
                let pos = Pos::new(p, 0, 0);
                let k = if del { Key::deleted(pos) } else { Key::cookie(pos, &vec![v; usize::from(v % 7)]) };
                s.insert(&k.as_ref());
                m.insert(pos, k);
            }
            let got: Vec<Key> = s.iter().map(|k| k.to_owned()).collect();
            let want: Vec<Key> = m.values().cloned().collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(s.live_bytes(), want.iter().map(|k| k.encoded_len()).sum::<usize>());
            let mut enc = Vec::new();
            s.encode_into(&mut enc);
            let r = KeySet::from_records(&enc, s.len());
            prop_assert_eq!(r.iter().map(|k| k.to_owned()).collect::<Vec<_>>(), want);
        }

        #[test]
        fn indexed_search_matches_a_plain_one(keys in proptest::collection::btree_set(0u64..100_000, 0..6000), probes in proptest::collection::vec(0u64..100_001, 1..200)) {
            let mut s = KeySet::new();
            for &k in &keys {
                s.push_sorted(&Key::cookie(Pos::new(0, k, 0), b"").as_ref());
            }
            s.finish();
            for p in probes {
                let pos = Pos::new(0, p, 0);
                prop_assert_eq!(s.lower_bound(pos), s.ents.partition_point(|e| e.pos() < pos));
                prop_assert_eq!(s.upper_bound(pos), s.ents.partition_point(|e| e.pos() <= pos));
            }
        }

        #[test]
        fn the_filter_never_hides_a_present_key(keys in proptest::collection::vec(any::<(u64, u64, u32)>(), 0..2000)) {
            let mut s = KeySet::new();
            for &(i, o, sn) in &keys {
                s.insert(&Key::cookie(Pos::new(i, o, sn), b"").as_ref());
            }
            for &(i, o, sn) in &keys {
                prop_assert!(s.find(Pos::new(i, o, sn)).is_some());
            }
            let mut t = KeySet::new();
            for k in s.iter() {
                t.push_sorted(&k);
            }
            t.finish();
            for &(i, o, sn) in &keys {
                prop_assert!(t.find(Pos::new(i, o, sn)).is_some());
            }
        }

        #[test]
        fn merge_takes_the_newest_version(a in proptest::collection::vec((0u64..32, any::<bool>()), 0..50),
                                          b in proptest::collection::vec((0u64..32, any::<bool>()), 0..50)) {
            let mut m: BTreeMap<Pos, Key> = BTreeMap::new();
            let mut sets = [KeySet::new(), KeySet::new()];
            for (i, ops) in [a, b].into_iter().enumerate() {
                for (p, del) in ops {
                    let pos = Pos::new(p, 0, 0);
                    let k = if del { Key::deleted(pos) } else { Key::cookie(pos, &[i as u8]) };
                    sets[i].insert(&k.as_ref());
                    m.insert(pos, k);
                }
            }
            let merged = KeySet::merge(&[&sets[0], &sets[1]], false);
            prop_assert_eq!(merged.iter().map(|k| k.to_owned()).collect::<Vec<_>>(), m.values().cloned().collect::<Vec<_>>());
            let live = KeySet::merge(&[&sets[0], &sets[1]], true);
            prop_assert_eq!(live.iter().map(|k| k.to_owned()).collect::<Vec<_>>(),
                m.values().filter(|k| !k.is_deleted()).cloned().collect::<Vec<_>>());
        }
    }
}
