/* Normalizations: LayerNorm over trailing axes, softmax over one axis. */
#include <math.h>

#include "dsr_kernels.h"

typedef struct norm_job {
  const float *in, *gamma, *beta;
  float *out;
  int64_t norm_count;
  float epsilon;
} norm_job;

static void norm_rows(void *context, int64_t begin, int64_t end, int32_t task_index) {
  const norm_job *job = context;
  (void)task_index;
  int64_t norm_count = job->norm_count;
  const float *gamma = job->gamma, *beta = job->beta;
  for (int64_t r = begin; r < end; r++) {
    const float *row = job->in + r * norm_count;
    float *out_row = job->out + r * norm_count;

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
    float inv_std = 1.0f / sqrtf(variance + job->epsilon);

    for (int64_t i = 0; i < norm_count; i++) {
      float value = (row[i] - mean) * inv_std * gamma[i];
      out_row[i] = beta != NULL ? value + beta[i] : value;
    }
  }
}

void dsr_f32_layer_norm(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_tensor *x = &model->tensors[node->inputs[0]];

  int32_t axis = node->attrs.norm.axis < 0 ? node->attrs.norm.axis + x->rank : node->attrs.norm.axis;
  int64_t norm_count = 1;
  for (int32_t i = axis; i < x->rank; i++)
    norm_count *= x->dims[i];
  int64_t row_count = dsr_tensor_elements(x) / norm_count;
  norm_job job = {args->in[0], args->in[1], args->in[2], args->out, norm_count,
                  node->attrs.norm.epsilon};
  dsr_parallel_for(args->parallel, row_count, 8 * norm_count, 1, norm_rows, &job);
}

/*
 * expf of a value at most 0, flushed to 0 where the result would be subnormal (below
 * FLT_MIN = expf(-87.34)). Masked logits (a -100 bias) otherwise give subnormal
 * probabilities, and every product with them in the attention takes the slow subnormal path
 * of the FPU, several times slower in total. A flushed term changes the row sum, which is at
 * least 1, by less than 1e-37.
 */
static inline float exp_shifted(float shifted) {
  return shifted < -87.0f ? 0.0f : expf(shifted);
}

/* Lanes of the max and sum reductions: independent partial results hide the latency of each
 * add and let the compiler use vector registers. */
#define SOFTMAX_LANES 8

void dsr_softmax_row(const float *row, float *out_row, int32_t length) {
  float lane_max[SOFTMAX_LANES];
  for (int32_t k = 0; k < SOFTMAX_LANES; k++)
    lane_max[k] = row[0];
  int32_t i = 0;
  for (; i + SOFTMAX_LANES <= length; i += SOFTMAX_LANES) {
    for (int32_t k = 0; k < SOFTMAX_LANES; k++)
      lane_max[k] = row[i + k] > lane_max[k] ? row[i + k] : lane_max[k];
  }
  float max_value = lane_max[0];
  for (int32_t k = 1; k < SOFTMAX_LANES; k++)
    max_value = lane_max[k] > max_value ? lane_max[k] : max_value;
  for (; i < length; i++)
    max_value = row[i] > max_value ? row[i] : max_value;

  for (i = 0; i < length; i++)
    out_row[i] = exp_shifted(row[i] - max_value);

  float lane_sum[SOFTMAX_LANES] = {0.0f};
  for (i = 0; i + SOFTMAX_LANES <= length; i += SOFTMAX_LANES) {
    for (int32_t k = 0; k < SOFTMAX_LANES; k++)
      lane_sum[k] += out_row[i + k];
  }
  float sum = 0.0f;
  for (int32_t k = 0; k < SOFTMAX_LANES; k++)
    sum += lane_sum[k];
  for (; i < length; i++)
    sum += out_row[i];

  float inv_sum = 1.0f / sum;
  for (i = 0; i < length; i++)
    out_row[i] *= inv_sum;
}

typedef struct softmax_job {
  const float *in;
  float *out;
  int32_t length;
} softmax_job;

static void softmax_rows(void *context, int64_t begin, int64_t end, int32_t task_index) {
  const softmax_job *job = context;
  (void)task_index;
  for (int64_t o = begin; o < end; o++)
    dsr_softmax_row(job->in + o * job->length, job->out + o * job->length, job->length);
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

  if (inner == 1) {
    softmax_job job = {in, out, length};
    dsr_parallel_for(args->parallel, outer, 24 * (int64_t)length, 1, softmax_rows, &job);
    return;
  }

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
        float e = exp_shifted(row[i * inner] - max_value);
        out_row[i * inner] = e;
        sum += e;
      }
      float inv_sum = 1.0f / sum;
      for (int32_t i = 0; i < length; i++)
        out_row[i * inner] *= inv_sum;
    }
  }
}
