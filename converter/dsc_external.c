/*
 * ONNX external data: initializers whose bytes live in a separate file (data_location
 * EXTERNAL), as torch.onnx.export and onnx.save_model write them for models past 2 GiB.
 *
 * The external_data entries are "location" (required, a path relative to the folder of the
 * .onnx file), "offset" and "length" (optional decimal byte counts) and "checksum" (ignored).
 * Every value is checked before use: the location must stay inside the model's folder (no
 * absolute path, no ".." component, and after resolving links the file must still be inside
 * it), offset and length must be decimal and fit the file, and the length must equal the
 * bytes the shape and element type need.
 */
#define _XOPEN_SOURCE 700 /* realpath */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dsc_ir.h"

typedef struct external_ref {
  const char *location;
  int64_t offset;
  int64_t length; /* -1 when absent */
} external_ref;

/* Parses a decimal byte count of at most 18 digits, so it fits int64_t. */
static int parse_count(const char *text, int64_t *value) {
  if (text == NULL || text[0] == '\0' || strlen(text) > 18)
    return 0;
  int64_t v = 0;
  for (const char *p = text; *p != '\0'; p++) {
    if (*p < '0' || *p > '9')
      return 0;
    v = v * 10 + (*p - '0');
  }
  *value = v;
  return 1;
}

static ds_status read_entries(const dsc_graph *g, const Onnx__TensorProto *t, const char *what,
                              external_ref *ref, ds_error *err) {
  memset(ref, 0, sizeof *ref);
  ref->length = -1;
  for (size_t i = 0; i < t->n_external_data; i++) {
    const Onnx__StringStringEntryProto *e = t->external_data[i];
    if (e == NULL || e->key == NULL)
      continue;
    const char *value = e->value != NULL ? e->value : "";
    if (strcmp(e->key, "location") == 0) {
      ref->location = value;
    } else if (strcmp(e->key, "offset") == 0) {
      if (!parse_count(value, &ref->offset))
        return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: %s has external data offset '%.40s', "
                       "which is not a non-negative decimal byte count", g->path, what, value);
    } else if (strcmp(e->key, "length") == 0) {
      if (!parse_count(value, &ref->length))
        return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: %s has external data length '%.40s', "
                       "which is not a non-negative decimal byte count", g->path, what, value);
    }
  }
  if (ref->location == NULL || ref->location[0] == '\0')
    return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: %s keeps its data in an external file but "
                   "names no location", g->path, what);
  return DS_OK;
}

/* The location must be relative and free of ".." components. */
static int location_is_inside(const char *location) {
  if (location[0] == '/' || location[0] == '\\')
    return 0;
  const char *p = location;
  while (*p != '\0') {
    const char *end = p;
    while (*end != '\0' && *end != '/' && *end != '\\')
      end++;
    if (end - p == 2 && p[0] == '.' && p[1] == '.')
      return 0;
    p = *end != '\0' ? end + 1 : end;
  }
  return 1;
}

/* Opens folder/location after checking that its real path stays under the folder's. */
static ds_status open_inside(const dsc_graph *g, const char *what, const char *location,
                             char *path, size_t path_size, FILE **file, ds_error *err) {
  const char *folder = g->base_dir != NULL ? g->base_dir : ".";
  if (!location_is_inside(location))
    return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: %s names external file '%.200s', which leaves "
                   "the model's folder '%s'; external data must be a relative path inside it",
                   g->path, what, location, folder);
  int written = snprintf(path, path_size, "%s/%s", folder, location);
  if (written < 0 || (size_t)written >= path_size)
    return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: %s names external file '%.200s', a path "
                   "longer than %zu bytes", g->path, what, location, path_size - 1);

  char real_folder[PATH_MAX], real_file[PATH_MAX];
  if (realpath(folder, real_folder) == NULL)
    return ds_fail(err, DS_ERR_IO, "%s: cannot resolve the model's folder '%s': %s", g->path,
                   folder, strerror(errno));
  if (realpath(path, real_file) == NULL)
    return ds_fail(err, DS_ERR_IO, "%s: %s: cannot open external file '%s': %s", g->path,
                   what, path, strerror(errno));
  size_t length = strlen(real_folder);
  int root = length == 1 && real_folder[0] == '/';
  if (!root && (strncmp(real_file, real_folder, length) != 0 || real_file[length] != '/'))
    return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: %s: external file '%s' resolves to '%s', "
                   "outside the model's folder '%s'", g->path, what, path, real_file,
                   real_folder);

  *file = fopen(real_file, "rb");
  if (*file == NULL)
    return ds_fail(err, DS_ERR_IO, "%s: %s: cannot open external file '%s': %s", g->path, what,
                   path, strerror(errno));
  return DS_OK;
}

ds_status dsc_external_read(const dsc_graph *g, const Onnx__TensorProto *t, const char *what,
                            uint64_t expected_bytes, uint8_t **bytes, ds_error *err) {
  *bytes = NULL;
  external_ref ref;
  DS_TRY(read_entries(g, t, what, &ref, err));
  char path[4096];
  FILE *file = NULL;
  DS_TRY(open_inside(g, what, ref.location, path, sizeof path, &file, err));

  ds_status status = DS_OK;
  struct stat info;
  int64_t file_bytes = -1;
  if (fstat(fileno(file), &info) == 0 && S_ISREG(info.st_mode))
    file_bytes = (int64_t)info.st_size;
  int64_t length = ref.length >= 0 ? ref.length : (int64_t)expected_bytes;
  if (file_bytes < 0) {
    status = ds_fail(err, DS_ERR_IO, "%s: %s: external file '%s' is not a regular file",
                     g->path, what, path);
  } else if (ref.length >= 0 && (uint64_t)ref.length != expected_bytes) {
    status = ds_fail(err, DS_ERR_ONNX_PARSE, "%s: %s: external data length %" PRId64 " in "
                     "'%s' disagrees with its shape and type, which need %" PRIu64 " bytes",
                     g->path, what, ref.length, path, expected_bytes);
  } else if (ref.offset > file_bytes || length > file_bytes - ref.offset) {
    status = ds_fail(err, DS_ERR_ONNX_PARSE, "%s: %s: external data at offset %" PRId64
                     " with length %" PRId64 " runs past the end of '%s' (%" PRId64 " bytes); "
                     "the file is truncated or belongs to another model", g->path, what,
                     ref.offset, length, path, file_bytes);
  }

  uint8_t *data = NULL;
  if (status == DS_OK) {
    data = malloc(length > 0 ? (size_t)length : 1);
    if (data == NULL)
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: %s: no memory for %" PRId64 " bytes of "
                       "external data", g->path, what, length);
  }
  if (status == DS_OK && fseeko(file, (off_t)ref.offset, SEEK_SET) != 0)
    status = ds_fail(err, DS_ERR_IO, "%s: %s: cannot seek to offset %" PRId64 " of '%s'",
                     g->path, what, ref.offset, path);
  if (status == DS_OK && length > 0 && fread(data, 1, (size_t)length, file) != (size_t)length)
    status = ds_fail(err, DS_ERR_IO, "%s: %s: cannot read %" PRId64 " bytes at offset %" PRId64
                     " of '%s'", g->path, what, length, ref.offset, path);
  fclose(file);
  if (status != DS_OK) {
    free(data);
    return status;
  }
  *bytes = data;
  return DS_OK;
}
