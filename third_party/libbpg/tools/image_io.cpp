#include "image_io.h"

#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <new>

#include <png.h>
#include <sys/stat.h>

namespace bpgtools
{

namespace
{

// Removes a partly written output, but only a regular file: the path may name
// a device (/dev/full, /dev/stdout) or a symlink, which must survive a failed write.
void remove_partial_output(const std::string &path)
{
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode))
        std::remove(path.c_str());
}

// ---- PNG reading ----

// Everything the libpng callbacks and the guarded code touch lives here, in
// the caller's frame: a longjmp must never skip a destructor.
struct PngReadState {
    const uint8_t *data = nullptr;
    size_t size = 0, pos = 0;
    char message[256] = {0};
    bool alpha_dropped = false, reduced_16 = false;
    std::vector<png_bytep> rows;
};

void set_message(char *dst, size_t n, const char *msg)
{
    std::snprintf(dst, n, "%s", msg != nullptr ? msg : "unknown libpng error");
}

void png_read_error(png_structp png, png_const_charp msg)
{
    auto *st = static_cast<PngReadState *>(png_get_error_ptr(png));
    set_message(st->message, sizeof(st->message), msg);
    png_longjmp(png, 1);
}

// libpng warnings (bad ancillary chunk CRCs, unknown profiles) do not stop
// decoding, and the tools have nothing useful to say about them.
void png_ignore_warning(png_structp, png_const_charp) {}

void png_read_mem(png_structp png, png_bytep out, size_t n)
{
    auto *st = static_cast<PngReadState *>(png_get_io_ptr(png));
    if (n > st->size - st->pos)
        png_error(png, "PNG file is truncated");
    std::memcpy(out, st->data + st->pos, n);
    st->pos += n;
}

// Runs under the setjmp of png_read_guarded: no local with a destructor.
bool png_decode(png_structp png, png_infop info, PngReadState *st, Image *img)
{
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, nullptr, nullptr, nullptr);
    if (w == 0 || h == 0 || w > static_cast<png_uint_32>(kMaxImageSide) ||
        h > static_cast<png_uint_32>(kMaxImageSide) || uint64_t{w} * h > kMaxImagePixels) {
        std::snprintf(st->message, sizeof(st->message), "PNG size %ux%u is out of range",
                      static_cast<unsigned>(w), static_cast<unsigned>(h));
        return false;
    }
    if (depth == 16) {
        png_set_scale_16(png); // rounds v * 255 / 65535, unlike strip_16
        st->reduced_16 = true;
    }
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if ((ctype & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
        st->alpha_dropped = true;
    // Palette expansion turns tRNS into an alpha channel: strip whatever
    // alpha the transformations end up with.
    png_set_strip_alpha(png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != 3 * static_cast<size_t>(w)) {
        set_message(st->message, sizeof(st->message), "PNG did not convert to 8-bit RGB");
        return false;
    }
    img->width = static_cast<int>(w);
    img->height = static_cast<int>(h);
    img->rgb.resize(3 * static_cast<size_t>(w) * h);
    st->rows.resize(h);
    for (png_uint_32 y = 0; y < h; ++y)
        st->rows[y] = img->rgb.data() + 3 * static_cast<size_t>(w) * y;
    png_read_image(png, st->rows.data());
    png_read_end(png, nullptr);
    return true;
}

bool png_read_guarded(png_structp png, png_infop info, PngReadState *st, Image *img)
{
    if (setjmp(png_jmpbuf(png)))
        return false;
    return png_decode(png, info, st, img);
}

bool read_png_mem(const uint8_t *data, size_t size, Image *img, std::string *err,
                  std::string *warning)
{
    PngReadState st;
    st.data = data;
    st.size = size;
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &st, png_read_error, png_ignore_warning);
    if (png == nullptr) {
        *err = "libpng could not create a reader";
        return false;
    }
    png_infop info = png_create_info_struct(png);
    if (info == nullptr) {
        png_destroy_read_struct(&png, nullptr, nullptr);
        *err = "libpng could not create a reader";
        return false;
    }
    png_set_read_fn(png, &st, png_read_mem);
    // libpng's own limits are 1M x 1M; ours are tighter and checked in
    // png_decode with a clearer message.
    bool ok = false;
    try {
        ok = png_read_guarded(png, info, &st, img);
    } catch (const std::bad_alloc &) {
        set_message(st.message, sizeof(st.message), "out of memory");
    }
    png_destroy_read_struct(&png, &info, nullptr);
    if (!ok) {
        *err = std::string("cannot read PNG: ") + st.message;
        *img = Image();
        return false;
    }
    if (warning != nullptr) {
        warning->clear();
        if (st.alpha_dropped)
            *warning = "the PNG has transparency; the alpha channel is dropped";
        if (st.reduced_16)
            *warning +=
                std::string(warning->empty() ? "" : "; ") + "16-bit samples are reduced to 8 bits";
    }
    return true;
}

// ---- PPM / PGM reading ----

// Skips whitespace and '#' comments (which run to the end of the line).
void pnm_skip_space(const uint8_t *d, size_t n, size_t *pos)
{
    while (*pos < n) {
        if (d[*pos] == '#') {
            while (*pos < n && d[*pos] != '\n' && d[*pos] != '\r')
                ++*pos;
        } else if (std::isspace(d[*pos])) {
            ++*pos;
        } else {
            return;
        }
    }
}

bool pnm_number(const uint8_t *d, size_t n, size_t *pos, const char *what, int max_value, int *out,
                std::string *err)
{
    pnm_skip_space(d, n, pos);
    if (*pos >= n || !std::isdigit(d[*pos])) {
        *err = std::string("PPM/PGM header: missing or invalid ") + what;
        return false;
    }
    long v = 0;
    while (*pos < n && std::isdigit(d[*pos])) {
        v = v * 10 + (d[*pos] - '0');
        if (v > max_value) {
            *err = std::string("PPM/PGM header: ") + what + " exceeds " + std::to_string(max_value);
            return false;
        }
        ++*pos;
    }
    *out = static_cast<int>(v);
    return true;
}

bool read_pnm_mem(const uint8_t *d, size_t n, Image *img, std::string *err)
{
    const bool color = d[1] == '6';
    size_t pos = 2;
    int w = 0, h = 0, maxval = 0;
    if (!pnm_number(d, n, &pos, "width", kMaxImageSide, &w, err) ||
        !pnm_number(d, n, &pos, "height", kMaxImageSide, &h, err) ||
        !pnm_number(d, n, &pos, "maxval", 65535, &maxval, err))
        return false;
    if (w == 0 || h == 0 || uint64_t(w) * uint64_t(h) > kMaxImagePixels) {
        *err = "PPM/PGM size " + std::to_string(w) + "x" + std::to_string(h) + " is out of range";
        return false;
    }
    if (maxval != 255) {
        *err = "PPM/PGM maxval must be 255 (8-bit samples), got " + std::to_string(maxval);
        return false;
    }
    // Exactly one whitespace byte separates the header from the samples.
    if (pos >= n || !std::isspace(d[pos])) {
        *err = "PPM/PGM header is not followed by sample data";
        return false;
    }
    ++pos;
    const size_t channels = color ? 3 : 1;
    const size_t need = channels * static_cast<size_t>(w) * static_cast<size_t>(h);
    if (n - pos < need) {
        *err = "PPM/PGM file is truncated: " + std::to_string(n - pos) + " sample bytes of " +
               std::to_string(need);
        return false;
    }
    img->width = w;
    img->height = h;
    img->rgb.resize(3 * static_cast<size_t>(w) * h);
    const uint8_t *s = d + pos;
    if (color) {
        std::memcpy(img->rgb.data(), s, need);
    } else {
        for (size_t i = 0; i < need; ++i)
            img->rgb[3 * i] = img->rgb[3 * i + 1] = img->rgb[3 * i + 2] = s[i];
    }
    return true;
}

// ---- PNG writing ----

struct PngWriteState {
    char message[256] = {0};
};

void png_write_error(png_structp png, png_const_charp msg)
{
    auto *st = static_cast<PngWriteState *>(png_get_error_ptr(png));
    set_message(st->message, sizeof(st->message), msg);
    png_longjmp(png, 1);
}

// Runs under setjmp: no local with a destructor.
bool png_write_guarded(png_structp png, png_infop info, FILE *fp, const uint8_t *rgb, int width,
                       int height, ptrdiff_t stride)
{
    if (setjmp(png_jmpbuf(png)))
        return false;
    png_init_io(png, fp);
    png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
                 PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; ++y)
        png_write_row(png, rgb + static_cast<ptrdiff_t>(y) * stride);
    png_write_end(png, nullptr);
    return true;
}

bool check_write_args(const uint8_t *rgb, int width, int height, ptrdiff_t stride, std::string *err)
{
    if (rgb == nullptr || width < 1 || height < 1 || width > kMaxImageSide ||
        height > kMaxImageSide || stride < 3 * static_cast<ptrdiff_t>(width)) {
        *err = "invalid image to write (" + std::to_string(width) + "x" + std::to_string(height) +
               ", stride " + std::to_string(stride) + ")";
        return false;
    }
    return true;
}

} // namespace

std::string file_extension(const std::string &path)
{
    const size_t slash = path.find_last_of('/');
    const size_t dot = path.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
        return "";
    std::string ext = path.substr(dot);
    for (char &c : ext)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return ext;
}

bool read_file(const std::string &path, std::vector<uint8_t> *out, std::string *err)
{
    FILE *fp = std::fopen(path.c_str(), "rb");
    if (fp == nullptr) {
        *err = "cannot open '" + path + "': " + std::strerror(errno);
        return false;
    }
    out->clear();
    uint8_t buf[65536];
    size_t n;
    bool ok = true;
    try {
        while ((n = std::fread(buf, 1, sizeof(buf), fp)) > 0)
            out->insert(out->end(), buf, buf + n);
    } catch (const std::bad_alloc &) {
        *err = "out of memory reading '" + path + "'";
        ok = false;
    }
    if (ok && std::ferror(fp)) {
        *err = "cannot read '" + path + "'";
        ok = false;
    }
    std::fclose(fp);
    return ok;
}

bool write_file(const std::string &path, const uint8_t *data, size_t size, std::string *err)
{
    FILE *fp = std::fopen(path.c_str(), "wb");
    if (fp == nullptr) {
        *err = "cannot create '" + path + "': " + std::strerror(errno);
        return false;
    }
    const bool wrote = size == 0 || std::fwrite(data, 1, size, fp) == size;
    const bool closed = std::fclose(fp) == 0;
    if (!wrote || !closed) {
        *err = "cannot write '" + path + "'";
        remove_partial_output(path);
        return false;
    }
    return true;
}

bool read_image_mem(const uint8_t *data, size_t size, Image *img, std::string *err,
                    std::string *warning)
{
    if (warning != nullptr)
        warning->clear();
    if (data == nullptr || size == 0) {
        *err = "the file is empty";
        return false;
    }
    static const uint8_t kPngSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 8 && std::memcmp(data, kPngSig, 8) == 0)
        return read_png_mem(data, size, img, err, warning);
    if (size >= 2 && data[0] == 'P' && (data[1] == '5' || data[1] == '6'))
        return read_pnm_mem(data, size, img, err);
    if (size >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '7') {
        *err = "only binary PPM (P6) and PGM (P5) are supported, this is P" +
               std::string(1, static_cast<char>(data[1]));
        return false;
    }
    *err = "unknown image format (expected PNG, binary PPM or PGM)";
    return false;
}

bool read_image(const std::string &path, Image *img, std::string *err, std::string *warning)
{
    std::vector<uint8_t> data;
    if (!read_file(path, &data, err))
        return false;
    if (!read_image_mem(data.data(), data.size(), img, err, warning)) {
        *err = path + ": " + *err;
        return false;
    }
    return true;
}

bool write_png(const std::string &path, const uint8_t *rgb, int width, int height, ptrdiff_t stride,
               std::string *err)
{
    if (!check_write_args(rgb, width, height, stride, err))
        return false;
    PngWriteState st;
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, &st, png_write_error, png_ignore_warning);
    png_infop info = png != nullptr ? png_create_info_struct(png) : nullptr;
    if (info == nullptr) {
        png_destroy_write_struct(&png, nullptr);
        *err = "libpng could not create a writer";
        return false;
    }
    FILE *fp = std::fopen(path.c_str(), "wb");
    if (fp == nullptr) {
        png_destroy_write_struct(&png, &info);
        *err = "cannot create '" + path + "': " + std::strerror(errno);
        return false;
    }
    const bool ok = png_write_guarded(png, info, fp, rgb, width, height, stride);
    png_destroy_write_struct(&png, &info);
    const bool closed = std::fclose(fp) == 0;
    if (!ok || !closed) {
        *err = "cannot write PNG '" + path + "': " + (ok ? "write error" : st.message);
        remove_partial_output(path);
        return false;
    }
    return true;
}

bool write_ppm(const std::string &path, const uint8_t *rgb, int width, int height, ptrdiff_t stride,
               std::string *err)
{
    if (!check_write_args(rgb, width, height, stride, err))
        return false;
    FILE *fp = std::fopen(path.c_str(), "wb");
    if (fp == nullptr) {
        *err = "cannot create '" + path + "': " + std::strerror(errno);
        return false;
    }
    bool ok = std::fprintf(fp, "P6\n%d %d\n255\n", width, height) > 0;
    for (int y = 0; ok && y < height; ++y)
        ok = std::fwrite(rgb + static_cast<ptrdiff_t>(y) * stride, 3, static_cast<size_t>(width),
                         fp) == static_cast<size_t>(width);
    const bool closed = std::fclose(fp) == 0;
    if (!ok || !closed) {
        *err = "cannot write PPM '" + path + "'";
        remove_partial_output(path);
        return false;
    }
    return true;
}

} // namespace bpgtools
