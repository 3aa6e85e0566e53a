/*
 * Elementwise and reduction ops: shape inference and folding for Add, Sub, Mul, Div, Pow, Mod,
 * Equal, Less, Greater, Where, the float unary ops, Clip, ReduceMean, ReduceSum and Softmax,
 * with numpy broadcasting. Integer arithmetic is int64; integer Div truncates toward zero.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "dsc_ir.h"

typedef enum binary_kind {
  BINARY_ADD, BINARY_SUB, BINARY_MUL, BINARY_DIV, BINARY_POW,
  BINARY_MOD, BINARY_FMOD,
  BINARY_EQUAL, BINARY_LESS, BINARY_GREATER, BINARY_AND, BINARY_OR,
} binary_kind;

static int is_comparison(binary_kind kind) {
  return kind >= BINARY_EQUAL;
}

static double apply_float(binary_kind kind, double a, double b) {
  switch (kind) {
  case BINARY_ADD: return a + b;
  case BINARY_SUB: return a - b;
  case BINARY_MUL: return a * b;
  case BINARY_DIV: return a / b;
  case BINARY_POW: return pow(a, b);
  case BINARY_FMOD: return fmod(a, b);
  case BINARY_MOD: {
    double r = fmod(a, b); /* Python's %: the result takes the sign of the divisor */
    return r != 0.0 && (r < 0.0) != (b < 0.0) ? r + b : r;
  }
  case BINARY_EQUAL: return a == b;
  case BINARY_LESS: return a < b;
  case BINARY_GREATER: return a > b;
  case BINARY_AND: return a != 0.0 && b != 0.0;
  default: return a != 0.0 || b != 0.0;
  }
}

/* Integer arithmetic wraps like two's complement instead of overflowing. */
static int apply_int(binary_kind kind, int64_t a, int64_t b, int64_t *out) {
  uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
  switch (kind) {
  case BINARY_ADD: *out = (int64_t)(ua + ub); return 1;
  case BINARY_SUB: *out = (int64_t)(ua - ub); return 1;
  case BINARY_MUL: *out = (int64_t)(ua * ub); return 1;
  case BINARY_DIV:
    if (b == 0 || (a == INT64_MIN && b == -1))
      return 0;
    *out = a / b;
    return 1;
  case BINARY_MOD:
  case BINARY_FMOD: {
    if (b == 0 || (a == INT64_MIN && b == -1))
      return 0;
    int64_t r = a % b; /* C truncates, as fmod does */
    *out = kind == BINARY_MOD && r != 0 && ((r < 0) != (b < 0)) ? r + b : r;
    return 1;
  }
  case BINARY_POW: {
    double p = pow((double)a, (double)b);
    *out = (p > -9.2e18 && p < 9.2e18) ? (int64_t)p : 0;
    return 1;
  }
  default: *out = (int64_t)apply_float(kind, (double)a, (double)b); return 1;
  }
}

static ds_status fold_binary(dsc_graph *g, dsc_node *n, binary_kind kind, int32_t rank,
                             const int64_t *dims, ds_error *err) {
  const dsc_value *a = &g->values[n->inputs[0]];
  const dsc_value *b = &g->values[n->inputs[1]];
  int float_math = a->dtype == DSC_DTYPE_F32 || b->dtype == DSC_DTYPE_F32;
  int32_t dtype = is_comparison(kind) ? DSC_DTYPE_BOOL : a->dtype;
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  a = &g->values[n->inputs[0]];
  b = &g->values[n->inputs[1]];
  int64_t count = dsc_value_elements(&g->values[n->outputs[0]]);
  for (int64_t i = 0; i < count; i++) {
    int64_t ia = dsc_broadcast_offset(a, rank, dims, i);
    int64_t ib = dsc_broadcast_offset(b, rank, dims, i);
    if (float_math) {
      double r = apply_float(kind, dsc_get_f(a, ia), dsc_get_f(b, ib));
      if (dtype == DSC_DTYPE_F32)
        ((float *)out)[i] = (float)r;
      else
        ((int64_t *)out)[i] = (int64_t)r;
    } else if (!apply_int(kind, dsc_get_i(a, ia), dsc_get_i(b, ib), &((int64_t *)out)[i])) {
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "integer division by zero or overflow "
                           "at element %" PRId64, i);
    }
  }
  return DS_OK;
}

static ds_status binary(dsc_graph *g, dsc_node *n, binary_kind kind, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 2, err));
  const dsc_value *a = &g->values[n->inputs[0]];
  const dsc_value *b = &g->values[n->inputs[1]];
  if (!is_comparison(kind) && kind != BINARY_POW && a->dtype != b->dtype)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "inputs have different element types");
  int64_t dims[DSR_MAX_RANK];
  int32_t rank = 0;
  DS_TRY(dsc_broadcast_shape(g, n, a, b, &rank, dims, err));
  if (dsc_inputs_constant(g, n))
    return fold_binary(g, n, kind, rank, dims, err);
  return dsc_set_output_shape(g, n, 0, is_comparison(kind) ? DSC_DTYPE_BOOL : a->dtype, rank,
                              dims, err);
}

static ds_status op_add(dsc_graph *g, dsc_node *n, ds_error *e) { return binary(g, n, BINARY_ADD, e); }
static ds_status op_sub(dsc_graph *g, dsc_node *n, ds_error *e) { return binary(g, n, BINARY_SUB, e); }
static ds_status op_mul(dsc_graph *g, dsc_node *n, ds_error *e) { return binary(g, n, BINARY_MUL, e); }
static ds_status op_div(dsc_graph *g, dsc_node *n, ds_error *e) { return binary(g, n, BINARY_DIV, e); }
static ds_status op_pow(dsc_graph *g, dsc_node *n, ds_error *e) { return binary(g, n, BINARY_POW, e); }

static ds_status op_mod(dsc_graph *g, dsc_node *n, ds_error *err) {
  int64_t fmod_attr = 0;
  DS_TRY(dsc_attr_int(g, n, "fmod", 0, &fmod_attr, err));
  return binary(g, n, fmod_attr != 0 ? BINARY_FMOD : BINARY_MOD, err);
}
static ds_status op_equal(dsc_graph *g, dsc_node *n, ds_error *e) { return binary(g, n, BINARY_EQUAL, e); }
static ds_status op_less(dsc_graph *g, dsc_node *n, ds_error *e) { return binary(g, n, BINARY_LESS, e); }
static ds_status op_greater(dsc_graph *g, dsc_node *n, ds_error *e) { return binary(g, n, BINARY_GREATER, e); }
static ds_status op_and(dsc_graph *g, dsc_node *n, ds_error *e) { return binary(g, n, BINARY_AND, e); }
static ds_status op_or(dsc_graph *g, dsc_node *n, ds_error *e) { return binary(g, n, BINARY_OR, e); }

static ds_status op_where(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 3, 3, err));
  const dsc_value *c = &g->values[n->inputs[0]];
  const dsc_value *x = &g->values[n->inputs[1]];
  const dsc_value *y = &g->values[n->inputs[2]];
  dsc_value xy;
  memset(&xy, 0, sizeof xy);
  DS_TRY(dsc_broadcast_shape(g, n, x, y, &xy.rank, xy.dims, err));
  int64_t dims[DSR_MAX_RANK];
  int32_t rank = 0, dtype = x->dtype;
  DS_TRY(dsc_broadcast_shape(g, n, c, &xy, &rank, dims, err));
  if (x->dtype != y->dtype)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "X and Y have different element types");
  if (!dsc_inputs_constant(g, n))
    return dsc_set_output_shape(g, n, 0, dtype, rank, dims, err);

  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  c = &g->values[n->inputs[0]];
  x = &g->values[n->inputs[1]];
  y = &g->values[n->inputs[2]];
  int64_t count = dsc_value_elements(&g->values[n->outputs[0]]);
  for (int64_t i = 0; i < count; i++) {
    int take_x = dsc_get_i(c, dsc_broadcast_offset(c, rank, dims, i)) != 0;
    const dsc_value *src = take_x ? x : y;
    int64_t offset = dsc_broadcast_offset(src, rank, dims, i);
    if (dtype == DSC_DTYPE_F32)
      ((float *)out)[i] = ((const float *)src->data)[offset];
    else
      ((int64_t *)out)[i] = ((const int64_t *)src->data)[offset];
  }
  return DS_OK;
}

typedef double (*unary_fn)(double);

static double relu(double x) { return x > 0.0 ? x : 0.0; }
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double negate(double x) { return -x; }
static double logical_not(double x) { return x == 0.0; }

static ds_status unary(dsc_graph *g, dsc_node *n, unary_fn fn, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t dims[DSR_MAX_RANK];
  memcpy(dims, in->dims, sizeof dims);
  int32_t dtype = in->dtype, rank = in->rank;
  if (in->data == NULL)
    return dsc_set_output_shape(g, n, 0, dtype, rank, dims, err);
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  in = &g->values[n->inputs[0]];
  for (int64_t i = 0; i < dsc_value_elements(in); i++) {
    if (dtype == DSC_DTYPE_F32)
      ((float *)out)[i] = (float)fn(dsc_get_f(in, i));
    else
      ((int64_t *)out)[i] = (int64_t)fn((double)dsc_get_i(in, i));
  }
  return DS_OK;
}

static ds_status op_sqrt(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, sqrt, e); }
static ds_status op_erf(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, erf, e); }
static ds_status op_tanh(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, tanh, e); }
static ds_status op_exp(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, exp, e); }
static ds_status op_log(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, log, e); }
static ds_status op_abs(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, fabs, e); }
static ds_status op_floor(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, floor, e); }
static ds_status op_ceil(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, ceil, e); }
static ds_status op_neg(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, negate, e); }
static ds_status op_relu(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, relu, e); }
static ds_status op_sigmoid(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, sigmoid, e); }
static ds_status op_not(dsc_graph *g, dsc_node *n, ds_error *e) { return unary(g, n, logical_not, e); }

static ds_status op_clip(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 3, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t dims[DSR_MAX_RANK];
  memcpy(dims, in->dims, sizeof dims);
  int32_t dtype = in->dtype, rank = in->rank;
  if (!dsc_inputs_constant(g, n))
    return dsc_set_output_shape(g, n, 0, dtype, rank, dims, err);
  double lo = -INFINITY, hi = INFINITY;
  if (n->input_count > 1 && n->inputs[1] >= 0)
    lo = dsc_get_f(&g->values[n->inputs[1]], 0);
  if (n->input_count > 2 && n->inputs[2] >= 0)
    hi = dsc_get_f(&g->values[n->inputs[2]], 0);
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  in = &g->values[n->inputs[0]];
  for (int64_t i = 0; i < dsc_value_elements(in); i++) {
    double v = dsc_get_f(in, i);
    v = v < lo ? lo : (v > hi ? hi : v);
    if (dtype == DSC_DTYPE_F32)
      ((float *)out)[i] = (float)v;
    else
      ((int64_t *)out)[i] = (int64_t)v;
  }
  return DS_OK;
}

/* Reduced axes from the axes attribute (opset < 18) or input 1 (opset 18). */
static ds_status reduce_axes(const dsc_graph *g, const dsc_node *n, int32_t rank,
                             uint8_t *reduced, ds_error *err) {
  int64_t axes[DSR_MAX_RANK];
  int32_t count = -1;
  if (n->input_count > 1 && n->inputs[1] >= 0)
    DS_TRY(dsc_input_ints(g, n, 1, axes, DSR_MAX_RANK, &count, err));
  else
    DS_TRY(dsc_attr_ints(g, n, "axes", axes, DSR_MAX_RANK, &count, err));
  int64_t noop = 0;
  DS_TRY(dsc_attr_int(g, n, "noop_with_empty_axes", 0, &noop, err));
  memset(reduced, count <= 0 && !noop ? 1 : 0, DSR_MAX_RANK);
  for (int32_t i = 0; i < count; i++) {
    int32_t axis = 0;
    DS_TRY(dsc_normalize_axis(g, n, axes[i], rank, &axis, err));
    reduced[axis] = 1;
  }
  return DS_OK;
}

static ds_status reduce(dsc_graph *g, dsc_node *n, int mean, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 2, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  uint8_t reduced[DSR_MAX_RANK];
  DS_TRY(reduce_axes(g, n, in->rank, reduced, err));
  int64_t keep = 1;
  DS_TRY(dsc_attr_int(g, n, "keepdims", 1, &keep, err));
  int64_t dims[DSR_MAX_RANK], full[DSR_MAX_RANK];
  int32_t rank = 0, dtype = in->dtype, in_rank = in->rank;
  for (int32_t i = 0; i < in->rank; i++) {
    full[i] = reduced[i] ? 1 : in->dims[i];
    if (!reduced[i] || keep)
      dims[rank++] = full[i];
  }
  if (in->data == NULL)
    return dsc_set_output_shape(g, n, 0, dtype, rank, dims, err);

  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  in = &g->values[n->inputs[0]];
  int64_t in_count = dsc_value_elements(in), out_count = 1;
  for (int32_t i = 0; i < in_rank; i++)
    out_count *= full[i];
  int64_t members = out_count > 0 ? in_count / out_count : 0;
  for (int64_t i = 0; i < in_count; i++) {
    int64_t rest = i, target = 0, stride = 1;
    for (int32_t a = in_rank - 1; a >= 0; a--) {
      int64_t coord = rest % in->dims[a];
      rest /= in->dims[a];
      target += (reduced[a] ? 0 : coord) * stride;
      stride *= full[a];
    }
    if (dtype == DSC_DTYPE_F32)
      ((float *)out)[target] += (float)dsc_get_f(in, i);
    else
      ((int64_t *)out)[target] += dsc_get_i(in, i);
  }
  for (int64_t o = 0; mean && members > 0 && o < out_count; o++) {
    if (dtype == DSC_DTYPE_F32)
      ((float *)out)[o] /= (float)members;
    else
      ((int64_t *)out)[o] /= members;
  }
  return DS_OK;
}

static ds_status op_reduce_mean(dsc_graph *g, dsc_node *n, ds_error *e) { return reduce(g, n, 1, e); }
static ds_status op_reduce_sum(dsc_graph *g, dsc_node *n, ds_error *e) { return reduce(g, n, 0, e); }

static ds_status op_softmax(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t axis_attr = -1;
  DS_TRY(dsc_attr_int(g, n, "axis", -1, &axis_attr, err));
  int32_t axis = 0;
  DS_TRY(dsc_normalize_axis(g, n, axis_attr, in->rank, &axis, err));
  n->attrs.softmax.axis = axis;
  int64_t dims[DSR_MAX_RANK];
  memcpy(dims, in->dims, sizeof dims);
  int32_t rank = in->rank;
  if (in->data == NULL || in->dtype != DSC_DTYPE_F32)
    return dsc_set_output_shape(g, n, 0, in->dtype, rank, dims, err);

  float *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, DSC_DTYPE_F32, rank, dims, (void **)&out, err));
  const float *x = g->values[n->inputs[0]].data;
  int64_t outer = 1, inner = 1, size = dims[axis];
  for (int32_t i = 0; i < axis; i++)
    outer *= dims[i];
  for (int32_t i = axis + 1; i < rank; i++)
    inner *= dims[i];
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t k = 0; k < inner; k++) {
      const float *row = x + o * size * inner + k;
      float *dst = out + o * size * inner + k;
      double top = -INFINITY, sum = 0.0;
      for (int64_t j = 0; j < size; j++)
        top = row[j * inner] > top ? row[j * inner] : top;
      for (int64_t j = 0; j < size; j++)
        sum += exp(row[j * inner] - top);
      for (int64_t j = 0; j < size; j++)
        dst[j * inner] = (float)(exp(row[j * inner] - top) / sum);
    }
  }
  return DS_OK;
}

typedef struct named_handler {
  const char *op_type;
  dsc_op_handler handler;
} named_handler;

static const named_handler math_handlers[] = {
    {"Add", op_add},         {"Sub", op_sub},           {"Mul", op_mul},
    {"Div", op_div},         {"Pow", op_pow},           {"Equal", op_equal},
    {"Mod", op_mod},
    {"Less", op_less},       {"Greater", op_greater},   {"And", op_and},
    {"Or", op_or},           {"Where", op_where},       {"Sqrt", op_sqrt},
    {"Erf", op_erf},         {"Tanh", op_tanh},         {"Exp", op_exp},
    {"Log", op_log},         {"Abs", op_abs},           {"Floor", op_floor},
    {"Ceil", op_ceil},       {"Neg", op_neg},           {"Relu", op_relu},
    {"Sigmoid", op_sigmoid}, {"Not", op_not},           {"Clip", op_clip},
    {"ReduceMean", op_reduce_mean}, {"ReduceSum", op_reduce_sum}, {"Softmax", op_softmax},
};

dsc_op_handler dsc_find_math_handler(const char *op_type) {
  for (size_t i = 0; i < sizeof math_handlers / sizeof math_handlers[0]; i++) {
    if (strcmp(math_handlers[i].op_type, op_type) == 0)
      return math_handlers[i].handler;
  }
  return NULL;
}
