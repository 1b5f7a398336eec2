//! Fuzz target: `machines::fuzzing::grant_events`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::grant_events(data));
