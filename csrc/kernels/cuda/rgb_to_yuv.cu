// Float RGB -> padded planar 8-bit YUV on CUDA, bit-exact with the codec library.
//
// 4:2:0 runs as one tiled kernel: a block converts a luma region to 8-bit
// Cb/Cr in shared memory (writing the tile's own luma on the way), runs the
// horizontal and then the vertical 10-tap pass there and writes its chroma
// tile. So RGB is read once (plus a halo that mostly hits L2) and only the
// 1.5 bytes/pixel of YUV are written. A second tiny kernel replicates the
// chroma padding, whose values come from other tiles.
#include "cuda_check.h"

#include <bpg/color_math.h>

namespace npp_ext
{
namespace
{

constexpr int kThreads = 256;
constexpr int kTileCW = 32; // chroma columns per tile
constexpr int kTileCH = 8;  // chroma rows per tile
// Luma region read by a tile: its 2x area plus the filter's reach (taps at
// 2i - 4 .. 2i + 5), i.e. 4 samples before and 4 after.
constexpr int kRegionW = 2 * kTileCW + 8;
constexpr int kRegionH = 2 * kTileCH + 8;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

// torch's round(clamp(v, 0, 1) * 255) in float32, round half to even. NaN
// fails both comparisons and becomes 0. __fmul_rn keeps the product rounded
// on its own (no contraction).
__device__ __forceinline__ int quantize8(float v)
{
    v = v > 0.0f ? v : 0.0f;
    v = v < 1.0f ? v : 1.0f;
    return __float2int_rn(__fmul_rn(v, 255.0f));
}

__global__ void __launch_bounds__(kThreads)
    rgb_to_yuv420_kernel(const float *__restrict__ rgb, uint8_t *__restrict__ yuv, int height,
                         int width, bpg_cm_layout l, int tiles_x, int tiles_y, int64_t tasks)
{
    __shared__ uint8_t s_c[2][kRegionH][kRegionW];
    __shared__ int s_h[2][kRegionH][kTileCW];
    const int64_t plane = static_cast<int64_t>(height) * width;
    for (int64_t task = blockIdx.x; task < tasks; task += gridDim.x) {
        const int tx = static_cast<int>(task % tiles_x);
        const int ty = static_cast<int>(task / tiles_x % tiles_y);
        const int64_t img = task / tiles_x / tiles_y;
        const int cx0 = tx * kTileCW, cy0 = ty * kTileCH;
        const int lx0 = 2 * cx0 - 4, ly0 = 2 * cy0 - 4;
        const float *src = rgb + img * 3 * plane;
        uint8_t *out = yuv + img * static_cast<int64_t>(l.total);

        // 1. Full-resolution 8-bit Cb/Cr of the region (edges replicated) and
        //    the luma of the tile's own pixels; clamping the source also
        //    replicates the luma into the padding.
        for (int t = threadIdx.x; t < kRegionH * kRegionW; t += kThreads) {
            const int r = t / kRegionW, c = t % kRegionW;
            const int gy = ly0 + r, gx = lx0 + c;
            const int64_t off = static_cast<int64_t>(bpg_cm_clampi(gy, 0, height - 1)) * width +
                                bpg_cm_clampi(gx, 0, width - 1);
            const int R = quantize8(src[off]);
            const int G = quantize8(src[plane + off]);
            const int B = quantize8(src[2 * plane + off]);
            s_c[0][r][c] = static_cast<uint8_t>(bpg_cm_rgb_to_cb(R, G, B));
            s_c[1][r][c] = static_cast<uint8_t>(bpg_cm_rgb_to_cr(R, G, B));
            const bool own = r >= 4 && r < 4 + 2 * kTileCH && c >= 4 && c < 4 + 2 * kTileCW;
            if (own && gx < l.coded_w && gy < l.coded_h)
                out[static_cast<int64_t>(gy) * l.coded_w + gx] =
                    static_cast<uint8_t>(bpg_cm_rgb_to_y(R, G, B));
        }
        __syncthreads();

        // 2. Horizontal pass for every region row, extra precision kept.
        for (int t = threadIdx.x; t < 2 * kRegionH * kTileCW; t += kThreads) {
            const int p = t / (kRegionH * kTileCW);
            const int r = t / kTileCW % kRegionH;
            const int i = t % kTileCW;
            int sum = 0;
#pragma unroll
            for (int k = 0; k < 10; ++k)
                sum += bpg_cm_down_tap(k) * s_c[p][r][2 * i + k];
            s_h[p][r][i] = bpg_cm_down420_h_round(sum);
        }
        __syncthreads();

        // 3. Vertical pass; only the real chroma area (padding: next kernel).
        for (int t = threadIdx.x; t < 2 * kTileCH * kTileCW; t += kThreads) {
            const int p = t / (kTileCH * kTileCW);
            const int j = t / kTileCW % kTileCH;
            const int i = t % kTileCW;
            const int ci = cx0 + i, cj = cy0 + j;
            if (ci < l.chroma_w && cj < l.chroma_h) {
                int sum = 0;
#pragma unroll
                for (int k = 0; k < 10; ++k)
                    sum += bpg_cm_down_tap(k) * s_h[p][2 * j + k][i];
                out[l.y_size + p * l.c_size + static_cast<size_t>(cj) * l.coded_cw + ci] =
                    static_cast<uint8_t>(bpg_cm_down420_v_round(sum));
            }
        }
        __syncthreads(); // shared memory is reused by the next task
    }
}

// Chroma padding: the right strip (real rows) and the bottom strip (all
// columns) of both chroma planes copy the nearest real sample.
__global__ void pad_chroma_kernel(uint8_t *__restrict__ yuv, bpg_cm_layout l, int64_t n)
{
    const int right_w = l.coded_cw - l.chroma_w;
    const int64_t right = static_cast<int64_t>(l.chroma_h) * right_w;
    const int64_t per_plane = right + static_cast<int64_t>(l.coded_ch - l.chroma_h) * l.coded_cw;
    const int64_t count = n * 2 * per_plane;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < count;
         t += stride) {
        const int64_t q = t % per_plane;
        const int64_t plane_index = t / per_plane; // img * 2 + (0 Cb, 1 Cr)
        int row, col;
        if (q < right) {
            row = static_cast<int>(q / right_w);
            col = l.chroma_w + static_cast<int>(q % right_w);
        } else {
            row = l.chroma_h + static_cast<int>((q - right) / l.coded_cw);
            col = static_cast<int>((q - right) % l.coded_cw);
        }
        uint8_t *p = yuv + plane_index / 2 * static_cast<int64_t>(l.total) + l.y_size +
                     plane_index % 2 * static_cast<int64_t>(l.c_size);
        const int sr = row < l.chroma_h ? row : l.chroma_h - 1;
        const int sc = col < l.chroma_w ? col : l.chroma_w - 1;
        p[static_cast<int64_t>(row) * l.coded_cw + col] =
            p[static_cast<int64_t>(sr) * l.coded_cw + sc];
    }
}

// 4:4:4: one thread per coded sample; clamped sources replicate the edges.
__global__ void __launch_bounds__(kThreads)
    rgb_to_yuv444_kernel(const float *__restrict__ rgb, uint8_t *__restrict__ yuv, int64_t n,
                         int height, int width, bpg_cm_layout l)
{
    const int64_t plane = static_cast<int64_t>(height) * width;
    const int64_t per_image = static_cast<int64_t>(l.coded_w) * l.coded_h;
    const int64_t count = n * per_image;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t t = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; t < count;
         t += stride) {
        const int64_t img = t / per_image;
        const int64_t q = t % per_image;
        const int y = static_cast<int>(q / l.coded_w), x = static_cast<int>(q % l.coded_w);
        const int64_t off =
            static_cast<int64_t>(y < height ? y : height - 1) * width + (x < width ? x : width - 1);
        const float *src = rgb + img * 3 * plane;
        const int R = quantize8(src[off]);
        const int G = quantize8(src[plane + off]);
        const int B = quantize8(src[2 * plane + off]);
        uint8_t *out = yuv + img * static_cast<int64_t>(l.total);
        out[q] = static_cast<uint8_t>(bpg_cm_rgb_to_y(R, G, B));
        out[l.y_size + q] = static_cast<uint8_t>(bpg_cm_rgb_to_cb(R, G, B));
        out[l.y_size + l.c_size + q] = static_cast<uint8_t>(bpg_cm_rgb_to_cr(R, G, B));
    }
}

} // namespace

Status rgb_to_yuv_cuda(const float *rgb, uint8_t *yuv, int64_t n, int height, int width, int chroma,
                       int device, uintptr_t stream)
{
    if (Status st = yuv_check(kRgbToYuv, n, height, width, chroma, rgb, yuv))
        return st;
    if (n == 0)
        return kOk;
    cuda::DeviceGuard guard(device);
    NPP_CUDA_TRY(guard.error());
    const cudaStream_t s = cuda::as_stream(stream);
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, chroma);
    if (chroma == kChroma444) {
        const int64_t count = n * l.coded_w * static_cast<int64_t>(l.coded_h);
        rgb_to_yuv444_kernel<<<cuda::grid_for(count, kThreads, kMaxBlocks), kThreads, 0, s>>>(
            rgb, yuv, n, height, width, l);
        return cuda::launch_status();
    }
    const int tiles_x = static_cast<int>(ceil_div(l.chroma_w, kTileCW));
    const int tiles_y = static_cast<int>(ceil_div(l.chroma_h, kTileCH));
    const int64_t tasks = n * tiles_x * tiles_y;
    rgb_to_yuv420_kernel<<<static_cast<unsigned>(std::min(tasks, kMaxBlocks)), kThreads, 0, s>>>(
        rgb, yuv, height, width, l, tiles_x, tiles_y, tasks);
    const int64_t pad = static_cast<int64_t>(l.chroma_h) * (l.coded_cw - l.chroma_w) +
                        static_cast<int64_t>(l.coded_ch - l.chroma_h) * l.coded_cw;
    if (pad > 0)
        pad_chroma_kernel<<<cuda::grid_for(n * 2 * pad, 256, kMaxBlocks), 256, 0, s>>>(yuv, l, n);
    return cuda::launch_status();
}

} // namespace npp_ext
