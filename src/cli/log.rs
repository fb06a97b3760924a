//! `snapstore log`: snapshots, newest first.

use anyhow::Result;
use snapstore::{LogEntry, Repo};

use super::print::{json_pretty, sizes, utc_time};

#[derive(clap::Args)]
pub struct Args {
    /// Start here (default HEAD).
    #[arg(value_name = "REF")]
    spec: Option<String>,
    /// At most N snapshots.
    #[arg(short = 'n', long)]
    limit: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapstore log`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    // The history and the current branch from one open of the index (each open costs more as
    // the history grows).
    let repo = repo.clone().holding_index()?;
    let entries = repo.log(args.spec.as_deref(), args.limit)?;
    if args.json {
        return json_pretty(&entries);
    }
    let head = repo.head_branch()?;
    for e in entries {
        println!("{}", line(&e, &head));
    }
    Ok(())
}

/// One snapshot's line: id, time, refs, sizes, bound, message, metadata.
fn line(e: &LogEntry, head: &str) -> String {
    let meta: Vec<String> = e.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let refs: Vec<String> = e
        .refs
        .iter()
        .map(
            |r| match (r.strip_prefix("heads/"), r.strip_prefix("tags/")) {
                (Some(b), _) if b == head => format!("HEAD -> {b}"),
                (Some(b), _) => b.to_string(),
                (_, Some(t)) => format!("tag: {t}"),
                _ => r.clone(),
            },
        )
        .collect();
    format!(
        "{} {} {}{} {} {}{}",
        e.id.short(),
        utc_time(e.time),
        if refs.is_empty() {
            String::new()
        } else {
            format!("({}) ", refs.join(", "))
        },
        sizes(e.logical_bytes, e.stored_bytes),
        e.bound,
        e.message,
        if meta.is_empty() {
            String::new()
        } else {
            format!(" [{}]", meta.join(" "))
        }
    )
}
