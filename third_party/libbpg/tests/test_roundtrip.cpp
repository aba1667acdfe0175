// Test (3): encode/decode round trips through the C API at several QPs,
// sizes (1x1 .. 130x63) and chroma formats; PSNR must rise as QP falls.
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "bpg/bpg.h"
#include "test_util.h"

namespace
{

const int kQps[] = {45, 35, 25, 12}; // falling: PSNR should rise along this list
const int kLevel = 3;                // the level does not matter here; keep it fast

// What decoding can at best give back: the source through the colour
// conversion alone (gray keeps luma only, 4:2:0 loses chroma detail).
std::vector<uint8_t> conversion_only(const std::vector<uint8_t> &rgb, int w, int h, int chroma)
{
    std::vector<uint8_t> yuv(bpg_cm_make_layout(w, h, chroma).total), back(rgb.size());
    CHECK(bpg_rgb_to_yuv(rgb.data(), w, h, 3 * w, chroma, yuv.data(), yuv.size()) == BPG_OK);
    CHECK(bpg_yuv_to_rgb(yuv.data(), yuv.size(), w, h, chroma, back.data(), back.size(), 3 * w) ==
          BPG_OK);
    return back;
}

void round_trip(bpg_encoder *enc, bpg_decoder *dec, int w, int h, int chroma, uint32_t seed)
{
    const std::vector<uint8_t> src = bt::make_image(w, h, seed);
    const std::vector<uint8_t> ideal = conversion_only(src, w, h, chroma);
    double prev = -1;
    double first = 0, last = 0;
    std::printf("%4dx%-3d %-4s", w, h, bt::chroma_name(chroma));
    for (int qp : kQps) {
        const std::vector<uint8_t> file = bt::encode(enc, src, w, h, qp, chroma, kLevel);
        if (file.empty())
            return;
        // Decode into rows with slack at the end, to check the stride is
        // honoured and nothing is written past each row's pixels.
        const ptrdiff_t stride = 3 * w + 7;
        std::vector<uint8_t> out(static_cast<size_t>(stride) * h, 0xC3);
        bpg_info info;
        const bpg_status s =
            bpg_decode_rgb(dec, file.data(), file.size(), out.data(), out.size(), stride, &info);
        CHECKF(s == BPG_OK, "decode %dx%d %s qp %d: %s: %s", w, h, bt::chroma_name(chroma), qp,
               bpg_status_string(s), bpg_decoder_error(dec));
        if (s != BPG_OK)
            return;
        CHECK(info.width == w && info.height == h && info.chroma == chroma);
        std::vector<uint8_t> packed(3 * static_cast<size_t>(w) * h);
        bool slack_intact = true;
        for (int y = 0; y < h; ++y) {
            const uint8_t *row = &out[static_cast<size_t>(y) * stride];
            std::memcpy(&packed[static_cast<size_t>(y) * 3 * w], row, 3 * static_cast<size_t>(w));
            for (int x = 3 * w; x < stride; ++x)
                slack_intact = slack_intact && row[x] == 0xC3;
        }
        CHECKF(slack_intact, "decoder wrote into the row slack (%dx%d)", w, h);
        if (chroma == BPG_CM_GRAY) {
            bool gray = true;
            for (size_t i = 0; i < packed.size(); i += 3)
                gray = gray && packed[i] == packed[i + 1] && packed[i] == packed[i + 2];
            CHECKF(gray, "gray decode is not R = G = B (%dx%d)", w, h);
        }
        const double p = bt::psnr(ideal.data(), packed.data(), packed.size());
        std::printf("  qp%-2d %6.2f dB %5zu B", qp, std::isinf(p) ? 99.0 : p, file.size());
        // Tiny pictures may already be exact at high QP; never worse though.
        if (prev >= 0)
            CHECKF(p >= prev - 0.05, "%dx%d %s: PSNR %.2f at qp %d below %.2f at a higher qp", w, h,
                   bt::chroma_name(chroma), p, qp, prev);
        if (qp == kQps[0])
            first = p;
        last = p;
        prev = p;
    }
    std::printf("\n");
    if (w * h >= 64)
        CHECKF(last > first + 6, "%dx%d %s: PSNR only %.2f -> %.2f from qp %d to %d", w, h,
               bt::chroma_name(chroma), first, last, kQps[0], kQps[3]);
    CHECKF(last >= 38, "%dx%d %s: PSNR %.2f at qp %d", w, h, bt::chroma_name(chroma), last,
           kQps[3]);
}

// The planar entry points: bpg_encode_yuv in, bpg_decode_yuv out, in the
// documented padded layout.
void yuv_round_trip(bpg_encoder *enc, bpg_decoder *dec, int w, int h, int chroma)
{
    const bpg_cm_layout l = bpg_cm_make_layout(w, h, chroma);
    const std::vector<uint8_t> src = bt::make_image(w, h, 99);
    std::vector<uint8_t> yuv(l.total);
    CHECK(bpg_rgb_to_yuv(src.data(), w, h, 3 * w, chroma, yuv.data(), yuv.size()) == BPG_OK);
    bpg_encode_options o;
    bpg_encode_options_init(&o);
    o.qp = 20;
    o.chroma = chroma;
    o.level = kLevel;
    const uint8_t *data = nullptr;
    size_t size = 0;
    bpg_status s = bpg_encode_yuv(enc, yuv.data(), yuv.size(), w, h, &o, &data, &size);
    CHECKF(s == BPG_OK, "bpg_encode_yuv %dx%d %s: %s", w, h, bt::chroma_name(chroma),
           bpg_encoder_error(enc));
    if (s != BPG_OK)
        return;
    const std::vector<uint8_t> file(data, data + size);
    std::vector<uint8_t> out(l.total);
    bpg_info info;
    s = bpg_decode_yuv(dec, file.data(), file.size(), out.data(), out.size(), &info);
    CHECKF(s == BPG_OK, "bpg_decode_yuv %dx%d: %s", w, h, bpg_decoder_error(dec));
    if (s != BPG_OK)
        return;
    // Compare the real areas only; the decoder makes its own padding.
    const double py = bt::psnr(yuv.data(), out.data(), l.y_size);
    CHECKF(py > 35, "%dx%d %s: luma PSNR %.2f at qp 20", w, h, bt::chroma_name(chroma), py);
    // Padding of the decoded planes replicates the last real column/row.
    bool pad_ok = true;
    for (int y = 0; y < l.coded_h; ++y)
        for (int x = 0; x < l.coded_w; ++x)
            pad_ok =
                pad_ok &&
                out[static_cast<size_t>(y) * l.coded_w + x] ==
                    out[static_cast<size_t>(y < h ? y : h - 1) * l.coded_w + (x < w ? x : w - 1)];
    CHECKF(pad_ok, "decoded luma padding of %dx%d is not edge replication", w, h);
    // bpg_yuv_to_rgb of the decoded planes is what bpg_decode_rgb gives.
    std::vector<uint8_t> a(3 * static_cast<size_t>(w) * h), b(a.size());
    CHECK(bpg_yuv_to_rgb(out.data(), out.size(), w, h, chroma, a.data(), a.size(), 3 * w) ==
          BPG_OK);
    CHECK(bpg_decode_rgb(dec, file.data(), file.size(), b.data(), b.size(), 3 * w, nullptr) ==
          BPG_OK);
    CHECK(a == b);
}

} // namespace

int main()
{
    bpg_encoder *enc = bpg_encoder_new();
    bpg_decoder *dec = bpg_decoder_new();
    CHECK(enc != nullptr && dec != nullptr);
    const int sizes[][2] = {{1, 1}, {8, 8}, {17, 9}, {64, 64}, {130, 63}};
    uint32_t seed = 7;
    for (const auto &sz : sizes)
        for (int chroma : {BPG_CM_420, BPG_CM_444, BPG_CM_GRAY})
            round_trip(enc, dec, sz[0], sz[1], chroma, seed++);
    // Thin pictures longer than 4216 samples: x265 cannot open a 16x16-CTU
    // encoder that wide, yet the format allows any size up to BPG_MAX_SIDE.
    for (const auto &sz : {std::pair<int, int>{4224, 16}, {16, 4224}, {5000, 3}}) {
        const std::vector<uint8_t> rgb = bt::make_image(sz.first, sz.second, 8);
        const std::vector<uint8_t> file =
            bt::encode(enc, rgb, sz.first, sz.second, 30, BPG_CM_420, 1);
        if (!file.empty())
            CHECK(bt::decode(dec, file, sz.first, sz.second).size() == rgb.size());
    }
    round_trip(enc, dec, 17, 9, BPG_CM_422, 3);
    round_trip(enc, dec, 33, 40, BPG_CM_422, 4);
    for (int chroma : {BPG_CM_GRAY, BPG_CM_420, BPG_CM_422, BPG_CM_444}) {
        yuv_round_trip(enc, dec, 23, 11, chroma);
        yuv_round_trip(enc, dec, 3, 2, chroma);
    }
    bpg_encoder_free(enc);
    bpg_decoder_free(dec);
    return bt::finish("test_roundtrip");
}
