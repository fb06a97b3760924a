//! Error-bounded chunks (Delta-DNN): log-quantized codes against the reconstructed reference,
//! exceptions kept exactly, the codes packed by zero-run RLE or narrow byte planes (whichever
//! is smaller) and then the entropy stage.
//!
//! A keyframe (no reference) under a relative bound is coded against `sign(A) * 1.0`, so its codes
//! are the quantized `ln|A|`; the sign bits are stored beside them. Under an absolute bound the
//! keyframe reference is zero.
//!
//! Nearest and dithered chunks: `[params][codes][exception positions][exception values][signs]`,
//! params `[bound kind u8][eps f64][max_code u32][rounding u8]`; the transform byte holds
//! [`KEYFRAME`] and [`NARROW_CODES`] flags.
//!
//! Lattice chunks: `[params][exception positions][exception values][signs][fresh positions]
//! [fresh codes][fresh signs][code stream]...`, params as above plus `[top u16]` (see
//! `codec::context`: a delta's codes come in one stream per binade of the reference below `top`,
//! a keyframe's in one), each stream a form byte (0 RLE, 1 narrow planes) and its codes; the
//! transform byte holds [`KEYFRAME`] and [`ANCHOR`].

use crate::profile::{self, Stage};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::centred;
use super::chunk::{write_chunk, ChunkCodec, ParsedChunk, Section, KEYFRAME};
use super::context;
use super::entropy::{CodecChoice, Entropy, Repeats};
use super::error::{CodecError, CodecResult};
use super::logquant::{self, ErrorBound, FloatKind, FreshCodes, PowerTable, QuantizedChunk};
use super::planes;
use super::varint::{get_varint, put_varint};
use crate::bound::Bound;
use crate::dtype::Dtype;

/// Transform flag: codes stored as narrow little-endian integers in byte planes, not RLE.
const NARROW_CODES: u8 = 2;
/// Transform flag (lattice): a delta that moves its parent onto the lattice ([`Basis::Anchor`]).
const ANCHOR: u8 = 4;

/// What a chunk is coded against.
#[derive(Clone, Copy, Debug)]
pub enum Basis<'a> {
    /// Nothing: a keyframe.
    Keyframe,
    /// The reconstructed parent chunk, already on this chain's lattice.
    Parent(&'a [u8]),
    /// The reconstructed parent chunk of a chain that does not sit on this lattice: the first
    /// delta after an exact parent (a lossless snapshot) or a parent under another bound. Every
    /// element is placed from the parent onto its own grid, so the grids' offsets against the
    /// weights are spread over whole cells and a layer drifting together moves without bias
    /// (on a grid centred on exact values, a drift under half a step would freeze the whole
    /// layer). Other roundings read it as [`Basis::Parent`].
    Anchor(&'a [u8]),
}

impl<'a> Basis<'a> {
    /// The parent chunk, if any.
    pub fn parent(self) -> Option<&'a [u8]> {
        match self {
            Basis::Keyframe => None,
            Basis::Parent(r) | Basis::Anchor(r) => Some(r),
        }
    }

    /// Whether a delta after a parent stored under `parent_bound` anchors its chain on the
    /// lattice of `bound`: the parent is exact or had another bound. (A lattice keyframe of the
    /// same bound already sits on the grid, its offsets spread over whole cells.)
    pub fn anchors_after(parent_bound: Bound, bound: Bound) -> bool {
        parent_bound != bound
    }

    /// `Parent` or `Anchor` over `reference`, as [`Basis::anchors_after`] says.
    pub fn delta(reference: &'a [u8], anchor: bool) -> Basis<'a> {
        if anchor {
            Basis::Anchor(reference)
        } else {
            Basis::Parent(reference)
        }
    }
}
/// Largest code magnitude: covers the whole F32 range for every bound we accept.
const MAX_CODE_LIMIT: u32 = 1 << 20;

/// What coding one chunk measured, summed per tensor into the manifest.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkStats {
    /// Elements.
    pub elements: u64,
    /// Elements whose code is 0 (and not an exception).
    pub zero_codes: u64,
    /// Elements stored exactly.
    pub exceptions: u64,
    /// Elements the reference could not hold, placed on their lattice instead (sign flips, zeros).
    pub fresh: u64,
    /// Order-0 entropy of the codes, in bits, times the element count.
    pub entropy_bits: f64,
    /// Bytes the packed codes took.
    pub code_bytes: u64,
}

impl ChunkStats {
    /// Adds another chunk's figures.
    pub fn add(&mut self, o: &ChunkStats) {
        self.elements += o.elements;
        self.zero_codes += o.zero_codes;
        self.exceptions += o.exceptions;
        self.fresh += o.fresh;
        self.entropy_bits += o.entropy_bits;
        self.code_bytes += o.code_bytes;
    }
}

fn float_kind(dtype: Dtype) -> Option<FloatKind> {
    match dtype {
        Dtype::F16 => Some(FloatKind::F16),
        Dtype::BF16 => Some(FloatKind::BF16),
        Dtype::F32 => Some(FloatKind::F32),
        Dtype::F64 => Some(FloatKind::F64),
        _ => None,
    }
}

pub(crate) fn error_bound(bound: Bound) -> Option<ErrorBound> {
    match bound {
        Bound::Rel(e) => Some(ErrorBound::Relative(e)),
        Bound::Abs(e) => Some(ErrorBound::Absolute(e)),
        Bound::Lossless => None,
    }
}

/// How codes are rounded. The discriminants are on disk.
///
/// Nearest rounding on one global grid freezes a weight while it drifts less than a step from its
/// reconstruction, so a whole slowly-moving layer keeps an old value: every element stays within
/// the bound, yet accuracy suffers. Dithered rounding codes at half the step with
/// `M = floor(x + u)`: unbiased, but a quantizer twice as fine (about a bit per element more) that
/// re-randomizes weights that do not move. The lattice gives every element a grid of its own,
/// offset by a hashed fraction of a step: a weight that does not move costs code 0, a layer that
/// drifts slowly moves a share of its weights by a step each snapshot (unbiased across the layer),
/// and elements the reference cannot hold (sign flips, zeros) are placed on their grid for a few
/// bits instead of being stored exactly (measured in BENCHMARKS.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Rounding {
    /// Round to the nearest code; keep the reference when it already meets the bound.
    Nearest = 0,
    /// Unbiased stochastic rounding at half the step.
    Dither = 1,
    /// Nearest point of a per-element grid (see `PowerTable::lattice`).
    #[default]
    Lattice = 2,
}

impl TryFrom<u8> for Rounding {
    type Error = CodecError;
    fn try_from(v: u8) -> CodecResult<Self> {
        match v {
            0 => Ok(Rounding::Nearest),
            1 => Ok(Rounding::Dither),
            2 => Ok(Rounding::Lattice),
            value => Err(CodecError::UnknownTag {
                what: "rounding",
                value,
            }),
        }
    }
}

impl std::str::FromStr for Rounding {
    type Err = CodecError;
    fn from_str(s: &str) -> CodecResult<Self> {
        match s {
            "nearest" => Ok(Rounding::Nearest),
            "dither" => Ok(Rounding::Dither),
            "lattice" => Ok(Rounding::Lattice),
            other => Err(CodecError::UnknownName {
                what: "rounding",
                name: other.to_string(),
                choices: "lattice, nearest or dither",
            }),
        }
    }
}

/// Code range for a bound: enough steps to span the F32 exponent range in the log domain.
pub(crate) fn max_code_for(bound: ErrorBound, rounding: Rounding) -> u32 {
    let per_step = match rounding {
        Rounding::Dither => 2.0,
        Rounding::Nearest | Rounding::Lattice => 1.0,
    };
    match bound {
        ErrorBound::Relative(e) => {
            ((per_step * 90.0 / (2.0 * e.ln_1p())).ceil() as u32).clamp(1, MAX_CODE_LIMIT)
        }
        ErrorBound::Absolute(_) => MAX_CODE_LIMIT,
    }
}

/// Power tables kept per process.
const TABLE_CACHE_ENTRIES: usize = 16;

type TableCache = Mutex<HashMap<(u8, u64, u32, u8), Arc<PowerTable>>>;

fn table_cache() -> &'static TableCache {
    static CACHE: OnceLock<TableCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The power table for `(bound, max_code, rounding)`, built once per process (while fewer than
/// [`TABLE_CACHE_ENTRIES`] others are kept).
pub(crate) fn table(
    bound: ErrorBound,
    max_code: u32,
    rounding: Rounding,
) -> CodecResult<Arc<PowerTable>> {
    let key = match bound {
        ErrorBound::Relative(e) => (1, e.to_bits(), max_code, rounding as u8),
        ErrorBound::Absolute(e) => (2, e.to_bits(), max_code, rounding as u8),
    };
    let cache = table_cache();
    if let Some(t) = cache.lock().expect("table cache").get(&key) {
        return Ok(t.clone());
    }
    let built = match rounding {
        Rounding::Nearest => PowerTable::new(bound, max_code),
        Rounding::Dither => PowerTable::dithered(bound, max_code),
        Rounding::Lattice => PowerTable::lattice(bound, max_code),
    };
    let t = Arc::new(built?);
    let mut cache = cache.lock().expect("table cache");
    // A repository uses a handful of bounds; hostile chunks could name endless ones, so the
    // cache is bounded (a table can be 16 MiB).
    if cache.len() >= TABLE_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, t.clone());
    Ok(t)
}

/// Where the quantizer's element-wise math runs: the CPU ([`CpuQuant`]) or the CUDA backend.
/// Both give bit-identical reconstructions, so a chunk coded by one decodes on the other.
pub trait QuantEngine: Sync + Send {
    /// `logquant::quantize`: codes, exceptions and the reconstruction the decoder will produce.
    fn quantize(
        &self,
        kind: FloatKind,
        target: &[u8],
        reference: &[u8],
        table: &PowerTable,
    ) -> CodecResult<(QuantizedChunk, Vec<u8>)>;

    /// `logquant::dequantize`.
    fn dequantize(
        &self,
        kind: FloatKind,
        reference: &[u8],
        q: &QuantizedChunk,
        table: &PowerTable,
    ) -> CodecResult<Vec<u8>>;
}

/// The quantizer on the calling CPU thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuQuant;

impl QuantEngine for CpuQuant {
    fn quantize(
        &self,
        kind: FloatKind,
        target: &[u8],
        reference: &[u8],
        table: &PowerTable,
    ) -> CodecResult<(QuantizedChunk, Vec<u8>)> {
        Ok(logquant::quantize(kind, target, reference, table)?)
    }

    fn dequantize(
        &self,
        kind: FloatKind,
        reference: &[u8],
        q: &QuantizedChunk,
        table: &PowerTable,
    ) -> CodecResult<Vec<u8>> {
        Ok(logquant::dequantize(kind, reference, q, table)?)
    }
}

/// True when `dtype` can be stored under a lossy bound.
pub fn supports(dtype: Dtype) -> bool {
    float_kind(dtype).is_some()
}

/// `±1.0` in `kind` with the sign of each element of `target` (the keyframe predictor).
fn sign_reference(kind: FloatKind, target: &[u8]) -> Vec<u8> {
    let one: &[u8] = match kind {
        FloatKind::F16 => &[0x00, 0x3c],
        FloatKind::BF16 => &[0x80, 0x3f],
        FloatKind::F32 => &[0x00, 0x00, 0x80, 0x3f],
        FloatKind::F64 => &[0, 0, 0, 0, 0, 0, 0xf0, 0x3f],
    };
    // Whole elements of a width known at compile time: no copy call per element.
    fn fill<const W: usize>(one: &[u8], target: &[u8]) -> Vec<u8> {
        let one: [u8; W] = one.try_into().expect("one element");
        let mut out = vec![0u8; target.len()];
        for (o, e) in out
            .as_chunks_mut::<W>()
            .0
            .iter_mut()
            .zip(target.as_chunks::<W>().0)
        {
            *o = one;
            o[W - 1] |= e[W - 1] & 0x80;
        }
        out
    }
    match kind.size() {
        2 => fill::<2>(one, target),
        4 => fill::<4>(one, target),
        _ => fill::<8>(one, target),
    }
}

fn pack_signs(kind: FloatKind, target: &[u8]) -> Vec<u8> {
    let w = kind.size();
    let n = target.len() / w;
    let mut bits = vec![0u8; n.div_ceil(8)];
    for (i, e) in target.chunks_exact(w).enumerate() {
        bits[i / 8] |= (e[w - 1] >> 7) << (i % 8);
    }
    bits
}

fn unpack_sign_reference(kind: FloatKind, bits: &[u8], n: usize) -> CodecResult<Vec<u8>> {
    if bits.len() != n.div_ceil(8) {
        return Err(CodecError::BitSection {
            section: "sign",
            len: bits.len(),
            elements: n,
        });
    }
    // `sign_reference` of elements whose top bytes carry the signs, written directly.
    let w = kind.size();
    let mut out = sign_reference(kind, &vec![0u8; n * w]);
    for (i, o) in out.chunks_exact_mut(w).enumerate() {
        o[w - 1] |= ((bits[i / 8] >> (i % 8)) & 1) << 7;
    }
    Ok(out)
}

/// Zero-run RLE of codes into varints: an odd token `2k+1` is a run of `k` zeros, an even token
/// `2z` a nonzero code whose zigzag value is `z`.
fn rle_encode(codes: &[i32]) -> Vec<u8> {
    let mut out = Vec::new();
    rle_encode_into(codes, &mut out);
    out
}

/// Appends [`rle_encode`]`(codes)` to `out`.
fn rle_encode_into(codes: &[i32], out: &mut Vec<u8>) {
    out.reserve(codes.len() / 4 + 16);
    let mut run = 0u64;
    for &c in codes {
        if c == 0 {
            run += 1;
            continue;
        }
        if run > 0 {
            put_varint(out, (run << 1) | 1);
            run = 0;
        }
        let z = ((c << 1) ^ (c >> 31)) as u32 as u64;
        // Most codes are small: a one-byte token without the varint loop.
        if z < 64 {
            out.push((z << 1) as u8);
        } else {
            put_varint(out, z << 1);
        }
    }
    if run > 0 {
        put_varint(out, (run << 1) | 1);
    }
}

/// Codes of an RLE stream, at most `limit` of them.
fn rle_decode_upto(bytes: &[u8], limit: usize) -> CodecResult<Vec<i32>> {
    let mut out = Vec::new();
    rle_decode_while(bytes, &mut 0, limit, &mut out, Some)?;
    Ok(out)
}

/// Decodes the tokens of an RLE stream from `*pos` into `out` (at most `limit` codes in all)
/// while `fit` takes every code; returns the first code it refuses (its token read), or `None`
/// at the end of the stream.
#[inline(always)]
fn rle_decode_while<T: Copy + Default>(
    bytes: &[u8],
    pos: &mut usize,
    limit: usize,
    out: &mut Vec<T>,
    fit: impl Fn(i32) -> Option<T>,
) -> CodecResult<Option<i32>> {
    while *pos < bytes.len() {
        let t = next_token(bytes, pos)?;
        if t & 1 == 1 {
            let run = (t >> 1) as usize;
            if run > limit - out.len() {
                return Err(CodecError::RunPastChunk);
            }
            out.resize(out.len() + run, T::default());
        } else {
            if out.len() == limit {
                return Err(CodecError::TooManyCodes);
            }
            let z = (t >> 1) as u32;
            let m = ((z >> 1) as i32) ^ -((z & 1) as i32);
            match fit(m) {
                Some(v) => out.push(v),
                None => return Ok(Some(m)),
            }
        }
    }
    Ok(None)
}

/// The next varint of an RLE stream (`pos < bytes.len()`): one-byte tokens (runs under 64, codes
/// within +-16, most of them) without the varint loop.
#[inline(always)]
fn next_token(bytes: &[u8], pos: &mut usize) -> CodecResult<u64> {
    match bytes[*pos] {
        b if b < 0x80 => {
            *pos += 1;
            Ok(u64::from(b))
        }
        _ => get_varint(bytes, pos),
    }
}

/// [`rle_decode_upto`] into [`logquant::Codes`]: narrow when every code fits a byte (so a run
/// keeps one width per level), decoded straight into bytes until a code does not fit. The same
/// codes and the same errors as `rle_decode_upto`.
fn rle_decode_codes(bytes: &[u8], limit: usize) -> CodecResult<logquant::Codes> {
    let mut narrow: Vec<i8> = Vec::new();
    let mut pos = 0;
    let fits_a_byte = |m: i32| i8::try_from(m).ok();
    let Some(m) = rle_decode_while(bytes, &mut pos, limit, &mut narrow, fits_a_byte)? else {
        return Ok(logquant::Codes::Narrow(narrow));
    };
    // A wide code: the rest as `rle_decode_upto` decodes it, after what is done.
    let mut wide: Vec<i32> = narrow.iter().map(|&m| i32::from(m)).collect();
    wide.push(m);
    rle_decode_while(bytes, &mut pos, limit, &mut wide, Some)?;
    Ok(logquant::Codes::Wide(wide))
}

fn rle_decode(bytes: &[u8], n: usize) -> CodecResult<Vec<i32>> {
    let out = rle_decode_upto(bytes, n)?;
    if out.len() != n {
        return Err(CodecError::CodeCount {
            count: out.len(),
            elements: n,
        });
    }
    Ok(out)
}

/// Codes as little-endian integers of the narrowest width that holds them, in byte planes.
fn narrow_encode(codes: &[i32]) -> Vec<u8> {
    let mut out = Vec::new();
    narrow_encode_into(codes, &mut out);
    out
}

/// The width [`narrow_encode`] stores `codes` in: 1, 2 or 4 bytes.
fn narrow_width(codes: &[i32]) -> usize {
    // Folded with `|` over magnitudes (no data-dependent branch): the width depends only on the
    // highest bit set, as it did on the maximum.
    let bits = codes.iter().fold(0u32, |acc, c| acc | c.unsigned_abs());
    if bits < 128 {
        1
    } else if bits < 32768 {
        2
    } else {
        4
    }
}

/// Appends [`narrow_encode`]`(codes)` to `out`: plane `b` holds byte `b` of every code (the
/// layout of `planes::split` over the little-endian codes), written directly.
fn narrow_encode_into(codes: &[i32], out: &mut Vec<u8>) {
    let w = narrow_width(codes);
    let start = out.len();
    let n = codes.len();
    out.resize(start + w * n, 0);
    let planes = &mut out[start..];
    for b in 0..w {
        let plane = &mut planes[b * n..(b + 1) * n];
        let shift = 8 * b as u32;
        for (o, &c) in plane.iter_mut().zip(codes) {
            *o = (c >> shift) as u8;
        }
    }
}

fn narrow_decode(bytes: &[u8], n: usize) -> CodecResult<Vec<i32>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let w = bytes.len() / n;
    if !matches!(w, 1 | 2 | 4) || bytes.len() != w * n {
        return Err(CodecError::CodeBytes {
            len: bytes.len(),
            elements: n,
        });
    }
    let merged = planes::merge(bytes, w);
    Ok(merged
        .chunks_exact(w)
        .map(|b| match w {
            1 => b[0] as i8 as i32,
            2 => i16::from_le_bytes([b[0], b[1]]) as i32,
            _ => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        })
        .collect())
}

fn positions_encode(pos: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pos.len() * 2);
    let mut prev = 0u32;
    for &p in pos {
        put_varint(&mut out, (p - prev) as u64);
        prev = p;
    }
    out
}

fn positions_decode(bytes: &[u8]) -> CodecResult<Vec<u32>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut prev = 0u64;
    while pos < bytes.len() {
        prev += get_varint(bytes, &mut pos)?;
        out.push(u32::try_from(prev).map_err(|_| CodecError::PositionOverflow)?);
    }
    Ok(out)
}

/// Turns every special value that did not come back bit-exactly (a subnormal quantized within
/// the bound, -0.0 rebuilt as +0.0 under an absolute bound) into an exception.
fn keep_specials_exact(kind: FloatKind, target: &[u8], q: &mut QuantizedChunk, recon: &mut [u8]) {
    let w = kind.size();
    let extra = logquant::special_mismatches(kind, target, recon);
    if extra.is_empty() {
        return;
    }
    let mut merged: Vec<(u32, Vec<u8>)> = q
        .exception_positions
        .iter()
        .zip(q.exception_values.chunks_exact(w))
        .map(|(&p, v)| (p, v.to_vec()))
        .collect();
    for p in extra {
        let i = p as usize;
        q.codes[i] = 0;
        recon[i * w..(i + 1) * w].copy_from_slice(&target[i * w..(i + 1) * w]);
        merged.push((p, target[i * w..(i + 1) * w].to_vec()));
    }
    merged.sort_by_key(|(p, _)| *p);
    q.exception_positions = merged.iter().map(|(p, _)| *p).collect();
    q.exception_values = merged.into_iter().flat_map(|(_, v)| v).collect();
}

/// Codes `target` within `bound` against `reference` (the reconstructed parent chunk), or as a
/// keyframe when there is none. Returns the chunk object, the reconstruction the decoder will
/// produce (the next snapshot's reference), and what it measured.
pub fn encode(
    engine: &dyn QuantEngine,
    dtype: Dtype,
    bound: Bound,
    target: &[u8],
    basis: Basis<'_>,
    rounding: Rounding,
    choice: CodecChoice,
) -> CodecResult<(Vec<u8>, Vec<u8>, ChunkStats)> {
    let _layout = profile::time_bytes(Stage::Layout, target.len());
    let kind = float_kind(dtype).ok_or(CodecError::NotLossy(dtype))?;
    let reference = basis.parent();
    let keyframe = reference.is_none();
    let anchor = rounding == Rounding::Lattice && matches!(basis, Basis::Anchor(_));
    let eb = error_bound(bound).ok_or(CodecError::LosslessBound)?;
    let max_code = max_code_for(eb, rounding);
    let table = table(eb, max_code, rounding)?;
    let (reference, signs): (Cow<'_, [u8]>, Vec<u8>) = match (reference, eb) {
        (Some(r), _) => (Cow::Borrowed(r), Vec::new()),
        (None, ErrorBound::Relative(_)) => (
            Cow::Owned(sign_reference(kind, target)),
            pack_signs(kind, target),
        ),
        (None, ErrorBound::Absolute(_)) => (Cow::Owned(vec![0u8; target.len()]), Vec::new()),
    };
    let lattice = rounding == Rounding::Lattice;
    // On the lattice a keyframe and an anchoring delta place every element from its base; a plain
    // delta rounds against its parent like the other roundings.
    let quantize = profile::time_bytes(Stage::Quantize, target.len());
    let (mut q, mut recon) = if lattice && (keyframe || anchor) {
        logquant::quantize_from_bases(kind, target, &reference, &table)?
    } else {
        engine.quantize(kind, target, &reference, &table)?
    };
    // What a delta's parent cannot hold goes onto the grid rather than into the exceptions.
    let mut fresh = if lattice && !keyframe {
        logquant::rescue_exceptions(kind, target, &mut q, &mut recon, &table)?
    } else {
        FreshCodes::default()
    };
    keep_specials_exact(kind, target, &mut q, &mut recon);
    drop(quantize);
    drop_fresh_exceptions(&mut fresh, &q.exception_positions);
    let logquant::CodeStats {
        zeros: zero_codes,
        entropy_bits,
    } = logquant::code_stats(&q.codes);
    let mut params = vec![match eb {
        ErrorBound::Relative(_) => 1u8,
        ErrorBound::Absolute(_) => 2u8,
    }];
    let eps = match eb {
        ErrorBound::Relative(e) | ErrorBound::Absolute(e) => e,
    };
    params.extend_from_slice(&eps.to_le_bytes());
    params.extend_from_slice(&max_code.to_le_bytes());
    params.push(rounding as u8);
    // Lattice deltas split their codes by the binade of the reference below `top`, stored so a
    // decoder classifies each element from its reference alone (0 for keyframes).
    let (exponents, top) = if lattice && !keyframe {
        let exponents = context::exponent_counts(kind, &reference);
        let top = context::top_of(kind, &exponents);
        (exponents, top)
    } else {
        (Vec::new(), 0)
    };
    if lattice {
        params.extend_from_slice(&top.to_le_bytes());
    }
    let mut sections = vec![Section::compress(&params, choice.without_lzma())];
    let exceptions = [
        Section::compress(&positions_encode(&q.exception_positions), choice),
        Section::compress(&planes::split(&q.exception_values, kind.size()), choice),
        Section::compress(&signs, choice),
    ];
    let (codes_flag, code_bytes) = if lattice {
        // [params][exceptions x3][fresh x3][code streams...]
        sections.extend(exceptions);
        sections.push(Section::compress(
            &positions_encode(&fresh.positions),
            choice,
        ));
        sections.push(Section::compress_with(
            &narrow_encode(&fresh.codes),
            choice,
            Repeats::Runs,
        ));
        let signs: &[bool] = match eb {
            ErrorBound::Relative(_) => &fresh.negative,
            ErrorBound::Absolute(_) => &[],
        };
        sections.push(Section::compress(&pack_bits(signs), choice));
        let streams = if keyframe {
            // The stats below read the codes: move them only after.
            context::ClassStreams::one(std::mem::take(&mut q.codes))
        } else {
            context::split_by_reference(kind, &reference, &exponents, top, &q.codes)
        };
        let before = sections.len();
        sections.extend(streams.iter().map(|c| code_stream_section(c, choice)));
        let bytes = sections[before..]
            .iter()
            .map(|s| s.stored.len() as u64)
            .sum();
        (0, bytes)
    } else {
        // [params][codes][exceptions x3]
        let rle = Section::compress_with(&rle_encode(&q.codes), choice, Repeats::Runs);
        let narrow = Section::compress_with(&narrow_encode(&q.codes), choice, Repeats::Runs);
        let (flag, codes) = if narrow.stored.len() < rle.stored.len() {
            (NARROW_CODES, narrow)
        } else {
            (0, rle)
        };
        let bytes = codes.stored.len() as u64;
        sections.push(codes);
        sections.extend(exceptions);
        (flag, bytes)
    };
    let flags = codes_flag | if keyframe { KEYFRAME } else { 0 } | if anchor { ANCHOR } else { 0 };
    let n = (target.len() / kind.size()) as u64;
    let exceptions = q.exception_positions.len() as u64;
    let fresh_count = fresh.positions.len() as u64;
    let stats = ChunkStats {
        elements: n,
        zero_codes: zero_codes - exceptions - fresh_count,
        exceptions,
        fresh: fresh_count,
        entropy_bits: entropy_bits * n as f64,
        code_bytes,
    };
    Ok((
        write_chunk(
            ChunkCodec::LogDelta,
            kind.size(),
            target.len(),
            flags,
            &sections,
        ),
        recon,
        stats,
    ))
}

/// Decodes a [`ChunkCodec::LogDelta`] chunk against its reference (none for a keyframe).
pub fn decode(
    engine: &dyn QuantEngine,
    dtype: Dtype,
    mut chunk: ParsedChunk<'_>,
    reference: Option<&[u8]>,
) -> CodecResult<Vec<u8>> {
    let _t = profile::time(Stage::Dequantize);
    if is_lattice(&chunk) {
        return decode_lattice(dtype, chunk, reference);
    }
    let kind = float_kind(dtype).ok_or(CodecError::NotLossyChunk(dtype))?;
    if chunk.unit != kind.size() || !chunk.raw_len.is_multiple_of(kind.size()) {
        return Err(CodecError::ElementWidth {
            unit: chunk.unit,
            elem: dtype.to_string(),
        });
    }
    let [params, codes, positions, values, signs]: [Cow<'_, [u8]>; 5] =
        std::mem::take(&mut chunk.sections)
            .try_into()
            .map_err(|s: Vec<Cow<'_, [u8]>>| CodecError::SectionCount {
                count: s.len(),
                expected: 5,
            })?;
    if params.len() != 14 {
        return Err(CodecError::BadParameterSection);
    }
    let rounding = Rounding::try_from(params[13])?;
    let (eb, max_code) = bound_params(&params)?;
    let table = table(eb, max_code, rounding)?;
    let n = chunk.raw_len / kind.size();
    let codes = if chunk.transform & NARROW_CODES != 0 {
        narrow_decode(&codes, n)?
    } else {
        rle_decode(&codes, n)?
    };
    let q = QuantizedChunk {
        codes,
        exception_positions: positions_decode(&positions)?,
        exception_values: planes::merge(&values, kind.size()),
    };
    let reference = if chunk.transform & KEYFRAME != 0 {
        keyframe_bases(kind, eb, &signs, n)?
    } else {
        let r = reference.ok_or(CodecError::MissingReference)?;
        if r.len() != chunk.raw_len {
            return Err(CodecError::ReferenceLength {
                len: r.len(),
                expected: chunk.raw_len,
            });
        }
        r.to_vec()
    };
    engine.dequantize(kind, &reference, &q, &table)
}

/// A keyframe's bases: `±1` by the stored signs (relative) or zeros (absolute).
fn keyframe_bases(kind: FloatKind, eb: ErrorBound, signs: &[u8], n: usize) -> CodecResult<Vec<u8>> {
    match eb {
        ErrorBound::Relative(_) => unpack_sign_reference(kind, signs, n),
        ErrorBound::Absolute(_) => Ok(vec![0u8; n * kind.size()]),
    }
}

/// Decodes a lattice chunk: a keyframe from its bases, a delta from `reference`.
fn decode_lattice(
    dtype: Dtype,
    chunk: ParsedChunk<'_>,
    reference: Option<&[u8]>,
) -> CodecResult<Vec<u8>> {
    let kind = float_kind(dtype).ok_or(CodecError::NotLossyChunk(dtype))?;
    let n = chunk.raw_len / kind.size();
    let base = if chunk.transform & KEYFRAME != 0 {
        None
    } else {
        let r = reference.ok_or(CodecError::MissingReference)?;
        if r.len() != chunk.raw_len {
            return Err(CodecError::ReferenceLength {
                len: r.len(),
                expected: chunk.raw_len,
            });
        }
        Some(r.to_vec())
    };
    let parts = lattice_parts(kind, chunk)?;
    let base = match base {
        Some(b) => b,
        None => keyframe_bases(kind, parts.table.bound(), &parts.signs, n)?,
    };
    apply_lattice_parts(kind, base, &[parts])
}

/// The bound and code range of a parameter section (at least 14 bytes, checked by the caller).
fn bound_params(params: &[u8]) -> CodecResult<(ErrorBound, u32)> {
    let eps = f64::from_le_bytes(params[1..9].try_into().expect("8 bytes"));
    let max_code = u32::from_le_bytes(params[9..13].try_into().expect("4 bytes"));
    let eb = match params[0] {
        1 => ErrorBound::Relative(eps),
        2 => ErrorBound::Absolute(eps),
        value => {
            return Err(CodecError::UnknownTag {
                what: "bound kind",
                value,
            })
        }
    };
    if max_code > MAX_CODE_LIMIT {
        return Err(CodecError::CodeRange(max_code));
    }
    Ok((eb, max_code))
}

/// Whether `chunk` is coded on the lattice.
fn is_lattice(chunk: &ParsedChunk<'_>) -> bool {
    chunk.codec == ChunkCodec::LogDelta
        && chunk
            .sections
            .first()
            .is_some_and(|p| p.len() >= 14 && p[13] == Rounding::Lattice as u8)
}

/// Whether `chunk` is a lattice delta (not a keyframe): the kind a run of a chain is made of,
/// which [`decode_lattice_run`] applies in one pass.
pub fn is_lattice_delta(chunk: &ParsedChunk<'_>) -> bool {
    is_lattice(chunk) && chunk.transform & KEYFRAME == 0
}

/// The sections of a lattice chunk, decoded.
#[derive(Clone)]
struct LatticeParts {
    table: Arc<PowerTable>,
    top: u16,
    anchored: bool,
    streams: Vec<logquant::Codes>,
    exception_positions: Vec<u32>,
    exception_values: Vec<u8>,
    /// A keyframe's sign bits (relative bounds).
    signs: Vec<u8>,
    fresh: FreshCodes,
}

fn lattice_parts(kind: FloatKind, chunk: ParsedChunk<'_>) -> CodecResult<LatticeParts> {
    if chunk.unit != kind.size() || !chunk.raw_len.is_multiple_of(kind.size()) {
        return Err(CodecError::ElementWidth {
            unit: chunk.unit,
            elem: format!("{kind:?}"),
        });
    }
    let n = chunk.raw_len / kind.size();
    let keyframe = chunk.transform & KEYFRAME != 0;
    let sections_len = chunk.sections.len();
    if sections_len < 8 {
        return Err(CodecError::LatticeSections(sections_len));
    }
    let (transform, mut sections) = (chunk.transform, chunk.owned_sections().into_iter());
    let params = sections.next().unwrap_or_default();
    if params.len() != 16 {
        return Err(CodecError::BadParameterSection);
    }
    let (eb, max_code) = bound_params(&params)?;
    let top = u16::from_le_bytes([params[14], params[15]]);
    let table = table(eb, max_code, Rounding::Lattice)?;
    let mut next = || sections.next().unwrap_or_default();
    let [positions, values, signs, fresh_positions, fresh_codes, fresh_signs] =
        [next(), next(), next(), next(), next(), next()];
    let streams = sections
        .map(|s| code_stream_decode(&s, n))
        .collect::<Result<Vec<_>, _>>()?;
    // A keyframe's codes come in one stream, a delta's split by the classes of its parent.
    let expected = if keyframe {
        1
    } else {
        context::stream_count(n)
    };
    if streams.len() != expected {
        return Err(CodecError::StreamCount {
            count: streams.len(),
            expected,
        });
    }
    let fresh_at = positions_decode(&fresh_positions)?;
    Ok(LatticeParts {
        table,
        top,
        // A keyframe places every element from its bases, as an anchoring delta does.
        anchored: keyframe || transform & ANCHOR != 0,
        streams,
        exception_positions: positions_decode(&positions)?,
        exception_values: planes::merge(&values, kind.size()),
        signs,
        fresh: FreshCodes {
            codes: narrow_decode(&fresh_codes, fresh_at.len())?,
            negative: unpack_bits(&fresh_signs, fresh_at.len(), eb)?,
            positions: fresh_at,
        },
    })
}

/// Applies decoded lattice chunks, oldest first, to `base`: one pass per run of chunks under the
/// same kind of bound (a bound change from relative to absolute, or back, starts another pass).
fn apply_lattice_parts(
    kind: FloatKind,
    mut base: Vec<u8>,
    parts: &[LatticeParts],
) -> CodecResult<Vec<u8>> {
    let mode = |p: &LatticeParts| std::mem::discriminant(&p.table.bound());
    for group in parts.chunk_by(|a, b| mode(a) == mode(b)) {
        let levels: Vec<logquant::LatticeLevel<'_>> = group
            .iter()
            .map(|p| logquant::LatticeLevel {
                table: &p.table,
                top: p.top,
                streams: &p.streams,
                exception_positions: &p.exception_positions,
                exception_values: &p.exception_values,
                fresh: &p.fresh,
                anchored: p.anchored,
            })
            .collect();
        logquant::apply_lattice_deltas(kind, &mut base, &levels, context::class_of)?;
    }
    Ok(base)
}

/// Applies lattice deltas (oldest first, each coded against the previous one's output) to
/// `base`, the decoded reference of the first, in one pass over the elements: the same result as
/// decoding them one by one, without a pass and a buffer per delta.
pub fn decode_lattice_run(
    dtype: Dtype,
    base: Vec<u8>,
    chunks: Vec<ParsedChunk<'_>>,
) -> CodecResult<Vec<u8>> {
    let _t = profile::time(Stage::Dequantize);
    let kind = float_kind(dtype).ok_or(CodecError::NotLossyChunk(dtype))?;
    let parts = chunks
        .into_iter()
        .map(|c| {
            if c.raw_len != base.len() || c.transform & KEYFRAME != 0 {
                return Err(CodecError::RunDelta {
                    len: c.raw_len,
                    reference: base.len(),
                });
            }
            lattice_parts(kind, c)
        })
        .collect::<Result<Vec<_>, _>>()?;
    apply_lattice_parts(kind, base, &parts)
}

/// One stream of codes as zero-run RLE or byte planes, whichever stores smaller; the first raw
/// byte says which: 0 RLE, 1 one narrow plane (every code fits a byte), 8 centred planes
/// (`codec::centred`, wider codes), and 2 or 4 narrow planes of that width, which are read
/// but no longer written (so a stream decodes without knowing its length).
fn code_stream_section(codes: &[i32], choice: CodecChoice) -> Section {
    let mut rle = vec![0u8];
    rle_encode_into(codes, &mut rle);
    let width = if codes.is_empty() {
        1
    } else {
        narrow_width(codes)
    };
    let rle = Section::compress_with(&rle, choice, Repeats::Runs);
    let centred = (width > 1)
        .then(|| centred::encode(codes, choice))
        .flatten();
    let planes = match centred {
        // Stored as it is: its planes are entropy-coded inside.
        Some(centred) => Section {
            entropy: Entropy::Stored,
            raw_len: centred.len(),
            stored: centred,
        },
        None => {
            let mut planes = Vec::with_capacity(1 + width * codes.len());
            planes.push(width as u8);
            narrow_encode_into(codes, &mut planes);
            Section::compress_with(&planes, choice, Repeats::Runs)
        }
    };
    if planes.stored.len() < rle.stored.len() {
        planes
    } else {
        rle
    }
}

/// A code stream of a chunk of `n` elements (it holds at most one code per element: a
/// stream's runs were bounded by the largest chunk, so a hostile stream of a few bytes could
/// declare hundreds of millions of codes in a small chunk).
fn code_stream_decode(bytes: &[u8], n: usize) -> CodecResult<logquant::Codes> {
    match bytes.split_first() {
        Some((0, rle)) => rle_decode_codes(rle, n),
        Some((1, planes)) => Ok(logquant::Codes::Narrow(
            planes.iter().map(|&b| b as i8).collect(),
        )),
        Some((&w @ (2 | 4), planes)) if planes.len() % usize::from(w) == 0 => Ok(
            logquant::Codes::Wide(narrow_decode(planes, planes.len() / usize::from(w))?),
        ),
        Some((&centred::FORM, stream)) => Ok(logquant::Codes::Wide(centred::decode(stream, n)?)),
        _ => Err(CodecError::BadCodeStreamForm),
    }
}

/// Removes from `fresh` the positions that ended as exceptions (both lists ascending), so every
/// element is decoded by one rule.
fn drop_fresh_exceptions(fresh: &mut FreshCodes, exceptions: &[u32]) {
    if exceptions.is_empty() || fresh.positions.is_empty() {
        return;
    }
    let mut e = exceptions.iter().peekable();
    let mut keep = Vec::with_capacity(fresh.positions.len());
    for &p in &fresh.positions {
        while e.next_if(|&&x| x < p).is_some() {}
        keep.push(e.peek() != Some(&&p));
    }
    let mut k = keep.iter();
    fresh
        .positions
        .retain(|_| *k.next().expect("one flag each"));
    let mut k = keep.iter();
    fresh.codes.retain(|_| *k.next().expect("one flag each"));
    let mut k = keep.iter();
    fresh.negative.retain(|_| *k.next().expect("one flag each"));
}

fn pack_bits(flags: &[bool]) -> Vec<u8> {
    let mut bits = vec![0u8; flags.len().div_ceil(8)];
    for (i, &f) in flags.iter().enumerate() {
        bits[i / 8] |= u8::from(f) << (i % 8);
    }
    bits
}

/// The fresh elements' signs: one bit each under a relative bound, none under an absolute one.
fn unpack_bits(bits: &[u8], n: usize, eb: ErrorBound) -> CodecResult<Vec<bool>> {
    let want = match eb {
        ErrorBound::Relative(_) => n.div_ceil(8),
        ErrorBound::Absolute(_) => 0,
    };
    if bits.len() != want {
        return Err(CodecError::BitSection {
            section: "fresh sign",
            len: bits.len(),
            elements: n,
        });
    }
    Ok((0..n)
        .map(|i| bits.get(i / 8).is_some_and(|b| (b >> (i % 8)) & 1 == 1))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::chunk::read_chunk;
    use proptest::prelude::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn rle_round_trips_and_rejects_garbage() {
        let codes = vec![0, 0, 0, 5, -3, 0, 0, 1, 0];
        assert_eq!(rle_decode(&rle_encode(&codes), codes.len()).unwrap(), codes);
        assert!(rle_decode(&rle_encode(&codes), codes.len() - 1).is_err());
        assert!(rle_decode(&[0xff, 0xff], 3).is_err());
        assert_eq!(
            narrow_decode(&narrow_encode(&codes), codes.len()).unwrap(),
            codes
        );
    }

    #[test]
    fn keyframe_and_delta_meet_the_bound() {
        let a: Vec<f32> = (0..5000).map(|i| ((i as f32) * 0.37).sin() * 0.1).collect();
        let b: Vec<f32> = a.iter().map(|x| x * 1.001 + 1e-6).collect();
        let (obj, recon_a, _) = encode(
            &CpuQuant,
            Dtype::F32,
            Bound::Rel(0.01),
            &f32s(&a),
            Basis::Keyframe,
            Rounding::Dither,
            CodecChoice::Auto,
        )
        .unwrap();
        let parsed = read_chunk(&obj).unwrap();
        assert!(parsed.transform & KEYFRAME != 0);
        assert_eq!(
            decode(&CpuQuant, Dtype::F32, parsed, None).unwrap(),
            recon_a
        );
        let (obj, recon_b, stats) = encode(
            &CpuQuant,
            Dtype::F32,
            Bound::Rel(0.01),
            &f32s(&b),
            Basis::Parent(&recon_a),
            Rounding::Nearest,
            CodecChoice::Auto,
        )
        .unwrap();
        assert!(stats.zero_codes as f64 > 0.5 * stats.elements as f64);
        assert_eq!(
            decode(
                &CpuQuant,
                Dtype::F32,
                read_chunk(&obj).unwrap(),
                Some(&recon_a)
            )
            .unwrap(),
            recon_b
        );
        for (x, y) in b.iter().zip(recon_b.chunks_exact(4)) {
            let y = f32::from_le_bytes(y.try_into().unwrap());
            assert!(
                (y as f64 - *x as f64).abs() <= 0.01 * (*x as f64).abs(),
                "{x} -> {y}"
            );
        }
    }

    /// A lattice chain: a keyframe, an anchoring delta (as after a bound change), plain deltas;
    /// every chunk decodes to its encoder's reconstruction, within the bound, sign flips and
    /// zero parents placed on the grid rather than stored exactly.
    #[test]
    fn lattice_chain_keyframe_anchor_deltas() {
        let eps = 0.05;
        let n = 20_000;
        let mut x: Vec<f32> = (0..n)
            .map(|i| ((i as f32) * 0.37).sin() * 0.1 + if i % 3 == 0 { 1.0 } else { 0.0 })
            .collect();
        let mut parent: Option<Vec<u8>> = None;
        for step in 0..4 {
            let basis = match (&parent, step) {
                (None, _) => Basis::Keyframe,
                (Some(p), 1) => Basis::Anchor(p),
                (Some(p), _) => Basis::Parent(p),
            };
            let target = f32s(&x);
            let (obj, recon, stats) = encode(
                &CpuQuant,
                Dtype::F32,
                Bound::Rel(eps),
                &target,
                basis,
                Rounding::Lattice,
                CodecChoice::Auto,
            )
            .unwrap();
            let parsed = read_chunk(&obj).unwrap();
            assert_eq!(parsed.transform & ANCHOR != 0, step == 1, "step {step}");
            assert_eq!(parsed.transform & KEYFRAME != 0, step == 0, "step {step}");
            assert_eq!(
                decode(&CpuQuant, Dtype::F32, parsed, parent.as_deref()).unwrap(),
                recon,
                "step {step}"
            );
            if step > 0 {
                assert!(
                    stats.fresh > 0 && stats.exceptions <= (n / 3) as u64,
                    "step {step}: {stats:?}"
                );
            }
            for (a, y) in x.iter().zip(recon.chunks_exact(4)) {
                let y = f32::from_le_bytes(y.try_into().unwrap());
                let exact = a.to_bits() == y.to_bits();
                assert!(exact || (y as f64 - *a as f64).abs() <= eps * (*a as f64).abs());
            }
            parent = Some(recon);
            // Drift, and flip the sign of some small weights.
            for (i, v) in x.iter_mut().enumerate() {
                *v = if i % 97 == 0 {
                    -*v * 0.5
                } else {
                    *v * 1.01 + 1e-4
                };
            }
        }
    }

    /// Malformed lattice chunks are refused with a message naming what is wrong.
    #[test]
    fn malformed_lattice_chunks_name_the_problem() {
        let x: Vec<f32> = (0..300).map(|i| ((i as f32) * 0.3).sin() + 2.0).collect();
        let y: Vec<f32> = x.iter().map(|v| -v * 1.1).collect(); // sign flips: fresh elements
        let code = |t: &[f32], basis| {
            encode(
                &CpuQuant,
                Dtype::F32,
                Bound::Rel(0.05),
                &f32s(t),
                basis,
                Rounding::Lattice,
                CodecChoice::Auto,
            )
            .unwrap()
        };
        let (key, recon, _) = code(&x, Basis::Keyframe);
        let (delta, _, _) = code(&y, Basis::Parent(&recon));
        let err = |obj: &[u8], edit: &dyn Fn(&mut ParsedChunk<'_>)| {
            let mut p = read_chunk(obj).unwrap();
            edit(&mut p);
            decode(&CpuQuant, Dtype::F32, p, Some(&recon))
                .unwrap_err()
                .to_string()
        };
        let e = err(&delta, &|p| p.sections[7].to_mut()[0] = 9);
        assert!(e.contains("valid form byte"), "{e}");
        let e = err(&delta, &|p| p.sections[6].to_mut().push(0));
        assert!(e.contains("fresh sign section"), "{e}");
        let e = err(&delta, &|p| p.sections[0].to_mut().push(0));
        assert!(e.contains("bad parameter section"), "{e}");
        let e = err(&delta, &|p| p.sections[0].to_mut()[13] = 7);
        assert!(e.contains("8 sections, expected 5"), "{e}");
        let (nearest, _, _) = encode(
            &CpuQuant,
            Dtype::F32,
            Bound::Rel(0.05),
            &f32s(&y),
            Basis::Parent(&recon),
            Rounding::Nearest,
            CodecChoice::Auto,
        )
        .unwrap();
        let e = err(&nearest, &|p| p.sections[0].to_mut()[13] = 7);
        assert!(e.contains("unknown rounding 7"), "{e}");
        let e = decode_lattice_run(Dtype::F32, recon.clone(), vec![read_chunk(&key).unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("a delta of"), "{e}");
        let e = logquant::quantize_from_bases(
            FloatKind::F32,
            &f32s(&x),
            &f32s(&x),
            &PowerTable::new(ErrorBound::Relative(0.05), 100).unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("needs a lattice table"), "{e}");
    }

    /// Lattice chunks of a drifting `n`-element F32 tensor over `snapshots` snapshots (a
    /// keyframe, then deltas, some elements flipping sign) and the reconstruction of each.
    fn lattice_chain(bound: Bound, n: usize, snapshots: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut x: Vec<f32> = (0..n)
            .map(|i| ((i as f32) * 0.731).sin() * 0.05 * (1 + i % 7) as f32)
            .collect();
        let (mut objs, mut recons): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
        for _ in 0..snapshots {
            let basis = match recons.last() {
                None => Basis::Keyframe,
                Some(p) => Basis::Parent(p),
            };
            let (obj, r, _) = encode(
                &CpuQuant,
                Dtype::F32,
                bound,
                &f32s(&x),
                basis,
                Rounding::Lattice,
                CodecChoice::Auto,
            )
            .unwrap();
            objs.push(obj);
            recons.push(r);
            for (i, v) in x.iter_mut().enumerate() {
                *v = if i % 53 == 0 { -*v } else { *v * 1.015 + 2e-4 };
            }
        }
        (objs, recons)
    }

    /// A run of lattice deltas applied in one pass gives what decoding them one after the
    /// other gives, for both bounds and a split chunk (8 streams) with fresh elements.
    #[test]
    fn a_lattice_run_in_one_pass_equals_level_by_level() {
        for bound in [Bound::Rel(0.02), Bound::Abs(1e-3)] {
            let (objs, recons) = lattice_chain(bound, 12_000, 6);
            let base = recons[0].clone();
            let run: Vec<_> = objs[1..].iter().map(|o| read_chunk(o).unwrap()).collect();
            assert!(run.iter().all(is_lattice_delta));
            assert_eq!(
                &decode_lattice_run(Dtype::F32, base, run).unwrap(),
                recons.last().unwrap(),
                "{bound:?}"
            );
            // A run missing a level does not decode to the same bytes (or fails).
            let short: Vec<_> = objs[2..].iter().map(|o| read_chunk(o).unwrap()).collect();
            let got = decode_lattice_run(Dtype::F32, recons[0].clone(), short);
            assert!(got.map_or(true, |g| &g != recons.last().unwrap()));
        }
    }

    /// The run decoder reads one-byte and four-byte code streams alike, and a level that mixes
    /// them; a code outside the table in a split stream is refused, naming the stream.
    #[test]
    fn code_stream_widths_decode_alike() {
        let (objs, recons) = lattice_chain(Bound::Rel(0.02), 12_000, 5);
        let parts: Vec<LatticeParts> = objs[1..]
            .iter()
            .map(|o| lattice_parts(FloatKind::F32, read_chunk(o).unwrap()).unwrap())
            .collect();
        let narrow = |p: &LatticeParts| {
            p.streams
                .iter()
                .all(|s| matches!(s, logquant::Codes::Narrow(_)))
        };
        assert!(parts.iter().all(|p| p.streams.len() == 8));
        assert!(parts.iter().any(narrow), "no level of one-byte codes");
        let widen = |s: &logquant::Codes| match s {
            logquant::Codes::Narrow(c) => {
                logquant::Codes::Wide(c.iter().map(|&m| i32::from(m)).collect())
            }
            wide => wide.clone(),
        };
        let variant = |keep: &dyn Fn(usize) -> bool| -> Vec<LatticeParts> {
            parts
                .iter()
                .map(|p| LatticeParts {
                    streams: p
                        .streams
                        .iter()
                        .enumerate()
                        .map(|(k, s)| if keep(k) { s.clone() } else { widen(s) })
                        .collect(),
                    ..p.clone()
                })
                .collect()
        };
        let expected = recons.last().unwrap();
        for (name, parts) in [
            ("narrow", variant(&|_| true)),
            ("wide", variant(&|_| false)),
            ("mixed", variant(&|k| k % 2 == 0)),
        ] {
            let got = apply_lattice_parts(FloatKind::F32, recons[0].clone(), &parts).unwrap();
            assert_eq!(&got, expected, "{name}");
        }
        let mut bad = variant(&|_| false);
        let max_code = bad[1].table.max_code() as i32;
        let stream = (0..8).find(|&k| bad[1].streams[k].len() > 0).unwrap();
        if let logquant::Codes::Wide(c) = &mut bad[1].streams[stream] {
            c[0] = max_code + 1;
        }
        let e = apply_lattice_parts(FloatKind::F32, recons[0].clone(), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("of code stream {stream} is outside")),
            "{e}"
        );
    }

    #[test]
    fn table_cache_stays_bounded_whatever_bounds_chunks_name() {
        for k in 0..3 * TABLE_CACHE_ENTRIES {
            let eps = 0.01 + k as f64 * 1e-4;
            table(ErrorBound::Relative(eps), 100, Rounding::Dither).unwrap();
            let len = table_cache().lock().unwrap().len();
            assert!(len <= TABLE_CACHE_ENTRIES, "{len} tables cached");
        }
    }

    proptest! {
        /// The byte-wide decoder gives `rle_decode_upto`'s codes and errors, whatever the widths
        /// and however the limit cuts the stream.
        #[test]
        fn rle_codes_decode_as_the_plain_decoder(
            codes in prop::collection::vec(prop_oneof![8 => -3i32..4, 1 => -300i32..300, 1 => Just(0)], 0..300),
            limit in 0usize..320,
        ) {
            let rle = rle_encode(&codes);
            let plain = rle_decode_upto(&rle, limit);
            let bytes = rle_decode_codes(&rle, limit).map(|c| match c {
                logquant::Codes::Narrow(v) => v.into_iter().map(i32::from).collect::<Vec<_>>(),
                logquant::Codes::Wide(v) => v,
            });
            prop_assert_eq!(format!("{plain:?}"), format!("{bytes:?}"));
        }

        #[test]
        fn hostile_lossy_chunks_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = read_chunk(&bytes) {
                let _ = decode(&CpuQuant, Dtype::F32, p, Some(&[0u8; 64]));
            }
        }
    }
}
