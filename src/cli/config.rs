//! `snapstore config`: read or set a setting (keyframe_every, bound for HEAD's branch).

use anyhow::{bail, Context, Result};
use snapstore::{Bound, Repo};

#[derive(clap::Args)]
pub struct Args {
    /// Setting name.
    key: String,
    /// New value.
    value: Option<String>,
}

/// Runs `snapstore config`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    match (args.key.as_str(), args.value) {
        // The value in force: the setting, else the default a commit would use.
        ("bound", None) => println!("{}", repo.branch_bound(&repo.head_branch()?)?),
        ("keyframe_every", None) => println!("{}", repo.keyframe_every()?),
        ("bound", Some(v)) => repo.set_branch_bound(&repo.head_branch()?, v.parse::<Bound>()?)?,
        ("keyframe_every", Some(v)) => {
            let every = v
                .parse::<u32>()
                .ok()
                .filter(|k| *k >= 1)
                .context("keyframe_every must be a positive integer")?;
            repo.set_keyframe_every(every)?;
        }
        (other, _) => bail!("unknown setting {other:?} (known: keyframe_every, bound)"),
    }
    Ok(())
}
