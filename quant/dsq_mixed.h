/*
 * Mixed precision: the int8 or int16 choice of every activation and deformable-layer stage,
 * by hand (a name -> precision map) or automatically under a budget of on-chip bytes.
 *
 * Items. The quantizer gives TRANSPOSE, RESHAPE and GATHER outputs the qparams of their input,
 * so each alias group of activations is one item, named after its first member (any member's
 * name finds it). Each DEFORM_ATTN node adds one item per choosable stage, named
 * "<node name>:<stage name>" (stage names from dsq_stage_name).
 *
 * Bytes. An item's int16_extra_bytes is what int16 adds over int8 to the buffers that hold it,
 * one byte per element held: for an activation group, the elements of every member that
 * owns storage (RESHAPE outputs are views of their input and count nothing); for a stage, the
 * elements of the stage's buffer in the reference kernel (runtime/dsr_fixed_deform.c) for the
 * unsliced layer: Q C*H*W; OFFSET_DW and OFFSET_GELU C*N; OFFSET_LN C/g (one column at a
 * time); OFFSET 2*g*N; K and V C*N; LOGITS and ATTN N (one query row at a time); CONTEXT C,
 * with N = Hk*Wk samples per group and g groups. The budget bounds the sum over int16 items.
 *
 * Ownership: a plan owns its arrays (dsq_precision_plan_free). Thread safety: a plan is used
 * by one thread; dsq_mixed_choose writes the model (it quantizes it repeatedly).
 */
#ifndef DSQ_MIXED_H
#define DSQ_MIXED_H

#include <stdint.h>

#include "../common/ds_status.h"
#include "../runtime/dsr_model.h"
#include "dsq_calibration.h"
#include "dsq_quantize.h"

#define DSQ_PRECISION_NAME_BYTES (DSR_NAME_BYTES + 16)

typedef struct dsq_precision_item {
  char name[DSQ_PRECISION_NAME_BYTES];
  int32_t tensor;            /* first activation of the alias group, or -1 for a stage */
  int32_t node;              /* DEFORM_ATTN node index of a stage, else -1 */
  int32_t stage;             /* dsr_deform_stage of a stage, else -1 */
  int64_t int16_extra_bytes; /* see the header comment */
  uint8_t precision;         /* dsq_precision: the choice applied by dsq_precision_plan_options */
  double gain;               /* dsq_mixed_choose: output noise removed by promoting this item
                                alone, as a share of the all-int8 noise; 0 when not measured */
} dsq_precision_item;

typedef struct dsq_precision_plan {
  int32_t item_count;
  dsq_precision_item *items;
  int32_t tensor_count;      /* of the model the plan was made for */
  int32_t node_count;
  uint8_t *tensor_precision; /* filled by dsq_precision_plan_options */
  uint8_t *stage_precision;
  int32_t *tensor_item;      /* item of every tensor, -1 for constants */
} dsq_precision_plan;

/* Lower-case name of a deformable stage ("q", "offset_dw", ..., "context"), or "?". */
const char *dsq_stage_name(int32_t stage);

/*
 * Lists the items of model (quantized or not), every precision BY_CLASS.
 * Errors: DS_ERR_INVALID_ARGUMENT, DS_ERR_GRAPH (a node referring to a missing tensor),
 * DS_ERR_OUT_OF_MEMORY.
 */
ds_status dsq_precision_plan_init(const dsr_model *model, dsq_precision_plan *plan,
                                  ds_error *err);

/* Frees the plan's arrays and zeroes it. NULL is fine. */
void dsq_precision_plan_free(dsq_precision_plan *plan);

/* Index of the item that name denotes (an item name or any member tensor's name), or -1. */
int32_t dsq_precision_find(const dsq_precision_plan *plan, const dsr_model *model,
                           const char *name);

/* Sets every item to precision. */
void dsq_precision_plan_set_all(dsq_precision_plan *plan, dsq_precision precision);

/*
 * Fills options with int16 = flags and the plan's per-tensor and per-stage arrays, which stay
 * owned by the plan and valid until the plan changes or is freed.
 */
void dsq_precision_plan_options(dsq_precision_plan *plan, uint32_t flags, dsq_options *options);

/*
 * Int16 bytes of a quantized model under the plan's accounting: the sum of int16_extra_bytes
 * over items whose quantized type is int16. *int16_items receives their count (may be NULL).
 */
int64_t dsq_precision_int16_bytes(const dsq_precision_plan *plan, const dsr_model *model,
                                  int32_t *int16_items);

/* 1 when the item is int16 in the quantized model. */
int dsq_precision_item_is_int16(const dsq_precision_item *item, const dsr_model *model);

/*
 * Automatic choice under budget_bytes. Items whose precision is INT8 or INT16 on entry are
 * kept as they are (hand choices); their int16 bytes count against the budget. Every other
 * item starts as int8 (flags 0) and is measured: the squared error of the model's output
 * logits against float on image_count images (dsr_tensor_elements(input) floats each; use
 * calibration or validation images, never the test set) with that item alone promoted to
 * int16. Items that reduce the error are then tried greedily, most error removed per extra
 * byte first: each one that fits the budget is kept when the error of the whole choice so
 * far drops, so the result never measures worse than pure int8 on these images. The model is left quantized with the choice, and the
 * plan's precisions and gains record it. The images run on threads worker threads; the result
 * does not depend on the thread count.
 * Errors: DS_ERR_INVALID_ARGUMENT (also: hand-chosen int16 items over the budget), those of
 * dsq_quantize and dsr_plan, DS_ERR_OUT_OF_MEMORY.
 * NOTE: the search starts from pure int8, so a layer whose int8 accumulators could overflow
 * (dsr_plan rejects it) fails the whole choice; such a model needs class-based int16.
 */
ds_status dsq_mixed_choose(dsr_model *model, const dsq_calibration *calib, const float *images,
                           int32_t image_count, int64_t budget_bytes, int32_t threads,
                           dsq_precision_plan *plan, ds_error *err);

#endif
