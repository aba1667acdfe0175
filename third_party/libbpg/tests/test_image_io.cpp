// The tools' image I/O (tools/image_io.cpp): every PNG colour type and bit
// depth to 8-bit RGB, PPM/PGM, and clean errors for broken files.
// Usage: test_image_io WORK_DIR
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <png.h>

#include "image_io.h"
#include "test_util.h"

namespace
{

using Bytes = std::vector<uint8_t>;
std::string g_dir;

std::string path(const std::string &name) { return g_dir + "/" + name; }

struct RawPng {
    int w = 0, h = 0, depth = 8, ctype = PNG_COLOR_TYPE_RGB;
    bool interlace = false;
    Bytes rows; // packed rows as libpng expects them for depth/ctype
    std::vector<png_color> palette;
    Bytes trns;
};

// Writes a PNG exactly as described (no conversions), for the reader to
// convert. Test-only: errors just fail the check.
bool write_raw_png(const std::string &file, const RawPng &p)
{
    FILE *fp = std::fopen(file.c_str(), "wb");
    if (fp == nullptr)
        return false;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    const size_t row_bytes = p.rows.size() / static_cast<size_t>(p.h);
    std::vector<png_bytep> rows(static_cast<size_t>(p.h));
    for (int y = 0; y < p.h; ++y)
        rows[static_cast<size_t>(y)] = const_cast<png_bytep>(p.rows.data()) + row_bytes * y;
    bool ok = false;
    if (setjmp(png_jmpbuf(png)) == 0) {
        png_init_io(png, fp);
        png_set_IHDR(png, info, static_cast<png_uint_32>(p.w), static_cast<png_uint_32>(p.h),
                     p.depth, p.ctype, p.interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        if (!p.palette.empty())
            png_set_PLTE(png, info, p.palette.data(), static_cast<int>(p.palette.size()));
        if (!p.trns.empty())
            png_set_tRNS(png, info, p.trns.data(), static_cast<int>(p.trns.size()), nullptr);
        png_write_info(png, info);
        png_write_image(png, rows.data());
        png_write_end(png, nullptr);
        ok = true;
    }
    png_destroy_write_struct(&png, &info);
    std::fclose(fp);
    return ok;
}

bpgtools::Image read_ok(const std::string &file, std::string *warning, const char *what)
{
    bpgtools::Image img;
    std::string err;
    const bool ok = bpgtools::read_image(file, &img, &err, warning);
    CHECKF(ok, "%s: %s", what, err.c_str());
    return img;
}

void expect_fail(const std::string &file, const char *what, const char *must_mention = nullptr)
{
    bpgtools::Image img;
    std::string err, warning;
    const bool ok = bpgtools::read_image(file, &img, &err, &warning);
    CHECKF(!ok, "%s: read succeeded", what);
    CHECKF(!err.empty(), "%s: no message", what);
    if (must_mention != nullptr)
        CHECKF(err.find(must_mention) != std::string::npos, "%s: message '%s' lacks '%s'", what,
               err.c_str(), must_mention);
}

void write_bytes(const std::string &file, const Bytes &b)
{
    std::string err;
    CHECKF(bpgtools::write_file(file, b.data(), b.size(), &err), "%s", err.c_str());
}

void test_rgb_round_trips()
{
    const int w = 37, h = 23;
    const Bytes rgb = bt::make_image(w, h, 11);
    // Source rows with slack, to check the writers honour the stride.
    const ptrdiff_t stride = 3 * w + 4;
    Bytes padded(static_cast<size_t>(stride) * h, 0xEE);
    for (int y = 0; y < h; ++y)
        std::memcpy(&padded[static_cast<size_t>(y) * stride], &rgb[static_cast<size_t>(y) * 3 * w],
                    3 * static_cast<size_t>(w));
    std::string err, warning;
    CHECKF(bpgtools::write_png(path("rt.png"), padded.data(), w, h, stride, &err), "%s",
           err.c_str());
    CHECKF(bpgtools::write_ppm(path("rt.ppm"), padded.data(), w, h, stride, &err), "%s",
           err.c_str());
    for (const char *name : {"rt.png", "rt.ppm"}) {
        const bpgtools::Image img = read_ok(path(name), &warning, name);
        CHECKF(img.width == w && img.height == h && img.rgb == rgb, "%s: pixels differ", name);
        CHECKF(warning.empty(), "%s: unexpected warning '%s'", name, warning.c_str());
    }
    // PGM with a comment in its header: gray replicated to RGB.
    std::string pgm = "P5\n# made by test_image_io\n3 2\n255\n";
    const uint8_t g[6] = {0, 1, 127, 128, 254, 255};
    pgm.append(reinterpret_cast<const char *>(g), 6);
    write_bytes(path("g.pgm"), Bytes(pgm.begin(), pgm.end()));
    const bpgtools::Image img = read_ok(path("g.pgm"), nullptr, "PGM");
    bool gray_ok = img.width == 3 && img.height == 2;
    for (int i = 0; gray_ok && i < 6; ++i)
        gray_ok =
            img.rgb[3 * i] == g[i] && img.rgb[3 * i + 1] == g[i] && img.rgb[3 * i + 2] == g[i];
    CHECK(gray_ok);
    // Writing refuses nonsense instead of crashing.
    CHECK(!bpgtools::write_png(path("bad.png"), nullptr, 4, 4, 12, &err) && !err.empty());
    CHECK(!bpgtools::write_ppm(path("bad.ppm"), rgb.data(), 0, 4, 12, &err) && !err.empty());
    CHECK(!bpgtools::write_png(path("bad.png"), rgb.data(), 4, 4, 11, &err) && !err.empty());
    CHECK(!bpgtools::write_png(path("no/such/dir/x.png"), rgb.data(), 4, 4, 12, &err) &&
          !err.empty());
    CHECK(!bpgtools::write_ppm(path("no/such/dir/x.ppm"), rgb.data(), 4, 4, 12, &err) &&
          !err.empty());
    // A failed write removes a partial regular file, never what the path links to
    // (here a symlink to /dev/full, which refuses every write).
    if (std::filesystem::exists("/dev/full")) {
        const std::string link = path("full.ppm");
        std::error_code ec;
        std::filesystem::remove(link, ec);
        std::filesystem::create_symlink("/dev/full", link, ec);
        CHECK(!ec);
        CHECK(!bpgtools::write_ppm(link, rgb.data(), 4, 4, 12, &err) && !err.empty());
        CHECK(!bpgtools::write_png(link, rgb.data(), 4, 4, 12, &err) && !err.empty());
        const Bytes big(1 << 16, 7); // more than stdio buffers before the write fails
        CHECK(!bpgtools::write_file(link, big.data(), big.size(), &err) && !err.empty());
        CHECK(std::filesystem::is_symlink(link));
    }
}

void test_png_variants()
{
    const int w = 5, h = 3;
    std::string warning;

    // 8-bit gray -> R = G = B.
    RawPng gray;
    gray.w = w;
    gray.h = h;
    gray.ctype = PNG_COLOR_TYPE_GRAY;
    for (int i = 0; i < w * h; ++i)
        gray.rows.push_back(static_cast<uint8_t>(i * 17));
    CHECK(write_raw_png(path("gray8.png"), gray));
    bpgtools::Image img = read_ok(path("gray8.png"), &warning, "gray8");
    bool ok = img.width == w && img.height == h && warning.empty();
    for (int i = 0; ok && i < w * h; ++i)
        ok = img.rgb[3 * i] == i * 17 && img.rgb[3 * i + 1] == i * 17 &&
             img.rgb[3 * i + 2] == i * 17;
    CHECKF(ok, "8-bit gray");

    // 1-bit gray: each row padded to a byte; 1 -> 255.
    RawPng bits;
    bits.w = 10;
    bits.h = 2;
    bits.depth = 1;
    bits.ctype = PNG_COLOR_TYPE_GRAY;
    bits.rows = {0xA5, 0x80, 0x0F, 0x40}; // rows: 1010010110, 0000111101
    CHECK(write_raw_png(path("gray1.png"), bits));
    img = read_ok(path("gray1.png"), &warning, "gray1");
    const char *want_bits = "10100101100000111101";
    ok = img.width == 10 && img.height == 2;
    for (int i = 0; ok && i < 20; ++i)
        ok = img.rgb[3 * i] == (want_bits[i] == '1' ? 255 : 0);
    CHECKF(ok, "1-bit gray");

    // Palette, then palette with transparency (alpha dropped, warned).
    RawPng pal;
    pal.w = 4;
    pal.h = 1;
    pal.ctype = PNG_COLOR_TYPE_PALETTE;
    pal.palette = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}};
    pal.rows = {3, 2, 1, 0};
    CHECK(write_raw_png(path("pal.png"), pal));
    img = read_ok(path("pal.png"), &warning, "palette");
    const Bytes want_pal = {10, 20, 30, 0, 0, 255, 0, 255, 0, 255, 0, 0};
    CHECKF(img.rgb == want_pal && warning.empty(), "palette: pixels or warning '%s'",
           warning.c_str());
    pal.trns = {255, 0, 128};
    CHECK(write_raw_png(path("pal_trns.png"), pal));
    img = read_ok(path("pal_trns.png"), &warning, "palette+tRNS");
    CHECKF(img.rgb == want_pal, "palette+tRNS: colours changed");
    CHECKF(warning.find("alpha") != std::string::npos, "palette+tRNS: no alpha warning");

    // RGBA and gray+alpha: colour kept as stored, alpha dropped with a warning.
    RawPng rgba;
    rgba.w = 2;
    rgba.h = 1;
    rgba.ctype = PNG_COLOR_TYPE_RGB_ALPHA;
    rgba.rows = {1, 2, 3, 0, 250, 251, 252, 255};
    CHECK(write_raw_png(path("rgba.png"), rgba));
    img = read_ok(path("rgba.png"), &warning, "rgba");
    CHECKF(img.rgb == Bytes({1, 2, 3, 250, 251, 252}), "rgba pixels");
    CHECKF(warning.find("alpha") != std::string::npos, "rgba: no alpha warning");
    RawPng ga;
    ga.w = 2;
    ga.h = 1;
    ga.ctype = PNG_COLOR_TYPE_GRAY_ALPHA;
    ga.rows = {77, 0, 200, 100};
    CHECK(write_raw_png(path("ga.png"), ga));
    img = read_ok(path("ga.png"), &warning, "gray+alpha");
    CHECKF(img.rgb == Bytes({77, 77, 77, 200, 200, 200}), "gray+alpha pixels");
    CHECKF(warning.find("alpha") != std::string::npos, "gray+alpha: no alpha warning");

    // 16-bit RGB: rounded to the nearest 8-bit value (v * 255 / 65535).
    RawPng deep;
    deep.w = 4;
    deep.h = 1;
    deep.depth = 16;
    const uint16_t v16[12] = {0, 65535, 257, 128, 32896, 32767, 1000, 40000, 65000, 300, 385, 386};
    for (uint16_t v : v16) {
        deep.rows.push_back(static_cast<uint8_t>(v >> 8)); // PNG is big-endian
        deep.rows.push_back(static_cast<uint8_t>(v & 255));
    }
    CHECK(write_raw_png(path("rgb16.png"), deep));
    img = read_ok(path("rgb16.png"), &warning, "16-bit");
    ok = img.rgb.size() == 12;
    for (int i = 0; ok && i < 12; ++i) {
        const int want = static_cast<int>((v16[i] * 255.0) / 65535.0 + 0.5);
        ok = std::abs(img.rgb[static_cast<size_t>(i)] - want) <= 0;
        CHECKF(ok, "16-bit sample %d: %u -> %d, want %d", i, v16[i], img.rgb[i], want);
    }
    CHECKF(warning.find("16-bit") != std::string::npos, "16-bit: no note");

    // Interlaced (Adam7) RGB.
    RawPng il;
    il.w = 13;
    il.h = 11;
    il.interlace = true;
    il.rows = bt::make_image(13, 11, 2);
    CHECK(write_raw_png(path("interlaced.png"), il));
    img = read_ok(path("interlaced.png"), &warning, "interlaced");
    CHECKF(img.rgb == il.rows, "interlaced pixels differ");
}

void test_errors()
{
    // The codec's size limits apply from the header, before rows are allocated: one
    // column more than BPG_MAX_SIDE, or BPG_MAX_PIXELS plus one row, is refused.
    const auto ppm = [](int w, int h, size_t data_bytes) {
        const std::string head = "P6\n" + std::to_string(w) + " " + std::to_string(h) + "\n255\n";
        Bytes b(head.begin(), head.end());
        b.resize(b.size() + data_bytes, 9);
        return b;
    };
    write_bytes(path("widest.ppm"), ppm(BPG_MAX_SIDE, 1, 3 * BPG_MAX_SIDE));
    CHECK(read_ok(path("widest.ppm"), nullptr, "a BPG_MAX_SIDE-wide PPM").width == BPG_MAX_SIDE);
    write_bytes(path("too_wide.ppm"), ppm(BPG_MAX_SIDE + 1, 1, 3 * (BPG_MAX_SIDE + 1)));
    expect_fail(path("too_wide.ppm"), "one column too wide", "width exceeds 16384");
    const int rows = static_cast<int>(BPG_MAX_PIXELS / BPG_MAX_SIDE) + 1;
    write_bytes(path("too_many.ppm"), ppm(BPG_MAX_SIDE, rows, 0)); // header alone
    expect_fail(path("too_many.ppm"), "BPG_MAX_PIXELS exceeded", "out of range");
    expect_fail(path("does-not-exist.png"), "missing file", "cannot open");
    write_bytes(path("empty.png"), {});
    expect_fail(path("empty.png"), "empty file", "empty");
    write_bytes(path("junk.bin"), {'h', 'e', 'l', 'l', 'o'});
    expect_fail(path("junk.bin"), "unknown format", "unknown image format");
    const std::string p3 = "P3\n1 1\n255\n0 0 0\n";
    write_bytes(path("ascii.ppm"), Bytes(p3.begin(), p3.end()));
    expect_fail(path("ascii.ppm"), "ASCII PPM", "P6");
    const std::string deep = "P6\n1 1\n65535\n\0\0\0\0\0\0";
    write_bytes(path("deep.ppm"), Bytes(deep.begin(), deep.end()));
    expect_fail(path("deep.ppm"), "16-bit PPM", "maxval");
    const std::string shortp = "P6\n4 4\n255\nabc";
    write_bytes(path("short.ppm"), Bytes(shortp.begin(), shortp.end()));
    expect_fail(path("short.ppm"), "truncated PPM", "truncated");
    const std::string zero = "P6\n0 4\n255\n";
    write_bytes(path("zero.ppm"), Bytes(zero.begin(), zero.end()));
    expect_fail(path("zero.ppm"), "PPM of width 0");
    const std::string huge = "P6\n99999999999 4\n255\n";
    write_bytes(path("huge.ppm"), Bytes(huge.begin(), huge.end()));
    expect_fail(path("huge.ppm"), "PPM of absurd width");
    const std::string nodata = "P5\n2 2\n255";
    write_bytes(path("nodata.pgm"), Bytes(nodata.begin(), nodata.end()));
    expect_fail(path("nodata.pgm"), "PGM without data");

    // Every prefix of a PNG, and every byte of it damaged, fails cleanly or
    // (for damage in ancillary places) still gives a picture of the size.
    std::string err;
    Bytes png;
    CHECK(bpgtools::read_file(path("interlaced.png"), &png, &err));
    int refused = 0;
    for (size_t n = 0; n + 1 < png.size(); ++n) {
        bpgtools::Image img;
        std::string e;
        if (!bpgtools::read_image_mem(png.data(), n, &img, &e, nullptr)) {
            CHECKF(!e.empty(), "PNG prefix %zu: no message", n);
            ++refused;
        }
    }
    // Only the last bytes (the IEND chunk) may be missing unnoticed.
    CHECKF(refused >= static_cast<int>(png.size()) - 13, "only %d of %zu PNG prefixes refused",
           refused, png.size() - 1);
    for (size_t i = 0; i < png.size(); ++i) {
        Bytes bad = png;
        bad[i] ^= 0x5A;
        bpgtools::Image img;
        std::string e;
        if (!bpgtools::read_image_mem(bad.data(), bad.size(), &img, &e, nullptr))
            CHECKF(!e.empty(), "PNG damaged at %zu: no message", i);
        else
            CHECKF(img.rgb.size() == 3 * static_cast<size_t>(img.width) * img.height,
                   "PNG damaged at %zu: inconsistent image", i);
    }
    CHECK(bpgtools::file_extension("a/b.c/file.PNG") == ".png");
    CHECK(bpgtools::file_extension("a/b.c/file").empty());
    CHECK(bpgtools::file_extension("x.ppm") == ".ppm");
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: test_image_io WORK_DIR\n");
        return 2;
    }
    g_dir = argv[1];
    std::error_code ec;
    std::filesystem::create_directories(g_dir, ec);
    test_rgb_round_trips();
    test_png_variants();
    test_errors();
    return bt::finish("test_image_io");
}
