#![no_main]
//! Arbitrary bytes as a pack file: the trailer and every object it lists must be read or
//! refused, never panic or over-allocate.
libfuzzer_sys::fuzz_target!(|data: &[u8]| snapstore::fuzzing::pack(data));
