//! Fuzz target: `machines::fuzzing::www_authenticate`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::www_authenticate(data));
