// NPP output: y = clamp(a + b, 0, 1) (the gradient is straight-through, in Python).
#include "kernels.h"

namespace npp_ext
{
namespace
{

constexpr int64_t kGrain = 65536;

template <typename T>
void branch_sum_clamp(const T *a, const T *b, T *y, int64_t numel, int num_threads)
{
    detail::parallel_for(numel, kGrain, num_threads, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            const T v = a[i] + b[i];
            // Comparisons written so that NaN passes through, as torch.clamp.
            y[i] = v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
        }
    });
}

} // namespace

namespace
{

template <typename T>
Status checked_branch_sum_clamp(const T *a, const T *b, T *y, int64_t numel, int num_threads)
{
    if (Status s = branch_sum_check(numel, a, b, y))
        return s;
    branch_sum_clamp(a, b, y, numel, num_threads);
    return kOk;
}

} // namespace

Status branch_sum_clamp_cpu(const float *a, const float *b, float *y, int64_t numel,
                            int num_threads)
{
    return checked_branch_sum_clamp(a, b, y, numel, num_threads);
}

Status branch_sum_clamp_cpu(const double *a, const double *b, double *y, int64_t numel,
                            int num_threads)
{
    return checked_branch_sum_clamp(a, b, y, numel, num_threads);
}

} // namespace npp_ext
