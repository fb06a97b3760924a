//! Entropy context for delta codes: the magnitude of the reference element.
//!
//! Training updates are close to additive (`lr * gradient`), so in the log domain a small weight
//! moves by more steps than a large one: the code of an element depends strongly on `|B'|`.
//! Both sides know `B'`, so a delta chunk's codes are split into streams by the binade of `|B'|`
//! below the chunk's top binades, each stream coded on its own: the order-0 coder then sees the
//! conditional distributions (digits-mlp, one step apart: 2.09 -> 1.89 bits per element at
//! rel 0.01, 0.61 -> 0.49 at rel 0.1; BENCHMARKS.md).

use super::logquant::FloatKind;

/// Streams a large chunk's codes are split into.
pub const MAX_CLASSES: usize = 8;
/// Chunks with fewer elements keep one stream (each stream costs a header and a table).
const MIN_SPLIT_ELEMENTS: usize = 8192;
/// The top class holds the largest `1 / TOP_SHARE` of the elements with a normal reference (at
/// least), so one outlier does not push the rest of the chunk into the bottom class.
const TOP_SHARE: usize = 64;

/// Biased exponent field of each element and the field's all-ones value.
fn exponents(kind: FloatKind, reference: &[u8]) -> (Vec<u16>, u16) {
    match kind {
        FloatKind::F16 => (
            reference
                .chunks_exact(2)
                .map(|e| (u16::from_le_bytes([e[0], e[1]]) >> 10) & 0x1f)
                .collect(),
            0x1f,
        ),
        FloatKind::BF16 => (
            reference
                .chunks_exact(2)
                .map(|e| (u16::from_le_bytes([e[0], e[1]]) >> 7) & 0xff)
                .collect(),
            0xff,
        ),
        FloatKind::F32 => (
            reference
                .chunks_exact(4)
                .map(|e| ((u32::from_le_bytes([e[0], e[1], e[2], e[3]]) >> 23) & 0xff) as u16)
                .collect(),
            0xff,
        ),
        FloatKind::F64 => (
            reference
                .chunks_exact(8)
                .map(|e| {
                    let b = u64::from_le_bytes(e.try_into().expect("8 bytes"));
                    ((b >> 52) & 0x7ff) as u16
                })
                .collect(),
            0x7ff,
        ),
    }
}

/// The stream of every element (`0` = largest `|B'|`) and the number of streams. Zero,
/// subnormal and non-finite references go to the last stream. Integer operations only, so every
/// decoder computes the same classes.
pub fn classes(kind: FloatKind, reference: &[u8]) -> (Vec<u8>, usize) {
    let (exps, special) = exponents(kind, reference);
    let count = if exps.len() >= MIN_SPLIT_ELEMENTS {
        MAX_CLASSES
    } else {
        1
    };
    if count == 1 {
        return (vec![0; exps.len()], 1);
    }
    let normal = |e: u16| e != 0 && e != special;
    let mut hist = vec![0usize; usize::from(special) + 1];
    for &e in &exps {
        hist[usize::from(e)] += 1;
    }
    let normals: usize = exps.iter().filter(|&&e| normal(e)).count();
    let want = normals.div_ceil(TOP_SHARE).max(1);
    let mut seen = 0;
    let mut top = special - 1;
    for e in (1..special).rev() {
        seen += hist[usize::from(e)];
        top = e;
        if seen >= want {
            break;
        }
    }
    let last = (count - 1) as u16;
    let class = exps
        .iter()
        .map(|&e| {
            if normal(e) {
                top.saturating_sub(e).min(last) as u8
            } else {
                last as u8
            }
        })
        .collect();
    (class, count)
}

/// The codes of each class, in element order.
pub fn split(codes: &[i32], classes: &[u8], count: usize) -> Vec<Vec<i32>> {
    let mut streams = vec![Vec::new(); count];
    for (&c, &k) in codes.iter().zip(classes) {
        streams[usize::from(k)].push(c);
    }
    streams
}

/// The inverse of [`split`]; every stream must hold exactly its class's elements.
pub fn merge(streams: &[Vec<i32>], classes: &[u8]) -> Result<Vec<i32>, String> {
    let mut need = vec![0usize; streams.len()];
    for &k in classes {
        *need
            .get_mut(usize::from(k))
            .ok_or("element class beyond the code streams")? += 1;
    }
    if let Some(k) = (0..streams.len()).find(|&k| need[k] != streams[k].len()) {
        return Err(format!(
            "code stream {k} holds {} codes for {} elements",
            streams[k].len(),
            need[k]
        ));
    }
    let mut next = vec![0usize; streams.len()];
    Ok(classes
        .iter()
        .map(|&k| {
            let k = usize::from(k);
            let c = streams[k][next[k]];
            next[k] += 1;
            c
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn classes_follow_the_binade_below_the_top() {
        let mut v: Vec<f32> = (0..10_000)
            .map(|i| 2f32.powi(-(i % 12)) * if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        v[5] = 0.0;
        v[6] = f32::NAN;
        v[7] = 1e30; // one outlier does not set the top class
        let (c, n) = classes(FloatKind::F32, &f32s(&v));
        assert_eq!(n, MAX_CLASSES);
        assert_eq!((c[0], c[1], c[2], c[3]), (0, 1, 2, 3));
        assert_eq!(c[11], 7, "deep binades share the last class");
        assert_eq!((c[5], c[6], c[7]), (7, 7, 0));
        let small = classes(FloatKind::F32, &f32s(&v[..100]));
        assert_eq!(small, (vec![0; 100], 1));
    }

    #[test]
    fn split_and_merge_round_trip_and_reject_wrong_counts() {
        let classes: Vec<u8> = (0..50).map(|i| (i * 7 % 3) as u8).collect();
        let codes: Vec<i32> = (0..50).map(|i| i - 25).collect();
        let streams = split(&codes, &classes, 3);
        assert_eq!(merge(&streams, &classes).unwrap(), codes);
        let mut short = streams.clone();
        short[1].pop();
        assert!(merge(&short, &classes).is_err());
        assert!(merge(&streams[..2], &classes).is_err());
    }
}
