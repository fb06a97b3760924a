//! The kernels of `kernels/*.cu`, compiled as plain C++ with the host's C++ compiler
//! (`kernels/emu/`), run against the Rust CPU codec on data full of edge cases. This checks the
//! port itself (candidate order, dither hash, rounding, NaN handling, zigzag, planes, histogram
//! bins, grid-stride loops, window offsets) on machines without a GPU; what only a device can
//! show (its `log()`, its NaN canonicalisation, 32-lane warps) is left to `tests/gpu.rs`.
//! Skips, saying so, when no C++ compiler runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::cpu::{self, HIST_BINS};
use super::table::EncoderParams;
use crate::codec::logquant::{self, ErrorBound, FloatKind, PowerTable, QuantizedChunk};
use crate::codec::{delta, planes};

const FILES: [(&str, &str); 6] = [
    ("logquant.cuh", include_str!("../../kernels/logquant.cuh")),
    ("logquant.cu", include_str!("../../kernels/logquant.cu")),
    ("planes.cu", include_str!("../../kernels/planes.cu")),
    ("stats.cu", include_str!("../../kernels/stats.cu")),
    (
        "emu/host_emu.h",
        include_str!("../../kernels/emu/host_emu.h"),
    ),
    (
        "emu/snap_emu.cpp",
        include_str!("../../kernels/emu/snap_emu.cpp"),
    ),
];

/// The emulator binary, built once per source version, or why it cannot be.
fn emulator() -> Result<&'static Path, String> {
    static EMU: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    EMU.get_or_init(build_emulator)
        .as_ref()
        .map(|p| p.as_path())
        .map_err(|e| e.clone())
}

fn build_emulator() -> Result<PathBuf, String> {
    let key = FILES
        .iter()
        .fold(blake3::Hasher::new(), |mut h, (n, t)| {
            h.update(n.as_bytes());
            h.update(t.as_bytes());
            h
        })
        .finalize()
        .to_hex();
    let dir = std::env::temp_dir().join(format!("snapstore-kernel-emu-{}", &key[..16]));
    let exe = dir.join("snap_emu");
    if exe.exists() {
        return Ok(exe);
    }
    std::fs::create_dir_all(dir.join("emu")).map_err(|e| e.to_string())?;
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    }
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let tmp = dir.join(format!("snap_emu.{}", std::process::id()));
    let out = Command::new(&cxx)
        .args(["-O1", "-std=c++17", "-ffp-contract=off", "-o"])
        .arg(&tmp)
        .arg(dir.join("emu/snap_emu.cpp"))
        .output()
        .map_err(|e| format!("no C++ compiler ({cxx}): {e}"))?;
    // The compiler ran: a failure is a real error in the kernel sources, not a reason to skip.
    assert!(
        out.status.success(),
        "the kernels do not compile as C++:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &exe).map_err(|e| e.to_string())?;
    Ok(exe)
}

macro_rules! emu_or_skip {
    () => {
        match emulator() {
            Ok(p) => p,
            Err(reason) => {
                crate::report_skip("an emulator parity test (gpu::emu_tests)", &reason);
                return;
            }
        }
    };
}

fn run(exe: &Path, args: &[String]) {
    let out = Command::new(exe).args(args).output().expect("run emulator");
    assert!(
        out.status.success(),
        "snap_emu {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

fn read(path: String) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn f64s_to_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Element-wise comparison that names the first differing elements instead of dumping bytes.
fn assert_elems_eq(got: &[u8], want: &[u8], size: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "length: {what}");
    let diff: Vec<String> = got
        .chunks_exact(size)
        .zip(want.chunks_exact(size))
        .enumerate()
        .filter(|(_, (g, w))| g != w)
        .take(5)
        .map(|(i, (g, w))| format!("#{i}: got {g:02x?} want {w:02x?}"))
        .collect();
    assert!(diff.is_empty(), "{what}: {}", diff.join("; "));
}

/// Like `assert_eq!` on slices, naming the first differing indices.
fn assert_seq_eq<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    assert_eq!(got.len(), want.len(), "length: {what}");
    let diff: Vec<String> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| g != w)
        .take(5)
        .map(|(i, (g, w))| format!("#{i}: got {g:?} want {w:?}"))
        .collect();
    assert!(diff.is_empty(), "{what}: {}", diff.join("; "));
}

fn kind_name(kind: FloatKind) -> &'static str {
    match kind {
        FloatKind::F16 => "f16",
        FloatKind::BF16 => "bf16",
        FloatKind::F32 => "f32",
        FloatKind::F64 => "f64",
    }
}

const KINDS: [FloatKind; 4] = [
    FloatKind::F16,
    FloatKind::BF16,
    FloatKind::F32,
    FloatKind::F64,
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Element bits of `x` in `kind` (test data only; truncating conversions are fine here).
fn bits_of(kind: FloatKind, x: f64) -> u64 {
    match kind {
        FloatKind::F16 => u64::from(half::f16::from_f64(x).to_bits()),
        FloatKind::BF16 => u64::from(half::bf16::from_f64(x).to_bits()),
        FloatKind::F32 => u64::from((x as f32).to_bits()),
        FloatKind::F64 => x.to_bits(),
    }
}

/// Special bit patterns of `kind`: zeros, infinities, NaNs with payloads, subnormals, extremes.
fn specials(kind: FloatKind) -> Vec<u64> {
    match kind {
        FloatKind::F16 => vec![
            0, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0xfe01, 0x7c01, 0x7d55, 0x0001, 0x8001, 0x03ff,
            0x0400, 0x7bff, 0xfbff,
        ],
        FloatKind::BF16 => vec![
            0, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7f81, 0x7faa, 0x0001, 0x8001, 0x007f,
            0x0080, 0x7f7f, 0xff7f,
        ],
        FloatKind::F32 => vec![
            0,
            0x8000_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0xffc0_0001,
            0x7f80_0001,
            0x7fa5_5555,
            0x0000_0001,
            0x8000_0001,
            0x007f_ffff,
            0x0080_0000,
            0x7f7f_ffff,
            0xff7f_ffff,
        ],
        FloatKind::F64 => vec![
            0,
            0x8000_0000_0000_0000,
            0x7ff0_0000_0000_0000,
            0xfff0_0000_0000_0000,
            0x7ff8_0000_0000_0000,
            0xfff8_0000_0000_0001,
            0x7ff0_0000_0000_0001,
            0x7ff5_5555_5555_5555,
            1,
            0x8000_0000_0000_0001,
            0x000f_ffff_ffff_ffff,
            0x0010_0000_0000_0000,
            0x7fef_ffff_ffff_ffff,
            0xffef_ffff_ffff_ffff,
            0x0350_0000_0000_0000, // below SMALL_F64 = 2^-960: the scaled relative check
            0x8340_0000_0000_0123,
        ],
    }
}

/// A target / reference pair of `n` elements: mostly small relative or absolute moves of
/// ordinary values, plus sign flips, equal bits, large jumps and every special on either side.
fn pair(kind: FloatKind, n: usize, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let s = kind.size();
    let sp = specials(kind);
    let (mut a, mut b) = (Vec::with_capacity(n * s), Vec::with_capacity(n * s));
    for _ in 0..n {
        let mag = 10f64.powf(rng.unit() * 6.0 - 3.0);
        let sign = if rng.below(2) == 0 { 1.0 } else { -1.0 };
        let bv = sign * mag;
        let (ab, bb) = match rng.below(16) {
            0 => (sp[rng.below(sp.len() as u64) as usize], bits_of(kind, bv)),
            1 => (bits_of(kind, bv), sp[rng.below(sp.len() as u64) as usize]),
            2 => {
                let x = sp[rng.below(sp.len() as u64) as usize];
                let y = sp[rng.below(sp.len() as u64) as usize];
                (x, y)
            }
            3 => (bits_of(kind, bv), bits_of(kind, bv)),
            4 => (bits_of(kind, -bv * 1.001), bits_of(kind, bv)),
            5 => (
                bits_of(kind, bv * (1.0 + rng.unit() * 3.0)),
                bits_of(kind, bv),
            ),
            6 => (
                bits_of(kind, bv + (rng.unit() - 0.5) * 1e-2),
                bits_of(kind, bv),
            ),
            7 => (rng.next() & mask(kind), rng.next() & mask(kind)),
            _ => {
                let step = (rng.unit() - 0.5) * 0.08;
                (bits_of(kind, bv * (1.0 + step)), bits_of(kind, bv))
            }
        };
        a.extend_from_slice(&ab.to_le_bytes()[..s]);
        b.extend_from_slice(&bb.to_le_bytes()[..s]);
    }
    (a, b)
}

fn mask(kind: FloatKind) -> u64 {
    match kind.size() {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Runs the emulated quantize kernel over `[lo, hi)` of the elements with base index `lo`.
fn emu_quantize(
    exe: &Path,
    dir: &Path,
    kind: FloatKind,
    table: &PowerTable,
    a: &[u8],
    b: Option<&[u8]>,
    range: std::ops::Range<usize>,
) -> (Vec<i32>, Vec<u8>, Vec<u8>, u64) {
    let p = EncoderParams::of(table).unwrap();
    let s = kind.size();
    let kernel = format!(
        "snap_quantize_{}_{}",
        kind_name(kind),
        if p.relative { "rel" } else { "abs" }
    );
    let bytes = range.start * s..range.end * s;
    let args = vec![
        "quantize".to_string(),
        kernel,
        p.max_code.to_string(),
        p.inv_step.to_bits().to_string(),
        p.eps_check.to_bits().to_string(),
        u8::from(p.dither).to_string(),
        range.start.to_string(),
        write(dir, "a", &a[bytes.clone()]),
        b.map_or("-".to_string(), |b| write(dir, "b", &b[bytes])),
        write(dir, "t", &f64s_to_bytes(table.values())),
        dir.join("q").to_string_lossy().into_owned(),
    ];
    run(exe, &args);
    let q = |ext: &str| read(dir.join(format!("q.{ext}")).to_string_lossy().into_owned());
    let codes = q("codes")
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let count = u64::from_le_bytes(q("count").try_into().unwrap());
    (codes, q("exc"), q("recon"), count)
}

fn desc(table: &PowerTable) -> String {
    let p = EncoderParams::of(table).unwrap();
    format!(
        "{:?} max_code {} dither {}",
        table.bound(),
        table.max_code(),
        p.dither
    )
}

fn tables() -> Vec<PowerTable> {
    let mut out = Vec::new();
    for bound in [
        ErrorBound::Relative(1e-2),
        ErrorBound::Relative(1e-3),
        ErrorBound::Relative(0.3),
        ErrorBound::Absolute(1e-3),
        ErrorBound::Absolute(0.5),
    ] {
        // Small max_code too, so out-of-range candidates are exercised.
        for max_code in [1000, 7] {
            out.push(PowerTable::new(bound, max_code).unwrap());
            out.push(PowerTable::dithered(bound, max_code).unwrap());
        }
    }
    out
}

#[test]
fn emulated_quantize_and_dequantize_equal_the_cpu_codec() {
    let exe = emu_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    let mut cases = 0;
    for kind in KINDS {
        for table in tables() {
            for keyframe in [false, true] {
                let n = 700;
                let (a, b) = pair(kind, n, &mut rng);
                let reference = if keyframe {
                    cpu::keyframe_reference(kind, &a)
                } else {
                    b.clone()
                };
                let (chunk, recon) = logquant::quantize(kind, &a, &reference, &table).unwrap();
                let b_arg = (!keyframe).then_some(b.as_slice());
                // In two windows, as the pipeline runs it: the base index keeps the dither hash.
                let split = 300;
                let (mut codes, mut exc, mut rec, mut count) =
                    emu_quantize(exe, dir.path(), kind, &table, &a, b_arg, 0..split);
                let (c2, e2, r2, n2) =
                    emu_quantize(exe, dir.path(), kind, &table, &a, b_arg, split..n);
                codes.extend(c2);
                exc.extend(e2);
                rec.extend(r2);
                count += n2;
                let what = format!("{kind:?} {} keyframe={keyframe}", desc(&table));
                assert_seq_eq(&codes, &chunk.codes, &format!("codes {what}"));
                assert_elems_eq(&rec, &recon, kind.size(), &format!("recon {what}"));
                let positions: Vec<u32> = exc
                    .iter()
                    .enumerate()
                    .filter(|(_, &e)| e != 0)
                    .map(|(i, _)| i as u32)
                    .collect();
                assert_eq!(positions, chunk.exception_positions, "exceptions {what}");
                assert_eq!(count as usize, positions.len());

                // Decode the CPU's chunk with the emulated kernel, then the exceptions.
                let out = emu_dequantize(exe, dir.path(), kind, &table, &reference, &chunk.codes);
                let mut out = out.0;
                let s = kind.size();
                for (&p, v) in chunk
                    .exception_positions
                    .iter()
                    .zip(chunk.exception_values.chunks_exact(s))
                {
                    out[p as usize * s..(p as usize + 1) * s].copy_from_slice(v);
                }
                assert_elems_eq(&out, &recon, s, &format!("decode {what}"));
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 4 * 20 * 2);
}

fn emu_dequantize(
    exe: &Path,
    dir: &Path,
    kind: FloatKind,
    table: &PowerTable,
    reference: &[u8],
    codes: &[i32],
) -> (Vec<u8>, u64) {
    let p = EncoderParams::of(table).unwrap();
    let kernel = format!(
        "snap_dequantize_{}_{}",
        kind_name(kind),
        if p.relative { "rel" } else { "abs" }
    );
    let code_bytes: Vec<u8> = codes.iter().flat_map(|c| c.to_le_bytes()).collect();
    let args = vec![
        "dequantize".to_string(),
        kernel,
        p.max_code.to_string(),
        write(dir, "b", reference),
        write(dir, "c", &code_bytes),
        write(dir, "t", &f64s_to_bytes(table.values())),
        dir.join("d").to_string_lossy().into_owned(),
    ];
    run(exe, &args);
    let out = read(dir.join("d.out").to_string_lossy().into_owned());
    let bad = read(dir.join("d.bad").to_string_lossy().into_owned());
    (out, u64::from_le_bytes(bad.try_into().unwrap()))
}

#[test]
fn emulated_dequantize_of_arbitrary_codes_equals_the_cpu() {
    // Any in-range code against any reference (NaN, Inf, zero, subnormal included), which the
    // encoder never produces: the x86 NaN rules of logquant.cuh's apply() are exercised.
    let exe = emu_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(11);
    for kind in KINDS {
        for table in tables() {
            let n = 500;
            let (_, reference) = pair(kind, n, &mut rng);
            let mc = table.max_code() as i64;
            let codes: Vec<i32> = (0..n)
                .map(|_| match rng.below(4) {
                    0 => 0,
                    1 => (rng.below(7) as i64 - 3) as i32,
                    2 => (if rng.below(2) == 0 { mc } else { -mc }) as i32,
                    _ => (rng.below(2 * mc as u64 + 1) as i64 - mc) as i32,
                })
                .collect();
            let chunk = QuantizedChunk {
                codes: codes.clone(),
                ..Default::default()
            };
            let want = logquant::dequantize(kind, &reference, &chunk, &table).unwrap();
            let (got, bad) = emu_dequantize(exe, dir.path(), kind, &table, &reference, &codes);
            assert_eq!(bad, u64::MAX);
            assert_elems_eq(
                &got,
                &want,
                kind.size(),
                &format!("{kind:?} {}", desc(&table)),
            );

            // An out-of-range code is reported (lowest index) and never indexes the table.
            let mut codes = codes;
            codes[123] = mc as i32 + 1;
            codes[321] = -(mc as i32) - 5;
            let (_, bad) = emu_dequantize(exe, dir.path(), kind, &table, &reference, &codes);
            assert_eq!(bad, 123);
        }
    }
}

#[test]
fn emulated_planes_equal_the_cpu_transform() {
    let exe = emu_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(5);
    for unit in [1usize, 2, 4, 8] {
        for float in [false, true] {
            for with_ref in [false, true] {
                let n = 333;
                let data: Vec<u8> = (0..n * unit).map(|_| rng.next() as u8).collect();
                // References close to the data (small deltas) and random, half each.
                let reference: Vec<u8> = data
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| {
                        if (i / unit) % 2 == 0 {
                            d ^ (rng.next() as u8 & 3)
                        } else {
                            rng.next() as u8
                        }
                    })
                    .collect();
                let t = if float {
                    delta::Transform::FloatSub
                } else {
                    delta::Transform::IntSub
                };
                let want = if with_ref {
                    delta::forward_planes(t, unit, &data, &reference)
                } else {
                    planes::split(&data, unit)
                };
                let r_arg = if with_ref {
                    write(dir.path(), "r", &reference)
                } else {
                    "-".into()
                };
                let args = |op: &str, input: String| {
                    vec![
                        "planes".to_string(),
                        format!("snap_{op}_planes_u{}", unit * 8),
                        u8::from(float).to_string(),
                        input,
                        r_arg.clone(),
                        dir.path().join("p").to_string_lossy().into_owned(),
                    ]
                };
                run(exe, &args("delta", write(dir.path(), "x", &data)));
                let got = read(dir.path().join("p").to_string_lossy().into_owned());
                assert_elems_eq(
                    &got,
                    &want,
                    1,
                    &format!("unit {unit} float {float} ref {with_ref}"),
                );
                run(exe, &args("merge", write(dir.path(), "y", &got)));
                let back = read(dir.path().join("p").to_string_lossy().into_owned());
                assert_elems_eq(
                    &back,
                    &data,
                    unit,
                    &format!("round trip unit {unit} float {float} ref {with_ref}"),
                );
            }
        }
    }
}

#[test]
fn emulated_histograms_equal_the_cpu_histograms() {
    let exe = emu_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(3);
    for kind in KINDS {
        for relative in [true, false] {
            for dither in [false, true] {
                for keyframe in [false, true] {
                    let n = 600;
                    let (a, b) = pair(kind, n, &mut rng);
                    let k = if keyframe { 64 } else { 5 };
                    let steps: Vec<f64> = (0..k)
                        .map(|j| {
                            let eps = 1e-4 * 1.3f64.powi(j);
                            if relative {
                                1.0 / (2.0 * eps.ln_1p())
                            } else {
                                1.0 / (2.0 * eps)
                            }
                        })
                        .collect();
                    let reference = (!keyframe).then_some(b.as_slice());
                    let want = cpu::code_histograms(kind, relative, dither, &a, reference, &steps);
                    let kernel = format!(
                        "snap_code_hist_{}_{}",
                        kind_name(kind),
                        if relative { "rel" } else { "abs" }
                    );
                    let args = vec![
                        "hist".to_string(),
                        kernel,
                        u8::from(dither).to_string(),
                        "0".into(),
                        write(dir.path(), "a", &a),
                        reference.map_or("-".into(), |r| write(dir.path(), "b", r)),
                        write(dir.path(), "s", &f64s_to_bytes(&steps)),
                        dir.path().join("h").to_string_lossy().into_owned(),
                    ];
                    run(exe, &args);
                    let raw = read(dir.path().join("h").to_string_lossy().into_owned());
                    let got: Vec<[u64; HIST_BINS]> = raw
                        .chunks_exact(8 * HIST_BINS)
                        .map(|row| {
                            std::array::from_fn(|j| {
                                u64::from_le_bytes(row[j * 8..j * 8 + 8].try_into().unwrap())
                            })
                        })
                        .collect();
                    assert_seq_eq(
                        &got,
                        &want,
                        &format!("{kind:?} rel {relative} dither {dither}"),
                    );
                    for h in &got {
                        assert_eq!(h.iter().sum::<u64>(), n as u64);
                    }
                }
            }
        }
    }
}
