// One-pass code histograms for many candidate bounds at once (issue #4, used by the error-bound
// search of issue #5).
//
//   snap_code_hist_NAME_MODE(a, b, n, inv_steps, k_count, dither, base_index, hist)
//
// For every element the quantity the encoder rounds is computed once,
//   d = ln(A / B')   (relative)      d = A - B'   (absolute, finite operands only),
// (b == NULL: keyframe, B' = sign(A) * 1.0) and then, for each candidate k < k_count,
//   est = d * inv_steps[k]
//   m   = round(est)                 (nearest, halves away from zero)
//       = floor(est + u(i, A, B'))   (dither: the encoder's splitmix64 hash, base_index + i)
// which is the encoder's first candidate code (its estimate is ln(A/B') * inv_step, the same
// single rounding). The histogram row k (SNAP_HIST_BINS u64 counters, row-major, accumulated
// with atomicAdd so several launches can sum into one buffer) counts:
//   bins 0..=128   code m in -64..=64 (bin m + 64); A == B' bitwise counts as code 0
//   bin 129        |m| > 64
//   bin 130        d not finite: the element can only be stored as an exception
// This is an estimate for choosing a bound: it ignores the encoder's code-0 shortcut, its
// neighbour retries and max_code, exactly like the CPU estimator in src/search.
//
// Counting uses one shared-memory histogram per block (k_count * SNAP_HIST_BINS u32, dynamic
// shared memory, k_count <= 64 -> at most 33,536 bytes) and warp-aggregated atomics
// (__match_any_sync, sm_70+): nearly every lane of a warp falls into bin 64 for small deltas, and
// one atomic per distinct bin per warp avoids 32-way contention on it. blockDim.x must be a
// multiple of 32.

#include "logquant.cuh"

template <class K, class M>
__device__ __forceinline__ void snap_code_hist(const typename K::raw* __restrict__ a,
                                               const typename K::raw* __restrict__ b, u64 n,
                                               const double* __restrict__ inv_steps, u32 k_count,
                                               int dither, u64 base_index, u64* hist) {
    extern __shared__ u32 snap_sh[];
    const u32 cells = k_count * SNAP_HIST_BINS;
    for (u32 j = threadIdx.x; j < cells; j += blockDim.x) snap_sh[j] = 0;
    __syncthreads();

    const u32 lane = threadIdx.x & 31u;
    for (u64 base = (u64)blockIdx.x * blockDim.x; base < n; base += snap_stride()) {
        const u64 i = base + threadIdx.x;
        const bool valid = i < n;
        bool equal = false;
        bool special = false;
        double d = 0.0;
        double u = 0.0;
        if (valid) {
            const u64 a_bits = K::load(a, i);
            const u64 b_bits = b ? K::load(b, i) : snap_keyframe_ref<K>(a_bits);
            if (a_bits == b_bits) {
                equal = true;
            } else {
                d = M::estimate(K::widen(a_bits), K::widen(b_bits), 1.0);
                special = !snap_is_finite(d);
                if (dither) u = snap_dither_u(base_index + i, a_bits, b_bits);
            }
        }
        for (u32 k = 0; k < k_count; ++k) {
            int bin = -1;
            if (valid) {
                if (equal) {
                    bin = SNAP_HIST_CLIP;
                } else if (special) {
                    bin = SNAP_HIST_EXCEPTION;
                } else {
                    const double est = __dmul_rn(d, inv_steps[k]);
                    const double m = dither ? floor(__dadd_rn(est, u)) : round(est);
                    if (!snap_is_finite(m)) {
                        bin = SNAP_HIST_EXCEPTION;
                    } else if (snap_abs(m) > (double)SNAP_HIST_CLIP) {
                        bin = SNAP_HIST_OVERFLOW;
                    } else {
                        bin = (int)m + SNAP_HIST_CLIP;
                    }
                }
            }
            // All 32 lanes reach this point together: the loop bounds are uniform per warp.
            const unsigned peers = __match_any_sync(0xffffffffu, bin);
            if (bin >= 0 && lane == (u32)(__ffs(peers) - 1)) {
                atomicAdd(&snap_sh[k * SNAP_HIST_BINS + (u32)bin], (u32)__popc(peers));
            }
        }
    }
    __syncthreads();
    for (u32 j = threadIdx.x; j < cells; j += blockDim.x) {
        const u32 c = snap_sh[j];
        if (c != 0) atomicAdd(&hist[j], (u64)c);
    }
}

#define SNAP_HIST_KERNEL(NAME, K, MNAME, M)                                                         \
    extern "C" __global__ void snap_code_hist_##NAME##_##MNAME(                                      \
        const K::raw* a, const K::raw* b, u64 n, const double* inv_steps, u32 k_count, int dither,  \
        u64 base_index, u64* hist) {                                                                \
        snap_code_hist<K, M>(a, b, n, inv_steps, k_count, dither, base_index, hist);                \
    }

SNAP_HIST_KERNEL(f16, SnapF16, rel, SnapRel)
SNAP_HIST_KERNEL(f16, SnapF16, abs, SnapAbs)
SNAP_HIST_KERNEL(bf16, SnapBF16, rel, SnapRel)
SNAP_HIST_KERNEL(bf16, SnapBF16, abs, SnapAbs)
SNAP_HIST_KERNEL(f32, SnapF32, rel, SnapRel)
SNAP_HIST_KERNEL(f32, SnapF32, abs, SnapAbs)
SNAP_HIST_KERNEL(f64, SnapF64, rel, SnapRel)
SNAP_HIST_KERNEL(f64, SnapF64, abs, SnapAbs)
