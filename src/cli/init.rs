//! `snapstore init`: create a repository.

use std::path::PathBuf;

use anyhow::Result;
use snapstore::{Repo, DEFAULT_REPO_DIR};

/// Runs `snapstore init` in `--repo DIR`, else `./.snapstore`.
pub fn run(repo_dir: Option<PathBuf>) -> Result<()> {
    let dir = repo_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_REPO_DIR));
    let repo = Repo::init(&dir)?;
    println!(
        "initialized empty snapstore repository in {}",
        repo.path().display()
    );
    Ok(())
}
