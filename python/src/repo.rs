//! `snapstore._native.Repo`: each method converts its arguments, runs the library with the GIL
//! released, and returns plain values (reports as JSON text that `py_src/snapstore/_repo.py`
//! parses, so their fields are exactly the CLI's `--json`).

use std::collections::BTreeMap;
use std::sync::RwLock;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use serde::Serialize;
use snapstore::{
    default_candidates, AutoOptions, Bound, CommitOptions, FrameError, Input, InputKind,
    PushOptions, RemoteSpec, Repo, SearchOptions,
};

use crate::buffer::Buffer;
use crate::errors::{raise, to_py};
use crate::evaluator::PyEvaluator;
use crate::inputs::{borrow, borrow_mut, RawTensor};
use crate::interrupt::{run_interruptible, COMMIT_LANDED, PUSH_LANDED};

/// A checked-out tensor: name, dtype name, shape, bytes.
type OutTensor = (String, String, Vec<u64>, Py<Buffer>);

/// An open repository; `close()` drops it and later calls raise `ClosedRepositoryError`.
#[pyclass(name = "Repo", module = "snapstore._native", frozen)]
pub struct PyRepo {
    repo: RwLock<Option<Repo>>,
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("reports serialize")
}

/// A `bound="auto"` commit's settings as Python passes them: `(max_loss, alpha, bounds,
/// research_every)`.
type AutoSettings = (f64, f64, Option<Vec<f64>>, Option<u32>);

/// The search options and interval `settings` give.
fn auto_options((max_loss, alpha, bounds, research_every): AutoSettings) -> AutoOptions {
    AutoOptions {
        search: search_options(max_loss, alpha, bounds),
        research_every,
    }
}

fn search_options(max_loss: f64, alpha: f64, bounds: Option<Vec<f64>>) -> SearchOptions {
    SearchOptions {
        candidates: bounds.unwrap_or_else(default_candidates),
        alpha,
        max_loss,
        // Python owns the terminal; a bar would interleave with the trainer's output.
        progress: false,
        ..SearchOptions::default()
    }
}

impl PyRepo {
    fn wrap(repo: Repo) -> PyRepo {
        PyRepo {
            repo: RwLock::new(Some(repo)),
        }
    }

    /// A handle to the repository (cheap: shared state behind `Arc`s), so no lock is held while
    /// the library works.
    fn get(&self, py: Python<'_>) -> PyResult<Repo> {
        let guard = self.repo.read().unwrap_or_else(|p| p.into_inner());
        guard.clone().ok_or_else(|| {
            raise(
                py,
                "ClosedRepositoryError",
                "the repository is closed".to_string(),
            )
        })
    }

    /// Runs `f` on the repository with the GIL released.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Repo) -> snapstore::Result<T> + Send,
    ) -> PyResult<T> {
        let repo = self.get(py)?;
        py.detach(|| f(&repo)).map_err(|e| to_py(py, e))
    }

    /// Runs `f` as [`PyRepo::run`] does, but stoppable: Ctrl-C stops it (a commit then stores
    /// nothing) and raises `KeyboardInterrupt` (see `interrupt.rs`).
    /// `landed`: the note of an interrupt raised although the work succeeded.
    fn run_interruptible<T: Send>(
        &self,
        py: Python<'_>,
        landed: Option<&str>,
        f: impl FnOnce(&Repo) -> snapstore::Result<T> + Send,
    ) -> PyResult<T> {
        let repo = self.get(py)?;
        run_interruptible(py, repo, None, landed, |repo, _| f(repo))?.map_err(|e| to_py(py, e))
    }

    /// Runs `f` with `evaluate` as the evaluator, stoppable as [`PyRepo::run_interruptible`]
    /// (the evaluator is called on this thread, so Ctrl-C reaches it); an exception of the
    /// callable becomes the cause of the `EvaluatorError` raised, and a `BaseException` that is
    /// no `Exception` (`KeyboardInterrupt`, `SystemExit`) is raised unchanged.
    fn run_evaluated<T: Send>(
        &self,
        py: Python<'_>,
        evaluate: Py<PyAny>,
        landed: Option<&str>,
        f: impl FnOnce(&Repo, &mut snapstore::Evaluator) -> snapstore::Result<T> + Send,
    ) -> PyResult<T> {
        let repo = self.get(py)?;
        let evaluator = PyEvaluator::new(evaluate);
        let result = run_interruptible(py, repo, Some(&evaluator), landed, f)?;
        result.map_err(|e| {
            let err = to_py(py, e);
            match evaluator.take_failure() {
                // Ctrl-C or sys.exit() asks the program to stop: wrapped in an Exception, an
                // `except Exception:` around the commit would swallow it.
                Some(cause) if !cause.is_instance_of::<PyException>(py) => cause,
                Some(cause) => {
                    err.set_cause(py, Some(cause));
                    err
                }
                None => err,
            }
        })
    }
}

/// What `path` holds, `kind` (`"auto"`, `"tensors"` or `"frames"`) deciding as `--kind` does.
fn input_at(py: Python<'_>, path: &std::path::Path, kind: &str) -> PyResult<Input> {
    let kind = match kind {
        "auto" => InputKind::Auto,
        "tensors" => InputKind::Tensors,
        "frames" => InputKind::Frames,
        other => {
            let why = format!("kind must be \"auto\", \"tensors\" or \"frames\", not {other:?}");
            return Err(raise(py, "InvalidInputError", why));
        }
    };
    py.detach(|| Input::detect(path, kind)).map_err(|e| {
        let class = match e {
            FrameError::Io { .. } => "StorageIOError",
            _ => "InvalidInputError",
        };
        raise(py, class, e.to_string())
    })
}

/// The handle `open` makes (with the GIL released), its kept tip and checkout cache sized where
/// `caches` (tip bytes, checkout bytes) asks.
fn opened(
    py: Python<'_>,
    (tip, checkout): (Option<usize>, Option<usize>),
    open: impl FnOnce() -> snapstore::Result<Repo> + Send,
) -> PyResult<PyRepo> {
    let mut repo = py.detach(open).map_err(|e| to_py(py, e))?;
    if let Some(bytes) = tip {
        repo = repo.with_tip_cache(bytes);
    }
    if let Some(bytes) = checkout {
        repo = repo.with_checkout_cache(bytes);
    }
    Ok(PyRepo::wrap(repo))
}

#[pymethods]
impl PyRepo {
    /// Opens the repository in `path` (created first if `create`), with the handle's caches
    /// sized as given (`None`: the library's defaults).
    #[staticmethod]
    #[pyo3(signature = (path, create=false, tip_cache_bytes=None, checkout_cache_bytes=None))]
    fn open(
        py: Python<'_>,
        path: std::path::PathBuf,
        create: bool,
        tip_cache_bytes: Option<usize>,
        checkout_cache_bytes: Option<usize>,
    ) -> PyResult<PyRepo> {
        let caches = (tip_cache_bytes, checkout_cache_bytes);
        opened(py, caches, || {
            if create {
                Repo::init(&path)
            } else {
                Repo::open(&path)
            }
        })
    }

    fn close(&self) {
        *self.repo.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    #[getter]
    fn closed(&self) -> bool {
        self.repo
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    #[getter]
    fn path(&self, py: Python<'_>) -> PyResult<std::path::PathBuf> {
        Ok(self.get(py)?.path().to_path_buf())
    }

    /// Commits tensors; returns the CommitReport as JSON.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (tensors, metadata, message, bound, meta, branch))]
    fn commit(
        &self,
        py: Python<'_>,
        tensors: Vec<RawTensor>,
        metadata: Option<BTreeMap<String, String>>,
        message: String,
        bound: Option<String>,
        meta: BTreeMap<String, String>,
        branch: Option<String>,
    ) -> PyResult<String> {
        // A training thread (or the evaluator) may write these tensors while they are read.
        let opts = CommitOptions {
            shared_inputs: true,
            ..commit_options(py, message, bound, meta, branch)?
        };
        self.run_interruptible(py, Some(COMMIT_LANDED), |repo| {
            let inputs = borrow(&tensors)?;
            repo.commit_tensors(&inputs, metadata, &opts)
                .map(|r| json(&r))
        })
    }

    /// Commits under a searched bound; returns the AutoCommitReport as JSON.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (tensors, metadata, message, meta, branch, evaluate, settings))]
    fn commit_auto(
        &self,
        py: Python<'_>,
        tensors: Vec<RawTensor>,
        metadata: Option<BTreeMap<String, String>>,
        message: String,
        meta: BTreeMap<String, String>,
        branch: Option<String>,
        evaluate: Py<PyAny>,
        settings: AutoSettings,
    ) -> PyResult<String> {
        let opts = CommitOptions {
            message,
            branch,
            meta,
            shared_inputs: true,
            ..CommitOptions::default()
        };
        let auto = auto_options(settings);
        self.run_evaluated(py, evaluate, Some(COMMIT_LANDED), |repo, evaluator| {
            let inputs = borrow(&tensors)?;
            repo.commit_tensors_auto(&inputs, metadata, &opts, &auto, evaluator)
                .map(|r| json(&r))
        })
    }

    /// Searches the bound for `tensors` on top of `parent` (default HEAD); writes nothing.
    /// Returns the SearchReport as JSON.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (tensors, evaluate, max_loss, alpha, bounds, parent))]
    fn search(
        &self,
        py: Python<'_>,
        tensors: Vec<RawTensor>,
        evaluate: Py<PyAny>,
        max_loss: f64,
        alpha: f64,
        bounds: Option<Vec<f64>>,
        parent: Option<String>,
    ) -> PyResult<String> {
        let opts = search_options(max_loss, alpha, bounds);
        self.run_evaluated(py, evaluate, None, |repo, evaluator| {
            let inputs = borrow(&tensors)?;
            // The evaluator may load candidates into the model these tensors belong to.
            let mut guarded = snapstore::guard_inputs(&inputs, evaluator);
            repo.search_tensors(&inputs, parent.as_deref(), &opts, &mut *guarded)
                .map(|r| json(&r))
        })
    }

    /// Commits what `path` holds (a safetensors file, a checkpoint directory, a frame
    /// sequence), as `snapstore commit PATH` does; the CommitReport as JSON.
    #[pyo3(signature = (path, message, bound, meta, branch, kind))]
    #[allow(clippy::too_many_arguments)] // the Python call's keywords, one for one
    fn commit_path(
        &self,
        py: Python<'_>,
        path: std::path::PathBuf,
        message: String,
        bound: Option<String>,
        meta: BTreeMap<String, String>,
        branch: Option<String>,
        kind: &str,
    ) -> PyResult<String> {
        let opts = commit_options(py, message, bound, meta, branch)?;
        let input = input_at(py, &path, kind)?;
        self.run_interruptible(py, Some(COMMIT_LANDED), |repo| {
            repo.commit_input(&input, None, &opts).map(|r| json(&r))
        })
    }

    /// Commits the checkpoint at `path` (a safetensors file or a checkpoint directory) under a
    /// searched bound, as `snapstore commit PATH --bound auto` does; the AutoCommitReport as
    /// JSON.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (path, message, meta, branch, kind, evaluate, settings))]
    fn commit_path_auto(
        &self,
        py: Python<'_>,
        path: std::path::PathBuf,
        message: String,
        meta: BTreeMap<String, String>,
        branch: Option<String>,
        kind: &str,
        evaluate: Py<PyAny>,
        settings: AutoSettings,
    ) -> PyResult<String> {
        let path = match input_at(py, &path, kind)? {
            Input::Tensors(path) | Input::Directory(path) => path,
            Input::Frames(_) | Input::FramesFile(_) => {
                let why = format!(
                    "{}: bound=\"auto\" searches the bound of a checkpoint; commit a frame \
                     sequence under \"abs:E\" or \"rel:E\"",
                    path.display()
                );
                return Err(raise(py, "InvalidInputError", why));
            }
        };
        let opts = commit_options(py, message, None, meta, branch)?;
        let auto = auto_options(settings);
        self.run_evaluated(py, evaluate, Some(COMMIT_LANDED), |repo, evaluator| {
            repo.commit_checkpoint_auto(&path, &opts, &auto, evaluator)
                .map(|r| json(&r))
        })
    }

    /// Writes `spec` (or only `names`) as a safetensors file at `path`, a checkpoint
    /// directory's snapshot as that directory; the CheckoutReport as JSON.
    #[pyo3(signature = (spec, path, names=None))]
    fn checkout_to(
        &self,
        py: Python<'_>,
        spec: String,
        path: std::path::PathBuf,
        names: Option<Vec<String>>,
    ) -> PyResult<String> {
        self.run_interruptible(py, None, |repo| {
            repo.checkout_to_file(&spec, &path, names.as_deref())
                .map(|r| json(&r))
        })
    }

    /// Checks out `spec`: (snapshot id, safetensors metadata, snapshot meta, tensors).
    #[allow(clippy::type_complexity)]
    #[pyo3(signature = (spec, names=None))]
    fn checkout(
        &self,
        py: Python<'_>,
        spec: String,
        names: Option<Vec<String>>,
    ) -> PyResult<(
        String,
        Option<BTreeMap<String, String>>,
        BTreeMap<String, String>,
        Vec<OutTensor>,
    )> {
        let c = self.run_interruptible(py, None, |repo| repo.checkout(&spec, names.as_deref()))?;
        let tensors = c
            .tensors
            .into_iter()
            .map(|t| {
                let buffer = Py::new(py, Buffer::new(t.data))?;
                Ok((t.name, t.dtype.name().to_string(), t.shape, buffer))
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok((c.snapshot.hex(), c.metadata, c.meta, tensors))
    }

    /// The snapshot `spec` names and its tensors' names, in file order.
    fn tensor_names(&self, py: Python<'_>, spec: String) -> PyResult<(String, Vec<String>)> {
        let (id, manifest) = self.run(py, |repo| repo.show(spec.as_str()))?;
        let names = manifest.tensors.iter().map(|t| t.name.clone()).collect();
        Ok((id.hex(), names))
    }

    /// Checks out the tensors `targets` names into their buffers, in place: (snapshot id,
    /// safetensors metadata, snapshot meta).
    #[allow(clippy::type_complexity)]
    fn checkout_into(
        &self,
        py: Python<'_>,
        spec: String,
        targets: Vec<RawTensor>,
    ) -> PyResult<(
        String,
        Option<BTreeMap<String, String>>,
        BTreeMap<String, String>,
    )> {
        let info = self.run(py, |repo| {
            let mut targets = borrow_mut(&targets)?;
            repo.checkout_into(spec.as_str(), &mut targets)
        })?;
        Ok((info.snapshot.hex(), info.metadata, info.meta))
    }

    /// Log entries from `spec` (default HEAD), newest first, as JSON.
    #[pyo3(signature = (spec=None, limit=None))]
    fn log(&self, py: Python<'_>, spec: Option<String>, limit: Option<usize>) -> PyResult<String> {
        self.run(py, |repo| {
            repo.log(spec.as_deref(), limit).map(|e| json(&e))
        })
    }

    /// `{"id": ..., "manifest": ...}` of `spec`, as JSON.
    fn show(&self, py: Python<'_>, spec: String) -> PyResult<String> {
        self.run(py, |repo| {
            let (id, m) = repo.show(&spec)?;
            Ok(json(&serde_json::json!({
                "id": id,
                "logical_bytes": m.logical_bytes(),
                "stored_bytes": m.stored_bytes(),
                "manifest": &*m,
            })))
        })
    }

    /// Per-tensor differences between two snapshots, as JSON.
    fn diff(&self, py: Python<'_>, a: String, b: String) -> PyResult<String> {
        self.run(py, |repo| repo.diff(&a, &b).map(|rows| json(&rows)))
    }

    /// Repository totals, as JSON.
    fn stats(&self, py: Python<'_>) -> PyResult<String> {
        self.run(py, |repo| repo.stats().map(|s| json(&s)))
    }

    /// Removes (or, dry, lists) what no ref reaches, keeping packs younger than `grace_s`
    /// seconds; the report as JSON.
    fn gc(&self, py: Python<'_>, dry_run: bool, grace_s: u64) -> PyResult<String> {
        let grace = std::time::Duration::from_secs(grace_s);
        self.run(py, |repo| repo.gc(dry_run, grace).map(|r| json(&r)))
    }

    /// Re-hashes every object and (unless `quick`) decodes every tensor; the report as JSON.
    fn fsck(&self, py: Python<'_>, quick: bool) -> PyResult<String> {
        self.run(py, |repo| repo.fsck(quick).map(|r| json(&r)))
    }

    /// (branches, tags) as lists of (name, snapshot id).
    #[allow(clippy::type_complexity)]
    fn list_refs(
        &self,
        py: Python<'_>,
    ) -> PyResult<(Vec<(String, String)>, Vec<(String, String)>)> {
        let (heads, tags) = self.run(py, |repo| repo.list_refs())?;
        let hex = |l: Vec<(String, snapstore::ObjectId)>| {
            l.into_iter().map(|(n, id)| (n, id.hex())).collect()
        };
        Ok((hex(heads), hex(tags)))
    }

    /// Creates tag `name` at `spec`; returns its snapshot id.
    fn create_tag(&self, py: Python<'_>, name: String, spec: String) -> PyResult<String> {
        self.run(py, |repo| repo.create_tag(&name, &spec).map(|id| id.hex()))
    }

    /// Creates branch `name` at `spec` (default HEAD); returns its snapshot id, if any.
    #[pyo3(signature = (name, spec=None))]
    fn create_branch(
        &self,
        py: Python<'_>,
        name: String,
        spec: Option<String>,
    ) -> PyResult<Option<String>> {
        self.run(py, |repo| {
            repo.create_branch(&name, spec.as_deref())
                .map(|id| id.map(|i| i.hex()))
        })
    }

    /// Deletes a ref: `tags/NAME` or `heads/NAME`; returns the id it pointed at.
    fn delete_ref(&self, py: Python<'_>, key: String) -> PyResult<String> {
        self.run(py, |repo| repo.delete_ref(&key).map(|id| id.hex()))
    }

    /// The branch HEAD names.
    fn head_branch(&self, py: Python<'_>) -> PyResult<String> {
        self.run(py, |repo| repo.head_branch())
    }

    /// Reads, or sets then reads, a setting as `snapstore config` does: `bound` (of `branch`,
    /// default HEAD's) or `keyframe_every`; returns the value in force.
    #[pyo3(signature = (key, value=None, branch=None))]
    fn config(
        &self,
        py: Python<'_>,
        key: String,
        value: Option<String>,
        branch: Option<String>,
    ) -> PyResult<String> {
        self.run(py, |repo| {
            let branch = match branch {
                Some(b) => b,
                None => repo.head_branch()?,
            };
            if let Some(v) = value {
                repo.set_setting(&key, &v, &branch)?;
            }
            repo.setting(&key, &branch)
        })
    }

    /// Makes HEAD name `branch`, created at HEAD's snapshot when `create`.
    fn switch_branch(&self, py: Python<'_>, branch: String, create: bool) -> PyResult<()> {
        self.run(py, |repo| match create {
            true => repo.switch_new_branch(&branch).map(|_| ()),
            false => repo.switch_branch(&branch),
        })
    }

    /// Adds remote `name` at `url`; returns the URL as stored (a directory made absolute).
    #[pyo3(signature = (name, url, endpoint=None, region=None))]
    fn add_remote(
        &self,
        py: Python<'_>,
        name: String,
        url: String,
        endpoint: Option<String>,
        region: Option<String>,
    ) -> PyResult<String> {
        self.run(py, |repo| {
            let spec = remote_spec(&url, endpoint, region)?;
            repo.add_remote(&name, spec).map(|s| s.url)
        })
    }

    /// The remotes, as JSON `{name: {url, endpoint, region}}`.
    fn remotes(&self, py: Python<'_>) -> PyResult<String> {
        self.run(py, |repo| repo.remotes().map(|r| json(&r)))
    }

    /// Forgets remote `name` (and its tracking refs); returns its URL.
    fn remove_remote(&self, py: Python<'_>, name: String) -> PyResult<String> {
        self.run(py, |repo| repo.remove_remote(&name).map(|s| s.url))
    }

    /// Pushes `refs` (empty: HEAD's branch) to `remote`; the report as JSON.
    #[pyo3(signature = (remote, refs, force, no_rebase))]
    fn push(
        &self,
        py: Python<'_>,
        remote: String,
        refs: Vec<String>,
        force: bool,
        no_rebase: bool,
    ) -> PyResult<String> {
        let opts = PushOptions { force, no_rebase };
        self.run_interruptible(py, Some(PUSH_LANDED), |repo| {
            repo.push(&remote, &refs, opts).map(|r| json(&r))
        })
    }

    /// Checks `remote` (and with `repair` puts back what this repository holds of what is
    /// missing or damaged there); the report as JSON.
    fn remote_fsck(
        &self,
        py: Python<'_>,
        remote: String,
        deep: bool,
        repair: bool,
    ) -> PyResult<String> {
        self.run_interruptible(py, None, |repo| {
            let r = match repair {
                true => repo.repair_remote(&remote, deep),
                false => repo.check_remote(&remote, deep),
            };
            r.map(|r| json(&r))
        })
    }

    /// Deletes branch or tag `name` on `remote` by compare-and-swap; the deleted ref as JSON.
    fn delete_remote_ref(&self, py: Python<'_>, remote: String, name: String) -> PyResult<String> {
        self.run(py, |repo| {
            repo.delete_remote_ref(&remote, &name).map(|r| json(&r))
        })
    }

    /// Fetches `refs` (empty: all) from `remote`; the report as JSON.
    fn fetch(&self, py: Python<'_>, remote: String, refs: Vec<String>) -> PyResult<String> {
        self.run_interruptible(py, None, |repo| {
            repo.fetch(&remote, &refs).map(|r| json(&r))
        })
    }

    /// Pulls `branch` (default HEAD's) from `remote`; the report as JSON.
    #[pyo3(signature = (remote, branch=None))]
    fn pull(&self, py: Python<'_>, remote: String, branch: Option<String>) -> PyResult<String> {
        self.run_interruptible(py, None, |repo| {
            repo.pull(&remote, branch.as_deref()).map(|r| json(&r))
        })
    }

    /// Clones `url` into a new repository at `path`: the open repository and the report (JSON).
    /// `progress(task, done, total)` is called as bytes arrive (the GIL taken for each call);
    /// an exception it raises is reported as unraisable and stops further calls, not the clone.
    #[staticmethod]
    #[pyo3(signature = (url, path, endpoint=None, region=None, progress=None))]
    fn clone_remote(
        py: Python<'_>,
        url: String,
        path: std::path::PathBuf,
        endpoint: Option<String>,
        region: Option<String>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(PyRepo, String)> {
        let progress = progress.map(|callback| {
            let failed = std::sync::atomic::AtomicBool::new(false);
            let call = move |p: snapstore::Progress| {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                Python::attach(|py| {
                    if let Err(e) = callback.call1(py, (p.task, p.done, p.total)) {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        e.write_unraisable(py, Some(callback.bind(py)));
                    }
                });
            };
            std::sync::Arc::new(call) as snapstore::ProgressCallback
        });
        py.detach(|| {
            let spec = remote_spec(&url, endpoint, region)?;
            Repo::clone_remote(spec, &path, progress)
        })
        .map(|(repo, report)| (PyRepo::wrap(repo), json(&report)))
        .map_err(|e| to_py(py, e))
    }
}

/// The options of a commit under `bound` (parsed; `None`: the branch's).
fn commit_options(
    py: Python<'_>,
    message: String,
    bound: Option<String>,
    meta: BTreeMap<String, String>,
    branch: Option<String>,
) -> PyResult<CommitOptions> {
    let bound = bound
        .map(|b| b.parse::<Bound>())
        .transpose()
        .map_err(|e| to_py(py, e))?;
    Ok(CommitOptions {
        message,
        branch,
        meta,
        bound,
        ..CommitOptions::default()
    })
}

/// Writes `spec` of the remote at `url` (or only `names`) as a safetensors file at `path`,
/// downloading only what those tensors need; the report as JSON.
#[pyfunction]
#[pyo3(signature = (url, spec, path, names=None, endpoint=None, region=None))]
pub fn checkout_remote(
    py: Python<'_>,
    url: String,
    spec: String,
    path: std::path::PathBuf,
    names: Option<Vec<String>>,
    endpoint: Option<String>,
    region: Option<String>,
) -> PyResult<String> {
    py.detach(|| {
        let remote = remote_spec(&url, endpoint, region)?;
        snapstore::remote_checkout_to_file(&remote, &spec, &path, names.as_deref(), &|_| {})
    })
    .map(|r| json(&r))
    .map_err(|e| to_py(py, e))
}

/// Removes from the remote at `url` the snapshot records and packs no remote ref reaches and
/// that are older than `grace_s` seconds (with `dry_run`, only reports them); the report as JSON.
#[pyfunction]
#[pyo3(signature = (url, dry_run, grace_s, endpoint=None, region=None))]
pub fn remote_gc(
    py: Python<'_>,
    url: String,
    dry_run: bool,
    grace_s: u64,
    endpoint: Option<String>,
    region: Option<String>,
) -> PyResult<String> {
    py.detach(|| {
        let remote = remote_spec(&url, endpoint, region)?;
        snapstore::remote_gc(&remote, dry_run, std::time::Duration::from_secs(grace_s))
    })
    .map(|r| json(&r))
    .map_err(|e| to_py(py, e))
}

/// A remote's URL with the S3 endpoint and region a call gave (the AWS environment's otherwise).
fn remote_spec(
    url: &str,
    endpoint: Option<String>,
    region: Option<String>,
) -> snapstore::Result<RemoteSpec> {
    Ok(RemoteSpec::new(url)?
        .with_endpoint(endpoint)
        .with_region(region))
}
