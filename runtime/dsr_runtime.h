/*
 * The reference runtime: plans one arena for a model, then executes it in float or
 * fixed-point mode without allocating.
 *
 * Use:
 *   dsr_plan_info plan;
 *   dsr_plan(model, DSR_MODE_FIXED, 0, &plan, &err);         // validates and sizes the arena
 *   void *arena = aligned_alloc(64, round_up(plan.arena_bytes, 64));  // caller owns it
 *   dsr_context ctx;
 *   dsr_context_init(&ctx, model, DSR_MODE_FIXED, 0, arena, plan.arena_bytes, &err);
 *   memcpy(dsr_input_f32(&ctx), image, ...);              // float input, NCHW
 *   dsr_invoke(&ctx);                                      // cannot fail after init
 *   const float *logits = dsr_output_f32(&ctx);
 *
 * Thread safety: a context is used by one thread at a time. Several contexts may share one
 * const model, each with its own arena, and run in parallel. One context can also use several
 * threads inside each dsr_invoke through a dsr_parallel hook given to dsr_plan_with_options
 * and dsr_context_init_with_options. Its results are the same for every worker count.
 */
#ifndef DSR_RUNTIME_H
#define DSR_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "../common/ds_status.h"
#include "dsr_model.h"
#include "dsr_probe.h"
#include "dsr_parallel.h"

typedef enum dsr_mode {
  DSR_MODE_FLOAT = 0,
  DSR_MODE_FIXED = 1, /* requires model->quantized */
} dsr_mode;

/* Maximum number of deformable layers one model may have. */
#define DSR_MAX_DEFORM_LAYERS 64

/*
 * Calibration hook for float mode: called after every node with the node's float output,
 * and for DEFORM_ATTN nodes once per stage and patch with that stage's float values, except
 * DSR_DEFORM_STAGE_Q, which covers the whole map and is reported once per node, and the
 * BIAS, LOGITS and ATTN stages, which a patch whose logits exceed 64 MiB reports once per
 * chunk of its query pixels.
 * NULL members are skipped.
 */
typedef struct dsr_observer {
  void (*on_tensor)(void *user, int32_t tensor_index, const float *values, int64_t count);
  void (*on_deform_stage)(void *user, int32_t node_index, int32_t stage, const float *values,
                          int64_t count);
  void *user;
} dsr_observer;

typedef struct dsr_plan_info {
  size_t arena_bytes;       /* activations plus scratch, 64-byte aligned offsets */
  size_t activation_bytes;  /* peak bytes of live activations */
  size_t scratch_bytes;     /* largest per-node scratch */
  size_t packed_bytes;      /* fixed mode: weights packed once at context init */
} dsr_plan_info;

typedef struct dsr_context {
  const dsr_model *model;
  dsr_mode mode;
  uint8_t *arena;
  size_t arena_bytes;
  size_t *tensor_offsets;   /* inside the arena: byte offset per tensor, SIZE_MAX if none */
  uint8_t *scratch;         /* inside the arena */
  size_t scratch_bytes;
  float *input_f32;         /* inside the arena */
  float *output_f32;        /* inside the arena */
  dsr_slice slices[DSR_MAX_DEFORM_LAYERS]; /* per deformable layer, in node order */
  int32_t deform_count;
  const dsr_observer *observer;
  const dsr_probe *probe;   /* DEFORM_ATTN stage reports (dsr_probe.h), or NULL */
  uint32_t flags;           /* DSR_PLAN_* */
  dsr_parallel parallel;    /* run NULL and worker_count 1 unless the options gave a hook */
} dsr_context;

/* dsr_plan flags. */
#define DSR_PLAN_KEEP_ALL 1u /* give every activation its own bytes (no reuse), so an audit
                                can read every tensor after dsr_invoke */

/* Options of dsr_plan_with_options and dsr_context_init_with_options. */
typedef struct dsr_options {
  uint32_t flags;               /* DSR_PLAN_* */
  const dsr_parallel *parallel; /* NULL: one thread. Copied by context init; its pool must
                                   outlive the context */
} dsr_options;

/* Validates the model for mode and computes the arena size. flags: DSR_PLAN_*; the same
 * flags must be passed to dsr_context_init. */
ds_status dsr_plan(const dsr_model *model, dsr_mode mode, uint32_t flags, dsr_plan_info *plan,
                   ds_error *err);

/*
 * Lays out the context inside arena (arena_bytes from dsr_plan at least). The arena is owned
 * by the caller, must be aligned to 64 bytes and must outlive the context. Slices start as
 * the model's own. Errors: those of dsr_plan, DS_ERR_ARENA_TOO_SMALL (the message gives the
 * requested and available bytes), DS_ERR_INVALID_ARGUMENT (NULL or misaligned arena).
 */
ds_status dsr_context_init(dsr_context *ctx, const dsr_model *model, dsr_mode mode,
                           uint32_t flags, void *arena, size_t arena_bytes, ds_error *err);

/*
 * dsr_plan and dsr_context_init with options (NULL: flags 0, one thread). With a parallel
 * hook of W workers, the fixed-point scratch has a private part for each of the W tasks, so
 * the arena grows with W. Plan and init must get the same worker count. Errors: those of
 * dsr_plan and dsr_context_init, and DS_ERR_INVALID_ARGUMENT for a hook with a run function
 * and a worker count below 1 or above DSR_MAX_WORKERS.
 */
ds_status dsr_plan_with_options(const dsr_model *model, dsr_mode mode,
                                const dsr_options *options, dsr_plan_info *plan, ds_error *err);
ds_status dsr_context_init_with_options(dsr_context *ctx, const dsr_model *model, dsr_mode mode,
                                        const dsr_options *options, void *arena,
                                        size_t arena_bytes, ds_error *err);

/* Most workers a dsr_parallel hook may declare. */
#define DSR_MAX_WORKERS 256

/*
 * Storage of tensor index: for constants, data_f32 (float mode) or data_q (fixed mode); for
 * other tensors, their bytes in the arena (float32 in float mode, the qparams dtype in fixed
 * mode). Activations are only meaningful after dsr_invoke, and with reuse only while live.
 */
void *dsr_tensor_data(const dsr_context *ctx, int32_t tensor_index);

/*
 * Overrides the slice configuration of deformable layer layer_index (counted in node order)
 * for this context only. Rejects a configuration that does not fit the layer's map.
 */
ds_status dsr_context_set_slice(dsr_context *ctx, int32_t layer_index, dsr_slice slice,
                                ds_error *err);

/* Installs a float-mode observer (NULL removes it). */
void dsr_context_set_observer(dsr_context *ctx, const dsr_observer *observer);

/* Installs a stage probe for either mode (NULL removes it); see runtime/dsr_probe.h. */
void dsr_context_set_probe(dsr_context *ctx, const dsr_probe *probe);

/* Float input buffer of dsr_tensor_elements(input) values. */
float *dsr_input_f32(dsr_context *ctx);

/* Runs the model on the current input. In fixed mode the input is quantized first, as
 * q = clamp(round(x / scale) + zero_point) with ties away from zero and NaN as zero_point, and
 * the output dequantized after, so callers always see floats. */
void dsr_invoke(dsr_context *ctx);

/* Float output of dsr_tensor_elements(output) values, valid until the next invoke. */
const float *dsr_output_f32(const dsr_context *ctx);

/*
 * Checks a slice configuration against a deformable layer: rows and cols in 1..map side,
 * overlap in 0..map side, semantics known. Writes the reason into err when it does not fit.
 */
ds_status dsr_slice_validate(const dsr_deform_attn *layer, dsr_slice slice, ds_error *err);

#endif
