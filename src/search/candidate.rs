//! What a commit under a candidate bound would store and reconstruct, without committing.
//!
//! [`Prepared`] plans a snapshot with the commit's own planner (`src/repo/plan.rs`): the parent
//! is the branch tip (or the given snapshot), a tensor is coded against the parent's
//! *reconstructed* tensor when the parent has it with the same dtype and shape and the chain is
//! shorter than the keyframe interval, else as a keyframe; a tensor whose bytes equal the
//! parent's source under the same bound is reused for free; tensors of non-float dtypes are
//! always exact. Chunks are cut like the commit cuts them and coded in parallel with the same
//! codec calls, so the reconstruction handed to the evaluator is bit for bit what checkout of
//! that commit returns.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use super::SearchOptions;
use crate::codec::chunk;
use crate::codec::lossy::{Basis, QuantEngine, Rounding};
use crate::codec::CodecChoice;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::repo::{
    chunk_count, chunk_range, code_chunk, exact_may_win, plan, CheckedOutTensor, Interrupt, Repo,
    TensorInput, TensorPlan,
};
use crate::store::manifest::{Bound, Manifest};
use crate::store::object_id::ObjectId;

/// Framing of one lossy chunk object (header, five section headers, the parameter section),
/// added to every estimate.
const CHUNK_OVERHEAD: f64 = 40.0;
/// Estimated stored bytes per exception beyond the element itself (its position varint).
const EXCEPTION_EXTRA: f64 = 2.0;

/// How one tensor of the candidate snapshot is stored.
struct CandidatePlan {
    /// Coded within the bound (a float dtype the lossy codec supports).
    lossy: bool,
    /// The parent's reconstructed tensor, when the commit would code against it.
    reference: Option<Vec<u8>>,
    /// The parent entry's bound (whether a delta anchors depends on the candidate bound).
    parent_bound: Option<Bound>,
    /// The parent holds these exact source bytes under this bound: the commit reuses its entry
    /// (no new bytes; the reconstruction is the parent's).
    unchanged: Option<(Bound, Vec<u8>)>,
}

/// A snapshot ready to be coded under any candidate bound.
pub(crate) struct Prepared<'a> {
    pub(crate) inputs: Vec<TensorInput<'a>>,
    plans: Vec<CandidatePlan>,
    /// `(tensor, chunk)` of every lossy tensor's chunks.
    jobs: Vec<(usize, usize)>,
    chunk_bytes: usize,
    codec: CodecChoice,
    rounding: Rounding,
    /// Stored bytes of the tensors coded exactly whatever the bound (each distinct chunk once).
    pub(crate) fixed_bytes: u64,
    /// Those chunks' ids: a candidate's chunk equal to one of them adds nothing.
    fixed_ids: HashSet<ObjectId>,
    /// Tensor bytes of the snapshot.
    pub(crate) logical_bytes: u64,
    /// The parent snapshot, if any.
    pub(crate) parent: Option<ObjectId>,
    /// The repository's quantizer, so candidates are coded as the commit will code them.
    engine: Arc<dyn QuantEngine>,
    /// The caller's flag: coding a candidate stops at the next chunk once it is set.
    interrupt: Interrupt,
}

/// Estimated sizes from one statistics pass.
pub(crate) struct Estimates {
    /// Estimated stored bytes of the whole snapshot, per candidate.
    pub(crate) bytes: Vec<f64>,
    /// Real stored bytes of the whole snapshot coded losslessly.
    pub(crate) lossless_bytes: u64,
}

/// One candidate coded for real.
pub(crate) struct Coded {
    /// Stored bytes of the whole snapshot (chunk objects, as `CommitReport::stored_bytes`).
    pub(crate) stored_bytes: u64,
    /// The tensors checkout of that commit would return, in input order.
    pub(crate) tensors: Vec<CheckedOutTensor>,
}

impl<'a> Prepared<'a> {
    /// Plans `inputs` against the parent `parent` (a ref expression) or, when `None`, the tip of
    /// `branch` (HEAD's branch when that is `None` too; no parent on an empty branch).
    pub(crate) fn new(
        repo: &Repo,
        inputs: Vec<TensorInput<'a>>,
        parent: Option<&str>,
        branch: Option<&str>,
        opts: &SearchOptions,
    ) -> Result<Self> {
        let commit = &opts.commit;
        let (chunk_bytes, codec, rounding) = (commit.chunk_bytes, commit.codec, commit.rounding);
        plan::check_chunk_bytes(chunk_bytes)?;
        crate::repo::validate_inputs(&inputs)?;
        let keyframe_every =
            plan::keyframe_every(commit.keyframe_every, || repo.config_get("keyframe_every"))?;
        // The parent, resolved once, with its manifest read once (the checkout below reuses it).
        let shown = match parent {
            Some(spec) => Some(repo.show(spec)?),
            None => {
                let branch = match branch {
                    Some(b) => b.to_string(),
                    None => repo.head_branch()?,
                };
                let tip = repo
                    .list_refs()?
                    .0
                    .into_iter()
                    .find(|(name, _)| *name == branch)
                    .map(|(_, id)| id);
                tip.map(|id| repo.show(id)).transpose()?
            }
        };
        let parent_id = shown.as_ref().map(|(id, _)| *id);
        let manifest: Option<Arc<Manifest>> = shown.as_ref().map(|(_, m)| m.clone());

        // Which parent tensors are needed, and how each tensor is stored.
        struct Pre {
            lossy: bool,
            use_reference: bool,
            parent_bound: Option<Bound>,
            unchanged: Option<Bound>,
        }
        let pre: Vec<Pre> = inputs
            .par_iter()
            .map(|t| {
                // Candidates code what a commit codes under a bound so, the rest exactly.
                let lossy = plan::takes_bound(t.dtype, &t.shape);
                let hash = || ObjectId::from(blake3::hash(t.data));
                let plan = TensorPlan::new(manifest.as_deref(), t, !lossy, keyframe_every, hash);
                Pre {
                    lossy,
                    use_reference: plan.reference().is_some(),
                    parent_bound: plan.reference().map(|p| p.bound),
                    // A non-float tensor is only ever stored exactly.
                    unchanged: plan
                        .reusable_under()
                        .filter(|b| lossy || *b == Bound::Lossless),
                }
            })
            .collect();
        let wanted: Vec<String> = inputs
            .iter()
            .zip(&pre)
            .filter(|(_, p)| p.use_reference || p.unchanged.is_some())
            .map(|(t, _)| t.name.clone())
            .collect();
        let mut parent_data: HashMap<String, Vec<u8>> = HashMap::new();
        if let (Some(shown), false) = (shown, wanted.is_empty()) {
            for t in repo.checkout(shown, Some(&wanted))?.tensors {
                parent_data.insert(t.name, t.data);
            }
        }
        let mut plans = Vec::with_capacity(inputs.len());
        for (t, p) in inputs.iter().zip(pre) {
            let data = parent_data.remove(&t.name);
            let (reference, unchanged) = match (p.use_reference, p.unchanged) {
                (true, Some(b)) => (data.clone(), data.map(|d| (b, d))),
                (true, None) => (data, None),
                (false, Some(b)) => (None, data.map(|d| (b, d))),
                (false, None) => (None, None),
            };
            plans.push(CandidatePlan {
                parent_bound: p.parent_bound,
                lossy: p.lossy,
                reference,
                unchanged,
            });
        }
        let jobs: Vec<(usize, usize)> = plans
            .iter()
            .enumerate()
            .filter(|(_, p)| p.lossy)
            .flat_map(|(t, _)| {
                (0..chunk_count(inputs[t].data.len(), chunk_bytes)).map(move |i| (t, i))
            })
            .collect();
        let lossy_bytes: u64 = plans
            .iter()
            .zip(&inputs)
            .filter(|(p, _)| p.lossy)
            .map(|(_, t)| t.data.len() as u64)
            .sum();
        let mut prepared = Prepared {
            logical_bytes: inputs.iter().map(|t| t.data.len() as u64).sum(),
            inputs,
            plans,
            jobs,
            chunk_bytes,
            codec,
            rounding,
            fixed_bytes: 0,
            fixed_ids: HashSet::new(),
            parent: parent_id,
            engine: repo.encode_engine(lossy_bytes),
            interrupt: repo.interrupt(),
        };
        let fixed = prepared.exact_chunks(|p| !p.lossy);
        prepared.fixed_bytes = fixed.values().sum();
        prepared.fixed_ids = fixed.into_keys().collect();
        Ok(prepared)
    }

    /// The distinct chunk objects (id, stored bytes) of the tensors `which` selects, all coded
    /// exactly: a pack holds each once (15 BatchNorm counters of one value are one chunk).
    fn exact_chunks(
        &self,
        which: impl Fn(&CandidatePlan) -> bool + Sync,
    ) -> HashMap<ObjectId, u64> {
        let jobs: Vec<(usize, usize)> = self
            .plans
            .iter()
            .enumerate()
            .filter(|(_, p)| which(p))
            .filter(|(_, p)| !matches!(p.unchanged, Some((Bound::Lossless, _))))
            .flat_map(|(t, _)| {
                (0..chunk_count(self.inputs[t].data.len(), self.chunk_bytes)).map(move |i| (t, i))
            })
            .collect();
        jobs.par_iter()
            .map(|&(t, i)| {
                let obj = self.exact_chunk(t, i);
                (ObjectId::of(&obj), obj.len() as u64)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect()
    }

    fn exact_chunk(&self, t: usize, i: usize) -> Vec<u8> {
        let input = &self.inputs[t];
        let range = chunk_range(input.data.len(), self.chunk_bytes, i);
        let reference = self.plans[t].reference.as_ref().map(|r| &r[range.clone()]);
        chunk::encode_lossless(
            &input.data[range],
            input.dtype.unit_bytes(),
            input.dtype.is_float(),
            reference,
            self.codec,
        )
    }

    /// The original tensors, as the evaluator sees them.
    pub(crate) fn original(&self) -> Vec<CheckedOutTensor> {
        self.inputs
            .iter()
            .map(|t| CheckedOutTensor {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                data: t.data.to_vec(),
            })
            .collect()
    }

    /// One statistics pass: for every candidate, the order-0 entropy of the codes the commit
    /// would produce, plus its exceptions; also the exact coding of the lossy tensors (the
    /// lossless ratio, and what a chunk falls back to when it has too many exceptions).
    pub(crate) fn estimate(&self, candidates: &[f64]) -> Estimates {
        let per_job: Vec<(Option<ObjectId>, u64, Vec<f64>)> = self
            .jobs
            .par_iter()
            .map(|&(t, i)| self.estimate_chunk(t, i, candidates))
            .collect();
        let mut bytes = vec![self.fixed_bytes as f64; candidates.len()];
        let mut lossless = self.fixed_bytes;
        let mut seen = self.fixed_ids.clone();
        for (exact_id, exact, est) in per_job {
            if exact_id.is_some_and(|id| seen.insert(id)) {
                lossless += exact;
            }
            for (b, e) in bytes.iter_mut().zip(est) {
                *b += e;
            }
        }
        Estimates {
            bytes,
            lossless_bytes: lossless,
        }
    }

    fn estimate_chunk(
        &self,
        t: usize,
        i: usize,
        candidates: &[f64],
    ) -> (Option<ObjectId>, u64, Vec<f64>) {
        let input = &self.inputs[t];
        let plan = &self.plans[t];
        let range = chunk_range(input.data.len(), self.chunk_bytes, i);
        let unchanged_lossless = matches!(plan.unchanged, Some((Bound::Lossless, _)));
        let (exact_id, exact) = if unchanged_lossless {
            (None, 0)
        } else {
            let obj = self.exact_chunk(t, i);
            (Some(ObjectId::of(&obj)), obj.len() as u64)
        };
        let target = &input.data[range.clone()];
        let reference = plan.reference.as_ref().map(|r| &r[range]);
        let w = input.dtype.unit_bytes();
        let n = target.len() / w;
        let stats = LogStats::new(input.dtype, target, reference);
        let mut hist = Histogram::default();
        let est = candidates
            .iter()
            .map(|&eps| {
                if plan
                    .unchanged
                    .as_ref()
                    .is_some_and(|(b, _)| b.meets(Bound::Rel(eps)))
                {
                    return 0.0;
                }
                // Nearest codes step by (1+e)^2 in the log domain and round; dithered codes step
                // by 1+e and take floor(x + u), u uniform: code floor(x) with probability
                // 1 - frac(x), else floor(x) + 1. The histogram holds the expected counts.
                let (step, dither) = match self.rounding {
                    Rounding::Nearest | Rounding::Lattice => (2.0 * eps.ln_1p(), false),
                    Rounding::Dither => (eps.ln_1p(), true),
                };
                let inv = 1.0 / step;
                let max_code = ((90.0 / step).ceil() as u32).clamp(1, 1 << 20) as f64;
                let mut exceptions = stats.exceptions;
                hist.reset(stats.range.map(|(lo, hi)| (lo * inv, hi * inv)), n);
                for &d in &stats.log_ratio {
                    let x = d * inv;
                    if x.is_nan() {
                        hist.add(0, 1.0); // an exception: code 0
                    } else if x.abs() > max_code {
                        hist.add(0, 1.0);
                        exceptions += 1;
                    } else if dither {
                        let fl = x.floor();
                        let f = x - fl;
                        hist.add(fl as i64, 1.0 - f);
                        if f > 0.0 {
                            hist.add(fl as i64 + 1, f);
                        }
                    } else {
                        hist.add(x.round() as i64, 1.0);
                    }
                }
                let mut bytes = hist.entropy_bits() / 8.0
                    + exceptions as f64 * (w as f64 + EXCEPTION_EXTRA)
                    + CHUNK_OVERHEAD;
                if reference.is_none() {
                    bytes += n.div_ceil(8) as f64; // keyframe sign bits
                }
                if exact_may_win(input.dtype, Bound::Rel(eps), exceptions, n as u64) {
                    bytes = bytes.min(exact as f64);
                }
                bytes
            })
            .collect();
        (exact_id, exact, est)
    }

    /// Codes the whole snapshot under `rel:eps` exactly as a commit would; returns the stored
    /// bytes and the reconstruction.
    pub(crate) fn code(&self, eps: f64) -> Result<Coded> {
        let bound = Bound::Rel(eps);
        self.interrupt.check()?;
        let coded: Vec<(usize, usize, ObjectId, u64, Vec<u8>)> = self
            .jobs
            .par_iter()
            .map(|&(t, i)| {
                self.interrupt.check()?;
                let input = &self.inputs[t];
                let plan = &self.plans[t];
                let range = chunk_range(input.data.len(), self.chunk_bytes, i);
                if let Some((b, recon)) = &plan.unchanged {
                    if b.meets(bound) {
                        // Reused: no object (an id no chunk has, counted as nothing).
                        return Ok((t, i, ObjectId([0; 32]), 0, recon[range].to_vec()));
                    }
                }
                let data = &input.data[range.clone()];
                // The commit's own rule for the first delta of a chain on the lattice.
                let basis = match (&plan.reference, plan.parent_bound) {
                    (Some(r), Some(parent_bound)) => {
                        Basis::delta(&r[range], Basis::anchors_after(parent_bound, bound))
                    }
                    _ => Basis::Keyframe,
                };
                let coded = code_chunk(
                    self.engine.as_ref(),
                    input,
                    data,
                    bound,
                    basis,
                    self.rounding,
                    self.codec,
                )
                .map_err(|p| Error::codec(format!("chunk {i} of tensor {:?}", input.name), p))?;
                let recon = coded
                    .reconstruction
                    .expect("a bounded chunk carries its reconstruction");
                Ok((
                    t,
                    i,
                    ObjectId::of(&coded.obj),
                    coded.obj.len() as u64,
                    recon,
                ))
            })
            .collect::<Result<_>>()?;
        // Each distinct chunk once, as the pack stores it.
        let mut stored_bytes = self.fixed_bytes;
        let mut seen: HashSet<ObjectId> = self.fixed_ids.clone();
        let mut data: Vec<Option<Vec<u8>>> = self
            .plans
            .iter()
            .map(|p| (!p.lossy).then(Vec::new))
            .collect();
        for (t, i, id, len, recon) in coded {
            if len > 0 && seen.insert(id) {
                stored_bytes += len;
            }
            let buf = data[t].get_or_insert_with(|| Vec::with_capacity(self.inputs[t].data.len()));
            debug_assert_eq!(buf.len(), i * self.chunk_bytes);
            buf.extend_from_slice(&recon);
        }
        let tensors = self
            .inputs
            .iter()
            .zip(data)
            .zip(&self.plans)
            .map(|((t, d), p)| CheckedOutTensor {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                data: if p.lossy {
                    d.unwrap_or_default()
                } else {
                    t.data.to_vec()
                },
            })
            .collect();
        Ok(Coded {
            stored_bytes,
            tensors,
        })
    }
}

/// Per element of a chunk: `ln|A| - ln|B'|` (the quantity the codes quantize), NaN where the
/// element can only be an exception, and the count of those.
struct LogStats {
    log_ratio: Vec<f64>,
    exceptions: u64,
    /// Smallest and largest finite entry.
    range: Option<(f64, f64)>,
}

impl LogStats {
    fn new(dtype: Dtype, target: &[u8], reference: Option<&[u8]>) -> Self {
        let w = dtype.unit_bytes();
        let n = target.len() / w;
        let mut log_ratio = Vec::with_capacity(n);
        let mut exceptions = 0u64;
        for j in 0..n {
            let a_bytes = &target[j * w..(j + 1) * w];
            let a = Elem::read(dtype, a_bytes);
            let d = match reference {
                // Keyframe: coded against sign(A) * 1, so the code is the quantized ln|A|.
                None => (!a.special).then(|| a.value.abs().ln()),
                Some(r) => {
                    let b_bytes = &r[j * w..(j + 1) * w];
                    if a_bytes == b_bytes {
                        Some(0.0)
                    } else {
                        let b = Elem::read(dtype, b_bytes);
                        let ok = !a.special
                            && b.value != 0.0
                            && b.value.is_finite()
                            && (a.value < 0.0) == (b.value < 0.0);
                        ok.then(|| a.value.abs().ln() - b.value.abs().ln())
                    }
                }
            };
            match d {
                Some(d) => log_ratio.push(d),
                None => {
                    exceptions += 1;
                    log_ratio.push(f64::NAN);
                }
            }
        }
        let range = log_ratio
            .iter()
            .filter(|d| d.is_finite())
            .fold(None, |r: Option<(f64, f64)>, &d| {
                Some(r.map_or((d, d), |(lo, hi)| (lo.min(d), hi.max(d))))
            });
        LogStats {
            log_ratio,
            exceptions,
            range,
        }
    }
}

/// One element widened to `f64`, and whether it is a value the codec always stores exactly
/// (zero, subnormal, infinite or NaN: the exponent field is all zeros or all ones).
struct Elem {
    value: f64,
    special: bool,
}

impl Elem {
    fn read(dtype: Dtype, b: &[u8]) -> Elem {
        let (value, exp, max) = match dtype {
            Dtype::F16 => {
                let bits = u16::from_le_bytes([b[0], b[1]]);
                (
                    half::f16::from_bits(bits).to_f64(),
                    (bits >> 10) as u64 & 0x1f,
                    0x1f,
                )
            }
            Dtype::BF16 => {
                let bits = u16::from_le_bytes([b[0], b[1]]);
                (
                    half::bf16::from_bits(bits).to_f64(),
                    (bits >> 7) as u64 & 0xff,
                    0xff,
                )
            }
            Dtype::F32 => {
                let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                (
                    f32::from_bits(bits) as f64,
                    (bits >> 23) as u64 & 0xff,
                    0xff,
                )
            }
            _ => {
                let bits = u64::from_le_bytes(b.try_into().expect("8-byte element"));
                (f64::from_bits(bits), (bits >> 52) & 0x7ff, 0x7ff)
            }
        };
        Elem {
            value,
            special: exp == 0 || exp == max,
        }
    }
}

/// Expected code counts of one chunk: dense over the code range when it is not much wider than
/// the chunk, else a hash map.
#[derive(Default)]
struct Histogram {
    lo: i64,
    dense: Vec<f64>,
    sparse: HashMap<i64, f64>,
    total: f64,
}

impl Histogram {
    /// Empties it for codes within `range` (scaled log ratios), `n` elements.
    fn reset(&mut self, range: Option<(f64, f64)>, n: usize) {
        self.dense.clear();
        self.sparse.clear();
        self.total = 0.0;
        let (lo, hi) = range.unwrap_or((0.0, 0.0));
        let (lo, hi) = (lo.min(0.0).floor() - 1.0, hi.max(0.0).ceil() + 1.0);
        if hi - lo <= (4 * n + 4096) as f64 {
            self.lo = lo as i64;
            self.dense.resize((hi - lo) as usize + 1, 0.0);
        } else {
            self.lo = i64::MIN;
        }
    }

    fn add(&mut self, code: i64, weight: f64) {
        self.total += weight;
        if self.lo != i64::MIN {
            if let Some(c) = code
                .checked_sub(self.lo)
                .and_then(|k| usize::try_from(k).ok())
                .and_then(|k| self.dense.get_mut(k))
            {
                *c += weight;
                return;
            }
        }
        *self.sparse.entry(code).or_insert(0.0) += weight;
    }

    /// Order-0 entropy in bits, times the element count.
    fn entropy_bits(&self) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        let term = |c: f64| {
            if c > 0.0 {
                -c * (c / self.total).log2()
            } else {
                0.0
            }
        };
        self.dense.iter().map(|&c| term(c)).sum::<f64>()
            + self.sparse.values().map(|&c| term(c)).sum::<f64>()
    }
}
