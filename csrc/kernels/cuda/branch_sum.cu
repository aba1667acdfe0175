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

template <typename T>
__global__ void __launch_bounds__(kThreads)
    branch_sum_clamp_kernel(const T *__restrict__ a, const T *__restrict__ b, T *__restrict__ y,
                            int64_t numel)
{
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < numel;
         i += stride)
        y[i] = sum_clamp(a[i], b[i]);
}

// The same over 16-byte packs.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    branch_sum_clamp_packed_kernel(const cuda::Pack<T> *__restrict__ a,
                                   const cuda::Pack<T> *__restrict__ b,
                                   cuda::Pack<T> *__restrict__ y, int64_t packs)
{
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < packs;
         i += stride) {
        const cuda::Pack<T> pa = a[i], pb = b[i];
        cuda::Pack<T> out;
#pragma unroll
        for (int k = 0; k < cuda::Pack<T>::kSize; ++k)
            out.v[k] = sum_clamp(pa.v[k], pb.v[k]);
        y[i] = out;
    }
}

template <typename T>
Status run(const T *a, const T *b, T *y, int64_t numel, int device, uintptr_t stream)
{
    if (numel < 0)
        return "branch_sum_clamp: bad size";
    if (numel == 0)
        return kOk;
    cuda::DeviceGuard guard(device);
    NPP_CUDA_TRY(guard.error());
    constexpr int kPack = cuda::Pack<T>::kSize;
    if (cuda::packable(numel, kPack, {a, b, y})) {
        const int64_t packs = numel / kPack;
        branch_sum_clamp_packed_kernel<T>
            <<<cuda::grid_for(packs, kThreads), kThreads, 0, cuda::as_stream(stream)>>>(
                reinterpret_cast<const cuda::Pack<T> *>(a),
                reinterpret_cast<const cuda::Pack<T> *>(b), reinterpret_cast<cuda::Pack<T> *>(y),
                packs);
        return cuda::launch_status();
    }
    branch_sum_clamp_kernel<T>
        <<<cuda::grid_for(numel, kThreads * 4), kThreads, 0, cuda::as_stream(stream)>>>(a, b, y,
                                                                                        numel);
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
