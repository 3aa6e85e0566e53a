/*
 * Tests of the importer and float runtime on what real exporters emit. Reduced DAT and DAT++
 * exports (window, shifted window with padding, neighbourhood attention by index gather,
 * deformable blocks of both conventions) at opsets 16 to 18, with external data and dynamic
 * axes, must match PyTorch's stored outputs. Op-level models (tools/onnx_op_cases.py) must
 * match numpy. The import report's pass counts are checked, and each bad model must be
 * rejected with a message naming the node, op, shape or file.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "formats/dsf_artifact.h"
#include "runtime/dsr_runtime.h"

#define FIXTURES DS_SOURCE_DIR "/tests/fixtures/"
#define TOLERANCE 1e-4

static float *read_f32(const char *path, int64_t count) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long length = ftell(f);
  fseek(f, 0, SEEK_SET);
  cr_assert_eq(length, count * (long)sizeof(float), "%s has %ld bytes, expected %lld floats",
               path, length, (long long)count);
  float *values = malloc((size_t)count * sizeof *values);
  cr_assert_not_null(values);
  cr_assert_eq(fread(values, sizeof *values, (size_t)count, f), (size_t)count);
  fclose(f);
  return values;
}

static void import_ok(const char *path, const dsc_options *options, dsr_model *model,
                      dsc_report *report) {
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dsc_import_file(path, options, model, report, &err);
  cr_assert_eq(status, DS_OK, "%s: %s %s", path, ds_status_name(status), err.message);
}

/* Runs model in float mode and returns the max abs difference from expected_path. */
static double run_and_compare(const dsr_model *model, const char *input_path,
                              const char *expected_path) {
  int64_t in_count = dsr_tensor_elements(&model->tensors[model->input]);
  int64_t out_count = dsr_tensor_elements(&model->tensors[model->output]);
  float *input = read_f32(input_path, in_count);
  float *expected = read_f32(expected_path, out_count);

  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan(model, DSR_MODE_FLOAT, 0, &plan, &err), DS_OK, "plan: %s", err.message);
  void *arena = aligned_alloc(64, (plan.arena_bytes + 63) / 64 * 64);
  cr_assert_not_null(arena);
  dsr_context ctx;
  cr_assert_eq(dsr_context_init(&ctx, model, DSR_MODE_FLOAT, 0, arena, plan.arena_bytes, &err),
               DS_OK, "context: %s", err.message);
  memcpy(dsr_input_f32(&ctx), input, (size_t)in_count * sizeof(float));
  dsr_invoke(&ctx);
  const float *out = dsr_output_f32(&ctx);
  double worst = 0.0;
  for (int64_t i = 0; i < out_count; i++) {
    double d = fabs((double)out[i] - (double)expected[i]);
    worst = d > worst || isnan(d) ? d : worst;
  }
  free(arena);
  free(input);
  free(expected);
  return worst;
}

/* ---- Reduced exports against PyTorch ---- */

typedef struct export_case {
  char model[64];
  char data[64];     /* prefix of .input.f32 and .output.f32 */
  int32_t shape[4];  /* rank 0: the file's input shape */
  int32_t rank;
  int32_t blocks;    /* deformable blocks expected */
  int32_t opset;
} export_case;

static export_case export_cases[] = {
    {"dat_mini_64", "dat_mini_64", {0}, 0, 2, 16},
    {"dat_mini_64_op18", "dat_mini_64_op18", {0}, 0, 2, 18},
    {"dat_mini_72x88_op17", "dat_mini_72x88_op17", {0}, 0, 2, 17},
    {"dat_pp_mini_64", "dat_pp_mini_64", {0}, 0, 4, 16},
    {"dat_pp_mini_64x96_op18", "dat_pp_mini_64x96_op18", {0}, 0, 4, 18},
    {"dat_pp_mini_64_op17_external", "dat_pp_mini_64_op17_external", {0}, 0, 4, 17},
    {"dat_pp_mini_64_dynamic", "dat_pp_mini_64_dynamic", {1, 3, 64, 64}, 4, 4, 16},
    {"dat_pp_mini_64_dynamic", "dat_pp_mini_64_dynamic.64x96", {1, 3, 64, 96}, 4, 4, 16},
    {"dat_mini_64_dynamic", "dat_mini_64_dynamic", {1, 3, 64, 64}, 4, 2, 17},
    {"dat_mini_64_dynamic", "dat_mini_64_dynamic.72x88", {1, 3, 72, 88}, 4, 2, 17},
    {"ops/deform_opset20", "deform_layer_dat_pp", {0}, 0, 1, 20},
    {"ops/deform_opset21", "deform_layer_dat_pp", {0}, 0, 1, 21},
};

ParameterizedTestParameters(exports, reduced_export_matches_pytorch) {
  return cr_make_param_array(export_case, export_cases,
                             sizeof export_cases / sizeof export_cases[0]);
}

ParameterizedTest(export_case *c, exports, reduced_export_matches_pytorch) {
  char model_path[256], input_path[256], output_path[256];
  snprintf(model_path, sizeof model_path, FIXTURES "%s.onnx", c->model);
  snprintf(input_path, sizeof input_path, FIXTURES "%s.input.f32", c->data);
  snprintf(output_path, sizeof output_path, FIXTURES "%s.output.f32", c->data);
  dsc_options options;
  memset(&options, 0, sizeof options);
  memcpy(options.input_shape, c->shape, sizeof options.input_shape);
  options.input_rank = c->rank;
  dsr_model model;
  dsc_report report;
  import_ok(model_path, &options, &model, &report);
  cr_expect_eq(report.opset, c->opset);
  cr_expect_eq(report.block_count, c->blocks, "%s: %d blocks", c->model, report.block_count);
  double diff = run_and_compare(&model, input_path, output_path);
  cr_expect(diff <= TOLERANCE, "%s (%s): max abs diff %g", c->model, c->data, diff);
  ds_model_free(&model);
}

Test(exports, dynamic_export_needs_input_shape) {
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dsc_import_file(FIXTURES "dat_pp_mini_64_dynamic.onnx", NULL, &model, NULL,
                                     &err);
  cr_assert_eq(status, DS_ERR_SHAPE, "%s", err.message);
  cr_expect(strstr(err.message, "--input-shape") != NULL, "%s", err.message);
  cr_expect(strstr(err.message, "dynamic") != NULL, "%s", err.message);
}

/* ---- Op-level models against numpy ---- */

typedef struct op_case {
  char name[48];
  int32_t op;        /* a dsr op the lowering must produce, 0: no check */
  int32_t op_count;
} op_case;

static op_case op_cases[] = {
    {"slice_negative", DSR_OP_GATHER, 2},  {"roll", DSR_OP_GATHER, 1},
    {"concat_many", DSR_OP_CONCAT, 2},     {"expand", DSR_OP_GATHER, 2},
    {"where_mask", DSR_OP_MUL, 4},         {"pad_constant", DSR_OP_PAD, 1},
    {"pad_axes_op18", DSR_OP_PAD, 1},      {"einsum_general", DSR_OP_MATMUL, 4},
    {"gelu_softmax_op20", DSR_OP_GELU, 1}, {"shape_folding", DSR_OP_RESHAPE, 1},
    {"matmul_add", DSR_OP_GEMM, 1},        {"external_data", DSR_OP_CONV2D, 1},
};

ParameterizedTestParameters(ops, op_model_matches_numpy) {
  return cr_make_param_array(op_case, op_cases, sizeof op_cases / sizeof op_cases[0]);
}

ParameterizedTest(op_case *c, ops, op_model_matches_numpy) {
  char model_path[256], input_path[256], output_path[256];
  snprintf(model_path, sizeof model_path, FIXTURES "ops/%s.onnx", c->name);
  snprintf(input_path, sizeof input_path, FIXTURES "ops/%s.input.f32", c->name);
  snprintf(output_path, sizeof output_path, FIXTURES "ops/%s.output.f32", c->name);
  dsr_model model;
  dsc_report report;
  import_ok(model_path, NULL, &model, &report);
  cr_expect_eq(report.ops_after[c->op], c->op_count, "%s: %d %s nodes, expected %d", c->name,
               report.ops_after[c->op], dsc_op_name(c->op), c->op_count);
  double diff = run_and_compare(&model, input_path, output_path);
  cr_expect(diff <= TOLERANCE, "%s: max abs diff %g", c->name, diff);
  ds_model_free(&model);
}

Test(ops, roll_becomes_one_gather) {
  dsr_model model;
  dsc_report report;
  import_ok(FIXTURES "ops/roll.onnx", NULL, &model, &report);
  cr_expect_eq(model.node_count, 1);
  cr_expect_eq(report.ops_after[DSR_OP_CONCAT], 0);
  ds_model_free(&model);
}

Test(ops, matmul_add_fused_into_gemm) {
  dsr_model model;
  dsc_report report;
  import_ok(FIXTURES "ops/matmul_add.onnx", NULL, &model, &report);
  cr_expect_eq(report.matmul_add_fused_count, 1);
  cr_expect_eq(report.ops_after[DSR_OP_MATMUL], 0);
  cr_expect_eq(report.ops_after[DSR_OP_ADD], 0);
  cr_expect_eq(model.node_count, 1);
  ds_model_free(&model);
}

Test(ops, shape_arithmetic_folds_away) {
  dsr_model model;
  dsc_report report;
  import_ok(FIXTURES "ops/shape_folding.onnx", NULL, &model, &report);
  cr_expect_eq(model.node_count, 1, "%d nodes", model.node_count);
  cr_expect_eq(report.folded_node_count, 21, "%d folded", report.folded_node_count);
  ds_model_free(&model);
}

/* CONCAT and PAD keep their attributes through an artifact. */
Test(ops, concat_and_pad_round_trip_artifact) {
  dsr_model model, read_back;
  dsc_report report;
  import_ok(FIXTURES "ops/pad_constant.onnx", NULL, &model, &report);
  ds_error err;
  ds_error_clear(&err);
  uint8_t *bytes = NULL;
  size_t size = 0;
  cr_assert_eq(dsf_write_buffer(&model, NULL, NULL, NULL, &bytes, &size, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(dsf_read_buffer(bytes, size, "pad", &read_back, NULL, NULL, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(read_back.node_count, 1);
  const dsr_node *pad = &read_back.nodes[0];
  cr_expect_eq(pad->op, DSR_OP_PAD);
  int32_t begin[4] = {0, 0, 1, 2}, end[4] = {0, 0, 2, 1};
  for (int32_t a = 0; a < 4; a++) {
    cr_expect_eq(pad->attrs.pad.begin[a], begin[a], "axis %d", a);
    cr_expect_eq(pad->attrs.pad.end[a], end[a], "axis %d", a);
  }
  cr_expect_eq(pad->attrs.pad.value, 0.5f);
  free(bytes);
  ds_model_free(&read_back);
  ds_model_free(&model);
}

/* ---- The import report ---- */

Test(report, passes_recorded_in_order) {
  dsr_model model;
  dsc_report report;
  import_ok(FIXTURES "dat_pp_mini_64.onnx", NULL, &model, &report);
  static const char *const names[] = {"Constant nodes", "constant folding",
                                      "LayerNorm fusion", "GELU fusion", "MatMul+Add fusion",
                                      "deformable lifting", "dead-node removal", "lowering"};
  static const char *const units[] = {"made values", "folded", "fused", "fused", "fused",
                                      "lifted", "removed", "lowered"};
  cr_assert_eq(report.pass_count, 8);
  for (int32_t i = 0; i < 8; i++) {
    const dsc_pass_stats *p = &report.passes[i];
    cr_expect_str_eq(p->name, names[i]);
    cr_expect_str_eq(p->unit, units[i]);
    if (i > 0) {
      cr_expect_eq(p->nodes_before, report.passes[i - 1].nodes_after, "pass %s", p->name);
      cr_expect_eq(p->tensors_before, report.passes[i - 1].tensors_after, "pass %s", p->name);
    }
    if (i < 7)
      cr_expect_leq(p->nodes_after, p->nodes_before, "pass %s adds nodes", p->name);
  }
  cr_expect_eq(report.passes[0].nodes_before, report.onnx_node_count);
  cr_expect_eq(report.passes[0].changed_count,
               report.passes[0].nodes_before - report.passes[0].nodes_after);
  cr_expect_eq(report.passes[1].changed_count, report.folded_node_count);
  cr_expect_eq(report.passes[1].nodes_before - report.passes[1].nodes_after,
               report.folded_node_count);
  cr_expect_eq(report.passes[2].changed_count, 24);
  cr_expect_eq(report.passes[3].changed_count, 12);
  cr_expect_eq(report.passes[4].changed_count, 6,
               "the qkv and proj linear layers of the three neighbourhood attention blocks");
  cr_expect_eq(report.passes[4].changed_count, report.matmul_add_fused_count);
  cr_expect_eq(report.passes[4].nodes_before - report.passes[4].nodes_after,
               report.matmul_add_fused_count, "each fused pair becomes one node");
  cr_expect_eq(report.passes[5].changed_count, 4);
  cr_expect_eq(report.passes[7].changed_count, report.lowered_node_count);
  cr_expect_gt(report.lowered_node_count, 0);
  cr_expect_eq(report.passes[7].nodes_after, model.node_count);
  cr_expect_eq(report.passes[7].tensors_after, model.tensor_count);
  cr_expect_eq(report.node_count_after, model.node_count);
  ds_model_free(&model);
}

/* The printed table labels each count and explains the block columns. */
Test(report, printed_units_and_legend) {
  dsr_model model;
  dsc_report report;
  import_ok(FIXTURES "dat_mini_64.onnx", NULL, &model, &report);
  char *text = NULL;
  size_t text_bytes = 0;
  FILE *out = open_memstream(&text, &text_bytes);
  cr_assert_not_null(out);
  dsc_report_print(&report, out);
  fclose(out);
  static const char *const words[] = {"Constant nodes", "made values", "95 folded",
                                      "21 fused", "24 fused", "2 lifted", "205 lowered", "factor: ",
                                      "conv: sampling convention"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    cr_expect_not_null(strstr(text, words[i]), "'%s' missing from:\n%s", words[i], text);
  cr_expect_null(strstr(text, "the pass table ends at"), "tensor counts differ:\n%s", text);
  free(text);
  ds_model_free(&model);
}

/* A file protobuf-c cannot parse gets a count with the right plural. */
Test(report, unparsable_bytes_counted) {
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  const uint8_t one[1] = {0xff};
  cr_assert_eq(dsc_import_buffer(one, 1, "one.onnx", NULL, &model, NULL, &err),
               DS_ERR_ONNX_PARSE);
  cr_expect_not_null(strstr(err.message, "its 1 byte without"), "%s", err.message);
  cr_expect_not_null(strstr(err.message, "not an ONNX model protobuf"), "%s", err.message);
}

Test(report, blocks_of_both_conventions) {
  dsr_model model;
  dsc_report report;
  import_ok(FIXTURES "dat_pp_mini_64.onnx", NULL, &model, &report);
  cr_assert_eq(report.block_count, 4);
  const dsc_block_info *b = &report.blocks[0];
  cr_expect_str_eq(b->name, "stages.0.attns.1");
  cr_expect_eq(b->height, 16);
  cr_expect_eq(b->width, 16);
  cr_expect_eq(b->groups, 1);
  cr_expect_eq(b->offset_stride, 4);
  cr_expect_eq(b->samples_h, 4);
  cr_expect_eq(b->samples_w, 4);
  cr_expect_eq(b->convention, DSR_DEFORM_DAT_PP);
  ds_model_free(&model);

  import_ok(FIXTURES "dat_mini_64.onnx", NULL, &model, &report);
  cr_assert_eq(report.block_count, 2);
  b = &report.blocks[1];
  cr_expect_str_eq(b->name, "stages.3.attns.0");
  cr_expect_eq(b->height, 2);
  cr_expect_eq(b->groups, 2);
  cr_expect_eq(b->samples_h, 2);
  cr_expect_eq(b->convention, DSR_DEFORM_DAT_CENTRED);
  cr_expect_float_eq(b->offset_range_factor, 2.0f, 1e-5f);
  ds_model_free(&model);
}

Test(report, printed_with_passes_and_histogram) {
  dsr_model model;
  dsc_report report;
  import_ok(FIXTURES "dat_mini_64.onnx", NULL, &model, &report);
  char *text = NULL;
  size_t length = 0;
  FILE *out = open_memstream(&text, &length);
  cr_assert_not_null(out);
  dsc_report_print(&report, out);
  fclose(out);
  const char *expected[] = {"opset 16", "Slice=", "constant folding", "dead-node removal",
                            "MatMul+Add fused: 24", "DEFORM_ATTN=2", "stages.2.attns.1",
                            "DAT-c"};
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
    cr_expect(strstr(text, expected[i]) != NULL, "'%s' missing from:\n%s", expected[i], text);
  free(text);
  ds_model_free(&model);
}

/* ---- Planner ---- */

Test(plan, arena_reuses_memory) {
  dsr_model model;
  import_ok(FIXTURES "dat_pp_mini_64.onnx", NULL, &model, NULL);
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info reuse, keep_all;
  cr_assert_eq(dsr_plan(&model, DSR_MODE_FLOAT, 0, &reuse, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsr_plan(&model, DSR_MODE_FLOAT, DSR_PLAN_KEEP_ALL, &keep_all, &err), DS_OK,
               "%s", err.message);
  cr_expect_gt(reuse.activation_bytes, 0);
  cr_expect_lt(reuse.activation_bytes * 4, keep_all.activation_bytes,
               "reuse %zu, keep-all %zu bytes", reuse.activation_bytes,
               keep_all.activation_bytes);
  cr_expect_geq(reuse.arena_bytes, reuse.activation_bytes + reuse.scratch_bytes);
  ds_model_free(&model);
}

/* ---- Bad models ---- */

typedef struct bad_case {
  char file[48];
  ds_status status;
  char expected[3][64];
} bad_case;

static bad_case bad_cases[] = {
    {"opset22.onnx", DS_ERR_ONNX_VERSION, {"opset 22", "13 to 21", "opset22.onnx"}},
    {"einsum_diagonal.onnx", DS_ERR_UNSUPPORTED_OP,
     {"einsum_y", "Einsum", "'bii,bij->bj'"}},
    {"gelu_tanh.onnx", DS_ERR_UNSUPPORTED_OP, {"gelu_y", "Gelu", "approximate='tanh'"}},
    {"where_live_cond.onnx", DS_ERR_UNSUPPORTED_OP, {"where_y", "Where", "(1, 4)"}},
    {"pad_reflect.onnx", DS_ERR_UNSUPPORTED_OP, {"pad_y", "Pad", "reflect"}},
    {"pad_huge.onnx", DS_ERR_SHAPE, {"pad_y", "9223372036854775807", "too large"}},
    {"dynamic_reshape.onnx", DS_ERR_SHAPE, {"reshape_y", "Reshape", "not constant"}},
    {"external_escape.onnx", DS_ERR_ONNX_PARSE, {"initializer 'w'", "../escape.bin",
                                                 "leaves the model's folder"}},
    {"external_short.onnx", DS_ERR_ONNX_PARSE, {"initializer 'w'", "external_short.bin",
                                                "offset 4 with length 24"}},
    {"external_length.onnx", DS_ERR_ONNX_PARSE, {"initializer 'w'", "length 16",
                                                 "need 24 bytes"}},
    {"external_missing.onnx", DS_ERR_IO, {"initializer 'w'", "no_such_file.bin",
                                          "cannot open"}},
    {"bad_raw_size.onnx", DS_ERR_ONNX_PARSE, {"initializer", "(4, 4)", "raw_data"}},
};

ParameterizedTestParameters(bad, bad_model_rejected_clearly) {
  return cr_make_param_array(bad_case, bad_cases, sizeof bad_cases / sizeof bad_cases[0]);
}

ParameterizedTest(bad_case *c, bad, bad_model_rejected_clearly) {
  char path[256];
  snprintf(path, sizeof path, FIXTURES "bad/%s", c->file);
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dsc_import_file(path, NULL, &model, NULL, &err);
  cr_assert_eq(status, c->status, "%s: %s, expected %s: %s", c->file, ds_status_name(status),
               ds_status_name(c->status), err.message);
  for (int32_t i = 0; i < 3; i++)
    cr_expect(strstr(err.message, c->expected[i]) != NULL, "%s: '%s' missing from: %s",
              c->file, c->expected[i], err.message);
  cr_expect_eq(model.node_count, 0);
}

/* ---- Corrupt files ---- */

static uint8_t *read_file_bytes(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long length = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *data = malloc((size_t)length);
  cr_assert_not_null(data);
  cr_assert_eq(fread(data, 1, (size_t)length, f), (size_t)length);
  fclose(f);
  *size = (size_t)length;
  return data;
}

/* Every model of the new ops, with one byte changed at up to 300 positions each, imports or
 * fails with an error; the sanitizer build turns any out-of-bounds access into a failure. */
Test(corrupt, mutated_op_models_never_crash, .timeout = 120) {
  static const char *const names[] = {"slice_negative", "roll", "concat_many", "expand",
                                      "where_mask", "pad_constant", "pad_axes_op18",
                                      "einsum_general", "gelu_softmax_op20", "shape_folding",
                                      "matmul_add", "external_data"};
  for (size_t m = 0; m < sizeof names / sizeof names[0]; m++) {
    char path[256];
    snprintf(path, sizeof path, FIXTURES "ops/%s.onnx", names[m]);
    size_t size = 0;
    uint8_t *original = read_file_bytes(path, &size);
    uint8_t *copy = malloc(size);
    cr_assert_not_null(copy);
    size_t stride = size / 300 + 1;
    int32_t failures = 0;
    for (size_t at = 0; at < size; at += stride) {
      memcpy(copy, original, size);
      copy[at] = (uint8_t)(copy[at] ^ (0x5a + at));
      dsr_model model;
      ds_error err;
      ds_error_clear(&err);
      ds_status status = dsc_import_buffer(copy, size, path, NULL, &model, NULL, &err);
      if (status != DS_OK) {
        failures++;
        cr_expect(err.message[0] != '\0', "%s byte %zu: error without a message", path, at);
      }
      ds_model_free(&model);
    }
    cr_expect_gt(failures, 0, "%s: no mutation was rejected", path);
    free(copy);
    free(original);
  }
}
