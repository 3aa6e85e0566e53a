/*
 * deformslice check: imports an ONNX model, runs it once in float mode on a stored input and
 * compares the output with a stored reference (raw little-endian float32 files, as
 * tools/export_models.py writes them).
 *
 * Prints the import summary, the arena size before allocating it, then one line with the
 * input shape, the largest absolute difference, where it occurs, the run time and PASS or
 * FAIL against --tolerance. Exit status: 0 within tolerance, 1 for a difference beyond it or
 * any failure to import or run, 2 for bad usage.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "dst_args.h"
#include "dst_commands.h"
#include "runtime/dsr_runtime.h"

/* Reads exactly count float32 values from path into a new buffer (caller frees). */
static ds_status read_floats(const char *path, int64_t count, float **values, ds_error *err) {
  *values = NULL;
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return ds_fail(err, DS_ERR_IO, "%s: cannot open", path);
  long length = -1;
  if (fseek(f, 0, SEEK_END) == 0)
    length = ftell(f);
  if (length < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return ds_fail(err, DS_ERR_IO, "%s: cannot determine the file size", path);
  }
  if ((int64_t)length != count * (int64_t)sizeof(float)) {
    fclose(f);
    return ds_fail(err, DS_ERR_SHAPE, "%s holds %ld bytes, but the model needs %" PRId64
                   " float32 values (%" PRId64 " bytes); pass the file written with this "
                   "model, or --input-shape for a dynamic export", path, length, count,
                   count * (int64_t)sizeof(float));
  }
  float *data = malloc((size_t)(count > 0 ? count : 1) * sizeof *data);
  if (data == NULL) {
    fclose(f);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for %" PRId64 " values", path,
                   count);
  }
  size_t got = fread(data, sizeof *data, (size_t)count, f);
  fclose(f);
  if (got != (size_t)count) {
    free(data);
    return ds_fail(err, DS_ERR_IO, "%s: read %zu of %" PRId64 " values", path, got, count);
  }
  *values = data;
  return DS_OK;
}

typedef struct check_result {
  double max_abs_diff;
  int64_t worst_index;
  int64_t top1_run, top1_expected;
  double run_s;
} check_result;

static void compare(const float *run, const float *expected, int64_t count, check_result *r) {
  r->max_abs_diff = 0.0;
  r->worst_index = 0;
  r->top1_run = r->top1_expected = 0;
  for (int64_t i = 0; i < count; i++) {
    double d = fabs((double)run[i] - (double)expected[i]);
    if (d > r->max_abs_diff || isnan(d)) {
      r->max_abs_diff = isnan(d) ? INFINITY : d;
      r->worst_index = i;
    }
    if (run[i] > run[r->top1_run])
      r->top1_run = i;
    if (expected[i] > expected[r->top1_expected])
      r->top1_expected = i;
  }
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Plans, allocates and runs the model on input; writes the output into a new buffer. */
static ds_status run_model(const dsr_model *model, const float *input, float **output,
                           double *run_s, ds_error *err) {
  dsr_plan_info plan;
  DS_TRY(dsr_plan(model, DSR_MODE_FLOAT, 0, &plan, err));
  printf("arena: %zu bytes (%.1f MiB): activations %zu, scratch %zu\n", plan.arena_bytes,
         (double)plan.arena_bytes / (1024.0 * 1024.0), plan.activation_bytes, plan.scratch_bytes);
  fflush(stdout);
  size_t bytes = (plan.arena_bytes + 63) / 64 * 64;
  void *arena = aligned_alloc(64, bytes > 0 ? bytes : 64);
  if (arena == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the %zu-byte arena", bytes);
  dsr_context ctx;
  ds_status status = dsr_context_init(&ctx, model, DSR_MODE_FLOAT, 0, arena, plan.arena_bytes,
                                      err);
  int64_t in_count = dsr_tensor_elements(&model->tensors[model->input]);
  int64_t out_count = dsr_tensor_elements(&model->tensors[model->output]);
  float *out = NULL;
  if (status == DS_OK) {
    out = malloc((size_t)out_count * sizeof *out);
    if (out == NULL)
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "no memory for the output");
  }
  if (status == DS_OK) {
    memcpy(dsr_input_f32(&ctx), input, (size_t)in_count * sizeof(float));
    double start = now_s();
    dsr_invoke(&ctx);
    *run_s = now_s() - start;
    memcpy(out, dsr_output_f32(&ctx), (size_t)out_count * sizeof *out);
  }
  free(arena);
  *output = out;
  return status;
}

/* Imports, runs and compares; *pass is 1 when the max abs diff is within tolerance. */
static ds_status check_main(const char *model_path, const dsc_options *options,
                            const char *input_path, const char *expected_path, double tolerance,
                            int *pass, ds_error *err) {
  dsr_model model;
  dsc_report report;
  DS_TRY(dsc_import_file(model_path, options, &model, &report, err));
  const dsr_tensor *in = &model.tensors[model.input];
  const dsr_tensor *out = &model.tensors[model.output];
  char in_shape[96], out_shape[96];
  snprintf(in_shape, sizeof in_shape, "%d", in->dims[0]);
  for (int32_t i = 1; i < in->rank; i++)
    snprintf(in_shape + strlen(in_shape), sizeof in_shape - strlen(in_shape), "x%d", in->dims[i]);
  snprintf(out_shape, sizeof out_shape, "%d", out->dims[0]);
  for (int32_t i = 1; i < out->rank; i++)
    snprintf(out_shape + strlen(out_shape), sizeof out_shape - strlen(out_shape), "x%d",
             out->dims[i]);
  printf("%s: opset %d, %d ONNX nodes -> %d runtime nodes, %d deformable blocks, input %s, "
         "output %s\n", model_path, report.opset, report.onnx_node_count, report.node_count_after,
         report.block_count, in_shape, out_shape);

  float *input = NULL, *expected = NULL, *output = NULL;
  check_result r;
  memset(&r, 0, sizeof r);
  ds_status status = read_floats(input_path, dsr_tensor_elements(in), &input, err);
  if (status == DS_OK)
    status = read_floats(expected_path, dsr_tensor_elements(out), &expected, err);
  if (status == DS_OK)
    status = run_model(&model, input, &output, &r.run_s, err);
  if (status == DS_OK) {
    compare(output, expected, dsr_tensor_elements(out), &r);
    *pass = r.max_abs_diff <= tolerance;
    printf("%s: input %s, max abs diff %.3g at %" PRId64 " (float runtime %.6g, reference "
           "%.6g), top-1 %" PRId64 " (reference %" PRId64 "), run %.2f s, tolerance %.3g: %s\n",
           model_path, in_shape, r.max_abs_diff, r.worst_index, (double)output[r.worst_index],
           (double)expected[r.worst_index], r.top1_run, r.top1_expected, r.run_s, tolerance,
           *pass ? "PASS" : "FAIL");
  }
  free(input);
  free(expected);
  free(output);
  ds_model_free(&model);
  return status;
}

int dst_cmd_check(int argc, char **argv) {
  const char *input = NULL, *expected = NULL, *shape = NULL, *tolerance_text = "1e-4";
  const dst_option options[] = {
      {"input", "FILE", "input tensor, raw float32 in the model's input shape (required)",
       &input},
      {"expect", "FILE", "reference output, raw float32 (required)", &expected},
      {"input-shape", "N,C,H,W", "input shape for a model exported with dynamic axes "
                                 "(default: the shape in the file)", &shape},
      {"shape", "N,C,H,W", "same as --input-shape", &shape},
      {"tolerance", "T", "largest absolute difference that passes (default 1e-4)",
       &tolerance_text},
  };
  const int option_count = (int)(sizeof options / sizeof options[0]);
  const char *positional[1];
  int positional_count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);

  if (dst_args_parse(argc, argv, 0, options, option_count, positional, 1, &positional_count,
                     &help, &err) != DS_OK)
    return dst_report_error(&err);
  if (help || positional_count != 1 || input == NULL || expected == NULL) {
    dst_args_print_help(help ? stdout : stderr,
                        "usage: deformslice check MODEL.onnx --input FILE --expect FILE\n\n"
                        "Runs the model in float mode and compares its output with the "
                        "reference.\nExit status 0 when the max abs diff is within the "
                        "tolerance, 1 otherwise.",
                        options, option_count);
    return help ? 0 : 2;
  }
  dsc_options import_options;
  memset(&import_options, 0, sizeof import_options);
  if (shape != NULL && dst_args_shape("input-shape", shape, import_options.input_shape,
                                      &import_options.input_rank, &err) != DS_OK)
    return dst_report_error(&err);
  double tolerance = 0.0;
  if (dst_args_double("tolerance", tolerance_text, 0.0, DBL_MAX, &tolerance, &err) != DS_OK)
    return dst_report_error(&err);

  int pass = 0;
  ds_status status = check_main(positional[0], &import_options, input, expected, tolerance,
                                &pass, &err);
  if (status != DS_OK) {
    dst_report_error(&err); /* the exit status is 1 for every failure to import or run */
    return 1;
  }
  return pass ? 0 : 1;
}
