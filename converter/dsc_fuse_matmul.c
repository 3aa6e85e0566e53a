/*
 * MatMul plus bias Add, as exporters write nn.Linear when they do not emit Gemm. In
 * Add(MatMul(A, B), C), A is a float activation of rank 2 or more and B a constant (K, N)
 * weight. C is a constant of N values along its last axis, every other axis 1, with no more
 * axes than the product: (N), (1, N), (1, 1, N) and so on. The pair becomes one GEMM (alpha 1,
 * beta 1, no transposes), whichever Add operand the product is.
 *
 * A rank-R input (..., K) keeps its shape, because the runtime GEMM takes the leading R - 1
 * axes as rows. Tokens of shape (1, 56, 56, 96) times (96, 384) give a GEMM output
 * (1, 56, 56, 384) with no reshape around it. A bias that varies along another axis does not
 * fuse.
 */
#include <stdio.h>
#include <string.h>

#include "dsc_ir.h"

static int is_onnx_op(const dsc_graph *g, int32_t node, const char *op_type) {
  return node >= 0 && !g->nodes[node].dead && g->nodes[node].op == 0 &&
         strcmp(g->nodes[node].op_type, op_type) == 0 && g->nodes[node].input_count == 2 &&
         g->nodes[node].output_count >= 1 && g->nodes[node].outputs[0] >= 0;
}

/* The constant bias operand of add for a product of product_rank axes and n columns, or -1.
 * Every bias axis but the last must be 1, so the bias neither varies along the rows nor
 * widens the product's shape. */
static int32_t bias_of(const dsc_graph *g, int32_t add, int32_t product, int32_t product_rank,
                       int64_t n) {
  const dsc_node *a = &g->nodes[add];
  int32_t bias = a->inputs[0] == product ? a->inputs[1] : a->inputs[0];
  if (bias == product || !dsc_is_constant(g, bias))
    return -1;
  const dsc_value *c = &g->values[bias];
  if (c->dtype != DSC_DTYPE_F32 || c->rank < 1 || c->rank > product_rank ||
      c->dims[c->rank - 1] != n || dsc_value_elements(c) != n)
    return -1;
  return bias;
}

static int same_dims(const dsc_value *a, const dsc_value *b) {
  return a->rank == b->rank && memcmp(a->dims, b->dims, sizeof a->dims[0] * (size_t)a->rank) == 0;
}

/* A float activation of rank 2 or more times a constant float (K, N) matrix. */
static int is_linear_product(const dsc_graph *g, const dsc_node *m) {
  int32_t a = m->inputs[0], b = m->inputs[1];
  if (a < 0 || b < 0)
    return 0;
  const dsc_value *av = &g->values[a], *bv = &g->values[b];
  return av->rank >= 2 && av->rank <= DSR_MAX_RANK && av->data == NULL &&
         av->dtype == DSC_DTYPE_F32 && dsc_is_constant(g, b) && bv->rank == 2 &&
         bv->dtype == DSC_DTYPE_F32 && av->dims[av->rank - 1] == bv->dims[0];
}

ds_status dsc_fuse_matmul_add(dsc_graph *g, ds_error *err) {
  DS_TRY(dsc_graph_index_uses(g, err));
  int32_t original = g->node_count;
  for (int32_t i = 0; i < original; i++) {
    if (!is_onnx_op(g, i, "MatMul") || !is_linear_product(g, &g->nodes[i]))
      continue;
    const dsc_node *m = &g->nodes[i];
    int32_t a = m->inputs[0], b = m->inputs[1], product = m->outputs[0];
    int32_t add = dsc_single_consumer(g, product);
    if (!is_onnx_op(g, add, "Add"))
      continue;
    int32_t rank = g->values[a].rank;
    int32_t bias = bias_of(g, add, product, rank, g->values[b].dims[1]);
    int32_t out = g->nodes[add].outputs[0];
    /* The Add must not broadcast the product to a larger shape. */
    if (bias < 0 || g->values[product].rank != rank ||
        !same_dims(&g->values[out], &g->values[product]))
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
