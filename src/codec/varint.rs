//! LEB128 varints, the length and count encoding of every stored format (chunks, lossy codes,
//! rANS streams, frame groups).

use super::error::{CodecError, CodecResult};

/// Appends `v` as an LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an LEB128 varint at `*pos`, advancing it; fails on truncation or more than 64 bits.
pub(crate) fn get_varint(bytes: &[u8], pos: &mut usize) -> CodecResult<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        // Not `ok_or(error)?`: that makes the error and calls its drop glue on every byte.
        let Some(&b) = bytes.get(*pos) else {
            return Err(CodecError::TruncatedVarint);
        };
        *pos += 1;
        if i == 9 && b > 1 {
            return Err(CodecError::VarintOverflow);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CodecError::VarintOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_overlong() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut pos = 0;
            assert_eq!(get_varint(&out, &mut pos).unwrap(), v);
            assert_eq!(pos, out.len());
        }
        assert!(get_varint(&[0x80], &mut 0).is_err());
        assert!(get_varint(&[0xff; 11], &mut 0).is_err());
        assert!(get_varint(
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            &mut 0
        )
        .is_err());
    }
}
