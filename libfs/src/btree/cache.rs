//! The node cache: nodes by disk address, with bounded memory.
//!
//! A node is identified by its disk address (structural changes make new nodes at new
//! addresses, so nothing is ever re-keyed). Eviction drops clean nodes nobody references:
//! the cache holds one `Arc` per node, so a node whose strong count is 1 is not locked by
//! anyone, not a root (the store holds roots) and not dirty (the dirty list holds dirty
//! nodes). A second-chance bit spares recently used nodes for one round.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use super::node::Node;

/// A hasher for u64 keys (node addresses): one multiply-xorshift mix instead of SipHash.
/// Addresses are not attacker-controlled, so DoS resistance buys nothing here.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A map keyed by node address.
pub(crate) type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// The node cache.
#[derive(Debug)]
pub(crate) struct NodeCache {
    map: Mutex<AddrMap<Arc<Node>>>,
    limit: usize,
}

impl NodeCache {
    /// A cache that tries to keep at most `limit` nodes.
    pub(crate) fn new(limit: usize) -> NodeCache {
        NodeCache {
            map: Mutex::new(AddrMap::default()),
            limit: limit.max(16),
        }
    }

    /// The node at `addr`, if cached.
    #[inline]
    pub(crate) fn get(&self, addr: u64) -> Option<Arc<Node>> {
        let n = self.map.lock().get(&addr).cloned();
        if let Some(n) = &n {
            n.accessed.store(true, Ordering::Relaxed);
        }
        n
    }

    /// Inserts `node`, or returns the node already cached at its address.
    pub(crate) fn insert(&self, node: Arc<Node>) -> Arc<Node> {
        let mut m = self.map.lock();
        let n = m.entry(node.addr).or_insert(node).clone();
        let over = m.len() > self.limit + self.limit / 8;
        drop(m);
        if over {
            self.evict();
        }
        n
    }

    /// Removes the node at `addr` (it was replaced).
    pub(crate) fn remove(&self, addr: u64) {
        self.map.lock().remove(&addr);
    }

    /// Number of cached nodes.
    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Evicts unreferenced clean nodes until at most `limit` remain (or none can go).
    pub(crate) fn evict(&self) {
        let mut m = self.map.lock();
        for round in 0..2 {
            if m.len() <= self.limit {
                return;
            }
            let mut victims = Vec::new();
            for (addr, n) in m.iter() {
                if Arc::strong_count(n) != 1 || n.ws.lock().is_dirty() {
                    continue;
                }
                if round == 0 && n.accessed.swap(false, Ordering::Relaxed) {
                    continue;
                }
                victims.push(*addr);
                if m.len() - victims.len() <= self.limit {
                    break;
                }
            }
            for a in victims {
                m.remove(&a);
            }
        }
    }
}
