/*
 * Runtime throughput benchmark: the same model in float and fixed-point mode, one thread, on
 * the same test images in the same run, so the ratio holds on a noisy machine. Also prints
 * each mode's arena size.
 *
 * Usage: bench_runtime MODEL.onnx [IMAGES (default 2000)] [DATA_DIR]
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "tools/lib/dst_compile.h"
#include "tools/lib/dst_data.h"
#include "tools/lib/dst_eval.h"
#include "tools/lib/dst_progress.h"

static int fail(const ds_error *err) {
  fprintf(stderr, "bench_runtime: %s\n", err->message);
  return 1;
}

/* Seconds per image and top-1 of one mode. */
static ds_status time_mode(const dsr_model *model, const dst_dataset *test, dsr_mode mode,
                           double *seconds_per_image, double *top1, ds_error *err) {
  dst_eval_options eval = {.mode = mode, .threads = 1};
  dst_eval_result result;
  double start_s = dst_now_s();
  DS_TRY(dst_evaluate(model, test, 0, test->count, &eval, &result, NULL, err));
  *seconds_per_image = (dst_now_s() - start_s) / test->count;
  *top1 = result.top1_percent;
  return DS_OK;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_runtime MODEL.onnx [IMAGES] [DATA_DIR]\n");
    return 2;
  }
  const int32_t images = argc > 2 ? atoi(argv[2]) : 2000;
  const char *data_dir = argc > 3 ? argv[3] : DST_FASHION_MNIST_DIR;

  ds_error err;
  ds_error_clear(&err);
  dsr_model model = {0};
  if (dsc_import_file(argv[1], NULL, &model, NULL, &err) != DS_OK)
    return fail(&err);
  const int32_t side = model.tensors[model.input].dims[3];

  dst_dataset calibration, test;
  if (dst_dataset_load(data_dir, DST_SPLIT_TRAIN, side, 200, &calibration, &err) != DS_OK ||
      dst_dataset_load(data_dir, DST_SPLIT_TEST, side, images, &test, &err) != DS_OK)
    return fail(&err);
  char method[32];
  const dst_calibration_choice choice = {DSQ_CALIBRATION_MINMAX, DSQ_PERCENTILE_DEFAULT, 0};
  if (dst_quantize_model(&model, &calibration, &choice, 2, method, sizeof method, &err) != DS_OK)
    return fail(&err);

  double float_s, fixed_s, float_top1, fixed_top1;
  if (time_mode(&model, &test, DSR_MODE_FLOAT, &float_s, &float_top1, &err) != DS_OK ||
      time_mode(&model, &test, DSR_MODE_FIXED, &fixed_s, &fixed_top1, &err) != DS_OK)
    return fail(&err);

  dsr_plan_info float_plan, fixed_plan;
  if (dsr_plan(&model, DSR_MODE_FLOAT, 0, &float_plan, &err) != DS_OK ||
      dsr_plan(&model, DSR_MODE_FIXED, 0, &fixed_plan, &err) != DS_OK)
    return fail(&err);

  printf("\n%s, %d test images, one thread\n\n", argv[1], test.count);
  printf("| mode | ms per image | images per second | top-1 | arena bytes |\n");
  printf("|---|---|---|---|---|\n");
  printf("| float | %.3f | %.1f | %.2f%% | %zu |\n", 1e3 * float_s, 1.0 / float_s, float_top1,
         float_plan.arena_bytes);
  printf("| fixed point | %.3f | %.1f | %.2f%% | %zu |\n", 1e3 * fixed_s, 1.0 / fixed_s,
         fixed_top1, fixed_plan.arena_bytes);
  printf("\nfixed point takes %.2fx the time of float\n", fixed_s / float_s);

  dst_dataset_free(&calibration);
  dst_dataset_free(&test);
  ds_model_free(&model);
  return 0;
}
