#include "x265_open.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

// What libx265 3.5 loses, and how it is given back (docs/x265.md):
//
// 1. x265_encoder_open allocates three x265_param: the encoder's own (m_param),
//    m_latestParam and a scratch "zoneParam", and x265_copy_params strdup()s
//    every string field into each. zoneParam is then overwritten by a memcpy of
//    m_param and m_latestParam is copied over again, so after a successful open
//    the zoneParam struct and the first strings of both copies are unreachable,
//    and close never frees m_latestParam's strings: about 1.3 KB per open.
// 2. Each frame encoder's row filters allocate SAO buffers at open and free them
//    at close only if the last frame used SAO: with SAO off (levels 0 and 1, or
//    "no-sao") 3 KB and more per open, growing with the width.
//
// Encoding photos of many sizes opens an encoder per size, so both grew without
// bound. libx265.so binds its own calls (-Bsymbolic): the repair needs the
// static library, linked with --wrap for x265_param_alloc, strdup, x265_malloc
// and SAO::create/destroy. During an open on this thread the wraps record the
// params, the strings and each SAO's buffers; what no live object refers to is
// freed after the open, and the SAO buffers nobody destroyed after the close.
//
// The pool runs opens and closes one at a time (Pool::open_mu_), so the SAO
// records cannot be confused by an open that reuses a closed SAO's address.

#if defined(BPG_X265_REPAIR) && X265_BUILD != 199
#error "x265.h is not x265 3.5 (X265_BUILD 199), whose losses this file repairs"
#endif

namespace bpg
{
namespace
{

#if defined(BPG_X265_REPAIR)
constexpr bool kRepair = true;
#else
constexpr bool kRepair = false;
#endif

// What an open on this thread allocated, in vectors bounded by the capacity
// open_x265 reserves (an open that needs more is left alone).
struct Capture {
    x265_param *params[3] = {};
    int n_params = 0;
    std::vector<char *> strings;
    std::vector<void *> sao_buffers; // of the SAO::create running now
    std::vector<std::pair<void *, std::vector<void *>>> saos;
    bool in_sao_create = false;
    bool overflow = false;
};
thread_local Capture *t_capture = nullptr;

// SAO object -> the buffers its create allocated, until destroy or the close.
// Never destroyed, and replaced in a forked child (its lock may be held).
struct SaoRecords {
    std::mutex mu;
    std::unordered_map<void *, std::vector<void *>> buffers;
};
SaoRecords *g_sao = new SaoRecords();

// The string fields x265_copy_params strdup()s (x265 3.5, common/param.cpp).
std::vector<const char *> strings_of(const x265_param *p, bool with_scaling_lists)
{
    std::vector<const char *> s = {p->numaPools,
                                   p->csvfn,
                                   p->analysisReuseFileName,
                                   p->rc.statFileName,
                                   p->rc.lambdaFileName,
                                   p->masteringDisplayColorVolume,
                                   p->toneMapFile,
                                   p->analysisSave,
                                   p->analysisLoad,
                                   p->naluFile};
    if (with_scaling_lists)
        s.push_back(p->scalingLists);
    return s;
}

bool contains(const std::vector<const char *> &v, const char *s)
{
    return std::find(v.begin(), v.end(), s) != v.end();
}

template <typename T> void push_bounded(Capture *c, std::vector<T> *v, T x)
{
    if (v->size() < v->capacity())
        v->push_back(x);
    else
        c->overflow = true;
}

} // namespace
} // namespace bpg

#if defined(BPG_X265_REPAIR)
// x265::x265_malloc(size_t), x265::SAO::create(x265_param*, int), x265::SAO::destroy(int):
// member functions take `this` first.
#define BPG_X265_MALLOC _ZN4x26511x265_mallocEm
#define BPG_SAO_CREATE _ZN4x2653SAO6createEP10x265_parami
#define BPG_SAO_DESTROY _ZN4x2653SAO7destroyEi
#define BPG_CAT(a, b) a##b
#define BPG_WRAP(name) BPG_CAT(__wrap_, name)
#define BPG_REAL(name) BPG_CAT(__real_, name)

extern "C" {
x265_param *__real_x265_param_alloc();
char *__real_strdup(const char *s);
void *BPG_REAL(BPG_X265_MALLOC)(size_t size);
bool BPG_REAL(BPG_SAO_CREATE)(void *self, x265_param *param, int init_common);
void BPG_REAL(BPG_SAO_DESTROY)(void *self, int destroy_common);

x265_param *__wrap_x265_param_alloc()
{
    x265_param *p = __real_x265_param_alloc();
    bpg::Capture *c = bpg::t_capture;
    if (c != nullptr) {
        if (c->n_params < 3)
            c->params[c->n_params] = p;
        ++c->n_params;
    }
    return p;
}

char *__wrap_strdup(const char *s)
{
    char *d = __real_strdup(s);
    bpg::Capture *c = bpg::t_capture;
    if (c != nullptr && d != nullptr)
        bpg::push_bounded(c, &c->strings, d);
    return d;
}

void *BPG_WRAP(BPG_X265_MALLOC)(size_t size)
{
    void *p = BPG_REAL(BPG_X265_MALLOC)(size);
    bpg::Capture *c = bpg::t_capture;
    if (c != nullptr && c->in_sao_create && p != nullptr)
        bpg::push_bounded(c, &c->sao_buffers, p);
    return p;
}

bool BPG_WRAP(BPG_SAO_CREATE)(void *self, x265_param *param, int init_common)
{
    bpg::Capture *c = bpg::t_capture;
    if (c == nullptr)
        return BPG_REAL(BPG_SAO_CREATE)(self, param, init_common);
    c->sao_buffers.clear();
    c->in_sao_create = true;
    const bool ok = BPG_REAL(BPG_SAO_CREATE)(self, param, init_common);
    c->in_sao_create = false;
    if (c->saos.size() < c->saos.capacity())
        c->saos.emplace_back(self, c->sao_buffers);
    else
        c->overflow = true;
    return ok;
}

void BPG_WRAP(BPG_SAO_DESTROY)(void *self, int destroy_common)
{
    BPG_REAL(BPG_SAO_DESTROY)(self, destroy_common);
    std::lock_guard<std::mutex> lk(bpg::g_sao->mu);
    bpg::g_sao->buffers.erase(self);
}
}
#endif

namespace bpg
{

bool x265_repairs_open_leak() { return kRepair; }

x265_encoder *open_x265(const x265_api *api, x265_param *p, X265Opened *opened)
{
    *opened = X265Opened{};
    if (!kRepair)
        return api->encoder_open(p);
    Capture capture;
    capture.strings.reserve(64);     // 4 copies of at most 11 strings, and room to spare
    capture.sao_buffers.reserve(32); // at most 12 per SAO::create
    capture.saos.reserve(1024);      // one per CTU row of each frame encoder
    t_capture = &capture;
    x265_encoder *enc = api->encoder_open(p);
    t_capture = nullptr;
    if (capture.overflow || capture.n_params != 3)
        return enc; // not the open this repair knows: leave its memory alone
    if (enc == nullptr) {
        // The failure path frees the three structs, never their strings.
        for (char *s : capture.strings)
            free(s);
        return nullptr;
    }
    x265_param *param = capture.params[0], *latest = capture.params[1];
    x265_param *scratch = capture.params[2];
    std::vector<const char *> live = strings_of(param, true);
    for (const char *s : strings_of(latest, true))
        live.push_back(s);
    for (char *s : capture.strings)
        if (!contains(live, s))
            free(s);
    // The scratch copy shares m_param's zones (a memcpy): free the struct alone.
    scratch->rc.zones = nullptr;
    scratch->rc.zoneCount = 0;
    scratch->rc.zonefileCount = 0;
    api->param_free(scratch);
    opened->param = param;
    opened->latest = latest;
    std::lock_guard<std::mutex> lk(g_sao->mu);
    for (auto &sao : capture.saos) {
        opened->saos.push_back(sao.first);
        g_sao->buffers[sao.first] = std::move(sao.second);
    }
    return enc;
}

void close_x265(const x265_api *api, x265_encoder *enc, const X265Opened &opened)
{
    if (opened.latest == nullptr) {
        api->encoder_close(enc);
        return;
    }
    // Encoder::destroy frees m_param's strings and m_latestParam's scaling
    // list file name, nothing else of m_latestParam's.
    std::vector<const char *> owned = strings_of(opened.param, true);
    std::vector<const char *> orphans = strings_of(opened.latest, false);
    api->encoder_close(enc);
    for (const char *s : orphans)
        if (s != nullptr && !contains(owned, s))
            free(const_cast<char *>(s));
    // The SAO buffers of row filters whose last frame had SAO off.
    std::lock_guard<std::mutex> lk(g_sao->mu);
    for (void *sao : opened.saos) {
        auto it = g_sao->buffers.find(sao);
        if (it == g_sao->buffers.end())
            continue;
        for (void *b : it->second)
            free(b);
        g_sao->buffers.erase(it);
    }
}

void forget_x265_records_in_child()
{
    g_sao = new SaoRecords(); // the parent's encoders are never closed here
}

} // namespace bpg
