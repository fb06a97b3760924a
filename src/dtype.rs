//! Element types of stored tensors, with the stable names safetensors uses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An element type. The discriminants are part of the on-disk format and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Dtype {
    /// Boolean, one byte per element.
    #[serde(rename = "BOOL")]
    Bool = 0,
    /// Unsigned 8-bit integer.
    U8 = 1,
    /// Signed 8-bit integer.
    I8 = 2,
    /// Signed 16-bit integer.
    I16 = 3,
    /// Unsigned 16-bit integer.
    U16 = 4,
    /// Signed 32-bit integer.
    I32 = 5,
    /// Unsigned 32-bit integer.
    U32 = 6,
    /// Signed 64-bit integer.
    I64 = 7,
    /// Unsigned 64-bit integer.
    U64 = 8,
    /// IEEE half precision.
    F16 = 9,
    /// bfloat16.
    BF16 = 10,
    /// IEEE single precision.
    F32 = 11,
    /// IEEE double precision.
    F64 = 12,
    /// FP8 with 5 exponent bits.
    #[allow(non_camel_case_types)]
    F8_E5M2 = 13,
    /// FP8 with 4 exponent bits.
    #[allow(non_camel_case_types)]
    F8_E4M3 = 14,
    /// FP8 exponent-only scale format.
    #[allow(non_camel_case_types)]
    F8_E8M0 = 15,
    /// FP8 E4M3, finite, unsigned zero.
    #[allow(non_camel_case_types)]
    F8_E4M3FNUZ = 16,
    /// FP8 E5M2, finite, unsigned zero.
    #[allow(non_camel_case_types)]
    F8_E5M2FNUZ = 17,
    /// Complex number of two F32 parts.
    C64 = 18,
    /// 4-bit float (MXF4), packed two per byte.
    F4 = 19,
    /// 6-bit float (MXF6, E2M3), packed.
    #[allow(non_camel_case_types)]
    F6_E2M3 = 20,
    /// 6-bit float (MXF6, E3M2), packed.
    #[allow(non_camel_case_types)]
    F6_E3M2 = 21,
}

/// Every dtype, in discriminant order.
pub const ALL_DTYPES: [Dtype; 22] = [
    Dtype::Bool,
    Dtype::U8,
    Dtype::I8,
    Dtype::I16,
    Dtype::U16,
    Dtype::I32,
    Dtype::U32,
    Dtype::I64,
    Dtype::U64,
    Dtype::F16,
    Dtype::BF16,
    Dtype::F32,
    Dtype::F64,
    Dtype::F8_E5M2,
    Dtype::F8_E4M3,
    Dtype::F8_E8M0,
    Dtype::F8_E4M3FNUZ,
    Dtype::F8_E5M2FNUZ,
    Dtype::C64,
    Dtype::F4,
    Dtype::F6_E2M3,
    Dtype::F6_E3M2,
];

impl Dtype {
    /// Bits per element.
    pub fn bits(self) -> usize {
        use Dtype::*;
        match self {
            F4 => 4,
            F6_E2M3 | F6_E3M2 => 6,
            Bool | U8 | I8 | F8_E5M2 | F8_E4M3 | F8_E8M0 | F8_E4M3FNUZ | F8_E5M2FNUZ => 8,
            I16 | U16 | F16 | BF16 => 16,
            I32 | U32 | F32 => 32,
            I64 | U64 | F64 | C64 => 64,
        }
    }

    /// Width of the unit the codecs work on: the element size, or one byte for sub-byte types
    /// (stored as plain bytes).
    pub fn unit_bytes(self) -> usize {
        (self.bits() / 8).max(1)
    }

    /// Byte length of `elements` values, or `None` on overflow or a sub-byte count that does not
    /// end on a byte boundary.
    pub fn byte_len(self, elements: u64) -> Option<u64> {
        let bits = elements.checked_mul(self.bits() as u64)?;
        (bits % 8 == 0).then_some(bits / 8)
    }

    /// True for the floating-point types whose values the lossy codec can bound.
    pub fn is_lossy_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }

    /// True for floating-point types whose bit patterns order like their values once mapped
    /// (so an exact delta should subtract mapped values): every float type of a byte or more.
    pub fn is_float(self) -> bool {
        use Dtype::*;
        matches!(
            self,
            F16 | BF16 | F32 | F64 | F8_E5M2 | F8_E4M3 | F8_E4M3FNUZ | F8_E5M2FNUZ
        )
    }

    /// The safetensors spelling.
    pub fn name(self) -> &'static str {
        use Dtype::*;
        match self {
            Bool => "BOOL",
            U8 => "U8",
            I8 => "I8",
            I16 => "I16",
            U16 => "U16",
            I32 => "I32",
            U32 => "U32",
            I64 => "I64",
            U64 => "U64",
            F16 => "F16",
            BF16 => "BF16",
            F32 => "F32",
            F64 => "F64",
            F8_E5M2 => "F8_E5M2",
            F8_E4M3 => "F8_E4M3",
            F8_E8M0 => "F8_E8M0",
            F8_E4M3FNUZ => "F8_E4M3FNUZ",
            F8_E5M2FNUZ => "F8_E5M2FNUZ",
            C64 => "C64",
            F4 => "F4",
            F6_E2M3 => "F6_E2M3",
            F6_E3M2 => "F6_E3M2",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dtype name that snapstore does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDtype(pub String);

impl fmt::Display for UnknownDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown dtype {:?}", self.0)
    }
}

impl FromStr for Dtype {
    type Err = UnknownDtype;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_DTYPES
            .iter()
            .copied()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDtype(s.to_string()))
    }
}

impl TryFrom<u8> for Dtype {
    type Error = UnknownDtype;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        ALL_DTYPES
            .get(v as usize)
            .copied()
            .ok_or_else(|| UnknownDtype(format!("code {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for (i, d) in ALL_DTYPES.iter().enumerate() {
            assert_eq!(*d as u8 as usize, i);
            assert_eq!(Dtype::try_from(i as u8).unwrap(), *d);
            assert_eq!(d.name().parse::<Dtype>().unwrap(), *d);
            let json = serde_json::to_string(d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.name()));
        }
        assert!(Dtype::try_from(ALL_DTYPES.len() as u8).is_err());
        assert!("F12".parse::<Dtype>().is_err());
    }

    #[test]
    fn sub_byte_lengths() {
        assert_eq!(Dtype::F4.byte_len(4), Some(2));
        assert_eq!(Dtype::F4.byte_len(3), None);
        assert_eq!(Dtype::F6_E2M3.byte_len(4), Some(3));
        assert_eq!(Dtype::F32.byte_len(u64::MAX), None);
    }
}
