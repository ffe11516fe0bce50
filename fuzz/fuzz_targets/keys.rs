//! Fuzzes runs of key records and node key sets (decode_key, validate_keys): see `sixfs::format::fuzz::keys`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sixfs::format::fuzz::keys(data));
