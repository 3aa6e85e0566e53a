/*
 * Accuracy of the precision modes in one run: float, pure int8, int16 by tensor class, and
 * mixed precision under several int16 budgets, each on the same test images, with the drop
 * against float in points. All modes share one min/max calibration over the training images
 * (and the slice configurations compile uses); mixed precision measures its tensors on the
 * first 64 validation images, never on the test set.
 *
 * Usage: bench_precision MODEL.onnx [TEST_IMAGES (default 10000)] [BUDGETS (comma-separated
 *        bytes, default 1024,4096,16384,65536)] [DATA_DIR]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "tools/lib/dst_compile.h"
#include "tools/lib/dst_data.h"
#include "tools/lib/dst_eval.h"
#include "tools/lib/dst_precision.h"
#include "tools/lib/dst_progress.h"

#define MAX_BUDGETS 16

static int fail(const ds_error *err) {
  fprintf(stderr, "bench_precision: %s\n", err->message);
  return 1;
}

static ds_status top1(const dsr_model *model, const dst_dataset *test, dsr_mode mode,
                      int32_t threads, double *percent, ds_error *err) {
  dst_eval_options eval = {.mode = mode, .threads = threads};
  dst_eval_result result;
  DS_TRY(dst_evaluate(model, test, 0, test->count, &eval, &result, NULL, err));
  *percent = result.top1_percent;
  return DS_OK;
}

/* Quantizes under config, measures test top-1 and prints one table row. */
static ds_status run_mode(dsr_model *model, const dsq_calibration *calib,
                          const dst_precision_config *config, const dst_dataset *validation,
                          const dst_dataset *test, int32_t threads, double float_top1,
                          ds_error *err) {
  dst_precision_record record;
  double start_s = dst_now_s();
  ds_status status =
      dst_precision_quantize(model, calib, config, validation, threads, &record, err);
  double choose_s = dst_now_s() - start_s;
  double fixed_top1 = 0.0;
  if (status == DS_OK)
    status = top1(model, test, DSR_MODE_FIXED, threads, &fixed_top1, err);
  if (status == DS_OK) {
    char budget[32] = "-";
    if (record.int16_budget_bytes >= 0)
      snprintf(budget, sizeof budget, "%lld", (long long)record.int16_budget_bytes);
    printf("| %s | %s | %d | %lld | %.2f%% | %+.2f | %.1f |\n",
           dst_precision_mode_name(record.mode), budget, record.int16_items,
           (long long)record.int16_bytes, fixed_top1, fixed_top1 - float_top1, choose_s);
    fflush(stdout);
  }
  dst_precision_record_free(&record);
  return status;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_precision MODEL.onnx [TEST_IMAGES] [BUDGETS] [DATA_DIR]\n");
    return 2;
  }
  const int32_t images = argc > 2 ? atoi(argv[2]) : 10000;
  const char *budget_text = argc > 3 ? argv[3] : "1024,4096,16384,65536";
  const char *data_dir = argc > 4 ? argv[4] : DST_FASHION_MNIST_DIR;
  int64_t budgets[MAX_BUDGETS];
  int32_t budget_count = 0;
  for (const char *p = budget_text; *p != '\0' && budget_count < MAX_BUDGETS;) {
    char *end;
    budgets[budget_count++] = strtoll(p, &end, 10);
    if (end == p || budgets[budget_count - 1] < 0) {
      fprintf(stderr, "bench_precision: budgets '%s' are not comma-separated byte counts\n",
              budget_text);
      return 2;
    }
    p = *end == ',' ? end + 1 : end;
  }

  ds_error err;
  ds_error_clear(&err);
  dsr_model model = {0};
  if (dsc_import_file(argv[1], NULL, &model, NULL, &err) != DS_OK)
    return fail(&err);
  const int32_t side = model.tensors[model.input].dims[3];
  const int32_t threads = dst_default_threads();

  dst_dataset calibration, validation, test;
  if (dst_dataset_load(data_dir, DST_SPLIT_TRAIN, side, 500, &calibration, &err) != DS_OK ||
      dst_dataset_load(data_dir, DST_SPLIT_VALIDATION, side, DST_PRECISION_SEARCH_IMAGES,
                       &validation, &err) != DS_OK ||
      dst_dataset_load(data_dir, DST_SPLIT_TEST, side, images, &test, &err) != DS_OK)
    return fail(&err);

  const dst_calibration_choice choice = {.method = DSQ_CALIBRATION_MINMAX,
                                         .percentile = DSQ_PERCENTILE_DEFAULT};
  dsq_calibration calib;
  if (dst_calibrate_model(&model, &calibration, &choice, threads, &calib, &err) != DS_OK)
    return fail(&err);

  double float_top1;
  if (top1(&model, &test, DSR_MODE_FLOAT, threads, &float_top1, &err) != DS_OK)
    return fail(&err);
  printf("model %s, %d test images, %d threads\n\n", argv[1], test.count, threads);
  printf("| mode | int16 budget bytes | int16 items | int16 extra bytes | fixed top-1 | "
         "fixed - float (points) | choice s |\n");
  printf("|---|---|---|---|---|---|---|\n");
  printf("| float | - | - | - | %.2f%% | - | - |\n", float_top1);

  dst_precision_config config;
  ds_status status = dst_parse_precision("int8", NULL, NULL, &config, &err);
  if (status == DS_OK)
    status = run_mode(&model, &calib, &config, &validation, &test, threads, float_top1, &err);
  if (status == DS_OK)
    status = dst_parse_precision("class", NULL, NULL, &config, &err);
  if (status == DS_OK)
    status = run_mode(&model, &calib, &config, &validation, &test, threads, float_top1, &err);
  for (int32_t b = 0; b < budget_count && status == DS_OK; b++) {
    char text[32];
    snprintf(text, sizeof text, "%lld", (long long)budgets[b]);
    status = dst_parse_precision("mixed", text, NULL, &config, &err);
    if (status == DS_OK)
      status = run_mode(&model, &calib, &config, &validation, &test, threads, float_top1, &err);
  }

  dsq_calibration_free(&calib);
  dst_dataset_free(&calibration);
  dst_dataset_free(&validation);
  dst_dataset_free(&test);
  ds_model_free(&model);
  return status == DS_OK ? 0 : fail(&err);
}
