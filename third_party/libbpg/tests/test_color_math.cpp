// Tests (1) and (2): the colour-maths constants against the BT.601 formulas
// of docs/color.md, and bpg_rgb_to_yuv / bpg_yuv_to_rgb (round trip of flat
// colours, plane layout and padding, decimation against a reimplementation
// written from docs/color.md).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bpg/bpg.h"
#include "bpg/color_math.h"
#include "test_util.h"

namespace
{

const double kKr = 0.299, kKb = 0.114, kKg = 1.0 - kKr - kKb;

// c = round(k * 255' * 2^s / 255) for 8-bit output (255' = 255).
long fixed(double k, int shift) { return std::lrint(k * 255.0 * std::ldexp(1.0, shift) / 255.0); }

void test_constants()
{
    CHECK(BPG_CM_FWD_SHIFT == 31 - 8);
    CHECK(BPG_CM_INV_SHIFT == 30 - 8);
    const int s = BPG_CM_FWD_SHIFT;
    // Forward matrix rows (Y, Cb, Cr) of BT.601.
    const double fwd[9] = {kKr,
                           kKg,
                           kKb,
                           -0.5 * kKr / (1 - kKb),
                           -0.5 * kKg / (1 - kKb),
                           0.5,
                           0.5,
                           -0.5 * kKg / (1 - kKr),
                           -0.5 * kKb / (1 - kKr)};
    const long have_fwd[9] = {BPG_CM_Y_R,  BPG_CM_Y_G,  BPG_CM_Y_B,  BPG_CM_CB_R, BPG_CM_CB_G,
                              BPG_CM_CB_B, BPG_CM_CR_R, BPG_CM_CR_G, BPG_CM_CR_B};
    for (int i = 0; i < 9; ++i)
        CHECKF(have_fwd[i] == fixed(fwd[i], s), "forward coefficient %d: %ld, formula gives %ld", i,
               have_fwd[i], fixed(fwd[i], s));
    // The integer Y row must keep white at 255 and the chroma rows sum to 0.
    CHECK(BPG_CM_Y_R + BPG_CM_Y_G + BPG_CM_Y_B == 1 << s);
    CHECK(BPG_CM_CB_R + BPG_CM_CB_G + BPG_CM_CB_B == 0);
    CHECK(BPG_CM_CR_R + BPG_CM_CR_G + BPG_CM_CR_B == 0);

    const int si = BPG_CM_INV_SHIFT;
    const double inv[5] = {1.0, 2 * (1 - kKr), 2 * kKb * (1 - kKb) / (1 - kKb - kKr),
                           2 * kKr * (1 - kKr) / (1 - kKb - kKr), 2 * (1 - kKb)};
    const long have_inv[5] = {BPG_CM_INV_ONE, BPG_CM_INV_CR_R, BPG_CM_INV_CB_G, BPG_CM_INV_CR_G,
                              BPG_CM_INV_CB_B};
    for (int i = 0; i < 5; ++i)
        CHECKF(have_inv[i] == fixed(inv[i], si), "inverse coefficient %d: %ld, formula gives %ld",
               i, have_inv[i], fixed(inv[i], si));

    // Filter taps as listed in docs/color.md, and their gains.
    const int down[10] = {2, -4, -8, 17, 57, 57, 17, -8, -4, 2};
    const int up_even[7] = {2, -6, 18, 57, -10, 4, -1};
    const int up_odd[7] = {-1, 4, -10, 57, 18, -6, 2};
    int sum = 0;
    for (int k = 0; k < 10; ++k) {
        CHECKF(bpg_cm_down_tap(k) == down[k], "down tap %d", k);
        sum += bpg_cm_down_tap(k);
    }
    CHECK(sum == 128);
    int se = 0, so = 0;
    for (int k = 0; k < 7; ++k) {
        CHECKF(bpg_cm_up_tap(0, k) == up_even[k], "even up tap %d", k);
        CHECKF(bpg_cm_up_tap(1, k) == up_odd[k], "odd up tap %d", k);
        se += bpg_cm_up_tap(0, k);
        so += bpg_cm_up_tap(1, k);
    }
    CHECK(se == 64 && so == 64);

    // The rounding stages undo exactly the filters' gains: a flat signal
    // passes unchanged through each (4:2:0 down: 128 -> >>1 -> 128 -> >>13;
    // up: 64 * 64 -> >>12; 4:2:2: one pass).
    for (int v = 0; v < 256; ++v) {
        CHECKF(bpg_cm_down420_v_round(128 * bpg_cm_down420_h_round(128 * v)) == v, "v=%d", v);
        CHECKF(bpg_cm_down422_round(128 * v) == v, "v=%d", v);
        CHECKF(bpg_cm_up_h_round(64 * 64 * v) == v, "v=%d", v);
        CHECKF(bpg_cm_up422_round(64 * v) == v, "v=%d", v);
        // Gray stays gray both ways.
        CHECKF(bpg_cm_rgb_to_y(v, v, v) == v, "v=%d", v);
        CHECKF(bpg_cm_rgb_to_cb(v, v, v) == 128 && bpg_cm_rgb_to_cr(v, v, v) == 128, "v=%d", v);
        int r, g, b;
        bpg_cm_ycc_to_rgb(v, 128, 128, &r, &g, &b);
        CHECKF(r == v && g == v && b == v, "v=%d", v);
    }

    // The integer maths stays within one step of the real-valued formulas.
    int worst = 0;
    for (int r = 0; r < 256; r += 3) {
        for (int g = 0; g < 256; g += 5) {
            for (int b = 0; b < 256; b += 7) {
                const double y = kKr * r + kKg * g + kKb * b;
                const double cb = (b - y) / (2 * (1 - kKb)) + 128;
                const double cr = (r - y) / (2 * (1 - kKr)) + 128;
                const auto clampd = [](double v) { return std::min(255.0, std::max(0.0, v)); };
                const int d[3] = {
                    std::abs(bpg_cm_rgb_to_y(r, g, b) - static_cast<int>(std::lrint(clampd(y)))),
                    std::abs(bpg_cm_rgb_to_cb(r, g, b) - static_cast<int>(std::lrint(clampd(cb)))),
                    std::abs(bpg_cm_rgb_to_cr(r, g, b) - static_cast<int>(std::lrint(clampd(cr))))};
                worst = std::max({worst, d[0], d[1], d[2]});
            }
        }
    }
    CHECKF(worst <= 1, "integer RGB->YCbCr differs from the formula by %d", worst);
}

// ---- an independent decimation, written from docs/color.md#420-downsampling ----

const int kDown[10] = {2, -4, -8, 17, 57, 57, 17, -8, -4, 2};

int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

// Full-resolution chroma (w x h) -> expected subsampled samples (cw x ch).
std::vector<int> expected_decimation(const std::vector<int> &full, int w, int h, int chroma)
{
    const int cw = (w + 1) / 2;
    const int ch = chroma == BPG_CM_420 ? (h + 1) / 2 : h;
    std::vector<int> hor(static_cast<size_t>(cw) * h);
    for (int y = 0; y < h; ++y) {
        for (int x = 0; x < cw; ++x) {
            int s = 0;
            for (int k = 0; k < 10; ++k)
                s += kDown[k] * full[static_cast<size_t>(y) * w + clampi(2 * x - 4 + k, 0, w - 1)];
            // 4:2:2 rounds to 8 bits at once; 4:2:0 keeps one extra bit.
            hor[static_cast<size_t>(y) * cw + x] =
                chroma == BPG_CM_422 ? clampi((s + 64) >> 7, 0, 255) : (s + 1) >> 1;
        }
    }
    if (chroma == BPG_CM_422)
        return hor;
    std::vector<int> out(static_cast<size_t>(cw) * ch);
    for (int y = 0; y < ch; ++y) {
        for (int x = 0; x < cw; ++x) {
            int s = 0;
            for (int k = 0; k < 10; ++k)
                s += kDown[k] * hor[static_cast<size_t>(clampi(2 * y - 4 + k, 0, h - 1)) * cw + x];
            out[static_cast<size_t>(y) * cw + x] = clampi((s + (1 << 12)) >> 13, 0, 255);
        }
    }
    return out;
}

// Checks that plane (pw x ph, real rw x rh) replicates its last column/row.
void check_padding(const uint8_t *plane, int rw, int rh, int pw, int ph, const char *what, int w,
                   int h, int chroma)
{
    bool ok = true;
    for (int y = 0; y < ph && ok; ++y) {
        const int sy = std::min(y, rh - 1);
        for (int x = 0; x < pw && ok; ++x) {
            const int sx = std::min(x, rw - 1);
            if (plane[static_cast<size_t>(y) * pw + x] != plane[static_cast<size_t>(sy) * pw + sx])
                ok = false;
        }
    }
    CHECKF(ok, "%s padding of %dx%d %s is not edge replication", what, w, h,
           bt::chroma_name(chroma));
}

void test_layout(int w, int h, int chroma, uint32_t seed)
{
    const bpg_cm_layout l = bpg_cm_make_layout(w, h, chroma);
    // Expected sizes, recomputed from the documented rule.
    const int unit = (w <= 8 || h <= 8) ? 16 : 8;
    const int cw = (w + unit - 1) / unit * unit, chh = (h + unit - 1) / unit * unit;
    const int sx = (chroma == BPG_CM_420 || chroma == BPG_CM_422) ? 1 : 0;
    const int sy = chroma == BPG_CM_420 ? 1 : 0;
    CHECKF(l.coded_w == cw && l.coded_h == chh, "%dx%d coded %dx%d", w, h, l.coded_w, l.coded_h);
    if (chroma == BPG_CM_GRAY) {
        CHECK(l.c_size == 0 && l.total == l.y_size);
    } else {
        CHECK(l.chroma_w == (w + sx) >> sx && l.chroma_h == (h + sy) >> sy);
        CHECK(l.coded_cw == cw >> sx && l.coded_ch == chh >> sy);
        CHECK(l.c_size == static_cast<size_t>(l.coded_cw) * l.coded_ch);
        CHECK(l.total == l.y_size + 2 * l.c_size);
    }
    CHECK(l.y_size == static_cast<size_t>(cw) * chh);

    // Source with a row stride wider than the pixels, to check it is honoured.
    const std::vector<uint8_t> packed = bt::make_image(w, h, seed);
    const ptrdiff_t stride = 3 * w + 5;
    std::vector<uint8_t> rgb(static_cast<size_t>(stride) * h, 0xEE);
    for (int y = 0; y < h; ++y)
        std::memcpy(&rgb[static_cast<size_t>(y) * stride], &packed[static_cast<size_t>(y) * 3 * w],
                    3 * static_cast<size_t>(w));
    std::vector<uint8_t> yuv(l.total, 0x5A);
    bpg_status s = bpg_rgb_to_yuv(rgb.data(), w, h, stride, chroma, yuv.data(), yuv.size());
    CHECKF(s == BPG_OK, "bpg_rgb_to_yuv %dx%d %s: %s", w, h, bt::chroma_name(chroma),
           bpg_status_string(s));
    if (s != BPG_OK)
        return;
    std::vector<uint8_t> yuv2(l.total);
    CHECK(bpg_rgb_to_yuv(packed.data(), w, h, 3 * w, chroma, yuv2.data(), yuv2.size()) == BPG_OK);
    CHECK(yuv == yuv2);

    // Luma: per-pixel formula, then replication.
    int bad = 0;
    std::vector<int> fcb(static_cast<size_t>(w) * h), fcr(fcb.size());
    for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
            const uint8_t *p = &packed[(static_cast<size_t>(y) * w + x) * 3];
            bad += yuv[static_cast<size_t>(y) * l.coded_w + x] != bpg_cm_rgb_to_y(p[0], p[1], p[2]);
            fcb[static_cast<size_t>(y) * w + x] = bpg_cm_rgb_to_cb(p[0], p[1], p[2]);
            fcr[static_cast<size_t>(y) * w + x] = bpg_cm_rgb_to_cr(p[0], p[1], p[2]);
        }
    }
    CHECKF(bad == 0, "%d luma samples differ (%dx%d %s)", bad, w, h, bt::chroma_name(chroma));
    check_padding(yuv.data(), w, h, l.coded_w, l.coded_h, "Y", w, h, chroma);
    if (chroma == BPG_CM_GRAY)
        return;

    // Chroma: exact values in the real area, then replication.
    for (int c = 0; c < 2; ++c) {
        const uint8_t *plane = yuv.data() + l.y_size + c * l.c_size;
        const std::vector<int> &full = c == 0 ? fcb : fcr;
        const std::vector<int> want =
            chroma == BPG_CM_444 ? full : expected_decimation(full, w, h, chroma);
        const int rw = chroma == BPG_CM_444 ? w : l.chroma_w;
        bad = 0;
        for (int y = 0; y < l.chroma_h; ++y)
            for (int x = 0; x < l.chroma_w; ++x)
                bad += plane[static_cast<size_t>(y) * l.coded_cw + x] !=
                       want[static_cast<size_t>(y) * rw + x];
        CHECKF(bad == 0, "%d %s samples differ from docs/color.md's decimation (%dx%d %s)", bad,
               c == 0 ? "Cb" : "Cr", w, h, bt::chroma_name(chroma));
        check_padding(plane, l.chroma_w, l.chroma_h, l.coded_cw, l.coded_ch, c == 0 ? "Cb" : "Cr",
                      w, h, chroma);
    }

    // The wrong buffer size is refused rather than over- or under-filled.
    CHECK(bpg_rgb_to_yuv(packed.data(), w, h, 3 * w, chroma, yuv2.data(), yuv2.size() - 1) ==
          BPG_ERR_BUFFER_TOO_SMALL);
}

void test_flat_round_trip()
{
    const uint8_t colours[][3] = {{0, 0, 0},     {255, 255, 255}, {128, 128, 128}, {255, 0, 0},
                                  {0, 255, 0},   {0, 0, 255},     {255, 255, 0},   {0, 255, 255},
                                  {255, 0, 255}, {12, 200, 77},   {250, 128, 3},   {64, 32, 16},
                                  {1, 2, 3},     {200, 190, 180}, {17, 99, 233}};
    const int sizes[][2] = {{1, 1}, {5, 3}, {16, 16}, {17, 9}};
    const int formats[] = {BPG_CM_GRAY, BPG_CM_420, BPG_CM_422, BPG_CM_444};
    for (const auto &sz : sizes) {
        const int w = sz[0], h = sz[1];
        for (int chroma : formats) {
            const bpg_cm_layout l = bpg_cm_make_layout(w, h, chroma);
            int worst = 0;
            for (const auto &c : colours) {
                std::vector<uint8_t> rgb(3 * static_cast<size_t>(w) * h);
                for (size_t i = 0; i < rgb.size(); ++i)
                    rgb[i] = c[i % 3];
                std::vector<uint8_t> yuv(l.total), back(rgb.size(), 0x77);
                CHECK(bpg_rgb_to_yuv(rgb.data(), w, h, 3 * w, chroma, yuv.data(), yuv.size()) ==
                      BPG_OK);
                CHECK(bpg_yuv_to_rgb(yuv.data(), yuv.size(), w, h, chroma, back.data(), back.size(),
                                     3 * w) == BPG_OK);
                if (chroma == BPG_CM_GRAY) {
                    // Gray keeps luma only: R = G = B = Y.
                    const int y = bpg_cm_rgb_to_y(c[0], c[1], c[2]);
                    for (size_t i = 0; i < back.size(); ++i)
                        worst = std::max(worst, std::abs(back[i] - y));
                } else {
                    worst = std::max(worst, bt::max_abs_diff(rgb.data(), back.data(), rgb.size()));
                }
            }
            // 8-bit YCbCr loses at most a couple of steps on saturated colours.
            CHECKF(worst <= 2, "flat colours %dx%d %s: max error %d", w, h, bt::chroma_name(chroma),
                   worst);
        }
    }
}

void test_bad_arguments()
{
    uint8_t rgb[3 * 16 * 16] = {0};
    std::vector<uint8_t> yuv(bpg_cm_make_layout(16, 16, BPG_CM_420).total);
    CHECK(bpg_rgb_to_yuv(nullptr, 16, 16, 48, 1, yuv.data(), yuv.size()) != BPG_OK);
    CHECK(bpg_rgb_to_yuv(rgb, 16, 16, 48, 1, nullptr, yuv.size()) != BPG_OK);
    CHECK(bpg_rgb_to_yuv(rgb, 0, 16, 48, 1, yuv.data(), yuv.size()) != BPG_OK);
    CHECK(bpg_rgb_to_yuv(rgb, 16, -1, 48, 1, yuv.data(), yuv.size()) != BPG_OK);
    CHECK(bpg_rgb_to_yuv(rgb, 16, 16, 47, 1, yuv.data(), yuv.size()) != BPG_OK);
    CHECK(bpg_rgb_to_yuv(rgb, 16, 16, -48, 1, yuv.data(), yuv.size()) != BPG_OK);
    CHECK(bpg_rgb_to_yuv(rgb, 16, 16, 48, 7, yuv.data(), yuv.size()) != BPG_OK);
    CHECK(bpg_rgb_to_yuv(rgb, 16, 16, 48, -1, yuv.data(), yuv.size()) != BPG_OK);
    CHECK(bpg_rgb_to_yuv(rgb, 16, 16, 48, 1, yuv.data(), yuv.size() + 1) != BPG_OK);
    CHECK(bpg_yuv_to_rgb(yuv.data(), yuv.size(), 16, 16, 1, nullptr, sizeof(rgb), 48) != BPG_OK);
    CHECK(bpg_yuv_to_rgb(nullptr, yuv.size(), 16, 16, 1, rgb, sizeof(rgb), 48) != BPG_OK);
    CHECK(bpg_yuv_to_rgb(yuv.data(), yuv.size(), 16, 16, 1, rgb, sizeof(rgb) - 1, 48) != BPG_OK);
    CHECK(bpg_yuv_to_rgb(yuv.data(), yuv.size(), 16, 16, 1, rgb, sizeof(rgb), 47) != BPG_OK);
    // stride * 15 wraps around size_t: refused, not written far outside rgb.
    CHECK(bpg_yuv_to_rgb(yuv.data(), yuv.size(), 16, 16, 1, rgb, sizeof(rgb),
                         static_cast<ptrdiff_t>(SIZE_MAX / 15 + 1)) != BPG_OK);
    CHECK(bpg_yuv_to_rgb(yuv.data(), yuv.size() - 1, 16, 16, 1, rgb, sizeof(rgb), 48) != BPG_OK);
    CHECK(bpg_yuv_to_rgb(yuv.data(), yuv.size(), 16, 16, 4, rgb, sizeof(rgb), 48) != BPG_OK);
    CHECK(bpg_yuv_to_rgb(yuv.data(), yuv.size(), 16, 16385, 1, rgb, sizeof(rgb), 48) != BPG_OK);
}

} // namespace

int main()
{
    test_constants();
    test_flat_round_trip();
    const int sizes[][2] = {{1, 1}, {2, 2}, {3, 5}, {8, 8}, {9, 9}, {17, 9}, {13, 31}, {130, 63}};
    uint32_t seed = 1;
    for (const auto &sz : sizes)
        for (int chroma : {BPG_CM_GRAY, BPG_CM_420, BPG_CM_422, BPG_CM_444})
            test_layout(sz[0], sz[1], chroma, seed++);
    test_bad_arguments();
    return bt::finish("test_color_math");
}
