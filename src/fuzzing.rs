//! Entry points for the fuzz targets in `fuzz/`: each feeds arbitrary bytes to one parser or
//! decoder. Not part of the supported API; every function must return, never panic.

use crate::codec::{chunk, lossy, rans};
use crate::dtype::Dtype;
use crate::frames::{decode_group, parse_npy, FrameDims, FrameDtype};
use crate::safetensors_io;
use crate::store::manifest::Manifest;
use crate::store::object_id::ObjectId;

/// The safetensors header: the 8-byte length, then the JSON, checked against the data length.
pub fn safetensors_header(data: &[u8]) {
    if let Ok(n) = safetensors_io::header_len(data, data.len() as u64) {
        let raw = &data[8..8 + n as usize];
        let _ = safetensors_io::parse_header(raw, data.len() as u64 - 8 - n);
    }
}

/// A chunk object, decoded exactly or as a lossy chunk of each float dtype, against a
/// reference made of the same bytes.
pub fn chunk_object(data: &[u8]) {
    let reference: Vec<u8> = data.iter().rev().copied().collect();
    if let Ok(parsed) = chunk::read_chunk(data) {
        let len = parsed.raw_len;
        let r = reference.get(..len.min(reference.len()));
        match parsed.codec {
            chunk::ChunkCodec::Planes => {
                let _ = chunk::decode_lossless(parsed, r);
            }
            chunk::ChunkCodec::LogDelta => {
                for d in [Dtype::F16, Dtype::BF16, Dtype::F32, Dtype::F64] {
                    if let Ok(p) = chunk::read_chunk(data) {
                        let _ = lossy::decode(&lossy::CpuQuant, d, p, r);
                    }
                }
            }
            chunk::ChunkCodec::FrameGroup => {}
        }
    }
}

/// The rANS stream decoder, for lengths taken from the first byte.
pub fn rans_stream(data: &[u8]) {
    if let Some((&len, rest)) = data.split_first() {
        let _ = rans::decode(rest, len as usize * 16);
    }
}

/// A stored manifest (zstd-compressed JSON).
pub fn manifest(data: &[u8]) {
    let _ = Manifest::from_bytes(data, &ObjectId([0; 32]));
}

/// `.npy` arrays and frame groups of a few small shapes.
pub fn frames(data: &[u8]) {
    let _ = parse_npy(data);
    for (dtype, dims) in [
        (FrameDtype::U8, FrameDims { h: 4, w: 5, c: 3 }),
        (FrameDtype::U16, FrameDims { h: 3, w: 3, c: 1 }),
        (FrameDtype::F32, FrameDims { h: 2, w: 7, c: 2 }),
    ] {
        let _ = decode_group(data, dims, dtype);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// The same entry points, on random bytes, in every CI run (the fuzzers go deeper).
        #[test]
        fn decoders_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
            super::safetensors_header(&data);
            super::chunk_object(&data);
            super::rans_stream(&data);
            super::manifest(&data);
            super::frames(&data);
        }
    }
}
