/*
 * Pattern fusions on the folded graph:
 *
 * LayerNorm as torch 1.13 decomposes it at opset < 17, over trailing axes:
 *   m = ReduceMean(x); d = x - m; v = ReduceMean(d ^ 2); y = d / Sqrt(v + eps);
 *   y = y * gamma (optional); y = y + beta (optional)
 * becomes one DSR_OP_LAYER_NORM (x, gamma, beta) with attrs.norm.axis the first normalized
 * axis.
 *
 * Exact GELU, y = x * 0.5 * (1 + erf(x / sqrt 2)), in the operand orders PyTorch emits:
 *   Mul(Mul(x, A), 0.5), Mul(Mul(x, 0.5), A) or Mul(x, Mul(A, 0.5)) with
 *   A = Add(Erf(Div(x, sqrt 2)), 1); Mul(x, 1 / sqrt 2) in place of the Div is accepted too,
 * becomes one DSR_OP_GELU, and so does the Gelu op of opset 20.
 *
 * LayerNormalization (opset 17) with a constant scale and unused Mean and InvStdDev outputs
 * becomes DSR_OP_LAYER_NORM too, before the deformable blocks are lifted.
 *
 * Every intermediate must have no consumer outside its pattern.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_ir.h"

static int is_op(const dsc_graph *g, int32_t node, const char *op_type) {
  return node >= 0 && !g->nodes[node].dead && g->nodes[node].op == 0 &&
         strcmp(g->nodes[node].op_type, op_type) == 0 && g->nodes[node].input_count >= 1 &&
         g->nodes[node].output_count >= 1 && g->nodes[node].outputs[0] >= 0;
}

static int32_t out0(const dsc_graph *g, int32_t node) {
  return g->nodes[node].outputs[0];
}

/* For a two-input node, the input that is not value, or -1 when neither is value. */
static int32_t other_input(const dsc_graph *g, int32_t node, int32_t value) {
  const dsc_node *n = &g->nodes[node];
  if (n->input_count != 2)
    return -1;
  if (n->inputs[0] == value)
    return n->inputs[1];
  if (n->inputs[1] == value)
    return n->inputs[0];
  return -1;
}

static int is_scalar(const dsc_graph *g, int32_t value, double expected, double tolerance) {
  if (!dsc_is_constant(g, value) || dsc_value_elements(&g->values[value]) != 1)
    return 0;
  return fabs(dsc_get_f(&g->values[value], 0) - expected) <= tolerance;
}

/* Reduced axes of a ReduceMean as a trailing range: *first is its first axis. */
static int trailing_axes(const dsc_graph *g, int32_t node, int32_t rank, int32_t *first) {
  const dsc_node *n = &g->nodes[node];
  int64_t axes[DSR_MAX_RANK], keep = 1;
  int32_t count = -1;
  if (dsc_attr_int(g, n, "keepdims", 1, &keep, NULL) != DS_OK || keep != 1)
    return 0;
  if (n->input_count > 1 && n->inputs[1] >= 0) {
    if (dsc_input_ints(g, n, 1, axes, DSR_MAX_RANK, &count, NULL) != DS_OK)
      return 0;
  } else if (dsc_attr_ints(g, n, "axes", axes, DSR_MAX_RANK, &count, NULL) != DS_OK) {
    return 0;
  }
  if (count <= 0 || count > rank)
    return 0;
  uint8_t marked[DSR_MAX_RANK] = {0};
  for (int32_t i = 0; i < count; i++) {
    int64_t axis = axes[i] < 0 ? axes[i] + rank : axes[i];
    if (axis < 0 || axis >= rank)
      return 0;
    marked[axis] = 1;
  }
  for (int32_t i = rank - count; i < rank; i++) {
    if (!marked[i])
      return 0;
  }
  *first = rank - count;
  return 1;
}

typedef struct ln_match {
  int32_t x, first_axis;
  int32_t nodes[12];
  int32_t node_count;
  int32_t gamma, beta, output;
  float epsilon;
} ln_match;

/* Mul(gamma) and Add(beta) after the normalization, when their constants fit. */
static void match_affine(const dsc_graph *g, ln_match *m, int64_t norm_size) {
  int32_t next = dsc_single_consumer(g, m->output);
  int32_t c = is_op(g, next, "Mul") ? other_input(g, next, m->output) : -1;
  if (dsc_is_constant(g, c) && dsc_value_elements(&g->values[c]) == norm_size) {
    m->gamma = c;
    m->nodes[m->node_count++] = next;
    m->output = out0(g, next);
  }
  next = dsc_single_consumer(g, m->output);
  c = is_op(g, next, "Add") ? other_input(g, next, m->output) : -1;
  if (dsc_is_constant(g, c) && dsc_value_elements(&g->values[c]) == norm_size) {
    m->beta = c;
    m->nodes[m->node_count++] = next;
    m->output = out0(g, next);
  }
}

static int match_layer_norm(const dsc_graph *g, int32_t r1, ln_match *m) {
  memset(m, 0, sizeof *m);
  m->gamma = m->beta = -1;
  m->x = g->nodes[r1].inputs[0];
  const dsc_value *x = &g->values[m->x];
  if (x->rank < 1 || !trailing_axes(g, r1, x->rank, &m->first_axis))
    return 0;

  int32_t sub = dsc_single_consumer(g, out0(g, r1));
  if (!is_op(g, sub, "Sub") || g->nodes[sub].inputs[0] != m->x)
    return 0;
  int32_t d = out0(g, sub);
  if (dsc_use_count(g, d) != 2 || d == g->output)
    return 0;
  int32_t pow = dsc_consumer(g, d, 0), div = dsc_consumer(g, d, 1);
  if (!is_op(g, pow, "Pow")) {
    int32_t t = pow;
    pow = div;
    div = t;
  }
  if (!is_op(g, pow, "Pow") || g->nodes[pow].inputs[0] != d ||
      !is_scalar(g, g->nodes[pow].inputs[1], 2.0, 0.0))
    return 0;

  int32_t r2 = dsc_single_consumer(g, out0(g, pow));
  int32_t first2 = -1;
  if (!is_op(g, r2, "ReduceMean") || !trailing_axes(g, r2, x->rank, &first2) ||
      first2 != m->first_axis)
    return 0;
  int32_t add = dsc_single_consumer(g, out0(g, r2));
  int32_t eps = is_op(g, add, "Add") ? other_input(g, add, out0(g, r2)) : -1;
  if (!is_scalar(g, eps, 0.0, 1.0))
    return 0;
  int32_t sqrt_node = dsc_single_consumer(g, out0(g, add));
  if (!is_op(g, sqrt_node, "Sqrt") || dsc_single_consumer(g, out0(g, sqrt_node)) != div ||
      !is_op(g, div, "Div") || g->nodes[div].inputs[0] != d)
    return 0;

  int32_t chain[7] = {r1, sub, pow, r2, add, sqrt_node, div};
  memcpy(m->nodes, chain, sizeof chain);
  m->node_count = 7;
  m->epsilon = (float)dsc_get_f(&g->values[eps], 0);
  m->output = out0(g, div);
  int64_t norm_size = 1;
  for (int32_t i = m->first_axis; i < x->rank; i++)
    norm_size *= x->dims[i];
  match_affine(g, m, norm_size);

  const dsc_value *y = &g->values[m->output];
  return y->rank == x->rank && memcmp(y->dims, x->dims, sizeof y->dims[0] * (size_t)x->rank) == 0;
}

/* A constant of the normalized dims filled with fill, or a reshaped copy of source. */
static ds_status affine_constant(dsc_graph *g, const ln_match *m, int32_t source, float fill,
                                 const char *suffix, int32_t *out, ds_error *err) {
  const dsc_value *x = &g->values[m->x];
  int32_t rank = x->rank - m->first_axis;
  int64_t dims[DSR_MAX_RANK];
  for (int32_t i = 0; i < rank; i++)
    dims[i] = x->dims[m->first_axis + i];
  if (source >= 0 && g->values[source].dtype == DSC_DTYPE_F32 &&
      g->values[source].rank == rank &&
      memcmp(g->values[source].dims, dims, sizeof dims[0] * (size_t)rank) == 0) {
    *out = source;
    return DS_OK;
  }
  char base[160];
  snprintf(base, sizeof base, "%.140s%s", g->values[m->output].name, suffix);
  DS_TRY(dsc_graph_add_fresh_value(g, base, out, err));
  DS_TRY(dsc_value_set_data(g, *out, DSC_DTYPE_F32, rank, dims, NULL, err));
  float *data = g->values[*out].data;
  int64_t count = dsc_value_elements(&g->values[*out]);
  for (int64_t i = 0; i < count; i++)
    data[i] = source >= 0 ? (float)dsc_get_f(&g->values[source], i) : fill;
  return DS_OK;
}

/* Replaces the matched nodes with one node of op producing output. */
static ds_status replace_nodes(dsc_graph *g, const int32_t *nodes, int32_t node_count,
                               int32_t op, const char *op_type, const int32_t *inputs,
                               int32_t input_count, int32_t output, ds_error *err) {
  char name[DSR_NAME_BYTES + 64];
  snprintf(name, sizeof name, "%s", g->nodes[nodes[node_count - 1]].name);
  int32_t fused = -1;
  DS_TRY(dsc_graph_add_node(g, name, op_type, input_count, 1, &fused, err));
  for (int32_t i = 0; i < node_count; i++)
    g->nodes[nodes[i]].dead = 1;
  dsc_node *n = &g->nodes[fused];
  n->op = op;
  for (int32_t i = 0; i < input_count; i++)
    n->inputs[i] = inputs[i];
  n->outputs[0] = output;
  g->values[output].producer = fused;
  return DS_OK;
}

static ds_status map_layer_normalization(dsc_graph *g, int32_t index, int *done,
                                           ds_error *err) {
  dsc_node *n = &g->nodes[index];
  *done = 0;
  if (strcmp(n->op_type, "LayerNormalization") != 0 || n->input_count < 2 ||
      !dsc_is_constant(g, n->inputs[1]) || n->outputs[0] < 0 ||
      g->values[n->outputs[0]].rank < 0)
    return DS_OK; /* attrs.norm is only set once the shapes are known */
  for (int32_t o = 1; o < n->output_count; o++) {
    if (n->outputs[o] >= 0 && dsc_use_count(g, n->outputs[o]) > 0)
      return DS_OK; /* Mean and InvStdDev outputs have no dsr equivalent */
  }
  if (n->input_count < 3 || n->inputs[2] < 0) {
    int32_t scale = n->inputs[1], beta = -1;
    char base[160];
    snprintf(base, sizeof base, "%.140s_beta", n->name);
    DS_TRY(dsc_graph_add_fresh_value(g, base, &beta, err));
    DS_TRY(dsc_value_set_data(g, beta, DSC_DTYPE_F32, g->values[scale].rank,
                              g->values[scale].dims, NULL, err));
    n = &g->nodes[index];
    if (n->input_count < 3) {
      int32_t *inputs = realloc(n->inputs, 3 * sizeof *inputs);
      if (inputs == NULL)
        return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory", g->path);
      n->inputs = inputs;
      n->input_count = 3;
    }
    n->inputs[2] = beta;
  }
  if (!dsc_is_constant(g, n->inputs[2]))
    return DS_OK;
  n->op = DSR_OP_LAYER_NORM;
  n->output_count = 1;
  g->report->layer_norm_fused_count++;
  *done = 1;
  return DS_OK;
}

ds_status dsc_fuse_layer_norm(dsc_graph *g, ds_error *err) {
  DS_TRY(dsc_graph_index_uses(g, err));
  int32_t original = g->node_count;
  for (int32_t i = 0; i < original; i++) {
    int mapped = 0;
    if (!g->nodes[i].dead && g->nodes[i].op == 0)
      DS_TRY(map_layer_normalization(g, i, &mapped, err));
    ln_match m;
    if (mapped)
      continue;
    if (!is_op(g, i, "ReduceMean") || !match_layer_norm(g, i, &m))
      continue;
    int32_t inputs[3] = {m.x, -1, -1};
    DS_TRY(affine_constant(g, &m, m.gamma, 1.0f, "_gamma", &inputs[1], err));
    DS_TRY(affine_constant(g, &m, m.beta, 0.0f, "_beta", &inputs[2], err));
    DS_TRY(replace_nodes(g, m.nodes, m.node_count, DSR_OP_LAYER_NORM, "LayerNorm", inputs, 3,
                         m.output, err));
    dsc_node *fused = &g->nodes[g->node_count - 1];
    fused->attrs.norm.axis = m.first_axis;
    fused->attrs.norm.epsilon = m.epsilon;
    g->report->layer_norm_fused_count++;
  }
  return DS_OK;
}

/* The value x that Erf's input divides by sqrt 2 (or multiplies by 1 / sqrt 2), or -1. */
static int32_t gelu_source(const dsc_graph *g, int32_t erf, int32_t *scale_node) {
  int32_t in = g->nodes[erf].inputs[0];
  int32_t producer = in >= 0 ? g->values[in].producer : -1;
  *scale_node = producer;
  if (producer < 0 || dsc_single_consumer(g, in) != erf)
    return -1;
  const dsc_node *p = &g->nodes[producer];
  if (is_op(g, producer, "Div") && p->input_count == 2 &&
      is_scalar(g, p->inputs[1], sqrt(2.0), 1e-4))
    return p->inputs[0];
  if (is_op(g, producer, "Mul") && p->input_count == 2) {
    if (is_scalar(g, p->inputs[1], sqrt(0.5), 1e-4))
      return p->inputs[0];
    if (is_scalar(g, p->inputs[0], sqrt(0.5), 1e-4))
      return p->inputs[1];
  }
  return -1;
}

typedef struct gelu_match {
  int32_t x, output;
  int32_t nodes[6];
  int32_t node_count;
} gelu_match;

/* After A = 1 + erf(x / sqrt 2): the three Mul orders that finish x * 0.5 * A. */
static int match_gelu_tail(const dsc_graph *g, int32_t a_value, gelu_match *m) {
  int32_t m1 = dsc_single_consumer(g, a_value);
  int32_t other = is_op(g, m1, "Mul") ? other_input(g, m1, a_value) : -1;
  if (other < 0)
    return 0;
  int32_t m2 = dsc_single_consumer(g, out0(g, m1));
  if (other == m->x) { /* Mul(Mul(x, A), 0.5) */
    if (!is_op(g, m2, "Mul") || !is_scalar(g, other_input(g, m2, out0(g, m1)), 0.5, 1e-6))
      return 0;
    m->nodes[m->node_count++] = m1;
    m->nodes[m->node_count++] = m2;
    m->output = out0(g, m2);
    return 1;
  }
  if (is_scalar(g, other, 0.5, 1e-6)) { /* Mul(x, Mul(A, 0.5)) */
    if (!is_op(g, m2, "Mul") || other_input(g, m2, out0(g, m1)) != m->x)
      return 0;
    m->nodes[m->node_count++] = m1;
    m->nodes[m->node_count++] = m2;
    m->output = out0(g, m2);
    return 1;
  }
  int32_t half = g->values[other].producer; /* Mul(Mul(x, 0.5), A) */
  if (!is_op(g, half, "Mul") || dsc_single_consumer(g, other) != m1 ||
      other_input(g, half, m->x) < 0 || !is_scalar(g, other_input(g, half, m->x), 0.5, 1e-6))
    return 0;
  m->nodes[m->node_count++] = half;
  m->nodes[m->node_count++] = m1;
  m->output = out0(g, m1);
  return 1;
}

static int match_gelu(const dsc_graph *g, int32_t erf, gelu_match *m) {
  memset(m, 0, sizeof *m);
  int32_t scale_node = -1;
  m->x = gelu_source(g, erf, &scale_node);
  if (m->x < 0)
    return 0;
  int32_t add = dsc_single_consumer(g, out0(g, erf));
  if (!is_op(g, add, "Add") || !is_scalar(g, other_input(g, add, out0(g, erf)), 1.0, 1e-6))
    return 0;
  m->nodes[m->node_count++] = scale_node;
  m->nodes[m->node_count++] = erf;
  m->nodes[m->node_count++] = add;
  if (!match_gelu_tail(g, out0(g, add), m))
    return 0;
  const dsc_value *x = &g->values[m->x], *y = &g->values[m->output];
  return x->rank >= 0 && y->rank == x->rank &&
         memcmp(y->dims, x->dims, sizeof y->dims[0] * (size_t)x->rank) == 0;
}

ds_status dsc_fuse_gelu(dsc_graph *g, ds_error *err) {
  DS_TRY(dsc_graph_index_uses(g, err));
  int32_t original = g->node_count;
  for (int32_t i = 0; i < original; i++) {
    if (is_op(g, i, "Gelu") && g->values[out0(g, i)].rank >= 0) {
      /* Opset 20's Gelu; its handler has rejected approximate='tanh'. */
      g->nodes[i].op = DSR_OP_GELU;
      g->nodes[i].input_count = 1;
      g->report->gelu_fused_count++;
      continue;
    }
    gelu_match m;
    if (!is_op(g, i, "Erf") || !match_gelu(g, i, &m))
      continue;
    DS_TRY(replace_nodes(g, m.nodes, m.node_count, DSR_OP_GELU, "Gelu", &m.x, 1, m.output,
                         err));
    g->report->gelu_fused_count++;
  }
  return DS_OK;
}
