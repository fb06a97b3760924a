//! Order-0 range asymmetric numeral system (rANS) coder over bytes.
//!
//! Zstd codes literals with Huffman, which cannot spend less than one bit per byte: dithered
//! delta codes with an entropy of ~1.3 bits took ~1.7 bits under Zstd. rANS with a static
//! 12-bit frequency table reaches the order-0 entropy within a fraction of a percent.
//!
//! Stream: `[count varint][symbols u8 (0 = 256)] ([symbol u8][freq varint])* [4 states, 4 bytes
//! each, little-endian][16-bit words, little-endian...]`. Symbol `i` is coded with state `i % 4`:
//! four independent dependency chains keep the core busy. A state lives in [2^15, 2^31) and is
//! renormalized by whole 16-bit words, so each symbol reads or writes at most one word and the
//! step needs no branch. The count is explicit because a one-symbol stream carries no length
//! otherwise. The earlier two-state, byte-renormalized stream is read by `rans_v1`.

use super::error::{CodecError, CodecResult};
use super::varint::{get_varint, put_varint};

const SCALE_BITS: u32 = 12;
const TOTAL: u32 = 1 << SCALE_BITS;
/// Lower end of the normalized state interval.
const LOW: u32 = 1 << 15;
/// Interleaved states.
const STATES: usize = 4;

/// Frequencies scaled to sum to [`TOTAL`], every present symbol at least 1.
pub(super) fn normalize(counts: &[u64; 256]) -> [u32; 256] {
    let n: u64 = counts.iter().sum();
    let mut f = [0u32; 256];
    if n == 0 {
        return f;
    }
    for (fs, &c) in f.iter_mut().zip(counts) {
        if c > 0 {
            *fs = ((c as u128 * TOTAL as u128 / n as u128) as u32).max(1);
        }
    }
    let mut sum: i64 = f.iter().map(|&x| x as i64).sum();
    // Give or take the rounding difference from the largest symbols, never below 1.
    while sum != TOTAL as i64 {
        let (i, _) = f
            .iter()
            .enumerate()
            .max_by_key(|(_, &x)| x)
            .expect("256 entries");
        if sum > TOTAL as i64 {
            let take = (sum - TOTAL as i64).min(f[i] as i64 - 1);
            if take == 0 {
                break;
            }
            f[i] -= take as u32;
            sum -= take;
        } else {
            f[i] += (TOTAL as i64 - sum) as u32;
            sum = TOTAL as i64;
        }
    }
    f
}

/// Byte histogram. Four tables, summed at the end, so runs of one byte value (the common case
/// in delta planes) do not serialize on one counter.
pub fn histogram(data: &[u8]) -> [u64; 256] {
    let mut tables = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        tables[0][q[0] as usize] += 1;
        tables[1][q[1] as usize] += 1;
        tables[2][q[2] as usize] += 1;
        tables[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        tables[0][b as usize] += 1;
    }
    // u32 per table holds up to 4 GiB of input per call; sections are at most 256 MiB.
    let mut counts = [0u64; 256];
    for (s, c) in counts.iter_mut().enumerate() {
        *c = tables.iter().map(|t| u64::from(t[s])).sum();
    }
    counts
}

/// Bytes [`encode`] would produce for data with this histogram, estimated from its order-0
/// entropy, so callers run the coder only where it can win.
pub fn estimated_size(counts: &[u64; 256]) -> usize {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return 0;
    }
    let n = n as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| -(c as f64) * (c as f64 / n).log2())
        .sum();
    let symbols = counts.iter().filter(|&&c| c > 0).count();
    (bits / 8.0) as usize + 3 * symbols + 5
}

/// One symbol's encoder constants: `x -> ((x / freq) << SCALE_BITS) + x % freq + start`
/// computed with a multiply by a reciprocal instead of a division (exact for every state the
/// encoder can hold, which stays below 2^31).
struct EncSymbol {
    x_max: u32,
    rcp: u32,
    shift: u32,
    bias: u32,
    cmpl_freq: u32,
}

impl EncSymbol {
    const ABSENT: EncSymbol = EncSymbol {
        x_max: 0,
        rcp: 0,
        shift: 0,
        bias: 0,
        cmpl_freq: 0,
    };

    fn new(start: u32, freq: u32) -> EncSymbol {
        let x_max = ((LOW >> SCALE_BITS) << 16) * freq;
        let cmpl_freq = TOTAL - freq.min(TOTAL);
        if freq < 2 {
            // q = x - 1 (x >= 1), so x + bias + q * (TOTAL - 1) = x * TOTAL + start.
            return EncSymbol {
                x_max,
                rcp: u32::MAX,
                shift: 0,
                bias: (start + TOTAL).wrapping_sub(1),
                cmpl_freq,
            };
        }
        let shift = 32 - (freq - 1).leading_zeros(); // ceil(log2(freq))
        let rcp = (1u64 << (shift + 31)).div_ceil(u64::from(freq));
        EncSymbol {
            x_max,
            rcp: rcp as u32,
            shift: shift - 1,
            bias: start,
            cmpl_freq,
        }
    }

    fn apply(&self, x: u32) -> u32 {
        let q = ((u64::from(x) * u64::from(self.rcp)) >> 32) as u32 >> self.shift;
        x.wrapping_add(self.bias)
            .wrapping_add(q.wrapping_mul(self.cmpl_freq))
    }
}

/// Encodes `data`. Returns `None` when the data is empty or has more distinct symbols than the
/// table can give a nonzero frequency (never for bytes; kept for safety).
pub fn encode(data: &[u8]) -> Option<Vec<u8>> {
    encode_counted(data, &histogram(data), usize::MAX)
}

/// [`encode`] with the histogram already taken (`counts` must be `histogram(data)`), giving up
/// (`None`) once the coded words pass `limit` bytes: a caller that has a smaller coding
/// already need not pay for this one, nor clear a buffer twice the input's size.
pub fn encode_counted(data: &[u8], counts: &[u64; 256], limit: usize) -> Option<Vec<u8>> {
    if data.is_empty() {
        return None;
    }
    let freq = normalize(counts);
    if freq.iter().map(|&x| x as u64).sum::<u64>() != TOTAL as u64 {
        return None;
    }
    let mut start = [0u32; 256];
    let mut acc = 0;
    for s in 0..256 {
        start[s] = acc;
        acc += freq[s];
    }
    // Absent symbols are never coded: skip their reciprocals (small sections are common).
    let symbols: [EncSymbol; 256] = std::array::from_fn(|s| match freq[s] {
        0 => EncSymbol::ABSENT,
        f => EncSymbol::new(start[s], f),
    });
    // Words are written backwards from the end, so the decoder reads them forwards. A symbol
    // emits at most one word; two spare bytes let the store below be unconditional.
    let mut words = vec![0u8; (2 * data.len()).min(limit) + 2];
    let mut pos = words.len();
    let mut xs = [LOW; STATES];
    let mut put = |x: &mut u32, b: u8, pos: &mut usize| -> Option<()> {
        let sym = &symbols[b as usize];
        let emit = *x >= sym.x_max;
        words[*pos - 2..*pos].copy_from_slice(&(*x as u16).to_le_bytes());
        *pos -= 2 * usize::from(emit);
        *x >>= 16 * u32::from(emit);
        *x = sym.apply(*x);
        (*pos >= 2).then_some(())
    };
    let tail = data.len() % STATES;
    let whole = data.len() - tail;
    for (i, &b) in data[whole..].iter().enumerate().rev() {
        put(&mut xs[i], b, &mut pos)?;
    }
    for quad in data[..whole].chunks_exact(STATES).rev() {
        for k in (0..STATES).rev() {
            put(&mut xs[k], quad[k], &mut pos)?;
        }
    }
    let present: Vec<usize> = (0..256).filter(|&s| freq[s] > 0).collect();
    let mut stream = Vec::with_capacity(words.len() - pos + 3 * present.len() + 26);
    put_varint(&mut stream, data.len() as u64);
    stream.push(present.len() as u8);
    for &s in &present {
        stream.push(s as u8);
        put_varint(&mut stream, freq[s] as u64);
    }
    for x in xs {
        stream.extend_from_slice(&x.to_le_bytes());
    }
    stream.extend_from_slice(&words[pos..]);
    Some(stream)
}

/// Reads the symbol count and frequency table that open a stream (both stream versions share
/// them), checking the count against `len`.
pub(super) fn read_table(stream: &[u8], pos: &mut usize, len: usize) -> CodecResult<[u32; 256]> {
    let next = |pos: &mut usize| -> CodecResult<u8> {
        let b = *stream
            .get(*pos)
            .ok_or(CodecError::RansTruncated { part: "table" })?;
        *pos += 1;
        Ok(b)
    };
    let count = get_varint(stream, pos)?;
    if count != len as u64 {
        return Err(CodecError::RansSymbolCount {
            count,
            expected: len,
        });
    }
    let n = match next(pos)? {
        0 => 256,
        k => k as usize,
    };
    let mut freq = [0u32; 256];
    for _ in 0..n {
        let s = next(pos)? as usize;
        let v = get_varint(stream, pos)?;
        if v == 0 || v > TOTAL as u64 || freq[s] != 0 {
            return Err(CodecError::RansBadTable);
        }
        freq[s] = v as u32;
    }
    if freq.iter().map(|&x| x as u64).sum::<u64>() != TOTAL as u64 {
        return Err(CodecError::RansTableSum);
    }
    Ok(freq)
}

/// The decoder's table: for each of the [`TOTAL`] slots one packed u32 of frequency - 1
/// (12 bits), slot - start (12 bits) and symbol (8 bits), so a step does one lookup.
pub(super) type SlotTable = Box<[u32; TOTAL as usize]>;

/// Builds the [`SlotTable`] of a frequency table that sums to [`TOTAL`].
pub(super) fn slot_table(freq: &[u32; 256]) -> SlotTable {
    let mut slots: SlotTable = Box::new([0; TOTAL as usize]);
    let mut slot = 0;
    for (s, &fr) in freq.iter().enumerate() {
        for k in 0..fr {
            slots[slot] = (fr - 1) | (k << SCALE_BITS) | ((s as u32) << 24);
            slot += 1;
        }
    }
    slots
}

/// One decode step's symbol and new (not yet renormalized) state.
#[inline(always)]
pub(super) fn step(slots: &SlotTable, x: u32) -> (u8, u32) {
    let e = slots[(x & (TOTAL - 1)) as usize];
    let (fr, bias) = ((e & (TOTAL - 1)) + 1, (e >> SCALE_BITS) & (TOTAL - 1));
    ((e >> 24) as u8, fr * (x >> SCALE_BITS) + bias)
}

/// Renormalizes a decoded state with the next word `w` when it fell below [`LOW`], without a
/// branch (renormalization is as unpredictable as the data). Returns the state and the bytes
/// consumed (0 or 2).
#[inline(always)]
fn refill(x: u32, w: u16) -> (u32, usize) {
    let need = u32::from(x < LOW);
    let x = (x << (16 * need)) | (u32::from(w) & need.wrapping_neg());
    (x, 2 * need as usize)
}

/// Decodes exactly `len` symbols; malformed input is an error, never a panic.
pub fn decode(stream: &[u8], len: usize) -> CodecResult<Vec<u8>> {
    let mut pos = 0;
    let freq = read_table(stream, &mut pos, len)?;
    let slots = slot_table(&freq);
    let body = &stream[pos..];
    if body.len() < 4 * STATES {
        return Err(CodecError::RansTruncated { part: "state" });
    }
    let mut xs = [0u32; STATES];
    for (k, x) in xs.iter_mut().enumerate() {
        *x = u32::from_le_bytes(body[4 * k..4 * k + 4].try_into().expect("4 bytes"));
        // A state below LOW would read a word that was never written.
        if *x < LOW {
            return Err(CodecError::RansBadState);
        }
    }
    let words = &body[4 * STATES..];
    let mut p = 0;
    let mut out = vec![0u8; len];
    let mut quads = out.chunks_exact_mut(STATES);
    // Fast path: while a whole round of words is present, read without checking each one.
    while words.len() - p >= 2 * STATES {
        let Some(quad) = quads.next() else { break };
        let round: &[u8; 2 * STATES] = words[p..p + 2 * STATES].try_into().expect("checked");
        let mut used = 0;
        for (k, o) in quad.iter_mut().enumerate() {
            let (sym, x) = step(&slots, xs[k]);
            *o = sym;
            let w = u16::from_le_bytes([round[used], round[used + 1]]);
            let (x, n) = refill(x, w);
            xs[k] = x;
            used += n;
        }
        p += used;
    }
    let truncated = || CodecError::RansTruncated { part: "data" };
    let mut slow = |x: &mut u32, o: &mut u8| -> CodecResult<()> {
        let (sym, mut y) = step(&slots, *x);
        *o = sym;
        if y < LOW {
            let w = words.get(p..p + 2).ok_or_else(truncated)?;
            y = (y << 16) | u32::from(u16::from_le_bytes([w[0], w[1]]));
            p += 2;
        }
        *x = y;
        Ok(())
    };
    for quad in &mut quads {
        for (k, o) in quad.iter_mut().enumerate() {
            slow(&mut xs[k], o)?;
        }
    }
    for (k, o) in quads.into_remainder().iter_mut().enumerate() {
        slow(&mut xs[k], o)?;
    }
    if p != words.len() {
        return Err(CodecError::TrailingBytes {
            count: words.len() - p,
            after: "rANS data",
        });
    }
    // Decoding runs the encoder backwards, so it must end in the encoder's initial states; any
    // other state means a wrong length or damaged data.
    if xs != [LOW; STATES] {
        return Err(CodecError::RansBadEnd);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn skewed_data_reaches_its_entropy() {
        let mut x = 12345u64;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 100 {
                    0..=79 => 0,
                    80..=89 => 1,
                    _ => 255,
                }
            })
            .collect();
        let enc = encode(&data).unwrap();
        let entropy_bits = -(0.8f64 * 0.8f64.log2() + 2.0 * 0.1 * 0.1f64.log2());
        let bits = enc.len() as f64 * 8.0 / data.len() as f64;
        assert!(bits < entropy_bits * 1.01, "{bits} vs {entropy_bits}");
        assert_eq!(decode(&enc, data.len()).unwrap(), data);
    }

    #[test]
    fn reciprocal_step_equals_the_division() {
        let mut r = 0x1234_5678u64;
        for freq in (1..=TOTAL).step_by(1) {
            let start = (TOTAL - freq) / 2;
            let sym = EncSymbol::new(start, freq);
            for k in 0..64u32 {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                // The states the encoder applies a symbol to: after renormalization
                // x_max / 2^16 <= x < x_max (x_max <= 2^31), ends included.
                let lo = sym.x_max >> 16;
                let x = match k {
                    0 => lo,
                    1 => sym.x_max - 1,
                    _ => lo + (r % u64::from(sym.x_max - lo)) as u32,
                };
                let want = ((x / freq) << SCALE_BITS) + x % freq + start;
                assert_eq!(sym.apply(x), want, "freq {freq} x {x}");
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip(data in prop::collection::vec(any::<u8>(), 1..3000)) {
            let enc = encode(&data).unwrap();
            prop_assert_eq!(decode(&enc, data.len()).unwrap(), data);
        }

        #[test]
        fn hostile_streams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), len in 0usize..500) {
            let _ = decode(&bytes, len);
        }
    }
}
