//! `snapstore fsck`: verify every object and snapshot; fails when anything is damaged.

use anyhow::{bail, Result};
use serde_json::json;
use snapstore::{FsckReport, Repo};

use super::print::json_pretty;

#[derive(clap::Args)]
pub struct Args {
    /// Rebuild the index from the packs first.
    #[arg(long)]
    rebuild_index: bool,
    /// Only re-hash objects; skip decoding every tensor.
    #[arg(long)]
    quick: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapstore fsck`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    if args.rebuild_index {
        let n = repo.rebuild_index()?;
        if !args.json {
            println!("index rebuilt: {n} objects");
        }
    }
    let r = repo.fsck(args.quick)?;
    if args.json {
        json_pretty(&json!({"clean": r.is_clean(), "report": r}))?;
    } else {
        print_report(&r);
    }
    if !r.is_clean() {
        bail!("fsck found {} problem(s)", r.problems.len());
    }
    Ok(())
}

fn print_report(r: &FsckReport) {
    println!(
        "{} packs, {} objects re-hashed, {} snapshots, {} tensors verified",
        r.packs, r.objects, r.snapshots, r.tensors_verified
    );
    if r.temp_files > 0 {
        println!(
            "{} temp file(s) of killed commands ({}), not damage: the next commit or gc removes them",
            r.temp_files,
            super::print::human(r.temp_bytes)
        );
    }
    for p in &r.problems {
        println!(
            "DAMAGED {} ({}): {}",
            p.object,
            p.pack.as_deref().unwrap_or("?"),
            p.problem
        );
        for (s, t) in &p.breaks {
            if t.is_empty() {
                println!("  breaks snapshot {s}");
            } else {
                println!("  breaks snapshot {s} tensor {t:?}");
            }
        }
    }
}
