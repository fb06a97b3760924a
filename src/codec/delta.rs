//! Exact element-wise deltas against a reference, before byte planes.
//!
//! Subtraction beats XOR on checkpoints (measured 4% smaller on both shared trajectories): a
//! weight that moves from 1.0 to 0.99999 flips most mantissa bits under XOR but gives a small
//! integer difference. Floats are first mapped to integers whose order matches the float order,
//! so a small change in value is a small difference; the difference is zigzag-coded so small
//! negative steps also have zero high bytes.

use super::error::CodecError;

/// An exact transform of a chunk against its reference. The discriminants are on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Transform {
    /// No reference used.
    None = 0,
    /// Order-preserving integer map of floats, wrapping difference, zigzag.
    FloatSub = 1,
    /// Wrapping difference of integers, zigzag.
    IntSub = 2,
}

impl TryFrom<u8> for Transform {
    type Error = CodecError;
    fn try_from(v: u8) -> Result<Self, CodecError> {
        match v {
            0 => Ok(Transform::None),
            1 => Ok(Transform::FloatSub),
            2 => Ok(Transform::IntSub),
            other => Err(CodecError::UnknownTag {
                what: "transform",
                value: other,
            }),
        }
    }
}

macro_rules! width_impl {
    ($map:ident, $zig:ident, $unzig:ident, $u:ty, $i:ty, $n:expr) => {
        /// Order-preserving integer image of a float's bits (identity for integers).
        #[inline(always)]
        fn $map(v: $u, float: bool) -> $u {
            const BITS: u32 = $n * 8;
            if !float {
                v
            } else if v >> (BITS - 1) == 1 {
                !v
            } else {
                v | (1 << (BITS - 1))
            }
        }

        /// One element's zigzagged difference against its reference.
        #[inline(always)]
        fn $zig(a: [u8; $n], b: [u8; $n], float: bool) -> [u8; $n] {
            const BITS: u32 = $n * 8;
            let a = $map(<$u>::from_le_bytes(a), float);
            let b = $map(<$u>::from_le_bytes(b), float);
            let d = a.wrapping_sub(b) as $i;
            (((d << 1) ^ (d >> (BITS - 1))) as $u).to_le_bytes()
        }

        /// Inverse of the function above: the element from its difference and reference.
        #[inline(always)]
        fn $unzig(z: [u8; $n], b: [u8; $n], float: bool) -> [u8; $n] {
            const BITS: u32 = $n * 8;
            let z = <$u>::from_le_bytes(z);
            let d = (z >> 1) ^ (z & 1).wrapping_neg();
            let m = $map(<$u>::from_le_bytes(b), float).wrapping_add(d);
            let v = if !float {
                m
            } else if m >> (BITS - 1) == 1 {
                m & !(1 << (BITS - 1))
            } else {
                !m
            };
            v.to_le_bytes()
        }
    };
}

width_impl!(map8, zig8, unzig8, u8, i8, 1);
width_impl!(map16, zig16, unzig16, u16, i16, 2);
width_impl!(map32, zig32, unzig32, u32, i32, 4);
width_impl!(map64, zig64, unzig64, u64, i64, 8);

fn is_float(t: Transform) -> bool {
    t == Transform::FloatSub
}

/// Element by element into byte planes (see `planes`): `zig` gives an element's delta bytes.
fn planes_of<const U: usize>(
    data: &[u8],
    reference: &[u8],
    zig: impl Fn([u8; U], [u8; U]) -> [u8; U],
) -> Vec<u8> {
    let n = data.len() / U;
    let mut out = vec![0u8; data.len()];
    let planes: [&mut [u8]; U] = super::planes::split_into(&mut out, n);
    for (i, (a, b)) in data
        .chunks_exact(U)
        .zip(reference.chunks_exact(U))
        .enumerate()
    {
        let z = zig(
            a.try_into().expect("U bytes"),
            b.try_into().expect("U bytes"),
        );
        for k in 0..U {
            planes[k][i] = z[k];
        }
    }
    out
}

/// Element by element in place: `unzig` turns an element's delta bytes back into its bytes.
fn undo_in_place<const U: usize>(
    data: &mut [u8],
    reference: &[u8],
    unzig: impl Fn([u8; U], [u8; U]) -> [u8; U],
) {
    for (z, b) in data.chunks_exact_mut(U).zip(reference.chunks_exact(U)) {
        let v = unzig(
            (&*z).try_into().expect("U bytes"),
            b.try_into().expect("U bytes"),
        );
        z.copy_from_slice(&v);
    }
}

/// Applies `t` (not `None`) to `data` against `reference` (both whole `unit`-byte elements) and
/// returns the delta's byte planes (see `planes`). 2-, 4- and 8-byte elements are differenced
/// as integers, straight into the planes in one pass; other widths byte by byte.
pub fn forward_planes(t: Transform, unit: usize, data: &[u8], reference: &[u8]) -> Vec<u8> {
    let float = is_float(t);
    match unit {
        2 => planes_of::<2>(data, reference, |a, b| zig16(a, b, float)),
        4 => planes_of::<4>(data, reference, |a, b| zig32(a, b, float)),
        8 => planes_of::<8>(data, reference, |a, b| zig64(a, b, float)),
        _ => super::planes::split(
            &planes_of::<1>(data, reference, |a, b| zig8(a, b, false)),
            unit,
        ),
    }
}

/// Inverse of [`forward_planes`] once the planes are merged back into elements: overwrites the
/// delta with the data (no second buffer).
pub fn inverse_in_place(t: Transform, unit: usize, data: &mut [u8], reference: &[u8]) {
    let float = is_float(t);
    match unit {
        2 => undo_in_place::<2>(data, reference, |z, b| unzig16(z, b, float)),
        4 => undo_in_place::<4>(data, reference, |z, b| unzig32(z, b, float)),
        8 => undo_in_place::<8>(data, reference, |z, b| unzig64(z, b, float)),
        _ => undo_in_place::<1>(data, reference, |z, b| unzig8(z, b, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::planes;
    use proptest::prelude::*;

    /// The delta with its bytes in element order.
    fn forward(t: Transform, unit: usize, data: &[u8], reference: &[u8]) -> Vec<u8> {
        planes::merge(&forward_planes(t, unit, data, reference), unit)
    }

    fn inverse(t: Transform, unit: usize, delta: &[u8], reference: &[u8]) -> Vec<u8> {
        let mut out = delta.to_vec();
        inverse_in_place(t, unit, &mut out, reference);
        out
    }

    #[test]
    fn close_floats_give_small_codes() {
        let a = 0.99999f32.to_le_bytes();
        let b = 1.0f32.to_le_bytes();
        let d = forward(Transform::FloatSub, 4, &a, &b);
        assert_eq!(&d[2..], &[0, 0]);
        let a = (-2.5f32).to_le_bytes();
        let b = (-2.5000002f32).to_le_bytes();
        let d = forward(Transform::FloatSub, 4, &a, &b);
        assert_eq!(&d[1..], &[0, 0, 0]);
    }

    proptest! {
        #[test]
        fn round_trip(unit in prop::sample::select(vec![1usize, 2, 3, 4, 8]), float in any::<bool>(),
                      a in prop::collection::vec(any::<u8>(), 0..700), b in prop::collection::vec(any::<u8>(), 0..700)) {
            let n = a.len().min(b.len()) / unit * unit;
            let (a, b) = (&a[..n], &b[..n]);
            let t = if float { Transform::FloatSub } else { Transform::IntSub };
            let d = forward(t, unit, a, b);
            prop_assert_eq!(inverse(t, unit, &d, b), a.to_vec());
            prop_assert_eq!(forward_planes(t, unit, a, b), planes::split(&d, unit));
        }
    }
}
