//! Fuzz target: `machines::fuzzing::sse`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::sse(data));
