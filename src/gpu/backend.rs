//! One interface over the CPU codec and the CUDA kernels (issue #4).
//!
//! [`Backend::detect`] picks CUDA when a driver, a device and NVRTC load, and the CPU otherwise,
//! saying why. Both variants run the same operations with the same results, bit for bit:
//! [`Backend::quantize`] / [`Backend::dequantize`] (the error-bounded log quantizer),
//! [`Backend::delta_planes`] / [`Backend::merge_planes`] (the exact float delta and byte planes)
//! and [`Backend::code_histograms`] (code statistics for many candidate bounds in one pass).
//! Commit and checkout run the quantizer through it (the codec's `QuantEngine`, via the
//! repository's [`LazyBackend`]); the entropy stage stays on the CPU threads.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use super::cpu;
use super::device::{self, GpuDevice};
use super::kernels;
use super::pipeline::{GpuError, GpuQuantizer};
use super::table::EncoderParams;
use crate::bound::Bound;
use crate::codec::delta::{self, Transform};
use crate::codec::error::{CodecError, CodecResult};
use crate::codec::logquant::{self, FloatKind, PowerTable, QuantizedChunk};
use crate::codec::lossy::{self, CpuQuant, QuantEngine, Rounding};
use crate::codec::planes;
use crate::dtype::Dtype;

/// Codes `-HIST_CLIP..=HIST_CLIP` each have a bin in a code histogram.
pub const HIST_CLIP: usize = cpu::HIST_CLIP;
/// Bins of a code histogram: bin `m + HIST_CLIP` for code `m`, then [`HIST_OVERFLOW`], then
/// [`HIST_EXCEPTION`].
pub const HIST_BINS: usize = cpu::HIST_BINS;
/// The bin counting codes beyond `±HIST_CLIP`.
pub const HIST_OVERFLOW: usize = cpu::HIST_OVERFLOW;
/// The bin counting elements only an exception can store (non-finite estimate).
pub const HIST_EXCEPTION: usize = cpu::HIST_EXCEPTION;
/// NVRTC options every kernel compilation uses (FMA contraction off; see `kernels/logquant.cuh`).
pub const NVRTC_OPTIONS: [&str; 4] = kernels::NVRTC_OPTIONS;
/// Set (non-empty) to make [`Backend::detect`] choose the CPU.
pub const NO_CUDA_ENV: &str = device::DISABLE_ENV;

/// Which backend to use (the CLI's `--backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// CUDA when a device loads, else the CPU. A repository narrows it: CUDA quantizes only
    /// commits of at least `AUTO_CUDA_MIN_BYTES` under a bound, and decoding stays on the CPU.
    #[default]
    Auto,
    /// Always the CPU.
    Cpu,
    /// CUDA, or an error saying why not.
    Cuda,
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "cuda" => Ok(BackendChoice::Cuda),
            other => Err(format!("unknown backend {other:?} (use auto, cpu or cuda)")),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Cuda => "cuda",
        })
    }
}

/// Why a backend call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// CUDA was required but cannot be used; the one-line reason.
    Unavailable(String),
    /// The arguments are refused; the message is the CPU codec's.
    Invalid(String),
    /// A CUDA driver call failed.
    Cuda(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Unavailable(r) => write!(f, "the CUDA backend is unavailable: {r}"),
            BackendError::Invalid(m) => write!(f, "{m}"),
            BackendError::Cuda(m) => write!(f, "CUDA error: {m}"),
        }
    }
}

impl std::error::Error for BackendError {}

impl From<GpuError> for BackendError {
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::Quant(q) => BackendError::Invalid(q.to_string()),
            GpuError::Invalid(m) => BackendError::Invalid(m),
            GpuError::Cuda(m) => BackendError::Cuda(m),
        }
    }
}

/// Parameters of the error-bounded quantizer: what a lossy commit passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    /// `Bound::Rel` or `Bound::Abs` (`Bound::Lossless` is refused).
    pub bound: Bound,
    /// Nearest or dithered codes.
    pub rounding: Rounding,
    /// Largest code magnitude.
    pub max_code: u32,
}

impl QuantParams {
    /// The parameters a commit uses for `bound` and `rounding` (the code range of lossy.rs).
    pub fn new(bound: Bound, rounding: Rounding) -> QuantParams {
        let max_code = lossy::error_bound(bound).map_or(logquant::MAX_CODE_LIMIT, |eb| {
            lossy::max_code_for(eb, rounding)
        });
        QuantParams {
            bound,
            rounding,
            max_code,
        }
    }

    /// The inverse step of the codes (codes per unit of `ln(A/B')`, or of `A - B'`): what
    /// [`Backend::code_histograms`] takes per candidate bound.
    pub fn inv_step(&self) -> Result<f64, BackendError> {
        let table = self.table()?;
        let p = EncoderParams::of(&table)
            .ok_or_else(|| BackendError::Invalid("unrecognised power table".into()))?;
        Ok(p.inv_step)
    }

    /// The power table, shared with the codec's bounded cache.
    fn table(&self) -> Result<Arc<PowerTable>, BackendError> {
        let bound = lossy::error_bound(self.bound)
            .ok_or_else(|| BackendError::Invalid("a lossless bound has no quantizer".into()))?;
        lossy::table(bound, self.max_code, self.rounding)
            .map_err(|e| BackendError::Invalid(e.to_string()))
    }
}

/// A quantized chunk and its reconstruction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quantized {
    /// One code per element; 0 at exceptions.
    pub codes: Vec<i32>,
    /// Strictly ascending indices of the elements stored exactly.
    pub exception_positions: Vec<u32>,
    /// Their raw little-endian bytes, one element each, same order.
    pub exception_values: Vec<u8>,
    /// The reconstruction `A'` the decoder will produce (the next snapshot's reference).
    pub recon: Vec<u8>,
}

/// Quantizers (each with its own two streams and buffers) per CUDA backend: commit and checkout
/// call the backend from every rayon thread, one chunk at a time, so several chunks are in
/// flight on the device while other threads run the CPU entropy stage.
const QUANTIZER_POOL: usize = 4;

/// The CUDA device and its kernels (opaque).
pub struct CudaBackend {
    dev: Arc<GpuDevice>,
    quantizers: Vec<Mutex<GpuQuantizer>>,
}

impl fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaBackend({})", self.describe())
    }
}

impl CudaBackend {
    fn describe(&self) -> String {
        let d = &self.dev;
        format!(
            "{} (sm_{}{}, {} SMs, {:.1} GiB), driver {}.{}, NVRTC {}.{}, {}",
            d.name,
            d.compute_capability.0,
            d.compute_capability.1,
            d.multiprocessors,
            d.total_mem as f64 / (1u64 << 30) as f64,
            d.driver_version.0,
            d.driver_version.1,
            d.nvrtc_version.0,
            d.nvrtc_version.1,
            d.image
        )
    }

    /// A free quantizer of the pool, else waits for one (chosen by thread, to spread waiters).
    fn q(&self) -> std::sync::MutexGuard<'_, GpuQuantizer> {
        // A panic while holding a lock leaves no device state half-written that a later call
        // relies on (every call re-stages its inputs), so a poisoned lock is still usable.
        for m in &self.quantizers {
            match m.try_lock() {
                Ok(g) => return g,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        let k = rayon::current_thread_index().unwrap_or(0) % self.quantizers.len();
        self.quantizers[k].lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the delta math runs.
#[derive(Debug)]
pub enum Backend {
    /// The CPU codec. `reason` says why CUDA is not used (`None` when the CPU was asked for).
    Cpu {
        /// One line: why not CUDA.
        reason: Option<String>,
    },
    /// A CUDA device.
    Cuda(CudaBackend),
}

fn float_kind(dtype: Dtype) -> Result<FloatKind, BackendError> {
    match dtype {
        Dtype::F16 => Ok(FloatKind::F16),
        Dtype::BF16 => Ok(FloatKind::BF16),
        Dtype::F32 => Ok(FloatKind::F32),
        Dtype::F64 => Ok(FloatKind::F64),
        other => Err(BackendError::Invalid(format!(
            "{other} tensors cannot be stored under an error bound"
        ))),
    }
}

fn invalid(e: logquant::QuantError) -> BackendError {
    BackendError::Invalid(e.to_string())
}

fn check_planes_args(
    unit: usize,
    data: &[u8],
    reference: Option<&[u8]>,
) -> Result<(), BackendError> {
    if unit == 0 || !data.len().is_multiple_of(unit) {
        return Err(BackendError::Invalid(format!(
            "{} bytes are not whole {unit}-byte elements",
            data.len()
        )));
    }
    if reference.is_some_and(|r| r.len() != data.len()) {
        return Err(BackendError::Invalid(
            "reference and data lengths differ".into(),
        ));
    }
    Ok(())
}

impl Backend {
    /// CUDA when a driver, a device and NVRTC load (and [`NO_CUDA_ENV`] is not set), else the
    /// CPU with the reason.
    pub fn detect() -> Backend {
        if std::env::var_os(NO_CUDA_ENV).is_some_and(|v| !v.is_empty()) {
            return Backend::Cpu {
                reason: Some(format!("{NO_CUDA_ENV} is set")),
            };
        }
        match Backend::cuda() {
            Ok(b) => b,
            Err(BackendError::Unavailable(reason)) => Backend::Cpu {
                reason: Some(reason),
            },
            Err(e) => Backend::Cpu {
                reason: Some(e.to_string()),
            },
        }
    }

    /// The CPU backend.
    pub fn cpu() -> Backend {
        Backend::Cpu { reason: None }
    }

    /// The CUDA backend, or why it cannot be had. Never panics, with or without CUDA.
    pub fn cuda() -> Result<Backend, BackendError> {
        Backend::cuda_with_window(0)
    }

    /// The CUDA backend with a pipeline window of `window` elements per stream (0: the default,
    /// 2^21, or `SNAPSTORE_GPU_WINDOW`). Device memory stays under about `58 * window` bytes.
    pub fn cuda_with_window(window: usize) -> Result<Backend, BackendError> {
        let dev = device::device().map_err(BackendError::Unavailable)?;
        // Buffers are allocated on a quantizer's first use, so idle ones cost nothing.
        let quantizers = (0..QUANTIZER_POOL)
            .map(|_| Mutex::new(GpuQuantizer::new(dev.clone(), window)))
            .collect();
        Ok(Backend::Cuda(CudaBackend { quantizers, dev }))
    }

    /// The backend for a CLI choice (`cuda` without a device is an error naming the reason).
    pub fn select(choice: BackendChoice) -> Result<Backend, BackendError> {
        match choice {
            BackendChoice::Auto => Ok(Backend::detect()),
            BackendChoice::Cpu => Ok(Backend::cpu()),
            BackendChoice::Cuda => Backend::cuda(),
        }
    }

    /// Whether this is the CUDA backend.
    pub fn is_cuda(&self) -> bool {
        matches!(self, Backend::Cuda(_))
    }

    /// `"cpu"` or `"cuda"`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cpu { .. } => "cpu",
            Backend::Cuda(_) => "cuda",
        }
    }

    /// One line: the backend and its device, or why the CPU is used.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu { reason: None } => "cpu".into(),
            Backend::Cpu {
                reason: Some(reason),
            } => format!("cpu ({reason})"),
            Backend::Cuda(c) => format!("cuda: {}", c.describe()),
        }
    }

    /// Quantizes `target` against the reconstructed `reference` (`None`: a keyframe, coded
    /// against `sign(A) * 1.0`), as a lossy commit does. Both backends return identical results
    /// (see the module docs of `gpu` for the one theoretical exception in the codes).
    pub fn quantize(
        &self,
        dtype: Dtype,
        params: &QuantParams,
        target: &[u8],
        reference: Option<&[u8]>,
    ) -> Result<Quantized, BackendError> {
        let kind = float_kind(dtype)?;
        let table = params.table()?;
        // The kernels do not follow the lattice yet (no GPU has run them): its tables stay on the
        // CPU, which gives the same bits.
        let (chunk, recon) = match self {
            Backend::Cuda(c) if !table.is_lattice() => {
                c.q().quantize(kind, target, reference, &table)?
            }
            _ => {
                let keyframe;
                let r = match reference {
                    Some(r) => r,
                    None => {
                        if !target.len().is_multiple_of(kind.size()) {
                            return Err(invalid(logquant::QuantError::UnalignedLength {
                                len: target.len(),
                                elem_size: kind.size(),
                            }));
                        }
                        keyframe = cpu::keyframe_reference(kind, target);
                        &keyframe
                    }
                };
                if reference.is_none() && table.is_lattice() {
                    logquant::quantize_from_bases(kind, target, r, &table).map_err(invalid)?
                } else {
                    logquant::quantize(kind, target, r, &table).map_err(invalid)?
                }
            }
        };
        Ok(Quantized {
            codes: chunk.codes,
            exception_positions: chunk.exception_positions,
            exception_values: chunk.exception_values,
            recon,
        })
    }

    /// Rebuilds `A'` from the reference and a quantized chunk (`q.recon` is not read).
    pub fn dequantize(
        &self,
        dtype: Dtype,
        params: &QuantParams,
        reference: &[u8],
        q: &Quantized,
    ) -> Result<Vec<u8>, BackendError> {
        let kind = float_kind(dtype)?;
        let table = params.table()?;
        let chunk = QuantizedChunk {
            codes: q.codes.clone(),
            exception_positions: q.exception_positions.clone(),
            exception_values: q.exception_values.clone(),
        };
        match self {
            Backend::Cuda(c) if !table.is_lattice() => {
                Ok(c.q().dequantize(kind, reference, &chunk, &table)?)
            }
            _ => logquant::dequantize(kind, reference, &chunk, &table).map_err(invalid),
        }
    }

    /// The exact transform of a chunk of `unit`-byte elements: the order-preserving float
    /// (`float`) or integer delta against `reference`, zigzagged, then split into byte planes
    /// (`reference: None`: the planes of `data` itself).
    pub fn delta_planes(
        &self,
        unit: usize,
        float: bool,
        data: &[u8],
        reference: Option<&[u8]>,
    ) -> Result<Vec<u8>, BackendError> {
        check_planes_args(unit, data, reference)?;
        match self {
            Backend::Cuda(c) if [1, 2, 4, 8].contains(&unit) => {
                Ok(c.q().delta_planes(unit, float, data, reference)?)
            }
            _ => Ok(match reference {
                Some(r) => delta::forward_planes(transform(float), unit, data, r),
                None => planes::split(data, unit),
            }),
        }
    }

    /// Inverse of [`Backend::delta_planes`].
    pub fn merge_planes(
        &self,
        unit: usize,
        float: bool,
        planes: &[u8],
        reference: Option<&[u8]>,
    ) -> Result<Vec<u8>, BackendError> {
        check_planes_args(unit, planes, reference)?;
        match self {
            Backend::Cuda(c) if [1, 2, 4, 8].contains(&unit) => {
                Ok(c.q().merge_planes(unit, float, planes, reference)?)
            }
            _ => {
                let mut merged = planes::merge(planes, unit);
                if let Some(r) = reference {
                    delta::inverse_in_place(transform(float), unit, &mut merged, r);
                }
                Ok(merged)
            }
        }
    }

    /// One histogram of first-candidate codes per inverse step (see [`QuantParams::inv_step`]),
    /// all in one pass over the data: bin `m + HIST_CLIP` for code `m`, [`HIST_OVERFLOW`] beyond
    /// `±HIST_CLIP`, [`HIST_EXCEPTION`] for elements only an exception can store.
    /// `reference: None` is a keyframe.
    pub fn code_histograms(
        &self,
        dtype: Dtype,
        relative: bool,
        rounding: Rounding,
        target: &[u8],
        reference: Option<&[u8]>,
        inv_steps: &[f64],
    ) -> Result<Vec<[u64; HIST_BINS]>, BackendError> {
        let kind = float_kind(dtype)?;
        if !target.len().is_multiple_of(kind.size()) {
            return Err(invalid(logquant::QuantError::UnalignedLength {
                len: target.len(),
                elem_size: kind.size(),
            }));
        }
        if reference.is_some_and(|r| r.len() != target.len()) {
            return Err(BackendError::Invalid(
                "reference and target lengths differ".into(),
            ));
        }
        let dither = rounding == Rounding::Dither;
        match self {
            Backend::Cpu { .. } => Ok(cpu::code_histograms(
                kind, relative, dither, target, reference, inv_steps,
            )),
            Backend::Cuda(c) => Ok(c
                .q()
                .code_histograms(kind, relative, dither, target, reference, inv_steps)?),
        }
    }
}

impl QuantEngine for Backend {
    fn quantize(
        &self,
        kind: FloatKind,
        target: &[u8],
        reference: &[u8],
        table: &PowerTable,
    ) -> CodecResult<(QuantizedChunk, Vec<u8>)> {
        match self {
            Backend::Cuda(c) if !table.is_lattice() => c
                .q()
                .quantize(kind, target, Some(reference), table)
                .map_err(|e| CodecError::Engine(Box::new(BackendError::from(e)))),
            _ => CpuQuant.quantize(kind, target, reference, table),
        }
    }

    fn dequantize(
        &self,
        kind: FloatKind,
        reference: &[u8],
        q: &QuantizedChunk,
        table: &PowerTable,
    ) -> CodecResult<Vec<u8>> {
        match self {
            Backend::Cuda(c) if !table.is_lattice() => c
                .q()
                .dequantize(kind, reference, q, table)
                .map_err(|e| CodecError::Engine(Box::new(BackendError::from(e)))),
            _ => CpuQuant.dequantize(kind, reference, q, table),
        }
    }
}

/// A backend resolved on first use, so a command that never quantizes (a lossless commit, `log`)
/// never pays for a CUDA context and the kernel compile.
#[derive(Debug)]
pub struct LazyBackend {
    choice: BackendChoice,
    backend: OnceLock<Backend>,
}

impl LazyBackend {
    /// The backend `choice` will resolve to. `cuda` without a usable device resolves to the CPU
    /// with the reason (the CLI refuses `--backend cuda` up front instead).
    pub fn new(choice: BackendChoice) -> LazyBackend {
        LazyBackend {
            choice,
            backend: OnceLock::new(),
        }
    }

    /// What was asked for.
    pub fn choice(&self) -> BackendChoice {
        self.choice
    }

    /// The backend, resolving it now if needed.
    pub fn get(&self) -> &Backend {
        self.backend
            .get_or_init(|| match Backend::select(self.choice) {
                Ok(b) => b,
                Err(e) => Backend::Cpu {
                    reason: Some(e.to_string()),
                },
            })
    }
}

impl QuantEngine for LazyBackend {
    fn quantize(
        &self,
        kind: FloatKind,
        target: &[u8],
        reference: &[u8],
        table: &PowerTable,
    ) -> CodecResult<(QuantizedChunk, Vec<u8>)> {
        QuantEngine::quantize(self.get(), kind, target, reference, table)
    }

    fn dequantize(
        &self,
        kind: FloatKind,
        reference: &[u8],
        q: &QuantizedChunk,
        table: &PowerTable,
    ) -> CodecResult<Vec<u8>> {
        QuantEngine::dequantize(self.get(), kind, reference, q, table)
    }
}

fn transform(float: bool) -> Transform {
    if float {
        Transform::FloatSub
    } else {
        Transform::IntSub
    }
}

/// The result of compiling the kernels with NVRTC (no driver or device needed).
#[derive(Clone, Debug)]
pub struct KernelBuild {
    /// The `--gpu-architecture` value: `sm_XY` (cubin) or `compute_XY` (PTX).
    pub target: String,
    /// NVRTC's version.
    pub nvrtc_version: (i32, i32),
    /// The PTX ISA version (`.version`), for PTX targets.
    pub ptx_isa: Option<String>,
    /// Size of the cubin or PTX.
    pub bytes: usize,
    /// NVRTC's warnings; empty when clean.
    pub log: String,
    /// Kernels missing from the PTX (always empty for a cubin, which is not inspected).
    pub missing_kernels: Vec<String>,
    /// FMA instructions in the PTX outside what `log()` brings in cannot be told apart here;
    /// this counts all `fma.rn.f64` (the libdevice `log` uses FMA internally, by design).
    pub fma_count: usize,
    /// Compile time in milliseconds.
    pub millis: u128,
}

/// Compiles every kernel for `target` (`sm_90`, `compute_90`, ...) with the NVRTC found at run
/// time. Fails when NVRTC is missing or the sources do not compile.
pub fn compile_kernels(target: &str) -> Result<KernelBuild, BackendError> {
    let c = kernels::compile(target).map_err(BackendError::Unavailable)?;
    let text = if c.ptx_isa.is_some() {
        String::from_utf8_lossy(&c.image).into_owned()
    } else {
        String::new()
    };
    Ok(KernelBuild {
        target: c.target,
        nvrtc_version: c.nvrtc_version,
        ptx_isa: c.ptx_isa,
        bytes: c.image.len(),
        log: c.log,
        missing_kernels: if text.is_empty() {
            Vec::new()
        } else {
            kernels::missing_entries(&text)
        },
        fma_count: text.matches("fma.rn.f64").count(),
        millis: c.elapsed.as_millis(),
    })
}

/// The name of every kernel.
pub fn kernel_names() -> Vec<String> {
    kernels::kernel_names()
}

/// `snapstore doctor`: the backend `auto` picks, the device, driver and NVRTC versions, or why
/// the CPU path is used. Several lines, no trailing newline; never panics.
pub fn doctor_report() -> String {
    doctor(BackendChoice::Auto).unwrap_or_else(|r| r)
}

/// The doctor report for a `--backend` choice: `Err` (with the same full report) when `cuda` was
/// asked for and cannot be had.
pub fn doctor(choice: BackendChoice) -> Result<String, String> {
    let backend = match choice {
        BackendChoice::Cpu => Backend::Cpu {
            reason: Some("--backend cpu".into()),
        },
        BackendChoice::Auto => Backend::detect(),
        BackendChoice::Cuda => Backend::cuda().unwrap_or_else(|e| Backend::Cpu {
            reason: Some(match e {
                BackendError::Unavailable(r) => r,
                other => other.to_string(),
            }),
        }),
    };
    let driver = match device::driver_version() {
        Ok((a, b)) => format!("CUDA {a}.{b}"),
        Err(e) => e,
    };
    let nvrtc = match kernels::nvrtc_version() {
        Ok((a, b)) => format!("{a}.{b}"),
        Err(e) => e,
    };
    let mut lines = vec![format!("backend: {}", backend.name())];
    match &backend {
        Backend::Cpu { reason } => {
            lines.push(format!(
                "reason: {}",
                reason.as_deref().unwrap_or("the CPU was chosen")
            ));
        }
        Backend::Cuda(c) => {
            let d = &c.dev;
            lines.push(format!(
                "device: {} (sm_{}{}, {} SMs, {:.1} GiB)",
                d.name,
                d.compute_capability.0,
                d.compute_capability.1,
                d.multiprocessors,
                d.total_mem as f64 / (1u64 << 30) as f64
            ));
            lines.push(format!(
                "kernels: {} compiled in {} ms ({})",
                d.image,
                d.compile_time.as_millis(),
                NVRTC_OPTIONS.join(" ")
            ));
        }
    }
    lines.push(format!("driver: {driver}"));
    lines.push(format!("nvrtc: {nvrtc}"));
    let report = lines.join("\n");
    if choice == BackendChoice::Cuda && !backend.is_cuda() {
        Err(report)
    } else {
        Ok(report)
    }
}

/// Times every kernel on `elems` device-resident f32 and bf16 elements (best of `reps`) and
/// prints GB/s (bytes read + written per second) and the fraction of the device-to-device copy
/// bandwidth, the measure issue #4 sets (goal >= 70%). Needs the CUDA backend.
pub fn kernel_benchmark(elems: usize, reps: usize) -> Result<String, BackendError> {
    let Backend::Cuda(c) = Backend::cuda()? else {
        unreachable!("Backend::cuda returns the CUDA variant");
    };
    let rows = c.q().bench_kernels(elems.max(1), reps)?;
    let mut out = format!(
        "{}\n{:<48} {:>10} {:>10} {:>9}\n",
        c.describe(),
        "kernel",
        "ms",
        "GB/s",
        "of copy"
    );
    let mut copy_gbps = f64::NAN;
    for r in rows {
        let gbps = r.bytes as f64 / (r.ms * 1e-3) / 1e9;
        if r.name.starts_with("device-to-device copy") {
            copy_gbps = gbps;
        }
        out.push_str(&format!(
            "{:<48} {:>10.3} {:>10.1} {:>8.0}%\n",
            r.name,
            r.ms,
            gbps,
            100.0 * gbps / copy_gbps
        ));
    }
    Ok(out.trim_end().to_string())
}
