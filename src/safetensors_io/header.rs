//! The safetensors header: an 8-byte little-endian length, then that many bytes of JSON that
//! map tensor names to dtype, shape and data offsets (plus an optional `__metadata__`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::dtype::Dtype;
use crate::error::SafetensorsProblem as P;

/// Headers larger than this are refused, as the safetensors library does.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Longest tensor name accepted.
const MAX_NAME_BYTES: usize = 4096;

/// One tensor as the header describes it; offsets are relative to the data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape (empty for a scalar).
    pub shape: Vec<u64>,
    /// First byte in the data section.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl TensorInfo {
    /// Byte length of the tensor's data.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True when the tensor holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// A parsed and validated header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header bytes exactly as in the file (JSON plus any padding), kept so a checkout of the
    /// whole snapshot reproduces the file byte for byte.
    pub raw: Vec<u8>,
    /// The `__metadata__` map, if present.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Tensors in data-offset order.
    pub tensors: Vec<TensorInfo>,
}

impl Header {
    /// Offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        8 + self.raw.len() as u64
    }

    /// Total bytes of tensor data.
    pub fn data_len(&self) -> u64 {
        self.tensors.last().map_or(0, |t| t.end)
    }
}

/// The first key a JSON object holds twice, if any (the values are skipped, not built).
struct Keys(Option<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut twice = None;
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    if twice.is_none() && !seen.insert(key.clone()) {
                        twice = Some(key);
                    }
                }
                Ok(Keys(twice))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Reads the 8-byte length prefix and checks it against the file length; a prefix that fails
/// and starts as a checkpoint format people mistake for safetensors does is named as that.
pub fn header_len(prefix: &[u8], file_len: u64) -> Result<u64, P> {
    let Some(bytes) = prefix.get(..8) else {
        return Err(P::TooShort(file_len));
    };
    let n = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    let problem = if n > MAX_HEADER_BYTES {
        P::HeaderTooLarge(n)
    } else if n.checked_add(8).is_none_or(|end| end > file_len) {
        P::HeaderPastEnd {
            header: n,
            file: file_len,
        }
    } else {
        return Ok(n);
    };
    Err(other_format(bytes).map_or(problem, P::OtherFormat))
}

/// What a file starting with `magic` is, for the formats a checkpoint commonly comes in.
fn other_format(magic: &[u8]) -> Option<&'static str> {
    Some(match magic {
        [b'P', b'K', 3, 4, ..] => {
            "a zip archive, as torch.save writes (a .pt or .bin checkpoint): convert it with \
             safetensors.torch.save_file(torch.load(path), \"model.safetensors\")"
        }
        [0x80, 2..=5, ..] => {
            "a Python pickle, as torch.save's legacy format writes (a .pt or .bin checkpoint): \
             convert it with safetensors.torch.save_file(torch.load(path), \"model.safetensors\")"
        }
        [0x93, b'N', b'U', b'M', b'P', b'Y', ..] => "a NumPy .npy array",
        [b'G', b'G', b'U', b'F', ..] => "a GGUF file (llama.cpp)",
        [0x89, b'H', b'D', b'F', ..] => "an HDF5 file (Keras .h5)",
        [0x1f, 0x8b, ..] => "a gzip file: decompress it first",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "a zstd file: decompress it first",
        _ => return None,
    })
}

/// Parses and validates header JSON; `data_len` is the number of bytes after the header.
pub fn parse_header(raw: &[u8], data_len: u64) -> Result<Header, P> {
    let text = std::str::from_utf8(raw).map_err(|e| P::MalformedHeader(e.to_string()))?;
    let map: serde_json::Map<String, Value> =
        serde_json::from_str(text).map_err(|e| P::MalformedHeader(e.to_string()))?;
    // A JSON map keeps the last of two equal keys: the first tensor would vanish, and the file
    // be refused for offsets that no longer follow on.
    if let Ok(Keys(Some(name))) = serde_json::from_str::<Keys>(text) {
        return Err(P::BadTensorName {
            name,
            reason: "named twice in the header",
        });
    }
    let mut metadata = None;
    let mut tensors = Vec::with_capacity(map.len());
    for (name, value) in map {
        if name == "__metadata__" {
            metadata = Some(parse_metadata(value)?);
            continue;
        }
        check_name(&name)?;
        tensors.push(parse_tensor(name, value)?);
    }
    tensors.sort_by_key(|t| (t.start, t.end));
    let mut expected_start = 0;
    for t in &tensors {
        if t.start != expected_start || t.end < t.start {
            return Err(P::BadOffsets {
                tensor: t.name.clone(),
                start: t.start,
                end: t.end,
                expected_start,
            });
        }
        expected_start = t.end;
    }
    if expected_start != data_len {
        return Err(P::DataSizeMismatch {
            covered: expected_start,
            actual: data_len,
        });
    }
    Ok(Header {
        raw: raw.to_vec(),
        metadata,
        tensors,
    })
}

/// Rejects names that cannot be stored or written back safely.
pub fn check_name(name: &str) -> Result<(), P> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_BYTES {
        "longer than 4096 bytes"
    } else if name.contains('\0') {
        "contains NUL"
    } else if name == "__metadata__" {
        "the safetensors header's metadata key"
    } else {
        return Ok(());
    };
    Err(P::BadTensorName {
        name: name.to_string(),
        reason,
    })
}

fn parse_metadata(value: Value) -> Result<BTreeMap<String, String>, P> {
    let Value::Object(map) = value else {
        return Err(P::MalformedHeader("__metadata__ is not an object".into()));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => Err(P::MalformedHeader(format!(
                "__metadata__ value for {k:?} is not a string: {other}"
            ))),
        })
        .collect()
}

fn parse_tensor(name: String, value: Value) -> Result<TensorInfo, P> {
    let malformed = |what: &str| P::MalformedHeader(format!("tensor {name:?}: {what}"));
    let Value::Object(fields) = value else {
        return Err(malformed("entry is not an object"));
    };
    let dtype_name = fields
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("missing or non-string \"dtype\""))?;
    let dtype: Dtype = dtype_name.parse().map_err(|_| P::UnknownDtype {
        tensor: name.clone(),
        dtype: dtype_name.to_string(),
    })?;
    let shape = fields
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("missing or non-array \"shape\""))?
        .iter()
        .map(Value::as_u64)
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| malformed("shape holds something other than non-negative integers"))?;
    let offsets = fields
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("missing or non-array \"data_offsets\""))?;
    let (start, end) = match offsets.as_slice() {
        [s, e] => match (s.as_u64(), e.as_u64()) {
            (Some(s), Some(e)) => (s, e),
            _ => return Err(malformed("data_offsets are not non-negative integers")),
        },
        _ => return Err(malformed("data_offsets must hold two integers")),
    };
    let elements = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let expected = elements.and_then(|n| dtype.byte_len(n));
    let actual = end.wrapping_sub(start);
    if end < start || expected != Some(actual) {
        return Err(P::LengthMismatch {
            tensor: name,
            shape,
            dtype: dtype.to_string(),
            expected: expected.map_or_else(|| "an impossible number of".into(), |n| n.to_string()),
            actual: if end < start { 0 } else { actual },
        });
    }
    Ok(TensorInfo {
        name,
        dtype,
        shape,
        start,
        end,
    })
}

/// Builds the header the safetensors library writes for these tensors: sorted by descending
/// dtype then name, offsets packed in that order, JSON padded with spaces to a multiple of 8.
/// Returns the header bytes and the tensors in file order with their offsets filled in.
///
/// Metadata keys are written in sorted order, so the result is deterministic (the library
/// writes them in hash-map order).
pub fn canonical_header(
    metadata: Option<&BTreeMap<String, String>>,
    tensors: &[(String, Dtype, Vec<u64>)],
) -> Result<(Vec<u8>, Vec<TensorInfo>), P> {
    let mut order: Vec<&(String, Dtype, Vec<u64>)> = tensors.iter().collect();
    order.sort_by(|a, b| {
        library_rank(b.1)
            .cmp(&library_rank(a.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut infos = Vec::with_capacity(order.len());
    let mut offset = 0u64;
    for (name, dtype, shape) in order {
        check_name(name)?;
        let len = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| dtype.byte_len(n))
            .ok_or_else(|| P::LengthMismatch {
                tensor: name.clone(),
                shape: shape.clone(),
                dtype: dtype.to_string(),
                expected: "an impossible number of".into(),
                actual: 0,
            })?;
        infos.push(TensorInfo {
            name: name.clone(),
            dtype: *dtype,
            shape: shape.clone(),
            start: offset,
            end: offset + len,
        });
        offset += len;
    }
    let mut json = String::from("{");
    let mut first = true;
    let mut sep = |json: &mut String| {
        if !first {
            json.push(',');
        }
        first = false;
    };
    if let Some(meta) = metadata {
        sep(&mut json);
        json.push_str("\"__metadata__\":");
        json.push_str(&serde_json::to_string(meta).expect("string map serializes"));
    }
    for t in &infos {
        sep(&mut json);
        json.push_str(&serde_json::to_string(&t.name).expect("string serializes"));
        json.push_str(&format!(
            ":{{\"dtype\":\"{}\",\"shape\":{},\"data_offsets\":[{},{}]}}",
            t.dtype,
            serde_json::to_string(&t.shape).expect("ints serialize"),
            t.start,
            t.end
        ));
    }
    json.push('}');
    let mut raw = json.into_bytes();
    raw.resize(raw.len().next_multiple_of(8), b' ');
    if raw.len() as u64 > MAX_HEADER_BYTES {
        return Err(P::HeaderTooLarge(raw.len() as u64));
    }
    Ok((raw, infos))
}

/// Position of a dtype in the safetensors library's own `Dtype` ordering, which decides the order
/// it writes tensors in.
fn library_rank(d: Dtype) -> u8 {
    use Dtype::*;
    match d {
        Bool => 0,
        F4 => 1,
        F6_E2M3 => 2,
        F6_E3M2 => 3,
        U8 => 4,
        I8 => 5,
        F8_E5M2 => 6,
        F8_E4M3 => 7,
        F8_E8M0 => 8,
        F8_E4M3FNUZ => 9,
        F8_E5M2FNUZ => 10,
        I16 => 11,
        U16 => 12,
        F16 => 13,
        BF16 => 14,
        I32 => 15,
        U32 => 16,
        F32 => 17,
        C64 => 18,
        F64 => 19,
        I64 => 20,
        U64 => 21,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::ALL_DTYPES;

    fn lib_dtype(d: Dtype) -> safetensors::Dtype {
        serde_json::from_str(&format!("\"{d}\"")).unwrap()
    }

    #[test]
    fn rank_matches_library_order() {
        let mut ours: Vec<Dtype> = ALL_DTYPES.to_vec();
        ours.sort_by_key(|d| library_rank(*d));
        let mut theirs: Vec<safetensors::Dtype> =
            ALL_DTYPES.iter().map(|d| lib_dtype(*d)).collect();
        theirs.sort();
        let ours: Vec<safetensors::Dtype> = ours.into_iter().map(lib_dtype).collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn canonical_header_equals_library_output() {
        let specs = vec![
            ("b".to_string(), Dtype::F32, vec![2u64, 3]),
            ("a".to_string(), Dtype::F32, vec![4]),
            ("z".to_string(), Dtype::BF16, vec![3]),
            ("i".to_string(), Dtype::I64, vec![]),
            ("f4".to_string(), Dtype::F4, vec![2, 2]),
        ];
        let data: Vec<Vec<u8>> = specs
            .iter()
            .map(|(_, d, s)| vec![7u8; d.byte_len(s.iter().product()).unwrap() as usize])
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = specs
            .iter()
            .zip(&data)
            .map(|((n, d, s), bytes)| {
                let shape: Vec<usize> = s.iter().map(|&x| x as usize).collect();
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(lib_dtype(*d), shape, bytes).unwrap(),
                )
            })
            .collect();
        let meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        let lib = safetensors::serialize(views, Some(meta.clone().into_iter().collect())).unwrap();
        let (raw, infos) = canonical_header(Some(&meta), &specs).unwrap();
        let n = u64::from_le_bytes(lib[..8].try_into().unwrap()) as usize;
        assert_eq!(
            String::from_utf8_lossy(&raw),
            String::from_utf8_lossy(&lib[8..8 + n])
        );
        let parsed = parse_header(&raw, infos.last().unwrap().end).unwrap();
        assert_eq!(parsed.tensors, infos);
    }

    #[test]
    fn problems_are_named() {
        let h = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,7]}}"#;
        assert!(matches!(parse_header(h, 7), Err(P::LengthMismatch { .. })));
        let h = br#"{"w":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}}"#;
        assert!(matches!(parse_header(h, 8), Err(P::UnknownDtype { .. })));
        let h = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        assert!(matches!(parse_header(h, 8), Err(P::BadOffsets { .. })));
        let h = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert!(matches!(
            parse_header(h, 9),
            Err(P::DataSizeMismatch { .. })
        ));
        assert!(matches!(
            parse_header(b"{not json", 0),
            Err(P::MalformedHeader(_))
        ));
        assert!(matches!(header_len(&[1, 2], 2), Err(P::TooShort(2))));
        let big = (MAX_HEADER_BYTES + 1).to_le_bytes();
        assert!(matches!(
            header_len(&big, u64::MAX),
            Err(P::HeaderTooLarge(_))
        ));
        assert!(matches!(
            header_len(&100u64.to_le_bytes(), 50),
            Err(P::HeaderPastEnd { .. })
        ));
    }
}
