//! Chunks written before lattice coding stay readable: a small repository committed by the
//! binary of 53c5f45 (lossless, dithered `rel:0.01`, nearest `rel:0.05` and dithered `abs:0.001`
//! chains over F32, F16, BF16 and I64 tensors, with NaN, ±Inf, ±0 and a subnormal) checks out
//! byte-identical to what that binary checked out (`checkouts.b3`: id, blake3 of the file,
//! message), and today's codec continues its chains.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{run_json, run_ok, tempdir};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-format-1")
}

/// The fixture keeps the packs and the ref log only; the index is rebuilt from them, as after
/// index damage (which keeps the fixture small: the index alone is half a megabyte).
fn restore(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    fs::create_dir_all(repo.join("packs")).unwrap();
    for f in ["FORMAT", "refs.log"] {
        fs::copy(fixture().join(f), repo.join(f)).unwrap();
    }
    for e in fs::read_dir(fixture().join("packs")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), repo.join("packs").join(e.file_name())).unwrap();
    }
    run_ok(&repo, &["fsck", "--rebuild-index"]);
    repo
}

#[test]
fn a_repository_written_before_lattice_coding_checks_out_byte_identical() {
    let dir = tempdir();
    let repo = restore(dir.path());
    let listing = fs::read_to_string(fixture().join("checkouts.b3")).unwrap();
    let mut checked = 0;
    for line in listing.lines() {
        let [id, want, message]: [&str; 3] = line
            .split_whitespace()
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let out = dir.path().join(format!("{message}.safetensors"));
        run_ok(&repo, &["checkout", id, "-o", out.to_str().unwrap()]);
        let bytes = fs::read(&out).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), want, "{message}");
        if let Some(k) = message.strip_prefix("lossless") {
            let source = fs::read(fixture().join(format!("s{k}.safetensors"))).unwrap();
            assert!(bytes == source, "{message} is the committed file");
        }
        checked += 1;
    }
    assert_eq!(checked, 11);
}

#[test]
fn todays_codec_continues_a_chain_written_before_it() {
    let dir = tempdir();
    let repo = restore(dir.path());
    run_ok(&repo, &["switch", "nearest"]);
    // s1 differs from the branch tip (committed from s2), so it is coded, not reused.
    let s1 = fixture().join("s1.safetensors");
    let c = run_json(
        &repo,
        &["commit", s1.to_str().unwrap(), "--bound", "rel:0.05"],
    );
    assert_eq!(
        c["deltas"], 3,
        "three float tensors coded against the old chain: {c}"
    );
    let out = dir.path().join("new.safetensors");
    run_ok(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
    let (a, b) = (fs::read(&s1).unwrap(), fs::read(&out).unwrap());
    let (ta, tb) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let w = |t: &safetensors::SafeTensors, n: &str| -> Vec<f32> {
        t.tensor(n)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    for (x, y) in w(&ta, "layer.weight")
        .into_iter()
        .zip(w(&tb, "layer.weight"))
    {
        let exact = x.to_bits() == y.to_bits();
        assert!(
            exact || (y as f64 - x as f64).abs() <= 0.05 * (x as f64).abs(),
            "{x} -> {y}"
        );
    }
    assert_eq!(
        ta.tensor("steps").unwrap().data(),
        tb.tensor("steps").unwrap().data()
    );
}
