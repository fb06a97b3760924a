//! Frame sequences as snapshots: one `frames` tensor `[T,H,W(,C)]`, chunked by groups of frames
//! that are coded on their own (keyframe with a spatial predictor, then temporal prediction), so
//! a range of frames decodes only its groups.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use rayon::prelude::*;

use super::commit::{CommitReport, Origin};
use super::plan::{frame_dtype, layout_of, FrameLayout, Layout};
use super::refs::Rev;
use super::{CommitOptions, Repo};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::frames::{
    frame_metrics, FrameDims, FrameDtype, FrameMetrics, FrameSeq, MAX_GROUP_ELEMENTS,
};
use crate::safetensors_io::{canonical_header, SafetensorsFile};
use crate::store::manifest::{Encoding, Manifest};
use crate::Bound;
use crate::TensorInput;

/// Name of the tensor that holds a sequence.
pub const FRAMES_TENSOR: &str = "frames";
/// Metadata key marking a snapshot as a frame sequence.
const KIND_KEY: &str = "snapstore.kind";
/// Metadata key holding the original frame file names (JSON list).
const NAMES_KEY: &str = "snapstore.frame_names";
/// Default frames per group (keyframe interval), for frames neither tiny nor huge: a commit that
/// asks for no group takes more where this many frames hold fewer than 2^16 elements, and
/// fewer where they would pass the group limit (2^28 elements).
pub const DEFAULT_FRAME_GROUP: usize = 30;

/// Fewest elements a default group holds. Every group is its own object, with a chunk header
/// (9 to 12 bytes, even stored exactly), the frame coder's header and stream table (about 100
/// bytes) and a manifest entry: 30 tiny frames do not pay for them (5000 frames of 2x3 U8,
/// 30,000 bytes, stored 31,978 in groups of 30 and 22,518 in one group).
pub(crate) const MIN_DEFAULT_GROUP_ELEMENTS: usize = 1 << 16;

/// Frames per group when none is asked for: [`DEFAULT_FRAME_GROUP`], more where that many frames
/// of `dims` hold fewer than [`MIN_DEFAULT_GROUP_ELEMENTS`], fewer where they would pass
/// [`MAX_GROUP_ELEMENTS`] (10 for 4K RGB). At least 1: a frame that alone is over the limit is
/// refused by [`check_group`].
pub(crate) fn default_frame_group(dims: FrameDims) -> usize {
    group_fitting(dims.elements().unwrap_or(usize::MAX), MAX_GROUP_ELEMENTS)
}

/// The most frames of `frame_elements` a group of at most `cap` elements holds, up to
/// [`DEFAULT_FRAME_GROUP`] or as many as reach [`MIN_DEFAULT_GROUP_ELEMENTS`], at least 1.
fn group_fitting(frame_elements: usize, cap: usize) -> usize {
    let frame = frame_elements.max(1);
    let wanted = DEFAULT_FRAME_GROUP.max(MIN_DEFAULT_GROUP_ELEMENTS.div_ceil(frame));
    (cap / frame).clamp(1, wanted)
}

/// Refuses an asked-for group of `group` frames of `dims` that passes `cap` elements (checked
/// before anything is read or coded), naming the largest group that fits.
fn check_group(dims: FrameDims, group: usize, cap: usize) -> Result<()> {
    let frame = dims.elements().unwrap_or(usize::MAX);
    if frame.checked_mul(group).is_some_and(|n| n <= cap) {
        return Ok(());
    }
    let fits = cap / frame.max(1);
    let advice = if fits == 0 {
        format!("one frame alone has {frame} elements")
    } else {
        format!("use --group {fits} or fewer (or leave --group out to choose it)")
    };
    Err(Error::invalid(
        "frame group",
        format!(
            "{group} frames of {}x{}x{} are over the limit of {cap} elements per group: {advice}",
            dims.h, dims.w, dims.c
        ),
    ))
}

/// True when the snapshot holds a frame sequence: what a frame commit writes, the
/// `snapstore.kind=frames` metadata and one `frames` tensor of U8, U16 or F32 `[T,H,W(,C)]`
/// coded as groups of frames. A checkpoint whose own metadata says `snapstore.kind=frames` (a
/// frame checkout written to safetensors, committed as tensors) is not one.
pub fn is_frames(m: &Manifest) -> bool {
    let marked = |md: Option<&BTreeMap<String, String>>| {
        md.and_then(|md| md.get(KIND_KEY))
            .is_some_and(|k| k == "frames")
    };
    let [entry] = &m.tensors[..] else {
        return false;
    };
    if !marked(m.metadata.as_ref()) || entry.name != FRAMES_TENSOR || layout_of(entry).is_err() {
        return false;
    }
    // A frame commit can reuse the entry of an identical tensor in a checkpoint parent (then not
    // coded as frames); from a safetensors file it marks the metadata but not the file's header,
    // where a checkpoint's metadata is its header's.
    entry.encoding == Encoding::Frames || !marked(header_metadata(&m.header).as_ref())
}

/// The `__metadata__` of a safetensors header (`None` if it has none or does not parse).
pub(crate) fn header_metadata(header: &str) -> Option<BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__")]
        metadata: Option<BTreeMap<String, String>>,
    }
    serde_json::from_str::<Header>(header).ok()?.metadata
}

impl Repo {
    /// Commits a frame sequence: groups of `group` frames (`None`: [`DEFAULT_FRAME_GROUP`], more
    /// for frames so small that a group would hold under 2^16 elements, fewer for frames so large
    /// that it would pass 2^28), each a keyframe plus temporal
    /// deltas, exactly or within `opts.bound` (`abs:E` for any dtype, `rel:E` for F32). Fails up
    /// front on a group over the limit, or on a relative bound (asked for, or the branch's) for
    /// U8 or U16 frames.
    pub fn commit_frames(
        &self,
        seq: &FrameSeq,
        group: Option<usize>,
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
        group: Option<usize>,
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
        let mut seq =
            FrameSeq::from_raw(dtype, &t.shape, frames).map_err(|e| bad(e.to_string()))?;
        seq.source = Some(path.to_path_buf());
        let raw = String::from_utf8(header.raw.clone())
            .map_err(|e| bad(format!("header is not UTF-8: {e}")))?;
        let metadata = header.metadata.clone().unwrap_or_default();
        self.commit_sequence(&seq, group, opts, metadata, Some(raw))
    }

    /// Commits `seq` with the user's `metadata` (and, from a file, its `header` verbatim).
    fn commit_sequence(
        &self,
        seq: &FrameSeq,
        group: Option<usize>,
        opts: &CommitOptions,
        mut metadata: BTreeMap<String, String>,
        header: Option<String>,
    ) -> Result<CommitReport> {
        let group = match group {
            Some(0) => return Err(Error::invalid("frame group", "must be at least 1")),
            Some(g) => g,
            None => default_frame_group(seq.dims()),
        };
        // Before anything is read or coded; the default is 1 frame for a frame alone over the
        // limit (before, that was refused only by the coder, as a chunk that failed to decode).
        check_group(seq.dims(), group.min(seq.t.max(1)), MAX_GROUP_ELEMENTS)?;
        self.check_frame_bound(seq, opts)?;
        let dtype = match seq.dtype {
            FrameDtype::U8 => Dtype::U8,
            FrameDtype::U16 => Dtype::U16,
            FrameDtype::F32 => Dtype::F32,
        };
        let shape = seq.shape();
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
        let origin = Origin {
            metadata: Some(metadata),
            header,
            ..Origin::default()
        };
        self.commit_inner(
            &[input],
            origin,
            opts,
            Layout::Frames(layout),
            &|_, _| {},
            &|| Ok(()),
        )
    }

    /// Refuses, before anything is coded, a relative bound on U8 or U16 frames: asked for, or
    /// the branch's bound (`config bound.BRANCH`) when none is asked for.
    fn check_frame_bound(&self, seq: &FrameSeq, opts: &CommitOptions) -> Result<()> {
        if seq.dtype == FrameDtype::F32 {
            return Ok(());
        }
        let (src, dtype) = (seq.describe_source(), seq.dtype);
        match opts.bound {
            Some(b @ Bound::Rel(_)) => Err(Error::invalid(
                "bound",
                format!(
                    "{src}: {dtype} frames cannot take a relative bound ({b}): rel needs F32 \
                     frames; use --bound abs:E (E in {dtype} steps) or --bound lossless"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                let branch = match &opts.branch {
                    Some(b) => b.clone(),
                    None => self.head_branch()?,
                };
                match self.branch_bound(&branch)? {
                    b @ Bound::Rel(_) => Err(Error::invalid(
                        "bound",
                        format!(
                            "{src}: {dtype} frames cannot take branch {branch}'s bound {b} \
                             (config bound.{branch}; rel needs F32 frames): commit them with \
                             --bound lossless or --bound abs:E, or change the branch's bound"
                        ),
                    )),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Checks out frames `range` (all when `None`) of a sequence snapshot, decoding only the
    /// groups that hold them; each frame keeps its committed name, or is named by its index in
    /// the sequence.
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
        if range.start == range.end {
            return Err(Error::invalid(
                "frame range",
                format!(
                    "{}..{} is an empty range (A..B runs from A up to, not including, B)",
                    range.start, range.end
                ),
            ));
        }
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
        seq.names = match names.len() == t {
            true => names[range].to_vec(),
            // Frames 10..20 of a sequence committed without names (a .npy) are written as
            // frame_00010.png...: the files say which frames of the sequence they are.
            false => range.map(crate::frames::frame_file_name).collect(),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Audit finding 11: the default group of 30 frames refused 4K RGB video (24.9 M elements a
    /// frame, a group at most 2^28).
    #[test]
    fn the_default_group_fits_the_limit() {
        let uhd = FrameDims {
            h: 2160,
            w: 3840,
            c: 3,
        };
        assert_eq!(default_frame_group(uhd), 10);
        assert!(check_group(uhd, 10, MAX_GROUP_ELEMENTS).is_ok());
        let small = FrameDims {
            h: 180,
            w: 320,
            c: 3,
        };
        assert_eq!(default_frame_group(small), DEFAULT_FRAME_GROUP);
        // A small cap stands for the real one: 7 frames of 12 elements fit in 90.
        assert_eq!(group_fitting(12, 90), 7);
        assert_eq!(group_fitting(12, 12 * 100), 100);
        assert_eq!(group_fitting(1000, 90), 1);
    }

    /// Audit F6: tiny frames in groups of 30 stored more than their raw bytes, each group paying
    /// its own framing; a default group holds at least `MIN_DEFAULT_GROUP_ELEMENTS` instead.
    #[test]
    fn the_default_group_of_tiny_frames_holds_enough_elements() {
        let tiny = FrameDims { h: 2, w: 3, c: 1 };
        assert_eq!(
            default_frame_group(tiny),
            MIN_DEFAULT_GROUP_ELEMENTS.div_ceil(6)
        );
        // 30 frames of 64x64 RGB pass the floor already.
        let thumb = FrameDims { h: 64, w: 64, c: 3 };
        assert_eq!(default_frame_group(thumb), DEFAULT_FRAME_GROUP);
        // At the floor: 30 frames of 2185 elements reach 2^16; of 2184 they do not, so 31.
        assert_eq!(group_fitting(2185, MAX_GROUP_ELEMENTS), 30);
        assert_eq!(group_fitting(2184, MAX_GROUP_ELEMENTS), 31);
    }

    /// A manifest of one tensor `name` with `metadata` and the file `header`.
    fn manifest(name: &str, encoding: Encoding, marked: bool, header_marked: bool) -> Manifest {
        let mut m = Manifest::minimal();
        let kind = BTreeMap::from([(KIND_KEY.to_string(), "frames".to_string())]);
        m.metadata = marked.then(|| kind.clone());
        let header_meta = if header_marked {
            r#""__metadata__":{"snapstore.kind":"frames"},"#
        } else {
            ""
        };
        m.header = format!(r#"{{{header_meta}"{name}":{{"dtype":"U8","shape":[2,3,4]}}}}"#);
        m.tensors = vec![crate::store::manifest::TensorEntry {
            shape: vec![2, 3, 4],
            encoding,
            ..crate::store::manifest::TensorEntry::minimal(name, 24)
        }];
        m
    }

    /// Audit finding 11: a checkpoint whose metadata says `snapstore.kind=frames` was taken for
    /// a frame sequence.
    #[test]
    fn frames_are_told_by_what_a_frame_commit_writes() {
        assert!(is_frames(&manifest("frames", Encoding::Frames, true, true)));
        // A checkpoint with the user's marker: its header says so too, its tensor is not frames.
        assert!(!is_frames(&manifest(
            "frames",
            Encoding::Planes,
            true,
            true
        )));
        assert!(!is_frames(&manifest(
            "frames",
            Encoding::Frames,
            false,
            false
        )));
        assert!(!is_frames(&manifest("x", Encoding::Frames, true, true)));
        let mut two = manifest("frames", Encoding::Frames, true, true);
        two.tensors.push(two.tensors[0].clone());
        assert!(!is_frames(&two));
        // Stored before frame commits stopped reusing a checkpoint's entry: a frame commit of a
        // safetensors file marks the metadata but not the file's header.
        assert!(is_frames(&manifest(
            "frames",
            Encoding::Planes,
            true,
            false
        )));
    }

    #[test]
    fn an_asked_for_group_over_the_limit_is_refused_naming_what_fits() {
        let dims = FrameDims { h: 2, w: 3, c: 2 };
        assert!(check_group(dims, 7, 90).is_ok());
        let err = check_group(dims, 8, 90).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid frame group: 8 frames of 2x3x2 are over the limit of 90 elements per \
             group: use --group 7 or fewer (or leave --group out to choose it)"
        );
        let err = check_group(dims, 1, 10).unwrap_err().to_string();
        assert!(err.ends_with("one frame alone has 12 elements"), "{err}");
        let uhd = FrameDims {
            h: 2160,
            w: 3840,
            c: 3,
        };
        let err = check_group(uhd, 30, MAX_GROUP_ELEMENTS).unwrap_err();
        assert!(err.to_string().contains("use --group 10 or fewer"), "{err}");
    }
}
