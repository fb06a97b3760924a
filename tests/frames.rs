//! Frame sequences through the real binary: PNG directories and .npy arrays committed exactly
//! and within absolute bounds, checked out whole or as a range, and compared frame by frame.

use std::path::Path;

use snapstore::{FrameDtype, FrameError, FrameSeq};

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

/// Frames of a sequence committed without names (a `.npy`) are written under their index in
/// the sequence: `--frames 3..5` gives frame_00003.png and frame_00004.png, holding those.
#[test]
fn a_frame_range_of_an_unnamed_sequence_keeps_its_indices() {
    let (dir, repo) = init_repo();
    let seq = moving_frames(&mut Rng::new(5), 6, 8, 8, 3, FrameDtype::U8);
    let src = dir.path().join("clip.npy");
    snapstore::write_npy(&seq, &src, 0..seq.t).unwrap();
    run_ok(&repo, &["commit", src.to_str().unwrap()]);
    let out = dir.path().join("out");
    let to = out.to_str().unwrap();
    run_ok(&repo, &["checkout", "HEAD", "-o", to, "--frames", "3..5"]);
    assert_eq!(sorted_names(&out), ["frame_00003.png", "frame_00004.png"]);
    let back = read_back(&out);
    assert_eq!(back.data, seq.frames(3..5).unwrap());
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

/// A directory holding safetensors files and more PNGs is frames with a stray checkpoint or a
/// checkpoint with sample images: refused until `--kind` says which, nothing stored. Fewer PNGs
/// than shards is a checkpoint with its samples; `--group` applies to frames only.
#[test]
fn safetensors_beside_more_pngs_wait_for_kind_and_group_is_for_frames() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(3);
    let src = dir.path().join("frames");
    let seq = moving_frames(&mut rng, 3, 8, 8, 3, FrameDtype::U8);
    snapstore::write_pngs(&seq, &src, 0..3).unwrap();
    let st = trajectory(4, 1, &[("w", &[8, 8]), ("v", &[4])]);
    let (w, v) = (&st[0][..1], &st[0][1..]);
    write_safetensors(&src.join("model.safetensors"), w, None);
    let before = repo_state(&repo);
    let err = run_err(&repo, &["commit", src.to_str().unwrap()]);
    let want = "1 *.safetensors file(s) and 3 PNG frames: --kind tensors";
    assert!(
        err.contains(src.to_str().unwrap()) && err.contains(want),
        "{err}"
    );
    assert_eq!(repo_state(&repo), before);
    let frames = run_json(
        &repo,
        &["commit", src.to_str().unwrap(), "--kind", "frames"],
    );
    assert_eq!(frames["tensors"], 1, "{frames}");
    assert!(run_ok(&repo, &["show", "HEAD"]).contains("frames"));
    let ckpt = run_json(
        &repo,
        &["commit", src.to_str().unwrap(), "--kind", "tensors"],
    );
    assert_eq!(ckpt["left_out"].as_array().unwrap().len(), 3, "{ckpt}");

    // Two shards and a sample image: a checkpoint.
    write_safetensors(&src.join("other.safetensors"), v, None);
    for f in ["frame_00001.png", "frame_00002.png"] {
        std::fs::remove_file(src.join(f)).unwrap();
    }
    let r = run_json(&repo, &["commit", src.to_str().unwrap()]);
    assert_eq!(r["left_out"], serde_json::json!(["frame_00000.png"]), "{r}");
    let err = run_err(&repo, &["commit", src.to_str().unwrap(), "--group", "5"]);
    assert!(
        err.contains("frames per group apply to a frame sequence"),
        "{err}"
    );
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
        let report = repo.commit_input(&input, Some(4), &opts).unwrap();
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
    // A directory without a safetensors file is no checkpoint, whatever the caller says.
    let err = Input::detect(&png_dir, InputKind::Tensors).unwrap_err();
    assert!(
        err.to_string()
            .contains("a directory holding no *.safetensors file, and --kind tensors"),
        "{err}"
    );
}

/// Writes `seq` as a .npy at `path` and returns the path as a string.
fn npy_at(seq: &FrameSeq, path: &Path) -> String {
    snapstore::write_npy(seq, path, 0..seq.t).unwrap();
    path.to_str().unwrap().to_string()
}

/// Audit finding 2: under `rel:` +0.0 came back -0.0 where the prediction was -0.0.
#[test]
fn a_relative_bound_keeps_the_sign_of_zeros() {
    let (dir, repo) = init_repo();
    let mut vals = [-0.0f32; 12];
    vals[5] = 0.0;
    vals[10] = 0.0;
    let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let seq = FrameSeq::from_raw(FrameDtype::F32, &[1, 3, 4], data).unwrap();
    let src = npy_at(&seq, &dir.path().join("pz.npy"));
    run_ok(&repo, &["commit", &src, "--bound", "rel:0.01"]);
    let out = dir.path().join("out.npy");
    run_ok(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
}

/// Audit finding 9: a relative bound on integer frames read as corruption ("cannot decode chunk
/// 0"), and a branch whose bound is relative refused every plain commit of U8 frames that way.
#[test]
fn a_relative_bound_on_integer_frames_is_refused_up_front() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(4);
    let u8s = moving_frames(&mut rng, 3, 4, 5, 1, FrameDtype::U8);
    let src = npy_at(&u8s, &dir.path().join("u8.npy"));
    let before = repo_state(&repo);
    let err = run_err(&repo, &["commit", &src, "--bound", "rel:0.01"]);
    assert!(
        err.contains(&format!(
            "{src}: U8 frames cannot take a relative bound (rel:0.01): rel needs F32 frames; \
             use --bound abs:E (E in U8 steps) or --bound lossless"
        )),
        "{err}"
    );
    assert!(!err.contains("decode"), "{err}");
    let pngs = dir.path().join("pngs");
    let u16s = moving_frames(&mut rng, 3, 4, 5, 3, FrameDtype::U16);
    snapstore::write_pngs(&u16s, &pngs, 0..3).unwrap();
    run_ok(&repo, &["config", "bound", "rel:0.01"]);
    let err = run_err(&repo, &["commit", pngs.to_str().unwrap()]);
    assert!(
        err.contains(&format!(
            "{}: U16 frames cannot take branch main's bound rel:0.01 (config bound.main; rel \
             needs F32 frames): commit them with --bound lossless or --bound abs:E",
            pngs.display()
        )),
        "{err}"
    );
    // The data of the failed commits is nowhere; an explicit bound commits anyway.
    run_ok(&repo, &["config", "bound", "lossless"]);
    assert_eq!(repo_state(&repo), before);
    run_ok(&repo, &["config", "bound", "rel:0.01"]);
    run_ok(
        &repo,
        &["commit", pngs.to_str().unwrap(), "--bound", "lossless"],
    );
    run_ok(&repo, &["commit", &src, "--bound", "abs:1"]);
}

#[test]
fn an_empty_frame_range_says_so() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(2);
    let seq = moving_frames(&mut rng, 4, 4, 5, 3, FrameDtype::U8);
    run_ok(&repo, &["commit", &npy_at(&seq, &dir.path().join("s.npy"))]);
    let out = dir.path().join("out");
    for range in ["2..2", "..0", "4.."] {
        let err = run_err(
            &repo,
            &[
                "checkout",
                "HEAD",
                "-o",
                out.to_str().unwrap(),
                "--frames",
                range,
            ],
        );
        assert!(err.contains("is an empty range"), "{range}: {err}");
    }
    assert!(!out.exists());
}

/// Audit finding 11: PNG frames were read in byte order (frame_10 before frame_2).
#[test]
fn png_frames_are_committed_in_natural_name_order() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(8);
    let mut seq = moving_frames(&mut rng, 12, 2, 2, 1, FrameDtype::U8);
    seq.names = (0..12).map(|i| format!("frame_{i}.png")).collect();
    let src = dir.path().join("order");
    snapstore::write_pngs(&seq, &src, 0..12).unwrap();
    run_ok(&repo, &["commit", src.to_str().unwrap()]);
    let out = dir.path().join("all.npy");
    run_ok(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
    assert_eq!(snapstore::load_npy(&out).unwrap().data, seq.data);
    let part = dir.path().join("part");
    run_ok(
        &repo,
        &[
            "checkout",
            "HEAD",
            "-o",
            part.to_str().unwrap(),
            "--frames",
            "2..4",
        ],
    );
    assert_eq!(read_back(&part).names, ["frame_2.png", "frame_3.png"]);
}

/// Audit finding 11: a `[T,H,W,1]` array came back as `[T,H,W]`; `-o NAME.NPY` wrote PNGs.
#[test]
fn a_one_channel_axis_and_an_upper_case_npy_name_are_kept() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(6);
    let seq = moving_frames(&mut rng, 2, 3, 4, 1, FrameDtype::U8);
    assert_eq!(seq.shape(), [2, 3, 4, 1]);
    let src = npy_at(&seq, &dir.path().join("c1.npy"));
    run_ok(&repo, &["commit", &src]);
    let out = dir.path().join("UP.NPY");
    run_ok(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
    assert!(out.is_file(), "-o UP.NPY must write a file, not PNGs");
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    let shown = run_json(&repo, &["show", "HEAD"]);
    assert_eq!(
        shown["manifest"]["tensors"][0]["shape"],
        serde_json::json!([2, 3, 4, 1])
    );
}

/// Audit finding 11: a FIFO named `*.png` blocked the commit for ever.
#[cfg(unix)]
#[test]
fn a_fifo_among_png_frames_is_refused_naming_it() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(3);
    let seq = moving_frames(&mut rng, 1, 2, 2, 3, FrameDtype::U8);
    let src = dir.path().join("fifo");
    snapstore::write_pngs(&seq, &src, 0..1).unwrap();
    let fifo = src.join("frame_00001.png");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let before = repo_state(&repo);
    let err = run_err(&repo, &["commit", src.to_str().unwrap()]);
    assert!(
        err.contains(&format!(
            "{}: a FIFO, not a PNG file: a frame must be a regular file",
            fifo.display()
        )),
        "{err}"
    );
    assert_eq!(repo_state(&repo), before);
}

/// Audit finding 11: a checkpoint whose own metadata says `snapstore.kind=frames` was taken for
/// a frame sequence, and `-o x.npy` of a checkpoint wrote safetensors bytes under that name.
#[test]
fn a_checkpoint_marked_as_frames_in_its_metadata_stays_a_checkpoint() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(12);
    let marked = metadata(&[("snapstore.kind", "frames")]);
    let two = [
        Tensor::f32(&mut rng, "a", &[4, 4], 1.0),
        Tensor::random(&mut rng, "frames", snapstore::Dtype::U8, &[2, 3, 4]),
    ];
    let one = [two[1].clone()];
    for (name, tensors) in [("two", &two[..]), ("one", &one[..])] {
        let file = dir.path().join(format!("{name}.safetensors"));
        let bytes = write_safetensors(&file, tensors, Some(&marked));
        run_ok(&repo, &["commit", file.to_str().unwrap(), "--branch", name]);
        let npy = dir.path().join(format!("{name}.npy"));
        let err = run_err(&repo, &["checkout", name, "-o", npy.to_str().unwrap()]);
        let id = &head_of(&repo, name)[..12];
        assert!(
            err.contains(&format!(
                "{}: a .npy output takes a frame sequence, and snapshot {id} holds tensors ({} of \
                 them), not one: write it with -o NAME.safetensors",
                npy.display(),
                tensors.len()
            )),
            "{err}"
        );
        assert!(!npy.exists());
        // Any other name is the checkpoint as safetensors, not a directory of PNGs.
        let out = dir.path().join(format!("{name}.out"));
        run_ok(&repo, &["checkout", name, "-o", out.to_str().unwrap()]);
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
    }
    // The same file committed as frames next is a frame sequence (its tensor is coded as
    // frames, not taken over from the checkpoint).
    let file = dir.path().join("one.safetensors");
    run_ok(
        &repo,
        &[
            "commit",
            file.to_str().unwrap(),
            "--kind",
            "frames",
            "--branch",
            "one",
        ],
    );
    let npy = dir.path().join("frames.npy");
    run_ok(&repo, &["checkout", "one", "-o", npy.to_str().unwrap()]);
    assert_eq!(snapstore::load_npy(&npy).unwrap().data, one[0].data);
}

fn head_of(repo: &Path, branch: &str) -> String {
    run_json(repo, &["show", branch])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Audit finding 11: a group the frame coder stores larger than its bytes (noise, one pixel) is
/// stored exactly as byte planes instead, and reads back byte for byte.
#[test]
fn noise_frames_store_no_larger_than_raw() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(21);
    for (name, dtype, shape) in [
        ("noise", FrameDtype::U16, [3u64, 6, 4, 3]),
        ("pixel", FrameDtype::U8, [1, 1, 1, 1]),
        ("floats", FrameDtype::F32, [2, 5, 5, 1]),
    ] {
        let n = shape.iter().product::<u64>() as usize * dtype.size();
        let seq = FrameSeq::from_raw(dtype, &shape, rng.bytes(n)).unwrap();
        let src = npy_at(&seq, &dir.path().join(format!("{name}.npy")));
        let r = run_json(&repo, &["commit", &src, "--branch", name]);
        let stored = r["stored_bytes"].as_u64().unwrap();
        // A chunk header of a few bytes on top of the raw bytes, not the coder's overhead
        // (432 bytes of U16 noise stored 547, one pixel 65).
        assert!(stored <= n as u64 + 24, "{name}: {stored} stored for {n}");
        let out = dir.path().join(format!("{name}-out.npy"));
        run_ok(&repo, &["checkout", name, "-o", out.to_str().unwrap()]);
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    }
    assert_fsck_clean(&repo);
}

/// A `.npy` is a frame sequence in any case of its extension (`X.NPY`); one PNG file is refused
/// as such, naming it (it was read as a safetensors header of a nonsense size).
#[test]
fn an_upper_case_npy_is_frames_and_one_png_is_refused_by_name() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(5);
    let seq = FrameSeq::from_raw(FrameDtype::U8, &[2, 3, 4], rng.bytes(24)).unwrap();
    let lower = npy_at(&seq, &dir.path().join("a.npy"));
    let upper = dir.path().join("A.NPY");
    std::fs::copy(&lower, &upper).unwrap();
    let r = run_json(&repo, &["commit", upper.to_str().unwrap()]);
    assert_eq!(r["tensors"], 1, "{r}");
    let out = dir.path().join("back.npy");
    run_ok(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&lower).unwrap());
    let png = dir.path().join("frame_0001.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n").unwrap();
    let err = run_err(&repo, &["commit", png.to_str().unwrap()]);
    assert!(
        err.contains("frame_0001.png: not a PNG frame: a single PNG is not a frame sequence"),
        "{err}"
    );
}

/// Audit finding frames-6: committing a sequence again as it grows stored its first groups
/// again in every pack. A group the repository already holds is not stored again: the longer
/// sequence stores only its new groups (what a fresh commit of it stores, less the shorter
/// one's), `log` says the same, and a gc after the first snapshot's branch is deleted keeps
/// what the second reuses.
#[test]
fn a_growing_sequence_stores_only_its_new_groups() {
    let dir = tempdir();
    let mut rng = Rng::new(17);
    let full = moving_frames(&mut rng, 16, 12, 10, 3, FrameDtype::U8);
    let first = |t: usize| {
        let data = full.data[..full.data.len() / 16 * t].to_vec();
        FrameSeq::from_raw(FrameDtype::U8, &[t as u64, 12, 10, 3], data).unwrap()
    };
    for bound in ["lossless", "abs:2"] {
        let label = bound.replace(':', "");
        let commit = |repo: &Path, seq: &FrameSeq, name: &str, branch: &str| {
            let src = npy_at(seq, &dir.path().join(format!("{label}-{name}.npy")));
            let args = [
                "commit", &src, "--group", "4", "--bound", bound, "--branch", branch,
            ];
            run_json(repo, &args)["stored_bytes"].as_u64().unwrap()
        };
        let fresh_repo = dir.path().join(format!("{label}-fresh"));
        run_ok(&fresh_repo, &["init"]);
        let fresh = commit(&fresh_repo, &full, "16", "main");

        let repo = dir.path().join(format!("{label}-grown"));
        run_ok(&repo, &["init"]);
        let eight = commit(&repo, &first(8), "8", "short");
        let sixteen = commit(&repo, &full, "16", "long");
        assert!(eight > 0 && sixteen > 0, "{bound}: {eight}, {sixteen}");
        assert_eq!(sixteen, fresh - eight, "{bound}: groups 0-1 stored again");
        // Fourteen frames: groups 0-2 held, only the new group of frames 12-13 is stored.
        let fourteen = commit(&repo, &first(14), "14", "mid");
        assert!(
            0 < fourteen && fourteen < eight,
            "{bound}: {fourteen} for one new group"
        );
        let log = run_json(&repo, &["log", "long", "-n", "1"]);
        assert_eq!(log[0]["stored_bytes"].as_u64(), Some(sixteen), "{log}");
        // Frames 0-7 cost the second snapshot nothing, frames 0-11 the third.
        let stats = run_json(&repo, &["stats"]);
        assert_eq!(
            stats["dedup_bytes"].as_u64(),
            Some((8 + 12) * 360),
            "{stats}"
        );

        run_ok(&repo, &["branch", "-d", "short"]);
        run_ok(&repo, &["gc", "--grace", "0"]);
        assert_fsck_clean(&repo);
        for (branch, seq) in [("long", full.clone()), ("mid", first(14))] {
            let out = dir.path().join(format!("{label}-{branch}-out.npy"));
            run_ok(&repo, &["checkout", branch, "-o", out.to_str().unwrap()]);
            let back = snapstore::load_npy(&out).unwrap();
            assert_eq!(back.shape(), seq.shape(), "{bound} {branch}");
            if bound == "lossless" {
                assert_eq!(back.data, seq.data, "{branch}");
            } else {
                let worst = back.data.iter().zip(&seq.data);
                assert!(
                    worst.map(|(a, b)| a.abs_diff(*b)).max() <= Some(2),
                    "{branch}"
                );
            }
        }
    }
}

/// A lossless sequence committed again grown, on its branch, takes the groups whose frames are
/// unchanged from the parent as they are, without coding them (the commit codes only the new
/// frames' bytes, as its progress counts them); it stores only the new groups and checks out
/// exactly. A lossy commit keeps no group sources and codes every group.
#[test]
fn a_grown_lossless_sequence_takes_its_unchanged_groups_uncoded() {
    use std::sync::{Arc, Mutex};
    let dir = tempdir();
    let mut rng = Rng::new(23);
    let full = moving_frames(&mut rng, 16, 12, 10, 3, FrameDtype::U8);
    let frame = 12 * 10 * 3;
    let first = |t: usize| {
        FrameSeq::from_raw(
            FrameDtype::U8,
            &[t as u64, 12, 10, 3],
            full.data[..t * frame].to_vec(),
        )
        .unwrap()
    };
    let coded = Arc::new(Mutex::new(0u64));
    let seen = coded.clone();
    let repo = snapstore::Repo::init(dir.path().join("repo"))
        .unwrap()
        .with_progress(move |p| {
            if p.task == "commit" {
                *seen.lock().unwrap() = p.total;
            }
        });
    let lossless = snapstore::CommitOptions::default();
    let short = repo.commit_frames(&first(8), Some(4), &lossless).unwrap();
    assert_eq!(*coded.lock().unwrap(), 8 * frame as u64);
    let grown = repo.commit_frames(&full, Some(4), &lossless).unwrap();
    assert_eq!(
        *coded.lock().unwrap(),
        8 * frame as u64,
        "unchanged groups were coded"
    );
    let fresh = snapstore::Repo::init(dir.path().join("fresh")).unwrap();
    let whole = fresh.commit_frames(&full, Some(4), &lossless).unwrap();
    assert_eq!(grown.stored_bytes, whole.stored_bytes - short.stored_bytes);
    let (_, m) = repo.show("HEAD").unwrap();
    let (_, parent) = repo.show("HEAD~1").unwrap();
    let (e, p) = (&m.tensors[0], &parent.tensors[0]);
    assert_eq!(e.chunk_sources.len(), 4);
    assert_eq!(e.chunk_sources[..2], p.chunk_sources[..]);
    assert_eq!(
        e.chunks[..2].iter().map(|c| c.id).collect::<Vec<_>>(),
        p.chunks.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    assert!(e.chunks[0].earlier && !e.chunks[2].earlier);
    assert_eq!(repo.checkout_frames("HEAD", None).unwrap().data, full.data);

    // Fourteen frames: groups 0-2 unchanged, frames 12-13 coded.
    repo.commit_frames(&first(14), Some(4), &lossless).unwrap();
    assert_eq!(*coded.lock().unwrap(), 2 * frame as u64);
    assert_eq!(
        repo.checkout_frames("HEAD", None).unwrap().data,
        first(14).data
    );

    // Under a bound no sources are kept, and every group is coded.
    let bounded = snapstore::CommitOptions {
        bound: Some(snapstore::Bound::Abs(1.0)),
        ..Default::default()
    };
    repo.commit_frames(&full, Some(4), &bounded).unwrap();
    assert_eq!(*coded.lock().unwrap(), 16 * frame as u64);
    assert!(repo.show("HEAD").unwrap().1.tensors[0]
        .chunk_sources
        .is_empty());
    assert!(repo.fsck(false).unwrap().is_clean());
}

/// A sequence committed again unchanged (a re-run, or under a bound over a lossless parent)
/// reuses its parent's groups and is still a frame sequence: before, its entry was recorded as
/// a plain dedup, and frame checkout, `--frames` and `diff` refused the new snapshot.
#[test]
fn a_sequence_committed_again_unchanged_stays_a_frame_sequence() {
    let dir = tempdir();
    let mut rng = Rng::new(29);
    let seq = moving_frames(&mut rng, 9, 12, 10, 3, FrameDtype::U8);
    let repo = snapstore::Repo::init(dir.path().join("repo")).unwrap();
    let lossless = snapstore::CommitOptions::default();
    let bounded = snapstore::CommitOptions {
        bound: Some(snapstore::Bound::Abs(2.0)),
        ..Default::default()
    };
    let first = repo.commit_frames(&seq, Some(4), &lossless).unwrap();
    for opts in [&lossless, &bounded, &lossless] {
        let again = repo.commit_frames(&seq, Some(4), opts).unwrap();
        assert_eq!((again.deduplicated, again.stored_bytes), (1, 0));
        let back = repo.checkout_frames("HEAD", Some(3..7)).unwrap();
        assert_eq!(back.data, seq.data[3 * 360..7 * 360]);
    }
    let stats = repo.stats().unwrap();
    assert_eq!(stats.stored_bytes, first.stored_bytes);
    assert_eq!(stats.dedup_bytes, 3 * seq.data.len() as u64);
    assert!(repo.fsck(false).unwrap().is_clean());
}

/// Frames written into a directory that holds other PNGs (an earlier checkout of a longer
/// sequence) are refused before anything is written: the directory read back would mix two
/// sequences (before, 15 stale frames stayed beside 45 new ones).
#[test]
fn frames_are_not_written_beside_other_pngs() {
    let dir = tempdir();
    let mut rng = Rng::new(31);
    let long = moving_frames(&mut rng, 6, 8, 8, 1, FrameDtype::U8);
    let short =
        FrameSeq::from_raw(FrameDtype::U8, &[4, 8, 8, 1], long.data[..4 * 64].to_vec()).unwrap();
    let out = dir.path().join("out");
    snapstore::write_pngs(&long, &out, 0..6).unwrap();
    std::fs::write(out.join("notes.txt"), b"kept").unwrap();
    let err = snapstore::write_pngs(&short, &out, 0..4).unwrap_err();
    assert!(
        matches!(&err, FrameError::StaleFrames { count: 2, example, .. } if example == "frame_00004.png"),
        "{err}"
    );
    // Nothing was written: the long sequence reads back whole.
    assert_eq!(snapstore::load_png_dir(&out).unwrap().data, long.data);
    // Writing the same frames again, or into a directory of other files, is fine.
    snapstore::write_pngs(&long, &out, 0..6).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), b"kept").unwrap();
    snapstore::write_pngs(&short, &out, 0..4).unwrap();
    assert_eq!(snapstore::load_png_dir(&out).unwrap().data, short.data);
}

/// A frame alone over the group limit (2^28 elements) is refused before anything is coded,
/// whether or not a group was asked for (with none, it was refused only by the coder, as a
/// chunk that could not be decoded).
#[test]
fn a_frame_over_the_group_limit_is_refused_before_coding() {
    let dir = tempdir();
    let repo = snapstore::Repo::init(dir.path().join("repo")).unwrap();
    let side = 16_385u64; // 16385^2 > 2^28
    let seq = FrameSeq::from_raw(
        FrameDtype::U8,
        &[1, side, side],
        vec![0u8; (side * side) as usize],
    )
    .unwrap();
    for group in [None, Some(1)] {
        let err = repo
            .commit_frames(&seq, group, &snapstore::CommitOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("one frame alone has 268468225 elements"),
            "{group:?}: {err}"
        );
    }
    assert!(repo.log(None, None).unwrap_or_default().is_empty());
}

/// `--tensor` on a frame sequence is refused, not ignored (every frame was written, whatever
/// the name), and a directory committed with `--kind tensors` is named as one (the reader's
/// mmap said "No such device").
#[test]
fn frame_options_that_cannot_apply_are_refused_by_name() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(12);
    let seq = moving_frames(&mut rng, 4, 8, 8, 1, FrameDtype::U8);
    let src = dir.path().join("src");
    snapstore::write_pngs(&seq, &src, 0..seq.t).unwrap();
    let src = src.to_str().unwrap();
    let err = run_err(&repo, &["commit", src, "--kind", "tensors"]);
    assert!(
        err.contains("a directory holding no *.safetensors file, and --kind tensors takes"),
        "{err}"
    );
    run_ok(&repo, &["commit", src]);
    let out = dir.path().join("out.npy");
    let out = out.to_str().unwrap();
    let err = run_err(&repo, &["checkout", "HEAD", "-o", out, "--tensor", "nope"]);
    assert!(
        err.contains("--tensor nope: snapshot") && err.contains("is a frame sequence"),
        "{err}"
    );
    run_ok(
        &repo,
        &["checkout", "HEAD", "-o", out, "--tensor", "frames"],
    );
}

/// Audit F2: `diff --exit-code` looked only at tensor rows, so a frame sequence whose frames
/// differ exited 0; and an error (frames of another shape) exited 1 like "differs". Now
/// differs = 1, same = 0, error = 2, for a `.npy` and a PNG directory alike.
#[test]
fn diff_exit_code_says_whether_frames_differ_and_errors_exit_2() {
    let (dir, repo) = init_repo();
    let seq = moving_frames(&mut Rng::new(31), 6, 5, 7, 3, FrameDtype::U8);
    let same = npy_at(&seq, &dir.path().join("a.npy"));
    run_ok(&repo, &["commit", &same]);
    let mut data = seq.data.clone();
    let frame = data.len() / seq.t;
    data[4 * frame + 3] ^= 0x80; // one element of frame 4
    let edited = FrameSeq::from_raw(FrameDtype::U8, &[6, 5, 7, 3], data).unwrap();
    let changed = npy_at(&edited, &dir.path().join("b.npy"));
    let pngs = dir.path().join("b");
    snapstore::write_pngs(&edited, &pngs, 0..edited.t).unwrap();
    let first4 = seq.frames(0..4).unwrap().to_vec();
    let shorter = FrameSeq::from_raw(FrameDtype::U8, &[4, 5, 7, 3], first4).unwrap();
    let shorter = npy_at(&shorter, &dir.path().join("c.npy"));
    let code = |b: &str, extra: &[&str]| {
        let mut args = vec!["diff", "HEAD", b];
        args.extend_from_slice(extra);
        let out = run(&repo, &args);
        (out.status.code(), stderr(&out))
    };
    assert_eq!(code(&same, &["--exit-code"]).0, Some(0));
    assert_eq!(code(&changed, &["--exit-code"]).0, Some(1));
    assert_eq!(code(pngs.to_str().unwrap(), &["--exit-code"]).0, Some(1));
    assert_eq!(code(&changed, &["--exit-code", "--json"]).0, Some(1));
    let (status, err) = code(&shorter, &["--exit-code"]);
    assert_eq!(status, Some(2), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("4x5x7x3"),
        "{err}"
    );
    // Without --exit-code, a difference is no failure and an error exits 1 as everywhere.
    assert_eq!(code(&changed, &[]).0, Some(0));
    assert_eq!(code(&shorter, &[]).0, Some(1));
}

/// Audit F5: PNG frames whose names are not UTF-8 were committed (names kept lossily, so a PNG
/// checkout renamed or refused them); they are refused at commit, naming the file, as a
/// checkpoint directory's shards are, and nothing is stored.
#[cfg(unix)]
#[test]
fn png_frames_with_names_that_are_not_utf8_are_refused_naming_them() {
    use std::os::unix::ffi::OsStrExt;
    let (dir, repo) = init_repo();
    let seq = moving_frames(&mut Rng::new(32), 3, 4, 4, 1, FrameDtype::U8);
    let src = dir.path().join("src");
    let written = snapstore::write_pngs(&seq, &src, 0..seq.t).unwrap();
    let odd = src.join(std::ffi::OsStr::from_bytes(b"f_\xfe.png"));
    std::fs::rename(&written[1], &odd).unwrap();
    let err = run_err(&repo, &["commit", src.to_str().unwrap()]);
    assert!(
        err.contains(r"f_\xFE.png") && err.contains("must be UTF-8"),
        "{err}"
    );
    let log = run_json(&repo, &["stats"]);
    assert_eq!(log["snapshots"], 0, "{log:#}");
    assert_eq!(log["stored_bytes"], 0, "{log:#}");
}

/// Audit F6: 5000 frames of 2x3 U8 in the default groups of 30 stored 31,978 bytes for 30,000,
/// each group paying its own framing; a default group now holds at least 2^16 elements.
#[test]
fn tiny_frames_in_default_groups_store_under_their_raw_bytes() {
    let (dir, repo) = init_repo();
    let seq = moving_frames(&mut Rng::new(33), 5000, 2, 3, 1, FrameDtype::U8);
    let src = npy_at(&seq, &dir.path().join("tiny.npy"));
    let r = run_json(&repo, &["commit", &src]);
    let (raw, stored) = (r["logical_bytes"].as_u64(), r["stored_bytes"].as_u64());
    assert_eq!(raw, Some(30_000), "{r:#}");
    assert!(stored.unwrap() < 30_000, "{r:#}");
    let shown = run_json(&repo, &["show", "HEAD"]);
    let chunks = shown["manifest"]["tensors"][0]["chunks"]
        .as_array()
        .unwrap();
    assert_eq!(chunks.len(), 1, "one group of 5000 frames");
    let out = dir.path().join("out.npy");
    run_ok(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
}

/// Audit F4: `checkout --help` said a .safetensors output "takes the whole sequence" with
/// --frames, which is refused.
#[test]
fn checkout_help_says_frames_refuses_a_safetensors_output() {
    let (_dir, repo) = init_repo();
    let checkout = run_ok(&repo, &["checkout", "--help"]);
    let frames = &checkout[checkout.find("--frames <A..B>").unwrap()..];
    assert!(
        frames.contains("Refused with a .safetensors output"),
        "{checkout}"
    );
}

/// Audit F7: the F32 PSNR peak (max - min of the whole sequence) was told only in a source
/// comment.
#[test]
fn diff_help_says_where_the_psnr_peak_comes_from() {
    let (_dir, repo) = init_repo();
    let diff = run_ok(&repo, &["diff", "--help"]);
    assert!(
        diff.contains("max - min of the finite values of the whole"),
        "{diff}"
    );
}
