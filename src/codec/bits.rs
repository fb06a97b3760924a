//! Bits gathered into bytes, least significant first: the frames' bit planes and the sparse
//! sections' gap codes.

/// Bits gathered LSB first, 64 at a time.
pub(crate) struct BitSink {
    bytes: Vec<u8>,
    acc: u64,
    len: usize,
}

impl BitSink {
    pub(crate) fn with_capacity(bits: usize) -> Self {
        BitSink {
            bytes: Vec::with_capacity(bits.div_ceil(8)),
            acc: 0,
            len: 0,
        }
    }

    /// Appends the low `count` (at most 64) bits of `bits` (none set above them), first bit
    /// lowest.
    #[inline(always)]
    pub(crate) fn append(&mut self, bits: u64, count: u32) {
        let used = (self.len % 64) as u32;
        self.acc |= bits << used;
        self.len += count as usize;
        if used + count >= 64 {
            self.bytes.extend_from_slice(&self.acc.to_le_bytes());
            // The bits that did not fit (none when the accumulator was empty).
            self.acc = bits.checked_shr(64 - used).unwrap_or(0);
        }
    }

    /// Bits appended so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends the bits' `len.div_ceil(8)` bytes, the last zero-padded.
    pub(crate) fn finish_into(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        let rest = (self.len % 64).div_ceil(8);
        out.extend_from_slice(&self.acc.to_le_bytes()[..rest]);
    }
}
