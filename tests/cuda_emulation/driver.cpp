// Runs every CUDA kernel of csrc/kernels/cuda under the host emulation (cuda_runtime.h
// here) and compares it with the CPU kernel on the same inputs. Prints one line per case
// and exits 1 if any differs. Built and run by tests/test_cuda_emulation.py.
#include "cuda_runtime.h" // the emulation: emu::dependent_launches
#include "kernels.h"

#include <bpg/color_math.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace npp_ext;

namespace
{

int failures = 0;
std::mt19937 rng(1234);

void report(const std::string &name, bool ok, const std::string &detail = "")
{
    std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name.c_str(), detail.empty() ? "" : ": ",
                detail.c_str());
    if (!ok)
        ++failures;
}

bool status_ok(const std::string &name, Status s)
{
    if (s != kOk)
        report(name, false, std::string("status ") + s);
    return s == kOk;
}

template <typename T> std::vector<T> uniform(size_t n, double lo, double hi)
{
    std::uniform_real_distribution<double> d(lo, hi);
    std::vector<T> v(n);
    for (auto &x : v)
        x = static_cast<T>(d(rng));
    return v;
}

// Largest |a - b| over max(|b|) (or 1 when b is all zeros); 0 for identical arrays.
template <typename T> double rel_diff(const std::vector<T> &a, const std::vector<T> &b)
{
    double diff = 0, scale = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(static_cast<double>(a[i])) != std::isnan(static_cast<double>(b[i])))
            return INFINITY;
        if (std::isnan(static_cast<double>(a[i])))
            continue;
        diff = std::max(diff, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
        scale = std::max(scale, std::abs(static_cast<double>(b[i])));
    }
    return diff / (scale > 0 ? scale : 1.0);
}

template <typename T>
void expect_close(const std::string &name, const std::vector<T> &gpu, const std::vector<T> &cpu,
                  double tol)
{
    const double d = rel_diff(gpu, cpu);
    char detail[64] = "";
    if (d != 0)
        std::snprintf(detail, sizeof detail, "max rel diff %.3g", d);
    report(name, d <= tol, detail);
}

// A buffer of n values starting `offset` elements into its storage: offset 1 puts the data
// off the 16-byte grid, which sends the CUDA kernels down their unpacked paths.
template <typename T> struct Shifted {
    std::vector<T> store;
    int offset;
    Shifted(std::vector<T> values, int off) : store(off, T(0)), offset(off)
    {
        store.insert(store.end(), values.begin(), values.end());
    }
    T *data() { return store.data() + offset; }
    std::vector<T> values() const { return std::vector<T>(store.begin() + offset, store.end()); }
};

// One size and chroma format, both directions, every buffer `offset` elements off its
// allocation (offset 1: off the 4- and 16-byte grids, so the kernels take their scalar
// paths). yuv_to_rgb gets the CPU's YUV, so its input has real padding.
void yuv_case(int h, int w, int chroma, int offset)
{
    const int64_t n = 2;
    const std::string tag = std::string(chroma == kChroma420 ? "420 " : "444 ") +
                            std::to_string(w) + "x" + std::to_string(h) +
                            (offset ? " unaligned" : "");
    auto values = uniform<float>(static_cast<size_t>(n * 3 * h * w), -0.1, 1.1);
    values[0] = NAN; // NaN quantizes to 0 on both
    Shifted<float> rgb(values, offset);
    const bpg_cm_layout l = bpg_cm_make_layout(w, h, chroma);
    std::vector<uint8_t> cpu(n * l.total);
    Shifted<uint8_t> gpu(std::vector<uint8_t>(n * l.total, 0xEE), offset);
    if (!status_ok("rgb_to_yuv cpu " + tag,
                   rgb_to_yuv_cpu(rgb.data(), cpu.data(), n, h, w, chroma, 2)) ||
        !status_ok("rgb_to_yuv cuda " + tag,
                   rgb_to_yuv_cuda(rgb.data(), gpu.data(), n, h, w, chroma, 0, 0)))
        return;
    report("rgb_to_yuv " + tag, cpu == gpu.values());

    Shifted<uint8_t> yuv(cpu, offset);
    std::vector<float> back_cpu(n * 3 * h * w);
    Shifted<float> back_gpu(std::vector<float>(n * 3 * h * w, -1.0f), offset);
    if (!status_ok("yuv_to_rgb cpu " + tag,
                   yuv_to_rgb_cpu(yuv.data(), back_cpu.data(), n, h, w, chroma, 2)) ||
        !status_ok("yuv_to_rgb cuda " + tag,
                   yuv_to_rgb_cuda(yuv.data(), back_gpu.data(), n, h, w, chroma, 0, 0)))
        return;
    const std::vector<float> got = back_gpu.values();
    report("yuv_to_rgb " + tag,
           std::memcmp(back_cpu.data(), got.data(), back_cpu.size() * sizeof(float)) == 0);
}

void yuv_cases()
{
    // {h, w}: tiles are 64 x 64 luma (rgb_to_yuv) and 128 x 16 (yuv_to_rgb): one and
    // several of each, partial ones, chroma padding in the last tile (65 x 124: 2 columns
    // and 3 rows), 1 x W and H x 1, widths with and without w % 4 == 0 (vector path).
    const int sizes[][2] = {{1, 1},    {5, 7},     {8, 8},    {17, 9},  {37, 45}, {64, 70},
                            {33, 130}, {1, 64},    {64, 1},   {3, 200}, {4, 12},  {65, 124},
                            {66, 256}, {130, 132}, {17, 260}, {40, 129}};
    for (int chroma : {kChroma420, kChroma444})
        for (const auto &hw : sizes)
            yuv_case(hw[0], hw[1], chroma, 0);
    for (int chroma : {kChroma420, kChroma444})
        for (const auto &hw : {std::array<int, 2>{37, 44}, std::array<int, 2>{65, 132}})
            yuv_case(hw[0], hw[1], chroma, 1);
}

// Every 8-bit value through the division by 255: Y = 0..255 with neutral chroma gives
// R = G = B = Y, so each k / 255 must come out as the CPU's float division.
void yuv_every_value_case()
{
    for (int chroma : {kChroma420, kChroma444}) {
        const int h = 16, w = 16;
        const bpg_cm_layout l = bpg_cm_make_layout(w, h, chroma);
        std::vector<uint8_t> yuv(l.total, 128);
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
                yuv[static_cast<size_t>(y) * l.coded_w + x] = static_cast<uint8_t>(16 * y + x);
        std::vector<float> cpu(3 * h * w), gpu(3 * h * w, -1.0f);
        const std::string tag = chroma == kChroma420 ? "420" : "444";
        if (!status_ok("yuv_to_rgb cpu every value " + tag,
                       yuv_to_rgb_cpu(yuv.data(), cpu.data(), 1, h, w, chroma, 1)) ||
            !status_ok("yuv_to_rgb cuda every value " + tag,
                       yuv_to_rgb_cuda(yuv.data(), gpu.data(), 1, h, w, chroma, 0, 0)))
            continue;
        bool all_values = true;
        for (int k = 0; k < h * w; ++k)
            all_values = all_values && cpu[k] == static_cast<float>(k) / 255.0f;
        report("yuv_to_rgb every value " + tag + " (k / 255 for k = 0..255)",
               all_values && std::memcmp(cpu.data(), gpu.data(), cpu.size() * sizeof(float)) == 0);
    }
}

template <typename T>
void qp_scale_case(const char *type, int64_t rows, int64_t hw, int off, bool relu, double tol)
{
    const std::string tag = std::string(type) + (relu ? " relu " : " none ") +
                            std::to_string(rows) + "x" + std::to_string(hw) +
                            (off ? " unaligned" : "");
    Shifted<T> x(uniform<T>(rows * hw, -1, 1), off);
    auto scale = uniform<T>(rows, 0.2, 2);
    Shifted<T> grad(uniform<T>(rows * hw, -1, 1), off);
    Shifted<T> y_gpu(std::vector<T>(rows * hw), off);
    std::vector<T> y_cpu(rows * hw);
    if (!status_ok("qp_scale fwd " + tag,
                   qp_scale_forward_cpu(x.data(), scale.data(), y_cpu.data(), rows, hw, relu, 2)) ||
        !status_ok(
            "qp_scale fwd cuda " + tag,
            qp_scale_forward_cuda(x.data(), scale.data(), y_gpu.data(), rows, hw, relu, 0, 0)))
        return;
    expect_close("qp_scale fwd " + tag, y_gpu.values(), y_cpu, 0.0);

    std::vector<T> gx_cpu(rows * hw), gs_cpu(rows), gs_gpu(rows, T(-7));
    Shifted<T> gx_gpu(std::vector<T>(rows * hw), off);
    std::vector<T> workspace(rows * qp_scale_backward_parts(hw));
    const int dependent_before = ::emu::dependent_launches;
    if (!status_ok("qp_scale bwd " + tag,
                   qp_scale_backward_cpu(grad.data(), x.data(), scale.data(), gx_cpu.data(),
                                         gs_cpu.data(), rows, hw, relu, 2)) ||
        !status_ok("qp_scale bwd cuda " + tag,
                   qp_scale_backward_cuda(grad.data(), x.data(), scale.data(), gx_gpu.data(),
                                          gs_gpu.data(), workspace.data(), rows, hw, relu, 0, 0)))
        return;
    expect_close("qp_scale bwd grad_x " + tag, gx_gpu.values(), gx_cpu, 0.0);
    expect_close("qp_scale bwd grad_scale " + tag, gs_gpu, gs_cpu, tol);
    // On compute capability 9 the finish kernel is a programmatic dependent launch.
    report("qp_scale bwd finish launched dependent " + tag,
           ::emu::dependent_launches == dependent_before + 1);
}

template <typename T> void qp_scale_cases(const char *type, double tol)
{
    // {rows, hw, offset}: 9000 and 4096 split into whole packs; 1665 does not.
    const int64_t shapes[][3] = {{6, 1665, 0}, {4, 9000, 0}, {4, 9000, 1},
                                 {3, 4096, 0}, {3, 1, 0},    {5, 0, 0}};
    for (bool relu : {true, false})
        for (const auto &s : shapes)
            qp_scale_case<T>(type, s[0], s[1], static_cast<int>(s[2]), relu, tol);
}

// A row long enough that the forward's 1024 blocks and the backward's 256 parts each
// take more than one step of kIlp packs per thread, with a partial last step.
void qp_scale_long_row_case() { qp_scale_case<float>("float32", 1, 4194340, 0, true, 1e-4); }

template <typename T> void pixel_branch_cases(const char *type, double tol)
{
    // 70x2049: 140 partial rows, more than one pass of the finish kernel's 128 threads.
    const int64_t shapes[][2] = {{2, 1665}, {3, 9000}, {1, 1}, {2, 0}, {0, 64}, {70, 2049}};
    for (const auto &s : shapes) {
        const int64_t n = s[0], hw = s[1];
        const std::string tag =
            std::string(type) + " " + std::to_string(n) + "x" + std::to_string(hw);
        auto x = uniform<T>(n * 3 * hw, -0.5, 1.5);
        auto w1 = uniform<T>(9, -1, 1), b1 = uniform<T>(3, -0.3, 0.3);
        auto s1 = uniform<T>(n * 3, 0.5, 1.5), w2 = uniform<T>(9, -1, 1);
        auto b2 = uniform<T>(3, -0.3, 0.3), s2 = uniform<T>(n * 3, 0.5, 1.5);
        auto grad = uniform<T>(n * 3 * hw, -1, 1);
        const PixelBranchParams<T> p{w1.data(), b1.data(), s1.data(),
                                     w2.data(), b2.data(), s2.data()};
        std::vector<T> y_cpu(x.size()), y_gpu(x.size());
        if (!status_ok("pixel_branch fwd " + tag,
                       npp_pixel_branch_forward_cpu(x.data(), p, y_cpu.data(), n, hw, 2)) ||
            !status_ok("pixel_branch fwd cuda " + tag,
                       npp_pixel_branch_forward_cuda(x.data(), p, y_gpu.data(), n, hw, 0, 0)))
            continue;
        expect_close("pixel_branch fwd " + tag, y_gpu, y_cpu, tol);

        std::vector<T> gx_cpu(x.size()), gx_gpu(x.size());
        std::vector<T> cpu_g[6], gpu_g[6];
        const size_t sizes[6] = {9, 3, static_cast<size_t>(n * 3),
                                 9, 3, static_cast<size_t>(n * 3)};
        for (int k = 0; k < 6; ++k) {
            cpu_g[k].assign(sizes[k], T(0));
            gpu_g[k].assign(sizes[k], T(-7)); // every element must be written
        }
        const PixelBranchGrads<T> gc{cpu_g[0].data(), cpu_g[1].data(), cpu_g[2].data(),
                                     cpu_g[3].data(), cpu_g[4].data(), cpu_g[5].data()};
        const PixelBranchGrads<T> gg{gpu_g[0].data(), gpu_g[1].data(), gpu_g[2].data(),
                                     gpu_g[3].data(), gpu_g[4].data(), gpu_g[5].data()};
        std::vector<T> workspace(std::max<int64_t>(1, n) * npp_pixel_branch_backward_parts(hw) *
                                 pb::kCount);
        if (!status_ok("pixel_branch bwd " + tag,
                       npp_pixel_branch_backward_cpu(grad.data(), x.data(), p, gx_cpu.data(), gc, n,
                                                     hw, 2)) ||
            !status_ok("pixel_branch bwd cuda " + tag,
                       npp_pixel_branch_backward_cuda(grad.data(), x.data(), p, gx_gpu.data(), gg,
                                                      workspace.data(), n, hw, 0, 0)))
            continue;
        expect_close("pixel_branch bwd grad_x " + tag, gx_gpu, gx_cpu, tol);
        const char *names[6] = {"w1", "b1", "s1", "w2", "b2", "s2"};
        for (int k = 0; k < 6; ++k)
            expect_close("pixel_branch bwd grad_" + std::string(names[k]) + " " + tag, gpu_g[k],
                         cpu_g[k], hw == 0 ? 0.0 : 1e3 * tol);
    }
}

template <typename T> void branch_sum_cases(const char *type)
{
    // {numel, offset}: 4096 splits into whole packs, 4099 does not.
    const int64_t cases[][2] = {{0, 0}, {1, 0}, {4099, 0}, {4096, 0}, {4096, 1}};
    for (const auto &c : cases) {
        const int64_t numel = c[0];
        const int off = static_cast<int>(c[1]);
        auto a_values = uniform<T>(numel, -0.5, 1.0);
        if (numel > 0)
            a_values[0] = static_cast<T>(NAN);
        Shifted<T> a(a_values, off), b(uniform<T>(numel, -0.5, 1.0), off);
        Shifted<T> y_gpu(std::vector<T>(numel), off);
        std::vector<T> y_cpu(numel);
        const std::string tag =
            std::string(type) + " " + std::to_string(numel) + (off ? " unaligned" : "");
        if (!status_ok("branch_sum_clamp " + tag,
                       branch_sum_clamp_cpu(a.data(), b.data(), y_cpu.data(), numel, 2)) ||
            !status_ok("branch_sum_clamp cuda " + tag,
                       branch_sum_clamp_cuda(a.data(), b.data(), y_gpu.data(), numel, 0, 0)))
            continue;
        expect_close("branch_sum_clamp " + tag, y_gpu.values(), y_cpu, 0.0);
    }
}

} // namespace

int main()
{
    yuv_cases();
    yuv_every_value_case();
    qp_scale_cases<float>("float32", 1e-5);
    qp_scale_cases<double>("float64", 1e-12);
    qp_scale_long_row_case();
    pixel_branch_cases<float>("float32", 1e-6);
    pixel_branch_cases<double>("float64", 1e-13);
    branch_sum_cases<float>("float32");
    branch_sum_cases<double>("float64");
    std::printf("%d failure(s)\n", failures);
    return failures == 0 ? 0 : 1;
}
