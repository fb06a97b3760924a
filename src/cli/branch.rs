//! `snapstore branch`: create, list (no NAME) or delete branches.

use anyhow::Result;
use snapstore::Repo;

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
}

/// Runs `snapstore branch`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    match (args.name, args.delete) {
        (None, _) => {
            // Both reads from one open of the index.
            let repo = repo.clone().holding_index()?;
            let head = repo.head_branch()?;
            for (n, id) in repo.list_refs()?.0 {
                println!("{} {n} {}", if n == head { "*" } else { " " }, id.short());
            }
        }
        (Some(n), true) => {
            let was = repo.delete_ref(&format!("heads/{n}"))?;
            println!(
                "deleted branch {n} (was {}); to restore it: snapstore branch {n} {}",
                was.short(),
                was.hex()
            );
        }
        (Some(n), false) => match repo.create_branch(&n, args.spec.as_deref())? {
            Some(id) => println!("branch {n} -> {}", id.short()),
            None => println!("branch {n} (empty)"),
        },
    }
    Ok(())
}
