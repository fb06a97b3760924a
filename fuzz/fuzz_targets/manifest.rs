#![no_main]
//! Arbitrary bytes into snapstore's manifest decoder: it must return, never panic or over-allocate.
libfuzzer_sys::fuzz_target!(|data: &[u8]| snapstore::fuzzing::manifest(data));
