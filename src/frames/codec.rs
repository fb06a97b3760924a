//! A group of consecutive frames coded as one object: random access is by group, and groups
//! encode and decode in parallel.
//!
//! The first frame of a group is a keyframe, predicted spatially (2D Lorenzo `W + N - NW` on the
//! reconstructed neighbours). Each later frame is predicted from the previous *reconstructed*
//! frame, either directly (temporal) or by a 3D Lorenzo (the previous frame plus a Lorenzo
//! prediction of the temporal difference), or spatially (scene cuts); with more than one channel
//! a channel may also add the previous channel's residual (colour planes move together). Each
//! frame keeps the predictor whose codes cost least (Elias-gamma bits); the choice is recorded
//! per frame. Under a bound, the encoder first estimates every predictor's cost on bands of
//! rows and runs the whole frame only with those near the best (see [`ESTIMATE_MARGIN`]).
//!
//! Residuals are quantized against the prediction (see [`FrameBound`]), then split into
//! [`CONTEXTS`] streams by a context from the neighbouring code magnitudes; each stream is
//! packed as zero-run RLE varints, narrow byte planes or bitmaps, and the packing that the
//! entropy stage (Zstd, rANS or LZMA) stores smallest is kept (on long streams of one-byte
//! codes, among those whose rANS estimate is near the best: see [`ESTIMATED_FROM`]). Elements
//! a bound cannot hold (NaN, Inf, a reconstruction off by more than the bound after rounding)
//! are stored exactly.
//!
//! # Object layout (version 1)
//!
//! ```text
//! u8        version (GROUP_VERSION = 1)
//! u8        dtype (0 U8, 1 U16, 2 F32)
//! u8        bound kind (0 lossless, 1 absolute, 2 relative)
//! f64 LE    bound value (0 when lossless)
//! varint    h, w, c, k (frames in the group)
//! u8        context shift (code magnitudes are shifted right by this before bucketing)
//! k x u8    frame modes: predictor (0 spatial, 1 temporal, 2 3D Lorenzo) | 0x10 inter-channel
//! u8        stream count (= CONTEXTS)
//! per stream:
//!   varint  codes in the stream; when nonzero:
//!   u8      packing (0 = RLE varints, 1..=8 = byte planes of that many bytes per code)
//!   u8      entropy coder (0 stored, 1 Zstd, 2 LZMA)
//!   varint  packed length, varint stored length, the stored bytes
//! exceptions:
//!   varint  count; when nonzero: u8 entropy coder, varint raw length, varint stored length,
//!           bytes = count varint position gaps (element index in the group; first absolute,
//!           then gap - 1), then count exact element values (little-endian)
//! ```
//!
//! Codes: integers (U8, U16 and the order-preserving integer image of F32 bits) code
//! `q = round((x - pred) / (2E + 1))` against a prediction clamped to the value range, so
//! `|x - x'| <= E` exactly; lossless codes are residuals modulo `2^bits` (NaN payloads survive).
//! F32 under an absolute bound codes `q = round((x - pred) / 2E)` in f64 and checks the rounded
//! reconstruction. F32 under a relative bound `r` codes the integer image within
//! `D = floor(r * 2^22)` steps (a step of the image is at most `2^-22 |x|`), and checks
//! `|x - x'| <= r |x|` on every element, a zero's sign too (see [`FrameBound::Rel`]).

use super::pack::{self, Code, CodeReader};
use super::predict::{
    self, FloatAbs, IntBounded, IntKind, Lossless, Padded, Quant, Visit, CONTEXTS,
    CONTEXTS_PER_SET, INTER_CHANNEL, PRED_LORENZO3, PRED_SPATIAL, PRED_TEMPORAL,
};
use super::{FrameDims, FrameDtype};
use crate::codec::entropy::{self, compress, compress_measured, decompress, CodecChoice, Entropy};
use crate::profile::{self, Stage};

/// Version byte of a group object.
pub const GROUP_VERSION: u8 = 1;
/// Most elements one group may hold (a decoder refuses larger declarations before allocating).
pub const MAX_GROUP_ELEMENTS: usize = 1 << 28;

/// Stream packing byte: binarized (bitmaps of zero / sign / magnitude levels).
const PACK_BITS: u8 = 9;
const KIND_LOSSLESS: u8 = 0;
const KIND_ABS: u8 = 1;
const KIND_REL: u8 = 2;
/// Largest image step a relative bound may ask for.
const MAX_REL_STEPS: f64 = (1u64 << 30) as f64;

/// How closely decoded frames must match the original.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FrameBound {
    /// Bit-exact.
    Lossless,
    /// `|x - x'| <= E` for every element (integers use `floor(E)`). NaN, Inf and -0.0 are kept
    /// exactly; +0.0 and subnormals, like any finite value, come back within `E`.
    Abs(f64),
    /// `|x - x'| <= E |x|` for every element (F32 only). NaN, Inf and zeros are kept exactly, the
    /// sign of a zero included; subnormals come back within the bound.
    Rel(f64),
}

/// The bound as the coder applies it.
#[derive(Clone, Copy, Debug)]
enum Coding {
    Lossless,
    IntAbs(i64),
    FloatAbs(f64),
    Rel(f64, i64),
}

/// Resolves a bound for a dtype; the same function runs on both sides, so the stored
/// (kind, value) pair fully determines the coding.
fn resolve(dtype: FrameDtype, kind: u8, value: f64) -> Result<Coding, String> {
    if kind != KIND_LOSSLESS && !(value.is_finite() && value >= 0.0) {
        return Err(format!("bound {value} must be finite and not negative"));
    }
    match (kind, dtype) {
        (KIND_LOSSLESS, _) => Ok(Coding::Lossless),
        (KIND_ABS, FrameDtype::F32) if value == 0.0 => Ok(Coding::Lossless),
        (KIND_ABS, FrameDtype::F32) => Ok(Coding::FloatAbs(value)),
        (KIND_ABS, d) => {
            let max = if d == FrameDtype::U8 { 255.0 } else { 65535.0 };
            Ok(Coding::IntAbs(value.floor().min(max) as i64))
        }
        (KIND_REL, FrameDtype::F32) if value == 0.0 => Ok(Coding::Lossless),
        (KIND_REL, FrameDtype::F32) => {
            // One step of the integer image is at most 2^-23 of |x| (at the bottom of a binade), so
            // r * 2^23 steps use the whole bound; the per-element check catches the edges.
            let steps = (value * (1u64 << 23) as f64).floor().min(MAX_REL_STEPS);
            Ok(Coding::Rel(value, steps as i64))
        }
        (KIND_REL, d) => Err(format!("a relative bound needs F32 frames, not {d}")),
        (k, _) => Err(format!("unknown bound kind {k}")),
    }
}

impl FrameBound {
    fn kind_value(self) -> (u8, f64) {
        match self {
            FrameBound::Lossless => (KIND_LOSSLESS, 0.0),
            FrameBound::Abs(e) => (KIND_ABS, e),
            FrameBound::Rel(e) => (KIND_REL, e),
        }
    }
}

/// Elements in a group of `k` frames, checked against [`MAX_GROUP_ELEMENTS`].
fn group_elements(dims: FrameDims, k: usize) -> Result<usize, String> {
    if dims.h == 0 || dims.w == 0 || dims.c == 0 || k == 0 {
        return Err(format!(
            "empty group: {k} frames of {}x{}x{}",
            dims.h, dims.w, dims.c
        ));
    }
    dims.elements()
        .and_then(|e| e.checked_mul(k))
        .filter(|&n| n <= MAX_GROUP_ELEMENTS)
        .ok_or_else(|| {
            format!(
                "group of {k} frames of {}x{}x{} is over {MAX_GROUP_ELEMENTS} elements",
                dims.h, dims.w, dims.c
            )
        })
}

/// Codes `frames` (a whole number of frames of `dims`, little-endian `dtype`) as one object.
/// Errors name a bad bound, a length that is not whole frames, or a group that is too large.
pub fn encode_group(
    dims: FrameDims,
    dtype: FrameDtype,
    frames: &[u8],
    bound: FrameBound,
    choice: CodecChoice,
) -> Result<Vec<u8>, String> {
    encode_group_reconstructed(dims, dtype, frames, bound, choice).map(|(obj, _)| obj)
}

/// [`encode_group`], also returning the frames exactly as [`decode_group`] will decode the
/// object (the encoder's closed loop already holds them, so a commit need not decode its group
/// again to hash them). Same errors.
pub fn encode_group_reconstructed(
    dims: FrameDims,
    dtype: FrameDtype,
    frames: &[u8],
    bound: FrameBound,
    choice: CodecChoice,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let frame_bytes = dims
        .elements()
        .and_then(|e| e.checked_mul(dtype.size()))
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("bad frame shape {}x{}x{}", dims.h, dims.w, dims.c))?;
    if !frames.len().is_multiple_of(frame_bytes) {
        return Err(format!(
            "{} bytes are not whole frames of {frame_bytes} bytes",
            frames.len()
        ));
    }
    let k = frames.len() / frame_bytes;
    group_elements(dims, k)?;
    let (kind, value) = bound.kind_value();
    let coding = resolve(dtype, kind, value)?;
    let mut out = vec![GROUP_VERSION, dtype.code(), kind];
    out.extend_from_slice(&value.to_le_bytes());
    for v in [dims.h, dims.w, dims.c, k] {
        pack::put_varint(&mut out, v as u64);
    }
    // Each quantizer with the narrowest code type its codes fit (see `Code`); a code that did
    // not fit would be stored as an exception, never truncated.
    let recon = match (coding, dtype) {
        (Coding::Lossless, FrameDtype::U8) => {
            let q = Lossless::<1> { kind: IntKind::U8 };
            encode_body::<_, i8>(&q, dims, frames, choice, &mut out)
        }
        (Coding::Lossless, FrameDtype::U16) => {
            let q = Lossless::<2> { kind: IntKind::U16 };
            encode_body::<_, i16>(&q, dims, frames, choice, &mut out)
        }
        (Coding::Lossless, FrameDtype::F32) => {
            let q = Lossless::<4> {
                kind: IntKind::F32Image,
            };
            encode_body::<_, i32>(&q, dims, frames, choice, &mut out)
        }
        (Coding::IntAbs(e), FrameDtype::U8) => {
            let q = IntBounded::<1>::new(IntKind::U8, 255, e, None);
            if e >= 1 {
                // |code| <= (255 + e) / (2e + 1) <= 85.
                encode_body::<_, i8>(&q, dims, frames, choice, &mut out)
            } else {
                encode_body::<_, i16>(&q, dims, frames, choice, &mut out)
            }
        }
        (Coding::IntAbs(e), _) => {
            let q = IntBounded::<2>::new(IntKind::U16, 65535, e, None);
            encode_body::<_, i32>(&q, dims, frames, choice, &mut out)
        }
        (Coding::FloatAbs(e), _) => {
            encode_body::<_, i64>(&FloatAbs { e }, dims, frames, choice, &mut out)
        }
        (Coding::Rel(r, steps), _) => {
            let q = IntBounded::<4>::new(IntKind::F32Image, u32::MAX as i64, steps, Some(r));
            encode_body::<_, i64>(&q, dims, frames, choice, &mut out)
        }
    };
    Ok((out, recon))
}

/// Codes the frames with `q` (codes held as `C`) and appends everything after the header to
/// `out`: context shift, modes, streams, exceptions. Returns the reconstruction.
fn encode_body<Q: Quant, C: Code>(
    q: &Q,
    dims: FrameDims,
    frames: &[u8],
    choice: CodecChoice,
    out: &mut Vec<u8>,
) -> Vec<u8> {
    let predict_timer = profile::time_bytes(Stage::FramePredict, frames.len());
    let enc = encode_frames::<Q, C>(q, dims, frames);
    drop(predict_timer);
    let _layout = profile::time_bytes(Stage::FrameLayout, frames.len());
    let k = enc.modes.len();
    let shift = context_shift(&enc.codes);
    out.push(shift as u8);
    out.extend_from_slice(&enc.modes);
    write_streams(out, &split_contexts(&enc.codes, dims, k, shift), choice);
    write_exceptions(out, &enc.exceptions, frames, Q::SIZE, choice);
    enc.recon
}

/// What the predictor pass produced for a group.
struct Encoded<C> {
    modes: Vec<u8>,
    /// Every element's code, group order (exceptions code 0).
    codes: Vec<C>,
    /// Element indices (group order) stored exactly.
    exceptions: Vec<usize>,
    /// The frames exactly as [`decode_group`] will return them.
    recon: Vec<u8>,
}

/// The encoder's side of [`Visit`]: quantizes the input frame, records codes and exceptions,
/// and with `COST` sums the codes' cost (only needed when modes are compared).
struct EncVisit<'a, Q: Quant, C, const COST: bool> {
    q: Q,
    /// The input frame, padded like the reconstruction.
    xp: &'a [Q::W],
    /// Every element's code, frame order (exceptions code 0).
    codes: Vec<C>,
    exceptions: Vec<usize>,
    cost: u64,
}

impl<Q: Quant, C: Code, const COST: bool> Visit<Q::W> for EncVisit<'_, Q, C, COST> {
    #[inline(always)]
    fn visit(&mut self, e: usize, p: usize, _ch: usize, pred: Q::W) -> Result<Q::W, String> {
        let x = self.xp[p];
        match self
            .q
            .encode(x, pred)
            .and_then(|(code, r)| Some((C::narrow(code)?, code, r)))
        {
            Some((narrow, code, r)) => {
                self.codes.push(narrow);
                if COST {
                    self.cost += predict::gamma_bits(code);
                }
                Ok(r)
            }
            None => {
                self.codes.push(C::default());
                self.exceptions.push(e);
                if COST {
                    self.cost += predict::EXCEPTION_BITS;
                }
                Ok(x)
            }
        }
    }
}

/// Runs `mode` over the whole frame (input `xp`, previous reconstruction `prev`) in the closed
/// loop, its codes into `codes` (cleared first; pushed, not stored at their index: the
/// indexed store made the F32 walk 40% slower) and its reconstruction into
/// `cur`. Returns the cost (0 unless `COST`) and the exceptions, or `None` for a temporal mode
/// without a previous frame.
fn run_mode<Q: Quant, C: Code, const COST: bool>(
    q: &Q,
    g: Padded,
    mode: u8,
    (xp, prev): (&[Q::W], &[Q::W]),
    cur: &mut [Q::W],
    codes: &mut Vec<C>,
) -> Option<(u64, Vec<usize>)> {
    codes.clear();
    let mut v = EncVisit::<Q, C, COST> {
        q: q.clone(),
        xp,
        codes: std::mem::take(codes),
        exceptions: Vec::new(),
        cost: 0,
    };
    let walked = predict::walk_frame(g, mode, prev, cur, &mut v);
    *codes = v.codes;
    walked.ok().map(|()| (v.cost, v.exceptions))
}

/// Predictor modes a frame tries.
fn candidates(first: bool, c: usize) -> Vec<u8> {
    let preds: &[u8] = if first {
        &[PRED_SPATIAL]
    } else {
        &[PRED_TEMPORAL, PRED_LORENZO3, PRED_SPATIAL]
    };
    let flags: &[u8] = if c > 1 { &[0, INTER_CHANNEL] } else { &[0] };
    preds
        .iter()
        .flat_map(|&p| flags.iter().map(move |&f| p | f))
        .collect()
}

/// The encoder's estimate of a mode's cost: the closed loop on some rows, counting bits only.
struct CostVisit<'a, Q: Quant> {
    q: Q,
    /// The input frame, padded like the reconstruction.
    xp: &'a [Q::W],
    cost: u64,
}

impl<Q: Quant> Visit<Q::W> for CostVisit<'_, Q> {
    #[inline(always)]
    fn visit(&mut self, _e: usize, p: usize, _ch: usize, pred: Q::W) -> Result<Q::W, String> {
        let x = self.xp[p];
        Ok(match self.q.encode(x, pred) {
            Some((code, r)) => {
                self.cost += predict::gamma_bits(code);
                r
            }
            None => {
                self.cost += predict::EXCEPTION_BITS;
                x
            }
        })
    }
}

/// A mode's cost is estimated on bands of `BAND_ROWS` rows, at least
/// `MIN_BANDS` of them and at most `MAX_BAND_STRIDE` rows apart, each walked in the closed loop
/// from the original row above it.
const BAND_ROWS: usize = 4;
/// Fewest bands a frame's estimate samples ...
const MIN_BANDS: usize = 8;
/// ... and the most rows between two (tall frames sample an eighth of their rows).
const MAX_BAND_STRIDE: usize = 32;
/// Frames under this many rows run every candidate on the whole frame.
const MIN_ESTIMATE_ROWS: usize = 32;
/// Every mode whose estimate is within this share of the best one is run on the whole frame,
/// and the cheapest there is kept (so a near tie is decided by the real cost).
///
/// Measured (bench_frames): at 5% every frame of frames-video and of the Gray-Scott sequence
/// keeps the mode the full trial of every candidate chose (frames-video runs 1.04 modes a frame
/// on the whole frame); at 2% the Gray-Scott sequence picked differently in 12 frames.
const ESTIMATE_MARGIN: f64 = 0.05;

/// The modes a frame runs in the closed loop over every row, in candidate order: those the
/// estimate cannot tell from the best. Frames under `MIN_ESTIMATE_ROWS` rows run every
/// candidate.
///
/// `guess` (the previous frame's mode) is estimated first. Every other candidate stops as soon
/// as its sum so far, which only grows, is past the margin of the best whole estimate so far:
/// it could not have come within the margin of the best, so the modes returned are exactly
/// those that estimating every candidate in full would return.
fn modes_to_run<Q: Quant>(
    q: &Q,
    g: Padded,
    (first, guess): (bool, Option<u8>),
    prev: &[Q::W],
    xp: &[Q::W],
    scratch: &mut [Q::W],
) -> Vec<u8> {
    let all = candidates(first, g.c);
    if all.len() == 1 || g.h < MIN_ESTIMATE_ROWS {
        return all;
    }
    let mut order: Vec<usize> = (0..all.len()).collect();
    if let Some(i) = guess.and_then(|m| all.iter().position(|&c| c == m)) {
        order.remove(i);
        order.insert(0, i);
    }
    // Each candidate's whole estimate, or `None` where it was cut short.
    let mut costs: Vec<Option<u64>> = vec![None; all.len()];
    let mut best: Option<u64> = None;
    for i in order {
        let limit = best.map(|b| b as f64 * (1.0 + ESTIMATE_MARGIN));
        costs[i] = band_cost(q, g, all[i], (prev, xp), scratch, limit);
        if let Some(c) = costs[i] {
            best = Some(best.map_or(c, |b| b.min(c)));
        }
    }
    let best = best.expect("the first candidate estimated is never cut");
    let limit = best as f64 * (1.0 + ESTIMATE_MARGIN);
    all.into_iter()
        .zip(costs)
        .filter(|&(_, c)| c.is_some_and(|c| c as f64 <= limit))
        .map(|(m, _)| m)
        .collect()
}

/// `mode`'s estimated cost: the closed loop on bands of [`BAND_ROWS`] rows, each from the
/// original row above it (`scratch` holds the walk). `None` as soon as the sum so far is past
/// `limit`.
fn band_cost<Q: Quant>(
    q: &Q,
    g: Padded,
    mode: u8,
    (prev, xp): (&[Q::W], &[Q::W]),
    scratch: &mut [Q::W],
    limit: Option<f64>,
) -> Option<u64> {
    let rs = g.row();
    let band_stride = (g.h / MIN_BANDS).clamp(BAND_ROWS, MAX_BAND_STRIDE);
    let mut v = CostVisit {
        q: q.clone(),
        xp,
        cost: 0,
    };
    for y0 in (band_stride / 2..g.h).step_by(band_stride) {
        // The padded row above real row y0 is padded row y0.
        scratch[y0 * rs..(y0 + 1) * rs].copy_from_slice(&xp[y0 * rs..(y0 + 1) * rs]);
        let rows = y0..(y0 + BAND_ROWS).min(g.h);
        // Cannot fail: the buffers are whole frames, and a previous frame exists wherever a
        // temporal mode is a candidate.
        let _ = predict::walk_rows(g, mode, prev, scratch, &mut v, rows);
        if limit.is_some_and(|l| v.cost as f64 > l) {
            return None;
        }
    }
    Some(v.cost)
}

fn encode_frames<Q: Quant, C: Code>(q: &Q, dims: FrameDims, frames: &[u8]) -> Encoded<C> {
    let g = Padded {
        h: dims.h,
        w: dims.w,
        c: dims.c,
    };
    let fe = g.h * g.w * g.c;
    let fb = fe * Q::SIZE;
    let k = frames.len() / fb;
    let mut out = Encoded {
        modes: Vec::with_capacity(k),
        codes: Vec::with_capacity(k * fe),
        exceptions: Vec::new(),
        recon: vec![0u8; frames.len()],
    };
    let mut prev: Vec<Q::W> = Vec::new();
    let mut best_cur = vec![Q::W::default(); g.len()];
    let mut cur = vec![Q::W::default(); g.len()];
    let mut xp = vec![Q::W::default(); g.len()];
    let mut scratch = vec![Q::W::default(); g.len()];
    let mut trial_codes = Vec::with_capacity(fe);
    let mut best_codes = Vec::with_capacity(fe);
    for f in 0..k {
        let raw = &frames[f * fb..(f + 1) * fb];
        let row = g.w * g.c * Q::SIZE;
        for (y, bytes) in raw.chunks_exact(row).enumerate() {
            let at = g.at(y, 0);
            for (slot, b) in xp[at..at + g.w * g.c]
                .iter_mut()
                .zip(bytes.chunks_exact(Q::SIZE))
            {
                *slot = q.load(b);
            }
        }
        let mut best: Option<(u8, u64, Vec<usize>)> = None;
        let guess = out.modes.last().copied();
        let modes = modes_to_run(q, g, (f == 0, guess), &prev, &xp, &mut scratch);
        // A lone candidate needs no cost: there is nothing to compare it with.
        let compare = modes.len() > 1;
        for mode in modes {
            let frames = (&xp[..], &prev[..]);
            let trial = if compare {
                run_mode::<Q, C, true>(q, g, mode, frames, &mut cur, &mut trial_codes)
            } else {
                run_mode::<Q, C, false>(q, g, mode, frames, &mut cur, &mut trial_codes)
            };
            // `None` is unreachable: temporal modes are only tried with a previous frame.
            let Some((cost, exceptions)) = trial else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|&(_, best_cost, _)| cost < best_cost)
            {
                best = Some((mode, cost, exceptions));
                std::mem::swap(&mut best_cur, &mut cur);
                std::mem::swap(&mut best_codes, &mut trial_codes);
            }
        }
        let (mode, _, exceptions) = best.expect("spatial mode always succeeds");
        out.modes.push(mode);
        out.codes.extend_from_slice(&best_codes);
        // The reconstruction as the decoder writes it: stored values, exceptions byte for byte.
        let dst = &mut out.recon[f * fb..(f + 1) * fb];
        for (y, bytes) in dst.chunks_exact_mut(row).enumerate() {
            let at = g.at(y, 0);
            for (b, &v) in bytes
                .chunks_exact_mut(Q::SIZE)
                .zip(&best_cur[at..at + g.w * g.c])
            {
                q.store(v, b);
            }
        }
        for &e in &exceptions {
            dst[e * Q::SIZE..(e + 1) * Q::SIZE]
                .copy_from_slice(&raw[e * Q::SIZE..(e + 1) * Q::SIZE]);
        }
        out.exceptions
            .extend(exceptions.iter().map(|&e| f * fe + e));
        std::mem::swap(&mut prev, &mut best_cur);
        if best_cur.len() != g.len() {
            best_cur = vec![Q::W::default(); g.len()];
        }
    }
    out
}

/// Context shift for a group: keeps the typical code magnitude in the low context buckets.
fn context_shift<C: Code>(codes: &[C]) -> u32 {
    if codes.is_empty() {
        return 0;
    }
    let sum: u128 = codes
        .iter()
        .map(|c| u128::from(c.get().unsigned_abs()))
        .sum();
    let mean = (sum / codes.len() as u128).min(u64::MAX as u128) as u64;
    (64 - mean.leading_zeros()).saturating_sub(4)
}

/// Splits the codes into context streams, in the order the decoder will ask for them.
fn split_contexts<C: Code>(codes: &[C], dims: FrameDims, k: usize, shift: u32) -> Streams<C> {
    let g = Padded {
        h: dims.h,
        w: dims.w,
        c: dims.c,
    };
    let fe = g.h * g.w * g.c;
    // First every element's context (a byte), then the codes dealt into streams sized up front.
    // A frame's magnitudes are all known before its contexts: every neighbour a context reads
    // comes before the element in raster order, so filling them first changes nothing.
    let mut ctxs = vec![0u8; k * fe];
    let mut mags = vec![C::Mag::default(); g.len()];
    let table = predict::bucket_table();
    for (fc, fx) in codes.chunks_exact(fe).zip(ctxs.chunks_exact_mut(fe)) {
        frame_magnitudes(fc, g, &mut mags);
        frame_contexts(&mags, g, shift, &table, fx);
    }
    // A counting sort: the streams end to end in one buffer. The codes are dealt as four
    // consecutive quarters at once, each with its own counters, so that runs of one context do
    // not wait on one counter.
    const LANES: usize = 4;
    let n = codes.len();
    let quarter = n / LANES;
    let lane_of = |j: usize| (j / quarter.max(1)).min(LANES - 1);
    let mut counts = [[0usize; CONTEXTS]; LANES];
    for i in 0..quarter {
        for (l, lane) in counts.iter_mut().enumerate() {
            lane[ctxs[l * quarter + i] as usize] += 1;
        }
    }
    for j in LANES * quarter..n {
        counts[lane_of(j)][ctxs[j] as usize] += 1;
    }
    let mut starts = [0usize; CONTEXTS + 1];
    let mut next = [[0usize; CONTEXTS]; LANES];
    for c in 0..CONTEXTS {
        let mut at = starts[c];
        for l in 0..LANES {
            next[l][c] = at;
            at += counts[l][c];
        }
        starts[c + 1] = at;
    }
    let mut flat = vec![C::default(); n];
    for i in 0..quarter {
        for (l, lane) in next.iter_mut().enumerate() {
            let j = l * quarter + i;
            let at = &mut lane[ctxs[j] as usize];
            flat[*at] = codes[j];
            *at += 1;
        }
    }
    for j in LANES * quarter..n {
        let at = &mut next[lane_of(j)][ctxs[j] as usize];
        flat[*at] = codes[j];
        *at += 1;
    }
    Streams { flat, starts }
}

/// Writes the magnitudes of one frame's codes into `mags` (padded like the frame; the border is
/// left as it is, zero).
fn frame_magnitudes<C: Code>(codes: &[C], g: Padded, mags: &mut [C::Mag]) {
    let row = g.w * g.c;
    for (y, codes) in codes.chunks_exact(row).enumerate() {
        let at = g.at(y, 0);
        for (m, code) in mags[at..at + row].iter_mut().zip(codes) {
            *m = code.mag();
        }
    }
}

/// Every element's context in one frame, as [`predict::context`] gives it, from the frame's
/// code magnitudes (`mags`, padded, border zero); `table` is [`predict::bucket_table`]. Row by
/// row over two slices (the row above, the row itself), so no index leaves them.
fn frame_contexts<M: Copy + Into<u64>>(
    mags: &[M],
    g: Padded,
    shift: u32,
    table: &[u8; 256],
    out: &mut [u8],
) {
    // The usual channel counts get a loop of their own, unrolled over the pixel's channels.
    match g.c {
        1 => contexts_of::<M, 1>(mags, g, shift, table, out),
        3 => contexts_of::<M, 3>(mags, g, shift, table, out),
        _ => contexts_of::<M, 0>(mags, g, shift, table, out),
    }
}

/// [`frame_contexts`] for frames of `C` channels (`0`: `g.c`, known at run time only).
#[inline(always)]
fn contexts_of<M: Copy + Into<u64>, const C: usize>(
    mags: &[M],
    g: Padded,
    shift: u32,
    table: &[u8; 256],
    out: &mut [u8],
) {
    let c = if C == 0 { g.c } else { C };
    let (rs, row) = (g.row(), g.w * c);
    let m = |s: &[M], i: usize| -> u64 { s[i].into() };
    for (y, out) in out.chunks_exact_mut(row).enumerate() {
        let at = g.at(y, 0);
        // For element j of the row: NW = above[j], N = above[j + c], NE = above[j + 2c];
        // W = left[j], the previous channels of its pixel left[j + c - 1] and left[j + c - 2].
        let above = &mags[at - rs - c..at - rs + row + c];
        let left = &mags[at - c..at + row];
        for (x, px) in out.chunks_exact_mut(c).enumerate() {
            for (ch, ctx) in px.iter_mut().enumerate() {
                let j = x * c + ch;
                let mut a = m(left, j) + m(above, j) + m(above, j + c) + m(above, j + 2 * c);
                if ch > 0 {
                    a += 2 * m(left, j + c - 1);
                }
                if ch > 1 {
                    a += m(left, j + c - 2);
                }
                let set = if ch > 0 { CONTEXTS_PER_SET } else { 0 };
                *ctx = table[(a >> shift).min(255) as usize] + set as u8;
            }
        }
    }
}

/// The context streams of a group, end to end.
struct Streams<C> {
    flat: Vec<C>,
    /// Stream `i` is `flat[starts[i]..starts[i + 1]]`.
    starts: [usize; CONTEXTS + 1],
}

impl<C> Streams<C> {
    fn iter(&self) -> impl Iterator<Item = &[C]> {
        self.starts.windows(2).map(|w| &self.flat[w[0]..w[1]])
    }
}

fn write_section(out: &mut Vec<u8>, raw: &[u8], choice: CodecChoice) {
    let (kind, stored) = compress(raw, choice);
    out.push(kind as u8);
    pack::put_varint(out, raw.len() as u64);
    pack::put_varint(out, stored.len() as u64);
    out.extend_from_slice(&stored);
}

/// Streams of at least this many codes, every code within a byte, entropy-code only the
/// packings whose rANS (order-0) estimate is within [`PACKING_MARGIN`] of the best packing's.
/// Elsewhere all three are coded: Zstd, which an order-0 estimate cannot foresee, wins on
/// short streams and on the byte planes of wider codes (Gray-Scott's F32: its lossless pack
/// grew 0.42% when they were skipped too).
const ESTIMATED_FROM: usize = 4096;
/// See [`ESTIMATED_FROM`]. Measured (bench_frames): at 5% every stream of frames-video and of
/// the Gray-Scott sequence keeps the packing and coder that coding all three chose.
const PACKING_MARGIN: f64 = 0.05;

fn write_streams<C: Code>(out: &mut Vec<u8>, streams: &Streams<C>, choice: CodecChoice) {
    out.push(CONTEXTS as u8);
    for s in streams.iter() {
        pack::put_varint(out, s.len() as u64);
        if s.is_empty() {
            continue;
        }
        let rle = pack::pack_rle(s);
        let width = pack::narrow_width(s);
        let narrow = pack::pack_narrow(s, width);
        let bits = pack::pack_bits(s);
        let packings = [(0, &rle), (width, &narrow), (PACK_BITS, &bits)];
        let measured = packings.map(|(_, bytes)| entropy::measure(bytes));
        let near =
            measured.iter().map(|m| m.estimate).min().unwrap_or(0) as f64 * (1.0 + PACKING_MARGIN);
        let mut best: Option<(u8, usize, Entropy, Vec<u8>)> = None;
        for ((packing, bytes), m) in packings.iter().zip(&measured) {
            if width == 1 && s.len() >= ESTIMATED_FROM && m.estimate as f64 > near {
                continue;
            }
            let (kind, stored) = compress_measured(m, choice);
            if best.as_ref().is_none_or(|b| stored.len() < b.3.len()) {
                best = Some((*packing, bytes.len(), kind, stored));
            }
        }
        let (packing, raw, kind, stored) = best.expect("the best estimate is always coded");
        out.push(packing);
        out.push(kind as u8);
        pack::put_varint(out, raw as u64);
        pack::put_varint(out, stored.len() as u64);
        out.extend_from_slice(&stored);
    }
}

fn write_exceptions(
    out: &mut Vec<u8>,
    exceptions: &[usize],
    frames: &[u8],
    size: usize,
    choice: CodecChoice,
) {
    pack::put_varint(out, exceptions.len() as u64);
    if exceptions.is_empty() {
        return;
    }
    let mut raw = Vec::new();
    let mut next = 0;
    for &e in exceptions {
        pack::put_varint(&mut raw, (e - next) as u64);
        next = e + 1;
    }
    for &e in exceptions {
        raw.extend_from_slice(&frames[e * size..(e + 1) * size]);
    }
    write_section(out, &raw, choice);
}

/// Reads a group object's fields, failing on anything short or out of range.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.pos).ok_or("truncated group object")?;
        self.pos += 1;
        Ok(v)
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or("truncated group object")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn varint(&mut self) -> Result<u64, String> {
        Ok(pack::get_varint(self.b, &mut self.pos)?)
    }
    /// A varint that must be at most `max`.
    fn len(&mut self, max: usize, what: &str) -> Result<usize, String> {
        let v = self.varint()?;
        if v > max as u64 {
            return Err(format!("{what} {v} is over the limit {max}"));
        }
        Ok(v as usize)
    }
    /// An entropy-coded section of exactly `raw_len` bytes (`raw_len` at most `max`).
    fn section(&mut self, max: usize, what: &str) -> Result<Vec<u8>, String> {
        let kind = self.u8()?;
        let kind = Entropy::try_from(kind).map_err(|k| format!("{what}: unknown coder {k}"))?;
        let raw_len = self.len(max, what)?;
        let stored_len = self.len(self.b.len(), what)?;
        let stored = self.bytes(stored_len)?;
        decompress(kind, stored, raw_len)
            .map(std::borrow::Cow::into_owned)
            .map_err(|e| format!("{what}: {e}"))
    }
}

/// Decodes a group object made by [`encode_group`] for frames of `dims` and `dtype` into its
/// frames (little-endian, `[k, h, w, c]`). Hostile bytes give an error, never a panic; declared
/// lengths are checked before anything is allocated.
pub fn decode_group(obj: &[u8], dims: FrameDims, dtype: FrameDtype) -> Result<Vec<u8>, String> {
    let mut cur = Cursor { b: obj, pos: 0 };
    let version = cur.u8()?;
    if version != GROUP_VERSION {
        return Err(format!(
            "group object version {version} (this build reads {GROUP_VERSION})"
        ));
    }
    let dt = cur.u8()?;
    if FrameDtype::from_code(dt) != Some(dtype) {
        return Err(format!("group object dtype code {dt} is not {dtype}"));
    }
    let kind = cur.u8()?;
    let value = f64::from_le_bytes(cur.bytes(8)?.try_into().expect("8 bytes"));
    let coding = resolve(dtype, kind, value)?;
    let mut d = [0usize; 4];
    for v in &mut d {
        *v = cur.len(MAX_GROUP_ELEMENTS, "dimension")?;
    }
    let [h, w, c, k] = d;
    if (h, w, c) != (dims.h, dims.w, dims.c) {
        return Err(format!(
            "group object holds {h}x{w}x{c} frames, expected {}x{}x{}",
            dims.h, dims.w, dims.c
        ));
    }
    let total = group_elements(dims, k)?;
    let shift = u32::from(cur.u8()?);
    if shift > 63 {
        return Err(format!("context shift {shift} is over 63"));
    }
    let modes = cur.bytes(k)?.to_vec();
    if let Some(m) = modes.iter().find(|&&m| !predict::mode_is_valid(m)) {
        return Err(format!("unknown frame mode {m:#x}"));
    }
    if modes[0] & !INTER_CHANNEL != PRED_SPATIAL {
        return Err("the first frame of a group is not a keyframe".into());
    }
    let readers = read_streams(&mut cur, total)?;
    let size = dtype.size();
    let exceptions = read_exceptions(&mut cur, total, size)?;
    if cur.pos != obj.len() {
        return Err(format!(
            "{} trailing bytes after the group object",
            obj.len() - cur.pos
        ));
    }
    let _decode = profile::time_bytes(Stage::FrameDecode, total * size);
    let mut out = vec![0u8; total * size];
    let mut dec = Decoder {
        readers,
        exceptions,
        next_exc: 0,
        shift,
        out: &mut out,
        base: 0,
    };
    match coding {
        Coding::Lossless => match dtype {
            FrameDtype::U8 => dec.run(&Lossless::<1> { kind: IntKind::U8 }, dims, &modes)?,
            FrameDtype::U16 => dec.run(&Lossless::<2> { kind: IntKind::U16 }, dims, &modes)?,
            FrameDtype::F32 => dec.run(
                &Lossless::<4> {
                    kind: IntKind::F32Image,
                },
                dims,
                &modes,
            )?,
        },
        Coding::IntAbs(e) if dtype == FrameDtype::U8 => dec.run(
            &IntBounded::<1>::new(IntKind::U8, 255, e, None),
            dims,
            &modes,
        )?,
        Coding::IntAbs(e) => dec.run(
            &IntBounded::<2>::new(IntKind::U16, 65535, e, None),
            dims,
            &modes,
        )?,
        Coding::FloatAbs(e) => dec.run(&FloatAbs { e }, dims, &modes)?,
        Coding::Rel(r, steps) => dec.run(
            &IntBounded::<4>::new(IntKind::F32Image, u32::MAX as i64, steps, Some(r)),
            dims,
            &modes,
        )?,
    }
    Ok(out)
}

fn read_streams(cur: &mut Cursor<'_>, total: usize) -> Result<Vec<CodeReader>, String> {
    let n = cur.u8()? as usize;
    if n != CONTEXTS {
        return Err(format!("{n} code streams, expected {CONTEXTS}"));
    }
    let mut readers = Vec::with_capacity(n);
    let mut seen = 0usize;
    for _ in 0..n {
        let count = cur.len(total - seen, "stream code count")?;
        seen += count;
        if count == 0 {
            readers.push(CodeReader::Narrow {
                planes: Vec::new(),
                n: 0,
                width: 1,
                i: 0,
            });
            continue;
        }
        let packing = cur.u8()?;
        let reader = match packing {
            0 => CodeReader::Rle {
                bytes: cur.section(count * 10, "RLE stream")?,
                pos: 0,
                zeros: 0,
            },
            1..=8 => {
                let width = packing as usize;
                let planes = cur.section(count * width, "plane stream")?;
                if planes.len() != count * width {
                    return Err("plane stream of the wrong length".into());
                }
                CodeReader::Narrow {
                    planes,
                    n: count,
                    width,
                    i: 0,
                }
            }
            PACK_BITS => {
                let bytes = cur.section(count * 11 + 64, "binarized stream")?;
                pack::bits_reader(bytes, count)?
            }
            p => return Err(format!("unknown stream packing {p}")),
        };
        readers.push(reader);
    }
    if seen != total {
        return Err(format!("streams hold {seen} codes, the group has {total}"));
    }
    Ok(readers)
}

/// Exception positions (strictly increasing, inside the group) and their exact bytes.
fn read_exceptions(
    cur: &mut Cursor<'_>,
    total: usize,
    size: usize,
) -> Result<Vec<(usize, Vec<u8>)>, String> {
    let count = cur.len(total, "exception count")?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let raw = cur.section(count * (10 + size), "exceptions")?;
    let mut pos = 0;
    let mut next = 0u64;
    let mut at = Vec::with_capacity(count);
    for _ in 0..count {
        let e = next
            .checked_add(pack::get_varint(&raw, &mut pos)?)
            .filter(|&e| e < total as u64)
            .ok_or("exception position outside the group")?;
        at.push(e as usize);
        next = e + 1;
    }
    if raw.len() - pos != count * size {
        return Err("exception values of the wrong length".into());
    }
    Ok(at
        .into_iter()
        .zip(raw[pos..].chunks_exact(size))
        .map(|(e, v)| (e, v.to_vec()))
        .collect())
}

/// The decoder's state across the frames of a group.
struct Decoder<'a> {
    readers: Vec<CodeReader>,
    exceptions: Vec<(usize, Vec<u8>)>,
    next_exc: usize,
    shift: u32,
    out: &'a mut [u8],
    /// Group index of the current frame's first element.
    base: usize,
}

struct DecVisit<'a, 'b, Q: Quant> {
    q: &'a Q,
    d: &'a mut Decoder<'b>,
    mags: &'a mut [u32],
    g: Padded,
}

impl<Q: Quant> Visit<Q::W> for DecVisit<'_, '_, Q> {
    #[inline(always)]
    fn visit(&mut self, e: usize, p: usize, ch: usize, pred: Q::W) -> Result<Q::W, String> {
        let d = &mut *self.d;
        let ctx = predict::context(self.mags, self.g, p, ch, d.shift);
        let code = d.readers[ctx].next_code()?;
        self.mags[p] = predict::mag(code);
        let at = d.base + e;
        let slot = &mut d.out[at * Q::SIZE..(at + 1) * Q::SIZE];
        match d.exceptions.get(d.next_exc) {
            Some((pos, bytes)) if *pos == at => {
                d.next_exc += 1;
                slot.copy_from_slice(bytes);
                Ok(self.q.load(bytes))
            }
            _ => {
                let r = self.q.decode(code, pred);
                self.q.store(r, slot);
                Ok(r)
            }
        }
    }
}

impl Decoder<'_> {
    fn run<Q: Quant>(&mut self, q: &Q, dims: FrameDims, modes: &[u8]) -> Result<(), String> {
        let g = Padded {
            h: dims.h,
            w: dims.w,
            c: dims.c,
        };
        let fe = g.h * g.w * g.c;
        let mut prev: Vec<Q::W> = Vec::new();
        let mut cur = vec![Q::W::default(); g.len()];
        let mut mags = vec![0u32; g.len()];
        for (f, &mode) in modes.iter().enumerate() {
            self.base = f * fe;
            let mut v = DecVisit {
                q,
                d: self,
                mags: &mut mags,
                g,
            };
            predict::walk_frame(g, mode, &prev, &mut cur, &mut v)?;
            if prev.len() != g.len() {
                prev = vec![Q::W::default(); g.len()];
            }
            std::mem::swap(&mut prev, &mut cur);
        }
        if self.readers.iter().any(|r| !r.finished()) {
            return Err("code streams hold more codes than the group".into());
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A smooth evolving field (2D heat equation with a moving source), `t` frames of `h x w`
    /// F32: the kind of sequence a simulation writes.
    pub(crate) fn heat_sequence(t: usize, h: usize, w: usize) -> Vec<u8> {
        let mut u = vec![0f32; h * w];
        let mut out = Vec::with_capacity(t * h * w * 4);
        for step in 0..t * 4 {
            let (sy, sx) = (
                h / 2 + ((step as f32 * 0.05).sin() * h as f32 * 0.3) as usize,
                w / 2 + ((step as f32 * 0.03).cos() * w as f32 * 0.3) as usize,
            );
            u[sy * w + sx] += 50.0;
            let prev = u.clone();
            for y in 0..h {
                for x in 0..w {
                    let at = |yy: usize, xx: usize| prev[yy.min(h - 1) * w + xx.min(w - 1)];
                    let lap = at(y.wrapping_sub(1).min(h - 1), x)
                        + at(y + 1, x)
                        + at(y, x.wrapping_sub(1).min(w - 1))
                        + at(y, x + 1)
                        - 4.0 * prev[y * w + x];
                    u[y * w + x] = prev[y * w + x] + 0.2 * lap - 0.001 * prev[y * w + x];
                }
            }
            if step % 4 == 3 {
                out.extend(u.iter().flat_map(|v| v.to_le_bytes()));
            }
        }
        out
    }

    fn check_abs(dtype: FrameDtype, orig: &[u8], dec: &[u8], e: f64) {
        assert_eq!(orig.len(), dec.len());
        let s = dtype.size();
        for (a, b) in orig.chunks_exact(s).zip(dec.chunks_exact(s)) {
            let (x, y) = match dtype {
                FrameDtype::U8 => (f64::from(a[0]), f64::from(b[0])),
                FrameDtype::U16 => (
                    f64::from(u16::from_le_bytes([a[0], a[1]])),
                    f64::from(u16::from_le_bytes([b[0], b[1]])),
                ),
                FrameDtype::F32 => {
                    let (x, y) = (
                        f32::from_le_bytes(a.try_into().unwrap()),
                        f32::from_le_bytes(b.try_into().unwrap()),
                    );
                    if !x.is_finite() {
                        assert_eq!(x.to_bits(), y.to_bits());
                        continue;
                    }
                    (f64::from(x), f64::from(y))
                }
            };
            assert!((x - y).abs() <= e, "{x} decoded as {y}, bound {e}");
        }
    }

    /// Encodes and decodes; the encoder's reconstruction must be what the decoder returns.
    fn round_trip(dims: FrameDims, dtype: FrameDtype, data: &[u8], bound: FrameBound) -> Vec<u8> {
        let (obj, recon) =
            encode_group_reconstructed(dims, dtype, data, bound, CodecChoice::Auto).unwrap();
        let dec = decode_group(&obj, dims, dtype).unwrap();
        assert!(
            dec == recon,
            "the encoder's reconstruction is not what decodes"
        );
        dec
    }

    fn dims_strategy() -> impl Strategy<Value = (FrameDims, usize)> {
        (1usize..9, 1usize..9, 1usize..5, 1usize..6)
            .prop_map(|(h, w, c, k)| (FrameDims { h, w, c }, k))
    }

    /// Smooth-ish integers: a random walk, so predictors see structure and noise.
    fn walk(seed: u64, n: usize, max: i64) -> Vec<i64> {
        let mut x = seed | 1;
        let mut v = max / 2;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v = (v + (x % 9) as i64 - 4).clamp(0, max);
                if x.is_multiple_of(97) {
                    (x % (max as u64 + 1)) as i64
                } else {
                    v
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn integers_stay_within_the_bound(
            (dims, k) in dims_strategy(), seed in any::<u64>(), e in 0u32..9, wide in any::<bool>(),
        ) {
            let n = dims.elements().unwrap() * k;
            let (dtype, data): (FrameDtype, Vec<u8>) = if wide {
                (FrameDtype::U16, walk(seed, n, 65535).iter().flat_map(|&v| (v as u16).to_le_bytes()).collect())
            } else {
                (FrameDtype::U8, walk(seed, n, 255).iter().map(|&v| v as u8).collect())
            };
            let dec = round_trip(dims, dtype, &data, FrameBound::Abs(f64::from(e)));
            check_abs(dtype, &data, &dec, f64::from(e));
            prop_assert_eq!(round_trip(dims, dtype, &data, FrameBound::Lossless), data);
        }

        #[test]
        fn floats_stay_within_the_bound(
            (dims, k) in dims_strategy(),
            vals in prop::collection::vec(prop_oneof![
                8 => -1e3f32..1e3,
                1 => any::<f32>(),
                1 => Just(0.0f32),
            ], 512),
            e in prop_oneof![Just(1e-6f64), 1e-4f64..10.0],
            rel in 1e-5f64..0.3,
        ) {
            let n = dims.elements().unwrap() * k;
            let data: Vec<u8> = vals.iter().cycle().take(n).flat_map(|v| v.to_le_bytes()).collect();
            let dec = round_trip(dims, FrameDtype::F32, &data, FrameBound::Abs(e));
            check_abs(FrameDtype::F32, &data, &dec, e);
            let dec = round_trip(dims, FrameDtype::F32, &data, FrameBound::Rel(rel));
            for (a, b) in data.chunks_exact(4).zip(dec.chunks_exact(4)) {
                let (x, y) = (f32::from_le_bytes(a.try_into().unwrap()), f32::from_le_bytes(b.try_into().unwrap()));
                if x == 0.0 {
                    prop_assert_eq!(x.to_bits(), y.to_bits(), "zero sign under rel");
                } else if x.is_finite() {
                    prop_assert!((f64::from(x) - f64::from(y)).abs() <= rel * f64::from(x).abs(), "{} -> {}", x, y);
                } else {
                    prop_assert_eq!(x.to_bits(), y.to_bits());
                }
            }
            prop_assert_eq!(round_trip(dims, FrameDtype::F32, &data, FrameBound::Lossless), data);
        }

        #[test]
        fn frame_contexts_are_the_decoders(
            (dims, _) in dims_strategy(),
            seed in any::<u64>(),
            shift in 0u32..10,
            wide in any::<bool>(),
        ) {
            let g = Padded { h: dims.h, w: dims.w, c: dims.c };
            let n = g.h * g.w * g.c;
            let codes: Vec<i64> = walk(seed, n, 255)
                .iter()
                .map(|&v| if wide { (v - 128) * 40_000_000 } else { v - 128 })
                .collect();
            let mut mags = vec![0u32; g.len()];
            frame_magnitudes(&codes, g, &mut mags);
            let mut got = vec![0u8; n];
            frame_contexts(&mags, g, shift, &predict::bucket_table(), &mut got);
            // The decoder's order: one element at a time, its magnitude written after its context.
            let mut seen = vec![0u32; g.len()];
            let mut e = 0;
            for y in 0..g.h {
                for x in 0..g.w {
                    for ch in 0..g.c {
                        let p = g.at(y, x) + ch;
                        prop_assert_eq!(usize::from(got[e]), predict::context(&seen, g, p, ch, shift));
                        seen[p] = predict::mag(codes[e]);
                        e += 1;
                    }
                }
            }
        }

        #[test]
        fn hostile_objects_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let dims = FrameDims { h: 3, w: 4, c: 2 };
            for dtype in [FrameDtype::U8, FrameDtype::U16, FrameDtype::F32] {
                let _ = decode_group(&bytes, dims, dtype);
            }
        }

        #[test]
        fn corrupted_objects_never_panic(seed in any::<u64>(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
            let dims = FrameDims { h: 5, w: 6, c: 3 };
            let data: Vec<u8> = walk(seed, 5 * 6 * 3 * 3, 255).iter().map(|&v| v as u8).collect();
            for bound in [FrameBound::Lossless, FrameBound::Abs(2.0)] {
                let mut obj = encode_group(dims, FrameDtype::U8, &data, bound, CodecChoice::Zstd).unwrap();
                for &(at, v) in &flips {
                    let i = at % obj.len();
                    obj[i] ^= v | 1;
                }
                let _ = decode_group(&obj, dims, FrameDtype::U8);
                obj.truncate(seed as usize % obj.len());
                let _ = decode_group(&obj, dims, FrameDtype::U8);
            }
        }
    }

    /// Found by `floats_stay_within_the_bound`: under an absolute bound, a tiny negative value
    /// predicted from -0.0 rounds to the code -0.0; the encoder kept -0.0 where the decoder,
    /// from the integer code, writes +0.0, so the commit's hash (of the encoder's
    /// reconstruction) would not have matched the checkout.
    #[test]
    fn encoder_reconstruction_keeps_the_decoders_zero_sign() {
        let mut vals = vec![0.0f32; 112];
        for (i, v) in [
            (16, -7.875_968_6e30),
            (24, -0.0),
            (80, -7.161_117e-34),
            (107, -3.171_384_3e34),
        ] {
            vals[i] = v;
        }
        let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims = FrameDims { h: 7, w: 8, c: 1 };
        round_trip(dims, FrameDtype::F32, &data, FrameBound::Abs(1e-6));
    }

    /// Found by the audit: under a relative bound +0.0 predicted from -0.0 passed the check
    /// `|x - x'| <= r |x|` (0 <= 0) and came back -0.0; -0.0 predicted from +0.0 was kept.
    #[test]
    fn relative_bound_keeps_the_sign_of_every_zero() {
        let dims = FrameDims { h: 3, w: 4, c: 1 };
        for (field, odd) in [(-0.0f32, 0.0f32), (0.0, -0.0)] {
            let mut vals = [field; 12];
            vals[5] = odd;
            vals[10] = odd;
            let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
            for r in [0.01, 0.5] {
                let dec = round_trip(dims, FrameDtype::F32, &data, FrameBound::Rel(r));
                assert_eq!(dec, data, "rel:{r}, zeros of {field} around {odd}");
            }
        }
        // A run of +0.0 beside a run of -0.0 in a smooth field, over several frames.
        let dims = FrameDims { h: 6, w: 10, c: 1 };
        let data: Vec<u8> = (0..3 * 60)
            .map(|i| match i % 60 {
                20..30 => 0.0f32,
                30..40 => -0.0,
                j => 1.0 + (j + i / 60) as f32 * 0.01,
            })
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let dec = round_trip(dims, FrameDtype::F32, &data, FrameBound::Rel(0.01));
        for (a, b) in data.chunks_exact(4).zip(dec.chunks_exact(4)) {
            if f32::from_le_bytes(a.try_into().unwrap()) == 0.0 {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn lossless_keeps_every_f32_bit_pattern() {
        let specials = [
            f32::NAN.to_bits(),
            0x7fc1_2345,
            0xffa0_0001,
            0x7f80_0001,
            (-0.0f32).to_bits(),
            0,
            f32::INFINITY.to_bits(),
            f32::NEG_INFINITY.to_bits(),
            1,
            0x8000_0001,
            f32::MAX.to_bits(),
        ];
        let data: Vec<u8> = (0..3 * 4 * 4)
            .map(|i| {
                if i % 3 == 0 {
                    specials[i % specials.len()]
                } else {
                    (i as f32 * 0.1).to_bits()
                }
            })
            .flat_map(|b: u32| b.to_le_bytes())
            .collect();
        let dims = FrameDims { h: 4, w: 4, c: 1 };
        assert_eq!(
            round_trip(dims, FrameDtype::F32, &data, FrameBound::Lossless),
            data
        );
        // Under a bound, non-finite values (payloads included) and -0.0 come back exactly too.
        for bound in [FrameBound::Abs(0.5), FrameBound::Rel(0.01)] {
            let dec = round_trip(dims, FrameDtype::F32, &data, bound);
            for (a, b) in data.chunks_exact(4).zip(dec.chunks_exact(4)) {
                let x = f32::from_le_bytes(a.try_into().unwrap());
                if !x.is_finite() || x.to_bits() == (-0.0f32).to_bits() {
                    assert_eq!(a, b, "{x} under {bound:?}");
                }
            }
        }
    }

    /// `modes_to_run` as it was before candidates could be cut short: every candidate's whole
    /// estimate, then those within the margin of the best.
    fn modes_in_full<Q: Quant>(
        q: &Q,
        g: Padded,
        first: bool,
        prev: &[Q::W],
        xp: &[Q::W],
    ) -> Vec<u8> {
        let all = candidates(first, g.c);
        if all.len() == 1 || g.h < MIN_ESTIMATE_ROWS {
            return all;
        }
        let mut scratch = vec![Q::W::default(); g.len()];
        let costs: Vec<u64> = all
            .iter()
            .map(|&m| band_cost(q, g, m, (prev, xp), &mut scratch, None).unwrap())
            .collect();
        let limit = *costs.iter().min().unwrap() as f64 * (1.0 + ESTIMATE_MARGIN);
        all.into_iter()
            .zip(costs)
            .filter(|&(_, c)| c as f64 <= limit)
            .map(|(m, _)| m)
            .collect()
    }

    #[test]
    fn cut_estimates_choose_the_modes_of_full_ones() {
        // Frames where different predictors win: a drifting random walk (temporal), the same
        // walk shifted (spatial and 3D Lorenzo near each other), fresh noise (a scene cut).
        let g = Padded { h: 40, w: 24, c: 3 };
        let n = g.h * g.w * g.c;
        let pad = |frame: &[i64]| {
            let mut xp = vec![0i16; g.len()];
            for y in 0..g.h {
                for x in 0..g.w * g.c {
                    xp[g.at(y, 0) + x] = frame[(y * g.w) * g.c + x] as i16;
                }
            }
            xp
        };
        let base = walk(7, n, 255);
        let frames: Vec<Vec<i16>> = vec![
            pad(&base),
            pad(&base.iter().map(|&v| (v + 3).min(255)).collect::<Vec<_>>()),
            pad(&base[g.c..]
                .iter()
                .chain(&base[..g.c])
                .copied()
                .collect::<Vec<_>>()),
            pad(&walk(99, n, 255)),
        ];
        let mut checked = 0;
        for (e, q) in [(0, None), (1, Some(1)), (2, Some(2)), (4, Some(4))] {
            let lossy = q.map(|e| IntBounded::<1>::new(IntKind::U8, 255, e, None));
            for (prev, xp) in frames.iter().zip(&frames[1..]) {
                for guess in [
                    None,
                    Some(PRED_SPATIAL),
                    Some(PRED_TEMPORAL | INTER_CHANNEL),
                    Some(PRED_LORENZO3),
                ] {
                    let mut scratch = vec![0i16; g.len()];
                    let (got, want) = match &lossy {
                        Some(q) => (
                            modes_to_run(q, g, (false, guess), prev, xp, &mut scratch),
                            modes_in_full(q, g, false, prev, xp),
                        ),
                        None => {
                            let q = Lossless::<1> { kind: IntKind::U8 };
                            (
                                modes_to_run(&q, g, (false, guess), prev, xp, &mut scratch),
                                modes_in_full(&q, g, false, prev, xp),
                            )
                        }
                    };
                    assert_eq!(got, want, "bound {e}, guess {guess:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 4 * 3 * 4);
    }

    /// Frames tall enough for the mode estimate on bands of rows (smaller ones try every mode in
    /// full): the bound holds, and the encoder's reconstruction is what decodes.
    #[test]
    fn tall_frames_keep_the_bound_with_estimated_modes() {
        let dims = FrameDims { h: 48, w: 20, c: 3 };
        let n = dims.elements().unwrap() * 5;
        let data: Vec<u8> = walk(7, n, 255).iter().map(|&v| v as u8).collect();
        for e in [0u32, 1, 2, 4] {
            let dec = round_trip(dims, FrameDtype::U8, &data, FrameBound::Abs(f64::from(e)));
            check_abs(FrameDtype::U8, &data, &dec, f64::from(e));
        }
        assert_eq!(
            round_trip(dims, FrameDtype::U8, &data, FrameBound::Lossless),
            data
        );
        let floats = heat_sequence(4, 40, 12);
        let dims = FrameDims { h: 40, w: 12, c: 1 };
        for bound in [FrameBound::Abs(1e-3), FrameBound::Rel(1e-2)] {
            round_trip(dims, FrameDtype::F32, &floats, bound);
        }
    }

    /// Frames of 0 and the largest value in a checkerboard that flips every frame: the largest
    /// predictions and residuals every mode can make (the walk keeps U8 in i16 and U16 in i32;
    /// debug builds would panic on an overflow). Frames this short try every mode in full.
    #[test]
    fn extreme_values_walk_every_mode() {
        let dims = FrameDims { h: 6, w: 7, c: 3 };
        let (n, k) = (dims.elements().unwrap(), 4);
        let hot = |i: usize| (i / n + i % n + (i % n) / (dims.w * 3)) % 2 == 1;
        let u8s: Vec<u8> = (0..n * k).map(|i| if hot(i) { 255 } else { 0 }).collect();
        let u16s: Vec<u8> = (0..n * k)
            .flat_map(|i| if hot(i) { [0xff, 0xff] } else { [0, 0] })
            .collect();
        for (dtype, data) in [(FrameDtype::U8, &u8s), (FrameDtype::U16, &u16s)] {
            assert_eq!(&round_trip(dims, dtype, data, FrameBound::Lossless), data);
            for e in [0.0, 1.0, 3.0, 300.0] {
                let dec = round_trip(dims, dtype, data, FrameBound::Abs(e));
                check_abs(dtype, data, &dec, e);
            }
        }
    }

    #[test]
    fn u8_abs_1_uses_step_3() {
        let dims = FrameDims { h: 1, w: 6, c: 1 };
        let data = [100u8, 101, 102, 103, 104, 105];
        let dec = round_trip(dims, FrameDtype::U8, &data, FrameBound::Abs(1.0));
        check_abs(FrameDtype::U8, &data, &dec, 1.0);
        assert_eq!(dec, [99, 102, 102, 102, 105, 105]); // multiples of 3 around the predictions
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dims = FrameDims { h: 2, w: 2, c: 1 };
        let enc = |dtype, len, bound| {
            encode_group(dims, dtype, &vec![0u8; len], bound, CodecChoice::Auto)
        };
        assert!(enc(FrameDtype::U8, 5, FrameBound::Lossless).is_err());
        assert!(enc(FrameDtype::U8, 0, FrameBound::Lossless).is_err());
        assert!(enc(FrameDtype::U8, 4, FrameBound::Rel(0.1)).is_err());
        assert!(enc(FrameDtype::F32, 16, FrameBound::Abs(-1.0)).is_err());
        assert!(enc(FrameDtype::F32, 16, FrameBound::Rel(f64::NAN)).is_err());
        let obj = enc(FrameDtype::U8, 8, FrameBound::Lossless).unwrap();
        assert!(decode_group(&obj, dims, FrameDtype::U16).is_err());
        assert!(decode_group(&obj, FrameDims { h: 4, w: 1, c: 1 }, FrameDtype::U8).is_err());
        let mut v2 = obj.clone();
        v2[0] = 2;
        assert!(decode_group(&v2, dims, FrameDtype::U8)
            .unwrap_err()
            .contains("version"));
        let mut long = obj.clone();
        long.push(0);
        assert!(decode_group(&long, dims, FrameDtype::U8).is_err());
        assert_eq!(
            decode_group(&obj, dims, FrameDtype::U8).unwrap(),
            vec![0u8; 8]
        );
    }

    #[test]
    fn huge_declared_group_is_refused_before_allocating() {
        let dims = FrameDims {
            h: 1000,
            w: 1000,
            c: 3,
        };
        let mut obj = vec![GROUP_VERSION, 0, 0];
        obj.extend_from_slice(&0f64.to_le_bytes());
        for v in [1000u64, 1000, 3, 1 << 20] {
            pack::put_varint(&mut obj, v);
        }
        let err = decode_group(&obj, dims, FrameDtype::U8).unwrap_err();
        assert!(err.contains("over"), "{err}");
    }

    #[test]
    fn smooth_floats_compress_and_keep_the_bound() {
        let (t, h, w) = (6, 24, 20);
        let data = heat_sequence(t, h, w);
        let dims = FrameDims { h, w, c: 1 };
        for e in [1e-3, 1e-2] {
            let obj = encode_group(
                dims,
                FrameDtype::F32,
                &data,
                FrameBound::Abs(e),
                CodecChoice::Auto,
            )
            .unwrap();
            assert!(
                obj.len() * 4 < data.len(),
                "abs {e}: {} of {}",
                obj.len(),
                data.len()
            );
            check_abs(
                FrameDtype::F32,
                &data,
                &decode_group(&obj, dims, FrameDtype::F32).unwrap(),
                e,
            );
        }
    }
}
