/*
 * Shape inference and folding for Pad (opsets 13 to 21, constant mode) and Gelu (opset 20).
 * The pads record themselves in attrs.pad for the lowering step.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "dsc_ir.h"

/* Pads of every axis from input 1, with input 3 naming the axes (opset 18). */
static ds_status read_pads(const dsc_graph *g, const dsc_node *n, int32_t rank, int64_t *begin,
                           int64_t *end, ds_error *err) {
  int64_t pads[2 * DSR_MAX_RANK], axes[DSR_MAX_RANK];
  int32_t pad_count = 0, axis_count = -1;
  DS_TRY(dsc_input_ints(g, n, 1, pads, 2 * DSR_MAX_RANK, &pad_count, err));
  if (n->input_count > 3 && n->inputs[3] >= 0)
    DS_TRY(dsc_input_ints(g, n, 3, axes, DSR_MAX_RANK, &axis_count, err));
  if (axis_count < 0) {
    axis_count = rank;
    for (int32_t i = 0; i < rank; i++)
      axes[i] = i;
  }
  if (pad_count != 2 * axis_count)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "pads has %d values for %d axes; it needs "
                         "a begin and an end value per axis", pad_count, axis_count);
  for (int32_t i = 0; i < rank; i++)
    begin[i] = end[i] = 0;
  for (int32_t i = 0; i < axis_count; i++) {
    int32_t axis = 0;
    DS_TRY(dsc_normalize_axis(g, n, axes[i], rank, &axis, err));
    begin[axis] = pads[i];
    end[axis] = pads[axis_count + i];
  }
  return DS_OK;
}

static ds_status op_pad(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 4, err));
  char mode[32];
  DS_TRY(dsc_attr_string(g, n, "mode", "constant", mode, sizeof mode, err));
  if (strcmp(mode, "constant") != 0)
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "mode '%s' is not supported; only "
                         "constant padding is", mode);
  const dsc_value *x = &g->values[n->inputs[0]];
  int32_t rank = x->rank;
  if (rank < 1)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "the input must have rank 1 or more");
  int64_t begin[DSR_MAX_RANK], end[DSR_MAX_RANK], dims[DSR_MAX_RANK];
  DS_TRY(read_pads(g, n, rank, begin, end, err));
  double value = 0.0;
  if (n->input_count > 2 && n->inputs[2] >= 0) {
    const dsc_value *v = &g->values[n->inputs[2]];
    if (v->data == NULL || dsc_value_elements(v) != 1)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "constant_value must be a constant "
                           "scalar");
    value = dsc_get_f(v, 0);
  }

  x = &g->values[n->inputs[0]];
  for (int32_t i = 0; i < rank; i++) {
    dims[i] = x->dims[i] + begin[i] + end[i];
    if (dims[i] < 0 || begin[i] < -x->dims[i] || end[i] < -x->dims[i])
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "pads %" PRId64 " and %" PRId64 " remove "
                           "more than the %" PRId64 " elements of axis %d", begin[i], end[i],
                           x->dims[i], i);
    if (begin[i] > INT32_MAX / 2 || end[i] > INT32_MAX / 2)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "pad %" PRId64 " of axis %d is too large",
                           begin[i] > end[i] ? begin[i] : end[i], i);
    n->attrs.pad.begin[i] = (int32_t)begin[i];
    n->attrs.pad.end[i] = (int32_t)end[i];
  }
  n->attrs.pad.value = (float)value;
  int32_t dtype = x->dtype;
  if (x->data == NULL)
    return dsc_set_output_shape(g, n, 0, dtype, rank, dims, err);

  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  x = &g->values[n->inputs[0]];
  int64_t count = dsc_value_elements(&g->values[n->outputs[0]]);
  for (int64_t flat = 0; flat < count; flat++) {
    int64_t rest = flat, offset = 0, stride = 1;
    int inside = 1;
    for (int32_t a = rank - 1; a >= 0; a--) {
      int64_t coordinate = rest % dims[a] - begin[a];
      rest /= dims[a];
      inside &= coordinate >= 0 && coordinate < x->dims[a];
      offset += coordinate * stride;
      stride *= x->dims[a];
    }
    if (dtype == DSC_DTYPE_F32)
      ((float *)out)[flat] = inside ? ((const float *)x->data)[offset] : (float)value;
    else
      ((int64_t *)out)[flat] = inside ? ((const int64_t *)x->data)[offset] : (int64_t)value;
  }
  return DS_OK;
}

static ds_status op_gelu(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  char approximate[32];
  DS_TRY(dsc_attr_string(g, n, "approximate", "none", approximate, sizeof approximate, err));
  if (strcmp(approximate, "none") != 0)
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "approximate='%s' is not "
                         "supported: the runtime computes the exact erf GELU; export with "
                         "nn.GELU(approximate='none')", approximate);
  const dsc_value *x = &g->values[n->inputs[0]];
  if (x->dtype != DSC_DTYPE_F32)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "the input must be float");
  int64_t dims[DSR_MAX_RANK];
  memcpy(dims, x->dims, sizeof dims);
  int32_t rank = x->rank;
  if (x->data == NULL)
    return dsc_set_output_shape(g, n, 0, DSC_DTYPE_F32, rank, dims, err);
  float *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, DSC_DTYPE_F32, rank, dims, (void **)&out, err));
  const float *in = g->values[n->inputs[0]].data;
  int64_t count = dsc_value_elements(&g->values[n->outputs[0]]);
  for (int64_t i = 0; i < count; i++)
    out[i] = (float)(0.5 * in[i] * (1.0 + erf(in[i] / sqrt(2.0))));
  return DS_OK;
}

dsc_op_handler dsc_find_extra_handler(const char *op_type) {
  if (strcmp(op_type, "Pad") == 0)
    return op_pad;
  if (strcmp(op_type, "Gelu") == 0)
    return op_gelu;
  return NULL;
}
