// Shared device helpers for snapstore's CUDA kernels (issue #4).
//
// Every function here is a bit-exact port of the CPU code it names in src/codec/logquant.rs or
// src/codec/delta.rs: element widening to f64, f64 -> f16 / bf16 / f32 round-to-nearest-even,
// the single decode operation, the encoder's check and the dither hash. Everything that must be
// bit-identical is done with integer operations or with one correctly rounded IEEE f64 operation.
//
// Compiled at run time by NVRTC (src/gpu/kernels.rs) with
//     --fmad=false --ftz=false --prec-div=true --prec-sqrt=true   (and never --use_fast_math)
// because the CPU decoder is "one correctly rounded f64 multiply (or add), no FMA": with FMA
// contraction on, NVCC/NVRTC may fuse `b * t` with a following add/sub (in the encoder's check
// `|x - a| <= eps * |a|`, or in a caller) and the rounded result, hence the stored code or the
// reconstruction, would differ from the CPU's in the last bit. --ftz=false and the precise
// division keep subnormal and division results IEEE as on the CPU. The kernels use f64 and
// integer arithmetic only, so the f32 flags are belt and braces.
//
// NVRTC has no C standard headers by default: only built-in types and CUDA intrinsics are used.
// The host side textually replaces `#include "logquant.cuh"` by this file; the include guard makes
// the concatenation of several .cu files in one program legal.

#ifndef SNAPSTORE_LOGQUANT_CUH
#define SNAPSTORE_LOGQUANT_CUH

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;

// Histogram layout shared with src/gpu (HIST_CLIP, HIST_BINS): codes -64..=64, then one bin for
// |code| > 64, then one for elements that can only be exceptions (estimate not finite).
#define SNAP_HIST_CLIP 64
#define SNAP_HIST_BINS (2 * SNAP_HIST_CLIP + 3)
#define SNAP_HIST_OVERFLOW (2 * SNAP_HIST_CLIP + 1)
#define SNAP_HIST_EXCEPTION (2 * SNAP_HIST_CLIP + 2)

// CHECK_MARGIN = 1 - 2^-50 (logquant.rs) is folded into eps_check by the host.
// SMALL_F64 = 2^-960, SCALE_UP = 2^600 (logquant.rs), built from bits to be exact.
#define SNAP_SMALL_F64_BITS (((u64)(1023 - 960)) << 52)
#define SNAP_SCALE_UP_BITS (((u64)(1023 + 600)) << 52)
// The value x86-64 SSE produces for an invalid operation (inf * 0, inf - inf): negative quiet NaN.
#define SNAP_X86_DEFAULT_NAN 0xFFF8000000000000ull

__device__ __forceinline__ double snap_from_bits(u64 b) { return __longlong_as_double((i64)b); }
__device__ __forceinline__ u64 snap_to_bits(double x) { return (u64)__double_as_longlong(x); }
__device__ __forceinline__ bool snap_is_nan(double x) {
    return (snap_to_bits(x) & 0x7fffffffffffffffull) > 0x7ff0000000000000ull;
}
__device__ __forceinline__ bool snap_is_finite(double x) {
    return (snap_to_bits(x) & 0x7fffffffffffffffull) < 0x7ff0000000000000ull;
}
__device__ __forceinline__ double snap_abs(double x) {
    return snap_from_bits(snap_to_bits(x) & 0x7fffffffffffffffull);
}

// x86 SSE arithmetic returns a NaN operand with its quiet bit set (payload kept).
__device__ __forceinline__ double snap_quiet(double x) {
    return snap_from_bits(snap_to_bits(x) | 0x0008000000000000ull);
}

// ---------------------------------------------------------------------------------------------
// Widening: element bits -> f64, exact. NaNs come out quiet with the payload shifted to the top of
// the f64 mantissa, exactly as half::f16::to_f64 (software and F16C paths) and x86 cvtss2sd do.

// IEEE binary with EXP exponent bits and MAN mantissa bits (f16: 5/10, f32: 8/23) -> f64.
template <int EXP, int MAN>
__device__ __forceinline__ double snap_widen_ieee(u32 h) {
    const u32 bias = (1u << (EXP - 1)) - 1;
    const u32 emax = (1u << EXP) - 1;
    const u64 sign = ((u64)(h >> (EXP + MAN)) & 1ull) << 63;
    const u32 e = (h >> MAN) & emax;
    const u64 m = (u64)(h & ((1u << MAN) - 1));
    if (e == emax) {
        if (m == 0) return snap_from_bits(sign | 0x7ff0000000000000ull);
        return snap_from_bits(sign | 0x7ff8000000000000ull | (m << (52 - MAN)));
    }
    if (e == 0) {
        // Subnormal or zero: m * 2^(1 - bias - MAN), an exact product (a power of two scale of a
        // small integer), sign applied by bits so that -0.0 stays -0.0.
        const double unit = snap_from_bits(((u64)(1023 + 1 - (i32)bias - MAN)) << 52);
        const double v = __dmul_rn((double)m, unit);
        return snap_from_bits(snap_to_bits(v) | sign);
    }
    return snap_from_bits(sign | ((u64)((i32)e - (i32)bias + 1023) << 52) | (m << (52 - MAN)));
}

__device__ __forceinline__ double snap_widen_f16(u64 bits) { return snap_widen_ieee<5, 10>((u32)bits); }
// bf16 is the top half of an f32 (logquant.rs: f32::from_bits(bits << 16) as f64).
__device__ __forceinline__ double snap_widen_bf16(u64 bits) { return snap_widen_ieee<8, 23>((u32)bits << 16); }
__device__ __forceinline__ double snap_widen_f32(u64 bits) { return snap_widen_ieee<8, 23>((u32)bits); }
__device__ __forceinline__ double snap_widen_f64(u64 bits) { return snap_from_bits(bits); }

// ---------------------------------------------------------------------------------------------
// Narrowing: f64 -> binary format with EXP exponent bits and MAN stored mantissa bits, round to
// nearest even directly from the f64 bits. A line-by-line port of round_f64_to_narrow in
// logquant.rs (which the CPU uses for f16 and bf16); with EXP = 8, MAN = 23 it equals the x86
// cvtsd2ss the CPU uses for f32 (`x as f32`), NaN payload truncation included.
template <int EXP, int MAN>
__device__ __forceinline__ u32 snap_round_f64_to_narrow(double x) {
    const u64 F64_MAN_MASK = (1ull << 52) - 1;
    const u64 bits = snap_to_bits(x);
    const u32 sign = (u32)(bits >> 63) << (EXP + MAN);
    const u64 abs = bits & 0x7fffffffffffffffull;
    const u32 exp_mask = ((1u << EXP) - 1) << MAN;
    if (abs >= 0x7ff0000000000000ull) {
        if (abs == 0x7ff0000000000000ull) return sign | exp_mask;
        const u32 payload = (u32)((abs & F64_MAN_MASK) >> (52 - MAN));
        return sign | exp_mask | (1u << (MAN - 1)) | payload;
    }
    const i32 bias = (1 << (EXP - 1)) - 1;
    const i32 max_biased = (1 << EXP) - 2;
    const i32 e64 = (i32)(abs >> 52);
    const i32 te = e64 - 1023 + bias;
    if (te > max_biased) return sign | exp_mask;
    u64 val;
    u32 shift;
    if (te >= 1) {
        val = abs - ((u64)(1023 - bias) << 52);
        shift = 52 - MAN;
    } else {
        if (e64 == 0) return sign;
        shift = 52 - MAN + (u32)(1 - te);
        if (shift >= 54) return sign;
        val = (abs & F64_MAN_MASK) | (1ull << 52);
    }
    const u64 r = (val + ((1ull << (shift - 1)) - 1) + ((val >> shift) & 1ull)) >> shift;
    return sign | (u32)r;
}

__device__ __forceinline__ u64 snap_narrow_f16(double x) { return (u64)snap_round_f64_to_narrow<5, 10>(x); }
__device__ __forceinline__ u64 snap_narrow_bf16(double x) { return (u64)snap_round_f64_to_narrow<8, 7>(x); }
__device__ __forceinline__ u64 snap_narrow_f32(double x) { return (u64)snap_round_f64_to_narrow<8, 23>(x); }
__device__ __forceinline__ u64 snap_narrow_f64(double x) { return snap_to_bits(x); }

// ---------------------------------------------------------------------------------------------
// Element kinds: storage type, widening and narrowing, as the Elem impls of logquant.rs.

struct SnapF16 {
    static const u64 ONE = 0x3c00ull;   // bits of 1.0
    static const u64 SIGN = 0x8000ull;  // sign bit
    typedef u16 raw;
    static const bool IS_F64 = false;
    static __device__ __forceinline__ u64 load(const raw* p, u64 i) { return (u64)p[i]; }
    static __device__ __forceinline__ void store(raw* p, u64 i, u64 bits) { p[i] = (raw)bits; }
    static __device__ __forceinline__ double widen(u64 bits) { return snap_widen_f16(bits); }
    static __device__ __forceinline__ u64 narrow(double x) { return snap_narrow_f16(x); }
};
struct SnapBF16 {
    static const u64 ONE = 0x3f80ull;   // bits of 1.0
    static const u64 SIGN = 0x8000ull;  // sign bit
    typedef u16 raw;
    static const bool IS_F64 = false;
    static __device__ __forceinline__ u64 load(const raw* p, u64 i) { return (u64)p[i]; }
    static __device__ __forceinline__ void store(raw* p, u64 i, u64 bits) { p[i] = (raw)bits; }
    static __device__ __forceinline__ double widen(u64 bits) { return snap_widen_bf16(bits); }
    static __device__ __forceinline__ u64 narrow(double x) { return snap_narrow_bf16(x); }
};
struct SnapF32 {
    static const u64 ONE = 0x3f800000ull;   // bits of 1.0
    static const u64 SIGN = 0x80000000ull;  // sign bit
    typedef u32 raw;
    static const bool IS_F64 = false;
    static __device__ __forceinline__ u64 load(const raw* p, u64 i) { return (u64)p[i]; }
    static __device__ __forceinline__ void store(raw* p, u64 i, u64 bits) { p[i] = (raw)bits; }
    static __device__ __forceinline__ double widen(u64 bits) { return snap_widen_f32(bits); }
    static __device__ __forceinline__ u64 narrow(double x) { return snap_narrow_f32(x); }
};
struct SnapF64 {
    static const u64 ONE = 0x3ff0000000000000ull;   // bits of 1.0
    static const u64 SIGN = 0x8000000000000000ull;  // sign bit
    typedef u64 raw;
    static const bool IS_F64 = true;
    static __device__ __forceinline__ u64 load(const raw* p, u64 i) { return p[i]; }
    static __device__ __forceinline__ void store(raw* p, u64 i, u64 bits) { p[i] = bits; }
    static __device__ __forceinline__ double widen(u64 bits) { return snap_widen_f64(bits); }
    static __device__ __forceinline__ u64 narrow(double x) { return snap_narrow_f64(x); }
};

// ---------------------------------------------------------------------------------------------
// Bound modes (logquant.rs: trait Mode, Rel and Abs).
//
// apply() is the decoder's single operation. For finite operands it is one IEEE f64 multiply or
// add (round to nearest even), as on the CPU. The GPU returns a canonical NaN where x86-64 SSE
// propagates the NaN operand (quieted) or returns its negative "default NaN"; apply() reproduces
// the x86 results (a NaN b comes back quieted: only an f64 signalling NaN changes) so that even
// a malformed stream (non-zero code against a NaN/Inf reference,
// which the encoder never writes) decodes to the same bits. The table never holds NaN.

struct SnapRel {
    static const bool ZERO_TARGET_OK = false;
    static __device__ __forceinline__ double estimate(double a, double b, double inv_step) {
        // log() on the device may differ from the CPU's ln() in the last bit; that can only move
        // the first candidate, and the exact check below decides (see src/gpu/mod.rs).
        return log(a / b) * inv_step;
    }
    static __device__ __forceinline__ double apply(double b, double t) {
        if (snap_is_nan(b)) return snap_quiet(b);
        const double r = __dmul_rn(b, t);
        return snap_is_nan(r) ? snap_from_bits(SNAP_X86_DEFAULT_NAN) : r;
    }
    template <class K>
    static __device__ __forceinline__ bool within(double x, double a, double eps_check) {
        if (K::IS_F64 && snap_abs(a) < snap_from_bits(SNAP_SMALL_F64_BITS)) {
            const double s = snap_from_bits(SNAP_SCALE_UP_BITS);
            x = __dmul_rn(x, s);
            a = __dmul_rn(a, s);
        }
        return snap_abs(__dsub_rn(x, a)) <= __dmul_rn(eps_check, snap_abs(a));
    }
};

struct SnapAbs {
    static const bool ZERO_TARGET_OK = true;
    static __device__ __forceinline__ double estimate(double a, double b, double inv_step) {
        if (snap_is_finite(a) && snap_is_finite(b)) return __dmul_rn(__dsub_rn(a, b), inv_step);
        return snap_from_bits(0x7ff8000000000000ull);
    }
    static __device__ __forceinline__ double apply(double b, double t) {
        if (snap_is_nan(b)) return snap_quiet(b);
        const double r = __dadd_rn(b, t);
        return snap_is_nan(r) ? snap_from_bits(SNAP_X86_DEFAULT_NAN) : r;
    }
    template <class K>
    static __device__ __forceinline__ bool within(double x, double a, double eps_check) {
        return snap_abs(__dsub_rn(x, a)) <= eps_check;
    }
};

// ---------------------------------------------------------------------------------------------
// Dither hash (logquant.rs: dither_u): splitmix64 of (index, a_bits, b_bits) -> [0, 1).

__device__ __forceinline__ u64 snap_rotl64(u64 x, u32 r) { return (x << r) | (x >> (64 - r)); }

__device__ __forceinline__ double snap_dither_u(u64 i, u64 a_bits, u64 b_bits) {
    u64 z = i * 0x9E3779B97F4A7C15ull + (snap_rotl64(a_bits, 17) ^ b_bits);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    // (z >> 11) < 2^53 converts exactly; the division by 2^53 is exact.
    return __dmul_rn((double)(z >> 11), 1.1102230246251565404236316680908203125e-16);
}

// ---------------------------------------------------------------------------------------------
// Encoder parameters (logquant.rs: struct Params).

struct SnapParams {
    const double* table;  // 2 * max_code + 1 entries, index m + max_code
    u32 max_code;
    double max_f;  // (double)max_code
    double inv_step;
    double eps_check;  // eps * CHECK_MARGIN
    int dither;
};

// logquant.rs: try_code. Returns true and the reconstruction bits when code m meets the bound.
template <class K, class M>
__device__ __forceinline__ bool snap_try_code(i32 m, double a, double b, u64 b_bits,
                                              const SnapParams& p, u64* x_bits) {
    const u32 mag = m < 0 ? (u32)(-(i64)m) : (u32)m;
    if (mag > p.max_code) return false;
    u64 x;
    if (m == 0) {
        x = b_bits;
    } else {
        const double t = p.table[(i64)m + (i64)p.max_code];
        x = K::narrow(M::apply(b, t));
    }
    if (M::template within<K>(K::widen(x), a, p.eps_check)) {
        *x_bits = x;
        return true;
    }
    return false;
}

// logquant.rs: encode_one, same candidate order. Returns false for an exception.
template <class K, class M>
__device__ __forceinline__ bool snap_encode_one(u64 i, u64 a_bits, u64 b_bits, const SnapParams& p,
                                                i32* code, u64* x_bits) {
    const double a = K::widen(a_bits);
    const double b = K::widen(b_bits);
    if (!p.dither && snap_is_finite(a) && (M::ZERO_TARGET_OK || a != 0.0) &&
        M::template within<K>(b, a, p.eps_check)) {
        *code = 0;
        *x_bits = b_bits;
        return true;
    }
    const double est = M::estimate(a, b, p.inv_step);
    if (p.dither && snap_is_finite(est) && snap_abs(est) <= p.max_f) {
        const i32 m = (i32)floor(__dadd_rn(est, snap_dither_u(i, a_bits, b_bits)));
        if (snap_try_code<K, M>(m, a, b, b_bits, p, x_bits)) {
            *code = m;
            return true;
        }
    }
    const double m0f = round(est);  // halves away from zero, as f64::round
    if (!snap_is_finite(m0f) || snap_abs(m0f) > __dadd_rn(p.max_f, 1.0)) return false;
    const i32 m0 = (i32)m0f;
    const i32 second = est >= m0f ? 1 : -1;
    const i32 cands[3] = {m0, m0 + second, m0 - second};
#pragma unroll
    for (int c = 0; c < 3; ++c) {
        if (snap_try_code<K, M>(cands[c], a, b, b_bits, p, x_bits)) {
            *code = cands[c];
            return true;
        }
    }
    return false;
}

// The keyframe reference of logquant's callers (lossy.rs: sign_reference): +-1.0 with A's sign.
template <class K>
__device__ __forceinline__ u64 snap_keyframe_ref(u64 a_bits) { return (a_bits & K::SIGN) | K::ONE; }

// Grid-stride loop bounds.
__device__ __forceinline__ u64 snap_tid() { return (u64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ u64 snap_stride() { return (u64)gridDim.x * blockDim.x; }

#endif  // SNAPSTORE_LOGQUANT_CUH
