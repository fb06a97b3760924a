//! Entropy context for delta codes: the magnitude of the reference element.
//!
//! Training updates are close to additive (`lr * gradient`), so in the log domain a small weight
//! moves by more steps than a large one: the code of an element depends strongly on `|B'|`.
//! Both sides know `B'`, so a delta chunk's codes are split into streams by the binade of `|B'|`
//! below the chunk's top binades, each stream coded on its own: the order-0 coder then sees the
//! conditional distributions (digits-mlp, one step apart: 2.09 -> 1.89 bits per element at
//! rel 0.01, 0.61 -> 0.49 at rel 0.1; BENCHMARKS.md).

use super::logquant::{self, FloatKind};

/// Streams a large chunk's codes are split into.
pub const MAX_CLASSES: usize = 8;
/// Chunks with fewer elements keep one stream (each stream costs a header and a table).
const MIN_SPLIT_ELEMENTS: usize = 8192;
/// The top class holds the largest `1 / TOP_SHARE` of the elements with a normal reference (at
/// least), so one outlier does not push the rest of the chunk into the bottom class.
const TOP_SHARE: usize = 64;

/// How many elements of `reference` have each exponent field value: what [`top_of`] and
/// [`split_by_reference`] read, so the reference's exponents are counted once per chunk.
pub fn exponent_counts(kind: FloatKind, reference: &[u8]) -> Vec<usize> {
    let mut hist = vec![0usize; usize::from(logquant::exponent_max(kind)) + 1];
    logquant::for_each_exponent(kind, reference, |e| hist[usize::from(e)] += 1);
    hist
}

/// The exponent field value that opens the top class: the largest at or below which the
/// largest `1 / TOP_SHARE` of the normal references lie. The encoder stores it in the chunk, so a
/// decoder can classify an element from its reference alone.
#[cfg(test)]
pub fn top(kind: FloatKind, reference: &[u8]) -> u16 {
    top_of(kind, &exponent_counts(kind, reference))
}

/// [`top`] from the reference's [`exponent_counts`].
pub fn top_of(kind: FloatKind, hist: &[usize]) -> u16 {
    let special = logquant::exponent_max(kind);
    let normals: usize = hist[1..usize::from(special)].iter().sum();
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
    top
}

/// The class of an element whose reference has exponent field `e` (`special`: the field's
/// all-ones value) in a split chunk with boundary `top`.
#[inline(always)]
pub fn class_of(e: u16, special: u16, top: u16) -> u8 {
    let last = (MAX_CLASSES - 1) as u16;
    if e == 0 || e == special {
        last as u8
    } else {
        top.saturating_sub(e).min(last) as u8
    }
}

/// Streams a chunk of `n` elements is split into.
pub fn stream_count(n: usize) -> usize {
    if n >= MIN_SPLIT_ELEMENTS {
        MAX_CLASSES
    } else {
        1
    }
}

/// The stream of every element (`0` = largest `|B'|`, exponent field at or above `top`; one
/// stream per binade below it) and the number of streams (one for a chunk too small to split).
/// Zero, subnormal and non-finite references go to the last stream. Integer operations only.
#[cfg(test)]
pub fn classes(kind: FloatKind, reference: &[u8], top: u16) -> (Vec<u8>, usize) {
    let n = reference.len() / kind.size();
    if stream_count(n) == 1 {
        return (vec![0; n], 1);
    }
    let special = logquant::exponent_max(kind);
    // `class_of` of every exponent field value, looked up per element.
    let by_exponent: Vec<u8> = (0..=special).map(|e| class_of(e, special, top)).collect();
    let mut class = Vec::with_capacity(n);
    logquant::for_each_exponent(kind, reference, |e| class.push(by_exponent[usize::from(e)]));
    (class, MAX_CLASSES)
}

/// The codes of each class of `reference`'s elements (`class_of` their exponent fields under
/// `top`; one stream for a chunk too small to split), in element order: the stream sizes from
/// the reference's [`exponent_counts`], then one pass over its exponent fields pushing every
/// code to its stream.
pub fn split_by_reference(
    kind: FloatKind,
    reference: &[u8],
    exponents: &[usize],
    top: u16,
    codes: &[i32],
) -> Vec<Vec<i32>> {
    let n = reference.len() / kind.size();
    if stream_count(n) == 1 {
        return vec![codes.to_vec()];
    }
    let special = logquant::exponent_max(kind);
    let by_exponent: Vec<u8> = (0..=special).map(|e| class_of(e, special, top)).collect();
    let mut sizes = [0usize; MAX_CLASSES];
    for (&class, &count) in by_exponent.iter().zip(exponents) {
        sizes[usize::from(class)] += count;
    }
    let mut streams: Vec<Vec<i32>> = sizes.into_iter().map(Vec::with_capacity).collect();
    let mut codes = codes.iter();
    logquant::for_each_exponent(kind, reference, |e| {
        if let Some(&c) = codes.next() {
            streams[usize::from(by_exponent[usize::from(e)])].push(c);
        }
    });
    streams
}

/// The codes of each class, in element order.
#[cfg(test)]
pub fn split(codes: &[i32], classes: &[u8], count: usize) -> Vec<Vec<i32>> {
    // Each stream allocated once, at its final size.
    let mut sizes = vec![0usize; count];
    for &k in &classes[..codes.len().min(classes.len())] {
        sizes[usize::from(k)] += 1;
    }
    let mut streams: Vec<Vec<i32>> = sizes.into_iter().map(Vec::with_capacity).collect();
    for (&c, &k) in codes.iter().zip(classes) {
        streams[usize::from(k)].push(c);
    }
    streams
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
        let r = f32s(&v);
        let (c, n) = classes(FloatKind::F32, &r, top(FloatKind::F32, &r));
        assert_eq!(n, MAX_CLASSES);
        assert_eq!((c[0], c[1], c[2], c[3]), (0, 1, 2, 3));
        assert_eq!(c[11], 7, "deep binades share the last class");
        assert_eq!((c[5], c[6], c[7]), (7, 7, 0));
        let small = classes(FloatKind::F32, &f32s(&v[..100]), 127);
        assert_eq!(small, (vec![0; 100], 1));
    }

    #[test]
    fn split_by_reference_is_split_of_classes() {
        let v: Vec<f32> = (0..20_000)
            .map(|i| 2f32.powi(-(i % 13)) * if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let r = f32s(&v);
        let codes: Vec<i32> = (0..20_000).map(|i| (i * 31 % 17) - 8).collect();
        for (bytes, top) in [(&r[..], top(FloatKind::F32, &r)), (&r[..400], 127)] {
            let n = bytes.len() / 4;
            let (c, count) = classes(FloatKind::F32, bytes, top);
            let exponents = exponent_counts(FloatKind::F32, bytes);
            assert_eq!(
                split_by_reference(FloatKind::F32, bytes, &exponents, top, &codes[..n]),
                split(&codes[..n], &c, count)
            );
        }
    }

    #[test]
    fn split_keeps_each_class_in_element_order() {
        let classes: Vec<u8> = (0..50).map(|i| (i * 7 % 3) as u8).collect();
        let codes: Vec<i32> = (0..50).map(|i| i - 25).collect();
        let streams = split(&codes, &classes, 3);
        for (k, stream) in streams.iter().enumerate() {
            let want: Vec<i32> = codes
                .iter()
                .zip(&classes)
                .filter(|(_, &c)| usize::from(c) == k)
                .map(|(&m, _)| m)
                .collect();
            assert_eq!(stream, &want, "class {k}");
        }
    }
}
