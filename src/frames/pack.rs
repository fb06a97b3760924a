//! Packing of residual codes into bytes before the entropy stage: zigzag varints with zero runs
//! collapsed (RLE), or narrow little-endian integers split into byte planes. Readers hand the
//! codes back one at a time and fail (never panic) on short or malformed input.

/// Zero runs at least this long become one run token.
const MIN_RUN: u64 = 8;
/// RLE token: one zero code.
const TOKEN_ZERO: u64 = 0;
/// RLE token: a run of `MIN_RUN + n` zeros, `n` in the next varint.
const TOKEN_RUN: u64 = 1;

/// Signed to unsigned, small magnitudes first: 0, -1, 1, -2, ...
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

pub(crate) use crate::codec::varint::{get_varint, put_varint};

use super::masks::{self, BlockMasks, BLOCK};
use crate::codec::bits::BitSink;

/// A residual code as the encoder holds it between prediction and packing: the narrowest signed
/// integer every code of the dtype and bound fits (`i8` for U8 under a bound of at least 1,
/// `i64` for F32 under a bound), so the context split and the packers move an eighth to a half
/// of the bytes `i64` codes would. The packed bytes do not depend on the width.
pub(crate) trait Code: Copy + Default + Send + Sync + 'static {
    /// The magnitude kept for contexts (`|code|`, saturated at `u32::MAX`).
    type Mag: Copy + Default + Into<u64>;
    /// `v` when it fits, else `None`.
    fn narrow(v: i64) -> Option<Self>;
    /// The code as `i64`.
    fn get(self) -> i64;
    /// `|code|`, saturated at `u32::MAX` as the decoder's context magnitudes are.
    fn mag(self) -> Self::Mag;
    /// The masks of a block of at most [`BLOCK`] codes.
    #[inline(always)]
    fn masks(block: &[Self]) -> BlockMasks {
        masks::masks_scalar(block)
    }
}

macro_rules! small_code {
    ($t:ty, $m:ty $(, $masks:path)?) => {
        impl Code for $t {
            type Mag = $m;
            #[inline(always)]
            fn narrow(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            #[inline(always)]
            fn get(self) -> i64 {
                i64::from(self)
            }
            #[inline(always)]
            fn mag(self) -> $m {
                self.unsigned_abs()
            }
            $(
                #[inline(always)]
                fn masks(block: &[Self]) -> BlockMasks {
                    $masks(block)
                }
            )?
        }
    };
}

small_code!(i8, u8, masks::masks_i8);
small_code!(i16, u16);
small_code!(i32, u32);

impl Code for i64 {
    type Mag = u32;
    #[inline(always)]
    fn narrow(v: i64) -> Option<Self> {
        Some(v)
    }
    #[inline(always)]
    fn get(self) -> i64 {
        self
    }
    #[inline(always)]
    fn mag(self) -> u32 {
        self.unsigned_abs().min(u64::from(u32::MAX)) as u32
    }
}

/// Zigzag varints, zero runs of [`MIN_RUN`] or more collapsed into one token.
pub(crate) fn pack_rle<C: Code>(codes: &[C]) -> Vec<u8> {
    // Only the nonzero codes are visited one by one: the zeros between two of them are counted
    // from the block's mask, and written when the next nonzero code (or the end) closes them,
    // as one run token or as single zero tokens.
    let mut out = Vec::with_capacity(codes.len());
    let mut zeros = 0usize;
    for block in codes.chunks(BLOCK) {
        let mut nz = C::masks(block).above[0];
        let mut next = 0usize;
        while nz != 0 {
            let i = nz.trailing_zeros() as usize;
            nz &= nz - 1;
            zeros += i - next;
            next = i + 1;
            close_zeros(&mut out, zeros);
            zeros = 0;
            put_varint(&mut out, zigzag(block[i].get()).saturating_add(1));
        }
        zeros += block.len() - next;
    }
    close_zeros(&mut out, zeros);
    out
}

/// Writes a run of `run` zero codes: one run token from [`MIN_RUN`] on, else single tokens.
#[inline(always)]
fn close_zeros(out: &mut Vec<u8>, run: usize) {
    if run as u64 >= MIN_RUN {
        put_varint(out, TOKEN_RUN);
        put_varint(out, run as u64 - MIN_RUN);
    } else {
        out.extend_from_slice(&[TOKEN_ZERO as u8; MIN_RUN as usize][..run]);
    }
}

/// Bytes per code needed to hold every zigzagged code of `codes` (1 to 8).
pub(crate) fn narrow_width<C: Code>(codes: &[C]) -> u8 {
    // The OR of the zigzagged codes has the same highest bit as their maximum.
    let any = codes.iter().fold(0u64, |a, c| a | zigzag(c.get()));
    (((64 - any.leading_zeros()) as u8).div_ceil(8)).max(1)
}

/// Zigzagged codes as `width`-byte little-endian integers, split into `width` byte planes.
pub(crate) fn pack_narrow<C: Code>(codes: &[C], width: u8) -> Vec<u8> {
    let n = codes.len();
    let mut out = vec![0u8; n * width as usize];
    // One plane at a time: each pass is a plain map the compiler vectorizes.
    for b in 0..width as usize {
        let plane = &mut out[b * n..(b + 1) * n];
        for (o, c) in plane.iter_mut().zip(codes) {
            *o = (zigzag(c.get()) >> (8 * b)) as u8;
        }
    }
    out
}

/// Magnitude levels coded as bitmaps by [`pack_bits`]; larger magnitudes escape to varints.
pub(crate) const BIT_LEVELS: usize = 4;

/// Binarized codes: the counts of each bitmap (varints), then bitmaps (LSB first) of
/// `code != 0` (one bit per code), the sign of each nonzero code, and for `k` in
/// `1..=BIT_LEVELS` whether `|code| > k` (one bit per code with `|code| >= k`), then varints of
/// `|code| - BIT_LEVELS - 1` for the rest. Each bitmap byte carries eight binary decisions, so
/// the entropy stage's byte coder can spend well under one bit on a skewed decision.
pub(crate) fn pack_bits<C: Code>(codes: &[C]) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if fast_pext() {
        // SAFETY: the CPU has BMI2 (checked by `fast_pext`).
        return unsafe { pack_bits_bmi2(codes) };
    }
    pack_bits_with(codes, soft_pext)
}

/// [`pack_bits`] with the BMI2 bit extract.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2,popcnt")]
unsafe fn pack_bits_bmi2<C: Code>(codes: &[C]) -> Vec<u8> {
    pack_bits_with(codes, |v, m| std::arch::x86_64::_pext_u64(v, m))
}

/// True where `pext` is one fast instruction: BMI2, and not an AMD CPU before Zen 3 (family
/// 0x19) nor a Hygon one (Zen 1 based), whose microcoded `pext` takes a cycle or more per mask
/// bit.
#[cfg(target_arch = "x86_64")]
fn fast_pext() -> bool {
    static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAST.get_or_init(|| {
        if !std::arch::is_x86_feature_detected!("bmi2") {
            return false;
        }
        let v = std::arch::x86_64::__cpuid(0);
        let (vendor, version) = ([v.ebx, v.edx, v.ecx], std::arch::x86_64::__cpuid(1).eax);
        let amd = vendor == [0x6874_7541, 0x6974_6e65, 0x444d_4163]; // "AuthenticAMD"
        let hygon = vendor == [0x6f67_7948, 0x6e65_476e, 0x656e_6975]; // "HygonGenuine"
        let family = ((version >> 8) & 0xf) + ((version >> 20) & 0xff);
        !hygon && (!amd || family >= 0x19)
    })
}

/// The bits of `v` where `mask` is set, packed to the low end (what `pext` computes).
#[inline(always)]
fn soft_pext(v: u64, mut mask: u64) -> u64 {
    let mut out = 0;
    let mut bit = 0;
    while mask != 0 {
        out |= ((v >> mask.trailing_zeros()) & 1) << bit;
        bit += 1;
        mask &= mask - 1;
    }
    out
}

/// [`pack_bits`] block by block: every bitmap's bits of a block come from masks of the whole
/// block, so no branch depends on a single code (zero, small and large codes alternate
/// unpredictably); `extract` is `pext`.
#[inline(always)]
fn pack_bits_with<C: Code>(codes: &[C], extract: impl Fn(u64, u64) -> u64) -> Vec<u8> {
    let n = codes.len();
    let mut zero = BitSink::with_capacity(n);
    let mut sign = BitSink::with_capacity(n);
    let mut levels: [BitSink; BIT_LEVELS] = std::array::from_fn(|_| BitSink::with_capacity(n));
    let mut esc = Vec::new();
    for block in codes.chunks(BLOCK) {
        let BlockMasks { neg, above } = C::masks(block);
        zero.append(above[0], block.len() as u32);
        sign.append(extract(neg, above[0]), above[0].count_ones());
        // Level k holds a bit for every code with |code| >= k, i.e. above k - 1.
        for (k, level) in levels.iter_mut().enumerate() {
            level.append(extract(above[k + 1], above[k]), above[k].count_ones());
        }
        let mut big = above[BIT_LEVELS];
        while big != 0 {
            let m = block[big.trailing_zeros() as usize].get().unsigned_abs();
            big &= big - 1;
            put_varint(&mut esc, m - BIT_LEVELS as u64 - 1);
        }
    }
    let mut out = Vec::new();
    put_varint(&mut out, sign.len() as u64);
    for level in &levels {
        put_varint(&mut out, level.len() as u64);
    }
    zero.finish_into(&mut out);
    sign.finish_into(&mut out);
    for level in levels {
        level.finish_into(&mut out);
    }
    out.extend_from_slice(&esc);
    out
}

#[cfg(test)]
/// The first form of [`pack_rle`] (a run counted ahead of it): the layout's reference.
fn pack_rle_reference(codes: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(codes.len());
    let mut i = 0;
    while i < codes.len() {
        if codes[i] == 0 {
            let run = codes[i..].iter().take_while(|&&c| c == 0).count();
            if run as u64 >= MIN_RUN {
                put_varint(&mut out, TOKEN_RUN);
                put_varint(&mut out, run as u64 - MIN_RUN);
            } else {
                out.extend(std::iter::repeat_n(TOKEN_ZERO as u8, run));
            }
            i += run;
        } else {
            put_varint(&mut out, zigzag(codes[i]).saturating_add(1));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
/// The first, direct form of [`pack_bits`] (one `Vec<bool>` per bitmap): the layout's reference.
fn pack_bits_reference(codes: &[i64]) -> Vec<u8> {
    let mut maps: Vec<Vec<bool>> = vec![Vec::new(); BIT_LEVELS + 2];
    let mut esc = Vec::new();
    for &c in codes {
        maps[0].push(c != 0);
        if c == 0 {
            continue;
        }
        maps[1].push(c < 0);
        let m = c.unsigned_abs();
        for k in 1..=BIT_LEVELS as u64 {
            maps[k as usize + 1].push(m > k);
            if m <= k {
                break;
            }
        }
        if m > BIT_LEVELS as u64 {
            put_varint(&mut esc, m - BIT_LEVELS as u64 - 1);
        }
    }
    let mut out = Vec::new();
    for m in &maps[1..] {
        put_varint(&mut out, m.len() as u64);
    }
    for m in &maps {
        let mut bytes = vec![0u8; m.len().div_ceil(8)];
        for (i, &b) in m.iter().enumerate() {
            bytes[i / 8] |= u8::from(b) << (i % 8);
        }
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(&esc);
    out
}

/// One bitmap inside a binarized stream.
pub(crate) struct Bitmap {
    start: usize,
    len: usize,
    next: usize,
}

/// Reads the layout of a binarized stream of `n` codes: the bitmaps and where escapes start.
pub(crate) fn bits_reader(bytes: Vec<u8>, n: usize) -> Result<CodeReader, String> {
    let mut pos = 0;
    let mut lens = vec![n];
    for _ in 0..=BIT_LEVELS {
        let v = get_varint(&bytes, &mut pos)?;
        let prev = *lens.last().expect("nonempty");
        if v > prev as u64 {
            return Err("binarized stream: a bitmap longer than the one before".into());
        }
        lens.push(v as usize);
    }
    let mut maps = Vec::with_capacity(lens.len());
    for len in lens {
        maps.push(Bitmap {
            start: pos,
            len,
            next: 0,
        });
        pos += len.div_ceil(8);
    }
    if pos > bytes.len() {
        return Err("binarized stream shorter than its bitmaps".into());
    }
    Ok(CodeReader::Bits {
        bytes,
        maps,
        esc: pos,
    })
}

/// Hands back the codes of one packed stream, one at a time.
pub(crate) enum CodeReader {
    /// RLE varints.
    Rle {
        /// The packed bytes.
        bytes: Vec<u8>,
        /// Read position.
        pos: usize,
        /// Zeros left in the current run.
        zeros: u64,
    },
    /// Byte planes.
    Narrow {
        /// The planes, plane-major.
        planes: Vec<u8>,
        /// Codes in the stream.
        n: usize,
        /// Bytes per code.
        width: usize,
        /// Next code.
        i: usize,
    },
    /// Binarized ([`pack_bits`]).
    Bits {
        /// The packed bytes.
        bytes: Vec<u8>,
        /// Zero flags, signs, then one map per level.
        maps: Vec<Bitmap>,
        /// Read position of the escapes.
        esc: usize,
    },
}

#[inline]
fn take_bit(bytes: &[u8], map: &mut Bitmap) -> Result<bool, String> {
    if map.next >= map.len {
        return Err("binarized stream exhausted".into());
    }
    let i = map.next;
    map.next += 1;
    Ok(bytes[map.start + i / 8] >> (i % 8) & 1 == 1)
}

impl CodeReader {
    /// The next code; an error when the stream is exhausted or malformed.
    #[inline]
    pub(crate) fn next_code(&mut self) -> Result<i64, String> {
        match self {
            CodeReader::Rle { bytes, pos, zeros } => {
                if *zeros > 0 {
                    *zeros -= 1;
                    return Ok(0);
                }
                match get_varint(bytes, pos)? {
                    TOKEN_ZERO => Ok(0),
                    TOKEN_RUN => {
                        let extra = get_varint(bytes, pos)?;
                        *zeros = extra
                            .checked_add(MIN_RUN - 1)
                            .ok_or_else(|| "zero run too long".to_string())?;
                        Ok(0)
                    }
                    t => Ok(unzigzag(t - 1)),
                }
            }
            CodeReader::Narrow {
                planes,
                n,
                width,
                i,
            } => {
                if *i >= *n {
                    return Err("code stream exhausted".into());
                }
                let mut z = 0u64;
                for b in 0..*width {
                    z |= u64::from(planes[b * *n + *i]) << (8 * b);
                }
                *i += 1;
                Ok(unzigzag(z))
            }
            CodeReader::Bits { bytes, maps, esc } => {
                if !take_bit(bytes, &mut maps[0])? {
                    return Ok(0);
                }
                let neg = take_bit(bytes, &mut maps[1])?;
                let mut m = 1u64;
                for k in 1..=BIT_LEVELS {
                    if !take_bit(bytes, &mut maps[k + 1])? {
                        break;
                    }
                    m = k as u64 + 1;
                }
                if m > BIT_LEVELS as u64 {
                    m = get_varint(bytes, esc)?
                        .checked_add(m)
                        .filter(|&m| m <= i64::MAX as u64)
                        .ok_or_else(|| "escape too large".to_string())?;
                }
                Ok(if neg { -(m as i64) } else { m as i64 })
            }
        }
    }

    /// True when every code has been read (and nothing is left over).
    pub(crate) fn finished(&self) -> bool {
        match self {
            CodeReader::Rle { bytes, pos, zeros } => *zeros == 0 && *pos == bytes.len(),
            CodeReader::Narrow { n, i, .. } => *i == *n,
            CodeReader::Bits { bytes, maps, esc } => {
                *esc == bytes.len() && maps.iter().all(|m| m.next == m.len)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(mut r: CodeReader, n: usize) -> Vec<i64> {
        let v: Vec<i64> = (0..n).map(|_| r.next_code().unwrap()).collect();
        assert!(r.finished());
        assert!(r.next_code().is_err() || matches!(r, CodeReader::Rle { .. }));
        v
    }

    proptest! {
        #[test]
        fn packings_round_trip(codes in prop::collection::vec(
            prop_oneof![Just(0i64), Just(0i64), Just(0i64), -300i64..300, any::<i32>().prop_map(i64::from)],
            0..400,
        )) {
            prop_assert_eq!(pack_rle(&codes), pack_rle_reference(&codes));
            let rle = CodeReader::Rle { bytes: pack_rle(&codes), pos: 0, zeros: 0 };
            prop_assert_eq!(read_all(rle, codes.len()), codes.clone());
            let width = narrow_width(&codes);
            let nar = CodeReader::Narrow {
                planes: pack_narrow(&codes, width), n: codes.len(), width: width as usize, i: 0,
            };
            prop_assert_eq!(read_all(nar, codes.len()), codes.clone());
            prop_assert_eq!(pack_bits(&codes), pack_bits_reference(&codes));
            // The portable extract too, wherever the CPU took the BMI2 one above.
            prop_assert_eq!(pack_bits_with(&codes, soft_pext), pack_bits_reference(&codes));
            let bits = bits_reader(pack_bits(&codes), codes.len()).unwrap();
            prop_assert_eq!(read_all(bits, codes.len()), codes);
        }

        #[test]
        fn rle_matches_reference_on_runs(segments in prop::collection::vec(
            (0usize..30, prop_oneof![Just(0i64), -200i64..200, Just(i64::MIN), Just(i64::MAX)]),
            0..40,
        )) {
            // Runs of zeros of every length around MIN_RUN, between and after other codes.
            let codes: Vec<i64> = segments
                .iter()
                .flat_map(|&(zeros, c)| std::iter::repeat_n(0, zeros).chain([c]))
                .chain(std::iter::repeat_n(0, segments.len() % 11))
                .collect();
            prop_assert_eq!(pack_rle(&codes), pack_rle_reference(&codes));
        }

        #[test]
        fn narrow_codes_pack_as_i64(codes in prop::collection::vec(
            prop_oneof![Just(0i64), Just(0i64), -3i64..4, any::<i8>().prop_map(i64::from)],
            0..400,
        )) {
            let c8: Vec<i8> = codes.iter().map(|&c| c as i8).collect();
            let c16: Vec<i16> = codes.iter().map(|&c| c as i16).collect();
            let c32: Vec<i32> = codes.iter().map(|&c| c as i32).collect();
            let w = narrow_width(&codes);
            prop_assert_eq!((narrow_width(&c8), narrow_width(&c16), narrow_width(&c32)), (w, w, w));
            for bytes in [pack_rle(&c8), pack_rle(&c16), pack_rle(&c32)] {
                prop_assert_eq!(&bytes, &pack_rle_reference(&codes));
            }
            for bytes in [pack_narrow(&c8, w), pack_narrow(&c16, w), pack_narrow(&c32, w)] {
                prop_assert_eq!(&bytes, &pack_narrow(&codes, w));
            }
            for bytes in [pack_bits(&c8), pack_bits(&c16), pack_bits(&c32)] {
                prop_assert_eq!(&bytes, &pack_bits_reference(&codes));
            }
        }

        #[test]
        fn hostile_bits_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), n in 0usize..100) {
            if let Ok(mut r) = bits_reader(bytes, n) {
                for _ in 0..n + 2 {
                    if r.next_code().is_err() {
                        break;
                    }
                }
                let _ = r.finished();
            }
        }

        #[test]
        fn hostile_rle_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut r = CodeReader::Rle { bytes, pos: 0, zeros: 0 };
            for _ in 0..200 {
                if r.next_code().is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn varint_edges() {
        for v in [0, 1, 127, 128, u64::MAX / 2, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos).unwrap(), v);
            assert_eq!(pos, b.len());
        }
        assert!(get_varint(&[0xff; 10], &mut 0).is_err());
        assert!(get_varint(&[0x80], &mut 0).is_err());
        assert_eq!(zigzag(i64::MIN), u64::MAX);
        assert_eq!(unzigzag(u64::MAX), i64::MIN);
    }
}
