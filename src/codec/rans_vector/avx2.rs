//! The AVX2 decoder: the 32 states are four 8-lane vectors, so a quarter round (8 symbols) is one
//! table gather, a multiply and, for its 16-bit words, one byte shuffle from a table indexed by
//! the lanes that need a word (AVX2 has no expand).

use super::Decoder;
use crate::codec::rans::{LOW, TOTAL};
use std::arch::x86_64::*;

/// For each set of lanes that need a word (bit `k`: lane `k`), the shuffle that moves the next
/// words, in lane order, into those lanes' 16-bit slots and zeros into the others.
#[repr(align(16))]
struct Expand([[u8; 16]; 256]);

static EXPAND: Expand = {
    let mut table = [[0x80u8; 16]; 256];
    let mut mask = 0;
    while mask < 256 {
        let mut read = 0u8;
        let mut lane = 0;
        while lane < 8 {
            if mask & (1 << lane) != 0 {
                table[mask][2 * lane] = 2 * read;
                table[mask][2 * lane + 1] = 2 * read + 1;
                read += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    Expand(table)
};

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
