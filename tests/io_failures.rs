//! Issue #7, item 5: every durable I/O step of a command fails in turn (the test hook
//! `SNAPSTORE_TEST_FAIL_IO_AT=N` fails the N-th create, write, fsync, rename, ref-log append or
//! index update of the process). Each time the command must fail with a message naming the
//! injected failure and leave the repository as it was: same log, refs, stats and pack files,
//! fsck clean, no temp file left. Then the command runs without the hook and succeeds.

use std::path::Path;

use crate::util::*;

const FAIL_AT: &str = "SNAPSTORE_TEST_FAIL_IO_AT";

/// Everything a failed command must leave as it was.
fn full_state(repo: &Path) -> (String, Vec<String>) {
    let (log, stats, branches) = repo_state(repo);
    let tags = run_ok(repo, &["tag"]);
    let config = run_ok(repo, &["config", "keyframe_every"]);
    let mut files: Vec<String> = std::fs::read_dir(repo.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    (
        format!("{log}\n{stats}\n{branches}\n{tags}\n{config}"),
        files,
    )
}

/// Fails step 1, 2, ... of `args` until it succeeds; returns how many steps failed. `extra`
/// checks anything else after each failure (an output file that must not exist).
fn fail_each_step(repo: &Path, args: &[&str], extra: &dyn Fn()) -> usize {
    let before = full_state(repo);
    for n in 1..2000 {
        let o = run_env(repo, args, &[(FAIL_AT, &n.to_string())]);
        if o.status.success() {
            assert!(n > 1, "{args:?}: no I/O step was ever failed");
            return n - 1;
        }
        let err = stderr(&o);
        assert!(
            err.contains(&format!("injected I/O failure at step {n}")),
            "{args:?} step {n}: unexpected error:\n{err}"
        );
        assert_eq!(
            full_state(repo),
            before,
            "{args:?}: failing step {n} changed the repository ({err})"
        );
        assert_fsck_clean(repo);
        extra();
    }
    panic!("{args:?} never succeeded");
}

#[test]
fn every_failed_write_of_a_commit_leaves_the_repository_as_it_was() {
    let (dir, repo) = init_repo();
    let steps = trajectory(21, 3, &[("a", &[64, 32]), ("b", &[300]), ("c", &[16])]);
    let mut files = Vec::new();
    for (k, tensors) in steps.iter().enumerate() {
        let path = dir.path().join(format!("e{k}.safetensors"));
        write_safetensors(
            &path,
            tensors,
            Some(&metadata(&[("epoch", &k.to_string())])),
        );
        files.push(path.display().to_string());
    }
    let none = || {};
    // First commit (a fresh branch), then a delta against it, then a lossy one.
    let n0 = fail_each_step(&repo, &["commit", &files[0], "-m", "e0"], &none);
    let n1 = fail_each_step(&repo, &["commit", &files[1], "-m", "e1"], &none);
    let n2 = fail_each_step(
        &repo,
        &["commit", &files[2], "-m", "e2", "--bound", "rel:0.01"],
        &none,
    );
    println!("failed each of {n0}, {n1} and {n2} I/O steps of three commits");
    assert_eq!(run_json(&repo, &["log"]).as_array().unwrap().len(), 3);

    // Refs: a tag and a branch.
    let nt = fail_each_step(&repo, &["tag", "v1"], &none);
    let nb = fail_each_step(&repo, &["branch", "exp"], &none);
    assert!(run_ok(&repo, &["tag"]).contains("v1"));
    let ns = fail_each_step(&repo, &["config", "keyframe_every", "4"], &none);
    assert_eq!(run_ok(&repo, &["config", "keyframe_every"]).trim(), "4");
    println!("tag: {nt} steps, branch: {nb} steps, config: {ns} steps");

    // Checkout to a file: a failure leaves no file behind (and no temp file beside it).
    let out = dir.path().join("out").join("co.safetensors");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let shown = out.display().to_string();
    let no_output = || {
        let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert!(left.is_empty(), "failed checkout left {left:?}");
    };
    let nc = fail_each_step(&repo, &["checkout", "HEAD~1", "-o", &shown], &no_output);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&files[1]).unwrap()
    );
    println!("checkout: {nc} steps");
}

#[test]
fn every_failed_write_of_gc_keeps_every_snapshot() {
    let (dir, repo) = init_repo();
    let steps = trajectory(22, 3, &[("w", &[128, 16]), ("b", &[64])]);
    let mut files = Vec::new();
    for (k, tensors) in steps.iter().enumerate() {
        let path = dir.path().join(format!("e{k}.safetensors"));
        write_safetensors(&path, tensors, None);
        files.push(path.display().to_string());
        run_ok(
            &repo,
            &[
                "commit",
                &files[k],
                "-m",
                &format!("e{k}"),
                "--branch",
                "side",
            ],
        );
    }
    run_ok(&repo, &["commit", &files[0], "-m", "main"]);
    // Deleting the side branch leaves its packs unreachable; gc rewrites or removes them.
    run_ok(&repo, &["branch", "-d", "side"]);
    // What gc must keep: log, refs and the reachable snapshots' sizes (packs may shrink).
    let kept = |repo: &std::path::Path| {
        let (log, mut stats, branches) = repo_state(repo);
        for key in ["pack_bytes", "packs"] {
            stats.as_object_mut().unwrap().remove(key);
        }
        (log, stats, branches)
    };
    let before = kept(&repo);
    let packs_before = run_json(&repo, &["stats"])["pack_bytes"].as_u64().unwrap();
    let mut n = 1;
    loop {
        let o = run_env(
            &repo,
            &["gc", "--grace", "0", "--json"],
            &[(FAIL_AT, &n.to_string())],
        );
        assert_eq!(kept(&repo), before, "gc step {n} changed the repository");
        assert_fsck_clean(&repo);
        let co = dir.path().join("co.safetensors");
        run_ok(&repo, &["checkout", "HEAD", "-o", co.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(&co).unwrap(),
            std::fs::read(&files[0]).unwrap()
        );
        if o.status.success() {
            break;
        }
        assert!(
            stderr(&o).contains("injected I/O failure"),
            "gc step {n}: {}",
            stderr(&o)
        );
        n += 1;
        assert!(n < 2000, "gc never succeeded");
    }
    // gc writes (rewritten packs, index updates, flushes): if none of its steps were hooked,
    // the first run would have succeeded and this test would check nothing.
    assert!(n > 3, "only {} gc steps could be failed", n - 1);
    // And between the failed runs and the last, the side branch's objects went.
    let packs_after = run_json(&repo, &["stats"])["pack_bytes"].as_u64().unwrap();
    assert!(
        packs_after < packs_before,
        "gc freed nothing: {packs_before} -> {packs_after} pack bytes"
    );
    println!("gc: failed each of {} I/O steps", n - 1);
}
