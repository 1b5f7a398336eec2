//! Fuzz target: `machines::fuzzing::router`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::router(data));
