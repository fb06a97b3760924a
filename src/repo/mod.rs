//! A repository on disk and the operations on it. Each submodule is one family of commands.

mod cache_budget;
mod checkout;
mod checkout_cache;
mod checkout_dir;
mod checkpoint_dir;
mod commit;
mod frames;
mod history;
mod input;
mod maintenance;
mod malloc_warmup;
mod manifest_cache;
mod output_buffer;
pub(crate) mod plan;
#[cfg(test)]
mod props;
mod reader;
mod refs;
mod tip_cache;
mod windows;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::lossy::{CpuQuant, QuantEngine};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::gpu::backend::{Backend, BackendChoice, LazyBackend};
use crate::store::index::Index;

pub use cache_budget::default_cache_bytes;
use checkout_cache::{CheckoutCache, KnownChunks};
use manifest_cache::ManifestCache;
use tip_cache::TipCache;

pub(crate) use checkout::{select_entries, write_prepared, Prepared};
pub use checkout::{CheckedOutTensor, Checkout, CheckoutInfo, CheckoutReport, TensorTarget};
pub(crate) use checkpoint_dir::OnDisk;
pub use checkpoint_dir::{holds_safetensors, keeps_file};
pub(crate) use commit::{
    chunk_count, chunk_range, code_chunk, exact_may_win, first_changed, input_hash, validate_inputs,
};
pub use commit::{CommitOptions, CommitReport};
pub use frames::{is_frames, DEFAULT_FRAME_GROUP, FRAMES_TENSOR};
pub use history::{DiffRow, FileStatus, LogEntry, Stats, TensorDiff, TensorStatus};
pub use input::{has_extension, Element, Input, InputKind, TensorInput};
pub use maintenance::{
    FsckProblem, FsckReport, GcReport, RebuildReport, RescuedPack, Unreferenced,
};
pub(crate) use plan::TensorPlan;
pub(crate) use reader::{ObjectReader, Spool};
pub use refs::Rev;
pub(crate) use refs::{
    ambiguous, branch_key, check_ref_name, split_ancestry, tag_key, REMOTES_KEY,
};

/// The error for a setting `config` does not know.
fn unknown_setting(key: &str) -> Error {
    let why = format!("unknown setting {key:?} (known: bound, keyframe_every)");
    Error::invalid("config key", why)
}

/// Repository format version written by this build; newer ones are refused.
pub const FORMAT_VERSION: u32 = 1;
/// Default repository directory.
pub const DEFAULT_REPO_DIR: &str = ".snapstore";
/// Under `--backend auto`, a commit quantizes on CUDA only when it holds at least this many bytes
/// of tensors under a bound. Measured on an H200 host with 16 cores (BENCHMARKS.md): starting
/// CUDA costs a process about 0.75 s (31 digits-mlp commits through the CLI took 24.2 s on CUDA,
/// 0.72 s on the CPU), while a 1 GiB snapshot committed 1.19x faster on CUDA than on the CPU.
pub const AUTO_CUDA_MIN_BYTES: u64 = 1 << 30;
/// Default keyframe interval: at most this many decodes per checkout. Chains also end when their
/// deltas outgrow `CHAIN_BUDGET` (9) keyframes, which early in a run
/// (large deltas) comes first, and lossless chains at `LOSSLESS_CHAIN_DECODES` (8).
pub const DEFAULT_KEYFRAME_EVERY: u32 = 32;

#[derive(Serialize, Deserialize)]
struct FormatFile {
    snapstore_format: u32,
}

fn default_backend() -> Arc<LazyBackend> {
    Arc::new(LazyBackend::new(BackendChoice::Auto))
}

/// How far a long operation has got, as passed to the callback of [`Repo::with_progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What is running: `"commit"` (coding chunks), `"checkout"` (decoding chunks, also for
    /// `diff`) or `"fsck"` (re-hashing packs).
    pub task: &'static str,
    /// Bytes done so far (tensor bytes; pack bytes for `fsck`).
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
}

/// A progress callback (see [`Repo::with_progress`]).
#[derive(Clone)]
struct ProgressFn(Arc<dyn Fn(Progress) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// The flag a caller sets to stop a long call ([`Repo::with_interrupt`]); none by default.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interrupt(Option<Arc<AtomicBool>>);

impl Interrupt {
    /// Whether the flag is set.
    pub(crate) fn is_set(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|flag| flag.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Fails with [`Error::Interrupted`] once the flag is set.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_set() {
            return Err(Error::Interrupted);
        }
        Ok(())
    }
}

/// A snapstore repository.
#[derive(Clone, Debug)]
pub struct Repo {
    dir: PathBuf,
    /// Where lossy chunks are quantized and dequantized (resolved on first use).
    backend: Arc<LazyBackend>,
    /// The last commit made through this handle (or a clone of it), decoded.
    tip: Arc<TipCache>,
    /// The last checkout made through this handle (or a clone of it), decoded and verified.
    checkouts: Arc<CheckoutCache>,
    /// Manifests this handle (or a clone of it) parsed.
    manifests: Arc<ManifestCache>,
    /// Told how long operations advance, if anyone asked.
    progress: Option<ProgressFn>,
    /// Set by someone else to stop a commit, search or checkout ([`Repo::with_interrupt`]).
    interrupt: Interrupt,
    /// The index held open for reading ([`Repo::holding_index`]), shared with clones.
    held_index: Option<HeldIndex>,
}

/// An index a handle holds open for reading.
#[derive(Clone)]
struct HeldIndex(Arc<Index>);

impl std::fmt::Debug for HeldIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldIndex")
    }
}

/// The index as a read of a [`Repo`] sees it: opened for that read, or the one the handle
/// holds.
pub(crate) enum IndexRef {
    Opened(Index),
    Held(Arc<Index>),
}

impl std::ops::Deref for IndexRef {
    type Target = Index;
    fn deref(&self) -> &Index {
        match self {
            IndexRef::Opened(index) => index,
            IndexRef::Held(index) => index,
        }
    }
}

/// `dir` made absolute (not canonical: symbolic links stay), so a handle keeps naming the
/// repository it opened when its process changes directory (a launcher that `chdir`s), rather
/// than whatever the relative path names from there.
fn anchored(dir: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&dir).map_err(|e| Error::io(&dir, e))
}

impl Repo {
    /// Creates a repository in `dir` (which may exist but must not hold one).
    pub fn init(dir: impl AsRef<Path>) -> Result<Repo> {
        malloc_warmup::once();
        let dir = dir.as_ref().to_path_buf();
        if dir.join("FORMAT").exists() {
            return Err(Error::RepositoryExists(dir));
        }
        std::fs::create_dir_all(dir.join("packs")).map_err(|e| Error::io(&dir, e))?;
        let repo = Repo {
            dir: anchored(dir)?,
            backend: default_backend(),
            tip: Arc::new(TipCache::new(default_cache_bytes())),
            checkouts: Arc::new(CheckoutCache::new(default_cache_bytes())),
            manifests: Arc::default(),
            progress: None,
            interrupt: Interrupt::default(),
            held_index: None,
        };
        {
            let index = Index::open(&repo.dir)?;
            index.set_head_branch("main")?;
            index.flush()?;
        }
        let format = serde_json::to_vec_pretty(&FormatFile {
            snapstore_format: FORMAT_VERSION,
        })
        .expect("serializes");
        // FORMAT is written last: a directory without it is not a repository yet.
        fsutil::write_atomic(&repo.dir.join("FORMAT"), &format)?;
        Ok(repo)
    }

    /// Opens an existing repository.
    pub fn open(dir: impl AsRef<Path>) -> Result<Repo> {
        malloc_warmup::once();
        let dir = dir.as_ref().to_path_buf();
        let format_path = dir.join("FORMAT");
        let bytes = match std::fs::read(&format_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoRepository(dir))
            }
            // `--repo model.safetensors`: name the path given, not `model.safetensors/FORMAT`.
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                let why = "a file, not a repository (a directory)";
                return Err(Error::io(dir, std::io::Error::new(e.kind(), why)));
            }
            Err(e) => return Err(Error::io(format_path, e)),
        };
        let format: FormatFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::decode(format_path.display().to_string(), e.to_string()))?;
        if format.snapstore_format > FORMAT_VERSION {
            return Err(Error::FormatTooNew {
                path: dir,
                found: format.snapstore_format,
                supported: FORMAT_VERSION,
            });
        }
        Ok(Repo {
            dir: anchored(dir)?,
            backend: default_backend(),
            tip: Arc::new(TipCache::new(default_cache_bytes())),
            checkouts: Arc::new(CheckoutCache::new(default_cache_bytes())),
            manifests: Arc::default(),
            progress: None,
            interrupt: Interrupt::default(),
            held_index: None,
        })
    }

    /// Opens the repository named `.snapstore` in `start` or the nearest directory above it
    /// (as git finds `.git`), or the repository `start` or a directory above it is (as git finds
    /// a bare one it is run in: `clone URL DIR` makes DIR the repository, and commands run in
    /// DIR said there was none). Fails with [`Error::NoRepositoryAbove`] when there is none.
    pub fn discover(start: impl AsRef<Path>) -> Result<Repo> {
        let start = start.as_ref();
        let absolute = std::path::absolute(start).map_err(|e| Error::io(start, e))?;
        // Its FORMAT read, not only seen: another tool's `FORMAT` beside an `index/` is no
        // repository, and must not shadow a `.snapstore` further up.
        let is_repository = |d: &Path| {
            d.join("index").is_dir()
                && std::fs::read_to_string(d.join("FORMAT"))
                    .is_ok_and(|f| f.contains("\"snapstore_format\""))
        };
        for dir in absolute.ancestors() {
            let candidate = dir.join(DEFAULT_REPO_DIR);
            if candidate.join("FORMAT").is_file() {
                return Repo::open(candidate);
            }
            if is_repository(dir) {
                return Repo::open(dir);
            }
        }
        Err(Error::NoRepositoryAbove(absolute))
    }

    /// The keyframe interval a commit uses when not told: `keyframe_every`, else
    /// [`DEFAULT_KEYFRAME_EVERY`].
    pub fn keyframe_every(&self) -> Result<u32> {
        Ok(self
            .config_get("keyframe_every")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_KEYFRAME_EVERY)
            .max(1))
    }

    /// The bound a commit on `branch` uses when not told: `bound.BRANCH`, else lossless.
    pub fn branch_bound(&self, branch: &str) -> Result<crate::Bound> {
        match self.config_get(&format!("bound.{branch}"))? {
            Some(s) => s.parse(),
            None => Ok(crate::Bound::Lossless),
        }
    }

    /// A setting's value in force, as `snapstore config KEY` prints it: `bound` (of `branch`)
    /// or `keyframe_every`.
    pub fn setting(&self, key: &str, branch: &str) -> Result<String> {
        match key {
            "bound" => Ok(self.branch_bound(branch)?.to_string()),
            "keyframe_every" => Ok(self.keyframe_every()?.to_string()),
            other => Err(unknown_setting(other)),
        }
    }

    /// Sets a setting from its text, checked, as `snapstore config KEY VALUE` does: `bound`
    /// (of `branch`) or `keyframe_every`.
    pub fn set_setting(&self, key: &str, value: &str, branch: &str) -> Result<()> {
        match key {
            "bound" => self.set_branch_bound(branch, value.parse()?),
            "keyframe_every" => {
                let every = value.parse::<u32>().map_err(|_| {
                    let why = format!("must be a positive integer, not {value:?}");
                    Error::invalid("keyframe_every", why)
                })?;
                self.set_keyframe_every(every)
            }
            other => Err(unknown_setting(other)),
        }
    }

    /// Sets the bound commits on `branch` use when not told (`snapstore config bound`).
    pub fn set_branch_bound(&self, branch: &str, bound: crate::Bound) -> Result<()> {
        check_ref_name(branch)?;
        self.config_set(&format!("bound.{branch}"), &bound.to_string())
    }

    /// Sets the keyframe interval commits use when not told (`snapstore config
    /// keyframe_every`): a keyframe at least every `every` snapshots of a chain, 1 or more.
    pub fn set_keyframe_every(&self, every: u32) -> Result<()> {
        if every == 0 {
            let why = "must be at least 1 (1: every snapshot a keyframe)";
            return Err(Error::invalid("keyframe_every", why));
        }
        self.config_set("keyframe_every", &every.to_string())
    }

    /// The same repository keeping its last commit decoded when its tensors hold at most
    /// `bytes`, so the next commit on that branch codes against it without decoding the
    /// parent's chain (default [`default_cache_bytes`], an eighth of the machine's memory; 0
    /// turns it off, as the CLI does: one commit per process). A larger commit is not kept in
    /// part: that would hold the whole bound to save decoding only the share it covers.
    pub fn with_tip_cache(mut self, bytes: usize) -> Repo {
        self.tip = Arc::new(TipCache::new(bytes));
        self
    }

    /// The same repository keeping at most `bytes` of its last in-memory checkout
    /// ([`Repo::checkout`], [`Repo::checkout_into`]) decoded (default [`default_cache_bytes`],
    /// an eighth of the machine's memory), so a checkout of a later snapshot
    /// applies its deltas to those chunks instead of decoding their chain again (an evaluation
    /// loop over a run); 0 turns it off, as the CLI does: one checkout per process.
    pub fn with_checkout_cache(mut self, bytes: usize) -> Repo {
        self.checkouts = Arc::new(CheckoutCache::new(bytes));
        self
    }

    /// The same repository calling `callback` as commits, checkouts (and diffs) and fsck
    /// advance, from the calling thread, a few times per MiB at most. The library draws
    /// nothing itself; the command-line tool turns these calls into progress bars.
    pub fn with_progress(mut self, callback: impl Fn(Progress) + Send + Sync + 'static) -> Repo {
        self.progress = Some(ProgressFn(Arc::new(callback)));
        self
    }

    /// The same repository stopping a commit, a search or a checkout into memory once `flag`
    /// is set (checked between windows of chunks, so within a fraction of a second): the call
    /// fails with [`Error::Interrupted`] and the repository is as it was. A commit past its last
    /// check lands; a checkout into caller buffers ([`Repo::checkout_into`]) always finishes, so
    /// they never hold half of a snapshot. A checkout to a file or a directory stops too, and
    /// leaves what was there (its files are written beside their names and renamed at the end;
    /// a pipe or device written into has had part of it). A push or fetch
    /// (and so a pull) stops its transfers the same way, within 50 ms: no ref moves, a
    /// multipart upload to S3 is aborted and a download's temp file removed; the packs that
    /// were complete stay, and the next push or fetch skips them.
    pub fn with_interrupt(mut self, flag: Arc<AtomicBool>) -> Repo {
        self.interrupt = Interrupt(Some(flag));
        self
    }

    /// Fails with [`Error::Interrupted`] once the interrupt flag is set.
    pub(crate) fn check_interrupt(&self) -> Result<()> {
        self.interrupt.check()
    }

    /// The interrupt flag, for work that outlives a borrow of the handle (a search's candidates).
    pub(crate) fn interrupt(&self) -> Interrupt {
        self.interrupt.clone()
    }

    /// Reports progress to the callback, if any.
    pub(crate) fn report(&self, task: &'static str, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            (p.0)(Progress { task, done, total });
        }
    }

    /// The same repository with the quantizer on `choice` (default: `auto`, CUDA when a device
    /// loads). Decoded data is bit-identical whichever backend runs.
    pub fn with_backend(mut self, choice: BackendChoice) -> Repo {
        self.backend = Arc::new(LazyBackend::new(choice));
        self
    }

    /// The backend the choice resolves to (resolving `auto` now). Under `auto` the repository
    /// still quantizes small commits and decodes on the CPU (see [`AUTO_CUDA_MIN_BYTES`]).
    /// Hidden with the backend types it returns (`examples/gpu_bench.rs` prints it).
    #[doc(hidden)]
    pub fn backend(&self) -> &Backend {
        self.backend.get()
    }

    /// The engine that quantizes a commit (or a search's candidates) of `lossy_bytes` bytes of
    /// tensors under a bound: under `auto`, CUDA only for large snapshots (see
    /// [`AUTO_CUDA_MIN_BYTES`]).
    pub(crate) fn encode_engine(&self, lossy_bytes: u64) -> Arc<dyn QuantEngine> {
        if self.backend.choice() == BackendChoice::Auto && lossy_bytes < AUTO_CUDA_MIN_BYTES {
            Arc::new(CpuQuant)
        } else {
            self.backend.clone()
        }
    }

    /// A reader for this repository. Under `auto` lossy chunks decode on the CPU: on the H200
    /// host, checking out 1 GiB snapshots through CUDA ran at 0.96x the CPU's rate
    /// (BENCHMARKS.md), so only `--backend cuda` decodes there.
    pub(crate) fn reader(&self) -> ObjectReader {
        self.reader_with(self.checkouts.known())
    }

    /// A reader looking decoded chunks up in `known`.
    fn reader_with(&self, known: KnownChunks) -> ObjectReader {
        let engine: Arc<dyn QuantEngine> = match self.backend.choice() {
            BackendChoice::Auto => Arc::new(CpuQuant),
            _ => self.backend.clone(),
        };
        ObjectReader::with_engine(self.packs_dir(), engine)
            .with_known(known)
            .with_manifest_cache(self.manifests.clone())
            .locating_by_trailers()
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn packs_dir(&self) -> PathBuf {
        self.dir.join("packs")
    }

    /// The index, opened for changes (refused on a handle holding it for reading: its own
    /// shared lock would keep the open waiting).
    pub(crate) fn index(&self) -> Result<Index> {
        if self.held_index.is_some() {
            return Err(Error::IndexHeld {
                path: self.dir.clone(),
            });
        }
        Index::open(&self.dir)
    }

    /// The index, opened by a command that only reads: nothing in the repository is written.
    fn index_read(&self) -> Result<IndexRef> {
        Ok(match &self.held_index {
            Some(HeldIndex(index)) => IndexRef::Held(index.clone()),
            None => IndexRef::Opened(Index::open_read(&self.dir)?),
        })
    }

    /// The same repository with its index held open for reading until this handle and its
    /// clones are dropped, so a caller making several short reads (a log and the current
    /// branch, the refs and a few manifests) opens it once: each open reads the index's page
    /// table, more of it as the history grows (`benches/index_growth.sh`). Other processes
    /// still read meanwhile, but a writer waits for the handle to go: hold it for short reads,
    /// not across a checkout. Changes through it fail with [`Error::IndexHeld`].
    pub fn holding_index(mut self) -> Result<Repo> {
        if self.held_index.is_none() {
            let index = Index::open_read(&self.dir)?;
            self.held_index = Some(HeldIndex(Arc::new(index)));
        }
        Ok(self)
    }

    /// Reads a config value (`keyframe_every`, `bound.BRANCH`, ...).
    pub fn config_get(&self, key: &str) -> Result<Option<String>> {
        self.index_read()?.config_get(key)
    }

    /// Sets a config value.
    pub fn config_set(&self, key: &str, value: &str) -> Result<()> {
        let index = self.index()?;
        let previous = index.config_get(key)?;
        index.config_set(key, value)?;
        index.flush_or_undo(|i| {
            let _ = match &previous {
                Some(p) => i.config_set(key, p),
                None => i.config_remove(key),
            };
        })
    }
}
