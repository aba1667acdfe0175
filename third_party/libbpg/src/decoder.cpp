// bpg_decoder: a .bpg file in, planar YUV or RGB out, through libde265.
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <libde265/de265.h>

#include "bitstream.h"
#include "bpg/bpg.h"
#include "color.h"
#include "format.h"

struct bpg_decoder {
    de265_decoder_context *ctx = nullptr;
    std::vector<uint8_t> planes;
    std::vector<uint8_t> annexb;
    std::string error;
    bool discard_context = false; // the last decode failed inside libde265
    bool verify = true;           // see bpg_decoder_set_verify()
    std::vector<uint8_t> verify_planes;
    ~bpg_decoder()
    {
        if (ctx != nullptr)
            de265_free_decoder(ctx);
    }
};

namespace bpg
{
namespace
{

bpg_status fail(bpg_decoder *dec, bpg_status s, const std::string &msg)
{
    dec->error = msg;
    return s;
}

void fill_info(const Header &h, bpg_info *info)
{
    if (info == nullptr)
        return;
    std::memset(info, 0, sizeof(*info));
    info->width = static_cast<int>(h.width);
    info->height = static_cast<int>(h.height);
    info->pixel_format = h.pixel_format;
    info->chroma = chroma_of_pixel_format(h.pixel_format);
    info->bit_depth = h.bit_depth;
    info->color_space = h.color_space;
    info->has_alpha = h.alpha1;
    info->limited_range = h.limited_range;
    info->animation = h.animation;
    info->has_extensions = h.extensions;
    info->log2_min_cb_size = h.hevc.log2_min_cb;
    info->log2_max_cb_size = h.hevc.log2_min_cb + h.hevc.log2_diff_max_min_cb;
    info->log2_min_tb_size = h.hevc.log2_min_tb;
    info->log2_max_tb_size = h.hevc.log2_min_tb + h.hevc.log2_diff_max_min_tb;
    info->max_transform_hierarchy_depth_intra = h.hevc.max_th_depth_intra;
    info->sao = h.hevc.sao;
    info->pcm = h.hevc.pcm;
    info->strong_intra_smoothing = h.hevc.strong_intra_smoothing;
    info->hevc_data_offset = h.hevc_data_offset;
    info->hevc_data_size = h.hevc_data_size;
}

// Header checks shared by info and decode: what this library can decode.
bpg_status check_header(const Header &h, std::string *err)
{
    if (h.width > BPG_MAX_SIDE || h.height > BPG_MAX_SIDE ||
        static_cast<uint64_t>(h.width) * h.height > BPG_MAX_PIXELS) {
        *err = "picture " + std::to_string(h.width) + "x" + std::to_string(h.height) +
               " exceeds the size limit";
        return BPG_ERR_TOO_LARGE;
    }
    if (h.hevc_data_size > static_cast<size_t>(INT_MAX)) {
        *err = "HEVC data of " + std::to_string(h.hevc_data_size) +
               " bytes: libde265 takes NAL units of at most 2 GiB";
        return BPG_ERR_TOO_LARGE;
    }
    if (h.animation) {
        *err = "animated BPG is not supported";
        return BPG_ERR_UNSUPPORTED;
    }
    if (h.alpha2 && !h.alpha1) {
        *err = "CMYK BPG is not supported";
        return BPG_ERR_UNSUPPORTED;
    }
    if (h.bit_depth != 8) {
        *err = "only 8-bit BPG is supported, this file is " + std::to_string(h.bit_depth) + "-bit";
        return BPG_ERR_UNSUPPORTED;
    }
    if (h.color_space != 0 || h.limited_range) {
        *err = "only full-range YCbCr BT.601 BPG is supported";
        return BPG_ERR_UNSUPPORTED;
    }
    if (h.pixel_format > 3) {
        *err = "co-sited (MPEG-2) chroma siting is not supported";
        return BPG_ERR_UNSUPPORTED;
    }
    return BPG_OK;
}

void append_start_code(std::vector<uint8_t> &out, const uint8_t *nal, size_t size)
{
    const uint8_t sc[4] = {0, 0, 0, 1};
    out.insert(out.end(), sc, sc + 4);
    out.insert(out.end(), nal, nal + size);
}

// The first libde265 warning pending on ctx (DE265_OK if none); drains them all.
de265_error drain_warnings(de265_decoder_context *ctx)
{
    de265_error first = DE265_OK;
    for (int i = 0; i < 1000; ++i) {
        const de265_error w = de265_get_warning(ctx);
        if (w == DE265_OK)
            break;
        if (first == DE265_OK)
            first = w;
    }
    return first;
}

// Coding tree units of the colour plane's picture.
uint64_t ctu_count(const Header &h)
{
    const uint64_t ctb = uint64_t{1} << (h.hevc.log2_min_cb + h.hevc.log2_diff_max_min_cb);
    return ((h.width + ctb - 1) / ctb) * ((h.height + ctb - 1) / ctb);
}

// The colour plane's NAL units, checked: what libde265 would silently skip,
// or take from an earlier file on the same context, is refused here.
bpg_status select_nals(const Header &h, const uint8_t *data, std::vector<NalRef> *out,
                       std::string *err)
{
    const std::vector<NalRef> nals = split_nals(data + h.hevc_data_offset, h.hevc_data_size, false);
    const NalRef *pps = nullptr, *first_vcl = nullptr;
    uint64_t slice_bytes = 0;
    for (const NalRef &n : nals) {
        if (n.size < 3 || (n.data[0] & 0x80)) {
            *err = "hevc_data holds a malformed NAL unit";
            return BPG_ERR_CORRUPT;
        }
        if (n.layer() != 0)
            continue; // the alpha plane
        const int t = n.type();
        if ((n.data[1] & 7) != 1) {
            *err = "hevc_data holds a NAL unit of a temporal sub-layer";
            return BPG_ERR_CORRUPT;
        }
        if (t > 21 && (t < 34 || t > 40)) {
            *err = "hevc_data holds a NAL unit of unexpected type " + std::to_string(t);
            return BPG_ERR_CORRUPT;
        }
        if (t == 34 && first_vcl == nullptr)
            pps = &n;
        if (t <= 21) {
            // first_slice_segment_in_pic_flag: BPG holds one picture. A second
            // one would be decoded before the first is finished (see
            // run_libde265), so it is refused here.
            if (first_vcl != nullptr && (n.data[2] & 0x80)) {
                *err = "hevc_data holds more than one picture";
                return BPG_ERR_CORRUPT;
            }
            if (first_vcl == nullptr)
                first_vcl = &n;
            slice_bytes += n.size;
        }
        out->push_back(n);
    }
    if (first_vcl == nullptr) {
        *err = "hevc_data holds no picture data";
        return BPG_ERR_CORRUPT;
    }
    if (pps == nullptr) {
        *err = "hevc_data has no picture parameter set before the picture";
        return BPG_ERR_CORRUPT;
    }
    // The declared size must be plausible for the data before anything is
    // allocated: at least one bit of slice data per coding tree unit. Every
    // CTU of an intra picture holds a coding unit (its top-left minimum-size
    // block lies inside the coded picture), and every intra coding unit codes
    // mpm_idx (>= 1 bypass bin), rem_intra_luma_pred_mode (5 bypass bins) or
    // PCM samples (raw bits); a CABAC bypass bin always takes one bit of the
    // bitstream. (x265 spends 2.7 bits per CTU on a flat picture at QP 51,
    // headers included.) A 31-byte file declaring 8192x8192 would otherwise
    // cost seconds and 500 MB.
    const uint64_t ctus = ctu_count(h);
    if (slice_bytes * 8 < ctus) {
        *err = "the header declares a " + std::to_string(h.width) + "x" + std::to_string(h.height) +
               " picture (" + std::to_string(ctus) +
               " coding tree units) but the file holds only " + std::to_string(slice_bytes) +
               " bytes of slice data: every coding tree unit needs at least one bit";
        return BPG_ERR_CORRUPT;
    }
    // A slice cut inside its header would decode to nothing, silently.
    const PpsInfo info = parse_pps(pps->data, pps->size);
    if (info.ok) {
        const std::vector<uint8_t> rbsp = unescape_nal(first_vcl->data + 2, first_vcl->size - 2);
        const int chroma = chroma_of_pixel_format(h.pixel_format);
        if (!scan_slice_header(rbsp, info, h.hevc.sao, chroma != BPG_CM_GRAY).ok) {
            *err = "the first slice header is truncated or invalid";
            return BPG_ERR_CORRUPT;
        }
    }
    return BPG_OK;
}

// libde265 leaves the coding tree blocks no slice reached (a slice ended
// early, or the header claims a larger picture than the slices cover) as
// they were in its picture buffer. It decodes into buffers from us (see
// run_libde265), filled with a pattern no decoder output of a real picture
// matches over a whole block (a 0/255 checkerboard of luma, chroma 0: out of
// the RGB gamut too), so such blocks are found whatever the memory held
// before, and nothing of an earlier picture can be in them.
uint8_t scrub_luma(int x, int y) { return ((x ^ y) & 1) ? 255 : 0; }

// de265_image_allocation::get_buffer: one scrubbed plane per colour component.
int get_scrubbed_buffer(de265_decoder_context * /*ctx*/, de265_image_spec *spec, de265_image *img,
                        void * /*userdata*/)
{
    const bool mono = spec->format == de265_image_format_mono8;
    const int sx =
        spec->format == de265_image_format_YUV420P8 || spec->format == de265_image_format_YUV422P8
            ? 1
            : 0;
    const int sy = spec->format == de265_image_format_YUV420P8 ? 1 : 0;
    const int align = std::max(spec->alignment, 64);
    // The pattern is laid out in the coordinates of the cropped picture.
    const int phase = (spec->crop_left ^ spec->crop_top) & 1;
    uint8_t *planes[3] = {nullptr, nullptr, nullptr};
    int strides[3] = {0, 0, 0};
    for (int c = 0; c < (mono ? 1 : 3); ++c) {
        const int w = c == 0 ? spec->width : (spec->width + sx) >> sx;
        const int h = c == 0 ? spec->height : (spec->height + sy) >> sy;
        const int bytes = (de265_get_bits_per_pixel(img, c) + 7) / 8;
        strides[c] = (w * bytes + align - 1) / align * align;
        // libde265's SIMD code may read a little past the last row.
        const size_t size = static_cast<size_t>(strides[c]) * h + align;
        planes[c] = static_cast<uint8_t *>(std::aligned_alloc(align, size));
        if (planes[c] == nullptr) {
            for (uint8_t *p : planes)
                std::free(p);
            return 0;
        }
        std::memset(planes[c], 0, size);
        for (int y = 0; c == 0 && y < h; ++y) {
            uint8_t *row = planes[c] + static_cast<size_t>(y) * strides[c];
            for (int x = 0; x < strides[c]; ++x)
                row[x] = scrub_luma(x, y + phase);
        }
    }
    for (int c = 0; c < 3; ++c)
        de265_set_image_plane(img, c, planes[c], strides[c], planes[c]);
    return 1;
}

void release_scrubbed_buffer(de265_decoder_context * /*ctx*/, de265_image *img, void * /*userdata*/)
{
    for (int c = 0; c < 3; ++c)
        std::free(de265_get_image_plane_user_data(img, c));
}

// True when some coding tree block still holds the scrub pattern. Only the
// inside of each block is compared: the deblocking filter of a decoded
// neighbour may change up to 3 luma and 1 chroma samples next to their common
// edge (the checkerboard turns luma filtering off, not chroma's). SAO leaves
// the block alone: its parameters are cleared for each picture.
bool has_undecoded_block(const de265_image *img, const Header &h, int chroma)
{
    const int ctb = 1 << (h.hevc.log2_min_cb + h.hevc.log2_diff_max_min_cb);
    const int sx = (chroma == BPG_CM_420 || chroma == BPG_CM_422) ? 1 : 0;
    const int sy = chroma == BPG_CM_420 ? 1 : 0;
    const int nplanes = chroma == BPG_CM_GRAY ? 1 : 3;
    const int w = de265_get_image_width(img, 0), ht = de265_get_image_height(img, 0);
    int stride[3] = {0, 0, 0};
    const uint8_t *plane[3] = {nullptr, nullptr, nullptr};
    for (int c = 0; c < nplanes; ++c)
        plane[c] = de265_get_image_plane(img, c, &stride[c]);
    auto scrubbed = [&](int c, int x0, int y0, int x1, int y1) {
        for (int y = y0; y < y1; ++y)
            for (int x = x0; x < x1; ++x)
                if (plane[c][static_cast<ptrdiff_t>(y) * stride[c] + x] !=
                    (c == 0 ? scrub_luma(x, y) : 0))
                    return false;
        return true;
    };
    // Blocks are at least 8x8 luma samples (min CB), so the insides are not empty.
    constexpr int kLumaEdge = 3, kChromaEdge = 1;
    for (int by = 0; by < ht; by += ctb) {
        for (int bx = 0; bx < w; bx += ctb) {
            const int ex = bx + ctb < w ? bx + ctb : w, ey = by + ctb < ht ? by + ctb : ht;
            bool all = scrubbed(0, bx + kLumaEdge, by + kLumaEdge, ex - kLumaEdge, ey - kLumaEdge);
            for (int c = 1; c < nplanes && all; ++c)
                all = scrubbed(c, (bx >> sx) + kChromaEdge, (by >> sy) + kChromaEdge,
                               (ex >> sx) - kChromaEdge, (ey >> sy) - kChromaEdge);
            if (all)
                return true;
        }
    }
    return false;
}

// Calls de265_decode until it wants more input, fails, has a picture or
// (keep_pending > 0) has that many NAL units left. Bounded: each call
// consumes a NAL unit or produces a picture.
de265_error drive(de265_decoder_context *ctx, size_t max_calls, int keep_pending,
                  const de265_image **img)
{
    int more = 1;
    for (size_t i = 0; more && *img == nullptr && i < max_calls; ++i) {
        if (keep_pending > 0 && de265_get_number_of_NAL_units_pending(ctx) <= keep_pending)
            break;
        const de265_error e = de265_decode(ctx, &more);
        if (e == DE265_ERROR_WAITING_FOR_INPUT_DATA)
            break;
        if (!de265_isOK(e))
            return e;
        *img = de265_get_next_picture(ctx);
    }
    return DE265_OK;
}

// One decode of the picture by libde265, into buffers from
// get_scrubbed_buffer. libde265 1.0 takes the buffer of a picture with SAO
// from its own allocator, which hands back whatever the memory held before
// (the previous picture of this thread, typically), and runs SAO in place.
// So SAO is off while the slices are read (the picture is then allocated
// through our functions) and on again before libde265 runs its loop filters
// on the finished picture; the slice syntax does not depend on the switch.
// libde265 finishes a picture as soon as its NAL queue runs dry once the
// stream has been flushed (which stays so after de265_reset), so an end of
// sequence NAL unit after the slices keeps the picture open until SAO is on.
bpg_status run_libde265(bpg_decoder *dec, const Header &h, const std::vector<NalRef> &nals,
                        const de265_image **out, std::string *err)
{
    de265_decoder_context *ctx = dec->ctx;
    de265_reset(ctx);
    drain_warnings(ctx); // left over from an earlier file
    de265_set_parameter_bool(ctx, DE265_DECODER_PARAM_DISABLE_SAO, 1);
    const std::vector<uint8_t> vps = make_vps(h), sps = make_sps(h, false);
    const uint8_t end_of_sequence[2] = {36 << 1, 1};
    de265_push_NAL(ctx, vps.data(), static_cast<int>(vps.size()), 0, nullptr);
    de265_push_NAL(ctx, sps.data(), static_cast<int>(sps.size()), 0, nullptr);
    for (const NalRef &n : nals)
        de265_push_NAL(ctx, n.data, static_cast<int>(n.size), 0, nullptr);
    de265_push_NAL(ctx, end_of_sequence, 2, 0, nullptr);
    const de265_image *img = nullptr;
    const size_t max_calls = 4 * nals.size() + 64;
    de265_error failure = drive(ctx, max_calls, 1, &img);
    de265_set_parameter_bool(ctx, DE265_DECODER_PARAM_DISABLE_SAO, 0);
    if (img != nullptr ||
        (failure == DE265_OK && de265_get_number_of_NAL_units_pending(ctx) != 1)) {
        // Finished while SAO was off, or stalled before the last slice.
        dec->discard_context = true;
        *err = "libde265 did not decode the picture in one piece";
        return BPG_ERR_DECODER;
    }
    if (failure == DE265_OK) {
        de265_flush_data(ctx);
        failure = drive(ctx, max_calls, 0, &img);
    }
    if (img == nullptr)
        img = de265_get_next_picture(ctx);
    const de265_error warn = drain_warnings(ctx);
    if (failure == DE265_OK)
        failure = warn;
    if (failure != DE265_OK || img == nullptr) {
        // Nothing of a context that failed is worth keeping: start the next
        // file on a new one.
        dec->discard_context = true;
        if (failure == DE265_OK) {
            *err = "libde265 produced no picture (truncated or corrupt data)";
            return BPG_ERR_DECODER;
        }
        *err = std::string("libde265: ") + de265_get_error_text(failure);
        return BPG_ERR_CORRUPT;
    }
    // A picture in a buffer of libde265's own could hold an earlier image
    // wherever the slices did not reach: never let one out.
    if (de265_get_image_plane_user_data(img, 0) == nullptr) {
        dec->discard_context = true;
        *err = "libde265 decoded into a buffer of its own, which this library cannot check";
        return BPG_ERR_DECODER;
    }
    *out = img;
    return BPG_OK;
}

// One decode of the colour plane into `planes` (layout of the header's size).
// *undecoded: whether some coding tree block was never reached; the caller
// refuses the picture then (after verification, whose message is sharper).
bpg_status decode_once(bpg_decoder *dec, const Header *h, const std::vector<NalRef> &nals,
                       std::vector<uint8_t> &planes, bool *undecoded)
{
    std::string err;
    bpg_status s;
    const int chroma = chroma_of_pixel_format(h->pixel_format);
    const int width = static_cast<int>(h->width), height = static_cast<int>(h->height);
    const int nplanes = chroma == BPG_CM_GRAY ? 1 : 3;

    if (dec->ctx != nullptr && dec->discard_context) {
        de265_free_decoder(dec->ctx);
        dec->ctx = nullptr;
    }
    if (dec->ctx == nullptr) {
        dec->discard_context = false;
        dec->ctx = de265_new_decoder();
        if (dec->ctx == nullptr)
            return fail(dec, BPG_ERR_NO_MEMORY, "libde265 could not create a decoder");
        de265_image_allocation scrubbed = {get_scrubbed_buffer, release_scrubbed_buffer};
        de265_set_image_allocation_functions(dec->ctx, &scrubbed, nullptr);
        // Faulty pictures are returned too: the checks below say what is wrong.
        de265_set_parameter_bool(dec->ctx, DE265_DECODER_PARAM_SUPPRESS_FAULTY_PICTURES, 0);
    }
    const de265_image *img = nullptr;
    s = run_libde265(dec, *h, nals, &img, &err);
    if (s != BPG_OK)
        return fail(dec, s, err);

    const de265_chroma dc = de265_get_chroma_format(img);
    const int want = chroma == BPG_CM_GRAY  ? de265_chroma_mono
                     : chroma == BPG_CM_420 ? de265_chroma_420
                     : chroma == BPG_CM_422 ? de265_chroma_422
                                            : de265_chroma_444;
    if (static_cast<int>(dc) != want || de265_get_bits_per_pixel(img, 0) != 8) {
        return fail(dec, BPG_ERR_CORRUPT, "decoded picture does not match the header's format");
    }
    *undecoded = has_undecoded_block(img, *h, chroma);
    const bpg_cm_layout l = bpg_cm_make_layout(width, height, chroma);
    try {
        planes.resize(l.total);
    } catch (const std::bad_alloc &) {
        return fail(dec, BPG_ERR_NO_MEMORY, "out of memory");
    }
    for (int c = 0; c < nplanes; ++c) {
        const int rw = c == 0 ? width : l.chroma_w, rh = c == 0 ? height : l.chroma_h;
        const int pw = c == 0 ? l.coded_w : l.coded_cw, ph = c == 0 ? l.coded_h : l.coded_ch;
        int stride = 0;
        const uint8_t *src = de265_get_image_plane(img, c, &stride);
        if (src == nullptr || de265_get_image_width(img, c) < rw ||
            de265_get_image_height(img, c) < rh) {
            return fail(dec, BPG_ERR_CORRUPT, "decoded picture is smaller than the header says");
        }
        uint8_t *dst = planes.data() + (c == 0 ? 0 : l.y_size + (c - 1) * l.c_size);
        for (int y = 0; y < rh; ++y)
            std::memcpy(dst + static_cast<size_t>(y) * pw, src + static_cast<ptrdiff_t>(y) * stride,
                        static_cast<size_t>(rw));
        // Padding is made from the real area, so the layout never depends on
        // how the decoder cropped.
        pad_plane(dst, rw, rh, pw, ph);
    }
    return BPG_OK;
}

constexpr const char *kUndecoded =
    "the picture was not completely decoded (truncated or corrupt slice data)";

// Decode the colour plane into dec->planes, verified unless told otherwise.
bpg_status decode_planes(bpg_decoder *dec, const uint8_t *data, size_t size, Header *h)
{
    std::string err;
    bpg_status s = parse_header(data, size, h, &err);
    if (s == BPG_OK)
        s = check_header(*h, &err);
    std::vector<NalRef> nals;
    if (s == BPG_OK)
        s = select_nals(*h, data, &nals, &err);
    if (s != BPG_OK)
        return fail(dec, s, err);
    bool undecoded = false, undecoded_probe = false;
    s = decode_once(dec, h, nals, dec->planes, &undecoded);
    if (s != BPG_OK)
        return s;
    if (!dec->verify)
        return undecoded ? fail(dec, BPG_ERR_CORRUPT, kUndecoded) : BPG_OK;
    // The last slice with bytes appended: an intact slice ends before them.
    size_t last = nals.size();
    for (size_t i = 0; i < nals.size(); ++i)
        if (nals[i].type() <= 21)
            last = i;
    std::vector<uint8_t> padded(nals[last].data, nals[last].data + nals[last].size);
    padded.insert(padded.end(), 16, 0xA5);
    std::vector<NalRef> probe = nals;
    probe[last] = {padded.data(), padded.size()};
    const bpg_status sv = decode_once(dec, h, probe, dec->verify_planes, &undecoded_probe);
    if (sv != BPG_OK || dec->verify_planes != dec->planes)
        return fail(dec, BPG_ERR_TRUNCATED,
                    "the slice data is truncated or damaged (its decoding runs past its end)");
    return undecoded ? fail(dec, BPG_ERR_CORRUPT, kUndecoded) : BPG_OK;
}

// Whether `height` rows `stride` bytes apart, the last one 3 * width bytes,
// fit in `size` bytes (stride >= 3 * width > 0 is checked before). Computed
// by division: a huge stride must not wrap the product and pass.
bool rgb_fits(size_t size, int width, int height, ptrdiff_t stride)
{
    const size_t last_row = 3 * static_cast<size_t>(width);
    if (size < last_row)
        return false;
    return height == 1 ||
           static_cast<size_t>(stride) <= (size - last_row) / static_cast<size_t>(height - 1);
}

} // namespace
} // namespace bpg

extern "C" {

const char *bpg_status_string(bpg_status status)
{
    switch (status) {
    case BPG_OK:
        return "ok";
    case BPG_ERR_INVALID_ARGUMENT:
        return "invalid argument";
    case BPG_ERR_TRUNCATED:
        return "truncated file";
    case BPG_ERR_CORRUPT:
        return "corrupt file";
    case BPG_ERR_UNSUPPORTED:
        return "unsupported feature";
    case BPG_ERR_TOO_LARGE:
        return "picture too large";
    case BPG_ERR_ENCODER:
        return "encoder error";
    case BPG_ERR_DECODER:
        return "decoder error";
    case BPG_ERR_NO_MEMORY:
        return "out of memory";
    case BPG_ERR_BUFFER_TOO_SMALL:
        return "buffer too small";
    }
    return "unknown status";
}

bpg_status bpg_read_info(const uint8_t *data, size_t size, bpg_info *info, char *err,
                         size_t err_size)
{
    std::string msg;
    bpg::Header h;
    bpg_status s = bpg::parse_header(data, size, &h, &msg);
    if (s == BPG_OK)
        s = bpg::check_header(h, &msg);
    if (s == BPG_OK || s == BPG_ERR_UNSUPPORTED)
        bpg::fill_info(h, info);
    if (err != nullptr && err_size > 0) {
        std::strncpy(err, msg.c_str(), err_size - 1);
        err[err_size - 1] = 0;
    }
    return s;
}

bpg_decoder *bpg_decoder_new(void) { return new (std::nothrow) bpg_decoder(); }

void bpg_decoder_free(bpg_decoder *dec) { delete dec; }

const char *bpg_decoder_error(const bpg_decoder *dec) { return dec ? dec->error.c_str() : ""; }

void bpg_decoder_set_verify(bpg_decoder *dec, int verify)
{
    if (dec != nullptr)
        dec->verify = verify != 0;
}

bpg_status bpg_decode_yuv(bpg_decoder *dec, const uint8_t *data, size_t size, uint8_t *yuv,
                          size_t yuv_size, bpg_info *info)
{
    if (dec == nullptr)
        return BPG_ERR_INVALID_ARGUMENT;
    dec->error.clear();
    if (yuv == nullptr)
        return bpg::fail(dec, BPG_ERR_INVALID_ARGUMENT, "yuv must not be NULL");
    bpg::Header h;
    bpg_status s = bpg::decode_planes(dec, data, size, &h);
    if (s != BPG_OK)
        return s;
    if (yuv_size != dec->planes.size())
        return bpg::fail(dec, BPG_ERR_BUFFER_TOO_SMALL,
                         "yuv buffer holds " + std::to_string(yuv_size) +
                             " bytes, the picture needs " + std::to_string(dec->planes.size()));
    std::memcpy(yuv, dec->planes.data(), yuv_size);
    bpg::fill_info(h, info);
    return BPG_OK;
}

bpg_status bpg_decode_rgb(bpg_decoder *dec, const uint8_t *data, size_t size, uint8_t *rgb,
                          size_t rgb_size, ptrdiff_t stride, bpg_info *info)
{
    if (dec == nullptr)
        return BPG_ERR_INVALID_ARGUMENT;
    dec->error.clear();
    if (rgb == nullptr)
        return bpg::fail(dec, BPG_ERR_INVALID_ARGUMENT, "rgb must not be NULL");
    bpg::Header h;
    bpg_status s = bpg::decode_planes(dec, data, size, &h);
    if (s != BPG_OK)
        return s;
    const int w = static_cast<int>(h.width), ht = static_cast<int>(h.height);
    if (stride < 3 * static_cast<ptrdiff_t>(w) || !bpg::rgb_fits(rgb_size, w, ht, stride))
        return bpg::fail(dec, BPG_ERR_BUFFER_TOO_SMALL,
                         "rgb buffer too small for " + std::to_string(w) + "x" +
                             std::to_string(ht));
    try {
        bpg::planes_to_rgb(dec->planes.data(), w, ht, bpg::chroma_of_pixel_format(h.pixel_format),
                           rgb, stride);
    } catch (const std::bad_alloc &) {
        return bpg::fail(dec, BPG_ERR_NO_MEMORY, "out of memory");
    }
    bpg::fill_info(h, info);
    return BPG_OK;
}

bpg_status bpg_decoder_annexb(bpg_decoder *dec, const uint8_t *data, size_t size,
                              const uint8_t **out, size_t *out_size)
{
    if (dec == nullptr || out == nullptr || out_size == nullptr)
        return BPG_ERR_INVALID_ARGUMENT;
    dec->error.clear();
    std::string err;
    bpg::Header h;
    bpg_status s = bpg::parse_header(data, size, &h, &err);
    if (s != BPG_OK)
        return bpg::fail(dec, s, err);
    // Unsupported features are fine here (FFmpeg may decode them), sizes past the
    // limit are not: the SPS's coded sizes would wrap.
    if (bpg::check_header(h, &err) == BPG_ERR_TOO_LARGE)
        return bpg::fail(dec, BPG_ERR_TOO_LARGE, err);
    dec->annexb.clear();
    const std::vector<uint8_t> vps = bpg::make_vps(h), sps = bpg::make_sps(h);
    bpg::append_start_code(dec->annexb, vps.data(), vps.size());
    bpg::append_start_code(dec->annexb, sps.data(), sps.size());
    for (const bpg::NalRef &n : bpg::split_nals(data + h.hevc_data_offset, h.hevc_data_size, false))
        if (n.layer() == 0)
            bpg::append_start_code(dec->annexb, n.data, n.size);
    *out = dec->annexb.data();
    *out_size = dec->annexb.size();
    return BPG_OK;
}

bpg_status bpg_rgb_to_yuv(const uint8_t *rgb, int width, int height, ptrdiff_t stride, int chroma,
                          uint8_t *yuv, size_t yuv_size)
{
    if (rgb == nullptr || yuv == nullptr || width < 1 || height < 1 || width > BPG_MAX_SIDE ||
        height > BPG_MAX_SIDE || chroma < BPG_CM_GRAY || chroma > BPG_CM_444 ||
        stride < 3 * static_cast<ptrdiff_t>(width))
        return BPG_ERR_INVALID_ARGUMENT;
    if (yuv_size != bpg_cm_make_layout(width, height, chroma).total)
        return BPG_ERR_BUFFER_TOO_SMALL;
    try {
        bpg::rgb_to_planes(rgb, width, height, stride, chroma, yuv);
    } catch (const std::bad_alloc &) {
        return BPG_ERR_NO_MEMORY;
    }
    return BPG_OK;
}

bpg_status bpg_yuv_to_rgb(const uint8_t *yuv, size_t yuv_size, int width, int height, int chroma,
                          uint8_t *rgb, size_t rgb_size, ptrdiff_t stride)
{
    if (rgb == nullptr || yuv == nullptr || width < 1 || height < 1 || width > BPG_MAX_SIDE ||
        height > BPG_MAX_SIDE || chroma < BPG_CM_GRAY || chroma > BPG_CM_444 ||
        stride < 3 * static_cast<ptrdiff_t>(width))
        return BPG_ERR_INVALID_ARGUMENT;
    if (yuv_size != bpg_cm_make_layout(width, height, chroma).total ||
        !bpg::rgb_fits(rgb_size, width, height, stride))
        return BPG_ERR_BUFFER_TOO_SMALL;
    try {
        bpg::planes_to_rgb(yuv, width, height, chroma, rgb, stride);
    } catch (const std::bad_alloc &) {
        return BPG_ERR_NO_MEMORY;
    }
    return BPG_OK;
}

} // extern "C"
