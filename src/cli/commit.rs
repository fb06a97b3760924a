//! `snapstore commit`: a safetensors checkpoint (a file or a directory of shards) or a frame
//! sequence as a new snapshot, under a given bound or one searched for (`--bound auto`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use snapstore::{
    AutoCommitReport, AutoOptions, Bound, CodecChoice, CommitOptions, Input, InputKind, Repo,
    Rounding,
};

use super::print::{commit_summary, human, json_pretty};
use super::search::{checkpoint_only, SearchArgs};

#[derive(clap::Args)]
pub struct Args {
    /// The checkpoint: a safetensors file; a checkpoint directory (its *.safetensors shards
    /// and JSON files up to 1 MiB, such as config.json and the shard index, as one snapshot);
    /// or a frame sequence.
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
    /// Error bound: lossless, rel:EPS, abs:EPS, or auto (searched with --eval-cmd; see
    /// `snapstore search`) (default: the branch's configured bound).
    #[arg(long)]
    bound: Option<String>,
    #[command(flatten)]
    coding: CodingArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    auto: AutoArgs,
    /// What FILE holds: auto (a directory holding *.safetensors files is a checkpoint
    /// directory; any other directory, or a .npy, a frame sequence), tensors, or frames (a
    /// safetensors file with one [T,H,W(,C)] array).
    #[arg(long, default_value = "auto", help_heading = "Frame sequences")]
    kind: KindArg,
    /// Frames per group for a frame sequence (each group starts with a keyframe) [default: 30,
    /// more for frames so small that 30 hold under 2^16 elements, fewer for frames so large
    /// that 30 would pass 2^28]. Each group costs a few bytes of framing even stored exactly.
    #[arg(long, value_name = "K", help_heading = "Frame sequences")]
    group: Option<usize>,
}

/// How a commit codes its chunks (`snapstore commit` and `snapstore watch`).
#[derive(clap::Args)]
pub struct CodingArgs {
    /// Entropy coders: auto, zstd, lzma, or rans (rANS and the sparse coding only: no Zstd).
    #[arg(long, default_value = "auto")]
    codec: CodecChoice,
    /// Store a keyframe (no reference) at least every K snapshots (default: the repository's
    /// keyframe_every, else 32; a chain also ends when its deltas outgrow 9 keyframes, and a
    /// lossless one after 8 snapshots).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    keyframe_every: Option<u32>,
    /// Rounding of lossy codes: lattice (a grid per element: unbiased, free for weights that
    /// do not move), nearest (one global grid) or dither (half-step stochastic rounding).
    #[arg(long, default_value = "lattice")]
    rounding: Rounding,
}

impl CodingArgs {
    /// Commit options coding as these say, the rest as `base`.
    pub fn options(&self, base: CommitOptions) -> CommitOptions {
        CommitOptions {
            codec: self.codec,
            keyframe_every: self.keyframe_every,
            rounding: self.rounding,
            ..base
        }
    }
}

/// The `--bound auto` arguments of `snapstore commit`.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Automatic bound (--bound auto)")]
struct AutoArgs {
    /// Search settings.
    #[command(flatten)]
    search: SearchArgs,
    /// Search again every N automatic commits on the branch, reusing the remembered bound in
    /// between (remembered per branch; default 1 = every commit).
    #[arg(long, value_name = "N")]
    research_every: Option<u32>,
}

impl AutoArgs {
    /// Fails when search settings were given without `--bound auto` (they would do nothing).
    fn reject_without_auto(&self) -> Result<()> {
        let mut given = self.search.given();
        if self.research_every.is_some() {
            given.push("--research-every");
        }
        if !given.is_empty() {
            bail!("{} need --bound auto", given.join(", "));
        }
        Ok(())
    }
}

/// Runs `snapstore commit`.
pub fn run(repo: &Repo, args: Args) -> Result<()> {
    let auto_bound = args.bound.as_deref() == Some("auto");
    let bound = args.bound.filter(|_| !auto_bound);
    let opts = args.coding.options(CommitOptions {
        message: args.message,
        branch: args.branch,
        meta: parse_meta(&args.meta)?,
        bound: bound.map(|b| b.parse::<Bound>()).transpose()?,
        ..CommitOptions::default()
    });
    if auto_bound {
        if matches!(args.kind, KindArg::Frames) {
            bail!(
                "{}: --bound auto searches the bound of a checkpoint; commit a frame sequence \
                 under --bound abs:E or rel:E",
                args.file.display()
            );
        }
        checkpoint_only("--bound auto", &args.file)?;
        // A directory of shards and more PNGs is refused as a plain commit refuses it.
        Input::detect(&args.file, args.kind.into())?;
        return commit_auto(repo, &args.file, opts, &args.auto, args.json);
    }
    args.auto.reject_without_auto()?;
    let input = Input::detect(&args.file, args.kind.into())?;
    let named_branch = opts.branch.is_some();
    let r = repo.commit_input(&input, args.group, &opts)?;
    if args.json {
        return json_pretty(&r);
    }
    // `--branch` with a name that did not exist starts a history of its own: say so, in case
    // the name was a typo of an existing branch (no tensor is then coded against it).
    if named_branch && r.parent.is_none() {
        eprintln!(
            "note: branch {} did not exist; this snapshot starts it, with no parent \
             (`snapstore branch NAME` branches from HEAD instead)",
            r.branch
        );
    }
    println!(
        "[{} {}] {}",
        r.branch,
        r.snapshot.short(),
        commit_summary(&r)
    );
    print_left_out(&r.left_out);
    Ok(())
}

/// Names what a checkpoint directory's snapshot did not keep.
fn print_left_out(left_out: &[String]) {
    if !left_out.is_empty() {
        println!(
            "not kept (only *.safetensors, the shard index and other JSON files up to 1 MiB \
             are): {}",
            left_out.join(", ")
        );
    }
}

/// Runs `snapstore commit FILE --bound auto`; `opts.bound` is ignored.
fn commit_auto(
    repo: &Repo,
    file: &Path,
    opts: CommitOptions,
    args: &AutoArgs,
    json: bool,
) -> Result<()> {
    let auto = AutoOptions {
        search: args.search.options()?,
        research_every: args.research_every,
    };
    args.search.check_plot_writable()?;
    let mut ev = args.search.evaluator(file)?;
    let r = repo
        .commit_checkpoint_auto(file, &opts, &auto, &mut ev.as_evaluator())
        .with_context(|| {
            format!(
                "commit {} --bound auto: nothing was committed",
                file.display()
            )
        })?;
    if let (Some(p), Some(s)) = (&args.search.plot, &r.search) {
        snapstore::plot_svg(s, p).with_context(|| {
            format!(
                "snapshot {} was committed, but its plot could not be written",
                r.commit.snapshot.short()
            )
        })?;
    }
    if json {
        return json_pretty(&r);
    }
    print_auto(&r);
    Ok(())
}

fn print_auto(r: &AutoCommitReport) {
    match &r.search {
        Some(s) => print!("{}", s.table()),
        None => println!(
            "reusing {} ({} commits since the last search; searching every {})",
            r.commit.bound, r.commits_since_search, r.research_every
        ),
    }
    let c = &r.commit;
    println!(
        "[{} {}] {} tensors, {} -> {} ({:.2}x) under {}, {} delta, {} keyframe, {} dedup, {:.2}s",
        c.branch,
        c.snapshot.short(),
        c.tensors,
        human(c.logical_bytes),
        human(c.stored_bytes),
        c.logical_bytes as f64 / c.stored_bytes.max(1) as f64,
        c.bound,
        c.deltas,
        c.keyframes,
        c.deduplicated,
        c.seconds
    );
    print_left_out(&c.left_out);
}

/// What a committed path holds (the library's [`InputKind`], spelled for clap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum KindArg {
    /// Decide from the path: a directory of *.safetensors files is a checkpoint directory,
    /// any other directory or a .npy file a frame sequence.
    Auto,
    /// A safetensors checkpoint: a file or a directory of them.
    Tensors,
    /// A frame sequence.
    Frames,
}

impl From<KindArg> for InputKind {
    fn from(k: KindArg) -> InputKind {
        match k {
            KindArg::Auto => InputKind::Auto,
            KindArg::Tensors => InputKind::Tensors,
            KindArg::Frames => InputKind::Frames,
        }
    }
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
