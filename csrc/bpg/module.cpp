// npp_ext._bpg: pybind11 bindings of the BPG codec library.
//
// Single calls run on the calling thread; batch calls run on the process-wide
// thread pool with the GIL released. Inputs must already be C-contiguous
// uint8 numpy arrays of the documented shapes (npp_ext.bpg converts and
// validates user input); outputs are written straight into numpy arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <bpg/bpg.h>

#include "contexts.h"
#include "thread_pool.h"

namespace py = pybind11;

namespace npp_ext
{
namespace
{

using U8Array = py::array_t<uint8_t, py::array::c_style>;

// Raised for files that cannot be decoded and for codec failures.
PyObject *g_bpg_error = nullptr;

struct Failure {
    bpg_status status = BPG_OK;
    std::string message;
};

[[noreturn]] void raise(const Failure &f, const std::string &where)
{
    const std::string msg = where + f.message;
    if (f.status == BPG_ERR_INVALID_ARGUMENT)
        throw py::value_error(msg);
    PyErr_SetString(g_bpg_error, msg.c_str());
    throw py::error_already_set();
}

Failure encoder_failure(bpg_status s)
{
    const char *m = bpg_encoder_error(thread_encoder());
    return {s, *m ? m : bpg_status_string(s)};
}

Failure decoder_failure(bpg_status s)
{
    const char *m = bpg_decoder_error(thread_decoder());
    return {s, *m ? m : bpg_status_string(s)};
}

// `extra` must outlive the options (it is borrowed). The C API takes a C
// string, so a NUL inside `extra` would cut it short silently: refused
// (std::invalid_argument is ValueError; safe to throw without the GIL).
bpg_encode_options make_options(int qp, int chroma, int level, const std::string &extra)
{
    if (extra.find('\0') != std::string::npos)
        throw std::invalid_argument("x265_params must not contain a NUL character");
    bpg_encode_options o;
    bpg_encode_options_init(&o);
    o.qp = qp;
    o.chroma = chroma;
    o.level = level;
    o.x265_params = extra.empty() ? nullptr : extra.c_str();
    return o;
}

// A read-only view of a bytes-like object. It holds the buffer export, so
// that another thread cannot resize a bytearray while the codec reads it
// without the GIL (the resize raises BufferError). Destroy with the GIL held.
struct Bytes {
    py::buffer_info info;
    const uint8_t *data = nullptr;
    size_t size = 0;
};

Bytes view_bytes(const py::handle &obj)
{
    Bytes b;
    b.info = py::reinterpret_borrow<py::buffer>(obj).request();
    const py::buffer_info &i = b.info;
    if (i.itemsize != 1 || i.ndim != 1 || (i.ndim == 1 && i.strides[0] != 1))
        throw py::type_error("expected a contiguous bytes-like object");
    b.data = static_cast<const uint8_t *>(i.ptr);
    b.size = static_cast<size_t>(i.size);
    return b;
}

// parallel_for's `interrupted`: lets Ctrl-C stop a long batch. Called without
// the GIL; takes it to run Python's signal handlers (main thread only).
bool python_signal_pending()
{
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

// Runs fn over [0, n) on the pool without the GIL; a Ctrl-C (or another
// signal handler's exception) stops it and is raised here.
void run_batch(size_t n, size_t threads, const std::function<void(size_t)> &fn)
{
    try {
        py::gil_scoped_release nogil;
        global_pool(threads).parallel_for(n, threads, fn, python_signal_pending);
    } catch (const Interrupted &) {
        throw py::error_already_set(); // the exception the signal handler set
    }
}

struct RgbView {
    const uint8_t *data;
    int width, height;
    ptrdiff_t stride;
};

RgbView view_rgb(const U8Array &a)
{
    if (a.ndim() != 3 || a.shape(2) != 3)
        throw py::value_error("expected an (H, W, 3) uint8 array");
    // numpy calls an array C-contiguous whatever the strides of its size-1
    // dimensions (torch's .numpy() of a 1-row image gives such strides): one
    // row's stride is never used, so it is taken as the packed one.
    const ptrdiff_t packed = 3 * static_cast<ptrdiff_t>(a.shape(1));
    return {a.data(), static_cast<int>(a.shape(1)), static_cast<int>(a.shape(0)),
            a.shape(0) == 1 ? packed : static_cast<ptrdiff_t>(a.strides(0))};
}

py::dict info_dict(const bpg_info &i)
{
    py::dict d;
    d["width"] = i.width;
    d["height"] = i.height;
    d["pixel_format"] = i.pixel_format;
    d["chroma"] = i.chroma;
    d["bit_depth"] = i.bit_depth;
    d["color_space"] = i.color_space;
    d["has_alpha"] = bool(i.has_alpha);
    d["limited_range"] = bool(i.limited_range);
    d["animation"] = bool(i.animation);
    d["has_extensions"] = bool(i.has_extensions);
    d["log2_min_cb_size"] = i.log2_min_cb_size;
    d["log2_max_cb_size"] = i.log2_max_cb_size;
    d["log2_min_tb_size"] = i.log2_min_tb_size;
    d["log2_max_tb_size"] = i.log2_max_tb_size;
    d["max_transform_hierarchy_depth_intra"] = i.max_transform_hierarchy_depth_intra;
    d["sao"] = bool(i.sao);
    d["pcm"] = bool(i.pcm);
    d["strong_intra_smoothing"] = bool(i.strong_intra_smoothing);
    d["hevc_data_offset"] = i.hevc_data_offset;
    d["hevc_data_size"] = i.hevc_data_size;
    return d;
}

bpg_info read_info_or_raise(const Bytes &b)
{
    bpg_info info;
    char err[256];
    const bpg_status s = bpg_read_info(b.data, b.size, &info, err, sizeof(err));
    if (s != BPG_OK)
        raise({s, err}, "");
    return info;
}

py::dict read_info(const py::object &data)
{
    const Bytes b = view_bytes(data);
    bpg_info info;
    char err[256];
    const bpg_status s = bpg_read_info(b.data, b.size, &info, err, sizeof(err));
    if (s != BPG_OK && s != BPG_ERR_UNSUPPORTED)
        raise({s, err}, "");
    py::dict d = info_dict(info);
    d["supported"] = s == BPG_OK;
    d["unsupported_reason"] = s == BPG_OK ? std::string() : std::string(err);
    return d;
}

py::bytes encode_rgb(const U8Array &img, int qp, int chroma, int level,
                     const std::string &x265_params)
{
    const RgbView v = view_rgb(img);
    const bpg_encode_options o = make_options(qp, chroma, level, x265_params);
    const uint8_t *out = nullptr;
    size_t n = 0;
    bpg_status s;
    {
        py::gil_scoped_release nogil;
        s = bpg_encode_rgb(thread_encoder(), v.data, v.width, v.height, v.stride, &o, &out, &n);
    }
    if (s != BPG_OK)
        raise(encoder_failure(s), "");
    return py::bytes(reinterpret_cast<const char *>(out), n);
}

py::bytes encode_yuv(const U8Array &yuv, int width, int height, int qp, int chroma, int level,
                     const std::string &x265_params)
{
    const bpg_encode_options o = make_options(qp, chroma, level, x265_params);
    const uint8_t *out = nullptr;
    size_t n = 0;
    bpg_status s;
    {
        py::gil_scoped_release nogil;
        s = bpg_encode_yuv(thread_encoder(), yuv.data(), static_cast<size_t>(yuv.size()), width,
                           height, &o, &out, &n);
    }
    if (s != BPG_OK)
        raise(encoder_failure(s), "");
    return py::bytes(reinterpret_cast<const char *>(out), n);
}

U8Array decode_rgb(const py::object &data, bool verify)
{
    const Bytes b = view_bytes(data);
    const bpg_info info = read_info_or_raise(b);
    U8Array out({info.height, info.width, 3});
    bpg_status s;
    {
        py::gil_scoped_release nogil;
        bpg_decoder_set_verify(thread_decoder(), verify ? 1 : 0);
        s = bpg_decode_rgb(thread_decoder(), b.data, b.size, out.mutable_data(),
                           static_cast<size_t>(out.size()), 3 * static_cast<ptrdiff_t>(info.width),
                           nullptr);
    }
    if (s != BPG_OK)
        raise(decoder_failure(s), "");
    return out;
}

py::tuple decode_yuv(const py::object &data, bool verify)
{
    const Bytes b = view_bytes(data);
    const bpg_info info = read_info_or_raise(b);
    const bpg_cm_layout l = bpg_cm_make_layout(info.width, info.height, info.chroma);
    U8Array out(static_cast<py::ssize_t>(l.total));
    bpg_status s;
    {
        py::gil_scoped_release nogil;
        bpg_decoder_set_verify(thread_decoder(), verify ? 1 : 0);
        s = bpg_decode_yuv(thread_decoder(), b.data, b.size, out.mutable_data(), l.total, nullptr);
    }
    if (s != BPG_OK)
        raise(decoder_failure(s), "");
    return py::make_tuple(out, info_dict(info));
}

py::bytes annexb(const py::object &data)
{
    const Bytes b = view_bytes(data);
    const uint8_t *out = nullptr;
    size_t n = 0;
    const bpg_status s = bpg_decoder_annexb(thread_decoder(), b.data, b.size, &out, &n);
    if (s != BPG_OK)
        raise(decoder_failure(s), "");
    return py::bytes(reinterpret_cast<const char *>(out), n);
}

// The guard of every call that takes a size and a chroma format.
void check_size(int width, int height, int chroma)
{
    if (width < 1 || height < 1 || chroma < 0 || chroma > 3)
        throw py::value_error("width and height must be >= 1 and chroma in 0..3");
}

U8Array rgb_to_yuv(const U8Array &img, int chroma)
{
    const RgbView v = view_rgb(img);
    if (chroma < 0 || chroma > 3)
        throw py::value_error("chroma must be 0, 1, 2 or 3");
    const bpg_cm_layout l = bpg_cm_make_layout(v.width, v.height, chroma);
    U8Array out(static_cast<py::ssize_t>(l.total));
    const bpg_status s =
        bpg_rgb_to_yuv(v.data, v.width, v.height, v.stride, chroma, out.mutable_data(), l.total);
    if (s != BPG_OK)
        raise({s, bpg_status_string(s)}, "rgb_to_yuv: ");
    return out;
}

U8Array yuv_to_rgb(const U8Array &yuv, int width, int height, int chroma)
{
    check_size(width, height, chroma);
    U8Array out({height, width, 3});
    const bpg_status s =
        bpg_yuv_to_rgb(yuv.data(), static_cast<size_t>(yuv.size()), width, height, chroma,
                       out.mutable_data(), static_cast<size_t>(out.size()), 3 * width);
    if (s != BPG_OK)
        raise({s, s == BPG_ERR_BUFFER_TOO_SMALL ? "yuv buffer size does not match the layout"
                                                : bpg_status_string(s)},
              "yuv_to_rgb: ");
    return out;
}

py::dict layout(int width, int height, int chroma)
{
    check_size(width, height, chroma);
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, chroma);
    py::dict d;
    d["coded_w"] = l.coded_w;
    d["coded_h"] = l.coded_h;
    d["chroma_w"] = l.chroma_w;
    d["chroma_h"] = l.chroma_h;
    d["coded_cw"] = l.coded_cw;
    d["coded_ch"] = l.coded_ch;
    d["y_size"] = l.y_size;
    d["c_size"] = l.c_size;
    d["total"] = l.total;
    return d;
}

// ---- batches ----

void raise_first(const std::vector<Failure> &fails)
{
    for (size_t i = 0; i < fails.size(); ++i)
        if (fails[i].status != BPG_OK)
            raise(fails[i], "image " + std::to_string(i) + ": ");
}

std::vector<int> check_qps(const std::vector<int> &qps, size_t n)
{
    if (qps.size() != n)
        throw py::value_error("expected one qp per image: " + std::to_string(n) + " images, " +
                              std::to_string(qps.size()) + " qps");
    return qps;
}

// A batch's files as Python sees them: bytes objects and their sizes in bits.
struct Coded {
    py::list files;
    py::array_t<int64_t> nbits;
};

Coded to_python(const std::vector<std::vector<uint8_t>> &files)
{
    Coded c{py::list(), py::array_t<int64_t>(static_cast<py::ssize_t>(files.size()))};
    for (size_t i = 0; i < files.size(); ++i) {
        c.files.append(py::bytes(reinterpret_cast<const char *>(files[i].data()), files[i].size()));
        c.nbits.mutable_at(i) = static_cast<int64_t>(files[i].size()) * 8;
    }
    return c;
}

// What a round-trip batch is coded with (qps: one per image, already checked).
struct BatchSettings {
    const std::vector<int> &qps;
    int chroma, level;
    const std::string &x265_params;
    size_t threads;
};

// The round trip of one image of a batch, on a pool thread: encode(options, &bits, &size)
// on the thread's encoder, keep the file, then (when decode_too) decode(file, size) on its
// decoder. A failure is left in `fail`.
template <typename Encode, typename Decode>
void code_one(const BatchSettings &b, size_t i, const Encode &encode, const Decode &decode,
              bool decode_too, std::vector<uint8_t> &file, Failure &fail)
{
    const bpg_encode_options o = make_options(b.qps[i], b.chroma, b.level, b.x265_params);
    const uint8_t *bits = nullptr;
    size_t size = 0;
    bpg_status s = encode(o, &bits, &size);
    if (s != BPG_OK) {
        fail = encoder_failure(s);
        return;
    }
    file.assign(bits, bits + size);
    if (!decode_too)
        return;
    bpg_decoder_set_verify(thread_decoder(), 0); // our own fresh output
    s = decode(file.data(), size);
    if (s != BPG_OK)
        fail = decoder_failure(s);
}

// Both batch paths on the pool, waiting: encode(i, ...) and decode(i, ...) as code_one
// takes them, image i on a pool thread. Raises the first failing image's error; returns
// the files.
template <typename Encode, typename Decode>
Coded encode_decode_batch(const BatchSettings &b, const Encode &encode, const Decode &decode,
                          bool decode_too)
{
    const size_t n = b.qps.size();
    std::vector<std::vector<uint8_t>> files(n);
    std::vector<Failure> fails(n);
    run_batch(n, b.threads, [&](size_t i) {
        code_one(
            b, i, [&](auto &&...a) { return encode(i, a...); },
            [&](auto &&...a) { return decode(i, a...); }, decode_too, files[i], fails[i]);
    });
    raise_first(fails);
    return to_python(files);
}

// Encode (and optionally decode) a list of RGB images. When `out` is given
// (an (N, H, W, 3) uint8 array), decoded pixels go straight into it.
py::tuple roundtrip_batch(const std::vector<U8Array> &images, const std::vector<int> &qps,
                          int chroma, int level, size_t threads, bool decode, const py::object &out,
                          const std::string &x265_params)
{
    const size_t n = images.size();
    check_qps(qps, n);
    std::vector<RgbView> views;
    for (const U8Array &a : images)
        views.push_back(view_rgb(a));
    std::vector<U8Array> outs;
    U8Array stacked;
    const bool into_stacked = decode && !out.is_none();
    if (into_stacked) {
        stacked = out.cast<U8Array>();
        if (stacked.ndim() != 4 || static_cast<size_t>(stacked.shape(0)) != n ||
            stacked.shape(3) != 3 || !stacked.writeable())
            throw py::value_error("out must be a writable (N, H, W, 3) uint8 array");
        for (const RgbView &v : views)
            if (v.width != stacked.shape(2) || v.height != stacked.shape(1))
                throw py::value_error("every image must have out's height and width");
    } else if (decode) {
        for (const RgbView &v : views)
            outs.emplace_back(std::vector<py::ssize_t>{v.height, v.width, 3});
    }
    std::vector<uint8_t *> dst(n, nullptr);
    for (size_t i = 0; i < n && decode; ++i)
        dst[i] = into_stacked ? stacked.mutable_data(i) : outs[i].mutable_data();

    const Coded coded = encode_decode_batch(
        {qps, chroma, level, x265_params, threads},
        [&](size_t i, const bpg_encode_options &o, const uint8_t **bits, size_t *size) {
            const RgbView &v = views[i];
            return bpg_encode_rgb(thread_encoder(), v.data, v.width, v.height, v.stride, &o, bits,
                                  size);
        },
        [&](size_t i, const uint8_t *file, size_t size) {
            const RgbView &v = views[i];
            return bpg_decode_rgb(thread_decoder(), file, size, dst[i],
                                  3 * size_t(v.width) * v.height,
                                  3 * static_cast<ptrdiff_t>(v.width), nullptr);
        },
        decode);
    py::object decoded = py::none();
    if (into_stacked)
        decoded = stacked;
    else if (decode)
        decoded = py::cast(outs);
    return py::make_tuple(coded.files, decoded, coded.nbits);
}

py::list decode_batch(const std::vector<py::object> &datas, size_t threads, bool verify)
{
    const size_t n = datas.size();
    std::vector<Bytes> views;
    std::vector<U8Array> outs;
    std::vector<uint8_t *> dst;
    for (size_t i = 0; i < n; ++i) {
        views.push_back(view_bytes(datas[i]));
        bpg_info info;
        char err[256];
        const bpg_status s = bpg_read_info(views[i].data, views[i].size, &info, err, sizeof(err));
        if (s != BPG_OK)
            raise({s, err}, "image " + std::to_string(i) + ": ");
        outs.emplace_back(std::vector<py::ssize_t>{info.height, info.width, 3});
        dst.push_back(outs.back().mutable_data());
    }
    std::vector<Failure> fails(n);
    run_batch(n, threads, [&](size_t i) {
        bpg_decoder_set_verify(thread_decoder(), verify ? 1 : 0);
        const bpg_status s = bpg_decode_rgb(thread_decoder(), views[i].data, views[i].size, dst[i],
                                            static_cast<size_t>(outs[i].size()),
                                            3 * static_cast<ptrdiff_t>(outs[i].shape(1)), nullptr);
        if (s != BPG_OK)
            fails[i] = decoder_failure(s);
    });
    raise_first(fails);
    return py::cast(outs);
}

// A checked batch of N same-size images in the padded YUV layout: `yuv` in, decoded
// planes into `out` (same shape), typically views of pinned host buffers.
struct YuvBatch {
    const uint8_t *src;
    uint8_t *dst;
    bpg_cm_layout l;
    int width, height;
};

YuvBatch check_yuv_batch(const U8Array &yuv, int width, int height, const std::vector<int> &qps,
                         int chroma, U8Array &out)
{
    check_size(width, height, chroma);
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, chroma);
    if (yuv.ndim() != 2 || static_cast<size_t>(yuv.shape(1)) != l.total)
        throw py::value_error("yuv must be (N, " + std::to_string(l.total) + ") uint8 for " +
                              std::to_string(width) + "x" + std::to_string(height));
    const size_t n = static_cast<size_t>(yuv.shape(0));
    check_qps(qps, n);
    if (out.ndim() != 2 || static_cast<size_t>(out.shape(0)) != n ||
        static_cast<size_t>(out.shape(1)) != l.total || !out.writeable())
        throw py::value_error("out must be a writable uint8 array shaped like yuv");
    return {yuv.data(), out.mutable_data(), l, width, height};
}

// Image i of a YUV batch, on a pool thread (see code_one).
void code_yuv_one(const BatchSettings &b, const YuvBatch &y, size_t i, std::vector<uint8_t> &file,
                  Failure &fail)
{
    const size_t total = y.l.total;
    code_one(
        b, i,
        [&](const bpg_encode_options &o, const uint8_t **bits, size_t *size) {
            return bpg_encode_yuv(thread_encoder(), y.src + i * total, total, y.width, y.height, &o,
                                  bits, size);
        },
        [&](const uint8_t *file_data, size_t size) {
            return bpg_decode_yuv(thread_decoder(), file_data, size, y.dst + i * total, total,
                                  nullptr);
        },
        true, file, fail);
}

// The training-step path: the pool codes the batch while the caller goes on; wait()
// gives the files and their bits. Batches started one after another are
// coded in that order with no pause between them (see ThreadPool::submit). The job holds
// its buffers until the pool is done with them, and a job dropped unwaited is waited for.
class YuvJob
{
  public:
    YuvJob(U8Array yuv, int width, int height, std::vector<int> qps, int chroma, int level,
           size_t threads, U8Array out, std::string x265_params)
        : yuv_(std::move(yuv)), out_(std::move(out)), qps_(std::move(qps)),
          x265_(std::move(x265_params)),
          y_(check_yuv_batch(yuv_, width, height, qps_, chroma, out_)), b_{qps_, chroma, level,
                                                                           x265_, threads},
          files_(qps_.size()), fails_(qps_.size())
    {
        batch_ = global_pool(threads).submit(qps_.size(), threads, [this](size_t i) {
            code_yuv_one(b_, y_, i, files_[i], fails_[i]);
        });
    }
    YuvJob(const YuvJob &) = delete;
    YuvJob &operator=(const YuvJob &) = delete;

    ~YuvJob()
    {
        py::gil_scoped_release nogil;
        try {
            batch_->wait();
        } catch (...) { // an unwaited job's errors have no one to go to
        }
    }

    py::tuple wait()
    {
        try {
            py::gil_scoped_release nogil;
            batch_->wait(python_signal_pending);
        } catch (const Interrupted &) {
            throw py::error_already_set(); // the exception the signal handler set
        }
        raise_first(fails_);
        const Coded coded = to_python(files_);
        return py::make_tuple(coded.files, coded.nbits);
    }

    bool done() { return batch_->done(); }

  private:
    U8Array yuv_, out_;
    std::vector<int> qps_;
    std::string x265_;
    YuvBatch y_;
    BatchSettings b_;
    std::vector<std::vector<uint8_t>> files_;
    std::vector<Failure> fails_;
    std::shared_ptr<ThreadPool::Batch> batch_;
};

} // namespace
} // namespace npp_ext

PYBIND11_MODULE(_bpg, m)
{
    using namespace npp_ext;
    namespace py = pybind11;
    m.doc() = "BPG codec bindings (see npp_ext.bpg for the documented API)";
    static py::exception<std::runtime_error> err(m, "BPGError", PyExc_ValueError);
    g_bpg_error = err.ptr();
    m.attr("MAX_PIXELS") = BPG_MAX_PIXELS;
    m.attr("MAX_SIDE") = BPG_MAX_SIDE;
    m.def("read_info", &read_info, py::arg("data"));
    m.def("encode_rgb", &encode_rgb, py::arg("image"), py::arg("qp"), py::arg("chroma"),
          py::arg("level"), py::arg("x265_params") = "");
    m.def("encode_yuv", &encode_yuv, py::arg("yuv"), py::arg("width"), py::arg("height"),
          py::arg("qp"), py::arg("chroma"), py::arg("level"), py::arg("x265_params") = "");
    m.def("decode_rgb", &decode_rgb, py::arg("data"), py::arg("verify") = true);
    m.def("decode_yuv", &decode_yuv, py::arg("data"), py::arg("verify") = true);
    m.def("annexb", &annexb, py::arg("data"));
    m.def("rgb_to_yuv", &rgb_to_yuv, py::arg("image"), py::arg("chroma"));
    m.def("yuv_to_rgb", &yuv_to_rgb, py::arg("yuv"), py::arg("width"), py::arg("height"),
          py::arg("chroma"));
    m.def("layout", &layout, py::arg("width"), py::arg("height"), py::arg("chroma"));
    m.def("roundtrip_batch", &roundtrip_batch, py::arg("images"), py::arg("qps"), py::arg("chroma"),
          py::arg("level"), py::arg("threads") = 0, py::arg("decode") = true,
          py::arg("out") = py::none(), py::arg("x265_params") = "");
    m.def("decode_batch", &decode_batch, py::arg("datas"), py::arg("threads") = 0,
          py::arg("verify") = true);
    py::class_<YuvJob>(m, "YuvJob", "A YUV batch the pool is coding (start_roundtrip_yuv_batch).")
        .def("wait", &YuvJob::wait, "Wait for the batch; returns (files, bits) or raises.")
        .def("done", &YuvJob::done, "Whether the pool has finished the batch.");
    m.def(
        "start_roundtrip_yuv_batch",
        [](U8Array yuv, int width, int height, std::vector<int> qps, int chroma, int level,
           size_t threads, U8Array out, std::string x265_params) {
            return std::make_unique<YuvJob>(std::move(yuv), width, height, std::move(qps), chroma,
                                            level, threads, std::move(out), std::move(x265_params));
        },
        py::arg("yuv"), py::arg("width"), py::arg("height"), py::arg("qps"), py::arg("chroma"),
        py::arg("level"), py::arg("threads"), py::arg("out"), py::arg("x265_params") = "");
    m.def(
        "pool_threads", [](size_t threads) { return global_pool(threads).size(); },
        py::arg("threads") = 0,
        "Size of the codec thread pool after growing it to at least `threads` (0: one per core).");
}
