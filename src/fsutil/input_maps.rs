//! Input maps that survive their file being truncated under them.
//!
//! A commit reads its checkpoint through a shared file map. When another process truncates the
//! file (a trainer saving its next checkpoint in place), a read from a page past the new end
//! raises SIGBUS, and the default action ends the process: a `snapstore watch` that had been
//! running for days died with its trainer's next save. Reading through `read(2)` instead would
//! copy every byte; so the map stays, and the fault is repaired instead.
//!
//! A map is registered here ([`watch`]) while it is read. With the SIGBUS handler of
//! [`crate::remove_temps_on_signals`] installed, a fault inside a registered map gets an
//! anonymous zero page mapped over the faulting page ([`replace_faulting_page`]) and the map
//! marked damaged, and the read goes on; the reader then refuses what it read
//! (`SafetensorsFile::check_unchanged`), so nothing coded from those zeros lands. A fault
//! anywhere else (or with every slot taken) keeps its old fate.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Maps watched at once: one per input file a commit holds open, so a few in practice.
const SLOTS: usize = 64;

/// One registered map: `[start, end)`, live while `end != 0`.
struct Slot {
    claimed: AtomicBool,
    start: AtomicUsize,
    end: AtomicUsize,
    damaged: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // the initializer of each slot, copied
const FREE: Slot = Slot {
    claimed: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    damaged: AtomicBool::new(false),
};

/// Read by the signal handler without locks: only atomics.
static TABLE: [Slot; SLOTS] = [FREE; SLOTS];

/// The page size, read once outside the handler (sysconf is not async-signal-safe).
static PAGE: AtomicUsize = AtomicUsize::new(0);

/// A map registered for repair; unregistered on drop.
#[derive(Debug)]
pub(crate) struct Watched {
    slot: Option<usize>,
}

/// Registers `bytes` (a file map) for repair. With every slot taken it is not registered, and a
/// fault in it ends the process as before.
pub(crate) fn watch(bytes: &[u8]) -> Watched {
    if PAGE.load(Ordering::Relaxed) == 0 {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        PAGE.store(
            usize::try_from(page).unwrap_or(4096).max(1),
            Ordering::Relaxed,
        );
    }
    if bytes.is_empty() {
        return Watched { slot: None };
    }
    let slot = TABLE.iter().position(|s| {
        s.claimed
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    });
    if let Some(i) = slot {
        let s = &TABLE[i];
        let start = bytes.as_ptr() as usize;
        s.damaged.store(false, Ordering::Relaxed);
        s.start.store(start, Ordering::Relaxed);
        // Published last: the handler trusts `start` once `end` is set.
        s.end.store(start + bytes.len(), Ordering::Release);
    }
    Watched { slot }
}

impl Watched {
    /// Whether a read faulted and was given zeros in place of the file's bytes.
    pub(crate) fn damaged(&self) -> bool {
        self.slot
            .is_some_and(|i| TABLE[i].damaged.load(Ordering::Acquire))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let s = &TABLE[i];
            s.end.store(0, Ordering::Release);
            s.start.store(0, Ordering::Relaxed);
            s.claimed.store(false, Ordering::Release);
        }
    }
}

/// Called by the SIGBUS handler with the faulting address: maps a zero page over it when it lies
/// in a watched map, marks the map damaged, and returns true (the faulting read then goes on).
/// Only atomics and one mmap(2) system call (not on POSIX's async-signal-safe list, but a bare
/// system call on Linux, taking no lock).
pub(crate) fn replace_faulting_page(addr: usize) -> bool {
    let page = PAGE.load(Ordering::Relaxed);
    if page == 0 {
        return false;
    }
    for s in &TABLE {
        let end = s.end.load(Ordering::Acquire);
        if end == 0 || addr >= end || addr < s.start.load(Ordering::Relaxed) {
            continue;
        }
        let at = addr & !(page - 1);
        // SAFETY: replaces one page of a read-only file map this process registered and still
        // holds (its slot is live) with a private zero page; nothing outside that map moves.
        let mapped = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return false;
        }
        s.damaged.store(true, Ordering::Release);
        return true;
    }
    false
}

/// Test hook: a path; a commit of the file of that name truncates it to half its length once
/// it is hashed and before it is coded, as a trainer saving in place would, so a test can check
/// that a truncation under a commit fails it cleanly without racing one.
pub const TRUNCATE_AFTER_HASH_ENV: &str = "SNAPSTORE_TEST_TRUNCATE_AFTER_HASH";

/// Runs [`TRUNCATE_AFTER_HASH_ENV`] for a commit of the file named `source`.
pub(crate) fn truncate_after_hash_for_test(source: Option<&str>) {
    let Some(path) = std::env::var_os(TRUNCATE_AFTER_HASH_ENV).map(std::path::PathBuf::from) else {
        return;
    };
    let named = path.file_name().and_then(|n| n.to_str());
    if source.is_some() && named == source {
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
            let len = f.metadata().map_or(0, |m| m.len());
            let _ = f.set_len(len / 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A truncated file's page, repaired by hand as the handler would: the address is found in
    /// its registered map, zeros are read, the map says so; outside any map nothing happens.
    #[test]
    fn a_fault_in_a_watched_map_is_repaired_with_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3 * 4096]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a read-only map of a file this test owns.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let watched = watch(&map);
        assert!(!watched.damaged());
        let inside = map.as_ptr() as usize + 4096 + 5;
        assert!(!replace_faulting_page(map.as_ptr() as usize + map.len()));
        assert!(replace_faulting_page(inside));
        assert!(watched.damaged());
        assert_eq!(map[4096..8192], [0u8; 4096]);
        assert!(map[..4096].iter().all(|&b| b == 7), "other pages untouched");
        drop(watched);
        assert!(!replace_faulting_page(inside), "unregistered");
    }
}
