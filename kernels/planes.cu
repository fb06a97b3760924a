// Exact (lossless) transform on the GPU (issue #4): src/codec/delta.rs followed by
// src/codec/planes.rs::split, and the inverse (delta.rs::inverse after planes.rs::merge).
//
// Forward, per element i of n (unit U = 1, 2, 4 or 8 bytes):
//   map(v)  = v                       for integers (and always for U = 1)
//           = ~v                      for floats with the sign bit set
//           = v | sign_bit            for other floats          (order-preserving integer image)
//   d       = map(a[i]) - map(b[i])   wrapping, read as a signed U-byte integer
//   z       = (d << 1) ^ (d >> (8U - 1))    zigzag
//   planes[p * n + i] = byte p of z (little endian), p = 0..U-1
// With b == NULL (Transform::None) z = a[i]: a plain byte-plane split.
//
// Kernels: snap_delta_planes_uU(a, b, n, is_float, planes) and
//          snap_merge_planes_uU(planes, b, n, is_float, out), U in 8, 16, 32, 64 (bits).
// Everything is integer arithmetic, so the result is bit-identical to the CPU by construction.

#include "logquant.cuh"

template <int BITS>
struct SnapUnit;
template <>
struct SnapUnit<8> { typedef u8 raw; };
template <>
struct SnapUnit<16> { typedef u16 raw; };
template <>
struct SnapUnit<32> { typedef u32 raw; };
template <>
struct SnapUnit<64> { typedef u64 raw; };

template <int BITS>
__device__ __forceinline__ u64 snap_mask() {
    return BITS == 64 ? ~0ull : ((1ull << (BITS % 64)) - 1);
}

template <int BITS>
__device__ __forceinline__ u64 snap_order_map(u64 v, int is_float) {
    const u64 top = 1ull << (BITS - 1);
    if (!is_float) return v;
    return (v & top) ? (~v & snap_mask<BITS>()) : (v | top);
}

template <int BITS>
__device__ __forceinline__ u64 snap_order_unmap(u64 m, int is_float) {
    const u64 top = 1ull << (BITS - 1);
    if (!is_float) return m;
    return (m & top) ? (m & ~top) : (~m & snap_mask<BITS>());
}

template <int BITS>
__device__ __forceinline__ void snap_delta_planes(const typename SnapUnit<BITS>::raw* __restrict__ a,
                                                  const typename SnapUnit<BITS>::raw* __restrict__ b,
                                                  u64 n, int is_float, u8* __restrict__ planes) {
    const u64 mask = snap_mask<BITS>();
    // delta.rs uses the byte path (never the float map) for 1-byte units.
    const int fl = BITS == 8 ? 0 : is_float;
    for (u64 i = snap_tid(); i < n; i += snap_stride()) {
        u64 z = (u64)a[i];
        if (b) {
            const u64 d = (snap_order_map<BITS>(z, fl) - snap_order_map<BITS>((u64)b[i], fl)) & mask;
            const u64 neg = (d >> (BITS - 1)) & 1ull;
            z = ((d << 1) ^ (0ull - neg)) & mask;
        }
#pragma unroll
        for (int p = 0; p < BITS / 8; ++p) planes[(u64)p * n + i] = (u8)(z >> (8 * p));
    }
}

template <int BITS>
__device__ __forceinline__ void snap_merge_planes(const u8* __restrict__ planes,
                                                  const typename SnapUnit<BITS>::raw* __restrict__ b,
                                                  u64 n, int is_float,
                                                  typename SnapUnit<BITS>::raw* __restrict__ out) {
    const u64 mask = snap_mask<BITS>();
    const int fl = BITS == 8 ? 0 : is_float;
    for (u64 i = snap_tid(); i < n; i += snap_stride()) {
        u64 z = 0;
#pragma unroll
        for (int p = 0; p < BITS / 8; ++p) z |= (u64)planes[(u64)p * n + i] << (8 * p);
        if (b) {
            const u64 d = ((z >> 1) ^ (0ull - (z & 1ull))) & mask;
            z = snap_order_unmap<BITS>((snap_order_map<BITS>((u64)b[i], fl) + d) & mask, fl);
        }
        out[i] = (typename SnapUnit<BITS>::raw)z;
    }
}

#define SNAP_PLANE_KERNELS(BITS)                                                                    \
    extern "C" __global__ void snap_delta_planes_u##BITS(const SnapUnit<BITS>::raw* a,              \
                                                         const SnapUnit<BITS>::raw* b, u64 n,      \
                                                         int is_float, u8* planes) {                \
        snap_delta_planes<BITS>(a, b, n, is_float, planes);                                         \
    }                                                                                               \
    extern "C" __global__ void snap_merge_planes_u##BITS(const u8* planes,                          \
                                                         const SnapUnit<BITS>::raw* b, u64 n,      \
                                                         int is_float, SnapUnit<BITS>::raw* out) {  \
        snap_merge_planes<BITS>(planes, b, n, is_float, out);                                       \
    }

SNAP_PLANE_KERNELS(8)
SNAP_PLANE_KERNELS(16)
SNAP_PLANE_KERNELS(32)
SNAP_PLANE_KERNELS(64)
