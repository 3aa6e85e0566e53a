/*
 * The executor shared by float and fixed-point mode: plan, context layout inside the
 * caller's arena, and the node loop. Nothing here allocates; dsr_invoke calls no libc
 * function that can fail.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dsr_fixed.h"
#include "dsr_kernels.h"

/* Checks options and returns the worker count they give (1 without a hook). */
static ds_status check_options(const dsr_options *options, int32_t *worker_count,
                               ds_error *err) {
  *worker_count = 1;
  if (options == NULL)
    return DS_OK;
  if ((options->flags & ~DSR_PLAN_KEEP_ALL) != 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "plan flags 0x%x hold unknown bits: only "
                   "DSR_PLAN_KEEP_ALL (0x%x) is defined",
                   options->flags, DSR_PLAN_KEEP_ALL);
  const dsr_parallel *parallel = options->parallel;
  if (parallel != NULL && parallel->run != NULL &&
      (parallel->worker_count < 1 || parallel->worker_count > DSR_MAX_WORKERS))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "the parallel hook declares %d workers: give "
                   "1 to %d",
                   parallel->worker_count, DSR_MAX_WORKERS);
  *worker_count = dsr_parallel_workers(parallel);
  return DS_OK;
}

ds_status dsr_plan_with_options(const dsr_model *model, dsr_mode mode,
                                const dsr_options *options, dsr_plan_info *plan, ds_error *err) {
  if (plan == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "plan is NULL");
  memset(plan, 0, sizeof *plan);
  int32_t worker_count;
  DS_TRY(check_options(options, &worker_count, err));
  DS_TRY(dsr_validate_model(model, mode, err));

  dsr_layout layout;
  DS_TRY(dsr_plan_layout(model, mode, options != NULL ? options->flags : 0, worker_count, NULL,
                         &layout, err));
  plan->arena_bytes = layout.arena_bytes;
  plan->activation_bytes = layout.activation_bytes;
  plan->scratch_bytes = layout.scratch_bytes;
  plan->packed_bytes = layout.packed_bytes;
  return DS_OK;
}

ds_status dsr_plan(const dsr_model *model, dsr_mode mode, uint32_t flags, dsr_plan_info *plan,
                   ds_error *err) {
  const dsr_options options = {.flags = flags, .parallel = NULL};
  return dsr_plan_with_options(model, mode, &options, plan, err);
}

ds_status dsr_context_init_with_options(dsr_context *ctx, const dsr_model *model, dsr_mode mode,
                                        const dsr_options *options, void *arena,
                                        size_t arena_bytes, ds_error *err) {
  if (ctx == NULL || arena == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "context init needs a context and an arena "
                   "(ctx %s, arena %s)",
                   ctx == NULL ? "NULL" : "set", arena == NULL ? "NULL" : "set");
  memset(ctx, 0, sizeof *ctx);
  if (((uintptr_t)arena % DSR_ALIGN_BYTES) != 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "the arena at %p is not aligned to %u bytes: "
                   "allocate it with aligned_alloc(%u, ...)",
                   arena, DSR_ALIGN_BYTES, DSR_ALIGN_BYTES);

  uint32_t flags = options != NULL ? options->flags : 0;
  dsr_plan_info plan;
  DS_TRY(dsr_plan_with_options(model, mode, options, &plan, err));
  if (arena_bytes < plan.arena_bytes)
    return ds_fail(err, DS_ERR_ARENA_TOO_SMALL,
                   "model '%.96s' needs an arena of %zu bytes but %zu are available (%zu "
                   "missing): size the arena with dsr_plan",
                   model->name, plan.arena_bytes, arena_bytes, plan.arena_bytes - arena_bytes);

  int32_t worker_count;
  DS_TRY(check_options(options, &worker_count, err));
  uint8_t *base = arena;
  dsr_layout layout;
  size_t *offsets = (size_t *)arena;
  DS_TRY(dsr_plan_layout(model, mode, flags, worker_count, offsets, &layout, err));

  ctx->model = model;
  ctx->mode = mode;
  ctx->arena = base;
  ctx->arena_bytes = arena_bytes;
  ctx->tensor_offsets = offsets;
  ctx->input_f32 = (float *)(void *)(base + layout.table_bytes);
  ctx->output_f32 = (float *)(void *)(base + layout.table_bytes + layout.input_bytes);
  /* The scratch comes right before the packed constants, which end the arena. */
  ctx->scratch = base + layout.arena_bytes - layout.packed_bytes - layout.scratch_bytes;
  ctx->scratch_bytes = layout.scratch_bytes;
  ctx->flags = flags;
  ctx->observer = NULL;
  ctx->probe = NULL;
  ctx->parallel.worker_count = 1;
  if (worker_count > 1)
    ctx->parallel = *options->parallel;

  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op == DSR_OP_DEFORM_ATTN)
      ctx->slices[ctx->deform_count++] = node->deform->slice;
  }

  /* Activations start zeroed, so an audit never reads stale bytes of an earlier model. */
  memset(base + layout.table_bytes, 0, layout.arena_bytes - layout.table_bytes);

  /* Weights the fixed-point kernels would otherwise pack at every invoke. */
  for (int32_t i = 0; i < model->node_count && mode == DSR_MODE_FIXED; i++) {
    size_t offset = offsets[model->tensor_count + i];
    if (offset != SIZE_MAX)
      dsr_fixed_pack_constants(model, i, base + offset);
  }
  return DS_OK;
}

ds_status dsr_context_init(dsr_context *ctx, const dsr_model *model, dsr_mode mode,
                           uint32_t flags, void *arena, size_t arena_bytes, ds_error *err) {
  const dsr_options options = {.flags = flags, .parallel = NULL};
  return dsr_context_init_with_options(ctx, model, mode, &options, arena, arena_bytes, err);
}

void *dsr_tensor_data(const dsr_context *ctx, int32_t tensor_index) {
  if (ctx == NULL || ctx->model == NULL || tensor_index < 0 ||
      tensor_index >= ctx->model->tensor_count)
    return NULL;
  const dsr_tensor *t = &ctx->model->tensors[tensor_index];
  if (t->kind == DSR_TENSOR_CONSTANT) {
    /* Constants stay owned by the model; kernels only read them. */
    const void *data = ctx->mode == DSR_MODE_FLOAT ? (const void *)t->data_f32 : t->data_q;
    return (void *)(uintptr_t)data;
  }
  size_t offset = ctx->tensor_offsets[tensor_index];
  if (offset == SIZE_MAX)
    return NULL;
  return ctx->arena + offset;
}

ds_status dsr_context_set_slice(dsr_context *ctx, int32_t layer_index, dsr_slice slice,
                                ds_error *err) {
  if (ctx == NULL || ctx->model == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "the context is NULL or not initialized");
  if (layer_index < 0 || layer_index >= ctx->deform_count)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "deformable layer %d does not exist: the model "
                   "has %d (0..%d)",
                   layer_index, ctx->deform_count, ctx->deform_count - 1);

  const dsr_model *model = ctx->model;
  int32_t seen = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op != DSR_OP_DEFORM_ATTN)
      continue;
    if (seen++ != layer_index)
      continue;
    ds_status status = dsr_slice_validate(node->deform, slice, err);
    if (status != DS_OK)
      return ds_fail(err, status, "deformable layer %d (node %d '%.96s')", layer_index, i,
                     node->name);
    ctx->slices[layer_index] = slice;
    return DS_OK;
  }
  return ds_fail(err, DS_ERR_INTERNAL, "deformable layer %d counted but not found", layer_index);
}

void dsr_context_set_probe(dsr_context *ctx, const dsr_probe *probe) {
  if (ctx != NULL)
    ctx->probe = probe;
}

void dsr_context_set_observer(dsr_context *ctx, const dsr_observer *observer) {
  if (ctx != NULL)
    ctx->observer = observer;
}

float *dsr_input_f32(dsr_context *ctx) {
  return ctx != NULL ? ctx->input_f32 : NULL;
}

const float *dsr_output_f32(const dsr_context *ctx) {
  return ctx != NULL ? ctx->output_f32 : NULL;
}

/* Range of a quantized dtype. */
static void dtype_range(uint8_t dtype, double *low, double *high) {
  switch (dtype) {
  case DSR_DTYPE_I8:
    *low = -128.0;
    *high = 127.0;
    break;
  case DSR_DTYPE_I16:
    *low = -32768.0;
    *high = 32767.0;
    break;
  default:
    *low = -2147483648.0;
    *high = 2147483647.0;
    break;
  }
}

/*
 * Quantizes the float input: q = clamp(round(x / scale) + zero_point) to the dtype range,
 * with x / scale in float and ties rounded away from zero (roundf). NaN maps to zero_point.
 */
static void quantize_input(dsr_context *ctx) {
  const dsr_tensor *t = &ctx->model->tensors[ctx->model->input];
  int64_t count = dsr_tensor_elements(t);
  void *data = dsr_tensor_data(ctx, ctx->model->input);
  double low, high;
  dtype_range(t->qparams.dtype, &low, &high);

  for (int64_t i = 0; i < count; i++) {
    float scaled = roundf(ctx->input_f32[i] / t->qparams.scale);
    double q = isnan(scaled) ? (double)t->qparams.zero_point
                             : (double)scaled + (double)t->qparams.zero_point;
    q = q < low ? low : (q > high ? high : q);
    switch (t->qparams.dtype) {
    case DSR_DTYPE_I8:
      ((int8_t *)data)[i] = (int8_t)q;
      break;
    case DSR_DTYPE_I16:
      ((int16_t *)data)[i] = (int16_t)q;
      break;
    default:
      ((int32_t *)data)[i] = (int32_t)q;
      break;
    }
  }
}

/* Dequantizes the output tensor: real = scale * (q - zero_point). */
static void dequantize_output(dsr_context *ctx) {
  const dsr_tensor *t = &ctx->model->tensors[ctx->model->output];
  int64_t count = dsr_tensor_elements(t);
  const void *data = dsr_tensor_data(ctx, ctx->model->output);
  for (int64_t i = 0; i < count; i++) {
    int64_t q;
    switch (t->qparams.dtype) {
    case DSR_DTYPE_I8:
      q = ((const int8_t *)data)[i];
      break;
    case DSR_DTYPE_I16:
      q = ((const int16_t *)data)[i];
      break;
    default:
      q = ((const int32_t *)data)[i];
      break;
    }
    ctx->output_f32[i] = t->qparams.scale * (float)(q - t->qparams.zero_point);
  }
}

static void invoke_float(dsr_context *ctx) {
  const dsr_model *model = ctx->model;
  const dsr_observer *observer = ctx->observer;
  int32_t layer = 0;

  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    dsr_f32_args args;
    memset(&args, 0, sizeof args);
    args.model = model;
    args.node = node;
    args.node_index = i;
    for (int32_t j = 0; j < node->input_count; j++)
      args.in[j] = node->inputs[j] >= 0 ? dsr_tensor_data(ctx, node->inputs[j]) : NULL;
    args.out = dsr_tensor_data(ctx, node->output);
    args.scratch = ctx->scratch;
    args.scratch_bytes = ctx->scratch_bytes;
    args.observer = observer;
    args.probe = ctx->probe;
    args.parallel = &ctx->parallel;
    if (node->op == DSR_OP_DEFORM_ATTN)
      args.slice = ctx->slices[layer++];

    dsr_f32_run_node(&args);

    if (observer != NULL && observer->on_tensor != NULL)
      observer->on_tensor(observer->user, node->output, args.out,
                          dsr_tensor_elements(&model->tensors[node->output]));
  }
}

void dsr_invoke(dsr_context *ctx) {
  /* A context whose init failed is zeroed: running it does nothing. */
  if (ctx == NULL || ctx->model == NULL)
    return;
  if (ctx->mode == DSR_MODE_FLOAT) {
    invoke_float(ctx);
    return;
  }
  quantize_input(ctx);
  for (int32_t i = 0; i < ctx->model->node_count; i++)
    dsr_fixed_run_node(ctx, i);
  dequantize_output(ctx);
}
