//! A checkpoint directory (safetensors shards, their index, `config.json`) committed as one
//! snapshot and checked out as that directory again.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use tempfile::TempDir;

use crate::util::*;

/// Writes `tensors` as a checkpoint directory of `shards` safetensors files, named and indexed
/// as `save_pretrained` names them, with a `config.json`; returns the files' names.
fn write_checkpoint_dir(dir: &Path, tensors: &[Tensor], shards: usize) -> Vec<String> {
    fs::create_dir_all(dir).unwrap();
    let per = tensors.len().div_ceil(shards);
    let mut names = Vec::new();
    let mut weight_map = serde_json::Map::new();
    for (k, part) in tensors.chunks(per).enumerate() {
        let name = format!("model-{:05}-of-{shards:05}.safetensors", k + 1);
        write_safetensors(&dir.join(&name), part, Some(&metadata(&[("format", "pt")])));
        for t in part {
            weight_map.insert(t.name.clone(), json!(name));
        }
        names.push(name);
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    let index_name = "model.safetensors.index.json";
    fs::write(
        dir.join(index_name),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
    fs::write(dir.join("config.json"), br#"{"model_type": "toy"}"#).unwrap();
    names.extend([index_name.to_string(), "config.json".to_string()]);
    names.sort();
    names
}

/// A repository holding epochs 0 and 1 committed as directories `a` and `b` of two shards
/// each, and those directories' file names.
fn two_epochs_committed() -> (TempDir, PathBuf, [PathBuf; 2], Vec<String>) {
    let (dir, repo) = init_repo();
    let all = epochs();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let names = write_checkpoint_dir(&a, &all[0], 2);
    write_checkpoint_dir(&b, &all[1], 2);
    run_ok(&repo, &["commit", s(&a)]);
    run_ok(&repo, &["commit", s(&b)]);
    (dir, repo, [a, b], names)
}

/// Three epochs of five tensors.
fn epochs() -> Vec<Vec<Tensor>> {
    trajectory(
        7,
        3,
        &[
            ("a.weight", &[64, 32]),
            ("b.weight", &[128]),
            ("c.bias", &[32]),
            ("d.weight", &[16, 16]),
            ("e.weight", &[40]),
        ],
    )
}

#[track_caller]
fn assert_same_files(written: &Path, committed: &Path, names: &[String]) {
    assert_eq!(sorted_names(written), names, "{}", written.display());
    for name in names {
        assert!(
            fs::read(written.join(name)).unwrap() == fs::read(committed.join(name)).unwrap(),
            "{name} differs from the committed file"
        );
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Each epoch is one snapshot (the last one resharded), each tensor coded against its parent's
/// wherever the shard boundaries fall, and each checks out as the directory it was, byte for
/// byte, without what it did not keep.
#[test]
fn a_checkpoint_directory_is_one_snapshot_and_checks_out_byte_for_byte() {
    let (dir, repo) = init_repo();
    let mut committed = Vec::new();
    for (e, (tensors, shards)) in epochs().iter().zip([3, 3, 2]).enumerate() {
        let ck = dir.path().join(format!("checkpoint-{e}"));
        let names = write_checkpoint_dir(&ck, tensors, shards);
        fs::write(ck.join("optimizer.pt"), b"not a safetensors file").unwrap();
        fs::create_dir(ck.join("runs")).unwrap();
        fs::write(ck.join(".hidden"), b"passed over").unwrap();
        let r = run_json(&repo, &["commit", s(&ck), "-m", &format!("epoch {e}")]);
        assert_eq!(r["left_out"], json!(["optimizer.pt", "runs/"]), "{r:#}");
        assert_eq!(r["tensors"], 5);
        if e > 0 {
            assert_eq!(r["deltas"], 5, "every tensor finds its parent: {r:#}");
        }
        let id = r["snapshot"].as_str().unwrap().to_string();
        committed.push((id, ck, names));
    }
    let text = run_ok(&repo, &["commit", s(&committed[0].1), "-m", "again"]);
    assert!(
        text.contains(
            "not kept (only *.safetensors, the shard index and other JSON files up to 1 MiB \
             are): optimizer.pt, runs/"
        ),
        "{text}"
    );
    for (id, ck, names) in &committed {
        let out = dir.path().join(format!("out-{id}"));
        run_ok(&repo, &["checkout", id, "-o", s(&out)]);
        assert_same_files(&out, ck, names);
    }
    assert_fsck_clean(&repo);

    // `diff` against the directory it was committed from: every tensor the same.
    let rows = run_json(&repo, &["diff", &committed[1].0, s(&committed[1].1)]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "same" && r["max_abs"] == 0.0),
        "{rows:?}"
    );
    let rows = run_json(&repo, &["diff", &committed[0].0, s(&committed[1].1)]);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "changed"),
        "{rows}"
    );

    // `show` lists its files; `status` compares a directory as it does a file.
    let shown = run_ok(&repo, &["show", &committed[2].0]);
    assert!(
        shown.contains("file     model-00002-of-00002.safetensors (2 tensors)")
            && shown.contains("file     config.json (21 B)"),
        "{shown}"
    );
    let ck = &committed[2].1;
    let st = run_json(&repo, &["status", s(ck)]);
    assert_eq!(st["snapshot"], json!(committed[2].0), "{st:#}");
    let mut changed = epochs()[2].clone();
    changed[4].data[0] ^= 1;
    write_checkpoint_dir(ck, &changed, 2);
    let st = run_json(&repo, &["status", s(ck)]);
    assert_eq!(st["snapshot"], json!(null));
    let rows = st["tensors"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for t in rows {
        // HEAD is epoch 0 again: every tensor differs from it; all but one are in epoch 2.
        assert_eq!(t["status"], "changed");
        let held = match t["name"].as_str().unwrap() {
            "e.weight" => json!(null),
            name => json!([committed[2].0, name]),
        };
        assert_eq!(t["stored_in"], held, "{t}");
    }

    // One tensor of it checks out as a file of its own.
    let one = dir.path().join("one.safetensors");
    run_ok(
        &repo,
        &[
            "checkout",
            &committed[2].0,
            "--tensor",
            "c.bias",
            "-o",
            s(&one),
        ],
    );
    let (back, _) = parse_safetensors(&fs::read(&one).unwrap());
    let expected = epochs()[2].iter().find(|t| t.name == "c.bias").cloned();
    assert_eq!(back, vec![expected.unwrap()]);
}

/// Under a lossy bound, a trajectory committed as directories stores what the same epochs
/// committed as whole files store: the shards cost nothing but their headers in the manifest.
/// (Committed a shard at a time, no tensor would find a parent.)
#[test]
fn a_sharded_trajectory_stores_what_whole_files_store() {
    let (dir, whole) = init_repo();
    let sharded = dir.path().join("sharded");
    run_ok(&sharded, &["init"]);
    for (e, (tensors, shards)) in epochs().iter().zip([2, 3, 1]).enumerate() {
        let file = dir.path().join(format!("epoch-{e}.safetensors"));
        write_safetensors(&file, tensors, Some(&metadata(&[("format", "pt")])));
        let ck = dir.path().join(format!("checkpoint-{e}"));
        write_checkpoint_dir(&ck, tensors, shards);
        let a = run_json(&whole, &["commit", s(&file), "--bound", "rel:0.01"]);
        let b = run_json(&sharded, &["commit", s(&ck), "--bound", "rel:0.01"]);
        assert_eq!(a["stored_bytes"], b["stored_bytes"], "epoch {e}");
        assert_eq!(
            (&a["deltas"], &a["keyframes"]),
            (&b["deltas"], &b["keyframes"])
        );
        // Each tensor decodes to what the whole file's checkout holds.
        let (x, y) = (
            dir.path().join(format!("x{e}")),
            dir.path().join(format!("y{e}")),
        );
        run_ok(&whole, &["checkout", "HEAD", "-o", s(&x)]);
        run_ok(&sharded, &["checkout", "HEAD", "-o", s(&y)]);
        let (from_file, _) = parse_safetensors(&fs::read(&x).unwrap());
        let mut from_dir: Vec<Tensor> = sorted_names(&y)
            .iter()
            .filter(|n| n.ends_with(".safetensors"))
            .flat_map(|n| parse_safetensors(&fs::read(y.join(n)).unwrap()).0)
            .collect();
        from_dir.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(from_file, from_dir, "epoch {e}");
    }
}

/// A directory that cannot be one snapshot is refused, naming the directory or the file and
/// the problem, and nothing is stored.
#[test]
fn a_bad_checkpoint_directory_is_refused_and_nothing_is_stored() {
    let (dir, repo) = init_repo();
    let tensors = &epochs()[0];
    let good = dir.path().join("good");
    write_checkpoint_dir(&good, tensors, 2);
    run_ok(&repo, &["commit", s(&good)]);
    let before = repo_state(&repo);
    let refused = |ck: &PathBuf, args: &[&str], expected: &[&str]| {
        let mut all = vec!["commit", s(ck)];
        all.extend_from_slice(args);
        let err = run_err(&repo, &all);
        for part in expected {
            assert!(err.contains(part), "{part:?} not in: {err}");
        }
        assert_eq!(repo_state(&repo), before, "{err}");
    };

    // A tensor in two shards.
    let twice = dir.path().join("twice");
    write_checkpoint_dir(&twice, tensors, 2);
    write_safetensors(&twice.join("extra.safetensors"), &tensors[..1], None);
    refused(
        &twice,
        &[],
        &[
            s(&twice),
            "tensor \"a.weight\" is in both",
            "model-00001-of-00002.safetensors",
            "extra.safetensors",
        ],
    );

    // An index naming a shard not (yet) written, or one lacking the tensor.
    let partial = dir.path().join("partial");
    write_checkpoint_dir(&partial, tensors, 3);
    let index = partial.join("model.safetensors.index.json");
    for (shard, expected) in [
        (
            "later.safetensors",
            "is not in the directory (is the checkpoint still being written?)",
        ),
        ("model-00002-of-00003.safetensors", "which does not hold it"),
    ] {
        let map = json!({"weight_map": {"a.weight": shard}});
        fs::write(&index, map.to_string()).unwrap();
        refused(
            &partial,
            &[],
            &[
                "model.safetensors.index.json maps tensor \"a.weight\" to",
                shard,
                expected,
            ],
        );
    }

    // A numbered set missing a shard, before the index is written.
    fs::remove_file(&index).unwrap();
    fs::remove_file(partial.join("model-00003-of-00003.safetensors")).unwrap();
    refused(
        &partial,
        &[],
        &["holds 2 of the 3 shards model-*-of-00003.safetensors, not \
             model-00003-of-00003.safetensors (is the checkpoint still being written?)"],
    );

    // An index that is not JSON, or maps a tensor to something other than a file name.
    for (text, expected) in [
        (
            "{not json",
            "model.safetensors.index.json is not valid JSON",
        ),
        (
            r#"{"weight_map": {"a.weight": 3}}"#,
            "maps tensor \"a.weight\" to 3, which is not a file name",
        ),
    ] {
        let bad_index = dir.path().join("bad-index");
        write_checkpoint_dir(&bad_index, tensors, 2);
        fs::write(bad_index.join("model.safetensors.index.json"), text).unwrap();
        refused(&bad_index, &[], &[expected]);
    }

    // A directory without safetensors is named as one by commit, status and diff.
    let empty = dir.path().join("no-shards");
    fs::create_dir(&empty).unwrap();
    fs::write(empty.join("config.json"), b"{}").unwrap();
    refused(
        &empty,
        &[],
        &[
            "no *.png file (frames) and no *.safetensors file",
            "not searched",
        ],
    );
    let err = run_err(&repo, &["status", s(&empty)]);
    assert!(
        err.contains("this directory holds no *.safetensors file"),
        "{err}"
    );
    let err = run_err(&repo, &["diff", "HEAD", s(&empty)]);
    assert!(
        err.contains("a directory holding no *.safetensors file"),
        "{err}"
    );

    // A truncated shard is named.
    let cut = dir.path().join("cut");
    write_checkpoint_dir(&cut, tensors, 2);
    let shard = cut.join("model-00002-of-00002.safetensors");
    let bytes = fs::read(&shard).unwrap();
    fs::write(&shard, &bytes[..bytes.len() - 10]).unwrap();
    refused(&cut, &[], &[s(&shard), "not a valid safetensors file"]);

    // Read as frames, it is named as what it is.
    refused(
        &good,
        &["--kind", "frames"],
        &["a checkpoint directory; commit it without --kind frames"],
    );
    // --bound auto refuses it as a commit does, before the evaluator runs (`true` would fail it).
    refused(
        &twice,
        &["--bound", "auto", "--eval-cmd", "true"],
        &[s(&twice), "tensor \"a.weight\" is in both"],
    );
}

/// A directory snapshot is written into a directory: not over a file, and not into one holding
/// a safetensors file it does not have (a loader would mix the two); into one holding its own
/// files' names, it replaces them. Asked for as a `.safetensors` file, it merges its shards.
#[test]
fn a_directory_snapshot_checks_out_only_where_it_cannot_mix() {
    let (dir, repo) = init_repo();
    let all = epochs();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let names = write_checkpoint_dir(&a, &all[0], 2);
    let names_b = write_checkpoint_dir(&b, &all[1], 3);
    run_ok(&repo, &["commit", s(&a)]);
    run_ok(&repo, &["commit", s(&b)]);

    let file = dir.path().join("model.bin");
    fs::write(&file, b"keep me").unwrap();
    let err = run_err(&repo, &["checkout", "HEAD", "-o", s(&file)]);
    assert!(
        err.contains("not a directory") && err.contains("-o names the directory"),
        "{err}"
    );
    assert_eq!(fs::read(&file).unwrap(), b"keep me");
    let merged = dir.path().join("merged.safetensors");
    run_ok(&repo, &["checkout", "HEAD", "-o", s(&merged)]);
    let (back, meta) = parse_safetensors(&fs::read(&merged).unwrap());
    let shards_meta = Some(metadata(&[("format", "pt")]));
    assert_eq!((back, meta), (by_name(all[1].clone()), shards_meta));
    // `NAME.safetensors/` names a directory.
    let slashed = format!("{}/", s(&dir.path().join("dir.safetensors")));
    run_ok(&repo, &["checkout", "HEAD", "-o", &slashed]);
    assert_same_files(&dir.path().join("dir.safetensors"), &b, &names_b);

    // HEAD~1 has two shards; a directory holding HEAD's three refuses it.
    let out = dir.path().join("out");
    run_ok(&repo, &["checkout", "HEAD", "-o", s(&out)]);
    let err = run_err(&repo, &["checkout", "HEAD~1", "-o", s(&out)]);
    assert!(
        err.contains("holds model-00001-of-00003.safetensors (and 2 more), which snapshot")
            && err.contains("new or empty directory"),
        "{err}"
    );
    assert_same_files(&out, &b, &names_b);

    // Same names: replaced, and a file of the user's beside them stays.
    let same = dir.path().join("same");
    run_ok(&repo, &["checkout", "HEAD~1", "-o", s(&same)]);
    fs::write(same.join("README.md"), b"mine").unwrap();
    let c = dir.path().join("c");
    write_checkpoint_dir(&c, &all[2], 2);
    run_ok(&repo, &["commit", s(&c)]);
    run_ok(&repo, &["checkout", "HEAD", "-o", s(&same)]);
    let mut with_readme = names.clone();
    with_readme.push("README.md".into());
    with_readme.sort();
    assert_eq!(sorted_names(&same), with_readme);
    for name in &names {
        assert_eq!(
            fs::read(same.join(name)).unwrap(),
            fs::read(c.join(name)).unwrap()
        );
    }
}

/// A checkout failing at any of its writes, renames or fsyncs leaves no temp file; while it
/// decodes, it leaves the directory as it was, and a directory it made is gone.
#[test]
fn a_failed_directory_checkout_leaves_what_was_there() {
    let (dir, repo, [a, b], names) = two_epochs_committed();
    let mut failed = 0;
    for n in 1.. {
        let fresh = dir.path().join(format!("fresh-{n}"));
        let old = dir.path().join(format!("old-{n}"));
        write_checkpoint_dir(&old, &epochs()[0], 2);
        let at = n.to_string();
        let env = [("SNAPSTORE_TEST_FAIL_IO_AT", at.as_str())];
        let into_fresh = run_env(&repo, &["checkout", "HEAD", "-o", s(&fresh)], &env);
        let into_old = run_env(&repo, &["checkout", "HEAD", "-o", s(&old)], &env);
        if into_fresh.status.success() && into_old.status.success() {
            assert_same_files(&fresh, &b, &names);
            assert_same_files(&old, &b, &names);
            break;
        }
        failed += 1;
        assert!(
            !into_fresh.status.success() && !into_old.status.success(),
            "step {n}"
        );
        // Named by the file asked for, never by an internal temp file.
        assert!(
            !stderr(&into_old).contains(".tmp-"),
            "{}",
            stderr(&into_old)
        );
        assert!(
            stderr(&into_fresh).contains("injected I/O failure"),
            "{}",
            stderr(&into_fresh)
        );
        assert!(!fresh.exists(), "step {n}: {:?}", sorted_names(&fresh));
        // Every file is whole: the old epoch's or the new one's, and no temp file stays.
        assert_eq!(sorted_names(&old), names, "step {n}");
        let replaced: Vec<bool> = names
            .iter()
            .map(|name| {
                let got = fs::read(old.join(name)).unwrap();
                assert!(
                    got == fs::read(a.join(name)).unwrap()
                        || got == fs::read(b.join(name)).unwrap(),
                    "step {n}: {name} is neither epoch"
                );
                got == fs::read(b.join(name)).unwrap() && got != fs::read(a.join(name)).unwrap()
            })
            .collect();
        // Only the finishing (each file synced and renamed in turn, after every write) may
        // leave some replaced.
        let stderr = stderr(&into_old);
        if stderr.contains("(create)") || stderr.contains("(write)") {
            assert!(!replaced.contains(&true), "step {n}: {stderr}");
        }
        assert!(n < 100, "the checkout never got through");
    }
    assert!(failed >= 6, "only {failed} steps failed");
}

/// `watch` commits the checkpoint directories a trainer writes (`checkpoint-500/`) as it
/// commits files: oldest first, one snapshot each, an incomplete one reported and tried again
/// once it changes.
#[test]
fn watch_commits_checkpoint_directories() {
    let (dir, repo) = init_repo();
    let ckpts = dir.path().join("out");
    let all = epochs();
    write_checkpoint_dir(&ckpts.join("checkpoint-1"), &all[0], 3);
    write_checkpoint_dir(&ckpts.join("checkpoint-2"), &all[1], 2);
    fs::create_dir_all(ckpts.join("runs")).unwrap();
    fs::write(ckpts.join("runs").join("events.out"), b"tensorboard").unwrap();
    let o = run(&repo, &["watch", s(&ckpts), "--once", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&o));
    assert_eq!(
        (&lines[1]["deltas"], &lines[1]["tensors"]),
        (&json!(5), &json!(5))
    );
    let log = run_json(&repo, &["log"]);
    assert_eq!(log[0]["message"], "checkpoint-2");
    assert_eq!(log[1]["message"], "checkpoint-1");

    // A third, one shard short: reported, the others skipped; whole, committed.
    let third = ckpts.join("checkpoint-3");
    write_checkpoint_dir(&third, &all[2], 2);
    let last = third.join("model-00002-of-00002.safetensors");
    let held = fs::read(&last).unwrap();
    fs::remove_file(&last).unwrap();
    let o = run(&repo, &["watch", s(&ckpts), "--once"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("checkpoint-3: holds 1 of the 2 shards")
            && stderr(&o).contains("2 checkpoint(s) in"),
        "{}",
        stderr(&o)
    );
    fs::write(&last, held).unwrap();
    let o = run(&repo, &["watch", s(&ckpts), "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(run_json(&repo, &["log"])[0]["message"], "checkpoint-3");
    let out = dir.path().join("deployed");
    run_ok(&repo, &["checkout", "HEAD", "-o", s(&out)]);
    let names = write_checkpoint_dir(&dir.path().join("expected"), &all[2], 2);
    assert_same_files(&out, &third, &names);
}

/// A directory snapshot travels through a remote: pushed, cloned (fsck clean), and checked out
/// from the remote alone as the directory it was.
#[test]
fn a_directory_snapshot_goes_through_a_remote() {
    let (dir, repo) = init_repo();
    let all = epochs();
    let mut committed = Vec::new();
    for (e, shards) in [2, 3].into_iter().enumerate() {
        let ck = dir.path().join(format!("checkpoint-{e}"));
        let names = write_checkpoint_dir(&ck, &all[e], shards);
        run_ok(&repo, &["commit", s(&ck)]);
        committed.push((ck, names));
    }
    let remote = dir.path().join("remote");
    run_ok(&repo, &["remote", "add", "origin", s(&remote)]);
    // Into a directory that is there already, too.
    fs::create_dir(dir.path().join("bmain")).unwrap();
    run_ok(&repo, &["push", "origin", "main"]);
    let clone = dir.path().join("clone");
    run_ok(&clone, &["clone", s(&remote), s(&clone)]);
    assert_fsck_clean(&clone);
    for (spec, (ck, names)) in ["main~1", "main"].iter().zip(&committed) {
        let (a, b) = (
            dir.path().join(format!("a{spec}")),
            dir.path().join(format!("b{spec}")),
        );
        run_ok(&clone, &["checkout", spec, "-o", s(&a)]);
        assert_same_files(&a, ck, names);
        run_ok(&repo, &["remote", "checkout", "origin", spec, "-o", s(&b)]);
        assert_same_files(&b, ck, names);
    }
}

/// Where a directory checkout must not write: through a link into a hub cache's shared blobs,
/// through a link to nothing, over a directory named like one of its files, into a directory
/// whose parent is missing. What a killed checkout left there, and hidden files, do not stop it.
#[test]
fn a_directory_checkout_writes_only_its_own_files() {
    let (dir, repo, [a, b], names) = two_epochs_committed();

    // A hub cache: every file a link to a blob. The links are replaced, the blobs stay.
    let (blobs, snap) = (dir.path().join("blobs"), dir.path().join("snapshots-rev"));
    fs::create_dir_all(&blobs).unwrap();
    fs::create_dir_all(&snap).unwrap();
    for name in &names {
        fs::copy(a.join(name), blobs.join(name)).unwrap();
        std::os::unix::fs::symlink(blobs.join(name), snap.join(name)).unwrap();
    }
    run_ok(&repo, &["checkout", "HEAD", "-o", s(&snap)]);
    assert_same_files(&snap, &b, &names);
    assert_same_files(&blobs, &a, &names);
    assert!(!fs::symlink_metadata(snap.join(&names[0]))
        .unwrap()
        .file_type()
        .is_symlink());

    // A killed checkout's temp file (its process gone) and a hidden shard: no obstacle.
    let out = dir.path().join("out");
    run_ok(&repo, &["checkout", "HEAD~1", "-o", s(&out)]);
    let stale = out.join(format!(".tmp-{}-7-{}", u32::MAX, names[1]));
    fs::write(&stale, b"partial").unwrap();
    fs::write(out.join(".old.safetensors"), b"hidden").unwrap();
    run_ok(&repo, &["checkout", "HEAD", "-o", s(&out)]);
    assert!(!stale.exists());
    assert_eq!(
        fs::read(out.join(&names[1])).unwrap(),
        fs::read(b.join(&names[1])).unwrap()
    );

    // A link to nothing stays, refused; so is a directory where a file goes, before anything
    // is written; and a directory whose parent is missing.
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    let err = run_err(&repo, &["checkout", "HEAD", "-o", s(&dangling)]);
    assert!(err.contains("a symbolic link to nothing"), "{err}");
    assert!(fs::symlink_metadata(&dangling).is_ok());
    let blocked = dir.path().join("blocked");
    run_ok(&repo, &["checkout", "HEAD~1", "-o", s(&blocked)]);
    fs::remove_file(blocked.join(&names[1])).unwrap();
    fs::create_dir(blocked.join(&names[1])).unwrap();
    let err = run_err(&repo, &["checkout", "HEAD", "-o", s(&blocked)]);
    assert!(
        err.contains(&format!("{} is a directory there", names[1])),
        "{err}"
    );
    assert_eq!(
        fs::read(blocked.join(&names[0])).unwrap(),
        fs::read(a.join(&names[0])).unwrap()
    );
    let orphan = dir.path().join("no").join("such").join("out");
    let err = run_err(&repo, &["checkout", "HEAD", "-o", s(&orphan)]);
    assert!(err.contains("no such directory"), "{err}");
    assert!(!dir.path().join("no").exists());
}

/// What a directory holds that a snapshot keeps or leaves: a shard index of any size (a
/// checkout is not loadable without it), a link to a blob never downloaded (left out, named),
/// a name that is not UTF-8 (left out; a shard of that name refused).
#[test]
fn a_directory_keeps_its_index_whatever_its_size_and_names_what_it_leaves() {
    let (dir, repo) = init_repo();
    let ck = dir.path().join("ck");
    let names = write_checkpoint_dir(&ck, &epochs()[0], 2);
    // An index past the 1 MiB other JSON files may take (a mixture of experts' is megabytes).
    let index = ck.join("model.safetensors.index.json");
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();
    json["metadata"]["padding"] = json!("x".repeat(1_200_000));
    fs::write(&index, json.to_string()).unwrap();
    fs::write(
        ck.join("big.json"),
        format!("\"{}\"", "y".repeat(1_100_000)),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path().join("missing-blob"), ck.join("tokenizer.model"))
        .unwrap();
    use std::os::unix::ffi::OsStrExt;
    let odd = std::ffi::OsStr::from_bytes(b"cfg\xff.json");
    fs::write(ck.join(odd), b"{}").unwrap();
    let r = run_json(&repo, &["commit", s(&ck)]);
    assert_eq!(
        r["left_out"],
        json!([
            "big.json",
            "cfg\u{fffd}.json (name not UTF-8)",
            "tokenizer.model (a link to nothing)"
        ]),
        "{r:#}"
    );
    let out = dir.path().join("out");
    run_ok(&repo, &["checkout", "HEAD", "-o", s(&out)]);
    assert_same_files(&out, &ck, &names);

    let shard = std::ffi::OsStr::from_bytes(b"extra\xff.safetensors");
    fs::copy(ck.join(&names[0]), ck.join(shard)).unwrap();
    let err = run_err(&repo, &["commit", s(&ck)]);
    assert!(
        err.contains("the shard name \"extra\u{fffd}.safetensors\" is not UTF-8"),
        "{err}"
    );
}

/// `status` of a directory says it is stored only when its files are as the snapshot holds
/// them too, and names the ones that differ from HEAD's.
#[test]
fn status_of_a_directory_weighs_its_files() {
    let (dir, repo) = init_repo();
    let ck = dir.path().join("ck");
    write_checkpoint_dir(&ck, &epochs()[0], 2);
    let id = run_json(&repo, &["commit", s(&ck)])["snapshot"].clone();
    assert_eq!(run_json(&repo, &["status", s(&ck)])["snapshot"], id);
    fs::write(ck.join("config.json"), br#"{"model_type": "edited"}"#).unwrap();
    let st = run_json(&repo, &["status", s(&ck)]);
    assert_eq!(
        (&st["snapshot"], &st["files_differ"]),
        (&json!(null), &json!(["config.json"]))
    );
    assert!(st["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["status"] == "same"));
    let text = run_ok(&repo, &["status", s(&ck)]);
    assert!(text.contains("files not as in HEAD: config.json"), "{text}");
    // Resharded: same tensors, other files.
    let resharded = dir.path().join("resharded");
    write_checkpoint_dir(&resharded, &epochs()[0], 3);
    let st = run_json(&repo, &["status", s(&resharded)]);
    assert_eq!(st["snapshot"], json!(null));
    assert_eq!(
        st["files_differ"],
        json!([
            "model-00001-of-00002.safetensors",
            "model-00001-of-00003.safetensors",
            "model-00002-of-00002.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors",
            "model.safetensors.index.json"
        ])
    );
}

/// A watch does not commit a checkpoint directory again when only files a snapshot does not
/// keep change after it (the optimizer state a trainer writes beside the model), in the same
/// process or a restarted one; a kept file changing commits it again.
#[test]
fn watch_commits_a_directory_again_only_when_what_it_keeps_changes() {
    let (dir, repo) = init_repo();
    let out = dir.path().join("out");
    let ck = out.join("checkpoint-1");
    write_checkpoint_dir(&ck, &epochs()[0], 2);
    run_ok(&repo, &["watch", s(&out), "--once"]);
    fs::write(ck.join("optimizer.pt"), b"written after the model").unwrap();
    fs::create_dir(ck.join("global_step1")).unwrap();
    fs::write(
        ck.join("global_step1").join("optim_states.pt"),
        b"deepspeed",
    )
    .unwrap();
    let big = format!("\"{}\"", "t".repeat(1_100_000));
    fs::write(ck.join("tokenizer.json"), big).unwrap(); // over 1 MiB: not kept
    let o = run(&repo, &["watch", s(&out), "--once"]);
    assert!(
        o.status.success() && stderr(&o).contains("1 checkpoint(s) in"),
        "{}",
        stderr(&o)
    );
    assert_eq!(run_json(&repo, &["log"]).as_array().unwrap().len(), 1);
    fs::write(ck.join("trainer_state.json"), b"{\"step\": 500}").unwrap();
    run_ok(&repo, &["watch", s(&out), "--once"]);
    assert_eq!(run_json(&repo, &["log"]).as_array().unwrap().len(), 2);
}

/// `search` and `commit --bound auto` take a checkpoint directory. The evaluator is given each
/// candidate as that directory: its shards under their names, each holding its own tensors and
/// metadata, and its other files (a tokenizer the snapshot does not keep too) as they are. The
/// first candidate is the directory as given, and the commit stores exactly the candidate it
/// chose.
#[test]
fn the_bound_search_takes_a_checkpoint_directory() {
    let (dir, repo, _, _) = two_epochs_committed();
    let c = dir.path().join("c");
    let mut names = write_checkpoint_dir(&c, &epochs()[2], 2);
    fs::write(c.join("tokenizer.model"), b"\0vocab").unwrap();
    names.push("tokenizer.model".into());
    names.sort();
    let shards: Vec<&String> = names
        .iter()
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    let read = |p: &Path| parse_safetensors(&fs::read(p).unwrap());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/search_eval.sh");
    let cmd = format!("sh {script} keep {{path}}");
    // Each run keeps its evaluator's candidates in a directory of its own.
    let run_keeping = |args: &[&str], keep: &Path| {
        fs::create_dir(keep).unwrap();
        let args = [args, &["--eval-cmd", &cmd, "--json"]].concat();
        let out = run_env(&repo, &args, &[("SNAPSTORE_TEST_KEEP", s(keep))]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json
    };

    let before = repo_state(&repo);
    let keep = dir.path().join("keep-search");
    let search = run_keeping(&["search", s(&c)], &keep);
    assert_eq!(repo_state(&repo), before, "a search commits nothing");
    // The evaluator cannot tell the candidates apart: the largest bound wins, at once.
    assert_eq!(search["chosen"]["spec"], "rel:0.2", "{search}");
    assert_eq!(sorted_names(&keep), ["call-0", "call-1"]);
    for call in ["call-0", "call-1"] {
        let candidate = keep.join(call);
        assert_eq!(sorted_names(&candidate), names, "{call}");
        for name in names.iter().filter(|n| !n.ends_with(".safetensors")) {
            let (got, want) = (fs::read(candidate.join(name)), fs::read(c.join(name)));
            assert_eq!(got.unwrap(), want.unwrap(), "{call}: {name}");
        }
    }
    for shard in &shards {
        let (given, given_meta) = read(&c.join(shard));
        assert_eq!(
            read(&keep.join("call-0").join(shard)),
            (given.clone(), given_meta.clone())
        );
        let (coded, coded_meta) = read(&keep.join("call-1").join(shard));
        assert_eq!(coded_meta, given_meta, "{shard}");
        assert_ne!(coded, given, "{shard}: rel:0.2 changes some element");
        for (g, w) in coded.iter().zip(&given) {
            assert_eq!(
                (&g.name, g.shape.clone()),
                (&w.name, w.shape.clone()),
                "{shard}"
            );
            for (a, b) in bytes_to_f32(&g.data).iter().zip(bytes_to_f32(&w.data)) {
                assert!(
                    (a - b).abs() <= 0.2 * b.abs(),
                    "{shard} {}: {a} vs {b}",
                    g.name
                );
            }
        }
    }

    let keep = dir.path().join("keep-commit");
    let committed = run_keeping(&["commit", s(&c), "--bound", "auto"], &keep);
    assert_eq!(committed["bound"], "rel:0.2", "{committed}");
    assert_eq!(
        committed["left_out"],
        serde_json::json!(["tokenizer.model"])
    );
    let out = dir.path().join("out");
    run_ok(&repo, &["checkout", "HEAD", "-o", s(&out)]);
    for shard in &shards {
        let chosen = read(&keep.join("call-1").join(shard));
        assert_eq!(
            read(&out.join(shard)),
            chosen,
            "{shard}: stored as evaluated"
        );
    }
    assert_fsck_clean(&repo);
}
