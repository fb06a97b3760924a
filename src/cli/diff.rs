//! `snapstore diff`: two snapshots, a snapshot against a safetensors file or checkpoint
//! directory, or a frame sequence
//! against its PNG directory or `.npy` (error and PSNR per frame).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use serde_json::json;
use snapstore::{is_frames, FrameMetrics, Input, InputKind, Manifest, ObjectId, Repo};

use super::print::json_pretty;
use super::ExitWith;

#[derive(clap::Args)]
pub struct Args {
    /// First snapshot.
    #[arg(value_name = "REF")]
    a: String,
    /// Second snapshot, a safetensors file or checkpoint directory, or (for a sequence) a PNG
    /// directory or .npy. Frames are compared one by one: max abs error and PSNR, whose peak is
    /// 255 for U8, 65535 for U16 and, for F32, max - min of the finite values of the whole
    /// sequence given here (so one outlier in any frame raises every frame's PSNR).
    #[arg(value_name = "REF|FILE")]
    b: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 where anything differs (a tensor changed, added, removed or of
    /// another layout; a frame with a nonzero error), 0 where nothing does, and 2 on an error
    /// (a shape mismatch, a missing file), as `git diff --exit-code` keeps them apart.
    #[arg(long)]
    exit_code: bool,
}

/// Runs `snapstore diff`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let (a, b, json) = (&args.a, &args.b, args.json);
    let differs = match compared(repo, a, b, json) {
        Ok(differs) => differs,
        // Status 1 says "differs" here, so an error must exit with another.
        Err(error) if args.exit_code => return Err(ExitWith { status: 2, error }.into()),
        Err(error) => return Err(error),
    };
    if args.exit_code && differs {
        std::process::exit(1);
    }
    Ok(())
}

/// Prints the comparison of `a` with `b`; returns whether anything differs.
fn compared(repo: &Repo, a: &str, b: &str, json: bool) -> Result<bool> {
    let path = Path::new(b);
    // Resolved once: every read below takes the snapshot and manifest shown here.
    let shown = repo.show(a)?;
    if is_frames(&shown.1) && (path.is_dir() || snapstore::has_extension(path, "npy")) {
        let frames = diff_frames(repo, shown, path, json)?;
        return Ok(frames.iter().any(|f| f.max_abs_err != 0.0));
    }
    if path.is_dir() && !snapstore::holds_safetensors(path) {
        bail!(
            "{b}: a directory holding no *.safetensors file: diff compares a snapshot with \
             another, a safetensors file, a checkpoint directory or, for a frame sequence, its \
             PNGs"
        );
    }
    let rows = if path.is_file() || path.is_dir() {
        repo.diff_file(shown, path)?
    } else {
        repo.diff(shown, b)?
    };
    let differs = rows.iter().any(|r| r.status != "same");
    if json {
        json_pretty(&rows)?;
        return Ok(differs);
    }
    println!(
        "{:<40} {:<8} {:>12} {:>12} {:>12} {:>9}",
        "tensor", "status", "elements", "max_abs", "max_rel", "changed"
    );
    // Not compared (added, removed, another layout): no error to show.
    let error = |e: Option<f64>| e.map_or("-".to_string(), |e| format!("{e:.4e}"));
    for r in &rows {
        println!(
            "{:<40} {:<8} {:>12} {:>12} {:>12} {:>8.2}%",
            r.name,
            r.status,
            r.elements,
            error(r.max_abs),
            error(r.max_rel),
            r.changed_fraction * 100.0
        );
    }
    Ok(differs)
}

/// A sequence snapshot against the frames it was committed from; returns the rows printed.
fn diff_frames(
    repo: &Repo,
    a: (ObjectId, Arc<Manifest>),
    path: &Path,
    json: bool,
) -> Result<Vec<FrameMetrics>> {
    let Input::Frames(original) = Input::detect(path, InputKind::Auto)? else {
        bail!("not a frame sequence");
    };
    let rows = repo.diff_frames(a, &original)?;
    if json {
        // The tensor diff's key names, with the frame index.
        let json: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"frame": i, "max_abs": r.max_abs_err, "psnr": r.psnr}))
            .collect();
        json_pretty(&json)?;
        return Ok(rows);
    }
    println!("{:>6} {:>12} {:>10}", "frame", "max_abs", "psnr_db");
    for (i, r) in rows.iter().enumerate() {
        println!("{i:>6} {:>12.4e} {:>10.2}", r.max_abs_err, r.psnr);
    }
    Ok(rows)
}
