//! Hostile and broken input: every rejection exits non-zero, names the file and the problem, and
//! leaves the repository exactly as it was.

use std::path::{Path, PathBuf};

use snapstore::Dtype;
use tempfile::TempDir;

use crate::util::*;

/// A repository with two snapshots, so "unchanged" has something to compare.
fn repo_with_history() -> (TempDir, PathBuf) {
    let (dir, repo) = init_repo();
    for (i, step) in trajectory(11, 2, &[("w", &[32, 32]), ("b", &[32])])
        .iter()
        .enumerate()
    {
        let p = dir.path().join(format!("good{i}.safetensors"));
        write_safetensors(&p, step, None);
        run_ok(&repo, &["commit", p.to_str().unwrap(), "-m", "good"]);
    }
    (dir, repo)
}

/// Sorted names in `repo/packs` (packs and any temp files).
fn pack_dir_listing(repo: &Path) -> Vec<String> {
    sorted_names(&repo.join("packs"))
}

/// Runs `args` expecting failure; checks stderr mentions every string in `expect`, and that log,
/// stats, branches and the pack directory are unchanged and fsck is clean.
#[track_caller]
fn assert_rejected_without_change(
    repo: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    expect: &[&str],
) -> String {
    let before = repo_state(repo);
    let packs_before = pack_dir_listing(repo);
    let o = run_env(repo, args, env);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "{args:?} should fail; stdout: {}",
        stdout(&o)
    );
    for e in expect {
        assert!(err.contains(e), "stderr of {args:?} lacks {e:?}:\n{err}");
    }
    assert_eq!(repo_state(repo), before, "{args:?} changed the repository");
    assert_eq!(
        pack_dir_listing(repo),
        packs_before,
        "{args:?} left files in packs/"
    );
    assert_fsck_clean(repo);
    err
}

/// Commits the bytes `file` (written to DIR/NAME) and expects a rejection naming the file and
/// mentioning `problem`.
#[track_caller]
fn assert_commit_rejected(file: &[u8], problem: &str) -> String {
    let (dir, repo) = repo_with_history();
    let path = dir.path().join("bad.safetensors");
    std::fs::write(&path, file).unwrap();
    let shown = path.display().to_string();
    assert_rejected_without_change(
        &repo,
        &["commit", &shown, "-m", "bad"],
        &[],
        &[&shown, problem],
    )
}

/// A safetensors file from a header string and data bytes.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn valid_file() -> Vec<u8> {
    let mut rng = Rng::new(12);
    serialize(
        &[
            Tensor::f32(&mut rng, "x", &[64], 1.0),
            Tensor::random(&mut rng, "y", Dtype::I16, &[10]),
        ],
        Some(&metadata(&[("k", "v")])),
    )
}

#[test]
fn commit_of_missing_file_names_it() {
    let (dir, repo) = repo_with_history();
    let path = dir.path().join("does-not-exist.safetensors");
    let shown = path.display().to_string();
    assert_rejected_without_change(
        &repo,
        &["commit", &shown],
        &[],
        &[&shown, "No such file or directory"],
    );
}

#[test]
fn commit_of_random_bytes_is_not_safetensors() {
    let mut rng = Rng::new(13);
    assert_commit_rejected(&rng.bytes(4096), "not a valid safetensors file");
}

/// A checkpoint of a format people take for safetensors is named as what it is, with the
/// conversion where there is one: torch.save's zip and pickle files, and a few others.
#[test]
fn commit_of_another_checkpoint_format_names_it() {
    let mut rng = Rng::new(14);
    for (magic, what) in [
        (
            &b"PK\x03\x04"[..],
            "it is a zip archive, as torch.save writes",
        ),
        (
            &b"\x80\x02"[..],
            "it is a Python pickle, as torch.save's legacy format writes",
        ),
        (&b"\x93NUMPY"[..], "it is a NumPy .npy array"),
        (&b"GGUF"[..], "it is a GGUF file"),
        (&b"\x1f\x8b"[..], "it is a gzip file"),
    ] {
        let file = [magic, &rng.bytes(4096)].concat();
        let err = assert_commit_rejected(&file, what);
        if magic[0] != b'P' && magic[0] != 0x80 {
            continue;
        }
        assert!(
            err.contains("safetensors.torch.save_file(torch.load(path)"),
            "{err}"
        );
    }
    // A length prefix that holds keeps the safetensors problem.
    let mut file = valid_file();
    file.truncate(file.len() - 1);
    assert_commit_rejected(&file, "tensors cover");
}

/// Two tensors of one name are refused as that, not for offsets the JSON map made disagree.
#[test]
fn commit_with_a_tensor_named_twice_is_rejected_naming_it() {
    let header = r#"{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"w":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#;
    assert_commit_rejected(
        &raw_file(header, &[1, 2, 3, 4]),
        "invalid tensor name \"w\": named twice in the header",
    );
}

#[test]
fn commit_of_empty_file_is_too_short() {
    let err = assert_commit_rejected(&[], "too short for the 8-byte header length");
    assert!(err.contains("0 bytes"), "{err}");
}

#[test]
fn commit_of_file_truncated_in_data_section_is_rejected() {
    let good = valid_file();
    let cut = &good[..good.len() - 7];
    let err = assert_commit_rejected(cut, "truncated");
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn commit_with_header_length_past_end_of_file_is_rejected() {
    let mut file = 1000u64.to_le_bytes().to_vec();
    file.extend_from_slice(b"{}");
    assert_commit_rejected(&file, "goes past the end of the file");
}

#[test]
fn commit_with_malformed_header_json_is_rejected() {
    let file = raw_file(r#"{"x":{"dtype":"F32","shape":[1],"#, &[0; 4]);
    assert_commit_rejected(&file, "malformed header JSON");
}

#[test]
fn commit_with_non_string_metadata_is_rejected() {
    let file = raw_file(
        r#"{"__metadata__":{"epoch":3},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    let err = assert_commit_rejected(&file, "malformed header JSON");
    assert!(err.contains("epoch"), "{err}");
}

#[test]
fn commit_with_overlapping_offsets_is_rejected() {
    let file = raw_file(
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
        &[0; 24],
    );
    let err = assert_commit_rejected(&file, "do not follow the previous tensor");
    assert!(err.contains("\"b\"") && err.contains("[8, 24)"), "{err}");
}

#[test]
fn commit_with_gap_between_offsets_is_rejected() {
    let file = raw_file(
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[20,36]}}"#,
        &[0; 36],
    );
    let err = assert_commit_rejected(&file, "do not follow the previous tensor");
    assert!(err.contains("expected start 16"), "{err}");
}

#[test]
fn commit_with_trailing_bytes_after_data_is_rejected() {
    let mut file = valid_file();
    file.extend_from_slice(b"extra");
    let err = assert_commit_rejected(&file, "padded");
    assert!(err.contains("tensors cover"), "{err}");
}

#[test]
fn commit_with_header_over_100_mb_is_rejected() {
    let mut file = 100_000_001u64.to_le_bytes().to_vec();
    file.extend_from_slice(b"{}");
    let err = assert_commit_rejected(&file, "100 MB limit");
    assert!(err.contains("100000001"), "{err}");
}

#[test]
fn commit_with_unknown_dtype_is_rejected() {
    let file = raw_file(
        r#"{"w":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    let err = assert_commit_rejected(&file, "unknown dtype \"F12\"");
    assert!(err.contains("\"w\""), "{err}");
}

#[test]
fn commit_with_shape_not_matching_byte_length_is_rejected() {
    let file = raw_file(
        r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
        &[0; 16],
    );
    assert_commit_rejected(&file, "needs 12 bytes but its offsets give 16");
}

#[test]
fn commit_with_sub_byte_tensor_ending_mid_byte_is_rejected() {
    // Three F4 values are 12 bits: no whole number of bytes.
    let file = raw_file(
        r#"{"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#,
        &[0; 2],
    );
    assert_commit_rejected(&file, "\"w\"");
}

#[test]
fn commit_with_bad_meta_argument_is_rejected() {
    let (dir, repo) = repo_with_history();
    let path = dir.path().join("ok.safetensors");
    std::fs::write(&path, valid_file()).unwrap();
    assert_rejected_without_change(
        &repo,
        &["commit", path.to_str().unwrap(), "--meta", "novalue"],
        &[],
        &["novalue", "KEY=VALUE"],
    );
}

#[test]
fn checkout_of_unknown_ref_fails_and_writes_nothing() {
    let (dir, repo) = repo_with_history();
    let out = dir.path().join("out.safetensors");
    let shown = out.display().to_string();
    for spec in ["nope", "HEAD~5", "deadbeef"] {
        assert_rejected_without_change(
            &repo,
            &["checkout", spec, "-o", &shown],
            &[],
            &["unknown ref"],
        );
        assert!(!out.exists(), "checkout {spec} created {shown}");
    }
}

#[test]
fn every_command_refuses_a_directory_without_repository() {
    let dir = tempdir();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let file = dir.path().join("x.safetensors");
    std::fs::write(&file, valid_file()).unwrap();
    let out = dir.path().join("o.safetensors");
    let (f, o) = (file.to_str().unwrap(), out.to_str().unwrap());
    let commands: Vec<Vec<&str>> = vec![
        vec!["commit", f],
        vec!["checkout", "HEAD", "-o", o],
        vec!["log"],
        vec!["show"],
        vec!["diff", "HEAD", f],
        vec!["tag"],
        vec!["tag", "v1"],
        vec!["branch"],
        vec!["branch", "b"],
        vec!["switch", "b"],
        vec!["stats"],
        vec!["gc"],
        vec!["fsck"],
        vec!["fsck", "--rebuild-index"],
        vec!["config", "keyframe_every"],
        vec!["config", "keyframe_every", "4"],
    ];
    for args in &commands {
        let err = run_err(&empty, args);
        assert!(
            err.contains("no snapstore repository"),
            "{args:?}: stderr lacks the reason:\n{err}"
        );
        assert!(
            err.contains(&empty.display().to_string()),
            "{args:?}: {err}"
        );
    }
    // Nothing was created in the directory (no index, no packs).
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert!(!out.exists());

    // Through the environment variable as well.
    let o = std::process::Command::new(snapstore_bin())
        .arg("log")
        .env("SNAPSTORE_REPO", &empty)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no snapstore repository"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn repository_with_newer_format_is_refused() {
    let (dir, repo) = repo_with_history();
    std::fs::write(repo.join("FORMAT"), r#"{"snapstore_format": 99}"#).unwrap();
    let file = dir.path().join("x.safetensors");
    std::fs::write(&file, valid_file()).unwrap();
    for args in [
        vec!["log"],
        vec!["commit", file.to_str().unwrap()],
        vec!["fsck"],
    ] {
        let err = run_err(&repo, &args);
        assert!(
            err.contains("format version 99")
                && (err.contains("newer") || err.contains("reads up to 1")),
            "{args:?}: stderr does not say the repository is too new:\n{err}"
        );
    }
    // The refusal touched nothing: with the FORMAT file restored, the history is intact.
    std::fs::write(repo.join("FORMAT"), r#"{"snapstore_format": 1}"#).unwrap();
    assert_eq!(run_json(&repo, &["log"]).as_array().unwrap().len(), 2);
    assert_fsck_clean(&repo);
}

#[test]
fn init_refuses_an_existing_repository() {
    let (_dir, repo) = repo_with_history();
    let before = repo_state(&repo);
    let err = run_err(&repo, &["init"]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(repo_state(&repo), before);
}

#[test]
fn disk_full_during_commit_leaves_repository_unchanged() {
    let (dir, repo) = repo_with_history();
    let mut rng = Rng::new(14);
    let path = dir.path().join("big.safetensors");
    let bytes = write_safetensors(
        &path,
        &[Tensor::f32(&mut rng, "w", &[64, 64], 1.0)],
        Some(&metadata(&[("epoch", "9")])),
    );
    let head = head_id(&repo);
    let shown = path.display().to_string();
    assert_rejected_without_change(
        &repo,
        &["commit", &shown, "-m", "full"],
        &[(snapstore::FAIL_WRITES_ENV, "1000")],
        &["no space left on device"],
    );
    assert_eq!(head_id(&repo), head);

    // Space again: the same commit goes through and checks out byte for byte.
    let c = run_json(&repo, &["commit", &shown, "-m", "retry"]);
    assert_eq!(c["parent"], head.as_str());
    let out = dir.path().join("out.safetensors");
    run_ok(&repo, &["checkout", "HEAD", "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    assert_fsck_clean(&repo);
}

#[test]
fn commit_with_shape_overflowing_u64_is_rejected() {
    let file = raw_file(
        r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#,
        &[],
    );
    let err = assert_commit_rejected(&file, "\"w\"");
    assert!(err.contains("impossible"), "{err}");
}

#[test]
fn commit_with_invalid_bound_or_codec_is_rejected() {
    let (dir, repo) = repo_with_history();
    let path = dir.path().join("ok.safetensors");
    std::fs::write(&path, valid_file()).unwrap();
    let f = path.to_str().unwrap();
    for (args, expect) in [
        (vec!["commit", f, "--bound", "rel:2"], "(0, 1)"),
        (vec!["commit", f, "--bound", "abs:-1"], "positive"),
        // Finer than f64 can step: refused when parsed, not when the first chunk is coded.
        (vec!["commit", f, "--bound", "rel:1e-17"], "2^-53"),
        (vec!["commit", f, "--bound", "abs:1e308"], "finite"),
        (
            vec!["commit", f, "--bound", "fuzzy"],
            "lossless, rel:EPS or abs:EPS",
        ),
        (vec!["commit", f, "--codec", "brotli"], "brotli"),
    ] {
        assert_rejected_without_change(&repo, &args, &[], &[expect]);
    }
}

/// A negative `--grace` is named as what is wrong with it (clap read `-5` as an unknown flag:
/// "unexpected argument '-5' found"), for gc and remote gc alike, and nothing is removed.
#[test]
fn a_negative_grace_is_named_as_such() {
    let (_dir, repo) = repo_with_history();
    let before = pack_dir_listing(&repo);
    for args in [
        &["gc", "--grace", "-5"][..],
        &["remote", "gc", "origin", "--grace", "-5"],
    ] {
        let err = run_err(&repo, args);
        assert!(
            err.contains("\"-5\" is not a number of seconds (a whole number, 0 or more)"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(pack_dir_listing(&repo), before);
}
