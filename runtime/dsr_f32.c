/* Dispatch of the float kernels and their scratch needs. */
#include "dsr_kernels.h"

void dsr_f32_run_node(const dsr_f32_args *args) {
  switch ((dsr_op)args->node->op) {
  case DSR_OP_CONV2D:
    dsr_f32_conv2d(args);
    break;
  case DSR_OP_MATMUL:
    dsr_f32_matmul(args);
    break;
  case DSR_OP_GEMM:
    dsr_f32_gemm(args);
    break;
  case DSR_OP_ADD:
  case DSR_OP_SUB:
  case DSR_OP_MUL:
  case DSR_OP_DIV:
    dsr_f32_binary(args);
    break;
  case DSR_OP_LAYER_NORM:
    dsr_f32_layer_norm(args);
    break;
  case DSR_OP_GELU:
    dsr_f32_gelu(args);
    break;
  case DSR_OP_SOFTMAX:
    dsr_f32_softmax(args);
    break;
  case DSR_OP_TRANSPOSE:
    dsr_f32_transpose(args);
    break;
  case DSR_OP_RESHAPE:
    dsr_f32_reshape(args);
    break;
  case DSR_OP_GATHER:
    dsr_f32_gather(args);
    break;
  case DSR_OP_GLOBAL_AVG_POOL:
    dsr_f32_global_avg_pool(args);
    break;
  case DSR_OP_DEFORM_ATTN:
    dsr_f32_deform_attn(args);
    break;
  case DSR_OP_CONCAT:
    dsr_f32_concat(args);
    break;
  case DSR_OP_PAD:
    dsr_f32_pad(args);
    break;
  case DSR_OP_COUNT:
    break;
  }
}

size_t dsr_f32_scratch_bytes(const dsr_model *model, int32_t node_index) {
  const dsr_node *node = &model->nodes[node_index];
  if (node->op == DSR_OP_DEFORM_ATTN && node->deform != NULL)
    return dsr_f32_deform_scratch_bytes(node->deform);
  if (node->op == DSR_OP_CONV2D)
    return dsr_f32_conv_scratch_bytes(model, node);
  return 0;
}
