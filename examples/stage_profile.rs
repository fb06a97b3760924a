//! Where commit and checkout spend their time, stage by stage, on the shared corpora.
//!
//! ```text
//! cargo run --release --example stage_profile [-- BENCH_DIR [CORPUS...]]
//! ```
//!
//! `BENCH_DIR` defaults to `../shared/bench`; corpora default to `digits-mlp`, `cnn-digits` and
//! `cnn-digits/bf16` (a missing one is skipped with a message). For each corpus and bound
//! (`SNAPSTORE_BENCH_BOUNDS`, default `lossless,rel:0.01`) a fresh repository in a temporary
//! directory commits the whole trajectory in file-name order through one handle (the kept tip,
//! as a trainer does), then checks out every snapshot into memory, with the entropy coders
//! `SNAPSTORE_BENCH_CODEC` names (`auto` unless set; `rans`: what a device codes). `SNAPSTORE_BENCH_TIP_CACHE`
//! and `SNAPSTORE_BENCH_CHECKOUT_CACHE` size the two caches in bytes (the library's default
//! otherwise, `default_cache_bytes()`). The stage timers
//! (`snapstore::profile`) give each stage's CPU and wall time and MB per CPU second; the heading
//! gives the run's wall time, its MB/s of tensor bytes, the coding MB/s (tensor bytes over the
//! CPU time of every stage but fsync and the index, the fixed cost of a durable commit, see
//! BENCHMARKS.md "Why the commit goal is out of reach on these corpora"), and the wall time no stage covers (manifests, the kept
//! tip, allocation).
//!
//! Runs on ONE thread unless `RAYON_NUM_THREADS` says otherwise, so MB/s is per core and every
//! stage's time is on the one thread that does the work (the peers in `peers.py` are
//! single-threaded too).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use snapstore::{profile, Bound};

mod per_core;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.first().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench"),
        PathBuf::from,
    );
    let corpora: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        ["digits-mlp", "cnn-digits", "cnn-digits/bf16"]
            .map(String::from)
            .to_vec()
    };
    let bounds: Vec<Bound> = std::env::var("SNAPSTORE_BENCH_BOUNDS")
        .unwrap_or_else(|_| "lossless,rel:0.01".into())
        .split(',')
        .map(|b| b.parse().with_context(|| format!("bound {b:?}")))
        .collect::<Result<_>>()?;
    let threads = per_core::init_threads()?;
    profile::enable();
    println!("# Stage profile ({threads} thread(s))\n");
    for name in &corpora {
        let dir = bench.join(name);
        let files = per_core::checkpoint_files(&dir);
        if files.is_empty() {
            println!("skipping {name}: no *.safetensors in {}\n", dir.display());
            continue;
        }
        for &bound in &bounds {
            run(name, &files, bound)?;
        }
    }
    Ok(())
}

fn run(corpus: &str, files: &[PathBuf], bound: Bound) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (repo, tip, checkouts) = per_core::init_repo(&tmp.path().join("repo"))?;
    let opts = snapstore::CommitOptions {
        bound: Some(bound),
        codec: codec()?,
        ..Default::default()
    };
    profile::reset();
    let start = Instant::now();
    let mut bytes = 0u64;
    for f in files {
        bytes += repo.commit_file(f, &opts)?.logical_bytes;
    }
    let wall = start.elapsed().as_secs_f64();
    let stored = repo.stats()?.pack_bytes;
    println!(
        "{corpus}, {bound}: {bytes} tensor bytes stored in {stored} pack bytes ({:.3}x); \
         tip cache {tip} B, checkout cache {checkouts} B\n",
        bytes as f64 / stored as f64
    );
    print_table(corpus, bound, "commit", bytes, wall);

    profile::reset();
    let start = Instant::now();
    let bytes = per_core::check_out_all(&repo, files.len())?;
    print_table(
        corpus,
        bound,
        "checkout",
        bytes,
        start.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// The entropy coders, `SNAPSTORE_BENCH_CODEC` (`auto` unless set).
fn codec() -> Result<snapstore::CodecChoice> {
    std::env::var("SNAPSTORE_BENCH_CODEC").map_or(Ok(Default::default()), |c| {
        c.parse()
            .with_context(|| format!("SNAPSTORE_BENCH_CODEC={c:?}"))
    })
}

fn print_table(corpus: &str, bound: Bound, what: &str, bytes: u64, wall: f64) {
    let p = profile::read();
    let fixed: f64 = p
        .stages
        .iter()
        .filter(|s| s.name.starts_with("fsync") || s.name.starts_with("index"))
        .map(|s| s.seconds)
        .sum();
    println!(
        "## {corpus}, {bound}, {what}: {:.1} MB in {:.1} ms wall = {:.1} MB/s; \
         coding {:.1} MB/s per CPU second; untimed {:.1} ms\n",
        bytes as f64 / 1e6,
        wall * 1e3,
        bytes as f64 / 1e6 / wall,
        bytes as f64 / 1e6 / (p.total() - fixed).max(1e-9),
        (wall - p.wall_total()) * 1e3
    );
    println!("{p}");
}
