//! The first rANS stream version (entropy coder 3): two states, renormalized byte by byte.
//! Still read so repositories written before the four-state coder stay readable; no longer
//! written.
//!
//! Stream: the shared table (see `rans`), then `[state 0, 4 bytes][state 1, 4 bytes][bytes...]`;
//! symbol `i` is coded with state `i % 2`.

use super::error::{CodecError, CodecResult};
use super::rans::{read_table, Layout, Slots};

/// A stream the version-1 encoder wrote, framed as a `rans_stream` fuzz input (length / 16,
/// then the stream): a test fixture and a fuzz seed.
pub const V1_STREAM: &[u8] = include_bytes!("rans_v1_stream.bin");

/// Lower end of this version's normalized state interval.
const LOW: u32 = 1 << 23;

/// Decodes exactly `len` symbols; malformed input is an error, never a panic.
pub fn decode(stream: &[u8], len: usize) -> CodecResult<Vec<u8>> {
    let mut pos = 0;
    let freq = read_table(stream, &mut pos, len, Layout::Listed)?;
    let slots = Slots::new(&freq);
    let body = &stream[pos..];
    if body.len() < 8 {
        return Err(CodecError::RansTruncated { part: "state" });
    }
    let mut xs = [0u32; 2];
    for (k, x) in xs.iter_mut().enumerate() {
        *x = u32::from_le_bytes(body[4 * k..4 * k + 4].try_into().expect("4 bytes"));
    }
    let mut p = 8;
    let truncated = || CodecError::RansTruncated { part: "data" };
    // A decoded state is at least 2^11, so renormalizing reads at most two bytes.
    let mut next = |x: &mut u32| -> CodecResult<u8> {
        let (sym, mut y) = slots.step(*x);
        while y < LOW {
            let b = *body.get(p).ok_or_else(truncated)?;
            p += 1;
            y = (y << 8) | u32::from(b);
        }
        *x = y;
        Ok(sym)
    };
    let mut out = vec![0u8; len];
    for (i, o) in out.iter_mut().enumerate() {
        *o = next(&mut xs[i & 1])?;
    }
    if p != body.len() {
        return Err(CodecError::TrailingBytes {
            count: body.len() - p,
            after: "rANS data",
        });
    }
    if xs != [LOW, LOW] {
        return Err(CodecError::RansBadEnd);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::rans::{histogram, normalize, starts};
    use proptest::prelude::*;

    /// The version-1 encoder, kept here only to test the decoder (plain division).
    fn encode_v1(data: &[u8]) -> Vec<u8> {
        let freq = normalize(&histogram(data));
        let start = starts(&freq);
        let mut out = Vec::new();
        let mut xs = [LOW, LOW];
        for (i, &b) in data.iter().enumerate().rev() {
            let x = &mut xs[i & 1];
            let f = freq[b as usize];
            while *x >= ((LOW >> 12) << 8) * f {
                out.push(*x as u8);
                *x >>= 8;
            }
            *x = ((*x / f) << 12) + *x % f + start[b as usize];
        }
        out.extend(xs[1].to_le_bytes().iter().rev());
        out.extend(xs[0].to_le_bytes().iter().rev());
        out.reverse();
        let mut stream = Vec::new();
        crate::codec::rans::put_header(&mut stream, data.len(), &freq, Layout::Listed);
        stream.extend_from_slice(&out);
        stream
    }

    #[test]
    fn reads_a_stream_written_before_the_four_state_coder() {
        // Written by the version-1 encoder (commit 8f6e4ce, as a fuzz seed): the first byte is
        // the length / 16, the rest the stream of this data.
        let seed = super::V1_STREAM;
        let data: Vec<u8> = (0..2000u32).map(|i| (i % 7 / 5) as u8).collect();
        assert_eq!(usize::from(seed[0]) * 16, data.len());
        assert_eq!(decode(&seed[1..], data.len()).unwrap(), data);
        assert_eq!(
            encode_v1(&data),
            seed[1..],
            "the test encoder is the old one"
        );
    }

    proptest! {
        #[test]
        fn round_trip(data in prop::collection::vec(any::<u8>(), 1..3000)) {
            prop_assert_eq!(decode(&encode_v1(&data), data.len()).unwrap(), data);
        }

        #[test]
        fn hostile_streams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), len in 0usize..500) {
            let _ = decode(&bytes, len);
        }
    }
}
