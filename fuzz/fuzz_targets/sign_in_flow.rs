//! Fuzz target: `machines::fuzzing::sign_in_flow`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::sign_in_flow(data));
