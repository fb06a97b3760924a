//! The error-bound search through the binary: a failing, silent, NaN or slow evaluator is a
//! clear error naming the command and nothing is committed; a working one commits its choice.

use crate::util::*;

fn evaluator(mode: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/search_eval.sh");
    format!("sh {script} {mode} {{path}}")
}

fn trajectory_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    trajectory(21, 2, &[("w", &[64, 64]), ("b", &[64])])
        .into_iter()
        .enumerate()
        .map(|(i, step)| {
            let p = dir.join(format!("e{i}.safetensors"));
            write_safetensors(&p, &step, None);
            p
        })
        .collect()
}

#[test]
fn a_broken_evaluator_commits_nothing_and_names_the_command() {
    let (dir, repo) = init_repo();
    let files = trajectory_files(dir.path());
    run_ok(&repo, &["commit", files[0].to_str().unwrap()]);
    let before = repo_state(&repo);
    for (mode, extra, expect) in [
        ("fail", vec![], "exploded"),
        ("silent", vec![], "number"),
        ("nan", vec![], "nan"),
        ("sleep", vec!["--eval-timeout", "1"], "time"),
    ] {
        let cmd = evaluator(mode);
        let mut args = vec![
            "commit",
            files[1].to_str().unwrap(),
            "--bound",
            "auto",
            "--eval-cmd",
            &cmd,
        ];
        args.extend(extra.iter().copied());
        let err = run_err(&repo, &args);
        assert!(
            err.contains("search_eval.sh"),
            "{mode}: the error must name the command: {err}"
        );
        assert!(err.to_lowercase().contains(expect), "{mode}: {err}");
        assert_eq!(repo_state(&repo), before, "{mode}: the repository changed");
    }
}

#[test]
fn a_working_evaluator_commits_the_searched_bound() {
    let (dir, repo) = init_repo();
    let files = trajectory_files(dir.path());
    run_ok(&repo, &["commit", files[0].to_str().unwrap()]);
    let cmd = evaluator("ok");
    let out = run_json(
        &repo,
        &[
            "commit",
            files[1].to_str().unwrap(),
            "--bound",
            "auto",
            "--eval-cmd",
            &cmd,
        ],
    );
    assert_eq!(out["searched"], true, "{out}");
    let log = run_json(&repo, &["log"]);
    let meta = &log[0]["meta"];
    assert!(meta["search.bound"].is_string(), "{log}");
    let search = run_json(
        &repo,
        &["search", files[1].to_str().unwrap(), "--eval-cmd", &cmd],
    );
    assert!(
        search["evaluations"].as_u64().unwrap()
            <= search["full_scan_evaluations"].as_u64().unwrap()
    );
    assert!(search["chosen"]["loss"].as_f64().unwrap() <= 0.002);
}

/// Settings that would do nothing, and inputs the search cannot read, are refused before
/// anything runs, naming the flag or the file: search flags without `--bound auto`, a plot
/// path that cannot be written (before, the commit landed and then failed on its plot), a
/// frame sequence given to `--bound auto`, `search` or `status` (before, "header of
/// 379676406402707 bytes").
#[test]
fn unusable_search_settings_and_inputs_are_refused_before_anything_runs() {
    let (dir, repo) = init_repo();
    let files = trajectory_files(dir.path());
    let f1 = files[1].to_str().unwrap();
    run_ok(&repo, &["commit", files[0].to_str().unwrap()]);
    let before = repo_state(&repo);
    let err = run_err(&repo, &["commit", f1, "--alpha", "0.9", "--plot", "x.svg"]);
    assert!(err.contains("--alpha, --plot need --bound auto"), "{err}");
    let cmd = evaluator("ok");
    let bad_plot = dir.path().join("no/such/dir/c.svg");
    let err = run_err(
        &repo,
        &[
            "commit",
            f1,
            "--bound",
            "auto",
            "--eval-cmd",
            &cmd,
            "--plot",
            bad_plot.to_str().unwrap(),
        ],
    );
    assert!(err.contains("c.svg: cannot write it"), "{err}");
    assert_eq!(repo_state(&repo), before, "nothing was committed");
    let npy = dir.path().join("frames.npy");
    std::fs::write(&npy, b"\x93NUMPY").unwrap();
    let auto = ["--bound", "auto", "--eval-cmd", &cmd];
    let npy_s = npy.to_str().unwrap();
    let err = run_err(&repo, &[&["commit", npy_s][..], &auto].concat());
    assert!(
        err.contains(
            "frames.npy: --bound auto takes a safetensors checkpoint (a file or a directory of \
             shards), and this is a .npy"
        ),
        "{err}"
    );
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    let err = run_err(
        &repo,
        &["search", frames.to_str().unwrap(), "--eval-cmd", &cmd],
    );
    assert!(
        err.contains(
            "frames: search takes a safetensors checkpoint (a file or a directory of shards), \
             and this is a directory holding no *.safetensors file"
        ),
        "{err}"
    );
    let err = run_err(&repo, &["status", npy_s]);
    assert!(
        err.contains("status takes a safetensors checkpoint"),
        "{err}"
    );
    let err = run_err(
        &repo,
        &[&["commit", f1, "--kind", "frames"][..], &auto].concat(),
    );
    assert!(
        err.contains("commit a frame sequence under --bound abs:E or rel:E"),
        "{err}"
    );
    assert_eq!(repo_state(&repo), before);
}
