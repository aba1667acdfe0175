// pybind11 registration of the CUDA kernels (module npp_ext._kernels_cuda).
//
// Buffers arrive as integer device addresses (tensor.data_ptr()), the stream
// as the integer torch.cuda.current_stream(device).cuda_stream. The calls
// only queue work on that stream; the GIL is released meanwhile.
#include "bind_util.h"
#include "kernels.h"

#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

namespace py = pybind11;

namespace
{

using npp_ext::bind::grads;
using npp_ext::bind::in;
using npp_ext::bind::out;
using npp_ext::bind::params;

constexpr const char *kModule = "npp_ext._kernels_cuda";

void raise_if(npp_ext::Status s) { npp_ext::bind::raise_if(s, kModule); }

bool is_double(const std::string &dtype) { return npp_ext::bind::is_double(dtype, kModule); }

} // namespace

PYBIND11_MODULE(_kernels_cuda, m)
{
    m.doc() = "npp_ext CUDA kernels over raw device buffers; use npp_ext.ops, not this module.";
    const auto nogil = py::call_guard<py::gil_scoped_release>();

    m.def(
        "rgb_to_yuv",
        [](uintptr_t rgb, uintptr_t yuv, int64_t n, int height, int width, int chroma, int device,
           uintptr_t stream) {
            raise_if(npp_ext::rgb_to_yuv_cuda(in<float>(rgb), out<uint8_t>(yuv), n, height, width,
                                              chroma, device, stream));
        },
        py::arg("rgb"), py::arg("yuv"), py::arg("n"), py::arg("height"), py::arg("width"),
        py::arg("chroma"), py::arg("device"), py::arg("stream"), nogil);

    m.def(
        "yuv_to_rgb",
        [](uintptr_t yuv, uintptr_t rgb, int64_t n, int height, int width, int chroma, int device,
           uintptr_t stream) {
            raise_if(npp_ext::yuv_to_rgb_cuda(in<uint8_t>(yuv), out<float>(rgb), n, height, width,
                                              chroma, device, stream));
        },
        py::arg("yuv"), py::arg("rgb"), py::arg("n"), py::arg("height"), py::arg("width"),
        py::arg("chroma"), py::arg("device"), py::arg("stream"), nogil);

    m.def(
        "qp_scale_forward",
        [](const std::string &dtype, uintptr_t x, uintptr_t scale, uintptr_t y, int64_t rows,
           int64_t hw, bool relu, int device, uintptr_t stream) {
            raise_if(
                is_double(dtype)
                    ? npp_ext::qp_scale_forward_cuda(in<double>(x), in<double>(scale),
                                                     out<double>(y), rows, hw, relu, device, stream)
                    : npp_ext::qp_scale_forward_cuda(in<float>(x), in<float>(scale), out<float>(y),
                                                     rows, hw, relu, device, stream));
        },
        py::arg("dtype"), py::arg("x"), py::arg("scale"), py::arg("y"), py::arg("rows"),
        py::arg("hw"), py::arg("relu"), py::arg("device"), py::arg("stream"), nogil);

    m.def("qp_scale_backward_parts", &npp_ext::qp_scale_backward_parts, py::arg("hw"),
          "Partial sums per row in qp_scale_backward's workspace (rows * parts elements).");

    m.def(
        "qp_scale_backward",
        [](const std::string &dtype, uintptr_t grad, uintptr_t x, uintptr_t scale, uintptr_t grad_x,
           uintptr_t grad_scale, uintptr_t workspace, int64_t rows, int64_t hw, bool relu,
           int device, uintptr_t stream) {
            raise_if(is_double(dtype) ? npp_ext::qp_scale_backward_cuda(
                                            in<double>(grad), in<double>(x), in<double>(scale),
                                            out<double>(grad_x), out<double>(grad_scale),
                                            out<double>(workspace), rows, hw, relu, device, stream)
                                      : npp_ext::qp_scale_backward_cuda(
                                            in<float>(grad), in<float>(x), in<float>(scale),
                                            out<float>(grad_x), out<float>(grad_scale),
                                            out<float>(workspace), rows, hw, relu, device, stream));
        },
        py::arg("dtype"), py::arg("grad"), py::arg("x"), py::arg("scale"), py::arg("grad_x"),
        py::arg("grad_scale"), py::arg("workspace"), py::arg("rows"), py::arg("hw"),
        py::arg("relu"), py::arg("device"), py::arg("stream"), nogil);

    m.def(
        "npp_pixel_branch_forward",
        [](const std::string &dtype, uintptr_t x, uintptr_t w1, uintptr_t b1, uintptr_t s1,
           uintptr_t w2, uintptr_t b2, uintptr_t s2, uintptr_t y, int64_t n, int64_t hw, int device,
           uintptr_t stream) {
            raise_if(is_double(dtype) ? npp_ext::npp_pixel_branch_forward_cuda(
                                            in<double>(x), params<double>(w1, b1, s1, w2, b2, s2),
                                            out<double>(y), n, hw, device, stream)
                                      : npp_ext::npp_pixel_branch_forward_cuda(
                                            in<float>(x), params<float>(w1, b1, s1, w2, b2, s2),
                                            out<float>(y), n, hw, device, stream));
        },
        py::arg("dtype"), py::arg("x"), py::arg("w1"), py::arg("b1"), py::arg("s1"), py::arg("w2"),
        py::arg("b2"), py::arg("s2"), py::arg("y"), py::arg("n"), py::arg("hw"), py::arg("device"),
        py::arg("stream"), nogil);

    m.def("npp_pixel_branch_backward_parts", &npp_ext::npp_pixel_branch_backward_parts,
          py::arg("hw"),
          "Partial-sum blocks per image in npp_pixel_branch_backward's workspace "
          "(n * parts * 30 elements).");

    m.def(
        "npp_pixel_branch_backward",
        [](const std::string &dtype, uintptr_t grad, uintptr_t x, uintptr_t w1, uintptr_t b1,
           uintptr_t s1, uintptr_t w2, uintptr_t b2, uintptr_t s2, uintptr_t grad_x, uintptr_t gw1,
           uintptr_t gb1, uintptr_t gs1, uintptr_t gw2, uintptr_t gb2, uintptr_t gs2,
           uintptr_t workspace, int64_t n, int64_t hw, int device, uintptr_t stream) {
            raise_if(is_double(dtype)
                         ? npp_ext::npp_pixel_branch_backward_cuda(
                               in<double>(grad), in<double>(x),
                               params<double>(w1, b1, s1, w2, b2, s2), out<double>(grad_x),
                               grads<double>(gw1, gb1, gs1, gw2, gb2, gs2), out<double>(workspace),
                               n, hw, device, stream)
                         : npp_ext::npp_pixel_branch_backward_cuda(
                               in<float>(grad), in<float>(x), params<float>(w1, b1, s1, w2, b2, s2),
                               out<float>(grad_x), grads<float>(gw1, gb1, gs1, gw2, gb2, gs2),
                               out<float>(workspace), n, hw, device, stream));
        },
        py::arg("dtype"), py::arg("grad"), py::arg("x"), py::arg("w1"), py::arg("b1"),
        py::arg("s1"), py::arg("w2"), py::arg("b2"), py::arg("s2"), py::arg("grad_x"),
        py::arg("grad_w1"), py::arg("grad_b1"), py::arg("grad_s1"), py::arg("grad_w2"),
        py::arg("grad_b2"), py::arg("grad_s2"), py::arg("workspace"), py::arg("n"), py::arg("hw"),
        py::arg("device"), py::arg("stream"), nogil);

    m.def(
        "branch_sum_clamp",
        [](const std::string &dtype, uintptr_t a, uintptr_t b, uintptr_t y, int64_t numel,
           int device, uintptr_t stream) {
            raise_if(is_double(dtype)
                         ? npp_ext::branch_sum_clamp_cuda(in<double>(a), in<double>(b),
                                                          out<double>(y), numel, device, stream)
                         : npp_ext::branch_sum_clamp_cuda(in<float>(a), in<float>(b), out<float>(y),
                                                          numel, device, stream));
        },
        py::arg("dtype"), py::arg("a"), py::arg("b"), py::arg("y"), py::arg("numel"),
        py::arg("device"), py::arg("stream"), nogil);
}
