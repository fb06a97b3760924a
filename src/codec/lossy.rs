//! Error-bounded log-quantized delta chunks (Delta-DNN).

use super::chunk::ParsedChunk;
use crate::dtype::Dtype;

/// Decodes a [`super::chunk::ChunkCodec::LogDelta`] chunk against its reference.
pub fn decode(
    _dtype: Dtype,
    _chunk: ParsedChunk,
    _reference: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    Err("log-delta chunks are not supported by this build yet".into())
}
