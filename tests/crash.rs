//! Crash safety: `kill -9` at any moment of a commit leaves a repository that fsck passes, whose
//! HEAD is either the old snapshot or the complete new one, and that takes the next commit.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// F32 elements of the large tensor: 64 MiB.
const BIG_ELEMENTS: usize = 16 << 20;

/// Every commit here is a keyframe: the write path a kill can interrupt (pack temp file, rename,
/// index update) is the same as for deltas, and keyframes keep the test fast.
const KEYFRAMES: [&str; 2] = ["--keyframe-every", "1"];

/// Checkpoints of a large "training run": the big tensor drifts by small noise each generation
/// and a small tensor changes completely.
struct Run {
    rng: Rng,
    big: Vec<f32>,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = Rng::new(seed);
        let big = (0..BIG_ELEMENTS).map(|_| rng.unit()).collect();
        Run { rng, big }
    }

    /// Advances one generation and writes it to `path`; returns the file bytes.
    fn next_file(&mut self, path: &Path, generation: usize) -> Vec<u8> {
        // Perturb a strided subset: cheap to generate, yet touches every chunk.
        let stride = 7 + generation % 5;
        let mut i = self.rng.below(stride as u64) as usize;
        while i < self.big.len() {
            self.big[i] += self.rng.unit() * 1e-3;
            i += stride;
        }
        let tensors = vec![
            Tensor {
                name: "big.weight".into(),
                dtype: snapstore::Dtype::F32,
                shape: vec![4096, 4096],
                data: f32_to_bytes(&self.big),
            },
            Tensor::f32(&mut self.rng, "head.bias", &[1000], 1.0),
        ];
        let meta = metadata(&[("generation", &generation.to_string())]);
        write_safetensors(path, &tensors, Some(&meta))
    }
}

/// HEAD's snapshot id and its first parent, if any.
fn head(repo: &Path) -> Option<(String, Option<String>)> {
    let log = run_json(repo, &["log", "-n", "1"]);
    let entry = log.as_array().unwrap().first()?.clone();
    Some((
        entry["id"].as_str().unwrap().to_string(),
        entry["parents"][0].as_str().map(str::to_string),
    ))
}

/// Files in `repo/packs`: (temp files with their sizes, number of finished packs).
fn packs_dir_state(repo: &Path) -> (Vec<(String, u64)>, usize) {
    let mut temps = Vec::new();
    let mut packs = 0;
    for e in std::fs::read_dir(repo.join("packs")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            temps.push((name, e.metadata().map_or(0, |m| m.len())));
        } else if name.ends_with(".pack") {
            packs += 1;
        }
    }
    (temps, packs)
}

/// When to kill a running commit.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// This long after spawning (hashing, planning, coding).
    After(Duration),
    /// Once the pack being written holds at least this many bytes.
    TempPackAtLeast(u64),
    /// Once the new pack has been renamed into place (the index is being updated), plus a delay.
    PackPublished(Duration),
}

/// Waits for `point` (or for the commit to end), then SIGKILLs the child. Returns whether the
/// commit exited successfully on its own.
fn kill_at(repo: &Path, child: &mut Child, point: KillPoint) -> bool {
    let started = Instant::now();
    let packs_before = packs_dir_state(repo).1;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        let reached = match point {
            KillPoint::After(d) => started.elapsed() >= d,
            KillPoint::TempPackAtLeast(n) => packs_dir_state(repo).0.iter().any(|t| t.1 >= n),
            KillPoint::PackPublished(d) => {
                if packs_dir_state(repo).1 > packs_before {
                    std::thread::sleep(d);
                    true
                } else {
                    false
                }
            }
        };
        if reached || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // SIGKILL on Unix; an error only means it already exited.
    let _ = child.kill();
    child.wait().unwrap().success()
}

#[test]
fn kill_9_during_commit_leaves_old_or_complete_new_snapshot() {
    let (dir, repo) = init_repo();
    let file = dir.path().join("ckpt.safetensors");
    let out = dir.path().join("out.safetensors");
    let mut training = Run::new(41);
    let mut jitter = Rng::new(42);
    let mut ms = |base: u64, spread: u64| Duration::from_millis(base + jitter.below(spread + 1));

    let mut bytes = training.next_file(&file, 0);
    let started = Instant::now();
    run_ok(
        &repo,
        &[
            &["commit", file.to_str().unwrap(), "-m", "g0"][..],
            &KEYFRAMES,
        ]
        .concat(),
    );
    let full = started.elapsed();
    eprintln!("uninterrupted commit of 64 MiB: {full:?}");

    let points = [
        KillPoint::After(Duration::ZERO),
        KillPoint::After(ms(5, 10)),
        KillPoint::After(ms(30, 40)),
        KillPoint::TempPackAtLeast(1 << 20),
        KillPoint::TempPackAtLeast((12 + jitter.below(8)) << 20),
        KillPoint::TempPackAtLeast((36 + jitter.below(8)) << 20),
        KillPoint::PackPublished(Duration::ZERO),
        KillPoint::PackPublished(Duration::from_micros(500 + jitter.below(1500))),
        KillPoint::After(full.mul_f64(0.6 + jitter.unit().abs() as f64 * 0.3)),
        KillPoint::After(full.mul_f64(1.0 + jitter.unit().abs() as f64 * 0.5)),
    ];
    let (mut landed, mut killed) = (0, 0);
    let mut generation = 0;
    for (attempt, point) in points.into_iter().enumerate() {
        let before = head(&repo).expect("HEAD exists").0;
        let mut child = command(&repo)
            .args([
                "commit",
                file.to_str().unwrap(),
                "-m",
                &format!("g{generation}"),
            ])
            .args(KEYFRAMES)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let succeeded = kill_at(&repo, &mut child, point);

        let o = run(&repo, &["fsck", "--quick"]);
        assert!(
            o.status.success(),
            "attempt {attempt} (kill at {point:?}): fsck failed:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
        let (now, parent) = head(&repo).expect("HEAD survives");
        if now != before {
            // The commit got through before the kill: it must be whole and on the old HEAD.
            landed += 1;
            assert_eq!(
                parent.as_deref(),
                Some(before.as_str()),
                "attempt {attempt}"
            );
            run_ok(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
            assert!(
                std::fs::read(&out).unwrap() == bytes,
                "attempt {attempt} ({point:?}): new HEAD does not check out as the committed file"
            );
            // Next attempt commits a new generation.
            generation += 1;
            bytes = training.next_file(&file, generation);
        } else {
            killed += 1;
            assert!(
                !succeeded,
                "attempt {attempt}: commit succeeded but HEAD did not move"
            );
        }
    }
    eprintln!("{killed} commits killed, {landed} landed");
    assert!(killed >= 3, "too few commits were interrupted ({killed})");

    // The repository takes the next commit, checks out byte for byte, leaves no temp files,
    // and passes a full fsck; gc then clears what the killed commits left behind.
    generation += 1;
    let bytes = training.next_file(&file, generation);
    let before = head(&repo).unwrap().0;
    let c = run_json(&repo, &["commit", file.to_str().unwrap(), "-m", "after"]);
    assert_eq!(c["parent"], before.as_str());
    run_ok(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == bytes);
    let (temps, _) = packs_dir_state(&repo);
    assert!(temps.is_empty(), "stale temp files in packs/: {temps:?}");
    assert_fsck_clean(&repo);
    run_ok(&repo, &["gc", "--grace", "0"]);
    assert_fsck_clean(&repo);
    run_ok(&repo, &["checkout", "HEAD~1", "-o", out.to_str().unwrap()]);
    assert_eq!(head(&repo).unwrap().0, c["snapshot"].as_str().unwrap());
}

/// A commit killed while sled writes its snapshot file leaves `index/snap.*.generating` behind
/// (sled issue #1527). sled took that file as the newest snapshot, so every later command, a
/// read-only `fsck` as well as the next commit, failed with "Read corrupted data" until the
/// index was rebuilt: the likely cause of the kill test's rare failure above (the same message,
/// a kill ~1.5 ms after the pack is published, when the index opens). Now the file is ignored,
/// and the next snapshot sled writes removes it.
#[test]
fn a_snapshot_file_cut_short_by_a_kill_breaks_no_later_command() {
    let (dir, repo) = init_repo();
    let file = dir.path().join("ckpt.safetensors");
    let mut rng = Rng::new(9);
    let mut commit = |message: &str| {
        write_safetensors(&file, &[Tensor::f32(&mut rng, "w", &[256], 1.0)], None);
        run_ok(&repo, &["commit", file.to_str().unwrap(), "-m", message]);
    };
    commit("before the kill");
    // Named past any snapshot sled has written, as the one being written when a kill lands is.
    let cut_short = repo.join("index").join("snap.7FFFFFFFFFFFFFFF.generating");
    std::fs::write(&cut_short, b"the first bytes of a snapshot").unwrap();

    run_ok(&repo, &["fsck", "--quick"]);
    run_ok(&repo, &["log", "-n", "1"]);
    commit("after the kill");
    commit("once more");
    assert!(
        !cut_short.exists(),
        "the unfinished snapshot file was not removed"
    );
    assert_eq!(run_json(&repo, &["log"]).as_array().unwrap().len(), 3);
    assert_fsck_clean(&repo);
}

/// The long version of the crash test (issue #7): `SNAPSTORE_CRASH_ROUNDS` (default 200)
/// commits of a drifting 8 MiB checkpoint, alternating lossless and `rel:0.01`, with delta
/// chains (keyframe every 4), each SIGKILLed at a random moment of its run. After every kill:
/// fsck passes, HEAD is the last reported snapshot or a complete newer one, and every snapshot
/// ever reported committed still checks out (bit-exact, or within its bound).
///
/// `cargo test --release --test tests -- --ignored crash_stress`
#[test]
#[ignore = "long: about 200 killed commits; run with --ignored"]
fn crash_stress_random_kills_lose_no_reported_snapshot() {
    let rounds: usize = std::env::var("SNAPSTORE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let (dir, repo) = init_repo();
    let file = dir.path().join("ckpt.safetensors");
    let out = dir.path().join("out.safetensors");
    let mut rng = Rng::new(7);
    let mut weights: Vec<f32> = (0..(2 << 20)).map(|_| rng.unit()).collect();
    // (snapshot id, original bytes, relative bound or 0 for lossless)
    let mut reported: Vec<(String, Vec<f32>, f64)> = Vec::new();
    let mut typical = Duration::from_millis(300);
    let (mut killed, mut landed) = (0, 0);
    for round in 0..rounds {
        for w in weights.iter_mut().step_by(3) {
            *w += rng.unit() * 1e-3;
        }
        let t = [Tensor {
            name: "w".into(),
            dtype: snapstore::Dtype::F32,
            shape: vec![weights.len() as u64],
            data: f32_to_bytes(&weights),
        }];
        write_safetensors(&file, &t, None);
        let bound = if round % 2 == 0 { 0.0 } else { 0.01 };
        let bound_arg = if bound == 0.0 {
            "lossless".to_string()
        } else {
            format!("rel:{bound}")
        };
        let before = head(&repo).map(|h| h.0);
        let started = Instant::now();
        let mut child = command(&repo)
            .args([
                "commit",
                file.to_str().unwrap(),
                "--json",
                "--keyframe-every",
                "4",
            ])
            .args(["--bound", &bound_arg])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Every third round runs to completion so the chain grows; others die at random.
        let point = if round % 3 == 0 {
            KillPoint::After(Duration::from_secs(60))
        } else {
            KillPoint::After(typical.mul_f64(rng.unit().abs() as f64 * 1.2))
        };
        let succeeded = kill_at(&repo, &mut child, point);
        if succeeded {
            typical = started.elapsed();
            let mut s = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut s).unwrap();
            let id = serde_json::from_str::<serde_json::Value>(&s).unwrap()["snapshot"]
                .as_str()
                .unwrap()
                .to_string();
            reported.push((id, weights.clone(), bound));
            landed += 1;
        } else {
            killed += 1;
        }
        let o = run(&repo, &["fsck", "--quick"]);
        assert!(
            o.status.success(),
            "round {round}: fsck failed: {}",
            stdout(&o)
        );
        let now = head(&repo).map(|h| h.0);
        if let Some((last, _, _)) = reported.last() {
            let moved_past = now.as_deref() != Some(last.as_str());
            // A killed commit may still have landed just before the kill: then HEAD is newer,
            // and its parent must be what HEAD was before.
            if moved_past {
                let (_, parent) = head(&repo).unwrap();
                assert_eq!(
                    parent, before,
                    "round {round}: HEAD is neither the last reported snapshot nor its successor"
                );
            }
        }
    }
    eprintln!("{killed} commits killed, {landed} landed");
    for (id, original, bound) in &reported {
        run_ok(&repo, &["checkout", id, "-o", out.to_str().unwrap()]);
        let (got, _) = parse_safetensors(&std::fs::read(&out).unwrap());
        let got = bytes_to_f32(&got[0].data);
        for (a, b) in original.iter().zip(&got) {
            if *bound == 0.0 {
                assert_eq!(a.to_bits(), b.to_bits(), "snapshot {id} is not bit-exact");
            } else {
                assert!(
                    ((*b as f64) - (*a as f64)).abs() <= bound * (*a as f64).abs(),
                    "snapshot {id}: {a} -> {b}"
                );
            }
        }
    }
    assert_fsck_clean(&repo);
}

/// Eight processes commit 20 snapshots each at once (four on `main`, four on their own
/// branches) while a reader keeps running `log` and `checkout`: every commit succeeds, none is
/// lost, and each branch's history is linear and complete.
#[test]
fn eight_writers_and_a_reader_lose_nothing() {
    let (dir, repo) = init_repo();
    let per_writer = 20;
    let first = dir.path().join("seed.safetensors");
    write_safetensors(
        &first,
        &[Tensor::f32(&mut Rng::new(1), "w", &[64], 1.0)],
        None,
    );
    run_ok(&repo, &["commit", first.to_str().unwrap()]);
    let seed_id = head_id(&repo);
    for w in 4..8 {
        run_ok(&repo, &["branch", &format!("w{w}")]);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (repo, stop, out) = (
            repo.clone(),
            stop.clone(),
            dir.path().join("read.safetensors"),
        );
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                run_ok(&repo, &["log", "-n", "3"]);
                run_ok(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (repo, dir) = (repo.clone(), dir.path().to_path_buf());
            std::thread::spawn(move || {
                let branch = if w < 4 {
                    "main".to_string()
                } else {
                    format!("w{w}")
                };
                let mut rng = Rng::new(100 + w as u64);
                (0..per_writer)
                    .map(|i| {
                        let f = dir.join(format!("w{w}-{i}.safetensors"));
                        write_safetensors(&f, &[Tensor::f32(&mut rng, "w", &[64], 1.0)], None);
                        let r =
                            run_json(&repo, &["commit", f.to_str().unwrap(), "--branch", &branch]);
                        r["snapshot"].as_str().unwrap().to_string()
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let ids: Vec<Vec<String>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0, "the reader never got through");

    let history = |branch: &str| -> Vec<(String, Option<String>)> {
        run_json(&repo, &["log", branch])
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_string(),
                    e["parents"][0].as_str().map(str::to_string),
                )
            })
            .collect()
    };
    let check = |branch: &str, expected: &[&Vec<String>]| {
        let h = history(branch);
        for pair in h.windows(2) {
            assert_eq!(
                pair[0].1.as_deref(),
                Some(pair[1].0.as_str()),
                "{branch}: history not linear"
            );
        }
        assert_eq!(
            h.last().unwrap().0,
            seed_id,
            "{branch}: does not start at the seed"
        );
        let on_branch: std::collections::HashSet<&str> = h.iter().map(|e| e.0.as_str()).collect();
        for list in expected {
            for id in list.iter() {
                assert!(
                    on_branch.contains(id.as_str()),
                    "{branch}: reported snapshot {id} is lost"
                );
            }
        }
        assert_eq!(
            h.len(),
            1 + expected.iter().map(|l| l.len()).sum::<usize>(),
            "{branch}: unexpected snapshots"
        );
    };
    check("main", &ids[..4].iter().collect::<Vec<_>>());
    for (w, list) in ids.iter().enumerate().skip(4) {
        check(&format!("w{w}"), &[list]);
    }
    assert_fsck_clean(&repo);
}
