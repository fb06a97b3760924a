//! [`GpuQuantizer`]: the kernels driven over a bounded window, double-buffered.
//!
//! Work is cut into windows of at most `window` elements. Two slots, each with its own stream,
//! pinned host staging buffers and device buffers, alternate: while the device copies and runs
//! window `k` on one stream, the host harvests window `k - 1` from the other slot and stages
//! window `k + 1` into it, so host copies, PCIe transfers and kernels overlap. Device memory is
//! `2 * 29 * window` bytes at most (two slots of: two 8-byte element inputs, an i32 code array, an
//! exception-flag byte array and an 8-byte element output), whatever the input size.
//!
//! Pinned buffers are handed to cudarc as plain slices, so cudarc does not track them: the
//! ordering is kept here instead. A slot's pinned memory is only touched by the host after
//! `stream.synchronize()` on that slot's stream (see [`run_windows`]), and every path out of a
//! call, errors included, synchronizes both streams before returning.

use std::ops::Range;
use std::sync::Arc;

use cudarc::driver::sys::CU_MEMHOSTALLOC_WRITECOMBINED;
use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PinnedHostSlice, PushKernelArg,
    ValidAsZeroBits,
};

use super::cpu::HIST_BINS;
use super::device::GpuDevice;
use super::table::EncoderParams;
use crate::codec::logquant::{FloatKind, PowerTable, QuantError, QuantizedChunk};

/// Default window: 2^21 elements (8 MiB of f32 per input; 58 MiB of device memory per slot).
pub(crate) const DEFAULT_WINDOW: usize = 1 << 21;
/// Environment variable overriding the window, in elements.
pub(crate) const WINDOW_ENV: &str = "SNAPSTORE_GPU_WINDOW";
/// Threads per block (a multiple of 32, as the histogram kernel requires).
const THREADS: u32 = 256;
/// Candidates one histogram pass takes (shared memory: 64 * 131 * 4 = 33,536 bytes).
pub(crate) const HIST_MAX_CANDIDATES: usize = 64;

/// Errors of the GPU path.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum GpuError {
    /// The same validation error the CPU path reports for these arguments.
    Quant(QuantError),
    /// Arguments the GPU path does not take (a table it cannot read, an element size...).
    Invalid(String),
    /// A CUDA driver call failed.
    Cuda(String),
}

impl std::fmt::Display for GpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuError::Quant(e) => write!(f, "{e}"),
            GpuError::Invalid(s) => write!(f, "{s}"),
            GpuError::Cuda(s) => write!(f, "CUDA: {s}"),
        }
    }
}

impl From<String> for GpuError {
    fn from(s: String) -> Self {
        GpuError::Cuda(s)
    }
}

fn cuda<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> GpuError {
    move |e| GpuError::Cuda(format!("{what}: {e:?}"))
}

fn kind_name(kind: FloatKind) -> &'static str {
    match kind {
        FloatKind::F16 => "f16",
        FloatKind::BF16 => "bf16",
        FloatKind::F32 => "f32",
        FloatKind::F64 => "f64",
    }
}

/// Pinned host memory, zeroed. Write-combined for buffers the host only writes (faster
/// transfers), plain for buffers the host reads back (write-combined reads are uncached).
fn pinned<T: DeviceRepr + ValidAsZeroBits>(
    ctx: &Arc<CudaContext>,
    len: usize,
    write_combined: bool,
) -> Result<PinnedHostSlice<T>, GpuError> {
    let flags = if write_combined {
        CU_MEMHOSTALLOC_WRITECOMBINED
    } else {
        0
    };
    let len = len.max(1);
    // SAFETY: the allocation is uninitialised; it is zeroed below before any reference to its
    // contents is created.
    let mut p = unsafe { ctx.alloc_pinned_with_flags::<T>(len, flags) }
        .map_err(cuda("pinned host allocation"))?;
    let ptr = p.as_mut_ptr().map_err(cuda("pinned host pointer"))?;
    // SAFETY: `ptr` is the start of `len` aligned, allocated `T`s owned by `p`, and all-zero bits
    // are a valid `T` (`ValidAsZeroBits`).
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
    Ok(p)
}

/// One half of the double buffer.
struct Slot {
    stream: Arc<CudaStream>,
    h_in0: PinnedHostSlice<u8>,
    h_in1: PinnedHostSlice<u8>,
    h_codes: PinnedHostSlice<i32>,
    h_exc: PinnedHostSlice<u8>,
    h_out: PinnedHostSlice<u8>,
    h_word: PinnedHostSlice<u64>,
    d_in0: CudaSlice<u8>,
    d_in1: CudaSlice<u8>,
    d_codes: CudaSlice<i32>,
    d_exc: CudaSlice<u8>,
    d_out: CudaSlice<u8>,
    d_word: CudaSlice<u64>,
}

impl Slot {
    fn new(ctx: &Arc<CudaContext>, window: usize) -> Result<Slot, GpuError> {
        let stream = ctx.new_stream().map_err(cuda("creating a stream"))?;
        let bytes = window * 8;
        let d = |n: usize| {
            stream
                .alloc_zeros::<u8>(n)
                .map_err(cuda("device allocation"))
        };
        Ok(Slot {
            h_in0: pinned(ctx, bytes, true)?,
            h_in1: pinned(ctx, bytes, true)?,
            h_codes: pinned(ctx, window, false)?,
            h_exc: pinned(ctx, window, false)?,
            h_out: pinned(ctx, bytes, false)?,
            h_word: pinned(ctx, 1, false)?,
            d_in0: d(bytes)?,
            d_in1: d(bytes)?,
            d_codes: stream
                .alloc_zeros::<i32>(window)
                .map_err(cuda("device allocation"))?,
            d_exc: d(window)?,
            d_out: d(bytes)?,
            d_word: stream
                .alloc_zeros::<u64>(1)
                .map_err(cuda("device allocation"))?,
            stream,
        })
    }

    fn sync(&self) -> Result<(), GpuError> {
        self.stream
            .synchronize()
            .map_err(cuda("stream synchronize"))
    }

    /// Stages `src` into pinned input `which` and queues its copy to the device.
    fn upload(&mut self, which: usize, src: &[u8]) -> Result<(), GpuError> {
        let n = src.len();
        let (h, d) = if which == 0 {
            (&mut self.h_in0, &mut self.d_in0)
        } else {
            (&mut self.h_in1, &mut self.d_in1)
        };
        h.as_mut_slice().map_err(cuda("pinned buffer"))?[..n].copy_from_slice(src);
        let staged = &h.as_slice().map_err(cuda("pinned buffer"))?[..n];
        self.stream
            .memcpy_htod(staged, &mut d.slice_mut(..n))
            .map_err(cuda("host to device copy"))
    }

    /// Sets the device word to `v` (through the pinned word, stream-ordered).
    fn set_word(&mut self, v: u64) -> Result<(), GpuError> {
        self.h_word.as_mut_slice().map_err(cuda("pinned buffer"))?[0] = v;
        let staged = &self.h_word.as_slice().map_err(cuda("pinned buffer"))?[..1];
        self.stream
            .memcpy_htod(staged, &mut self.d_word)
            .map_err(cuda("host to device copy"))
    }

    /// Queues the copy of the device word back to the pinned word.
    fn fetch_word(&mut self) -> Result<(), GpuError> {
        let dst = &mut self.h_word.as_mut_slice().map_err(cuda("pinned buffer"))?[..1];
        self.stream
            .memcpy_dtoh(&self.d_word, dst)
            .map_err(cuda("device to host copy"))
    }

    fn word(&self) -> Result<u64, GpuError> {
        Ok(self.h_word.as_slice().map_err(cuda("pinned buffer"))?[0])
    }

    /// Queues the copy of the first `n` output bytes back to the pinned output.
    fn fetch_out(&mut self, n: usize) -> Result<(), GpuError> {
        let dst = &mut self.h_out.as_mut_slice().map_err(cuda("pinned buffer"))?[..n];
        self.stream
            .memcpy_dtoh(&self.d_out.slice(..n), dst)
            .map_err(cuda("device to host copy"))
    }

    fn out(&self, n: usize) -> Result<&[u8], GpuError> {
        Ok(&self.h_out.as_slice().map_err(cuda("pinned buffer"))?[..n])
    }
}

/// Runs `stage` on each window (queue copies and kernels on the slot's stream) and `harvest`
/// on each window once its slot's stream is idle, in window order. Two slots alternate.
fn run_windows(
    slots: &mut [Slot],
    n: usize,
    window: usize,
    mut stage: impl FnMut(&mut Slot, Range<usize>) -> Result<(), GpuError>,
    mut harvest: impl FnMut(&mut Slot, Range<usize>) -> Result<(), GpuError>,
) -> Result<(), GpuError> {
    let mut pending: [Option<Range<usize>>; 2] = [None, None];
    let mut result = Ok(());
    let mut k = 0usize;
    let mut start = 0usize;
    while start < n {
        let s = k % 2;
        if let Some(r) = pending[s].take() {
            if let Err(e) = slots[s].sync().and_then(|_| harvest(&mut slots[s], r)) {
                result = Err(e);
                break;
            }
        }
        let r = start..(start + window).min(n);
        start = r.end;
        if let Err(e) = stage(&mut slots[s], r.clone()) {
            result = Err(e);
            break;
        }
        pending[s] = Some(r);
        k += 1;
    }
    // The older window first: the last staged one is in slot (k - 1) % 2.
    for j in 0..2 {
        let s = (k + j) % 2;
        if let Some(r) = pending[s].take() {
            let done = slots[s].sync();
            if result.is_ok() {
                result = done.and_then(|_| harvest(&mut slots[s], r));
            }
        }
    }
    if result.is_err() {
        // Nothing may still be reading or writing pinned memory when the caller goes on.
        for slot in slots.iter() {
            let _ = slot.sync();
        }
    }
    result
}

fn launch_cfg(dev: &GpuDevice, n: usize, shared: u32) -> LaunchConfig {
    // The histogram kernel (the one with shared memory) flushes k * 131 counters per block at
    // the end: fewer, longer-running blocks keep that flush small.
    let blocks = if shared > 0 {
        dev.blocks_for(n, THREADS)
            .min(dev.multiprocessors.max(1) * 2)
    } else {
        dev.blocks_for(n, THREADS)
    };
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: shared,
    }
}

fn element_count(kind: FloatKind, len: usize) -> Result<usize, GpuError> {
    let size = kind.size();
    if !len.is_multiple_of(size) {
        return Err(GpuError::Quant(QuantError::UnalignedLength {
            len,
            elem_size: size,
        }));
    }
    Ok(len / size)
}

/// The GPU implementation of the codec's data-parallel steps, mirroring the CPU functions.
pub(crate) struct GpuQuantizer {
    dev: Arc<GpuDevice>,
    window: usize,
    slots: Vec<Slot>,
    /// The last table uploaded: `(values bits hash key, device copy)`.
    table: Option<(TableKey, CudaSlice<f64>)>,
}

#[derive(Clone, Debug, PartialEq)]
struct TableKey {
    max_code: u32,
    first: u64,
    last: u64,
    step: u64,
    relative: bool,
}

impl GpuQuantizer {
    /// A quantizer on `dev` with a window of `window` elements (0: the default, or
    /// `SNAPSTORE_GPU_WINDOW`). Buffers are allocated on first use.
    pub fn new(dev: Arc<GpuDevice>, window: usize) -> GpuQuantizer {
        let window = if window > 0 {
            window
        } else {
            std::env::var(WINDOW_ENV)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&w| w > 0)
                .unwrap_or(DEFAULT_WINDOW)
        };
        GpuQuantizer {
            dev,
            window: window.clamp(32, 1 << 28),
            slots: Vec::new(),
            table: None,
        }
    }

    fn ensure_slots(&mut self) -> Result<(), GpuError> {
        if self.slots.is_empty() {
            let a = Slot::new(&self.dev.ctx, self.window)?;
            let b = Slot::new(&self.dev.ctx, self.window)?;
            self.slots = vec![a, b];
        }
        Ok(())
    }

    /// Uploads `table` unless it is the one already on the device.
    fn upload_table(&mut self, table: &PowerTable, p: &EncoderParams) -> Result<(), GpuError> {
        let v = table.values();
        let key = TableKey {
            max_code: p.max_code,
            first: v.first().map_or(0, |x| x.to_bits()),
            last: v.last().map_or(0, |x| x.to_bits()),
            step: v.get(p.max_code as usize + 1).map_or(0, |x| x.to_bits()),
            relative: p.relative,
        };
        if self.table.as_ref().is_some_and(|(k, _)| *k == key) {
            return Ok(());
        }
        self.ensure_slots()?;
        let stream = &self.slots[0].stream;
        let d = stream.clone_htod(v).map_err(cuda("table upload"))?;
        stream.synchronize().map_err(cuda("table upload"))?;
        self.table = Some((key, d));
        Ok(())
    }

    /// `logquant::quantize` on the GPU; `reference: None` codes a keyframe against
    /// `sign(A) * 1.0` (what lossy.rs passes for a keyframe).
    pub fn quantize(
        &mut self,
        kind: FloatKind,
        target: &[u8],
        reference: Option<&[u8]>,
        table: &PowerTable,
    ) -> Result<(QuantizedChunk, Vec<u8>), GpuError> {
        if let Some(r) = reference {
            if r.len() != target.len() {
                return Err(GpuError::Quant(QuantError::LengthMismatch {
                    what: "reference bytes",
                    expected: target.len(),
                    actual: r.len(),
                }));
            }
        }
        let n = element_count(kind, target.len())?;
        if n > 0 && u32::try_from(n - 1).is_err() {
            return Err(GpuError::Quant(QuantError::TooManyElements(n)));
        }
        let p = EncoderParams::of(table).ok_or_else(|| {
            GpuError::Invalid("power table not built by PowerTable::new or ::dithered".into())
        })?;
        let mut codes = vec![0i32; n];
        let mut recon = vec![0u8; target.len()];
        let mut exception_positions = Vec::new();
        let mut exception_values = Vec::new();
        if n == 0 {
            return Ok((QuantizedChunk::default(), recon));
        }
        self.ensure_slots()?;
        self.upload_table(table, &p)?;
        let sz = kind.size();
        let name = format!(
            "snap_quantize_{}_{}",
            kind_name(kind),
            if p.relative { "rel" } else { "abs" }
        );
        let dev = self.dev.clone();
        let f = dev.function(&name)?;
        let (_, d_table) = self.table.as_ref().expect("uploaded");
        let dither = i32::from(p.dither);
        let window = self.window;
        let cfg_of = |m: usize| launch_cfg(&dev, m, 0);
        let stage = |slot: &mut Slot, r: Range<usize>| -> Result<(), GpuError> {
            let m = r.len();
            let bytes = r.start * sz..r.end * sz;
            slot.upload(0, &target[bytes.clone()])?;
            if let Some(b) = reference {
                slot.upload(1, &b[bytes])?;
            }
            slot.stream
                .memset_zeros(&mut slot.d_word)
                .map_err(cuda("memset"))?;
            let null = 0u64;
            let (base, n64) = (r.start as u64, m as u64);
            let stream = slot.stream.clone();
            let mut lb = stream.launch_builder(f);
            lb.arg(&slot.d_in0);
            if reference.is_some() {
                lb.arg(&slot.d_in1);
            } else {
                lb.arg(&null);
            }
            lb.arg(d_table)
                .arg(&p.max_code)
                .arg(&p.inv_step)
                .arg(&p.eps_check)
                .arg(&dither)
                .arg(&base)
                .arg(&n64)
                .arg(&mut slot.d_codes)
                .arg(&mut slot.d_exc)
                .arg(&mut slot.d_out)
                .arg(&mut slot.d_word);
            // SAFETY: the arguments match snap_quantize_* in kernels/logquant.cu in order and
            // type (pointers, u32, f64, f64, int, u64, u64, pointers); every buffer holds at
            // least `m` elements of its type (window >= m), the table holds 2 * max_code + 1
            // values, and a null `b` is handled by the kernel.
            unsafe { lb.launch(cfg_of(m)) }.map_err(cuda("quantize launch"))?;
            let dst = &mut slot.h_codes.as_mut_slice().map_err(cuda("pinned"))?[..m];
            stream
                .memcpy_dtoh(&slot.d_codes.slice(..m), dst)
                .map_err(cuda("device to host copy"))?;
            slot.fetch_out(m * sz)?;
            slot.fetch_word()
        };
        let harvest = |slot: &mut Slot, r: Range<usize>| -> Result<(), GpuError> {
            let m = r.len();
            codes[r.clone()]
                .copy_from_slice(&slot.h_codes.as_slice().map_err(cuda("pinned"))?[..m]);
            recon[r.start * sz..r.end * sz].copy_from_slice(slot.out(m * sz)?);
            if slot.word()? > 0 {
                let dst = &mut slot.h_exc.as_mut_slice().map_err(cuda("pinned"))?[..m];
                slot.stream
                    .memcpy_dtoh(&slot.d_exc.slice(..m), dst)
                    .map_err(cuda("device to host copy"))?;
                slot.sync()?;
                let flags = &slot.h_exc.as_slice().map_err(cuda("pinned"))?[..m];
                for (j, _) in flags.iter().enumerate().filter(|(_, &e)| e != 0) {
                    let i = r.start + j;
                    exception_positions.push(i as u32);
                    exception_values.extend_from_slice(&target[i * sz..(i + 1) * sz]);
                }
            }
            Ok(())
        };
        run_windows(&mut self.slots, n, window, stage, harvest)?;
        Ok((
            QuantizedChunk {
                codes,
                exception_positions,
                exception_values,
            },
            recon,
        ))
    }

    /// `logquant::dequantize` on the GPU: the same validation, in the same order, and the same
    /// errors.
    pub fn dequantize(
        &mut self,
        kind: FloatKind,
        reference: &[u8],
        chunk: &QuantizedChunk,
        table: &PowerTable,
    ) -> Result<Vec<u8>, GpuError> {
        let sz = kind.size();
        let n = element_count(kind, reference.len())?;
        if chunk.codes.len() != n {
            return Err(GpuError::Quant(QuantError::LengthMismatch {
                what: "codes",
                expected: n,
                actual: chunk.codes.len(),
            }));
        }
        let expected_values = chunk.exception_positions.len().saturating_mul(sz);
        if chunk.exception_values.len() != expected_values {
            return Err(GpuError::Quant(QuantError::LengthMismatch {
                what: "exception values bytes",
                expected: expected_values,
                actual: chunk.exception_values.len(),
            }));
        }
        let p = EncoderParams::of(table).ok_or_else(|| {
            GpuError::Invalid("power table not built by PowerTable::new or ::dithered".into())
        })?;
        let mut out = vec![0u8; reference.len()];
        let mut first_bad: Option<usize> = None;
        if n > 0 {
            self.ensure_slots()?;
            self.upload_table(table, &p)?;
            let name = format!(
                "snap_dequantize_{}_{}",
                kind_name(kind),
                if p.relative { "rel" } else { "abs" }
            );
            let dev = self.dev.clone();
            let f = dev.function(&name)?;
            let (_, d_table) = self.table.as_ref().expect("uploaded");
            let window = self.window;
            let cfg_of = |m: usize| launch_cfg(&dev, m, 0);
            let codes = &chunk.codes;
            let stage = |slot: &mut Slot, r: Range<usize>| -> Result<(), GpuError> {
                let m = r.len();
                slot.upload(0, &reference[r.start * sz..r.end * sz])?;
                slot.h_codes.as_mut_slice().map_err(cuda("pinned"))?[..m]
                    .copy_from_slice(&codes[r.clone()]);
                let staged = &slot.h_codes.as_slice().map_err(cuda("pinned"))?[..m];
                slot.stream
                    .memcpy_htod(staged, &mut slot.d_codes.slice_mut(..m))
                    .map_err(cuda("host to device copy"))?;
                slot.set_word(u64::MAX)?;
                let n64 = m as u64;
                let stream = slot.stream.clone();
                let mut lb = stream.launch_builder(f);
                lb.arg(&slot.d_in0)
                    .arg(&slot.d_codes)
                    .arg(d_table)
                    .arg(&p.max_code)
                    .arg(&n64)
                    .arg(&mut slot.d_out)
                    .arg(&mut slot.d_word);
                // SAFETY: the arguments match snap_dequantize_* in kernels/logquant.cu (pointers,
                // u32, u64, pointers); the buffers hold at least `m` elements; the kernel never
                // indexes the table with a code outside +-max_code.
                unsafe { lb.launch(cfg_of(m)) }.map_err(cuda("dequantize launch"))?;
                slot.fetch_out(m * sz)?;
                slot.fetch_word()
            };
            let harvest = |slot: &mut Slot, r: Range<usize>| -> Result<(), GpuError> {
                let m = r.len();
                out[r.start * sz..r.end * sz].copy_from_slice(slot.out(m * sz)?);
                let bad = slot.word()?;
                if bad != u64::MAX && first_bad.is_none() {
                    first_bad = Some(r.start + bad as usize);
                }
                Ok(())
            };
            run_windows(&mut self.slots, n, window, stage, harvest)?;
        }
        if let Some(index) = first_bad {
            return Err(GpuError::Quant(QuantError::CodeOutOfRange {
                index,
                code: chunk.codes[index],
                max_code: p.max_code,
            }));
        }
        let mut prev: Option<u32> = None;
        for (index, &position) in chunk.exception_positions.iter().enumerate() {
            let sorted = prev.is_none_or(|q| q < position);
            if position as usize >= n || !sorted {
                return Err(GpuError::Quant(QuantError::BadExceptionPosition {
                    index,
                    position,
                }));
            }
            let code = chunk.codes[position as usize];
            if code != 0 {
                return Err(GpuError::Quant(QuantError::ExceptionCodeNotZero {
                    position,
                    code,
                }));
            }
            prev = Some(position);
        }
        for (&position, value) in chunk
            .exception_positions
            .iter()
            .zip(chunk.exception_values.chunks_exact(sz))
        {
            let start = position as usize * sz;
            out[start..start + sz].copy_from_slice(value);
        }
        Ok(out)
    }

    /// `delta::forward_planes(..)` on the GPU (`reference: None`: the plain split).
    /// `unit` must be 1, 2, 4 or 8.
    pub fn delta_planes(
        &mut self,
        unit: usize,
        float: bool,
        data: &[u8],
        reference: Option<&[u8]>,
    ) -> Result<Vec<u8>, GpuError> {
        self.planes_op(true, unit, float, data, reference)
    }

    /// Inverse of [`GpuQuantizer::delta_planes`].
    pub fn merge_planes(
        &mut self,
        unit: usize,
        float: bool,
        planes: &[u8],
        reference: Option<&[u8]>,
    ) -> Result<Vec<u8>, GpuError> {
        self.planes_op(false, unit, float, planes, reference)
    }

    fn planes_op(
        &mut self,
        forward: bool,
        unit: usize,
        float: bool,
        input: &[u8],
        reference: Option<&[u8]>,
    ) -> Result<Vec<u8>, GpuError> {
        if ![1, 2, 4, 8].contains(&unit) {
            return Err(GpuError::Invalid(format!(
                "element size {unit} has no GPU plane kernel"
            )));
        }
        if !input.len().is_multiple_of(unit) {
            return Err(GpuError::Invalid(format!(
                "{} bytes are not whole {unit}-byte elements",
                input.len()
            )));
        }
        if reference.is_some_and(|r| r.len() != input.len()) {
            return Err(GpuError::Invalid(
                "reference and data lengths differ".into(),
            ));
        }
        let n = input.len() / unit;
        let mut out = vec![0u8; input.len()];
        if n == 0 {
            return Ok(out);
        }
        self.ensure_slots()?;
        let name = format!(
            "snap_{}_planes_u{}",
            if forward { "delta" } else { "merge" },
            unit * 8
        );
        let dev = self.dev.clone();
        let f = dev.function(&name)?;
        let is_float = i32::from(float);
        let window = self.window;
        let cfg_of = |m: usize| launch_cfg(&dev, m, 0);
        let stage = |slot: &mut Slot, r: Range<usize>| -> Result<(), GpuError> {
            let m = r.len();
            if forward {
                slot.upload(0, &input[r.start * unit..r.end * unit])?;
            } else {
                // Gather this window's slice of every plane into one window-sized plane set.
                let h = slot.h_in0.as_mut_slice().map_err(cuda("pinned"))?;
                for p in 0..unit {
                    h[p * m..(p + 1) * m].copy_from_slice(&input[p * n + r.start..p * n + r.end]);
                }
                let staged = &slot.h_in0.as_slice().map_err(cuda("pinned"))?[..m * unit];
                slot.stream
                    .memcpy_htod(staged, &mut slot.d_in0.slice_mut(..m * unit))
                    .map_err(cuda("host to device copy"))?;
            }
            if let Some(b) = reference {
                slot.upload(1, &b[r.start * unit..r.end * unit])?;
            }
            let null = 0u64;
            let n64 = m as u64;
            let stream = slot.stream.clone();
            let mut lb = stream.launch_builder(f);
            lb.arg(&slot.d_in0);
            if reference.is_some() {
                lb.arg(&slot.d_in1);
            } else {
                lb.arg(&null);
            }
            lb.arg(&n64).arg(&is_float).arg(&mut slot.d_out);
            // SAFETY: the arguments match snap_delta_planes_u* / snap_merge_planes_u* in
            // kernels/planes.cu (pointer, pointer or null, u64, int, pointer); the input and
            // output buffers hold `m * unit` bytes (window * 8 >= m * unit).
            unsafe { lb.launch(cfg_of(m)) }.map_err(cuda("planes launch"))?;
            slot.fetch_out(m * unit)
        };
        let harvest = |slot: &mut Slot, r: Range<usize>| -> Result<(), GpuError> {
            let m = r.len();
            let got = slot.out(m * unit)?;
            if forward {
                for p in 0..unit {
                    out[p * n + r.start..p * n + r.end].copy_from_slice(&got[p * m..(p + 1) * m]);
                }
            } else {
                out[r.start * unit..r.end * unit].copy_from_slice(got);
            }
            Ok(())
        };
        run_windows(&mut self.slots, n, window, stage, harvest)?;
        Ok(out)
    }

    /// Code histograms for each inverse step (see kernels/stats.cu for the bins).
    pub fn code_histograms(
        &mut self,
        kind: FloatKind,
        relative: bool,
        dither: bool,
        target: &[u8],
        reference: Option<&[u8]>,
        inv_steps: &[f64],
    ) -> Result<Vec<[u64; HIST_BINS]>, GpuError> {
        let sz = kind.size();
        let n = element_count(kind, target.len())?;
        if reference.is_some_and(|r| r.len() != target.len()) {
            return Err(GpuError::Invalid(
                "reference and target lengths differ".into(),
            ));
        }
        let mut hists = vec![[0u64; HIST_BINS]; inv_steps.len()];
        if n == 0 || inv_steps.is_empty() {
            return Ok(hists);
        }
        self.ensure_slots()?;
        let name = format!(
            "snap_code_hist_{}_{}",
            kind_name(kind),
            if relative { "rel" } else { "abs" }
        );
        let dev = self.dev.clone();
        let f = dev.function(&name)?;
        let dither = i32::from(dither);
        let window = self.window;
        for (batch_index, batch) in inv_steps.chunks(HIST_MAX_CANDIDATES).enumerate() {
            let k = batch.len();
            let k32 = k as u32;
            let shared = (k * HIST_BINS * 4) as u32;
            // Per-slot accumulators and candidate arrays, so the two streams never wait on
            // each other.
            let mut acc = Vec::new();
            let mut steps = Vec::new();
            for slot in &self.slots {
                acc.push(
                    slot.stream
                        .alloc_zeros::<u64>(k * HIST_BINS)
                        .map_err(cuda("device allocation"))?,
                );
                steps.push(
                    slot.stream
                        .clone_htod(batch)
                        .map_err(cuda("host to device copy"))?,
                );
            }
            let mut slot_index = 0usize;
            let cfg_of = |m: usize| launch_cfg(&dev, m, shared);
            let stage = |slot: &mut Slot, r: Range<usize>| -> Result<(), GpuError> {
                let m = r.len();
                let s = slot_index % 2;
                slot_index += 1;
                slot.upload(0, &target[r.start * sz..r.end * sz])?;
                if let Some(b) = reference {
                    slot.upload(1, &b[r.start * sz..r.end * sz])?;
                }
                let null = 0u64;
                let (n64, base) = (m as u64, r.start as u64);
                let stream = slot.stream.clone();
                let mut lb = stream.launch_builder(f);
                lb.arg(&slot.d_in0);
                if reference.is_some() {
                    lb.arg(&slot.d_in1);
                } else {
                    lb.arg(&null);
                }
                lb.arg(&n64)
                    .arg(&steps[s])
                    .arg(&k32)
                    .arg(&dither)
                    .arg(&base)
                    .arg(&mut acc[s]);
                // SAFETY: the arguments match snap_code_hist_* in kernels/stats.cu (pointer,
                // pointer or null, u64, pointer, u32, int, u64, pointer); `steps[s]` holds `k`
                // values and `acc[s]` k * HIST_BINS counters; the dynamic shared memory is exactly
                // k * HIST_BINS u32 (k <= 64: 33,536 bytes, under the 48 KiB default).
                unsafe { lb.launch(cfg_of(m)) }.map_err(cuda("histogram launch"))?;
                Ok(())
            };
            run_windows(&mut self.slots, n, window, stage, |_, _| Ok(()))?;
            for (slot, d) in self.slots.iter().zip(&acc) {
                let h = slot
                    .stream
                    .clone_dtoh(d)
                    .map_err(cuda("device to host copy"))?;
                for (j, c) in h.iter().enumerate() {
                    hists[batch_index * HIST_MAX_CANDIDATES + j / HIST_BINS][j % HIST_BINS] += c;
                }
            }
        }
        Ok(hists)
    }
}

/// The benchmark's `n` elements of `kind`, as little-endian bytes: B holds values of both signs
/// over six decades, A is B moved by up to +-2%. Returns `(a, b)`.
fn bench_inputs(kind: FloatKind, n: usize) -> (Vec<u8>, Vec<u8>) {
    let sz = kind.size();
    let mut a = Vec::with_capacity(n * sz);
    let mut b = Vec::with_capacity(n * sz);
    let mut s = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let bv =
            (1e-3 + (s >> 40) as f64 / (1u64 << 24) as f64) * if s & 1 == 0 { 1.0 } else { -1.0 };
        let av = bv * (1.0 + ((s >> 8) & 0xffff) as f64 / 65536.0 * 0.04 - 0.02);
        match kind {
            FloatKind::BF16 => {
                b.extend_from_slice(&half::bf16::from_f64(bv).to_bits().to_le_bytes());
                a.extend_from_slice(&half::bf16::from_f64(av).to_bits().to_le_bytes());
            }
            _ => {
                b.extend_from_slice(&(bv as f32).to_le_bytes());
                a.extend_from_slice(&(av as f32).to_le_bytes());
            }
        }
    }
    (a, b)
}

/// One row of [`GpuQuantizer::bench_kernels`].
#[derive(Clone, Debug)]
pub(crate) struct BenchRow {
    pub name: String,
    /// Bytes read plus bytes written by one call.
    pub bytes: u64,
    /// Best time of one call, in milliseconds.
    pub ms: f64,
}

impl GpuQuantizer {
    /// Times every kernel on `n` device-resident f32 and bf16 elements (best of `reps` runs,
    /// CUDA events), next to a device-to-device copy of the same bytes: the figures issue #4 asks
    /// for (kernel GB/s and its fraction of copy bandwidth). Allocates about `40 * n` bytes.
    pub fn bench_kernels(&mut self, n: usize, reps: usize) -> Result<Vec<BenchRow>, GpuError> {
        use cudarc::driver::sys::CUevent_flags;
        let dev = self.dev.clone();
        let stream = dev.ctx.new_stream().map_err(cuda("creating a stream"))?;
        let table = PowerTable::dithered(crate::codec::logquant::ErrorBound::Relative(1e-2), 9000)
            .map_err(GpuError::Quant)?;
        let p = EncoderParams::of(&table).expect("dithered table");
        let d_table = stream.clone_htod(table.values()).map_err(cuda("upload"))?;
        let steps: Vec<f64> = (0..16).map(|k| 10.0 * 1.3f64.powi(k)).collect();
        let d_steps = stream.clone_htod(&steps).map_err(cuda("upload"))?;
        let mut rows = Vec::new();
        let n64 = n as u64;
        let (zero, one, k16) = (0u64, 1i32, 16u32);
        let cfg = launch_cfg(&dev, n, 0);
        let time = |f: &mut dyn FnMut() -> Result<(), GpuError>| -> Result<f64, GpuError> {
            f()?; // warm-up
            let mut best = f64::INFINITY;
            for _ in 0..reps.max(1) {
                let start = stream
                    .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                    .map_err(cuda("event"))?;
                f()?;
                let end = stream
                    .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                    .map_err(cuda("event"))?;
                let ms = start.elapsed_ms(&end).map_err(cuda("event timing"))?;
                best = best.min(f64::from(ms));
            }
            Ok(best)
        };
        for (kind, label) in [(FloatKind::F32, "f32"), (FloatKind::BF16, "bf16")] {
            let sz = kind.size();
            let (a, b) = bench_inputs(kind, n);
            let d_a = stream.clone_htod(&a).map_err(cuda("upload"))?;
            let d_b = stream.clone_htod(&b).map_err(cuda("upload"))?;
            let mut d_copy = stream.alloc_zeros::<u8>(n * sz).map_err(cuda("alloc"))?;
            let mut d_codes = stream.alloc_zeros::<i32>(n).map_err(cuda("alloc"))?;
            let mut d_exc = stream.alloc_zeros::<u8>(n).map_err(cuda("alloc"))?;
            let mut d_out = stream.alloc_zeros::<u8>(n * sz).map_err(cuda("alloc"))?;
            let mut d_word = stream.alloc_zeros::<u64>(1).map_err(cuda("alloc"))?;
            let mut d_hist = stream
                .alloc_zeros::<u64>(16 * HIST_BINS)
                .map_err(cuda("alloc"))?;
            let nb = (n * sz) as u64;
            let ms = time(&mut || {
                stream
                    .memcpy_dtod(&d_a, &mut d_copy)
                    .map_err(cuda("device copy"))
            })?;
            rows.push(BenchRow {
                name: format!("device-to-device copy ({label})"),
                bytes: 2 * nb,
                ms,
            });
            let fq = dev.function(&format!("snap_quantize_{label}_rel"))?;
            let ms = time(&mut || {
                let mut lb = stream.launch_builder(fq);
                lb.arg(&d_a)
                    .arg(&d_b)
                    .arg(&d_table)
                    .arg(&p.max_code)
                    .arg(&p.inv_step)
                    .arg(&p.eps_check)
                    .arg(&one)
                    .arg(&zero)
                    .arg(&n64)
                    .arg(&mut d_codes)
                    .arg(&mut d_exc)
                    .arg(&mut d_out)
                    .arg(&mut d_word);
                // SAFETY: arguments as in `quantize`; every buffer holds `n` elements.
                unsafe { lb.launch(cfg) }.map_err(cuda("launch"))?;
                Ok(())
            })?;
            rows.push(BenchRow {
                name: format!("quantize {label} rel dither"),
                bytes: 2 * nb + 5 * n64 + nb,
                ms,
            });
            let fd = dev.function(&format!("snap_dequantize_{label}_rel"))?;
            let ms = time(&mut || {
                let mut lb = stream.launch_builder(fd);
                lb.arg(&d_b)
                    .arg(&d_codes)
                    .arg(&d_table)
                    .arg(&p.max_code)
                    .arg(&n64)
                    .arg(&mut d_out)
                    .arg(&mut d_word);
                // SAFETY: arguments as in `dequantize`; every buffer holds `n` elements.
                unsafe { lb.launch(cfg) }.map_err(cuda("launch"))?;
                Ok(())
            })?;
            rows.push(BenchRow {
                name: format!("dequantize {label} rel"),
                bytes: nb + 4 * n64 + nb,
                ms,
            });
            let bits = sz * 8;
            for op in ["delta", "merge"] {
                let f = dev.function(&format!("snap_{op}_planes_u{bits}"))?;
                let ms = time(&mut || {
                    let mut lb = stream.launch_builder(f);
                    lb.arg(&d_a).arg(&d_b).arg(&n64).arg(&one).arg(&mut d_out);
                    // SAFETY: arguments as in `planes_op`; every buffer holds `n * sz` bytes.
                    unsafe { lb.launch(cfg) }.map_err(cuda("launch"))?;
                    Ok(())
                })?;
                rows.push(BenchRow {
                    name: format!("{op} planes u{bits} float"),
                    bytes: 3 * nb,
                    ms,
                });
            }
            let fh = dev.function(&format!("snap_code_hist_{label}_rel"))?;
            let hcfg = launch_cfg(&dev, n, (16 * HIST_BINS * 4) as u32);
            let ms = time(&mut || {
                let mut lb = stream.launch_builder(fh);
                lb.arg(&d_a)
                    .arg(&d_b)
                    .arg(&n64)
                    .arg(&d_steps)
                    .arg(&k16)
                    .arg(&one)
                    .arg(&zero)
                    .arg(&mut d_hist);
                // SAFETY: arguments as in `code_histograms`, 16 candidates, shared memory sized
                // for them.
                unsafe { lb.launch(hcfg) }.map_err(cuda("launch"))?;
                Ok(())
            })?;
            rows.push(BenchRow {
                name: format!("code histograms {label} rel dither, 16 candidates"),
                bytes: 2 * nb,
                ms,
            });
        }
        stream.synchronize().map_err(cuda("synchronize"))?;
        Ok(rows)
    }
}
