//! An object's bytes as a reader hands them on: borrowed from a mapped pack, or owned.
//!
//! A checkout reads thousands of small objects; copying each out of the page cache into a fresh
//! buffer (a system call, a kernel copy and the buffer's first-touch faults) cost as much as
//! decoding the bytes. Packs read through the page cache are mapped instead, and an object is a
//! range of the mapping.

use std::ops::Deref;
use std::sync::Arc;

use memmap2::Mmap;

/// The bytes of one object.
pub enum ObjectBytes {
    /// Read into a buffer of its own.
    Owned(Vec<u8>),
    /// `len` bytes at `at` of a mapped pack.
    Mapped {
        map: Arc<Mmap>,
        at: usize,
        len: usize,
    },
}

impl ObjectBytes {
    /// The bytes in a buffer of their own (copied unless they are already).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            ObjectBytes::Owned(v) => v,
            other => other.to_vec(),
        }
    }
}

impl Deref for ObjectBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ObjectBytes::Owned(v) => v,
            ObjectBytes::Mapped { map, at, len } => &map[*at..*at + *len],
        }
    }
}

impl std::fmt::Debug for ObjectBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectBytes({} bytes)", self.len())
    }
}
