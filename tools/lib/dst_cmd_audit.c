/* deformslice audit: float against fixed-point accuracy and per-tensor quantization noise. */
#include <stdio.h>

#include "dst_commands.h"

int dst_cmd_audit(int argc, char **argv) {
  (void)argc;
  (void)argv;
  ds_error err;
  ds_error_clear(&err);
  ds_fail(&err, DS_ERR_INVALID_ARGUMENT, "audit is not built yet");
  return dst_report_error(&err);
}
