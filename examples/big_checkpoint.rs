//! Commits a large synthetic F32 checkpoint, then a second "epoch" of it as a delta, and reports
//! throughput and peak memory.
//!
//! ```text
//! cargo build --release --examples
//! /usr/bin/time -v target/release/examples/big_checkpoint [SIZE] [DIR]
//! ```
//!
//! `SIZE` is the checkpoint's tensor bytes (`2G` by default; suffixes K, M, G are powers of 1024,
//! so `2G` = 16 tensors of 128 MiB). `DIR` is where the temporary files and repository go
//! (default: the system temp dir); everything is removed at the end. The files are written
//! streaming, so generating them costs little memory.
//!
//! Phases: write `epoch_1.safetensors`; commit it (lossless, no parent: byte planes); write
//! `epoch_2.safetensors` (every weight times `1 + 1e-3 * noise`); commit it (lossless delta
//! against epoch 1); check out epoch 2 to a file and compare it byte for byte with the
//! original. `SNAPSTORE_BENCH_CODEC=auto|zstd|lzma` picks the commit's entropy coders (default
//! `auto`); `SNAPSTORE_BENCH_TIP_CACHE=BYTES` bounds the decoded last commit the repository
//! handle keeps (default 0, as the CLI: the peak is the commit's own working memory, not the
//! library's default cache, `default_cache_bytes()`, which keeps a copy of any checkpoint up
//! to an eighth of the machine's memory). After each phase the process's peak resident set so
//! far (`VmHWM` from
//! `/proc/self/status`) is printed; `/usr/bin/time -v` reports the same final peak as
//! "Maximum resident set size".

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use snapstore::{Bound, CodecChoice, CommitOptions, Repo};

const MIB: u64 = 1 << 20;
const TENSOR_BYTES: u64 = 128 * MIB;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = match args.first() {
        Some(s) => parse_size(s)?,
        None => 2048 * MIB,
    };
    if size < 4096 || size % 4 != 0 {
        bail!("size must be a multiple of 4 bytes, at least 4 KiB");
    }
    let base = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let codec: CodecChoice = match std::env::var("SNAPSTORE_BENCH_CODEC") {
        Ok(s) => s.parse().map_err(anyhow::Error::msg)?,
        Err(_) => CodecChoice::Auto,
    };
    let tmp = tempfile::tempdir_in(&base)?;
    let tensors = layout(size);
    println!(
        "big_checkpoint: {} bytes of F32 tensors ({} tensors), codec {codec}, {} rayon threads, in {}",
        size,
        tensors.len(),
        rayon::current_num_threads(),
        tmp.path().display()
    );
    report_rss("start");

    let e1 = tmp.path().join("epoch_1.safetensors");
    let e2 = tmp.path().join("epoch_2.safetensors");
    let t = Instant::now();
    write_checkpoint(&e1, &tensors, 1)?;
    let file_bytes = std::fs::metadata(&e1)?.len();
    println!(
        "wrote {} ({} bytes) in {:.1} s",
        e1.display(),
        file_bytes,
        t.elapsed().as_secs_f64()
    );
    report_rss("after writing epoch 1");

    let tip_cache = match std::env::var("SNAPSTORE_BENCH_TIP_CACHE") {
        Ok(v) => v.parse().context("SNAPSTORE_BENCH_TIP_CACHE")?,
        Err(_) => 0,
    };
    let repo = Repo::init(tmp.path().join("repo"))?.with_tip_cache(tip_cache);
    let opts = CommitOptions {
        bound: Some(Bound::Lossless),
        message: "epoch 1".into(),
        codec,
        ..Default::default()
    };
    let t = Instant::now();
    let r1 = repo.commit_file(&e1, &opts)?;
    let s1 = t.elapsed().as_secs_f64();
    println!(
        "commit epoch 1 (keyframe): {:.2} s, {:.1} MB/s, logical {} B, stored {} B (ratio {:.3}), {} keyframes / {} deltas",
        s1,
        r1.logical_bytes as f64 / 1e6 / s1,
        r1.logical_bytes,
        r1.stored_bytes,
        r1.logical_bytes as f64 / r1.stored_bytes as f64,
        r1.keyframes,
        r1.deltas
    );
    report_rss("after commit epoch 1");

    let t = Instant::now();
    write_checkpoint(&e2, &tensors, 2)?;
    println!(
        "wrote {} in {:.1} s",
        e2.display(),
        t.elapsed().as_secs_f64()
    );

    let opts = CommitOptions {
        message: "epoch 2".into(),
        ..opts
    };
    let t = Instant::now();
    let r2 = repo.commit_file(&e2, &opts)?;
    let s2 = t.elapsed().as_secs_f64();
    println!(
        "commit epoch 2 (delta): {:.2} s, {:.1} MB/s, logical {} B, stored {} B (ratio {:.3}), {} keyframes / {} deltas",
        s2,
        r2.logical_bytes as f64 / 1e6 / s2,
        r2.logical_bytes,
        r2.stored_bytes,
        r2.logical_bytes as f64 / r2.stored_bytes as f64,
        r2.keyframes,
        r2.deltas
    );
    report_rss("after commit epoch 2");

    let out = tmp.path().join("checkout.safetensors");
    let t = Instant::now();
    let c = repo.checkout_to_file("HEAD", &out, None)?;
    let sc = t.elapsed().as_secs_f64();
    println!(
        "checkout epoch 2 to file (delta chain of 2): {:.2} s, {:.1} MB/s",
        sc,
        c.bytes as f64 / 1e6 / sc
    );
    report_rss("after checkout epoch 2");
    if !same_file(&e2, &out)? {
        bail!("checkout of epoch 2 differs from the original file");
    }
    println!("checkout is byte-identical to epoch_2.safetensors");

    let stats = repo.stats()?;
    println!(
        "repository: logical {} B, packs {} B, ratio {:.3}",
        stats.logical_bytes, stats.pack_bytes, stats.ratio
    );
    let peak = vm_hwm_kib().unwrap_or(0);
    println!(
        "peak RSS (VmHWM) {} KiB = {:.1}% of the {}-byte file",
        peak,
        peak as f64 * 1024.0 / file_bytes as f64 * 100.0,
        file_bytes
    );
    Ok(())
}

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    Ok(((n * mult as f64) as u64) / 4 * 4)
}

/// Tensor names and element counts: 128 MiB tensors, the remainder in a last smaller one.
fn layout(size: u64) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut left = size;
    let mut i = 0;
    while left > 0 {
        let b = left.min(TENSOR_BYTES);
        out.push((format!("layers.{i:02}.weight"), b / 4));
        left -= b;
        i += 1;
    }
    out
}

/// A small fast PRNG (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Roughly normal: sum of four uniforms, centred, unit variance.
    fn normal(&mut self) -> f32 {
        let r = self.next();
        let s: u32 = (0..4).map(|k| ((r >> (16 * k)) & 0xFFFF) as u32).sum();
        (s as f32 / 65536.0 - 2.0) * 1.732_050_8
    }
}

/// Writes a safetensors file tensor by tensor. Epoch 1: weights are a slow sinusoid plus
/// Gaussian noise, scale ~0.02 (like an initialised layer). Epoch 2: the same weights times
/// `1 + 1e-3 * noise` (a small training step).
fn write_checkpoint(path: &Path, tensors: &[(String, u64)], epoch: u32) -> Result<()> {
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut offset = 0u64;
    for (name, n) in tensors {
        let end = offset + n * 4;
        header.push_str(&format!(
            ",\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}, {}],\"data_offsets\":[{offset},{end}]}}",
            n / 1024,
            1024
        ));
        if n % 1024 != 0 {
            bail!("tensor element count must be a multiple of 1024");
        }
        offset = end;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut w = BufWriter::with_capacity(8 << 20, File::create(path)?);
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    let mut buf: Vec<u8> = Vec::with_capacity(4 << 20);
    for (t, (_, n)) in tensors.iter().enumerate() {
        let mut base = Rng(0x5eed_0000 + t as u64);
        let mut step = Rng(0xdead_0000 + t as u64);
        let freq = 1e-4 * (t as f32 + 1.0);
        for i in 0..*n {
            let smooth = (i as f32 * freq).sin() * 0.01;
            let mut v = smooth + 0.02 * base.normal();
            if epoch >= 2 {
                v *= 1.0 + 1e-3 * step.normal();
            }
            buf.extend_from_slice(&v.to_le_bytes());
            if buf.len() >= 4 << 20 {
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        w.write_all(&buf)?;
        buf.clear();
    }
    w.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .context("syncing the checkpoint")?;
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 4 << 20], vec![0u8; 4 << 20]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// Peak resident set size so far, in KiB (Linux).
fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn report_rss(phase: &str) {
    if let Some(k) = vm_hwm_kib() {
        println!("  peak RSS so far ({phase}): {k} KiB");
    }
}
