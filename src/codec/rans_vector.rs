//! Vector kernels for the wide rANS stream: its [`WIDE`] = 32 states are two 16-lane AVX-512
//! vectors or four 8-lane AVX2 ones, so a round is a few table gathers and multiplies and, for
//! its 16-bit words, a compress (encode) or an expand (decode) by the lanes that move one.
//! They write and read exactly the words the scalar coder in `rans` does (tests compare the two
//! on every stream). They run where the CPU has AVX-512 F, BW, VL and VBMI2, or else AVX2 (and
//! POPCNT with either); elsewhere [`Encoder::new`] and [`Decoder::new`] say `None` and the
//! scalar coder runs.
//!
//! Word order: within a round, lanes 0..31 read their words in lane order going forwards, so
//! the encoder, going backwards, stores lanes 16..31's words below the round's end and lanes
//! 0..15's below those.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use super::rans::{fill_slots, EncSymbol, SlotTable, SCALE_BITS, TOTAL, WIDE};

/// The instruction set a kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
}

/// The encoder's per-symbol constants, one gatherable 64-bit entry per symbol: the reciprocal
/// (low half) and `bias | cmpl_freq << 13 | (shift - 32) << 25` (13 + 12 + 4 bits, high half).
/// One 8-lane gather of 64-bit entries loads half the elements two 16-lane gathers would.
pub(super) struct Encoder {
    entries: [u64; 256],
    isa: Isa,
}

impl Encoder {
    /// The kernel for `N` states, where it applies: `N` is [`WIDE`] and the CPU has AVX-512 or
    /// AVX2.
    pub(super) fn new<const N: usize>(symbols: &[EncSymbol; 256]) -> Option<Encoder> {
        let isa = best().filter(|_| N == WIDE)?;
        let mut enc = Encoder {
            entries: [0; 256],
            isa,
        };
        for (entry, sym) in enc.entries.iter_mut().zip(symbols) {
            let packed = sym.bias
                | u32::from(sym.cmpl_freq) << 13
                | u32::from(sym.shift.saturating_sub(32)) << 25;
            *entry = u64::from(sym.rcp) | u64::from(packed) << 32;
        }
        Some(enc)
    }

    /// Codes whole rounds of `data` (a multiple of 32 bytes) backwards from its end into
    /// `words` below `pos`, as long as a round's 32 words and the spare slot fit below `pos`.
    /// Returns how many bytes at the start of `data` are left for the scalar coder.
    pub(super) fn encode_rounds<const N: usize>(
        &self,
        data: &[u8],
        words: &mut [u16],
        pos: &mut usize,
        xs: &mut [u32; N],
    ) -> usize {
        assert!(N == WIDE && data.len().is_multiple_of(WIDE) && *pos <= words.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `new` checked the CPU features of `isa`; the kernels stay inside `data`,
        // `words[..pos]` and `xs` (asserted above).
        unsafe {
            match self.isa {
                Isa::Avx512 => avx512::encode_rounds(self, data, words, pos, xs.as_mut_ptr()),
                Isa::Avx2 => avx2::encode_rounds(self, data, words, pos, xs.as_mut_ptr()),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("Encoder::new is None off x86_64")
    }
}

/// The decoder's table: for each of the [`TOTAL`] slots, `freq - 1 | (slot - start) << 12 |
/// symbol << 24`, one gather per vector of states.
pub(super) struct Decoder {
    table: SlotTable<u32>,
    isa: Isa,
}

impl Decoder {
    /// The kernel for a stream of `N` states with this frequency table (summing to [`TOTAL`]),
    /// where it applies: `N` is [`WIDE`] and the CPU has AVX-512 or AVX2.
    pub(super) fn new<const N: usize>(freq: &[u32; 256]) -> Option<Decoder> {
        let isa = best().filter(|_| N == WIDE)?;
        let table = fill_slots(freq, |s, f, k| (f - 1) | k << 12 | u32::from(s) << 24);
        Some(Decoder { table, isa })
    }

    /// One scalar decode step from the same table: the symbol and the new (not yet
    /// renormalized) state.
    #[inline(always)]
    pub(super) fn step(&self, x: u32) -> (u8, u32) {
        let e = self.table[(x & (TOTAL - 1)) as usize];
        let (freq, offset) = ((e & 0xfff) + 1, (e >> 12) & 0xfff);
        ((e >> 24) as u8, freq * (x >> SCALE_BITS) + offset)
    }

    /// Decodes whole rounds of 32 symbols into `out` while 32 words remain in `words`.
    /// Returns the symbols decoded and the word bytes read.
    pub(super) fn decode_rounds<const N: usize>(
        &self,
        words: &[u8],
        out: &mut [u8],
        xs: &mut [u32; N],
    ) -> (usize, usize) {
        assert!(N == WIDE);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `new` checked the CPU features of `isa`; the kernels read 64 bytes from a
        // word position only while 64 remain and write whole rounds inside `out`.
        unsafe {
            match self.isa {
                Isa::Avx512 => avx512::decode_rounds(self, words, out, xs.as_mut_ptr()),
                Isa::Avx2 => avx2::decode_rounds(self, words, out, xs.as_mut_ptr()),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("Decoder::new is None off x86_64")
    }
}

/// The widest instruction set this CPU runs a kernel on (checked once by the standard
/// library's cache), `None` where neither.
pub(crate) fn best() -> Option<Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if !has!("popcnt") {
            None
        } else if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vbmi2") {
            Some(Isa::Avx512)
        } else if has!("avx2") {
            Some(Isa::Avx2)
        } else {
            None
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}
