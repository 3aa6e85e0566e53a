/* Data movement kernels: transpose, reshape (a copy), gather, global average pooling. */
#include <string.h>

#include "dsr_kernels.h"

void dsr_f32_transpose(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_tensor *x = &model->tensors[node->inputs[0]];
  const int32_t *perm = node->attrs.transpose.perm;
  const float *in = args->in[0];
  float *out = args->out;
  int32_t rank = x->rank;
  int64_t count = dsr_tensor_elements(x);
  if (rank == 0) {
    out[0] = in[0];
    return;
  }

  /* Input strides seen along each output axis. */
  int64_t in_strides[DSR_MAX_RANK] = {0}, strides_by_out[DSR_MAX_RANK] = {0};
  int32_t out_dims[DSR_MAX_RANK] = {0};
  int64_t stride = 1;
  for (int32_t axis = rank - 1; axis >= 0; axis--) {
    in_strides[axis] = stride;
    stride *= x->dims[axis];
  }
  for (int32_t axis = 0; axis < rank; axis++) {
    strides_by_out[axis] = in_strides[perm[axis]];
    out_dims[axis] = x->dims[perm[axis]];
  }

  int32_t inner = out_dims[rank - 1];
  int64_t inner_stride = strides_by_out[rank - 1];
  int32_t counter[DSR_MAX_RANK] = {0};
  int64_t in_index = 0;
  for (int64_t start = 0; start < count; start += inner) {
    for (int32_t i = 0; i < inner; i++)
      out[start + i] = in[in_index + i * inner_stride];
    for (int32_t axis = rank - 2; axis >= 0; axis--) {
      in_index += strides_by_out[axis];
      if (++counter[axis] < out_dims[axis])
        break;
      in_index -= strides_by_out[axis] * out_dims[axis];
      counter[axis] = 0;
    }
  }
}

void dsr_f32_reshape(const dsr_f32_args *args) {
  int64_t count = dsr_tensor_elements(&args->model->tensors[args->node->output]);
  if (args->out != args->in[0])
    memcpy(args->out, args->in[0], (size_t)count * sizeof(float));
}

void dsr_f32_gather(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_tensor *x = &model->tensors[node->inputs[0]];
  const dsr_tensor *indices = &model->tensors[node->inputs[1]];
  const float *in = args->in[0];
  float *out = args->out;

  int32_t axis = node->attrs.softmax.axis < 0 ? node->attrs.softmax.axis + x->rank
                                              : node->attrs.softmax.axis;
  int64_t outer = 1, inner = 1;
  for (int32_t i = 0; i < axis; i++)
    outer *= x->dims[i];
  for (int32_t i = axis + 1; i < x->rank; i++)
    inner *= x->dims[i];
  int32_t dim = x->dims[axis];
  int64_t index_count = dsr_tensor_elements(indices);

  for (int64_t o = 0; o < outer; o++) {
    for (int64_t j = 0; j < index_count; j++) {
      int64_t index = dsr_gather_index(indices, j);
      if (index < 0)
        index += dim;
      memcpy(out + (o * index_count + j) * inner, in + (o * dim + index) * inner,
             (size_t)inner * sizeof(float));
    }
  }
}

void dsr_f32_global_avg_pool(const dsr_f32_args *args) {
  const dsr_tensor *x = &args->model->tensors[args->node->inputs[0]];
  int64_t planes = (int64_t)x->dims[0] * x->dims[1];
  int64_t plane = dsr_tensor_elements(x) / planes;
  for (int64_t p = 0; p < planes; p++) {
    const float *values = args->in[0] + p * plane;
    double sum = 0.0;
    for (int64_t i = 0; i < plane; i++)
      sum += values[i];
    args->out[p] = (float)(sum / (double)plane);
  }
}
