// Test (8): the command-line tools. Encodes a test image with bpgenc-npp,
// decodes with bpgdec-npp, compares with the C API, and checks that bad
// options and inputs exit with 1 and a message.
// Usage: test_cli BPGENC BPGDEC WORK_DIR
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bpg/bpg.h"
#include "image_io.h"
#include "test_util.h"

namespace
{

using Bytes = std::vector<uint8_t>;
std::string g_enc, g_dec, g_dir;

std::string in_dir(const std::string &name) { return g_dir + "/" + name; }

std::string quote(const std::string &s) { return "'" + s + "'"; }

Bytes slurp(const std::string &file)
{
    Bytes b;
    std::string err;
    bpgtools::read_file(file, &b, &err);
    return b;
}

std::string slurp_text(const std::string &file)
{
    const Bytes b = slurp(file);
    return std::string(b.begin(), b.end());
}

// coreutils' timeout, when present, bounds each run: a hung tool must fail
// the test rather than stall it.
const std::string &timeout_prefix()
{
    static const std::string p =
        std::system("command -v timeout >/dev/null 2>&1") == 0 ? "timeout 10 " : "";
    return p;
}

// Runs `tool args` in the work directory; stdout and stderr go to files.
// Returns the exit code (-1 if it did not exit normally, 124 on timeout).
int run(const std::string &tool, const std::string &args, std::string *out = nullptr,
        std::string *err = nullptr)
{
    const std::string cmd = "cd " + quote(g_dir) + " && " + timeout_prefix() + quote(tool) + " " +
                            args + " >cli_stdout.txt 2>cli_stderr.txt";
    const int status = std::system(cmd.c_str());
    if (out != nullptr)
        *out = slurp_text(in_dir("cli_stdout.txt"));
    if (err != nullptr)
        *err = slurp_text(in_dir("cli_stderr.txt"));
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The command must fail with exit code 1 and say something on stderr.
void expect_error(const std::string &tool, const std::string &args, const char *mention = nullptr)
{
    std::string err;
    const int rc = run(tool, args, nullptr, &err);
    CHECKF(rc == 1, "'%s %s' exited with %d, want 1", tool.c_str(), args.c_str(), rc);
    CHECKF(!err.empty(), "'%s %s' printed no error", tool.c_str(), args.c_str());
    if (mention != nullptr)
        CHECKF(err.find(mention) != std::string::npos, "'%s': message '%s' lacks '%s'",
               args.c_str(), err.c_str(), mention);
}

void expect_ok(const std::string &tool, const std::string &args, std::string *out = nullptr)
{
    std::string err;
    const int rc = run(tool, args, out, &err);
    CHECKF(rc == 0, "'%s %s' exited with %d: %s", tool.c_str(), args.c_str(), rc, err.c_str());
}

bpg_info info_of(const Bytes &file)
{
    bpg_info info{};
    char err[128] = {0};
    CHECKF(bpg_read_info(file.data(), file.size(), &info, err, sizeof(err)) == BPG_OK, "%s", err);
    return info;
}

void test_encode_decode()
{
    const int w = 37, h = 29;
    const Bytes rgb = bt::make_image(w, h, 21);
    std::string err;
    CHECK(bpgtools::write_png(in_dir("in.png"), rgb.data(), w, h, 3 * w, &err));
    CHECK(bpgtools::write_ppm(in_dir("in.ppm"), rgb.data(), w, h, 3 * w, &err));

    expect_ok(g_enc, "-q 28 -m 3 -o a.bpg in.png");
    const Bytes file = slurp(in_dir("a.bpg"));
    const bpg_info info = info_of(file);
    CHECK(info.width == w && info.height == h && info.chroma == BPG_CM_420);

    // The tool's file is what the library makes from the same pixels.
    bpg_encoder *enc = bpg_encoder_new();
    CHECK(bt::encode(enc, rgb, w, h, 28, BPG_CM_420, 3) == file);
    bpg_encoder_free(enc);
    // PPM input gives the same file as PNG input.
    expect_ok(g_enc, "-q 28 -m 3 -o b.bpg in.ppm");
    CHECK(slurp(in_dir("b.bpg")) == file);

    // Decode to PNG and PPM: both are bpg_decode_rgb's pixels.
    bpg_decoder *dec = bpg_decoder_new();
    const Bytes want = bt::decode(dec, file, w, h);
    expect_ok(g_dec, "-o a.png a.bpg");
    expect_ok(g_dec, "-o a.ppm a.bpg");
    for (const char *name : {"a.png", "a.ppm"}) {
        bpgtools::Image img;
        CHECKF(bpgtools::read_image(in_dir(name), &img, &err, nullptr), "%s", err.c_str());
        CHECKF(img.width == w && img.height == h && img.rgb == want, "%s: pixels differ", name);
    }

    // --yuv: the padded planar layout of bpg_decode_yuv.
    std::string out;
    expect_ok(g_dec, "--yuv a.yuv a.bpg", &out);
    const bpg_cm_layout l = bpg_cm_make_layout(w, h, BPG_CM_420);
    Bytes yuv(l.total);
    CHECK(bpg_decode_yuv(dec, file.data(), file.size(), yuv.data(), yuv.size(), nullptr) == BPG_OK);
    CHECK(slurp(in_dir("a.yuv")) == yuv);
    CHECKF(out.find("40x32") != std::string::npos, "--yuv does not report the plane size: %s",
           out.c_str());
    // --annexb: the synthesized stream of bpg_decoder_annexb.
    expect_ok(g_dec, "--annexb a.hevc a.bpg");
    const uint8_t *annexb = nullptr;
    size_t annexb_size = 0;
    CHECK(bpg_decoder_annexb(dec, file.data(), file.size(), &annexb, &annexb_size) == BPG_OK);
    CHECK(slurp(in_dir("a.hevc")) == Bytes(annexb, annexb + annexb_size));
    bpg_decoder_free(dec);

    // -i prints the header.
    expect_ok(g_dec, "-i a.bpg", &out);
    for (const char *s : {"37x29", "4:2:0", "bit depth: 8", "BT.601"})
        CHECKF(out.find(s) != std::string::npos, "-i output lacks '%s':\n%s", s, out.c_str());

    // Other formats and the defaults (out.bpg, out.png).
    expect_ok(g_enc, "-f 444 -m 2 -o c.bpg in.png");
    CHECK(info_of(slurp(in_dir("c.bpg"))).chroma == BPG_CM_444);
    expect_ok(g_enc, "-f gray -m 2 -o d.bpg in.png");
    CHECK(info_of(slurp(in_dir("d.bpg"))).chroma == BPG_CM_GRAY);
    expect_ok(g_enc, "-f 422 -m 2 -q 0 -b 8 --x265 rdoq-level=1 -o e.bpg in.png");
    CHECK(info_of(slurp(in_dir("e.bpg"))).chroma == BPG_CM_422);
    std::error_code ec;
    std::filesystem::remove(in_dir("out.bpg"), ec);
    std::filesystem::remove(in_dir("out.png"), ec);
    expect_ok(g_enc, "-m 1 in.png");
    CHECK(info_of(slurp(in_dir("out.bpg"))).width == w);
    expect_ok(g_dec, "out.bpg");
    CHECK(std::filesystem::exists(in_dir("out.png")));
    expect_ok(g_enc, "-h", &out);
    CHECK(out.find("usage") != std::string::npos);
    expect_ok(g_dec, "--help", &out);
    CHECK(out.find("usage") != std::string::npos);
}

void test_errors()
{
    // Options out of range or unknown.
    expect_error(g_enc, "-q 52 in.png", "0..51");
    expect_error(g_enc, "-q -1 in.png", "0..51");
    expect_error(g_enc, "-q 3x in.png", "0..51");
    expect_error(g_enc, "-q", "needs a value");
    expect_error(g_enc, "-m 0 in.png", "1..9");
    expect_error(g_enc, "-m 10 in.png", "1..9");
    expect_error(g_enc, "-f 411 in.png", "420");
    expect_error(g_enc, "-f 420_video in.png", "420");
    expect_error(g_enc, "-b 10 in.png", "8");
    expect_error(g_enc, "-z in.png", "unknown option");
    expect_error(g_enc, "--x265 bogus-option=1 in.png", "bogus-option");
    expect_error(g_enc, "--x265 keyint=5 in.png", "keyint");
    // x265 options that make x265 itself crash (analysis-save) or wait
    // forever for data (ctu-info) on a single intra picture must be refused.
    expect_error(g_enc, "-m 1 -o x.bpg --x265 analysis-save=an.dat in.png", "analysis-save");
    if (!timeout_prefix().empty())
        expect_error(g_enc, "-m 1 -o x.bpg --x265 ctu-info=1 in.png", "ctu-info");
    expect_error(g_enc, "in.png in.ppm", "one input");
    expect_error(g_enc, "", "no input");
    // Inputs that are not images, or missing.
    expect_error(g_enc, "missing.png", "missing.png");
    expect_error(g_enc, "-o x.bpg a.bpg", "unknown image format");
    expect_error(g_enc, "-o no/such/dir/x.bpg in.png", "no/such/dir");

    expect_error(g_dec, "-o x.jpg a.bpg", ".png or .ppm");
    expect_error(g_dec, "-x a.bpg", "unknown option");
    expect_error(g_dec, "-o", "needs a file name");
    expect_error(g_dec, "", "no input");
    expect_error(g_dec, "missing.bpg", "missing.bpg");
    expect_error(g_dec, "-o x.png in.png", "magic");
    expect_error(g_dec, "-i in.png", "magic");
    expect_error(g_dec, "-o no/such/dir/x.png a.bpg", "no/such/dir");
    // A truncated file: the header is fine, the picture is not.
    Bytes file = slurp(in_dir("a.bpg"));
    file.resize(file.size() / 2);
    std::string err;
    CHECK(bpgtools::write_file(in_dir("half.bpg"), file.data(), file.size(), &err));
    expect_error(g_dec, "-o x.png half.bpg", "decode");
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 4) {
        std::fprintf(stderr, "usage: test_cli BPGENC BPGDEC WORK_DIR\n");
        return 2;
    }
    g_enc = std::filesystem::absolute(argv[1]).string();
    g_dec = std::filesystem::absolute(argv[2]).string();
    g_dir = std::filesystem::absolute(argv[3]).string();
    std::error_code ec;
    std::filesystem::create_directories(g_dir, ec);
    test_encode_decode();
    test_errors();
    return bt::finish("test_cli");
}
