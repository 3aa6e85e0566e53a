/*
 * Optimized GATHER and RESHAPE for the fixed-point runtime, byte-identical to run_gather and
 * the RESHAPE copy in dsr_fixed.c.
 *
 * GATHER copies, for every outer position and every index, one unit: the inner elements
 * after the gathered axis. Consecutive indices that count up by one select units that are
 * adjacent in both input and output. Such a run is one block copy, as in a channel slice or
 * a row of a local attention window. Single units of 1 to 64 bytes are copied with a fixed
 * size, which the compiler turns into plain moves.
 *
 * Both kernels split their output into contiguous shares, one per task of the parallel hook.
 * Each output byte is copied from the same place whatever the split.
 */
#include <string.h>

#include "dsr_fixed_internal.h"

static size_t element_bytes(int32_t dtype) {
  return dtype == DSR_DTYPE_I8 ? 1 : (dtype == DSR_DTYPE_I16 ? 2 : 4);
}

typedef struct gather_job {
  const uint8_t *src;
  uint8_t *dst;
  const int32_t *indices;
  int32_t index_count, axis_size;
  size_t unit_bytes;
} gather_job;

/* Copies one unit of unit_bytes, with a constant size for the common small units. */
static inline void copy_unit(uint8_t *dst, const uint8_t *src, size_t unit_bytes) {
  switch (unit_bytes) {
  case 1:
    *dst = *src;
    break;
  case 2:
    memcpy(dst, src, 2);
    break;
  case 4:
    memcpy(dst, src, 4);
    break;
  case 8:
    memcpy(dst, src, 8);
    break;
  case 16:
    memcpy(dst, src, 16);
    break;
  case 32:
    memcpy(dst, src, 32);
    break;
  case 64:
    memcpy(dst, src, 64);
    break;
  default:
    memcpy(dst, src, unit_bytes);
    break;
  }
}

/* Output units [begin, end): unit u is index u % index_count of outer position
 * u / index_count. */
static void gather_range(void *context, int64_t begin, int64_t end, int32_t task_index) {
  (void)task_index;
  const gather_job *job = context;
  const int32_t *indices = job->indices;
  size_t unit_bytes = job->unit_bytes;
  int64_t u = begin;
  while (u < end) {
    int64_t outer = u / job->index_count;
    int32_t j = (int32_t)(u - outer * job->index_count);
    /* The run stops at the end of the share or of this outer position's indices. */
    int32_t last = job->index_count;
    if (end - u < (int64_t)(last - j))
      last = j + (int32_t)(end - u);
    int32_t first_index = indices[j];
    int32_t run = 1;
    while (j + run < last && indices[j + run] == first_index + run)
      run++;
    const uint8_t *from =
        job->src + ((int64_t)outer * job->axis_size + first_index) * (int64_t)unit_bytes;
    uint8_t *to = job->dst + u * (int64_t)unit_bytes;
    if (run == 1)
      copy_unit(to, from, unit_bytes);
    else
      memcpy(to, from, (size_t)run * unit_bytes);
    u += run;
  }
}

int dsr_fixed_fast_gather_parallel(const dsr_model *model, const dsr_node *node,
                                   const void *const *in, void *out,
                                   const dsr_parallel *parallel) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int32_t axis = node->qwords[1];
  int64_t outer = 1, inner = 1;
  for (int32_t k = 0; k < axis; k++)
    outer *= xt->dims[k];
  for (int32_t k = axis + 1; k < xt->rank; k++)
    inner *= xt->dims[k];
  gather_job job = {.src = in[0], .dst = out, .indices = node->qwords + 3,
                    .index_count = node->qwords[2], .axis_size = xt->dims[axis],
                    .unit_bytes = element_bytes(xt->qparams.dtype) * (size_t)inner};
  if (job.index_count < 1 || job.unit_bytes < 1 || outer < 1)
    return 0;
  /* A unit costs about one operation per 16 bytes, and at least the index test. */
  int64_t unit_ops = 1 + (int64_t)job.unit_bytes / 16;
  dsr_parallel_for(parallel, outer * job.index_count, unit_ops, 1, gather_range, &job);
  return 1;
}

typedef struct copy_job {
  const uint8_t *src;
  uint8_t *dst;
  size_t bytes;
} copy_job;

/* Share boundaries of the RESHAPE copy fall on whole cache lines. */
#define COPY_LINE_BYTES 64

/* Copies the lines [begin, end) of the RESHAPE (the last one may be short). */
static void copy_range(void *context, int64_t begin, int64_t end, int32_t task_index) {
  (void)task_index;
  const copy_job *job = context;
  size_t from = (size_t)begin * COPY_LINE_BYTES;
  size_t to = (size_t)end * COPY_LINE_BYTES;
  if (to > job->bytes)
    to = job->bytes;
  memcpy(job->dst + from, job->src + from, to - from);
}

int dsr_fixed_fast_reshape_parallel(const dsr_model *model, const dsr_node *node,
                                    const void *const *in, void *out,
                                    const dsr_parallel *parallel) {
  const dsr_tensor *yt = &model->tensors[node->output];
  copy_job job = {.src = in[0], .dst = out};
  job.bytes = (size_t)dsr_tensor_elements(yt) * element_bytes(yt->qparams.dtype);
  if (job.dst == job.src)
    return 1; /* the planner gave the output the input's bytes */
  if (job.dst < job.src + job.bytes && job.src < job.dst + job.bytes)
    return 0; /* partial overlap: the reference's memmove handles it */
  /* About four operations per line. */
  int64_t lines = (int64_t)((job.bytes + COPY_LINE_BYTES - 1) / COPY_LINE_BYTES);
  dsr_parallel_for(parallel, lines, 4, 1, copy_range, &job);
  return 1;
}
