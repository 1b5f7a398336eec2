//! Fuzz target: `machines::fuzzing::metadata`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::metadata(data));
