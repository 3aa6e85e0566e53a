/*
 * Float CONCAT and PAD: their plan-time checks and kernels. Both only move elements, so the
 * float results are exact copies. Neither has a fixed-point kernel: dsr_validate_node rejects
 * them in DSR_MODE_FIXED.
 */
#include <math.h>
#include <string.h>

#include "dsr_kernels.h"

#define SHAPE_TEXT_BYTES 96

static int32_t resolve_axis(int32_t axis, int32_t rank) {
  if (axis < 0)
    axis += rank;
  return axis >= 0 && axis < rank ? axis : -1;
}

ds_status dsr_validate_concat(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *y = &model->tensors[node->output];
  const dsr_tensor *first = &model->tensors[node->inputs[0]];
  char ys[SHAPE_TEXT_BYTES], ts[SHAPE_TEXT_BYTES];
  dsr_shape_text(y, ys, sizeof ys);
  int32_t axis = resolve_axis(node->attrs.softmax.axis, y->rank);
  if (axis < 0 || first->rank != y->rank)
    return ds_fail(err, DS_ERR_SHAPE, "node %d '%.96s' (CONCAT): axis %d does not fit output "
                   "%s of rank %d and input 0 of rank %d",
                   node_index, node->name, node->attrs.softmax.axis, ys, y->rank, first->rank);

  int64_t total = 0;
  for (int32_t j = 0; j < node->input_count; j++) {
    const dsr_tensor *t = &model->tensors[node->inputs[j]];
    int ok = t->rank == y->rank;
    for (int32_t a = 0; ok && a < y->rank; a++)
      ok = a == axis || t->dims[a] == y->dims[a];
    if (!ok)
      return ds_fail(err, DS_ERR_SHAPE, "node %d '%.96s' (CONCAT): input %d %s differs from "
                     "output %s on an axis other than %d",
                     node_index, node->name, j, dsr_shape_text(t, ts, sizeof ts), ys, axis);
    total += t->dims[axis];
  }
  if (total != y->dims[axis])
    return ds_fail(err, DS_ERR_SHAPE, "node %d '%.96s' (CONCAT): the inputs add up to %lld "
                   "along axis %d but output %s has %d",
                   node_index, node->name, (long long)total, axis, ys, y->dims[axis]);
  return DS_OK;
}

ds_status dsr_validate_pad(const dsr_model *model, int32_t node_index, ds_error *err) {
  const dsr_node *node = &model->nodes[node_index];
  const dsr_tensor *x = &model->tensors[node->inputs[0]];
  const dsr_tensor *y = &model->tensors[node->output];
  char xs[SHAPE_TEXT_BYTES], ys[SHAPE_TEXT_BYTES];
  dsr_shape_text(x, xs, sizeof xs);
  dsr_shape_text(y, ys, sizeof ys);
  if (x->rank != y->rank || x->rank < 1)
    return ds_fail(err, DS_ERR_SHAPE, "node %d '%.96s' (PAD): input %s and output %s differ "
                   "in rank",
                   node_index, node->name, xs, ys);
  if (!isfinite(node->attrs.pad.value))
    return ds_fail(err, DS_ERR_SHAPE, "node %d '%.96s' (PAD): the pad value %g is not finite",
                   node_index, node->name, (double)node->attrs.pad.value);
  for (int32_t a = 0; a < x->rank; a++) {
    int32_t begin = node->attrs.pad.begin[a], end = node->attrs.pad.end[a];
    if (begin < 0 || end < 0 || (int64_t)x->dims[a] + begin + end != y->dims[a])
      return ds_fail(err, DS_ERR_SHAPE, "node %d '%.96s' (PAD): axis %d pads %d before and %d "
                     "after input %s, which does not give output %s (pads must not be "
                     "negative)",
                     node_index, node->name, a, begin, end, xs, ys);
  }
  return DS_OK;
}

void dsr_f32_concat(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_tensor *y = &model->tensors[node->output];
  int32_t axis = resolve_axis(node->attrs.softmax.axis, y->rank);
  int64_t outer = 1, inner = 1;
  for (int32_t a = 0; a < axis; a++)
    outer *= y->dims[a];
  for (int32_t a = axis + 1; a < y->rank; a++)
    inner *= y->dims[a];

  /* Each input contributes a block of dims[axis] * inner values to every outer row. */
  int64_t out_row = (int64_t)y->dims[axis] * inner, column = 0;
  for (int32_t j = 0; j < node->input_count; j++) {
    int64_t block = (int64_t)model->tensors[node->inputs[j]].dims[axis] * inner;
    for (int64_t o = 0; o < outer; o++)
      memcpy(args->out + o * out_row + column, args->in[j] + o * block,
             (size_t)block * sizeof(float));
    column += block;
  }
}

void dsr_f32_pad(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_tensor *x = &model->tensors[node->inputs[0]];
  const dsr_tensor *y = &model->tensors[node->output];
  const int32_t *begin = node->attrs.pad.begin;
  int32_t rank = x->rank;
  int64_t out_count = dsr_tensor_elements(y);
  for (int64_t i = 0; i < out_count; i++)
    args->out[i] = node->attrs.pad.value;

  /* Copies each innermost input row to its padded place. */
  int32_t row = x->dims[rank - 1];
  int64_t rows = dsr_tensor_elements(x) / (row > 0 ? row : 1);
  int64_t out_strides[DSR_MAX_RANK];
  int64_t stride = 1;
  for (int32_t a = rank - 1; a >= 0; a--) {
    out_strides[a] = stride;
    stride *= y->dims[a];
  }
  for (int64_t r = 0; r < rows; r++) {
    int64_t rest = r, offset = begin[rank - 1];
    for (int32_t a = rank - 2; a >= 0; a--) {
      int64_t coordinate = rest % x->dims[a];
      rest /= x->dims[a];
      offset += (coordinate + begin[a]) * out_strides[a];
    }
    memcpy(args->out + offset, args->in[0] + r * row, (size_t)row * sizeof(float));
  }
}
