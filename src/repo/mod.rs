//! A repository on disk and the operations on it. Each submodule is one family of commands.

mod checkout;
mod commit;
mod frames;
mod history;
mod maintenance;
#[cfg(test)]
mod props;
mod reader;
mod refs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::gpu::backend::{Backend, BackendChoice, LazyBackend};
use crate::store::index::Index;
use reader::ObjectReader;

pub use checkout::{CheckedOutTensor, Checkout, CheckoutReport};
pub(crate) use commit::{
    chunk_count, chunk_range, code_chunk, validate_inputs, EXCEPTION_FALLBACK,
};
pub use commit::{CommitOptions, CommitReport, TensorInput};
pub use frames::{is_frames, DEFAULT_FRAME_GROUP, FRAMES_TENSOR};
pub use history::{DiffRow, LogEntry, Stats, TensorDiff};
pub use maintenance::{FsckProblem, FsckReport, GcReport};

/// Repository format version written by this build; newer ones are refused.
pub const FORMAT_VERSION: u32 = 1;
/// Default repository directory.
pub const DEFAULT_REPO_DIR: &str = ".snapstore";
/// Default keyframe interval: at most this many decodes per checkout.
pub const DEFAULT_KEYFRAME_EVERY: u32 = 8;

#[derive(Serialize, Deserialize)]
struct FormatFile {
    snapstore_format: u32,
}

fn default_backend() -> Arc<LazyBackend> {
    Arc::new(LazyBackend::new(BackendChoice::Auto))
}

/// A snapstore repository.
#[derive(Clone, Debug)]
pub struct Repo {
    dir: PathBuf,
    /// Where lossy chunks are quantized and dequantized (resolved on first use).
    backend: Arc<LazyBackend>,
}

impl Repo {
    /// Creates a repository in `dir` (which may exist but must not hold one).
    pub fn init(dir: impl AsRef<Path>) -> Result<Repo> {
        let dir = dir.as_ref().to_path_buf();
        if dir.join("FORMAT").exists() {
            return Err(Error::RepositoryExists(dir));
        }
        std::fs::create_dir_all(dir.join("packs")).map_err(|e| Error::io(&dir, e))?;
        let repo = Repo {
            dir,
            backend: default_backend(),
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
        let dir = dir.as_ref().to_path_buf();
        let format_path = dir.join("FORMAT");
        let bytes = match std::fs::read(&format_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoRepository(dir))
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
            dir,
            backend: default_backend(),
        })
    }

    /// The same repository with the quantizer on `choice` (default: `auto`, CUDA when a device
    /// loads). Decoded data is bit-identical whichever backend runs.
    pub fn with_backend(mut self, choice: BackendChoice) -> Repo {
        self.backend = Arc::new(LazyBackend::new(choice));
        self
    }

    /// The backend lossy chunks run on (resolving `auto` now).
    pub fn backend(&self) -> &Backend {
        self.backend.get()
    }

    /// The quantizer engine (for the bound search's candidates).
    pub(crate) fn engine(&self) -> Arc<dyn crate::codec::lossy::QuantEngine> {
        self.backend.clone()
    }

    /// A reader whose lossy chunks decode on this repository's backend.
    fn reader(&self) -> ObjectReader {
        ObjectReader::with_engine(self.packs_dir(), self.backend.clone())
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn packs_dir(&self) -> PathBuf {
        self.dir.join("packs")
    }

    fn index(&self) -> Result<Index> {
        Index::open(&self.dir)
    }

    /// Reads a config value (`keyframe_every`, `bound.BRANCH`, ...).
    pub fn config_get(&self, key: &str) -> Result<Option<String>> {
        self.index()?.config_get(key)
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
