//! Entropy context for delta codes: the magnitude of the reference element.
//!
//! Training updates are close to additive (`lr * gradient`), so in the log domain a small weight
//! moves by more steps than a large one: the code of an element depends strongly on `|B'|`.
//! Both sides know `B'`, so a delta chunk's codes are split into streams by the binade of `|B'|`
//! below the chunk's top binades, each stream coded on its own: the order-0 coder then sees the
//! conditional distributions (digits-mlp, one step apart: 2.09 -> 1.89 bits per element at
//! rel 0.01, 0.61 -> 0.49 at rel 0.1; BENCHMARKS.md).

use super::logquant::{self, FloatKind, SpanCounts, EXPONENT_VALUES, SPAN};

/// Streams a large chunk's codes are split into.
pub const MAX_CLASSES: usize = 8;
/// Chunks with fewer elements keep one stream (each stream costs a header and a table).
const MIN_SPLIT_ELEMENTS: usize = 8192;
/// The top class holds the largest `1 / TOP_SHARE` of the elements with a normal reference (at
/// least), so one outlier does not push the rest of the chunk into the bottom class.
const TOP_SHARE: usize = 64;

/// Calls `f` with each block of up to [`SPAN`] exponent fields of `reference` (a class's count
/// fits a byte of a register over them, see [`split_by_reference`]), in order, and the index of
/// its first element.
fn exponent_blocks(kind: FloatKind, reference: &[u8], mut f: impl FnMut(usize, &[u16])) {
    let mut fields = [0u16; SPAN];
    for (b, block) in reference.chunks(SPAN * kind.size()).enumerate() {
        let fields = &mut fields[..block.len() / kind.size()];
        logquant::exponent_fields(kind, block, fields);
        f(b * SPAN, fields);
    }
}

/// How many elements of `reference` have each exponent field value: what [`top_of`] and
/// [`split_by_reference`] read, so the reference's exponents are counted once per chunk.
/// Counted in four tables, element `k` in table `k % 4`: a weight tensor's elements share a few
/// exponents, and one table's counter would wait on its own last increment.
pub fn exponent_counts(kind: FloatKind, reference: &[u8]) -> Vec<usize> {
    // Sized to the kind's exponent fields (256 entries for F32 and BF16): a chunk may be a few
    // elements, and the tables are cleared for each.
    let values = usize::from(logquant::exponent_max(kind)) + 1;
    let mut tables = vec![[0usize; 4]; values];
    exponent_blocks(kind, reference, |_, fields| {
        let mut quads = fields.chunks_exact(4);
        for q in &mut quads {
            for (table, &e) in q.iter().enumerate() {
                tables[usize::from(e)][table] += 1;
            }
        }
        for &e in quads.remainder() {
            tables[usize::from(e)][0] += 1;
        }
    });
    tables.into_iter().map(|t| t.iter().sum()).collect()
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
    exponent_blocks(kind, reference, |_, fields| {
        class.extend(fields.iter().map(|&e| by_exponent[usize::from(e)]));
    });
    (class, MAX_CLASSES)
}

/// A chunk's codes by class: the classes one after another in one buffer, each in element
/// order.
#[derive(Debug, PartialEq)]
pub struct ClassStreams {
    codes: Vec<i32>,
    /// Where each class ends in `codes`.
    ends: Vec<usize>,
}

impl ClassStreams {
    /// One stream of all the codes.
    pub fn one(codes: Vec<i32>) -> Self {
        let ends = vec![codes.len()];
        ClassStreams { codes, ends }
    }

    /// Each class's codes, in class order.
    pub fn iter(&self) -> impl Iterator<Item = &[i32]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.codes[a..b])
    }
}

/// The codes of each class of `reference`'s elements (`class_of` their exponent fields under
/// `top`; one stream for a chunk too small to split), in element order: where each class starts
/// from the reference's [`exponent_counts`], then one pass over its exponent fields writing
/// every code to its class's next place. A class's next place is its start plus a count kept in
/// one byte of a register over 255 elements (as the decoder's cursors), so consecutive elements
/// of a class do not wait on a store.
pub fn split_by_reference(
    kind: FloatKind,
    reference: &[u8],
    exponents: &[usize],
    top: u16,
    codes: &[i32],
) -> ClassStreams {
    let n = reference.len() / kind.size();
    debug_assert_eq!(codes.len(), n, "a code per element");
    if stream_count(n) == 1 {
        return ClassStreams::one(codes.to_vec());
    }
    let by_exponent = logquant::class_table(logquant::exponent_max(kind), top, class_of);
    let mut ends = vec![0usize; MAX_CLASSES];
    for (&class, &count) in by_exponent.iter().zip(exponents) {
        ends[usize::from(class)] += count;
    }
    let mut next = [0usize; MAX_CLASSES];
    let mut end = 0;
    for (next, size) in next.iter_mut().zip(ends.iter_mut()) {
        *next = end;
        end += *size;
        *size = end;
    }
    let mut out = vec![0i32; end];
    exponent_blocks(kind, reference, |first, fields| {
        let mut counts = SpanCounts::default();
        for (&e, &code) in fields.iter().zip(codes.get(first..).unwrap_or_default()) {
            let c = usize::from(by_exponent[usize::from(e) & (EXPONENT_VALUES - 1)]);
            out[next[c] + counts.take(c)] = code;
        }
        counts.advance(&mut next);
    });
    ClassStreams { codes: out, ends }
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
            let streams = split_by_reference(FloatKind::F32, bytes, &exponents, top, &codes[..n]);
            let want = split(&codes[..n], &c, count);
            assert_eq!(
                streams.iter().collect::<Vec<_>>(),
                want.iter().map(|s| &s[..]).collect::<Vec<_>>()
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
