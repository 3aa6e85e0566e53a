/*
 * Tests of the reference runtime: float kernels on small hand-computed cases, the arena
 * planner, slice validation and the deformable attention kernel.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_quantize.h"
#include "runtime/dsr_runtime.h"
#include "runtime/dsr_slice.h"

/* ---- A small model built in place ------------------------------------------------------- */

#define TEST_MAX_TENSORS 64
#define TEST_MAX_NODES 32

typedef struct test_model {
  dsr_model model;
  dsr_tensor tensors[TEST_MAX_TENSORS];
  dsr_node nodes[TEST_MAX_NODES];
  dsr_deform_attn deform;
} test_model;

static void tm_init(test_model *tm) {
  memset(tm, 0, sizeof *tm);
  snprintf(tm->model.name, sizeof tm->model.name, "test");
  tm->model.tensors = tm->tensors;
  tm->model.nodes = tm->nodes;
  tm->model.input = -1;
  tm->model.output = -1;
}

/* Adds a tensor of kind with rank dims. Constants keep data by pointer. */
static int32_t tm_tensor(test_model *tm, int kind, int32_t rank, const int32_t *dims,
                         const float *data) {
  int32_t index = tm->model.tensor_count++;
  cr_assert_lt(index, TEST_MAX_TENSORS);
  dsr_tensor *t = &tm->tensors[index];
  snprintf(t->name, sizeof t->name, "t%d", index);
  t->kind = (uint8_t)kind;
  t->rank = rank;
  for (int32_t i = 0; i < rank; i++)
    t->dims[i] = dims[i];
  t->data_f32 = data;
  if (kind == DSR_TENSOR_INPUT)
    tm->model.input = index;
  if (kind == DSR_TENSOR_OUTPUT)
    tm->model.output = index;
  return index;
}

static dsr_node *tm_node(test_model *tm, int32_t op, int32_t input_count, const int32_t *inputs,
                         int32_t output) {
  int32_t index = tm->model.node_count++;
  cr_assert_lt(index, TEST_MAX_NODES);
  dsr_node *node = &tm->nodes[index];
  snprintf(node->name, sizeof node->name, "node%d", index);
  node->op = op;
  node->input_count = input_count;
  for (int32_t i = 0; i < input_count; i++)
    node->inputs[i] = inputs[i];
  node->output = output;
  return node;
}

/* Deterministic values in [-scale, scale). */
static void fill_values(float *values, int64_t count, uint32_t seed, float scale) {
  uint32_t state = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < count; i++) {
    state = state * 1664525u + 1013904223u;
    values[i] = ((float)(state >> 8) / 16777216.0f * 2.0f - 1.0f) * scale;
  }
}

/* A planned float context with its arena, released by run_free. */
typedef struct test_run {
  dsr_context ctx;
  void *arena;
  dsr_plan_info plan;
} test_run;

static ds_status run_init(test_run *run, const dsr_model *model, uint32_t flags, ds_error *err) {
  memset(run, 0, sizeof *run);
  ds_status status = dsr_plan(model, DSR_MODE_FLOAT, flags, &run->plan, err);
  if (status != DS_OK)
    return status;
  size_t bytes = (run->plan.arena_bytes + 63) / 64 * 64;
  run->arena = aligned_alloc(64, bytes == 0 ? 64 : bytes);
  cr_assert_not_null(run->arena);
  return dsr_context_init(&run->ctx, model, DSR_MODE_FLOAT, flags, run->arena,
                          run->plan.arena_bytes, err);
}

static void run_free(test_run *run) {
  free(run->arena);
  run->arena = NULL;
}

/* Plans, runs model once on input and copies output_count values to output. */
static void run_float(const dsr_model *model, const float *input, float *output,
                      int64_t output_count) {
  ds_error err;
  ds_error_clear(&err);
  test_run run;
  ds_status status = run_init(&run, model, 0, &err);
  cr_assert_eq(status, DS_OK, "plan or init failed: %s", err.message);
  int64_t input_count = dsr_tensor_elements(&model->tensors[model->input]);
  memcpy(dsr_input_f32(&run.ctx), input, (size_t)input_count * sizeof(float));
  dsr_invoke(&run.ctx);
  memcpy(output, dsr_output_f32(&run.ctx), (size_t)output_count * sizeof(float));
  run_free(&run);
}

static void expect_values(const float *actual, const float *expected, int64_t count,
                          float tolerance) {
  for (int64_t i = 0; i < count; i++)
    cr_assert(fabsf(actual[i] - expected[i]) <= tolerance, "value %lld is %.7g, expected %.7g",
              (long long)i, (double)actual[i], (double)expected[i]);
}

/* ---- Kernels ---------------------------------------------------------------------------- */

Test(kernels, conv_stride_pad_bias) {
  static float x[16], w[9], b[1] = {0.5f};
  for (int i = 0; i < 16; i++)
    x[i] = (float)(i + 1);
  for (int i = 0; i < 9; i++)
    w[i] = 1.0f;
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 4, (int32_t[]){1, 1, 4, 4}, NULL);
  int32_t wt = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 4, (int32_t[]){1, 1, 3, 3}, w);
  int32_t bt = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){1}, b);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 4, (int32_t[]){1, 1, 2, 2}, NULL);
  dsr_node *node = tm_node(&tm, DSR_OP_CONV2D, 3, (int32_t[]){in, wt, bt}, out);
  node->attrs.conv = (dsr_conv_attrs){{2, 2}, {1, 1, 1, 1}, {1, 1}, 1};

  /* 3x3 windows of x = 1..16 (row-major 4x4) centred on (0,0), (0,2), (2,0), (2,2). */
  float y[4];
  run_float(&tm.model, x, y, 4);
  expect_values(y, (float[]){14.5f, 30.5f, 57.5f, 99.5f}, 4, 1e-5f);
}

Test(kernels, conv_groups_and_pointwise) {
  static float x[8] = {1, 1, 1, 1, 2, 2, 2, 2};
  static float w[2] = {3, 5};
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 4, (int32_t[]){1, 2, 2, 2}, NULL);
  int32_t wt = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 4, (int32_t[]){2, 1, 1, 1}, w);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 4, (int32_t[]){1, 2, 2, 2}, NULL);
  dsr_node *node = tm_node(&tm, DSR_OP_CONV2D, 3, (int32_t[]){in, wt, -1}, out);
  node->attrs.conv = (dsr_conv_attrs){{1, 1}, {0, 0, 0, 0}, {1, 1}, 2};

  float y[8];
  run_float(&tm.model, x, y, 8);
  expect_values(y, (float[]){3, 3, 3, 3, 10, 10, 10, 10}, 8, 0.0f);

  /* The same input through one dense 1x1 conv: channel 0 minus channel 1. */
  static float w_dense[2] = {1, -1};
  tm.tensors[wt].dims[0] = 1;
  tm.tensors[wt].dims[1] = 2;
  tm.tensors[wt].data_f32 = w_dense;
  tm.tensors[out].dims[1] = 1;
  node->attrs.conv.group = 1;
  run_float(&tm.model, x, y, 4);
  expect_values(y, (float[]){-1, -1, -1, -1}, 4, 0.0f);
}

Test(kernels, conv_dilation_and_asymmetric_pad) {
  /* 1x1x3x3 input 1..9, 2x2 kernel of ones dilated by 2, padding bottom and right only. */
  static float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  static float w[4] = {1, 1, 1, 1};
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 4, (int32_t[]){1, 1, 3, 3}, NULL);
  int32_t wt = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 4, (int32_t[]){1, 1, 2, 2}, w);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 4, (int32_t[]){1, 1, 2, 2}, NULL);
  dsr_node *node = tm_node(&tm, DSR_OP_CONV2D, 2, (int32_t[]){in, wt}, out);
  node->attrs.conv = (dsr_conv_attrs){{1, 1}, {0, 0, 1, 1}, {2, 2}, 1};

  /* Taps at (y, x), (y, x+2), (y+2, x), (y+2, x+2); out of the 3x3 input reads zero. */
  float y[4];
  run_float(&tm.model, x, y, 4);
  expect_values(y, (float[]){1 + 3 + 7 + 9, 2 + 8, 4 + 6, 5}, 4, 0.0f);
}

Test(kernels, depthwise_3x3_padded) {
  static float x[18] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  static float w[18] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0};
  static float b[2] = {0, 0.5f};
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 4, (int32_t[]){1, 2, 3, 3}, NULL);
  int32_t wt = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 4, (int32_t[]){2, 1, 3, 3}, w);
  int32_t bt = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){2}, b);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 4, (int32_t[]){1, 2, 3, 3}, NULL);
  dsr_node *node = tm_node(&tm, DSR_OP_CONV2D, 3, (int32_t[]){in, wt, bt}, out);
  node->attrs.conv = (dsr_conv_attrs){{1, 1}, {1, 1, 1, 1}, {1, 1}, 2};

  /* Channel 0 sums each zero-padded 3x3 window; channel 1 reads the right neighbour. */
  float y[18];
  run_float(&tm.model, x, y, 18);
  expect_values(y, (float[]){12, 21, 16, 27, 45, 33, 24, 39, 28,
                             2.5f, 3.5f, 0.5f, 5.5f, 6.5f, 0.5f, 8.5f, 9.5f, 0.5f},
                18, 0.0f);

  /* A one-pixel-wide map has only border columns. */
  tm.tensors[in].dims[1] = 1;
  tm.tensors[in].dims[3] = 1;
  tm.tensors[wt].dims[0] = 1;
  tm.tensors[bt].dims[0] = 1;
  tm.tensors[out].dims[1] = 1;
  tm.tensors[out].dims[3] = 1;
  node->attrs.conv.group = 1;
  run_float(&tm.model, (float[]){1, 2, 3}, y, 3);
  expect_values(y, (float[]){3, 6, 5}, 3, 0.0f);
}

Test(kernels, binary_broadcasting) {
  static float a[6] = {1, 2, 3, 4, 5, 6};
  static float row[3] = {10, 20, 30};
  static float col[2] = {100, 200};
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 2, (int32_t[]){2, 3}, NULL);
  int32_t r = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){3}, row);
  int32_t c = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 3, (int32_t[]){1, 2, 1}, col);
  int32_t sum = tm_tensor(&tm, DSR_TENSOR_ACTIVATION, 2, (int32_t[]){2, 3}, NULL);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 3, (int32_t[]){1, 2, 3}, NULL);
  tm_node(&tm, DSR_OP_ADD, 2, (int32_t[]){in, r}, sum);
  tm_node(&tm, DSR_OP_SUB, 2, (int32_t[]){c, sum}, out);

  /* (x + row) then col - that, col broadcast along the last axis. */
  float y[6];
  run_float(&tm.model, a, y, 6);
  expect_values(y, (float[]){89, 78, 67, 186, 175, 164}, 6, 0.0f);

  tm.nodes[0].op = DSR_OP_MUL;
  tm.nodes[1].op = DSR_OP_DIV;
  run_float(&tm.model, a, y, 6);
  expect_values(y, (float[]){10, 2.5f, 100.0f / 90, 200.0f / 40, 2, 200.0f / 180}, 6, 1e-5f);
}

Test(kernels, softmax_last_and_first_axis) {
  static float x[3] = {1, 2, 3};
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 2, (int32_t[]){1, 3}, NULL);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 2, (int32_t[]){1, 3}, NULL);
  dsr_node *node = tm_node(&tm, DSR_OP_SOFTMAX, 1, (int32_t[]){in}, out);
  node->attrs.softmax.axis = -1;
  float y[3];
  run_float(&tm.model, x, y, 3);
  expect_values(y, (float[]){0.09003057f, 0.24472847f, 0.66524096f}, 3, 1e-6f);

  /* Axis 0 of a 2x2: each column normalizes on its own. */
  static float x2[4] = {1, 0, 1, 1.0986123f};
  tm.tensors[in].dims[0] = 2;
  tm.tensors[in].dims[1] = 2;
  tm.tensors[out].dims[0] = 2;
  tm.tensors[out].dims[1] = 2;
  node->attrs.softmax.axis = 0;
  float y2[4];
  run_float(&tm.model, x2, y2, 4);
  expect_values(y2, (float[]){0.5f, 0.25f, 0.5f, 0.75f}, 4, 1e-6f);
}

Test(kernels, layer_norm_trailing_axis) {
  static float x[4] = {1, 3, 2, 6};
  static float gamma[2] = {1, 2};
  static float beta[2] = {0, 1};
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 2, (int32_t[]){2, 2}, NULL);
  int32_t g = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){2}, gamma);
  int32_t b = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){2}, beta);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 2, (int32_t[]){2, 2}, NULL);
  dsr_node *node = tm_node(&tm, DSR_OP_LAYER_NORM, 3, (int32_t[]){in, g, b}, out);
  node->attrs.norm.axis = -1;
  node->attrs.norm.epsilon = 0.0f;

  /* Rows (1,3) and (2,6) both normalize to (-1, 1). */
  float y[4];
  run_float(&tm.model, x, y, 4);
  expect_values(y, (float[]){-1, 3, -1, 3}, 4, 1e-6f);

  /* Over both axes with epsilon: mean 3, variance 3.5. */
  static float gamma4[4] = {1, 1, 1, 1};
  tm.tensors[g].dims[0] = 4;
  tm.tensors[g].data_f32 = gamma4;
  node->input_count = 2;
  node->attrs.norm.axis = 0;
  node->attrs.norm.epsilon = 0.5f;
  run_float(&tm.model, x, y, 4);
  expect_values(y, (float[]){-1.0f, 0.0f, -0.5f, 1.5f}, 4, 1e-6f);
}

Test(kernels, gelu_erf_form) {
  static float x[4] = {0, 1, -1, 2};
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 1, (int32_t[]){4}, NULL);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 1, (int32_t[]){4}, NULL);
  tm_node(&tm, DSR_OP_GELU, 1, (int32_t[]){in}, out);
  float y[4];
  run_float(&tm.model, x, y, 4);
  expect_values(y, (float[]){0.0f, 0.8413447f, -0.1586553f, 1.9544997f}, 4, 1e-6f);
}

Test(kernels, gather_int_and_float_indices) {
  static float x[6] = {1, 2, 3, 4, 5, 6};
  static int32_t rows[2] = {2, -3};
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 2, (int32_t[]){3, 2}, NULL);
  int32_t idx = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){2}, NULL);
  tm.tensors[idx].data_q = rows;
  tm.tensors[idx].qparams.dtype = DSR_DTYPE_I32;
  tm.tensors[idx].has_qparams = 1;
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 2, (int32_t[]){2, 2}, NULL);
  dsr_node *node = tm_node(&tm, DSR_OP_GATHER, 2, (int32_t[]){in, idx}, out);
  node->attrs.softmax.axis = 0;
  float y[4];
  run_float(&tm.model, x, y, 4);
  expect_values(y, (float[]){5, 6, 1, 2}, 4, 0.0f);

  /* Column 1 by a float index, scalar indices dropping the axis. */
  static float col[1] = {1};
  tm.tensors[idx].rank = 0;
  tm.tensors[idx].data_f32 = col;
  tm.tensors[out].rank = 1;
  tm.tensors[out].dims[0] = 3;
  node->attrs.softmax.axis = 1;
  float y2[3];
  run_float(&tm.model, x, y2, 3);
  expect_values(y2, (float[]){2, 4, 6}, 3, 0.0f);
}

Test(kernels, transpose_rank_two_and_three) {
  static float x[24];
  for (int i = 0; i < 24; i++)
    x[i] = (float)i;
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 2, (int32_t[]){2, 3}, NULL);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 2, (int32_t[]){3, 2}, NULL);
  dsr_node *node = tm_node(&tm, DSR_OP_TRANSPOSE, 1, (int32_t[]){in}, out);
  node->attrs.transpose.perm[0] = 1;
  node->attrs.transpose.perm[1] = 0;
  float y[24];
  run_float(&tm.model, x, y, 6);
  expect_values(y, (float[]){0, 3, 1, 4, 2, 5}, 6, 0.0f);

  /* (2,3,4) with perm (2,0,1): y[k][i][j] = x[i][j][k]. */
  tm.tensors[in].rank = 3;
  memcpy(tm.tensors[in].dims, (int32_t[]){2, 3, 4}, 3 * sizeof(int32_t));
  tm.tensors[out].rank = 3;
  memcpy(tm.tensors[out].dims, (int32_t[]){4, 2, 3}, 3 * sizeof(int32_t));
  node->attrs.transpose.perm[0] = 2;
  node->attrs.transpose.perm[1] = 0;
  node->attrs.transpose.perm[2] = 1;
  run_float(&tm.model, x, y, 24);
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 3; j++)
        cr_assert_eq(y[(k * 2 + i) * 3 + j], x[(i * 3 + j) * 4 + k], "y[%d][%d][%d]", k, i, j);
}

Test(kernels, matmul_broadcast_and_gemm) {
  static float a[12] = {1, 2, 3, 4, 5, 6, -1, 0, 1, 2, 2, 2};
  static float b[6] = {1, 0, 0, 1, 1, 1};
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 3, (int32_t[]){2, 2, 3}, NULL);
  int32_t bt = tm_tensor(&tm, DSR_TENSOR_CONSTANT, 2, (int32_t[]){3, 2}, b);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 3, (int32_t[]){2, 2, 2}, NULL);
  tm_node(&tm, DSR_OP_MATMUL, 2, (int32_t[]){in, bt}, out);
  float y[8];
  run_float(&tm.model, a, y, 8);
  expect_values(y, (float[]){4, 5, 10, 11, 0, 1, 4, 4}, 8, 0.0f);

  /* Gemm: 0.5 * a(2x3) b'(2x3)^T + 2 * c(2). */
  static float w[6] = {1, 1, 1, 1, 0, -1};
  static float c[2] = {1, -1};
  test_model gm;
  tm_init(&gm);
  int32_t gin = tm_tensor(&gm, DSR_TENSOR_INPUT, 2, (int32_t[]){2, 3}, NULL);
  int32_t gw = tm_tensor(&gm, DSR_TENSOR_CONSTANT, 2, (int32_t[]){2, 3}, w);
  int32_t gc = tm_tensor(&gm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){2}, c);
  int32_t gout = tm_tensor(&gm, DSR_TENSOR_OUTPUT, 2, (int32_t[]){2, 2}, NULL);
  dsr_node *node = tm_node(&gm, DSR_OP_GEMM, 3, (int32_t[]){gin, gw, gc}, gout);
  node->attrs.gemm = (dsr_gemm_attrs){0.5f, 2.0f, 0, 1};
  run_float(&gm.model, a, y, 4);
  expect_values(y, (float[]){3 + 2, -1 - 2, 7.5f + 2, -1 - 2}, 4, 1e-6f);
}

Test(kernels, global_avg_pool_and_reshape) {
  static float x[8] = {1, 2, 3, 4, 10, 20, 30, 40};
  test_model tm;
  tm_init(&tm);
  int32_t in = tm_tensor(&tm, DSR_TENSOR_INPUT, 4, (int32_t[]){1, 2, 2, 2}, NULL);
  int32_t pooled = tm_tensor(&tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 2, 1, 1}, NULL);
  int32_t out = tm_tensor(&tm, DSR_TENSOR_OUTPUT, 2, (int32_t[]){1, 2}, NULL);
  tm_node(&tm, DSR_OP_GLOBAL_AVG_POOL, 1, (int32_t[]){in}, pooled);
  tm_node(&tm, DSR_OP_RESHAPE, 1, (int32_t[]){pooled}, out);
  float y[2];
  run_float(&tm.model, x, y, 2);
  expect_values(y, (float[]){2.5f, 25.0f}, 2, 0.0f);
}

/* ---- Validation ------------------------------------------------------------------------- */

static void build_conv_model(test_model *tm) {
  static float w[9] = {0};
  tm_init(tm);
  int32_t in = tm_tensor(tm, DSR_TENSOR_INPUT, 4, (int32_t[]){1, 1, 4, 4}, NULL);
  int32_t wt = tm_tensor(tm, DSR_TENSOR_CONSTANT, 4, (int32_t[]){1, 1, 3, 3}, w);
  int32_t out = tm_tensor(tm, DSR_TENSOR_OUTPUT, 4, (int32_t[]){1, 1, 4, 4}, NULL);
  dsr_node *node = tm_node(tm, DSR_OP_CONV2D, 2, (int32_t[]){in, wt}, out);
  snprintf(node->name, sizeof node->name, "stem/conv");
  node->attrs.conv = (dsr_conv_attrs){{1, 1}, {1, 1, 1, 1}, {1, 1}, 1};
}

Test(validation, conv_output_shape_mismatch) {
  test_model tm;
  build_conv_model(&tm);
  tm.tensors[tm.model.output].dims[3] = 5;
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan(&tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_ERR_SHAPE);
  cr_assert(strstr(err.message, "stem/conv") != NULL, "%s", err.message);
  cr_assert(strstr(err.message, "CONV2D") != NULL, "%s", err.message);
  cr_assert(strstr(err.message, "(1,1,4,5)") != NULL, "%s", err.message);
  cr_assert(strstr(err.message, "(1,1,4,4)") != NULL, "%s", err.message);
}

Test(validation, bad_indices_and_order) {
  test_model tm;
  build_conv_model(&tm);
  ds_error err;
  dsr_plan_info plan;

  tm.nodes[0].inputs[1] = 99;
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_ERR_GRAPH);
  cr_assert(strstr(err.message, "99") != NULL, "%s", err.message);

  /* A node reading an activation that only a later node produces. */
  build_conv_model(&tm);
  int32_t mid = tm_tensor(&tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 1, 4, 4}, NULL);
  tm.nodes[0].inputs[0] = mid;
  tm_node(&tm, DSR_OP_GELU, 1, (int32_t[]){tm.model.input}, mid);
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_ERR_GRAPH);
  cr_assert(strstr(err.message, "earlier node") != NULL, "%s", err.message);

  /* An unknown op and a constant without data. */
  build_conv_model(&tm);
  tm.nodes[0].op = 77;
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_ERR_UNSUPPORTED_OP);
  build_conv_model(&tm);
  tm.tensors[1].data_f32 = NULL;
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_ERR_GRAPH);

  cr_assert_eq(dsr_plan(NULL, DSR_MODE_FLOAT, 0, &plan, NULL), DS_ERR_INVALID_ARGUMENT);
  build_conv_model(&tm);
  cr_assert_eq(dsr_plan(&tm.model, DSR_MODE_FLOAT, 0x80, &plan, NULL), DS_ERR_INVALID_ARGUMENT);
}

Test(validation, fixed_mode_needs_quantized_model) {
  test_model tm;
  build_conv_model(&tm);
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan(&tm.model, DSR_MODE_FIXED, 0, &plan, &err), DS_ERR_QUANT);
  cr_assert(strstr(err.message, "not quantized") != NULL, "%s", err.message);
}

Test(validation, misaligned_arena_rejected) {
  test_model tm;
  build_conv_model(&tm);
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan(&tm.model, DSR_MODE_FLOAT, 0, &plan, NULL), DS_OK);
  uint8_t *arena = aligned_alloc(64, (plan.arena_bytes + 64 + 63) / 64 * 64);
  dsr_context ctx;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_context_init(&ctx, &tm.model, DSR_MODE_FLOAT, 0, arena + 8, plan.arena_bytes,
                                &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_assert(strstr(err.message, "aligned") != NULL, "%s", err.message);
  free(arena);
}

#define DEFORM_MAX_FLOATS 4096

/* Captures the SAMPLED stage of the first patch. */
typedef struct stage_capture {
  float sampled[DEFORM_MAX_FLOATS];
  int64_t sampled_count;
  int stage_calls[DSR_DEFORM_STAGE_COUNT];
  int tensor_calls;
  int32_t last_tensor;
} stage_capture;

static void capture_stage(void *user, int32_t node_index, int32_t stage, const float *values,
                          int64_t count) {
  stage_capture *capture = user;
  cr_assert_eq(node_index, 0);
  cr_assert(stage >= 0 && stage < DSR_DEFORM_STAGE_COUNT);
  capture->stage_calls[stage]++;
  if (stage == DSR_DEFORM_STAGE_SAMPLED && capture->stage_calls[stage] == 1) {
    memcpy(capture->sampled, values, (size_t)count * sizeof(float));
    capture->sampled_count = count;
  }
}

static void on_tensor(void *user, int32_t index, const float *values, int64_t count) {
  stage_capture *capture = user;
  cr_assert_not_null(values);
  cr_assert_gt(count, 0);
  capture->tensor_calls++;
  capture->last_tensor = index;
}

/* ---- Planner ---------------------------------------------------------------------------- */

/*
 * A chain with skip connections: t1 = gelu(in), t2 = gelu(t1), t3 = t1 + t2, t4 = gelu(t3),
 * t5 = gelu(t4), t6 = t5 + t3, t7 = gelu(t6), out = t7 + t5.
 */
static void build_chain_model(test_model *tm) {
  tm_init(tm);
  int32_t dims[2] = {4, 40};
  int32_t in = tm_tensor(tm, DSR_TENSOR_INPUT, 2, dims, NULL);
  int32_t t[8];
  for (int i = 1; i < 8; i++)
    t[i] = tm_tensor(tm, DSR_TENSOR_ACTIVATION, 2, dims, NULL);
  int32_t out = tm_tensor(tm, DSR_TENSOR_OUTPUT, 2, dims, NULL);
  tm_node(tm, DSR_OP_GELU, 1, (int32_t[]){in}, t[1]);
  tm_node(tm, DSR_OP_GELU, 1, (int32_t[]){t[1]}, t[2]);
  tm_node(tm, DSR_OP_ADD, 2, (int32_t[]){t[1], t[2]}, t[3]);
  tm_node(tm, DSR_OP_GELU, 1, (int32_t[]){t[3]}, t[4]);
  tm_node(tm, DSR_OP_GELU, 1, (int32_t[]){t[4]}, t[5]);
  tm_node(tm, DSR_OP_ADD, 2, (int32_t[]){t[5], t[3]}, t[6]);
  tm_node(tm, DSR_OP_GELU, 1, (int32_t[]){t[6]}, t[7]);
  tm_node(tm, DSR_OP_ADD, 2, (int32_t[]){t[7], t[5]}, out);
}

/* Producer and last consumer of tensor, by walking the nodes. */
static void lifetime(const dsr_model *model, int32_t tensor, int32_t *first, int32_t *last) {
  *first = tensor == model->input ? -1 : model->node_count;
  *last = tensor == model->output ? model->node_count : -1;
  for (int32_t i = 0; i < model->node_count; i++) {
    if (model->nodes[i].output == tensor && i < *first)
      *first = i;
    for (int32_t j = 0; j < model->nodes[i].input_count; j++) {
      if (model->nodes[i].inputs[j] == tensor && i > *last)
        *last = i;
    }
  }
  if (*last < *first)
    *last = *first;
}

/* Checks that no two tensors with byte ranges in the arena overlap while both are live
 * (every pair when all_pairs). Returns the number of pairs checked. */
static int check_no_overlap(const dsr_context *ctx, int all_pairs) {
  const dsr_model *model = ctx->model;
  int pairs = 0;
  for (int32_t a = 0; a < model->tensor_count; a++) {
    for (int32_t b = a + 1; b < model->tensor_count; b++) {
      uint8_t *pa = dsr_tensor_data(ctx, a), *pb = dsr_tensor_data(ctx, b);
      if (model->tensors[a].kind == DSR_TENSOR_CONSTANT ||
          model->tensors[b].kind == DSR_TENSOR_CONSTANT || pa == NULL || pb == NULL)
        continue;
      int32_t fa, la, fb, lb;
      lifetime(model, a, &fa, &la);
      lifetime(model, b, &fb, &lb);
      if (!all_pairs && (la < fb || lb < fa))
        continue;
      size_t bytes_a = (size_t)dsr_tensor_elements(&model->tensors[a]) * sizeof(float);
      size_t bytes_b = (size_t)dsr_tensor_elements(&model->tensors[b]) * sizeof(float);
      cr_assert(pa + bytes_a <= pb || pb + bytes_b <= pa,
                "tensors %d [%d..%d] and %d [%d..%d] overlap in the arena", a, fa, la, b, fb, lb);
      cr_assert(pa >= ctx->arena && pa + bytes_a <= ctx->arena + ctx->arena_bytes);
      pairs++;
    }
  }
  return pairs;
}

Test(planner, live_tensors_never_overlap) {
  test_model tm;
  build_chain_model(&tm);
  ds_error err;
  ds_error_clear(&err);
  test_run run;
  cr_assert_eq(run_init(&run, &tm.model, 0, &err), DS_OK, "%s", err.message);
  cr_assert_gt(check_no_overlap(&run.ctx, 0), 0);

  /* Reuse: at most three activations of 640 bytes are live at once. */
  cr_assert_leq(run.plan.activation_bytes, 3 * 640, "peak %zu", run.plan.activation_bytes);
  cr_assert_eq(run.plan.scratch_bytes, 0);
  cr_assert_geq(run.plan.arena_bytes, run.plan.activation_bytes + 2 * 640);
  run_free(&run);
}

Test(planner, keep_all_gives_distinct_ranges) {
  test_model tm;
  build_chain_model(&tm);
  ds_error err;
  ds_error_clear(&err);
  test_run reuse, keep;
  cr_assert_eq(run_init(&reuse, &tm.model, 0, &err), DS_OK, "%s", err.message);
  cr_assert_eq(run_init(&keep, &tm.model, DSR_PLAN_KEEP_ALL, &err), DS_OK, "%s", err.message);
  cr_assert_eq(check_no_overlap(&keep.ctx, 1), 36, "all 9 arena tensors pairwise");
  cr_assert_eq(keep.plan.activation_bytes, 7 * 640);
  cr_assert_lt(reuse.plan.activation_bytes, keep.plan.activation_bytes);

  /* Both plans compute the same numbers, and KEEP_ALL keeps every intermediate. */
  float x[160];
  for (int i = 0; i < 160; i++)
    x[i] = (float)(i % 17) * 0.25f - 2.0f;
  memcpy(dsr_input_f32(&reuse.ctx), x, sizeof x);
  memcpy(dsr_input_f32(&keep.ctx), x, sizeof x);
  dsr_invoke(&reuse.ctx);
  dsr_invoke(&keep.ctx);
  cr_assert_eq(memcmp(dsr_output_f32(&reuse.ctx), dsr_output_f32(&keep.ctx), sizeof x), 0);
  const float *t1 = dsr_tensor_data(&keep.ctx, 1);
  for (int i = 0; i < 160; i++)
    cr_assert_float_eq(t1[i], 0.5f * x[i] * (1.0f + erff(x[i] / sqrtf(2.0f))), 1e-6f);
  run_free(&reuse);
  run_free(&keep);
}

Test(planner, arena_one_byte_short_rejected) {
  test_model tm;
  build_chain_model(&tm);
  dsr_plan_info plan;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_OK, "%s", err.message);
  void *arena = aligned_alloc(64, (plan.arena_bytes + 63) / 64 * 64);
  dsr_context ctx;
  cr_assert_eq(dsr_context_init(&ctx, &tm.model, DSR_MODE_FLOAT, 0, arena, plan.arena_bytes - 1,
                                &err),
               DS_ERR_ARENA_TOO_SMALL);
  char requested[32], available[32];
  snprintf(requested, sizeof requested, "%zu", plan.arena_bytes);
  snprintf(available, sizeof available, "%zu", plan.arena_bytes - 1);
  cr_assert(strstr(err.message, requested) != NULL, "%s", err.message);
  cr_assert(strstr(err.message, available) != NULL, "%s", err.message);

  /* The failed init left a zeroed context, which runs as a no-op. */
  dsr_invoke(&ctx);
  cr_assert_null(dsr_tensor_data(&ctx, 0));

  ds_error_clear(&err);
  cr_assert_eq(dsr_context_init(&ctx, &tm.model, DSR_MODE_FLOAT, 0, arena, plan.arena_bytes,
                                &err),
               DS_OK, "%s", err.message);
  free(arena);
}

Test(planner, random_graphs_never_overlap) {
  /* Each node reads a random earlier tensor, so lifetimes nest and cross at random; the
   * MatMuls change sizes so that best fit meets gaps of every size. */
  static float weights[64 * 64];
  fill_values(weights, 64 * 64, 5, 0.5f);
  uint32_t state = 3;
  test_model *tm = malloc(sizeof *tm);
  for (int graph = 0; graph < 40; graph++) {
    tm_init(tm);
    int32_t sizes[TEST_MAX_NODES + 1];
    int32_t produced[TEST_MAX_NODES + 1];
    sizes[0] = 8;
    produced[0] = tm_tensor(tm, DSR_TENSOR_INPUT, 2, (int32_t[]){1, 8}, NULL);
    int node_count = 8 + graph % (TEST_MAX_NODES / 2 - 8);
    for (int i = 1; i <= node_count; i++) {
      state = state * 1664525u + 1013904223u;
      int source = (int)((state >> 8) % (uint32_t)i);
      int kind = i == node_count ? DSR_TENSOR_OUTPUT : DSR_TENSOR_ACTIVATION;
      if ((state >> 20) % 2) {
        sizes[i] = sizes[source];
        produced[i] = tm_tensor(tm, kind, 2, (int32_t[]){1, sizes[i]}, NULL);
        tm_node(tm, DSR_OP_GELU, 1, (int32_t[]){produced[source]}, produced[i]);
      } else {
        sizes[i] = 1 + (int32_t)((state >> 12) % 64);
        int32_t w = tm_tensor(tm, DSR_TENSOR_CONSTANT, 2, (int32_t[]){sizes[source], sizes[i]},
                              weights);
        produced[i] = tm_tensor(tm, kind, 2, (int32_t[]){1, sizes[i]}, NULL);
        tm_node(tm, DSR_OP_MATMUL, 2, (int32_t[]){produced[source], w}, produced[i]);
      }
    }

    ds_error err;
    ds_error_clear(&err);
    test_run reuse, keep;
    cr_assert_eq(run_init(&reuse, &tm->model, 0, &err), DS_OK, "graph %d: %s", graph, err.message);
    cr_assert_eq(run_init(&keep, &tm->model, DSR_PLAN_KEEP_ALL, &err), DS_OK, "%s", err.message);
    check_no_overlap(&reuse.ctx, 0);
    check_no_overlap(&keep.ctx, 1);
    cr_assert_leq(reuse.plan.activation_bytes, keep.plan.activation_bytes);

    /* Reuse must not change the numbers. */
    for (int i = 0; i < 8; i++) {
      dsr_input_f32(&reuse.ctx)[i] = (float)i - 3.5f;
      dsr_input_f32(&keep.ctx)[i] = (float)i - 3.5f;
    }
    dsr_invoke(&reuse.ctx);
    dsr_invoke(&keep.ctx);
    cr_assert_eq(memcmp(dsr_output_f32(&reuse.ctx), dsr_output_f32(&keep.ctx),
                        (size_t)sizes[node_count] * sizeof(float)),
                 0, "graph %d", graph);
    run_free(&reuse);
    run_free(&keep);
  }
  free(tm);
}

Test(planner, observer_sees_every_node) {
  test_model tm;
  build_chain_model(&tm);
  test_run run;
  cr_assert_eq(run_init(&run, &tm.model, 0, NULL), DS_OK);
  stage_capture *capture = calloc(1, sizeof *capture);
  dsr_observer observer = {on_tensor, capture_stage, capture};
  dsr_context_set_observer(&run.ctx, &observer);
  memset(dsr_input_f32(&run.ctx), 0, 160 * sizeof(float));
  dsr_invoke(&run.ctx);
  cr_assert_eq(capture->tensor_calls, 8);
  cr_assert_eq(capture->last_tensor, tm.model.output);

  dsr_context_set_observer(&run.ctx, NULL);
  dsr_invoke(&run.ctx);
  cr_assert_eq(capture->tensor_calls, 8);
  free(capture);
  run_free(&run);
}

/* ---- The deformable layer --------------------------------------------------------------- */

typedef struct deform_case {
  test_model tm;
  float params[DSR_DEFORM_PARAM_COUNT][DEFORM_MAX_FLOATS];
  float x[DEFORM_MAX_FLOATS];
} deform_case;

/* Builds one DEFORM_ATTN node over a (1, channels, height, width) map. */
static void build_deform(deform_case *dc, int32_t channels, int32_t height, int32_t width,
                         int32_t groups, int32_t heads, int32_t kernel, int32_t stride,
                         int32_t convention) {
  test_model *tm = &dc->tm;
  tm_init(tm);
  int32_t map_dims[4] = {1, channels, height, width};
  int32_t in = tm_tensor(tm, DSR_TENSOR_INPUT, 4, map_dims, NULL);
  int32_t out = tm_tensor(tm, DSR_TENSOR_OUTPUT, 4, map_dims, NULL);

  dsr_deform_attn *layer = &dc->tm.deform;
  memset(layer, 0, sizeof *layer);
  layer->channels = channels;
  layer->height = height;
  layer->width = width;
  layer->groups = groups;
  layer->heads = heads;
  layer->head_channels = channels / heads;
  layer->offset_kernel = kernel;
  layer->offset_stride = stride;
  layer->offset_pad = kernel / 2;
  layer->convention = convention;
  layer->offset_range_factor = 2.0f;
  layer->attn_scale = 1.0f / sqrtf((float)layer->head_channels);
  layer->ln_epsilon = 1e-5f;
  layer->slice = dsr_slice_none();

  int32_t c = channels, cg = channels / groups;
  int32_t shapes[DSR_DEFORM_PARAM_COUNT][4] = {
      {c, c, 1, 1}, {c}, {cg, 1, kernel, kernel}, {cg}, {cg}, {cg}, {2, cg, 1, 1},
      {c, c, 1, 1}, {c}, {c, c, 1, 1}, {c}, {c, c, 1, 1}, {c},
      {heads, 2 * height - 1, 2 * width - 1}};
  int32_t ranks[DSR_DEFORM_PARAM_COUNT] = {4, 1, 4, 1, 1, 1, 4, 4, 1, 4, 1, 4, 1, 3};
  for (int32_t p = 0; p < DSR_DEFORM_PARAM_COUNT; p++) {
    int32_t index = tm_tensor(tm, DSR_TENSOR_CONSTANT, ranks[p], shapes[p], dc->params[p]);
    cr_assert_leq(dsr_tensor_elements(&tm->tensors[index]), DEFORM_MAX_FLOATS);
    float scale = p == DSR_DEFORM_OFFSET_PW_W ? 0.3f : (p == DSR_DEFORM_RPE_TABLE ? 0.5f : 0.6f);
    fill_values(dc->params[p], dsr_tensor_elements(&tm->tensors[index]), (uint32_t)p + 1, scale);
    layer->params[p] = index;
  }
  for (int32_t i = 0; i < cg; i++)
    dc->params[DSR_DEFORM_OFFSET_LN_G][i] += 1.0f;

  dsr_node *node = tm_node(tm, DSR_OP_DEFORM_ATTN, 1, (int32_t[]){in}, out);
  snprintf(node->name, sizeof node->name, "stages.0.attns.1");
  node->deform = layer;
  fill_values(dc->x, (int64_t)c * height * width, 99, 1.0f);
}

/* Runs the layer with slice on dc->x into out. */
static void run_deform(deform_case *dc, dsr_slice slice, float *out) {
  ds_error err;
  ds_error_clear(&err);
  test_run run;
  cr_assert_eq(run_init(&run, &dc->tm.model, 0, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsr_context_set_slice(&run.ctx, 0, slice, &err), DS_OK, "%s", err.message);
  int64_t count = dsr_tensor_elements(&dc->tm.tensors[dc->tm.model.input]);
  memcpy(dsr_input_f32(&run.ctx), dc->x, (size_t)count * sizeof(float));
  dsr_invoke(&run.ctx);
  memcpy(out, dsr_output_f32(&run.ctx), (size_t)count * sizeof(float));
  run_free(&run);
}

/* Bilinear sample of an h x w plane at pixel (y, x) with zero padding, in double. */
static double ref_bilinear(const double *plane, int h, int w, double y, double x) {
  double y0 = floor(y), x0 = floor(x);
  double sum = 0.0;
  for (int dy = 0; dy < 2; dy++) {
    for (int dx = 0; dx < 2; dx++) {
      int yy = (int)y0 + dy, xx = (int)x0 + dx;
      if (yy < 0 || yy >= h || xx < 0 || xx >= w)
        continue;
      double wy = dy ? y - y0 : 1.0 - (y - y0);
      double wx = dx ? x - x0 : 1.0 - (x - x0);
      sum += wy * wx * plane[yy * w + xx];
    }
  }
  return sum;
}

/*
 * The unsliced layer as PyTorch's DAttentionBaseline writes it: normalized coordinates,
 * grid_sample with align_corners, in double. An independent check of the float kernel.
 */
static void reference_deform(const deform_case *dc, double *out) {
  const dsr_deform_attn *L = &dc->tm.deform;
  int C = L->channels, H = L->height, W = L->width, G = L->groups, heads = L->heads;
  int hc = L->head_channels, cg = C / G, hg = heads / G, k = L->offset_kernel;
  int r = L->offset_stride, pad = L->offset_pad;
  int hk = (H + 2 * pad - k) / r + 1, wk = (W + 2 * pad - k) / r + 1, N = hk * wk, HW = H * W;
  const float *const *p = (const float *const[]){
      dc->params[0], dc->params[1], dc->params[2],  dc->params[3], dc->params[4],
      dc->params[5], dc->params[6], dc->params[7],  dc->params[8], dc->params[9],
      dc->params[10], dc->params[11], dc->params[12], dc->params[13]};

  static double x[DEFORM_MAX_FLOATS], q[DEFORM_MAX_FLOATS], net[DEFORM_MAX_FLOATS];
  static double pos[2 * DEFORM_MAX_FLOATS], sampled[DEFORM_MAX_FLOATS];
  static double key[DEFORM_MAX_FLOATS], val[DEFORM_MAX_FLOATS], ctx[DEFORM_MAX_FLOATS];
  for (int i = 0; i < C * HW; i++)
    x[i] = dc->x[i];
  for (int co = 0; co < C; co++)
    for (int m = 0; m < HW; m++) {
      double s = p[DSR_DEFORM_PROJ_Q_B][co];
      for (int ci = 0; ci < C; ci++)
        s += p[DSR_DEFORM_PROJ_Q_W][co * C + ci] * x[ci * HW + m];
      q[co * HW + m] = s;
    }

  for (int g = 0; g < G; g++) {
    for (int c = 0; c < cg; c++)
      for (int i = 0; i < hk; i++)
        for (int j = 0; j < wk; j++) {
          double s = p[DSR_DEFORM_OFFSET_DW_B][c];
          for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
              int yy = i * r - pad + ky, xx = j * r - pad + kx;
              if (yy >= 0 && yy < H && xx >= 0 && xx < W)
                s += p[DSR_DEFORM_OFFSET_DW_W][(c * k + ky) * k + kx] *
                     q[(g * cg + c) * HW + yy * W + xx];
            }
          net[c * N + i * wk + j] = s;
        }
    for (int n = 0; n < N; n++) {
      double mean = 0, var = 0;
      for (int c = 0; c < cg; c++)
        mean += net[c * N + n] / cg;
      for (int c = 0; c < cg; c++)
        var += (net[c * N + n] - mean) * (net[c * N + n] - mean) / cg;
      double off[2] = {0, 0};
      for (int c = 0; c < cg; c++) {
        double v = (net[c * N + n] - mean) / sqrt(var + L->ln_epsilon) *
                       p[DSR_DEFORM_OFFSET_LN_G][c] + p[DSR_DEFORM_OFFSET_LN_B][c];
        v = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
        off[0] += p[DSR_DEFORM_OFFSET_PW_W][c] * v;
        off[1] += p[DSR_DEFORM_OFFSET_PW_W][cg + c] * v;
      }
      int i = n / wk, j = n % wk;
      double ref_y, ref_x, pos_y, pos_x;
      if (L->convention == DSR_DEFORM_DAT_PP) {
        ref_y = (0.5 + i) / (hk - 1.0) * 2.0 - 1.0;
        ref_x = (0.5 + j) / (wk - 1.0) * 2.0 - 1.0;
        pos_y = fmin(fmax(off[0] + ref_y, -1.0), 1.0);
        pos_x = fmin(fmax(off[1] + ref_x, -1.0), 1.0);
      } else {
        ref_y = (0.5 + i) / hk * 2.0 - 1.0;
        ref_x = (0.5 + j) / wk * 2.0 - 1.0;
        pos_y = tanh(off[0]) / hk * L->offset_range_factor + ref_y;
        pos_x = tanh(off[1]) / wk * L->offset_range_factor + ref_x;
      }
      pos[(g * N + n) * 2] = pos_y;
      pos[(g * N + n) * 2 + 1] = pos_x;
      for (int c = 0; c < cg; c++)
        sampled[(g * cg + c) * N + n] =
            ref_bilinear(x + (g * cg + c) * HW, H, W, (pos_y + 1) / 2 * (H - 1),
                         (pos_x + 1) / 2 * (W - 1));
    }
  }

  for (int co = 0; co < C; co++)
    for (int n = 0; n < N; n++) {
      double sk = p[DSR_DEFORM_PROJ_K_B][co], sv = p[DSR_DEFORM_PROJ_V_B][co];
      for (int ci = 0; ci < C; ci++) {
        sk += p[DSR_DEFORM_PROJ_K_W][co * C + ci] * sampled[ci * N + n];
        sv += p[DSR_DEFORM_PROJ_V_W][co * C + ci] * sampled[ci * N + n];
      }
      key[co * N + n] = sk;
      val[co * N + n] = sv;
    }

  static double attn[DEFORM_MAX_FLOATS];
  for (int hd = 0; hd < heads; hd++) {
    const float *table = p[DSR_DEFORM_RPE_TABLE] + hd * (2 * H - 1) * (2 * W - 1);
    const double *gpos = pos + (hd / hg) * N * 2;
    for (int m = 0; m < HW; m++) {
      double qy = (m / W) / (H - 1.0) * 2.0 - 1.0, qx = (m % W) / (W - 1.0) * 2.0 - 1.0;
      double max_value = -INFINITY;
      for (int n = 0; n < N; n++) {
        double s = 0;
        for (int c = 0; c < hc; c++)
          s += q[(hd * hc + c) * HW + m] * key[(hd * hc + c) * N + n];
        double dy = (qy - gpos[n * 2]) * 0.5, dx = (qx - gpos[n * 2 + 1]) * 0.5;
        static double tbl[DEFORM_MAX_FLOATS];
        for (int t = 0; t < (2 * H - 1) * (2 * W - 1); t++)
          tbl[t] = table[t];
        s = s * L->attn_scale + ref_bilinear(tbl, 2 * H - 1, 2 * W - 1, (dy + 1) / 2 * (2 * H - 2),
                                             (dx + 1) / 2 * (2 * W - 2));
        attn[n] = s;
        max_value = fmax(max_value, s);
      }
      double sum = 0;
      for (int n = 0; n < N; n++) {
        attn[n] = exp(attn[n] - max_value);
        sum += attn[n];
      }
      for (int c = 0; c < hc; c++) {
        double s = 0;
        for (int n = 0; n < N; n++)
          s += attn[n] / sum * val[(hd * hc + c) * N + n];
        ctx[(hd * hc + c) * HW + m] = s;
      }
    }
  }
  for (int co = 0; co < C; co++)
    for (int m = 0; m < HW; m++) {
      double s = p[DSR_DEFORM_PROJ_OUT_B][co];
      for (int ci = 0; ci < C; ci++)
        s += p[DSR_DEFORM_PROJ_OUT_W][co * C + ci] * ctx[ci * HW + m];
      out[co * HW + m] = s;
    }
}

static deform_case *new_deform_case(void) {
  deform_case *dc = calloc(1, sizeof *dc);
  cr_assert_not_null(dc);
  return dc;
}

Test(deform, unsliced_matches_reference) {
  deform_case *dc = new_deform_case();
  int32_t conventions[2] = {DSR_DEFORM_DAT_PP, DSR_DEFORM_DAT};
  for (int i = 0; i < 2; i++) {
    /* A rectangular map, two groups, offset stride 2 (a 3x4 grid). */
    build_deform(dc, 8, 6, 7, 2, 4, 3, 2, conventions[i]);
    float out[8 * 6 * 7];
    static double expected[8 * 6 * 7];
    run_deform(dc, dsr_slice_none(), out);
    reference_deform(dc, expected);
    for (int j = 0; j < 8 * 6 * 7; j++)
      cr_assert(fabs(out[j] - expected[j]) <= 1e-5, "convention %d value %d: %.7g vs %.7g",
                conventions[i], j, (double)out[j], expected[j]);
  }
  free(dc);
}

Test(deform, unsliced_semantics_agree_bit_for_bit) {
  deform_case *dc = new_deform_case();
  int32_t conventions[2] = {DSR_DEFORM_DAT_PP, DSR_DEFORM_DAT};
  for (int i = 0; i < 2; i++) {
    build_deform(dc, 8, 8, 8, 2, 2, 3, 1, conventions[i]);
    float physical[512], crop[512], wide[512];
    run_deform(dc, (dsr_slice){1, 1, 0, DSR_SLICE_PHYSICAL}, physical);
    run_deform(dc, (dsr_slice){1, 1, 0, DSR_SLICE_CROP}, crop);
    /* Overlap on a single patch is clipped at the map, so it changes nothing. */
    run_deform(dc, (dsr_slice){1, 1, 3, DSR_SLICE_CROP}, wide);
    cr_assert_eq(memcmp(physical, crop, sizeof physical), 0, "convention %d", conventions[i]);
    cr_assert_eq(memcmp(physical, wide, sizeof physical), 0, "convention %d", conventions[i]);
  }
  free(dc);
}

Test(deform, sliced_outputs_differ_but_stay_finite) {
  deform_case *dc = new_deform_case();
  build_deform(dc, 8, 8, 8, 2, 2, 3, 1, DSR_DEFORM_DAT_PP);
  float unsliced[512], sliced[512];
  run_deform(dc, dsr_slice_none(), unsliced);
  dsr_slice slices[4] = {{2, 2, 0, DSR_SLICE_PHYSICAL},
                         {2, 3, 1, DSR_SLICE_CROP},
                         {4, 1, 2, DSR_SLICE_PHYSICAL},
                         {8, 8, 0, DSR_SLICE_CROP}};
  for (int s = 0; s < 4; s++) {
    run_deform(dc, slices[s], sliced);
    double difference = 0;
    for (int i = 0; i < 512; i++) {
      cr_assert(isfinite(sliced[i]), "slice %d value %d is %g", s, i, (double)sliced[i]);
      difference = fmax(difference, fabs(sliced[i] - unsliced[i]));
    }
    cr_assert_gt(difference, 1e-4, "slice %d gives the unsliced output", s);
  }
  free(dc);
}

Test(deform, patch_reads_only_its_extended_patch) {
  deform_case *dc = new_deform_case();
  int32_t conventions[2] = {DSR_DEFORM_DAT_PP, DSR_DEFORM_DAT};
  int32_t semantics[2] = {DSR_SLICE_PHYSICAL, DSR_SLICE_CROP};
  for (int i = 0; i < 4; i++) {
    build_deform(dc, 8, 8, 8, 2, 2, 3, 1, conventions[i / 2]);
    /* Large offsets push samples to the patch border. */
    for (int j = 0; j < 16; j++)
      dc->params[DSR_DEFORM_OFFSET_PW_W][j] *= 8.0f;
    dsr_slice slice = {2, 2, 1, semantics[i % 2]};
    float before[512], after[512];
    run_deform(dc, slice, before);

    /* Patch (0, 0): core rows and cols 0..3, extended 0..4. Change x everywhere else. */
    dsr_patch patch;
    dsr_slice_patch(8, 8, slice, 0, 0, &patch);
    for (int c = 0; c < 8; c++)
      for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
          if (y >= patch.ext_y1 || x >= patch.ext_x1)
            dc->x[(c * 8 + y) * 8 + x] += 5.0f;
    run_deform(dc, slice, after);

    int changed = 0;
    for (int c = 0; c < 8; c++)
      for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
          int at = (c * 8 + y) * 8 + x;
          if (y < patch.core_y1 && x < patch.core_x1)
            cr_assert_eq(before[at], after[at], "case %d core value (%d,%d,%d) changed", i, c,
                         y, x);
          else
            changed += before[at] != after[at];
        }
    cr_assert_gt(changed, 0, "case %d: other patches ignored the change", i);
  }
  free(dc);
}

Test(deform, zero_offsets_sample_reference_points) {
  deform_case *dc = new_deform_case();
  int32_t conventions[2] = {DSR_DEFORM_DAT_PP, DSR_DEFORM_DAT};
  for (int i = 0; i < 2; i++) {
    /* 6x6 map, 3x3 offset kernel, stride 2: a 3x3 grid of reference points. */
    build_deform(dc, 4, 6, 6, 2, 2, 3, 2, conventions[i]);
    memset(dc->params[DSR_DEFORM_OFFSET_PW_W], 0, sizeof dc->params[0]);
    for (int c = 0; c < 4; c++)
      for (int y = 0; y < 6; y++)
        for (int x = 0; x < 6; x++)
          dc->x[(c * 6 + y) * 6 + x] = (float)(100 * c + 10 * y + x);

    ds_error err;
    ds_error_clear(&err);
    test_run run;
    cr_assert_eq(run_init(&run, &dc->tm.model, 0, &err), DS_OK, "%s", err.message);
    stage_capture *capture = calloc(1, sizeof *capture);
    dsr_observer observer = {on_tensor, capture_stage, capture};
    dsr_context_set_observer(&run.ctx, &observer);
    memcpy(dsr_input_f32(&run.ctx), dc->x, 144 * sizeof(float));
    dsr_invoke(&run.ctx);

    /* DAT++: (i + 0.5) / (3 - 1) * 5 = 1.25, 3.75, 6.25 clamped to 5.
     * DAT: (i + 0.5) / 3 * 5 = 0.8333, 2.5, 4.1667. x is linear, so bilinear is exact. */
    float pp[3] = {1.25f, 3.75f, 5.0f}, dat[3] = {5.0f / 6, 2.5f, 25.0f / 6};
    const float *ref = conventions[i] == DSR_DEFORM_DAT_PP ? pp : dat;
    cr_assert_eq(capture->sampled_count, 4 * 9);
    for (int c = 0; c < 4; c++)
      for (int n = 0; n < 9; n++) {
        float expected = 100.0f * c + 10.0f * ref[n / 3] + ref[n % 3];
        cr_assert_float_eq(capture->sampled[c * 9 + n], expected, 1e-4f,
                           "convention %d channel %d sample %d: %g, expected %g", conventions[i],
                           c, n, (double)capture->sampled[c * 9 + n], (double)expected);
      }
    for (int s = 0; s < DSR_DEFORM_STAGE_COUNT; s++)
      cr_assert_eq(capture->stage_calls[s], 1, "stage %d reported %d times", s,
                   capture->stage_calls[s]);
    cr_assert_eq(capture->tensor_calls, 1);

    /* Four patches: Q once, every other stage once per patch. */
    memset(capture, 0, sizeof *capture);
    cr_assert_eq(dsr_context_set_slice(&run.ctx, 0, (dsr_slice){2, 2, 0, 0}, &err), DS_OK, "%s",
                 err.message);
    dsr_invoke(&run.ctx);
    cr_assert_eq(capture->stage_calls[DSR_DEFORM_STAGE_Q], 1);
    for (int s = 1; s < DSR_DEFORM_STAGE_COUNT; s++)
      cr_assert_eq(capture->stage_calls[s], 4, "stage %d reported %d times", s,
                   capture->stage_calls[s]);
    free(capture);
    run_free(&run);
  }
  free(dc);
}

/* ---- Slice validation ------------------------------------------------------------------- */

Test(slices, rows_larger_than_map_rejected) {
  deform_case *dc = new_deform_case();
  build_deform(dc, 4, 6, 6, 2, 2, 3, 2, DSR_DEFORM_DAT_PP);
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_slice_validate(&dc->tm.deform, (dsr_slice){7, 1, 0, 0}, &err),
               DS_ERR_SLICE_CONFIG);
  cr_assert(strstr(err.message, "rows 7") != NULL, "%s", err.message);
  cr_assert(strstr(err.message, "6x6") != NULL, "%s", err.message);

  /* Through the context the message also names the layer. */
  test_run run;
  cr_assert_eq(run_init(&run, &dc->tm.model, 0, NULL), DS_OK);
  ds_error_clear(&err);
  cr_assert_eq(dsr_context_set_slice(&run.ctx, 0, (dsr_slice){1, 9, 0, 0}, &err),
               DS_ERR_SLICE_CONFIG);
  cr_assert(strstr(err.message, "deformable layer 0") != NULL, "%s", err.message);
  cr_assert(strstr(err.message, "stages.0.attns.1") != NULL, "%s", err.message);
  cr_assert(strstr(err.message, "cols 9") != NULL, "%s", err.message);
  cr_assert_eq(run.ctx.slices[0].cols, 1, "a rejected slice must not be installed");

  ds_error_clear(&err);
  cr_assert_eq(dsr_context_set_slice(&run.ctx, 1, dsr_slice_none(), &err),
               DS_ERR_INVALID_ARGUMENT);
  run_free(&run);
  free(dc);
}

Test(slices, negative_overlap_and_bad_semantics) {
  deform_case *dc = new_deform_case();
  build_deform(dc, 4, 6, 6, 2, 2, 3, 2, DSR_DEFORM_DAT_PP);
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_slice_validate(&dc->tm.deform, (dsr_slice){2, 2, -1, 0}, &err),
               DS_ERR_SLICE_CONFIG);
  cr_assert(strstr(err.message, "overlap -1") != NULL, "%s", err.message);
  ds_error_clear(&err);
  cr_assert_eq(dsr_slice_validate(&dc->tm.deform, (dsr_slice){2, 2, 7, 0}, &err),
               DS_ERR_SLICE_CONFIG);
  ds_error_clear(&err);
  cr_assert_eq(dsr_slice_validate(&dc->tm.deform, (dsr_slice){2, 2, 0, 5}, &err),
               DS_ERR_SLICE_CONFIG);
  cr_assert(strstr(err.message, "semantics 5") != NULL, "%s", err.message);
  ds_error_clear(&err);
  cr_assert_eq(dsr_slice_validate(&dc->tm.deform, (dsr_slice){0, 1, 0, 0}, &err),
               DS_ERR_SLICE_CONFIG);
  cr_assert_eq(dsr_slice_validate(&dc->tm.deform, (dsr_slice){6, 6, 6, 1}, NULL), DS_OK);

  /* A 5x5 offset kernel without padding needs patches of at least 5 pixels. */
  dc->tm.deform.offset_kernel = 5;
  dc->tm.deform.offset_pad = 0;
  ds_error_clear(&err);
  cr_assert_eq(dsr_slice_validate(&dc->tm.deform, (dsr_slice){2, 1, 0, 0}, &err),
               DS_ERR_SLICE_CONFIG);
  cr_assert(strstr(err.message, "3 pixels high") != NULL, "%s", err.message);
  cr_assert_eq(dsr_slice_validate(&dc->tm.deform, (dsr_slice){2, 1, 2, 0}, NULL), DS_OK);

  /* A model whose own slice does not fit is rejected at plan time. */
  dc->tm.deform.offset_kernel = 3;
  dc->tm.deform.offset_pad = 1;
  dc->tm.deform.slice = (dsr_slice){1, 1, -2, 0};
  dsr_plan_info plan;
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&dc->tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_ERR_SLICE_CONFIG);
  cr_assert(strstr(err.message, "DEFORM_ATTN") != NULL, "%s", err.message);
  cr_assert(strstr(err.message, "overlap -2") != NULL, "%s", err.message);
  free(dc);
}

Test(deform, bad_parameters_rejected) {
  deform_case *dc = new_deform_case();
  build_deform(dc, 4, 6, 6, 2, 2, 3, 2, DSR_DEFORM_DAT_PP);
  dsr_plan_info plan;
  ds_error err;

  /* Float mode reads a bias table built for another map size; one of other heads fails. */
  dc->tm.tensors[dc->tm.deform.params[DSR_DEFORM_RPE_TABLE]].dims[1] = 10;
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&dc->tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_OK, "%s",
               err.message);
  dc->tm.tensors[dc->tm.deform.params[DSR_DEFORM_RPE_TABLE]].dims[0] = 3;
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&dc->tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_ERR_SHAPE);
  cr_assert(strstr(err.message, "(3,10,11)") != NULL, "%s", err.message);

  build_deform(dc, 4, 6, 6, 2, 2, 3, 2, DSR_DEFORM_DAT_PP);
  dc->tm.deform.params[DSR_DEFORM_PROJ_V_B] = -1;
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&dc->tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_ERR_GRAPH);

  build_deform(dc, 4, 6, 6, 2, 2, 3, 2, DSR_DEFORM_DAT_PP);
  dc->tm.deform.heads = 3;
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&dc->tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_ERR_SHAPE);

  build_deform(dc, 4, 6, 6, 2, 2, 3, 2, DSR_DEFORM_DAT_PP);
  dc->tm.nodes[0].deform = NULL;
  ds_error_clear(&err);
  cr_assert_eq(dsr_plan(&dc->tm.model, DSR_MODE_FLOAT, 0, &plan, &err), DS_ERR_GRAPH);
  free(dc);
}

Test(deform, scratch_fits_every_slice) {
  /* Scratch is planned for the full map; the largest patch of any slice is no larger. */
  deform_case *dc = new_deform_case();
  build_deform(dc, 8, 8, 8, 2, 2, 3, 1, DSR_DEFORM_DAT_PP);
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan(&dc->tm.model, DSR_MODE_FLOAT, 0, &plan, NULL), DS_OK);
  cr_assert_gt(plan.scratch_bytes, 0);
  for (int rows = 1; rows <= 8; rows++)
    for (int overlap = 0; overlap <= 8; overlap += 4)
      cr_assert_leq(dsr_slice_max_ext_pixels(8, 8, (dsr_slice){rows, rows, overlap, 0}), 64);
  float out[512];
  run_deform(dc, (dsr_slice){3, 5, 2, DSR_SLICE_CROP}, out);
  for (int i = 0; i < 512; i++)
    cr_assert(isfinite(out[i]));
  free(dc);
}

/* ---- Corrupted models ------------------------------------------------------------------- */

/* A model with one node of most ops: conv, transpose, layer norm, matmul, softmax, gather,
 * gelu, add, pool and reshape, on a (1, 2, 4, 4) input. Constants hold 64 floats each. */
static void build_mixed_model(test_model *tm) {
  static float constants[8][64];
  static float gather_rows[2] = {1, 0};
  for (int i = 0; i < 8; i++)
    fill_values(constants[i], 64, (uint32_t)i + 40, 1.0f);
  tm_init(tm);
  int32_t in = tm_tensor(tm, DSR_TENSOR_INPUT, 4, (int32_t[]){1, 2, 4, 4}, NULL);
  int32_t cw = tm_tensor(tm, DSR_TENSOR_CONSTANT, 4, (int32_t[]){4, 2, 1, 1}, constants[0]);
  int32_t cb = tm_tensor(tm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){4}, constants[1]);
  int32_t conv = tm_tensor(tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 4, 4, 4}, NULL);
  int32_t nhwc = tm_tensor(tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 4, 4, 4}, NULL);
  int32_t gamma = tm_tensor(tm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){4}, constants[2]);
  int32_t beta = tm_tensor(tm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){4}, constants[3]);
  int32_t norm = tm_tensor(tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 4, 4, 4}, NULL);
  int32_t mw = tm_tensor(tm, DSR_TENSOR_CONSTANT, 2, (int32_t[]){4, 4}, constants[4]);
  int32_t mm = tm_tensor(tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 4, 4, 4}, NULL);
  int32_t sm = tm_tensor(tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 4, 4, 4}, NULL);
  int32_t idx = tm_tensor(tm, DSR_TENSOR_CONSTANT, 1, (int32_t[]){2}, gather_rows);
  int32_t ga = tm_tensor(tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 4, 2, 4}, NULL);
  int32_t ge = tm_tensor(tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 4, 2, 4}, NULL);
  int32_t sum = tm_tensor(tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 4, 2, 4}, NULL);
  int32_t pool = tm_tensor(tm, DSR_TENSOR_ACTIVATION, 4, (int32_t[]){1, 4, 1, 1}, NULL);
  int32_t out = tm_tensor(tm, DSR_TENSOR_OUTPUT, 2, (int32_t[]){1, 4}, NULL);

  dsr_node *node = tm_node(tm, DSR_OP_CONV2D, 3, (int32_t[]){in, cw, cb}, conv);
  node->attrs.conv = (dsr_conv_attrs){{1, 1}, {0, 0, 0, 0}, {1, 1}, 1};
  node = tm_node(tm, DSR_OP_TRANSPOSE, 1, (int32_t[]){conv}, nhwc);
  for (int i = 0; i < 4; i++)
    node->attrs.transpose.perm[i] = (int32_t[]){0, 2, 3, 1}[i];
  node = tm_node(tm, DSR_OP_LAYER_NORM, 3, (int32_t[]){nhwc, gamma, beta}, norm);
  node->attrs.norm.axis = -1;
  node->attrs.norm.epsilon = 1e-5f;
  tm_node(tm, DSR_OP_MATMUL, 2, (int32_t[]){norm, mw}, mm);
  node = tm_node(tm, DSR_OP_SOFTMAX, 1, (int32_t[]){mm}, sm);
  node->attrs.softmax.axis = 3;
  node = tm_node(tm, DSR_OP_GATHER, 2, (int32_t[]){sm, idx}, ga);
  node->attrs.softmax.axis = 2;
  tm_node(tm, DSR_OP_GELU, 1, (int32_t[]){ga}, ge);
  tm_node(tm, DSR_OP_ADD, 2, (int32_t[]){ge, ga}, sum);
  tm_node(tm, DSR_OP_GLOBAL_AVG_POOL, 1, (int32_t[]){sum}, pool);
  tm_node(tm, DSR_OP_RESHAPE, 1, (int32_t[]){pool}, out);
}

/* Changes one field of model to a small random value: an index, a dim of a non-constant
 * tensor, a rank, a kind, an op, an attribute or a deformable layer field. */
static void corrupt_model(test_model *tm, uint32_t *state) {
  *state = *state * 1664525u + 1013904223u;
  uint32_t r = *state >> 8;
  int32_t value = (int32_t)(r % 11) - 2;
  dsr_model *m = &tm->model;
  dsr_node *node = &tm->nodes[(r / 11) % (uint32_t)m->node_count];
  dsr_tensor *t = &tm->tensors[(r / 7) % (uint32_t)m->tensor_count];
  switch ((r / 131) % 12) {
  case 0:
    node->inputs[(r / 3) % DSR_MAX_NODE_INPUTS] = value * 3;
    break;
  case 1:
    node->input_count = value;
    break;
  case 2:
    node->output = value * 2;
    break;
  case 3:
    node->op = (int32_t)(r % 18);
    break;
  case 4:
    ((int32_t *)&node->attrs)[(r / 5) % 8] = value;
    break;
  case 5:
    if (t->kind != DSR_TENSOR_CONSTANT)
      t->dims[(r / 3) % DSR_MAX_RANK] = value + 2;
    break;
  case 6:
    if (t->kind != DSR_TENSOR_CONSTANT)
      t->rank = value + 1;
    break;
  case 7:
    t->kind = (uint8_t)(r % 5);
    break;
  case 8:
    if (r % 2)
      m->input = value;
    else
      m->output = value * 4;
    break;
  case 9:
  case 10:
    if (node->deform != NULL)
      ((int32_t *)node->deform)[(r / 5) % 9] = value;
    break;
  default:
    if (node->deform != NULL)
      ((int32_t *)&node->deform->slice)[(r / 5) % 4] = value;
    break;
  }
}

/* Plans the model; when the plan passes, the context must initialize and run cleanly. */
static void run_if_valid(const dsr_model *model, int *valid_count) {
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info plan;
  ds_status status = dsr_plan(model, DSR_MODE_FLOAT, 0, &plan, &err);
  if (status != DS_OK) {
    cr_assert_neq(err.message[0], '\0', "status %s without a message", ds_status_name(status));
    return;
  }
  void *arena = aligned_alloc(64, (plan.arena_bytes + 63) / 64 * 64);
  dsr_context ctx;
  cr_assert_eq(dsr_context_init(&ctx, model, DSR_MODE_FLOAT, 0, arena, plan.arena_bytes, &err),
               DS_OK, "%s", err.message);
  int64_t count = dsr_tensor_elements(&model->tensors[model->input]);
  for (int64_t i = 0; i < count; i++)
    dsr_input_f32(&ctx)[i] = (float)(i % 7) - 3.0f;
  dsr_invoke(&ctx);
  free(arena);
  (*valid_count)++;
}

Test(validation, corrupted_models_never_crash) {
  uint32_t state = 7;
  int valid_count = 0;
  test_model *tm = malloc(sizeof *tm);
  deform_case *dc = new_deform_case();
  for (int round = 0; round < 600; round++) {
    test_model *model = tm;
    switch (round % 3) {
    case 0:
      build_mixed_model(tm);
      break;
    case 1:
      build_chain_model(tm);
      break;
    default:
      build_deform(dc, 4, 6, 6, 2, 2, 3, 2, round % 2 ? DSR_DEFORM_DAT : DSR_DEFORM_DAT_PP);
      model = &dc->tm;
      break;
    }
    int mutations = 1 + round % 3;
    for (int i = 0; i < mutations; i++)
      corrupt_model(model, &state);
    run_if_valid(&model->model, &valid_count);
  }
  /* Some corruptions are harmless (a dead input slot, an attribute the op ignores). */
  cr_assert_gt(valid_count, 0);
  cr_assert_lt(valid_count, 600);
  free(tm);
  free(dc);
}

Test(validation, mixed_model_runs) {
  test_model tm;
  build_mixed_model(&tm);
  float x[32], y[4];
  for (int i = 0; i < 32; i++)
    x[i] = (float)i * 0.1f;
  run_float(&tm.model, x, y, 4);
  /* Each output is the mean of gelu(p) + p over softmax probabilities p, so it lies in
   * (0, 2). */
  for (int i = 0; i < 4; i++)
    cr_assert(y[i] > 0.0f && y[i] < 2.0f, "y[%d] = %g", i, (double)y[i]);
}

/* ---- ONNX fixtures against PyTorch ------------------------------------------------------ */

/* Reads count float32 values from path into values (the files and the host are both
 * little-endian). */
static void read_floats(const char *path, float *values, int64_t count) {
  FILE *file = fopen(path, "rb");
  cr_assert_not_null(file, "cannot open %s", path);
  size_t read = fread(values, sizeof(float), (size_t)count, file);
  int extra = fgetc(file);
  fclose(file);
  cr_assert_eq(read, (size_t)count, "%s holds %zu floats, expected %lld", path, read,
               (long long)count);
  cr_assert_eq(extra, EOF, "%s holds more than %lld floats", path, (long long)count);
}

/* Imports tests/fixtures/NAME.onnx, runs it in float mode on NAME.input.f32 and checks the
 * output against PyTorch's NAME.output.f32. Returns the max abs difference. */
static double check_fixture(const char *name, int64_t input_count, int64_t output_count) {
  char path[512];
  snprintf(path, sizeof path, "%s/tests/fixtures/%s.onnx", DS_SOURCE_DIR, name);
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(path, NULL, &model, NULL, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsr_tensor_elements(&model.tensors[model.input]), input_count);
  cr_assert_eq(dsr_tensor_elements(&model.tensors[model.output]), output_count);

  float *input = malloc((size_t)input_count * sizeof(float));
  float *expected = malloc((size_t)output_count * sizeof(float));
  float *actual = malloc((size_t)output_count * sizeof(float));
  snprintf(path, sizeof path, "%s/tests/fixtures/%s.input.f32", DS_SOURCE_DIR, name);
  read_floats(path, input, input_count);
  snprintf(path, sizeof path, "%s/tests/fixtures/%s.output.f32", DS_SOURCE_DIR, name);
  read_floats(path, expected, output_count);

  run_float(&model, input, actual, output_count);
  double max_difference = 0;
  for (int64_t i = 0; i < output_count; i++) {
    cr_assert(isfinite(actual[i]), "%s value %lld is %g", name, (long long)i, (double)actual[i]);
    max_difference = fmax(max_difference, fabs((double)actual[i] - expected[i]));
  }
  cr_assert_leq(max_difference, 1e-4, "%s: max abs difference %g against PyTorch", name,
                max_difference);

  free(input);
  free(expected);
  free(actual);
  ds_model_free(&model);
  return max_difference;
}

Test(fixtures, deform_layer_dat_pp) {
  check_fixture("deform_layer_dat_pp", 8 * 8 * 8, 8 * 8 * 8);
}

Test(fixtures, deform_layer_dat) {
  check_fixture("deform_layer_dat", 8 * 8 * 8, 8 * 8 * 8);
}

Test(fixtures, deform_layer_rect) {
  check_fixture("deform_layer_rect", 16 * 6 * 10, 16 * 6 * 10);
}

Test(fixtures, dat_pp_tiny) {
  check_fixture("dat_pp_tiny", 16 * 16, 4);
}

Test(fixtures, dat_offsets_tiny) {
  check_fixture("dat_offsets_tiny", 16 * 16, 4);
}

/* ---- Fixed-point mode through the executor ---------------------------------------------- */

/* Imports fixture NAME, calibrates it on its input, 1.5 times it and its negation, and
 * quantizes it. Returns the three images in *input. */
static void quantized_fixture(const char *name, dsr_model *model, float **input) {
  char path[512];
  snprintf(path, sizeof path, "%s/tests/fixtures/%s.onnx", DS_SOURCE_DIR, name);
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(path, NULL, model, NULL, &err), DS_OK, "%s", err.message);
  int64_t count = dsr_tensor_elements(&model->tensors[model->input]);
  float *images = malloc((size_t)count * 3 * sizeof(float));
  snprintf(path, sizeof path, "%s/tests/fixtures/%s.input.f32", DS_SOURCE_DIR, name);
  read_floats(path, images, count);
  for (int64_t i = 0; i < count; i++) {
    images[count + i] = images[i] * 1.5f;
    images[2 * count + i] = -images[i];
  }

  dsq_calibration calib;
  cr_assert_eq(dsq_calibration_init(&calib, model, DSQ_CALIBRATION_MINMAX, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(dsq_calibration_run(&calib, model, images, 3, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsq_quantize(model, &calib, NULL, &err), DS_OK, "%s", err.message);
  dsq_calibration_free(&calib);
  *input = images;
}

/* A fixed-mode context with KEEP_ALL, so the quantized input stays readable after invoke. */
static void fixed_context(const dsr_model *model, dsr_context *ctx, void **arena) {
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan(model, DSR_MODE_FIXED, DSR_PLAN_KEEP_ALL, &plan, &err), DS_OK, "%s",
               err.message);
  *arena = aligned_alloc(64, (plan.arena_bytes + 63) / 64 * 64);
  cr_assert_eq(dsr_context_init(ctx, model, DSR_MODE_FIXED, DSR_PLAN_KEEP_ALL, *arena,
                                plan.arena_bytes, &err),
               DS_OK, "%s", err.message);
}

static int64_t quantized_value(const dsr_tensor *t, const void *data, int64_t i) {
  switch (t->qparams.dtype) {
  case DSR_DTYPE_I8:
    return ((const int8_t *)data)[i];
  case DSR_DTYPE_I16:
    return ((const int16_t *)data)[i];
  default:
    return ((const int32_t *)data)[i];
  }
}

Test(fixed, input_quantized_and_output_dequantized) {
  dsr_model model;
  float *images;
  quantized_fixture("deform_layer_dat_pp", &model, &images);
  dsr_context ctx;
  void *arena;
  fixed_context(&model, &ctx, &arena);

  /* Ties, saturation on both sides and NaN, besides the fixture's own values. */
  const dsr_tensor *in = &model.tensors[model.input];
  int64_t count = dsr_tensor_elements(in);
  float scale = in->qparams.scale;
  float *x = dsr_input_f32(&ctx);
  memcpy(x, images, (size_t)count * sizeof(float));
  x[0] = 2.5f * scale;
  x[1] = -2.5f * scale;
  x[2] = 1e9f;
  x[3] = -1e9f;
  x[4] = NAN;
  dsr_invoke(&ctx);

  const void *q = dsr_tensor_data(&ctx, model.input);
  double low = in->qparams.dtype == DSR_DTYPE_I8 ? -128 : -32768;
  double high = in->qparams.dtype == DSR_DTYPE_I8 ? 127 : 32767;
  for (int64_t i = 0; i < count; i++) {
    double expected = i == 4 ? in->qparams.zero_point
                             : roundf(x[i] / scale) + (double)in->qparams.zero_point;
    expected = fmin(fmax(expected, low), high);
    cr_assert_eq(quantized_value(in, q, i), (int64_t)expected, "input %lld: %g", (long long)i,
                 (double)x[i]);
  }
  /* Where 2.5 * scale / scale gives back exactly 2.5, the tie must round away from zero. */
  if (x[0] / scale == 2.5f) {
    cr_assert_eq(quantized_value(in, q, 0), 3 + in->qparams.zero_point);
    cr_assert_eq(quantized_value(in, q, 1), -3 + in->qparams.zero_point);
  }
  cr_assert_eq(quantized_value(in, q, 2), (int64_t)high);
  cr_assert_eq(quantized_value(in, q, 3), (int64_t)low);

  const dsr_tensor *out = &model.tensors[model.output];
  const void *q_out = dsr_tensor_data(&ctx, model.output);
  const float *y = dsr_output_f32(&ctx);
  for (int64_t i = 0; i < dsr_tensor_elements(out); i++) {
    float expected = out->qparams.scale * (float)(quantized_value(out, q_out, i) -
                                                  out->qparams.zero_point);
    cr_assert_eq(y[i], expected, "output %lld", (long long)i);
  }

  free(arena);
  free(images);
  ds_model_free(&model);
}

Test(fixed, deform_layer_tracks_float) {
  dsr_model model;
  float *images;
  quantized_fixture("deform_layer_dat_pp", &model, &images);
  int64_t count = dsr_tensor_elements(&model.tensors[model.output]);
  float *reference = malloc((size_t)count * sizeof(float));
  run_float(&model, images, reference, count);

  dsr_context ctx;
  void *arena;
  fixed_context(&model, &ctx, &arena);
  memcpy(dsr_input_f32(&ctx), images, (size_t)count * sizeof(float));
  dsr_invoke(&ctx);

  /* Signal-to-noise of the whole output: quantization noise well below the signal. */
  double signal = 0, noise = 0;
  for (int64_t i = 0; i < count; i++) {
    double difference = dsr_output_f32(&ctx)[i] - reference[i];
    signal += (double)reference[i] * reference[i];
    noise += difference * difference;
  }
  cr_assert_gt(signal, 0);
  double snr_db = 10 * log10(signal / fmax(noise, 1e-30));
  cr_assert_gt(snr_db, 20.0, "fixed-point output SNR %.1f dB", snr_db);

  /* A sliced configuration runs in fixed mode too. */
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_context_set_slice(&ctx, 0, (dsr_slice){2, 2, 1, DSR_SLICE_PHYSICAL}, &err),
               DS_OK, "%s", err.message);
  dsr_invoke(&ctx);
  for (int64_t i = 0; i < count; i++)
    cr_assert(isfinite(dsr_output_f32(&ctx)[i]));

  free(arena);
  free(reference);
  free(images);
  ds_model_free(&model);
}
