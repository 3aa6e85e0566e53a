/*
 * Status codes and error messages shared by every deformslice module.
 *
 * Values are pinned: they appear in logs and in the exit status of the command line tool, so
 * a retired code stays listed as a comment and its number is never reused.
 *
 * Functions that can fail return a ds_status and, when given a non-NULL ds_error, write a
 * message that names the file, node or field, the offending value and the fix. There is no
 * global error state: each caller owns its ds_error.
 */
#ifndef DS_STATUS_H
#define DS_STATUS_H

#include <stddef.h>

typedef enum ds_status {
  DS_OK = 0,
  DS_ERR_INVALID_ARGUMENT = 1, /* a caller passed a value outside the documented range */
  DS_ERR_OUT_OF_MEMORY = 2,
  DS_ERR_IO = 3,               /* open, read, write or rename failed */
  DS_ERR_ONNX_PARSE = 4,       /* not a valid ONNX protobuf */
  DS_ERR_ONNX_VERSION = 5,     /* IR version or opset outside the supported range */
  DS_ERR_UNSUPPORTED_OP = 6,   /* an op type or attribute the converter cannot take */
  DS_ERR_SHAPE = 7,            /* a shape that cannot be made static or does not agree */
  DS_ERR_GRAPH = 8,            /* a dangling edge, a cycle or a duplicate tensor name */
  DS_ERR_ARTIFACT_MAGIC = 9,
  DS_ERR_ARTIFACT_VERSION = 10,
  DS_ERR_ARTIFACT_CORRUPT = 11, /* an offset, length or count that does not fit the file */
  DS_ERR_ARTIFACT_CHECKSUM = 12,
  DS_ERR_DATA = 13,            /* a data set file that is missing or malformed */
  DS_ERR_PRESET = 14,          /* an accelerator description with a missing or invalid field */
  DS_ERR_SLICE_CONFIG = 15,    /* a slice configuration that does not fit the layer */
  DS_ERR_ARENA_TOO_SMALL = 16,
  DS_ERR_JOURNAL = 17,         /* a search journal that cannot be read back */
  DS_ERR_QUANT = 18,           /* a tensor that cannot be quantized (no calibration, bad range) */
  DS_ERR_INTERNAL = 19,        /* a broken invariant: a bug, please report it */
  DS_STATUS_COUNT = 20
} ds_status;

/* Caller-owned error record. message is empty when no error was reported. */
typedef struct ds_error {
  ds_status status;
  char message[1024];
} ds_error;

/* Returns the enum name of a status, such as "DS_ERR_SHAPE"; never NULL. */
const char *ds_status_name(ds_status status);

/*
 * Records status and a printf-style message in err (which may be NULL) and returns status, so
 * a failing function can `return ds_fail(err, DS_ERR_SHAPE, "...", ...);`. A message already
 * recorded is kept and the new one is prefixed to it with ": ", so outer callers add context.
 */
ds_status ds_fail(ds_error *err, ds_status status, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err to DS_OK with an empty message. */
void ds_error_clear(ds_error *err);

/* Forwards a failing status unchanged. */
#define DS_TRY(expr)                 \
  do {                               \
    ds_status ds_try_status_ = (expr); \
    if (ds_try_status_ != DS_OK)     \
      return ds_try_status_;         \
  } while (0)

#endif
