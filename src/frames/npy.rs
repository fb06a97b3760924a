//! A strict reader and a writer for NumPy `.npy` arrays holding frame sequences: C order,
//! `[T,H,W]` or `[T,H,W,C]`, dtype `|u1`, `<u2` or `<f4`. Anything else is refused with the
//! reason (Fortran order, another dtype, big-endian, a header over 64 KiB, a data length that
//! does not match the shape).

use super::{FrameDtype, FrameSeq};

const MAGIC: &[u8] = b"\x93NUMPY";
/// Largest header accepted.
const MAX_HEADER: usize = 64 * 1024;

/// Parses a whole `.npy` file held in memory into a sequence; the error is the problem alone
/// (the caller adds the file name).
pub fn parse_npy(bytes: &[u8]) -> Result<FrameSeq, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("missing the \\x93NUMPY magic".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match (major, minor) {
        (1, 0) => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        (2, 0) | (3, 0) => {
            if bytes.len() < 12 {
                return Err("truncated header length".into());
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        _ => return Err(format!("unsupported format version {major}.{minor}")),
    };
    if header_len > MAX_HEADER {
        return Err(format!(
            "header of {header_len} bytes is over the 64 KiB limit"
        ));
    }
    let header = bytes
        .get(start..start + header_len)
        .ok_or("header runs past the end of the file")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not UTF-8".to_string())?;
    let h = parse_header(header)?;
    let data = &bytes[start + header_len..];
    FrameSeq::from_raw(h.dtype, &h.shape, data.to_vec()).map_err(|e| e.to_string())
}

/// The fields of an `.npy` header.
struct Header {
    dtype: FrameDtype,
    shape: Vec<u64>,
}

fn parse_header(s: &str) -> Result<Header, String> {
    let mut p = Parser {
        s: s.as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        let dup = match key.as_str() {
            "descr" => descr.replace(p.string()?).is_some(),
            "fortran_order" => fortran.replace(p.boolean()?).is_some(),
            "shape" => shape.replace(p.tuple()?).is_some(),
            other => return Err(format!("unknown header key {other:?}")),
        };
        if dup {
            return Err(format!("header key {key:?} given twice"));
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    if !s.as_bytes()[p.i..].iter().all(|b| b.is_ascii_whitespace()) {
        return Err("text after the header dictionary".into());
    }
    let descr = descr.ok_or("header has no 'descr'")?;
    if fortran.ok_or("header has no 'fortran_order'")? {
        return Err("fortran_order arrays are not supported (save in C order)".into());
    }
    let shape = shape.ok_or("header has no 'shape'")?;
    let dtype = match descr.as_str() {
        "|u1" | "<u1" => FrameDtype::U8,
        "<u2" => FrameDtype::U16,
        "<f4" => FrameDtype::F32,
        d if d.starts_with('>') => {
            return Err(format!("big-endian dtype {d:?} (use little-endian)"))
        }
        d => return Err(format!("dtype {d:?} is not one of |u1, <u2, <f4")),
    };
    Ok(Header { dtype, shape })
}

/// A cursor over the header text (a Python dict literal).
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!(
                "header: expected {:?} at offset {}",
                b as char, self.i
            ))
        }
    }
    fn string(&mut self) -> Result<String, String> {
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("header: expected a string at offset {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while let Some(&b) = self.s.get(self.i) {
            if b == quote {
                let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(v);
            }
            if b == b'\\' {
                return Err("header: escapes in strings are not supported".into());
            }
            self.i += 1;
        }
        Err("header: unterminated string".into())
    }
    fn boolean(&mut self) -> Result<bool, String> {
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err(format!(
            "header: expected True or False at offset {}",
            self.i
        ))
    }
    fn tuple(&mut self) -> Result<Vec<u64>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.i;
            while self.s.get(self.i).is_some_and(|b| b.is_ascii_digit()) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let d: u64 = digits
                .parse()
                .map_err(|_| format!("header: bad shape entry at offset {start}"))?;
            dims.push(d);
            if dims.len() > 8 {
                return Err("header: shape has too many dimensions".into());
            }
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

/// The `.npy` bytes (format 1.0, or 2.0 for a long header) of frames `range` of `seq`, in the
/// sequence's shape ([`FrameSeq::shape`]: `[T,H,W,1]` stays four-dimensional).
pub fn to_npy(seq: &FrameSeq, range: std::ops::Range<usize>) -> Result<Vec<u8>, super::FrameError> {
    let data = seq.frames(range.clone())?;
    let descr = match seq.dtype {
        FrameDtype::U8 => "|u1",
        FrameDtype::U16 => "<u2",
        FrameDtype::F32 => "<f4",
    };
    let mut dims = seq.shape();
    dims[0] = (range.end - range.start) as u64;
    let dims: Vec<String> = dims.iter().map(u64::to_string).collect();
    let shape = format!("({})", dims.join(", "));
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so the data starts on a 64-byte boundary; the header ends in '\n'.
    let v1 = header.len() + 1 + 10 <= u16::MAX as usize;
    let prefix = if v1 { 10 } else { 12 };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    header.extend(std::iter::repeat_n(' ', total - prefix - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + data.len());
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn round_trips_every_dtype() {
        for (dtype, c) in [
            (FrameDtype::U8, 1),
            (FrameDtype::U16, 3),
            (FrameDtype::F32, 2),
        ] {
            let n = 4 * 3 * 5 * c * dtype.size();
            let data: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let seq = FrameSeq::from_raw(dtype, &[4, 3, 5, c as u64], data.clone()).unwrap();
            let bytes = to_npy(&seq, 0..4).unwrap();
            assert_eq!((bytes.len() - data.len()) % 64, 0);
            let back = parse_npy(&bytes).unwrap();
            assert_eq!(
                (back.dtype, back.t, back.h, back.w, back.c),
                (dtype, 4, 3, 5, c)
            );
            assert_eq!(back.data, data);
            let part = parse_npy(&to_npy(&seq, 1..3).unwrap()).unwrap();
            assert_eq!(part.t, 2);
            assert_eq!(part.data, seq.frames(1..3).unwrap());
        }
    }

    /// Found by the audit: a `[T,H,W,1]` array came back as `[T,H,W]`.
    #[test]
    fn a_channel_axis_of_one_is_kept() {
        // numpy 2's own bytes for np.arange(24, dtype=np.uint8).reshape(2, 3, 4, 1).
        let mut h = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 4, 1), }".to_string();
        let total = (10 + h.len() + 1).div_ceil(64) * 64;
        h.extend(std::iter::repeat_n(' ', total - 10 - h.len() - 1));
        h.push('\n');
        let file = npy(&h, &(0..24).collect::<Vec<u8>>());
        let seq = parse_npy(&file).unwrap();
        assert_eq!((seq.c, seq.channel_axis), (1, true));
        assert_eq!(seq.shape(), [2, 3, 4, 1]);
        assert_eq!(to_npy(&seq, 0..2).unwrap(), file);
        let three = FrameSeq::from_raw(FrameDtype::U8, &[2, 3, 4], seq.data.clone()).unwrap();
        assert_eq!(three.shape(), [2, 3, 4]);
    }

    #[test]
    fn reads_numpy_spelling() {
        // What numpy 2 writes for np.zeros((2, 2, 3), np.uint8).
        let h = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 3), }          \n";
        let seq = parse_npy(&npy(h, &[0; 12])).unwrap();
        assert_eq!((seq.t, seq.h, seq.w, seq.c), (2, 2, 3, 1));
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases = [
            (
                "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2, 3), }",
                12,
                "fortran",
            ),
            (
                "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2, 3), }",
                48,
                "dtype",
            ),
            (
                "{'descr': '>u2', 'fortran_order': False, 'shape': (2, 2, 3), }",
                24,
                "big-endian",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 3), }",
                11,
                "bytes",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 3), }",
                13,
                "bytes",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (12,), }",
                12,
                "shape",
            ),
            ("{'descr': '|u1', 'fortran_order': False}", 12, "shape"),
            (
                "{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1)}",
                1,
                "twice",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1), 'x': 1}",
                1,
                "unknown",
            ),
        ];
        for (h, n, want) in cases {
            let err = parse_npy(&npy(h, &vec![0; n])).unwrap_err();
            assert!(err.contains(want), "{h}: {err}");
        }
        let mut big = MAGIC.to_vec();
        big.extend_from_slice(&[2, 0]);
        big.extend_from_slice(&(100_000u32).to_le_bytes());
        assert!(parse_npy(&big).unwrap_err().contains("64"));
        assert!(parse_npy(b"PK\x03\x04 not npy")
            .unwrap_err()
            .contains("magic"));
    }

    proptest! {
        #[test]
        fn hostile_npy_never_panics(tail in prop::collection::vec(any::<u8>(), 0..120), cut in 0usize..80) {
            let h = "{'descr': '<u2', 'fortran_order': False, 'shape': (1, 2, 3), }";
            let mut b = npy(h, &[1; 12]);
            b.truncate(cut.min(b.len()));
            b.extend_from_slice(&tail);
            let _ = parse_npy(&b);
            let mut c = MAGIC.to_vec();
            c.extend_from_slice(&tail);
            let _ = parse_npy(&c);
        }
    }
}
