//! `snapstore watch`: commits each checkpoint a trainer writes into a directory (a safetensors
//! file, or a checkpoint directory of shards such as the HF Trainer's `checkpoint-500/`), in
//! the order they were written, through one repository handle that keeps the last commit
//! decoded.
//!
//! `snapstore commit` runs once per process and keeps nothing, so each commit decodes its
//! parent from the keyframe: on a 256 MiB trajectory the eighth commit took 7x the first
//! (BENCHMARKS.md "Caches sized to the machine"). One long-running process commits every
//! delta against the tip it kept, as a trainer's in-process commits do.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use snapstore::{Bound, CommitOptions, Repo};

use super::commit::CodingArgs;
use super::print::{commit_summary, json_line};

#[derive(clap::Args)]
pub struct Args {
    /// The directory the trainer writes checkpoints into: `*.safetensors` files, or checkpoint
    /// directories (subdirectories holding `*.safetensors` shards), each one snapshot.
    dir: PathBuf,
    /// Commit the checkpoints already in DIR first, oldest first (by default only the ones
    /// written after the watch starts are committed). A file a watch already committed on the
    /// branch, unchanged since (same size and modification time), is not committed again.
    #[arg(long)]
    existing: bool,
    /// Commit the checkpoints in DIR, oldest first, and exit (implies --existing).
    #[arg(long)]
    once: bool,
    /// Seconds between looks at DIR. A checkpoint is committed once its size and modification
    /// time (a directory's: its files' total size and latest time) are the same at two looks
    /// (one still being written is left for the next).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    interval: f64,
    /// Error bound: lossless, rel:EPS or abs:EPS (default: the branch's configured bound).
    #[arg(long)]
    bound: Option<String>,
    /// Branch to commit on (default: HEAD's branch).
    #[arg(long)]
    branch: Option<String>,
    #[command(flatten)]
    coding: CodingArgs,
    /// Print one JSON object per checkpoint, on a line of its own: the commit's report with the
    /// checkpoint's `path`, or `{path, error}` for one not committed (also on standard error).
    #[arg(long)]
    pub json: bool,
}

/// The longest `--interval` taken: a day.
const MAX_INTERVAL_SECS: u64 = 86_400;

/// A file's size and modification time: what says it changed.
type Stamp = (u64, SystemTime);

/// Runs `snapstore watch`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let Some(interval) = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() <= MAX_INTERVAL_SECS)
    else {
        bail!(
            "--interval {}: expected seconds, more than 0 and at most {MAX_INTERVAL_SECS}",
            args.interval
        );
    };
    if args.bound.as_deref() == Some("auto") {
        bail!("--bound auto needs an evaluator per commit: use `snapstore commit --bound auto`");
    }
    // Unlike a one-shot command, keep the last commit decoded: the next is coded against it.
    let repo = repo
        .clone()
        .with_tip_cache(snapstore::default_cache_bytes());
    let opts = args.coding.options(CommitOptions {
        branch: args.branch.clone(),
        bound: args.bound.as_deref().map(str::parse::<Bound>).transpose()?,
        ..CommitOptions::default()
    });
    // Versions of files already committed (or there before the watch, and not to be).
    let mut done: HashMap<PathBuf, Stamp> = HashMap::new();
    // What watch commits recorded: (name, identity stamp). A restarted watch does not commit
    // again what an earlier one committed, nor this one a checkpoint directory in which only
    // files a snapshot does not keep changed (the optimizer state a trainer writes after the
    // model).
    let mut committed = committed_stamps(&repo, args.branch.as_deref())?;
    if args.existing || args.once {
        done.extend(checkpoints(&args.dir)?.into_iter().filter(|(path, stamp)| {
            identity(path, stamp).is_some_and(|id| committed.contains(&(file_name(path), id)))
        }));
        if !done.is_empty() {
            eprintln!(
                "{} checkpoint(s) in {} already committed by a watch, unchanged since: skipped",
                done.len(),
                args.dir.display()
            );
        }
    } else {
        done.extend(checkpoints(&args.dir)?);
    }
    if !args.once {
        eprintln!(
            "watching {} ({} checkpoint(s) there left alone; Ctrl-C stops)",
            args.dir.display(),
            done.len()
        );
    }
    // Versions seen once, committed if the next look finds them unchanged.
    let mut seen: HashMap<PathBuf, Stamp> = HashMap::new();
    let mut failed = 0;
    loop {
        for (path, stamp) in checkpoints(&args.dir)? {
            if done.get(&path) == Some(&stamp) {
                continue;
            }
            if !args.once && seen.get(&path) != Some(&stamp) {
                seen.insert(path, stamp);
                continue;
            }
            seen.remove(&path);
            done.insert(path.clone(), stamp);
            let Some(id) = identity(&path, &stamp) else {
                continue; // gone since the look: the next one decides
            };
            let known = (file_name(&path), id);
            if committed.contains(&known) {
                continue;
            }
            match commit(&repo, &path, &known.1, &opts, args.json) {
                Ok(()) => {
                    committed.insert(known);
                }
                Err(e) => {
                    // Reported, and the watch goes on: a file rewritten later is tried again.
                    eprintln!("snapstore watch: {:#}", e);
                    if args.json {
                        json_line(&serde_json::json!({"path": path, "error": format!("{e:#}")}))?;
                    }
                    failed += 1;
                }
            }
        }
        if args.once {
            break;
        }
        std::thread::sleep(interval);
    }
    if failed > 0 {
        bail!(
            "{failed} checkpoint(s) in {} were not committed",
            args.dir.display()
        );
    }
    Ok(())
}

/// The checkpoints directly in `dir` with their stamps, oldest first (by modification time,
/// then name): its `*.safetensors` files and its checkpoint directories.
fn checkpoints(dir: &Path) -> Result<Vec<(PathBuf, Stamp)>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("watching {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        // A file gone or unreadable between the listing and now is looked at next time.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let stamp = if meta.is_dir() && snapstore::holds_safetensors(&path) {
            let Some(stamp) = directory_stamp(&path, &meta) else {
                continue;
            };
            stamp
        } else if meta.is_file() && path.extension().is_some_and(|x| x == "safetensors") {
            (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            )
        } else {
            continue;
        };
        files.push((path, stamp));
    }
    // Equal times (a `tar x`, a file system with 1 s stamps) in natural name order, so
    // epoch_10 lands after epoch_9 and ends on the branch.
    files.sort_by(|a, b| {
        a.1 .1
            .cmp(&b.1 .1)
            .then_with(|| snapstore::natural_cmp(&a.0.to_string_lossy(), &b.0.to_string_lossy()))
    });
    Ok(files)
}

/// A checkpoint directory's stamp: the total size of the files in it and in its subdirectories,
/// and the latest time of them and of the directories (a file added, removed or renamed moves
/// the latter). All of them: a trainer writing its optimizer state after the model (beside it,
/// or in `global_step500/`) is not done yet.
fn directory_stamp(dir: &Path, meta: &std::fs::Metadata) -> Option<Stamp> {
    let mut stamp = (0, meta.modified().ok()?);
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        let Ok(m) = std::fs::metadata(&path) else {
            continue;
        };
        let (len, time) = if m.is_dir() {
            directory_stamp(&path, &m)?
        } else {
            (m.len(), m.modified().ok()?)
        };
        stamp = (stamp.0 + len, stamp.1.max(time));
    }
    Some(stamp)
}

/// What a watch commit records to know the checkpoint again (`file_stamp`): a file's stamp, or
/// the stamp of the files of a checkpoint directory a snapshot keeps.
fn identity(path: &Path, stamp: &Stamp) -> Option<String> {
    let stamp = if path.is_dir() {
        kept_stamp(path)?
    } else {
        *stamp
    };
    Some(stamp_text(&stamp))
}

/// The stamp of the files of a checkpoint directory a snapshot keeps ([`snapstore::keeps_file`]).
fn kept_stamp(dir: &Path) -> Option<Stamp> {
    let mut stamp = (0, SystemTime::UNIX_EPOCH);
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let Ok(m) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if m.is_file() && snapstore::keeps_file(&entry.file_name().to_string_lossy(), m.len()) {
            stamp = (stamp.0 + m.len(), stamp.1.max(m.modified().ok()?));
        }
    }
    Some(stamp)
}

/// The meta keys a watch commit records: the file's name, and its stamp when it was seen.
const FILE_KEY: &str = "file";
const STAMP_KEY: &str = "file_stamp";

/// `SIZE:SECONDS.NANOS` (modification time since the epoch).
fn stamp_text((len, modified): &Stamp) -> String {
    let since = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{len}:{}.{:09}", since.as_secs(), since.subsec_nanos())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// The (file name, stamp) pairs watch commits recorded on `branch` (default HEAD's) history.
fn committed_stamps(repo: &Repo, branch: Option<&str>) -> Result<HashSet<(String, String)>> {
    let spec = branch.map(|b| format!("heads/{b}"));
    let history = match repo.log(spec.as_deref(), None) {
        Ok(h) => h,
        // A branch this watch will start.
        Err(snapstore::Error::UnknownRef(_)) if branch.is_some() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(history
        .into_iter()
        .filter_map(|e| {
            Some((
                e.meta.get(FILE_KEY)?.clone(),
                e.meta.get(STAMP_KEY)?.clone(),
            ))
        })
        .collect())
}

/// Commits one checkpoint, its file name as the message and in the meta (`file`, with its
/// [`identity`] when seen in `file_stamp`).
fn commit(repo: &Repo, path: &Path, id: &str, opts: &CommitOptions, json: bool) -> Result<()> {
    let name = file_name(path);
    let mut opts = opts.clone();
    opts.message = name.clone();
    opts.meta.insert(FILE_KEY.into(), name.clone());
    opts.meta.insert(STAMP_KEY.into(), id.to_string());
    let r = if path.is_dir() {
        repo.commit_dir(path, &opts)?
    } else {
        repo.commit_file(path, &opts)?
    };
    if json {
        // The commit's report, and which checkpoint it was.
        let mut line = serde_json::to_value(&r)?;
        line["path"] = serde_json::json!(path);
        return json_line(&line);
    }
    println!(
        "[{} {}] {name}: {}",
        r.branch,
        r.snapshot.short(),
        commit_summary(&r)
    );
    Ok(())
}
