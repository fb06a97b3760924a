//! Writing the safetensors prefix; tensor bytes follow in header order.

use std::io::Write;

/// Writes the 8-byte header length and the header bytes.
pub fn write_header_prefix(out: &mut impl Write, raw_header: &[u8]) -> std::io::Result<()> {
    out.write_all(&(raw_header.len() as u64).to_le_bytes())?;
    out.write_all(raw_header)
}
