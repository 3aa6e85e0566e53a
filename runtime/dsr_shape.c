/* Shape arithmetic shared by the validator and the float kernels. */
#include <string.h>

#include "dsr_kernels.h"

int dsr_broadcast_init(const int32_t *a_dims, int32_t a_rank, const int32_t *b_dims,
                       int32_t b_rank, dsr_broadcast *broadcast) {
  if (a_rank < 0 || b_rank < 0 || a_rank > DSR_MAX_RANK || b_rank > DSR_MAX_RANK)
    return 0;

  int32_t rank = a_rank > b_rank ? a_rank : b_rank;
  memset(broadcast, 0, sizeof *broadcast);
  broadcast->rank = rank;

  int64_t a_stride = 1, b_stride = 1;
  for (int32_t axis = rank - 1; axis >= 0; axis--) {
    int32_t a_axis = axis - (rank - a_rank);
    int32_t b_axis = axis - (rank - b_rank);
    int32_t a_dim = a_axis >= 0 ? a_dims[a_axis] : 1;
    int32_t b_dim = b_axis >= 0 ? b_dims[b_axis] : 1;
    if (a_dim != b_dim && a_dim != 1 && b_dim != 1)
      return 0;

    broadcast->dims[axis] = a_dim > b_dim ? a_dim : b_dim;
    broadcast->a_strides[axis] = a_dim == 1 ? 0 : a_stride;
    broadcast->b_strides[axis] = b_dim == 1 ? 0 : b_stride;
    a_stride *= a_dim;
    b_stride *= b_dim;
  }
  return 1;
}

int dsr_matmul_geometry_init(const dsr_tensor *a, const dsr_tensor *b,
                             dsr_matmul_geometry *geometry) {
  memset(geometry, 0, sizeof *geometry);
  if (a->rank < 1 || b->rank < 1)
    return 0;

  int32_t a_rank = a->rank, b_rank = b->rank;
  geometry->m = a_rank >= 2 ? a->dims[a_rank - 2] : 1;
  geometry->k = a->dims[a_rank - 1];
  int32_t b_k = b_rank >= 2 ? b->dims[b_rank - 2] : b->dims[0];
  geometry->n = b_rank >= 2 ? b->dims[b_rank - 1] : 1;
  if (geometry->k != b_k)
    return 0;

  int32_t a_batch_rank = a_rank >= 2 ? a_rank - 2 : 0;
  int32_t b_batch_rank = b_rank >= 2 ? b_rank - 2 : 0;
  if (!dsr_broadcast_init(a->dims, a_batch_rank, b->dims, b_batch_rank, &geometry->batch))
    return 0;

  int32_t out_rank = geometry->batch.rank;
  for (int32_t axis = 0; axis < geometry->batch.rank; axis++)
    geometry->out_dims[axis] = geometry->batch.dims[axis];
  if (a_rank >= 2)
    geometry->out_dims[out_rank++] = geometry->m;
  if (b_rank >= 2)
    geometry->out_dims[out_rank++] = geometry->n;
  if (out_rank > DSR_MAX_RANK)
    return 0;
  geometry->out_rank = out_rank;
  return 1;
}

int64_t dsr_gather_index(const dsr_tensor *indices, int64_t j) {
  if (indices->data_f32 != NULL)
    return (int64_t)indices->data_f32[j];
  if (indices->qparams.dtype == DSR_DTYPE_I64)
    return ((const int64_t *)indices->data_q)[j];
  return ((const int32_t *)indices->data_q)[j];
}

const char *dsr_shape_text(const dsr_tensor *tensor, char *text, size_t text_bytes) {
  /* Digits of each dim, written by hand so that the runtime needs no stdio. */
  size_t used = 0;
  if (text_bytes < 2)
    return text;
  text[used++] = '(';
  int32_t rank = tensor->rank < 0 ? 0 : (tensor->rank > DSR_MAX_RANK ? DSR_MAX_RANK : tensor->rank);
  for (int32_t axis = 0; axis < rank; axis++) {
    char digits[16];
    int32_t digit_count = 0;
    int64_t value = tensor->dims[axis];
    int negative = value < 0;
    if (negative)
      value = -value;
    do {
      digits[digit_count++] = (char)('0' + value % 10);
      value /= 10;
    } while (value > 0 && digit_count < 15);
    if (used + (size_t)digit_count + 3 >= text_bytes)
      break;
    if (axis > 0)
      text[used++] = ',';
    if (negative)
      text[used++] = '-';
    while (digit_count > 0)
      text[used++] = digits[--digit_count];
  }
  if (used + 1 < text_bytes)
    text[used++] = ')';
  text[used] = '\0';
  return text;
}
