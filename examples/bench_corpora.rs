//! Benchmarks snapstore on the shared checkpoint corpora, beside zstd-3 on the same files.
//!
//! ```text
//! cargo run --release --example bench_corpora [-- BENCH_DIR [CORPUS...]]
//! ```
//!
//! `BENCH_DIR` defaults to `../shared/bench` (relative to the crate). Corpora default to
//! `digits-mlp`, `cnn-digits` and `cnn-digits/bf16`; a missing one is skipped with a message.
//! For each corpus and bound a fresh repository is created in a temporary directory, the whole
//! trajectory is committed in file-name order (timed around `commit_file`), every snapshot is
//! checked out into memory (timed around `checkout`) and compared element by element with its
//! original file. On `digits-mlp` the last checkpoint's test accuracy is computed with a Rust
//! forward pass (the one in the corpus's `eval.py`), original vs decoded.
//!
//! Environment: `SNAPSTORE_BENCH_DUMP=DIR` also writes the last decoded checkpoint of each
//! corpus and bound to `DIR/<corpus>__<bound>.safetensors` (to score it with the corpus's
//! `eval.py`, e.g. for `cnn-digits`, which needs torch). `RAYON_NUM_THREADS=1` runs snapstore on
//! one thread (the peers in `peers.py` are single-threaded). `SNAPSTORE_BENCH_CODEC=auto|zstd|lzma|rans`
//! picks the commits' entropy coders (default `auto`). `SNAPSTORE_BENCH_ROUNDING=lattice|dither|nearest|all`
//! picks how lossy codes are rounded (default `all`: one row per rounding mode and bound).
//! `SNAPSTORE_BENCH_KEYFRAME_EVERY=K` caps chains at K decodes (default: the repository's).
//! `SNAPSTORE_BENCH_BOUNDS=lossless,rel:0.1` measures only these bounds (default: lossless and
//! rel 0.001, 0.01, 0.05, 0.1).
//! `SNAPSTORE_BENCH_TIP_CACHE=BYTES` bounds the decoded last commit the repository handle keeps
//! (default `default_cache_bytes()`; 0 measures commits that decode the parent's chain, as the
//! CLI does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use safetensors::{Dtype as StDtype, SafeTensors};
use snapstore::{Bound, CheckedOutTensor, CodecChoice, CommitOptions, Encoding, Repo, Rounding};

const MB: f64 = 1e6;

/// One corpus: a trajectory of checkpoint files in order.
struct Corpus {
    name: String,
    dir: PathBuf,
    files: Vec<PathBuf>,
    /// Raw bytes of every file (kept in memory for comparisons and zstd).
    raws: Vec<Vec<u8>>,
    /// Sum of file sizes.
    file_bytes: u64,
    /// Sum of tensor bytes (what snapstore calls logical bytes).
    tensor_bytes: u64,
}

/// Settings taken from the environment.
struct Config {
    codec: CodecChoice,
    roundings: Vec<Rounding>,
    dump: Option<PathBuf>,
    tip_cache: usize,
    keyframe_every: Option<u32>,
    bounds: Vec<Bound>,
}

fn rounding_name(r: Rounding) -> &'static str {
    match r {
        Rounding::Nearest => "nearest",
        Rounding::Dither => "dither",
        Rounding::Lattice => "lattice",
    }
}

/// One row of a result table.
struct Row {
    method: String,
    bound: String,
    ratio_tensor: f64,
    ratio_file: f64,
    stored: u64,
    commit_mbps: f64,
    checkout_mbps: f64,
    max_rel: f64,
    acc: Option<(f64, f64)>,
}

/// Code statistics averaged over all lossy-coded tensors of a trajectory (element-weighted).
#[derive(Default)]
struct CodeStats {
    elements: f64,
    entropy: f64,
    packed: f64,
    zeros: f64,
    exceptions: f64,
    delta_elements: f64,
    delta_entropy: f64,
    delta_packed: f64,
    delta_zeros: f64,
    delta_exceptions: f64,
    /// Elements placed on their grid because the reference could not hold them.
    fresh: f64,
    /// Stored bytes of every lossy-coded tensor, and of those coded as keyframes.
    stored: f64,
    keyframe_stored: f64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_dir = args.first().map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("shared")
            .join("bench")
    });
    let corpora: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![
            "digits-mlp".into(),
            "cnn-digits".into(),
            "cnn-digits/bf16".into(),
        ]
    };
    let dump = std::env::var_os("SNAPSTORE_BENCH_DUMP").map(PathBuf::from);
    let roundings = match std::env::var("SNAPSTORE_BENCH_ROUNDING").as_deref() {
        Ok("all") | Err(_) => vec![Rounding::Lattice, Rounding::Dither, Rounding::Nearest],
        Ok(s) => vec![s.parse().map_err(anyhow::Error::msg)?],
    };
    if let Some(d) = &dump {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let codec: CodecChoice = match std::env::var("SNAPSTORE_BENCH_CODEC") {
        Ok(s) => s.parse().map_err(anyhow::Error::msg)?,
        Err(_) => CodecChoice::Auto,
    };
    let tip_cache = match std::env::var("SNAPSTORE_BENCH_TIP_CACHE") {
        Ok(s) => s.parse().context("SNAPSTORE_BENCH_TIP_CACHE")?,
        Err(_) => snapstore::default_cache_bytes(),
    };
    let keyframe_every = match std::env::var("SNAPSTORE_BENCH_KEYFRAME_EVERY") {
        Ok(s) => Some(s.parse().context("SNAPSTORE_BENCH_KEYFRAME_EVERY")?),
        Err(_) => None,
    };
    let bounds = match std::env::var("SNAPSTORE_BENCH_BOUNDS") {
        Ok(s) => s
            .split(',')
            .map(|b| b.trim().parse().map_err(anyhow::Error::msg))
            .collect::<Result<Vec<Bound>>>()
            .context("SNAPSTORE_BENCH_BOUNDS")?,
        Err(_) => BOUNDS.to_vec(),
    };
    let cfg = Config {
        codec,
        roundings,
        dump,
        tip_cache,
        keyframe_every,
        bounds,
    };
    println!(
        "# snapstore bench_corpora (codec {codec}, rounding {}, {} rayon threads, tip cache {} B, bench dir {})\n",
        cfg.roundings
            .iter()
            .map(|r| rounding_name(*r))
            .collect::<Vec<_>>()
            .join("+"),
        rayon::current_num_threads(),
        cfg.tip_cache,
        bench_dir.display()
    );
    for name in &corpora {
        let dir = bench_dir.join(name);
        if !dir.is_dir() {
            println!("skipping {name}: {} not found\n", dir.display());
            continue;
        }
        let corpus = load_corpus(name, &dir)?;
        if corpus.files.is_empty() {
            println!("skipping {name}: no checkpoints in {}\n", dir.display());
            continue;
        }
        run_corpus(&corpus, &cfg)?;
    }
    Ok(())
}

fn load_corpus(name: &str, dir: &Path) -> Result<Corpus> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".safetensors") && !n.starts_with("testset")
        })
        .collect();
    files.sort();
    let mut raws = Vec::new();
    let mut tensor_bytes = 0u64;
    for f in &files {
        let raw = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let st =
            SafeTensors::deserialize(&raw).with_context(|| format!("parsing {}", f.display()))?;
        tensor_bytes += st
            .tensors()
            .iter()
            .map(|(_, v)| v.data().len() as u64)
            .sum::<u64>();
        raws.push(raw);
    }
    let file_bytes = raws.iter().map(|r| r.len() as u64).sum();
    Ok(Corpus {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        files,
        raws,
        file_bytes,
        tensor_bytes,
    })
}

/// Bounds measured on every corpus (BF16 included) unless `SNAPSTORE_BENCH_BOUNDS` says otherwise.
const BOUNDS: [Bound; 5] = [
    Bound::Lossless,
    Bound::Rel(1e-3),
    Bound::Rel(1e-2),
    Bound::Rel(5e-2),
    Bound::Rel(1e-1),
];

fn run_corpus(corpus: &Corpus, cfg: &Config) -> Result<()> {
    println!(
        "## {} ({} snapshots, {} file bytes, {} tensor bytes)\n",
        corpus.name,
        corpus.files.len(),
        corpus.file_bytes,
        corpus.tensor_bytes
    );
    // Test set and forward pass for the MLP corpus.
    let mlp = if corpus.name == "digits-mlp" {
        Some(Mlp::load_testset(&corpus.dir.join("testset.safetensors"))?)
    } else {
        None
    };
    // Accuracy of every original checkpoint (MLP corpus only).
    let acc_orig: Option<Vec<f64>> = match &mlp {
        Some(m) => Some(
            corpus
                .raws
                .iter()
                .map(|raw| {
                    let st = SafeTensors::deserialize(raw)?;
                    let mut w = BTreeMap::new();
                    for (name, v) in st.tensors() {
                        w.insert(name.clone(), to_f32(v.dtype(), v.data())?);
                    }
                    m.accuracy(&w)
                })
                .collect::<Result<_>>()?,
        ),
        None => None,
    };
    if let (Some(a), Some(json)) = (&acc_orig, read_accuracy_json(corpus)) {
        println!(
            "accuracy of {} (original): Rust forward pass {:.6}, accuracy.json {:.6}\n",
            corpus.files.last().unwrap().display(),
            a.last().unwrap(),
            json
        );
    }

    let mut rows = vec![zstd_row(corpus)?];
    let mut code_stats = Vec::new();
    let mut extra = Vec::new();
    for &bound in &cfg.bounds {
        let roundings: Vec<Option<Rounding>> = if bound == Bound::Lossless {
            vec![None]
        } else {
            cfg.roundings.iter().map(|r| Some(*r)).collect()
        };
        for rounding in roundings {
            let (row, cs, note) = snapstore_row(
                corpus,
                bound,
                rounding,
                cfg,
                mlp.as_ref(),
                acc_orig.as_deref(),
            )?;
            code_stats.push((format!("{} {}", row.method, row.bound), cs));
            rows.push(row);
            extra.push(note);
        }
    }

    println!("| method | bound | ratio | stored | commit MB/s | checkout MB/s | max_rel_err | acc_last (orig -> decoded) |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {} | {:.1} | {:.1} | {} | {} |",
            r.method,
            r.bound,
            r.ratio_tensor,
            r.stored,
            r.commit_mbps,
            r.checkout_mbps,
            fmt_err(r.max_rel),
            match r.acc {
                Some((a, b)) => format!("{a:.4} -> {b:.4}"),
                None => String::new(),
            }
        );
    }
    println!();
    println!(
        "ratio = tensor bytes ({}) / stored bytes (snapstore: pack files on disk, `stats().pack_bytes`; zstd: compressed files). \
         Same stored bytes against whole-file bytes ({}), the accounting of peers.py:",
        corpus.tensor_bytes, corpus.file_bytes
    );
    println!();
    println!("| method | bound | ratio (file bytes) |");
    println!("|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {:.2} |", r.method, r.bound, r.ratio_file);
    }
    println!();
    for n in extra.iter().filter(|n| !n.is_empty()) {
        println!("{n}");
    }
    println!();
    if code_stats.iter().any(|(_, c)| c.elements > 0.0) {
        println!("Log-quantized code statistics (manifest `stats`, element-weighted mean over all lossy-coded tensors of all snapshots; stored bits = their stored bytes per element, keyframe share = the part of those bytes in keyframes; `delta` = tensors coded against a reference):");
        println!();
        println!("| method, bound | stored bits | keyframe share | code_entropy_bits | code_bits_packed | zero_codes | exceptions | fresh | delta: code_entropy_bits | delta: code_bits_packed | delta: zero_codes | delta: exceptions |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (b, c) in &code_stats {
            if c.elements == 0.0 {
                continue;
            }
            let d = c.delta_elements.max(1.0);
            println!(
                "| {b} | {:.3} | {:.3} | {:.3} | {:.3} | {:.4} | {:.5} | {:.5} | {:.3} | {:.3} | {:.4} | {:.5} |",
                8.0 * c.stored / c.elements,
                c.keyframe_stored / c.stored.max(1.0),
                c.entropy / c.elements,
                c.packed / c.elements,
                c.zeros / c.elements,
                c.exceptions / c.elements,
                c.fresh / c.elements,
                c.delta_entropy / d,
                c.delta_packed / d,
                c.delta_zeros / d,
                c.delta_exceptions / d,
            );
        }
        println!();
    }
    Ok(())
}

fn fmt_err(e: f64) -> String {
    if e == 0.0 {
        "0".into()
    } else {
        format!("{e:.3e}")
    }
}

fn read_accuracy_json(corpus: &Corpus) -> Option<f64> {
    let text = std::fs::read_to_string(corpus.dir.join("accuracy.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let stem = corpus.files.last()?.file_stem()?.to_str()?;
    v.get(stem)?.as_f64()
}

/// zstd level 3 on each whole file, one thread.
fn zstd_row(corpus: &Corpus) -> Result<Row> {
    let t = Instant::now();
    let compressed: Vec<Vec<u8>> = corpus
        .raws
        .iter()
        .map(|r| zstd::bulk::compress(r, 3))
        .collect::<std::io::Result<_>>()?;
    let tc = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (c, r) in compressed.iter().zip(&corpus.raws) {
        let d = zstd::bulk::decompress(c, r.len())?;
        if d != *r {
            bail!("zstd round trip differs");
        }
    }
    let td = t.elapsed().as_secs_f64();
    let stored: u64 = compressed.iter().map(|c| c.len() as u64).sum();
    Ok(Row {
        method: "zstd-3 (each file)".into(),
        bound: "lossless".into(),
        ratio_tensor: corpus.tensor_bytes as f64 / stored as f64,
        ratio_file: corpus.file_bytes as f64 / stored as f64,
        stored,
        commit_mbps: corpus.file_bytes as f64 / MB / tc,
        checkout_mbps: corpus.file_bytes as f64 / MB / td,
        max_rel: 0.0,
        acc: None,
    })
}

fn snapstore_row(
    corpus: &Corpus,
    bound: Bound,
    rounding: Option<Rounding>,
    cfg: &Config,
    mlp: Option<&Mlp>,
    acc_orig: Option<&[f64]>,
) -> Result<(Row, CodeStats, String)> {
    let method = match rounding {
        Some(r) => format!("snapstore {}", rounding_name(r)),
        None => "snapstore".to_string(),
    };
    let tmp = tempfile::tempdir()?;
    let repo = Repo::init(tmp.path().join("repo"))?.with_tip_cache(cfg.tip_cache);
    let opts = CommitOptions {
        bound: Some(bound),
        codec: cfg.codec,
        rounding: rounding.unwrap_or_default(),
        keyframe_every: cfg.keyframe_every,
        message: String::new(),
        ..Default::default()
    };
    let mut commit_secs = 0.0;
    let mut logical = 0u64;
    let mut reported_secs = 0.0;
    for f in &corpus.files {
        let o = CommitOptions {
            message: f.file_name().unwrap().to_string_lossy().into_owned(),
            ..opts.clone()
        };
        let t = Instant::now();
        let rep = repo
            .commit_file(f, &o)
            .with_context(|| format!("committing {}", f.display()))?;
        commit_secs += t.elapsed().as_secs_f64();
        reported_secs += rep.seconds;
        logical += rep.logical_bytes;
    }
    let stats = repo.stats()?;
    let n = corpus.files.len();

    // Check out every snapshot (timed), then compare with the original (not timed).
    let mut checkout_secs = 0.0;
    let mut max_rel = 0.0f64;
    let mut nonfloat_mismatch = 0u64;
    let mut acc: Option<(f64, f64)> = None;
    let mut max_drop = f64::NEG_INFINITY;
    let mut code = CodeStats::default();
    for (i, raw) in corpus.raws.iter().enumerate() {
        let spec = format!("HEAD~{}", n - 1 - i);
        let t = Instant::now();
        let co = repo.checkout(&spec, None)?;
        checkout_secs += t.elapsed().as_secs_f64();
        let orig = SafeTensors::deserialize(raw)?;
        let names = orig.names();
        if names.len() != co.tensors.len() {
            bail!(
                "{spec}: {} tensors, original has {}",
                co.tensors.len(),
                names.len()
            );
        }
        for t in &co.tensors {
            let o = orig
                .tensor(&t.name)
                .with_context(|| format!("{spec}: tensor {} not in original", t.name))?;
            if o.shape().iter().map(|&d| d as u64).collect::<Vec<_>>() != t.shape {
                bail!("{spec}: tensor {} has another shape", t.name);
            }
            let (rel, mism) = compare(o.dtype(), o.data(), &t.data)?;
            if bound == Bound::Lossless && o.data() != &t.data[..] {
                bail!("{spec}: lossless tensor {} differs", t.name);
            }
            max_rel = max_rel.max(rel);
            nonfloat_mismatch += mism;
        }
        let (_, manifest) = repo.show(&spec)?;
        for e in &manifest.tensors {
            if e.encoding == Encoding::Dedup || e.stats.is_empty() {
                continue;
            }
            let elems = (e.len as f64) / (e.dtype.unit_bytes() as f64);
            let g = |k: &str| e.stats.get(k).copied().unwrap_or(0.0) * elems;
            code.elements += elems;
            code.entropy += g("code_entropy_bits");
            code.packed += g("code_bits_packed");
            code.zeros += g("zero_codes");
            code.exceptions += g("exceptions");
            code.fresh += g("fresh");
            code.stored += e.stored_bytes() as f64;
            if e.reference.is_none() {
                code.keyframe_stored += e.stored_bytes() as f64;
            }
            if e.reference.is_some() {
                code.delta_elements += elems;
                code.delta_entropy += g("code_entropy_bits");
                code.delta_packed += g("code_bits_packed");
                code.delta_zeros += g("zero_codes");
                code.delta_exceptions += g("exceptions");
            }
        }
        if let (Some(m), Some(orig_acc)) = (mlp, acc_orig) {
            let mut w = BTreeMap::new();
            for t in &co.tensors {
                w.insert(t.name.clone(), co_to_f32(t)?);
            }
            let a = m.accuracy(&w)?;
            max_drop = max_drop.max(orig_acc[i] - a);
            if i + 1 == n {
                acc = Some((orig_acc[i], a));
            }
        }
    }
    if nonfloat_mismatch > 0 {
        bail!("{bound}: {nonfloat_mismatch} non-float elements differ from the original");
    }
    let mut note = String::new();
    // The whole last snapshot as a file: lossless must reproduce the original byte for byte.
    {
        let out = tmp.path().join("last.safetensors");
        repo.checkout_to_file("HEAD", &out, None)?;
        let back = std::fs::read(&out)?;
        if bound == Bound::Lossless && back != *corpus.raws.last().unwrap() {
            bail!("lossless checkout of the last snapshot is not byte-identical to its file");
        }
        if let Some(d) = &cfg.dump {
            let name = format!(
                "{}__{}.safetensors",
                corpus.name.replace('/', "_"),
                format!("{method}_{bound}").replace([':', ' '], "_")
            );
            std::fs::copy(&out, d.join(&name))?;
        }
    }
    let repo_dir_bytes = dir_size(&tmp.path().join("repo"));
    if bound == Bound::Lossless {
        note = format!(
            "{} lossless: every tensor of every snapshot is bit-identical, the last checkout_to_file is byte-identical to {}. ",
            corpus.name,
            corpus.files.last().unwrap().file_name().unwrap().to_string_lossy()
        );
    }
    if acc.is_some() {
        note.push_str(&format!(
            "{} {method} {bound}: largest test-accuracy drop over all {n} checkpoints (original - decoded, Rust forward pass): {:.4}. ",
            corpus.name, max_drop
        ));
    }
    note.push_str(&format!(
        "{} {method} {bound}: packs {} B, whole repo dir (packs + index + refs) {} B, logical {} B, stats().ratio {:.2}, commit seconds {:.3} (sum of CommitReport.seconds {:.3}), checkout seconds {:.3}.",
        corpus.name, stats.pack_bytes, repo_dir_bytes, stats.logical_bytes, stats.ratio, commit_secs, reported_secs, checkout_secs
    ));
    Ok((
        Row {
            method,
            bound: bound.to_string(),
            ratio_tensor: corpus.tensor_bytes as f64 / stats.pack_bytes as f64,
            ratio_file: corpus.file_bytes as f64 / stats.pack_bytes as f64,
            stored: stats.pack_bytes,
            commit_mbps: logical as f64 / MB / commit_secs,
            checkout_mbps: logical as f64 / MB / checkout_secs,
            max_rel,
            acc,
        },
        code,
        note,
    ))
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Largest relative error over float elements (|d - o| / |o|; infinite where o = 0 and d != 0,
/// or where a non-finite value changed), and the number of differing non-float elements.
fn compare(dtype: StDtype, orig: &[u8], dec: &[u8]) -> Result<(f64, u64)> {
    if orig.len() != dec.len() {
        bail!("length differs: {} vs {}", orig.len(), dec.len());
    }
    let value: Option<fn(&[u8]) -> f64> = match dtype {
        StDtype::F32 => Some(|x| f32::from_le_bytes(x.try_into().unwrap()) as f64),
        StDtype::F64 => Some(|x| f64::from_le_bytes(x.try_into().unwrap())),
        StDtype::F16 => Some(|x| half::f16::from_le_bytes(x.try_into().unwrap()).to_f64()),
        StDtype::BF16 => Some(|x| half::bf16::from_le_bytes(x.try_into().unwrap()).to_f64()),
        _ => None,
    };
    let unit = dtype.bitsize() / 8;
    let Some(value) = value else {
        let mism = orig
            .chunks_exact(unit.max(1))
            .zip(dec.chunks_exact(unit.max(1)))
            .filter(|(a, b)| a != b)
            .count();
        return Ok((0.0, mism as u64));
    };
    let mut max_rel = 0.0f64;
    for (a, b) in orig.chunks_exact(unit).zip(dec.chunks_exact(unit)) {
        if a == b {
            continue;
        }
        let (va, vb) = (value(a), value(b));
        let rel = if !va.is_finite() || !vb.is_finite() || va == 0.0 {
            if va == vb {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (vb - va).abs() / va.abs()
        };
        max_rel = max_rel.max(rel);
    }
    Ok((max_rel, 0))
}

fn to_f32(dtype: StDtype, data: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        StDtype::F32 => data
            .chunks_exact(4)
            .map(|x| f32::from_le_bytes(x.try_into().unwrap()))
            .collect(),
        StDtype::BF16 => data
            .chunks_exact(2)
            .map(|x| half::bf16::from_le_bytes(x.try_into().unwrap()).to_f32())
            .collect(),
        StDtype::F16 => data
            .chunks_exact(2)
            .map(|x| half::f16::from_le_bytes(x.try_into().unwrap()).to_f32())
            .collect(),
        other => bail!("no f32 reading of {other:?}"),
    })
}

fn co_to_f32(t: &CheckedOutTensor) -> Result<Vec<f32>> {
    let dt = match t.dtype.name() {
        "F32" => StDtype::F32,
        "BF16" => StDtype::BF16,
        "F16" => StDtype::F16,
        other => bail!("tensor {}: no f32 reading of {other}", t.name),
    };
    to_f32(dt, &t.data)
}

/// The digits-mlp test set and forward pass (see the corpus's `eval.py`):
/// `h1 = relu(X W1^T + b1)`, `h2 = relu(h1 W2^T + b2)`, `logits = h2 W3^T + b3`, argmax.
struct Mlp {
    x: Vec<f32>,
    y: Vec<i64>,
    features: usize,
}

impl Mlp {
    fn load_testset(path: &Path) -> Result<Mlp> {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let st = SafeTensors::deserialize(&raw)?;
        let x = st.tensor("X")?;
        let y = st.tensor("y")?;
        if x.dtype() != StDtype::F32 || y.dtype() != StDtype::I64 || x.shape().len() != 2 {
            bail!("unexpected test set layout");
        }
        Ok(Mlp {
            x: to_f32(StDtype::F32, x.data())?,
            y: y.data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            features: x.shape()[1],
        })
    }

    fn accuracy(&self, w: &BTreeMap<String, Vec<f32>>) -> Result<f64> {
        let get = |k: &str| w.get(k).with_context(|| format!("missing tensor {k}"));
        let layers = [
            (get("fc1.weight")?, get("fc1.bias")?, true),
            (get("fc2.weight")?, get("fc2.bias")?, true),
            (get("fc3.weight")?, get("fc3.bias")?, false),
        ];
        let mut correct = 0usize;
        for (row, &label) in self.x.chunks_exact(self.features).zip(&self.y) {
            let mut h: Vec<f32> = row.to_vec();
            for (wt, b, relu) in &layers {
                let out = b.len();
                let inp = h.len();
                if wt.len() != out * inp {
                    bail!("weight shape does not match [{out}, {inp}]");
                }
                h = (0..out)
                    .map(|o| {
                        let s: f32 = wt[o * inp..(o + 1) * inp]
                            .iter()
                            .zip(&h)
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            + b[o];
                        if *relu {
                            s.max(0.0)
                        } else {
                            s
                        }
                    })
                    .collect();
            }
            let pred = h
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0;
            if pred as i64 == label {
                correct += 1;
            }
        }
        Ok(correct as f64 / self.y.len() as f64)
    }
}
