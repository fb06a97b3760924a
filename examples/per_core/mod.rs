//! What the per-core benchmark examples (`stage_profile`, `checkout_loop`) share: one thread
//! unless told otherwise, a repository with the caches asked for, and a corpus's checkpoint
//! files in order.

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

/// A fresh repository at `dir` keeping `SNAPSTORE_BENCH_TIP_CACHE` bytes of its last commit and
/// `SNAPSTORE_BENCH_CHECKOUT_CACHE` of its last checkout decoded (the library's default,
/// `default_cache_bytes()`, where unset; 0 measures commits that decode their parent's chain
/// and checkouts that decode theirs). Returns the repository and the two sizes, for the
/// heading.
pub fn init_repo(dir: &Path) -> anyhow::Result<(snapstore::Repo, usize, usize)> {
    use anyhow::Context;
    let bytes = |var: &str, default: usize| -> anyhow::Result<usize> {
        match std::env::var(var) {
            Ok(s) => s.parse().with_context(|| format!("{var}={s:?}")),
            Err(_) => Ok(default),
        }
    };
    let tip = bytes(
        "SNAPSTORE_BENCH_TIP_CACHE",
        snapstore::default_cache_bytes(),
    )?;
    let checkouts = bytes(
        "SNAPSTORE_BENCH_CHECKOUT_CACHE",
        snapstore::default_cache_bytes(),
    )?;
    let repo = snapstore::Repo::init(dir)?
        .with_tip_cache(tip)
        .with_checkout_cache(checkouts);
    Ok((repo, tip, checkouts))
}

/// The trajectory's checkpoint files (`*.safetensors` in `dir` but the `testset*` evaluation
/// data, as `bench_corpora` and `peers.py` count them), in name order; none where `dir` cannot
/// be read.
pub fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with("testset"))
        })
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
