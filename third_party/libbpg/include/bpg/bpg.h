/* libbpg-npp: a BPG (Better Portable Graphics 0.9.8 format) codec library.
 *
 * Encoding goes through the system libx265, decoding through the system
 * libde265. Images are 8-bit; colour space YCbCr BT.601 full range. All
 * functions report failures as a status code plus a message; none aborts,
 * none reads outside the buffers it is given.
 *
 * Threading: an encoder or decoder context must be used by one thread at a
 * time; use one context per thread. Contexts keep their x265 encoders and
 * libde265 decoder between calls, so a batch of same-size images pays the
 * set-up cost once. x265 allows one CTU size per process at a time; the
 * library coordinates that internally (small images need a smaller CTU). */
#ifndef BPG_BPG_H
#define BPG_BPG_H

#include <stddef.h>
#include <stdint.h>

#include "bpg/color_math.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bpg_status {
    BPG_OK = 0,
    BPG_ERR_INVALID_ARGUMENT = 1, /* a parameter is out of range */
    BPG_ERR_TRUNCATED = 2,        /* the file ends too early */
    BPG_ERR_CORRUPT = 3,          /* the file is not valid BPG */
    BPG_ERR_UNSUPPORTED = 4,      /* valid BPG, but a feature this library lacks */
    BPG_ERR_TOO_LARGE = 5,        /* the picture exceeds BPG_MAX_PIXELS */
    BPG_ERR_ENCODER = 6,          /* x265 failed */
    BPG_ERR_DECODER = 7,          /* libde265 failed or produced no picture */
    BPG_ERR_NO_MEMORY = 8,
    BPG_ERR_BUFFER_TOO_SMALL = 9
} bpg_status;

/* Decoded pictures larger than this many pixels are refused (hostile headers). */
#define BPG_MAX_PIXELS (1u << 26)
#define BPG_MAX_SIDE 16384

/* Chroma formats: the BPG_CM_* values of color_math.h (0 gray, 1 4:2:0,
 * 2 4:2:2, 3 4:4:4). */

typedef struct bpg_encode_options {
    int qp;        /* 0..51, default 29 */
    int chroma;    /* BPG_CM_GRAY/420/422/444, default 420 */
    int level;     /* compression level 1..9 (x265 preset), default 8 */
    int bit_depth; /* 8 */
    /* Extra x265 parameters applied after the preset, "name=value:name=value"
     * in x265's command-line names (NULL or "" for none). */
    const char *x265_params;
} bpg_encode_options;

typedef struct bpg_info {
    int width, height;
    int pixel_format; /* header pixel_format (0..5) */
    int chroma;       /* BPG_CM_* derived from pixel_format */
    int bit_depth;
    int color_space;
    int has_alpha;
    int limited_range;
    int animation;
    int has_extensions;
    /* hevc_header of the colour plane */
    int log2_min_cb_size, log2_max_cb_size, log2_min_tb_size, log2_max_tb_size;
    int max_transform_hierarchy_depth_intra;
    int sao, pcm, strong_intra_smoothing;
    size_t hevc_data_offset, hevc_data_size;
} bpg_info;

typedef struct bpg_encoder bpg_encoder;
typedef struct bpg_decoder bpg_decoder;

void bpg_encode_options_init(bpg_encode_options *opts);
/* Returns "ok" or a short description of a status code. */
const char *bpg_status_string(bpg_status status);

/* ---- encoding ---- */
bpg_encoder *bpg_encoder_new(void);
void bpg_encoder_free(bpg_encoder *enc);
/* Message of the last failure on this context ("" if none). */
const char *bpg_encoder_error(const bpg_encoder *enc);

/* Encode 8-bit interleaved RGB (3 bytes per pixel, rows `stride` bytes apart).
 * On success *out and *out_size describe the .bpg file, owned by the encoder
 * and valid until its next call. */
bpg_status bpg_encode_rgb(bpg_encoder *enc, const uint8_t *rgb, int width, int height,
                          ptrdiff_t stride, const bpg_encode_options *opts, const uint8_t **out,
                          size_t *out_size);

/* Encode planar YUV in the layout of bpg_cm_make_layout(width, height,
 * opts->chroma) (padded planes, `yuv_size` bytes = layout.total). */
bpg_status bpg_encode_yuv(bpg_encoder *enc, const uint8_t *yuv, size_t yuv_size, int width,
                          int height, const bpg_encode_options *opts, const uint8_t **out,
                          size_t *out_size);

/* ---- decoding ---- */
/* Parse the header only. `err` (may be NULL) receives a message. */
bpg_status bpg_read_info(const uint8_t *data, size_t size, bpg_info *info, char *err,
                         size_t err_size);

bpg_decoder *bpg_decoder_new(void);
void bpg_decoder_free(bpg_decoder *dec);
/* Truncation check, on by default: HEVC slice data carries no length and
 * libde265 reads zeros past its end, so a cut file can decode silently. The
 * decoder decodes a second time with bytes appended to the last slice; an
 * intact slice ends before them, so any difference means the data was cut
 * and the file is refused. It doubles the decoding time: turn it off (0) for
 * data this process has just encoded. */
void bpg_decoder_set_verify(bpg_decoder *dec, int verify);
const char *bpg_decoder_error(const bpg_decoder *dec);

/* Decode to 8-bit interleaved RGB: `rgb` holds height rows of `stride` bytes
 * (stride >= 3 * width), `rgb_size` bytes in all. info may be NULL. */
bpg_status bpg_decode_rgb(bpg_decoder *dec, const uint8_t *data, size_t size, uint8_t *rgb,
                          size_t rgb_size, ptrdiff_t stride, bpg_info *info);

/* Decode to planar YUV in the layout of bpg_cm_make_layout(width, height,
 * chroma) (the coded planes, padding included). */
bpg_status bpg_decode_yuv(bpg_decoder *dec, const uint8_t *data, size_t size, uint8_t *yuv,
                          size_t yuv_size, bpg_info *info);

/* The Annex-B HEVC stream (synthesized VPS + SPS, then the file's NAL
 * units) that a stock HEVC decoder such as FFmpeg accepts. Owned by the
 * decoder, valid until its next call. */
bpg_status bpg_decoder_annexb(bpg_decoder *dec, const uint8_t *data, size_t size,
                              const uint8_t **out, size_t *out_size);

/* ---- colour conversion alone (reference-exact) ---- */
bpg_status bpg_rgb_to_yuv(const uint8_t *rgb, int width, int height, ptrdiff_t stride, int chroma,
                          uint8_t *yuv, size_t yuv_size);
bpg_status bpg_yuv_to_rgb(const uint8_t *yuv, size_t yuv_size, int width, int height, int chroma,
                          uint8_t *rgb, size_t rgb_size, ptrdiff_t stride);

#ifdef __cplusplus
}
#endif

#endif /* BPG_BPG_H */
