// NPP output on CUDA: y = clamp(a + b, 0, 1) (straight-through gradient, in Python).
#include "cuda_check.h"

namespace npp_ext
{
namespace
{

constexpr int kThreads = 256;

// Comparisons written so that NaN passes through, as torch.clamp.
template <typename T> __device__ __forceinline__ T sum_clamp(T a, T b)
{
    const T v = a + b;
    return v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
}

// Over packs of K values (K = 1: scalar).
template <typename T, int K>
__global__ void __launch_bounds__(kThreads)
    branch_sum_clamp_kernel(const cuda::Pack<T, K> *__restrict__ a,
                            const cuda::Pack<T, K> *__restrict__ b,
                            cuda::Pack<T, K> *__restrict__ y, int64_t packs)
{
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < packs;
         i += stride) {
        const cuda::Pack<T, K> pa = a[i], pb = b[i];
        cuda::Pack<T, K> out;
#pragma unroll
        for (int k = 0; k < K; ++k)
            out.v[k] = sum_clamp(pa.v[k], pb.v[k]);
        y[i] = out;
    }
}

template <typename T, int K>
void launch(const T *a, const T *b, T *y, int64_t numel, cudaStream_t s)
{
    const int64_t packs = numel / K;
    branch_sum_clamp_kernel<T, K>
        <<<cuda::grid_for(packs, K == 1 ? kThreads * 4 : kThreads), kThreads, 0, s>>>(
            reinterpret_cast<const cuda::Pack<T, K> *>(a),
            reinterpret_cast<const cuda::Pack<T, K> *>(b), reinterpret_cast<cuda::Pack<T, K> *>(y),
            packs);
}

template <typename T>
Status run(const T *a, const T *b, T *y, int64_t numel, int device, uintptr_t stream)
{
    if (Status st = branch_sum_check(numel, a, b, y))
        return st;
    if (numel == 0)
        return kOk;
    cuda::DeviceGuard guard(device);
    NPP_CUDA_TRY(guard.error());
    const cudaStream_t s = cuda::as_stream(stream);
    if (cuda::packable(numel, cuda::kWide<T>, {a, b, y}))
        launch<T, cuda::kWide<T>>(a, b, y, numel, s);
    else
        launch<T, 1>(a, b, y, numel, s);
    return cuda::launch_status();
}

} // namespace

Status branch_sum_clamp_cuda(const float *a, const float *b, float *y, int64_t numel, int device,
                             uintptr_t stream)
{
    return run(a, b, y, numel, device, stream);
}

Status branch_sum_clamp_cuda(const double *a, const double *b, double *y, int64_t numel, int device,
                             uintptr_t stream)
{
    return run(a, b, y, numel, device, stream);
}

} // namespace npp_ext
