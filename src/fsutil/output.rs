//! Where a file a checkout is asked to write goes: a new file renamed into place at the path, as
//! [`AtomicFile`] writes it, replacing a symbolic link there rather than writing through it (a
//! hub cache's links lead to blobs that other revisions share, named by their content); or, where
//! the path leads to a device, FIFO or socket (`/dev/null`, `/dev/stdout`, a named pipe),
//! straight into it: a rename would replace it with a regular file (as root, `/dev/null` itself).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::AtomicFile;
use crate::error::{Error, Result};

/// Whether an output at `path` is written into as the bytes come rather than replaced by a new
/// file: a device, FIFO or socket, or this process's standard output (`-o /dev/stdout` with
/// standard output sent to a file), where a report must then not go.
pub fn is_stream(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) || is_standard_output(path)
}

/// Whether `path` leads to the file this process's standard output is (same device and inode).
fn is_standard_output(path: &Path) -> bool {
    let (Ok(at_path), Ok(fd)) = (
        fs::metadata(path),
        io::stdout().as_fd().try_clone_to_owned(),
    ) else {
        return false;
    };
    File::from(fd)
        .metadata()
        .is_ok_and(|out| (out.dev(), out.ino()) == (at_path.dev(), at_path.ino()))
}

/// An output being written; [`OutputFile::finish`] makes it whole.
pub enum OutputFile {
    /// A regular file (new or replaced), visible only once finished; `link` is what a symbolic
    /// link it replaces named.
    Replaced {
        file: AtomicFile,
        link: Option<PathBuf>,
    },
    /// A device, FIFO or socket, written as the bytes come.
    Stream(BufWriter<File>),
}

impl OutputFile {
    /// Opens `path` for a checkout's file; `direct` writes a replaced file around the page cache
    /// ([`AtomicFile::create_direct`]).
    pub fn open(path: &Path, direct: bool) -> Result<OutputFile> {
        if is_standard_output(path) {
            // Through the descriptor itself: its offset is the shell's (`>>` appends), where
            // opening `/proc/self/fd/1` anew would start at 0.
            let fd = io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io(path, e))?;
            return Ok(OutputFile::Stream(BufWriter::with_capacity(
                1 << 20,
                fd.into(),
            )));
        }
        // The kernel follows the links (`/dev/stderr` is one to `/proc/self/fd/2`, itself one to
        // a pipe that has no path): what is at the end decides whether it is a stream.
        if let Ok(m) = fs::metadata(path) {
            if m.is_dir() {
                // Renamed over, a link to a directory would become this file.
                return Err(Error::io(
                    path,
                    io::Error::from(io::ErrorKind::IsADirectory),
                ));
            }
            if !m.is_file() {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                return Ok(OutputFile::Stream(BufWriter::with_capacity(1 << 20, file)));
            }
        }
        let link = match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                Some(fs::read_link(path).map_err(|e| Error::io(path, e))?)
            }
            _ => None,
        };
        // What a checkout killed with SIGKILL (or the OOM killer) left of this file.
        super::remove_stale_temps_of(path);
        let file = match direct {
            true => AtomicFile::create_direct(path)?,
            false => AtomicFile::create(path)?,
        };
        Ok(OutputFile::Replaced { file, link })
    }

    /// What the symbolic link this output replaces named (left as it was), if it replaces one.
    pub fn replaced_link(&self) -> Option<&Path> {
        match self {
            OutputFile::Replaced { link, .. } => link.as_deref(),
            OutputFile::Stream(_) => None,
        }
    }

    /// Makes the output whole: a replaced file renamed into place, a stream flushed.
    pub fn finish(self, path: &Path) -> Result<()> {
        match self {
            OutputFile::Replaced { file, .. } => file.commit(),
            OutputFile::Stream(mut w) => w.flush().map_err(|e| Error::io(path, e)),
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            OutputFile::Replaced { file: f, .. } => f.write(buf),
            OutputFile::Stream(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            OutputFile::Replaced { file: f, .. } => f.write_all(buf),
            OutputFile::Stream(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            OutputFile::Replaced { file: f, .. } => f.flush(),
            OutputFile::Stream(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bytes` to `path`; true when they went straight into what is there.
    fn write(path: &Path, bytes: &[u8]) -> Result<bool> {
        let mut out = OutputFile::open(path, false)?;
        let stream = matches!(out, OutputFile::Stream(_));
        out.write_all(bytes).map_err(|e| Error::io(path, e))?;
        out.finish(path)?;
        Ok(stream)
    }

    /// A symbolic link is replaced by the file, never written through: what it names (a hub
    /// cache's blob, which other revisions share) keeps its bytes, and the output says what
    /// it named. A link to nothing is replaced as well; a link to a directory is refused.
    #[test]
    fn a_symbolic_link_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let (link, blob) = (dir.path().join("link"), dir.path().join("blob"));
        fs::write(&blob, b"shared").unwrap();
        std::os::unix::fs::symlink("blob", &link).unwrap();
        let mut out = OutputFile::open(&link, false).unwrap();
        assert_eq!(out.replaced_link(), Some(Path::new("blob")));
        out.write_all(b"first").unwrap();
        out.finish(&link).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(fs::read(&link).unwrap(), b"first");
        assert_eq!(fs::read(&blob).unwrap(), b"shared");
        // Now a file: written again, nothing to say.
        assert!(OutputFile::open(&link, false)
            .unwrap()
            .replaced_link()
            .is_none());

        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("nowhere", &dangling).unwrap();
        assert!(!write(&dangling, b"second").unwrap());
        assert_eq!(fs::read(&dangling).unwrap(), b"second");
        assert!(!dir.path().join("nowhere").exists());

        let to_dir = dir.path().join("to-dir");
        fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink("d", &to_dir).unwrap();
        let e = write(&to_dir, b"x").unwrap_err().to_string();
        assert!(e.contains("to-dir") && e.contains("directory"), "{e}");
        assert!(fs::symlink_metadata(&to_dir)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    /// A replaced file keeps its permissions (a private checkpoint stays private) and, where
    /// this process may give them (as root), its owner and group.
    #[test]
    fn a_replaced_file_keeps_its_mode_and_owner() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private.st");
        fs::write(&private, b"old").unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            std::os::unix::fs::chown(&private, Some(65534), Some(65534)).unwrap();
        }
        write(&private, b"new").unwrap();
        let m = fs::metadata(&private).unwrap();
        assert_eq!(fs::read(&private).unwrap(), b"new");
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
        if root {
            assert_eq!((m.uid(), m.gid()), (65534, 65534));
        }
    }

    /// A killed write's temp file of the same output is removed by the next write of it; those
    /// of other files, and of live processes, are not.
    #[test]
    fn a_killed_writes_temp_file_goes_with_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let dead = u32::MAX; // above any pid the kernel hands out
        let stale = dir.path().join(format!(".tmp-{dead}-77-out.st"));
        let other = dir.path().join(format!(".tmp-{dead}-78-other.st"));
        let live = dir
            .path()
            .join(format!(".tmp-{}-79-out.st", std::process::id()));
        for p in [&stale, &other, &live] {
            fs::write(p, b"partial").unwrap();
        }
        write(&dir.path().join("out.st"), b"whole").unwrap();
        assert!(!stale.exists());
        assert!(other.exists() && live.exists());
        assert_eq!(fs::read(dir.path().join("out.st")).unwrap(), b"whole");
    }

    /// A FIFO (and so a device, a socket) is written into, not replaced by a regular file.
    #[test]
    fn a_fifo_is_written_into() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        assert!(write(&fifo, b"streamed").unwrap());
        assert_eq!(reader.join().unwrap(), b"streamed");
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(write(Path::new("/dev/null"), b"gone").unwrap());
    }
}
