/*
 * deformslice check: imports an ONNX model, runs it in float on a stored input and compares
 * the output with a stored reference (PyTorch's, written by tools/export_models.py).
 *
 * Prints one line: the model, its input shape, the largest absolute difference, the element
 * where it occurs and PASS or FAIL against --tolerance. Exit status: 0 within tolerance, 1 for
 * a difference beyond it or any failure to import or run, 2 for bad usage.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "dst_args.h"
#include "dst_commands.h"
#include "runtime/dsr_runtime.h"

#define DST_CHECK_MAX_FILE_BYTES ((size_t)1 << 31)

/* Parses "N,C,H,W" into options->input_shape. */
static ds_status parse_shape(const char *text, dsc_options *options, ds_error *err) {
  int32_t dims[4];
  int count = 0;
  const char *cursor = text;
  while (count < 4) {
    char *end = NULL;
    long value = strtol(cursor, &end, 10);
    if (end == cursor || value < 1 || value > 1000000)
      break;
    dims[count++] = (int32_t)value;
    cursor = end;
    if (*cursor != ',')
      break;
    cursor++;
  }
  if (count != 4 || *cursor != '\0')
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--shape '%s' is invalid; expected N,C,H,W with positive integers, such as "
                   "1,3,224,224",
                   text);
  memcpy(options->input_shape, dims, sizeof dims);
  options->input_rank = 4;
  return DS_OK;
}

/* Reads a raw little-endian float32 file of exactly count values into a new buffer. */
static ds_status read_f32(const char *path, const char *what, int64_t count, float **values,
                          ds_error *err) {
  uint8_t *data = NULL;
  size_t size = 0;
  DS_TRY(ds_file_read_all(path, DST_CHECK_MAX_FILE_BYTES, &data, &size, err));
  if ((int64_t)size != count * (int64_t)sizeof(float)) {
    free(data);
    return ds_fail(err, DS_ERR_SHAPE,
                   "%s: %zu bytes, but the model's %s needs %lld float32 values (%lld bytes); "
                   "pass the file written with this model, or --shape for a dynamic export",
                   path, size, what, (long long)count, (long long)count * 4);
  }
  *values = (float *)data;
  return DS_OK;
}

/* Runs model in float mode on input; output receives the output values (caller frees). */
static ds_status run_float(const dsr_model *model, const float *input, float **output,
                           ds_error *err) {
  dsr_plan_info plan;
  DS_TRY(dsr_plan(model, DSR_MODE_FLOAT, 0, &plan, err));
  size_t arena_bytes = (plan.arena_bytes + 63) / 64 * 64;
  void *arena = aligned_alloc(64, arena_bytes > 0 ? arena_bytes : 64);
  int64_t out_count = dsr_tensor_elements(&model->tensors[model->output]);
  float *out = malloc((size_t)out_count * sizeof(float));
  if (arena == NULL || out == NULL) {
    free(arena);
    free(out);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the %zu-byte float arena",
                   arena_bytes);
  }
  dsr_context ctx;
  ds_status status =
      dsr_context_init(&ctx, model, DSR_MODE_FLOAT, 0, arena, plan.arena_bytes, err);
  if (status == DS_OK) {
    int64_t in_count = dsr_tensor_elements(&model->tensors[model->input]);
    memcpy(dsr_input_f32(&ctx), input, (size_t)in_count * sizeof(float));
    dsr_invoke(&ctx);
    memcpy(out, dsr_output_f32(&ctx), (size_t)out_count * sizeof(float));
    *output = out;
    out = NULL;
  }
  free(out);
  free(arena);
  return status;
}

int dst_cmd_check(int argc, char **argv) {
  const char *input_path = NULL, *expect_path = NULL, *tolerance_text = "1e-4";
  const char *shape_text = NULL;
  const dst_option options[] = {
      {"input", "FILE", "raw float32 input, NCHW (required)", &input_path},
      {"expect", "FILE", "raw float32 reference output (required)", &expect_path},
      {"tolerance", "T", "largest absolute difference that passes (default 1e-4)",
       &tolerance_text},
      {"shape", "N,C,H,W", "input shape for an export with dynamic axes (default: the file's)",
       &shape_text},
  };
  const int option_count = (int)(sizeof options / sizeof options[0]);
  const char *positional[1];
  int positional_count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);

  if (dst_args_parse(argc, argv, 0, options, option_count, positional, 1, &positional_count,
                     &help, &err) != DS_OK)
    return dst_report_error(&err);
  if (help || positional_count != 1 || input_path == NULL || expect_path == NULL) {
    dst_args_print_help(help ? stdout : stderr,
                        "usage: deformslice check MODEL.onnx --input FILE --expect FILE "
                        "[options]",
                        options, option_count);
    return help ? 0 : 2;
  }
  double tolerance = 0.0;
  dsc_options import_options = {{0}, 0};
  if (dst_args_double("tolerance", tolerance_text, 0.0, 1e30, &tolerance, &err) != DS_OK ||
      (shape_text != NULL && parse_shape(shape_text, &import_options, &err) != DS_OK))
    return dst_report_error(&err);

  dsr_model model = {0};
  float *input = NULL, *expected = NULL, *actual = NULL;
  ds_status status = dsc_import_file(positional[0], shape_text ? &import_options : NULL, &model,
                                     NULL, &err);
  int64_t out_count = 0;
  if (status == DS_OK) {
    out_count = dsr_tensor_elements(&model.tensors[model.output]);
    status = read_f32(input_path, "input",
                      dsr_tensor_elements(&model.tensors[model.input]), &input, &err);
  }
  if (status == DS_OK)
    status = read_f32(expect_path, "output", out_count, &expected, &err);
  if (status == DS_OK)
    status = run_float(&model, input, &actual, &err);

  int exit_status = 1;
  if (status == DS_OK) {
    double worst = 0.0;
    int64_t worst_at = 0;
    for (int64_t i = 0; i < out_count; i++) {
      double d = fabs((double)actual[i] - (double)expected[i]);
      if (isnan(d) || d > worst) {
        worst = isnan(d) ? INFINITY : d;
        worst_at = i;
      }
    }
    const dsr_tensor *in = &model.tensors[model.input];
    int pass = worst <= tolerance;
    printf("%s: input %dx%dx%dx%d, %lld outputs, max abs diff %.3g at %lld (float runtime "
           "%.6g, reference %.6g), tolerance %.3g: %s\n",
           positional[0], in->dims[0], in->dims[1], in->dims[2], in->dims[3],
           (long long)out_count, worst, (long long)worst_at,
           out_count > 0 ? actual[worst_at] : 0.0, out_count > 0 ? expected[worst_at] : 0.0,
           tolerance, pass ? "PASS" : "FAIL");
    exit_status = pass ? 0 : 1;
  }
  free(input);
  free(expected);
  free(actual);
  ds_model_free(&model);
  return status == DS_OK ? exit_status : dst_report_error(&err);
}
