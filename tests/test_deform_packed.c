/*
 * Tests of the fast order of the fixed-point deformable attention kernel
 * (runtime/dsr_fixed_deform.c) against its reference order. The stage precisions select each
 * of its paths: all stages int8 (every projection and attention sum a packed int8 product),
 * the default int16 classes, and every activation int16 (the row-order loops only). One
 * int16 stage at a time among q, k, v, attention and context moves the attention back to
 * the row order while the projections stay packed. The layers include odd sizes (head channels 3 and 5, 18 and 25 channels, 99 and
 * 20 samples, a strided offset grid) and run unsliced, sliced, and split over 3 workers
 * whose tasks run in reverse order. Every output must match the reference byte for byte.
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
#include "ds_test_fixture.h"
#include "runtime/dsr_fixed.h"
#include "runtime/dsr_fixed_internal.h"
#include "runtime/dsr_fixed_math.h"
#include "runtime/dsr_slice.h"

/* Runs every task, last first, on the calling thread: a split whose tasks depend on each
 * other's order would show. */
static void run_reversed(void *pool, dsr_task task, void *context, int32_t task_count) {
  (void)pool;
  for (int32_t i = task_count - 1; i >= 0; i--)
    task(context, i);
}

/* One int16 stage of a precision case, or -1 for none. */
typedef struct precision_case {
  const char *label;
  uint32_t int16_flags;
  int32_t int16_stage;
  int all_int8; /* every deformable stage forced to int8 */
} precision_case;

static const precision_case cases[] = {
    {"int8 stages", 0, -1, 1},
    {"default classes", DSQ_INT16_DEFAULT, -1, 0},
    {"every activation int16", DSQ_INT16_ALL_ACTIVATIONS, -1, 0},
    {"int16 q", 0, DSR_DEFORM_STAGE_Q, 1},
    {"int16 k", 0, DSR_DEFORM_STAGE_K, 1},
    {"int16 v", 0, DSR_DEFORM_STAGE_V, 1},
    {"int16 attention", 0, DSR_DEFORM_STAGE_ATTN, 1},
    {"int16 context", 0, DSR_DEFORM_STAGE_CONTEXT, 1},
};

/* Imports fixture name and quantizes it with precision case pc on its input and a random
 * image; *image receives the input. */
static void load_case(const char *name, const precision_case *pc, dsr_model *model,
                      float **image) {
  float *images = fixture_import(name, model);
  uint8_t *stages = calloc((size_t)model->node_count * DSR_DEFORM_STAGE_COUNT, 1);
  cr_assert_not_null(stages);
  for (int32_t i = 0; i < model->node_count; i++) {
    for (int32_t st = 0; st < DSR_DEFORM_STAGE_COUNT; st++) {
      uint8_t p = pc->all_int8 ? DSQ_PRECISION_INT8 : DSQ_PRECISION_BY_CLASS;
      if (st == pc->int16_stage)
        p = DSQ_PRECISION_INT16;
      stages[(size_t)i * DSR_DEFORM_STAGE_COUNT + (size_t)st] = p;
    }
  }

  dsq_options options = dsq_options_default();
  options.int16 = pc->int16_flags;
  options.stage_precision = stages;
  cr_log_info("%s: %s", name, pc->label);
  fixture_quantize(model, images, &options);
  free(stages);
  *image = images;
}

static size_t dtype_bytes(int32_t dtype) {
  return dtype == DSR_DTYPE_I8 ? 1 : (dtype == DSR_DTYPE_I16 ? 2 : 4);
}

static size_t tensor_bytes(const dsr_tensor *t) {
  return (size_t)dsr_tensor_elements(t) * dtype_bytes(t->qparams.dtype);
}

/* Runs deformable node i on x with slice four ways (fast on one thread, fast over 3
 * reversed workers, fast with the weights packed ahead, reference) and requires the same
 * output bytes. */
static void compare_node(const dsr_model *model, int32_t i, const void *x, dsr_slice slice,
                         const char *what) {
  const dsr_node *node = &model->nodes[i];
  size_t bytes = tensor_bytes(&model->tensors[node->output]);
  size_t scratch_bytes = dsr_fixed_scratch_bytes_for_workers(model, i, 3);
  uint8_t *scratch = aligned_alloc(64, (scratch_bytes + 64) / 64 * 64);
  uint8_t *outputs[4];
  for (int32_t k = 0; k < 4; k++) {
    outputs[k] = malloc(bytes);
    cr_assert_not_null(outputs[k]);
    memset(outputs[k], 0x11 * (k + 1), bytes);
  }
  cr_assert_not_null(scratch);
  /* An odd start shows that the kernel aligns its packed buffers itself. */
  uint8_t *odd = scratch + 8;
  cr_assert_geq(scratch_bytes, dsr_fixed_scratch_bytes_for_workers(model, i, 1) + 8);
  const void *inputs[DSR_MAX_NODE_INPUTS] = {x, NULL, NULL, NULL};
  dsr_parallel reversed = {run_reversed, NULL, 3, 1};
  dsr_fixed_execute(model, i, inputs, outputs[0], odd, slice);
  dsr_fixed_execute_parallel(model, i, inputs, outputs[1], scratch, slice, &reversed);
  dsr_fixed_execute_reference(model, i, inputs, outputs[2], scratch, slice);
  /* Weights packed ahead as context init does, from an address that is not 64-aligned. */
  size_t packed_bytes = dsr_fixed_packed_bytes(model, i);
  uint8_t *packed = malloc(packed_bytes + 65);
  cr_assert_not_null(packed);
  dsr_fixed_pack_constants(model, i, packed + 1);
  dsr_fixed_execute_packed(model, i, inputs, outputs[3], scratch, slice, &reversed,
                           packed_bytes > 0 ? packed + 1 : NULL);
  cr_assert_eq(memcmp(outputs[0], outputs[2], bytes), 0, "%s: fast order differs", what);
  cr_assert_eq(memcmp(outputs[1], outputs[2], bytes), 0, "%s: 3 workers differ", what);
  cr_assert_eq(memcmp(outputs[3], outputs[2], bytes), 0, "%s: packed weights differ", what);
  free(packed);
  for (int32_t k = 0; k < 4; k++)
    free(outputs[k]);
  free(scratch);
}

/* Quantizes name under every precision case, runs its nodes in order with the reference
 * kernels, and compares each deformable node unsliced and under two slices. Returns the
 * deformable nodes compared whose attention ran as packed products (all stages int8). */
static int32_t compare_fixture(const char *name) {
  int32_t packed = 0;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    dsr_model model;
    float *image;
    load_case(name, &cases[c], &model, &image);
    ds_error err;
    ds_error_clear(&err);
    void **buffers = calloc((size_t)model.tensor_count, sizeof(void *));
    cr_assert_not_null(buffers);
    size_t scratch_bytes = 64;
    for (int32_t i = 0; i < model.node_count; i++) {
      cr_assert_eq(dsr_fixed_check_node(&model, i, &err), DS_OK, "%s: %s", name, err.message);
      size_t bytes = dsr_fixed_scratch_bytes(&model, i);
      scratch_bytes = bytes > scratch_bytes ? bytes : scratch_bytes;
    }
    for (int32_t t = 0; t < model.tensor_count; t++) {
      if (model.tensors[t].kind != DSR_TENSOR_CONSTANT) {
        buffers[t] = calloc(1, tensor_bytes(&model.tensors[t]) + 1);
        cr_assert_not_null(buffers[t]);
      }
    }
    const dsr_tensor *input = &model.tensors[model.input];
    for (int64_t k = 0; k < dsr_tensor_elements(input); k++) {
      double q = round(image[k] / input->qparams.scale) + input->qparams.zero_point;
      dsr_fixed_store(buffers[model.input], input->qparams.dtype, k, (int64_t)q);
    }
    uint8_t *scratch = aligned_alloc(64, (scratch_bytes + 63) / 64 * 64);
    cr_assert_not_null(scratch);
    int32_t deformable = 0;
    for (int32_t i = 0; i < model.node_count; i++) {
      const dsr_node *node = &model.nodes[i];
      const void *inputs[DSR_MAX_NODE_INPUTS] = {NULL, NULL, NULL, NULL};
      for (int32_t k = 0; k < node->input_count && k < DSR_MAX_NODE_INPUTS; k++) {
        int32_t t = node->inputs[k];
        if (t >= 0)
          inputs[k] = model.tensors[t].kind == DSR_TENSOR_CONSTANT ? model.tensors[t].data_q
                                                                    : buffers[t];
      }
      if (node->op == DSR_OP_DEFORM_ATTN) {
        const dsr_deform_attn *d = node->deform;
        const dsr_slice slices[] = {dsr_slice_none(), {2, 2, 1, DSR_SLICE_PHYSICAL},
                                    {2, 1, 2, DSR_SLICE_CROP}};
        for (size_t k = 0; k < sizeof slices / sizeof slices[0]; k++) {
          if (k > 0 && (d->height < 4 || d->width < 4))
            continue;
          char what[256];
          snprintf(what, sizeof what, "%s, %s, node %d, slice %zu", name, cases[c].label, i,
                   k);
          compare_node(&model, i, inputs[0], slices[k], what);
        }
        deformable++;
      }
      dsr_slice slice = node->deform != NULL ? node->deform->slice : dsr_slice_none();
      dsr_fixed_execute_reference(&model, i, inputs, buffers[node->output], scratch, slice);
    }
    cr_assert_gt(deformable, 0, "%s has no deformable layer", name);
    if (cases[c].all_int8 && cases[c].int16_stage < 0) {
      for (int32_t i = 0; i < model.node_count; i++) {
        if (model.nodes[i].op == DSR_OP_DEFORM_ATTN)
          cr_expect_gt(dsr_fixed_packed_bytes(&model, i), 0, "%s: no weights packed ahead",
                       name);
      }
    }
    if (cases[c].all_int8 && cases[c].int16_stage < 0)
      packed += deformable;
    for (int32_t t = 0; t < model.tensor_count; t++)
      free(buffers[t]);
    free(buffers);
    free(scratch);
    free(image);
    ds_model_free(&model);
  }
  return packed;
}

Test(deform_packed, fast_order_matches_reference_under_every_precision) {
  const char *names[] = {"deform_layer_odd",  "deform_layer_odd_pp", "deform_layer_dat_pp",
                         "deform_layer_dat",  "deform_layer_rect",   "deform_layer_dat_centre",
                         "dat_pp_tiny"};
  int32_t packed = 0;
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
    packed += compare_fixture(names[k]);
  cr_expect_geq(packed, 7, "only %d layers ran with int8 stages", packed);
}

Test(deform_packed, int8_stages_are_int8) {
  /* The all-int8 case must really make the stages the packed products read int8. */
  dsr_model model;
  float *image;
  load_case("deform_layer_odd", &cases[0], &model, &image);
  int32_t checked = 0;
  for (int32_t i = 0; i < model.node_count; i++) {
    const dsr_deform_attn *d = model.nodes[i].deform;
    if (model.nodes[i].op != DSR_OP_DEFORM_ATTN)
      continue;
    const int32_t stages[] = {DSR_DEFORM_STAGE_Q, DSR_DEFORM_STAGE_SAMPLED, DSR_DEFORM_STAGE_K,
                              DSR_DEFORM_STAGE_V, DSR_DEFORM_STAGE_ATTN,
                              DSR_DEFORM_STAGE_CONTEXT};
    for (size_t k = 0; k < sizeof stages / sizeof stages[0]; k++)
      cr_expect_eq(d->stage_qparams[stages[k]].dtype, DSR_DTYPE_I8, "stage %d is not int8",
                   stages[k]);
    cr_expect_eq(d->head_channels % 4, 3);
    checked++;
  }
  cr_expect_eq(checked, 1);
  free(image);
  ds_model_free(&model);
}
