/*
 * dsr_fixed_run_node: binds a node's tensors to their storage in a planned context and runs
 * its kernel. Kept apart from the kernels so that they link without the executor.
 */
#include "dsr_fixed.h"
#include "dsr_fixed_internal.h"
#include "dsr_slice.h"

void dsr_fixed_run_node(dsr_context *ctx, int32_t node_index) {
  const dsr_model *model = ctx->model;
  const dsr_node *node = &model->nodes[node_index];
  const void *inputs[DSR_MAX_NODE_INPUTS] = {NULL, NULL, NULL, NULL};
  for (int32_t i = 0; i < node->input_count && i < DSR_MAX_NODE_INPUTS; i++) {
    if (node->inputs[i] >= 0)
      inputs[i] = dsr_tensor_data(ctx, node->inputs[i]);
  }

  dsr_slice slice = dsr_slice_none();
  if (node->op == DSR_OP_DEFORM_ATTN) {
    /* Deformable layers are counted in node order, as in dsr_context.slices. */
    int32_t layer = 0;
    for (int32_t i = 0; i < node_index; i++) {
      if (model->nodes[i].op == DSR_OP_DEFORM_ATTN)
        layer++;
    }
    if (layer < ctx->deform_count)
      slice = ctx->slices[layer];
  }
  if (ctx->probe != NULL && node->op == DSR_OP_DEFORM_ATTN) {
    dsr_fixed_deform_execute_probed(model, node_index, inputs[0],
                                    dsr_tensor_data(ctx, node->output), ctx->scratch, slice,
                                    ctx->probe);
    return;
  }
  size_t packed_offset = ctx->tensor_offsets[model->tensor_count + node_index];
  const uint8_t *packed = packed_offset == SIZE_MAX ? NULL : ctx->arena + packed_offset;
  dsr_fixed_execute_packed(model, node_index, inputs, dsr_tensor_data(ctx, node->output),
                           ctx->scratch, slice, &ctx->parallel, packed);
}
