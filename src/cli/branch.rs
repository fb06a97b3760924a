//! `snapstore branch`: create, list (no NAME) or delete branches.

use anyhow::Result;
use serde_json::json;
use snapstore::Repo;

use super::print::{json_pretty, refs_json};

#[derive(clap::Args)]
pub struct Args {
    /// Branch name.
    name: Option<String>,
    /// Start point (default HEAD).
    #[arg(value_name = "REF")]
    spec: Option<String>,
    /// Delete the branch.
    #[arg(short, long)]
    delete: bool,
    /// Print JSON: the list `{head, branches: {NAME: id}}`; `{branch, snapshot}` made (null
    /// in an empty repository); `{deleted, was}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapstore branch`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let json = args.json;
    match (args.name, args.delete) {
        (None, _) => {
            // Both reads from one open of the index.
            let repo = repo.clone().holding_index()?;
            let head = repo.head_branch()?;
            let branches = repo.list_refs()?.0;
            if json {
                return json_pretty(&json!({"head": head, "branches": refs_json(&branches)}));
            }
            for (n, id) in branches {
                println!("{} {n} {}", if n == head { "*" } else { " " }, id.short());
            }
        }
        (Some(n), true) => {
            let was = repo.delete_ref(&format!("heads/{n}"))?;
            if json {
                return json_pretty(&json!({"deleted": format!("heads/{n}"), "was": was}));
            }
            println!(
                "deleted branch {n} (was {}); to restore it: snapstore branch {n} {}",
                was.short(),
                was.hex()
            );
        }
        (Some(n), false) => {
            let made = repo.create_branch(&n, args.spec.as_deref())?;
            if json {
                return json_pretty(&json!({"branch": n, "snapshot": made}));
            }
            match made {
                Some(id) => println!("branch {n} -> {}", id.short()),
                None => println!("branch {n} (empty)"),
            }
        }
    }
    Ok(())
}
