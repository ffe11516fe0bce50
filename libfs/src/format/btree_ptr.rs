//! The value of a `btree_ptr` key: where a child node is and how to recognise it.
//!
//! The key's position is the child's `max_pos`; the child covers `[min_pos, max_pos]`.
//!
//! ```text
//! offset size field
//!      0    8 sector           node location on the device, in 512-byte sectors
//!      8    8 node_seq         the child's random node seq (a node at that place with another
//!                              seq is a different, stale node)
//!     16    4 sectors_written  sectors the child had written when this pointer was made: a
//!                              read that finds fewer valid sectors has found a torn node
//!     20    1 gen              bucket generation (0 until the allocator tracks generations)
//!     21    3 reserved         0
//!     24   20 min_pos          inode u64, offset u64, snapshot u32
//!     44    4 reserved         0
//! ```

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::FormatError;
use super::bkey::Pos;

/// Encoded size.
pub const BTREE_PTR_BYTES: usize = 48;

#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct BtreePtrDisk {
    sector: U64,
    node_seq: U64,
    sectors_written: U32,
    generation: u8,
    reserved0: [u8; 3],
    min_inode: U64,
    min_offset: U64,
    min_snapshot: U32,
    reserved1: U32,
}

const _: () = assert!(size_of::<BtreePtrDisk>() == BTREE_PTR_BYTES);

/// A pointer to a btree node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct BtreePtr {
    /// Location in sectors.
    pub sector: u64,
    /// The node's random seq.
    pub node_seq: u64,
    /// Sectors known written when the pointer was made.
    pub sectors_written: u32,
    /// Bucket generation.
    pub generation: u8,
    /// Smallest position the child covers.
    pub min_pos: Pos,
}

impl BtreePtr {
    /// Encodes the value.
    pub fn encode(&self) -> [u8; BTREE_PTR_BYTES] {
        let d = BtreePtrDisk {
            sector: U64::new(self.sector),
            node_seq: U64::new(self.node_seq),
            sectors_written: U32::new(self.sectors_written),
            generation: self.generation,
            reserved0: [0; 3],
            min_inode: U64::new(self.min_pos.inode),
            min_offset: U64::new(self.min_pos.offset),
            min_snapshot: U32::new(self.min_pos.snapshot),
            reserved1: U32::new(0),
        };
        let mut out = [0u8; BTREE_PTR_BYTES];
        out.copy_from_slice(d.as_bytes());
        out
    }

    /// Decodes and checks a value.
    pub fn decode(b: &[u8]) -> Result<BtreePtr, FormatError> {
        if b.len() != BTREE_PTR_BYTES {
            return Err(FormatError::invalid(
                "btree_ptr",
                "length",
                format!("{} bytes, expected {BTREE_PTR_BYTES}", b.len()),
            ));
        }
        let d = BtreePtrDisk::read_from_bytes(b).map_err(|_| FormatError::Short {
            what: "btree_ptr",
            need: BTREE_PTR_BYTES,
            have: b.len(),
        })?;
        if d.reserved0 != [0; 3] || d.reserved1.get() != 0 {
            return Err(FormatError::invalid("btree_ptr", "reserved", "not zero"));
        }
        if d.sectors_written.get() == 0 {
            return Err(FormatError::invalid("btree_ptr", "sectors_written", "0"));
        }
        Ok(BtreePtr {
            sector: d.sector.get(),
            node_seq: d.node_seq.get(),
            sectors_written: d.sectors_written.get(),
            generation: d.generation,
            min_pos: Pos::new(d.min_inode.get(), d.min_offset.get(), d.min_snapshot.get()),
        })
    }
}

impl std::fmt::Display for BtreePtr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sector {} (byte {}) seq {:#018x} written {} gen {} min {}",
            self.sector,
            self.sector.saturating_mul(512),
            self.node_seq,
            self.sectors_written,
            self.generation,
            self.min_pos
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(sector in any::<u64>(), seq in any::<u64>(), w in 1u32.., g in any::<u8>(),
                       i in any::<u64>(), o in any::<u64>(), s in any::<u32>()) {
            let p = BtreePtr { sector, node_seq: seq, sectors_written: w, generation: g, min_pos: Pos::new(i, o, s) };
            prop_assert_eq!(BtreePtr::decode(&p.encode()).unwrap(), p);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = BtreePtr::decode(&b);
        }
    }
}
