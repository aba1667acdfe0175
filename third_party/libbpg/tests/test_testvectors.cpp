// Test (4): every reference .bpg decodes with bpg_decode_rgb to exactly the
// reference decoder's output X.dec.png. Skipped (exit 77) when the vectors
// are absent. Usage: test_testvectors DIR
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "bpg/bpg.h"
#include "image_io.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace
{

void check_vector(bpg_decoder *dec, const fs::path &bpg_path)
{
    const std::string name = bpg_path.filename().string();
    fs::path png_path = bpg_path;
    png_path.replace_extension(".dec.png");
    std::vector<uint8_t> file;
    std::string err;
    bpgtools::Image ref;
    if (!bpgtools::read_file(bpg_path.string(), &file, &err) ||
        !bpgtools::read_image(png_path.string(), &ref, &err, nullptr)) {
        CHECKF(false, "%s: %s", name.c_str(), err.c_str());
        return;
    }
    bpg_info info;
    char msg[200];
    bpg_status s = bpg_read_info(file.data(), file.size(), &info, msg, sizeof(msg));
    CHECKF(s == BPG_OK, "%s: bpg_read_info: %s", name.c_str(), msg);
    if (s != BPG_OK)
        return;
    CHECKF(info.width == ref.width && info.height == ref.height, "%s: %dx%d, reference %dx%d",
           name.c_str(), info.width, info.height, ref.width, ref.height);
    if (info.width != ref.width || info.height != ref.height)
        return;

    std::vector<uint8_t> rgb(ref.rgb.size(), 0);
    s = bpg_decode_rgb(dec, file.data(), file.size(), rgb.data(), rgb.size(), ref.stride(),
                       nullptr);
    CHECKF(s == BPG_OK, "%s: %s: %s", name.c_str(), bpg_status_string(s), bpg_decoder_error(dec));
    if (s != BPG_OK)
        return;
    size_t differing = 0;
    for (size_t i = 0; i < rgb.size(); ++i)
        differing += rgb[i] != ref.rgb[i];
    const int maxd = bt::max_abs_diff(rgb.data(), ref.rgb.data(), rgb.size());
    CHECKF(differing == 0, "%s: %zu of %zu samples differ from the reference, max |diff| %d",
           name.c_str(), differing, rgb.size(), maxd);

    // The planar path plus bpg_yuv_to_rgb must agree with bpg_decode_rgb.
    const bpg_cm_layout l = bpg_cm_make_layout(info.width, info.height, info.chroma);
    std::vector<uint8_t> yuv(l.total), rgb2(rgb.size());
    s = bpg_decode_yuv(dec, file.data(), file.size(), yuv.data(), yuv.size(), nullptr);
    CHECKF(s == BPG_OK, "%s: bpg_decode_yuv: %s", name.c_str(), bpg_decoder_error(dec));
    if (s == BPG_OK) {
        CHECK(bpg_yuv_to_rgb(yuv.data(), yuv.size(), info.width, info.height, info.chroma,
                             rgb2.data(), rgb2.size(), ref.stride()) == BPG_OK);
        CHECKF(rgb2 == rgb, "%s: decode_yuv + yuv_to_rgb differs from decode_rgb", name.c_str());
    }
    std::printf("%-36s %4dx%-4d %s  max |diff| %d\n", name.c_str(), info.width, info.height,
                bt::chroma_name(info.chroma), maxd);
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: test_testvectors DIR\n");
        return 2;
    }
    const fs::path dir = argv[1];
    std::vector<fs::path> files;
    std::error_code ec;
    if (fs::is_directory(dir, ec))
        for (const fs::directory_entry &e : fs::directory_iterator(dir, ec))
            if (e.path().extension() == ".bpg")
                files.push_back(e.path());
    if (files.empty()) {
        std::printf("SKIP: no test vectors (*.bpg) in '%s'; set BPG_TESTVECTORS_DIR\n",
                    dir.string().c_str());
        return bt::kSkip;
    }
    std::sort(files.begin(), files.end());
    bpg_decoder *dec = bpg_decoder_new();
    for (const fs::path &p : files)
        check_vector(dec, p);
    bpg_decoder_free(dec);
    std::printf("%zu test vectors\n", files.size());
    return bt::finish("test_testvectors");
}
