// Float RGB -> padded planar 8-bit YUV, bit-exact with the codec library.
#include "kernels.h"

#include <bpg/color_math.h>

#include <cmath>

namespace npp_ext
{
namespace
{

// torch's round(clamp(v, 0, 1) * 255) in float32, round half to even. NaN
// fails both comparisons and becomes 0 rather than undefined behaviour.
inline int quantize8(float v)
{
    v = v > 0.0f ? v : 0.0f;
    v = v < 1.0f ? v : 1.0f;
    return static_cast<int>(std::nearbyint(v * 255.0f));
}

// Luma (and for 4:4:4 chroma) rows; for 4:2:0 also the horizontal chroma pass
// into h (int16 per plane, H x chroma_w per image).
void convert_rows(const float *rgb, uint8_t *yuv, int16_t *h, int64_t task_begin, int64_t task_end,
                  int height, int width, int chroma, const bpg_cm_layout &l)
{
    const int64_t plane = static_cast<int64_t>(height) * width;
    std::vector<uint8_t> cb(static_cast<size_t>(width)), cr(static_cast<size_t>(width));
    for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t img = task / l.coded_h;
        const int y = static_cast<int>(task % l.coded_h);
        // Padding rows repeat the last real row, so compute them from it.
        const int sy = y < height ? y : height - 1;
        const float *r = rgb + img * 3 * plane + static_cast<int64_t>(sy) * width;
        const float *g = r + plane;
        const float *b = g + plane;
        uint8_t *out = yuv + img * static_cast<int64_t>(l.total);
        uint8_t *yrow = out + static_cast<int64_t>(y) * l.coded_w;
        for (int x = 0; x < width; ++x) {
            const int rr = quantize8(r[x]), gg = quantize8(g[x]), bb = quantize8(b[x]);
            yrow[x] = static_cast<uint8_t>(bpg_cm_rgb_to_y(rr, gg, bb));
            cb[x] = static_cast<uint8_t>(bpg_cm_rgb_to_cb(rr, gg, bb));
            cr[x] = static_cast<uint8_t>(bpg_cm_rgb_to_cr(rr, gg, bb));
        }
        std::fill(yrow + width, yrow + l.coded_w, yrow[width - 1]);
        if (chroma == kChroma444) {
            uint8_t *cbrow = out + l.y_size + static_cast<int64_t>(y) * l.coded_cw;
            uint8_t *crrow = cbrow + l.c_size;
            std::copy(cb.begin(), cb.end(), cbrow);
            std::copy(cr.begin(), cr.end(), crrow);
            std::fill(cbrow + width, cbrow + l.coded_cw, cb[width - 1]);
            std::fill(crrow + width, crrow + l.coded_cw, cr[width - 1]);
            continue;
        }
        if (y >= height)
            continue;
        int16_t *hcb = h + (img * 2 * height + y) * l.chroma_w;
        int16_t *hcr = hcb + static_cast<int64_t>(height) * l.chroma_w;
        for (int i = 0; i < l.chroma_w; ++i) {
            int scb = 0, scr = 0;
            for (int k = 0; k < 10; ++k) {
                const int sx = bpg_cm_clampi(2 * i - 4 + k, 0, width - 1);
                scb += bpg_cm_down_tap(k) * cb[sx];
                scr += bpg_cm_down_tap(k) * cr[sx];
            }
            // The horizontal result stays within int16 (about -3060..19380).
            hcb[i] = static_cast<int16_t>(bpg_cm_down420_h_round(scb));
            hcr[i] = static_cast<int16_t>(bpg_cm_down420_h_round(scr));
        }
    }
}

// Vertical 4:2:0 pass; padding rows and columns repeat the last real ones.
void vertical_rows(const int16_t *h, uint8_t *yuv, int64_t task_begin, int64_t task_end, int height,
                   const bpg_cm_layout &l)
{
    for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t img = task / (2 * l.coded_ch);
        const int p = static_cast<int>(task / l.coded_ch % 2);
        const int j = static_cast<int>(task % l.coded_ch);
        const int sj = j < l.chroma_h ? j : l.chroma_h - 1;
        const int16_t *src = h + (img * 2 + p) * height * static_cast<int64_t>(l.chroma_w);
        uint8_t *row = yuv + img * static_cast<int64_t>(l.total) + l.y_size + p * l.c_size +
                       static_cast<int64_t>(j) * l.coded_cw;
        for (int i = 0; i < l.chroma_w; ++i) {
            int sum = 0;
            for (int k = 0; k < 10; ++k) {
                const int sy = bpg_cm_clampi(2 * sj - 4 + k, 0, height - 1);
                sum += bpg_cm_down_tap(k) * src[static_cast<int64_t>(sy) * l.chroma_w + i];
            }
            row[i] = static_cast<uint8_t>(bpg_cm_down420_v_round(sum));
        }
        std::fill(row + l.chroma_w, row + l.coded_cw, row[l.chroma_w - 1]);
    }
}

} // namespace

Status rgb_to_yuv_cpu(const float *rgb, uint8_t *yuv, int64_t n, int height, int width, int chroma,
                      int num_threads)
{
    if (Status s = yuv_check(kRgbToYuv, n, height, width, chroma, rgb, yuv))
        return s;
    if (n == 0)
        return kOk;
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, chroma);
    std::vector<int16_t> h;
    if (chroma == kChroma420)
        h.resize(static_cast<size_t>(n) * 2 * height * l.chroma_w);
    const int64_t grain = std::max<int64_t>(1, 16384 / l.coded_w);
    detail::parallel_for(n * l.coded_h, grain, num_threads, [&](int64_t b, int64_t e) {
        convert_rows(rgb, yuv, h.data(), b, e, height, width, chroma, l);
    });
    if (chroma == kChroma420) {
        const int64_t vgrain = std::max<int64_t>(1, 16384 / l.coded_cw);
        detail::parallel_for(n * 2 * l.coded_ch, vgrain, num_threads, [&](int64_t b, int64_t e) {
            vertical_rows(h.data(), yuv, b, e, height, l);
        });
    }
    return kOk;
}

} // namespace npp_ext
