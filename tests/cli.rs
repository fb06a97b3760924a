//! The real binary end to end: commit, checkout by every kind of ref, JSON outputs, dedup and
//! concurrent commits.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use snapstore::Dtype;

use crate::util::*;

/// The next "epoch" of a checkpoint: about one byte in eight of every tensor changes.
fn evolve(rng: &mut Rng, tensors: &[Tensor]) -> Vec<Tensor> {
    tensors
        .iter()
        .map(|t| {
            let mut t = t.clone();
            let n = t.data.len();
            for _ in 0..(n / 8).max(1) {
                let i = rng.below(n as u64) as usize;
                t.data[i] = if t.dtype == Dtype::Bool {
                    t.data[i] ^ 1
                } else {
                    rng.next_u64() as u8
                };
            }
            t
        })
        .collect()
}

/// Five checkpoints holding every dtype, each with a `__metadata__` map, written to `dir`.
fn five_every_dtype_checkpoints(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut rng = Rng::new(1);
    let mut tensors = every_dtype_tensors(&mut rng);
    let mut out = Vec::new();
    for epoch in 0..5 {
        if epoch > 0 {
            tensors = evolve(&mut rng, &tensors);
        }
        let path = dir.join(format!("epoch_{epoch}.safetensors"));
        let meta = metadata(&[("format", "pt"), ("epoch", &epoch.to_string())]);
        let bytes = write_safetensors(&path, &tensors, Some(&meta));
        out.push((path, bytes));
    }
    out
}

fn commit_json(repo: &Path, file: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["commit", file.to_str().unwrap()];
    all.extend_from_slice(args);
    run_json(repo, &all)
}

#[track_caller]
fn assert_checkout_equals(repo: &Path, spec: &str, out: &Path, expected: &[u8]) {
    run_ok(repo, &["checkout", spec, "-o", out.to_str().unwrap()]);
    let got = std::fs::read(out).unwrap();
    assert!(
        got == expected,
        "checkout {spec} differs from the committed file ({} vs {} bytes)",
        got.len(),
        expected.len()
    );
}

#[test]
fn every_dtype_round_trips_byte_identical_through_every_ref_kind() {
    let (dir, repo) = init_repo();
    let files = five_every_dtype_checkpoints(dir.path());
    let mut ids = Vec::new();
    for (epoch, (path, _)) in files.iter().enumerate() {
        let r = commit_json(
            &repo,
            path,
            &[
                "-m",
                &format!("epoch {epoch}"),
                "--meta",
                &format!("epoch={epoch}"),
            ],
        );
        ids.push(r["snapshot"].as_str().unwrap().to_string());
    }
    run_ok(&repo, &["tag", "v2", "HEAD~2"]);

    let out = dir.path().join("out.safetensors");
    assert_checkout_equals(&repo, "HEAD", &out, &files[4].1);
    assert_checkout_equals(&repo, "HEAD~1", &out, &files[3].1);
    assert_checkout_equals(&repo, "v2", &out, &files[2].1);
    assert_checkout_equals(&repo, "main~3", &out, &files[1].1);
    assert_checkout_equals(&repo, &ids[0][..10], &out, &files[0].1);
    assert_checkout_equals(&repo, &ids[3].to_uppercase(), &out, &files[3].1);

    // The log lists the five snapshots newest first with their messages and meta.
    let log = run_json(&repo, &["log"]);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 5);
    for (i, entry) in log.iter().enumerate() {
        let epoch = 4 - i;
        assert_eq!(entry["id"], ids[epoch].as_str());
        assert_eq!(entry["message"], format!("epoch {epoch}"));
        assert_eq!(entry["meta"]["epoch"], epoch.to_string());
    }
}

#[test]
fn checkout_of_one_tensor_writes_a_valid_file_with_only_that_tensor() {
    let (dir, repo) = init_repo();
    let files = five_every_dtype_checkpoints(dir.path());
    for (path, _) in &files[..2] {
        run_ok(&repo, &["commit", path.to_str().unwrap()]);
    }
    let (committed, meta) = parse_safetensors(&files[1].1);
    let out = dir.path().join("one.safetensors");
    for name in ["t11.F32", "t19.F4", "t21.F6_E3M2", "scalar.step"] {
        run_ok(
            &repo,
            &[
                "checkout",
                "HEAD",
                "-o",
                out.to_str().unwrap(),
                "--tensor",
                name,
            ],
        );
        let (got, got_meta) = parse_safetensors(&std::fs::read(&out).unwrap());
        let want: Vec<Tensor> = committed
            .iter()
            .filter(|t| t.name == name)
            .cloned()
            .collect();
        assert_eq!(want.len(), 1, "test data lacks {name}");
        assert_eq!(got, want, "--tensor {name}");
        assert_eq!(got_meta, meta, "--tensor {name} keeps __metadata__");
    }

    // Two tensors at once, from an older snapshot.
    let (older, _) = parse_safetensors(&files[0].1);
    run_ok(
        &repo,
        &[
            "checkout",
            "HEAD~1",
            "-o",
            out.to_str().unwrap(),
            "--tensor",
            "t00.BOOL",
            "--tensor",
            "t12.F64",
        ],
    );
    let (got, _) = parse_safetensors(&std::fs::read(&out).unwrap());
    let want: Vec<Tensor> = older
        .into_iter()
        .filter(|t| t.name == "t00.BOOL" || t.name == "t12.F64")
        .collect();
    assert_eq!(got, want);

    let err = run_err(
        &repo,
        &[
            "checkout",
            "HEAD",
            "-o",
            out.to_str().unwrap(),
            "--tensor",
            "nope",
        ],
    );
    assert!(err.contains("\"nope\""), "{err}");
}

#[test]
fn json_outputs_have_the_documented_keys() {
    let (dir, repo) = init_repo();
    let files = five_every_dtype_checkpoints(dir.path());
    let logical: u64 = parse_safetensors(&files[0].1)
        .0
        .iter()
        .map(|t| t.data.len() as u64)
        .sum();

    let first = commit_json(&repo, &files[0].0, &[]);
    let second = commit_json(&repo, &files[1].0, &["--branch", "main"]);
    for c in [&first, &second] {
        for key in [
            "snapshot",
            "parent",
            "branch",
            "tensors",
            "logical_bytes",
            "stored_bytes",
        ] {
            assert!(c.get(key).is_some(), "commit --json lacks {key}: {c:#}");
        }
        assert_eq!(c["branch"], "main");
        assert_eq!(c["tensors"], snapstore::ALL_DTYPES.len() + 1);
        assert_eq!(c["logical_bytes"], logical);
        assert!(c["stored_bytes"].as_u64().unwrap() > 0);
        let id = c["snapshot"].as_str().unwrap();
        assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert!(first["parent"].is_null());
    assert_eq!(second["parent"], first["snapshot"]);

    let out = dir.path().join("o.safetensors");
    let co = run_json(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
    assert_eq!(co["snapshot"], second["snapshot"]);
    assert_eq!(co["bytes"], logical);

    let stats = run_json(&repo, &["stats"]);
    for key in ["logical_bytes", "stored_bytes", "ratio", "dedup_bytes"] {
        assert!(
            stats.get(key).is_some(),
            "stats --json lacks {key}: {stats:#}"
        );
    }
    assert_eq!(stats["logical_bytes"], 2 * logical);
    assert!(stats["ratio"].as_f64().unwrap() > 0.0);

    let fsck = run_json(&repo, &["fsck"]);
    assert_eq!(fsck["clean"], true);
    assert!(fsck["report"].is_object(), "{fsck:#}");
    assert_eq!(fsck["report"]["snapshots"], 2);
    assert_eq!(fsck["report"]["problems"].as_array().unwrap().len(), 0);

    let show = run_json(&repo, &["show", "HEAD"]);
    assert_eq!(show["id"], second["snapshot"]);
    assert_eq!(
        show["manifest"]["tensors"].as_array().unwrap().len(),
        snapstore::ALL_DTYPES.len() + 1
    );
}

#[test]
fn committing_the_same_file_twice_stores_almost_nothing() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(7);
    let tensors = vec![
        Tensor::f32(&mut rng, "a.weight", &[256, 256], 1.0),
        Tensor::f32(&mut rng, "a.bias", &[256], 1.0),
        Tensor::random(&mut rng, "emb", Dtype::BF16, &[128, 64]),
    ];
    let path = dir.path().join("ckpt.safetensors");
    write_safetensors(&path, &tensors, None);
    run_ok(&repo, &["commit", path.to_str().unwrap(), "-m", "one"]);
    let before = run_json(&repo, &["stats"])["stored_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        before > 128 * 1024,
        "random weights barely compress: {before}"
    );
    let second = commit_json(&repo, &path, &["-m", "two"]);
    let after = run_json(&repo, &["stats"]);
    let grew = after["stored_bytes"].as_u64().unwrap() - before;
    assert!(
        grew < 4096,
        "second commit of the same file stored {grew} bytes"
    );
    assert_eq!(second["stored_bytes"], 0);
    let logical: u64 = tensors.iter().map(|t| t.data.len() as u64).sum();
    assert_eq!(after["dedup_bytes"], logical);
    let show = run_json(&repo, &["show", "HEAD"]);
    for t in show["manifest"]["tensors"].as_array().unwrap() {
        assert_eq!(t["encoding"], "dedup", "{t:#}");
    }
}

#[test]
fn frozen_tensor_across_epochs_is_stored_as_dedup() {
    let (dir, repo) = init_repo();
    let steps = trajectory(3, 3, &[("body.weight", &[64, 64]), ("body.bias", &[64])]);
    let mut rng = Rng::new(4);
    let frozen = Tensor::f32(&mut rng, "embed.frozen", &[128, 32], 1.0);
    for (epoch, step) in steps.iter().enumerate() {
        let mut tensors = step.clone();
        tensors.push(frozen.clone());
        let path = dir.path().join(format!("e{epoch}.safetensors"));
        write_safetensors(&path, &tensors, None);
        run_ok(&repo, &["commit", path.to_str().unwrap()]);
    }
    for spec in ["HEAD", "HEAD~1"] {
        let show = run_json(&repo, &["show", spec]);
        let tensors = show["manifest"]["tensors"].as_array().unwrap();
        let enc = |name: &str| {
            tensors.iter().find(|t| t["name"] == name).unwrap()["encoding"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(enc("embed.frozen"), "dedup", "{spec}");
        assert_ne!(
            enc("body.weight"),
            "dedup",
            "{spec}: a trained tensor changed"
        );
    }
    let first = run_json(&repo, &["show", "HEAD~2"]);
    let frozen_first = first["manifest"]["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "embed.frozen")
        .unwrap()
        .clone();
    assert_eq!(frozen_first["encoding"], "planes");
}

#[test]
fn diff_of_snapshot_against_file_and_snapshot() {
    let (dir, repo) = init_repo();
    let steps = trajectory(5, 2, &[("w", &[32, 32]), ("b", &[32])]);
    let mut paths = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let p = dir.path().join(format!("{i}.safetensors"));
        write_safetensors(&p, s, None);
        run_ok(&repo, &["commit", p.to_str().unwrap()]);
        paths.push(p);
    }
    let same = run_json(&repo, &["diff", "HEAD", paths[1].to_str().unwrap()]);
    for row in same.as_array().unwrap() {
        assert_eq!(row["status"], "same", "{row:#}");
    }
    // From the snapshot to the file, as from one snapshot to the next: a tensor only the file
    // holds was added, one only the snapshot holds removed.
    let grown = dir.path().join("grown.safetensors");
    let mut more = steps[1].clone();
    more.retain(|t| t.name != "b");
    more.push(Tensor::f32(&mut Rng::new(9), "extra", &[4], 1.0));
    write_safetensors(&grown, &more, None);
    let rows = run_json(&repo, &["diff", "HEAD", grown.to_str().unwrap()]);
    let status = |name: &str| {
        let rows = rows.as_array().unwrap();
        rows.iter().find(|r| r["name"] == name).unwrap()["status"].clone()
    };
    assert_eq!(status("extra"), "added", "{rows:#}");
    assert_eq!(status("b"), "removed", "{rows:#}");
    assert_eq!(status("w"), "same", "{rows:#}");
    let extra = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "extra")
        .unwrap();
    assert_eq!(extra["elements"], 4, "{extra:#}");
    assert!(
        extra["max_abs"].is_null() && extra["changed_fraction"] == 1.0,
        "{extra:#}"
    );
    let text = run_ok(&repo, &["diff", "HEAD", grown.to_str().unwrap()]);
    let line = text.lines().find(|l| l.starts_with("extra ")).unwrap();
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(columns[1..], ["added", "4", "-", "-", "100.00%"], "{text}");
    // --exit-code: 1 where a tensor differs, 0 where none does.
    let differs = |b: &str| {
        let out = run(&repo, &["diff", "HEAD", b, "--exit-code"]);
        assert!(stdout(&out).contains("status"), "{}", stderr(&out));
        out.status.code()
    };
    assert_eq!(differs(grown.to_str().unwrap()), Some(1));
    assert_eq!(differs(paths[1].to_str().unwrap()), Some(0));
    assert_eq!(differs("HEAD~1"), Some(1));
    let changed = run_json(&repo, &["diff", "HEAD~1", "HEAD"]);
    let rows = changed.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row["status"], "changed", "{row:#}");
        let max_abs = row["max_abs"].as_f64().unwrap();
        assert!(max_abs > 0.0 && max_abs <= 1e-3, "{row:#}");
    }
}

fn concurrent_commits_land_linearly(n: usize) {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(100 + n as u64);
    let base = vec![Tensor::f32(&mut rng, "w", &[512, 512], 1.0)];
    let base_path = dir.path().join("base.safetensors");
    write_safetensors(&base_path, &base, None);
    let base_id = commit_json(&repo, &base_path, &[])["snapshot"]
        .as_str()
        .unwrap()
        .to_string();

    let mut files = Vec::new();
    for i in 0..n {
        let tensors = vec![
            Tensor::f32(&mut rng, "w", &[512, 512], 1.0),
            Tensor::f32(&mut rng, &format!("only{i}"), &[64], 1.0),
        ];
        let p = dir.path().join(format!("c{i}.safetensors"));
        let bytes = write_safetensors(&p, &tensors, None);
        files.push((p, bytes));
    }
    let children: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, (p, _))| {
            command(&repo)
                .args([
                    "commit",
                    p.to_str().unwrap(),
                    "-m",
                    &format!("c{i}"),
                    "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn commit")
        })
        .collect();
    let mut ids = Vec::new();
    let mut reports = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "concurrent commit {i} failed: {}",
            stderr(&o)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        ids.push(v["snapshot"].as_str().unwrap().to_string());
        reports.push(v);
    }

    let log = run_json(&repo, &["log"]);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), n + 1, "{log:#?}");
    assert_eq!(log[n]["id"], base_id.as_str());
    for pair in log.windows(2) {
        assert_eq!(
            pair[0]["parents"],
            serde_json::json!([pair[1]["id"]]),
            "history is not linear"
        );
    }
    // Each commit reports the parent it really got (after any retry on a moved branch).
    for r in &reports {
        let entry = log.iter().find(|e| e["id"] == r["snapshot"]).unwrap();
        assert_eq!(entry["parents"][0], r["parent"], "{r:#}");
    }
    let logged: HashSet<&str> = log[..n].iter().map(|e| e["id"].as_str().unwrap()).collect();
    let committed: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(logged, committed);

    let out = dir.path().join("out.safetensors");
    for (id, (_, bytes)) in ids.iter().zip(&files) {
        assert_checkout_equals(&repo, id, &out, bytes);
    }
    assert_fsck_clean(&repo);
    // A commit put on top of another's leaves no record of where it first meant to go: fsck
    // would list it as a snapshot no ref reaches, under the message of one that landed.
    let fsck = run_json(&repo, &["fsck"]);
    let unreferenced = &fsck["report"]["unreferenced_snapshots"];
    assert_eq!(unreferenced, &serde_json::json!([]), "{fsck:#}");
}

#[test]
fn two_concurrent_commits_on_one_branch_both_land_linearly() {
    concurrent_commits_land_linearly(2);
}

#[test]
fn four_concurrent_commits_on_one_branch_all_land_linearly() {
    concurrent_commits_land_linearly(4);
}

/// `tag` and `branch` list, make and delete in JSON too, full ids.
#[test]
fn tags_and_branches_in_json() {
    let (dir, repo) = init_repo();
    let p = dir.path().join("0.safetensors");
    write_safetensors(&p, &trajectory(9, 1, &[("w", &[4])])[0], None);
    let id = commit_json(&repo, &p, &[])["snapshot"].clone();
    assert_eq!(
        run_json(&repo, &["tag", "v1"]),
        serde_json::json!({"tag": "v1", "snapshot": id})
    );
    assert_eq!(run_json(&repo, &["tag"]), serde_json::json!({"v1": id}));
    let made = run_json(&repo, &["branch", "exp"]);
    assert_eq!(made, serde_json::json!({"branch": "exp", "snapshot": id}));
    let listed = run_json(&repo, &["branch"]);
    let want = serde_json::json!({"head": "main", "branches": {"exp": id, "main": id}});
    assert_eq!(listed, want);
    let deleted = run_json(&repo, &["tag", "-d", "v1"]);
    assert_eq!(
        deleted,
        serde_json::json!({"deleted": "tags/v1", "was": id})
    );
    let deleted = run_json(&repo, &["branch", "-d", "exp"]);
    assert_eq!(
        deleted,
        serde_json::json!({"deleted": "heads/exp", "was": id})
    );
}

#[test]
fn branches_tags_and_switch() {
    let (dir, repo) = init_repo();
    let steps = trajectory(9, 3, &[("w", &[16, 16])]);
    let paths: Vec<PathBuf> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = dir.path().join(format!("{i}.safetensors"));
            write_safetensors(&p, s, None);
            p
        })
        .collect();
    run_ok(&repo, &["commit", paths[0].to_str().unwrap()]);
    run_ok(&repo, &["branch", "exp"]);
    run_ok(&repo, &["switch", "exp"]);
    let on_exp = commit_json(&repo, &paths[1], &[]);
    assert_eq!(on_exp["branch"], "exp");
    run_ok(&repo, &["switch", "main"]);
    let on_main = commit_json(&repo, &paths[2], &[]);
    assert_eq!(on_main["branch"], "main");
    assert_eq!(on_main["parent"], on_exp["parent"]);

    let out = dir.path().join("o.safetensors");
    assert_checkout_equals(&repo, "exp", &out, &std::fs::read(&paths[1]).unwrap());
    assert_checkout_equals(&repo, "main", &out, &std::fs::read(&paths[2]).unwrap());
    let branches = run_ok(&repo, &["branch"]);
    assert!(
        branches.contains("* main") && branches.contains("exp"),
        "{branches}"
    );

    run_ok(&repo, &["tag", "release"]);
    let err = run_err(&repo, &["tag", "release"]);
    assert!(err.contains("already exists"), "{err}");
    run_ok(&repo, &["tag", "-d", "release"]);
    let err = run_err(&repo, &["checkout", "release", "-o", out.to_str().unwrap()]);
    assert!(err.contains("unknown ref"), "{err}");
}

#[test]
fn checkout_with_a_tensor_named_twice_writes_a_valid_file() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(8);
    let path = dir.path().join("in.safetensors");
    let tensors = vec![
        Tensor::f32(&mut rng, "w", &[4], 1.0),
        Tensor::f32(&mut rng, "b", &[2], 1.0),
    ];
    write_safetensors(&path, &tensors, None);
    run_ok(&repo, &["commit", path.to_str().unwrap()]);
    let out = dir.path().join("out.safetensors");
    let o = run(
        &repo,
        &[
            "checkout",
            "HEAD",
            "-o",
            out.to_str().unwrap(),
            "--tensor",
            "w",
            "--tensor",
            "w",
        ],
    );
    if o.status.success() {
        let bytes = std::fs::read(&out).unwrap();
        let parsed = safetensors::SafeTensors::deserialize(&bytes);
        assert!(parsed.is_ok(), "checkout wrote an invalid file: {parsed:?}");
        let (got, _) = parse_safetensors(&bytes);
        assert_eq!(got, vec![tensors[0].clone()]);
    } else {
        assert!(stderr(&o).contains("\"w\""), "{}", stderr(&o));
        assert!(!out.exists());
    }
}

#[test]
fn config_keyframe_every_applies_to_later_commits() {
    let (dir, repo) = init_repo();
    run_ok(&repo, &["config", "keyframe_every", "2"]);
    assert_eq!(run_ok(&repo, &["config", "keyframe_every"]).trim(), "2");
    for bad in ["0", "1.5", "x"] {
        let err = run_err(&repo, &["config", "keyframe_every", bad]);
        assert!(err.contains("keyframe_every"), "{bad}: {err}");
    }
    let err = run_err(&repo, &["config", "bound", "rel:2"]);
    assert!(err.contains("bound"), "{err}");
    let err = run_err(&repo, &["config", "colour", "red"]);
    assert!(err.contains("unknown setting"), "{err}");
    assert_eq!(run_ok(&repo, &["config", "keyframe_every"]).trim(), "2");

    for (i, s) in trajectory(10, 5, &[("w", &[16, 16])]).iter().enumerate() {
        let p = dir.path().join(format!("{i}.safetensors"));
        write_safetensors(&p, s, None);
        // As the setting, the flag takes 1 or more (0 was taken as 1).
        let err = run_err(
            &repo,
            &["commit", p.to_str().unwrap(), "--keyframe-every", "0"],
        );
        assert!(
            err.contains("--keyframe-every") && err.contains("0"),
            "{err}"
        );
        run_ok(&repo, &["commit", p.to_str().unwrap()]);
    }
    let depths: Vec<u64> = (0..5)
        .rev()
        .map(|back| {
            let show = run_json(&repo, &["show", &format!("HEAD~{back}")]);
            assert_eq!(show["manifest"]["keyframe_every"], 2);
            show["manifest"]["tensors"][0]["depth"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(depths, [1, 2, 1, 2, 1]);
}

#[test]
fn invalid_ref_names_are_refused() {
    let (dir, repo) = init_repo();
    let p = dir.path().join("x.safetensors");
    write_safetensors(&p, &trajectory(12, 1, &[("w", &[4])])[0], None);
    run_ok(&repo, &["commit", p.to_str().unwrap()]);
    let before = repo_state(&repo);
    for bad in ["a b", "../up", "x..y", "HEAD", "end/", "tab\there"] {
        let err = run_err(&repo, &["tag", bad]);
        assert!(err.contains("invalid ref name"), "tag {bad:?}: {err}");
        let err = run_err(&repo, &["branch", bad]);
        assert!(err.contains("invalid ref name"), "branch {bad:?}: {err}");
        let err = run_err(&repo, &["commit", p.to_str().unwrap(), "--branch", bad]);
        assert!(
            err.contains("invalid ref name"),
            "commit --branch {bad:?}: {err}"
        );
    }
    assert_eq!(repo_state(&repo), before);
}

#[test]
fn every_codec_choice_round_trips_byte_identical() {
    let (dir, repo) = init_repo();
    let steps = trajectory(13, 4, &[("w", &[64, 64]), ("b", &[64])]);
    let out = dir.path().join("out.safetensors");
    for (i, codec) in ["zstd", "lzma", "auto", "rans"].iter().enumerate() {
        let p = dir.path().join(format!("{codec}.safetensors"));
        let bytes = write_safetensors(&p, &steps[i], None);
        run_ok(&repo, &["commit", p.to_str().unwrap(), "--codec", codec]);
        assert_checkout_equals(&repo, "HEAD", &out, &bytes);
    }
    assert_fsck_clean(&repo);
}
