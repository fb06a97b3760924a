//! Sections that are mostly one byte value (entropy coder 7): the other bytes are kept on their
//! own, coded like any section, and their places as Rice-coded gaps (the count of the common
//! value before each).
//!
//! The sign and exponent plane of a checkpoint's exact delta is such a section: 95% and more
//! zeros, coded by rANS to ~0.1 bits a byte, but rANS pays a state step per byte whatever it
//! codes (cnn-digits: its lossless checkout decoded 10-13 ms faster of ~90 once they were
//! sparse, for under 0.5% of its bytes). Here the coder runs over the other bytes only, and
//! the common value is written by `memset`. The gaps of independent places are geometric,
//! which a Rice code fits within a few percent of their entropy and without a table; a section
//! is coded so only where the result is smaller than the other coders' (see
//! `entropy::code_with`), so it costs no bytes.
//!
//! Layout: the common value (u8), the Rice parameter `k` (u8), the count of other bytes
//! (varint), their coder (u8, any entropy coder but this one) and coded length (varint), the
//! coded other bytes, then the gaps to the end: each gap `g` as `g >> k` zero bits, a one bit,
//! then the low `k` bits of `g`, least significant bit first, zero-padded to a byte.

use std::borrow::Cow;

use super::bits::BitSink;
use super::entropy::Entropy;
use super::error::{CodecError, CodecResult};
use super::rans;
use super::varint::{get_varint, put_varint};
use crate::profile::{self, Stage};

/// A section is tried as sparse only where its most common value is at least this share of it
/// (the other bytes at most a quarter): below, the other bytes are most of the coding and the
/// gaps save no time.
const COMMON_SHARE: f64 = 0.75;

/// Sections shorter than this are tried sparse whenever one value is most of them, before
/// Zstd (see `entropy::code_with`): their coding takes well under Zstd's microsecond or two,
/// and a short section of one value (a bias that did not change) is 5 bytes sparse against
/// Zstd's 17 and rANS's 21. Longer sections are tried only where [`may_win`] says so.
pub(crate) const SHORT_BELOW: usize = 512;

/// The largest Rice parameter: gaps are below a section's length (under 2^32 bytes).
const MAX_K: u32 = 31;

/// The byte that is at least [`COMMON_SHARE`] of a section with these counts, if any.
fn common_value(counts: &[u64; 256], len: usize) -> Option<u8> {
    let (value, &count) = counts.iter().enumerate().max_by_key(|&(_, c)| *c)?;
    (count as f64 >= COMMON_SHARE * len as f64).then_some(value as u8)
}

/// Whether a section with these counts and `common` value may code smaller sparse than with
/// rANS (`wide`: its wide stream, 112 state bytes more). Both code the other bytes at order 0;
/// the sparse coding pays a few percent over the entropy of their places (Rice codes are not
/// exact), rANS pays for its 12-bit table: a value rarer than one unit of it is coded as if it
/// had one, and that share comes out of the common value's, on every byte. Where that loss is
/// under 1% of the places' entropy the sparse coding seldom wins, and trying it cost more
/// than the wins saved (BENCHMARKS.md, "Sparse sections").
fn may_win(counts: &[u64; 256], len: usize, common: u8, wide: bool) -> bool {
    if wide {
        return true;
    }
    let n = len as f64;
    let unit = n / f64::from(rans::TOTAL);
    let raised: f64 = counts
        .iter()
        .filter(|&&c| c > 0 && (c as f64) < unit)
        .map(|&c| (unit - c as f64) / n)
        .sum();
    let kept = counts[common as usize] as f64;
    let p = kept / n;
    if raised >= p {
        return true;
    }
    let rounding_loss = kept * (p / (p - raised)).log2() / 8.0;
    let q = 1.0 - p;
    let places = n * -(p * p.log2() + q * q.log2()) / 8.0;
    rounding_loss > 0.01 * places
}

/// Codes `data` (with these byte counts) sparse around `common`, the value [`candidate`] found
/// in it, the other bytes through `code_others` (which must not choose this coder). Returns
/// `None` where the result would be `limit` bytes or more.
pub(crate) fn encode(
    data: &[u8],
    counts: &[u64; 256],
    common: u8,
    limit: usize,
    code_others: impl FnOnce(&[u8]) -> (Entropy, Vec<u8>),
) -> Option<Vec<u8>> {
    let _sparse = profile::time_bytes(Stage::Sparse, data.len());
    let count = data.len() - counts[common as usize] as usize;
    encode_around(data, common, count, limit, code_others)
}

/// The common value a section of `len` bytes with these counts is worth trying sparse around
/// (see [`common_value`]; `wide`: rANS would code it with its wide stream), if any: decided
/// before anything reads the bytes.
pub(crate) fn candidate(counts: &[u64; 256], len: usize, wide: bool) -> Option<u8> {
    common_value(counts, len)
        .filter(|&common| len < SHORT_BELOW || may_win(counts, len, common, wide))
}

/// [`encode`] with `common` the common value, `count` bytes of `data` other than it, whether
/// or not that may win (the fuzz seeds are made so).
pub(crate) fn encode_around(
    data: &[u8],
    common: u8,
    count: usize,
    limit: usize,
    code_others: impl FnOnce(&[u8]) -> (Entropy, Vec<u8>),
) -> Option<Vec<u8>> {
    let (others, gaps) = split(data, common, count);
    let (k, gap_bits) = best_parameter(&gaps);
    let gap_bytes = usize::try_from(gap_bits.div_ceil(8)).ok()?;
    // The shortest header (common value, k, a one-byte count, the coder, a one-byte length)
    // and the gaps alone already at the limit: stop before coding the other bytes.
    if gap_bytes + 5 >= limit {
        return None;
    }
    let (kind, coded) = code_others(&others);
    debug_assert_ne!(kind, Entropy::Sparse);
    let mut out = Vec::with_capacity(gap_bytes + coded.len() + 23);
    out.extend_from_slice(&[common, k as u8]);
    put_varint(&mut out, others.len() as u64);
    out.push(kind as u8);
    put_varint(&mut out, coded.len() as u64);
    out.extend_from_slice(&coded);
    if out.len() + gap_bytes >= limit {
        return None;
    }
    write_gaps(&mut out, &gaps, k, gap_bytes);
    Some(out)
}

/// The bytes of `data` other than `common` (`count` of them), and the count of `common`
/// before each.
fn split(data: &[u8], common: u8, count: usize) -> (Vec<u8>, Vec<u32>) {
    let mut out = Split {
        others: vec![0u8; count],
        gaps: vec![0u32; count],
        found: 0,
        next: 0,
    };
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has the kernel's features.
        done = unsafe { avx512::blocks(data, common, &mut out) };
    }
    split_words(data, common, done, &mut out);
    debug_assert_eq!(out.found, count);
    (out.others, out.gaps)
}

/// Notes the other bytes of `data` from `done` on into `out` (any CPU).
fn split_words(data: &[u8], common: u8, done: usize, out: &mut Split) {
    let spread = u64::from_le_bytes([common; 8]);
    let mut words = data[done..].chunks_exact(8);
    // Eight bytes at a time: most words of a sparse section hold the common value only, and
    // the others in a word are found by their bits, not a branch per byte.
    for (w, word) in (&mut words).enumerate() {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let mut found = nonzero_bytes(word ^ spread);
        while found != 0 {
            let shift = found.trailing_zeros() & !7;
            out.note(done + w * 8 + shift as usize / 8, (word >> shift) as u8);
            found &= found - 1;
        }
    }
    let tail = data.len() - words.remainder().len();
    for (i, &b) in words.remainder().iter().enumerate() {
        if b != common {
            out.note(tail + i, b);
        }
    }
}

/// The other bytes and gaps found so far.
struct Split {
    others: Vec<u8>,
    gaps: Vec<u32>,
    /// Other bytes found.
    found: usize,
    /// Where the last other byte was, plus one.
    next: usize,
}

impl Split {
    /// Notes the other byte `b` at `i`.
    #[inline]
    fn note(&mut self, i: usize, b: u8) {
        self.others[self.found] = b;
        self.gaps[self.found] = (i - self.next) as u32;
        self.found += 1;
        self.next = i + 1;
    }
}

/// The scan 64 bytes at a time: one compare gives a block's other bytes as a bit mask.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Whether this CPU runs [`blocks`] (checked once by the standard library's cache).
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    /// Notes the other bytes of `data`'s whole 64-byte blocks into `out`; returns the bytes
    /// done.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn blocks(data: &[u8], common: u8, out: &mut super::Split) -> usize {
        let spread = _mm512_set1_epi8(common as i8);
        let blocks = data.len() / 64;
        for b in 0..blocks {
            // SAFETY: block `b` ends within `data`.
            let v = unsafe { _mm512_loadu_si512(data.as_ptr().add(64 * b).cast()) };
            let mut found = _mm512_cmpneq_epi8_mask(v, spread);
            while found != 0 {
                let i = 64 * b + found.trailing_zeros() as usize;
                out.note(i, data[i]);
                found &= found - 1;
            }
        }
        blocks * 64
    }
}

/// The high bit of each nonzero byte of `x`, the others clear.
#[inline]
fn nonzero_bytes(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // A byte's low seven bits plus 0x7f carry into its high bit unless all zero; no carry
    // crosses into the next byte.
    ((x & LOW7).wrapping_add(LOW7) | x) & !LOW7
}

/// The Rice parameter that codes `gaps` in the fewest bits, and that count.
fn best_parameter(gaps: &[u32]) -> (u32, u64) {
    let bits = |k: u32| -> u64 {
        gaps.iter().map(|&g| u64::from(g >> k)).sum::<u64>() + gaps.len() as u64 * u64::from(k + 1)
    };
    // The best parameter is near log2 of the mean gap; the cost is convex in k, so walk down
    // from there while it falls, then up.
    let total: u64 = gaps.iter().map(|&g| u64::from(g)).sum();
    let mean = total / (gaps.len() as u64).max(1);
    let mut k = (64 - mean.leading_zeros()).min(MAX_K);
    let mut cost = bits(k);
    while k > 0 {
        let lower = bits(k - 1);
        if lower > cost {
            break;
        }
        (k, cost) = (k - 1, lower);
    }
    while k < MAX_K {
        let higher = bits(k + 1);
        if higher >= cost {
            break;
        }
        (k, cost) = (k + 1, higher);
    }
    (k, cost)
}

/// Appends the Rice codes of `gaps` (exactly `bytes` bytes).
fn write_gaps(out: &mut Vec<u8>, gaps: &[u32], k: u32, bytes: usize) {
    let start = out.len();
    let mut bits = BitSink::with_capacity(8 * bytes);
    for &g in gaps {
        let mut zeros = g >> k;
        while zeros >= 32 {
            bits.append(0, 32);
            zeros -= 32;
        }
        // `zeros` zero bits and a one, then the low k bits.
        bits.append(1 << zeros, zeros + 1);
        bits.append(u64::from(g) & ((1u64 << k) - 1), k);
    }
    bits.finish_into(out);
    debug_assert_eq!(out.len() - start, bytes);
}

/// Decodes a sparse section of `raw_len` bytes; `decode_others` decodes the other bytes
/// (called with their coder, coded bytes and count).
pub(crate) fn decode<'a>(
    stored: &'a [u8],
    raw_len: usize,
    decode_others: impl FnOnce(Entropy, &'a [u8], usize) -> CodecResult<Cow<'a, [u8]>>,
) -> CodecResult<Vec<u8>> {
    let truncated = |part| CodecError::SparseTruncated { part };
    let [common, k, ..] = *stored else {
        return Err(truncated("header"));
    };
    if u32::from(k) > MAX_K {
        return Err(CodecError::UnknownTag {
            what: "sparse section's gap parameter",
            value: k,
        });
    }
    let mut pos = 2;
    let count = get_varint(stored, &mut pos)?;
    if count > raw_len as u64 {
        return Err(CodecError::LengthOverLimit {
            declared: count,
            limit: raw_len,
        });
    }
    let tag = *stored.get(pos).ok_or_else(|| truncated("header"))?;
    pos += 1;
    let kind = Entropy::try_from(tag)
        .ok()
        .filter(|&kind| kind != Entropy::Sparse)
        .ok_or(CodecError::UnknownTag {
            what: "coder of a sparse section's other bytes",
            value: tag,
        })?;
    let coded_len = get_varint(stored, &mut pos)?;
    let coded = usize::try_from(coded_len)
        .ok()
        .and_then(|len| stored.get(pos..pos.checked_add(len)?))
        .ok_or_else(|| truncated("other bytes"))?;
    pos += coded.len();
    let others = decode_others(kind, coded, count as usize)?;
    let mut out = vec![common; raw_len];
    let mut gaps = GapReader::new(&stored[pos..], u32::from(k));
    let mut at = 0usize;
    for &b in others.iter() {
        // The errors are made on failure only: `ok_or(error)` made one and dropped it (a call
        // into its drop glue) for every byte, 3.5% of a cnn-digits/bf16 checkout's CPU.
        let Some(gap) = gaps.next() else {
            return Err(truncated("gaps"));
        };
        let Some(next) = at.checked_add(gap).filter(|&at| at < raw_len) else {
            return Err(CodecError::SparsePastSection);
        };
        at = next;
        out[at] = b;
        at += 1;
    }
    gaps.finish()?;
    Ok(out)
}

/// Reads Rice-coded gaps, least significant bit first.
struct GapReader<'a> {
    bytes: &'a [u8],
    /// Bits consumed.
    bit: usize,
    k: u32,
}

impl<'a> GapReader<'a> {
    fn new(bytes: &'a [u8], k: u32) -> Self {
        GapReader { bytes, bit: 0, k }
    }

    /// The next 57 or more bits from `bit` (zeros past the end).
    #[inline]
    fn peek(&self) -> u64 {
        let at = self.bit / 8;
        let word = match self.bytes.get(at..at + 8) {
            Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
            None => {
                let mut b = [0u8; 8];
                let tail = self.bytes.get(at..).unwrap_or_default();
                b[..tail.len()].copy_from_slice(tail);
                u64::from_le_bytes(b)
            }
        };
        word >> (self.bit % 8)
    }

    /// The next gap, or `None` where the bits end first.
    #[inline]
    fn next(&mut self) -> Option<usize> {
        let total = self.bytes.len() * 8;
        let mut zeros = 0usize;
        let mut word = self.peek();
        // Long runs of zero bits (gaps over 56 << k): 56 at a time.
        while word & ((1 << 56) - 1) == 0 {
            zeros += 56;
            self.bit += 56;
            if self.bit >= total {
                return None;
            }
            word = self.peek();
        }
        let z = word.trailing_zeros() as usize;
        zeros += z;
        self.bit += z + 1;
        let low = self.peek() & ((1u64 << self.k) - 1);
        self.bit += self.k as usize;
        if self.bit > total {
            return None;
        }
        zeros
            .checked_shl(self.k)
            .filter(|&high| high >> self.k == zeros)
            .map(|high| high | low as usize)
    }

    /// Fails unless the gaps took every byte, the last one padded with zero bits.
    fn finish(&self) -> CodecResult<()> {
        let used = self.bit.div_ceil(8);
        if used != self.bytes.len() || self.peek() != 0 && self.bit < self.bytes.len() * 8 {
            return Err(CodecError::TrailingBytes {
                count: self.bytes.len().saturating_sub(used).max(1),
                after: "the gaps of a sparse section",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_bytes::drawn;

    /// Codes the other bytes as they are.
    fn stored(others: &[u8]) -> (Entropy, Vec<u8>) {
        (Entropy::Stored, others.to_vec())
    }

    /// [`encode_around`] `common`, other bytes stored.
    fn around(data: &[u8], common: u8, limit: usize) -> Option<Vec<u8>> {
        let count = data.iter().filter(|&&b| b != common).count();
        encode_around(data, common, count, limit, stored)
    }

    fn decode_stored(stored: &[u8], raw_len: usize) -> CodecResult<Vec<u8>> {
        decode(stored, raw_len, |kind, bytes, len| {
            super::super::entropy::decompress(kind, bytes, len)
        })
    }

    #[test]
    fn round_trips_at_every_density_and_edge() {
        for (len, one_in) in [
            (600, 2),
            (4096, 4),
            (10_000, 20),
            (100_000, 3000),
            (70_000, 0),
        ] {
            for common in [0u8, 0x3f, 0xff] {
                let mut data = drawn(len, |x| {
                    if one_in > 0 && x % one_in == 0 {
                        (x >> 40) as u8
                    } else {
                        common
                    }
                });
                // Other bytes at both ends, and a gap longer than 56 << k bits can hold.
                data[0] = common.wrapping_add(1);
                let last = data.len() - 1;
                data[last] = common.wrapping_add(2);
                let coded = around(&data, common, usize::MAX).unwrap();
                assert_eq!(decode_stored(&coded, len).unwrap(), data, "{len} {one_in}");
            }
        }
        // Nothing but the common value: no other bytes, no gaps.
        let flat = vec![9u8; 5000];
        let coded = around(&flat, 9, usize::MAX).unwrap();
        assert!(coded.len() <= 5, "{}", coded.len());
        assert_eq!(decode_stored(&coded, 5000).unwrap(), flat);
    }

    #[test]
    fn every_cpu_finds_the_same_bytes() {
        for len in [0, 7, 64, 200, 4099] {
            let data = drawn(len, |x| if x % 9 == 0 { (x >> 40) as u8 } else { 4 });
            let count = data.iter().filter(|&&b| b != 4).count();
            let mut words = Split {
                others: vec![0; count],
                gaps: vec![0; count],
                found: 0,
                next: 0,
            };
            split_words(&data, 4, 0, &mut words);
            assert_eq!(words.found, count);
            assert_eq!(split(&data, 4, count), (words.others, words.gaps), "{len}");
        }
    }

    #[test]
    fn gaps_cost_near_their_entropy() {
        // One byte in 50 differs, independently: the gaps are geometric, entropy
        // H(0.02) / 0.02 = 7.07 bits per gap; Rice codes them within 3%.
        let len = 1 << 20;
        let data = drawn(len, |x| if x % 50 == 0 { 1 } else { 0 });
        let (others, gaps) = split(&data, 0, data.iter().filter(|&&b| b != 0).count());
        assert_eq!(others.len(), gaps.len());
        let (_, bits) = best_parameter(&gaps);
        let p = gaps.len() as f64 / len as f64;
        let entropy = len as f64 * -(p * p.log2() + (1.0 - p) * (1.0 - p).log2());
        assert!((bits as f64) < 1.03 * entropy, "{bits} vs {entropy}");
        // The parameter found is the best of all.
        let (k, best) = best_parameter(&gaps);
        for other in 0..=MAX_K {
            let cost = gaps.iter().map(|&g| u64::from(g >> other)).sum::<u64>()
                + gaps.len() as u64 * u64::from(other + 1);
            assert!(cost >= best, "k {other} codes in {cost} < k {k}'s {best}");
        }
    }

    #[test]
    fn only_mostly_one_value_is_tried() {
        let mut counts = [0u64; 256];
        counts[5] = 750;
        counts[6] = 250;
        assert_eq!(common_value(&counts, 1000), Some(5));
        counts[5] = 749;
        counts[6] = 251;
        assert_eq!(common_value(&counts, 1000), None);
        // 95% zeros, the rest spread over 4 values: rANS's table fits them, little to win,
        // except against the wide stream's states.
        let few: [u64; 256] =
            std::array::from_fn(|v| [95_000, 1250, 1250, 1250, 1250, 0][v.min(5)]);
        assert!(!may_win(&few, 100_000, 0, false));
        assert!(may_win(&few, 100_000, 0, true));
        // The rest spread over 200 values, each under a unit of rANS's table: it would
        // code each as if it had one.
        let many: [u64; 256] = std::array::from_fn(|v| match v {
            0 => 96_000,
            1..=200 => 20,
            _ => 0,
        });
        assert!(may_win(&many, 100_000, 0, false));
    }

    #[test]
    fn a_coding_at_the_limit_is_refused() {
        let data = drawn(10_000, |x| if x % 10 == 0 { x as u8 } else { 0 });
        let coded = around(&data, 0, usize::MAX).unwrap();
        assert!(around(&data, 0, coded.len()).is_none());
        assert_eq!(around(&data, 0, coded.len() + 1), Some(coded));
    }

    #[test]
    fn damaged_sections_are_errors() {
        let data = drawn(4000, |x| if x % 7 == 0 { x as u8 | 1 } else { 0 });
        let coded = around(&data, 0, usize::MAX).unwrap();
        let err = |bytes: &[u8], len| decode_stored(bytes, len).unwrap_err().to_string();
        // Cut anywhere: an error, never a panic; a byte changed anywhere: never a panic.
        for cut in 0..coded.len() {
            assert!(decode_stored(&coded[..cut], 4000).is_err(), "cut at {cut}");
            let mut changed = coded.clone();
            changed[cut] ^= 0x5a;
            let _ = decode_stored(&changed, 4000);
        }
        assert!(err(&coded[..1], 4000).contains("truncated in header"));
        let mut extra = coded.clone();
        extra.push(0);
        assert!(err(&extra, 4000).contains("trailing bytes after the gaps"));
        // A section shorter than the gaps place bytes in.
        assert!(err(&coded, 3000).contains("go past the end"));
        // The other bytes coded as sparse again, or a parameter over 31.
        let mut nested = coded.clone();
        let tag_at = 2 + 2; // common, k, a two-byte count
        nested[tag_at] = Entropy::Sparse as u8;
        assert!(
            err(&nested, 4000).contains("other bytes 7"),
            "{}",
            err(&nested, 4000)
        );
        let mut k = coded.clone();
        k[1] = 40;
        assert!(err(&k, 4000).contains("gap parameter 40"));
        // More other bytes declared than the section holds.
        assert!(err(&coded, 100).contains("over the 100 limit"));
    }
}
