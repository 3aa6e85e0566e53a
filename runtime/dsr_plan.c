/*
 * Arena planner. The arena holds, in this order, each region aligned to DSR_ALIGN_BYTES:
 *   1. the tensor_offsets table (one size_t per tensor), then one packed offset per node,
 *   2. input_f32 and output_f32 (float32, the caller's view of the model input and output),
 *   3. the activations, placed by lifetime,
 *   4. the scratch of the node that needs the most,
 *   5. in fixed mode, the constant operands that kernels read packed (dsr_fixed_packed_bytes),
 *      filled once by context init.
 *
 * In float mode the model input and output tensors are input_f32 and output_f32 themselves.
 * In fixed mode they hold quantized values and are planned like any activation.
 *
 * Activations are placed by a linear scan over the nodes: a tensor is live from the node
 * that produces it (before node 0 for the fixed-mode input) to its last consumer (the end of
 * the run for the model output). When a tensor becomes live it takes the smallest gap between
 * the live tensors that fits it (best fit), else the bytes after the highest live tensor.
 * The scan keeps only the live set, on the stack, so planning allocates nothing.
 *
 * A RESHAPE whose input dies at it writes over that input: its output takes the input's
 * bytes, and the kernel skips the copy when both are the same. This saves one copy of the
 * largest tensors of attention blocks at their peak, and in fixed mode the copy itself (a
 * fixed-point RESHAPE keeps the qparams, so both tensors have the same bytes). Under
 * DSR_PLAN_KEEP_ALL every tensor keeps its own bytes.
 */
#include <string.h>

#include "dsr_fixed.h"
#include "dsr_kernels.h"

/* Most activations live at once. Residual networks keep a handful live; a model past this
 * is rejected with the node where it happened. */
#define DSR_PLAN_MAX_LIVE 512

typedef struct live_tensor {
  size_t offset;
  size_t bytes;
  int32_t last_use;
  int32_t tensor;
} live_tensor;

typedef struct live_set {
  live_tensor entries[DSR_PLAN_MAX_LIVE];
  int32_t count;
  size_t peak_bytes;
} live_set;

static size_t element_bytes(const dsr_tensor *t, dsr_mode mode) {
  if (mode == DSR_MODE_FLOAT)
    return sizeof(float);
  switch (t->qparams.dtype) {
  case DSR_DTYPE_I8:
    return 1;
  case DSR_DTYPE_I16:
    return 2;
  default:
    return 4;
  }
}

static size_t tensor_bytes(const dsr_model *model, int32_t index, dsr_mode mode) {
  const dsr_tensor *t = &model->tensors[index];
  return dsr_align_up((size_t)dsr_tensor_elements(t) * element_bytes(t, mode));
}

/* Last node reading tensor; node_count for the model output (read by the caller). */
static int32_t last_use(const dsr_model *model, int32_t tensor, int32_t first_use) {
  if (tensor == model->output)
    return model->node_count;
  int32_t last = first_use;
  for (int32_t i = model->node_count - 1; i > first_use; i--) {
    const dsr_node *node = &model->nodes[i];
    for (int32_t j = 0; j < node->input_count; j++) {
      if (node->inputs[j] == tensor)
        return i;
    }
  }
  return last;
}

static void release_dead(live_set *set, int32_t now) {
  int32_t kept = 0;
  for (int32_t i = 0; i < set->count; i++) {
    if (set->entries[i].last_use >= now)
      set->entries[kept++] = set->entries[i];
  }
  set->count = kept;
}

/* Places bytes in the best-fitting gap of the live set (kept sorted by offset). */
static size_t place_best_fit(live_set *set, size_t bytes, int32_t last, int32_t tensor) {
  size_t cursor = 0, best_offset = 0, best_gap = SIZE_MAX;
  int32_t best_slot = -1;
  for (int32_t i = 0; i < set->count; i++) {
    const live_tensor *e = &set->entries[i];
    if (e->offset >= cursor) {
      size_t gap = e->offset - cursor;
      if (gap >= bytes && gap < best_gap) {
        best_gap = gap;
        best_offset = cursor;
        best_slot = i;
      }
    }
    if (e->offset + e->bytes > cursor)
      cursor = e->offset + e->bytes;
  }
  if (best_slot < 0) {
    best_offset = cursor;
    best_slot = set->count;
  }

  memmove(&set->entries[best_slot + 1], &set->entries[best_slot],
          (size_t)(set->count - best_slot) * sizeof set->entries[0]);
  set->entries[best_slot].offset = best_offset;
  set->entries[best_slot].bytes = bytes;
  set->entries[best_slot].last_use = last;
  set->entries[best_slot].tensor = tensor;
  set->count++;
  if (best_offset + bytes > set->peak_bytes)
    set->peak_bytes = best_offset + bytes;
  return best_offset;
}

/* A RESHAPE at step whose input dies there, with as many bytes as its output, hands the
 * input's bytes to the output: returns 1 and the offset after extending the entry's lifetime
 * to the output's. */
static int reuse_reshape_input(const dsr_model *model, live_set *set, int32_t step,
                               int32_t tensor, size_t bytes, size_t *offset) {
  const dsr_node *node = &model->nodes[step];
  if (node->op != DSR_OP_RESHAPE || node->input_count < 1)
    return 0;
  for (int32_t i = 0; i < set->count; i++) {
    live_tensor *e = &set->entries[i];
    if (e->tensor != node->inputs[0] || e->last_use != step || e->bytes != bytes)
      continue;
    e->last_use = last_use(model, tensor, step);
    e->tensor = tensor;
    *offset = e->offset;
    return 1;
  }
  return 0;
}

static size_t node_scratch_bytes(const dsr_model *model, int32_t node_index, dsr_mode mode,
                                 int32_t worker_count) {
  if (mode == DSR_MODE_FIXED)
    return dsr_fixed_scratch_bytes_for_workers(model, node_index, worker_count);
  return dsr_f32_scratch_bytes(model, node_index);
}

ds_status dsr_plan_layout(const dsr_model *model, dsr_mode mode, uint32_t flags,
                          int32_t worker_count, size_t *tensor_offsets, dsr_layout *layout,
                          ds_error *err) {
  memset(layout, 0, sizeof *layout);
  layout->table_bytes = dsr_align_up(((size_t)model->tensor_count + (size_t)model->node_count) *
                                     sizeof(size_t));
  layout->input_bytes =
      dsr_align_up((size_t)dsr_tensor_elements(&model->tensors[model->input]) * sizeof(float));
  layout->output_bytes =
      dsr_align_up((size_t)dsr_tensor_elements(&model->tensors[model->output]) * sizeof(float));
  size_t activation_base = layout->table_bytes + layout->input_bytes + layout->output_bytes;

  if (tensor_offsets != NULL) {
    for (int32_t i = 0; i < model->tensor_count; i++)
      tensor_offsets[i] = SIZE_MAX;
    if (mode == DSR_MODE_FLOAT) {
      tensor_offsets[model->input] = layout->table_bytes;
      tensor_offsets[model->output] = layout->table_bytes + layout->input_bytes;
    }
  }

  /* About 12 KiB of stack: the live set of the scan. */
  live_set set;
  set.count = 0;
  set.peak_bytes = 0;
  size_t keep_all_total = 0;
  int keep_all = (flags & DSR_PLAN_KEEP_ALL) != 0;

  for (int32_t step = -1; step < model->node_count; step++) {
    int32_t tensor;
    if (step < 0) {
      if (mode != DSR_MODE_FIXED)
        continue;
      tensor = model->input;
    } else {
      tensor = model->nodes[step].output;
      if (mode == DSR_MODE_FLOAT && tensor == model->output)
        continue;
    }

    size_t bytes = tensor_bytes(model, tensor, mode);
    size_t offset;
    if (keep_all) {
      offset = keep_all_total;
      keep_all_total += bytes;
    } else {
      release_dead(&set, step < 0 ? 0 : step);
      if (set.count >= DSR_PLAN_MAX_LIVE) {
        const dsr_node *node = &model->nodes[step < 0 ? 0 : step];
        return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                       "node %d '%.96s': more than %d activations are live at once, the most "
                       "the planner tracks: plan with DSR_PLAN_KEEP_ALL instead",
                       step, node->name, DSR_PLAN_MAX_LIVE);
      }
      if (step < 0 || !reuse_reshape_input(model, &set, step, tensor, bytes, &offset))
        offset = place_best_fit(&set, bytes, last_use(model, tensor, step < 0 ? -1 : step),
                                tensor);
    }
    if (tensor_offsets != NULL)
      tensor_offsets[tensor] = activation_base + offset;
  }
  layout->activation_bytes = keep_all ? keep_all_total : set.peak_bytes;

  for (int32_t i = 0; i < model->node_count; i++) {
    size_t scratch = dsr_align_up(node_scratch_bytes(model, i, mode, worker_count));
    if (scratch > layout->scratch_bytes)
      layout->scratch_bytes = scratch;
  }

  /* Packed constants follow the scratch; fixed-point mode only. */
  size_t packed_base = activation_base + layout->activation_bytes + layout->scratch_bytes;
  for (int32_t i = 0; i < model->node_count; i++) {
    size_t bytes = mode == DSR_MODE_FIXED ? dsr_align_up(dsr_fixed_packed_bytes(model, i)) : 0;
    if (tensor_offsets != NULL)
      tensor_offsets[model->tensor_count + i] =
          bytes > 0 ? packed_base + layout->packed_bytes : SIZE_MAX;
    layout->packed_bytes += bytes;
  }

  layout->arena_bytes = packed_base + layout->packed_bytes;
  return DS_OK;
}
