/* The bundled trained model (models/dat_pp_nano.onnx): import, float outputs against
 * PyTorch, and fixed-point agreement with float on real test images. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "tools/lib/dst_compile.h"
#include "tools/lib/dst_data.h"
#include "tools/lib/dst_eval.h"

#define BUNDLED_MODEL DS_SOURCE_DIR "/models/dat_pp_nano.onnx"
#define FIXTURES DS_SOURCE_DIR "/tests/fixtures"

static void read_floats(const char *path, float *values, size_t count) {
  uint8_t *data = NULL;
  size_t size = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(ds_file_read_all(path, 1 << 20, &data, &size, &err), DS_OK, "%s", err.message);
  cr_assert_eq(size, count * sizeof(float), "%s: %zu bytes, expected %zu", path, size,
               count * sizeof(float));
  memcpy(values, data, size);
  free(data);
}

Test(bundled, imports_with_five_deformable_blocks) {
  dsr_model model = {0};
  dsc_report report;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(BUNDLED_MODEL, NULL, &model, &report, &err), DS_OK, "%s",
               err.message);
  cr_expect_eq(report.opset, 16);
  cr_expect_eq(report.block_count, 5);
  cr_expect_eq(ds_model_deform_count(&model), 5);
  const dsr_tensor *input = &model.tensors[model.input];
  cr_expect_eq(input->dims[2], 32);
  cr_expect_eq(input->dims[3], 32);
  ds_model_free(&model);
}

Test(bundled, float_matches_pytorch) {
  dsr_model model = {0};
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(BUNDLED_MODEL, NULL, &model, NULL, &err), DS_OK, "%s",
               err.message);

  float images[3 * 32 * 32], expected[3 * 10];
  read_floats(FIXTURES "/fashion_test3_32.f32", images, 3 * 32 * 32);
  read_floats(FIXTURES "/dat_pp_nano_test3.output.f32", expected, 3 * 10);

  dsr_plan_info plan;
  cr_assert_eq(dsr_plan(&model, DSR_MODE_FLOAT, 0, &plan, &err), DS_OK, "%s", err.message);
  void *arena = aligned_alloc(64, (plan.arena_bytes + 63) & ~(size_t)63);
  dsr_context ctx;
  cr_assert_eq(dsr_context_init(&ctx, &model, DSR_MODE_FLOAT, 0, arena, plan.arena_bytes, &err),
               DS_OK, "%s", err.message);

  float max_diff = 0.0f;
  for (int image = 0; image < 3; image++) {
    memcpy(dsr_input_f32(&ctx), images + image * 32 * 32, sizeof(float) * 32 * 32);
    dsr_invoke(&ctx);
    const float *logits = dsr_output_f32(&ctx);
    for (int c = 0; c < 10; c++) {
      float diff = fabsf(logits[c] - expected[image * 10 + c]);
      if (diff > max_diff)
        max_diff = diff;
    }
  }
  cr_expect_lt(max_diff, 1e-4f, "max abs difference %g against PyTorch", max_diff);

  free(arena);
  ds_model_free(&model);
}

Test(bundled, fixed_point_agrees_with_float, .timeout = 600) {
  if (access(DST_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0)
    cr_skip_test("dataset-fashion-mnist is not installed");

  dsr_model model = {0};
  dst_dataset calibration, test;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(BUNDLED_MODEL, NULL, &model, NULL, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(dst_dataset_load(DST_FASHION_MNIST_DIR, DST_SPLIT_TRAIN, 32, 64, &calibration,
                                &err),
               DS_OK, "%s", err.message);
  cr_assert_eq(dst_dataset_load(DST_FASHION_MNIST_DIR, DST_SPLIT_TEST, 32, 200, &test, &err),
               DS_OK, "%s", err.message);
  char method[32];
  const dst_calibration_choice choice = {DSQ_CALIBRATION_MINMAX, DSQ_PERCENTILE_DEFAULT, 0};
  cr_assert_eq(
      dst_quantize_model(&model, &calibration, &choice, 2, method, sizeof method, &err), DS_OK,
      "%s", err.message);

  int32_t float_predictions[200], fixed_predictions[200];
  dst_eval_result float_result, fixed_result;
  dst_eval_options eval = {.mode = DSR_MODE_FLOAT, .threads = 2};
  cr_assert_eq(dst_evaluate(&model, &test, 0, 200, &eval, &float_result, float_predictions, &err),
               DS_OK, "%s", err.message);
  eval.mode = DSR_MODE_FIXED;
  cr_assert_eq(dst_evaluate(&model, &test, 0, 200, &eval, &fixed_result, fixed_predictions, &err),
               DS_OK, "%s", err.message);

  int agree = 0;
  for (int i = 0; i < 200; i++)
    agree += float_predictions[i] == fixed_predictions[i];
  /* The trained model is above 90% on these images; quantization may flip a few close calls. */
  cr_expect_gt(float_result.top1_percent, 85.0, "float top-1 %.2f%%", float_result.top1_percent);
  cr_expect_geq(agree, 194, "fixed point agrees with float on %d of 200 images", agree);

  dst_dataset_free(&calibration);
  dst_dataset_free(&test);
  ds_model_free(&model);
}
