// Small helpers shared by the CUDA kernels: error plumbing, device selection,
// launch sizes and a deterministic block reduction.
#pragma once

#include "kernels.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

namespace npp_ext
{
namespace cuda
{

// Returns the CUDA error's message from the enclosing Status function.
#define NPP_CUDA_TRY(expr)                                                                         \
    do {                                                                                           \
        const cudaError_t npp_err_ = (expr);                                                       \
        if (npp_err_ != cudaSuccess) {                                                             \
            (void)cudaGetLastError(); /* reported here: the next launch must not see it again */   \
            return cudaGetErrorString(npp_err_);                                                   \
        }                                                                                          \
    } while (0)

// Returns a failed call's cudaError_t from the enclosing function.
#define NPP_CUDA_TRY_ERROR(expr)                                                                   \
    do {                                                                                           \
        const cudaError_t npp_err_ = (expr);                                                       \
        if (npp_err_ != cudaSuccess)                                                               \
            return npp_err_;                                                                       \
    } while (0)

// Status of the launches just queued (configuration errors, not async faults).
inline Status launch_status()
{
    const cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? kOk : cudaGetErrorString(err);
}

// Makes `device` current for the scope: torch may have another device current
// on this thread, and a launch goes to the current device's context.
class DeviceGuard
{
  public:
    explicit DeviceGuard(int device)
    {
        if (cudaGetDevice(&previous_) != cudaSuccess) {
            previous_ = -1;
            (void)cudaGetLastError(); // not this call's error to report
        }
        if (previous_ != device)
            error_ = cudaSetDevice(device);
        changed_ = previous_ != device && error_ == cudaSuccess;
    }
    ~DeviceGuard()
    {
        if (changed_ && previous_ >= 0)
            cudaSetDevice(previous_);
    }
    DeviceGuard(const DeviceGuard &) = delete;
    DeviceGuard &operator=(const DeviceGuard &) = delete;
    cudaError_t error() const { return error_; }

  private:
    int previous_ = -1;
    bool changed_ = false;
    cudaError_t error_ = cudaSuccess;
};

inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// Grid size for grid-stride loops: enough blocks to fill any current GPU,
// never more than the work needs.
inline unsigned grid_for(int64_t work, int threads, int64_t cap = int64_t{1} << 16)
{
    const int64_t blocks = (work + threads - 1) / threads;
    return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// K consecutive values of T, loaded and stored as one access. With K = kWide<T> that is 16
// bytes (4 floats or 2 doubles) in one 128-bit access: a thread keeps 4x the bytes in
// flight, which memory-bound kernels need to reach the bandwidth of an H100. K = 1 is the
// plain scalar access, for data off the 16-byte grid.
template <typename T, int K> struct alignas(sizeof(T) * K) Pack {
    static constexpr int kSize = K;
    T v[K];
};
template <typename T> constexpr int kWide = static_cast<int>(16 / sizeof(T));

inline bool aligned(const void *p, uintptr_t bytes)
{
    return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// Whether `count` elements of T from each pointer can be read and written as Packs.
inline bool packable(int64_t count, int pack_size, std::initializer_list<const void *> ptrs)
{
    if (count % pack_size != 0)
        return false;
    for (const void *p : ptrs)
        if (!aligned(p, 16))
            return false;
    return true;
}

// Programmatic dependent launch (sm_90+): a kernel started with launch_dependent() may be
// scheduled while the kernel before it on the stream still runs, once that one's blocks
// have all called allow_dependent_launch(); it must call wait_for_prior_grid() before
// reading what the earlier kernel wrote. So a small follow-up kernel does not pay a
// launch after a big one. Elsewhere these are no-ops and the launch is a plain one.
__device__ __forceinline__ void allow_dependent_launch()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_for_prior_grid()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

template <typename... Params, typename... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t s,
                             Args... args)
{
    int device = 0, major = 0;
    NPP_CUDA_TRY_ERROR(cudaGetDevice(&device));
    NPP_CUDA_TRY_ERROR(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = 0;
    config.stream = s;
    config.attrs = attr;
    config.numAttrs = major >= 9 ? 1 : 0;
    return cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
}

// Sums K values per thread over a block of kThreads (a power of two) threads
// with a fixed tree, so the result is the same on every run. `red` is shared
// memory of K * kThreads elements; the sums end up in red[k * kThreads].
// Every thread of the block must call it; the caller syncs before reusing red.
template <int kThreads, int K, typename Acc>
__device__ __forceinline__ void block_sum(const Acc (&v)[K], Acc *red)
{
    const int t = threadIdx.x;
#pragma unroll
    for (int k = 0; k < K; ++k)
        red[k * kThreads + t] = v[k];
    __syncthreads();
#pragma unroll
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (t < s) {
#pragma unroll
            for (int k = 0; k < K; ++k)
                red[k * kThreads + t] += red[k * kThreads + t + s];
        }
        __syncthreads();
    }
}

} // namespace cuda
} // namespace npp_ext
