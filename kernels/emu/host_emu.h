// Host emulation of the CUDA built-ins the kernels use, so that kernels/*.cu compile as plain
// C++ with g++/clang++ and their per-element logic can be tested against the Rust CPU codec on
// machines without a GPU (src/gpu/emu_tests.rs). Not a CUDA emulator: blocks and threads run one
// after another, so it must be driven with blockDim.x == 1 (one lane per warp; the warp
// aggregation of stats.cu then degenerates to one atomic per element, which is still exact).
//
// What it cannot check is what differs on a real device: libdevice log() vs glibc log() (the
// emulation uses glibc's, the same the Rust CPU path calls), NaN canonicalisation of the GPU's
// f64 units (handled explicitly in logquant.cuh), and warp-level behaviour with 32 lanes.
// Compile with -ffp-contract=off (no FMA contraction, like NVRTC --fmad=false).

#ifndef SNAPSTORE_HOST_EMU_H
#define SNAPSTORE_HOST_EMU_H

#include <math.h>
#include <string.h>

#define __device__
#define __global__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__

struct SnapEmuDim {
    unsigned x, y, z;
};
extern SnapEmuDim blockIdx, blockDim, gridDim, threadIdx;

inline double __longlong_as_double(long long v) {
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}
inline long long __double_as_longlong(double d) {
    long long v;
    memcpy(&v, &d, sizeof v);
    return v;
}
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }

inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p;
    *p = old + v;
    return old;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
    unsigned old = *p;
    *p = old + v;
    return old;
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p;
    if (v < old) *p = v;
    return old;
}
inline void __syncthreads() {}
inline unsigned __match_any_sync(unsigned, int) { return 1u; }
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }

#endif  // SNAPSTORE_HOST_EMU_H
