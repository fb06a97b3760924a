//! Small objects (snapshot records, refs, the format object, ref locks) written into a directory
//! remote durably, as the repository writes its own files: staged beside the object under
//! `object_store`'s staging name (`NAME#N`, which its listings pass over), fsynced, renamed over
//! the object (or hard-linked to it where a write must not replace one), and the directory
//! fsynced. `object_store`'s local backend renames without a sync: after a crash of the machine
//! holding the share, a push it had reported done could leave an empty record or ref.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::{forget_temp, parent_dir, register_temp, unique_suffix};

/// How an object is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Replacing whatever is there.
    Replace,
    /// Only where nothing is (`Ok(false)` when something is).
    Create,
}

/// Writes each `(path, bytes)` durably under `mode`; whether each was written (always, for
/// [`Mode::Replace`]). Every file is synced before any is renamed, and each directory once.
/// An error names the file it met.
pub(crate) fn write_all(objects: &[(PathBuf, &[u8])], mode: Mode) -> io::Result<Vec<bool>> {
    let mut staged = Vec::with_capacity(objects.len());
    let mut result = stage_all(objects, &mut staged).and_then(|()| {
        let mut written = Vec::with_capacity(objects.len());
        let mut dirs: Vec<&Path> = Vec::new();
        for ((path, _), tmp) in objects.iter().zip(&staged) {
            let done = match mode {
                Mode::Replace => fs::rename(tmp, path).map(|()| true),
                Mode::Create => match fs::hard_link(tmp, path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e),
                },
            }
            .map_err(|e| naming(path, e))?;
            if done && !dirs.contains(&parent_dir(path)) {
                dirs.push(parent_dir(path));
            }
            written.push(done);
        }
        dirs.iter().try_for_each(|d| {
            File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(|e| naming(d, e))
        })?;
        Ok(written)
    });
    for tmp in &staged {
        // Gone already where it was renamed.
        if let Err(e) = fs::remove_file(tmp) {
            if e.kind() != io::ErrorKind::NotFound && result.is_ok() {
                result = Err(e);
            }
        }
        forget_temp(tmp);
    }
    result
}

/// `e`, naming `path`.
fn naming(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes each object's bytes to a synced staging file beside it, pushed onto `staged` as it
/// is made (so the caller removes every one, whatever fails).
fn stage_all(objects: &[(PathBuf, &[u8])], staged: &mut Vec<PathBuf>) -> io::Result<()> {
    for (path, bytes) in objects {
        stage(path, bytes, staged).map_err(|e| naming(path, e))?;
    }
    Ok(())
}

fn stage(path: &Path, bytes: &[u8], staged: &mut Vec<PathBuf>) -> io::Result<()> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
        // The new directory's own entry, so the object is reachable after a crash.
        File::open(parent_dir(dir))?.sync_all()?;
    }
    let mut name = path.as_os_str().to_owned();
    // All digits after the `#`: `object_store` lists it as a staging file, not an object.
    name.push(format!("#{}{:06}", std::process::id(), unique_suffix()));
    let tmp = PathBuf::from(name);
    register_temp(&tmp);
    staged.push(tmp.clone());
    let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_land_whole_and_leave_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("refs/heads/main");
        let b = dir.path().join("snapshots/x");
        let objects = [(a.clone(), &b"one"[..]), (b.clone(), &b"two"[..])];
        assert_eq!(write_all(&objects, Mode::Create).unwrap(), [true, true]);
        let again = [(a.clone(), &b"three"[..])];
        assert_eq!(write_all(&again, Mode::Create).unwrap(), [false]);
        assert_eq!(fs::read(&a).unwrap(), b"one");
        let replaced = [(a.clone(), &b"four"[..])];
        assert_eq!(write_all(&replaced, Mode::Replace).unwrap(), [true]);
        assert_eq!(fs::read(&a).unwrap(), b"four");
        assert_eq!(fs::read(&b).unwrap(), b"two");
        for d in ["refs/heads", "snapshots"] {
            let names: Vec<_> = fs::read_dir(dir.path().join(d)).unwrap().collect();
            assert_eq!(names.len(), 1, "{d}: a staging file was left");
        }
    }
}
