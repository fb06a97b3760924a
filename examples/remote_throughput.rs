//! Push and clone throughput to a local S3 server, against a plain `object_store` upload and
//! download of the same pack files in the same run.
//!
//! Commits every checkpoint (`epoch_*.safetensors`) of a corpus (default `../shared/bench/cnn-digits`) into a fresh
//! repository, starts `tests/s3_server.py` (moto's S3 on 127.0.0.1; the Python that runs it:
//! `--python`, else `SNAPSTORE_TEST_S3_PYTHON`, else `python3`), then per round pushes to a
//! fresh prefix, clones it back, and uploads and downloads the same pack files with
//! `object_store` alone (same client, same concurrency). Prints the median of the rounds.
//!
//! ```text
//! cargo run --release --example remote_throughput -- [--corpus DIR] [--bound lossless|rel:E]
//!     [--rounds N] [--python PY]
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use snapstore::{Bound, CommitOptions, PushOptions, RemoteSpec, Repo};

const BUCKET: &str = "bench";
const PART: usize = 16 << 20;
const CONCURRENCY: usize = 4;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = arg(&args, "--corpus")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join("../shared/bench/cnn-digits"));
    let bound: Bound = arg(&args, "--bound")
        .unwrap_or_else(|| "lossless".into())
        .parse()?;
    let rounds: usize = arg(&args, "--rounds").map_or(Ok(3), |r| r.parse())?;
    let python = arg(&args, "--python")
        .or_else(|| std::env::var("SNAPSTORE_TEST_S3_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .map_err(|e| format!("{}: {e}", corpus.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("epoch_") && name.ends_with(".safetensors")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        eprintln!("no .safetensors files in {}", corpus.display());
        std::process::exit(2);
    }

    // The S3 server, for as long as `server` lives (it exits when its stdin closes).
    let mut server = Command::new(&python)
        .arg(here.join("tests/s3_server.py"))
        .args(["--bucket", BUCKET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{python}: {e}"))?;
    let mut endpoint = String::new();
    BufReader::new(server.stdout.take().expect("piped")).read_line(&mut endpoint)?;
    let endpoint = endpoint.trim().to_string();
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_REGION", "us-east-1"),
    ] {
        // Set before any other thread runs.
        std::env::set_var(k, v);
    }

    let work = tempfile::tempdir()?;
    let repo = Repo::init(work.path().join("src"))?;
    let opts = CommitOptions {
        bound: Some(bound),
        ..CommitOptions::default()
    };
    let logical: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    for f in &files {
        repo.commit_file(f, &opts)?;
    }
    let packs: Vec<PathBuf> = std::fs::read_dir(repo.path().join("packs"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    let pack_bytes: u64 = packs
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "corpus {}: {} checkpoints, {:.1} MB of tensors, committed {bound} into {} packs of {:.1} MB in all",
        corpus.display(),
        files.len(),
        logical as f64 / 1e6,
        packs.len(),
        pack_bytes as f64 / 1e6
    );
    println!("S3 server: moto (tests/s3_server.py) at {endpoint}; {rounds} rounds, medians\n");

    let s3 = AmazonS3Builder::from_env()
        .with_bucket_name(BUCKET)
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .build()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut push, mut clone, mut up, mut down) = (vec![], vec![], vec![], vec![]);
    let mut durable = vec![];
    for round in 0..rounds {
        let url = format!("s3://{BUCKET}/push-{round}");
        let spec = RemoteSpec::new(&url)?.with_endpoint(Some(endpoint.clone()));
        repo.add_remote(&format!("r{round}"), spec.clone())?;
        let t = Instant::now();
        let r = repo.push(&format!("r{round}"), &[], PushOptions::default())?;
        push.push(t.elapsed().as_secs_f64());
        assert_eq!(r.bytes, pack_bytes, "a push uploads every pack once");
        let t = Instant::now();
        let (_, c) = Repo::clone_remote(spec, work.path().join(format!("clone-{round}")), None)?;
        clone.push(t.elapsed().as_secs_f64());
        assert_eq!(c.fetch.bytes, pack_bytes);

        // The same files through object_store alone: same client, part size and concurrency.
        let prefix = format!("plain-{round}");
        let t = Instant::now();
        rt.block_on(
            futures::stream::iter(packs.iter().map(|p| {
                let s3 = &s3;
                let key = object_store::path::Path::from(format!(
                    "{prefix}/{}",
                    p.file_name().unwrap().to_string_lossy()
                ));
                async move {
                    let data = std::fs::read(p).expect("read pack");
                    if data.len() < PART {
                        s3.put(&key, PutPayload::from(data)).await?;
                    } else {
                        let mut w = WriteMultipart::new_with_chunk_size(
                            s3.put_multipart(&key).await?,
                            PART,
                        );
                        for part in data.chunks(PART) {
                            w.wait_for_capacity(CONCURRENCY).await?;
                            w.write(part);
                        }
                        w.finish().await?;
                    }
                    Ok::<(), object_store::Error>(())
                }
            }))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>(),
        )?;
        up.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let got: u64 = rt.block_on(async {
            let mut total = 0u64;
            for p in &packs {
                let key = object_store::path::Path::from(format!(
                    "{prefix}/{}",
                    p.file_name().unwrap().to_string_lossy()
                ));
                let mut stream = s3.get(&key).await?.into_stream();
                while let Some(piece) = stream.next().await {
                    total += piece?.len() as u64;
                }
            }
            Ok::<u64, object_store::Error>(total)
        })?;
        down.push(t.elapsed().as_secs_f64());
        assert_eq!(got, pack_bytes);
        // And written to files made durable as a clone makes them (write, fsync, rename, fsync
        // the directory), to show what the disk costs.
        let dir = work.path().join(format!("plain-{round}"));
        std::fs::create_dir_all(&dir)?;
        let t = Instant::now();
        rt.block_on(async {
            for p in &packs {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let key = object_store::path::Path::from(format!("{prefix}/{name}"));
                let bytes = s3.get(&key).await?.bytes().await?;
                let tmp = dir.join(format!("{name}.tmp"));
                let mut f = std::fs::File::create(&tmp).expect("create");
                std::io::Write::write_all(&mut f, &bytes).expect("write");
                f.sync_all().expect("fsync");
                std::fs::rename(&tmp, dir.join(&name)).expect("rename");
                std::fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .expect("fsync dir");
            }
            Ok::<(), object_store::Error>(())
        })?;
        durable.push(t.elapsed().as_secs_f64());
    }
    let mb = pack_bytes as f64 / 1e6;
    let (push, clone, up, down) = (median(push), median(clone), median(up), median(down));
    let durable = median(durable);
    println!("| operation | MB | seconds | MB/s | ratio to plain object_store |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| snapstore push | {mb:.1} | {push:.3} | {:.1} | {:.2} |",
        mb / push,
        up / push
    );
    println!(
        "| plain object_store upload of the packs | {mb:.1} | {up:.3} | {:.1} | 1.00 |",
        mb / up
    );
    println!(
        "| snapstore clone | {mb:.1} | {clone:.3} | {:.1} | {:.2} |",
        mb / clone,
        down / clone
    );
    println!(
        "| plain object_store download of the packs | {mb:.1} | {down:.3} | {:.1} | 1.00 |",
        mb / down
    );
    println!(
        "| plain download, each pack written and fsynced | {mb:.1} | {durable:.3} | {:.1} | {:.2} |",
        mb / durable,
        down / durable
    );
    drop(server.stdin.take());
    let _ = server.wait();
    Ok(())
}
