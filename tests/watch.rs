//! `snapstore watch`: checkpoints written into a directory committed oldest first through one
//! process, the ones there before left alone, a bad one reported without stopping the rest.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::util::*;

/// Writes checkpoint `tensors` to `dir/name` whole (a temporary name, then a rename, as a
/// careful trainer does), modified at `age` seconds before now; returns the path and bytes.
fn write_checkpoint(dir: &Path, name: &str, tensors: &[Tensor], age: u64) -> (PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.partial"));
    let bytes = write_safetensors(&tmp, tensors, None);
    let file = std::fs::File::options().write(true).open(&tmp).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(age))
        .unwrap();
    drop(file);
    std::fs::rename(&tmp, &path).unwrap();
    (path, bytes)
}

/// The messages of HEAD's history, oldest first.
fn messages(repo: &Path) -> Vec<String> {
    let log = run_json(repo, &["log"]);
    let mut m: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    m.reverse();
    m
}

#[track_caller]
fn assert_checks_out(repo: &Path, spec: &str, expected: &[u8]) {
    let out = repo.with_file_name(format!("out-{}.safetensors", spec.replace('~', "-")));
    run_ok(repo, &["checkout", spec, "-o", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == expected, "{spec}");
}

#[test]
fn watch_once_commits_a_directory_oldest_first_and_reports_a_bad_file() {
    let (dir, repo) = init_repo();
    let ckpts = dir.path().join("ckpts");
    std::fs::create_dir(&ckpts).unwrap();
    let epochs = trajectory(3, 3, &[("w", &[64, 32]), ("b", &[32])]);
    // Names against the order written: the oldest is committed first.
    let files: Vec<(PathBuf, Vec<u8>)> = ["c", "b", "a"]
        .iter()
        .zip(&epochs)
        .enumerate()
        .map(|(k, (name, t))| {
            write_checkpoint(
                &ckpts,
                &format!("{name}.safetensors"),
                t,
                300 - 10 * k as u64,
            )
        })
        .collect();
    std::fs::write(ckpts.join("notes.txt"), "not a checkpoint").unwrap();
    std::fs::write(ckpts.join("broken.safetensors"), b"\x08\0\0\0\0\0\0\0{}").unwrap();
    let o = run(
        &repo,
        &["watch", ckpts.to_str().unwrap(), "--once", "--json"],
    );
    assert!(!o.status.success(), "a bad checkpoint fails the run");
    let err = stderr(&o);
    assert!(err.contains("broken.safetensors"), "{err}");
    assert!(err.contains("1 checkpoint(s) in"), "{err}");
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One line per checkpoint, each naming it: the failed one too, for a JSON reader.
    let (failures, reports): (Vec<_>, Vec<_>) =
        lines.into_iter().partition(|l| l.get("error").is_some());
    assert_eq!(failures.len(), 1, "{failures:?}");
    let broken = ckpts.join("broken.safetensors");
    assert_eq!(failures[0]["path"], broken.to_str().unwrap());
    assert!(failures[0]["error"]
        .as_str()
        .unwrap()
        .contains("not a valid safetensors file"));
    assert_eq!(reports.len(), 3, "{}", stdout(&o));
    let paths: Vec<&str> = reports
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert!(paths[0].ends_with("c.safetensors"), "{paths:?}");
    assert_eq!(reports[0]["keyframes"], 2);
    assert!(reports[1..].iter().all(|r| r["deltas"] == 2), "{reports:?}");
    assert_eq!(
        messages(&repo),
        ["c.safetensors", "b.safetensors", "a.safetensors"]
    );
    for (k, (_, bytes)) in files.iter().enumerate() {
        assert_checks_out(&repo, &format!("HEAD~{}", 2 - k), bytes);
    }

    // Run again (a restarted job): what the first run committed is skipped, a checkpoint
    // rewritten since is committed again, and so is the one that failed, once repaired.
    std::fs::remove_file(ckpts.join("broken.safetensors")).unwrap();
    let (_, rewritten) = write_checkpoint(&ckpts, "b.safetensors", &epochs[0], 5);
    let o = run(&repo, &["watch", ckpts.to_str().unwrap(), "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("2 checkpoint(s) in") && err.contains("already committed"),
        "{err}"
    );
    assert_eq!(
        messages(&repo),
        [
            "c.safetensors",
            "b.safetensors",
            "a.safetensors",
            "b.safetensors"
        ]
    );
    assert_checks_out(&repo, "HEAD", &rewritten);
    let o = run(&repo, &["watch", ckpts.to_str().unwrap(), "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(messages(&repo).len(), 4, "nothing new: nothing committed");
    // Another branch has none of them.
    run_ok(
        &repo,
        &[
            "watch",
            ckpts.to_str().unwrap(),
            "--once",
            "--branch",
            "other",
        ],
    );
    assert_eq!(
        run_json(&repo, &["log", "other"]).as_array().unwrap().len(),
        3
    );

    for bad in ["0", "-1", "1e30", "NaN"] {
        let err = run_err(
            &repo,
            &[
                "watch",
                ckpts.to_str().unwrap(),
                &format!("--interval={bad}"),
            ],
        );
        assert!(
            err.contains("expected seconds, more than 0"),
            "{bad}: {err}"
        );
    }
    let err = run_err(&repo, &["watch", "/no/such/dir", "--once"]);
    assert!(err.contains("watching /no/such/dir"), "{err}");
}

#[test]
fn watch_commits_checkpoints_written_after_it_starts() {
    let (dir, repo) = init_repo();
    let ckpts = dir.path().join("ckpts");
    std::fs::create_dir(&ckpts).unwrap();
    let epochs = trajectory(4, 3, &[("w", &[64, 32])]);
    write_checkpoint(&ckpts, "old.safetensors", &epochs[0], 60);
    let mut child = command(&repo)
        .args(["watch", ckpts.to_str().unwrap(), "--interval", "0.05"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Checkpoints written before the watch has looked are left alone: wait for its word.
    let mut stderr_lines = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut started = String::new();
    std::io::BufRead::read_line(&mut stderr_lines, &mut started).unwrap();
    assert!(
        started.contains("1 checkpoint(s) there left alone"),
        "{started}"
    );
    let wait_for = |n: usize| {
        let start = Instant::now();
        while messages(&repo).len() < n {
            assert!(start.elapsed() < Duration::from_secs(60), "no commit {n}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (_, e1) = write_checkpoint(&ckpts, "e1.safetensors", &epochs[1], 0);
    wait_for(1);
    // A checkpoint that stops short is reported; rewritten whole, it is committed.
    let (path, e2) = (ckpts.join("e2.safetensors"), serialize(&epochs[2], None));
    std::fs::write(&path, &e2[..e2.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&path, &e2).unwrap();
    wait_for(2);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr_lines, &mut err).unwrap();
    assert!(
        err.contains("e2.safetensors"),
        "the short file is reported: {err}"
    );
    assert_eq!(messages(&repo), ["e1.safetensors", "e2.safetensors"]);
    assert_checks_out(&repo, "HEAD~1", &e1);
    assert_checks_out(&repo, "HEAD", &e2);
    assert_fsck_clean(&repo);
}

/// Checkpoints with equal modification times (a `tar x`, a file system with 1 s stamps) go in
/// natural name order: epoch_10 after epoch_9, so the branch ends on epoch_10 (byte order put
/// it after epoch_1 and ended on epoch_9).
#[test]
fn watch_orders_equal_times_by_natural_name() {
    let (dir, repo) = init_repo();
    let ckpts = dir.path().join("ckpts");
    std::fs::create_dir(&ckpts).unwrap();
    let epochs = trajectory(5, 11, &[("w", &[16, 8])]);
    let stamp = SystemTime::now() - Duration::from_secs(600);
    let mut last = Vec::new();
    for (k, t) in epochs.iter().enumerate().skip(1) {
        let path = ckpts.join(format!("epoch_{k}.safetensors"));
        last = write_safetensors(&path, t, None);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(stamp).unwrap();
    }
    run_ok(&repo, &["watch", ckpts.to_str().unwrap(), "--once"]);
    let order: Vec<String> = (1..=10).map(|k| format!("epoch_{k}.safetensors")).collect();
    assert_eq!(messages(&repo), order);
    assert_checks_out(&repo, "HEAD", &last);
}
