//! Checkouts with the repository in the page cache: an evaluation loop checking out every
//! snapshot of a run, again and again, through one handle.
//!
//! ```text
//! cargo run --release --example checkout_loop [-- BENCH_DIR CORPUS [PASSES]]
//! ```
//!
//! Commits the corpus (`BENCH_DIR/CORPUS/*.safetensors`, default `../shared/bench` and
//! `cnn-digits`) once into a temporary repository at `SNAPSTORE_BENCH_BOUNDS` (default
//! `lossless`; one bound), then makes PASSES passes (default 8), each checking out every snapshot
//! oldest first into memory. `stage_profile` times the first checkouts after the commits, whose
//! packs are on the disk, not in the page cache (they are written around it); these passes find
//! them cached. Per pass: wall time, coding MB/s per CPU second (tensor bytes over the CPU time
//! of every stage but the index's) and the wall time no stage covers; then the last pass's
//! stage table. The caches are sized as in `stage_profile` (`SNAPSTORE_BENCH_CHECKOUT_CACHE`);
//! `SNAPSTORE_BENCH_INTO=1` checks out into one model's buffers (`Repo::checkout_into`) instead
//! of fresh ones.
//! One thread unless `RAYON_NUM_THREADS` says otherwise, as in `stage_profile`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use snapstore::{profile, Bound, CommitOptions};

mod per_core;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.first().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench"),
        PathBuf::from,
    );
    let corpus = args.get(1).map_or("cnn-digits", String::as_str);
    let passes: usize = match args.get(2) {
        Some(p) => p.parse().with_context(|| format!("passes {p:?}"))?,
        None => 8,
    };
    let bound: Bound = std::env::var("SNAPSTORE_BENCH_BOUNDS")
        .unwrap_or_else(|_| "lossless".into())
        .parse()
        .context("SNAPSTORE_BENCH_BOUNDS (one bound)")?;
    let threads = per_core::init_threads()?;

    let dir = bench.join(corpus);
    let files = per_core::checkpoint_files(&dir);
    if files.is_empty() {
        println!("skipping {corpus}: no *.safetensors in {}", dir.display());
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let (repo, _, checkouts) = per_core::init_repo(&tmp.path().join("repo"))?;
    let opts = CommitOptions {
        bound: Some(bound),
        ..Default::default()
    };
    for f in &files {
        repo.commit_file(f, &opts)?;
    }

    // In place: every checkout into the buffers of one model, as `load_state_dict` would copy
    // into; else each into fresh buffers (`Repo::checkout`).
    let into = std::env::var("SNAPSTORE_BENCH_INTO").is_ok_and(|v| v == "1");
    let mut model = match into {
        true => Some(Model::of(&repo, files.len())?),
        false => None,
    };
    println!(
        "# {corpus}, {bound}: {passes} passes of {} checkouts {} ({threads} thread(s), \
         checkout cache {checkouts} B)\n",
        files.len(),
        if into {
            "into one model's buffers"
        } else {
            "into fresh buffers"
        }
    );
    println!("| pass | wall ms | coding MB/s per CPU s | untimed ms |");
    println!("|---:|---:|---:|---:|");
    profile::enable();
    for pass in 1..=passes {
        profile::reset();
        let start = Instant::now();
        let bytes = match &mut model {
            Some(model) => check_out_all_into(&repo, model)?,
            None => per_core::check_out_all(&repo, files.len())?,
        };
        let wall = start.elapsed().as_secs_f64();
        let p = profile::read();
        let index: f64 = p
            .stages
            .iter()
            .filter(|s| s.name.starts_with("index"))
            .map(|s| s.seconds)
            .sum();
        println!(
            "| {pass} | {:.1} | {:.1} | {:.1} |",
            wall * 1e3,
            bytes as f64 / 1e6 / (p.total() - index).max(1e-9),
            (wall - p.wall_total()) * 1e3
        );
    }
    println!("\nLast pass:\n\n{}", profile::read());
    Ok(())
}

/// Buffers for every tensor of the run by name (allocated and faulted in by a checkout before
/// the passes), and which tensors each snapshot has, oldest first (a trajectory's snapshots
/// need not hold the same tensors).
struct Model {
    buffers: std::collections::HashMap<String, snapstore::CheckedOutTensor>,
    names: Vec<Vec<String>>,
}

impl Model {
    fn of(repo: &snapstore::Repo, snapshots: usize) -> Result<Model> {
        let mut model = Model {
            buffers: Default::default(),
            names: Vec::new(),
        };
        for back in (0..snapshots).rev() {
            let checkout = repo.checkout(format!("HEAD~{back}").as_str(), None)?;
            model
                .names
                .push(checkout.tensors.iter().map(|t| t.name.clone()).collect());
            for t in checkout.tensors {
                model.buffers.entry(t.name.clone()).or_insert(t);
            }
        }
        Ok(model)
    }
}

/// [`per_core::check_out_all`] into `model`'s buffers ([`snapstore::Repo::checkout_into`]).
fn check_out_all_into(repo: &snapstore::Repo, model: &mut Model) -> Result<u64> {
    let mut bytes = 0u64;
    let snapshots = model.names.len();
    for (back, names) in (0..snapshots).rev().zip(&model.names) {
        let mut targets: Vec<snapstore::TensorTarget<'_>> = model
            .buffers
            .iter_mut()
            .filter(|(name, _)| names.contains(name))
            .map(|(_, t)| snapstore::TensorTarget {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                data: &mut t.data,
            })
            .collect();
        repo.checkout_into(format!("HEAD~{back}").as_str(), &mut targets)?;
        bytes += targets.iter().map(|t| t.data.len() as u64).sum::<u64>();
    }
    Ok(bytes)
}
