//! Per-block masks of residual codes: one bit per code, for the packers' block loops (a zero,
//! small and large code alternate unpredictably, so the packers branch per block, not per code).

use super::pack::{Code, BIT_LEVELS};

/// Codes per block: one bit of a `u64` each.
pub(crate) const BLOCK: usize = 64;

/// Masks of one block of at most [`BLOCK`] codes (bit `i` for code `i`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockMasks {
    /// The negative codes.
    pub(crate) neg: u64,
    /// `above[k]`: the codes with `|code| > k` (`above[0]`: the nonzero ones).
    pub(crate) above: [u64; BIT_LEVELS + 1],
}

/// [`BlockMasks`] code by code, for any code type.
pub(crate) fn masks_scalar<C: Code>(block: &[C]) -> BlockMasks {
    let mut out = BlockMasks::default();
    for (i, c) in block.iter().enumerate() {
        let c = c.get();
        let m = c.unsigned_abs();
        out.neg |= u64::from(c < 0) << i;
        for (k, mask) in out.above.iter_mut().enumerate() {
            *mask |= u64::from(m > k as u64) << i;
        }
    }
    out
}

/// [`BlockMasks`] of one-byte codes (what U8 frames code): 16 at a time with SSE2 compares
/// (part of every x86_64 CPU) where the block is whole.
pub(crate) fn masks_i8(block: &[i8]) -> BlockMasks {
    #[cfg(target_arch = "x86_64")]
    if let Ok(block) = <&[i8; BLOCK]>::try_from(block) {
        // SAFETY: SSE2 is part of every x86_64 CPU.
        return unsafe { sse2::masks(block) };
    }
    masks_scalar(block)
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::{BlockMasks, BLOCK};
    use std::arch::x86_64::*;

    #[target_feature(enable = "sse2")]
    pub(super) fn masks(block: &[i8; BLOCK]) -> BlockMasks {
        let mut out = BlockMasks::default();
        for q in 0..BLOCK / 16 {
            // SAFETY: bytes 16q..16q + 16 lie within the 64-byte block.
            let v = unsafe { _mm_loadu_si128(block.as_ptr().add(16 * q).cast()) };
            let bits = |m: __m128i| u64::from(_mm_movemask_epi8(m) as u16) << (16 * q);
            // The sign bit of each byte.
            out.neg |= bits(v);
            for (k, mask) in out.above.iter_mut().enumerate() {
                // |c| > k: c > k or c < -k (-128 included: it is below every -k).
                let k = k as i8;
                let above = _mm_or_si128(
                    _mm_cmpgt_epi8(v, _mm_set1_epi8(k)),
                    _mm_cmpgt_epi8(_mm_set1_epi8(-k), v),
                );
                *mask |= bits(above);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn i8_masks_match_scalar(codes in prop::collection::vec(
            prop_oneof![Just(0i8), -6i8..7, any::<i8>(), Just(i8::MIN), Just(i8::MAX)],
            0..=BLOCK,
        )) {
            prop_assert_eq!(masks_i8(&codes), masks_scalar(&codes));
        }
    }
}
