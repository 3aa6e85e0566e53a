/* Normalizations: LayerNorm over trailing axes, softmax over one axis. */
#include <math.h>

#include "dsr_kernels.h"

void dsr_f32_layer_norm(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_tensor *x = &model->tensors[node->inputs[0]];
  const float *in = args->in[0];
  const float *gamma = args->in[1];
  const float *beta = args->in[2];
  float *out = args->out;

  int32_t axis = node->attrs.norm.axis < 0 ? node->attrs.norm.axis + x->rank : node->attrs.norm.axis;
  int64_t norm_count = 1;
  for (int32_t i = axis; i < x->rank; i++)
    norm_count *= x->dims[i];
  int64_t row_count = dsr_tensor_elements(x) / norm_count;

  for (int64_t r = 0; r < row_count; r++) {
    const float *row = in + r * norm_count;
    float *out_row = out + r * norm_count;

    /* Two passes (mean, then centred variance) in double, for accuracy on long rows. */
    double sum = 0.0;
    for (int64_t i = 0; i < norm_count; i++)
      sum += row[i];
    float mean = (float)(sum / (double)norm_count);
    double square_sum = 0.0;
    for (int64_t i = 0; i < norm_count; i++) {
      float centred = row[i] - mean;
      square_sum += (double)centred * centred;
    }
    float variance = (float)(square_sum / (double)norm_count);
    float inv_std = 1.0f / sqrtf(variance + node->attrs.norm.epsilon);

    for (int64_t i = 0; i < norm_count; i++) {
      float value = (row[i] - mean) * inv_std * gamma[i];
      out_row[i] = beta != NULL ? value + beta[i] : value;
    }
  }
}

void dsr_f32_softmax(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_tensor *x = &model->tensors[node->inputs[0]];
  const float *in = args->in[0];
  float *out = args->out;

  int32_t axis = node->attrs.softmax.axis < 0 ? node->attrs.softmax.axis + x->rank
                                              : node->attrs.softmax.axis;
  int64_t outer = 1, inner = 1;
  for (int32_t i = 0; i < axis; i++)
    outer *= x->dims[i];
  for (int32_t i = axis + 1; i < x->rank; i++)
    inner *= x->dims[i];
  int32_t length = x->dims[axis];

  for (int64_t o = 0; o < outer; o++) {
    for (int64_t j = 0; j < inner; j++) {
      const float *row = in + o * length * inner + j;
      float *out_row = out + o * length * inner + j;

      float max_value = row[0];
      for (int32_t i = 1; i < length; i++) {
        if (row[i * inner] > max_value)
          max_value = row[i * inner];
      }
      float sum = 0.0f;
      for (int32_t i = 0; i < length; i++) {
        float e = expf(row[i * inner] - max_value);
        out_row[i * inner] = e;
        sum += e;
      }
      float inv_sum = 1.0f / sum;
      for (int32_t i = 0; i < length; i++)
        out_row[i * inner] *= inv_sum;
    }
  }
}
