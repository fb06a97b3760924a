// Runs the CUDA kernels of kernels/*.cu on the host (see host_emu.h) for the parity tests in
// src/gpu/emu_tests.rs. Build: c++ -O1 -std=c++17 -ffp-contract=off -o snap_emu snap_emu.cpp
//
// Usage (all arrays are raw little-endian files; "-" for an absent reference; f64 parameters are
// passed as the decimal u64 of their bits so nothing is lost in text):
//   snap_emu quantize   KERNEL MAX_CODE INV_STEP_BITS EPS_CHECK_BITS DITHER BASE A B TABLE OUT
//        writes OUT.codes (i32), OUT.exc (u8), OUT.recon (elements), OUT.count (u64)
//   snap_emu dequantize KERNEL MAX_CODE B CODES TABLE OUT      writes OUT.out, OUT.bad (u64)
//   snap_emu planes     KERNEL FLOAT IN B OUT                  (delta_planes_uN / merge_planes_uN)
//   snap_emu hist       KERNEL DITHER BASE A B STEPS OUT       writes OUT (u64 counters)
// KERNEL is the kernel's name; its element size is implied by the name.

#include "host_emu.h"

#include "../logquant.cu"
#include "../planes.cu"
#include "../stats.cu"

#include <stdio.h>
#include <stdlib.h>

#include <string>
#include <vector>

SnapEmuDim blockIdx, blockDim, gridDim, threadIdx;
u32 snap_sh[64 * SNAP_HIST_BINS];

static std::vector<unsigned char> read_file(const char* path) {
    std::vector<unsigned char> v;
    if (strcmp(path, "-") == 0) return v;
    FILE* f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) v.insert(v.end(), buf, buf + n);
    fclose(f);
    return v;
}

static void write_file(const std::string& path, const void* p, size_t n) {
    FILE* f = fopen(path.c_str(), "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path.c_str());
        exit(2);
    }
    fclose(f);
}

static u64 arg_u64(const char* s) { return strtoull(s, nullptr, 10); }
static double arg_f64_bits(const char* s) { return __longlong_as_double((long long)arg_u64(s)); }

// Runs `launch` over a grid of `blocks` blocks of one thread each.
template <class F>
static void grid(unsigned blocks, F launch) {
    gridDim = {blocks, 1, 1};
    blockDim = {1, 1, 1};
    threadIdx = {0, 0, 0};
    for (unsigned b = 0; b < blocks; ++b) {
        blockIdx = {b, 0, 0};
        launch();
    }
}

static size_t elem_size(const std::string& k) {
    if (k.find("_f16_") != std::string::npos || k.find("_bf16_") != std::string::npos) return 2;
    if (k.find("_f32_") != std::string::npos) return 4;
    if (k.find("_f64_") != std::string::npos) return 8;
    if (k.find("_u8") != std::string::npos) return 1;
    if (k.find("_u16") != std::string::npos) return 2;
    if (k.find("_u32") != std::string::npos) return 4;
    return 8;
}

typedef void (*QuantFn)(const void*, const void*, const double*, u32, double, double, int, u64, u64,
                        i32*, u8*, void*, u64*);
typedef void (*DequantFn)(const void*, const i32*, const double*, u32, u64, void*, u64*);
typedef void (*PlanesFn)(const void*, const void*, u64, int, void*);
typedef void (*HistFn)(const void*, const void*, u64, const double*, u32, int, u64, u64*);

#define SNAP_EMU_KIND(NAME, MNAME)                                                                \
    {"snap_quantize_" #NAME "_" #MNAME, (void*)snap_quantize_##NAME##_##MNAME},                  \
        {"snap_dequantize_" #NAME "_" #MNAME, (void*)snap_dequantize_##NAME##_##MNAME},          \
        {"snap_code_hist_" #NAME "_" #MNAME, (void*)snap_code_hist_##NAME##_##MNAME},
#define SNAP_EMU_PLANES(BITS)                                                                     \
    {"snap_delta_planes_u" #BITS, (void*)snap_delta_planes_u##BITS},                             \
        {"snap_merge_planes_u" #BITS, (void*)snap_merge_planes_u##BITS},

struct Entry {
    const char* name;
    void* fn;
};
static const Entry ENTRIES[] = {
    SNAP_EMU_KIND(f16, rel) SNAP_EMU_KIND(f16, abs) SNAP_EMU_KIND(bf16, rel)
    SNAP_EMU_KIND(bf16, abs) SNAP_EMU_KIND(f32, rel) SNAP_EMU_KIND(f32, abs)
    SNAP_EMU_KIND(f64, rel) SNAP_EMU_KIND(f64, abs) SNAP_EMU_PLANES(8) SNAP_EMU_PLANES(16)
    SNAP_EMU_PLANES(32) SNAP_EMU_PLANES(64)};

static void* lookup(const char* name) {
    for (const Entry& e : ENTRIES)
        if (strcmp(e.name, name) == 0) return e.fn;
    fprintf(stderr, "unknown kernel %s\n", name);
    exit(2);
}

static const unsigned BLOCKS = 3;  // more than one block: exercises the grid-stride loops

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: see snap_emu.cpp\n");
        return 2;
    }
    const std::string op = argv[1];
    const std::string kernel = argv[2];
    void* fn = lookup(argv[2]);
    const size_t sz = elem_size(kernel);
    if (op == "quantize" && argc == 12) {
        const u32 max_code = (u32)arg_u64(argv[3]);
        const double inv_step = arg_f64_bits(argv[4]);
        const double eps_check = arg_f64_bits(argv[5]);
        const int dither = (int)arg_u64(argv[6]);
        const u64 base = arg_u64(argv[7]);
        std::vector<unsigned char> a = read_file(argv[8]), b = read_file(argv[9]),
                                   t = read_file(argv[10]);
        const u64 n = a.size() / sz;
        std::vector<i32> codes(n);
        std::vector<u8> exc(n);
        std::vector<unsigned char> recon(a.size());
        u64 count = 0;
        grid(BLOCKS, [&] {
            ((QuantFn)fn)(a.data(), b.empty() ? nullptr : b.data(), (const double*)t.data(),
                          max_code, inv_step, eps_check, dither, base, n, codes.data(), exc.data(),
                          recon.data(), &count);
        });
        const std::string out = argv[11];
        write_file(out + ".codes", codes.data(), n * 4);
        write_file(out + ".exc", exc.data(), n);
        write_file(out + ".recon", recon.data(), recon.size());
        write_file(out + ".count", &count, 8);
        return 0;
    }
    if (op == "dequantize" && argc == 8) {
        const u32 max_code = (u32)arg_u64(argv[3]);
        std::vector<unsigned char> b = read_file(argv[4]), c = read_file(argv[5]),
                                   t = read_file(argv[6]);
        const u64 n = b.size() / sz;
        std::vector<unsigned char> out(b.size());
        u64 bad = ~0ull;
        grid(BLOCKS, [&] {
            ((DequantFn)fn)(b.data(), (const i32*)c.data(), (const double*)t.data(), max_code, n,
                            out.data(), &bad);
        });
        const std::string o = argv[7];
        write_file(o + ".out", out.data(), out.size());
        write_file(o + ".bad", &bad, 8);
        return 0;
    }
    if (op == "planes" && argc == 7) {
        const int is_float = (int)arg_u64(argv[3]);
        std::vector<unsigned char> in = read_file(argv[4]), b = read_file(argv[5]);
        const u64 n = in.size() / sz;
        std::vector<unsigned char> out(in.size());
        grid(BLOCKS, [&] {
            ((PlanesFn)fn)(in.data(), b.empty() ? nullptr : b.data(), n, is_float, out.data());
        });
        write_file(argv[6], out.data(), out.size());
        return 0;
    }
    if (op == "hist" && argc == 9) {
        const int dither = (int)arg_u64(argv[3]);
        const u64 base = arg_u64(argv[4]);
        std::vector<unsigned char> a = read_file(argv[5]), b = read_file(argv[6]),
                                   s = read_file(argv[7]);
        const u64 n = a.size() / sz;
        const u32 k = (u32)(s.size() / 8);
        if (k > 64) {
            fprintf(stderr, "at most 64 candidates\n");
            return 2;
        }
        std::vector<u64> hist((size_t)k * SNAP_HIST_BINS);
        grid(BLOCKS, [&] {
            ((HistFn)fn)(a.data(), b.empty() ? nullptr : b.data(), n, (const double*)s.data(), k,
                         dither, base, hist.data());
        });
        write_file(argv[8], hist.data(), hist.size() * 8);
        return 0;
    }
    fprintf(stderr, "bad arguments for %s\n", op.c_str());
    return 2;
}
