//! Sets glibc's allocator up as a long-running process has it, once per process.
//!
//! glibc serves blocks over its mmap threshold (128 KiB at start) with fresh mappings, each
//! page faulted in and zeroed by the kernel, and returns the heap's top to the kernel past its
//! trim threshold; freeing a mapped block raises both thresholds to its size (the trim one to
//! twice that). Until a process has freed a block of a few MiB, the coder's 1-4 MiB buffers
//! are fresh mappings every time: a checkout's plane merge took 2-3x as long (`stage_profile
//! cnn-digits`, BENCHMARKS.md). sled's page table used to free such blocks on every index
//! open (4 and 2 MiB, now 512 KiB: `vendor/sled/PATCHED.md`), and a trainer's process frees
//! them all the time; so a handle frees one block of [`WARMUP_BYTES`] when the first one opens.
//! With other allocators this is one allocation and nothing more.

use std::sync::Once;

/// The block freed: the size sled's page table freed on each open before it was made smaller.
const WARMUP_BYTES: usize = 4 << 20;

/// Frees one block of [`WARMUP_BYTES`], the first time it is called in this process.
pub(super) fn once() {
    static DONE: Once = Once::new();
    DONE.call_once(|| {
        let block: Vec<u8> = Vec::with_capacity(WARMUP_BYTES);
        // Kept from being optimized away: an unused allocation may be removed with its free.
        drop(std::hint::black_box(block));
    });
}
