//! A safetensors file opened through a memory map, validated before any tensor is read.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};

use super::header::{header_len, parse_header, Header, TensorInfo};
use crate::error::{Error, Result};
use crate::fsutil::input_maps;

/// An open, validated safetensors file.
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    stamp: Stamp,
    /// Registered for repair while the map lives (declared first: dropped before the map).
    watched: input_maps::Watched,
    map: Option<Mmap>,
    header: Header,
}

/// What changes when a file is written in place or truncated: its length and modification time
/// (to the nanosecond the file system keeps). Not its status-change time, which a rename over
/// the path also moves (the open file loses its link) while what was read stays whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

impl SafetensorsFile {
    /// Opens and validates `path`. Fails with an error naming the file and the problem when the
    /// file is missing, truncated, or its header is malformed or inconsistent.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let stamp = Stamp::of(&file.metadata().map_err(|e| Error::io(path, e))?);
        let file_len = stamp.len;
        let bad = |problem| Error::BadSafetensors {
            path: path.to_path_buf(),
            problem: Box::new(problem),
        };
        if file_len < 8 {
            return Err(bad(crate::error::SafetensorsProblem::TooShort(file_len)));
        }
        // SAFETY: the map is read-only. If another process truncates the file while we read it
        // the kernel raises SIGBUS: the command-line tool's handler gives the read zeros and
        // marks the map (`input_maps`), which `check_unchanged` then refuses, as it refuses a
        // file written in place, before a commit lands.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let watched = input_maps::watch(&map);
        let n = header_len(&map, file_len).map_err(bad)?;
        let raw = &map[8..8 + n as usize];
        let header = parse_header(raw, file_len - 8 - n).map_err(bad)?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            file,
            stamp,
            watched,
            map: Some(map),
            header,
        })
    }

    /// Fails, naming the file, when it was written, truncated or replaced in place since it was
    /// opened: the bytes read from the map since then may mix two versions (its hash from one,
    /// its coding from the other), so a commit must not land them. A writer that replaces the
    /// file by a rename leaves the open one, and this map, as they were.
    ///
    /// `undone` says in the error what did not happen (`stored`, `compared`, ...).
    pub fn check_unchanged(&self, undone: &'static str) -> Result<()> {
        let now = Stamp::of(&self.file.metadata().map_err(|e| Error::io(&self.path, e))?);
        let damaged = self.watched.damaged();
        if now == self.stamp && !damaged {
            return Ok(());
        }
        let what = if damaged && now.len < self.stamp.len {
            format!(
                "truncated: {} bytes when opened, {} now",
                self.stamp.len, now.len
            )
        } else if damaged {
            // The kernel could not read a page: an I/O error, or truncated and grown again.
            "a page of it could not be read".to_string()
        } else if now.len != self.stamp.len {
            format!("{} bytes when opened, {} now", self.stamp.len, now.len)
        } else {
            "written in place".to_string()
        };
        Err(Error::InputChanged {
            path: self.path.clone(),
            what,
            undone,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The bytes of one tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.header.data_start() + info.start) as usize;
        let end = (self.header.data_start() + info.end) as usize;
        self.map.as_ref().map_or(&[][..], |m| &m[start..end])
    }

    /// Tells the kernel the given tensor bytes will not be read again, so the pages leave this
    /// process's resident set and memory stays bounded by the working window.
    pub fn release(&self, info: &TensorInfo, range: std::ops::Range<usize>) {
        let Some(map) = &self.map else { return };
        let page = 4096usize;
        let base = (self.header.data_start() + info.start) as usize;
        // Only whole pages inside the range, so nothing still needed is dropped.
        let start = (base + range.start).next_multiple_of(page);
        let end = ((base + range.end) / page) * page;
        if end > start {
            // SAFETY: the mapping is a read-only shared file mapping; MADV_DONTNEED only drops
            // our copy of the pages, and a later read faults them back in from the file.
            let _ = unsafe {
                map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-tensor F32 file of `values`.
    fn file_of(values: &[f32]) -> Vec<u8> {
        let header = format!(
            r#"{{"w":{{"dtype":"F32","shape":[{}],"data_offsets":[0,{}]}}}}"#,
            values.len(),
            4 * values.len()
        );
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        out
    }

    /// A file written in place (same length) or truncated after it was opened is refused by
    /// name; one left alone, or replaced by a rename, is not.
    #[test]
    fn a_file_changed_after_opening_is_refused() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.safetensors");
        std::fs::write(&path, file_of(&[1.0; 1000])).unwrap();

        let f = SafetensorsFile::open(&path).unwrap();
        f.check_unchanged("stored").unwrap();
        // A rename leaves the open file (and the map) as they were.
        let other = dir.path().join("next.safetensors");
        std::fs::write(&other, file_of(&[2.0; 1000])).unwrap();
        std::fs::rename(&other, &path).unwrap();
        f.check_unchanged("stored").unwrap();
        drop(f);

        let f = SafetensorsFile::open(&path).unwrap();
        // Past the coarse clock tick file systems stamp writes with.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        w.seek(SeekFrom::End(-4)).unwrap();
        w.write_all(&3f32.to_le_bytes()).unwrap();
        drop(w);
        let e = f.check_unchanged("stored").unwrap_err();
        assert!(
            matches!(&e, Error::InputChanged { path: p, .. } if *p == path),
            "{e}"
        );
        assert!(e.to_string().contains("written in place"), "{e}");
        drop(f);

        let f = SafetensorsFile::open(&path).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        let e = f.check_unchanged("stored").unwrap_err().to_string();
        let len = file_of(&[1.0; 1000]).len();
        assert!(
            e.contains(&format!("{len} bytes when opened, 100 now")),
            "{e}"
        );
    }

    /// A page the SIGBUS handler replaced (a read that failed: here the repair is called by
    /// hand, the file unchanged) fails the check, naming the file and what the compare skipped.
    #[test]
    fn a_repaired_page_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.safetensors");
        std::fs::write(&path, file_of(&[1.0; 4096])).unwrap();
        let f = SafetensorsFile::open(&path).unwrap();
        let data = f.tensor_bytes(&f.header().tensors[0]);
        assert!(input_maps::replace_faulting_page(
            data.as_ptr() as usize + 8192
        ));
        let e = f.check_unchanged("compared").unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(
            e.contains("(a page of it could not be read): nothing was compared"),
            "{e}"
        );
    }
}
