// bpg_encoder: planar YUV or RGB in, a .bpg file out, through x265.
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "bitstream.h"
#include "bpg/bpg.h"
#include "color.h"
#include "format.h"
#include "x265_pool.h"

struct bpg_encoder {
    std::vector<uint8_t> out;
    std::vector<uint8_t> planes; // scratch for the RGB path
    std::string error;
};

namespace bpg
{
namespace
{

bpg_status fail(bpg_encoder *enc, bpg_status s, const std::string &msg)
{
    enc->error = msg;
    return s;
}

bpg_status check_options(bpg_encoder *enc, int width, int height, const bpg_encode_options *o)
{
    if (o == nullptr)
        return fail(enc, BPG_ERR_INVALID_ARGUMENT, "options must not be NULL");
    if (o->qp < 0 || o->qp > 51)
        return fail(enc, BPG_ERR_INVALID_ARGUMENT,
                    "qp must be in 0..51, got " + std::to_string(o->qp));
    if (o->chroma < BPG_CM_GRAY || o->chroma > BPG_CM_444)
        return fail(enc, BPG_ERR_INVALID_ARGUMENT,
                    "chroma must be 0 (gray), 1 (4:2:0), 2 (4:2:2) or 3 (4:4:4), got " +
                        std::to_string(o->chroma));
    if (o->level < 1 || o->level > 9)
        return fail(enc, BPG_ERR_INVALID_ARGUMENT,
                    "level must be in 1..9, got " + std::to_string(o->level));
    if (o->bit_depth != 8)
        return fail(enc, BPG_ERR_UNSUPPORTED,
                    "only bit_depth 8 is supported, got " + std::to_string(o->bit_depth));
    if (width < 1 || height < 1)
        return fail(enc, BPG_ERR_INVALID_ARGUMENT,
                    "image size must be at least 1x1, got " + std::to_string(width) + "x" +
                        std::to_string(height));
    if (width > BPG_MAX_SIDE || height > BPG_MAX_SIDE ||
        static_cast<uint64_t>(width) * static_cast<uint64_t>(height) > BPG_MAX_PIXELS)
        return fail(enc, BPG_ERR_TOO_LARGE,
                    "image " + std::to_string(width) + "x" + std::to_string(height) +
                        " exceeds the size limit");
    return BPG_OK;
}

// Parse x265's SPS for the fields hevc_header carries, and check the rest
// matches what a BPG decoder will assume.
bool hevc_params_from_sps(const uint8_t *nal, size_t size, int chroma, int coded_w, int coded_h,
                          HevcParams *p, std::string *err)
{
    const std::vector<uint8_t> rbsp = unescape_nal(nal + 2, size - 2);
    BitReader br(rbsp.data(), rbsp.size());
    br.get(4);
    if (br.get(3) != 0) {
        *err = "x265 SPS has sub-layers";
        return false;
    }
    br.get(1);
    br.get(32);
    br.get(32);
    br.get(32); // profile_tier_level without sub-layers: 96 bits
    br.get_ue();
    const uint32_t cfi = br.get_ue();
    if (cfi == 3)
        br.get_flag();
    const uint32_t w = br.get_ue(), h = br.get_ue();
    if (br.get_flag()) {
        for (int i = 0; i < 4; ++i)
            br.get_ue();
    }
    const uint32_t bd_luma = br.get_ue(), bd_chroma = br.get_ue();
    br.get_ue(); // log2_max_pic_order_cnt_lsb_minus4: unused by IDR slices
    const bool ordering_all = br.get_flag();
    (void)ordering_all; // one sub-layer: one set either way
    br.get_ue();
    br.get_ue();
    br.get_ue();
    p->log2_min_cb = static_cast<int>(br.get_ue()) + 3;
    p->log2_diff_max_min_cb = static_cast<int>(br.get_ue());
    p->log2_min_tb = static_cast<int>(br.get_ue()) + 2;
    p->log2_diff_max_min_tb = static_cast<int>(br.get_ue());
    br.get_ue(); // inter depth
    p->max_th_depth_intra = static_cast<int>(br.get_ue());
    const bool scaling = br.get_flag();
    br.get_flag(); // amp: irrelevant to intra pictures
    p->sao = br.get_flag();
    p->pcm = br.get_flag();
    if (p->pcm) {
        p->pcm_bits_luma = static_cast<int>(br.get(4)) + 1;
        p->pcm_bits_chroma = static_cast<int>(br.get(4)) + 1;
        p->log2_min_pcm_cb = static_cast<int>(br.get_ue()) + 3;
        p->log2_diff_max_min_pcm_cb = static_cast<int>(br.get_ue());
        p->pcm_loop_filter_disabled = br.get_flag();
    }
    const uint32_t num_rps = br.get_ue();
    const bool long_term = br.get_flag();
    br.get_flag(); // temporal mvp: irrelevant to IDR slices
    p->strong_intra_smoothing = br.get_flag();
    if (br.failed()) {
        *err = "could not parse x265's SPS";
        return false;
    }
    if (static_cast<int>(cfi) != chroma || static_cast<int>(w) != coded_w ||
        static_cast<int>(h) != coded_h || bd_luma != 0 || bd_chroma != 0 || scaling ||
        num_rps != 0 || long_term || (1 << p->log2_min_cb) > coded_w) {
        *err = "x265's SPS does not match what a BPG header can express";
        return false;
    }
    return true;
}

bpg_status encode_planes(bpg_encoder *enc, const uint8_t *yuv, int width, int height,
                         const bpg_encode_options *o)
{
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, o->chroma);
    X265Key key;
    key.coded_w = l.coded_w;
    key.coded_h = l.coded_h;
    key.chroma = o->chroma;
    key.level = o->level;
    key.pad_unit = bpg_cm_pad_unit(width, height);
    if (o->x265_params != nullptr)
        key.extra = o->x265_params;
    std::string err;
    X265Lease x = acquire_x265(key, &err);
    if (!x)
        return fail(enc, BPG_ERR_ENCODER, err);

    x265_picture *pic = x->pic;
    pic->planes[0] = const_cast<uint8_t *>(yuv);
    pic->stride[0] = l.coded_w;
    pic->planes[1] = const_cast<uint8_t *>(yuv + l.y_size);
    pic->planes[2] = const_cast<uint8_t *>(yuv + l.y_size + l.c_size);
    pic->stride[1] = pic->stride[2] = l.coded_cw;
    pic->bitDepth = 8;
    pic->colorSpace = x->param->internalCsp;
    pic->sliceType = X265_TYPE_AUTO;
    pic->forceqp = x265_intra_qp(x->param, o->qp) + 1;

    x265_nal *nals = nullptr;
    uint32_t n = 0;
    const int r = x->api->encoder_encode(x->enc, &nals, &n, pic, nullptr);
    if (r < 0 || n == 0) {
        x->broken = true;
        return fail(enc, BPG_ERR_ENCODER,
                    "x265 produced no picture (status " + std::to_string(r) + ")");
    }

    Header h;
    h.pixel_format = o->chroma; // 0..3 are the centred-siting formats
    h.bit_depth = 8;
    h.width = static_cast<uint32_t>(width);
    h.height = static_cast<uint32_t>(height);
    std::vector<std::vector<uint8_t>> kept;
    PpsInfo pps;
    bool have_sps = false;
    for (uint32_t i = 0; i < n; ++i) {
        const uint8_t *d = nals[i].payload;
        size_t s = nals[i].sizeBytes;
        // Strip x265's start code.
        while (s > 0 && *d == 0) {
            ++d;
            --s;
        }
        if (s > 0 && *d == 1) {
            ++d;
            --s;
        }
        if (s < 3)
            continue;
        const int type = static_cast<int>(nals[i].type);
        if (type == NAL_UNIT_VPS)
            continue;
        if (type == NAL_UNIT_SPS) {
            if (!hevc_params_from_sps(d, s, o->chroma, l.coded_w, l.coded_h, &h.hevc, &err)) {
                x->broken = true;
                return fail(enc, BPG_ERR_ENCODER, err);
            }
            have_sps = true;
            continue;
        }
        if (type == NAL_UNIT_PPS)
            pps = parse_pps(d, s);
        if (type <= NAL_UNIT_CODED_SLICE_CRA)
            kept.push_back(canonicalize_slice(d, s, pps, h.hevc.sao, o->chroma != BPG_CM_GRAY));
        else
            kept.emplace_back(d, d + s);
    }
    if (!have_sps || kept.empty()) {
        x->broken = true;
        return fail(enc, BPG_ERR_ENCODER, "x265 output lacks an SPS or picture data");
    }
    enc->out = write_header(h);
    for (size_t i = 0; i < kept.size(); ++i) {
        if (i > 0) {
            const uint8_t sc[3] = {0, 0, 1};
            enc->out.insert(enc->out.end(), sc, sc + 3);
        }
        enc->out.insert(enc->out.end(), kept[i].begin(), kept[i].end());
    }
    return BPG_OK;
}

} // namespace
} // namespace bpg

extern "C" {

void bpg_encode_options_init(bpg_encode_options *opts)
{
    if (opts == nullptr)
        return;
    opts->qp = 29;
    opts->chroma = BPG_CM_420;
    opts->level = 8;
    opts->bit_depth = 8;
    opts->x265_params = nullptr;
}

bpg_encoder *bpg_encoder_new(void) { return new (std::nothrow) bpg_encoder(); }

void bpg_encoder_free(bpg_encoder *enc) { delete enc; }

const char *bpg_encoder_error(const bpg_encoder *enc) { return enc ? enc->error.c_str() : ""; }

bpg_status bpg_encode_yuv(bpg_encoder *enc, const uint8_t *yuv, size_t yuv_size, int width,
                          int height, const bpg_encode_options *opts, const uint8_t **out,
                          size_t *out_size)
{
    if (enc == nullptr)
        return BPG_ERR_INVALID_ARGUMENT;
    enc->error.clear();
    if (out == nullptr || out_size == nullptr || yuv == nullptr)
        return bpg::fail(enc, BPG_ERR_INVALID_ARGUMENT, "yuv, out and out_size must not be NULL");
    bpg_status s = bpg::check_options(enc, width, height, opts);
    if (s != BPG_OK)
        return s;
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, opts->chroma);
    if (yuv_size != l.total)
        return bpg::fail(enc, BPG_ERR_INVALID_ARGUMENT,
                         "yuv buffer holds " + std::to_string(yuv_size) +
                             " bytes, the layout needs " + std::to_string(l.total));
    try {
        s = bpg::encode_planes(enc, yuv, width, height, opts);
    } catch (const std::bad_alloc &) {
        return bpg::fail(enc, BPG_ERR_NO_MEMORY, "out of memory");
    }
    if (s == BPG_OK) {
        *out = enc->out.data();
        *out_size = enc->out.size();
    }
    return s;
}

bpg_status bpg_encode_rgb(bpg_encoder *enc, const uint8_t *rgb, int width, int height,
                          ptrdiff_t stride, const bpg_encode_options *opts, const uint8_t **out,
                          size_t *out_size)
{
    if (enc == nullptr)
        return BPG_ERR_INVALID_ARGUMENT;
    enc->error.clear();
    if (rgb == nullptr)
        return bpg::fail(enc, BPG_ERR_INVALID_ARGUMENT, "rgb must not be NULL");
    bpg_status s = bpg::check_options(enc, width, height, opts);
    if (s != BPG_OK)
        return s;
    if (stride < 3 * static_cast<ptrdiff_t>(width))
        return bpg::fail(enc, BPG_ERR_INVALID_ARGUMENT, "stride must be at least 3 * width");
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, opts->chroma);
    try {
        enc->planes.resize(l.total);
    } catch (const std::bad_alloc &) {
        return bpg::fail(enc, BPG_ERR_NO_MEMORY, "out of memory");
    }
    bpg::rgb_to_planes(rgb, width, height, stride, opts->chroma, enc->planes.data());
    return bpg_encode_yuv(enc, enc->planes.data(), l.total, width, height, opts, out, out_size);
}

} // extern "C"
