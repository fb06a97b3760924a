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

/// The order-0 entropy of data with this histogram, in bytes: what no order-0 coder can beat.
pub fn order0_bytes(counts: &[u64; 256]) -> f64 {
    let n = counts.iter().sum::<u64>() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| -(c as f64) * (c as f64 / n).log2())
        .sum();
    bits / 8.0
}

/// Writes the stream header: the symbol count, then the present symbols and their frequencies
/// (one `u8` count, 0 meaning 256). `rans_v1` streams start the same way.
pub(super) fn put_header(stream: &mut Vec<u8>, count: usize, freq: &[u32; 256]) {
    put_varint(stream, count as u64);
    let present: Vec<usize> = (0..256).filter(|&s| freq[s] > 0).collect();
    stream.push(present.len() as u8);
    for &s in &present {
        stream.push(s as u8);
        put_varint(stream, u64::from(freq[s]));
    }
}

/// Where each symbol's range starts in [0, TOTAL): the test encoders' plain-division form.
#[cfg(test)]
pub(super) fn starts(freq: &[u32; 256]) -> [u32; 256] {
    let mut start = [0u32; 256];
    let mut acc = 0;
    for (st, &f) in start.iter_mut().zip(freq) {
        *st = acc;
        acc += f;
    }
    start
}

/// Bytes [`encode`] would produce for data with this histogram, estimated from its order-0
/// entropy, so callers run the coder only where it can win.
pub fn estimated_size(counts: &[u64; 256]) -> usize {
    if counts.iter().all(|&c| c == 0) {
        return 0;
    }
    let symbols = counts.iter().filter(|&&c| c > 0).count();
    order0_bytes(counts) as usize + 3 * symbols + 5
}

/// One symbol's encoder constants: `x -> ((x / freq) << SCALE_BITS) + x % freq + start`
/// computed with a multiply by a reciprocal instead of a division (exact for every state the
/// encoder can hold, which stays below 2^31). 16 bytes, aligned, so a lookup never straddles
/// a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct EncSymbol {
    x_max: u32,
    rcp: u32,
    bias: u32,
    cmpl_freq: u16,
    /// 32 + the reciprocal's extra shift: the high half and the shift in one step.
    shift: u16,
}

impl EncSymbol {
    const ABSENT: EncSymbol = EncSymbol {
        x_max: 0,
        rcp: 0,
        bias: 0,
        cmpl_freq: 0,
        shift: 32,
    };

    fn new(start: u32, freq: u32) -> EncSymbol {
        let x_max = ((LOW >> SCALE_BITS) << 16) * freq;
        let cmpl_freq = (TOTAL - freq.min(TOTAL)) as u16;
        if freq < 2 {
            // q = x - 1 (x >= 1), so x + bias + q * (TOTAL - 1) = x * TOTAL + start.
            return EncSymbol {
                x_max,
                rcp: u32::MAX,
                bias: (start + TOTAL).wrapping_sub(1),
                cmpl_freq,
                shift: 32,
            };
        }
        let shift = 32 - (freq - 1).leading_zeros(); // ceil(log2(freq))
        let rcp = (1u64 << (shift + 31)).div_ceil(u64::from(freq));
        EncSymbol {
            x_max,
            rcp: rcp as u32,
            bias: start,
            cmpl_freq,
            shift: (32 + shift - 1) as u16,
        }
    }

    #[inline(always)]
    fn apply(&self, x: u32) -> u32 {
        let q = ((u64::from(x) * u64::from(self.rcp)) >> self.shift) as u32;
        x.wrapping_add(self.bias)
            .wrapping_add(q.wrapping_mul(u32::from(self.cmpl_freq)))
    }

    /// Renormalizes `x` for this symbol and codes it: the word to store (always computed) and
    /// whether it is emitted.
    #[inline(always)]
    fn put(&self, x: u32) -> (u32, u16, bool) {
        let emit = x >= self.x_max;
        let y = if emit { x >> 16 } else { x };
        (self.apply(y), x as u16, emit)
    }
}

/// Encodes `data`. Returns `None` when the data is empty or has more distinct symbols than the
/// table can give a nonzero frequency (never for bytes; kept for safety).
pub fn encode(data: &[u8]) -> Option<Vec<u8>> {
    encode_counted(data, &histogram(data), usize::MAX)
}

/// The encoder's per-symbol constants for a normalized frequency table.
fn enc_symbols(freq: &[u32; 256]) -> [EncSymbol; 256] {
    let mut symbols = [EncSymbol::ABSENT; 256];
    let mut start = 0;
    for (sym, &f) in symbols.iter_mut().zip(freq) {
        // Absent symbols are never coded: skip their reciprocals (small sections are common).
        if f > 0 {
            *sym = EncSymbol::new(start, f);
        }
        start += f;
    }
    symbols
}

/// Codes `data` backwards into the end of `words` (16-bit words, so the decoder reads them
/// forwards). Returns the final states and the index of the first word, or `None` when the
/// words fill `words` (whose first slot is a spare that is never part of the output).
fn encode_words(
    data: &[u8],
    symbols: &[EncSymbol; 256],
    words: &mut [u16],
) -> Option<([u32; STATES], usize)> {
    let mut xs = [LOW; STATES];
    let mut pos = words.len();
    // One checked step. The store below `pos` is unconditional, so `words` holds one spare
    // slot and a step fails once that spare would be taken.
    let put_checked = |x: &mut u32, b: u8, words: &mut [u16], pos: &mut usize| -> Option<()> {
        let (y, w, emit) = symbols[b as usize].put(*x);
        words[*pos - 1] = w;
        *pos -= usize::from(emit);
        *x = y;
        (*pos >= 1).then_some(())
    };
    let tail = data.len() % STATES;
    let whole = data.len() - tail;
    for (i, &b) in data[whole..].iter().enumerate().rev() {
        put_checked(&mut xs[i], b, words, &mut pos)?;
    }
    let mut quads = data[..whole].chunks_exact(STATES).rev();
    // Fast path: a round emits at most STATES words, so while that many slots and the spare
    // remain below `pos` the stores need no check of their own.
    while pos > STATES {
        let Some(quad) = quads.next() else { break };
        let quad: &[u8; STATES] = quad.try_into().expect("STATES bytes");
        let window: &mut [u16; STATES] = (&mut words[pos - STATES..pos])
            .try_into()
            .expect("STATES words");
        let mut used = 0;
        for k in (0..STATES).rev() {
            let (y, w, emit) = symbols[quad[k] as usize].put(xs[k]);
            window[STATES - 1 - used] = w;
            used += usize::from(emit);
            xs[k] = y;
        }
        pos -= used;
    }
    for quad in quads {
        for k in (0..STATES).rev() {
            put_checked(&mut xs[k], quad[k], words, &mut pos)?;
        }
    }
    Some((xs, pos))
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
    let symbols = enc_symbols(&freq);
    // A symbol emits at most one word; one spare slot (see `encode_words`).
    let mut words = vec![0u16; data.len().min(limit / 2) + 1];
    let (xs, pos) = encode_words(data, &symbols, &mut words)?;
    let mut stream = Vec::with_capacity(2 * (words.len() - pos) + 3 * 256 + 26);
    put_header(&mut stream, data.len(), &freq);
    for x in xs {
        stream.extend_from_slice(&x.to_le_bytes());
    }
    stream.extend(words[pos..].iter().flat_map(|w| w.to_le_bytes()));
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

/// The decoder's table (both stream versions), split so a step's state update needs no
/// unpacking: for each of the [`TOTAL`] slots the frequency (low 16 bits) and slot - start
/// (high 16 bits), and apart, the symbol.
pub(super) struct Slots {
    step: Box<[u32; TOTAL as usize]>,
    symbol: Box<[u8; TOTAL as usize]>,
}

impl Slots {
    /// The table of a frequency table that sums to [`TOTAL`].
    pub(super) fn new(freq: &[u32; 256]) -> Slots {
        let mut step: Box<[u32; TOTAL as usize]> = Box::new([0; TOTAL as usize]);
        let mut symbol: Box<[u8; TOTAL as usize]> = Box::new([0; TOTAL as usize]);
        let mut slot = 0;
        for (s, &fr) in freq.iter().enumerate() {
            for k in 0..fr {
                step[slot] = fr | (k << 16);
                symbol[slot] = s as u8;
                slot += 1;
            }
        }
        Slots { step, symbol }
    }

    /// One decode step: the symbol and the new (not yet renormalized) state.
    #[inline(always)]
    pub(super) fn step(&self, x: u32) -> (u8, u32) {
        let i = (x & (TOTAL - 1)) as usize;
        let e = self.step[i];
        (self.symbol[i], (e & 0xffff) * (x >> SCALE_BITS) + (e >> 16))
    }
}

/// The decoder's fast path: whole rounds of [`STATES`] symbols while a round's words (at most
/// one per state) are present, read as one u64 with each state's word taken by shifting.
/// Returns the symbols decoded and the word bytes read. The states are passed by value so
/// they live in registers.
#[inline(always)]
fn decode_rounds(
    slots: &Slots,
    words: &[u8],
    out: &mut [u8],
    states: &mut [u32; STATES],
) -> (usize, usize) {
    let mut xs = *states;
    let mut p = 0;
    let mut done = 0;
    for quad in out.chunks_exact_mut(STATES) {
        let Some(round) = words.get(p..p + 2 * STATES) else {
            break;
        };
        let mut round = u64::from_le_bytes(round.try_into().expect("8 bytes"));
        let mut used = 0;
        for (k, o) in quad.iter_mut().enumerate() {
            let (sym, x) = slots.step(xs[k]);
            *o = sym;
            let refilled = (x << 16) | (round as u32 & 0xffff);
            let need = x < LOW;
            xs[k] = if need { refilled } else { x };
            round >>= 16 * u32::from(need);
            used += 2 * usize::from(need);
        }
        p += used;
        done += STATES;
    }
    *states = xs;
    (done, p)
}

/// Decodes exactly `len` symbols; malformed input is an error, never a panic.
pub fn decode(stream: &[u8], len: usize) -> CodecResult<Vec<u8>> {
    let mut pos = 0;
    let freq = read_table(stream, &mut pos, len)?;
    let slots = Slots::new(&freq);
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
    let mut out = vec![0u8; len];
    let fast = decode_rounds(&slots, words, &mut out, &mut xs);
    let mut p = fast.1;
    let mut quads = out[fast.0..].chunks_exact_mut(STATES);
    let truncated = || CodecError::RansTruncated { part: "data" };
    let mut slow = |x: &mut u32, o: &mut u8| -> CodecResult<()> {
        let (sym, mut y) = slots.step(*x);
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

    /// The encoder as first written (plain division, byte buffer, a check per symbol): the
    /// faster one must give the same streams, the same `None`s included.
    fn encode_reference(data: &[u8], limit: usize) -> Option<Vec<u8>> {
        if data.is_empty() {
            return None;
        }
        let freq = normalize(&histogram(data));
        let start = starts(&freq);
        let mut words = vec![0u8; (2 * data.len()).min(limit) + 2];
        let mut pos = words.len();
        let mut xs = [LOW; STATES];
        for i in (0..data.len()).rev() {
            let (x, b) = (&mut xs[i % STATES], data[i] as usize);
            let emit = *x >= ((LOW >> SCALE_BITS) << 16) * freq[b];
            words[pos - 2..pos].copy_from_slice(&(*x as u16).to_le_bytes());
            pos -= 2 * usize::from(emit);
            *x >>= 16 * u32::from(emit);
            *x = ((*x / freq[b]) << SCALE_BITS) + *x % freq[b] + start[b];
            if pos < 2 {
                return None;
            }
        }
        let mut stream = Vec::new();
        put_header(&mut stream, data.len(), &freq);
        for x in xs {
            stream.extend_from_slice(&x.to_le_bytes());
        }
        stream.extend_from_slice(&words[pos..]);
        Some(stream)
    }

    /// Bytes of `len` drawn from `alphabet` symbols, the first `skew` times likelier than the
    /// rest (xorshift, so a case is reproducible from its seed).
    fn sample(len: usize, alphabet: u32, skew: u32, seed: u64) -> Vec<u8> {
        let mut r = seed | 1;
        (0..len)
            .map(|_| {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                let v = (r % u64::from(alphabet + skew)) as u32;
                v.saturating_sub(skew) as u8
            })
            .collect()
    }

    #[test]
    fn every_short_length_matches_the_reference() {
        for len in 0..80 {
            for (alphabet, skew) in [(1, 0), (2, 0), (3, 20), (256, 0), (256, 600), (17, 3)] {
                let data = sample(len, alphabet, skew, len as u64 * 31 + u64::from(alphabet));
                let enc = encode(&data);
                assert_eq!(enc, encode_reference(&data, usize::MAX), "len {len}");
                if let Some(enc) = enc {
                    assert_eq!(decode(&enc, len).unwrap(), data, "len {len}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn streams_equal_the_reference_encoder(
            len in 0usize..5000,
            alphabet in 1u32..=256,
            skew in 0u32..2000,
            seed in any::<u64>(),
            limit in prop::option::of(0usize..12_000),
        ) {
            let data = sample(len, alphabet, skew, seed);
            let limit = limit.unwrap_or(usize::MAX);
            let enc = encode_counted(&data, &histogram(&data), limit);
            prop_assert_eq!(&enc, &encode_reference(&data, limit));
            if let Some(enc) = enc {
                prop_assert_eq!(decode(&enc, len).unwrap(), data);
            }
        }

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
