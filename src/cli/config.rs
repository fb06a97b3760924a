//! `snapstore config`: read or set a setting (keyframe_every, bound for HEAD's branch).

use anyhow::Result;
use snapstore::Repo;

#[derive(clap::Args)]
pub struct Args {
    /// Setting name.
    key: String,
    /// New value.
    value: Option<String>,
}

/// Runs `snapstore config`: the value in force (the setting, else the default a commit would
/// use), or sets it.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let branch = repo.head_branch()?;
    match args.value {
        None => println!("{}", repo.setting(&args.key, &branch)?),
        Some(v) => repo.set_setting(&args.key, &v, &branch)?,
    }
    Ok(())
}
