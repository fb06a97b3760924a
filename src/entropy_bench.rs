//! The rANS coders as `examples/rans_speed.rs` times them (not API): both stream widths, with
//! and without the vector kernels, on the same bytes.

use crate::codec::rans::{self, Layout, NARROW, WIDE};

/// Which stream and which code path.
#[derive(Clone, Copy, Debug)]
pub struct Coder {
    /// 32 states (entropy coder 9) instead of 4.
    pub wide: bool,
    /// The vector kernels where the CPU has them (`false`: the scalar coder).
    pub vector: bool,
}

/// Which vector kernels run on this CPU: `"AVX-512"`, `"AVX2"` or `None`.
pub fn vector_kernels() -> Option<&'static str> {
    use crate::codec::rans_vector::{best, Isa};
    best().map(|isa| match isa {
        Isa::Avx512 => "AVX-512",
        Isa::Avx2 => "AVX2",
    })
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
