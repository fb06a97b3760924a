//! `snapstore switch`: make HEAD name another branch.

use anyhow::Result;
use snapstore::Repo;

#[derive(clap::Args)]
pub struct Args {
    /// Branch.
    branch: String,
    /// Create the branch at HEAD's snapshot first.
    #[arg(short = 'c', long)]
    create: bool,
}

/// Runs `snapstore switch`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let branch = args.branch;
    if args.create {
        match repo.switch_new_branch(&branch)? {
            Some(id) => println!("HEAD -> {branch} (new branch at {})", id.short()),
            None => println!("HEAD -> {branch} (new branch, no snapshots yet)"),
        }
    } else {
        repo.switch_branch(&branch)?;
        println!("HEAD -> {branch}");
    }
    Ok(())
}
