//! `snapstore fsck`: verify every object and snapshot; fails when anything is damaged.

use anyhow::{bail, Result};
use serde_json::json;
use snapstore::{FsckReport, RebuildReport, Repo};

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
    let rebuilt = if args.rebuild_index {
        let r = repo.rebuild_index()?;
        if !args.json {
            print_rebuild(&r);
        }
        Some(r)
    } else {
        None
    };
    let r = repo.fsck(args.quick)?;
    if args.json {
        let mut out = json!({"clean": r.is_clean(), "report": r});
        if let Some(rebuilt) = rebuilt {
            out["rebuild"] = json!(rebuilt);
        }
        json_pretty(&out)?;
    } else {
        print_report(&r);
    }
    if !r.is_clean() {
        bail!("fsck found {} problem(s)", r.problems.len());
    }
    Ok(())
}

fn print_rebuild(r: &RebuildReport) {
    println!("index rebuilt: {} objects", r.objects);
    for p in &r.rescued_packs {
        let into = match (&p.new_pack, &p.kept_as) {
            (Some(new), None) => format!("pack {new} rewritten whole"),
            (Some(new), Some(kept)) => {
                format!("copied into pack {new}; the damaged file kept as {kept}")
            }
            (None, Some(kept)) => format!("the damaged file kept as {kept}"),
            (None, None) => String::new(),
        };
        println!(
            "{}: {} object(s) recovered from its records, {into}",
            p.problem, p.objects
        );
    }
    for s in &r.missing_snapshots {
        println!("snapshot {s} is missing or damaged: what only it reaches is listed below as unreferenced");
    }
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
    if !r.unreferenced_snapshots.is_empty() {
        let n = r.unreferenced_snapshots.len();
        println!(
            "{n} snapshot(s) no ref reaches, not damage: gc removes them; keep one with `snapstore branch NAME ID`"
        );
        for u in r.unreferenced_snapshots.iter().take(10) {
            println!("  {} {}", u.id, u.message);
        }
        if n > 10 {
            println!("  ... ({} more in --json)", n - 10);
        }
    }
    if r.kept_as_references > 0 {
        println!(
            "{} snapshot(s) no ref reaches are kept: snapshots a ref reaches are coded against \
             them (as a rebase leaves its originals)",
            r.kept_as_references
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
