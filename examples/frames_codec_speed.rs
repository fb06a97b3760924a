//! The frame-group codec alone (no repository): encode and decode MB/s on one thread, for the
//! frames-video clip in groups of 30 frames, lossless and at abs 1, 2 and 4.
//!
//! ```text
//! cargo run --release --example frames_codec_speed [-- FRAMES_DIR [REPS]]
//! ```
//!
//! `FRAMES_DIR` defaults to `../shared/bench/frames-video` (a missing directory is an error
//! here: there is nothing else to time). Every group of the clip is encoded with
//! `encode_group_reconstructed` (what a commit calls) and decoded with `decode_group`, one
//! group after the other on this thread; each cell is the fastest of `REPS` runs (default 5).
//! The stored bytes are the sum of the group objects, so two builds that write the same format
//! must print the same numbers. `bench_frames` times the whole commit and checkout.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use snapstore::frames_bench::{decode_group, encode_group_reconstructed, FrameBound};
use snapstore::{load_png_dir, CodecChoice, FrameDims, FrameDtype};

/// Frames per group, as `bench_frames`' main rows commit them.
const GROUP: usize = 30;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/frames-video")
    });
    let reps: usize = match args.next() {
        Some(s) => s.parse().context("REPS must be a whole number")?,
        None => 5,
    };
    let seq = load_png_dir(&dir).with_context(|| format!("loading {}", dir.display()))?;
    anyhow::ensure!(seq.dtype == FrameDtype::U8, "expected U8 frames");
    let dims = FrameDims {
        h: seq.h,
        w: seq.w,
        c: seq.c,
    };
    let group_bytes = GROUP * seq.h * seq.w * seq.c;
    let mb = seq.data.len() as f64 / 1e6;
    println!(
        "frames-video: {} frames of {}x{}x{}, groups of {GROUP}, {reps} runs per cell (fastest)\n",
        seq.t, seq.w, seq.h, seq.c
    );
    println!("| bound | stored B | encode MB/s | decode MB/s |");
    println!("|---|---:|---:|---:|");
    for bound in [
        FrameBound::Lossless,
        FrameBound::Abs(1.0),
        FrameBound::Abs(2.0),
        FrameBound::Abs(4.0),
    ] {
        let (mut encode_s, mut decode_s) = (f64::INFINITY, f64::INFINITY);
        let mut stored = 0;
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            let objects = seq
                .data
                .chunks(group_bytes)
                .map(|g| {
                    encode_group_reconstructed(dims, FrameDtype::U8, g, bound, CodecChoice::Auto)
                        .map(|(object, _)| object)
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(anyhow::Error::msg)?;
            encode_s = encode_s.min(t.elapsed().as_secs_f64());
            stored = objects.iter().map(Vec::len).sum::<usize>();
            let t = Instant::now();
            for object in &objects {
                decode_group(object, dims, FrameDtype::U8).map_err(anyhow::Error::msg)?;
            }
            decode_s = decode_s.min(t.elapsed().as_secs_f64());
        }
        let name = match bound {
            FrameBound::Lossless => "lossless".to_string(),
            FrameBound::Abs(e) => format!("abs {e}"),
            FrameBound::Rel(e) => format!("rel {e}"),
        };
        println!(
            "| {name} | {stored} | {:.1} | {:.1} |",
            mb / encode_s,
            mb / decode_s
        );
    }
    Ok(())
}
