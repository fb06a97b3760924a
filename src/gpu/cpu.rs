//! CPU counterparts of the kernels that have no CPU codec function yet (the code histograms,
//! the keyframe reference), used by the CPU backend and as the reference in the parity tests.

use crate::codec::logquant::FloatKind;

/// Codes `-HIST_CLIP..=HIST_CLIP` have their own bin.
pub(crate) const HIST_CLIP: usize = 64;
/// Bins per histogram: the clipped codes, then [`HIST_OVERFLOW`], then [`HIST_EXCEPTION`].
pub(crate) const HIST_BINS: usize = 2 * HIST_CLIP + 3;
/// Bin of codes with `|code| > HIST_CLIP`.
pub(crate) const HIST_OVERFLOW: usize = 2 * HIST_CLIP + 1;
/// Bin of elements whose estimate is not finite (stored as exceptions).
pub(crate) const HIST_EXCEPTION: usize = 2 * HIST_CLIP + 2;

/// Element bits (little endian) at index `i`.
pub(crate) fn load(kind: FloatKind, bytes: &[u8], i: usize) -> u64 {
    let s = kind.size();
    let mut b = [0u8; 8];
    b[..s].copy_from_slice(&bytes[i * s..(i + 1) * s]);
    u64::from_le_bytes(b)
}

/// Exact widening to `f64` (NaN payloads are irrelevant here: NaN is only ever tested for).
pub(crate) fn widen(kind: FloatKind, bits: u64) -> f64 {
    match kind {
        FloatKind::F16 => half::f16::from_bits(bits as u16).to_f64(),
        FloatKind::BF16 => f64::from(f32::from_bits((bits as u32) << 16)),
        FloatKind::F32 => f64::from(f32::from_bits(bits as u32)),
        FloatKind::F64 => f64::from_bits(bits),
    }
}

/// `±1.0` with the sign of `a_bits` (lossy.rs: the keyframe reference).
pub(crate) fn keyframe_bits(kind: FloatKind, a_bits: u64) -> u64 {
    let (one, sign) = match kind {
        FloatKind::F16 => (0x3c00, 0x8000),
        FloatKind::BF16 => (0x3f80, 0x8000),
        FloatKind::F32 => (0x3f80_0000, 0x8000_0000),
        FloatKind::F64 => (0x3ff0_0000_0000_0000, 0x8000_0000_0000_0000),
    };
    (a_bits & sign) | one
}

/// The whole keyframe reference of `target`.
pub(crate) fn keyframe_reference(kind: FloatKind, target: &[u8]) -> Vec<u8> {
    let s = kind.size();
    let mut out = Vec::with_capacity(target.len());
    for i in 0..target.len() / s {
        let r = keyframe_bits(kind, load(kind, target, i));
        out.extend_from_slice(&r.to_le_bytes()[..s]);
    }
    out
}

/// logquant.rs `dither_u` (private there): splitmix64 of (index, a_bits, b_bits) in `[0, 1)`.
pub(crate) fn dither_u(i: u64, a_bits: u64, b_bits: u64) -> f64 {
    let mut z = i
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(a_bits.rotate_left(17) ^ b_bits);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The quantity the encoder rounds, before the step: `ln(A/B')` or `A - B'` (NaN when only an
/// exception can store the element), as the `estimate` of logquant.rs with `inv_step = 1`.
pub(crate) fn log_delta(relative: bool, a: f64, b: f64) -> f64 {
    if relative {
        (a / b).ln() * 1.0
    } else if a.is_finite() && b.is_finite() {
        (a - b) * 1.0
    } else {
        f64::NAN
    }
}

/// The bin of one element for one inverse step (kernels/stats.cu).
pub(crate) fn hist_bin(d: f64, inv_step: f64, dither: bool, u: f64) -> usize {
    if !d.is_finite() {
        return HIST_EXCEPTION;
    }
    let est = d * inv_step;
    let m = if dither {
        (est + u).floor()
    } else {
        est.round()
    };
    if !m.is_finite() {
        HIST_EXCEPTION
    } else if m.abs() > HIST_CLIP as f64 {
        HIST_OVERFLOW
    } else {
        (m as i64 + HIST_CLIP as i64) as usize
    }
}

/// The CPU version of `snap_code_hist_*`: one histogram per inverse step.
pub(crate) fn code_histograms(
    kind: FloatKind,
    relative: bool,
    dither: bool,
    target: &[u8],
    reference: Option<&[u8]>,
    inv_steps: &[f64],
) -> Vec<[u64; HIST_BINS]> {
    let mut hists = vec![[0u64; HIST_BINS]; inv_steps.len()];
    let n = target.len() / kind.size();
    for i in 0..n {
        let a_bits = load(kind, target, i);
        let b_bits = match reference {
            Some(r) => load(kind, r, i),
            None => keyframe_bits(kind, a_bits),
        };
        if a_bits == b_bits {
            for h in hists.iter_mut() {
                h[HIST_CLIP] += 1;
            }
            continue;
        }
        let d = log_delta(relative, widen(kind, a_bits), widen(kind, b_bits));
        let u = if dither && d.is_finite() {
            dither_u(i as u64, a_bits, b_bits)
        } else {
            0.0
        };
        for (h, &inv) in hists.iter_mut().zip(inv_steps) {
            h[hist_bin(d, inv, dither, u)] += 1;
        }
    }
    hists
}
