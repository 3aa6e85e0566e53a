/*
 * Tests of the MatMul plus bias Add fusion on inputs of any rank. They check which patterns
 * fuse into one GEMM and that the fused float result equals the unfused graph's bit for bit.
 * The fixed-point GEMM reference kernel must stay within one step of the exact integer result
 * and close to float, and the fused node must survive the artifact and the cost model.
 *
 * The ONNX models are built here with protobuf-c: Y = Add(MatMul(X, W), B). An optional
 * Identity between MatMul and Add keeps the two apart, which gives the unfused reference of
 * the same graph.
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
#include "nas/dsn_layer.h"
#include "nas/dsn_preset.h"
#include "onnx.pb-c.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_quantize.h"
#include "runtime/dsr_fixed.h"
#include "runtime/dsr_fixed_internal.h"
#include "runtime/dsr_fixed_math.h"
#include "runtime/dsr_runtime.h"
#include "runtime/dsr_slice.h"

#define MAX_AXES 6

/* Deterministic values in [-1, 1) (xorshift), so failures reproduce. */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static float rng_value(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) & 0xffff) / 32768.0f - 1.0f;
}

/* ---- The ONNX graph ------------------------------------------------------------------ */

/* Parameters cross into Criterion's test processes by value, so everything is inline. */
typedef struct fusion_case {
  char name[40];
  int32_t x_rank;
  int64_t x_dims[MAX_AXES];
  int64_t n;                 /* columns of W, (K, N) with K the last axis of X */
  int32_t bias_rank;
  int64_t bias_dims[MAX_AXES];
  int32_t bias_first;        /* Add(B, product) instead of Add(product, B) */
  int32_t weight_from_input; /* W = Squeeze(X, 0): an activation, not a constant */
  int32_t product_reused;    /* the output is Add(Y, product), a second use of the product */
  int32_t fuses;             /* expected: 1 when the pair becomes one GEMM */
} fusion_case;

/* Owns every message of one ModelProto; the strings are literals or live in the builder. */
typedef struct onnx_builder {
  Onnx__ModelProto model;
  Onnx__OperatorSetIdProto opset;
  Onnx__OperatorSetIdProto *opset_list[1];
  Onnx__GraphProto graph;
  Onnx__NodeProto nodes[5];
  Onnx__NodeProto *node_list[5];
  char *node_inputs[5][2];
  char *node_outputs[5][1];
  Onnx__TensorProto inits[3];
  Onnx__TensorProto *init_list[3];
  int64_t init_dims[3][MAX_AXES];
  float *init_data[3];
  Onnx__ValueInfoProto io[2];
  Onnx__ValueInfoProto *input_list[1];
  Onnx__ValueInfoProto *output_list[1];
  Onnx__TypeProto types[2];
  Onnx__TypeProto__Tensor tensor_types[2];
  Onnx__TensorShapeProto shape;
  Onnx__TensorShapeProto__Dimension dims[MAX_AXES];
  Onnx__TensorShapeProto__Dimension *dim_list[MAX_AXES];
  int64_t squeeze_axis;
} onnx_builder;

static int64_t product_of(const int64_t *dims, int32_t rank) {
  int64_t count = 1;
  for (int32_t i = 0; i < rank; i++)
    count *= dims[i];
  return count;
}

static void add_node(onnx_builder *b, const char *op_type, const char *in0, const char *in1,
                     const char *out) {
  size_t i = b->graph.n_node++;
  Onnx__NodeProto *n = &b->nodes[i];
  onnx__node_proto__init(n);
  n->op_type = (char *)op_type;
  n->name = (char *)out;
  b->node_inputs[i][0] = (char *)in0;
  b->node_inputs[i][1] = (char *)in1;
  n->n_input = in1 != NULL ? 2 : 1;
  n->input = b->node_inputs[i];
  b->node_outputs[i][0] = (char *)out;
  n->n_output = 1;
  n->output = b->node_outputs[i];
  b->node_list[i] = n;
}

/* Adds a float initializer with random values, or an int64 one holding *int64_value. */
static void add_initializer(onnx_builder *b, const char *name, int32_t rank,
                            const int64_t *dims, const int64_t *int64_value) {
  size_t i = b->graph.n_initializer++;
  Onnx__TensorProto *t = &b->inits[i];
  onnx__tensor_proto__init(t);
  t->name = (char *)name;
  memcpy(b->init_dims[i], dims, sizeof dims[0] * (size_t)rank);
  t->n_dims = (size_t)rank;
  t->dims = b->init_dims[i];
  t->has_data_type = 1;
  if (int64_value != NULL) {
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t->n_int64_data = 1;
    t->int64_data = (int64_t *)int64_value;
  } else {
    int64_t count = product_of(dims, rank);
    b->init_data[i] = malloc(sizeof(float) * (size_t)count);
    cr_assert_not_null(b->init_data[i]);
    for (int64_t k = 0; k < count; k++)
      b->init_data[i][k] = rng_value();
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_float_data = (size_t)count;
    t->float_data = b->init_data[i];
  }
  b->init_list[i] = t;
}

static void set_value_info(onnx_builder *b, int32_t slot, const char *name,
                           const fusion_case *c) {
  Onnx__ValueInfoProto *v = &b->io[slot];
  onnx__value_info_proto__init(v);
  onnx__type_proto__init(&b->types[slot]);
  onnx__type_proto__tensor__init(&b->tensor_types[slot]);
  v->name = (char *)name;
  v->type = &b->types[slot];
  b->types[slot].value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  b->types[slot].tensor_type = &b->tensor_types[slot];
  b->tensor_types[slot].has_elem_type = 1;
  b->tensor_types[slot].elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  if (slot != 0)
    return; /* the output's shape is inferred */
  onnx__tensor_shape_proto__init(&b->shape);
  for (int32_t k = 0; k < c->x_rank; k++) {
    onnx__tensor_shape_proto__dimension__init(&b->dims[k]);
    b->dims[k].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    b->dims[k].dim_value = c->x_dims[k];
    b->dim_list[k] = &b->dims[k];
  }
  b->shape.n_dim = (size_t)c->x_rank;
  b->shape.dim = b->dim_list;
  b->tensor_types[slot].shape = &b->shape;
}

/*
 * Serializes the graph of c (caller frees *bytes). With unfused, an Identity sits between
 * MatMul and Add. The random constants depend only on rng_state at the call, so two calls
 * from the same state give the same weights.
 */
static void build_onnx(const fusion_case *c, int unfused, uint8_t **bytes, size_t *size) {
  onnx_builder *b = calloc(1, sizeof *b);
  cr_assert_not_null(b);
  onnx__model_proto__init(&b->model);
  onnx__operator_set_id_proto__init(&b->opset);
  onnx__graph_proto__init(&b->graph);
  b->opset.has_version = 1;
  b->opset.version = 16;
  b->opset.domain = (char *)"";
  b->opset_list[0] = &b->opset;
  b->model.has_ir_version = 1;
  b->model.ir_version = 8;
  b->model.n_opset_import = 1;
  b->model.opset_import = b->opset_list;
  b->model.graph = &b->graph;
  b->graph.name = (char *)"fusion";
  b->graph.node = b->node_list;
  b->graph.initializer = b->init_list;

  const char *weight = "W";
  if (c->weight_from_input) {
    b->squeeze_axis = 0;
    int64_t axes_dims[1] = {1};
    add_initializer(b, "axes", 1, axes_dims, &b->squeeze_axis);
    add_node(b, "Squeeze", "X", "axes", "W");
  } else {
    int64_t w_dims[2] = {c->x_dims[c->x_rank - 1], c->n};
    add_initializer(b, weight, 2, w_dims, NULL);
  }
  add_initializer(b, "B", c->bias_rank, c->bias_dims, NULL);
  add_node(b, "MatMul", "X", weight, "P");
  const char *product = "P";
  if (unfused) {
    add_node(b, "Identity", "P", NULL, "P_copy");
    product = "P_copy";
  }
  if (c->bias_first)
    add_node(b, "Add", "B", product, "Y");
  else
    add_node(b, "Add", product, "B", "Y");
  const char *output = "Y";
  if (c->product_reused) {
    add_node(b, "Add", "Y", product, "Z");
    output = "Z";
  }

  set_value_info(b, 0, "X", c);
  set_value_info(b, 1, output, c);
  b->input_list[0] = &b->io[0];
  b->output_list[0] = &b->io[1];
  b->graph.n_input = 1;
  b->graph.input = b->input_list;
  b->graph.n_output = 1;
  b->graph.output = b->output_list;

  *size = onnx__model_proto__get_packed_size(&b->model);
  *bytes = malloc(*size);
  cr_assert_not_null(*bytes);
  cr_assert_eq(onnx__model_proto__pack(&b->model, *bytes), *size);
  for (int32_t i = 0; i < 3; i++)
    free(b->init_data[i]);
  free(b);
}

/* Imports c's graph with the constants drawn from seed. */
static void import_case(const fusion_case *c, int unfused, uint64_t seed, dsr_model *model,
                        dsc_report *report) {
  rng_state = seed;
  uint8_t *bytes = NULL;
  size_t size = 0;
  build_onnx(c, unfused, &bytes, &size);
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dsc_import_buffer(bytes, size, c->name, NULL, model, report, &err);
  free(bytes);
  cr_assert_eq(status, DS_OK, "%s: %s %s", c->name, ds_status_name(status), err.message);
}

/* ---- Running a model ----------------------------------------------------------------- */

static void *arena_for(const dsr_model *model, dsr_mode mode, size_t *bytes) {
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan(model, mode, 0, &plan, &err), DS_OK, "plan: %s", err.message);
  *bytes = plan.arena_bytes;
  void *arena = aligned_alloc(64, (plan.arena_bytes + 64) / 64 * 64);
  cr_assert_not_null(arena);
  return arena;
}

/* Runs model on input in mode and returns the output (caller frees). When quantized_input
 * is not NULL it receives the raw input values the fixed-point run used. */
static float *run_model(const dsr_model *model, dsr_mode mode, const float *input,
                        void *quantized_input) {
  size_t bytes = 0;
  void *arena = arena_for(model, mode, &bytes);
  ds_error err;
  ds_error_clear(&err);
  dsr_context ctx;
  cr_assert_eq(dsr_context_init(&ctx, model, mode, 0, arena, bytes, &err), DS_OK, "context: %s",
               err.message);
  const dsr_tensor *in = &model->tensors[model->input];
  int64_t in_count = dsr_tensor_elements(in);
  int64_t out_count = dsr_tensor_elements(&model->tensors[model->output]);
  memcpy(dsr_input_f32(&ctx), input, sizeof(float) * (size_t)in_count);
  dsr_invoke(&ctx);
  float *out = malloc(sizeof(float) * (size_t)out_count);
  cr_assert_not_null(out);
  memcpy(out, dsr_output_f32(&ctx), sizeof(float) * (size_t)out_count);
  if (quantized_input != NULL) {
    size_t value_bytes = in->qparams.dtype == DSR_DTYPE_I8 ? 1 : 2;
    memcpy(quantized_input, dsr_tensor_data(&ctx, model->input),
           value_bytes * (size_t)in_count);
  }
  free(arena);
  return out;
}

static float *random_values(int64_t count) {
  float *values = malloc(sizeof(float) * (size_t)(count > 0 ? count : 1));
  cr_assert_not_null(values);
  for (int64_t i = 0; i < count; i++)
    values[i] = rng_value();
  return values;
}

/* The node of model with op, or NULL. */
static const dsr_node *find_op(const dsr_model *model, int32_t op) {
  for (int32_t i = 0; i < model->node_count; i++) {
    if (model->nodes[i].op == op)
      return &model->nodes[i];
  }
  return NULL;
}

/* ---- Which patterns fuse -------------------------------------------------------------- */

static fusion_case fusion_cases[] = {
    {"rank2", 2, {6, 5}, 4, 2, {1, 4}, 0, 0, 0, 1},
    {"rank3", 3, {1, 6, 5}, 4, 1, {4}, 0, 0, 0, 1},
    {"rank3_bias_first", 3, {2, 6, 5}, 4, 3, {1, 1, 4}, 1, 0, 0, 1},
    {"rank4", 4, {1, 3, 4, 5}, 4, 4, {1, 1, 1, 4}, 0, 0, 0, 1},
    {"rank4_bias_first", 4, {1, 3, 4, 5}, 7, 1, {7}, 1, 0, 0, 1},
    {"bias_per_row", 3, {1, 6, 5}, 4, 2, {6, 4}, 0, 0, 0, 0},
    {"bias_column", 3, {1, 6, 5}, 4, 2, {6, 1}, 1, 0, 0, 0},
    {"bias_widens_rank", 3, {1, 6, 5}, 4, 4, {1, 1, 1, 4}, 0, 0, 0, 0},
    {"weight_not_constant", 3, {1, 4, 4}, 4, 1, {4}, 0, 1, 0, 0},
    {"product_used_twice", 3, {1, 6, 5}, 4, 1, {4}, 0, 0, 1, 0},
};

ParameterizedTestParameters(fusion, pattern_fuses_only_when_valid) {
  return cr_make_param_array(fusion_case, fusion_cases,
                             sizeof fusion_cases / sizeof fusion_cases[0]);
}

/* Fusion count and ops, then the float output: equal bit for bit to the unfused graph's and
 * close to a double-precision sum of the same constants. */
ParameterizedTest(fusion_case *c, fusion, pattern_fuses_only_when_valid) {
  dsr_model fused, unfused;
  dsc_report report, unfused_report;
  import_case(c, 0, 11, &fused, &report);
  import_case(c, 1, 11, &unfused, &unfused_report);

  cr_expect_eq(report.matmul_add_fused_count, c->fuses, "%s: %d fused",
               c->name, report.matmul_add_fused_count);
  cr_expect_eq(report.ops_after[DSR_OP_GEMM], c->fuses, "%s", c->name);
  cr_expect_eq(report.ops_after[DSR_OP_MATMUL], 1 - c->fuses, "%s", c->name);
  cr_expect_eq(report.ops_after[DSR_OP_ADD], 1 - c->fuses + c->product_reused, "%s", c->name);
  cr_expect_eq(unfused_report.matmul_add_fused_count, 0, "%s", c->name);

  const dsr_tensor *y = &fused.tensors[fused.output];
  const dsr_tensor *y_unfused = &unfused.tensors[unfused.output];
  cr_assert_eq(y->rank, y_unfused->rank, "%s", c->name);
  for (int32_t k = 0; k < y->rank; k++)
    cr_assert_eq(y->dims[k], y_unfused->dims[k], "%s axis %d", c->name, k);
  if (c->fuses) {
    const dsr_node *gemm = find_op(&fused, DSR_OP_GEMM);
    cr_assert_not_null(gemm);
    cr_expect_eq(gemm->input_count, 3);
    cr_expect_eq(gemm->attrs.gemm.alpha, 1.0f);
    cr_expect_eq(gemm->attrs.gemm.beta, 1.0f);
    cr_expect_eq(gemm->attrs.gemm.trans_a, 0);
    cr_expect_eq(gemm->attrs.gemm.trans_b, 0);
    cr_expect_eq(y->rank, c->x_rank, "%s: the fused output keeps the input rank", c->name);
    cr_expect_eq(y->dims[y->rank - 1], c->n);
  }

  rng_state = 99;
  int64_t in_count = dsr_tensor_elements(&fused.tensors[fused.input]);
  float *input = random_values(in_count);
  float *out = run_model(&fused, DSR_MODE_FLOAT, input, NULL);
  float *out_unfused = run_model(&unfused, DSR_MODE_FLOAT, input, NULL);
  int64_t count = dsr_tensor_elements(y);
  int64_t differ = 0;
  for (int64_t i = 0; i < count; i++)
    differ += memcmp(&out[i], &out_unfused[i], sizeof(float)) != 0;
  cr_expect_eq(differ, 0, "%s: %lld of %lld outputs differ from the unfused graph", c->name,
               (long long)differ, (long long)count);

  /* out[..., j] against sum_p x[row, p] w[p, j] + b[j] in double, where the graph takes W and
   * B as constants (the weight_not_constant case is checked against the unfused graph only). */
  if (!c->weight_from_input && c->fuses) {
    const dsr_node *gemm = find_op(&fused, DSR_OP_GEMM);
    const float *w = fused.tensors[gemm->inputs[1]].data_f32;
    const float *bias = fused.tensors[gemm->inputs[2]].data_f32;
    int32_t k_count = (int32_t)c->x_dims[c->x_rank - 1], n = (int32_t)c->n;
    double worst = 0.0;
    for (int64_t row = 0; row < count / n; row++) {
      for (int32_t j = 0; j < n; j++) {
        double expected = bias[j];
        for (int32_t p = 0; p < k_count; p++)
          expected += (double)input[row * k_count + p] * w[(int64_t)p * n + j];
        worst = fmax(worst, fabs(expected - out[row * n + j]));
      }
    }
    cr_expect_leq(worst, 1e-5, "%s: max abs diff %g from the double sum", c->name, worst);
  }
  free(input);
  free(out);
  free(out_unfused);
  ds_model_free(&fused);
  ds_model_free(&unfused);
}

Test(fusion, report_counts_fused_pairs) {
  dsr_model model;
  dsc_report report;
  import_case(&fusion_cases[3], 0, 5, &model, &report);
  const dsc_pass_stats *pass = NULL;
  for (int32_t i = 0; i < report.pass_count; i++) {
    if (strcmp(report.passes[i].name, "MatMul+Add fusion") == 0)
      pass = &report.passes[i];
  }
  cr_assert_not_null(pass);
  cr_expect_eq(pass->changed_count, 1);
  cr_expect_eq(pass->nodes_before - pass->nodes_after, 1, "MatMul and Add become one node");
  cr_expect_eq(pass->tensors_before - pass->tensors_after, 1, "the product is no longer used");
  cr_expect_eq(model.node_count, 1);
  ds_model_free(&model);
}

/* ---- Fixed point --------------------------------------------------------------------- */

/* Calibrates model on image_count random inputs, the first one first_image when it is not
 * NULL, and quantizes it with int16 flags. */
static void quantize_random(dsr_model *model, int32_t image_count, const float *first_image,
                            uint32_t int16_flags) {
  int64_t in_count = dsr_tensor_elements(&model->tensors[model->input]);
  float *images = random_values(in_count * image_count);
  if (first_image != NULL)
    memcpy(images, first_image, sizeof(float) * (size_t)in_count);
  ds_error err;
  ds_error_clear(&err);
  dsq_calibration calib;
  cr_assert_eq(dsq_calibration_init(&calib, model, DSQ_CALIBRATION_MINMAX, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(dsq_calibration_run(&calib, model, images, image_count, &err), DS_OK, "%s",
               err.message);
  dsq_options options = dsq_options_default();
  options.int16 = int16_flags;
  cr_assert_eq(dsq_quantize(model, &calib, &options, &err), DS_OK, "%s", err.message);
  dsq_calibration_free(&calib);
  free(images);
}

/*
 * Runs the fused GEMM of c in fixed point. Each output must be within one step of
 * z_y + round(s_x * s_w[j] / s_y * (bias_q[j] + sum (x_q - z_x) w_q)), computed in double from
 * the quantized operands, because the requantization rounds twice. It must also be within 3%
 * of the largest output magnitude from the float model.
 */
static void check_fixed_gemm(const fusion_case *c, uint32_t int16_flags) {
  dsr_model model;
  import_case(c, 0, 21, &model, NULL);
  rng_state = 7;
  int64_t in_count = dsr_tensor_elements(&model.tensors[model.input]);
  float *input = random_values(in_count);
  /* Calibrated on the test input too, so that no output saturates. */
  quantize_random(&model, 8, input, int16_flags);
  const dsr_node *gemm = find_op(&model, DSR_OP_GEMM);
  cr_assert_not_null(gemm);
  const dsr_tensor *xt = &model.tensors[gemm->inputs[0]];
  const dsr_tensor *wt = &model.tensors[gemm->inputs[1]];
  const dsr_tensor *bt = &model.tensors[gemm->inputs[2]];
  const dsr_tensor *yt = &model.tensors[gemm->output];
  cr_assert_eq(yt->rank, c->x_rank);

  void *x_q = calloc((size_t)in_count, 2);
  cr_assert_not_null(x_q);
  float *fixed = run_model(&model, DSR_MODE_FIXED, input, x_q);
  float *real = run_model(&model, DSR_MODE_FLOAT, input, NULL);

  int32_t k_count = (int32_t)c->x_dims[c->x_rank - 1], n = (int32_t)c->n;
  int64_t rows = dsr_tensor_elements(yt) / n;
  const int8_t *w_q = wt->data_q;
  const int32_t *b_q = bt->data_q;
  double largest = 0.0, worst_float = 0.0;
  for (int64_t i = 0; i < rows * n; i++)
    largest = fmax(largest, fabs(real[i]));
  for (int64_t row = 0; row < rows; row++) {
    for (int32_t j = 0; j < n; j++) {
      double acc = b_q[j];
      for (int32_t p = 0; p < k_count; p++) {
        int32_t xv = dsr_fixed_load(x_q, xt->qparams.dtype, row * k_count + p);
        acc += (double)(xv - xt->qparams.zero_point) * w_q[(int64_t)p * n + j];
      }
      double scale_w = wt->channel_scales[wt->channel_count == 1 ? 0 : j];
      double exact = acc * xt->qparams.scale * scale_w / yt->qparams.scale;
      int32_t lo, hi;
      dsr_fixed_dtype_range(yt->qparams.dtype, &lo, &hi);
      double expected = fmin(fmax(round(exact) + yt->qparams.zero_point, lo), hi);
      double got = round(fixed[row * n + j] / yt->qparams.scale) + yt->qparams.zero_point;
      cr_assert_leq(fabs(got - expected), 1.0, "%s (%lld, %d): got %g, expected %g", c->name,
                    (long long)row, j, got, expected);
      worst_float = fmax(worst_float, fabs(fixed[row * n + j] - real[row * n + j]));
    }
  }
  cr_expect_leq(worst_float, 0.03 * largest, "%s: fixed differs from float by %g (largest %g)",
                c->name, worst_float, largest);
  free(input);
  free(x_q);
  free(fixed);
  free(real);
  ds_model_free(&model);
}

Test(fixed, rank3_gemm_int8_input) { check_fixed_gemm(&fusion_cases[1], 0); }

Test(fixed, rank4_gemm_int8_input) { check_fixed_gemm(&fusion_cases[3], 0); }

Test(fixed, rank4_gemm_int16_input) {
  check_fixed_gemm(&fusion_cases[4], DSQ_INT16_ALL_ACTIVATIONS);
}

/* The fused GEMM and the unfused MatMul then Add, both in fixed point, against float: the
 * fused model drops one requantization, so it is no further from float than the unfused. */
Test(fixed, fused_no_less_accurate_than_unfused) {
  const fusion_case *c = &fusion_cases[3];
  double error[2] = {0.0, 0.0};
  for (int32_t unfused = 0; unfused < 2; unfused++) {
    dsr_model model;
    import_case(c, unfused, 31, &model, NULL);
    quantize_random(&model, 8, NULL, DSQ_INT16_DEFAULT);
    rng_state = 3;
    int64_t in_count = dsr_tensor_elements(&model.tensors[model.input]);
    int64_t out_count = dsr_tensor_elements(&model.tensors[model.output]);
    for (int32_t image = 0; image < 4; image++) {
      float *input = random_values(in_count);
      float *fixed = run_model(&model, DSR_MODE_FIXED, input, NULL);
      float *real = run_model(&model, DSR_MODE_FLOAT, input, NULL);
      for (int64_t i = 0; i < out_count; i++)
        error[unfused] += ((double)fixed[i] - real[i]) * ((double)fixed[i] - real[i]);
      free(input);
      free(fixed);
      free(real);
    }
    ds_model_free(&model);
  }
  cr_log_info("squared error against float: fused %g, unfused %g", error[0], error[1]);
  cr_expect_leq(error[0], error[1] * 1.05, "fused %g, unfused %g", error[0], error[1]);
}

/* The reference kernel and the kernel dsr_fixed_execute picks give the same bytes for a
 * rank-4 GEMM of more than one 64-column block. */
Test(fixed, reference_matches_executed_rank4) {
  static const fusion_case wide = {"rank4_wide", 4, {1, 3, 4, 9}, 70, 1, {70}, 0, 0, 0, 1};
  dsr_model model;
  import_case(&wide, 0, 71, &model, NULL);
  quantize_random(&model, 4, NULL, DSQ_INT16_DEFAULT);
  const dsr_node *gemm = find_op(&model, DSR_OP_GEMM);
  cr_assert_not_null(gemm);
  int32_t node_index = (int32_t)(gemm - model.nodes);
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_fixed_check_node(&model, node_index, &err), DS_OK, "%s", err.message);

  const dsr_tensor *xt = &model.tensors[gemm->inputs[0]];
  const dsr_tensor *yt = &model.tensors[gemm->output];
  int64_t in_count = dsr_tensor_elements(xt);
  int64_t out_count = dsr_tensor_elements(yt);
  size_t out_bytes = (size_t)out_count * (yt->qparams.dtype == DSR_DTYPE_I8 ? 1 : 2);
  int8_t *x_q = malloc((size_t)in_count);
  uint8_t *executed = malloc(out_bytes), *reference = malloc(out_bytes);
  size_t scratch_bytes = dsr_fixed_scratch_bytes(&model, node_index);
  uint8_t *scratch = aligned_alloc(64, (scratch_bytes + 64) / 64 * 64);
  cr_assert(x_q != NULL && executed != NULL && reference != NULL && scratch != NULL);
  cr_assert_eq(xt->qparams.dtype, DSR_DTYPE_I8);
  for (int64_t i = 0; i < in_count; i++)
    x_q[i] = (int8_t)(rng_value() * 128.0f);
  memset(executed, 0x33, out_bytes);
  memset(reference, 0xaa, out_bytes);

  const void *inputs[DSR_MAX_NODE_INPUTS] = {x_q, model.tensors[gemm->inputs[1]].data_q,
                                             model.tensors[gemm->inputs[2]].data_q, NULL};
  dsr_fixed_execute(&model, node_index, inputs, executed, scratch, dsr_slice_none());
  dsr_fixed_execute_reference(&model, node_index, inputs, reference, scratch, dsr_slice_none());
  for (size_t i = 0; i < out_bytes; i++)
    cr_assert_eq(executed[i], reference[i], "byte %zu: executed %u, reference %u", i,
                 executed[i], reference[i]);
  free(x_q);
  free(executed);
  free(reference);
  free(scratch);
  ds_model_free(&model);
}

/* A quantized rank-4 GEMM written to an artifact and read back computes the same bytes. */
Test(fixed, artifact_round_trip_rank4_gemm) {
  dsr_model model, read_back;
  import_case(&fusion_cases[4], 0, 41, &model, NULL);
  quantize_random(&model, 4, NULL, DSQ_INT16_DEFAULT);
  ds_error err;
  ds_error_clear(&err);
  uint8_t *bytes = NULL;
  size_t size = 0;
  cr_assert_eq(dsf_write_buffer(&model, NULL, NULL, NULL, &bytes, &size, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(dsf_read_buffer(bytes, size, "fused", &read_back, NULL, NULL, &err), DS_OK, "%s",
               err.message);
  const dsr_node *gemm = find_op(&read_back, DSR_OP_GEMM);
  cr_assert_not_null(gemm);
  const dsr_tensor *a = &read_back.tensors[gemm->inputs[0]];
  const dsr_tensor *y = &read_back.tensors[gemm->output];
  cr_expect_eq(a->rank, 4);
  cr_expect_eq(y->rank, 4);
  cr_expect_eq(y->dims[3], 7);
  cr_expect_eq(gemm->qword_count, 2 + 2 * 7);

  rng_state = 5;
  int64_t in_count = dsr_tensor_elements(&model.tensors[model.input]);
  int64_t out_count = dsr_tensor_elements(&model.tensors[model.output]);
  float *input = random_values(in_count);
  float *before = run_model(&model, DSR_MODE_FIXED, input, NULL);
  float *after = run_model(&read_back, DSR_MODE_FIXED, input, NULL);
  cr_expect_eq(memcmp(before, after, sizeof(float) * (size_t)out_count), 0);
  free(input);
  free(before);
  free(after);
  free(bytes);
  ds_model_free(&read_back);
  ds_model_free(&model);
}

/* A quantized fused GEMM whose bias is not N values along the last axis is rejected. */
Test(fixed, check_rejects_bias_across_rows) {
  dsr_model model;
  import_case(&fusion_cases[1], 0, 51, &model, NULL);
  quantize_random(&model, 2, NULL, DSQ_INT16_DEFAULT);
  const dsr_node *gemm = find_op(&model, DSR_OP_GEMM);
  cr_assert_not_null(gemm);
  int32_t node_index = (int32_t)(gemm - model.nodes);
  dsr_tensor *bias = &model.tensors[gemm->inputs[2]];
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_fixed_check_node(&model, node_index, &err), DS_OK, "%s", err.message);
  /* (4) becomes (4, 1): the same 4 values, now one per row. */
  bias->rank = 2;
  bias->dims[0] = 4;
  bias->dims[1] = 1;
  cr_expect_neq(dsr_fixed_check_node(&model, node_index, &err), DS_OK);
  cr_expect(strstr(err.message, "last axis") != NULL, "%s", err.message);
  ds_model_free(&model);
}

/* ---- Plan-time checks of the runtime model -------------------------------------------- */

typedef struct gemm_model {
  dsr_model model;
  dsr_tensor tensors[4];
  dsr_node node;
  float w[20];
  float c[12];
} gemm_model;

/* A (2, 3, 5) x (5, 4) + c GEMM with output (2, 3, 4). */
static void gemm_model_init(gemm_model *g) {
  memset(g, 0, sizeof *g);
  snprintf(g->model.name, sizeof g->model.name, "gemm");
  g->model.tensors = g->tensors;
  g->model.nodes = &g->node;
  g->model.tensor_count = 4;
  g->model.node_count = 1;
  g->model.input = 0;
  g->model.output = 3;

  int32_t dims[4][3] = {{2, 3, 5}, {5, 4}, {4}, {2, 3, 4}};
  int32_t ranks[4] = {3, 2, 1, 3};
  uint8_t kinds[4] = {DSR_TENSOR_INPUT, DSR_TENSOR_CONSTANT, DSR_TENSOR_CONSTANT,
                      DSR_TENSOR_OUTPUT};
  for (int32_t i = 0; i < 4; i++) {
    dsr_tensor *t = &g->tensors[i];
    snprintf(t->name, sizeof t->name, "t%d", i);
    t->kind = kinds[i];
    t->rank = ranks[i];
    memcpy(t->dims, dims[i], sizeof(int32_t) * 3);
  }
  g->tensors[1].data_f32 = g->w;
  g->tensors[2].data_f32 = g->c;

  snprintf(g->node.name, sizeof g->node.name, "linear");
  g->node.op = DSR_OP_GEMM;
  g->node.input_count = 3;
  g->node.inputs[0] = 0;
  g->node.inputs[1] = 1;
  g->node.inputs[2] = 2;
  g->node.inputs[3] = -1;
  g->node.output = 3;
  g->node.attrs.gemm.alpha = 1.0f;
  g->node.attrs.gemm.beta = 1.0f;
}

static ds_status plan_float(const gemm_model *g, ds_error *err) {
  dsr_plan_info plan;
  ds_error_clear(err);
  return dsr_plan(&g->model, DSR_MODE_FLOAT, 0, &plan, err);
}

Test(plan, rank3_gemm_accepted) {
  gemm_model g;
  gemm_model_init(&g);
  ds_error err;
  cr_expect_eq(plan_float(&g, &err), DS_OK, "%s", err.message);
}

Test(plan, rank3_gemm_trans_a_rejected) {
  gemm_model g;
  gemm_model_init(&g);
  g.node.attrs.gemm.trans_a = 1;
  ds_error err;
  cr_expect_eq(plan_float(&g, &err), DS_ERR_SHAPE);
  cr_expect(strstr(err.message, "trans_a") != NULL, "%s", err.message);
}

Test(plan, rank3_gemm_wrong_output_rejected) {
  gemm_model g;
  gemm_model_init(&g);
  g.tensors[3].dims[1] = 4; /* (2, 4, 4) instead of (2, 3, 4) */
  ds_error err;
  cr_expect_eq(plan_float(&g, &err), DS_ERR_SHAPE);
  cr_expect(strstr(err.message, "(2,3,4)") != NULL, "%s", err.message);
}

Test(plan, rank3_gemm_bias_per_row_rejected) {
  gemm_model g;
  gemm_model_init(&g);
  g.tensors[2].rank = 2;
  g.tensors[2].dims[0] = 3;
  g.tensors[2].dims[1] = 4; /* (3, 4): varies along the rows */
  ds_error err;
  cr_expect_eq(plan_float(&g, &err), DS_ERR_SHAPE);
  cr_expect(strstr(err.message, "last axis") != NULL, "%s", err.message);
}

/* ---- Cost model ---------------------------------------------------------------------- */

Test(cost, fused_gemm_is_one_linear_layer) {
  dsr_model model;
  import_case(&fusion_cases[4], 0, 61, &model, NULL);
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_resolve("zcu102", &preset, &err), DS_OK, "%s", err.message);
  dsn_layer_list list;
  memset(&list, 0, sizeof list);
  cr_assert_eq(dsn_layers_from_model(&model, &preset, &list, &err), DS_OK, "%s", err.message);
  cr_assert_eq(list.count, 1);
  const dsn_layer *layer = &list.layers[0];
  /* The GEMM writes the model output, so it is priced as the classifier head. */
  cr_expect(layer->kind == DSN_LAYER_HEAD || layer->kind == DSN_LAYER_LINEAR, "kind %d",
            layer->kind);
  cr_expect_eq(layer->out_rows, 12, "rows: the leading axes 1 x 3 x 4");
  cr_expect_eq(layer->out_cols, 7);
  cr_expect_eq(layer->in_row_elems, 5);
  cr_expect_eq(layer->macs_per_output, 5);
  int64_t weight_bytes = 5 * 7 * ((preset.weight_bits + 7) / 8) +
                         7 * ((preset.accumulator_bits + 7) / 8);
  cr_expect_eq(layer->weight_bytes, weight_bytes, "%lld bytes, expected %lld",
               (long long)layer->weight_bytes, (long long)weight_bytes);
  cr_expect_eq(layer->weight_count, 5 * 7 + 7);
  dsn_layer_list_free(&list);
  ds_model_free(&model);
}
