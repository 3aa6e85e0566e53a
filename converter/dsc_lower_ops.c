/*
 * Lowering of the ONNX ops that map onto a short chain of dsr ops rather than one:
 *
 *   Slice     one GATHER per sliced axis, with the selected positions as constant indices
 *             (negative, clamped and strided slices alike); a slice that keeps everything is
 *             a RESHAPE copy.
 *   Concat    of GATHERs of one source along the concat axis (torch.roll exports as two
 *             Slices and a Concat) is one GATHER with the indices joined; any other float
 *             Concat is CONCAT, chained when it has more than 4 inputs.
 *   Expand    a RESHAPE to the output rank, then one GATHER of index 0 repeated per axis that
 *             grows from 1.
 *   Where     with a constant condition m: x * m + y * (1 - m), with the constant branch
 *             folded into one constant; exact for finite x and y.
 *   Pad       PAD (constant mode, no negative pads).
 *   Einsum    two-input products in which every letter is a batch letter (both inputs and
 *             the output), a contracted letter (both inputs only) or a free letter (one input
 *             and the output): Transpose and Reshape of each input to (batch, M, K) and
 *             (batch, K, N), MATMUL, then Reshape and Transpose to the output order. Other
 *             equations are rejected with the node and the equation.
 *
 * Each lowering builds its chain from fresh values and gives the last node the original
 * output, then marks the original node dead (or rewrites it in place).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_ir.h"

static int is_float_activation(const dsc_graph *g, int32_t value) {
  return value >= 0 && g->values[value].data == NULL && g->values[value].dtype == DSC_DTYPE_F32;
}

static int is_float(const dsc_graph *g, int32_t value) {
  return value >= 0 && g->values[value].dtype == DSC_DTYPE_F32;
}

/* Adds a float value named after base with the given shape. */
static ds_status new_value(dsc_graph *g, const char *base, int32_t rank, const int64_t *dims,
                           int32_t *value, ds_error *err) {
  DS_TRY(dsc_graph_add_fresh_value(g, base, value, err));
  dsc_value *v = &g->values[*value];
  v->dtype = DSC_DTYPE_F32;
  v->rank = rank;
  for (int32_t i = 0; i < rank; i++)
    v->dims[i] = dims[i];
  return DS_OK;
}

/* A chain of nodes replacing one ONNX node; the last node's output becomes the original's. */
typedef struct chain {
  int32_t source_node;
  int32_t value;     /* output of the last node added, initially the chain input */
  int32_t last_node; /* -1 until a node is added */
  int32_t step;
} chain;

static void chain_start(chain *c, int32_t node, int32_t input) {
  c->source_node = node;
  c->value = input;
  c->last_node = -1;
  c->step = 0;
}

/* Appends node op (op_type for messages) reading the chain value and extra inputs, with an
 * output of the given shape; returns the node index in *node. */
static ds_status chain_add(dsc_graph *g, chain *c, const char *op_type, int32_t op,
                           const int32_t *extra, int32_t extra_count, int32_t rank,
                           const int64_t *dims, int32_t *node, ds_error *err) {
  char name[DSR_NAME_BYTES + 48];
  snprintf(name, sizeof name, "%.80s/%s_%d", g->nodes[c->source_node].name, op_type, c->step++);
  int32_t out = -1, index = -1;
  DS_TRY(new_value(g, name, rank, dims, &out, err));
  DS_TRY(dsc_graph_add_node(g, name, op_type, 1 + extra_count, 1, &index, err));
  dsc_node *n = &g->nodes[index];
  n->op = op;
  n->inputs[0] = c->value;
  for (int32_t k = 0; k < extra_count; k++)
    n->inputs[1 + k] = extra[k];
  n->outputs[0] = out;
  g->values[out].producer = index;
  c->value = out;
  c->last_node = index;
  *node = index;
  return DS_OK;
}

/* Gives the chain's last node the original node's output and retires the original. */
static void chain_finish(dsc_graph *g, chain *c) {
  int32_t original = g->nodes[c->source_node].outputs[0];
  g->nodes[c->last_node].outputs[0] = original;
  g->values[original].producer = c->last_node;
  g->values[c->value].producer = -1;
  g->nodes[c->source_node].dead = 1;
}

static ds_status add_reshape(dsc_graph *g, chain *c, int32_t rank, const int64_t *dims,
                             ds_error *err) {
  int32_t node = -1;
  return chain_add(g, c, "Reshape", DSR_OP_RESHAPE, NULL, 0, rank, dims, &node, err);
}

static ds_status add_transpose(dsc_graph *g, chain *c, const int32_t *perm, ds_error *err) {
  const dsc_value *in = &g->values[c->value];
  int32_t rank = in->rank;
  int64_t dims[DSR_MAX_RANK] = {0};
  for (int32_t i = 0; i < rank; i++)
    dims[i] = in->dims[perm[i]];
  int32_t node = -1;
  DS_TRY(chain_add(g, c, "Transpose", DSR_OP_TRANSPOSE, NULL, 0, rank, dims, &node, err));
  for (int32_t i = 0; i < rank; i++)
    g->nodes[node].attrs.transpose.perm[i] = perm[i];
  return DS_OK;
}

/* Constant I64 indices of count values made by start + i * step. */
static ds_status index_constant(dsc_graph *g, const char *base, int64_t count, int64_t start,
                                int64_t step, int32_t *value, ds_error *err) {
  char name[DSR_NAME_BYTES + 32];
  snprintf(name, sizeof name, "%.80s_indices", base);
  DS_TRY(dsc_graph_add_fresh_value(g, name, value, err));
  int64_t dims[1] = {count};
  DS_TRY(dsc_value_set_data(g, *value, DSC_DTYPE_I64, 1, dims, NULL, err));
  int64_t *data = g->values[*value].data;
  for (int64_t i = 0; i < count; i++)
    data[i] = start + i * step;
  return DS_OK;
}

static ds_status add_gather(dsc_graph *g, chain *c, int32_t axis, int64_t count, int64_t start,
                            int64_t step, ds_error *err) {
  int32_t indices = -1;
  DS_TRY(index_constant(g, g->nodes[c->source_node].name, count, start, step, &indices, err));
  const dsc_value *in = &g->values[c->value];
  int64_t dims[DSR_MAX_RANK];
  memcpy(dims, in->dims, sizeof dims);
  dims[axis] = count;
  int32_t node = -1;
  DS_TRY(chain_add(g, c, "Gather", DSR_OP_GATHER, &indices, 1, in->rank, dims, &node, err));
  g->nodes[node].attrs.softmax.axis = axis;
  return DS_OK;
}

/* ---- Slice ---- */

static ds_status lower_slice(dsc_graph *g, int32_t index, int *done, ds_error *err) {
  dsc_node *n = &g->nodes[index];
  if (!is_float_activation(g, n->inputs[0]))
    return DS_OK;
  dsc_slice_plan plan;
  DS_TRY(dsc_plan_slice(g, n, &g->values[n->inputs[0]], &plan, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int32_t rank = in->rank;
  for (int32_t a = 0; a < rank; a++) {
    if (plan.dims[a] < 1)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "the slice of axis %d is empty; the "
                           "runtime needs every dim to be at least 1", a);
  }

  chain c;
  chain_start(&c, index, n->inputs[0]);
  for (int32_t a = 0; a < rank; a++) {
    const dsc_value *v = &g->values[n->inputs[0]];
    if (plan.start[a] == 0 && plan.step[a] == 1 && plan.dims[a] == v->dims[a])
      continue;
    DS_TRY(add_gather(g, &c, a, plan.dims[a], plan.start[a], plan.step[a], err));
  }
  if (c.last_node < 0)
    DS_TRY(add_reshape(g, &c, rank, plan.dims, err));
  chain_finish(g, &c);
  *done = 1;
  return DS_OK;
}

/* ---- Concat ---- */

/* The live GATHER that produces value from source along axis and feeds only consumer. */
static int is_merge_gather(const dsc_graph *g, int32_t value, int32_t consumer, int32_t axis,
                           int32_t *source) {
  int32_t p = value >= 0 ? g->values[value].producer : -1;
  if (p < 0 || g->nodes[p].dead || g->nodes[p].op != DSR_OP_GATHER ||
      g->nodes[p].attrs.softmax.axis != axis || dsc_single_consumer(g, value) != consumer)
    return 0;
  const dsc_value *indices = &g->values[g->nodes[p].inputs[1]];
  if (indices->rank != 1 || indices->data == NULL)
    return 0;
  if (*source >= 0 && g->nodes[p].inputs[0] != *source)
    return 0;
  *source = g->nodes[p].inputs[0];
  return 1;
}

/* Concat of GATHERs from one source: a single GATHER with the joined indices. */
static ds_status merge_gathers(dsc_graph *g, int32_t index, int32_t axis, int *done,
                               ds_error *err) {
  dsc_node *n = &g->nodes[index];
  int32_t source = -1;
  int64_t total = 0;
  for (int32_t k = 0; k < n->input_count; k++) {
    if (n->inputs[k] < 0 || !is_merge_gather(g, n->inputs[k], index, axis, &source))
      return DS_OK;
    total += dsc_value_elements(&g->values[g->nodes[g->values[n->inputs[k]].producer].inputs[1]]);
  }
  if (source < 0)
    return DS_OK;

  int32_t merged = -1;
  DS_TRY(index_constant(g, n->name, total, 0, 0, &merged, err));
  n = &g->nodes[index];
  int64_t *data = g->values[merged].data, used = 0;
  for (int32_t k = 0; k < n->input_count; k++) {
    dsc_node *gather = &g->nodes[g->values[n->inputs[k]].producer];
    const dsc_value *indices = &g->values[gather->inputs[1]];
    for (int64_t i = 0; i < dsc_value_elements(indices); i++)
      data[used++] = dsc_get_i(indices, i);
    gather->dead = 1;
    g->values[n->inputs[k]].producer = -1;
  }
  n->op = DSR_OP_GATHER;
  n->attrs.softmax.axis = axis;
  n->inputs[0] = source;
  n->inputs[1] = merged;
  n->input_count = 2;
  *done = 1;
  return DS_OK;
}

static ds_status lower_concat(dsc_graph *g, int32_t index, int *done, ds_error *err) {
  dsc_node *n = &g->nodes[index];
  const dsc_value *out = &g->values[n->outputs[0]];
  if (out->dtype != DSC_DTYPE_F32)
    return DS_OK;
  int64_t axis_attr = 0;
  DS_TRY(dsc_attr_int(g, n, "axis", 0, &axis_attr, err));
  int32_t axis = 0;
  DS_TRY(dsc_normalize_axis(g, n, axis_attr, out->rank, &axis, err));

  /* Absent or empty inputs add nothing. */
  int32_t present_count = 0;
  for (int32_t k = 0; k < n->input_count; k++) {
    int32_t v = n->inputs[k];
    if (v < 0 || dsc_value_elements(&g->values[v]) == 0)
      continue;
    if (!is_float(g, v))
      return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "input %d is not float", k);
    n->inputs[present_count++] = v;
  }
  n->input_count = present_count;
  if (present_count == 0)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "every input is empty");
  DS_TRY(merge_gathers(g, index, axis, done, err));
  if (*done)
    return DS_OK;
  n = &g->nodes[index];
  if (present_count == 1) {
    n->op = DSR_OP_RESHAPE;
    *done = 1;
    return DS_OK;
  }

  /* Joins up to DSR_MAX_NODE_INPUTS at a time, left to right, so that order is present_count. */
  int32_t inputs[DSC_MAX_NODE_ARITY];
  memcpy(inputs, n->inputs, (size_t)present_count * sizeof inputs[0]);
  chain c;
  chain_start(&c, index, inputs[0]);
  int32_t next = 1;
  while (next < present_count) {
    int32_t take = present_count - next < DSR_MAX_NODE_INPUTS - 1 ? present_count - next : DSR_MAX_NODE_INPUTS - 1;
    int64_t dims[DSR_MAX_RANK];
    memcpy(dims, g->values[c.value].dims, sizeof dims);
    for (int32_t k = 0; k < take; k++)
      dims[axis] += g->values[inputs[next + k]].dims[axis];
    int32_t node = -1;
    DS_TRY(chain_add(g, &c, "Concat", DSR_OP_CONCAT, &inputs[next], take,
                     g->values[c.value].rank, dims, &node, err));
    g->nodes[node].attrs.softmax.axis = axis;
    next += take;
  }
  chain_finish(g, &c);
  *done = 1;
  return DS_OK;
}

/* ---- Expand ---- */

static ds_status lower_expand(dsc_graph *g, int32_t index, int *done, ds_error *err) {
  dsc_node *n = &g->nodes[index];
  int32_t x = n->inputs[0];
  if (!is_float_activation(g, x))
    return DS_OK;
  const dsc_value *out = &g->values[n->outputs[0]];
  int32_t rank = out->rank;
  int64_t out_dims[DSR_MAX_RANK], dims[DSR_MAX_RANK] = {0};
  memcpy(out_dims, out->dims, sizeof out_dims);
  if (dsc_value_elements(&g->values[x]) == dsc_value_elements(out)) {
    n->op = DSR_OP_RESHAPE;
    n->input_count = 1;
    *done = 1;
    return DS_OK;
  }

  chain c;
  chain_start(&c, index, x);
  const dsc_value *in = &g->values[x];
  int32_t shift = rank - in->rank;
  for (int32_t i = 0; i < rank; i++)
    dims[i] = i < shift ? 1 : in->dims[i - shift];
  if (shift > 0)
    DS_TRY(add_reshape(g, &c, rank, dims, err));
  for (int32_t a = 0; a < rank; a++) {
    if (dims[a] == 1 && out_dims[a] > 1)
      DS_TRY(add_gather(g, &c, a, out_dims[a], 0, 0, err));
  }
  chain_finish(g, &c);
  *done = 1;
  return DS_OK;
}

/* ---- Where ---- */

/* A float constant of the broadcast shape of cond and branch: branch where cond equals
 * pick, 0 elsewhere; branch -1 gives the mask itself (1 where cond equals pick). */
static ds_status where_constant(dsc_graph *g, dsc_node *n, int32_t cond, int32_t branch,
                                int pick, const char *suffix, int32_t *value, ds_error *err) {
  dsc_value shape;
  memset(&shape, 0, sizeof shape);
  const dsc_value *c = &g->values[cond];
  if (branch >= 0)
    DS_TRY(dsc_broadcast_shape(g, n, c, &g->values[branch], &shape.rank, shape.dims, err));
  else
    shape = *c;
  char name[DSR_NAME_BYTES + 32];
  snprintf(name, sizeof name, "%.80s_%s", n->name, suffix);
  DS_TRY(dsc_graph_add_fresh_value(g, name, value, err));
  DS_TRY(dsc_value_set_data(g, *value, DSC_DTYPE_F32, shape.rank, shape.dims, NULL, err));
  float *data = g->values[*value].data;
  c = &g->values[cond];
  const dsc_value *b = branch >= 0 ? &g->values[branch] : NULL;
  int64_t count = dsc_value_elements(&g->values[*value]);
  for (int64_t i = 0; i < count; i++) {
    int hit = (dsc_get_i(c, dsc_broadcast_offset(c, shape.rank, shape.dims, i)) != 0) == pick;
    double v = b != NULL ? dsc_get_f(b, dsc_broadcast_offset(b, shape.rank, shape.dims, i)) : 1.0;
    data[i] = hit ? (float)v : 0.0f;
  }
  return DS_OK;
}

/* Adds node op(a, b) with the broadcast output shape; nothing reads its output yet. */
static ds_status add_binary(dsc_graph *g, dsc_node *n, int32_t op, const char *op_type,
                            int32_t a, int32_t b, int32_t *out, int32_t *node, ds_error *err) {
  dsc_value shape;
  memset(&shape, 0, sizeof shape);
  DS_TRY(dsc_broadcast_shape(g, n, &g->values[a], &g->values[b], &shape.rank, shape.dims, err));
  char name[DSR_NAME_BYTES + 48];
  snprintf(name, sizeof name, "%.80s/%s", n->name, op_type);
  DS_TRY(new_value(g, name, shape.rank, shape.dims, out, err));
  DS_TRY(dsc_graph_add_node(g, name, op_type, 2, 1, node, err));
  dsc_node *m = &g->nodes[*node];
  m->op = op;
  m->inputs[0] = a;
  m->inputs[1] = b;
  m->outputs[0] = *out;
  g->values[*out].producer = *node;
  return DS_OK;
}

static ds_status lower_where(dsc_graph *g, int32_t index, int *done, ds_error *err) {
  dsc_node *n = &g->nodes[index];
  int32_t cond = n->inputs[0], x = n->inputs[1], y = n->inputs[2];
  if (!is_float(g, x) || !is_float(g, y))
    return DS_OK;
  if (!dsc_is_constant(g, cond))
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "the condition '%s' depends on the "
                         "input; only a constant condition (a mask) is supported",
                         g->values[cond].name);
  int x_live = !dsc_is_constant(g, x), y_live = !dsc_is_constant(g, y);

  /* Two terms: live branch times its mask, plus the other branch (a constant or a product). */
  int32_t terms[2], term_count = 0, node = -1, product = -1;
  if (x_live) {
    int32_t mask = -1;
    DS_TRY(where_constant(g, &g->nodes[index], cond, -1, 1, "mask", &mask, err));
    DS_TRY(add_binary(g, &g->nodes[index], DSR_OP_MUL, "Mul_x", x, mask, &product, &node, err));
    terms[term_count++] = product;
  } else {
    int32_t part = -1;
    DS_TRY(where_constant(g, &g->nodes[index], cond, x, 1, "x_part", &part, err));
    terms[term_count++] = part;
  }
  if (y_live) {
    int32_t mask = -1;
    DS_TRY(where_constant(g, &g->nodes[index], cond, -1, 0, "inverse_mask", &mask, err));
    DS_TRY(add_binary(g, &g->nodes[index], DSR_OP_MUL, "Mul_y", y, mask, &product, &node, err));
    terms[term_count++] = product;
  } else {
    int32_t part = -1;
    DS_TRY(where_constant(g, &g->nodes[index], cond, y, 0, "y_part", &part, err));
    terms[term_count++] = part;
  }
  int32_t sum = -1;
  DS_TRY(add_binary(g, &g->nodes[index], DSR_OP_ADD, "Add", terms[0], terms[1], &sum, &node,
                    err));
  n = &g->nodes[index];
  const dsc_value *s = &g->values[sum], *o = &g->values[n->outputs[0]];
  if (s->rank != o->rank || memcmp(s->dims, o->dims, sizeof s->dims[0] * (size_t)s->rank) != 0)
    return dsc_node_fail(g, n, DS_ERR_INTERNAL, err, "the lowered Where has another shape");
  g->nodes[node].outputs[0] = n->outputs[0];
  g->values[n->outputs[0]].producer = node;
  g->values[sum].producer = -1;
  n->dead = 1;
  *done = 1;
  return DS_OK;
}

/* ---- Pad ---- */

static ds_status lower_pad(dsc_graph *g, int32_t index, int *done, ds_error *err) {
  dsc_node *n = &g->nodes[index];
  if (!is_float_activation(g, n->inputs[0]))
    return DS_OK;
  int32_t rank = g->values[n->inputs[0]].rank;
  for (int32_t a = 0; a < rank; a++) {
    if (n->attrs.pad.begin[a] < 0 || n->attrs.pad.end[a] < 0)
      return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "negative pads (%d, %d) on axis "
                           "%d crop the input, which is not supported", n->attrs.pad.begin[a],
                           n->attrs.pad.end[a], a);
  }
  if (!isfinite(n->attrs.pad.value))
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "pad value %g is not finite",
                         (double)n->attrs.pad.value);
  for (int32_t a = rank; a < DSR_MAX_RANK; a++)
    n->attrs.pad.begin[a] = n->attrs.pad.end[a] = 0;
  n->op = DSR_OP_PAD;
  n->input_count = 1;
  *done = 1;
  return DS_OK;
}

/* ---- Einsum ---- */

typedef struct einsum_plan {
  char terms[3][16];
  int64_t size[128];
  char batch[8], contract[8], free_a[8], free_b[8];
  int32_t batch_count, contract_count, free_a_count, free_b_count;
} einsum_plan;

static int32_t position(const char *term, char letter) {
  const char *p = strchr(term, letter);
  return p != NULL ? (int32_t)(p - term) : -1;
}

static ds_status einsum_reject(const dsc_graph *g, const dsc_node *n, const char *equation,
                               const char *reason, ds_error *err) {
  return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "equation '%s' is not supported: %s; "
                       "supported are products whose letters each appear in both inputs "
                       "(batch or contracted) or in one input and the output, such as "
                       "'bcm,bcn->bmn', 'bmn,bcn->bcm' and 'bhmc,bhnc->bhmn'", equation,
                       reason);
}

/* Splits the equation and sorts its letters into the four kinds. */
static ds_status plan_einsum(const dsc_graph *g, const dsc_node *n, einsum_plan *p,
                             ds_error *err) {
  char equation[128], raw[128];
  DS_TRY(dsc_attr_string(g, n, "equation", "", raw, sizeof raw, err));
  size_t used = 0;
  for (const char *c = raw; *c != '\0' && used + 1 < sizeof equation; c++) {
    if (*c != ' ')
      equation[used++] = *c;
  }
  equation[used] = '\0';
  memset(p, 0, sizeof *p);
  const char *arrow = strstr(equation, "->"), *comma = strchr(equation, ',');
  if (arrow == NULL || comma == NULL || comma > arrow || strchr(comma + 1, ',') != NULL)
    return einsum_reject(g, n, equation, "it needs two inputs and an explicit '->' output",
                         err);
  const char *starts[3] = {equation, comma + 1, arrow + 2};
  size_t lengths[3] = {(size_t)(comma - equation), (size_t)(arrow - comma - 1),
                       strlen(arrow + 2)};
  for (int32_t t = 0; t < 3; t++) {
    if (lengths[t] > DSR_MAX_RANK)
      return einsum_reject(g, n, equation, "a term has more than 6 letters", err);
    memcpy(p->terms[t], starts[t], lengths[t]);
    for (size_t i = 0; i < lengths[t]; i++) {
      char letter = p->terms[t][i];
      if (!((letter >= 'a' && letter <= 'z') || (letter >= 'A' && letter <= 'Z')))
        return einsum_reject(g, n, equation, "only letters are allowed (no ellipsis)", err);
      if (position(p->terms[t], letter) != (int32_t)i)
        return einsum_reject(g, n, equation, "a letter repeats within one term (a diagonal)",
                             err);
    }
  }
  for (int32_t t = 0; t < 2; t++) {
    const dsc_value *v = &g->values[n->inputs[t]];
    for (int32_t i = 0; i < v->rank; i++)
      p->size[(unsigned char)p->terms[t][i]] = v->dims[i];
  }

  const char *a = p->terms[0], *b = p->terms[1], *o = p->terms[2];
  for (const char *c = o; *c != '\0'; c++) {
    int in_a = position(a, *c) >= 0, in_b = position(b, *c) >= 0;
    if (in_a && in_b)
      p->batch[p->batch_count++] = *c;
    else if (in_a)
      p->free_a[p->free_a_count++] = *c;
    else
      p->free_b[p->free_b_count++] = *c;
  }
  for (const char *c = a; *c != '\0'; c++) {
    if (position(o, *c) >= 0)
      continue;
    if (position(b, *c) < 0)
      return einsum_reject(g, n, equation, "a letter of input 0 is summed out alone", err);
    p->contract[p->contract_count++] = *c;
  }
  for (const char *c = b; *c != '\0'; c++) {
    if (position(o, *c) < 0 && position(a, *c) < 0)
      return einsum_reject(g, n, equation, "a letter of input 1 is summed out alone", err);
  }
  return DS_OK;
}

static int64_t product(const einsum_plan *p, const char *letters, int32_t count) {
  int64_t total = 1;
  for (int32_t i = 0; i < count; i++)
    total *= p->size[(unsigned char)letters[i]];
  return total;
}

/* Transposes input t into the letter order of groups, then reshapes it to (batch, rows,
 * cols). */
static ds_status prepare_operand(dsc_graph *g, chain *c, const einsum_plan *p, int32_t t,
                                 const char *const groups[3], const int32_t counts[3],
                                 ds_error *err) {
  const char *term = p->terms[t];
  int32_t perm[DSR_MAX_RANK], rank = 0, identity = 1;
  for (int32_t k = 0; k < 3; k++) {
    for (int32_t i = 0; i < counts[k]; i++) {
      perm[rank] = position(term, groups[k][i]);
      identity &= perm[rank] == rank;
      rank++;
    }
  }
  if (!identity)
    DS_TRY(add_transpose(g, c, perm, err));
  int64_t dims[DSR_MAX_RANK] = {product(p, groups[0], counts[0]), product(p, groups[1], counts[1]),
                     product(p, groups[2], counts[2])};
  const dsc_value *v = &g->values[c->value];
  if (v->rank != 3 || v->dims[0] != dims[0] || v->dims[1] != dims[1] || v->dims[2] != dims[2])
    DS_TRY(add_reshape(g, c, 3, dims, err));
  return DS_OK;
}

static ds_status lower_einsum(dsc_graph *g, int32_t index, int *done, ds_error *err) {
  dsc_node *n = &g->nodes[index];
  if (n->input_count != 2 || !is_float(g, n->inputs[0]) || !is_float(g, n->inputs[1]))
    return DS_OK;
  einsum_plan p;
  DS_TRY(plan_einsum(g, n, &p, err));

  /* When the output lists input 1's free letters first, the product of the swapped operands
   * saves the final transpose. */
  int swap = p.free_a_count > 0 && p.free_b_count > 0 &&
             strncmp(p.terms[2] + p.batch_count, p.free_b, (size_t)p.free_b_count) == 0;
  if (swap) {
    char letters[sizeof p.free_a], term[sizeof p.terms[0]];
    int32_t count = p.free_a_count;
    memcpy(letters, p.free_a, sizeof letters);
    memcpy(p.free_a, p.free_b, sizeof letters);
    memcpy(p.free_b, letters, sizeof letters);
    p.free_a_count = p.free_b_count;
    p.free_b_count = count;
    memcpy(term, p.terms[0], sizeof term);
    memcpy(p.terms[0], p.terms[1], sizeof term);
    memcpy(p.terms[1], term, sizeof term);
  }
  int32_t left_input = n->inputs[swap ? 1 : 0], right_input = n->inputs[swap ? 0 : 1];

  chain left, right;
  chain_start(&left, index, left_input);
  chain_start(&right, index, right_input);
  const char *groups_a[3] = {p.batch, p.free_a, p.contract};
  const char *groups_b[3] = {p.batch, p.contract, p.free_b};
  int32_t counts_a[3] = {p.batch_count, p.free_a_count, p.contract_count};
  int32_t counts_b[3] = {p.batch_count, p.contract_count, p.free_b_count};
  DS_TRY(prepare_operand(g, &left, &p, 0, groups_a, counts_a, err));
  DS_TRY(prepare_operand(g, &right, &p, 1, groups_b, counts_b, err));

  /* MATMUL of (batch, M, K) and (batch, K, N). */
  int64_t dims[DSR_MAX_RANK] = {product(&p, p.batch, p.batch_count),
                                product(&p, p.free_a, p.free_a_count),
                                product(&p, p.free_b, p.free_b_count)};
  int32_t node = -1;
  DS_TRY(chain_add(g, &left, "MatMul", DSR_OP_MATMUL, &right.value, 1, 3, dims, &node, err));

  /* Back to letters in the order batch, free_a, free_b, then to the output's order. */
  char natural[DSR_MAX_RANK + 1];
  int32_t rank = 0;
  for (int32_t i = 0; i < p.batch_count; i++)
    natural[rank++] = p.batch[i];
  for (int32_t i = 0; i < p.free_a_count; i++)
    natural[rank++] = p.free_a[i];
  for (int32_t i = 0; i < p.free_b_count; i++)
    natural[rank++] = p.free_b[i];
  natural[rank] = '\0';
  int64_t natural_dims[DSR_MAX_RANK] = {0};
  for (int32_t i = 0; i < rank; i++)
    natural_dims[i] = p.size[(unsigned char)natural[i]];
  if (rank != 3 || natural_dims[0] != dims[0] || natural_dims[1] != dims[1] ||
      natural_dims[2] != dims[2])
    DS_TRY(add_reshape(g, &left, rank, natural_dims, err));
  int32_t perm[DSR_MAX_RANK], identity = 1;
  for (int32_t i = 0; i < rank; i++) {
    perm[i] = position(natural, p.terms[2][i]);
    identity &= perm[i] == i;
  }
  if (!identity)
    DS_TRY(add_transpose(g, &left, perm, err));
  chain_finish(g, &left);
  *done = 1;
  return DS_OK;
}

ds_status dsc_lower_data_op(dsc_graph *g, int32_t index, int *done, ds_error *err) {
  *done = 0;
  const char *op_type = g->nodes[index].op_type;
  if (g->nodes[index].input_count < 1 || g->nodes[index].inputs[0] < 0)
    return DS_OK;
  if (strcmp(op_type, "Slice") == 0)
    return lower_slice(g, index, done, err);
  if (strcmp(op_type, "Concat") == 0)
    return lower_concat(g, index, done, err);
  if (strcmp(op_type, "Expand") == 0)
    return lower_expand(g, index, done, err);
  if (strcmp(op_type, "Where") == 0 && g->nodes[index].input_count == 3)
    return lower_where(g, index, done, err);
  if (strcmp(op_type, "Pad") == 0)
    return lower_pad(g, index, done, err);
  if (strcmp(op_type, "Einsum") == 0)
    return lower_einsum(g, index, done, err);
  return DS_OK;
}
