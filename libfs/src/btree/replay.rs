//! Inserting journal keys during recovery, at their original journal seqs.
//!
//! Replay does not journal the keys again: each key goes into the node covering it with the
//! seq of the jset it came from, and the node pins that (old) seq, exactly as if the commit
//! that journaled it had just happened. So the journal keeps the replayed range until the
//! nodes holding its keys are written back — a crash during or after replay finds the same
//! jsets again and replays them again (replay is idempotent) — and replay needs no journal
//! space for keys, however full the journal was at the crash. Recovery additionally pins the
//! start of the range for the whole replay, so jsets written meanwhile (by structural
//! changes) never claim that a not yet replayed key is no longer needed.
//!
//! Interior keys are inserted level by level, highest first, so that every traversal below a
//! level already sees that level's replayed pointers; leaves come last.

use std::sync::Arc;

use super::interior::{self, lock_path, unlock_intents};
use super::node::Node;
use super::trans::{BtreeTrans, fits, insert_keys_at};
use super::{Btree, BtreeError, TransError};
use crate::format::bkey::Key;
use crate::format::btree_id::BtreeId;
use crate::sync::six::SixLockType;

/// Inserts `keys` (sorted by position, each with the journal seq it was committed at) into
/// `btree` at `level`. Splits and compactions happen as needed (those are journaled).
pub(crate) fn insert_replayed(
    bt: &Btree,
    btree: BtreeId,
    level: u8,
    keys: &[(u64, Key)],
) -> Result<(), BtreeError> {
    debug_assert!(keys.windows(2).all(|w| w[0].1.pos < w[1].1.pos));
    let mut i = 0;
    let mut rewrites = 0;
    while i < keys.len() {
        let pos = keys[i].1.pos;
        // The node covering `pos`, intent-locked, and every intent held to get there.
        let guard = (level > 0).then(|| bt.interior[btree.idx()].lock());
        let (node, held): (Arc<Node>, Vec<Arc<Node>>) = if level == 0 {
            let leaf = BtreeTrans::traverse(bt, btree, pos, 0, SixLockType::Intent).map_err(
                |e| match e {
                    TransError::Error(e) => e,
                    TransError::Restart(r) => BtreeError::escaped(r),
                },
            )?;
            (leaf.clone(), vec![leaf])
        } else {
            let path = lock_path(bt, btree, pos, level)?;
            match path.last().cloned() {
                Some(n) => (n, path),
                None => return Ok(()),
            }
        };
        // The run of keys this node covers that fits in it now.
        let mut j = i;
        let mut bytes = 0;
        while let Some((_, k)) = keys.get(j)
            && node.covers(k.pos)
            && fits(bt, &node, bytes + k.encoded_len())
        {
            bytes += k.encoded_len();
            j += 1;
        }
        if j == i {
            unlock_intents(&held);
            drop(guard);
            let need = keys[i].1.encoded_len();
            // A rewrite makes room for `need` bytes; if it keeps not doing so, stop.
            rewrites += 1;
            if rewrites > 8 {
                return Err(BtreeError::Internal(format!(
                    "{btree} level {level}: no room for the replayed key at {pos} after {rewrites} rewrites"
                )));
            }
            interior::rewrite(bt, btree, level, pos, None, need)?;
            continue;
        }
        let run = &keys[i..j];
        let min_seq = run.iter().map(|(s, _)| *s).min().unwrap_or(0);
        let max_seq = run.iter().map(|(s, _)| *s).max().unwrap_or(0);
        node.lock.lock_write();
        insert_keys_at(
            bt,
            &node,
            run.iter().map(|(_, k)| k.as_ref()),
            min_seq,
            max_seq,
        );
        node.lock.unlock_write();
        unlock_intents(&held);
        drop(guard);
        i = j;
        rewrites = 0;
    }
    Ok(())
}
