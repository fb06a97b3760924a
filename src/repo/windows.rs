//! How commits and checkouts cut their chunks into windows: the bytes one parallel pass holds,
//! so memory stays bounded whatever the checkpoint size and a checkpoint of many small tensors
//! still goes in few passes.

use std::ops::Range;

/// Bytes of input coded per window and per thread, so every thread has a few chunks before the
/// window's barrier; the window bounds memory whatever the checkpoint size (its input pages,
/// coded chunks, references and reconstructions are held together).
const WINDOW_BYTES_PER_THREAD: usize = 4 << 20;
/// At most this much per window, however many threads.
pub(crate) const MAX_WINDOW_BYTES: usize = 64 << 20;

/// The window for this thread pool: 8 MiB on 2 cores, 64 MiB from 16 (a fixed 64 MiB kept
/// ~300 MB resident on 2 cores whatever the checkpoint size, BENCHMARKS.md "Big checkpoint").
pub(crate) fn window_bytes() -> usize {
    (WINDOW_BYTES_PER_THREAD * rayon::current_num_threads()).clamp(8 << 20, MAX_WINDOW_BYTES)
}

/// Windows of at most `limit` bytes over jobs of `job_bytes` each, every one holding a job per
/// thread where `max_bytes` allows (large chunks, groups of frames: one at a time would leave
/// the other cores idle).
pub(crate) fn windows_for_threads(
    job_bytes: &[usize],
    limit: usize,
    max_bytes: usize,
) -> Vec<Range<usize>> {
    let largest = job_bytes.iter().copied().max().unwrap_or(1).max(1);
    let min_jobs = rayon::current_num_threads().min((max_bytes / largest).max(1));
    windows(job_bytes, limit, min_jobs)
}

/// Cuts consecutive jobs into windows of at most `limit` input bytes, so a checkpoint of many
/// small tensors is coded in one parallel pass rather than many. A window holds at least
/// `min_jobs` jobs whatever their size: jobs larger than `limit / min_jobs` (groups of frames:
/// 5 MB for 30 video frames) would otherwise be coded one at a time on one core.
fn windows(job_bytes: &[usize], limit: usize, min_jobs: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (k, &b) in job_bytes.iter().enumerate() {
        if k >= start + min_jobs.max(1) && bytes + b > limit {
            out.push(start..k);
            (start, bytes) = (k, 0);
        }
        bytes += b;
    }
    if start < job_bytes.len() {
        out.push(start..job_bytes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::windows;

    #[test]
    fn windows_hold_at_most_the_limit_and_every_job_once() {
        assert_eq!(windows(&[], 10, 1), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(windows(&[3, 3, 3, 3], 10, 1), [0..3, 3..4]);
        assert_eq!(windows(&[3; 4], 12, 1), vec![0..4usize]);
        // A job over the limit gets a window of its own.
        assert_eq!(windows(&[2, 20, 2, 2], 10, 1), [0..1, 1..2, 2..4]);
    }

    #[test]
    fn windows_give_every_thread_a_job() {
        // Two jobs of 6 over a limit of 10: both in one window when there are two threads.
        assert_eq!(windows(&[6, 6, 6], 10, 1), [0..1, 1..2, 2..3]);
        assert_eq!(windows(&[6, 6, 6], 10, 2), [0..2, 2..3]);
        assert_eq!(windows(&[6, 6, 6, 6, 6], 10, 2), [0..2, 2..4, 4..5]);
        // Small jobs still fill a window up to the limit.
        assert_eq!(windows(&[1; 12], 10, 2), [0..10, 10..12]);
        assert_eq!(windows(&[20, 20], 10, 0), [0..1, 1..2]);
    }
}
