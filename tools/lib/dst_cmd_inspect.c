/* deformslice inspect: an artifact's sections, or an ONNX model's import report. */
#include <stdio.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "dst_args.h"
#include "dst_commands.h"
#include "formats/dsf_artifact.h"
#include "runtime/dsr_runtime.h"

/* 1 when path starts with the artifact magic number. */
static int is_artifact(const char *path) {
  char magic[DSF_MAGIC_BYTES];
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return 0;
  size_t got = fread(magic, 1, sizeof magic, f);
  fclose(f);
  if (got == sizeof magic && memcmp(magic, DSF_MAGIC, DSF_MAGIC_BYTES) == 0)
    return 1;

  /* A damaged artifact is still reported as one, by the artifact reader, rather than as an
   * ONNX file that protobuf cannot parse. */
  size_t length = strlen(path);
  return length >= 4 && strcmp(path + length - 4, ".dsa") == 0;
}

int dst_cmd_inspect(int argc, char **argv) {
  const char *shape = NULL;
  const dst_option options[] = {
      {"input-shape", "NxCxHxW", "ONNX only: input shape for a model exported with dynamic "
                                 "axes (default: the shape in the file)", &shape},
  };
  const int option_count = (int)(sizeof options / sizeof options[0]);
  const char *positional[1];
  int positional_count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);

  if (dst_args_parse(argc, argv, 0, options, option_count, positional, 1, &positional_count,
                     &help, &err) != DS_OK)
    return dst_report_error(&err);
  if (help || positional_count != 1) {
    dst_args_print_help(help ? stdout : stderr,
                        "usage: deformslice inspect FILE\n\n"
                        "FILE is an artifact (sections, slice tables, DMA schedule summary) or "
                        "an ONNX\nmodel (import report: op histograms, node and tensor counts "
                        "around every pass,\nand the deformable attention blocks found).",
                        options, option_count);
    return help ? 0 : 2;
  }
  dsc_options import_options;
  memset(&import_options, 0, sizeof import_options);
  if (shape != NULL && dst_args_shape("input-shape", shape, import_options.input_shape,
                                      &import_options.input_rank, &err) != DS_OK)
    return dst_report_error(&err);

  ds_status status;
  if (is_artifact(positional[0])) {
    status = dsf_inspect_file(positional[0], stdout, &err);
  } else {
    dsr_model model = {0};
    dsc_report report;
    status = dsc_import_file(positional[0], &import_options, &model, &report, &err);
    if (status == DS_OK)
      dsc_report_print(&report, stdout);
    dsr_plan_info plan;
    if (status == DS_OK)
      status = dsr_plan(&model, DSR_MODE_FLOAT, 0, &plan, &err);
    if (status == DS_OK)
      printf("float arena: %zu bytes (%.1f MiB): activations %zu, scratch %zu\n",
             plan.arena_bytes, (double)plan.arena_bytes / (1024.0 * 1024.0),
             plan.activation_bytes, plan.scratch_bytes);
    ds_model_free(&model);
  }
  return status == DS_OK ? 0 : dst_report_error(&err);
}
