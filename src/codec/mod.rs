//! Codecs: byte planes, the entropy stage, and the chunk object that carries them.

pub(crate) mod bits;
mod centred;
pub mod chunk;
pub mod context;
pub mod delta;
pub mod entropy;
pub mod error;
pub(crate) mod histogram;
pub mod logquant;
pub mod lossy;
pub mod planes;
pub mod rans;
mod rans_roots;
pub mod rans_v1;
pub(crate) mod rans_vector;
pub(crate) mod sparse;
pub mod varint;

pub use entropy::CodecChoice;
pub use error::CodecResult;

/// Deterministic draws and bytes for the codec's tests.
#[cfg(test)]
pub(crate) mod test_bytes {
    /// Xorshift draws from `seed` (not 0).
    pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// `len` xorshift draws, each mapped to a byte by `f`.
    pub(crate) fn drawn(len: usize, f: impl Fn(u64) -> u8) -> Vec<u8> {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        (0..len).map(|_| f(next())).collect()
    }
}
