//! The AVX-512 kernels (F, BW, VL, VBMI2): the 32 states are two 16-lane vectors, so half a
//! round (16 symbols) is two table gathers, a few multiplies and, for its 16-bit words, a
//! compress and an expand into place (encode) or one expand (decode).

use super::{Decoder, Encoder};
use crate::codec::rans::{LOW, TOTAL};
use std::arch::x86_64::*;

/// One half round of the encoder: codes the 16 symbols at `syms` into the states `x`,
/// storing the emitted words directly below `*pos`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
unsafe fn encode_half(
    enc: &Encoder,
    x: __m512i,
    syms: *const u8,
    words: *mut u16,
    pos: &mut usize,
) -> __m512i {
    let s = _mm256_cvtepu8_epi32(_mm_loadl_epi64(syms.cast()));
    let low = _mm512_i32gather_epi64::<8>(s, enc.entries.as_ptr().cast());
    let s = _mm256_cvtepu8_epi32(_mm_loadl_epi64(syms.add(8).cast()));
    let high = _mm512_i32gather_epi64::<8>(s, enc.entries.as_ptr().cast());
    // Lane k's reciprocal is u32 2k of (low, high), its packed constants u32 2k + 1.
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let rcp = _mm512_permutex2var_epi32(low, evens, high);
    let odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
    let packed = _mm512_permutex2var_epi32(low, odds, high);
    let bias = _mm512_and_si512(packed, _mm512_set1_epi32(0x1fff));
    let cmpl = _mm512_and_si512(_mm512_srli_epi32::<13>(packed), _mm512_set1_epi32(0xfff));
    let shift = _mm512_add_epi32(_mm512_srli_epi32::<25>(packed), _mm512_set1_epi32(32));
    // x_max = ((LOW >> SCALE_BITS) << 16) * freq = freq << 19.
    let freq = _mm512_sub_epi32(_mm512_set1_epi32(TOTAL as i32), cmpl);
    let emit = _mm512_cmpge_epu32_mask(x, _mm512_slli_epi32::<19>(freq));
    // The emitted words, packed to the top of a 16-word block that ends at `pos`.
    let count = emit.count_ones() as usize;
    let packed_words = _mm256_maskz_compress_epi16(emit, _mm512_cvtepi32_epi16(x));
    let top = (0xffff_u32 << (16 - count)) as u16;
    let block = _mm256_maskz_expand_epi16(top, packed_words);
    _mm256_storeu_si256(words.add(*pos - 16).cast(), block);
    *pos -= count;
    let y = _mm512_mask_srli_epi32::<16>(x, emit, x);
    // q = (y * rcp) >> shift, the 64-bit products of even and odd lanes apart.
    let even_mask = _mm512_set1_epi64(0xffff_ffff);
    let q_even = _mm512_srlv_epi64(_mm512_mul_epu32(y, rcp), _mm512_and_si512(shift, even_mask));
    let q_odd = _mm512_srlv_epi64(
        _mm512_mul_epu32(_mm512_srli_epi64::<32>(y), _mm512_srli_epi64::<32>(rcp)),
        _mm512_srli_epi64::<32>(shift),
    );
    let q = _mm512_mask_blend_epi32(0xaaaa, q_even, _mm512_slli_epi64::<32>(q_odd));
    _mm512_add_epi32(_mm512_add_epi32(y, bias), _mm512_mullo_epi32(q, cmpl))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
pub(super) unsafe fn encode_rounds(
    enc: &Encoder,
    data: &[u8],
    words: &mut [u16],
    pos: &mut usize,
    xs: *mut u32,
) -> usize {
    let mut x0 = _mm512_loadu_si512(xs.cast());
    let mut x1 = _mm512_loadu_si512(xs.add(16).cast());
    let mut rounds = data.len() / 32;
    let (d, w) = (data.as_ptr(), words.as_mut_ptr());
    // A round stores two 16-word blocks below `pos`, the second below the first's words.
    while rounds > 0 && *pos > 32 {
        rounds -= 1;
        x1 = encode_half(enc, x1, d.add(32 * rounds + 16), w, pos);
        x0 = encode_half(enc, x0, d.add(32 * rounds), w, pos);
    }
    _mm512_storeu_si512(xs.cast(), x0);
    _mm512_storeu_si512(xs.add(16).cast(), x1);
    32 * rounds
}

/// One half round of the decoder: decodes 16 symbols from the states `x` into `out` and
/// renormalizes them from the words at `*p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
unsafe fn decode_half(
    dec: &Decoder,
    x: __m512i,
    words: *const u8,
    p: &mut usize,
    out: *mut u8,
) -> __m512i {
    let slot = _mm512_and_si512(x, _mm512_set1_epi32(TOTAL as i32 - 1));
    let e = _mm512_i32gather_epi32::<4>(slot, dec.table.as_ptr().cast());
    _mm_storeu_si128(out.cast(), _mm512_cvtepi32_epi8(_mm512_srli_epi32::<24>(e)));
    let mask12 = _mm512_set1_epi32(0xfff);
    let freq = _mm512_add_epi32(_mm512_and_si512(e, mask12), _mm512_set1_epi32(1));
    let offset = _mm512_and_si512(_mm512_srli_epi32::<12>(e), mask12);
    let y = _mm512_add_epi32(_mm512_mullo_epi32(freq, _mm512_srli_epi32::<12>(x)), offset);
    let need = _mm512_cmplt_epu32_mask(y, _mm512_set1_epi32(LOW as i32));
    let next = _mm256_loadu_si256(words.add(*p).cast());
    let spread = _mm512_cvtepu16_epi32(_mm256_maskz_expand_epi16(need, next));
    *p += 2 * need.count_ones() as usize;
    _mm512_mask_mov_epi32(y, need, _mm512_or_si512(_mm512_slli_epi32::<16>(y), spread))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
pub(super) unsafe fn decode_rounds(
    dec: &Decoder,
    words: &[u8],
    out: &mut [u8],
    xs: *mut u32,
) -> (usize, usize) {
    let mut x0 = _mm512_loadu_si512(xs.cast());
    let mut x1 = _mm512_loadu_si512(xs.add(16).cast());
    let (mut p, mut done) = (0, 0);
    let (w, o) = (words.as_ptr(), out.as_mut_ptr());
    while done + 32 <= out.len() && p + 64 <= words.len() {
        x0 = decode_half(dec, x0, w, &mut p, o.add(done));
        x1 = decode_half(dec, x1, w, &mut p, o.add(done + 16));
        done += 32;
    }
    _mm512_storeu_si512(xs.cast(), x0);
    _mm512_storeu_si512(xs.add(16).cast(), x1);
    (done, p)
}
