//! Tests of the bound search: synthetic evaluators with known answers, the exclusion rule, the
//! evaluator-call count, the commit mirror (the evaluated reconstruction is what checkout
//! returns, the coded size what the commit stores), `--eval-cmd` failures leaving the repository
//! unchanged, the plot, and the digits trajectory when its corpus is present.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::codec::lossy::Rounding;
use crate::dtype::Dtype;
use crate::repo::{CommitOptions, Repo, TensorInput};
use eval_cmd::last_number;

/// Deterministic pseudo-random weights, roughly N(0, 0.05), no zeros.
fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            let mut acc = 0.0f32;
            for _ in 0..4 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                acc += ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
            }
            let v = acc * 0.05;
            if v == 0.0 {
                1e-3
            } else {
                v
            }
        })
        .collect()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// An epoch of a fake training run: the weights drift a little each epoch.
fn epoch(k: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let base = weights(60_000, 7);
    let drift = weights(60_000, 100 + k as u64);
    let w: Vec<f32> = base
        .iter()
        .zip(&drift)
        .map(|(b, d)| b + 0.02 * k as f32 * d)
        .collect();
    let bias = weights(300, 11 + k as u64);
    let steps: Vec<u8> = (k as i64 * 100).to_le_bytes().to_vec();
    (bytes(&w), bytes(&bias), steps)
}

fn inputs<'a>(w: &'a [u8], b: &'a [u8], steps: &'a [u8]) -> Vec<TensorInput<'a>> {
    vec![
        TensorInput {
            name: "fc.weight".into(),
            dtype: Dtype::F32,
            shape: vec![200, 300],
            data: w,
        },
        TensorInput {
            name: "fc.bias".into(),
            dtype: Dtype::F32,
            shape: vec![300],
            data: b,
        },
        TensorInput {
            name: "steps".into(),
            dtype: Dtype::I64,
            shape: vec![1],
            data: steps,
        },
    ]
}

/// Largest relative error of the float tensors against the originals.
fn max_rel(original: &[TensorInput], got: &[crate::CheckedOutTensor]) -> f64 {
    let mut worst = 0.0f64;
    for t in got.iter().filter(|t| t.dtype == Dtype::F32) {
        let o = original.iter().find(|o| o.name == t.name).unwrap();
        for (a, b) in floats(o.data).iter().zip(floats(&t.data)) {
            worst = worst.max(((b as f64 - *a as f64) / *a as f64).abs());
        }
    }
    worst
}

fn quiet(opts: SearchOptions) -> SearchOptions {
    SearchOptions {
        progress: false,
        ..opts
    }
}

fn new_repo() -> (tempfile::TempDir, Repo) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path().join("repo")).unwrap();
    (dir, repo)
}

/// accuracy = 0.99 - 5 * (largest relative error): admissible iff the realized error is at
/// most 4e-4 under max loss 0.002.
fn linear_search(alpha: f64) -> SearchReport {
    let (_d, repo) = new_repo();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    let mut ev = |got: &[crate::CheckedOutTensor]| Ok(0.99 - 5.0 * max_rel(&t, got));
    repo.search_tensors(
        &t,
        None,
        &quiet(SearchOptions {
            alpha,
            max_loss: 0.002,
            // Nearest codes: the realized error of a keyframe is about the bound (a lattice
            // keyframe steps at half of it), which the expected bounds below rely on.
            commit: CommitOptions {
                rounding: Rounding::Nearest,
                ..CommitOptions::default()
            },
            ..SearchOptions::default()
        }),
        &mut ev,
    )
    .unwrap()
}

#[test]
fn default_candidates_are_log_spaced() {
    let c = default_candidates();
    assert_eq!(c.len(), DEFAULT_RANGE_POINTS);
    assert_eq!(c[0], 1e-4);
    assert_eq!(*c.last().unwrap(), 0.2);
    assert!(c.windows(2).all(|w| w[1] / w[0] > 1.4 && w[1] / w[0] < 1.9));
    assert_eq!(parse_range("1e-3:1e-1:3").unwrap(), vec![0.001, 0.01, 0.1]);
    assert!(parse_range("0:1").is_err());
    assert!(parse_range("x").is_err());
}

#[test]
fn high_alpha_takes_the_largest_admissible_bound() {
    let r = linear_search(0.99);
    assert_eq!(r.baseline_accuracy, 0.99);
    assert!(!r.fell_back_to_lossless);
    // Largest candidate whose error keeps the loss within 0.002 (realized error ~ the bound).
    let admissible: Vec<f64> = r
        .candidates
        .iter()
        .filter(|c| c.admissible == Some(true))
        .map(|c| c.bound)
        .collect();
    assert!(r.chosen.bound <= 4e-4, "{}", r.chosen.bound);
    assert_eq!(
        r.chosen.bound,
        admissible.iter().cloned().fold(0.0, f64::max)
    );
    // ...and it is the largest admissible candidate of all, evaluated or not.
    let next = r
        .candidates
        .iter()
        .find(|c| c.bound > r.chosen.bound)
        .unwrap();
    assert_eq!(next.admissible, Some(false), "the next bound was checked");
    assert!(r.chosen.loss <= 0.002);
    assert!(r.chosen.ratio > r.lossless_ratio);
}

#[test]
fn low_alpha_takes_a_small_bound() {
    let r = linear_search(0.01);
    assert_eq!(r.chosen.bound, r.candidates[0].bound, "{:#?}", r.candidates);
    let high = linear_search(0.99);
    assert!(r.chosen.bound < high.chosen.bound);
}

#[test]
fn excluded_candidates_never_score_and_calls_beat_a_full_scan() {
    let r = linear_search(0.5);
    for c in &r.candidates {
        match c.admissible {
            Some(false) => {
                assert!(c.loss.unwrap() > 0.002);
                assert!(c.score.is_none() && c.phi.is_none() && c.omega.is_none());
            }
            Some(true) => {
                let (phi, omega, score) = (c.phi.unwrap(), c.omega.unwrap(), c.score.unwrap());
                assert!((0.0..=1.0).contains(&phi) && (0.0..=1.0).contains(&omega));
                assert!((score - (0.5 * phi + 0.5 * omega)).abs() < 1e-12);
                assert!((omega - (1.0 - c.loss.unwrap() / 0.002).clamp(0.0, 1.0)).abs() < 1e-12);
            }
            None => assert!(!c.evaluated && c.accuracy.is_none()),
        }
    }
    // Phi is relative to the best admissible ratio.
    let best = r
        .candidates
        .iter()
        .filter_map(|c| c.phi)
        .fold(0.0, f64::max);
    assert_eq!(best, 1.0);
    assert_eq!(r.full_scan_evaluations, r.candidates.len() + 1);
    assert!(
        r.evaluations < r.full_scan_evaluations,
        "{} of {}",
        r.evaluations,
        r.full_scan_evaluations
    );
    assert_eq!(
        r.evaluations,
        1 + r.candidates.iter().filter(|c| c.evaluated).count()
    );
    // The same choice as a full scan.
    let (_d, repo) = new_repo();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    let mut ev = |got: &[crate::CheckedOutTensor]| Ok(0.99 - 5.0 * max_rel(&t, got));
    let full = repo
        .search_tensors(
            &t,
            None,
            &quiet(SearchOptions {
                full_scan: true,
                ..SearchOptions::default()
            }),
            &mut ev,
        )
        .unwrap();
    assert_eq!(full.evaluations, full.full_scan_evaluations);
    assert_eq!(full.chosen.bound, r.chosen.bound);
}

#[test]
fn nothing_admissible_falls_back_to_lossless() {
    let (_d, repo) = new_repo();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    let mut ev =
        |got: &[crate::CheckedOutTensor]| Ok(if max_rel(&t, got) == 0.0 { 0.9 } else { 0.5 });
    let r = repo
        .search_tensors(&t, None, &quiet(SearchOptions::default()), &mut ev)
        .unwrap();
    assert!(r.fell_back_to_lossless);
    assert_eq!(r.bound(), Bound::Lossless);
    assert_eq!(r.chosen.loss, 0.0);
    assert_eq!(r.chosen.ratio, r.lossless_ratio);
    assert!(r.candidates.iter().all(|c| c.score.is_none()));
    // The coarse scan only: every other candidate, and the smallest.
    assert_eq!(r.evaluations, 1 + 9, "{:#?}", r.candidates);
    assert!(r.candidates[0].evaluated);
    assert!(r
        .table()
        .contains("no candidate keeps the loss within 0.002: choosing lossless"));
}

/// When only the smallest bound keeps the loss, the search finds it: the coarse scan, every
/// other candidate from the largest down, skips it when the count is even, and refining only
/// looks between evaluated candidates.
#[test]
fn only_the_smallest_bound_admissible_is_chosen() {
    let (_d, repo) = new_repo();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    let opts = quiet(SearchOptions::default());
    let smallest = opts.validated_candidates().unwrap()[0];
    assert_eq!(opts.validated_candidates().unwrap().len() % 2, 0);
    let mut ev = |got: &[crate::CheckedOutTensor]| {
        Ok(if max_rel(&t, got) <= smallest {
            0.9
        } else {
            0.5
        })
    };
    let r = repo.search_tensors(&t, None, &opts, &mut ev).unwrap();
    assert!(!r.fell_back_to_lossless, "{}", r.table());
    assert_eq!(r.chosen.bound, smallest);
}

/// A bound that stores no less than lossless never wins: lossless loses nothing. Here the
/// parent holds the very same tensors exactly, so lossless stores nothing at all.
#[test]
fn a_bound_storing_no_less_than_lossless_loses_to_it() {
    let (_d, repo) = new_repo();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    repo.commit_tensors(&t, None, &CommitOptions::default())
        .unwrap();
    let mut ev = |_: &[crate::CheckedOutTensor]| Ok(0.9);
    let r = repo
        .search_tensors(&t, None, &quiet(SearchOptions::default()), &mut ev)
        .unwrap();
    assert!(r.fell_back_to_lossless);
    assert_eq!(r.bound(), Bound::Lossless);
    assert!(r.candidates.iter().any(|c| c.admissible == Some(true)));
    assert!(
        r.table()
            .contains("no candidate within the loss stores less than lossless: choosing lossless"),
        "{}",
        r.table()
    );
}

/// Once an admissible candidate loses nothing, no smaller bound can win: the scan stops there.
#[test]
fn a_lossless_frontier_ends_the_search() {
    let (_d, repo) = new_repo();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    // Accuracy drops only past 1% error.
    let mut ev =
        |got: &[crate::CheckedOutTensor]| Ok(if max_rel(&t, got) > 0.01 { 0.8 } else { 0.9 });
    let opts = SearchOptions {
        // Realized error ~ the bound, as above.
        commit: CommitOptions {
            rounding: Rounding::Nearest,
            ..CommitOptions::default()
        },
        ..SearchOptions::default()
    };
    let r = repo
        .search_tensors(&t, None, &quiet(opts), &mut ev)
        .unwrap();
    assert_eq!(r.chosen.bound, 0.0096, "{:#?}", r.candidates);
    assert_eq!(r.chosen.loss, 0.0);
    assert!(r.evaluations <= 6, "{} calls", r.evaluations);
}

#[test]
fn ties_go_to_the_larger_bound() {
    let (_d, repo) = new_repo();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    let mut ev = |_: &[crate::CheckedOutTensor]| Ok(0.75);
    let r = repo
        .search_tensors(
            &t,
            None,
            &quiet(SearchOptions {
                alpha: 0.0,
                candidates: vec![1e-3, 1e-2, 3e-2, 1e-1],
                ..SearchOptions::default()
            }),
            &mut ev,
        )
        .unwrap();
    assert_eq!(r.chosen.bound, 1e-1);
}

#[test]
fn evaluator_errors_and_nan_are_errors() {
    let (_d, repo) = new_repo();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    let mut failing = |_: &[crate::CheckedOutTensor]| Err("no GPU".to_string());
    let e = repo
        .search_tensors(&t, None, &quiet(SearchOptions::default()), &mut failing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no GPU"), "{e}");
    let mut nan = |_: &[crate::CheckedOutTensor]| Ok(f64::NAN);
    let e = repo
        .search_tensors(&t, None, &quiet(SearchOptions::default()), &mut nan)
        .unwrap_err()
        .to_string();
    assert!(e.contains("NaN"), "{e}");
    for bad in [
        SearchOptions {
            alpha: 1.5,
            ..SearchOptions::default()
        },
        SearchOptions {
            candidates: vec![],
            ..SearchOptions::default()
        },
        SearchOptions {
            candidates: vec![1.0],
            ..SearchOptions::default()
        },
    ] {
        let mut ev = |_: &[crate::CheckedOutTensor]| Ok(1.0);
        assert!(repo.search_tensors(&t, None, &bad, &mut ev).is_err());
    }
}

/// A flag set while the evaluator scores the original stops the search before it codes a
/// candidate (coding one is the long part on a large model): no second call, `Interrupted`.
#[test]
fn an_interrupt_stops_the_search_before_the_next_candidate() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (_d, repo) = new_repo();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    let flag = Arc::new(AtomicBool::new(false));
    let stoppable = repo.clone().with_interrupt(flag.clone());
    let mut calls = 0;
    let mut ev = |_: &[crate::CheckedOutTensor]| {
        calls += 1;
        flag.store(true, Ordering::Relaxed);
        Ok(0.9)
    };
    let e = stoppable
        .search_tensors(&t, None, &quiet(SearchOptions::default()), &mut ev)
        .unwrap_err();
    assert!(matches!(e, crate::Error::Interrupted), "{e}");
    assert_eq!(calls, 1);
}

/// The search codes candidates exactly as the commit does: along a chain with deltas and a
/// keyframe, the evaluated reconstruction is what checkout returns and the coded size is what
/// the commit stores; the estimate is within a factor of two of it.
#[test]
fn candidates_mirror_the_commit_along_a_chain() {
    let (_d, repo) = new_repo();
    repo.config_set("keyframe_every", "2").unwrap();
    for k in 0..4 {
        let (w, b, s) = epoch(k);
        let t = inputs(&w, &b, &s);
        let mut seen: Vec<Vec<crate::CheckedOutTensor>> = Vec::new();
        let mut ev = |got: &[crate::CheckedOutTensor]| {
            seen.push(got.to_vec());
            Ok(0.99 - 5.0 * max_rel(&t, got))
        };
        let opts = quiet(SearchOptions {
            candidates: vec![1e-4, 3e-4, 1e-3],
            max_loss: 0.01,
            alpha: 0.9,
            ..SearchOptions::default()
        });
        let r = repo.search_tensors(&t, None, &opts, &mut ev).unwrap();
        let chosen = r.bound();
        assert_eq!(chosen, Bound::Rel(1e-3), "{:#?}", r.candidates);
        let c = repo
            .commit_tensors(
                &t,
                None,
                &CommitOptions {
                    bound: Some(chosen),
                    ..CommitOptions::default()
                },
            )
            .unwrap();
        let row = r.candidates.iter().find(|c| c.bound == 1e-3).unwrap();
        assert_eq!(row.stored_bytes, Some(c.stored_bytes), "epoch {k}");
        let est = row.est_over_real.unwrap();
        assert!((0.5..2.0).contains(&est), "est/real {est} at epoch {k}");
        let back = repo.checkout("HEAD", None).unwrap();
        let evaluated = seen
            .iter()
            .find(|s| {
                s.iter().all(|t| {
                    back.tensor(&t.name)
                        .is_some_and(|b| b.data == t.data && b.shape == t.shape)
                })
            })
            .is_some();
        assert!(
            evaluated,
            "checkout of epoch {k} differs from every evaluated candidate"
        );
        assert_eq!(r.parent, c.parent);
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/search_eval.sh")
}

fn script_cmd(mode: &str) -> String {
    format!(
        "sh '{}' {mode} {{path}}",
        script().display().to_string().replace('\'', "'\\''")
    )
}

fn write_file(dir: &Path, k: usize) -> PathBuf {
    let (w, b, s) = epoch(k);
    let t = inputs(&w, &b, &s);
    let specs: Vec<_> = t
        .iter()
        .map(|t| (t.name.clone(), t.dtype, t.shape.clone()))
        .collect();
    let (raw, order) = crate::safetensors_io::canonical_header(None, &specs).unwrap();
    let mut out = Vec::new();
    crate::safetensors_io::write_header_prefix(&mut out, &raw).unwrap();
    for info in order {
        out.extend_from_slice(t.iter().find(|t| t.name == info.name).unwrap().data);
    }
    let p = dir.join(format!("epoch_{k}.safetensors"));
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn last_number_reads_what_evaluators_print() {
    assert_eq!(last_number("acc 0.5\nfinal accuracy: 0.93\n"), Some(0.93));
    assert_eq!(last_number("epoch 30 acc=0.9944."), Some(0.9944));
    assert_eq!(last_number("top-1: 99.5%"), Some(0.995));
    assert_eq!(last_number("[0.1, 0.25]"), Some(0.25));
    assert!(last_number("accuracy nan").unwrap().is_nan());
    assert_eq!(last_number("no digits here"), None);
    assert_eq!(last_number(""), None);
}

#[test]
fn eval_cmd_runs_on_the_candidate_file() {
    let mut ev = CommandEvaluator::new(&script_cmd("ok"), Some(Duration::from_secs(60))).unwrap();
    let (w, b, s) = epoch(0);
    let t: Vec<crate::CheckedOutTensor> = inputs(&w, &b, &s)
        .into_iter()
        .map(|t| crate::CheckedOutTensor {
            name: t.name,
            dtype: t.dtype,
            shape: t.shape,
            data: t.data.to_vec(),
        })
        .collect();
    let acc = ev.evaluate(&t).unwrap();
    let size = 240_000 + 1_200 + 8 + 8 + {
        let specs: Vec<_> = t
            .iter()
            .map(|t| (t.name.clone(), t.dtype, t.shape.clone()))
            .collect();
        crate::safetensors_io::canonical_header(None, &specs)
            .unwrap()
            .0
            .len()
    };
    assert!(
        (acc - (0.9 + (size % 1000) as f64 / 1e6)).abs() < 1e-9,
        "{acc} for {size} bytes"
    );
    assert_eq!(ev.calls(), 1);
}

/// A command that leaves a process running in the background holding its stdout (a loader
/// worker, a daemon) is not waited for: its printed number is the result, within a second, and
/// the background process is stopped. Before, the reader waited for the pipe's end for the
/// rest of the timeout, then reported "no number".
#[test]
fn an_eval_cmd_leaving_a_background_process_is_read_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("bg.pid");
    let cmd = format!("sleep 30 & echo $! > {} ; echo 0.75 #", pid_file.display());
    let mut ev = CommandEvaluator::new(&cmd, Some(Duration::from_secs(60))).unwrap();
    let started = Instant::now();
    let acc = ev.run_on_file(&pid_file).unwrap();
    assert_eq!(acc, 0.75);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Stopped: gone, or a zombie until its parent (init) reaps it, once the kill is delivered
    // (a loaded machine may take a moment to schedule it).
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .to_string()
    };
    let stopped = |s: &str| s.is_empty() || s.starts_with('Z');
    let waited = Instant::now();
    while !stopped(&state()) && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(stopped(&state()), "{pid}: {}", state());
}
#[test]
fn failing_silent_nan_and_slow_eval_cmds_commit_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path().join("repo")).unwrap();
    let f0 = write_file(dir.path(), 0);
    let f1 = write_file(dir.path(), 1);
    repo.commit_file(&f0, &CommitOptions::default()).unwrap();
    let before = repo.log(None, None).unwrap().len();
    for (mode, expect, timeout) in [
        ("fail", "failed", 60),
        ("silent", "no number", 60),
        ("nan", "NaN", 60),
        ("sleep", "timed out", 1),
    ] {
        let cmd = script_cmd(mode);
        let mut ev = CommandEvaluator::new(&cmd, Some(Duration::from_secs(timeout))).unwrap();
        let started = Instant::now();
        let err = repo
            .commit_checkpoint_auto(
                &f1,
                &CommitOptions::default(),
                &AutoOptions {
                    search: quiet(SearchOptions::default()),
                    research_every: Some(3),
                },
                &mut ev.as_evaluator(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "{mode}: {err}");
        assert!(
            err.contains("search_eval.sh"),
            "{mode}: the command is named: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{mode} was not killed in time"
        );
        assert_eq!(repo.log(None, None).unwrap().len(), before, "{mode}");
        assert_eq!(
            repo.config_get("search.bound.main").unwrap(),
            None,
            "{mode}"
        );
        assert_eq!(
            repo.config_get("search.since.main").unwrap(),
            None,
            "{mode}"
        );
        assert_eq!(repo.config_get("search.research_every.main").unwrap(), None);
    }
}

#[test]
fn auto_commits_search_every_n_and_remember_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path().join("repo")).unwrap();
    let mut searched = Vec::new();
    for k in 0..5 {
        let (w, b, s) = epoch(k);
        let t = inputs(&w, &b, &s);
        let mut ev = |got: &[crate::CheckedOutTensor]| Ok(0.99 - 5.0 * max_rel(&t, got));
        let auto = AutoOptions {
            search: quiet(SearchOptions {
                alpha: 0.99,
                ..SearchOptions::default()
            }),
            research_every: if k == 0 { Some(2) } else { None },
        };
        // Nearest codes: realized error ~ the bound for keyframes and deltas alike, so every
        // recheck of a reused bound passes and only the interval decides.
        let commit = CommitOptions {
            rounding: Rounding::Nearest,
            ..CommitOptions::default()
        };
        let r = repo
            .commit_tensors_auto(&t, None, &commit, &auto, &mut ev)
            .unwrap();
        searched.push(r.searched);
        assert_eq!(r.research_every, 2);
        let (_, m) = repo.show("HEAD").unwrap();
        assert_eq!(m.bound.to_string(), r.commit.bound.to_string());
        if r.searched {
            let s = r.search.as_ref().unwrap();
            assert_eq!(m.meta["search.bound"], s.chosen.spec);
            assert_eq!(m.meta["search.evaluations"], s.evaluations.to_string());
            assert!(m.meta.contains_key("search.ratio") && m.meta.contains_key("search.accuracy"));
            assert_eq!(
                repo.config_get("search.bound.main").unwrap().unwrap(),
                s.chosen.spec
            );
        } else {
            assert_eq!(m.meta["search.reused_bound"], r.commit.bound.to_string());
        }
    }
    assert_eq!(searched, [true, false, true, false, true]);
    assert_eq!(repo.config_get("search.since.main").unwrap().unwrap(), "1");
    // A plain commit is stored as configured (lossless by default), not under the searched
    // bound, which no evaluator checked on it.
    assert_eq!(repo.config_get("bound.main").unwrap(), None);
    let (w, b, s) = epoch(5);
    let t = inputs(&w, &b, &s);
    repo.commit_tensors(&t, None, &CommitOptions::default())
        .unwrap();
    let (_, m) = repo.show("HEAD").unwrap();
    assert_eq!(m.bound, Bound::Lossless);
    assert_eq!(
        max_rel(&t, &repo.checkout("HEAD", None).unwrap().tensors),
        0.0
    );
}

/// Equal chunks are stored once by the commit's pack (BatchNorm counters of one value in every
/// layer), and the search counts them once too: its ratio is the commit's (cnn-digits epoch 20
/// at rel:0.096 counted 14 counters too many, 93,882 bytes against the commit's 92,298).
#[test]
fn the_search_counts_equal_chunks_once_as_the_commit_stores_them() {
    // Six equal counters (exact), and a bias equal to another in both snapshots (so its delta
    // is the other's, chunk for chunk).
    let with_copies = |mut t: Vec<TensorInput<'static>>| {
        let counters: Vec<TensorInput> = (0..6)
            .map(|k| TensorInput {
                name: format!("bn{k}.num_batches_tracked"),
                ..t[2].clone()
            })
            .collect();
        let same_bias = TensorInput {
            name: "fc2.bias".into(),
            ..t[1].clone()
        };
        t.extend(counters);
        t.push(same_bias);
        t
    };
    let leak = |v: Vec<u8>| -> &'static [u8] { Box::leak(v.into_boxed_slice()) };
    let (w0, b0, s0) = epoch(0);
    let parent = with_copies(inputs(leak(w0), leak(b0), leak(s0)));
    let (w, b, s) = epoch(1);
    let t = with_copies(inputs(leak(w), leak(b), leak(s)));
    let (_d, repo) = new_repo();
    repo.commit_tensors(&parent, None, &CommitOptions::default())
        .unwrap();
    let mut ev = |_: &[crate::CheckedOutTensor]| Ok(0.9);
    let opts = quiet(SearchOptions {
        candidates: vec![0.05],
        full_scan: true,
        ..SearchOptions::default()
    });
    let r = repo.search_tensors(&t, None, &opts, &mut ev).unwrap();
    let committed = repo
        .commit_tensors(
            &t,
            None,
            &CommitOptions {
                bound: Some(Bound::Rel(0.05)),
                ..CommitOptions::default()
            },
        )
        .unwrap();
    assert_eq!(r.candidates[0].stored_bytes, Some(committed.stored_bytes));
    // Lossless, in a repository of its own (here it would reuse the counters just stored).
    let (_d2, alone) = new_repo();
    alone
        .commit_tensors(&parent, None, &CommitOptions::default())
        .unwrap();
    let lossless = alone
        .commit_tensors(&t, None, &CommitOptions::default())
        .unwrap();
    assert_eq!(
        r.lossless_ratio,
        ratio_of(r.logical_bytes, lossless.stored_bytes)
    );
}

/// An automatic commit writes `search.*` meta itself: a caller's key there is refused, not
/// silently replaced.
#[test]
fn an_automatic_commit_refuses_meta_it_would_overwrite() {
    let (_d, repo) = new_repo();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    let mut ev = |_: &[crate::CheckedOutTensor]| Ok(0.9);
    let mut opts = CommitOptions::default();
    opts.meta.insert("search.note".into(), "mine".into());
    let e = repo
        .commit_tensors_auto(&t, None, &opts, &AutoOptions::default(), &mut ev)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid meta: \"search.note\": keys starting with \"search.\" hold an automatic commit's figures; name it otherwise"
    );
    assert!(repo.log(None, None).unwrap().is_empty());
}

/// A repository whose automatic commits kept their choice as the branch's bound (before
/// `search.bound.BRANCH`) goes on reusing it.
#[test]
fn an_older_repositorys_remembered_bound_is_still_reused() {
    let (_d, repo) = new_repo();
    repo.config_set("bound.main", "rel:0.001").unwrap();
    repo.config_set("search.since.main", "1").unwrap();
    repo.config_set("search.research_every.main", "3").unwrap();
    let (w, b, s) = epoch(0);
    let t = inputs(&w, &b, &s);
    let mut ev = |_: &[crate::CheckedOutTensor]| Ok(0.9);
    let r = repo
        .commit_tensors_auto(
            &t,
            None,
            &CommitOptions::default(),
            &AutoOptions {
                search: quiet(SearchOptions::default()),
                research_every: None,
            },
            &mut ev,
        )
        .unwrap();
    assert!(!r.searched);
    assert_eq!(r.commit.bound.to_string(), "rel:0.001");
}

/// A remembered bound is checked on every snapshot that reuses it: when the model grows
/// sensitive (here at k = 2 the same error costs ten times the accuracy), the commit searches
/// again instead of storing a snapshot that lost more than `max_loss`.
#[test]
fn a_reused_bound_that_now_loses_accuracy_is_searched_again() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path().join("repo")).unwrap();
    // Nearest codes: realized error ~ the bound for keyframes and deltas alike.
    let commit = CommitOptions {
        rounding: Rounding::Nearest,
        ..CommitOptions::default()
    };
    let mut reports = Vec::new();
    let mut third_calls = Vec::new();
    for k in 0..3 {
        let (w, b, s) = epoch(k);
        let t = inputs(&w, &b, &s);
        let gain = if k < 2 { 5.0 } else { 50.0 };
        let mut calls = Vec::new();
        let mut ev = |got: &[crate::CheckedOutTensor]| {
            let mut h = blake3::Hasher::new();
            got.iter().for_each(|t| {
                h.update(&t.data);
            });
            calls.push(h.finalize());
            Ok(0.99 - gain * max_rel(&t, got))
        };
        let auto = AutoOptions {
            search: quiet(SearchOptions {
                alpha: 0.99,
                ..SearchOptions::default()
            }),
            research_every: if k == 0 { Some(10) } else { None },
        };
        let r = repo
            .commit_tensors_auto(&t, None, &commit, &auto, &mut ev)
            .unwrap();
        let (_, m) = repo.show("HEAD").unwrap();
        reports.push((r, m));
        third_calls = calls;
    }
    let (first, _) = &reports[0];
    assert!(first.searched && first.recheck.is_none());
    let (second, m) = &reports[1];
    assert!(!second.searched, "the bound still holds at k = 1");
    let check = second.recheck.as_ref().expect("a reused bound is checked");
    assert!(check.chosen.loss <= 0.002 && check.evaluations == 2);
    assert_eq!(
        m.meta["search.reused_bound"],
        first.commit.bound.to_string()
    );
    assert_eq!(
        m.meta["search.reused_loss"],
        format!("{}", check.chosen.loss)
    );
    let (third, m) = &reports[2];
    assert!(third.searched, "the failed check searches again");
    let check = third.recheck.as_ref().unwrap();
    assert!(check.fell_back_to_lossless);
    // The search takes the check's two evaluations (the original and the remembered bound)
    // instead of repeating them (audit frames-8), and reports the same baseline.
    let search = third.search.as_ref().unwrap();
    let distinct: std::collections::HashSet<_> = third_calls.iter().collect();
    assert_eq!(
        distinct.len(),
        third_calls.len(),
        "the same tensors evaluated twice"
    );
    assert_eq!(third_calls.len(), check.evaluations + search.evaluations);
    assert_eq!(search.baseline_accuracy, check.baseline_accuracy);
    let rejected = search
        .candidates
        .iter()
        .find(|r| r.bound == check.candidates[0].bound);
    let rejected = rejected.expect("the remembered bound is one of the search's candidates");
    assert!(rejected.evaluated && rejected.admissible == Some(false));
    assert_eq!(
        m.meta["search.rejected_bound"],
        first.commit.bound.to_string()
    );
    let eps = |b: Bound| match b {
        Bound::Rel(e) => e,
        _ => 0.0,
    };
    let (first_bound, third_bound) = (first.commit.bound, third.commit.bound);
    assert!(
        eps(third_bound) < eps(first_bound),
        "{first_bound} then {third_bound}"
    );
    let loss = third.search.as_ref().unwrap().chosen.loss;
    assert!(
        loss <= 0.002,
        "the new bound keeps the loss within the limit: {loss}"
    );
    assert_eq!(
        repo.config_get("search.bound.main").unwrap().unwrap(),
        third_bound.to_string()
    );
}

/// Tags balance and nothing but whitespace lies outside the root element.
fn well_formed_svg(text: &str) -> Result<usize, String> {
    let body = text.trim_start();
    let body = match body.strip_prefix("<?xml") {
        Some(rest) => &rest[rest.find("?>").ok_or("unterminated XML declaration")? + 2..],
        None => body,
    };
    let mut stack: Vec<String> = Vec::new();
    let mut elements = 0;
    let mut rest = body;
    let mut closed_root = false;
    while let Some(start) = rest.find('<') {
        if closed_root && !rest[..start].trim().is_empty() {
            return Err("text after the root element".into());
        }
        let end = rest[start..].find('>').ok_or("unterminated tag")? + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or("close without open")?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
            closed_root = stack.is_empty();
        } else if !tag.starts_with('!') && !tag.starts_with('?') {
            elements += 1;
            let name: String = tag
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .collect();
            if !tag.ends_with('/') {
                stack.push(name);
            } else {
                closed_root = stack.is_empty();
            }
        }
        rest = &rest[end + 1..];
    }
    if !stack.is_empty() {
        return Err(format!("unclosed {stack:?}"));
    }
    Ok(elements)
}

#[test]
fn plot_is_a_well_formed_svg() {
    let r = linear_search(0.5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curve.svg");
    plot_svg(&r, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("<svg"), "{text}");
    let elements = well_formed_svg(&text).unwrap();
    assert!(elements > 50, "{elements} elements");
    assert!(text.contains("chosen rel:"), "the choice is labelled");
    assert!(text.contains("accuracy") && text.contains("compression ratio"));
    let table = r.table();
    assert!(
        table.contains("est_err") && table.contains("chosen rel:"),
        "{table}"
    );
}

#[test]
fn json_has_the_documented_fields() {
    let r = linear_search(0.5);
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    for k in ["bound", "ratio", "accuracy", "loss"] {
        assert!(v["chosen"][k].is_number(), "chosen.{k}");
    }
    assert!(v["baseline_accuracy"].is_number());
    assert!(v["evaluations"].is_number());
    let c = v["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 16);
    for k in [
        "bound",
        "est_ratio",
        "ratio",
        "accuracy",
        "loss",
        "phi",
        "omega",
        "score",
        "evaluated",
    ] {
        assert!(c[0].get(k).is_some(), "candidates[].{k}");
    }
}

#[allow(dead_code, unused_imports)]
#[path = "../../examples/search_digits.rs"]
mod digits_example;

/// The digits MLP trajectory (`examples/search_digits.rs`): the last checkpoint loses no more
/// than allowed and the trajectory compresses better than lossless, with fewer evaluator calls
/// than full scans.
#[test]
fn digits_trajectory_keeps_accuracy_and_beats_lossless() {
    let corpus = digits_example::corpus_dir();
    if !corpus.join("testset.safetensors").exists() {
        crate::report_skip(
            "search::tests::digits_trajectory_keeps_accuracy_and_beats_lossless",
            &format!("no digits-mlp corpus at {}", corpus.display()),
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = digits_example::run(&corpus, dir.path(), 10, SearchOptions::default(), false).unwrap();
    assert!(o.last_loss() <= o.max_loss, "loss {}", o.last_loss());
    assert!(
        o.ratio > o.lossless_ratio,
        "{} vs lossless {}",
        o.ratio,
        o.lossless_ratio
    );
    assert!(o.evaluations < o.full_scan_evaluations);
    // Every snapshot, reused bound or not, keeps its loss within the limit (the rechecks).
    assert!(
        o.worst_loss.0 <= o.max_loss,
        "epoch {} lost {}",
        o.worst_loss.1,
        o.worst_loss.0
    );
    // A search runs every 10 commits, or sooner where the remembered bound failed its check.
    assert_eq!(o.searches[0].epoch, 0);
    for w in o.searches.windows(2) {
        let gap = w[1].epoch - w[0].epoch;
        let ok = if w[1].after_rejection {
            gap <= 10
        } else {
            gap == 10
        };
        assert!(ok, "search at epoch {} after {}", w[1].epoch, w[0].epoch);
    }
}
