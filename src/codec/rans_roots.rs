//! The roots table of a rANS stream ([`super::rans::Layout::Roots`]): each symbol's count as
//! its square root rounded to an integer, Exp-Golomb coded; the frequencies are the squares
//! normalized as counts are.
//!
//! Why roots: rounding the root of a count `c` moves `c` by about `sqrt(c)`, which costs the
//! coding about a quarter of a bit per present symbol (`1 / (6 ln 2)` on average) whatever `c`
//! is, while the table spends about half the bits the count itself would. On the short code
//! streams of a lossy trajectory (a few hundred to a few thousand bytes, 40-80 values) the
//! compact table of 12-bit frequencies was 9% of the coding and what Zstd's Huffman still won
//! by (BENCHMARKS.md, "Roots tables").
//!
//! Layout: `[last present symbol u8]`, then the roots of the symbols from 0 to that one as
//! Exp-Golomb codes, bits least significant first, zero-padded to a byte. A value `v` of order
//! `k` is `u = (v >> k) + 1` of `z + 1` bits: `z` zero bits, a one bit, the low `z` bits of
//! `u`, then the low `k` bits of `v`. A root's order follows the two roots before it (0 where
//! there are none): `k = max(floor(log2(m + 1)) - 1, 0)` for their mean `m = (a + b) / 2`
//! (integer division), so neighbouring counts, which are alike in a code stream's histogram,
//! pick each other's order. A zero root is followed by the number of zero roots after it (order
//! 0), and the root after those, never zero, is written less one with the order of a table's
//! first root: a few values far apart (a run-length stream's 0, 1 and 255) cost a few bytes,
//! not a bit per absent symbol between them.

use super::bits::BitSink;
use super::error::{CodecError, CodecResult};

/// Roots are below `2^ROOT_BITS`: squares below 2^42, so 256 of them times the table size
/// stay in 64 bits when normalized. A section would need 2^42 bytes of one value to reach it.
const ROOT_BITS: u32 = 21;

/// Each symbol's count's square root rounded to the nearest integer (at least 1 for a present
/// symbol, below `2^ROOT_BITS`).
pub(super) fn roots(counts: &[u64; 256]) -> [u32; 256] {
    const MAX: u64 = (1 << ROOT_BITS) - 1;
    std::array::from_fn(|s| {
        let c = counts[s];
        if c == 0 {
            return 0;
        }
        if c >= MAX * MAX {
            return MAX as u32;
        }
        // Below 2^42 the float root's floor is the integer one (a root's distance to the next
        // integer is over 2^-43 of it, far above a double's rounding), and a fraction of the
        // cost of `isqrt`: every section measured computes 256 of them.
        let r = (c as f64).sqrt() as u64;
        // Nearest: `(r + 1/2)^2 = r^2 + r + 1/4`, so a count past `r^2 + r` rounds up.
        (r + u64::from(c - r * r > r)) as u32
    })
}

/// The weights a table of roots stands for: their squares.
pub(super) fn squares(roots: &[u32; 256]) -> [u64; 256] {
    std::array::from_fn(|s| u64::from(roots[s]) * u64::from(roots[s]))
}

/// The Exp-Golomb order of the root after `a` and `b` (the two before it).
fn order(a: u32, b: u32) -> u32 {
    let mean = (a + b) / 2;
    (31 - (mean + 1).leading_zeros()).saturating_sub(1)
}

/// The last present symbol, `None` for an empty table.
fn last(roots: &[u32; 256]) -> Option<usize> {
    roots.iter().rposition(|&r| r > 0)
}

/// Hands `code` the Exp-Golomb codes, `(value, order)`, that write the roots up to `last`
/// (nonzero), in order.
fn codes(roots: &[u32; 256], last: usize, mut code: impl FnMut(u32, u32)) {
    let (mut a, mut b) = (0, 0);
    let mut s = 0;
    while s <= last {
        let r = roots[s];
        code(r, order(a, b));
        (a, b) = (b, r);
        s += 1;
        if r == 0 {
            let run = roots[s..].iter().take_while(|&&r| r == 0).count();
            s += run;
            code(run as u32, 0);
            // Nonzero: the run ends at the last symbol at the latest.
            code(roots[s] - 1, 0);
            (a, b) = (0, roots[s]);
            s += 1;
        }
    }
}

/// Bits of `v` as an Exp-Golomb code of order `k`.
fn code_bits(v: u32, k: u32) -> u32 {
    let z = 31 - ((v >> k) + 1).leading_zeros();
    2 * z + 1 + k
}

/// Bytes [`put`] writes for these roots (1 for an empty table, which is never written).
pub(super) fn size(roots: &[u32; 256]) -> usize {
    let Some(last) = last(roots) else { return 1 };
    let mut bits = 0;
    codes(roots, last, |v, k| bits += code_bits(v, k));
    1 + bits.div_ceil(8) as usize
}

/// Writes the table of these roots (at least one nonzero).
pub(super) fn put(out: &mut Vec<u8>, roots: &[u32; 256]) {
    let last = last(roots).expect("a table of at least one symbol");
    out.push(last as u8);
    let mut bits = BitSink::with_capacity(64 * (last + 1));
    codes(roots, last, |v, k| {
        let u = u64::from(v >> k) + 1;
        let z = 63 - u.leading_zeros();
        // `z` zeros and a one, then the low `z` bits of `u`, then the low `k` bits of `v`.
        bits.append(1 << z, z + 1);
        bits.append(u & ((1 << z) - 1), z);
        bits.append(u64::from(v) & ((1 << k) - 1), k);
    });
    bits.finish_into(out);
}

/// Reads a table of roots from `stream` at `pos`, moving `pos` past it.
pub(super) fn read(stream: &[u8], pos: &mut usize) -> CodecResult<[u32; 256]> {
    let truncated = || CodecError::RansTruncated { part: "table" };
    let bad = |reason| CodecError::RansBadRoots { reason };
    let last = usize::from(*stream.get(*pos).ok_or_else(truncated)?);
    let mut bits = BitReader {
        bytes: &stream[*pos + 1..],
        bit: 0,
    };
    // The next code of order `k`, below 2^21.
    let mut next = |k: u32| -> CodecResult<u32> {
        // More zeros than this and `(u - 1) << k` is 2^21 or more.
        let z = bits.zeros(ROOT_BITS - k).ok_or_else(truncated)?;
        if z + k > ROOT_BITS {
            return Err(bad("a value of 2^21 or more"));
        }
        let u = (1 << z) | bits.take(z).ok_or_else(truncated)?;
        let v = ((u - 1) << k) | bits.take(k).ok_or_else(truncated)?;
        if v >> ROOT_BITS != 0 {
            return Err(bad("a value of 2^21 or more"));
        }
        Ok(v)
    };
    let mut roots = [0u32; 256];
    let (mut a, mut b) = (0, 0);
    let mut s = 0;
    while s <= last {
        let r = next(order(a, b))?;
        roots[s] = r;
        (a, b) = (b, r);
        s += 1;
        if r == 0 {
            s += next(0)? as usize;
            if s > last {
                return Err(bad("a run of absent symbols past the last one"));
            }
            let r = next(0)? + 1;
            if r >> ROOT_BITS != 0 {
                return Err(bad("a value of 2^21 or more"));
            }
            roots[s] = r;
            (a, b) = (0, roots[s]);
            s += 1;
        }
    }
    let used = bits.bit.div_ceil(8);
    let spare = bits.bit % 8;
    if spare != 0 && bits.bytes[used - 1] >> spare != 0 {
        return Err(bad("padding bits are set"));
    }
    *pos += 1 + used;
    Ok(roots)
}

/// Bits read least significant first.
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Bits taken.
    bit: usize,
}

impl BitReader<'_> {
    /// Bits left.
    fn left(&self) -> usize {
        self.bytes.len() * 8 - self.bit
    }

    /// The next 57 or more bits, first lowest (zeros past the end): a table is read a word at
    /// a time, not a bit (every rANS section a checkout decodes reads one).
    fn peek(&self) -> u64 {
        let at = self.bit / 8;
        let mut word = [0u8; 8];
        let tail = &self.bytes[at.min(self.bytes.len())..];
        let n = tail.len().min(8);
        word[..n].copy_from_slice(&tail[..n]);
        u64::from_le_bytes(word) >> (self.bit % 8)
    }

    /// The next `count` (at most 32) bits, first lowest; `None` past the end.
    fn take(&mut self, count: u32) -> Option<u32> {
        if count as usize > self.left() {
            return None;
        }
        let value = self.peek() & ((1u64 << count) - 1);
        self.bit += count as usize;
        Some(value as u32)
    }

    /// The zero bits before the next one bit, which it takes as well; where there are more
    /// than `limit` (at most 56), `limit + 1` of them, taken; `None` where the bits end first.
    fn zeros(&mut self, limit: u32) -> Option<u32> {
        let z = self.peek().trailing_zeros().min(limit + 1);
        if z > limit {
            if z as usize > self.left() {
                return None;
            }
            self.bit += z as usize;
            return Some(z);
        }
        // The one bit must be in the stream: bits past its end read as zeros.
        if z as usize >= self.left() {
            return None;
        }
        self.bit += z as usize + 1;
        Some(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_round_to_the_nearest() {
        let mut counts = [0u64; 256];
        for (s, c) in [0u64, 1, 2, 3, 6, 7, 12, 13, 1 << 40, u64::MAX]
            .into_iter()
            .enumerate()
        {
            counts[s] = c;
        }
        let r = roots(&counts);
        // sqrt: 0, 1, 1.41, 1.73, 2.45, 2.65, 3.46, 3.61, 2^20, over the cap.
        assert_eq!(&r[..10], &[0, 1, 1, 2, 2, 3, 3, 4, 1 << 20, (1 << 21) - 1]);
        assert_eq!(squares(&r)[..4], [0, 1, 1, 4]);
        // Every count near a square and a half-square, up to the cap: the integer rule.
        let max = (1u64 << 21) - 1;
        for r in (1..2000).chain((max - 2000..=max).step_by(7)).chain([max]) {
            for c in [r * r - 1, r * r, r * r + 1, r * r + r, r * r + r + 1] {
                let mut counts = [0u64; 256];
                counts[0] = c;
                let nearest = (c.isqrt() + u64::from(c - c.isqrt().pow(2) > c.isqrt())).min(max);
                assert_eq!(u64::from(roots(&counts)[0]), nearest, "count {c}");
            }
        }
    }

    #[test]
    fn orders_follow_the_two_roots_before() {
        assert_eq!(order(0, 0), 0);
        assert_eq!(order(2, 3), 0); // mean 2: log2(3) = 1
        assert_eq!(order(3, 4), 1); // mean 3: log2(4) = 2
        assert_eq!(order(100, 100), 5); // log2(101) = 6
    }

    #[test]
    fn tables_read_back_at_their_size() {
        let cases: [&[(usize, u32)]; 5] = [
            &[(0, 1)],
            &[(255, 1)],
            &[(3, 7), (4, 40), (5, 9), (200, 1)],
            &[(0, (1 << 21) - 1), (1, 1), (2, (1 << 21) - 1)],
            &[(7, 12345), (8, 0), (9, 3)],
        ];
        for case in cases {
            let mut roots = [0u32; 256];
            for &(s, r) in case {
                roots[s] = r;
            }
            let mut out = vec![9];
            put(&mut out, &roots);
            out.push(0xee);
            assert_eq!(out.len(), 2 + size(&roots), "{case:?}");
            let mut pos = 1;
            assert_eq!(read(&out, &mut pos).unwrap(), roots, "{case:?}");
            assert_eq!(pos, out.len() - 1);
        }
        let full: [u32; 256] = std::array::from_fn(|s| (s as u32 * 7919) % 300);
        let mut out = Vec::new();
        put(&mut out, &full);
        assert_eq!(read(&out, &mut 0).unwrap(), full);
    }

    proptest::proptest! {
        /// Any table (sparse or dense, roots up to the largest) reads back at its size, and a
        /// table cut short is an error, never a panic.
        #[test]
        fn any_table_round_trips(
            entries in proptest::collection::vec((0usize..256, 0u32..1 << 21), 1..40),
            dense in proptest::prelude::any::<bool>(),
        ) {
            let mut roots = [0u32; 256];
            for (i, &(s, r)) in entries.iter().enumerate() {
                roots[if dense { i } else { s }] = r;
            }
            roots[entries[0].0] = roots[entries[0].0].max(1);
            let mut out = Vec::new();
            put(&mut out, &roots);
            proptest::prop_assert_eq!(out.len(), size(&roots));
            let mut pos = 0;
            proptest::prop_assert_eq!(read(&out, &mut pos).unwrap(), roots);
            proptest::prop_assert_eq!(pos, out.len());
            for cut in 0..out.len() {
                proptest::prop_assert!(read(&out[..cut], &mut 0).is_err());
            }
        }
    }

    /// Values far apart cost a few bytes: a zero run is one code, not a bit per symbol.
    #[test]
    fn absent_symbols_between_cost_a_code_per_run() {
        let mut roots = [0u32; 256];
        (roots[0], roots[1], roots[255]) = (150, 12, 3);
        // 15 + 6 bits for 150 and 12, 6 + 15 for the zero and its run of 252, 3 for 3 - 1.
        assert_eq!(size(&roots), 1 + 6);
        // The run split by a 1 (written as 0, one bit): runs of 125 and 126 (13 bits each) and
        // a second zero (one bit, its order from 0 and 1).
        roots[128] = 1;
        assert_eq!(size(&roots), 1 + 8);
    }

    #[test]
    fn damaged_tables_are_errors() {
        let message = |stream: &[u8]| read(stream, &mut 0).unwrap_err().to_string();
        // Symbol 0 only, root 0 (a one bit), then a run of none (a one bit): past the last.
        assert_eq!(
            message(&[0, 0b11]),
            "bad rANS roots table: a run of absent symbols past the last one"
        );
        // Symbols 0 and 1: root 0, a run of none, then 2^21 - 1 less one (`z` = 21 zeros, a
        // one, 21 bits of ones... `u` = 2^21): 2^21, too large.
        let mut sink = BitSink::with_capacity(64);
        sink.append(0b11, 2);
        sink.append(1 << 21, 22);
        sink.append((1 << 21) - 1, 21);
        let mut stream = vec![1];
        sink.finish_into(&mut stream);
        assert_eq!(
            message(&stream),
            "bad rANS roots table: a value of 2^21 or more"
        );
        // Root 1 (`010`, least significant first: 0, 1, 0), then a padding bit set.
        assert_eq!(
            message(&[0, 0b1000_0010]),
            "bad rANS roots table: padding bits are set"
        );
        // Twenty-two zero bits: a root of 2^21 or more.
        assert_eq!(
            message(&[0, 0, 0, 0]),
            "bad rANS roots table: a value of 2^21 or more"
        );
        assert_eq!(message(&[]), "rANS stream truncated in table");
        assert_eq!(message(&[3, 0b0101_0010]), "rANS stream truncated in table");
    }
}
