//! Chunk encode/decode throughput through the public API: `commit_tensors` and `checkout` of a
//! 64 MiB in-memory F32 tensor set (16 tensors of 4 MiB), lossless and `rel:1e-2`, as a keyframe
//! (no parent) and as a delta (a second "epoch", every weight times `1 + 1e-3 * noise`).
//!
//! ```text
//! cargo bench --bench codec
//! ```
//!
//! Each commit goes into a fresh repository (created outside the timed region); checkouts read
//! a repository holding both epochs. Throughput is tensor bytes per second.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use snapstore::{Bound, CommitOptions, Dtype, Repo, TensorInput};

const TENSORS: usize = 16;
const ELEMENTS: usize = 1 << 20;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Roughly normal, unit variance.
    fn normal(&mut self) -> f32 {
        let r = self.next();
        let s: u32 = (0..4).map(|k| ((r >> (16 * k)) & 0xFFFF) as u32).sum();
        (s as f32 / 65536.0 - 2.0) * 1.732_050_8
    }
}

/// Two epochs of 16 F32 tensors: weights ~0.02 * N(0,1) plus a slow sinusoid, then the same
/// times `1 + 1e-3 * N(0,1)`.
fn epochs() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for t in 0..TENSORS {
        let mut base = Rng(0x5eed_0000 + t as u64);
        let mut step = Rng(0xdead_0000 + t as u64);
        let mut x = Vec::with_capacity(ELEMENTS * 4);
        let mut y = Vec::with_capacity(ELEMENTS * 4);
        for i in 0..ELEMENTS {
            let v = (i as f32 * 1e-4 * (t as f32 + 1.0)).sin() * 0.01 + 0.02 * base.normal();
            x.extend_from_slice(&v.to_le_bytes());
            y.extend_from_slice(&(v * (1.0 + 1e-3 * step.normal())).to_le_bytes());
        }
        a.push(x);
        b.push(y);
    }
    (a, b)
}

fn inputs(data: &[Vec<u8>]) -> Vec<TensorInput<'_>> {
    data.iter()
        .enumerate()
        .map(|(i, d)| TensorInput {
            name: format!("layers.{i:02}.weight"),
            dtype: Dtype::F32,
            shape: vec![1024, (ELEMENTS / 1024) as u64],
            data: d,
        })
        .collect()
}

fn opts(bound: Bound) -> CommitOptions {
    CommitOptions {
        bound: Some(bound),
        ..Default::default()
    }
}

fn fresh_repo() -> (tempfile::TempDir, Repo) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repo::init(dir.path().join("repo")).expect("init");
    (dir, repo)
}

fn bench(c: &mut Criterion) {
    let (a, b) = epochs();
    let (ia, ib) = (inputs(&a), inputs(&b));
    let bytes = (TENSORS * ELEMENTS * 4) as u64;
    let bounds = [("lossless", Bound::Lossless), ("rel1e-2", Bound::Rel(1e-2))];

    let mut g = c.benchmark_group("commit_64MiB");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(bytes));
    for (label, bound) in bounds {
        let o = opts(bound);
        g.bench_function(format!("{label}/keyframe"), |bch| {
            bch.iter_batched_ref(
                fresh_repo,
                |(_, repo)| black_box(repo.commit_tensors(&ia, None, &o).expect("commit")),
                BatchSize::PerIteration,
            )
        });
        g.bench_function(format!("{label}/delta"), |bch| {
            bch.iter_batched_ref(
                || {
                    let (d, repo) = fresh_repo();
                    repo.commit_tensors(&ia, None, &o).expect("commit");
                    (d, repo)
                },
                |(_, repo)| black_box(repo.commit_tensors(&ib, None, &o).expect("commit")),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("checkout_64MiB");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(bytes));
    for (label, bound) in bounds {
        let (_dir, repo) = fresh_repo();
        repo.commit_tensors(&ia, None, &opts(bound))
            .expect("commit");
        repo.commit_tensors(&ib, None, &opts(bound))
            .expect("commit");
        g.bench_function(format!("{label}/keyframe"), |bch| {
            bch.iter(|| black_box(repo.checkout("HEAD~1", None).expect("checkout")))
        });
        g.bench_function(format!("{label}/delta"), |bch| {
            bch.iter(|| black_box(repo.checkout("HEAD", None).expect("checkout")))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
