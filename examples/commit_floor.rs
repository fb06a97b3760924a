//! The fixed cost of a durable commit: 60 commits of one 4 KiB F32 tensor (changed each time)
//! through one `Repo` handle, so the time is what every commit pays whatever its size (a pack
//! fsynced and renamed, its directory fsynced, the index opened, the branch moved, `refs.log`
//! appended and fsynced, the index flushed).
//!
//!     cargo run --release --example commit_floor

use std::time::Instant;

use snapstore::{CommitOptions, Dtype, Repo, TensorInput};

fn main() -> snapstore::Result<()> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let repo = Repo::init(tmp.path().join("repo"))?;
    let mut ms = Vec::new();
    for k in 0..60u32 {
        let w: Vec<u8> = (0..1024u32)
            .flat_map(|i| ((i * 7 + k) as f32 * 0.001).to_le_bytes())
            .collect();
        let t = [TensorInput {
            name: "w".into(),
            dtype: Dtype::F32,
            shape: vec![1024],
            data: &w,
        }];
        let t0 = Instant::now();
        repo.commit_tensors(&t, None, &CommitOptions::default())?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "4 KiB commit through one handle, {} commits: median {:.2} ms, min {:.2} ms, p90 {:.2} ms",
        ms.len(),
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() * 9 / 10]
    );
    Ok(())
}
