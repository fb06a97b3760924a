//! Buffers a large in-memory checkout writes a tensor into, their pages mapped in one call.
//!
//! A tensor of many chunks is copied chunk by chunk into one fresh buffer, and the first write
//! to each of its pages is a fault: the kernel zeroes and maps one 4 KiB page per trap. On the
//! development VM touching 1 GiB that way took 423-510 ms, populating it at once 263-334 ms (a C
//! loop of each, several runs); populated so, the tiled 1 GiB checkpoint's checkout spent
//! 771-809 ms of CPU handing its tensors on instead of 962-1,000 (BENCHMARKS.md "Caches sized to
//! the machine, checkouts into place", "A large tensor's output buffer populated in one call").

/// Below this a buffer is left to fault in as written: a few pages' traps cost less than the
/// system call, and small tensors are one chunk handed on without a copy anyway.
const POPULATE_FROM: usize = 4 << 20;

/// An empty buffer with room for `len` bytes, populated when large. A kernel without
/// `MADV_POPULATE_WRITE` (before Linux 5.14) or another system leaves it to fault in as before.
pub(super) fn with_capacity(len: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(len);
    if len >= POPULATE_FROM {
        populate(buf.spare_capacity_mut());
    }
    buf
}

#[cfg(target_os = "linux")]
fn populate(spare: &mut [std::mem::MaybeUninit<u8>]) {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let Some(page) = usize::try_from(page).ok().filter(|p| p.is_power_of_two()) else {
        return;
    };
    // madvise takes whole pages: the ones wholly inside the buffer.
    let at = spare.as_mut_ptr() as usize;
    let start = at.next_multiple_of(page);
    let end = (at + spare.len()) & !(page - 1);
    if end <= start {
        return;
    }
    // SAFETY: [start, end) is page-aligned and inside `spare`, memory this buffer owns and
    // nothing else refers to; populating maps its pages writable without changing what they
    // hold (nothing initialized yet). A failure leaves the pages to fault in when written.
    unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            end - start,
            libc::MADV_POPULATE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn populate(_: &mut [std::mem::MaybeUninit<u8>]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_populated_buffer_holds_what_is_written() {
        for len in [0, 1, POPULATE_FROM - 1, POPULATE_FROM, POPULATE_FROM + 4097] {
            let mut buf = with_capacity(len);
            assert!(buf.capacity() >= len);
            buf.extend((0..len).map(|i| (i % 251) as u8));
            assert!(buf.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        }
    }
}
