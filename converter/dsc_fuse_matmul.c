/*
 * MatMul plus bias Add, as exporters write nn.Linear on a 2-D input when they do not emit
 * Gemm: Add(MatMul(A, B), C) with A a 2-D activation, B a constant (K, N) weight and C a
 * constant of N values (shape (N) or (1, N)) becomes one GEMM (alpha 1, beta 1, no
 * transposes). The Add may take the MatMul output as either operand.
 *
 * NOTE: a MatMul on a rank-3 or higher input (nn.Linear on tokens) stays MATMUL then ADD,
 * since GEMM is 2-D and flattening would add two copies.
 */
#include <stdio.h>
#include <string.h>

#include "dsc_ir.h"

static int is_onnx_op(const dsc_graph *g, int32_t node, const char *op_type) {
  return node >= 0 && !g->nodes[node].dead && g->nodes[node].op == 0 &&
         strcmp(g->nodes[node].op_type, op_type) == 0 && g->nodes[node].input_count == 2 &&
         g->nodes[node].output_count >= 1 && g->nodes[node].outputs[0] >= 0;
}

/* The constant bias operand of add for a matmul output of n columns, or -1. */
static int32_t bias_of(const dsc_graph *g, int32_t add, int32_t product, int64_t n) {
  const dsc_node *a = &g->nodes[add];
  int32_t bias = a->inputs[0] == product ? a->inputs[1] : a->inputs[0];
  if (bias == product || !dsc_is_constant(g, bias))
    return -1;
  const dsc_value *c = &g->values[bias];
  if (c->dtype != DSC_DTYPE_F32 || dsc_value_elements(c) != n || c->rank < 1 || c->rank > 2 ||
      c->dims[c->rank - 1] != n)
    return -1;
  return bias;
}

ds_status dsc_fuse_matmul_add(dsc_graph *g, ds_error *err) {
  DS_TRY(dsc_graph_index_uses(g, err));
  int32_t original = g->node_count;
  for (int32_t i = 0; i < original; i++) {
    if (!is_onnx_op(g, i, "MatMul"))
      continue;
    const dsc_node *m = &g->nodes[i];
    int32_t a = m->inputs[0], b = m->inputs[1], product = m->outputs[0];
    if (a < 0 || b < 0 || g->values[a].rank != 2 || g->values[a].data != NULL ||
        g->values[a].dtype != DSC_DTYPE_F32 || !dsc_is_constant(g, b) ||
        g->values[b].rank != 2 || g->values[b].dtype != DSC_DTYPE_F32)
      continue;
    int32_t add = dsc_single_consumer(g, product);
    if (!is_onnx_op(g, add, "Add"))
      continue;
    int32_t bias = bias_of(g, add, product, g->values[b].dims[1]);
    int32_t out = g->nodes[add].outputs[0];
    if (bias < 0 || g->values[out].rank != 2)
      continue;

    char name[DSR_NAME_BYTES + 16];
    snprintf(name, sizeof name, "%.90s", g->nodes[add].name);
    int32_t gemm = -1;
    DS_TRY(dsc_graph_add_node(g, name, "Gemm", 3, 1, &gemm, err));
    dsc_node *n = &g->nodes[gemm];
    n->op = DSR_OP_GEMM;
    n->inputs[0] = a;
    n->inputs[1] = b;
    n->inputs[2] = bias;
    n->outputs[0] = out;
    n->attrs.gemm.alpha = 1.0f;
    n->attrs.gemm.beta = 1.0f;
    g->values[out].producer = gemm;
    g->nodes[i].dead = 1;
    g->nodes[add].dead = 1;
    g->values[product].producer = -1;
    g->report->matmul_add_fused_count++;
  }
  return DS_OK;
}
