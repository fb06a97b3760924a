//! The kernel sources (embedded at build time) and their run-time compilation with NVRTC.
//!
//! The three `.cu` files and their shared header are concatenated into one program: each
//! `#include "logquant.cuh"` is replaced by the header text (its include guard makes the repeats
//! empty), because NVRTC has no file system view of `kernels/`.

use std::ffi::{c_char, CStr, CString};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cudarc::nvrtc::{result as nvrtc_result, sys as nvrtc_sys};

const HEADER: &str = include_str!("../../kernels/logquant.cuh");
const INCLUDE_LINE: &str = "#include \"logquant.cuh\"";

/// Whether `libnvrtc` can be loaded.
pub(crate) fn nvrtc_present() -> bool {
    static PRESENT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PRESENT.get_or_init(|| {
        // SAFETY: only tries to dlopen the candidate library names, without calling into them.
        std::panic::catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
            .unwrap_or(false)
    })
}

/// `(file name, text)` of every kernel source, in program order.
pub(crate) const SOURCES: [(&str, &str); 3] = [
    ("logquant.cu", include_str!("../../kernels/logquant.cu")),
    ("planes.cu", include_str!("../../kernels/planes.cu")),
    ("stats.cu", include_str!("../../kernels/stats.cu")),
];

/// NVRTC options, always passed.
///
/// * `--fmad=false`: no FMA contraction. The CPU decoder is one correctly rounded f64 multiply
///   (or add) followed by an integer rounding to the element type, and the encoder's check is
///   `|x - a| <= eps * |a|` evaluated with separate roundings. Contracting any of these into an
///   FMA (NVRTC's default is `--fmad=true`) changes the last bit of some results, hence codes and
///   reconstructions, so GPU and CPU would no longer agree bit for bit.
/// * `--ftz=false`, `--prec-div=true`, `--prec-sqrt=true`: IEEE subnormals and divisions (the
///   defaults, stated so that no later default or fast-math flag can change them). Fast math
///   (`--use_fast_math`) is never passed: it implies `--fmad=true` and `--ftz=true`.
pub(crate) const NVRTC_OPTIONS: [&str; 4] = [
    "--fmad=false",
    "--ftz=false",
    "--prec-div=true",
    "--prec-sqrt=true",
];

/// Every `extern "C"` kernel the program defines.
pub(crate) fn kernel_names() -> Vec<String> {
    let mut names = Vec::new();
    for kind in ["f16", "bf16", "f32", "f64"] {
        for mode in ["rel", "abs"] {
            names.push(format!("snap_quantize_{kind}_{mode}"));
            names.push(format!("snap_dequantize_{kind}_{mode}"));
            names.push(format!("snap_code_hist_{kind}_{mode}"));
        }
    }
    for bits in [8, 16, 32, 64] {
        names.push(format!("snap_delta_planes_u{bits}"));
        names.push(format!("snap_merge_planes_u{bits}"));
    }
    names
}

/// The whole program as NVRTC sees it.
pub(crate) fn program_source() -> String {
    let mut out = String::new();
    for (name, text) in SOURCES {
        let _ = writeln!(out, "// ---- kernels/{name}");
        out.push_str(&text.replace(INCLUDE_LINE, HEADER));
        out.push('\n');
    }
    out
}

/// What one compilation produced.
#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    /// The NVRTC `--gpu-architecture` value, e.g. `sm_90` (a cubin) or `compute_90` (PTX).
    pub target: String,
    /// A cubin, or PTX text with a trailing NUL (what `cuModuleLoadData` takes).
    pub image: Vec<u8>,
    /// NVRTC's log (warnings); empty when clean.
    pub log: String,
    pub nvrtc_version: (i32, i32),
    /// The `.version` line of the PTX (e.g. `9.0`), for PTX targets.
    pub ptx_isa: Option<String>,
    pub elapsed: Duration,
}

/// NVRTC's own version, or why it is unavailable.
pub(crate) fn nvrtc_version() -> Result<(i32, i32), String> {
    if !nvrtc_present() {
        return Err("NVRTC (libnvrtc.so) not found".into());
    }
    let (mut major, mut minor) = (0i32, 0i32);
    // SAFETY: the library is present (checked above); nvrtcVersion only writes two ints through
    // the valid pointers it is given.
    let r = unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) };
    r.result()
        .map_err(|e| format!("nvrtcVersion failed: {e:?}"))?;
    Ok((major, minor))
}

fn c_chars_to_string(v: &[c_char]) -> String {
    let bytes: Vec<u8> = v
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Owns an `nvrtcProgram` and destroys it on drop.
struct Program {
    prog: nvrtc_sys::nvrtcProgram,
    // The source and name must outlive the program.
    _src: CString,
    _name: CString,
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: `prog` came from create_program and is destroyed exactly once, here.
        let _ = unsafe { nvrtc_result::destroy_program(self.prog) };
    }
}

/// Compiles the program for `target` (`sm_XY`: a cubin; `compute_XY`: PTX). Needs NVRTC only,
/// no driver or device.
pub(crate) fn compile(target: &str) -> Result<Compiled, String> {
    let valid = |p: &str| {
        target
            .strip_prefix(p)
            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric()))
    };
    let cubin = valid("sm_");
    if !cubin && !valid("compute_") {
        return Err(format!(
            "bad NVRTC target {target:?} (use sm_XY for a cubin or compute_XY for PTX)"
        ));
    }
    let nvrtc_version = nvrtc_version()?;
    let start = Instant::now();
    let src = CString::new(program_source()).map_err(|_| "kernel source holds a NUL byte")?;
    let name = CString::new("snapstore_kernels.cu").expect("no NUL");
    let prog = nvrtc_result::create_program(&src, Some(&name))
        .map_err(|e| format!("nvrtcCreateProgram failed: {e:?}"))?;
    let prog = Program {
        prog,
        _src: src,
        _name: name,
    };
    let mut options: Vec<String> = NVRTC_OPTIONS.iter().map(|s| s.to_string()).collect();
    options.push(format!("--gpu-architecture={target}"));
    // SAFETY: `prog.prog` is a live program created above and destroyed only by `Program::drop`.
    let compiled = unsafe { nvrtc_result::compile_program(prog.prog, &options) };
    // SAFETY: as above.
    let log = unsafe { nvrtc_result::get_program_log(prog.prog) }
        .map(|l| c_chars_to_string(&l))
        .unwrap_or_default();
    if let Err(e) = compiled {
        return Err(format!(
            "NVRTC {}.{} could not compile the kernels for {target} ({e:?}): {}",
            nvrtc_version.0,
            nvrtc_version.1,
            log.trim()
        ));
    }
    let (image, ptx_isa) = if cubin {
        let mut size = 0usize;
        // SAFETY: live, successfully compiled program; `size` is a valid out-pointer.
        unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog.prog, &mut size) }
            .result()
            .map_err(|e| format!("nvrtcGetCUBINSize failed: {e:?}"))?;
        let mut image = vec![0u8; size];
        // SAFETY: `image` holds exactly the `size` bytes NVRTC reported for the cubin.
        unsafe { nvrtc_sys::nvrtcGetCUBIN(prog.prog, image.as_mut_ptr().cast::<c_char>()) }
            .result()
            .map_err(|e| format!("nvrtcGetCUBIN failed: {e:?}"))?;
        (image, None)
    } else {
        // SAFETY: live, successfully compiled program.
        let ptx = unsafe { nvrtc_result::get_ptx(prog.prog) }
            .map_err(|e| format!("nvrtcGetPTX failed: {e:?}"))?;
        let mut image: Vec<u8> = ptx.iter().map(|&c| c as u8).collect();
        if image.last() != Some(&0) {
            image.push(0);
        }
        let text = CStr::from_bytes_until_nul(&image)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let isa = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(".version "))
            .map(|v| v.trim().to_string());
        (image, isa)
    };
    Ok(Compiled {
        target: target.to_string(),
        image,
        log: log.trim().to_string(),
        nvrtc_version,
        ptx_isa,
        elapsed: start.elapsed(),
    })
}

/// The kernel names missing from a PTX text (empty when all are there).
pub(crate) fn missing_entries(ptx: &str) -> Vec<String> {
    kernel_names()
        .into_iter()
        .filter(|k| !ptx.contains(&format!(".entry {k}(")))
        .collect()
}
