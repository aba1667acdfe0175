// The BPG container: header fields, hevc_header, and the HEVC parameter sets
// a stock decoder needs in front of the file's NAL units.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bpg/bpg.h"

namespace bpg
{

// The colour plane's coding parameters carried in hevc_header.
struct HevcParams {
    int log2_min_cb = 3; // log2 of the min coding block size
    int log2_diff_max_min_cb = 3;
    int log2_min_tb = 2;
    int log2_diff_max_min_tb = 3;
    int max_th_depth_intra = 1; // max_transform_hierarchy_depth_intra
    bool sao = true;
    bool pcm = false;
    int pcm_bits_luma = 8, pcm_bits_chroma = 8;
    int log2_min_pcm_cb = 3, log2_diff_max_min_pcm_cb = 0;
    bool pcm_loop_filter_disabled = false;
    bool strong_intra_smoothing = true;
    bool sps_extension = false;
    bool sps_range_extension = false;
    int range_ext_flags[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
};

struct Header {
    int pixel_format = 1;
    bool alpha1 = false, alpha2 = false;
    int bit_depth = 8;
    int color_space = 0;
    bool limited_range = false;
    bool animation = false;
    bool extensions = false;
    uint32_t width = 0, height = 0;
    HevcParams hevc;
    size_t hevc_data_offset = 0, hevc_data_size = 0;
};

// BPG pixel_format -> chroma_format_idc / BPG_CM_* code.
int chroma_of_pixel_format(int pixel_format);

// Parse a whole file's header. Returns BPG_OK or an error with *err set.
bpg_status parse_header(const uint8_t *data, size_t size, Header *h, std::string *err);

// Serialize the header (without hevc_data) for a colour-only picture.
std::vector<uint8_t> write_header(const Header &h);

// Synthesized VPS and SPS NAL units (2-byte NAL header included, escaped,
// no start code) implied by the header. Without `crop` the SPS has no
// conformance window (the picture keeps its coded size): libde265 1.0.11
// scales the bottom crop of 4:2:2 pictures by 2 and rejects valid windows,
// and the BPG decoder crops to the header's size itself anyway.
std::vector<uint8_t> make_vps(const Header &h);
std::vector<uint8_t> make_sps(const Header &h, bool crop = true);

// One NAL unit inside a byte buffer (no start code).
struct NalRef {
    const uint8_t *data;
    size_t size;
    int type() const { return size >= 1 ? (data[0] >> 1) & 0x3f : -1; }
    int layer() const { return size >= 2 ? ((data[0] & 1) << 5) | (data[1] >> 3) : -1; }
};

// Split BPG hevc_data (first NAL without start code, later ones after start
// codes) or an Annex-B stream (start code first) into NAL units.
std::vector<NalRef> split_nals(const uint8_t *data, size_t size, bool leading_start_code);

// PPS fields the slice header depends on.
struct PpsInfo {
    bool ok = false;
    bool output_flag_present = false;
    int num_extra_slice_header_bits = 0;
    bool slice_chroma_qp_offsets_present = false;
    bool loop_filter_across_slices = false;
    bool deblocking_override_enabled = false;
    bool deblocking_disabled = false;
    bool entropy_coding_sync = false;
    bool header_extension_present = false;
};
PpsInfo parse_pps(const uint8_t *nal, size_t size);

// Where the fields of an I slice's header lie in its RBSP (bit positions).
struct SliceHeaderScan {
    bool ok = false;                   // the whole header parsed inside the NAL
    size_t loop_filter_flag_pos = 0;   // slice_loop_filter_across_slices_enabled_flag
    bool has_loop_filter_flag = false; // ... when present
};
// Scans the header of the first slice segment of an IDR I picture (the only
// kind BPG holds). `rbsp` is the NAL payload after its 2-byte header,
// emulation prevention removed.
SliceHeaderScan scan_slice_header(const std::vector<uint8_t> &rbsp, const PpsInfo &pps, bool sao,
                                  bool has_chroma);

// x265 sets slice_loop_filter_across_slices_enabled_flag from the picture
// order count, so a reused encoder would write different bytes for the same
// picture. With one slice the flag has no effect; set it to the value of a
// first picture so that output does not depend on encoder history. Returns
// the NAL unchanged when it cannot be parsed.
std::vector<uint8_t> canonicalize_slice(const uint8_t *nal, size_t size, const PpsInfo &pps,
                                        bool sao, bool has_chroma);

} // namespace bpg
