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
    let key = args.key;
    let stored_key = match key.as_str() {
        "keyframe_every" => key.clone(),
        "bound" => format!("bound.{}", repo.head_branch()?),
        other => bail!("unknown setting {other:?} (known: keyframe_every, bound)"),
    };
    match args.value {
        // The value in force: the setting, else the default a commit would use.
        None => match key.as_str() {
            "bound" => println!("{}", repo.branch_bound(&repo.head_branch()?)?),
            _ => println!("{}", repo.keyframe_every()?),
        },
        Some(v) => {
            if key == "bound" {
                v.parse::<Bound>()?;
            } else {
                v.parse::<u32>()
                    .ok()
                    .filter(|k| *k >= 1)
                    .context("keyframe_every must be a positive integer")?;
            }
            repo.config_set(&stored_key, &v)?;
        }
    }
    Ok(())
}
