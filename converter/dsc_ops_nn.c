/*
 * Network ops: shape inference for Conv, MatMul, Gemm, Einsum, GridSample, GlobalAveragePool
 * and LayerNormalization. They also record the dsr attributes (conv, gemm, norm) that the
 * lifting and lowering steps read. These ops are never folded: a constant-only Conv or
 * product does not occur in the exports the converter targets.
 */
#include <ctype.h>
#include <inttypes.h>
#include <string.h>

#include "dsc_ir.h"

typedef struct conv_geometry {
  int64_t strides[2], dilations[2], pads[4], group;
  int32_t kernel[2];
} conv_geometry;

static ds_status read_pair(const dsc_graph *g, const dsc_node *n, const char *name,
                           int64_t *out, ds_error *err) {
  int64_t values[4];
  int32_t count = 0;
  DS_TRY(dsc_attr_ints(g, n, name, values, 4, &count, err));
  if (count < 0)
    return DS_OK;
  if (count != 2 || values[0] < 1 || values[1] < 1 || values[0] > 4096 || values[1] > 4096)
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "attribute '%s' must hold two "
                         "values in 1..4096 (2-D convolution)", name);
  out[0] = values[0];
  out[1] = values[1];
  return DS_OK;
}

/* Pads from the pads attribute, or from auto_pad SAME_UPPER / SAME_LOWER. */
static ds_status conv_pads(const dsc_graph *g, const dsc_node *n, const dsc_value *x,
                           conv_geometry *c, ds_error *err) {
  char auto_pad[32];
  DS_TRY(dsc_attr_string(g, n, "auto_pad", "NOTSET", auto_pad, sizeof auto_pad, err));
  int32_t count = 0;
  DS_TRY(dsc_attr_ints(g, n, "pads", c->pads, 4, &count, err));
  if (count < 0)
    memset(c->pads, 0, sizeof c->pads);
  else if (count != 4)
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "pads has %d values, expected 4",
                         count);
  for (int32_t i = 0; i < 4; i++) {
    if (c->pads[i] < 0 || c->pads[i] > 4096)
      return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "pad %" PRId64 " is outside "
                           "0..4096", c->pads[i]);
  }
  if (strcmp(auto_pad, "SAME_UPPER") == 0 || strcmp(auto_pad, "SAME_LOWER") == 0) {
    for (int32_t a = 0; a < 2; a++) {
      int64_t in = x->dims[2 + a], out = (in + c->strides[a] - 1) / c->strides[a];
      int64_t total = (out - 1) * c->strides[a] + (c->kernel[a] - 1) * c->dilations[a] + 1 - in;
      total = total > 0 ? total : 0;
      int64_t small = total / 2, large = total - small;
      c->pads[a] = auto_pad[5] == 'U' ? small : large;
      c->pads[a + 2] = auto_pad[5] == 'U' ? large : small;
    }
  } else if (strcmp(auto_pad, "VALID") == 0) {
    memset(c->pads, 0, sizeof c->pads);
  } else if (strcmp(auto_pad, "NOTSET") != 0) {
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "auto_pad '%s' is not supported",
                         auto_pad);
  }
  return DS_OK;
}

static ds_status conv_geometry_read(const dsc_graph *g, const dsc_node *n, const dsc_value *x,
                                    const dsc_value *w, conv_geometry *c, ds_error *err) {
  c->strides[0] = c->strides[1] = c->dilations[0] = c->dilations[1] = 1;
  DS_TRY(read_pair(g, n, "strides", c->strides, err));
  DS_TRY(read_pair(g, n, "dilations", c->dilations, err));
  DS_TRY(dsc_attr_int(g, n, "group", 1, &c->group, err));
  int64_t kernel[2] = {w->dims[2], w->dims[3]};
  DS_TRY(read_pair(g, n, "kernel_shape", kernel, err));
  if (kernel[0] != w->dims[2] || kernel[1] != w->dims[3])
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "kernel_shape disagrees with the weight");
  c->kernel[0] = (int32_t)kernel[0];
  c->kernel[1] = (int32_t)kernel[1];
  return conv_pads(g, n, x, c, err);
}

static ds_status op_conv(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 3, err));
  const dsc_value *x = &g->values[n->inputs[0]];
  const dsc_value *w = &g->values[n->inputs[1]];
  if (x->rank != 4 || w->rank != 4)
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "only 2-D convolution (rank 4 "
                         "input and weight) is supported");
  conv_geometry c;
  DS_TRY(conv_geometry_read(g, n, x, w, &c, err));
  if (c.group < 1 || x->dims[1] % c.group != 0 || w->dims[0] % c.group != 0 ||
      w->dims[1] * c.group != x->dims[1])
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "group %" PRId64 " does not fit %" PRId64
                         " input and %" PRId64 " output channels", c.group, x->dims[1],
                         w->dims[0]);
  if (n->input_count > 2 && n->inputs[2] >= 0 &&
      dsc_value_elements(&g->values[n->inputs[2]]) != w->dims[0])
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "bias size differs from %" PRId64
                         " output channels", w->dims[0]);

  int64_t dims[4] = {x->dims[0], w->dims[0], 0, 0};
  for (int32_t a = 0; a < 2; a++) {
    int64_t span = (c.kernel[a] - 1) * c.dilations[a] + 1;
    int64_t padded = x->dims[2 + a] + c.pads[a] + c.pads[a + 2];
    if (padded < span)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "kernel is larger than the padded input");
    dims[2 + a] = (padded - span) / c.strides[a] + 1;
  }

  dsr_conv_attrs *attrs = &n->attrs.conv;
  for (int32_t a = 0; a < 2; a++) {
    attrs->stride[a] = (int32_t)c.strides[a];
    attrs->dilation[a] = (int32_t)c.dilations[a];
  }
  attrs->pad[0] = (int32_t)c.pads[0];
  attrs->pad[1] = (int32_t)c.pads[1];
  attrs->pad[2] = (int32_t)c.pads[2];
  attrs->pad[3] = (int32_t)c.pads[3];
  attrs->group = (int32_t)c.group;
  return dsc_set_output_shape(g, n, 0, DSC_DTYPE_F32, 4, dims, err);
}

static ds_status op_matmul(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 2, err));
  dsc_value a = g->values[n->inputs[0]], b = g->values[n->inputs[1]];
  if (a.rank < 1 || b.rank < 1)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "inputs must have rank 1 or more");
  int a_vector = a.rank == 1, b_vector = b.rank == 1;
  if (a_vector) {
    a.dims[1] = a.dims[0];
    a.dims[0] = 1;
    a.rank = 2;
  }
  if (b_vector) {
    b.dims[1] = 1;
    b.rank = 2;
  }
  if (a.dims[a.rank - 1] != b.dims[b.rank - 2])
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "inner dims differ: %" PRId64 " and %"
                         PRId64, a.dims[a.rank - 1], b.dims[b.rank - 2]);
  dsc_value batch_a = a, batch_b = b;
  batch_a.rank -= 2;
  batch_b.rank -= 2;
  int64_t dims[DSR_MAX_RANK + 2];
  int32_t rank = 0;
  DS_TRY(dsc_broadcast_shape(g, n, &batch_a, &batch_b, &rank, dims, err));
  if (!a_vector)
    dims[rank++] = a.dims[a.rank - 2];
  if (!b_vector)
    dims[rank++] = b.dims[b.rank - 1];
  return dsc_set_output_shape(g, n, 0, DSC_DTYPE_F32, rank, dims, err);
}

static ds_status op_gemm(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 3, err));
  const dsc_value *a = &g->values[n->inputs[0]];
  const dsc_value *b = &g->values[n->inputs[1]];
  dsr_gemm_attrs *attrs = &n->attrs.gemm;
  int64_t ta = 0, tb = 0;
  DS_TRY(dsc_attr_float(g, n, "alpha", 1.0f, &attrs->alpha, err));
  DS_TRY(dsc_attr_float(g, n, "beta", 1.0f, &attrs->beta, err));
  DS_TRY(dsc_attr_int(g, n, "transA", 0, &ta, err));
  DS_TRY(dsc_attr_int(g, n, "transB", 0, &tb, err));
  attrs->trans_a = ta != 0;
  attrs->trans_b = tb != 0;
  if (a->rank != 2 || b->rank != 2)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "A and B must be 2-D");
  int64_t m = a->dims[ta ? 1 : 0], k = a->dims[ta ? 0 : 1];
  int64_t kb = b->dims[tb ? 1 : 0], cols = b->dims[tb ? 0 : 1];
  if (k != kb)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "inner dims differ: %" PRId64 " and %"
                         PRId64, k, kb);
  int64_t dims[2] = {m, cols};
  if (n->input_count > 2 && n->inputs[2] >= 0) {
    dsc_value out;
    memset(&out, 0, sizeof out);
    out.rank = 2;
    out.dims[0] = m;
    out.dims[1] = cols;
    int64_t check[DSR_MAX_RANK];
    int32_t rank = 0;
    DS_TRY(dsc_broadcast_shape(g, n, &out, &g->values[n->inputs[2]], &rank, check, err));
    if (rank != 2 || check[0] != m || check[1] != cols)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "C does not broadcast to (M, N)");
  }
  return dsc_set_output_shape(g, n, 0, DSC_DTYPE_F32, 2, dims, err);
}

/* Parses "bcm,bcn->bmn" (spaces ignored) into three letter strings. */
static ds_status einsum_terms(const dsc_graph *g, const dsc_node *n, char terms[3][16],
                              ds_error *err) {
  char equation[128];
  DS_TRY(dsc_attr_string(g, n, "equation", "", equation, sizeof equation, err));
  int32_t term = 0, length = 0;
  memset(terms, 0, 3 * 16);
  for (const char *p = equation; *p != '\0'; p++) {
    if (*p == ' ')
      continue;
    if (*p == ',' && term == 0) {
      term = 1;
      length = 0;
    } else if (*p == '-' && p[1] == '>' && term == 1) {
      term = 2;
      length = 0;
      p++;
    } else if (isalpha((unsigned char)*p) && length < DSR_MAX_RANK) {
      terms[term][length++] = *p;
    } else {
      return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "equation '%s' is not supported: "
                           "expected two inputs, explicit output, letters only, rank <= %d",
                           equation, DSR_MAX_RANK);
    }
  }
  if (term != 2)
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "equation '%s' needs two inputs "
                         "and an explicit '->' output", equation);
  return DS_OK;
}

static ds_status op_einsum(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 2, err));
  char terms[3][16];
  DS_TRY(einsum_terms(g, n, terms, err));
  int64_t size[128];
  for (int32_t i = 0; i < 128; i++)
    size[i] = -1;
  for (int32_t t = 0; t < 2; t++) {
    const dsc_value *v = &g->values[n->inputs[t]];
    if ((int32_t)strlen(terms[t]) != v->rank)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "term '%s' does not match rank %d",
                           terms[t], v->rank);
    for (int32_t i = 0; i < v->rank; i++) {
      int64_t *s = &size[(unsigned char)terms[t][i]];
      if (*s >= 0 && *s != v->dims[i])
        return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "letter '%c' has sizes %" PRId64
                             " and %" PRId64, terms[t][i], *s, v->dims[i]);
      *s = v->dims[i];
    }
  }
  int64_t dims[DSR_MAX_RANK];
  int32_t rank = (int32_t)strlen(terms[2]);
  for (int32_t i = 0; i < rank; i++) {
    dims[i] = size[(unsigned char)terms[2][i]];
    if (dims[i] < 0)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "output letter '%c' is in no input",
                           terms[2][i]);
  }
  return dsc_set_output_shape(g, n, 0, DSC_DTYPE_F32, rank, dims, err);
}

static ds_status op_grid_sample(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 2, err));
  const dsc_value *x = &g->values[n->inputs[0]];
  const dsc_value *grid = &g->values[n->inputs[1]];
  if (x->rank != 4 || grid->rank != 4 || grid->dims[3] != 2 || grid->dims[0] != x->dims[0])
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "expected X (N, C, H, W) and grid "
                         "(N, Ho, Wo, 2)");
  int64_t dims[4] = {x->dims[0], x->dims[1], grid->dims[1], grid->dims[2]};
  return dsc_set_output_shape(g, n, 0, DSC_DTYPE_F32, 4, dims, err);
}

static ds_status op_global_average_pool(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  const dsc_value *x = &g->values[n->inputs[0]];
  if (x->rank < 3)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "input rank must be 3 or more");
  int64_t dims[DSR_MAX_RANK];
  int32_t rank = x->rank;
  for (int32_t i = 0; i < rank; i++)
    dims[i] = i < 2 ? x->dims[i] : 1;
  return dsc_set_output_shape(g, n, 0, DSC_DTYPE_F32, rank, dims, err);
}

static ds_status op_layer_normalization(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 3, err));
  const dsc_value *x = &g->values[n->inputs[0]];
  int64_t axis_attr = -1, stash = 1;
  DS_TRY(dsc_attr_int(g, n, "axis", -1, &axis_attr, err));
  DS_TRY(dsc_attr_int(g, n, "stash_type", 1, &stash, err));
  int32_t axis = 0;
  DS_TRY(dsc_normalize_axis(g, n, axis_attr, x->rank, &axis, err));
  n->attrs.norm.axis = axis;
  DS_TRY(dsc_attr_float(g, n, "epsilon", 1e-5f, &n->attrs.norm.epsilon, err));
  int64_t norm_size = 1;
  for (int32_t i = axis; i < x->rank; i++)
    norm_size *= x->dims[i];
  for (int32_t k = 1; k < n->input_count; k++) {
    if (n->inputs[k] >= 0 && dsc_value_elements(&g->values[n->inputs[k]]) != norm_size)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "input %d must hold %" PRId64 " values, "
                           "the size of axes %d.. of X", k, norm_size, axis);
  }
  int64_t dims[DSR_MAX_RANK], stats[DSR_MAX_RANK];
  int32_t rank = x->rank;
  for (int32_t i = 0; i < rank; i++) {
    dims[i] = x->dims[i];
    stats[i] = i < axis ? x->dims[i] : 1;
  }
  DS_TRY(dsc_set_output_shape(g, n, 0, DSC_DTYPE_F32, rank, dims, err));
  DS_TRY(dsc_set_output_shape(g, n, 1, DSC_DTYPE_F32, rank, stats, err));
  return dsc_set_output_shape(g, n, 2, DSC_DTYPE_F32, rank, stats, err);
}

typedef struct named_handler {
  const char *op_type;
  dsc_op_handler handler;
} named_handler;

static const named_handler nn_handlers[] = {
    {"Conv", op_conv},
    {"MatMul", op_matmul},
    {"Gemm", op_gemm},
    {"Einsum", op_einsum},
    {"GridSample", op_grid_sample},
    {"GlobalAveragePool", op_global_average_pool},
    {"LayerNormalization", op_layer_normalization},
};

dsc_op_handler dsc_find_nn_handler(const char *op_type) {
  for (size_t i = 0; i < sizeof nn_handlers / sizeof nn_handlers[0]; i++) {
    if (strcmp(nn_handlers[i].op_type, op_type) == 0)
      return nn_handlers[i].handler;
  }
  return NULL;
}
