//! Fuzz target: `machines::fuzzing::callback_query`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::callback_query(data));
