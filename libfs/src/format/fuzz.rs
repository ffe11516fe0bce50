//! Fuzz harnesses: one function per decoder, shared by the `cargo fuzz` targets in `fuzz/`
//! and by the corpus replay test (`libfs/tests/fuzz_corpus.rs`), so CI replays the checked-in
//! corpus through exactly what the fuzzers ran.
//!
//! Each harness decodes arbitrary bytes and must never panic; when decoding succeeds it also
//! checks what a decoder promises (a decoded value encodes back to the bytes it came from,
//! iterators over validated data yield what was validated) and panics if that breaks — a
//! panic here is a bug the fuzzer found. Decoders that take parameters (filesystem magic,
//! checksum type, block size) get them from the first input byte, see [`params`].

use super::bkey::{Key, KeyRef, KeyType, Pos, decode_key, encode_key};
use super::btree_node::{decode_entry, encode_entry, validate_keys};
use super::btree_ptr::{BTREE_PTR_BYTES, BtreePtr};
use super::csum::ChecksumType;
use super::jset::{decode_jset, entries_iter};
use super::superblock::Superblock;

/// The filesystem magic the node and jset harnesses use.
pub const FUZZ_MAGIC: u64 = 0x5eed_f00d_0000_0001;

/// Decoder parameters taken from the first input byte (see [`params`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Checksum type.
    pub csum: ChecksumType,
    /// Block size in bytes.
    pub block: usize,
    /// Whether the node seq is known (node entries after the first).
    pub known_seq: bool,
    /// Btree level (key sets).
    pub level: u8,
}

/// Parameters from the first input byte: bits 0-1 the checksum (`0`/`3` none — so mutated
/// inputs get past the checksum — `1` crc32c, `2` blake3), bits 2-4 the block size
/// (`512 << n`, up to 64 KiB), bit 5 whether the node seq is known (node entries), bits 6-7
/// the level (key sets). Returns them and the rest of the input.
pub fn params(data: &[u8]) -> Option<(Params, &[u8])> {
    let (&p, rest) = data.split_first()?;
    let csum = match p & 3 {
        1 => ChecksumType::Crc32c,
        2 => ChecksumType::Blake3,
        _ => ChecksumType::None,
    };
    let params = Params {
        csum,
        block: 512 << ((p >> 2) & 7),
        known_seq: p & 0x20 != 0,
        level: p >> 6,
    };
    Some((params, rest))
}

/// The first input byte that selects these parameters (the inverse of [`params`]).
pub fn params_byte(p: Params) -> u8 {
    let c = match p.csum {
        ChecksumType::None => 0,
        ChecksumType::Crc32c => 1,
        ChecksumType::Blake3 => 2,
    };
    let b = u8::try_from((p.block / 512).trailing_zeros() & 7).unwrap_or(0);
    c | (b << 2) | (u8::from(p.known_seq) << 5) | ((p.level & 3) << 6)
}

/// A superblock copy (the whole input; trailing bytes play the copy's zero padding), as it
/// is and — since almost every mutant fails the checksum — with the checksum fixed, so the
/// field checks behind it are fuzzed too.
pub fn superblock(data: &[u8]) {
    check_superblock(data);
    if data.len() >= 28 {
        let mut d = data.to_vec();
        let bytes = usize::try_from(u32::from_le_bytes([d[24], d[25], d[26], d[27]]))
            .unwrap_or(usize::MAX)
            .clamp(20, d.len());
        let c = crc32c::crc32c(&d[20..bytes]);
        d[16..20].copy_from_slice(&c.to_le_bytes());
        check_superblock(&d);
    }
}

fn check_superblock(data: &[u8]) {
    let _ = Superblock::peek_len(data);
    let Ok(sb) = Superblock::decode(data) else {
        return;
    };
    assert!(
        sb.validate().is_ok(),
        "decoded superblock does not validate"
    );
    let e = sb.encode().expect("a decoded superblock encodes");
    assert_eq!(
        &e[..],
        &data[..e.len()],
        "a decoded superblock encodes to other bytes"
    );
    assert_eq!(Superblock::decode(&e).as_ref(), Ok(&sb));
    if let Some(c) = &sb.clean
        && let Some(it) = entries_iter(&c.entries)
    {
        for en in it {
            let _ = en.keys().count();
            let _ = en.root();
        }
    }
}

fn reencode(k: &KeyRef<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    encode_key(&mut b, k.pos, k.typ, k.size, k.val);
    b
}

/// A run of key records: each decoded (and re-encoded to the same bytes) until one fails;
/// the whole run checked as a node's key set with a count and level from the input.
pub fn keys(data: &[u8]) {
    let Some((Params { level, .. }, rest)) = params(data) else {
        return;
    };
    let mut at = 0;
    let mut n = 0u32;
    while let Ok((k, len)) = decode_key(&rest[at..]) {
        assert!(len >= 28 && len == k.encoded_len(), "bad key length {len}");
        assert_eq!(
            reencode(&k),
            &rest[at..at + len],
            "key re-encodes differently"
        );
        assert_eq!(Key::as_ref(&k.to_owned()), k);
        at += len;
        n += 1;
    }
    let (min, max) = (Pos::default(), super::bkey::POS_MAX);
    if validate_keys(rest, n, level, min, max).is_ok() {
        assert_eq!(at, rest.len(), "a valid key set has trailing bytes");
        assert!(
            level == 0 || rest.is_empty() || has_only_ptrs_or_deleted(rest),
            "interior key set with leaf keys"
        );
    }
}

fn has_only_ptrs_or_deleted(mut b: &[u8]) -> bool {
    while let Ok((k, len)) = decode_key(b) {
        if !matches!(k.typ, KeyType::BtreePtr | KeyType::Deleted) {
            return false;
        }
        b = &b[len..];
    }
    true
}

/// A `btree_ptr` value (the whole input).
pub fn btree_ptr(data: &[u8]) {
    if let Ok(p) = BtreePtr::decode(data) {
        assert_eq!(data.len(), BTREE_PTR_BYTES);
        assert_eq!(&p.encode()[..], data, "btree_ptr re-encodes differently");
    }
}

/// A btree node entry at the start of the input (after the parameter byte), as read from a
/// node: decoded, its keys walked, and re-encoded to the same checksummed bytes.
pub fn btree_node(data: &[u8]) {
    let Some((
        Params {
            csum,
            block,
            known_seq,
            ..
        },
        rest,
    )) = params(data)
    else {
        return;
    };
    // A known seq is the one the entry carries when that decodes, so both paths are reached.
    let seq = known_seq.then(|| rest.get(24..32).map_or(0, le64));
    let Ok(e) = decode_entry(rest, FUZZ_MAGIC, seq, 0, csum, block) else {
        return;
    };
    let used = 96 + e.keys.len();
    assert!(e.disk_bytes >= used && e.disk_bytes.is_multiple_of(block));
    let mut n = 0;
    let mut b = e.keys;
    while let Ok((k, len)) = decode_key(b) {
        assert!(k.pos >= e.info.min_pos && k.pos <= e.info.max_pos);
        b = &b[len..];
        n += 1;
    }
    assert!(
        b.is_empty() && n == e.info.nkeys,
        "validated keys do not walk"
    );
    let mut out = Vec::new();
    encode_entry(&mut out, &e.info, e.keys, FUZZ_MAGIC, csum, block);
    assert_eq!(&out[..used], &rest[..used], "entry re-encodes differently");
}

/// A jset at the start of the input (after the parameter byte), and the same bytes read as a
/// clean section's entries.
pub fn jset(data: &[u8]) {
    let Some((Params { csum, block, .. }, rest)) = params(data) else {
        return;
    };
    if let Ok(j) = decode_jset(rest, FUZZ_MAGIC, csum, block) {
        assert!(j.seq >= j.last_seq && j.last_seq >= 1);
        assert!(j.disk_bytes >= 56 + j.entries.len() && j.disk_bytes.is_multiple_of(block));
        let mut walked = 0;
        for en in j.iter() {
            walked += 8 + en.payload.len();
            for k in en.keys() {
                let _ = reencode(&k);
            }
            let _ = en.root();
        }
        assert_eq!(walked, j.entries.len(), "validated entries do not walk");
    }
    if let Some(it) = entries_iter(rest) {
        let walked: usize = it.map(|e| 8 + e.payload.len()).sum();
        assert_eq!(walked, rest.len(), "validated clean entries do not walk");
    }
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip() {
        for csum in [
            ChecksumType::None,
            ChecksumType::Crc32c,
            ChecksumType::Blake3,
        ] {
            for block in [512, 4096, 65536] {
                for known in [false, true] {
                    for level in 0..4 {
                        let p = Params {
                            csum,
                            block,
                            known_seq: known,
                            level,
                        };
                        let b = [params_byte(p)];
                        assert_eq!(params(&b), Some((p, &[][..])));
                    }
                }
            }
        }
    }

    #[test]
    fn harnesses_take_any_bytes() {
        for len in [0usize, 1, 7, 28, 48, 57, 97, 300] {
            for fill in [0u8, 0xff, 0x55] {
                let d = vec![fill; len];
                superblock(&d);
                keys(&d);
                btree_ptr(&d);
                btree_node(&d);
                jset(&d);
            }
        }
    }
}
