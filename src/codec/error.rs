//! The codec's one error type: what failed while coding or decoding a chunk, by kind. The repo
//! turns it into the crate's [`crate::Error`] (naming the tensor and chunk) at its boundary.

use crate::dtype::Dtype;

use super::logquant::QuantError;

/// Why the codec refused or failed (hostile input is always an error, never a panic).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    // ---- truncated or malformed bytes ----
    /// An object or section ends before a field it declares.
    #[error("truncated: needs {needs} bytes at offset {offset}")]
    Truncated {
        /// Bytes the field needs.
        needs: usize,
        /// Where the field starts.
        offset: usize,
    },
    /// A varint runs past the end of its bytes.
    #[error("truncated varint")]
    TruncatedVarint,
    /// A varint longer than 64 bits.
    #[error("varint over 64 bits")]
    VarintOverflow,
    /// Bytes left over after the last field.
    #[error("{count} trailing bytes after {after}")]
    TrailingBytes {
        /// How many.
        count: usize,
        /// After what (`the last section`, `rANS data`).
        after: &'static str,
    },
    /// A one-byte tag (chunk codec, entropy coder, transform, rounding, bound kind) this version
    /// does not know.
    #[error("unknown {what} {value}")]
    UnknownTag {
        /// Which tag.
        what: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A chunk format version this build does not read.
    #[error("chunk format {found} is not supported (expected {expected})")]
    UnsupportedFormat {
        /// The version found.
        found: u8,
        /// The version this build reads.
        expected: u8,
    },
    /// A declared length over what a chunk may hold (checked before allocating).
    #[error("declared length {declared} is over the {limit} limit")]
    LengthOverLimit {
        /// The length declared.
        declared: u64,
        /// The limit.
        limit: usize,
    },
    /// A chunk whose elements are 0 bytes wide.
    #[error("element width 0")]
    ZeroElementWidth,
    /// A parameter section of the wrong length.
    #[error("bad parameter section")]
    BadParameterSection,
    /// A code stream whose first byte names no stream form.
    #[error("code stream without a valid form byte")]
    BadCodeStreamForm,
    /// Exception positions that do not fit a `u32`.
    #[error("exception position overflows")]
    PositionOverflow,
    /// A zero run in a code stream past the chunk's elements.
    #[error("zero run goes past the chunk")]
    RunPastChunk,
    /// A centred code stream's code (its centre plus a distance) outside the `i32` codes.
    #[error("centred code {0} is outside the 32-bit code range")]
    CentredCodeRange(i64),
    /// A code stream with more codes than the chunk has elements.
    #[error("more codes than elements")]
    TooManyCodes,

    // ---- rANS streams ----
    /// A rANS stream ends in its table, its state or its data.
    #[error("rANS stream truncated in {part}")]
    RansTruncated {
        /// `table`, `state` or `data`.
        part: &'static str,
    },
    /// A rANS stream declares another symbol count than its section.
    #[error("rANS stream holds {count} symbols, expected {expected}")]
    RansSymbolCount {
        /// Symbols declared.
        count: u64,
        /// Symbols the section holds.
        expected: usize,
    },
    /// A zero, oversized or repeated frequency, or a compact table whose symbols disagree with
    /// its count (bitmap) or are not in ascending order (list).
    #[error("bad rANS frequency table")]
    RansBadTable,
    /// A roots table (see `codec::rans_roots`) that no encoder writes.
    #[error("bad rANS roots table: {reason}")]
    RansBadRoots {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Frequencies that do not sum to the table size.
    #[error("rANS frequencies do not sum to the table size")]
    RansTableSum,
    /// A starting state the encoder never writes.
    #[error("rANS stream starts with a bad state")]
    RansBadState,
    /// The decoder did not end in the encoder's initial states.
    #[error("rANS stream does not end where it started (wrong length?)")]
    RansBadEnd,

    // ---- sparse sections ----
    /// A sparse section ends in its header, its other bytes or its gaps.
    #[error("sparse section truncated in {part}")]
    SparseTruncated {
        /// `header`, `other bytes` or `gaps`.
        part: &'static str,
    },
    /// A sparse section whose gaps place a byte past its end.
    #[error("a sparse section's gaps go past the end of the section")]
    SparsePastSection,

    // ---- entropy coders ----
    /// Zstd refused a section.
    #[error("zstd: {0}")]
    Zstd(#[source] std::io::Error),
    /// LZMA refused a section.
    #[error("lzma: {0}")]
    Lzma(#[source] std::io::Error),

    // ---- lengths that do not agree ----
    /// A section that decompresses to another length than it declares.
    #[error("section decodes to {len} bytes, expected {expected}")]
    SectionLength {
        /// Bytes decoded.
        len: usize,
        /// Bytes declared.
        expected: usize,
    },
    /// Another number of sections than the chunk's coding holds.
    #[error("{count} sections, expected {expected}")]
    SectionCount {
        /// Sections found.
        count: usize,
        /// Sections expected.
        expected: usize,
    },
    /// An exact chunk with another number of byte planes than its element width.
    #[error("{sections} sections for element width {unit}")]
    PlaneCount {
        /// Sections found.
        sections: usize,
        /// Element width.
        unit: usize,
    },
    /// A byte plane of the wrong length.
    #[error("plane {plane} holds {len} bytes, expected {expected}")]
    PlaneLength {
        /// Which plane.
        plane: usize,
        /// Its bytes.
        len: usize,
        /// The chunk's element count.
        expected: usize,
    },
    /// A lattice chunk with too few sections.
    #[error("{0} sections do not fit lattice codes")]
    LatticeSections(usize),
    /// A lattice chunk with another number of code streams than its kind holds.
    #[error("{count} code streams, expected {expected}")]
    StreamCount {
        /// Streams found.
        count: usize,
        /// Streams expected.
        expected: usize,
    },
    /// A code stream with another number of codes than elements.
    #[error("{count} codes for {elements} elements")]
    CodeCount {
        /// Codes decoded.
        count: usize,
        /// Elements in the chunk.
        elements: usize,
    },
    /// Narrow codes whose bytes are no whole width per element.
    #[error("{len} code bytes for {elements} elements")]
    CodeBytes {
        /// Bytes found.
        len: usize,
        /// Elements in the chunk.
        elements: usize,
    },
    /// A bit section (`sign`, `fresh sign`) of the wrong length.
    #[error("{section} section holds {len} bytes for {elements} elements")]
    BitSection {
        /// Which section.
        section: &'static str,
        /// Bytes found.
        len: usize,
        /// Elements it covers.
        elements: usize,
    },
    /// A delta chunk decoded with no reference.
    #[error("chunk is a delta, but no reference was given")]
    MissingReference,
    /// A reference of another length than the chunk.
    #[error("reference chunk is {len} bytes, expected {expected}")]
    ReferenceLength {
        /// Reference bytes.
        len: usize,
        /// Chunk bytes.
        expected: usize,
    },
    /// A lattice delta in a run whose length differs from the run's reference, or a keyframe
    /// where only deltas may follow.
    #[error("a delta of {len} bytes against a reference of {reference}")]
    RunDelta {
        /// The delta's bytes.
        len: usize,
        /// The reference's bytes.
        reference: usize,
    },

    // ---- bad parameters ----
    /// A lossy chunk whose element width is not its dtype's.
    #[error("element width {unit} does not match {elem}")]
    ElementWidth {
        /// The chunk's element width.
        unit: usize,
        /// The element type it was decoded as.
        elem: String,
    },
    /// A dtype the lossy codec does not code (asked to encode).
    #[error("{0} cannot be stored lossy")]
    NotLossy(Dtype),
    /// A lossy chunk read as a dtype it cannot hold.
    #[error("{0} cannot hold a lossy chunk")]
    NotLossyChunk(Dtype),
    /// The lossy codec given a lossless bound.
    #[error("lossless bound given to the lossy codec")]
    LosslessBound,
    /// A stored code range over the quantizer's limit.
    #[error("code range {0} over the limit")]
    CodeRange(u32),
    /// A name (codec, rounding) the CLI or a caller gave that is not one of the choices.
    #[error("unknown {what} {name:?} (use {choices})")]
    UnknownName {
        /// What was named.
        what: &'static str,
        /// The name given.
        name: String,
        /// The names accepted.
        choices: &'static str,
    },
    /// The quantizer refused a bound, a table or its codes.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// The engine the quantizer ran on (the CUDA backend) failed.
    #[error("{0}")]
    Engine(Box<dyn std::error::Error + Send + Sync>),
}

/// Frame groups (`frames`) still report their own decode errors as text; the codec's errors
/// they pass on (varints, entropy sections) keep their message.
impl From<CodecError> for String {
    fn from(e: CodecError) -> String {
        e.to_string()
    }
}

/// The codec's result.
pub type CodecResult<T> = std::result::Result<T, CodecError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages are the ones the codec reported as text before it had a type (users and
    /// tests read them behind `cannot decode chunk N of tensor "x": `).
    #[test]
    fn messages_as_before() {
        let cases: [(CodecError, &str); 13] = [
            (
                CodecError::Truncated {
                    needs: 4,
                    offset: 9,
                },
                "truncated: needs 4 bytes at offset 9",
            ),
            (
                CodecError::UnknownTag {
                    what: "chunk codec",
                    value: 7,
                },
                "unknown chunk codec 7",
            ),
            (
                CodecError::UnsupportedFormat {
                    found: 2,
                    expected: 1,
                },
                "chunk format 2 is not supported (expected 1)",
            ),
            (
                CodecError::LengthOverLimit {
                    declared: 1 << 40,
                    limit: 256 << 20,
                },
                "declared length 1099511627776 is over the 268435456 limit",
            ),
            (
                CodecError::TrailingBytes {
                    count: 3,
                    after: "rANS data",
                },
                "3 trailing bytes after rANS data",
            ),
            (
                CodecError::RansTruncated { part: "state" },
                "rANS stream truncated in state",
            ),
            (
                CodecError::SectionLength {
                    len: 5,
                    expected: 8,
                },
                "section decodes to 5 bytes, expected 8",
            ),
            (
                CodecError::SectionCount {
                    count: 8,
                    expected: 5,
                },
                "8 sections, expected 5",
            ),
            (
                CodecError::BitSection {
                    section: "fresh sign",
                    len: 2,
                    elements: 9,
                },
                "fresh sign section holds 2 bytes for 9 elements",
            ),
            (
                CodecError::NotLossyChunk(Dtype::I32),
                "I32 cannot hold a lossy chunk",
            ),
            (
                CodecError::UnknownName {
                    what: "codec",
                    name: "brotli".into(),
                    choices: "auto, zstd, lzma or rans",
                },
                "unknown codec \"brotli\" (use auto, zstd, lzma or rans)",
            ),
            (CodecError::CodeRange(9), "code range 9 over the limit"),
            (
                CodecError::CentredCodeRange(1 << 31),
                "centred code 2147483648 is outside the 32-bit code range",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
