//! Reading and writing safetensors files: a strict header parser with one named error per
//! problem, a memory-mapped reader, and a writer that produces the library's layout.

mod header;
mod reader;
mod writer;

pub use header::{canonical_header, check_name, header_len, parse_header};
pub use reader::SafetensorsFile;
pub use writer::write_header_prefix;
