#![no_main]
//! Arbitrary bytes into snapstore's rans_stream decoder: it must return, never panic or over-allocate.
libfuzzer_sys::fuzz_target!(|data: &[u8]| snapstore::fuzzing::rans_stream(data));
