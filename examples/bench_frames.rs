//! Benchmarks frame sequences (issue #6): a real video clip and a simulated float field, committed
//! through the library as group-of-frames chunks, checked out again and compared frame by frame.
//!
//! ```text
//! cargo run --release --example bench_frames [-- FRAMES_DIR]
//! ```
//!
//! `FRAMES_DIR` defaults to `../shared/bench/frames-video` (relative to the crate): 60 RGB PNG
//! frames of 320x180, loaded with `snapstore::load_png_dir` (not timed). A missing directory is
//! skipped with a message; the simulated sequence runs regardless.
//!
//! The simulated sequence is a Gray-Scott reaction-diffusion run on a 128x128 periodic grid,
//! computed here (deterministic, no input): 64 F32 frames of the `v` field, at lossless, abs 1e-3,
//! abs 1e-2, rel 1e-2, and abs 0.01 x the value range (the bound of `peers.py`'s `sz3-vrrel`).
//!
//! For each case a fresh repository is made in a temporary directory and the whole sequence is
//! committed with `Repo::commit_frames(&seq, group, &CommitOptions { bound, .. })` (timed), then
//! checked out with `checkout_frames("HEAD", None)` (timed). `diff_frames` gives the per-frame max
//! abs error and PSNR (not timed); the decoded frames are also checked here: lossless must be
//! bit-identical, an `abs:E` bound must hold on every element (`floor(E)` for U8), a `rel:E`
//! bound must hold pointwise (`|x' - x| <= E |x|`). Every case runs `SNAPSTORE_BENCH_REPS`
//! times (default 3), each in a fresh repository; MB/s are medians (1 MB = 1e6 bytes of raw
//! frames). Stored bytes are the first repetition's; a note lists every repetition's when they
//! differ.
//!
//! ratio = raw frame bytes / `stats().pack_bytes` (pack files on disk), the accounting of
//! `peers.py` for sequences (original = tensor bytes).
//!
//! Environment: `RAYON_NUM_THREADS=1` runs snapstore on one thread (the peers are
//! single-threaded). `SNAPSTORE_PROFILE=1` prints each case's stage profile (`snapstore::profile`:
//! CPU time per stage of its first commit and checkout) before the table. `SNAPSTORE_BENCH_SIM_OUT=FILE` also writes the simulated sequence as a
//! safetensors file with one tensor `frames` F32 [64, 128, 128], so that `peers.py FILE` can run
//! on exactly the same data.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use snapstore::{load_png_dir, profile, Bound, CommitOptions, FrameDtype, FrameSeq, Repo};

const MB: f64 = 1e6;

/// One measured case.
struct Row {
    group: usize,
    bound: Bound,
    stored: u64,
    ratio: f64,
    commit_mbps: f64,
    checkout_mbps: f64,
    max_abs: f64,
    min_psnr: f64,
    max_rel: Option<f64>,
}

fn main() -> Result<()> {
    let frames_dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
                .join("bench")
                .join("frames-video")
        });
    let reps: usize = match std::env::var("SNAPSTORE_BENCH_REPS") {
        Ok(s) => s
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .context("SNAPSTORE_BENCH_REPS must be a positive integer")?,
        Err(_) => 3,
    };
    println!(
        "# snapstore bench_frames ({} rayon threads, {reps} repetitions per case, median MB/s)\n",
        rayon::current_num_threads()
    );

    if frames_dir.is_dir() {
        let seq = load_png_dir(&frames_dir)
            .with_context(|| format!("loading {}", frames_dir.display()))?;
        println!(
            "## frames-video ({} frames, {}x{}, {} channels, {}, {} raw bytes, from {})\n",
            seq.t,
            seq.w,
            seq.h,
            seq.c,
            seq.dtype,
            seq.data.len(),
            frames_dir.display()
        );
        let mut cases = Vec::new();
        for bound in [
            Bound::Lossless,
            Bound::Abs(1.0),
            Bound::Abs(2.0),
            Bound::Abs(4.0),
        ] {
            cases.push((30, bound));
        }
        for group in [10, 60] {
            for bound in [Bound::Lossless, Bound::Abs(2.0)] {
                cases.push((group, bound));
            }
        }
        run_table(&seq, &cases, reps, false)?;
    } else {
        println!(
            "skipping frames-video: {} not found\n",
            frames_dir.display()
        );
    }

    let sim = gray_scott(128, 64);
    let values = f32_values(&sim.data);
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let zeros = values.iter().filter(|&&v| v == 0.0).count();
    let small = values.iter().filter(|&&v| v.abs() < 1e-3).count();
    println!(
        "## gray-scott (simulated: {} frames, {}x{}, {}, {} raw bytes; v field, values {lo:.4} to {hi:.4}, {} exact zeros, {:.1}% of values below 1e-3)\n",
        sim.t,
        sim.w,
        sim.h,
        sim.dtype,
        sim.data.len(),
        zeros,
        100.0 * small as f64 / values.len() as f64
    );
    if let Some(out) = std::env::var_os("SNAPSTORE_BENCH_SIM_OUT") {
        write_safetensors(&sim, Path::new(&out))?;
        println!(
            "wrote the sequence to {} (tensor `frames`, F32 [{}, {}, {}])\n",
            Path::new(&out).display(),
            sim.t,
            sim.h,
            sim.w
        );
    }
    // SZ3's value-range-relative bound 0.01 (`peers.py`'s `sz3-vrrel`) as an absolute bound.
    let range_abs = 0.01 * f64::from(hi - lo);
    println!(
        "The last row's bound is 0.01 x the value range ({range_abs:.6e}), what `peers.py`'s `sz3-vrrel(volume)` at 0.01 allows.\n"
    );
    let cases = [
        (30, Bound::Lossless),
        (30, Bound::Abs(1e-3)),
        (30, Bound::Abs(1e-2)),
        (30, Bound::Rel(1e-2)),
        (30, Bound::Abs(range_abs)),
    ];
    run_table(&sim, &cases, reps, true)?;
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn run_table(seq: &FrameSeq, cases: &[(usize, Bound)], reps: usize, float: bool) -> Result<()> {
    let before = loadavg();
    let rows: Vec<Row> = cases
        .iter()
        .map(|&(group, bound)| measure(seq, group, bound, reps))
        .collect::<Result<_>>()?;
    if float {
        println!("| group | bound | ratio | stored | commit MB/s | checkout MB/s | max_abs_err | min PSNR (dB) | max_rel_err |");
        println!("|---|---|---|---|---|---|---|---|---|");
    } else {
        println!("| group | bound | ratio | stored | commit MB/s | checkout MB/s | max_abs_err | min PSNR (dB) |");
        println!("|---|---|---|---|---|---|---|---|");
    }
    for r in &rows {
        let mut line = format!(
            "| {} | {} | {:.2} | {} | {:.1} | {:.1} | {} | {} |",
            r.group,
            r.bound,
            r.ratio,
            r.stored,
            r.commit_mbps,
            r.checkout_mbps,
            fmt_num(r.max_abs),
            if r.min_psnr.is_infinite() {
                "inf".to_string()
            } else {
                format!("{:.2}", r.min_psnr)
            }
        );
        if float {
            line.push_str(&format!(" {} |", fmt_num(r.max_rel.unwrap_or(0.0))));
        }
        println!("{line}");
    }
    println!(
        "\nload average (1, 5, 15 min) before: {before}; after: {}\n",
        loadavg()
    );
    Ok(())
}

fn fmt_num(e: f64) -> String {
    if e == 0.0 {
        "0".into()
    } else if e >= 1.0 && e.fract() == 0.0 {
        format!("{e}")
    } else {
        format!("{e:.3e}")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn measure(seq: &FrameSeq, group: usize, bound: Bound, reps: usize) -> Result<Row> {
    let raw = seq.data.len() as f64;
    let mut commit_mbps = Vec::new();
    let mut checkout_mbps = Vec::new();
    let mut stored = Vec::new();
    let mut metrics = None;
    for rep in 0..reps {
        profile::reset();
        let tmp = tempfile::tempdir()?;
        let repo = Repo::init(tmp.path().join("repo"))?;
        let opts = CommitOptions {
            bound: Some(bound),
            message: format!("group {group}, {bound}"),
            ..Default::default()
        };
        let t = Instant::now();
        repo.commit_frames(seq, Some(group), &opts)
            .with_context(|| format!("commit_frames group {group} {bound}"))?;
        commit_mbps.push(raw / MB / t.elapsed().as_secs_f64());
        stored.push(repo.stats()?.pack_bytes);
        let t = Instant::now();
        let back = repo.checkout_frames("HEAD", None)?;
        checkout_mbps.push(raw / MB / t.elapsed().as_secs_f64());
        if rep == 0 {
            if profile::enabled() {
                println!(
                    "stage profile, group {group} {bound} (one commit and one checkout):\n\n{}",
                    profile::read()
                );
            }
            if (back.t, back.h, back.w, back.c, back.dtype)
                != (seq.t, seq.h, seq.w, seq.c, seq.dtype)
            {
                bail!("group {group} {bound}: checkout has another shape or dtype");
            }
            let max_rel =
                check_bound(seq, &back, bound).with_context(|| format!("group {group} {bound}"))?;
            let m = repo.diff_frames("HEAD", seq)?;
            let max_abs = m.iter().map(|f| f.max_abs_err).fold(0.0, f64::max);
            let min_psnr = m.iter().map(|f| f.psnr).fold(f64::INFINITY, f64::min);
            metrics = Some((max_abs, min_psnr, max_rel));
        }
    }
    let (lo, hi) = (
        *stored.iter().min().expect("at least one repetition"),
        *stored.iter().max().expect("at least one repetition"),
    );
    if lo != hi {
        println!(
            "note: group {group} {bound}: stored bytes per repetition {stored:?} (the table shows the first)"
        );
    }
    let stored = stored[0];
    let (max_abs, min_psnr, max_rel) = metrics.expect("at least one repetition");
    Ok(Row {
        group,
        bound,
        stored,
        ratio: raw / stored as f64,
        commit_mbps: median(commit_mbps),
        checkout_mbps: median(checkout_mbps),
        max_abs,
        min_psnr,
        max_rel,
    })
}

fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Checks the decoded frames against the bound; returns the max pointwise relative error for
/// F32 sequences.
fn check_bound(orig: &FrameSeq, back: &FrameSeq, bound: Bound) -> Result<Option<f64>> {
    if bound == Bound::Lossless && orig.data != back.data {
        bail!("lossless checkout differs from the original");
    }
    match orig.dtype {
        FrameDtype::F32 => {
            let (a, b) = (f32_values(&orig.data), f32_values(&back.data));
            let mut max_rel = 0.0f64;
            for (&x, &y) in a.iter().zip(&b) {
                if x.to_bits() == y.to_bits() {
                    continue;
                }
                let (x, y) = (f64::from(x), f64::from(y));
                let err = (x - y).abs();
                let rel = if x == 0.0 || !x.is_finite() || !y.is_finite() {
                    f64::INFINITY
                } else {
                    err / x.abs()
                };
                max_rel = max_rel.max(rel);
                let ok = match bound {
                    Bound::Lossless => false,
                    Bound::Abs(e) => err <= e,
                    Bound::Rel(e) => rel <= e,
                };
                if !ok {
                    bail!("{x} came back as {y}, outside {bound}");
                }
            }
            Ok(Some(max_rel))
        }
        FrameDtype::U8 | FrameDtype::U16 => {
            let limit = match bound {
                Bound::Abs(e) => e.floor(),
                _ => 0.0,
            };
            let size = orig.dtype.size();
            for (x, y) in orig
                .data
                .chunks_exact(size)
                .zip(back.data.chunks_exact(size))
            {
                let v = |b: &[u8]| {
                    if size == 1 {
                        f64::from(b[0])
                    } else {
                        f64::from(u16::from_le_bytes([b[0], b[1]]))
                    }
                };
                if (v(x) - v(y)).abs() > limit {
                    bail!("{} came back as {}, outside {bound}", v(x), v(y));
                }
            }
            Ok(None)
        }
    }
}

/// Gray-Scott reaction-diffusion on an `n` x `n` periodic grid (Du 0.16, Dv 0.08, F 0.035,
/// k 0.060, dt 1, five-point Laplacian), seeded with 24 random squares of `v`; 500 steps of
/// warm-up, then one frame of `v` every 50 steps.
fn gray_scott(n: usize, frames: usize) -> FrameSeq {
    let (du, dv, f, k) = (0.16f64, 0.08f64, 0.035f64, 0.060f64);
    let mut u = vec![1.0f64; n * n];
    let mut v = vec![0.0f64; n * n];
    // xorshift64*: deterministic seeds without a dependency.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };
    for _ in 0..24 {
        let (cy, cx) = ((rand() * n as f64) as usize, (rand() * n as f64) as usize);
        for dy in 0..8 {
            for dx in 0..8 {
                let i = ((cy + dy) % n) * n + (cx + dx) % n;
                u[i] = 0.5 + 0.02 * (rand() - 0.5);
                v[i] = 0.25 + 0.02 * (rand() - 0.5);
            }
        }
    }
    let (mut u2, mut v2) = (u.clone(), v.clone());
    let mut step = |u: &mut Vec<f64>, v: &mut Vec<f64>| {
        for y in 0..n {
            let (ym, yp) = ((y + n - 1) % n, (y + 1) % n);
            for x in 0..n {
                let (xm, xp) = ((x + n - 1) % n, (x + 1) % n);
                let i = y * n + x;
                let lap = |a: &[f64]| {
                    a[ym * n + x] + a[yp * n + x] + a[y * n + xm] + a[y * n + xp] - 4.0 * a[i]
                };
                let uvv = u[i] * v[i] * v[i];
                u2[i] = u[i] + du * lap(u) - uvv + f * (1.0 - u[i]);
                v2[i] = v[i] + dv * lap(v) + uvv - (f + k) * v[i];
            }
        }
        std::mem::swap(u, &mut u2);
        std::mem::swap(v, &mut v2);
    };
    for _ in 0..500 {
        step(&mut u, &mut v);
    }
    let mut data = Vec::with_capacity(frames * n * n * 4);
    for _ in 0..frames {
        for _ in 0..50 {
            step(&mut u, &mut v);
        }
        data.extend(v.iter().flat_map(|&x| (x as f32).to_le_bytes()));
    }
    FrameSeq::from_raw(FrameDtype::F32, &[frames as u64, n as u64, n as u64], data)
        .expect("shape matches the data")
}

/// Writes the sequence as a safetensors file with one tensor `frames` (F32 `[T, H, W]`).
fn write_safetensors(seq: &FrameSeq, path: &Path) -> Result<()> {
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![seq.t, seq.h, seq.w],
        &seq.data,
    )?;
    let meta = std::collections::HashMap::from([(
        "source".to_string(),
        "snapstore examples/bench_frames.rs gray_scott(128, 64)".to_string(),
    )]);
    safetensors::serialize_to_file([("frames", view)], Some(meta), path)?;
    Ok(())
}
