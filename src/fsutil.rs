//! Durable file writes: temp file in the target directory, write, fsync, rename, fsync the
//! directory. A crash at any point leaves either the old state or the new file, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::error::{Error, Result};

mod direct_io;
mod direct_read;
mod direct_write;
pub(crate) mod input_maps;
mod output;
mod signals;
pub(crate) use direct_read::{cached, DirectFile, DIRECT_MIN_BYTES};
use direct_write::DirectWriter;
pub use output::{is_stream, OutputFile};
pub use signals::{remove_temps_on_signals, stop_on_signals};

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

/// Temp files and directories this process is writing; [`remove_temps_on_signals`] removes
/// them when the process is interrupted.
static TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn temps() -> MutexGuard<'static, Vec<PathBuf>> {
    TEMPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a temp file or directory to remove if a signal ends the process. Call it before
/// creating the path, so no moment exists where it is on disk but unknown.
pub(crate) fn register_temp(path: &Path) {
    temps().push(path.to_path_buf());
}

/// Forgets a temp path (renamed into place or removed).
pub(crate) fn forget_temp(path: &Path) {
    let mut t = temps();
    if let Some(i) = t.iter().rposition(|p| p == path) {
        t.swap_remove(i);
    }
}

/// Removes every temp file and directory this process has registered and not yet finished
/// (what an interrupted commit or checkout leaves behind). Returns how many were removed.
pub fn remove_registered_temps() -> usize {
    remove_all(&mut temps())
}

fn remove_all(list: &mut Vec<PathBuf>) -> usize {
    let mut removed = 0;
    for p in list.drain(..) {
        let gone = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        removed += usize::from(gone.is_ok());
    }
    removed
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
    file: Option<Sink>,
}

/// How an [`AtomicFile`]'s bytes reach the disk.
enum Sink {
    Buffered(io::BufWriter<File>),
    /// Around the page cache, for large files written once (packs).
    Direct(DirectWriter),
}

impl Sink {
    fn into_file(self) -> io::Result<File> {
        match self {
            Sink::Buffered(w) => w.into_inner().map_err(|e| e.into_error()),
            Sink::Direct(w) => w.finish(),
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Buffered(w) => w,
            Sink::Direct(w) => w,
        }
    }
}

impl AtomicFile {
    /// Starts writing a file that will become `target`.
    pub fn create(target: &Path) -> Result<Self> {
        Self::create_with(target, |tmp| {
            let file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
            Ok(Sink::Buffered(io::BufWriter::with_capacity(1 << 20, file)))
        })
    }

    /// [`AtomicFile::create`] for a large file written once: its bytes bypass the page cache
    /// where the file system allows (`O_DIRECT`, see `fsutil/direct.rs`).
    pub fn create_direct(target: &Path) -> Result<Self> {
        Self::create_with(target, |tmp| {
            DirectWriter::create_new(tmp).map(Sink::Direct)
        })
    }

    fn create_with(target: &Path, open: impl FnOnce(&Path) -> io::Result<Sink>) -> Result<Self> {
        let dir = parent_dir(target);
        let tmp = temp_sibling(target);
        register_temp(&tmp);
        let file = io_step("create").and_then(|_| open(&tmp)).map_err(|e| {
            forget_temp(&tmp);
            // Name what the user can fix, not our temp file.
            if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() {
                let why = format!("no such directory (to write {})", target.display());
                return Error::io(dir, io::Error::new(io::ErrorKind::NotFound, why));
            }
            let why = format!("{e} (creating its temp file in {})", dir.display());
            Error::io(target, io::Error::new(e.kind(), why))
        })?;
        Ok(AtomicFile {
            tmp,
            target: target.to_path_buf(),
            file: Some(file),
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
        io_step("flush").map_err(|e| Error::io(&self.target, e))?;
        let writer = self.file.take().expect("file present until commit");
        let staged = writer
            .into_file()
            .and_then(|file| take_owner_and_mode(&file, &self.target).map(|_| file))
            .and_then(|file| {
                let _t = crate::profile::time(crate::profile::Stage::Fsync);
                io_step("fsync").and_then(|_| file.sync_all())
            })
            .and_then(|_| io_step("rename"));
        if let Err(e) = staged {
            let _ = fs::remove_file(&self.tmp);
            forget_temp(&self.tmp);
            // The file the caller asked for: the temp file is gone, and ours to know of.
            return Err(Error::io(&self.target, e));
        }
        let replaced = self.target.exists();
        let renamed = fs::rename(&self.tmp, &self.target);
        if renamed.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        forget_temp(&self.tmp);
        if let Err(e) = renamed {
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

/// Gives `file` the permissions of the regular file it is about to replace at `target` (a
/// private `0600` checkpoint stays private), and its owner and group where this process may
/// (root may; others keep their own user, and a group of theirs): as a file written in place
/// would keep them.
fn take_owner_and_mode(file: &File, target: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(old) = fs::symlink_metadata(target) else {
        return Ok(());
    };
    if !old.is_file() {
        return Ok(());
    }
    // Before the mode: a change of owner clears set-id bits.
    if std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())).is_err() {
        let _ = std::os::unix::fs::fchown(file, None, Some(old.gid()));
    }
    file.set_permissions(old.permissions())
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        injected_failure(buf.len())?;
        io_step("write")?;
        self.file
            .as_mut()
            .expect("file present")
            .writer()
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("file present").writer().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            // Not committed: the temp file is garbage.
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
            forget_temp(&self.tmp);
        }
    }
}

/// Whether `dir` is a directory holding anything (hidden entries too): a clone or a first push
/// takes only a new or empty one.
pub(crate) fn holds_entries(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// The directory holding `path` ("." for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let _t = crate::profile::time(crate::profile::Stage::Fsync);
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
/// the name; where `/proc` is absent we cannot tell, so we assume it is alive. A zombie (killed,
/// not yet reaped: its parent, `timeout -s KILL` say, exited first) writes nothing: a clone
/// retried at once kept the killed one's temp for good.
fn owner_alive(name: &str) -> bool {
    let pid = name
        .strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse::<u32>().ok());
    match pid {
        Some(pid) if Path::new("/proc/self").exists() => {
            pid == std::process::id() || process_runs(pid)
        }
        _ => true,
    }
}

/// Whether process `pid` exists and is not a zombie (`/proc/PID/stat`: `PID (COMM) STATE ...`;
/// the command name may hold spaces and parentheses, so the state follows the last `)`).
fn process_runs(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Path::new(&format!("/proc/{pid}")).exists();
    };
    let state = stat
        .rfind(')')
        .and_then(|at| stat[at + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X" | "x"))
}

/// Temp files in `dir` left by processes that no longer run (killed mid-write), with their
/// sizes.
pub fn stale_temps(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(TEMP_PREFIX) && !owner_alive(&name)
        })
        .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
        .collect()
}

/// Removes temp files in `dir` left by processes that no longer run (killed mid-write).
/// Returns how many and how many bytes were removed.
pub fn remove_stale_temps(dir: &Path) -> (usize, u64) {
    let mut removed = (0, 0);
    for (path, len) in stale_temps(dir) {
        if fs::remove_file(&path).is_ok() {
            removed.0 += 1;
            removed.1 += len;
        }
    }
    removed
}

/// A file with no name in the directory holding `beside` (`O_TMPFILE`): its space goes back
/// when it is closed, whatever ends the process. Where the file system cannot make one, a temp
/// file is created there (registered, so Ctrl-C removes it) and unlinked at once.
pub(crate) fn unnamed_file_beside(beside: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = parent_dir(beside);
    let unnamed = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir);
    if let Ok(file) = unnamed {
        return Ok(file);
    }
    let tmp = temp_sibling(beside);
    register_temp(&tmp);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp);
    let _ = fs::remove_file(&tmp);
    forget_temp(&tmp);
    file
}

/// A temp name beside `target`, `.tmp-PID-SUFFIX-NAME`: a process's own, and read back by
/// [`remove_stale_temps_of`] once that process no longer runs.
pub(crate) fn temp_sibling(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(target).join(format!(
        "{TEMP_PREFIX}{}-{}-{name}",
        std::process::id(),
        unique_suffix()
    ))
}

/// Removes the temp files (or directories: a clone's) an earlier, killed write of `target` left
/// beside it (named for it, by a process that no longer runs): a checkout's output directory is
/// the user's, so only those.
pub(crate) fn remove_stale_temps_of(target: &Path) {
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    for (path, _) in stale_temps(parent_dir(target)) {
        // `.tmp-PID-SUFFIX-NAME`, as `AtomicFile` names them.
        let of_target = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.splitn(3, '-').nth(2))
            == Some(name.as_str());
        if of_target && path.is_dir() {
            let _ = fs::remove_dir_all(&path);
        } else if of_target {
            let _ = fs::remove_file(&path);
        }
    }
}

pub(crate) fn unique_suffix() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    (COUNTER.fetch_add(1, Ordering::Relaxed) << 32) ^ nanos
}

#[cfg(test)]
mod tests {
    use super::process_runs;

    /// A killed process its parent has not reaped yet is a zombie: it writes nothing, so its
    /// temp files are stale.
    #[test]
    fn a_zombie_is_not_running() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(process_runs(child.id()));
        child.kill().unwrap();
        // Not reaped (no wait): it stays a zombie until then.
        let stat = format!("/proc/{}/stat", child.id());
        let mut tries = 0;
        while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z")) && tries < 500 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            tries += 1;
        }
        assert!(
            std::path::Path::new(&stat).exists(),
            "still there, unreaped"
        );
        assert!(!process_runs(child.id()));
        child.wait().unwrap();
    }
}
