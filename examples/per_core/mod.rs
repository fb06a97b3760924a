//! What the per-core benchmark examples (`stage_profile`, `checkout_loop`) share: one thread
//! unless told otherwise, and a corpus's checkpoint files in order.

use std::path::{Path, PathBuf};

/// Sets up rayon's global pool: one thread unless `RAYON_NUM_THREADS` says otherwise, so MB/s
/// is per core (the peers in `peers.py` are single-threaded). Returns the thread count.
pub fn init_threads() -> anyhow::Result<usize> {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    Ok(threads)
}

/// The trajectory's checkpoint files (`*.safetensors` in `dir`), in name order; none where
/// `dir` cannot be read.
pub fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    files
}

/// Checks out every one of the last `snapshots` snapshots of HEAD into memory, oldest first
/// (through one handle, as an evaluation loop does); returns the tensor bytes checked out.
pub fn check_out_all(repo: &snapstore::Repo, snapshots: usize) -> anyhow::Result<u64> {
    let mut bytes = 0u64;
    for back in (0..snapshots).rev() {
        let out = repo.checkout(&format!("HEAD~{back}"), None)?;
        bytes += out.tensors.iter().map(|t| t.data.len() as u64).sum::<u64>();
    }
    Ok(bytes)
}
