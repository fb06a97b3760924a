//! The planning rules of a commit, in one place: the commit follows them, and the error-bound
//! search follows them to code its candidates, so the evaluator scores exactly what checkout of
//! the commit will return. They decide the chunk size, the keyframe interval in force, the
//! bound each tensor is coded under, whether the parent's entry of a tensor is reused as is, and
//! whether a tensor is coded against it (a delta) or starts a new chain (a keyframe).

use crate::codec::chunk;
use crate::codec::lossy;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::frames::{FrameDims, FrameDtype};
use crate::store::manifest::{Bound, Encoding, Manifest, TensorEntry};
use crate::store::object_id::ObjectId;

use super::input::TensorInput;
use super::DEFAULT_KEYFRAME_EVERY;

/// Fails when `chunk_bytes` is outside 4 KiB..128 MiB (what a chunk object holds).
pub(crate) fn check_chunk_bytes(chunk_bytes: usize) -> Result<()> {
    if !(4096..=chunk::MAX_CHUNK_BYTES / 2).contains(&chunk_bytes) {
        return Err(Error::invalid(
            "chunk size",
            format!("{chunk_bytes} bytes is outside 4 KiB..128 MiB"),
        ));
    }
    Ok(())
}

/// The keyframe interval in force: the commit's option, else the repository's
/// `keyframe_every` setting (read only when needed), else [`DEFAULT_KEYFRAME_EVERY`]; at
/// least 1.
pub(crate) fn keyframe_every(
    option: Option<u32>,
    setting: impl FnOnce() -> Result<Option<String>>,
) -> Result<u32> {
    Ok(match option {
        Some(k) => k,
        None => setting()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_KEYFRAME_EVERY),
    }
    .max(1))
}

/// How a frame sequence is laid out and grouped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameLayout {
    pub dims: FrameDims,
    pub dtype: FrameDtype,
    /// Frames per group (keyframe interval).
    pub group: usize,
}

impl FrameLayout {
    /// Bytes of one group of frames.
    pub(crate) fn group_bytes(&self) -> usize {
        self.group * self.dims.elements().unwrap_or(0) * self.dtype.size()
    }
}

/// The frame element type of a tensor dtype (U8, U16 or F32).
pub(super) fn frame_dtype(d: Dtype) -> Option<FrameDtype> {
    match d {
        Dtype::U8 => Some(FrameDtype::U8),
        Dtype::U16 => Some(FrameDtype::U16),
        Dtype::F32 => Some(FrameDtype::F32),
        _ => None,
    }
}

/// Frame shape and element type of a stored `frames` tensor.
pub(super) fn layout_of(
    entry: &TensorEntry,
) -> std::result::Result<(FrameDims, FrameDtype), String> {
    let dtype = frame_dtype(entry.dtype)
        .ok_or_else(|| format!("{} frames are not supported", entry.dtype))?;
    let (h, w, c) = match entry.shape[..] {
        [_, h, w] => (h, w, 1),
        [_, h, w, c] => (h, w, c),
        _ => {
            return Err(format!(
                "frame tensor of shape {:?} is not [T,H,W(,C)]",
                entry.shape
            ))
        }
    };
    Ok((
        FrameDims {
            h: h as usize,
            w: w as usize,
            c: c as usize,
        },
        dtype,
    ))
}

/// Whether a checkpoint tensor is coded under the snapshot's bound: floats the lossy codec
/// supports, of more than one element. A scalar (Adam's step, a loss scale, a learned
/// temperature) is kept exactly: a training loop reads it as a count or a factor, not as one
/// weight among many, and exactness costs a few bytes.
pub(crate) fn takes_bound(dtype: Dtype, shape: &[u64]) -> bool {
    lossy::supports(dtype) && shape.iter().product::<u64>() > 1
}

/// What a snapshot holds, and so how its tensors are cut and coded.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Layout {
    /// Tensors: chunks of the commit's chunk size, coded against the parent's tensors.
    Tensors,
    /// One frame sequence: chunks of one group of frames each, self-contained.
    Frames(FrameLayout),
}

impl Layout {
    /// Bytes per chunk: the commit's chunk size, or one group of frames.
    pub(crate) fn chunk_size(&self, chunk_bytes: usize) -> usize {
        match self {
            Layout::Tensors => chunk_bytes,
            Layout::Frames(f) => f.group_bytes(),
        }
    }

    /// The bound tensor `t` is coded under in a snapshot under `bound`: a checkpoint tensor
    /// that does not [`takes_bound`] is stored exactly (frames of every dtype take the bound).
    pub(crate) fn tensor_bound(&self, t: &TensorInput, bound: Bound) -> Bound {
        match self {
            Layout::Tensors if !takes_bound(t.dtype, &t.shape) => Bound::Lossless,
            _ => bound,
        }
    }

    /// Whether the parent's entry for the same bytes may stand in this snapshot: a frame
    /// sequence takes only an entry coded as frames, so every new frame snapshot has one
    /// (`is_frames` tells it from a checkpoint by that).
    pub(crate) fn may_reuse(&self, parent: &TensorEntry) -> bool {
        !matches!(self, Layout::Frames(_)) || parent.encoding == Encoding::Frames
    }

    /// Whether tensors are coded against the parent's (and the decoded tip kept for the next
    /// commit): groups of frames are self-contained.
    pub(crate) fn builds_on_parent(&self) -> bool {
        matches!(self, Layout::Tensors)
    }

    /// How the entry of a tensor coded under `bound`, against a reference or not, names its
    /// encoding.
    pub(crate) fn encoding(&self, bound: Bound, delta: bool) -> Encoding {
        match (self, bound, delta) {
            (Layout::Frames(_), _, _) => Encoding::Frames,
            (Layout::Tensors, Bound::Lossless, true) => Encoding::ExactDelta,
            (Layout::Tensors, Bound::Lossless, false) => Encoding::Planes,
            (Layout::Tensors, _, _) => Encoding::LogDelta,
        }
    }
}

/// How one tensor stands against the parent snapshot.
pub(crate) struct TensorPlan<'m> {
    /// The parent's tensor of the same name, dtype and shape.
    prev: Option<&'m TensorEntry>,
    /// `prev` was committed from these very bytes.
    same_source: bool,
    /// A delta against `prev` continues its chain (else the tensor starts a new one).
    continues: bool,
}

impl<'m> TensorPlan<'m> {
    /// Plans `t` against `parent` (if any): `lossless` says whether it is coded exactly, `hash`
    /// gives the blake3 of its bytes (asked for only when the parent has the tensor).
    pub(crate) fn new(
        parent: Option<&'m Manifest>,
        t: &TensorInput,
        lossless: bool,
        keyframe_every: u32,
        hash: impl FnOnce() -> ObjectId,
    ) -> TensorPlan<'m> {
        let prev = parent
            .and_then(|m| m.tensor(&t.name))
            .filter(|p| p.dtype == t.dtype && p.shape == t.shape);
        TensorPlan {
            prev,
            same_source: prev.is_some_and(|p| p.source_hash == hash()),
            continues: prev
                .is_some_and(|p| p.continues_chain(t.data.len() as u64, keyframe_every, lossless)),
        }
    }

    /// The bound under which the parent's entry can be reused as is: it holds these bytes.
    pub(crate) fn reusable_under(&self) -> Option<Bound> {
        self.prev.filter(|_| self.same_source).map(|p| p.bound)
    }

    /// The parent's entry to reuse under `bound`: same bytes, stored under `bound` or a
    /// tighter one (an exact copy is reused by a lossy commit rather than coded again, lossily
    /// and at a cost).
    pub(crate) fn unchanged(&self, bound: Bound) -> Option<&'m TensorEntry> {
        self.prev
            .filter(|p| self.same_source && p.bound.meets(bound))
    }

    /// The parent's entry to code against, unless the chain would pass the keyframe interval
    /// (then this tensor starts a new chain).
    pub(crate) fn reference(&self) -> Option<&'m TensorEntry> {
        self.prev.filter(|_| self.continues)
    }
}
