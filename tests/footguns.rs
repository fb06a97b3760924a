//! Everyday use without footguns (issue 14): each test is a defect a new user hit, run through
//! the real binary.

use std::path::{Path, PathBuf};

use crate::util::*;

/// A repository with `n` snapshots of a small F32 checkpoint on main; returns the files.
fn repo_with_commits(n: usize) -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let (dir, repo) = init_repo();
    let steps = trajectory(14, n, &[("w", &[16, 16]), ("b", &[16])]);
    let paths: Vec<PathBuf> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = dir.path().join(format!("{i}.safetensors"));
            write_safetensors(&p, s, None);
            run_ok(
                &repo,
                &["commit", p.to_str().unwrap(), "-m", &format!("step {i}")],
            );
            p
        })
        .collect();
    (dir, repo, paths)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn deleting_the_current_branch_is_refused_and_every_deletion_says_how_to_restore() {
    let (_dir, repo, paths) = repo_with_commits(2);
    let head = head_id(&repo);
    let err = run_err(&repo, &["branch", "-d", "main"]);
    assert!(err.contains("HEAD is on it"), "{err}");
    assert_eq!(head_id(&repo), head, "main must survive a refused delete");

    run_ok(&repo, &["branch", "exp"]);
    let out = run_ok(&repo, &["branch", "-d", "exp"]);
    let restore = format!("snapstore branch exp {head}");
    assert!(out.contains(&restore), "{out}");
    // The printed command restores it.
    run_ok(&repo, &["branch", "exp", &head]);
    assert!(run_ok(&repo, &["branch"]).contains("exp"));

    run_ok(&repo, &["tag", "v1", "HEAD~1"]);
    let first = run_json(&repo, &["log"])[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = run_ok(&repo, &["tag", "-d", "v1"]);
    assert!(out.contains(&format!("snapstore tag v1 {first}")), "{out}");
    assert_eq!(paths.len(), 2);
}

#[test]
fn switching_to_an_unknown_branch_is_refused_and_dash_c_creates_it() {
    let (_dir, repo, paths) = repo_with_commits(1);
    let head = head_id(&repo);
    let err = run_err(&repo, &["switch", "mian"]);
    assert!(
        err.contains("no branch \"mian\"") && err.contains("switch -c mian"),
        "{err}"
    );
    assert!(run_ok(&repo, &["branch"]).contains("* main"));

    run_ok(&repo, &["switch", "-c", "exp"]);
    let branches = run_ok(&repo, &["branch"]);
    assert!(branches.contains("* exp"), "{branches}");
    assert_eq!(head_id(&repo), head, "the new branch starts at HEAD");
    let err = run_err(&repo, &["switch", "-c", "exp"]);
    assert!(err.contains("already exists"), "{err}");
    run_ok(&repo, &["switch", "main"]);

    // Before the first commit, HEAD's own (empty) branch is still a valid target.
    let (_d2, empty) = init_repo();
    run_ok(&empty, &["switch", "main"]);
    run_ok(&empty, &["switch", "-c", "other"]);
    run_ok(&empty, &["commit", path_str(&paths[0])]);
    assert!(run_ok(&empty, &["branch"]).contains("* other"));
}

/// Runs `snapstore --repo REPO ARGS` as a user who does not own the repository: `nobody`
/// through `setpriv` when the tests run as root (root ignores file modes), else the current
/// user. `Err` (with the reason) when that is impossible here.
fn run_as_other_user(repo: &Path, args: &[&str]) -> Result<std::process::Output, String> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut c = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(snapstore_bin());
        c
    } else {
        std::process::Command::new(snapstore_bin())
    };
    c.arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("SNAPSTORE_REPO")
        .env_remove(snapstore::FAIL_WRITES_ENV);
    let out = c.output().map_err(|e| format!("cannot run setpriv: {e}"))?;
    if root && (out.status.code() == Some(127) || stderr(&out).contains("setpriv:")) {
        return Err(format!("setpriv cannot drop to nobody: {}", stderr(&out)));
    }
    Ok(out)
}

fn chmod_tree(path: &Path, writable: bool) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).unwrap();
    let mode = if meta.is_dir() {
        if writable {
            0o777
        } else {
            0o555
        }
    } else if writable {
        0o666
    } else {
        0o444
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chmod_tree(&e.unwrap().path(), writable);
        }
    }
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            out.extend(listing(&e.path()));
        } else {
            out.push((e.path(), m.len()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_read_only_repository_can_be_read_by_every_read_only_command() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, repo, paths) = repo_with_commits(3);
    let expected_log = run_json(&repo, &["log"]);
    // The other user must reach the files: the temp dir is private to its owner.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for p in &paths {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    chmod_tree(&repo, false);
    let before = listing(&repo);

    let probe = match run_as_other_user(&repo, &["log", "--json"]) {
        Ok(o) => o,
        Err(reason) => {
            skip("a_read_only_repository_can_be_read...", &reason);
            chmod_tree(&repo, true);
            return;
        }
    };
    let ok = |args: &[&str]| -> String {
        let o = run_as_other_user(&repo, args).unwrap();
        assert!(
            o.status.success(),
            "{args:?} on a read-only repository failed:\n{}",
            stderr(&o)
        );
        stdout(&o)
    };
    assert!(probe.status.success(), "log: {}", stderr(&probe));
    let log: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert_eq!(log, expected_log);
    ok(&["show", "HEAD~1"]);
    ok(&["stats"]);
    ok(&["branch"]);
    ok(&["config", "keyframe_every"]);
    ok(&["fsck"]);
    ok(&["diff", "HEAD~2", "HEAD"]);
    ok(&["diff", "HEAD", path_str(&paths[2])]);
    let out = out_dir.join("x.safetensors");
    ok(&["checkout", "HEAD~1", "-o", path_str(&out)]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&paths[1]).unwrap()
    );

    // A command that writes names the path, says why, and suggests no rebuild.
    for args in [
        vec!["commit", path_str(&paths[0])],
        vec!["tag", "v1"],
        vec!["gc"],
        vec!["fsck", "--rebuild-index"],
    ] {
        let o = run_as_other_user(&repo, &args).unwrap();
        assert!(
            !o.status.success(),
            "{args:?} succeeded on a read-only repository"
        );
        let err = stderr(&o);
        assert!(
            err.contains(path_str(&repo)) && err.to_lowercase().contains("permission denied"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("rebuild"), "{args:?}: {err}");
    }
    assert_eq!(listing(&repo), before, "a read-only repository was changed");
    chmod_tree(&repo, true);
    assert_eq!(run_json(&repo, &["log"]), expected_log);
    assert_fsck_clean(&repo);
}

/// Every file under `dir` with its bytes and modification time.
fn contents_and_times(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut out = Vec::new();
    for (path, _) in listing(dir) {
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        out.push((path.clone(), std::fs::read(&path).unwrap(), modified));
    }
    out
}

#[test]
fn read_only_commands_write_nothing_to_a_writable_repository() {
    let (dir, repo, paths) = repo_with_commits(3);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = dir.path().join("x.safetensors");
    let before = contents_and_times(&repo);
    for args in [
        vec!["log"],
        vec!["show", "HEAD~1"],
        vec!["stats"],
        vec!["branch"],
        vec!["tag"],
        vec!["config", "keyframe_every"],
        vec!["fsck"],
        vec!["diff", "HEAD~2", "HEAD"],
        vec!["diff", "HEAD", path_str(&paths[2])],
        vec!["status", path_str(&paths[2])],
        vec!["checkout", "HEAD~1", "-o", path_str(&out)],
    ] {
        let o = run_env(&repo, &args, &[("TMPDIR", path_str(&tmp))]);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(
            contents_and_times(&repo),
            before,
            "{args:?} wrote to the repository"
        );
        assert!(
            std::fs::read_dir(&tmp).unwrap().next().is_none(),
            "{args:?} left files in TMPDIR"
        );
    }
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&paths[1]).unwrap()
    );
}

/// Temp files (`.tmp-*`) directly in `dir`.
fn temps_in(dir: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
        .collect()
}

/// Starts `snapstore ARGS`, waits until it has written more than 1 MiB to a temp file in
/// `watch`, sends SIGINT, and returns how it ended. Panics when it ends before that.
fn interrupt_mid_write(repo: &Path, args: &[&str], watch: &Path) -> std::process::ExitStatus {
    signal_mid_write(repo, args, watch, libc::SIGINT).0
}

/// [`interrupt_mid_write`] with signal `sig`; also returns what the command wrote to stderr.
fn signal_mid_write(
    repo: &Path,
    args: &[&str],
    watch: &Path,
    sig: libc::c_int,
) -> (std::process::ExitStatus, String) {
    let mut child = command(repo)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if temps_in(watch).iter().any(|(_, len)| *len > 1 << 20) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{args:?} ended ({status}) before it could be interrupted");
        }
        assert!(
            start.elapsed().as_secs() < 300,
            "{args:?} wrote no temp file"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SAFETY: sends a signal to our own child, which has not been reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `dir/big.safetensors`: one U8 tensor of `bytes` random bytes, which do not compress (a commit
/// of it writes its pack at disk speed, long enough to catch); returns the path and the file.
fn incompressible_checkpoint(dir: &Path, seed: u64, bytes: usize) -> (PathBuf, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let big = vec![Tensor::random(
        &mut rng,
        "big",
        snapstore::Dtype::U8,
        &[bytes as u64],
    )];
    let file = dir.join("big.safetensors");
    let written = write_safetensors(&file, &big, None);
    (file, written)
}

#[test]
fn ctrl_c_mid_commit_and_mid_checkout_leaves_no_temp_file() {
    use std::os::unix::process::ExitStatusExt;
    let (dir, repo) = init_repo();
    let (file, bytes) = incompressible_checkpoint(dir.path(), 4, 192 << 20);
    let packs = repo.join("packs");

    let status = interrupt_mid_write(&repo, &["commit", path_str(&file)], &packs);
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status}");
    assert_eq!(
        temps_in(&packs),
        vec![],
        "an interrupted commit left its temp pack"
    );
    let log = run_json(&repo, &["log"]);
    assert_eq!(log.as_array().map(Vec::len), Some(0), "{log}");
    assert_fsck_clean(&repo);

    run_ok(&repo, &["commit", path_str(&file)]);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("co.safetensors");
    let status = interrupt_mid_write(&repo, &["checkout", "HEAD", "-o", path_str(&out)], &out_dir);
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status}");
    assert_eq!(
        temps_in(&out_dir),
        vec![],
        "an interrupted checkout left its temp file"
    );
    assert!(!out.exists());
    run_ok(&repo, &["checkout", "HEAD", "-o", path_str(&out)]);
    assert!(std::fs::read(&out).unwrap() == bytes);
}

/// A checkpoint truncated under its commit (a trainer saving the next one in place) fails that
/// commit, naming the file, and stores nothing; the process goes on, so a `watch` commits the
/// next checkpoint. The truncation comes from a test hook, between hashing and coding.
#[test]
fn a_checkpoint_truncated_under_its_commit_fails_it_and_the_watch_goes_on() {
    let (dir, repo) = init_repo();
    let ckpts = dir.path().join("ckpts");
    std::fs::create_dir(&ckpts).unwrap();
    let steps = trajectory(16, 2, &[("w", &[512, 512]), ("b", &[512])]);
    let first = ckpts.join("a.safetensors");
    let packs = repo.join("packs");
    // `snapstore ARGS`, truncating `first` once it is hashed.
    let truncating = |args: &[&str]| {
        command(&repo)
            .args(args)
            .env(snapstore::TRUNCATE_AFTER_HASH_ENV, &first)
            .output()
            .unwrap()
    };
    for bound in ["lossless", "rel:0.01"] {
        write_safetensors(&first, &steps[0], None);
        let o = truncating(&["commit", path_str(&first), "--bound", bound]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{bound}: {err}");
        assert!(
            err.contains(path_str(&first))
                && err.contains("truncated")
                && err.contains("nothing was stored"),
            "{bound}: {err}"
        );
        assert_eq!(temps_in(&packs), vec![], "{bound}");
        assert_eq!(run_json(&repo, &["log"]).as_array().map(Vec::len), Some(0));
    }

    // The watch reports the truncated checkpoint and commits the next one.
    write_safetensors(&first, &steps[0], None);
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&first)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let second = ckpts.join("b.safetensors");
    let bytes = write_safetensors(&second, &steps[1], None);
    let o = truncating(&["watch", path_str(&ckpts), "--once"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("a.safetensors") && err.contains("truncated"),
        "{err}"
    );
    assert!(err.contains("1 checkpoint(s) in"), "{err}");
    let log = run_json(&repo, &["log"]);
    assert_eq!(log.as_array().map(Vec::len), Some(1), "{log}");
    assert_eq!(log[0]["message"], "b.safetensors");
    let out = dir.path().join("out.safetensors");
    run_ok(&repo, &["checkout", "HEAD", "-o", path_str(&out)]);
    assert!(std::fs::read(&out).unwrap() == bytes);
    assert_eq!(temps_in(&packs), vec![]);
    assert_fsck_clean(&repo);
}

/// A SIGBUS that is no fault of an input map (here sent by kill) ends the commit as the other
/// signals do: said so, with the temp pack removed.
#[test]
fn a_sigbus_elsewhere_ends_the_commit_saying_so_and_leaves_no_temp_file() {
    use std::os::unix::process::ExitStatusExt;
    let (dir, repo) = init_repo();
    let (file, _) = incompressible_checkpoint(dir.path(), 5, 192 << 20);
    let packs = repo.join("packs");
    let (status, err) = signal_mid_write(&repo, &["commit", path_str(&file)], &packs, libc::SIGBUS);
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status}");
    assert!(
        err.contains("SIGBUS") && err.contains("nothing was stored"),
        "{err}"
    );
    assert_eq!(temps_in(&packs), vec![]);
    assert_eq!(run_json(&repo, &["log"]).as_array().map(Vec::len), Some(0));
}

#[test]
fn gc_counts_the_temp_files_of_killed_commits_and_dry_run_keeps_them() {
    let (_dir, repo, _paths) = repo_with_commits(1);
    // What a SIGKILLed commit leaves: its pid (no such process) in the name.
    let stale = repo.join("packs/.tmp-4194305-7-incoming.pack");
    std::fs::write(&stale, vec![7u8; 100_000]).unwrap();

    let dry = run_json(&repo, &["gc", "--dry-run", "--grace", "0"]);
    assert_eq!(dry["temp_files"], 1, "{dry}");
    assert!(dry["freed_bytes"].as_u64().unwrap() >= 100_000, "{dry}");
    assert!(stale.exists(), "--dry-run deleted a file");
    let text = run_ok(&repo, &["gc", "--dry-run", "--grace", "0"]);
    assert!(text.contains("1 temp files"), "{text}");
    // fsck counts it (its bytes on disk explained), as no damage.
    let fsck = run_json(&repo, &["fsck"]);
    assert_eq!(fsck["clean"], true, "{fsck}");
    assert_eq!(fsck["report"]["temp_files"], 1, "{fsck}");
    assert_eq!(fsck["report"]["temp_bytes"], 100_000, "{fsck}");
    let text = run_ok(&repo, &["fsck"]);
    assert!(
        text.contains("1 temp file(s) of killed commands (97.66 KiB), not damage"),
        "{text}"
    );

    let done = run_json(&repo, &["gc", "--grace", "0"]);
    assert_eq!(done["temp_files"], 1, "{done}");
    assert!(done["freed_bytes"].as_u64().unwrap() >= 100_000, "{done}");
    assert!(!stale.exists());
    assert_fsck_clean(&repo);
    assert_eq!(run_json(&repo, &["fsck"])["report"]["temp_files"], 0);
}

/// A `[6,8,8]` U8 frame file with a user `__metadata__` and a tensor not named `frames`.
fn frames_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let mut rng = Rng::new(6);
    let t = Tensor::random(&mut rng, "video", snapstore::Dtype::U8, &[6, 8, 8]);
    let path = dir.join("frames.safetensors");
    let meta = metadata(&[("camera", "left"), ("fps", "30")]);
    let bytes = write_safetensors(&path, &[t], Some(&meta));
    (path, bytes)
}

#[test]
fn a_lossless_frames_commit_of_a_safetensors_file_checks_out_byte_identical() {
    let (dir, repo) = init_repo();
    let (file, bytes) = frames_file(dir.path());
    run_ok(&repo, &["commit", path_str(&file), "--kind", "frames"]);
    let show = run_json(&repo, &["show"]);
    assert_eq!(show["manifest"]["metadata"]["camera"], "left", "{show:#}");
    assert_eq!(show["manifest"]["tensors"][0]["encoding"], "frames");
    let out = dir.path().join("back.safetensors");
    run_ok(&repo, &["checkout", "HEAD", "-o", path_str(&out)]);
    assert!(
        std::fs::read(&out).unwrap() == bytes,
        "the user's header and metadata were not kept"
    );
    // Still a sequence: a range checks out as frames.
    let npy = dir.path().join("part.npy");
    run_ok(
        &repo,
        &["checkout", "HEAD", "-o", path_str(&npy), "--frames", "1..3"],
    );
    let part = snapstore::load_npy(&npy).unwrap();
    assert_eq!(part.t, 2);
    assert_eq!(
        &part.data[..],
        &parse_safetensors(&bytes).0[0].data[64..192]
    );
}

#[test]
fn frame_ranges_are_half_open_checked_and_never_a_directory_named_like_a_file() {
    let (dir, repo) = init_repo();
    let (file, _) = frames_file(dir.path());
    run_ok(&repo, &["commit", path_str(&file), "--kind", "frames"]);
    let part = dir.path().join("part.safetensors");
    let err = run_err(
        &repo,
        &[
            "checkout",
            "HEAD",
            "-o",
            path_str(&part),
            "--frames",
            "0..5",
        ],
    );
    assert!(
        err.contains("part.safetensors") && err.contains(".npy"),
        "{err}"
    );
    assert!(
        !part.exists(),
        "a refused checkout created {}",
        part.display()
    );

    let out = dir.path().join("out");
    let err = run_err(
        &repo,
        &["checkout", "HEAD", "-o", path_str(&out), "--frames", "4..2"],
    );
    assert!(err.contains("reversed"), "{err}");
    let err = run_err(
        &repo,
        &["checkout", "HEAD", "-o", path_str(&out), "--frames", "2..9"],
    );
    assert!(
        err.contains("6 frames") && !err.contains("reversed"),
        "{err}"
    );
    let help = run_ok(&repo, &["checkout", "--help"]);
    assert!(help.contains("half-open"), "{help}");
}

#[test]
fn checkout_into_a_missing_directory_names_the_directory() {
    let (dir, repo, _) = repo_with_commits(1);
    let missing = dir.path().join("missing/dir");
    let out = missing.join("y.safetensors");
    let err = run_err(&repo, &["checkout", "HEAD", "-o", path_str(&out)]);
    assert!(err.contains(&format!("{}:", missing.display())), "{err}");
    assert!(!err.contains(".tmp-"), "names an internal temp file: {err}");
}

#[test]
fn stored_bytes_have_one_definition_in_every_command() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(8);
    // Repeated chunks inside one snapshot (zeros, three 1 MiB chunks alike) and a random tensor.
    let tensors = vec![
        Tensor {
            name: "zeros".into(),
            dtype: snapstore::Dtype::U8,
            shape: vec![3 << 20],
            data: vec![0; 3 << 20],
        },
        Tensor::random(&mut rng, "noise", snapstore::Dtype::U8, &[50_000]),
    ];
    let file = dir.path().join("a.safetensors");
    write_safetensors(&file, &tensors, None);
    let c = run_json(&repo, &["commit", path_str(&file)]);
    let stored = c["stored_bytes"].as_u64().unwrap();
    let log = run_json(&repo, &["log"]);
    assert_eq!(log[0]["stored_bytes"], stored, "log vs commit");
    let show = run_json(&repo, &["show"]);
    assert_eq!(show["stored_bytes"], stored, "show vs commit");
    let stats = run_json(&repo, &["stats"]);
    assert_eq!(stats["stored_bytes"], stored, "stats vs commit");
    let disk = stats["disk_bytes"].as_u64().unwrap();
    let packs = stats["pack_bytes"].as_u64().unwrap();
    assert!(packs > stored, "packs also hold the manifest: {stats:#}");
    assert!(
        disk > packs && stats["index_bytes"].as_u64().unwrap() > 0,
        "{stats:#}"
    );
    assert_eq!(disk, packs + stats["index_bytes"].as_u64().unwrap());

    // The text of every command prints the same figure with the same label.
    let logical: u64 = tensors.iter().map(|t| t.data.len() as u64).sum();
    let line = format!(
        "{} stored ({:.2}x)",
        human_bytes(stored),
        logical as f64 / stored as f64
    );
    let second = dir.path().join("b.safetensors");
    write_safetensors(&second, &tensors, None);
    for (what, text) in [
        ("log", run_ok(&repo, &["log"])),
        ("show", run_ok(&repo, &["show"])),
    ] {
        assert!(text.contains(&line), "{what} lacks {line:?}:\n{text}");
    }
    let stats_text = run_ok(&repo, &["stats"]);
    assert!(stats_text.contains("on disk"), "{stats_text}");
    // A fully deduplicated snapshot says so; no "inf".
    let text = run_ok(&repo, &["commit", path_str(&second)]);
    assert!(text.contains("0 B stored (all deduplicated)"), "{text}");
    let show = run_ok(&repo, &["show"]);
    assert!(
        show.contains("0 B stored (all deduplicated)") && !show.contains("inf"),
        "{show}"
    );
}

/// The CLI's size format: `123 B`, `1.50 KiB`, ...
fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (bytes as f64, 0);
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", units[u])
    }
}

#[test]
fn show_keeps_columns_aligned_and_bounds_short() {
    let (dir, repo) = init_repo();
    let mut rng = Rng::new(9);
    let tensors = vec![
        Tensor::f32(&mut rng, "w", &[4, 4], 1.0),
        Tensor::f32(
            &mut rng,
            "encoder.layers.11.attention.self.query_key_value.weight",
            &[1, 2, 3, 4, 2, 1, 2],
            1.0,
        ),
    ];
    let file = dir.path().join("a.safetensors");
    write_safetensors(&file, &tensors, None);
    run_ok(&repo, &["commit", path_str(&file), "--bound", "abs:1e30"]);
    let show = run_ok(&repo, &["show"]);
    assert!(
        show.contains("abs:1e30") && !show.contains("000000"),
        "{show}"
    );
    let log = run_ok(&repo, &["log"]);
    assert!(log.contains("abs:1e30"), "{log}");
    // Every table row lines its cells up with the header: left-aligned columns start where
    // their title starts, right-aligned ones end where it ends.
    let rows: Vec<&str> = show
        .lines()
        .skip_while(|l| !l.starts_with("tensor "))
        .take(3)
        .collect();
    assert_eq!(rows.len(), 3, "{show}");
    let header = rows[0];
    for r in &rows[1..] {
        let b = r.as_bytes();
        let blank = |i: usize| i >= b.len() || b[i] == b' ';
        for name in ["shape", "encoding", "bound"] {
            let h = header.find(&format!(" {name}")).unwrap() + 1;
            assert!(blank(h - 1) && !blank(h), "{name} misaligned:\n{show}");
        }
        for name in ["dtype", "bytes", "stored", "ratio"] {
            let end = header.find(&format!(" {name}")).unwrap() + 1 + name.len();
            assert!(!blank(end - 1) && blank(end), "{name} misaligned:\n{show}");
        }
    }
}

/// The `search_digits` example beside this test binary (cargo builds examples for `cargo
/// test`), if it is there.
fn example_bin(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("examples").join(name);
    p.is_file().then_some(p)
}

#[test]
fn the_worked_example_without_its_corpus_fails_and_says_how_to_point_at_it() {
    let Some(bin) = example_bin("search_digits") else {
        skip(
            "the_worked_example_without_its_corpus_fails...",
            "examples/search_digits was not built beside the tests",
        );
        return;
    };
    let dir = tempdir();
    let missing = dir.path().join("no-corpus");
    let out = std::process::Command::new(&bin)
        .args(["--corpus", path_str(&missing)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(path_str(&missing))
            && err.contains("--corpus")
            && err.contains("SNAPSTORE_DIGITS_CORPUS"),
        "{err}"
    );
    let out = std::process::Command::new(&bin)
        .env("SNAPSTORE_DIGITS_CORPUS", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(path_str(&missing)),
        "{}",
        stderr(&out)
    );
}

/// `snapstore ARGS` run in `cwd` with no `--repo` and no `SNAPSTORE_REPO`.
fn run_in(cwd: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(snapstore_bin())
        .current_dir(cwd)
        .args(args)
        .env_remove("SNAPSTORE_REPO")
        .env_remove("SNAPSTORE_BACKEND")
        .output()
        .unwrap()
}

#[test]
fn commands_find_the_repository_from_a_subdirectory() {
    let dir = tempdir();
    let project = dir.path().join("project");
    let deep = project.join("runs/today");
    std::fs::create_dir_all(&deep).unwrap();
    let o = run_in(&project, &["init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(project.join(".snapstore/FORMAT").is_file());
    let steps = trajectory(3, 1, &[("w", &[8, 8])]);
    write_safetensors(&deep.join("a.safetensors"), &steps[0], None);
    let o = run_in(&deep, &["commit", "a.safetensors", "-m", "from below"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(&deep, &["log"]);
    assert!(stdout(&o).contains("from below"), "{}", stderr(&o));
    assert!(!deep.join(".snapstore").exists());

    // Nowhere above: the error says where it looked.
    let lonely = dir.path().join("elsewhere");
    std::fs::create_dir(&lonely).unwrap();
    let o = run_in(&lonely, &["log"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("no snapstore repository") && err.contains(path_str(&lonely)),
        "{err}"
    );
}

#[test]
fn config_prints_the_value_in_force_and_log_shows_dates_and_refs() {
    let (_dir, repo, _) = repo_with_commits(2);
    assert_eq!(run_ok(&repo, &["config", "bound"]).trim(), "lossless");
    assert_eq!(run_ok(&repo, &["config", "keyframe_every"]).trim(), "32");
    run_ok(&repo, &["config", "bound", "rel:0.01"]);
    run_ok(&repo, &["config", "keyframe_every", "4"]);
    assert_eq!(run_ok(&repo, &["config", "bound"]).trim(), "rel:0.01");
    assert_eq!(run_ok(&repo, &["config", "keyframe_every"]).trim(), "4");

    run_ok(&repo, &["tag", "first", "HEAD~1"]);
    let log = run_ok(&repo, &["log"]);
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines[0].contains("(HEAD -> main)"), "{log}");
    assert!(lines[1].contains("(tag: first)"), "{log}");
    let time = run_json(&repo, &["log"])[0]["time"].as_u64().unwrap();
    // The date the CLI prints is the manifest's time, in UTC.
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{time}"), "+%Y-%m-%d %H:%M"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let date = stdout(&o);
            assert!(lines[0].contains(date.trim()), "{log} lacks {date}");
        }
        _ => skip(
            "footguns::config_prints...: the log date",
            "no GNU date(1) to compare with",
        ),
    }
    let json = run_json(&repo, &["log"]);
    assert_eq!(json[0]["refs"][0], "heads/main");
    // bound has the manifest's shape in log too.
    assert_eq!(json[0]["bound"]["kind"], "lossless", "{json:#}");
    let show = run_json(&repo, &["show"]);
    assert_eq!(json[0]["bound"], show["manifest"]["bound"]);
    assert_eq!(json[1]["refs"][0], "tags/first");

    // Commands that code nothing do not need the CUDA backend they are pointed at.
    let o = run_env(&repo, &["log"], &[("SNAPSTORE_BACKEND", "cuda")]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Runs `snapstore --repo REPO ARGS` with its stdout and stderr on a terminal (through
/// `script`); returns what the terminal showed, or `None` without `script`.
fn run_on_terminal(repo: &Path, args: &[&str]) -> Option<String> {
    let line = std::iter::once(snapstore_bin())
        .chain(["--repo".to_string(), path_str(repo).to_string()])
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("SNAPSTORE_REPO")
        .output()
        .ok()?;
    assert!(out.status.success(), "{line}: {}", stdout(&out));
    Some(stdout(&out))
}

#[test]
fn long_commands_draw_progress_on_a_terminal_and_never_with_json() {
    let (dir, repo) = init_repo();
    let (file, _) = incompressible_checkpoint(dir.path(), 12, 24 << 20);
    let Some(shown) = run_on_terminal(&repo, &["commit", path_str(&file)]) else {
        skip(
            "footguns::long_commands_draw_progress...",
            "no script(1) for a terminal",
        );
        return;
    };
    assert!(
        shown.contains("commit   [") && shown.contains("24.00 MiB") && shown.contains("/s"),
        "no progress bar on a terminal:\n{shown}"
    );
    let out = dir.path().join("o.safetensors");
    let shown = run_on_terminal(&repo, &["checkout", "HEAD", "-o", path_str(&out)]).unwrap();
    assert!(shown.contains("checkout ["), "{shown}");
    // --json and --quiet draw nothing, even on a terminal; nor does a pipe.
    let shown =
        run_on_terminal(&repo, &["checkout", "HEAD", "-o", path_str(&out), "--json"]).unwrap();
    assert!(!shown.contains(" ["), "{shown}");
    let shown = run_on_terminal(&repo, &["-q", "checkout", "HEAD", "-o", path_str(&out)]).unwrap();
    assert!(!shown.contains("checkout ["), "{shown}");
    let piped = run(&repo, &["checkout", "HEAD", "-o", path_str(&out)]);
    assert!(stderr(&piped).is_empty(), "{}", stderr(&piped));
}

#[test]
fn status_says_whether_a_file_is_stored_where_and_how_it_differs_from_head() {
    let (dir, repo, paths) = repo_with_commits(2);
    let json = run_json(&repo, &["status", path_str(&paths[1])]);
    let head = head_id(&repo);
    assert_eq!(json["snapshot"], head.as_str(), "{json:#}");
    assert!(json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["status"] == "same"));
    let text = run_ok(&repo, &["status", path_str(&paths[1])]);
    assert!(
        text.contains("stored as snapshot") && text.contains("(HEAD)"),
        "{text}"
    );

    // The first epoch: stored, in HEAD~1, and every tensor changed since.
    let json = run_json(&repo, &["status", path_str(&paths[0])]);
    let first = run_json(&repo, &["log"])[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(json["snapshot"], first.as_str());
    for t in json["tensors"].as_array().unwrap() {
        assert_eq!(t["status"], "changed", "{t}");
        assert_eq!(t["stored_in"][0], first.as_str(), "{t}");
    }

    // A new file: one tensor as in HEAD, one new, one of HEAD's missing.
    let (tensors, _) = parse_safetensors(&std::fs::read(&paths[1]).unwrap());
    let mut rng = Rng::new(99);
    let w = tensors.iter().find(|t| t.name == "w").unwrap().clone();
    let new = vec![w, Tensor::f32(&mut rng, "extra", &[4], 1.0)];
    let file = dir.path().join("new.safetensors");
    write_safetensors(&file, &new, None);
    let json = run_json(&repo, &["status", path_str(&file)]);
    assert!(json["snapshot"].is_null(), "{json:#}");
    let by_name = |n: &str| {
        json["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("w")["status"], "same");
    assert_eq!(by_name("extra")["status"], "added");
    assert!(by_name("extra")["stored_in"].is_null());
    assert_eq!(json["removed"][0], "b");
    let text = run_ok(&repo, &["status", path_str(&file)]);
    assert!(
        text.contains("not stored as a whole") && text.contains("not stored"),
        "{text}"
    );

    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"nope").unwrap();
    let err = run_err(&repo, &["status", path_str(&bad)]);
    assert!(err.contains(path_str(&bad)), "{err}");
}

/// A file stored only under a bound is not called stored as if a checkout gave it back: the
/// status names the bound, and prefers an exact copy once one exists, even an older one.
#[test]
fn status_names_the_bound_of_a_lossy_copy_and_prefers_an_exact_one() {
    let (dir, repo) = init_repo();
    let steps = trajectory(15, 1, &[("w", &[64, 64])]);
    let file = dir.path().join("a.safetensors");
    write_safetensors(&file, &steps[0], None);
    run_ok(&repo, &["commit", path_str(&file), "--bound", "rel:0.01"]);
    let lossy = head_id(&repo);
    let json = run_json(&repo, &["status", path_str(&file)]);
    assert_eq!(json["snapshot"], lossy.as_str(), "{json:#}");
    assert_eq!(json["snapshot_lossy"][0]["kind"], "rel", "{json:#}");
    assert_eq!(json["tensors"][0]["stored_bound"]["eps"], 0.01, "{json:#}");
    let text = run_ok(&repo, &["status", path_str(&file)]);
    assert!(
        text.contains("under rel:0.01") && text.contains("not byte-identical"),
        "{text}"
    );

    run_ok(&repo, &["commit", path_str(&file)]);
    let exact = head_id(&repo);
    // A lossy copy newer than the exact one, at HEAD: on a branch of its own (a lossy commit on
    // top of the exact copy reuses it).
    run_ok(
        &repo,
        &[
            "commit",
            path_str(&file),
            "--branch",
            "side",
            "--bound",
            "rel:0.05",
        ],
    );
    run_ok(&repo, &["switch", "side"]);
    assert_ne!(head_id(&repo), exact);
    let json = run_json(&repo, &["status", path_str(&file)]);
    assert_eq!(json["snapshot"], exact.as_str(), "{json:#}");
    assert_eq!(json["snapshot_lossy"], serde_json::json!([]), "{json:#}");
    assert_eq!(
        json["tensors"][0]["stored_in"][0],
        exact.as_str(),
        "{json:#}"
    );
    assert_eq!(json["tensors"][0]["stored_bound"]["kind"], "lossless");
    let text = run_ok(&repo, &["status", path_str(&file)]);
    assert!(!text.contains("under"), "{text}");
}

/// Every library function that takes a path takes anything path-like (`&str`, `String`,
/// `PathBuf`, `&Path`).
#[test]
fn library_paths_accept_str_string_and_pathbuf() {
    let dir = tempdir();
    let repo = snapstore::Repo::init(dir.path().join("r").to_str().unwrap()).unwrap();
    let steps = trajectory(5, 1, &[("w", &[4, 4])]);
    let file: String = dir.path().join("a.safetensors").to_str().unwrap().into();
    write_safetensors(Path::new(&file), &steps[0], None);
    repo.commit_file(file.as_str(), &snapstore::CommitOptions::default())
        .unwrap();
    repo.commit_file(file.clone(), &snapstore::CommitOptions::default())
        .unwrap();
    let out = dir.path().join("o.safetensors");
    repo.checkout_to_file("HEAD", out.clone(), None).unwrap();
    assert!(snapstore::SafetensorsFile::open(out.to_str().unwrap()).is_ok());
    assert_eq!(repo.diff_file("HEAD", &file).unwrap().len(), 1);
    assert!(repo.status(&out).unwrap().snapshot.is_some());
    // Run inside a repository's own directory (what `clone URL DIR` makes), it is found.
    let found = snapstore::Repo::discover(dir.path().join("r").join("packs")).unwrap();
    assert_eq!(found.path(), repo.path());
    assert!(snapstore::Repo::discover(dir.path().join("elsewhere")).is_err());
    // Another tool's FORMAT beside an index/ is no repository.
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("index")).unwrap();
    std::fs::write(other.join("FORMAT"), b"v2\n").unwrap();
    assert!(snapstore::Repo::discover(&other).is_err());
}

#[test]
fn help_puts_frame_options_under_their_own_heading_and_names_frames() {
    let (_dir, repo) = init_repo();
    let commit = run_ok(&repo, &["commit", "--help"]);
    let heading = commit.find("Frame sequences:").expect("a frame heading");
    assert!(commit.find("--kind <KIND>").unwrap() > heading, "{commit}");
    assert!(commit.find("--group").unwrap() > heading, "{commit}");
    assert!(
        commit.lines().next().unwrap().contains("frame sequence"),
        "{commit}"
    );
    let checkout = run_ok(&repo, &["checkout", "--help"]);
    assert!(checkout.find("--frames").unwrap() > checkout.find("Frame sequences:").unwrap());
    let diff = run_ok(&repo, &["diff", "--help"]);
    assert!(
        diff.lines().next().unwrap().contains("frame sequence"),
        "{diff}"
    );
    let top = run_ok(&repo, &["--help"]);
    let doctor = top
        .lines()
        .find(|l| l.trim_start().starts_with("doctor"))
        .unwrap();
    assert!(doctor.contains("backend"), "{top}");
}

/// Tensors can be handed to the library as typed slices, not only as raw bytes.
#[test]
fn typed_slices_commit_as_their_little_endian_bytes() {
    use snapstore::TensorInput;
    let dir = tempdir();
    let repo = snapstore::Repo::init(dir.path().join("r")).unwrap();
    let floats: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
    let bf: Vec<half::bf16> = floats.iter().map(|&x| half::bf16::from_f32(x)).collect();
    let ints: Vec<i64> = (0..6).map(|i| i * -1_000_000_007).collect();
    let inputs = [
        TensorInput::from_slice("f", vec![3, 4], &floats),
        TensorInput::from_slice("h", vec![12], &bf),
        TensorInput::from_slice("i", vec![2, 3], &ints),
    ];
    assert_eq!(inputs[1].dtype, snapstore::Dtype::BF16);
    repo.commit_tensors(&inputs, None, &snapstore::CommitOptions::default())
        .unwrap();
    let back = repo.checkout("HEAD", None).unwrap();
    let get = |n: &str| {
        back.tensors
            .iter()
            .find(|t| t.name == n)
            .unwrap()
            .data
            .clone()
    };
    assert_eq!(get("f"), f32_to_bytes(&floats));
    let bf_bytes: Vec<u8> = bf.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(get("h"), bf_bytes);
    let int_bytes: Vec<u8> = ints.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(get("i"), int_bytes);
    // A shape that disagrees with the slice is refused at commit.
    let bad = [TensorInput::from_slice("f", vec![5], &floats)];
    let err = repo
        .commit_tensors(&bad, None, &snapstore::CommitOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("\"f\""), "{err}");
}

/// Standard output that cannot be written (`> /dev/full`) is an error like any other (exit 1, a
/// message), not a panic with a backtrace; and `checkout -o` into a device writes into it
/// rather than replacing it with a regular file, with its report on standard error.
#[test]
fn an_unwritable_stdout_is_an_error_and_a_device_output_is_written_into() {
    let (_dir, repo, _paths) = repo_with_commits(2);
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        crate::util::skip("footguns::unwritable_stdout", "no /dev/full here");
        return;
    };
    let out = std::process::Command::new(snapstore_bin())
        .args(["--repo", path_str(&repo), "log"])
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write the output"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Into a pipe through /dev/stdout: the bytes of the file, and the report beside them.
    let (mut read, write) = std::io::pipe().unwrap();
    let child = std::process::Command::new(snapstore_bin())
        .args([
            "--repo",
            path_str(&repo),
            "checkout",
            "HEAD",
            "-o",
            "/dev/stdout",
        ])
        .stdout(write)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut streamed = Vec::new();
    std::io::Read::read_to_end(&mut read, &mut streamed).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("wrote /dev/stdout"), "{err}");
    let file = repo.parent().unwrap().join("head.safetensors");
    run_ok(&repo, &["checkout", "HEAD", "-o", path_str(&file)]);
    assert_eq!(streamed, std::fs::read(&file).unwrap());
}

/// A one-file snapshot asked into a directory (existing, or a path ending in `/`) is refused
/// naming the file to give instead, the committed file's name in that directory.
#[test]
fn a_file_snapshot_into_a_directory_names_the_file_to_give() {
    let (dir, repo, _paths) = repo_with_commits(1);
    let existing = dir.path().join("deploy");
    std::fs::create_dir(&existing).unwrap();
    let new = format!("{}/", dir.path().join("new").display());
    for out in [
        path_str(&existing).to_string(),
        format!("{}/", existing.display()),
        new,
    ] {
        let err = run_err(&repo, &["checkout", "HEAD", "-o", &out]);
        let want = format!("{} names a directory, and snapshot", out);
        assert!(err.contains(&want), "{err}");
        let file = Path::new(&out).join("0.safetensors");
        assert!(err.contains(&format!("({}, say)", file.display())), "{err}");
    }
    assert!(std::fs::read_dir(&existing).unwrap().next().is_none());
    assert!(!dir.path().join("new").exists());
}

/// `-o -` and `-o /dev/stdout` write into standard output wherever it goes, and the report,
/// JSON too, goes to standard error: into a pipe, the bytes alone; into a file (`> f`), that
/// file, not a new one renamed over it (which would take the report); appended (`>> f`), after
/// what was there.
#[test]
fn standard_output_gets_the_bytes_alone_wherever_it_goes() {
    let (dir, repo, _paths) = repo_with_commits(2);
    let head = dir.path().join("head.safetensors");
    run_ok(&repo, &["checkout", "HEAD", "-o", path_str(&head)]);
    let bytes = std::fs::read(&head).unwrap();
    let checkout_into = |stdout: std::process::Stdio, output: &str| {
        let out = command(&repo)
            .args(["checkout", "HEAD", "-o", output, "--json"])
            .stdout(stdout)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        let report: serde_json::Value =
            serde_json::from_str(&err).unwrap_or_else(|e| panic!("{e}: {err}"));
        assert_eq!(report["tensors"], 2, "{report}");
        out.stdout
    };
    assert_eq!(
        checkout_into(std::process::Stdio::piped(), "/dev/stdout"),
        bytes
    );
    assert_eq!(checkout_into(std::process::Stdio::piped(), "-"), bytes);
    for output in ["-", "/dev/stdout"] {
        let file = dir.path().join("redirected");
        std::fs::write(&file, b"stale and longer than nothing").unwrap();
        let truncated = std::fs::File::create(&file).unwrap();
        checkout_into(truncated.into(), output);
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{output}");
        std::fs::write(&file, b"before").unwrap();
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        checkout_into(appended.into(), output);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            [&b"before"[..], &bytes].concat(),
            "{output}"
        );
    }
    assert!(!dir.path().join("-").exists());
}

/// `checkout -o` at a symbolic link replaces the link with the file and leaves what it named as
/// it was: in a Hugging Face hub cache the link leads to a blob named by its content, which
/// other revisions share. The report says what the link named; a link to a directory is
/// refused and stays.
#[test]
fn a_checkout_replaces_a_symbolic_link_and_never_writes_through_it() {
    let (dir, repo, _paths) = repo_with_commits(2);
    let hub = dir.path().join("models--x");
    let (blobs, snap) = (hub.join("blobs"), hub.join("snapshots").join("rev"));
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    let blob = blobs.join("9f2c");
    std::fs::write(&blob, b"another revision's weights").unwrap();
    let link = snap.join("model.safetensors");
    std::os::unix::fs::symlink("../../blobs/9f2c", &link).unwrap();

    let out = run(&repo, &["checkout", "HEAD", "-o", path_str(&link)]);
    let (said, err) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{err}");
    assert!(said.contains("wrote"), "{said}");
    assert!(
        err.contains("was a symbolic link to ../../blobs/9f2c") && err.contains("left as it was"),
        "{err}"
    );
    assert_eq!(std::fs::read(&blob).unwrap(), b"another revision's weights");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
    let head = dir.path().join("head.safetensors");
    run_ok(&repo, &["checkout", "HEAD", "-o", path_str(&head)]);
    assert_eq!(std::fs::read(&link).unwrap(), std::fs::read(&head).unwrap());

    // JSON names the link's target only where there was one.
    std::os::unix::fs::symlink("head.safetensors", dir.path().join("again")).unwrap();
    let again = dir.path().join("again");
    let r = run_json(&repo, &["checkout", "HEAD~1", "-o", path_str(&again)]);
    assert_eq!(r["replaced_link"], "head.safetensors", "{r}");
    let r = run_json(&repo, &["checkout", "HEAD~1", "-o", path_str(&again)]);
    assert!(r.get("replaced_link").is_none(), "{r}");

    let to_dir = dir.path().join("to-dir");
    std::os::unix::fs::symlink(&snap, &to_dir).unwrap();
    let err = run_err(&repo, &["checkout", "HEAD", "-o", path_str(&to_dir)]);
    assert!(err.contains("to-dir names a directory"), "{err}");
    assert!(std::fs::symlink_metadata(&to_dir)
        .unwrap()
        .file_type()
        .is_symlink());
}

/// `--repo` naming a file (a checkpoint, by a slip) is refused naming that file.
#[test]
fn a_repository_path_that_is_a_file_is_named() {
    let (dir, _repo, paths) = repo_with_commits(1);
    let out = std::process::Command::new(snapstore_bin())
        .args(["--repo", path_str(&paths[0]), "log"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!(
        "{}: a file, not a repository (a directory)",
        paths[0].display()
    );
    assert!(err.contains(&want), "{err}");
}

/// A history longer than the open-file limit (one pack per commit) is read by every command
/// that walks it: each pack was kept open, and `log` on 207 snapshots failed with "Too many
/// open files" under `ulimit -n 100` (a soft limit of 1,024 is common, macOS's is 256).
#[test]
fn a_history_longer_than_the_open_file_limit_is_read() {
    let dir = tempdir();
    let repo_dir = dir.path().join("repo");
    let repo = snapstore::Repo::init(&repo_dir).unwrap();
    let opts = snapstore::CommitOptions {
        keyframe_every: Some(4),
        ..Default::default()
    };
    for k in 0..150u32 {
        let data: Vec<u8> = (0..16u32).flat_map(|i| (i + k).to_le_bytes()).collect();
        let t = snapstore::TensorInput {
            name: "w".into(),
            dtype: snapstore::Dtype::U32,
            shape: vec![16],
            data: &data,
        };
        repo.commit_tensors(&[t], None, &opts).unwrap();
    }
    drop(repo);
    let file = dir.path().join("head.safetensors");
    run_ok(&repo_dir, &["checkout", "HEAD", "-o", path_str(&file)]);
    for args in [
        &["log"][..],
        &["stats"],
        &["status", path_str(&file)],
        &["gc", "--dry-run"],
        &["fsck"],
    ] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 100 && exec \"$0\" \"$@\"")
            .arg(snapstore_bin())
            .arg("--repo")
            .arg(&repo_dir)
            .args(args)
            .env_remove("SNAPSTORE_REPO")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
    }
    assert_eq!(
        run_ok(&repo_dir, &["log"]).lines().count(),
        150,
        "every snapshot listed"
    );
}
