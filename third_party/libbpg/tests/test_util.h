// A tiny check helper and shared fixtures for the libbpg-npp tests.
//
// CHECK / CHECKF record a failure and carry on, so that one run shows every
// broken case; main() ends with `return bt::finish("name");`.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bpg/bpg.h"

namespace bt
{

// ctest's SKIP_RETURN_CODE for tests whose inputs are missing.
constexpr int kSkip = 77;

inline int &failures()
{
    static int n = 0;
    return n;
}

inline void fail_at(const char *file, int line, const char *expr, const char *fmt = nullptr, ...)
{
    // Keep the log readable when one bug breaks thousands of cases.
    if (++failures() > 40) {
        if (failures() == 41)
            std::fprintf(stderr, "(further failures not shown)\n");
        return;
    }
    std::fprintf(stderr, "%s:%d: CHECK(%s) failed", file, line, expr);
    if (fmt != nullptr) {
        std::fprintf(stderr, ": ");
        va_list ap;
        va_start(ap, fmt);
        std::vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    std::fprintf(stderr, "\n");
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            bt::fail_at(__FILE__, __LINE__, #cond);                                                \
    } while (0)

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            bt::fail_at(__FILE__, __LINE__, #cond, __VA_ARGS__);                                   \
    } while (0)

inline int finish(const char *name)
{
    if (failures() != 0) {
        std::fprintf(stderr, "%s: %d check(s) failed\n", name, failures());
        return 1;
    }
    std::printf("%s: all checks passed\n", name);
    return 0;
}

// Deterministic pseudo-random numbers (no dependence on the C library's rand).
struct Lcg {
    uint32_t state;
    explicit Lcg(uint32_t seed) : state(seed * 2654435761u + 12345u) {}
    uint32_t next()
    {
        state = state * 1664525u + 1013904223u;
        return state >> 8;
    }
    int below(int n) { return static_cast<int>(next() % static_cast<uint32_t>(n)); }
};

// A photo-like test image: smooth colour gradients, a few hard edges, and a
// little noise, so that the coder has both flat and textured areas.
inline std::vector<uint8_t> make_image(int w, int h, uint32_t seed)
{
    std::vector<uint8_t> rgb(3 * static_cast<size_t>(w) * h);
    Lcg rng(seed);
    const double fx = 1.0 + rng.below(5), fy = 1.0 + rng.below(5), ph = rng.below(100) / 17.0;
    for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
            const double u = (x + 0.5) / w, v = (y + 0.5) / h;
            double c[3] = {
                128 + 100 * std::sin(6.28 * fx * u + ph) * std::cos(3.1 * v),
                128 + 90 * std::cos(6.28 * fy * v - ph) * std::sin(2.3 * u + 1.0),
                128 + 110 * std::sin(4.0 * (u + v) + 2 * ph),
            };
            if (((x / 7) + (y / 5)) % 4 == 0) // blocky edges
                c[(x + y) % 3] = 255 - c[(x + y) % 3];
            for (int k = 0; k < 3; ++k) {
                const double n = c[k] + rng.below(9) - 4;
                rgb[(static_cast<size_t>(y) * w + x) * 3 + k] = static_cast<uint8_t>(n < 0     ? 0
                                                                                     : n > 255 ? 255
                                                                                               : n);
            }
        }
    }
    return rgb;
}

// PSNR of two 8-bit buffers of n samples (inf when equal).
inline double psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double se = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        se += d * d;
    }
    if (se == 0)
        return INFINITY;
    return 10.0 * std::log10(255.0 * 255.0 * static_cast<double>(n) / se);
}

inline int max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    int m = 0;
    for (size_t i = 0; i < n; ++i) {
        const int d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
        m = d > m ? d : m;
    }
    return m;
}

inline const char *chroma_name(int chroma)
{
    switch (chroma) {
    case BPG_CM_GRAY:
        return "gray";
    case BPG_CM_420:
        return "420";
    case BPG_CM_422:
        return "422";
    case BPG_CM_444:
        return "444";
    }
    return "?";
}

// Encodes packed RGB with the given settings; returns the file or an empty
// vector (with the failure recorded) when encoding fails.
inline std::vector<uint8_t> encode(bpg_encoder *enc, const std::vector<uint8_t> &rgb, int w, int h,
                                   int qp, int chroma, int level)
{
    bpg_encode_options o;
    bpg_encode_options_init(&o);
    o.qp = qp;
    o.chroma = chroma;
    o.level = level;
    const uint8_t *out = nullptr;
    size_t size = 0;
    const bpg_status s = bpg_encode_rgb(enc, rgb.data(), w, h, 3 * w, &o, &out, &size);
    if (s != BPG_OK) {
        fail_at(__FILE__, __LINE__, "bpg_encode_rgb", "%dx%d qp %d %s level %d: %s: %s", w, h, qp,
                chroma_name(chroma), level, bpg_status_string(s), bpg_encoder_error(enc));
        return {};
    }
    return std::vector<uint8_t>(out, out + size);
}

// Decodes to packed RGB; empty on failure (recorded).
inline std::vector<uint8_t> decode(bpg_decoder *dec, const std::vector<uint8_t> &file, int w, int h)
{
    std::vector<uint8_t> rgb(3 * static_cast<size_t>(w) * h);
    const bpg_status s =
        bpg_decode_rgb(dec, file.data(), file.size(), rgb.data(), rgb.size(), 3 * w, nullptr);
    if (s != BPG_OK) {
        fail_at(__FILE__, __LINE__, "bpg_decode_rgb", "%dx%d: %s: %s", w, h, bpg_status_string(s),
                bpg_decoder_error(dec));
        return {};
    }
    return rgb;
}

} // namespace bt
