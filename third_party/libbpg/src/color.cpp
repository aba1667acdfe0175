#include "color.h"

#include <cstring>
#include <vector>

#include "bpg/color_math.h"

namespace bpg
{

void pad_plane(uint8_t *plane, int w, int h, int pw, int ph)
{
    for (int y = 0; y < h; ++y) {
        uint8_t *row = plane + static_cast<size_t>(y) * pw;
        std::memset(row + w, row[w - 1], static_cast<size_t>(pw - w));
    }
    for (int y = h; y < ph; ++y)
        std::memcpy(plane + static_cast<size_t>(y) * pw, plane + static_cast<size_t>(h - 1) * pw,
                    static_cast<size_t>(pw));
}

namespace
{

// One row of the 10-tap decimation with edge replication.
template <typename T> int down_sum(const T *src, int n, int i, ptrdiff_t step)
{
    int sum = 0;
    for (int k = 0; k < 10; ++k)
        sum += bpg_cm_down_tap(k) *
               static_cast<int>(src[bpg_cm_clampi(2 * i - 4 + k, 0, n - 1) * step]);
    return sum;
}

// Cb or Cr at full resolution -> the subsampled plane (stride pw).
void decimate(const uint8_t *full, int w, int h, int chroma, uint8_t *out, int pw)
{
    const int cw = (w + 1) / 2;
    if (chroma == BPG_CM_422) {
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < cw; ++x)
                out[static_cast<size_t>(y) * pw + x] = static_cast<uint8_t>(
                    bpg_cm_down422_round(down_sum(full + static_cast<size_t>(y) * w, w, x, 1)));
        return;
    }
    const int ch = (h + 1) / 2;
    std::vector<int16_t> tmp(static_cast<size_t>(cw) * h);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < cw; ++x)
            tmp[static_cast<size_t>(y) * cw + x] = static_cast<int16_t>(
                bpg_cm_down420_h_round(down_sum(full + static_cast<size_t>(y) * w, w, x, 1)));
    for (int y = 0; y < ch; ++y)
        for (int x = 0; x < cw; ++x)
            out[static_cast<size_t>(y) * pw + x] =
                static_cast<uint8_t>(bpg_cm_down420_v_round(down_sum(tmp.data() + x, h, y, cw)));
}

// 7-tap interpolation of output position o from n samples `step` apart.
template <typename T> int up_sum(const T *src, int n, int o, ptrdiff_t step)
{
    const int i = o >> 1, p = o & 1;
    int sum = 0;
    for (int k = 0; k < 7; ++k)
        sum +=
            bpg_cm_up_tap(p, k) * static_cast<int>(src[bpg_cm_clampi(i - 3 + k, 0, n - 1) * step]);
    return sum;
}

// Subsampled plane (stride pw, real size cw x ch) -> full resolution w x h.
void interpolate(const uint8_t *plane, int pw, int w, int h, int chroma, uint8_t *full)
{
    const int cw = (w + 1) / 2;
    if (chroma == BPG_CM_422) {
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
                full[static_cast<size_t>(y) * w + x] = static_cast<uint8_t>(
                    bpg_cm_up422_round(up_sum(plane + static_cast<size_t>(y) * pw, cw, x, 1)));
        return;
    }
    const int ch = (h + 1) / 2;
    std::vector<int> tmp(static_cast<size_t>(h) * cw);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < cw; ++x)
            tmp[static_cast<size_t>(y) * cw + x] = up_sum(plane + x, ch, y, pw);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            full[static_cast<size_t>(y) * w + x] = static_cast<uint8_t>(
                bpg_cm_up_h_round(up_sum(tmp.data() + static_cast<size_t>(y) * cw, cw, x, 1)));
}

} // namespace

void rgb_to_planes(const uint8_t *rgb, int width, int height, ptrdiff_t stride, int chroma,
                   uint8_t *out)
{
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, chroma);
    uint8_t *py = out;
    const bool sub = chroma == BPG_CM_420 || chroma == BPG_CM_422;
    std::vector<uint8_t> cb, cr;
    if (sub) {
        cb.resize(static_cast<size_t>(width) * height);
        cr.resize(cb.size());
    }
    uint8_t *pcb = out + l.y_size, *pcr = out + l.y_size + l.c_size;
    for (int y = 0; y < height; ++y) {
        const uint8_t *s = rgb + y * stride;
        for (int x = 0; x < width; ++x, s += 3) {
            py[static_cast<size_t>(y) * l.coded_w + x] =
                static_cast<uint8_t>(bpg_cm_rgb_to_y(s[0], s[1], s[2]));
            if (chroma == BPG_CM_GRAY)
                continue;
            const uint8_t u = static_cast<uint8_t>(bpg_cm_rgb_to_cb(s[0], s[1], s[2]));
            const uint8_t v = static_cast<uint8_t>(bpg_cm_rgb_to_cr(s[0], s[1], s[2]));
            if (sub) {
                cb[static_cast<size_t>(y) * width + x] = u;
                cr[static_cast<size_t>(y) * width + x] = v;
            } else {
                pcb[static_cast<size_t>(y) * l.coded_cw + x] = u;
                pcr[static_cast<size_t>(y) * l.coded_cw + x] = v;
            }
        }
    }
    pad_plane(py, width, height, l.coded_w, l.coded_h);
    if (chroma == BPG_CM_GRAY)
        return;
    if (sub) {
        decimate(cb.data(), width, height, chroma, pcb, l.coded_cw);
        decimate(cr.data(), width, height, chroma, pcr, l.coded_cw);
    }
    pad_plane(pcb, l.chroma_w, l.chroma_h, l.coded_cw, l.coded_ch);
    pad_plane(pcr, l.chroma_w, l.chroma_h, l.coded_cw, l.coded_ch);
}

void planes_to_rgb(const uint8_t *in, int width, int height, int chroma, uint8_t *rgb,
                   ptrdiff_t stride)
{
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, chroma);
    const uint8_t *py = in;
    if (chroma == BPG_CM_GRAY) {
        // Full-range gray: R = G = B = Y.
        for (int y = 0; y < height; ++y) {
            uint8_t *d = rgb + y * stride;
            for (int x = 0; x < width; ++x, d += 3)
                d[0] = d[1] = d[2] = py[static_cast<size_t>(y) * l.coded_w + x];
        }
        return;
    }
    const uint8_t *pcb = in + l.y_size, *pcr = in + l.y_size + l.c_size;
    std::vector<uint8_t> cb, cr;
    int cstride = l.coded_cw;
    if (chroma != BPG_CM_444) {
        cb.resize(static_cast<size_t>(width) * height);
        cr.resize(cb.size());
        interpolate(pcb, l.coded_cw, width, height, chroma, cb.data());
        interpolate(pcr, l.coded_cw, width, height, chroma, cr.data());
        pcb = cb.data();
        pcr = cr.data();
        cstride = width;
    }
    for (int y = 0; y < height; ++y) {
        uint8_t *d = rgb + y * stride;
        for (int x = 0; x < width; ++x, d += 3) {
            int r, g, b;
            const size_t ci = static_cast<size_t>(y) * cstride + x;
            bpg_cm_ycc_to_rgb(py[static_cast<size_t>(y) * l.coded_w + x], pcb[ci], pcr[ci], &r, &g,
                              &b);
            d[0] = static_cast<uint8_t>(r);
            d[1] = static_cast<uint8_t>(g);
            d[2] = static_cast<uint8_t>(b);
        }
    }
}

} // namespace bpg
