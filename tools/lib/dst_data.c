#include "dst_data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte), the rank. */
#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u

/* Caps on what a header may claim before anything is allocated. */
#define IDX_MAX_COUNT 10000000u
#define IDX_MAX_SIDE 4096u

typedef struct idx_file {
  gzFile handle;
  char path[1024];
} idx_file;

const char *dst_split_name(dst_split split) {
  switch (split) {
  case DST_SPLIT_TRAIN:
    return "train";
  case DST_SPLIT_VALIDATION:
    return "validation";
  case DST_SPLIT_TEST:
    return "test";
  }
  return "unknown";
}

/* Opens folder/stem.gz, or folder/stem when the gzip file is absent. gzread reads plain
 * files transparently. */
static ds_status idx_open(const char *folder, const char *stem, idx_file *file, ds_error *err) {
  snprintf(file->path, sizeof file->path, "%s/%s.gz", folder, stem);
  file->handle = gzopen(file->path, "rb");
  if (file->handle != NULL)
    return DS_OK;

  snprintf(file->path, sizeof file->path, "%s/%s", folder, stem);
  file->handle = gzopen(file->path, "rb");
  if (file->handle != NULL)
    return DS_OK;

  return ds_fail(err, DS_ERR_DATA,
                 "%s/%s.gz: cannot open (%s); pass --data with a folder holding the Fashion-MNIST "
                 "IDX files, or install the dataset-fashion-mnist package",
                 folder, stem, strerror(errno));
}

static ds_status idx_read(idx_file *file, void *dst, uint32_t bytes, uint64_t offset,
                          ds_error *err) {
  int got = gzread(file->handle, dst, bytes);
  if (got < 0 || (uint32_t)got != bytes) {
    int zerr = 0;
    const char *reason = gzerror(file->handle, &zerr);
    return ds_fail(err, DS_ERR_DATA,
                   "%s: truncated or corrupt at byte %llu: expected %u bytes, read %d (%s)",
                   file->path, (unsigned long long)offset, bytes, got < 0 ? 0 : got,
                   zerr != Z_OK ? reason : "end of file");
  }
  return DS_OK;
}

static uint32_t read_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Reads an IDX header of the expected magic; dims receives rank values. */
static ds_status idx_read_header(idx_file *file, uint32_t magic, uint32_t *dims, int rank,
                                 ds_error *err) {
  uint8_t header[16];
  DS_TRY(idx_read(file, header, 4u + 4u * (uint32_t)rank, 0, err));

  uint32_t found = read_be32(header);
  if (found != magic) {
    return ds_fail(err, DS_ERR_DATA,
                   "%s: IDX magic number 0x%08x, expected 0x%08x (unsigned bytes, rank %d); "
                   "is this the right file?",
                   file->path, found, magic, rank);
  }
  for (int i = 0; i < rank; i++)
    dims[i] = read_be32(header + 4 + 4 * i);
  return DS_OK;
}

int64_t dst_dataset_image_elements(const dst_dataset *dataset) {
  int64_t channels = dataset->channels > 0 ? dataset->channels : 1;
  return channels * dataset->side * dataset->side;
}

void dst_resize_bilinear(const float *src, int32_t in_side, float *dst, int32_t out_side) {
  dst_resize_bilinear_plane(src, in_side, in_side, dst, out_side, out_side);
}

void dst_resize_bilinear_plane(const float *src, int32_t in_height, int32_t in_width,
                               float *dst, int32_t out_height, int32_t out_width) {
  const float scale_y = (float)in_height / (float)out_height;
  const float scale_x = (float)in_width / (float)out_width;

  for (int32_t oy = 0; oy < out_height; oy++) {
    float sy = scale_y * ((float)oy + 0.5f) - 0.5f;
    if (sy < 0.0f)
      sy = 0.0f;
    int32_t y0 = (int32_t)sy;
    int32_t y1 = y0 < in_height - 1 ? y0 + 1 : y0;
    float wy1 = sy - (float)y0;
    float wy0 = 1.0f - wy1;
    const float *row0 = src + (size_t)y0 * (size_t)in_width;
    const float *row1 = src + (size_t)y1 * (size_t)in_width;

    for (int32_t ox = 0; ox < out_width; ox++) {
      float sx = scale_x * ((float)ox + 0.5f) - 0.5f;
      if (sx < 0.0f)
        sx = 0.0f;
      int32_t x0 = (int32_t)sx;
      int32_t x1 = x0 < in_width - 1 ? x0 + 1 : x0;
      float wx1 = sx - (float)x0;
      float wx0 = 1.0f - wx1;

      dst[(size_t)oy * (size_t)out_width + (size_t)ox] =
          wy0 * (wx0 * row0[x0] + wx1 * row0[x1]) + wy1 * (wx0 * row1[x0] + wx1 * row1[x1]);
    }
  }
}

static ds_status load_files(const char *folder, const char *prefix, uint32_t first,
                            uint32_t limit, int32_t side, dst_dataset *out, ds_error *err) {
  char stem[64];
  idx_file images = {0}, labels = {0};
  uint8_t *pixels = NULL;
  float *unit = NULL;
  ds_status status;

  snprintf(stem, sizeof stem, "%s-images-idx3-ubyte", prefix);
  status = idx_open(folder, stem, &images, err);
  if (status != DS_OK)
    goto done;
  snprintf(stem, sizeof stem, "%s-labels-idx1-ubyte", prefix);
  status = idx_open(folder, stem, &labels, err);
  if (status != DS_OK)
    goto done;

  uint32_t image_dims[3] = {0}, label_dims[1] = {0};
  status = idx_read_header(&images, IDX_MAGIC_IMAGES, image_dims, 3, err);
  if (status != DS_OK)
    goto done;
  status = idx_read_header(&labels, IDX_MAGIC_LABELS, label_dims, 1, err);
  if (status != DS_OK)
    goto done;

  uint32_t total = image_dims[0], rows = image_dims[1], cols = image_dims[2];
  if (total == 0 || total > IDX_MAX_COUNT || rows == 0 || rows > IDX_MAX_SIDE || rows != cols) {
    status = ds_fail(err, DS_ERR_DATA,
                     "%s: header claims %u images of %ux%u; expected 1..%u square images of at "
                     "most %u pixels a side",
                     images.path, total, rows, cols, IDX_MAX_COUNT, IDX_MAX_SIDE);
    goto done;
  }
  if (label_dims[0] != total) {
    status = ds_fail(err, DS_ERR_DATA, "%s: %u labels for %u images in %s", labels.path,
                     label_dims[0], total, images.path);
    goto done;
  }
  if (first >= total) {
    status = ds_fail(err, DS_ERR_DATA, "%s: %u images, but the split starts at image %u",
                     images.path, total, first);
    goto done;
  }

  uint32_t count = total - first;
  if (limit != 0 && limit < count)
    count = limit;
  const uint32_t pixel_count = rows * cols;

  /* Skip the images before the split by reading them: gzseek would do the same work. */
  pixels = malloc((size_t)pixel_count);
  unit = malloc(sizeof(float) * pixel_count);
  out->images = malloc(sizeof(float) * (size_t)count * (size_t)side * (size_t)side);
  out->labels = malloc(sizeof(int32_t) * (size_t)count);
  if (pixels == NULL || unit == NULL || out->images == NULL || out->labels == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %u images", images.path,
                     count);
    goto done;
  }

  uint64_t offset = 16;
  for (uint32_t i = 0; i < first; i++, offset += pixel_count) {
    status = idx_read(&images, pixels, pixel_count, offset, err);
    if (status != DS_OK)
      goto done;
  }
  for (uint32_t i = 0; i < count; i++, offset += pixel_count) {
    status = idx_read(&images, pixels, pixel_count, offset, err);
    if (status != DS_OK)
      goto done;
    for (uint32_t p = 0; p < pixel_count; p++)
      unit[p] = (float)pixels[p] / 255.0f;
    float *dst = out->images + (size_t)i * (size_t)side * (size_t)side;
    if ((uint32_t)side == rows)
      memcpy(dst, unit, sizeof(float) * pixel_count);
    else
      dst_resize_bilinear(unit, (int32_t)rows, dst, side);
  }

  /* Labels: skip, then read. */
  for (uint32_t i = 0; i < first; i++) {
    uint8_t skip;
    status = idx_read(&labels, &skip, 1, 8 + i, err);
    if (status != DS_OK)
      goto done;
  }
  /* IDX label files hold one byte per label; the bytes are widened in place, from the end
   * so that no byte is overwritten before it is read. */
  uint8_t *label_bytes = (uint8_t *)out->labels;
  status = idx_read(&labels, label_bytes, count, 8 + first, err);
  if (status != DS_OK)
    goto done;
  for (uint32_t i = count; i-- > 0;)
    out->labels[i] = label_bytes[i];
  snprintf(out->label_source, sizeof out->label_source, "%s", labels.path);

  out->class_count = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (out->labels[i] + 1 > out->class_count)
      out->class_count = out->labels[i] + 1;
  }
  out->count = (int32_t)count;
  out->side = side;
  out->channels = 1;

done:
  if (images.handle != NULL)
    gzclose(images.handle);
  if (labels.handle != NULL)
    gzclose(labels.handle);
  free(pixels);
  free(unit);
  if (status != DS_OK)
    dst_dataset_free(out);
  return status;
}

ds_status dst_dataset_load(const char *folder, dst_split split, int32_t side, int32_t limit,
                           dst_dataset *out, ds_error *err) {
  memset(out, 0, sizeof *out);
  if (side < 1 || side > (int32_t)IDX_MAX_SIDE || limit < 0) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "image side %d or limit %d out of range (side 1..%u, limit >= 0)", side, limit,
                   IDX_MAX_SIDE);
  }

  ds_status status;
  switch (split) {
  case DST_SPLIT_TRAIN:
    status = load_files(folder, "train", 0, (uint32_t)(limit == 0 || limit > DST_VALIDATION_START
                                                           ? DST_VALIDATION_START
                                                           : limit),
                        side, out, err);
    break;
  case DST_SPLIT_VALIDATION:
    status = load_files(folder, "train", DST_VALIDATION_START, (uint32_t)limit, side, out, err);
    break;
  case DST_SPLIT_TEST:
    status = load_files(folder, "t10k", 0, (uint32_t)limit, side, out, err);
    break;
  default:
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "unknown data split %d", (int)split);
  }
  return status;
}

ds_status dst_dataset_check_labels(const dst_dataset *dataset, int64_t class_count,
                                   ds_error *err) {
  const char *source = dataset->label_source[0] != '\0' ? dataset->label_source : "data set";
  for (int32_t i = 0; i < dataset->count; i++) {
    const int32_t label = dataset->labels[i];
    if (label < 0)
      return ds_fail(err, DS_ERR_DATA, "%s: label %d of sample %d is negative; fix the label",
                     source, label, i);
    if (label >= class_count)
      return ds_fail(err, DS_ERR_DATA,
                     "%s: label %d of sample %d is outside [0, %lld), the classes of the "
                     "model's output; fix the label or use a model with %lld or more classes",
                     source, label, i, (long long)class_count, (long long)label + 1);
  }
  /* Image folders number their classes by folder, so a subset of the images can miss the
   * last classes and still belong to a data set with too many. */
  if (dataset->class_count > class_count)
    return ds_fail(err, DS_ERR_DATA,
                   "%s: %d classes, but the model has %lld outputs; give data with the model's "
                   "classes",
                   source, dataset->class_count, (long long)class_count);
  return DS_OK;
}

void dst_dataset_free(dst_dataset *dataset) {
  if (dataset == NULL)
    return;
  free(dataset->images);
  free(dataset->labels);
  memset(dataset, 0, sizeof *dataset);
}
