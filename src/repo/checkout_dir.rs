//! A checkpoint directory's snapshot written back as that directory: every file it lists, each
//! beside its final name until all are written, never through a link, never beside shards of
//! another checkpoint.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use super::checkout::{decode_tensors, CheckoutReport, Prepared};
use crate::error::{Error, Result};
use crate::frames::natural_cmp;
use crate::fsutil::{forget_temp, parent_dir, register_temp, AtomicFile, DIRECT_MIN_BYTES};
use crate::safetensors_io::write_header_prefix;
use crate::store::manifest::CheckpointFile;

/// Writes a checkpoint directory snapshot into `dir` (created if missing): every file it lists,
/// each written beside its final name and renamed into place once all are written, so a
/// checkout interrupted or failing while it decodes leaves what was there; one failing later,
/// while the finished files are synced and renamed one by one, may leave some replaced. A `dir` this call made goes on failure. Refuses a `dir` holding a safetensors
/// file the snapshot does not list: a loader reading the directory would mix checkpoints.
pub(crate) fn write_directory(
    p: Prepared,
    dir: &Path,
    progress: &dyn Fn(u64, u64),
    stop: &dyn Fn() -> Result<()>,
) -> Result<CheckoutReport> {
    let made = check_target(&p, dir)?;
    if made {
        // Nothing will be in it but this checkout's files: a signal takes it with them.
        register_temp(dir);
        fs::create_dir(dir).map_err(|e| {
            forget_temp(dir);
            Error::io(dir, e)
        })?;
    }
    let written = write_directory_files(p, dir, progress, stop);
    if made {
        if written.is_err() {
            let _ = fs::remove_dir_all(dir);
        }
        forget_temp(dir);
    }
    written
}

/// Whether `dir` can take snapshot `p`'s files, before anything is decoded; true when it is to
/// be made. What a killed checkout left there is removed first.
fn check_target(p: &Prepared, dir: &Path) -> Result<bool> {
    let m = &p.manifest;
    let bad = |problem: String| Error::BadCheckpointDir {
        dir: dir.to_path_buf(),
        problem,
    };
    match (fs::symlink_metadata(dir), fs::metadata(dir)) {
        (Err(_), _) => {
            let parent = parent_dir(dir);
            if !parent.is_dir() {
                return Err(bad(format!(
                    "no such directory {} to make it in",
                    parent.display()
                )));
            }
            return Ok(true);
        }
        (Ok(_), Err(_)) => {
            return Err(bad(
                "a symbolic link to nothing: make the directory it names, or \
                 give -o that directory"
                    .into(),
            ))
        }
        (Ok(_), Ok(meta)) if !meta.is_dir() => {
            return Err(bad(format!(
                "not a directory, and snapshot {} is a checkpoint directory of {} files: -o \
                 names the directory to write them into (or NAME.safetensors, for all its \
                 tensors in one file)",
                p.snapshot.short(),
                m.files.len()
            )))
        }
        (Ok(_), Ok(_)) => {}
    }
    for f in &m.files {
        crate::fsutil::remove_stale_temps_of(&dir.join(f.name()));
        if dir.join(f.name()).is_dir() {
            return Err(bad(format!(
                "{} is a directory there, where snapshot {} has a file",
                f.name(),
                p.snapshot.short()
            )));
        }
    }
    let listed = |name: &str| m.files.iter().any(|f| f.name() == name);
    let mut foreign: Vec<String> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // Hidden entries, as a commit passes them over (our temp files among them).
        .filter(|n| !n.starts_with('.'))
        .filter(|n| super::has_extension(Path::new(n), "safetensors") && !listed(n))
        .collect();
    foreign.sort_by(|a, b| natural_cmp(a, b));
    if let Some(first) = foreign.first() {
        let more = match foreign.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(bad(format!(
            "holds {first}{more}, which snapshot {} does not have: a loader would mix the two \
             checkpoints; check out into a new or empty directory",
            p.snapshot.short()
        )));
    }
    Ok(false)
}

fn write_directory_files(
    p: Prepared,
    dir: &Path,
    progress: &dyn Fn(u64, u64),
    stop: &dyn Fn() -> Result<()>,
) -> Result<CheckoutReport> {
    let started = Instant::now();
    let m = &p.manifest;
    let shards = m.shards();
    let mut outs = Vec::with_capacity(shards.len());
    let mut file_of = vec![0; m.tensors.len()];
    for (s, (name, header, range)) in shards.iter().enumerate() {
        let path = dir.join(name);
        let size: u64 = m.tensors[range.clone()].iter().map(|e| e.len).sum();
        // Renamed over what is there, a symbolic link included: a hub cache's snapshot
        // directory links its files to blobs other revisions share, which must not change.
        let mut out = if size >= DIRECT_MIN_BYTES {
            AtomicFile::create_direct(&path)?
        } else {
            AtomicFile::create(&path)?
        };
        write_header_prefix(&mut out, header.as_bytes()).map_err(|e| Error::io(&path, e))?;
        file_of[range.clone()].fill(s);
        outs.push((path, out));
    }
    let mut texts = Vec::new();
    for f in &m.files {
        if let CheckpointFile::Text { name, text } = f {
            let path = dir.join(name);
            let mut out = AtomicFile::create(&path)?;
            out.write_all(text.as_bytes())
                .map_err(|e| Error::io(&path, e))?;
            texts.push(out);
        }
    }
    let order: Vec<_> = p.selected.iter().collect();
    let total: u64 = order.iter().map(|e| e.len).sum();
    let mut done = 0;
    decode_tensors(&p.reader, &p.snapshot, &order, None, &mut |t, _, chunk| {
        stop()?;
        done += chunk.len() as u64;
        progress(done, total);
        let (path, out) = &mut outs[file_of[t]];
        out.write_all(&chunk).map_err(|err| Error::io(&*path, err))
    })?;
    for (_, out) in outs {
        out.commit()?;
    }
    for out in texts {
        out.commit()?;
    }
    Ok(CheckoutReport {
        snapshot: p.snapshot,
        path: dir.to_path_buf(),
        tensors: order.len(),
        bytes: total,
        seconds: started.elapsed().as_secs_f64(),
        replaced_link: None,
    })
}
