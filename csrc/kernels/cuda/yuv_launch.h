// The host side shared by the CUDA YUV ops (rgb_to_yuv.cu, yuv_to_rgb.cu): argument
// check, device, layout, and the launch plan of their 4:2:0 tile kernels.
#pragma once

#include "cuda_check.h"

#include <bpg/color_math.h>

namespace npp_ext
{
namespace cuda
{

// Tiles of a 4:2:0 kernel over n images of cols x rows tile units, one block per tile up
// to max_blocks (then each block loops), and whether the 4-pixel vector path may run:
// width % 4 == 0, the float buffer on the 16-byte grid and the byte buffer on the 4-byte
// grid (torch allocations are; a view's offset may not be).
struct TilePlan {
    int tiles_x, tiles_y;
    int64_t tasks;
    unsigned blocks;
    bool vec;

    struct Tile {
        int x, y;
        int64_t image;
    };
    // Task t is tile (x, y) of image `image`, x fastest (neighbours share halo rows in L2).
    __host__ __device__ Tile at(int64_t t) const
    {
        return {static_cast<int>(t % tiles_x), static_cast<int>(t / tiles_x % tiles_y),
                t / tiles_x / tiles_y};
    }
};

inline TilePlan tile_plan(int64_t n, int cols, int rows, int tile_w, int tile_h, int width,
                          const float *floats, const uint8_t *bytes, int64_t max_blocks)
{
    TilePlan t;
    t.tiles_x = static_cast<int>(ceil_div(cols, tile_w));
    t.tiles_y = static_cast<int>(ceil_div(rows, tile_h));
    t.tasks = n * t.tiles_x * t.tiles_y;
    t.blocks = static_cast<unsigned>(std::min(t.tasks, max_blocks));
    t.vec = width % 4 == 0 && aligned(floats, 16) && aligned(bytes, 4);
    return t;
}

// Checks the arguments, makes `device` current and calls launch(layout, stream), which
// queues the kernels; returns the launch status.
template <typename Launch>
Status run_yuv_op(const YuvOp &op, int64_t n, int height, int width, int chroma, const void *in,
                  const void *out, int device, uintptr_t stream, const Launch &launch)
{
    if (Status st = yuv_check(op, n, height, width, chroma, in, out))
        return st;
    if (n == 0)
        return kOk;
    DeviceGuard guard(device);
    NPP_CUDA_TRY(guard.error());
    launch(bpg_cm_make_layout(width, height, chroma), as_stream(stream));
    return launch_status();
}

} // namespace cuda
} // namespace npp_ext
