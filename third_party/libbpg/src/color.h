// Reference-exact conversion between 8-bit interleaved RGB and the padded
// planar YUV layout of color_math.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bpg
{

// rgb: height rows of `stride` bytes; out: layout.total bytes.
void rgb_to_planes(const uint8_t *rgb, int width, int height, ptrdiff_t stride, int chroma,
                   uint8_t *out);

// in: layout.total bytes (only the real areas are read); rgb: height rows of
// `stride` bytes.
void planes_to_rgb(const uint8_t *in, int width, int height, int chroma, uint8_t *rgb,
                   ptrdiff_t stride);

// Replicate the last column and row of a w x h area into a pw x ph plane.
void pad_plane(uint8_t *plane, int w, int h, int pw, int ph);

} // namespace bpg
