/*
 * Optimized ADD, SUB and MUL for the fixed-point runtime, bit-identical to the matching
 * branches of run_elementwise in dsr_fixed.c.
 *
 * The output is walked in rows: the last axis, merged with the axes before it while both
 * operands stay contiguous (or broadcast) across them. Each operand's rescaled row is computed
 * into scratch first, in a loop without branches that vectorizes. It is the reference's
 * dsr_fixed_requant32 of (q - zero) * 2^left, an exact shift for the halving pair that the
 * quantizer gives one operand, and a single value for a whole row that the operand
 * broadcasts. The rescaling is a pure function of the element, so computing it once per
 * broadcast row gives the reference's values. Then one pass adds the rows, requantizes and
 * stores them. MUL takes the same path with q - zero as the operand value and the product
 * of the rows.
 *
 * Rows longer than ROW_PIECE elements are processed in pieces of ROW_PIECE, and the pieces
 * are split between the tasks of the parallel hook.
 *
 * Scratch layout, once per task: int32 a_piece[piece], b_piece[piece] and sum[piece], where
 * piece = min(ROW_PIECE, output elements).
 */
#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"

typedef struct binary_operand {
  const void *data;
  int32_t dtype, zero;
  const int32_t *pair;           /* rescale pair; NULL: the value is q - zero (MUL) */
  int64_t strides[DSR_MAX_RANK]; /* element strides over the output axes, 0 if broadcast */
} binary_operand;

static size_t round8(size_t bytes) { return (bytes + 7) / 8 * 8; }

/* Elements of a row processed at once: small enough for the first cache level. */
#define ROW_PIECE 1024

/* Elements one scratch row holds. */
static int64_t row_capacity(const dsr_tensor *yt) {
  int64_t count = dsr_tensor_elements(yt);
  return count < ROW_PIECE ? count : ROW_PIECE;
}

size_t dsr_fixed_fast_binary_scratch_bytes(const dsr_model *model, const dsr_node *node) {
  if (node->output < 0 || node->output >= model->tensor_count)
    return 0;
  const dsr_tensor *yt = &model->tensors[node->output];
  if (yt->rank < 1)
    return 0;
  return 3 * round8((size_t)row_capacity(yt) * sizeof(int32_t));
}

/* Element strides of t over the output axes (numpy broadcasting): 0 for a broadcast or
 * missing axis. */
static void operand_strides(const dsr_tensor *t, const dsr_tensor *yt, int64_t *strides) {
  int64_t stride = 1;
  for (int32_t k = yt->rank - 1; k >= 0; k--) {
    int32_t axis = k - (yt->rank - t->rank);
    strides[k] = axis < 0 || t->dims[axis] == 1 ? 0 : stride;
    if (axis >= 0)
      stride *= t->dims[axis];
  }
}

/* The pair (2^30, 0) halves: requant of an even x is exactly x / 2, with no rounding. The
 * quantizer gives it to the operand with the larger scale. */
static int pair_halves(const int32_t *pair) { return pair[0] == (1 << 30) && pair[1] == 0; }

/*
 * Rescaled operand value: requant32((q - zero) * 2^left_shift) with the operand's pair.
 * |q - zero| <= 2^15 and left_shift 15 (2^8 and 20 for int8 pairs) keep the product under
 * 2^31, as in the reference. The operand shifts are <= 0 (plan-time check).
 */
static int32_t rescale(int32_t q, int32_t zero, int32_t left_shift, const int32_t *pair) {
  if (pair == NULL)
    return q - zero;
  return dsr_fixed_requant32((q - zero) * (1 << left_shift), pair[0], pair[1]);
}

static void operand_init(const dsr_tensor *t, const dsr_tensor *yt, const void *data,
                         const int32_t *pair, binary_operand *op) {
  op->data = data;
  op->dtype = t->qparams.dtype;
  op->zero = t->qparams.zero_point;
  op->pair = pair;
  operand_strides(t, yt, op->strides);
}

/* The rescaled values of count contiguous int8 (or int16) elements. With a pair, x =
 * (q - zero) * 2^left, and a halving pair gives x / 2 = (q - zero) * 2^(left - 1) exactly;
 * left >= 1 for ADD and SUB. Without a pair (MUL) the value is q - zero. */
DSR_FIXED_VECTOR_CLONES
static void rescale_i8(const int8_t *src, int64_t count, int32_t zero, int32_t left,
                       const int32_t *pair, int32_t *row) {
  if (pair == NULL) {
    for (int64_t i = 0; i < count; i++)
      row[i] = src[i] - zero;
  } else if (pair_halves(pair)) {
    for (int64_t i = 0; i < count; i++)
      row[i] = (src[i] - zero) * (1 << (left - 1));
  } else {
    dsr_fixed_rescale_row_i8(src, count, zero, left, pair[0], -pair[1], row);
  }
}

DSR_FIXED_VECTOR_CLONES
static void rescale_i16(const int16_t *src, int64_t count, int32_t zero, int32_t left,
                        const int32_t *pair, int32_t *row) {
  if (pair == NULL) {
    for (int64_t i = 0; i < count; i++)
      row[i] = src[i] - zero;
  } else if (pair_halves(pair)) {
    for (int64_t i = 0; i < count; i++)
      row[i] = (src[i] - zero) * (1 << (left - 1));
  } else {
    dsr_fixed_rescale_row_i16(src, count, zero, left, pair[0], -pair[1], row);
  }
}

/* Writes the rescaled values of count elements from offset (stride 0 or 1) into row. */
static void rescale_row(const binary_operand *op, int64_t offset, int64_t stride, int64_t count,
                        int32_t left_shift, int32_t *row) {
  if (stride == 0) {
    int32_t q = dsr_fixed_load(op->data, op->dtype, offset);
    int32_t r = rescale(q, op->zero, left_shift, op->pair);
    for (int64_t i = 0; i < count; i++)
      row[i] = r;
  } else if (op->dtype == DSR_DTYPE_I8) {
    rescale_i8((const int8_t *)op->data + offset, count, op->zero, left_shift, op->pair, row);
  } else {
    rescale_i16((const int16_t *)op->data + offset, count, op->zero, left_shift, op->pair, row);
  }
}

/*
 * Merges trailing output axes into one row while each operand is contiguous (row stride 1)
 * or broadcast (row stride 0) across them. Returns the number of leading axes left.
 */
static int32_t merge_row(const dsr_tensor *yt, const binary_operand *a,
                         const binary_operand *b, int64_t *row_len) {
  int32_t k = yt->rank - 1;
  *row_len = yt->dims[k];
  while (k > 0) {
    int ok = 1;
    for (int32_t i = 0; i < 2; i++) {
      const int64_t *s = i == 0 ? a->strides : b->strides;
      int64_t row_stride = s[yt->rank - 1];
      ok &= row_stride == 0 ? s[k - 1] == 0 : s[k - 1] == *row_len;
    }
    if (!ok)
      break;
    k--;
    *row_len *= yt->dims[k];
  }
  return k;
}

/*
 * Combines the operand rows into sum (ADD, SUB or MUL), then requantizes with pair and stores
 * them. ADD and SUB: each rescaled value lies in [-2^30, 2^30) (operands below 2^31 times
 * factors up to 1/2), so the sum fits int32, as in the reference. MUL: int16
 * operands have zero point 0, so |a * b| <= 2^30, and int8 ones give at most 255 * 255.
 */
static void combine_row(const int32_t *ra, int32_t *rb, int32_t *sum, int64_t count, int32_t op,
                        const int32_t *pair, int32_t y_zero, int32_t y_dtype, int64_t offset,
                        void *out) {
  if (op == DSR_OP_SUB) {
    /* |rb| < 2^30, so the negation is exact and ra - rb = ra + (-rb). */
    for (int64_t i = 0; i < count; i++)
      rb[i] = -rb[i];
  }
  if (op != DSR_OP_MUL && pair[1] <= 0 &&
      (y_dtype == DSR_DTYPE_I8 || y_dtype == DSR_DTYPE_I16)) {
    dsr_fixed_add_store_row(ra, rb, count, pair[0], -pair[1], y_zero, y_dtype, out, offset);
    return;
  }
  if (op == DSR_OP_MUL) {
    for (int64_t i = 0; i < count; i++)
      sum[i] = ra[i] * rb[i];
  } else {
    for (int64_t i = 0; i < count; i++)
      sum[i] = ra[i] + rb[i];
  }
  dsr_fixed_requant_store_row(sum, count, pair, 0, y_zero, y_dtype, out, offset);
}

typedef struct binary_job {
  const dsr_tensor *yt;
  const dsr_node *node;
  binary_operand a, b;
  const int32_t *out_pair;
  void *out;
  uint8_t *scratch;
  size_t slot_bytes, row_bytes;
  int32_t left_shift, lead_axes;
  int64_t row_len, pieces_per_row;
} binary_job;

/* Element offsets of the operands at the start of output row r (over the leading axes). */
static void row_offsets(const binary_job *job, int64_t r, int64_t *ia, int64_t *ib) {
  *ia = 0;
  *ib = 0;
  for (int32_t k = job->lead_axes - 1; k >= 0; k--) {
    int64_t coord = r % job->yt->dims[k];
    r /= job->yt->dims[k];
    *ia += coord * job->a.strides[k];
    *ib += coord * job->b.strides[k];
  }
}

/*
 * The pieces [begin, end) of the output, piece u being piece u % pieces_per_row of row
 * u / pieces_per_row, with the scratch slot of task_index.
 */
static void binary_range(void *context, int64_t begin, int64_t end, int32_t task_index) {
  const binary_job *job = context;
  uint8_t *slot = job->scratch + (size_t)task_index * job->slot_bytes;
  int32_t *ra = (int32_t *)slot;
  int32_t *rb = (int32_t *)(slot + job->row_bytes);
  int32_t *sum = (int32_t *)(slot + 2 * job->row_bytes);
  int64_t a_row_stride = job->a.strides[job->yt->rank - 1];
  int64_t b_row_stride = job->b.strides[job->yt->rank - 1];
  int reuse = job->row_len <= ROW_PIECE;
  /* A row that fits one piece and starts where the previous one did (an operand broadcast
   * over the leading axes) keeps its rescaled values from that row. SUB negates rb in place,
   * so only ra is kept there. */
  int keep_b = reuse && job->node->op != DSR_OP_SUB;
  int64_t a_done = -1, b_done = -1;
  for (int64_t u = begin; u < end; u++) {
    int64_t r = u / job->pieces_per_row;
    int64_t start = (u - r * job->pieces_per_row) * ROW_PIECE;
    int64_t count = job->row_len - start < ROW_PIECE ? job->row_len - start : ROW_PIECE;
    int64_t ia, ib;
    row_offsets(job, r, &ia, &ib);
    if (!reuse || ia != a_done)
      rescale_row(&job->a, ia + start * a_row_stride, a_row_stride, count, job->left_shift, ra);
    if (!keep_b || ib != b_done)
      rescale_row(&job->b, ib + start * b_row_stride, b_row_stride, count, job->left_shift, rb);
    a_done = reuse ? ia : -1;
    b_done = keep_b ? ib : -1;
    combine_row(ra, rb, sum, count, job->node->op, job->out_pair, job->yt->qparams.zero_point,
                job->yt->qparams.dtype, r * job->row_len + start, job->out);
  }
}

int dsr_fixed_fast_binary_parallel(const dsr_model *model, const dsr_node *node,
                                   const void *const *in, void *out, uint8_t *scratch,
                                   size_t slot_bytes, const dsr_parallel *parallel) {
  const dsr_tensor *yt = &model->tensors[node->output];
  if (yt->rank < 1 || dsr_tensor_elements(yt) < 1)
    return 0;
  int multiply = node->op == DSR_OP_MUL;
  if (node->op != DSR_OP_ADD && node->op != DSR_OP_SUB && !multiply)
    return 0;
  const int32_t *q = node->qwords;
  binary_job job = {.yt = yt, .node = node, .out = out, .scratch = scratch,
                    .slot_bytes = slot_bytes};
  /* MUL has no left shift or operand pairs: [tag, pair]. */
  job.left_shift = multiply ? 0 : q[1];
  job.out_pair = multiply ? q + 1 : q + 6;
  operand_init(&model->tensors[node->inputs[0]], yt, in[0], multiply ? NULL : q + 2, &job.a);
  operand_init(&model->tensors[node->inputs[1]], yt, in[1], multiply ? NULL : q + 4, &job.b);
  job.lead_axes = merge_row(yt, &job.a, &job.b, &job.row_len);
  job.row_bytes = round8((size_t)row_capacity(yt) * sizeof(int32_t));
  job.pieces_per_row = (job.row_len + ROW_PIECE - 1) / ROW_PIECE;
  int64_t rows = dsr_tensor_elements(yt) / job.row_len;
  /* About 12 operations per element of a piece: two rescales, the sum, the requantization
   * and the store. */
  int64_t piece_ops = 12 * (job.row_len < ROW_PIECE ? job.row_len : ROW_PIECE);
  dsr_parallel_for(parallel, rows * job.pieces_per_row, piece_ops, 1, binary_range, &job);
  return 1;
}

int dsr_fixed_fast_binary(const dsr_model *model, const dsr_node *node, const void *const *in,
                          void *out, uint8_t *scratch) {
  return dsr_fixed_fast_binary_parallel(model, node, in, out, scratch, 0, NULL);
}
