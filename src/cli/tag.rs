//! `snapstore tag`: create, list (no NAME) or delete tags.

use anyhow::Result;
use snapstore::Repo;

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
}

/// Runs `snapstore tag`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    match (args.name, args.delete) {
        (None, _) => {
            for (n, id) in repo.list_refs()?.1 {
                println!("{n} {}", id.short());
            }
        }
        (Some(n), true) => {
            let was = repo.delete_ref(&format!("tags/{n}"))?;
            println!(
                "deleted tag {n} (was {}); to restore it: snapstore tag {n} {}",
                was.short(),
                was.hex()
            );
        }
        (Some(n), false) => {
            let id = repo.create_tag(&n, &args.spec)?;
            println!("tag {n} -> {}", id.short());
        }
    }
    Ok(())
}
