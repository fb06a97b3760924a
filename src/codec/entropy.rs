//! The entropy stage: each section of a chunk is stored as-is, with Zstd, or with LZMA,
//! whichever is smallest among the coders the caller allows.

use super::error::{CodecError, CodecResult};
use super::rans::{self, Layout};
use super::sparse;
use crate::profile::{self, Route, Stage};
use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How one section's bytes are stored. The discriminants are on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Entropy {
    /// Bytes kept as they are (incompressible data).
    Stored = 0,
    /// Zstandard frame.
    Zstd = 1,
    /// XZ/LZMA2 stream.
    Lzma = 2,
    /// Order-0 rANS, first stream version (see `codec::rans_v1`); read, no longer written.
    RansV1 = 3,
    /// Order-0 rANS with four states and the listed frequency table; read, no longer written.
    Rans = 4,
    /// Order-0 rANS with 32 states and the compact frequency table; read, no longer written.
    RansWideCompact = 5,
    /// Order-0 rANS with four states and the compact frequency table; read, no longer written.
    RansNarrowCompact = 6,
    /// Mostly one byte value: the other bytes coded on their own, their places as gaps (see
    /// `codec::sparse`).
    Sparse = 7,
    /// Order-0 rANS with four states (see `codec::rans`) and the roots table: beats
    /// Huffman-based Zstd on skewed, structureless data.
    RansNarrow = 8,
    /// Order-0 rANS with 32 states and the roots table, for long sections (vector kernels,
    /// 112 more state bytes).
    RansWide = 9,
    /// Order-0 rANS with one state and the roots table, for sections of a few hundred bytes
    /// (9 bytes fewer than four states, measured).
    RansTiny = 10,
}

impl TryFrom<u8> for Entropy {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            0 => Ok(Entropy::Stored),
            1 => Ok(Entropy::Zstd),
            2 => Ok(Entropy::Lzma),
            3 => Ok(Entropy::RansV1),
            4 => Ok(Entropy::Rans),
            5 => Ok(Entropy::RansWideCompact),
            6 => Ok(Entropy::RansNarrowCompact),
            7 => Ok(Entropy::Sparse),
            8 => Ok(Entropy::RansNarrow),
            9 => Ok(Entropy::RansWide),
            10 => Ok(Entropy::RansTiny),
            other => Err(other),
        }
    }
}

/// Which coders a commit may use (`--codec`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecChoice {
    /// The default: Zstd and rANS, smallest kept. LZMA is left out because on the shared
    /// corpora it saved at most 0.59% while taking most of the commit time (BENCHMARKS.md).
    #[default]
    Auto,
    /// Zstd and rANS only, no LZMA (today the same as `auto`).
    Zstd,
    /// Zstd and LZMA on every section, smallest kept (slowest, smallest).
    Lzma,
    /// rANS and the sparse coding only, no Zstd: the coders whose output follows from a
    /// section's bytes without a search, which a device can run (issue #17). Less CPU than
    /// `auto` for 0.05-0.07% more on the corpora's lossless trajectories and 0.15-1.7% more on
    /// lossy ones (BENCHMARKS.md, "Entropy routes and centred code streams").
    Rans,
}

impl CodecChoice {
    /// The same coders but LZMA, for sections of a few bytes, where it never wins.
    pub(crate) fn without_lzma(self) -> CodecChoice {
        match self {
            CodecChoice::Lzma => CodecChoice::Zstd,
            other => other,
        }
    }
}

impl fmt::Display for CodecChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecChoice::Auto => "auto",
            CodecChoice::Zstd => "zstd",
            CodecChoice::Lzma => "lzma",
            CodecChoice::Rans => "rans",
        })
    }
}

impl FromStr for CodecChoice {
    type Err = CodecError;
    fn from_str(s: &str) -> CodecResult<Self> {
        match s {
            "auto" => Ok(CodecChoice::Auto),
            "zstd" => Ok(CodecChoice::Zstd),
            "lzma" => Ok(CodecChoice::Lzma),
            "rans" => Ok(CodecChoice::Rans),
            other => Err(CodecError::UnknownName {
                what: "codec",
                name: other.to_string(),
                choices: "auto, zstd, lzma or rans",
            }),
        }
    }
}

/// Zstd level. On the byte planes of the shared corpora level 1 stores within -0.1%..+0.6% of
/// level 3 (bench_corpora, every bound) and compresses the high mantissa planes 2.3x faster.
/// Where Huffman cannot go below a bit per byte, rANS takes over.
const ZSTD_LEVEL: i32 = 1;
const LZMA_PRESET: u32 = 6;

/// Sections this long or longer are sampled before Zstd runs on them (see [`zstd_may_win`]).
const SAMPLE_FROM: usize = 16 << 10;
/// The sample: the section's first bytes.
const SAMPLE: usize = 8 << 10;

/// Sections this short are stored as they are without trying a coder: none can be smaller.
/// Zstd's smallest frame of nonempty input is 10 bytes (magic 4, frame header 2, block header
/// 3, one RLE byte); rANS's is 20 (length, count, one symbol and frequency, four states); an
/// XZ stream's is larger still. Half the sections of cnn-digits are this short (a tensor's
/// bias of a few elements split into planes).
const STORED_UP_TO: usize = 10;

/// Zstd's smallest frame of nonempty input (see [`STORED_UP_TO`]): a coding this short or
/// shorter already is not worth running Zstd against.
const ZSTD_SMALLEST: usize = 10;

/// Sections shorter than this are coded with the narrow rANS stream (see [`rans_stream`]).
const WIDE_FROM: usize = 32 << 10;

/// Sections shorter than this are coded with the one-state rANS stream (see [`rans_stream`]),
/// 9 bytes smaller than four states, slower to decode (one chain of dependent steps). At rel
/// 0.01 (`stage_profile`, one thread), pack bytes and rANS decode CPU time with no one-state
/// stream, below 1 KiB and below 2 KiB: digits-mlp 922,258 / 920,138 / 918,649 bytes and 6.7 /
/// 7.1 / 8.2 ms; cnn-digits 5,442,365 / 5,426,623 / 5,423,801 bytes and 31.6 / 35.9 / 38.3 ms.
/// 1 KiB takes 60-85% of the bytes for a third to two thirds of the time.
const TINY_BELOW: usize = 1 << 10;

/// Compresses `data` with the best allowed coder. Returns the coder and the stored bytes.
pub fn compress(data: &[u8], choice: CodecChoice) -> (Entropy, Vec<u8>) {
    compress_with(data, choice, Repeats::Any)
}

/// [`compress`] of a section whose caller knows what `repeats` it may hold beyond its byte
/// histogram: where only runs, Zstd is tried only where it has more of them than the histogram
/// predicts (see [`more_runs_than_order0`]).
pub fn compress_with(data: &[u8], choice: CodecChoice, repeats: Repeats) -> (Entropy, Vec<u8>) {
    if data.len() <= STORED_UP_TO {
        profile::route(Route::Stored, data.len(), data.len());
        return (Entropy::Stored, data.to_vec());
    }
    // One timer over measuring and coding (Zstd and LZMA run inside it, which pauses it).
    let _rans = profile::time_bytes(Stage::Rans, data.len());
    let head = sample_histogram(data);
    if choice != CodecChoice::Lzma && looks_like_noise(data, &head, choice) {
        profile::route(Route::Stored, data.len(), data.len());
        return (Entropy::Stored, data.to_vec());
    }
    code(&measure_sampled(data, head, repeats), choice)
}

/// The repeats beyond its byte histogram a section may hold, as its caller knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeats {
    /// Any: runs, matches, periods (an arange's low bytes).
    Any,
    /// Runs of one value at most: values drawn nearly independently of their neighbours, as
    /// a lossy code stream's codes (its zero-run RLE or its byte planes) or the byte planes of
    /// a float tensor's difference from its parent. On such a section Zstd can beat rANS by
    /// much only through runs.
    Runs,
}

/// A sample whose order-0 entropy is at least this share of 8 bits per byte looks like noise.
/// Uniform random bytes give ~0.9972 on 8 KiB (the plug-in estimate's bias, 255 / (2 x 8192 x
/// ln 2) bits); a perfectly flat histogram (an arange's low bytes) gives 1 and is told apart by
/// Zstd, which finds its repeats.
const NOISE_SHARE: f64 = 0.995;

/// Whether `data` (a long section) is noise no coder can shrink, judged from its first and last
/// [`SAMPLE`] bytes: both near 8 bits per byte at order 0 (`head` counts the first, see
/// [`sample_histogram`]), and Zstd finds no repeats in the first. The low mantissa planes of
/// checkpoints are such noise; measuring the whole section only to store it as it is cost a
/// histogram pass and a Zstd sample on it anyway. On every
/// section of the shared corpora (cnn-digits, its bf16 copy, digits-mlp; lossless and rel 0.01)
/// the head sample alone at this threshold would skip 27 of 126 MB without storing a byte more.
/// Under `--codec rans` Zstd is not asked: it could not code the section either, and so the
/// decision reads only the two samples' histograms, which a device hands over (issue #17).
fn looks_like_noise(data: &[u8], head_counts: &[u64; 256], choice: CodecChoice) -> bool {
    if data.len() < SAMPLE_FROM {
        return false;
    }
    let noisy = |counts: &[u64; 256]| rans::order0_bytes(counts) >= NOISE_SHARE * SAMPLE as f64;
    let (head, tail) = (&data[..SAMPLE], &data[data.len() - SAMPLE..]);
    noisy(head_counts)
        && noisy(&rans::histogram(tail))
        && (choice == CodecChoice::Rans || {
            let _zstd = profile::time_bytes(Stage::Zstd, head.len());
            zstd_compress(head).is_ok_and(|z| z.len() >= head.len())
        })
}

/// A section with its byte histograms and rANS's estimate of its size, computed once: what
/// [`compress_measured`] codes with, and what a caller choosing between layouts of the same
/// values can compare before coding any of them.
pub(crate) struct Measured<'a> {
    data: &'a [u8],
    /// The histogram of the Zstd sample (see [`zstd_may_win`]) and of all of `data`.
    head: [u64; 256],
    counts: [u64; 256],
    rans_kind: Entropy,
    /// rANS's estimated size (order-0 entropy, table and states); `data.len()` when the
    /// section is short enough to be stored as it is.
    pub(crate) estimate: usize,
    /// The order-0 entropy in bytes, the part of `estimate` that is not table or states.
    order0: usize,
    /// What the caller knows of the section's repeats (see [`compress_with`]).
    repeats: Repeats,
}

/// Measures `data` for [`compress_measured`].
pub(crate) fn measure(data: &[u8]) -> Measured<'_> {
    let _rans = profile::time(Stage::Rans);
    measure_untimed(data)
}

fn measure_untimed(data: &[u8]) -> Measured<'_> {
    measure_sampled(data, sample_histogram(data), Repeats::Any)
}

/// [`measure_untimed`] with the sample's histogram already taken (`head`, see
/// [`sample_histogram`]).
fn measure_sampled(data: &[u8], head: [u64; 256], repeats: Repeats) -> Measured<'_> {
    if data.len() <= STORED_UP_TO {
        return Measured {
            data,
            head: [0; 256],
            counts: [0; 256],
            rans_kind: Entropy::Stored,
            estimate: data.len(),
            order0: data.len(),
            repeats,
        };
    }
    let counts = whole_histogram(data, &head);
    let estimates = rans::estimated_sizes(&counts);
    let (rans_kind, estimate) = rans_stream(data.len(), &estimates);
    Measured {
        data,
        head,
        counts,
        rans_kind,
        estimate,
        order0: estimates.order0,
        repeats,
    }
}

/// [`compress`] of a measured section.
pub(crate) fn compress_measured(m: &Measured<'_>, choice: CodecChoice) -> (Entropy, Vec<u8>) {
    let _rans = profile::time_bytes(Stage::Rans, m.data.len());
    code(m, choice)
}

/// Codes a measured section with the best allowed coder (untimed: the callers time it).
fn code(m: &Measured<'_>, choice: CodecChoice) -> (Entropy, Vec<u8>) {
    code_with(m, choice, Coders::All)
}

/// Which coders [`code_with`] tries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Coders {
    /// Every coder `choice` allows.
    All,
    /// rANS or none (and LZMA and Zstd under [`CodecChoice::Lzma`]): a sparse section's other
    /// bytes, which have no runs or repeats left for Zstd to find; trying it on each cost a
    /// third of the sparse coding's time (most are short, where Zstd is always tried) to win
    /// a few bytes on a few.
    OtherBytes,
}

/// The coders beside rANS worth running on a measured section, decided from its length,
/// histograms and samples, and on a section of [`Repeats::Runs`] its count of equal neighbours
/// (one more sum in the histogram's pass, for a device): nothing here searches its bytes (see
/// [`Route`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tries {
    /// The sparse coding around this value, which is most of the section (see
    /// `sparse::candidate`).
    sparse: Option<u8>,
    /// Zstd on the whole section: its samples say it may win (see [`zstd_may_win`]), or
    /// `--codec lzma` tries it everywhere.
    zstd: bool,
    /// LZMA (`--codec lzma` only).
    lzma: bool,
}

/// [`Tries`] for a measured section longer than [`STORED_UP_TO`].
fn tries(m: &Measured<'_>, choice: CodecChoice, coders: Coders) -> Tries {
    let all = coders == Coders::All;
    let lzma = choice == CodecChoice::Lzma;
    let wide = m.rans_kind == Entropy::RansWide;
    Tries {
        sparse: all
            .then(|| sparse::candidate(&m.counts, m.data.len(), wide))
            .flatten(),
        // Evaluated whether or not a short section's sparse coding comes out under Zstd's
        // smallest frame: a section under `SAMPLE_FROM` is not sampled, so that costs nothing.
        zstd: lzma || all && choice != CodecChoice::Rans && zstd_may_win(m),
        lzma,
    }
}

/// Where a measured section is coded: what a coder holding the bytes elsewhere (a device,
/// issue #17) needs to know before it moves them. A [`Route::Rans`] section comes out as
/// [`rans_only`] codes it from the histogram, or stored where that is no smaller.
/// Sections of [`STORED_UP_TO`] bytes or fewer never get here: they are stored outright.
fn route(m: &Measured<'_>, tries: Tries) -> Route {
    if tries.zstd || tries.lzma {
        Route::Search
    } else if tries.sparse.is_some() {
        Route::Sparse
    } else if m.estimate < m.data.len() {
        Route::Rans
    } else {
        Route::Stored
    }
}

/// A section's coding where only rANS is tried: its stream `kind` (from the histogram) under
/// `limit` bytes, `None` where it does not fit (the section is then stored).
fn rans_only(m: &Measured<'_>, limit: usize) -> Option<Vec<u8>> {
    let (data, counts) = (m.data, &m.counts);
    match m.rans_kind {
        Entropy::RansWide => rans::encode_counted::<{ rans::WIDE }>(data, counts, limit),
        Entropy::RansTiny => rans::encode_counted::<{ rans::TINY }>(data, counts, limit),
        _ => rans::encode_counted::<{ rans::NARROW }>(data, counts, limit),
    }
    .filter(|r| r.len() < limit)
}

/// [`code`] with the coders `coders` allows.
fn code_with(m: &Measured<'_>, choice: CodecChoice, coders: Coders) -> (Entropy, Vec<u8>) {
    let data = m.data;
    if data.len() <= STORED_UP_TO {
        if coders == Coders::All {
            profile::route(Route::Stored, data.len(), data.len());
        }
        return (Entropy::Stored, data.to_vec());
    }
    let tries = tries(m, choice, coders);
    let coded = code_tries(m, choice, tries);
    if coders == Coders::All {
        profile::route(route(m, tries), data.len(), coded.1.len());
    }
    coded
}

/// Codes a measured section longer than [`STORED_UP_TO`] with rANS and the coders `tries`
/// allows, the smallest kept.
fn code_tries(m: &Measured<'_>, choice: CodecChoice, tries: Tries) -> (Entropy, Vec<u8>) {
    let (data, rans_kind, estimate) = (m.data, m.rans_kind, m.estimate);
    let counts = &m.counts;
    let mut best = (Entropy::Stored, None::<Vec<u8>>, data.len());
    // Mostly one value: coded sparse where that is smaller than the best so far (on a long
    // section, Zstd's coding; rANS, below, must then beat it in turn). A short section is
    // tried first, so that Zstd need not run where the sparse coding is under its smallest frame.
    let short = data.len() < sparse::SHORT_BELOW;
    let try_sparse = |common: u8, best: &mut (Entropy, Option<Vec<u8>>, usize)| {
        let others = |bytes: &[u8]| code_with(&measure_untimed(bytes), choice, Coders::OtherBytes);
        if let Some(coded) = sparse::encode(data, counts, common, best.2, others) {
            *best = (Entropy::Sparse, None, coded.len());
            best.1 = Some(coded);
        }
    };
    if let Some(common) = tries.sparse.filter(|_| short) {
        try_sparse(common, &mut best);
    }
    if best.2 > ZSTD_SMALLEST && tries.zstd {
        let _zstd = profile::time_bytes(Stage::Zstd, data.len());
        if let Ok(z) = zstd_compress(data) {
            if z.len() < best.2 {
                best = (Entropy::Zstd, None, z.len());
                best.1 = Some(z);
            }
        }
    }
    if let Some(common) = tries.sparse.filter(|_| !short) {
        try_sparse(common, &mut best);
    }
    // The order-0 estimate is cheap; run rANS only where it can win. Against a sparse coding
    // (the planes where rANS is slowest for what it saves) the test is a floor instead: the
    // estimate can be over rANS's coding by a hundred bytes (its table's size on many values).
    let may_beat = if best.0 == Entropy::Sparse {
        let floor = match rans_kind {
            Entropy::RansWide => rans::coded_size_floor::<{ rans::WIDE }>(counts),
            Entropy::RansTiny => rans::coded_size_floor::<{ rans::TINY }>(counts),
            _ => rans::coded_size_floor::<{ rans::NARROW }>(counts),
        };
        floor.saturating_sub(FLOOR_SLACK) < best.2
    } else {
        estimate < best.2
    };
    if let Some(r) = may_beat.then(|| rans_only(m, best.2)).flatten() {
        best = (rans_kind, None, r.len());
        best.1 = Some(r);
    }
    if tries.lzma {
        let _lzma = profile::time_bytes(Stage::Lzma, data.len());
        if let Some(out) = lzma_compress(data).filter(|o| o.len() < best.2) {
            best = (Entropy::Lzma, Some(out), 0);
        }
    }
    match best {
        (kind, Some(bytes), _) => (kind, bytes),
        _ => (Entropy::Stored, data.to_vec()),
    }
}

/// Bytes taken off [`rans::coded_size_floor`] before trusting it: it bounds the coding from
/// a sum of logarithms, measured never above it (by 2 bytes at the closest, in
/// `the_floor_is_never_above_the_coding`), not proven so for every sequence.
const FLOOR_SLACK: usize = 8;

/// Which rANS stream codes a section of `len` bytes with these byte counts, and its estimated
/// size. The wide stream's vector kernels code several times faster, but its 32 states take
/// 112 more bytes: it is chosen only on long sections, where it is no larger than the narrow
/// stream with the listed table (entropy coder 4, which the narrow stream was until it took
/// the compact table: many symbols, where the wide stream's compact table paid for its states)
/// or where the extra states are under 0.1% of the coding. So no section is stored larger or
/// coded slower than before the narrow stream's compact table. Choosing it on every long
/// section would code cnn-digits 1.2x faster (decode 1.9x) but store 0.12% more of its bf16
/// copy and 0.15% more at rel 0.01 (BENCHMARKS.md, "A wide rANS stream and parsed manifests
/// kept per handle").
fn rans_stream(len: usize, estimates: &rans::Estimates) -> (Entropy, usize) {
    let &rans::Estimates {
        tiny,
        narrow,
        wide,
        narrow_listed,
        ..
    } = estimates;
    if len < TINY_BELOW {
        (Entropy::RansTiny, tiny)
    } else if len >= WIDE_FROM && (wide <= narrow_listed || narrow >= 1000 * (wide - narrow)) {
        (Entropy::RansWide, wide)
    } else {
        (Entropy::RansNarrow, narrow)
    }
}

/// Whether Zstd may store a measured section smaller than rANS or raw bytes, so it is worth
/// running on all of it. Zstd beats order-0 rANS only through repeats (runs, matches) that a
/// byte histogram cannot see, or, on a short coding, through its smaller header (a Huffman
/// table against rANS's frequency table). A section of [`Repeats::Runs`] must first have
/// [`more_runs_than_order0`]. Then Zstd runs on a short section always; on a long one it first
/// codes the first [`SAMPLE`] bytes and runs on the whole only if
/// - that sample came within 5% (+64 bytes) of the sample's order-0 entropy (where order 0
///   finds nothing, rANS's estimate no smaller than the section, only if Zstd shrank the sample
///   at all: periodic data such as an arange has a flat histogram, noise matches nothing), and
/// - Zstd found repeats: the sample, or failing that a second one from the middle of the
///   section (a head can differ from the rest: a lossy chunk's first codes), came out under
///   its order-0 entropy; or rANS's table and states are over [`HEADER_SHARE`] of its estimate;
///   or a sample is not like the section (its order-0 rate off by over [`RATE_TOLERANCE`]),
///   so says nothing of it.
///
/// On every section of the shared corpora (cnn-digits, its bf16 copy, digits-mlp; lossless
/// and rel 0.01) the first test alone skipped 20-60% of Zstd's time for at most 0.0014% more
/// stored bytes; the second skips a fifth to a quarter of what was left (cnn-digits lossless:
/// 26.3 -> 20.4 MB of Zstd input), for bytes that the narrow stream's compact table more than
/// gives back on every corpus and bound (BENCHMARKS.md, "Tables rounded where coding costs
/// least, Zstd tried where it can win, planes by AVX-512").
fn zstd_may_win(m: &Measured<'_>) -> bool {
    let data = m.data;
    if m.repeats == Repeats::Runs && !more_runs_than_order0(data, &m.counts) {
        return false;
    }
    if data.len() < SAMPLE_FROM {
        return true;
    }
    let found = |sample: &[u8], counts: &[u64; 256]| {
        let zstd = {
            let _t = profile::time_bytes(Stage::Zstd, sample.len());
            zstd_compress(sample)
        };
        zstd.map(|z| (z.len(), rans::order0_bytes(counts))).ok()
    };
    let Some((zstd, order0)) = found(&data[..SAMPLE], &m.head) else {
        return true;
    };
    let near_order0 = (zstd as f64) < order0 * 1.05 + 64.0;
    let shrank = zstd < SAMPLE;
    if !(near_order0 && (shrank || m.estimate < data.len())) {
        return false;
    }
    let header = m.estimate.saturating_sub(m.order0);
    if (zstd as f64) < order0 || header as f64 > HEADER_SHARE * m.estimate as f64 {
        return true;
    }
    // A sample speaks for the section only if it is as compressible at order 0 as the whole:
    // a frame group's noisy first rows said nothing of the matches Zstd found further on.
    let whole_rate = m.order0 as f64 / data.len() as f64;
    let unlike = |order0: f64| (order0 / SAMPLE as f64 - whole_rate).abs() > RATE_TOLERANCE;
    if unlike(order0) {
        return true;
    }
    let middle = &data[(data.len() - SAMPLE) / 2..][..SAMPLE];
    found(middle, &rans::histogram(middle)).is_none_or(|(z, o)| (z as f64) < o || unlike(o))
}

/// Whether `data` (with these byte counts) has more equal neighbours than bytes drawn
/// independently from its histogram would, `(n - 1) sum p^2`, times 1.1
/// ([`RUNS_EXCESS_TENTHS`]) plus [`RUNS_SLACK`]: the one way Zstd stores a section of
/// [`Repeats::Runs`] much below its order-0 entropy. Exact integer arithmetic, so every machine
/// decides alike.
///
/// On the short code streams of the shared corpora (every section under [`SAMPLE_FROM`] bytes of
/// a lossy commit of cnn-digits, its bf16 copy and digits-mlp, at rel 0.01 and 0.05), Zstd stored
/// 320, 113, 19, 19, 38 and 26 of them smaller than rANS; this test keeps Zstd on 11-21% of
/// their bytes (0.4-6% on bf16) and misses wins worth 1,108, 294, 111, 86, 13 and 0 bytes of
/// 4.8, 2.8, 0.5, 0.2, 1.1 and 0.6 MB coded. On the long ones (lossless and rel 0.01) it
/// leaves out Zstd wins worth 4 bytes in all, and all of bf16's 2.6-3.0 MB that Zstd coded to
/// win one section by nothing (BENCHMARKS.md, "Zstd on short code streams only where they
/// run").
fn more_runs_than_order0(data: &[u8], counts: &[u64; 256]) -> bool {
    let n = data.len() as u128;
    let runs = equal_neighbours(data) as u128;
    let squares: u128 = counts.iter().map(|&c| u128::from(c) * u128::from(c)).sum();
    // runs > EXCESS (n - 1) squares / n^2 + SLACK, times 10 n^2.
    10 * runs * n * n > RUNS_EXCESS_TENTHS * (n - 1) * squares + 10 * RUNS_SLACK * n * n
}

/// How many bytes of `data` equal the one before them. Counted in byte lanes, 255 positions at
/// a time so no lane overflows: 22 GB/s here against 1.1 GB/s for `windows(2)`, which on long
/// sections had cost more than the Zstd runs it saved.
fn equal_neighbours(data: &[u8]) -> usize {
    let Some(last) = data.len().checked_sub(1) else {
        return 0;
    };
    let (before, after) = (&data[..last], &data[1..]);
    before
        .chunks(255)
        .zip(after.chunks(255))
        .map(|(x, y)| {
            let equal = x.iter().zip(y).fold(0u8, |n, (p, q)| n + u8::from(p == q));
            usize::from(equal)
        })
        .sum()
}

/// [`more_runs_than_order0`]'s factor on the expected number of runs, in tenths (1.1).
const RUNS_EXCESS_TENTHS: u128 = 11;
/// [`more_runs_than_order0`]'s allowance for chance on a short stream, in equal neighbours.
const RUNS_SLACK: u128 = 16;

/// How far (in bytes per byte) a sample's order-0 entropy may be from its section's for the
/// sample to speak for it in [`zstd_may_win`].
const RATE_TOLERANCE: f64 = 0.02;

/// rANS's header (table and states) above this share of its estimated size leaves room for
/// Zstd's smaller one (see [`zstd_may_win`]).
const HEADER_SHARE: f64 = 0.01;

/// The byte histogram of `data`'s Zstd sample, its first [`SAMPLE`] bytes (see
/// [`zstd_may_win`] and [`looks_like_noise`]); empty when `data` is too short to be sampled.
fn sample_histogram(data: &[u8]) -> [u64; 256] {
    if data.len() < SAMPLE_FROM {
        return [0; 256];
    }
    rans::histogram(&data[..SAMPLE])
}

/// The byte histogram of all of `data`, given its sample's (`head`, from [`sample_histogram`]):
/// the sampled bytes are not counted again.
fn whole_histogram(data: &[u8], head: &[u64; 256]) -> [u64; 256] {
    if data.len() < SAMPLE_FROM {
        return rans::histogram(data);
    }
    let mut all = rans::histogram(&data[SAMPLE..]);
    for (a, h) in all.iter_mut().zip(head) {
        *a += h;
    }
    all
}

thread_local! {
    // Creating a Zstd context costs more than compressing a small section: keep one per thread.
    static ZSTD_COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static ZSTD_DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    ZSTD_COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        c.as_mut().expect("set above").compress(data)
    })
}

fn zstd_decompress(stored: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    ZSTD_DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("set above").decompress(stored, raw_len)
    })
}

/// LZMA2 in an XZ stream, with the dictionary sized to the input: the preset's 8 MiB
/// dictionary would cost more to allocate and clear than a small section takes to compress.
fn lzma_compress(data: &[u8]) -> Option<Vec<u8>> {
    let mut opts = xz2::stream::LzmaOptions::new_preset(LZMA_PRESET).ok()?;
    let dict = (data.len() as u32).next_power_of_two().clamp(4096, 8 << 20);
    opts.dict_size(dict);
    let mut filters = xz2::stream::Filters::new();
    filters.lzma2(&opts);
    let stream =
        xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::None).ok()?;
    let mut out = Vec::new();
    xz2::read::XzEncoder::new_stream(data, stream)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// Decompresses a section into exactly `raw_len` bytes; anything else is an error (this also
/// stops decompression bombs: output never grows past `raw_len`). A stored section is
/// borrowed: the low mantissa planes of a checkpoint are stored, about half its bytes, and
/// copying them out of the object only to merge them cost a pass over them.
pub fn decompress(kind: Entropy, stored: &[u8], raw_len: usize) -> CodecResult<Cow<'_, [u8]>> {
    let stage = match kind {
        Entropy::Zstd => Stage::ZstdDecode,
        Entropy::Lzma => Stage::LzmaDecode,
        Entropy::Sparse => Stage::SparseDecode,
        _ => Stage::RansDecode,
    };
    let _t = profile::time_bytes(stage, raw_len);
    let out = match kind {
        Entropy::Stored => {
            declared_length(stored, raw_len)?;
            return Ok(Cow::Borrowed(stored));
        }
        Entropy::Zstd => zstd_decompress(stored, raw_len).map_err(CodecError::Zstd)?,
        Entropy::Rans => rans::decode::<{ rans::NARROW }>(stored, raw_len, Layout::Listed)?,
        Entropy::RansNarrowCompact => {
            rans::decode::<{ rans::NARROW }>(stored, raw_len, Layout::Compact)?
        }
        Entropy::RansWideCompact => {
            rans::decode::<{ rans::WIDE }>(stored, raw_len, Layout::Compact)?
        }
        Entropy::RansNarrow => rans::decode::<{ rans::NARROW }>(stored, raw_len, Layout::Roots)?,
        Entropy::RansWide => rans::decode::<{ rans::WIDE }>(stored, raw_len, Layout::Roots)?,
        Entropy::RansTiny => rans::decode::<{ rans::TINY }>(stored, raw_len, Layout::Roots)?,
        Entropy::RansV1 => super::rans_v1::decode(stored, raw_len)?,
        Entropy::Sparse => sparse::decode(stored, raw_len, |kind, bytes, len| {
            decompress(kind, bytes, len)
        })?,
        Entropy::Lzma => {
            let mut out = Vec::with_capacity(raw_len);
            xz2::read::XzDecoder::new(stored)
                .take(raw_len as u64 + 1)
                .read_to_end(&mut out)
                .map_err(CodecError::Lzma)?;
            out
        }
    };
    declared_length(&out, raw_len)?;
    Ok(Cow::Owned(out))
}

/// Fails unless a section's decoded `bytes` are the `raw_len` it declares.
fn declared_length(bytes: &[u8], raw_len: usize) -> CodecResult<()> {
    if bytes.len() != raw_len {
        return Err(CodecError::SectionLength {
            len: bytes.len(),
            expected: raw_len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_bytes::drawn;

    #[test]
    fn every_choice_round_trips() {
        let compressible = vec![3u8; 10_000];
        let noise = drawn(10_000, |x| (x >> 32) as u8);
        let choices = [
            CodecChoice::Auto,
            CodecChoice::Zstd,
            CodecChoice::Lzma,
            CodecChoice::Rans,
        ];
        for choice in choices {
            assert_eq!(choice.to_string().parse::<CodecChoice>().unwrap(), choice);
            for data in [&compressible, &noise, &Vec::new()] {
                let (kind, stored) = compress(data, choice);
                assert!(stored.len() <= data.len());
                assert_eq!(&decompress(kind, &stored, data.len()).unwrap(), data);
            }
        }
        let (kind, _) = compress(&noise, CodecChoice::Auto);
        assert_eq!(kind, Entropy::Stored);
        let (kind, stored) = compress(&compressible, CodecChoice::Zstd);
        assert!(kind == Entropy::Zstd || kind == Entropy::RansNarrow);
        assert!(stored.len() < 20);
    }

    /// The route `compress` takes for `data` under `--codec auto`.
    fn route_of(data: &[u8]) -> Route {
        let noise = looks_like_noise(data, &sample_histogram(data), CodecChoice::Auto);
        if data.len() > STORED_UP_TO && noise {
            return Route::Stored;
        }
        let m = measure_untimed(data);
        if data.len() <= STORED_UP_TO {
            return Route::Stored;
        }
        route(&m, tries(&m, CodecChoice::Auto, Coders::All))
    }

    #[test]
    fn a_section_routed_to_rans_codes_from_its_histogram_alone() {
        let len = 64 << 10;
        let skewed = drawn(len, |x| if x % 10 < 7 { 0 } else { (x >> 40) as u8 });
        let mantissa = drawn(1 << 20, |x| {
            ((x >> 20) % 1000 * ((x >> 40) % 1000) / 3907) as u8
        });
        let sections = [
            ("skewed", skewed.clone(), Route::Rans),
            (
                "skewed, narrow",
                skewed[..WIDE_FROM - 1].to_vec(),
                Route::Rans,
            ),
            ("mantissa", mantissa, Route::Rans),
            ("noise", drawn(len, |x| (x >> 32) as u8), Route::Stored),
            ("tiny", vec![1, 2, 3, 4, 5], Route::Stored),
            (
                "periodic",
                (0..len).map(|i| i as u8).collect(),
                Route::Search,
            ),
            ("short", skewed[..400].to_vec(), Route::Search),
            (
                "mostly zeros",
                drawn(len, |x| if x % 100 < 96 { 0 } else { (x >> 40) as u8 }),
                Route::Sparse,
            ),
        ];
        for (name, data, expected) in sections {
            assert_eq!(route_of(&data), expected, "{name}");
            let (kind, stored) = compress(&data, CodecChoice::Auto);
            match expected {
                Route::Stored => assert_eq!((kind, &stored), (Entropy::Stored, &data), "{name}"),
                Route::Rans => {
                    let m = measure_untimed(&data);
                    let alone = rans_only(&m, data.len())
                        .map_or((Entropy::Stored, data.clone()), |r| (m.rans_kind, r));
                    assert_eq!((kind, &stored), (alone.0, &alone.1), "{name}");
                    assert_ne!(kind, Entropy::Stored, "{name}");
                }
                Route::Sparse | Route::Search => {}
            }
            assert_eq!(
                decompress(kind, &stored, data.len()).unwrap(),
                data,
                "{name}"
            );
            // Bytes outside the three samples (head, middle, tail) moved, the histogram kept:
            // the route cannot change, as it never read them.
            if data.len() >= SAMPLE_FROM * 4 {
                let mut moved = data.clone();
                let middle = (data.len() - SAMPLE) / 2;
                moved[SAMPLE..middle].reverse();
                moved[middle + SAMPLE..data.len() - SAMPLE].reverse();
                assert_ne!(moved, data, "{name}");
                assert_eq!(route_of(&moved), expected, "{name} rearranged");
            }
        }
    }

    #[test]
    fn zstd_is_tried_only_where_repeats_may_pay() {
        let len = 64 << 10;
        let try_zstd = |data: &[u8]| {
            let m = measure_untimed(data);
            assert_eq!(m.counts, rans::histogram(data));
            zstd_may_win(&m)
        };
        // A flat histogram but nothing but repeats (an arange's low byte): Zstd's case.
        let periodic: Vec<u8> = (0..len).map(|i| i as u8).collect();
        assert!(try_zstd(&periodic));
        let (kind, stored) = compress(&periodic, CodecChoice::Auto);
        assert_eq!(kind, Entropy::Zstd);
        assert!(stored.len() < 1000, "{}", stored.len());
        // Never under `--codec rans`, which keeps to the coders a device runs.
        let (kind, stored) = compress(&periodic, CodecChoice::Rans);
        assert_eq!(kind, Entropy::Stored);
        assert_eq!(decompress(kind, &stored, len).unwrap(), periodic);
        // Runs of a few values: Zstd's matches beat order 0.
        let runs: Vec<u8> = (0..len).map(|i| ((i / 50) % 3) as u8).collect();
        assert!(try_zstd(&runs));
        // Independent skewed bytes (rANS's case) and noise (stored): no repeats to find.
        let skewed = drawn(len, |x| if x % 10 < 7 { 0 } else { (x >> 40) as u8 });
        assert!(!try_zstd(&skewed));
        assert_eq!(compress(&skewed, CodecChoice::Auto).0, Entropy::RansWide);
        assert_eq!(
            compress(&skewed[..WIDE_FROM - 1], CodecChoice::Auto).0,
            Entropy::RansNarrow
        );
        // A short one takes the one-state stream, which decodes back.
        let short = &skewed[..TINY_BELOW - 1];
        let (kind, stored) = compress(short, CodecChoice::Auto);
        assert_eq!(kind, Entropy::RansTiny);
        assert_eq!(decompress(kind, &stored, short.len()).unwrap(), short);
        // Few symbols and a short coding: the wide stream's extra states would show.
        let three = drawn(len, |x| [0, 0, 0, 0, 0, 0, 1, 2][(x % 8) as usize]);
        assert_eq!(compress(&three, CodecChoice::Auto).0, Entropy::RansNarrow);
        let noise = drawn(len, |x| (x >> 32) as u8);
        assert!(!try_zstd(&noise));
        assert_eq!(compress(&noise, CodecChoice::Auto).0, Entropy::Stored);
        // Short sections are always tried.
        assert!(try_zstd(&noise[..SAMPLE_FROM - 1]));
        // All 256 values, mildly skewed, no repeats: Zstd's header can win a short coding
        // (rANS's table is over 1% of it), not a long one.
        let mantissa = |len| {
            drawn(len, |x| {
                ((x >> 20) % 1000 * ((x >> 40) % 1000) / 3907) as u8
            })
        };
        // Such a head, then runs: found by the middle sample.
        let mut later_runs = mantissa(1 << 20);
        for (i, b) in later_runs.iter_mut().enumerate().skip(SAMPLE) {
            *b = ((i / 50) % 3) as u8;
        }
        assert!(try_zstd(&later_runs));
        let short = mantissa(SAMPLE_FROM);
        let m = measure_untimed(&short);
        assert!(m.estimate - m.order0 > m.estimate / 100);
        assert!(try_zstd(&short));
        let long = mantissa(1 << 20);
        let m = measure_untimed(&long);
        assert!(m.estimate - m.order0 < m.estimate / 100);
        assert!(!try_zstd(&long));
        // Noise where both samples fall, repeats of a 64-symbol block elsewhere: the samples
        // are far noisier than the whole, so they do not speak for it.
        let block = drawn(4096, |x| (x % 64) as u8);
        let mut mixed: Vec<u8> = block.iter().copied().cycle().take(256 << 10).collect();
        mixed[..SAMPLE].copy_from_slice(&noise[..SAMPLE]);
        let middle = (mixed.len() - SAMPLE) / 2;
        mixed[middle..middle + SAMPLE].copy_from_slice(&noise[SAMPLE..2 * SAMPLE]);
        assert!(try_zstd(&mixed));
        assert_eq!(compress(&mixed, CodecChoice::Auto).0, Entropy::Zstd);
    }

    #[test]
    fn short_code_streams_try_zstd_only_where_they_run() {
        let len = 4000;
        let skewed = drawn(len, |x| [0, 0, 0, 0, 0, 1, 255, 2][(x % 8) as usize]);
        // The same values in runs of 1-40: Zstd's case on a short stream.
        let mut runs = skewed.clone();
        let mut at = 0;
        for (k, n) in drawn(len, |x| (x % 40) as u8 + 1).into_iter().enumerate() {
            let end = (at + usize::from(n)).min(len);
            runs[at..end].fill(skewed[k]);
            at = end;
            if at == len {
                break;
            }
        }
        let counts = |d: &[u8]| rans::histogram(d);
        for d in [&skewed[..], &runs, &[], &[3], &[3, 3], &vec![9; 1000]] {
            let want = d.windows(2).filter(|w| w[0] == w[1]).count();
            assert_eq!(equal_neighbours(d), want);
        }
        assert!(!more_runs_than_order0(&skewed, &counts(&skewed)));
        assert!(more_runs_than_order0(&runs, &counts(&runs)));
        // Alternating values have no runs; one value runs exactly as its histogram predicts
        // (rANS codes it in 20 bytes, its states and table; Zstd in 19).
        let alternating: Vec<u8> = (0..len).map(|i| (i % 2) as u8).collect();
        assert!(!more_runs_than_order0(&alternating, &counts(&alternating)));
        let one = vec![7u8; len];
        assert!(!more_runs_than_order0(&one, &counts(&one)));
        assert_eq!(
            compress_with(&one, CodecChoice::Auto, Repeats::Runs)
                .1
                .len(),
            20
        );
        for (name, data, zstd) in [("independent", &skewed, false), ("runs", &runs, true)] {
            let m = measure_sampled(data, sample_histogram(data), Repeats::Runs);
            assert_eq!(zstd_may_win(&m), zstd, "{name}");
            let (kind, stored) = compress_with(data, CodecChoice::Auto, Repeats::Runs);
            assert_eq!(decompress(kind, &stored, len).unwrap(), *data, "{name}");
            if !zstd {
                assert_eq!(kind, Entropy::RansNarrow, "{name}");
            }
        }
        assert_eq!(
            compress_with(&runs, CodecChoice::Auto, Repeats::Runs).0,
            Entropy::Zstd
        );
        // A short periodic section is not a code stream: `compress` still finds its repeats,
        // which have no runs at all.
        let periodic: Vec<u8> = (0..len).map(|i| i as u8).collect();
        assert!(!more_runs_than_order0(&periodic, &counts(&periodic)));
        assert_eq!(compress(&periodic, CodecChoice::Auto).0, Entropy::Zstd);
        // A long one that runs is sampled as any section is; one that does not never gets
        // Zstd, whatever its sample would say (its header cannot win on a long coding).
        let long: Vec<u8> = runs.iter().copied().cycle().take(SAMPLE_FROM * 4).collect();
        let (a, b) = (
            compress(&long, CodecChoice::Auto),
            compress_with(&long, CodecChoice::Auto, Repeats::Runs),
        );
        assert_eq!(a, b);
        let long = drawn(SAMPLE_FROM * 4, |x| {
            [0, 0, 0, 0, 0, 1, 255, 2][(x % 8) as usize]
        });
        let m = measure_sampled(&long, sample_histogram(&long), Repeats::Runs);
        assert!(!zstd_may_win(&m));
        assert_eq!(
            compress_with(&long, CodecChoice::Auto, Repeats::Runs).0,
            Entropy::RansNarrow
        );
    }

    #[test]
    fn sparse_where_no_larger_than_the_other_coders() {
        let mut sparse = 0;
        for len in [600, 4096, 64 << 10] {
            for one_in in [200, 50, 20, 10, 5, 4, 3] {
                let data = drawn(len, |x| if x % one_in == 0 { (x >> 40) as u8 } else { 0 });
                let (kind, stored) = compress(&data, CodecChoice::Auto);
                assert_eq!(&decompress(kind, &stored, len).unwrap(), &data);
                if kind != Entropy::Sparse {
                    continue;
                }
                sparse += 1;
                let counts = rans::histogram(&data);
                let narrow = rans::encode_counted::<{ rans::NARROW }>(&data, &counts, usize::MAX);
                let wide = rans::encode_counted::<{ rans::WIDE }>(&data, &counts, usize::MAX);
                let zstd = zstd_compress(&data).unwrap();
                for (other, coded) in [(6, narrow.unwrap()), (5, wide.unwrap()), (1, zstd)] {
                    assert!(
                        stored.len() <= coded.len(),
                        "{len} bytes, one in {one_in}: sparse {} > coder {other}'s {}",
                        stored.len(),
                        coded.len()
                    );
                }
                // Under a quarter of other bytes, a long section.
                assert!(one_in > 3 && len > 600, "{len} {one_in}");
            }
        }
        assert!(sparse >= 4, "{sparse}");
    }

    /// A short section of one value (a bias that did not change) is five bytes sparse, under
    /// Zstd's smallest frame (so Zstd need not run); one of few other bytes is coded no larger
    /// than by Zstd or rANS.
    #[test]
    fn short_sections_of_mostly_one_value() {
        for len in 1..2000 {
            let zstd = zstd_compress(&vec![0u8; len]).unwrap().len();
            assert!(zstd >= ZSTD_SMALLEST, "{len} bytes: Zstd's frame is {zstd}");
        }
        for len in [STORED_UP_TO + 1, 64, 300, sparse::SHORT_BELOW - 1] {
            let same = vec![9u8; len];
            let (kind, stored) = compress(&same, CodecChoice::Auto);
            assert_eq!((kind, stored.len()), (Entropy::Sparse, 5), "{len} bytes");
            assert_eq!(&decompress(kind, &stored, len).unwrap(), &same);
            for one_in in [40, 10, 5] {
                let data = drawn(len, |x| if x % one_in == 0 { (x >> 40) as u8 } else { 0 });
                let (kind, stored) = compress(&data, CodecChoice::Auto);
                assert_eq!(&decompress(kind, &stored, len).unwrap(), &data);
                let zstd = zstd_compress(&data).unwrap().len();
                let rans = rans::encode(&data).unwrap().len();
                assert!(
                    stored.len() <= zstd.min(rans).min(len),
                    "{len} bytes, one in {one_in}: {kind:?} {} against Zstd {zstd}, rANS {rans}",
                    stored.len()
                );
            }
        }
    }

    #[test]
    fn only_noise_at_both_ends_is_stored_unmeasured() {
        let len = 64 << 10;
        let noise = drawn(len, |x| (x >> 32) as u8);
        let is_noise =
            |data: &[u8], choice| looks_like_noise(data, &sample_histogram(data), choice);
        for choice in [CodecChoice::Auto, CodecChoice::Rans] {
            assert!(is_noise(&noise, choice));
            assert!(!looks_like_noise(
                &noise[..SAMPLE_FROM - 1],
                &[0; 256],
                choice
            ));
        }
        // An arange's low byte: as flat as can be, but all repeats, for Zstd; stored outright
        // where Zstd is not allowed (nothing else could code it).
        let periodic: Vec<u8> = (0..len).map(|i| i as u8).collect();
        assert!(!is_noise(&periodic, CodecChoice::Auto));
        assert!(is_noise(&periodic, CodecChoice::Rans));
        for choice in [CodecChoice::Auto, CodecChoice::Rans] {
            // Seven bits of noise (the top one clear) are below the threshold: rANS saves 1/8.
            let seven_bits = drawn(len, |x| (x >> 32) as u8 & 0x7f);
            assert!(!is_noise(&seven_bits, choice));
            assert_ne!(compress(&seven_bits, choice).0, Entropy::Stored);
            // Noise with a compressible head or tail is measured and coded.
            for compressible in [0..SAMPLE, len - SAMPLE..len] {
                let mut mixed = noise.clone();
                mixed[compressible].fill(7);
                assert!(!is_noise(&mixed, choice));
                assert_ne!(compress(&mixed, choice).0, Entropy::Stored);
            }
        }
    }

    #[test]
    fn no_coder_shrinks_a_section_stored_outright() {
        for len in 1..=STORED_UP_TO {
            for data in [
                vec![0u8; len],
                (0..len as u8).collect(),
                drawn(len, |x| x as u8),
            ] {
                assert!(
                    zstd_compress(&data).unwrap().len() >= len,
                    "zstd, {len} bytes"
                );
                assert!(rans::encode(&data).unwrap().len() >= len);
                assert!(lzma_compress(&data).unwrap().len() >= len);
                assert_eq!(compress(&data, CodecChoice::Lzma), (Entropy::Stored, data));
            }
        }
    }

    #[test]
    fn wrong_length_is_an_error() {
        let (kind, stored) = compress(&[1u8; 1000], CodecChoice::Lzma);
        assert!(decompress(kind, &stored, 999).is_err());
        assert!(decompress(kind, &stored, 1001).is_err());
        assert!(decompress(Entropy::Zstd, b"garbage", 10).is_err());
        // A stored section is handed back borrowed, only when its length is the declared one.
        let raw = [7u8; 100];
        assert!(matches!(decompress(Entropy::Stored, &raw, 100), Ok(Cow::Borrowed(b)) if b == raw));
        let e = decompress(Entropy::Stored, &raw, 101)
            .unwrap_err()
            .to_string();
        assert!(e.contains("101"), "{e}");
    }
}
