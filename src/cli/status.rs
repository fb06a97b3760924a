//! `snapstore status`: is a safetensors file already stored, in which snapshot, and how does
//! each tensor differ from HEAD's.

use std::path::PathBuf;

use anyhow::Result;
use snapstore::{ObjectId, Repo};

use super::print::json_pretty;

#[derive(clap::Args)]
pub struct Args {
    /// The checkpoint file.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapstore status`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let file = args.file;
    let st = repo.status(&file)?;
    if args.json {
        return json_pretty(&st);
    }
    let at = |id: &ObjectId| {
        if Some(*id) == st.head {
            format!("{} (HEAD)", id.short())
        } else {
            id.short()
        }
    };
    match &st.snapshot {
        Some(id) => println!("{}: stored as snapshot {}", file.display(), at(id)),
        None => println!(
            "{}: not stored as a whole; against HEAD{}:",
            file.display(),
            st.head
                .map_or(" (no snapshots yet)".into(), |h| format!(" {}", h.short()))
        ),
    }
    let width = st
        .tensors
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!("{:<width$} {:<8} stored in", "tensor", "vs HEAD");
    for t in &st.tensors {
        let stored = t
            .stored_in
            .as_ref()
            .map_or("not stored".to_string(), |(id, n)| {
                if *n == t.name {
                    at(id)
                } else {
                    format!("{} as {n:?}", at(id))
                }
            });
        println!("{:<width$} {:<8} {stored}", t.name, t.status);
    }
    for name in &st.removed {
        println!("{name:<width$} {:<8} (in HEAD, not in the file)", "removed");
    }
    Ok(())
}
