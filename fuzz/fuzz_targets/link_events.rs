//! Fuzz target: `machines::fuzzing::link_events`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::link_events(data));
