// QA scale on CUDA: y = act(x * scale[n, c]) and its backward.
//
// Both are memory-bound streams: forward reads x and writes y, backward reads grad and x
// and writes grad_x (the fewest bytes either can move), and the backward adds its
// per-row sums of grad * mask * x on the way, so grad_scale costs no pass of its own.
// What remains is to stream at the copy's rate: each thread keeps kIlp 16-byte loads per
// input in flight before it stores anything (64 B per input and thread, 16 KiB per block),
// and the tiny kernel that adds the per-block partial sums is started early (programmatic
// dependent launch) so that it does not wait for a launch behind the big one.
#include "cuda_check.h"

namespace npp_ext
{
namespace
{

constexpr int kThreads = 256;
constexpr int kIlp = 4; // packs per thread and step, all loaded before any is used
constexpr int64_t kMaxGridY = 65535;

template <typename T, int K> using Pack = cuda::Pack<T, K>;

// relu's gradient passes unless the output is <= 0 (torch's rule: NaN passes); `v < 0 ? 0
// : v` lets NaN through, as torch.relu does.
template <typename T> __device__ __forceinline__ T relu(T v) { return v < T(0) ? T(0) : v; }

// y = act(x * s) over rows of `packs` packs of K values each.
template <typename T, int K, bool kRelu>
__global__ void __launch_bounds__(kThreads)
    qp_scale_forward_kernel(const Pack<T, K> *__restrict__ x, const T *__restrict__ scale,
                            Pack<T, K> *__restrict__ y, int64_t rows, int64_t packs)
{
    const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads * kIlp;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const T s = scale[r];
        const Pack<T, K> *xr = x + r * packs;
        Pack<T, K> *yr = y + r * packs;
        for (int64_t base = static_cast<int64_t>(blockIdx.x) * kThreads * kIlp + threadIdx.x;
             base < packs; base += step) {
            Pack<T, K> p[kIlp];
#pragma unroll
            for (int u = 0; u < kIlp; ++u)
                if (base + u * kThreads < packs)
                    p[u] = xr[base + u * kThreads];
#pragma unroll
            for (int u = 0; u < kIlp; ++u) {
                if (base + u * kThreads >= packs)
                    continue;
#pragma unroll
                for (int k = 0; k < K; ++k)
                    p[u].v[k] = kRelu ? relu(p[u].v[k] * s) : p[u].v[k] * s;
                yr[base + u * kThreads] = p[u];
            }
        }
    }
}

// Block (part, row) handles one chunk (counted in packs) of one row: writes grad_x and
// the chunk's sum of grad_y * mask * x into partial[row * parts + part].
template <typename T, int K, bool kRelu>
__global__ void __launch_bounds__(kThreads)
    qp_scale_backward_kernel(const Pack<T, K> *__restrict__ grad, const Pack<T, K> *__restrict__ x,
                             const T *__restrict__ scale, Pack<T, K> *__restrict__ grad_x,
                             T *__restrict__ partial, int64_t rows, int64_t packs, int64_t chunk)
{
    __shared__ T red[kThreads];
    cuda::allow_dependent_launch(); // the finish kernel may take its place once all started
    const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk;
    const int64_t end = begin + chunk < packs ? begin + chunk : packs;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const T s = scale[r];
        const int64_t row = r * packs;
        T acc[1] = {T(0)};
        for (int64_t base = begin + threadIdx.x; base < end; base += kThreads * kIlp) {
            Pack<T, K> g[kIlp], xv[kIlp];
#pragma unroll
            for (int u = 0; u < kIlp; ++u)
                if (base + u * kThreads < end) {
                    g[u] = grad[row + base + u * kThreads];
                    xv[u] = x[row + base + u * kThreads];
                }
#pragma unroll
            for (int u = 0; u < kIlp; ++u) {
                if (base + u * kThreads >= end)
                    continue;
                Pack<T, K> gx;
#pragma unroll
                for (int k = 0; k < K; ++k) {
                    const T gm = (!kRelu || !(xv[u].v[k] * s <= T(0))) ? g[u].v[k] : T(0);
                    gx.v[k] = gm * s;
                    acc[0] += gm * xv[u].v[k];
                }
                grad_x[row + base + u * kThreads] = gx;
            }
        }
        cuda::block_sum<kThreads>(acc, red);
        if (threadIdx.x == 0)
            partial[r * gridDim.x + blockIdx.x] = red[0];
        __syncthreads();
    }
}

// grad_scale[r] = the row's partial sums added in a fixed order.
template <typename T>
__global__ void qp_scale_finish_kernel(const T *__restrict__ partial, T *__restrict__ grad_scale,
                                       int64_t rows, int parts)
{
    cuda::wait_for_prior_grid(); // the backward kernel's partial sums
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
         r += stride) {
        T acc = T(0);
        for (int p = 0; p < parts; ++p)
            acc += partial[r * parts + p];
        grad_scale[r] = acc;
    }
}

template <typename T, int K>
void launch_forward(const T *x, const T *scale, T *y, int64_t rows, int64_t hw, bool relu,
                    cudaStream_t s)
{
    const int64_t packs = hw / K;
    const dim3 grid(cuda::grid_for(packs, kThreads * kIlp, 1024),
                    static_cast<unsigned>(std::min(rows, kMaxGridY)));
    const auto *xp = reinterpret_cast<const Pack<T, K> *>(x);
    auto *yp = reinterpret_cast<Pack<T, K> *>(y);
    if (relu)
        qp_scale_forward_kernel<T, K, true><<<grid, kThreads, 0, s>>>(xp, scale, yp, rows, packs);
    else
        qp_scale_forward_kernel<T, K, false><<<grid, kThreads, 0, s>>>(xp, scale, yp, rows, packs);
}

template <typename T, int K>
void launch_backward(const T *grad, const T *x, const T *scale, T *grad_x, T *workspace,
                     int64_t rows, int64_t hw, bool relu, int parts, cudaStream_t s)
{
    const int64_t packs = hw / K;
    const int64_t chunk = ceil_div(packs, parts);
    const dim3 grid(static_cast<unsigned>(parts), static_cast<unsigned>(std::min(rows, kMaxGridY)));
    const auto *gp = reinterpret_cast<const Pack<T, K> *>(grad);
    const auto *xp = reinterpret_cast<const Pack<T, K> *>(x);
    auto *gxp = reinterpret_cast<Pack<T, K> *>(grad_x);
    if (relu)
        qp_scale_backward_kernel<T, K, true>
            <<<grid, kThreads, 0, s>>>(gp, xp, scale, gxp, workspace, rows, packs, chunk);
    else
        qp_scale_backward_kernel<T, K, false>
            <<<grid, kThreads, 0, s>>>(gp, xp, scale, gxp, workspace, rows, packs, chunk);
}

template <typename T>
Status forward(const T *x, const T *scale, T *y, int64_t rows, int64_t hw, bool relu, int device,
               uintptr_t stream)
{
    if (Status st = qp_scale_check(rows, hw, {x, scale, y}))
        return st;
    if (rows == 0 || hw == 0)
        return kOk;
    cuda::DeviceGuard guard(device);
    NPP_CUDA_TRY(guard.error());
    const cudaStream_t s = cuda::as_stream(stream);
    if (cuda::packable(hw, cuda::kWide<T>, {x, y}))
        launch_forward<T, cuda::kWide<T>>(x, scale, y, rows, hw, relu, s);
    else
        launch_forward<T, 1>(x, scale, y, rows, hw, relu, s);
    return cuda::launch_status();
}

template <typename T>
Status backward(const T *grad, const T *x, const T *scale, T *grad_x, T *grad_scale, T *workspace,
                int64_t rows, int64_t hw, bool relu, int device, uintptr_t stream)
{
    if (Status st = qp_scale_check(rows, hw, {grad, x, scale, grad_x}, {grad_scale, workspace}))
        return st;
    if (rows == 0)
        return kOk;
    cuda::DeviceGuard guard(device);
    NPP_CUDA_TRY(guard.error());
    const int parts = qp_scale_backward_parts(hw);
    const cudaStream_t s = cuda::as_stream(stream);
    if (cuda::packable(hw, cuda::kWide<T>, {grad, x, grad_x}))
        launch_backward<T, cuda::kWide<T>>(grad, x, scale, grad_x, workspace, rows, hw, relu, parts,
                                           s);
    else
        launch_backward<T, 1>(grad, x, scale, grad_x, workspace, rows, hw, relu, parts, s);
    if (Status st = cuda::launch_status())
        return st;
    NPP_CUDA_TRY(cuda::launch_dependent(qp_scale_finish_kernel<T>, cuda::grid_for(rows, 256), 256,
                                        s, workspace, grad_scale, rows, parts));
    return kOk;
}

} // namespace

int qp_scale_backward_parts(int64_t hw) { return reduction_parts(hw, 4096, 256); }

Status qp_scale_forward_cuda(const float *x, const float *scale, float *y, int64_t rows, int64_t hw,
                             bool relu, int device, uintptr_t stream)
{
    return forward(x, scale, y, rows, hw, relu, device, stream);
}

Status qp_scale_forward_cuda(const double *x, const double *scale, double *y, int64_t rows,
                             int64_t hw, bool relu, int device, uintptr_t stream)
{
    return forward(x, scale, y, rows, hw, relu, device, stream);
}

Status qp_scale_backward_cuda(const float *grad, const float *x, const float *scale, float *grad_x,
                              float *grad_scale, float *workspace, int64_t rows, int64_t hw,
                              bool relu, int device, uintptr_t stream)
{
    return backward(grad, x, scale, grad_x, grad_scale, workspace, rows, hw, relu, device, stream);
}

Status qp_scale_backward_cuda(const double *grad, const double *x, const double *scale,
                              double *grad_x, double *grad_scale, double *workspace, int64_t rows,
                              int64_t hw, bool relu, int device, uintptr_t stream)
{
    return backward(grad, x, scale, grad_x, grad_scale, workspace, rows, hw, relu, device, stream);
}

} // namespace npp_ext
