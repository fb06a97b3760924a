//! Byte histograms: what every section's coder choice and rANS table start from, taken over
//! every byte a commit codes (a fifth of a lossless commit's coding time before this module).
//!
//! Three ways, one result:
//! - short sections (most of a small-tensor checkpoint's sections are a few hundred bytes)
//!   count into one table: the eight tables below cost more to clear and add up than their
//!   bytes take to count (~270 ns against ~80 for 64 bytes);
//! - long sections count into eight tables, so runs of one value (common in delta planes) do
//!   not serialize on one counter, eight bytes read as one word;
//! - where the CPU has AVX-512 BW, long sections go 64 bytes at a time: one compare against
//!   the section's first byte finds the block's other bytes, and a block of few others counts
//!   only those. A delta's sign and exponent planes are 90-99% one value and count 2.5-15
//!   times faster so; a block of many others is counted word by word as before.

/// Sections shorter than this count into one table.
const ONE_TABLE_BELOW: usize = 256;

/// A 64-byte block with at most this many bytes unlike the section's first is counted by its
/// other bytes only (each a bit-scan and an increment); more, and counting its eight words is
/// cheaper.
#[cfg(target_arch = "x86_64")]
const FEW_OTHERS: u32 = 12;

/// The count of each byte value in `data`.
pub fn histogram(data: &[u8]) -> [u64; 256] {
    if data.len() < ONE_TABLE_BELOW {
        return one_table(data);
    }
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has the features the kernel is compiled for (checked above).
        return unsafe { avx512::by_blocks(data) };
    }
    let mut tables = Tables::new();
    tables.count(data);
    tables.sum()
}

fn one_table(data: &[u8]) -> [u64; 256] {
    let mut counts = [0u64; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    counts
}

/// Eight tables counted in turn. u32 per table holds 4 GiB of input per call; sections are
/// at most 256 MiB.
struct Tables([[u32; 256]; 8]);

impl Tables {
    fn new() -> Tables {
        Tables([[0; 256]; 8])
    }

    /// Counts `data`, its whole 8-byte words one byte per table.
    #[inline(always)]
    fn count(&mut self, data: &[u8]) {
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.count_word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        for &b in words.remainder() {
            self.0[0][b as usize] += 1;
        }
    }

    #[inline(always)]
    fn count_word(&mut self, v: u64) {
        for (k, table) in self.0.iter_mut().enumerate() {
            table[((v >> (8 * k)) & 0xff) as usize] += 1;
        }
    }

    fn sum(&self) -> [u64; 256] {
        let mut counts = [0u64; 256];
        for (s, c) in counts.iter_mut().enumerate() {
            *c = self.0.iter().map(|t| u64::from(t[s])).sum();
        }
        counts
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Tables, FEW_OTHERS};
    use std::arch::x86_64::*;

    /// Whether this CPU runs [`by_blocks`] (checked once by the standard library's cache).
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    /// The histogram of `data` (not empty), 64 bytes at a time against its first byte.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn by_blocks(data: &[u8]) -> [u64; 256] {
        let common = data[0];
        let spread = _mm512_set1_epi8(common as i8);
        let mut tables = Tables::new();
        let mut like_common = 0u64;
        let blocks = data.chunks_exact(64);
        let tail = blocks.remainder();
        for block in blocks {
            // SAFETY: `block` is 64 readable bytes.
            let v = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
            let mut others = _mm512_cmpneq_epi8_mask(v, spread);
            let n = others.count_ones();
            if n > FEW_OTHERS {
                tables.count(block);
                continue;
            }
            like_common += u64::from(64 - n);
            while others != 0 {
                // Alternate tables so that equal other bytes do not serialize on one counter.
                let table = (others.count_ones() & 7) as usize;
                tables.0[table][block[others.trailing_zeros() as usize] as usize] += 1;
                others &= others - 1;
            }
        }
        tables.count(tail);
        let mut counts = tables.sum();
        counts[common as usize] += like_common;
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_bytes::drawn;

    /// Every way of counting agrees with one counter per byte, at every length around the
    /// thresholds and every density of the first byte's value, where that value is common or
    /// not.
    #[test]
    fn every_way_counts_the_same() {
        for len in [0, 1, 63, 64, 65, 255, 256, 257, 1000, 4096, 70_001] {
            for per_mille in [0, 500, 900, 990, 1000] {
                let data = drawn(len, |r| {
                    if r % 1000 < per_mille {
                        7
                    } else {
                        (r >> 32) as u8
                    }
                });
                let want = one_table(&data);
                assert_eq!(histogram(&data), want, "{len} bytes, {per_mille}/1000");
                let mut tables = Tables::new();
                tables.count(&data);
                assert_eq!(tables.sum(), want, "{len}");
                #[cfg(target_arch = "x86_64")]
                if avx512::available() && !data.is_empty() {
                    // SAFETY: features checked.
                    assert_eq!(unsafe { avx512::by_blocks(&data) }, want, "{len}");
                }
            }
        }
    }
}
