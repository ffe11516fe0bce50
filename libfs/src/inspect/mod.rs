//! Read-only views of an image for `sixfs-debug` and `fsck` output.

pub mod store;
pub mod superblock;
