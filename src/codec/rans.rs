//! Order-0 range asymmetric numeral system (rANS) coder over bytes.
//!
//! Zstd codes literals with Huffman, which cannot spend less than one bit per byte: dithered
//! delta codes with an entropy of ~1.3 bits took ~1.7 bits under Zstd. rANS with a static
//! 12-bit frequency table reaches the order-0 entropy within a fraction of a percent.
//!
//! Stream: `[count varint][frequency table, see Layout][N states, 4 bytes each, little-endian]
//! [16-bit words, little-endian...]`. Symbol `i` is coded with state `i % N`
//! and, going forwards, a state that falls below the interval reads the next word: N
//! independent dependency chains keep the core busy. A state lives in [2^15, 2^31) and is
//! renormalized by whole 16-bit words, so each symbol reads or writes at most one word and the
//! step needs no branch. The count is explicit because a one-symbol stream carries no length
//! otherwise.
//!
//! Three state counts are written: [`TINY`] (1, entropy coder 10) for sections of a few
//! hundred bytes, whose coding a state's 4 bytes are a share of, [`NARROW`] (4, entropy coder
//! 8) for short sections and [`WIDE`] (32, entropy coder 9) for long ones, whose 32 states
//! fill two 16-lane or four 8-lane vectors (`rans_vector`) and pay 112 more bytes of states.
//! All write the roots table ([`Layout::Roots`]) and no symbol count, which the section header
//! gives; streams with the earlier tables (entropy coders 4, 5 and 6) are still read, and the
//! earlier two-state, byte-renormalized stream by `rans_v1`.

use super::error::{CodecError, CodecResult};
use super::rans_roots;
use super::varint::get_varint;
#[cfg(test)]
use super::varint::put_varint;

pub(super) const SCALE_BITS: u32 = 12;
pub(super) const TOTAL: u32 = 1 << SCALE_BITS;
/// Lower end of the normalized state interval.
pub(super) const LOW: u32 = 1 << 15;
/// The one state of the shortest sections' stream (entropy coder 10).
pub const TINY: usize = 1;
/// Interleaved states of the short-section stream (entropy coder 8).
pub const NARROW: usize = 4;
/// Interleaved states of the long-section stream (entropy coder 9).
pub const WIDE: usize = 32;

/// Frequencies scaled to sum to [`TOTAL`], every present symbol at least 1, rounded where the
/// coding costs least: truncated, then the missing units go to the symbols a unit saves the
/// most bits on (`c / (f + 1/2)`, within 1% of `c * log2((f + 1) / f)` from `f = 1` up), and
/// units over the total (symbols raised to 1) come from those a unit costs the least. The
/// first version gave the whole rounding difference to the largest symbol: on mantissa-like
/// planes (all 256 values, ~16 units each) every other symbol then lost ~1/32 of its share,
/// and rANS coded 0.3% above Zstd's Huffman (a 256 KiB section: 249,279 bytes against 248,719;
/// 248,3xx now).
pub(super) fn normalize(counts: &[u64; 256]) -> [u32; 256] {
    let n: u64 = counts.iter().sum();
    let mut f = [0u32; 256];
    if n == 0 {
        return f;
    }
    let mut present: Vec<usize> = Vec::with_capacity(256);
    for (s, (fs, &c)) in f.iter_mut().zip(counts).enumerate() {
        if c > 0 {
            // No overflow below 2^52 bytes of input; u128 division was a library call.
            *fs = ((c * u64::from(TOTAL) / n) as u32).max(1);
            present.push(s);
        }
    }
    let sum: u32 = f.iter().sum();
    // A unit's worth to symbol `s`, `c / (f + 1/2)` to gain one or `c / (f - 1/2)` to lose one,
    // as the fraction `2c / den(s)` with `den` `2f + 1` or `2f - 1`: `a` against `b` compared
    // exactly by cross-multiplying (no float rounding, the same table everywhere). Callers
    // break ties to the lower symbol first.
    let by_worth = |a: usize, b: usize, den: &dyn Fn(usize) -> u64| {
        let ka = u128::from(counts[a]) * u128::from(den(b));
        let kb = u128::from(counts[b]) * u128::from(den(a));
        ka.cmp(&kb)
    };
    if sum < TOTAL {
        // At most one unit short per present symbol (each lost under one to truncation).
        let short = (TOTAL - sum) as usize;
        // The `short` of largest worth, by a selection rather than a sort: each gets one unit,
        // so only which they are matters, and the order (ties to the lower symbol) is total.
        // A decoder normalizes every table it reads, so this is on the checkout path too.
        if short < present.len() {
            present.select_nth_unstable_by(short, |&a, &b| {
                by_worth(b, a, &|s| 2 * u64::from(f[s]) + 1).then(a.cmp(&b))
            });
        }
        for &s in present.iter().take(short) {
            f[s] += 1;
        }
    } else {
        // One unit at a time from the symbol it costs least (a dominant symbol gives many).
        let mut over = sum - TOTAL;
        while over > 0 {
            let cheapest = present
                .iter()
                .copied()
                .filter(|&s| f[s] > 1)
                .min_by(|&a, &b| by_worth(a, b, &|s| 2 * u64::from(f[s]) - 1).then(a.cmp(&b)));
            // Always found: over TOTAL with every symbol at 1 would need over 4096 symbols.
            let Some(s) = cheapest else { break };
            f[s] -= 1;
            over -= 1;
        }
    }
    f
}

pub use super::histogram::histogram;

/// The order-0 entropy of data with this histogram, in bytes: what no order-0 coder can beat.
///
/// As `n log2 n - sum(c log2 c)`: one logarithm for the total and each count's from a table,
/// where `-c log2(c / n)` per symbol took a division and a logarithm each (a commit estimates
/// every section it codes: 5.9 ms of cnn-digits' lossless commit, for 6,512 sections).
pub fn order0_bytes(counts: &[u64; 256]) -> f64 {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let c_log_c: f64 = counts
        .iter()
        .filter(|&&c| c > 1)
        .map(|&c| c_log2_c(c))
        .sum();
    // Never below 0: the two sums may differ in their last bits where one value is all.
    ((c_log2_c(n) - c_log_c) / 8.0).max(0.0)
}

/// Counts below this take `c log2 c` from a table.
const C_LOG_C_TABLE: usize = 4096;

/// `c log2 c`.
fn c_log2_c(c: u64) -> f64 {
    static TABLE: std::sync::OnceLock<Box<[f64; C_LOG_C_TABLE]>> = std::sync::OnceLock::new();
    match TABLE
        .get_or_init(|| {
            Box::new(std::array::from_fn(|c| {
                c as f64 * (c as f64).log2().max(0.0)
            }))
        })
        .get(c as usize)
    {
        Some(&v) => v,
        None => c as f64 * (c as f64).log2(),
    }
}

/// How a stream writes its frequency table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[n u8 (0 = 256)] ([symbol u8][freq varint])*`: the version-1 streams and the first
    /// narrow one (entropy coder 4); read, no longer written.
    Listed,
    /// `[n u8 (0 = 256)]`, the present symbols as `n` bytes, or as a 32-byte bitmap when
    /// more than 32 are present, then each one's `freq - 1` as a varint in symbol order
    /// (entropy coders 5 and 6); read, no longer written. Never larger than the listed table;
    /// a 256-symbol table takes ~300 bytes instead of ~770.
    Compact,
    /// Each symbol's count as its rounded square root, Exp-Golomb coded, the frequencies
    /// normalized from their squares (see `codec::rans_roots`), and no symbol count before it
    /// (the caller knows the length): what every stream is written with. About half the
    /// compact table's size on short code streams, for a quarter of a bit per present symbol
    /// of coding.
    Roots,
}

/// Present symbols above this many are written as a bitmap in the compact layout.
const LISTED_UP_TO: usize = 32;

/// Writes the header of a stream no longer written: the symbol count, then the frequency table
/// in `layout` (listed or compact), for the tests that check such streams still decode.
#[cfg(test)]
pub(super) fn put_header(stream: &mut Vec<u8>, count: usize, freq: &[u32; 256], layout: Layout) {
    put_varint(stream, count as u64);
    let present: Vec<usize> = (0..256).filter(|&s| freq[s] > 0).collect();
    stream.push(present.len() as u8);
    match layout {
        Layout::Listed => {
            for &s in &present {
                stream.push(s as u8);
                put_varint(stream, u64::from(freq[s]));
            }
        }
        Layout::Compact => {
            if present.len() > LISTED_UP_TO {
                let mut bitmap = [0u8; 32];
                for &s in &present {
                    bitmap[s / 8] |= 1 << (s % 8);
                }
                stream.extend_from_slice(&bitmap);
            } else {
                stream.extend(present.iter().map(|&s| s as u8));
            }
            for &s in &present {
                put_varint(stream, u64::from(freq[s] - 1));
            }
        }
        Layout::Roots => unreachable!("a roots table is written from the counts' roots"),
    }
}

/// A stream's frequency table as it is written: the counts' rounded roots and the frequencies
/// the decoder normalizes from their squares.
pub(super) struct Table {
    roots: [u32; 256],
    pub(super) freq: [u32; 256],
}

impl Table {
    pub(super) fn new(counts: &[u64; 256]) -> Table {
        let roots = rans_roots::roots(counts);
        Table {
            freq: normalize(&rans_roots::squares(&roots)),
            roots,
        }
    }

    /// Writes the stream header: the table.
    pub(super) fn put_header(&self, stream: &mut Vec<u8>) {
        rans_roots::put(stream, &self.roots);
    }

    /// Bytes [`Table::put_header`] writes.
    fn header_size(&self) -> usize {
        rans_roots::size(&self.roots)
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

/// Bytes [`encode_counted`] would produce for data with this histogram, estimated from its
/// order-0 entropy (computed once for all), so callers run the coder only where it can win and
/// pick the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimates {
    /// With one state ([`TINY`]).
    pub tiny: usize,
    /// With [`NARROW`] states.
    pub narrow: usize,
    /// With [`WIDE`] states.
    pub wide: usize,
    /// With [`NARROW`] states and the [`Layout::Listed`] table, as entropy coder 4 wrote it.
    pub narrow_listed: usize,
    /// The order-0 entropy in whole bytes ([`order0_bytes`]), which no order-0 coder beats.
    pub order0: usize,
}

/// The [`Estimates`] for data with this histogram (all 0 for no data).
pub fn estimated_sizes(counts: &[u64; 256]) -> Estimates {
    if counts.iter().all(|&c| c == 0) {
        return Estimates {
            tiny: 0,
            narrow: 0,
            wide: 0,
            narrow_listed: 0,
            order0: 0,
        };
    }
    let symbols = counts.iter().filter(|&&c| c > 0).count();
    let order0 = order0_bytes(counts) as usize;
    // The table, and the roots' rounding: about a quarter of a bit per present symbol.
    let roots = rans_roots::size(&rans_roots::roots(counts)) + symbols / 32;
    let size = |states: usize, table: usize| order0 + table + 4 * states - 11;
    Estimates {
        // Each state past the first costs about 3 bytes (measured on short code streams).
        tiny: size(NARROW, roots) - 3 * (NARROW - TINY),
        narrow: size(NARROW, roots),
        wide: size(WIDE, roots),
        narrow_listed: size(NARROW, 3 * symbols),
        order0,
    }
}

/// One symbol's encoder constants: `x -> ((x / freq) << SCALE_BITS) + x % freq + start`
/// computed with a multiply by a reciprocal instead of a division (exact for every state the
/// encoder can hold, which stays below 2^31). 16 bytes, aligned, so a lookup never straddles
/// a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub(super) struct EncSymbol {
    x_max: u32,
    pub(super) rcp: u32,
    /// Below 2^13: `start`, or `start + TOTAL - 1` for a frequency of 1.
    pub(super) bias: u32,
    pub(super) cmpl_freq: u16,
    /// 32 + the reciprocal's extra shift (at most 12): the high half and the shift in one step.
    pub(super) shift: u16,
}

/// Each frequency's reciprocal for [`EncSymbol`], `ceil(2^(ceil(log2 f) + 31) / f)`, computed
/// when compiling: a section with all 256 byte values would otherwise pay 256 divisions for
/// its table, as much as coding ~2 KiB of it.
static RECIPROCALS: [u32; TOTAL as usize + 1] = {
    let mut rcp = [0u32; TOTAL as usize + 1];
    let mut f = 2;
    while f <= TOTAL {
        let shift = 32 - (f - 1).leading_zeros();
        rcp[f as usize] = (1u64 << (shift + 31)).div_ceil(f as u64) as u32;
        f += 1;
    }
    rcp
};

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
        EncSymbol {
            x_max,
            rcp: RECIPROCALS[freq as usize],
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

/// The fewest bytes [`encode_counted`] with `N` states can code `len` bytes with these counts
/// in: its table exactly, and the cost of every symbol under the rounded table less what the
/// final states can hold (each starts at [`LOW`] and ends below `LOW << 16`, so carries at
/// most two bytes that no word does). Unlike [`Estimates`] this is meant as a lower bound, so
/// that a coding no larger needs no rANS run to prove it; a step's rounding can in principle
/// take it under by a little (measured never, `the_floor_is_never_above_the_coding`, and the
/// caller keeps some slack).
pub(crate) fn coded_size_floor<const N: usize>(counts: &[u64; 256]) -> usize {
    let table = Table::new(counts);
    let bits: f64 = counts
        .iter()
        .zip(&table.freq)
        .filter(|&(&c, _)| c > 0)
        .map(|(&c, &f)| c as f64 * (f64::from(TOTAL) / f64::from(f)).log2())
        .sum();
    // The words hold the bits the states do not, in whole 16-bit words.
    let words = ((bits - 16.0 * N as f64) / 16.0).floor().max(0.0) as usize;
    table.header_size() + 4 * N + 2 * words
}

/// Encodes `data` with [`NARROW`] states. Returns `None` when the data is empty or has more
/// distinct symbols than the table can give a nonzero frequency (never for bytes; kept for
/// safety).
#[cfg(test)]
pub fn encode(data: &[u8]) -> Option<Vec<u8>> {
    encode_counted::<NARROW>(data, &histogram(data), usize::MAX)
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
/// forwards) with `N` states. Returns the final states and the index of the first word, or
/// `None` when the words fill `words` (whose first slot is a spare that is never part of the
/// output). `vector` lets a vector kernel code the whole rounds where the CPU has one (the
/// same words; tests turn it off to compare).
fn encode_words<const N: usize>(
    data: &[u8],
    symbols: &[EncSymbol; 256],
    words: &mut [u16],
    vector: bool,
) -> Option<([u32; N], usize)> {
    let mut xs = [LOW; N];
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
    let tail = data.len() % N;
    let mut whole = data.len() - tail;
    for (i, &b) in data[whole..].iter().enumerate().rev() {
        put_checked(&mut xs[i], b, words, &mut pos)?;
    }
    if vector {
        if let Some(kernel) = super::rans_vector::Encoder::new::<N>(symbols) {
            whole = kernel.encode_rounds(&data[..whole], words, &mut pos, &mut xs);
        }
    }
    let mut rounds = data[..whole].chunks_exact(N).rev();
    // Fast path: a round emits at most N words, so while that many slots and the spare remain
    // below `pos` the stores need no check of their own.
    while pos > N {
        let Some(round) = rounds.next() else { break };
        let window: &mut [u16; N] = (&mut words[pos - N..pos]).try_into().expect("N words");
        let mut used = 0;
        for k in (0..N).rev() {
            let (y, w, emit) = symbols[round[k] as usize].put(xs[k]);
            window[N - 1 - used] = w;
            used += usize::from(emit);
            xs[k] = y;
        }
        pos -= used;
    }
    for round in rounds {
        for k in (0..N).rev() {
            put_checked(&mut xs[k], round[k], words, &mut pos)?;
        }
    }
    Some((xs, pos))
}

/// [`encode`] with `N` states ([`NARROW`] or [`WIDE`]) and the histogram already taken
/// (`counts` must be `histogram(data)`), giving up (`None`) once the coded words pass `limit`
/// bytes: a caller that has a smaller coding already need not pay for this one, nor clear a
/// buffer twice the input's size.
pub fn encode_counted<const N: usize>(
    data: &[u8],
    counts: &[u64; 256],
    limit: usize,
) -> Option<Vec<u8>> {
    encode_with::<N>(data, counts, limit, true)
}

pub(crate) fn encode_with<const N: usize>(
    data: &[u8],
    counts: &[u64; 256],
    limit: usize,
    vector: bool,
) -> Option<Vec<u8>> {
    if data.is_empty() {
        return None;
    }
    let table = Table::new(counts);
    if table.freq.iter().map(|&x| x as u64).sum::<u64>() != TOTAL as u64 {
        return None;
    }
    let symbols = enc_symbols(&table.freq);
    // A symbol emits at most one word; one spare slot (see `encode_words`).
    let mut words = vec![0u16; data.len().min(limit / 2) + 1];
    let (xs, pos) = encode_words::<N>(data, &symbols, &mut words, vector)?;
    let mut stream = Vec::with_capacity(2 * (words.len() - pos) + 3 * 256 + 4 * N + 10);
    table.put_header(&mut stream);
    for x in xs {
        stream.extend_from_slice(&x.to_le_bytes());
    }
    // Word by word into a sized slice: the loop compiles to a copy (a byte iterator did not).
    let coded = &words[pos..];
    let start = stream.len();
    stream.resize(start + 2 * coded.len(), 0);
    for (bytes, w) in stream[start..].chunks_exact_mut(2).zip(coded) {
        bytes.copy_from_slice(&w.to_le_bytes());
    }
    Some(stream)
}

/// Reads the frequency table in `layout` that opens a stream, and before a listed or compact
/// one the symbol count, checked against `len`.
pub(super) fn read_table(
    stream: &[u8],
    pos: &mut usize,
    len: usize,
    layout: Layout,
) -> CodecResult<[u32; 256]> {
    let truncated = || CodecError::RansTruncated { part: "table" };
    if layout == Layout::Roots {
        let roots = rans_roots::read(stream, pos)?;
        return Ok(normalize(&rans_roots::squares(&roots)));
    }
    let count = get_varint(stream, pos)?;
    if count != len as u64 {
        return Err(CodecError::RansSymbolCount {
            count,
            expected: len,
        });
    }
    let n = match *stream.get(*pos).ok_or_else(truncated)? {
        0 => 256,
        k => k as usize,
    };
    *pos += 1;
    let take = |pos: &mut usize, count: usize| -> CodecResult<&[u8]> {
        let bytes = stream.get(*pos..*pos + count).ok_or_else(truncated)?;
        *pos += count;
        Ok(bytes)
    };
    let mut symbols = Vec::with_capacity(n);
    match layout {
        Layout::Compact if n > LISTED_UP_TO => {
            let bitmap = take(pos, 32)?;
            symbols.extend((0..256).filter(|s| bitmap[s / 8] & (1 << (s % 8)) != 0));
            if symbols.len() != n {
                return Err(CodecError::RansBadTable);
            }
        }
        Layout::Compact => {
            symbols.extend(take(pos, n)?.iter().map(|&s| s as usize));
            if symbols.windows(2).any(|w| w[0] >= w[1]) {
                return Err(CodecError::RansBadTable);
            }
        }
        Layout::Listed => {}
        Layout::Roots => unreachable!("read above"),
    }
    let mut freq = [0u32; 256];
    let mut compact = symbols.iter();
    for _ in 0..n {
        let (s, v) = match layout {
            Layout::Listed => {
                let s = take(pos, 1)?[0] as usize;
                (s, get_varint(stream, pos)?)
            }
            Layout::Compact => {
                let s = *compact.next().expect("n symbols read above");
                (s, get_varint(stream, pos)?.saturating_add(1))
            }
            Layout::Roots => unreachable!("read above"),
        };
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

/// Entries past [`TOTAL`] in a decoder's table, which [`fill_slots`] may write.
pub(super) const SPARE: usize = 16;

/// A decoder's table: [`TOTAL`] slots and the [`SPARE`] ones.
pub(super) type SlotTable<T> = Box<[T; TOTAL as usize + SPARE]>;

/// Fills each symbol's slots (`freq[s]` of them from its start, in symbol order) with
/// `entry(s, freq[s], k)`, `k` counting from 0, 16 slots at a time: a symbol's last block runs
/// into the next symbol's slots, which that symbol then writes, or into the spare ones. A
/// table is filled for every section decoded, and most sections are a few KiB: slot by slot,
/// filling it cost as much as decoding the symbols of a 2 KiB section with 256 symbols.
pub(super) fn fill_slots<T: Copy + Default>(
    freq: &[u32; 256],
    entry: impl Fn(u8, u32, u32) -> T,
) -> SlotTable<T> {
    let mut table: SlotTable<T> = vec![T::default(); TOTAL as usize + SPARE]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("sized above"));
    let mut slot = 0;
    for (s, &f) in freq.iter().enumerate() {
        let mut k = 0;
        while k < f {
            let block: &mut [T; 16] = (&mut table[slot..slot + 16])
                .try_into()
                .expect("16 slots, the last ones spare");
            for (j, e) in block.iter_mut().enumerate() {
                *e = entry(s as u8, f, k + j as u32);
            }
            slot += 16;
            k += 16;
        }
        slot -= (k - f) as usize;
    }
    table
}

/// The decoder's table (both stream versions), split so a step's state update needs no
/// unpacking: for each of the [`TOTAL`] slots the frequency (low 16 bits) and slot - start
/// (high 16 bits), and apart, the symbol.
pub(super) struct Slots {
    step: SlotTable<u32>,
    symbol: SlotTable<u8>,
}

impl Slots {
    /// The table of a frequency table that sums to [`TOTAL`].
    pub(super) fn new(freq: &[u32; 256]) -> Slots {
        Slots {
            step: fill_slots(freq, |_, f, k| f | (k << 16)),
            symbol: fill_slots(freq, |s, _, _| s),
        }
    }

    /// One decode step: the symbol and the new (not yet renormalized) state.
    #[inline(always)]
    pub(super) fn step(&self, x: u32) -> (u8, u32) {
        let i = (x & (TOTAL - 1)) as usize;
        let e = self.step[i];
        (self.symbol[i], (e & 0xffff) * (x >> SCALE_BITS) + (e >> 16))
    }
}

/// Sections shorter than this decode on [`RunSlots`].
const RUN_SLOTS_BELOW: usize = 2048;

/// The decoder's table for short sections: the symbol of each slot, written a symbol's run at
/// a time, with each symbol's frequency and start apart. A step reads two tables where
/// [`Slots`] reads one (a load more on each state's chain), but building it is 4 KiB of runs
/// where [`Slots`] computes and writes 20 KiB entry by entry: a checkout decodes thousands of
/// sections of a few hundred bytes (a small tensor's planes), and on those building the table
/// took longer than decoding.
struct RunSlots {
    symbol: [u8; TOTAL as usize],
    freq: [u32; 256],
    start: [u32; 256],
}

impl RunSlots {
    /// The table of a frequency table that sums to [`TOTAL`].
    fn new(freq: &[u32; 256]) -> RunSlots {
        let mut table = RunSlots {
            symbol: [0; TOTAL as usize],
            freq: *freq,
            start: [0; 256],
        };
        let mut at = 0;
        for (s, &f) in freq.iter().enumerate() {
            table.start[s] = at;
            table.symbol[at as usize..(at + f) as usize].fill(s as u8);
            at += f;
        }
        table
    }

    /// One decode step, as [`Slots::step`].
    #[inline(always)]
    fn step(&self, x: u32) -> (u8, u32) {
        let slot = x & (TOTAL - 1);
        let s = self.symbol[slot as usize];
        let (f, start) = (self.freq[s as usize], self.start[s as usize]);
        (s, f * (x >> SCALE_BITS) + slot - start)
    }
}

/// A decode step from some table: the symbol and the new (not yet renormalized) state.
trait Step {
    fn step(&self, x: u32) -> (u8, u32);
}

impl Step for Slots {
    #[inline(always)]
    fn step(&self, x: u32) -> (u8, u32) {
        Slots::step(self, x)
    }
}

impl Step for RunSlots {
    #[inline(always)]
    fn step(&self, x: u32) -> (u8, u32) {
        RunSlots::step(self, x)
    }
}

/// The table a decode runs on: the vector kernel's packed one where the kernel runs, the short
/// sections' one, else the scalar coder's.
enum DecodeTable {
    Vector(super::rans_vector::Decoder),
    Short(Box<RunSlots>),
    Scalar(Slots),
}

impl Step for DecodeTable {
    /// One decode step (see [`Slots::step`]).
    fn step(&self, x: u32) -> (u8, u32) {
        match self {
            DecodeTable::Vector(kernel) => kernel.step(x),
            DecodeTable::Short(slots) => slots.step(x),
            DecodeTable::Scalar(slots) => slots.step(x),
        }
    }
}

/// The decoder's fast path for [`NARROW`]: whole rounds of four symbols while a round's words
/// (at most one per state) are present, read as one u64 with each state's word taken by
/// shifting. Returns the symbols decoded and the word bytes read. The states are passed by
/// value so they live in registers.
#[inline(always)]
fn decode_narrow_rounds(
    slots: &impl Step,
    words: &[u8],
    out: &mut [u8],
    states: &mut [u32; NARROW],
) -> (usize, usize) {
    let mut xs = *states;
    let mut p = 0;
    let mut done = 0;
    for quad in out.chunks_exact_mut(NARROW) {
        let Some(round) = words.get(p..p + 2 * NARROW) else {
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
        done += NARROW;
    }
    *states = xs;
    (done, p)
}

/// The scalar fast path for any `N` (the wide stream on a CPU without the vector kernels): whole
/// rounds while a round's words are present, each state reading the word at the cursor and
/// moving it only if it needed the word. Returns the symbols decoded and the word bytes read.
fn decode_rounds<const N: usize>(
    slots: &impl Step,
    words: &[u8],
    out: &mut [u8],
    xs: &mut [u32; N],
) -> (usize, usize) {
    let (mut p, mut done) = (0, 0);
    for round in out.chunks_exact_mut(N) {
        let Some(ahead) = words.get(p..p + 2 * N) else {
            break;
        };
        let mut used = 0;
        for (o, x) in round.iter_mut().zip(xs.iter_mut()) {
            let (sym, y) = slots.step(*x);
            *o = sym;
            // Arithmetic, not a select: compiled to a branch, a refill every other symbol
            // mispredicted often enough that the wide stream decoded at 190 MB/s against the
            // narrow one's 660 (598 now, on a mantissa-like 8 MiB section).
            let need = u32::from(y < LOW);
            let w = u32::from(u16::from_le_bytes([ahead[used], ahead[used + 1]]));
            *x = (y << (16 * need)) | (w & need.wrapping_neg());
            used += 2 * need as usize;
        }
        p += used;
        done += N;
    }
    (done, p)
}

/// The scalar fast path on either table: [`decode_narrow_rounds`] for [`NARROW`] states,
/// [`decode_rounds`] for any other count.
#[inline(always)]
fn scalar_rounds<const N: usize>(
    slots: &impl Step,
    words: &[u8],
    out: &mut [u8],
    xs: &mut [u32; N],
) -> (usize, usize) {
    match <&mut [u32; NARROW]>::try_from(&mut xs[..]) {
        Ok(narrow) => decode_narrow_rounds(slots, words, out, narrow),
        Err(_) => decode_rounds(slots, words, out, xs),
    }
}

/// Decodes exactly `len` symbols of a stream with `N` states; malformed input is an error,
/// never a panic.
pub fn decode<const N: usize>(stream: &[u8], len: usize, layout: Layout) -> CodecResult<Vec<u8>> {
    decode_with::<N>(stream, len, layout, true)
}

pub(crate) fn decode_with<const N: usize>(
    stream: &[u8],
    len: usize,
    layout: Layout,
    vector: bool,
) -> CodecResult<Vec<u8>> {
    let mut pos = 0;
    let freq = read_table(stream, &mut pos, len, layout)?;
    let body = &stream[pos..];
    if body.len() < 4 * N {
        return Err(CodecError::RansTruncated { part: "state" });
    }
    let mut xs = [0u32; N];
    for (k, x) in xs.iter_mut().enumerate() {
        *x = u32::from_le_bytes(body[4 * k..4 * k + 4].try_into().expect("4 bytes"));
        // A state below LOW would read a word that was never written.
        if *x < LOW {
            return Err(CodecError::RansBadState);
        }
    }
    let words = &body[4 * N..];
    let mut out = vec![0u8; len];
    // `vector` off: the plain scalar table, which tests compare the others with.
    let table = if !vector {
        DecodeTable::Scalar(Slots::new(&freq))
    } else if len < RUN_SLOTS_BELOW {
        DecodeTable::Short(Box::new(RunSlots::new(&freq)))
    } else {
        match super::rans_vector::Decoder::new::<N>(&freq) {
            Some(kernel) => DecodeTable::Vector(kernel),
            None => DecodeTable::Scalar(Slots::new(&freq)),
        }
    };
    let (done, mut p) = match &table {
        DecodeTable::Vector(kernel) => kernel.decode_rounds(words, &mut out, &mut xs),
        DecodeTable::Short(slots) => scalar_rounds(&**slots, words, &mut out, &mut xs),
        DecodeTable::Scalar(slots) => scalar_rounds(slots, words, &mut out, &mut xs),
    };
    // The rest one checked step at a time.
    let truncated = || CodecError::RansTruncated { part: "data" };
    for (i, o) in out.iter_mut().enumerate().skip(done) {
        let x = &mut xs[i % N];
        let (sym, mut y) = table.step(*x);
        *o = sym;
        if y < LOW {
            let w = words.get(p..p + 2).ok_or_else(truncated)?;
            y = (y << 16) | u32::from(u16::from_le_bytes([w[0], w[1]]));
            p += 2;
        }
        *x = y;
    }
    if p != words.len() {
        return Err(CodecError::TrailingBytes {
            count: words.len() - p,
            after: "rANS data",
        });
    }
    // Decoding runs the encoder backwards, so it must end in the encoder's initial states; any
    // other state means a wrong length or damaged data.
    if xs != [LOW; N] {
        return Err(CodecError::RansBadEnd);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::codec::test_bytes::xorshift;
    use proptest::prelude::*;

    #[test]
    fn the_floor_is_never_above_the_coding() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let mut worst = (i64::MAX, i64::MAX, i64::MAX);
        for round in 0..400 {
            let len = [600, 4096, 40_000, 200_000][round % 4];
            let skew = 1 + round % 13;
            let symbols = 2 + next() % 255;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 16 < skew as u64 {
                        0
                    } else {
                        ((r >> 20) % symbols) as u8
                    }
                })
                .collect();
            let counts = histogram(&data);
            let narrow = encode_counted::<NARROW>(&data, &counts, usize::MAX)
                .unwrap()
                .len();
            let wide = encode_counted::<WIDE>(&data, &counts, usize::MAX)
                .unwrap()
                .len();
            let tiny = encode_counted::<TINY>(&data, &counts, usize::MAX)
                .unwrap()
                .len();
            let slack_n = narrow as i64 - coded_size_floor::<NARROW>(&counts) as i64;
            let slack_w = wide as i64 - coded_size_floor::<WIDE>(&counts) as i64;
            let slack_t = tiny as i64 - coded_size_floor::<TINY>(&counts) as i64;
            assert!(
                slack_n >= 0 && slack_w >= 0 && slack_t >= 0,
                "{len} {skew} {symbols}: {slack_n} {slack_w} {slack_t}"
            );
            worst = (
                worst.0.min(slack_n),
                worst.1.min(slack_w),
                worst.2.min(slack_t),
            );
        }
        eprintln!(
            "least slack: narrow {} wide {} tiny {}",
            worst.0, worst.1, worst.2
        );
    }

    #[test]
    fn skewed_data_reaches_its_entropy() {
        let mut next = xorshift(12345);
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                let x = next();
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
        assert_eq!(
            decode::<NARROW>(&enc, data.len(), Layout::Roots).unwrap(),
            data
        );
        let wide = encode_counted::<WIDE>(&data, &histogram(&data), usize::MAX).unwrap();
        let bits = (wide.len() - 4 * WIDE) as f64 * 8.0 / data.len() as f64;
        assert!(bits < entropy_bits * 1.01, "{bits} vs {entropy_bits}");
        assert_eq!(
            decode::<WIDE>(&wide, data.len(), Layout::Roots).unwrap(),
            data
        );
    }

    /// Bits to code data with these counts under the table `freq` (its cross-entropy).
    fn table_bits(counts: &[u64; 256], freq: &[u32; 256]) -> f64 {
        counts
            .iter()
            .zip(freq)
            .filter(|(&c, _)| c > 0)
            .map(|(&c, &f)| c as f64 * (f64::from(TOTAL) / f64::from(f)).log2())
            .sum()
    }

    /// The first rounding: truncate (at least 1), then the whole difference to the largest.
    fn normalize_to_the_largest(counts: &[u64; 256]) -> [u32; 256] {
        let n: u64 = counts.iter().sum();
        let mut f: [u32; 256] = std::array::from_fn(|s| {
            if counts[s] > 0 {
                ((counts[s] * 4096 / n) as u32).max(1)
            } else {
                0
            }
        });
        let sum: u32 = f.iter().sum();
        let largest = (0..256)
            .max_by_key(|&s| (f[s], std::cmp::Reverse(s)))
            .unwrap();
        f[largest] = f[largest] + TOTAL - sum;
        f
    }

    /// The rounded table costs little over the order-0 entropy, and never more than giving the
    /// whole rounding to the largest symbol: on all 256 values mildly skewed (a mantissa plane,
    /// where that cost 0.5%), on an exponent-like plane, and on one dominant value among many
    /// rare ones (raised to 1, paid for by the largest either way).
    #[test]
    fn rounding_to_the_table_costs_little() {
        let mut draw = xorshift(0x2545_F491_4F6C_DD1D);
        let mut drawn = |f: &mut dyn FnMut(u64) -> u8| -> Vec<u8> {
            (0..256 << 10).map(|_| f(draw())).collect()
        };
        let mantissa = drawn(&mut |r| ((r >> 20) % 1000 * ((r >> 40) % 1000) / 3907) as u8);
        let exponent = drawn(&mut |r| {
            [120, 121, 121, 122, 122, 122, 122, 123][(r % 8) as usize] + (r % 997 == 0) as u8 * 9
        });
        let rare = drawn(&mut |r| {
            if r % 1000 < 990 {
                0
            } else {
                1 + ((r >> 20) % 200) as u8
            }
        });
        for (name, data, within) in [
            ("mantissa", &mantissa, 0.001),
            ("exponent", &exponent, 0.001),
            ("rare", &rare, 0.25),
        ] {
            let counts = histogram(data);
            let freq = normalize(&counts);
            assert_eq!(freq.iter().sum::<u32>(), TOTAL);
            assert!(counts.iter().zip(&freq).all(|(&c, &f)| (c > 0) == (f > 0)));
            let (new, old) = (
                table_bits(&counts, &freq),
                table_bits(&counts, &normalize_to_the_largest(&counts)),
            );
            assert!(new <= old, "{name}: {new} bits against {old}");
            let order0 = order0_bytes(&counts) * 8.0;
            assert!(
                new < order0 * (1.0 + within),
                "{name}: {new} bits against {order0}"
            );
        }
    }

    proptest! {
        /// Any histogram gives a table that sums to the total, each present symbol at least 1.
        #[test]
        fn tables_sum_to_the_total(counts in prop::collection::vec(prop::option::of(1u64..1 << 40), 256)) {
            let counts: [u64; 256] = std::array::from_fn(|s| counts[s].unwrap_or(0));
            let freq = normalize(&counts);
            if counts.iter().any(|&c| c > 0) {
                prop_assert_eq!(freq.iter().sum::<u32>(), TOTAL);
            }
            prop_assert!(counts.iter().zip(&freq).all(|(&c, &f)| (c > 0) == (f > 0)));
        }
    }

    #[test]
    fn reciprocal_step_equals_the_division() {
        let mut next = xorshift(0x1234_5678);
        for freq in (1..=TOTAL).step_by(1) {
            let start = (TOTAL - freq) / 2;
            let sym = EncSymbol::new(start, freq);
            for k in 0..64u32 {
                let r = next();
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
    fn encode_reference<const N: usize>(
        data: &[u8],
        limit: usize,
        layout: Layout,
    ) -> Option<Vec<u8>> {
        if data.is_empty() {
            return None;
        }
        let table = Table::new(&histogram(data));
        let freq = match layout {
            Layout::Roots => table.freq,
            _ => normalize(&histogram(data)),
        };
        let start = starts(&freq);
        let mut words = vec![0u8; (2 * data.len()).min(limit) + 2];
        let mut pos = words.len();
        let mut xs = [LOW; N];
        for i in (0..data.len()).rev() {
            let (x, b) = (&mut xs[i % N], data[i] as usize);
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
        match layout {
            Layout::Roots => table.put_header(&mut stream),
            _ => put_header(&mut stream, data.len(), &freq, layout),
        }
        for x in xs {
            stream.extend_from_slice(&x.to_le_bytes());
        }
        stream.extend_from_slice(&words[pos..]);
        Some(stream)
    }

    /// The wide stream as a warp would write it (issue #17, kernels/README.md "Entropy on the
    /// device"): lane `k` holds state `k`; a round codes one symbol per lane from the states
    /// as they are, the emitting lanes set a ballot mask, and lane `k`'s word lands below those
    /// of the emitting lanes above it (`popc(mask >> (k + 1))`); the partial round at the end of
    /// the data is coded first, by the lanes it has.
    fn encode_as_a_warp(data: &[u8]) -> Vec<u8> {
        let table = Table::new(&histogram(data));
        let symbols = enc_symbols(&table.freq);
        let mut xs = [LOW; WIDE];
        let mut words = vec![0u16; data.len()];
        let mut pos = words.len();
        let mut round = |lanes: &[u8], xs: &mut [u32; WIDE]| {
            let coded: Vec<(u32, u16, bool)> = lanes
                .iter()
                .zip(xs.iter())
                .map(|(&b, &x)| symbols[b as usize].put(x))
                .collect();
            let mask = coded
                .iter()
                .enumerate()
                .fold(0u64, |m, (k, c)| m | u64::from(c.2) << k);
            for (k, &(y, word, emit)) in coded.iter().enumerate() {
                if emit {
                    let above = (mask >> (k + 1)).count_ones() as usize;
                    words[pos - 1 - above] = word;
                }
                xs[k] = y;
            }
            pos -= mask.count_ones() as usize;
        };
        let whole = data.len() - data.len() % WIDE;
        round(&data[whole..], &mut xs);
        for lanes in data[..whole].chunks_exact(WIDE).rev() {
            round(lanes, &mut xs);
        }
        let mut stream = Vec::new();
        table.put_header(&mut stream);
        for x in xs {
            stream.extend_from_slice(&x.to_le_bytes());
        }
        stream.extend(words[pos..].iter().flat_map(|w| w.to_le_bytes()));
        stream
    }

    #[test]
    fn a_warp_writes_the_wide_stream_the_cpu_does() {
        for (len, alphabet, skew, seed) in [
            (1, 3, 0, 1),
            (31, 5, 2, 2),
            (32, 256, 0, 3),
            (1000, 40, 8, 4),
            (4099, 256, 30, 5),
            (70_000, 12, 3, 6),
        ] {
            let data = sample(len, alphabet, skew, seed);
            let warp = encode_as_a_warp(&data);
            for vector in [false, true] {
                let cpu = encode_with::<WIDE>(&data, &histogram(&data), usize::MAX, vector);
                assert_eq!(cpu.as_ref(), Some(&warp), "{len} bytes, vector {vector}");
            }
        }
    }

    /// Bytes of `len` drawn from `alphabet` symbols, the first `skew` times likelier than the
    /// rest (xorshift, so a case is reproducible from its seed).
    fn sample(len: usize, alphabet: u32, skew: u32, seed: u64) -> Vec<u8> {
        let mut next = xorshift(seed | 1);
        (0..len)
            .map(|_| {
                let v = (next() % u64::from(alphabet + skew)) as u32;
                v.saturating_sub(skew) as u8
            })
            .collect()
    }

    /// Encodes with `N` states by the scalar coder and, where the CPU has them, the vector
    /// kernels; both must equal the reference encoder, and every stream must decode both ways.
    fn check_against_reference<const N: usize>(
        data: &[u8],
        limit: usize,
    ) -> Result<(), TestCaseError> {
        let counts = histogram(data);
        let want = encode_reference::<N>(data, limit, Layout::Roots);
        for vector in [false, true] {
            let enc = encode_with::<N>(data, &counts, limit, vector);
            prop_assert_eq!(&enc, &want, "{} states, vector {}", N, vector);
        }
        if let Some(enc) = want {
            for vector in [false, true] {
                let out = decode_with::<N>(&enc, data.len(), Layout::Roots, vector);
                prop_assert_eq!(out.as_deref().ok(), Some(data), "vector {}", vector);
            }
        }
        Ok(())
    }

    /// The order-0 entropy from the table of `c log2 c` is the textbook sum, to well under a
    /// bit, on counts below and above the table and on one value alone.
    #[test]
    fn the_order0_entropy_is_the_textbook_one() {
        let textbook = |counts: &[u64; 256]| {
            let n = counts.iter().sum::<u64>() as f64;
            let bits: f64 = counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| -(c as f64) * (c as f64 / n).log2())
                .sum();
            bits / 8.0
        };
        assert_eq!(order0_bytes(&[0; 256]), 0.0);
        for (len, alphabet, skew) in [
            (1, 1, 0),
            (5000, 1, 0),
            (300, 3, 20),
            (5000, 256, 0),
            (70_000, 17, 3),
            (1 << 20, 256, 600),
            (1 << 20, 2, 5000),
        ] {
            let counts = histogram(&sample(len, alphabet, skew, 11));
            let (ours, theirs) = (order0_bytes(&counts), textbook(&counts));
            assert!(
                (ours - theirs).abs() < 1e-6,
                "{len} bytes of {alphabet}: {ours} against {theirs}"
            );
        }
    }

    /// The short sections' table steps as the plain one from every slot, on tables of one,
    /// a few and all 256 symbols.
    #[test]
    fn both_scalar_tables_step_alike() {
        for (alphabet, skew) in [(1, 0), (3, 20), (17, 3), (256, 0), (256, 600)] {
            let freq = normalize(&histogram(&sample(5000, alphabet, skew, 7)));
            let (plain, runs) = (Slots::new(&freq), RunSlots::new(&freq));
            for x in (LOW..LOW + 2 * TOTAL).chain((0..4096).map(|k| u32::MAX / 2 - k * 524_287)) {
                assert_eq!(runs.step(x), plain.step(x), "state {x}, {alphabet} symbols");
            }
        }
    }

    #[test]
    fn every_short_length_matches_the_reference() {
        match super::super::rans_vector::best() {
            None => eprintln!(
                "no AVX2 or AVX-512 on this CPU: the wide streams are checked on the scalar coder only"
            ),
            Some(isa) => eprintln!("the wide streams' vector kernels: {isa:?}"),
        }
        for len in 0..200 {
            for (alphabet, skew) in [(1, 0), (2, 0), (3, 20), (256, 0), (256, 600), (17, 3)] {
                let data = sample(len, alphabet, skew, len as u64 * 31 + u64::from(alphabet));
                assert_eq!(
                    encode(&data),
                    encode_reference::<NARROW>(&data, usize::MAX, Layout::Roots)
                );
                check_against_reference::<TINY>(&data, usize::MAX).unwrap();
                check_against_reference::<NARROW>(&data, usize::MAX).unwrap();
                check_against_reference::<WIDE>(&data, usize::MAX).unwrap();
            }
        }
    }

    /// Streams written with the earlier tables, listed (entropy coder 4) and compact (5 and 6),
    /// still decode, scalar and vector; the layouts differ from three symbols on, so no stream
    /// reads as another's.
    #[test]
    fn streams_of_the_earlier_tables_still_decode() {
        for len in [1, 2, 5, 100, 4000] {
            for (alphabet, skew) in [(1, 0), (3, 20), (256, 0), (256, 600), (17, 3)] {
                let data = sample(len, alphabet, skew, len as u64 + u64::from(alphabet));
                let what = format!("{len} bytes of {alphabet} symbols");
                let listed = encode_reference::<NARROW>(&data, usize::MAX, Layout::Listed).unwrap();
                let narrow =
                    encode_reference::<NARROW>(&data, usize::MAX, Layout::Compact).unwrap();
                let wide = encode_reference::<WIDE>(&data, usize::MAX, Layout::Compact).unwrap();
                for vector in [false, true] {
                    for (stream, layout) in [(&listed, Layout::Listed), (&narrow, Layout::Compact)]
                    {
                        let out = decode_with::<NARROW>(stream, len, layout, vector);
                        assert_eq!(out.unwrap(), data, "{what}, {layout:?}");
                    }
                    let out = decode_with::<WIDE>(&wide, len, Layout::Compact, vector);
                    assert_eq!(out.unwrap(), data, "{what}, wide");
                }
                if alphabet >= 3 && len >= 100 {
                    let roots = encode(&data).unwrap();
                    for (stream, other) in [
                        (&listed, Layout::Compact),
                        (&narrow, Layout::Roots),
                        (&roots, Layout::Compact),
                    ] {
                        let out = decode::<NARROW>(stream, len, other).ok();
                        assert_ne!(out.as_ref(), Some(&data), "{what} read as {other:?}");
                    }
                }
            }
        }
    }

    /// On short code streams (zigzagged codes around 0, a few hundred to a few thousand of
    /// them, as a lossy delta's small tensors give) the roots table makes the stream smaller
    /// than the compact one, by most of the compact table's size on the shortest.
    #[test]
    fn the_roots_table_shrinks_short_code_streams() {
        let mut next = xorshift(0x5DEE_CE66_D1CE_4E5B);
        for (len, spread) in [(300, 3.0), (600, 8.0), (2000, 12.0), (8000, 20.0)] {
            // A two-sided geometric code of this mean magnitude, zigzagged as a centred stream.
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
                    let magnitude = (-(1.0 - u).ln() * spread) as i64;
                    let code = if next() & 1 == 0 {
                        magnitude
                    } else {
                        -magnitude
                    };
                    ((code << 1) ^ (code >> 63)).min(255) as u8
                })
                .collect();
            let roots = encode(&data).unwrap();
            let compact = encode_reference::<NARROW>(&data, usize::MAX, Layout::Compact).unwrap();
            let symbols = histogram(&data).iter().filter(|&&c| c > 0).count();
            eprintln!(
                "{len} codes, {symbols} values: roots {} bytes, compact {}",
                roots.len(),
                compact.len()
            );
            assert!(
                roots.len() + symbols / 2 < compact.len(),
                "{len} codes of {symbols} values: {} against {}",
                roots.len(),
                compact.len()
            );
        }
    }

    #[test]
    fn a_cut_or_damaged_wide_stream_is_an_error() {
        let data = sample(100_000, 40, 300, 7);
        let enc = encode_counted::<WIDE>(&data, &histogram(&data), usize::MAX).unwrap();
        for vector in [false, true] {
            for cut in [1, 2, 63, 64, 65, 1000, enc.len() / 2] {
                assert!(decode_with::<WIDE>(
                    &enc[..enc.len() - cut],
                    data.len(),
                    Layout::Roots,
                    vector
                )
                .is_err());
            }
            let mut longer = enc.clone();
            longer.extend_from_slice(&[0, 0]);
            assert!(decode_with::<WIDE>(&longer, data.len(), Layout::Roots, vector).is_err());
            for at in [enc.len() / 3, enc.len() - 70, enc.len() - 1] {
                let mut damaged = enc.clone();
                damaged[at] ^= 0x5a;
                if let Ok(out) = decode_with::<WIDE>(&damaged, data.len(), Layout::Roots, vector) {
                    assert_ne!(out, data, "a damaged word decoded unchanged");
                }
            }
        }
    }

    /// The vector decoder reads every wide stream as the scalar one does, damaged ones included:
    /// the same symbols or an error from both.
    #[test]
    fn the_vector_decoder_reads_damaged_wide_streams_as_the_scalar_one() {
        if super::super::rans_vector::best().is_none() {
            eprintln!("skipped: no AVX2 or AVX-512 on this CPU, so no vector decoder to compare");
            return;
        }
        let mut next = xorshift(0xD1B5_4A32_D192_ED03);
        let mut differed = 0;
        for round in 0..300 {
            let len = 2048 + (next() % 30_000) as usize;
            // One symbol in a fifth of the rounds: its frequency is the whole table, the one
            // case where a step from a state past 2^31 stays past it.
            let alphabet = if round % 5 == 0 {
                1
            } else {
                1 + (next() % 256) as u32
            };
            let data = sample(len, alphabet, (next() % 2000) as u32, next());
            let mut stream = encode_counted::<WIDE>(&data, &histogram(&data), usize::MAX).unwrap();
            let mut table_end = 0;
            read_table(&stream, &mut table_end, len, Layout::Roots).unwrap();
            match round % 3 {
                // A state pushed past 2^31 (its top byte), or anywhere in range.
                0 => stream[table_end + 4 * (next() % 32) as usize + 3] |= 0x80,
                1 => {
                    let at = table_end + 4 * (next() % 32) as usize;
                    stream[at..at + 4].copy_from_slice(&(next() as u32).to_le_bytes());
                }
                // A word (a stream of one symbol has none: its first state then).
                _ => {
                    let words = table_end + 4 * WIDE;
                    let at = match stream.len() - words {
                        0 => table_end,
                        count => words + (next() as usize) % count,
                    };
                    stream[at] ^= 1 + (next() % 255) as u8;
                }
            }
            let scalar = decode_with::<WIDE>(&stream, len, Layout::Roots, false).ok();
            let vector = decode_with::<WIDE>(&stream, len, Layout::Roots, true).ok();
            assert_eq!(vector, scalar, "round {round}, {len} symbols");
            differed += usize::from(scalar.as_deref() != Some(&data[..]));
        }
        // The damage reached the decoders (most rounds fail or decode other symbols).
        assert!(
            differed > 240,
            "{differed} of 300 damaged streams decoded differently"
        );
    }

    #[test]
    fn a_compact_table_that_contradicts_itself_is_refused() {
        let message = |stream: &[u8], len| {
            read_table(stream, &mut 0, len, Layout::Compact)
                .unwrap_err()
                .to_string()
        };
        // Two listed symbols out of order (count 8, n = 2, symbols 5 then 3).
        assert_eq!(message(&[8, 2, 5, 3, 0, 0], 8), "bad rANS frequency table");
        // n = 40 promises a bitmap of 40 symbols; this one marks 8.
        let mut stream = vec![8, 40];
        stream.extend_from_slice(&[0xff; 1]);
        stream.extend_from_slice(&[0; 31]);
        assert_eq!(message(&stream, 8), "bad rANS frequency table");
        // Frequencies (freq - 1 varints) that do not sum to the table size.
        assert_eq!(
            message(&[8, 2, 3, 5, 0, 0], 8),
            "rANS frequencies do not sum to the table size"
        );
        // A cut bitmap.
        assert_eq!(message(&[8, 40, 0xff], 8), "rANS stream truncated in table");
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
            check_against_reference::<TINY>(&data, limit)?;
            check_against_reference::<NARROW>(&data, limit)?;
            check_against_reference::<WIDE>(&data, limit)?;
        }

        #[test]
        fn round_trip(data in prop::collection::vec(any::<u8>(), 1..3000)) {
            let enc = encode(&data).unwrap();
            prop_assert_eq!(&decode::<NARROW>(&enc, data.len(), Layout::Roots).unwrap(), &data);
            let wide = encode_counted::<WIDE>(&data, &histogram(&data), usize::MAX).unwrap();
            prop_assert_eq!(decode::<WIDE>(&wide, data.len(), Layout::Roots).unwrap(), data);
        }

        #[test]
        fn hostile_streams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), len in 0usize..500) {
            let layouts = [Layout::Listed, Layout::Compact, Layout::Roots];
            for (vector, layout) in [false, true].into_iter().flat_map(|v| layouts.map(|l| (v, l))) {
                let _ = decode_with::<TINY>(&bytes, len, layout, vector);
                let _ = decode_with::<NARROW>(&bytes, len, layout, vector);
                let _ = decode_with::<WIDE>(&bytes, len, layout, vector);
            }
        }
    }
}
