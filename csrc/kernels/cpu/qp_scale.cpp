// QA scale: y = act(x * scale[n, c]), act in {relu, identity}.
#include "kernels.h"

#include <cstring>
#include <type_traits>

namespace npp_ext
{
namespace
{

// Rows are cut into fixed chunks so that the partial sums, and so grad_scale,
// do not depend on the number of threads.
constexpr int64_t kChunk = 16384;
constexpr int64_t kMinWorkPerThread = 32768;

template <typename T>
void forward(const T *x, const T *scale, T *y, int64_t rows, int64_t hw, bool relu, int num_threads)
{
    const int64_t parts = std::max<int64_t>(1, ceil_div(hw, kChunk));
    const int64_t grain = std::max<int64_t>(1, kMinWorkPerThread / std::min(hw, kChunk));
    detail::parallel_for(rows * parts, grain, num_threads, [&](int64_t tb, int64_t te) {
        for (int64_t task = tb; task < te; ++task) {
            const int64_t r = task / parts;
            const int64_t begin = task % parts * kChunk;
            const int64_t end = std::min(hw, begin + kChunk);
            const T s = scale[r];
            const T *xr = x + r * hw;
            T *yr = y + r * hw;
            if (relu) {
                // `v < 0 ? 0 : v` lets NaN through, as torch.relu does.
                for (int64_t i = begin; i < end; ++i) {
                    const T v = xr[i] * s;
                    yr[i] = v < T(0) ? T(0) : v;
                }
            } else {
                for (int64_t i = begin; i < end; ++i)
                    yr[i] = xr[i] * s;
            }
        }
    });
}

// keep ? v : 0 as a bit mask, so the relu mask compiles to an AND instead of
// an unpredictable branch (and masked NaN gradients still become 0, as torch's).
template <typename T> inline T keep_or_zero(bool keep, T v)
{
    using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    Bits bits;
    std::memcpy(&bits, &v, sizeof v);
    bits &= Bits(0) - static_cast<Bits>(keep);
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

// One chunk of one row: writes grad_x, returns sum(grad_y * mask * x). Eight
// independent double lanes let the compiler vectorize without reassociating
// (the lane order is fixed, so the result stays deterministic).
template <bool kRelu, typename T>
double backward_chunk(const T *gr, const T *xr, T s, T *gxr, int64_t begin, int64_t end)
{
    constexpr int kLanes = 8;
    double lanes[kLanes] = {};
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes) {
        for (int j = 0; j < kLanes; ++j) {
            const T xv = xr[i + j];
            // relu's gradient passes unless the output is <= 0 (torch's rule: NaN passes).
            const T gm = kRelu ? keep_or_zero(!(xv * s <= T(0)), gr[i + j]) : gr[i + j];
            gxr[i + j] = gm * s;
            lanes[j] += static_cast<double>(gm) * static_cast<double>(xv);
        }
    }
    for (int j = 0; i < end; ++i, ++j) {
        const T xv = xr[i];
        const T gm = kRelu ? keep_or_zero(!(xv * s <= T(0)), gr[i]) : gr[i];
        gxr[i] = gm * s;
        lanes[j] += static_cast<double>(gm) * static_cast<double>(xv);
    }
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
           ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

template <typename T>
void backward(const T *grad, const T *x, const T *scale, T *grad_x, T *grad_scale, int64_t rows,
              int64_t hw, bool relu, int num_threads)
{
    const int64_t parts = std::max<int64_t>(1, ceil_div(hw, kChunk));
    const int64_t grain =
        std::max<int64_t>(1, kMinWorkPerThread / std::max<int64_t>(1, std::min(hw, kChunk)));
    // Double accumulators: cheap on the CPU and far more accurate for float.
    std::vector<double> partial(static_cast<size_t>(rows * parts));
    detail::parallel_for(rows * parts, grain, num_threads, [&](int64_t tb, int64_t te) {
        for (int64_t task = tb; task < te; ++task) {
            const int64_t r = task / parts;
            const int64_t begin = task % parts * kChunk;
            const int64_t end = std::min(hw, begin + kChunk);
            const int64_t off = r * hw;
            partial[static_cast<size_t>(task)] =
                relu ? backward_chunk<true>(grad + off, x + off, scale[r], grad_x + off, begin, end)
                     : backward_chunk<false>(grad + off, x + off, scale[r], grad_x + off, begin,
                                             end);
        }
    });
    for (int64_t r = 0; r < rows; ++r) {
        double acc = 0.0;
        for (int64_t c = 0; c < parts; ++c)
            acc += partial[static_cast<size_t>(r * parts + c)];
        grad_scale[r] = static_cast<T>(acc);
    }
}

} // namespace

Status qp_scale_forward_cpu(const float *x, const float *scale, float *y, int64_t rows, int64_t hw,
                            bool relu, int num_threads)
{
    if (Status s = qp_scale_check(rows, hw, {x, scale, y}))
        return s;
    if (rows > 0 && hw > 0)
        forward(x, scale, y, rows, hw, relu, num_threads);
    return kOk;
}

Status qp_scale_forward_cpu(const double *x, const double *scale, double *y, int64_t rows,
                            int64_t hw, bool relu, int num_threads)
{
    if (Status s = qp_scale_check(rows, hw, {x, scale, y}))
        return s;
    if (rows > 0 && hw > 0)
        forward(x, scale, y, rows, hw, relu, num_threads);
    return kOk;
}

Status qp_scale_backward_cpu(const float *grad, const float *x, const float *scale, float *grad_x,
                             float *grad_scale, int64_t rows, int64_t hw, bool relu,
                             int num_threads)
{
    if (Status s = qp_scale_check(rows, hw, {grad, x, scale, grad_x}, {grad_scale}))
        return s;
    if (rows > 0)
        backward(grad, x, scale, grad_x, grad_scale, rows, hw, relu, num_threads);
    return kOk;
}

Status qp_scale_backward_cpu(const double *grad, const double *x, const double *scale,
                             double *grad_x, double *grad_scale, int64_t rows, int64_t hw,
                             bool relu, int num_threads)
{
    if (Status s = qp_scale_check(rows, hw, {grad, x, scale, grad_x}, {grad_scale}))
        return s;
    if (rows > 0)
        backward(grad, x, scale, grad_x, grad_scale, rows, hw, relu, num_threads);
    return kOk;
}

} // namespace npp_ext
