//! Fuzz target: `machines::fuzzing::token_response`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::token_response(data));
