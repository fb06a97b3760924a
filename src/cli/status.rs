//! `snapstore status`: is a safetensors file already stored, in which snapshot, and how does
//! each tensor differ from HEAD's.

use std::path::PathBuf;

use anyhow::{bail, Result};
use snapstore::{Bound, ObjectId, Repo};

use super::print::json_pretty;

#[derive(clap::Args)]
pub struct Args {
    /// The checkpoint: a safetensors file or a checkpoint directory.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapstore status`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let file = args.file;
    if file.is_dir() && !snapstore::holds_safetensors(&file) {
        bail!(
            "{}: status takes a safetensors file or a checkpoint directory, and this directory \
             holds no *.safetensors file (subdirectories are not searched)",
            file.display()
        );
    }
    if !file.is_dir() {
        super::search::checkpoint_only("status", &file)?;
    }
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
        Some(id) if st.snapshot_lossy.is_empty() => {
            println!("{}: stored as snapshot {}", file.display(), at(id))
        }
        Some(id) => println!(
            "{}: stored as snapshot {} under {} (a checkout is within the bound, not \
             byte-identical)",
            file.display(),
            at(id),
            bounds_text(&st.snapshot_lossy)
        ),
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
                let name = if *n == t.name {
                    at(id)
                } else {
                    format!("{} as {n:?}", at(id))
                };
                match t.stored_bound {
                    Some(b) if b != Bound::Lossless => format!("{name} under {b}"),
                    _ => name,
                }
            });
        println!("{:<width$} {:<8} {stored}", t.name, t.status);
    }
    for name in &st.removed {
        println!("{name:<width$} {:<8} (in HEAD, not in the file)", "removed");
    }
    if !st.files_differ.is_empty() {
        println!("files not as in HEAD: {}", st.files_differ.join(", "));
    }
    Ok(())
}

/// `rel:0.01` or `rel:0.01, abs:0.001`.
fn bounds_text(bounds: &[Bound]) -> String {
    let texts: Vec<String> = bounds.iter().map(Bound::to_string).collect();
    texts.join(", ")
}
