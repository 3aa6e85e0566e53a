/*
 * Plan-time checks: everything a float kernel trusts is verified here, so that dsr_invoke
 * cannot fail. Messages name the node, its op, the shapes involved and the fix.
 */
#include <math.h>
#include <string.h>

#include "dsr_fixed.h"
#include "dsr_kernels.h"

/* Element counts past this are rejected before any size arithmetic can overflow. */
#define DSR_MAX_TENSOR_ELEMENTS ((int64_t)1 << 40)

#define SHAPE_TEXT_BYTES 96

static const char *const op_labels[DSR_OP_COUNT] = {
    "?",           "CONV2D",    "MATMUL",  "GEMM",    "ADD",
    "SUB",         "MUL",       "DIV",     "LAYER_NORM", "GELU",
    "SOFTMAX",     "TRANSPOSE", "RESHAPE", "GATHER",  "GLOBAL_AVG_POOL",
    "DEFORM_ATTN", "CONCAT",    "PAD",
};

const char *dsr_op_label(int32_t op) {
  if (op < 1 || op >= DSR_OP_COUNT)
    return "?";
  return op_labels[op];
}

/* Fails with the node named in front of the detail. */
#define NODE_FAIL(status, format, ...)                                                     \
  ds_fail(err, status, "node %d '%.96s' (%s): " format, node_index, node->name,            \
          dsr_op_label(node->op), __VA_ARGS__)

/* Prefixes an inner failure already recorded in err with the node. */
#define NODE_CONTEXT(status)                                                                \
  ds_fail(err, status, "node %d '%.96s' (%s)", node_index, node->name, dsr_op_label(node->op))

static const dsr_tensor *node_input(const dsr_model *model, const dsr_node *node, int32_t j) {
  if (j >= node->input_count || node->inputs[j] < 0)
    return NULL;
  return &model->tensors[node->inputs[j]];
}

static int same_shape(const dsr_tensor *a, const dsr_tensor *b) {
  if (a->rank != b->rank)
    return 0;
  for (int32_t axis = 0; axis < a->rank; axis++) {
    if (a->dims[axis] != b->dims[axis])
      return 0;
  }
  return 1;
}

static int dims_equal(const dsr_tensor *t, const int32_t *dims, int32_t rank) {
  if (t->rank != rank)
    return 0;
  for (int32_t axis = 0; axis < rank; axis++) {
    if (t->dims[axis] != dims[axis])
      return 0;
  }
  return 1;
}

static void dims_text(const int32_t *dims, int32_t rank, char *text) {
  dsr_tensor shape;
  memset(&shape, 0, sizeof shape);
  shape.rank = rank;
  for (int32_t axis = 0; axis < rank && axis < DSR_MAX_RANK; axis++)
    shape.dims[axis] = dims[axis];
  dsr_shape_text(&shape, text, SHAPE_TEXT_BYTES);
}

/* Minimum and maximum input_count of each op. */
static const int8_t op_min_inputs[DSR_OP_COUNT] = {0, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 2, 1, 1, 2, 1};
static const int8_t op_max_inputs[DSR_OP_COUNT] = {0, 3, 2, 3, 2, 2, 2, 2, 3, 1, 1, 1, 2, 2, 1, 1, 4, 1};

/* Inputs that may be -1: conv bias, Gemm C, LayerNorm beta, Reshape shape. */
static int input_is_optional(int32_t op, int32_t j) {
  return (op == DSR_OP_CONV2D && j == 2) || (op == DSR_OP_GEMM && j == 2) ||
         (op == DSR_OP_LAYER_NORM && j == 2) || (op == DSR_OP_RESHAPE && j == 1);
}

static ds_status validate_conv(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *x = node_input(model, node, 0);
  const dsr_tensor *w = node_input(model, node, 1);
  const dsr_tensor *b = node_input(model, node, 2);
  const dsr_tensor *y = &model->tensors[node->output];
  const dsr_conv_attrs *a = &node->attrs.conv;
  char xs[SHAPE_TEXT_BYTES], ws[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
  dsr_shape_text(x, xs, sizeof xs);
  dsr_shape_text(w, ws, sizeof ws);
  dsr_shape_text(y, ys, sizeof ys);

  if (x->rank != 4 || w->rank != 4)
    return NODE_FAIL(DS_ERR_SHAPE, "input %s and weight %s must both be rank 4 (NCHW, OIHW)",
                     xs, ws);
  if (a->group < 1 || a->stride[0] < 1 || a->stride[1] < 1 || a->dilation[0] < 1 ||
      a->dilation[1] < 1)
    return NODE_FAIL(DS_ERR_SHAPE,
                     "group %d, stride (%d,%d) and dilation (%d,%d) must all be at least 1",
                     a->group, a->stride[0], a->stride[1], a->dilation[0], a->dilation[1]);
  for (int32_t i = 0; i < 4; i++) {
    if (a->pad[i] < 0)
      return NODE_FAIL(DS_ERR_SHAPE, "padding (%d,%d,%d,%d) must not be negative", a->pad[0],
                       a->pad[1], a->pad[2], a->pad[3]);
  }

  int32_t in_channels = x->dims[1], out_channels = w->dims[0];
  if (in_channels % a->group != 0 || out_channels % a->group != 0 ||
      w->dims[1] * a->group != in_channels)
    return NODE_FAIL(DS_ERR_SHAPE,
                     "weight %s with group %d does not fit input %s: the weight needs "
                     "input channels / group = %d on axis 1 and output channels divisible by "
                     "the group",
                     ws, a->group, xs, a->group > 0 ? in_channels / a->group : 0);
  if (b != NULL && (b->rank != 1 || b->dims[0] != out_channels)) {
    char bs[SHAPE_TEXT_BYTES];
    return NODE_FAIL(DS_ERR_SHAPE, "bias %s must be (%d) to match weight %s",
                     dsr_shape_text(b, bs, sizeof bs), out_channels, ws);
  }

  int64_t span_h = (int64_t)(w->dims[2] - 1) * a->dilation[0] + 1;
  int64_t span_w = (int64_t)(w->dims[3] - 1) * a->dilation[1] + 1;
  int64_t padded_h = (int64_t)x->dims[2] + a->pad[0] + a->pad[2];
  int64_t padded_w = (int64_t)x->dims[3] + a->pad[1] + a->pad[3];
  if (padded_h < span_h || padded_w < span_w)
    return NODE_FAIL(DS_ERR_SHAPE, "kernel %s is larger than the padded input %s", ws, xs);

  int32_t expected[4] = {x->dims[0], out_channels, (int32_t)((padded_h - span_h) / a->stride[0] + 1),
                         (int32_t)((padded_w - span_w) / a->stride[1] + 1)};
  if (!dims_equal(y, expected, 4)) {
    char es[SHAPE_TEXT_BYTES];
    dims_text(expected, 4, es);
    return NODE_FAIL(DS_ERR_SHAPE, "output %s does not match %s computed from input %s and weight %s",
                     ys, es, xs, ws);
  }

  /* The scratch contains one group's input columns: taps times output pixels. */
  double column_count = (double)w->dims[1] * w->dims[2] * w->dims[3] * y->dims[2] * y->dims[3];
  if (column_count > (double)DSR_MAX_TENSOR_ELEMENTS)
    return NODE_FAIL(DS_ERR_SHAPE, "weight %s over output %s needs %.0f scratch values, more "
                     "than the %lld the runtime supports",
                     ws, ys, column_count, (long long)DSR_MAX_TENSOR_ELEMENTS);
  return DS_OK;
}

static ds_status validate_matmul(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *a = node_input(model, node, 0);
  const dsr_tensor *b = node_input(model, node, 1);
  const dsr_tensor *y = &model->tensors[node->output];
  char as[SHAPE_TEXT_BYTES], bs[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
  dsr_shape_text(a, as, sizeof as);
  dsr_shape_text(b, bs, sizeof bs);
  dsr_shape_text(y, ys, sizeof ys);

  dsr_matmul_geometry geometry;
  if (!dsr_matmul_geometry_init(a, b, &geometry))
    return NODE_FAIL(DS_ERR_SHAPE,
                     "operands %s and %s cannot be multiplied: the last axis of a must equal "
                     "the second to last of b and the batch axes must broadcast",
                     as, bs);
  if (!dims_equal(y, geometry.out_dims, geometry.out_rank)) {
    char es[SHAPE_TEXT_BYTES];
    dims_text(geometry.out_dims, geometry.out_rank, es);
    return NODE_FAIL(DS_ERR_SHAPE, "output %s does not match %s computed from %s x %s", ys,
                     es, as, bs);
  }
  return DS_OK;
}

/* C of a GEMM whose input has rank above 2: N values along its last axis, every other axis
 * 1 and no more axes than the output, so it adds one value per output column. */
static int column_vector(const dsr_tensor *c, int32_t n, int32_t out_rank) {
  if (c->rank < 1 || c->rank > out_rank || c->dims[c->rank - 1] != n)
    return 0;
  for (int32_t axis = 0; axis < c->rank - 1; axis++) {
    if (c->dims[axis] != 1)
      return 0;
  }
  return 1;
}

static ds_status validate_gemm(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *a = node_input(model, node, 0);
  const dsr_tensor *b = node_input(model, node, 1);
  const dsr_tensor *c = node_input(model, node, 2);
  const dsr_tensor *y = &model->tensors[node->output];
  const dsr_gemm_attrs *g = &node->attrs.gemm;
  char as[SHAPE_TEXT_BYTES], bs[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
  dsr_shape_text(a, as, sizeof as);
  dsr_shape_text(b, bs, sizeof bs);
  dsr_shape_text(y, ys, sizeof ys);

  if (a->rank < 2 || b->rank != 2)
    return NODE_FAIL(DS_ERR_SHAPE, "operands %s and %s must be of rank 2 or more and rank 2",
                     as, bs);
  if (a->rank > 2 && g->trans_a)
    return NODE_FAIL(DS_ERR_SHAPE, "a %s of rank %d cannot be transposed (trans_a 1): only a "
                     "rank-2 a can",
                     as, a->rank);
  /* Rows: a's leading axes, flattened. */
  int64_t m = 1;
  for (int32_t axis = 0; axis < a->rank - 1; axis++)
    m *= a->dims[axis];
  if (g->trans_a)
    m = a->dims[1];
  int32_t k = g->trans_a ? a->dims[0] : a->dims[a->rank - 1];
  int32_t b_k = g->trans_b ? b->dims[1] : b->dims[0];
  int32_t n = g->trans_b ? b->dims[0] : b->dims[1];
  if (k != b_k)
    return NODE_FAIL(DS_ERR_SHAPE, "inner sizes differ: a %s (trans_a %d) has %d, b %s "
                     "(trans_b %d) has %d",
                     as, g->trans_a, k, bs, g->trans_b, b_k);
  if (m > INT32_MAX)
    return NODE_FAIL(DS_ERR_SHAPE, "a %s has %lld rows, more than %d", as, (long long)m,
                     INT32_MAX);
  int32_t expected[DSR_MAX_RANK];
  for (int32_t axis = 0; axis < a->rank - 1; axis++)
    expected[axis] = a->dims[axis];
  if (g->trans_a)
    expected[0] = (int32_t)m;
  expected[a->rank - 1] = n;
  if (!dims_equal(y, expected, a->rank)) {
    char es[SHAPE_TEXT_BYTES];
    dims_text(expected, a->rank, es);
    return NODE_FAIL(DS_ERR_SHAPE, "output %s does not match %s", ys, es);
  }
  if (c != NULL) {
    char cs[SHAPE_TEXT_BYTES];
    dsr_shape_text(c, cs, sizeof cs);
    dsr_broadcast broadcast;
    if (a->rank > 2 && !column_vector(c, n, a->rank))
      return NODE_FAIL(DS_ERR_SHAPE, "C %s must hold %d values along its last axis, every "
                       "other axis 1, to add to the rank-%d output %s",
                       cs, n, a->rank, ys);
    if (a->rank == 2 &&
        (c->rank > 2 || !dsr_broadcast_init(c->dims, c->rank, expected, 2, &broadcast) ||
         !dims_equal(y, broadcast.dims, broadcast.rank)))
      return NODE_FAIL(DS_ERR_SHAPE, "C %s does not broadcast to the output %s", cs, ys);
  }
  if (!isfinite(g->alpha) || !isfinite(g->beta))
    return NODE_FAIL(DS_ERR_SHAPE, "alpha %g and beta %g must be finite", (double)g->alpha,
                     (double)g->beta);
  return DS_OK;
}

static ds_status validate_binary(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *a = node_input(model, node, 0);
  const dsr_tensor *b = node_input(model, node, 1);
  const dsr_tensor *y = &model->tensors[node->output];
  char as[SHAPE_TEXT_BYTES], bs[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
  dsr_shape_text(a, as, sizeof as);
  dsr_shape_text(b, bs, sizeof bs);
  dsr_shape_text(y, ys, sizeof ys);

  dsr_broadcast broadcast;
  if (!dsr_broadcast_init(a->dims, a->rank, b->dims, b->rank, &broadcast))
    return NODE_FAIL(DS_ERR_SHAPE, "operands %s and %s do not broadcast: each axis must match "
                     "or be 1",
                     as, bs);
  if (!dims_equal(y, broadcast.dims, broadcast.rank)) {
    char es[SHAPE_TEXT_BYTES];
    dims_text(broadcast.dims, broadcast.rank, es);
    return NODE_FAIL(DS_ERR_SHAPE, "output %s does not match the broadcast shape %s of %s and %s",
                     ys, es, as, bs);
  }
  return DS_OK;
}

/* Resolves a possibly negative axis against rank; returns -1 when out of range. */
static int32_t resolve_axis(int32_t axis, int32_t rank) {
  if (axis < 0)
    axis += rank;
  return axis >= 0 && axis < rank ? axis : -1;
}

static ds_status validate_layer_norm(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *x = node_input(model, node, 0);
  const dsr_tensor *gamma = node_input(model, node, 1);
  const dsr_tensor *beta = node_input(model, node, 2);
  const dsr_tensor *y = &model->tensors[node->output];
  char xs[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
  dsr_shape_text(x, xs, sizeof xs);
  dsr_shape_text(y, ys, sizeof ys);

  int32_t axis = resolve_axis(node->attrs.norm.axis, x->rank);
  if (axis < 0)
    return NODE_FAIL(DS_ERR_SHAPE, "axis %d is outside the rank %d of input %s",
                     node->attrs.norm.axis, x->rank, xs);
  int64_t norm_count = 1;
  for (int32_t i = axis; i < x->rank; i++)
    norm_count *= x->dims[i];
  if (dsr_tensor_elements(gamma) != norm_count ||
      (beta != NULL && dsr_tensor_elements(beta) != norm_count)) {
    char gs[SHAPE_TEXT_BYTES], bs[SHAPE_TEXT_BYTES] = "absent";
    dsr_shape_text(gamma, gs, sizeof gs);
    if (beta != NULL)
      dsr_shape_text(beta, bs, sizeof bs);
    return NODE_FAIL(DS_ERR_SHAPE, "gamma %s and beta %s must hold %lld values, the size of "
                     "axes %d.. of input %s",
                     gs, bs, (long long)norm_count, axis, xs);
  }
  if (!same_shape(x, y))
    return NODE_FAIL(DS_ERR_SHAPE, "output %s must have the input shape %s", ys, xs);
  if (!(node->attrs.norm.epsilon >= 0.0f) || !isfinite(node->attrs.norm.epsilon))
    return NODE_FAIL(DS_ERR_SHAPE, "epsilon %g must be finite and not negative",
                     (double)node->attrs.norm.epsilon);
  return DS_OK;
}

static ds_status validate_same_shape(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *x = node_input(model, node, 0);
  const dsr_tensor *y = &model->tensors[node->output];
  if (!same_shape(x, y)) {
    char xs[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
    return NODE_FAIL(DS_ERR_SHAPE, "output %s must have the input shape %s",
                     dsr_shape_text(y, ys, sizeof ys), dsr_shape_text(x, xs, sizeof xs));
  }
  if (node->op == DSR_OP_SOFTMAX && resolve_axis(node->attrs.softmax.axis, x->rank) < 0) {
    char xs[SHAPE_TEXT_BYTES];
    return NODE_FAIL(DS_ERR_SHAPE, "axis %d is outside the rank %d of input %s",
                     node->attrs.softmax.axis, x->rank, dsr_shape_text(x, xs, sizeof xs));
  }
  return DS_OK;
}

static ds_status validate_transpose(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *x = node_input(model, node, 0);
  const dsr_tensor *y = &model->tensors[node->output];
  const int32_t *perm = node->attrs.transpose.perm;
  char xs[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
  dsr_shape_text(x, xs, sizeof xs);
  dsr_shape_text(y, ys, sizeof ys);

  int32_t seen[DSR_MAX_RANK] = {0};
  int32_t expected[DSR_MAX_RANK] = {0};
  for (int32_t i = 0; i < x->rank; i++) {
    if (perm[i] < 0 || perm[i] >= x->rank || seen[perm[i]])
      return NODE_FAIL(DS_ERR_SHAPE, "perm[%d] = %d does not make a permutation of the %d axes "
                       "of input %s",
                       i, perm[i], x->rank, xs);
    seen[perm[i]] = 1;
    expected[i] = x->dims[perm[i]];
  }
  if (!dims_equal(y, expected, x->rank)) {
    char es[SHAPE_TEXT_BYTES];
    dims_text(expected, x->rank, es);
    return NODE_FAIL(DS_ERR_SHAPE, "output %s does not match the permuted input %s", ys, es);
  }
  return DS_OK;
}

static ds_status validate_reshape(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *x = node_input(model, node, 0);
  const dsr_tensor *y = &model->tensors[node->output];
  if (dsr_tensor_elements(x) != dsr_tensor_elements(y)) {
    char xs[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
    return NODE_FAIL(DS_ERR_SHAPE, "output %s holds %lld values but input %s holds %lld",
                     dsr_shape_text(y, ys, sizeof ys), (long long)dsr_tensor_elements(y),
                     dsr_shape_text(x, xs, sizeof xs), (long long)dsr_tensor_elements(x));
  }
  return DS_OK;
}

static ds_status validate_gather(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *x = node_input(model, node, 0);
  const dsr_tensor *indices = node_input(model, node, 1);
  const dsr_tensor *y = &model->tensors[node->output];
  char xs[SHAPE_TEXT_BYTES], is[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
  dsr_shape_text(x, xs, sizeof xs);
  dsr_shape_text(indices, is, sizeof is);
  dsr_shape_text(y, ys, sizeof ys);

  int32_t axis = resolve_axis(node->attrs.softmax.axis, x->rank);
  if (axis < 0)
    return NODE_FAIL(DS_ERR_SHAPE, "axis %d is outside the rank %d of input %s",
                     node->attrs.softmax.axis, x->rank, xs);
  if (indices->kind != DSR_TENSOR_CONSTANT)
    return NODE_FAIL(DS_ERR_SHAPE, "indices '%.96s' %s must be a constant", indices->name, is);
  int integer_q = indices->data_q != NULL && (indices->qparams.dtype == DSR_DTYPE_I32 ||
                                              indices->qparams.dtype == DSR_DTYPE_I64);
  if (indices->data_f32 == NULL && !integer_q)
    return NODE_FAIL(DS_ERR_SHAPE, "indices '%.96s' hold no values: set data_f32 or data_q "
                     "with dtype I32 or I64",
                     indices->name);

  int64_t count = dsr_tensor_elements(indices);
  int32_t dim = x->dims[axis];
  for (int64_t j = 0; j < count; j++) {
    if (indices->data_f32 != NULL) {
      float value = indices->data_f32[j];
      if (!(value == floorf(value)) || value < -(float)dim || value >= (float)dim)
        return NODE_FAIL(DS_ERR_SHAPE, "index %lld is %g, outside -%d..%d for axis %d of input %s",
                         (long long)j, (double)value, dim, dim - 1, axis, xs);
    } else {
      int64_t value = dsr_gather_index(indices, j);
      if (value < -dim || value >= dim)
        return NODE_FAIL(DS_ERR_SHAPE, "index %lld is %lld, outside -%d..%d for axis %d of input %s",
                         (long long)j, (long long)value, dim, dim - 1, axis, xs);
    }
  }

  int32_t expected[DSR_MAX_RANK];
  int32_t rank = 0;
  if (x->rank - 1 + indices->rank > DSR_MAX_RANK)
    return NODE_FAIL(DS_ERR_SHAPE, "input %s gathered by indices %s exceeds rank %d", xs, is,
                     DSR_MAX_RANK);
  for (int32_t i = 0; i < axis; i++)
    expected[rank++] = x->dims[i];
  for (int32_t i = 0; i < indices->rank; i++)
    expected[rank++] = indices->dims[i];
  for (int32_t i = axis + 1; i < x->rank; i++)
    expected[rank++] = x->dims[i];
  if (!dims_equal(y, expected, rank)) {
    char es[SHAPE_TEXT_BYTES];
    dims_text(expected, rank, es);
    return NODE_FAIL(DS_ERR_SHAPE, "output %s does not match %s from input %s and indices %s",
                     ys, es, xs, is);
  }
  return DS_OK;
}

static ds_status validate_pool(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *x = node_input(model, node, 0);
  const dsr_tensor *y = &model->tensors[node->output];
  char xs[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
  dsr_shape_text(x, xs, sizeof xs);
  dsr_shape_text(y, ys, sizeof ys);

  int ok = x->rank >= 3 && y->rank >= 2 && y->rank <= x->rank && y->dims[0] == x->dims[0] &&
           y->dims[1] == x->dims[1];
  for (int32_t i = 2; ok && i < y->rank; i++)
    ok = y->dims[i] == 1;
  if (!ok)
    return NODE_FAIL(DS_ERR_SHAPE, "input %s must be (N,C,spatial...) and output %s (N,C,1,...)",
                     xs, ys);
  return DS_OK;
}

int32_t dsr_deform_grid_size(const dsr_deform_attn *layer, int32_t size) {
  int64_t span = (int64_t)size + 2 * (int64_t)layer->offset_pad - layer->offset_kernel;
  if (span < 0 || layer->offset_stride < 1)
    return 0;
  return (int32_t)(span / layer->offset_stride + 1);
}

static ds_status validate_deform(const dsr_model *model, int32_t node_index, dsr_mode mode,
                                 ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_deform_attn *layer = node->deform;
  const dsr_tensor *x = node_input(model, node, 0);
  const dsr_tensor *y = &model->tensors[node->output];
  char xs[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
  dsr_shape_text(x, xs, sizeof xs);
  dsr_shape_text(y, ys, sizeof ys);

  if (layer == NULL)
    return NODE_FAIL(DS_ERR_GRAPH, "the node has no deform parameters (node.deform is %s)",
                     "NULL");

  int32_t c = layer->channels;
  if (c < 1 || layer->height < 1 || layer->width < 1 || layer->groups < 1 || layer->heads < 1 ||
      layer->head_channels < 1)
    return NODE_FAIL(DS_ERR_SHAPE, "channels %d, map %dx%d, groups %d, heads %d and head "
                     "channels %d must all be at least 1",
                     c, layer->height, layer->width, layer->groups, layer->heads,
                     layer->head_channels);
  if (c % layer->groups != 0 || layer->heads % layer->groups != 0 ||
      (int64_t)layer->heads * layer->head_channels != c)
    return NODE_FAIL(DS_ERR_SHAPE, "channels %d must equal heads %d x head channels %d, and "
                     "groups %d must divide both channels and heads",
                     c, layer->heads, layer->head_channels, layer->groups);
  if (layer->offset_kernel < 1 || layer->offset_stride < 1 || layer->offset_pad < 0)
    return NODE_FAIL(DS_ERR_SHAPE, "offset kernel %d and stride %d must be at least 1 and "
                     "padding %d not negative",
                     layer->offset_kernel, layer->offset_stride, layer->offset_pad);
  if (layer->convention != DSR_DEFORM_DAT && layer->convention != DSR_DEFORM_DAT_PP &&
      layer->convention != DSR_DEFORM_DAT_CENTRED)
    return NODE_FAIL(DS_ERR_SHAPE, "offset convention %d is unknown: use 0 (DAT), 1 (DAT++) or "
                     "2 (DAT with centred queries)",
                     layer->convention);
  if (!isfinite(layer->attn_scale) || !isfinite(layer->offset_range_factor) ||
      !(layer->ln_epsilon >= 0.0f) || !isfinite(layer->ln_epsilon))
    return NODE_FAIL(DS_ERR_SHAPE, "attention scale %g, offset range factor %g and LayerNorm "
                     "epsilon %g must be finite (epsilon not negative)",
                     (double)layer->attn_scale, (double)layer->offset_range_factor,
                     (double)layer->ln_epsilon);
  if (dsr_deform_grid_size(layer, layer->height) < 1 ||
      dsr_deform_grid_size(layer, layer->width) < 1)
    return NODE_FAIL(DS_ERR_SHAPE, "offset kernel %d with padding %d leaves no offset grid on "
                     "the %dx%d map",
                     layer->offset_kernel, layer->offset_pad, layer->height, layer->width);

  /* The scratch contains every head's logits over the map: heads x H x W x Hk x Wk values. */
  double logit_count = (double)layer->heads * layer->height * layer->width *
                       dsr_deform_grid_size(layer, layer->height) *
                       dsr_deform_grid_size(layer, layer->width);
  if (logit_count > (double)DSR_MAX_TENSOR_ELEMENTS)
    return NODE_FAIL(DS_ERR_SHAPE, "the attention logits of the %dx%d map need %.0f values, "
                     "more than the %lld the runtime supports",
                     layer->height, layer->width, logit_count, (long long)DSR_MAX_TENSOR_ELEMENTS);

  int32_t expected[4] = {1, c, layer->height, layer->width};
  if (!dims_equal(x, expected, 4) || !dims_equal(y, expected, 4)) {
    char es[SHAPE_TEXT_BYTES];
    dims_text(expected, 4, es);
    return NODE_FAIL(DS_ERR_SHAPE, "input %s and output %s must both be %s, the layer's map",
                     xs, ys, es);
  }

  int64_t cg = c / layer->groups;
  int64_t k = layer->offset_kernel;
  int64_t param_elements[DSR_DEFORM_PARAM_COUNT] = {
      (int64_t)c * c, c, cg * k * k, cg, cg, cg, 2 * cg, (int64_t)c * c, c,
      (int64_t)c * c, c, (int64_t)c * c, c,
      (int64_t)layer->heads * (2 * layer->height - 1) * (2 * layer->width - 1)};
  /* Both modes also read a table built for another map size (a model exported with dynamic
   * axes and run at a new size), rescaling the displacement as grid_sample does. */
  int32_t table = layer->params[DSR_DEFORM_RPE_TABLE];
  if (table >= 0 && table < model->tensor_count &&
      model->tensors[table].rank == 3 && model->tensors[table].dims[0] == layer->heads &&
      layer->height > 1 && layer->width > 1)
    param_elements[DSR_DEFORM_RPE_TABLE] = dsr_tensor_elements(&model->tensors[table]);
  for (int32_t p = 0; p < DSR_DEFORM_PARAM_COUNT; p++) {
    int32_t index = layer->params[p];
    if (index < 0 || index >= model->tensor_count)
      return NODE_FAIL(DS_ERR_GRAPH, "parameter %d refers to tensor %d, outside 0..%d", p, index,
                       model->tensor_count - 1);
    const dsr_tensor *t = &model->tensors[index];
    if (t->kind != DSR_TENSOR_CONSTANT)
      return NODE_FAIL(DS_ERR_GRAPH, "parameter %d (tensor '%.96s') must be a constant", p,
                       t->name);
    if (mode == DSR_MODE_FLOAT && t->data_f32 == NULL)
      return NODE_FAIL(DS_ERR_GRAPH, "parameter %d (tensor '%.96s') has no float data", p,
                       t->name);
    if (dsr_tensor_elements(t) != param_elements[p]) {
      char ts[SHAPE_TEXT_BYTES];
      return NODE_FAIL(DS_ERR_SHAPE, "parameter %d (tensor '%.96s') has shape %s, expected %lld "
                       "values",
                       p, t->name, dsr_shape_text(t, ts, sizeof ts), (long long)param_elements[p]);
    }
  }

  ds_status status = dsr_slice_validate(layer, layer->slice, err);
  if (status != DS_OK)
    return NODE_CONTEXT(status);
  return DS_OK;
}

ds_status dsr_slice_validate(const dsr_deform_attn *layer, dsr_slice slice, ds_error *err) {
  if (layer == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "slice check got no layer (NULL)");

  int32_t h = layer->height, w = layer->width;
  int32_t side = h > w ? h : w;
  if (slice.rows < 1 || slice.rows > h)
    return ds_fail(err, DS_ERR_SLICE_CONFIG,
                   "rows %d is outside 1..%d for the %dx%d map of the deformable layer "
                   "(%d channels): use at most one row per pixel",
                   slice.rows, h, h, w, layer->channels);
  if (slice.cols < 1 || slice.cols > w)
    return ds_fail(err, DS_ERR_SLICE_CONFIG,
                   "cols %d is outside 1..%d for the %dx%d map of the deformable layer "
                   "(%d channels): use at most one column per pixel",
                   slice.cols, w, h, w, layer->channels);
  if (slice.overlap < 0 || slice.overlap > side)
    return ds_fail(err, DS_ERR_SLICE_CONFIG,
                   "overlap %d is outside 0..%d for the %dx%d map of the deformable layer "
                   "(%d channels)",
                   slice.overlap, side, h, w, layer->channels);
  if (slice.semantics != DSR_SLICE_PHYSICAL && slice.semantics != DSR_SLICE_CROP)
    return ds_fail(err, DS_ERR_SLICE_CONFIG,
                   "slice semantics %d is unknown: use 0 (physical) or 1 (crop)",
                   slice.semantics);

  /* Every extended patch must leave the offset network at least one grid point. */
  for (int32_t row = 0; row < slice.rows; row++) {
    dsr_patch patch;
    dsr_slice_patch(h, w, slice, row, 0, &patch);
    int32_t patch_h = patch.ext_y1 - patch.ext_y0;
    if (dsr_deform_grid_size(layer, patch_h) < 1)
      return ds_fail(err, DS_ERR_SLICE_CONFIG,
                     "patch row %d is %d pixels high, too small for the %dx%d offset kernel with "
                     "padding %d on the %dx%d map: use fewer rows or more overlap",
                     row, patch_h, layer->offset_kernel, layer->offset_kernel, layer->offset_pad,
                     h, w);
  }
  for (int32_t col = 0; col < slice.cols; col++) {
    dsr_patch patch;
    dsr_slice_patch(h, w, slice, 0, col, &patch);
    int32_t patch_w = patch.ext_x1 - patch.ext_x0;
    if (dsr_deform_grid_size(layer, patch_w) < 1)
      return ds_fail(err, DS_ERR_SLICE_CONFIG,
                     "patch column %d is %d pixels wide, too small for the %dx%d offset kernel "
                     "with padding %d on the %dx%d map: use fewer columns or more overlap",
                     col, patch_w, layer->offset_kernel, layer->offset_kernel, layer->offset_pad,
                     h, w);
  }
  return DS_OK;
}

/* Checks that every dim is at least 1 and the element count stays bounded. */
static int tensor_size_ok(const dsr_tensor *t) {
  if (t->rank < 0 || t->rank > DSR_MAX_RANK)
    return 0;
  int64_t count = 1;
  for (int32_t axis = 0; axis < t->rank; axis++) {
    if (t->dims[axis] < 1)
      return 0;
    count *= t->dims[axis];
    if (count > DSR_MAX_TENSOR_ELEMENTS)
      return 0;
  }
  return 1;
}

ds_status dsr_validate_node(const dsr_model *model, int32_t node_index, dsr_mode mode,
                            ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  if (node->op < 1 || node->op >= DSR_OP_COUNT)
    return NODE_FAIL(DS_ERR_UNSUPPORTED_OP, "op %d is unknown: expected 1..%d", node->op,
                     DSR_OP_COUNT - 1);
  if (node->input_count < op_min_inputs[node->op] || node->input_count > op_max_inputs[node->op])
    return NODE_FAIL(DS_ERR_GRAPH, "input count %d is outside %d..%d", node->input_count,
                     op_min_inputs[node->op], op_max_inputs[node->op]);
  if (node->output < 0 || node->output >= model->tensor_count)
    return NODE_FAIL(DS_ERR_GRAPH, "output tensor %d is outside 0..%d", node->output,
                     model->tensor_count - 1);

  const dsr_tensor *y = &model->tensors[node->output];
  if (y->kind == DSR_TENSOR_CONSTANT || node->output == model->input)
    return NODE_FAIL(DS_ERR_GRAPH, "output tensor %d '%.96s' is a constant or the model input",
                     node->output, y->name);
  if (!tensor_size_ok(y)) {
    char ys[SHAPE_TEXT_BYTES];
    return NODE_FAIL(DS_ERR_SHAPE, "output '%.96s' has shape %s: every dim must be at least 1 "
                     "and the rank at most %d",
                     y->name, dsr_shape_text(y, ys, sizeof ys), DSR_MAX_RANK);
  }

  for (int32_t j = 0; j < node->input_count; j++) {
    int32_t index = node->inputs[j];
    if (index == -1 && input_is_optional(node->op, j))
      continue;
    if (index < 0 || index >= model->tensor_count)
      return NODE_FAIL(DS_ERR_GRAPH, "input %d refers to tensor %d, outside 0..%d", j, index,
                       model->tensor_count - 1);
    const dsr_tensor *t = &model->tensors[index];
    if (!tensor_size_ok(t)) {
      char ts[SHAPE_TEXT_BYTES];
      return NODE_FAIL(DS_ERR_SHAPE, "input %d '%.96s' has shape %s: every dim must be at least "
                       "1 and the rank at most %d",
                       j, t->name, dsr_shape_text(t, ts, sizeof ts), DSR_MAX_RANK);
    }
    int is_gather_indices = node->op == DSR_OP_GATHER && j == 1;
    if (mode == DSR_MODE_FLOAT && t->kind == DSR_TENSOR_CONSTANT && t->data_f32 == NULL &&
        !is_gather_indices)
      return NODE_FAIL(DS_ERR_GRAPH, "constant input %d '%.96s' has no float data", j, t->name);
  }
  if (node->op == DSR_OP_RESHAPE && node->input_count > 1 && node->inputs[1] >= 0 &&
      model->tensors[node->inputs[1]].kind != DSR_TENSOR_CONSTANT)
    return NODE_FAIL(DS_ERR_SHAPE, "the shape input '%.96s' must be a constant",
                     model->tensors[node->inputs[1]].name);

  switch ((dsr_op)node->op) {
  case DSR_OP_CONV2D:
    return validate_conv(model, node_index, err);
  case DSR_OP_MATMUL:
    return validate_matmul(model, node_index, err);
  case DSR_OP_GEMM:
    return validate_gemm(model, node_index, err);
  case DSR_OP_ADD:
  case DSR_OP_SUB:
  case DSR_OP_MUL:
  case DSR_OP_DIV:
    return validate_binary(model, node_index, err);
  case DSR_OP_LAYER_NORM:
    return validate_layer_norm(model, node_index, err);
  case DSR_OP_GELU:
  case DSR_OP_SOFTMAX:
    return validate_same_shape(model, node_index, err);
  case DSR_OP_TRANSPOSE:
    return validate_transpose(model, node_index, err);
  case DSR_OP_RESHAPE:
    return validate_reshape(model, node_index, err);
  case DSR_OP_GATHER:
    return validate_gather(model, node_index, err);
  case DSR_OP_GLOBAL_AVG_POOL:
    return validate_pool(model, node_index, err);
  case DSR_OP_DEFORM_ATTN:
    return validate_deform(model, node_index, mode, err);
  case DSR_OP_CONCAT:
  case DSR_OP_PAD:
    return node->op == DSR_OP_CONCAT ? dsr_validate_concat(model, node_index, err)
                                     : dsr_validate_pad(model, node_index, err);
  case DSR_OP_COUNT:
    break;
  }
  return NODE_FAIL(DS_ERR_UNSUPPORTED_OP, "op %d has no kernel", node->op);
}

/* Returns the first node producing tensor, or -1. */
static int32_t find_producer(const dsr_model *model, int32_t tensor, int32_t before) {
  for (int32_t i = 0; i < before; i++) {
    if (model->nodes[i].output == tensor)
      return i;
  }
  return -1;
}

static ds_status validate_fixed_tensor(const dsr_model *model, int32_t index, ds_error *err) {
  const dsr_tensor *t = &model->tensors[index];
  uint8_t dtype = t->qparams.dtype;
  if (!t->has_qparams || (dtype != DSR_DTYPE_I8 && dtype != DSR_DTYPE_I16 &&
                          dtype != DSR_DTYPE_I32))
    return ds_fail(err, DS_ERR_QUANT,
                   "tensor %d '%.96s' has no fixed-point type (has_qparams %d, dtype %d): "
                   "quantize the model before running it in fixed mode",
                   index, t->name, t->has_qparams, dtype);
  if (!(t->qparams.scale > 0.0f) || !isfinite(t->qparams.scale))
    return ds_fail(err, DS_ERR_QUANT, "tensor %d '%.96s' has scale %g: it must be positive and "
                   "finite",
                   index, t->name, (double)t->qparams.scale);
  return DS_OK;
}

ds_status dsr_validate_model(const dsr_model *model, dsr_mode mode, ds_error *err) {
  if (model == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "model is NULL");
  if (mode != DSR_MODE_FLOAT && mode != DSR_MODE_FIXED)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "mode %d is unknown: use DSR_MODE_FLOAT or "
                   "DSR_MODE_FIXED",
                   (int)mode);
  if (model->tensor_count < 1 || model->tensors == NULL || model->node_count < 1 ||
      model->nodes == NULL)
    return ds_fail(err, DS_ERR_GRAPH, "model '%.96s' has %d tensors and %d nodes: it needs at "
                   "least one of each",
                   model->name, model->tensor_count, model->node_count);
  if (mode == DSR_MODE_FIXED && !model->quantized)
    return ds_fail(err, DS_ERR_QUANT, "model '%.96s' is not quantized: run the quantizer before "
                   "using DSR_MODE_FIXED",
                   model->name);

  for (int32_t i = 0; i < model->tensor_count; i++) {
    const dsr_tensor *t = &model->tensors[i];
    if (t->rank < 0 || t->rank > DSR_MAX_RANK)
      return ds_fail(err, DS_ERR_SHAPE, "tensor %d '%.96s' has rank %d, outside 0..%d", i,
                     t->name, t->rank, DSR_MAX_RANK);
  }

  int32_t input = model->input, output = model->output;
  if (input < 0 || input >= model->tensor_count || output < 0 ||
      output >= model->tensor_count || input == output)
    return ds_fail(err, DS_ERR_GRAPH, "model input %d and output %d must be distinct tensors "
                   "in 0..%d",
                   input, output, model->tensor_count - 1);
  if (model->tensors[input].kind == DSR_TENSOR_CONSTANT ||
      model->tensors[output].kind == DSR_TENSOR_CONSTANT)
    return ds_fail(err, DS_ERR_GRAPH, "model input '%.96s' and output '%.96s' must not be "
                   "constants",
                   model->tensors[input].name, model->tensors[output].name);
  if (!tensor_size_ok(&model->tensors[input])) {
    char is[SHAPE_TEXT_BYTES];
    return ds_fail(err, DS_ERR_SHAPE, "model input '%.96s' has shape %s: every dim must be at "
                   "least 1",
                   model->tensors[input].name,
                   dsr_shape_text(&model->tensors[input], is, sizeof is));
  }

  int32_t deform_count = 0;
  for (int32_t node_index = 0; node_index < model->node_count; node_index++) {
    const dsr_node *node = &model->nodes[node_index];
    DS_TRY(dsr_validate_node(model, node_index, mode, err));

    if (find_producer(model, node->output, node_index) >= 0)
      return NODE_FAIL(DS_ERR_GRAPH, "output tensor '%.96s' is already produced by node %d",
                       model->tensors[node->output].name,
                       find_producer(model, node->output, node_index));
    for (int32_t j = 0; j < node->input_count; j++) {
      int32_t index = node->inputs[j];
      if (index < 0 || index == input || model->tensors[index].kind == DSR_TENSOR_CONSTANT)
        continue;
      if (find_producer(model, index, node_index) < 0)
        return NODE_FAIL(DS_ERR_GRAPH, "input %d '%.96s' is not produced by an earlier node: "
                         "order the nodes so that every input is computed first",
                         j, model->tensors[index].name);
    }

    if (node->op == DSR_OP_DEFORM_ATTN && ++deform_count > DSR_MAX_DEFORM_LAYERS)
      return NODE_FAIL(DS_ERR_GRAPH, "the model has more than %d deformable layers",
                       DSR_MAX_DEFORM_LAYERS);

    if (mode == DSR_MODE_FIXED) {
      ds_status status = validate_fixed_tensor(model, node->output, err);
      if (status == DS_OK)
        status = dsr_fixed_check_node(model, node_index, err);
      if (status != DS_OK)
        return NODE_CONTEXT(status);
    }
  }
  if (find_producer(model, output, model->node_count) < 0)
    return ds_fail(err, DS_ERR_GRAPH, "model output '%.96s' is not produced by any node",
                   model->tensors[output].name);
  if (mode == DSR_MODE_FIXED)
    DS_TRY(validate_fixed_tensor(model, input, err));
  return DS_OK;
}
