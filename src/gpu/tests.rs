//! Unit tests of the GPU module that need crate internals. Parity against a device is in
//! `tests/gpu.rs` (it skips without one).

use super::cpu;
use super::table::EncoderParams;
use crate::codec::logquant::{ErrorBound, FloatKind, PowerTable};

/// Reads a private `f64`/`bool` field of a `PowerTable` from its `Debug` text.
fn debug_field(dbg: &str, name: &str) -> String {
    let at = dbg.find(&format!("{name}: ")).expect("field in Debug") + name.len() + 2;
    dbg[at..]
        .split([',', ' ', '}'])
        .next()
        .expect("value")
        .to_string()
}

#[test]
fn params_match_private_fields() {
    let bounds = [
        ErrorBound::Relative(1e-2),
        ErrorBound::Relative(1e-3),
        ErrorBound::Relative(0.37),
        ErrorBound::Relative(3e-7),
        ErrorBound::Absolute(1e-3),
        ErrorBound::Absolute(0.25),
        ErrorBound::Absolute(7e-9),
    ];
    for bound in bounds {
        for dither in [false, true] {
            let t = if dither {
                PowerTable::dithered(bound, 40)
            } else {
                PowerTable::new(bound, 40)
            }
            .expect("valid table");
            let p = EncoderParams::of(&t).expect("recognised");
            let dbg = format!("{t:?}");
            let inv: f64 = debug_field(&dbg, "inv_step").parse().unwrap();
            let eps: f64 = debug_field(&dbg, "eps_check").parse().unwrap();
            let d: bool = debug_field(&dbg, "dither").parse().unwrap();
            assert_eq!(p.inv_step.to_bits(), inv.to_bits(), "{bound:?} {dither}");
            assert_eq!(p.eps_check.to_bits(), eps.to_bits(), "{bound:?} {dither}");
            assert_eq!(p.dither, d, "{bound:?} {dither}");
            assert_eq!(p.relative, matches!(bound, ErrorBound::Relative(_)));
            assert_eq!(p.max_code, 40);
        }
    }
}

#[test]
fn dither_hash_and_inv_step_predict_the_cpu_encoder() {
    // For normal values close together the dithered encoder's first candidate
    // floor(ln(A/B') * inv_step + u) always passes, so the CPU codes must equal the prediction
    // made with this module's copy of the hash and the recovered inverse step.
    let table = PowerTable::dithered(ErrorBound::Relative(1e-2), 1000).unwrap();
    let p = EncoderParams::of(&table).unwrap();
    let mut s = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let n = 4000;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let base = 0.5 + (next() % 1000) as f32 / 1000.0;
        let step = 1.0 + ((next() % 2001) as f32 - 1000.0) * 1e-4;
        b.extend_from_slice(&base.to_le_bytes());
        a.extend_from_slice(&(base * step).to_le_bytes());
    }
    let (q, _) = crate::codec::logquant::quantize(FloatKind::F32, &a, &b, &table).unwrap();
    assert!(q.exception_positions.is_empty());
    let mut checked = 0;
    for i in 0..n {
        let ab = cpu::load(FloatKind::F32, &a, i);
        let bb = cpu::load(FloatKind::F32, &b, i);
        if ab == bb {
            continue;
        }
        let (av, bv) = (
            cpu::widen(FloatKind::F32, ab),
            cpu::widen(FloatKind::F32, bb),
        );
        let est = (av / bv).ln() * p.inv_step;
        let m = (est + cpu::dither_u(i as u64, ab, bb)).floor() as i32;
        assert_eq!(q.codes[i], m, "element {i}");
        checked += 1;
    }
    assert!(checked > n / 2);
}

#[test]
fn keyframe_reference_is_signed_one() {
    let t: Vec<u8> = [-2.5f32, 0.0, -0.0, 7.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let r = cpu::keyframe_reference(FloatKind::F32, &t);
    let vals: Vec<f32> = r
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals, vec![-1.0, 1.0, -1.0, 1.0]);
}

#[test]
fn kernel_program_is_self_contained() {
    let src = super::kernels::program_source();
    assert!(
        !src.lines().any(|l| l.trim_start().starts_with("#include")),
        "NVRTC cannot resolve includes"
    );
    // Every kernel is instantiated by a macro line; the PTX entry check is in tests/gpu.rs.
    for kind in ["f16", "bf16", "f32", "f64"] {
        for mode in ["rel", "abs"] {
            assert!(
                src.contains(&format!("SNAP_QUANT_KERNELS({kind}, ")),
                "{kind}"
            );
            let hist = format!("SNAP_HIST_KERNEL({kind}, ");
            let line = src
                .lines()
                .find(|l| l.starts_with(&hist) && l.contains(mode));
            assert!(line.is_some(), "{kind} {mode}");
        }
    }
    for bits in [8, 16, 32, 64] {
        assert!(src.contains(&format!("SNAP_PLANE_KERNELS({bits})")));
    }
    assert_eq!(super::kernels::kernel_names().len(), 32);
}
