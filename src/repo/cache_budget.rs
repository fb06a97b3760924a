//! How many decoded bytes a handle keeps by default, of its last commit and of its last
//! checkout: an eighth of the memory this process may use, and never less than 64 MiB.
//!
//! A fixed 64 MiB kept no snapshot of a larger model, and then each commit decoded its parent
//! from the keyframe, one more delta every epoch: a 256 MiB checkpoint's in-process commits took
//! 0.29-0.34 s at the first epoch and 1.95-1.98 s at the eighth, against a flat 0.27-0.42 with
//! the tip kept, and an evaluation loop's checkouts grew the same way (`bench_binding.py chain`,
//! BENCHMARKS.md "Caches sized to the machine"). Keeping a snapshot costs a copy of the model in
//! memory: bounded by the machine, a model up to an eighth of it keeps its tip and its last
//! checkout, a larger one decodes as before.

use std::sync::OnceLock;

/// The least either cache keeps.
const FLOOR: usize = 64 << 20;

/// The share of the memory each cache may take.
const SHARE: u64 = 8;

/// Bytes each cache of a new handle keeps by default (see [`Repo::with_tip_cache`] and
/// [`Repo::with_checkout_cache`]): an eighth of the machine's memory, or of the cgroup's limit
/// where that is lower, and at least 64 MiB. Computed once per process.
///
/// [`Repo::with_tip_cache`]: super::Repo::with_tip_cache
/// [`Repo::with_checkout_cache`]: super::Repo::with_checkout_cache
pub fn default_cache_bytes() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| {
        let memory = [physical_memory(), cgroup_limit()]
            .into_iter()
            .flatten()
            .min();
        memory.map_or(FLOOR, |m| {
            usize::try_from(m / SHARE).unwrap_or(usize::MAX).max(FLOOR)
        })
    })
}

/// The machine's physical memory in bytes, where the system says.
fn physical_memory() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let (pages, page) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let (pages, page) = (u64::try_from(pages).ok()?, u64::try_from(page).ok()?);
        pages.checked_mul(page)
    }
    #[cfg(not(unix))]
    None
}

/// The memory limit of this process's cgroup (v2, then v1), where one is set.
fn cgroup_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| parse_limit(&std::fs::read_to_string(path).ok()?))
}

/// A cgroup memory limit file's value: none for `max` (v2's "no limit") or anything else that
/// is not a number.
fn parse_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_an_eighth_of_memory_and_at_least_the_floor() {
        let bytes = default_cache_bytes();
        assert!(bytes >= FLOOR);
        if let Some(memory) = physical_memory() {
            assert!(bytes as u64 <= (memory / SHARE).max(FLOOR as u64));
        }
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("8589934592\n"), Some(8 << 30));
        assert_eq!(parse_limit(""), None);
    }
}
