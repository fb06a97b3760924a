//! Codecs: byte planes, the entropy stage, and the chunk object that carries them.

pub mod chunk;
pub mod context;
pub mod delta;
pub mod entropy;
pub mod error;
pub mod logquant;
pub mod lossy;
pub mod planes;
pub mod rans;
pub(crate) mod rans_avx512;
pub mod rans_v1;
pub(crate) mod sparse;
pub mod varint;

pub use entropy::CodecChoice;
pub use error::CodecResult;
