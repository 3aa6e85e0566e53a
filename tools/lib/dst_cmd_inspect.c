/* deformslice inspect: an artifact's sections, or an ONNX model's import report. */
#include <stdio.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "dst_args.h"
#include "dst_commands.h"
#include "formats/dsf_artifact.h"

/* 1 when path starts with the artifact magic number. */
static int is_artifact(const char *path) {
  char magic[DSF_MAGIC_BYTES];
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return 0;
  size_t got = fread(magic, 1, sizeof magic, f);
  fclose(f);
  return got == sizeof magic && memcmp(magic, DSF_MAGIC, DSF_MAGIC_BYTES) == 0;
}

int dst_cmd_inspect(int argc, char **argv) {
  const char *positional[1];
  int positional_count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);

  if (dst_args_parse(argc, argv, 0, NULL, 0, positional, 1, &positional_count, &help,
                     &err) != DS_OK)
    return dst_report_error(&err);
  if (help || positional_count != 1) {
    fprintf(help ? stdout : stderr,
            "usage: deformslice inspect FILE\n\n"
            "FILE is an artifact (sections, slice tables, DMA schedule summary) or an ONNX\n"
            "model (import report: op counts before and after folding and fusion, and the\n"
            "deformable attention blocks found).\n");
    return help ? 0 : 2;
  }

  ds_status status;
  if (is_artifact(positional[0])) {
    status = dsf_inspect_file(positional[0], stdout, &err);
  } else {
    dsr_model model = {0};
    dsc_report report;
    status = dsc_import_file(positional[0], NULL, &model, &report, &err);
    if (status == DS_OK)
      dsc_report_print(&report, stdout);
    ds_model_free(&model);
  }
  return status == DS_OK ? 0 : dst_report_error(&err);
}
