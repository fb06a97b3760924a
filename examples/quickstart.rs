//! A training loop that keeps every epoch in snapstore, then checks out the best one.
//!
//! Runs anywhere with no data: it makes a repository in a temporary directory, "trains" a small
//! synthetic model for 12 epochs (weights drift like SGD updates, accuracy is a made-up curve),
//! commits every epoch exactly on `main` and within a 1% relative bound on `lossy`, checks out
//! the best epoch, verifies it, and prints the repository stats.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use std::collections::BTreeMap;

use snapstore::{Bound, CommitOptions, Dtype, Repo, TensorInput};

/// A tiny deterministic generator, so the example prints the same figures every run.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let repo = Repo::init(dir.path().join("repo"))?;
    repo.create_branch("lossy", None)?;
    let mut rng = Rng(0x5eed);
    let shapes: [(&str, Vec<u64>); 4] = [
        ("fc1.weight", vec![512, 256]),
        ("fc1.bias", vec![512]),
        ("fc2.weight", vec![10, 512]),
        ("fc2.bias", vec![10]),
    ];
    let mut weights: Vec<Vec<f32>> = shapes
        .iter()
        .map(|(_, s)| {
            (0..s.iter().product::<u64>())
                .map(|_| rng.next_f32() * 0.1)
                .collect()
        })
        .collect();
    let mut best = (0.0f64, String::new());
    for epoch in 0..12 {
        let lr = 0.01 / (1.0 + epoch as f32);
        for w in weights.iter_mut() {
            for x in w.iter_mut() {
                *x += lr * rng.next_f32() * x.abs().max(1e-3);
            }
        }
        let accuracy =
            0.97 - 0.5 * (-(epoch as f64) / 3.0).exp() + 0.002 * ((epoch * 7 % 5) as f64);
        let bytes: Vec<Vec<u8>> = weights
            .iter()
            .map(|w| w.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let tensors: Vec<TensorInput> = shapes
            .iter()
            .zip(&bytes)
            .map(|((name, shape), data)| TensorInput {
                name: name.to_string(),
                dtype: Dtype::F32,
                shape: shape.clone(),
                data,
            })
            .collect();
        let meta = BTreeMap::from([
            ("epoch".to_string(), epoch.to_string()),
            ("accuracy".to_string(), format!("{accuracy:.4}")),
        ]);
        let exact = repo.commit_tensors(
            &tensors,
            None,
            &CommitOptions {
                message: format!("epoch {epoch}"),
                meta: meta.clone(),
                ..Default::default()
            },
        )?;
        let lossy = repo.commit_tensors(
            &tensors,
            None,
            &CommitOptions {
                message: format!("epoch {epoch}"),
                branch: Some("lossy".into()),
                bound: Some(Bound::Rel(0.01)),
                meta,
                ..Default::default()
            },
        )?;
        println!(
            "epoch {epoch:2}  acc {accuracy:.4}  exact {:>8} B  rel 1e-2 {:>8} B  ({} -> {})",
            exact.stored_bytes,
            lossy.stored_bytes,
            exact.snapshot.short(),
            lossy.snapshot.short()
        );
        if accuracy > best.0 {
            best = (accuracy, exact.snapshot.hex());
        }
    }

    let out = dir.path().join("best.safetensors");
    let report = repo.checkout_to_file(&best.1, &out, None)?;
    let checked = repo.diff_file(&best.1, &out)?;
    assert!(checked.iter().all(|d| d.status == "same"));
    println!(
        "best epoch: accuracy {:.4}, snapshot {}, written to {} ({} tensors, verified)",
        best.0,
        report.snapshot.short(),
        out.display(),
        report.tensors
    );
    let errors = repo.diff("main", "lossy")?;
    let worst = errors.iter().filter_map(|d| d.max_rel).fold(0.0, f64::max);
    println!("lossy tip against the exact tip: max relative error {worst:.5} (bound 0.01)");
    let s = repo.stats()?;
    println!(
        "repository: {} snapshots, {} logical bytes, {} stored bytes, ratio {:.2}x over both branches",
        s.snapshots, s.logical_bytes, s.stored_bytes, s.ratio
    );
    Ok(())
}
