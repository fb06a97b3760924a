//! What a commit takes: tensors from memory ([`TensorInput`], typed through [`Element`]), or a
//! path ([`Input`]) holding a safetensors checkpoint, a checkpoint directory (safetensors
//! shards and small JSON files), a frame sequence read from a directory of PNGs or a `.npy`,
//! or a safetensors file holding one `[T,H,W(,C)]` array. The CLI's `commit
//! FILE` and a trainer committing a path decide what a path holds the same way.

use std::path::{Path, PathBuf};

use crate::dtype::Dtype;
use crate::frames::{load_npy, load_png_dir, FrameError, FrameSeq};
use crate::safetensors_io::SafetensorsFile;

/// What the caller says a path holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputKind {
    /// Decide from the path: a directory holding a `*.safetensors` file is a checkpoint
    /// directory, any other directory or a `.npy` file a frame sequence, anything else a
    /// safetensors checkpoint.
    #[default]
    Auto,
    /// A safetensors checkpoint: a file, or a directory of them.
    Tensors,
    /// A frame sequence: a directory of PNGs, a `.npy`, or a safetensors file with one
    /// `[T,H,W(,C)]` array.
    Frames,
}

/// A path to commit, its kind decided and a frame sequence read.
#[derive(Clone, Debug)]
pub enum Input {
    /// A safetensors checkpoint ([`Repo::commit_file`](super::Repo::commit_file)).
    Tensors(PathBuf),
    /// A checkpoint directory: safetensors shards, their index, `config.json`
    /// ([`Repo::commit_dir`](super::Repo::commit_dir)).
    Directory(PathBuf),
    /// A frame sequence read from a directory of PNGs or a `.npy` ([`Repo::commit_frames`](super::Repo::commit_frames)).
    Frames(FrameSeq),
    /// A safetensors file of one `[T,H,W(,C)]` array, committed as a frame sequence with its
    /// header kept ([`Repo::commit_frames_file`](super::Repo::commit_frames_file)).
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
        let is_npy = has_extension(path, "npy");
        if kind != InputKind::Tensors && has_extension(path, "png") && !path.is_dir() {
            // One image would otherwise be read as a safetensors header.
            return Err(FrameError::NotPng {
                path: path.to_path_buf(),
                reason: "a single PNG is not a frame sequence: commit the directory of its \
                         frames, or a .npy"
                    .into(),
            });
        }
        // One look at a directory: its safetensors make it a checkpoint directory, and more
        // PNGs than those make it ambiguous.
        let (safetensors, png) = match path.is_dir() {
            true => super::checkpoint_dir::count_safetensors_and_png(path),
            false => (0, 0),
        };
        let checkpoint_dir = safetensors > 0;
        if kind == InputKind::Tensors && path.is_dir() && !checkpoint_dir {
            // Else the safetensors reader's mmap says "No such device".
            return Err(FrameError::Io {
                path: path.to_path_buf(),
                error: std::io::Error::other(
                    "a directory holding no *.safetensors file, and --kind tensors takes a \
                     safetensors file or a directory of them (a directory of PNGs is committed \
                     as frames)",
                ),
            });
        }
        if kind == InputKind::Auto && checkpoint_dir && png > safetensors {
            // The README's `commit frames/` would else commit the odd safetensors file in it
            // as a checkpoint, the frames left out (a sample image beside shards is not that).
            let dir = path.to_path_buf();
            return Err(FrameError::Ambiguous {
                dir,
                safetensors,
                png,
            });
        }
        Ok(match kind {
            InputKind::Tensors | InputKind::Auto if checkpoint_dir => {
                Input::Directory(path.to_path_buf())
            }
            InputKind::Tensors => Input::Tensors(path.to_path_buf()),
            _ if path.is_dir() => Input::Frames(load_png_dir(path)?),
            _ if is_npy => Input::Frames(load_npy(path)?),
            InputKind::Frames => Input::FramesFile(path.to_path_buf()),
            InputKind::Auto => Input::Tensors(path.to_path_buf()),
        })
    }
}

/// Whether `path` ends in `.EXT`, in any case (`X.NPY` is a `.npy`).
pub fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case(ext))
}

/// A tensor handed to [`Repo::commit_tensors`](super::Repo::commit_tensors).
#[derive(Clone, Debug)]
pub struct TensorInput<'a> {
    /// Name (unique within the snapshot).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<u64>,
    /// Little-endian element bytes, `dtype.byte_len(product(shape))` long.
    pub data: &'a [u8],
}

impl<'a> TensorInput<'a> {
    /// Every tensor of an open safetensors file, in file order, reading its bytes in place.
    pub(crate) fn all_of(file: &'a SafetensorsFile) -> Vec<TensorInput<'a>> {
        file.header()
            .tensors
            .iter()
            .map(|t| TensorInput {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                data: file.tensor_bytes(t),
            })
            .collect()
    }
}

/// A Rust element type with a safetensors dtype, whose values are their little-endian bytes
/// in memory: what [`TensorInput::from_slice`] takes. Sealed: implemented for `u8`..`u64`,
/// `i8`..`i64`, `f32`, `f64`, [`half::f16`] and [`half::bf16`].
pub trait Element: sealed::Sealed + Copy {
    /// The dtype of this element type.
    const DTYPE: Dtype;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! elements {
    ($($t:ty => $d:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: Dtype = Dtype::$d;
        }
    )*};
}
elements!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64,
    i64 => I64, f32 => F32, f64 => F64, half::f16 => F16, half::bf16 => BF16);

impl<'a> TensorInput<'a> {
    /// A tensor of typed elements, without a copy: `TensorInput::from_slice("fc.weight",
    /// vec![256, 64], &weights)` for a `Vec<f32>`, `&[half::bf16]`, `&[i64]`... The shape is
    /// checked against the length at commit ([`Error::BadTensor`](crate::Error::BadTensor)).
    pub fn from_slice<T: Element>(
        name: impl Into<String>,
        shape: Vec<u64>,
        data: &'a [T],
    ) -> TensorInput<'a> {
        // SAFETY: every `Element` is a plain integer or float type without padding or invalid
        // bit patterns, so its memory is `size_of_val(data)` initialized bytes, which live as
        // long as `data`; `u8` needs no alignment. They are the little-endian bytes
        // safetensors stores on a little-endian target (the only kind snapstore builds for,
        // see the assertion below).
        let bytes = unsafe {
            std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data))
        };
        TensorInput {
            name: name.into(),
            dtype: T::DTYPE,
            shape,
            data: bytes,
        }
    }
}

// Typed views read memory as little-endian bytes.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "snapstore needs a little-endian target"
);
