//! Remotes end to end through the real binary: push, fetch, pull, clone and remote checkout
//! against a directory remote (always) and a real S3 server process on 127.0.0.1 (moto's, via
//! `tests/s3_server.py`; `.ci/run` installs it and names its Python in
//! `SNAPSTORE_TEST_S3_PYTHON`; without it the S3 half of each test is logged as skipped).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use snapstore::Dtype;
use tempfile::TempDir;

use crate::util::*;

/// Names the Python (with `moto[server]`) that runs `tests/s3_server.py`.
const S3_PYTHON_ENV: &str = "SNAPSTORE_TEST_S3_PYTHON";
const BUCKET: &str = "snapstore-test";
const CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "snapstore-test"),
    ("AWS_SECRET_ACCESS_KEY", "snapstore-test"),
    ("AWS_REGION", "us-east-1"),
];

/// A running `tests/s3_server.py`; it exits when its stdin (held here) closes.
struct S3Server {
    child: Mutex<Child>,
    url: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts an S3 server (`mode`: atomic, refuse or ignore conditional writes), or says why not.
fn start_s3(mode: &str) -> Result<S3Server, String> {
    let python = std::env::var(S3_PYTHON_ENV).map_err(|_| {
        format!("{S3_PYTHON_ENV} is not set (.ci/run sets it to a Python with moto[server])")
    })?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_server.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["--bucket", BUCKET, "--conditional", mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let url = line.trim().to_string();
    if !url.starts_with("http://127.0.0.1:") {
        let _ = child.kill();
        return Err(format!(
            "{python} {}: no server URL printed ({url:?})",
            script.display()
        ));
    }
    Ok(S3Server {
        child: Mutex::new(child),
        url,
    })
}

/// The shared S3 server of this test process (atomic conditional writes), or why there is none.
fn shared_s3() -> Result<&'static S3Server, String> {
    static SERVER: OnceLock<Result<S3Server, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| start_s3("atomic"))
        .as_ref()
        .map_err(Clone::clone)
}

/// The shared S3 server, or `None` once it has logged why test `name` skips (its S3 half).
fn s3_or_skip(name: &str) -> Option<&'static S3Server> {
    match shared_s3() {
        Ok(s) => Some(s),
        Err(why) => {
            skip(&format!("remote::{name}"), &why);
            None
        }
    }
}

/// A remote for one test: a fresh directory, or a fresh prefix of the shared bucket.
struct Remote {
    url: String,
    endpoint: Option<String>,
    _dir: Option<TempDir>,
}

impl Remote {
    fn dir() -> Remote {
        let dir = tempdir();
        Remote {
            url: dir.path().join("remote").display().to_string(),
            endpoint: None,
            _dir: Some(dir),
        }
    }

    fn s3_at(server: &S3Server) -> Remote {
        static N: AtomicU64 = AtomicU64::new(0);
        Remote {
            url: format!(
                "s3://{BUCKET}/t{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            endpoint: Some(server.url.clone()),
            _dir: None,
        }
    }

    /// `--endpoint URL` where needed.
    fn endpoint_args(&self) -> Vec<String> {
        match &self.endpoint {
            Some(e) => vec!["--endpoint".into(), e.clone()],
            None => vec![],
        }
    }

    /// `remote add NAME URL` in `repo`.
    fn add(&self, repo: &Path, name: &str) {
        let mut args = vec!["remote", "add", name, &self.url];
        let extra = self.endpoint_args();
        args.extend(extra.iter().map(String::as_str));
        rrun_ok(repo, &args);
    }

    /// `clone` of this remote into `dir`.
    fn clone_into(&self, dir: &Path) -> String {
        let mut args = vec!["clone", &self.url];
        let d = dir.display().to_string();
        args.push(&d);
        let extra = self.endpoint_args();
        args.extend(extra.iter().map(String::as_str));
        rrun_ok(dir, &args)
    }
}

/// `snapstore --repo REPO ARGS` with the S3 test credentials and extra environment.
fn rrun(repo: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command(repo);
    c.args(args).env_remove(snapstore::FAIL_UPLOADS_AFTER_ENV);
    for (k, v) in CREDENTIALS.iter().chain(env) {
        c.env(k, v);
    }
    c.output().expect("spawn snapstore")
}

#[track_caller]
fn rrun_ok(repo: &Path, args: &[&str]) -> String {
    let o = rrun(repo, args, &[]);
    assert!(
        o.status.success(),
        "snapstore {args:?} failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

#[track_caller]
fn rrun_err(repo: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = rrun(repo, args, env);
    assert!(
        !o.status.success(),
        "snapstore {args:?} should have failed:\n{}",
        stdout(&o)
    );
    stderr(&o)
}

#[track_caller]
fn rjson(repo: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = rrun_ok(repo, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{a:?}: not JSON ({e}): {out}"))
}

/// Runs `body` on a directory remote and on the S3 server (or logs why S3 was skipped).
macro_rules! both_remotes {
    ($dir:ident, $s3:ident, $body:ident) => {
        #[test]
        fn $dir() {
            $body(&Remote::dir());
        }

        #[test]
        fn $s3() {
            if let Some(server) = s3_or_skip(stringify!($s3)) {
                $body(&Remote::s3_at(server));
            }
        }
    };
}

/// A repository `DIR/src` with `n` checkpoints of [`checkpoints`] committed in order; its
/// path and the checkpoints (files and bytes).
fn committed_source(dir: &Path, n: usize, seed: u64) -> (PathBuf, Vec<(PathBuf, Vec<u8>)>) {
    let src = dir.join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(dir, n, seed);
    for (f, _) in &fs {
        commit(&src, f, &[]);
    }
    (src, fs)
}

/// Checkpoints of a small model: epoch 0 every dtype (lossless), then F32 layers drifting.
fn checkpoints(dir: &Path, n: usize, seed: u64) -> Vec<(PathBuf, Vec<u8>)> {
    let traj = trajectory(
        seed,
        n,
        &[
            ("fc.weight", &[64, 96]),
            ("fc.bias", &[96]),
            ("conv", &[8, 3, 5, 5]),
        ],
    );
    traj.iter()
        .enumerate()
        .map(|(i, t)| {
            let p = dir.join(format!("s{seed}_e{i}.safetensors"));
            let bytes = write_safetensors(&p, t, Some(&metadata(&[("epoch", &i.to_string())])));
            (p, bytes)
        })
        .collect()
}

fn commit(repo: &Path, file: &Path, args: &[&str]) -> String {
    let mut a = vec!["commit", file.to_str().unwrap()];
    a.extend_from_slice(args);
    rjson(repo, &a)["snapshot"].as_str().unwrap().to_string()
}

fn log_ids(repo: &Path) -> Vec<String> {
    rjson(repo, &["log"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn checkout_bytes(repo: &Path, spec: &str, extra: &[&str]) -> Vec<u8> {
    let out = repo
        .parent()
        .unwrap()
        .join(format!("out-{}.safetensors", spec.replace(['~', '/'], "_")));
    let mut a = vec!["checkout", spec, "-o", out.to_str().unwrap()];
    a.extend_from_slice(extra);
    rrun_ok(repo, &a);
    std::fs::read(&out).unwrap()
}

// ---------------------------------------------------------------------------------------------

fn round_trip(remote: &Remote) {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let every = every_dtype_tensors(&mut Rng::new(7));
    let every_file = work.path().join("every.safetensors");
    let every_bytes = write_safetensors(&every_file, &every, None);
    commit(&src, &every_file, &["-m", "every dtype"]);
    let files = checkpoints(work.path(), 4, 1);
    commit(&src, &files[0].0, &["-m", "e0"]);
    for (f, _) in &files[1..] {
        commit(&src, f, &["--bound", "rel:0.01"]);
    }
    rrun_ok(&src, &["tag", "v1", "HEAD~2"]);
    remote.add(&src, "origin");
    let pushed = rjson(&src, &["push", "origin", "main", "v1"]);
    assert_eq!(pushed["refs"][0]["status"], "created", "{pushed:#}");
    assert_eq!(pushed["snapshots"], 5, "{pushed:#}");
    assert!(pushed["bytes"].as_u64().unwrap() > 0);
    // A second push has nothing to send.
    let listed = rjson(&src, &["remote", "list"]);
    assert_eq!(listed["origin"]["url"], remote.url.as_str(), "{listed:#}");
    let again = rjson(&src, &["push"]);
    assert_eq!(again["refs"][0]["status"], "up-to-date");
    assert_eq!(again["packs_uploaded"], 0);

    let dst = work.path().join("dst");
    remote.clone_into(&dst);
    assert_eq!(log_ids(&dst), log_ids(&src));
    assert_fsck_clean(&dst);
    assert!(rrun_ok(&dst, &["tag"]).contains("v1"));
    // Lossless snapshots come back byte for byte; lossy ones exactly as the source decodes them
    // and within their bound of what was committed.
    assert_eq!(checkout_bytes(&dst, "HEAD~4", &[]), every_bytes);
    assert_eq!(checkout_bytes(&dst, "HEAD~3", &[]), files[0].1);
    for back in 0..3 {
        let spec = format!("HEAD~{back}");
        let got = checkout_bytes(&dst, &spec, &[]);
        assert_eq!(got, checkout_bytes(&src, &spec, &[]), "{spec}");
        let (tensors, _) = parse_safetensors(&got);
        let (orig, _) = parse_safetensors(&files[3 - back].1);
        for (a, b) in tensors.iter().zip(&orig) {
            for (x, y) in bytes_to_f32(&a.data).iter().zip(bytes_to_f32(&b.data)) {
                assert!(
                    (x - y).abs() <= 0.01 * y.abs() * (1.0 + 1e-6),
                    "{} {x} {y}",
                    a.name
                );
            }
        }
    }

    // New work on the source arrives by fetch (kept by gc, readable as origin/main), then
    // pull, as a fast-forward.
    let more = checkpoints(work.path(), 2, 9);
    commit(&src, &more[0].0, &[]);
    rrun_ok(&src, &["push"]);
    let fetched = rjson(&dst, &["fetch"]);
    assert_eq!(fetched["snapshots"], 1, "{fetched:#}");
    rrun_ok(&dst, &["gc"]);
    assert_eq!(checkout_bytes(&dst, "origin/main", &[]), more[0].1);
    let pulled = rjson(&dst, &["pull"]);
    assert_eq!(pulled["status"], "fast-forward", "{pulled:#}");
    assert_eq!(pulled["fetch"]["snapshots"], 0);
    assert_eq!(log_ids(&dst), log_ids(&src));
    assert_eq!(checkout_bytes(&dst, "HEAD", &[]), more[0].1);
}
both_remotes!(dir_round_trip, s3_round_trip, round_trip);

fn concurrent_pushers(remote: &Remote) {
    let work = tempdir();
    let seed_repo = work.path().join("seed");
    rrun_ok(&seed_repo, &["init"]);
    let base = checkpoints(work.path(), 1, 3);
    commit(&seed_repo, &base[0].0, &["-m", "base"]);
    remote.add(&seed_repo, "origin");
    rrun_ok(&seed_repo, &["push"]);
    // Two nodes clone, each commits three epochs, then both push at the same moment.
    let nodes: Vec<PathBuf> = (0..2)
        .map(|i| work.path().join(format!("node{i}")))
        .collect();
    let mut files = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        remote.clone_into(node);
        let fs = checkpoints(work.path(), 3, 100 + i as u64);
        for (f, _) in &fs {
            commit(node, f, &["-m", &format!("node{i}")]);
        }
        files.push(fs);
    }
    let children: Vec<Child> = nodes
        .iter()
        .map(|node| {
            let mut c = command(node);
            c.args(["push", "--json"]);
            for (k, v) in CREDENTIALS {
                c.env(k, v);
            }
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut rebased = 0;
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "a push failed: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        rebased += v["refs"][0]["rebased"].as_u64().unwrap();
    }
    assert_eq!(
        rebased, 3,
        "exactly one pusher re-parents its three snapshots"
    );
    // A fresh clone holds all seven snapshots, linearly, every one byte-identical.
    let check = work.path().join("check");
    remote.clone_into(&check);
    let log = rjson(&check, &["log"]);
    let messages: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 7, "{messages:?}");
    assert_eq!(messages.iter().filter(|m| **m == "node0").count(), 3);
    assert_eq!(messages.iter().filter(|m| **m == "node1").count(), 3);
    assert_eq!(messages[6], "base");
    let mut seen: Vec<Vec<u8>> = (0..6)
        .map(|i| checkout_bytes(&check, &format!("HEAD~{i}"), &[]))
        .collect();
    let mut expected: Vec<Vec<u8>> = files.iter().flatten().map(|(_, b)| b.clone()).collect();
    seen.sort();
    expected.sort();
    assert!(seen == expected, "a pushed snapshot is missing or changed");
    assert_fsck_clean(&check);
}
both_remotes!(
    dir_two_concurrent_pushers_lose_nothing,
    s3_two_concurrent_pushers_lose_nothing,
    concurrent_pushers
);

fn non_fast_forward(remote: &Remote) {
    let work = tempdir();
    let a = work.path().join("a");
    rrun_ok(&a, &["init"]);
    let fs = checkpoints(work.path(), 4, 5);
    commit(&a, &fs[0].0, &[]);
    remote.add(&a, "origin");
    rrun_ok(&a, &["push"]);
    let b = work.path().join("b");
    remote.clone_into(&b);
    commit(&a, &fs[1].0, &[]);
    rrun_ok(&a, &["push"]);
    // b is behind: pushing would move the remote back.
    let err = rrun_err(&b, &["push"], &[]);
    assert!(
        err.contains("refused") && err.contains("drop 1 snapshot"),
        "{err}"
    );
    // b diverges: refused under --no-rebase, forced under --force.
    commit(&b, &fs[2].0, &["-m", "b's"]);
    let err = rrun_err(&b, &["push", "--no-rebase"], &[]);
    assert!(
        err.contains("refused") && err.contains(&remote.url),
        "{err}"
    );
    let forced = rjson(&b, &["push", "--force"]);
    assert_eq!(forced["refs"][0]["status"], "forced");
    let check = work.path().join("check");
    remote.clone_into(&check);
    assert_eq!(log_ids(&check), log_ids(&b));
}
both_remotes!(
    dir_non_fast_forward_refused_unless_forced,
    s3_non_fast_forward_refused_unless_forced,
    non_fast_forward
);

/// A branch of an unrelated repository (no snapshot in common) is neither pushed on top of the
/// remote's branch of that name nor pulled under it: both were re-parented silently, joining two
/// models' histories. Nothing moves; the message's way out (fetch, then a branch of its own)
/// works, and push --force still replaces the remote's.
fn unrelated_histories(remote: &Remote) {
    let work = tempdir();
    let fs = checkpoints(work.path(), 3, 8);
    let a = work.path().join("a");
    rrun_ok(&a, &["init"]);
    commit(&a, &fs[0].0, &[]);
    remote.add(&a, "origin");
    rrun_ok(&a, &["push"]);
    let c = work.path().join("c");
    rrun_ok(&c, &["init"]);
    commit(&c, &fs[1].0, &[]);
    commit(&c, &fs[2].0, &[]);
    remote.add(&c, "origin");
    let ours = log_ids(&c);
    for args in [&["push"][..], &["pull"]] {
        let err = rrun_err(&c, args, &[]);
        assert!(
            err.contains("share no snapshot") && err.contains(&remote.url),
            "{args:?}: {err}"
        );
        assert_eq!(log_ids(&c), ours, "{args:?} moved the local branch");
        let check = work.path().join(format!("check-{}", args[0]));
        remote.clone_into(&check);
        assert_eq!(log_ids(&check), log_ids(&a), "{args:?} moved the remote");
    }
    rrun_ok(&c, &["fetch"]);
    rrun_ok(&c, &["branch", "theirs", "origin/main"]);
    assert_eq!(checkout_bytes(&c, "theirs", &[]), fs[0].1);
    let forced = rjson(&c, &["push", "--force"]);
    assert_eq!(forced["refs"][0]["status"], "forced", "{forced:#}");
    assert_fsck_clean(&c);
}
both_remotes!(
    dir_unrelated_histories_are_never_joined,
    s3_unrelated_histories_are_never_joined,
    unrelated_histories
);

fn interrupted_push(remote: &Remote) {
    let work = tempdir();
    let (src, fs) = committed_source(work.path(), 4, 11);
    remote.add(&src, "origin");
    let err = rrun_err(&src, &["push"], &[(snapstore::FAIL_UPLOADS_AFTER_ENV, "2")]);
    assert!(err.contains("interrupted"), "{err}");
    // Nothing points at the half-pushed packs: the remote has no branch yet.
    let out = work.path().join("head.safetensors");
    let err = rrun_err(
        &src,
        &[
            "remote",
            "checkout",
            "origin",
            "main",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        err.contains("has no branch, tag or snapshot \"main\""),
        "{err}"
    );
    let dst = work.path().join("dst");
    let resumed = rjson(&src, &["push"]);
    assert_eq!(resumed["packs_present"], 2, "{resumed:#}");
    assert_eq!(resumed["packs_uploaded"], 2, "{resumed:#}");
    remote.clone_into(&dst);
    assert_eq!(checkout_bytes(&dst, "HEAD~3", &[]), fs[0].1);
    assert_eq!(checkout_bytes(&dst, "HEAD", &[]), fs[3].1);
}
both_remotes!(
    dir_interrupted_push_resumes,
    s3_interrupted_push_resumes,
    interrupted_push
);

/// Runs `f` with an S3 client for `remote`'s bucket and the key of its object `rel`.
fn with_s3<T>(
    remote: &Remote,
    endpoint: &str,
    rel: &str,
    f: impl AsyncFnOnce(&dyn object_store::ObjectStore, object_store::path::Path) -> T,
) -> T {
    let (bucket, prefix) = remote.url["s3://".len()..].split_once('/').unwrap();
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(CREDENTIALS[0].1)
        .with_secret_access_key(CREDENTIALS[1].1)
        .build()
        .unwrap();
    let key = object_store::path::Path::from(format!("{prefix}/{rel}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(f(&s3, key))
}

/// Flips one byte at `offset` of the remote object `rel`.
fn damage(remote: &Remote, rel: &str, offset: usize) {
    match &remote.endpoint {
        None => {
            let p = Path::new(&remote.url).join(rel);
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[offset] ^= 0x40;
            std::fs::write(&p, bytes).unwrap();
        }
        Some(endpoint) => with_s3(remote, endpoint, rel, async |s3, key| {
            let mut bytes = s3.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
            bytes[offset] ^= 0x40;
            s3.put(&key, bytes.into()).await.unwrap();
        }),
    }
}

/// The remote object `rel`'s bytes, after which it is removed from the remote.
fn take_remote_object(remote: &Remote, rel: &str) -> Vec<u8> {
    match &remote.endpoint {
        None => {
            let p = Path::new(&remote.url).join(rel);
            let bytes = std::fs::read(&p).unwrap();
            std::fs::remove_file(&p).unwrap();
            bytes
        }
        Some(endpoint) => with_s3(remote, endpoint, rel, async |s3, key| {
            let bytes = s3.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
            s3.delete(&key).await.unwrap();
            bytes
        }),
    }
}

fn corrupted_object(remote: &Remote) {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 1, 13);
    let early = work.path().join("early.safetensors");
    write_safetensors(&early, &every_dtype_tensors(&mut Rng::new(3)), None);
    commit(&src, &early, &[]);
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]);
    // A clone made before the damage, to pull through it later.
    let old = work.path().join("old");
    remote.clone_into(&old);
    commit(&src, &fs[0].0, &[]);
    rrun_ok(&src, &["push"]);
    // The one pack, and where the chunk of fc.bias lies in it.
    let show = rjson(&src, &["show", "HEAD"]);
    let bias = show["manifest"]["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "fc.bias")
        .unwrap();
    let chunk = bias["chunks"][0]["id"].as_str().unwrap().to_string();
    let early_packs: Vec<_> = std::fs::read_dir(old.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let pack = std::fs::read_dir(src.join("packs"))
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name();
            let name = n.to_string_lossy().into_owned();
            (name.ends_with(".pack") && !early_packs.contains(&n)).then_some(name)
        })
        .next()
        .unwrap();
    let bytes = std::fs::read(src.join("packs").join(&pack)).unwrap();
    let payload_at = {
        // Find the chunk's payload by hashing candidate ranges: the trailer lists it.
        let count = u64::from_le_bytes(
            bytes[bytes.len() - 48..bytes.len() - 40]
                .try_into()
                .unwrap(),
        ) as usize;
        let trailer = &bytes[bytes.len() - 48 - count * 49..bytes.len() - 48];
        let e = trailer
            .chunks_exact(49)
            .find(|e| hex(&e[..32]) == chunk)
            .unwrap();
        u64::from_le_bytes(e[33..41].try_into().unwrap()) as usize
    };
    damage(remote, &format!("packs/{pack}"), payload_at + 3);
    // A remote checkout of that tensor names the object and the pack.
    let out = work.path().join("bias.safetensors");
    let mut args = vec![
        "remote".to_string(),
        "checkout".into(),
        remote.url.clone(),
        "main".into(),
        "-o".into(),
        out.display().to_string(),
        "--tensor".into(),
        "fc.bias".into(),
    ];
    args.extend(remote.endpoint_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = rrun_err(&src, &args, &[]);
    assert!(
        err.contains(&chunk) && err.contains(&pack) && err.contains("damaged"),
        "{err}"
    );
    assert!(!out.exists());
    // A clone names the pack and leaves nothing behind.
    let dst = work.path().join("dst");
    let mut args = vec![
        "clone".to_string(),
        remote.url.clone(),
        dst.display().to_string(),
    ];
    args.extend(remote.endpoint_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = rrun_err(&dst, &args, &[]);
    assert!(
        err.contains(&pack) && err.contains("damaged") && err.contains(&chunk),
        "{err}"
    );
    assert!(!dst.exists());
    // A pull through the damage fails the same way and changes nothing: no ref moved, no pack
    // or temp file left.
    let before = repo_state(&old);
    let files_before = std::fs::read_dir(old.join("packs")).unwrap().count();
    let err = rrun_err(&old, &["pull"], &[]);
    assert!(err.contains(&pack) && err.contains("damaged"), "{err}");
    assert_eq!(repo_state(&old), before);
    assert_eq!(
        std::fs::read_dir(old.join("packs")).unwrap().count(),
        files_before
    );
    assert_fsck_clean(&old);
}
both_remotes!(
    dir_corrupted_remote_object_is_named,
    s3_corrupted_remote_object_is_named,
    corrupted_object
);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn partial_checkout(remote: &Remote) {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    // Six 1 MiB tensors of random floats (they do not compress), two snapshots.
    let mut rng = Rng::new(17);
    let mut tensors: Vec<Tensor> = (0..6)
        .map(|i| Tensor::f32(&mut rng, &format!("layer{i}"), &[512, 512], 1.0))
        .collect();
    let f0 = work.path().join("e0.safetensors");
    write_safetensors(&f0, &tensors, None);
    commit(&src, &f0, &[]);
    for t in &mut tensors {
        let v: Vec<f32> = bytes_to_f32(&t.data)
            .into_iter()
            .map(|x| x * 1.001)
            .collect();
        t.data = f32_to_bytes(&v);
    }
    let f1 = work.path().join("e1.safetensors");
    write_safetensors(&f1, &tensors, None);
    commit(&src, &f1, &["--bound", "rel:0.01"]);
    remote.add(&src, "origin");
    let pushed = rjson(&src, &["push"]);
    let total = pushed["bytes"].as_u64().unwrap();
    let out = work.path().join("layer3.safetensors");
    let mut args = vec![
        "remote".to_string(),
        "checkout".into(),
        "origin".into(),
        "main".into(),
        "-o".into(),
        out.display().to_string(),
        "--tensor".into(),
        "layer3".into(),
    ];
    let r = rjson(&src, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let down = r["downloaded_bytes"].as_u64().unwrap();
    // layer3 needs its keyframe's chunk and its delta's: those bytes, plus two records and two
    // manifests (a few KiB), and none of the other layers'.
    let stored = |spec: &str| -> u64 {
        let show = rjson(&src, &["show", spec]);
        let t = show["manifest"]["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "layer3")
            .unwrap()
            .clone();
        t["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["stored"].as_u64().unwrap())
            .sum()
    };
    let needed = stored("HEAD") + stored("HEAD~1");
    assert!(
        down >= needed,
        "downloaded {down}, the chunks alone are {needed}"
    );
    assert!(
        down < needed + (32 << 10),
        "downloaded {down} for {needed} bytes of chunks"
    );
    assert!(
        down < total / 4,
        "downloaded {down} of {total} pushed bytes"
    );
    assert!(r["requests"].as_u64().unwrap() <= 8, "{r:#}");
    let expected = checkout_bytes(&src, "HEAD", &["--tensor", "layer3"]);
    assert_eq!(std::fs::read(&out).unwrap(), expected);
    // Without a repository, by URL.
    args[2] = remote.url.clone();
    args.extend(remote.endpoint_args());
    let elsewhere = work.path().join("nowhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = rrun(
        &elsewhere.join("no-repo"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), expected);

    // Longer lattice chains across several snapshots' records, and a tensor that does not
    // change (stored once, its later entries point at the first chunks): some tensors of an
    // older snapshot by id, and a whole snapshot, come back as the local checkout has them.
    for e in 2..5 {
        for t in tensors.iter_mut().filter(|t| t.name != "layer5") {
            let v: Vec<f32> = bytes_to_f32(&t.data)
                .into_iter()
                .map(|x| x * 0.999)
                .collect();
            t.data = f32_to_bytes(&v);
        }
        let f = work.path().join(format!("e{e}.safetensors"));
        write_safetensors(&f, &tensors, None);
        commit(&src, &f, &["--bound", "rel:0.01"]);
    }
    rrun_ok(&src, &["push"]);
    let ids = log_ids(&src);
    for (spec, names) in [
        (ids[1].as_str(), vec!["layer3", "layer5"]),
        ("main", vec![]),
    ] {
        let mut a = vec![
            "remote",
            "checkout",
            "origin",
            spec,
            "-o",
            out.to_str().unwrap(),
        ];
        for n in &names {
            a.extend(["--tensor", n]);
        }
        rrun_ok(&src, &a);
        let mut local = vec![];
        for n in &names {
            local.extend(["--tensor", n]);
        }
        assert_eq!(
            std::fs::read(&out).unwrap(),
            checkout_bytes(&src, spec, &local),
            "{spec} {names:?}"
        );
    }
}
both_remotes!(
    dir_partial_remote_checkout_reads_only_what_it_needs,
    s3_partial_remote_checkout_reads_only_what_it_needs,
    partial_checkout
);

/// A store that answers conditional writes 501, and one that ignores them: both refused by
/// name, and no ref is written.
#[test]
fn s3_remote_without_conditional_writes_is_refused_clearly() {
    for (mode, says) in [
        ("refuse", "501 Not Implemented"),
        ("ignore", "ignored If-None-Match"),
    ] {
        let server = match start_s3(mode) {
            Ok(s) => s,
            Err(why) => {
                return skip(
                    "remote::s3_remote_without_conditional_writes_is_refused_clearly",
                    &why,
                )
            }
        };
        let remote = Remote::s3_at(&server);
        let work = tempdir();
        let src = work.path().join("src");
        rrun_ok(&src, &["init"]);
        let fs = checkpoints(work.path(), 1, 19);
        commit(&src, &fs[0].0, &[]);
        remote.add(&src, "origin");
        let err = rrun_err(&src, &["push"], &[]);
        assert!(
            err.contains("does not support conditional writes")
                && err.contains(&remote.url)
                && err.contains(says),
            "{mode}: {err}"
        );
        let dst = work.path().join("dst");
        let mut args = vec![
            "clone".to_string(),
            remote.url.clone(),
            dst.display().to_string(),
        ];
        args.extend(remote.endpoint_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rrun_err(&dst, &args, &[]);
    }
}

/// The library API: push and clone through `Repo`, with progress reported as bytes.
#[test]
fn library_push_and_clone_report_progress() {
    let work = tempdir();
    let repo = snapstore::Repo::init(work.path().join("src")).unwrap();
    let t = Tensor::f32(&mut Rng::new(23), "w", &[256, 256], 1.0);
    repo.commit_tensors(&[t.input()], None, &Default::default())
        .unwrap();
    let events = std::sync::Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let repo = repo.with_progress(move |p| seen.lock().unwrap().push(p));
    let url = work.path().join("remote").display().to_string();
    repo.add_remote("origin", snapstore::RemoteSpec::new(&url).unwrap())
        .unwrap();
    let r = repo.push("origin", &[], Default::default()).unwrap();
    assert_eq!(r.refs[0].status, "created");
    let last = *events
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|p| p.task == "push")
        .unwrap();
    assert_eq!((last.done, last.total), (r.bytes, r.bytes));
    let (clone, report) = snapstore::Repo::clone_remote(
        snapstore::RemoteSpec::new(&url).unwrap(),
        work.path().join("dst"),
        None,
    )
    .unwrap();
    assert_eq!(report.head.as_deref(), Some("main"));
    let back = clone.checkout("HEAD", None).unwrap();
    assert_eq!(back.tensors[0].data, t.data);
    let _ = Dtype::F32;
}

fn interrupted_pull(remote: &Remote) {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let small = checkpoints(work.path(), 1, 29);
    commit(&src, &small[0].0, &[]);
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]);
    let old = work.path().join("old");
    remote.clone_into(&old);
    let before = log_ids(&old);
    // Three large snapshots (8 MiB of random floats each), so a pull takes a while.
    let mut rng = Rng::new(31);
    for e in 0..3 {
        let tensors: Vec<Tensor> = (0..4)
            .map(|i| Tensor::f32(&mut rng, &format!("big{i}"), &[512, 1024], 1.0))
            .collect();
        let f = work.path().join(format!("big{e}.safetensors"));
        write_safetensors(&f, &tensors, None);
        commit(&src, &f, &[]);
    }
    rrun_ok(&src, &["push"]);
    let after = log_ids(&src);
    // Ctrl-C at several moments of a pull: the branch is where it was or where the remote is,
    // never in between, no temp file stays, and the repository checks clean.
    for delay_ms in [10u64, 40, 120, 300] {
        let mut c = command(&old);
        c.arg("pull").stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in CREDENTIALS {
            c.env(k, v);
        }
        let child = c.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        // SAFETY: sends SIGINT to the child this test spawned and has not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGINT);
        }
        let o = child.wait_with_output().unwrap();
        let now = log_ids(&old);
        assert!(
            now == before || now == after,
            "after Ctrl-C at {delay_ms} ms ({}): {now:?}",
            stderr(&o)
        );
        let temps: Vec<_> = std::fs::read_dir(old.join("packs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(temps.is_empty(), "left {temps:?}");
        assert_fsck_clean(&old);
        if now == after {
            break;
        }
    }
    rrun_ok(&old, &["pull"]);
    assert_eq!(log_ids(&old), after);
}
both_remotes!(
    dir_pull_interrupted_by_ctrl_c_leaves_nothing_half_done,
    s3_pull_interrupted_by_ctrl_c_leaves_nothing_half_done,
    interrupted_pull
);

/// Credentials come from the AWS environment variables or the shared credentials file; with
/// neither, a push fails saying where it looked (and sends nothing to any metadata service).
#[test]
fn s3_credentials_from_the_shared_file_or_a_clear_error() {
    let Some(server) = s3_or_skip("s3_credentials_from_the_shared_file_or_a_clear_error") else {
        return;
    };
    let remote = Remote::s3_at(server);
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 1, 37);
    commit(&src, &fs[0].0, &[]);
    remote.add(&src, "origin");
    let home = work.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let push = |env: &[(&str, &str)]| {
        let mut c = command(&src);
        c.args(["push", "--json"]);
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_SKIP_SIGNATURE",
        ] {
            c.env_remove(k);
        }
        c.env("HOME", &home).env("AWS_REGION", "us-east-1");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let o = push(&[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("remote {}: no AWS credentials", remote.url))
            && err.contains(".aws/credentials"),
        "{err}"
    );
    std::fs::write(
        home.join(".aws/credentials"),
        "[other]\naws_access_key_id = x\naws_secret_access_key = y\n",
    )
    .unwrap();
    let o = push(&[("AWS_PROFILE", "other")]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn delete_remote_refs(remote: &Remote) {
    let work = tempdir();
    let a = work.path().join("a");
    rrun_ok(&a, &["init"]);
    let fs = checkpoints(work.path(), 3, 21);
    commit(&a, &fs[0].0, &[]);
    rrun_ok(&a, &["tag", "v1"]);
    rrun_ok(&a, &["branch", "exp"]);
    remote.add(&a, "origin");
    rrun_ok(&a, &["push", "origin", "main", "exp", "v1"]);
    let b = work.path().join("b");
    remote.clone_into(&b);

    // A branch, then a tag (`push --delete NAME`, the remote defaulting to origin).
    let out = rjson(&a, &["push", "--delete", "exp"]);
    assert_eq!(out["deleted"][0]["ref"], "heads/exp", "{out:#}");
    let out = rjson(&a, &["push", "origin", "--delete", "v1"]);
    assert_eq!(out["deleted"][0]["ref"], "tags/v1", "{out:#}");
    let err = rrun_err(&a, &["push", "--delete", "nope"], &[]);
    assert!(
        err.contains("has no branch, tag or snapshot \"nope\""),
        "{err}"
    );
    let c = work.path().join("c");
    remote.clone_into(&c);
    assert!(!rrun_ok(&c, &["branch"]).contains("exp"));
    assert!(!rrun_ok(&c, &["tag"]).contains("v1"));
    let out = work.path().join("exp.safetensors");
    let o = out.to_str().unwrap();
    let err = rrun_err(&a, &["remote", "checkout", "origin", "exp", "-o", o], &[]);
    assert!(
        err.contains("has no branch, tag or snapshot \"exp\""),
        "{err}"
    );

    // b last saw main at fs[0]; a moves it on: b's delete is refused and main stays.
    commit(&a, &fs[1].0, &[]);
    rrun_ok(&a, &["push"]);
    let err = rrun_err(&b, &["push", "--delete", "main"], &[]);
    assert!(
        err.contains("heads/main is at") && err.contains("nothing was deleted"),
        "{err}"
    );
    rrun_ok(&a, &["remote", "checkout", "origin", "main", "-o", o]);
    assert_eq!(std::fs::read(&out).unwrap(), fs[1].1);
    // Once b has seen where it is, it may delete it.
    rrun_ok(&b, &["fetch"]);
    rrun_ok(&b, &["push", "--delete", "main"]);
    let err = rrun_err(&a, &["remote", "checkout", "origin", "main", "-o", o], &[]);
    assert!(
        err.contains("has no branch, tag or snapshot \"main\""),
        "{err}"
    );
    // The name can be pushed again (on S3, over the deleted ref's tombstone).
    commit(&a, &fs[2].0, &[]);
    let pushed = rjson(&a, &["push"]);
    assert_eq!(pushed["refs"][0]["status"], "created", "{pushed:#}");
    let d = work.path().join("d");
    remote.clone_into(&d);
    assert_eq!(log_ids(&d), log_ids(&a));
    assert_eq!(checkout_bytes(&d, "HEAD", &[]), fs[2].1);
}
both_remotes!(
    dir_remote_refs_are_deleted_by_compare_and_swap,
    s3_remote_refs_are_deleted_by_compare_and_swap,
    delete_remote_refs
);

/// The pack names of a local repository.
fn local_packs(repo: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(repo.join("packs"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".pack").map(str::to_string)
        })
        .collect()
}

fn strings(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn remote_gc(remote: &Remote) {
    let work = tempdir();
    // a pushes three snapshots; b, a repository of its own, then force-pushes main over them.
    let a = work.path().join("a");
    rrun_ok(&a, &["init"]);
    for (f, _) in &checkpoints(work.path(), 3, 31) {
        commit(&a, f, &[]);
    }
    remote.add(&a, "origin");
    rrun_ok(&a, &["push"]);
    let a_snaps: std::collections::BTreeSet<String> = log_ids(&a).into_iter().collect();
    let a_packs = local_packs(&a);
    let b = work.path().join("b");
    rrun_ok(&b, &["init"]);
    let gs = checkpoints(work.path(), 4, 32);
    commit(&b, &gs[0].0, &[]);
    commit(&b, &gs[1].0, &[]);
    remote.add(&b, "origin");
    let forced = rjson(&b, &["push", "--force"]);
    assert_eq!(forced["refs"][0]["status"], "forced", "{forced:#}");
    let before = local_packs(&b);
    commit(&b, &gs[2].0, &[]);
    commit(&b, &gs[3].0, &[]);
    let new_packs: Vec<String> = local_packs(&b).difference(&before).cloned().collect();
    assert_eq!(new_packs.len(), 2, "{new_packs:?}");
    std::thread::sleep(std::time::Duration::from_secs(5));
    // An interrupted push: one of b's two new packs lands, no record, no ref move.
    let err = rrun_err(&b, &["push"], &[(snapstore::FAIL_UPLOADS_AFTER_ENV, "1")]);
    assert!(err.contains("interrupted"), "{err}");

    let gc = |args: &[&str]| {
        let mut a = vec!["remote", "gc", "origin"];
        a.extend_from_slice(args);
        rjson(&b, &a)
    };
    // Everything unreachable is younger than the default hour: nothing goes.
    let r = gc(&[]);
    assert_eq!(r["removed_snapshots"], serde_json::json!([]), "{r:#}");
    assert_eq!(r["young_snapshots"], 3, "{r:#}");
    assert_eq!(r["young_packs"], a_packs.len() + 1, "{r:#}");
    // Under a 3 s grace a's records and packs go (dry run first, then for real); the pack the
    // interrupted push uploaded within the grace stays.
    for dry in [true, false] {
        let r = gc(if dry {
            &["--grace", "3", "--dry-run"]
        } else {
            &["--grace", "3"]
        });
        assert_eq!(r["dry_run"], dry);
        assert_eq!(strings(&r["removed_snapshots"]), a_snaps, "{r:#}");
        assert_eq!(strings(&r["removed_packs"]), a_packs, "{r:#}");
        assert_eq!(r["young_packs"], 1, "{r:#}");
        assert_eq!(r["live_snapshots"], 2, "{r:#}");
    }
    let r = gc(&["--grace", "0", "--dry-run"]);
    assert_eq!(r["removed_snapshots"], serde_json::json!([]), "{r:#}");
    let left = strings(&r["removed_packs"]);
    assert!(
        left.len() == 1 && new_packs.contains(left.iter().next().unwrap()),
        "{r:#} {new_packs:?}"
    );
    // What the refs reach is complete: a clone checks out and verifies.
    let c = work.path().join("c");
    remote.clone_into(&c);
    assert_fsck_clean(&c);
    assert_eq!(checkout_bytes(&c, "HEAD", &[]), gs[1].1);
    assert_eq!(checkout_bytes(&c, "HEAD~1", &[]), gs[0].1);
    // The interrupted pack goes at grace 0; then nothing is left to remove, and b's push,
    // resumed, uploads both packs again.
    let r = gc(&["--grace", "0"]);
    assert_eq!(strings(&r["removed_packs"]), left, "{r:#}");
    let r = gc(&["--grace", "0"]);
    assert_eq!(r["removed_packs"], serde_json::json!([]), "{r:#}");
    assert_eq!(r["removed_snapshots"], serde_json::json!([]), "{r:#}");
    let resumed = rjson(&b, &["push"]);
    assert_eq!(resumed["packs_uploaded"], 2, "{resumed:#}");
    let d = work.path().join("d");
    remote.clone_into(&d);
    assert_fsck_clean(&d);
    assert_eq!(checkout_bytes(&d, "HEAD", &[]), gs[3].1);
    assert_eq!(log_ids(&d), log_ids(&b));
}
both_remotes!(
    dir_remote_gc_removes_exactly_the_unreachable,
    s3_remote_gc_removes_exactly_the_unreachable,
    remote_gc
);

fn remote_checkout_specs(remote: &Remote) {
    let work = tempdir();
    let (src, fs) = committed_source(work.path(), 3, 41);
    rrun_ok(&src, &["tag", "v1", "HEAD~1"]);
    remote.add(&src, "origin");
    rrun_ok(&src, &["push", "origin", "main", "v1"]);
    let ids = log_ids(&src); // newest first
    let out = work.path().join("r.safetensors");
    let o = out.to_str().unwrap();
    let get = |spec: &str| {
        let r = rjson(&src, &["remote", "checkout", "origin", spec, "-o", o]);
        (std::fs::read(&out).unwrap(), r)
    };
    for (spec, want) in [
        ("HEAD", 2),
        ("HEAD~", 1),
        ("HEAD~2", 0),
        ("main~1", 1),
        ("v1~1", 0),
        ("heads/main~2", 0),
    ] {
        let (bytes, r) = get(spec);
        assert_eq!(r["snapshot"], ids[2 - want].as_str(), "{spec}");
        assert_eq!(bytes, fs[want].1, "{spec}");
    }
    // An id prefix costs what the full id does: one listing from the prefix on instead of the
    // record read that checks a full id.
    let (bytes, by_prefix) = get(&ids[2][..8]);
    assert_eq!(bytes, fs[0].1);
    let (_, by_id) = get(&ids[2]);
    assert_eq!(
        by_prefix["requests"], by_id["requests"],
        "{by_prefix:#} {by_id:#}"
    );
    let (bytes, _) = get(&format!("{}~1", &ids[1][..6].to_uppercase()));
    assert_eq!(bytes, fs[0].1);
    let mut wrong = ids[0][..11].to_string();
    wrong.push(if ids[0].as_bytes()[11] == b'0' {
        '1'
    } else {
        '0'
    });
    for bad in [wrong.as_str(), "HEAD~3", "main~x", "abc"] {
        let err = rrun_err(&src, &["remote", "checkout", "origin", bad, "-o", o], &[]);
        assert!(
            err.contains("has no branch, tag or snapshot"),
            "{bad}: {err}"
        );
    }
    // Only safetensors comes out: a .npy name or a directory is refused, not given
    // safetensors bytes under that name.
    let npy = work.path().join("r.npy");
    for out in [npy.as_path(), work.path()] {
        let o = out.to_str().unwrap();
        let err = rrun_err(
            &src,
            &["remote", "checkout", "origin", "HEAD", "-o", o],
            &[],
        );
        assert!(
            err.contains("remote checkout writes a .safetensors file"),
            "{err}"
        );
    }
    assert!(!npy.exists());
}
both_remotes!(
    dir_remote_checkout_resolves_ancestors_and_id_prefixes,
    s3_remote_checkout_resolves_ancestors_and_id_prefixes,
    remote_checkout_specs
);

/// `fsck --json` of `repo` (it fails when anything is damaged).
fn fsck_json(repo: &Path) -> serde_json::Value {
    let o = rrun(repo, &["fsck", "--json"], &[]);
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&o)))
}

fn fsck_checks_tracking_refs(remote: &Remote) {
    let work = tempdir();
    let a = work.path().join("a");
    rrun_ok(&a, &["init"]);
    let fs = checkpoints(work.path(), 2, 51);
    commit(&a, &fs[0].0, &[]);
    remote.add(&a, "origin");
    rrun_ok(&a, &["push"]);
    let tip = log_ids(&a)[0].clone();
    // b commits its own snapshot and fetches a's: only remotes/origin/heads/main reaches it.
    let b = work.path().join("b");
    rrun_ok(&b, &["init"]);
    commit(&b, &fs[1].0, &[]);
    remote.add(&b, "origin");
    let own = local_packs(&b);
    rrun_ok(&b, &["fetch"]);
    assert_fsck_clean(&b);
    let fetched: Vec<String> = local_packs(&b).difference(&own).cloned().collect();
    assert!(!fetched.is_empty());
    for p in &fetched {
        std::fs::remove_file(b.join("packs").join(format!("{p}.pack"))).unwrap();
    }
    // The tracking ref's snapshot is named as lost, as a branch's would be.
    let report = fsck_json(&b);
    assert_eq!(report["clean"], false, "{report:#}");
    let problems = report["report"]["problems"].as_array().unwrap();
    let broken: Vec<&str> = problems
        .iter()
        .flat_map(|p| p["breaks"].as_array().unwrap())
        .map(|b| b[0].as_str().unwrap())
        .collect();
    assert!(broken.contains(&tip.as_str()), "{report:#}");
    let manifest = problems.iter().find(|p| p["object"] == tip.as_str());
    assert!(manifest.is_some(), "{report:#}");
    // Compare: the same damage under a branch.
    rrun_ok(&b, &["branch", "from-a", "origin/main"]);
    let as_branch = fsck_json(&b);
    let same = as_branch["report"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["object"] == tip.as_str())
        .cloned();
    assert_eq!(same.as_ref(), manifest, "{as_branch:#}");
}
both_remotes!(
    dir_fsck_checks_remote_tracking_refs,
    s3_fsck_checks_remote_tracking_refs,
    fsck_checks_tracking_refs
);

fn push_to_url(remote: &Remote) {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 2, 61);
    commit(&src, &fs[0].0, &[]);
    commit(&src, &fs[1].0, &[]);
    // No `remote add`: the URL and (on S3) its --endpoint on the push itself.
    let with_url = |args: &[&str]| {
        let mut a = vec!["push", remote.url.as_str()];
        a.extend_from_slice(args);
        let extra = remote.endpoint_args();
        a.extend(extra.iter().map(String::as_str));
        rjson(&src, &a)
    };
    let pushed = with_url(&["main"]);
    assert_eq!(pushed["refs"][0]["status"], "created", "{pushed:#}");
    assert_eq!(pushed["snapshots"], 2, "{pushed:#}");
    assert_eq!(pushed["remote"], remote.url.as_str());
    let dst = work.path().join("dst");
    remote.clone_into(&dst);
    assert_eq!(log_ids(&dst), log_ids(&src));
    assert_eq!(checkout_bytes(&dst, "HEAD~1", &[]), fs[0].1);
    let deleted = with_url(&["--delete", "main"]);
    assert_eq!(deleted["deleted"][0]["ref"], "heads/main", "{deleted:#}");
    let again = with_url(&[]);
    assert_eq!(again["refs"][0]["status"], "created", "{again:#}");
    assert_eq!(again["packs_uploaded"], 0, "{again:#}");
}
both_remotes!(
    dir_push_to_a_url_with_its_endpoint,
    s3_push_to_a_url_with_its_endpoint,
    push_to_url
);

/// `snapstore log | head`: a reader that goes away ends the command quietly (no panic, no
/// message, exit 0), although SIGPIPE is ignored so that network writes fail instead.
#[test]
fn closed_stdout_ends_a_command_quietly() {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    for (f, _) in &checkpoints(work.path(), 2, 71) {
        commit(&src, f, &[]);
    }
    let mut child = command(&src)
        .args(["log"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before the command prints
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}: {}", o.status, stderr(&o));
    assert_eq!(stderr(&o), "");
}

/// What [`cutting_proxy`] does to a connection once its client has sent `cut` bytes.
#[derive(Clone, Copy, PartialEq)]
enum Cut {
    /// Resets it, as a server or load balancer dropping a connection mid-upload does.
    Reset,
    /// Passes nothing more on and answers nothing (the connection stays open), as a stalled
    /// network does.
    Stall,
}

/// A TCP proxy to `upstream` (`http://127.0.0.1:PORT`) that cuts each connection once its client
/// has sent `cut` bytes, the way `how` says. Returns its URL and a flag set at the first cut.
fn cutting_proxy(upstream: &str, cut: usize, how: Cut) -> (String, Arc<AtomicBool>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cut_once = Arc::new(AtomicBool::new(false));
    let flag = cut_once.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = upstream.clone();
            let flag = flag.clone();
            std::thread::spawn(move || {
                let Ok(mut server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let (mut back_from, mut back_to) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                let back = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut back_from, &mut back_to);
                });
                let mut client = client;
                let (mut sent, mut buf) = (0, vec![0u8; 64 << 10]);
                loop {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    sent += n;
                    if sent >= cut {
                        flag.store(true, Ordering::SeqCst);
                        if how == Cut::Stall {
                            // Swallow the rest until the client gives up on the connection.
                            while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
                            break;
                        }
                        // SO_LINGER 0: the close sends RST instead of FIN.
                        let linger = libc::linger {
                            l_onoff: 1,
                            l_linger: 0,
                        };
                        // SAFETY: a valid socket and a `linger` of the size given.
                        unsafe {
                            libc::setsockopt(
                                client.as_raw_fd(),
                                libc::SOL_SOCKET,
                                libc::SO_LINGER,
                                (&linger as *const libc::linger).cast(),
                                std::mem::size_of::<libc::linger>() as libc::socklen_t,
                            );
                        }
                        break;
                    }
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = server.shutdown(Shutdown::Both);
                let _ = back.join();
            });
        }
    });
    (url, cut_once)
}

/// Regression: SIGPIPE's default action killed a push whose S3 connection was reset mid-upload
/// (exit 141, no message). Now the write fails, object_store retries, and the push fails
/// naming the remote.
#[test]
fn s3_dropped_connection_fails_a_push_with_a_message() {
    let Some(server) = s3_or_skip("s3_dropped_connection_fails_a_push_with_a_message") else {
        return;
    };
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let big = work.path().join("big.safetensors");
    write_safetensors(
        &big,
        &[Tensor::f32(&mut Rng::new(5), "w", &[3 << 20], 1.0)],
        None,
    );
    commit(&src, &big, &["--bound", "lossless"]);
    let (proxy, _) = cutting_proxy(&server.url, 1 << 20, Cut::Reset);
    let url = format!("s3://{BUCKET}/dropped-{}", std::process::id());
    let o = rrun(&src, &["push", &url, "--endpoint", &proxy], &[]);
    assert_eq!(o.status.code(), Some(1), "{:?}: {}", o.status, stderr(&o));
    assert!(
        stderr(&o).contains(&format!("error: remote {url}")),
        "{}",
        stderr(&o)
    );
}

/// Sets a file's modification time `secs` seconds back.
fn age(path: &Path, secs: u64) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Regression: a killed push to a directory remote left upload temp files in `packs/`
/// (`NAME.pack#N`, object_store's staging) that nothing removed. The next push removes those
/// over an hour old, `remote gc` those older than --grace; nothing else is touched.
#[test]
fn dir_killed_upload_temps_are_removed_by_push_and_remote_gc() {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 1, 73);
    commit(&src, &fs[0].0, &[]);
    let remote = Remote::dir();
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]);
    let packs = Path::new(&remote.url).join("packs");
    let pack = "cd".repeat(32);
    let old = [
        packs.join(format!("{pack}.pack#1")),
        packs.join(format!(".tmp-4194304-7-{pack}.pack")),
    ];
    let young = packs.join(format!("{pack}.pack#2"));
    let foreign = packs.join("notes#1");
    for p in old.iter().chain([&young, &foreign]) {
        std::fs::write(p, b"partial").unwrap();
    }
    for p in old.iter().chain([&foreign]) {
        age(p, 7200);
    }
    rrun_ok(&src, &["push"]);
    for p in &old {
        assert!(!p.exists(), "{} stayed", p.display());
    }
    assert!(young.exists() && foreign.exists());
    let gc = rjson(&src, &["remote", "gc", "origin", "--grace", "0"]);
    assert_eq!(gc["removed_uploads"], 1, "{gc:#}");
    assert!(!young.exists() && foreign.exists());
    let out = rrun_ok(&src, &["remote", "gc", "origin", "--grace", "0"]);
    assert!(out.contains("0 unfinished upload(s) removed"), "{out}");
    let dst = work.path().join("dst");
    remote.clone_into(&dst);
    assert_eq!(checkout_bytes(&dst, "HEAD", &[]), fs[0].1);
}

/// Regression: a push to a directory remote that vanished (an unmounted share: the mount point
/// empty or missing) made a new remote on the local disk and reported success. Refused when
/// this repository has seen refs there; a push to the URL itself still starts a new one.
#[test]
fn dir_push_to_a_vanished_remote_is_refused() {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 2, 75);
    commit(&src, &fs[0].0, &[]);
    let remote = Remote::dir();
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]); // a first push to a new remote creates it
    commit(&src, &fs[1].0, &[]);
    let real = Path::new(&remote.url).with_extension("real");
    std::fs::rename(&remote.url, &real).unwrap();
    let err = rrun_err(&src, &["push"], &[]);
    assert!(
        err.contains(
            "looks empty or missing (no SNAPSTORE-REMOTE), although this repository saw refs there"
        ),
        "{err}"
    );
    assert!(
        !Path::new(&remote.url).exists(),
        "the push created the remote"
    );
    std::fs::create_dir(&remote.url).unwrap(); // an empty mount point
    let err = rrun_err(&src, &["push"], &[]);
    assert!(
        err.contains(&format!("`snapstore push {}`", remote.url)),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&remote.url).unwrap().count(), 0);
    let pushed = rjson(&src, &["push", &remote.url]);
    assert_eq!(pushed["refs"][0]["status"], "created", "{pushed:#}");
}

/// Regression: a plain push moved a remote tag ("fast-forward"), and refusing a move back
/// spoke of a branch and said to pull. A tag moves only with --force.
fn tags_do_not_move(remote: &Remote) {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 2, 77);
    let first = commit(&src, &fs[0].0, &[]);
    commit(&src, &fs[1].0, &[]);
    remote.add(&src, "origin");
    rrun_ok(&src, &["tag", "rel", "main~1"]);
    rrun_ok(&src, &["push", "origin", "rel"]);
    rrun_ok(&src, &["tag", "-d", "rel"]);
    rrun_ok(&src, &["tag", "rel", "main"]);
    let err = rrun_err(&src, &["push", "origin", "rel"], &[]);
    assert!(
        err.contains(&format!(
            "tag rel already exists on the remote (at {})",
            &first[..12]
        )) && err.contains("tags do not move: push --force to move it")
            && !err.contains("branch")
            && !err.contains("Pull"),
        "{err}"
    );
    let again = rjson(&src, &["push", "origin", "rel", "--force"]);
    assert_eq!(again["refs"][0]["status"], "forced", "{again:#}");
}
both_remotes!(
    dir_remote_tags_move_only_by_force,
    s3_remote_tags_move_only_by_force,
    tags_do_not_move
);

/// Regression: a tag pushed after a clone was fetched only as `remotes/origin/tags/NAME`, which
/// no spelling resolved. A fetch now makes it a local tag, as git does, unless a local tag of
/// that name exists (it stays where it is).
fn fetched_tags_are_local_tags(remote: &Remote) {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 2, 81);
    let first = commit(&src, &fs[0].0, &[]);
    let second = commit(&src, &fs[1].0, &[]);
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]);
    let dst = work.path().join("dst");
    remote.clone_into(&dst);
    rrun_ok(&src, &["tag", "v1", "main~1"]);
    rrun_ok(&src, &["tag", "mine", "main"]);
    rrun_ok(&src, &["push", "origin", "v1", "mine"]);
    rrun_ok(&dst, &["tag", "mine", "main~1"]);
    rrun_ok(&dst, &["fetch"]);
    let shown = |spec: &str| {
        rjson(&dst, &["show", spec])["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(shown("v1"), first);
    assert_eq!(shown("mine"), first, "the local tag stays");
    assert_eq!(shown("remotes/origin/tags/mine"), second);
    assert_eq!(shown("origin/tags/mine"), second);
}
both_remotes!(
    dir_fetched_tags_are_local_tags,
    s3_fetched_tags_are_local_tags,
    fetched_tags_are_local_tags
);

/// Regression: a clone killed half way left a half-made repository at its path, and a re-run
/// said one already existed. A clone now builds beside its path under a temp name (what a killed
/// one leaves, here made by hand with a pid no process has) and renames it into place; the
/// re-run removes the dead clone's temp.
#[test]
fn a_killed_clones_leftovers_do_not_stop_the_next_clone() {
    let remote = Remote::dir();
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 2, 83);
    commit(&src, &fs[0].0, &[]);
    commit(&src, &fs[1].0, &[]);
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]);
    let left = work.path().join(".tmp-2147483646-7-dst");
    std::fs::create_dir_all(left.join("packs")).unwrap();
    std::fs::write(left.join("FORMAT"), b"1").unwrap();
    let dst = work.path().join("dst");
    remote.clone_into(&dst);
    assert!(!left.exists(), "the killed clone's temp is removed");
    assert_eq!(log_ids(&dst), log_ids(&src));
    assert_fsck_clean(&dst);
    let temps: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

/// Regression: `s3:/bucket/x` (one slash) became a local directory named `s3:`.
#[test]
fn a_mistyped_url_is_refused_not_taken_for_a_directory() {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 1, 79);
    commit(&src, &fs[0].0, &[]);
    for args in [
        &["push", "s3:/ckpt/x"][..],
        &["remote", "add", "typo", "s3:/ckpt/x"],
    ] {
        let err = rrun_err(&src, args, &[]);
        assert!(
            err.contains("it starts like a URL (s3:) but is not s3://bucket/prefix"),
            "{err}"
        );
    }
}

/// Regression: a missing bucket read as "holds no snapstore repository; push to it first"
/// (clone) or an XML dump about a probe object (push).
#[test]
fn s3_missing_bucket_is_named() {
    let Some(server) = s3_or_skip("s3_missing_bucket_is_named") else {
        return;
    };
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 1, 81);
    commit(&src, &fs[0].0, &[]);
    let said = format!("bucket no-such-bucket does not exist (at {})", server.url);
    let url = "s3://no-such-bucket/x";
    let dst = work.path().join("dst");
    let d = dst.display().to_string();
    for args in [
        vec!["push", url, "--endpoint", &server.url],
        vec!["clone", url, &d, "--endpoint", &server.url],
    ] {
        let err = rrun_err(&src, &args, &[]);
        assert!(err.contains(&said) && !err.contains("<?xml"), "{err}");
    }
    assert!(!dst.exists());
}

/// The keys of the unfinished multipart uploads under `prefix` on the test server (moto
/// answers unsigned requests).
fn multipart_uploads(server: &S3Server, prefix: &str) -> Vec<String> {
    use std::io::{Read, Write};
    let addr = server.url.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET /{BUCKET}?uploads&prefix={prefix} HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("ListMultipartUploadsResult"), "{answer}");
    answer
        .split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_string()))
        .collect()
}

/// Regression: Ctrl-C during a push to S3 ended the process mid-upload, and the multipart
/// upload it had begun stayed on the bucket (stored, billed, listed by no object listing)
/// until a lifecycle rule, if any, aborted it. Now the push aborts it, then ends as Ctrl-C
/// does; pushed again, it lands.
#[test]
fn s3_ctrl_c_during_a_push_aborts_its_multipart_upload() {
    let Some(server) = s3_or_skip("s3_ctrl_c_during_a_push_aborts_its_multipart_upload") else {
        return;
    };
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    // Incompressible, so the pack is three 16 MiB parts.
    let big = work.path().join("big.safetensors");
    let t = Tensor::random(&mut Rng::new(7), "w", Dtype::U8, &[40 << 20]);
    write_safetensors(&big, &[t], None);
    commit(&src, &big, &["--bound", "lossless"]);
    // Every connection that carries a part stalls half way through it: the push is mid-upload
    // when the signal comes, however fast this machine is.
    let (proxy, stalled) = cutting_proxy(&server.url, 8 << 20, Cut::Stall);
    let prefix = format!("ctrl-c-{}", std::process::id());
    let url = format!("s3://{BUCKET}/{prefix}");
    let mut push = command(&src);
    push.args(["push", &url, "--endpoint", &proxy])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in CREDENTIALS {
        push.env(k, v);
    }
    let child = push.spawn().unwrap();
    let waited = std::time::Instant::now();
    while !(stalled.load(Ordering::SeqCst) && multipart_uploads(server, &prefix).len() == 1) {
        assert!(
            waited.elapsed().as_secs() < 60,
            "the push never stalled mid-upload"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signals a child process this test started and has not waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc::SIGINT), "{}", stderr(&o));
    assert!(stderr(&o).contains("stopping"), "{}", stderr(&o));
    assert_eq!(multipart_uploads(server, &prefix), Vec::<String>::new());
    let extra = ["--endpoint".to_string(), server.url.clone()];
    let pushed = rjson(&src, &["push", &url, &extra[0], &extra[1]]);
    assert_eq!(pushed["packs_uploaded"], 1, "{pushed:#}");
    assert_eq!(multipart_uploads(server, &prefix), Vec::<String>::new());
}

/// A library push or fetch stopped through its interrupt flag (Ctrl-C in Python) once bytes
/// are moving: `Error::Interrupted`, no temp file on either side, no ref moved; the next push
/// and fetch complete it.
#[test]
fn an_interrupted_library_push_or_fetch_leaves_nothing_and_resumes() {
    use snapstore::{Error, RemoteSpec, Repo};
    let work = tempdir();
    let repo = Repo::init(work.path().join("src")).unwrap();
    let t = Tensor::random(&mut Rng::new(3), "w", Dtype::U8, &[24 << 20]);
    repo.commit_tensors(&[t.input()], None, &Default::default())
        .unwrap();
    let remote = work.path().join("remote");
    repo.add_remote(
        "origin",
        RemoteSpec::new(&remote.display().to_string()).unwrap(),
    )
    .unwrap();
    // Set once a few MiB have gone out (or come in): the transfer is under way.
    let stop_after_some_bytes = |repo: Repo| {
        let stop = Arc::new(AtomicBool::new(false));
        let trip = stop.clone();
        repo.with_interrupt(stop)
            .with_progress(move |p| trip.store(p.done >= 4 << 20, Ordering::SeqCst))
    };
    let temps_in = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir.join("packs"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with(".pack"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let err = stop_after_some_bytes(repo.clone())
        .push("origin", &[], Default::default())
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err}");
    assert_eq!(temps_in(&remote), Vec::<String>::new());
    let pushed = repo.push("origin", &[], Default::default()).unwrap();
    assert_eq!(pushed.refs[0].status, "created");

    let dst = Repo::init(work.path().join("dst")).unwrap();
    dst.add_remote(
        "origin",
        RemoteSpec::new(&remote.display().to_string()).unwrap(),
    )
    .unwrap();
    let err = stop_after_some_bytes(dst.clone())
        .fetch("origin", &[])
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err}");
    assert_eq!(temps_in(&work.path().join("dst")), Vec::<String>::new());
    let fetched = dst.fetch("origin", &[]).unwrap();
    assert_eq!(fetched.packs, 1);
    let pulled = dst.pull("origin", Some("main")).unwrap();
    assert_eq!(pulled.status, "created");
    assert_eq!(dst.checkout("main", None).unwrap().tensors[0].data, t.data);
}

/// The AWS CLI's `AWS_ENDPOINT_URL` names the endpoint as `--endpoint` does, `http://` included
/// (it failed with the client's bare "builder error"); one without a scheme is refused by name
/// (it made the client panic).
#[test]
fn s3_endpoint_from_the_aws_environment() {
    let Some(server) = s3_or_skip("s3_endpoint_from_the_aws_environment") else {
        return;
    };
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 1, 31);
    commit(&src, &fs[0].0, &[]);
    let url = format!("s3://{BUCKET}/env-endpoint-{}", std::process::id());
    rrun_ok(&src, &["push", &url, "--endpoint", &server.url]);
    let out = work.path().join("out.safetensors");
    let args = [
        "remote",
        "checkout",
        &url,
        "main",
        "-o",
        out.to_str().unwrap(),
    ];
    let o = rrun(&src, &args, &[("AWS_ENDPOINT_URL", &server.url)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), fs[0].1);
    let bare = server.url.trim_start_matches("http://");
    let err = rrun_err(&src, &args, &[("AWS_ENDPOINT_URL", bare)]);
    assert!(
        err.contains(&format!(
            "AWS_ENDPOINT_URL {bare:?} is not an endpoint URL: write http://HOST:PORT"
        )),
        "{err}"
    );
}

/// What a `remote gc` racing a push can take (README, "remote gc"), the tip's record and its
/// pack, is restored by pushing the branch again: the push found the ref up to date and sent
/// nothing, so the remote stayed unclonable until a new snapshot was pushed on top.
fn push_restores_a_lost_record(remote: &Remote) {
    let work = tempdir();
    let (src, fs) = committed_source(work.path(), 3, 41);
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]);
    let tip = &log_ids(&src)[0];
    let record: serde_json::Value =
        serde_json::from_slice(&take_remote_object(remote, &format!("snapshots/{tip}"))).unwrap();
    let packs: Vec<String> = record["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    for p in &packs {
        take_remote_object(remote, &format!("packs/{p}.pack"));
    }
    let pushed = rjson(&src, &["push"]);
    assert_eq!(pushed["refs"][0]["status"], "up-to-date", "{pushed:#}");
    assert_eq!(pushed["snapshots"], 1, "{pushed:#}");
    assert_eq!(pushed["packs_uploaded"], packs.len(), "{pushed:#}");
    let dst = work.path().join("dst");
    remote.clone_into(&dst);
    assert_eq!(checkout_bytes(&dst, "HEAD", &[]), fs[2].1);
    // Nothing lost: the next push sends nothing.
    let again = rjson(&src, &["push"]);
    assert_eq!(
        (again["snapshots"].clone(), again["packs_uploaded"].clone()),
        (0.into(), 0.into())
    );
}
both_remotes!(
    dir_push_restores_a_lost_record,
    s3_push_restores_a_lost_record,
    push_restores_a_lost_record
);

/// Tracking refs follow the remote: a fetch of all refs removes those of a branch deleted
/// there, and `remote remove` removes the rest, so `gc` frees what only they reached (before,
/// nothing removed them), and the name can be added again for another, empty remote (refused
/// before as "vanished": the old tracking refs said this repository had seen refs there).
fn tracking_refs_follow_the_remote(remote: &Remote) {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 2, 43);
    commit(&src, &fs[0].0, &[]);
    rrun_ok(&src, &["branch", "exp"]);
    commit(&src, &fs[1].0, &["--branch", "exp"]);
    remote.add(&src, "origin");
    rrun_ok(&src, &["push", "origin", "main", "exp"]);
    let dst = work.path().join("dst");
    remote.clone_into(&dst);
    assert_eq!(checkout_bytes(&dst, "origin/exp", &[]), fs[1].1);
    rrun_ok(&src, &["push", "--delete", "exp"]);
    let fetched = rjson(&dst, &["fetch"]);
    assert_eq!(
        fetched["pruned"],
        serde_json::json!(["remotes/origin/heads/exp"]),
        "{fetched:#}"
    );
    let err = rrun_err(&dst, &["log", "origin/exp"], &[]);
    assert!(err.contains("unknown ref"), "{err}");
    // The clone's own branch exp still holds the snapshot; without it gc frees it.
    rrun_ok(&dst, &["branch", "-d", "exp"]);
    let gc = rjson(&dst, &["gc", "--grace", "0"]);
    assert!(gc["freed_bytes"].as_u64().unwrap() > 0, "{gc:#}");
    assert_eq!(checkout_bytes(&dst, "origin/main", &[]), fs[0].1);
    rrun_ok(&dst, &["remote", "remove", "origin"]);
    let err = rrun_err(&dst, &["log", "remotes/origin/heads/main"], &[]);
    assert!(err.contains("unknown ref"), "{err}");
    let elsewhere = Remote {
        url: format!("{}-elsewhere", remote.url),
        endpoint: remote.endpoint.clone(),
        _dir: None,
    };
    elsewhere.add(&dst, "origin");
    let pushed = rjson(&dst, &["push"]);
    assert_eq!(pushed["refs"][0]["status"], "created", "{pushed:#}");
}
both_remotes!(
    dir_tracking_refs_follow_the_remote,
    s3_tracking_refs_follow_the_remote,
    tracking_refs_follow_the_remote
);

/// A local repository's directory is not a remote: a push into it is refused and writes
/// nothing there (it was taken, and that repository's next gc removed the pushed packs, so the
/// "remote" could no longer be cloned); a clone from it says what it is.
#[test]
fn a_repository_directory_is_refused_as_a_remote() {
    let work = tempdir();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let fs = checkpoints(work.path(), 2, 47);
    for (repo, f) in [(&a, &fs[0].0), (&b, &fs[1].0)] {
        rrun_ok(repo, &["init"]);
        commit(repo, f, &[]);
    }
    let before: Vec<_> = std::fs::read_dir(&b)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let b_url = b.display().to_string();
    let err = rrun_err(&a, &["push", &b_url, "main"], &[]);
    assert!(
        err.contains("is a local snapstore repository, not a remote"),
        "{err}"
    );
    let after: Vec<_> = std::fs::read_dir(&b)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after);
    let err = rrun_err(
        work.path(),
        &["clone", &b_url, work.path().join("c").to_str().unwrap()],
        &[],
    );
    assert!(
        err.contains("is a local snapstore repository, not a remote"),
        "{err}"
    );
    // A file where the remote's directory should be (it said "File exists (os error 17)").
    let file = work.path().join("afile");
    std::fs::write(&file, b"").unwrap();
    let file_url = file.display().to_string();
    let err = rrun_err(&a, &["push", &file_url, "main"], &[]);
    assert!(
        err.contains(&format!("remote {file_url}: is a file, not a directory")),
        "{err}"
    );
}

/// Names on the command line: `push origin HEAD` pushes HEAD's branch (it said `unknown ref
/// "HEAD"`), a snapshot expression is refused saying push takes branches and tags, and a
/// mistyped remote name is named as one by `remote gc` and `remote checkout` (it was taken for
/// a directory that "holds no snapstore repository").
#[test]
fn push_refs_and_remote_names_are_read_as_names() {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 1, 53);
    commit(&src, &fs[0].0, &[]);
    let remote = Remote::dir();
    remote.add(&src, "origin");
    let pushed = rjson(&src, &["push", "origin", "HEAD"]);
    assert_eq!(pushed["refs"][0]["ref"], "heads/main", "{pushed:#}");
    let err = rrun_err(&src, &["push", "origin", "main~0"], &[]);
    assert!(
        err.contains("\"main~0\" is no branch or tag here; push sends branches and tags by name"),
        "{err}"
    );
    let out = work.path().join("x.safetensors");
    for args in [
        vec!["remote", "gc", "orgin", "--dry-run"],
        vec![
            "remote",
            "checkout",
            "orgin",
            "main",
            "-o",
            out.to_str().unwrap(),
        ],
    ] {
        let err = rrun_err(&src, &args, &[]);
        assert!(
            err.contains("no remote named \"orgin\" (remotes: origin)"),
            "{args:?}: {err}"
        );
    }
    let dry = rrun_ok(&src, &["remote", "gc", "origin", "--dry-run"]);
    assert!(dry.contains("would be removed"), "{dry}");
}

/// `NAME/BRANCH` always means remote NAME's branch: a remote name that a local branch or tag
/// starts with (`exp` beside branch `exp/main`), one with a '/', or a ref namespace is refused,
/// and so is a new branch or tag under a remote's name (before, `log exp/main` silently read the
/// local branch, and the remote's main was reachable only as `remotes/exp/main`).
#[test]
fn remote_names_and_ref_names_do_not_shadow_each_other() {
    let work = tempdir();
    let src = work.path().join("src");
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 1, 59);
    commit(&src, &fs[0].0, &[]);
    let url = work.path().join("remote").display().to_string();
    rrun_ok(&src, &["branch", "exp/main"]);
    let err = rrun_err(&src, &["remote", "add", "exp", &url], &[]);
    assert!(
        err.contains("the local branch or tag exp/main would be read as this remote's branch"),
        "{err}"
    );
    for (name, why) in [("a/b", "no '/'"), ("heads", "ref namespace")] {
        let err = rrun_err(&src, &["remote", "add", name, &url], &[]);
        assert!(
            err.contains("invalid remote name") && err.contains(why),
            "{err}"
        );
    }
    rrun_ok(&src, &["remote", "add", "origin", &url]);
    for args in [["branch", "origin/x"], ["tag", "origin/v1"]] {
        let err = rrun_err(&src, &args, &[]);
        assert!(err.contains("names the branches of remote origin"), "{err}");
    }
}

/// `remote fsck --json` (any exit status): the report.
fn remote_fsck(repo: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["remote", "fsck", "origin", "--json"];
    args.extend(extra);
    let o = rrun(repo, &args, &[]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stderr(&o)));
    assert_eq!(
        o.status.success(),
        report["clean"] == true,
        "exit status follows clean: {report:#}"
    );
    report
}

/// `remote fsck` names what a ref needs that is missing or damaged on the remote (a lost pack,
/// a cut one, a flipped byte only `--deep` reads, a lost record), and `--repair` puts it back
/// from a repository that holds it; a push could not, as its records were there.
fn remote_fsck_finds_and_repairs(remote: &Remote) {
    let work = tempdir();
    let (src, fs) = committed_source(work.path(), 3, 61);
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]);
    let clean = remote_fsck(&src, &["--deep"]);
    assert_eq!(
        (clean["snapshots"].clone(), clean["problems"].clone()),
        (3.into(), serde_json::json!([])),
        "{clean:#}"
    );
    let tip = log_ids(&src)[0].clone();
    let record: serde_json::Value =
        serde_json::from_slice(&take_remote_object(remote, &format!("snapshots/{tip}"))).unwrap();
    let pack = format!("packs/{}.pack", record["packs"][0].as_str().unwrap());
    // Put the record back (a lost pack alone is what a push cannot see).
    put_remote_object(
        remote,
        &format!("snapshots/{tip}"),
        serde_json::to_vec(&record).unwrap(),
    );
    let bytes = take_remote_object(remote, &pack);
    let pushed = rjson(&src, &["push"]);
    assert_eq!(
        pushed["packs_uploaded"], 0,
        "push does not see it: {pushed:#}"
    );
    let found = remote_fsck(&src, &[]);
    assert_eq!(found["problems"][0]["object"], pack.as_str(), "{found:#}");
    assert_eq!(found["problems"][0]["problem"], "missing", "{found:#}");
    assert_eq!(
        found["problems"][0]["reached_from"], "heads/main",
        "{found:#}"
    );
    let repaired = remote_fsck(&src, &["--repair"]);
    assert_eq!(
        repaired["repaired"],
        serde_json::json!([pack]),
        "{repaired:#}"
    );
    assert_eq!(repaired["clean"], true, "{repaired:#}");
    if remote.endpoint.is_none() {
        let path = Path::new(&remote.url).join(&pack);
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let found = remote_fsck(&src, &[]);
        let problem = found["problems"][0]["problem"].as_str().unwrap();
        assert!(problem.starts_with("truncated"), "{found:#}");
        remote_fsck(&src, &["--repair"]);
        // Cut in its trailer only: every object is there, but no clone can read the pack.
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let found = remote_fsck(&src, &[]);
        let problem = found["problems"][0]["problem"].as_str().unwrap();
        assert!(problem.contains("its trailer and footer"), "{found:#}");
        remote_fsck(&src, &["--repair"]);
    }
    damage(remote, &pack, 200);
    assert_eq!(
        remote_fsck(&src, &[])["clean"],
        true,
        "only the deep check reads every byte"
    );
    let deep = remote_fsck(&src, &["--deep"]);
    let problem = deep["problems"][0]["problem"].as_str().unwrap();
    assert!(problem.contains("does not hash to its id"), "{deep:#}");
    assert_eq!(remote_fsck(&src, &["--deep", "--repair"])["clean"], true);
    take_remote_object(remote, &format!("snapshots/{tip}"));
    let found = remote_fsck(&src, &[]);
    assert_eq!(
        found["problems"][0]["object"],
        format!("snapshots/{tip}"),
        "{found:#}"
    );
    let repaired = remote_fsck(&src, &["--repair"]);
    assert_eq!(
        repaired["repaired"],
        serde_json::json!([format!("snapshots/{tip}")])
    );
    // Records present but unreadable (what a crash of an unsynced write leaves): the walk
    // stops at the first, and the repair writes it and the one behind it again.
    let ids = log_ids(&src);
    for id in &ids[1..] {
        put_remote_object(remote, &format!("snapshots/{id}"), Vec::new());
    }
    let found = remote_fsck(&src, &[]);
    let objects: Vec<_> = found["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["object"])
        .collect();
    assert_eq!(
        objects,
        [&serde_json::json!(format!("snapshots/{}", ids[1]))],
        "{found:#}"
    );
    let repaired = remote_fsck(&src, &["--repair"]);
    let mut expected: Vec<String> = ids[1..]
        .iter()
        .map(|id| format!("snapshots/{id}"))
        .collect();
    expected.sort();
    assert_eq!(
        repaired["repaired"],
        serde_json::json!(expected),
        "{repaired:#}"
    );
    assert_eq!(repaired["clean"], true, "{repaired:#}");
    let dst = work.path().join("dst");
    remote.clone_into(&dst);
    assert_eq!(checkout_bytes(&dst, "HEAD", &[]), fs[2].1);
    assert_eq!(checkout_bytes(&dst, "HEAD~2", &[]), fs[0].1);
}

/// Writes `body` as remote object `rel`, over whatever is there.
fn put_remote_object(remote: &Remote, rel: &str, body: Vec<u8>) {
    match &remote.endpoint {
        None => std::fs::write(Path::new(&remote.url).join(rel), body).unwrap(),
        Some(e) => with_s3(remote, e, rel, async |s3, key| {
            s3.put(&key, body.into()).await.unwrap();
        }),
    }
}
both_remotes!(
    dir_remote_fsck_finds_and_repairs,
    s3_remote_fsck_finds_and_repairs,
    remote_fsck_finds_and_repairs
);

/// A push places the chunks a new snapshot reuses where the remote already holds them (its
/// parent's record), not in the local pack that holds them now: after a local `gc` rewrote
/// that pack under a new name, the next push uploaded all of it again, for a snapshot that
/// stored nothing of its own (the remote then held every chunk twice, and clones fetched both).
fn push_after_a_local_gc_sends_only_what_is_new(remote: &Remote) {
    let work = tempdir();
    let (src, other) = (work.path().join("src"), work.path().join("other"));
    rrun_ok(&src, &["init"]);
    let fs = checkpoints(work.path(), 3, 67);
    commit(&src, &fs[0].0, &[]);
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]);
    remote.clone_into(&other);
    commit(&other, &fs[1].0, &[]);
    rrun_ok(&other, &["push"]);
    commit(&src, &fs[2].0, &[]);
    let pushed = rjson(&src, &["push"]);
    assert_eq!(pushed["refs"][0]["status"], "rebased", "{pushed:#}");
    // The pre-rebase manifest is garbage: gc rewrites the pack that holds it with the chunks.
    let gc = rjson(&src, &["gc", "--grace", "0"]);
    assert_eq!(gc["rewritten_packs"], 1, "{gc:#}");
    commit(&src, &fs[2].0, &["-m", "the same weights again"]);
    let pushed = rjson(&src, &["push"]);
    assert_eq!(pushed["packs_uploaded"], 1, "{pushed:#}");
    assert!(pushed["bytes"].as_u64().unwrap() < 16 << 10, "{pushed:#}");
    let dst = work.path().join("dst");
    remote.clone_into(&dst);
    assert_eq!(checkout_bytes(&dst, "HEAD", &[]), fs[2].1);
    assert_eq!(checkout_bytes(&dst, "HEAD~2", &[]), fs[1].1);
}
both_remotes!(
    dir_push_after_a_local_gc_sends_only_what_is_new,
    s3_push_after_a_local_gc_sends_only_what_is_new,
    push_after_a_local_gc_sends_only_what_is_new
);

/// A directory remote cannot hold a branch `feat` and a branch `feat/x` (a file and a directory
/// of one name): a push of both, or of one beside the other already there, is refused naming
/// both before any ref moves (it moved the first and failed on the second with "Not a
/// directory", or waited 30 s on a "lock" that was a directory).
#[test]
fn a_directory_remote_refuses_refs_that_would_be_file_and_directory() {
    let work = tempdir();
    let (src, _) = committed_source(work.path(), 2, 62);
    let remote = Remote::dir();
    remote.add(&src, "origin");
    rrun_ok(&src, &["branch", "feat"]);
    rrun_ok(&src, &["branch", "feat/x"]);
    let refs = Path::new(&remote.url).join("refs");
    let err = stderr(&rrun(
        &src,
        &["push", "origin", "main", "feat", "feat/x"],
        &[],
    ));
    assert!(
        err.contains("cannot hold both heads/feat and heads/feat/x"),
        "{err}"
    );
    assert!(!refs.exists(), "no ref moved");
    rrun_ok(&src, &["push", "origin", "feat/x"]);
    let err = stderr(&rrun(&src, &["push", "origin", "feat"], &[]));
    assert!(
        err.contains("cannot hold both heads/feat and heads/feat/x"),
        "{err}"
    );
    rrun_ok(&src, &["push", "origin", "main"]);
}

/// `fetch` and `pull` take a URL as push and clone do, with `--endpoint` where it is S3; a fetch
/// by URL says that no ref keeps what it brought (a gc took all of it, unannounced).
fn fetch_and_pull_by_url(remote: &Remote) {
    let work = tempdir();
    let (src, fs) = committed_source(work.path(), 2, 63);
    let endpoint = remote.endpoint_args();
    let with_endpoint = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(endpoint.iter().cloned());
        all
    };
    let run_with = |repo: &Path, args: &[&str]| {
        let all = with_endpoint(args);
        rrun(
            repo,
            &all.iter().map(String::as_str).collect::<Vec<_>>(),
            &[],
        )
    };
    assert!(run_with(&src, &["push", &remote.url]).status.success());
    let dst = work.path().join("dst");
    rrun_ok(&dst, &["init"]);
    let o = run_with(&dst, &["fetch", &remote.url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not a configured remote, so no remote-tracking ref keeps"),
        "{}",
        stderr(&o)
    );
    let o = run_with(&dst, &["pull", &remote.url, "main"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(checkout_bytes(&dst, "HEAD", &[]), fs[1].1);
    assert_eq!(checkout_bytes(&dst, "HEAD~1", &[]), fs[0].1);
}
both_remotes!(
    dir_fetch_and_pull_by_url,
    s3_fetch_and_pull_by_url,
    fetch_and_pull_by_url
);

/// A clone makes the directory it is given the repository, so it refuses one holding files
/// (they were mixed in with the repository's, and a `refs.log` there appended to); an empty one
/// is taken. A first push refuses one too (it became a remote in place).
#[test]
fn a_clone_or_a_first_push_refuses_a_directory_holding_files() {
    let work = tempdir();
    let (src, fs) = committed_source(work.path(), 1, 64);
    let remote = Remote::dir();
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]);
    let project = work.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("refs.log"), b"mine\n").unwrap();
    let err = stderr(&rrun(
        &src,
        &["clone", &remote.url, project.to_str().unwrap()],
        &[],
    ));
    assert!(err.contains("project is not empty"), "{err}");
    assert_eq!(sorted_names(&project), ["refs.log"]);
    assert_eq!(std::fs::read(project.join("refs.log")).unwrap(), b"mine\n");
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    remote.clone_into(&empty);
    assert_eq!(checkout_bytes(&empty, "HEAD", &[]), fs[0].1);
    // Commands run in the clone find it (it said there was no repository, and to run init).
    let log = std::process::Command::new(snapstore_bin())
        .arg("log")
        .current_dir(&empty)
        .env_remove("SNAPSTORE_REPO")
        .output()
        .unwrap();
    assert!(log.status.success(), "{}", stderr(&log));
    // A first push, likewise, takes a new or empty directory, not one holding files.
    let err = stderr(&rrun(&src, &["push", project.to_str().unwrap()], &[]));
    assert!(err.contains("holds files but no snapstore remote"), "{err}");
    assert_eq!(sorted_names(&project), ["refs.log"]);
}

/// A pull that re-parents lossy snapshots leaves their originals behind, which the rebased
/// ones are coded against: gc keeps them, so fsck no longer lists them as snapshots "gc
/// removes" (it did after every pull, and gc never did), but counts them as kept.
#[test]
fn fsck_counts_what_a_rebase_leaves_as_kept_not_as_removable() {
    let work = tempdir();
    let (src, _) = committed_source(work.path(), 1, 65);
    let remote = Remote::dir();
    remote.add(&src, "origin");
    rrun_ok(&src, &["push"]);
    let (ours, theirs) = (work.path().join("ours"), work.path().join("theirs"));
    remote.clone_into(&ours);
    remote.clone_into(&theirs);
    let fs = checkpoints(work.path(), 4, 66);
    commit(&theirs, &fs[1].0, &[]);
    rrun_ok(&theirs, &["push"]);
    commit(&ours, &fs[2].0, &["--bound", "rel:0.01"]);
    commit(&ours, &fs[3].0, &["--bound", "rel:0.01"]);
    let pulled = rjson(&ours, &["pull"]);
    assert_eq!(pulled["status"], "rebased", "{pulled:#}");
    rrun_ok(&ours, &["gc", "--grace", "0"]);
    let fsck = rjson(&ours, &["fsck"]);
    let report = &fsck["report"];
    assert_eq!(
        report["unreferenced_snapshots"],
        serde_json::json!([]),
        "{fsck:#}"
    );
    assert!(
        report["kept_as_references"].as_u64().unwrap() >= 1,
        "{fsck:#}"
    );
}

/// A ref damaged on the remote (emptied) no longer blocks every command: a fetch takes the other
/// refs and names it (keeping its tracking ref), fsck names it, gc refuses to guess what it
/// reached, a plain push names the way out, and `push --force` writes it again or `push
/// --delete` removes it (before, only deleting the object by hand helped).
fn a_damaged_ref_is_named_and_mended(remote: &Remote) {
    let work = tempdir();
    let (src, fs) = committed_source(work.path(), 2, 67);
    remote.add(&src, "origin");
    rrun_ok(&src, &["branch", "other", "HEAD~1"]);
    rrun_ok(&src, &["push", "origin", "main", "other"]);
    put_remote_object(remote, "refs/heads/main", Vec::new());

    let o = rrun(&src, &["fetch"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: not fetched: heads/main:"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        rjson(&src, &["log", "origin/main"])[0]["id"],
        log_ids(&src)[0].as_str()
    );
    // Asked for by name, it is an error naming the damage and the way out.
    let err = rrun_err(&src, &["fetch", "origin", "main"], &[]);
    assert!(
        err.contains("refs/heads/main is damaged") && err.contains("push --force"),
        "{err}"
    );
    let found = remote_fsck(&src, &[]);
    assert_eq!(
        found["problems"][0]["object"], "refs/heads/main",
        "{found:#}"
    );
    let fix = "`snapstore push --force` of it writes it again";
    assert!(
        found["problems"][0]["problem"]
            .as_str()
            .unwrap()
            .contains(fix),
        "{found:#}"
    );
    let err = rrun_err(&src, &["remote", "gc", "origin"], &[]);
    assert!(err.contains("refs/heads/main is damaged"), "{err}");
    assert!(stderr(&rrun(&src, &["push"], &[])).contains(fix));

    let forced = rjson(&src, &["push", "--force"]);
    assert_eq!(forced["refs"][0]["status"], "forced", "{forced:#}");
    assert_eq!(remote_fsck(&src, &[])["clean"], true);
    put_remote_object(remote, "refs/heads/main", b"not an id\n".to_vec());
    rrun_ok(&src, &["push", "--delete", "main"]);
    assert_eq!(remote_fsck(&src, &[])["clean"], true);
    let dst = work.path().join("dst");
    remote.clone_into(&dst);
    assert_eq!(checkout_bytes(&dst, "other", &[]), fs[0].1);
}
both_remotes!(
    dir_a_damaged_ref_is_named_and_mended,
    s3_a_damaged_ref_is_named_and_mended,
    a_damaged_ref_is_named_and_mended
);
