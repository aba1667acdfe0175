// Fused NPP pixel branch on CUDA: y = relu(s2 * (W2 relu(s1 * (W1 x + b1)) + b2)).
#include "cuda_check.h"

namespace npp_ext
{
namespace
{

constexpr int kThreads = 256;
// The backward keeps 30 partial sums per thread; 128 threads keep its shared
// reduction buffer (30 x 128 doubles) under the 48 KiB static limit.
constexpr int kBwdThreads = 128;
constexpr int kFinishThreads = 128; // one block per reduced output value
constexpr int64_t kMaxGridY = 65535;

template <typename T> struct Coeffs {
    T w1[9], b1[3], s1[3], w2[9], b2[3], s2[3];

    __device__ __forceinline__ Coeffs(const PixelBranchParams<T> &p, int64_t img)
    {
#pragma unroll
        for (int i = 0; i < 9; ++i) {
            w1[i] = p.w1[i];
            w2[i] = p.w2[i];
        }
#pragma unroll
        for (int c = 0; c < 3; ++c) {
            b1[c] = p.b1[c];
            b2[c] = p.b2[c];
            s1[c] = p.s1[img * 3 + c];
            s2[c] = p.s2[img * 3 + c];
        }
    }
};

// relu that lets NaN through, as torch.relu does.
template <typename T> __device__ __forceinline__ T relu(T v) { return v < T(0) ? T(0) : v; }

// One pixel forward: y = relu(s2 * (W2 relu(s1 * (W1 x + b1)) + b2)).
template <typename T>
__device__ __forceinline__ void forward_pixel(const Coeffs<T> &c, T x0, T x1, T x2, T (&y)[3])
{
    T h[3];
#pragma unroll
    for (int o = 0; o < 3; ++o)
        h[o] = relu(c.s1[o] *
                    (c.w1[3 * o] * x0 + c.w1[3 * o + 1] * x1 + c.w1[3 * o + 2] * x2 + c.b1[o]));
#pragma unroll
    for (int o = 0; o < 3; ++o)
        y[o] = relu(c.s2[o] * (c.w2[3 * o] * h[0] + c.w2[3 * o + 1] * h[1] +
                               c.w2[3 * o + 2] * h[2] + c.b2[o]));
}

// Over packs of K pixels of each plane (K = 1: scalar); `packs` per plane.
template <typename T, int K>
__global__ void __launch_bounds__(kThreads)
    pixel_branch_forward_kernel(const cuda::Pack<T, K> *__restrict__ x, PixelBranchParams<T> p,
                                cuda::Pack<T, K> *__restrict__ y, int64_t n, int64_t packs)
{
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t img = blockIdx.y; img < n; img += gridDim.y) {
        const Coeffs<T> c(p, img);
        const cuda::Pack<T, K> *xi = x + img * 3 * packs;
        cuda::Pack<T, K> *yi = y + img * 3 * packs;
        for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < packs;
             i += stride) {
            const cuda::Pack<T, K> xp[3] = {xi[i], xi[packs + i], xi[2 * packs + i]};
            cuda::Pack<T, K> yp[3];
#pragma unroll
            for (int k = 0; k < K; ++k) {
                T out[3];
                forward_pixel(c, xp[0].v[k], xp[1].v[k], xp[2].v[k], out);
#pragma unroll
                for (int o = 0; o < 3; ++o)
                    yp[o].v[k] = out[o];
            }
#pragma unroll
            for (int o = 0; o < 3; ++o)
                yi[o * packs + i] = yp[o];
        }
    }
}

// One pixel backward: recomputes the forward, writes the input gradient gx and adds the
// pixel's terms to the 30 parameter sums (pb:: order).
template <typename T>
__device__ __forceinline__ void backward_pixel(const Coeffs<T> &c, const T (&xin)[3],
                                               const T (&g)[3], T (&gx)[3], T (&acc)[pb::kCount])
{
    T z1[3], a1[3], h1[3], gz2[3], gz1[3];
#pragma unroll
    for (int o = 0; o < 3; ++o) {
        z1[o] =
            c.w1[3 * o] * xin[0] + c.w1[3 * o + 1] * xin[1] + c.w1[3 * o + 2] * xin[2] + c.b1[o];
        a1[o] = c.s1[o] * z1[o];
        h1[o] = relu(a1[o]);
    }
#pragma unroll
    for (int o = 0; o < 3; ++o) {
        const T z2 =
            c.w2[3 * o] * h1[0] + c.w2[3 * o + 1] * h1[1] + c.w2[3 * o + 2] * h1[2] + c.b2[o];
        const T ga2 = !(c.s2[o] * z2 <= T(0)) ? g[o] : T(0);
        acc[pb::kS2 + o] += ga2 * z2;
        gz2[o] = ga2 * c.s2[o];
        acc[pb::kB2 + o] += gz2[o];
#pragma unroll
        for (int k = 0; k < 3; ++k)
            acc[pb::kW2 + 3 * o + k] += gz2[o] * h1[k];
    }
#pragma unroll
    for (int k = 0; k < 3; ++k) {
        const T gh1 = c.w2[k] * gz2[0] + c.w2[3 + k] * gz2[1] + c.w2[6 + k] * gz2[2];
        const T ga1 = !(a1[k] <= T(0)) ? gh1 : T(0);
        acc[pb::kS1 + k] += ga1 * z1[k];
        gz1[k] = ga1 * c.s1[k];
        acc[pb::kB1 + k] += gz1[k];
    }
#pragma unroll
    for (int o = 0; o < 3; ++o)
#pragma unroll
        for (int k = 0; k < 3; ++k)
            acc[pb::kW1 + 3 * o + k] += gz1[o] * xin[k];
#pragma unroll
    for (int k = 0; k < 3; ++k)
        gx[k] = c.w1[k] * gz1[0] + c.w1[3 + k] * gz1[1] + c.w1[6 + k] * gz1[2];
}

// Block (part, img) recomputes the forward for one chunk (counted in packs of K pixels of
// each plane; K = 1: scalar) of one image, writes grad_x and the chunk's 30 parameter
// partial sums (pb:: order).
template <typename T, int K>
__global__ void __launch_bounds__(kBwdThreads)
    pixel_branch_backward_kernel(const cuda::Pack<T, K> *__restrict__ grad,
                                 const cuda::Pack<T, K> *__restrict__ x, PixelBranchParams<T> p,
                                 cuda::Pack<T, K> *__restrict__ grad_x, T *__restrict__ partial,
                                 int64_t n, int64_t packs, int64_t chunk)
{
    __shared__ T red[pb::kCount * kBwdThreads];
    const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk;
    const int64_t end = begin + chunk < packs ? begin + chunk : packs;
    for (int64_t img = blockIdx.y; img < n; img += gridDim.y) {
        const Coeffs<T> c(p, img);
        const cuda::Pack<T, K> *xi = x + img * 3 * packs;
        const cuda::Pack<T, K> *gi = grad + img * 3 * packs;
        cuda::Pack<T, K> *gxi = grad_x + img * 3 * packs;
        T acc[pb::kCount];
#pragma unroll
        for (int q = 0; q < pb::kCount; ++q)
            acc[q] = T(0);
        for (int64_t i = begin + threadIdx.x; i < end; i += kBwdThreads) {
            const cuda::Pack<T, K> xp[3] = {xi[i], xi[packs + i], xi[2 * packs + i]};
            const cuda::Pack<T, K> gp[3] = {gi[i], gi[packs + i], gi[2 * packs + i]};
            cuda::Pack<T, K> gxp[3];
#pragma unroll
            for (int k = 0; k < K; ++k) {
                const T xin[3] = {xp[0].v[k], xp[1].v[k], xp[2].v[k]};
                const T g[3] = {gp[0].v[k], gp[1].v[k], gp[2].v[k]};
                T gx[3];
                backward_pixel(c, xin, g, gx, acc);
#pragma unroll
                for (int o = 0; o < 3; ++o)
                    gxp[o].v[k] = gx[o];
            }
#pragma unroll
            for (int o = 0; o < 3; ++o)
                gxi[o * packs + i] = gxp[o];
        }
        cuda::block_sum<kBwdThreads>(acc, red);
        if (threadIdx.x < pb::kCount)
            partial[(img * gridDim.x + blockIdx.x) * pb::kCount + threadIdx.x] =
                red[threadIdx.x * kBwdThreads];
        __syncthreads();
    }
}

// Adds the partial sums in a fixed order: s1/s2 per image, W/b over all
// images. One block per output value: the W/b sums run over n * parts
// partials (512 at 16x256x256), too many for one thread's serial loads.
template <typename T>
__global__ void __launch_bounds__(kFinishThreads)
    pixel_branch_finish_kernel(const T *__restrict__ partial, PixelBranchGrads<T> g, int64_t n,
                               int parts)
{
    __shared__ T red[kFinishThreads];
    constexpr int64_t kPerImage = 6; // 3 of s1, 3 of s2
    constexpr int64_t kGlobal = 24;  // 9 + 3 of W1/b1, 9 + 3 of W2/b2
    const int64_t count = kGlobal + kPerImage * n;
    for (int64_t t = blockIdx.x; t < count; t += gridDim.x) {
        // The pb:: slot q, summed over partial rows [first, first + rows).
        int q;
        int64_t first = 0, rows = n * parts;
        if (t < kGlobal) {
            // t -> pb:: index, skipping the s1 slots: 0..11 = W1, b1; 12..23 = W2, b2.
            q = t < 12 ? static_cast<int>(t) : static_cast<int>(t) + 3;
        } else {
            const int64_t img = (t - kGlobal) / kPerImage;
            const int k = static_cast<int>((t - kGlobal) % kPerImage);
            q = k < 3 ? pb::kS1 + k : pb::kS2 + (k - 3);
            first = img * parts;
            rows = parts;
        }
        T acc[1] = {T(0)};
        for (int64_t j = threadIdx.x; j < rows; j += kFinishThreads)
            acc[0] += partial[(first + j) * pb::kCount + q];
        cuda::block_sum<kFinishThreads>(acc, red);
        if (threadIdx.x == 0) {
            const T sum = red[0];
            if (t >= kGlobal) {
                const int64_t img = (t - kGlobal) / kPerImage;
                if (q < pb::kS2)
                    g.s1[img * 3 + (q - pb::kS1)] = sum;
                else
                    g.s2[img * 3 + (q - pb::kS2)] = sum;
            } else if (q < pb::kB1) {
                g.w1[q - pb::kW1] = sum;
            } else if (q < pb::kS1) {
                g.b1[q - pb::kB1] = sum;
            } else if (q < pb::kB2) {
                g.w2[q - pb::kW2] = sum;
            } else {
                g.b2[q - pb::kB2] = sum;
            }
        }
        __syncthreads(); // red is reused by the next value
    }
}

template <typename T, int K>
void launch_forward(const T *x, const PixelBranchParams<T> &p, T *y, int64_t n, int64_t hw,
                    cudaStream_t s)
{
    const int64_t packs = hw / K;
    // Scalar threads take about 2 pixels each, so that they too have work in flight.
    const dim3 grid(cuda::grid_for(packs, K == 1 ? kThreads * 2 : kThreads, 1024),
                    static_cast<unsigned>(std::min(n, kMaxGridY)));
    pixel_branch_forward_kernel<T, K>
        <<<grid, kThreads, 0, s>>>(reinterpret_cast<const cuda::Pack<T, K> *>(x), p,
                                   reinterpret_cast<cuda::Pack<T, K> *>(y), n, packs);
}

template <typename T, int K>
void launch_backward(const T *grad, const T *x, const PixelBranchParams<T> &p, T *grad_x,
                     T *workspace, int64_t n, int64_t hw, int parts, cudaStream_t s)
{
    const int64_t packs = hw / K;
    const dim3 grid(static_cast<unsigned>(parts), static_cast<unsigned>(std::min(n, kMaxGridY)));
    pixel_branch_backward_kernel<T, K><<<grid, kBwdThreads, 0, s>>>(
        reinterpret_cast<const cuda::Pack<T, K> *>(grad),
        reinterpret_cast<const cuda::Pack<T, K> *>(x), p,
        reinterpret_cast<cuda::Pack<T, K> *>(grad_x), workspace, n, packs, ceil_div(packs, parts));
}

template <typename T>
Status forward(const T *x, const PixelBranchParams<T> &p, T *y, int64_t n, int64_t hw, int device,
               uintptr_t stream)
{
    if (Status st = pixel_branch_forward_check(n, hw, x, p, y))
        return st;
    if (n == 0 || hw == 0)
        return kOk;
    cuda::DeviceGuard guard(device);
    NPP_CUDA_TRY(guard.error());
    const cudaStream_t s = cuda::as_stream(stream);
    if (cuda::packable(hw, cuda::kWide<T>, {x, y}))
        launch_forward<T, cuda::kWide<T>>(x, p, y, n, hw, s);
    else
        launch_forward<T, 1>(x, p, y, n, hw, s);
    return cuda::launch_status();
}

template <typename T>
Status backward(const T *grad, const T *x, const PixelBranchParams<T> &p, T *grad_x,
                const PixelBranchGrads<T> &g, T *workspace, int64_t n, int64_t hw, int device,
                uintptr_t stream)
{
    if (Status st = pixel_branch_backward_check(n, hw, grad, x, p, grad_x, g))
        return st;
    if (n > 0 && workspace == nullptr)
        return "npp_pixel_branch: null pointer";
    cuda::DeviceGuard guard(device);
    NPP_CUDA_TRY(guard.error());
    const cudaStream_t s = cuda::as_stream(stream);
    const int parts = npp_pixel_branch_backward_parts(hw);
    if (n > 0 && cuda::packable(hw, cuda::kWide<T>, {grad, x, grad_x}))
        launch_backward<T, cuda::kWide<T>>(grad, x, p, grad_x, workspace, n, hw, parts, s);
    else if (n > 0)
        launch_backward<T, 1>(grad, x, p, grad_x, workspace, n, hw, parts, s);
    // Also with n == 0: the W/b gradients are then zeros.
    const unsigned finish_blocks = static_cast<unsigned>(std::min<int64_t>(24 + 6 * n, 65535));
    pixel_branch_finish_kernel<T><<<finish_blocks, kFinishThreads, 0, s>>>(workspace, g, n, parts);
    return cuda::launch_status();
}

} // namespace

int npp_pixel_branch_backward_parts(int64_t hw) { return reduction_parts(hw, 2048, 512); }

Status npp_pixel_branch_forward_cuda(const float *x, PixelBranchParams<float> p, float *y,
                                     int64_t n, int64_t hw, int device, uintptr_t stream)
{
    return forward(x, p, y, n, hw, device, stream);
}

Status npp_pixel_branch_forward_cuda(const double *x, PixelBranchParams<double> p, double *y,
                                     int64_t n, int64_t hw, int device, uintptr_t stream)
{
    return forward(x, p, y, n, hw, device, stream);
}

Status npp_pixel_branch_backward_cuda(const float *grad, const float *x, PixelBranchParams<float> p,
                                      float *grad_x, PixelBranchGrads<float> g, float *workspace,
                                      int64_t n, int64_t hw, int device, uintptr_t stream)
{
    return backward(grad, x, p, grad_x, g, workspace, n, hw, device, stream);
}

Status npp_pixel_branch_backward_cuda(const double *grad, const double *x,
                                      PixelBranchParams<double> p, double *grad_x,
                                      PixelBranchGrads<double> g, double *workspace, int64_t n,
                                      int64_t hw, int device, uintptr_t stream)
{
    return backward(grad, x, p, grad_x, g, workspace, n, hw, device, stream);
}

} // namespace npp_ext
