// Baseline (b) of benchmarks/codec_throughput.py: what a naive binding of
// x265 + libde265 pays per image.
//
// For every image this program opens a fresh x265 encoder with the
// parameters npp_ext's encoder uses (third_party/libbpg/src/x265_pool.cpp),
// encodes one intra picture at the same slice QP, closes the encoder, then
// creates a fresh libde265 decoder, pushes x265's Annex-B stream as it came
// out (its own VPS/SPS/PPS, no BPG file in between), decodes, copies the
// planes out and frees the decoder. No RGB conversion, no BPG header: only
// the bare codec calls.
//
// Usage:
//   naive_roundtrip IN.yuv WIDTH HEIGHT QP LEVEL THREADS [--out OUT.yuv] [--warmup N]
//                   [--x265-lambda]
//
// IN.yuv holds N images back to back, each in the padded planar 4:2:0 layout
// of npp_ext.bpg.yuv_layout(WIDTH, HEIGHT) (luma padded to a multiple of 8,
// or 16 when a side is <= 8; chroma planes of half the padded size). With
// THREADS > 1, THREADS std::threads share the images, each taking the next
// one from an atomic counter. Only the loop is timed (steady_clock); the program prints
//   elapsed_s=<seconds> images=<N> bytes=<total Annex-B bytes>
// on stdout. --out writes the decoded planes (same layout) for a check;
// --warmup runs that many images once, untimed, before the measurement (so
// x265's one-time process set-up is not counted, as it is not for the
// in-process codec, whose module is already loaded and warm). Like npp_ext,
// every encoder loads the 2015 x265 lambda tables (see make_lambda_file);
// --x265-lambda keeps x265 3.5's own tables instead.

#include <libde265/de265.h>
#include <x265.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace
{

struct Layout {
    int w, h;   // real size
    int cw, ch; // coded (padded) luma size
    int ccw, cch;
    size_t y_size, c_size, total;
};

Layout make_layout(int w, int h)
{
    Layout l{};
    const int unit = (w <= 8 || h <= 8) ? 16 : 8;
    l.w = w;
    l.h = h;
    l.cw = (w + unit - 1) / unit * unit;
    l.ch = (h + unit - 1) / unit * unit;
    l.ccw = l.cw / 2;
    l.cch = l.ch / 2;
    l.y_size = static_cast<size_t>(l.cw) * l.ch;
    l.c_size = static_cast<size_t>(l.ccw) * l.cch;
    l.total = l.y_size + 2 * l.c_size;
    return l;
}

// The CTU / minimum CU sizes npp_ext picks for a padded picture.
void cu_sizes(const Layout &l, int *ctu, int *min_cu)
{
    const int side = l.cw < l.ch ? l.cw : l.ch;
    if (l.w <= 8 || l.h <= 8) {
        *ctu = 16;
        *min_cu = 16;
    } else if (side >= 64) {
        *ctu = 64;
        *min_cu = 8;
    } else if (side >= 32) {
        *ctu = 32;
        *min_cu = 8;
    } else {
        *ctu = 16;
        *min_cu = 8;
    }
}

// One worker's share: it takes the next image index from `next` until all
// `count` images are done (so images of uneven cost balance, as they do in
// npp_ext's pool).
struct Job {
    const Layout *layout = nullptr;
    int qp = 0;
    int level = 0;
    const uint8_t *in = nullptr; // all images
    uint8_t *out = nullptr;      // all decoded images
    size_t count = 0;
    std::atomic<size_t> *next = nullptr;
    size_t bytes = 0; // Annex-B bytes this worker produced
    std::string error;
};

Job make_job(const Layout *l, int qp, int level, const uint8_t *in, uint8_t *out, size_t count,
             std::atomic<size_t> *next)
{
    Job j;
    j.layout = l;
    j.qp = qp;
    j.level = level;
    j.in = in;
    j.out = out;
    j.count = count;
    j.next = next;
    return j;
}

// npp_ext loads the rate-distortion lambda tables of the 2015 x265 inside the
// reference bpgenc into every encoder it opens (x265 3.5's own lambda^2 is
// ~0.8x smaller): lambda(QP) = 2^(QP/6 - 2), lambda^2 = 0.85 lambda(QP)^2,
// for QP 0..69, read by x265 from a text file at encoder_open. To code the
// same pictures, this program writes the same tables once and hands the file
// to every encoder it opens.
std::string g_lambda_path;

bool make_lambda_file(std::string *err)
{
    const char *dir = std::getenv("TMPDIR");
    std::string name = std::string(dir != nullptr && *dir ? dir : "/tmp") + "/naive_lambda_XXXXXX";
    std::vector<char> buf(name.begin(), name.end());
    buf.push_back('\0');
    const int fd = mkstemp(buf.data());
    if (fd < 0) {
        *err = "cannot create a temporary lambda file";
        return false;
    }
    std::string text;
    char num[64];
    for (int table = 0; table < 2; ++table) {
        for (int q = 0; q < 70; ++q) {
            const double lambda = std::pow(2.0, q / 6.0 - 2.0);
            std::snprintf(num, sizeof num, "%.17g", table == 0 ? lambda : 0.85 * lambda * lambda);
            text += num;
            text += q + 1 < 70 ? " " : "\n";
        }
    }
    const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    g_lambda_path = buf.data();
    if (!ok) {
        unlink(buf.data());
        *err = "cannot write the lambda file";
        return false;
    }
    return true;
}

// x265_encoder_open/close set and read process-wide state; a correct naive
// binding serialises them (so does npp_ext's encoder pool).
std::mutex g_x265_mu;

bool encode_one(const x265_api *api, const Layout &l, int qp, int level, const uint8_t *yuv,
                std::vector<uint8_t> *annexb, std::string *err)
{
    x265_param *p = api->param_alloc();
    if (p == nullptr) {
        *err = "x265 param_alloc failed";
        return false;
    }
    if (api->param_default_preset(p, x265_preset_names[level], "ssim") < 0) {
        api->param_free(p);
        *err = "x265 rejected the preset";
        return false;
    }
    int ctu = 64, min_cu = 8;
    cu_sizes(l, &ctu, &min_cu);
    p->sourceWidth = l.cw;
    p->sourceHeight = l.ch;
    p->internalCsp = X265_CSP_I420;
    p->internalBitDepth = 8;
    p->fpsNum = 25;
    p->fpsDenom = 1;
    p->rc.rateControlMode = X265_RC_CQP;
    p->rc.qp = qp;
    p->keyframeMax = 1;
    p->keyframeMin = 1;
    p->totalFrames = 0; // as npp_ext (one picture per encoder either way)
    p->bRepeatHeaders = 1;
    p->bEnableRectInter = 1;
    p->bEnableAMP = 1;
    p->bEmitInfoSEI = 0;
    p->logLevel = X265_LOG_NONE;
    p->numaPools = "none";
    p->frameNumThreads = 1;
    p->lookaheadDepth = 0;
    p->lookaheadThreads = 0;
    p->bframes = 0;
    p->bOpenGOP = 0;
    p->maxCUSize = static_cast<uint32_t>(ctu);
    p->minCUSize = static_cast<uint32_t>(min_cu);
    if (p->maxTUSize > p->maxCUSize)
        p->maxTUSize = p->maxCUSize;

    // In constant-QP mode x265 codes an I picture ipOffset = 6 log2(ipFactor)
    // below rc.qp (truncating qp - ipOffset + 0.5); force exactly that slice
    // QP, as npp_ext does, so both code the picture identically.
    int slice_qp = static_cast<int>(qp - 6.0 * std::log2(p->rc.ipFactor) + 0.5);
    slice_qp = slice_qp < 0 ? 0 : (slice_qp > 51 ? 51 : slice_qp);

    if (!g_lambda_path.empty())
        p->rc.lambdaFileName = g_lambda_path.c_str();

    x265_encoder *enc;
    {
        std::lock_guard<std::mutex> lk(g_x265_mu);
        enc = api->encoder_open(p);
    }
    p->rc.lambdaFileName = nullptr; // read during open only
    if (enc == nullptr) {
        api->param_free(p);
        *err = "x265 encoder_open failed";
        return false;
    }
    x265_picture *pic = api->picture_alloc();
    api->picture_init(p, pic);
    pic->planes[0] = const_cast<uint8_t *>(yuv);
    pic->planes[1] = const_cast<uint8_t *>(yuv + l.y_size);
    pic->planes[2] = const_cast<uint8_t *>(yuv + l.y_size + l.c_size);
    pic->stride[0] = l.cw;
    pic->stride[1] = pic->stride[2] = l.ccw;
    pic->bitDepth = 8;
    pic->colorSpace = X265_CSP_I420;
    pic->sliceType = X265_TYPE_AUTO;
    pic->forceqp = slice_qp + 1; // 0 means "rate control decides"

    annexb->clear();
    x265_nal *nals = nullptr;
    uint32_t n = 0;
    int r = api->encoder_encode(enc, &nals, &n, pic, nullptr);
    // Drain in case the encoder held the picture back.
    for (int guard = 0; r >= 0 && n == 0 && guard < 8; ++guard)
        r = api->encoder_encode(enc, &nals, &n, nullptr, nullptr);
    if (r >= 0) {
        for (uint32_t i = 0; i < n; ++i)
            annexb->insert(annexb->end(), nals[i].payload, nals[i].payload + nals[i].sizeBytes);
    }
    api->picture_free(pic);
    {
        std::lock_guard<std::mutex> lk(g_x265_mu);
        api->encoder_close(enc);
    }
    api->param_free(p);
    if (r < 0 || annexb->empty()) {
        *err = "x265 produced no picture";
        return false;
    }
    return true;
}

bool decode_one(const Layout &l, const std::vector<uint8_t> &annexb, uint8_t *out, std::string *err)
{
    de265_decoder_context *ctx = de265_new_decoder();
    if (ctx == nullptr) {
        *err = "de265_new_decoder failed";
        return false;
    }
    bool ok = false;
    de265_error e =
        de265_push_data(ctx, annexb.data(), static_cast<int>(annexb.size()), 0, nullptr);
    if (de265_isOK(e))
        e = de265_flush_data(ctx);
    const de265_image *img = nullptr;
    int more = 1;
    while (de265_isOK(e) && more && img == nullptr) {
        e = de265_decode(ctx, &more);
        if (e == DE265_ERROR_WAITING_FOR_INPUT_DATA)
            break;
        img = de265_get_next_picture(ctx);
    }
    if (img == nullptr) {
        *err = std::string("libde265 returned no picture: ") + de265_get_error_text(e);
    } else {
        ok = true;
        for (int c = 0; c < 3 && ok; ++c) {
            const int pw = c == 0 ? l.cw : l.ccw, ph = c == 0 ? l.ch : l.cch;
            uint8_t *dst = out + (c == 0 ? 0 : l.y_size + (c - 1) * l.c_size);
            int stride = 0;
            const uint8_t *src = de265_get_image_plane(img, c, &stride);
            if (src == nullptr || de265_get_image_width(img, c) < pw ||
                de265_get_image_height(img, c) < ph) {
                *err = "decoded picture has the wrong size";
                ok = false;
                break;
            }
            for (int y = 0; y < ph; ++y)
                std::memcpy(dst + static_cast<size_t>(y) * pw,
                            src + static_cast<size_t>(y) * stride, static_cast<size_t>(pw));
        }
    }
    de265_free_decoder(ctx);
    return ok;
}

void run_job(const x265_api *api, Job *job)
{
    const Layout &l = *job->layout;
    std::vector<uint8_t> annexb;
    for (size_t i = (*job->next)++; i < job->count; i = (*job->next)++) {
        if (!encode_one(api, l, job->qp, job->level, job->in + i * l.total, &annexb, &job->error))
            return;
        job->bytes += annexb.size();
        if (!decode_one(l, annexb, job->out + i * l.total, &job->error))
            return;
    }
}

int parse_int(const char *s, const char *what, int lo, int hi)
{
    char *end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi) {
        std::fprintf(stderr, "naive_roundtrip: %s must be an integer in %d..%d, got '%s'\n", what,
                     lo, hi, s);
        std::exit(2);
    }
    return static_cast<int>(v);
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 7) {
        std::fprintf(stderr, "usage: naive_roundtrip IN.yuv WIDTH HEIGHT QP LEVEL THREADS "
                             "[--out OUT.yuv] [--warmup N] [--x265-lambda]\n");
        return 2;
    }
    const char *in_path = argv[1];
    const int width = parse_int(argv[2], "WIDTH", 1, 1 << 14);
    const int height = parse_int(argv[3], "HEIGHT", 1, 1 << 14);
    const int qp = parse_int(argv[4], "QP", 0, 51);
    const int level = parse_int(argv[5], "LEVEL", 0, 9);
    const int threads = parse_int(argv[6], "THREADS", 1, 256);
    const char *out_path = nullptr;
    int warmup = 1;
    bool lambda = true;
    for (int i = 7; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--out" && i + 1 < argc) {
            out_path = argv[++i];
        } else if (a == "--x265-lambda") {
            lambda = false; // x265 3.5's own tables instead of npp_ext's
        } else if (a == "--warmup" && i + 1 < argc) {
            warmup = parse_int(argv[++i], "--warmup", 0, 1 << 20);
        } else {
            std::fprintf(stderr, "naive_roundtrip: unknown argument '%s'\n", a.c_str());
            return 2;
        }
    }

    const Layout l = make_layout(width, height);
    std::vector<uint8_t> in;
    {
        FILE *f = std::fopen(in_path, "rb");
        if (f == nullptr) {
            std::fprintf(stderr, "naive_roundtrip: cannot open %s\n", in_path);
            return 1;
        }
        uint8_t buf[1 << 16];
        size_t got;
        while ((got = std::fread(buf, 1, sizeof buf, f)) > 0)
            in.insert(in.end(), buf, buf + got);
        std::fclose(f);
    }
    if (in.empty() || in.size() % l.total != 0) {
        std::fprintf(stderr,
                     "naive_roundtrip: %s holds %zu bytes, not a multiple of one %dx%d "
                     "4:2:0 image (%zu bytes)\n",
                     in_path, in.size(), width, height, l.total);
        return 1;
    }
    const size_t n = in.size() / l.total;
    std::vector<uint8_t> out(in.size());

    const x265_api *api = x265_api_get(8);
    if (api == nullptr) {
        std::fprintf(stderr, "naive_roundtrip: x265_api_get(8) returned NULL\n");
        return 1;
    }

    std::string err;
    if (lambda && !make_lambda_file(&err)) {
        std::fprintf(stderr, "naive_roundtrip: %s\n", err.c_str());
        return 1;
    }
    struct Unlink {
        ~Unlink()
        {
            if (!g_lambda_path.empty())
                unlink(g_lambda_path.c_str());
        }
    } unlink_at_exit;

    // Untimed warm-up: x265's primitives and tables are set up once per process.
    if (warmup > 0) {
        const size_t count = static_cast<size_t>(warmup) < n ? static_cast<size_t>(warmup) : n;
        std::atomic<size_t> next{0};
        Job w = make_job(&l, qp, level, in.data(), out.data(), count, &next);
        run_job(api, &w);
        if (!w.error.empty()) {
            std::fprintf(stderr, "naive_roundtrip: %s\n", w.error.c_str());
            return 1;
        }
    }

    const size_t t = static_cast<size_t>(threads) < n ? static_cast<size_t>(threads) : n;
    std::atomic<size_t> next{0};
    std::vector<Job> jobs;
    for (size_t k = 0; k < t; ++k)
        jobs.push_back(make_job(&l, qp, level, in.data(), out.data(), n, &next));

    const auto t0 = std::chrono::steady_clock::now();
    if (t == 1) {
        run_job(api, &jobs[0]);
    } else {
        std::vector<std::thread> workers;
        for (size_t k = 0; k < t; ++k)
            workers.emplace_back(run_job, api, &jobs[k]);
        for (std::thread &w : workers)
            w.join();
    }
    const auto t1 = std::chrono::steady_clock::now();

    size_t bytes = 0;
    for (const Job &j : jobs) {
        if (!j.error.empty()) {
            std::fprintf(stderr, "naive_roundtrip: %s\n", j.error.c_str());
            return 1;
        }
        bytes += j.bytes;
    }
    if (out_path != nullptr) {
        FILE *f = std::fopen(out_path, "wb");
        if (f == nullptr || std::fwrite(out.data(), 1, out.size(), f) != out.size()) {
            std::fprintf(stderr, "naive_roundtrip: cannot write %s\n", out_path);
            if (f != nullptr)
                std::fclose(f);
            return 1;
        }
        std::fclose(f);
    }
    const double elapsed = std::chrono::duration<double>(t1 - t0).count();
    std::printf("elapsed_s=%.6f images=%zu bytes=%zu\n", elapsed, n, bytes);
    return 0;
}
