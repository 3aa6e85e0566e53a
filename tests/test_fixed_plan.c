/*
 * Tests of the fixed-point arena plan: a RESHAPE whose input dies at it takes the input's
 * bytes (runtime/dsr_plan.c), which must change no output byte, for one worker or several,
 * while every other pair of live tensors stays apart. DSR_PLAN_KEEP_ALL keeps each tensor in
 * its own bytes.
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
#include "runtime/dsr_runtime.h"


typedef struct run {
  dsr_context ctx;
  void *arena;
} run;

static void run_model(const dsr_model *model, uint32_t flags, const dsr_parallel *parallel,
                      const float *image, run *r) {
  ds_error err;
  ds_error_clear(&err);
  dsr_options options = {.flags = flags, .parallel = parallel};
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan_with_options(model, DSR_MODE_FIXED, &options, &plan, &err), DS_OK, "%s",
               err.message);
  size_t bytes = (plan.arena_bytes + 63) & ~(size_t)63;
  r->arena = aligned_alloc(64, bytes);
  cr_assert_not_null(r->arena);
  cr_assert_eq(dsr_context_init_with_options(&r->ctx, model, DSR_MODE_FIXED, &options, r->arena,
                                             bytes, &err),
               DS_OK, "%s", err.message);
  int64_t n = dsr_tensor_elements(&model->tensors[model->input]);
  memcpy(dsr_input_f32(&r->ctx), image, sizeof(float) * (size_t)n);
  dsr_invoke(&r->ctx);
}

static size_t storage_bytes(const dsr_model *model, int32_t t) {
  int32_t dtype = model->tensors[t].qparams.dtype;
  size_t element = dtype == DSR_DTYPE_I8 ? 1 : (dtype == DSR_DTYPE_I16 ? 2 : 4);
  return (size_t)dsr_tensor_elements(&model->tensors[t]) * element;
}

/* Producer and last consumer of tensor (-1 for the model input, node_count for the output). */
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

/* Node whose output is tensor, or -1. */
static int32_t producer(const dsr_model *model, int32_t tensor) {
  for (int32_t i = 0; i < model->node_count; i++) {
    if (model->nodes[i].output == tensor)
      return i;
  }
  return -1;
}

/* 1 when b is the output of a RESHAPE that reads a at a's last use, or the other way round:
 * the one pair of live tensors allowed to share bytes. A RESHAPE input that a later node
 * still reads must keep its own bytes. */
static int reshape_pair(const dsr_model *model, int32_t a, int32_t b) {
  for (int32_t k = 0; k < 2; k++) {
    int32_t in = k == 0 ? a : b, out = k == 0 ? b : a;
    int32_t node = producer(model, out), first, last;
    lifetime(model, in, &first, &last);
    if (node >= 0 && model->nodes[node].op == DSR_OP_RESHAPE &&
        model->nodes[node].inputs[0] == in && last == node)
      return 1;
  }
  return 0;
}

/* Counts the RESHAPE nodes whose output has the input's bytes, and checks that no other two
 * tensors that are live at once overlap. */
static int32_t check_plan(const dsr_model *model, const dsr_context *ctx) {
  int32_t aliased = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op == DSR_OP_RESHAPE &&
        dsr_tensor_data(ctx, node->inputs[0]) == dsr_tensor_data(ctx, node->output))
      aliased++;
  }
  for (int32_t a = 0; a < model->tensor_count; a++) {
    for (int32_t b = a + 1; b < model->tensor_count; b++) {
      const uint8_t *pa = dsr_tensor_data(ctx, a), *pb = dsr_tensor_data(ctx, b);
      if (model->tensors[a].kind == DSR_TENSOR_CONSTANT ||
          model->tensors[b].kind == DSR_TENSOR_CONSTANT || pa == NULL || pb == NULL)
        continue;
      int32_t fa, la, fb, lb;
      lifetime(model, a, &fa, &la);
      lifetime(model, b, &fb, &lb);
      if (la < fb || lb < fa || reshape_pair(model, a, b))
        continue;
      cr_assert(pa + storage_bytes(model, a) <= pb || pb + storage_bytes(model, b) <= pa,
                "tensors %d [%d..%d] and %d [%d..%d] overlap", a, fa, la, b, fb, lb);
    }
  }
  return aliased;
}

static void run_reversed(void *pool, dsr_task task, void *task_context, int32_t task_count) {
  (void)pool;
  for (int32_t i = task_count - 1; i >= 0; i--)
    task(task_context, i);
}

static void expect_same_output(const dsr_model *model, const run *a, const run *b,
                               const char *what) {
  int32_t out = model->output;
  cr_assert_eq(memcmp(dsr_tensor_data(&a->ctx, out), dsr_tensor_data(&b->ctx, out),
                      storage_bytes(model, out)),
               0, "%s: the raw output differs", what);
  int64_t n = dsr_tensor_elements(&model->tensors[out]);
  cr_assert_eq(memcmp(dsr_output_f32(&a->ctx), dsr_output_f32(&b->ctx), sizeof(float) * (size_t)n),
               0, "%s: the float output differs", what);
}

/* Plans name with and without DSR_PLAN_KEEP_ALL; returns the RESHAPE nodes aliased. */
static int32_t compare_plans(const char *name) {
  dsr_model model;
  float *image;
  fixture_load_quantized(name, &model, &image);
  run keep, reuse;
  run_model(&model, DSR_PLAN_KEEP_ALL, NULL, image, &keep);
  run_model(&model, 0, NULL, image, &reuse);
  cr_assert_eq(check_plan(&model, &keep.ctx), 0, "%s: KEEP_ALL aliased a RESHAPE", name);
  int32_t aliased = check_plan(&model, &reuse.ctx);
  expect_same_output(&model, &keep, &reuse, name);

  for (int32_t workers = 2; workers <= 3; workers++) {
    dsr_parallel hook = {run_reversed, NULL, workers, 1};
    run split;
    run_model(&model, 0, &hook, image, &split);
    cr_assert_eq(check_plan(&model, &split.ctx), aliased);
    expect_same_output(&model, &keep, &split, name);
    free(split.arena);
  }
  free(keep.arena);
  free(reuse.arena);
  free(image);
  ds_model_free(&model);
  return aliased;
}

Test(fixed_plan, reshapes_share_their_input_bytes) {
  cr_expect_gt(compare_plans("dat_pp_mini_64"), 0, "no RESHAPE of dat_pp_mini_64 was aliased");
  cr_expect_gt(compare_plans("dat_mini_64"), 0, "no RESHAPE of dat_mini_64 was aliased");
  compare_plans("dat_offsets_tiny");
}

/* A fixed-point model of two nodes: t1 = RESHAPE(in) and out = in + t1, so the RESHAPE input
 * is read again after the RESHAPE and must keep its own bytes. */
typedef struct reread_model {
  dsr_model model;
  dsr_tensor tensors[3];
  dsr_node nodes[2];
  int32_t add_qwords[8], reshape_qwords[1];
} reread_model;

static void set_tensor(dsr_tensor *t, const char *name, int32_t kind, int32_t rank,
                       const int32_t *dims) {
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->kind = (uint8_t)kind;
  t->rank = rank;
  memcpy(t->dims, dims, sizeof(int32_t) * (size_t)rank);
  t->has_qparams = 1;
  t->qparams.dtype = DSR_DTYPE_I8;
  t->qparams.bits = 8;
  t->qparams.scale = 0.05f;
  t->qparams.zero_point = 3;
}

static void build_reread_model(reread_model *m) {
  memset(m, 0, sizeof *m);
  snprintf(m->model.name, sizeof m->model.name, "reshape read twice");
  set_tensor(&m->tensors[0], "in", DSR_TENSOR_INPUT, 3, (int32_t[]){1, 4, 6});
  set_tensor(&m->tensors[1], "t1", DSR_TENSOR_ACTIVATION, 2, (int32_t[]){4, 6});
  set_tensor(&m->tensors[2], "out", DSR_TENSOR_OUTPUT, 3, (int32_t[]){1, 4, 6});
  m->reshape_qwords[0] = DSQ_TAG(DSR_OP_RESHAPE);
  /* All scales equal: each operand times 2^20 (the left shift) and 1/2, the sum times
   * 2^-19, so out = in + in in the same steps. */
  const int32_t add[8] = {DSQ_TAG(DSR_OP_ADD), DSQ_ADD_SHIFT_NARROW, 1 << 30, 0, 1 << 30, 0,
                          1 << 30, -18};
  memcpy(m->add_qwords, add, sizeof add);

  dsr_node *reshape = &m->nodes[0], *sum = &m->nodes[1];
  snprintf(reshape->name, sizeof reshape->name, "reshape");
  reshape->op = DSR_OP_RESHAPE;
  reshape->input_count = 1;
  reshape->inputs[0] = 0;
  reshape->inputs[1] = reshape->inputs[2] = reshape->inputs[3] = -1;
  reshape->output = 1;
  reshape->qwords = m->reshape_qwords;
  reshape->qword_count = 1;

  snprintf(sum->name, sizeof sum->name, "add");
  sum->op = DSR_OP_ADD;
  sum->input_count = 2;
  sum->inputs[0] = 0;
  sum->inputs[1] = 1;
  sum->inputs[2] = sum->inputs[3] = -1;
  sum->output = 2;
  sum->qwords = m->add_qwords;
  sum->qword_count = 8;

  m->model.tensors = m->tensors;
  m->model.tensor_count = 3;
  m->model.nodes = m->nodes;
  m->model.node_count = 2;
  m->model.input = 0;
  m->model.output = 2;
  m->model.quantized = 1;
}

Test(fixed_plan, reshape_input_read_later_keeps_its_bytes) {
  reread_model m;
  build_reread_model(&m);
  float image[24];
  for (int32_t i = 0; i < 24; i++)
    image[i] = (float)i * 0.1f - 1.0f;
  run keep, reuse;
  run_model(&m.model, DSR_PLAN_KEEP_ALL, NULL, image, &keep);
  run_model(&m.model, 0, NULL, image, &reuse);
  cr_assert_eq(check_plan(&m.model, &reuse.ctx), 0, "the RESHAPE input was given away");
  expect_same_output(&m.model, &keep, &reuse, "reshape read twice");
  /* out = 2 * in, within twice the input's rounding. */
  for (int32_t i = 0; i < 24; i++)
    cr_expect(fabsf(dsr_output_f32(&reuse.ctx)[i] - 2.0f * image[i]) < 0.06f, "out[%d] = %f", i,
              (double)dsr_output_f32(&reuse.ctx)[i]);
  free(keep.arena);
  free(reuse.arena);
}
