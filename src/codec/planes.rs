//! Byte planes: element bytes regrouped so all byte-0s come first, then all byte-1s, and so on.
//! Exponent bytes of floats are nearly constant and compress well once apart from the noisy
//! mantissa bytes.

/// Splits `data` (a whole number of `unit`-byte elements) into `unit` planes, plane-major.
pub fn split(data: &[u8], unit: usize) -> Vec<u8> {
    debug_assert_eq!(data.len() % unit, 0);
    if unit == 1 {
        return data.to_vec();
    }
    let n = data.len() / unit;
    let mut out = vec![0u8; data.len()];
    match unit {
        2 => split_fixed::<2>(data, &mut out, n),
        4 => split_fixed::<4>(data, &mut out, n),
        8 => split_fixed::<8>(data, &mut out, n),
        _ => {
            for (i, elem) in data.chunks_exact(unit).enumerate() {
                for (b, &byte) in elem.iter().enumerate() {
                    out[b * n + i] = byte;
                }
            }
        }
    }
    out
}

fn split_fixed<const U: usize>(data: &[u8], out: &mut [u8], n: usize) {
    let (planes, _) = out.split_at_mut(U * n);
    let mut slices: [&mut [u8]; U] = split_into(planes, n);
    let done = split_blocks(data, &mut slices);
    for (i, elem) in data.chunks_exact(U).enumerate().skip(done) {
        for b in 0..U {
            slices[b][i] = elem[b];
        }
    }
}

/// Splits whole blocks of elements: 64 at a time with AVX-512 where the CPU has it (2 and 4
/// bytes), then 16 at a time with SSE2 (part of every x86_64 CPU); returns the elements done.
#[cfg(target_arch = "x86_64")]
fn split_blocks<const U: usize>(data: &[u8], planes: &mut [&mut [u8]; U]) -> usize {
    let wide = if matches!(U, 2 | 4) && avx512::available() {
        // SAFETY: `available` checked the CPU features.
        unsafe { avx512::split_blocks(data, planes) }
    } else {
        0
    };
    let mut rest: [&mut [u8]; U] = planes.each_mut().map(|p| &mut p[wide..]);
    // SAFETY: SSE2 is part of every x86_64 CPU.
    wide + unsafe { sse2::split_blocks(&data[U * wide..], &mut rest) }
}

/// Elsewhere the scalar loop does every element.
#[cfg(not(target_arch = "x86_64"))]
fn split_blocks<const U: usize>(_: &[u8], _: &mut [&mut [u8]; U]) -> usize {
    0
}

/// Merges whole blocks of elements, as [`split_blocks`] splits them; returns the elements done.
#[cfg(target_arch = "x86_64")]
fn merge_blocks<const U: usize>(planes: &[&[u8]; U], out: &mut [u8]) -> usize {
    let wide = if matches!(U, 2 | 4) && avx512::available() {
        // SAFETY: `available` checked the CPU features.
        unsafe { avx512::merge_blocks(planes, out) }
    } else {
        0
    };
    let rest: [&[u8]; U] = planes.map(|p| &p[wide..]);
    // SAFETY: SSE2 is part of every x86_64 CPU.
    wide + unsafe { sse2::merge_blocks(&rest, &mut out[U * wide..]) }
}

/// Elsewhere the scalar loop does every element.
#[cfg(not(target_arch = "x86_64"))]
fn merge_blocks<const U: usize>(_: &[&[u8]; U], _: &mut [u8]) -> usize {
    0
}

/// `buf` cut into `U` consecutive slices of `n` bytes (the planes).
pub(super) fn split_into<const U: usize>(mut buf: &mut [u8], n: usize) -> [&mut [u8]; U] {
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut(n);
        buf = tail;
        head
    })
}

/// Inverse of [`split`].
pub fn merge(planes: &[u8], unit: usize) -> Vec<u8> {
    debug_assert_eq!(planes.len() % unit, 0);
    let n = planes.len() / unit;
    if n == 0 {
        return Vec::new();
    }
    let slices: Vec<&[u8]> = planes.chunks_exact(n).collect();
    merge_slices(&slices, n)
}

/// [`merge`] of planes held apart (`planes.len()` planes of `n` bytes each), without first
/// joining them.
pub fn merge_slices(planes: &[&[u8]], n: usize) -> Vec<u8> {
    let unit = planes.len();
    debug_assert!(planes.iter().all(|p| p.len() == n));
    if unit == 1 {
        return planes[0].to_vec();
    }
    let mut out = vec![0u8; n * unit];
    match unit {
        2 => merge_fixed::<2>(planes, &mut out),
        4 => merge_fixed::<4>(planes, &mut out),
        8 => merge_fixed::<8>(planes, &mut out),
        _ => {
            for (i, elem) in out.chunks_exact_mut(unit).enumerate() {
                for (b, byte) in elem.iter_mut().enumerate() {
                    *byte = planes[b][i];
                }
            }
        }
    }
    out
}

fn merge_fixed<const U: usize>(planes: &[&[u8]], out: &mut [u8]) {
    let n = out.len() / U;
    // Slices of exactly `n` bytes let the compiler drop the bounds checks in the loop.
    let slices: [&[u8]; U] = std::array::from_fn(|b| &planes[b][..n]);
    let done = merge_blocks(&slices, out);
    for (i, elem) in out.chunks_exact_mut(U).enumerate().take(n).skip(done) {
        let elem: &mut [u8; U] = elem.try_into().expect("U bytes");
        for b in 0..U {
            elem[b] = slices[b][i];
        }
    }
}

/// Planes split and merged 64 elements of 2 or 4 bytes at a time with AVX-512 (F, BW and VBMI,
/// where the CPU has them): a block is `U` vectors, each one's bytes are grouped by plane with
/// one byte permute, and the planes' rows gathered across the block's vectors with 128-bit
/// lane shuffles (a transpose); merging runs the same steps backwards. The SSE2 blocks take a
/// dozen unpacks and packs per 16 elements; these, a permute and one or two shuffles per 16.
/// The delta (`delta`) runs on the same vectors.
#[cfg(target_arch = "x86_64")]
pub(in crate::codec) mod avx512 {
    use std::arch::x86_64::*;

    /// Whether this CPU runs these kernels (checked once by the standard library's cache).
    pub(in crate::codec) fn available() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vbmi")
    }

    /// The byte permute that groups a vector of `U`-byte elements by plane (`ungroup` false):
    /// output byte `p * 64 / U + e` is byte `p` of element `e`; or its inverse.
    pub(in crate::codec) fn permute<const U: usize>(ungroup: bool) -> [u8; 64] {
        let per_plane = 64 / U;
        std::array::from_fn(|o| {
            if ungroup {
                ((o % U) * per_plane + o / U) as u8
            } else {
                ((o % per_plane) * U + o / per_plane) as u8
            }
        })
    }

    /// Vector `j` of block `k` (64 elements of `U` bytes) of `bytes`.
    ///
    /// # Safety
    /// The vector must end within `bytes`, and the CPU must have AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in crate::codec) unsafe fn load<const U: usize>(
        bytes: &[u8],
        k: usize,
        j: usize,
    ) -> __m512i {
        _mm512_loadu_si512(bytes.as_ptr().add(64 * (U * k + j)).cast())
    }

    /// Rows of `U` vectors whose bytes are grouped by plane, to one vector per plane (and back:
    /// the transpose is its own inverse). With two planes a vector holds a plane's two 32-byte
    /// rows; with four, its four 16-byte rows, one per 128-bit lane.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose<const U: usize>(r: [__m512i; U]) -> [__m512i; U] {
        // shuffle_i64x2(a, b): lanes 0-1 from `a`, 2-3 from `b`, two bits each.
        let mut t = r;
        if U == 2 {
            t[0] = _mm512_shuffle_i64x2::<0b01_00_01_00>(r[0], r[1]);
            t[1] = _mm512_shuffle_i64x2::<0b11_10_11_10>(r[0], r[1]);
        } else {
            let low01 = _mm512_shuffle_i64x2::<0b01_00_01_00>(r[0], r[1]);
            let low23 = _mm512_shuffle_i64x2::<0b01_00_01_00>(r[2], r[3]);
            let high01 = _mm512_shuffle_i64x2::<0b11_10_11_10>(r[0], r[1]);
            let high23 = _mm512_shuffle_i64x2::<0b11_10_11_10>(r[2], r[3]);
            t[0] = _mm512_shuffle_i64x2::<0b10_00_10_00>(low01, low23);
            t[1] = _mm512_shuffle_i64x2::<0b11_01_11_01>(low01, low23);
            t[2] = _mm512_shuffle_i64x2::<0b10_00_10_00>(high01, high23);
            t[3] = _mm512_shuffle_i64x2::<0b11_01_11_01>(high01, high23);
        }
        t
    }

    /// A block's `U` element vectors as its `U` plane vectors: grouped by plane with `group`
    /// (`permute(false)`), then transposed.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(in crate::codec) fn to_planes<const U: usize>(
        group: __m512i,
        elements: [__m512i; U],
    ) -> [__m512i; U] {
        transpose(elements.map(|v| _mm512_permutexvar_epi8(group, v)))
    }

    /// Block `k` of `planes` (64 bytes of each) as its `U` element vectors, in memory order
    /// (`ungroup` is `permute(true)`).
    ///
    /// # Safety
    /// Block `k` must lie within every plane, and the CPU must have the features [`available`]
    /// checks.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(in crate::codec) unsafe fn block_elements<const U: usize>(
        ungroup: __m512i,
        planes: &[&[u8]; U],
        k: usize,
    ) -> [__m512i; U] {
        let rows: [__m512i; U] =
            std::array::from_fn(|p| _mm512_loadu_si512(planes[p].as_ptr().add(64 * k).cast()));
        transpose(rows).map(|v| _mm512_permutexvar_epi8(ungroup, v))
    }

    /// Splits whole blocks of 64 `U`-byte elements of `data` into `planes`; returns the
    /// elements done.
    ///
    /// # Safety
    /// The CPU must have the features [`available`] checks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn split_blocks<const U: usize>(
        data: &[u8],
        planes: &mut [&mut [u8]; U],
    ) -> usize {
        assert!(matches!(U, 2 | 4));
        let blocks = data.len() / (64 * U);
        assert!(planes.iter().all(|p| p.len() >= 64 * blocks));
        let group = _mm512_loadu_si512(permute::<U>(false).as_ptr().cast());
        for k in 0..blocks {
            // SAFETY: block `k` ends within the first `64 * U * blocks` bytes of `data`.
            let elements: [__m512i; U] = std::array::from_fn(|j| unsafe { load::<U>(data, k, j) });
            for (plane, v) in planes.iter_mut().zip(to_planes(group, elements)) {
                // SAFETY: block `k` of each plane lies within it (asserted above).
                unsafe { _mm512_storeu_si512(plane.as_mut_ptr().add(64 * k).cast(), v) }
            }
        }
        64 * blocks
    }

    /// Merges whole blocks of 64 elements of `planes` (`n` bytes each) into `out`; returns the
    /// elements merged.
    ///
    /// # Safety
    /// The CPU must have the features [`available`] checks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn merge_blocks<const U: usize>(
        planes: &[&[u8]; U],
        out: &mut [u8],
    ) -> usize {
        assert!(matches!(U, 2 | 4));
        let blocks = out.len() / U / 64;
        assert!(planes.iter().all(|p| p.len() >= 64 * blocks));
        let ungroup = _mm512_loadu_si512(permute::<U>(true).as_ptr().cast());
        for k in 0..blocks {
            // SAFETY: block `k` of each plane lies within it (asserted above).
            let elements = unsafe { block_elements(ungroup, planes, k) };
            for (j, e) in elements.into_iter().enumerate() {
                // SAFETY: block `k` of the output, `64 * U` bytes, lies within it.
                unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(64 * (U * k + j)).cast(), e) }
            }
        }
        64 * blocks
    }
}

/// Planes split and merged 16 elements at a time with SSE2 (part of every x86_64 CPU, so no
/// feature check). Splitting takes even and odd bytes apart with a mask or a shift and a
/// saturating pack, repeated; merging interleaves with byte, word and dword unpacks. The
/// delta (`delta`) runs on the same vectors. Byte by byte, the merge ran at ~1.5 GB/s on
/// 4-byte elements, these at ~7.5 (scratch timing; the checkout stage 3.1 -> 6.8 GB/s on
/// cnn-digits).
#[cfg(target_arch = "x86_64")]
pub(super) mod sse2 {
    use std::arch::x86_64::*;

    /// Splits whole blocks of 16 `U`-byte elements of `data` into `planes`; returns the
    /// elements done.
    #[target_feature(enable = "sse2")]
    pub(super) fn split_blocks<const U: usize>(data: &[u8], planes: &mut [&mut [u8]; U]) -> usize {
        let blocks = data.len() / (16 * U);
        assert!(planes.iter().all(|p| p.len() >= 16 * blocks));
        for k in 0..blocks {
            let v: [__m128i; U] = std::array::from_fn(|j| {
                // SAFETY: vector `j` of block `k` ends within the first `16 * U * blocks` bytes.
                unsafe { _mm_loadu_si128(data.as_ptr().add(16 * (U * k + j)).cast()) }
            });
            for (plane, p) in planes.iter_mut().zip(by_plane(&v)) {
                // SAFETY: block `k` of each plane lies within it (asserted above).
                unsafe { _mm_storeu_si128(plane.as_mut_ptr().add(16 * k).cast(), p) }
            }
        }
        16 * blocks
    }

    /// 16 elements of `U` (2, 4 or 8) bytes, in `U` vectors, as their planes: vector `k` of the
    /// result holds byte `k` of every element (the first `U` are meaningful).
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(in crate::codec) fn by_plane<const U: usize>(v: &[__m128i; U]) -> [__m128i; 8] {
        let mut out = [_mm_setzero_si128(); 8];
        match U {
            2 => out[..2].copy_from_slice(&unzip(v[0], v[1])),
            4 => out[..4].copy_from_slice(&split4([v[0], v[1], v[2], v[3]])),
            8 => out = split8(v[..8].try_into().expect("8 vectors")),
            _ => unreachable!("planes of {U}-byte elements are split byte by byte"),
        }
        out
    }

    /// The even bytes of `a` then `b`, and their odd bytes: a 2-byte plane split of 16 elements.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn unzip(a: __m128i, b: __m128i) -> [__m128i; 2] {
        let low = _mm_set1_epi16(0xff);
        [
            _mm_packus_epi16(_mm_and_si128(a, low), _mm_and_si128(b, low)),
            _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8)),
        ]
    }

    /// The 4-byte plane split of 16 elements: even bytes (planes 0 and 2) and odd bytes
    /// (planes 1 and 3) apart, then each of those split as 2-byte elements.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn split4(v: [__m128i; 4]) -> [__m128i; 4] {
        let [e01, o01] = unzip(v[0], v[1]);
        let [e23, o23] = unzip(v[2], v[3]);
        let [p0, p2] = unzip(e01, e23);
        let [p1, p3] = unzip(o01, o23);
        [p0, p1, p2, p3]
    }

    /// The 8-byte plane split of 16 elements, the same way: even and odd bytes apart, then
    /// each half split as 4-byte elements.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn split8(v: [__m128i; 8]) -> [__m128i; 8] {
        let [e01, o01] = unzip(v[0], v[1]);
        let [e23, o23] = unzip(v[2], v[3]);
        let [e45, o45] = unzip(v[4], v[5]);
        let [e67, o67] = unzip(v[6], v[7]);
        let even = split4([e01, e23, e45, e67]);
        let odd = split4([o01, o23, o45, o67]);
        std::array::from_fn(|p| if p % 2 == 0 { even[p / 2] } else { odd[p / 2] })
    }

    /// Merges whole blocks of 16 elements of `planes` (2, 4 or 8 of them, `n` bytes each) into
    /// `out`; returns the elements merged.
    #[target_feature(enable = "sse2")]
    pub(super) fn merge_blocks<const U: usize>(planes: &[&[u8]; U], out: &mut [u8]) -> usize {
        let n = out.len() / U;
        let blocks = n / 16;
        assert!(planes.iter().all(|p| p.len() >= 16 * blocks) && out.len() >= U * 16 * blocks);
        for k in 0..blocks {
            let v: [__m128i; U] = std::array::from_fn(|b| {
                // SAFETY: block `k` of plane `b` lies within it (asserted above).
                unsafe { _mm_loadu_si128(planes[b].as_ptr().add(16 * k).cast()) }
            });
            for (j, e) in by_element(&v).iter().take(U).enumerate() {
                // SAFETY: block `k` of the output, `U * 16` bytes, lies within it (asserted).
                unsafe { _mm_storeu_si128(out.as_mut_ptr().add(16 * (U * k + j)).cast(), *e) }
            }
        }
        16 * blocks
    }

    /// Inverse of [`by_plane`]: byte `k` of 16 elements in vector `k` of `v`, as the elements
    /// (the first `U` vectors of the result, in memory order).
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(in crate::codec) fn by_element<const U: usize>(v: &[__m128i; U]) -> [__m128i; 8] {
        let mut out = [_mm_setzero_si128(); 8];
        match U {
            2 => {
                out[0] = _mm_unpacklo_epi8(v[0], v[1]);
                out[1] = _mm_unpackhi_epi8(v[0], v[1]);
            }
            4 => {
                let (ab, cd) = pairs(v[0], v[1], v[2], v[3]);
                out[..4].copy_from_slice(&quads(ab, cd));
            }
            8 => {
                let (ab, cd) = pairs(v[0], v[1], v[2], v[3]);
                let (ef, gh) = pairs(v[4], v[5], v[6], v[7]);
                let (low, high) = (quads(ab, cd), quads(ef, gh));
                for q in 0..4 {
                    out[2 * q] = _mm_unpacklo_epi32(low[q], high[q]);
                    out[2 * q + 1] = _mm_unpackhi_epi32(low[q], high[q]);
                }
            }
            _ => unreachable!("planes of {U}-byte elements are merged byte by byte"),
        }
        out
    }

    /// Planes a, b and c, d byte-interleaved: ([a0 b0 a1 b1 .. a7 b7], [a8 b8 ..]) and the same
    /// for c, d.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn pairs(a: __m128i, b: __m128i, c: __m128i, d: __m128i) -> ([__m128i; 2], [__m128i; 2]) {
        (
            [_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b)],
            [_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d)],
        )
    }

    /// The byte pairs word-interleaved: elements 0-3, 4-7, 8-11, 12-15 of four bytes each.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn quads(ab: [__m128i; 2], cd: [__m128i; 2]) -> [__m128i; 4] {
        [
            _mm_unpacklo_epi16(ab[0], cd[0]),
            _mm_unpackhi_epi16(ab[0], cd[0]),
            _mm_unpacklo_epi16(ab[1], cd[1]),
            _mm_unpackhi_epi16(ab[1], cd[1]),
        ]
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// [`merge`] byte by byte, without the SSE2 blocks.
    pub(in crate::codec) fn scalar_merge(planes: &[u8], unit: usize) -> Vec<u8> {
        let n = planes.len() / unit;
        (0..planes.len())
            .map(|j| planes[(j % unit) * n + j / unit])
            .collect()
    }

    /// [`split`] byte by byte, without the SSE2 blocks.
    pub(in crate::codec) fn scalar_split(data: &[u8], unit: usize) -> Vec<u8> {
        let n = data.len() / unit;
        let mut out = vec![0u8; data.len()];
        for (i, elem) in data.chunks_exact(unit).enumerate() {
            for (b, &byte) in elem.iter().enumerate() {
                out[b * n + i] = byte;
            }
        }
        out
    }

    #[test]
    fn known_layout() {
        let data = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(split(&data, 4), vec![1, 5, 2, 6, 3, 7, 4, 8]);
        assert_eq!(split(&data, 2), vec![1, 3, 5, 7, 2, 4, 6, 8]);
    }

    proptest! {
        #[test]
        fn split_merge_round_trip(unit in prop::sample::select(vec![1usize, 2, 3, 4, 8]), n in 0usize..600, seed in any::<u64>()) {
            let data: Vec<u8> = (0..n * unit).map(|i| (seed.wrapping_mul(i as u64 + 1) >> 13) as u8).collect();
            prop_assert_eq!(split(&data, unit), scalar_split(&data, unit));
            prop_assert_eq!(merge(&data, unit), scalar_merge(&data, unit));
            prop_assert_eq!(merge(&split(&data, unit), unit), data);
        }
    }
}
