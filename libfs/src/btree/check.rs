//! The structural check: walks every btree from its root and verifies what the rest of the
//! code assumes. Used by tests after every crash reopen, and by fsck.
//!
//! Checked: levels decrease by one from the root to the leaves (so there are no cycles and
//! the depth is bounded); each node's range is exactly what its parent's pointer says;
//! children tile their parent's range with no gap or overlap; keys are in order and inside
//! their node; no node is reachable twice; every node reads back from disk with valid
//! checksums, and a node with nothing unwritten holds on disk exactly what it holds in memory.

use std::collections::HashSet;
use std::sync::Arc;

use super::node::Node;
use super::trans::child_ptr;
use super::{Btree, BtreeError, TransError, io};
use crate::format::bkey::{KeyType, POS_MAX, POS_MIN, Pos};
use crate::format::btree_id::BtreeId;
use crate::format::btree_node::MAX_DEPTH;
use crate::format::btree_ptr::BtreePtr;

/// What the check found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    /// Nodes visited.
    pub nodes: u64,
    /// Live keys in leaves.
    pub keys: u64,
    /// Height of each btree (root level + 1), in id order.
    pub heights: Vec<u8>,
    /// Problems, one line each, naming btree, level, position and device offset.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True if nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn describe(n: &Node) -> String {
    format!(
        "{} btree level {} node at byte {} ({}..={})",
        n.btree,
        n.level,
        n.addr * 512,
        n.min,
        n.max
    )
}

/// Checks every btree. Structural changes are held off for the duration.
pub fn check(bt: &Btree) -> Result<CheckReport, BtreeError> {
    let mut rep = CheckReport::default();
    let mut seen = HashSet::new();
    for b in BtreeId::ALL {
        let _g = bt.interior[b.idx()].lock();
        let root = bt.root(b);
        rep.heights.push(root.level + 1);
        if root.level >= MAX_DEPTH {
            rep.problems.push(format!(
                "{}: root at level {} is deeper than {MAX_DEPTH}",
                describe(&root),
                root.level
            ));
            continue;
        }
        if root.min != POS_MIN || root.max != POS_MAX {
            rep.problems.push(format!(
                "{}: root does not cover every position",
                describe(&root)
            ));
        }
        check_node(bt, &root, &mut seen, &mut rep)?;
    }
    Ok(rep)
}

fn check_node(
    bt: &Btree,
    n: &Arc<Node>,
    seen: &mut HashSet<u64>,
    rep: &mut CheckReport,
) -> Result<(), BtreeError> {
    rep.nodes += 1;
    if !seen.insert(n.addr) {
        rep.problems
            .push(format!("{}: reachable twice", describe(n)));
        return Ok(());
    }
    // Collect what is needed under the read lock; IO happens after unlocking.
    n.lock.lock_read();
    let d = n.data();
    let live = d.live_set();
    let dirty = n.ws.lock().is_dirty();
    n.lock.unlock_read();
    let mut prev: Option<Pos> = None;
    for k in live.iter() {
        if prev.is_some_and(|p| p >= k.pos) || !n.covers(k.pos) {
            rep.problems.push(format!(
                "{}: key {} out of order or outside the node",
                describe(n),
                k.pos
            ));
        }
        let ok_type = if n.level == 0 {
            k.typ != KeyType::BtreePtr
        } else {
            k.typ == KeyType::BtreePtr
        };
        if !ok_type {
            rep.problems.push(format!(
                "{}: {} key {} at this level",
                describe(n),
                k.typ.name(),
                k.pos
            ));
        }
        prev = Some(k.pos);
    }
    // On-disk copy: must read back (checksums, identity) and match when clean.
    let ptr = n.ptr(io::written_sectors(n));
    match io::read_node_raw(
        &*bt.dev,
        &bt.cfg,
        bt.journal.cur_seq(),
        &ptr,
        n.btree,
        n.level,
        n.max,
    ) {
        Ok(disk) => {
            if !dirty {
                disk.lock.lock_read();
                let on_disk = disk.data().live_set();
                disk.lock.unlock_read();
                let a: Vec<_> = on_disk.iter().map(|k| k.to_owned()).collect();
                let b: Vec<_> = live.iter().map(|k| k.to_owned()).collect();
                if a != b {
                    rep.problems.push(format!(
                        "{}: clean node differs from its disk copy ({} keys on disk, {} in memory)",
                        describe(n),
                        a.len(),
                        b.len()
                    ));
                }
            }
        }
        Err(e) => rep
            .problems
            .push(format!("{}: does not read back: {e}", describe(n))),
    }
    if n.level == 0 {
        rep.keys += live.len() as u64;
        return Ok(());
    }
    // Children must tile [n.min, n.max].
    let mut expect_min = Some(n.min);
    let mut children: Vec<(Pos, BtreePtr)> = Vec::new();
    for k in live.iter() {
        match BtreePtr::decode(k.val) {
            Ok(p) => children.push((k.pos, p)),
            Err(e) => rep
                .problems
                .push(format!("{}: bad pointer at {}: {e}", describe(n), k.pos)),
        }
    }
    if children.is_empty() {
        rep.problems
            .push(format!("{}: interior node without children", describe(n)));
    }
    for (max, p) in &children {
        if Some(p.min_pos) != expect_min {
            rep.problems.push(format!(
                "{}: child {}..={max} does not start where the previous ended ({expect_min:?})",
                describe(n),
                p.min_pos
            ));
        }
        expect_min = max.successor();
    }
    if children.last().map(|c| c.0) != Some(n.max) {
        rep.problems.push(format!(
            "{}: children do not reach the node's end",
            describe(n)
        ));
    }
    for (max, p) in children {
        // Sanity of the lookup path too: the pointer found for the child's min is this one.
        n.lock.lock_read();
        let via = child_ptr(n, p.min_pos);
        n.lock.unlock_read();
        match via {
            Ok((m, q)) if m == max && q.sector == p.sector => {}
            Ok(_) => rep.problems.push(format!(
                "{}: lookup of {} finds another child",
                describe(n),
                p.min_pos
            )),
            Err(TransError::Error(e)) => return Err(e),
            Err(TransError::Restart(_)) => {}
        }
        match io::get_node(bt, &p, n.btree, n.level - 1, max) {
            Ok(c) => check_node(bt, &c, seen, rep)?,
            Err(e) => rep.problems.push(format!(
                "{}: child at sector {}: {e}",
                describe(n),
                p.sector
            )),
        }
    }
    Ok(())
}
