//! Compiled kernels kept on disk, so NVRTC runs once per machine instead of once per process
//! (issue #17): NVRTC 13.0 compiles the program for `sm_90` in 1.3 s on the 2-core VM (every
//! process that used the GPU paid it); reading the entry takes 0.13 ms
//! (`nvrtc_runs_once_per_cache`, with NVRTC on `LD_LIBRARY_PATH`).
//!
//! An entry is named by a hash of everything that decides the cubin's bytes (the program
//! source, the NVRTC options, the target and NVRTC's version), so a new build, another device
//! or another NVRTC never reads an old one. It holds a magic, the BLAKE3 hash of the cubin and
//! the cubin; one that is cut short or does not match its hash is compiled again and written
//! over. Entries are written whole or not at all (`fsutil::write_atomic`); one that cannot be
//! written costs only the next process a compile.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::kernels::{program_source, Compiled, NVRTC_OPTIONS};

/// The environment variable naming the cache directory; empty, `0` or `off` turns it off.
pub(crate) const CACHE_ENV: &str = "SNAPSTORE_KERNEL_CACHE";

const MAGIC: &[u8; 8] = b"SNAPCUB1";

/// Where a cubin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Read from this cache entry.
    Cache(PathBuf),
    /// Compiled by NVRTC, and kept in this entry where it could be written.
    Compiled(Option<PathBuf>),
}

/// The cache directory: [`CACHE_ENV`] if set (`None` when it turns the cache off), else
/// `$XDG_CACHE_HOME/snapstore/kernels`, else `$HOME/.cache/snapstore/kernels`.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    dir_from(
        std::env::var_os(CACHE_ENV),
        var("XDG_CACHE_HOME"),
        var("HOME"),
    )
}

fn dir_from(
    setting: Option<std::ffi::OsString>,
    xdg_cache: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    match setting {
        Some(s) if s.is_empty() || s == "0" || s == "off" => None,
        Some(s) => Some(PathBuf::from(s)),
        None => xdg_cache
            .map(PathBuf::from)
            .or_else(|| home.map(|h| Path::new(&h).join(".cache")))
            .map(|d| d.join("snapstore").join("kernels")),
    }
}

/// The entry of the cubin NVRTC `nvrtc` compiles for `target` from this build's program.
fn entry_path(dir: &Path, target: &str, nvrtc: (i32, i32)) -> PathBuf {
    let mut h = blake3::Hasher::new();
    h.update(program_source().as_bytes());
    for o in NVRTC_OPTIONS {
        h.update(b"\0").update(o.as_bytes());
    }
    h.update(b"\0").update(target.as_bytes());
    h.update(format!("\0{}.{}", nvrtc.0, nvrtc.1).as_bytes());
    let key = h.finalize().to_hex();
    dir.join(format!(
        "{target}-nvrtc{}.{}-{}.cubin",
        nvrtc.0,
        nvrtc.1,
        &key.as_str()[..16]
    ))
}

/// An entry's cubin, or `None` where it is missing, cut short or damaged.
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(MAGIC)?;
    let (hash, image) = rest.split_at_checked(32)?;
    (blake3::hash(image).as_bytes() == hash).then(|| image.to_vec())
}

/// Keeps `image` in the entry at `path`, whole or not at all (`fsutil::write_atomic`).
fn write_entry(path: &Path, image: &[u8]) -> crate::Result<()> {
    let dir = path.parent().expect("entries live in a directory");
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    let mut entry = Vec::with_capacity(MAGIC.len() + 32 + image.len());
    entry.extend_from_slice(MAGIC);
    entry.extend_from_slice(blake3::hash(image).as_bytes());
    entry.extend_from_slice(image);
    crate::fsutil::write_atomic(path, &entry)
}

/// The cubin for `target` (`sm_XY`) from the cache in `dir`, or from `compile` (then kept
/// there). `nvrtc` is the version `compile` runs, part of the entry's name.
pub(crate) fn cubin(
    target: &str,
    nvrtc: (i32, i32),
    dir: Option<&Path>,
    compile: impl FnOnce(&str) -> Result<Compiled, String>,
) -> Result<(Compiled, Origin), String> {
    let Some(path) = dir.map(|d| entry_path(d, target, nvrtc)) else {
        return compile(target).map(|c| (c, Origin::Compiled(None)));
    };
    let start = Instant::now();
    if let Some(image) = read_entry(&path) {
        let compiled = Compiled {
            target: target.to_string(),
            image,
            log: String::new(),
            nvrtc_version: nvrtc,
            ptx_isa: None,
            elapsed: start.elapsed(),
        };
        return Ok((compiled, Origin::Cache(path)));
    }
    let compiled = compile(target)?;
    let kept = write_entry(&path, &compiled.image).ok().map(|()| path);
    Ok((compiled, Origin::Compiled(kept)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::Duration;

    fn fake<'a>(
        image: &[u8],
        calls: &'a Cell<u32>,
    ) -> impl FnOnce(&str) -> Result<Compiled, String> + 'a {
        let image = image.to_vec();
        move |target| {
            calls.set(calls.get() + 1);
            Ok(Compiled {
                target: target.to_string(),
                image,
                log: "a warning".into(),
                nvrtc_version: (13, 0),
                ptx_isa: None,
                elapsed: Duration::from_secs(1),
            })
        }
    }

    #[test]
    fn a_cubin_is_compiled_once_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Cell::new(0);
        let (first, origin) =
            cubin("sm_90", (13, 0), Some(dir.path()), fake(b"cubin", &calls)).unwrap();
        let Origin::Compiled(Some(path)) = origin else {
            panic!("{origin:?}")
        };
        assert_eq!((first.image.as_slice(), calls.get()), (&b"cubin"[..], 1));
        let (second, origin) =
            cubin("sm_90", (13, 0), Some(dir.path()), fake(b"other", &calls)).unwrap();
        assert_eq!(origin, Origin::Cache(path));
        assert_eq!((second.image, calls.get()), (b"cubin".to_vec(), 1));
        assert_eq!((second.target.as_str(), second.log.as_str()), ("sm_90", ""));
        // Another target or NVRTC is another entry.
        for (target, nvrtc) in [("sm_80", (13, 0)), ("sm_90", (13, 1)), ("sm_90", (12, 8))] {
            let (c, origin) = cubin(target, nvrtc, Some(dir.path()), fake(b"new", &calls)).unwrap();
            assert!(
                matches!(origin, Origin::Compiled(Some(_))),
                "{target} {nvrtc:?}"
            );
            assert_eq!(c.image, b"new");
        }
        assert_eq!(calls.get(), 4);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            4,
            "no temporary left"
        );
    }

    #[test]
    fn a_damaged_entry_is_compiled_again_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Cell::new(0);
        let (_, origin) = cubin(
            "sm_90",
            (13, 0),
            Some(dir.path()),
            fake(b"cubin bytes", &calls),
        )
        .unwrap();
        let Origin::Compiled(Some(path)) = origin else {
            panic!("{origin:?}")
        };
        let whole = std::fs::read(&path).unwrap();
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 1;
        for damaged in [
            whole[..whole.len() - 1].to_vec(),
            flipped,
            b"SNAPCUB1".to_vec(),
            vec![],
        ] {
            std::fs::write(&path, &damaged).unwrap();
            let before = calls.get();
            let (c, origin) = cubin(
                "sm_90",
                (13, 0),
                Some(dir.path()),
                fake(b"cubin bytes", &calls),
            )
            .unwrap();
            assert_eq!(
                (c.image.as_slice(), calls.get()),
                (&b"cubin bytes"[..], before + 1)
            );
            assert_eq!(origin, Origin::Compiled(Some(path.clone())));
            assert_eq!(std::fs::read(&path).unwrap(), whole);
        }
    }

    #[test]
    fn without_a_usable_directory_every_process_compiles() {
        let calls = Cell::new(0);
        let (c, origin) = cubin("sm_90", (13, 0), None, fake(b"x", &calls)).unwrap();
        assert_eq!((c.image, origin), (b"x".to_vec(), Origin::Compiled(None)));
        // A file where the directory should be: compiled, not kept, no error.
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("kernels");
        std::fs::write(&blocked, b"not a directory").unwrap();
        let (c, origin) = cubin("sm_90", (13, 0), Some(&blocked), fake(b"y", &calls)).unwrap();
        assert_eq!((c.image, origin), (b"y".to_vec(), Origin::Compiled(None)));
        // A compile error is the error.
        let failing = |_: &str| -> Result<Compiled, String> { Err("NVRTC failed".into()) };
        assert_eq!(
            cubin("sm_90", (13, 0), Some(dir.path()), failing).unwrap_err(),
            "NVRTC failed"
        );
    }

    #[test]
    fn nvrtc_runs_once_per_cache() {
        // Needs only libnvrtc, no driver (see `kernels/README.md`, "Checking without a GPU").
        let nvrtc = match super::super::kernels::nvrtc_version() {
            Ok(v) => v,
            Err(reason) => {
                crate::report_skip(
                    "gpu::kernel_cache::tests::nvrtc_runs_once_per_cache",
                    &reason,
                );
                return;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let compile = super::super::kernels::compile;
        let (built, origin) = cubin("sm_90", nvrtc, Some(dir.path()), compile).unwrap();
        assert!(matches!(origin, Origin::Compiled(Some(_))), "{origin:?}");
        let never = |_: &str| -> Result<Compiled, String> { panic!("NVRTC ran twice") };
        let (read, origin) = cubin("sm_90", nvrtc, Some(dir.path()), never).unwrap();
        assert!(matches!(origin, Origin::Cache(_)), "{origin:?}");
        assert_eq!(read.image, built.image);
        println!(
            "sm_90 cubin of {} bytes: NVRTC {}.{} compiled it in {} ms, the cache read it in {:.2} ms",
            built.image.len(),
            nvrtc.0,
            nvrtc.1,
            built.elapsed.as_millis(),
            read.elapsed.as_secs_f64() * 1e3
        );
    }

    #[test]
    fn the_directory_follows_the_environment() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        for off in ["", "0", "off"] {
            assert_eq!(dir_from(os(off), os("/x"), os("/h")), None);
        }
        assert_eq!(dir_from(os("/c"), os("/x"), os("/h")), Some("/c".into()));
        assert_eq!(
            dir_from(None, os("/x"), os("/h")),
            Some("/x/snapstore/kernels".into())
        );
        assert_eq!(
            dir_from(None, None, os("/h")),
            Some("/h/.cache/snapstore/kernels".into())
        );
        assert_eq!(dir_from(None, None, None), None);
    }
}
