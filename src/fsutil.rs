//! Durable file writes: temp file in the target directory, write, fsync, rename, fsync the
//! directory. A crash at any point leaves either the old state or the new file, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Prefix of temporary files; `gc` and the next commit remove stale ones.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Test hook: when set to N, writes through `AtomicFile` fail with "no space left on device"
/// once N bytes have been written in this process. Lets the test suite prove that a full disk
/// leaves the repository unchanged without needing a small filesystem.
pub const FAIL_WRITES_ENV: &str = "SNAPSTORE_TEST_FAIL_WRITES_AFTER";

static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Test hook: when set to N, the N-th durable I/O step of this process (1-based) fails. The steps
/// are every create, write, fsync and rename of [`AtomicFile`], every ref-log append and fsync,
/// and every index update and flush, so a test can fail each one in turn and check that the
/// repository is as it was.
pub const FAIL_IO_AT_ENV: &str = "SNAPSTORE_TEST_FAIL_IO_AT";

static IO_STEPS: AtomicU64 = AtomicU64::new(0);

/// Counts one durable I/O step (`what` names it in the injected error).
pub(crate) fn io_step(what: &str) -> io::Result<()> {
    static FAIL_AT: OnceLock<Option<u64>> = OnceLock::new();
    let fail_at = *FAIL_AT.get_or_init(|| {
        std::env::var(FAIL_IO_AT_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    });
    let Some(n) = fail_at else {
        return Ok(());
    };
    if IO_STEPS.fetch_add(1, Ordering::Relaxed) + 1 == n {
        return Err(io::Error::other(format!(
            "injected I/O failure at step {n} ({what})"
        )));
    }
    Ok(())
}

fn injected_failure(len: usize) -> io::Result<()> {
    let Some(limit) = std::env::var(FAIL_WRITES_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Ok(());
    };
    let before = WRITTEN.fetch_add(len as u64, Ordering::Relaxed);
    if before + len as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            "no space left on device (injected)",
        ));
    }
    Ok(())
}

/// A file being written that becomes visible under its final name only on [`commit`].
///
/// [`commit`]: AtomicFile::commit
pub struct AtomicFile {
    tmp: PathBuf,
    target: PathBuf,
    file: Option<io::BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing a file that will become `target`.
    pub fn create(target: &Path) -> Result<Self> {
        let dir = parent_dir(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            "{TEMP_PREFIX}{}-{}-{name}",
            std::process::id(),
            unique_suffix()
        ));
        let file = io_step("create")
            .and_then(|_| OpenOptions::new().write(true).create_new(true).open(&tmp))
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicFile {
            tmp,
            target: target.to_path_buf(),
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Path of the temporary file.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Changes the name the file will get on commit (for content-named files whose name is
    /// known only at the end).
    pub fn retarget(&mut self, target: &Path) {
        self.target = target.to_path_buf();
    }

    /// Flushes, fsyncs, renames into place and fsyncs the directory.
    pub fn commit(mut self) -> Result<()> {
        io_step("flush").map_err(|e| Error::io(&self.tmp, e))?;
        let writer = self.file.take().expect("file present until commit");
        let staged = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| io_step("fsync").and_then(|_| file.sync_all()))
            .and_then(|_| io_step("rename"));
        if let Err(e) = staged {
            let _ = fs::remove_file(&self.tmp);
            return Err(Error::io(&self.tmp, e));
        }
        let replaced = self.target.exists();
        if let Err(e) = fs::rename(&self.tmp, &self.target) {
            let _ = fs::remove_file(&self.tmp);
            return Err(Error::io(&self.target, e));
        }
        let synced = sync_dir(parent_dir(&self.target));
        if synced.is_err() && !replaced {
            // Reported as failed, so it must not stay visible (a pack nobody records).
            let _ = fs::remove_file(&self.target);
        }
        synced
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        injected_failure(buf.len())?;
        io_step("write")?;
        self.file.as_mut().expect("file present").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("file present").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            // Not committed: the temp file is garbage.
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The directory holding `path` ("." for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    io_step("directory fsync")
        .and_then(|_| File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Writes a whole small file atomically.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(target)?;
    f.write_all(bytes).map_err(|e| Error::io(target, e))?;
    f.commit()
}

/// True when the process that created temp file `name` may still be writing it. The pid is in
/// the name; where `/proc` is absent we cannot tell, so we assume it is alive.
fn owner_alive(name: &str) -> bool {
    let pid = name
        .strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse::<u32>().ok());
    match pid {
        Some(pid) if Path::new("/proc/self").exists() => {
            pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => true,
    }
}

/// Removes temp files in `dir` left by processes that no longer run (killed mid-write).
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        if owner_alive(&name.to_string_lossy()) {
            continue;
        }
        if fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn unique_suffix() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    (COUNTER.fetch_add(1, Ordering::Relaxed) << 32) ^ nanos
}
