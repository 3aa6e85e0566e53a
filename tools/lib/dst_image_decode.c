/*
 * JPEG and PNG decoding. Both libraries report fatal errors through a callback that must not
 * return; here it records the message and longjmps back to the decoder, which frees what it
 * allocated and returns DS_ERR_DATA. Locals assigned after setjmp are volatile, as C11
 * 7.13.2.1 requires for values read after the longjmp.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "common/ds_file.h"
#include "dst_image.h"

void dst_image_free(dst_image *image) {
  if (image == NULL)
    return;
  free(image->pixels);
  memset(image, 0, sizeof *image);
}

static ds_status check_size(const char *name, const char *kind, uint32_t width, uint32_t height,
                            ds_error *err) {
  if (width == 0 || height == 0 || width > DST_IMAGE_MAX_SIDE || height > DST_IMAGE_MAX_SIDE ||
      (uint64_t)width * height > DST_IMAGE_MAX_PIXELS)
    return ds_fail(err, DS_ERR_DATA,
                   "%s: %s of %ux%u pixels; accepted are 1..%d pixels a side and at most %d "
                   "pixels in all",
                   name, kind, width, height, DST_IMAGE_MAX_SIDE, DST_IMAGE_MAX_PIXELS);
  return DS_OK;
}

/* ---- JPEG ---- */

typedef struct jpeg_failure {
  struct jpeg_error_mgr manager; /* first, so the library's pointer converts back */
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
} jpeg_failure;

static void jpeg_fail(j_common_ptr info) {
  jpeg_failure *failure = (jpeg_failure *)info->err;
  (*info->err->format_message)(info, failure->message);
  longjmp(failure->jump, 1);
}

/* level -1 is a warning: corrupt or truncated data that libjpeg would paper over. Trace
 * messages (level >= 0) are dropped. */
static void jpeg_message(j_common_ptr info, int level) {
  if (level < 0)
    jpeg_fail(info);
}

static ds_status decode_jpeg(const uint8_t *data, size_t size, const char *name, dst_image *out,
                             ds_error *err) {
  struct jpeg_decompress_struct info;
  jpeg_failure failure;
  uint8_t *volatile pixels = NULL;
  volatile int created = 0;

  memset(&info, 0, sizeof info);
  info.err = jpeg_std_error(&failure.manager);
  failure.manager.error_exit = jpeg_fail;
  failure.manager.emit_message = jpeg_message;
  failure.message[0] = '\0';
  if (setjmp(failure.jump)) {
    if (created)
      jpeg_destroy_decompress(&info);
    free(pixels);
    return ds_fail(err, DS_ERR_DATA, "%s: invalid or truncated JPEG: %s", name,
                   failure.message);
  }

  jpeg_create_decompress(&info);
  created = 1;
  jpeg_mem_src(&info, data, (unsigned long)size);
  jpeg_read_header(&info, TRUE);

  ds_status status = check_size(name, "JPEG", info.image_width, info.image_height, err);
  if (status == DS_OK && (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK))
    status = ds_fail(err, DS_ERR_DATA, "%s: CMYK JPEG images are not supported; convert it to "
                                       "RGB",
                     name);
  if (status != DS_OK) {
    jpeg_destroy_decompress(&info);
    return status;
  }

  info.out_color_space = info.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&info);
  const size_t stride = (size_t)info.output_width * (size_t)info.output_components;
  pixels = malloc(stride * info.output_height);
  if (pixels == NULL) {
    jpeg_destroy_decompress(&info);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %ux%u pixels", name,
                   info.output_width, info.output_height);
  }
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = pixels + stride * info.output_scanline;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);

  out->width = (int32_t)info.output_width;
  out->height = (int32_t)info.output_height;
  out->channels = info.output_components;
  out->pixels = pixels;
  jpeg_destroy_decompress(&info);
  return DS_OK;
}

/* ---- PNG ---- */

typedef struct png_source {
  const uint8_t *data;
  size_t size;
  size_t offset;
  char message[256];
} png_source;

static void png_fail(png_structp png, png_const_charp message) {
  png_source *source = png_get_error_ptr(png);
  snprintf(source->message, sizeof source->message, "%s", message);
  png_longjmp(png, 1);
}

/* Warnings (such as a bad CRC in an ancillary chunk, which libpng then skips) are dropped. */
static void png_warn(png_structp png, png_const_charp message) {
  (void)png;
  (void)message;
}

static void png_read_memory(png_structp png, png_bytep dst, png_size_t length) {
  png_source *source = png_get_io_ptr(png);
  if (length > source->size - source->offset)
    png_error(png, "unexpected end of file (truncated)");
  memcpy(dst, source->data + source->offset, length);
  source->offset += length;
}

static ds_status decode_png(const uint8_t *data, size_t size, const char *name, dst_image *out,
                            ds_error *err) {
  png_source source = {data, size, 0, {0}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &source, png_fail, png_warn);
  png_infop info = png != NULL ? png_create_info_struct(png) : NULL;
  if (png == NULL || info == NULL) {
    png_destroy_read_struct(&png, &info, NULL);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: cannot allocate the PNG decoder", name);
  }
  uint8_t *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(pixels);
    free(rows);
    return ds_fail(err, DS_ERR_DATA, "%s: invalid or truncated PNG: %s", name, source.message);
  }

  png_set_read_fn(png, &source, png_read_memory);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  ds_status status = check_size(name, "PNG", width, height, err);
  if (status != DS_OK) {
    png_destroy_read_struct(&png, &info, NULL);
    return status;
  }

  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8)
    png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS))
    png_set_tRNS_to_alpha(png);
  if (bit_depth == 16)
    png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);

  const int channels = png_get_channels(png, info);
  const size_t stride = (size_t)width * (size_t)channels;
  if (channels < 1 || channels > 4 || png_get_rowbytes(png, info) != stride)
    png_error(png, "unexpected row layout after expansion to 8 bits");
  pixels = malloc(stride * height);
  rows = malloc(sizeof(png_bytep) * height);
  if (pixels == NULL || rows == NULL)
    png_error(png, "out of memory for the decoded pixels");
  for (png_uint_32 y = 0; y < height; y++)
    rows[y] = pixels + stride * y;
  png_read_image(png, rows);
  png_read_end(png, NULL);

  out->width = (int32_t)width;
  out->height = (int32_t)height;
  out->channels = channels;
  out->pixels = pixels;
  free(rows);
  png_destroy_read_struct(&png, &info, NULL);
  return DS_OK;
}

ds_status dst_image_decode(const uint8_t *data, size_t size, const char *name, dst_image *out,
                           ds_error *err) {
  memset(out, 0, sizeof *out);
  if (size >= 8 && png_sig_cmp(data, 0, 8) == 0)
    return decode_png(data, size, name, out, err);
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
    return decode_jpeg(data, size, name, out, err);
  return ds_fail(err, DS_ERR_DATA,
                 "%s: neither a PNG nor a JPEG file (the first bytes are not a PNG or JPEG "
                 "signature)",
                 name);
}

ds_status dst_image_read_file(const char *path, dst_image *out, ds_error *err) {
  uint8_t *data = NULL;
  size_t size = 0;
  memset(out, 0, sizeof *out);
  DS_TRY(ds_file_read_all(path, DST_IMAGE_MAX_FILE_BYTES, &data, &size, err));
  ds_status status = dst_image_decode(data, size, path, out, err);
  free(data);
  return status;
}
