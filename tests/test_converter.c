/*
 * Tests of the ONNX importer. The PyTorch fixtures import, lift the right deformable blocks,
 * keep no shape arithmetic, fuse LayerNorm and GELU and match PyTorch's outputs through the
 * float runtime. Hand-made models cover the ops the fixtures lack. Bad files are rejected
 * with the right status and a message naming the problem.
 *
 * Fixtures: the .onnx files of tests/fixtures (tools/make_fixtures.py) and the small models of
 * tests/fixtures/bad and tests/fixtures/ops (tools/make_bad_onnx.py).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "converter/dsc_import.h"
#include "runtime/dsr_runtime.h"

#define FIXTURES DS_SOURCE_DIR "/tests/fixtures/"

static void fixture_path(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s%s", FIXTURES, name);
}

static uint8_t *read_bytes(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long length = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *data = malloc(length > 0 ? (size_t)length : 1);
  cr_assert_not_null(data);
  cr_assert_eq(fread(data, 1, (size_t)length, f), (size_t)length);
  fclose(f);
  *size = (size_t)length;
  return data;
}

static void import_ok(const char *name, dsr_model *model, dsc_report *report) {
  char path[512];
  fixture_path(path, sizeof path, name);
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dsc_import_file(path, NULL, model, report, &err);
  cr_assert_eq(status, DS_OK, "%s: %s %s", name, ds_status_name(status), err.message);
}

/* Runs model in float mode on input and returns the output (caller frees). */
static float *run_float(const dsr_model *model, const float *input) {
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan(model, DSR_MODE_FLOAT, 0, &plan, &err), DS_OK, "plan: %s",
               err.message);
  size_t bytes = (plan.arena_bytes + 63) / 64 * 64;
  void *arena = aligned_alloc(64, bytes > 0 ? bytes : 64);
  cr_assert_not_null(arena);
  dsr_context ctx;
  cr_assert_eq(dsr_context_init(&ctx, model, DSR_MODE_FLOAT, 0, arena, plan.arena_bytes, &err),
               DS_OK, "context: %s", err.message);
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

static double max_abs_diff(const float *a, const float *b, int64_t count) {
  double worst = 0.0;
  for (int64_t i = 0; i < count; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    worst = d > worst || isnan(d) ? d : worst;
  }
  return worst;
}

/* ---- the PyTorch fixtures ---- */

/* Parameters cross into Criterion's test processes by value, so strings are arrays. */
typedef struct fixture_case {
  char name[32];
  int32_t input[4];
  int32_t output_rank;
  int32_t output[4];
  int32_t block_count;
  int32_t convention;
} fixture_case;

static fixture_case fixture_cases[] = {
    {"deform_layer_dat_pp", {1, 8, 8, 8}, 4, {1, 8, 8, 8}, 1, DSR_DEFORM_DAT_PP},
    {"deform_layer_dat", {1, 8, 8, 8}, 4, {1, 8, 8, 8}, 1, DSR_DEFORM_DAT},
    {"deform_layer_rect", {1, 16, 6, 10}, 4, {1, 16, 6, 10}, 1, DSR_DEFORM_DAT_PP},
    {"dat_pp_tiny", {1, 1, 16, 16}, 2, {1, 4}, 4, DSR_DEFORM_DAT_PP},
    {"dat_offsets_tiny", {1, 1, 16, 16}, 2, {1, 4}, 4, DSR_DEFORM_DAT},
};

ParameterizedTestParameters(converter, fixture_imports_and_matches_pytorch) {
  return cr_make_param_array(fixture_case, fixture_cases,
                             sizeof fixture_cases / sizeof fixture_cases[0]);
}

ParameterizedTest(fixture_case *c, converter, fixture_imports_and_matches_pytorch) {
  char name[256], path[512];
  dsr_model model;
  dsc_report report;
  snprintf(name, sizeof name, "%s.onnx", c->name);
  import_ok(name, &model, &report);

  const dsr_tensor *in = &model.tensors[model.input];
  const dsr_tensor *out = &model.tensors[model.output];
  cr_assert_eq(in->kind, DSR_TENSOR_INPUT);
  cr_assert_eq(out->kind, DSR_TENSOR_OUTPUT);
  cr_assert_eq(in->rank, 4);
  for (int32_t i = 0; i < 4; i++)
    cr_assert_eq(in->dims[i], c->input[i], "%s input dim %d", c->name, i);
  cr_assert_eq(out->rank, c->output_rank);
  for (int32_t i = 0; i < c->output_rank; i++)
    cr_assert_eq(out->dims[i], c->output[i], "%s output dim %d", c->name, i);

  cr_assert_eq(ds_model_deform_count(&model), c->block_count);
  cr_assert_eq(report.block_count, c->block_count);
  for (int32_t i = 0; i < c->block_count; i++) {
    const dsr_node *n = &model.nodes[ds_model_deform_node(&model, i)];
    cr_assert_not_null(n->deform);
    cr_assert_eq(n->deform->convention, c->convention, "%s block %d", c->name, i);
  }

  size_t in_bytes = 0, out_bytes = 0;
  snprintf(path, sizeof path, FIXTURES "%s.input.f32", c->name);
  float *input = (float *)read_bytes(path, &in_bytes);
  snprintf(path, sizeof path, FIXTURES "%s.output.f32", c->name);
  float *expected = (float *)read_bytes(path, &out_bytes);
  cr_assert_eq((int64_t)in_bytes, dsr_tensor_elements(in) * 4);
  cr_assert_eq((int64_t)out_bytes, dsr_tensor_elements(out) * 4);
  float *actual = run_float(&model, input);
  double diff = max_abs_diff(actual, expected, dsr_tensor_elements(out));
  cr_assert_leq(diff, 1e-4, "%s: max abs difference %g against PyTorch", c->name, diff);
  free(actual);
  free(expected);
  free(input);
  ds_model_free(&model);
}

Test(converter, single_layer_becomes_one_node) {
  const char *names[] = {"deform_layer_dat_pp.onnx", "deform_layer_dat.onnx",
                         "deform_layer_rect.onnx"};
  for (size_t i = 0; i < 3; i++) {
    dsr_model model;
    dsc_report report;
    import_ok(names[i], &model, &report);
    cr_assert_eq(model.node_count, 1, "%s", names[i]);
    cr_assert_eq(model.nodes[0].op, DSR_OP_DEFORM_ATTN);
    cr_assert_eq(model.nodes[0].inputs[0], model.input);
    cr_assert_eq(model.nodes[0].output, model.output);
    cr_assert_eq(report.node_count_after, 1);
    /* input, output and the 14 parameters; nothing of the block's internals remains */
    cr_assert_eq(model.tensor_count, 2 + DSR_DEFORM_PARAM_COUNT, "%s", names[i]);
    ds_model_free(&model);
  }
}

static void expect_param_dims(const dsr_model *m, const dsr_deform_attn *d, int32_t param,
                              int32_t rank, const int32_t *dims) {
  cr_assert_geq(d->params[param], 0);
  cr_assert_lt(d->params[param], m->tensor_count);
  const dsr_tensor *t = &m->tensors[d->params[param]];
  cr_assert_eq(t->kind, DSR_TENSOR_CONSTANT, "param %d", param);
  cr_assert_not_null(t->data_f32, "param %d", param);
  cr_assert_eq(t->rank, rank, "param %d of '%s'", param, t->name);
  for (int32_t i = 0; i < rank; i++)
    cr_assert_eq(t->dims[i], dims[i], "param %d dim %d", param, i);
}

Test(converter, rect_layer_parameters) {
  dsr_model model;
  dsc_report report;
  import_ok("deform_layer_rect.onnx", &model, &report);
  const dsr_deform_attn *d = model.nodes[0].deform;
  cr_assert_eq(d->channels, 16);
  cr_assert_eq(d->height, 6);
  cr_assert_eq(d->width, 10);
  cr_assert_eq(d->groups, 2);
  cr_assert_eq(d->heads, 4);
  cr_assert_eq(d->head_channels, 4);
  cr_assert_eq(d->offset_kernel, 3);
  cr_assert_eq(d->offset_stride, 1);
  cr_assert_eq(d->offset_pad, 1);
  cr_assert_eq(d->convention, DSR_DEFORM_DAT_PP);
  cr_assert_float_eq(d->attn_scale, 0.5f, 1e-7f);
  cr_assert_float_eq(d->ln_epsilon, 1e-5f, 1e-9f);
  cr_assert_eq(d->slice.rows, 1);
  cr_assert_eq(d->slice.cols, 1);
  cr_assert_eq(d->slice.overlap, 0);

  expect_param_dims(&model, d, DSR_DEFORM_PROJ_Q_W, 4, (int32_t[]){16, 16, 1, 1});
  expect_param_dims(&model, d, DSR_DEFORM_PROJ_OUT_B, 1, (int32_t[]){16});
  expect_param_dims(&model, d, DSR_DEFORM_OFFSET_DW_W, 4, (int32_t[]){8, 1, 3, 3});
  expect_param_dims(&model, d, DSR_DEFORM_OFFSET_DW_B, 1, (int32_t[]){8});
  expect_param_dims(&model, d, DSR_DEFORM_OFFSET_LN_G, 1, (int32_t[]){8});
  expect_param_dims(&model, d, DSR_DEFORM_OFFSET_LN_B, 1, (int32_t[]){8});
  expect_param_dims(&model, d, DSR_DEFORM_OFFSET_PW_W, 4, (int32_t[]){2, 8, 1, 1});
  expect_param_dims(&model, d, DSR_DEFORM_RPE_TABLE, 3, (int32_t[]){4, 11, 19});

  cr_assert_eq(report.block_count, 1);
  const dsc_block_info *b = &report.blocks[0];
  cr_assert_eq(b->groups, 2);
  cr_assert_eq(b->heads, 4);
  cr_assert_eq(b->height, 6);
  cr_assert_eq(b->width, 10);
  cr_assert_eq(b->samples_h, 6);
  cr_assert_eq(b->samples_w, 10);
  ds_model_free(&model);
}

Test(converter, dat_layer_reads_offset_range_factor) {
  dsr_model model;
  dsc_report report;
  import_ok("deform_layer_dat.onnx", &model, &report);
  const dsr_deform_attn *d = model.nodes[0].deform;
  cr_assert_eq(d->convention, DSR_DEFORM_DAT);
  cr_assert_float_eq(d->offset_range_factor, 2.0f, 1e-5f);
  cr_assert_eq(d->offset_stride, 2);
  cr_assert_eq(report.blocks[0].samples_h, 4);
  cr_assert_eq(report.blocks[0].samples_w, 4);
  ds_model_free(&model);
}

/* Expected values come from dat_pp_fixture in tools/models/dat.py. Its stage specs (N, D),
 * (D), (D), (D) give four deformable blocks with maps 16, 8, 4, 2, dims 8, 16, 16, 16,
 * groups 1, 2, 2, 2, offset strides 2, 1, 1, 1, two heads and kernel 3 each. */
static void check_dat_pp_tiny_blocks(const char *file, int32_t convention) {
  static const char *const names[4] = {"stages.0.attns.1", "stages.1.attns.0",
                                       "stages.2.attns.0", "stages.3.attns.0"};
  static const int32_t maps[4] = {16, 8, 4, 2}, channels[4] = {8, 16, 16, 16};
  static const int32_t groups[4] = {1, 2, 2, 2}, strides[4] = {2, 1, 1, 1};
  static const int32_t samples[4] = {8, 8, 4, 2};
  dsr_model model;
  dsc_report report;
  import_ok(file, &model, &report);
  cr_assert_eq(report.block_count, 4);
  for (int32_t i = 0; i < 4; i++) {
    const dsc_block_info *b = &report.blocks[i];
    cr_assert_str_eq(b->name, names[i]);
    cr_assert_eq(b->channels, channels[i], "%s", names[i]);
    cr_assert_eq(b->height, maps[i], "%s", names[i]);
    cr_assert_eq(b->width, maps[i], "%s", names[i]);
    cr_assert_eq(b->groups, groups[i], "%s", names[i]);
    cr_assert_eq(b->heads, 2, "%s", names[i]);
    cr_assert_eq(b->offset_kernel, 3, "%s", names[i]);
    cr_assert_eq(b->offset_stride, strides[i], "%s", names[i]);
    cr_assert_eq(b->samples_h, samples[i], "%s", names[i]);
    cr_assert_eq(b->samples_w, samples[i], "%s", names[i]);
    cr_assert_eq(b->convention, convention, "%s", names[i]);

    const dsr_node *n = &model.nodes[ds_model_deform_node(&model, i)];
    cr_assert_str_eq(n->name, names[i]);
    cr_assert_eq(n->deform->channels, channels[i]);
    cr_assert_float_eq(n->deform->attn_scale, (float)(1.0 / sqrt(channels[i] / 2.0)), 1e-6f);
    if (convention == DSR_DEFORM_DAT)
      cr_assert_float_eq(n->deform->offset_range_factor, 2.0f, 1e-5f);
    int32_t side = 2 * maps[i] - 1;
    expect_param_dims(&model, n->deform, DSR_DEFORM_RPE_TABLE, 3, (int32_t[]){2, side, side});
  }
  ds_model_free(&model);
}

Test(converter, dat_pp_tiny_blocks) {
  check_dat_pp_tiny_blocks("dat_pp_tiny.onnx", DSR_DEFORM_DAT_PP);
}

Test(converter, dat_offsets_tiny_blocks) {
  check_dat_pp_tiny_blocks("dat_offsets_tiny.onnx", DSR_DEFORM_DAT);
}

/* Every constant but Gather indices is float data, every Gather reads an activation, so no
 * Shape, Gather-of-shape or other integer arithmetic is left. */
static void check_no_shape_arithmetic(const dsr_model *m) {
  for (int32_t i = 0; i < m->node_count; i++) {
    const dsr_node *n = &m->nodes[i];
    cr_assert(n->op >= DSR_OP_CONV2D && n->op < DSR_OP_COUNT, "node %s op %d", n->name, n->op);
    for (int32_t k = 0; k < n->input_count; k++) {
      if (n->inputs[k] < 0)
        continue;
      const dsr_tensor *t = &m->tensors[n->inputs[k]];
      cr_assert(t->kind != DSR_TENSOR_CONSTANT || t->data_f32 != NULL,
                "constant '%s' of node '%s' has no float data", t->name, n->name);
      if (n->op == DSR_OP_GATHER && k == 0)
        cr_assert_neq(t->kind, DSR_TENSOR_CONSTANT, "Gather '%s' reads a constant", n->name);
      if (n->op == DSR_OP_GATHER && k == 1) {
        cr_assert_eq(t->kind, DSR_TENSOR_CONSTANT);
        cr_assert_eq(t->qparams.dtype, DSR_DTYPE_I32);
        cr_assert_not_null(t->data_q);
      }
    }
  }
}

Test(converter, no_shape_arithmetic_remains) {
  const char *names[] = {"deform_layer_dat_pp.onnx", "deform_layer_dat.onnx",
                         "deform_layer_rect.onnx", "dat_pp_tiny.onnx", "dat_offsets_tiny.onnx"};
  for (size_t i = 0; i < 5; i++) {
    dsr_model model;
    dsc_report report;
    import_ok(names[i], &model, &report);
    check_no_shape_arithmetic(&model);
    cr_assert_gt(report.folded_node_count, 0, "%s", names[i]);
    int32_t total = 0;
    for (int32_t op = 0; op < DSR_OP_COUNT; op++)
      total += report.ops_after[op];
    cr_assert_eq(total, model.node_count);
    ds_model_free(&model);
  }
}

Test(converter, layer_norm_and_gelu_fused) {
  dsr_model model;
  dsc_report report;
  import_ok("dat_pp_tiny.onnx", &model, &report);
  /* 40 ReduceMean and 10 Erf in the file: 20 LayerNorms and 10 GELUs, of which the four
   * offset networks hold 4 and 4 that the lifted blocks absorb. */
  cr_assert_eq(report.layer_norm_fused_count, 20);
  cr_assert_eq(report.gelu_fused_count, 10);
  cr_assert_eq(report.ops_after[DSR_OP_LAYER_NORM], 16);
  cr_assert_eq(report.ops_after[DSR_OP_GELU], 6);
  cr_assert_eq(report.ops_after[DSR_OP_DEFORM_ATTN], 4);
  for (int32_t i = 0; i < model.node_count; i++) {
    const dsr_node *n = &model.nodes[i];
    if (n->op != DSR_OP_LAYER_NORM)
      continue;
    const dsr_tensor *x = &model.tensors[n->inputs[0]];
    cr_assert_eq(n->attrs.norm.axis, x->rank - 1, "LayerNorm '%s'", n->name);
    cr_assert_float_eq(n->attrs.norm.epsilon, 1e-5f, 1e-9f);
    cr_assert_eq(dsr_tensor_elements(&model.tensors[n->inputs[1]]), x->dims[x->rank - 1]);
    cr_assert_eq(dsr_tensor_elements(&model.tensors[n->inputs[2]]), x->dims[x->rank - 1]);
  }
  ds_model_free(&model);
}

Test(converter, report_lists_blocks) {
  dsr_model model;
  dsc_report report;
  import_ok("dat_pp_tiny.onnx", &model, &report);
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  cr_assert_not_null(out);
  dsc_report_print(&report, out);
  fclose(out);
  cr_assert_not_null(strstr(text, "opset 16"), "%s", text);
  cr_assert_not_null(strstr(text, "deformable attention blocks: 4"), "%s", text);
  cr_assert_not_null(strstr(text, "stages.3.attns.0"), "%s", text);
  cr_assert_not_null(strstr(text, "DAT++"), "%s", text);
  cr_assert_not_null(strstr(text, "DEFORM_ATTN=4"), "%s", text);
  free(text);
  ds_model_free(&model);
}

/* ---- hand-made models for ops the fixtures lack ---- */

static float *run_ops_model(const char *name, dsr_model *model, dsc_report *report,
                            const float *input) {
  char file[256];
  snprintf(file, sizeof file, "ops/%s", name);
  import_ok(file, model, report);
  return run_float(model, input);
}

Test(converter, layer_normalization_op) {
  float x[18];
  for (int32_t i = 0; i < 18; i++)
    x[i] = (float)sin(i * 0.7) * 3.0f;
  dsr_model model;
  dsc_report report;
  float *y = run_ops_model("layer_normalization.onnx", &model, &report, x);
  cr_assert_eq(model.node_count, 1);
  cr_assert_eq(model.nodes[0].op, DSR_OP_LAYER_NORM);
  cr_assert_eq(model.nodes[0].attrs.norm.axis, 2);
  cr_assert_eq(report.layer_norm_fused_count, 1);
  for (int32_t row = 0; row < 3; row++) {
    double mean = 0.0, var = 0.0;
    for (int32_t j = 0; j < 6; j++)
      mean += x[row * 6 + j] / 6.0;
    for (int32_t j = 0; j < 6; j++)
      var += (x[row * 6 + j] - mean) * (x[row * 6 + j] - mean) / 6.0;
    for (int32_t j = 0; j < 6; j++) {
      double gamma = 0.5 + 0.2 * j;
      double expected = (x[row * 6 + j] - mean) / sqrt(var + 1e-5) * gamma;
      cr_assert_float_eq(y[row * 6 + j], expected, 1e-5, "row %d col %d", row, j);
    }
  }
  free(y);
  ds_model_free(&model);
}

Test(converter, gelu_operand_orders) {
  float x[8];
  for (int32_t i = 0; i < 8; i++)
    x[i] = -3.0f + 0.8f * (float)i;
  dsr_model model;
  dsc_report report;
  float *y = run_ops_model("gelu_orders.onnx", &model, &report, x);
  cr_assert_eq(report.gelu_fused_count, 3);
  cr_assert_eq(report.ops_after[DSR_OP_GELU], 3);
  for (int32_t i = 0; i < 8; i++) {
    double v = x[i];
    for (int32_t k = 0; k < 3; k++)
      v = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    cr_assert_float_eq(y[i], v, 1e-5, "element %d", i);
  }
  free(y);
  ds_model_free(&model);
}

Test(converter, einsum_outside_block) {
  float q[24], k[30];
  for (int32_t i = 0; i < 24; i++)
    q[i] = (float)cos(i * 0.3);
  for (int32_t i = 0; i < 30; i++)
    k[i] = -1.0f + 2.0f * (float)i / 29.0f; /* np.linspace(-1, 1, 30) */
  dsr_model model;
  dsc_report report;
  float *y = run_ops_model("einsum_outside.onnx", &model, &report, q);
  cr_assert_eq(report.ops_after[DSR_OP_MATMUL], 2);
  /* attn[b,m,n] = sum_c q[b,c,m] k[b,c,n]; y[b,c,m] = sum_n attn[b,m,n] k[b,c,n] */
  for (int32_t b = 0; b < 2; b++) {
    double attn[4][5];
    for (int32_t m = 0; m < 4; m++)
      for (int32_t n = 0; n < 5; n++) {
        attn[m][n] = 0.0;
        for (int32_t c = 0; c < 3; c++)
          attn[m][n] += q[b * 12 + c * 4 + m] * k[b * 15 + c * 5 + n];
      }
    for (int32_t c = 0; c < 3; c++)
      for (int32_t m = 0; m < 4; m++) {
        double expected = 0.0;
        for (int32_t n = 0; n < 5; n++)
          expected += attn[m][n] * k[b * 15 + c * 5 + n];
        cr_assert_float_eq(y[b * 12 + c * 4 + m], expected, 1e-4, "b %d c %d m %d", b, c, m);
      }
  }
  free(y);
  ds_model_free(&model);
}

Test(converter, shape_arithmetic_folds) {
  float x[12];
  for (int32_t i = 0; i < 12; i++)
    x[i] = (float)i;
  dsr_model model;
  dsc_report report;
  float *y = run_ops_model("shape_arithmetic.onnx", &model, &report, x);
  const dsr_tensor *out = &model.tensors[model.output];
  cr_assert_eq(out->rank, 3);
  cr_assert_eq(out->dims[0], 1);
  cr_assert_eq(out->dims[1], 6);
  cr_assert_eq(out->dims[2], 2);
  for (int32_t i = 0; i < model.node_count; i++)
    cr_assert_eq(model.nodes[i].op, DSR_OP_RESHAPE);
  cr_assert_geq(report.folded_node_count, 10);
  for (int32_t i = 0; i < 12; i++)
    cr_assert_float_eq(y[i], x[i], 0.0f);
  free(y);
  ds_model_free(&model);
}

Test(converter, gather_negative_indices_per_node) {
  const float x[6] = {10, 11, 12, 20, 21, 22};
  dsr_model model;
  dsc_report report;
  float *y = run_ops_model("gather_negative.onnx", &model, &report, x);
  cr_assert_eq(report.ops_after[DSR_OP_GATHER], 2);
  /* columns [-1, 0] of a 3-wide axis are 2, 0; rows [-1, 0] of a 2-high axis are 1, 0 */
  const float expected[4] = {22, 20, 12, 10};
  for (int32_t i = 0; i < 4; i++)
    cr_assert_float_eq(y[i], expected[i], 0.0f, "element %d", i);
  free(y);
  ds_model_free(&model);
}

/* The offset LayerNorm weight under another name: the block takes it from the fused node. */
Test(converter, renamed_norm_weight_lifted) {
  const char *files[2] = {"ops/deform_renamed_norm.onnx", "ops/deform_identity_norm.onnx"};
  const char *gamma_names[2] = {"onnx::Mul_901", "conv_offset.1.norm.weight"};
  size_t in_bytes = 0, out_bytes = 0;
  float *input = (float *)read_bytes(FIXTURES "deform_layer_dat_pp.input.f32", &in_bytes);
  float *expected = (float *)read_bytes(FIXTURES "deform_layer_dat_pp.output.f32", &out_bytes);
  for (int32_t i = 0; i < 2; i++) {
    dsr_model model;
    dsc_report report;
    import_ok(files[i], &model, &report);
    cr_assert_eq(model.node_count, 1, "%s", files[i]);
    const dsr_deform_attn *d = model.nodes[0].deform;
    cr_assert_not_null(d);
    const dsr_tensor *gamma = &model.tensors[d->params[DSR_DEFORM_OFFSET_LN_G]];
    cr_assert_str_eq(gamma->name, gamma_names[i], "%s", files[i]);
    cr_assert_eq(dsr_tensor_elements(gamma), 4);
    float *actual = run_float(&model, input);
    double diff = max_abs_diff(actual, expected, (int64_t)(out_bytes / 4));
    cr_assert_leq(diff, 1e-4, "%s: max abs difference %g", files[i], diff);
    free(actual);
    ds_model_free(&model);
  }
  free(expected);
  free(input);
}

/* A dynamic batch dim makes torch compute every shape with Shape, Gather, Range and Cast. */
Test(converter, dynamic_batch_export_folds) {
  char path[512];
  fixture_path(path, sizeof path, "ops/deform_dynamic_batch.onnx");
  dsr_model model;
  dsc_report report;
  ds_error err;

  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(path, NULL, &model, &report, &err), DS_ERR_SHAPE);
  cr_assert_not_null(strstr(err.message, "dim 0 is dynamic ('batch')"), "%s", err.message);

  dsc_options options = {{1, 8, 8, 8}, 4};
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(path, &options, &model, &report, &err), DS_OK, "%s",
               err.message);
  int32_t shape_nodes = 0;
  for (int32_t i = 0; i < report.op_type_count; i++) {
    if (strcmp(report.ops_before[i].op_type, "Shape") == 0)
      shape_nodes = report.ops_before[i].count;
  }
  cr_assert_gt(shape_nodes, 0, "the export has no Shape node to fold");
  cr_assert_eq(model.node_count, 1);
  cr_assert_eq(model.nodes[0].op, DSR_OP_DEFORM_ATTN);
  cr_assert_eq(model.nodes[0].deform->convention, DSR_DEFORM_DAT);

  size_t in_bytes = 0, out_bytes = 0;
  float *input = (float *)read_bytes(FIXTURES "ops/deform_dynamic_batch.input.f32", &in_bytes);
  float *expected =
      (float *)read_bytes(FIXTURES "ops/deform_dynamic_batch.output.f32", &out_bytes);
  float *actual = run_float(&model, input);
  double diff = max_abs_diff(actual, expected, (int64_t)(out_bytes / 4));
  cr_assert_leq(diff, 1e-4, "max abs difference %g", diff);
  free(actual);
  free(expected);
  free(input);
  ds_model_free(&model);
}

Test(converter, opset18_reduce_mean_axes_input) {
  size_t in_bytes = 0, out_bytes = 0;
  float *input = (float *)read_bytes(FIXTURES "deform_layer_dat_pp.input.f32", &in_bytes);
  float *expected = (float *)read_bytes(FIXTURES "deform_layer_dat_pp.output.f32", &out_bytes);
  dsr_model model;
  dsc_report report;
  import_ok("ops/deform_opset18.onnx", &model, &report);
  cr_assert_eq(report.opset, 18);
  cr_assert_eq(report.layer_norm_fused_count, 1);
  cr_assert_eq(model.node_count, 1);
  cr_assert_eq(model.nodes[0].op, DSR_OP_DEFORM_ATTN);
  float *actual = run_float(&model, input);
  double diff = max_abs_diff(actual, expected, (int64_t)(out_bytes / 4));
  cr_assert_leq(diff, 1e-4, "max abs difference %g", diff);
  free(actual);
  free(expected);
  free(input);
  ds_model_free(&model);
}

Test(converter, opset17_layer_normalization_in_block) {
  size_t in_bytes = 0, out_bytes = 0;
  float *input = (float *)read_bytes(FIXTURES "deform_layer_dat.input.f32", &in_bytes);
  float *expected = (float *)read_bytes(FIXTURES "deform_layer_dat.output.f32", &out_bytes);
  dsr_model model;
  dsc_report report;
  import_ok("ops/deform_opset17.onnx", &model, &report);
  cr_assert_eq(report.opset, 17);
  cr_assert_eq(report.layer_norm_fused_count, 1);
  cr_assert_eq(model.node_count, 1);
  const dsr_deform_attn *d = model.nodes[0].deform;
  cr_assert_not_null(d);
  cr_assert_eq(d->convention, DSR_DEFORM_DAT);
  cr_assert_float_eq(d->ln_epsilon, 1e-5f, 1e-9f);
  cr_assert_str_eq(model.tensors[d->params[DSR_DEFORM_OFFSET_LN_B]].name,
                   "conv_offset.1.norm.bias");
  float *actual = run_float(&model, input);
  double diff = max_abs_diff(actual, expected, (int64_t)(out_bytes / 4));
  cr_assert_leq(diff, 1e-4, "max abs difference %g", diff);
  free(actual);
  free(expected);
  free(input);
  ds_model_free(&model);
}

/* ---- bad input ---- */

typedef struct bad_case {
  char file[48];
  ds_status status;
  char words[3][72]; /* each must appear in the message */
} bad_case;

static bad_case bad_cases[] = {
    {"bad/opset99.onnx", DS_ERR_ONNX_VERSION, {"opset 99", "13 to 21", "opset99.onnx"}},
    {"bad/ir_version2.onnx", DS_ERR_ONNX_VERSION, {"IR version 2", "ir_version2.onnx", ""}},
    {"bad/unsupported_op.onnx", DS_ERR_UNSUPPORTED_OP,
     {"node 'pool_1' (op MaxPool, input shapes (1, 2, 8, 8))",
      "also unsupported: 'act_1' (HardSwish", "'pool_2' (MaxPool"}},
    {"bad/renamed_sqrt.onnx", DS_ERR_UNSUPPORTED_OP,
     {"node 'norm_sqrt' (op FancyOp, input shapes (1, 4, 1))",
      "7 other nodes could not be lowered", "ReduceMean, Pow, Div, Mul, Add, Transpose"}},
    {"bad/global_max_pool.onnx", DS_ERR_UNSUPPORTED_OP,
     {"node 'pool' (op GlobalMaxPool, input shapes (1, 4, 8, 8))",
      "2 other nodes could not be lowered (ops: Flatten, Gemm)", "does not support"}},
    {"bad/bad_raw_size.onnx", DS_ERR_ONNX_PARSE, {"'weights.bad'", "(4, 4)", "12 bytes"}},
    {"bad/bad_typed_size.onnx", DS_ERR_ONNX_PARSE, {"'weights.short'", "(2, 3)", "5 values"}},
    {"bad/dangling_input.onnx", DS_ERR_GRAPH, {"missing_tensor", "node 'add'", ""}},
    {"bad/dynamic_input.onnx", DS_ERR_SHAPE, {"input 'x' dim 0", "'batch'", "input shape"}},
    {"bad/not_onnx.txt", DS_ERR_ONNX_PARSE, {"not_onnx.txt", "not an ONNX model protobuf", "its 40 bytes"}},
    {"bad/empty.onnx", DS_ERR_ONNX_PARSE, {"empty.onnx", "empty", ""}},
    {"bad/no_such_file.onnx", DS_ERR_IO, {"no_such_file.onnx", "cannot open", ""}},
    {"bad", DS_ERR_IO, {"fixtures/bad", "not a regular file", ""}},
};

/* The unknown op comes first, before the pattern nodes that fail because of it, and the
 * message ends on a whole item. */
Test(converter, unsupported_root_cause_first) {
  static const struct {
    const char *file, *root, *consequence;
  } cases[] = {{"bad/renamed_sqrt.onnx", "FancyOp", "ReduceMean"},
               {"bad/global_max_pool.onnx", "GlobalMaxPool", "Flatten"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[512];
    fixture_path(path, sizeof path, cases[i].file);
    dsr_model model;
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(dsc_import_file(path, NULL, &model, NULL, &err), DS_ERR_UNSUPPORTED_OP);
    const char *root = strstr(err.message, cases[i].root);
    const char *consequence = strstr(err.message, cases[i].consequence);
    cr_assert(root != NULL && consequence != NULL && root < consequence, "%s", err.message);
    size_t length = strlen(err.message);
    cr_assert_lt(length, sizeof err.message - 1, "the message fills the buffer: %s",
                 err.message);
    const char *tail = err.message + length - 4;
    cr_assert(strcmp(tail, "more") == 0 || strcmp(tail, "tant") == 0,
              "the message ends mid-list: %s", err.message);
  }
}

ParameterizedTestParameters(converter, bad_file_rejected) {
  return cr_make_param_array(bad_case, bad_cases, sizeof bad_cases / sizeof bad_cases[0]);
}

ParameterizedTest(bad_case *c, converter, bad_file_rejected) {
  char path[512];
  fixture_path(path, sizeof path, c->file);
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dsc_import_file(path, NULL, &model, NULL, &err);
  cr_assert_eq(status, c->status, "%s: got %s (%s)", c->file, ds_status_name(status),
               err.message);
  for (int32_t i = 0; i < 3; i++)
    cr_assert_not_null(strstr(err.message, c->words[i]), "%s: '%s' missing from: %s", c->file,
                       c->words[i], err.message);
  cr_assert_eq(model.node_count, 0);
  cr_assert_null(model.tensors);
}

Test(converter, truncated_fixture_rejected) {
  char path[512];
  fixture_path(path, sizeof path, "dat_pp_tiny.onnx");
  size_t size = 0;
  uint8_t *data = read_bytes(path, &size);
  size_t cuts[] = {1, 2, 7, 64, 1000, size / 4, size / 2, size - 4096, size - 100, size - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    dsr_model model;
    ds_error err;
    ds_error_clear(&err);
    ds_status status = dsc_import_buffer(data, cuts[i], "cut.onnx", NULL, &model, NULL, &err);
    cr_assert_neq(status, DS_OK, "cut at %zu of %zu bytes imported", cuts[i], size);
    cr_assert_not_null(strstr(err.message, "cut.onnx"), "cut at %zu: %s", cuts[i],
                       err.message);
  }

  /* The same through a real file. */
  char tmp[] = "/tmp/dsc_truncated_XXXXXX";
  int fd = mkstemp(tmp);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, data, size / 2), (ssize_t)(size / 2));
  close(fd);
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(tmp, NULL, &model, NULL, &err), DS_ERR_ONNX_PARSE, "%s",
               err.message);
  cr_assert_not_null(strstr(err.message, tmp));
  unlink(tmp);
  free(data);
}

/* Flipping bytes of a real model must give DS_OK or an error, never a crash. */
Test(converter, corrupted_bytes_never_crash) {
  char path[512];
  fixture_path(path, sizeof path, "deform_layer_dat_pp.onnx");
  size_t size = 0;
  uint8_t *data = read_bytes(path, &size);
  uint8_t *copy = malloc(size);
  cr_assert_not_null(copy);
  uint32_t state = 12345u;
  int32_t rejected = 0;
  for (int32_t trial = 0; trial < 300; trial++) {
    memcpy(copy, data, size);
    for (int32_t flip = 0; flip < 1 + trial % 3; flip++) {
      state = state * 1664525u + 1013904223u;
      size_t at = (state >> 8) % size;
      state = state * 1664525u + 1013904223u;
      copy[at] ^= (uint8_t)(1u + (state >> 24) % 255u);
    }
    dsr_model model;
    ds_error err;
    ds_error_clear(&err);
    ds_status status = dsc_import_buffer(copy, size, "flipped.onnx", NULL, &model, NULL, &err);
    if (status != DS_OK) {
      rejected++;
      cr_assert_neq(err.message[0], '\0', "trial %d: status %s without a message", trial,
                    ds_status_name(status));
    }
    ds_model_free(&model);
  }
  cr_assert_gt(rejected, 0);
  free(copy);
  free(data);
}

Test(converter, garbage_bytes_rejected) {
  uint8_t garbage[512];
  uint32_t state = 99u;
  for (size_t length = 1; length <= sizeof garbage; length *= 2) {
    for (size_t i = 0; i < length; i++) {
      state = state * 1664525u + 1013904223u;
      garbage[i] = (uint8_t)(state >> 24);
    }
    dsr_model model;
    ds_error err;
    ds_error_clear(&err);
    ds_status status = dsc_import_buffer(garbage, length, "garbage.bin", NULL, &model, NULL,
                                         &err);
    cr_assert_neq(status, DS_OK, "%zu random bytes imported", length);
    cr_assert_not_null(strstr(err.message, "garbage.bin"), "%s", err.message);
  }
}

/* ---- options ---- */

Test(converter, input_shape_option_fixes_dynamic_dim) {
  char path[512];
  fixture_path(path, sizeof path, "bad/dynamic_input.onnx");
  dsc_options options = {{3, 4, 0, 0}, 2};
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(path, &options, &model, NULL, &err), DS_OK, "%s", err.message);
  const dsr_tensor *in = &model.tensors[model.input];
  cr_assert_eq(in->rank, 2);
  cr_assert_eq(in->dims[0], 3);
  cr_assert_eq(in->dims[1], 4);
  cr_assert_eq(model.tensors[model.output].dims[0], 3);
  ds_model_free(&model);
}

Test(converter, input_shape_option_checked) {
  char path[512];
  fixture_path(path, sizeof path, "dat_pp_tiny.onnx");
  dsr_model model;
  ds_error err;

  dsc_options wrong_size = {{1, 1, 32, 32}, 4};
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(path, &wrong_size, &model, NULL, &err), DS_ERR_SHAPE, "%s",
               err.message);
  cr_assert_not_null(strstr(err.message, "fixed to 16"), "%s", err.message);

  dsc_options wrong_rank = {{1, 16, 16, 0}, 3};
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(path, &wrong_rank, &model, NULL, &err), DS_ERR_SHAPE, "%s",
               err.message);

  dsc_options negative = {{1, 1, -16, 16}, 4};
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(path, &negative, &model, NULL, &err), DS_ERR_INVALID_ARGUMENT,
               "%s", err.message);
}
