//! On-disk codecs. Nothing here does IO: every decoder takes bytes and returns a typed value
//! or an error, never panics, whatever the input.
//!
//! - [`superblock`]: the superblock copy (fixed header + field records).
//! - [`bkey`]: positions, key types, the key record.
//! - [`btree_ptr`]: the value of a pointer to a child node.
//! - [`btree_node`]: node entries (the log-structured node format).
//! - [`jset`]: journal sets and their entries.
//! - [`btree_id`]: btree ids.
//! - [`csum`]: checksum and compression types, checksum computation.
//! - [`probe`]: recognising other filesystems' signatures.
//! - [`fuzz`]: the fuzz harnesses (one per decoder), shared by `fuzz/` and the corpus test.

pub mod bkey;
pub mod btree_id;
pub mod btree_node;
pub mod btree_ptr;
pub mod csum;
mod error;
pub mod fuzz;
pub mod jset;
pub mod probe;
pub mod superblock;

pub use error::FormatError;
