//! Small utilities shared by every layer.
//!
//! * [`genradix`]: generic radix tree, a sparse array of page-sized nodes with lock-free readers.
//! * [`fault`]: dynamic fault injection (`fault!("class:name")` sites, the control format,
//!   the `SIXFS_FAULTS` environment variable).

pub mod cli;
pub mod fault;
pub mod genradix;
