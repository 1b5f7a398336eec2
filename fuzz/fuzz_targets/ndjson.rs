//! Fuzz target: `machines::fuzzing::ndjson`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::ndjson(data));
