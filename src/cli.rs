//! Command-line interface: a thin face over the library. Every command that reports takes
//! `--json`; the JSON shapes are documented in the README.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use snapstore::backend::{doctor, Backend, BackendChoice};

use snapstore::{
    is_frames, load_npy, load_png_dir, write_npy, write_pngs, Bound, CodecChoice, CommitOptions,
    FrameSeq, Repo, Rounding, DEFAULT_REPO_DIR,
};

#[derive(Parser)]
#[command(
    name = "snapstore",
    version,
    about = "Versioned, error-bounded storage for checkpoints and frame sequences"
)]
struct Cli {
    /// Repository directory (default: the nearest .snapstore in this directory or above it;
    /// `init` creates ./.snapstore).
    #[arg(long, global = true, env = "SNAPSTORE_REPO")]
    repo: Option<PathBuf>,
    /// Where the delta math runs: auto (CUDA for commits with >= 1 GiB under a bound when a GPU
    /// loads, else the CPU), cpu or cuda.
    #[arg(long, global = true, env = "SNAPSTORE_BACKEND", default_value = "auto")]
    backend: BackendChoice,
    /// No progress bars (they are drawn only on a terminal, and never with --json).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a repository.
    Init,
    /// Store a safetensors checkpoint, or a frame sequence (a directory of PNGs, a .npy, or a
    /// safetensors file with --kind frames), as a new snapshot.
    Commit {
        /// The checkpoint file.
        file: PathBuf,
        /// Message.
        #[arg(short, long, default_value = "")]
        message: String,
        /// Branch to commit on (default: HEAD's branch).
        #[arg(long)]
        branch: Option<String>,
        /// Metadata as KEY=VALUE (repeatable), e.g. --meta epoch=3 --meta acc=0.91.
        #[arg(long = "meta", value_name = "KEY=VALUE")]
        meta: Vec<String>,
        /// Entropy coders: auto, zstd or lzma.
        #[arg(long, default_value = "auto")]
        codec: CodecChoice,
        /// Error bound: lossless, rel:EPS, abs:EPS, or auto (searched with --eval-cmd; see
        /// `snapstore search`) (default: the branch's configured bound).
        #[arg(long)]
        bound: Option<String>,
        /// Store a keyframe (no reference) at least every K snapshots (default: the repository's
        /// keyframe_every, else 32; a chain also ends when its deltas outgrow 8 keyframes, and a
        /// lossless one after 8 snapshots).
        #[arg(long, value_name = "K")]
        keyframe_every: Option<u32>,
        /// Rounding of lossy codes: lattice (a grid per element: unbiased, free for weights that
        /// do not move), nearest (one global grid) or dither (half-step stochastic rounding).
        #[arg(long, default_value = "lattice")]
        rounding: Rounding,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        auto: crate::search_cli::AutoArgs,
        /// What FILE holds: auto (a directory of PNGs or a .npy is a frame sequence),
        /// tensors, or frames (a safetensors file with one [T,H,W(,C)] array).
        #[arg(long, default_value = "auto", help_heading = "Frame sequences")]
        kind: InputKind,
        /// Frames per group for a frame sequence (each group starts with a keyframe).
        #[arg(
            long,
            value_name = "K",
            default_value_t = snapstore::DEFAULT_FRAME_GROUP,
            help_heading = "Frame sequences"
        )]
        group: usize,
    },
    /// Choose an error bound for a checkpoint: the relative bound maximizing
    /// alpha*ratio + (1-alpha)*kept accuracy without losing more than --max-loss.
    Search(crate::search_cli::SearchCommand),
    /// Write a snapshot (or some tensors) as a safetensors file, or frames of a sequence as
    /// PNGs or a .npy.
    Checkout {
        /// Snapshot: HEAD, HEAD~N, branch, tag or id prefix.
        #[arg(value_name = "REF")]
        spec: String,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Only these tensors (repeatable).
        #[arg(long = "tensor", value_name = "NAME")]
        tensors: Vec<String>,
        /// For a frame sequence: only frames A..B, half-open (A included, B not; 10.. and ..5
        /// leave an end open). The output is a directory of PNGs or a .npy file; without
        /// --frames, a .safetensors file of the whole sequence.
        #[arg(long, value_name = "A..B", help_heading = "Frame sequences")]
        frames: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List snapshots, newest first.
    Log {
        /// Start here (default HEAD).
        #[arg(value_name = "REF")]
        spec: Option<String>,
        /// At most N snapshots.
        #[arg(short = 'n', long)]
        limit: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a snapshot: per tensor dtype, shape, encoding, stored bytes and ratio.
    Show {
        /// Snapshot.
        #[arg(value_name = "REF", default_value = "HEAD")]
        spec: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Is a safetensors file already stored, in which snapshot, and how does each tensor
    /// differ from HEAD's? (Compares hashes; decodes nothing.)
    Status {
        /// The checkpoint file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare two snapshots, or a snapshot against a safetensors file; a frame sequence
    /// against its PNG directory or .npy (error and PSNR per frame).
    Diff {
        /// First snapshot.
        #[arg(value_name = "REF")]
        a: String,
        /// Second snapshot, a safetensors file, or (for a sequence) a PNG directory or .npy.
        #[arg(value_name = "REF|FILE")]
        b: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create, list (no NAME) or delete tags.
    Tag {
        /// Tag name.
        name: Option<String>,
        /// Snapshot to tag (default HEAD).
        #[arg(value_name = "REF", default_value = "HEAD")]
        spec: String,
        /// Delete the tag.
        #[arg(short, long)]
        delete: bool,
    },
    /// Create, list (no NAME) or delete branches.
    Branch {
        /// Branch name.
        name: Option<String>,
        /// Start point (default HEAD).
        #[arg(value_name = "REF")]
        spec: Option<String>,
        /// Delete the branch.
        #[arg(short, long)]
        delete: bool,
    },
    /// Make HEAD name another branch (an existing one; -c creates it at HEAD).
    Switch {
        /// Branch.
        branch: String,
        /// Create the branch at HEAD's snapshot first.
        #[arg(short = 'c', long)]
        create: bool,
    },
    /// Repository totals: logical bytes, stored bytes, ratio, dedup savings.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete objects no ref reaches.
    Gc {
        /// Report only.
        #[arg(long)]
        dry_run: bool,
        /// Leave packs younger than this many seconds (a concurrent commit may own them).
        #[arg(long, default_value_t = 3600)]
        grace: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify every object and snapshot; exits non-zero when anything is damaged.
    Fsck {
        /// Rebuild the index from the packs first.
        #[arg(long)]
        rebuild_index: bool,
        /// Only re-hash objects; skip decoding every tensor.
        #[arg(long)]
        quick: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the compute backend: which one `--backend` picks, the GPU, driver and NVRTC
    /// versions, or why the CPU is used (with --backend cuda, fails when no GPU is usable).
    Doctor,
    /// Read or set a setting: keyframe_every, bound (for HEAD's branch).
    Config {
        /// Setting name.
        key: String,
        /// New value.
        value: Option<String>,
    },
    /// Manage remotes (S3 buckets or directories), or check tensors out of one.
    #[command(subcommand)]
    Remote(crate::cli_remote::RemoteCommand),
    /// Upload snapshots to a remote and move its branch (compare-and-swap).
    Push(crate::cli_remote::PushArgs),
    /// Download a remote's snapshots (local branches stay).
    Fetch(crate::cli_remote::FetchArgs),
    /// Fetch a branch and move the local one to it.
    Pull(crate::cli_remote::PullArgs),
    /// Make a repository from a remote.
    Clone(crate::cli_remote::CloneArgs),
}

/// Parses the command line and runs it.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    let repo_dir = cli.repo;
    let backend = cli.backend;
    let bars = (!cli.quiet && !wants_json(&cli.command) && std::io::stderr().is_terminal())
        .then(|| Arc::new(Bars::default()));
    let show: Option<snapstore::ProgressCallback> =
        bars.clone().map(|b| Arc::new(move |p| b.show(p)) as _);
    // One command per process: a decoded tip kept for a next commit would only cost a copy.
    let open = || -> snapstore::Result<Repo> {
        let repo = match &repo_dir {
            Some(dir) => Repo::open(dir)?,
            None => Repo::discover(".")?,
        };
        let repo = repo.with_backend(backend).with_tip_cache(0);
        Ok(match &bars {
            Some(b) => {
                let b = b.clone();
                repo.with_progress(move |p| b.show(p))
            }
            None => repo,
        })
    };
    // Only commands that quantize or decode need the device; `log` under
    // SNAPSTORE_BACKEND=cuda on a machine without one must still work.
    let codes = matches!(
        cli.command,
        Command::Commit { .. }
            | Command::Search(_)
            | Command::Checkout { .. }
            | Command::Diff { .. }
            | Command::Fsck { .. }
    );
    if cli.backend == BackendChoice::Cuda && codes {
        Backend::cuda().context("--backend cuda")?;
    }
    match cli.command {
        Command::Doctor => match doctor(cli.backend) {
            Ok(report) => println!("{report}"),
            Err(report) => {
                println!("{report}");
                bail!("--backend cuda: no usable CUDA device (reason above)");
            }
        },
        Command::Init => {
            let dir = repo_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_REPO_DIR));
            let repo = Repo::init(&dir)?;
            println!(
                "initialized empty snapstore repository in {}",
                repo.path().display()
            );
        }
        Command::Commit {
            file,
            message,
            branch,
            meta,
            codec,
            bound,
            keyframe_every,
            rounding,
            json,
            auto,
            kind,
            group,
        } => {
            let repo = open()?;
            let auto_bound = bound.as_deref() == Some("auto");
            let bound = bound.filter(|_| !auto_bound);
            let opts = CommitOptions {
                message,
                branch,
                meta: parse_meta(&meta)?,
                codec,
                keyframe_every,
                bound: bound.map(|b| b.parse::<Bound>()).transpose()?,
                rounding,
                ..CommitOptions::default()
            };
            if auto_bound {
                return crate::search_cli::commit_auto_cli(&repo, &file, opts, &auto, json);
            }
            auto.reject_without_auto()?;
            let r = match load_frames(&file, kind)? {
                Some(seq) => repo.commit_frames(&seq, group, &opts)?,
                None if kind == InputKind::Frames => {
                    repo.commit_frames_file(&file, group, &opts)?
                }
                None => repo.commit_file(&file, &opts)?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "[{} {}] {} tensors, {}, {} delta, {} keyframe, {} dedup, {:.2}s",
                    r.branch,
                    r.snapshot.short(),
                    r.tensors,
                    sizes(r.logical_bytes, r.stored_bytes),
                    r.deltas,
                    r.keyframes,
                    r.deduplicated,
                    r.seconds
                );
            }
        }
        Command::Search(cmd) => {
            crate::search_cli::run_search_command(&open()?, &cmd)?;
        }
        Command::Checkout {
            spec,
            output,
            tensors,
            frames,
            json,
        } => {
            let repo = open()?;
            // Resolve once: the snapshot read below is the one inspected here.
            let (snapshot, manifest) = repo.show(&spec)?;
            let sequence = is_frames(&manifest);
            let wants_file = output.extension().is_some_and(|e| e == "safetensors");
            if sequence && frames.is_some() && wants_file {
                bail!(
                    "--frames writes a directory of PNGs or a .npy file, not {}: use -o NAME.npy \
                     or -o DIR, or leave out --frames to write the whole sequence as safetensors",
                    output.display()
                );
            }
            if sequence && (frames.is_some() || !wants_file) {
                let (a, b) = frames
                    .as_deref()
                    .map(parse_frame_range)
                    .transpose()?
                    .unwrap_or((None, None));
                let t = manifest
                    .tensor(snapstore::FRAMES_TENSOR)
                    .map_or(0, |e| e.shape[0] as usize);
                let range = a.unwrap_or(0)..b.unwrap_or(t);
                let seq = repo.checkout_frames(&snapshot.hex(), Some(range.clone()))?;
                if output.extension().is_some_and(|e| e == "npy") {
                    write_npy(&seq, &output, 0..seq.t)?;
                } else {
                    write_pngs(&seq, &output, 0..seq.t)?;
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
                return Ok(());
            }
            if frames.is_some() {
                bail!("--frames applies to frame-sequence snapshots; {spec} holds tensors");
            }
            let names = (!tensors.is_empty()).then_some(&tensors[..]);
            let r = repo.checkout_to_file(&snapshot.hex(), &output, names)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "wrote {} ({} tensors, {}) from {} in {:.2}s",
                    r.path.display(),
                    r.tensors,
                    human(r.bytes),
                    r.snapshot.short(),
                    r.seconds
                );
            }
        }
        Command::Log { spec, limit, json } => {
            let repo = open()?;
            let entries = repo.log(spec.as_deref(), limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                let head = repo.head_branch()?;
                for e in entries {
                    let meta: Vec<String> =
                        e.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let refs: Vec<String> = e
                        .refs
                        .iter()
                        .map(
                            |r| match (r.strip_prefix("heads/"), r.strip_prefix("tags/")) {
                                (Some(b), _) if b == head => format!("HEAD -> {b}"),
                                (Some(b), _) => b.to_string(),
                                (_, Some(t)) => format!("tag: {t}"),
                                _ => r.clone(),
                            },
                        )
                        .collect();
                    println!(
                        "{} {} {}{} {} {}{}",
                        e.id.short(),
                        utc_time(e.time),
                        if refs.is_empty() {
                            String::new()
                        } else {
                            format!("({}) ", refs.join(", "))
                        },
                        sizes(e.logical_bytes, e.stored_bytes),
                        e.bound,
                        e.message,
                        if meta.is_empty() {
                            String::new()
                        } else {
                            format!(" [{}]", meta.join(" "))
                        }
                    );
                }
            }
        }
        Command::Show { spec, json } => {
            let repo = open()?;
            let (id, m) = repo.show(&spec)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "id": id,
                        "logical_bytes": m.logical_bytes(),
                        "stored_bytes": m.stored_bytes(),
                        "manifest": &*m
                    }))?
                );
            } else {
                println!("snapshot {id}");
                println!(
                    "parents  {}",
                    m.parents
                        .iter()
                        .map(|p| p.short())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                println!(
                    "branch   {}   bound {}   keyframe every {}",
                    m.branch, m.bound, m.keyframe_every
                );
                println!("message  {}", m.message);
                for (k, v) in &m.meta {
                    println!("meta     {k}={v}");
                }
                let mut rows = vec![[
                    "tensor", "dtype", "shape", "encoding", "bound", "bytes", "stored", "ratio",
                    "depth", "zero%", "exact%",
                ]
                .map(String::from)];
                for t in &m.tensors {
                    let stat = |k: &str| {
                        t.stats
                            .get(k)
                            .map_or("-".to_string(), |v| format!("{:.1}", v * 100.0))
                    };
                    let shape: Vec<String> = t.shape.iter().map(u64::to_string).collect();
                    rows.push([
                        t.name.clone(),
                        t.dtype.to_string(),
                        format!("[{}]", shape.join(",")),
                        serde_json::to_value(t.encoding)?
                            .as_str()
                            .unwrap_or("?")
                            .to_string(),
                        t.bound.to_string(),
                        human(t.len),
                        human(t.stored_bytes()),
                        if t.stored_bytes() == 0 {
                            "dedup".to_string()
                        } else {
                            ratio_text(t.len, t.stored_bytes())
                        },
                        t.depth.to_string(),
                        stat("zero_codes"),
                        stat("exceptions"),
                    ]);
                }
                // Columns as wide as their widest cell: long names and shapes stay aligned.
                let widths: Vec<usize> = (0..11)
                    .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
                    .collect();
                for r in &rows {
                    let cells: Vec<String> = r
                        .iter()
                        .zip(&widths)
                        .enumerate()
                        .map(|(c, (cell, &w))| match c {
                            0 | 2 | 3 | 4 => format!("{cell:<w$}"),
                            _ => format!("{cell:>w$}"),
                        })
                        .collect();
                    println!("{}", cells.join(" ").trim_end());
                }
                println!("total {}", sizes(m.logical_bytes(), m.stored_bytes()));
            }
        }
        Command::Status { file, json } => {
            let st = open()?.status(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
                return Ok(());
            }
            let at = |id: &snapstore::ObjectId| {
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
        }
        Command::Diff { a, b, json } => {
            let repo = open()?;
            let path = Path::new(&b);
            if is_frames(&repo.show(&a)?.1)
                && (path.is_dir() || path.extension().is_some_and(|e| e == "npy"))
            {
                let original =
                    load_frames(path, InputKind::Auto)?.context("not a frame sequence")?;
                let rows = repo.diff_frames(&a, &original)?;
                if json {
                    // The tensor diff's key names, with the frame index.
                    let rows: Vec<_> = rows
                        .iter()
                        .enumerate()
                        .map(|(i, r)| json!({"frame": i, "max_abs": r.max_abs_err, "psnr": r.psnr}))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    println!("{:>6} {:>12} {:>10}", "frame", "max_abs", "psnr_db");
                    for (i, r) in rows.iter().enumerate() {
                        println!("{i:>6} {:>12.4e} {:>10.2}", r.max_abs_err, r.psnr);
                    }
                }
                return Ok(());
            }
            let rows = if Path::new(&b).is_file() {
                repo.diff_file(&a, Path::new(&b))?
            } else {
                repo.diff(&a, &b)?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<40} {:<8} {:>12} {:>12} {:>12} {:>9}",
                    "tensor", "status", "elements", "max_abs", "max_rel", "changed"
                );
                for r in rows {
                    println!(
                        "{:<40} {:<8} {:>12} {:>12.4e} {:>12.4e} {:>8.2}%",
                        r.name,
                        r.status,
                        r.elements,
                        r.max_abs,
                        r.max_rel,
                        r.changed_fraction * 100.0
                    );
                }
            }
        }
        Command::Tag { name, spec, delete } => {
            let repo = open()?;
            match (name, delete) {
                (None, _) => {
                    for (n, id) in repo.list_refs()?.1 {
                        println!("{n} {}", id.short());
                    }
                }
                (Some(n), true) => {
                    let was = repo.delete_ref(&format!("tags/{n}"))?;
                    println!(
                        "deleted tag {n} (was {}); to restore it: snapstore tag {n} {}",
                        was.short(),
                        was.hex()
                    );
                }
                (Some(n), false) => {
                    let id = repo.create_tag(&n, &spec)?;
                    println!("tag {n} -> {}", id.short());
                }
            }
        }
        Command::Branch { name, spec, delete } => {
            let repo = open()?;
            match (name, delete) {
                (None, _) => {
                    let head = repo.head_branch()?;
                    for (n, id) in repo.list_refs()?.0 {
                        println!("{} {n} {}", if n == head { "*" } else { " " }, id.short());
                    }
                }
                (Some(n), true) => {
                    let was = repo.delete_ref(&format!("heads/{n}"))?;
                    println!(
                        "deleted branch {n} (was {}); to restore it: snapstore branch {n} {}",
                        was.short(),
                        was.hex()
                    );
                }
                (Some(n), false) => match repo.create_branch(&n, spec.as_deref())? {
                    Some(id) => println!("branch {n} -> {}", id.short()),
                    None => println!("branch {n} (empty)"),
                },
            }
        }
        Command::Switch { branch, create } => {
            let repo = open()?;
            if create {
                match repo.switch_new_branch(&branch)? {
                    Some(id) => println!("HEAD -> {branch} (new branch at {})", id.short()),
                    None => println!("HEAD -> {branch} (new branch, no snapshots yet)"),
                }
            } else {
                repo.switch_branch(&branch)?;
                println!("HEAD -> {branch}");
            }
        }
        Command::Stats { json } => {
            let repo = open()?;
            let s = repo.stats()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("snapshots    {}", s.snapshots);
                println!("branches     {}   tags {}", s.branches, s.tags);
                println!("logical      {}", human(s.logical_bytes));
                println!(
                    "stored       {} ({}): the snapshots' chunks, as commit and log count them",
                    human(s.stored_bytes),
                    ratio_text(s.logical_bytes, s.stored_bytes)
                );
                println!(
                    "on disk      {} ({}): {} in {} packs, {} index and refs.log",
                    human(s.disk_bytes),
                    ratio_text(s.logical_bytes, s.disk_bytes),
                    human(s.pack_bytes),
                    s.packs,
                    human(s.index_bytes)
                );
                println!("dedup saved  {}", human(s.dedup_bytes));
            }
        }
        Command::Gc {
            dry_run,
            grace,
            json,
        } => {
            let repo = open()?;
            let r = repo.gc(dry_run, Duration::from_secs(grace))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{}{} objects in {} packs removed, {} packs rewritten, {} temp files removed, {} freed; {} snapshots kept",
                    if dry_run { "would remove: " } else { "" },
                    r.removed_objects,
                    r.removed_packs,
                    r.rewritten_packs,
                    r.temp_files,
                    human(r.freed_bytes),
                    r.live_snapshots
                );
            }
        }
        Command::Fsck {
            rebuild_index,
            quick,
            json,
        } => {
            let repo = open()?;
            if rebuild_index {
                let n = repo.rebuild_index()?;
                if !json {
                    println!("index rebuilt: {n} objects");
                }
            }
            let r = repo.fsck(quick)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"clean": r.is_clean(), "report": r}))?
                );
            } else {
                println!(
                    "{} packs, {} objects re-hashed, {} snapshots, {} tensors verified",
                    r.packs, r.objects, r.snapshots, r.tensors_verified
                );
                for p in &r.problems {
                    println!(
                        "DAMAGED {} ({}): {}",
                        p.object,
                        p.pack.as_deref().unwrap_or("?"),
                        p.problem
                    );
                    for (s, t) in &p.breaks {
                        if t.is_empty() {
                            println!("  breaks snapshot {s}");
                        } else {
                            println!("  breaks snapshot {s} tensor {t:?}");
                        }
                    }
                }
            }
            if !r.is_clean() {
                bail!("fsck found {} problem(s)", r.problems.len());
            }
        }
        Command::Remote(cmd) => crate::cli_remote::remote(cmd, &open, show)?,
        Command::Push(args) => crate::cli_remote::push(args, &open()?)?,
        Command::Fetch(args) => crate::cli_remote::fetch(args, &open()?)?,
        Command::Pull(args) => crate::cli_remote::pull(args, &open()?)?,
        Command::Clone(args) => crate::cli_remote::clone(args, repo_dir, show)?,
        Command::Config { key, value } => {
            let repo = open()?;
            let stored_key = match key.as_str() {
                "keyframe_every" => key.clone(),
                "bound" => format!("bound.{}", repo.head_branch()?),
                other => bail!("unknown setting {other:?} (known: keyframe_every, bound)"),
            };
            match value {
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
        }
    }
    Ok(())
}

/// Whether the command prints JSON (and so draws no progress bars).
fn wants_json(cmd: &Command) -> bool {
    match cmd {
        Command::Commit { json, .. }
        | Command::Checkout { json, .. }
        | Command::Log { json, .. }
        | Command::Show { json, .. }
        | Command::Diff { json, .. }
        | Command::Stats { json }
        | Command::Status { json, .. }
        | Command::Gc { json, .. }
        | Command::Fsck { json, .. } => *json,
        Command::Remote(c) => c.json(),
        Command::Push(a) => a.json(),
        Command::Fetch(a) => a.json(),
        Command::Pull(a) => a.json(),
        Command::Clone(a) => a.json(),
        _ => false,
    }
}

/// Progress bars on stderr, one per task, fed by the library's progress callback.
#[derive(Default)]
struct Bars {
    current: Mutex<Option<(&'static str, indicatif::ProgressBar)>>,
}

impl Bars {
    fn show(&self, p: snapstore::Progress) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|(task, _)| *task != p.task) {
            if let Some((_, old)) = current.take() {
                old.finish_and_clear();
            }
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(p.total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg:8} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(p.task);
            *current = Some((p.task, bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_length(p.total);
            bar.set_position(p.done);
        }
        // Gone before the command prints its result (clearing later would erase that line).
        if p.done >= p.total && p.done > 0 {
            if let Some((_, bar)) = current.take() {
                bar.finish_and_clear();
            }
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some((_, bar)) = self.current.lock().ok().and_then(|mut c| c.take()) {
            bar.finish_and_clear();
        }
    }
}

/// What a committed path holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum InputKind {
    /// Decide from the path: a directory or a .npy file is a frame sequence.
    Auto,
    /// A safetensors checkpoint.
    Tensors,
    /// A frame sequence.
    Frames,
}

/// Loads `path` as a frame sequence when it is one (or `--kind frames` says so).
fn load_frames(path: &Path, kind: InputKind) -> Result<Option<FrameSeq>> {
    let is_npy = path.extension().is_some_and(|e| e == "npy");
    match kind {
        InputKind::Tensors => Ok(None),
        _ if path.is_dir() => Ok(Some(load_png_dir(path)?)),
        _ if is_npy => Ok(Some(load_npy(path)?)),
        // A safetensors file of frames: Repo::commit_frames_file (it keeps the file's header).
        InputKind::Frames => Ok(None),
        InputKind::Auto => Ok(None),
    }
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

fn parse_meta(items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--meta {kv:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// `LOGICAL -> STORED stored (RATIO)`: how every command prints a snapshot's sizes ("stored"
/// as `Manifest::stored_bytes` defines it).
fn sizes(logical: u64, stored: u64) -> String {
    format!(
        "{} -> {} stored ({})",
        human(logical),
        human(stored),
        ratio_text(logical, stored)
    )
}

/// `12.34x`, or what a zero divisor means.
fn ratio_text(logical: u64, stored: u64) -> String {
    match (logical, stored) {
        (0, 0) => "empty".into(),
        (_, 0) => "all deduplicated".into(),
        _ => format!("{:.2}x", logical as f64 / stored as f64),
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM` UTC.
fn utc_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m) = (secs % 86_400 / 3600, secs % 3600 / 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}
