// Entry points of the npp_ext kernels, shared by the CPU and CUDA bindings.
//
// The kernels know nothing of torch: they take raw pointers to contiguous
// buffers that the caller (npp_ext/ops.py) allocated and validated, plain
// sizes, and for CUDA a device index and a stream. Every entry point returns a
// Status: nullptr on success, else a static message. They never abort; the
// CPU ones may throw std::bad_alloc for their scratch buffers, which the
// bindings turn into MemoryError.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <mutex>
#include <thread>
#include <vector>

namespace npp_ext
{

using Status = const char *;
constexpr Status kOk = nullptr;

// Chroma codes as in color_math.h (BPG pixel_format): 1 = 4:2:0, 3 = 4:4:4.
constexpr int kChroma420 = 1;
constexpr int kChroma444 = 3;

// Largest side accepted by the YUV kernels: keeps every per-row index in int.
constexpr int kMaxSide = 1 << 16;

// Whether no buffer is null. A tensor whose storage was freed (or a fake one)
// hands over address 0: refused with a Status, never dereferenced.
inline bool all_set(std::initializer_list<const void *> ptrs)
{
    return std::none_of(ptrs.begin(), ptrs.end(), [](const void *p) { return p == nullptr; });
}

// The argument check of the CPU and CUDA YUV entry points, in the messages of
// one of them (Status strings are static).
struct YuvOp {
    Status bad_sizes, bad_chroma, null_pointer;
};
constexpr YuvOp kRgbToYuv{"rgb_to_yuv: bad sizes",
                          "rgb_to_yuv: chroma must be 1 (4:2:0) or 3 (4:4:4)",
                          "rgb_to_yuv: null pointer"};
constexpr YuvOp kYuvToRgb{"yuv_to_rgb: bad sizes",
                          "yuv_to_rgb: chroma must be 1 (4:2:0) or 3 (4:4:4)",
                          "yuv_to_rgb: null pointer"};
inline Status yuv_check(const YuvOp &op, int64_t n, int height, int width, int chroma,
                        const void *in, const void *out)
{
    if (n < 0 || height < 1 || width < 1 || height > kMaxSide || width > kMaxSide)
        return op.bad_sizes;
    if (chroma != kChroma420 && chroma != kChroma444)
        return op.bad_chroma;
    if (n > 0 && !all_set({in, out}))
        return op.null_pointer;
    return kOk;
}

// The argument check of the CPU and CUDA branch_sum_clamp entry points.
inline Status branch_sum_check(int64_t numel, const void *a, const void *b, const void *y)
{
    if (numel < 0)
        return "branch_sum_clamp: bad size";
    if (numel > 0 && !all_set({a, b, y}))
        return "branch_sum_clamp: null pointer";
    return kOk;
}

template <typename T> struct PixelBranchParams {
    const T *w1; // (3, 3) row-major, (out, in)
    const T *b1; // (3,)
    const T *s1; // (n, 3)
    const T *w2;
    const T *b2;
    const T *s2;
};

template <typename T> struct PixelBranchGrads {
    T *w1;
    T *b1;
    T *s1;
    T *w2;
    T *b2;
    T *s2;
};

template <typename T> bool all_set(const PixelBranchParams<T> &p)
{
    return all_set({p.w1, p.b1, p.s1, p.w2, p.b2, p.s2});
}

// Argument checks shared by the CPU and CUDA entry points of qp_scale and
// npp_pixel_branch. Pixel buffers are touched only when there are pixels; the
// per-row (per-image) ones whenever there are rows; the W/b gradients always
// (an empty batch gets zeros).
inline Status qp_scale_check(int64_t rows, int64_t hw, std::initializer_list<const void *> pixels,
                             std::initializer_list<const void *> per_row = {})
{
    if (rows < 0 || hw < 0)
        return "qp_scale: bad sizes";
    if ((rows > 0 && hw > 0 && !all_set(pixels)) || (rows > 0 && !all_set(per_row)))
        return "qp_scale: null pointer";
    return kOk;
}

template <typename T>
Status pixel_branch_forward_check(int64_t n, int64_t hw, const T *x, const PixelBranchParams<T> &p,
                                  const T *y)
{
    if (n < 0 || hw < 0)
        return "npp_pixel_branch: bad sizes";
    if (n > 0 && hw > 0 && !(all_set({x, y}) && all_set(p)))
        return "npp_pixel_branch: null pointer";
    return kOk;
}

template <typename T>
Status pixel_branch_backward_check(int64_t n, int64_t hw, const T *grad, const T *x,
                                   const PixelBranchParams<T> &p, const T *grad_x,
                                   const PixelBranchGrads<T> &g)
{
    if (n < 0 || hw < 0)
        return "npp_pixel_branch: bad sizes";
    const bool pixels_ok = n == 0 || hw == 0 || (all_set({grad, x, grad_x}) && all_set(p));
    const bool grads_ok = all_set({g.w1, g.b1, g.w2, g.b2}) && (n == 0 || all_set({g.s1, g.s2}));
    return pixels_ok && grads_ok ? kOk : "npp_pixel_branch: null pointer";
}

// Order of the 30 per-block partial sums of the pixel-branch backward.
namespace pb
{
constexpr int kW1 = 0, kB1 = 9, kS1 = 12, kW2 = 15, kB2 = 24, kS2 = 27, kCount = 30;
} // namespace pb

// Work split of the deterministic reductions. It depends only on the sizes
// (never on the thread or SM count), so results are reproducible bit for bit.
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int reduction_parts(int64_t len, int64_t min_chunk, int max_parts)
{
    return static_cast<int>(std::clamp<int64_t>(ceil_div(len, min_chunk), 1, max_parts));
}

// ---------------------------------------------------------------- CPU ------
// rgb: (n, 3, height, width) float32; yuv: (n, layout.total) uint8.
Status rgb_to_yuv_cpu(const float *rgb, uint8_t *yuv, int64_t n, int height, int width, int chroma,
                      int num_threads);
// yuv: (n, layout.total) uint8; rgb: (n, 3, height, width) float32.
Status yuv_to_rgb_cpu(const uint8_t *yuv, float *rgb, int64_t n, int height, int width, int chroma,
                      int num_threads);

// y = act(x * scale[r]) for rows r of hw elements; act is relu when relu.
Status qp_scale_forward_cpu(const float *x, const float *scale, float *y, int64_t rows, int64_t hw,
                            bool relu, int num_threads);
Status qp_scale_forward_cpu(const double *x, const double *scale, double *y, int64_t rows,
                            int64_t hw, bool relu, int num_threads);
Status qp_scale_backward_cpu(const float *grad, const float *x, const float *scale, float *grad_x,
                             float *grad_scale, int64_t rows, int64_t hw, bool relu,
                             int num_threads);
Status qp_scale_backward_cpu(const double *grad, const double *x, const double *scale,
                             double *grad_x, double *grad_scale, int64_t rows, int64_t hw,
                             bool relu, int num_threads);

// x, y: (n, 3, hw).
Status npp_pixel_branch_forward_cpu(const float *x, PixelBranchParams<float> p, float *y, int64_t n,
                                    int64_t hw, int num_threads);
Status npp_pixel_branch_forward_cpu(const double *x, PixelBranchParams<double> p, double *y,
                                    int64_t n, int64_t hw, int num_threads);
Status npp_pixel_branch_backward_cpu(const float *grad, const float *x, PixelBranchParams<float> p,
                                     float *grad_x, PixelBranchGrads<float> g, int64_t n,
                                     int64_t hw, int num_threads);
Status npp_pixel_branch_backward_cpu(const double *grad, const double *x,
                                     PixelBranchParams<double> p, double *grad_x,
                                     PixelBranchGrads<double> g, int64_t n, int64_t hw,
                                     int num_threads);

// y = clamp(a + b, 0, 1) over numel elements.
Status branch_sum_clamp_cpu(const float *a, const float *b, float *y, int64_t numel,
                            int num_threads);
Status branch_sum_clamp_cpu(const double *a, const double *b, double *y, int64_t numel,
                            int num_threads);

// --------------------------------------------------------------- CUDA ------
// Pointers are device pointers on `device`; work is queued on `stream` (a
// cudaStream_t passed as an integer) and the calls return without waiting.
Status rgb_to_yuv_cuda(const float *rgb, uint8_t *yuv, int64_t n, int height, int width, int chroma,
                       int device, uintptr_t stream);
Status yuv_to_rgb_cuda(const uint8_t *yuv, float *rgb, int64_t n, int height, int width, int chroma,
                       int device, uintptr_t stream);

Status qp_scale_forward_cuda(const float *x, const float *scale, float *y, int64_t rows, int64_t hw,
                             bool relu, int device, uintptr_t stream);
Status qp_scale_forward_cuda(const double *x, const double *scale, double *y, int64_t rows,
                             int64_t hw, bool relu, int device, uintptr_t stream);
// Number of partial sums per row that the backward writes to its workspace
// (the caller allocates rows * parts elements of float32, or float64 for float64).
int qp_scale_backward_parts(int64_t hw);
Status qp_scale_backward_cuda(const float *grad, const float *x, const float *scale, float *grad_x,
                              float *grad_scale, float *workspace, int64_t rows, int64_t hw,
                              bool relu, int device, uintptr_t stream);
Status qp_scale_backward_cuda(const double *grad, const double *x, const double *scale,
                              double *grad_x, double *grad_scale, double *workspace, int64_t rows,
                              int64_t hw, bool relu, int device, uintptr_t stream);

Status npp_pixel_branch_forward_cuda(const float *x, PixelBranchParams<float> p, float *y,
                                     int64_t n, int64_t hw, int device, uintptr_t stream);
Status npp_pixel_branch_forward_cuda(const double *x, PixelBranchParams<double> p, double *y,
                                     int64_t n, int64_t hw, int device, uintptr_t stream);
// Workspace: n * parts * pb::kCount elements of the input's dtype.
int npp_pixel_branch_backward_parts(int64_t hw);
Status npp_pixel_branch_backward_cuda(const float *grad, const float *x, PixelBranchParams<float> p,
                                      float *grad_x, PixelBranchGrads<float> g, float *workspace,
                                      int64_t n, int64_t hw, int device, uintptr_t stream);
Status npp_pixel_branch_backward_cuda(const double *grad, const double *x,
                                      PixelBranchParams<double> p, double *grad_x,
                                      PixelBranchGrads<double> g, double *workspace, int64_t n,
                                      int64_t hw, int device, uintptr_t stream);

Status branch_sum_clamp_cuda(const float *a, const float *b, float *y, int64_t numel, int device,
                             uintptr_t stream);
Status branch_sum_clamp_cuda(const double *a, const double *b, double *y, int64_t numel, int device,
                             uintptr_t stream);

// ------------------------------------------------------------ helpers ------
namespace detail
{

// Runs f(begin, end) over [0, n) in contiguous ranges of at least `grain`
// items on up to num_threads threads (the calling one included). A plain
// std::thread split: no OpenMP, nothing shared with torch's pool. An
// exception thrown by a range is rethrown here after every thread joined.
template <typename F> void parallel_for(int64_t n, int64_t grain, int num_threads, const F &f)
{
    if (n <= 0)
        return;
    const int64_t by_grain = std::max<int64_t>(1, n / std::max<int64_t>(1, grain));
    const int64_t workers = std::clamp<int64_t>(by_grain, 1, std::max(1, num_threads));
    if (workers == 1) {
        f(int64_t{0}, n);
        return;
    }
    const int64_t chunk = ceil_div(n, workers);
    std::exception_ptr error;
    std::mutex error_mutex;
    auto run = [&](int64_t begin, int64_t end) {
        try {
            f(begin, end);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error)
                error = std::current_exception();
        }
    };
    std::vector<std::thread> threads;
    threads.reserve(static_cast<size_t>(workers - 1));
    for (int64_t begin = chunk; begin < n; begin += chunk) {
        const int64_t end = std::min(n, begin + chunk);
        try {
            threads.emplace_back(run, begin, end);
        } catch (...) {
            run(begin, end); // no thread to be had: do the range here
        }
    }
    run(0, std::min(n, chunk));
    for (auto &t : threads)
        t.join();
    if (error)
        std::rethrow_exception(error);
}

} // namespace detail
} // namespace npp_ext
