/*
 * Fixed-point reference kernels for every op except DEFORM_ATTN (dsr_fixed_deform.c), their
 * plan-time checks and scratch sizes.
 *
 * Each kernel reads activations in the dtype of their qparams (int8 with a zero point, or
 * int16 with zero point 0), weights as int8 data_q with per-channel scales, biases as int32
 * data_q, and its multipliers and tables from node.qwords (quant/dsq_params.h). Accumulators
 * are 32-bit when both MAC operands are int8 and 64-bit when one is int16; the 32-bit bound
 * is checked at plan time from the reduction length and the bias values.
 */
#include <string.h>

#include "dsr_fixed.h"
#include "dsr_fixed_internal.h"
#include "dsr_fixed_layout.h"
#include "dsr_fixed_math.h"
#include "quant/dsq_params.h"

static const char *const op_names[DSR_OP_COUNT] = {
    "?",         "CONV2D", "MATMUL",     "GEMM",    "ADD",       "SUB",
    "MUL",       "DIV",    "LAYER_NORM", "GELU",    "SOFTMAX",   "TRANSPOSE",
    "RESHAPE",   "GATHER", "GLOBAL_AVG_POOL",       "DEFORM_ATTN",
    "CONCAT",    "PAD"};

static const char *op_name(int32_t op) {
  return op > 0 && op < DSR_OP_COUNT ? op_names[op] : "unknown op";
}

/* ---------------------------------------------------------------- shared helpers */

static int32_t qdtype(const dsr_tensor *t) { return t->qparams.dtype; }

static int64_t elements(const dsr_tensor *t) { return dsr_tensor_elements(t); }

static size_t dtype_bytes(int32_t dtype) {
  return dtype == DSR_DTYPE_I8 ? 1 : (dtype == DSR_DTYPE_I16 ? 2 : 4);
}

static int32_t requant(int64_t acc, const int32_t *pair, int wide) {
  if (wide)
    return dsr_fixed_requant64(acc, pair[0], pair[1]);
  return dsr_fixed_requant32((int32_t)acc, pair[0], pair[1]);
}

/* Element strides of in, aligned to the trailing axes of out (numpy broadcasting): 0 for
 * a broadcast or missing axis. */
static void broadcast_strides(const dsr_tensor *in, const dsr_tensor *out,
                              int64_t strides[DSR_MAX_RANK]) {
  int64_t stride = 1;
  for (int32_t k = out->rank - 1; k >= 0; k--) {
    int32_t in_axis = k - (out->rank - in->rank);
    if (in_axis < 0) {
      strides[k] = 0;
      continue;
    }
    strides[k] = in->dims[in_axis] == 1 ? 0 : stride;
    stride *= in->dims[in_axis];
  }
}

int64_t dsr_fixed_batch_offset(const dsr_tensor *t, const dsr_tensor *out, int64_t batch) {
  int32_t out_batch_rank = out->rank - 2;
  int32_t t_batch_rank = t->rank - 2;
  int64_t matrix = (int64_t)t->dims[t->rank - 2] * t->dims[t->rank - 1];
  int64_t offset = 0;
  int64_t stride = matrix;
  for (int32_t k = out_batch_rank - 1; k >= 0; k--) {
    int64_t coord = batch % out->dims[k];
    batch /= out->dims[k];
    int32_t t_axis = k - (out_batch_rank - t_batch_rank);
    if (t_axis < 0)
      continue;
    if (t->dims[t_axis] != 1)
      offset += coord * stride;
    stride *= t->dims[t_axis];
  }
  return offset;
}

/* ---------------------------------------------------------------- kernels */

static void run_conv2d(const dsr_model *model, const dsr_node *node, const void *const *in,
                       void *out) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *wt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  const int8_t *w = in[1];
  const int32_t *bias = node->input_count > 2 && node->inputs[2] >= 0 ? in[2] : NULL;
  const dsr_conv_attrs *a = &node->attrs.conv;

  int32_t batch = xt->dims[0], cin = xt->dims[1], height = xt->dims[2], width = xt->dims[3];
  int32_t cout = yt->dims[1], out_h = yt->dims[2], out_w = yt->dims[3];
  int32_t kh = wt->dims[2], kw = wt->dims[3];
  int32_t cin_group = cin / a->group, cout_group = cout / a->group;
  int32_t x_dtype = qdtype(xt), y_dtype = qdtype(yt);
  int32_t x_zero = xt->qparams.zero_point, y_zero = yt->qparams.zero_point;
  int wide = x_dtype != DSR_DTYPE_I8;
  const int32_t *pairs = node->qwords + 2;

  int pointwise = kh == 1 && kw == 1 && a->stride[0] == 1 && a->stride[1] == 1 &&
                  a->pad[0] == 0 && a->pad[1] == 0 && out_h == height && out_w == width &&
                  x_dtype == DSR_DTYPE_I8;
  for (int32_t b = 0; b < batch; b++) {
    for (int32_t oc = 0; oc < cout && pointwise; oc++) {
      /* 1x1 convolution of int8 input: the same sums without padding tests or dispatch. */
      int64_t pixels = (int64_t)height * width;
      const int8_t *x = (const int8_t *)in[0] + ((int64_t)b * cin + oc / cout_group * cin_group) * pixels;
      const int8_t *wc = w + (int64_t)oc * cin_group;
      for (int64_t p = 0; p < pixels; p++) {
        int64_t acc = bias != NULL ? bias[oc] : 0;
        for (int32_t ic = 0; ic < cin_group; ic++)
          acc += (int64_t)(x[ic * pixels + p] - x_zero) * wc[ic];
        dsr_fixed_store(out, y_dtype, ((int64_t)b * cout + oc) * pixels + p,
                        y_zero + (int64_t)requant(acc, pairs + 2 * oc, wide));
      }
    }
    for (int32_t oc = 0; oc < cout && !pointwise; oc++) {
      int32_t g = oc / cout_group;
      const int8_t *wc = w + (int64_t)oc * cin_group * kh * kw;
      for (int32_t oy = 0; oy < out_h; oy++) {
        for (int32_t ox = 0; ox < out_w; ox++) {
          int64_t acc = bias != NULL ? bias[oc] : 0;
          for (int32_t ic = 0; ic < cin_group; ic++) {
            int64_t plane = ((int64_t)b * cin + g * cin_group + ic) * height * width;
            for (int32_t ky = 0; ky < kh; ky++) {
              int32_t iy = oy * a->stride[0] - a->pad[0] + ky * a->dilation[0];
              if (iy < 0 || iy >= height)
                continue; /* zero padding: real 0 contributes nothing */
              for (int32_t kx = 0; kx < kw; kx++) {
                int32_t ix = ox * a->stride[1] - a->pad[1] + kx * a->dilation[1];
                if (ix < 0 || ix >= width)
                  continue;
                int32_t xv = dsr_fixed_load(in[0], x_dtype, plane + (int64_t)iy * width + ix);
                acc += (int64_t)(xv - x_zero) * wc[((int64_t)ic * kh + ky) * kw + kx];
              }
            }
          }
          int64_t value = y_zero + (int64_t)requant(acc, pairs + 2 * oc, wide);
          dsr_fixed_store(out, y_dtype, (((int64_t)b * cout + oc) * out_h + oy) * out_w + ox,
                          value);
        }
      }
    }
  }
}

static void run_matmul(const dsr_model *model, const dsr_node *node, const void *const *in,
                       void *out) {
  const dsr_tensor *at = &model->tensors[node->inputs[0]];
  const dsr_tensor *bt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t m_count = yt->dims[yt->rank - 2], n_count = yt->dims[yt->rank - 1];
  int32_t k_count = at->dims[at->rank - 1];
  int64_t batches = elements(yt) / ((int64_t)m_count * n_count);
  int constant_b = node->qwords[1] == DSQ_MATMUL_CONSTANT_B;
  int constant_a = node->qwords[1] == DSQ_MATMUL_CONSTANT_A;
  int32_t a_dtype = constant_a ? DSR_DTYPE_I8 : qdtype(at);
  int32_t b_dtype = constant_b ? DSR_DTYPE_I8 : qdtype(bt);
  int32_t a_zero = constant_a ? 0 : at->qparams.zero_point;
  int32_t b_zero = constant_b ? 0 : bt->qparams.zero_point;
  int32_t y_dtype = qdtype(yt), y_zero = yt->qparams.zero_point;
  int wide = a_dtype != DSR_DTYPE_I8 || b_dtype != DSR_DTYPE_I8;

  for (int64_t batch = 0; batch < batches; batch++) {
    int64_t a_base = dsr_fixed_batch_offset(at, yt, batch);
    int64_t b_base = dsr_fixed_batch_offset(bt, yt, batch);
    int64_t y_base = batch * m_count * n_count;
    for (int32_t i = 0; i < m_count; i++) {
      for (int32_t j = 0; j < n_count; j++) {
        int64_t acc = 0;
        if (!wide) {
          /* Both int8 (the attention products): the same sum without per-element dispatch. */
          const int8_t *a_row = (const int8_t *)in[0] + a_base + (int64_t)i * k_count;
          const int8_t *b_col = (const int8_t *)in[1] + b_base + j;
          for (int32_t k = 0; k < k_count; k++)
            acc += (int64_t)(a_row[k] - a_zero) * (b_col[(int64_t)k * n_count] - b_zero);
        } else {
          for (int32_t k = 0; k < k_count; k++) {
            int32_t av = dsr_fixed_load(in[0], a_dtype, a_base + (int64_t)i * k_count + k);
            int32_t bv = dsr_fixed_load(in[1], b_dtype, b_base + (int64_t)k * n_count + j);
            acc += (int64_t)(av - a_zero) * (bv - b_zero);
          }
        }
        const int32_t *pair = node->qwords + 2;
        if (constant_b)
          pair = node->qwords + 3 + 2 * j;
        else if (constant_a)
          pair = node->qwords + 3 + 2 * i;
        dsr_fixed_store(out, y_dtype, y_base + (int64_t)i * n_count + j,
                        y_zero + (int64_t)requant(acc, pair, wide));
      }
    }
  }
}

/* Output columns one pass of gemm_row accumulates, in 64 int64 and 64 int32 stack slots. */
#define GEMM_COLUMN_BLOCK 64

/* Operands of one GEMM, unpacked once per call. */
typedef struct gemm_operands {
  const void *a;
  const int8_t *w;
  const int32_t *bias;  /* NULL when the node has none */
  const int32_t *pairs; /* one requant pair per output column */
  void *out;
  int64_t m_count;
  int32_t k_count, n_count;
  int32_t a_dtype, a_zero, y_dtype, y_zero;
  int wide;             /* 64-bit accumulators: a is int16 */
} gemm_operands;

/*
 * Output row i of a GEMM without transposes, GEMM_COLUMN_BLOCK columns at a time, so each
 * weight row (p, j0..j0 + 63) is read contiguously. int8 inputs accumulate in int32, which
 * cannot overflow because check_gemm requires K * 255 * 128 + max |bias| <= 2^31 - 1. The
 * sums are the exact integers of the int64 path.
 */
static void gemm_row(const gemm_operands *g, int64_t i) {
  const int8_t *a_row8 = (const int8_t *)g->a + i * g->k_count;
  for (int32_t j0 = 0; j0 < g->n_count; j0 += GEMM_COLUMN_BLOCK) {
    int32_t width = g->n_count - j0 < GEMM_COLUMN_BLOCK ? g->n_count - j0 : GEMM_COLUMN_BLOCK;
    int64_t acc[GEMM_COLUMN_BLOCK];
    int32_t acc32[GEMM_COLUMN_BLOCK];
    for (int32_t jj = 0; jj < width; jj++) {
      acc[jj] = g->bias != NULL ? g->bias[j0 + jj] : 0;
      acc32[jj] = (int32_t)acc[jj];
    }
    for (int32_t p = 0; p < g->k_count; p++) {
      const int8_t *w_row = g->w + (int64_t)p * g->n_count + j0;
      if (!g->wide) {
        int32_t xv = a_row8[p] - g->a_zero;
        for (int32_t jj = 0; jj < width; jj++)
          acc32[jj] += xv * w_row[jj];
      } else {
        int64_t xv = dsr_fixed_load(g->a, g->a_dtype, i * g->k_count + p) - g->a_zero;
        for (int32_t jj = 0; jj < width; jj++)
          acc[jj] += xv * w_row[jj];
      }
    }
    for (int32_t jj = 0; jj < width; jj++) {
      int64_t sum = g->wide ? acc[jj] : acc32[jj];
      int64_t value = g->y_zero + (int64_t)requant(sum, g->pairs + 2 * (j0 + jj), g->wide);
      dsr_fixed_store(g->out, g->y_dtype, i * g->n_count + j0 + jj, value);
    }
  }
}

/* One GEMM output with either operand transposed (a rank-2 ONNX Gemm such as a classifier
 * head). Element (i, p) of op(a) and (p, j) of op(b) are found through strides over the
 * stored layouts. */
static void gemm_element_transposed(const gemm_operands *g, int32_t trans_a, int32_t trans_b,
                                    int64_t i, int32_t j) {
  int64_t a_row_stride = trans_a ? 1 : g->k_count, a_col_stride = trans_a ? g->m_count : 1;
  int64_t b_row_stride = trans_b ? 1 : g->n_count, b_col_stride = trans_b ? g->k_count : 1;
  const int8_t *w_col = g->w + j * b_col_stride;
  int64_t acc = g->bias != NULL ? g->bias[j] : 0;
  for (int32_t p = 0; p < g->k_count; p++) {
    int32_t av = dsr_fixed_load(g->a, g->a_dtype, i * a_row_stride + p * a_col_stride);
    acc += (int64_t)(av - g->a_zero) * w_col[p * b_row_stride];
  }
  dsr_fixed_store(g->out, g->y_dtype, i * g->n_count + j,
                  g->y_zero + (int64_t)requant(acc, g->pairs + 2 * j, g->wide));
}

/*
 * GEMM with a constant int8 b: y[i][j] = z_y + requant(bias[j] + sum_p (a[i][p] - z_a) * w,
 * pair[j]). a is (M, K), or with trans_a 0 any rank >= 2 whose leading axes are the M rows
 * (the fused MatMul plus bias Add), so row i of a starts at i * K and row i of y at i * N.
 */
static void run_gemm(const dsr_model *model, const dsr_node *node, const void *const *in,
                     void *out) {
  const dsr_tensor *at = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t trans_a = node->attrs.gemm.trans_a, trans_b = node->attrs.gemm.trans_b;
  gemm_operands g;
  g.a = in[0];
  g.w = in[1];
  g.bias = node->input_count > 2 && node->inputs[2] >= 0 ? in[2] : NULL;
  g.pairs = node->qwords + 2;
  g.out = out;
  g.n_count = yt->dims[yt->rank - 1];
  g.m_count = g.n_count > 0 ? elements(yt) / g.n_count : 0;
  g.k_count = trans_a ? at->dims[0] : at->dims[at->rank - 1];
  g.a_dtype = qdtype(at);
  g.a_zero = at->qparams.zero_point;
  g.y_dtype = qdtype(yt);
  g.y_zero = yt->qparams.zero_point;
  g.wide = g.a_dtype != DSR_DTYPE_I8;

  for (int64_t i = 0; i < g.m_count; i++) {
    if (!trans_a && !trans_b) {
      gemm_row(&g, i);
      continue;
    }
    for (int32_t j = 0; j < g.n_count; j++)
      gemm_element_transposed(&g, trans_a, trans_b, i, j);
  }
}

/* ADD, SUB, MUL and DIV: one broadcast loop, the arithmetic chosen per op. */
static void run_elementwise(const dsr_model *model, const dsr_node *node,
                            const void *const *in, void *out) {
  const dsr_tensor *at = &model->tensors[node->inputs[0]];
  const dsr_tensor *bt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int64_t a_strides[DSR_MAX_RANK], b_strides[DSR_MAX_RANK];
  broadcast_strides(at, yt, a_strides);
  broadcast_strides(bt, yt, b_strides);
  int32_t a_dtype = qdtype(at), b_dtype = qdtype(bt), y_dtype = qdtype(yt);
  int32_t a_zero = at->qparams.zero_point, b_zero = bt->qparams.zero_point;
  int32_t y_zero = yt->qparams.zero_point;
  int32_t y_min, y_max;
  dsr_fixed_dtype_range(y_dtype, &y_min, &y_max);
  const int32_t *q = node->qwords;
  int div_constant = node->op == DSR_OP_DIV && q[1] == DSQ_DIV_CONSTANT;

  /* An int8 operand of ADD or SUB has 256 values: rescale each once, into a table. */
  int additive = node->op == DSR_OP_ADD || node->op == DSR_OP_SUB;
  int32_t table_a[256], table_b[256];
  int a_table = additive && a_dtype == DSR_DTYPE_I8, b_table = additive && b_dtype == DSR_DTYPE_I8;
  for (int32_t v = -128; v <= 127 && (a_table || b_table); v++) {
    if (a_table)
      table_a[v + 128] = dsr_fixed_requant32((v - a_zero) * (1 << q[1]), q[2], q[3]);
    if (b_table)
      table_b[v + 128] = dsr_fixed_requant32((v - b_zero) * (1 << q[1]), q[4], q[5]);
  }

  int32_t counter[DSR_MAX_RANK] = {0};
  int64_t ia = 0, ib = 0;
  int64_t count = elements(yt);
  for (int64_t i = 0; i < count; i++) {
    int32_t av = dsr_fixed_load(in[0], a_dtype, ia) - a_zero;
    int64_t value;
    if (additive) {
      int32_t bv = dsr_fixed_load(in[1], b_dtype, ib) - b_zero;
      /* |v| <= 2^16 and left shift 15 (2^8 and 20 for int8 pairs): operands stay under
       * 2^31, and each scaled operand is at most half of that, so the sum fits int32. */
      int32_t left = q[1];
      int32_t ra = a_table ? table_a[av + a_zero + 128]
                           : dsr_fixed_requant32(av * (1 << left), q[2], q[3]);
      int32_t rb = b_table ? table_b[bv + b_zero + 128]
                           : dsr_fixed_requant32(bv * (1 << left), q[4], q[5]);
      int32_t sum = node->op == DSR_OP_ADD ? ra + rb : ra - rb;
      value = y_zero + (int64_t)dsr_fixed_requant32(sum, q[6], q[7]);
    } else if (node->op == DSR_OP_MUL) {
      int32_t bv = dsr_fixed_load(in[1], b_dtype, ib) - b_zero;
      /* int16 operands have zero point 0, so |av * bv| <= 2^30. */
      value = y_zero + (int64_t)dsr_fixed_requant32(av * bv, q[1], q[2]);
    } else if (div_constant) {
      value = y_zero + (int64_t)dsr_fixed_requant32(av, q[3 + 2 * ib], q[4 + 2 * ib]);
    } else {
      int32_t bv = dsr_fixed_load(in[1], b_dtype, ib) - b_zero;
      if (bv == 0) {
        value = av > 0 ? y_max : (av < 0 ? y_min : y_zero);
      } else {
        int64_t numerator = (int64_t)av * 65536;
        int64_t quotient = bv > 0 ? dsr_fixed_div_round64(numerator, bv)
                                  : dsr_fixed_div_round64(-numerator, -(int64_t)bv);
        value = y_zero + (int64_t)dsr_fixed_requant64(quotient, q[2], q[3]);
      }
    }
    dsr_fixed_store(out, y_dtype, i, value);

    for (int32_t k = yt->rank - 1; k >= 0; k--) {
      counter[k]++;
      ia += a_strides[k];
      ib += b_strides[k];
      if (counter[k] < yt->dims[k])
        break;
      ia -= a_strides[k] * yt->dims[k];
      ib -= b_strides[k] * yt->dims[k];
      counter[k] = 0;
    }
  }
}

static int32_t normalized_axis(int32_t axis, int32_t rank) {
  return axis < 0 ? axis + rank : axis;
}

static void run_layer_norm(const dsr_model *model, const dsr_node *node, const void *const *in,
                           void *out, uint8_t *scratch) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  const int32_t *block = node->qwords + 1;
  int32_t count = block[0];
  int64_t rows = elements(xt) / count;
  int64_t *d_scratch = (int64_t *)scratch;
  int32_t *row_in = (int32_t *)(d_scratch + count);
  int32_t *row_out = row_in + count;
  int32_t y_min, y_max;
  dsr_fixed_dtype_range(qdtype(yt), &y_min, &y_max);

  for (int64_t r = 0; r < rows; r++) {
    for (int32_t i = 0; i < count; i++)
      row_in[i] = dsr_fixed_load(in[0], qdtype(xt), r * count + i);
    dsr_fixed_layer_norm_row(row_in, xt->qparams.zero_point, block, yt->qparams.zero_point,
                             y_min, y_max, d_scratch, row_out);
    for (int32_t i = 0; i < count; i++)
      dsr_fixed_store(out, qdtype(yt), r * count + i, row_out[i]);
  }
}

static void run_gelu(const dsr_model *model, const dsr_node *node, const void *const *in,
                     void *out) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t y_min, y_max;
  dsr_fixed_dtype_range(qdtype(yt), &y_min, &y_max);
  int64_t count = elements(xt);
  for (int64_t i = 0; i < count; i++) {
    int32_t q = dsr_fixed_load(in[0], qdtype(xt), i);
    int32_t y = dsr_fixed_lut_apply(node->qwords + 1, q, yt->qparams.zero_point, y_min, y_max);
    dsr_fixed_store(out, qdtype(yt), i, y);
  }
}

static void softmax_geometry(const dsr_tensor *xt, int32_t axis, int64_t *outer, int32_t *length,
                             int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int32_t k = 0; k < axis; k++)
    *outer *= xt->dims[k];
  for (int32_t k = axis + 1; k < xt->rank; k++)
    *inner *= xt->dims[k];
  *length = xt->dims[axis];
}

static void run_softmax(const dsr_model *model, const dsr_node *node, const void *const *in,
                        void *out, uint8_t *scratch) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t axis = normalized_axis(node->attrs.softmax.axis, xt->rank);
  int64_t outer, inner;
  int32_t length;
  softmax_geometry(xt, axis, &outer, &length, &inner);
  int32_t *row_in = (int32_t *)scratch;
  int32_t *row_exp = row_in + length;
  int32_t *row_out = row_exp + length;

  for (int64_t o = 0; o < outer; o++) {
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * length * inner + i;
      for (int32_t n = 0; n < length; n++)
        row_in[n] = dsr_fixed_load(in[0], qdtype(xt), base + n * inner);
      dsr_fixed_softmax_row(row_in, length, node->qwords[1], node->qwords[2], node->qwords[3],
                            row_exp, row_out);
      for (int32_t n = 0; n < length; n++)
        dsr_fixed_store(out, qdtype(yt), base + n * inner, row_out[n]);
    }
  }
}

static void run_transpose(const dsr_model *model, const dsr_node *node, const void *const *in,
                          void *out) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int64_t x_strides[DSR_MAX_RANK], in_strides[DSR_MAX_RANK];
  int64_t stride = 1;
  for (int32_t k = xt->rank - 1; k >= 0; k--) {
    x_strides[k] = stride;
    stride *= xt->dims[k];
  }
  for (int32_t k = 0; k < yt->rank; k++)
    in_strides[k] = x_strides[node->attrs.transpose.perm[k]];

  size_t bytes = dtype_bytes(qdtype(yt));
  const uint8_t *src = in[0];
  uint8_t *dst = out;
  int32_t counter[DSR_MAX_RANK] = {0};
  int64_t offset = 0;
  int64_t count = elements(yt);
  for (int64_t i = 0; i < count; i++) {
    memcpy(dst + i * bytes, src + offset * bytes, bytes);
    for (int32_t k = yt->rank - 1; k >= 0; k--) {
      counter[k]++;
      offset += in_strides[k];
      if (counter[k] < yt->dims[k])
        break;
      offset -= in_strides[k] * yt->dims[k];
      counter[k] = 0;
    }
  }
}

static void run_gather(const dsr_model *model, const dsr_node *node, const void *const *in,
                       void *out) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int32_t axis = node->qwords[1];
  int32_t index_count = node->qwords[2];
  const int32_t *indices = node->qwords + 3;
  int64_t outer = 1, inner = 1;
  for (int32_t k = 0; k < axis; k++)
    outer *= xt->dims[k];
  for (int32_t k = axis + 1; k < xt->rank; k++)
    inner *= xt->dims[k];
  size_t bytes = dtype_bytes(qdtype(xt)) * (size_t)inner;
  const uint8_t *src = in[0];
  uint8_t *dst = out;
  for (int64_t o = 0; o < outer; o++) {
    for (int32_t j = 0; j < index_count; j++) {
      int64_t from = (o * xt->dims[axis] + indices[j]) * (int64_t)bytes;
      int64_t to = (o * index_count + j) * (int64_t)bytes;
      memcpy(dst + to, src + from, bytes);
    }
  }
}

static void run_global_avg_pool(const dsr_model *model, const dsr_node *node,
                                const void *const *in, void *out) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int64_t planes = (int64_t)xt->dims[0] * xt->dims[1];
  int64_t pixels = (int64_t)xt->dims[2] * xt->dims[3];
  for (int64_t p = 0; p < planes; p++) {
    int64_t acc = 0;
    for (int64_t i = 0; i < pixels; i++)
      acc += dsr_fixed_load(in[0], qdtype(xt), p * pixels + i) - xt->qparams.zero_point;
    /* pixels * 2^16 < 2^31 is checked at plan time. */
    dsr_fixed_store(out, qdtype(yt), p,
                    yt->qparams.zero_point +
                        (int64_t)dsr_fixed_requant32((int32_t)acc, node->qwords[1],
                                                     node->qwords[2]));
  }
}

/* Runs the optimized kernel of node where one applies; returns 1 if it ran. */
static int run_fast(const dsr_model *model, int32_t node_index, const void *const *inputs,
                    void *output, uint8_t *scratch, const dsr_parallel *parallel,
                    const uint8_t *packed) {
  const dsr_node *node = &model->nodes[node_index];
  size_t slot_bytes = (dsr_fixed_scratch_bytes(model, node_index) + 7) / 8 * 8;
  switch (node->op) {
  case DSR_OP_CONV2D:
    return dsr_fixed_fast_conv2d_parallel(model, node, inputs, output, scratch, parallel);
  case DSR_OP_MATMUL:
    return dsr_fixed_fast_matmul_parallel(model, node, inputs, output, scratch, parallel,
                                          packed);
  case DSR_OP_GEMM:
    return dsr_fixed_fast_gemm_parallel(model, node, inputs, output, scratch, parallel, packed);
  case DSR_OP_ADD:
  case DSR_OP_SUB:
  case DSR_OP_MUL:
    return dsr_fixed_fast_binary_parallel(model, node, inputs, output, scratch, slot_bytes,
                                          parallel);
  case DSR_OP_TRANSPOSE:
    return dsr_fixed_fast_transpose_parallel(model, node, inputs, output, parallel);
  case DSR_OP_LAYER_NORM:
    return dsr_fixed_fast_layer_norm_parallel(model, node, inputs, output, scratch, slot_bytes,
                                              parallel);
  case DSR_OP_SOFTMAX:
    return dsr_fixed_fast_softmax_parallel(model, node, inputs, output, scratch, slot_bytes,
                                           parallel);
  case DSR_OP_GELU:
    return dsr_fixed_fast_gelu_parallel(model, node, inputs, output, parallel);
  case DSR_OP_GATHER:
    return dsr_fixed_fast_gather_parallel(model, node, inputs, output, parallel);
  case DSR_OP_RESHAPE:
    return dsr_fixed_fast_reshape_parallel(model, node, inputs, output, parallel);
  default:
    return 0;
  }
}

static void execute(const dsr_model *model, int32_t node_index,
                    const void *const inputs[DSR_MAX_NODE_INPUTS], void *output,
                    uint8_t *scratch, dsr_slice slice, int fast,
                    const dsr_parallel *parallel, const uint8_t *packed) {
  const dsr_node *node = &model->nodes[node_index];
  if (fast && run_fast(model, node_index, inputs, output, scratch, parallel, packed))
    return;
  switch (node->op) {
  case DSR_OP_CONV2D:
    run_conv2d(model, node, inputs, output);
    break;
  case DSR_OP_MATMUL:
    run_matmul(model, node, inputs, output);
    break;
  case DSR_OP_GEMM:
    run_gemm(model, node, inputs, output);
    break;
  case DSR_OP_ADD:
  case DSR_OP_SUB:
  case DSR_OP_MUL:
  case DSR_OP_DIV:
    run_elementwise(model, node, inputs, output);
    break;
  case DSR_OP_LAYER_NORM:
    run_layer_norm(model, node, inputs, output, scratch);
    break;
  case DSR_OP_GELU:
    run_gelu(model, node, inputs, output);
    break;
  case DSR_OP_SOFTMAX:
    run_softmax(model, node, inputs, output, scratch);
    break;
  case DSR_OP_TRANSPOSE:
    run_transpose(model, node, inputs, output);
    break;
  case DSR_OP_RESHAPE:
    if (output != inputs[0])
      memmove(output, inputs[0],
              (size_t)elements(&model->tensors[node->output]) *
                  dtype_bytes(qdtype(&model->tensors[node->output])));
    break;
  case DSR_OP_GATHER:
    run_gather(model, node, inputs, output);
    break;
  case DSR_OP_GLOBAL_AVG_POOL:
    run_global_avg_pool(model, node, inputs, output);
    break;
  case DSR_OP_DEFORM_ATTN:
    dsr_fixed_deform_execute_packed(model, node, inputs[0], output, scratch, slice, fast,
                                    parallel, packed);
    break;
  case DSR_OP_CONCAT:
    dsr_fixed_concat(model, node, inputs, output);
    break;
  case DSR_OP_PAD:
    dsr_fixed_pad(model, node, inputs[0], output);
    break;
  default:
    break; /* rejected by dsr_fixed_check_node */
  }
}

void dsr_fixed_execute_parallel(const dsr_model *model, int32_t node_index,
                                const void *const inputs[DSR_MAX_NODE_INPUTS], void *output,
                                uint8_t *scratch, dsr_slice slice, const dsr_parallel *parallel) {
  execute(model, node_index, inputs, output, scratch, slice, 1, parallel, NULL);
}

void dsr_fixed_execute_packed(const dsr_model *model, int32_t node_index,
                              const void *const inputs[DSR_MAX_NODE_INPUTS], void *output,
                              uint8_t *scratch, dsr_slice slice, const dsr_parallel *parallel,
                              const uint8_t *packed) {
  execute(model, node_index, inputs, output, scratch, slice, 1, parallel, packed);
}

size_t dsr_fixed_packed_bytes(const dsr_model *model, int32_t node_index) {
  if (model == NULL || node_index < 0 || node_index >= model->node_count)
    return 0;
  const dsr_node *node = &model->nodes[node_index];
  if (node->op == DSR_OP_DEFORM_ATTN)
    return dsr_fixed_deform_packed_bytes(model, node);
  if (node->input_count < 2 || node->inputs[0] < 0 || node->inputs[0] >= model->tensor_count)
    return 0;
  if (node->op == DSR_OP_MATMUL)
    return dsr_fixed_fast_matmul_packed_bytes(model, node);
  if (node->op == DSR_OP_GEMM)
    return dsr_fixed_fast_gemm_packed_bytes(model, node);
  return 0;
}

void dsr_fixed_pack_constants(const dsr_model *model, int32_t node_index, uint8_t *packed) {
  const dsr_node *node = &model->nodes[node_index];
  if (node->op == DSR_OP_MATMUL)
    dsr_fixed_fast_matmul_pack(model, node, packed);
  else if (node->op == DSR_OP_GEMM)
    dsr_fixed_fast_gemm_pack(model, node, packed);
  else if (node->op == DSR_OP_DEFORM_ATTN)
    dsr_fixed_deform_pack(model, node, packed);
}

void dsr_fixed_execute(const dsr_model *model, int32_t node_index,
                       const void *const inputs[DSR_MAX_NODE_INPUTS], void *output,
                       uint8_t *scratch, dsr_slice slice) {
  execute(model, node_index, inputs, output, scratch, slice, 1, NULL, NULL);
}

void dsr_fixed_execute_reference(const dsr_model *model, int32_t node_index,
                                 const void *const inputs[DSR_MAX_NODE_INPUTS], void *output,
                                 uint8_t *scratch, dsr_slice slice) {
  execute(model, node_index, inputs, output, scratch, slice, 0, NULL, NULL);
}

/* ---------------------------------------------------------------- scratch */

size_t dsr_fixed_scratch_bytes(const dsr_model *model, int32_t node_index) {
  if (model == NULL || node_index < 0 || node_index >= model->node_count)
    return 0;
  const dsr_node *node = &model->nodes[node_index];
  if (node->input_count < 1 || node->inputs[0] < 0 || node->inputs[0] >= model->tensor_count)
    return 0;
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  switch (node->op) {
  case DSR_OP_LAYER_NORM: {
    int32_t axis = normalized_axis(node->attrs.norm.axis, xt->rank);
    int64_t count = 1;
    for (int32_t k = axis; k >= 0 && k < xt->rank; k++)
      count *= xt->dims[k];
    return (size_t)count * (sizeof(int64_t) + 2 * sizeof(int32_t));
  }
  case DSR_OP_SOFTMAX: {
    int32_t axis = normalized_axis(node->attrs.softmax.axis, xt->rank);
    if (axis < 0 || axis >= xt->rank)
      return 0;
    return (size_t)xt->dims[axis] * 3 * sizeof(int32_t);
  }
  case DSR_OP_DEFORM_ATTN:
    return node->deform != NULL ? dsr_fixed_deform_scratch_bytes(model, node) : 0;
  case DSR_OP_CONV2D:
    return dsr_fixed_fast_conv2d_scratch_bytes(model, node);
  case DSR_OP_MATMUL:
    return dsr_fixed_fast_matmul_scratch_bytes(model, node);
  case DSR_OP_GEMM:
    return dsr_fixed_fast_gemm_scratch_bytes(model, node, 1);
  case DSR_OP_ADD:
  case DSR_OP_SUB:
  case DSR_OP_MUL:
    return dsr_fixed_fast_binary_scratch_bytes(model, node);
  default:
    return 0;
  }
}

size_t dsr_fixed_scratch_bytes_for_workers(const dsr_model *model, int32_t node_index,
                                           int32_t worker_count) {
  if (worker_count < 1)
    worker_count = 1;
  size_t single = dsr_fixed_scratch_bytes(model, node_index);
  if (worker_count == 1 || single == 0)
    return single;
  const dsr_node *node = &model->nodes[node_index];
  switch (node->op) {
  case DSR_OP_CONV2D:
    return dsr_fixed_fast_conv2d_scratch_bytes_for_workers(model, node, worker_count);
  case DSR_OP_MATMUL:
    return dsr_fixed_fast_matmul_scratch_bytes_for_workers(model, node, worker_count);
  case DSR_OP_GEMM:
    return dsr_fixed_fast_gemm_scratch_bytes(model, node, worker_count);
  case DSR_OP_DEFORM_ATTN:
    return dsr_fixed_deform_scratch_bytes_for_workers(model, node, worker_count);
  case DSR_OP_LAYER_NORM:
  case DSR_OP_SOFTMAX:
  case DSR_OP_ADD:
  case DSR_OP_SUB:
  case DSR_OP_MUL:
    /* One slot per task, as run_fast hands them out. */
    return (single + 7) / 8 * 8 * (size_t)worker_count;
  default:
    return single;
  }
}

/* ---------------------------------------------------------------- plan-time checks */

int dsr_fixed_pair_valid(const int32_t *pair, int wide) {
  int32_t m = pair[0], shift = pair[1];
  if (m != 0 && (m == INT32_MIN || (m > 0 ? m : -m) < DSQ_MULTIPLIER_MIN_MAGNITUDE))
    return 0;
  if (shift < DSQ_SHIFT_MIN || shift > (wide ? DSQ_SHIFT_MAX_WIDE : DSQ_SHIFT_MAX))
    return 0;
  return 1;
}

static int pairs_valid(const int32_t *pairs, int32_t count, int wide) {
  for (int32_t i = 0; i < count; i++) {
    if (!dsr_fixed_pair_valid(pairs + 2 * i, wide))
      return 0;
  }
  return 1;
}

int dsr_fixed_lut_valid(const int32_t *block, int32_t block_words, int32_t in_dtype) {
  if (block_words < 1)
    return 0;
  if (in_dtype == DSR_DTYPE_I8)
    return block[0] == DSQ_LUT_DIRECT && block_words == 1 + DSQ_LUT_DIRECT_ENTRIES;
  if (block[0] != DSQ_LUT_INTERP || block_words != 1 + DSQ_LUT_INTERP_ENTRIES)
    return 0;
  /* Interpolation works in 64 bits. Entries within +-2^30 keep its result far from wrapping. */
  for (int32_t i = 1; i < block_words; i++) {
    if (block[i] < -(1 << 30) || block[i] > (1 << 30))
      return 0;
  }
  return 1;
}

int dsr_fixed_ln_valid(const int32_t *block, int32_t block_words, int32_t count) {
  if (block_words < DSQ_LN_HEADER_WORDS || block[0] != count || count < 1 ||
      count > DSQ_LN_MAX_ELEMENTS || block_words != DSQ_LN_HEADER_WORDS + 3 * count)
    return 0;
  if (block[1] != 0 && block[1] != 8)
    return 0;
  int64_t eps = (int64_t)block[3] * ((int64_t)1 << 32) + (int64_t)(uint32_t)block[2];
  if (eps < 0 || eps > DSQ_LN_EPS_MAX)
    return 0;
  for (int32_t i = 0; i < count; i++) {
    if (!dsr_fixed_pair_valid(block + DSQ_LN_HEADER_WORDS + 3 * i, 0))
      return 0;
  }
  return 1;
}

ds_status dsr_fixed_check_qparams(const dsr_model *model, const dsr_node *node,
                                  int32_t tensor_index, const char *role, ds_error *err) {
  if (tensor_index < 0 || tensor_index >= model->tensor_count)
    return ds_fail(err, DS_ERR_GRAPH, "node '%s' (%s): %s tensor index %d is out of range 0..%d",
                   node->name, op_name(node->op), role, tensor_index, model->tensor_count - 1);
  const dsr_tensor *t = &model->tensors[tensor_index];
  const dsr_qparams *q = &t->qparams;
  if (!t->has_qparams)
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (%s): %s tensor '%s' has no qparams: quantize the model first",
                   node->name, op_name(node->op), role, t->name);
  if (q->dtype != DSR_DTYPE_I8 && q->dtype != DSR_DTYPE_I16)
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (%s): %s tensor '%s' has qparams dtype %d, expected I8 (1) or I16 "
                   "(2)",
                   node->name, op_name(node->op), role, t->name, q->dtype);
  if (!(q->scale > 0.0f) || q->scale > 1e30f)
    return ds_fail(err, DS_ERR_QUANT, "node '%s' (%s): %s tensor '%s' has invalid scale %g",
                   node->name, op_name(node->op), role, t->name, (double)q->scale);
  int32_t lo, hi;
  dsr_fixed_dtype_range(q->dtype, &lo, &hi);
  if (q->zero_point < lo || q->zero_point > hi || (q->dtype == DSR_DTYPE_I16 && q->zero_point != 0))
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (%s): %s tensor '%s' has zero point %d, expected %s", node->name,
                   op_name(node->op), role, t->name, q->zero_point,
                   q->dtype == DSR_DTYPE_I16 ? "0 for int16" : "-128..127 for int8");
  if (t->kind == DSR_TENSOR_CONSTANT && t->data_q == NULL)
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (%s): constant %s tensor '%s' has no quantized data", node->name,
                   op_name(node->op), role, t->name);
  return DS_OK;
}

static ds_status fail_qwords(const dsr_node *node, ds_error *err, const char *what) {
  return ds_fail(err, DS_ERR_QUANT,
                 "node '%s' (%s): qwords (%d words) %s: re-run dsq_quantize on this model",
                 node->name, op_name(node->op), node->qword_count, what);
}

/* Checks a constant weight (int8, per-channel scales along axis with count channels). */
static ds_status check_weight(const dsr_model *model, const dsr_node *node, int32_t index,
                              int32_t axis, int32_t channels, ds_error *err) {
  if (index < 0 || index >= model->tensor_count)
    return ds_fail(err, DS_ERR_GRAPH, "node '%s' (%s): weight tensor index %d is out of range",
                   node->name, op_name(node->op), index);
  const dsr_tensor *t = &model->tensors[index];
  if (t->kind != DSR_TENSOR_CONSTANT || t->data_q == NULL || !t->has_qparams ||
      t->qparams.dtype != DSR_DTYPE_I8)
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (%s): weight '%s' is not a quantized int8 constant: quantize the "
                   "model first",
                   node->name, op_name(node->op), t->name);
  /* One scale for the whole tensor (a weight shared on two axes) serves every channel. */
  int per_tensor = t->channel_count == 1 && t->channel_scales != NULL;
  if (!per_tensor &&
      (t->channel_axis != axis || t->channel_count != channels || t->channel_scales == NULL))
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (%s): weight '%s' has %d channel scales on axis %d, expected %d on "
                   "axis %d or one for the tensor",
                   node->name, op_name(node->op), t->name, t->channel_count, t->channel_axis,
                   channels, axis);
  return DS_OK;
}

/* Checks an optional int32 bias of count values and returns its largest magnitude. */
static ds_status check_bias(const dsr_model *model, const dsr_node *node, int32_t input,
                            int32_t count, int64_t *max_magnitude, ds_error *err) {
  *max_magnitude = 0;
  if (node->input_count <= input || node->inputs[input] < 0)
    return DS_OK;
  int32_t index = node->inputs[input];
  if (index >= model->tensor_count)
    return ds_fail(err, DS_ERR_GRAPH, "node '%s' (%s): bias tensor index %d is out of range",
                   node->name, op_name(node->op), index);
  const dsr_tensor *t = &model->tensors[index];
  if (t->kind != DSR_TENSOR_CONSTANT || t->data_q == NULL || !t->has_qparams ||
      t->qparams.dtype != DSR_DTYPE_I32 || elements(t) != count)
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (%s): bias '%s' must be an int32 constant of %d values: quantize "
                   "the model first",
                   node->name, op_name(node->op), t->name, count);
  const int32_t *b = t->data_q;
  for (int32_t i = 0; i < count; i++) {
    int64_t m = b[i] < 0 ? -(int64_t)b[i] : b[i];
    if (m > *max_magnitude)
      *max_magnitude = m;
  }
  return DS_OK;
}

/* Rejects a 32-bit accumulator whose terms products of up to product_max plus the bias can
 * overflow. */
static ds_status check_narrow(const dsr_node *node, int64_t terms, int64_t product_max,
                              int64_t bias_max, ds_error *err) {
  if (terms * product_max + bias_max > INT32_MAX)
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (%s): %lld terms of up to %lld plus bias %lld can overflow the "
                   "32-bit accumulator of int8 operands: use int16 activations for its input",
                   node->name, op_name(node->op), (long long)terms, (long long)product_max,
                   (long long)bias_max);
  return DS_OK;
}

static ds_status check_conv(const dsr_model *model, const dsr_node *node, ds_error *err) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  const dsr_tensor *wt = &model->tensors[node->inputs[1]];
  if (xt->rank != 4 || yt->rank != 4 || wt->rank != 4 || node->attrs.conv.group < 1 ||
      xt->dims[1] % node->attrs.conv.group != 0 || yt->dims[1] % node->attrs.conv.group != 0 ||
      wt->dims[0] != yt->dims[1] || wt->dims[1] * node->attrs.conv.group != xt->dims[1])
    return ds_fail(err, DS_ERR_SHAPE, "node '%s' (CONV2D): input, weight and output shapes do "
                                      "not agree with group %d",
                   node->name, node->attrs.conv.group);
  int32_t cout = yt->dims[1];
  DS_TRY(check_weight(model, node, node->inputs[1], 0, cout, err));
  int64_t bias_max;
  DS_TRY(check_bias(model, node, 2, cout, &bias_max, err));
  if (node->qword_count != 2 + 2 * cout || node->qwords[1] != cout)
    return fail_qwords(node, err, "do not hold one requant pair per output channel");
  int wide = qdtype(xt) != DSR_DTYPE_I8;
  if (!pairs_valid(node->qwords + 2, cout, wide))
    return fail_qwords(node, err, "hold a multiplier or shift out of range");
  if (!wide) {
    int64_t terms = (int64_t)wt->dims[1] * wt->dims[2] * wt->dims[3];
    DS_TRY(check_narrow(node, terms, 255 * 128, bias_max, err));
  }
  return DS_OK;
}

static ds_status check_matmul(const dsr_model *model, const dsr_node *node, ds_error *err) {
  const dsr_tensor *at = &model->tensors[node->inputs[0]];
  const dsr_tensor *bt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  if (at->rank < 2 || bt->rank < 2 || yt->rank < 2 || yt->rank < at->rank ||
      yt->rank < bt->rank || at->dims[at->rank - 1] != bt->dims[bt->rank - 2] ||
      yt->dims[yt->rank - 2] != at->dims[at->rank - 2] ||
      yt->dims[yt->rank - 1] != bt->dims[bt->rank - 1])
    return ds_fail(err, DS_ERR_SHAPE,
                   "node '%s' (MATMUL): operand ranks must be 2 or more with matching inner "
                   "dimensions",
                   node->name);
  /* Batch axes broadcast: each operand's batch axis is 1 or the output's. */
  for (int32_t t = 0; t < 2; t++) {
    const dsr_tensor *operand = t == 0 ? at : bt;
    for (int32_t axis = 0; axis < operand->rank - 2; axis++) {
      int32_t d = operand->dims[axis];
      if (d != 1 && d != yt->dims[axis + yt->rank - operand->rank])
        return ds_fail(err, DS_ERR_SHAPE,
                       "node '%s' (MATMUL): batch axis %d of input %d has size %d, which does "
                       "not broadcast to the output",
                       node->name, axis, t, d);
    }
  }
  int32_t n = yt->dims[yt->rank - 1];
  int64_t k = at->dims[at->rank - 1];
  if (node->qword_count < 2)
    return fail_qwords(node, err, "are too short");
  int32_t m = yt->dims[yt->rank - 2];
  int wide_b, wide_a = qdtype(at) != DSR_DTYPE_I8;
  if (node->qwords[1] == DSQ_MATMUL_CONSTANT_B) {
    DS_TRY(check_weight(model, node, node->inputs[1], bt->rank - 1, n, err));
    if (node->qword_count != 3 + 2 * n || node->qwords[2] != n)
      return fail_qwords(node, err, "do not hold one requant pair per output column");
    wide_b = 0;
  } else if (node->qwords[1] == DSQ_MATMUL_CONSTANT_A) {
    DS_TRY(check_weight(model, node, node->inputs[0], at->rank - 2, m, err));
    DS_TRY(dsr_fixed_check_qparams(model, node, node->inputs[1], "input b", err));
    if (node->qword_count != 3 + 2 * m || node->qwords[2] != m)
      return fail_qwords(node, err, "do not hold one requant pair per output row");
    wide_a = 0;
    wide_b = qdtype(bt) != DSR_DTYPE_I8;
  } else if (node->qwords[1] == DSQ_MATMUL_ACTIVATIONS) {
    DS_TRY(dsr_fixed_check_qparams(model, node, node->inputs[1], "input b", err));
    if (node->qword_count != 4)
      return fail_qwords(node, err, "must have 4 words for two activations");
    wide_b = qdtype(bt) != DSR_DTYPE_I8;
  } else {
    return fail_qwords(node, err, "name an unknown MATMUL kind");
  }
  int wide = wide_b || wide_a;
  int32_t kind = node->qwords[1];
  int32_t pair_count = kind == DSQ_MATMUL_CONSTANT_B ? n : (kind == DSQ_MATMUL_CONSTANT_A ? m : 1);
  const int32_t *pairs = node->qwords + (kind == DSQ_MATMUL_ACTIVATIONS ? 2 : 3);
  if (!pairs_valid(pairs, pair_count, wide))
    return fail_qwords(node, err, "hold a multiplier or shift out of range");
  if (!wide)
    DS_TRY(check_narrow(node, k, kind == DSQ_MATMUL_ACTIVATIONS ? 255 * 255 : 255 * 128, 0, err));
  return DS_OK;
}

/* GEMM: a is (M, K), or with trans_a 0 of any rank >= 2 whose leading axes are the rows. b is
 * a constant int8 (K, N) weight, (N, K) with trans_b, with one scale per output column. The
 * optional int32 bias has N values along its last axis. */
static ds_status check_gemm(const dsr_model *model, const dsr_node *node, ds_error *err) {
  const dsr_tensor *at = &model->tensors[node->inputs[0]];
  const dsr_tensor *bt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  const dsr_gemm_attrs *g = &node->attrs.gemm;
  if (at->rank < 2 || bt->rank != 2 || yt->rank != at->rank || (at->rank > 2 && g->trans_a))
    return ds_fail(err, DS_ERR_SHAPE, "node '%s' (GEMM): a of rank %d, b of rank %d and output "
                                      "of rank %d: b must be rank 2 and a and the output of "
                                      "one rank of 2 or more (rank 2 when trans_a is 1)",
                   node->name, at->rank, bt->rank, yt->rank);
  int32_t k = g->trans_a ? at->dims[0] : at->dims[at->rank - 1];
  int32_t kb = g->trans_b ? bt->dims[1] : bt->dims[0], n = g->trans_b ? bt->dims[0] : bt->dims[1];
  int leading_match = yt->dims[yt->rank - 1] == n;
  for (int32_t axis = 0; axis < at->rank - 1 && !g->trans_a; axis++)
    leading_match &= yt->dims[axis] == at->dims[axis];
  if (g->trans_a)
    leading_match &= yt->dims[0] == at->dims[1];
  if (k != kb || !leading_match)
    return ds_fail(err, DS_ERR_SHAPE, "node '%s' (GEMM): inner sizes %d and %d, or the output "
                                      "shape, do not agree with a times b (%d columns)",
                   node->name, k, kb, n);
  DS_TRY(check_weight(model, node, node->inputs[1], g->trans_b ? 0 : 1, n, err));
  int64_t bias_max;
  DS_TRY(check_bias(model, node, 2, n, &bias_max, err));
  if (node->input_count > 2 && node->inputs[2] >= 0) {
    const dsr_tensor *ct = &model->tensors[node->inputs[2]];
    if (ct->rank > 0 && ct->dims[ct->rank - 1] != n)
      return ds_fail(err, DS_ERR_QUANT, "node '%s' (GEMM): bias '%s' must hold its %d values "
                                        "along its last axis, one per output column",
                     node->name, ct->name, n);
  }
  if (node->qword_count != 2 + 2 * n || node->qwords[1] != n)
    return fail_qwords(node, err, "do not hold one requant pair per output column");
  int wide = qdtype(at) != DSR_DTYPE_I8;
  if (!pairs_valid(node->qwords + 2, n, wide))
    return fail_qwords(node, err, "hold a multiplier or shift out of range");
  if (!wide)
    DS_TRY(check_narrow(node, k, 255 * 128, bias_max, err));
  return DS_OK;
}

static int broadcastable(const dsr_tensor *in, const dsr_tensor *out) {
  if (in->rank > out->rank)
    return 0;
  for (int32_t k = 0; k < in->rank; k++) {
    int32_t d = in->dims[k], o = out->dims[k + out->rank - in->rank];
    if (d != 1 && d != o)
      return 0;
  }
  return 1;
}

static ds_status check_elementwise(const dsr_model *model, const dsr_node *node, ds_error *err) {
  const dsr_tensor *at = &model->tensors[node->inputs[0]];
  const dsr_tensor *bt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  if (!broadcastable(at, yt) || !broadcastable(bt, yt))
    return ds_fail(err, DS_ERR_SHAPE, "node '%s' (%s): inputs do not broadcast to the output "
                                      "shape",
                   node->name, op_name(node->op));
  int div_constant = node->op == DSR_OP_DIV && node->qword_count >= 2 &&
                     node->qwords[1] == DSQ_DIV_CONSTANT;
  if (!div_constant)
    DS_TRY(dsr_fixed_check_qparams(model, node, node->inputs[1], "input b", err));
  const int32_t *q = node->qwords;
  switch (node->op) {
  case DSR_OP_ADD:
  case DSR_OP_SUB: {
    int narrow = qdtype(at) == DSR_DTYPE_I8 && qdtype(bt) == DSR_DTYPE_I8;
    int32_t expected_shift = narrow ? DSQ_ADD_SHIFT_NARROW : DSQ_ADD_SHIFT_WIDE;
    if (node->qword_count != 8 || q[1] != expected_shift)
      return fail_qwords(node, err, "must have 8 words with the left shift of the operand types");
    if (!pairs_valid(q + 2, 3, 0))
      return fail_qwords(node, err, "hold a multiplier or shift out of range");
    /* Each scaled operand must stay within half of the int32 range (factor <= 1/2). */
    for (int32_t i = 0; i < 2; i++) {
      if (q[2 + 2 * i + 1] > 0)
        return fail_qwords(node, err, "scale an operand by more than 1/2");
    }
    break;
  }
  case DSR_OP_MUL:
    if (node->qword_count != 3 || !pairs_valid(q + 1, 1, 0))
      return fail_qwords(node, err, "must be [tag, multiplier, shift] with values in range");
    break;
  case DSR_OP_DIV:
    if (div_constant) {
      int64_t count = elements(bt);
      if (node->qword_count != 3 + 2 * count || q[2] != count)
        return fail_qwords(node, err, "do not hold one requant pair per divisor element");
      if (!pairs_valid(q + 3, (int32_t)count, 0))
        return fail_qwords(node, err, "hold a multiplier or shift out of range");
    } else if (node->qword_count != 4 || q[1] != DSQ_DIV_ACTIVATION ||
               !pairs_valid(q + 2, 1, 1)) {
      return fail_qwords(node, err, "must be [tag, 0, multiplier, shift] with values in range");
    }
    break;
  default:
    break;
  }
  return DS_OK;
}

static ds_status check_softmax(const dsr_model *model, const dsr_node *node, ds_error *err) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t axis = normalized_axis(node->attrs.softmax.axis, xt->rank);
  if (axis < 0 || axis >= xt->rank)
    return ds_fail(err, DS_ERR_SHAPE, "node '%s' (SOFTMAX): axis %d is outside rank %d",
                   node->name, node->attrs.softmax.axis, xt->rank);
  if (node->qword_count != 4 || !pairs_valid(node->qwords + 1, 1, 0) || node->qwords[1] < 0)
    return fail_qwords(node, err, "must be [tag, multiplier >= 0, shift, frac bits]");
  int32_t bits = node->qwords[3];
  int ok = (bits == 8 && qdtype(yt) == DSR_DTYPE_I8 && yt->qparams.zero_point == -128) ||
           (bits == 15 && qdtype(yt) == DSR_DTYPE_I16);
  if (!ok || yt->qparams.scale != (bits == 8 ? 1.0f / 256.0f : 1.0f / 32768.0f))
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (SOFTMAX): output '%s' must be int8 with scale 2^-8 and zero point "
                   "-128, or int16 with scale 2^-15, matching qwords frac bits %d",
                   node->name, yt->name, bits);
  return DS_OK;
}

static int same_qparams(const dsr_tensor *a, const dsr_tensor *b) {
  return a->qparams.dtype == b->qparams.dtype && a->qparams.scale == b->qparams.scale &&
         a->qparams.zero_point == b->qparams.zero_point;
}

static ds_status check_node_op(const dsr_model *model, const dsr_node *node, ds_error *err) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int elementwise_unary = node->op == DSR_OP_LAYER_NORM || node->op == DSR_OP_GELU ||
                          node->op == DSR_OP_SOFTMAX;
  if (elementwise_unary && (elements(xt) != elements(yt) || xt->rank < 1))
    return ds_fail(err, DS_ERR_SHAPE, "node '%s' (%s): input has %lld elements, output %lld",
                   node->name, op_name(node->op), (long long)elements(xt),
                   (long long)elements(yt));
  switch (node->op) {
  case DSR_OP_CONV2D:
    return check_conv(model, node, err);
  case DSR_OP_MATMUL:
    return check_matmul(model, node, err);
  case DSR_OP_GEMM:
    return check_gemm(model, node, err);
  case DSR_OP_ADD:
  case DSR_OP_SUB:
  case DSR_OP_MUL:
  case DSR_OP_DIV:
    return check_elementwise(model, node, err);
  case DSR_OP_LAYER_NORM: {
    int32_t axis = normalized_axis(node->attrs.norm.axis, xt->rank);
    if (axis < 0 || axis >= xt->rank)
      return ds_fail(err, DS_ERR_SHAPE, "node '%s' (LAYER_NORM): axis %d is outside rank %d",
                     node->name, node->attrs.norm.axis, xt->rank);
    int64_t count = 1;
    for (int32_t k = axis; k < xt->rank; k++)
      count *= xt->dims[k];
    if (count > DSQ_LN_MAX_ELEMENTS || !dsr_fixed_ln_valid(node->qwords + 1,
                                                           node->qword_count - 1,
                                                           (int32_t)count))
      return fail_qwords(node, err, "do not form a valid LayerNorm block for the row length");
    if (node->qwords[2] != (qdtype(xt) == DSR_DTYPE_I8 ? 8 : 0))
      return fail_qwords(node, err, "have a pre-shift that does not match the input type");
    return DS_OK;
  }
  case DSR_OP_GELU:
    if (!dsr_fixed_lut_valid(node->qwords + 1, node->qword_count - 1, qdtype(xt)))
      return fail_qwords(node, err, "do not form a lookup table for the input type");
    return DS_OK;
  case DSR_OP_SOFTMAX:
    return check_softmax(model, node, err);
  case DSR_OP_TRANSPOSE:
  case DSR_OP_RESHAPE:
  case DSR_OP_GATHER:
    if (!same_qparams(xt, yt))
      return ds_fail(err, DS_ERR_QUANT,
                     "node '%s' (%s): input '%s' and output '%s' must share qparams: re-run "
                     "dsq_quantize",
                     node->name, op_name(node->op), xt->name, yt->name);
    if (elements(xt) != elements(yt) && node->op != DSR_OP_GATHER)
      return ds_fail(err, DS_ERR_SHAPE, "node '%s' (%s): input has %lld elements, output %lld",
                     node->name, op_name(node->op), (long long)elements(xt),
                     (long long)elements(yt));
    if (node->op == DSR_OP_TRANSPOSE) {
      uint32_t seen = 0;
      for (int32_t k = 0; k < yt->rank; k++) {
        int32_t p = node->attrs.transpose.perm[k];
        if (p < 0 || p >= xt->rank || (seen & (1u << p)) || yt->dims[k] != xt->dims[p])
          return ds_fail(err, DS_ERR_SHAPE, "node '%s' (TRANSPOSE): perm is not a permutation "
                                            "matching the output shape",
                         node->name);
        seen |= 1u << p;
      }
      if (yt->rank != xt->rank)
        return ds_fail(err, DS_ERR_SHAPE, "node '%s' (TRANSPOSE): ranks differ", node->name);
    }
    if (node->qword_count < 1)
      return fail_qwords(node, err, "are missing");
    if (node->op == DSR_OP_GATHER) {
      int32_t axis = node->qword_count >= 3 ? node->qwords[1] : -1;
      if (node->qword_count < 3 || axis < 0 || axis >= xt->rank ||
          node->qword_count != 3 + node->qwords[2] || node->qwords[2] < 0)
        return fail_qwords(node, err, "must be [tag, axis, count, indices]");
      int64_t expected = elements(xt) / xt->dims[axis] * node->qwords[2];
      if (expected != elements(yt))
        return ds_fail(err, DS_ERR_SHAPE, "node '%s' (GATHER): %d indices give %lld elements, "
                                          "output has %lld",
                       node->name, node->qwords[2], (long long)expected,
                       (long long)elements(yt));
      for (int32_t j = 0; j < node->qwords[2]; j++) {
        if (node->qwords[3 + j] < 0 || node->qwords[3 + j] >= xt->dims[axis])
          return fail_qwords(node, err, "hold an index outside the gathered axis");
      }
    } else if (node->qword_count != 1) {
      return fail_qwords(node, err, "must be the tag alone");
    }
    return DS_OK;
  case DSR_OP_GLOBAL_AVG_POOL: {
    if (xt->rank != 4 || yt->rank != 4 || yt->dims[0] != xt->dims[0] ||
        yt->dims[1] != xt->dims[1] || elements(yt) != (int64_t)xt->dims[0] * xt->dims[1])
      return ds_fail(err, DS_ERR_SHAPE, "node '%s' (GLOBAL_AVG_POOL): expected NCHW in and out",
                     node->name);
    int64_t pixels = (int64_t)xt->dims[2] * xt->dims[3];
    if (pixels * 65536 > INT32_MAX)
      return ds_fail(err, DS_ERR_SHAPE,
                     "node '%s' (GLOBAL_AVG_POOL): %lld pixels overflow the 32-bit sum",
                     node->name, (long long)pixels);
    if (node->qword_count != 3 || !pairs_valid(node->qwords + 1, 1, 0))
      return fail_qwords(node, err, "must be [tag, multiplier, shift] with values in range");
    return DS_OK;
  }
  case DSR_OP_DEFORM_ATTN:
    return dsr_fixed_deform_check(model, node, err);
  case DSR_OP_CONCAT:
  case DSR_OP_PAD:
    return dsr_fixed_layout_check(model, node, err);
  default:
    return ds_fail(err, DS_ERR_UNSUPPORTED_OP, "node '%s': op %d has no fixed-point kernel",
                   node->name, node->op);
  }
}

ds_status dsr_fixed_check_node(const dsr_model *model, int32_t node_index, ds_error *err) {
  if (model == NULL || node_index < 0 || node_index >= model->node_count)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "node index %d is out of range", node_index);
  const dsr_node *node = &model->nodes[node_index];
  if (node->op <= 0 || node->op >= DSR_OP_COUNT)
    return ds_fail(err, DS_ERR_UNSUPPORTED_OP, "node '%s': unknown op %d", node->name, node->op);
  int32_t min_inputs = node->op == DSR_OP_CONV2D || node->op == DSR_OP_MATMUL ||
                               node->op == DSR_OP_GEMM || node->op == DSR_OP_ADD ||
                               node->op == DSR_OP_SUB || node->op == DSR_OP_MUL ||
                               node->op == DSR_OP_DIV
                           ? 2
                           : 1;
  if (node->input_count < min_inputs || node->input_count > DSR_MAX_NODE_INPUTS)
    return ds_fail(err, DS_ERR_GRAPH, "node '%s' (%s): %d inputs, expected at least %d",
                   node->name, op_name(node->op), node->input_count, min_inputs);
  for (int32_t i = 0; i < min_inputs; i++) {
    if (node->inputs[i] < 0 || node->inputs[i] >= model->tensor_count)
      return ds_fail(err, DS_ERR_GRAPH, "node '%s' (%s): input %d has tensor index %d, out of "
                                        "range",
                     node->name, op_name(node->op), i, node->inputs[i]);
  }
  DS_TRY(dsr_fixed_check_qparams(model, node, node->inputs[0], "input", err));
  DS_TRY(dsr_fixed_check_qparams(model, node, node->output, "output", err));
  if (node->qwords == NULL || node->qword_count < 1 || node->qwords[0] != DSQ_TAG(node->op))
    return fail_qwords(node, err, "are missing or carry the tag of another op");
  return check_node_op(model, node, err);
}
