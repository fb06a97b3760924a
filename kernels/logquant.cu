// Error-bounded log quantization on the GPU (issue #4): the encoder and decoder of
// src/codec/logquant.rs, element for element. See logquant.cuh for the exactness rules and the
// NVRTC options these kernels must be compiled with (--fmad=false, no fast math).
//
// Kernels (NAME in f16, bf16, f32, f64; MODE in rel, abs):
//
//   snap_quantize_NAME_MODE(a, b, table, max_code, inv_step, eps_check, dither, base_index, n,
//                           codes, exc, recon, exc_count)
//     a, b: n target / reconstructed-reference elements (raw little-endian bits); b == NULL codes
//     a keyframe against sign(A) * 1.0 (lossy.rs: sign_reference).
//     table: PowerTable::values(), 2 * max_code + 1 f64; inv_step, eps_check: the table's encoder
//     parameters; dither: 0 nearest, 1 dithered; base_index: index of element 0 in the CPU call
//     being mirrored (feeds the dither hash).
//     Out: codes[i] (0 at exceptions), exc[i] = 1 for an exception (raw bits must be stored),
//     recon[i] = A' bits (A's own bits at exceptions), *exc_count += number of exceptions.
//
//   snap_dequantize_NAME_MODE(b, codes, table, max_code, n, out, bad_index)
//     out[i] = b[i] bits when codes[i] == 0, else round_to_dtype(b (*|+) table[codes[i] + max_code]).
//     A code with |code| > max_code is never used to index the table: *bad_index = min(index).
//     Exception positions are overwritten by the host afterwards, as on the CPU.

#include "logquant.cuh"

template <class K, class M>
__device__ __forceinline__ void snap_quantize(const typename K::raw* __restrict__ a,
                                              const typename K::raw* __restrict__ b,
                                              const double* __restrict__ table, u32 max_code,
                                              double inv_step, double eps_check, int dither,
                                              u64 base_index, u64 n, i32* __restrict__ codes,
                                              u8* __restrict__ exc, typename K::raw* __restrict__ recon,
                                              u64* exc_count) {
    SnapParams p;
    p.table = table;
    p.max_code = max_code;
    p.max_f = (double)max_code;
    p.inv_step = inv_step;
    p.eps_check = eps_check;
    p.dither = dither;
    u32 local = 0;
    for (u64 i = snap_tid(); i < n; i += snap_stride()) {
        const u64 a_bits = K::load(a, i);
        const u64 b_bits = b ? K::load(b, i) : snap_keyframe_ref<K>(a_bits);
        i32 code = 0;
        u64 x = b_bits;
        u8 e = 0;
        // logquant.rs encode(): equal bits (NaN included) are code 0 and never an exception.
        if (a_bits != b_bits && !snap_encode_one<K, M>(base_index + i, a_bits, b_bits, p, &code, &x)) {
            code = 0;
            x = a_bits;
            e = 1;
            ++local;
        }
        codes[i] = code;
        exc[i] = e;
        K::store(recon, i, x);
    }
    if (local != 0) atomicAdd(exc_count, (u64)local);
}

template <class K, class M>
__device__ __forceinline__ void snap_dequantize(const typename K::raw* __restrict__ b,
                                                const i32* __restrict__ codes,
                                                const double* __restrict__ table, u32 max_code, u64 n,
                                                typename K::raw* __restrict__ out, u64* bad_index) {
    u64 bad = ~0ull;
    for (u64 i = snap_tid(); i < n; i += snap_stride()) {
        const i32 m = codes[i];
        const u64 b_bits = K::load(b, i);
        const u32 mag = m < 0 ? (u32)(-(i64)m) : (u32)m;
        u64 x = b_bits;
        if (mag > max_code) {
            if (i < bad) bad = i;
        } else if (m != 0) {
            x = K::narrow(M::apply(K::widen(b_bits), table[(i64)m + (i64)max_code]));
        }
        K::store(out, i, x);
    }
    if (bad != ~0ull) atomicMin(bad_index, bad);
}

#define SNAP_QUANT_KERNELS(NAME, K, MNAME, M)                                                        \
    extern "C" __global__ void snap_quantize_##NAME##_##MNAME(                                        \
        const K::raw* a, const K::raw* b, const double* table, u32 max_code, double inv_step,       \
        double eps_check, int dither, u64 base_index, u64 n, i32* codes, u8* exc, K::raw* recon,     \
        u64* exc_count) {                                                                           \
        snap_quantize<K, M>(a, b, table, max_code, inv_step, eps_check, dither, base_index, n,      \
                            codes, exc, recon, exc_count);                                          \
    }                                                                                               \
    extern "C" __global__ void snap_dequantize_##NAME##_##MNAME(                                      \
        const K::raw* b, const i32* codes, const double* table, u32 max_code, u64 n, K::raw* out,   \
        u64* bad_index) {                                                                           \
        snap_dequantize<K, M>(b, codes, table, max_code, n, out, bad_index);                        \
    }

SNAP_QUANT_KERNELS(f16, SnapF16, rel, SnapRel)
SNAP_QUANT_KERNELS(f16, SnapF16, abs, SnapAbs)
SNAP_QUANT_KERNELS(bf16, SnapBF16, rel, SnapRel)
SNAP_QUANT_KERNELS(bf16, SnapBF16, abs, SnapAbs)
SNAP_QUANT_KERNELS(f32, SnapF32, rel, SnapRel)
SNAP_QUANT_KERNELS(f32, SnapF32, abs, SnapAbs)
SNAP_QUANT_KERNELS(f64, SnapF64, rel, SnapRel)
SNAP_QUANT_KERNELS(f64, SnapF64, abs, SnapAbs)
