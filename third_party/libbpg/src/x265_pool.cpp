#include "x265_pool.h"

#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <mutex>
#include <vector>

#include <pthread.h>
#include <unistd.h>

namespace bpg
{

namespace
{

struct Config {
    int ctu, min_cu;
    bool operator==(const Config &o) const { return ctu == o.ctu && min_cu == o.min_cu; }
    bool operator!=(const Config &o) const { return !(*this == o); }
};
constexpr Config kNoConfig{0, 0}; // no encoder open yet / no switch pending

Config config_for(const X265Key &k)
{
    const int side = k.coded_w < k.coded_h ? k.coded_w : k.coded_h;
    if (k.pad_unit == 16)
        return {16, 16};
    if (side >= 64)
        return {64, 8};
    if (side >= 32)
        return {32, 8};
    return {16, 8};
}

int x265_csp(int chroma)
{
    switch (chroma) {
    case BPG_CM_GRAY:
        return X265_CSP_I400;
    case BPG_CM_422:
        return X265_CSP_I422;
    case BPG_CM_444:
        return X265_CSP_I444;
    default:
        return X265_CSP_I420;
    }
}

// x265 3.5's rate-distortion lambda^2 table is 0.76-0.82 times the one of the
// 2015 x265 inside the reference bpgenc, so at the same QP it spends 5-12%
// more bits for 0.2-0.4 dB more PSNR (benchmarks/rd_notes.md). Loading the
// 2015 tables (lambda = 2^(QP/6 - 2), lambda^2 = 0.85 lambda^2) brings every
// reference point back within 4% and 0.08 dB. x265 reads them only through
// --lambda-file, into process-wide tables, so every encoder loads the same
// file: written to a temporary file for the duration of encoder_open.
//
// The file goes to the first directory where mkstemp works: $TMPDIR, then
// /tmp and /var/tmp, as Python's tempfile does, so that a stale TMPDIR does
// not stop every encode.
int make_temp_file(std::vector<char> *name, std::string *tried)
{
    std::vector<std::string> dirs;
    if (const char *t = std::getenv("TMPDIR"); t != nullptr && *t)
        dirs.emplace_back(t);
    dirs.emplace_back("/tmp");
    dirs.emplace_back("/var/tmp");
    for (const std::string &dir : dirs) {
        const std::string templ = dir + "/bpg_lambda_XXXXXX";
        name->assign(templ.begin(), templ.end());
        name->push_back(0);
        const int fd = mkstemp(name->data());
        if (fd >= 0)
            return fd;
        *tried += (tried->empty() ? "" : ", ") + dir;
    }
    return -1;
}

bool write_lambda_file(std::string *path, std::string *err)
{
    std::vector<char> name;
    std::string tried;
    const int fd = make_temp_file(&name, &tried);
    if (fd < 0) {
        *err = "could not create a temporary file for x265's lambda tables (tried " + tried + ")";
        return false;
    }
    FILE *f = fdopen(fd, "w");
    if (f == nullptr) {
        close(fd);
        unlink(name.data());
        *err = "could not write x265's lambda tables";
        return false;
    }
    for (int pass = 0; pass < 2; ++pass) {
        for (int qp = 0; qp < 70; ++qp) {
            const double lambda = std::exp2(qp / 6.0 - 2.0);
            std::fprintf(f, "%.17g%c", pass == 0 ? lambda : 0.85 * lambda * lambda,
                         qp == 69 ? '\n' : ' ');
        }
    }
    const bool ok = std::fclose(f) == 0;
    if (!ok) {
        unlink(name.data());
        *err = "could not write x265's lambda tables";
        return false;
    }
    *path = name.data();
    return true;
}

// Applies "name=value:name=value" through x265's own parser.
bool apply_extra(const x265_api *api, x265_param *p, const std::string &extra, std::string *err)
{
    size_t start = 0;
    while (start < extra.size()) {
        size_t end = extra.find(':', start);
        if (end == std::string::npos)
            end = extra.size();
        const std::string item = extra.substr(start, end - start);
        start = end + 1;
        if (item.empty())
            continue;
        const size_t eq = item.find('=');
        const std::string name = item.substr(0, eq);
        const std::string value = eq == std::string::npos ? "1" : item.substr(eq + 1);
        // Only coding-tool options: the rest is fixed by the BPG format or the
        // encoder pool, and some x265 options crash (analysis-save) or block
        // (ctu-info) an encoder used this way.
        static const char *const kAllowed[] = {"rd",
                                               "rdoq-level",
                                               "psy-rd",
                                               "psy-rdoq",
                                               "tskip",
                                               "tskip-fast",
                                               "rd-refine",
                                               "limit-tu",
                                               "tu-intra-depth",
                                               "tu-inter-depth",
                                               "max-tu-size",
                                               "sao",
                                               "selective-sao",
                                               "sao-non-deblock",
                                               "strong-intra-smoothing",
                                               "cbqpoffs",
                                               "crqpoffs",
                                               "deblock",
                                               "rskip",
                                               "fast-intra",
                                               "b-intra",
                                               "early-skip",
                                               "ssim-rd",
                                               "qg-size",
                                               "limit-modes",
                                               "rect",
                                               "amp",
                                               "constrained-intra",
                                               "signhide",
                                               "rdpenalty",
                                               "splitrd-skip",
                                               "cu-lossless"};
        const std::string base = name.rfind("no-", 0) == 0 ? name.substr(3) : name;
        bool allowed = false;
        for (const char *a : kAllowed)
            allowed = allowed || base == a;
        if (!allowed) {
            *err = "x265 parameter '" + name +
                   "' is not accepted: only coding-tool options (rd, rdoq-level, psy-rd, tskip, "
                   "sao, deblock, cbqpoffs, ...) may be set; the rest is fixed by the BPG encoder";
            return false;
        }
        if (api->param_parse(p, name.c_str(), value.c_str()) != 0) {
            *err = "x265 rejected parameter '" + item + "'";
            return false;
        }
    }
    return true;
}

class Pool
{
  public:
    // after_fork: x265's globals still hold the parent's CTU size; reset them
    // before the first encoder opens.
    explicit Pool(bool after_fork = false) : cleanup_first_(after_fork) {}
    X265Lease acquire(const X265Key &key, std::string *err);
    void release(X265Encoder *e);

  private:
    X265Encoder *open(const X265Key &key, const Config &cfg, std::string *err);
    bool close_idle_locked();

    std::mutex mu_;
    std::condition_variable cv_;
    std::mutex open_mu_; // x265 open/close/cleanup touch globals: one at a time
    Config active_ = kNoConfig;
    // The configuration the first thread waiting for a switch wants (or
    // kNoConfig). While one is pending, the active configuration takes no new
    // leases and returned encoders are closed: the switch comes as soon as the
    // leases in flight end, and the waiter goes first then. (Admitting the
    // active configuration meanwhile starved the waiter for tens of seconds.)
    Config pending_ = kNoConfig;
    int open_count_ = 0;
    bool cleanup_first_;
    std::list<X265Encoder *> idle_; // most recently used first
    static constexpr size_t kMaxIdle = 8;
};

Pool *g_pool = nullptr; // never destroyed: encoders may outlive static teardown

// A forked child has none of the threads each open x265 encoder runs, and a
// lock may have been held by a parent thread: it gets a pool of its own and
// leaks the parent's encoders (closing one would wait for its thread).
void forget_encoders_in_child()
{
    forget_x265_records_in_child();
    g_pool = new Pool(true);
}

Pool &pool()
{
    static std::once_flag once;
    std::call_once(once, [] {
        g_pool = new Pool();
        pthread_atfork(nullptr, nullptr, forget_encoders_in_child);
    });
    return *g_pool;
}

// Fills p for an encoder of `key` in configuration `cfg`, with the extra
// parameters `extra` (key.extra, or part of it when finding a culprit).
bool configure(const x265_api *api, x265_param *p, const X265Key &key, const Config &cfg,
               const std::string &extra, std::string *err)
{
    // Compression level n is x265 preset n (0 = ultrafast), tuned for SSIM,
    // as the reference encoder does.
    if (api->param_default_preset(p, x265_preset_names[key.level], "ssim") < 0) {
        *err = "x265 rejected its preset";
        return false;
    }
    p->sourceWidth = key.coded_w;
    p->sourceHeight = key.coded_h;
    p->internalCsp = x265_csp(key.chroma);
    p->internalBitDepth = 8;
    p->fpsNum = 25;
    p->fpsDenom = 1;
    p->rc.rateControlMode = X265_RC_CQP;
    p->rc.qp = 29; // per picture through forceqp
    p->keyframeMax = 1;
    p->keyframeMin = 1;
    p->totalFrames = 0;
    p->bRepeatHeaders = 1;
    p->bEnableRectInter = 1;
    p->bEnableAMP = 1; // the implied SPS says amp_enabled_flag = 1
    p->bEmitInfoSEI = 0;
    p->logLevel = X265_LOG_NONE;
    // One picture in, one picture out, no x265 threads: the caller's thread
    // pool provides the parallelism and every picture is an IDR.
    p->numaPools = "none";
    p->frameNumThreads = 1;
    p->lookaheadDepth = 0;
    p->lookaheadThreads = 0;
    p->bframes = 0;
    p->bOpenGOP = 0;
    p->maxCUSize = static_cast<uint32_t>(cfg.ctu);
    p->minCUSize = static_cast<uint32_t>(cfg.min_cu);
    if (p->maxTUSize > p->maxCUSize)
        p->maxTUSize = p->maxCUSize;
    // Presets assume 64x64 CTUs; x265 refuses TU trees deeper than a smaller
    // CTU allows (log2(ctu) - 2 + 1), e.g. placebo's depth 4 with 16x16.
    uint32_t log2_ctu = 0;
    while ((1u << log2_ctu) < p->maxCUSize)
        ++log2_ctu;
    if (p->tuQTMaxIntraDepth > log2_ctu - 1)
        p->tuQTMaxIntraDepth = log2_ctu - 1;
    if (p->tuQTMaxInterDepth > log2_ctu - 1)
        p->tuQTMaxInterDepth = log2_ctu - 1;
    // Long thin pictures need an HEVC level whose minimum CTU is 32; BPG
    // decoders do not check levels.
    p->bAllowNonConformance = 1;
    return apply_extra(api, p, extra, err);
}

// Whether x265 opens an encoder for key in cfg with the extra parameters
// `extra`. Only used to explain a failure.
bool opens_with(const x265_api *api, const X265Key &key, const Config &cfg,
                const std::string &extra)
{
    x265_param *p = api->param_alloc();
    if (p == nullptr)
        return false;
    std::string ignored;
    bool ok = configure(api, p, key, cfg, extra, &ignored);
    if (ok) {
        X265Opened opened;
        x265_encoder *enc = open_x265(api, p, &opened);
        ok = enc != nullptr;
        if (enc != nullptr)
            close_x265(api, enc, opened);
    }
    api->param_free(p);
    return ok;
}

// Why x265 refused to open an encoder: x265_param_parse takes any value and
// only encoder_open checks them, silently (x265_check_params is internal),
// so the extra parameters are tried one at a time to name the culprit.
std::string explain_refusal(const x265_api *api, const X265Key &key, const Config &cfg)
{
    const std::string size = std::to_string(key.coded_w) + "x" + std::to_string(key.coded_h);
    const std::string generic = "x265 could not open an encoder for " + size;
    if (key.extra.empty() || !opens_with(api, key, cfg, ""))
        return generic;
    size_t start = 0;
    while (start < key.extra.size()) {
        size_t end = key.extra.find(':', start);
        if (end == std::string::npos)
            end = key.extra.size();
        const std::string item = key.extra.substr(start, end - start);
        start = end + 1;
        if (!item.empty() && !opens_with(api, key, cfg, item))
            return "x265 refused parameter '" + item + "' (a value out of its range, or one " +
                   "that does not fit a " + std::to_string(cfg.ctu) + "x" +
                   std::to_string(cfg.ctu) + " CTU) for a " + size + " picture";
    }
    return generic + ": the x265 parameters '" + key.extra + "' do not work together";
}

// x265 reads --lambda-file into process-wide tables (nothing resets them,
// x265_cleanup included), so the first encoder that opens loads them for
// all: later opens skip the temporary file, and the strings x265 3.5 copies
// out of every open's parameters and never frees. Guarded by open_mu_; a
// forked child inherits both the tables and the flag.
bool g_lambda_tables_loaded = false;

X265Encoder *Pool::open(const X265Key &key, const Config &cfg, std::string *err)
{
    std::lock_guard<std::mutex> lk(open_mu_);
    const x265_api *api = x265_api_get(8);
    if (api == nullptr) {
        *err = "x265 has no 8-bit encoder (x265_api_get(8) returned NULL)";
        return nullptr;
    }
    auto *e = new X265Encoder();
    e->key = key;
    e->ctu = cfg.ctu;
    e->min_cu = cfg.min_cu;
    e->api = api;
    e->param = api->param_alloc();
    if (e->param == nullptr) {
        delete e;
        *err = "x265 could not allocate parameters";
        return nullptr;
    }
    x265_param *p = e->param;
    if (!configure(api, p, key, cfg, key.extra, err)) {
        delete e;
        return nullptr;
    }
    std::string lambda_path;
    if (!g_lambda_tables_loaded) {
        if (!write_lambda_file(&lambda_path, err)) {
            delete e;
            return nullptr;
        }
        p->rc.lambdaFileName = lambda_path.c_str();
    }
    e->enc = open_x265(api, p, &e->opened);
    if (!lambda_path.empty()) {
        p->rc.lambdaFileName = nullptr; // read during open only
        unlink(lambda_path.c_str());
        g_lambda_tables_loaded = e->enc != nullptr;
    }
    if (e->enc == nullptr) {
        delete e;
        *err = explain_refusal(api, key, cfg);
        return nullptr;
    }
    e->pic = api->picture_alloc();
    if (e->pic == nullptr) {
        delete e;
        *err = "x265 could not allocate a picture";
        return nullptr;
    }
    api->picture_init(p, e->pic);
    return e;
}

X265Lease Pool::acquire(const X265Key &key, std::string *err)
{
    const Config cfg = config_for(key);
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        const bool switching = pending_ != kNoConfig;
        const bool admit =
            open_count_ == 0 ? !switching || pending_ == cfg : active_ == cfg && !switching;
        if (admit) {
            if (pending_ == cfg) {
                pending_ = kNoConfig;
                cv_.notify_all(); // threads of this configuration may come in too
            }
            // Prefer the encoder this thread used last: its x265 worker thread
            // was woken from here before, which keeps the two on one core.
            const std::thread::id me = std::this_thread::get_id();
            auto pick = idle_.end();
            for (auto it = idle_.begin(); it != idle_.end(); ++it) {
                if ((*it)->key == key && (pick == idle_.end() || (*it)->owner == me)) {
                    pick = it;
                    if ((*it)->owner == me)
                        break;
                }
            }
            if (pick != idle_.end()) {
                X265Encoder *e = *pick;
                idle_.erase(pick);
                e->owner = me;
                return X265Lease(e);
            }
            if (active_ != cfg) {
                // No encoder is open: reset x265's globals for the new sizes.
                std::lock_guard<std::mutex> olk(open_mu_);
                if (active_ != kNoConfig || cleanup_first_) {
                    const x265_api *api = x265_api_get(8);
                    if (api != nullptr)
                        api->cleanup();
                }
                cleanup_first_ = false;
                active_ = cfg;
            }
            ++open_count_;
            lk.unlock();
            X265Encoder *e = open(key, cfg, err);
            if (e != nullptr)
                e->owner = std::this_thread::get_id();
            if (e == nullptr) {
                lk.lock();
                --open_count_;
                cv_.notify_all();
            }
            return X265Lease(e);
        }
        if (active_ != cfg && !switching)
            pending_ = cfg;
        if (close_idle_locked()) {
            cv_.notify_all(); // the pending thread may be able to go now
            continue;
        }
        cv_.wait(lk);
    }
}

bool Pool::close_idle_locked()
{
    if (idle_.empty())
        return false;
    std::lock_guard<std::mutex> olk(open_mu_);
    for (X265Encoder *e : idle_) {
        delete e;
        --open_count_;
    }
    idle_.clear();
    return true;
}

void Pool::release(X265Encoder *e)
{
    std::lock_guard<std::mutex> lk(mu_);
    if (pending_ != kNoConfig || e->broken) {
        // Someone waits to switch CTU sizes: close rather than keep.
        {
            std::lock_guard<std::mutex> olk(open_mu_);
            delete e;
        }
        --open_count_;
        cv_.notify_all();
        return;
    }
    idle_.push_front(e);
    if (idle_.size() > kMaxIdle) {
        X265Encoder *old = idle_.back();
        idle_.pop_back();
        {
            std::lock_guard<std::mutex> olk(open_mu_);
            delete old;
        }
        --open_count_;
        cv_.notify_all();
    }
}

} // namespace

X265Encoder::~X265Encoder()
{
    if (pic != nullptr)
        api->picture_free(pic);
    if (enc != nullptr)
        close_x265(api, enc, opened);
    if (param != nullptr)
        api->param_free(param);
}

void X265Deleter::operator()(X265Encoder *e) const
{
    if (e != nullptr)
        pool().release(e);
}

X265Lease acquire_x265(const X265Key &key, std::string *err) { return pool().acquire(key, err); }

int x265_intra_qp(const x265_param *param, int qp)
{
    // x265's constant-QP mode codes I pictures ipOffset = 6 log2(ipFactor)
    // below the requested QP, truncating qp - ipOffset + 0.5 (the reference
    // encoder's -q 29 gives slice QP 26 this way).
    const double ip_offset = 6.0 * std::log2(param->rc.ipFactor);
    int q = static_cast<int>(qp - ip_offset + 0.5);
    return q < 0 ? 0 : (q > 51 ? 51 : q);
}

} // namespace bpg
