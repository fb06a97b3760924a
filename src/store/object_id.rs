//! Object ids: the blake3 hash of an object's stored bytes, shown as hex.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The blake3 hash identifying an object, a snapshot, or a tensor's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 32]);

impl ObjectId {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let _t = crate::profile::time_bytes(crate::profile::Stage::ObjectHash, bytes.len());
        ObjectId(*blake3::hash(bytes).as_bytes())
    }

    /// Full lowercase hex.
    pub fn hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for b in self.0 {
            hex.push(DIGITS[usize::from(b >> 4)] as char);
            hex.push(DIGITS[usize::from(b & 15)] as char);
        }
        hex
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// Reads an id from a 32-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(ObjectId)
    }
}

impl From<blake3::Hash> for ObjectId {
    fn from(h: blake3::Hash) -> Self {
        ObjectId(*h.as_bytes())
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.short())
    }
}

impl FromStr for ObjectId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits: Option<&[u8; 64]> = s.as_bytes().try_into().ok();
        let mut out = [0u8; 32];
        let parsed = digits.is_some_and(|digits| {
            out.iter_mut()
                .zip(digits.chunks_exact(2))
                .all(|(byte, pair)| match hex_byte(pair) {
                    Some(b) => {
                        *byte = b;
                        true
                    }
                    None => false,
                })
        });
        if !parsed {
            return Err(format!(
                "object id {:?} is not 64 hex digits",
                s.chars().take(80).collect::<String>()
            ));
        }
        Ok(ObjectId(out))
    }
}

/// The byte two hex digits (either case) spell, if they are hex digits.
pub(crate) fn hex_byte(pair: &[u8]) -> Option<u8> {
    match pair {
        [hi, lo] => Some(hex_value(*hi)? << 4 | hex_value(*lo)?),
        _ => None,
    }
}

/// The value of one hex digit (either case).
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(IdVisitor)
    }
}

/// Parses an id from the deserializer's string in place: reading a manifest allocates no string
/// per id.
struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = ObjectId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object id of 64 hex digits")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ObjectId, E> {
        s.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_bad_ids_are_refused() {
        for seed in 0..50u8 {
            let id = ObjectId::of(&[seed; 3]);
            let hex = id.hex();
            assert_eq!(hex, blake3::hash(&[seed; 3]).to_hex().as_str());
            assert_eq!(hex.parse::<ObjectId>().unwrap(), id);
            assert_eq!(hex.to_ascii_uppercase().parse::<ObjectId>().unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<ObjectId>(&json).unwrap(), id);
            // An escaped digit: the deserializer hands over a decoded, not borrowed, string.
            let escaped = format!("\"\\u00{:02x}{}\"", hex.as_bytes()[0], &hex[1..]);
            assert_eq!(serde_json::from_str::<ObjectId>(&escaped).unwrap(), id);
        }
        let good = ObjectId::of(b"x").hex();
        for bad in [
            good[..63].to_string(),
            format!("{good}0"),
            format!("g{}", &good[1..]),
            format!("é{}", &good[2..]),
            String::new(),
        ] {
            let err = bad.parse::<ObjectId>().unwrap_err();
            assert!(err.contains("is not 64 hex digits"), "{err}");
            assert!(serde_json::from_str::<ObjectId>(&format!("{bad:?}")).is_err());
        }
    }
}
