#include "ds_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[DS_STATUS_COUNT] = {
    "DS_OK",
    "DS_ERR_INVALID_ARGUMENT",
    "DS_ERR_OUT_OF_MEMORY",
    "DS_ERR_IO",
    "DS_ERR_ONNX_PARSE",
    "DS_ERR_ONNX_VERSION",
    "DS_ERR_UNSUPPORTED_OP",
    "DS_ERR_SHAPE",
    "DS_ERR_GRAPH",
    "DS_ERR_ARTIFACT_MAGIC",
    "DS_ERR_ARTIFACT_VERSION",
    "DS_ERR_ARTIFACT_CORRUPT",
    "DS_ERR_ARTIFACT_CHECKSUM",
    "DS_ERR_DATA",
    "DS_ERR_PRESET",
    "DS_ERR_SLICE_CONFIG",
    "DS_ERR_ARENA_TOO_SMALL",
    "DS_ERR_JOURNAL",
    "DS_ERR_QUANT",
    "DS_ERR_INTERNAL",
};

const char *ds_status_name(ds_status status) {
  if ((int)status < 0 || status >= DS_STATUS_COUNT)
    return "DS_ERR_UNKNOWN";
  return status_names[status];
}

ds_status ds_fail(ds_error *err, ds_status status, const char *format, ...) {
  if (err == NULL)
    return status;

  char fresh[sizeof err->message];
  va_list args;
  va_start(args, format);
  vsnprintf(fresh, sizeof fresh, format, args);
  va_end(args);

  /* An inner failure already wrote the detail: keep it after the outer context. */
  if (err->status != DS_OK && err->message[0] != '\0') {
    char inner[sizeof err->message];
    memcpy(inner, err->message, sizeof inner);

    /* fresh, ": ", inner, cut to the buffer with a terminating NUL. */
    size_t used = strlen(fresh);
    memcpy(err->message, fresh, used);
    const char separator[] = ": ";
    for (size_t i = 0; separator[i] != '\0' && used + 1 < sizeof err->message; i++)
      err->message[used++] = separator[i];
    size_t inner_length = strlen(inner);
    size_t room = sizeof err->message - 1 - used;
    if (inner_length > room)
      inner_length = room;
    memcpy(err->message + used, inner, inner_length);
    err->message[used + inner_length] = '\0';
  } else {
    memcpy(err->message, fresh, sizeof fresh);
  }
  err->status = status;
  return status;
}

void ds_error_clear(ds_error *err) {
  if (err == NULL)
    return;
  err->status = DS_OK;
  err->message[0] = '\0';
}
