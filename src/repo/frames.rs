//! Frame sequences as snapshots: one `frames` tensor `[T,H,W(,C)]`, chunked by groups of frames
//! that are coded on their own (keyframe with a spatial predictor, then temporal prediction), so
//! a range of frames decodes only its groups.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use rayon::prelude::*;

use super::commit::CommitReport;
use super::plan::{frame_dtype, layout_of, FrameLayout, Layout};
use super::refs::Rev;
use super::{CommitOptions, Repo};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::frames::{frame_metrics, FrameDtype, FrameMetrics, FrameSeq};
use crate::safetensors_io::{canonical_header, SafetensorsFile};
use crate::store::manifest::Manifest;
use crate::TensorInput;

/// Name of the tensor that holds a sequence.
pub const FRAMES_TENSOR: &str = "frames";
/// Metadata key marking a snapshot as a frame sequence.
const KIND_KEY: &str = "snapstore.kind";
/// Metadata key holding the original frame file names (JSON list).
const NAMES_KEY: &str = "snapstore.frame_names";
/// Default frames per group (keyframe interval).
pub const DEFAULT_FRAME_GROUP: usize = 30;

/// True when the snapshot holds a frame sequence.
pub fn is_frames(m: &Manifest) -> bool {
    m.metadata
        .as_ref()
        .and_then(|md| md.get(KIND_KEY))
        .is_some_and(|k| k == "frames")
}

impl Repo {
    /// Commits a frame sequence: groups of `group` frames, each a keyframe plus temporal deltas,
    /// exactly or within `opts.bound` (`abs:E` for any dtype, `rel:E` for F32).
    pub fn commit_frames(
        &self,
        seq: &FrameSeq,
        group: usize,
        opts: &CommitOptions,
    ) -> Result<CommitReport> {
        self.commit_sequence(seq, group, opts, BTreeMap::new(), None)
    }

    /// Commits a safetensors file holding one `[T,H,W(,C)]` U8, U16 or F32 tensor as a frame
    /// sequence. The file's header (its `__metadata__` and tensor name included) is kept, so a
    /// lossless checkout to a `.safetensors` file reproduces it byte for byte. Fails, naming the
    /// file, when it is not a valid safetensors file or not one such tensor.
    pub fn commit_frames_file(
        &self,
        path: impl AsRef<Path>,
        group: usize,
        opts: &CommitOptions,
    ) -> Result<CommitReport> {
        let path = path.as_ref();
        let file = SafetensorsFile::open(path)?;
        let header = file.header();
        let bad = |problem: String| {
            Error::invalid("frame sequence", format!("{}: {problem}", path.display()))
        };
        let [t] = &header.tensors[..] else {
            return Err(bad(format!(
                "a frame sequence file must hold exactly one [T,H,W(,C)] tensor, not {}",
                header.tensors.len()
            )));
        };
        let dtype = frame_dtype(t.dtype).ok_or_else(|| {
            bad(format!(
                "frames of {} are not supported (U8, U16 or F32)",
                t.dtype
            ))
        })?;
        let frames = file.tensor_bytes(t).to_vec();
        // The copy is committed: it must be one version of the file.
        file.check_unchanged("stored")?;
        let seq = FrameSeq::from_raw(dtype, &t.shape, frames).map_err(|e| bad(e.to_string()))?;
        let raw = String::from_utf8(header.raw.clone())
            .map_err(|e| bad(format!("header is not UTF-8: {e}")))?;
        let metadata = header.metadata.clone().unwrap_or_default();
        self.commit_sequence(&seq, group, opts, metadata, Some(raw))
    }

    /// Commits `seq` with the user's `metadata` (and, from a file, its `header` verbatim).
    fn commit_sequence(
        &self,
        seq: &FrameSeq,
        group: usize,
        opts: &CommitOptions,
        mut metadata: BTreeMap<String, String>,
        header: Option<String>,
    ) -> Result<CommitReport> {
        if group == 0 {
            return Err(Error::invalid("frame group", "must be at least 1"));
        }
        let dtype = match seq.dtype {
            FrameDtype::U8 => Dtype::U8,
            FrameDtype::U16 => Dtype::U16,
            FrameDtype::F32 => Dtype::F32,
        };
        let shape: Vec<u64> = if seq.c == 1 {
            vec![seq.t as u64, seq.h as u64, seq.w as u64]
        } else {
            vec![seq.t as u64, seq.h as u64, seq.w as u64, seq.c as u64]
        };
        metadata.insert(KIND_KEY.to_string(), "frames".to_string());
        if !seq.names.is_empty() {
            metadata.insert(
                NAMES_KEY.to_string(),
                serde_json::to_string(&seq.names).expect("strings serialize"),
            );
        }
        let specs = [(FRAMES_TENSOR.to_string(), dtype, shape.clone())];
        let (raw, _) =
            canonical_header(Some(&metadata), &specs).map_err(|problem| Error::BadTensor {
                tensor: FRAMES_TENSOR.into(),
                problem: Box::new(problem),
            })?;
        let input = TensorInput {
            name: FRAMES_TENSOR.into(),
            dtype,
            shape,
            data: &seq.data,
        };
        let layout = FrameLayout {
            dims: seq.dims(),
            dtype: seq.dtype,
            group: group.min(seq.t.max(1)),
        };
        let header =
            header.unwrap_or_else(|| String::from_utf8(raw).expect("canonical header is UTF-8"));
        self.commit_inner(
            &[input],
            Some(metadata),
            header,
            None,
            opts,
            Layout::Frames(layout),
            &|_, _| {},
            &|| Ok(()),
        )
    }

    /// Checks out frames `range` (all when `None`) of a sequence snapshot, decoding only the
    /// groups that hold them.
    pub fn checkout_frames<'a>(
        &self,
        rev: impl Into<Rev<'a>>,
        range: Option<Range<usize>>,
    ) -> Result<FrameSeq> {
        let p = self.prepare_checkout(rev.into(), Some(&[FRAMES_TENSOR.to_string()]))?;
        if !is_frames(&p.manifest) {
            return Err(Error::invalid(
                "snapshot",
                format!("{} is not a frame sequence", p.snapshot.short()),
            ));
        }
        let entry = &p.selected[0];
        let (dims, dtype) = layout_of(entry).map_err(|e| Error::decode("frame sequence", e))?;
        let t = entry.shape[0] as usize;
        let range = range.unwrap_or(0..t);
        if range.start > range.end {
            return Err(Error::invalid(
                "frame range",
                format!(
                    "{}..{} is reversed (A..B runs from A up to, not including, B)",
                    range.start, range.end
                ),
            ));
        }
        if range.end > t {
            return Err(Error::invalid(
                "frame range",
                format!(
                    "{}..{} is outside the sequence's {t} frames (0..{t}; B is not included)",
                    range.start, range.end
                ),
            ));
        }
        let frame_bytes = dims.elements().unwrap_or(0) * dtype.size();
        let (first, last) = (range.start * frame_bytes, range.end * frame_bytes);
        let chunk = entry.chunk_bytes.max(1) as usize;
        let chunks: Vec<usize> = if first == last {
            Vec::new()
        } else {
            (first / chunk..last.div_ceil(chunk)).collect()
        };
        let decoded: Vec<Vec<u8>> = chunks
            .par_iter()
            .map(|&i| p.reader.decode_chunk(entry, i))
            .collect::<Result<_>>()?;
        let base = chunks.first().map_or(0, |&i| i * chunk);
        let all = decoded.concat();
        let data = all
            .get(first - base..last - base)
            .unwrap_or_default()
            .to_vec();
        if range == (0..t) && crate::ObjectId::of(&data) != entry.hash {
            return Err(Error::HashMismatch {
                tensor: entry.name.clone(),
                snapshot: p.snapshot.hex(),
            });
        }
        let mut shape = entry.shape.clone();
        shape[0] = range.len() as u64;
        let mut seq = FrameSeq::from_raw(dtype, &shape, data)
            .map_err(|e| Error::decode("frame sequence", e.to_string()))?;
        let names: Vec<String> = p
            .manifest
            .metadata
            .as_ref()
            .and_then(|m| m.get(NAMES_KEY))
            .and_then(|n| serde_json::from_str(n).ok())
            .unwrap_or_default();
        if names.len() == t {
            seq.names = names[range].to_vec();
        }
        Ok(seq)
    }

    /// Per-frame max abs error and PSNR of a sequence snapshot against the original frames.
    pub fn diff_frames<'a>(
        &self,
        rev: impl Into<Rev<'a>>,
        original: &FrameSeq,
    ) -> Result<Vec<FrameMetrics>> {
        let stored = self.checkout_frames(rev, None)?;
        if (stored.t, stored.h, stored.w, stored.c, stored.dtype)
            != (
                original.t,
                original.h,
                original.w,
                original.c,
                original.dtype,
            )
        {
            return Err(Error::invalid(
                "frames",
                format!(
                    "the snapshot holds {}x{}x{}x{} {} frames, the original {}x{}x{}x{} {}",
                    stored.t,
                    stored.h,
                    stored.w,
                    stored.c,
                    stored.dtype,
                    original.t,
                    original.h,
                    original.w,
                    original.c,
                    original.dtype
                ),
            ));
        }
        frame_metrics(
            original.dtype,
            original.dims(),
            &original.data,
            &stored.data,
        )
        .map_err(|e| Error::decode("frame metrics", e))
    }
}
