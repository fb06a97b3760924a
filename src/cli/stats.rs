//! `snapstore stats`: repository totals.

use anyhow::Result;
use snapstore::Repo;

use super::print::{human, json_pretty, ratio_text};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapstore stats`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let s = repo.stats()?;
    if args.json {
        return json_pretty(&s);
    }
    println!("snapshots    {}", s.snapshots);
    println!("branches     {}   tags {}", s.branches, s.tags);
    println!("logical      {}", human(s.logical_bytes));
    println!(
        "stored       {} ({}): the snapshots' chunks, as commit and log count them",
        human(s.stored_bytes),
        ratio_text(s.logical_bytes, s.stored_bytes)
    );
    println!(
        "on disk      {} ({}): {} in {} packs, {} index and refs.log",
        human(s.disk_bytes),
        ratio_text(s.logical_bytes, s.disk_bytes),
        human(s.pack_bytes),
        s.packs,
        human(s.index_bytes)
    );
    println!("dedup saved  {}", human(s.dedup_bytes));
    Ok(())
}
