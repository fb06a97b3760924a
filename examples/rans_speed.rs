//! rANS encode and decode MB/s (one thread), narrow (4 states) and wide (32 states) streams,
//! scalar and with the vector kernels (AVX-512, else AVX2), on the same bytes.
//!
//! ```text
//! cargo run --release --example rans_speed [-- MIB [SECTION_KIB]]
//! ```
//!
//! Two inputs of MIB MiB (default 8), drawn from a fixed seed, each coded as one section or,
//! with SECTION_KIB, as sections of that many KiB coded one after another (a checkpoint's
//! planes average ~7 KiB on cnn-digits, where a section's table costs as much as its symbols): "skewed" (nine bytes in ten
//! zero, the rest among seven values: a delta's exponent plane, the long sections `entropy`
//! keeps narrow) and "mantissa" (all 256 values, mildly skewed: what goes wide). Each cell is
//! the best of five runs; the stored sizes show that the two paths of a width write the same
//! stream. On a CPU with neither the "vector" rows repeat the scalar coder.

use std::time::Instant;

use snapstore::entropy_bench::{decode, encode, vector_kernels, Coder};

/// MB/s of the fastest of five runs of `f` over `bytes` bytes.
fn best_mbps(bytes: usize, mut f: impl FnMut()) -> f64 {
    let fastest = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    bytes as f64 / 1e6 / fastest
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .map_or(8, |s| s.parse().expect("MIB is a whole number"));
    let len = mib << 20;
    let section = std::env::args()
        .nth(2)
        .map_or(len, |s| {
            s.parse::<usize>().expect("SECTION_KIB is a whole number") << 10
        })
        .clamp(1, len);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut draw = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let skewed: Vec<u8> = (0..len)
        .map(|_| {
            let r = draw();
            if r % 10 < 9 {
                0
            } else {
                (r >> 40) as u8 % 7 + 1
            }
        })
        .collect();
    let mantissa: Vec<u8> = (0..len)
        .map(|_| {
            let v = (draw() >> 20) as u32 % 1000;
            (v * v / 3907) as u8
        })
        .collect();
    println!(
        "# rANS, {mib} MiB in sections of {} KiB, one thread; vector kernels: {}\n",
        section >> 10,
        vector_kernels().unwrap_or("none (the vector rows are scalar)")
    );
    println!("| section | stream | path | stored bytes | encode MB/s | decode MB/s |");
    println!("|---|---|---|---:|---:|---:|");
    for (name, data) in [("skewed", &skewed), ("mantissa", &mantissa)] {
        for wide in [false, true] {
            for vector in [false, true] {
                let coder = Coder { wide, vector };
                let pieces: Vec<&[u8]> = data.chunks(section).collect();
                let streams: Vec<Vec<u8>> = pieces
                    .iter()
                    .map(|p| encode(coder, p).expect("nonempty"))
                    .collect();
                let enc = best_mbps(len, || {
                    for p in &pieces {
                        std::hint::black_box(encode(coder, p));
                    }
                });
                let dec = best_mbps(len, || {
                    for (p, stream) in pieces.iter().zip(&streams) {
                        let out = decode(coder, stream, p.len()).expect("decodes");
                        assert!(out == *p, "round trip");
                    }
                });
                println!(
                    "| {name} | {} | {} | {} | {enc:.0} | {dec:.0} |",
                    if wide { "wide (32)" } else { "narrow (4)" },
                    if vector { "vector" } else { "scalar" },
                    streams.iter().map(Vec::len).sum::<usize>()
                );
            }
        }
    }
}
