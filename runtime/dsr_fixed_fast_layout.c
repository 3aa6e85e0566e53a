/*
 * Optimized TRANSPOSE for the fixed-point runtime, byte-identical to run_transpose in
 * dsr_fixed.c: the same element moves, with the innermost output axis as a typed loop at a
 * constant input stride instead of one memcpy per element.
 */
#include "dsr_fixed_internal.h"

/* Copies count elements of elem_bytes from src (input stride in_stride elements) to dst. */
static void copy_strided(const uint8_t *src, int64_t in_stride, int64_t count, size_t elem_bytes,
                         uint8_t *dst) {
  if (elem_bytes == 1) {
    for (int64_t i = 0; i < count; i++)
      dst[i] = src[i * in_stride];
  } else if (elem_bytes == 2) {
    const int16_t *s = (const int16_t *)src;
    int16_t *d = (int16_t *)dst;
    for (int64_t i = 0; i < count; i++)
      d[i] = s[i * in_stride];
  } else {
    const int32_t *s = (const int32_t *)src;
    int32_t *d = (int32_t *)dst;
    for (int64_t i = 0; i < count; i++)
      d[i] = s[i * in_stride];
  }
}

int dsr_fixed_fast_transpose(const dsr_model *model, const dsr_node *node, const void *const *in,
                             void *out) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  if (yt->rank < 1 || dsr_tensor_elements(yt) < 1)
    return 0;
  int64_t x_strides[DSR_MAX_RANK], in_strides[DSR_MAX_RANK];
  int64_t stride = 1;
  for (int32_t k = xt->rank - 1; k >= 0; k--) {
    x_strides[k] = stride;
    stride *= xt->dims[k];
  }
  for (int32_t k = 0; k < yt->rank; k++)
    in_strides[k] = x_strides[node->attrs.transpose.perm[k]];

  int32_t dtype = yt->qparams.dtype;
  size_t elem_bytes = dtype == DSR_DTYPE_I8 ? 1 : (dtype == DSR_DTYPE_I16 ? 2 : 4);
  int32_t last = yt->rank - 1;
  int64_t row = yt->dims[last];
  int64_t rows = dsr_tensor_elements(yt) / row;
  const uint8_t *src = in[0];
  uint8_t *dst = out;
  int32_t counter[DSR_MAX_RANK] = {0};
  int64_t offset = 0;
  for (int64_t r = 0; r < rows; r++) {
    copy_strided(src + offset * (int64_t)elem_bytes, in_strides[last], row, elem_bytes,
                 dst + r * row * (int64_t)elem_bytes);
    /* Next row: advance the leading output axes like an odometer. */
    for (int32_t k = last - 1; k >= 0; k--) {
      counter[k]++;
      offset += in_strides[k];
      if (counter[k] < yt->dims[k])
        break;
      offset -= in_strides[k] * yt->dims[k];
      counter[k] = 0;
    }
  }
  return 1;
}
