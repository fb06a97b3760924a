//! Frame sequences (image or scientific frames over time): reading them from a directory of PNGs,
//! a `.npy` array or raw bytes, writing them back, coding a group of frames into one object
//! (exactly or within an absolute / relative bound), and measuring what a bounded code lost.
//!
//! A sequence is `[T, H, W, C]`, row-major, little-endian, one [`FrameDtype`] throughout. Groups
//! of consecutive frames are coded independently ([`encode_group`]), so groups encode in parallel
//! and a checkout of frame `i` decodes one group.

mod codec;
mod masks;
mod metrics;
mod npy;
mod pack;
mod predict;
mod reader;
mod writer;

pub use codec::{
    decode_group, encode_group, encode_group_reconstructed, FrameBound, MAX_GROUP_ELEMENTS,
};
pub use metrics::{frame_metrics, FrameMetrics};
pub use npy::parse_npy;
pub use reader::{load_npy, load_png_dir, natural_cmp, FrameSeq};
pub(crate) use writer::frame_file_name;
pub use writer::{write_npy, write_pngs};

use std::fmt;
use std::path::PathBuf;

/// Element type of a frame sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameDtype {
    /// 8-bit unsigned (8-bit PNGs, `|u1`).
    U8,
    /// 16-bit unsigned, little-endian (16-bit PNGs, `<u2`).
    U16,
    /// 32-bit IEEE float, little-endian (`<f4`, simulation output).
    F32,
}

impl FrameDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            FrameDtype::U8 => 1,
            FrameDtype::U16 => 2,
            FrameDtype::F32 => 4,
        }
    }

    /// The code stored in a group object.
    pub(crate) fn code(self) -> u8 {
        match self {
            FrameDtype::U8 => 0,
            FrameDtype::U16 => 1,
            FrameDtype::F32 => 2,
        }
    }

    /// Inverse of [`FrameDtype::code`].
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(FrameDtype::U8),
            1 => Some(FrameDtype::U16),
            2 => Some(FrameDtype::F32),
            _ => None,
        }
    }
}

impl fmt::Display for FrameDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameDtype::U8 => "U8",
            FrameDtype::U16 => "U16",
            FrameDtype::F32 => "F32",
        })
    }
}

/// The shape of one frame: height, width, channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameDims {
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA, or any count for raw arrays).
    pub c: usize,
}

impl FrameDims {
    /// Elements in one frame (`None` on overflow).
    pub fn elements(self) -> Option<usize> {
        self.h.checked_mul(self.w)?.checked_mul(self.c)
    }
}

/// What went wrong reading, writing or checking a frame sequence. Every message names the file
/// (or frame) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// An operating-system error on a file or directory.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error (in the message, not a `source`, so it prints once).
        error: std::io::Error,
    },
    /// A directory holds no frame files.
    #[error("{0}: no *.png file (frames) and no *.safetensors file (a checkpoint directory) in it; subdirectories are not searched")]
    EmptyDir(PathBuf),
    /// A directory read as frames holds no frame files but safetensors files: a checkpoint
    /// directory, which a commit without `--kind frames` takes as one snapshot.
    #[error(
        "{}: no frames, but {count} safetensors file(s) ({}{}): a checkpoint directory; \
         commit it without --kind frames to store it as one snapshot",
        dir.display(), first.join(", "), if *count > first.len() { ", ..." } else { "" }
    )]
    Shards {
        /// The directory.
        dir: PathBuf,
        /// How many `*.safetensors` files it holds.
        count: usize,
        /// The first few, in natural order.
        first: Vec<String>,
    },
    /// A directory holds safetensors files and more PNGs: frames with a stray checkpoint, or a
    /// checkpoint with sample images; the caller says which.
    #[error(
        "{}: {safetensors} *.safetensors file(s) and {png} PNG frames: --kind tensors (Python: \
         kind=\"tensors\") commits it as a checkpoint directory, the PNGs left out; --kind \
         frames (kind=\"frames\") its PNGs as a frame sequence",
        dir.display()
    )]
    Ambiguous {
        /// The directory.
        dir: PathBuf,
        /// Its `*.safetensors` files.
        safetensors: usize,
        /// Its `*.png` files.
        png: usize,
    },
    /// A `*.png` in a frame directory is not a regular file (a FIFO would block the read).
    #[error("{path}: {kind}, not a PNG file: a frame must be a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is ("a FIFO", "a socket", "a device", "a directory").
        kind: &'static str,
    },
    /// A `*.png` frame whose file name is not UTF-8. A snapshot keeps frame names as UTF-8, so
    /// a checkout could not write it back under its name (nor order it as committed);
    /// checkpoint directories refuse such shard names too.
    #[error("{path:?}: a frame's file name must be UTF-8, so that a checkout writes it back under the same name; rename it")]
    NameNotUtf8 {
        /// The file (printed with its bytes escaped).
        path: PathBuf,
    },
    /// A file in a frame directory is not a readable PNG.
    #[error("{path}: not a PNG frame: {reason}")]
    NotPng {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// A frame differs from the first frame in size, bit depth or channel count.
    #[error("{path}: frame does not match the first frame ({first}): {what}")]
    Mismatch {
        /// The first odd frame.
        path: PathBuf,
        /// The first frame's file name.
        first: String,
        /// What differs, e.g. "size 64x48, expected 320x180".
        what: String,
    },
    /// A `.npy` file the reader refuses.
    #[error("{path}: bad .npy file: {problem}")]
    Npy {
        /// The file (`<bytes>` when parsed from memory).
        path: PathBuf,
        /// The problem.
        problem: String,
    },
    /// A shape or length that does not describe a `[T,H,W]` or `[T,H,W,C]` sequence.
    #[error("bad frame shape: {0}")]
    Shape(String),
    /// A frame name that is not a plain file name.
    #[error("frame name {name:?} refused: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A frame range outside the sequence.
    #[error("frame range {start}..{end} is outside the sequence of {t} frames")]
    Range {
        /// First frame asked for.
        start: usize,
        /// One past the last frame asked for.
        end: usize,
        /// Frames in the sequence.
        t: usize,
    },
    /// An output directory holding PNG files the checkout would not replace: read back as a
    /// sequence, they would pass for frames of the snapshot.
    #[error("{dir}: holds {count} PNG file(s) this checkout does not write ({example} among them), which would be read back as frames of it; give an empty or new directory")]
    StaleFrames {
        /// The output directory.
        dir: PathBuf,
        /// How many such files.
        count: usize,
        /// One of them.
        example: String,
    },
    /// The sequence cannot be written in the asked format.
    #[error("cannot write {what}: {reason}")]
    Unsupported {
        /// What was asked for.
        what: String,
        /// Why it cannot be done.
        reason: String,
    },
}
