/*
 * Tests of the fixed-point arithmetic (runtime/dsr_fixed*.c), the quantizer, calibration and
 * audit (quant/): primitives against exact or float references, each kernel against float
 * within its stated bound, plan-time rejection of bad parameters, and end-to-end runs of the
 * ONNX fixtures in fixed mode.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "quant/dsq_audit.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_params.h"
#include "quant/dsq_quantize.h"
#include "runtime/dsr_fixed.h"
#include "runtime/dsr_fixed_internal.h"
#include "runtime/dsr_fixed_math.h"
#include "runtime/dsr_runtime.h"
#include "runtime/dsr_slice.h"

/* ------------------------------------------------------------------ helpers */

/* Deterministic pseudo-random numbers (xorshift), so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

static float rng_uniform(float lo, float hi) {
  return lo + (hi - lo) * (float)(rng_u32() & 0xffffff) / (float)0x1000000;
}

/* Exact round(a * b / 2^31) half away from zero, by integer division. */
static int64_t exact_srdhm(int32_t a, int32_t b) {
  int64_t p = (int64_t)a * b;
  int64_t q = p / ((int64_t)1 << 31);
  int64_t r = p % ((int64_t)1 << 31);
  if (2 * (r < 0 ? -r : r) >= ((int64_t)1 << 31))
    q += p < 0 ? -1 : 1;
  return q;
}

/* A heap-built model that ds_model_free can release. */
typedef struct model_builder {
  dsr_model model;
} model_builder;

static void builder_init(model_builder *b, int32_t tensor_capacity, int32_t node_capacity) {
  memset(b, 0, sizeof *b);
  snprintf(b->model.name, sizeof b->model.name, "handmade");
  b->model.tensors = calloc((size_t)tensor_capacity, sizeof(dsr_tensor));
  b->model.nodes = calloc((size_t)node_capacity, sizeof(dsr_node));
  cr_assert_not_null(b->model.tensors);
  cr_assert_not_null(b->model.nodes);
}

static int32_t add_tensor(model_builder *b, const char *name, int32_t kind, int32_t rank,
                          const int32_t *dims, const float *values) {
  int32_t index = b->model.tensor_count++;
  dsr_tensor *t = &b->model.tensors[index];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->kind = (uint8_t)kind;
  t->rank = rank;
  for (int32_t i = 0; i < rank; i++)
    t->dims[i] = dims[i];
  if (values != NULL) {
    int64_t count = dsr_tensor_elements(t);
    float *copy = malloc(sizeof(float) * (size_t)count);
    memcpy(copy, values, sizeof(float) * (size_t)count);
    t->data_f32 = copy;
  }
  return index;
}

static dsr_node *add_node(model_builder *b, int32_t op, int32_t input_count,
                          const int32_t *inputs, int32_t output) {
  dsr_node *node = &b->model.nodes[b->model.node_count];
  snprintf(node->name, sizeof node->name, "node%d", b->model.node_count);
  b->model.node_count++;
  node->op = op;
  node->input_count = input_count;
  for (int32_t i = 0; i < DSR_MAX_NODE_INPUTS; i++)
    node->inputs[i] = i < input_count ? inputs[i] : -1;
  node->output = output;
  return node;
}

/* Quantizes a float value with qparams: round(x / s) + z, saturated. */
static int32_t quantize_value(double x, const dsr_qparams *q) {
  int32_t lo, hi;
  dsr_fixed_dtype_range(q->dtype, &lo, &hi);
  double v = round(x / q->scale) + q->zero_point;
  return (int32_t)fmax(fmin(v, hi), lo);
}

static double dequantize_value(int32_t v, const dsr_qparams *q) {
  return (double)q->scale * (v - q->zero_point);
}

static void *alloc_like(const dsr_tensor *t) {
  size_t bytes = t->qparams.dtype == DSR_DTYPE_I8 ? 1 : (t->qparams.dtype == DSR_DTYPE_I16 ? 2 : 4);
  void *p = calloc((size_t)dsr_tensor_elements(t), bytes);
  cr_assert_not_null(p);
  return p;
}

/* Calibrates every activation of a hand-built model with the given float values. */
static void calibrate_values(dsq_calibration *calib, const dsr_model *model, int32_t tensor,
                             const float *values) {
  dsq_calibration_observe_tensor(calib, tensor, values,
                                 dsr_tensor_elements(&model->tensors[tensor]));
}

/* Fills data (of t's dtype) with the quantized values of x. */
static void quantize_into(void *data, const dsr_tensor *t, const float *x) {
  for (int64_t i = 0; i < dsr_tensor_elements(t); i++)
    dsr_fixed_store(data, t->qparams.dtype, i, quantize_value(x[i], &t->qparams));
}

/* Runs node node_index of a quantized model with explicit buffers. */
static void execute_node(const dsr_model *model, int32_t node_index, void *const *buffers) {
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_fixed_check_node(model, node_index, &err), DS_OK, "check failed: %s",
               err.message);
  const dsr_node *node = &model->nodes[node_index];
  const void *inputs[DSR_MAX_NODE_INPUTS] = {NULL, NULL, NULL, NULL};
  for (int32_t i = 0; i < node->input_count; i++) {
    int32_t t = node->inputs[i];
    inputs[i] = model->tensors[t].kind == DSR_TENSOR_CONSTANT ? model->tensors[t].data_q
                                                              : buffers[t];
  }
  size_t scratch_bytes = dsr_fixed_scratch_bytes(model, node_index);
  uint8_t *scratch = aligned_alloc(64, (scratch_bytes + 64) / 64 * 64);
  dsr_fixed_execute(model, node_index, inputs, buffers[node->output], scratch, dsr_slice_none());
  free(scratch);
}

/* ------------------------------------------------------------------ primitives */

Test(primitives, srdhm_rounds_half_away_from_zero) {
  struct { int32_t a, b; int32_t expected; } cases[] = {
      {1 << 30, 1, 1},          /* 0.5 rounds away to 1 */
      {-(1 << 30), 1, -1},      /* -0.5 rounds away to -1 */
      {(1 << 30) - 1, 1, 0},    /* just under 0.5 */
      {3 << 29, 2, 2},          /* 1.5 rounds to 2 */
      {-(3 << 29), 2, -2},
      {INT32_MIN, INT32_MIN, INT32_MAX}, /* the only saturating pair */
      {INT32_MIN, INT32_MAX, -INT32_MAX},
      {INT32_MAX, INT32_MAX, INT32_MAX - 1},
      {0, INT32_MIN, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    cr_expect_eq(dsr_fixed_srdhm(cases[i].a, cases[i].b), cases[i].expected,
                 "srdhm(%d, %d) = %d, expected %d", cases[i].a, cases[i].b,
                 dsr_fixed_srdhm(cases[i].a, cases[i].b), cases[i].expected);
  for (int i = 0; i < 200000; i++) {
    int32_t a = (int32_t)rng_u32(), b = (int32_t)rng_u32();
    if (a == INT32_MIN && b == INT32_MIN)
      continue;
    cr_assert_eq(dsr_fixed_srdhm(a, b), exact_srdhm(a, b), "srdhm(%d, %d)", a, b);
  }
}

Test(primitives, rdbpot_ties_and_extreme_exponents) {
  cr_expect_eq(dsr_fixed_rdbpot(5, 1), 3);
  cr_expect_eq(dsr_fixed_rdbpot(-5, 1), -3);
  cr_expect_eq(dsr_fixed_rdbpot(4, 1), 2);
  cr_expect_eq(dsr_fixed_rdbpot(-3, 1), -2);
  cr_expect_eq(dsr_fixed_rdbpot(7, 0), 7);
  cr_expect_eq(dsr_fixed_rdbpot(INT32_MAX, 31), 1);
  cr_expect_eq(dsr_fixed_rdbpot(INT32_MIN, 31), -1);
  cr_expect_eq(dsr_fixed_rdbpot((1 << 30) - 1, 31), 0);
  cr_expect_eq(dsr_fixed_rdbpot(-(1 << 30), 31), -1);
  cr_expect_eq(dsr_fixed_rdbpot(-6, 2), -2); /* -1.5 */
}

Test(primitives, requant32_matches_real_factor) {
  /* Two roundings (high multiply, then shift) stay within one unit of the exact product. */
  for (int i = 0; i < 100000; i++) {
    int32_t x = (int32_t)(rng_u32() >> (rng_u32() % 31)) * ((rng_u32() & 1) ? 1 : -1);
    double real = ldexp(rng_uniform(0.5f, 1.0f), (int)(rng_u32() % 40) - 35);
    int32_t m, shift;
    cr_assert(dsq_quantize_multiplier(real, 0, &m, &shift));
    double exact = (double)x * m * ldexp(1.0, shift - 31);
    if (fabs(ldexp((double)x, shift > 0 ? shift : 0)) >= 2147483648.0) {
      /* The pre-shift leaves int32: the result saturates. */
      cr_assert_eq(dsr_fixed_requant32(x, m, shift), x > 0 ? INT32_MAX : INT32_MIN);
      continue;
    }
    int32_t got = dsr_fixed_requant32(x, m, shift);
    cr_assert_leq(fabs(got - exact), 1.0, "requant32(%d, %d, %d) = %d, exact %f", x, m, shift,
                  got, exact);
  }
}

Test(primitives, requant32_saturates_and_covers_shift_range) {
  cr_expect_eq(dsr_fixed_requant32(INT32_MAX, INT32_MAX, 30), INT32_MAX);
  cr_expect_eq(dsr_fixed_requant32(INT32_MIN, INT32_MAX, 30), INT32_MIN);
  cr_expect_eq(dsr_fixed_requant32(1 << 20, 1 << 30, 12), INT32_MAX); /* 2^31 saturates */
  cr_expect_eq(dsr_fixed_requant32(3, 1 << 30, 1), 3);                /* factor 1 */
  cr_expect_eq(dsr_fixed_requant32(-3, 1 << 30, 0), -2);              /* -1.5 -> -2 */
  /* (2^31 - 1) / 2^32 is just under 1/2, but the high multiply rounds to 2^30 first and the
   * shift then rounds 1/2 up: the double rounding the contract allows. */
  cr_expect_eq(dsr_fixed_requant32(INT32_MAX, 1 << 30, -31), 1);
  cr_expect_eq(dsr_fixed_requant32(INT32_MIN, 1 << 30, -31), -1);     /* -0.5 exactly */
  cr_expect_eq(dsr_fixed_requant32(12345, 0, 5), 0);
  cr_expect_eq(dsr_fixed_requant32(100, -(1 << 30), 0), -50);         /* negative factor */
}

Test(primitives, requant64_relative_error) {
  for (int i = 0; i < 100000; i++) {
    int64_t x = ((int64_t)rng_u32() << 15) * ((rng_u32() & 1) ? 1 : -1);
    double real = ldexp(rng_uniform(0.5f, 1.0f), (int)(rng_u32() % 30) - 40);
    int32_t m, shift;
    cr_assert(dsq_quantize_multiplier(real, 1, &m, &shift));
    double exact = (double)x * m * ldexp(1.0, shift - 31);
    if (fabs(exact) > 2.1e9)
      continue;
    int32_t got = dsr_fixed_requant64(x, m, shift);
    /* The multiplier keeps 15 bits: relative error 2^-15, plus half a unit of rounding. */
    cr_assert_leq(fabs(got - exact), 0.5 + fabs(exact) * ldexp(1.0, -15) + 1e-9,
                  "requant64(%lld, %d, %d) = %d, exact %f", (long long)x, m, shift, got, exact);
  }
  cr_expect_eq(dsr_fixed_requant64(INT64_MAX, 1 << 30, 14), INT32_MAX);
  cr_expect_eq(dsr_fixed_requant64(INT64_MIN, 1 << 30, 14), INT32_MIN);
  cr_expect_eq(dsr_fixed_requant64(-3, 1 << 30, 0), -2);
}

Test(primitives, quantize_multiplier_edges) {
  int32_t m, shift;
  cr_expect(dsq_quantize_multiplier(0.0, 0, &m, &shift));
  cr_expect_eq(m, 0);
  cr_expect(dsq_quantize_multiplier(1.0, 0, &m, &shift));
  cr_expect_eq(m, 1 << 30);
  cr_expect_eq(shift, 1);
  cr_expect(dsq_quantize_multiplier(-0.75, 0, &m, &shift));
  cr_expect_eq(m, -(3 << 29));
  cr_expect_eq(shift, 0);
  cr_expect(dsq_quantize_multiplier(1e-12, 0, &m, &shift));
  cr_expect_eq(m, 0, "factors below 2^-32 become 0");
  cr_expect(dsq_quantize_multiplier(0.9999999999, 0, &m, &shift));
  cr_expect_eq(m, 1 << 30, "rounding up to 2^31 renormalizes");
  cr_expect_eq(shift, 1);
  cr_expect_not(dsq_quantize_multiplier(ldexp(1.0, 31), 0, &m, &shift));
  cr_expect_not(dsq_quantize_multiplier(ldexp(1.0, 15), 1, &m, &shift));
  cr_expect(dsq_quantize_multiplier(ldexp(1.0, 13), 1, &m, &shift));
  cr_expect_not(dsq_quantize_multiplier(NAN, 0, &m, &shift));
}

Test(primitives, isqrt_is_exact_floor) {
  for (uint64_t v = 0; v < 70000; v++) {
    uint64_t r = dsr_fixed_isqrt64(v);
    cr_assert(r * r <= v && (r + 1) * (r + 1) > v, "isqrt(%llu) = %llu", (unsigned long long)v,
              (unsigned long long)r);
  }
  uint64_t big[] = {(uint64_t)1 << 61, ((uint64_t)1 << 61) - 1, 4294967295ull * 4294967295ull,
                    4294967295ull * 4294967295ull - 1, UINT64_MAX};
  uint64_t expected[] = {1518500249ull, 1518500249ull, 4294967295ull, 4294967294ull,
                         4294967295ull};
  for (int i = 0; i < 5; i++)
    cr_expect_eq(dsr_fixed_isqrt64(big[i]), expected[i], "isqrt(%llu)",
                 (unsigned long long)big[i]);
}

Test(primitives, exp2_table_entries) {
  for (int32_t i = 0; i < DSR_FIXED_EXP_TABLE_COUNT; i++) {
    double exact = ldexp(exp2(-(double)i / DSR_FIXED_EXP_TABLE_COUNT), 30);
    cr_assert_eq(dsr_fixed_exp2_table_q30[i], (int32_t)llround(exact), "entry %d", i);
  }
}

/* exp(s * d) for every d over the int16 logit difference range, at three logit scales. */
Test(primitives, exp_error_over_int16_range) {
  double scales[] = {8.0 / 32767.0, 40.0 / 32767.0, 1e-3};
  for (int k = 0; k < 3; k++) {
    int32_t m, shift;
    cr_assert(dsq_quantize_multiplier(scales[k] * 1.4426950408889634 * 1024.0, 0, &m, &shift));
    double worst = 0.0;
    for (int32_t d = -65535; d <= 0; d++) {
      int32_t e = dsr_fixed_exp2_neg_q30(dsr_fixed_requant32(d, m, shift));
      double exact = ldexp(exp(scales[k] * d), 30);
      /* The Q10 log2 argument is within 1 unit (two roundings in requant32), a relative
       * error of 2^(1/1024) - 1 = 6.8e-4; the table and the final shift add 1 unit each. */
      double bound = 6.8e-4 * exact + 2.0;
      worst = fmax(worst, fabs(e - exact) - bound);
      cr_assert_leq(fabs(e - exact), bound, "scale %g d %d: %d vs %f", scales[k], d, e, exact);
    }
  }
}

static void float_softmax(const double *x, int32_t n, double *p) {
  double mx = x[0], sum = 0.0;
  for (int32_t i = 1; i < n; i++)
    mx = fmax(mx, x[i]);
  for (int32_t i = 0; i < n; i++)
    sum += (p[i] = exp(x[i] - mx));
  for (int32_t i = 0; i < n; i++)
    p[i] /= sum;
}

Test(primitives, softmax_row_error_bound) {
  int32_t lengths[] = {1, 2, 7, 49, 256};
  int32_t bits[] = {8, 15};
  double scale = 20.0 / 32767.0;
  int32_t m, shift;
  cr_assert(dsq_quantize_multiplier(scale * 1.4426950408889634 * 1024.0, 0, &m, &shift));
  int32_t in[256], exps[256], out[256];
  double x[256], p[256];
  for (int b = 0; b < 2; b++) {
    for (int l = 0; l < 5; l++) {
      for (int trial = 0; trial < 50; trial++) {
        int32_t n = lengths[l];
        for (int32_t i = 0; i < n; i++) {
          in[i] = (int32_t)(rng_u32() % 65536) - 32768;
          x[i] = scale * in[i];
        }
        float_softmax(x, n, p);
        dsr_fixed_softmax_row(in, n, m, shift, bits[b], exps, out);
        double unit = ldexp(1.0, -bits[b]);
        int32_t zero = bits[b] == 8 ? -128 : 0;
        for (int32_t i = 0; i < n; i++) {
          double got = (out[i] - zero) * unit;
          double expected = fmin(p[i], bits[b] == 8 ? 255.0 * unit : 32767.0 * unit);
          /* Half a unit of output rounding plus the exp error (6.8e-4 relative, up to twice
           * that after normalization). */
          cr_assert_leq(fabs(got - expected), 0.5 * unit + 1.4e-3 * p[i] + 1e-9,
                        "n %d bits %d i %d: %f vs %f", n, bits[b], i, got, expected);
        }
      }
    }
  }
}

/* Builds an LN block for the given qparams and gamma/beta through a one-node model. */
static void layer_norm_case(int32_t count, int32_t in_dtype) {
  model_builder b;
  builder_init(&b, 4, 1);
  int32_t dims[2] = {3, count};
  float gamma[64], beta[64];
  for (int32_t i = 0; i < count; i++) {
    gamma[i] = rng_uniform(-2.0f, 2.0f);
    beta[i] = rng_uniform(-1.0f, 1.0f);
  }
  int32_t x = add_tensor(&b, "x", DSR_TENSOR_INPUT, 2, dims, NULL);
  int32_t g = add_tensor(&b, "gamma", DSR_TENSOR_CONSTANT, 1, &count, gamma);
  int32_t be = add_tensor(&b, "beta", DSR_TENSOR_CONSTANT, 1, &count, beta);
  int32_t y = add_tensor(&b, "y", DSR_TENSOR_OUTPUT, 2, dims, NULL);
  int32_t inputs[3] = {x, g, be};
  dsr_node *node = add_node(&b, DSR_OP_LAYER_NORM, 3, inputs, y);
  node->attrs.norm.axis = -1;
  node->attrs.norm.epsilon = 1e-5f;
  b.model.input = x;
  b.model.output = y;

  float xv[3 * 64], yv[3 * 64];
  for (int32_t r = 0; r < 3; r++) {
    double mean = 0, var = 0;
    float offset = rng_uniform(-2.0f, 2.0f), spread = r == 2 ? 0.01f : rng_uniform(0.2f, 3.0f);
    for (int32_t i = 0; i < count; i++)
      mean += (xv[r * count + i] = offset + spread * rng_uniform(-1.0f, 1.0f));
    mean /= count;
    for (int32_t i = 0; i < count; i++)
      var += (xv[r * count + i] - mean) * (xv[r * count + i] - mean);
    var /= count;
    for (int32_t i = 0; i < count; i++)
      yv[r * count + i] =
          (float)((xv[r * count + i] - mean) / sqrt(var + 1e-5) * gamma[i] + beta[i]);
  }
  dsq_calibration calib;
  cr_assert_eq(dsq_calibration_init(&calib, &b.model, DSQ_CALIBRATION_MINMAX, NULL), DS_OK);
  calibrate_values(&calib, &b.model, x, xv);
  calibrate_values(&calib, &b.model, y, yv);
  dsq_options options = dsq_options_default();
  options.int16 = in_dtype == DSR_DTYPE_I16 ? DSQ_INT16_NORM_INPUT : 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsq_quantize(&b.model, &calib, &options, &err), DS_OK, "%s", err.message);
  cr_assert_eq(b.model.tensors[x].qparams.dtype, in_dtype);

  /* Reference: float LayerNorm of the dequantized input, then quantized. */
  void *buffers[4] = {alloc_like(&b.model.tensors[x]), NULL, NULL,
                      alloc_like(&b.model.tensors[y])};
  quantize_into(buffers[x], &b.model.tensors[x], xv);
  execute_node(&b.model, 0, buffers);
  const dsr_qparams *xq = &b.model.tensors[x].qparams, *yq = &b.model.tensors[y].qparams;
  for (int32_t r = 0; r < 3; r++) {
    double mean = 0, var = 0, d[64];
    for (int32_t i = 0; i < count; i++)
      mean += (d[i] = dequantize_value(dsr_fixed_load(buffers[x], xq->dtype, r * count + i), xq));
    mean /= count;
    for (int32_t i = 0; i < count; i++)
      var += (d[i] - mean) * (d[i] - mean);
    var /= count;
    for (int32_t i = 0; i < count; i++) {
      double ref = (d[i] - mean) / sqrt(var + 1e-5) * gamma[i] + beta[i];
      int32_t expected = quantize_value(ref, yq);
      int32_t got = dsr_fixed_load(buffers[y], yq->dtype, r * count + i);
      cr_assert_leq(abs(got - expected), 1, "D %d row %d i %d: got %d expected %d (ref %f)", count,
                    r, i, got, expected, ref);
    }
  }
  free(buffers[x]);
  free(buffers[y]);
  dsq_calibration_free(&calib);
  ds_model_free(&b.model);
}

Test(primitives, layer_norm_within_one_lsb) {
  layer_norm_case(8, DSR_DTYPE_I8);
  layer_norm_case(8, DSR_DTYPE_I16);
  layer_norm_case(33, DSR_DTYPE_I16);
  layer_norm_case(64, DSR_DTYPE_I8);
}

static double gelu_exact(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

static void gelu_case(uint32_t int16_flags, float range, int32_t max_error) {
  model_builder b;
  builder_init(&b, 2, 1);
  int32_t count = 65536;
  int32_t dims[1] = {count};
  int32_t x = add_tensor(&b, "x", DSR_TENSOR_INPUT, 1, dims, NULL);
  int32_t y = add_tensor(&b, "y", DSR_TENSOR_OUTPUT, 1, dims, NULL);
  int32_t inputs[1] = {x};
  add_node(&b, DSR_OP_GELU, 1, inputs, y);
  b.model.input = x;
  b.model.output = y;
  float xr[2] = {-range, range}, yr[2] = {(float)gelu_exact(-0.75), range};
  dsq_calibration calib;
  cr_assert_eq(dsq_calibration_init(&calib, &b.model, DSQ_CALIBRATION_MINMAX, NULL), DS_OK);
  dsq_calibration_observe_tensor(&calib, x, xr, 2);
  dsq_calibration_observe_tensor(&calib, y, yr, 2);
  dsq_options options = {int16_flags};
  cr_assert_eq(dsq_quantize(&b.model, &calib, &options, NULL), DS_OK);
  const dsr_qparams *xq = &b.model.tensors[x].qparams, *yq = &b.model.tensors[y].qparams;
  int32_t lo, hi;
  dsr_fixed_dtype_range(xq->dtype, &lo, &hi);
  void *buffers[2] = {alloc_like(&b.model.tensors[x]), alloc_like(&b.model.tensors[y])};
  for (int32_t i = 0; i < count; i++)
    dsr_fixed_store(buffers[0], xq->dtype, i, lo + i % (hi - lo + 1));
  execute_node(&b.model, 0, buffers);
  for (int32_t i = 0; i < count; i++) {
    int32_t q = lo + i % (hi - lo + 1);
    int32_t expected = quantize_value(gelu_exact(dequantize_value(q, xq)), yq);
    int32_t got = dsr_fixed_load(buffers[1], yq->dtype, i);
    cr_assert_leq(abs(got - expected), max_error, "input %d: got %d expected %d", q, got,
                  expected);
  }
  free(buffers[0]);
  free(buffers[1]);
  dsq_calibration_free(&calib);
  ds_model_free(&b.model);
}

Test(primitives, gelu_int8_table_is_exact) { gelu_case(0, 6.0f, 0); }

/* Linear interpolation over steps of h = 256 s_x errs by at most h^2 / 8 * max|gelu''| =
 * h^2 * 0.1; at s_x = s_y = 8 / 32767 that is 1.6 output units, plus half a unit of rounding. */
Test(primitives, gelu_int16_interpolation_within_two_lsb) {
  gelu_case(DSQ_INT16_ALL_ACTIVATIONS, 8.0f, 2);
}

Test(primitives, bilinear_taps_on_edges) {
  int32_t index[4], weight[4];
  /* An integer position takes one pixel with full weight. */
  dsr_fixed_bilinear_taps(2 << 8, 3 << 8, 4, 5, 5, index, weight);
  cr_expect_eq(weight[0], 65536);
  cr_expect_eq(index[0], 2 * 5 + 3);
  cr_expect_eq(weight[1] + weight[2] + weight[3], 0);
  /* The last pixel: its right and lower neighbours are outside but have weight 0 anyway. */
  dsr_fixed_bilinear_taps(3 << 8, 4 << 8, 4, 5, 7, index, weight);
  cr_expect_eq(weight[0], 65536);
  cr_expect_eq(index[0], 3 * 7 + 4);
  /* Half a pixel above the map: only the row-0 taps count, with half weight each way. */
  dsr_fixed_bilinear_taps(-128, 128, 4, 5, 5, index, weight);
  cr_expect_eq(weight[0] + weight[1], 0, "row -1 is zero padding");
  cr_expect_eq(weight[2], 128 * 128);
  cr_expect_eq(weight[3], 128 * 128);
  cr_expect_eq(index[2], 0);
  cr_expect_eq(index[3], 1);
  /* Far outside: no tap. */
  dsr_fixed_bilinear_taps(-(1 << 28), 1 << 28, 4, 5, 5, index, weight);
  cr_expect_eq(weight[0] + weight[1] + weight[2] + weight[3], 0);
  /* Fractional weights are exact products of the Q8 fractions. */
  dsr_fixed_bilinear_taps((1 << 8) + 64, (2 << 8) + 192, 4, 5, 5, index, weight);
  cr_expect_eq(weight[0], 192 * 64);
  cr_expect_eq(weight[1], 192 * 192);
  cr_expect_eq(weight[2], 64 * 64);
  cr_expect_eq(weight[3], 64 * 192);
  cr_expect_eq(weight[0] + weight[1] + weight[2] + weight[3], 65536);
  cr_expect_eq(index[3], 2 * 5 + 3);
}

/* ------------------------------------------------------------------ kernels */

/* A one-node model whose inputs and output are calibrated from given float values; the
 * reference is float arithmetic on the dequantized inputs and weights. */
typedef struct one_node {
  model_builder b;
  dsq_calibration calib;
  void *buffers[8];
} one_node;

static void one_node_quantize(one_node *t, uint32_t int16_flags) {
  dsq_options options = {int16_flags};
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsq_quantize(&t->b.model, &t->calib, &options, &err), DS_OK, "%s", err.message);
  for (int32_t i = 0; i < t->b.model.tensor_count; i++) {
    if (t->b.model.tensors[i].kind != DSR_TENSOR_CONSTANT)
      t->buffers[i] = alloc_like(&t->b.model.tensors[i]);
  }
}

static void one_node_free(one_node *t) {
  for (int32_t i = 0; i < 8; i++)
    free(t->buffers[i]);
  dsq_calibration_free(&t->calib);
  ds_model_free(&t->b.model);
}

/* Dequantized constant value i (weights per channel, biases per channel, int16 per tensor). */
static double constant_value(const dsr_tensor *t, int64_t i, int64_t inner) {
  if (t->channel_scales != NULL && t->qparams.dtype == DSR_DTYPE_I8)
    return (double)((const int8_t *)t->data_q)[i] *
           t->channel_scales[(i / inner) % t->channel_count];
  if (t->qparams.dtype == DSR_DTYPE_I32)
    return (double)((const int32_t *)t->data_q)[i] * t->channel_scales[i];
  return dequantize_value(dsr_fixed_load(t->data_q, t->qparams.dtype, i), &t->qparams);
}

static void conv_case(uint32_t int16_flags) {
  one_node t;
  memset(&t, 0, sizeof t);
  builder_init(&t.b, 4, 1);
  int32_t xd[4] = {1, 4, 5, 6}, wd[4] = {6, 2, 3, 3}, bd[1] = {6}, yd[4] = {1, 6, 3, 3};
  float w[6 * 2 * 9], bias[6], x[4 * 30], y[6 * 9];
  for (int i = 0; i < 108; i++)
    w[i] = rng_uniform(-0.5f, 0.5f);
  for (int i = 0; i < 6; i++)
    bias[i] = rng_uniform(-0.2f, 0.2f);
  for (int i = 0; i < 120; i++)
    x[i] = rng_uniform(-1.0f, 2.0f);
  int32_t xi = add_tensor(&t.b, "x", DSR_TENSOR_INPUT, 4, xd, NULL);
  int32_t wi = add_tensor(&t.b, "w", DSR_TENSOR_CONSTANT, 4, wd, w);
  int32_t bi = add_tensor(&t.b, "b", DSR_TENSOR_CONSTANT, 1, bd, bias);
  int32_t yi = add_tensor(&t.b, "y", DSR_TENSOR_OUTPUT, 4, yd, NULL);
  int32_t inputs[3] = {xi, wi, bi};
  dsr_node *node = add_node(&t.b, DSR_OP_CONV2D, 3, inputs, yi);
  dsr_conv_attrs a = {{2, 2}, {1, 0, 1, 1}, {1, 1}, 2};
  node->attrs.conv = a;
  t.b.model.input = xi;
  t.b.model.output = yi;

  /* Float conv for the output range. */
  for (int oc = 0; oc < 6; oc++)
    for (int oy = 0; oy < 3; oy++)
      for (int ox = 0; ox < 3; ox++) {
        double acc = bias[oc];
        for (int ic = 0; ic < 2; ic++)
          for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
              int iy = oy * 2 - 1 + ky, ix = ox * 2 + kx;
              if (iy < 0 || iy >= 5 || ix < 0 || ix >= 6)
                continue;
              acc += w[((oc * 2 + ic) * 3 + ky) * 3 + kx] * x[((oc / 3 * 2 + ic) * 5 + iy) * 6 + ix];
            }
        y[(oc * 3 + oy) * 3 + ox] = (float)acc;
      }
  cr_assert_eq(dsq_calibration_init(&t.calib, &t.b.model, DSQ_CALIBRATION_MINMAX, NULL), DS_OK);
  calibrate_values(&t.calib, &t.b.model, xi, x);
  calibrate_values(&t.calib, &t.b.model, yi, y);
  one_node_quantize(&t, int16_flags);
  const dsr_model *m = &t.b.model;
  quantize_into(t.buffers[xi], &m->tensors[xi], x);
  execute_node(m, 0, t.buffers);

  const dsr_qparams *xq = &m->tensors[xi].qparams, *yq = &m->tensors[yi].qparams;
  for (int oc = 0; oc < 6; oc++)
    for (int oy = 0; oy < 3; oy++)
      for (int ox = 0; ox < 3; ox++) {
        double acc = constant_value(&m->tensors[bi], oc, 1);
        for (int ic = 0; ic < 2; ic++)
          for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
              int iy = oy * 2 - 1 + ky, ix = ox * 2 + kx;
              if (iy < 0 || iy >= 5 || ix < 0 || ix >= 6)
                continue;
              int64_t wi_index = ((oc * 2 + ic) * 3 + ky) * 3 + kx;
              int64_t xi_index = ((oc / 3 * 2 + ic) * 5 + iy) * 6 + ix;
              acc += constant_value(&m->tensors[wi], wi_index, 18) *
                     dequantize_value(dsr_fixed_load(t.buffers[xi], xq->dtype, xi_index), xq);
            }
        int32_t expected = quantize_value(acc, yq);
        int32_t got = dsr_fixed_load(t.buffers[yi], yq->dtype, (oc * 3 + oy) * 3 + ox);
        cr_assert_leq(abs(got - expected), 1, "oc %d (%d, %d): got %d expected %d", oc, oy, ox,
                      got, expected);
      }
  one_node_free(&t);
}

Test(kernels, conv_within_one_lsb_int8) { conv_case(0); }

Test(kernels, conv_within_one_lsb_int16) { conv_case(DSQ_INT16_ALL_ACTIVATIONS); }

static void matmul_case(int constant_b, uint32_t int16_flags) {
  one_node t;
  memset(&t, 0, sizeof t);
  builder_init(&t.b, 3, 1);
  int32_t ad[3] = {2, 3, 5}, bd[3] = {2, 5, 4}, bcd[2] = {5, 4}, yd[3] = {2, 3, 4};
  float a[30], bv[40], y[24];
  for (int i = 0; i < 30; i++)
    a[i] = rng_uniform(-1.5f, 1.0f);
  for (int i = 0; i < 40; i++)
    bv[i] = rng_uniform(-1.0f, 1.0f);
  int32_t ai = add_tensor(&t.b, "a", DSR_TENSOR_INPUT, 3, ad, NULL);
  int32_t bi = constant_b ? add_tensor(&t.b, "b", DSR_TENSOR_CONSTANT, 2, bcd, bv)
                          : add_tensor(&t.b, "b", DSR_TENSOR_ACTIVATION, 3, bd, NULL);
  int32_t yi = add_tensor(&t.b, "y", DSR_TENSOR_OUTPUT, 3, yd, NULL);
  int32_t inputs[2] = {ai, bi};
  add_node(&t.b, DSR_OP_MATMUL, 2, inputs, yi);
  t.b.model.input = ai;
  t.b.model.output = yi;
  for (int n = 0; n < 2; n++)
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 4; j++) {
        double acc = 0;
        for (int k = 0; k < 5; k++)
          acc += a[(n * 3 + i) * 5 + k] * bv[(constant_b ? 0 : n * 20) + k * 4 + j];
        y[(n * 3 + i) * 4 + j] = (float)acc;
      }
  cr_assert_eq(dsq_calibration_init(&t.calib, &t.b.model, DSQ_CALIBRATION_MINMAX, NULL), DS_OK);
  calibrate_values(&t.calib, &t.b.model, ai, a);
  if (!constant_b)
    calibrate_values(&t.calib, &t.b.model, bi, bv);
  calibrate_values(&t.calib, &t.b.model, yi, y);
  one_node_quantize(&t, int16_flags);
  const dsr_model *m = &t.b.model;
  quantize_into(t.buffers[ai], &m->tensors[ai], a);
  if (!constant_b)
    quantize_into(t.buffers[bi], &m->tensors[bi], bv);
  execute_node(m, 0, t.buffers);
  const dsr_qparams *aq = &m->tensors[ai].qparams, *yq = &m->tensors[yi].qparams;
  for (int n = 0; n < 2; n++)
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 4; j++) {
        double acc = 0;
        for (int k = 0; k < 5; k++) {
          double av = dequantize_value(dsr_fixed_load(t.buffers[ai], aq->dtype, (n * 3 + i) * 5 + k), aq);
          double b = constant_b ? constant_value(&m->tensors[bi], k * 4 + j, 1)
                                : dequantize_value(dsr_fixed_load(t.buffers[bi], m->tensors[bi].qparams.dtype, n * 20 + k * 4 + j),
                                                   &m->tensors[bi].qparams);
          acc += av * b;
        }
        int32_t expected = quantize_value(acc, yq);
        int32_t got = dsr_fixed_load(t.buffers[yi], yq->dtype, (n * 3 + i) * 4 + j);
        cr_assert_leq(abs(got - expected), 1, "(%d, %d, %d): got %d expected %d", n, i, j, got,
                      expected);
      }
  one_node_free(&t);
}

Test(kernels, matmul_activations_within_one_lsb) { matmul_case(0, 0); }
Test(kernels, matmul_constant_within_one_lsb) { matmul_case(1, 0); }
Test(kernels, matmul_int16_within_one_lsb) { matmul_case(0, DSQ_INT16_ALL_ACTIVATIONS); }

/* Elementwise op with broadcasting: a (2, 3, 4) op b (3, 1). */
static void elementwise_case(int32_t op, int constant_b, uint32_t int16_flags, int32_t max_error) {
  one_node t;
  memset(&t, 0, sizeof t);
  builder_init(&t.b, 3, 1);
  int32_t ad[3] = {2, 3, 4}, bd[2] = {3, 1};
  float a[24], bv[3] = {0.75f, -1.5f, 2.25f}, y[24];
  for (int i = 0; i < 24; i++)
    a[i] = rng_uniform(-2.0f, 3.0f);
  if (!constant_b && op == DSR_OP_DIV) {
    bv[1] = -0.5f;
  }
  int32_t ai = add_tensor(&t.b, "a", DSR_TENSOR_INPUT, 3, ad, NULL);
  int32_t bi = add_tensor(&t.b, "b", constant_b ? DSR_TENSOR_CONSTANT : DSR_TENSOR_ACTIVATION, 2,
                          bd, constant_b ? bv : NULL);
  int32_t yi = add_tensor(&t.b, "y", DSR_TENSOR_OUTPUT, 3, ad, NULL);
  int32_t inputs[2] = {ai, bi};
  add_node(&t.b, op, 2, inputs, yi);
  t.b.model.input = ai;
  t.b.model.output = yi;
  for (int i = 0; i < 24; i++) {
    float b = bv[(i / 4) % 3];
    y[i] = op == DSR_OP_ADD ? a[i] + b
           : op == DSR_OP_SUB ? a[i] - b
           : op == DSR_OP_MUL ? a[i] * b
                              : a[i] / b;
  }
  cr_assert_eq(dsq_calibration_init(&t.calib, &t.b.model, DSQ_CALIBRATION_MINMAX, NULL), DS_OK);
  calibrate_values(&t.calib, &t.b.model, ai, a);
  if (!constant_b)
    calibrate_values(&t.calib, &t.b.model, bi, bv);
  calibrate_values(&t.calib, &t.b.model, yi, y);
  one_node_quantize(&t, int16_flags);
  const dsr_model *m = &t.b.model;
  quantize_into(t.buffers[ai], &m->tensors[ai], a);
  if (!constant_b)
    quantize_into(t.buffers[bi], &m->tensors[bi], bv);
  execute_node(m, 0, t.buffers);
  const dsr_qparams *aq = &m->tensors[ai].qparams, *yq = &m->tensors[yi].qparams;
  for (int i = 0; i < 24; i++) {
    double av = dequantize_value(dsr_fixed_load(t.buffers[ai], aq->dtype, i), aq);
    double b = constant_b ? (op == DSR_OP_DIV ? bv[(i / 4) % 3]
                                              : constant_value(&m->tensors[bi], (i / 4) % 3, 1))
                          : dequantize_value(dsr_fixed_load(t.buffers[bi], m->tensors[bi].qparams.dtype, (i / 4) % 3),
                                             &m->tensors[bi].qparams);
    double real = op == DSR_OP_ADD ? av + b : op == DSR_OP_SUB ? av - b : op == DSR_OP_MUL ? av * b : av / b;
    int32_t expected = quantize_value(real, yq);
    int32_t got = dsr_fixed_load(t.buffers[yi], yq->dtype, i);
    cr_assert_leq(abs(got - expected), max_error, "op %d element %d: got %d expected %d", op, i,
                  got, expected);
  }
  one_node_free(&t);
}

Test(kernels, add_sub_broadcast_within_one_lsb) {
  elementwise_case(DSR_OP_ADD, 0, 0, 1);
  elementwise_case(DSR_OP_SUB, 0, 0, 1);
  elementwise_case(DSR_OP_ADD, 1, 0, 1);
  elementwise_case(DSR_OP_ADD, 0, DSQ_INT16_ALL_ACTIVATIONS, 1);
}

Test(kernels, mul_div_within_one_lsb) {
  elementwise_case(DSR_OP_MUL, 0, 0, 1);
  elementwise_case(DSR_OP_MUL, 1, 0, 1);
  elementwise_case(DSR_OP_DIV, 1, 0, 1);
  elementwise_case(DSR_OP_DIV, 0, DSQ_INT16_ALL_ACTIVATIONS, 1);
}

Test(kernels, transpose_and_gather_move_data) {
  one_node t;
  memset(&t, 0, sizeof t);
  builder_init(&t.b, 5, 2);
  int32_t xd[3] = {2, 3, 4}, td[3] = {4, 2, 3}, id[1] = {3}, gd[3] = {4, 2, 3};
  float x[24], indices[3] = {2, 0, -1};
  for (int i = 0; i < 24; i++)
    x[i] = (float)i * 0.25f - 3.0f;
  int32_t xi = add_tensor(&t.b, "x", DSR_TENSOR_INPUT, 3, xd, NULL);
  int32_t ti = add_tensor(&t.b, "t", DSR_TENSOR_ACTIVATION, 3, td, NULL);
  int32_t ii = add_tensor(&t.b, "i", DSR_TENSOR_CONSTANT, 1, id, indices);
  int32_t gi = add_tensor(&t.b, "g", DSR_TENSOR_OUTPUT, 3, gd, NULL);
  int32_t in1[1] = {xi}, in2[2] = {ti, ii};
  dsr_node *tr = add_node(&t.b, DSR_OP_TRANSPOSE, 1, in1, ti);
  int32_t perm[3] = {2, 0, 1};
  memcpy(tr->attrs.transpose.perm, perm, sizeof perm);
  dsr_node *ga = add_node(&t.b, DSR_OP_GATHER, 2, in2, gi);
  ga->attrs.softmax.axis = 2;
  t.b.model.input = xi;
  t.b.model.output = gi;
  cr_assert_eq(dsq_calibration_init(&t.calib, &t.b.model, DSQ_CALIBRATION_MINMAX, NULL), DS_OK);
  calibrate_values(&t.calib, &t.b.model, xi, x);
  calibrate_values(&t.calib, &t.b.model, ti, x);
  calibrate_values(&t.calib, &t.b.model, gi, x);
  one_node_quantize(&t, 0);
  const dsr_model *m = &t.b.model;
  cr_assert_eq(m->tensors[xi].qparams.scale, m->tensors[gi].qparams.scale,
               "data movement shares qparams");
  quantize_into(t.buffers[xi], &m->tensors[xi], x);
  execute_node(m, 0, t.buffers);
  execute_node(m, 1, t.buffers);

  /* t[k][n][c] = x[n][c][k] and g[k][n][j] = t[k][n][index j], index -1 meaning 2. */
  const int8_t *xq = t.buffers[xi], *tq = t.buffers[ti], *gq = t.buffers[gi];
  int resolved[3] = {2, 0, 2};
  for (int k = 0; k < 4; k++)
    for (int n = 0; n < 2; n++)
      for (int c = 0; c < 3; c++) {
        cr_assert_eq(tq[(k * 2 + n) * 3 + c], xq[(n * 3 + c) * 4 + k], "transpose (%d, %d, %d)",
                     k, n, c);
        cr_assert_eq(gq[(k * 2 + n) * 3 + c], tq[(k * 2 + n) * 3 + resolved[c]],
                     "gather (%d, %d, %d)", k, n, c);
      }
  one_node_free(&t);
}
