//! Fuzz target: `machines::fuzzing::registration`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::registration(data));
