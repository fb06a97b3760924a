//! The planning rules of a commit, in one place: the commit follows them, and the error-bound
//! search follows them to code its candidates, so the evaluator scores exactly what checkout of
//! the commit will return. They decide the chunk size, the keyframe interval in force, the
//! bound each tensor is coded under, whether the parent's entry of a tensor is reused as is, and
//! whether a tensor is coded against it (a delta) or starts a new chain (a keyframe).

use crate::codec::chunk;
use crate::error::{Error, Result};
use crate::store::manifest::{Bound, Manifest, TensorEntry};
use crate::store::object_id::ObjectId;

use super::commit::TensorInput;
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

    /// The parent's entry to reuse under `bound`: same bytes, same bound.
    pub(crate) fn unchanged(&self, bound: Bound) -> Option<&'m TensorEntry> {
        self.prev.filter(|p| self.same_source && p.bound == bound)
    }

    /// The parent's entry to code against, unless the chain would pass the keyframe interval
    /// (then this tensor starts a new chain).
    pub(crate) fn reference(&self) -> Option<&'m TensorEntry> {
        self.prev.filter(|_| self.continues)
    }
}
