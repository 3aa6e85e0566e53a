/*
 * Optimized TRANSPOSE for the fixed-point runtime, byte-identical to run_transpose in
 * dsr_fixed.c: every output element is copied from the same input element.
 *
 * The output axes are first simplified: axes of size 1 are dropped, and neighbours that are
 * also neighbours in the input, in the same order, are merged. Then:
 *   - when the last output axis is the last input axis, each output row is one block copy
 *     (the head splits of attention);
 *   - when another output axis j is the last input axis, the copy is a batch of 2-D
 *     transposes between axis j and the last output axis (NCHW to NHWC and back). They run
 *     in TILE x TILE tiles, so both the reads and the writes stay within a few cache lines;
 *   - otherwise each output row is a strided copy.
 * The output is split into contiguous shares between the tasks of the parallel hook.
 */
#include <string.h>

#include "dsr_fixed_internal.h"

/* Side of a 2-D transpose tile, in elements. */
#define TILE 16

/* The transpose after simplification: output dims and input strides, in elements. */
typedef struct transpose_job {
  const uint8_t *src;
  uint8_t *dst;
  size_t elem_bytes;
  int32_t rank;
  int64_t dims[DSR_MAX_RANK];
  int64_t in_strides[DSR_MAX_RANK];
  int64_t out_strides[DSR_MAX_RANK];
  int32_t tile_axis; /* the output axis read with input stride 1, or -1 */
} transpose_job;

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

/* Input offset of the output element whose coordinates over the axes before stop_axis come
 * from index (row-major over those axes) and whose other coordinates are 0. Axes listed in
 * skip_axis (-1: none) count as size 1. */
static int64_t input_offset(const transpose_job *job, int64_t index, int32_t stop_axis,
                            int32_t skip_axis) {
  int64_t offset = 0;
  for (int32_t k = stop_axis - 1; k >= 0; k--) {
    if (k == skip_axis)
      continue;
    offset += index % job->dims[k] * job->in_strides[k];
    index /= job->dims[k];
  }
  return offset;
}

/* Copies one contiguous row of bytes, with a constant size for the short rows of head
 * splits. */
static inline void copy_row(uint8_t *to, const uint8_t *from, size_t bytes) {
  switch (bytes) {
  case 16:
    memcpy(to, from, 16);
    break;
  case 32:
    memcpy(to, from, 32);
    break;
  case 64:
    memcpy(to, from, 64);
    break;
  default:
    memcpy(to, from, bytes);
    break;
  }
}

/* Output rows [begin, end) (all axes but the last), one block or strided copy each. The
 * input offset of the next row comes from an odometer over the leading axes, set up once
 * from begin. */
static void rows_range(void *context, int64_t begin, int64_t end, int32_t task_index) {
  (void)task_index;
  const transpose_job *job = context;
  int32_t last = job->rank - 1;
  int64_t row = job->dims[last];
  size_t elem = job->elem_bytes;
  int64_t counter[DSR_MAX_RANK] = {0};
  int64_t offset = 0, index = begin;
  for (int32_t k = last - 1; k >= 0; k--) {
    counter[k] = index % job->dims[k];
    index /= job->dims[k];
    offset += counter[k] * job->in_strides[k];
  }
  for (int64_t r = begin; r < end; r++) {
    const uint8_t *from = job->src + offset * (int64_t)elem;
    uint8_t *to = job->dst + r * row * (int64_t)elem;
    if (job->in_strides[last] == 1)
      copy_row(to, from, (size_t)row * elem);
    else
      copy_strided(from, job->in_strides[last], row, elem, to);
    for (int32_t k = last - 1; k >= 0; k--) {
      counter[k]++;
      offset += job->in_strides[k];
      if (counter[k] < job->dims[k])
        break;
      offset -= job->in_strides[k] * job->dims[k];
      counter[k] = 0;
    }
  }
}

/* One tile: rows a (output stride out_stride, input stride 1) by columns b (output stride 1,
 * input stride in_stride). */
#define TILE_COPY(type)                                                                        \
  do {                                                                                         \
    const type *s = (const type *)from;                                                        \
    type *d = (type *)to;                                                                      \
    for (int64_t a = 0; a < rows; a++) {                                                       \
      for (int64_t b = 0; b < cols; b++)                                                       \
        d[a * out_stride + b] = s[a + b * in_stride];                                          \
    }                                                                                          \
  } while (0)

static void copy_tile(const uint8_t *from, int64_t in_stride, int64_t rows, int64_t cols,
                      uint8_t *to, int64_t out_stride, size_t elem_bytes) {
  if (elem_bytes == 1)
    TILE_COPY(int8_t);
  else if (elem_bytes == 2)
    TILE_COPY(int16_t);
  else
    TILE_COPY(int32_t);
}

/*
 * Strips [begin, end): strip u covers TILE positions of the tile axis j (u % strips_per_block
 * gives which) within the block u / strips_per_block of the other axes, and every position of
 * the last axis.
 */
static void tiles_range(void *context, int64_t begin, int64_t end, int32_t task_index) {
  (void)task_index;
  const transpose_job *job = context;
  int32_t last = job->rank - 1, j = job->tile_axis;
  int64_t size_j = job->dims[j], cols = job->dims[last];
  int64_t strips = (size_j + TILE - 1) / TILE;
  size_t elem = job->elem_bytes;
  /* Blocks run over the axes other than j and the last, row-major. The output offset of a
   * block: its coordinates times the output strides. */
  for (int64_t u = begin; u < end; u++) {
    int64_t block = u / strips, a0 = (u % strips) * TILE;
    int64_t in_base = input_offset(job, block, last, j);
    int64_t out_base = 0, index = block;
    for (int32_t k = last - 1; k >= 0; k--) {
      if (k == j)
        continue;
      out_base += index % job->dims[k] * job->out_strides[k];
      index /= job->dims[k];
    }
    int64_t rows = size_j - a0 < TILE ? size_j - a0 : TILE;
    in_base += a0; /* input stride 1 along j */
    out_base += a0 * job->out_strides[j];
    for (int64_t b0 = 0; b0 < cols; b0 += TILE) {
      int64_t width = cols - b0 < TILE ? cols - b0 : TILE;
      copy_tile(job->src + (in_base + b0 * job->in_strides[last]) * (int64_t)elem,
                job->in_strides[last], rows, width,
                job->dst + (out_base + b0) * (int64_t)elem, job->out_strides[j], elem);
    }
  }
}

/* Fills job with the simplified axes of the node's transpose. */
static void simplify(const dsr_tensor *xt, const dsr_tensor *yt, const int32_t *perm,
                     transpose_job *job) {
  int64_t x_strides[DSR_MAX_RANK];
  int64_t stride = 1;
  for (int32_t k = xt->rank - 1; k >= 0; k--) {
    x_strides[k] = stride;
    stride *= xt->dims[k];
  }
  job->rank = 0;
  for (int32_t k = 0; k < yt->rank; k++) {
    int64_t dim = yt->dims[k], in_stride = x_strides[perm[k]];
    if (dim == 1)
      continue;
    int32_t n = job->rank;
    if (n > 0 && job->in_strides[n - 1] == in_stride * dim) {
      job->dims[n - 1] *= dim;
      job->in_strides[n - 1] = in_stride;
      continue;
    }
    job->dims[n] = dim;
    job->in_strides[n] = in_stride;
    job->rank++;
  }
  if (job->rank == 0) {
    job->dims[0] = 1;
    job->in_strides[0] = 1;
    job->rank = 1;
  }
  stride = 1;
  for (int32_t k = job->rank - 1; k >= 0; k--) {
    job->out_strides[k] = stride;
    stride *= job->dims[k];
  }
  job->tile_axis = -1;
  for (int32_t k = 0; k + 1 < job->rank && job->in_strides[job->rank - 1] != 1; k++) {
    if (job->in_strides[k] == 1)
      job->tile_axis = k;
  }
}

int dsr_fixed_fast_transpose_parallel(const dsr_model *model, const dsr_node *node,
                                      const void *const *in, void *out,
                                      const dsr_parallel *parallel) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  if (yt->rank < 1 || dsr_tensor_elements(yt) < 1)
    return 0;
  int32_t dtype = yt->qparams.dtype;
  transpose_job job = {.src = in[0], .dst = out,
                       .elem_bytes = dtype == DSR_DTYPE_I8 ? 1 : (dtype == DSR_DTYPE_I16 ? 2 : 4)};
  simplify(xt, yt, node->attrs.transpose.perm, &job);
  int64_t total = dsr_tensor_elements(yt);
  int32_t last = job.rank - 1;
  if (job.tile_axis >= 0) {
    int64_t strips = (job.dims[job.tile_axis] + TILE - 1) / TILE;
    int64_t blocks = total / (job.dims[job.tile_axis] * job.dims[last]);
    /* About two operations per element of a strip. */
    dsr_parallel_for(parallel, blocks * strips, 2 * TILE * job.dims[last], 1, tiles_range,
                     &job);
    return 1;
  }
  dsr_parallel_for(parallel, total / job.dims[last], 2 * job.dims[last], 1, rows_range, &job);
  return 1;
}

int dsr_fixed_fast_transpose(const dsr_model *model, const dsr_node *node, const void *const *in,
                             void *out) {
  return dsr_fixed_fast_transpose_parallel(model, node, in, out, NULL);
}
