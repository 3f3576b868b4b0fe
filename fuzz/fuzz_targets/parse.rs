//! The message parser on one line. See `protocol::fuzzing::parse`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::parse(data));
