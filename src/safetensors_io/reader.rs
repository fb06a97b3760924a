//! A safetensors file opened through a memory map, validated before any tensor is read.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};

use super::header::{header_len, parse_header, Header, TensorInfo};
use crate::error::{Error, Result};

/// An open, validated safetensors file.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Option<Mmap>,
    header: Header,
}

impl SafetensorsFile {
    /// Opens and validates `path`. Fails with an error naming the file and the problem when the
    /// file is missing, truncated, or its header is malformed or inconsistent.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let bad = |problem| Error::BadSafetensors {
            path: path.to_path_buf(),
            problem: Box::new(problem),
        };
        if file_len < 8 {
            return Err(bad(crate::error::SafetensorsProblem::TooShort(file_len)));
        }
        // SAFETY: the map is read-only. If another process truncates the file while we read it
        // the kernel may raise SIGBUS; checkpoints being committed are not expected to change,
        // and every byte read is hashed, so a file changed under us never yields a silently wrong
        // snapshot.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let n = header_len(&map, file_len).map_err(bad)?;
        let raw = &map[8..8 + n as usize];
        let header = parse_header(raw, file_len - 8 - n).map_err(bad)?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            map: Some(map),
            header,
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
