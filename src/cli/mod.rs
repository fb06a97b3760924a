//! Command-line interface: a thin face over the library. This module parses the arguments,
//! opens the repository and hands each command to its own file (`commit.rs`, `checkout.rs`,
//! ...), which calls the library and prints the result; `print.rs` holds the formatting they
//! share. Every command that reports takes `--json`; the JSON shapes are documented in the
//! README.

mod branch;
mod checkout;
mod commit;
mod config;
mod diff;
mod doctor;
mod fsck;
mod gc;
mod init;
mod log;
mod print;
mod remote;
mod search;
mod show;
mod stats;
mod status;
mod switch;
mod tag;
mod watch;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use snapstore::backend::{Backend, BackendChoice};
use snapstore::Repo;

use print::Bars;

#[derive(Parser)]
#[command(
    name = "snapstore",
    version,
    about = "Versioned, error-bounded storage for checkpoints and frame sequences"
)]
struct Cli {
    /// Repository directory (default: the nearest .snapstore in this directory or above it,
    /// or the repository this directory is in; `init` creates ./.snapstore).
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
    Commit(commit::Args),
    /// Commit each checkpoint written into a directory, oldest first, through one process that
    /// keeps the last commit decoded (a `commit` per process decodes its parent's chain).
    Watch(watch::Args),
    /// Choose an error bound for a checkpoint: the relative bound maximizing
    /// alpha*ratio + (1-alpha)*kept accuracy without losing more than --max-loss.
    Search(search::Args),
    /// Write a snapshot (or some tensors) as a safetensors file, or frames of a sequence as
    /// PNGs or a .npy.
    Checkout(checkout::Args),
    /// List snapshots, newest first.
    Log(log::Args),
    /// Show a snapshot: per tensor dtype, shape, encoding, stored bytes and ratio.
    Show(show::Args),
    /// Is a safetensors file already stored, in which snapshot, and how does each tensor
    /// differ from HEAD's? (Compares hashes; decodes nothing.)
    Status(status::Args),
    /// Compare two snapshots, or a snapshot against a safetensors file; a frame sequence
    /// against its PNG directory or .npy (error and PSNR per frame).
    Diff(diff::Args),
    /// Create, list (no NAME) or delete tags.
    Tag(tag::Args),
    /// Create, list (no NAME) or delete branches.
    Branch(branch::Args),
    /// Make HEAD name another branch (an existing one; -c creates it at HEAD).
    Switch(switch::Args),
    /// Repository totals: logical bytes, stored bytes, ratio, dedup savings.
    Stats(stats::Args),
    /// Delete objects no ref reaches.
    Gc(gc::Args),
    /// Verify every object and snapshot; exits non-zero when anything is damaged.
    Fsck(fsck::Args),
    /// Check the compute backend: which one `--backend` picks, the GPU, driver and NVRTC
    /// versions, or why the CPU is used (with --backend cuda, fails when no GPU is usable).
    Doctor,
    /// Read or set a setting: keyframe_every, bound (for HEAD's branch).
    Config(config::Args),
    /// Manage remotes (S3 buckets or directories), or check tensors out of one.
    #[command(subcommand)]
    Remote(remote::RemoteCommand),
    /// Upload snapshots to a remote and move its branch (compare-and-swap).
    Push(remote::PushArgs),
    /// Download a remote's snapshots (local branches stay).
    Fetch(remote::FetchArgs),
    /// Fetch a branch and move the local one to it.
    Pull(remote::PullArgs),
    /// Make a repository from a remote.
    Clone(remote::CloneArgs),
}

impl Command {
    /// Whether the command prints JSON (and so draws no progress bars).
    fn wants_json(&self) -> bool {
        match self {
            Command::Commit(commit::Args { json, .. })
            | Command::Watch(watch::Args { json, .. })
            | Command::Checkout(checkout::Args { json, .. })
            | Command::Log(log::Args { json, .. })
            | Command::Show(show::Args { json, .. })
            | Command::Diff(diff::Args { json, .. })
            | Command::Stats(stats::Args { json })
            | Command::Status(status::Args { json, .. })
            | Command::Gc(gc::Args { json, .. })
            | Command::Fsck(fsck::Args { json, .. }) => *json,
            Command::Remote(c) => c.json(),
            Command::Push(a) => a.json(),
            Command::Fetch(a) => a.json(),
            Command::Pull(a) => a.json(),
            Command::Clone(a) => a.json(),
            _ => false,
        }
    }

    /// Whether the command quantizes or decodes, and so needs the device: `log` under
    /// SNAPSTORE_BACKEND=cuda on a machine without one must still work.
    fn codes(&self) -> bool {
        matches!(
            self,
            Command::Commit(_)
                | Command::Watch(_)
                | Command::Search(_)
                | Command::Checkout(_)
                | Command::Diff(_)
                | Command::Fsck(_)
        )
    }
}

/// A number of seconds given on the command line (`--grace`): a whole number, 0 or more. Read
/// by clap as a value even when negative, so `-5` is named as what is wrong with it, not as an
/// "unexpected argument".
pub fn seconds(s: &str) -> std::result::Result<u64, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (a whole number, 0 or more)"))
}

/// An error that exits with `status`, not 1: where a command's status 1 already means
/// something (`diff --exit-code`: "differs"), an error must not look like it.
#[derive(Debug)]
pub struct ExitWith {
    /// The exit status.
    pub status: i32,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The whole chain, as `main` prints any other error.
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for ExitWith {}

/// The exit status of a failed command: 1 unless it said otherwise ([`ExitWith`]).
pub fn exit_status(err: &anyhow::Error) -> i32 {
    err.downcast_ref::<ExitWith>().map_or(1, |e| e.status)
}

/// Parses the command line and runs it.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    let backend = cli.backend;
    let bars = (!cli.quiet && !cli.command.wants_json() && std::io::stderr().is_terminal())
        .then(|| Arc::new(Bars::default()));
    if backend == BackendChoice::Cuda && cli.command.codes() {
        Backend::cuda().context("--backend cuda")?;
    }
    let open = || open(cli.repo.as_ref(), backend, bars.as_ref());
    let show: Option<snapstore::ProgressCallback> =
        bars.clone().map(|b| Arc::new(move |p| b.show(p)) as _);
    match cli.command {
        Command::Doctor => doctor::run(backend),
        Command::Init => init::run(cli.repo),
        Command::Commit(args) => commit::run(&open()?, args),
        Command::Watch(args) => watch::run(&open()?, args),
        Command::Search(args) => search::run(&open()?, &args),
        Command::Checkout(args) => checkout::run(&open()?, args),
        Command::Log(args) => log::run(&open()?, args),
        Command::Show(args) => show::run(&open()?, args),
        Command::Status(args) => status::run(&open()?, args),
        Command::Diff(args) => diff::run(&open()?, args),
        Command::Tag(args) => tag::run(&open()?, args),
        Command::Branch(args) => branch::run(&open()?, args),
        Command::Switch(args) => switch::run(&open()?, args),
        Command::Stats(args) => stats::run(&open()?, args),
        Command::Gc(args) => gc::run(&open()?, args),
        Command::Fsck(args) => fsck::run(&open()?, args),
        Command::Config(args) => config::run(&open()?, args),
        Command::Remote(cmd) => remote::remote(cmd, &open, show),
        Command::Push(args) => remote::push(args, &open()?),
        Command::Fetch(args) => remote::fetch(args, &open()?),
        Command::Pull(args) => remote::pull(args, &open()?),
        Command::Clone(args) => remote::clone(args, cli.repo, show),
    }
}

/// The repository `--repo` names (else the nearest one), on `backend`, drawing `bars`.
fn open(
    dir: Option<&PathBuf>,
    backend: BackendChoice,
    bars: Option<&Arc<Bars>>,
) -> snapstore::Result<Repo> {
    let repo = match dir {
        Some(dir) => Repo::open(dir)?,
        None => Repo::discover(".")?,
    };
    // One command per process: a decoded tip or checkout kept for a next one would only cost a
    // copy.
    let repo = repo
        .with_backend(backend)
        .with_tip_cache(0)
        .with_checkout_cache(0);
    Ok(match bars {
        Some(b) => {
            let b = b.clone();
            repo.with_progress(move |p| b.show(p))
        }
        None => repo,
    })
}
