// Image files for the command-line tools and the tests: PNG through libpng,
// binary PPM/PGM by hand. Everything is converted to 8-bit interleaved RGB.
// Errors come back as messages; nothing here aborts or exits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bpg/bpg.h"

namespace bpgtools
{

// 8-bit RGB, rows packed (stride = 3 * width).
struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;
    ptrdiff_t stride() const { return 3 * static_cast<ptrdiff_t>(width); }
};

// Largest picture the readers accept: the codec's own limits, checked from the
// header before any row is allocated (a PNG of a few hundred kB must not cost
// hundreds of MB before the encoder refuses its size anyway).
constexpr int kMaxImageSide = BPG_MAX_SIDE;
constexpr uint64_t kMaxImagePixels = BPG_MAX_PIXELS;

// Reads a PNG (any bit depth / colour type), PPM (P6) or PGM (P5), chosen by
// the file's signature. On success returns true and fills *img; *warning
// (may be NULL) receives a note about dropped information (alpha, 16-bit
// precision), or stays empty. On failure returns false with *err set.
bool read_image(const std::string &path, Image *img, std::string *err, std::string *warning);

// The same from a memory buffer.
bool read_image_mem(const uint8_t *data, size_t size, Image *img, std::string *err,
                    std::string *warning);

// Writes 8-bit RGB (rows `stride` bytes apart) as PNG or binary PPM. On
// failure returns false, sets *err and removes the partial file.
bool write_png(const std::string &path, const uint8_t *rgb, int width, int height, ptrdiff_t stride,
               std::string *err);
bool write_ppm(const std::string &path, const uint8_t *rgb, int width, int height, ptrdiff_t stride,
               std::string *err);

// Whole-file helpers.
bool read_file(const std::string &path, std::vector<uint8_t> *out, std::string *err);
bool write_file(const std::string &path, const uint8_t *data, size_t size, std::string *err);

// Lower-cased extension of a path including the dot (".png"), or "".
std::string file_extension(const std::string &path);

} // namespace bpgtools
