//! The encoder parameters of a [`PowerTable`], recovered from its public parts.
//!
//! `PowerTable` keeps `eps_check`, `inv_step` and `dither` private. The kernels need them
//! bit-for-bit, and both constructors make them functions of public data:
//!
//! * `eps_check = eps * CHECK_MARGIN` with `eps` from [`PowerTable::bound`] (both constructors);
//! * relative: `inv_step = 1 / ln(r)` where `r = values[max_code + 1]` exactly (`T[1] = 1.0 * r`);
//!   absolute: `inv_step = 1 / two_eps` where `two_eps = values[max_code + 1]` exactly
//!   (`T[1] = two_eps * 1.0`);
//! * `dither`: `PowerTable::new` has `T[1] = (1 + eps)^2` (relative) or `2 eps` (absolute);
//!   `PowerTable::dithered` builds on the half step, so `T[1]` is `(1 + (sqrt(1 + eps) - 1))^2`
//!   or `eps`. A table matching neither is refused rather than guessed.
//!
//! `tests::params_match_private_fields` checks all three against the private fields (through
//! `Debug`) for both constructors, so a change to `PowerTable` cannot silently break parity.

use crate::codec::logquant::{ErrorBound, PowerTable};

/// `1 - 2^-50`, as `CHECK_MARGIN` in logquant.rs.
pub(crate) const CHECK_MARGIN: f64 = 1.0 - 1.0 / (1u64 << 50) as f64;

/// What the quantize kernels take besides the table values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EncoderParams {
    pub relative: bool,
    pub max_code: u32,
    pub inv_step: f64,
    pub eps_check: f64,
    pub dither: bool,
}

impl EncoderParams {
    /// Recovers the parameters; `None` when the table is not one `PowerTable::new` or
    /// `PowerTable::dithered` builds.
    pub(crate) fn of(table: &PowerTable) -> Option<EncoderParams> {
        let n = table.max_code() as usize;
        let t1 = *table.values().get(n + 1)?;
        let (relative, eps) = match table.bound() {
            ErrorBound::Relative(e) => (true, e),
            ErrorBound::Absolute(e) => (false, e),
        };
        let (nearest_t1, dither_t1) = if relative {
            let s = 1.0 + eps;
            let step = (1.0 + eps).sqrt() - 1.0;
            let sd = 1.0 + step;
            (s * s, sd * sd)
        } else {
            (2.0 * eps, 2.0 * (eps / 2.0))
        };
        let dither = if t1.to_bits() == nearest_t1.to_bits() {
            false
        } else if t1.to_bits() == dither_t1.to_bits() {
            true
        } else {
            return None;
        };
        let inv_step = if relative { 1.0 / t1.ln() } else { 1.0 / t1 };
        Some(EncoderParams {
            relative,
            max_code: table.max_code(),
            inv_step,
            eps_check: eps * CHECK_MARGIN,
            dither,
        })
    }
}
