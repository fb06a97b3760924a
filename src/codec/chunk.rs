//! The chunk object: one chunk of one tensor, coded. A versioned header, then sections, each
//! stored with its own entropy coder.
//!
//! ```text
//! [format u8 = 1][codec u8][unit u8][raw_len varint][transform u8][sections u8]
//! section: [entropy u8][raw_len varint][stored_len varint][stored bytes]
//! ```
//! Lengths are LEB128 varints so a small tensor's chunk costs a few bytes of framing, not a
//! hundred.
//! ```text
//! ```

use super::delta::{self, Transform};
use super::entropy::{self, CodecChoice, Entropy, Repeats};
use super::error::{CodecError, CodecResult};
use super::planes;
use super::varint::{get_varint, put_varint};
use crate::profile::{self, Stage};
use std::borrow::Cow;

const CHUNK_FORMAT: u8 = 1;
/// Largest decoded chunk accepted; declared lengths above it are refused before allocating.
pub const MAX_CHUNK_BYTES: usize = 256 << 20;
/// Transform flag of a lossy (log-delta) chunk: coded without a reference.
pub(crate) const KEYFRAME: u8 = 1;

/// How a chunk is coded. The discriminants are on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkCodec {
    /// Byte planes, optionally of an exact delta against the reference.
    Planes = 1,
    /// Error-bounded log-quantized codes against the reference (see `codec::lossy`).
    LogDelta = 2,
    /// A group of frames, coded by `frames::encode_group` (one stored section).
    FrameGroup = 3,
}

impl TryFrom<u8> for ChunkCodec {
    type Error = CodecError;
    fn try_from(v: u8) -> CodecResult<Self> {
        match v {
            1 => Ok(ChunkCodec::Planes),
            2 => Ok(ChunkCodec::LogDelta),
            3 => Ok(ChunkCodec::FrameGroup),
            other => Err(CodecError::UnknownTag {
                what: "chunk codec",
                value: other,
            }),
        }
    }
}

/// A section before it is written: its entropy coder and stored bytes.
pub struct Section {
    /// Entropy coder.
    pub entropy: Entropy,
    /// Decoded length.
    pub raw_len: usize,
    /// Stored bytes.
    pub stored: Vec<u8>,
}

impl Section {
    /// Compresses `data` as one section.
    pub fn compress(data: &[u8], choice: CodecChoice) -> Self {
        Section::of(data, entropy::compress(data, choice))
    }

    /// Compresses `data`, which holds at most `repeats` beyond its byte histogram, as one
    /// section (see [`entropy::compress_with`]).
    pub fn compress_with(data: &[u8], choice: CodecChoice, repeats: Repeats) -> Self {
        Section::of(data, entropy::compress_with(data, choice, repeats))
    }

    fn of(data: &[u8], (entropy, stored): (Entropy, Vec<u8>)) -> Self {
        Section {
            entropy,
            raw_len: data.len(),
            stored,
        }
    }
}

/// Serializes a chunk object.
pub fn write_chunk(
    codec: ChunkCodec,
    unit: usize,
    raw_len: usize,
    transform: u8,
    sections: &[Section],
) -> Vec<u8> {
    let body: usize = sections.iter().map(|s| 17 + s.stored.len()).sum();
    let mut out = Vec::with_capacity(12 + body);
    out.push(CHUNK_FORMAT);
    out.push(codec as u8);
    out.push(unit as u8);
    put_varint(&mut out, raw_len as u64);
    out.push(transform);
    out.push(sections.len() as u8);
    for s in sections {
        out.push(s.entropy as u8);
        put_varint(&mut out, s.raw_len as u64);
        put_varint(&mut out, s.stored.len() as u64);
        out.extend_from_slice(&s.stored);
    }
    out
}

/// A parsed chunk header with its decoded sections, which borrow the object's bytes where they
/// were stored as they are.
pub struct ParsedChunk<'a> {
    /// How the chunk is coded.
    pub codec: ChunkCodec,
    /// Element width the planes were split at.
    pub unit: usize,
    /// Decoded byte length of the chunk.
    pub raw_len: usize,
    /// Codec-specific transform byte (for planes: the [`Transform`]).
    pub transform: u8,
    /// Sections, decompressed.
    pub sections: Vec<Cow<'a, [u8]>>,
}

impl ParsedChunk<'_> {
    /// The chunk with every section its own, for keeping past the object's bytes.
    pub fn into_owned(self) -> ParsedChunk<'static> {
        ParsedChunk {
            sections: self
                .sections
                .into_iter()
                .map(|s| Cow::Owned(s.into_owned()))
                .collect(),
            ..self
        }
    }

    /// The sections, each its own (copying the stored ones).
    pub fn owned_sections(self) -> Vec<Vec<u8>> {
        self.sections.into_iter().map(Cow::into_owned).collect()
    }
}

/// Parses and decompresses a chunk object, checking every declared length against the bytes
/// present and [`MAX_CHUNK_BYTES`] before allocating.
pub fn read_chunk(obj: &[u8]) -> CodecResult<ParsedChunk<'_>> {
    let mut r = Reader { buf: obj, pos: 0 };
    let format = r.u8()?;
    if format != CHUNK_FORMAT {
        return Err(CodecError::UnsupportedFormat {
            found: format,
            expected: CHUNK_FORMAT,
        });
    }
    let codec = ChunkCodec::try_from(r.u8()?)?;
    let unit = r.u8()? as usize;
    if unit == 0 {
        return Err(CodecError::ZeroElementWidth);
    }
    let raw_len = r.len()?;
    let transform = r.u8()?;
    let count = r.u8()? as usize;
    let mut sections = Vec::with_capacity(count);
    for _ in 0..count {
        let entropy = Entropy::try_from(r.u8()?).map_err(|value| CodecError::UnknownTag {
            what: "entropy coder",
            value,
        })?;
        let sec_raw = r.len()?;
        let stored_len = r.len()?;
        let stored = r.take(stored_len)?;
        let data = entropy::decompress(entropy, stored, sec_raw)?;
        sections.push(data);
    }
    if r.pos != obj.len() {
        return Err(CodecError::TrailingBytes {
            count: obj.len() - r.pos,
            after: "the last section",
        });
    }
    Ok(ParsedChunk {
        codec,
        unit,
        raw_len,
        transform,
        sections,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> CodecResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(CodecError::Truncated {
            needs: n,
            offset: self.pos,
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> CodecResult<u8> {
        Ok(self.take(1)?[0])
    }
    fn len(&mut self) -> CodecResult<usize> {
        let v = get_varint(self.buf, &mut self.pos)?;
        if v > MAX_CHUNK_BYTES as u64 {
            return Err(CodecError::LengthOverLimit {
                declared: v,
                limit: MAX_CHUNK_BYTES,
            });
        }
        Ok(v as usize)
    }
}

/// Codes a chunk exactly: byte planes of the chunk, or of its delta against `reference` when
/// one is given (kept only when it stores smaller). `float` selects the float-aware delta.
pub fn encode_lossless(
    raw: &[u8],
    unit: usize,
    float: bool,
    reference: Option<&[u8]>,
    choice: CodecChoice,
) -> Vec<u8> {
    let unit = if unit > 0 && raw.len().is_multiple_of(unit) {
        unit
    } else {
        1
    };
    let split = |raw: &[u8]| {
        let _t = profile::time_bytes(Stage::Delta, raw.len());
        planes::split(raw, unit)
    };
    let plain = || sections_of_planes(&split(raw), unit, choice, Repeats::Any);
    let (transform, sections) = match reference.filter(|r| r.len() == raw.len()) {
        None => (Transform::None, plain()),
        Some(r) => {
            let t = if float {
                Transform::FloatSub
            } else {
                Transform::IntSub
            };
            let delta = {
                let _t = profile::time_bytes(Stage::Delta, raw.len());
                delta::forward_planes(t, unit, raw, r)
            };
            // A float's difference from its parent has no repeats but runs; an integer's may
            // (a counter, a shifted arange).
            let repeats = if float { Repeats::Runs } else { Repeats::Any };
            let d = sections_of_planes(&delta, unit, choice, repeats);
            // A delta that barely compresses means the tensor changed wholesale: check the plain
            // coding too and keep the smaller.
            if stored_len(&d) * 50 > raw.len() * 49 {
                let p = plain();
                if stored_len(&p) < stored_len(&d) {
                    (Transform::None, p)
                } else {
                    (t, d)
                }
            } else {
                (t, d)
            }
        }
    };
    write_chunk(
        ChunkCodec::Planes,
        unit,
        raw.len(),
        transform as u8,
        &sections,
    )
}

/// One section per byte plane of `planes` (the output of a plane split).
fn sections_of_planes(
    planes: &[u8],
    unit: usize,
    choice: CodecChoice,
    repeats: Repeats,
) -> Vec<Section> {
    let n = planes.len() / unit;
    (0..unit)
        .map(|b| Section::compress_with(&planes[b * n..(b + 1) * n], choice, repeats))
        .collect()
}

fn stored_len(sections: &[Section]) -> usize {
    sections.iter().map(|s| s.stored.len()).sum()
}

/// True when decoding this chunk needs the reference chunk.
pub fn needs_reference(chunk: &ParsedChunk<'_>) -> bool {
    match chunk.codec {
        ChunkCodec::Planes => chunk.transform != Transform::None as u8,
        ChunkCodec::LogDelta => chunk.transform & KEYFRAME == 0,
        ChunkCodec::FrameGroup => false,
    }
}

/// Decodes a [`ChunkCodec::Planes`] chunk; `reference` is needed when it holds a delta.
pub fn decode_lossless(chunk: ParsedChunk<'_>, reference: Option<&[u8]>) -> CodecResult<Vec<u8>> {
    let ParsedChunk {
        unit,
        raw_len,
        transform,
        sections,
        ..
    } = chunk;
    let transform = Transform::try_from(transform)?;
    if raw_len % unit != 0 || sections.len() != unit {
        return Err(CodecError::PlaneCount {
            sections: sections.len(),
            unit,
        });
    }
    let n = raw_len / unit;
    if let Some(b) = sections.iter().position(|s| s.len() != n) {
        return Err(CodecError::PlaneLength {
            plane: b,
            len: sections[b].len(),
            expected: n,
        });
    }
    let slices: Vec<&[u8]> = sections.iter().map(|s| &s[..]).collect();
    if transform == Transform::None {
        let _t = profile::time_bytes(Stage::Merge, raw_len);
        return Ok(planes::merge_slices(&slices, n));
    }
    let reference = reference.ok_or(CodecError::MissingReference)?;
    if reference.len() != raw_len {
        return Err(CodecError::ReferenceLength {
            len: reference.len(),
            expected: raw_len,
        });
    }
    let _t = profile::time_bytes(Stage::Merge, raw_len);
    Ok(delta::inverse_planes(transform, &slices, reference))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(obj: &[u8], reference: Option<&[u8]>) -> CodecResult<Vec<u8>> {
        decode_lossless(read_chunk(obj)?, reference)
    }

    #[test]
    fn delta_helps_near_equal_floats() {
        let a: Vec<u8> = (0..4096)
            .flat_map(|i| (1.0f32 + i as f32 * 1e-3).to_le_bytes())
            .collect();
        let b: Vec<u8> = (0..4096)
            .flat_map(|i| (1.0f32 + i as f32 * 1e-3 + 1e-6).to_le_bytes())
            .collect();
        let alone = encode_lossless(&b, 4, true, None, CodecChoice::Auto);
        let delta = encode_lossless(&b, 4, true, Some(&a), CodecChoice::Auto);
        assert!(
            delta.len() < alone.len(),
            "{} vs {}",
            delta.len(),
            alone.len()
        );
        assert_eq!(decode(&delta, Some(&a)).unwrap(), b);
        assert_eq!(decode(&alone, None).unwrap(), b);
        assert!(decode(&delta, None).is_err());
    }

    #[test]
    fn hostile_headers_are_errors() {
        let good = encode_lossless(&[1, 2, 3, 4, 5, 6, 7, 8], 4, true, None, CodecChoice::Zstd);
        for cut in 0..good.len() {
            assert!(decode(&good[..cut], None).is_err(), "cut at {cut}");
        }
        let mut bomb = good[..3].to_vec();
        bomb.extend_from_slice(&[0xff; 9]);
        bomb.push(0x01);
        bomb.extend_from_slice(&good[4..]);
        assert!(decode(&bomb, None).is_err());
        let mut bad_codec = good.clone();
        bad_codec[1] = 99;
        assert!(decode(&bad_codec, None).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(unit in prop::sample::select(vec![1usize, 2, 4, 8]), n in 0usize..200, seed in any::<u64>(), with_ref in any::<bool>(), float in any::<bool>()) {
            let gen = |s: u64| -> Vec<u8> { (0..n * unit).map(|i| (s.wrapping_mul(i as u64 * 2 + 1) >> 17) as u8).collect() };
            let raw = gen(seed);
            let reference = gen(seed ^ 1);
            let r = with_ref.then_some(&reference[..]);
            let obj = encode_lossless(&raw, unit, float, r, CodecChoice::Auto);
            prop_assert_eq!(decode(&obj, r).unwrap(), raw);
        }
    }
}
