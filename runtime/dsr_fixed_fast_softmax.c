/*
 * Optimized SOFTMAX for the fixed-point runtime over the last axis, bit-identical to
 * run_softmax in dsr_fixed.c and dsr_fixed_softmax_row in dsr_fixed_math.c. Rows are read
 * contiguously by dtype, and the requantization, exp table lookup and output scaling are
 * written without branches so that they vectorize.
 *
 * Scratch: int32 row[length], exps[length] and values[length]: what dsr_fixed_scratch_bytes
 * reserves for the reference kernel, once per task of the parallel hook (rows are split).
 */
#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"

/* Loads a row of count values. */
static void load_row(const void *x, int32_t dtype, int64_t offset, int32_t count, int32_t *row) {
  if (dtype == DSR_DTYPE_I8) {
    const int8_t *src = (const int8_t *)x + offset;
    for (int32_t i = 0; i < count; i++)
      row[i] = src[i];
  } else {
    const int16_t *src = (const int16_t *)x + offset;
    for (int32_t i = 0; i < count; i++)
      row[i] = src[i];
  }
}

/*
 * dsr_fixed_exp2_neg_q30 of each y (y <= 0 after the requantization of a non-positive value
 * by a non-negative multiplier) into exps, returning their sum. The table entry, at most
 * 2^30, is rounded right by k = -y >> 10 in 64 bits; k > 31 gives 0. The entries are
 * positive, so the rounding is (entry + 2^(k-1)) >> k.
 */
DSR_FIXED_VECTOR_CLONES
int64_t dsr_fixed_fast_exp_row(const int32_t *y, int32_t count, int32_t *exps) {
  int64_t sum = 0;
  for (int32_t i = 0; i < count; i++) {
    int64_t magnitude = y[i] >= 0 ? 0 : -(int64_t)y[i];
    int64_t k = magnitude >> DSR_FIXED_EXP_FRAC_BITS;
    int64_t entry = dsr_fixed_exp2_table_q30[magnitude & (DSR_FIXED_EXP_TABLE_COUNT - 1)];
    int64_t shift = k > 31 ? 31 : k;
    int64_t half = ((int64_t)1 << shift) >> 1; /* 0 for shift 0, which leaves the entry */
    int64_t rounded = (entry + half) >> shift;
    exps[i] = k > 31 ? 0 : (int32_t)rounded;
    sum += exps[i];
  }
  return sum;
}

/* Scales the exps by the reciprocal of their sum, as dsr_fixed_softmax_row does: products
 * below 2^62, non-negative, rounded right by 62 - out_frac_bits. */
DSR_FIXED_VECTOR_CLONES
static void scale_row(const int32_t *exps, int32_t count, int64_t reciprocal,
                      int32_t out_frac_bits, int32_t *out) {
  int32_t zero = out_frac_bits == 8 ? -128 : 0;
  int32_t max_out = out_frac_bits == 8 ? 127 : 32767;
  int32_t min_out = out_frac_bits == 8 ? -128 : -32768;
  int32_t exponent = 62 - out_frac_bits;
  for (int32_t i = 0; i < count; i++) {
    int64_t p = ((int64_t)exps[i] * reciprocal + ((int64_t)1 << (exponent - 1))) >> exponent;
    out[i] = (int32_t)dsr_fixed_clamp64(zero + p, min_out, max_out);
  }
}

void dsr_fixed_fast_softmax_row(const int32_t *in, int32_t count, int32_t exp_multiplier,
                                int32_t exp_shift, int32_t out_frac_bits, int32_t *exp_scratch,
                                int32_t *out) {
  int32_t max_value = in[0];
  for (int32_t i = 1; i < count; i++)
    max_value = in[i] > max_value ? in[i] : max_value;
  for (int32_t i = 0; i < count; i++)
    out[i] = in[i] - max_value;
  const int32_t exp_pair[2] = {exp_multiplier, exp_shift};
  dsr_fixed_requant_row32(out, count, exp_pair, 0, out);
  /* The maximum contributes exactly 2^30, so 2^30 <= sum <= count * 2^30. */
  int64_t sum = dsr_fixed_fast_exp_row(out, count, exp_scratch);
  int64_t reciprocal = (int64_t)(((uint64_t)1 << 62) / (uint64_t)sum);
  scale_row(exp_scratch, count, reciprocal, out_frac_bits, out);
}

typedef struct softmax_job {
  const dsr_node *node;
  const dsr_tensor *xt, *yt;
  const void *x;
  void *out;
  uint8_t *scratch;
  size_t slot_bytes;
  int32_t length, task_count;
  int64_t rows;
} softmax_job;

/* Softmax of a share of the rows, with the task's own scratch slot. */
static void softmax_task(void *context, int32_t task_index) {
  const softmax_job *job = context;
  int32_t length = job->length;
  int32_t *row = (int32_t *)(job->scratch + (size_t)task_index * job->slot_bytes);
  int32_t *exps = row + length;
  int32_t *values = exps + length;
  const int32_t *q = job->node->qwords;
  int64_t begin, end;
  dsr_parallel_share(job->rows, job->task_count, task_index, 1, &begin, &end);
  for (int64_t r = begin; r < end; r++) {
    load_row(job->x, job->xt->qparams.dtype, r * length, length, row);
    dsr_fixed_fast_softmax_row(row, length, q[1], q[2], q[3], exps, values);
    dsr_fixed_store_row(values, length, 0, job->yt->qparams.dtype, job->out, r * length);
  }
}

int dsr_fixed_fast_softmax_parallel(const dsr_model *model, const dsr_node *node,
                                    const void *const *in, void *out, uint8_t *scratch,
                                    size_t slot_bytes, const dsr_parallel *parallel) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int32_t axis = node->attrs.softmax.axis < 0 ? node->attrs.softmax.axis + xt->rank
                                              : node->attrs.softmax.axis;
  if (axis != xt->rank - 1 || xt->dims[axis] < 1)
    return 0;
  softmax_job job = {.node = node, .xt = xt, .yt = &model->tensors[node->output], .x = in[0],
                     .out = out, .scratch = scratch, .slot_bytes = slot_bytes,
                     .length = xt->dims[axis]};
  job.rows = dsr_tensor_elements(xt) / job.length;
  /* About 8 operations per element: requantization, table lookup, scaling, stores. */
  job.task_count = dsr_parallel_tasks(parallel, job.rows, 8 * (int64_t)job.length);
  dsr_parallel_run(parallel, softmax_task, &job, job.task_count);
  return 1;
}

int dsr_fixed_fast_softmax(const dsr_model *model, const dsr_node *node, const void *const *in,
                           void *out, uint8_t *scratch) {
  return dsr_fixed_fast_softmax_parallel(model, node, in, out, scratch, 0, NULL);
}
