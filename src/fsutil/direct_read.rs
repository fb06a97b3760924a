//! Pack files read around the page cache (`O_DIRECT`).
//!
//! Packs are written directly (see `direct_write`), so a checkout finds them on the disk, not in
//! the page cache. Read through the cache, every byte costs a kernel copy into a fresh
//! page-cache page, and on a VM each fresh page faults on the host: `dd` of a 512 MiB file not
//! in the cache took 0.89 s of system time buffered (587 MB/s) and 0.02 s with `iflag=direct`
//! (1.8 GB/s). Read directly, the device fills buffers of ours that are reused.
//!
//! Files under [`DIRECT_MIN_BYTES`] are read through the page cache all the same (see there).
//! Objects are small next to a good device read, and a checkout reads them mostly in pack
//! order: a read that fits in a [`WINDOW`] fetches the aligned window around it, and the
//! process keeps its last few windows, so neighbouring objects come from memory. Larger reads
//! go through one reused buffer. Where direct reads are refused (`EINVAL`, at open or
//! at a read) the file is read through the page cache, with the same results.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use memmap2::Mmap;

use super::direct_io::{align_down, set_direct, AlignedBuf, ALIGN};

/// Files smaller than this are read through the page cache: a small pack costs one device read
/// either way, and cached it serves the next checkouts (the chain's manifests, the next
/// snapshot) for free. Read directly, a small repository's checkouts ran 2-4x slower
/// (`stage_profile digits-mlp`, 330 KB packs: every checkout read its chain's packs again).
pub(crate) const DIRECT_MIN_BYTES: u64 = 64 << 20;
/// Bytes fetched around a small read: a few chunk objects (1 MiB of tensor each, coded).
const WINDOW: usize = 1 << 20;
/// Windows kept: a chunk's delta chain reads one place in several packs in turn, on each
/// decoding thread and the one reading ahead. Few, as only large packs are read directly: the
/// kept windows and buffer count against a large checkpoint's peak memory (16 windows of 2 MiB
/// and a 16 MiB buffer raised `big_checkpoint 512M`'s peak from 24% to 38% of the file).
const WINDOWS_KEPT: usize = 2;
/// The buffer for reads larger than a window is kept up to this size.
const KEPT_SCRATCH: usize = 2 << 20;

/// A file opened for reading, directly where the file system allows.
pub(crate) struct DirectFile {
    file: File,
    direct: AtomicBool,
    /// Tells this file's windows from other files' in the process's cache; its length (packs
    /// do not change) also stops windows at the last block: direct reads past the end cost a
    /// kernel memset of the rest of the buffer.
    key: FileKey,
}

/// What names a file's bytes in the window cache: the same file opened again (a pack read by
/// one checkout after another) shares windows, and a file replaced under the same name (a
/// damaged pack fetched again) does not. Packs never change in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileKey {
    fn of(m: &std::fs::Metadata) -> FileKey {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileKey {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }
}

impl DirectFile {
    /// Opens `path` for reading, directly from [`DIRECT_MIN_BYTES`] up.
    pub(crate) fn open(path: &Path) -> io::Result<DirectFile> {
        DirectFile::open_direct_from(path, DIRECT_MIN_BYTES)
    }

    /// Opens `path` for reading, directly if it holds at least `min_bytes`.
    fn open_direct_from(path: &Path, min_bytes: u64) -> io::Result<DirectFile> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let direct = meta.len() >= min_bytes
            && match set_direct(&file, true) {
                Ok(()) => true,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
                Err(e) => return Err(e),
            };
        Ok(DirectFile {
            file,
            direct: AtomicBool::new(direct),
            key: FileKey::of(&meta),
        })
    }

    /// The file's length when it was opened.
    pub(crate) fn len(&self) -> u64 {
        self.key.len
    }

    /// The file mapped read-only, where it is read through the page cache (a directly read
    /// file's pages are not in the cache); `None` where it is read directly, is empty, has
    /// changed length or cannot be mapped. Read only the ranges [`cached`] finds in the cache:
    /// the rest through [`DirectFile::read_record_at`].
    pub(crate) fn map_buffered(&self) -> Option<Mmap> {
        if self.direct.load(Ordering::Relaxed) || self.key.len == 0 {
            return None;
        }
        // SAFETY: the mapping is read-only and only ever read as bytes. Packs are written whole
        // and renamed into place, never changed after; one truncated by another program while
        // mapped would fault this process (SIGBUS), as a mapped checkpoint being committed would.
        let map = unsafe { Mmap::map(&self.file) }.ok()?;
        (map.len() as u64 == self.key.len).then_some(map)
    }

    /// The `len` bytes at `offset`.
    pub(crate) fn read_vec_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        if !self.direct.load(Ordering::Relaxed) {
            return self.read_cached(&mut [], offset, len);
        }
        let mut out = Vec::with_capacity(len);
        self.read_with(offset, len, |bytes| out.extend_from_slice(bytes))?;
        Ok(out)
    }

    /// The `head.len()` bytes before `offset` into `head` and the `len` bytes at `offset`, as
    /// [`DirectFile::read_exact_at`] and [`DirectFile::read_vec_at`] would give them: a pack
    /// record's header and payload. Through the page cache this is one system call instead of
    /// two (a checkout reads thousands of small objects; a call costs microseconds on a VM).
    pub(crate) fn read_record_at(
        &self,
        head: &mut [u8],
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let head_at = offset
            .checked_sub(head.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "header before 0"))?;
        if self.direct.load(Ordering::Relaxed) {
            self.read_exact_at(head, head_at)?;
            return self.read_vec_at(offset, len);
        }
        self.read_cached(head, head_at, len)
    }

    /// Through the page cache, in one system call: the `head.len()` bytes at `head_at` into
    /// `head` and the `len` bytes after them into the result (straight into it, not through a
    /// buffer of its own).
    fn read_cached(&self, head: &mut [u8], head_at: u64, len: usize) -> io::Result<Vec<u8>> {
        let offset = head_at + head.len() as u64;
        // Read into the buffer's spare capacity: zeroing it first cost a pass over every byte
        // (or a page fault per page), as much as the copy itself.
        let mut out = Vec::with_capacity(len);
        let done = read_two_at(
            &self.file,
            head,
            &mut out.spare_capacity_mut()[..len],
            head_at,
        )?;
        let in_out = done.saturating_sub(head.len()).min(len);
        // SAFETY: the kernel wrote the first `in_out` bytes of the spare capacity.
        unsafe { out.set_len(in_out) };
        // A short read (rare on a regular file) is finished piece by piece.
        if done < head.len() {
            self.file
                .read_exact_at(&mut head[done..], head_at + done as u64)?;
        }
        if in_out < len {
            out.resize(len, 0);
            self.file
                .read_exact_at(&mut out[in_out..], offset + in_out as u64)?;
        }
        Ok(out)
    }

    /// Fills `buf` with the bytes at `offset`, like [`FileExt::read_exact_at`].
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_with(offset, buf.len(), |bytes| buf.copy_from_slice(bytes))
    }

    /// Hands the `len` bytes at `offset` to `take` (called once, when they are all read).
    fn read_with(&self, offset: u64, len: usize, mut take: impl FnMut(&[u8])) -> io::Result<()> {
        if len == 0 {
            take(&[]);
            return Ok(());
        }
        if self.direct.load(Ordering::Relaxed) {
            match self.read_direct(offset, len, &mut take) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    set_direct(&self.file, false)?;
                    self.direct.store(false, Ordering::Relaxed);
                }
                done => return done,
            }
        }
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        take(&buf);
        Ok(())
    }

    fn read_direct(&self, offset: u64, len: usize, take: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let start = align_down(offset);
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "read past 2^64"))?;
        let span = (end - start) as usize;
        if span > WINDOW {
            let mut scratch = Scratch::take(span);
            fill_exact(&self.file, &mut scratch, start, span)?;
            let at = (offset - start) as usize;
            take(&scratch.as_slice()[at..at + len]);
            Scratch::give_back(scratch);
            return Ok(());
        }
        if Windows::copy_kept(self.key, offset, end, take) {
            return Ok(());
        }
        let mut w = Windows::take_buffer();
        let read = self.read_window(&mut w, start, span);
        if read.is_ok() {
            let from = (offset - w.start) as usize;
            take(&w.buf.as_slice()[from..from + len]);
        }
        Windows::give_back(w);
        read
    }

    /// Reads the window at `start` into `w`; fails unless it holds the `need` bytes from
    /// `start` the caller asked for (the window is kept either way).
    fn read_window(&self, w: &mut Window, start: u64, need: usize) -> io::Result<()> {
        let to_end = self
            .key
            .len
            .saturating_sub(start)
            .next_multiple_of(ALIGN as u64);
        let want = to_end.min(WINDOW as u64) as usize;
        w.file = None;
        w.start = start;
        w.filled = fill(&self.file, &mut w.buf.as_mut_slice()[..want], start)?;
        w.file = Some(self.key);
        if w.filled < need {
            return Err(short_read());
        }
        Ok(())
    }
}

/// The bytes of one file from an aligned offset.
struct Window {
    /// The file they came from; `None` while being read.
    file: Option<FileKey>,
    start: u64,
    filled: usize,
    last_use: u64,
    buf: AlignedBuf,
}

/// The windows kept for the whole process, shared by every thread (a checkout's threads come
/// and go; buffers of their own would be fresh memory, faulted in again, every checkout).
struct Windows {
    kept: Vec<Window>,
    /// Counts window uses, to find the least recently used one.
    clock: u64,
}

static WINDOWS: Mutex<Windows> = Mutex::new(Windows {
    kept: Vec::new(),
    clock: 0,
});

impl Windows {
    fn lock() -> MutexGuard<'static, Windows> {
        WINDOWS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands `offset..end` of `file` to `take` from a kept window, if one holds it.
    fn copy_kept(file: FileKey, offset: u64, end: u64, take: &mut dyn FnMut(&[u8])) -> bool {
        let mut ws = Windows::lock();
        ws.clock += 1;
        let clock = ws.clock;
        let held = ws.kept.iter_mut().find(|w| {
            w.file == Some(file) && w.start <= offset && end <= w.start + w.filled as u64
        });
        let Some(w) = held else { return false };
        w.last_use = clock;
        let from = (offset - w.start) as usize;
        take(&w.buf.as_slice()[from..from + (end - offset) as usize]);
        true
    }

    /// A buffer to read a window into: a new one while fewer than [`WINDOWS_KEPT`] are kept,
    /// else the least recently used (taken out while it is read, so no lock is held then).
    fn take_buffer() -> Window {
        let mut ws = Windows::lock();
        if ws.kept.len() >= WINDOWS_KEPT {
            return ws.remove_lru();
        }
        Window {
            file: None,
            start: 0,
            filled: 0,
            last_use: 0,
            buf: AlignedBuf::new(WINDOW),
        }
    }

    /// Keeps `w` for later reads (dropping the least recently used beyond [`WINDOWS_KEPT`]).
    fn give_back(mut w: Window) {
        let mut ws = Windows::lock();
        ws.clock += 1;
        w.last_use = ws.clock;
        ws.kept.push(w);
        if ws.kept.len() > WINDOWS_KEPT {
            ws.remove_lru();
        }
    }

    /// Takes the least recently used window out (there is one).
    fn remove_lru(&mut self) -> Window {
        let lru = self.kept.iter().enumerate().min_by_key(|(_, w)| w.last_use);
        let i = lru.expect("windows are kept").0;
        self.kept.swap_remove(i)
    }
}

/// One buffer for reads larger than a window, kept for the process up to [`KEPT_SCRATCH`].
struct Scratch;

static SCRATCH: Mutex<Option<AlignedBuf>> = Mutex::new(None);

impl Scratch {
    /// A buffer of at least `len` bytes rounded up to [`ALIGN`].
    fn take(len: usize) -> AlignedBuf {
        let len = len.next_multiple_of(ALIGN);
        let kept = SCRATCH.lock().ok().and_then(|mut s| s.take());
        match kept {
            Some(b) if b.len() >= len => b,
            _ => AlignedBuf::new(len),
        }
    }

    fn give_back(buf: AlignedBuf) {
        if buf.len() > KEPT_SCRATCH {
            return;
        }
        if let Ok(mut s) = SCRATCH.lock() {
            if s.as_ref().is_none_or(|k| k.len() < buf.len()) {
                *s = Some(buf);
            }
        }
    }
}

/// One `preadv` of `first` then `second` (which need not be initialized) from `offset`: the
/// bytes read (possibly fewer than both lengths; 0 at the end of the file), retried when
/// interrupted.
fn read_two_at(
    file: &File,
    first: &mut [u8],
    second: &mut [std::mem::MaybeUninit<u8>],
    offset: u64,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let iov = [
        libc::iovec {
            iov_base: first.as_mut_ptr().cast(),
            iov_len: first.len(),
        },
        libc::iovec {
            iov_base: second.as_mut_ptr().cast(),
            iov_len: second.len(),
        },
    ];
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
    loop {
        // SAFETY: both iovecs describe live, exclusively borrowed buffers of their lengths;
        // the kernel only writes to them.
        let n = unsafe { libc::preadv(file.as_raw_fd(), iov.as_ptr(), 2, offset) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads from `start` (aligned) into `buf` (aligned, whole blocks) until it is full or the
/// file ends; returns the bytes read.
fn fill(file: &File, buf: &mut [u8], start: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], start + filled as u64) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                // A direct read stops short of a whole block only at the end of the file.
                if n % ALIGN != 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// [`fill`], failing unless `need` bytes were read.
fn fill_exact(file: &File, buf: &mut AlignedBuf, start: u64, need: usize) -> io::Result<()> {
    let whole = need.next_multiple_of(ALIGN);
    if fill(file, &mut buf.as_mut_slice()[..whole], start)? < need {
        return Err(short_read());
    }
    Ok(())
}

fn short_read() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer")
}

/// Whether the page cache holds every page of `map[range]` (`mincore`); false where that
/// cannot be told, and for a range outside the mapping.
///
/// A fault on a page not in the cache reads it from the disk then and there, a small read at a
/// time, where a read of the range lets the kernel read ahead. Packs are written around the
/// cache, so the first checkout after a commit finds them on the disk: mapped and faulted in,
/// `stage_profile cnn-digits` waited 29-39 ms on its pack reads, against 20-27 read.
pub(crate) fn cached(map: &Mmap, range: Range<usize>) -> bool {
    /// Pages told on the stack (an object of a 1 MiB chunk spans 257); more take a buffer.
    const ON_STACK: usize = 512;
    if range.start > range.end || range.end > map.len() {
        return false;
    }
    if range.is_empty() {
        return true;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let Some(page) = usize::try_from(page).ok().filter(|p| p.is_power_of_two()) else {
        return false;
    };
    let start = range.start & !(page - 1);
    let len = range.end - start;
    let pages = len.div_ceil(page);
    let mut stack = [0u8; ON_STACK];
    let mut heap = Vec::new();
    let resident: &mut [u8] = if pages <= ON_STACK {
        &mut stack[..pages]
    } else {
        heap.resize(pages, 0);
        &mut heap
    };
    // SAFETY: `start` is a page boundary inside the live mapping `map` (mappings start at one),
    // `len` bytes from it lie inside the mapping, and `resident` holds one byte per page.
    let ok = unsafe {
        libc::mincore(
            map.as_ptr().add(start) as *mut libc::c_void,
            len,
            resident.as_mut_ptr(),
        )
    } == 0;
    ok && resident.iter().all(|r| r & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 131 + i / 4099) as u8).collect()
    }

    fn file_of(dir: &Path, name: &str, n: usize) -> (DirectFile, Vec<u8>) {
        let path = dir.join(name);
        let data = pattern(n);
        std::fs::write(&path, &data).unwrap();
        (DirectFile::open_direct_from(&path, 0).unwrap(), data)
    }

    /// A file read through the page cache is mapped, with its bytes, and one read directly is
    /// not; [`cached`] tells the ranges the cache holds: every range of a file just read, none
    /// once its pages are dropped, and none outside the mapping.
    #[test]
    fn the_page_cache_tells_which_ranges_to_read_mapped() {
        let test = "the_page_cache_tells_which_ranges_to_read_mapped";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack");
        let data = pattern(300_000);
        std::fs::write(&path, &data).unwrap();
        File::open(&path).unwrap().sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let buffered = DirectFile::open_direct_from(&path, u64::MAX).unwrap();
        let map = buffered.map_buffered().unwrap();
        assert_eq!(&map[..], &data[..]);
        for range in [
            0..data.len(),
            5000..5001,
            4095..8193,
            7..7,
            data.len()..data.len(),
        ] {
            assert!(cached(&map, range.clone()), "{range:?}");
        }
        assert!(!cached(&map, 0..data.len() + 1));
        assert!(!cached(&map, data.len() + 4096..data.len() + 8192));
        drop(map);

        let direct = DirectFile::open_direct_from(&path, 0).unwrap();
        if direct.direct.load(Ordering::Relaxed) {
            assert!(direct.map_buffered().is_none());
        } else {
            crate::report_skip(test, "this file system refuses O_DIRECT");
        }

        // Clean pages no process maps are dropped at once on disk file systems; tmpfs keeps
        // them (they are the file).
        let file = File::open(&path).unwrap();
        let dir_name = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: a valid path, and a buffer statfs fills when it returns 0.
        let tmpfs = unsafe {
            libc::statfs(dir_name.as_ptr(), fs.as_mut_ptr()) == 0
                && fs.assume_init().f_type == libc::TMPFS_MAGIC
        };
        // SAFETY: a valid descriptor; the advice only drops clean cached pages.
        let advised = unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        assert_eq!(advised, 0);
        let map = buffered.map_buffered().unwrap();
        if tmpfs {
            crate::report_skip(test, "tmpfs keeps a file's pages after POSIX_FADV_DONTNEED");
        } else {
            assert!(!cached(&map, 0..data.len()));
            assert!(!cached(&map, 100_000..100_001));
        }
    }

    /// Every read, direct or through the page cache, returns the file's bytes.
    fn check_reads(f: &DirectFile, data: &[u8], reads: &[(u64, usize)]) {
        for &(offset, len) in reads {
            let at = offset as usize;
            if at + len <= data.len() {
                assert_eq!(f.read_vec_at(offset, len).unwrap(), &data[at..at + len]);
                let mut buf = vec![7u8; len];
                f.read_exact_at(&mut buf, offset).unwrap();
                assert_eq!(buf, &data[at..at + len], "{offset}+{len}");
            } else {
                let err = f.read_vec_at(offset, len).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{offset}+{len}");
            }
        }
    }

    #[test]
    fn reads_around_windows_and_the_end_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let w = WINDOW as u64;
        for n in [
            0,
            1,
            ALIGN - 1,
            ALIGN + 1,
            WINDOW - 1,
            WINDOW + 9,
            3 * WINDOW + 4097,
        ] {
            let (f, data) = file_of(dir.path(), &format!("f{n}"), n);
            let end = n as u64;
            let mut reads = vec![(0, 0), (0, n), (end, 0), (end, 1), (0, n + 1)];
            for at in [
                1,
                4095,
                4096,
                w - 3,
                w,
                w + 1,
                2 * w - 1,
                end.saturating_sub(5),
            ] {
                for len in [1, 10, 4096, WINDOW - 1, WINDOW + 5, 2 * WINDOW + 17] {
                    reads.push((at, len));
                }
            }
            check_reads(&f, &data, &reads);
        }
    }

    #[test]
    fn files_read_in_turn_keep_their_own_windows() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<_> = (0..WINDOWS_KEPT + 2)
            .map(|k| file_of(dir.path(), &format!("f{k}"), WINDOW + 1000 * k))
            .collect();
        for round in 0..3u64 {
            for (f, data) in &files {
                check_reads(f, data, &[(round * 777, 5000), (WINDOW as u64 - 10, 20)]);
            }
        }
    }

    #[test]
    fn a_read_past_the_last_offset_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (f, _) = file_of(dir.path(), "x", 5000);
        let err = f.read_vec_at(u64::MAX - 3, 10).unwrap_err();
        if f.direct.load(Ordering::Relaxed) {
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            assert!(err.to_string().contains("read past 2^64"), "{err}");
        }
    }

    #[test]
    fn small_files_are_read_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, pattern(5000)).unwrap();
        let f = DirectFile::open(&path).unwrap();
        assert!(!f.direct.load(Ordering::Relaxed));
        check_reads(&f, &pattern(5000), &[(0, 5000), (4095, 2)]);
    }

    /// A record's header and payload in one read, through the page cache and directly; a
    /// record past the end of the file or a header before its start is an error.
    #[test]
    fn records_are_read_with_their_header() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(5000);
        std::fs::write(dir.path().join("small"), &data).unwrap();
        let (direct, big) = file_of(dir.path(), "big", 2 * WINDOW + 5);
        let small = DirectFile::open(&dir.path().join("small")).unwrap();
        for (f, bytes) in [(&small, &data), (&direct, &big)] {
            for (offset, len) in [(9usize, 0usize), (9, 100), (4000, 1000), (4991, 9)] {
                let mut head = [0u8; 9];
                let payload = f.read_record_at(&mut head, offset as u64, len).unwrap();
                assert_eq!(&head[..], &bytes[offset - 9..offset]);
                assert_eq!(payload, bytes[offset..offset + len]);
            }
            let mut head = [0u8; 9];
            assert!(f.read_record_at(&mut head, 4, 10).is_err());
            let end = bytes.len() as u64;
            assert!(f.read_record_at(&mut head, end - 5, 10).is_err());
        }
    }

    #[test]
    fn reads_through_the_page_cache_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (f, data) = file_of(dir.path(), "x", 2 * WINDOW + 5);
        let _ = set_direct(&f.file, false);
        f.direct.store(false, Ordering::Relaxed);
        check_reads(
            &f,
            &data,
            &[(0, 10), (4095, WINDOW + 3), (2 * WINDOW as u64, 6)],
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_read_inside_the_file_returns_its_bytes(
            n in 0usize..(3 * WINDOW),
            reads in prop::collection::vec((0.0f64..1.0, 0usize..(WINDOW + 8192)), 1..12),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (f, data) = file_of(dir.path(), "x", n);
            let reads: Vec<(u64, usize)> = reads
                .into_iter()
                .map(|(at, len)| ((at * n as f64) as u64, len.min(n - (at * n as f64) as usize)))
                .collect();
            check_reads(&f, &data, &reads);
        }
    }
}
