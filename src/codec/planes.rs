//! Byte planes: element bytes regrouped so all byte-0s come first, then all byte-1s, and so on.
//! Exponent bytes of floats are nearly constant and compress well once apart from the noisy
//! mantissa bytes.

/// Splits `data` (a whole number of `unit`-byte elements) into `unit` planes, plane-major.
pub fn split(data: &[u8], unit: usize) -> Vec<u8> {
    debug_assert_eq!(data.len() % unit, 0);
    if unit == 1 {
        return data.to_vec();
    }
    let n = data.len() / unit;
    let mut out = vec![0u8; data.len()];
    match unit {
        2 => split_fixed::<2>(data, &mut out, n),
        4 => split_fixed::<4>(data, &mut out, n),
        8 => split_fixed::<8>(data, &mut out, n),
        _ => {
            for (i, elem) in data.chunks_exact(unit).enumerate() {
                for (b, &byte) in elem.iter().enumerate() {
                    out[b * n + i] = byte;
                }
            }
        }
    }
    out
}

fn split_fixed<const U: usize>(data: &[u8], out: &mut [u8], n: usize) {
    let (planes, _) = out.split_at_mut(U * n);
    let slices: [&mut [u8]; U] = split_into(planes, n);
    for (i, elem) in data.chunks_exact(U).enumerate() {
        for b in 0..U {
            slices[b][i] = elem[b];
        }
    }
}

/// `buf` cut into `U` consecutive slices of `n` bytes (the planes).
pub(super) fn split_into<const U: usize>(mut buf: &mut [u8], n: usize) -> [&mut [u8]; U] {
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut(n);
        buf = tail;
        head
    })
}

/// Inverse of [`split`].
pub fn merge(planes: &[u8], unit: usize) -> Vec<u8> {
    debug_assert_eq!(planes.len() % unit, 0);
    let n = planes.len() / unit;
    if n == 0 {
        return Vec::new();
    }
    let slices: Vec<&[u8]> = planes.chunks_exact(n).collect();
    merge_slices(&slices, n)
}

/// [`merge`] of planes held apart (`planes.len()` planes of `n` bytes each), without first
/// joining them.
pub fn merge_slices(planes: &[&[u8]], n: usize) -> Vec<u8> {
    let unit = planes.len();
    debug_assert!(planes.iter().all(|p| p.len() == n));
    if unit == 1 {
        return planes[0].to_vec();
    }
    let mut out = vec![0u8; n * unit];
    match unit {
        2 => merge_fixed::<2>(planes, &mut out),
        4 => merge_fixed::<4>(planes, &mut out),
        8 => merge_fixed::<8>(planes, &mut out),
        _ => {
            for (i, elem) in out.chunks_exact_mut(unit).enumerate() {
                for (b, byte) in elem.iter_mut().enumerate() {
                    *byte = planes[b][i];
                }
            }
        }
    }
    out
}

fn merge_fixed<const U: usize>(planes: &[&[u8]], out: &mut [u8]) {
    let n = out.len() / U;
    // Slices of exactly `n` bytes let the compiler drop the bounds checks in the loop.
    let slices: [&[u8]; U] = std::array::from_fn(|b| &planes[b][..n]);
    for (i, elem) in out.chunks_exact_mut(U).enumerate().take(n) {
        let elem: &mut [u8; U] = elem.try_into().expect("U bytes");
        for b in 0..U {
            elem[b] = slices[b][i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_layout() {
        let data = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(split(&data, 4), vec![1, 5, 2, 6, 3, 7, 4, 8]);
        assert_eq!(split(&data, 2), vec![1, 3, 5, 7, 2, 4, 6, 8]);
    }

    proptest! {
        #[test]
        fn split_merge_round_trip(unit in prop::sample::select(vec![1usize, 2, 3, 4, 8]), n in 0usize..300, seed in any::<u64>()) {
            let data: Vec<u8> = (0..n * unit).map(|i| (seed.wrapping_mul(i as u64 + 1) >> 13) as u8).collect();
            prop_assert_eq!(merge(&split(&data, unit), unit), data);
        }
    }
}
