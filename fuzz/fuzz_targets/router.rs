//! Fuzz target: `machines::fuzzing::router`, its clock starting now (the machines read none).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| machines::fuzzing::router(
    std::time::Instant::now(),
    data
));
