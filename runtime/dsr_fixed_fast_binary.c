/*
 * Optimized ADD, SUB and MUL for the fixed-point runtime, bit-identical to the matching
 * branches of run_elementwise in dsr_fixed.c.
 *
 * The output is walked in rows: the last axis, merged with the axes before it while both
 * operands stay contiguous (or broadcast) across them. Each operand's rescaled row is computed
 * into scratch first: through a 256-entry table for int8, with one dsr_fixed_requant32 per
 * element for int16, and once for a whole row that the operand broadcasts. The rescaling is a
 * pure function of the element, so computing it once per broadcast row gives the reference's
 * values. Then one pass adds the rows and requantizes. MUL takes the same path with q - zero
 * as the operand value and the product of the rows.
 *
 * Rows longer than ROW_PIECE elements are processed in pieces of ROW_PIECE.
 *
 * Scratch layout: int32 a_piece[piece], b_piece[piece] and sum[piece], where
 * piece = min(ROW_PIECE, output elements).
 */
#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"

typedef struct binary_operand {
  const void *data;
  int32_t dtype, zero;
  const int32_t *pair;           /* rescale pair; NULL: the value is q - zero (MUL) */
  int64_t strides[DSR_MAX_RANK]; /* element strides over the output axes, 0 if broadcast */
  int32_t table[256];            /* int8 only: rescaled value of q + 128 */
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

/*
 * Rescaled operand value: requant32((q - zero) * 2^left_shift) with the operand's pair.
 * |q - zero| <= 2^15 and left_shift 15 (2^8 and 20 for int8 pairs) keep the product under
 * 2^31, as in the reference.
 */
static int32_t rescale(int32_t q, int32_t zero, int32_t left_shift, const int32_t *pair) {
  if (pair == NULL)
    return q - zero;
  return dsr_fixed_requant32((q - zero) * (1 << left_shift), pair[0], pair[1]);
}

static void operand_init(const dsr_tensor *t, const dsr_tensor *yt, const void *data,
                         const int32_t *pair, int32_t left_shift, binary_operand *op) {
  op->data = data;
  op->dtype = t->qparams.dtype;
  op->zero = t->qparams.zero_point;
  op->pair = pair;
  operand_strides(t, yt, op->strides);
  for (int32_t v = -128; v <= 127 && op->dtype == DSR_DTYPE_I8; v++)
    op->table[v + 128] = rescale(v, op->zero, left_shift, pair);
}

/* Writes the rescaled values of count elements from offset (stride 0 or 1) into row. */
static void rescale_row(const binary_operand *op, int64_t offset, int64_t stride, int64_t count,
                        int32_t left_shift, int32_t *row) {
  if (stride == 0) {
    int32_t q = dsr_fixed_load(op->data, op->dtype, offset);
    int32_t r = op->dtype == DSR_DTYPE_I8 ? op->table[q + 128]
                                          : rescale(q, op->zero, left_shift, op->pair);
    for (int64_t i = 0; i < count; i++)
      row[i] = r;
  } else if (op->dtype == DSR_DTYPE_I8) {
    const int8_t *src = (const int8_t *)op->data + offset;
    for (int64_t i = 0; i < count; i++)
      row[i] = op->table[src[i] + 128];
  } else {
    const int16_t *src = (const int16_t *)op->data + offset;
    if (op->pair == NULL) {
      for (int64_t i = 0; i < count; i++)
        row[i] = src[i] - op->zero;
      return;
    }
    for (int64_t i = 0; i < count; i++)
      row[i] = (src[i] - op->zero) * (1 << left_shift);
    dsr_fixed_requant_row32(row, count, op->pair, 0, row);
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
 * them. ADD and SUB: each rescaled value lies in [-2^30, 2^30), operands in [-2^30, 2^30)
 * times factors below 1, so the sum or difference fits int32, as in the reference. MUL: int16
 * operands have zero point 0, so |a * b| <= 2^30, and int8 ones give at most 255 * 255.
 */
static void combine_row(const int32_t *ra, const int32_t *rb, int32_t *sum, int64_t count,
                        int32_t op, const int32_t *pair, int32_t y_zero, int32_t y_dtype,
                        int64_t offset, void *out) {
  if (op == DSR_OP_SUB) {
    for (int64_t i = 0; i < count; i++)
      sum[i] = ra[i] - rb[i];
  } else if (op == DSR_OP_MUL) {
    for (int64_t i = 0; i < count; i++)
      sum[i] = ra[i] * rb[i];
  } else {
    for (int64_t i = 0; i < count; i++)
      sum[i] = ra[i] + rb[i];
  }
  dsr_fixed_requant_row32(sum, count, pair, 0, sum);
  dsr_fixed_store_row(sum, count, y_zero, y_dtype, out, offset);
}

int dsr_fixed_fast_binary(const dsr_model *model, const dsr_node *node,
                          const void *const *in, void *out, uint8_t *scratch) {
  const dsr_tensor *yt = &model->tensors[node->output];
  if (yt->rank < 1 || dsr_tensor_elements(yt) < 1)
    return 0;
  const int32_t *q = node->qwords;
  binary_operand a, b;
  int multiply = node->op == DSR_OP_MUL;
  if (node->op != DSR_OP_ADD && node->op != DSR_OP_SUB && !multiply)
    return 0;
  /* MUL has no left shift or operand pairs: [tag, pair]. */
  int32_t left_shift = multiply ? 0 : q[1];
  const int32_t *out_pair = multiply ? q + 1 : q + 6;
  operand_init(&model->tensors[node->inputs[0]], yt, in[0], multiply ? NULL : q + 2, left_shift,
               &a);
  operand_init(&model->tensors[node->inputs[1]], yt, in[1], multiply ? NULL : q + 4, left_shift,
               &b);
  int64_t row_len;
  int32_t lead_axes = merge_row(yt, &a, &b, &row_len);
  int64_t a_row_stride = a.strides[yt->rank - 1], b_row_stride = b.strides[yt->rank - 1];
  size_t row_bytes = round8((size_t)row_capacity(yt) * sizeof(int32_t));
  int32_t *ra = (int32_t *)scratch;
  int32_t *rb = (int32_t *)(scratch + row_bytes);
  int32_t *sum = (int32_t *)(scratch + 2 * row_bytes);

  int32_t counter[DSR_MAX_RANK] = {0};
  int64_t ia = 0, ib = 0;
  /* A row that fits one piece and starts where the previous one did (an operand broadcast
   * over the leading axes) keeps its rescaled values from that row. */
  int64_t a_done = -1, b_done = -1;
  int64_t rows = dsr_tensor_elements(yt) / row_len;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t start = 0; start < row_len; start += ROW_PIECE) {
      int64_t count = row_len - start < ROW_PIECE ? row_len - start : ROW_PIECE;
      int reuse = row_len <= ROW_PIECE;
      if (!reuse || ia != a_done)
        rescale_row(&a, ia + start * a_row_stride, a_row_stride, count, left_shift, ra);
      if (!reuse || ib != b_done)
        rescale_row(&b, ib + start * b_row_stride, b_row_stride, count, left_shift, rb);
      a_done = reuse ? ia : -1;
      b_done = reuse ? ib : -1;
      combine_row(ra, rb, sum, count, node->op, out_pair, yt->qparams.zero_point,
                  yt->qparams.dtype, r * row_len + start, out);
    }
    /* Next row: advance the leading axes like an odometer. */
    for (int32_t k = lead_axes - 1; k >= 0; k--) {
      counter[k]++;
      ia += a.strides[k];
      ib += b.strides[k];
      if (counter[k] < yt->dims[k])
        break;
      ia -= a.strides[k] * yt->dims[k];
      ib -= b.strides[k] * yt->dims[k];
      counter[k] = 0;
    }
  }
  return 1;
}
