//! Block JSON, checked and inserted into a chain. See `protocol::fuzzing::block`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::block(data));
