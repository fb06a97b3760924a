//! Benchmarks for the CUDA backend (issue #4). Without a GPU it prints why and exits 0.
//!
//! ```sh
//! cargo run --release --example gpu_bench             # 64 Mi-element kernels, 1 GiB end-to-end
//! cargo run --release --example gpu_bench -- 16 256   # 16 Mi elements, 256 MiB end-to-end
//! cargo run --release --example gpu_bench -- 64 1024 1024 4   # + a 4 x 1 GiB commit trajectory
//! cargo run --release --example gpu_bench -- 0 0 64 4   # only the trajectory (runs on the CPU too)
//! ```
//!
//! The trajectory part (third and fourth arguments: MiB per snapshot, snapshots) commits a
//! synthetic F32 training trajectory under `rel:0.01` through `Repo::commit_tensors` and checks
//! every snapshot out again, once per backend, in a temporary repository; GB/s counts tensor
//! bytes. It runs on the CPU alone when no GPU is found, and checks that the CUDA-coded
//! snapshots decode to the CPU-coded ones' bytes when one is.
//!
//! Prints: `snapstore doctor`; every kernel's GB/s on device-resident data and its fraction of
//! the device-to-device copy bandwidth; then host-to-host GB/s of the backend calls (pinned
//! double-buffered pipeline, PCIe included) against the CPU path on all cores (1 MiB chunks, as
//! a commit codes them) on the same data.

use std::time::Instant;

use rayon::prelude::*;
use snapstore::backend::{doctor_report, kernel_benchmark, Backend, BackendChoice, QuantParams};
use snapstore::{Bound, CommitOptions, Dtype, Repo, Rounding, TensorInput};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let mi_elems = args.first().copied().unwrap_or(64);
    let mib = args.get(1).copied().unwrap_or(1024);
    let traj_mib = args.get(2).copied().unwrap_or(0);
    let traj_len = args.get(3).copied().unwrap_or(4);
    println!("{}\n", doctor_report());
    if mi_elems > 0 || mib > 0 {
        host_calls(mi_elems, mib);
    }
    if traj_mib > 0 {
        trajectory(traj_mib, traj_len.max(1));
    }
}

/// A synthetic f32 trajectory step: B in [-1, 1], A = B moved by up to 1%.
fn step_pair(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut s = seed;
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
    (a, b)
}

/// Commits `len` snapshots of `mib` MiB each under rel:0.01 and checks them out, per backend.
fn trajectory(mib: usize, len: usize) {
    let n = (mib << 20) / 4;
    let (first, _) = step_pair(n, 0x2545_F491_4F6C_DD1D);
    // Each snapshot moves every weight by up to 0.5%, in 64 tensors so all cores share it.
    let mut snaps = vec![first];
    for k in 1..len {
        let prev: Vec<f32> = snaps[k - 1]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let s = 0x9E37_79B9_7F4A_7C15u64 ^ k as u64;
        let next: Vec<u8> = prev
            .par_iter()
            .enumerate()
            .flat_map_iter(|(i, &x)| {
                let mut h = s ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                h ^= h >> 31;
                let d = ((h >> 11) & 0xffff) as f32 / 65536.0 - 0.5;
                (x * (1.0 + 0.01 * d)).to_le_bytes()
            })
            .collect();
        snaps.push(next);
    }
    let total_gb = (snaps.iter().map(Vec::len).sum::<usize>()) as f64 / 1e9;
    println!(
        "trajectory: {len} snapshots x {mib} MiB of f32 in 64 tensors, rel:0.01 dither, \
         Repo::commit_tensors then checkout of every snapshot ({total_gb:.2} GB each way)"
    );
    let mut choices = vec![BackendChoice::Cpu];
    if Backend::cuda().is_ok() {
        choices.push(BackendChoice::Cuda);
    }
    let mut decoded_by: Vec<Vec<[u8; 32]>> = Vec::new();
    let mut cpu_rates = (0.0, 0.0);
    for choice in choices {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repo::init(dir.path()).expect("init").with_backend(choice);
        let opts = CommitOptions {
            bound: Some(Bound::Rel(1e-2)),
            ..CommitOptions::default()
        };
        let t = Instant::now();
        let mut ids = Vec::new();
        let mut stored = 0u64;
        for (k, snap) in snaps.iter().enumerate() {
            let per = snap.len() / 64 / 4 * 4;
            let inputs: Vec<TensorInput> = (0..64)
                .map(|j| {
                    let end = if j == 63 { snap.len() } else { (j + 1) * per };
                    TensorInput {
                        name: format!("layer{j:02}.weight"),
                        dtype: Dtype::F32,
                        shape: vec![((end - j * per) / 4) as u64],
                        data: &snap[j * per..end],
                    }
                })
                .collect();
            let mut o = opts.clone();
            o.message = format!("epoch {k}");
            let r = repo.commit_tensors(&inputs, None, &o).expect("commit");
            stored += r.stored_bytes;
            ids.push(r.snapshot);
        }
        let commit_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut hashes = Vec::new();
        for id in &ids {
            let co = repo.checkout(id, None).expect("checkout");
            let mut h = blake3::Hasher::new();
            for t in &co.tensors {
                h.update(&t.data);
            }
            hashes.push(*h.finalize().as_bytes());
        }
        let checkout_s = t.elapsed().as_secs_f64();
        let (c, o) = (total_gb / commit_s, total_gb / checkout_s);
        if choice == BackendChoice::Cpu {
            cpu_rates = (c, o);
        }
        println!(
            "  {:<5} commit {c:>7.3} GB/s ({:>5.2}x cpu)   checkout {o:>7.3} GB/s ({:>5.2}x cpu)   \
             ratio {:>6.2}x   ({})",
            choice.to_string(),
            c / cpu_rates.0,
            o / cpu_rates.1,
            total_gb * 1e9 / stored as f64,
            repo.backend().describe()
        );
        decoded_by.push(hashes);
    }
    if decoded_by.len() == 2 {
        // Each repository decodes its own snapshots; CUDA- and CPU-coded snapshots agree on
        // every reconstruction only if both encoders chose the same codes (ties aside).
        let same = decoded_by[0]
            .iter()
            .zip(&decoded_by[1])
            .filter(|(a, b)| a == b)
            .count();
        println!("  snapshots whose reconstruction is the same from both encoders: {same}/{len}");
    }
}

fn host_calls(mi_elems: usize, mib: usize) {
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

    let n = (mib << 20) / 4;
    let (a, b) = step_pair(n, 0x9E37_79B9_7F4A_7C15);
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
