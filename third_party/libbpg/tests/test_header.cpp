// Test (6): header fields round trip. Files made by the encoder are parsed
// by an independent reader written from docs/format.md#layout, and compared
// with bpg_read_info and with what the encoder was asked for.
// Usage: test_header [TESTVECTORS_DIR]
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "bpg/bpg.h"
#include "test_util.h"

namespace
{

using Bytes = std::vector<uint8_t>;

// Everything section 1 defines for a colour-only file.
struct Parsed {
    bool ok = false;
    int pixel_format = -1, alpha1 = -1, bit_depth = -1, color_space = -1, ext = -1, alpha2 = -1,
        limited = -1, anim = -1;
    uint32_t width = 0, height = 0, data_len = 0;
    Bytes hevc_header; // the bit string bytes
    int log2_min_cb = -1, log2_max_cb = -1, log2_min_tb = -1, log2_max_tb = -1, depth = -1;
    int sao = -1, pcm = -1, sis = -1, sps_ext = -1;
    size_t data_offset = 0;
};

class Reader
{
  public:
    explicit Reader(const Bytes &b) : b_(b) {}
    bool byte(uint8_t *v)
    {
        if (pos_ >= b_.size())
            return false;
        *v = b_[pos_++];
        return true;
    }
    bool ue7(uint32_t *v)
    {
        uint64_t x = 0;
        for (int i = 0; i < 5; ++i) {
            uint8_t c;
            if (!byte(&c) || (i == 0 && c == 0x80))
                return false;
            x = (x << 7) | (c & 0x7f);
            if (!(c & 0x80)) {
                *v = static_cast<uint32_t>(x);
                return x <= 0xFFFFFFFFu;
            }
        }
        return false;
    }
    size_t pos() const { return pos_; }

  private:
    const Bytes &b_;
    size_t pos_ = 0;
};

struct BitReader {
    const Bytes &b;
    size_t pos = 0;
    int bit()
    {
        const int v = pos < 8 * b.size() ? (b[pos / 8] >> (7 - pos % 8)) & 1 : -1;
        ++pos;
        return v;
    }
    int ue()
    {
        int zeros = 0;
        for (int v = bit(); v != 1; v = bit())
            if (v < 0 || ++zeros > 20)
                return -1000;
        int x = 0;
        for (int i = 0; i < zeros; ++i)
            x = (x << 1) | bit();
        return (1 << zeros) - 1 + x;
    }
};

Parsed parse(const Bytes &f)
{
    Parsed p;
    Reader r(f);
    uint8_t m[4], b0, b1;
    for (uint8_t &c : m)
        if (!r.byte(&c))
            return p;
    if (m[0] != 0x42 || m[1] != 0x50 || m[2] != 0x47 || m[3] != 0xFB || !r.byte(&b0) ||
        !r.byte(&b1))
        return p;
    p.pixel_format = b0 >> 5;
    p.alpha1 = (b0 >> 4) & 1;
    p.bit_depth = (b0 & 15) + 8;
    p.color_space = b1 >> 4;
    p.ext = (b1 >> 3) & 1;
    p.alpha2 = (b1 >> 2) & 1;
    p.limited = (b1 >> 1) & 1;
    p.anim = b1 & 1;
    uint32_t hlen = 0;
    if (p.alpha1 || p.ext || !r.ue7(&p.width) || !r.ue7(&p.height) || !r.ue7(&p.data_len) ||
        !r.ue7(&hlen) || r.pos() + hlen > f.size())
        return p;
    p.hevc_header.assign(f.begin() + static_cast<ptrdiff_t>(r.pos()),
                         f.begin() + static_cast<ptrdiff_t>(r.pos() + hlen));
    p.data_offset = r.pos() + hlen;
    BitReader br{p.hevc_header};
    p.log2_min_cb = br.ue() + 3;
    p.log2_max_cb = p.log2_min_cb + br.ue();
    p.log2_min_tb = br.ue() + 2;
    p.log2_max_tb = p.log2_min_tb + br.ue();
    p.depth = br.ue();
    p.sao = br.bit();
    p.pcm = br.bit();
    if (p.pcm != 0)
        return p; // the encoder never turns PCM on
    p.sis = br.bit();
    p.sps_ext = br.bit();
    // The rest of the last byte is zero padding.
    bool pad_zero = br.pos <= 8 * p.hevc_header.size();
    while (br.pos < 8 * p.hevc_header.size())
        pad_zero = pad_zero && br.bit() == 0;
    p.ok = pad_zero && p.sps_ext == 0;
    return p;
}

void compare_with_info(const Bytes &f, const Parsed &p, const std::string &what)
{
    bpg_info in;
    char err[128];
    const bpg_status s = bpg_read_info(f.data(), f.size(), &in, err, sizeof(err));
    CHECKF(s == BPG_OK, "%s: bpg_read_info: %s", what.c_str(), err);
    CHECKF(p.ok, "%s: the independent parser rejects the header", what.c_str());
    if (s != BPG_OK || !p.ok)
        return;
    const int chroma = p.pixel_format == 4 ? 1 : p.pixel_format == 5 ? 2 : p.pixel_format;
    const int pairs[][2] = {{in.width, static_cast<int>(p.width)},
                            {in.height, static_cast<int>(p.height)},
                            {in.pixel_format, p.pixel_format},
                            {in.chroma, chroma},
                            {in.bit_depth, p.bit_depth},
                            {in.color_space, p.color_space},
                            {in.has_alpha, p.alpha1},
                            {in.limited_range, p.limited},
                            {in.animation, p.anim},
                            {in.has_extensions, p.ext},
                            {in.log2_min_cb_size, p.log2_min_cb},
                            {in.log2_max_cb_size, p.log2_max_cb},
                            {in.log2_min_tb_size, p.log2_min_tb},
                            {in.log2_max_tb_size, p.log2_max_tb},
                            {in.max_transform_hierarchy_depth_intra, p.depth},
                            {in.sao, p.sao},
                            {in.pcm, p.pcm},
                            {in.strong_intra_smoothing, p.sis}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); ++i)
        CHECKF(pairs[i][0] == pairs[i][1], "%s: field %zu: bpg_read_info %d, parsed %d",
               what.c_str(), i, pairs[i][0], pairs[i][1]);
    CHECKF(in.hevc_data_offset == p.data_offset, "%s: data offset %zu vs %zu", what.c_str(),
           in.hevc_data_offset, p.data_offset);
    const size_t want_size = p.data_len != 0 ? p.data_len : f.size() - p.data_offset;
    CHECKF(in.hevc_data_size == want_size, "%s: data size %zu vs %zu", what.c_str(),
           in.hevc_data_size, want_size);
}

// What the encoder must have written for an image of w x h in `chroma`.
void check_own_file(bpg_encoder *enc, bpg_decoder *dec, int w, int h, int chroma, int level)
{
    const std::string what = std::to_string(w) + "x" + std::to_string(h) + " " +
                             bt::chroma_name(chroma) + " level " + std::to_string(level);
    const Bytes rgb = bt::make_image(w, h, static_cast<uint32_t>(w * 31 + h));
    const Bytes f = bt::encode(enc, rgb, w, h, 30, chroma, level);
    if (f.empty())
        return;
    const Parsed p = parse(f);
    compare_with_info(f, p, what);
    if (!p.ok)
        return;
    CHECKF(p.pixel_format == chroma, "%s: pixel_format %d", what.c_str(), p.pixel_format);
    CHECK(p.alpha1 == 0 && p.alpha2 == 0 && p.bit_depth == 8 && p.color_space == 0);
    CHECK(p.ext == 0 && p.limited == 0 && p.anim == 0);
    CHECKF(p.width == static_cast<uint32_t>(w) && p.height == static_cast<uint32_t>(h),
           "%s: header says %ux%u", what.c_str(), p.width, p.height);
    CHECKF(p.data_len == 0, "%s: picture_data_length %u (the reference writes 0)", what.c_str(),
           p.data_len);
    // hevc_data starts with the PPS, its start code removed.
    CHECKF(p.data_offset + 2 <= f.size() && f[p.data_offset] == 0x44 &&
               f[p.data_offset + 1] == 0x01,
           "%s: hevc_data does not start with a PPS NAL header", what.c_str());
    // Block sizes: min CB 8 (16 when a side is <= 8), CTB 16..64, TB 4..32.
    const int want_min_cb = (w <= 8 || h <= 8) ? 4 : 3;
    CHECKF(p.log2_min_cb == want_min_cb, "%s: log2 min CB %d, want %d", what.c_str(), p.log2_min_cb,
           want_min_cb);
    CHECKF(p.log2_max_cb >= std::max(4, p.log2_min_cb) && p.log2_max_cb <= 6, "%s: log2 CTB %d",
           what.c_str(), p.log2_max_cb);
    CHECKF(p.log2_min_tb == 2 && p.log2_max_tb <= std::min(5, p.log2_max_cb) &&
               p.log2_max_tb >= p.log2_min_tb,
           "%s: log2 TB %d..%d", what.c_str(), p.log2_min_tb, p.log2_max_tb);
    CHECKF(p.depth >= 0 && p.depth <= p.log2_max_cb - p.log2_min_tb, "%s: TU depth %d",
           what.c_str(), p.depth);
    CHECK(p.pcm == 0);

    // The info that decoding reports is the header's.
    bpg_info a, b;
    CHECK(bpg_read_info(f.data(), f.size(), &a, nullptr, 0) == BPG_OK);
    std::vector<uint8_t> out(3 * static_cast<size_t>(w) * h);
    std::memset(&b, 0xA5, sizeof(b));
    CHECK(bpg_decode_rgb(dec, f.data(), f.size(), out.data(), out.size(), 3 * w, &b) == BPG_OK);
    CHECKF(std::memcmp(&a, &b, sizeof(a)) == 0, "%s: decode info differs from bpg_read_info",
           what.c_str());
}

Bytes read_all(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

} // namespace

int main(int argc, char **argv)
{
    bpg_encoder *enc = bpg_encoder_new();
    bpg_decoder *dec = bpg_decoder_new();
    const int sizes[][2] = {{1, 1},   {8, 8},   {9, 9},    {17, 9},
                            {40, 33}, {64, 64}, {130, 63}, {200, 3}};
    for (const auto &sz : sizes)
        for (int chroma : {BPG_CM_GRAY, BPG_CM_420, BPG_CM_422, BPG_CM_444})
            check_own_file(enc, dec, sz[0], sz[1], chroma, 2);
    for (int level = 1; level <= 9; level += 4)
        check_own_file(enc, dec, 72, 64, BPG_CM_420, level);

    // At the default level a picture of at least one 64x64 CTB gets the
    // reference encoder's colour hevc_header (docs/format.md#default-header).
    const Bytes rgb = bt::make_image(64, 64, 5);
    const Bytes f = bt::encode(enc, rgb, 64, 64, 29, BPG_CM_420, 8);
    const Parsed p = parse(f);
    const Bytes want = {0x92, 0x47, 0x40};
    CHECKF(p.ok && p.hevc_header == want, "level 8 hevc_header is not 03 92 47 40 (%zu bytes)",
           p.hevc_header.size());

    // The independent parser and bpg_read_info also agree on the reference
    // encoder's files.
    int vectors = 0;
    if (argc > 1 && std::filesystem::is_directory(argv[1])) {
        for (const auto &e : std::filesystem::directory_iterator(argv[1])) {
            if (e.path().extension() != ".bpg")
                continue;
            const Bytes ref = read_all(e.path().string());
            const Parsed rp = parse(ref);
            compare_with_info(ref, rp, e.path().filename().string());
            CHECKF(rp.ok && rp.hevc_header == want, "%s: hevc_header differs from docs/format.md",
                   e.path().filename().string().c_str());
            ++vectors;
        }
    }
    std::printf("%d reference files compared%s\n", vectors,
                vectors == 0 ? " (test vectors not found)" : "");
    bpg_encoder_free(enc);
    bpg_decoder_free(dec);
    return bt::finish("test_header");
}
