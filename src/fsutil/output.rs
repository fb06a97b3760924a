//! Where a file a checkout is asked to write goes: a new file renamed into place, as
//! [`AtomicFile`] writes it, at the path or at the file a symbolic link there names (the link
//! stays); or, where the path is a device, FIFO or socket (`/dev/null`, `/dev/stdout`, a named
//! pipe), straight into it: a rename would replace it with a regular file (as root, `/dev/null`
//! itself).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::AtomicFile;
use crate::error::{Error, Result};

/// Links followed before giving up, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// An output being written; [`OutputFile::finish`] makes it whole.
pub enum OutputFile {
    /// A regular file (new or replaced), visible only once finished.
    Replaced(AtomicFile),
    /// A device, FIFO or socket, written as the bytes come.
    Stream(BufWriter<File>),
}

impl OutputFile {
    /// Opens `path` for a checkout's file; `direct` writes a replaced file around the page cache
    /// ([`AtomicFile::create_direct`]).
    pub fn open(path: &Path, direct: bool) -> Result<OutputFile> {
        // The kernel follows the links first (`/dev/stdout` is one to `/proc/self/fd/1`, itself
        // one to a pipe that has no path): what is at the end decides.
        let target = match fs::metadata(path) {
            Ok(m) if !m.is_file() && !m.is_dir() => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                return Ok(OutputFile::Stream(BufWriter::with_capacity(1 << 20, file)));
            }
            Ok(m) if m.is_file() => fs::canonicalize(path).map_err(|e| Error::io(path, e))?,
            _ => followed(path)?,
        };
        // What a checkout killed with SIGKILL (or the OOM killer) left of this file.
        super::remove_stale_temps_of(&target);
        if direct {
            Ok(OutputFile::Replaced(AtomicFile::create_direct(&target)?))
        } else {
            Ok(OutputFile::Replaced(AtomicFile::create(&target)?))
        }
    }

    /// Makes the output whole: a replaced file renamed into place, a stream flushed.
    pub fn finish(self, path: &Path) -> Result<()> {
        match self {
            OutputFile::Replaced(file) => file.commit(),
            OutputFile::Stream(mut w) => w.flush().map_err(|e| Error::io(path, e)),
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            OutputFile::Replaced(f) => f.write(buf),
            OutputFile::Stream(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            OutputFile::Replaced(f) => f.write_all(buf),
            OutputFile::Stream(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            OutputFile::Replaced(f) => f.flush(),
            OutputFile::Stream(w) => w.flush(),
        }
    }
}

/// `path` with every symbolic link at its end followed, for a path that does not lead to a file:
/// a dangling link leads to the path it names, which the output then creates.
fn followed(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let next = fs::read_link(&p).map_err(|e| Error::io(&p, e))?;
                // A relative link names a path from the link's own directory.
                p = match p.parent() {
                    Some(dir) => dir.join(next),
                    None => next,
                };
            }
            _ => return Ok(p),
        }
    }
    let loop_error = io::Error::other("too many levels of symbolic links");
    Err(Error::io(path, loop_error))
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

    /// A link keeps being a link, and the file it names (existing or not) gets the bytes.
    #[test]
    fn a_symbolic_link_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (link, target) = (dir.path().join("link"), dir.path().join("target"));
        std::os::unix::fs::symlink("target", &link).unwrap();
        assert!(!write(&link, b"first").unwrap());
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"first");
        assert!(!write(&link, b"second").unwrap());
        assert_eq!(fs::read(&target).unwrap(), b"second");
        // A chain of links, and a loop.
        std::os::unix::fs::symlink(&link, dir.path().join("outer")).unwrap();
        write(&dir.path().join("outer"), b"third").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"third");
        std::os::unix::fs::symlink("b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        let e = write(&dir.path().join("a"), b"x").unwrap_err().to_string();
        assert!(e.contains("too many levels"), "{e}");
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
