// Fused NPP pixel branch: y = relu(s2 * (W2 relu(s1 * (W1 x + b1)) + b2)).
#include "kernels.h"

#include <array>

namespace npp_ext
{
namespace
{

// Pixels per reduction chunk: fixed, so the parameter gradients do not depend
// on the number of threads.
constexpr int64_t kChunk = 4096;

template <typename T> struct Coeffs {
    T w1[9], b1[3], s1[3], w2[9], b2[3], s2[3];

    Coeffs(const PixelBranchParams<T> &p, int64_t img)
    {
        for (int i = 0; i < 9; ++i) {
            w1[i] = p.w1[i];
            w2[i] = p.w2[i];
        }
        for (int c = 0; c < 3; ++c) {
            b1[c] = p.b1[c];
            b2[c] = p.b2[c];
            s1[c] = p.s1[img * 3 + c];
            s2[c] = p.s2[img * 3 + c];
        }
    }
};

// relu that lets NaN through, as torch.relu does.
template <typename T> inline T relu(T v) { return v < T(0) ? T(0) : v; }

template <typename T>
void forward(const T *x, const PixelBranchParams<T> &p, T *y, int64_t n, int64_t hw,
             int num_threads)
{
    const int64_t parts = ceil_div(hw, kChunk);
    detail::parallel_for(n * parts, 4, num_threads, [&](int64_t tb, int64_t te) {
        for (int64_t task = tb; task < te; ++task) {
            const int64_t img = task / parts;
            const int64_t begin = task % parts * kChunk;
            const int64_t end = std::min(hw, begin + kChunk);
            const Coeffs<T> c(p, img);
            const T *xi = x + img * 3 * hw;
            T *yi = y + img * 3 * hw;
            for (int64_t i = begin; i < end; ++i) {
                const T x0 = xi[i], x1 = xi[hw + i], x2 = xi[2 * hw + i];
                T h[3];
                for (int o = 0; o < 3; ++o)
                    h[o] = relu(c.s1[o] * (c.w1[3 * o] * x0 + c.w1[3 * o + 1] * x1 +
                                           c.w1[3 * o + 2] * x2 + c.b1[o]));
                for (int o = 0; o < 3; ++o)
                    yi[o * hw + i] = relu(c.s2[o] * (c.w2[3 * o] * h[0] + c.w2[3 * o + 1] * h[1] +
                                                     c.w2[3 * o + 2] * h[2] + c.b2[o]));
            }
        }
    });
}

// Recomputes the intermediates, writes grad_x and the chunk's 30 partial
// parameter sums (in pb:: order).
template <typename T>
void backward_chunk(const T *grad, const T *x, const Coeffs<T> &c, T *grad_x, int64_t hw,
                    int64_t begin, int64_t end, double *acc)
{
    for (int64_t i = begin; i < end; ++i) {
        const T xin[3] = {x[i], x[hw + i], x[2 * hw + i]};
        T z1[3], a1[3], h1[3], z2[3], gz2[3], gz1[3];
        for (int o = 0; o < 3; ++o) {
            z1[o] = c.w1[3 * o] * xin[0] + c.w1[3 * o + 1] * xin[1] + c.w1[3 * o + 2] * xin[2] +
                    c.b1[o];
            a1[o] = c.s1[o] * z1[o];
            h1[o] = relu(a1[o]);
        }
        for (int o = 0; o < 3; ++o) {
            z2[o] =
                c.w2[3 * o] * h1[0] + c.w2[3 * o + 1] * h1[1] + c.w2[3 * o + 2] * h1[2] + c.b2[o];
            const T ga2 = !(c.s2[o] * z2[o] <= T(0)) ? grad[o * hw + i] : T(0);
            acc[pb::kS2 + o] += static_cast<double>(ga2) * z2[o];
            gz2[o] = ga2 * c.s2[o];
            acc[pb::kB2 + o] += gz2[o];
            for (int k = 0; k < 3; ++k)
                acc[pb::kW2 + 3 * o + k] += static_cast<double>(gz2[o]) * h1[k];
        }
        for (int k = 0; k < 3; ++k) {
            const T gh1 = c.w2[k] * gz2[0] + c.w2[3 + k] * gz2[1] + c.w2[6 + k] * gz2[2];
            const T ga1 = !(a1[k] <= T(0)) ? gh1 : T(0);
            acc[pb::kS1 + k] += static_cast<double>(ga1) * z1[k];
            gz1[k] = ga1 * c.s1[k];
            acc[pb::kB1 + k] += gz1[k];
        }
        for (int o = 0; o < 3; ++o)
            for (int k = 0; k < 3; ++k)
                acc[pb::kW1 + 3 * o + k] += static_cast<double>(gz1[o]) * xin[k];
        for (int k = 0; k < 3; ++k)
            grad_x[k * hw + i] = c.w1[k] * gz1[0] + c.w1[3 + k] * gz1[1] + c.w1[6 + k] * gz1[2];
    }
}

template <typename T>
void backward(const T *grad, const T *x, const PixelBranchParams<T> &p, T *grad_x,
              const PixelBranchGrads<T> &g, int64_t n, int64_t hw, int num_threads)
{
    const int64_t parts = std::max<int64_t>(1, ceil_div(hw, kChunk));
    std::vector<std::array<double, pb::kCount>> partial(static_cast<size_t>(n * parts));
    detail::parallel_for(n * parts, 2, num_threads, [&](int64_t tb, int64_t te) {
        for (int64_t task = tb; task < te; ++task) {
            const int64_t img = task / parts;
            const int64_t begin = task % parts * kChunk;
            const int64_t end = std::min(hw, begin + kChunk);
            auto &acc = partial[static_cast<size_t>(task)];
            acc.fill(0.0);
            backward_chunk(grad + img * 3 * hw, x + img * 3 * hw, Coeffs<T>(p, img),
                           grad_x + img * 3 * hw, hw, begin, end, acc.data());
        }
    });
    // Fixed-order combination: per image for s1/s2, then over images for W/b.
    std::array<double, pb::kCount> total{};
    for (int64_t img = 0; img < n; ++img) {
        std::array<double, pb::kCount> per{};
        for (int64_t c = 0; c < parts; ++c)
            for (int q = 0; q < pb::kCount; ++q)
                per[q] += partial[static_cast<size_t>(img * parts + c)][q];
        for (int k = 0; k < 3; ++k) {
            g.s1[img * 3 + k] = static_cast<T>(per[pb::kS1 + k]);
            g.s2[img * 3 + k] = static_cast<T>(per[pb::kS2 + k]);
        }
        for (int q = 0; q < pb::kCount; ++q)
            total[q] += per[q];
    }
    for (int i = 0; i < 9; ++i) {
        g.w1[i] = static_cast<T>(total[pb::kW1 + i]);
        g.w2[i] = static_cast<T>(total[pb::kW2 + i]);
    }
    for (int k = 0; k < 3; ++k) {
        g.b1[k] = static_cast<T>(total[pb::kB1 + k]);
        g.b2[k] = static_cast<T>(total[pb::kB2 + k]);
    }
}

} // namespace

Status npp_pixel_branch_forward_cpu(const float *x, PixelBranchParams<float> p, float *y, int64_t n,
                                    int64_t hw, int num_threads)
{
    if (Status s = pixel_branch_forward_check(n, hw, x, p, y))
        return s;
    if (n > 0 && hw > 0)
        forward(x, p, y, n, hw, num_threads);
    return kOk;
}

Status npp_pixel_branch_forward_cpu(const double *x, PixelBranchParams<double> p, double *y,
                                    int64_t n, int64_t hw, int num_threads)
{
    if (Status s = pixel_branch_forward_check(n, hw, x, p, y))
        return s;
    if (n > 0 && hw > 0)
        forward(x, p, y, n, hw, num_threads);
    return kOk;
}

Status npp_pixel_branch_backward_cpu(const float *grad, const float *x, PixelBranchParams<float> p,
                                     float *grad_x, PixelBranchGrads<float> g, int64_t n,
                                     int64_t hw, int num_threads)
{
    if (Status s = pixel_branch_backward_check(n, hw, grad, x, p, grad_x, g))
        return s;
    backward(grad, x, p, grad_x, g, n, hw, num_threads);
    return kOk;
}

Status npp_pixel_branch_backward_cpu(const double *grad, const double *x,
                                     PixelBranchParams<double> p, double *grad_x,
                                     PixelBranchGrads<double> g, int64_t n, int64_t hw,
                                     int num_threads)
{
    if (Status s = pixel_branch_backward_check(n, hw, grad, x, p, grad_x, g))
        return s;
    backward(grad, x, p, grad_x, g, n, hw, num_threads);
    return kOk;
}

} // namespace npp_ext
