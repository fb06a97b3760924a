//! Property tests of the promises a lossy chain keeps, through the whole repository: every
//! element within its bound, specials exact, lossless snapshots exact inside a lossy chain, for
//! chains of up to 50 snapshots with random keyframe intervals.

use proptest::prelude::*;

use crate::{Bound, CommitOptions, Dtype, Repo, TensorInput};

fn to_bytes(dtype: Dtype, v: &[f64]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect(),
        Dtype::F64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F16 => v
            .iter()
            .flat_map(|x| half::f16::from_f64(*x).to_le_bytes())
            .collect(),
        _ => v
            .iter()
            .flat_map(|x| half::bf16::from_f64(*x).to_le_bytes())
            .collect(),
    }
}

fn value(dtype: Dtype, b: &[u8]) -> f64 {
    match dtype {
        Dtype::F32 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
        Dtype::F64 => f64::from_le_bytes(b.try_into().unwrap()),
        Dtype::F16 => half::f16::from_le_bytes(b.try_into().unwrap()).to_f64(),
        _ => half::bf16::from_le_bytes(b.try_into().unwrap()).to_f64(),
    }
}

fn special(dtype: Dtype, b: &[u8]) -> bool {
    let v = value(dtype, b);
    !v.is_normal()
}

/// Independent check of one element against its bound, in f64.
fn within(bound: Bound, orig: f64, got: f64) -> bool {
    match bound {
        Bound::Lossless => orig.to_bits() == got.to_bits(),
        Bound::Rel(e) => (got - orig).abs() <= e * orig.abs(),
        Bound::Abs(e) => (got - orig).abs() <= e,
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Chains per run: 24 in CI (about 35 s on a busy 2-core machine; it was 12), more with
/// `SNAPSTORE_CHAIN_CASES=N`.
fn chain_cases() -> u32 {
    std::env::var("SNAPSTORE_CHAIN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: chain_cases(), ..ProptestConfig::default() })]
    #[test]
    fn every_element_of_every_snapshot_meets_its_bound(
        seed in 1u64..u64::MAX,
        dtype in prop::sample::select(vec![Dtype::F16, Dtype::BF16, Dtype::F32, Dtype::F64]),
        len in 1usize..300,
        chain in 2usize..50,
        keyframe_every in 1u32..12,
        eps in prop::sample::select(vec![1e-3, 1e-2, 5e-2, 0.1]),
        relative in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        // Where a GPU is present the chain is coded and decoded on it (`auto` would keep these
        // small snapshots on the CPU).
        let choice = if crate::gpu::backend::Backend::cuda().is_ok() {
            crate::gpu::backend::BackendChoice::Cuda
        } else {
            crate::gpu::backend::BackendChoice::Cpu
        };
        let repo = Repo::init(dir.path().join("r")).unwrap().with_backend(choice);
        let mut rng = Rng(seed);
        let mut w: Vec<f64> = (0..len).map(|_| (rng.unit() - 0.5) * 2.0).collect();
        let mut originals = Vec::new();
        for step in 0..chain {
            for x in w.iter_mut() {
                *x += (rng.unit() - 0.5) * 0.01 * x.abs().max(1e-3);
            }
            let mut v = w.clone();
            // Specials at random places.
            let specials = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0, 1e-310, 3e-8, -6e-41];
            for s in specials {
                if rng.unit() < 0.3 {
                    let i = (rng.next() % len as u64) as usize;
                    v[i] = s;
                }
            }
            let bytes = to_bytes(dtype, &v);
            let bound = if step % 7 == 3 {
                Bound::Lossless
            } else if relative {
                Bound::Rel(eps)
            } else {
                Bound::Abs(eps)
            };
            let t = [TensorInput { name: "w".into(), dtype, shape: vec![len as u64], data: &bytes }];
            let opts = CommitOptions { bound: Some(bound), keyframe_every: Some(keyframe_every), ..Default::default() };
            repo.commit_tensors(&t, None, &opts).unwrap();
            originals.push((bytes, bound));
        }
        let log = repo.log(None, None).unwrap();
        prop_assert_eq!(log.len(), chain);
        for (k, entry) in log.iter().rev().enumerate() {
            let (orig, bound) = &originals[k];
            let out = repo.checkout(entry.id, None).unwrap();
            let got = &out.tensors[0].data;
            prop_assert_eq!(got.len(), orig.len());
            let (_, m) = repo.show(entry.id).unwrap();
            prop_assert!(m.tensors[0].depth <= keyframe_every);
            let w = dtype.unit_bytes();
            for (o, g) in orig.chunks_exact(w).zip(got.chunks_exact(w)) {
                if special(dtype, o) || *bound == Bound::Lossless {
                    prop_assert_eq!(o, g, "snapshot {} must keep this element exactly", k);
                } else {
                    prop_assert!(within(*bound, value(dtype, o), value(dtype, g)),
                        "snapshot {}: {} -> {} breaks {}", k, value(dtype, o), value(dtype, g), bound);
                }
            }
        }
    }
}
