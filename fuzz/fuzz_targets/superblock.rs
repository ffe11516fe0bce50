//! Fuzzes a superblock copy (Superblock::decode): see `sixfs::format::fuzz::superblock`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sixfs::format::fuzz::superblock(data));
