// A host stand-in for the part of CUDA that csrc/kernels/cuda uses, so that the kernels'
// own source runs on a machine without a GPU (tests/test_cuda_emulation.py).
//
// Model: blocks run one after another; the threads of a block are real threads that meet
// at __syncthreads() on a barrier, so shared memory (a function-local static here) is
// shared by exactly one block at a time. Launches are rewritten by the test from
// `k<<<grid, block, smem, stream>>>(args)` to `::emu::launch([&] { k(args); }, grid, ...)`.
// Device pointers are host pointers. Not emulated: warps, the memory model, atomics.
#pragma once

#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
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
#define blockDim (::emu::block_dim)
#define gridDim (::emu::grid_dim)
#define __syncthreads() (::emu::block_barrier->arrive_and_wait())

inline int __float2int_rn(float v) { return static_cast<int>(std::nearbyint(v)); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

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
