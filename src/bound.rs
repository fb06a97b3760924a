//! The error bound a tensor is coded and stored under: a vocabulary type, like
//! [`Dtype`](crate::Dtype), that the codec, the GPU backend and the store's manifests share
//! without depending on each other (it used to live in `store::manifest`, which made the codec
//! import the store). Its serde form is the manifest's (`{"kind": "rel", "eps": 0.001}`), its
//! text form the CLI's (`lossless`, `rel:EPS`, `abs:EPS`); neither changed with the move.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The error bound a tensor was stored under.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "eps", rename_all = "lowercase")]
pub enum Bound {
    /// Bit-exact.
    Lossless,
    /// `|A' - A| <= eps * |A|` per element.
    Rel(f64),
    /// `|A' - A| <= eps` per element.
    Abs(f64),
}

impl Bound {
    /// `rel:eps`, or why no quantizer can code under it: its step `(1 + eps)^2` must differ
    /// from 1 in f64, and a relative error of 1 or more keeps no digit.
    pub fn relative(eps: f64) -> std::result::Result<Bound, &'static str> {
        if !(eps > 0.0 && eps < 1.0) {
            Err("a relative bound must lie in (0, 1)")
        } else if 1.0 + eps == 1.0 {
            Err("a relative bound at or below 2^-53 (1.1e-16) is finer than f64 can step; use lossless")
        } else {
            Ok(Bound::Rel(eps))
        }
    }

    /// Whether every value stored under `self` is also within `other` of its source: an exact
    /// copy meets any bound, and a bound meets a looser one of its kind.
    pub fn meets(self, other: Bound) -> bool {
        match (self, other) {
            (Bound::Lossless, _) => true,
            (Bound::Rel(a), Bound::Rel(b)) | (Bound::Abs(a), Bound::Abs(b)) => a <= b,
            _ => false,
        }
    }
}

/// Serializes a bound as its text (`rel:0.01`, `lossless`), as the CLI takes it.
pub(crate) fn serialize_as_text<S: serde::Serializer>(b: &Bound, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(b)
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Lossless => f.write_str("lossless"),
            Bound::Rel(e) => write!(f, "rel:{}", Eps(*e)),
            Bound::Abs(e) => write!(f, "abs:{}", Eps(*e)),
        }
    }
}

/// A bound's epsilon, exactly (it parses back to the same f64) and short: `1e30`, not 31
/// digits; `1e-7`, not `0.0000001`.
struct Eps(f64);

impl std::fmt::Display for Eps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.0.abs();
        if e != 0.0 && !(1e-4..1e6).contains(&e) {
            write!(f, "{:e}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl std::str::FromStr for Bound {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid("bound", format!("{s:?}: {why}"));
        if s == "lossless" {
            return Ok(Bound::Lossless);
        }
        let (kind, eps) = s
            .split_once(':')
            .ok_or_else(|| bad("use lossless, rel:EPS or abs:EPS"))?;
        let eps: f64 = eps.parse().map_err(|_| bad("EPS is not a number"))?;
        match kind {
            "rel" => Bound::relative(eps).map_err(bad),
            // The step is 2 * EPS, which must be finite.
            "abs" if eps > 0.0 && (2.0 * eps).is_finite() => Ok(Bound::Abs(eps)),
            "abs" => Err(bad("an absolute bound must be positive and finite")),
            _ => Err(bad("use lossless, rel:EPS or abs:EPS")),
        }
    }
}
