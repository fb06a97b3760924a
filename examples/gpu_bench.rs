//! Benchmarks for the CUDA backend (issue #4). Without a GPU it prints why and exits 0.
//!
//! ```sh
//! cargo run --release --example gpu_bench             # 64 Mi-element kernels, 1 GiB end-to-end
//! cargo run --release --example gpu_bench -- 16 256   # 16 Mi elements, 256 MiB end-to-end
//! ```
//!
//! Prints: `snapstore doctor`; every kernel's GB/s on device-resident data and its fraction of
//! the device-to-device copy bandwidth; then host-to-host GB/s of the backend calls (pinned
//! double-buffered pipeline, PCIe included) against the CPU path on all cores (1 MiB chunks, as
//! a commit codes them) on the same data.

use std::time::Instant;

use rayon::prelude::*;
use snapstore::backend::{doctor_report, kernel_benchmark, Backend, QuantParams};
use snapstore::{Bound, Dtype, Rounding};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let mi_elems = args.first().copied().unwrap_or(64);
    let mib = args.get(1).copied().unwrap_or(1024);
    println!("{}\n", doctor_report());
    let gpu = match Backend::cuda() {
        Ok(g) => g,
        Err(e) => {
            println!("skipping: {e}");
            return;
        }
    };
    match kernel_benchmark(mi_elems << 20, 10) {
        Ok(table) => println!("{table}\n"),
        Err(e) => println!("kernel benchmark failed: {e}\n"),
    }

    // A synthetic f32 trajectory step: B in [-1, 1], A = B moved by up to 1%.
    let n = (mib << 20) / 4;
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut b = Vec::with_capacity(n * 4);
    let mut a = Vec::with_capacity(n * 4);
    for _ in 0..n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let bv = ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0;
        let av = bv * (1.0 + (((s >> 8) & 0xffff) as f32 / 65536.0 - 0.5) * 0.02);
        b.extend_from_slice(&bv.to_le_bytes());
        a.extend_from_slice(&av.to_le_bytes());
    }
    let cpu = Backend::cpu();
    let p = QuantParams::new(Bound::Rel(1e-2), Rounding::Dither);
    let gb = (n * 4) as f64 / 1e9;
    let chunk = 1 << 20;
    let time = |f: &dyn Fn()| {
        f();
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    println!("end to end, {mib} MiB of f32 (host memory in and out):");
    let g = time(&|| {
        gpu.quantize(Dtype::F32, &p, &a, Some(&b))
            .expect("gpu quantize");
    });
    let c = time(&|| {
        a.par_chunks(chunk)
            .zip(b.par_chunks(chunk))
            .for_each(|(x, y)| {
                cpu.quantize(Dtype::F32, &p, x, Some(y))
                    .expect("cpu quantize");
            });
    });
    report("quantize rel:1e-2 dither", gb, g, c);
    let q = gpu
        .quantize(Dtype::F32, &p, &a, Some(&b))
        .expect("gpu quantize");
    let g = time(&|| {
        gpu.dequantize(Dtype::F32, &p, &b, &q)
            .expect("gpu dequantize");
    });
    let qs: Vec<_> = a
        .par_chunks(chunk)
        .zip(b.par_chunks(chunk))
        .map(|(x, y)| {
            cpu.quantize(Dtype::F32, &p, x, Some(y))
                .expect("cpu quantize")
        })
        .collect();
    let c = time(&|| {
        b.par_chunks(chunk).zip(&qs).for_each(|(y, q)| {
            cpu.dequantize(Dtype::F32, &p, y, q)
                .expect("cpu dequantize");
        });
    });
    report("dequantize", gb, g, c);
    let g = time(&|| {
        gpu.delta_planes(4, true, &a, Some(&b)).expect("gpu planes");
    });
    let c = time(&|| {
        a.par_chunks(chunk)
            .zip(b.par_chunks(chunk))
            .for_each(|(x, y)| {
                cpu.delta_planes(4, true, x, Some(y)).expect("cpu planes");
            });
    });
    report("exact delta + byte planes", gb, g, c);
}

fn report(what: &str, gb: f64, gpu_s: f64, cpu_s: f64) {
    println!(
        "  {what:<28} cuda {:>7.2} GB/s   cpu {:>7.2} GB/s   {:>5.1}x",
        gb / gpu_s,
        gb / cpu_s,
        cpu_s / gpu_s
    );
}
