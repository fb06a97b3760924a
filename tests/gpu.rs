//! The CUDA backend (issue #4) against the CPU path. Without a GPU (CI) the parity tests report
//! `skipping <test>: <reason>` (listed by `.ci/run`) and pass; the backend selection, the CPU side of the interface and the
//! NVRTC compilation (when an NVRTC library is loadable) are checked everywhere.
//!
//! On a GPU machine: `cargo test --release --test tests gpu:: -- --nocapture` must show no
//! "skipping" line for the parity tests.

use snapstore::backend::{
    compile_kernels, doctor_report, kernel_names, Backend, BackendChoice, BackendError,
    QuantParams, Quantized, HIST_BINS, HIST_CLIP, HIST_EXCEPTION,
};
use snapstore::{Bound, Dtype, Rounding};

use crate::util::Rng;

/// The CUDA backend with a small window (so a few thousand elements cross several windows and
/// both streams), or `None` after printing why not.
fn cuda_or_skip(test: &str, window: usize) -> Option<Backend> {
    match Backend::cuda_with_window(window) {
        Ok(b) => {
            println!("{}", b.describe());
            Some(b)
        }
        Err(e) => {
            crate::util::skip(test, &e.to_string());
            None
        }
    }
}

const FLOATS: [Dtype; 4] = [Dtype::F16, Dtype::BF16, Dtype::F32, Dtype::F64];

fn size(d: Dtype) -> usize {
    match d {
        Dtype::F16 | Dtype::BF16 => 2,
        Dtype::F32 => 4,
        _ => 8,
    }
}

fn bits_of(d: Dtype, x: f64) -> u64 {
    match d {
        Dtype::F16 => u64::from(half::f16::from_f64(x).to_bits()),
        Dtype::BF16 => u64::from(half::bf16::from_f64(x).to_bits()),
        Dtype::F32 => u64::from((x as f32).to_bits()),
        _ => x.to_bits(),
    }
}

/// Zeros, infinities, NaNs with payloads (quiet and signalling), subnormals, extremes.
fn specials(d: Dtype) -> Vec<u64> {
    match d {
        Dtype::F16 => vec![
            0, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0xfe01, 0x7c01, 0x0001, 0x8001, 0x03ff, 0x7bff,
        ],
        Dtype::BF16 => vec![
            0, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7f81, 0x0001, 0x8001, 0x007f, 0x7f7f,
        ],
        Dtype::F32 => vec![
            0,
            0x8000_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0xffc0_0001,
            0x7f80_0001,
            0x0000_0001,
            0x8000_0001,
            0x007f_ffff,
            0x7f7f_ffff,
        ],
        _ => vec![
            0,
            0x8000_0000_0000_0000,
            0x7ff0_0000_0000_0000,
            0xfff0_0000_0000_0000,
            0x7ff8_0000_0000_0000,
            0xfff8_0000_0000_0001,
            0x7ff0_0000_0000_0001,
            1,
            0x8000_0000_0000_0001,
            0x000f_ffff_ffff_ffff,
            0x7fef_ffff_ffff_ffff,
            0x0350_0000_0000_0000,
        ],
    }
}

/// Target and reference: small moves of ordinary values, sign flips, equal bits, jumps, random
/// bits and specials on either side.
fn pair(d: Dtype, n: usize, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let s = size(d);
    let sp = specials(d);
    let pick = |rng: &mut Rng| sp[rng.below(sp.len() as u64) as usize];
    let (mut a, mut b) = (Vec::with_capacity(n * s), Vec::with_capacity(n * s));
    for _ in 0..n {
        let mag = 10f64.powf(f64::from(rng.unit()) * 3.0);
        let bv = if rng.below(2) == 0 { mag } else { -mag };
        let step = f64::from(rng.unit()) * 0.04;
        let (ab, bb) = match rng.below(16) {
            0 => (pick(rng), bits_of(d, bv)),
            1 => (bits_of(d, bv), pick(rng)),
            2 => (pick(rng), pick(rng)),
            3 => (bits_of(d, bv), bits_of(d, bv)),
            4 => (bits_of(d, -bv * 1.001), bits_of(d, bv)),
            5 => (bits_of(d, bv * 3.7), bits_of(d, bv)),
            6 => (bits_of(d, bv + step * 1e-2), bits_of(d, bv)),
            7 => (rng.next_u64(), rng.next_u64()),
            _ => (bits_of(d, bv * (1.0 + step)), bits_of(d, bv)),
        };
        a.extend_from_slice(&ab.to_le_bytes()[..s]);
        b.extend_from_slice(&bb.to_le_bytes()[..s]);
    }
    (a, b)
}

fn params() -> Vec<QuantParams> {
    let mut out = Vec::new();
    for bound in [
        Bound::Rel(1e-2),
        Bound::Rel(1e-3),
        Bound::Abs(1e-3),
        Bound::Abs(0.5),
    ] {
        for rounding in [Rounding::Nearest, Rounding::Dither] {
            out.push(QuantParams::new(bound, rounding));
            out.push(QuantParams {
                max_code: 7,
                ..QuantParams::new(bound, rounding)
            });
        }
    }
    out
}

#[test]
fn detection_never_panics_and_explains_the_cpu_choice() {
    let b = Backend::detect();
    let report = doctor_report();
    println!("{report}");
    assert!(report.starts_with(&format!("backend: {}", b.name())));
    assert!(report.contains("\ndriver: ") && report.contains("\nnvrtc: "));
    match &b {
        Backend::Cpu { reason } => {
            let reason = reason.as_deref().expect("detect gives a reason");
            assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
            assert!(report.contains(&format!("reason: {reason}")));
            match Backend::cuda() {
                Err(BackendError::Unavailable(r)) => assert!(!r.is_empty()),
                other => panic!("expected Unavailable, got {other:?}"),
            }
            assert!(Backend::select(BackendChoice::Cuda).is_err());
        }
        Backend::Cuda(_) => assert!(report.contains("\ndevice: ")),
    }
    assert!(!Backend::select(BackendChoice::Cpu).unwrap().is_cuda());
    assert_eq!("cuda".parse::<BackendChoice>(), Ok(BackendChoice::Cuda));
    assert!("gpu".parse::<BackendChoice>().is_err());
}

#[test]
fn cli_doctor_and_backend_flag() {
    let run = |args: &[&str]| {
        std::process::Command::new(crate::util::snapstore_bin())
            .args(args)
            .env_remove("SNAPSTORE_BACKEND")
            .output()
            .expect("spawn snapstore")
    };
    let out = run(&["doctor"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("backend: ") && text.contains("\nnvrtc: "),
        "{text}"
    );
    let out = run(&["--backend", "cpu", "doctor"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("backend: cpu"));
    let cuda = Backend::cuda().is_ok();
    let out = run(&["--backend", "cuda", "doctor"]);
    assert_eq!(out.status.success(), cuda);
    let dir = crate::util::tempdir();
    let repo = dir.path().join("repo");
    // A command that codes nothing does not need the device it is pointed at...
    let out = run(&[
        "--backend",
        "cuda",
        "--repo",
        repo.to_str().unwrap(),
        "init",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...one that decodes does.
    let out = run(&[
        "--backend",
        "cuda",
        "--repo",
        repo.to_str().unwrap(),
        "fsck",
    ]);
    assert_eq!(out.status.success(), cuda);
    if !cuda {
        // A clear error naming the reason, not a panic.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: --backend cuda: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!run(&["--backend", "gpu", "doctor"]).status.success());
}

#[test]
fn nvrtc_compiles_every_kernel() {
    // Needs only libnvrtc (and its builtins), no driver: runs wherever one is loadable, e.g.
    // LD_LIBRARY_PATH=<site-packages>/nvidia/cu13/lib after `pip install nvidia-cuda-nvrtc`.
    for target in ["compute_90", "sm_90"] {
        match compile_kernels(target) {
            Ok(k) => {
                println!(
                    "{target}: NVRTC {}.{}, {} bytes, PTX ISA {:?}, {} ms, fma.rn.f64 (libdevice log) {}",
                    k.nvrtc_version.0, k.nvrtc_version.1, k.bytes, k.ptx_isa, k.millis, k.fma_count
                );
                assert!(k.missing_kernels.is_empty(), "{:?}", k.missing_kernels);
                assert!(k.log.is_empty(), "NVRTC warnings: {}", k.log);
                if target.starts_with("compute_") {
                    assert!(k.ptx_isa.is_some());
                }
            }
            Err(BackendError::Unavailable(reason)) if reason.contains("not found") => {
                crate::util::skip("gpu::nvrtc_compiles_every_kernel", &reason);
                return;
            }
            Err(e) => panic!("kernels do not compile for {target}: {e}"),
        }
    }
    assert_eq!(kernel_names().len(), 32);
}

/// Element `i` of `bytes` (dtype `d`): its bits and its value.
fn element(d: Dtype, bytes: &[u8], i: usize) -> (u64, f64) {
    let s = size(d);
    let raw = &bytes[i * s..(i + 1) * s];
    match d {
        Dtype::F16 => {
            let v = half::f16::from_le_bytes([raw[0], raw[1]]);
            (u64::from(v.to_bits()), v.to_f64())
        }
        Dtype::BF16 => {
            let v = half::bf16::from_le_bytes([raw[0], raw[1]]);
            (u64::from(v.to_bits()), v.to_f64())
        }
        Dtype::F32 => {
            let v = f32::from_le_bytes(raw.try_into().unwrap());
            (u64::from(v.to_bits()), f64::from(v))
        }
        _ => {
            let v = f64::from_le_bytes(raw.try_into().unwrap());
            (v.to_bits(), v)
        }
    }
}

/// The quantizer's promise for `a`: every element of the reconstruction is within the bound
/// (relative or absolute, in the stored dtype); NaN, infinities, exceptions (and zeros under a
/// relative bound) come back bit for bit; each exception holds the original element.
#[track_caller]
fn assert_within_bound(d: Dtype, p: &QuantParams, a: &[u8], q: &Quantized, what: &str) {
    let n = a.len() / size(d);
    assert_eq!(q.recon.len(), a.len(), "{what}");
    let exceptions: std::collections::HashSet<usize> =
        q.exception_positions.iter().map(|&i| i as usize).collect();
    for (k, &i) in q.exception_positions.iter().enumerate() {
        let s = size(d);
        let i = i as usize;
        assert_eq!(
            &q.exception_values[k * s..(k + 1) * s],
            &a[i * s..(i + 1) * s],
            "exception {i} is not the original element: {what}"
        );
    }
    for i in 0..n {
        let (ab, av) = element(d, a, i);
        let (rb, rv) = element(d, &q.recon, i);
        if ab == rb {
            continue;
        }
        // Under a relative bound a zero has no room; under an absolute one the quantizer may
        // move it within the bound (the chunk coder keeps zeros exact above this layer).
        let exact_zero = matches!(p.bound, Bound::Rel(_)) && av == 0.0;
        assert!(
            !exceptions.contains(&i) && av.is_finite() && !exact_zero,
            "element {i} ({av:e}, bits {ab:#x}) must come back exactly, got {rv:e} (bits {rb:#x}): {what}"
        );
        let err = (rv - av).abs();
        let limit = match p.bound {
            Bound::Rel(e) => e * av.abs(),
            Bound::Abs(e) => e,
            Bound::Lossless => 0.0,
        };
        assert!(
            err <= limit,
            "element {i}: |{rv:e} - {av:e}| = {err:e} > {limit:e} under {:?}: {what}",
            p.bound
        );
    }
}

#[test]
fn cpu_backend_round_trips() {
    let cpu = Backend::cpu();
    let mut rng = Rng::new(1);
    for d in FLOATS {
        for p in params() {
            let (a, b) = pair(d, 500, &mut rng);
            let q = cpu.quantize(d, &p, &a, Some(&b)).unwrap();
            assert_within_bound(d, &p, &a, &q, &format!("{d} {p:?} delta"));
            assert_eq!(cpu.dequantize(d, &p, &b, &q).unwrap(), q.recon);
            let q = cpu.quantize(d, &p, &a, None).unwrap();
            assert_eq!(q.codes.len(), 500);
            assert_within_bound(d, &p, &a, &q, &format!("{d} {p:?} keyframe"));
        }
    }
    let data = rng.bytes(4800);
    let r = rng.bytes(4800);
    for unit in [1, 2, 3, 4, 8] {
        for float in [false, true] {
            let p = cpu.delta_planes(unit, float, &data, Some(&r)).unwrap();
            assert_eq!(cpu.merge_planes(unit, float, &p, Some(&r)).unwrap(), data);
        }
    }
    let (a, b) = pair(Dtype::F32, 1000, &mut rng);
    let steps = [10.0, 100.0, 1000.0];
    let h = cpu
        .code_histograms(Dtype::F32, true, Rounding::Nearest, &a, Some(&b), &steps)
        .unwrap();
    for row in &h {
        assert_eq!(row.iter().sum::<u64>(), 1000);
    }
    assert!(h[0][HIST_CLIP] >= h[2][HIST_CLIP]); // coarser steps put more in code 0
    assert!(cpu.quantize(Dtype::I32, &params()[0], &a, None).is_err());
}

fn assert_same(what: &str, cpu: &Quantized, gpu: &Quantized) {
    assert_eq!(gpu.recon, cpu.recon, "reconstruction differs: {what}");
    assert_eq!(
        gpu.exception_positions, cpu.exception_positions,
        "exceptions differ: {what}"
    );
    assert_eq!(gpu.exception_values, cpu.exception_values, "{what}");
    if gpu.codes != cpu.codes {
        // Only possible where the device log() and the CPU ln() round an estimate that sits
        // within an ulp of a code boundary to different sides (see src/gpu/mod.rs): report it.
        let diff: Vec<usize> = (0..gpu.codes.len())
            .filter(|&i| gpu.codes[i] != cpu.codes[i])
            .collect();
        panic!(
            "codes differ at {} elements (first {:?}): {what}",
            diff.len(),
            &diff[..diff.len().min(8)]
        );
    }
}

#[test]
fn gpu_quantize_and_dequantize_are_bit_identical_to_cpu() {
    let Some(gpu) = cuda_or_skip(
        "gpu::gpu_quantize_and_dequantize_are_bit_identical_to_cpu",
        1000,
    ) else {
        return;
    };
    let cpu = Backend::cpu();
    let mut rng = Rng::new(42);
    for d in FLOATS {
        for p in params() {
            for keyframe in [false, true] {
                let (a, b) = pair(d, 3500, &mut rng);
                let reference = (!keyframe).then_some(b.as_slice());
                let what = format!("{d} {p:?} keyframe={keyframe}");
                let c = cpu.quantize(d, &p, &a, reference).unwrap();
                let g = gpu.quantize(d, &p, &a, reference).unwrap();
                assert_same(&what, &c, &g);
                let r = match reference {
                    Some(r) => r.to_vec(),
                    None => cpu_keyframe_reference(d, &a),
                };
                // Each side decodes the other's output bit for bit.
                assert_eq!(gpu.dequantize(d, &p, &r, &c).unwrap(), c.recon, "{what}");
                assert_eq!(cpu.dequantize(d, &p, &r, &g).unwrap(), g.recon, "{what}");
            }
        }
    }
}

/// `±1.0` with each element's sign: the keyframe reference.
fn cpu_keyframe_reference(d: Dtype, a: &[u8]) -> Vec<u8> {
    let s = size(d);
    a.chunks_exact(s)
        .flat_map(|e| {
            let one = bits_of(d, if e[s - 1] & 0x80 != 0 { -1.0 } else { 1.0 });
            one.to_le_bytes()[..s].to_vec()
        })
        .collect()
}

#[test]
fn gpu_decodes_arbitrary_codes_like_cpu() {
    // In-range codes against any reference, NaN and Inf included (a stream no encoder writes):
    // the device reproduces the x86 NaN results, so even this decodes identically.
    let Some(gpu) = cuda_or_skip("gpu::gpu_decodes_arbitrary_codes_like_cpu", 777) else {
        return;
    };
    let cpu = Backend::cpu();
    let mut rng = Rng::new(9);
    for d in FLOATS {
        for p in params() {
            let n = 2000;
            let (_, reference) = pair(d, n, &mut rng);
            let mc = i64::from(p.max_code);
            let q = Quantized {
                codes: (0..n)
                    .map(|_| (rng.below(2 * mc as u64 + 1) as i64 - mc) as i32)
                    .collect(),
                ..Default::default()
            };
            assert_eq!(
                gpu.dequantize(d, &p, &reference, &q).unwrap(),
                cpu.dequantize(d, &p, &reference, &q).unwrap(),
                "{d} {p:?}"
            );
            // Validation errors match too (first out-of-range code).
            let mut bad = q.clone();
            bad.codes[1500] = p.max_code as i32 + 1;
            bad.codes[1700] = -(p.max_code as i32) - 1;
            assert_eq!(
                gpu.dequantize(d, &p, &reference, &bad),
                cpu.dequantize(d, &p, &reference, &bad)
            );
        }
    }
}

#[test]
fn gpu_exact_delta_planes_equal_cpu() {
    let Some(gpu) = cuda_or_skip("gpu::gpu_exact_delta_planes_equal_cpu", 1000) else {
        return;
    };
    let cpu = Backend::cpu();
    let mut rng = Rng::new(5);
    for unit in [1usize, 2, 4, 8] {
        for float in [false, true] {
            let n = 3333;
            let data = rng.bytes(n * unit);
            let reference: Vec<u8> = data
                .iter()
                .map(|&x| x ^ (rng.next_u64() as u8 & 7))
                .collect();
            for r in [None, Some(reference.as_slice())] {
                let want = cpu.delta_planes(unit, float, &data, r).unwrap();
                let got = gpu.delta_planes(unit, float, &data, r).unwrap();
                assert_eq!(got, want, "unit {unit} float {float} ref {}", r.is_some());
                assert_eq!(gpu.merge_planes(unit, float, &got, r).unwrap(), data);
            }
        }
    }
}

#[test]
fn gpu_histograms_equal_cpu() {
    let Some(gpu) = cuda_or_skip("gpu::gpu_histograms_equal_cpu", 1000) else {
        return;
    };
    let cpu = Backend::cpu();
    let mut rng = Rng::new(77);
    for d in FLOATS {
        for relative in [true, false] {
            for rounding in [Rounding::Nearest, Rounding::Dither] {
                let (a, b) = pair(d, 5000, &mut rng);
                // 70 candidates: two passes of at most 64.
                let steps: Vec<f64> = (0..70)
                    .map(|j| {
                        let bound = if relative {
                            Bound::Rel(1e-4 * 1.12f64.powi(j))
                        } else {
                            Bound::Abs(1e-4 * 1.12f64.powi(j))
                        };
                        QuantParams::new(bound, rounding).inv_step().unwrap()
                    })
                    .collect();
                for r in [Some(b.as_slice()), None] {
                    let want = cpu
                        .code_histograms(d, relative, rounding, &a, r, &steps)
                        .unwrap();
                    let got = gpu
                        .code_histograms(d, relative, rounding, &a, r, &steps)
                        .unwrap();
                    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(g.iter().sum::<u64>(), 5000);
                        assert_eq!(g[HIST_EXCEPTION], w[HIST_EXCEPTION]);
                        // The device log() may put an estimate within an ulp of a boundary
                        // into the neighbouring bin; anything more is a bug.
                        let l1: u64 = (0..HIST_BINS).map(|j| g[j].abs_diff(w[j])).sum();
                        assert!(l1 <= 2, "{d} rel {relative} {rounding:?} k {k}: L1 {l1}");
                    }
                }
            }
        }
    }
}

#[test]
fn gpu_handles_many_windows_and_empty_input() {
    let Some(gpu) = cuda_or_skip("gpu::gpu_handles_many_windows_and_empty_input", 0) else {
        return;
    };
    let cpu = Backend::cpu();
    let mut rng = Rng::new(8);
    // More than two default windows (2^21 elements each).
    let n = (1 << 22) + 12345;
    let (a, b) = pair(Dtype::BF16, n, &mut rng);
    let p = QuantParams::new(Bound::Rel(1e-2), Rounding::Dither);
    let c = cpu.quantize(Dtype::BF16, &p, &a, Some(&b)).unwrap();
    let g = gpu.quantize(Dtype::BF16, &p, &a, Some(&b)).unwrap();
    assert_same("bf16 4M", &c, &g);
    let e = gpu.quantize(Dtype::F32, &p, &[], Some(&[])).unwrap();
    assert!(e.codes.is_empty() && e.recon.is_empty());
    assert_eq!(
        gpu.quantize(Dtype::F32, &p, &[0; 5], None).unwrap_err(),
        cpu.quantize(Dtype::F32, &p, &[0; 5], None).unwrap_err()
    );
}

/// A lossy chain of F32, BF16 and F16 tensors (with zeros, NaN and a sign flip) committed with
/// one backend decodes bit-identically with the other, through the real commit and checkout
/// paths. Without a GPU there is no second backend to compare: it skips, saying why (the C++
/// emulator's parity tests in src/gpu/emu_tests.rs run the kernels' arithmetic on the CPU).
#[test]
fn commits_decode_identically_on_either_backend() {
    use snapstore::{CommitOptions, Repo, TensorInput};
    if let Err(e) = Backend::cuda() {
        crate::util::skip(
            "gpu::commits_decode_identically_on_either_backend",
            &e.to_string(),
        );
        return;
    }
    let encode_on = [BackendChoice::Cuda, BackendChoice::Cpu];
    for (k, enc) in encode_on.into_iter().enumerate() {
        let dir = crate::util::tempdir();
        let repo = Repo::init(dir.path()).unwrap().with_backend(enc);
        let mut rng = Rng::new(77 + k as u64);
        let n = 300_000;
        let mut base: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
        base[7] = 0.0;
        base[8] = f32::NAN;
        let mut committed = Vec::new();
        for step in 0..4 {
            for x in base.iter_mut() {
                *x *= 1.0 + 0.004 * rng.unit();
            }
            base[9] = if step % 2 == 0 { 0.5 } else { -0.5 };
            let f32_bytes: Vec<u8> = base.iter().flat_map(|x| x.to_le_bytes()).collect();
            let bf: Vec<u8> = base
                .iter()
                .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                .collect();
            let hf: Vec<u8> = base
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect();
            let inputs = vec![
                TensorInput {
                    name: "w.f32".into(),
                    dtype: Dtype::F32,
                    shape: vec![n as u64],
                    data: &f32_bytes,
                },
                TensorInput {
                    name: "w.bf16".into(),
                    dtype: Dtype::BF16,
                    shape: vec![n as u64],
                    data: &bf,
                },
                TensorInput {
                    name: "w.f16".into(),
                    dtype: Dtype::F16,
                    shape: vec![n as u64],
                    data: &hf,
                },
            ];
            let bound = if step == 3 {
                Bound::Abs(1e-3)
            } else {
                Bound::Rel(1e-2)
            };
            let opts = CommitOptions {
                message: format!("step {step}"),
                bound: Some(bound),
                chunk_bytes: 1 << 18,
                ..CommitOptions::default()
            };
            let r = repo.commit_tensors(&inputs, None, &opts).unwrap();
            committed.push(r.snapshot);
        }
        let decoded = |choice| {
            let repo = Repo::open(dir.path()).unwrap().with_backend(choice);
            committed
                .iter()
                .map(|id| {
                    repo.checkout(id, None)
                        .unwrap()
                        .tensors
                        .into_iter()
                        .map(|t| t.data)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        let on_cpu = decoded(BackendChoice::Cpu);
        let on_other = decoded(BackendChoice::Cuda);
        assert_eq!(on_cpu.len(), 4);
        for (s, (a, b)) in on_cpu.iter().zip(&on_other).enumerate() {
            for (t, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(x == y, "encoded on {enc}: snapshot {s} tensor {t} differs");
            }
        }
        // The NaN and the zero come back exactly, whichever backend coded them.
        let last = &on_cpu[2][0];
        let at = |i: usize| f32::from_le_bytes(last[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(at(7).to_bits(), 0);
        assert!(at(8).is_nan());
        println!("encoded on {enc}: 4 snapshots x 3 tensors decode identically on both backends");
    }
}
