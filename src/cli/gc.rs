//! `snapstore gc`: delete objects no ref reaches.

use std::time::Duration;

use anyhow::Result;
use snapstore::Repo;

use super::print::{human, json_pretty};

#[derive(clap::Args)]
pub struct Args {
    /// Report only.
    #[arg(long)]
    dry_run: bool,
    /// Leave packs younger than this many seconds (a concurrent commit may own them).
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true, value_parser = super::seconds)]
    grace: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapstore gc`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let r = repo.gc(args.dry_run, Duration::from_secs(args.grace))?;
    if args.json {
        return json_pretty(&r);
    }
    println!(
        "{}{} objects in {} packs removed, {} packs rewritten, {} temp files removed, {} freed; {} snapshots kept",
        if args.dry_run { "would remove: " } else { "" },
        r.removed_objects,
        r.removed_packs,
        r.rewritten_packs,
        r.temp_files,
        human(r.freed_bytes),
        r.live_snapshots
    );
    if r.young_objects > 0 {
        println!(
            "kept {} unreachable objects ({}) in packs younger than {} s (--grace); \
             `gc --grace 0` removes them once no commit is running",
            r.young_objects,
            human(r.young_bytes),
            args.grace
        );
    }
    Ok(())
}
