/* Fixed-point CONCAT and PAD: checks and kernels. Both paths (optimized and reference) run
 * these, so they are bit-identical by construction. */
#include "dsr_fixed_layout.h"

#include <string.h>

#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"
#include "quant/dsq_params.h"

static int32_t resolve_axis(int32_t axis, int32_t rank) { return axis < 0 ? axis + rank : axis; }

static size_t dtype_bytes(int32_t dtype) {
  if (dtype == DSR_DTYPE_I8)
    return 1;
  if (dtype == DSR_DTYPE_I16)
    return 2;
  return 4;
}

static int same_qparams(const dsr_tensor *a, const dsr_tensor *b) {
  return a->qparams.dtype == b->qparams.dtype && a->qparams.scale == b->qparams.scale &&
         a->qparams.zero_point == b->qparams.zero_point;
}

static ds_status fail_qwords(const dsr_node *node, ds_error *err, const char *layout) {
  return ds_fail(err, DS_ERR_QUANT, "node '%s' (%s): qwords must be %s; re-run dsq_quantize",
                 node->name, node->op == DSR_OP_PAD ? "PAD" : "CONCAT", layout);
}

ds_status dsr_fixed_layout_check(const dsr_model *model, const dsr_node *node, ds_error *err) {
  const dsr_tensor *yt = &model->tensors[node->output];
  if (node->op == DSR_OP_PAD) {
    const dsr_tensor *xt = &model->tensors[node->inputs[0]];
    if (!same_qparams(xt, yt))
      return ds_fail(err, DS_ERR_QUANT, "node '%s' (PAD): input '%s' and output '%s' must "
                     "share qparams; re-run dsq_quantize", node->name, xt->name, yt->name);
    int32_t low = 0, high = 0;
    dsr_fixed_dtype_range(yt->qparams.dtype, &low, &high);
    if (node->qword_count != 2 || node->qwords[1] < low || node->qwords[1] > high)
      return fail_qwords(node, err, "[tag, pad value] with the value inside the output type");
    return DS_OK;
  }
  if (node->qword_count != 2 + 3 * node->input_count ||
      node->qwords[1] != resolve_axis(node->attrs.softmax.axis, yt->rank))
    return fail_qwords(node, err, "[tag, axis, (copy, multiplier, shift) per input]");
  for (int32_t j = 0; j < node->input_count; j++) {
    if (node->inputs[j] < 0 || node->inputs[j] >= model->tensor_count ||
        !model->tensors[node->inputs[j]].has_qparams)
      return ds_fail(err, DS_ERR_QUANT, "node '%s' (CONCAT): input %d (tensor %d) has no "
                     "qparams; quantize the model first", node->name, j, node->inputs[j]);
    const dsr_tensor *xt = &model->tensors[node->inputs[j]];
    const int32_t *word = node->qwords + 2 + 3 * j;
    if (word[0] == 1 && !same_qparams(xt, yt))
      return ds_fail(err, DS_ERR_QUANT, "node '%s' (CONCAT): input %d '%s' is marked for a "
                     "plain copy but its qparams differ from output '%s'; re-run dsq_quantize",
                     node->name, j, xt->name, yt->name);
    if (word[0] != 1 && (word[0] != 0 || !dsr_fixed_pair_valid(word + 1, 0)))
      return fail_qwords(node, err, "[tag, axis, (copy, multiplier, shift) per input] with "
                         "copy 0 or 1 and valid requant pairs");
  }
  return DS_OK;
}

void dsr_fixed_concat(const dsr_model *model, const dsr_node *node,
                      const void *const *inputs, void *output) {
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t axis = node->qwords[1];
  int64_t outer = 1, inner = 1;
  for (int32_t a = 0; a < axis; a++)
    outer *= yt->dims[a];
  for (int32_t a = axis + 1; a < yt->rank; a++)
    inner *= yt->dims[a];
  int32_t y_dtype = yt->qparams.dtype;
  size_t bytes = dtype_bytes(y_dtype);

  /* Each input fills a block of dims[axis] * inner values in every outer row. */
  int64_t out_row = (int64_t)yt->dims[axis] * inner, column = 0;
  for (int32_t j = 0; j < node->input_count; j++) {
    const dsr_tensor *xt = &model->tensors[node->inputs[j]];
    const int32_t *word = node->qwords + 2 + 3 * j;
    int64_t block = (int64_t)xt->dims[axis] * inner;
    for (int64_t o = 0; o < outer; o++) {
      uint8_t *to = (uint8_t *)output + (size_t)(o * out_row + column) * bytes;
      if (word[0] == 1) {
        memcpy(to, (const uint8_t *)inputs[j] + (size_t)(o * block) * bytes,
               (size_t)block * bytes);
        continue;
      }
      /* y = z_y + requant(x - z_x, s_x / s_y), saturated to the output type. */
      for (int64_t i = 0; i < block; i++) {
        int32_t x = dsr_fixed_load(inputs[j], xt->qparams.dtype, o * block + i) -
                    xt->qparams.zero_point;
        dsr_fixed_store(output, y_dtype, o * out_row + column + i,
                        (int64_t)yt->qparams.zero_point +
                            dsr_fixed_requant32(x, word[1], word[2]));
      }
    }
    column += block;
  }
}

void dsr_fixed_pad(const dsr_model *model, const dsr_node *node, const void *input,
                   void *output) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t dtype = yt->qparams.dtype;
  size_t bytes = dtype_bytes(dtype);
  int64_t out_count = dsr_tensor_elements(yt);
  for (int64_t i = 0; i < out_count; i++)
    dsr_fixed_store(output, dtype, i, node->qwords[1]);

  /* Copies each innermost input row to its padded place. */
  const int32_t *begin = node->attrs.pad.begin;
  int32_t rank = xt->rank;
  int32_t row = xt->dims[rank - 1];
  int64_t rows = dsr_tensor_elements(xt) / (row > 0 ? row : 1);
  int64_t out_strides[DSR_MAX_RANK];
  int64_t stride = 1;
  for (int32_t a = rank - 1; a >= 0; a--) {
    out_strides[a] = stride;
    stride *= yt->dims[a];
  }
  for (int64_t r = 0; r < rows; r++) {
    int64_t rest = r, offset = begin[rank - 1];
    for (int32_t a = rank - 2; a >= 0; a--) {
      int64_t coordinate = rest % xt->dims[a];
      rest /= xt->dims[a];
      offset += (coordinate + begin[a]) * out_strides[a];
    }
    memcpy((uint8_t *)output + (size_t)offset * bytes,
           (const uint8_t *)input + (size_t)(r * row) * bytes, (size_t)row * bytes);
  }
}
