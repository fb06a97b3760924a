//! `snapstore tag`: create, list (no NAME) or delete tags.

use anyhow::Result;
use serde_json::json;
use snapstore::Repo;

use super::print::{json_pretty, refs_json};

#[derive(clap::Args)]
pub struct Args {
    /// Tag name.
    name: Option<String>,
    /// Snapshot to tag (default HEAD).
    #[arg(value_name = "REF", default_value = "HEAD")]
    spec: String,
    /// Delete the tag.
    #[arg(short, long)]
    delete: bool,
    /// Print JSON: the list `{NAME: id}`; `{tag, snapshot}` made; `{deleted, was}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapstore tag`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let json = args.json;
    match (args.name, args.delete) {
        (None, _) => {
            let tags = repo.list_refs()?.1;
            if json {
                return json_pretty(&refs_json(&tags));
            }
            for (n, id) in tags {
                println!("{n} {}", id.short());
            }
        }
        (Some(n), true) => {
            let was = repo.delete_ref(&format!("tags/{n}"))?;
            if json {
                return json_pretty(&json!({"deleted": format!("tags/{n}"), "was": was}));
            }
            println!(
                "deleted tag {n} (was {}); to restore it: snapstore tag {n} {}",
                was.short(),
                was.hex()
            );
        }
        (Some(n), false) => {
            let id = repo.create_tag(&n, &args.spec)?;
            if json {
                return json_pretty(&json!({"tag": n, "snapshot": id}));
            }
            println!("tag {n} -> {}", id.short());
        }
    }
    Ok(())
}
