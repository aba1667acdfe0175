// A host stand-in for the part of CUDA that csrc/kernels/cuda uses, so that the kernels'
// own source runs on a machine without a GPU (tests/test_cuda_emulation.py).
//
// Model: blocks run one after another; the threads of a block are real threads that meet
// at __syncthreads() on a barrier, so shared memory (a function-local static here) is
// shared by exactly one block at a time. Launches are rewritten by the test from
// `k<<<grid, block, smem, stream>>>(args)` to `::emu::launch([&] { k(args); }, grid, ...)`;
// cudaLaunchKernelEx runs the same way (a programmatic dependent launch is then trivially
// ordered: kernels run one after another). The emulated device has compute capability 9.0.
// Device pointers are host pointers. Not emulated: warps, the memory model, atomics.
#pragma once

#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9 };
using cudaStream_t = struct CUstream_st *;

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu
{

inline thread_local dim3 thread_index{0, 0, 0};
inline thread_local dim3 block_index{0, 0, 0};
inline dim3 block_dim;
inline dim3 grid_dim;
inline std::barrier<> *block_barrier = nullptr;
inline cudaError_t last_error = cudaSuccess;
// Launches made through cudaLaunchKernelEx with programmatic stream serialization allowed.
inline int dependent_launches = 0;

// Runs body once per thread of every block of the grid.
template <typename F>
void launch(const F &body, dim3 grid, dim3 block, size_t = 0, cudaStream_t = nullptr)
{
    const size_t threads = size_t{block.x} * block.y * block.z;
    if (threads == 0 || threads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.y > 65535 || grid.z > 65535) {
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    grid_dim = grid;
    block_dim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::barrier<> barrier(static_cast<std::ptrdiff_t>(threads));
                block_barrier = &barrier;
                std::vector<std::thread> team;
                team.reserve(threads);
                for (size_t t = 0; t < threads; ++t)
                    team.emplace_back([&, t] {
                        thread_index = dim3(static_cast<unsigned>(t % block.x),
                                            static_cast<unsigned>(t / block.x % block.y),
                                            static_cast<unsigned>(t / block.x / block.y));
                        block_index = dim3(bx, by, bz);
                        body();
                        barrier.arrive_and_drop(); // later syncs no longer wait for it
                    });
                for (auto &th : team)
                    th.join();
            }
}

} // namespace emu

#define threadIdx (::emu::thread_index)
#define blockIdx (::emu::block_index)
// Not macros: cudaLaunchConfig_t has members of these names. The same for every thread.
inline const dim3 &blockDim = ::emu::block_dim;
inline const dim3 &gridDim = ::emu::grid_dim;
#define __syncthreads() (::emu::block_barrier->arrive_and_wait())

inline int __float2int_rn(float v) { return static_cast<int>(std::nearbyint(v)); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
// Clamp to [+0, 1]; NaN and -0 give +0 (CUDA's documented results).
inline float __saturatef(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; }
inline int __float_as_int(float v)
{
    int i;
    std::memcpy(&i, &v, sizeof i);
    return i;
}
inline float __int_as_float(int i)
{
    float v;
    std::memcpy(&v, &i, sizeof v);
    return v;
}

// Byte k of a (k = 0 the lowest) as a signed 8-bit value; half h as a signed 16-bit one.
inline int emu_s8(int a, int k) { return static_cast<int8_t>(static_cast<uint32_t>(a) >> (8 * k)); }
inline int emu_s16(int a, int h)
{
    return static_cast<int16_t>(static_cast<uint32_t>(a) >> (16 * h));
}
// c + the dot product of the four signed bytes of a and b.
inline int __dp4a(int a, int b, int c)
{
    for (int k = 0; k < 4; ++k)
        c += emu_s8(a, k) * emu_s8(b, k);
    return c;
}
// c + the two signed 16-bit halves of a times the two low signed bytes of b.
inline int __dp2a_lo(int a, int b, int c)
{
    return c + emu_s16(a, 0) * emu_s8(b, 0) + emu_s16(a, 1) * emu_s8(b, 1);
}

inline cudaError_t cudaGetDevice(int *device)
{
    *device = 0;
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetLastError()
{
    const cudaError_t e = ::emu::last_error;
    ::emu::last_error = cudaSuccess;
    return e;
}
inline const char *cudaGetErrorString(cudaError_t e)
{
    return e == cudaSuccess ? "no error" : "invalid configuration (emulated)";
}

enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor = 75 };
inline cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int)
{
    *value = attr == cudaDevAttrComputeCapabilityMajor ? 9 : 0;
    return cudaSuccess;
}

enum cudaLaunchAttributeID { cudaLaunchAttributeProgrammaticStreamSerialization = 5 };
struct cudaLaunchAttribute {
    cudaLaunchAttributeID id;
    union {
        int programmaticStreamSerializationAllowed;
    } val;
};
struct cudaLaunchConfig_t {
    dim3 gridDim, blockDim;
    size_t dynamicSmemBytes;
    cudaStream_t stream;
    cudaLaunchAttribute *attrs;
    unsigned numAttrs;
};

template <typename... Params, typename... Args>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t *config, void (*kernel)(Params...),
                               Args &&...args)
{
    for (unsigned i = 0; i < config->numAttrs; ++i)
        if (config->attrs[i].id == cudaLaunchAttributeProgrammaticStreamSerialization &&
            config->attrs[i].val.programmaticStreamSerializationAllowed)
            ++::emu::dependent_launches;
    ::emu::launch([&] { kernel(args...); }, config->gridDim, config->blockDim);
    return cudaGetLastError();
}
