/*
 * Fixed-point PAD and CONCAT against their float versions. Each model is imported, calibrated
 * on random inputs, quantized and run in both modes. Bound: PAD moves quantized values, so its
 * error is the input rounding plus the pad value rounding, at most s / 2 each. CONCAT adds at
 * most one output step s_y of requantization to the error its inputs already carry (at most
 * two steps of their own scale s_x after the Sub, Mul and Add that feed them).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "formats/dsf_artifact.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_quantize.h"
#include "ds_test_fixture.h"
#include "runtime/dsr_fixed.h"
#include "runtime/dsr_runtime.h"

#define OPS DS_SOURCE_DIR "/tests/fixtures/ops/"

static float uniform(uint32_t *state) {
  *state = *state * 1664525u + 1013904223u;
  return (float)(*state >> 8) / (float)(1u << 24) * 4.0f - 2.0f;
}

/* Runs model once in mode on input; returns a copy of the float output. */
static float *run_mode(const dsr_model *model, dsr_mode mode, const float *input) {
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan(model, mode, 0, &plan, &err), DS_OK, "plan: %s", err.message);
  void *arena = aligned_alloc(64, (plan.arena_bytes + 63) / 64 * 64);
  cr_assert_not_null(arena);
  dsr_context ctx;
  cr_assert_eq(dsr_context_init(&ctx, model, mode, 0, arena, plan.arena_bytes, &err), DS_OK,
               "context: %s", err.message);
  int64_t in_count = dsr_tensor_elements(&model->tensors[model->input]);
  int64_t out_count = dsr_tensor_elements(&model->tensors[model->output]);
  memcpy(dsr_input_f32(&ctx), input, (size_t)in_count * sizeof(float));
  dsr_invoke(&ctx);
  float *out = malloc((size_t)out_count * sizeof(float));
  cr_assert_not_null(out);
  memcpy(out, dsr_output_f32(&ctx), (size_t)out_count * sizeof(float));
  free(arena);
  return out;
}

/* Imports file, quantizes it on 12 random inputs and returns the worst error over 4 of them,
 * in units of the bound computed by bound_of. The test inputs are calibrated too, so no value
 * saturates and the bound holds. */
static double worst_ratio(const char *file, double (*bound_of)(const dsr_model *)) {
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(file, NULL, &model, NULL, &err), DS_OK, "%s", err.message);
  int64_t in_count = dsr_tensor_elements(&model.tensors[model.input]);
  int64_t out_count = dsr_tensor_elements(&model.tensors[model.output]);
  float *images = malloc((size_t)(12 * in_count) * sizeof(float));
  cr_assert_not_null(images);
  uint32_t state = 7;
  for (int64_t i = 0; i < 12 * in_count; i++)
    images[i] = uniform(&state);

  dsq_calibration calib;
  cr_assert_eq(dsq_calibration_init(&calib, &model, DSQ_CALIBRATION_MINMAX, &err), DS_OK);
  cr_assert_eq(dsq_calibration_run(&calib, &model, images, 12, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsq_quantize(&model, &calib, NULL, &err), DS_OK, "%s", err.message);
  dsq_calibration_free(&calib);

  double bound = bound_of(&model), worst = 0.0;
  for (int32_t image = 8; image < 12; image++) {
    const float *input = images + image * in_count;
    float *expected = run_mode(&model, DSR_MODE_FLOAT, input);
    float *actual = run_mode(&model, DSR_MODE_FIXED, input);
    for (int64_t i = 0; i < out_count; i++) {
      double ratio = fabs((double)actual[i] - expected[i]) / bound;
      worst = ratio > worst || isnan(ratio) ? ratio : worst;
    }
    free(expected);
    free(actual);
  }
  free(images);
  ds_model_free(&model);
  return worst;
}

static double pad_bound(const dsr_model *model) {
  return (double)model->tensors[model->output].qparams.scale;
}

static double concat_bound(const dsr_model *model) {
  double largest = 0.0;
  for (int32_t i = 0; i < model->tensor_count; i++) {
    if (model->tensors[i].kind != DSR_TENSOR_CONSTANT)
      largest = fmax(largest, (double)model->tensors[i].qparams.scale);
  }
  return 2.0 * largest + (double)model->tensors[model->output].qparams.scale;
}

Test(fixed_layout, pad_matches_float) {
  double ratio = worst_ratio(OPS "pad_constant.onnx", pad_bound);
  cr_expect_leq(ratio, 1.0, "error %.3f times the bound", ratio);
}

Test(fixed_layout, pad_axes_matches_float) {
  double ratio = worst_ratio(OPS "pad_axes_op18.onnx", pad_bound);
  cr_expect_leq(ratio, 1.0, "error %.3f times the bound", ratio);
}

Test(fixed_layout, concat_requant_matches_float) {
  double ratio = worst_ratio(OPS "concat_many.onnx", concat_bound);
  cr_expect_leq(ratio, 1.0, "error %.3f times the bound", ratio);
}

/* Qwords of another layout are rejected with a message, not run. */
Test(fixed_layout, bad_qwords_rejected) {
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(OPS "concat_many.onnx", NULL, &model, NULL, &err), DS_OK);
  int64_t in_count = dsr_tensor_elements(&model.tensors[model.input]);
  float *images = calloc((size_t)in_count, sizeof(float));
  dsq_calibration calib;
  cr_assert_eq(dsq_calibration_init(&calib, &model, DSQ_CALIBRATION_MINMAX, &err), DS_OK);
  cr_assert_eq(dsq_calibration_run(&calib, &model, images, 1, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsq_quantize(&model, &calib, NULL, &err), DS_OK, "%s", err.message);
  dsq_calibration_free(&calib);
  /* The concatenated inputs have their own ranges, so some are requantized. */
  int32_t requantized = 0;
  for (int32_t i = 0; i < model.node_count; i++) {
    const dsr_node *node = &model.nodes[i];
    for (int32_t j = 0; node->op == DSR_OP_CONCAT && j < node->input_count; j++)
      requantized += node->qwords[2 + 3 * j] == 0;
  }
  cr_expect_gt(requantized, 0);
  for (int32_t i = 0; i < model.node_count; i++) {
    if (model.nodes[i].op == DSR_OP_CONCAT)
      model.nodes[i].qword_count = 2;
  }
  dsr_plan_info plan;
  cr_expect_eq(dsr_plan(&model, DSR_MODE_FIXED, 0, &plan, &err), DS_ERR_QUANT);
  cr_expect_not_null(strstr(err.message, "(copy, multiplier, shift) per input"), "%s",
                     err.message);
  free(images);
  ds_model_free(&model);
}

/* A quantized PAD or CONCAT model written as an artifact and read back runs bit-identically. */
Test(fixed_layout, artifact_round_trip_identical) {
  static const char *const files[] = {OPS "pad_constant.onnx", OPS "concat_many.onnx"};
  for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
    dsr_model model, read_back;
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(dsc_import_file(files[f], NULL, &model, NULL, &err), DS_OK, "%s", err.message);
    int64_t in_count = dsr_tensor_elements(&model.tensors[model.input]);
    int64_t out_count = dsr_tensor_elements(&model.tensors[model.output]);
    float *images = malloc((size_t)(4 * in_count) * sizeof(float));
    cr_assert_not_null(images);
    uint32_t state = 11;
    for (int64_t i = 0; i < 4 * in_count; i++)
      images[i] = uniform(&state);
    dsq_calibration calib;
    cr_assert_eq(dsq_calibration_init(&calib, &model, DSQ_CALIBRATION_MINMAX, &err), DS_OK);
    cr_assert_eq(dsq_calibration_run(&calib, &model, images, 4, &err), DS_OK, "%s",
                 err.message);
    cr_assert_eq(dsq_quantize(&model, &calib, NULL, &err), DS_OK, "%s", err.message);
    dsq_calibration_free(&calib);

    uint8_t *bytes = NULL;
    size_t size = 0;
    cr_assert_eq(dsf_write_buffer(&model, NULL, NULL, NULL, &bytes, &size, &err), DS_OK, "%s",
                 err.message);
    cr_assert_eq(dsf_read_buffer(bytes, size, files[f], &read_back, NULL, NULL, &err), DS_OK,
                 "%s", err.message);
    float *before = run_mode(&model, DSR_MODE_FIXED, images);
    float *after = run_mode(&read_back, DSR_MODE_FIXED, images);
    cr_expect_eq(memcmp(before, after, (size_t)out_count * sizeof(float)), 0, "%s", files[f]);
    free(before);
    free(after);
    free(bytes);
    free(images);
    ds_model_free(&read_back);
    ds_model_free(&model);
  }
}

/* Index of the largest of count values. */
static int64_t top1(const float *values, int64_t count) {
  int64_t best = 0;
  for (int64_t i = 1; i < count; i++) {
    if (values[i] > values[best])
      best = i;
  }
  return best;
}

/*
 * Imports file (at shape when rank is not 0), multiplies its position bias tables by
 * bias_gain, quantizes it on 16 random inputs and runs 8 more in float and fixed point. Returns how many agree on top-1 and, through worst_share, the
 * worst logit error as a share of the largest float logit.
 */
static int32_t fixed_top1_agreement(const char *file, const int32_t *shape, int32_t rank,
                                    float bias_gain, double *worst_share) {
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  dsc_options options;
  memset(&options, 0, sizeof options);
  if (rank > 0) {
    memcpy(options.input_shape, shape, sizeof options.input_shape);
    options.input_rank = rank;
  }
  cr_assert_eq(dsc_import_file(file, &options, &model, NULL, &err), DS_OK, "%s", err.message);
  for (int32_t n = 0; n < model.node_count; n++) {
    if (model.nodes[n].op != DSR_OP_DEFORM_ATTN)
      continue;
    dsr_tensor *table = &model.tensors[model.nodes[n].deform->params[DSR_DEFORM_RPE_TABLE]];
    /* The imported model owns this buffer, and nothing else reads it yet. */
    float *values = (float *)(uintptr_t)table->data_f32;
    for (int64_t i = 0; i < dsr_tensor_elements(table); i++)
      values[i] *= bias_gain;
  }
  int64_t in_count = dsr_tensor_elements(&model.tensors[model.input]);
  int64_t out_count = dsr_tensor_elements(&model.tensors[model.output]);
  int32_t image_count = 24;
  float *images = malloc((size_t)(image_count * in_count) * sizeof(float));
  cr_assert_not_null(images);
  uint32_t state = 5;
  for (int64_t i = 0; i < image_count * in_count; i++)
    images[i] = uniform(&state);
  dsq_calibration calib;
  cr_assert_eq(dsq_calibration_init(&calib, &model, DSQ_CALIBRATION_MINMAX, &err), DS_OK);
  cr_assert_eq(dsq_calibration_run(&calib, &model, images, 16, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsq_quantize(&model, &calib, NULL, &err), DS_OK, "%s", err.message);
  dsq_calibration_free(&calib);

  int32_t agree = 0;
  double worst = 0.0, spread = 0.0;
  for (int32_t image = 16; image < image_count; image++) {
    float *expected = run_mode(&model, DSR_MODE_FLOAT, images + image * in_count);
    float *actual = run_mode(&model, DSR_MODE_FIXED, images + image * in_count);
    agree += top1(expected, out_count) == top1(actual, out_count);
    for (int64_t i = 0; i < out_count; i++) {
      worst = fmax(worst, fabs((double)actual[i] - expected[i]));
      spread = fmax(spread, fabs((double)expected[i]));
    }
    free(expected);
    free(actual);
  }
  cr_log_info("%s: top-1 agrees on %d of %d inputs, worst logit error %.4f of largest logit "
              "%.4f", file, agree, image_count - 16, worst, spread);
  *worst_share = worst / spread;
  free(images);
  ds_model_free(&model);
  return agree;
}

/* The reduced DAT 2022 model (deformable blocks with queries at pixel centres) in fixed
 * point: top-1 agrees with float. The same model run with convention 0 (bias rows from pixel
 * corners) shows the same worst error, about 0.28 of the largest logit: it is the int8 error
 * of this small model. */
Test(fixed_layout, centred_dat_top1_agrees) {
  double worst_share;
  int32_t agree = fixed_top1_agreement(DS_SOURCE_DIR "/tests/fixtures/dat_mini_64.onnx", NULL,
                                       0, 1.0f, &worst_share);
  cr_expect_geq(agree, 6, "top-1 agrees on only %d of 8 inputs", agree);
  cr_expect_leq(worst_share, 0.4, "worst logit error is %g of the largest logit", worst_share);
}

/* Exports with dynamic axes run at another size than they were built for, so their position
 * bias tables are read rescaled (DAT at 72x88, DAT++ at 64x96, both built for 64x64). The
 * tables are scaled up so that the bias dominates the logits: a table read at the wrong
 * place then moves the attention, and the output, far from float. Reading them as if built
 * for the new size gave worst errors of 0.17 and 0.34 of the largest logit, against 0.07 and
 * 0.17 with the rescale. */
#define BIAS_GAIN 200.0f

Test(fixed_layout, resized_bias_tables_top1_agrees) {
  const int32_t dat_shape[4] = {1, 3, 72, 88}, dat_pp_shape[4] = {1, 3, 64, 96};
  double worst_share;
  int32_t agree = fixed_top1_agreement(DS_SOURCE_DIR "/tests/fixtures/dat_mini_64_dynamic.onnx",
                                       dat_shape, 4, BIAS_GAIN, &worst_share);
  cr_expect_geq(agree, 6, "DAT at 72x88: top-1 agrees on only %d of 8 inputs", agree);
  cr_expect_leq(worst_share, 0.12, "DAT at 72x88: worst logit error is %g of the largest",
                worst_share);
  agree = fixed_top1_agreement(DS_SOURCE_DIR "/tests/fixtures/dat_pp_mini_64_dynamic.onnx",
                               dat_pp_shape, 4, BIAS_GAIN, &worst_share);
  cr_expect_geq(agree, 6, "DAT++ at 64x96: top-1 agrees on only %d of 8 inputs", agree);
  cr_expect_leq(worst_share, 0.25, "DAT++ at 64x96: worst logit error is %g of the largest",
                worst_share);
}

/* A position bias table whose head count differs from the layer's is rejected by name. */
Test(fixed_layout, bias_table_heads_mismatch_rejected) {
  dsr_model model;
  float *image;
  fixture_load_quantized("dat_pp_mini_64", &model, &image);
  int32_t node = -1;
  for (int32_t i = 0; i < model.node_count && node < 0; i++) {
    if (model.nodes[i].op == DSR_OP_DEFORM_ATTN)
      node = i;
  }
  cr_assert_geq(node, 0, "the fixture has no deformable layer");
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_fixed_check_node(&model, node, &err), DS_OK, "%s", err.message);

  dsr_tensor *table = &model.tensors[model.nodes[node].deform->params[DSR_DEFORM_RPE_TABLE]];
  table->dims[0] += 1;
  ds_error_clear(&err);
  cr_expect_eq(dsr_fixed_check_node(&model, node, &err), DS_ERR_SHAPE, "%s", err.message);
  cr_expect(strstr(err.message, "position bias table") != NULL, "%s", err.message);
  cr_expect(strstr(err.message, table->name) != NULL, "%s", err.message);
  table->dims[0] -= 1;
  free(image);
  ds_model_free(&model);
}
