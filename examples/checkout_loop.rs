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
//! stage table. The caches are sized as in `stage_profile` (`SNAPSTORE_BENCH_CHECKOUT_CACHE`).
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

    println!(
        "# {corpus}, {bound}: {passes} passes of {} checkouts ({threads} thread(s), checkout \
         cache {checkouts} B)\n",
        files.len()
    );
    println!("| pass | wall ms | coding MB/s per CPU s | untimed ms |");
    println!("|---:|---:|---:|---:|");
    profile::enable();
    for pass in 1..=passes {
        profile::reset();
        let start = Instant::now();
        let bytes = per_core::check_out_all(&repo, files.len())?;
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
