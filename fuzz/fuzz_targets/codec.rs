//! The line codec fed in chunks. See `protocol::fuzzing::codec`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::codec(data));
