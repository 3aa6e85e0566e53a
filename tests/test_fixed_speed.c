/*
 * Tests of the optimized fixed-point kernels (runtime/dsr_fixed_fast_*.c and the fast path of
 * dsr_fixed_deform.c). Each kernel runs against its reference kernel on random data and must
 * match byte for byte: convolutions, matrix products, additions, products, transposes, LayerNorm,
 * softmax and GELU, over the shape classes the models use. The row helpers are compared with
 * the scalar primitives. Then whole fixture models run node by node through
 * dsr_fixed_execute and dsr_fixed_execute_reference, deformable layers also under slices.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_params.h"
#include "quant/dsq_quantize.h"
#include "ds_test_fixture.h"
#include "runtime/dsr_fixed.h"
#include "runtime/dsr_fixed_internal.h"
#include "runtime/dsr_fixed_math.h"
#include "runtime/dsr_slice.h"

/* ------------------------------------------------------------------ random numbers */

/* Deterministic xorshift, so failures reproduce. */
static uint64_t rng_state = 0x853c49e6748fea9bull;

static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

/* Uniform integer in [lo, hi]. */
static int32_t rng_range(int32_t lo, int32_t hi) {
  return (int32_t)(lo + (int64_t)(rng_u32() % (uint64_t)((int64_t)hi - lo + 1)));
}

/* ------------------------------------------------------------------ one-node models */

/* A model of one node with at most 4 tensors: input 0, input 1, optional bias, output. The
 * buffers it points to are owned here and freed by node_case_free. */
typedef struct node_case {
  dsr_model model;
  dsr_tensor tensors[4];
  dsr_node node;
  int32_t qwords[2 + 2 * 512];
  float scales[512];
  void *data[4]; /* storage of each tensor */
} node_case;

static size_t dtype_bytes(int32_t dtype) {
  return dtype == DSR_DTYPE_I8 ? 1 : (dtype == DSR_DTYPE_I16 ? 2 : 4);
}

/* Sets tensor index of c: rank, dims, qparams, random storage. zero is ignored for int16. */
static void set_tensor(node_case *c, int32_t index, int32_t kind, int32_t rank,
                       const int32_t *dims, int32_t dtype, int32_t zero) {
  dsr_tensor *t = &c->tensors[index];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "t%d", index);
  t->kind = (uint8_t)kind;
  t->rank = rank;
  memcpy(t->dims, dims, sizeof(int32_t) * (size_t)rank);
  t->has_qparams = 1;
  t->qparams.dtype = (uint8_t)dtype;
  t->qparams.bits = (uint8_t)(8 * dtype_bytes(dtype));
  t->qparams.scale = 0.05f;
  t->qparams.zero_point = dtype == DSR_DTYPE_I8 ? zero : 0;
  int64_t count = dsr_tensor_elements(t);
  c->data[index] = malloc((size_t)count * dtype_bytes(dtype) + 1);
  cr_assert_not_null(c->data[index]);
  int32_t lo, hi;
  dsr_fixed_dtype_range(dtype, &lo, &hi);
  if (dtype == DSR_DTYPE_I32) {
    lo = -20000;
    hi = 20000;
  }
  for (int64_t i = 0; i < count; i++)
    dsr_fixed_store(c->data[index], dtype, i, rng_range(lo, hi));
  if (kind == DSR_TENSOR_CONSTANT)
    t->data_q = c->data[index];
}

/* Marks tensor index as a per-channel int8 constant along axis. */
static void set_channels(node_case *c, int32_t index, int32_t axis, int32_t count) {
  dsr_tensor *t = &c->tensors[index];
  for (int32_t i = 0; i < count; i++)
    c->scales[i] = 0.01f;
  t->channel_scales = c->scales;
  t->channel_axis = axis;
  t->channel_count = count;
}

/* A requant pair whose factor maps accumulators of magnitude about typical onto an output of
 * magnitude about out_max, with a random mantissa and sign. */
static void random_pair(int32_t *pair, double typical, double out_max, int wide) {
  int exponent;
  frexp(out_max / typical, &exponent);
  int32_t shift = exponent;
  int32_t max_shift = wide ? DSQ_SHIFT_MAX_WIDE : DSQ_SHIFT_MAX;
  shift = shift < DSQ_SHIFT_MIN ? DSQ_SHIFT_MIN : (shift > max_shift ? max_shift : shift);
  int32_t m = (int32_t)(DSQ_MULTIPLIER_MIN_MAGNITUDE + (rng_u32() & 0x3fffffff));
  pair[0] = (rng_u32() & 7) == 0 ? -m : m;
  pair[1] = shift;
}

static void node_case_init(node_case *c, int32_t op, int32_t input_count) {
  memset(c, 0, sizeof *c);
  snprintf(c->model.name, sizeof c->model.name, "one node");
  c->model.tensors = c->tensors;
  c->model.tensor_count = 4;
  c->model.nodes = &c->node;
  c->model.node_count = 1;
  c->model.quantized = 1;
  snprintf(c->node.name, sizeof c->node.name, "node");
  c->node.op = op;
  c->node.input_count = input_count;
  for (int32_t i = 0; i < DSR_MAX_NODE_INPUTS; i++)
    c->node.inputs[i] = i < input_count ? i : -1;
  c->node.output = 3;
  c->node.qwords = c->qwords;
  c->qwords[0] = DSQ_TAG(op);
}

static void node_case_free(node_case *c) {
  for (int32_t i = 0; i < 4; i++)
    free(c->data[i]);
}

/* Output storage bytes of the case. */
static size_t output_bytes(const node_case *c) {
  const dsr_tensor *y = &c->tensors[3];
  return (size_t)dsr_tensor_elements(y) * dtype_bytes(y->qparams.dtype);
}

typedef int (*fast_kernel)(const dsr_model *, const dsr_node *, const void *const *, void *,
                           uint8_t *);

/* Runs the tasks of a region in reverse order on the calling thread. */
static void run_reversed(void *pool, dsr_task task, void *task_context, int32_t task_count) {
  (void)pool;
  for (int32_t i = task_count - 1; i >= 0; i--)
    task(task_context, i);
}

/*
 * Runs the case through dsr_fixed_execute_parallel with hooks of 2 and 3 workers that split
 * wherever there are units, and requires the bytes of dsr_fixed_execute_reference.
 */
static void expect_same_for_workers(node_case *c, const char *what) {
  const void *inputs[DSR_MAX_NODE_INPUTS] = {NULL, NULL, NULL, NULL};
  for (int32_t i = 0; i < c->node.input_count; i++)
    inputs[i] = c->node.inputs[i] >= 0 ? c->data[c->node.inputs[i]] : NULL;
  size_t bytes = output_bytes(c);
  uint8_t *reference = malloc(bytes), *parallel_out = malloc(bytes);
  cr_assert(reference != NULL && parallel_out != NULL);
  size_t one_bytes = dsr_fixed_scratch_bytes(&c->model, 0);
  uint8_t *one = aligned_alloc(64, (one_bytes + 64) / 64 * 64);
  cr_assert_not_null(one);
  dsr_fixed_execute_reference(&c->model, 0, inputs, reference, one, dsr_slice_none());
  for (int32_t workers = 2; workers <= 3; workers++) {
    dsr_parallel hook = {run_reversed, NULL, workers, 1};
    size_t scratch_bytes = dsr_fixed_scratch_bytes_for_workers(&c->model, 0, workers);
    uint8_t *scratch = aligned_alloc(64, (scratch_bytes + 64) / 64 * 64);
    cr_assert_not_null(scratch);
    memset(scratch, 0xcd, scratch_bytes);
    memset(parallel_out, 0x5a, bytes);
    dsr_fixed_execute_parallel(&c->model, 0, inputs, parallel_out, scratch, dsr_slice_none(),
                               &hook);
    for (size_t i = 0; i < bytes; i++) {
      cr_assert_eq(parallel_out[i], reference[i],
                   "%s, %d workers: byte %zu differs (parallel %u, reference %u)", what, workers,
                   i, parallel_out[i], reference[i]);
    }
    free(scratch);
  }

  /* Weights packed ahead, as context init does, must give the same bytes. */
  size_t packed_bytes = dsr_fixed_packed_bytes(&c->model, 0);
  if (packed_bytes > 0) {
    dsr_parallel hook = {run_reversed, NULL, 2, 1};
    size_t scratch_bytes = dsr_fixed_scratch_bytes_for_workers(&c->model, 0, 2);
    uint8_t *scratch = aligned_alloc(64, (scratch_bytes + 64) / 64 * 64);
    uint8_t *packed = aligned_alloc(64, (packed_bytes + 64) / 64 * 64);
    cr_assert(scratch != NULL && packed != NULL);
    dsr_fixed_pack_constants(&c->model, 0, packed);
    memset(parallel_out, 0x5a, bytes);
    dsr_fixed_execute_packed(&c->model, 0, inputs, parallel_out, scratch, dsr_slice_none(),
                             &hook, packed);
    for (size_t i = 0; i < bytes; i++) {
      cr_assert_eq(parallel_out[i], reference[i],
                   "%s, weights packed ahead: byte %zu differs (%u, reference %u)", what, i,
                   parallel_out[i], reference[i]);
    }
    free(scratch);
    free(packed);
  }
  free(one);
  free(reference);
  free(parallel_out);
}

/*
 * Checks the case, runs the fast kernel (which must accept it) and the reference one into
 * outputs prefilled with different bytes, and requires identical outputs. Also runs
 * dsr_fixed_execute, which must pick the same result.
 */
static void expect_identical(node_case *c, fast_kernel fast, const char *what) {
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_fixed_check_node(&c->model, 0, &err), DS_OK, "%s: %s", what, err.message);
  const void *inputs[DSR_MAX_NODE_INPUTS] = {NULL, NULL, NULL, NULL};
  for (int32_t i = 0; i < c->node.input_count; i++)
    inputs[i] = c->node.inputs[i] >= 0 ? c->data[c->node.inputs[i]] : NULL;
  size_t scratch_bytes = dsr_fixed_scratch_bytes(&c->model, 0);
  uint8_t *scratch = aligned_alloc(64, (scratch_bytes + 64) / 64 * 64);
  size_t bytes = output_bytes(c);
  uint8_t *fast_out = malloc(bytes), *executed = malloc(bytes), *reference = malloc(bytes);
  cr_assert(scratch != NULL && fast_out != NULL && executed != NULL && reference != NULL);
  memset(fast_out, 0x55, bytes);
  memset(executed, 0x33, bytes);
  memset(reference, 0xaa, bytes);
  memset(scratch, 0xcd, scratch_bytes);
  cr_assert_eq(fast(&c->model, &c->node, inputs, fast_out, scratch), 1,
               "%s: the fast kernel declined", what);
  dsr_fixed_execute(&c->model, 0, inputs, executed, scratch, dsr_slice_none());
  dsr_fixed_execute_reference(&c->model, 0, inputs, reference, scratch, dsr_slice_none());
  for (size_t i = 0; i < bytes; i++) {
    cr_assert_eq(fast_out[i], reference[i], "%s: byte %zu differs (fast %u, reference %u)", what,
                 i, fast_out[i], reference[i]);
  }
  cr_assert_eq(memcmp(executed, reference, bytes), 0, "%s: dsr_fixed_execute differs", what);
  free(scratch);
  free(fast_out);
  free(executed);
  free(reference);
  expect_same_for_workers(c, what);
}

/* ------------------------------------------------------------------ row helpers */

/* A random accumulator: often an extreme, else uniform over int32 or a small range. */
static int64_t random_accumulator(int wide) {
  static const int64_t extremes[] = {0, 1, -1, INT32_MAX, INT32_MIN, (int64_t)1 << 47,
                                     -((int64_t)1 << 47), INT64_MAX / 4, -(INT64_MAX / 4)};
  uint32_t pick = rng_u32() % 8;
  if (pick == 0)
    return extremes[rng_u32() % (wide ? 9 : 5)];
  if (pick < 4)
    return rng_range(-70000, 70000);
  int64_t v = (int32_t)rng_u32();
  return wide ? v * (int64_t)(rng_u32() % 70000) : v;
}

Test(row_helpers, requant_rows_match_scalar) {
  enum { COUNT = 64 };
  int32_t pairs[2 * COUNT], values[COUNT], acc32[COUNT];
  int64_t acc64[COUNT];
  for (int32_t trial = 0; trial < 400; trial++) {
    int wide = trial & 1, per_element = (trial >> 1) & 1;
    int32_t max_shift = wide ? DSQ_SHIFT_MAX_WIDE : DSQ_SHIFT_MAX;
    for (int32_t i = 0; i < COUNT; i++) {
      int32_t m = (int32_t)(DSQ_MULTIPLIER_MIN_MAGNITUDE + (rng_u32() & 0x3fffffff));
      pairs[2 * i] = (rng_u32() % 16) == 0 ? 0 : ((rng_u32() & 1) ? -m : m);
      /* Half of the trials keep every shift <= 0, the vectorized case. */
      pairs[2 * i + 1] = rng_range(DSQ_SHIFT_MIN, (trial >> 2) & 1 ? max_shift : 0);
      acc64[i] = random_accumulator(wide);
      acc32[i] = (int32_t)dsr_fixed_clamp64(acc64[i], INT32_MIN, INT32_MAX);
    }
    int32_t stride = per_element ? 2 : 0;
    if (wide)
      dsr_fixed_requant_row64(acc64, COUNT, pairs, stride, values);
    else
      dsr_fixed_requant_row32(acc32, COUNT, pairs, stride, values);
    for (int32_t i = 0; i < COUNT; i++) {
      const int32_t *pair = pairs + i * stride;
      int32_t expected = wide ? dsr_fixed_requant64(acc64[i], pair[0], pair[1])
                              : dsr_fixed_requant32(acc32[i], pair[0], pair[1]);
      cr_assert_eq(values[i], expected, "trial %d element %d: %d, expected %d", trial, i,
                   values[i], expected);
    }
  }
}

/* A multiplier as dsr_fixed_pair_valid accepts it: magnitude in [2^30, 2^31 - 1], either
 * sign. */
static int32_t random_multiplier(void) {
  int32_t m = (int32_t)(DSQ_MULTIPLIER_MIN_MAGNITUDE + (rng_u32() & 0x3fffffff));
  return (rng_u32() & 3) == 0 ? -m : m;
}

Test(row_helpers, add_rows_match_scalar) {
  enum { COUNT = 83 };
  int8_t q8[COUNT];
  int16_t q16[COUNT];
  int32_t ra[COUNT], rb[COUNT], row[COUNT], portable[COUNT];
  int16_t out[COUNT + 4], out_portable[COUNT + 4];
  cr_log_info("AVX-512 row kernels: %s", dsr_fixed_rows_use_avx512() ? "yes" : "no");
  for (int32_t trial = 0; trial < 600; trial++) {
    int32_t count = trial % 4 == 0 ? COUNT : rng_range(1, COUNT);
    int32_t right = trial % 32, multiplier = random_multiplier();
    int32_t zero = rng_range(-128, 127), dtype = trial & 1 ? DSR_DTYPE_I8 : DSR_DTYPE_I16;
    for (int32_t i = 0; i < count; i++) {
      q8[i] = (int8_t)rng_range(-128, 127);
      q16[i] = (int16_t)rng_range(-32768, 32767);
      /* Rescaled operands lie in [-2^30, 2^30); some at the ends. */
      ra[i] = (trial & 2) ? (int32_t)(rng_u32() % 5) - 2 + (i & 1 ? INT32_MIN / 2 : -(INT32_MIN / 2) - 3)
                          : rng_range(-(1 << 30), (1 << 30) - 1);
      rb[i] = rng_range(-(1 << 30), (1 << 30) - 1);
    }
    dsr_fixed_rescale_row_i8(q8, count, zero, 20, multiplier, right, row);
    dsr_fixed_rescale_row_i8_portable(q8, count, zero, 20, multiplier, right, portable);
    for (int32_t i = 0; i < count; i++) {
      int32_t expected = dsr_fixed_requant32((q8[i] - zero) * (1 << 20), multiplier, -right);
      cr_assert_eq(row[i], expected, "int8 rescale, right %d, element %d", right, i);
      cr_assert_eq(portable[i], expected, "portable int8 rescale, right %d", right);
    }
    dsr_fixed_rescale_row_i16(q16, count, 0, 15, multiplier, right, row);
    dsr_fixed_rescale_row_i16_portable(q16, count, 0, 15, multiplier, right, portable);
    for (int32_t i = 0; i < count; i++) {
      int32_t expected = dsr_fixed_requant32(q16[i] * (1 << 15), multiplier, -right);
      cr_assert_eq(row[i], expected, "int16 rescale, right %d, element %d", right, i);
      cr_assert_eq(portable[i], expected, "portable int16 rescale, right %d", right);
    }
    memset(out, 0x55, sizeof out);
    memset(out_portable, 0x55, sizeof out_portable);
    dsr_fixed_add_store_row(ra, rb, count, multiplier, right, zero, dtype, out, 3);
    dsr_fixed_add_store_row_portable(ra, rb, count, multiplier, right, zero, dtype, out_portable,
                                     3);
    int32_t lo, hi;
    dsr_fixed_dtype_range(dtype, &lo, &hi);
    for (int32_t i = 0; i < count; i++) {
      int64_t value = zero + (int64_t)dsr_fixed_requant32(ra[i] + rb[i], multiplier, -right);
      int32_t expected = (int32_t)dsr_fixed_clamp64(value, lo, hi);
      cr_assert_eq(dsr_fixed_load(out, dtype, 3 + i), expected, "sum store, right %d, element %d",
                   right, i);
      cr_assert_eq(dsr_fixed_load(out_portable, dtype, 3 + i), expected,
                   "portable sum store, right %d", right);
    }
    cr_assert_eq(dsr_fixed_load(out, dtype, 2), dsr_fixed_load(out_portable, dtype, 2),
                 "the store wrote before its offset");
    cr_assert_eq(dsr_fixed_load(out, dtype, 3 + count), dsr_fixed_load(out_portable, dtype, 3 + count),
                 "the store wrote past its row");
  }
}

Test(row_helpers, store_row_saturates_like_store) {
  int32_t values[6] = {INT32_MAX, INT32_MIN, 0, 200, -200, 40000};
  for (int32_t dtype = DSR_DTYPE_I8; dtype <= DSR_DTYPE_I32; dtype++) {
    int32_t row[8], expected[8];
    memset(row, 0, sizeof row);
    memset(expected, 0, sizeof expected);
    dsr_fixed_store_row(values, 6, 100, dtype, row, 1);
    for (int64_t i = 0; i < 6; i++)
      dsr_fixed_store(expected, dtype, i + 1, 100 + (int64_t)values[i]);
    cr_assert_eq(memcmp(row, expected, sizeof row), 0, "dtype %d", dtype);
  }
}

/* ------------------------------------------------------------------ convolutions */

typedef struct conv_params {
  int32_t batch, cin, height, width, cout, kernel, stride, pad, dilation, group;
  int32_t x_dtype, y_dtype, bias;
} conv_params;

static void conv_case(const conv_params *p, const char *what) {
  node_case c;
  node_case_init(&c, DSR_OP_CONV2D, p->bias ? 3 : 2);
  int32_t extent = (p->kernel - 1) * p->dilation + 1;
  int32_t out_h = (p->height + 2 * p->pad - extent) / p->stride + 1;
  int32_t out_w = (p->width + 2 * p->pad - extent) / p->stride + 1;
  int32_t x_dims[4] = {p->batch, p->cin, p->height, p->width};
  int32_t w_dims[4] = {p->cout, p->cin / p->group, p->kernel, p->kernel};
  int32_t b_dims[1] = {p->cout};
  int32_t y_dims[4] = {p->batch, p->cout, out_h, out_w};
  set_tensor(&c, 0, DSR_TENSOR_INPUT, 4, x_dims, p->x_dtype, rng_range(-128, 127));
  set_tensor(&c, 1, DSR_TENSOR_CONSTANT, 4, w_dims, DSR_DTYPE_I8, 0);
  set_channels(&c, 1, 0, p->cout);
  set_tensor(&c, 2, DSR_TENSOR_CONSTANT, 1, b_dims, DSR_DTYPE_I32, 0);
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, 4, y_dims, p->y_dtype, rng_range(-128, 127));
  c.node.attrs.conv = (dsr_conv_attrs){.stride = {p->stride, p->stride},
                                       .pad = {p->pad, p->pad, p->pad, p->pad},
                                       .dilation = {p->dilation, p->dilation},
                                       .group = p->group};
  int wide = p->x_dtype != DSR_DTYPE_I8;
  double taps = (double)(p->cin / p->group) * p->kernel * p->kernel;
  double typical = sqrt(taps) * 74.0 * (wide ? 18000.0 : 147.0);
  c.qwords[1] = p->cout;
  for (int32_t oc = 0; oc < p->cout; oc++)
    random_pair(c.qwords + 2 + 2 * oc, typical, p->y_dtype == DSR_DTYPE_I8 ? 100.0 : 25000.0,
                wide);
  c.node.qword_count = 2 + 2 * p->cout;
  expect_identical(&c, dsr_fixed_fast_conv2d, what);
  node_case_free(&c);
}

#define I8 DSR_DTYPE_I8
#define I16 DSR_DTYPE_I16

Test(fast_conv, pointwise_matches_reference) {
  conv_case(&(conv_params){1, 24, 8, 8, 40, 1, 1, 0, 1, 1, I8, I8, 1}, "int8 pointwise");
  conv_case(&(conv_params){2, 24, 5, 7, 16, 1, 1, 0, 1, 1, I8, I16, 0}, "int8 pointwise, batch 2");
  conv_case(&(conv_params){1, 32, 8, 8, 24, 1, 1, 0, 1, 1, I16, I8, 1}, "int16 pointwise");
  conv_case(&(conv_params){1, 300, 4, 4, 8, 1, 1, 0, 1, 1, I16, I16, 1},
            "int16 pointwise over more than one 32-bit chunk");
}

Test(fast_conv, depthwise_matches_reference) {
  conv_case(&(conv_params){1, 16, 9, 9, 16, 3, 1, 1, 1, 16, I8, I8, 1}, "int8 depthwise 3x3");
  conv_case(&(conv_params){1, 8, 10, 6, 8, 5, 1, 2, 1, 8, I16, I8, 1}, "int16 depthwise 5x5");
  conv_case(&(conv_params){1, 8, 9, 9, 16, 3, 2, 1, 1, 8, I8, I8, 0},
            "depthwise with two outputs per channel, strided");
  conv_case(&(conv_params){1, 8, 9, 10, 8, 3, 1, 2, 2, 8, I8, I8, 1}, "int8 depthwise dilated");
  conv_case(&(conv_params){1, 6, 11, 11, 6, 3, 3, 2, 2, 6, I8, I16, 1},
            "int8 depthwise dilated and strided");
}

Test(fast_conv, strided_grouped_padded_match_reference) {
  conv_case(&(conv_params){1, 3, 16, 16, 12, 3, 2, 1, 1, 1, I8, I8, 1}, "int8 strided 3x3 stem");
  conv_case(&(conv_params){1, 3, 15, 15, 8, 4, 4, 0, 1, 1, I8, I8, 1}, "patch embedding 4x4");
  conv_case(&(conv_params){1, 12, 9, 11, 12, 3, 1, 2, 2, 3, I16, I16, 0}, "grouped dilated");
  conv_case(&(conv_params){2, 8, 7, 7, 6, 3, 2, 2, 1, 2, I16, I8, 1}, "int16 grouped strided");
  conv_case(&(conv_params){1, 40, 6, 6, 4, 3, 1, 1, 1, 1, I16, I16, 1},
            "int16 3x3 over more than one 32-bit chunk");
  conv_case(&(conv_params){1, 40, 5, 5, 6, 3, 1, 1, 1, 1, I8, I8, 1},
            "int8 3x3 with channels left after blocks of 4");
  conv_case(&(conv_params){1, 16, 6, 6, 14, 3, 1, 1, 1, 2, I8, I16, 0},
            "int8 grouped 3x3 with channels left after blocks of 4");
  conv_case(&(conv_params){1, 10, 13, 12, 7, 3, 1, 2, 2, 1, I8, I8, 1},
            "int8 dilated 3x3 as a packed product");
  conv_case(&(conv_params){2, 36, 9, 9, 53, 1, 1, 0, 1, 1, I8, I8, 1},
            "int8 pointwise over several row blocks and panels");
}

Test(fast_conv, depthwise_on_small_maps_matches_reference) {
  conv_case(&(conv_params){1, 40, 7, 7, 40, 3, 1, 1, 1, 40, I8, I8, 1}, "int8 depthwise 7x7 map");
  conv_case(&(conv_params){2, 12, 5, 9, 12, 3, 1, 1, 1, 12, I16, I16, 1},
            "int16 depthwise 5x9 map, batch 2");
  conv_case(&(conv_params){1, 6, 4, 4, 6, 5, 1, 2, 1, 6, I8, I8, 0},
            "int8 depthwise 5x5 on a map smaller than the padded kernel");
}

Test(fast_conv, extreme_values_match_reference) {
  /* Inputs at both ends of their range and weights of -128 reach the largest terms. */
  for (int32_t k = 0; k < 2; k++) {
    node_case c;
    int32_t dtype = k == 0 ? I8 : I16;
    node_case_init(&c, DSR_OP_CONV2D, 3);
    int32_t x_dims[4] = {1, 600, 2, 2}, w_dims[4] = {2, 600, 1, 1}, b_dims[1] = {2};
    int32_t y_dims[4] = {1, 2, 2, 2};
    set_tensor(&c, 0, DSR_TENSOR_INPUT, 4, x_dims, dtype, 127);
    set_tensor(&c, 1, DSR_TENSOR_CONSTANT, 4, w_dims, I8, 0);
    set_channels(&c, 1, 0, 2);
    set_tensor(&c, 2, DSR_TENSOR_CONSTANT, 1, b_dims, DSR_DTYPE_I32, 0);
    set_tensor(&c, 3, DSR_TENSOR_OUTPUT, 4, y_dims, I16, 0);
    for (int32_t i = 0; i < 2400; i++)
      dsr_fixed_store(c.data[0], dtype, i, dtype == I8 ? -128 : -32768);
    memset(c.data[1], 0x80, 1200); /* every weight -128 */
    c.node.attrs.conv = (dsr_conv_attrs){.stride = {1, 1}, .dilation = {1, 1}, .group = 1};
    c.qwords[1] = 2;
    for (int32_t oc = 0; oc < 2; oc++) {
      c.qwords[2 + 2 * oc] = 1 << 30;
      c.qwords[3 + 2 * oc] = -16; /* factor 2^-17: 600 * 2^22 lands inside int16 */
    }
    c.node.qword_count = 6;
    expect_identical(&c, dsr_fixed_fast_conv2d, k == 0 ? "int8 extremes" : "int16 extremes");
    node_case_free(&c);
  }
}

Test(fast_conv, unusual_attributes_fall_back_to_reference) {
  /* Stride 0 is not rejected at plan time; the fast kernel declines it and needs no scratch,
   * and dsr_fixed_execute then gives the reference output. */
  node_case c;
  node_case_init(&c, DSR_OP_CONV2D, 2);
  int32_t x_dims[4] = {1, 4, 5, 5}, w_dims[4] = {3, 4, 3, 3}, y_dims[4] = {1, 3, 3, 3};
  set_tensor(&c, 0, DSR_TENSOR_INPUT, 4, x_dims, I8, 3);
  set_tensor(&c, 1, DSR_TENSOR_CONSTANT, 4, w_dims, I8, 0);
  set_channels(&c, 1, 0, 3);
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, 4, y_dims, I8, 0);
  c.node.attrs.conv = (dsr_conv_attrs){.stride = {0, 1}, .dilation = {1, 1}, .group = 1};
  c.qwords[1] = 3;
  for (int32_t oc = 0; oc < 3; oc++)
    random_pair(c.qwords + 2 + 2 * oc, 2000.0, 100.0, 0);
  c.node.qword_count = 8;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_fixed_check_node(&c.model, 0, &err), DS_OK, "%s", err.message);
  cr_expect_eq(dsr_fixed_fast_conv2d_scratch_bytes(&c.model, &c.node), 0);
  const void *inputs[DSR_MAX_NODE_INPUTS] = {c.data[0], c.data[1], NULL, NULL};
  int8_t fast[27], reference[27];
  memset(fast, 0x55, sizeof fast);
  memset(reference, 0x2a, sizeof reference);
  cr_expect_eq(dsr_fixed_fast_conv2d(&c.model, &c.node, inputs, fast, NULL), 0);
  cr_expect_eq(fast[0], 0x55, "a declining kernel must not write");
  dsr_fixed_execute(&c.model, 0, inputs, fast, NULL, dsr_slice_none());
  dsr_fixed_execute_reference(&c.model, 0, inputs, reference, NULL, dsr_slice_none());
  cr_expect_eq(memcmp(fast, reference, sizeof fast), 0);
  node_case_free(&c);
}

/* ------------------------------------------------------------------ matrix products */

typedef struct matmul_params {
  int32_t a_rank, a_dims[4], b_rank, b_dims[4], y_rank, y_dims[4];
  int32_t kind, a_dtype, b_dtype, y_dtype;
} matmul_params;

static void matmul_case(const matmul_params *p, const char *what) {
  node_case c;
  node_case_init(&c, DSR_OP_MATMUL, 2);
  int constant_a = p->kind == DSQ_MATMUL_CONSTANT_A, constant_b = p->kind == DSQ_MATMUL_CONSTANT_B;
  set_tensor(&c, 0, constant_a ? DSR_TENSOR_CONSTANT : DSR_TENSOR_INPUT, p->a_rank, p->a_dims,
             p->a_dtype, rng_range(-128, 127));
  set_tensor(&c, 1, constant_b ? DSR_TENSOR_CONSTANT : DSR_TENSOR_ACTIVATION, p->b_rank,
             p->b_dims, p->b_dtype, rng_range(-128, 127));
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, p->y_rank, p->y_dims, p->y_dtype, rng_range(-128, 127));
  int32_t m = p->y_dims[p->y_rank - 2], n = p->y_dims[p->y_rank - 1];
  int32_t k = p->a_dims[p->a_rank - 1];
  int wide = p->a_dtype != I8 || p->b_dtype != I8;
  double typical = sqrt((double)k) * (p->a_dtype == I8 ? 147.0 : 18000.0) *
                   (p->b_dtype == I8 ? 147.0 : 18000.0) / 2.0;
  double out_max = p->y_dtype == I8 ? 100.0 : 25000.0;
  c.qwords[1] = p->kind;
  int32_t pairs = 1;
  if (constant_b) {
    set_channels(&c, 1, p->b_rank - 1, n);
    c.qwords[2] = pairs = n;
  } else if (constant_a) {
    set_channels(&c, 0, p->a_rank - 2, m);
    c.qwords[2] = pairs = m;
  }
  int32_t first = p->kind == DSQ_MATMUL_ACTIVATIONS ? 2 : 3;
  for (int32_t i = 0; i < pairs; i++)
    random_pair(c.qwords + first + 2 * i, typical, out_max, wide);
  c.node.qword_count = first + 2 * pairs;
  expect_identical(&c, dsr_fixed_fast_matmul, what);
  node_case_free(&c);
}

#define ACT DSQ_MATMUL_ACTIVATIONS
#define CB DSQ_MATMUL_CONSTANT_B
#define CA DSQ_MATMUL_CONSTANT_A

Test(fast_matmul, constant_operand_matches_reference) {
  matmul_case(&(matmul_params){3, {2, 9, 20}, 2, {20, 12}, 3, {2, 9, 12}, CB, I8, I8, I8},
              "int8 x constant B");
  matmul_case(&(matmul_params){2, {7, 600}, 2, {600, 5}, 2, {7, 5}, CB, I16, I8, I16},
              "int16 x constant B over more than one 32-bit chunk");
  matmul_case(&(matmul_params){2, {6, 10}, 3, {3, 10, 4}, 3, {3, 6, 4}, CA, I8, I16, I8},
              "constant A x int16, A broadcast");
  matmul_case(&(matmul_params){2, {6, 10}, 2, {10, 4}, 2, {6, 4}, CA, I8, I8, I16},
              "constant A x int8");
}

Test(fast_matmul, packed_products_match_reference) {
  matmul_case(&(matmul_params){3, {2, 50, 37}, 2, {37, 40}, 3, {2, 50, 40}, CB, I8, I8, I8},
              "int8 x constant B over row blocks, a partial panel and an odd reduction");
  matmul_case(&(matmul_params){3, {1, 100, 24}, 2, {24, 33}, 3, {1, 100, 33}, CB, I8, I8, I16},
              "int8 x constant B, one batch split by rows");
  matmul_case(&(matmul_params){2, {20, 13}, 3, {3, 13, 18}, 3, {3, 20, 18}, CA, I8, I8, I8},
              "constant A x int8 as packed panels of B");
  matmul_case(&(matmul_params){3, {1, 7, 30}, 3, {1, 30, 17}, 3, {1, 7, 17}, ACT, I8, I8, I8},
              "int8 x int8, one batch of few rows split by panels");
  matmul_case(&(matmul_params){3, {1, 1, 40}, 2, {40, 20}, 3, {1, 1, 20}, CB, I8, I8, I8},
              "int8 single row x constant B");
  matmul_case(&(matmul_params){4, {1, 6, 49, 30}, 4, {1, 6, 30, 1}, 4, {1, 6, 49, 1}, ACT, I8,
                               I8, I8},
              "int8 matrix x vector per batch (neighbourhood attention scores)");
  matmul_case(&(matmul_params){2, {21, 8}, 3, {2, 8, 1}, 3, {2, 21, 1}, CA, I8, I8, I16},
              "constant A x int8 vector");
  matmul_case(&(matmul_params){3, {2, 6, 10}, 3, {1, 10, 18}, 3, {2, 6, 18}, CA, I8, I8, I8},
              "constant A with batches x one shared B");
  matmul_case(&(matmul_params){3, {3, 7, 12}, 2, {12, 20}, 3, {3, 7, 20}, CB, I8, I8, I8},
              "batches sharing a constant B as one product");
}

/* ------------------------------------------------------------------ GEMM */

static void gemm_case(int32_t m, int32_t k, int32_t n, int trans_b, int32_t y_dtype,
                      const char *what) {
  node_case c;
  node_case_init(&c, DSR_OP_GEMM, 3);
  int32_t a_dims[2] = {m, k}, w_dims[2] = {trans_b ? n : k, trans_b ? k : n}, b_dims[1] = {n};
  int32_t y_dims[2] = {m, n};
  set_tensor(&c, 0, DSR_TENSOR_INPUT, 2, a_dims, I8, rng_range(-128, 127));
  set_tensor(&c, 1, DSR_TENSOR_CONSTANT, 2, w_dims, I8, 0);
  set_channels(&c, 1, trans_b ? 0 : 1, n);
  set_tensor(&c, 2, DSR_TENSOR_CONSTANT, 1, b_dims, DSR_DTYPE_I32, 0);
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, 2, y_dims, y_dtype, rng_range(-128, 127));
  c.node.attrs.gemm = (dsr_gemm_attrs){.alpha = 1.0f, .beta = 1.0f, .trans_b = trans_b};
  double typical = sqrt((double)k) * 147.0 * 74.0;
  c.qwords[1] = n;
  for (int32_t j = 0; j < n; j++)
    random_pair(c.qwords + 2 + 2 * j, typical, y_dtype == I8 ? 100.0 : 25000.0, 0);
  c.node.qword_count = 2 + 2 * n;
  expect_identical(&c, dsr_fixed_fast_gemm, what);
  node_case_free(&c);
}

Test(fast_gemm, packed_product_with_bias_matches_reference) {
  gemm_case(5, 37, 21, 0, I8, "int8 GEMM, few rows");
  gemm_case(61, 16, 40, 1, I8, "int8 GEMM, transposed weight, rows past one block");
  gemm_case(1, 100, 10, 1, I16, "int8 GEMM, one row into int16");
}

Test(fast_matmul, short_reductions_match_reference) {
  /* n >= k: output rows are accumulated rather than dot products. */
  matmul_case(&(matmul_params){4, {1, 2, 16, 8}, 4, {1, 2, 8, 32}, 4, {1, 2, 16, 32}, ACT, I8, I8, I16},
              "int8 attention scores");
  matmul_case(&(matmul_params){3, {2, 4, 6}, 3, {2, 6, 9}, 3, {2, 4, 9}, ACT, I16, I16, I16},
              "int16 x int16 rows");
  matmul_case(&(matmul_params){2, {3, 300}, 2, {300, 300}, 2, {3, 300}, ACT, I16, I8, I8},
              "int16 x int8 rows over more than one 32-bit chunk");
  matmul_case(&(matmul_params){3, {2, 4, 8}, 2, {8, 24}, 3, {2, 4, 24}, CB, I16, I8, I8},
              "int16 x constant B rows");
  matmul_case(&(matmul_params){2, {5, 4}, 2, {4, 7}, 2, {5, 7}, CA, I8, I8, I8},
              "constant A rows");
  matmul_case(&(matmul_params){3, {2, 6, 7}, 3, {2, 7, 9}, 3, {2, 6, 9}, ACT, I8, I8, I8},
              "int8 rows with terms left after blocks of 4");
}

Test(fast_matmul, activations_match_reference) {
  matmul_case(&(matmul_params){4, {2, 3, 8, 16}, 4, {2, 3, 16, 8}, 4, {2, 3, 8, 8}, ACT, I8, I8, I8},
              "int8 attention product");
  matmul_case(&(matmul_params){3, {4, 8, 16}, 3, {4, 16, 8}, 3, {4, 8, 8}, ACT, I16, I8, I16},
              "int16 x int8");
  matmul_case(&(matmul_params){3, {2, 5, 12}, 3, {2, 12, 7}, 3, {2, 5, 7}, ACT, I16, I16, I8},
              "int16 x int16");
  matmul_case(&(matmul_params){4, {2, 1, 5, 6}, 3, {3, 6, 4}, 4, {2, 3, 5, 4}, ACT, I8, I8, I8},
              "batches broadcast on both sides");
  matmul_case(&(matmul_params){3, {3, 5, 6}, 2, {6, 4}, 3, {3, 5, 4}, ACT, I8, I16, I16},
              "rank-2 B shared by every batch");
}

Test(fast_matmul, int8_orders_match_reference) {
  /* One output row: B's int8 rows are read in place, with terms left after blocks of 4. */
  matmul_case(&(matmul_params){4, {2, 3, 1, 49}, 4, {2, 3, 49, 32}, 4, {2, 3, 1, 32}, ACT,
                               I8, I8, I8},
              "neighbourhood attention context, one query per batch");
  matmul_case(&(matmul_params){2, {1, 13}, 2, {13, 9}, 2, {1, 9}, CB, I8, I8, I8},
              "one row times constant B");
  /* Fewer than 8 columns: A's int8 rows in place; one requant pair gives a block store. */
  matmul_case(&(matmul_params){4, {2, 3, 49, 32}, 4, {2, 3, 32, 1}, 4, {2, 3, 49, 1}, ACT,
                               I8, I8, I8},
              "neighbourhood attention scores, one column per batch");
  matmul_case(&(matmul_params){3, {2, 6, 20}, 3, {2, 20, 3}, 3, {2, 6, 3}, ACT, I8, I8, I16},
              "three columns per batch");
  matmul_case(&(matmul_params){2, {5, 40}, 3, {2, 40, 6}, 3, {2, 5, 6}, CA, I8, I8, I8},
              "constant A, six columns, per-row pairs");
  matmul_case(&(matmul_params){2, {4, 30}, 2, {30, 7}, 2, {4, 7}, CB, I8, I8, I8},
              "constant B, seven columns, per-column pairs");
  /* Eight columns or more: dot products of four columns at once, and the columns left. */
  matmul_case(&(matmul_params){3, {2, 9, 70}, 2, {70, 11}, 3, {2, 9, 11}, CB, I8, I8, I8},
              "four-column dot products with three columns left");
  matmul_case(&(matmul_params){3, {3, 5, 33}, 3, {3, 33, 16}, 3, {3, 5, 16}, ACT, I8, I8, I8},
              "four-column dot products of activations");
}

/* ------------------------------------------------------------------ additions */

typedef struct additive_params {
  int32_t op, a_rank, a_dims[4], b_rank, b_dims[4], y_rank, y_dims[4];
  int32_t a_dtype, b_dtype, y_dtype;
} additive_params;

/* Operand pair choices of additive_case_with, as bit flags. */
enum {
  A_HALVING = 1,    /* operand a gets the halving pair (2^30, 0), as the quantizer does */
  B_HALVING = 2,    /* the same for operand b */
  A_SHIFT_ZERO = 4, /* operand a gets a pair of shift 0 that does not halve */
  B_SHIFT_ZERO = 8  /* the same for operand b */
};

/* An ADD or SUB case with the operand pairs chosen by halving (the flags above); a nonzero
 * out_shift replaces the output pair's shift. */
static void additive_case_with(const additive_params *p, int32_t halving, int32_t out_shift,
                               const char *what) {
  node_case c;
  node_case_init(&c, p->op, 2);
  set_tensor(&c, 0, DSR_TENSOR_INPUT, p->a_rank, p->a_dims, p->a_dtype, rng_range(-128, 127));
  set_tensor(&c, 1, DSR_TENSOR_ACTIVATION, p->b_rank, p->b_dims, p->b_dtype,
             rng_range(-128, 127));
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, p->y_rank, p->y_dims, p->y_dtype, rng_range(-128, 127));
  int narrow = p->a_dtype == I8 && p->b_dtype == I8;
  int32_t left = narrow ? DSQ_ADD_SHIFT_NARROW : DSQ_ADD_SHIFT_WIDE;
  c.qwords[1] = left;
  for (int32_t i = 0; i < 2; i++) {
    c.qwords[2 + 2 * i] = (int32_t)(DSQ_MULTIPLIER_MIN_MAGNITUDE + (rng_u32() & 0x3fffffff));
    c.qwords[3 + 2 * i] = -rng_range(1, 3);
  }
  for (int32_t i = 0; i < 2; i++) {
    if (halving & (i == 0 ? A_HALVING : B_HALVING)) {
      c.qwords[2 + 2 * i] = 1 << 30;
      c.qwords[3 + 2 * i] = 0;
    }
    if (halving & (i == 0 ? A_SHIFT_ZERO : B_SHIFT_ZERO)) {
      c.qwords[2 + 2 * i] = (1 << 30) + 1 + (int32_t)(rng_u32() & 0xffff);
      c.qwords[3 + 2 * i] = 0;
    }
  }
  double operand = (narrow ? 128.0 : 20000.0) * (double)(1 << left) / 4.0;
  random_pair(c.qwords + 6, operand, p->y_dtype == I8 ? 100.0 : 25000.0, 0);
  if (out_shift != 0)
    c.qwords[7] = out_shift;
  c.node.qword_count = 8;
  expect_identical(&c, dsr_fixed_fast_binary, what);
  node_case_free(&c);
}

static void additive_case(const additive_params *p, const char *what) {
  additive_case_with(p, 0, 0, what);
}

#define ADD DSR_OP_ADD
#define SUB DSR_OP_SUB

Test(fast_binary, same_shape_matches_reference) {
  additive_case(&(additive_params){ADD, 4, {1, 8, 6, 6}, 4, {1, 8, 6, 6}, 4, {1, 8, 6, 6},
                                   I16, I16, I16},
                "int16 + int16");
  additive_case(&(additive_params){SUB, 3, {2, 5, 7}, 3, {2, 5, 7}, 3, {2, 5, 7}, I8, I16, I8},
                "int8 - int16");
  additive_case(&(additive_params){ADD, 2, {40, 40}, 2, {40, 40}, 2, {40, 40}, I8, I8, I8},
                "int8 + int8 longer than one row piece");
}

Test(fast_binary, halving_pairs_match_reference) {
  additive_case_with(&(additive_params){ADD, 4, {1, 16, 9, 9}, 4, {1, 16, 9, 9}, 4,
                                        {1, 16, 9, 9}, I8, I8, I8},
                     A_HALVING, 0, "int8 residual with a halving pair");
  additive_case_with(&(additive_params){SUB, 4, {1, 16, 9, 9}, 4, {1, 16, 9, 9}, 4,
                                        {1, 16, 9, 9}, I16, I8, I16},
                     A_HALVING, 0, "int16 - int8 with a halving pair");
  additive_case_with(&(additive_params){ADD, 1, {48}, 4, {1, 7, 7, 48}, 4, {1, 7, 7, 48}, I16,
                                        I8, I8},
                     A_HALVING, 0, "bias row over a map");
  additive_case_with(&(additive_params){ADD, 2, {50, 40}, 2, {50, 40}, 2, {50, 40}, I16, I16,
                                        I16},
                     A_HALVING, 0, "int16 pieces of a long row");
}

Test(fast_binary, row_layouts_match_reference) {
  /* Rows with a tail after the groups of 16 of the AVX-512 kernels, operands repeated over
   * the rows (kept in scratch), operand pairs of shift 0 and rows of two pieces. */
  additive_case_with(&(additive_params){ADD, 2, {7, 53}, 2, {7, 53}, 2, {7, 53}, I8, I8, I8},
                     A_HALVING, 0, "int8 residual rows with a tail");
  additive_case_with(&(additive_params){SUB, 2, {7, 53}, 2, {7, 53}, 2, {7, 53}, I8, I16, I16},
                     B_HALVING, 0, "int8 - int16 rows with a tail");
  additive_case_with(&(additive_params){SUB, 2, {9, 40}, 1, {40}, 2, {9, 40}, I8, I16, I8},
                     A_HALVING, 0, "minus a row repeated over the rows");
  additive_case_with(&(additive_params){SUB, 3, {2, 9, 40}, 3, {2, 1, 40}, 3, {2, 9, 40}, I16,
                                        I8, I16},
                     0, 0, "minus a row repeated over one axis");
  additive_case_with(&(additive_params){ADD, 2, {5, 48}, 2, {5, 48}, 2, {5, 48}, I16, I8, I8},
                     A_SHIFT_ZERO, 0, "an operand pair of shift 0");
  additive_case_with(&(additive_params){SUB, 2, {5, 48}, 2, {5, 1}, 2, {5, 48}, I8, I8, I8},
                     B_SHIFT_ZERO | A_HALVING, 0, "a column of shift 0");
  additive_case_with(&(additive_params){ADD, 2, {3, 2000}, 2, {3, 2000}, 2, {3, 2000}, I8, I8,
                                        I16},
                     A_HALVING, 0, "rows of two pieces");
  additive_case_with(&(additive_params){SUB, 2, {3, 2000}, 1, {2000}, 2, {3, 2000}, I8, I8, I8},
                     B_HALVING, 0, "a repeated row of two pieces");
}

Test(fast_binary, saturating_output_pairs_match_reference) {
  /* A positive output shift can saturate in the requantization: the general path. */
  additive_case_with(&(additive_params){ADD, 2, {9, 70}, 2, {9, 70}, 2, {9, 70}, I8, I8, I8},
                     A_HALVING, 3, "int8 sum with a left shift");
  additive_case_with(&(additive_params){SUB, 2, {9, 70}, 1, {70}, 2, {9, 70}, I16, I16, I16}, 0,
                     1, "int16 difference with a left shift");
  additive_case_with(&(additive_params){ADD, 2, {3, 5}, 2, {3, 5}, 2, {3, 5}, I8, I16, I8}, 0,
                     -31, "the largest right shift");
}

Test(fast_binary, broadcasts_match_reference) {
  additive_case(&(additive_params){ADD, 4, {1, 8, 5, 5}, 3, {8, 1, 1}, 4, {1, 8, 5, 5},
                                   I16, I16, I8},
                "per-channel int16 operand");
  additive_case(&(additive_params){SUB, 1, {6}, 3, {3, 4, 6}, 3, {3, 4, 6}, I16, I8, I16},
                "row vector minus int8");
  additive_case(&(additive_params){ADD, 3, {3, 1, 6}, 3, {1, 4, 1}, 3, {3, 4, 6}, I8, I16, I16},
                "outer sum");
  additive_case(&(additive_params){ADD, 2, {1, 1}, 2, {30, 50}, 2, {30, 50}, I16, I16, I16},
                "scalar operand");
  additive_case(&(additive_params){SUB, 2, {8, 1}, 2, {8, 10}, 2, {8, 10}, I8, I8, I8},
                "int8 column broadcast along rows");
}

/* An elementwise MUL: [tag, pair] with a factor for products of typical operands. */
static void multiply_case(const additive_params *p, const char *what) {
  node_case c;
  node_case_init(&c, DSR_OP_MUL, 2);
  set_tensor(&c, 0, DSR_TENSOR_INPUT, p->a_rank, p->a_dims, p->a_dtype, rng_range(-128, 127));
  set_tensor(&c, 1, DSR_TENSOR_ACTIVATION, p->b_rank, p->b_dims, p->b_dtype,
             rng_range(-128, 127));
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, p->y_rank, p->y_dims, p->y_dtype, rng_range(-128, 127));
  double typical = (p->a_dtype == I8 ? 100.0 : 15000.0) * (p->b_dtype == I8 ? 100.0 : 15000.0);
  random_pair(c.qwords + 1, typical, p->y_dtype == I8 ? 100.0 : 25000.0, 0);
  c.node.qword_count = 3;
  expect_identical(&c, dsr_fixed_fast_binary, what);
  node_case_free(&c);
}

#define MUL DSR_OP_MUL

Test(fast_binary, products_match_reference) {
  multiply_case(&(additive_params){MUL, 4, {1, 8, 6, 6}, 4, {1, 8, 6, 6}, 4, {1, 8, 6, 6},
                                   I16, I16, I16},
                "int16 * int16");
  multiply_case(&(additive_params){MUL, 3, {2, 5, 7}, 1, {7}, 3, {2, 5, 7}, I8, I16, I8},
                "int8 * broadcast int16 row");
  multiply_case(&(additive_params){MUL, 2, {6, 1}, 2, {6, 9}, 2, {6, 9}, I8, I8, I16},
                "int8 column * int8");
}

/* ------------------------------------------------------------------ transposes */

static int fast_transpose(const dsr_model *model, const dsr_node *node, const void *const *in,
                          void *out, uint8_t *scratch) {
  (void)scratch;
  return dsr_fixed_fast_transpose(model, node, in, out);
}

static void transpose_case(int32_t rank, const int32_t *dims, const int32_t *perm, int32_t dtype,
                           const char *what) {
  node_case c;
  node_case_init(&c, DSR_OP_TRANSPOSE, 1);
  int32_t y_dims[DSR_MAX_RANK];
  for (int32_t k = 0; k < rank; k++)
    y_dims[k] = dims[perm[k]];
  set_tensor(&c, 0, DSR_TENSOR_INPUT, rank, dims, dtype, 5);
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, rank, y_dims, dtype, 5);
  memcpy(c.node.attrs.transpose.perm, perm, sizeof(int32_t) * (size_t)rank);
  c.node.qword_count = 1;
  expect_identical(&c, fast_transpose, what);
  node_case_free(&c);
}

Test(fast_transpose, permutations_match_reference) {
  transpose_case(4, (int32_t[]){1, 6, 5, 7}, (int32_t[]){0, 2, 3, 1}, I8, "NCHW to NHWC");
  transpose_case(4, (int32_t[]){1, 5, 7, 6}, (int32_t[]){0, 3, 1, 2}, I16, "NHWC to NCHW");
  transpose_case(3, (int32_t[]){4, 3, 5}, (int32_t[]){2, 1, 0}, I16, "reversed axes");
  transpose_case(2, (int32_t[]){3, 9}, (int32_t[]){0, 1}, I8, "identity");
  transpose_case(1, (int32_t[]){11}, (int32_t[]){0}, I8, "rank 1");
  transpose_case(4, (int32_t[]){1, 37, 19, 21}, (int32_t[]){0, 2, 3, 1}, I16,
                 "NCHW to NHWC in partial tiles");
  transpose_case(4, (int32_t[]){2, 17, 18, 40}, (int32_t[]){0, 3, 1, 2}, I8,
                 "NHWC to NCHW over two images");
  transpose_case(4, (int32_t[]){6, 9, 3, 32}, (int32_t[]){0, 2, 1, 3}, I8, "head split rows");
  transpose_case(4, (int32_t[]){5, 7, 3, 32}, (int32_t[]){0, 2, 1, 3}, I16,
                 "head split rows of 64 bytes");
  transpose_case(4, (int32_t[]){5, 7, 3, 16}, (int32_t[]){0, 2, 1, 3}, I8,
                 "head split rows of 16 bytes");
  transpose_case(4, (int32_t[]){5, 7, 3, 11}, (int32_t[]){0, 2, 1, 3}, I16,
                 "head split rows of 22 bytes");
  transpose_case(5, (int32_t[]){1, 49, 3, 2, 32}, (int32_t[]){2, 0, 3, 1, 4}, I8,
                 "query, key and value split");
  transpose_case(6, (int32_t[]){1, 3, 2, 7, 3, 20}, (int32_t[]){0, 5, 1, 3, 2, 4}, I8,
                 "window partition");
  transpose_case(4, (int32_t[]){5, 1, 7, 1}, (int32_t[]){3, 2, 1, 0}, I16, "unit axes only");
  transpose_case(3, (int32_t[]){4, 6, 1}, (int32_t[]){2, 1, 0}, I8,
                 "an input whose last axis has size 1");
  transpose_case(2, (int32_t[]){33, 17}, (int32_t[]){1, 0}, I16, "int16 matrix");
}

/* ------------------------------------------------------------------ gathers and reshapes */

static int fast_gather(const dsr_model *model, const dsr_node *node, const void *const *in,
                       void *out, uint8_t *scratch) {
  (void)scratch;
  return dsr_fixed_fast_gather_parallel(model, node, in, out, NULL);
}

/* Index patterns of gather_case. */
enum { RUNS, RANDOM, ROTATED };

/* A GATHER of index_count indices along axis of an input of dims: indices in runs of up to 7
 * consecutive values (local windows), uniformly random, or a rotation of the whole axis. */
static void gather_case(int32_t rank, const int32_t *dims, int32_t axis, int32_t index_count,
                        int32_t pattern, int32_t dtype, const char *what) {
  node_case c;
  node_case_init(&c, DSR_OP_GATHER, 1);
  int32_t y_dims[DSR_MAX_RANK];
  memcpy(y_dims, dims, sizeof(int32_t) * (size_t)rank);
  y_dims[axis] = index_count;
  set_tensor(&c, 0, DSR_TENSOR_INPUT, rank, dims, dtype, 7);
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, rank, y_dims, dtype, 7);
  static int32_t qwords[3 + 4096];
  cr_assert_leq(index_count, 4096);
  qwords[0] = DSQ_TAG(DSR_OP_GATHER);
  qwords[1] = axis;
  qwords[2] = index_count;
  int32_t size = dims[axis], shift = rng_range(0, size - 1);
  for (int32_t j = 0; j < index_count; j++) {
    int32_t v = rng_range(0, size - 1);
    if (pattern == RUNS)
      v = j % 7 == 0 || qwords[2 + j] + 1 >= size ? rng_range(0, size - 1) : qwords[2 + j] + 1;
    else if (pattern == ROTATED)
      v = (j + shift) % size;
    qwords[3 + j] = v;
  }
  c.node.qwords = qwords;
  c.node.qword_count = 3 + index_count;
  expect_identical(&c, fast_gather, what);
  node_case_free(&c);
}

Test(fast_gather, index_patterns_match_reference) {
  gather_case(4, (int32_t[]){1, 2, 30, 32}, 2, 210, RUNS, I8, "windows of 32-byte units");
  gather_case(3, (int32_t[]){12, 7, 288}, 2, 96, ROTATED, I8, "a channel slice, one byte each");
  gather_case(3, (int32_t[]){6, 9, 20}, 2, 64, RANDOM, I8, "random single bytes");
  gather_case(4, (int32_t[]){1, 5, 9, 9}, 3, 9, ROTATED, I16, "a rotation of the last axis");
  gather_case(3, (int32_t[]){5, 4, 3}, 1, 11, RANDOM, I16, "six-byte units");
  gather_case(2, (int32_t[]){13, 8}, 0, 40, RUNS, I16, "the first axis, 16-byte units");
  gather_case(2, (int32_t[]){9, 33}, 0, 4, RANDOM, I8, "units of 33 bytes");
  gather_case(2, (int32_t[]){4, 16}, 1, 1, RANDOM, I16, "one index");
}

static int fast_reshape(const dsr_model *model, const dsr_node *node, const void *const *in,
                        void *out, uint8_t *scratch) {
  (void)scratch;
  return dsr_fixed_fast_reshape_parallel(model, node, in, out, NULL);
}

Test(fast_reshape, copies_or_keeps_aliased_bytes) {
  node_case c;
  node_case_init(&c, DSR_OP_RESHAPE, 1);
  set_tensor(&c, 0, DSR_TENSOR_INPUT, 3, (int32_t[]){5, 7, 41}, I16, 0);
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, 2, (int32_t[]){35, 41}, I16, 0);
  c.node.qword_count = 1;
  expect_identical(&c, fast_reshape, "a separate output");

  /* The planner's alias: output and input are the same bytes, which must stay. */
  size_t bytes = output_bytes(&c);
  uint8_t *copy = malloc(bytes);
  cr_assert_not_null(copy);
  memcpy(copy, c.data[0], bytes);
  const void *inputs[DSR_MAX_NODE_INPUTS] = {c.data[0], NULL, NULL, NULL};
  dsr_parallel hook = {run_reversed, NULL, 2, 1};
  dsr_fixed_execute_parallel(&c.model, 0, inputs, c.data[0], NULL, dsr_slice_none(), &hook);
  cr_assert_eq(memcmp(copy, c.data[0], bytes), 0);

  /* Partly overlapping storage: the fast kernel declines and the memmove runs. */
  uint8_t *both = malloc(bytes + 6);
  cr_assert_not_null(both);
  memcpy(both, copy, bytes);
  inputs[0] = both;
  cr_assert_eq(dsr_fixed_fast_reshape_parallel(&c.model, &c.node, inputs, both + 6, NULL), 0);
  dsr_fixed_execute_parallel(&c.model, 0, inputs, both + 6, NULL, dsr_slice_none(), &hook);
  cr_assert_eq(memcmp(copy, both + 6, bytes), 0);
  free(both);
  free(copy);
  node_case_free(&c);
}

/* ------------------------------------------------------------------ layer norms */

/* A LayerNorm case whose channel shifts are drawn from [shift_lo, shift_hi]. */
static void layer_norm_case_shifts(int32_t rows, int32_t count, int32_t x_dtype, int32_t y_dtype,
                                   int64_t eps, int32_t shift_lo, int32_t shift_hi,
                                   const char *what) {
  node_case c;
  node_case_init(&c, DSR_OP_LAYER_NORM, 1);
  int32_t dims[2] = {rows, count};
  set_tensor(&c, 0, DSR_TENSOR_INPUT, 2, dims, x_dtype, rng_range(-128, 127));
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, 2, dims, y_dtype, rng_range(-128, 127));
  if (rows > 1) {
    /* A constant row: zero variance, where eps alone sets the scale. */
    for (int32_t i = 0; i < count; i++)
      dsr_fixed_store(c.data[0], x_dtype, i, 3);
  }
  c.node.attrs.norm.axis = -1;
  int32_t *block = c.qwords + 1;
  block[0] = count;
  block[1] = x_dtype == I8 ? 8 : 0;
  block[2] = (int32_t)(uint32_t)(eps & 0xffffffff);
  block[3] = (int32_t)(eps >> 32);
  for (int32_t i = 0; i < count; i++) {
    int32_t *channel = block + DSQ_LN_HEADER_WORDS + 3 * i;
    int32_t m = (int32_t)(DSQ_MULTIPLIER_MIN_MAGNITUDE + (rng_u32() & 0x3fffffff));
    channel[0] = (rng_u32() & 3) == 0 ? -m : m;
    channel[1] = rng_range(shift_lo, shift_hi);
    channel[2] = rng_range(-20000, 20000);
  }
  c.node.qword_count = 1 + DSQ_LN_HEADER_WORDS + 3 * count;
  expect_identical(&c, dsr_fixed_fast_layer_norm, what);
  node_case_free(&c);
}

static void layer_norm_case(int32_t rows, int32_t count, int32_t x_dtype, int32_t y_dtype,
                            int64_t eps, const char *what) {
  layer_norm_case_shifts(rows, count, x_dtype, y_dtype, eps, -6, 4, what);
}

Test(fast_layer_norm, isqrt_matches_reference) {
  for (int32_t i = 0; i < 20000; i++) {
    uint64_t root = ((uint64_t)rng_u32() << 16 | (rng_u32() & 0xffff)) >> (rng_u32() % 48);
    uint64_t candidates[4] = {root * root, root * root - 1, root * root + 1,
                              (uint64_t)rng_u32() << (rng_u32() % 32)};
    for (int32_t k = 0; k < 4; k++) {
      uint64_t v = candidates[k];
      cr_assert_eq(dsr_fixed_fast_isqrt64(v), dsr_fixed_isqrt64(v), "isqrt(%llu)",
                   (unsigned long long)v);
    }
  }
  /* Around 2^62, where the double square root hands over to the restoring steps. */
  const uint64_t roots[] = {(1u << 31) - 1, 1u << 31, (1u << 31) + 1, 3037000499u, 94906265u};
  for (int32_t i = 0; i < 5; i++) {
    uint64_t square = roots[i] * roots[i];
    for (int32_t delta = -2; delta <= 2; delta++) {
      uint64_t v = square + (uint64_t)(int64_t)delta;
      cr_assert_eq(dsr_fixed_fast_isqrt64(v), dsr_fixed_isqrt64(v), "isqrt(%llu)",
                   (unsigned long long)v);
    }
  }
  for (int32_t delta = -3; delta <= 3; delta++) {
    uint64_t v = ((uint64_t)1 << 62) + (uint64_t)(int64_t)delta;
    cr_assert_eq(dsr_fixed_fast_isqrt64(v), dsr_fixed_isqrt64(v), "isqrt(%llu)",
                 (unsigned long long)v);
  }
  cr_assert_eq(dsr_fixed_fast_isqrt64(UINT64_MAX), dsr_fixed_isqrt64(UINT64_MAX));
  cr_assert_eq(dsr_fixed_fast_isqrt64(0), 0);
}

Test(fast_layer_norm, rows_match_reference) {
  layer_norm_case(40, 16, I16, I8, 0, "int16 rows of 16");
  layer_norm_case(12, 96, I8, I8, 1000, "int8 rows of 96");
  layer_norm_case(5, 300, I16, I16, (int64_t)1 << 33, "int16 rows with a large epsilon");
  layer_norm_case(1, 1, I8, I16, 0, "a single element");
  layer_norm_case(30, 32, I16, I8, 0, "int16 rows of 32 to int8");
  layer_norm_case(9, 192, I16, I16, 7, "int16 rows of 192");
  /* Left shifts up to 30 saturate the channel requantization, and right shifts up to 31
   * round most values away. Rows of 36 leave a tail after groups of 8. */
  layer_norm_case_shifts(20, 36, I16, I8, 0, DSQ_SHIFT_MIN, DSQ_SHIFT_MAX,
                         "extreme channel shifts to int8");
  layer_norm_case_shifts(20, 36, I8, I16, 3, DSQ_SHIFT_MIN, DSQ_SHIFT_MAX,
                         "extreme channel shifts to int16");
  layer_norm_case_shifts(6, 40, I16, I16, 0, 10, DSQ_SHIFT_MAX, "saturating channels");
  /* A rounding error of one in the channel requantization shows in the output only where
   * the final rounding by 2^8 crosses a step: many rows of the one-bit shift. */
  layer_norm_case_shifts(400, 64, I16, I16, 0, -1, -1, "one-bit channel shifts");
}

/* ------------------------------------------------------------------ softmax */

static void softmax_case(int32_t rows, int32_t length, int32_t x_dtype, int32_t out_frac_bits,
                         int32_t shift, const char *what) {
  node_case c;
  node_case_init(&c, DSR_OP_SOFTMAX, 1);
  int32_t dims[2] = {rows, length};
  int32_t y_dtype = out_frac_bits == 8 ? I8 : I16;
  set_tensor(&c, 0, DSR_TENSOR_INPUT, 2, dims, x_dtype, rng_range(-128, 127));
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, 2, dims, y_dtype, -128);
  c.tensors[3].qparams.scale = out_frac_bits == 8 ? 1.0f / 256.0f : 1.0f / 32768.0f;
  c.node.attrs.softmax.axis = -1;
  c.qwords[1] = (int32_t)(DSQ_MULTIPLIER_MIN_MAGNITUDE + (rng_u32() & 0x3fffffff));
  c.qwords[2] = shift;
  c.qwords[3] = out_frac_bits;
  c.node.qword_count = 4;
  expect_identical(&c, dsr_fixed_fast_softmax, what);
  node_case_free(&c);
}

Test(fast_softmax, exp_row_matches_reference) {
  enum { COUNT = 4096 };
  static int32_t y[COUNT], exps[COUNT];
  for (int32_t start = -40 * 1024; start <= 0; start += COUNT) {
    int64_t expected_sum = 0;
    for (int32_t i = 0; i < COUNT; i++) {
      y[i] = start + i > 0 ? INT32_MIN + i : start + i;
      expected_sum += dsr_fixed_exp2_neg_q30(y[i]);
    }
    cr_assert_eq(dsr_fixed_fast_exp_row(y, COUNT, exps), expected_sum, "rows from %d", start);
    for (int32_t i = 0; i < COUNT; i++)
      cr_assert_eq(exps[i], dsr_fixed_exp2_neg_q30(y[i]), "y = %d", y[i]);
    /* A count that leaves a tail after the groups of 16. */
    int64_t tail_sum = 0;
    for (int32_t i = 5; i < COUNT - 7; i++)
      tail_sum += dsr_fixed_exp2_neg_q30(y[i]);
    cr_assert_eq(dsr_fixed_fast_exp_row(y + 5, COUNT - 12, exps), tail_sum, "rows from %d + 5",
                 start);
    for (int32_t i = 5; i < COUNT - 7; i++)
      cr_assert_eq(exps[i - 5], dsr_fixed_exp2_neg_q30(y[i]), "y = %d", y[i]);
  }
}

Test(fast_softmax, first_axis_falls_back_to_reference) {
  /* The fast kernel takes the last axis only: over another axis it declines, and
   * dsr_fixed_execute and its parallel form run the reference. */
  node_case c;
  node_case_init(&c, DSR_OP_SOFTMAX, 1);
  int32_t dims[2] = {7, 20};
  set_tensor(&c, 0, DSR_TENSOR_INPUT, 2, dims, I16, 0);
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, 2, dims, I8, -128);
  c.tensors[3].qparams.scale = 1.0f / 256.0f;
  c.node.attrs.softmax.axis = 0;
  c.qwords[1] = (int32_t)(DSQ_MULTIPLIER_MIN_MAGNITUDE + (rng_u32() & 0x3fffffff));
  c.qwords[2] = -4;
  c.qwords[3] = 8;
  c.node.qword_count = 4;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_fixed_check_node(&c.model, 0, &err), DS_OK, "%s", err.message);
  const void *inputs[DSR_MAX_NODE_INPUTS] = {c.data[0], NULL, NULL, NULL};
  size_t bytes = output_bytes(&c), scratch_bytes = dsr_fixed_scratch_bytes(&c.model, 0);
  uint8_t *scratch = malloc(scratch_bytes), *fast = malloc(bytes), *reference = malloc(bytes);
  cr_assert(scratch != NULL && fast != NULL && reference != NULL);
  memset(fast, 0x55, bytes);
  cr_assert_eq(dsr_fixed_fast_softmax(&c.model, &c.node, inputs, fast, scratch), 0);
  cr_assert_eq(fast[0], 0x55, "the declining kernel wrote its output");
  dsr_fixed_execute(&c.model, 0, inputs, fast, scratch, dsr_slice_none());
  dsr_fixed_execute_reference(&c.model, 0, inputs, reference, scratch, dsr_slice_none());
  cr_assert_eq(memcmp(fast, reference, bytes), 0);
  expect_same_for_workers(&c, "softmax over the first axis");
  free(scratch);
  free(fast);
  free(reference);
  node_case_free(&c);
}

Test(fast_softmax, rows_match_reference) {
  softmax_case(30, 64, I16, 8, -6, "int16 scores to int8");
  softmax_case(20, 49, I8, 15, 4, "int8 scores to int16");
  softmax_case(10, 300, I16, 15, 12, "steep exponent, most terms vanish");
  softmax_case(4, 1, I8, 8, 0, "rows of one");
  softmax_case(12, 17, I16, 8, 14, "the largest left shift of the vector kernel");
  softmax_case(6, 33, I16, 15, 20, "a left shift past the vector kernel");
  softmax_case(9, 80, I8, 8, -3, "int8 scores with a right shift");
}

/* ------------------------------------------------------------------ lookup tables */

static int fast_gelu(const dsr_model *model, const dsr_node *node, const void *const *in,
                     void *out, uint8_t *scratch) {
  (void)scratch;
  return dsr_fixed_fast_gelu(model, node, in, out);
}

/* A GELU node with a random table: direct (256 entries) for int8 input, interpolated (257
 * entries within +-2^30) for int16 input. Entries outside the output range test the clamp. */
static void gelu_case(int32_t x_dtype, int32_t y_dtype, int32_t rows, const char *what) {
  node_case c;
  node_case_init(&c, DSR_OP_GELU, 1);
  int32_t dims[3] = {3, rows, 50};
  set_tensor(&c, 0, DSR_TENSOR_INPUT, 3, dims, x_dtype, rng_range(-128, 127));
  set_tensor(&c, 3, DSR_TENSOR_OUTPUT, 3, dims, y_dtype, rng_range(-128, 127));
  int direct = x_dtype == I8;
  int32_t entries = direct ? DSQ_LUT_DIRECT_ENTRIES : DSQ_LUT_INTERP_ENTRIES;
  c.qwords[1] = direct ? DSQ_LUT_DIRECT : DSQ_LUT_INTERP;
  for (int32_t i = 0; i < entries; i++)
    c.qwords[2 + i] = direct ? rng_range(-200, 200) : rng_range(-(1 << 30), 1 << 30) >> rng_range(0, 16);
  c.node.qword_count = 2 + entries;
  expect_identical(&c, fast_gelu, what);
  node_case_free(&c);
}

Test(fast_gelu, tables_match_reference) {
  gelu_case(I8, I8, 7, "int8 direct table");
  gelu_case(I8, I8, 1, "int8 direct table shorter than a vector");
  gelu_case(I8, I8, 256, "int8 direct table over many vectors");
  gelu_case(I8, I16, 7, "int8 direct table to int16");
  gelu_case(I16, I16, 7, "int16 interpolated table");
  gelu_case(I16, I8, 7, "int16 interpolated table to int8");
}

/* ------------------------------------------------------------------ whole models */


/* Storage of every non-constant tensor of model, in its quantized dtype. */
static void **alloc_tensors(const dsr_model *model) {
  void **buffers = calloc((size_t)model->tensor_count, sizeof(void *));
  cr_assert_not_null(buffers);
  for (int32_t t = 0; t < model->tensor_count; t++) {
    const dsr_tensor *tensor = &model->tensors[t];
    if (tensor->kind == DSR_TENSOR_CONSTANT)
      continue;
    size_t bytes = (size_t)dsr_tensor_elements(tensor) * dtype_bytes(tensor->qparams.dtype);
    buffers[t] = calloc(bytes + 1, 1);
    cr_assert_not_null(buffers[t]);
  }
  return buffers;
}

static void free_tensors(const dsr_model *model, void **buffers) {
  for (int32_t t = 0; t < model->tensor_count; t++)
    free(buffers[t]);
  free(buffers);
}

/* Runs node i of model on buffers with slice, optimized or reference. */
static void run_node_sliced(const dsr_model *model, int32_t i, void **buffers, void *output,
                            uint8_t *scratch, dsr_slice slice, int reference) {
  const dsr_node *node = &model->nodes[i];
  const void *inputs[DSR_MAX_NODE_INPUTS] = {NULL, NULL, NULL, NULL};
  for (int32_t k = 0; k < node->input_count && k < DSR_MAX_NODE_INPUTS; k++) {
    int32_t t = node->inputs[k];
    if (t >= 0)
      inputs[k] = model->tensors[t].kind == DSR_TENSOR_CONSTANT ? model->tensors[t].data_q
                                                                : buffers[t];
  }
  if (reference)
    dsr_fixed_execute_reference(model, i, inputs, output, scratch, slice);
  else
    dsr_fixed_execute(model, i, inputs, output, scratch, slice);
}

/* Runs deformable node i under sliced configurations, optimized and reference, and requires
 * identical outputs. */
static void compare_slices(const dsr_model *model, int32_t i, void **buffers, uint8_t *scratch,
                           size_t bytes, const char *name) {
  const dsr_deform_attn *d = model->nodes[i].deform;
  if (d->height < 4 || d->width < 4)
    return;
  const dsr_slice slices[] = {{2, 2, 1, DSR_SLICE_PHYSICAL}, {2, 1, 2, DSR_SLICE_CROP}};
  uint8_t *fast = malloc(bytes), *reference = malloc(bytes);
  cr_assert(fast != NULL && reference != NULL);
  for (size_t k = 0; k < sizeof slices / sizeof slices[0]; k++) {
    memset(fast, 0x55, bytes);
    memset(reference, 0xaa, bytes);
    run_node_sliced(model, i, buffers, fast, scratch, slices[k], 0);
    run_node_sliced(model, i, buffers, reference, scratch, slices[k], 1);
    cr_assert_eq(memcmp(fast, reference, bytes), 0, "%s: node %d under slice %zu differs", name,
                 i, k);
  }
  free(fast);
  free(reference);
}

/* Runs node i of model on buffers with its own slice, optimized or reference. */
static void run_node(const dsr_model *model, int32_t i, void **buffers, uint8_t *scratch,
                     int reference) {
  const dsr_node *node = &model->nodes[i];
  dsr_slice slice = node->deform != NULL ? node->deform->slice : dsr_slice_none();
  run_node_sliced(model, i, buffers, buffers[node->output], scratch, slice, reference);
}

/* Quantizes image into the model input, then runs the graph twice, once with the optimized
 * kernels and once with the reference ones, and compares every tensor they produce. */
static void compare_model(const char *name, int32_t *optimized_count) {
  dsr_model model;
  float *image;
  fixture_load_quantized(name, &model, &image);

  ds_error err;
  ds_error_clear(&err);
  size_t scratch_bytes = 0;
  for (int32_t i = 0; i < model.node_count; i++) {
    cr_assert_eq(dsr_fixed_check_node(&model, i, &err), DS_OK, "%s: %s", name, err.message);
    size_t bytes = dsr_fixed_scratch_bytes(&model, i);
    scratch_bytes = bytes > scratch_bytes ? bytes : scratch_bytes;
  }
  uint8_t *scratch = aligned_alloc(64, (scratch_bytes + 64) / 64 * 64);
  cr_assert_not_null(scratch);

  void **fast = alloc_tensors(&model), **reference = alloc_tensors(&model);
  const dsr_tensor *input = &model.tensors[model.input];
  for (int64_t i = 0; i < dsr_tensor_elements(input); i++) {
    double q = round(image[i] / input->qparams.scale) + input->qparams.zero_point;
    dsr_fixed_store(fast[model.input], input->qparams.dtype, i, (int64_t)q);
    dsr_fixed_store(reference[model.input], input->qparams.dtype, i, (int64_t)q);
  }

  int32_t compared[DSR_OP_COUNT] = {0};
  for (int32_t i = 0; i < model.node_count; i++) {
    const dsr_node *node = &model.nodes[i];
    run_node(&model, i, fast, scratch, 0);
    run_node(&model, i, reference, scratch, 1);
    const dsr_tensor *y = &model.tensors[node->output];
    size_t bytes = (size_t)dsr_tensor_elements(y) * dtype_bytes(y->qparams.dtype);
    cr_assert_eq(memcmp(fast[node->output], reference[node->output], bytes), 0,
                 "%s: node %d '%s' (op %d) differs from the reference", name, i, node->name,
                 node->op);
    compared[node->op]++;
    if (node->op == DSR_OP_DEFORM_ATTN)
      compare_slices(&model, i, reference, scratch, bytes, name);
  }
  cr_log_info("%s: %d convs, %d matmuls, %d adds, %d transposes, %d layer norms, %d softmaxes, "
              "%d deformable layers compared",
              name, compared[DSR_OP_CONV2D], compared[DSR_OP_MATMUL], compared[DSR_OP_ADD],
              compared[DSR_OP_TRANSPOSE], compared[DSR_OP_LAYER_NORM], compared[DSR_OP_SOFTMAX],
              compared[DSR_OP_DEFORM_ATTN]);
  *optimized_count += compared[DSR_OP_CONV2D] + compared[DSR_OP_MATMUL] +
                      compared[DSR_OP_ADD] + compared[DSR_OP_SUB];
  free_tensors(&model, fast);
  free_tensors(&model, reference);
  free(scratch);
  free(image);
  ds_model_free(&model);
}

Test(fast_models, fixtures_match_reference_node_by_node) {
  const char *names[] = {"deform_layer_dat_pp", "deform_layer_dat", "deform_layer_rect",
                         "dat_pp_tiny", "dat_offsets_tiny", "deform_layer_dat_centre",
                         "dat_mini_64", "dat_mini_72x88_op17"};
  int32_t optimized_count = 0;
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
    compare_model(names[k], &optimized_count);
  cr_expect_gt(optimized_count, 40, "only %d nodes ran an optimized kernel", optimized_count);
}
