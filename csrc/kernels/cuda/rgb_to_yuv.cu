// Float RGB -> padded planar 8-bit YUV on CUDA, bit-exact with the codec library.
//
// 4:2:0 is one kernel over tiles of 32 x 32 chroma samples (64 x 64 luma). A block reads
// its tile's RGB plus the 10-tap filter's reach (4 luma samples on every side: a 72 x 72
// region, 1.27x the tile; the overlap comes again from L2, not from memory), writes the
// tile's luma, keeps the region's 8-bit Cb/Cr in shared memory, runs the horizontal and
// then the vertical pass there and writes the tile's chroma. The coded padding is written
// on the way: luma by clamping the source row and column, chroma by clamping the output
// position to the last real sample (a plane's padding always lies in its edge tiles,
// because tiles are 64 luma samples and the coded size is the size rounded up to 8 or 16).
//
// Bandwidth by design. Per pixel 12 bytes of RGB come in and 1.5 bytes of YUV go out, so
// the kernel is one read stream; what it must do is keep enough loads in flight and spend
// fewer instructions per pixel than the memory takes:
// - a thread converts 4 horizontal pixels at a time: three 16-byte loads (one per plane),
//   one 4-byte luma store, two 4-byte shared stores. A warp moves 512 B per load and 128 B
//   per luma store instruction, all coalesced; with two groups in flight per thread and at
//   least 4 blocks of 256 threads per SM, 48 KiB of loads are in flight per SM, above the
//   bandwidth x latency product (about 30 KiB per SM at 4.8 TB/s and ~1 us).
// - quantization adds 1.5 * 2^23 (round half to even as __float2int_rn, on the FP32 pipe
//   instead of the 1/8-rate converter); no integer division per pixel (the divisors are
//   constants, which compile to multiplies; a real one only per tile, for its position).
// - the filters work on packed data: the horizontal pass is three dp4a over signed bytes
//   (Cb - 128) per output, the vertical one five dp2a over pairs of 16-bit sums.
// That is about 80 instructions per pixel, under the memory time per pixel on a full GPU,
// so the two overlap across the blocks of an SM. The vector path needs width % 4 == 0,
// 16-byte aligned RGB and 4-byte aligned YUV (what torch allocates); other inputs run the
// same kernel with scalar loads and stores.
#include "yuv_launch.h"

#include <bpg/color_math.h>

namespace npp_ext
{
namespace
{

constexpr int kThreads = 256;
constexpr int kTile = 32;                      // chroma samples per tile side
constexpr int kHalo = 4;                       // luma samples the filter reaches each side
constexpr int kRegion = 2 * kTile + 2 * kHalo; // luma samples per region side (72)
constexpr int kQuads = kRegion / 4;            // 4-pixel groups per region row (18)
constexpr int kRowPairs = kRegion / 2;         // horizontal-pass rows, two per word (36)
// Horizontal sums are stored column by column, two rows per 32-bit word (what dp2a
// takes); an odd pitch in words puts a warp's 32 columns on 32 different banks.
constexpr int kColPitch = kRowPairs + 1;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;
// Chroma is kept as signed bytes c - 128: sum(tap * (c - 128)) = sum(tap * c) - 128 * 128.
constexpr int kBiasedTapSum = 128 * 128;

// torch's round(clamp(v, 0, 1) * 255) in float32, round half to even; NaN -> 0. Adding
// 1.5 * 2^23 leaves the rounded integer in the low mantissa bits.
__device__ __forceinline__ int quantize8(float v)
{
    const float scaled = __fmul_rn(__saturatef(v), 255.0f);
    return __float_as_int(__fadd_rn(scaled, 12582912.0f)) & 0xFF;
}

// Taps first .. first + 3 of the 10-tap decimation filter as signed bytes (0 outside).
__device__ __forceinline__ int down_taps(int first)
{
    uint32_t word = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int t = first + k;
        const int tap = t >= 0 && t < 10 ? bpg_cm_down_tap(t) : 0;
        word |= (static_cast<uint32_t>(tap) & 0xFFu) << (8 * k);
    }
    return static_cast<int>(word);
}

// Taps 2k and 2k + 1 as the two low signed bytes of a word (dp2a's lower half).
__device__ __forceinline__ int down_tap_pair(int k)
{
    return static_cast<int>((static_cast<uint32_t>(bpg_cm_down_tap(2 * k)) & 0xFFu) |
                            (static_cast<uint32_t>(bpg_cm_down_tap(2 * k + 1)) & 0xFFu) << 8);
}

// RGB of 4 horizontal pixels from column gx of row `row` (an offset into the R plane),
// columns clamped to the image; three 16-byte loads when the group lies inside it.
template <bool kVec>
__device__ __forceinline__ void load_quad(const float *__restrict__ src, int64_t plane, int64_t row,
                                          int gx, int width, float (&v)[3][4])
{
    if (kVec && gx >= 0 && gx + 3 < width) {
#pragma unroll
        for (int c = 0; c < 3; ++c) {
            const auto p =
                *reinterpret_cast<const cuda::Pack<float, 4> *>(src + c * plane + row + gx);
#pragma unroll
            for (int k = 0; k < 4; ++k)
                v[c][k] = p.v[k];
        }
        return;
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int64_t off = row + bpg_cm_clampi(gx + k, 0, width - 1);
#pragma unroll
        for (int c = 0; c < 3; ++c)
            v[c][k] = src[c * plane + off];
    }
}

template <bool kVec>
__global__ void __launch_bounds__(kThreads, 4)
    rgb_to_yuv420_kernel(const float *__restrict__ rgb, uint8_t *__restrict__ yuv, int height,
                         int width, bpg_cm_layout l, cuda::TilePlan plan)
{
    // Region Cb/Cr as signed bytes, 4 per word: [plane][row][column / 4].
    __shared__ uint32_t s_c[2][kRegion][kQuads];
    // Horizontal sums (-3060 .. 19380: 16 bits), [plane][tile column][row pair], rows 2w
    // and 2w + 1 in word w.
    __shared__ uint32_t s_h[2][kTile][kColPitch];
    const int64_t plane = static_cast<int64_t>(height) * width;
    for (int64_t task = blockIdx.x; task < plan.tasks; task += gridDim.x) {
        const cuda::TilePlan::Tile tile = plan.at(task);
        const int64_t img = tile.image;
        const int cx0 = tile.x * kTile, cy0 = tile.y * kTile;
        const int lx0 = 2 * cx0 - kHalo, ly0 = 2 * cy0 - kHalo;
        const float *src = rgb + img * 3 * plane;
        uint8_t *out = yuv + img * static_cast<int64_t>(l.total);

        // 1. Region -> 8-bit YCbCr, 4 pixels per step: Cb/Cr of the whole region into
        //    shared memory, luma of the tile's own pixels (padding included) to memory.
#pragma unroll 2
        for (int q = threadIdx.x; q < kRegion * kQuads; q += kThreads) {
            const int r = q / kQuads, c = q % kQuads * 4;
            const int gy = ly0 + r, gx = lx0 + c;
            float v[3][4];
            load_quad<kVec>(src, plane,
                            static_cast<int64_t>(bpg_cm_clampi(gy, 0, height - 1)) * width, gx,
                            width, v);
            int rgb8[3][4];
            uint32_t cb = 0, cr = 0;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
#pragma unroll
                for (int ch = 0; ch < 3; ++ch)
                    rgb8[ch][k] = quantize8(v[ch][k]);
                const int R = rgb8[0][k], G = rgb8[1][k], B = rgb8[2][k];
                cb |= (static_cast<uint32_t>(bpg_cm_rgb_to_cb(R, G, B) - 128) & 0xFFu) << (8 * k);
                cr |= (static_cast<uint32_t>(bpg_cm_rgb_to_cr(R, G, B) - 128) & 0xFFu) << (8 * k);
            }
            s_c[0][r][c / 4] = cb;
            s_c[1][r][c / 4] = cr;
            const bool own = r >= kHalo && r < kRegion - kHalo && c >= kHalo && c < kRegion - kHalo;
            // A group is wholly inside or outside the coded width (both multiples of 4).
            if (own && gx < l.coded_w && gy < l.coded_h) {
                cuda::Pack<uint8_t, 4> y4;
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    y4.v[k] =
                        static_cast<uint8_t>(bpg_cm_rgb_to_y(rgb8[0][k], rgb8[1][k], rgb8[2][k]));
                uint8_t *dst = out + static_cast<int64_t>(gy) * l.coded_w + gx;
                if (kVec) {
                    *reinterpret_cast<cuda::Pack<uint8_t, 4> *>(dst) = y4;
                } else {
#pragma unroll
                    for (int k = 0; k < 4; ++k)
                        dst[k] = y4.v[k];
                }
            }
        }
        __syncthreads();

        // 2. Horizontal pass, two region rows per step (one s_h word), extra precision
        //    kept. Column i filters luma 2 * ci - 4 .. 2 * ci + 5 with ci clamped to the
        //    last real chroma column, so padding columns repeat it. Those 10 bytes start
        //    at byte 2 * (ci - cx0) of the row: three words, taps shifted by its parity.
        for (int t = threadIdx.x; t < 2 * kTile * kRowPairs; t += kThreads) {
            const int i = t % kTile;
            const int w = t / kTile % kRowPairs;
            const int p = t / (kTile * kRowPairs);
            const int cl = (cx0 + i < l.chroma_w ? cx0 + i : l.chroma_w - 1) - cx0;
            const int first = cl & 1 ? -2 : 0;
            const int t0 = down_taps(first), t1 = down_taps(first + 4), t2 = down_taps(first + 8);
            uint32_t pair = 0;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const uint32_t *row = &s_c[p][2 * w + h][cl >> 1];
                int sum = __dp4a(static_cast<int>(row[0]), t0, kBiasedTapSum);
                sum = __dp4a(static_cast<int>(row[1]), t1, sum);
                sum = __dp4a(static_cast<int>(row[2]), t2, sum);
                pair |= (static_cast<uint32_t>(bpg_cm_down420_h_round(sum)) & 0xFFFFu) << (16 * h);
            }
            s_h[p][i][w] = pair;
        }
        __syncthreads();

        // 3. Vertical pass: tile row j filters region rows 2 * cj .. 2 * cj + 9 (cj clamped
        //    to the last real chroma row), i.e. five s_h words from word cj.
        for (int t = threadIdx.x; t < 2 * kTile * kTile; t += kThreads) {
            const int i = t % kTile;
            const int j = t / kTile % kTile;
            const int p = t / (kTile * kTile);
            const int ci = cx0 + i, cj = cy0 + j;
            if (ci < l.coded_cw && cj < l.coded_ch) {
                const uint32_t *col = &s_h[p][i][(cj < l.chroma_h ? cj : l.chroma_h - 1) - cy0];
                int sum = 0;
#pragma unroll
                for (int k = 0; k < 5; ++k)
                    sum = __dp2a_lo(static_cast<int>(col[k]), down_tap_pair(k), sum);
                out[l.y_size + p * l.c_size + static_cast<size_t>(cj) * l.coded_cw + ci] =
                    static_cast<uint8_t>(bpg_cm_down420_v_round(sum));
            }
        }
        __syncthreads(); // shared memory is reused by the next task
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
    const auto launch = [&](const bpg_cm_layout &l, cudaStream_t s) {
        if (chroma == kChroma444) {
            const int64_t count = n * l.coded_w * static_cast<int64_t>(l.coded_h);
            rgb_to_yuv444_kernel<<<cuda::grid_for(count, kThreads, kMaxBlocks), kThreads, 0, s>>>(
                rgb, yuv, n, height, width, l);
            return;
        }
        const cuda::TilePlan t =
            cuda::tile_plan(n, l.chroma_w, l.chroma_h, kTile, kTile, width, rgb, yuv, kMaxBlocks);
        const auto kernel = t.vec ? rgb_to_yuv420_kernel<true> : rgb_to_yuv420_kernel<false>;
        kernel<<<t.blocks, kThreads, 0, s>>>(rgb, yuv, height, width, l, t);
    };
    return cuda::run_yuv_op(kRgbToYuv, n, height, width, chroma, rgb, yuv, device, stream, launch);
}

} // namespace npp_ext
