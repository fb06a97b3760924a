//! Prediction and quantization of one frame, shared by the encoder and the decoder so both walk
//! the same reconstructed values in the same order (closed loop: error never accumulates).
//!
//! Frames are held *padded*: one zero row above and one zero column to the left, so the
//! neighbours W, N, NW and NE of every element exist and edges need no branches.

use std::ops::{Add, Sub};

/// Predictor kinds (low nibble of a frame's mode byte).
pub(crate) const PRED_SPATIAL: u8 = 0;
/// Previous reconstructed frame at the same place.
pub(crate) const PRED_TEMPORAL: u8 = 1;
/// 3D Lorenzo: the previous frame plus a 2D Lorenzo prediction of the temporal difference.
pub(crate) const PRED_LORENZO3: u8 = 2;
/// Mode flag: channel 1 adds channel 0's prediction residual, later channels add
/// `(2 r[c-1] + r[c-2]) / 3` of the two channels before them (colour planes move together).
pub(crate) const INTER_CHANNEL: u8 = 0x10;

/// True for a mode byte the decoder understands.
pub(crate) fn mode_is_valid(mode: u8) -> bool {
    mode & !INTER_CHANNEL <= PRED_LORENZO3
}

/// Working-value arithmetic the predictors need beyond `+` and `-`.
pub(crate) trait Mix: Copy + Default + Add<Output = Self> + Sub<Output = Self> {
    /// `(2a + b) / 3`: the inter-channel residual estimate from the two previous channels.
    fn mix(a: Self, b: Self) -> Self;
}

impl Mix for i64 {
    #[inline(always)]
    fn mix(a: i64, b: i64) -> i64 {
        (a.wrapping_mul(2).wrapping_add(b)).div_euclid(3)
    }
}

impl Mix for i32 {
    #[inline(always)]
    fn mix(a: i32, b: i32) -> i32 {
        (a.wrapping_mul(2).wrapping_add(b)).div_euclid(3)
    }
}

impl Mix for i16 {
    #[inline(always)]
    fn mix(a: i16, b: i16) -> i16 {
        (a.wrapping_mul(2).wrapping_add(b)).div_euclid(3)
    }
}

/// An integer working value narrower than `i64` where the image allows: quantizers compute in
/// `i64` and keep the frames (previous, current, input, scratch) in this.
pub(crate) trait IntWork: Mix {
    /// The value as `i64`.
    fn wide(self) -> i64;
    /// `v` as a working value; `v` is a reconstruction or input value of the image, in range.
    fn from_wide(v: i64) -> Self;
}

macro_rules! int_work {
    ($($t:ty),*) => {$(
        impl IntWork for $t {
            #[inline(always)]
            fn wide(self) -> i64 {
                i64::from(self)
            }
            #[inline(always)]
            fn from_wide(v: i64) -> Self {
                v as $t
            }
        }
    )*};
}

int_work!(i16, i32, i64);

/// The working value of `S`-byte integer images: the narrowest type that holds every value the
/// walk computes from them. Those are sums of at most eight terms of at most the image maximum
/// (`W + N - NW`, the 3D Lorenzo's temporal difference, residuals and their mix), so 16 bits hold
/// U8 images and 32 bits U16 ones; F32 images (32-bit) keep `i64`.
pub(crate) struct ImageBytes<const S: usize>;

/// See [`ImageBytes`].
pub(crate) trait ImageWork {
    /// The working value.
    type W: IntWork;
}

impl ImageWork for ImageBytes<1> {
    type W = i16;
}

impl ImageWork for ImageBytes<2> {
    type W = i32;
}

impl ImageWork for ImageBytes<4> {
    type W = i64;
}

impl Mix for f64 {
    #[inline(always)]
    fn mix(a: f64, b: f64) -> f64 {
        (2.0 * a + b) / 3.0
    }
}

/// How element values are quantized against a prediction (one per dtype and bound). `Clone` so
/// that a walk can hold its own copy (its fields then stay in registers across the stores of
/// codes and reconstructions, which could alias a borrowed one).
pub(crate) trait Quant: Clone {
    /// The working value: `i64` for integer images, `f64` for floats under an absolute bound.
    type W: Mix;
    /// Bytes per element.
    const SIZE: usize;
    /// The working value of one element's bytes (exactly `SIZE` of them).
    fn load(&self, b: &[u8]) -> Self::W;
    /// Writes a reconstructed working value back as element bytes.
    fn store(&self, v: Self::W, out: &mut [u8]);
    /// Code and reconstruction of `x` against `pred`, or `None` when `x` must be stored exactly.
    fn encode(&self, x: Self::W, pred: Self::W) -> Option<(i64, Self::W)>;
    /// Reconstruction of `code` against `pred` (any code: hostile input must not panic).
    fn decode(&self, code: i64, pred: Self::W) -> Self::W;
}

/// How integer images map to bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntKind {
    /// One byte.
    U8,
    /// Two bytes, little-endian.
    U16,
    /// An F32 as its order-preserving integer image (`u32`): negative floats have all bits
    /// flipped, positive ones the sign bit set, so the image increases with the float.
    F32Image,
}

impl IntKind {
    fn load(self, b: &[u8]) -> i64 {
        match self {
            IntKind::U8 => i64::from(b[0]),
            IntKind::U16 => i64::from(u16::from_le_bytes([b[0], b[1]])),
            IntKind::F32Image => i64::from(f32_image(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        }
    }

    fn store(self, v: i64, out: &mut [u8]) {
        match self {
            IntKind::U8 => out[0] = v as u8,
            IntKind::U16 => out[..2].copy_from_slice(&(v as u16).to_le_bytes()),
            IntKind::F32Image => out[..4].copy_from_slice(&f32_from_image(v as u32).to_le_bytes()),
        }
    }
}

/// Order-preserving integer image of F32 bits.
pub(crate) fn f32_image(bits: u32) -> u32 {
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Inverse of [`f32_image`] (returns bits).
pub(crate) fn f32_from_image(img: u32) -> u32 {
    if img & 0x8000_0000 != 0 {
        img & 0x7fff_ffff
    } else {
        !img
    }
}

/// Exact coding of integer images: residuals modulo `2^bits`, wrapped to the signed range.
#[derive(Clone)]
pub(crate) struct Lossless<const SIZE: usize> {
    pub(crate) kind: IntKind,
}

impl<const S: usize> Lossless<S> {
    const BITS: u32 = 8 * S as u32;
    #[inline(always)]
    fn wrap(v: i64) -> i64 {
        // Sign-extend the low BITS bits.
        (v << (64 - Self::BITS)) >> (64 - Self::BITS)
    }
}

impl<const S: usize> Quant for Lossless<S>
where
    ImageBytes<S>: ImageWork,
{
    type W = <ImageBytes<S> as ImageWork>::W;
    const SIZE: usize = S;
    #[inline(always)]
    fn load(&self, b: &[u8]) -> Self::W {
        IntWork::from_wide(self.kind.load(b))
    }
    #[inline(always)]
    fn store(&self, v: Self::W, out: &mut [u8]) {
        self.kind.store(v.wide(), out)
    }
    #[inline(always)]
    fn encode(&self, x: Self::W, pred: Self::W) -> Option<(i64, Self::W)> {
        Some((Self::wrap(x.wide().wrapping_sub(pred.wide())), x))
    }
    #[inline(always)]
    fn decode(&self, code: i64, pred: Self::W) -> Self::W {
        let m = 1i64 << Self::BITS;
        IntWork::from_wide(pred.wide().wrapping_add(code).rem_euclid(m))
    }
}

/// Integer images within `e` steps: `q = round((x - pred) / (2e + 1))`, reconstruction clamped
/// to `[0, max]`. For F32 images (relative bound) every reconstruction is checked against
/// `|x - x'| <= rel |x|` and failures are stored exactly.
#[derive(Clone)]
pub(crate) struct IntBounded<const SIZE: usize> {
    pub(crate) kind: IntKind,
    /// Largest image value.
    pub(crate) max: i64,
    /// Allowed image difference.
    pub(crate) e: i64,
    /// Relative bound to check (F32 images only).
    pub(crate) rel: Option<f64>,
    /// For one-byte images: the code of every difference `d = x - pred` in `-255..=255` (at
    /// index `d + 255`) and its reconstruction's offset from `x`, `code * step - d`, so the
    /// encoder's inner loop (a dependency chain from one element to the next) needs neither a
    /// division nor a multiplication. Empty otherwise.
    lut: Vec<(i16, i16)>,
}

impl<const S: usize> IntBounded<S> {
    /// A quantizer for images of `kind` in `[0, max]` within `e` steps, checking `rel` if given.
    pub(crate) fn new(kind: IntKind, max: i64, e: i64, rel: Option<f64>) -> Self {
        let step = 2 * e + 1;
        let lut = if S == 1 && max == 255 {
            (-255i64..=255)
                .map(|d| {
                    let q = (d + e).div_euclid(step);
                    // |q| <= 255 and |q * step - d| <= e <= 255 for every step.
                    (q as i16, (q * step - d) as i16)
                })
                .collect()
        } else {
            Vec::new()
        };
        IntBounded {
            kind,
            max,
            e,
            rel,
            lut,
        }
    }

    #[inline(always)]
    fn step(&self) -> i64 {
        2 * self.e + 1
    }
}

impl<const S: usize> Quant for IntBounded<S>
where
    ImageBytes<S>: ImageWork,
{
    type W = <ImageBytes<S> as ImageWork>::W;
    const SIZE: usize = S;
    #[inline(always)]
    fn load(&self, b: &[u8]) -> Self::W {
        IntWork::from_wide(self.kind.load(b))
    }
    #[inline(always)]
    fn store(&self, v: Self::W, out: &mut [u8]) {
        self.kind.store(v.wide(), out)
    }
    #[inline(always)]
    fn encode(&self, x: Self::W, pred: Self::W) -> Option<(i64, Self::W)> {
        let (x, pred) = (x.wide(), pred.wide().clamp(0, self.max));
        let s = self.step();
        // x and pred are both in 0..=255 when the table exists.
        let (q, r) = match self.lut.get((x - pred + 255) as usize) {
            Some(&(q, off)) if S == 1 => (i64::from(q), x + i64::from(off)),
            _ => {
                let q = (x - pred + self.e).div_euclid(s);
                (q, pred + q * s)
            }
        };
        let r = r.clamp(0, self.max);
        if let Some(rel) = self.rel {
            let xf = f32::from_bits(f32_from_image(x as u32));
            let rf = f32::from_bits(f32_from_image(r as u32));
            let ok = xf.is_finite()
                && rf.is_finite()
                && (f64::from(xf) - f64::from(rf)).abs() <= rel * f64::from(xf).abs()
                && keeps_zero_sign(f64::from(xf), f64::from(rf));
            if !ok {
                return None;
            }
        }
        Some((q, IntWork::from_wide(r)))
    }
    #[inline(always)]
    fn decode(&self, code: i64, pred: Self::W) -> Self::W {
        let pred = pred.wide().clamp(0, self.max);
        IntWork::from_wide(
            pred.saturating_add(code.saturating_mul(self.step()))
                .clamp(0, self.max),
        )
    }
}

/// False where `x` is a zero and `r` is not that very zero. A relative bound allows a zero no
/// error, and `r == x` alone would let -0.0 stand for +0.0 (and the reverse).
#[inline(always)]
fn keeps_zero_sign(x: f64, r: f64) -> bool {
    x != 0.0 || r.to_bits() == x.to_bits()
}

/// False where `x` is -0.0 and its reconstruction `r` is not: under an absolute bound +0.0 may
/// come back as any value within the bound, but -0.0 comes back exactly, as NaN and the
/// infinities do (stored as an exception).
#[inline(always)]
fn keeps_negative_zero(x: f64, r: f64) -> bool {
    !(x == 0.0 && x.is_sign_negative()) || r.to_bits() == x.to_bits()
}

/// Largest code magnitude under a float absolute bound; beyond it the element is an exception.
const FLOAT_MAX_CODE: f64 = (1u64 << 52) as f64;

/// F32 within an absolute bound `e`: `q = round((x - pred) / 2e)`, `x' = f32(pred + 2e q)`,
/// checked `|x - x'| <= e`; non-finite values and failures are stored exactly.
#[derive(Clone)]
pub(crate) struct FloatAbs {
    pub(crate) e: f64,
}

impl FloatAbs {
    #[inline(always)]
    fn clean(pred: f64) -> f64 {
        if pred.is_finite() {
            pred
        } else {
            0.0
        }
    }
}

impl Quant for FloatAbs {
    type W = f64;
    const SIZE: usize = 4;
    #[inline(always)]
    fn load(&self, b: &[u8]) -> f64 {
        f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    #[inline(always)]
    fn store(&self, v: f64, out: &mut [u8]) {
        out[..4].copy_from_slice(&(v as f32).to_le_bytes())
    }
    #[inline(always)]
    fn encode(&self, x: f64, pred: f64) -> Option<(i64, f64)> {
        let pred = Self::clean(pred);
        let q = ((x - pred) / (2.0 * self.e)).round();
        if q.is_nan() || q.abs() > FLOAT_MAX_CODE {
            return None; // also NaN / infinite x
        }
        // Rebuilt from the integer code as the decoder does: `q` may be -0.0, which the code
        // cannot carry, and `-0.0 + -0.0` would keep a sign the decoder's `-0.0 + 0.0` drops.
        let code = q as i64;
        let r = self.decode(code, pred);
        ((x - r).abs() <= self.e && keeps_negative_zero(x, r)).then_some((code, r))
    }
    #[inline(always)]
    fn decode(&self, code: i64, pred: f64) -> f64 {
        let pred = Self::clean(pred);
        f64::from((pred + code as f64 * (2.0 * self.e)) as f32)
    }
}

/// The geometry of a padded frame buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Padded {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) c: usize,
}

impl Padded {
    /// Elements in a padded buffer (one extra row and column).
    pub(crate) fn len(self) -> usize {
        (self.h + 1) * (self.w + 1) * self.c
    }
    /// Elements in one padded row.
    pub(crate) fn row(self) -> usize {
        (self.w + 1) * self.c
    }
    /// Padded index of element (y, x, channel 0).
    #[inline]
    pub(crate) fn at(self, y: usize, x: usize) -> usize {
        ((y + 1) * (self.w + 1) + x + 1) * self.c
    }
}

/// What happens at each element, in raster order: the encoder quantizes the input, the decoder
/// reads a code. Gets the frame index `e` (unpadded, within the frame), the padded index `p`, the
/// channel, and the prediction; returns the reconstruction.
pub(crate) trait Visit<W> {
    /// Codes (or decodes) one element.
    fn visit(&mut self, e: usize, p: usize, ch: usize, pred: W) -> Result<W, String>;
}

/// Walks one frame with predictor `mode`, writing reconstructions into `cur` (padded, border
/// zero). `prev` is the previous reconstructed frame (padded), needed by temporal modes.
pub(crate) fn walk_frame<W, V>(
    g: Padded,
    mode: u8,
    prev: &[W],
    cur: &mut [W],
    v: &mut V,
) -> Result<(), String>
where
    W: Mix,
    V: Visit<W>,
{
    let pred_kind = mode & !INTER_CHANNEL;
    if pred_kind != PRED_SPATIAL && prev.len() != g.len() {
        return Err("temporal predictor without a previous frame".into());
    }
    if cur.len() != g.len() {
        return Err("frame buffer of the wrong size".into());
    }
    // One monomorphic loop per mode: no per-element dispatch on the predictor.
    walk_rows(g, mode, prev, cur, v, 0..g.h)
}

/// [`walk_frame`] over the rows `rows` only (element indices stay those of the whole frame).
/// The caller checks the buffers' sizes and that temporal modes have a previous frame.
pub(crate) fn walk_rows<W, V>(
    g: Padded,
    mode: u8,
    prev: &[W],
    cur: &mut [W],
    v: &mut V,
    rows: std::ops::Range<usize>,
) -> Result<(), String>
where
    W: Mix,
    V: Visit<W>,
{
    // Three-channel frames (RGB) get loops of their own, unrolled over the pixel's channels
    // (a known channel count up to 4 also keeps W and NW in registers, see `walk`).
    if g.c == 3 {
        walk_mode::<W, V, 3>(g, mode, prev, cur, v, rows)
    } else {
        walk_mode::<W, V, 0>(g, mode, prev, cur, v, rows)
    }
}

/// [`walk_rows`] for frames of `CH` channels (`0`: `g.c`, known at run time only).
fn walk_mode<W, V, const CH: usize>(
    g: Padded,
    mode: u8,
    prev: &[W],
    cur: &mut [W],
    v: &mut V,
    rows: std::ops::Range<usize>,
) -> Result<(), String>
where
    W: Mix,
    V: Visit<W>,
{
    let inter = mode & INTER_CHANNEL != 0;
    match (mode & !INTER_CHANNEL, inter) {
        (PRED_SPATIAL, false) => walk::<W, V, PRED_SPATIAL, false, CH>(g, prev, cur, v, rows),
        (PRED_SPATIAL, true) => walk::<W, V, PRED_SPATIAL, true, CH>(g, prev, cur, v, rows),
        (PRED_TEMPORAL, false) => walk::<W, V, PRED_TEMPORAL, false, CH>(g, prev, cur, v, rows),
        (PRED_TEMPORAL, true) => walk::<W, V, PRED_TEMPORAL, true, CH>(g, prev, cur, v, rows),
        (_, false) => walk::<W, V, PRED_LORENZO3, false, CH>(g, prev, cur, v, rows),
        (_, true) => walk::<W, V, PRED_LORENZO3, true, CH>(g, prev, cur, v, rows),
    }
}

/// The prediction of the element at padded index `p` before inter-channel correction, from
/// its neighbours W, N and NW in the frame being reconstructed and the previous frame.
#[inline(always)]
fn base_prediction<W: Mix, const P: u8>(
    (wv, nv, nwv): (W, W, W),
    prev: &[W],
    p: usize,
    c: usize,
    rs: usize,
) -> W {
    match P {
        PRED_SPATIAL => wv + nv - nwv,
        PRED_TEMPORAL => prev[p],
        _ => {
            let lp = prev[p - c] + prev[p - rs] - prev[p - rs - c];
            prev[p] + ((wv + nv - nwv) - lp)
        }
    }
}

/// The prediction of channel `ch` from its base and the residuals of the two channels before it.
#[inline(always)]
fn channel_prediction<W: Mix, const INTER: bool>(base: W, ch: usize, res1: W, res2: W) -> W {
    match ch {
        _ if !INTER => base,
        0 => base,
        1 => base + res1,
        _ => base + W::mix(res1, res2),
    }
}

fn walk<W, V, const P: u8, const INTER: bool, const CH: usize>(
    g: Padded,
    prev: &[W],
    cur: &mut [W],
    v: &mut V,
    rows: std::ops::Range<usize>,
) -> Result<(), String>
where
    W: Mix,
    V: Visit<W>,
{
    let c = if CH == 0 { g.c } else { CH };
    let rs = g.row();
    let mut e = rows.start * g.w * c;
    for y in rows {
        // With `CH` known, each channel's W and NW ride in registers from one pixel to the
        // next: W is the reconstruction just computed, which a load would only get back from
        // the store (a longer dependency chain from element to element).
        let mut west = [W::default(); 4];
        let mut north_west = [W::default(); 4];
        if CH > 0 {
            let at = g.at(y, 0);
            for ch in 0..CH {
                west[ch] = cur[at - c + ch];
                north_west[ch] = cur[at - rs - c + ch];
            }
        }
        for x in 0..g.w {
            let p0 = g.at(y, x);
            let (mut res1, mut res2) = (W::default(), W::default());
            for ch in 0..c {
                let p = p0 + ch;
                let nv = cur[p - rs];
                let near = if CH > 0 {
                    (west[ch], nv, north_west[ch])
                } else {
                    (cur[p - c], nv, cur[p - rs - c])
                };
                let base = base_prediction::<W, P>(near, prev, p, c, rs);
                let pred = channel_prediction::<W, INTER>(base, ch, res1, res2);
                let r = v.visit(e, p, ch, pred)?;
                cur[p] = r;
                if CH > 0 {
                    west[ch] = r;
                    north_west[ch] = nv;
                }
                res2 = res1;
                res1 = r - base;
                e += 1;
            }
        }
    }
    Ok(())
}

/// What an exception counts in a mode's cost.
pub(crate) const EXCEPTION_BITS: u64 = 64;

/// Elias-gamma length of the zigzagged code: a cheap stand-in for its entropy.
#[inline(always)]
pub(crate) fn gamma_bits(code: i64) -> u64 {
    let z = (((code << 1) ^ (code >> 63)) as u64).saturating_add(1);
    2 * u64::from(63 - z.leading_zeros()) + 1
}

/// Context of an element from the code magnitudes already seen (`mags`, padded like the frame):
/// W, N, NW, NE in the same channel and the previous channel of the same pixel, bucketed on a
/// half-octave scale after `shift`. Channels after the first use their own set of contexts.
#[inline(always)]
pub(crate) fn context<M: Copy + Into<u64>>(
    mags: &[M],
    g: Padded,
    p: usize,
    ch: usize,
    shift: u32,
) -> usize {
    let (c, rs) = (g.c, g.row());
    let m = |i: usize| -> u64 { mags[i].into() };
    let mut a = m(p - c) + m(p - rs) + m(p - rs - c) + m(p - rs + c);
    if ch > 0 {
        a += 2 * m(p - 1);
    }
    if ch > 1 {
        a += m(p - 2);
    }
    let b = bucket(a >> shift);
    if ch > 0 {
        b + CONTEXTS_PER_SET
    } else {
        b
    }
}

/// Contexts per set (first channel / later channels).
pub(crate) const CONTEXTS_PER_SET: usize = 16;
/// Streams in a group object.
pub(crate) const CONTEXTS: usize = 2 * CONTEXTS_PER_SET;

#[inline(always)]
fn bucket(a: u64) -> usize {
    // Branch-free (small and large sums alternate unpredictably): both values, then a select.
    let top = 63 - (a | 2).leading_zeros();
    let half = (a >> (top - 1)) & 1;
    let large = ((2 * top as u64 + half) as usize).min(CONTEXTS_PER_SET - 1);
    if a < 4 {
        a as usize
    } else {
        large
    }
}

/// The bucket of every shifted magnitude sum `0..=255` (every larger sum shares the last one's):
/// one lookup per element for a pass that computes many contexts.
pub(crate) fn bucket_table() -> [u8; 256] {
    std::array::from_fn(|a| bucket(a as u64) as u8)
}

/// Magnitude of a code as kept for contexts.
#[inline]
pub(crate) fn mag(code: i64) -> u32 {
    code.unsigned_abs().min(u32::MAX as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_orders_floats() {
        let xs = [
            f32::NEG_INFINITY,
            -2.0,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            1.0,
            f32::INFINITY,
        ];
        let imgs: Vec<u32> = xs.iter().map(|x| f32_image(x.to_bits())).collect();
        assert!(imgs.windows(2).all(|w| w[0] < w[1]));
        for x in xs {
            assert_eq!(f32_from_image(f32_image(x.to_bits())), x.to_bits());
        }
        let nan = 0x7fc1_2345u32;
        assert_eq!(f32_from_image(f32_image(nan)), nan);
    }

    #[test]
    fn buckets_are_monotone_and_bounded() {
        let b: Vec<usize> = (0..5000u64).map(bucket).collect();
        assert!(b.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(bucket(u64::MAX), CONTEXTS_PER_SET - 1);
        assert_eq!(&b[..6], &[0, 1, 2, 3, 4, 4]);
    }

    #[test]
    fn integer_bound_is_exact() {
        let q = IntBounded::<1>::new(IntKind::U8, 255, 2, None);
        for x in 0..256 {
            for pred in [-300, -1, 0, 7, 128, 254, 255, 256, 999] {
                let (code, r) = q.encode(x, pred).unwrap();
                assert!((x - r).abs() <= 2 && (0..=255).contains(&r));
                assert_eq!(q.decode(code, pred), r);
            }
        }
        assert_eq!(q.decode(i64::MAX, 0), 255);
        assert_eq!(q.decode(i64::MIN, 0), 0);
    }
}
