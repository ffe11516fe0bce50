//! Fuzzes a journal set and clean-section entries (decode_jset, entries_iter): see `sixfs::format::fuzz::jset`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sixfs::format::fuzz::jset(data));
