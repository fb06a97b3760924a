//! What a bounded code lost, per frame: the largest absolute error and the PSNR.

use super::{FrameDims, FrameDtype};

/// Error of one decoded frame against the original.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct FrameMetrics {
    /// Largest `|x - x'|` over the frame's elements (infinite when a finite value came back
    /// non-finite or the other way round; equal non-finite values count as 0).
    pub max_abs_err: f64,
    /// `10 log10(peak^2 / MSE)` over the finite elements; infinite when nothing differs. Peak is
    /// 255 for U8, 65535 for U16, and max - min of the original's finite values for F32.
    pub psnr: f64,
}

fn values(dtype: FrameDtype, bytes: &[u8]) -> impl Iterator<Item = f64> + '_ {
    bytes.chunks_exact(dtype.size()).map(move |b| match dtype {
        FrameDtype::U8 => f64::from(b[0]),
        FrameDtype::U16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
        FrameDtype::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    })
}

/// Per-frame error of `decoded` against `orig` (both whole frames of `dims`, same length).
pub fn frame_metrics(
    dtype: FrameDtype,
    dims: FrameDims,
    orig: &[u8],
    decoded: &[u8],
) -> Result<Vec<FrameMetrics>, String> {
    let fb = dims
        .elements()
        .and_then(|e| e.checked_mul(dtype.size()))
        .filter(|&b| b > 0)
        .ok_or("bad frame shape")?;
    if orig.len() != decoded.len() || !orig.len().is_multiple_of(fb) {
        return Err(format!(
            "original ({} bytes) and decoded ({} bytes) are not the same whole frames of {fb} bytes",
            orig.len(),
            decoded.len()
        ));
    }
    let peak = match dtype {
        FrameDtype::U8 => 255.0,
        FrameDtype::U16 => 65535.0,
        FrameDtype::F32 => {
            let (lo, hi) = values(dtype, orig)
                .filter(|v| v.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
            if lo <= hi {
                hi - lo
            } else {
                0.0
            }
        }
    };
    Ok(orig
        .chunks_exact(fb)
        .zip(decoded.chunks_exact(fb))
        .map(|(a, b)| {
            let (mut max, mut sq, mut n) = (0.0f64, 0.0f64, 0usize);
            for (x, y) in values(dtype, a).zip(values(dtype, b)) {
                let d = if x.is_finite() && y.is_finite() {
                    let d = (x - y).abs();
                    sq += d * d;
                    n += 1;
                    d
                } else if x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()) {
                    0.0
                } else {
                    f64::INFINITY
                };
                max = max.max(d);
            }
            let mse = if n > 0 { sq / n as f64 } else { 0.0 };
            let psnr = if mse == 0.0 {
                f64::INFINITY
            } else {
                10.0 * (peak * peak / mse).log10()
            };
            FrameMetrics {
                max_abs_err: max,
                psnr,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_and_psnr() {
        let dims = FrameDims { h: 1, w: 4, c: 1 };
        let m = frame_metrics(
            FrameDtype::U8,
            dims,
            &[0, 10, 20, 30, 5, 5, 5, 5],
            &[1, 10, 18, 30, 5, 5, 5, 5],
        )
        .unwrap();
        assert_eq!(m[0].max_abs_err, 2.0);
        let mse: f64 = (1.0 + 4.0) / 4.0;
        assert!((m[0].psnr - 10.0 * (255.0f64 * 255.0 / mse).log10()).abs() < 1e-9);
        assert_eq!(
            m[1],
            FrameMetrics {
                max_abs_err: 0.0,
                psnr: f64::INFINITY
            }
        );
        assert!(frame_metrics(FrameDtype::U8, dims, &[0; 8], &[0; 7]).is_err());
    }

    #[test]
    fn f32_peak_and_non_finite() {
        let f = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let dims = FrameDims { h: 2, w: 2, c: 1 };
        let a = f(&[0.0, 2.0, f32::NAN, f32::INFINITY]);
        let b = f(&[0.5, 2.0, f32::NAN, f32::INFINITY]);
        let m = frame_metrics(FrameDtype::F32, dims, &a, &b).unwrap();
        assert_eq!(m[0].max_abs_err, 0.5);
        let mse: f64 = 0.25 / 2.0;
        assert!((m[0].psnr - 10.0 * (4.0 / mse).log10()).abs() < 1e-9);
        let c = f(&[0.0, 2.0, 1.0, f32::INFINITY]);
        assert_eq!(
            frame_metrics(FrameDtype::F32, dims, &a, &c).unwrap()[0].max_abs_err,
            f64::INFINITY
        );
    }
}
