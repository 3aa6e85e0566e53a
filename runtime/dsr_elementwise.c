/* Elementwise kernels: binary ops with numpy broadcasting, and exact GELU. */
#include <math.h>

#include "dsr_kernels.h"

static float apply(int32_t op, float a, float b) {
  switch (op) {
  case DSR_OP_ADD:
    return a + b;
  case DSR_OP_SUB:
    return a - b;
  case DSR_OP_MUL:
    return a * b;
  default:
    return a / b;
  }
}

/* One contiguous run of the innermost axis, with each operand's stride 0 or 1. The op is a
 * constant in each loop so that every branch vectorizes. */
static void apply_run(int32_t op, const float *a, int64_t a_stride, const float *b,
                      int64_t b_stride, float *out, int32_t count) {
  switch (op) {
  case DSR_OP_ADD:
    for (int32_t i = 0; i < count; i++)
      out[i] = a[i * a_stride] + b[i * b_stride];
    break;
  case DSR_OP_SUB:
    for (int32_t i = 0; i < count; i++)
      out[i] = a[i * a_stride] - b[i * b_stride];
    break;
  case DSR_OP_MUL:
    for (int32_t i = 0; i < count; i++)
      out[i] = a[i * a_stride] * b[i * b_stride];
    break;
  default:
    for (int32_t i = 0; i < count; i++)
      out[i] = a[i * a_stride] / b[i * b_stride];
    break;
  }
}

void dsr_f32_binary(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_tensor *a = &model->tensors[node->inputs[0]];
  const dsr_tensor *b = &model->tensors[node->inputs[1]];
  const float *a_data = args->in[0];
  const float *b_data = args->in[1];
  float *out = args->out;
  int32_t op = node->op;

  dsr_broadcast broadcast;
  dsr_broadcast_init(a->dims, a->rank, b->dims, b->rank, &broadcast);
  int64_t count = dsr_tensor_elements(&model->tensors[node->output]);
  if (broadcast.rank == 0 || count == 1) {
    out[0] = apply(op, a_data[0], b_data[0]);
    return;
  }

  /* Same shapes: one flat run. */
  if (dsr_tensor_elements(a) == count && dsr_tensor_elements(b) == count) {
    for (int64_t start = 0; start < count; start += INT32_MAX) {
      int64_t run = count - start < INT32_MAX ? count - start : INT32_MAX;
      apply_run(op, a_data + start, 1, b_data + start, 1, out + start, (int32_t)run);
    }
    return;
  }

  /* Walk the outer axes like an odometer and apply runs along the innermost axis. */
  int32_t rank = broadcast.rank;
  int32_t inner = broadcast.dims[rank - 1];
  int64_t a_inner = broadcast.a_strides[rank - 1], b_inner = broadcast.b_strides[rank - 1];
  int64_t run_count = count / inner;
  int32_t counter[DSR_MAX_RANK] = {0};
  int64_t a_index = 0, b_index = 0;
  for (int64_t run = 0; run < run_count; run++) {
    apply_run(op, a_data + a_index, a_inner, b_data + b_index, b_inner, out + run * inner, inner);
    for (int32_t axis = rank - 2; axis >= 0; axis--) {
      a_index += broadcast.a_strides[axis];
      b_index += broadcast.b_strides[axis];
      if (++counter[axis] < broadcast.dims[axis])
        break;
      a_index -= broadcast.a_strides[axis] * broadcast.dims[axis];
      b_index -= broadcast.b_strides[axis] * broadcast.dims[axis];
      counter[axis] = 0;
    }
  }
}

float dsr_gelu_value(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

typedef struct gelu_job {
  const float *in;
  float *out;
} gelu_job;

static void gelu_range(void *context, int64_t begin, int64_t end, int32_t task_index) {
  const gelu_job *job = context;
  (void)task_index;
  for (int64_t i = begin; i < end; i++)
    job->out[i] = dsr_gelu_value(job->in[i]);
}

void dsr_f32_gelu(const dsr_f32_args *args) {
  int64_t count = dsr_tensor_elements(&args->model->tensors[args->node->output]);
  gelu_job job = {args->in[0], args->out};
  /* erff costs a few dozen operations. */
  dsr_parallel_for(args->parallel, count, 32, 64, gelu_range, &job);
}
