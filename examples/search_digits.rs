//! Automatic error-bound search over a real training run: the digits MLP of
//! `../shared/bench/digits-mlp` (31 checkpoints), committed epoch by epoch with `--bound auto`
//! semantics (search again every 10 commits, reuse the remembered bound in between). The
//! evaluator is the MLP's forward pass on the corpus's test set, in Rust (the same as its
//! `eval.py`).
//!
//! ```sh
//! cargo run --release --example search_digits                 # re-search every 10 commits
//! cargo run --release --example search_digits -- --full-scan   # evaluate every candidate
//! cargo run --release --example search_digits -- --research-every 1
//! cargo run --release --example search_digits -- --corpus /data/digits-mlp
//! ```
//!
//! Prints each search's choice, the ratio over the whole trajectory (against committing it
//! losslessly), the accuracy loss of the last checkpoint as checked out, and evaluator calls
//! against a full scan. The corpus is `--corpus DIR`, else `$SNAPSTORE_DIGITS_CORPUS`, else
//! `../shared/bench/digits-mlp`; without one it fails (exit 2) saying where it looked.

use std::path::{Path, PathBuf};

use snapstore::{
    AutoOptions, CheckedOutTensor, CommitOptions, Repo, SafetensorsFile, SearchOptions,
};

/// The digits test set: `X` [n, 64] in [0, 1], labels `y`.
pub struct TestSet {
    x: Vec<f32>,
    y: Vec<i64>,
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Reads `testset.safetensors`.
pub fn load_testset(path: &Path) -> Result<TestSet, String> {
    let file = SafetensorsFile::open(path).map_err(|e| e.to_string())?;
    let mut x = None;
    let mut y = None;
    for t in &file.header().tensors {
        let bytes = file.tensor_bytes(t);
        match t.name.as_str() {
            "X" => x = Some(f32s(bytes)),
            "y" => {
                y = Some(
                    bytes
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                        .collect::<Vec<i64>>(),
                )
            }
            _ => {}
        }
    }
    let (x, y) = (
        x.ok_or("no X in the test set")?,
        y.ok_or("no y in the test set")?,
    );
    if x.len() != y.len() * 64 {
        return Err(format!("X holds {} values for {} labels", x.len(), y.len()));
    }
    Ok(TestSet { x, y })
}

/// Test accuracy of the MLP 64-256-256-10 (PyTorch `nn.Linear` layout: W is [out, in]).
pub fn accuracy(ts: &TestSet, tensors: &[CheckedOutTensor]) -> Result<f64, String> {
    let get = |name: &str, len: usize| -> Result<Vec<f32>, String> {
        let t = tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("no tensor {name}"))?;
        let v = f32s(&t.data);
        if v.len() != len {
            return Err(format!("{name} has {} values, expected {len}", v.len()));
        }
        Ok(v)
    };
    let layers = [
        (get("fc1.weight", 256 * 64)?, get("fc1.bias", 256)?, 64, 256),
        (
            get("fc2.weight", 256 * 256)?,
            get("fc2.bias", 256)?,
            256,
            256,
        ),
        (get("fc3.weight", 10 * 256)?, get("fc3.bias", 10)?, 256, 10),
    ];
    let mut correct = 0usize;
    for (i, &label) in ts.y.iter().enumerate() {
        let mut h: Vec<f32> = ts.x[i * 64..(i + 1) * 64].to_vec();
        for (l, (w, b, fan_in, fan_out)) in layers.iter().enumerate() {
            let mut out = vec![0f32; *fan_out];
            for (o, v) in out.iter_mut().enumerate() {
                let row = &w[o * fan_in..(o + 1) * fan_in];
                let s: f32 = row.iter().zip(&h).map(|(a, x)| a * x).sum::<f32>() + b[o];
                *v = if l < 2 { s.max(0.0) } else { s };
            }
            h = out;
        }
        let pred = h
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (k, &v)| {
                if v > best.1 {
                    (k, v)
                } else {
                    best
                }
            })
            .0;
        correct += (pred as i64 == label) as usize;
    }
    Ok(correct as f64 / ts.y.len() as f64)
}

/// One search along the trajectory.
pub struct SearchLine {
    /// Epoch searched.
    pub epoch: usize,
    /// Whether the search ran because the remembered bound failed its check on this epoch
    /// (else the interval was due).
    pub after_rejection: bool,
    /// Chosen bound.
    pub chosen: String,
    /// Ratio of that snapshot.
    pub ratio: f64,
    /// Its loss.
    pub loss: f64,
    /// Evaluator calls, and those of a full scan.
    pub evaluations: usize,
    /// Calls a full scan would make.
    pub full_scan: usize,
}

/// What the run measured.
pub struct DigitsOutcome {
    /// Every search.
    pub searches: Vec<SearchLine>,
    /// Tensor bytes over the trajectory / bytes stored.
    pub ratio: f64,
    /// The same trajectory committed losslessly.
    pub lossless_ratio: f64,
    /// Accuracy of the last checkpoint as trained.
    pub last_accuracy: f64,
    /// Accuracy of the last snapshot as checked out.
    pub last_checkout_accuracy: f64,
    /// Evaluator calls in all, and those full scans would make.
    pub evaluations: usize,
    /// Calls full scans would make.
    pub full_scan_evaluations: usize,
    /// Max loss the search allowed.
    pub max_loss: f64,
    /// The largest loss of any checkpoint as checked out, and its epoch.
    pub worst_loss: (f64, usize),
}

impl DigitsOutcome {
    /// Accuracy lost on the last checkpoint.
    pub fn last_loss(&self) -> f64 {
        self.last_accuracy - self.last_checkout_accuracy
    }
}

/// The checkpoints of the corpus, in epoch order.
pub fn checkpoints(corpus: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("epoch_") && n.ends_with(".safetensors"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Commits the whole trajectory into `work/auto` with automatic bounds (searching every
/// `research_every` commits) and into `work/lossless` exactly, and measures both.
pub fn run(
    corpus: &Path,
    work: &Path,
    research_every: u32,
    search: SearchOptions,
    verbose: bool,
) -> Result<DigitsOutcome, String> {
    let e = |e: snapstore::Error| e.to_string();
    let ts = load_testset(&corpus.join("testset.safetensors"))?;
    let files = checkpoints(corpus);
    if files.is_empty() {
        return Err(format!("no epoch_*.safetensors in {}", corpus.display()));
    }
    let repo = Repo::init(work.join("auto")).map_err(e)?;
    let exact = Repo::init(work.join("lossless")).map_err(e)?;
    let auto = AutoOptions {
        search: SearchOptions {
            progress: false,
            ..search
        },
        research_every: Some(research_every),
    };
    let max_loss = auto.search.max_loss;
    let mut evaluator = |t: &[CheckedOutTensor]| accuracy(&ts, t);
    let (mut logical, mut stored, mut stored_exact) = (0u64, 0u64, 0u64);
    let mut searches = Vec::new();
    let (mut evaluations, mut full) = (0, 0);
    let mut worst_loss = (f64::NEG_INFINITY, 0);
    for (epoch, f) in files.iter().enumerate() {
        let opts = CommitOptions {
            message: format!("epoch {epoch}"),
            ..CommitOptions::default()
        };
        let r = repo
            .commit_checkpoint_auto(f, &opts, &auto, &mut evaluator)
            .map_err(e)?;
        let original = read_tensors(f)?;
        let back = repo.checkout("HEAD", None).map_err(e)?;
        let loss = accuracy(&ts, &original)? - accuracy(&ts, &back.tensors)?;
        if loss > worst_loss.0 {
            worst_loss = (loss, epoch);
        }
        logical += r.commit.logical_bytes;
        stored += r.commit.stored_bytes;
        stored_exact += exact.commit_file(f, &opts).map_err(e)?.stored_bytes;
        if let Some(c) = &r.recheck {
            evaluations += c.evaluations;
            full += c.evaluations;
        }
        if let Some(s) = &r.search {
            evaluations += s.evaluations;
            full += s.full_scan_evaluations;
            if verbose {
                println!(
                    "epoch {epoch:>2}: chose {:<12} ratio {:>6.2}x (lossless {:.2}x), accuracy {:.4} (baseline {:.4}), {} of {} evaluator calls",
                    s.chosen.spec,
                    s.chosen.ratio,
                    s.lossless_ratio,
                    s.chosen.accuracy,
                    s.baseline_accuracy,
                    s.evaluations,
                    s.full_scan_evaluations
                );
            }
            searches.push(SearchLine {
                epoch,
                after_rejection: r.recheck.is_some(),
                chosen: s.chosen.spec.clone(),
                ratio: s.chosen.ratio,
                loss: s.chosen.loss,
                evaluations: s.evaluations,
                full_scan: s.full_scan_evaluations,
            });
        }
    }
    let original = read_tensors(files.last().expect("non-empty"))?;
    let back = repo.checkout("HEAD", None).map_err(e)?;
    Ok(DigitsOutcome {
        searches,
        ratio: logical as f64 / stored.max(1) as f64,
        lossless_ratio: logical as f64 / stored_exact.max(1) as f64,
        last_accuracy: accuracy(&ts, &original)?,
        last_checkout_accuracy: accuracy(&ts, &back.tensors)?,
        evaluations,
        full_scan_evaluations: full,
        max_loss,
        worst_loss,
    })
}

/// The tensors of a safetensors file.
pub fn read_tensors(path: &Path) -> Result<Vec<CheckedOutTensor>, String> {
    let file = SafetensorsFile::open(path).map_err(|e| e.to_string())?;
    Ok(file
        .header()
        .tensors
        .iter()
        .map(|t| CheckedOutTensor {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            data: file.tensor_bytes(t).to_vec(),
        })
        .collect())
}

/// Environment variable naming the digits-mlp corpus directory.
pub const CORPUS_ENV: &str = "SNAPSTORE_DIGITS_CORPUS";

/// Where the corpus lives: `$SNAPSTORE_DIGITS_CORPUS`, else `../shared/bench/digits-mlp`
/// beside this crate.
pub fn corpus_dir() -> PathBuf {
    match std::env::var_os(CORPUS_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/digits-mlp"),
    }
}

fn main() {
    // `-- --corpus DIR` names the corpus; `-- --full-scan` evaluates every candidate (for
    // comparison); `-- --research-every N`.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let corpus = args
        .iter()
        .position(|a| a == "--corpus")
        .and_then(|i| args.get(i + 1))
        .map_or_else(corpus_dir, PathBuf::from);
    if !corpus.join("testset.safetensors").exists() {
        eprintln!(
            "error: no digits-mlp corpus at {} (it needs testset.safetensors and \
             epoch_*.safetensors). Point at one with `-- --corpus DIR` or {CORPUS_ENV}=DIR; \
             ../shared/bench/make_corpora.py makes it (see ../shared/bench/README.md)",
            corpus.display()
        );
        std::process::exit(2);
    }
    let full_scan = args.iter().any(|a| a == "--full-scan");
    let research_every = args
        .iter()
        .position(|a| a == "--research-every")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let work = std::env::temp_dir().join(format!("snapstore-search-digits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let search = SearchOptions {
        full_scan,
        ..SearchOptions::default()
    };
    let result = run(&corpus, &work, research_every, search, true);
    let _ = std::fs::remove_dir_all(&work);
    match result {
        Ok(o) => {
            println!(
                "trajectory of {} checkpoints: {:.2}x with automatic bounds, {:.2}x lossless",
                checkpoints(&corpus).len(),
                o.ratio,
                o.lossless_ratio
            );
            println!(
                "last checkpoint: accuracy {:.6} as trained, {:.6} checked out: loss {:.6} (max {})",
                o.last_accuracy,
                o.last_checkout_accuracy,
                o.last_loss(),
                o.max_loss
            );
            println!(
                "largest loss of any checkpoint: {:.6} (epoch {})",
                o.worst_loss.0, o.worst_loss.1
            );
            println!(
                "evaluator calls: {} (full scans would make {})",
                o.evaluations, o.full_scan_evaluations
            );
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(1);
        }
    }
}
