//! The codec's element-wise passes four elements at a time (AVX2, and F16C for F16): a
//! delta's first pass ([`super::encode_nearest`]: the fast estimate, then the settling of every
//! element whose bits equal the reference's, whose reference meets the bound, or whose first
//! candidate passes the exact decode-and-check) and the lattice placement of keyframes and
//! anchoring deltas ([`super::from_bases`]). Every lane runs the scalar path's operations in
//! its order, each a correctly rounded IEEE operation or an integer one, and leaves to the
//! scalar path every element whose fast estimate does not decide its candidates, so codes,
//! reconstructions and exceptions are the scalar path's bit for bit
//! (`fast_encoder_equals_element_by_element`,
//! `lanes_place_on_the_lattice_as_the_scalar_path_does`). A checkout's chain apply
//! ([`super::apply_span`]) likewise: widen, one multiply or add by the gathered step, narrow,
//! and a code 0's bits kept (`apply_lanes_match_the_scalar_loop`). F16, BF16 and F32; F64 and
//! CPUs without AVX2 keep the scalar path.

use super::{Elem, FloatKind, Mode, Params};

/// Settles the leading elements of a block that fill whole lanes, as the scalar pass would:
/// codes into `cs`, reconstructions into `os`, the fast estimate of every element into `est`,
/// and pushes `(k, est[k])` onto `slow` for each element it leaves to the candidates after the
/// first. Returns how many leading elements it did (0 where the CPU or the type has no lanes).
#[inline(always)]
pub(super) fn settle<K: Elem, M: Mode, const KEEP_REFERENCE: bool>(
    ta: &[K::Raw],
    rb: &[K::Raw],
    est: &mut [f64],
    cs: &mut [i32],
    os: &mut [K::Raw],
    slow: &mut Vec<(usize, f64)>,
    p: &Params<'_>,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if available(K::KIND) {
        // SAFETY: `available` checked the CPU features the kernel is compiled for.
        return unsafe { x86::settle::<K, M, KEEP_REFERENCE>(ta, rb, est, cs, os, slow, p) };
    }
    let _ = (ta, rb, est, cs, os, slow, p);
    0
}

/// Places the leading elements of a block that fill whole lanes on their lattice from their
/// bases `bs` (slots `slots`), as `lattice_encode_one` would wherever the fast estimate decides
/// the candidates and the first passes the exact check: codes into `cs`, reconstructions into
/// `os`, the others' positions pushed onto `slow`. Returns how many leading elements it did.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn place<K: Elem, M: Mode>(
    ta: &[K::Raw],
    bs: &[K::Raw],
    slots: &[u8],
    cs: &mut [i32],
    os: &mut [K::Raw],
    slow: &mut Vec<usize>,
    p: &Params<'_>,
    offsets: &[f64],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if available(K::KIND) {
        // SAFETY: `available` checked the CPU features the kernel is compiled for.
        return unsafe { x86::place::<K, M>(ta, bs, slots, cs, os, slow, p, offsets) };
    }
    let _ = (ta, bs, slots, cs, os, slow, p, offsets);
    0
}

/// Applies the leading codes of a span that fill whole lanes to their elements (bits in `xs`,
/// codes range-checked against `table`), as [`super::apply_span`]'s scalar loop would. Returns
/// how many leading elements it did.
#[inline(always)]
pub(super) fn apply_span<K: Elem, M: Mode>(xs: &mut [u64], codes: &[i32], table: &[f64]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if available(K::KIND) {
        // SAFETY: `available` checked the CPU features the kernel is compiled for.
        return unsafe { x86::apply_span::<K, M>(xs, codes, table) };
    }
    let _ = (xs, codes, table);
    0
}

/// Whether this CPU runs the lanes for `kind` (the standard library caches the detection).
pub(super) fn available(kind: FloatKind) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // Every CPU with AVX2 has F16C; the kernel is compiled with both.
        kind != FloatKind::F64
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kind;
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::{
        Elem, FloatKind, Mode, Params, ATANH_SERIES, LATTICE_SLOTS, LN_2, LN_FAST_TOLERANCE,
        SQRT_HALF_BITS,
    };
    use std::arch::x86_64::*;

    /// Four elements' bits, one per 32-bit lane.
    #[inline(always)]
    unsafe fn load_bits<K: Elem>(raw: *const K::Raw) -> __m128i {
        match K::KIND {
            FloatKind::F32 => _mm_loadu_si128(raw.cast()),
            _ => _mm_cvtepu16_epi32(_mm_loadl_epi64(raw.cast())),
        }
    }

    /// Stores four elements from their bits (one per 32-bit lane).
    #[inline(always)]
    unsafe fn store_bits<K: Elem>(out: *mut K::Raw, bits: __m128i) {
        match K::KIND {
            FloatKind::F32 => _mm_storeu_si128(out.cast(), bits),
            _ => _mm_storel_epi64(out.cast(), _mm_packus_epi32(bits, bits)),
        }
    }

    /// `Elem::widen` of each lane (exact).
    #[inline(always)]
    unsafe fn widen<K: Elem>(bits: __m128i) -> __m256d {
        let single = match K::KIND {
            FloatKind::F32 => _mm_castsi128_ps(bits),
            FloatKind::BF16 => _mm_castsi128_ps(_mm_slli_epi32::<16>(bits)),
            _ => _mm_cvtph_ps(_mm_packus_epi32(bits, bits)),
        };
        _mm256_cvtps_pd(single)
    }

    /// `Elem::narrow` of each lane: round to nearest even. F32 by the conversion instruction
    /// (what `as f32` compiles to); F16 and BF16 by `round_f64_to_narrow`'s integer steps for
    /// results in the type's normal range, and that function itself for the rare other lanes
    /// (subnormal, overflowing, non-finite).
    #[inline(always)]
    unsafe fn narrow<K: Elem>(x: __m256d) -> __m128i {
        let (exp_bits, man_bits) = match K::KIND {
            FloatKind::F32 => return _mm_castps_si128(_mm256_cvtpd_ps(x)),
            FloatKind::BF16 => (8i64, 7i64),
            _ => (5, 10),
        };
        let bias = (1i64 << (exp_bits - 1)) - 1;
        let bits = _mm256_castpd_si256(x);
        let abs = _mm256_and_si256(bits, _mm256_set1_epi64x(i64::MAX));
        // Normal in the target: its biased exponent `e64 - 1023 + bias` in 1..=2 * bias.
        let low = _mm256_set1_epi64x((1024 - bias) << 52);
        let high = _mm256_set1_epi64x((1024 + bias) << 52);
        let normal =
            _mm256_andnot_si256(_mm256_cmpgt_epi64(low, abs), _mm256_cmpgt_epi64(high, abs));
        // Re-biased in place, then rounded: `round_f64_to_narrow`'s normal case.
        let shift = 52 - man_bits;
        let val = _mm256_sub_epi64(abs, _mm256_set1_epi64x((1023 - bias) << 52));
        let count = _mm_cvtsi64_si128(shift);
        let odd = _mm256_and_si256(_mm256_srl_epi64(val, count), _mm256_set1_epi64x(1));
        let half = _mm256_set1_epi64x((1i64 << (shift - 1)) - 1);
        let rounded = _mm256_srl_epi64(_mm256_add_epi64(_mm256_add_epi64(val, half), odd), count);
        let sign = _mm256_and_si256(_mm256_srli_epi64::<48>(bits), _mm256_set1_epi64x(0x8000));
        let narrow = pack_low_halves(_mm256_or_si256(rounded, sign));
        let others = !_mm256_movemask_pd(_mm256_castsi256_pd(normal)) & 0b1111;
        if others == 0 {
            return narrow;
        }
        let mut lanes = [0u32; 4];
        let mut values = [0f64; 4];
        _mm_storeu_si128(lanes.as_mut_ptr().cast(), narrow);
        _mm256_storeu_pd(values.as_mut_ptr(), x);
        for (j, (lane, &v)) in lanes.iter_mut().zip(&values).enumerate() {
            if others & (1 << j) != 0 {
                *lane = K::narrow(v) as u32;
            }
        }
        _mm_loadu_si128(lanes.as_ptr().cast())
    }

    /// [`super::apply_span`]: four elements a step, their bits the low halves of `xs`' 64-bit
    /// words, the table's entries gathered by code.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn apply_span<K: Elem, M: Mode>(
        xs: &mut [u64],
        codes: &[i32],
        table: &[f64],
    ) -> usize {
        let whole = xs.len().min(codes.len()) / 4 * 4;
        let off = _mm_set1_epi32((table.len() / 2) as i32);
        let (x, c) = (xs.as_mut_ptr(), codes.as_ptr());
        for k in (0..whole).step_by(4) {
            let bits = pack_low_halves(_mm256_loadu_si256(x.add(k).cast()));
            let m = _mm_loadu_si128(c.add(k).cast());
            // In the table: the caller checked every code's range.
            let t = _mm256_i32gather_pd::<8>(table.as_ptr(), _mm_add_epi32(m, off));
            let y = narrow::<K>(apply::<M>(widen::<K>(bits), t));
            let keep = _mm_cmpeq_epi32(m, _mm_setzero_si128());
            let out = _mm_blendv_epi8(y, bits, keep);
            _mm256_storeu_si256(x.add(k).cast(), _mm256_cvtepu32_epi64(out));
        }
        whole
    }

    /// The low 32 bits of each 64-bit lane, in order.
    #[inline(always)]
    unsafe fn pack_low_halves(x: __m256i) -> __m128i {
        _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
            x,
            _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6),
        ))
    }

    /// A 64-bit lane mask from a 32-bit one (sign extension keeps all ones or zeros).
    #[inline(always)]
    unsafe fn widen_mask(m: __m128i) -> __m256d {
        _mm256_castsi256_pd(_mm256_cvtepi32_epi64(m))
    }

    /// A 32-bit lane mask from a 64-bit one.
    #[inline(always)]
    unsafe fn narrow_mask(m: __m256d) -> __m128i {
        pack_low_halves(_mm256_castpd_si256(m))
    }

    #[inline(always)]
    unsafe fn abs(x: __m256d) -> __m256d {
        _mm256_andnot_pd(_mm256_set1_pd(-0.0), x)
    }

    /// `Mode::estimate_fast` per lane: `ln_fast(a / b) * inv_step` where the ratio is a positive
    /// normal number, NaN elsewhere (relative); `(a - b) * inv_step` for finite operands, NaN
    /// elsewhere (absolute). The operations of `ln_fast` in its order.
    #[inline(always)]
    unsafe fn estimate<M: Mode>(a: __m256d, b: __m256d, inv_step: f64) -> __m256d {
        let pd = _mm256_set1_pd;
        let nan = pd(f64::NAN);
        if M::ZERO_TARGET_OK {
            let finite = _mm256_and_pd(
                _mm256_cmp_pd::<_CMP_LT_OQ>(abs(a), pd(f64::INFINITY)),
                _mm256_cmp_pd::<_CMP_LT_OQ>(abs(b), pd(f64::INFINITY)),
            );
            let est = _mm256_mul_pd(_mm256_sub_pd(a, b), pd(inv_step));
            return _mm256_blendv_pd(nan, est, finite);
        }
        let r = _mm256_div_pd(a, b);
        let bits = _mm256_castpd_si256(r);
        let offset = _mm256_set1_epi64x((0x400u64 << 52).wrapping_sub(SQRT_HALF_BITS) as i64);
        // k + 0x400 in the low bits of each lane.
        let kq = _mm256_srli_epi64::<52>(_mm256_add_epi64(bits, offset));
        let k = _mm256_sub_epi64(kq, _mm256_set1_epi64x(0x400));
        let m = _mm256_castsi256_pd(_mm256_sub_epi64(bits, _mm256_slli_epi64::<52>(k)));
        let s = _mm256_div_pd(_mm256_sub_pd(m, pd(1.0)), _mm256_add_pd(m, pd(1.0)));
        let z = _mm256_mul_pd(s, s);
        let mut poly = pd(ATANH_SERIES[0]);
        for &c in &ATANH_SERIES[1..] {
            poly = _mm256_add_pd(pd(c), _mm256_mul_pd(z, poly));
        }
        let kf = _mm256_sub_pd(_mm256_cvtepi32_pd(pack_low_halves(kq)), pd(1024.0));
        let ln = _mm256_add_pd(
            _mm256_mul_pd(_mm256_mul_pd(pd(2.0), s), poly),
            _mm256_mul_pd(kf, pd(LN_2)),
        );
        let est = _mm256_mul_pd(ln, pd(inv_step));
        let normal = _mm256_and_pd(
            _mm256_cmp_pd::<_CMP_GE_OQ>(r, pd(f64::MIN_POSITIVE)),
            _mm256_cmp_pd::<_CMP_LE_OQ>(r, pd(f64::MAX)),
        );
        _mm256_blendv_pd(nan, est, normal)
    }

    /// `Mode::estimate_tolerance` per lane.
    #[inline(always)]
    unsafe fn tolerance<M: Mode>(est: __m256d, inv_step: f64) -> __m256d {
        if M::ZERO_TARGET_OK {
            return _mm256_setzero_pd();
        }
        _mm256_add_pd(
            _mm256_set1_pd(inv_step * LN_FAST_TOLERANCE),
            _mm256_mul_pd(
                _mm256_mul_pd(abs(est), _mm256_set1_pd(f64::EPSILON)),
                _mm256_set1_pd(16.0),
            ),
        )
    }

    /// `Mode::apply` per lane.
    #[inline(always)]
    unsafe fn apply<M: Mode>(b: __m256d, t: __m256d) -> __m256d {
        if M::ZERO_TARGET_OK {
            _mm256_add_pd(b, t)
        } else {
            _mm256_mul_pd(b, t)
        }
    }

    /// `Mode::within` per lane (never F64, so never the scaled relative check).
    #[inline(always)]
    unsafe fn within<M: Mode>(x: __m256d, a: __m256d, eps_check: f64) -> __m256d {
        let limit = if M::ZERO_TARGET_OK {
            _mm256_set1_pd(eps_check)
        } else {
            _mm256_mul_pd(_mm256_set1_pd(eps_check), abs(a))
        };
        _mm256_cmp_pd::<_CMP_LE_OQ>(abs(_mm256_sub_pd(x, a)), limit)
    }

    /// `narrow` of four values, for the tests.
    #[cfg(test)]
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn narrow_four<K: Elem>(x: [f64; 4]) -> [u32; 4] {
        let mut out = [0u32; 4];
        _mm_storeu_si128(
            out.as_mut_ptr().cast(),
            narrow::<K>(_mm256_loadu_pd(x.as_ptr())),
        );
        out
    }

    /// `widen` of four elements' bits, for the tests.
    #[cfg(test)]
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn widen_four<K: Elem>(bits: [u32; 4]) -> [f64; 4] {
        let mut out = [0f64; 4];
        _mm256_storeu_pd(
            out.as_mut_ptr(),
            widen::<K>(_mm_loadu_si128(bits.as_ptr().cast())),
        );
        out
    }

    /// `within` of four lanes, for the tests.
    #[cfg(test)]
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn within_four<M: Mode>(
        x: [f64; 4],
        a: [f64; 4],
        eps_check: f64,
    ) -> [bool; 4] {
        let m = _mm256_movemask_pd(within::<M>(
            _mm256_loadu_pd(x.as_ptr()),
            _mm256_loadu_pd(a.as_ptr()),
            eps_check,
        ));
        std::array::from_fn(|j| m & (1 << j) != 0)
    }

    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn settle<K: Elem, M: Mode, const KEEP_REFERENCE: bool>(
        ta: &[K::Raw],
        rb: &[K::Raw],
        est: &mut [f64],
        cs: &mut [i32],
        os: &mut [K::Raw],
        slow: &mut Vec<(usize, f64)>,
        p: &Params<'_>,
    ) -> usize {
        assert_ne!(K::KIND, FloatKind::F64, "no lanes for F64");
        let n = ta.len() / 4 * 4;
        assert!(rb.len() >= n && est.len() >= n && cs.len() >= n && os.len() >= n);
        // Every index the gather reads is `off + m` with `|m| <= max_code`, or `off`.
        assert_eq!(p.table.len(), 2 * p.max_code as usize + 1);
        let pd = _mm256_set1_pd;
        let off = _mm_set1_epi32(p.max_code as i32);
        let max_code = _mm_set1_epi32(p.max_code as i32);
        // Two loops, each with a dependency chain short enough for several iterations to overlap.
        for k in (0..n).step_by(4) {
            // SAFETY (all pointer accesses): `k + 4 <= n`, within every slice (asserted).
            let a = widen::<K>(load_bits::<K>(ta.as_ptr().add(k)));
            let b = widen::<K>(load_bits::<K>(rb.as_ptr().add(k)));
            _mm256_storeu_pd(est.as_mut_ptr().add(k), estimate::<M>(a, b, p.inv_step));
        }
        for k in (0..n).step_by(4) {
            let a_bits = load_bits::<K>(ta.as_ptr().add(k));
            let b_bits = load_bits::<K>(rb.as_ptr().add(k));
            let (a, b) = (widen::<K>(a_bits), widen::<K>(b_bits));
            // Code 0 whatever the estimate: identical bits, or a reference that meets the bound.
            let same = _mm_cmpeq_epi32(a_bits, b_bits);
            let mut keep = widen_mask(same);
            if KEEP_REFERENCE {
                let mut usable_a = _mm256_cmp_pd::<_CMP_LT_OQ>(abs(a), pd(f64::INFINITY));
                if !M::ZERO_TARGET_OK {
                    usable_a = _mm256_and_pd(
                        usable_a,
                        _mm256_cmp_pd::<_CMP_NEQ_UQ>(a, _mm256_setzero_pd()),
                    );
                }
                keep = _mm256_or_pd(
                    keep,
                    _mm256_and_pd(usable_a, within::<M>(b, a, p.eps_check)),
                );
            }
            let e = _mm256_loadu_pd(est.as_ptr().add(k));
            // The first candidate `round(e)`, when the estimate is far enough from a
            // half-integer to round as the exact one does.
            let in_range = _mm256_cmp_pd::<_CMP_LT_OQ>(abs(e), pd((1u32 << 30) as f64));
            let e = _mm256_and_pd(e, in_range);
            let (m0, frac) = round_small(e);
            let clear = _mm256_cmp_pd::<_CMP_GT_OQ>(
                abs(_mm256_sub_pd(abs(frac), pd(0.5))),
                tolerance::<M>(e, p.inv_step),
            );
            let beyond = _mm_cmpgt_epi32(_mm_abs_epi32(m0), max_code);
            let usable = _mm_andnot_si128(beyond, narrow_mask(_mm256_and_pd(in_range, clear)));
            let index = _mm_add_epi32(off, _mm_and_si128(m0, usable));
            let step = _mm256_i32gather_pd::<8>(p.table.as_ptr(), index);
            let x = narrow::<K>(apply::<M>(b, step));
            let x = _mm_blendv_epi8(x, b_bits, _mm_cmpeq_epi32(m0, _mm_setzero_si128()));
            let passes = _mm256_and_pd(
                widen_mask(usable),
                within::<M>(widen::<K>(x), a, p.eps_check),
            );
            let keep32 = narrow_mask(keep);
            _mm_storeu_si128(cs.as_mut_ptr().add(k).cast(), _mm_andnot_si128(keep32, m0));
            store_bits::<K>(os.as_mut_ptr().add(k), _mm_blendv_epi8(x, b_bits, keep32));
            let settled = _mm256_movemask_pd(_mm256_or_pd(keep, passes));
            if settled != 0b1111 {
                for j in 0..4 {
                    if settled & (1 << j) == 0 {
                        slow.push((k + j, est[k + j]));
                    }
                }
            }
        }
        n
    }

    /// `round(e)` of each lane (halves away from zero) for `|e| < 2^30`, as 32-bit lanes, and
    /// `e - trunc(e)`.
    #[inline(always)]
    unsafe fn round_small(e: __m256d) -> (__m128i, __m256d) {
        let pd = _mm256_set1_pd;
        let t = _mm256_cvttpd_epi32(e);
        let frac = _mm256_sub_pd(e, _mm256_cvtepi32_pd(t));
        let up = narrow_mask(_mm256_cmp_pd::<_CMP_GE_OQ>(frac, pd(0.5)));
        let down = narrow_mask(_mm256_cmp_pd::<_CMP_LE_OQ>(frac, pd(-0.5)));
        // Masks are -1 where set: `t + up - down` is `t - up_mask + down_mask`.
        (_mm_add_epi32(_mm_sub_epi32(t, up), down), frac)
    }

    /// `fast_decides` of each lane.
    #[inline(always)]
    unsafe fn decides<M: Mode>(e: __m256d, inv_step: f64) -> __m256d {
        let pd = _mm256_set1_pd;
        let tol = tolerance::<M>(e, inv_step);
        let in_range = _mm256_cmp_pd::<_CMP_LT_OQ>(abs(e), pd((1u32 << 30) as f64));
        let frac = abs(_mm256_sub_pd(e, _mm256_cvtepi32_pd(_mm256_cvttpd_epi32(e))));
        _mm256_and_pd(
            _mm256_and_pd(in_range, _mm256_cmp_pd::<_CMP_GT_OQ>(frac, tol)),
            _mm256_and_pd(
                _mm256_cmp_pd::<_CMP_GT_OQ>(abs(_mm256_sub_pd(frac, pd(0.5))), tol),
                _mm256_cmp_pd::<_CMP_GT_OQ>(_mm256_sub_pd(pd(1.0), frac), tol),
            ),
        )
    }

    /// `decides` of four estimates, for the tests.
    #[cfg(test)]
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn decides_four<M: Mode>(e: [f64; 4], inv_step: f64) -> [bool; 4] {
        let m = _mm256_movemask_pd(decides::<M>(_mm256_loadu_pd(e.as_ptr()), inv_step));
        std::array::from_fn(|j| m & (1 << j) != 0)
    }

    #[target_feature(enable = "avx2,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn place<K: Elem, M: Mode>(
        ta: &[K::Raw],
        bs: &[K::Raw],
        slots: &[u8],
        cs: &mut [i32],
        os: &mut [K::Raw],
        slow: &mut Vec<usize>,
        p: &Params<'_>,
        offsets: &[f64],
    ) -> usize {
        assert_ne!(K::KIND, FloatKind::F64, "no lanes for F64");
        let n = ta.len() / 4 * 4;
        assert!(bs.len() >= n && slots.len() >= n && cs.len() >= n && os.len() >= n);
        // The gathers read `off + m` with `|m| <= max_code` (or `off`), and slot `j < 256`.
        assert_eq!(p.table.len(), 2 * p.max_code as usize + 1);
        assert_eq!(offsets.len(), LATTICE_SLOTS);
        let pd = _mm256_set1_pd;
        let off = _mm_set1_epi32(p.max_code as i32);
        let max_code = _mm_set1_epi32(p.max_code as i32);
        for k in (0..n).step_by(4) {
            // SAFETY (all pointer accesses): `k + 4 <= n`, within every slice (asserted).
            let a_bits = load_bits::<K>(ta.as_ptr().add(k));
            let (a, b) = (
                widen::<K>(a_bits),
                widen::<K>(load_bits::<K>(bs.as_ptr().add(k))),
            );
            let slot = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(
                slots.as_ptr().add(k).cast::<i32>().read_unaligned(),
            ));
            // `j / 256`: exact, as the scalar division.
            let offset = _mm256_mul_pd(_mm256_cvtepi32_pd(slot), pd(1.0 / LATTICE_SLOTS as f64));
            let e = _mm256_add_pd(estimate::<M>(a, b, p.inv_step), offset);
            let decided = decides::<M>(e, p.inv_step);
            let (m0, _) = round_small(_mm256_and_pd(e, decided));
            let mut usable = _mm256_and_pd(
                decided,
                _mm256_cmp_pd::<_CMP_LT_OQ>(abs(a), pd(f64::INFINITY)),
            );
            if !M::ZERO_TARGET_OK {
                usable =
                    _mm256_and_pd(usable, _mm256_cmp_pd::<_CMP_NEQ_UQ>(a, _mm256_setzero_pd()));
            }
            let beyond = _mm_cmpgt_epi32(_mm_abs_epi32(m0), max_code);
            let usable = _mm_andnot_si128(beyond, narrow_mask(usable));
            let index = _mm_add_epi32(off, _mm_and_si128(m0, usable));
            let step = _mm256_i32gather_pd::<8>(p.table.as_ptr(), index);
            let grid = _mm256_i32gather_pd::<8>(offsets.as_ptr(), slot);
            let x = narrow::<K>(apply::<M>(apply::<M>(b, step), grid));
            let passes = _mm256_and_pd(
                widen_mask(usable),
                within::<M>(widen::<K>(x), a, p.eps_check),
            );
            _mm_storeu_si128(cs.as_mut_ptr().add(k).cast(), m0);
            store_bits::<K>(os.as_mut_ptr().add(k), x);
            let placed = _mm256_movemask_pd(passes);
            if placed != 0b1111 {
                slow.extend((0..4).filter(|j| placed & (1 << j) == 0).map(|j| k + j));
            }
        }
        n
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::{fast_decides, Abs, Bf16Elem, Elem, F16Elem, F32Elem, FloatKind, Mode, Rel};
    use super::{available, x86};

    /// Runs `f` on the lanes of every whole four of `xs`, against `scalar` element by element.
    fn compare_fours<T: Copy + Default, R: PartialEq + std::fmt::Debug>(
        xs: &[T],
        lanes: impl Fn([T; 4]) -> [R; 4],
        scalar: impl Fn(T) -> R,
    ) {
        for four in xs.chunks_exact(4) {
            let four: [T; 4] = four.try_into().unwrap();
            assert_eq!(lanes(four), four.map(&scalar));
        }
    }

    /// Every element value of a 16-bit type, the midpoints between neighbours (the ties of its
    /// rounding) and the `f64` values either side of them; for F32 a sample of the same.
    fn rounding_cases<K: Elem>() -> Vec<f64> {
        let patterns: Vec<u64> = match K::KIND {
            FloatKind::F32 => (0..1u64 << 32).step_by(65_521).collect(),
            _ => (0..1u64 << 16).collect(),
        };
        let mut xs = vec![
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
            1e300,
            -1e-300,
            5e-324,
            0.0,
        ];
        for &bits in &patterns {
            let (x, next) = (K::widen(bits), K::widen(bits + 1));
            xs.push(x);
            if x.is_finite() && next.is_finite() {
                let tie = x + (next - x) / 2.0;
                xs.extend([tie, tie.next_down(), tie.next_up()]);
            }
        }
        // Past the largest finite value by half its step (infinity) and a little less (not),
        // and values a binade and more beyond it.
        let largest_bits = u64::from(K::EXP_MAX - 1) << K::EXP_SHIFT | ((1 << K::EXP_SHIFT) - 1);
        let largest = K::widen(largest_bits);
        let half_step = (largest - K::widen(largest_bits - 1)) / 2.0;
        for x in [
            largest + half_step,
            (largest + half_step).next_down(),
            largest * 1.5,
            largest * 2.0,
            largest * 4.0,
        ] {
            xs.extend([x, -x]);
        }
        xs.resize(xs.len().div_ceil(4) * 4, 1.0);
        xs
    }

    fn narrow_matches<K: Elem>() {
        if !available(K::KIND) {
            crate::report_skip(
                "codec::logquant::lanes::tests",
                "no AVX2 and F16C on this CPU",
            );
            return;
        }
        let xs = rounding_cases::<K>();
        // SAFETY: `available` checked the features.
        compare_fours(
            &xs,
            |x| unsafe { x86::narrow_four::<K>(x) },
            |x| K::narrow(x) as u32,
        );
        let bits: Vec<u32> = xs.iter().map(|&x| K::narrow(x) as u32).collect();
        let widen = |b: [u32; 4]| unsafe { x86::widen_four::<K>(b) }.map(f64::to_bits);
        compare_fours(&bits, widen, |b| K::widen(u64::from(b)).to_bits());
    }

    fn apply_matches<K: Elem, M: Mode>() {
        if !available(K::KIND) {
            crate::report_skip(
                "codec::logquant::lanes::tests",
                "no AVX2 and F16C on this CPU",
            );
            return;
        }
        // Steps as a table holds them (both signs under an absolute bound), and values past
        // every end: products and sums that overflow, fall subnormal, meet infinities. (Never a
        // NaN: a table has none, and which of two NaN operands a product keeps is the
        // compiler's choice of operand order.)
        let max_code = 300i32;
        let mut table: Vec<f64> = (-max_code..=max_code)
            .map(|code| {
                if M::ZERO_TARGET_OK {
                    f64::from(code) * 1e-3
                } else {
                    (f64::from(code) * 0.05).exp()
                }
            })
            .collect();
        for (j, t) in [f64::INFINITY, 0.0, 1e-30, 1e30, -1e300]
            .into_iter()
            .enumerate()
        {
            table[3 + 97 * j] = t;
        }
        let cases = rounding_cases::<K>();
        let mut xs: Vec<u64> = cases.iter().map(|&x| K::narrow(x)).collect();
        let bits = 8 * std::mem::size_of::<K::Raw>();
        xs.extend((0..1u64 << 16).map(|k| (k * 40_503) & ((1 << bits) - 1)));
        // Every code, and zero every few elements.
        let codes: Vec<i32> = (0..xs.len() as i32)
            .map(|k| {
                if k % 7 == 0 {
                    0
                } else {
                    (k * 131) % (2 * max_code + 1) - max_code
                }
            })
            .collect();
        let scalar: Vec<u64> = xs
            .iter()
            .zip(&codes)
            .map(|(&x, &m)| {
                let y = K::narrow(M::apply(K::widen(x), table[(m + max_code) as usize]));
                if m != 0 {
                    y
                } else {
                    x
                }
            })
            .collect();
        let mut lanes = xs.clone();
        // SAFETY: `available` checked the features; every code indexes the table.
        let done = unsafe { x86::apply_span::<K, M>(&mut lanes, &codes, &table) };
        assert_eq!(done, xs.len() / 4 * 4);
        for (k, (l, s)) in lanes.iter().zip(&scalar).take(done).enumerate() {
            assert_eq!(l, s, "element {k}: bits {:#x}, code {}", xs[k], codes[k]);
        }
    }

    /// The lanes apply codes as the scalar loop does, bit for bit, on every kind of value.
    #[test]
    fn apply_lanes_match_the_scalar_loop() {
        apply_matches::<F16Elem, Rel>();
        apply_matches::<F16Elem, Abs>();
        apply_matches::<Bf16Elem, Rel>();
        apply_matches::<Bf16Elem, Abs>();
        apply_matches::<F32Elem, Rel>();
        apply_matches::<F32Elem, Abs>();
    }

    /// The lanes round every value as `Elem::narrow` does (ties, both ends of the normal range,
    /// subnormal results, overflow, non-finite values) and widen as `Elem::widen`.
    #[test]
    fn narrow_and_widen_lanes_match_the_scalar_ones() {
        narrow_matches::<F16Elem>();
        narrow_matches::<Bf16Elem>();
        narrow_matches::<F32Elem>();
    }

    fn within_matches<K: Elem, M: Mode>() {
        if !available(K::KIND) {
            crate::report_skip(
                "codec::logquant::lanes::tests",
                "no AVX2 and F16C on this CPU",
            );
            return;
        }
        let mut cases = Vec::new();
        for k in -20..20 {
            let a = 2f64.powi(k) * 1.5;
            let pow = 2f64.powi(k);
            for d in [1, 3, 7, 100] {
                let x = a + pow * f64::from(d) / 1024.0;
                // `eps * |a|` equal to `|x - a|`: the bound itself, which the check accepts.
                let eps = if M::ZERO_TARGET_OK {
                    (x - a).abs()
                } else {
                    (x - a).abs() / a.abs()
                };
                for e in [eps, eps.next_up(), eps.next_down()] {
                    cases.push((x, a, e));
                    cases.push((-x, -a, e));
                    cases.push((x, -a, e));
                }
            }
            cases.push((f64::NAN, a, 0.5));
            cases.push((a, f64::INFINITY, 0.5));
        }
        for chunk in cases.chunks_exact(4) {
            let x = std::array::from_fn(|j| chunk[j].0);
            let a = std::array::from_fn(|j| chunk[j].1);
            for e in chunk.iter().map(|c| c.2) {
                // SAFETY: `available` checked the features.
                let lanes = unsafe { x86::within_four::<M>(x, a, e) };
                let scalar = std::array::from_fn(|j| M::within::<K>(x[j], a[j], e));
                assert_eq!(lanes, scalar, "{x:?} {a:?} {e}");
            }
        }
    }

    /// The lanes decide where `fast_decides` does: estimates at, within and past their tolerance
    /// of half-integers and integers, out of range and NaN.
    #[test]
    fn decides_lanes_match_the_scalar_rule() {
        if !available(FloatKind::F32) {
            crate::report_skip(
                "codec::logquant::lanes::tests",
                "no AVX2 and F16C on this CPU",
            );
            return;
        }
        for inv_step in [0.7, 50.25, 5000.0] {
            let tol = Rel::estimate_tolerance(100.0, inv_step);
            let mut es = vec![f64::NAN, f64::INFINITY, 2e9, -2e9, 1.5e9, 0.0];
            for k in [-1000.0, -3.0, 0.0, 1.0, 77.0, 1e6] {
                for at in [k, k + 0.5, k - 0.5] {
                    for d in [0.0, tol * 0.5, tol, tol * 1.01, tol * 2.0, 1e-3, 0.2] {
                        es.extend([at + d, at - d]);
                    }
                }
            }
            es.resize(es.len().div_ceil(4) * 4, 0.25);
            // SAFETY: `available` checked the features.
            compare_fours(
                &es,
                |e| unsafe { x86::decides_four::<Rel>(e, inv_step) },
                |e| fast_decides::<Rel>(e, inv_step),
            );
            compare_fours(
                &es,
                |e| unsafe { x86::decides_four::<Abs>(e, inv_step) },
                |e| fast_decides::<Abs>(e, inv_step),
            );
        }
    }

    /// The lanes' bound check takes what the scalar one takes, the bound itself included.
    #[test]
    fn within_lanes_match_the_scalar_check() {
        within_matches::<F32Elem, Rel>();
        within_matches::<F32Elem, Abs>();
        within_matches::<Bf16Elem, Rel>();
    }
}
