//! Frame sequences through the real binary: PNG directories and .npy arrays committed exactly
//! and within absolute bounds, checked out whole or as a range, and compared frame by frame.

use std::path::Path;

use snapstore::{FrameDtype, FrameSeq};

use crate::util::*;

/// A moving gradient with noise: consecutive frames differ a little, like video.
fn moving_frames(
    rng: &mut Rng,
    t: usize,
    h: usize,
    w: usize,
    c: usize,
    dtype: FrameDtype,
) -> FrameSeq {
    let mut data = Vec::new();
    for f in 0..t {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let base = ((x + 2 * f + y) % 200) as f32 + ch as f32 * 10.0;
                    let v = base + (rng.unit() * 6.0).round();
                    match dtype {
                        FrameDtype::U8 => data.push(v.clamp(0.0, 255.0) as u8),
                        FrameDtype::U16 => data.extend_from_slice(
                            &((v * 257.0).clamp(0.0, 65535.0) as u16).to_le_bytes(),
                        ),
                        FrameDtype::F32 => data.extend_from_slice(&(v / 100.0).to_le_bytes()),
                    }
                }
            }
        }
    }
    let shape = [t as u64, h as u64, w as u64, c as u64];
    FrameSeq::from_raw(dtype, &shape, data).unwrap()
}

fn read_back(dir: &Path) -> FrameSeq {
    snapstore::load_png_dir(dir).unwrap()
}

#[test]
fn png_sequences_round_trip_exactly_and_within_abs_bounds() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(5);
    for (dtype, c) in [
        (FrameDtype::U8, 3),
        (FrameDtype::U8, 1),
        (FrameDtype::U16, 4),
    ] {
        let seq = moving_frames(&mut rng, 12, 16, 20, c, dtype);
        let src = dir.path().join(format!("src-{dtype}-{c}"));
        snapstore::write_pngs(&seq, &src, 0..seq.t).unwrap();
        for (bound, eps) in [("lossless", 0.0), ("abs:1", 1.0), ("abs:4", 4.0)] {
            let branch = format!("b-{dtype}-{c}-{}", bound.replace(':', ""));
            run_ok(
                &repo,
                &[
                    "commit",
                    src.to_str().unwrap(),
                    "--bound",
                    bound,
                    "--branch",
                    &branch,
                    "--group",
                    "5",
                ],
            );
            let out = dir.path().join(format!("out-{branch}"));
            run_ok(&repo, &["checkout", &branch, "-o", out.to_str().unwrap()]);
            let back = read_back(&out);
            assert_eq!(
                (back.t, back.h, back.w, back.c, back.dtype),
                (seq.t, seq.h, seq.w, seq.c, seq.dtype)
            );
            let w = dtype.size();
            for (a, b) in seq.data.chunks_exact(w).zip(back.data.chunks_exact(w)) {
                let (a, b) = if w == 1 {
                    (a[0] as f64, b[0] as f64)
                } else {
                    (
                        u16::from_le_bytes([a[0], a[1]]) as f64,
                        u16::from_le_bytes([b[0], b[1]]) as f64,
                    )
                };
                assert!((a - b).abs() <= eps, "{branch}: {a} -> {b}");
            }
            // diff against the originals reports every frame within the bound.
            let rows = run_json(&repo, &["diff", &branch, src.to_str().unwrap()]);
            let rows = rows.as_array().unwrap();
            assert_eq!(rows.len(), seq.t);
            assert!(
                rows.iter().all(|r| r["max_abs"].as_f64().unwrap() <= eps),
                "{branch}: {rows:?}"
            );
            // Each row names its frame, with the tensor diff's key names.
            for (i, r) in rows.iter().enumerate() {
                assert_eq!(r["frame"], i, "{r}");
                assert!(r.get("psnr").is_some(), "{r}");
            }
        }
    }
}

#[test]
fn a_frame_range_checks_out_only_those_frames() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(9);
    let seq = moving_frames(&mut rng, 20, 8, 8, 3, FrameDtype::U8);
    let src = dir.path().join("src");
    snapstore::write_pngs(&seq, &src, 0..seq.t).unwrap();
    run_ok(&repo, &["commit", src.to_str().unwrap(), "--group", "6"]);
    let out = dir.path().join("range");
    run_ok(
        &repo,
        &[
            "checkout",
            "HEAD",
            "-o",
            out.to_str().unwrap(),
            "--frames",
            "7..13",
        ],
    );
    let back = read_back(&out);
    assert_eq!(back.t, 6);
    let fb = seq.frame_bytes();
    assert_eq!(back.data, seq.data[7 * fb..13 * fb]);
    let err = run_err(
        &repo,
        &[
            "checkout",
            "HEAD",
            "-o",
            out.to_str().unwrap(),
            "--frames",
            "5..99",
        ],
    );
    assert!(err.contains("outside"), "{err}");
}

#[test]
fn npy_float_sequences_keep_nan_and_meet_abs_bounds() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(3);
    let mut seq = moving_frames(&mut rng, 9, 10, 12, 1, FrameDtype::F32);
    seq.data[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    seq.data[40..44].copy_from_slice(&(-0.0f32).to_le_bytes());
    let src = dir.path().join("field.npy");
    snapstore::write_npy(&seq, &src, 0..seq.t).unwrap();
    for (bound, eps) in [("lossless", 0.0f64), ("abs:0.01", 0.01)] {
        let branch = bound.replace([':', '.'], "");
        run_ok(
            &repo,
            &[
                "commit",
                src.to_str().unwrap(),
                "--bound",
                bound,
                "--branch",
                &branch,
            ],
        );
        let out = dir.path().join(format!("{branch}.npy"));
        run_ok(&repo, &["checkout", &branch, "-o", out.to_str().unwrap()]);
        let back = snapstore::load_npy(&out).unwrap();
        for (a, b) in seq.data.chunks_exact(4).zip(back.data.chunks_exact(4)) {
            let (a, b) = (
                f32::from_le_bytes(a.try_into().unwrap()),
                f32::from_le_bytes(b.try_into().unwrap()),
            );
            if eps == 0.0 || !a.is_finite() {
                assert_eq!(a.to_bits(), b.to_bits(), "{bound}");
            } else {
                assert!(((a - b) as f64).abs() <= eps, "{bound}: {a} -> {b}");
            }
        }
    }
}

#[test]
fn a_directory_with_an_odd_frame_is_refused_naming_it() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(1);
    let src = dir.path().join("mixed");
    let a = moving_frames(&mut rng, 3, 8, 8, 3, FrameDtype::U8);
    snapstore::write_pngs(&a, &src, 0..3).unwrap();
    let odd = moving_frames(&mut rng, 1, 9, 8, 3, FrameDtype::U8);
    let odd_dir = dir.path().join("odd");
    let written = snapstore::write_pngs(&odd, &odd_dir, 0..1).unwrap();
    std::fs::copy(&written[0], src.join("zz_odd.png")).unwrap();
    let before = repo_state(&repo);
    let err = run_err(&repo, &["commit", src.to_str().unwrap()]);
    assert!(err.contains("zz_odd.png"), "{err}");
    assert_eq!(repo_state(&repo), before);
}

#[test]
fn the_library_commits_a_png_directory_and_an_npy_by_path_as_the_cli_does() {
    use snapstore::{CommitOptions, Input, InputKind, Repo};
    let dir = tempdir();
    let repo = Repo::init(dir.path().join("r")).unwrap();
    let mut rng = Rng::new(11);
    let pngs = moving_frames(&mut rng, 6, 8, 10, 3, FrameDtype::U8);
    let png_dir = dir.path().join("pngs");
    snapstore::write_pngs(&pngs, &png_dir, 0..pngs.t).unwrap();
    let floats = moving_frames(&mut rng, 5, 4, 6, 1, FrameDtype::F32);
    let npy = dir.path().join("frames.npy");
    snapstore::write_npy(&floats, &npy, 0..floats.t).unwrap();
    let opts = CommitOptions::default();
    for (path, want) in [(&png_dir, &pngs), (&npy, &floats)] {
        let input = Input::detect(path, InputKind::Auto).unwrap();
        let same = |seq: &FrameSeq| {
            (seq.dtype, seq.t, seq.h, seq.w, seq.c, &seq.data)
                == (want.dtype, want.t, want.h, want.w, want.c, &want.data)
        };
        assert!(
            matches!(&input, Input::Frames(seq) if same(seq)),
            "{}",
            path.display()
        );
        let report = repo.commit_input(&input, 4, &opts).unwrap();
        let back = repo.checkout_frames(&report.snapshot.hex(), None).unwrap();
        assert!(same(&back), "{}", path.display());
    }
    // Anything else is a checkpoint, unless the caller says it holds frames.
    let file = dir.path().join("model.safetensors");
    assert!(matches!(
        Input::detect(&file, InputKind::Auto).unwrap(),
        Input::Tensors(p) if p == file
    ));
    assert!(matches!(
        Input::detect(&file, InputKind::Frames).unwrap(),
        Input::FramesFile(p) if p == file
    ));
    assert!(matches!(
        Input::detect(&png_dir, InputKind::Tensors).unwrap(),
        Input::Tensors(_)
    ));
}
