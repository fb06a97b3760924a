//! Entry points for the fuzz targets in `fuzz/`: each feeds arbitrary bytes to one parser or
//! decoder. Not part of the supported API; every function must return, never panic.

use crate::codec::entropy::{self, Entropy};
use crate::codec::{chunk, lossy, rans, rans_v1};
use crate::dtype::Dtype;
use crate::frames::{decode_group, encode_group, parse_npy, FrameBound, FrameDims, FrameDtype};
use crate::safetensors_io;
use crate::store::manifest::Manifest;
use crate::store::object_id::ObjectId;
use crate::store::pack::PackReader;

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

/// Every rANS stream decoder (both widths, the three table layouts, version 1) and the sparse
/// section decoder, for lengths taken from the first byte.
pub fn rans_stream(data: &[u8]) {
    if let Some((&len, rest)) = data.split_first() {
        for layout in [
            rans::Layout::Listed,
            rans::Layout::Compact,
            rans::Layout::Roots,
        ] {
            let _ = rans::decode::<{ rans::TINY }>(rest, len as usize * 16, layout);
            let _ = rans::decode::<{ rans::NARROW }>(rest, len as usize * 16, layout);
            let _ = rans::decode::<{ rans::WIDE }>(rest, len as usize * 16, layout);
        }
        let _ = rans_v1::decode(rest, len as usize * 16);
        let _ = entropy::decompress(Entropy::Sparse, rest, len as usize * 16);
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

/// A pack file: the trailer, then every object it lists (each read checks its record header
/// and hash). The bytes go through a file because packs are read with positioned reads.
pub fn pack(data: &[u8]) {
    use std::sync::OnceLock;
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("snapstore-fuzz-pack-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    });
    let name = "0".repeat(64);
    if std::fs::write(dir.join(format!("{name}.pack")), data).is_err() {
        return;
    }
    if let Ok(reader) = PackReader::open(dir, &name) {
        if let Ok(entries) = reader.entries() {
            for e in entries.iter().take(64) {
                let _ = reader.read(e);
            }
        }
    }
}

/// Valid inputs for every target, made the way a real repository makes them (a commit of small
/// tensors exactly, as a delta and under rel and abs bounds): the seeds of the fuzz corpora,
/// written to `fuzz/seeds/` by `cargo test --release -- --ignored write_fuzz_seeds`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::repo::{CommitOptions, Repo, TensorInput};
    use crate::store::manifest::Bound;
    use crate::store::pack::{list_packs, ObjectKind};
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let dir = std::env::temp_dir().join(format!(
        "snapstore-seeds-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let repo = Repo::init(&dir).expect("temporary repository");
    let mut x: Vec<f32> = (0..700)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0)
        .collect();
    for (k, bound) in [
        Bound::Lossless,
        Bound::Lossless,
        Bound::Rel(0.01),
        Bound::Abs(1e-3),
    ]
    .into_iter()
    .enumerate()
    {
        for (i, v) in x.iter_mut().enumerate() {
            *v *= 1.0 + ((i + k) % 7) as f32 * 1e-3;
        }
        let f32s: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let bf16s: Vec<u8> = x
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        let ints: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(k as u8 + 3)).collect();
        let inputs = [
            ("w", Dtype::F32, &f32s),
            ("h", Dtype::BF16, &bf16s),
            ("i", Dtype::U8, &ints),
        ]
        .map(|(name, dtype, data)| TensorInput {
            name: name.into(),
            dtype,
            shape: vec![(data.len() / dtype.unit_bytes().max(1)) as u64],
            data,
        });
        let opts = CommitOptions {
            bound: Some(bound),
            ..CommitOptions::default()
        };
        repo.commit_tensors(&inputs, None, &opts)
            .expect("seed commit");
        if k == 0 {
            let mut file = format!(
                "{{\"__metadata__\":{{\"epoch\":\"0\"}},\"w\":{{\"dtype\":\"F32\",\"shape\":[700],\"data_offsets\":[0,{}]}}}}",
                f32s.len()
            )
            .into_bytes();
            let mut st = (file.len() as u64).to_le_bytes().to_vec();
            st.append(&mut file);
            st.extend_from_slice(&f32s);
            out.push(("safetensors_header", st));
        }
    }
    let packs_dir = dir.join("packs");
    for name in list_packs(&packs_dir).unwrap_or_default() {
        if let Ok(bytes) = std::fs::read(packs_dir.join(format!("{name}.pack"))) {
            out.push(("pack", bytes));
        }
        let Ok(reader) = PackReader::open(&packs_dir, &name) else {
            continue;
        };
        for e in reader.entries().unwrap_or_default() {
            if let Ok(obj) = reader.read(&e) {
                let target = match e.kind {
                    ObjectKind::Manifest => "manifest",
                    _ => "chunk_object",
                };
                out.push((target, obj.into_vec()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let skewed: Vec<u8> = (0..2000u32).map(|i| (i % 7 / 5) as u8).collect();
    let counts = rans::histogram(&skewed);
    let narrow = rans::encode_counted::<{ rans::NARROW }>(&skewed, &counts, usize::MAX);
    let wide = rans::encode_counted::<{ rans::WIDE }>(&skewed, &counts, usize::MAX);
    let tiny = rans::encode_counted::<{ rans::TINY }>(&skewed, &counts, usize::MAX);
    for r in [narrow, wide, tiny].into_iter().flatten() {
        let mut seed = vec![(skewed.len() / 16) as u8];
        seed.extend_from_slice(&r);
        out.push(("rans_stream", seed));
    }
    out.push(("rans_stream", rans_v1::V1_STREAM.to_vec()));
    // A sparse section: one byte in 20 other than zero.
    let sparse: Vec<u8> = (0..4000u32)
        .map(|i| if i % 20 == 3 { (i % 11) as u8 + 1 } else { 0 })
        .collect();
    let others = sparse.iter().filter(|&&b| b != 0).count();
    let coded = crate::codec::sparse::encode_around(&sparse, 0, others, usize::MAX, |o| {
        entropy::compress(o, crate::CodecChoice::Auto)
    })
    .expect("no limit");
    let mut seed = vec![(sparse.len() / 16) as u8];
    seed.extend_from_slice(&coded);
    out.push(("rans_stream", seed));
    let frames = [
        (FrameDtype::U8, FrameDims { h: 4, w: 5, c: 3 }),
        (FrameDtype::U16, FrameDims { h: 3, w: 3, c: 1 }),
        (FrameDtype::F32, FrameDims { h: 2, w: 7, c: 2 }),
    ];
    for (dtype, dims) in frames {
        let n = 3 * dims.h * dims.w * dims.c * dtype.size();
        let raw: Vec<u8> = (0..n).map(|i| (i * 13 % 29) as u8).collect();
        let raw = if dtype == FrameDtype::F32 {
            (0..n / 4)
                .flat_map(|i| (i as f32 * 0.25).to_le_bytes())
                .collect()
        } else {
            raw
        };
        for bound in [FrameBound::Lossless, FrameBound::Abs(2.0)] {
            if let Ok(g) = encode_group(dims, dtype, &raw, bound, crate::CodecChoice::Auto) {
                out.push(("frames", g));
            }
        }
    }
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let mut header = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 4), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend((0..24u8).map(|i| i * 9));
    out.push(("frames", npy));
    out
}

#[cfg(test)]
mod tests {
    use crate::frames::{FrameDims, FrameDtype};
    use proptest::prelude::*;

    /// Every seed is accepted by the decoder it seeds (a seed the format no longer reads
    /// would only test the first error path).
    #[test]
    fn seeds_are_valid_inputs() {
        let seeds = super::seeds();
        for target in [
            "safetensors_header",
            "chunk_object",
            "rans_stream",
            "manifest",
            "frames",
            "pack",
        ] {
            assert!(
                seeds.iter().any(|(t, _)| *t == target),
                "no seed for {target}"
            );
        }
        let mut sparse_seeds = 0;
        for (target, bytes) in &seeds {
            match *target {
                "manifest" => {
                    super::Manifest::from_bytes(bytes, &super::ObjectId::of(bytes))
                        .expect("manifest seed");
                }
                "chunk_object" => {
                    super::chunk::read_chunk(bytes).expect("chunk seed");
                }
                "pack" => {
                    let dir = tempfile::tempdir().unwrap();
                    let name = "1".repeat(64);
                    std::fs::write(dir.path().join(format!("{name}.pack")), bytes).unwrap();
                    let r = super::PackReader::open(dir.path(), &name).unwrap();
                    for e in r.entries().expect("pack seed") {
                        r.read(&e).expect("pack seed object");
                    }
                }
                "safetensors_header" => {
                    let n = crate::safetensors_io::header_len(bytes, bytes.len() as u64)
                        .expect("safetensors seed: header length");
                    let raw = &bytes[8..8 + n as usize];
                    crate::safetensors_io::parse_header(raw, bytes.len() as u64 - 8 - n)
                        .expect("safetensors seed: header");
                }
                "rans_stream" => {
                    use super::rans::{decode, Layout::Roots};
                    let (&len, rest) = bytes.split_first().expect("rans seed is not empty");
                    let len = len as usize * 16;
                    let sparse = super::entropy::decompress(super::Entropy::Sparse, rest, len);
                    sparse_seeds += usize::from(sparse.is_ok());
                    assert!(
                        decode::<{ super::rans::TINY }>(rest, len, Roots).is_ok()
                            || decode::<{ super::rans::NARROW }>(rest, len, Roots).is_ok()
                            || decode::<{ super::rans::WIDE }>(rest, len, Roots).is_ok()
                            || super::rans_v1::decode(rest, len).is_ok()
                            || sparse.is_ok(),
                        "rans seed decodes with no stream version"
                    );
                }
                "frames" => {
                    let group = [
                        (FrameDtype::U8, FrameDims { h: 4, w: 5, c: 3 }),
                        (FrameDtype::U16, FrameDims { h: 3, w: 3, c: 1 }),
                        (FrameDtype::F32, FrameDims { h: 2, w: 7, c: 2 }),
                    ]
                    .into_iter()
                    .any(|(dtype, dims)| super::decode_group(bytes, dims, dtype).is_ok());
                    assert!(
                        group || super::parse_npy(bytes).is_ok(),
                        "frames seed is neither a frame group nor a .npy array"
                    );
                }
                other => panic!("seed for unknown target {other}"),
            }
        }
        assert!(sparse_seeds > 0, "no sparse section among the rANS seeds");
    }

    /// Writes the seeds into `fuzz/seeds/TARGET/` (run when a format changes).
    #[test]
    #[ignore = "writes fuzz/seeds; run with --ignored write_fuzz_seeds"]
    fn write_fuzz_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        let _ = std::fs::remove_dir_all(&root);
        for (k, (target, bytes)) in super::seeds().into_iter().enumerate() {
            let d = root.join(target);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("seed-{k:03}")), bytes).unwrap();
        }
    }

    /// A 171-byte lossy chunk (found by `chunk_object`) whose code stream is a run of ~130
    /// million codes and one wide code: the runs were bounded by the largest chunk, not by
    /// this chunk's elements, so decoding allocated 1 GiB before failing. Now the run is past
    /// the chunk at once.
    #[test]
    fn a_short_lossy_chunk_cannot_declare_a_billion_codes() {
        let bytes: &[u8] = &[
            0x01, 0x02, 0x04, 0xf0, 0x15, 0x31, 0x08, 0x00, 0x10, 0x10, 0x01, 0x04, 0x00, 0x41,
            0xd1, 0xc6, 0x74, 0x00, 0x3f, 0x16, 0xfb, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x7c, 0x7c, 0x00, 0x00, 0x00, 0x2d, 0x00, 0x00, 0x00, 0x00, 0x7c,
            0x7c, 0x7c, 0x81, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x5c,
            0x7c, 0x7c, 0x7c, 0x29, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c,
            0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7f, 0x7c,
            0x7c, 0x7c, 0x7c, 0x7c, 0x01, 0x00, 0x7b, 0x7d, 0x28, 0xe2, 0x97, 0x00, 0x7c, 0x7c,
            0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c,
            0x7c, 0x7c, 0x7c, 0x7e, 0x83, 0x83, 0x83, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c,
            0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c,
            0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c,
            0x7c, 0x00, 0x00,
        ];
        let parsed = super::chunk::read_chunk(bytes).expect("a lossy chunk");
        assert_eq!(parsed.codec, super::chunk::ChunkCodec::LogDelta);
        let reference = vec![0u8; parsed.raw_len];
        let e = super::lossy::decode(
            &super::lossy::CpuQuant,
            super::Dtype::F32,
            parsed,
            Some(&reference),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("zero run goes past the chunk"), "{e}");
    }

    /// Every one-byte change and every truncation of the chunk seeds (lattice chunks with code
    /// streams, fresh elements and exceptions among them) decodes or fails cleanly.
    #[test]
    fn damaged_chunk_seeds_never_panic() {
        let seeds = super::seeds();
        let chunks: Vec<&Vec<u8>> = seeds
            .iter()
            .filter(|(t, _)| *t == "chunk_object")
            .map(|(_, b)| b)
            .collect();
        assert!(!chunks.is_empty());
        for bytes in chunks {
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x5a;
                super::chunk_object(&b);
                super::chunk_object(&bytes[..i]);
            }
        }
    }

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
            super::pack(&data);
        }
    }
}
