//! Reading and writing nodes.
//!
//! Reading checks a node against the pointer that led to it: the first entry must carry the
//! pointer's node seq, btree, level and range; entries are read until one is not this node's
//! (end of what was written) or is damaged (a torn append), and at least the pointer's
//! `sectors_written` must be valid — otherwise the node is torn or stale and the read fails.
//! Entries whose journal seq is blacklisted (written ahead of a journal that never became
//! durable) are skipped, but still occupy their space.
//!
//! Writing appends one entry holding every unwritten key; the node's unwritten log is taken
//! under its read lock and the IO happens after it is released. The node's journal pin moves to the
//! write in flight and is released when the write completes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::keyset::KeySet;
use super::node::{Node, NodeData, WriteState};
use super::{Btree, BtreeConfig, BtreeError, sectors};
use crate::dev::BlockDevice;
use crate::format::bkey::Pos;
use crate::format::btree_id::BtreeId;
use crate::format::btree_node::{EntryError, EntryInfo, decode_entry, encode_entry};
use crate::format::btree_ptr::BtreePtr;

fn corrupt(
    btree: BtreeId,
    level: u8,
    min: Pos,
    max: Pos,
    offset: u64,
    detail: String,
) -> BtreeError {
    BtreeError::Corrupt {
        btree,
        level,
        min,
        max,
        offset,
        detail,
    }
}

/// Reads and checks the node `ptr` points at, expected to be `btree`'s node at `level`
/// covering `[ptr.min_pos, max]`. `cur_seq` bounds the journal seqs its entries may carry.
pub(crate) fn read_node_raw(
    dev: &dyn BlockDevice,
    cfg: &BtreeConfig,
    cur_seq: u64,
    ptr: &BtreePtr,
    btree: BtreeId,
    level: u8,
    max: Pos,
) -> Result<Node, BtreeError> {
    let min = ptr.min_pos;
    let base = ptr.sector.saturating_mul(512);
    let node_size = cfg.node_size as usize;
    let bad = |offset: u64, detail: String| corrupt(btree, level, min, max, offset, detail);
    if base
        .checked_add(node_size as u64)
        .is_none_or(|e| e > dev.len())
        || !base.is_multiple_of(node_size as u64)
    {
        return Err(bad(
            base,
            format!(
                "pointer to sector {} is outside the device or unaligned",
                ptr.sector
            ),
        ));
    }
    let mut buf = vec![0u8; node_size];
    dev.read_at(&mut buf, base)?;
    let bs = cfg.block_size as usize;
    let first = match decode_entry(&buf, cfg.magic, None, 0, cfg.csum, bs) {
        Ok(e) => e,
        Err(EntryError::End) => {
            return Err(bad(
                base,
                "no node here (bad magic: stale or wrong pointer)".into(),
            ));
        }
        Err(EntryError::Corrupt(e)) => return Err(bad(base, format!("first entry: {e}"))),
    };
    let i = first.info;
    if i.node_seq != ptr.node_seq {
        return Err(bad(
            base,
            format!(
                "node seq {:#x} does not match the pointer's {:#x} (stale pointer)",
                i.node_seq, ptr.node_seq
            ),
        ));
    }
    if i.btree_id != btree || i.level != level || i.min_pos != min || i.max_pos != max {
        return Err(bad(
            base,
            format!(
                "node is {} level {} keys {}..={}, but its parent expects {btree} level {level} keys {min}..={max}",
                i.btree_id, i.level, i.min_pos, i.max_pos
            ),
        ));
    }
    let mut sets: Vec<KeySet> = Vec::new();
    let mut off = 0usize;
    let mut entry = Some(first);
    while let Some(e) = entry.take() {
        if e.info.journal_seq > cur_seq {
            return Err(bad(
                base + off as u64,
                format!(
                    "entry carries journal seq {} beyond the journal's {cur_seq}",
                    e.info.journal_seq
                ),
            ));
        }
        if cfg.blacklisted(e.info.journal_seq) {
            cfg.blacklisted_entries.fetch_add(1, Ordering::Relaxed);
        } else {
            sets.push(KeySet::from_records(e.keys, e.info.nkeys as usize));
        }
        off += e.disk_bytes;
        if off >= node_size {
            break;
        }
        let sector = u32::try_from(off / 512).unwrap_or(u32::MAX);
        match decode_entry(
            &buf[off..],
            cfg.magic,
            Some(i.node_seq),
            sector,
            cfg.csum,
            bs,
        ) {
            Ok(next) => {
                let ni = next.info;
                if ni.btree_id != btree
                    || ni.level != level
                    || ni.min_pos != min
                    || ni.max_pos != max
                {
                    return Err(bad(
                        base + off as u64,
                        "appended entry disagrees with the node header".into(),
                    ));
                }
                entry = Some(next);
            }
            Err(EntryError::End) => {}
            Err(EntryError::Corrupt(err)) => {
                if (off as u64) < u64::from(ptr.sectors_written) * 512 {
                    return Err(bad(
                        base + off as u64,
                        format!("entry inside the written part is damaged: {err}"),
                    ));
                }
                // A torn append after the part known written: not durable, ignored.
            }
        }
    }
    if (off as u64) < u64::from(ptr.sectors_written) * 512 {
        return Err(bad(
            base,
            format!(
                "only {} sectors valid, the pointer says {} were written (torn node)",
                off / 512,
                ptr.sectors_written
            ),
        ));
    }
    let refs: Vec<&KeySet> = sets.iter().collect();
    let merged = KeySet::merge(&refs, true);
    let ws = WriteState::on_disk(off as u64);
    Ok(Node::new(
        btree,
        level,
        min,
        max,
        ptr.sector,
        ptr.node_seq,
        NodeData::from_set(merged),
        ws,
    ))
}

/// The node `ptr` points at, from the cache or read from disk (and cached), checked to be
/// the node the pointer names (a cached node at that address that is another node — a stale
/// or corrupt pointer — is an error, never followed: it could be an ancestor). Only a holder
/// of the btree's interior mutex (which may do IO under intent locks) calls it.
pub(crate) fn get_node(
    bt: &Btree,
    ptr: &BtreePtr,
    btree: BtreeId,
    level: u8,
    max: Pos,
) -> Result<Arc<Node>, BtreeError> {
    if let Some(n) = bt.cache.get(ptr.sector) {
        if n.node_seq != ptr.node_seq
            || n.btree != btree
            || n.level != level
            || n.min != ptr.min_pos
            || n.max != max
        {
            return Err(corrupt(
                btree,
                level,
                ptr.min_pos,
                max,
                ptr.sector.saturating_mul(512),
                format!(
                    "pointer names node seq {:#x} ({btree} level {level} keys {}..={max}), but the node at sector {} is seq {:#x} ({} level {} keys {}..={})",
                    ptr.node_seq,
                    ptr.min_pos,
                    ptr.sector,
                    n.node_seq,
                    n.btree,
                    n.level,
                    n.min,
                    n.max
                ),
            ));
        }
        return Ok(n);
    }
    let n = read_node_raw(
        &*bt.dev,
        &bt.cfg,
        bt.journal.cur_seq(),
        ptr,
        btree,
        level,
        max,
    )?;
    bt.counters.node_reads.fetch_add(1, Ordering::Relaxed);
    Ok(bt.cache.insert(Arc::new(n)))
}

/// Writes a node that nobody else can see yet (a new node from a structural change): all
/// its keys as the first entry. `journal_seq` must be ≥ the seq of every key in it.
pub(crate) fn write_new_node(bt: &Btree, node: &Node, journal_seq: u64) -> Result<(), BtreeError> {
    node.lock.lock_read();
    let r = (|| {
        let d = node.data();
        let refs: Vec<&KeySet> = d.sets.iter().collect();
        let set = KeySet::merge(&refs, true);
        let mut keys = Vec::with_capacity(set.live_bytes());
        set.encode_into(&mut keys);
        let info = EntryInfo {
            node_seq: node.node_seq,
            journal_seq,
            sector_offset: 0,
            nkeys: u32::try_from(set.len()).unwrap_or(u32::MAX),
            btree_id: node.btree,
            level: node.level,
            min_pos: node.min,
            max_pos: node.max,
        };
        let mut buf = Vec::with_capacity(keys.len() + 4096);
        encode_entry(
            &mut buf,
            &info,
            &keys,
            bt.cfg.magic,
            bt.cfg.csum,
            bt.cfg.block_size as usize,
        );
        if buf.len() > bt.cfg.node_size as usize {
            return Err(BtreeError::KeyTooBig {
                bytes: buf.len(),
                node_size: bt.cfg.node_size,
            });
        }
        let mut ws = node.ws.lock();
        debug_assert!(!ws.has_unwritten(), "a new node has nothing unwritten");
        ws.disk_bytes = buf.len() as u64;
        ws.written_bytes = buf.len() as u64;
        Ok(buf)
    })();
    node.lock.unlock_read();
    let buf = r?;
    if let Err(e) = bt.dev.write_at(&buf, node.addr * 512) {
        bt.set_error(&e.to_string());
        return Err(e.into());
    }
    bt.counters.node_writes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Appends the node's unwritten keys as a new entry and releases their journal pin.
/// The caller holds no lock on the node, or intent (reclaim run by a structural change).
/// Lock order: `io` (serialising this node's writes, held across the device IO) before the
/// SIX read lock, which is held only to seal the keys; a retiring node's `io` is taken by
/// the structural change before its write lock, so no write of it is in flight when it dies.
pub(crate) fn write_node(bt: &Btree, node: &Arc<Node>) -> Result<(), BtreeError> {
    bt.check_error()?;
    crate::sync::six::held::assert_only_intent_held("writing a btree node");
    let io = node.io.lock();
    node.lock.lock_read();
    if node.is_dead() {
        node.lock.unlock_read();
        return Ok(());
    }
    let sealed = (|| {
        let mut ws = node.ws.lock();
        if !ws.has_unwritten() {
            return Ok(None);
        }
        // The log stays until the entry is built: an error leaves it in place.
        let set = ws.unwritten_set();
        let mut keys = Vec::with_capacity(set.live_bytes());
        set.encode_into(&mut keys);
        let offset = ws.disk_bytes;
        let info = EntryInfo {
            node_seq: node.node_seq,
            journal_seq: ws.unwritten_max_seq,
            sector_offset: u32::try_from(offset / 512).unwrap_or(u32::MAX),
            nkeys: u32::try_from(set.len()).unwrap_or(u32::MAX),
            btree_id: node.btree,
            level: node.level,
            min_pos: node.min,
            max_pos: node.max,
        };
        let mut buf = Vec::with_capacity(keys.len() + 4096);
        encode_entry(
            &mut buf,
            &info,
            &keys,
            bt.cfg.magic,
            bt.cfg.csum,
            bt.cfg.block_size as usize,
        );
        if offset + buf.len() as u64 > u64::from(bt.cfg.node_size) {
            // `fits` makes this impossible; if it happens anyway, stop writing rather than
            // keep a node whose keys can never be written.
            bt.set_error("internal error: a node's unwritten keys outgrew it");
            return Err(corrupt(
                node.btree,
                node.level,
                node.min,
                node.max,
                node.addr * 512,
                format!(
                    "internal error: append of {} bytes at {offset} overflows the {}-byte node",
                    buf.len(),
                    bt.cfg.node_size
                ),
            ));
        }
        drop(ws.take_unwritten());
        ws.disk_bytes = offset + buf.len() as u64;
        ws.inflight_pin = ws.unwritten_pin.take();
        ws.unwritten_max_seq = 0;
        Ok(Some((buf, offset)))
    })();
    node.lock.unlock_read();
    let Some((buf, offset)) = sealed? else {
        return Ok(());
    };
    // The write is in flight from here until its pin is released (a delay widens that
    // window for tests; an error fails the write like the device would).
    if let Some(e) = crate::fault!("btree:node_write") {
        let e = BtreeError::Injected {
            site: e.site,
            errno: e.errno,
        };
        bt.set_error(&e.to_string());
        return Err(e);
    }
    let r = bt.dev.write_at(&buf, node.addr * 512 + offset);
    if let Err(e) = r {
        bt.set_error(&e.to_string());
        return Err(e.into());
    }
    bt.counters.node_writes.fetch_add(1, Ordering::Relaxed);
    {
        // The pin is released under `ws`, together with clearing it there: reclaim, which
        // reads node pins under `ws`, never sees a node clean whose pin the journal still
        // counts (it would then take the pin for one nobody will release, and call the
        // journal full). And before `io`: whoever waits on `io` for this write finds it gone.
        let mut ws = node.ws.lock();
        ws.written_bytes = offset + buf.len() as u64;
        if let Some(p) = ws.inflight_pin.take() {
            bt.journal.pin_put(p);
        }
        if !ws.is_dirty() {
            bt.dirty.lock().remove(&node.addr);
        }
    }
    drop(io);
    Ok(())
}

/// Sectors of the node known written (for pointers).
pub(crate) fn written_sectors(node: &Node) -> u32 {
    sectors(node.ws.lock().written_bytes).max(1)
}

/// Writes an empty root leaf for `btree` at `addr` (mkfs) and returns its pointer.
pub(crate) fn format_empty_root(
    dev: &dyn BlockDevice,
    cfg: &BtreeConfig,
    btree: BtreeId,
    addr: u64,
    node_seq: u64,
) -> Result<BtreePtr, BtreeError> {
    use crate::format::bkey::{POS_MAX, POS_MIN};
    let info = EntryInfo {
        node_seq,
        journal_seq: 0,
        sector_offset: 0,
        nkeys: 0,
        btree_id: btree,
        level: 0,
        min_pos: POS_MIN,
        max_pos: POS_MAX,
    };
    let mut buf = Vec::new();
    encode_entry(
        &mut buf,
        &info,
        &[],
        cfg.magic,
        cfg.csum,
        cfg.block_size as usize,
    );
    dev.write_at(&buf, addr * 512)?;
    Ok(BtreePtr {
        sector: addr,
        node_seq,
        sectors_written: sectors(buf.len() as u64),
        generation: 0,
        min_pos: POS_MIN,
    })
}
