//! What a path given to commit holds: a safetensors checkpoint, a frame sequence read from a
//! directory of PNGs or a `.npy`, or a safetensors file holding one `[T,H,W(,C)]` array. The
//! CLI's `commit FILE` and a trainer committing a path decide it the same way.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::frames::{load_npy, load_png_dir, FrameError, FrameSeq};

use super::{CommitOptions, CommitReport, Repo};

/// What the caller says a path holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputKind {
    /// Decide from the path: a directory or a `.npy` file is a frame sequence, anything else a
    /// safetensors checkpoint.
    #[default]
    Auto,
    /// A safetensors checkpoint.
    Tensors,
    /// A frame sequence: a directory of PNGs, a `.npy`, or a safetensors file with one
    /// `[T,H,W(,C)]` array.
    Frames,
}

/// A path to commit, its kind decided and a frame sequence read.
#[derive(Clone, Debug)]
pub enum Input {
    /// A safetensors checkpoint ([`Repo::commit_file`]).
    Tensors(PathBuf),
    /// A frame sequence read from a directory of PNGs or a `.npy` ([`Repo::commit_frames`]).
    Frames(FrameSeq),
    /// A safetensors file of one `[T,H,W(,C)]` array, committed as a frame sequence with its
    /// header kept ([`Repo::commit_frames_file`]).
    FramesFile(PathBuf),
}

impl Input {
    /// Decides what `path` holds under `kind`, reading a PNG directory or a `.npy` into memory
    /// (a safetensors file is read only when committed). Fails, naming the file, when a PNG
    /// directory or `.npy` cannot be read as a frame sequence.
    ///
    /// ```
    /// use snapstore::{Input, InputKind};
    ///
    /// let input = Input::detect("model.safetensors", InputKind::Auto)?;
    /// assert!(matches!(input, Input::Tensors(_)));
    /// # Ok::<(), snapstore::FrameError>(())
    /// ```
    pub fn detect(path: impl AsRef<Path>, kind: InputKind) -> Result<Input, FrameError> {
        let path = path.as_ref();
        let is_npy = path.extension().is_some_and(|e| e == "npy");
        Ok(match kind {
            InputKind::Tensors => Input::Tensors(path.to_path_buf()),
            _ if path.is_dir() => Input::Frames(load_png_dir(path)?),
            _ if is_npy => Input::Frames(load_npy(path)?),
            InputKind::Frames => Input::FramesFile(path.to_path_buf()),
            InputKind::Auto => Input::Tensors(path.to_path_buf()),
        })
    }
}

impl Repo {
    /// Commits `input` as a new snapshot: a checkpoint's tensors, or a frame sequence in groups
    /// of `group` frames (`group` is unused for a checkpoint).
    pub fn commit_input(
        &self,
        input: &Input,
        group: usize,
        opts: &CommitOptions,
    ) -> Result<CommitReport> {
        match input {
            Input::Tensors(path) => self.commit_file(path, opts),
            Input::Frames(seq) => self.commit_frames(seq, group, opts),
            Input::FramesFile(path) => self.commit_frames_file(path, group, opts),
        }
    }
}
