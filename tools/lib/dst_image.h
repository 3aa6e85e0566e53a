/*
 * JPEG and PNG decoding (libjpeg, libpng) and the preprocessing that turns a decoded image
 * into a model input: scale to [0, 1], resize the shorter side (bilinear), centre crop,
 * colour conversion and per-channel normalisation. docs/data.md gives the JSON schema and
 * the exact arithmetic.
 *
 * Every function reports a malformed file as DS_ERR_DATA with the file name and the
 * decoder's reason; none of them exits or aborts on bad input.
 */
#ifndef DST_IMAGE_H
#define DST_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/ds_status.h"

#define DST_IMAGE_MAX_SIDE 32768        /* largest width or height accepted */
#define DST_IMAGE_MAX_PIXELS (1 << 28)  /* largest width * height accepted */
#define DST_IMAGE_MAX_FILE_BYTES (1u << 30)

/* 8-bit image as decoded: height x width x channels, interleaved. */
typedef struct dst_image {
  int32_t width, height;
  int32_t channels;  /* 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA */
  uint8_t *pixels;   /* owned; free with dst_image_free */
} dst_image;

/*
 * Decodes a JPEG or PNG file held in data (size bytes), chosen by its signature. name labels
 * error messages. JPEG: grayscale stays one channel, everything else becomes RGB; CMYK is
 * rejected; libjpeg warnings (corrupt or truncated data) are errors. PNG: palettes and
 * transparency chunks expand to RGB(A), 1-, 2- and 4-bit gray to 8 bits, and 16-bit samples
 * keep their high byte; gamma chunks are ignored.
 */
ds_status dst_image_decode(const uint8_t *data, size_t size, const char *name, dst_image *out,
                           ds_error *err);

/* Reads and decodes path. */
ds_status dst_image_read_file(const char *path, dst_image *out, ds_error *err);

void dst_image_free(dst_image *image);

typedef enum dst_color {
  DST_COLOR_GRAY = 0,
  DST_COLOR_RGB = 1,
  DST_COLOR_BGR = 2,
} dst_color;

typedef enum dst_alpha {
  DST_ALPHA_DROP = 0,  /* ignore the alpha channel */
  DST_ALPHA_BLEND = 1, /* composite over background */
} dst_alpha;

#define DST_PREPROCESS_MAX_CHANNELS 3

/* Preprocessing of one model input, parsed from JSON (docs/data.md). */
typedef struct dst_preprocess {
  int32_t resize;      /* shorter side after resizing in pixels, 0: no resize */
  int antialias;       /* resize with PyTorch's antialias=True filter */
  int32_t crop;        /* centre crop side in pixels; the model input side */
  dst_color color;
  dst_alpha alpha;
  float background[DST_PREPROCESS_MAX_CHANNELS]; /* blend: RGB in 0..255 */
  int32_t channels;    /* 1 for gray, 3 for RGB and BGR */
  float mean[DST_PREPROCESS_MAX_CHANNELS];       /* per output channel */
  float std[DST_PREPROCESS_MAX_CHANNELS];
} dst_preprocess;

/* The defaults for a (1, channels, side, side) input: resize and crop to side, gray for one
 * channel or RGB for three, alpha dropped, mean 0 and std 1. */
void dst_preprocess_default(int32_t channels, int32_t side, dst_preprocess *out);

/*
 * Parses a preprocessing JSON text (size bytes) for a (1, channels, side, side) input. name
 * labels messages. Every problem is reported in one DS_ERR_DATA message, each with its key
 * and value: unknown keys, wrong types, values out of range, and settings that do not fit
 * the model input (crop against side, colour against channels, mean and std lengths).
 */
ds_status dst_preprocess_parse(const char *text, size_t size, const char *name,
                               int32_t channels, int32_t side, dst_preprocess *out,
                               ds_error *err);

/* Reads and parses a preprocessing file. */
ds_status dst_preprocess_read_file(const char *path, int32_t channels, int32_t side,
                                   dst_preprocess *out, ds_error *err);

/*
 * Turns image into pre->channels x pre->crop x pre->crop floats at out (NCHW). name labels
 * errors: DS_ERR_DATA when the image is smaller than the crop after resizing,
 * DS_ERR_OUT_OF_MEMORY.
 */
ds_status dst_preprocess_apply(const dst_preprocess *pre, const dst_image *image,
                               const char *name, float *out, ds_error *err);

/*
 * Resizes one plane with PyTorch's antialiased bilinear filter (F.interpolate(mode="bilinear",
 * align_corners=False, antialias=True), the triangle filter widened by the downscale factor),
 * horizontally then vertically. Returns 0 when out of memory.
 */
int dst_resize_antialias_plane(const float *src, int32_t in_height, int32_t in_width,
                               float *dst, int32_t out_height, int32_t out_width);

#endif
