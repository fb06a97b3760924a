//! Large files written around the page cache (`O_DIRECT`), for packs.
//!
//! A commit writes its pack once, fsyncs it and does not read it back. Through the page cache
//! that costs a kernel copy of every byte, and on a VM whose idle memory the host has taken
//! back, a host fault for every fresh page-cache page: on the development machine `dd` of
//! 2 GiB with `conv=fsync` took 9.6 s (6.0 s of system time) buffered and 1.7 s (0.37 s) with
//! `oflag=direct`, and a 2 GiB commit spent 47% of its CPU copying its pack into the page cache
//! (BENCHMARKS.md "The CLI against the disk"). Written directly, the bytes go from an aligned
//! buffer of ours to the device.
//!
//! `O_DIRECT` needs the buffer, the file offset and the length aligned to the device's logical
//! block: every write here is whole [`ALIGN`] blocks from an aligned buffer, the last one padded
//! with zeros, and the file is cut back to its length at the end. Where a file system refuses
//! direct I/O (at open or at the first write: `EINVAL`), the file falls back to ordinary
//! buffered writes, so the bytes on disk are the same either way.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use super::direct_io::{set_direct, AlignedBuf, ALIGN};

/// Bytes written per system call (a multiple of [`ALIGN`]).
const BLOCK: usize = 4 << 20;

/// A new file (`create_new`) written sequentially in aligned blocks by a thread of its own, so
/// a direct write (which returns only once the device has the bytes) overlaps with filling
/// the next block, as writeback from the page cache would. Two blocks in all: the writer
/// waits when the disk is behind.
pub(crate) struct DirectWriter {
    block: Block,
    filled: usize,
    /// Bytes handed to the disk thread so far.
    handed: u64,
    to_disk: Option<SyncSender<(Block, usize)>>,
    free: Receiver<Block>,
    worker: Option<JoinHandle<io::Result<File>>>,
}

impl DirectWriter {
    /// Creates `path` (which must not exist), for direct writes where the file system allows.
    pub(crate) fn create_new(path: &Path) -> io::Result<Self> {
        Self::start(Disk::create_new(path)?)
    }

    /// Starts the disk thread over `disk`.
    fn start(disk: Disk) -> io::Result<Self> {
        let (to_disk, blocks) = mpsc::sync_channel(1);
        let (give_back, free) = mpsc::sync_channel(2);
        give_back.send(Block::new()).expect("receiver held");
        let worker = std::thread::Builder::new()
            .name("snapstore-pack-writer".into())
            .spawn(move || disk.run(blocks, give_back))?;
        Ok(DirectWriter {
            block: Block::new(),
            filled: 0,
            handed: 0,
            to_disk: Some(to_disk),
            free,
            worker: Some(worker),
        })
    }

    /// Hands the current block (`len` bytes of it) to the disk thread; `next` replaces it.
    fn hand_over(&mut self, len: usize, next: Block) -> io::Result<()> {
        self.handed += len as u64;
        let block = std::mem::replace(&mut self.block, next);
        let sent = self.to_disk.as_ref().map(|tx| tx.send((block, len)));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.worker_error()),
        }
    }

    /// The disk thread's error, once it has stopped early.
    fn worker_error(&mut self) -> io::Error {
        self.to_disk = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the pack writer thread stopped"),
        }
    }

    /// Writes what is buffered (the last block padded, then the file cut back to its length)
    /// and returns the file, not yet synced.
    pub(crate) fn finish(mut self) -> io::Result<File> {
        if self.filled > 0 {
            self.hand_over(self.filled, Block::empty())?;
        }
        self.to_disk = None;
        let file = match self.worker.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(io::Error::other("the pack writer thread panicked")),
        };
        if self.handed >= KEEP_BLOCKS_BELOW {
            // A large file paid for its blocks; spares would only add to the next one's peak.
            if let Ok(mut spare) = SPARE.lock() {
                spare.clear();
            }
        }
        file
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.filled);
        let at = self.filled;
        self.block.bytes_mut()[at..at + n].copy_from_slice(&data[..n]);
        self.filled += n;
        if self.filled == BLOCK {
            let next = match self.free.recv() {
                Ok(b) => b,
                Err(_) => return Err(self.worker_error()),
            };
            self.hand_over(BLOCK, next)?;
            self.filled = 0;
        }
        Ok(n)
    }

    /// A no-op: whole blocks are written as they fill, the rest by [`DirectWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for DirectWriter {
    /// An abandoned file (a failed or interrupted commit): stop the thread after its current
    /// block, so nothing writes to the file once its owner has removed it.
    fn drop(&mut self) {
        self.to_disk = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// One `BLOCK`-long aligned buffer. Dropped blocks are kept for the next pack (one writer's
/// worth): a fresh 4 MiB allocation is a new mapping whose every page faults in again, which
/// took two thirds of a small commit's pack write (`stage_profile` cnn-digits lossless:
/// 23.7 ms, 7.8 ms with glibc told to keep freed memory).
struct Block(AlignedBuf);

/// Blocks kept for reuse, at most [`SPARE_BLOCKS`].
static SPARE: Mutex<Vec<AlignedBuf>> = Mutex::new(Vec::new());
const SPARE_BLOCKS: usize = 2;
/// Files from this size up drop the spare blocks when done: faulting 8 MiB in again is nothing
/// next to writing them, and kept, the spares raised `big_checkpoint 512M`'s peak from 24.1% to
/// 25.3% of the file.
const KEEP_BLOCKS_BELOW: u64 = 64 << 20;

impl Block {
    fn new() -> Block {
        let spare = SPARE.lock().ok().and_then(|mut s| s.pop());
        Block(spare.unwrap_or_else(|| AlignedBuf::new(BLOCK)))
    }

    /// A placeholder that is never written to (what `finish` leaves behind).
    fn empty() -> Block {
        Block(AlignedBuf::default())
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.0.as_mut_slice()
    }

    fn bytes(&self, len: usize) -> &[u8] {
        &self.0.as_slice()[..len]
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if self.0.len() != BLOCK {
            return;
        }
        if let Ok(mut spare) = SPARE.lock() {
            if spare.len() < SPARE_BLOCKS {
                spare.push(std::mem::take(&mut self.0));
            }
        }
    }
}

/// The disk thread's side: the file and where the next block goes.
struct Disk {
    file: File,
    /// Bytes on disk so far; a multiple of `ALIGN` while `direct`.
    offset: u64,
    direct: bool,
}

impl Disk {
    fn create_new(path: &Path) -> io::Result<Disk> {
        let open = |flags| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = match open(libc::O_DIRECT) {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0)?, false),
            Err(e) => return Err(e),
        };
        Ok(Disk {
            file,
            offset: 0,
            direct,
        })
    }

    /// Writes blocks as they come, every one `BLOCK` long but the last, and gives each buffer
    /// back; returns the file once the sender is gone.
    fn run(
        mut self,
        blocks: Receiver<(Block, usize)>,
        free: SyncSender<Block>,
    ) -> io::Result<File> {
        for (mut block, len) in blocks {
            if len == BLOCK {
                self.write(block.bytes(len))?;
                let _ = free.send(block);
            } else {
                self.write_last(&mut block, len)?;
            }
        }
        Ok(self.file)
    }

    /// The last, partial block: padded with zeros to `ALIGN` for a direct write, then the file
    /// is cut back to its length.
    fn write_last(&mut self, block: &mut Block, len: usize) -> io::Result<()> {
        let end = self.offset + len as u64;
        if !self.direct {
            return self.write(block.bytes(len));
        }
        let padded = len.next_multiple_of(ALIGN);
        block.bytes_mut()[len..padded].fill(0);
        self.write(block.bytes(padded))?;
        self.file.set_len(end)
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.direct {
            match self.file.write_all_at(data, self.offset) {
                Ok(()) => {
                    self.offset += data.len() as u64;
                    return Ok(());
                }
                // Refused (or a short write left the rest unaligned): go on buffered. A partial
                // direct write is simply written again from the same offset.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.stop_direct()?,
                Err(e) => return Err(e),
            }
        }
        self.file.write_all_at(data, self.offset)?;
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Turns `O_DIRECT` off: later writes go through the page cache.
    fn stop_direct(&mut self) -> io::Result<()> {
        set_direct(&self.file, false)?;
        self.direct = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 131 + i / 4099) as u8).collect()
    }

    #[test]
    fn every_length_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for (k, n) in [
            0,
            1,
            4095,
            4096,
            4097,
            BLOCK - 1,
            BLOCK,
            BLOCK + 5,
            3 * BLOCK + 4096,
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("f{k}"));
            let data = pattern(n);
            let mut w = DirectWriter::create_new(&path).unwrap();
            // Odd write sizes, as a pack writes headers and payloads.
            for piece in data.chunks(12_345) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap().sync_all().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "length {n}");
        }
    }

    #[test]
    fn refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"kept").unwrap();
        assert!(DirectWriter::create_new(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
    }

    #[test]
    fn falls_back_to_buffered_writes_with_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let data = pattern(BLOCK + 777);
        let mut disk = Disk::create_new(&path).unwrap();
        let mut block = Block::new();
        block.bytes_mut().copy_from_slice(&data[..BLOCK]);
        disk.write(block.bytes(BLOCK)).unwrap();
        if disk.direct {
            disk.stop_direct().unwrap();
        }
        block.bytes_mut()[..777].copy_from_slice(&data[BLOCK..]);
        disk.write_last(&mut block, 777).unwrap();
        assert!(!disk.direct);
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn a_failed_block_write_is_reported_by_the_next_write_or_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"").unwrap();
        // Opened read-only: every write of the disk thread fails (EBADF).
        let disk = Disk {
            file: File::open(&path).unwrap(),
            offset: 0,
            direct: false,
        };
        let mut w = DirectWriter::start(disk).unwrap();
        let data = pattern(3 * BLOCK);
        let err = match w.write_all(&data) {
            Err(e) => e,
            Ok(()) => w.finish().unwrap_err(),
        };
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    }

    #[test]
    fn an_abandoned_writer_stops_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let mut w = DirectWriter::create_new(&path).unwrap();
        w.write_all(&pattern(2 * BLOCK + 10)).unwrap();
        drop(w); // joins the disk thread; the file holds whole blocks only
        assert_eq!(std::fs::metadata(&path).unwrap().len() % ALIGN as u64, 0);
    }
}
