//! Helpers shared by every test module: temp repositories, running the real binary, a tiny
//! deterministic PRNG, and safetensors files built with the `safetensors` crate.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use snapstore::{Dtype, TensorInput};
use tempfile::TempDir;

/// Path of the `snapstore` binary under test: the one cargo built, or `SNAPSTORE_TEST_BIN` when
/// the test binary was carried to another machine (a GPU host without a Rust toolchain).
pub fn snapstore_bin() -> String {
    std::env::var("SNAPSTORE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_snapstore").into())
}

/// A fresh temporary directory; removed when dropped.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("snapstore-test-")
        .tempdir()
        .expect("create temp dir")
}

/// A temp directory with an initialized repository at `DIR/repo` (through the real binary).
pub fn init_repo() -> (TempDir, PathBuf) {
    let dir = tempdir();
    let repo = dir.path().join("repo");
    run_ok(&repo, &["init"]);
    (dir, repo)
}

/// A `snapstore --repo REPO` command with test hooks and the repo env var cleared.
pub fn command(repo: &Path) -> Command {
    let mut c = Command::new(snapstore_bin());
    c.arg("--repo")
        .arg(repo)
        .env_remove("SNAPSTORE_REPO")
        .env_remove(snapstore::FAIL_WRITES_ENV)
        .env_remove("SNAPSTORE_LOCK_TIMEOUT");
    c
}

/// Runs `snapstore --repo REPO ARGS...` to completion.
pub fn run(repo: &Path, args: &[&str]) -> Output {
    command(repo).args(args).output().expect("spawn snapstore")
}

/// Like [`run`] with extra environment variables.
pub fn run_env(repo: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command(repo);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("spawn snapstore")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and requires success; returns stdout.
#[track_caller]
pub fn run_ok(repo: &Path, args: &[&str]) -> String {
    let o = run(repo, args);
    assert!(
        o.status.success(),
        "snapstore {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs and requires failure; returns stderr.
#[track_caller]
pub fn run_err(repo: &Path, args: &[&str]) -> String {
    let o = run(repo, args);
    assert!(
        !o.status.success(),
        "snapstore {args:?} should have failed:\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

/// Runs with `--json` appended and parses stdout.
#[track_caller]
pub fn run_json(repo: &Path, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = run_ok(repo, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}):\n{out}"))
}

/// What a repository looks like from the outside: log and stats (JSON), and the branch list.
/// Equal before and after a failed command means the command changed nothing visible.
pub fn repo_state(repo: &Path) -> (serde_json::Value, serde_json::Value, String) {
    let mut stats = run_json(repo, &["stats"]);
    // The index's size on disk moves with every sled open; the packs must not.
    for key in ["index_bytes", "disk_bytes", "disk_ratio"] {
        stats.as_object_mut().expect("stats object").remove(key);
    }
    (run_json(repo, &["log"]), stats, run_ok(repo, &["branch"]))
}

/// Runs `fsck --json` and requires a clean report.
#[track_caller]
pub fn assert_fsck_clean(repo: &Path) {
    let o = run(repo, &["fsck", "--json"]);
    assert!(
        o.status.success(),
        "fsck failed: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("fsck JSON");
    assert_eq!(v["clean"], true, "fsck not clean: {v:#}");
}

/// The names of the entries in `dir`, sorted.
pub fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Snapshot id HEAD points to (full hex).
pub fn head_id(repo: &Path) -> String {
    let log = run_json(repo, &["log", "-n", "1"]);
    log[0]["id"].as_str().expect("log entry id").to_string()
}

// ---------------------------------------------------------------------------------------------
// Deterministic pseudo-random data.

/// SplitMix64: tiny, deterministic, good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// `n` F32 values in [-scale, scale), as little-endian bytes.
    pub fn f32_bytes(&mut self, n: usize, scale: f32) -> Vec<u8> {
        (0..n)
            .flat_map(|_| (self.unit() * scale).to_le_bytes())
            .collect()
    }
}

/// Little-endian bytes of F32 values.
pub fn f32_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// F32 values of little-endian bytes.
pub fn bytes_to_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tensors and safetensors files.

/// An owned tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub data: Vec<u8>,
}

impl Tensor {
    /// A tensor of random bytes of the right length for `dtype` and `shape`.
    pub fn random(rng: &mut Rng, name: &str, dtype: Dtype, shape: &[u64]) -> Tensor {
        let n: u64 = shape.iter().product();
        let len = dtype.byte_len(n).expect("byte-aligned element count") as usize;
        Tensor {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            data: rng.bytes(len),
        }
    }

    /// An F32 tensor of values in [-scale, scale).
    pub fn f32(rng: &mut Rng, name: &str, shape: &[u64], scale: f32) -> Tensor {
        let n: u64 = shape.iter().product();
        Tensor {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            data: rng.f32_bytes(n as usize, scale),
        }
    }

    pub fn input(&self) -> TensorInput<'_> {
        TensorInput {
            name: self.name.clone(),
            dtype: self.dtype,
            shape: self.shape.clone(),
            data: &self.data,
        }
    }
}

/// Borrowed inputs for `Repo::commit_tensors`.
pub fn inputs(tensors: &[Tensor]) -> Vec<TensorInput<'_>> {
    tensors.iter().map(Tensor::input).collect()
}

/// The `safetensors` crate's dtype with the same name.
pub fn st_dtype(d: Dtype) -> safetensors::Dtype {
    serde_json::from_str(&format!("\"{d}\"")).expect("safetensors knows every snapstore dtype")
}

/// Serializes tensors (and an optional `__metadata__`) with `safetensors::serialize`.
pub fn serialize(tensors: &[Tensor], metadata: Option<&BTreeMap<String, String>>) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            let shape = t.shape.iter().map(|&d| d as usize).collect();
            let view = safetensors::tensor::TensorView::new(st_dtype(t.dtype), shape, &t.data)
                .expect("valid tensor view");
            (t.name.clone(), view)
        })
        .collect();
    let meta: Option<HashMap<String, String>> =
        metadata.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    safetensors::serialize(views, meta).expect("serialize")
}

/// Writes a safetensors file; returns its bytes.
pub fn write_safetensors(
    path: &Path,
    tensors: &[Tensor],
    metadata: Option<&BTreeMap<String, String>>,
) -> Vec<u8> {
    let bytes = serialize(tensors, metadata);
    std::fs::write(path, &bytes).expect("write safetensors file");
    bytes
}

/// Parses a safetensors buffer into owned tensors (file order) and its metadata.
pub fn parse_safetensors(bytes: &[u8]) -> (Vec<Tensor>, Option<BTreeMap<String, String>>) {
    let st = safetensors::SafeTensors::deserialize(bytes).expect("valid safetensors");
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).expect("valid metadata");
    let mut tensors: Vec<Tensor> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| Tensor {
            name,
            dtype: serde_json::from_value(
                serde_json::to_value(view.dtype()).expect("dtype serializes"),
            )
            .expect("snapstore knows the dtype"),
            shape: view.shape().iter().map(|&d| d as u64).collect(),
            data: view.data().to_vec(),
        })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let metadata = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    (tensors, metadata)
}

/// Sorted by name, for order-independent comparison.
pub fn by_name(mut tensors: Vec<Tensor>) -> Vec<Tensor> {
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    tensors
}

/// One tensor of every dtype snapstore supports (sub-byte types with byte-aligned counts),
/// random bytes, varied shapes including a scalar.
pub fn every_dtype_tensors(rng: &mut Rng) -> Vec<Tensor> {
    let mut tensors: Vec<Tensor> = snapstore::ALL_DTYPES
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            // 4-bit types need an even count, 6-bit a multiple of 4; 24 and 48 serve both.
            let shape: Vec<u64> = match i % 4 {
                0 => vec![4, 6],
                1 => vec![48],
                2 => vec![2, 3, 4],
                _ => vec![8, 3],
            };
            let mut t = Tensor::random(rng, &format!("t{i:02}.{}", d.name()), d, &shape);
            if d == Dtype::Bool {
                t.data.iter_mut().for_each(|b| *b &= 1);
            }
            t
        })
        .collect();
    tensors.push(Tensor::random(rng, "scalar.step", Dtype::I64, &[]));
    tensors
}

/// `n` nearly-equal F32 checkpoints: each tensor is the previous one plus small noise on every
/// element, like consecutive epochs of a training run.
pub fn trajectory(seed: u64, n: usize, shapes: &[(&str, &[u64])]) -> Vec<Vec<Tensor>> {
    let mut rng = Rng::new(seed);
    let mut current: Vec<Tensor> = shapes
        .iter()
        .map(|(name, shape)| Tensor::f32(&mut rng, name, shape, 0.5))
        .collect();
    let mut out = Vec::with_capacity(n);
    for step in 0..n {
        if step > 0 {
            for t in &mut current {
                let vals: Vec<f32> = bytes_to_f32(&t.data)
                    .into_iter()
                    .map(|v| v + rng.unit() * 1e-3)
                    .collect();
                t.data = f32_to_bytes(&vals);
            }
        }
        out.push(current.clone());
    }
    out
}

/// A metadata map for tests.
pub fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `../shared/bench` relative to the crate, when it exists.
pub fn bench_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench");
    dir.is_dir().then_some(dir)
}

/// Environment variable naming a file where skipped tests append `TEST: REASON` lines
/// (`.ci/run` sets it and prints the list: the harness hides a passing test's output).
pub const SKIP_LOG_ENV: &str = "SNAPSTORE_SKIP_LOG";

/// Reports that `test` checked nothing here, and why: on stderr, and in `$SNAPSTORE_SKIP_LOG`.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    eprintln!("skipping {test}: {reason}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{test}: {reason}");
        }
    }
}
