//! What direct (`O_DIRECT`) reads and writes share: buffers at a block-aligned address, and
//! turning direct I/O on or off.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Alignment of buffers, offsets and lengths: the largest logical block size in common use.
pub(crate) const ALIGN: usize = 4096;

/// `len` bytes at an [`ALIGN`]ed address, inside a slightly larger `Vec` (so no `unsafe`).
#[derive(Default)]
pub(crate) struct AlignedBuf {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub(crate) fn new(len: usize) -> AlignedBuf {
        let buf = vec![0u8; len + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        AlignedBuf { buf, start, len }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// `n` rounded down to a multiple of [`ALIGN`].
pub(crate) fn align_down(n: u64) -> u64 {
    n & !(ALIGN as u64 - 1)
}

/// Turns `O_DIRECT` on or off for `file`. Turning it on fails with `EINVAL` where the file
/// system cannot do direct I/O; off, later reads and writes go through the page cache.
pub(crate) fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `file` for the whole call; F_GETFL/F_SETFL
    // only read and set its status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let wanted = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, wanted) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_aligned_and_hold_their_length() {
        for len in [0, 1, ALIGN - 1, ALIGN, 3 * ALIGN + 17] {
            let mut b = AlignedBuf::new(len);
            assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.as_mut_slice().len(), len);
            assert_eq!(b.len(), len);
        }
        assert_eq!(align_down(4097), 4096);
        assert_eq!(align_down(4095), 0);
    }
}
