//! Times `Repo::commit_tensors` and `Repo::checkout` on tensors held in memory: the Rust side of
//! the Python package's speed comparison (`python/benches/bench_binding.py` runs the same
//! steps through `snapstore.Repo` on the same files and prints both).
//!
//! ```text
//! cargo run --release --example in_memory_timing -- BOUND REPO_DIR FILE...
//! ```
//!
//! Each FILE (safetensors) is read fully into memory, then committed in order under BOUND
//! (`lossless`, `rel:E`, `abs:E`) to a new repository at REPO_DIR, and the last commit is
//! checked out. Prints one JSON object: seconds per commit and for the checkout. With
//! `SNAPSTORE_PROFILE=1`, each step's stage table (`snapstore::profile`) goes to stderr.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use snapstore::{Bound, CommitOptions, Repo, SafetensorsFile, TensorInput};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bound, repo_dir, files @ ..] = &args[..] else {
        bail!("usage: in_memory_timing BOUND REPO_DIR FILE...");
    };
    if files.is_empty() {
        bail!("give at least one safetensors file");
    }
    let bound: Bound = bound.parse()?;
    let repo = Repo::init(repo_dir)?;
    let opts = CommitOptions {
        bound: Some(bound),
        ..CommitOptions::default()
    };
    let mut commit_seconds = Vec::new();
    for path in files {
        let file = SafetensorsFile::open(path).with_context(|| path.clone())?;
        // Owned copies, as a trainer's tensors are: the timing excludes reading the file.
        let owned: Vec<(String, snapstore::Dtype, Vec<u64>, Vec<u8>)> = file
            .header()
            .tensors
            .iter()
            .map(|t| {
                let data = file.tensor_bytes(t).to_vec();
                (t.name.clone(), t.dtype, t.shape.clone(), data)
            })
            .collect();
        let inputs: Vec<TensorInput> = owned
            .iter()
            .map(|(name, dtype, shape, data)| TensorInput {
                name: name.clone(),
                dtype: *dtype,
                shape: shape.clone(),
                data,
            })
            .collect();
        let started = Instant::now();
        repo.commit_tensors(&inputs, None, &opts)?;
        commit_seconds.push(started.elapsed().as_secs_f64());
        stage_table(&format!("commit {path}"));
    }
    let started = Instant::now();
    let checkout = repo.checkout("HEAD", None)?;
    let checkout_seconds = started.elapsed().as_secs_f64();
    stage_table("checkout HEAD");
    let bytes: usize = checkout.tensors.iter().map(|t| t.data.len()).sum();
    println!(
        "{}",
        serde_json::json!({
            "commit_seconds": commit_seconds,
            "checkout_seconds": checkout_seconds,
            "checkout_bytes": bytes,
        })
    );
    Ok(())
}

/// Prints the stage timers' table for the step just done, then zeroes them (only under
/// `SNAPSTORE_PROFILE`, which turns them on).
fn stage_table(step: &str) {
    if snapstore::profile::enabled() {
        eprintln!("## {step}\n\n{}", snapstore::profile::read());
        snapstore::profile::reset();
    }
}
