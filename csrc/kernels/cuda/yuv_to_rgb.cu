// Padded planar 8-bit YUV -> float RGB on CUDA, as the reference decoder does it.
//
// 4:2:0 is one kernel over tiles of 128 x 16 output pixels. A block loads the chroma its
// tile needs (plus the 7-tap filter's reach: 70 x 14 samples per plane) into shared
// memory, runs the vertical pass there at full precision (16-bit sums), then the
// horizontal pass, the colour conversion and the division by 255 per output pixel.
//
// Bandwidth by design. Per pixel 1.5 bytes of YUV come in and 12 bytes of float RGB go
// out, so the kernel is one write stream:
// - a thread produces 4 horizontal pixels at a time: one 4-byte luma load (issued before
//   the chroma work, so its latency is hidden) and three 16-byte stores (one per plane);
//   a warp covers one tile row, 512 B per store instruction, fully coalesced;
// - the horizontal pass reads the 8 vertical sums the 4 pixels need as four 32-bit words
//   per plane and runs four dp2a per pixel and plane (two 16-bit sums x two taps each);
// - x / 255 is a multiply by 1/255 and one FMA correction step, which gives the correctly
//   rounded quotient for every integer 0..255 (checked exhaustively by the emulation
//   test), and its clamp to [0, 1] is the free saturation of that FMA; the integer to
//   float conversion adds 1.5 * 2^23 (full-rate ops, not the 1/8-rate converter).
// About 60 instructions per pixel in all, under the memory time per pixel on a full GPU.
// The vector path needs width % 4 == 0, 16-byte aligned RGB and 4-byte aligned YUV (what
// torch allocates); other inputs run the same kernel with scalar loads and stores.
#include "yuv_launch.h"

#include <bpg/color_math.h>

namespace npp_ext
{
namespace
{

constexpr int kThreads = 256;
constexpr int kOutW = 128; // output pixels per tile row: one warp of 4-pixel groups
constexpr int kOutH = 16;  // even, so a tile's row parity is the image's
constexpr int kQuadsW = kOutW / 4;
constexpr int kQuadsPerThread = kOutH * kQuadsW / kThreads;
// Chroma read by a tile: output 2i + p uses chroma i - 3 .. i + 3.
constexpr int kInW = kOutW / 2 + 6;
constexpr int kInH = kOutH / 2 + 6;
constexpr int kSumWords = kInW / 2; // vertical sums per tile row, two 16-bit ones per word
constexpr int64_t kMaxBlocks = int64_t{1} << 20;
static_assert(kOutH * kQuadsW % kThreads == 0, "every thread takes the same number of groups");

// float(v) / 255 correctly rounded for v in 0..255, clamped to [0, 1] for any other v
// (the decoder's clamp to 0..255, done here in floating point).
__device__ __forceinline__ float to_unit(int v)
{
    constexpr float kInv = 1.0f / 255.0f;
    // The bits of 1.5 * 2^23 plus v are the float 1.5 * 2^23 + v for |v| < 2^22.
    const float f = __fsub_rn(__int_as_float(0x4B400000 + v), 12582912.0f);
    const float q = __fmul_rn(f, kInv);
    const float residual = __fmaf_rn(-q, 255.0f, f);
    return __saturatef(__fmaf_rn(residual, kInv, q));
}

// Interpolation taps of output parity `parity` for source offsets k .. k + 1, as dp2a's
// two low signed bytes; offsets outside 0..6 are 0.
__device__ __forceinline__ int up_tap_pair(int parity, int k)
{
    uint32_t word = 0;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int t = k + h;
        const int tap = t >= 0 && t < 7 ? bpg_cm_up_tap(parity, t) : 0;
        word |= (static_cast<uint32_t>(tap) & 0xFFu) << (8 * h);
    }
    return static_cast<int>(word);
}

// One output pixel's RGB from its luma and interpolated chroma sums (before rounding).
__device__ __forceinline__ void ycc_to_unit(int y, int cb_sum, int cr_sum, float &r, float &g,
                                            float &b)
{
    const int cb = bpg_cm_up_h_round(cb_sum) - 128, cr = bpg_cm_up_h_round(cr_sum) - 128;
    const int yy = y * BPG_CM_INV_ONE + (1 << (BPG_CM_INV_SHIFT - 1));
    r = to_unit((yy + BPG_CM_INV_CR_R * cr) >> BPG_CM_INV_SHIFT);
    g = to_unit((yy - BPG_CM_INV_CB_G * cb - BPG_CM_INV_CR_G * cr) >> BPG_CM_INV_SHIFT);
    b = to_unit((yy + BPG_CM_INV_CB_B * cb) >> BPG_CM_INV_SHIFT);
}

template <bool kVec>
__global__ void __launch_bounds__(kThreads, 4)
    yuv420_to_rgb_kernel(const uint8_t *__restrict__ yuv, float *__restrict__ rgb, int height,
                         int width, bpg_cm_layout l, cuda::TilePlan plan)
{
    __shared__ uint8_t s_c[2][kInH][kInW];
    // Vertical sums, [plane][tile row][column pair]: columns 2w and 2w + 1 in word w.
    __shared__ uint32_t s_v[2][kOutH][kSumWords];
    const int64_t plane = static_cast<int64_t>(height) * width;
    // dp2a taps: pixel 4q + e (e = 0..3) reads sum words w .. w + 3 of group q; its taps
    // start at offset e / 2 within them and have parity e % 2.
    int taps[4][4];
#pragma unroll
    for (int e = 0; e < 4; ++e)
#pragma unroll
        for (int k = 0; k < 4; ++k)
            taps[e][k] = up_tap_pair(e & 1, 2 * k - (e >> 1));

    for (int64_t task = blockIdx.x; task < plan.tasks; task += gridDim.x) {
        const cuda::TilePlan::Tile tile = plan.at(task);
        const int64_t img = tile.image;
        const int x0 = tile.x * kOutW, y0 = tile.y * kOutH;
        const int cx = x0 / 2 - 3, cy = y0 / 2 - 3;
        const uint8_t *in = yuv + img * static_cast<int64_t>(l.total);

        // 0. This thread's luma, loaded first: it is used last.
        uint8_t luma[kQuadsPerThread][4];
#pragma unroll
        for (int u = 0; u < kQuadsPerThread; ++u) {
            const int q = threadIdx.x + u * kThreads;
            const int gy = y0 + q / kQuadsW, gx = x0 + q % kQuadsW * 4;
            const uint8_t *src = in + static_cast<int64_t>(gy) * l.coded_w + gx;
            if (kVec && gy < height && gx < width) {
                const auto p = *reinterpret_cast<const cuda::Pack<uint8_t, 4> *>(src);
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    luma[u][k] = p.v[k];
            } else {
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    luma[u][k] = gy < height && gx + k < width ? src[k] : 0;
            }
        }

        // 1. Chroma window, edges replicated over the real chroma size.
#pragma unroll 4
        for (int t = threadIdx.x; t < 2 * kInH * kInW; t += kThreads) {
            const int c = t % kInW;
            const int r = t / kInW % kInH;
            const int p = t / (kInW * kInH);
            const int sr = bpg_cm_clampi(cy + r, 0, l.chroma_h - 1);
            const int sc = bpg_cm_clampi(cx + c, 0, l.chroma_w - 1);
            s_c[p][r][c] = in[l.y_size + p * l.c_size + static_cast<size_t>(sr) * l.coded_cw + sc];
        }
        __syncthreads();

        // 2. Vertical pass, full precision (|sum| < 2^15): output rows 2m and 2m + 1 both
        //    use chroma rows m .. m + 6 of the window, with mirrored taps. A step does two
        //    adjacent columns, i.e. one word of each of the two rows.
        for (int t = threadIdx.x; t < 2 * (kOutH / 2) * kSumWords; t += kThreads) {
            const int w = t % kSumWords;
            const int m = t / kSumWords % (kOutH / 2);
            const int p = t / (kSumWords * (kOutH / 2));
            uint32_t even = 0, odd = 0;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                int se = 0, so = 0;
#pragma unroll
                for (int k = 0; k < 7; ++k) {
                    const int v = s_c[p][m + k][2 * w + h];
                    se += bpg_cm_up_tap(0, k) * v;
                    so += bpg_cm_up_tap(1, k) * v;
                }
                even |= (static_cast<uint32_t>(se) & 0xFFFFu) << (16 * h);
                odd |= (static_cast<uint32_t>(so) & 0xFFFFu) << (16 * h);
            }
            s_v[p][2 * m][w] = even;
            s_v[p][2 * m + 1][w] = odd;
        }
        __syncthreads();

        // 3. Horizontal pass, colour conversion, division; 4 pixels per step. Pixels
        //    4q .. 4q + 3 of a row need window columns 2q .. 2q + 7: sum words q .. q + 3.
#pragma unroll
        for (int u = 0; u < kQuadsPerThread; ++u) {
            const int q = threadIdx.x + u * kThreads;
            const int r = q / kQuadsW, qx = q % kQuadsW;
            const int gy = y0 + r, gx = x0 + 4 * qx;
            if (gy >= height || gx >= width)
                continue;
            int sums[2][4];
#pragma unroll
            for (int p = 0; p < 2; ++p) {
                const uint32_t *words = &s_v[p][r][qx];
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    int s = 0;
#pragma unroll
                    for (int k = 0; k < 4; ++k)
                        s = __dp2a_lo(static_cast<int>(words[k]), taps[e][k], s);
                    sums[p][e] = s;
                }
            }
            cuda::Pack<float, 4> out[3];
#pragma unroll
            for (int e = 0; e < 4; ++e)
                ycc_to_unit(luma[u][e], sums[0][e], sums[1][e], out[0].v[e], out[1].v[e],
                            out[2].v[e]);
            float *dst = rgb + img * 3 * plane + static_cast<int64_t>(gy) * width + gx;
            if (kVec) {
#pragma unroll
                for (int c = 0; c < 3; ++c)
                    *reinterpret_cast<cuda::Pack<float, 4> *>(dst + c * plane) = out[c];
            } else {
                for (int e = 0; e < 4 && gx + e < width; ++e)
#pragma unroll
                    for (int c = 0; c < 3; ++c)
                        dst[c * plane + e] = out[c].v[e];
            }
        }
        __syncthreads(); // shared memory is reused by the next task
    }
}

__global__ void __launch_bounds__(kThreads)
    yuv444_to_rgb_kernel(const uint8_t *__restrict__ yuv, float *__restrict__ rgb, int64_t n,
                         int height, int width, bpg_cm_layout l)
{
    const int64_t plane = static_cast<int64_t>(height) * width;
    const int64_t count = n * plane;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t t = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; t < count;
         t += stride) {
        const int64_t img = t / plane;
        const int64_t q = t % plane;
        const int64_t y = q / width, x = q % width;
        const uint8_t *in = yuv + img * static_cast<int64_t>(l.total);
        const int64_t off = y * l.coded_w + x; // 4:4:4 chroma planes share the luma stride
        int r, g, b;
        bpg_cm_ycc_to_rgb(in[off], in[l.y_size + off], in[l.y_size + l.c_size + off], &r, &g, &b);
        float *out = rgb + img * 3 * plane + q;
        out[0] = to_unit(r);
        out[plane] = to_unit(g);
        out[2 * plane] = to_unit(b);
    }
}

} // namespace

Status yuv_to_rgb_cuda(const uint8_t *yuv, float *rgb, int64_t n, int height, int width, int chroma,
                       int device, uintptr_t stream)
{
    const auto launch = [&](const bpg_cm_layout &l, cudaStream_t s) {
        if (chroma == kChroma444) {
            const int64_t count = n * static_cast<int64_t>(height) * width;
            yuv444_to_rgb_kernel<<<cuda::grid_for(count, kThreads, kMaxBlocks), kThreads, 0, s>>>(
                yuv, rgb, n, height, width, l);
            return;
        }
        const cuda::TilePlan t =
            cuda::tile_plan(n, width, height, kOutW, kOutH, width, rgb, yuv, kMaxBlocks);
        const auto kernel = t.vec ? yuv420_to_rgb_kernel<true> : yuv420_to_rgb_kernel<false>;
        kernel<<<t.blocks, kThreads, 0, s>>>(yuv, rgb, height, width, l, t);
    };
    return cuda::run_yuv_op(kYuvToRgb, n, height, width, chroma, yuv, rgb, device, stream, launch);
}

} // namespace npp_ext
