/*
 * Shape arithmetic ops: shape inference and folding for Shape, Size, Identity, Cast, Reshape,
 * Flatten, Squeeze, Unsqueeze, Concat, Transpose, Expand, Gather, Slice, ConstantOfShape,
 * Range and ScatterND (semantics of ONNX opsets 13 to 21).
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "dsc_ir.h"

static size_t element_bytes(int32_t dtype) {
  return dtype == DSC_DTYPE_F32 ? sizeof(float) : sizeof(int64_t);
}

/* Output 0 has the input's elements in the same order, under a new shape. */
static ds_status same_data(dsc_graph *g, dsc_node *n, int32_t rank, const int64_t *dims,
                           ds_error *err) {
  const dsc_value *in = &g->values[n->inputs[0]];
  int32_t dtype = in->dtype;
  if (in->data == NULL)
    return dsc_set_output_shape(g, n, 0, dtype, rank, dims, err);
  int64_t count = dsc_value_elements(in);
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  in = &g->values[n->inputs[0]];
  if (count > 0)
    memcpy(out, in->data, (size_t)count * element_bytes(dtype));
  return DS_OK;
}

static ds_status op_shape(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t start = 0, end = in->rank;
  DS_TRY(dsc_attr_int(g, n, "start", 0, &start, err));
  DS_TRY(dsc_attr_int(g, n, "end", in->rank, &end, err));
  start = start < 0 ? start + in->rank : start;
  end = end < 0 ? end + in->rank : end;
  start = start < 0 ? 0 : (start > in->rank ? in->rank : start);
  end = end < start ? start : (end > in->rank ? in->rank : end);
  int64_t dims[1] = {end - start};
  int64_t *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, DSC_DTYPE_I64, 1, dims, (void **)&out, err));
  in = &g->values[n->inputs[0]];
  for (int64_t i = start; i < end; i++)
    out[i - start] = in->dims[i];
  return DS_OK;
}

static ds_status op_size(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  int64_t count = dsc_value_elements(&g->values[n->inputs[0]]);
  int64_t *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, DSC_DTYPE_I64, 0, NULL, (void **)&out, err));
  out[0] = count;
  return DS_OK;
}

static ds_status op_identity(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t dims[DSR_MAX_RANK];
  memcpy(dims, in->dims, sizeof dims);
  return same_data(g, n, in->rank, dims, err);
}

static int32_t cast_target(int64_t to) {
  switch (to) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16:
  case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: return DSC_DTYPE_F32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return DSC_DTYPE_BOOL;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16:
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32:
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: return DSC_DTYPE_I64;
  default: return DSC_DTYPE_UNKNOWN;
  }
}

static ds_status op_cast(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  int64_t to = 0;
  DS_TRY(dsc_attr_int(g, n, "to", 0, &to, err));
  int32_t dtype = cast_target(to);
  if (dtype == DSC_DTYPE_UNKNOWN)
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "cast to element type %" PRId64
                         " is not supported", to);
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t dims[DSR_MAX_RANK];
  memcpy(dims, in->dims, sizeof dims);
  if (in->data == NULL)
    return dsc_set_output_shape(g, n, 0, dtype, in->rank, dims, err);
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, in->rank, dims, &out, err));
  in = &g->values[n->inputs[0]];
  for (int64_t i = 0; i < dsc_value_elements(in); i++) {
    if (dtype == DSC_DTYPE_F32)
      ((float *)out)[i] = (float)dsc_get_f(in, i);
    else if (dtype == DSC_DTYPE_BOOL)
      ((int64_t *)out)[i] = dsc_get_f(in, i) != 0.0;
    else
      ((int64_t *)out)[i] = dsc_get_i(in, i);
  }
  return DS_OK;
}

static ds_status op_reshape(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 2, err));
  int64_t shape[DSR_MAX_RANK];
  int32_t rank = 0;
  DS_TRY(dsc_input_ints(g, n, 1, shape, DSR_MAX_RANK, &rank, err));
  int64_t allow_zero = 0;
  DS_TRY(dsc_attr_int(g, n, "allowzero", 0, &allow_zero, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t known = 1;
  int32_t infer_axis = -1;
  for (int32_t i = 0; i < rank; i++) {
    if (shape[i] == 0 && !allow_zero) {
      if (i >= in->rank)
        return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "shape dim %d is 0 (copy) but the input "
                             "has rank %d", i, in->rank);
      shape[i] = in->dims[i];
    }
    if (shape[i] == -1) {
      if (infer_axis >= 0)
        return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "shape has more than one -1");
      infer_axis = i;
    } else if (shape[i] < 0) {
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "shape dim %d is %" PRId64, i, shape[i]);
    } else if (shape[i] > 0 && known > DSC_MAX_TENSOR_ELEMENTS / shape[i]) {
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "target shape has more than %" PRId64
                           " elements", DSC_MAX_TENSOR_ELEMENTS);
    } else {
      known *= shape[i];
    }
  }

  int64_t count = dsc_value_elements(in);
  if (infer_axis >= 0) {
    if (known == 0 || count % known != 0)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "cannot infer the -1 dim: %" PRId64
                           " elements do not divide by %" PRId64, count, known);
    shape[infer_axis] = count / known;
    known = count;
  }
  if (known != count)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "target shape has %" PRId64 " elements, the "
                         "input %" PRId64, known, count);
  return same_data(g, n, rank, shape, err);
}

static ds_status op_flatten(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t axis_attr = 1;
  DS_TRY(dsc_attr_int(g, n, "axis", 1, &axis_attr, err));
  if (axis_attr < -in->rank || axis_attr > in->rank)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "axis %" PRId64 " is outside %d..%d",
                         axis_attr, -in->rank, in->rank);
  int32_t axis = (int32_t)(axis_attr < 0 ? axis_attr + in->rank : axis_attr);
  int64_t dims[2] = {1, 1};
  for (int32_t i = 0; i < in->rank; i++)
    dims[i < axis ? 0 : 1] *= in->dims[i];
  return same_data(g, n, 2, dims, err);
}

static ds_status read_axes(const dsc_graph *g, const dsc_node *n, int32_t rank, int64_t *axes,
                           int32_t *count, uint8_t *marked, ds_error *err) {
  *count = 0;
  memset(marked, 0, DSR_MAX_RANK);
  if (n->input_count > 1 && n->inputs[1] >= 0)
    DS_TRY(dsc_input_ints(g, n, 1, axes, DSR_MAX_RANK, count, err));
  for (int32_t i = 0; i < *count; i++) {
    int32_t axis = 0;
    DS_TRY(dsc_normalize_axis(g, n, axes[i], rank, &axis, err));
    if (marked[axis])
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "axis %" PRId64 " is listed twice",
                           axes[i]);
    marked[axis] = 1;
  }
  return DS_OK;
}

static ds_status op_squeeze(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 2, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t axes[DSR_MAX_RANK], dims[DSR_MAX_RANK];
  uint8_t marked[DSR_MAX_RANK];
  int32_t count = 0, rank = 0;
  DS_TRY(read_axes(g, n, in->rank, axes, &count, marked, err));
  for (int32_t i = 0; i < in->rank; i++) {
    int squeeze = count > 0 ? marked[i] : in->dims[i] == 1;
    if (squeeze && in->dims[i] != 1)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "axis %d has size %" PRId64 ", not 1", i,
                           in->dims[i]);
    if (!squeeze)
      dims[rank++] = in->dims[i];
  }
  return same_data(g, n, rank, dims, err);
}

static ds_status op_unsqueeze(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 2, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t axes[DSR_MAX_RANK], dims[DSR_MAX_RANK];
  int32_t count = 0;
  DS_TRY(dsc_input_ints(g, n, 1, axes, DSR_MAX_RANK, &count, err));
  int32_t rank = in->rank + count;
  if (rank > DSR_MAX_RANK)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "output rank %d exceeds %d", rank,
                         DSR_MAX_RANK);
  uint8_t marked[DSR_MAX_RANK] = {0};
  for (int32_t i = 0; i < count; i++) {
    int32_t axis = 0;
    DS_TRY(dsc_normalize_axis(g, n, axes[i], rank, &axis, err));
    if (marked[axis])
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "axis %" PRId64 " is listed twice",
                           axes[i]);
    marked[axis] = 1;
  }
  for (int32_t i = 0, k = 0; i < rank; i++)
    dims[i] = marked[i] ? 1 : in->dims[k++];
  return same_data(g, n, rank, dims, err);
}

static ds_status op_concat(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, DSC_MAX_NODE_ARITY, err));
  const dsc_value *first = &g->values[n->inputs[0]];
  int64_t axis_attr = 0;
  DS_TRY(dsc_attr_int(g, n, "axis", 0, &axis_attr, err));
  int32_t axis = 0;
  DS_TRY(dsc_normalize_axis(g, n, axis_attr, first->rank, &axis, err));
  int64_t dims[DSR_MAX_RANK];
  memcpy(dims, first->dims, sizeof dims);
  dims[axis] = 0;
  for (int32_t k = 0; k < n->input_count; k++) {
    if (n->inputs[k] < 0)
      return dsc_node_fail(g, n, DS_ERR_GRAPH, err, "input %d is missing", k);
    const dsc_value *in = &g->values[n->inputs[k]];
    for (int32_t i = 0; i < first->rank; i++) {
      if (in->rank != first->rank || (i != axis && in->dims[i] != first->dims[i]))
        return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "input %d does not match input 0 "
                             "outside axis %d", k, axis);
    }
    dims[axis] += in->dims[axis];
  }
  if (!dsc_inputs_constant(g, n))
    return dsc_set_output_shape(g, n, 0, first->dtype, first->rank, dims, err);

  int32_t dtype = first->dtype, rank = first->rank;
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  int64_t outer = 1, inner = 1;
  for (int32_t i = 0; i < axis; i++)
    outer *= dims[i];
  for (int32_t i = axis + 1; i < rank; i++)
    inner *= dims[i];
  size_t bytes = element_bytes(dtype);
  int64_t written = 0;
  for (int64_t o = 0; o < outer; o++) {
    for (int32_t k = 0; k < n->input_count; k++) {
      const dsc_value *in = &g->values[n->inputs[k]];
      int64_t chunk = in->dims[axis] * inner;
      if (in->dtype != dtype)
        return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "inputs have different element types");
      memcpy((uint8_t *)out + written * bytes, (const uint8_t *)in->data + o * chunk * bytes,
             (size_t)chunk * bytes);
      written += chunk;
    }
  }
  return DS_OK;
}

static ds_status op_transpose(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t perm[DSR_MAX_RANK], dims[DSR_MAX_RANK];
  int32_t count = 0;
  DS_TRY(dsc_attr_ints(g, n, "perm", perm, DSR_MAX_RANK, &count, err));
  if (count < 0) {
    count = in->rank;
    for (int32_t i = 0; i < count; i++)
      perm[i] = in->rank - 1 - i;
  }
  if (count != in->rank)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "perm has %d entries for rank %d", count,
                         in->rank);
  uint8_t used[DSR_MAX_RANK] = {0};
  for (int32_t i = 0; i < count; i++) {
    if (perm[i] < 0 || perm[i] >= in->rank || used[perm[i]])
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "perm is not a permutation of 0..%d",
                           in->rank - 1);
    used[perm[i]] = 1;
    dims[i] = in->dims[perm[i]];
    n->attrs.transpose.perm[i] = (int32_t)perm[i];
  }
  if (in->data == NULL)
    return dsc_set_output_shape(g, n, 0, in->dtype, in->rank, dims, err);

  int32_t dtype = in->dtype, rank = in->rank;
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  in = &g->values[n->inputs[0]];
  int64_t in_strides[DSR_MAX_RANK], count_out = dsc_value_elements(in);
  int64_t stride = 1;
  for (int32_t i = rank - 1; i >= 0; i--) {
    in_strides[i] = stride;
    stride *= in->dims[i];
  }
  size_t bytes = element_bytes(dtype);
  for (int64_t flat = 0; flat < count_out; flat++) {
    int64_t rest = flat, offset = 0;
    for (int32_t i = rank - 1; i >= 0; i--) {
      offset += (rest % dims[i]) * in_strides[perm[i]];
      rest /= dims[i];
    }
    memcpy((uint8_t *)out + flat * bytes, (const uint8_t *)in->data + offset * bytes, bytes);
  }
  return DS_OK;
}

static ds_status op_expand(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 2, err));
  dsc_value target;
  memset(&target, 0, sizeof target);
  DS_TRY(dsc_input_ints(g, n, 1, target.dims, DSR_MAX_RANK, &target.rank, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  int64_t dims[DSR_MAX_RANK];
  int32_t rank = 0;
  DS_TRY(dsc_broadcast_shape(g, n, in, &target, &rank, dims, err));
  if (in->data == NULL)
    return dsc_set_output_shape(g, n, 0, in->dtype, rank, dims, err);
  int32_t dtype = in->dtype;
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  in = &g->values[n->inputs[0]];
  int64_t count = dsc_value_elements(&g->values[n->outputs[0]]);
  size_t bytes = element_bytes(dtype);
  for (int64_t i = 0; i < count; i++)
    memcpy((uint8_t *)out + i * bytes,
           (const uint8_t *)in->data + dsc_broadcast_offset(in, rank, dims, i) * bytes, bytes);
  return DS_OK;
}

/* Gather with constant indices: checks every index against the axis size. */
static ds_status check_gather_indices(const dsc_graph *g, const dsc_node *n,
                                      const dsc_value *indices, int64_t size, ds_error *err) {
  for (int64_t i = 0; i < dsc_value_elements(indices); i++) {
    int64_t index = dsc_get_i(indices, i);
    if (index < -size || index >= size)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "index %" PRId64 " is outside %" PRId64
                           "..%" PRId64, index, -size, size - 1);
  }
  return DS_OK;
}

static ds_status op_gather(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 2, 2, err));
  const dsc_value *data = &g->values[n->inputs[0]];
  const dsc_value *indices = &g->values[n->inputs[1]];
  int64_t axis_attr = 0;
  DS_TRY(dsc_attr_int(g, n, "axis", 0, &axis_attr, err));
  int32_t axis = 0;
  DS_TRY(dsc_normalize_axis(g, n, axis_attr, data->rank, &axis, err));
  n->attrs.softmax.axis = axis;
  int32_t rank = data->rank - 1 + indices->rank;
  if (rank > DSR_MAX_RANK)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "output rank %d exceeds %d", rank,
                         DSR_MAX_RANK);
  int64_t dims[DSR_MAX_RANK];
  int32_t r = 0;
  for (int32_t i = 0; i < axis; i++)
    dims[r++] = data->dims[i];
  for (int32_t i = 0; i < indices->rank; i++)
    dims[r++] = indices->dims[i];
  for (int32_t i = axis + 1; i < data->rank; i++)
    dims[r++] = data->dims[i];
  if (indices->data != NULL)
    DS_TRY(check_gather_indices(g, n, indices, data->dims[axis], err));
  if (!dsc_inputs_constant(g, n))
    return dsc_set_output_shape(g, n, 0, data->dtype, rank, dims, err);

  int32_t dtype = data->dtype;
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  data = &g->values[n->inputs[0]];
  indices = &g->values[n->inputs[1]];
  int64_t outer = 1, inner = 1, size = data->dims[axis];
  for (int32_t i = 0; i < axis; i++)
    outer *= data->dims[i];
  for (int32_t i = axis + 1; i < data->rank; i++)
    inner *= data->dims[i];
  int64_t index_count = dsc_value_elements(indices);
  size_t bytes = element_bytes(dtype);
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t k = 0; k < index_count; k++) {
      int64_t index = dsc_get_i(indices, k);
      index = index < 0 ? index + size : index;
      memcpy((uint8_t *)out + ((o * index_count + k) * inner) * bytes,
             (const uint8_t *)data->data + ((o * size + index) * inner) * bytes,
             (size_t)inner * bytes);
    }
  }
  return DS_OK;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

ds_status dsc_plan_slice(const dsc_graph *g, const dsc_node *n, const dsc_value *in,
                         dsc_slice_plan *p, ds_error *err) {
  int64_t starts[DSR_MAX_RANK], ends[DSR_MAX_RANK], axes[DSR_MAX_RANK], steps[DSR_MAX_RANK];
  int32_t count = 0, end_count = 0, axis_count = -1, step_count = -1;
  DS_TRY(dsc_input_ints(g, n, 1, starts, DSR_MAX_RANK, &count, err));
  DS_TRY(dsc_input_ints(g, n, 2, ends, DSR_MAX_RANK, &end_count, err));
  if (n->input_count > 3 && n->inputs[3] >= 0)
    DS_TRY(dsc_input_ints(g, n, 3, axes, DSR_MAX_RANK, &axis_count, err));
  if (n->input_count > 4 && n->inputs[4] >= 0)
    DS_TRY(dsc_input_ints(g, n, 4, steps, DSR_MAX_RANK, &step_count, err));
  if (end_count != count || (axis_count >= 0 && axis_count != count) ||
      (step_count >= 0 && step_count != count))
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "starts, ends, axes and steps differ in "
                         "length");
  for (int32_t i = 0; i < in->rank; i++) {
    p->start[i] = 0;
    p->step[i] = 1;
    p->dims[i] = in->dims[i];
  }
  for (int32_t i = 0; i < count; i++) {
    int32_t axis = i;
    if (axis_count >= 0)
      DS_TRY(dsc_normalize_axis(g, n, axes[i], in->rank, &axis, err));
    if (axis >= in->rank)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "more slice axes than input axes");
    int64_t size = in->dims[axis], step = step_count >= 0 ? steps[i] : 1;
    if (step == 0)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "step of axis %d is 0", axis);
    step = clamp64(step, -INT32_MAX, INT32_MAX); /* same result, no overflow below */
    int64_t start = starts[i] < 0 ? starts[i] + size : starts[i];
    int64_t end = ends[i] < 0 ? ends[i] + size : ends[i];
    start = step > 0 ? clamp64(start, 0, size) : clamp64(start, 0, size - 1);
    end = step > 0 ? clamp64(end, 0, size) : clamp64(end, -1, size - 1);
    int64_t length = step > 0 ? (end - start + step - 1) / step : (start - end - step - 1) / -step;
    p->start[axis] = start;
    p->step[axis] = step;
    p->dims[axis] = length > 0 ? length : 0;
  }
  return DS_OK;
}

static ds_status op_slice(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 3, 5, err));
  const dsc_value *in = &g->values[n->inputs[0]];
  dsc_slice_plan p;
  DS_TRY(dsc_plan_slice(g, n, in, &p, err));
  if (in->data == NULL)
    return dsc_set_output_shape(g, n, 0, in->dtype, in->rank, p.dims, err);
  int32_t dtype = in->dtype, rank = in->rank;
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, p.dims, &out, err));
  in = &g->values[n->inputs[0]];
  int64_t count = dsc_value_elements(&g->values[n->outputs[0]]);
  size_t bytes = element_bytes(dtype);
  for (int64_t flat = 0; flat < count; flat++) {
    int64_t rest = flat, offset = 0, stride = 1;
    for (int32_t i = rank - 1; i >= 0; i--) {
      int64_t coord = rest % p.dims[i];
      rest /= p.dims[i];
      offset += (p.start[i] + coord * p.step[i]) * stride;
      stride *= in->dims[i];
    }
    memcpy((uint8_t *)out + flat * bytes, (const uint8_t *)in->data + offset * bytes, bytes);
  }
  return DS_OK;
}

static ds_status op_constant_of_shape(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 1, 1, err));
  int64_t dims[DSR_MAX_RANK];
  int32_t rank = 0;
  DS_TRY(dsc_input_ints(g, n, 0, dims, DSR_MAX_RANK, &rank, err));
  int32_t dtype = DSC_DTYPE_F32;
  double fill = 0.0;
  const Onnx__AttributeProto *a = dsc_attr_find(n, "value");
  if (a != NULL && a->t != NULL) {
    /* Read the one-element value tensor through the output value, then refill it. */
    DS_TRY(dsc_tensor_read(g, a->t, "the value attribute of ConstantOfShape", n->outputs[0],
                           err));
    const dsc_value *v = &g->values[n->outputs[0]];
    if (dsc_value_elements(v) != 1)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "value attribute must hold one element");
    dtype = v->dtype;
    fill = dsc_get_f(v, 0);
  }
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  int64_t count = dsc_value_elements(&g->values[n->outputs[0]]);
  for (int64_t i = 0; i < count; i++) {
    if (dtype == DSC_DTYPE_F32)
      ((float *)out)[i] = (float)fill;
    else
      ((int64_t *)out)[i] = (int64_t)fill;
  }
  return DS_OK;
}

static ds_status op_range(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 3, 3, err));
  if (!dsc_inputs_constant(g, n))
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "start, limit and delta must be constant "
                         "after folding; the converter needs static shapes");
  const dsc_value *start = &g->values[n->inputs[0]];
  const dsc_value *limit = &g->values[n->inputs[1]];
  const dsc_value *delta = &g->values[n->inputs[2]];
  if (dsc_value_elements(start) != 1 || dsc_value_elements(limit) != 1 ||
      dsc_value_elements(delta) != 1)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "start, limit and delta must be scalars");
  double s = dsc_get_f(start, 0), l = dsc_get_f(limit, 0), d = dsc_get_f(delta, 0);
  if (d == 0.0 || !isfinite(s) || !isfinite(l) || !isfinite(d))
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "delta is 0 or a bound is not finite");
  double steps = ceil((l - s) / d);
  if (steps > (double)DSC_MAX_CONSTANT_ELEMENTS)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "range of %.0f elements is too large",
                         steps);
  int64_t dims[1] = {steps > 0 ? (int64_t)steps : 0};
  int32_t dtype = start->dtype;
  int64_t start_i = dsc_get_i(start, 0), delta_i = dsc_get_i(delta, 0);
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, 1, dims, &out, err));
  for (int64_t i = 0; i < dims[0]; i++) {
    if (dtype == DSC_DTYPE_F32)
      ((float *)out)[i] = (float)(s + (double)i * d);
    else
      ((int64_t *)out)[i] = start_i + i * delta_i;
  }
  return DS_OK;
}

/* Copies updates into a copy of data at the positions the last axis of indices names. */
static ds_status scatter_nd(dsc_graph *g, dsc_node *n, void *out, ds_error *err) {
  const dsc_value *data = &g->values[n->inputs[0]];
  const dsc_value *indices = &g->values[n->inputs[1]];
  const dsc_value *updates = &g->values[n->inputs[2]];
  int64_t k = indices->rank > 0 ? indices->dims[indices->rank - 1] : 0;
  if (indices->rank < 1 || k > data->rank)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "indices' last dim %" PRId64 " exceeds the "
                         "data rank %d", k, data->rank);
  int64_t slice = 1, tuples = dsc_value_elements(indices) / (k > 0 ? k : 1);
  for (int32_t i = (int32_t)k; i < data->rank; i++)
    slice *= data->dims[i];
  if (tuples * slice != dsc_value_elements(updates))
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "updates have %" PRId64 " elements, "
                         "expected %" PRId64, dsc_value_elements(updates), tuples * slice);
  size_t bytes = element_bytes(data->dtype);
  memcpy(out, data->data, (size_t)dsc_value_elements(data) * bytes);
  for (int64_t t = 0; t < tuples; t++) {
    int64_t offset = 0;
    for (int64_t j = 0; j < k; j++) {
      int64_t index = dsc_get_i(indices, t * k + j), size = data->dims[j];
      index = index < 0 ? index + size : index;
      if (index < 0 || index >= size)
        return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "index %" PRId64 " is outside axis %"
                             PRId64 " of size %" PRId64, dsc_get_i(indices, t * k + j), j, size);
      offset = offset * size + index;
    }
    memcpy((uint8_t *)out + offset * slice * (int64_t)bytes,
           (const uint8_t *)updates->data + t * slice * (int64_t)bytes, (size_t)slice * bytes);
  }
  return DS_OK;
}

static ds_status op_scatter_nd(dsc_graph *g, dsc_node *n, ds_error *err) {
  DS_TRY(dsc_require_inputs(g, n, 3, 3, err));
  char reduction[16];
  DS_TRY(dsc_attr_string(g, n, "reduction", "none", reduction, sizeof reduction, err));
  if (strcmp(reduction, "none") != 0)
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err, "reduction '%s' is not supported",
                         reduction);
  const dsc_value *data = &g->values[n->inputs[0]];
  int64_t dims[DSR_MAX_RANK];
  memcpy(dims, data->dims, sizeof dims);
  int32_t dtype = data->dtype, rank = data->rank;
  if (!dsc_inputs_constant(g, n))
    return dsc_set_output_shape(g, n, 0, dtype, rank, dims, err);
  void *out = NULL;
  DS_TRY(dsc_alloc_output(g, n, 0, dtype, rank, dims, &out, err));
  return scatter_nd(g, n, out, err);
}

typedef struct named_handler {
  const char *op_type;
  dsc_op_handler handler;
} named_handler;

static const named_handler shape_handlers[] = {
    {"Shape", op_shape},       {"Size", op_size},
    {"Identity", op_identity}, {"Cast", op_cast},
    {"Reshape", op_reshape},   {"Flatten", op_flatten},
    {"Squeeze", op_squeeze},   {"Unsqueeze", op_unsqueeze},
    {"Concat", op_concat},     {"Transpose", op_transpose},
    {"Expand", op_expand},     {"Gather", op_gather},
    {"Slice", op_slice},       {"ConstantOfShape", op_constant_of_shape},
    {"Range", op_range},       {"ScatterND", op_scatter_nd},
};

dsc_op_handler dsc_find_shape_handler(const char *op_type) {
  for (size_t i = 0; i < sizeof shape_handlers / sizeof shape_handlers[0]; i++) {
    if (strcmp(shape_handlers[i].op_type, op_type) == 0)
      return shape_handlers[i].handler;
  }
  return NULL;
}
