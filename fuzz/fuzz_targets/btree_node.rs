//! Fuzzes a btree node entry (decode_entry): see `sixfs::format::fuzz::btree_node`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sixfs::format::fuzz::btree_node(data));
