/*
 * Optimized MATMUL for the fixed-point runtime, bit-identical to run_matmul in dsr_fixed.c.
 *
 * Products of two int8 operands (activations with zero points, constants without) go through
 * the packed product of dsr_gemm.h. A is packed as rows and B as 16-column panels. The kernel
 * returns the exact int32 sums of (a - a_zero) * (b - b_zero), which are requantized and
 * stored row by row. dsr_fixed_check_node bounds k * 255 * 255 (two activations) or
 * k * 255 * 128 (one constant) by 2^31 - 1, the bound dsr_gemm needs. A packed block that the
 * next batch shares through broadcasting (a weight matrix) is not packed again.
 *
 * Products with an int16 operand (zero point 0) need 64-bit sums in the reference. Their A
 * block (m x k) and B block are copied into int16 scratch, B transposed (n x k) so that every
 * output is a dot product of two contiguous rows, or, where rows of B are at least as long as
 * the reduction (n >= k), left untransposed and each output row accumulated instead: k passes
 * add a[i][t] * b[t][:] to an int32 row of n sums, flushed into 64 bits every chunk_terms
 * terms. Integer sums do not depend on the order of their terms as long as no partial sum
 * overflows, so the results equal the reference ones.
 *
 * Scratch of one task, each part rounded up to 64 bytes:
 *   int8 products:  packed A rows, packed B panels, int32 c[ROW_BLOCK][n]
 *   int16 products: int16 a[m][k], int16 b[n][k] or b[k][n], int32 acc[n], int64 acc_wide[n]
 * Tasks take shares of the batches. A single batch is packed by all tasks together (B's
 * panels and A's rows split between them) and then split by rows, or by panels when it has
 * too few rows for every task.
 */
#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"
#include "dsr_gemm.h"
#include "quant/dsq_params.h"

/* Rows of A whose int32 sums one task keeps at a time: a multiple of dsr_gemm's row tile. */
#define ROW_BLOCK 48

typedef struct matmul_geometry {
  int32_t m, n, k;
  int64_t batches;
  int32_t kind;             /* DSQ_MATMUL_* */
  int32_t a_dtype, b_dtype; /* I8 for a constant operand */
  int32_t a_zero, b_zero;   /* 0 for a constant operand */
  int32_t chunk_terms;      /* int16 orders: terms one int32 partial sum may take */
  int order;                /* MATMUL_* below */
  dsr_gemm gemm;            /* MATMUL_PACKED: A as packed rows, B as panels */
} matmul_geometry;

/* Loop orders. */
enum {
  MATMUL_PACKED,      /* two int8 operands: dsr_gemm */
  MATMUL_DIRECT_ROWS, /* int8, m = 1: output row accumulated from the int8 rows of B */
  MATMUL_DIRECT_DOTS, /* int8, n < 16: int8 rows of A against a transposed int16 copy of B */
  MATMUL_MATVEC,      /* int8, n = 1: dsr_gemm_matvec of A and the column B, read in place */
  MATMUL_ROWS,        /* an int16 operand, n >= k: int16 copies, output rows accumulated */
  MATMUL_DOTS         /* an int16 operand, n < k: int16 copies, one dot product per output */
};

static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

static int32_t min32(int32_t a, int32_t b) { return a < b ? a : b; }

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

  /* When every batch shares one B and A has a matrix per batch, the batches are consecutive
   * rows of one product: (1,7,7,768) x (768,3072) has 49 rows, not 7 batches of 7 rows that
   * would each stream all of B. A constant A keeps its batches, since its requant pairs
   * follow the row within a batch. */
  int64_t b_matrices = dsr_tensor_elements(bt) / ((int64_t)g->k * g->n);
  int64_t a_matrices = dsr_tensor_elements(at) / ((int64_t)g->m * g->k);
  if (g->batches > 1 && b_matrices == 1 && a_matrices == g->batches &&
      g->kind != DSQ_MATMUL_CONSTANT_A &&
      g->batches * g->m <= INT32_MAX / 16) {
    g->m = (int32_t)(g->batches * g->m);
    g->batches = 1;
  }
  int constant_a = g->kind == DSQ_MATMUL_CONSTANT_A, constant_b = g->kind == DSQ_MATMUL_CONSTANT_B;
  g->a_dtype = constant_a ? DSR_DTYPE_I8 : at->qparams.dtype;
  g->b_dtype = constant_b ? DSR_DTYPE_I8 : bt->qparams.dtype;
  g->a_zero = constant_a ? 0 : at->qparams.zero_point;
  g->b_zero = constant_b ? 0 : bt->qparams.zero_point;
  /* At least 1: |a * b| <= 32768 * 32768 = 2^30 fits int32 on its own. */
  g->chunk_terms = (int32_t)(INT32_MAX / (operand_max(g->a_dtype, constant_a) *
                                          operand_max(g->b_dtype, constant_b)));
  /* A single row, or fewer columns than one panel, would spend more time packing than
   * multiplying: those products of the windowed attention read their operands in place. */
  if (g->a_dtype == DSR_DTYPE_I8 && g->b_dtype == DSR_DTYPE_I8)
    g->order = g->m == 1 ? MATMUL_DIRECT_ROWS
               : g->n == 1 ? MATMUL_MATVEC
               : g->n < DSR_GEMM_PANEL_COLUMNS ? MATMUL_DIRECT_DOTS
                                               : MATMUL_PACKED;
  else
    g->order = g->n >= g->k ? MATMUL_ROWS : MATMUL_DOTS;
  /* The activation operand is stored unsigned; with a constant A that is B. */
  dsr_gemm gemm = {g->m, g->n, g->k, g->a_zero, g->b_zero, !constant_a};
  g->gemm = gemm;
  return 1;
}

/* Bytes of each scratch part of one task, in layout order. */
static void scratch_parts(const matmul_geometry *g, size_t parts[4]) {
  if (g->order == MATMUL_PACKED) {
    parts[0] = round64(dsr_gemm_rows_bytes(&g->gemm));
    parts[1] = round64(dsr_gemm_columns_bytes(&g->gemm));
    parts[2] = round64((size_t)min32(g->m, ROW_BLOCK) * (size_t)g->n * sizeof(int32_t));
    parts[3] = 0;
    return;
  }
  if (g->order == MATMUL_DIRECT_ROWS || g->order == MATMUL_DIRECT_DOTS ||
      g->order == MATMUL_MATVEC) {
    /* DIRECT_DOTS and MATVEC keep a whole m x n block (n < 16) to requantize it at once. */
    int dots = g->order != MATMUL_DIRECT_ROWS;
    parts[0] = 0;
    parts[1] = g->order == MATMUL_DIRECT_DOTS
                   ? round64((size_t)g->n * (size_t)g->k * sizeof(int16_t))
                   : 0;
    parts[2] = round64((size_t)(dots ? g->m : 1) * (size_t)g->n * sizeof(int32_t));
    parts[3] = 0;
    return;
  }
  parts[0] = round64((size_t)g->m * (size_t)g->k * sizeof(int16_t));
  parts[1] = round64((size_t)g->n * (size_t)g->k * sizeof(int16_t));
  parts[2] = round64((size_t)g->n * sizeof(int32_t));
  parts[3] = round64((size_t)g->n * sizeof(int64_t));
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
  /* 64 more bytes let the slots start on a cache line whatever the scratch address. */
  return (parts[0] + parts[1] + parts[2] + parts[3]) * (size_t)(worker_count < 1 ? 1 : worker_count) +
         64;
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

/* Requantizes the columns [j_begin, j_end) of output row i from their int32 sums in acc (which
 * may be overwritten) and stores them into the row at row_offset of out. */
static void store_columns(const dsr_node *node, const matmul_geometry *g, int32_t i,
                          int32_t *acc, int32_t j_begin, int32_t j_end, const dsr_tensor *yt,
                          int64_t row_offset, void *out) {
  int32_t pair_stride;
  const int32_t *pairs = row_pairs(node, g, i, &pair_stride);
  dsr_fixed_requant_store_row(acc, j_end - j_begin, pairs + (int64_t)j_begin * pair_stride,
                              pair_stride, yt->qparams.zero_point, yt->qparams.dtype, out,
                              row_offset + j_begin);
}

/* Requantizes output row i from its 64-bit sums and stores it. acc receives the values. */
static void store_row_wide(const dsr_node *node, const matmul_geometry *g, int32_t i,
                           int32_t *acc, const int64_t *acc_wide, const dsr_tensor *yt,
                           int64_t offset, void *out) {
  int32_t pair_stride;
  const int32_t *pairs = row_pairs(node, g, i, &pair_stride);
  dsr_fixed_requant_row64(acc_wide, g->n, pairs, pair_stride, acc);
  dsr_fixed_store_row(acc, g->n, yt->qparams.zero_point, yt->qparams.dtype, out, offset);
}

/*
 * Dot-product order: the m x n outputs of one batch from a and the transposed b, each sum of
 * chunk_terms products (at most INT32_MAX / chunk_terms each) taken in 32 bits.
 */
static void multiply_dots(const dsr_node *node, const matmul_geometry *g, const int16_t *a,
                          const int16_t *b_t, int32_t row_begin, int32_t row_end, int32_t *acc,
                          int64_t *acc_wide, const dsr_tensor *yt, int64_t y_base, void *out) {
  for (int32_t i = row_begin; i < row_end; i++) {
    const int16_t *a_row = a + (int64_t)i * g->k;
    for (int32_t j = 0; j < g->n; j++) {
      const int16_t *b_row = b_t + (int64_t)j * g->k;
      acc_wide[j] = dsr_fixed_dot16_wide(a_row, b_row, g->k, g->chunk_terms);
    }
    store_row_wide(node, g, i, acc, acc_wide, yt, y_base + (int64_t)i * g->n, out);
  }
}
/* acc[j] += value * b_row[j] over a row of n. Terms are at most 2^30 (int16 x int16). */
DSR_FIXED_VECTOR_CLONES
static void add_scaled_row(int32_t *restrict acc, const int16_t *restrict b_row, int32_t value,
                           int32_t n) {
  for (int32_t j = 0; j < n; j++)
    acc[j] += value * b_row[j];
}

/* Adds the 32-bit partial sums into the 64-bit ones and clears them. */
static void flush_wide(int32_t *acc, int64_t *acc_wide, int32_t n) {
  for (int32_t j = 0; j < n; j++) {
    acc_wide[j] += acc[j];
    acc[j] = 0;
  }
}

/*
 * Row order: the m x n outputs of one batch from a and the untransposed b. The sums pass
 * through acc every chunk_terms terms, each at most INT32_MAX / chunk_terms, so acc cannot
 * overflow.
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
    for (int32_t t = 0; t < g->k; t++) {
      if (a_row[t] != 0)
        add_scaled_row(acc, b + (int64_t)t * g->n, a_row[t], g->n);
      if (++pending == g->chunk_terms) {
        flush_wide(acc, acc_wide, g->n);
        pending = 0;
      }
    }
    flush_wide(acc, acc_wide, g->n);
    store_row_wide(node, g, i, acc, acc_wide, yt, y_base + (int64_t)i * g->n, out);
  }
}

/* Sum over count of (a[t] - a_zero) * b[t]: an int8 row against an int16 row. dsr_fixed_check_node
 * bounds every partial sum by k * 255 * 255 <= 2^31 - 1. */
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
    dsr_fixed_requant_store_row(block, count, node->qwords + 2, 0, yt->qparams.zero_point,
                                yt->qparams.dtype, out, y_base + (int64_t)row_begin * g->n);
    return;
  }
  for (int32_t i = row_begin; i < row_end; i++) {
    const int8_t *a_row = a8 + (int64_t)i * g->k;
    for (int32_t j = 0; j < g->n; j++)
      acc[j] = dot8x16(a_row, g->a_zero, b_t + (int64_t)j * g->k, g->k);
    store_columns(node, g, i, acc, 0, g->n, yt, y_base + (int64_t)i * g->n, out);
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
    store_columns(node, g, i, acc, 0, g->n, yt, y_base + (int64_t)i * g->n, out);
  }
}

/* MATVEC order: rows [row_begin, row_end) of one batch, whose outputs are contiguous. */
static void multiply_matvec(const dsr_node *node, const matmul_geometry *g, const int8_t *a8,
                            const int8_t *b8, int32_t row_begin, int32_t row_end, int32_t *block,
                            const dsr_tensor *yt, int64_t y_base, void *out) {
  int32_t rows = row_end - row_begin;
  dsr_gemm_matvec(a8 + (int64_t)row_begin * g->k, rows, g->k, g->a_zero, b8, g->b_zero, block);
  /* One pair for all rows, except a constant A, which has one per row. */
  const int32_t *pairs = node->qwords + (g->kind == DSQ_MATMUL_ACTIVATIONS ? 2 : 3);
  int32_t pair_stride = 0;
  if (g->kind == DSQ_MATMUL_CONSTANT_A) {
    pairs += 2 * row_begin;
    pair_stride = 2;
  }
  dsr_fixed_requant_store_row(block, rows, pairs, pair_stride, yt->qparams.zero_point,
                              yt->qparams.dtype, out, y_base + row_begin);
}

/*
 * Packed order: rows [row_begin, row_end) and panels [panel_begin, panel_end) of one batch
 * from the packed operands, ROW_BLOCK rows at a time through the int32 block c.
 */
static void multiply_packed(const dsr_node *node, const matmul_geometry *g,
                            const uint8_t *packed_rows, const uint8_t *packed_columns,
                            int32_t row_begin, int32_t row_end, int32_t panel_begin,
                            int32_t panel_end, int32_t *c, const dsr_tensor *yt, int64_t y_base,
                            void *out) {
  int32_t j_begin = panel_begin * DSR_GEMM_PANEL_COLUMNS;
  int32_t j_end = min32(panel_end * DSR_GEMM_PANEL_COLUMNS, g->n);
  for (int32_t i0 = row_begin; i0 < row_end; i0 += ROW_BLOCK) {
    int32_t i1 = min32(i0 + ROW_BLOCK, row_end);
    dsr_gemm_run(&g->gemm, packed_rows, packed_columns, i0, i1, panel_begin, panel_end, c, g->n);
    for (int32_t i = i0; i < i1; i++)
      store_columns(node, g, i, c + (int64_t)(i - i0) * g->n + j_begin, j_begin, j_end, yt,
                    y_base + (int64_t)i * g->n, out);
  }
}

/* Scratch parts of one task: packed rows, packed panels and c (packed order), or the int16
 * copies and accumulator rows (int16 orders). */
typedef struct matmul_slot {
  uint8_t *part[4];
} matmul_slot;

static matmul_slot slot_at(uint8_t *scratch, const size_t parts[4], int32_t index) {
  uint8_t *base = scratch + (parts[0] + parts[1] + parts[2] + parts[3]) * (size_t)index;
  matmul_slot slot = {{base, base + parts[0], base + parts[0] + parts[1],
                       base + parts[0] + parts[1] + parts[2]}};
  return slot;
}

/*
 * Work of the tasks. With more than one batch, each task takes a share of the batches and
 * packs or copies its own blocks. A single batch is prepared by the caller (int16 orders) or
 * packed by all tasks into slot 0 (packed order), then split between the tasks by rows, or
 * by panels when split_panels is set.
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
  int split_panels;
  const uint8_t *packed_b; /* a constant B packed ahead by dsr_fixed_fast_matmul_pack, or NULL */
} matmul_job;

/* Packs (packed order) or copies (int16 orders) the blocks of batch into slot, skipping a
 * block that the previous batch of this slot shared through broadcasting. */
static void load_batch(const matmul_job *job, const matmul_slot *slot, int64_t batch,
                       int64_t *a_loaded, int64_t *b_loaded) {
  const matmul_geometry *g = job->g;
  int64_t a_base = dsr_fixed_batch_offset(job->at, job->yt, batch);
  int64_t b_base = dsr_fixed_batch_offset(job->bt, job->yt, batch);
  if (g->order == MATMUL_PACKED) {
    if (a_base != *a_loaded)
      dsr_gemm_pack_rows(&g->gemm, (const int8_t *)job->in[0] + a_base, g->k, 1, 0, g->m,
                         slot->part[0]);
    if (b_base != *b_loaded && job->packed_b == NULL)
      dsr_gemm_pack_columns(&g->gemm, (const int8_t *)job->in[1] + b_base, g->n, 1, 0,
                            dsr_gemm_panels(&g->gemm), slot->part[1]);
  } else if (g->order == MATMUL_DIRECT_DOTS) {
    if (b_base != *b_loaded)
      load_block(job->in[1], g->b_dtype, g->b_zero, b_base, g->k, g->n, 1,
                 (int16_t *)slot->part[1]);
  } else if (g->order == MATMUL_ROWS || g->order == MATMUL_DOTS) {
    if (a_base != *a_loaded)
      load_block(job->in[0], g->a_dtype, g->a_zero, a_base, g->m, g->k, 0,
                 (int16_t *)slot->part[0]);
    if (b_base != *b_loaded)
      load_block(job->in[1], g->b_dtype, g->b_zero, b_base, g->k, g->n,
                 g->order != MATMUL_ROWS, (int16_t *)slot->part[1]);
  }
  *a_loaded = a_base;
  *b_loaded = b_base;
}

/* Rows [row_begin, row_end) and panels [panel_begin, panel_end) of batch, from the blocks in
 * blocks (loaded by load_batch) and the accumulators of own. The int16 orders take every
 * panel. */
static void multiply_range(const matmul_job *job, const matmul_slot *blocks,
                           const matmul_slot *own, int64_t batch, int32_t row_begin,
                           int32_t row_end, int32_t panel_begin, int32_t panel_end) {
  const matmul_geometry *g = job->g;
  int64_t y_base = batch * g->m * g->n;
  int32_t *acc = (int32_t *)own->part[2];
  int64_t *acc_wide = (int64_t *)own->part[3];
  const int8_t *a8 = (const int8_t *)job->in[0] + dsr_fixed_batch_offset(job->at, job->yt, batch);
  const int8_t *b8 = (const int8_t *)job->in[1] + dsr_fixed_batch_offset(job->bt, job->yt, batch);
  switch (g->order) {
  case MATMUL_DIRECT_ROWS:
    multiply_direct_rows(job->node, g, a8, b8, row_begin, row_end, acc, job->yt, y_base,
                         job->out);
    break;
  case MATMUL_MATVEC:
    multiply_matvec(job->node, g, a8, b8, row_begin, row_end, acc, job->yt, y_base, job->out);
    break;
  case MATMUL_DIRECT_DOTS:
    multiply_direct_dots(job->node, g, a8, (const int16_t *)blocks->part[1], row_begin, row_end,
                         acc, job->yt, y_base, job->out);
    break;
  case MATMUL_PACKED:
    multiply_packed(job->node, g, blocks->part[0],
                    job->packed_b != NULL ? job->packed_b : blocks->part[1], row_begin, row_end,
                    panel_begin, panel_end, acc, job->yt, y_base, job->out);
    break;
  case MATMUL_ROWS:
    multiply_rows(job->node, g, (const int16_t *)blocks->part[0],
                  (const int16_t *)blocks->part[1], row_begin, row_end, acc, acc_wide, job->yt,
                  y_base, job->out);
    break;
  default:
    multiply_dots(job->node, g, (const int16_t *)blocks->part[0],
                  (const int16_t *)blocks->part[1], row_begin, row_end, acc, acc_wide, job->yt,
                  y_base, job->out);
    break;
  }
}

static void matmul_task(void *context, int32_t task_index) {
  const matmul_job *job = context;
  const matmul_geometry *g = job->g;
  matmul_slot own = slot_at(job->scratch, job->parts, task_index);
  int32_t panels = dsr_gemm_panels(&g->gemm);
  int64_t begin, end;
  if (job->split_batches) {
    dsr_parallel_share(g->batches, job->task_count, task_index, 1, &begin, &end);
    int64_t a_loaded = -1, b_loaded = -1;
    for (int64_t batch = begin; batch < end; batch++) {
      load_batch(job, &own, batch, &a_loaded, &b_loaded);
      multiply_range(job, &own, &own, batch, 0, g->m, 0, panels);
    }
    return;
  }
  matmul_slot blocks = slot_at(job->scratch, job->parts, 0);
  if (job->split_panels) {
    dsr_parallel_share(panels, job->task_count, task_index, 1, &begin, &end);
    multiply_range(job, &blocks, &own, 0, 0, g->m, (int32_t)begin, (int32_t)end);
    return;
  }
  dsr_parallel_share(g->m, job->task_count, task_index, 1, &begin, &end);
  multiply_range(job, &blocks, &own, 0, (int32_t)begin, (int32_t)end, 0, panels);
}

/* Packed order, single batch: task task_index packs its share of B's panels and of A's rows
 * into slot 0. */
static void pack_task(void *context, int32_t task_index) {
  const matmul_job *job = context;
  const matmul_geometry *g = job->g;
  matmul_slot blocks = slot_at(job->scratch, job->parts, 0);
  int64_t begin, end;
  if (job->packed_b == NULL) {
    dsr_parallel_share(dsr_gemm_panels(&g->gemm), job->task_count, task_index, 1, &begin, &end);
    dsr_gemm_pack_columns(&g->gemm,
                          (const int8_t *)job->in[1] + dsr_fixed_batch_offset(job->bt, job->yt, 0),
                          g->n, 1, (int32_t)begin, (int32_t)end, blocks.part[1]);
  }
  dsr_parallel_share(g->m, job->task_count, task_index, 1, &begin, &end);
  dsr_gemm_pack_rows(&g->gemm, (const int8_t *)job->in[0] + dsr_fixed_batch_offset(job->at, job->yt, 0),
                     g->k, 1, (int32_t)begin, (int32_t)end, blocks.part[0]);
}

/* The packed order with a constant B that every batch shares: B can be packed ahead. */
static int packs_ahead(const dsr_model *model, const dsr_node *node, matmul_geometry *g) {
  if (node->input_count < 2 || node->inputs[1] < 0 || node->inputs[1] >= model->tensor_count ||
      node->output < 0 || node->output >= model->tensor_count || node->qwords == NULL ||
      !geometry_init(model, node, g))
    return 0;
  const dsr_tensor *bt = &model->tensors[node->inputs[1]];
  return g->order == MATMUL_PACKED && g->kind == DSQ_MATMUL_CONSTANT_B && bt->data_q != NULL &&
         dsr_tensor_elements(bt) == (int64_t)g->k * g->n;
}

size_t dsr_fixed_fast_matmul_packed_bytes(const dsr_model *model, const dsr_node *node) {
  matmul_geometry g;
  return packs_ahead(model, node, &g) ? dsr_gemm_columns_bytes(&g.gemm) : 0;
}

void dsr_fixed_fast_matmul_pack(const dsr_model *model, const dsr_node *node, uint8_t *packed) {
  matmul_geometry g;
  if (packs_ahead(model, node, &g))
    dsr_gemm_pack_columns(&g.gemm, model->tensors[node->inputs[1]].data_q, g.n, 1, 0,
                          dsr_gemm_panels(&g.gemm), packed);
}

int dsr_fixed_fast_matmul_parallel(const dsr_model *model, const dsr_node *node,
                                   const void *const *in, void *out, uint8_t *scratch,
                                   const dsr_parallel *parallel, const uint8_t *packed_b) {
  matmul_geometry g;
  if (!geometry_init(model, node, &g))
    return 0;
  uint8_t *aligned = scratch + (64 - (uintptr_t)scratch % 64) % 64;
  matmul_job job = {.node = node, .g = &g, .at = &model->tensors[node->inputs[0]],
                    .bt = &model->tensors[node->inputs[1]], .yt = &model->tensors[node->output],
                    .in = in, .out = out, .scratch = aligned,
                    .packed_b = g.order == MATMUL_PACKED ? packed_b : NULL};
  scratch_parts(&g, job.parts);
  int64_t matrix_ops = (int64_t)g.m * g.n * g.k;
  if (g.batches > 1) {
    job.task_count = dsr_parallel_tasks(parallel, g.batches, matrix_ops);
    job.split_batches = 1;
    dsr_parallel_run(parallel, matmul_task, &job, job.task_count);
    return 1;
  }

  if (g.order != MATMUL_PACKED) {
    job.task_count = dsr_parallel_tasks(parallel, g.m, (int64_t)g.n * g.k);
    matmul_slot blocks = slot_at(job.scratch, job.parts, 0);
    int64_t a_loaded = -1, b_loaded = -1;
    load_batch(&job, &blocks, 0, &a_loaded, &b_loaded);
    dsr_parallel_run(parallel, matmul_task, &job, job.task_count);
    return 1;
  }

  /* Rows are split where every task gets at least a block of them. Otherwise the panels are
   * split, so that each task streams only its share of B. */
  int32_t workers = dsr_parallel_workers(parallel);
  job.split_panels = g.m < ROW_BLOCK * workers;
  if (job.split_panels)
    job.task_count = dsr_parallel_tasks(parallel, dsr_gemm_panels(&g.gemm),
                                        (int64_t)g.m * g.k * DSR_GEMM_PANEL_COLUMNS);
  else
    job.task_count = dsr_parallel_tasks(parallel, g.m, (int64_t)g.n * g.k);
  dsr_parallel_run(parallel, pack_task, &job, job.task_count);
  dsr_parallel_run(parallel, matmul_task, &job, job.task_count);
  return 1;
}

int dsr_fixed_fast_matmul(const dsr_model *model, const dsr_node *node, const void *const *in,
                          void *out, uint8_t *scratch) {
  return dsr_fixed_fast_matmul_parallel(model, node, in, out, scratch, NULL, NULL);
}
