//! Fuzzes a btree_ptr value (BtreePtr::decode): see `sixfs::format::fuzz::btree_ptr`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sixfs::format::fuzz::btree_ptr(data));
