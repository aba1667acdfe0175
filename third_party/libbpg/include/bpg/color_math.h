/* Integer colour maths of the BPG reference tools, 8-bit, BT.601 full range.
 *
 * One header shared by the codec library (CPU) and the torch kernels (CPU and
 * CUDA), so that the kernels' YUV is bit-exact with what the library would
 * produce from the same 8-bit RGB. Everything is inline, branch-light and
 * free of tables so that it compiles unchanged for device code.
 *
 * The numbers follow docs/color.md at the repository root:
 *  - forward matrix in fixed point with 23 fractional bits,
 *  - 4:2:0 decimation with the 10-tap half-phase filter (horizontal first,
 *    extra precision kept between the passes),
 *  - 4:2:0 interpolation with the 7-tap filter pair (vertical first),
 *  - inverse matrix with 22 fractional bits.
 * The integer constants are round(k * 2^s); tests/test_color_math.cpp checks
 * them against the formulas. */
#ifndef BPG_COLOR_MATH_H
#define BPG_COLOR_MATH_H

#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define BPG_HD __host__ __device__ __forceinline__
#else
#define BPG_HD static inline
#endif

/* Chroma formats, numbered as the BPG header's pixel_format field. */
#define BPG_CM_GRAY 0
#define BPG_CM_420 1
#define BPG_CM_422 2
#define BPG_CM_444 3

/* RGB -> YCbCr, shift 23 (= 31 - 8). */
#define BPG_CM_FWD_SHIFT 23
#define BPG_CM_Y_R 2508194
#define BPG_CM_Y_G 4924113
#define BPG_CM_Y_B 956301
#define BPG_CM_CB_R (-1415459)
#define BPG_CM_CB_G (-2778845)
#define BPG_CM_CB_B 4194304
#define BPG_CM_CR_R 4194304
#define BPG_CM_CR_G (-3512206)
#define BPG_CM_CR_B (-682098)

/* YCbCr -> RGB, shift 22 (= 30 - 8). */
#define BPG_CM_INV_SHIFT 22
#define BPG_CM_INV_ONE 4194304
#define BPG_CM_INV_CR_R 5880414
#define BPG_CM_INV_CB_G 1443412
#define BPG_CM_INV_CR_G 2995305
#define BPG_CM_INV_CB_B 7432307

BPG_HD int bpg_cm_clamp8(int v) { return v < 0 ? 0 : (v > 255 ? 255 : v); }

BPG_HD int bpg_cm_clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

BPG_HD int bpg_cm_rgb_to_y(int r, int g, int b)
{
    return bpg_cm_clamp8(
        (BPG_CM_Y_R * r + BPG_CM_Y_G * g + BPG_CM_Y_B * b + (1 << (BPG_CM_FWD_SHIFT - 1))) >>
        BPG_CM_FWD_SHIFT);
}

BPG_HD int bpg_cm_rgb_to_cb(int r, int g, int b)
{
    return bpg_cm_clamp8(
        ((BPG_CM_CB_R * r + BPG_CM_CB_G * g + BPG_CM_CB_B * b + (1 << (BPG_CM_FWD_SHIFT - 1))) >>
         BPG_CM_FWD_SHIFT) +
        128);
}

BPG_HD int bpg_cm_rgb_to_cr(int r, int g, int b)
{
    return bpg_cm_clamp8(
        ((BPG_CM_CR_R * r + BPG_CM_CR_G * g + BPG_CM_CR_B * b + (1 << (BPG_CM_FWD_SHIFT - 1))) >>
         BPG_CM_FWD_SHIFT) +
        128);
}

/* Decimation (4:4:4 -> 4:2:0/4:2:2, chroma between luma samples): output i
 * is sum_k down_tap(k) * src[clamp(2i - 4 + k)], k = 0..9, taps sum to 128. */
BPG_HD int bpg_cm_down_tap(int k)
{
    /* 2, -4, -8, 17, 57, 57, 17, -8, -4, 2 */
    const int kk = k < 5 ? k : 9 - k;
    return kk == 0 ? 2 : kk == 1 ? -4 : kk == 2 ? -8 : kk == 3 ? 17 : 57;
}

/* Horizontal 4:2:0 pass: 7 bits of gain in, 1 bit rounded off (no clamp). */
BPG_HD int bpg_cm_down420_h_round(int sum) { return (sum + 1) >> 1; }

/* Vertical 4:2:0 pass over horizontal results: 13 bits rounded off. */
BPG_HD int bpg_cm_down420_v_round(int sum) { return bpg_cm_clamp8((sum + (1 << 12)) >> 13); }

/* Horizontal-only 4:2:2 decimation rounds straight back to 8 bits. */
BPG_HD int bpg_cm_down422_round(int sum) { return bpg_cm_clamp8((sum + 64) >> 7); }

/* Interpolation (4:2:0 -> 4:4:4): output 2i + p (p = 0 even, 1 odd) is
 * sum_k up_tap(p, k) * src[clamp(i - 3 + k)], k = 0..6, taps sum to 64. */
BPG_HD int bpg_cm_up_tap(int parity, int k)
{
    /* even: 2, -6, 18, 57, -10, 4, -1; odd is the mirror image. */
    const int kk = parity ? 6 - k : k;
    return kk == 0   ? 2
           : kk == 1 ? -6
           : kk == 2 ? 18
           : kk == 3 ? 57
           : kk == 4 ? -10
           : kk == 5 ? 4
                     : -1;
}

/* The vertical pass keeps its 6 bits of gain; the horizontal one rounds 12. */
BPG_HD int bpg_cm_up_h_round(int sum) { return bpg_cm_clamp8((sum + (1 << 11)) >> 12); }

/* Horizontal-only 4:2:2 interpolation rounds 6 bits. */
BPG_HD int bpg_cm_up422_round(int sum) { return bpg_cm_clamp8((sum + 32) >> 6); }

BPG_HD void bpg_cm_ycc_to_rgb(int y, int cb, int cr, int *r, int *g, int *b)
{
    const int yy = y * BPG_CM_INV_ONE + (1 << (BPG_CM_INV_SHIFT - 1));
    cb -= 128;
    cr -= 128;
    *r = bpg_cm_clamp8((yy + BPG_CM_INV_CR_R * cr) >> BPG_CM_INV_SHIFT);
    *g = bpg_cm_clamp8((yy - BPG_CM_INV_CB_G * cb - BPG_CM_INV_CR_G * cr) >> BPG_CM_INV_SHIFT);
    *b = bpg_cm_clamp8((yy + BPG_CM_INV_CB_B * cb) >> BPG_CM_INV_SHIFT);
}

/* Plane layout of one image as the encoder takes it and the decoder gives it:
 * Y, then Cb, then Cr, contiguous, each padded (edge samples replicated) to
 * the coded size. The coded size is the image size rounded up to the min
 * coding block (8), or to 16 when a side is <= 8, because x265 needs at
 * least one 16x16 CTU. Chroma planes are ceil(w/2) (x ceil(h/2)) samples of
 * real data inside a coded plane of half the coded size. */
typedef struct bpg_cm_layout {
    int width, height;      /* real image size */
    int coded_w, coded_h;   /* luma plane size (padded) */
    int chroma_w, chroma_h; /* real chroma size (0 for gray) */
    int coded_cw, coded_ch; /* chroma plane size (padded, 0 for gray) */
    size_t y_size, c_size;  /* bytes of the luma plane and of each chroma plane */
    size_t total;           /* bytes of all planes */
} bpg_cm_layout;

BPG_HD int bpg_cm_pad_unit(int width, int height) { return (width <= 8 || height <= 8) ? 16 : 8; }

BPG_HD bpg_cm_layout bpg_cm_make_layout(int width, int height, int chroma)
{
    bpg_cm_layout l;
    const int unit = bpg_cm_pad_unit(width, height);
    const int sx = (chroma == BPG_CM_420 || chroma == BPG_CM_422) ? 1 : 0;
    const int sy = chroma == BPG_CM_420 ? 1 : 0;
    l.width = width;
    l.height = height;
    l.coded_w = (width + unit - 1) / unit * unit;
    l.coded_h = (height + unit - 1) / unit * unit;
    if (chroma == BPG_CM_GRAY) {
        l.chroma_w = l.chroma_h = l.coded_cw = l.coded_ch = 0;
    } else {
        l.chroma_w = (width + sx) >> sx;
        l.chroma_h = (height + sy) >> sy;
        l.coded_cw = l.coded_w >> sx;
        l.coded_ch = l.coded_h >> sy;
    }
    l.y_size = (size_t)l.coded_w * (size_t)l.coded_h;
    l.c_size = (size_t)l.coded_cw * (size_t)l.coded_ch;
    l.total = l.y_size + 2 * l.c_size;
    return l;
}

#endif /* BPG_COLOR_MATH_H */
