// pybind11 registration of the kernels, one source for both modules: compiled as is it
// is npp_ext._kernels (CPU), compiled with NPP_EXT_KERNELS_CUDA defined it is
// npp_ext._kernels_cuda.
//
// Buffers arrive as integer addresses (tensor.data_ptr()) of contiguous tensors that
// npp_ext/ops.py allocated and validated; the GIL is released while a kernel runs (CPU)
// or while its work is queued (CUDA: on the stream passed as the integer
// torch.cuda.current_stream(device).cuda_stream).
#include "bind_util.h"
#include "kernels.h"

#include <pybind11/pybind11.h>

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace py = pybind11;

#ifdef NPP_EXT_KERNELS_CUDA
#define NPP_EXT_MODULE _kernels_cuda
#define NPP_EXT_KERNEL(op) npp_ext::op##_cuda
constexpr bool kCuda = true;
#else
#define NPP_EXT_MODULE _kernels
#define NPP_EXT_KERNEL(op) npp_ext::op##_cpu
constexpr bool kCuda = false;
#endif

namespace
{

using npp_ext::Status;
using npp_ext::bind::grads;
using npp_ext::bind::in;
using npp_ext::bind::out;
using npp_ext::bind::params;

template <typename... T> struct Types {
};

template <typename... Names> auto args(Names... names)
{
    return std::make_tuple(py::arg(names)...);
}

// What the two modules differ in. Run: the trailing arguments of every call (CPU: the
// thread count; CUDA: device index and stream). Workspace: the scratch buffer of the
// CUDA backward passes, between the gradients and the sizes (none on the CPU).
constexpr const char *kModule = kCuda ? "npp_ext._kernels_cuda" : "npp_ext._kernels";
constexpr const char *kDoc =
    kCuda ? "npp_ext CUDA kernels over raw device buffers; use npp_ext.ops, not this module."
          : "npp_ext CPU kernels over raw buffers; use npp_ext.ops, not this module.";
using Run = std::conditional_t<kCuda, Types<int, uintptr_t>, Types<int>>;
using Workspace = std::conditional_t<kCuda, Types<uintptr_t>, Types<>>;

auto run_args()
{
    if constexpr (kCuda)
        return args("device", "stream");
    else
        return args("threads");
}

auto workspace_args()
{
    if constexpr (kCuda)
        return args("workspace");
    else
        return std::tuple<>();
}

void raise_if(Status s) { npp_ext::bind::raise_if(s, kModule); }

// Calls f(float{}) or f(double{}) for the dtype name; f returns the kernel's Status.
template <typename F> void by_dtype(const std::string &dtype, const F &f)
{
    raise_if(npp_ext::bind::is_double(dtype, kModule) ? f(double{}) : f(float{}));
}

// m.def(name, f, *arg_names) with the GIL released while f runs.
template <typename F, typename Names>
void def_nogil(py::module_ &m, const char *name, F &&f, Names &&names)
{
    std::apply(
        [&](auto &&...a) {
            m.def(name, std::forward<F>(f), a..., py::call_guard<py::gil_scoped_release>());
        },
        std::forward<Names>(names));
}

// rgb_to_yuv and yuv_to_rgb: a buffer in, a buffer out, the image size and the chroma code.
template <typename In, typename Out, typename... RunArgs>
void def_yuv(py::module_ &m, const char *name,
             Status (*kernel)(const In *, Out *, int64_t, int, int, int, RunArgs...),
             const char *in_name, const char *out_name)
{
    def_nogil(
        m, name,
        [kernel](uintptr_t src, uintptr_t dst, int64_t n, int height, int width, int chroma,
                 RunArgs... run) {
            raise_if(kernel(in<In>(src), out<Out>(dst), n, height, width, chroma, run...));
        },
        std::tuple_cat(args(in_name, out_name, "n", "height", "width", "chroma"), run_args()));
}

template <typename... RunArgs, typename... WorkspaceArg>
void define_kernels(py::module_ &m, Types<RunArgs...>, Types<WorkspaceArg...>)
{
    using std::tuple_cat;

    def_yuv(m, "rgb_to_yuv", &NPP_EXT_KERNEL(rgb_to_yuv), "rgb", "yuv");
    def_yuv(m, "yuv_to_rgb", &NPP_EXT_KERNEL(yuv_to_rgb), "yuv", "rgb");

    def_nogil(
        m, "qp_scale_forward",
        [](const std::string &dtype, uintptr_t x, uintptr_t scale, uintptr_t y, int64_t rows,
           int64_t hw, bool relu, RunArgs... run) {
            by_dtype(dtype, [&](auto t) {
                using T = decltype(t);
                return NPP_EXT_KERNEL(qp_scale_forward)(in<T>(x), in<T>(scale), out<T>(y), rows, hw,
                                                        relu, run...);
            });
        },
        tuple_cat(args("dtype", "x", "scale", "y", "rows", "hw", "relu"), run_args()));

#ifdef NPP_EXT_KERNELS_CUDA
    m.def("qp_scale_backward_parts", &npp_ext::qp_scale_backward_parts, py::arg("hw"),
          "Partial sums per row in qp_scale_backward's workspace (rows * parts elements).");
#endif

    def_nogil(
        m, "qp_scale_backward",
        [](const std::string &dtype, uintptr_t grad, uintptr_t x, uintptr_t scale, uintptr_t grad_x,
           uintptr_t grad_scale, WorkspaceArg... workspace, int64_t rows, int64_t hw, bool relu,
           RunArgs... run) {
            by_dtype(dtype, [&](auto t) {
                using T = decltype(t);
                return NPP_EXT_KERNEL(qp_scale_backward)(
                    in<T>(grad), in<T>(x), in<T>(scale), out<T>(grad_x), out<T>(grad_scale),
                    out<T>(workspace)..., rows, hw, relu, run...);
            });
        },
        tuple_cat(args("dtype", "grad", "x", "scale", "grad_x", "grad_scale"), workspace_args(),
                  args("rows", "hw", "relu"), run_args()));

    def_nogil(
        m, "npp_pixel_branch_forward",
        [](const std::string &dtype, uintptr_t x, uintptr_t w1, uintptr_t b1, uintptr_t s1,
           uintptr_t w2, uintptr_t b2, uintptr_t s2, uintptr_t y, int64_t n, int64_t hw,
           RunArgs... run) {
            by_dtype(dtype, [&](auto t) {
                using T = decltype(t);
                return NPP_EXT_KERNEL(npp_pixel_branch_forward)(
                    in<T>(x), params<T>(w1, b1, s1, w2, b2, s2), out<T>(y), n, hw, run...);
            });
        },
        tuple_cat(args("dtype", "x", "w1", "b1", "s1", "w2", "b2", "s2", "y", "n", "hw"),
                  run_args()));

#ifdef NPP_EXT_KERNELS_CUDA
    m.def("npp_pixel_branch_backward_parts", &npp_ext::npp_pixel_branch_backward_parts,
          py::arg("hw"),
          "Partial-sum blocks per image in npp_pixel_branch_backward's workspace "
          "(n * parts * 30 elements).");
#endif

    def_nogil(
        m, "npp_pixel_branch_backward",
        [](const std::string &dtype, uintptr_t grad, uintptr_t x, uintptr_t w1, uintptr_t b1,
           uintptr_t s1, uintptr_t w2, uintptr_t b2, uintptr_t s2, uintptr_t grad_x, uintptr_t gw1,
           uintptr_t gb1, uintptr_t gs1, uintptr_t gw2, uintptr_t gb2, uintptr_t gs2,
           WorkspaceArg... workspace, int64_t n, int64_t hw, RunArgs... run) {
            by_dtype(dtype, [&](auto t) {
                using T = decltype(t);
                return NPP_EXT_KERNEL(npp_pixel_branch_backward)(
                    in<T>(grad), in<T>(x), params<T>(w1, b1, s1, w2, b2, s2), out<T>(grad_x),
                    grads<T>(gw1, gb1, gs1, gw2, gb2, gs2), out<T>(workspace)..., n, hw, run...);
            });
        },
        tuple_cat(args("dtype", "grad", "x", "w1", "b1", "s1", "w2", "b2", "s2", "grad_x",
                       "grad_w1", "grad_b1", "grad_s1", "grad_w2", "grad_b2", "grad_s2"),
                  workspace_args(), args("n", "hw"), run_args()));

    def_nogil(
        m, "branch_sum_clamp",
        [](const std::string &dtype, uintptr_t a, uintptr_t b, uintptr_t y, int64_t numel,
           RunArgs... run) {
            by_dtype(dtype, [&](auto t) {
                using T = decltype(t);
                return NPP_EXT_KERNEL(branch_sum_clamp)(in<T>(a), in<T>(b), out<T>(y), numel,
                                                        run...);
            });
        },
        tuple_cat(args("dtype", "a", "b", "y", "numel"), run_args()));
}

} // namespace

PYBIND11_MODULE(NPP_EXT_MODULE, m)
{
    m.doc() = kDoc;
    define_kernels(m, Run{}, Workspace{});
}
