/*
 * Optimized MATMUL for the fixed-point runtime, bit-identical to run_matmul in dsr_fixed.c.
 *
 * For each batch, the A block (m x k) and the transposed B block (n x k) are copied into int16
 * scratch with their zero points subtracted. An int8 activation minus its zero point lies in
 * [-255, 255]. An int16 activation has zero point 0, and an int8 constant has none. Every
 * output is then a dot product of two contiguous int16 rows. Where rows of B are at least as
 * long as the reduction (n >= k), B stays untransposed and each output row is accumulated
 * instead: k passes add a[i][t] * b[t][:] to an int32 row of n sums, which keeps the loops
 * long when k is short. A block that the next batch shares through broadcasting is not copied
 * again. Integer sums do not depend on the order of their terms as long as no partial sum
 * overflows, so the results equal the reference ones.
 *
 * Scratch layout (each part a multiple of 8 bytes): int16 a[m][k], int16 b[n][k] (transposed)
 * or b[k][n], int32 acc[n], int64 acc_wide[n], once per task of the parallel hook. Tasks take
 * shares of the batches, or of the rows of a single batch.
 */
#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"
#include "quant/dsq_params.h"

typedef struct matmul_geometry {
  int32_t m, n, k;
  int64_t batches;
  int32_t kind;             /* DSQ_MATMUL_* */
  int32_t a_dtype, b_dtype; /* I8 for a constant operand */
  int32_t a_zero, b_zero;   /* 0 for a constant operand */
  int wide;                 /* an int16 operand: the reference sums in 64 bits */
  int32_t chunk_terms;      /* wide only: terms one int32 partial sum may take */
  int rows;                 /* accumulate output rows (n >= k) rather than dot products */
  int order;                /* MATMUL_* below */
} matmul_geometry;

/* Loop orders. The int8 ones read A (and B for DIRECT_ROWS) in place, without copies. */
enum {
  MATMUL_ROWS,        /* int16 copies, output rows accumulated (wide, n >= k) */
  MATMUL_DOTS,        /* int16 copies, one dot product per output (wide, n < k) */
  MATMUL_DOTS4,       /* int8: int16 copies, dot products of 4 columns at once */
  MATMUL_DIRECT_ROWS, /* int8, m = 1: output row accumulated from the int8 rows of B */
  MATMUL_DIRECT_DOTS  /* int8, n < 8: int8 rows of A against a transposed int16 copy of B */
};

static size_t round8(size_t bytes) { return (bytes + 7) / 8 * 8; }

/* Largest |v - zero| of an operand: 128 for an int8 constant, 255 for an int8 activation,
 * 32768 for an int16 activation. */
static int64_t operand_max(int32_t dtype, int constant) {
  if (dtype != DSR_DTYPE_I8)
    return 32768;
  return constant ? 128 : 255;
}

/* Fills g from node; returns 0 for a shape this kernel leaves to the reference one. */
static int geometry_init(const dsr_model *model, const dsr_node *node, matmul_geometry *g) {
  const dsr_tensor *at = &model->tensors[node->inputs[0]];
  const dsr_tensor *bt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  if (at->rank < 2 || bt->rank < 2 || yt->rank < 2 || node->qword_count < 2)
    return 0;
  g->m = yt->dims[yt->rank - 2];
  g->n = yt->dims[yt->rank - 1];
  g->k = at->dims[at->rank - 1];
  if (g->m < 1 || g->n < 1 || g->k < 1)
    return 0;
  g->batches = dsr_tensor_elements(yt) / ((int64_t)g->m * g->n);
  g->kind = node->qwords[1];
  int constant_a = g->kind == DSQ_MATMUL_CONSTANT_A, constant_b = g->kind == DSQ_MATMUL_CONSTANT_B;
  g->a_dtype = constant_a ? DSR_DTYPE_I8 : at->qparams.dtype;
  g->b_dtype = constant_b ? DSR_DTYPE_I8 : bt->qparams.dtype;
  g->a_zero = constant_a ? 0 : at->qparams.zero_point;
  g->b_zero = constant_b ? 0 : bt->qparams.zero_point;
  g->wide = g->a_dtype != DSR_DTYPE_I8 || g->b_dtype != DSR_DTYPE_I8;
  /* At least 1: |a * b| <= 32768 * 32768 = 2^30 fits int32 on its own. */
  g->chunk_terms = (int32_t)(INT32_MAX / (operand_max(g->a_dtype, constant_a) *
                                          operand_max(g->b_dtype, constant_b)));
  g->rows = g->n >= g->k;
  if (g->wide)
    g->order = g->rows ? MATMUL_ROWS : MATMUL_DOTS;
  else if (g->m == 1)
    g->order = MATMUL_DIRECT_ROWS;
  else if (g->n < 8)
    g->order = MATMUL_DIRECT_DOTS;
  else
    g->order = MATMUL_DOTS4;
  return 1;
}

/* Bytes of each scratch part, in layout order. */
static void scratch_parts(const matmul_geometry *g, size_t parts[4]) {
  parts[0] = round8((size_t)g->m * (size_t)g->k * sizeof(int16_t));
  parts[1] = round8((size_t)g->n * (size_t)g->k * sizeof(int16_t));
  /* DIRECT_DOTS keeps a whole m x n block (n < 8) to requantize it at once. */
  size_t acc_count = g->order == MATMUL_DIRECT_DOTS ? (size_t)g->m * (size_t)g->n : (size_t)g->n;
  parts[2] = round8(acc_count * sizeof(int32_t));
  parts[3] = round8((size_t)g->n * sizeof(int64_t));
}

size_t dsr_fixed_fast_matmul_scratch_bytes_for_workers(const dsr_model *model,
                                                       const dsr_node *node,
                                                       int32_t worker_count) {
  matmul_geometry g;
  if (node->input_count < 2 || node->inputs[1] < 0 || node->inputs[1] >= model->tensor_count ||
      node->output < 0 || node->output >= model->tensor_count || node->qwords == NULL ||
      !geometry_init(model, node, &g))
    return 0;
  size_t parts[4];
  scratch_parts(&g, parts);
  return (parts[0] + parts[1] + parts[2] + parts[3]) * (size_t)(worker_count < 1 ? 1 : worker_count);
}

size_t dsr_fixed_fast_matmul_scratch_bytes(const dsr_model *model, const dsr_node *node) {
  return dsr_fixed_fast_matmul_scratch_bytes_for_workers(model, node, 1);
}

/* Copies rows x cols elements of src (dtype, from offset) into dst minus zero, transposed
 * (dst[c][r] = src[r][c]) when transpose is set. */
static void load_block(const void *src, int32_t dtype, int32_t zero, int64_t offset, int32_t rows,
                       int32_t cols, int transpose, int16_t *dst) {
  for (int32_t r = 0; r < rows; r++) {
    int64_t step = transpose ? rows : 1;
    int16_t *out = dst + (transpose ? r : (int64_t)r * cols);
    int64_t base = offset + (int64_t)r * cols;
    if (dtype == DSR_DTYPE_I8) {
      const int8_t *row = (const int8_t *)src + base;
      for (int32_t c = 0; c < cols; c++)
        out[c * step] = (int16_t)(row[c] - zero); /* in [-255, 255] */
    } else {
      const int16_t *row = (const int16_t *)src + base;
      for (int32_t c = 0; c < cols; c++)
        out[c * step] = row[c]; /* int16 activations have zero point 0 */
    }
  }
}

/* First requant pair of output row i and the stride between the pairs of its columns. */
static const int32_t *row_pairs(const dsr_node *node, const matmul_geometry *g, int32_t i,
                                int32_t *pair_stride) {
  *pair_stride = g->kind == DSQ_MATMUL_CONSTANT_B ? 2 : 0;
  if (g->kind == DSQ_MATMUL_CONSTANT_B)
    return node->qwords + 3;
  if (g->kind == DSQ_MATMUL_CONSTANT_A)
    return node->qwords + 3 + 2 * i;
  return node->qwords + 2;
}

/* Requantizes output row i (acc_wide when wide, else acc) into acc and stores it. */
static void store_row(const dsr_node *node, const matmul_geometry *g, int32_t i, int32_t *acc,
                      const int64_t *acc_wide, const dsr_tensor *yt, int64_t offset, void *out) {
  int32_t pair_stride;
  const int32_t *pairs = row_pairs(node, g, i, &pair_stride);
  if (g->wide)
    dsr_fixed_requant_row64(acc_wide, g->n, pairs, pair_stride, acc);
  else
    dsr_fixed_requant_row32(acc, g->n, pairs, pair_stride, acc);
  dsr_fixed_store_row(acc, g->n, yt->qparams.zero_point, yt->qparams.dtype, out, offset);
}

/*
 * Dot-product order: the m x n outputs of one batch from a and the transposed b. Narrow sums:
 * dsr_fixed_check_node bounds k * 255 * 255 (activations) or k * 255 * 128 (a constant
 * operand) by 2^31 - 1. Wide sums: chunk_terms products of at most INT32_MAX / chunk_terms.
 */
static void multiply_dots(const dsr_node *node, const matmul_geometry *g, const int16_t *a,
                          const int16_t *b_t, int32_t row_begin, int32_t row_end, int32_t *acc,
                          int64_t *acc_wide, const dsr_tensor *yt, int64_t y_base, void *out) {
  for (int32_t i = row_begin; i < row_end; i++) {
    const int16_t *a_row = a + (int64_t)i * g->k;
    for (int32_t j = 0; j < g->n; j++) {
      const int16_t *b_row = b_t + (int64_t)j * g->k;
      if (g->wide)
        acc_wide[j] = dsr_fixed_dot16_wide(a_row, b_row, g->k, g->chunk_terms);
      else
        acc[j] = dsr_fixed_dot16(a_row, b_row, g->k);
    }
    store_row(node, g, i, acc, acc_wide, yt, y_base + (int64_t)i * g->n, out);
  }
}
/* acc[j] += value * b_row[j] over a row of n. Terms are at most 2^30 (int16 x int16). */
DSR_FIXED_VECTOR_CLONES
static void add_scaled_row(int32_t *restrict acc, const int16_t *restrict b_row, int32_t value,
                           int32_t n) {
  for (int32_t j = 0; j < n; j++)
    acc[j] += value * b_row[j];
}

/* acc[j] += sum over r < 4 of values[r] * rows[r * n + j]: four rows of b per pass, for int8
 * operands, whose partial sums the narrow bound covers. */
DSR_FIXED_VECTOR_CLONES
static void add_scaled_rows4(int32_t *restrict acc, const int16_t *restrict rows,
                             const int16_t *values, int32_t n) {
  const int16_t *r0 = rows, *r1 = rows + n, *r2 = r1 + n, *r3 = r2 + n;
  int32_t v0 = values[0], v1 = values[1], v2 = values[2], v3 = values[3];
  for (int32_t j = 0; j < n; j++)
    acc[j] += v0 * r0[j] + v1 * r1[j] + v2 * r2[j] + v3 * r3[j];
}

/* Adds the 32-bit partial sums into the 64-bit ones and clears them. */
static void flush_wide(int32_t *acc, int64_t *acc_wide, int32_t n) {
  for (int32_t j = 0; j < n; j++) {
    acc_wide[j] += acc[j];
    acc[j] = 0;
  }
}

/*
 * Row order: the m x n outputs of one batch from a and the untransposed b. Narrow sums have
 * the bound of multiply_dots. Wide sums pass through acc every chunk_terms terms, each at most
 * INT32_MAX / chunk_terms, so acc cannot overflow.
 */
static void multiply_rows(const dsr_node *node, const matmul_geometry *g, const int16_t *a,
                          const int16_t *b, int32_t row_begin, int32_t row_end, int32_t *acc,
                          int64_t *acc_wide, const dsr_tensor *yt, int64_t y_base, void *out) {
  for (int32_t i = row_begin; i < row_end; i++) {
    const int16_t *a_row = a + (int64_t)i * g->k;
    for (int32_t j = 0; j < g->n; j++) {
      acc[j] = 0;
      acc_wide[j] = 0;
    }
    int32_t pending = 0;
    int32_t t = 0;
    for (; !g->wide && t + 4 <= g->k; t += 4)
      add_scaled_rows4(acc, b + (int64_t)t * g->n, a_row + t, g->n);
    for (; t < g->k; t++) {
      if (a_row[t] != 0)
        add_scaled_row(acc, b + (int64_t)t * g->n, a_row[t], g->n);
      if (g->wide && ++pending == g->chunk_terms) {
        flush_wide(acc, acc_wide, g->n);
        pending = 0;
      }
    }
    if (g->wide)
      flush_wide(acc, acc_wide, g->n);
    store_row(node, g, i, acc, acc_wide, yt, y_base + (int64_t)i * g->n, out);
  }
}

/* Sum over count of (a[t] - a_zero) * b[t]: an int8 row against an int16 row. The narrow
 * bound of multiply_dots covers every partial sum. */
DSR_FIXED_VECTOR_CLONES
static int32_t dot8x16(const int8_t *restrict a, int32_t a_zero, const int16_t *restrict b,
                       int32_t count) {
  int32_t acc = 0;
  for (int32_t t = 0; t < count; t++)
    acc += (a[t] - a_zero) * b[t];
  return acc;
}

/* acc[j] += sum over r < 4 of values[r] * (b[r * stride + j] - b_zero) for int8 rows of B.
 * Terms are at most 255 * 255, within the narrow bound. */
DSR_FIXED_VECTOR_CLONES
static void add_scaled_rows8x4(int32_t *restrict acc, const int8_t *restrict b, int64_t stride,
                               const int32_t *values, int32_t b_zero, int32_t n) {
  const int8_t *r0 = b, *r1 = b + stride, *r2 = r1 + stride, *r3 = r2 + stride;
  int32_t v0 = values[0], v1 = values[1], v2 = values[2], v3 = values[3];
  for (int32_t j = 0; j < n; j++)
    acc[j] += v0 * (r0[j] - b_zero) + v1 * (r1[j] - b_zero) + v2 * (r2[j] - b_zero) +
              v3 * (r3[j] - b_zero);
}

DSR_FIXED_VECTOR_CLONES
static void add_scaled_row8(int32_t *restrict acc, const int8_t *restrict b, int32_t value,
                            int32_t b_zero, int32_t n) {
  for (int32_t j = 0; j < n; j++)
    acc[j] += value * (b[j] - b_zero);
}

/* DOTS4 order: rows row_begin..row_end - 1 of one batch from the int16 copy of A and the
 * transposed copy of B, four columns per pass. The narrow bound covers each sum. */
static void multiply_dots4(const dsr_node *node, const matmul_geometry *g, const int16_t *a,
                           const int16_t *b_t, int32_t row_begin, int32_t row_end, int32_t *acc,
                           const dsr_tensor *yt, int64_t y_base, void *out) {
  for (int32_t i = row_begin; i < row_end; i++) {
    const int16_t *a_row = a + (int64_t)i * g->k;
    int32_t j = 0;
    for (; j + 4 <= g->n; j += 4)
      dsr_fixed_dot16x4(a_row, b_t + (int64_t)j * g->k, g->k, acc + j);
    for (; j < g->n; j++)
      acc[j] = dsr_fixed_dot16(a_row, b_t + (int64_t)j * g->k, g->k);
    store_row(node, g, i, acc, NULL, yt, y_base + (int64_t)i * g->n, out);
  }
}

/* DIRECT_DOTS order: rows of one batch, the int8 rows of A read in place at a8 against the
 * transposed int16 copy of B. */
static void multiply_direct_dots(const dsr_node *node, const matmul_geometry *g, const int8_t *a8,
                                 const int16_t *b_t, int32_t row_begin, int32_t row_end,
                                 int32_t *acc, const dsr_tensor *yt, int64_t y_base, void *out) {
  if (g->kind == DSQ_MATMUL_ACTIVATIONS) {
    /* One requant pair for every output: the rows' outputs are contiguous, so they are
     * requantized and stored as one row. */
    int32_t *block = acc;
    for (int32_t i = row_begin; i < row_end; i++) {
      const int8_t *a_row = a8 + (int64_t)i * g->k;
      for (int32_t j = 0; j < g->n; j++)
        block[(int64_t)(i - row_begin) * g->n + j] =
            dot8x16(a_row, g->a_zero, b_t + (int64_t)j * g->k, g->k);
    }
    int64_t count = (int64_t)(row_end - row_begin) * g->n;
    dsr_fixed_requant_row32(block, count, node->qwords + 2, 0, block);
    dsr_fixed_store_row(block, count, yt->qparams.zero_point, yt->qparams.dtype, out,
                        y_base + (int64_t)row_begin * g->n);
    return;
  }
  for (int32_t i = row_begin; i < row_end; i++) {
    const int8_t *a_row = a8 + (int64_t)i * g->k;
    for (int32_t j = 0; j < g->n; j++)
      acc[j] = dot8x16(a_row, g->a_zero, b_t + (int64_t)j * g->k, g->k);
    store_row(node, g, i, acc, NULL, yt, y_base + (int64_t)i * g->n, out);
  }
}

/* DIRECT_ROWS order: rows of one batch from the int8 rows of A and B read in place. */
static void multiply_direct_rows(const dsr_node *node, const matmul_geometry *g,
                                 const int8_t *a8, const int8_t *b8, int32_t row_begin,
                                 int32_t row_end, int32_t *acc, const dsr_tensor *yt,
                                 int64_t y_base, void *out) {
  for (int32_t i = row_begin; i < row_end; i++) {
    const int8_t *a_row = a8 + (int64_t)i * g->k;
    for (int32_t j = 0; j < g->n; j++)
      acc[j] = 0;
    int32_t t = 0;
    for (; t + 4 <= g->k; t += 4) {
      int32_t values[4] = {a_row[t] - g->a_zero, a_row[t + 1] - g->a_zero,
                           a_row[t + 2] - g->a_zero, a_row[t + 3] - g->a_zero};
      add_scaled_rows8x4(acc, b8 + (int64_t)t * g->n, g->n, values, g->b_zero, g->n);
    }
    for (; t < g->k; t++) {
      int32_t value = a_row[t] - g->a_zero;
      if (value != 0)
        add_scaled_row8(acc, b8 + (int64_t)t * g->n, value, g->b_zero, g->n);
    }
    store_row(node, g, i, acc, NULL, yt, y_base + (int64_t)i * g->n, out);
  }
}

/* Scratch of one task: the copied blocks and the accumulator rows. */
typedef struct matmul_slot {
  int16_t *a, *b;
  int32_t *acc;
  int64_t *acc_wide;
} matmul_slot;

static matmul_slot slot_at(uint8_t *scratch, const size_t parts[4], int32_t index) {
  uint8_t *base = scratch + (parts[0] + parts[1] + parts[2] + parts[3]) * (size_t)index;
  matmul_slot slot = {(int16_t *)base, (int16_t *)(base + parts[0]),
                      (int32_t *)(base + parts[0] + parts[1]),
                      (int64_t *)(base + parts[0] + parts[1] + parts[2])};
  return slot;
}

/*
 * Work of the tasks. With at least as many batches as tasks, each task takes a share of the
 * batches and copies its own blocks. Otherwise the caller copies one batch's blocks into slot
 * 0 and each task computes a share of its rows.
 */
typedef struct matmul_job {
  const dsr_node *node;
  const matmul_geometry *g;
  const dsr_tensor *at, *bt, *yt;
  const void *const *in;
  void *out;
  uint8_t *scratch;
  size_t parts[4];
  int32_t task_count;
  int split_batches;
  int64_t batch; /* the batch whose rows are split */
} matmul_job;

/* Copies the blocks that the order needs for batch into slot, skipping a block that the
 * previous batch of this slot shared through broadcasting. */
static void load_batch(const matmul_job *job, const matmul_slot *slot, int64_t batch,
                       int64_t *a_loaded, int64_t *b_loaded) {
  const matmul_geometry *g = job->g;
  int64_t a_base = dsr_fixed_batch_offset(job->at, job->yt, batch);
  int64_t b_base = dsr_fixed_batch_offset(job->bt, job->yt, batch);
  int copy_a = g->order == MATMUL_ROWS || g->order == MATMUL_DOTS || g->order == MATMUL_DOTS4;
  int copy_b = g->order != MATMUL_DIRECT_ROWS;
  if (copy_a && a_base != *a_loaded)
    load_block(job->in[0], g->a_dtype, g->a_zero, a_base, g->m, g->k, 0, slot->a);
  if (copy_b && b_base != *b_loaded)
    load_block(job->in[1], g->b_dtype, g->b_zero, b_base, g->k, g->n,
               g->order != MATMUL_ROWS, slot->b);
  *a_loaded = a_base;
  *b_loaded = b_base;
}

/* Rows row_begin..row_end - 1 of batch, from the blocks in blocks (loaded by load_batch) and
 * the accumulators of own. */
static void multiply_range(const matmul_job *job, const matmul_slot *blocks,
                           const matmul_slot *own, int64_t batch, int32_t row_begin,
                           int32_t row_end) {
  const matmul_geometry *g = job->g;
  int64_t y_base = batch * g->m * g->n;
  const int8_t *a8 = (const int8_t *)job->in[0] + dsr_fixed_batch_offset(job->at, job->yt, batch);
  const int8_t *b8 = (const int8_t *)job->in[1] + dsr_fixed_batch_offset(job->bt, job->yt, batch);
  switch (g->order) {
  case MATMUL_ROWS:
    multiply_rows(job->node, g, blocks->a, blocks->b, row_begin, row_end, own->acc,
                  own->acc_wide, job->yt, y_base, job->out);
    break;
  case MATMUL_DOTS:
    multiply_dots(job->node, g, blocks->a, blocks->b, row_begin, row_end, own->acc,
                  own->acc_wide, job->yt, y_base, job->out);
    break;
  case MATMUL_DOTS4:
    multiply_dots4(job->node, g, blocks->a, blocks->b, row_begin, row_end, own->acc, job->yt,
                   y_base, job->out);
    break;
  case MATMUL_DIRECT_DOTS:
    multiply_direct_dots(job->node, g, a8, blocks->b, row_begin, row_end, own->acc, job->yt,
                         y_base, job->out);
    break;
  default:
    multiply_direct_rows(job->node, g, a8, b8, row_begin, row_end, own->acc, job->yt, y_base,
                         job->out);
    break;
  }
}

static void matmul_task(void *context, int32_t task_index) {
  const matmul_job *job = context;
  const matmul_geometry *g = job->g;
  matmul_slot own = slot_at(job->scratch, job->parts, task_index);
  int64_t begin, end;
  if (job->split_batches) {
    dsr_parallel_share(g->batches, job->task_count, task_index, 1, &begin, &end);
    int64_t a_loaded = -1, b_loaded = -1;
    for (int64_t batch = begin; batch < end; batch++) {
      load_batch(job, &own, batch, &a_loaded, &b_loaded);
      multiply_range(job, &own, &own, batch, 0, g->m);
    }
    return;
  }
  matmul_slot blocks = slot_at(job->scratch, job->parts, 0);
  dsr_parallel_share(g->m, job->task_count, task_index, 1, &begin, &end);
  multiply_range(job, &blocks, &own, job->batch, (int32_t)begin, (int32_t)end);
}

int dsr_fixed_fast_matmul_parallel(const dsr_model *model, const dsr_node *node,
                                   const void *const *in, void *out, uint8_t *scratch,
                                   const dsr_parallel *parallel) {
  matmul_geometry g;
  if (!geometry_init(model, node, &g))
    return 0;
  matmul_job job = {.node = node, .g = &g, .at = &model->tensors[node->inputs[0]],
                    .bt = &model->tensors[node->inputs[1]], .yt = &model->tensors[node->output],
                    .in = in, .out = out, .scratch = scratch};
  scratch_parts(&g, job.parts);
  int64_t matrix_ops = (int64_t)g.m * g.n * g.k;
  job.task_count = dsr_parallel_tasks(parallel, g.batches, matrix_ops);
  if (job.task_count > 1 || g.batches > 1) {
    /* Batches are split whenever there are enough of them for every worker. */
    job.split_batches = 1;
    dsr_parallel_run(parallel, matmul_task, &job, job.task_count);
    return 1;
  }
  job.task_count = dsr_parallel_tasks(parallel, g.m, (int64_t)g.n * g.k);
  matmul_slot blocks = slot_at(scratch, job.parts, 0);
  int64_t a_loaded = -1, b_loaded = -1;
  load_batch(&job, &blocks, 0, &a_loaded, &b_loaded);
  job.batch = 0;
  dsr_parallel_run(parallel, matmul_task, &job, job.task_count);
  return 1;
}

int dsr_fixed_fast_matmul(const dsr_model *model, const dsr_node *node, const void *const *in,
                          void *out, uint8_t *scratch) {
  return dsr_fixed_fast_matmul_parallel(model, node, in, out, scratch, NULL);
}
