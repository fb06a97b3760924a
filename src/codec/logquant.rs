//! Error-bounded, log-quantized deltas between two snapshots of a tensor chunk
//! (Delta-DNN, ICPP 2020).
//!
//! The encoder maps every target element `A` to an integer code `M` relative to
//! the *reconstructed* reference `B'` (what the decoder also has):
//!
//! * relative bound `eps`: `M ~ round(ln(A / B') / ln(r))` with
//!   `r = (1 + eps)^2`, decoded as `A' = round_dtype(B' * table[M])`;
//! * absolute bound `eps`: `M ~ round((A - B') / (2 eps))`, decoded as
//!   `A' = round_dtype(B' + table[M])`.
//!
//! Every coded element satisfies the bound *after* rounding to the element
//! type, because the encoder runs the exact decoder on each candidate code.
//! Elements that cannot be coded are stored as raw-bit exceptions.
//!
//! # Decoder contract (bit-exact, reproducible on a GPU)
//!
//! For an element with code `m` and reference bits `b_bits`:
//!
//! * `m == 0`: `A'` is a bit copy of `B'` (no arithmetic, so `-0.0`, NaN
//!   payloads and infinities are preserved);
//! * `m != 0`: `b = B'` widened exactly to `f64`; `x = b * T[m + max_code]`
//!   (relative) or `x = b + T[m + max_code]` (absolute), one correctly rounded
//!   `f64` operation, no FMA; `A'` = `x` rounded to the element type with
//!   round-to-nearest-even directly from `f64` (overflow gives infinity,
//!   gradual underflow to subnormals / signed zero);
//! * exception positions are then overwritten with their stored raw bytes.
//!
//! `T` is [`PowerTable::values`]; see [`PowerTable::new`] for how it is built.
//!
//! # Encoder policy
//!
//! * `A == B'` bitwise (any value, NaN included): code 0, never an exception.
//! * Code 0 is also taken whenever `B'` itself meets the bound against `A`.
//! * Otherwise `m0 = round(est)` (`f64::round`, halves away from zero) with
//!   `est = ln(A / B') / ln(r)` or `(A - B') / (2 eps)`, then the neighbour on
//!   the side of `est`, then the other neighbour; codes beyond `max_code` are
//!   skipped. The first candidate whose exact decode passes the check wins.
//! * Exception (raw bits stored, code 0): no candidate passes, which covers
//!   NaN/Inf in `A` or `B'`, and in relative mode zero `A` or `B'` (either
//!   sign) and sign flips. In absolute mode a zero target is an ordinary value:
//!   `-0.0` may come back as `+0.0` (numerically within the bound).
//! * The check is `|A' - A| <= eps' * |A|` (or `<= eps'`) in `f64` with
//!   `eps' = eps * (1 - 2^-50)`, which implies the bound with `eps` in exact
//!   arithmetic (and hence also in plain `f64` evaluation).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

mod lanes;

/// Grid offsets per lattice: element `i` sits `lattice_slot(i) / 256` of a step off the global grid.
const LATTICE_SLOTS: usize = 256;

/// Largest accepted `max_code`.
pub(crate) const MAX_CODE_LIMIT: u32 = 1 << 20;

/// Safety factor `1 - 2^-50` applied to the bound used by the encoder's check,
/// so that the `f64` evaluation of `|A' - A| <= eps * |A|` (or `<= eps`)
/// implies the bound in exact arithmetic despite the rounding of the check.
const CHECK_MARGIN: f64 = 1.0 - 1.0 / (1u64 << 50) as f64;

/// `2^-960`: below this `|A|` the relative check of an `f64` element is done on
/// values scaled by [`SCALE_UP`] so that `eps * |A|` cannot be subnormal.
const SMALL_F64: f64 = f64::from_bits((1023 - 960) << 52);
/// `2^600`, an exact power-of-two scale.
const SCALE_UP: f64 = f64::from_bits((1023 + 600) << 52);

/// Element types the quantizer handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatKind {
    F16,
    BF16,
    F32,
    F64,
}

impl FloatKind {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            FloatKind::F16 | FloatKind::BF16 => 2,
            FloatKind::F32 => 4,
            FloatKind::F64 => 8,
        }
    }
}

/// Per-element error bound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ErrorBound {
    /// `|A' - A| <= eps * |A|`, `0 < eps < 1`.
    Relative(f64),
    /// `|A' - A| <= eps`, `eps > 0`.
    Absolute(f64),
}

/// Errors reported by this module (never panics on bad input).
#[derive(Clone, Debug, PartialEq)]
pub enum QuantError {
    /// The bound is non-finite, `<= 0`, `>= 1` (relative), or degenerate
    /// (relative `eps` so small that `1 + eps == 1`, absolute `2 * eps` overflows).
    InvalidBound(ErrorBound),
    /// `max_code` is 0 or larger than `1 << 20`.
    InvalidMaxCode(u32),
    /// Two lengths that must agree do not.
    LengthMismatch {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// A byte buffer is not a whole number of elements.
    UnalignedLength { len: usize, elem_size: usize },
    /// More elements than a `u32` exception position can address.
    TooManyElements(usize),
    /// Exception position out of range, unsorted or duplicated.
    BadExceptionPosition { index: usize, position: u32 },
    /// The code stored at an exception position is not 0.
    ExceptionCodeNotZero { position: u32, code: i32 },
    /// A lattice operation given a table built without offsets.
    NotALattice,
    /// A code outside `-max_code..=max_code`.
    CodeOutOfRange {
        index: usize,
        code: i32,
        max_code: u32,
    },
    /// A code outside `-max_code..=max_code` in a lattice delta's code stream.
    StreamCodeOutOfRange {
        stream: usize,
        at: usize,
        code: i32,
        max_code: u32,
    },
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantError::InvalidBound(b) => write!(f, "invalid error bound {b:?}"),
            QuantError::InvalidMaxCode(m) => {
                write!(f, "invalid max_code {m} (must be 1..={MAX_CODE_LIMIT})")
            }
            QuantError::LengthMismatch {
                what,
                expected,
                actual,
            } => write!(f, "length mismatch for {what}: expected {expected}, got {actual}"),
            QuantError::UnalignedLength { len, elem_size } => write!(
                f,
                "buffer of {len} bytes is not a multiple of the element size {elem_size}"
            ),
            QuantError::TooManyElements(n) => {
                write!(f, "{n} elements exceed the u32 exception position range")
            }
            QuantError::BadExceptionPosition { index, position } => write!(
                f,
                "exception #{index} has position {position} that is out of range, unsorted or duplicated"
            ),
            QuantError::ExceptionCodeNotZero { position, code } => {
                write!(f, "exception at position {position} carries non-zero code {code}")
            }
            QuantError::NotALattice => write!(f, "lattice coding needs a lattice table"),
            QuantError::CodeOutOfRange {
                index,
                code,
                max_code,
            } => write!(f, "code {code} at index {index} is outside +-{max_code}"),
            QuantError::StreamCodeOutOfRange {
                stream,
                at,
                code,
                max_code,
            } => write!(
                f,
                "code {code} at position {at} of code stream {stream} is outside +-{max_code}"
            ),
        }
    }
}

impl std::error::Error for QuantError {}

/// Decode table shared by encoder and decoder (and uploaded to the GPU).
#[derive(Clone, Debug, PartialEq)]
pub struct PowerTable {
    bound: ErrorBound,
    max_code: u32,
    values: Vec<f64>,
    /// Encoder only: `eps * CHECK_MARGIN`.
    eps_check: f64,
    /// Encoder only: codes per unit of `ln(A/B')` (relative) or of `A - B'` (absolute).
    inv_step: f64,
    /// Encoder only: round codes stochastically (unbiased) instead of to nearest.
    dither: bool,
    /// Encoder only: code 0 whenever the reference itself meets the bound (not on a lattice,
    /// where code 0 must mean "same lattice point").
    keep_reference: bool,
    /// Lattice tables only: the per-element offsets `D[j]` (see [`PowerTable::lattice`]).
    offsets: Vec<f64>,
}

impl PowerTable {
    /// Builds the table, `values()[m + max_code]` for `m` in `-max_code..=max_code`.
    ///
    /// Relative (`0 < eps < 1`, finite, `1 + eps > 1`): `s = 1 + eps`, `r = s * s`
    /// (each an f64 operation, round-to-nearest-even). `S_0 = r`,
    /// `S_{k+1} = S_k * S_k`. For `m >= 1`, `P_m` is the left-to-right product
    /// `((1.0 * S_{k0}) * S_{k1}) * ...` over the set bits `k0 < k1 < ...` of `m`
    /// (binary exponentiation, at most 21 rounded multiplies). Entries:
    /// `T[0] = 1.0`, `T[m] = P_m`, `T[-m] = 1.0 / P_m` (one rounded division;
    /// very large `m` may give `inf` / `0.0`, which simply never passes the
    /// encoder's check). No `ln`/`exp`/`pow` is used.
    ///
    /// Absolute (`eps > 0`, finite, `2 * eps` finite): `T[m] = (2.0 * eps) * (m as f64)`,
    /// one correctly rounded product (`2.0 * eps` and `m as f64` are exact).
    pub fn new(bound: ErrorBound, max_code: u32) -> Result<Self, QuantError> {
        if max_code == 0 || max_code > MAX_CODE_LIMIT {
            return Err(QuantError::InvalidMaxCode(max_code));
        }
        let n = max_code as usize;
        let mut values = vec![0.0f64; 2 * n + 1];
        let (eps, inv_step) = match bound {
            ErrorBound::Relative(eps) => {
                if !(eps.is_finite() && eps > 0.0 && eps < 1.0 && 1.0 + eps > 1.0) {
                    return Err(QuantError::InvalidBound(bound));
                }
                let s = 1.0 + eps;
                let r = s * s;
                let mut squares = [0.0f64; 21];
                squares[0] = r;
                for k in 1..squares.len() {
                    squares[k] = squares[k - 1] * squares[k - 1];
                }
                values[n] = 1.0;
                for m in 1..=n {
                    let mut acc = 1.0f64;
                    let mut e = m;
                    let mut k = 0;
                    while e != 0 {
                        if e & 1 == 1 {
                            acc *= squares[k];
                        }
                        e >>= 1;
                        k += 1;
                    }
                    values[n + m] = acc;
                    values[n - m] = 1.0 / acc;
                }
                (eps, 1.0 / r.ln())
            }
            ErrorBound::Absolute(eps) => {
                let two_eps = 2.0 * eps;
                if !(eps.is_finite() && eps > 0.0 && two_eps.is_finite()) {
                    return Err(QuantError::InvalidBound(bound));
                }
                for (i, v) in values.iter_mut().enumerate() {
                    *v = two_eps * (i as f64 - n as f64);
                }
                (eps, 1.0 / two_eps)
            }
        };
        Ok(PowerTable {
            bound,
            max_code,
            values,
            eps_check: eps * CHECK_MARGIN,
            inv_step,
            dither: false,
            keep_reference: true,
            offsets: Vec::new(),
        })
    }

    /// A table for lattice coding: every element lives on a log grid of its own, the full step
    /// of [`PowerTable::new`] shifted by an offset `j / 256` step hashed from the element's
    /// position (`lattice_slot`). Deltas round to the nearest point of that grid (so a weight that
    /// does not move costs code 0, and one that drifts slowly is not frozen coherently with its
    /// layer: the grids of its neighbours are offset differently). Elements coded with no usable
    /// reference (keyframes, sign flips, a zero reference) land on their grid with
    /// `x = (b * T[m]) * D[j]` (relative, `b = ±1`) or `(b + T[m]) + D[j]` (absolute, `b = 0`).
    ///
    /// `D` is built without `exp`/`ln`/`pow`, so every machine gets the same bits: relative,
    /// `q_0 = r`, `q_{t+1} = sqrt(q_t)` (8 correctly rounded square roots, `q_8 = r^(1/256)`),
    /// `P_j` the left-to-right product of `q_{8-b}` over the set bits `b` of `j` (ascending),
    /// `D[j] = 1.0 / P_j`, `D[0] = 1.0`; absolute, `D[j] = -((2 * eps) * (j / 256))`.
    pub fn lattice(bound: ErrorBound, max_code: u32) -> Result<Self, QuantError> {
        let mut t = Self::new(bound, max_code)?;
        t.keep_reference = false;
        t.offsets = lattice_offsets(bound);
        Ok(t)
    }

    /// True for a table built by [`PowerTable::lattice`].
    pub fn is_lattice(&self) -> bool {
        !self.offsets.is_empty()
    }

    /// Lattice offsets `D[j]`, empty for other tables.
    #[allow(dead_code)] // for the CUDA backend once its kernels follow the lattice
    pub fn offsets(&self) -> &[f64] {
        &self.offsets
    }

    /// A table whose codes step at half the bound (`step` is `sqrt(1+eps)-1` relative, `eps/2`
    /// absolute) and whose encoder rounds stochastically: `M = floor(x + u)` with `u` a
    /// deterministic hash of the element, so `E[A'] = A` and slow drift is tracked instead of
    /// frozen, while `|x - M| < 1` fine step keeps every element within `eps`. Decoding is the
    /// same table lookup; only the step differs.
    pub fn dithered(bound: ErrorBound, max_code: u32) -> Result<Self, QuantError> {
        let step = match bound {
            ErrorBound::Relative(eps) => ErrorBound::Relative((1.0 + eps).sqrt() - 1.0),
            ErrorBound::Absolute(eps) => ErrorBound::Absolute(eps / 2.0),
        };
        let check = match bound {
            ErrorBound::Relative(e) | ErrorBound::Absolute(e) => e,
        };
        let mut t = Self::new(step, max_code)?;
        if !(check.is_finite() && check > 0.0) {
            return Err(QuantError::InvalidBound(bound));
        }
        t.bound = bound;
        t.eps_check = check * CHECK_MARGIN;
        t.dither = true;
        Ok(t)
    }

    /// The bound this table was built for.
    #[allow(dead_code)] // read by the CUDA backend and tests
    pub fn bound(&self) -> ErrorBound {
        self.bound
    }

    /// Largest code magnitude.
    #[allow(dead_code)] // read by the CUDA backend and tests
    pub fn max_code(&self) -> u32 {
        self.max_code
    }

    /// Table entries, length `2 * max_code + 1`, index `m + max_code`.
    #[allow(dead_code)] // uploaded by the CUDA backend
    pub fn values(&self) -> &[f64] {
        &self.values
    }
}

/// The offsets `D[j]` of `bound`'s lattice (see [`PowerTable::lattice`]).
fn lattice_offsets(bound: ErrorBound) -> Vec<f64> {
    match bound {
        ErrorBound::Relative(eps) => {
            let s = 1.0 + eps;
            let mut roots = [s * s; 9];
            for k in 1..roots.len() {
                roots[k] = roots[k - 1].sqrt();
            }
            (0..LATTICE_SLOTS)
                .map(|j| {
                    let mut acc = 1.0f64;
                    for b in 0..8 {
                        if j >> b & 1 == 1 {
                            acc *= roots[8 - b];
                        }
                    }
                    if j == 0 {
                        1.0
                    } else {
                        1.0 / acc
                    }
                })
                .collect()
        }
        ErrorBound::Absolute(eps) => (0..LATTICE_SLOTS)
            .map(|j| -((2.0 * eps) * (j as f64 / LATTICE_SLOTS as f64)))
            .collect(),
    }
}

/// Result of quantizing one chunk. Exceptions are sorted ascending by position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantizedChunk {
    /// One code per element; 0 at exceptions.
    pub codes: Vec<i32>,
    /// Strictly ascending element indices of exceptions.
    pub exception_positions: Vec<u32>,
    /// Raw little-endian bytes, `kind.size()` per exception, same order.
    pub exception_values: Vec<u8>,
}

// ---------------------------------------------------------------------------
// Element access and rounding.

/// Rounds an `f64` to a binary format with `EXP` exponent bits and `MAN`
/// stored mantissa bits (f16: 5/10, bf16: 8/7), round-to-nearest-even,
/// directly from the `f64` bits (no intermediate format, so no double rounding).
/// Overflow gives infinity, tiny values round to subnormals or signed zero.
/// NaN maps to a quiet NaN keeping the sign and the top mantissa bits.
#[inline]
fn round_f64_to_narrow<const EXP: u32, const MAN: u32>(x: f64) -> u16 {
    const F64_MAN_MASK: u64 = (1 << 52) - 1;
    let bits = x.to_bits();
    let sign = ((bits >> 48) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff_ffff_ffff;
    let exp_mask: u16 = ((1u16 << EXP) - 1) << MAN;
    if abs >= 0x7ff0_0000_0000_0000 {
        if abs == 0x7ff0_0000_0000_0000 {
            return sign | exp_mask;
        }
        let payload = ((abs & F64_MAN_MASK) >> (52 - MAN)) as u16;
        return sign | exp_mask | (1 << (MAN - 1)) | payload;
    }
    let bias = (1i32 << (EXP - 1)) - 1;
    let max_biased = (1i32 << EXP) - 2;
    let e64 = (abs >> 52) as i32;
    let te = e64 - 1023 + bias;
    if te > max_biased {
        return sign | exp_mask;
    }
    let (val, shift) = if te >= 1 {
        // Re-bias the exponent in place: `val >> shift` is then the target
        // encoding (exponent and mantissa) truncated.
        (abs - (((1023 - bias) as u64) << 52), 52 - MAN)
    } else {
        if e64 == 0 {
            // f64 zero or subnormal: far below half the smallest target subnormal.
            return sign;
        }
        let shift = 52 - MAN + (1 - te) as u32;
        if shift >= 54 {
            // sig < 2^53, so sig / 2^shift < 1/2: rounds to zero.
            return sign;
        }
        // Full significand; `val >> shift` counts target subnormal units.
        ((abs & F64_MAN_MASK) | (1 << 52), shift)
    };
    // Round to nearest, ties to even: add half - 1, plus 1 when the kept LSB is
    // odd. A carry out of the mantissa bumps the exponent (normal -> next
    // binade, subnormal -> smallest normal, largest finite -> infinity).
    let r = (val + ((1u64 << (shift - 1)) - 1) + ((val >> shift) & 1)) >> shift;
    sign | r as u16
}

/// `f64` -> IEEE binary16 bits, round-to-nearest-even.
#[inline]
fn f64_to_f16_bits(x: f64) -> u16 {
    round_f64_to_narrow::<5, 10>(x)
}

/// `f64` -> bfloat16 bits, round-to-nearest-even.
#[inline]
fn f64_to_bf16_bits(x: f64) -> u16 {
    round_f64_to_narrow::<8, 7>(x)
}

trait Elem {
    type Raw: Copy + AsRef<[u8]>;
    const KIND: FloatKind;
    const IS_F64: bool;
    /// Position and all-ones value of the biased exponent field in the element's bits.
    const EXP_SHIFT: u32;
    const EXP_MAX: u16;
    fn chunks(bytes: &[u8]) -> &[Self::Raw];
    fn chunks_mut(bytes: &mut [u8]) -> &mut [Self::Raw];
    fn load(raw: Self::Raw) -> u64;
    fn to_raw(bits: u64) -> Self::Raw;
    /// Exact widening of the element bits to `f64`.
    fn widen(bits: u64) -> f64;
    /// Round-to-nearest-even from `f64` to the element type.
    fn narrow(x: f64) -> u64;
}

/// An [`Elem`]: its width in bytes and the little-endian integer of that width, its exponent
/// field, and its exact widening and correctly rounded narrowing.
macro_rules! elem {
    ($name:ident = $kind:ident: $n:literal bytes as $int:ty, exponent $shift:literal / $exp_max:literal,
     widen |$b:ident| $widen:expr, narrow |$x:ident| $narrow:expr) => {
        struct $name;

        impl Elem for $name {
            type Raw = [u8; $n];
            const KIND: FloatKind = FloatKind::$kind;
            const IS_F64: bool = $n == 8;
            const EXP_SHIFT: u32 = $shift;
            const EXP_MAX: u16 = $exp_max;
            fn chunks(bytes: &[u8]) -> &[[u8; $n]] {
                bytes.as_chunks::<$n>().0
            }
            fn chunks_mut(bytes: &mut [u8]) -> &mut [[u8; $n]] {
                bytes.as_chunks_mut::<$n>().0
            }
            #[inline(always)]
            #[allow(clippy::unnecessary_cast)] // a no-op for the 8-byte type only
            fn load(raw: [u8; $n]) -> u64 {
                <$int>::from_le_bytes(raw) as u64
            }
            #[inline(always)]
            #[allow(clippy::unnecessary_cast)]
            fn to_raw(bits: u64) -> [u8; $n] {
                (bits as $int).to_le_bytes()
            }
            #[inline(always)]
            fn widen($b: u64) -> f64 {
                $widen
            }
            #[inline(always)]
            fn narrow($x: f64) -> u64 {
                $narrow
            }
        }
    };
}

elem!(F16Elem = F16: 2 bytes as u16, exponent 10 / 0x1f,
    widen |bits| half::f16::from_bits(bits as u16).to_f64(),
    narrow |x| u64::from(f64_to_f16_bits(x)));
elem!(Bf16Elem = BF16: 2 bytes as u16, exponent 7 / 0xff,
    widen |bits| f64::from(f32::from_bits((bits as u32) << 16)),
    narrow |x| u64::from(f64_to_bf16_bits(x)));
// `as` from f64 to f32 is round-to-nearest-even in Rust.
elem!(F32Elem = F32: 4 bytes as u32, exponent 23 / 0xff,
    widen |bits| f64::from(f32::from_bits(bits as u32)),
    narrow |x| u64::from((x as f32).to_bits()));
elem!(F64Elem = F64: 8 bytes as u64, exponent 52 / 0x7ff,
    widen |bits| f64::from_bits(bits),
    narrow |x| x.to_bits());

// ---------------------------------------------------------------------------
// Bound modes.

trait Mode {
    /// Whether a zero target can be coded (absolute mode) or is an exception.
    const ZERO_TARGET_OK: bool;
    /// Unrounded code estimate; NaN when the element cannot be coded.
    fn estimate(a: f64, b: f64, inv_step: f64) -> f64;
    /// A cheaper estimate for the encoder's first candidate: within `estimate_tolerance` of
    /// [`Mode::estimate`] when finite; NaN where it cannot say (the caller then uses `estimate`).
    fn estimate_fast(a: f64, b: f64, inv_step: f64) -> f64;
    /// How far [`Mode::estimate_fast`] may lie from [`Mode::estimate`] at an estimate `est`.
    fn estimate_tolerance(est: f64, inv_step: f64) -> f64;
    /// [`Mode::estimate_fast`] of every `(a[k], b[k])` into `out[k]` (equal lengths), bit for bit.
    #[inline(always)]
    fn estimates_fast(a: &[f64], b: &[f64], inv_step: f64, out: &mut [f64]) {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = Self::estimate_fast(a, b, inv_step);
        }
    }
    /// The single decode operation.
    fn apply(b: f64, t: f64) -> f64;
    /// Encoder check of the (already dtype-rounded) reconstruction `x` against `a`.
    fn within<K: Elem>(x: f64, a: f64, eps_check: f64) -> bool;
}

struct Rel;
struct Abs;

impl Mode for Rel {
    const ZERO_TARGET_OK: bool = false;
    #[inline(always)]
    fn estimate(a: f64, b: f64, inv_step: f64) -> f64 {
        // Branch-free: every uncoverable input makes `ln(a / b)` non-finite and
        // hence an exception: a sign flip gives a negative ratio (ln = NaN), a
        // zero / infinite / NaN operand gives a ratio of 0, inf or NaN. For F64
        // a valid-looking ratio may overflow to inf or underflow to 0; no finite
        // table entry can represent it, so an exception is right there too.
        (a / b).ln() * inv_step
    }
    #[inline(always)]
    fn estimate_fast(a: f64, b: f64, inv_step: f64) -> f64 {
        // The same ratio as `estimate`; `ln_fast` is within 2e-13 of `ln` where it is a positive
        // normal number, and the estimate is NaN elsewhere (NaN fails both compares).
        let r = a / b;
        let normal = (f64::MIN_POSITIVE..=f64::MAX).contains(&r);
        let est = ln_fast(r) * inv_step;
        if normal {
            est
        } else {
            f64::NAN
        }
    }
    #[inline(always)]
    fn estimates_fast(a: &[f64], b: &[f64], inv_step: f64, out: &mut [f64]) {
        // SAFETY: SSE2 is part of every x86_64 CPU (the target's baseline), so the function's
        // target feature is always there; it reads and writes only through slices.
        #[cfg(target_arch = "x86_64")]
        let done = unsafe { rel_estimates_sse2(a, b, inv_step, out) };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        for ((o, &a), &b) in out[done..].iter_mut().zip(&a[done..]).zip(&b[done..]) {
            *o = Self::estimate_fast(a, b, inv_step);
        }
    }
    #[inline(always)]
    fn estimate_tolerance(est: f64, inv_step: f64) -> f64 {
        // `ln_fast` lies within 2e-13 of ln(r) and libm's `ln` within an ulp (1.1e-13 at |ln|
        // <= 745): their estimates differ by at most inv_step * 3.1e-13 plus the two roundings
        // of the product (an ulp of `est`). The tolerance is 750 times the first and 16 ulps.
        inv_step * LN_FAST_TOLERANCE + est.abs() * f64::EPSILON * 16.0
    }
    #[inline(always)]
    fn apply(b: f64, t: f64) -> f64 {
        b * t
    }
    #[inline(always)]
    fn within<K: Elem>(x: f64, a: f64, eps_check: f64) -> bool {
        let (x, a) = if K::IS_F64 && a.abs() < SMALL_F64 {
            (x * SCALE_UP, a * SCALE_UP)
        } else {
            (x, a)
        };
        (x - a).abs() <= eps_check * a.abs()
    }
}

impl Mode for Abs {
    const ZERO_TARGET_OK: bool = true;
    #[inline(always)]
    fn estimate(a: f64, b: f64, inv_step: f64) -> f64 {
        if a.is_finite() && b.is_finite() {
            (a - b) * inv_step
        } else {
            f64::NAN
        }
    }
    #[inline(always)]
    fn estimate_fast(a: f64, b: f64, inv_step: f64) -> f64 {
        Self::estimate(a, b, inv_step)
    }
    #[inline(always)]
    fn estimate_tolerance(_est: f64, _inv_step: f64) -> f64 {
        0.0
    }
    #[inline(always)]
    fn apply(b: f64, t: f64) -> f64 {
        b + t
    }
    #[inline(always)]
    fn within<K: Elem>(x: f64, a: f64, eps_check: f64) -> bool {
        (x - a).abs() <= eps_check
    }
}

/// `ln(2)` rounded to `f64`.
const LN_2: f64 = std::f64::consts::LN_2;
/// The coefficients of [`ln_fast`]'s series in `z = s^2`, highest first: `1/15, 1/13, ..., 1/3, 1`
/// (Horner's order; the vector versions read them from here).
const ATANH_SERIES: [f64; 8] = [
    1.0 / 15.0,
    1.0 / 13.0,
    1.0 / 11.0,
    1.0 / 9.0,
    1.0 / 7.0,
    1.0 / 5.0,
    1.0 / 3.0,
    1.0,
];
/// The bits of `sqrt(1/2)` rounded to `f64`: mantissas are reduced to `[sqrt(1/2), sqrt(2))`.
const SQRT_HALF_BITS: u64 = 0x3fe6_a09e_667f_3bcd;
/// A bound on `|ln_fast(r) - ln(r)|` for every positive normal `r`, five times the proven one
/// (see [`ln_fast`]).
#[cfg(test)]
const LN_FAST_ERROR: f64 = 1e-12;
/// `2^-32`: the encoder's tolerance per unit of `inv_step` between the fast and the libm
/// estimate, about 750 times their proven difference (`Mode::estimate_tolerance`).
const LN_FAST_TOLERANCE: f64 = 1.0 / (1u64 << 32) as f64;

/// `ln(r)` for a positive normal `r` to within 2e-13 absolute, branch-free (the encoder only
/// orders its candidates with it, and falls back to `f64::ln` near a rounding boundary).
///
/// `r = m * 2^k` with `m` in `[sqrt(1/2), sqrt(2))` (an exact exponent change); with
/// `s = (m - 1) / (m + 1)`, `|s| <= 0.1716`, `ln(m) = 2 atanh(s) = 2 (s + s^3/3 + ... )`, cut after
/// `s^15/15`: the rest is below `2 s^17 / 17 / (1 - s^2) < 1.2e-14`. The roundings of `s`, the
/// polynomial and the sum add a few ulps of `ln(m)` (`|ln m| <= 0.35`), and `k * LN_2` (`|k| <=
/// 1075`) is off by at most `1075 * 2.3e-17` plus two half-ulps of a value below 746 (1.2e-13):
/// in all below 2e-13. The test `ln_fast_is_within_its_bound` checks it on three million values
/// against libm (itself within an ulp, 1.1e-13).
#[inline(always)]
fn ln_fast(r: f64) -> f64 {
    let bits = r.to_bits();
    // The exponent that takes `r` into `[sqrt(1/2), sqrt(2))`, by logical shifts only (an
    // arithmetic shift of 64-bit lanes would keep the loop from vectorizing): the sum is positive
    // for every positive `r` (garbage, but no panic, for other bits).
    let k = (bits.wrapping_add(0x400 << 52).wrapping_sub(SQRT_HALF_BITS) >> 52) as i32 - 0x400;
    let m = f64::from_bits(bits.wrapping_sub((k as i64 as u64) << 52));
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let poly = ATANH_SERIES[1..]
        .iter()
        .fold(ATANH_SERIES[0], |poly, &c| c + z * poly);
    (2.0 * s) * poly + f64::from(k) * LN_2
}

/// `Rel::estimate_fast` of pairs of elements in SSE2 lanes (part of every x86_64 CPU): the same
/// operations in the same order as [`ln_fast`], each correctly rounded per lane, so the same
/// bits. Returns how many leading elements it did (all but an odd last one).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn rel_estimates_sse2(a: &[f64], b: &[f64], inv_step: f64, out: &mut [f64]) -> usize {
    use std::arch::x86_64::*;
    let pd = _mm_set1_pd;
    let offset = _mm_set1_epi64x((0x400u64 << 52).wrapping_sub(SQRT_HALF_BITS) as i64);
    let mut done = 0;
    for ((o, a), b) in out
        .chunks_exact_mut(2)
        .zip(a.chunks_exact(2))
        .zip(b.chunks_exact(2))
    {
        let r = _mm_div_pd(_mm_set_pd(a[1], a[0]), _mm_set_pd(b[1], b[0]));
        let bits = _mm_castpd_si128(r);
        // k + 0x400 in the low bits of each 64-bit lane.
        let kq = _mm_srli_epi64::<52>(_mm_add_epi64(bits, offset));
        let k = _mm_sub_epi64(kq, _mm_set1_epi64x(0x400));
        let m = _mm_castsi128_pd(_mm_sub_epi64(bits, _mm_slli_epi64::<52>(k)));
        let s = _mm_div_pd(_mm_sub_pd(m, pd(1.0)), _mm_add_pd(m, pd(1.0)));
        let z = _mm_mul_pd(s, s);
        let mut poly = pd(ATANH_SERIES[0]);
        for &c in &ATANH_SERIES[1..] {
            poly = _mm_add_pd(pd(c), _mm_mul_pd(z, poly));
        }
        // k as f64: the low 32 bits of each lane, converted, less 0x400 (all exact).
        let kf = _mm_sub_pd(
            _mm_cvtepi32_pd(_mm_shuffle_epi32::<0b10_00_10_00>(kq)),
            pd(1024.0),
        );
        let ln = _mm_add_pd(
            _mm_mul_pd(_mm_mul_pd(pd(2.0), s), poly),
            _mm_mul_pd(kf, pd(LN_2)),
        );
        let est = _mm_mul_pd(ln, pd(inv_step));
        let normal = _mm_and_pd(
            _mm_cmpge_pd(r, pd(f64::MIN_POSITIVE)),
            _mm_cmple_pd(r, pd(f64::MAX)),
        );
        let est = _mm_or_pd(_mm_and_pd(normal, est), _mm_andnot_pd(normal, pd(f64::NAN)));
        o[0] = _mm_cvtsd_f64(est);
        o[1] = _mm_cvtsd_f64(_mm_unpackhi_pd(est, est));
        done += 2;
    }
    done
}

struct Params<'a> {
    table: &'a [f64],
    max_code: u32,
    max_f: f64,
    inv_step: f64,
    eps_check: f64,
    dither: bool,
    keep_reference: bool,
}

impl<'a> Params<'a> {
    fn new(table: &'a PowerTable) -> Self {
        Params {
            table: &table.values,
            max_code: table.max_code,
            max_f: f64::from(table.max_code),
            inv_step: table.inv_step,
            eps_check: table.eps_check,
            dither: table.dither,
            keep_reference: table.keep_reference,
        }
    }
}

/// Codes one element whose bits differ from the reference. Returns the code
/// and the reconstruction bits, or `None` for an exception. Code 0 (a copy
/// of `B'`) is taken whenever `B'` itself meets the bound (cheap, and the best
/// code for entropy). Otherwise the candidates are `m0 = round(estimate)`,
/// then the neighbour on the side of the unrounded estimate, then the other
/// neighbour; the first that passes the exact decode-and-check wins.
///
/// Dithered tables skip the code-0 shortcut and try `floor(estimate + u)` first, `u` in `[0, 1)`
/// hashed from the element's position and bits.
#[inline(always)]
fn encode_one<K: Elem, M: Mode>(
    i: usize,
    a_bits: u64,
    b_bits: u64,
    p: &Params<'_>,
) -> Option<(i32, u64)> {
    let a = K::widen(a_bits);
    let b = K::widen(b_bits);
    // `a` finite (and non-zero for relative) makes this check sound for any
    // `b`: NaN, infinite, zero (relative) or sign-flipped (relative) `b` fail it.
    if p.keep_reference
        && !p.dither
        && a.is_finite()
        && (M::ZERO_TARGET_OK || a != 0.0)
        && M::within::<K>(b, a, p.eps_check)
    {
        return Some((0, b_bits));
    }
    let est = M::estimate(a, b, p.inv_step);
    if p.dither && est.is_finite() && est.abs() <= p.max_f {
        let m = (est + dither_u(i, a_bits, b_bits)).floor() as i32;
        if let Some(x_bits) = try_code::<K, M>(m, a, b, b_bits, p) {
            return Some((m, x_bits));
        }
    }
    let m0f = est.round();
    if !m0f.is_finite() || m0f.abs() > p.max_f + 1.0 {
        return None;
    }
    let m0 = m0f as i32;
    let second = if est >= m0f { 1 } else { -1 };
    for m in [m0, m0 + second, m0 - second] {
        if let Some(x_bits) = try_code::<K, M>(m, a, b, b_bits, p) {
            return Some((m, x_bits));
        }
    }
    None
}

/// Decodes code `m` against `b` and returns the bits when they meet the bound for `a`.
#[inline(always)]
fn try_code<K: Elem, M: Mode>(m: i32, a: f64, b: f64, b_bits: u64, p: &Params<'_>) -> Option<u64> {
    if m.unsigned_abs() > p.max_code {
        return None;
    }
    let x_bits = if m == 0 {
        b_bits
    } else {
        let t = p.table[(m + p.max_code as i32) as usize];
        K::narrow(M::apply(b, t))
    };
    M::within::<K>(K::widen(x_bits), a, p.eps_check).then_some(x_bits)
}

/// A uniform value in `[0, 1)` from an element's position and bits (splitmix64), so dithered
/// encoding is deterministic: the same input always gives the same codes.
#[inline(always)]
fn dither_u(i: usize, a_bits: u64, b_bits: u64) -> f64 {
    let mut z = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(a_bits.rotate_left(17) ^ b_bits);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// How [`encode_nearest`]'s first pass and the lattice placement ([`from_bases`]) run: in vector
/// lanes where the CPU has them, or one element at a time (the reference the lanes are tested
/// against).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FirstPass {
    Lanes,
    #[cfg(test)]
    Scalar,
}

fn encode<K: Elem, M: Mode>(
    target: &[u8],
    reference: &[u8],
    table: &PowerTable,
    first: FirstPass,
) -> (QuantizedChunk, Vec<u8>) {
    let p = Params::new(table);
    match (p.dither, p.keep_reference) {
        (false, true) => return encode_nearest::<K, M, true>(target, reference, &p, first),
        (false, false) => return encode_nearest::<K, M, false>(target, reference, &p, first),
        (true, _) => {}
    }
    code_each::<K>(target, reference, |i, a_bits, b_bits| {
        // Identical bits: code 0, the reconstruction holds B' already.
        if a_bits == b_bits {
            Some((0, b_bits))
        } else {
            encode_one::<K, M>(i, a_bits, b_bits, &p)
        }
    })
}

/// Elements [`encode_nearest`] estimates at once (a few KiB of estimates: stays in L1).
const ENCODE_BLOCK: usize = 512;

/// `round(est)` (halves away from zero, as `f64::round`) for `|est| < 2^30`, without a libm call
/// or a branch: `est - trunc(est)` is exact there.
#[inline(always)]
fn round_small(est: f64) -> i32 {
    let t = est as i32;
    let f = est - f64::from(t);
    t + i32::from(f >= 0.5) - i32::from(f <= -0.5)
}

/// [`encode_one`] for every element of a non-dithered table, in two passes per block with the
/// same result: the estimates first (one loop with no branch on the data, [`Mode::estimate_fast`]:
/// its `round` equals that of the exact estimate unless it lies within its tolerance of a
/// half-integer, and those elements are left to `encode_one`), then every element
/// whose bits equal the reference's, whose reference meets the bound (when the table keeps
/// references), or whose first candidate `m0 = round(est)` passes the exact decode-and-check is
/// settled by selects, and only the others (a failed first candidate, an estimate out of range,
/// an exception) go through [`encode_one`]. `encode_one` takes `m0` whenever it passes, so both
/// passes give the same codes and reconstructions bit for bit. The first pass runs in vector
/// lanes (`lanes`) where the CPU has them, over the elements of a block that fill whole lanes.
fn encode_nearest<K: Elem, M: Mode, const KEEP_REFERENCE: bool>(
    target: &[u8],
    reference: &[u8],
    p: &Params<'_>,
    first: FirstPass,
) -> (QuantizedChunk, Vec<u8>) {
    debug_assert_eq!(KEEP_REFERENCE, p.keep_reference);
    let table = p.table;
    let off = p.max_code as i32;
    let mut est = [0f64; ENCODE_BLOCK];
    let (mut av, mut bv) = ([0f64; ENCODE_BLOCK], [0f64; ENCODE_BLOCK]);
    // Elements of the block left to the candidates after the first, ascending, with their fast
    // estimates (at most a block: memory stays bounded whatever the chunk).
    let mut slow: Vec<(usize, f64)> = Vec::with_capacity(ENCODE_BLOCK);
    code_blocks::<K>(target, reference, |base, ta, rb, cs, os, exceptions| {
        let est = &mut est[..ta.len()];
        let done = match first {
            FirstPass::Lanes => {
                lanes::settle::<K, M, KEEP_REFERENCE>(ta, rb, est, cs, os, &mut slow, p)
            }
            #[cfg(test)]
            FirstPass::Scalar => 0,
        };
        let (av, bv) = (&mut av[done..ta.len()], &mut bv[done..ta.len()]);
        for (((x, y), &a), &b) in av
            .iter_mut()
            .zip(bv.iter_mut())
            .zip(&ta[done..])
            .zip(&rb[done..])
        {
            (*x, *y) = (K::widen(K::load(a)), K::widen(K::load(b)));
        }
        M::estimates_fast(av, bv, p.inv_step, &mut est[done..]);
        for (k, ((((&ta, &rb), &e), c), o)) in ta
            .iter()
            .zip(rb)
            .zip(est.iter())
            .zip(cs.iter_mut())
            .zip(os.iter_mut())
            .enumerate()
            .skip(done)
        {
            let (a_bits, b_bits) = (K::load(ta), K::load(rb));
            let (a, b) = (K::widen(a_bits), K::widen(b_bits));
            // Code 0 whatever the estimate: identical bits, or a reference that meets the bound
            // (the first test of `encode_one`).
            let keep = (a_bits == b_bits)
                | (KEEP_REFERENCE
                    && a.is_finite()
                    && (M::ZERO_TARGET_OK || a != 0.0)
                    && M::within::<K>(b, a, p.eps_check));
            // `encode_one`'s first candidate, `round(est)`, when it is in the table and the fast
            // estimate is far enough from a half-integer to round as the exact one does.
            let est_fast = e;
            let in_range = e.abs() < (1u32 << 30) as f64;
            let e = if in_range { e } else { 0.0 };
            let m0 = round_small(e);
            let frac = e - f64::from(e as i32);
            let clear = (frac.abs() - 0.5).abs() > M::estimate_tolerance(e, p.inv_step);
            let usable = in_range & clear & (m0.unsigned_abs() <= p.max_code);
            let t = table[(if usable { m0 + off } else { off }) as usize];
            let x = K::narrow(M::apply(b, t));
            let x = if m0 == 0 { b_bits } else { x };
            let passes = usable & M::within::<K>(K::widen(x), a, p.eps_check);
            *c = if keep { 0 } else { m0 };
            *o = K::to_raw(if keep { b_bits } else { x });
            if !(keep || passes) {
                slow.push((k, est_fast));
            }
        }
        for (k, e) in slow.drain(..) {
            let (a_bits, b_bits) = (K::load(ta[k]), K::load(rb[k]));
            let outcome = encode_rest::<K, M>(base + k, a_bits, b_bits, e, p);
            exceptions.write::<K>(base + k, ta[k], outcome, &mut cs[k], &mut os[k]);
        }
    })
}

/// [`encode_one`] of an element that [`encode_nearest`]'s first pass did not settle (its bits differ
/// from the reference's, which does not meet the bound when the table keeps references), given
/// its fast estimate `e`: where `e` decides ([`fast_decides`]), `encode_one`'s candidates are
/// tried with it (no libm `ln`); otherwise `encode_one` runs.
#[inline(always)]
fn encode_rest<K: Elem, M: Mode>(
    i: usize,
    a_bits: u64,
    b_bits: u64,
    e: f64,
    p: &Params<'_>,
) -> Option<(i32, u64)> {
    if !fast_decides::<M>(e, p.inv_step) {
        return encode_one::<K, M>(i, a_bits, b_bits, p);
    }
    let m0 = round_small(e);
    if m0.unsigned_abs() > p.max_code.saturating_add(1) {
        return None;
    }
    let (a, b) = (K::widen(a_bits), K::widen(b_bits));
    let second = if e >= f64::from(m0) { 1 } else { -1 };
    [m0, m0 + second, m0 - second]
        .into_iter()
        .find_map(|m| try_code::<K, M>(m, a, b, b_bits, p).map(|x| (m, x)))
}

/// Whether a fast estimate `e` ([`Mode::estimate_fast`], or its sum with a lattice offset)
/// decides what the exact one would: it lies further than its tolerance from every half-integer,
/// so both round to the same code, and from every integer, so both lie on the same side of it
/// (which orders the candidates after the first). NaN and estimates past `2^30` decide nothing.
#[inline(always)]
fn fast_decides<M: Mode>(e: f64, inv_step: f64) -> bool {
    let tol = M::estimate_tolerance(e, inv_step);
    let frac = (e - f64::from(e as i32)).abs();
    e.abs() < (1u32 << 30) as f64 && (frac - 0.5).abs() > tol && frac > tol && 1.0 - frac > tol
}

/// A chunk's exceptions as it is coded: positions ascending, raw values in that order.
#[derive(Default)]
struct Exceptions {
    positions: Vec<u32>,
    values: Vec<u8>,
}

impl Exceptions {
    /// Writes element `i`'s outcome into its code and reconstruction slots: `Some((code,
    /// reconstruction bits))`, or `None` for an exception (code 0, the target's raw bits kept in
    /// the reconstruction and appended, with `i`, to the list).
    #[inline(always)]
    fn write<K: Elem>(
        &mut self,
        i: usize,
        target: K::Raw,
        outcome: Option<(i32, u64)>,
        code: &mut i32,
        out: &mut K::Raw,
    ) {
        match outcome {
            Some((m, x_bits)) => {
                *code = m;
                *out = K::to_raw(x_bits);
            }
            None => {
                *code = 0;
                *out = target;
                self.positions.push(i as u32);
                self.values.extend_from_slice(target.as_ref());
            }
        }
    }

    fn into_chunk(self, codes: Vec<i32>) -> QuantizedChunk {
        QuantizedChunk {
            codes,
            exception_positions: self.positions,
            exception_values: self.values,
        }
    }
}

/// Codes `target` against `reference` a block of [`ENCODE_BLOCK`] elements at a time, so the
/// passes' scratch stays bounded whatever the chunk: `code_block(base, ta, rb, cs, os,
/// exceptions)` fills the codes and reconstructions of the block starting at element `base` and
/// records its exceptions, ascending.
fn code_blocks<K: Elem>(
    target: &[u8],
    reference: &[u8],
    mut code_block: impl FnMut(usize, &[K::Raw], &[K::Raw], &mut [i32], &mut [K::Raw], &mut Exceptions),
) -> (QuantizedChunk, Vec<u8>) {
    let (ts, rs) = (K::chunks(target), K::chunks(reference));
    let mut codes = vec![0i32; ts.len()];
    let mut recon = vec![0u8; reference.len()];
    let mut exceptions = Exceptions::default();
    for (blk, (((ta, rb), cs), os)) in ts
        .chunks(ENCODE_BLOCK)
        .zip(rs.chunks(ENCODE_BLOCK))
        .zip(codes.chunks_mut(ENCODE_BLOCK))
        .zip(K::chunks_mut(&mut recon).chunks_mut(ENCODE_BLOCK))
        .enumerate()
    {
        code_block(blk * ENCODE_BLOCK, ta, rb, cs, os, &mut exceptions);
    }
    (exceptions.into_chunk(codes), recon)
}

/// Codes every element with `code_one(i, a_bits, b_bits)`: `Some((code, reconstruction bits))`,
/// or `None` for an exception (raw bits stored, code 0).
fn code_each<K: Elem>(
    target: &[u8],
    reference: &[u8],
    code_one: impl Fn(usize, u64, u64) -> Option<(i32, u64)>,
) -> (QuantizedChunk, Vec<u8>) {
    let ts = K::chunks(target);
    let rs = K::chunks(reference);
    let mut codes = vec![0i32; ts.len()];
    let mut recon = reference.to_vec();
    let outs = K::chunks_mut(&mut recon);
    let mut exceptions = Exceptions::default();
    for (i, (((&ta, &rb), code), out)) in ts
        .iter()
        .zip(rs)
        .zip(codes.iter_mut())
        .zip(outs.iter_mut())
        .enumerate()
    {
        let outcome = code_one(i, K::load(ta), K::load(rb));
        exceptions.write::<K>(i, ta, outcome, code, out);
    }
    (exceptions.into_chunk(codes), recon)
}

fn decode<K: Elem, M: Mode>(reference: &[u8], codes: &[i32], p: &Params<'_>, out: &mut [u8]) {
    let off = p.max_code as i32;
    for ((&rb, &m), o) in K::chunks(reference)
        .iter()
        .zip(codes)
        .zip(K::chunks_mut(out))
    {
        let b_bits = K::load(rb);
        let x = K::narrow(M::apply(K::widen(b_bits), p.table[(m + off) as usize]));
        *o = K::to_raw(if m == 0 { b_bits } else { x });
    }
}

/// Runs `$f::<Elem, Mode>($args)` for the element type and bound mode of a table.
macro_rules! by_kind_and_mode {
    ($kind:expr, $bound:expr, $f:ident ( $($arg:expr),* )) => {
        match ($bound, $kind) {
            (ErrorBound::Relative(_), FloatKind::F16) => $f::<F16Elem, Rel>($($arg),*),
            (ErrorBound::Relative(_), FloatKind::BF16) => $f::<Bf16Elem, Rel>($($arg),*),
            (ErrorBound::Relative(_), FloatKind::F32) => $f::<F32Elem, Rel>($($arg),*),
            (ErrorBound::Relative(_), FloatKind::F64) => $f::<F64Elem, Rel>($($arg),*),
            (ErrorBound::Absolute(_), FloatKind::F16) => $f::<F16Elem, Abs>($($arg),*),
            (ErrorBound::Absolute(_), FloatKind::BF16) => $f::<Bf16Elem, Abs>($($arg),*),
            (ErrorBound::Absolute(_), FloatKind::F32) => $f::<F32Elem, Abs>($($arg),*),
            (ErrorBound::Absolute(_), FloatKind::F64) => $f::<F64Elem, Abs>($($arg),*),
        }
    };
}

/// The all-ones value of `kind`'s biased exponent field (NaN and infinities).
pub fn exponent_max(kind: FloatKind) -> u16 {
    match kind {
        FloatKind::F16 => F16Elem::EXP_MAX,
        FloatKind::BF16 => Bf16Elem::EXP_MAX,
        FloatKind::F32 => F32Elem::EXP_MAX,
        FloatKind::F64 => F64Elem::EXP_MAX,
    }
}

/// Positions, ascending, of the elements of `target` whose exponent field is all zeros or all
/// ones (zero, subnormal, infinite, NaN) and whose bits differ from `recon`'s (equal lengths).
pub fn special_mismatches(kind: FloatKind, target: &[u8], recon: &[u8]) -> Vec<u32> {
    /// Elements tested at once before any is looked at one by one.
    const SPECIAL_BLOCK: usize = 256;
    fn each<K: Elem>(target: &[u8], recon: &[u8]) -> Vec<u32> {
        let max = u64::from(K::EXP_MAX);
        // The flags are combined without short-circuits, so a block's test is one branch-free
        // (vectorized) pass; only a block with a mismatch is searched element by element.
        let mismatch = |(&t, &r): (&K::Raw, &K::Raw)| {
            let (t, r) = (K::load(t), K::load(r));
            let e = (t >> K::EXP_SHIFT) & max;
            (t != r) & ((e == 0) | (e == max))
        };
        let mut out = Vec::new();
        let (ts, rs) = (K::chunks(target), K::chunks(recon));
        for (b, (tb, rb)) in ts
            .chunks(SPECIAL_BLOCK)
            .zip(rs.chunks(SPECIAL_BLOCK))
            .enumerate()
        {
            if tb
                .iter()
                .zip(rb)
                .fold(false, |any, pair| any | mismatch(pair))
            {
                let found = tb
                    .iter()
                    .zip(rb)
                    .enumerate()
                    .filter(|&(_, pair)| mismatch(pair));
                out.extend(found.map(|(k, _)| (b * SPECIAL_BLOCK + k) as u32));
            }
        }
        out
    }
    match kind {
        FloatKind::F16 => each::<F16Elem>(target, recon),
        FloatKind::BF16 => each::<Bf16Elem>(target, recon),
        FloatKind::F32 => each::<F32Elem>(target, recon),
        FloatKind::F64 => each::<F64Elem>(target, recon),
    }
}

/// The biased exponent field of each element of `bytes` into `out` (one per element, in order;
/// as many as both hold).
pub fn exponent_fields(kind: FloatKind, bytes: &[u8], out: &mut [u16]) {
    fn each<K: Elem>(bytes: &[u8], out: &mut [u16]) {
        for (o, &e) in out.iter_mut().zip(K::chunks(bytes)) {
            *o = ((K::load(e) >> K::EXP_SHIFT) & u64::from(K::EXP_MAX)) as u16;
        }
    }
    match kind {
        FloatKind::F16 => each::<F16Elem>(bytes, out),
        FloatKind::BF16 => each::<Bf16Elem>(bytes, out),
        FloatKind::F32 => each::<F32Elem>(bytes, out),
        FloatKind::F64 => each::<F64Elem>(bytes, out),
    }
}

// ---------------------------------------------------------------------------
// Lattice deltas applied in one pass: a run of a chain, element by element.

/// A stream of codes as stored: one byte each when every code fits (the common case: a quarter
/// of a run's memory and bandwidth), four otherwise.
#[derive(Clone, Debug, PartialEq)]
pub enum Codes {
    Narrow(Vec<i8>),
    Wide(Vec<i32>),
}

impl Codes {
    pub fn len(&self) -> usize {
        match self {
            Codes::Narrow(c) => c.len(),
            Codes::Wide(c) => c.len(),
        }
    }
}

impl From<Vec<i32>> for Codes {
    fn from(codes: Vec<i32>) -> Self {
        Codes::Wide(codes)
    }
}

/// One lattice chunk of a chain, its sections decoded.
#[derive(Clone, Debug)]
pub struct LatticeLevel<'a> {
    /// The delta's table.
    pub table: &'a PowerTable,
    /// Class boundary of its code streams (`codec::context`).
    pub top: u16,
    /// Codes by class, each in element order; one stream: no split.
    pub streams: &'a [Codes],
    /// Exceptions, ascending, and their raw values.
    pub exception_positions: &'a [u32],
    pub exception_values: &'a [u8],
    /// Elements placed from scratch.
    pub fresh: &'a FreshCodes,
    /// Every element is placed from its value onto its grid, `x = (b * T[m]) * D[j]` (a keyframe
    /// over its `±1`/0 bases, or a delta that anchors its chain), instead of `b * T[m]`.
    pub anchored: bool,
}

/// Applies `levels` in order to `out` (the decoded reference of the first, or a keyframe's
/// bases), every element through all of them before the next. Per level and element: its code
/// (from the parent, or placed from it when the level is anchored), then its exception, then its
/// fresh placement; no buffer or pass per level. The class of an element at a level comes from its value before
/// it (`class_of` of its exponent field). Every stream, exception list and fresh list must be
/// consumed exactly; anything else is an error.
pub fn apply_lattice_deltas(
    kind: FloatKind,
    out: &mut [u8],
    levels: &[LatticeLevel<'_>],
    class_of: impl Fn(u16, u16, u16) -> u8 + Copy,
) -> Result<(), QuantError> {
    element_count(kind, out.len())?;
    for l in levels {
        require_lattice(l.table)?;
        // One bound mode per run (each level has its own table and step).
        if std::mem::discriminant(&l.table.bound) != std::mem::discriminant(&levels[0].table.bound)
        {
            return Err(QuantError::InvalidBound(l.table.bound));
        }
        let expected = l.exception_positions.len().saturating_mul(kind.size());
        if l.exception_values.len() != expected {
            return Err(QuantError::LengthMismatch {
                what: "exception values bytes",
                expected,
                actual: l.exception_values.len(),
            });
        }
        for (what, len) in [
            ("fresh codes", l.fresh.codes.len()),
            ("fresh signs", l.fresh.negative.len()),
        ] {
            if len != l.fresh.positions.len() {
                return Err(QuantError::LengthMismatch {
                    what,
                    expected: l.fresh.positions.len(),
                    actual: len,
                });
            }
        }
    }
    match levels.first() {
        None => Ok(()),
        Some(l) => by_kind_and_mode!(kind, l.table.bound, run_levels(out, levels, class_of)),
    }
}

/// Elements a pass holds while it runs every level over them (a few KiB: stays in L1).
const RUN_BLOCK: usize = 2048;

/// Most code streams a level may have (`codec::context::MAX_CLASSES`).
pub(crate) const MAX_STREAMS: usize = 8;

/// Entries of a class table: one per value of the widest exponent field (F64's 11 bits).
pub(crate) const EXPONENT_VALUES: usize = 1 << 11;

/// The stream of every exponent field value of a kind whose all-ones field is `exp_max`, under
/// class boundary `top`: `class_of(e, exp_max, top)`, masked to [`MAX_STREAMS`]. The encoder's
/// split and the decoder's gather read the same table, so they agree on every element.
pub(crate) fn class_table(
    exp_max: u16,
    top: u16,
    class_of: impl Fn(u16, u16, u16) -> u8,
) -> [u8; EXPONENT_VALUES] {
    let mut table = [0u8; EXPONENT_VALUES];
    for e in 0..=exp_max {
        table[usize::from(e)] = class_of(e, exp_max, top) & (MAX_STREAMS - 1) as u8;
    }
    table
}

/// The stream, from `class_table`, of an element of kind `K` whose bits are `x`.
#[inline(always)]
fn stream_of_bits<K: Elem>(class: &[u8; EXPONENT_VALUES], x: u64) -> usize {
    let e = ((x >> K::EXP_SHIFT) & u64::from(K::EXP_MAX)) as usize;
    usize::from(class[e & (EXPONENT_VALUES - 1)]) & (MAX_STREAMS - 1)
}

/// How many elements of each stream a span has passed, one byte of a register per stream, so
/// consecutive elements of a stream do not wait on a store to its cursor: a span holds at most
/// [`SPAN`] elements.
#[derive(Default)]
pub(crate) struct SpanCounts(u64);

impl SpanCounts {
    /// The elements of stream `c` the span has passed so far, counting this one.
    #[inline(always)]
    pub(crate) fn take(&mut self, c: usize) -> usize {
        let shift = 8 * c as u32;
        let seen = ((self.0 >> shift) & 0xff) as usize;
        self.0 += 1 << shift;
        seen
    }

    /// Moves the cursors `at` past the span's elements.
    #[inline(always)]
    pub(crate) fn advance(self, at: &mut [usize; MAX_STREAMS]) {
        for (c, at) in at.iter_mut().enumerate() {
            *at += ((self.0 >> (8 * c)) & 0xff) as usize;
        }
    }
}

/// One level of a run, ready to apply: its streams, the stream of every exponent field and
/// where it stands.
struct LevelPlan<'a> {
    level: &'a LatticeLevel<'a>,
    params: Params<'a>,
    codes: LevelCodes<'a>,
    /// Stream of an element whose value before this level has exponent field `e`.
    class: Box<[u8; EXPONENT_VALUES]>,
    /// Next unread code of every stream.
    stream_at: [usize; MAX_STREAMS],
    exception: usize,
    fresh: usize,
}

/// A level's streams in one width, so the hot loop is compiled once per width.
enum LevelCodes<'a> {
    Narrow(Vec<&'a [i8]>),
    /// Some stream needs four bytes: the narrow ones are widened (rare: fine bounds only).
    Wide(Vec<Cow<'a, [i32]>>),
}

impl<'a> LevelCodes<'a> {
    fn new(streams: &'a [Codes]) -> Self {
        let narrow: Option<Vec<&[i8]>> = streams
            .iter()
            .map(|s| match s {
                Codes::Narrow(c) => Some(&c[..]),
                Codes::Wide(_) => None,
            })
            .collect();
        match narrow {
            Some(n) => LevelCodes::Narrow(n),
            None => LevelCodes::Wide(
                streams
                    .iter()
                    .map(|s| match s {
                        Codes::Narrow(c) => Cow::Owned(c.iter().map(|&m| i32::from(m)).collect()),
                        Codes::Wide(c) => Cow::Borrowed(&c[..]),
                    })
                    .collect(),
            ),
        }
    }

    fn get(&self, stream: usize, at: usize) -> Option<i32> {
        match self {
            LevelCodes::Narrow(s) => s[stream].get(at).map(|&m| i32::from(m)),
            LevelCodes::Wide(s) => s[stream].get(at).copied(),
        }
    }
}

impl<'a> LevelPlan<'a> {
    fn new<K: Elem>(
        level: &'a LatticeLevel<'a>,
        class_of: &impl Fn(u16, u16, u16) -> u8,
    ) -> Result<Self, QuantError> {
        if level.streams.is_empty() || level.streams.len() > MAX_STREAMS {
            return Err(QuantError::LengthMismatch {
                what: "code streams",
                expected: MAX_STREAMS,
                actual: level.streams.len(),
            });
        }
        let class = Box::new(if level.streams.len() > 1 {
            class_table(K::EXP_MAX, level.top, class_of)
        } else {
            [0u8; EXPONENT_VALUES]
        });
        Ok(LevelPlan {
            level,
            params: Params::new(level.table),
            codes: LevelCodes::new(level.streams),
            class,
            stream_at: [0; MAX_STREAMS],
            exception: 0,
            fresh: 0,
        })
    }

    /// Position of the level's next exception or fresh element (`usize::MAX`: none left).
    fn next_special(&self) -> usize {
        let l = self.level;
        let exception = l.exception_positions.get(self.exception);
        let fresh = l.fresh.positions.get(self.fresh);
        exception
            .into_iter()
            .chain(fresh)
            .map(|&q| q as usize)
            .min()
            .unwrap_or(usize::MAX)
    }

    /// The stream of an element whose value before this level is `x` (0 when the level has one:
    /// its class table is all zeros).
    #[inline(always)]
    fn stream_of<K: Elem>(&self, x: u64) -> usize {
        stream_of_bits::<K>(&self.class, x)
    }

    /// The next code of stream `c`, checked against the table, and the cursor moved past it.
    fn next_code(&mut self, c: usize) -> Result<i32, QuantError> {
        let at = self.stream_at[c];
        let m = self
            .codes
            .get(c, at)
            .ok_or_else(|| stream_short(self.level.streams[c].len()))?;
        if m.unsigned_abs() > self.params.max_code {
            return Err(code_out_of_range(c, at, m, self.params.max_code));
        }
        self.stream_at[c] = at + 1;
        Ok(m)
    }

    /// Applies the level to the elements `xs`, none of which is an exception or fresh.
    fn apply_plain<K: Elem, M: Mode>(&mut self, xs: &mut [u64]) -> Result<(), QuantError> {
        let split = self.level.streams.len() > 1;
        let (table, at, class) = (self.params.table, &mut self.stream_at, &*self.class);
        match &self.codes {
            LevelCodes::Narrow(s) => apply_codes::<K, M, i8>(xs, s, split, at, class, table),
            LevelCodes::Wide(s) => apply_codes::<K, M, i32>(xs, s, split, at, class, table),
        }
    }

    /// Places the elements `xs` (element `first` onwards, none special) on their grids from their
    /// values: a keyframe over its bases, or the delta that anchors a chain.
    fn apply_anchored<K: Elem, M: Mode>(
        &mut self,
        first: usize,
        xs: &mut [u64],
    ) -> Result<(), QuantError> {
        for (k, x) in xs.iter_mut().enumerate() {
            let m = self.next_code(self.stream_of::<K>(*x))?;
            *x = lattice_decode_one::<K, M>(
                lattice_slot(first + k),
                K::widen(*x),
                m,
                &self.params,
                &self.level.table.offsets,
            );
        }
        Ok(())
    }

    /// Applies the level to element `i` (value `x`) whatever it is: its code (placed from the
    /// value when the level anchors), then its exception, then its fresh placement.
    fn apply_one<K: Elem, M: Mode>(&mut self, i: usize, x: &mut u64) -> Result<(), QuantError> {
        let l = self.level;
        let m = self.next_code(self.stream_of::<K>(*x))?;
        let p = &self.params;
        if l.anchored {
            *x = lattice_decode_one::<K, M>(lattice_slot(i), K::widen(*x), m, p, &l.table.offsets);
        } else if m != 0 {
            *x = K::narrow(M::apply(
                K::widen(*x),
                p.table[(m + p.max_code as i32) as usize],
            ));
        }
        if l.exception_positions
            .get(self.exception)
            .map(|&q| q as usize)
            == Some(i)
        {
            if m != 0 {
                return Err(QuantError::ExceptionCodeNotZero {
                    position: i as u32,
                    code: m,
                });
            }
            let size = std::mem::size_of::<K::Raw>();
            let v = &l.exception_values[self.exception * size..(self.exception + 1) * size];
            *x = K::load(K::chunks(v)[0]);
            self.exception += 1;
        }
        if l.fresh.positions.get(self.fresh).map(|&q| q as usize) == Some(i) {
            let code = l.fresh.codes[self.fresh];
            if code.unsigned_abs() > p.max_code {
                return Err(QuantError::CodeOutOfRange {
                    index: i,
                    code,
                    max_code: p.max_code,
                });
            }
            let b = fresh_base::<M>(l.fresh.negative[self.fresh]);
            *x = lattice_decode_one::<K, M>(lattice_slot(i), b, code, p, &l.table.offsets);
            self.fresh += 1;
        }
        Ok(())
    }

    /// Applies the level to the block `xs` starting at element `base`: spans between its
    /// exceptions and fresh elements in a tight loop, those one by one.
    fn apply_block<K: Elem, M: Mode>(
        &mut self,
        base: usize,
        xs: &mut [u64],
    ) -> Result<(), QuantError> {
        let mut k = 0;
        while k < xs.len() {
            // A special position behind the cursor (unsorted or duplicated) is never reached;
            // the final check names it.
            let stop = self.next_special().saturating_sub(base).clamp(k, xs.len());
            if self.level.anchored {
                self.apply_anchored::<K, M>(base + k, &mut xs[k..stop])?;
            } else {
                self.apply_plain::<K, M>(&mut xs[k..stop])?;
            }
            k = stop;
            if k < xs.len() {
                self.apply_one::<K, M>(base + k, &mut xs[k])?;
                k += 1;
            }
        }
        Ok(())
    }

    /// Every stream, exception and fresh element consumed exactly.
    fn finish(&self) -> Result<(), QuantError> {
        let l = self.level;
        if let Some(k) = (0..l.streams.len()).find(|&k| self.stream_at[k] != l.streams[k].len()) {
            return Err(QuantError::LengthMismatch {
                what: "codes of a stream",
                expected: self.stream_at[k],
                actual: l.streams[k].len(),
            });
        }
        if self.exception != l.exception_positions.len() {
            let index = self.exception;
            return Err(QuantError::BadExceptionPosition {
                index,
                position: l.exception_positions[index],
            });
        }
        if self.fresh != l.fresh.positions.len() {
            let index = self.fresh;
            return Err(QuantError::BadExceptionPosition {
                index,
                position: l.fresh.positions[index],
            });
        }
        Ok(())
    }
}

fn code_out_of_range(stream: usize, at: usize, code: i32, max_code: u32) -> QuantError {
    QuantError::StreamCodeOutOfRange {
        stream,
        at,
        code,
        max_code,
    }
}

fn stream_short(len: usize) -> QuantError {
    QuantError::LengthMismatch {
        what: "codes of a stream",
        expected: len + 1,
        actual: len,
    }
}

/// Elements whose codes a level gathers before applying them (and a split reads the exponent
/// fields of): a stream's cursor advances by a count kept in one byte of a register
/// ([`SpanCounts`]), so a span holds at most 255.
pub(crate) const SPAN: usize = 255;

/// The hot loop of a checkout: one level over elements `xs` (none an exception or fresh), codes
/// from `streams` by class (`split`) from the cursors `at`, a span at a time: its codes
/// gathered and range-checked ([`gather_codes`]), then applied ([`apply_span`]).
fn apply_codes<K: Elem, M: Mode, C: Copy + Into<i32>>(
    xs: &mut [u64],
    streams: &[impl AsRef<[C]>],
    split: bool,
    at: &mut [usize; MAX_STREAMS],
    class: &[u8; EXPONENT_VALUES],
    table: &[f64],
) -> Result<(), QuantError> {
    // Fixed arrays indexed by a masked class: no bounds checks in the loop.
    let mut by_class: [&[C]; MAX_STREAMS] = [&[]; MAX_STREAMS];
    for (b, s) in by_class.iter_mut().zip(streams) {
        *b = s.as_ref();
    }
    let mut codes = [0i32; SPAN];
    for span in xs.chunks_mut(SPAN) {
        let codes = &mut codes[..span.len()];
        if split {
            gather_codes::<K, C>(span, codes, &by_class, at, class, table.len())?;
        } else {
            let (stream, first) = (by_class[0], at[0]);
            let chunk = stream
                .get(first..first + span.len())
                .ok_or_else(|| stream_short(stream.len()))?;
            for (k, (m, &c)) in codes.iter_mut().zip(chunk).enumerate() {
                *m = checked_code(c.into(), 0, first + k, table.len())?;
            }
            at[0] = first + span.len();
        }
        apply_span::<K, M>(span, codes, table);
    }
    Ok(())
}

/// `m` where the table holds it (`table_len = 2 * max_code + 1` entries), else the error that
/// names its stream and position.
#[inline(always)]
fn checked_code(m: i32, stream: usize, pos: usize, table_len: usize) -> Result<i32, QuantError> {
    let max_code = (table_len / 2) as u32;
    if m.unsigned_abs() > max_code {
        return Err(code_out_of_range(stream, pos, m, max_code));
    }
    Ok(m)
}

/// The code of each element of `xs` (at most [`SPAN`]) from the stream of its class, the cursors
/// `at` moved past them.
#[inline(always)]
fn gather_codes<K: Elem, C: Copy + Into<i32>>(
    xs: &[u64],
    codes: &mut [i32],
    streams: &[&[C]; MAX_STREAMS],
    at: &mut [usize; MAX_STREAMS],
    class: &[u8; EXPONENT_VALUES],
    table_len: usize,
) -> Result<(), QuantError> {
    let mut counts = SpanCounts::default();
    for (&x, m) in xs.iter().zip(codes.iter_mut()) {
        let c = stream_of_bits::<K>(class, x);
        let pos = at[c] + counts.take(c);
        let Some(&code) = streams[c].get(pos) else {
            return Err(stream_short(streams[c].len()));
        };
        *m = checked_code(code.into(), c, pos, table_len)?;
    }
    counts.advance(at);
    Ok(())
}

/// Applies each code (range-checked) to its element: `narrow(apply(widen(x), T[m]))`, and a
/// code 0 keeps the value's bits (a select, not `x * 1`, which would touch a NaN's payload).
/// Whole lanes of four in AVX2 where the CPU and the type have them (`logquant::lanes`), the
/// same operations; the rest here.
#[inline(always)]
fn apply_span<K: Elem, M: Mode>(xs: &mut [u64], codes: &[i32], table: &[f64]) {
    let done = lanes::apply_span::<K, M>(xs, codes, table);
    let off = (table.len() / 2) as i32;
    for (x, &m) in xs[done..].iter_mut().zip(&codes[done..]) {
        let y = K::narrow(M::apply(K::widen(*x), table[(m + off) as usize]));
        *x = if m != 0 { y } else { *x };
    }
}

fn run_levels<K: Elem, M: Mode>(
    out: &mut [u8],
    levels: &[LatticeLevel<'_>],
    class_of: impl Fn(u16, u16, u16) -> u8,
) -> Result<(), QuantError> {
    let mut plans = levels
        .iter()
        .map(|l| LevelPlan::new::<K>(l, &class_of))
        .collect::<Result<Vec<_>, _>>()?;
    let elems = K::chunks_mut(out);
    let mut block = [0u64; RUN_BLOCK];
    for (b, chunk) in elems.chunks_mut(RUN_BLOCK).enumerate() {
        let xs = &mut block[..chunk.len()];
        for (x, e) in xs.iter_mut().zip(chunk.iter()) {
            *x = K::load(*e);
        }
        for plan in &mut plans {
            plan.apply_block::<K, M>(b * RUN_BLOCK, xs)?;
        }
        for (x, e) in xs.iter().zip(chunk.iter_mut()) {
            *e = K::to_raw(*x);
        }
    }
    plans.iter().try_for_each(LevelPlan::finish)
}

fn element_count(kind: FloatKind, len: usize) -> Result<usize, QuantError> {
    let size = kind.size();
    if !len.is_multiple_of(size) {
        return Err(QuantError::UnalignedLength {
            len,
            elem_size: size,
        });
    }
    Ok(len / size)
}

/// Target and reference of one chunk: equal lengths, whole elements, positions that fit a `u32`.
fn check_pair(kind: FloatKind, target: &[u8], reference: &[u8]) -> Result<(), QuantError> {
    if target.len() != reference.len() {
        return Err(QuantError::LengthMismatch {
            what: "reference bytes",
            expected: target.len(),
            actual: reference.len(),
        });
    }
    let n = element_count(kind, target.len())?;
    if n > 0 && u32::try_from(n - 1).is_err() {
        return Err(QuantError::TooManyElements(n));
    }
    Ok(())
}

/// Quantizes `target` against the reconstructed `reference` (raw little-endian
/// element bytes of `kind`, equal length). Returns the chunk and the
/// reconstruction `A'` (what [`dequantize`] will produce), against which the
/// next snapshot must be coded.
pub fn quantize(
    kind: FloatKind,
    target: &[u8],
    reference: &[u8],
    table: &PowerTable,
) -> Result<(QuantizedChunk, Vec<u8>), QuantError> {
    check_pair(kind, target, reference)?;
    let (t, r) = (target, reference);
    Ok(by_kind_and_mode!(
        kind,
        table.bound,
        encode(t, r, table, FirstPass::Lanes)
    ))
}

/// Rebuilds `A'` from the reference and the chunk (see the module docs for
/// the exact decode rule). Validates everything first; never panics.
pub fn dequantize(
    kind: FloatKind,
    reference: &[u8],
    chunk: &QuantizedChunk,
    table: &PowerTable,
) -> Result<Vec<u8>, QuantError> {
    validate(kind, reference, chunk, table)?;
    let mut out = vec![0u8; reference.len()];
    let p = Params::new(table);
    let (r, c) = (reference, chunk.codes.as_slice());
    by_kind_and_mode!(kind, table.bound, decode(r, c, &p, &mut out));
    overwrite_exceptions(kind, chunk, &mut out);
    Ok(out)
}

/// Checks a chunk against its reference and table: lengths, code range, exception positions.
fn validate(
    kind: FloatKind,
    reference: &[u8],
    chunk: &QuantizedChunk,
    table: &PowerTable,
) -> Result<(), QuantError> {
    let size = kind.size();
    let n = element_count(kind, reference.len())?;
    if chunk.codes.len() != n {
        return Err(QuantError::LengthMismatch {
            what: "codes",
            expected: n,
            actual: chunk.codes.len(),
        });
    }
    let expected_values = chunk.exception_positions.len().saturating_mul(size);
    if chunk.exception_values.len() != expected_values {
        return Err(QuantError::LengthMismatch {
            what: "exception values bytes",
            expected: expected_values,
            actual: chunk.exception_values.len(),
        });
    }
    let max_code = table.max_code;
    if let Some((index, &code)) = chunk
        .codes
        .iter()
        .enumerate()
        .find(|(_, c)| c.unsigned_abs() > max_code)
    {
        return Err(QuantError::CodeOutOfRange {
            index,
            code,
            max_code,
        });
    }
    let mut prev: Option<u32> = None;
    for (index, &position) in chunk.exception_positions.iter().enumerate() {
        let sorted = prev.is_none_or(|q| q < position);
        if position as usize >= n || !sorted {
            return Err(QuantError::BadExceptionPosition { index, position });
        }
        let code = chunk.codes[position as usize];
        if code != 0 {
            return Err(QuantError::ExceptionCodeNotZero { position, code });
        }
        prev = Some(position);
    }
    Ok(())
}

fn overwrite_exceptions(kind: FloatKind, chunk: &QuantizedChunk, out: &mut [u8]) {
    let size = kind.size();
    for (&position, value) in chunk
        .exception_positions
        .iter()
        .zip(chunk.exception_values.chunks_exact(size))
    {
        let start = position as usize * size;
        out[start..start + size].copy_from_slice(value);
    }
}

// ---------------------------------------------------------------------------
// Lattice ("fresh") coding: an element placed on its own grid with no usable reference.

/// The lattice offset slot of element `i` of a chunk (splitmix64 of the index, top 8 bits).
/// Fixed for a position, so the grid of an element is the same in every snapshot.
#[inline(always)]
pub fn lattice_slot(i: usize) -> usize {
    let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 56) as usize
}

/// The base a fresh element is coded from: `±1` by the target's sign (relative) or 0 (absolute).
#[inline(always)]
fn fresh_base<M: Mode>(negative: bool) -> f64 {
    match (M::ZERO_TARGET_OK, negative) {
        (true, _) => 0.0,
        (false, false) => 1.0,
        (false, true) => -1.0,
    }
}

/// Decodes lattice code `m` of an element in slot `j` from base `b`: two correctly rounded
/// `f64` operations in this order, then the element type's rounding.
#[inline(always)]
fn lattice_decode_one<K: Elem, M: Mode>(
    j: usize,
    b: f64,
    m: i32,
    p: &Params<'_>,
    d: &[f64],
) -> u64 {
    K::narrow(M::apply(
        M::apply(b, p.table[(m + p.max_code as i32) as usize]),
        d[j],
    ))
}

/// Codes `a_bits` from base `b` on the grid of slot `lattice_slot(i)`: nearest point first, then
/// its neighbours, the first whose exact decode meets the bound. `None`: an exception.
#[inline(always)]
fn lattice_encode_one<K: Elem, M: Mode>(
    i: usize,
    a_bits: u64,
    b: f64,
    p: &Params<'_>,
    d: &[f64],
) -> Option<(i32, u64)> {
    let a = K::widen(a_bits);
    if !a.is_finite() || (!M::ZERO_TARGET_OK && a == 0.0) {
        return None;
    }
    let j = lattice_slot(i);
    let est = M::estimate(a, b, p.inv_step) + j as f64 / LATTICE_SLOTS as f64;
    let m0f = est.round();
    if !m0f.is_finite() || m0f.abs() > p.max_f + 1.0 {
        return None;
    }
    let m0 = m0f as i32;
    let second = if est >= m0f { 1 } else { -1 };
    [m0, m0 + second, m0 - second]
        .into_iter()
        .filter(|m| m.unsigned_abs() <= p.max_code)
        .map(|m| (m, lattice_decode_one::<K, M>(j, b, m, p, d)))
        .find(|&(_, x_bits)| M::within::<K>(K::widen(x_bits), a, p.eps_check))
}

/// Elements coded on their lattice inside a delta chunk, where the reference could not hold
/// them (a sign flip, a zero or non-finite reference). Positions strictly ascending.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FreshCodes {
    /// Element indices.
    pub positions: Vec<u32>,
    /// Lattice codes, same order.
    pub codes: Vec<i32>,
    /// Sign of each element (relative bounds; all false under an absolute bound).
    pub negative: Vec<bool>,
}

/// [`lattice_encode_one`] of every element from its base in `reference`: in vector lanes where
/// the CPU has them (`lanes::place`, which leaves every element its fast estimate does not
/// decide, or whose first candidate fails, to `lattice_encode_one`), one by one otherwise.
fn from_bases<K: Elem, M: Mode>(
    target: &[u8],
    reference: &[u8],
    table: &PowerTable,
    first: FirstPass,
) -> (QuantizedChunk, Vec<u8>) {
    let p = Params::new(table);
    let d = &table.offsets;
    if first != FirstPass::Lanes || !lanes::available(K::KIND) {
        return code_each::<K>(target, reference, |i, a_bits, b_bits| {
            lattice_encode_one::<K, M>(i, a_bits, K::widen(b_bits), &p, d)
        });
    }
    let mut slots = [0u8; ENCODE_BLOCK];
    // Elements of the block left to `lattice_encode_one`, ascending.
    let mut slow = Vec::with_capacity(ENCODE_BLOCK);
    code_blocks::<K>(target, reference, |base, ta, bb, cs, os, exceptions| {
        let slots = &mut slots[..ta.len()];
        for (k, slot) in slots.iter_mut().enumerate() {
            *slot = lattice_slot(base + k) as u8;
        }
        let done = lanes::place::<K, M>(ta, bb, slots, cs, os, &mut slow, &p, d);
        slow.extend(done..ta.len());
        for k in slow.drain(..) {
            let b = K::widen(K::load(bb[k]));
            let outcome = lattice_encode_one::<K, M>(base + k, K::load(ta[k]), b, &p, d);
            exceptions.write::<K>(base + k, ta[k], outcome, &mut cs[k], &mut os[k]);
        }
    })
}

fn rescue<K: Elem, M: Mode>(
    target: &[u8],
    q: &mut QuantizedChunk,
    recon: &mut [u8],
    table: &PowerTable,
) -> FreshCodes {
    let p = Params::new(table);
    let size = std::mem::size_of::<K::Raw>();
    let ts = K::chunks(target);
    let outs = K::chunks_mut(recon);
    let mut fresh = FreshCodes::default();
    let mut kept_positions = Vec::new();
    let mut kept_values = Vec::new();
    for (&pos, value) in q
        .exception_positions
        .iter()
        .zip(q.exception_values.chunks_exact(size))
    {
        let i = pos as usize;
        let a_bits = K::load(ts[i]);
        let negative = K::widen(a_bits).is_sign_negative();
        let b = fresh_base::<M>(negative);
        match lattice_encode_one::<K, M>(i, a_bits, b, &p, &table.offsets) {
            Some((m, x_bits)) => {
                outs[i] = K::to_raw(x_bits);
                fresh.positions.push(pos);
                fresh.codes.push(m);
                fresh.negative.push(negative && !M::ZERO_TARGET_OK);
            }
            None => {
                kept_positions.push(pos);
                kept_values.extend_from_slice(value);
            }
        }
    }
    q.exception_positions = kept_positions;
    q.exception_values = kept_values;
    fresh
}

fn require_lattice(table: &PowerTable) -> Result<(), QuantError> {
    if table.is_lattice() {
        Ok(())
    } else {
        Err(QuantError::NotALattice)
    }
}

/// Codes every element onto its lattice from its base in `reference`: `±1` by sign (relative)
/// or 0 (absolute) for a keyframe, or the reconstructed parent for a delta that anchors a chain
/// on the lattice (`x = (B' * T[m]) * D[j]`, so the offsets spread even a chain that starts from
/// exact or finer values over whole cells). Returns the chunk (exceptions where no lattice point
/// meets the bound) and the reconstruction.
pub fn quantize_from_bases(
    kind: FloatKind,
    target: &[u8],
    reference: &[u8],
    table: &PowerTable,
) -> Result<(QuantizedChunk, Vec<u8>), QuantError> {
    require_lattice(table)?;
    check_pair(kind, target, reference)?;
    Ok(by_kind_and_mode!(
        kind,
        table.bound,
        from_bases(target, reference, table, FirstPass::Lanes)
    ))
}

/// Moves every exception of a delta chunk that its lattice can hold (within the bound) into
/// [`FreshCodes`], updating the reconstruction. What stays an exception has no finite,
/// non-zero (relative) representation within the bound.
pub fn rescue_exceptions(
    kind: FloatKind,
    target: &[u8],
    q: &mut QuantizedChunk,
    recon: &mut [u8],
    table: &PowerTable,
) -> Result<FreshCodes, QuantError> {
    require_lattice(table)?;
    let n = element_count(kind, target.len())?;
    if recon.len() != target.len() || q.codes.len() != n {
        return Err(QuantError::LengthMismatch {
            what: "reconstruction bytes",
            expected: target.len(),
            actual: recon.len(),
        });
    }
    Ok(by_kind_and_mode!(
        kind,
        table.bound,
        rescue(target, q, recon, table)
    ))
}

/// What a chunk's stats say of its codes, from one count of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CodeStats {
    /// Codes that are 0.
    pub zeros: u64,
    /// Order-0 (empirical) entropy in bits per code; 0 for no codes.
    pub entropy_bits: f64,
}

/// Order-0 (empirical) entropy of a code slice in bits per element; 0 for an
/// empty slice.
#[cfg(test)]
pub fn code_entropy_bits(codes: &[i32]) -> f64 {
    code_stats(codes).entropy_bits
}

/// The [`CodeStats`] of `codes`: one pass for the ends, one to count.
pub fn code_stats(codes: &[i32]) -> CodeStats {
    if codes.is_empty() {
        return CodeStats {
            zeros: 0,
            entropy_bits: 0.0,
        };
    }
    let (lo, hi) = codes
        .iter()
        .fold((i32::MAX, i32::MIN), |(lo, hi), &c| (lo.min(c), hi.max(c)));
    let n = codes.len() as f64;
    let term = |c: u64| {
        if c == 0 {
            0.0
        } else {
            let p = c as f64 / n;
            -p * p.log2()
        }
    };
    let span = (i64::from(hi) - i64::from(lo)) as u64 + 1;
    let (zeros, h): (u64, f64) = if span <= 1 << 22 {
        let mut counts = vec![0u64; span as usize];
        for &c in codes {
            counts[(i64::from(c) - i64::from(lo)) as usize] += 1;
        }
        let zeros = usize::try_from(-i64::from(lo))
            .ok()
            .and_then(|z| counts.get(z))
            .copied()
            .unwrap_or(0);
        (zeros, counts.into_iter().map(term).sum())
    } else {
        let mut counts: HashMap<i32, u64> = HashMap::new();
        for &c in codes {
            *counts.entry(c).or_insert(0) += 1;
        }
        let zeros = counts.get(&0).copied().unwrap_or(0);
        (zeros, counts.into_values().map(term).sum())
    };
    CodeStats {
        zeros,
        entropy_bits: if h > 0.0 { h } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL_KINDS: [FloatKind; 4] = [
        FloatKind::F16,
        FloatKind::BF16,
        FloatKind::F32,
        FloatKind::F64,
    ];

    // ---- independent helpers (use `half` / std, not the module's code) ----

    fn val(kind: FloatKind, bits: u64) -> f64 {
        match kind {
            FloatKind::F16 => half::f16::from_bits(bits as u16).to_f64(),
            FloatKind::BF16 => half::bf16::from_bits(bits as u16).to_f64(),
            FloatKind::F32 => f64::from(f32::from_bits(bits as u32)),
            FloatKind::F64 => f64::from_bits(bits),
        }
    }

    /// Test-data generation only (half's f64 -> bf16 is not RNE; irrelevant here).
    fn from_f64(kind: FloatKind, x: f64) -> u64 {
        match kind {
            FloatKind::F16 => u64::from(half::f16::from_f64(x).to_bits()),
            FloatKind::BF16 => u64::from(half::bf16::from_f64(x).to_bits()),
            FloatKind::F32 => u64::from((x as f32).to_bits()),
            FloatKind::F64 => x.to_bits(),
        }
    }

    fn mask(kind: FloatKind) -> u64 {
        match kind.size() {
            8 => u64::MAX,
            s => (1u64 << (8 * s)) - 1,
        }
    }

    fn to_bytes(kind: FloatKind, bits: &[u64]) -> Vec<u8> {
        let s = kind.size();
        bits.iter()
            .flat_map(|b| b.to_le_bytes()[..s].to_vec())
            .collect()
    }

    fn from_bytes(kind: FloatKind, bytes: &[u8]) -> Vec<u64> {
        bytes
            .chunks_exact(kind.size())
            .map(|c| {
                let mut a = [0u8; 8];
                a[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(a)
            })
            .collect()
    }

    fn specials(kind: FloatKind) -> Vec<u64> {
        match kind {
            FloatKind::F16 => vec![
                0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7d23, 0xfe55, 0x0001, 0x8001, 0x03ff,
                0x0400, 0x7bff, 0xfbff, 0x3c00, 0xbc00, 0x3c01,
            ],
            FloatKind::BF16 => vec![
                0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x7f91, 0xffc5, 0x0001, 0x8001, 0x007f,
                0x0080, 0x7f7f, 0xff7f, 0x3f80, 0xbf80, 0x3f81,
            ],
            FloatKind::F32 => vec![
                0x0000_0000,
                0x8000_0000,
                0x7f80_0000,
                0xff80_0000,
                0x7fc0_0000,
                0x7f80_0123,
                0xffc0_4567,
                0x0000_0001,
                0x8000_0001,
                0x007f_ffff,
                0x0080_0000,
                0x7f7f_ffff,
                0xff7f_ffff,
                0x3f80_0000,
                0xbf80_0000,
                0x3f80_0001,
            ],
            FloatKind::F64 => vec![
                0,
                1 << 63,
                0x7ff0_0000_0000_0000,
                0xfff0_0000_0000_0000,
                0x7ff8_0000_0000_0000,
                0x7ff0_0000_0000_1234,
                0xfff8_dead_beef_0000,
                1,
                (1 << 63) | 1,
                0x000f_ffff_ffff_ffff,
                0x0010_0000_0000_0000,
                0x7fef_ffff_ffff_ffff,
                0xffef_ffff_ffff_ffff,
                1.0f64.to_bits(),
                (-1.0f64).to_bits(),
                1.0f64.to_bits() + 1,
            ],
        }
    }

    /// Independent reference of the bound, in plain f64 from the bits.
    fn meets_bound(kind: FloatKind, bound: ErrorBound, target: u64, recon: u64) -> bool {
        let a = val(kind, target);
        let ap = val(kind, recon);
        match bound {
            ErrorBound::Relative(eps) => (ap - a).abs() <= eps * a.abs(),
            ErrorBound::Absolute(eps) => (ap - a).abs() <= eps,
        }
    }

    // ---- rounding: exhaustive against an exact, construction-based reference ----

    /// All positive finite values of a 16-bit format, indexed by their bits.
    fn positive_values(kind: FloatKind) -> &'static [f64] {
        static F16: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
        static BF16: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
        let (cell, inf) = if kind == FloatKind::F16 {
            (&F16, 0x7c00)
        } else {
            (&BF16, 0x7f80)
        };
        cell.get_or_init(|| (0..inf).map(|b| val(kind, b)).collect())
    }

    fn narrow_bits(kind: FloatKind, x: f64) -> u16 {
        match kind {
            FloatKind::F16 => f64_to_f16_bits(x),
            FloatKind::BF16 => f64_to_bf16_bits(x),
            _ => unreachable!(),
        }
    }

    /// Exact RNE reference by bracketing in the sorted table of representable
    /// values and comparing with the (exactly representable) midpoint.
    fn ref_round(x: f64, vals: &[f64]) -> u16 {
        let sign: u16 = if x.is_sign_negative() { 0x8000 } else { 0 };
        let ax = x.abs();
        let last = vals.len() - 1;
        // The would-be next value after max: 2^(emax+1).
        let next = vals[last] + (vals[last] - vals[last - 1]);
        let i = vals.partition_point(|&v| v <= ax) - 1;
        let lo = vals[i];
        let hi = if i < last { vals[i + 1] } else { next };
        if ax >= hi {
            return sign | vals.len() as u16; // infinity
        }
        let mid = lo + (hi - lo) / 2.0;
        let pick = if ax < mid {
            i
        } else if ax > mid || i % 2 == 1 {
            i + 1
        } else {
            i
        };
        sign | pick as u16
    }

    /// Independent f64 -> kind rounding (RNE) for non-NaN `x`.
    fn ref_narrow(kind: FloatKind, x: f64) -> u64 {
        match kind {
            FloatKind::F16 | FloatKind::BF16 => u64::from(ref_round(x, positive_values(kind))),
            FloatKind::F32 => u64::from((x as f32).to_bits()),
            FloatKind::F64 => x.to_bits(),
        }
    }

    fn exhaustive_rounding(kind: FloatKind) {
        let vals = positive_values(kind);
        let n = vals.len();
        let max = vals[n - 1];
        let next = max + (max - vals[n - 2]);
        for i in 0..n {
            let lo = vals[i];
            let hi = if i + 1 < n { vals[i + 1] } else { next };
            let mid = lo + (hi - lo) / 2.0;
            let even = if i % 2 == 0 { i } else { i + 1 };
            let mut cases: Vec<(f64, usize)> = vec![
                (lo, i),
                (lo.next_up(), i),
                (mid, even),
                (mid.next_up(), i + 1),
                (mid.next_down(), i),
                (lo + (hi - lo) * 0.25, i),
                (lo + (hi - lo) * 0.75, i + 1),
            ];
            if lo > 0.0 {
                cases.push((lo.next_down(), i));
            }
            for (x, want) in cases {
                for s in [0u16, 0x8000] {
                    let xs = if s == 0 { x } else { -x };
                    let got = narrow_bits(kind, xs);
                    assert_eq!(got, s | want as u16, "{kind:?} x={xs:e} i={i}");
                    assert_eq!(ref_round(xs, vals), got, "{kind:?} ref x={xs:e}");
                }
            }
        }
        // Beyond the overflow threshold and special inputs.
        let inf = n as u16;
        for x in [next, next * 1.5, 1e300, f64::MAX, f64::INFINITY] {
            assert_eq!(narrow_bits(kind, x), inf);
            assert_eq!(narrow_bits(kind, -x), 0x8000 | inf);
        }
        for x in [f64::MIN_POSITIVE, 5e-324, 1e-300, 0.0] {
            assert_eq!(narrow_bits(kind, x), 0);
            assert_eq!(narrow_bits(kind, -x), 0x8000);
        }
        for nan in [f64::NAN, -f64::NAN, f64::from_bits(0x7ff0_0000_0000_0001)] {
            let b = narrow_bits(kind, nan);
            assert!(
                val(kind, u64::from(b)).is_nan(),
                "{kind:?} {nan:?} -> {b:#x}"
            );
            assert_eq!(b & 0x8000 != 0, nan.is_sign_negative());
        }
        // Every representable value (incl. negatives) round-trips.
        for b in 0..=u16::MAX {
            let v = val(kind, u64::from(b));
            if !v.is_nan() {
                assert_eq!(narrow_bits(kind, v), b);
            }
        }
    }

    #[test]
    fn bf16_rounding_exhaustive() {
        exhaustive_rounding(FloatKind::BF16);
    }

    #[test]
    fn f16_rounding_exhaustive() {
        exhaustive_rounding(FloatKind::F16);
    }

    #[test]
    fn narrow_rounding_matches_half_on_f32_inputs() {
        // f32 -> bf16 / f16 in `half` are RNE; an f32 is exact in f64 so a single
        // rounding from f64 must agree.
        let mut bits = 0u32;
        loop {
            let f = f32::from_bits(bits);
            let x = f64::from(f);
            let b = f64_to_bf16_bits(x);
            let h = f64_to_f16_bits(x);
            if f.is_nan() {
                assert!(half::bf16::from_bits(b).is_nan());
                assert!(half::f16::from_bits(h).is_nan());
            } else {
                assert_eq!(b, half::bf16::from_f32(f).to_bits(), "bf16 {f:e}");
                assert_eq!(h, half::f16::from_f32(f).to_bits(), "f16 {f:e}");
            }
            match bits.checked_add(997) {
                Some(nb) => bits = nb,
                None => break,
            }
        }
    }

    #[test]
    fn double_rounding_would_differ() {
        // Documents why f64 -> f32 -> bf16 is not the definition: 1 + 2^-8 + 2^-30
        // is just above the bf16 midpoint, but rounds to it in f32 and then ties to even.
        let x = 1.0 + 2f64.powi(-8) + 2f64.powi(-30);
        assert_eq!(f64_to_bf16_bits(x), 0x3f81);
        assert_eq!(half::bf16::from_f32(x as f32).to_bits(), 0x3f80);
        let y = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        assert_eq!(f64_to_f16_bits(y), 0x3c01);
    }

    proptest! {
        #[test]
        fn narrow_rounding_matches_reference_random(bits in any::<u64>(), e in -30.0f64..20.0, m in 1.0f64..2.0) {
            let vb = positive_values(FloatKind::BF16);
            let vh = positive_values(FloatKind::F16);
            for x in [f64::from_bits(bits), m * 2f64.powf(e.round()), -(m * 2f64.powf(e.round() * 6.0))] {
                if x.is_nan() {
                    prop_assert!(half::bf16::from_bits(f64_to_bf16_bits(x)).is_nan());
                    prop_assert!(half::f16::from_bits(f64_to_f16_bits(x)).is_nan());
                } else {
                    prop_assert_eq!(f64_to_bf16_bits(x), ref_round(x, vb));
                    prop_assert_eq!(f64_to_f16_bits(x), ref_round(x, vh));
                }
            }
        }
    }

    // ---- power table ----

    #[test]
    fn power_table_validation() {
        use ErrorBound::*;
        for b in [
            Relative(0.0),
            Relative(-0.1),
            Relative(1.0),
            Relative(1.5),
            Relative(f64::NAN),
            Relative(f64::INFINITY),
            Relative(1e-20),
            Absolute(0.0),
            Absolute(-1.0),
            Absolute(f64::NAN),
            Absolute(f64::INFINITY),
            Absolute(f64::MAX),
        ] {
            match PowerTable::new(b, 10) {
                Err(QuantError::InvalidBound(got)) => {
                    assert_eq!(format!("{got:?}"), format!("{b:?}"))
                }
                other => panic!("{b:?} accepted: {other:?}"),
            }
        }
        for m in [0, MAX_CODE_LIMIT + 1, u32::MAX] {
            assert_eq!(
                PowerTable::new(Relative(0.01), m),
                Err(QuantError::InvalidMaxCode(m))
            );
        }
        assert!(PowerTable::new(Relative(0.01), MAX_CODE_LIMIT).is_ok());
        assert!(PowerTable::new(Absolute(1e-300), 1).is_ok());
        let e = PowerTable::new(Relative(2.0), 1).unwrap_err();
        assert!(e.to_string().contains("invalid error bound"));
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn power_table_values() {
        let eps = 0.01;
        let t = PowerTable::new(ErrorBound::Relative(eps), 1000).unwrap();
        assert_eq!(t.bound(), ErrorBound::Relative(eps));
        assert_eq!(t.max_code(), 1000);
        let v = t.values();
        assert_eq!(v.len(), 2001);
        assert_eq!(v[1000], 1.0);
        let r = (1.0 + eps) * (1.0 + eps);
        assert_eq!(v[1001], r);
        assert_eq!(v[999], 1.0 / r);
        assert_eq!(v[1002], r * r);
        assert_eq!(v[1003], r * (r * r));
        for m in -1000i32..=1000 {
            let exact = (1.0f64 + eps).powf(2.0 * f64::from(m));
            let got = v[(m + 1000) as usize];
            assert!((got / exact - 1.0).abs() < 1e-12, "m={m} {got} {exact}");
        }
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        // Deterministic.
        assert_eq!(t, PowerTable::new(ErrorBound::Relative(eps), 1000).unwrap());

        let t = PowerTable::new(ErrorBound::Absolute(0.3), 50).unwrap();
        for (i, &x) in t.values().iter().enumerate() {
            assert_eq!(x, 0.6 * (i as f64 - 50.0));
        }
        // Huge codes saturate instead of producing NaN.
        let t = PowerTable::new(ErrorBound::Relative(0.9), MAX_CODE_LIMIT).unwrap();
        assert!(t.values().iter().all(|x| !x.is_nan()));
        assert_eq!(t.values()[0], 0.0);
        assert_eq!(*t.values().last().unwrap(), f64::INFINITY);
    }

    // ---- exact decode formula ----

    #[test]
    fn decode_uses_table_product_and_rne() {
        let t = PowerTable::new(ErrorBound::Relative(0.05), 100).unwrap();
        let b = [1.7f32, -3.25, 1e-40, 7.0];
        let codes = vec![3, -7, 2, 0];
        let reference = to_bytes(
            FloatKind::F32,
            &b.iter().map(|x| u64::from(x.to_bits())).collect::<Vec<_>>(),
        );
        let chunk = QuantizedChunk {
            codes: codes.clone(),
            ..Default::default()
        };
        let out = from_bytes(
            FloatKind::F32,
            &dequantize(FloatKind::F32, &reference, &chunk, &t).unwrap(),
        );
        for i in 0..4 {
            let want = (f64::from(b[i]) * t.values()[(codes[i] + 100) as usize]) as f32;
            assert_eq!(out[i], u64::from(want.to_bits()));
        }
        // Absolute, bf16: 1.0 + 2*0.5*3 = 4.0; -0.0 with code 0 stays -0.0.
        let t = PowerTable::new(ErrorBound::Absolute(0.5), 10).unwrap();
        let reference = to_bytes(FloatKind::BF16, &[0x3f80, 0x8000, 0x7fc1]);
        let chunk = QuantizedChunk {
            codes: vec![3, 0, 0],
            ..Default::default()
        };
        let out = from_bytes(
            FloatKind::BF16,
            &dequantize(FloatKind::BF16, &reference, &chunk, &t).unwrap(),
        );
        assert_eq!(out, vec![0x4080, 0x8000, 0x7fc1]);
        // bf16 decode rounds once from f64: 1 + 2^-8 + 2^-30 -> 0x3f81 (not 0x3f80).
        let eps = (2f64.powi(-8) + 2f64.powi(-30)) / 2.0;
        let t = PowerTable::new(ErrorBound::Absolute(eps), 4).unwrap();
        let reference = to_bytes(FloatKind::BF16, &[0x3f80]);
        let chunk = QuantizedChunk {
            codes: vec![1],
            ..Default::default()
        };
        let out = dequantize(FloatKind::BF16, &reference, &chunk, &t).unwrap();
        assert_eq!(from_bytes(FloatKind::BF16, &out), vec![0x3f81]);
        // f16 rounding from the f64 result: 1.0 + 2*eps with eps = 2^-12 is a tie -> 1.0.
        let t = PowerTable::new(ErrorBound::Absolute(2f64.powi(-12)), 4).unwrap();
        let reference = to_bytes(FloatKind::F16, &[0x3c00, 0x3c00]);
        let chunk = QuantizedChunk {
            codes: vec![1, 3],
            ..Default::default()
        };
        let out = from_bytes(
            FloatKind::F16,
            &dequantize(FloatKind::F16, &reference, &chunk, &t).unwrap(),
        );
        assert_eq!(out, vec![0x3c00, 0x3c02]);
    }

    // ---- quantize behaviour ----

    #[test]
    fn identical_input_gives_zero_codes_and_no_exceptions() {
        for kind in ALL_KINDS {
            let mut bits = specials(kind);
            bits.extend((0..200u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & mask(kind)));
            let bytes = to_bytes(kind, &bits);
            for bound in [ErrorBound::Relative(0.01), ErrorBound::Absolute(0.01)] {
                let t = PowerTable::new(bound, 127).unwrap();
                let (chunk, recon) = quantize(kind, &bytes, &bytes, &t).unwrap();
                assert!(chunk.codes.iter().all(|&c| c == 0));
                assert!(chunk.exception_positions.is_empty());
                assert!(chunk.exception_values.is_empty());
                assert_eq!(recon, bytes);
                assert_eq!(dequantize(kind, &bytes, &chunk, &t).unwrap(), bytes);
                assert_eq!(code_entropy_bits(&chunk.codes), 0.0);
            }
        }
    }

    /// Tiny deterministic PRNG for non-proptest tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn sym(&mut self) -> f64 {
            2.0 * self.unit() - 1.0
        }
    }

    #[test]
    fn nearly_equal_neighbours_give_mostly_zero_codes() {
        let mut rng = Rng(0x1234_5678);
        for kind in [FloatKind::F32, FloatKind::F64] {
            let n = 10_000;
            let b: Vec<f64> = (0..n)
                .map(|_| {
                    let m = 0.1 + 9.9 * rng.unit();
                    if rng.next() & 1 == 0 {
                        m
                    } else {
                        -m
                    }
                })
                .collect();
            let rb: Vec<u64> = b.iter().map(|&x| from_f64(kind, x)).collect();
            let ta: Vec<u64> = rb
                .iter()
                .map(|&x| from_f64(kind, val(kind, x) * (1.0 + 1e-4 * rng.sym())))
                .collect();
            let (tb, rbb) = (to_bytes(kind, &ta), to_bytes(kind, &rb));
            for bound in [ErrorBound::Relative(1e-2), ErrorBound::Absolute(1e-2)] {
                let t = PowerTable::new(bound, 32767).unwrap();
                let (chunk, recon) = quantize(kind, &tb, &rbb, &t).unwrap();
                let zeros = chunk.codes.iter().filter(|&&c| c == 0).count();
                assert!(zeros as f64 > 0.95 * n as f64, "{kind:?} {bound:?} {zeros}");
                assert!(chunk.exception_positions.is_empty());
                assert!(code_entropy_bits(&chunk.codes) < 0.3);
                for (x, y) in ta.iter().zip(from_bytes(kind, &recon)) {
                    assert!(meets_bound(kind, bound, *x, y));
                }
            }
        }
    }

    #[test]
    fn uncoverable_elements_are_exact_exceptions() {
        let kind = FloatKind::F32;
        let f = |x: f32| u64::from(x.to_bits());
        let nan = 0x7fc0_1234u64;
        // (target, reference)
        let pairs = [
            (f(1.0), f(-1.0)), // sign flip
            (f(0.0), f(1.0)),  // zero A
            (f(-0.0), f(0.0)), // signed zero mismatch
            (f(1.0), f(0.0)),  // zero B'
            (nan, f(1.0)),     // NaN A
            (f(1.0), nan),     // NaN B'
            (f(f32::INFINITY), f(1.0)),
            (f(1.0), f(f32::NEG_INFINITY)),
            (f(1e30), f(1e-30)), // |M| > max_code
            (f(1.0), f(1.0)),    // equal: not an exception
            (f(1.02), f(1.0)),   // coded
        ];
        let ta: Vec<u64> = pairs.iter().map(|p| p.0).collect();
        let rb: Vec<u64> = pairs.iter().map(|p| p.1).collect();
        let t = PowerTable::new(ErrorBound::Relative(0.01), 1000).unwrap();
        let (chunk, recon) =
            quantize(kind, &to_bytes(kind, &ta), &to_bytes(kind, &rb), &t).unwrap();
        assert_eq!(chunk.exception_positions, (0..9).collect::<Vec<u32>>());
        assert_eq!(from_bytes(kind, &chunk.exception_values), ta[..9].to_vec());
        assert_eq!(from_bytes(kind, &recon)[..9], ta[..9]);
        assert_eq!(chunk.codes[..10], [0; 10]);
        assert_eq!(chunk.codes[10], 1);
        // Absolute: zeros and sign flips are fine, NaN/Inf are not.
        let t = PowerTable::new(ErrorBound::Absolute(0.5), 1000).unwrap();
        let (chunk, _) = quantize(kind, &to_bytes(kind, &ta), &to_bytes(kind, &rb), &t).unwrap();
        assert_eq!(chunk.exception_positions, vec![4, 5, 6, 7, 8]);
        assert_eq!(chunk.codes[0], 2);
        assert_eq!(chunk.codes[1], -1);
        assert_eq!(chunk.codes[2], 0);
    }

    #[test]
    fn keyframes() {
        let kind = FloatKind::F32;
        let mut rng = Rng(99);
        let ta: Vec<u64> = (0..500)
            .map(|i| {
                if i % 10 == 0 {
                    0
                } else {
                    from_f64(kind, 3.0 * rng.sym())
                }
            })
            .collect();
        let zeros = vec![0u8; 2000];
        let tb = to_bytes(kind, &ta);
        // Absolute keyframe against zeros: everything coded.
        let t = PowerTable::new(ErrorBound::Absolute(0.01), 32767).unwrap();
        let (chunk, recon) = quantize(kind, &tb, &zeros, &t).unwrap();
        assert!(chunk.exception_positions.is_empty());
        for (x, y) in ta.iter().zip(from_bytes(kind, &recon)) {
            assert!(meets_bound(kind, ErrorBound::Absolute(0.01), *x, y));
        }
        // Relative keyframe against zeros: every non-zero element is an exception.
        let t = PowerTable::new(ErrorBound::Relative(0.01), 32767).unwrap();
        let (chunk, recon) = quantize(kind, &tb, &zeros, &t).unwrap();
        let nonzero = ta.iter().filter(|&&x| x != 0).count();
        assert_eq!(chunk.exception_positions.len(), nonzero);
        assert_eq!(recon, tb);
        assert_eq!(dequantize(kind, &zeros, &chunk, &t).unwrap(), tb);
    }

    #[test]
    fn neighbour_retry_rescues_rounding_failures() {
        // f16 with eps = 0.1: every normal a within range is coverable, but for
        // some a the nearest code fails after rounding to f16 and a neighbour
        // must be used.
        let kind = FloatKind::F16;
        let eps = 0.1;
        let t = PowerTable::new(ErrorBound::Relative(eps), 100).unwrap();
        let p = Params::new(&t);
        let b_bits = 0x3c00u64; // 1.0
        let mut rescued = 0;
        for a_bits in 0x2000u64..0x5000 {
            let a = val(kind, a_bits);
            let got = encode_one::<F16Elem, Rel>(0, a_bits, b_bits, &p);
            let (m, x) = got.unwrap_or_else(|| panic!("exception for {a}"));
            assert!(meets_bound(kind, ErrorBound::Relative(eps), a_bits, x));
            let est = Rel::estimate(a, 1.0, t.inv_step);
            if m != 0 && m as f64 != est.round() {
                rescued += 1;
            }
        }
        assert!(rescued > 0);
    }

    #[test]
    fn f64_tiny_and_huge_relative() {
        let kind = FloatKind::F64;
        let t = PowerTable::new(ErrorBound::Relative(0.3), 32767).unwrap();
        let ta: [f64; 7] = [5e-324, 1e-320, 3e-310, 1e150, 1e-150, -2.5e-315, 1e300];
        let rb: [f64; 7] = [7e-324, 1.1e-320, 1e-308, 1e-150, 1e150, -2.4e-315, 1e-300];
        let tb: Vec<u64> = ta.iter().map(|x| x.to_bits()).collect();
        let rbb: Vec<u64> = rb.iter().map(|x| x.to_bits()).collect();
        let (chunk, recon) =
            quantize(kind, &to_bytes(kind, &tb), &to_bytes(kind, &rbb), &t).unwrap();
        let recon = from_bytes(kind, &recon);
        let exc = &chunk.exception_positions;
        for i in 0..ta.len() {
            if exc.contains(&(i as u32)) {
                assert_eq!(recon[i], tb[i]);
            } else {
                assert!(meets_bound(kind, t.bound(), tb[i], recon[i]), "{i}");
            }
        }
        // Ratios of 1e+-300 are coded; a ratio beyond f64 range cannot be.
        assert!(!exc.contains(&3) && !exc.contains(&4));
        assert!(chunk.codes[3] > 1000 && chunk.codes[4] < -1000);
        assert!(exc.contains(&6));
        assert!(!exc.contains(&0) && !exc.contains(&1) && !exc.contains(&2));
    }

    // ---- error cases ----

    #[test]
    fn error_cases_do_not_panic() {
        let kind = FloatKind::F32;
        let t = PowerTable::new(ErrorBound::Relative(0.01), 10).unwrap();
        let a = to_bytes(kind, &[1, 2, 3]);
        assert!(matches!(
            quantize(kind, &a, &a[..8], &t),
            Err(QuantError::LengthMismatch { .. })
        ));
        assert!(matches!(
            quantize(kind, &a[..10], &a[..10], &t),
            Err(QuantError::UnalignedLength { .. })
        ));
        assert!(matches!(
            dequantize(kind, &a[..11], &QuantizedChunk::default(), &t),
            Err(QuantError::UnalignedLength { .. })
        ));
        let good = QuantizedChunk {
            codes: vec![0, 10, 0],
            exception_positions: vec![0, 2],
            exception_values: vec![0; 8],
        };
        assert!(dequantize(kind, &a, &good, &t).is_ok());
        type Expect = fn(&QuantError) -> bool;
        let cases: Vec<(QuantizedChunk, Expect)> = vec![
            (
                QuantizedChunk {
                    codes: vec![0, 0],
                    ..good.clone()
                },
                |e| matches!(e, QuantError::LengthMismatch { what: "codes", .. }),
            ),
            (
                QuantizedChunk {
                    exception_values: vec![0; 7],
                    ..good.clone()
                },
                |e| matches!(e, QuantError::LengthMismatch { .. }),
            ),
            (
                QuantizedChunk {
                    exception_positions: vec![0, 3],
                    ..good.clone()
                },
                |e| {
                    matches!(
                        e,
                        QuantError::BadExceptionPosition {
                            index: 1,
                            position: 3
                        }
                    )
                },
            ),
            (
                QuantizedChunk {
                    exception_positions: vec![2, 0],
                    ..good.clone()
                },
                |e| matches!(e, QuantError::BadExceptionPosition { index: 1, .. }),
            ),
            (
                QuantizedChunk {
                    exception_positions: vec![2, 2],
                    ..good.clone()
                },
                |e| matches!(e, QuantError::BadExceptionPosition { index: 1, .. }),
            ),
            (
                QuantizedChunk {
                    exception_positions: vec![u32::MAX, 0],
                    ..good.clone()
                },
                |e| matches!(e, QuantError::BadExceptionPosition { index: 0, .. }),
            ),
            (
                QuantizedChunk {
                    codes: vec![0, 11, 0],
                    ..good.clone()
                },
                |e| {
                    matches!(
                        e,
                        QuantError::CodeOutOfRange {
                            index: 1,
                            code: 11,
                            ..
                        }
                    )
                },
            ),
            (
                QuantizedChunk {
                    codes: vec![0, i32::MIN, 0],
                    ..good.clone()
                },
                |e| matches!(e, QuantError::CodeOutOfRange { index: 1, .. }),
            ),
            (
                QuantizedChunk {
                    codes: vec![0, 0, -3],
                    ..good.clone()
                },
                |e| {
                    matches!(
                        e,
                        QuantError::ExceptionCodeNotZero {
                            position: 2,
                            code: -3
                        }
                    )
                },
            ),
        ];
        for (chunk, ok) in cases {
            let e = dequantize(kind, &a, &chunk, &t).unwrap_err();
            assert!(ok(&e), "{e:?}");
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn entropy() {
        for codes in [
            &[][..],
            &[5; 10],
            &[0, 1, 0, 1],
            &[-3, 7, 0, 9],
            &[0, i32::MAX, i32::MIN, 0],
        ] {
            let zeros = codes.iter().filter(|&&c| c == 0).count() as u64;
            assert_eq!(code_stats(codes).zeros, zeros, "{codes:?}");
        }
        assert_eq!(code_entropy_bits(&[]), 0.0);
        assert_eq!(code_entropy_bits(&[5; 10]), 0.0);
        assert!((code_entropy_bits(&[0, 1, 0, 1]) - 1.0).abs() < 1e-12);
        assert!((code_entropy_bits(&[-3, 7, 0, 9]) - 2.0).abs() < 1e-12);
        let wide = [i32::MIN, i32::MAX, 0, 0];
        assert!((code_entropy_bits(&wide) - 1.5).abs() < 1e-12);
        let h = code_entropy_bits(&[0, 0, 0, 1]);
        let want = -(0.75f64 * 0.75f64.log2() + 0.25 * 0.25f64.log2());
        assert!((h - want).abs() < 1e-12);
    }

    // ---- property tests ----

    #[derive(Clone, Debug)]
    enum Recipe {
        Raw(u64, u64),
        Equal(u64),
        Near(f64, f64),
        RawNear(u64, f64),
        Moderate(f64, f64),
        Flip(f64, f64),
        Special(usize, usize),
    }

    fn magnitude() -> impl Strategy<Value = f64> {
        (any::<bool>(), -3.0f64..3.0).prop_map(|(neg, e)| {
            let v = 10f64.powf(e);
            if neg {
                -v
            } else {
                v
            }
        })
    }

    fn rel_noise() -> impl Strategy<Value = f64> {
        prop_oneof![-0.5f64..0.5, -1e-2f64..1e-2, -1e-4f64..1e-4, -1e-7f64..1e-7]
    }

    fn recipe() -> impl Strategy<Value = Recipe> {
        prop_oneof![
            2 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Recipe::Raw(a, b)),
            2 => any::<u64>().prop_map(Recipe::Equal),
            4 => (magnitude(), rel_noise()).prop_map(|(b, r)| Recipe::Near(b, r)),
            2 => (any::<u64>(), rel_noise()).prop_map(|(b, r)| Recipe::RawNear(b, r)),
            3 => (-10.0f64..10.0, -1.0f64..1.0).prop_map(|(b, d)| Recipe::Moderate(b, d)),
            1 => (magnitude(), rel_noise()).prop_map(|(b, r)| Recipe::Flip(b, r)),
            2 => (0usize..64, 0usize..64).prop_map(|(i, j)| Recipe::Special(i, j)),
        ]
    }

    fn materialize(kind: FloatKind, r: &Recipe) -> (u64, u64) {
        let m = mask(kind);
        let sp = specials(kind);
        match *r {
            Recipe::Raw(a, b) => (a & m, b & m),
            Recipe::Equal(a) => (a & m, a & m),
            Recipe::Near(b, rel) => {
                let b = from_f64(kind, b);
                (from_f64(kind, val(kind, b) * (1.0 + rel)), b)
            }
            Recipe::RawNear(b, rel) => {
                let b = b & m;
                (from_f64(kind, val(kind, b) * (1.0 + rel)), b)
            }
            Recipe::Moderate(b, d) => {
                let b = from_f64(kind, b);
                (from_f64(kind, val(kind, b) + d), b)
            }
            Recipe::Flip(b, rel) => {
                let b = from_f64(kind, b);
                (from_f64(kind, -val(kind, b) * (1.0 + rel)), b)
            }
            Recipe::Special(i, j) => (sp[i % sp.len()], sp[j % sp.len()]),
        }
    }

    /// The lanes are compared with the scalar path (`fast_encoder_equals_element_by_element`,
    /// `lanes_place_on_the_lattice_as_the_scalar_path_does`) only where the CPU has them.
    #[test]
    fn lanes_run_here_or_say_why() {
        for kind in [FloatKind::F16, FloatKind::BF16, FloatKind::F32] {
            if !lanes::available(kind) {
                crate::report_skip(
                    "codec::logquant::tests::lanes_run_here_or_say_why",
                    &format!("no AVX2 and F16C on this CPU: {kind:?} compared the scalar path with itself"),
                );
            }
        }
        assert!(!lanes::available(FloatKind::F64));
    }

    fn kind_strategy() -> impl Strategy<Value = FloatKind> {
        prop_oneof![
            Just(FloatKind::F16),
            Just(FloatKind::BF16),
            Just(FloatKind::F32),
            Just(FloatKind::F64)
        ]
    }

    fn bound_strategy() -> impl Strategy<Value = ErrorBound> {
        (any::<bool>(), -4.0f64..0.3f64.log10()).prop_map(|(rel, e)| {
            let eps = 10f64.powf(e);
            if rel {
                ErrorBound::Relative(eps)
            } else {
                ErrorBound::Absolute(eps)
            }
        })
    }

    fn max_code_strategy() -> impl Strategy<Value = u32> {
        prop_oneof![1u32..=8, 1u32..=32767]
    }

    /// Full contract check of one quantize/dequantize round.
    fn check_round(
        kind: FloatKind,
        table: &PowerTable,
        ta: &[u64],
        rb: &[u64],
    ) -> Result<Vec<u64>, TestCaseError> {
        let bound = table.bound();
        let (tb, rbb) = (to_bytes(kind, ta), to_bytes(kind, rb));
        let (chunk, recon) = quantize(kind, &tb, &rbb, table).unwrap();
        prop_assert_eq!(chunk.codes.len(), ta.len());
        prop_assert!(chunk.exception_positions.windows(2).all(|w| w[0] < w[1]));
        prop_assert_eq!(
            chunk.exception_values.len(),
            chunk.exception_positions.len() * kind.size()
        );
        let recon_bits = from_bytes(kind, &recon);
        let exc_vals = from_bytes(kind, &chunk.exception_values);
        let mut exc = chunk.exception_positions.iter().zip(&exc_vals).peekable();
        for i in 0..ta.len() {
            let code = chunk.codes[i];
            prop_assert!(code.unsigned_abs() <= table.max_code());
            if exc.peek().is_some_and(|(&p, _)| p as usize == i) {
                let (_, &v) = exc.next().unwrap();
                prop_assert_eq!(v, ta[i], "exception value {}", i);
                prop_assert_eq!(recon_bits[i], ta[i], "exception recon {}", i);
                prop_assert_eq!(code, 0);
                prop_assert!(ta[i] != rb[i], "equal element made an exception");
            } else if ta[i] == rb[i] {
                prop_assert_eq!(code, 0);
                prop_assert_eq!(recon_bits[i], ta[i]);
            } else if code == 0 {
                // Code 0 is a bit copy of the reference.
                prop_assert_eq!(recon_bits[i], rb[i]);
                prop_assert!(meets_bound(kind, bound, ta[i], recon_bits[i]));
            } else {
                let (a, b) = (val(kind, ta[i]), val(kind, rb[i]));
                prop_assert!(a.is_finite() && b.is_finite());
                if let ErrorBound::Relative(_) = bound {
                    prop_assert!(a != 0.0 && b != 0.0 && (a > 0.0) == (b > 0.0));
                }
                // The decode formula, with an independent RNE reference.
                let t = table.values()[(code + table.max_code() as i32) as usize];
                let x = match bound {
                    ErrorBound::Relative(_) => b * t,
                    ErrorBound::Absolute(_) => b + t,
                };
                prop_assert_eq!(
                    recon_bits[i],
                    ref_narrow(kind, x),
                    "decode formula at {}",
                    i
                );
                prop_assert!(
                    meets_bound(kind, bound, ta[i], recon_bits[i]),
                    "bound violated at {}: a={:e} recon={:e} code={}",
                    i,
                    a,
                    val(kind, recon_bits[i]),
                    code
                );
            }
        }
        prop_assert!(exc.next().is_none());
        let dec = dequantize(kind, &rbb, &chunk, table).unwrap();
        prop_assert_eq!(
            &dec,
            &recon,
            "dequantize differs from quantize's reconstruction"
        );
        Ok(recon_bits)
    }

    /// The encoder as it was before its two-pass form: `encode_one` on every element that
    /// differs from its reference, with the exact (libm) estimate.
    fn encode_element_by_element(
        kind: FloatKind,
        target: &[u8],
        reference: &[u8],
        table: &PowerTable,
    ) -> (QuantizedChunk, Vec<u8>) {
        fn each<K: Elem, M: Mode>(
            target: &[u8],
            reference: &[u8],
            table: &PowerTable,
        ) -> (QuantizedChunk, Vec<u8>) {
            let p = Params::new(table);
            code_each::<K>(target, reference, |i, a_bits, b_bits| {
                if a_bits == b_bits {
                    Some((0, b_bits))
                } else {
                    encode_one::<K, M>(i, a_bits, b_bits, &p)
                }
            })
        }
        by_kind_and_mode!(kind, table.bound, each(target, reference, table))
    }

    /// F32 elements whose code estimate lies within the fast estimate's tolerance of a
    /// half-integer or an integer (a few in a thousand of these targets near such a point),
    /// which the lanes must leave to the exact estimate: the placement equals the scalar path's.
    #[test]
    fn lattice_lanes_leave_boundaries_to_the_exact_estimate() {
        let kind = FloatKind::F32;
        for bound in [ErrorBound::Relative(0.01), ErrorBound::Relative(0.2)] {
            let table = PowerTable::lattice(bound, 1 << 15).unwrap();
            let (mut ta, mut bases, mut near) = (Vec::new(), Vec::new(), 0);
            for i in 0..200_000 {
                let b = from_f64(kind, 1.0 + (i % 7919) as f64 / 7919.0);
                let offset = lattice_slot(i) as f64 / LATTICE_SLOTS as f64;
                let code = (i % 200) as f64 - 100.0 + if i % 2 == 0 { 0.5 } else { 0.0 };
                let a = from_f64(
                    kind,
                    val(kind, b) * ((code - offset) / table.inv_step).exp(),
                );
                let est = (val(kind, a) / val(kind, b)).ln() * table.inv_step + offset;
                let frac = (est - est.trunc()).abs();
                let tol = Rel::estimate_tolerance(est, table.inv_step);
                near += usize::from((frac - 0.5).abs() <= tol || frac.min(1.0 - frac) <= tol);
                ta.push(a);
                bases.push(b);
            }
            assert!(
                near >= 100,
                "{bound:?}: only {near} elements near a boundary"
            );
            let (t, bases) = (to_bytes(kind, &ta), to_bytes(kind, &bases));
            let one_by_one = by_kind_and_mode!(
                kind,
                bound,
                from_bases(&t, &bases, &table, FirstPass::Scalar)
            );
            assert_eq!(
                quantize_from_bases(kind, &t, &bases, &table).unwrap(),
                one_by_one,
                "{bound:?}"
            );
        }
    }

    /// The blocked search finds the special mismatches a scan of every element finds: specials
    /// equal or not to the reconstruction, in blocks with none, one or many, at block edges.
    #[test]
    fn special_mismatches_are_the_scanned_ones() {
        let mut rng = Rng(0x005e_ed0f_5bec_1a15);
        for kind in ALL_KINDS {
            let sp = specials(kind);
            for density in [0, 1, 50, 1000] {
                let target: Vec<u64> = (0..3000)
                    .map(|i| {
                        if rng.next() % 1000 < density || i % 256 == 255 {
                            sp[(rng.next() % sp.len() as u64) as usize]
                        } else {
                            from_f64(kind, 1.0 + rng.unit())
                        }
                    })
                    .collect();
                let recon: Vec<u64> = target
                    .iter()
                    .map(|&t| {
                        if rng.next().is_multiple_of(2) {
                            t ^ 1
                        } else {
                            t
                        }
                    })
                    .collect();
                let exp = |t: u64| {
                    (t >> (8 * kind.size() - 1 - exponent_bits(kind)))
                        & ((1 << exponent_bits(kind)) - 1)
                };
                let want: Vec<u32> = (0..target.len())
                    .filter(|&i| {
                        let e = exp(target[i]);
                        target[i] != recon[i] && (e == 0 || e == (1 << exponent_bits(kind)) - 1)
                    })
                    .map(|i| i as u32)
                    .collect();
                let (t, r) = (to_bytes(kind, &target), to_bytes(kind, &recon));
                assert_eq!(special_mismatches(kind, &t, &r), want, "{kind:?} {density}");
            }
        }
    }

    fn exponent_bits(kind: FloatKind) -> usize {
        match kind {
            FloatKind::F16 => 5,
            FloatKind::BF16 | FloatKind::F32 => 8,
            FloatKind::F64 => 11,
        }
    }

    #[test]
    fn ln_fast_is_within_its_bound() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut worst = 0f64;
        let mut check = |r: f64| {
            let err = (ln_fast(r) - r.ln()).abs();
            worst = worst.max(err);
            assert!(err <= LN_FAST_ERROR, "ln_fast({r:e}) off by {err:e}");
        };
        for _ in 0..1_000_000 {
            // Any positive normal: a random exponent field in 1..=2046 and mantissa.
            let bits = (rng.next() % 2046 + 1) << 52 | (rng.next() >> 12);
            check(f64::from_bits(bits));
            // Ratios near 1, where the codes of neighbouring epochs lie.
            check(1.0 + rng.sym() * 0.1);
            check(1.0 + rng.sym() * 1e-9);
        }
        for bits in [
            1u64 << 52,
            0x7fef_ffff_ffff_ffff,
            SQRT_HALF_BITS,
            SQRT_HALF_BITS - 1,
            SQRT_HALF_BITS + 1,
            SQRT_HALF_BITS + (1 << 52),
            SQRT_HALF_BITS + (1 << 52) - 1,
            1.0f64.to_bits(),
            1.0f64.to_bits() - 1,
            1.0f64.to_bits() + 1,
        ] {
            check(f64::from_bits(bits));
        }
        // The proven bound (2e-13) plus libm's own ulp.
        assert!(worst < 3.2e-13, "worst {worst:e}");
    }

    #[test]
    fn sse2_estimates_are_the_scalar_ones_bit_for_bit() {
        let mut rng = Rng(0x0bad_cafe_f00d_1234);
        let mut a = Vec::new();
        let mut b = Vec::new();
        for k in 0..20_001 {
            let x = f64::from_bits((rng.next() % 2046 + 1) << 52 | (rng.next() >> 12));
            let y = match k % 4 {
                0 => x * (1.0 + rng.sym() * 0.05),
                1 => f64::from_bits((rng.next() % 2046 + 1) << 52 | (rng.next() >> 12)),
                2 => -x,
                _ => [0.0, f64::NAN, f64::INFINITY, 1e-310][k / 4 % 4],
            };
            a.push(x);
            b.push(y);
        }
        let mut out = vec![0.0; a.len()];
        Rel::estimates_fast(&a, &b, 50.25, &mut out);
        for k in 0..a.len() {
            let one = Rel::estimate_fast(a[k], b[k], 50.25);
            assert_eq!(out[k].to_bits(), one.to_bits(), "{} / {}", a[k], b[k]);
        }
    }

    /// Elements whose fast estimate lies near a half-integer go to the exact path, so the
    /// estimates that sit on a rounding boundary still give the exact path's codes.
    #[test]
    fn estimates_on_rounding_boundaries_match_the_exact_encoder() {
        for bound in [ErrorBound::Relative(0.01), ErrorBound::Relative(1e-4)] {
            let ErrorBound::Relative(eps) = bound else {
                unreachable!()
            };
            let step = (1.0 + eps) * (1.0 + eps);
            for table in [
                PowerTable::new(bound, 4000).unwrap(),
                PowerTable::lattice(bound, 4000).unwrap(),
            ] {
                let (mut ta, mut rb) = (Vec::new(), Vec::new());
                for k in 1..400 {
                    let b = 0.37 + k as f64 * 1e-3;
                    // A target just around the (k mod 7 + 1/2)-th step above or below b.
                    let e = (k % 7) as f64 + 0.5;
                    let e = if k % 2 == 0 { e } else { -e };
                    for d in [-1e-9, -1e-12, 0.0, 1e-12, 1e-9] {
                        let a = b * step.powf(e + d);
                        ta.push(a.to_bits());
                        rb.push(b.to_bits());
                        ta.push(u64::from((a as f32).to_bits()));
                        rb.push(u64::from((b as f32).to_bits()));
                    }
                }
                for kind in [FloatKind::F64, FloatKind::F32] {
                    let keep: Vec<(u64, u64)> = ta
                        .iter()
                        .zip(&rb)
                        .filter(|(a, _)| (kind == FloatKind::F64) == (**a > u64::from(u32::MAX)))
                        .map(|(&a, &b)| (a, b))
                        .collect();
                    let a: Vec<u64> = keep.iter().map(|p| p.0).collect();
                    let b: Vec<u64> = keep.iter().map(|p| p.1).collect();
                    let (tb, rbb) = (to_bytes(kind, &a), to_bytes(kind, &b));
                    assert_eq!(
                        quantize(kind, &tb, &rbb, &table).unwrap(),
                        encode_element_by_element(kind, &tb, &rbb, &table),
                        "{kind:?} {bound:?}"
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(384))]

        /// The two-pass encoder gives the element-by-element encoder's codes, exceptions and
        /// reconstruction bit for bit, for every kind, bound mode, rounding and code range, with
        /// its first pass in vector lanes (where the CPU has them) and one element at a time, at
        /// lengths across the lane width and the block.
        #[test]
        fn fast_encoder_equals_element_by_element(
            kind in kind_strategy(),
            bound in bound_strategy(),
            max_code in max_code_strategy(),
            lattice in any::<bool>(),
            recipes in prop::collection::vec(recipe(), 0..1200),
        ) {
            let table = if lattice {
                PowerTable::lattice(bound, max_code).unwrap()
            } else {
                PowerTable::new(bound, max_code).unwrap()
            };
            let (ta, rb): (Vec<u64>, Vec<u64>) =
                recipes.iter().map(|r| materialize(kind, r)).unzip();
            let (tb, rbb) = (to_bytes(kind, &ta), to_bytes(kind, &rb));
            let (t, r) = (&tb[..], &rbb[..]);
            let each = encode_element_by_element(kind, t, r, &table);
            let scalar = by_kind_and_mode!(kind, bound, encode(t, r, &table, FirstPass::Scalar));
            prop_assert_eq!(&scalar, &each);
            prop_assert_eq!(quantize(kind, t, r, &table).unwrap(), each);
        }

        /// Placing elements on their lattice in lanes gives the codes, exceptions and
        /// reconstruction of placing them one by one, from `±1`/0 bases (a keyframe) and from
        /// arbitrary ones (an anchoring delta).
        #[test]
        fn lanes_place_on_the_lattice_as_the_scalar_path_does(
            kind in kind_strategy(),
            bound in bound_strategy(),
            max_code in max_code_strategy(),
            recipes in prop::collection::vec(recipe(), 0..1200),
        ) {
            let table = PowerTable::lattice(bound, max_code).unwrap();
            let (ta, rb): (Vec<u64>, Vec<u64>) =
                recipes.iter().map(|r| materialize(kind, r)).unzip();
            let t = to_bytes(kind, &ta);
            for bases in [to_bytes(kind, &lattice_base(kind, bound, &ta)), to_bytes(kind, &rb)] {
                let one_by_one =
                    by_kind_and_mode!(kind, bound, from_bases(&t, &bases, &table, FirstPass::Scalar));
                prop_assert_eq!(quantize_from_bases(kind, &t, &bases, &table).unwrap(), one_by_one);
            }
        }

        #[test]
        fn quantize_contract(
            kind in kind_strategy(),
            bound in bound_strategy(),
            max_code in max_code_strategy(),
            recipes in prop::collection::vec(recipe(), 0..120),
        ) {
            let table = PowerTable::new(bound, max_code).unwrap();
            let (ta, rb): (Vec<u64>, Vec<u64>) =
                recipes.iter().map(|r| materialize(kind, r)).unzip();
            check_round(kind, &table, &ta, &rb)?;
        }

        /// Relative mode never gives up on an element that is provably coverable:
        /// both normal, same sign, away from overflow, code in range, and
        /// eps^2 > 8 u (u = unit roundoff of the type), so that the nearest code
        /// or its lower neighbour meets the bound with slack ~eps^2/2 > u.
        #[test]
        fn relative_covers_coverable(
            kind in kind_strategy(),
            t in 0.0f64..1.0,
            max_code in 16u32..=32767,
            pairs in prop::collection::vec((magnitude(), -0.9f64..4.0), 1..100),
        ) {
            let u = match kind {
                FloatKind::F16 => 2f64.powi(-11),
                FloatKind::BF16 => 2f64.powi(-8),
                FloatKind::F32 => 2f64.powi(-24),
                FloatKind::F64 => 2f64.powi(-53),
            };
            let lo = (8.0 * u).sqrt().max(1e-4) * 1.01;
            let eps = lo * (0.3 / lo).powf(t);
            let table = PowerTable::new(ErrorBound::Relative(eps), max_code).unwrap();
            let (ta, rb): (Vec<u64>, Vec<u64>) = pairs
                .iter()
                .map(|&(b, r)| {
                    let b = from_f64(kind, b);
                    (from_f64(kind, val(kind, b) * (1.0 + r)), b)
                })
                .unzip();
            check_round(kind, &table, &ta, &rb)?;
            let (chunk, _) =
                quantize(kind, &to_bytes(kind, &ta), &to_bytes(kind, &rb), &table).unwrap();
            let (min_normal, max) = match kind {
                FloatKind::F16 => (2f64.powi(-14), 65504.0),
                FloatKind::BF16 => (2f64.powi(-126), 3.38e38),
                FloatKind::F32 => (f64::from(f32::MIN_POSITIVE), f64::from(f32::MAX)),
                FloatKind::F64 => (f64::MIN_POSITIVE, f64::MAX),
            };
            let step = 2.0 * (1.0 + eps).ln();
            for &p in &chunk.exception_positions {
                let (a, b) = (val(kind, ta[p as usize]), val(kind, rb[p as usize]));
                let ok = |x: f64| x.abs() >= 4.0 * min_normal && x.abs() <= max / 4.0;
                let coverable = ok(a) && ok(b) && (a > 0.0) == (b > 0.0)
                    && ((a / b).ln() / step).abs() <= f64::from(max_code) - 2.0;
                prop_assert!(!coverable, "coverable element {} became an exception: a={:e} b={:e} eps={}", p, a, b, eps);
            }
        }
    }

    /// Value of a non-negative f64 in units of 2^-1074 (exact, small values only).
    fn units(bits: u64) -> u128 {
        let (exp, man) = ((bits >> 52) & 0x7ff, bits & ((1 << 52) - 1));
        if exp == 0 {
            u128::from(man)
        } else {
            u128::from(man | 1 << 52) << (exp - 1)
        }
    }

    proptest! {
        /// For f64 subnormal targets the relative bound holds in exact integer
        /// arithmetic, not just in (rounded) f64 evaluation.
        #[test]
        fn f64_subnormal_relative_bound_is_exact(
            eps in 1e-4f64..0.3,
            pairs in prop::collection::vec(
                (prop_oneof![1u64..64, 1u64..(1 << 52)], 0.2f64..5.0), 1..64),
        ) {
            let kind = FloatKind::F64;
            let table = PowerTable::new(ErrorBound::Relative(eps), 32767).unwrap();
            let (ta, rb): (Vec<u64>, Vec<u64>) = pairs
                .iter()
                .map(|&(k, r)| (k, ((k as f64 * r).round() as u64).max(1)))
                .unzip();
            let recon = check_round(kind, &table, &ta, &rb)?;
            let eb = eps.to_bits();
            let mant = u128::from((eb & ((1 << 52) - 1)) | 1 << 52);
            let shift = 1075 - ((eb >> 52) & 0x7ff) as u32;
            for (&t, &x) in ta.iter().zip(&recon) {
                let (k, kx) = (units(t), units(x));
                let d = k.abs_diff(kx);
                prop_assert!(d == 0 || (d << shift) <= mant * k, "k={} recon={} eps={}", k, kx, eps);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Closed loop: 50 snapshots, each coded against the previous
        /// reconstruction; every step meets the bound against its own target.
        #[test]
        fn closed_loop_chain(
            kind in kind_strategy(),
            bound in bound_strategy(),
            seed in any::<u64>(),
        ) {
            let n = 64;
            let mut rng = Rng(seed | 1);
            let table = PowerTable::new(bound, 32767).unwrap();
            let mut target: Vec<f64> = (0..n).map(|_| 2.0 * rng.sym()).collect();
            let mut prev_recon = vec![0u64; n]; // keyframe reference: zeros
            let mut prev_decoded = to_bytes(kind, &prev_recon);
            for step in 0..50 {
                let ta: Vec<u64> = target.iter().map(|&x| from_f64(kind, x)).collect();
                let recon = check_round(kind, &table, &ta, &prev_recon)?;
                // The decoder, fed only its own previous output, follows the encoder.
                let (chunk, _) =
                    quantize(kind, &to_bytes(kind, &ta), &to_bytes(kind, &prev_recon), &table)
                        .unwrap();
                prev_decoded = dequantize(kind, &prev_decoded, &chunk, &table).unwrap();
                prop_assert_eq!(from_bytes(kind, &prev_decoded), recon.clone(), "step {}", step);
                prev_recon = recon;
                for x in &mut target {
                    *x = *x * (1.0 + 0.01 * rng.sym()) + 0.001 * rng.sym();
                }
            }
        }
    }

    // ---- lattice coding ----

    /// `±1` (relative, by the target's sign bit) or 0 (absolute): the keyframe base lossy.rs uses.
    fn lattice_base(kind: FloatKind, bound: ErrorBound, ta: &[u64]) -> Vec<u64> {
        ta.iter()
            .map(|&t| match bound {
                ErrorBound::Absolute(_) => 0,
                ErrorBound::Relative(_) => {
                    let negative = (t >> (8 * kind.size() - 1)) & 1 == 1;
                    from_f64(kind, if negative { -1.0 } else { 1.0 })
                }
            })
            .collect()
    }

    /// Decodes one lattice chunk (codes in one stream) as `lossy` does, through the run decoder.
    fn decode_level(
        kind: FloatKind,
        base: &[u8],
        q: &QuantizedChunk,
        fresh: &FreshCodes,
        table: &PowerTable,
        anchored: bool,
    ) -> Vec<u8> {
        let streams = [Codes::from(q.codes.clone())];
        let level = LatticeLevel {
            table,
            top: 0,
            streams: &streams,
            exception_positions: &q.exception_positions,
            exception_values: &q.exception_values,
            fresh,
            anchored,
        };
        let mut out = base.to_vec();
        apply_lattice_deltas(kind, &mut out, &[level], |_, _, _| 0).unwrap();
        out
    }

    /// The bound for coded elements, exact bits for exceptions, and a decoder that agrees.
    fn check_lattice_recon(
        kind: FloatKind,
        bound: ErrorBound,
        ta: &[u64],
        recon: &[u64],
        exceptions: &[u32],
    ) -> Result<(), TestCaseError> {
        let m = mask(kind);
        for (i, (&t, &x)) in ta.iter().zip(recon).enumerate() {
            if exceptions.contains(&(i as u32)) {
                prop_assert_eq!(x & m, t & m, "exception {} not exact", i);
            } else if x & m == t & m {
                // A copy of identical reference bits (NaN included).
            } else {
                prop_assert!(
                    meets_bound(kind, bound, t, x),
                    "element {}: {:e} -> {:e} out of {:?}",
                    i,
                    val(kind, t),
                    val(kind, x),
                    bound
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A lattice keyframe, then a lattice delta with rescued exceptions: every element
        /// within the bound or exact, and the decoder rebuilds the encoder's reconstruction.
        #[test]
        fn lattice_contract(
            kind in kind_strategy(),
            bound in bound_strategy(),
            recipes in prop::collection::vec(recipe(), 0..120),
        ) {
            let table = PowerTable::lattice(bound, 32767).unwrap();
            let (ta, rb): (Vec<u64>, Vec<u64>) =
                recipes.iter().map(|r| materialize(kind, r)).unzip();
            // Keyframe of the references.
            let base = to_bytes(kind, &lattice_base(kind, bound, &rb));
            let (q, recon) =
                quantize_from_bases(kind, &to_bytes(kind, &rb), &base, &table).unwrap();
            let none = FreshCodes::default();
            prop_assert_eq!(&decode_level(kind, &base, &q, &none, &table, true), &recon);
            check_lattice_recon(kind, bound, &rb, &from_bytes(kind, &recon), &q.exception_positions)?;
            // A delta of the targets against that reconstruction.
            let t_bytes = to_bytes(kind, &ta);
            let (mut q, mut delta) = quantize(kind, &t_bytes, &recon, &table).unwrap();
            let fresh = rescue_exceptions(kind, &t_bytes, &mut q, &mut delta, &table).unwrap();
            let decoded = decode_level(kind, &recon, &q, &fresh, &table, false);
            prop_assert_eq!(&decoded, &delta);
            check_lattice_recon(kind, bound, &ta, &from_bytes(kind, &delta), &q.exception_positions)?;
        }
    }

    /// The run decoder refuses a level whose lists do not match its elements: a stream short of
    /// codes, one with codes left over, an exception the codes do not mark, a mixed bound kind.
    #[test]
    fn a_run_refuses_streams_and_lists_that_do_not_fit() {
        let kind = FloatKind::F32;
        let table = PowerTable::lattice(ErrorBound::Relative(0.05), 1000).unwrap();
        let base = to_bytes(kind, &[from_f64(kind, 1.0); 4]);
        let none = FreshCodes::default();
        let run = |streams: &[Vec<i32>], exc: &[u32], vals: &[u8], t: &PowerTable| {
            let streams: Vec<Codes> = streams.iter().cloned().map(Codes::from).collect();
            let level = LatticeLevel {
                table: t,
                top: 0,
                streams: &streams,
                exception_positions: exc,
                exception_values: vals,
                fresh: &none,
                anchored: false,
            };
            let mut out = base.clone();
            apply_lattice_deltas(kind, &mut out, &[level], |_, _, _| 0).map(|_| out)
        };
        assert!(run(&[vec![0, 1, 0, -1]], &[], &[], &table).is_ok());
        let short = run(&[vec![0, 1, 0]], &[], &[], &table).unwrap_err();
        assert!(short.to_string().contains("codes of a stream"), "{short}");
        let long = run(&[vec![0, 1, 0, -1, 2]], &[], &[], &table).unwrap_err();
        assert!(long.to_string().contains("codes of a stream"), "{long}");
        let marked = run(&[vec![0, 1, 0, 0]], &[1], &[0; 4], &table).unwrap_err();
        assert!(
            matches!(
                marked,
                QuantError::ExceptionCodeNotZero {
                    position: 1,
                    code: 1
                }
            ),
            "{marked}"
        );
        let unsorted = run(&[vec![0; 4]], &[3, 1], &[0; 8], &table).unwrap_err();
        assert!(unsorted.to_string().contains("exception #1"), "{unsorted}");
        let abs = PowerTable::lattice(ErrorBound::Absolute(0.5), 1000).unwrap();
        let streams = [Codes::from(vec![0; 4])];
        let level = |t| plain_level(t, &streams, &none);
        let mut out = base.clone();
        let mixed =
            apply_lattice_deltas(kind, &mut out, &[level(&table), level(&abs)], |_, _, _| 0)
                .unwrap_err();
        assert!(mixed.to_string().contains("invalid error bound"), "{mixed}");
    }

    /// A delta level of codes alone: no exceptions, not anchored, class boundary 0.
    fn plain_level<'a>(
        table: &'a PowerTable,
        streams: &'a [Codes],
        fresh: &'a FreshCodes,
    ) -> LatticeLevel<'a> {
        LatticeLevel {
            table,
            top: 0,
            streams,
            exception_positions: &[],
            exception_values: &[],
            fresh,
            anchored: false,
        }
    }

    /// A code past the table's range is refused with its stream and its place in it, in a split
    /// level and in a single stream, wherever it falls in a span.
    #[test]
    fn a_code_past_the_table_names_its_stream_and_place() {
        let kind = FloatKind::F32;
        let table = PowerTable::lattice(ErrorBound::Relative(0.05), 1000).unwrap();
        // Elements alternate between two binades, classes 0 and 1.
        let values: Vec<u64> = (0..600)
            .map(|k| from_f64(kind, if k % 2 == 0 { 1.0 } else { 0.25 }))
            .collect();
        let base = to_bytes(kind, &values);
        let none = FreshCodes::default();
        let run = |streams: Vec<Vec<i32>>| {
            let streams: Vec<Codes> = streams.into_iter().map(Codes::from).collect();
            let level = plain_level(&table, &streams, &none);
            let mut out = base.clone();
            let by_binade = |e: u16, _, _| u8::from(e != 127);
            apply_lattice_deltas(kind, &mut out, &[level], by_binade).unwrap_err()
        };
        for (stream, at, code) in [(1, 280, 1001), (0, 0, -1001), (1, 127, i32::MIN)] {
            let mut streams = vec![vec![3; 300], vec![-2; 300]];
            streams[stream][at] = code;
            let err = run(streams);
            assert!(
                matches!(err, QuantError::StreamCodeOutOfRange { stream: s, at: a, code: c, max_code: 1000 }
                    if (s, a, c) == (stream, at, code)),
                "{err}"
            );
        }
        let mut one = vec![0; 600];
        one[400] = 5000;
        let err = run(vec![one]);
        assert!(
            matches!(
                err,
                QuantError::StreamCodeOutOfRange {
                    stream: 0,
                    at: 400,
                    code: 5000,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// Sign flips and a zero reference are placed on the lattice, not stored exactly; a zero or
    /// non-finite target stays exact.
    #[test]
    fn lattice_rescues_sign_flips_and_zero_references() {
        let kind = FloatKind::F32;
        let bound = ErrorBound::Relative(0.01);
        let table = PowerTable::lattice(bound, 10000).unwrap();
        let b = [0.5, -0.25, 0.0, 1.0, 3.0, f64::NAN];
        let a = [-0.4, 0.3, 0.7, 0.0, f64::INFINITY, 2.0];
        let rb: Vec<u64> = b.iter().map(|&x| from_f64(kind, x)).collect();
        let ta: Vec<u64> = a.iter().map(|&x| from_f64(kind, x)).collect();
        let t_bytes = to_bytes(kind, &ta);
        let (mut q, mut recon) = quantize(kind, &t_bytes, &to_bytes(kind, &rb), &table).unwrap();
        let fresh = rescue_exceptions(kind, &t_bytes, &mut q, &mut recon, &table).unwrap();
        assert_eq!(fresh.positions, vec![0, 1, 2, 5]);
        assert_eq!(fresh.negative, vec![true, false, false, false]);
        assert_eq!(q.exception_positions, vec![3, 4]);
        check_lattice_recon(
            kind,
            bound,
            &ta,
            &from_bytes(kind, &recon),
            &q.exception_positions,
        )
        .unwrap();
    }

    #[test]
    fn lattice_offsets_come_from_square_roots() {
        let eps = 0.05f64;
        let t = PowerTable::lattice(ErrorBound::Relative(eps), 100).unwrap();
        let d = t.offsets();
        assert_eq!(d.len(), LATTICE_SLOTS);
        assert_eq!(d[0], 1.0);
        let r = (1.0 + eps) * (1.0 + eps);
        assert_eq!(d[128], 1.0 / r.sqrt(), "half a step is one square root");
        assert!(
            d.windows(2).all(|w| w[1] < w[0]),
            "offsets step down the grid"
        );
        assert!(d[255] > 1.0 / r);
        let a = PowerTable::lattice(ErrorBound::Absolute(0.5), 100).unwrap();
        assert_eq!(a.offsets()[128], -0.5);
        let slots: std::collections::HashSet<usize> = (0..4096).map(lattice_slot).collect();
        assert!(
            slots.len() > 250,
            "slots spread over the grid: {}",
            slots.len()
        );
    }

    fn mean_log_error(kind: FloatKind, ta: &[u64], recon: &[u8]) -> f64 {
        let r = from_bytes(kind, recon);
        ta.iter()
            .zip(&r)
            .map(|(&t, &x)| (val(kind, x) / val(kind, t)).ln())
            .sum::<f64>()
            / ta.len() as f64
    }

    /// The start-state trap: a layer drifting by a third of a step stays frozen (a coherent bias)
    /// when its grid is centred on exact values, while the lattice moves a share of its weights
    /// so the layer's mean follows; a weight that does not move costs code 0 on the lattice. Half
    /// the layer starts at exactly 1.0 (a BatchNorm scale): its keyframe must spread it over whole
    /// delta cells too.
    #[test]
    fn lattice_tracks_slow_drift_and_keeps_still_weights_free() {
        let kind = FloatKind::F32;
        let eps = 0.05;
        let step = 2.0 * (1.0f64 + eps).ln();
        let mut rng = Rng(7);
        let a0: Vec<u64> = (0..8192)
            .map(|i| {
                let x = if i % 2 == 0 {
                    1.0
                } else {
                    0.5 + rng.sym().abs()
                };
                from_f64(kind, x * if rng.sym() < 0.0 { -1.0 } else { 1.0 })
            })
            .collect();
        let lattice = PowerTable::lattice(ErrorBound::Relative(eps), 1000).unwrap();
        let keyframe = lattice.clone();
        let base = to_bytes(kind, &lattice_base(kind, lattice.bound(), &a0));
        let (_, key) = quantize_from_bases(kind, &to_bytes(kind, &a0), &base, &keyframe).unwrap();
        let key_bias = mean_log_error(kind, &a0, &key) / step;
        assert!(key_bias.abs() < 0.01, "keyframe bias {key_bias} steps");
        let (still, _) = quantize(kind, &to_bytes(kind, &a0), &key, &lattice).unwrap();
        assert!(
            still.codes.iter().all(|&c| c == 0),
            "unmoved weights cost code 0"
        );
        let nearest = PowerTable::new(ErrorBound::Relative(eps), 1000).unwrap();
        for k in 1..=6 {
            // k sixths of a step, as a layer drifts over several snapshots
            let drifted: Vec<u64> = a0
                .iter()
                .map(|&b| from_f64(kind, val(kind, b) * (k as f64 * step / 6.0).exp()))
                .collect();
            let (_, moved) = quantize(kind, &to_bytes(kind, &drifted), &key, &lattice).unwrap();
            let bias = mean_log_error(kind, &drifted, &moved) / step;
            assert!(
                bias.abs() < 0.03,
                "lattice bias {bias} steps after {k}/6 step"
            );
            let ones: Vec<u64> = drifted.iter().step_by(2).copied().collect();
            let moved_ones: Vec<u8> = moved
                .chunks_exact(8)
                .flat_map(|p| p[..4].to_vec())
                .collect();
            let ones_bias = mean_log_error(kind, &ones, &moved_ones) / step;
            assert!(
                ones_bias.abs() < 0.05,
                "equal-valued weights: bias {ones_bias} steps after {k}/6"
            );
            if k == 2 {
                let (_, frozen) = quantize(
                    kind,
                    &to_bytes(kind, &drifted),
                    &to_bytes(kind, &a0),
                    &nearest,
                )
                .unwrap();
                let frozen_bias = mean_log_error(kind, &drifted, &frozen) / step;
                assert!(
                    frozen_bias < -0.3,
                    "exact start freezes the drift: {frozen_bias} steps"
                );
                // Anchored first (as after a lossless parent), the same start tracks it.
                let exact = to_bytes(kind, &a0);
                let (_, anchored) = quantize_from_bases(kind, &exact, &exact, &lattice).unwrap();
                let (_, moved) =
                    quantize(kind, &to_bytes(kind, &drifted), &anchored, &lattice).unwrap();
                let anchored_bias = mean_log_error(kind, &drifted, &moved) / step;
                assert!(
                    anchored_bias.abs() < 0.03,
                    "anchored: {anchored_bias} steps"
                );
            }
        }
    }
}
