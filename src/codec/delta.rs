//! Exact element-wise deltas against a reference, before byte planes.
//!
//! Subtraction beats XOR on checkpoints (measured 4% smaller on both shared trajectories): a
//! weight that moves from 1.0 to 0.99999 flips most mantissa bits under XOR but gives a small
//! integer difference. Floats are first mapped to integers whose order matches the float order,
//! so a small change in value is a small difference; the difference is zigzag-coded so small
//! negative steps also have zero high bytes.

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
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            0 => Ok(Transform::None),
            1 => Ok(Transform::FloatSub),
            2 => Ok(Transform::IntSub),
            other => Err(format!("unknown transform {other}")),
        }
    }
}

macro_rules! width_impl {
    ($map:ident, $fwd:ident, $inv:ident, $u:ty, $i:ty, $n:expr) => {
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

        fn $fwd(data: &[u8], reference: &[u8], float: bool, out: &mut [u8]) {
            const BITS: u32 = $n * 8;
            let map = |v: $u| $map(v, float);
            for ((a, b), o) in data
                .chunks_exact($n)
                .zip(reference.chunks_exact($n))
                .zip(out.chunks_exact_mut($n))
            {
                let a = map(<$u>::from_le_bytes(a.try_into().unwrap()));
                let b = map(<$u>::from_le_bytes(b.try_into().unwrap()));
                let d = a.wrapping_sub(b) as $i;
                let z = ((d << 1) ^ (d >> (BITS - 1))) as $u;
                o.copy_from_slice(&z.to_le_bytes());
            }
        }

        fn $inv(delta: &[u8], reference: &[u8], float: bool, out: &mut [u8]) {
            const BITS: u32 = $n * 8;
            let map = |v: $u| $map(v, float);
            let unmap = |m: $u| -> $u {
                if !float {
                    m
                } else if m >> (BITS - 1) == 1 {
                    m & !(1 << (BITS - 1))
                } else {
                    !m
                }
            };
            for ((z, b), o) in delta
                .chunks_exact($n)
                .zip(reference.chunks_exact($n))
                .zip(out.chunks_exact_mut($n))
            {
                let z = <$u>::from_le_bytes(z.try_into().unwrap());
                let d = (z >> 1) ^ (z & 1).wrapping_neg();
                let b = map(<$u>::from_le_bytes(b.try_into().unwrap()));
                o.copy_from_slice(&unmap(b.wrapping_add(d)).to_le_bytes());
            }
        }
    };
}

width_impl!(map8, fwd8, inv8, u8, i8, 1);
width_impl!(map16, fwd16, inv16, u16, i16, 2);
width_impl!(map32, fwd32, inv32, u32, i32, 4);
width_impl!(map64, fwd64, inv64, u64, i64, 8);

fn is_float(t: Transform) -> bool {
    t == Transform::FloatSub
}

/// Applies `t` (not `None`) to `data` against `reference`; both hold whole `unit`-byte
/// elements. Units other than 1, 2, 4, 8 fall back to bytes.
pub fn forward(t: Transform, unit: usize, data: &[u8], reference: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    let float = is_float(t);
    match unit {
        2 => fwd16(data, reference, float, &mut out),
        4 => fwd32(data, reference, float, &mut out),
        8 => fwd64(data, reference, float, &mut out),
        _ => fwd8(data, reference, false, &mut out),
    }
    out
}

/// Inverse of [`forward`].
pub fn inverse(t: Transform, unit: usize, delta: &[u8], reference: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; delta.len()];
    let float = is_float(t);
    match unit {
        2 => inv16(delta, reference, float, &mut out),
        4 => inv32(delta, reference, float, &mut out),
        8 => inv64(delta, reference, float, &mut out),
        _ => inv8(delta, reference, false, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
                      a in prop::collection::vec(any::<u8>(), 0..64), b in prop::collection::vec(any::<u8>(), 0..64)) {
            let n = a.len().min(b.len()) / unit * unit;
            let (a, b) = (&a[..n], &b[..n]);
            let t = if float { Transform::FloatSub } else { Transform::IntSub };
            let d = forward(t, unit, a, b);
            prop_assert_eq!(inverse(t, unit, &d, b), a.to_vec());
        }
    }
}
