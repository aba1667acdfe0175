// Padded planar 8-bit YUV -> float RGB on CUDA, as the reference decoder does it.
//
// 4:2:0 runs as one tiled kernel: a block loads the chroma its output tile
// needs (plus the 7-tap filter's reach) into shared memory, runs the vertical
// pass there at full precision, then the horizontal pass per output pixel, so
// YUV is read about once and only the float RGB is written.
#include "cuda_check.h"

#include <bpg/color_math.h>

namespace npp_ext
{
namespace
{

constexpr int kThreads = 256;
constexpr int kOutW = 64; // output pixels per tile (even, so tile parity = local parity)
constexpr int kOutH = 16;
// Chroma read by a tile: output 2i + p uses chroma i - 3 .. i + 3.
constexpr int kInW = kOutW / 2 + 6;
constexpr int kInH = kOutH / 2 + 6;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

__device__ __forceinline__ void store_rgb(float *out, int64_t plane, int y, int cb, int cr)
{
    int r, g, b;
    bpg_cm_ycc_to_rgb(y, cb, cr, &r, &g, &b);
    // IEEE division (even under --use_fast_math), bit-identical to the CPU
    // kernel and to `rgb.float() / 255` on the CPU.
    out[0] = __fdiv_rn(static_cast<float>(r), 255.0f);
    out[plane] = __fdiv_rn(static_cast<float>(g), 255.0f);
    out[2 * plane] = __fdiv_rn(static_cast<float>(b), 255.0f);
}

__global__ void __launch_bounds__(kThreads)
    yuv420_to_rgb_kernel(const uint8_t *__restrict__ yuv, float *__restrict__ rgb, int height,
                         int width, bpg_cm_layout l, int tiles_x, int tiles_y, int64_t tasks)
{
    __shared__ uint8_t s_c[2][kInH][kInW];
    __shared__ int s_v[2][kOutH][kInW];
    const int64_t plane = static_cast<int64_t>(height) * width;
    for (int64_t task = blockIdx.x; task < tasks; task += gridDim.x) {
        const int tx = static_cast<int>(task % tiles_x);
        const int ty = static_cast<int>(task / tiles_x % tiles_y);
        const int64_t img = task / tiles_x / tiles_y;
        const int x0 = tx * kOutW, y0 = ty * kOutH;
        const int cx = x0 / 2 - 3, cy = y0 / 2 - 3;
        const uint8_t *in = yuv + img * static_cast<int64_t>(l.total);

        // 1. Chroma window, edges replicated over the real chroma size.
        for (int t = threadIdx.x; t < 2 * kInH * kInW; t += kThreads) {
            const int p = t / (kInH * kInW);
            const int r = t / kInW % kInH;
            const int c = t % kInW;
            const int sr = bpg_cm_clampi(cy + r, 0, l.chroma_h - 1);
            const int sc = bpg_cm_clampi(cx + c, 0, l.chroma_w - 1);
            s_c[p][r][c] = in[l.y_size + p * l.c_size + static_cast<size_t>(sr) * l.coded_cw + sc];
        }
        __syncthreads();

        // 2. Vertical pass, full precision: output row y0 + r uses chroma rows
        //    (y0 + r) / 2 - 3 + k, i.e. local rows r / 2 + k.
        for (int t = threadIdx.x; t < 2 * kOutH * kInW; t += kThreads) {
            const int p = t / (kOutH * kInW);
            const int r = t / kInW % kOutH;
            const int c = t % kInW;
            const int parity = r & 1, base = r >> 1;
            int sum = 0;
#pragma unroll
            for (int k = 0; k < 7; ++k)
                sum += bpg_cm_up_tap(parity, k) * s_c[p][base + k][c];
            s_v[p][r][c] = sum;
        }
        __syncthreads();

        // 3. Horizontal pass, rounding, colour conversion.
        for (int t = threadIdx.x; t < kOutH * kOutW; t += kThreads) {
            const int r = t / kOutW, c = t % kOutW;
            const int gy = y0 + r, gx = x0 + c;
            if (gx < width && gy < height) {
                const int parity = c & 1, base = c >> 1;
                int scb = 0, scr = 0;
#pragma unroll
                for (int k = 0; k < 7; ++k) {
                    const int tap = bpg_cm_up_tap(parity, k);
                    scb += tap * s_v[0][r][base + k];
                    scr += tap * s_v[1][r][base + k];
                }
                store_rgb(rgb + img * 3 * plane + static_cast<int64_t>(gy) * width + gx, plane,
                          in[static_cast<int64_t>(gy) * l.coded_w + gx], bpg_cm_up_h_round(scb),
                          bpg_cm_up_h_round(scr));
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
        store_rgb(rgb + img * 3 * plane + q, plane, in[off], in[l.y_size + off],
                  in[l.y_size + l.c_size + off]);
    }
}

} // namespace

Status yuv_to_rgb_cuda(const uint8_t *yuv, float *rgb, int64_t n, int height, int width, int chroma,
                       int device, uintptr_t stream)
{
    if (Status st = yuv_check(kYuvToRgb, n, height, width, chroma, yuv, rgb))
        return st;
    if (n == 0)
        return kOk;
    cuda::DeviceGuard guard(device);
    NPP_CUDA_TRY(guard.error());
    const cudaStream_t s = cuda::as_stream(stream);
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, chroma);
    if (chroma == kChroma444) {
        const int64_t count = n * static_cast<int64_t>(height) * width;
        yuv444_to_rgb_kernel<<<cuda::grid_for(count, kThreads, kMaxBlocks), kThreads, 0, s>>>(
            yuv, rgb, n, height, width, l);
        return cuda::launch_status();
    }
    const int tiles_x = static_cast<int>(ceil_div(width, kOutW));
    const int tiles_y = static_cast<int>(ceil_div(height, kOutH));
    const int64_t tasks = n * tiles_x * tiles_y;
    yuv420_to_rgb_kernel<<<static_cast<unsigned>(std::min(tasks, kMaxBlocks)), kThreads, 0, s>>>(
        yuv, rgb, height, width, l, tiles_x, tiles_y, tasks);
    return cuda::launch_status();
}

} // namespace npp_ext
