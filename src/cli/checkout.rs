//! `snapstore checkout`: a snapshot (or some tensors) as a safetensors file, or frames of a
//! sequence as PNGs or a `.npy`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;
use snapstore::{is_frames, write_npy, write_pngs, Manifest, ObjectId, Repo};

use super::print::{checkout_report, human, output_path};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: HEAD, HEAD~N, branch, tag or id prefix.
    #[arg(value_name = "REF")]
    spec: String,
    /// Output: a .safetensors file (`-` or /dev/stdout: standard output, the report then on
    /// standard error), or a directory for a checkpoint directory; for a frame sequence also a
    /// .npy file, or a directory of PNGs (any other name). Extensions match in any case.
    #[arg(short, long)]
    output: PathBuf,
    /// Only these tensors (repeatable).
    #[arg(long = "tensor", value_name = "NAME")]
    tensors: Vec<String>,
    /// For a frame sequence: only frames A..B, half-open (A included, B not; 10.. and ..5
    /// leave an end open), into a .npy file or a directory of PNGs. Refused with a
    /// .safetensors output, which holds the whole sequence: leave --frames out there.
    #[arg(long, value_name = "A..B", help_heading = "Frame sequences")]
    frames: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapstore checkout`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let Args {
        spec,
        output,
        tensors,
        frames,
        json,
    } = args;
    // Resolve once: the snapshot read below is the one inspected here, its manifest read once.
    let shown = repo.show(&spec)?;
    let manifest = &shown.1;
    let sequence = is_frames(manifest);
    let wants_file = has_extension(&output, "safetensors");
    if !sequence && has_extension(&output, "npy") {
        bail!(
            "{}: a .npy output takes a frame sequence, and snapshot {} holds tensors ({} of \
             them), not one: write it with -o NAME.safetensors",
            output.display(),
            shown.0.short(),
            manifest.tensors.len()
        );
    }
    if sequence && frames.is_some() && wants_file {
        bail!(
            "--frames writes a directory of PNGs or a .npy file, not {}: use -o NAME.npy \
             or -o DIR, or leave out --frames to write the whole sequence as safetensors",
            output.display()
        );
    }
    if sequence && (frames.is_some() || !wants_file) {
        if let Some(name) = tensors.iter().find(|n| n.as_str() != "frames") {
            bail!(
                "--tensor {name}: snapshot {} is a frame sequence, whose one tensor is \
                 `frames`; choose frames with --frames A..B",
                shown.0.short()
            );
        }
        let range = frame_range(frames.as_deref(), manifest)?;
        return write_frames(repo, shown, range, &output, json);
    }
    if frames.is_some() {
        bail!("--frames applies to frame-sequence snapshots; {spec} holds tensors");
    }
    let names = (!tensors.is_empty()).then_some(&tensors[..]);
    let output = output_path(output);
    let streamed = snapstore::is_stream(&output);
    let r = repo.checkout_to_file(shown, &output, names)?;
    let line = format!(
        "wrote {} ({} tensors, {}) from {} in {:.2}s",
        r.path.display(),
        r.tensors,
        human(r.bytes),
        r.snapshot.short(),
        r.seconds
    );
    checkout_report(&r, &line, json, streamed, r.replaced_link.as_deref())
}

/// The frames `--frames A..B` names in a sequence (all of them without it).
fn frame_range(frames: Option<&str>, manifest: &Manifest) -> Result<Range<usize>> {
    let (a, b) = frames
        .map(parse_frame_range)
        .transpose()?
        .unwrap_or((None, None));
    let t = manifest
        .tensor(snapstore::FRAMES_TENSOR)
        .map_or(0, |e| e.shape[0] as usize);
    Ok(a.unwrap_or(0)..b.unwrap_or(t))
}

/// Writes frames `range` of a sequence snapshot as a `.npy` or a directory of PNGs.
fn write_frames(
    repo: &Repo,
    shown: (ObjectId, Arc<Manifest>),
    range: Range<usize>,
    output: &Path,
    json: bool,
) -> Result<()> {
    let seq = repo.checkout_frames(shown, Some(range.clone()))?;
    if has_extension(output, "npy") {
        write_npy(&seq, output, 0..seq.t)?;
    } else {
        write_pngs(&seq, output, 0..seq.t)?;
    }
    if json {
        println!(
            "{}",
            json!({"path": output, "frames": [range.start, range.end]})
        );
    } else {
        println!(
            "wrote frames {}..{} to {}",
            range.start,
            range.end,
            output.display()
        );
    }
    Ok(())
}

/// Whether `path` ends in `.EXT`, in any case (`x.NPY` is a .npy file).
fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Parses `A..B` (either end optional) into a frame range.
fn parse_frame_range(s: &str) -> Result<(Option<usize>, Option<usize>)> {
    let (a, b) = s
        .split_once("..")
        .context("--frames wants A..B, e.g. 10..20")?;
    let num = |x: &str| -> Result<Option<usize>> {
        if x.is_empty() {
            Ok(None)
        } else {
            Ok(Some(x.parse().with_context(|| {
                format!("--frames: {x:?} is not a frame number")
            })?))
        }
    };
    let (a, b) = (num(a)?, num(b)?);
    if let (Some(a), Some(b)) = (a, b) {
        if a > b {
            bail!("--frames {s} is reversed: A..B runs from frame A up to, not including, B");
        }
    }
    Ok((a, b))
}
