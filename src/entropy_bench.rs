//! The rANS coders as `examples/rans_speed.rs` times them (not API): both stream widths, with
//! and without the vector kernels, on the same bytes.

use crate::codec::rans::{self, Layout, NARROW, WIDE};

/// Which stream and which code path.
#[derive(Clone, Copy, Debug)]
pub struct Coder {
    /// 32 states (entropy coder 9) instead of 4.
    pub wide: bool,
    /// The AVX-512 kernels where the CPU has them (`false`: the scalar coder).
    pub vector: bool,
}

/// Whether the vector kernels run on this CPU.
pub fn vector_kernels_available() -> bool {
    crate::codec::rans_avx512::available()
}

/// The stream `coder` writes for `data` (`None`: empty input).
pub fn encode(coder: Coder, data: &[u8]) -> Option<Vec<u8>> {
    let counts = rans::histogram(data);
    if coder.wide {
        rans::encode_with::<WIDE>(data, &counts, usize::MAX, coder.vector)
    } else {
        rans::encode_with::<NARROW>(data, &counts, usize::MAX, coder.vector)
    }
}

/// Decodes `len` symbols of a stream `coder` wrote.
pub fn decode(coder: Coder, stream: &[u8], len: usize) -> Option<Vec<u8>> {
    let out = if coder.wide {
        rans::decode_with::<WIDE>(stream, len, Layout::Roots, coder.vector)
    } else {
        rans::decode_with::<NARROW>(stream, len, Layout::Roots, coder.vector)
    };
    out.ok()
}
