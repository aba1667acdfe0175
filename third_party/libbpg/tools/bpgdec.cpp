// bpgdec-npp: .bpg in, PNG/PPM out (plus the raw planes or the Annex-B
// HEVC stream for other decoders), through libbpg-npp.
#include <cstdio>
#include <string>
#include <vector>

#include "bpg/bpg.h"
#include "image_io.h"

namespace
{

void usage(FILE *out)
{
    std::fprintf(out, "usage: bpgdec-npp [options] input.bpg\n"
                      "Decode a BPG image (8-bit, YCbCr BT.601 full range, no alpha).\n"
                      "options:\n"
                      "  -o FILE         decoded RGB image, .png or .ppm by extension\n"
                      "                  (default out.png when no other output is asked for)\n"
                      "  -i              print the header information; alone, decode nothing\n"
                      "  --yuv FILE      write the decoded planes: Y, Cb, Cr, 8-bit, each padded\n"
                      "                  to the coded size (edge samples replicated)\n"
                      "  --annexb FILE   write the Annex-B HEVC stream (synthesized VPS and SPS,\n"
                      "                  then the file's NAL units), e.g. for ffmpeg -f hevc\n"
                      "  -h, --help      show this help\n");
}

int fail(const std::string &msg)
{
    std::fprintf(stderr, "bpgdec-npp: %s\n", msg.c_str());
    return 1;
}

const char *pixel_format_name(int pf)
{
    static const char *const kNames[] = {"gray",
                                         "4:2:0",
                                         "4:2:2",
                                         "4:4:4",
                                         "4:2:0 (co-sited, MPEG-2 siting)",
                                         "4:2:2 (co-sited, MPEG-2 siting)"};
    return pf >= 0 && pf <= 5 ? kNames[pf] : "invalid";
}

const char *color_space_name(int cs)
{
    static const char *const kNames[] = {"YCbCr BT.601", "RGB", "YCgCo", "YCbCr BT.709",
                                         "YCbCr BT.2020"};
    return cs >= 0 && cs <= 4 ? kNames[cs] : "invalid";
}

// Block size from its log2, without shifting by a hostile header's value.
long block_size(int log2) { return log2 >= 0 && log2 < 31 ? 1L << log2 : -1L; }

const char *yes_no(int v) { return v ? "yes" : "no"; }
const char *on_off(int v) { return v ? "on" : "off"; }

void print_info(const std::string &path, const bpg_info &in)
{
    std::printf("%s:\n", path.c_str());
    std::printf("  size: %dx%d\n", in.width, in.height);
    std::printf("  pixel format: %d (%s)\n", in.pixel_format, pixel_format_name(in.pixel_format));
    std::printf("  bit depth: %d\n", in.bit_depth);
    std::printf("  colour space: %d (%s)%s\n", in.color_space, color_space_name(in.color_space),
                in.limited_range ? ", limited range" : ", full range");
    std::printf("  alpha: %s\n", yes_no(in.has_alpha));
    std::printf("  animation: %s\n", yes_no(in.animation));
    std::printf("  extensions: %s\n", yes_no(in.has_extensions));
    std::printf("  hevc_header: CB %ld..%ld, TB %ld..%ld, max intra TU depth %d, SAO %s, PCM %s, "
                "strong intra smoothing %s\n",
                block_size(in.log2_min_cb_size), block_size(in.log2_max_cb_size),
                block_size(in.log2_min_tb_size), block_size(in.log2_max_tb_size),
                in.max_transform_hierarchy_depth_intra, on_off(in.sao), on_off(in.pcm),
                on_off(in.strong_intra_smoothing));
    std::printf("  hevc_data: %zu bytes at offset %zu\n", in.hevc_data_size, in.hevc_data_offset);
}

int decode_image(bpg_decoder *dec, const std::vector<uint8_t> &file, const bpg_info &info,
                 const std::string &out_path)
{
    const std::string ext = bpgtools::file_extension(out_path);
    const ptrdiff_t stride = 3 * static_cast<ptrdiff_t>(info.width);
    std::vector<uint8_t> rgb(static_cast<size_t>(stride) * static_cast<size_t>(info.height));
    const bpg_status s =
        bpg_decode_rgb(dec, file.data(), file.size(), rgb.data(), rgb.size(), stride, nullptr);
    if (s != BPG_OK)
        return fail(std::string("cannot decode: ") + bpg_status_string(s) + ": " +
                    bpg_decoder_error(dec));
    std::string err;
    const bool ok =
        ext == ".ppm"
            ? bpgtools::write_ppm(out_path, rgb.data(), info.width, info.height, stride, &err)
            : bpgtools::write_png(out_path, rgb.data(), info.width, info.height, stride, &err);
    return ok ? 0 : fail(err);
}

int decode_yuv(bpg_decoder *dec, const std::vector<uint8_t> &file, const bpg_info &info,
               const std::string &out_path)
{
    const bpg_cm_layout l = bpg_cm_make_layout(info.width, info.height, info.chroma);
    std::vector<uint8_t> yuv(l.total);
    const bpg_status s =
        bpg_decode_yuv(dec, file.data(), file.size(), yuv.data(), yuv.size(), nullptr);
    if (s != BPG_OK)
        return fail(std::string("cannot decode: ") + bpg_status_string(s) + ": " +
                    bpg_decoder_error(dec));
    std::string err;
    if (!bpgtools::write_file(out_path, yuv.data(), yuv.size(), &err))
        return fail(err);
    // The padded plane sizes are what a raw-video reader needs to be told.
    if (info.chroma == BPG_CM_GRAY)
        std::printf("%s: Y %dx%d (gray), %zu bytes\n", out_path.c_str(), l.coded_w, l.coded_h,
                    l.total);
    else
        std::printf("%s: Y %dx%d, Cb and Cr %dx%d each, %zu bytes\n", out_path.c_str(), l.coded_w,
                    l.coded_h, l.coded_cw, l.coded_ch, l.total);
    return 0;
}

int write_annexb(bpg_decoder *dec, const std::vector<uint8_t> &file, const std::string &out_path)
{
    const uint8_t *data = nullptr;
    size_t size = 0;
    const bpg_status s = bpg_decoder_annexb(dec, file.data(), file.size(), &data, &size);
    if (s != BPG_OK)
        return fail(std::string("cannot build the Annex-B stream: ") + bpg_status_string(s) + ": " +
                    bpg_decoder_error(dec));
    std::string err;
    return bpgtools::write_file(out_path, data, size, &err) ? 0 : fail(err);
}

} // namespace

int main(int argc, char **argv)
{
    std::string in_path, out_path, yuv_path, annexb_path;
    bool have_input = false, show_info = false, have_out = false;

    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            usage(stdout);
            return 0;
        }
        if (arg == "-i") {
            show_info = true;
            continue;
        }
        if (arg == "-o" || arg == "--yuv" || arg == "--annexb") {
            if (i + 1 >= argc || argv[i + 1][0] == 0)
                return fail("option " + arg + " needs a file name (see -h)");
            const std::string v = argv[++i];
            if (arg == "-o") {
                out_path = v;
                have_out = true;
            } else if (arg == "--yuv") {
                yuv_path = v;
            } else {
                annexb_path = v;
            }
            continue;
        }
        if (arg.size() > 1 && arg[0] == '-')
            return fail("unknown option '" + arg + "' (see -h)");
        if (have_input)
            return fail("only one input file may be given ('" + in_path + "' and '" + arg + "')");
        in_path = arg;
        have_input = true;
    }
    if (!have_input) {
        usage(stderr);
        return fail("no input file given");
    }
    // Like the reference bpgdec, -i alone only shows the header.
    if (!have_out && yuv_path.empty() && annexb_path.empty() && !show_info) {
        out_path = "out.png";
        have_out = true;
    }
    if (have_out) {
        const std::string ext = bpgtools::file_extension(out_path);
        if (ext != ".png" && ext != ".ppm")
            return fail("-o: the output must end in .png or .ppm, got '" + out_path + "'");
    }

    std::vector<uint8_t> file;
    std::string err;
    if (!bpgtools::read_file(in_path, &file, &err))
        return fail(err);

    bpg_info info{};
    char msg[256];
    const bpg_status s = bpg_read_info(file.data(), file.size(), &info, msg, sizeof(msg));
    const bool decode = have_out || !yuv_path.empty() || !annexb_path.empty();
    if (s != BPG_OK) {
        // An unsupported feature still leaves a header worth showing, and a
        // stream other decoders may handle (10-bit, other colour spaces).
        if (s == BPG_ERR_UNSUPPORTED && show_info) {
            print_info(in_path, info);
            std::printf("  note: this library cannot decode it: %s\n", msg);
        }
        if (s == BPG_ERR_UNSUPPORTED && !have_out && yuv_path.empty()) {
            if (annexb_path.empty())
                return show_info ? 0 : fail(in_path + ": " + msg);
            bpg_decoder *dec = bpg_decoder_new();
            const int rc = dec != nullptr ? write_annexb(dec, file, annexb_path) : 1;
            bpg_decoder_free(dec);
            return rc;
        }
        return fail(in_path + ": " + bpg_status_string(s) + ": " + msg);
    }
    if (show_info)
        print_info(in_path, info);
    if (!decode)
        return 0;

    bpg_decoder *dec = bpg_decoder_new();
    if (dec == nullptr)
        return fail("out of memory");
    int rc = 0;
    if (have_out)
        rc = decode_image(dec, file, info, out_path);
    if (rc == 0 && !yuv_path.empty())
        rc = decode_yuv(dec, file, info, yuv_path);
    if (rc == 0 && !annexb_path.empty())
        rc = write_annexb(dec, file, annexb_path);
    bpg_decoder_free(dec);
    return rc;
}
