//! The AVX2 kernels: the 32 states are four 8-lane vectors, so a quarter round (8 symbols) is
//! one or two table gathers, a few multiplies and, for its 16-bit words, one byte shuffle from a
//! table indexed by the lanes that move a word (AVX2 has no compress or expand).

use super::{Decoder, Encoder};
use crate::codec::rans::{LOW, TOTAL};
use std::arch::x86_64::*;

/// A byte shuffle of eight 16-bit slots for each set of lanes (bit `k`: lane `k`).
#[repr(align(16))]
struct Shuffles([[u8; 16]; 256]);

/// Pairs the `i`-th lane of each set (in lane order) with word `i` of a block: the decoder's
/// expand (`into_lanes`: word `i` moves into the lane, zeros into the other lanes) or the
/// encoder's compress (the lane's word moves to slot `i` of the block's top `count` slots,
/// zeros below them).
const fn word_shuffles(into_lanes: bool) -> Shuffles {
    let mut table = [[0x80u8; 16]; 256];
    let mut mask = 0;
    while mask < 256 {
        let first = if into_lanes {
            0
        } else {
            8 - (mask as u32).count_ones() as usize
        };
        let (mut i, mut lane) = (0, 0);
        while lane < 8 {
            if mask & (1 << lane) != 0 {
                let (to, from) = if into_lanes {
                    (lane, first + i)
                } else {
                    (first + i, lane)
                };
                table[mask][2 * to] = 2 * from as u8;
                table[mask][2 * to + 1] = 2 * from as u8 + 1;
                i += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    Shuffles(table)
}

/// For the lanes that need a word, the next words in lane order.
static EXPAND: Shuffles = word_shuffles(true);
/// For the lanes that emit a word, their words packed to the top of a 16-byte block.
static COMPRESS_TOP: Shuffles = word_shuffles(false);

/// Lanes' 32-bit values from (`low`, `high`), four 64-bit entries each (lanes 0..3, 4..7): the
/// low halves (`HALF` 0) or the high ones (1).
#[inline(always)]
unsafe fn halves<const HALF: i32>(low: __m256i, high: __m256i) -> __m256i {
    let pick = _mm256_setr_epi32(HALF, 2 + HALF, 4 + HALF, 6 + HALF, 0, 0, 0, 0);
    _mm256_permute2x128_si256::<0x20>(
        _mm256_permutevar8x32_epi32(low, pick),
        _mm256_permutevar8x32_epi32(high, pick),
    )
}

/// One quarter round of the encoder: codes the 8 symbols at `syms` into the states `x`, storing
/// the emitted words directly below `*pos` (8 slots writable there).
#[inline]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn encode_quarter(
    enc: &Encoder,
    x: __m256i,
    syms: *const u8,
    words: *mut u16,
    pos: &mut usize,
) -> __m256i {
    let s = _mm256_cvtepu8_epi32(_mm_loadl_epi64(syms.cast()));
    let entries = enc.entries.as_ptr().cast::<i64>();
    let low = _mm256_i32gather_epi64::<8>(entries, _mm256_castsi256_si128(s));
    let high = _mm256_i32gather_epi64::<8>(entries, _mm256_extracti128_si256::<1>(s));
    let (rcp, packed) = (halves::<0>(low, high), halves::<1>(low, high));
    let bias = _mm256_and_si256(packed, _mm256_set1_epi32(0x1fff));
    let cmpl = _mm256_and_si256(_mm256_srli_epi32::<13>(packed), _mm256_set1_epi32(0xfff));
    let shift = _mm256_add_epi32(_mm256_srli_epi32::<25>(packed), _mm256_set1_epi32(32));
    // x_max = ((LOW >> SCALE_BITS) << 16) * freq = freq << 19 (2^31 for the whole table, so
    // compared unsigned).
    let freq = _mm256_sub_epi32(_mm256_set1_epi32(TOTAL as i32), cmpl);
    let x_max = _mm256_slli_epi32::<19>(freq);
    let emit = _mm256_cmpeq_epi32(_mm256_max_epu32(x, x_max), x);
    let lanes = _mm256_movemask_ps(_mm256_castsi256_ps(emit)) as usize;
    // Each lane's low 16 bits in lane order (bytes 0, 1, 4, 5, ... of each half, then the
    // halves side by side), packed to the top of the block that ends at `pos`.
    let low_words = _mm256_shuffle_epi8(
        x,
        _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, //
            0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
        ),
    );
    let in_order = _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(low_words));
    let shuffle = _mm_load_si128(COMPRESS_TOP.0[lanes].as_ptr().cast());
    _mm_storeu_si128(
        words.add(*pos - 8).cast(),
        _mm_shuffle_epi8(in_order, shuffle),
    );
    *pos -= lanes.count_ones() as usize;
    let y = _mm256_blendv_epi8(x, _mm256_srli_epi32::<16>(x), emit);
    // q = (y * rcp) >> shift, the 64-bit products of even and odd lanes apart.
    let even_mask = _mm256_set1_epi64x(0xffff_ffff);
    let q_even = _mm256_srlv_epi64(_mm256_mul_epu32(y, rcp), _mm256_and_si256(shift, even_mask));
    let q_odd = _mm256_srlv_epi64(
        _mm256_mul_epu32(_mm256_srli_epi64::<32>(y), _mm256_srli_epi64::<32>(rcp)),
        _mm256_srli_epi64::<32>(shift),
    );
    let q = _mm256_blend_epi32::<0b1010_1010>(q_even, _mm256_slli_epi64::<32>(q_odd));
    _mm256_add_epi32(_mm256_add_epi32(y, bias), _mm256_mullo_epi32(q, cmpl))
}

/// Codes whole rounds of `data` backwards while a round's 32 words and the spare slot fit
/// below `*pos`; returns how many bytes at the start of `data` are left.
#[target_feature(enable = "avx2,popcnt")]
pub(super) unsafe fn encode_rounds(
    enc: &Encoder,
    data: &[u8],
    words: &mut [u16],
    pos: &mut usize,
    xs: *mut u32,
) -> usize {
    let mut x0 = _mm256_loadu_si256(xs.cast());
    let mut x1 = _mm256_loadu_si256(xs.add(8).cast());
    let mut x2 = _mm256_loadu_si256(xs.add(16).cast());
    let mut x3 = _mm256_loadu_si256(xs.add(24).cast());
    let mut rounds = data.len() / 32;
    let (d, w) = (data.as_ptr(), words.as_mut_ptr());
    // Lanes 24..31's words go highest, then 16..23's below them, and so on.
    while rounds > 0 && *pos > 32 {
        rounds -= 1;
        let round = d.add(32 * rounds);
        x3 = encode_quarter(enc, x3, round.add(24), w, pos);
        x2 = encode_quarter(enc, x2, round.add(16), w, pos);
        x1 = encode_quarter(enc, x1, round.add(8), w, pos);
        x0 = encode_quarter(enc, x0, round, w, pos);
    }
    _mm256_storeu_si256(xs.cast(), x0);
    _mm256_storeu_si256(xs.add(8).cast(), x1);
    _mm256_storeu_si256(xs.add(16).cast(), x2);
    _mm256_storeu_si256(xs.add(24).cast(), x3);
    32 * rounds
}

/// One quarter round: decodes 8 symbols from the states `x` into `out` and renormalizes them
/// from the words at `*p` (16 bytes readable there).
#[inline]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn decode_quarter(
    dec: &Decoder,
    x: __m256i,
    words: *const u8,
    p: &mut usize,
    out: *mut u8,
) -> __m256i {
    let slot = _mm256_and_si256(x, _mm256_set1_epi32(TOTAL as i32 - 1));
    let e = _mm256_i32gather_epi32::<4>(dec.table.as_ptr().cast(), slot);
    // The symbol is each entry's top byte: bytes 3, 7, 11, 15 of each 128-bit half, then the
    // halves' four bytes side by side.
    let tops = _mm256_shuffle_epi8(
        e,
        _mm256_setr_epi8(
            3, 7, 11, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, //
            3, 7, 11, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        ),
    );
    let symbols = _mm_unpacklo_epi32(
        _mm256_castsi256_si128(tops),
        _mm256_extracti128_si256::<1>(tops),
    );
    _mm_storel_epi64(out.cast(), symbols);
    let mask12 = _mm256_set1_epi32(0xfff);
    let freq = _mm256_add_epi32(_mm256_and_si256(e, mask12), _mm256_set1_epi32(1));
    let offset = _mm256_and_si256(_mm256_srli_epi32::<12>(e), mask12);
    let y = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srli_epi32::<12>(x)), offset);
    // y < LOW unsigned, as the scalar step compares (a damaged state may pass 2^31).
    let low_max = _mm256_set1_epi32(LOW as i32 - 1);
    let need = _mm256_cmpeq_epi32(_mm256_min_epu32(y, low_max), y);
    let lanes = _mm256_movemask_ps(_mm256_castsi256_ps(need)) as usize;
    let next = _mm_loadu_si128(words.add(*p).cast());
    let shuffle = _mm_load_si128(EXPAND.0[lanes].as_ptr().cast());
    let spread = _mm256_cvtepu16_epi32(_mm_shuffle_epi8(next, shuffle));
    *p += 2 * lanes.count_ones() as usize;
    _mm256_blendv_epi8(y, _mm256_or_si256(_mm256_slli_epi32::<16>(y), spread), need)
}

/// Decodes whole rounds of 32 symbols into `out` while 64 word bytes remain; returns the
/// symbols decoded and the word bytes read.
#[target_feature(enable = "avx2,popcnt")]
pub(super) unsafe fn decode_rounds(
    dec: &Decoder,
    words: &[u8],
    out: &mut [u8],
    xs: *mut u32,
) -> (usize, usize) {
    let mut x0 = _mm256_loadu_si256(xs.cast());
    let mut x1 = _mm256_loadu_si256(xs.add(8).cast());
    let mut x2 = _mm256_loadu_si256(xs.add(16).cast());
    let mut x3 = _mm256_loadu_si256(xs.add(24).cast());
    let (mut p, mut done) = (0, 0);
    let (w, o) = (words.as_ptr(), out.as_mut_ptr());
    // A quarter reads at most 16 bytes, a round 64.
    while done + 32 <= out.len() && p + 64 <= words.len() {
        x0 = decode_quarter(dec, x0, w, &mut p, o.add(done));
        x1 = decode_quarter(dec, x1, w, &mut p, o.add(done + 8));
        x2 = decode_quarter(dec, x2, w, &mut p, o.add(done + 16));
        x3 = decode_quarter(dec, x3, w, &mut p, o.add(done + 24));
        done += 32;
    }
    _mm256_storeu_si256(xs.cast(), x0);
    _mm256_storeu_si256(xs.add(8).cast(), x1);
    _mm256_storeu_si256(xs.add(16).cast(), x2);
    _mm256_storeu_si256(xs.add(24).cast(), x3);
    (done, p)
}
