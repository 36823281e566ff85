//! Fuzz target: see `moq_proto::fuzzing::session` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    moq_proto::fuzzing::session(data, std::time::Instant::now())
});
