//! Code streams wider than a byte, centred (code stream form 8): each code as the zigzag of its
//! distance from the stream's median, every byte plane of those its own entropy section.
//!
//! The narrow planes of forms 2 and 4 keep codes in two's complement and code their planes as
//! one section: the high plane repeats the sign the low plane already carries, and one table
//! serves two unlike distributions. A keyframe's codes (log magnitudes, all far from zero) and a
//! delta stream with a few codes past 127 paid for it: under `--codec rans` cnn-digits/bf16 at
//! rel 0.05 stored its codes at 1.489 bits each against their order-0 entropy of 1.095; Zstd
//! won some of it back (1.149) by finding the high plane's runs, which a device coder cannot
//! (issue #17). Centred, a plane that is nearly constant codes to almost nothing on its own and
//! the low plane carries each distance once: 1.117 under `rans`, 1.116 under `auto`
//! (BENCHMARKS.md, "Entropy routes and centred code streams").
//!
//! Layout after the form byte: the plane count `w` (1 to 4, u8), the code count (varint), the
//! centre (zigzag varint), then per plane, lowest first: its entropy coder (u8), its stored
//! length (varint) and its stored bytes. The section holding the stream is stored as it is.

use std::borrow::Cow;

use super::chunk::Section;
use super::entropy::{self, CodecChoice, Entropy, Repeats};
use super::error::{CodecError, CodecResult};
use super::varint::{get_varint, put_varint};

/// The stream's first raw byte.
pub(super) const FORM: u8 = 8;

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// Codes a median is taken from: an evenly spaced sample of a longer stream. The centre only
/// has to sit among the codes (it is stored), and a full selection cost a copy and a pass of
/// random reads per wide stream.
const MEDIAN_SAMPLE: usize = 4096;

/// The median of an evenly spaced sample of `codes` (not empty).
fn centre_of(codes: &[i32]) -> i32 {
    let step = codes.len().div_ceil(MEDIAN_SAMPLE);
    let mut sample: Vec<i32> = codes.iter().step_by(step).copied().collect();
    let mid = sample.len() / 2;
    *sample.select_nth_unstable(mid).1
}

/// The stream's raw bytes, form byte first, with its planes coded under `choice`; `None` for
/// an empty stream or distances that do not fit four bytes (codes spread over more than 2^31,
/// which the code range never allows).
pub(super) fn encode(codes: &[i32], choice: CodecChoice) -> Option<Vec<u8>> {
    if codes.is_empty() {
        return None;
    }
    let centre = centre_of(codes);
    // One pass: the distances as they fit four bytes, and their widest, which says whether
    // they do.
    let mut widest = 0u64;
    let distances: Vec<u32> = codes
        .iter()
        .map(|&c| {
            let d = zigzag(i64::from(c) - i64::from(centre));
            widest |= d;
            d as u32
        })
        .collect();
    let planes = match widest {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xff_ffff => 3,
        0x100_0000..=0xffff_ffff => 4,
        _ => return None,
    };
    let mut out = vec![FORM, planes as u8];
    put_varint(&mut out, codes.len() as u64);
    put_varint(&mut out, zigzag(i64::from(centre)));
    let mut plane = vec![0u8; codes.len()];
    for b in 0..planes {
        for (p, &d) in plane.iter_mut().zip(&distances) {
            *p = (d >> (8 * b)) as u8;
        }
        let section = Section::compress_with(&plane, choice, Repeats::Runs);
        out.push(section.entropy as u8);
        put_varint(&mut out, section.stored.len() as u64);
        out.extend_from_slice(&section.stored);
    }
    Some(out)
}

/// Decodes a stream's bytes after its form byte: at most `n` codes (the chunk's elements).
pub(super) fn decode(bytes: &[u8], n: usize) -> CodecResult<Vec<i32>> {
    let truncated = |offset: usize| CodecError::Truncated { needs: 1, offset };
    let &planes = bytes.first().ok_or(truncated(0))?;
    if !(1..=4).contains(&planes) {
        return Err(CodecError::UnknownTag {
            what: "centred code stream's plane count",
            value: planes,
        });
    }
    let mut pos = 1;
    let count = get_varint(bytes, &mut pos)?;
    let count = usize::try_from(count)
        .ok()
        .filter(|&c| c <= n)
        .ok_or(CodecError::TooManyCodes)?;
    // The encoder's centre is a code: anything wider is damage (and would overflow below).
    let centre = unzigzag(get_varint(bytes, &mut pos)?);
    let centre =
        i64::from(i32::try_from(centre).map_err(|_| CodecError::CentredCodeRange(centre))?);
    let mut coded = Vec::with_capacity(usize::from(planes));
    for _ in 0..planes {
        let tag = *bytes.get(pos).ok_or(truncated(pos))?;
        let kind = Entropy::try_from(tag).map_err(|value| CodecError::UnknownTag {
            what: "coder of a centred code plane",
            value,
        })?;
        pos += 1;
        let stored_len = get_varint(bytes, &mut pos)?;
        let stored = usize::try_from(stored_len)
            .ok()
            .and_then(|len| bytes.get(pos..pos.checked_add(len)?))
            .ok_or(CodecError::Truncated {
                needs: stored_len as usize,
                offset: pos,
            })?;
        pos += stored.len();
        coded.push((kind, stored));
    }
    if pos != bytes.len() {
        return Err(CodecError::TrailingBytes {
            count: bytes.len() - pos,
            after: "a centred code stream",
        });
    }
    let planes = coded
        .into_iter()
        .map(|(kind, stored)| entropy::decompress(kind, stored, count))
        .collect::<CodecResult<Vec<_>>>()?;
    let farthest = (1i64 << (8 * planes.len() - 1)) - 1;
    if i32::try_from(centre - farthest - 1).is_ok() && i32::try_from(centre + farthest).is_ok() {
        // Every distance these planes can hold lands in range: 32-bit sums, no check per code.
        let centre = centre as i32;
        return Ok(assemble(&planes, count, |d| {
            centre.wrapping_add(unzigzag(u64::from(d)) as i32)
        }));
    }
    assemble(&planes, count, |d| {
        let code = centre + unzigzag(u64::from(d));
        i32::try_from(code).map_err(|_| CodecError::CentredCodeRange(code))
    })
    .into_iter()
    .collect()
}

/// `code` of every distance the planes (lowest first, `count` bytes each) hold, in one pass
/// over them for the one or two planes nearly every stream has.
fn assemble<T>(planes: &[Cow<'_, [u8]>], count: usize, code: impl Fn(u32) -> T) -> Vec<T> {
    match planes {
        [low] => low.iter().map(|&p| code(u32::from(p))).collect(),
        [low, high] => low
            .iter()
            .zip(high.iter())
            .map(|(&l, &h)| code(u32::from(l) | u32::from(h) << 8))
            .collect(),
        _ => {
            let mut distances = vec![0u32; count];
            for (b, plane) in planes.iter().enumerate() {
                for (d, &p) in distances.iter_mut().zip(plane.iter()) {
                    *d |= u32::from(p) << (8 * b);
                }
            }
            distances.into_iter().map(code).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_bytes::xorshift;

    /// `n` codes, each drawn by `f` from an xorshift draw.
    fn drawn(n: usize, f: impl Fn(u64) -> i32) -> Vec<i32> {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        (0..n).map(|_| f(next())).collect()
    }

    #[test]
    fn zigzag_round_trips_at_the_ends() {
        for d in [
            0,
            1,
            -1,
            2,
            -2,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            1 << 33,
        ] {
            assert_eq!(unzigzag(zigzag(d)), d);
        }
        assert_eq!([zigzag(0), zigzag(-1), zigzag(1), zigzag(-2)], [0, 1, 2, 3]);
    }

    #[test]
    fn streams_round_trip_at_every_width() {
        let keyframe: Vec<i32> = drawn(5000, |x| -300 + (x % 200) as i32);
        let outliers: Vec<i32> = drawn(5000, |x| match x % 100 {
            0 => 40_000,
            1 => -200,
            _ => (x >> 40) as i32 % 3 - 1,
        });
        let three_bytes: Vec<i32> = drawn(300, |x| (x % (1 << 22)) as i32 - (1 << 21));
        let extremes = vec![i32::MIN, 0, -1, 1, i32::MIN + 1];
        for (codes, planes) in [
            (keyframe, 1),
            (outliers, 3),
            (three_bytes, 3),
            (extremes, 4),
            (vec![7], 1),
        ] {
            for choice in [CodecChoice::Auto, CodecChoice::Rans] {
                let bytes = encode(&codes, choice).expect("codes");
                assert_eq!(bytes[..2], [FORM, planes]);
                assert_eq!(decode(&bytes[1..], codes.len()).unwrap(), codes);
            }
        }
        assert!(encode(&[], CodecChoice::Auto).is_none());
        // Distances past four bytes: left to the other forms.
        assert!(encode(&[i32::MIN, i32::MAX], CodecChoice::Auto).is_none());
    }

    #[test]
    fn wide_streams_code_smaller_centred_than_in_twos_complement() {
        // Two's complement planes in one section, the forms 2 and 4 wrote.
        let narrow = |codes: &[i32]| {
            let mut planes = vec![2u8];
            for b in 0..2 {
                planes.extend(codes.iter().map(|&c| (c >> (8 * b)) as u8));
            }
            Section::compress(&planes, CodecChoice::Auto).stored.len()
        };
        // Small codes of either sign and a few past 127: the high plane repeats every sign.
        let outliers = drawn(1 << 16, |x| match x % 64 {
            0 => 300,
            _ => ((x >> 20) % 41) as i32 - 20,
        });
        // Log magnitudes of a keyframe, all below zero: a high plane of 0xff and 0xfe.
        let keyframe = drawn(1 << 16, |x| -260 + ((x >> 20) % 41) as i32);
        for (codes, at_most) in [(outliers, 0.85), (keyframe, 0.85)] {
            let centred = encode(&codes, CodecChoice::Auto).unwrap().len();
            let narrow = narrow(&codes);
            assert!(
                (centred as f64) < at_most * narrow as f64,
                "{centred} against {narrow}"
            );
        }
    }

    #[test]
    fn damaged_streams_are_errors() {
        let codes: Vec<i32> = drawn(2000, |x| (x % 600) as i32 - 300);
        let bytes = encode(&codes, CodecChoice::Auto).unwrap();
        let body = &bytes[1..];
        assert_eq!(decode(body, codes.len()).unwrap(), codes);
        let err = |b: &[u8], n| decode(b, n).unwrap_err().to_string();
        assert_eq!(err(body, codes.len() - 1), "more codes than elements");
        for cut in [0, 1, 3, body.len() - 1] {
            assert!(decode(&body[..cut], codes.len()).is_err(), "cut at {cut}");
        }
        let mut bad_planes = body.to_vec();
        bad_planes[0] = 5;
        assert_eq!(
            err(&bad_planes, codes.len()),
            "unknown centred code stream's plane count 5"
        );
        let mut longer = body.to_vec();
        longer.push(0);
        assert_eq!(
            err(&longer, codes.len()),
            "1 trailing bytes after a centred code stream"
        );
        // A centre and distance past i32: refused, not wrapped.
        let mut far = vec![1u8];
        put_varint(&mut far, 1);
        put_varint(&mut far, zigzag(i64::from(i32::MAX)));
        far.extend_from_slice(&[Entropy::Stored as u8, 1, 2]);
        assert_eq!(
            err(&far, 1),
            "centred code 2147483648 is outside the 32-bit code range"
        );
        // A plane's coder unknown, its coder missing, its bytes past the end.
        let stream = |tail: &[u8]| [&[1u8, 1, 0][..], tail].concat();
        assert_eq!(
            err(&stream(&[200, 1, 0]), 1),
            "unknown coder of a centred code plane 200"
        );
        assert_eq!(err(&stream(&[]), 1), "truncated: needs 1 bytes at offset 3");
        assert_eq!(
            err(&stream(&[Entropy::Stored as u8, 5, 0]), 1),
            "truncated: needs 5 bytes at offset 5"
        );
        // A centre past the codes (the encoder's is always one).
        for centre in [i64::MAX, i64::MIN, 1 << 31] {
            let mut wide = vec![1u8];
            put_varint(&mut wide, 1);
            put_varint(&mut wide, zigzag(centre));
            wide.extend_from_slice(&[Entropy::Stored as u8, 1, 0xff]);
            assert_eq!(
                err(&wide, 1),
                format!("centred code {centre} is outside the 32-bit code range")
            );
        }
    }
}
