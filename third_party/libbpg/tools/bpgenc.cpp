// bpgenc-npp: PNG/PPM/PGM in, .bpg out, through libbpg-npp. Options follow
// the reference bpgenc where the library supports them.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bpg/bpg.h"
#include "image_io.h"

namespace
{

void usage(FILE *out)
{
    std::fprintf(out, "usage: bpgenc-npp [options] input.png|input.ppm|input.pgm\n"
                      "Encode an 8-bit image as BPG (YCbCr BT.601 full range, x265).\n"
                      "options:\n"
                      "  -o FILE        output file (default out.bpg)\n"
                      "  -q QP          quantizer 0..51, lower is better quality (default 29)\n"
                      "  -f FORMAT      chroma format: 420, 422, 444 or gray (default 420)\n"
                      "  -m LEVEL       compression level 1..9, higher is slower and smaller "
                      "(default 8)\n"
                      "  -b DEPTH       bit depth; only 8 is supported (default 8)\n"
                      "  --x265 PARAMS  extra x265 parameters, \"name=value:name=value\"\n"
                      "  -h, --help     show this help\n");
}

// Prints "bpgenc-npp: <msg>" to stderr and returns the error exit code.
int fail(const std::string &msg)
{
    std::fprintf(stderr, "bpgenc-npp: %s\n", msg.c_str());
    return 1;
}

// Strict decimal integer in [lo, hi]: the whole string must be the number.
bool parse_int(const char *s, int lo, int hi, int *out)
{
    if (s == nullptr || *s == 0)
        return false;
    char *end = nullptr;
    errno = 0;
    const long v = std::strtol(s, &end, 10);
    if (errno != 0 || *end != 0 || v < lo || v > hi)
        return false;
    *out = static_cast<int>(v);
    return true;
}

bool parse_chroma(const std::string &s, int *chroma)
{
    if (s == "420")
        *chroma = BPG_CM_420;
    else if (s == "422")
        *chroma = BPG_CM_422;
    else if (s == "444")
        *chroma = BPG_CM_444;
    else if (s == "gray" || s == "grey" || s == "400")
        *chroma = BPG_CM_GRAY;
    else
        return false;
    return true;
}

} // namespace

int main(int argc, char **argv)
{
    bpg_encode_options opts;
    bpg_encode_options_init(&opts);
    std::string out_path = "out.bpg", in_path, x265_params;
    bool have_input = false;

    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            usage(stdout);
            return 0;
        }
        const bool takes_value = arg == "-o" || arg == "-q" || arg == "-f" || arg == "-m" ||
                                 arg == "-b" || arg == "--x265";
        if (takes_value) {
            if (i + 1 >= argc)
                return fail("option " + arg + " needs a value (see -h)");
            const char *v = argv[++i];
            if (arg == "-o") {
                if (*v == 0)
                    return fail("-o needs a file name");
                out_path = v;
            } else if (arg == "-q") {
                if (!parse_int(v, 0, 51, &opts.qp))
                    return fail(std::string("-q must be an integer in 0..51, got '") + v + "'");
            } else if (arg == "-f") {
                if (!parse_chroma(v, &opts.chroma))
                    return fail(std::string("-f must be 420, 422, 444 or gray, got '") + v +
                                "' (co-sited 420_video/422_video are not supported)");
            } else if (arg == "-m") {
                if (!parse_int(v, 1, 9, &opts.level))
                    return fail(std::string("-m must be an integer in 1..9, got '") + v + "'");
            } else if (arg == "-b") {
                if (!parse_int(v, 8, 8, &opts.bit_depth))
                    return fail(std::string("-b: only bit depth 8 is supported, got '") + v + "'");
            } else {
                x265_params = v;
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
    if (!x265_params.empty())
        opts.x265_params = x265_params.c_str();

    bpgtools::Image img;
    std::string err, warning;
    if (!bpgtools::read_image(in_path, &img, &err, &warning))
        return fail(err);
    if (!warning.empty())
        std::fprintf(stderr, "bpgenc-npp: warning: %s: %s\n", in_path.c_str(), warning.c_str());

    bpg_encoder *enc = bpg_encoder_new();
    if (enc == nullptr)
        return fail("out of memory");
    const uint8_t *data = nullptr;
    size_t size = 0;
    const bpg_status s = bpg_encode_rgb(enc, img.rgb.data(), img.width, img.height, img.stride(),
                                        &opts, &data, &size);
    if (s != BPG_OK) {
        const std::string msg = std::string("cannot encode '") + in_path +
                                "': " + bpg_status_string(s) + ": " + bpg_encoder_error(enc);
        bpg_encoder_free(enc);
        return fail(msg);
    }
    const bool ok = bpgtools::write_file(out_path, data, size, &err);
    bpg_encoder_free(enc);
    if (!ok)
        return fail(err);
    return 0;
}
