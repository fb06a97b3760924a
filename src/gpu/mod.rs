//! The CUDA backend (issue #4): the delta kernels of `kernels/*.cu`, compiled at run time with
//! NVRTC and launched through cudarc, behind the [`backend::Backend`] interface that also drives
//! the CPU path.
//!
//! # Loading
//!
//! Nothing here links against CUDA: cudarc loads `libcuda` and `libnvrtc` with `dlopen` on first
//! use and *panics* when a library is missing, so [`device::device`] checks
//! `cudarc::driver::sys::is_culib_present()` and `cudarc::nvrtc::sys::is_culib_present()` before
//! any other cudarc call (and still runs the loading under `catch_unwind`, for a library that is
//! present but lacks a symbol). Without a driver, a device or NVRTC, [`backend::Backend::detect`]
//! returns the CPU backend with a one-line reason, and `--backend cuda` is an error, not a panic.
//!
//! The kernels are embedded with `include_str!`, compiled once per process for the device's own
//! architecture (a cubin, so the driver never JIT-compiles PTX: the GPU machines' driver is CUDA
//! 13.0 and rejects PTX from newer toolkits), and the module is cached in a `OnceLock`.
//!
//! # Bit-exactness
//!
//! Decoding is bit-identical to `codec::logquant::dequantize` by construction: the same table
//! (uploaded from [`crate::codec::logquant::PowerTable::values`]), one correctly rounded f64
//! multiply or add (NVRTC `--fmad=false`, so never fused), and the same integer
//! round-to-nearest-even to the element type. Encoding runs the same candidates, dither hash and
//! check; its only non-exact step is the first estimate `ln(A/B') * inv_step`, where the device
//! `log()` may differ from the CPU's in the last bit. That can only change which code is tried
//! first when the estimate lies within an ulp of a rounding boundary, and every code is accepted
//! only after the exact decode passes the bound, so a GPU-encoded chunk always decodes
//! bit-identically on the CPU (and vice versa), and the codes themselves equal the CPU's except,
//! possibly, at such ties.
//!
//! # The lattice (the default rounding)
//!
//! The kernels implement nearest and dithered codes. Lattice tables
//! ([`crate::codec::logquant::PowerTable::is_lattice`]: no reference shortcut, per-element grid
//! offsets for keyframes, anchoring deltas and fresh elements) have not run on a GPU yet, so the
//! backend hands every lattice quantize and dequantize to the CPU path, which is the format's
//! definition. A commit under the default rounding therefore codes on the CPU whatever the
//! backend; its repositories read everywhere.

pub mod backend;
mod cpu;
mod device;
mod kernel_cache;
mod kernels;
mod pipeline;
mod table;

#[cfg(test)]
mod emu_tests;
#[cfg(test)]
mod tests;
