/*
 * Raw tensor data sets: a folder with tensors.json, one file of samples (float32 or uint8,
 * little-endian, NCHW, back to back) and one file of labels (uint8, or int32 little-endian,
 * chosen by "labels_dtype"). docs/data.md specifies
 * the format; every size below is checked against the header before anything is read.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/ds_file.h"
#include "dst_source.h"

#define RAW_FORMAT_NAME "deformslice-raw-tensors"
#define RAW_VERSION 1
#define RAW_MAX_HEADER_BYTES (1u << 20)
#define RAW_MAX_COUNT 10000000
#define RAW_MAX_SIDE 16384

typedef struct raw_header {
  int32_t count;
  int32_t channels, height, width;
  int element_bytes;   /* 4 for float32, 1 for uint8 */
  int label_bytes;     /* 1 for uint8 labels, 4 for int32 */
  double scale, offset; /* uint8: value = u8 * scale + offset */
  char data[256], labels[256];
} raw_header;

/* A file name inside the folder: no path separator, not "." or "..". */
static int is_plain_name(const char *name) {
  return name[0] != '\0' && strchr(name, '/') == NULL && strcmp(name, ".") != 0 &&
         strcmp(name, "..") != 0;
}

static ds_status read_name(const cJSON *root, const char *key, const char *path, char *out,
                           size_t out_bytes, ds_error *err) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!cJSON_IsString(item) || !is_plain_name(item->valuestring) ||
      strlen(item->valuestring) >= out_bytes)
    return ds_fail(err, DS_ERR_DATA,
                   "%s: \"%s\" must be the name of a file in the same folder (no '/'), at most "
                   "%zu bytes",
                   path, key, out_bytes - 1);
  snprintf(out, out_bytes, "%s", item->valuestring);
  return DS_OK;
}

static ds_status check_keys(const cJSON *root, const char *path, ds_error *err) {
  static const char *const keys[] = {"format", "version", "count",  "shape",
                                     "dtype",  "data",    "labels", "labels_dtype",
                                     "scale",  "offset"};
  const cJSON *item;
  cJSON_ArrayForEach(item, root) {
    int known = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
      known |= strcmp(item->string, keys[i]) == 0;
    if (!known)
      return ds_fail(err, DS_ERR_DATA,
                     "%s: unknown key \"%s\"; the keys are format, version, count, shape, "
                     "dtype, data, labels, labels_dtype, scale and offset",
                     path, item->string);
  }
  return DS_OK;
}

static ds_status parse_header(const char *text, size_t size, const char *path,
                              raw_header *header, ds_error *err) {
  cJSON *root = cJSON_ParseWithLength(text, size);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return ds_fail(err, DS_ERR_DATA, "%s: not a JSON object; see docs/data.md for the raw "
                                     "tensor header",
                   path);
  }
  ds_status status = check_keys(root, path, err);
  const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
  const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
  const cJSON *count = cJSON_GetObjectItemCaseSensitive(root, "count");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(root, "shape");
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(root, "dtype");
  const cJSON *scale = cJSON_GetObjectItemCaseSensitive(root, "scale");
  const cJSON *offset = cJSON_GetObjectItemCaseSensitive(root, "offset");
  const cJSON *labels_dtype = cJSON_GetObjectItemCaseSensitive(root, "labels_dtype");

  if (status == DS_OK && (!cJSON_IsString(format) || strcmp(format->valuestring,
                                                            RAW_FORMAT_NAME) != 0))
    status = ds_fail(err, DS_ERR_DATA, "%s: \"format\" must be \"" RAW_FORMAT_NAME "\"", path);
  if (status == DS_OK && (!cJSON_IsNumber(version) || version->valuedouble != RAW_VERSION))
    status = ds_fail(err, DS_ERR_DATA, "%s: \"version\" must be %d, the version this tool reads",
                     path, RAW_VERSION);
  if (status == DS_OK && (!cJSON_IsNumber(count) || count->valuedouble < 1 ||
                          count->valuedouble > RAW_MAX_COUNT ||
                          count->valuedouble != floor(count->valuedouble)))
    status = ds_fail(err, DS_ERR_DATA, "%s: \"count\" must be an integer in 1..%d", path,
                     RAW_MAX_COUNT);
  if (status == DS_OK)
    header->count = (int32_t)count->valuedouble;

  int32_t dims[3] = {0, 0, 0};
  int dim_count = 0, dims_ok = cJSON_IsArray(shape) && cJSON_GetArraySize(shape) == 3;
  const cJSON *dim;
  for (dim = dims_ok ? shape->child : NULL; dim != NULL; dim = dim->next) {
    if (!cJSON_IsNumber(dim) || dim->valuedouble < 1 || dim->valuedouble > RAW_MAX_SIDE ||
        dim->valuedouble != floor(dim->valuedouble))
      dims_ok = 0;
    else
      dims[dim_count++] = (int32_t)dim->valuedouble;
  }
  if (status == DS_OK && !dims_ok)
    status = ds_fail(err, DS_ERR_DATA,
                     "%s: \"shape\" must be [channels, height, width] of one sample, each an "
                     "integer in 1..%d",
                     path, RAW_MAX_SIDE);
  header->channels = dims[0];
  header->height = dims[1];
  header->width = dims[2];

  header->scale = 1.0 / 255.0;
  header->offset = 0.0;
  if (status == DS_OK && cJSON_IsString(dtype) && strcmp(dtype->valuestring, "float32") == 0) {
    header->element_bytes = 4;
    if (scale != NULL || offset != NULL)
      status = ds_fail(err, DS_ERR_DATA, "%s: \"scale\" and \"offset\" apply to uint8 data only",
                       path);
  } else if (status == DS_OK && cJSON_IsString(dtype) &&
             strcmp(dtype->valuestring, "uint8") == 0) {
    header->element_bytes = 1;
    if (scale != NULL && !(cJSON_IsNumber(scale) && isfinite(scale->valuedouble)))
      status = ds_fail(err, DS_ERR_DATA, "%s: \"scale\" must be a finite number", path);
    else if (offset != NULL && !(cJSON_IsNumber(offset) && isfinite(offset->valuedouble)))
      status = ds_fail(err, DS_ERR_DATA, "%s: \"offset\" must be a finite number", path);
    if (status == DS_OK && scale != NULL)
      header->scale = scale->valuedouble;
    if (status == DS_OK && offset != NULL)
      header->offset = offset->valuedouble;
  } else if (status == DS_OK) {
    status = ds_fail(err, DS_ERR_DATA, "%s: \"dtype\" must be \"float32\" or \"uint8\"", path);
  }
  header->label_bytes = 1;
  if (status == DS_OK && labels_dtype != NULL) {
    if (cJSON_IsString(labels_dtype) && strcmp(labels_dtype->valuestring, "int32") == 0)
      header->label_bytes = 4;
    else if (!(cJSON_IsString(labels_dtype) && strcmp(labels_dtype->valuestring, "uint8") == 0))
      status = ds_fail(err, DS_ERR_DATA,
                       "%s: \"labels_dtype\" must be \"uint8\" (the default) or \"int32\"", path);
  }
  if (status == DS_OK)
    status = read_name(root, "data", path, header->data, sizeof header->data, err);
  if (status == DS_OK)
    status = read_name(root, "labels", path, header->labels, sizeof header->labels, err);
  cJSON_Delete(root);
  return status;
}

/* Opens folder/name and checks that its size is exactly expected bytes. */
static ds_status open_exact(const char *folder, const char *name, uint64_t expected,
                            const char *what, FILE **out, char *path, size_t path_bytes,
                            ds_error *err) {
  snprintf(path, path_bytes, "%s/%s", folder, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return ds_fail(err, DS_ERR_DATA, "%s: cannot open (%s)", path, strerror(errno));
  struct stat info;
  if (fstat(fileno(f), &info) != 0 || (uint64_t)info.st_size != expected) {
    long long found = fstat(fileno(f), &info) == 0 ? (long long)info.st_size : -1;
    fclose(f);
    return ds_fail(err, DS_ERR_DATA,
                   "%s: %lld bytes, but the header's count and shape give %llu bytes of %s; fix "
                   "\"count\" or \"shape\" in tensors.json, or the file",
                   path, found, (unsigned long long)expected, what);
  }
  *out = f;
  return DS_OK;
}

static ds_status read_samples(FILE *f, const char *path, const raw_header *header,
                              int32_t count, int64_t elements, float *images, ds_error *err) {
  const size_t buffer_bytes = (size_t)elements * (size_t)header->element_bytes;
  uint8_t *buffer = malloc(buffer_bytes);
  if (buffer == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: cannot allocate one sample", path);
  ds_status status = DS_OK;
  for (int32_t i = 0; i < count && status == DS_OK; i++) {
    if (fread(buffer, 1, buffer_bytes, f) != buffer_bytes) {
      status = ds_fail(err, DS_ERR_DATA, "%s: read failed at sample %d", path, i);
      break;
    }
    float *dst = images + (size_t)i * (size_t)elements;
    for (int64_t e = 0; e < elements; e++) {
      if (header->element_bytes == 1) {
        dst[e] = (float)(buffer[e] * header->scale + header->offset);
      } else {
        const uint8_t *b = buffer + 4 * e;
        uint32_t bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                        (uint32_t)b[3] << 24;
        memcpy(&dst[e], &bits, sizeof bits);
      }
      if (!isfinite(dst[e])) {
        status = ds_fail(err, DS_ERR_DATA, "%s: sample %d element %lld is not a finite number",
                         path, i, (long long)e);
        break;
      }
    }
  }
  free(buffer);
  return status;
}

/*
 * Reads count labels of label_bytes each (1: uint8, 4: int32 little-endian) into labels.
 * Every label must be in 0 .. DST_MAX_CLASSES - 1.
 */
static ds_status read_labels(FILE *f, const char *path, int label_bytes, int32_t count,
                             int32_t *labels, ds_error *err) {
  uint8_t bytes[4096];
  const int32_t chunk = (int32_t)(sizeof bytes / (size_t)label_bytes);
  for (int32_t first = 0; first < count; first += chunk) {
    const int32_t n = count - first < chunk ? count - first : chunk;
    if (fread(bytes, (size_t)label_bytes, (size_t)n, f) != (size_t)n)
      return ds_fail(err, DS_ERR_DATA, "%s: read failed at label %d", path, first);
    for (int32_t k = 0; k < n; k++) {
      const uint8_t *b = bytes + (size_t)k * (size_t)label_bytes;
      int64_t label = b[0];
      if (label_bytes == 4)
        label = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                          (uint32_t)b[3] << 24);
      if (label < 0 || label >= DST_MAX_CLASSES)
        return ds_fail(err, DS_ERR_DATA,
                       "%s: label %lld of sample %d is outside [0, %d); labels are class "
                       "indices",
                       path, (long long)label, first + k, DST_MAX_CLASSES);
      labels[first + k] = (int32_t)label;
    }
  }
  return DS_OK;
}

ds_status dst_raw_load(const char *split_folder, int32_t channels, int32_t side, int32_t limit,
                       dst_dataset *out, ds_error *err) {
  memset(out, 0, sizeof *out);
  char path[4096];
  snprintf(path, sizeof path, "%s/tensors.json", split_folder);
  uint8_t *text = NULL;
  size_t size = 0;
  DS_TRY(ds_file_read_all(path, RAW_MAX_HEADER_BYTES, &text, &size, err));
  raw_header header;
  memset(&header, 0, sizeof header);
  ds_status status = parse_header((const char *)text, size, path, &header, err);
  free(text);
  DS_TRY(status);

  if (header.channels != channels || header.height != side || header.width != side)
    return ds_fail(err, DS_ERR_DATA,
                   "%s: samples of shape [%d, %d, %d], but the model input takes [%d, %d, %d]; "
                   "write the tensors at the model's input shape",
                   path, header.channels, header.height, header.width, channels, side, side);

  const int64_t elements = (int64_t)header.channels * header.height * header.width;
  const uint64_t data_bytes = (uint64_t)header.count * (uint64_t)elements * header.element_bytes;
  FILE *data = NULL, *labels = NULL;
  char data_path[4096], labels_path[4096];
  DS_TRY(open_exact(split_folder, header.data, data_bytes,
                    header.element_bytes == 4 ? "float32 samples" : "uint8 samples", &data,
                    data_path, sizeof data_path, err));
  status = open_exact(split_folder, header.labels,
                      (uint64_t)header.count * (uint64_t)header.label_bytes,
                      header.label_bytes == 4 ? "int32 labels" : "uint8 labels", &labels,
                      labels_path, sizeof labels_path, err);

  int32_t count = limit > 0 && limit < header.count ? limit : header.count;
  if (status == DS_OK) {
    out->images = malloc(sizeof(float) * (size_t)count * (size_t)elements);
    out->labels = malloc(sizeof(int32_t) * (size_t)count);
    if (out->images == NULL || out->labels == NULL)
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %d samples", data_path,
                       count);
  }
  if (status == DS_OK)
    status = read_samples(data, data_path, &header, count, elements, out->images, err);
  if (status == DS_OK)
    status = read_labels(labels, labels_path, header.label_bytes, count, out->labels, err);

  if (data != NULL)
    fclose(data);
  if (labels != NULL)
    fclose(labels);
  if (status != DS_OK) {
    dst_dataset_free(out);
    return status;
  }
  out->count = count;
  out->side = side;
  out->channels = channels;
  snprintf(out->label_source, sizeof out->label_source, "%s", labels_path);
  for (int32_t i = 0; i < count; i++) {
    if (out->labels[i] + 1 > out->class_count)
      out->class_count = out->labels[i] + 1;
  }
  return DS_OK;
}
