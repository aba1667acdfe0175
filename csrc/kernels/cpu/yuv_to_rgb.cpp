// Padded planar 8-bit YUV -> float RGB, as the reference decoder does it.
#include "kernels.h"

#include <bpg/color_math.h>

namespace npp_ext
{
namespace
{

// One output row per task. For 4:2:0 the vertical pass of the row's chroma is
// kept at full precision in a row buffer, then the horizontal pass rounds.
void decode_rows(const uint8_t *yuv, float *rgb, int64_t task_begin, int64_t task_end, int height,
                 int width, int chroma, const bpg_cm_layout &l)
{
    const int64_t plane = static_cast<int64_t>(height) * width;
    int taps[2][7];
    for (int p = 0; p < 2; ++p)
        for (int k = 0; k < 7; ++k)
            taps[p][k] = bpg_cm_up_tap(p, k);
    std::vector<int> vcb, vcr;
    if (chroma == kChroma420) {
        vcb.resize(static_cast<size_t>(l.chroma_w));
        vcr.resize(static_cast<size_t>(l.chroma_w));
    }
    for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t img = task / height;
        const int y = static_cast<int>(task % height);
        const uint8_t *in = yuv + img * static_cast<int64_t>(l.total);
        const uint8_t *yrow = in + static_cast<int64_t>(y) * l.coded_w;
        const uint8_t *cbp = in + l.y_size;
        const uint8_t *crp = cbp + l.c_size;
        float *r = rgb + img * 3 * plane + static_cast<int64_t>(y) * width;
        float *g = r + plane;
        float *b = g + plane;
        int rr, gg, bb;
        if (chroma == kChroma444) {
            const uint8_t *cbrow = cbp + static_cast<int64_t>(y) * l.coded_cw;
            const uint8_t *crrow = crp + static_cast<int64_t>(y) * l.coded_cw;
            for (int x = 0; x < width; ++x) {
                bpg_cm_ycc_to_rgb(yrow[x], cbrow[x], crrow[x], &rr, &gg, &bb);
                r[x] = static_cast<float>(rr) / 255.0f;
                g[x] = static_cast<float>(gg) / 255.0f;
                b[x] = static_cast<float>(bb) / 255.0f;
            }
            continue;
        }
        const int *vt = taps[y & 1];
        const int ci = y >> 1;
        for (int i = 0; i < l.chroma_w; ++i) {
            int scb = 0, scr = 0;
            for (int k = 0; k < 7; ++k) {
                const int64_t off =
                    static_cast<int64_t>(bpg_cm_clampi(ci - 3 + k, 0, l.chroma_h - 1)) *
                        l.coded_cw +
                    i;
                scb += vt[k] * cbp[off];
                scr += vt[k] * crp[off];
            }
            vcb[i] = scb;
            vcr[i] = scr;
        }
        for (int x = 0; x < width; ++x) {
            const int *ht = taps[x & 1];
            const int cx = x >> 1;
            int scb = 0, scr = 0;
            for (int k = 0; k < 7; ++k) {
                const int sx = bpg_cm_clampi(cx - 3 + k, 0, l.chroma_w - 1);
                scb += ht[k] * vcb[sx];
                scr += ht[k] * vcr[sx];
            }
            bpg_cm_ycc_to_rgb(yrow[x], bpg_cm_up_h_round(scb), bpg_cm_up_h_round(scr), &rr, &gg,
                              &bb);
            r[x] = static_cast<float>(rr) / 255.0f;
            g[x] = static_cast<float>(gg) / 255.0f;
            b[x] = static_cast<float>(bb) / 255.0f;
        }
    }
}

} // namespace

Status yuv_to_rgb_cpu(const uint8_t *yuv, float *rgb, int64_t n, int height, int width, int chroma,
                      int num_threads)
{
    if (Status s = yuv_check(kYuvToRgb, n, height, width, chroma, yuv, rgb))
        return s;
    if (n == 0)
        return kOk;
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, chroma);
    const int64_t grain = std::max<int64_t>(1, 8192 / width);
    detail::parallel_for(n * height, grain, num_threads, [&](int64_t b, int64_t e) {
        decode_rows(yuv, rgb, b, e, height, width, chroma, l);
    });
    return kOk;
}

} // namespace npp_ext
