#include "format.h"

#include <algorithm>

#include "bitstream.h"

namespace bpg
{

namespace
{

const uint8_t kMagic[4] = {0x42, 0x50, 0x47, 0xFB};

// Reads hevc_header's bit string into p.
bool parse_hevc_header(const uint8_t *data, size_t size, HevcParams *p, std::string *err)
{
    BitReader br(data, size);
    // Every field is small; refuse large codes before any int arithmetic.
    bool big = false;
    auto small_ue = [&br, &big]() {
        const uint32_t v = br.get_ue();
        big = big || v > 16;
        return v > 16 ? 0 : static_cast<int>(v);
    };
    p->log2_min_cb = small_ue() + 3;
    p->log2_diff_max_min_cb = small_ue();
    p->log2_min_tb = small_ue() + 2;
    p->log2_diff_max_min_tb = small_ue();
    p->max_th_depth_intra = small_ue();
    p->sao = br.get_flag();
    p->pcm = br.get_flag();
    if (p->pcm) {
        p->pcm_bits_luma = static_cast<int>(br.get(4)) + 1;
        p->pcm_bits_chroma = static_cast<int>(br.get(4)) + 1;
        p->log2_min_pcm_cb = small_ue() + 3;
        p->log2_diff_max_min_pcm_cb = small_ue();
        p->pcm_loop_filter_disabled = br.get_flag();
    }
    p->strong_intra_smoothing = br.get_flag();
    p->sps_extension = br.get_flag();
    if (p->sps_extension) {
        p->sps_range_extension = br.get_flag();
        br.get(7);
        if (p->sps_range_extension)
            for (int &f : p->range_ext_flags)
                f = br.get_flag();
    }
    if (big) {
        *err = "hevc_header has out-of-range block sizes";
        return false;
    }
    if (br.failed()) {
        *err = "hevc_header is truncated";
        return false;
    }
    // HEVC bounds (7.4.3.2): CTB 16..64, TB 4..32 and TB <= CB.
    const int log2_max_cb = p->log2_min_cb + p->log2_diff_max_min_cb;
    const int log2_max_tb = p->log2_min_tb + p->log2_diff_max_min_tb;
    if (p->log2_min_cb > 6 || log2_max_cb < 4 || log2_max_cb > 6 ||
        p->log2_min_tb >= p->log2_min_cb || log2_max_tb > 5 || log2_max_tb > log2_max_cb ||
        p->max_th_depth_intra > log2_max_cb - p->log2_min_tb) {
        *err = "hevc_header has out-of-range block sizes";
        return false;
    }
    // PCM blocks (7.4.3.2.1): from min(MinCb, 32) to min(CTB, 32).
    const int log2_max_pcm = p->log2_min_pcm_cb + p->log2_diff_max_min_pcm_cb;
    if (p->pcm && (p->pcm_bits_luma > 8 || p->pcm_bits_chroma > 8 ||
                   p->log2_min_pcm_cb < std::min(p->log2_min_cb, 5) ||
                   log2_max_pcm > std::min(log2_max_cb, 5))) {
        *err = "hevc_header has out-of-range PCM parameters";
        return false;
    }
    return true;
}

void write_ptl(BitWriter &bw, const Header &h)
{
    const int profile =
        (chroma_of_pixel_format(h.pixel_format) == BPG_CM_420 && h.bit_depth == 8) ? 1 : 4;
    bw.put(0, 2); // general_profile_space
    bw.put(0, 1); // general_tier_flag
    bw.put(static_cast<uint32_t>(profile), 5);
    for (int j = 0; j < 32; ++j)
        bw.put_flag(j == profile || (profile == 1 && j == 2));
    bw.put_flag(true);  // progressive_source
    bw.put_flag(false); // interlaced_source
    bw.put_flag(false); // non_packed_constraint
    bw.put_flag(true);  // frame_only_constraint
    bw.put(0, 32);      // 43 reserved bits + general_inbld_flag
    bw.put(0, 12);
    bw.put(153, 8); // general_level_idc 5.1 (not checked by BPG decoders)
}

void write_nal_header(std::vector<uint8_t> &out, int type)
{
    out.push_back(static_cast<uint8_t>(type << 1));
    out.push_back(1); // layer 0, temporal id 0 (+1)
}

std::vector<uint8_t> finish_nal(int type, const BitWriter &bw)
{
    std::vector<uint8_t> nal;
    write_nal_header(nal, type);
    const std::vector<uint8_t> esc = escape_rbsp(bw.bytes().data(), bw.bytes().size());
    nal.insert(nal.end(), esc.begin(), esc.end());
    return nal;
}

} // namespace

int chroma_of_pixel_format(int pixel_format)
{
    switch (pixel_format) {
    case 0:
        return BPG_CM_GRAY;
    case 1:
    case 4:
        return BPG_CM_420;
    case 2:
    case 5:
        return BPG_CM_422;
    default:
        return BPG_CM_444;
    }
}

bpg_status parse_header(const uint8_t *data, size_t size, Header *h, std::string *err)
{
    if (data == nullptr || size == 0) {
        *err = "empty input";
        return BPG_ERR_TRUNCATED;
    }
    ByteReader r(data, size);
    for (uint8_t m : kMagic) {
        uint8_t b;
        if (!r.u8(&b)) {
            *err = "file too short for the BPG magic";
            return BPG_ERR_TRUNCATED;
        }
        if (b != m) {
            *err = "not a BPG file (bad magic)";
            return BPG_ERR_CORRUPT;
        }
    }
    uint8_t b0, b1;
    if (!r.u8(&b0) || !r.u8(&b1)) {
        *err = "file ends inside the BPG header";
        return BPG_ERR_TRUNCATED;
    }
    h->pixel_format = b0 >> 5;
    h->alpha1 = (b0 >> 4) & 1;
    h->bit_depth = (b0 & 15) + 8;
    h->color_space = b1 >> 4;
    h->extensions = (b1 >> 3) & 1;
    h->alpha2 = (b1 >> 2) & 1;
    h->limited_range = (b1 >> 1) & 1;
    h->animation = b1 & 1;
    if (h->pixel_format > 5) {
        *err = "invalid pixel_format " + std::to_string(h->pixel_format);
        return BPG_ERR_CORRUPT;
    }
    if (h->bit_depth > 14) {
        *err = "invalid bit depth " + std::to_string(h->bit_depth);
        return BPG_ERR_CORRUPT;
    }
    if (h->color_space > 4) {
        *err = "invalid color_space " + std::to_string(h->color_space);
        return BPG_ERR_CORRUPT;
    }
    uint32_t data_len = 0;
    const bpg_status trunc = BPG_ERR_TRUNCATED;
    if (!r.ue7(&h->width, err) || !r.ue7(&h->height, err) || !r.ue7(&data_len, err))
        return r.left() == 0 ? trunc : BPG_ERR_CORRUPT;
    if (h->width == 0 || h->height == 0) {
        *err = "picture width and height must be > 0";
        return BPG_ERR_CORRUPT;
    }
    if (h->extensions) {
        uint32_t ext_len = 0;
        if (!r.ue7(&ext_len, err))
            return r.left() == 0 ? trunc : BPG_ERR_CORRUPT;
        if (!r.skip(ext_len)) {
            *err = "file ends inside the extension data";
            return trunc;
        }
    }
    // An alpha plane, or CMYK's W plane (alpha2 alone), coded in its place.
    const bool alpha_plane = h->alpha1 || h->alpha2;
    for (int plane = alpha_plane ? 0 : 1; plane < 2; ++plane) {
        uint32_t hlen = 0;
        if (!r.ue7(&hlen, err))
            return r.left() == 0 ? trunc : BPG_ERR_CORRUPT;
        if (hlen > r.left()) {
            *err = "file ends inside hevc_header";
            return trunc;
        }
        HevcParams p;
        if (!parse_hevc_header(r.here(), hlen, &p, err))
            return BPG_ERR_CORRUPT;
        if (plane == 1)
            h->hevc = p;
        r.skip(hlen);
    }
    h->hevc_data_offset = r.pos();
    if (data_len != 0) {
        // picture_data_length counts the HEVC data only; trailing bytes are ignored.
        if (data_len > r.left()) {
            *err = "file shorter than its picture_data_length";
            return trunc;
        }
        h->hevc_data_size = data_len;
    } else {
        h->hevc_data_size = r.left();
    }
    if (h->hevc_data_size == 0) {
        *err = "file has no HEVC data";
        return trunc;
    }
    return BPG_OK;
}

std::vector<uint8_t> write_header(const Header &h)
{
    std::vector<uint8_t> out(kMagic, kMagic + 4);
    out.push_back(
        static_cast<uint8_t>((h.pixel_format << 5) | (h.alpha1 << 4) | (h.bit_depth - 8)));
    out.push_back(static_cast<uint8_t>((h.color_space << 4) | (h.extensions << 3) |
                                       (h.alpha2 << 2) | (h.limited_range << 1) |
                                       int(h.animation)));
    put_ue7(out, h.width);
    put_ue7(out, h.height);
    put_ue7(out, 0); // picture_data_length: to the end of the file, as the reference writes
    BitWriter bw;
    const HevcParams &p = h.hevc;
    bw.put_ue(p.log2_min_cb - 3);
    bw.put_ue(p.log2_diff_max_min_cb);
    bw.put_ue(p.log2_min_tb - 2);
    bw.put_ue(p.log2_diff_max_min_tb);
    bw.put_ue(p.max_th_depth_intra);
    bw.put_flag(p.sao);
    bw.put_flag(p.pcm);
    if (p.pcm) {
        bw.put(p.pcm_bits_luma - 1, 4);
        bw.put(p.pcm_bits_chroma - 1, 4);
        bw.put_ue(p.log2_min_pcm_cb - 3);
        bw.put_ue(p.log2_diff_max_min_pcm_cb);
        bw.put_flag(p.pcm_loop_filter_disabled);
    }
    bw.put_flag(p.strong_intra_smoothing);
    bw.put_flag(p.sps_extension);
    if (p.sps_extension) {
        bw.put_flag(p.sps_range_extension);
        bw.put(0, 7);
        if (p.sps_range_extension)
            for (int f : p.range_ext_flags)
                bw.put_flag(f != 0);
    }
    bw.align_zero();
    put_ue7(out, static_cast<uint32_t>(bw.bytes().size()));
    out.insert(out.end(), bw.bytes().begin(), bw.bytes().end());
    return out;
}

std::vector<uint8_t> make_vps(const Header &h)
{
    BitWriter bw;
    bw.put(0, 4); // vps_video_parameter_set_id
    bw.put(3, 2); // base_layer_internal + base_layer_available
    bw.put(0, 6); // vps_max_layers_minus1
    bw.put(0, 3); // vps_max_sub_layers_minus1
    bw.put(1, 1); // vps_temporal_id_nesting_flag
    bw.put(0xffff, 16);
    write_ptl(bw, h);
    bw.put_flag(true); // vps_sub_layer_ordering_info_present_flag
    bw.put_ue(0);
    bw.put_ue(0);
    bw.put_ue(0);
    bw.put(0, 6);       // vps_max_layer_id
    bw.put_ue(0);       // vps_num_layer_sets_minus1
    bw.put_flag(false); // vps_timing_info_present_flag
    bw.put_flag(false); // vps_extension_flag
    bw.put_trailing_bits();
    return finish_nal(32, bw);
}

std::vector<uint8_t> make_sps(const Header &h, bool crop)
{
    const HevcParams &p = h.hevc;
    const int chroma = chroma_of_pixel_format(h.pixel_format);
    const uint32_t cb = 1u << p.log2_min_cb;
    const uint32_t coded_w = (h.width + cb - 1) / cb * cb;
    const uint32_t coded_h = (h.height + cb - 1) / cb * cb;
    const uint32_t sub_w = (chroma == BPG_CM_420 || chroma == BPG_CM_422) ? 2 : 1;
    const uint32_t sub_h = chroma == BPG_CM_420 ? 2 : 1;

    BitWriter bw;
    bw.put(0, 4); // sps_video_parameter_set_id
    bw.put(0, 3); // sps_max_sub_layers_minus1
    bw.put(1, 1); // sps_temporal_id_nesting_flag
    write_ptl(bw, h);
    bw.put_ue(0); // sps_seq_parameter_set_id
    bw.put_ue(static_cast<uint32_t>(chroma));
    if (chroma == BPG_CM_444)
        bw.put_flag(false); // separate_colour_plane_flag
    bw.put_ue(coded_w);
    bw.put_ue(coded_h);
    // Odd sizes in subsampled formats cannot be cropped exactly here; the BPG
    // decoder crops to the header's size itself.
    const uint32_t right = crop ? (coded_w - h.width) / sub_w : 0;
    const uint32_t bottom = crop ? (coded_h - h.height) / sub_h : 0;
    bw.put_flag(right != 0 || bottom != 0);
    if (right != 0 || bottom != 0) {
        bw.put_ue(0);
        bw.put_ue(right);
        bw.put_ue(0);
        bw.put_ue(bottom);
    }
    bw.put_ue(static_cast<uint32_t>(h.bit_depth - 8));
    bw.put_ue(static_cast<uint32_t>(h.bit_depth - 8));
    bw.put_ue(4);      // log2_max_pic_order_cnt_lsb_minus4
    bw.put_flag(true); // sps_sub_layer_ordering_info_present_flag
    bw.put_ue(0);
    bw.put_ue(0);
    bw.put_ue(0);
    bw.put_ue(p.log2_min_cb - 3);
    bw.put_ue(p.log2_diff_max_min_cb);
    bw.put_ue(p.log2_min_tb - 2);
    bw.put_ue(p.log2_diff_max_min_tb);
    bw.put_ue(p.max_th_depth_intra); // inter depth = intra depth
    bw.put_ue(p.max_th_depth_intra);
    bw.put_flag(false); // scaling_list_enabled_flag
    bw.put_flag(true);  // amp_enabled_flag
    bw.put_flag(p.sao);
    bw.put_flag(p.pcm);
    if (p.pcm) {
        bw.put(p.pcm_bits_luma - 1, 4);
        bw.put(p.pcm_bits_chroma - 1, 4);
        bw.put_ue(p.log2_min_pcm_cb - 3);
        bw.put_ue(p.log2_diff_max_min_pcm_cb);
        bw.put_flag(p.pcm_loop_filter_disabled);
    }
    bw.put_ue(0);       // num_short_term_ref_pic_sets
    bw.put_flag(false); // long_term_ref_pics_present_flag
    bw.put_flag(true);  // sps_temporal_mvp_enabled_flag
    bw.put_flag(p.strong_intra_smoothing);
    bw.put_flag(false); // vui_parameters_present_flag
    bw.put_flag(p.sps_extension);
    if (p.sps_extension) {
        bw.put_flag(p.sps_range_extension);
        bw.put(0, 7);
        if (p.sps_range_extension)
            for (int f : p.range_ext_flags)
                bw.put_flag(f != 0);
    }
    bw.put_trailing_bits();
    return finish_nal(33, bw);
}

std::vector<NalRef> split_nals(const uint8_t *data, size_t size, bool leading_start_code)
{
    std::vector<NalRef> nals;
    size_t i = 0, start = 0;
    bool open = !leading_start_code;
    auto close_at = [&](size_t end) {
        // Trailing zero bytes belong to the next start code (zero_byte).
        while (end > start && data[end - 1] == 0)
            --end;
        if (open && end > start)
            nals.push_back({data + start, end - start});
    };
    while (i + 2 < size) {
        if (data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1) {
            close_at(i);
            i += 3;
            start = i;
            open = true;
            continue;
        }
        ++i;
    }
    close_at(size);
    return nals;
}

PpsInfo parse_pps(const uint8_t *nal, size_t size)
{
    PpsInfo info;
    if (size < 3)
        return info;
    const std::vector<uint8_t> rbsp = unescape_nal(nal + 2, size - 2);
    BitReader br(rbsp.data(), rbsp.size());
    br.get_ue();       // pps id
    br.get_ue();       // sps id
    if (br.get_flag()) // dependent_slice_segments_enabled_flag
        return info;   // x265 never sets it; bail out rather than guess
    info.output_flag_present = br.get_flag();
    info.num_extra_slice_header_bits = static_cast<int>(br.get(3));
    br.get_flag();     // sign_data_hiding
    br.get_flag();     // cabac_init_present
    br.get_ue();       // num_ref_idx_l0_default_active_minus1
    br.get_ue();       // num_ref_idx_l1_default_active_minus1
    br.get_se();       // init_qp_minus26
    br.get_flag();     // constrained_intra_pred
    br.get_flag();     // transform_skip_enabled
    if (br.get_flag()) // cu_qp_delta_enabled
        br.get_ue();
    br.get_se(); // pps_cb_qp_offset
    br.get_se(); // pps_cr_qp_offset
    info.slice_chroma_qp_offsets_present = br.get_flag();
    br.get_flag(); // weighted_pred
    br.get_flag(); // weighted_bipred
    br.get_flag(); // transquant_bypass_enabled
    const bool tiles = br.get_flag();
    info.entropy_coding_sync = br.get_flag();
    if (tiles)
        return info; // x265 writes no tiles
    info.loop_filter_across_slices = br.get_flag();
    if (br.get_flag()) { // deblocking_filter_control_present
        info.deblocking_override_enabled = br.get_flag();
        info.deblocking_disabled = br.get_flag();
        if (!info.deblocking_disabled) {
            br.get_se();
            br.get_se();
        }
    }
    br.get_flag(); // pps_scaling_list_data_present (x265: 0)
    br.get_flag(); // lists_modification_present
    br.get_ue();   // log2_parallel_merge_level_minus2
    info.header_extension_present = br.get_flag();
    const bool ext = br.get_flag();
    // A PPS range extension could add cu_chroma_qp_offset_enabled_flag to
    // the slice header; x265 writes none.
    info.ok = !br.failed() && !ext;
    return info;
}

SliceHeaderScan scan_slice_header(const std::vector<uint8_t> &rbsp, const PpsInfo &pps, bool sao,
                                  bool has_chroma)
{
    SliceHeaderScan scan;
    if (!pps.ok)
        return scan;
    BitReader br(rbsp.data(), rbsp.size());
    if (!br.get_flag()) // first_slice_segment_in_pic_flag
        return scan;
    br.get_flag(); // no_output_of_prior_pics_flag
    br.get_ue();   // slice_pic_parameter_set_id
    br.get(pps.num_extra_slice_header_bits);
    if (br.get_ue() != 2) // slice_type must be I
        return scan;
    if (pps.output_flag_present)
        br.get_flag();
    bool sao_luma = false, sao_chroma = false;
    if (sao) {
        sao_luma = br.get_flag();
        if (has_chroma)
            sao_chroma = br.get_flag();
    }
    br.get_se(); // slice_qp_delta
    if (pps.slice_chroma_qp_offsets_present) {
        br.get_se();
        br.get_se();
    }
    bool deblock_disabled = pps.deblocking_disabled;
    if (pps.deblocking_override_enabled && br.get_flag()) {
        deblock_disabled = br.get_flag();
        if (!deblock_disabled) {
            br.get_se();
            br.get_se();
        }
    }
    if (pps.loop_filter_across_slices && (sao_luma || sao_chroma || !deblock_disabled)) {
        scan.has_loop_filter_flag = true;
        scan.loop_filter_flag_pos = br.bit_pos();
        br.get_flag();
    }
    if (pps.entropy_coding_sync) {
        const uint32_t entry_points = br.get_ue();
        if (entry_points > 4096)
            return scan;
        if (entry_points > 0) {
            const uint32_t len = br.get_ue() + 1;
            if (len > 32)
                return scan;
            for (uint32_t i = 0; i < entry_points && !br.failed(); ++i)
                br.get(static_cast<int>(len));
        }
    }
    if (pps.header_extension_present) {
        const uint32_t len = br.get_ue();
        if (len > 256)
            return scan;
        for (uint32_t i = 0; i < len && !br.failed(); ++i)
            br.get(8);
    }
    // byte_alignment(): a one bit, then zeros; slice data must follow.
    const bool one = br.get_flag();
    while (!br.failed() && (br.bit_pos() & 7) != 0)
        br.get(1);
    scan.ok = one && !br.failed() && br.bit_pos() < rbsp.size() * 8;
    return scan;
}

std::vector<uint8_t> canonicalize_slice(const uint8_t *nal, size_t size, const PpsInfo &pps,
                                        bool sao, bool has_chroma)
{
    std::vector<uint8_t> same(nal, nal + size);
    const int type = size >= 2 ? (nal[0] >> 1) & 0x3f : -1;
    // Only IDR pictures (no picture order count in the header) are handled.
    if (size < 3 || (type != 19 && type != 20))
        return same;
    std::vector<uint8_t> rbsp = unescape_nal(nal + 2, size - 2);
    const SliceHeaderScan scan = scan_slice_header(rbsp, pps, sao, has_chroma);
    if (!scan.ok || !scan.has_loop_filter_flag)
        return same;
    uint8_t &byte = rbsp[scan.loop_filter_flag_pos >> 3];
    const uint8_t mask = static_cast<uint8_t>(0x80 >> (scan.loop_filter_flag_pos & 7));
    if (byte & mask)
        return same;
    byte |= mask;
    std::vector<uint8_t> out(nal, nal + 2);
    const std::vector<uint8_t> esc = escape_rbsp(rbsp.data(), rbsp.size());
    out.insert(out.end(), esc.begin(), esc.end());
    return out;
}

} // namespace bpg
