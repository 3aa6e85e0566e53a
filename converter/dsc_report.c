/* Text form of the import report. */
#include <inttypes.h>

#include "dsc_import.h"

static const char *const op_names[DSR_OP_COUNT] = {
    "?",         "CONV2D",  "MATMUL",   "GEMM",       "ADD",     "SUB",
    "MUL",       "DIV",     "LAYER_NORM", "GELU",     "SOFTMAX", "TRANSPOSE",
    "RESHAPE",   "GATHER",  "GLOBAL_AVG_POOL", "DEFORM_ATTN", "CONCAT",
    "PAD",
};

const char *dsc_op_name(int32_t op) {
  if (op <= 0 || op >= DSR_OP_COUNT)
    return "?";
  return op_names[op];
}

static void print_blocks(const dsc_report *r, FILE *out) {
  fprintf(out, "deformable attention blocks: %d\n", r->block_count);
  if (r->block_count == 0)
    return;
  fprintf(out, "  %-28s %5s %9s %6s %5s %6s %6s %7s %-6s %6s\n", "block", "C", "map", "groups",
          "heads", "kernel", "stride", "samples", "conv", "factor");
  for (int32_t i = 0; i < r->block_count && i < DSC_MAX_REPORT_BLOCKS; i++) {
    const dsc_block_info *b = &r->blocks[i];
    char map[32], samples[32], factor[32] = "-";
    snprintf(map, sizeof map, "%dx%d", b->height, b->width);
    snprintf(samples, sizeof samples, "%dx%d", b->samples_h, b->samples_w);
    if (b->convention != DSR_DEFORM_DAT_PP)
      snprintf(factor, sizeof factor, "%.3g", (double)b->offset_range_factor);
    const char *convention = b->convention == DSR_DEFORM_DAT_PP    ? "DAT++"
                             : b->convention == DSR_DEFORM_DAT_CENTRED ? "DAT-c"
                                                                      : "DAT";
    fprintf(out, "  %-28s %5d %9s %6d %5d %6d %6d %7s %-6s %6s\n", b->name, b->channels, map,
            b->groups, b->heads, b->offset_kernel, b->offset_stride, samples,
            convention, factor);
  }
  fprintf(out, "  conv: sampling convention (docs/deformable-attention.md): DAT, DAT-c (DAT "
          "2022 with queries at pixel centres) or DAT++\n  factor: DAT offset range; an offset "
          "is tanh(o) * factor / Hk in [-1, 1] map units, Hk the offset grid height\n");
}

/* One row per pass: live nodes and the tensors they use, before and after. */
static void print_passes(const dsc_report *r, FILE *out) {
  if (r->pass_count == 0)
    return;
  fprintf(out, "  %-20s %8s %8s %9s %9s  %s\n", "pass", "nodes", "after", "tensors", "after",
          "changed");
  for (int32_t i = 0; i < r->pass_count && i < DSC_MAX_REPORT_PASSES; i++) {
    const dsc_pass_stats *p = &r->passes[i];
    fprintf(out, "  %-20s %8d %8d %9d %9d  %d %s\n", p->name, p->nodes_before, p->nodes_after,
            p->tensors_before, p->tensors_after, p->changed_count, p->unit);
  }
}

void dsc_report_print(const dsc_report *r, FILE *out) {
  if (r == NULL || out == NULL)
    return;
  fprintf(out, "ONNX: IR version %d, opset %d, %d nodes, %d initializers\n", r->ir_version,
          r->opset, r->onnx_node_count, r->onnx_initializer_count);
  fprintf(out, "ONNX op types:");
  for (int32_t i = 0; i < r->op_type_count && i < DSC_MAX_REPORT_OP_TYPES; i++)
    fprintf(out, " %s=%d", r->ops_before[i].op_type, r->ops_before[i].count);
  if (r->op_type_overflow_count > 0)
    fprintf(out, " (+%d more nodes of other types)", r->op_type_overflow_count);
  fprintf(out, "\nfolded nodes: %d, LayerNorm fused: %d, GELU fused: %d, MatMul+Add fused: %d, "
          "dead nodes removed: %d\n",
          r->folded_node_count, r->layer_norm_fused_count, r->gelu_fused_count,
          r->matmul_add_fused_count, r->dead_node_count);
  print_passes(r, out);
  fprintf(out, "model: %d nodes, %d tensors, %d constants (%" PRId64 " values)",
          r->node_count_after, r->tensor_count_after, r->constant_count_after,
          r->constant_element_count);
  /* The pass table counts the values the lowered nodes use, so any difference is printed. */
  int32_t last = r->pass_count < DSC_MAX_REPORT_PASSES ? r->pass_count : DSC_MAX_REPORT_PASSES;
  if (last > 0 && r->passes[last - 1].tensors_after != r->tensor_count_after)
    fprintf(out, " (the pass table ends at %d tensors: the model adds %d)",
            r->passes[last - 1].tensors_after,
            r->tensor_count_after - r->passes[last - 1].tensors_after);
  fprintf(out, "\nmodel ops:");
  for (int32_t op = 1; op < DSR_OP_COUNT; op++) {
    if (r->ops_after[op] > 0)
      fprintf(out, " %s=%d", dsc_op_name(op), r->ops_after[op]);
  }
  fprintf(out, "\n");
  print_blocks(r, out);
}
