#![no_main]
//! Arbitrary bytes into snapstore's chunk_object decoder: it must return, never panic or over-allocate.
libfuzzer_sys::fuzz_target!(|data: &[u8]| snapstore::fuzzing::chunk_object(data));
