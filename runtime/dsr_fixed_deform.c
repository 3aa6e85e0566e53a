/*
 * Fixed-point DEFORM_ATTN: the operator of docs/deformable-attention.md in integers, patch
 * by patch with the geometry of runtime/dsr_slice.h.
 *
 * Stage values live in int32 scratch arrays but always hold values of their stage dtype
 * (stage_qparams), saturated, so an implementation storing int8 or int16 gets the same
 * numbers. Positions are Q8 pixels of the extended patch (DSR_FIXED_POS_FRAC_BITS).
 *
 * Two orders compute the same values. The reference order (execute_reference) loops position
 * by position and reports every stage to an audit probe. The fast order (the fast argument of
 * dsr_fixed_deform_execute) runs as steps, each split into tasks of the parallel hook:
 *
 *   1. widen the position bias table to int32 and pack the projection weights (dsr_gemm.h
 *      rows). Then pack the input as columns and run proj_q as one packed product over the
 *      whole map;
 *   2. per patch: the offset depthwise conv over a zero-padded plane, one output row at a
 *      time; LayerNorm, GELU and the pointwise conv per grid position; the sample positions;
 *      the bilinear samples, one channel plane at a time;
 *   3. proj_k and proj_v as packed products of the weights and the packed samples; k and v
 *      packed per head; the row and column factors of the position bias taps;
 *   4. per block of ATTEND_BLOCK query pixels and per head: q.k as a packed product, the
 *      bias gathered from the table, logits, one softmax row per query, attention . v as a
 *      packed product; then proj_out of the block as a packed product.
 *
 * Packed products need int8 operands on both sides (packed_plan). Where a stage is int16, its
 * step keeps the row-order loops, which sum the same terms over contiguous int32 or int64
 * rows. Integer sums without overflow do not depend on the order of their terms, and the
 * plan-time check (check_params) bounds every 32-bit sum, so both orders give the same
 * values for any split into tasks. Tests compare them byte for byte.
 */
#include <string.h>

#include "dsr_fixed.h"
#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"
#include "dsr_gemm.h"
#include "dsr_slice.h"
#include "quant/dsq_params.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DEFORM_X86 1
#endif

/*
 * Scratch layout: the stage arrays shared by every task, then one private slot per task of
 * the parallel hook. Every array starts on a 64-byte boundary (the packed operands of
 * runtime/dsr_gemm.h need it), counted from the scratch address rounded up to 64. All int32
 * unless noted.
 */
typedef struct deform_scratch {
  /* shared */
  int32_t *q;        /* C * H * W */
  int32_t *dw;       /* C * Nmax: offset conv output, then GELU output in place */
  int32_t *offset;   /* g * 2 * Nmax */
  int32_t *position; /* g * 2 * Nmax: Q8 (y, x) */
  int32_t *sampled;  /* C * Nmax */
  int32_t *k;        /* C * Nmax */
  int32_t *v;        /* C * Nmax */
  int16_t *k16t;     /* C * Nmax: k - zero as [head][n][head channel], for int8 q and k */
  int16_t *v16;      /* C * Nmax: v - zero as [channel][n], for int8 attention and v */
  /* shared, packed order (packed_plan) */
  int32_t *table32;      /* heads * (2H - 1) * (2W - 1): the position bias table widened */
  uint8_t *packed_wq;    /* proj_q weights as packed rows (C x C) */
  uint8_t *packed_wk;    /* proj_k weights as packed rows */
  uint8_t *packed_wv;    /* proj_v weights as packed rows */
  uint8_t *packed_wout;  /* proj_out weights as packed rows */
  uint8_t *packed_x;     /* the input as packed columns (C x H * W) */
  uint8_t *packed_samp;  /* the samples as packed columns (C x Nmax) */
  int8_t *sampled8;      /* C * Nmax: the int8 samples, [channel][n] */
  int8_t *k8;            /* C * Nmax: int8 k, [channel][n] */
  int8_t *v8;            /* C * Nmax: int8 v, [channel][n] */
  uint8_t *packed_k;     /* per head: k as packed columns (head channels x Nmax) */
  uint8_t *packed_v;     /* per head: v transposed as packed columns (Nmax x head channels) */
  int32_t *bias_rows;    /* g * H * 4 * Nmax: row factors of the bias taps (bias_axis) */
  int32_t *bias_cols;    /* g * W * 4 * Nmax: column factors */
  /* private to one task */
  int64_t *ln_d;     /* Cg */
  int64_t *row_wide; /* max(H * W, Nmax): 64-bit sums of the row-order projections */
  int32_t *row;      /* max(H * W, Nmax): 32-bit sums of the row-order projections */
  int32_t *ln_in;    /* Cg */
  int32_t *ln_out;   /* Cg */
  int32_t *logits;   /* Nmax */
  int32_t *exps;     /* Nmax */
  int32_t *attn;     /* Nmax */
  int32_t *context;  /* C */
  int32_t *columns;  /* C * PROJECTION_MIN_ROW: short projections, position-major */
  int16_t *q16;      /* C: q - zero of one pixel and head */
  int16_t *attn16;   /* Nmax: attention - zero of one pixel and head */
  /* private, packed order: a block of ATTEND_BLOCK query pixels */
  int8_t *q_block;         /* ATTEND_BLOCK * head channels: q of one head, [pixel][channel] */
  uint8_t *packed_q;       /* q_block as packed rows */
  int32_t *logit_block;    /* ATTEND_BLOCK * Nmax: q.k sums of one head, then logits */
  int32_t *bias_block;     /* ATTEND_BLOCK * Nmax: position bias sums of one head */
  int32_t *taps;           /* 8 * Nmax: bilinear taps of one group's grid positions */
  int8_t *attn_block;      /* ATTEND_BLOCK * Nmax: int8 attention of one head */
  uint8_t *packed_attn;    /* attn_block as packed rows */
  int32_t *context_sums;   /* ATTEND_BLOCK * C: attention . v sums, [pixel][channel] */
  int8_t *context_block;   /* ATTEND_BLOCK * C: int8 context, [pixel][channel] */
  uint8_t *packed_context; /* context_block as packed columns */
  int32_t *out_block;      /* C * ATTEND_BLOCK: proj_out sums, [channel][pixel] */
  uint8_t *packed_x_own;   /* the input as packed columns, for proj_q split by output
                              channels (only where C > H * W, else NULL) */
  int32_t *plane;          /* padded_plane_count: one channel of q - zero, zero-padded */
  int32_t *dw_sums;        /* padded_plane_count: depthwise sums of one channel */
  int64_t *dw_sums_wide;   /* padded_plane_count */
  /* Stage reports (not scratch memory): probe is NULL unless an audit installed one. */
  const dsr_probe *probe;
  int32_t node_index;
  int32_t patch_index;
} deform_scratch;

/* Reports values[k] as element first + k * stride of a stage of the current patch. */
static void probe_stage(const deform_scratch *s, int32_t stage, const int32_t *values,
                        int64_t first, int64_t stride, int64_t count) {
  if (s->probe == NULL || s->probe->on_report == NULL)
    return;
  dsr_probe_report report = {s->node_index, stage,  stage == DSR_DEFORM_STAGE_Q ? 0 : s->patch_index,
                             first,         stride, count, NULL, values};
  s->probe->on_report(s->probe->user, &report);
}

/* Projections over fewer positions than this run position by position from transposed
 * columns, since their rows would be too short for the row order to pay. */
#define PROJECTION_MIN_ROW 16

/* Query pixels that the packed attention handles together: a multiple of the 6-row tiles of
 * the matrix product, small enough that a block's sums stay in cache. */
#define ATTEND_BLOCK 48

static int64_t round64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

/* Reserves bytes at *used and returns their address (NULL when base is NULL). */
static void *carve(uint8_t *base, int64_t *used, int64_t bytes) {
  void *p = base != NULL ? base + *used : NULL;
  *used += round64(bytes);
  return p;
}

/* The scratch address rounded up to 64 bytes; the sizes below include the 63 bytes this may
 * skip. */
static uint8_t *align_scratch(uint8_t *scratch) {
  return scratch + ((64 - (uintptr_t)scratch % 64) % 64);
}

static int64_t deform_samples_max(const dsr_deform_attn *d) {
  return (int64_t)dsr_fixed_offset_grid(d, d->height) * dsr_fixed_offset_grid(d, d->width);
}

/* The matrix products of the packed order. Activations hold int8 values with zero points;
 * weights are symmetric int8. proj: C[oc][j] = W[oc] . (in[:, j] - zero) over count columns. */
static dsr_gemm gemm_projection(int32_t channels, int32_t count, int32_t in_zero) {
  dsr_gemm g = {channels, count, channels, 0, in_zero, 0};
  return g;
}

/* q.k of one head: rows are query pixels, columns samples, reduced over head channels. */
static dsr_gemm gemm_logits(int32_t rows, int32_t samples, int32_t head_channels, int32_t q_zero,
                            int32_t k_zero) {
  dsr_gemm g = {rows, samples, head_channels, q_zero, k_zero, 1};
  return g;
}

/* attention . v of one head: rows are query pixels, columns head channels, over samples. */
static dsr_gemm gemm_context(int32_t rows, int32_t head_channels, int32_t samples,
                             int32_t attn_zero, int32_t v_zero) {
  dsr_gemm g = {rows, head_channels, samples, attn_zero, v_zero, 1};
  return g;
}

/* Values of the zero-padded plane of the offset depthwise conv: the extended patch (at most
 * the map) with offset_pad rows and columns on each side, and room for the kernel taps that
 * a stride leaves past the last output. */
static int64_t padded_plane_count(const dsr_deform_attn *d) {
  int64_t margin = 2 * (int64_t)d->offset_pad + d->offset_kernel + d->offset_stride;
  return (d->height + margin) * (d->width + margin);
}

/*
 * Reads the rows and columns of the layer's position bias table. They are 2H - 1 by 2W - 1
 * for the map the layer runs on, unless a model exported with dynamic axes runs at another
 * map size than it was built for. dsr_fixed_deform_check validates the tensor.
 */
static void table_size(const dsr_model *model, const dsr_deform_attn *d, int32_t *rows,
                       int32_t *cols) {
  const dsr_tensor *t = &model->tensors[d->params[DSR_DEFORM_RPE_TABLE]];
  *rows = t->dims[1];
  *cols = t->dims[2];
}

/* Returns the number of table values over all heads. */
static int64_t table_elements(const dsr_model *model, const dsr_deform_attn *d) {
  int32_t rows, cols;
  table_size(model, d, &rows, &cols);
  return (int64_t)d->heads * rows * cols;
}

/*
 * Returns the table coordinate, in Q8, of v, the coordinate for a table of 2 * size - 1
 * entries along this axis. Another entry count scales the displacement v - (size - 1) by
 * (entries - 1) / (2 (size - 1)) about the table centre, as the float kernel and
 * grid_sample's normalised coordinates do. The result is rounded half away from zero.
 */
static inline int32_t table_coord(int32_t v, int32_t size, int32_t entries) {
  if (entries == 2 * size - 1)
    return v;
  int64_t centre = (int64_t)(entries - 1) * (DSR_FIXED_POS_ONE / 2);
  if (size < 2)
    return (int32_t)centre; /* a 1-pixel map has no displacement */
  int64_t displacement = (int64_t)v - (int64_t)(size - 1) * DSR_FIXED_POS_ONE;
  return (int32_t)(centre + dsr_fixed_div_round64(displacement * (entries - 1),
                                                 2 * (int64_t)(size - 1)));
}

/* Lays out the shared arrays and returns their bytes (base NULL: sizes only). */
static int64_t layout_shared(const dsr_model *model, const dsr_deform_attn *d, uint8_t *base,
                             deform_scratch *s) {
  int64_t c = d->channels, g = d->groups;
  int64_t n_max = deform_samples_max(d);
  int64_t pixels = (int64_t)d->height * d->width;
  int64_t counts[7] = {c * pixels, c * n_max, g * 2 * n_max, g * 2 * n_max,
                       c * n_max,  c * n_max, c * n_max};
  int32_t **slots[7] = {&s->q, &s->dw, &s->offset, &s->position, &s->sampled, &s->k, &s->v};
  int64_t used = 0;
  for (int32_t i = 0; i < 7; i++)
    *slots[i] = carve(base, &used, counts[i] * (int64_t)sizeof(int32_t));
  s->k16t = carve(base, &used, c * n_max * (int64_t)sizeof(int16_t));
  s->v16 = carve(base, &used, c * n_max * (int64_t)sizeof(int16_t));

  int32_t ci = d->channels, hc = d->head_channels, n_i = (int32_t)n_max;
  dsr_gemm proj = gemm_projection(ci, (int32_t)pixels, 0);
  dsr_gemm proj_samples = gemm_projection(ci, n_i, 0);
  dsr_gemm logits = gemm_logits(1, n_i, hc, 0, 0);
  dsr_gemm context = gemm_context(1, hc, n_i, 0, 0);
  s->table32 = carve(base, &used, table_elements(model, d) * (int64_t)sizeof(int32_t));
  s->packed_wq = carve(base, &used, (int64_t)dsr_gemm_rows_bytes(&proj));
  s->packed_wk = carve(base, &used, (int64_t)dsr_gemm_rows_bytes(&proj));
  s->packed_wv = carve(base, &used, (int64_t)dsr_gemm_rows_bytes(&proj));
  s->packed_wout = carve(base, &used, (int64_t)dsr_gemm_rows_bytes(&proj));
  s->packed_x = carve(base, &used, (int64_t)dsr_gemm_columns_bytes(&proj));
  s->packed_samp = carve(base, &used, (int64_t)dsr_gemm_columns_bytes(&proj_samples));
  s->sampled8 = carve(base, &used, c * n_max);
  s->k8 = carve(base, &used, c * n_max);
  s->v8 = carve(base, &used, c * n_max);
  s->packed_k = carve(base, &used, d->heads * (int64_t)dsr_gemm_columns_bytes(&logits));
  s->packed_v = carve(base, &used, d->heads * (int64_t)dsr_gemm_columns_bytes(&context));
  s->bias_rows = carve(base, &used, g * d->height * 4 * n_max * (int64_t)sizeof(int32_t));
  s->bias_cols = carve(base, &used, g * d->width * 4 * n_max * (int64_t)sizeof(int32_t));
  return used;
}

/* Lays out one private slot at base and returns its bytes (base NULL: sizes only). */
static int64_t layout_private(const dsr_deform_attn *d, uint8_t *base, deform_scratch *s) {
  int64_t c = d->channels, cg = d->channels / d->groups, hc = d->head_channels;
  int64_t n_max = deform_samples_max(d);
  int64_t pixels = (int64_t)d->height * d->width;
  int64_t row = pixels > n_max ? pixels : n_max;
  int64_t used = 0;
  s->ln_d = carve(base, &used, cg * (int64_t)sizeof(int64_t));
  s->row_wide = carve(base, &used, row * (int64_t)sizeof(int64_t));
  int64_t counts[8] = {row, cg, cg, n_max, n_max, n_max, c, c * PROJECTION_MIN_ROW};
  int32_t **slots[8] = {&s->row,  &s->ln_in, &s->ln_out,  &s->logits,
                        &s->exps, &s->attn,  &s->context, &s->columns};
  for (int32_t i = 0; i < 8; i++)
    *slots[i] = carve(base, &used, counts[i] * (int64_t)sizeof(int32_t));
  s->q16 = carve(base, &used, c * (int64_t)sizeof(int16_t));
  s->attn16 = carve(base, &used, n_max * (int64_t)sizeof(int16_t));

  int64_t block = ATTEND_BLOCK;
  dsr_gemm logits = gemm_logits(ATTEND_BLOCK, (int32_t)n_max, (int32_t)hc, 0, 0);
  dsr_gemm context = gemm_context(ATTEND_BLOCK, (int32_t)hc, (int32_t)n_max, 0, 0);
  dsr_gemm out = gemm_projection(d->channels, ATTEND_BLOCK, 0);
  s->q_block = carve(base, &used, block * hc);
  s->packed_q = carve(base, &used, (int64_t)dsr_gemm_rows_bytes(&logits));
  s->logit_block = carve(base, &used, block * n_max * (int64_t)sizeof(int32_t));
  s->bias_block = carve(base, &used, block * n_max * (int64_t)sizeof(int32_t));
  s->taps = carve(base, &used, 8 * n_max * (int64_t)sizeof(int32_t));
  s->attn_block = carve(base, &used, block * n_max);
  s->packed_attn = carve(base, &used, (int64_t)dsr_gemm_rows_bytes(&context));
  s->context_sums = carve(base, &used, block * c * (int64_t)sizeof(int32_t));
  s->context_block = carve(base, &used, block * c);
  s->packed_context = carve(base, &used, (int64_t)dsr_gemm_columns_bytes(&out));
  s->out_block = carve(base, &used, block * c * (int64_t)sizeof(int32_t));
  dsr_gemm proj = gemm_projection(d->channels, (int32_t)pixels, 0);
  s->packed_x_own = d->channels > pixels
                        ? carve(base, &used, (int64_t)dsr_gemm_columns_bytes(&proj))
                        : NULL;
  s->plane = carve(base, &used, padded_plane_count(d) * (int64_t)sizeof(int32_t));
  s->dw_sums = carve(base, &used, padded_plane_count(d) * (int64_t)sizeof(int32_t));
  s->dw_sums_wide = carve(base, &used, padded_plane_count(d) * (int64_t)sizeof(int64_t));
  return used;
}

/* Points s at the shared arrays and at private slot 0 of scratch; returns the bytes for
 * worker_count slots, alignment included. */
static int64_t layout_scratch(const dsr_model *model, const dsr_deform_attn *d, uint8_t *scratch,
                              int32_t worker_count, deform_scratch *s) {
  uint8_t *base = scratch != NULL ? align_scratch(scratch) : NULL;
  int64_t shared = layout_shared(model, d, base, s);
  int64_t slot = layout_private(d, base != NULL ? base + shared : NULL, s);
  return 63 + shared + slot * worker_count;
}

/* A copy of shared whose private pointers are those of slot index of scratch. */
static deform_scratch private_slot(const dsr_model *model, const dsr_deform_attn *d,
                                   const deform_scratch *shared, uint8_t *scratch,
                                   int32_t index) {
  deform_scratch s = *shared;
  deform_scratch sizes;
  int64_t shared_bytes = layout_shared(model, d, NULL, &sizes);
  int64_t slot_bytes = layout_private(d, NULL, &sizes);
  layout_private(d, align_scratch(scratch) + shared_bytes + slot_bytes * index, &s);
  return s;
}

size_t dsr_fixed_deform_scratch_bytes_for_workers(const dsr_model *model, const dsr_node *node,
                                                  int32_t worker_count) {
  const dsr_deform_attn *d = node->deform;
  /* Parameters that dsr_fixed_deform_check rejects get no scratch rather than a bogus size. */
  if (d->groups < 1 || d->offset_stride < 1 || d->channels < 1 || d->height < 1 ||
      d->width < 1 || d->offset_pad < 0 || 2 * d->offset_pad < d->offset_kernel - 1 ||
      d->channels % d->groups != 0 || d->height > 16384 || d->width > 16384 || d->heads < 1 ||
      d->head_channels < 1 || d->heads % d->groups != 0)
    return 0;
  deform_scratch unused;
  return (size_t)layout_scratch(model, d, NULL, worker_count < 1 ? 1 : worker_count, &unused);
}

size_t dsr_fixed_deform_scratch_bytes(const dsr_model *model, const dsr_node *node) {
  return dsr_fixed_deform_scratch_bytes_for_workers(model, node, 1);
}

typedef struct deform_sections {
  const int32_t *s[DSQ_DA_SECTION_COUNT];
} deform_sections;

static void find_sections(const dsr_node *node, deform_sections *out) {
  for (int32_t i = 0; i < DSQ_DA_SECTION_COUNT; i++)
    out->s[i] = node->qwords + node->qwords[2 + i];
}

static const void *param_data(const dsr_model *model, const dsr_deform_attn *d,
                              dsr_deform_param p) {
  return model->tensors[d->params[p]].data_q;
}

/* 1x1 convolution of one position: in[c * stride] for c < channels, int8 weights (out, in). */
static int32_t pointwise(const int32_t *in, int64_t stride, int32_t channels, int32_t in_zero,
                         const int8_t *weights_row, int32_t bias, const int32_t *pair, int wide,
                         int32_t out_zero, int32_t out_min, int32_t out_max) {
  int64_t acc = bias;
  for (int32_t c = 0; c < channels; c++)
    acc += (int64_t)(in[c * stride] - in_zero) * weights_row[c];
  int32_t r = wide ? dsr_fixed_requant64(acc, pair[0], pair[1])
                   : dsr_fixed_requant32((int32_t)acc, pair[0], pair[1]);
  return (int32_t)dsr_fixed_clamp64((int64_t)out_zero + r, out_min, out_max);
}

/* Sum over count contiguous positions of (in[c] - in_zero) * weights_row[c], the terms at
 * most 2^15 * 128 = 2^22. wide selects the 64-bit sum; narrow callers bound it by 2^31 - 1. */
DSR_FIXED_VECTOR_CLONES
static int64_t dot_contiguous(const int32_t *restrict in, int32_t in_zero,
                              const int8_t *restrict weights_row, int32_t count, int wide) {
  if (wide) {
    int64_t acc = 0;
    for (int32_t c = 0; c < count; c++)
      acc += (int64_t)((in[c] - in_zero) * weights_row[c]);
    return acc;
  }
  int32_t acc = 0;
  for (int32_t c = 0; c < count; c++)
    acc += (in[c] - in_zero) * weights_row[c];
  return acc;
}

/* pointwise() for stride 1, with a sum that vectorizes: the same value. Narrow sums fit
 * int32 by the plan-time bound on channels * 255 * 128 + |bias|. */
static int32_t pointwise_contiguous(const int32_t *in, int32_t channels, int32_t in_zero,
                                    const int8_t *weights_row, int32_t bias, const int32_t *pair,
                                    int wide, int32_t out_zero, int32_t out_min,
                                    int32_t out_max) {
  int64_t acc = bias + dot_contiguous(in, in_zero, weights_row, channels, wide);
  int32_t r = wide ? dsr_fixed_requant64(acc, pair[0], pair[1])
                   : dsr_fixed_requant32((int32_t)acc, pair[0], pair[1]);
  return (int32_t)dsr_fixed_clamp64((int64_t)out_zero + r, out_min, out_max);
}

typedef struct stage_info {
  int32_t zero, min, max, wide_in;
} stage_info;

static stage_info stage(const dsr_qparams *q) {
  stage_info s;
  s.zero = q->zero_point;
  dsr_fixed_dtype_range(q->dtype, &s.min, &s.max);
  s.wide_in = q->dtype != DSR_DTYPE_I8;
  return s;
}

/* values[i] = zero + values[i] saturated to [lo, hi], in place. */
DSR_FIXED_VECTOR_CLONES
static void saturate_row(int32_t *values, int64_t count, int32_t zero, int32_t lo, int32_t hi) {
  for (int64_t i = 0; i < count; i++) {
    int64_t v = (int64_t)zero + values[i];
    values[i] = (int32_t)(v < lo ? lo : (v > hi ? hi : v));
  }
}

/* narrow[i] = zero + values[i] saturated to [lo, hi], an int8 range. */
DSR_FIXED_VECTOR_CLONES
static void saturate_row8(const int32_t *restrict values, int64_t count, int32_t zero,
                          int32_t lo, int32_t hi, int8_t *restrict narrow) {
  for (int64_t i = 0; i < count; i++) {
    int64_t v = (int64_t)zero + values[i];
    narrow[i] = (int8_t)(v < lo ? lo : (v > hi ? hi : v));
  }
}

/* narrow[i] = values[i] for values in the int8 range. */
DSR_FIXED_VECTOR_CLONES
static void copy_row8(const int32_t *restrict values, int64_t count, int8_t *restrict narrow) {
  for (int64_t i = 0; i < count; i++)
    narrow[i] = (int8_t)values[i];
}

/* Reference point of grid index i in Q8 pixels of a patch side of size pixels. */
static int32_t reference_q8(int32_t convention, int32_t i, int32_t grid, int32_t size) {
  int64_t numerator = (int64_t)(2 * i + 1) * (size - 1) * DSR_FIXED_POS_ONE;
  if (convention != DSR_DEFORM_DAT_PP)
    return (int32_t)dsr_fixed_div_round64(numerator, 2 * (int64_t)grid);
  if (grid == 1)
    return (int32_t)dsr_fixed_div_round64((int64_t)(size - 1) * DSR_FIXED_POS_ONE, 2);
  return (int32_t)dsr_fixed_div_round64(numerator, 2 * (int64_t)(grid - 1));
}

/* Bias table row (or column) of query q before the sample position is subtracted, in Q8:
 * (size - 1) + q - ext0, or with queries at pixel centres (DAT 2022) (size - 1) +
 * (q + 0.5) (size - 1) / size - ext0, rounded half away from zero. */
static int32_t bias_base_q8(int32_t convention, int32_t q, int32_t size, int32_t ext0) {
  int64_t base = (int64_t)(size - 1 - ext0) * DSR_FIXED_POS_ONE;
  if (convention != DSR_DEFORM_DAT_CENTRED)
    return (int32_t)(base + (int64_t)q * DSR_FIXED_POS_ONE);
  int64_t centred = dsr_fixed_div_round64((int64_t)(2 * q + 1) * (size - 1) * DSR_FIXED_POS_ONE,
                                          2 * (int64_t)size);
  return (int32_t)(base + centred);
}

/* Offset in Q8 pixels from the raw offset o with zero point o_zero (section DSQ_DA_POSITION).
 * The OFFSET stage is int16 (zero point 0) by class, but int8 with a zero point in pure int8
 * or mixed precision. The tanh table of DAT takes the raw value, zero point included. */
static int64_t offset_q8(const dsr_deform_attn *d, const int32_t *section, int32_t o,
                         int32_t o_zero, int32_t span, int32_t grid) {
  if (d->convention == DSR_DEFORM_DAT_PP)
    return dsr_fixed_requant32((o - o_zero) * span, section[0], section[1]);
  int32_t t = dsr_fixed_lut_apply(section + 2, o, 0, -32767, 32767);
  int32_t scaled = dsr_fixed_requant32(t * span, section[0], section[1]);
  return dsr_fixed_div_round64(scaled, (int64_t)grid * DSR_FIXED_POS_ONE);
}

/*
 * Row-order 1x1 projection, the same sums as pointwise() for every position: for each output
 * channel, the sums over count positions accumulate in scratch rows, one input channel at a
 * time, then are requantized and saturated to the stage. in_at(c) gives channel c's row.
 * Narrow sums fit int32 by the plan-time bound on channels * 255 * 128 + |bias|. Wide terms
 * are at most 2^15 * 128 = 2^22 and go straight into the int64 row.
 */
typedef struct projection {
  const int8_t *weights;  /* (out, in) */
  const int32_t *bias;    /* NULL: none */
  const int32_t *pairs;   /* one per output channel */
  int32_t channels;       /* in and out */
  int wide;
  stage_info out;
} projection;

/* Adds w * (in[i] - zero) to the sums of a row of count, from an int32 stage row. */
DSR_FIXED_VECTOR_CLONES
static void add_row32(int32_t *restrict acc, int64_t *restrict acc_wide, const int32_t *restrict in,
                      int32_t zero, int32_t w, int64_t count, int wide) {
  if (wide) {
    for (int64_t i = 0; i < count; i++)
      acc_wide[i] += (int64_t)((in[i] - zero) * w);
  } else {
    for (int64_t i = 0; i < count; i++)
      acc[i] += (in[i] - zero) * w;
  }
}

/* Adds w * (x[i] - zero) to the sums of a row of count, from an int8 or int16 tensor row. */
DSR_FIXED_VECTOR_CLONES
static void add_row_input(int32_t *restrict acc, int64_t *restrict acc_wide, const void *x,
                          int32_t dtype, int64_t offset, int32_t zero, int32_t w, int64_t count) {
  if (dtype == DSR_DTYPE_I8) {
    const int8_t *row = (const int8_t *)x + offset;
    for (int64_t i = 0; i < count; i++)
      acc[i] += (row[i] - zero) * w;
  } else {
    const int16_t *row = (const int16_t *)x + offset;
    for (int64_t i = 0; i < count; i++)
      acc_wide[i] += (int64_t)((row[i] - zero) * w);
  }
}

/* Requantizes one output channel's sums and writes its stage values to dst. */
static void finish_row(const projection *pr, int32_t oc, int64_t count, deform_scratch *s,
                       int32_t *dst) {
  if (pr->wide)
    dsr_fixed_requant_row64(s->row_wide, count, pr->pairs + 2 * oc, 0, s->row);
  else
    dsr_fixed_requant_row32(s->row, count, pr->pairs + 2 * oc, 0, s->row);
  for (int64_t i = 0; i < count; i++)
    dst[i] = (int32_t)dsr_fixed_clamp64((int64_t)pr->out.zero + s->row[i], pr->out.min,
                                        pr->out.max);
}

/* Sets the sums of a row of count to the bias of output channel oc. */
static void start_row(const projection *pr, int32_t oc, int64_t count, deform_scratch *s) {
  int32_t bias = pr->bias != NULL ? pr->bias[oc] : 0;
  for (int64_t i = 0; i < count; i++) {
    s->row[i] = bias;
    s->row_wide[i] = bias;
  }
}

/* Projects count (< PROJECTION_MIN_ROW) positions whose channel values are
 * columns[p * channels + c] into out[oc * count + p], with the values of pointwise(). */
static void project_columns(const projection *pr, const int32_t *columns, int32_t in_zero,
                            int64_t count, int32_t *out) {
  for (int64_t p = 0; p < count; p++) {
    for (int32_t oc = 0; oc < pr->channels; oc++) {
      out[oc * count + p] = pointwise_contiguous(
          columns + p * pr->channels, pr->channels, in_zero,
          pr->weights + (int64_t)oc * pr->channels, pr->bias != NULL ? pr->bias[oc] : 0,
          pr->pairs + 2 * oc, pr->wide, pr->out.zero, pr->out.min, pr->out.max);
    }
  }
}

/* Projects a stage held as in[c * count + i] (values with zero point in_zero) into out, output
 * channels oc_begin..oc_end - 1 (all of them for short rows). */
static void project_stage(const projection *pr, const int32_t *in, int32_t in_zero, int64_t count,
                          int32_t oc_begin, int32_t oc_end, deform_scratch *s, int32_t *out) {
  if (count < PROJECTION_MIN_ROW) {
    for (int32_t c = 0; c < pr->channels; c++) {
      for (int64_t p = 0; p < count; p++)
        s->columns[p * pr->channels + c] = in[c * count + p];
    }
    project_columns(pr, s->columns, in_zero, count, out);
    return;
  }
  for (int32_t oc = oc_begin; oc < oc_end; oc++) {
    start_row(pr, oc, count, s);
    const int8_t *w = pr->weights + (int64_t)oc * pr->channels;
    for (int32_t c = 0; c < pr->channels; c++) {
      if (w[c] != 0)
        add_row32(s->row, s->row_wide, in + c * count, in_zero, w[c], count, pr->wide);
    }
    finish_row(pr, oc, count, s, out + oc * count);
  }
}

/* proj_q in row order, output channels oc_begin..oc_end - 1 (all of them for maps under
 * PROJECTION_MIN_ROW pixels): the same values as compute_q_reference. */
static void compute_q_rows(const dsr_model *model, const dsr_node *node, const void *x,
                           const deform_sections *sec, int32_t oc_begin, int32_t oc_end,
                           deform_scratch *s) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int64_t pixels = (int64_t)d->height * d->width;
  projection pr = {param_data(model, d, DSR_DEFORM_PROJ_Q_W),
                   param_data(model, d, DSR_DEFORM_PROJ_Q_B), sec->s[DSQ_DA_PROJ_Q],
                   d->channels, xt->qparams.dtype != DSR_DTYPE_I8,
                   stage(&d->stage_qparams[DSR_DEFORM_STAGE_Q])};
  if (pixels < PROJECTION_MIN_ROW) {
    for (int32_t c = 0; c < pr.channels; c++) {
      for (int64_t p = 0; p < pixels; p++)
        s->columns[p * pr.channels + c] = dsr_fixed_load(x, xt->qparams.dtype, c * pixels + p);
    }
    project_columns(&pr, s->columns, xt->qparams.zero_point, pixels, s->q);
    return;
  }
  for (int32_t oc = oc_begin; oc < oc_end; oc++) {
    start_row(&pr, oc, pixels, s);
    const int8_t *w = pr.weights + (int64_t)oc * pr.channels;
    for (int32_t c = 0; c < pr.channels; c++) {
      if (w[c] != 0)
        add_row_input(s->row, s->row_wide, x, xt->qparams.dtype, c * pixels,
                      xt->qparams.zero_point, w[c], pixels);
    }
    finish_row(&pr, oc, pixels, s, s->q + oc * pixels);
  }
}

/* proj_q position by position: the reference order. */
static void compute_q_reference(const dsr_model *model, const dsr_node *node, const void *x,
                                const deform_sections *sec, deform_scratch *s) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int32_t c_count = d->channels;
  int64_t pixels = (int64_t)d->height * d->width;
  stage_info qs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_Q]);
  const int8_t *w = param_data(model, d, DSR_DEFORM_PROJ_Q_W);
  const int32_t *b = param_data(model, d, DSR_DEFORM_PROJ_Q_B);
  int32_t x_zero = xt->qparams.zero_point;
  int wide = xt->qparams.dtype != DSR_DTYPE_I8;
  for (int64_t p = 0; p < pixels; p++) {
    for (int32_t oc = 0; oc < c_count; oc++) {
      int64_t acc = b[oc];
      for (int32_t c = 0; c < c_count; c++)
        acc += (int64_t)(dsr_fixed_load(x, xt->qparams.dtype, c * pixels + p) - x_zero) *
               w[(int64_t)oc * c_count + c];
      const int32_t *pair = sec->s[DSQ_DA_PROJ_Q] + 2 * oc;
      int32_t r = wide ? dsr_fixed_requant64(acc, pair[0], pair[1])
                       : dsr_fixed_requant32((int32_t)acc, pair[0], pair[1]);
      s->q[oc * pixels + p] = (int32_t)dsr_fixed_clamp64((int64_t)qs.zero + r, qs.min, qs.max);
    }
  }
}

typedef struct patch_geometry {
  dsr_patch p;
  int32_t h, w, hk, wk, n;
  int physical;
} patch_geometry;

/* Depthwise conv of the offset network for the flat channels ch_begin..ch_end - 1 (group
 * gi = ch / Cg), over the extended patch seen as a zero-padded image. */
static void offset_depthwise(const dsr_model *model, const dsr_deform_attn *d,
                             const deform_sections *sec, const patch_geometry *pg,
                             int32_t ch_begin, int32_t ch_end, deform_scratch *s) {
  int32_t cg = d->channels / d->groups, k = d->offset_kernel, r = d->offset_stride;
  int32_t pad = d->offset_pad;
  int64_t map = (int64_t)d->height * d->width;
  stage_info qs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_Q]);
  stage_info dws = stage(&d->stage_qparams[DSR_DEFORM_STAGE_OFFSET_DW]);
  const int8_t *dw_w = param_data(model, d, DSR_DEFORM_OFFSET_DW_W);
  const int32_t *dw_b = param_data(model, d, DSR_DEFORM_OFFSET_DW_B);
  int dw_wide = qs.wide_in;

  for (int32_t ch = ch_begin; ch < ch_end; ch++) {
    int32_t c = ch % cg;
    const int32_t *plane = s->q + (int64_t)ch * map;
    const int8_t *wc = dw_w + (int64_t)c * k * k;
    const int32_t *pair = sec->s[DSQ_DA_OFFSET_DW] + 2 * c;
    for (int32_t i = 0; i < pg->hk; i++) {
      for (int32_t j = 0; j < pg->wk; j++) {
        int64_t acc = dw_b[c];
        for (int32_t ky = 0; ky < k; ky++) {
          int32_t y = i * r - pad + ky;
          if (y < 0 || y >= pg->h)
            continue; /* zero padding outside the extended patch */
          for (int32_t kx = 0; kx < k; kx++) {
            int32_t x = j * r - pad + kx;
            if (x < 0 || x >= pg->w)
              continue;
            int32_t qv = plane[(int64_t)(pg->p.ext_y0 + y) * d->width + pg->p.ext_x0 + x];
            acc += (int64_t)(qv - qs.zero) * wc[ky * k + kx];
          }
        }
        int32_t v = dw_wide ? dsr_fixed_requant64(acc, pair[0], pair[1])
                            : dsr_fixed_requant32((int32_t)acc, pair[0], pair[1]);
        s->dw[(int64_t)ch * pg->n + i * pg->wk + j] =
            (int32_t)dsr_fixed_clamp64((int64_t)dws.zero + v, dws.min, dws.max);
      }
    }
  }
}

/*
 * Depthwise sums over the r x r phases of a padded plane (phase (a, b) contains the plane's
 * rows a, a + r, ... and columns b, b + r, ..., phase_w values a row). Tap (ky, kx) of
 * output (i, j) reads row i + ky / r and column j + kx / r of phase (ky % r, kx % r), so
 * acc[o] for o < count sums every tap at o + (ky / r) * phase_w + kx / r: output (i, j) is
 * acc[i * phase_w + j], and the entries with j >= the output width are unused. Every tap is
 * one pass over contiguous values.
 */
DSR_FIXED_VECTOR_CLONES
static void depthwise_phases(const int32_t *restrict phases, int64_t phase_size,
                             int32_t phase_w, int32_t r, const int8_t *w, int32_t k,
                             int32_t count, int32_t bias, int wide, int32_t *restrict acc,
                             int64_t *restrict acc_wide) {
  if (wide) {
    for (int32_t o = 0; o < count; o++)
      acc_wide[o] = bias;
  } else {
    for (int32_t o = 0; o < count; o++)
      acc[o] = bias;
  }
  for (int32_t ky = 0; ky < k; ky++) {
    for (int32_t kx = 0; kx < k; kx++) {
      int32_t weight = w[ky * k + kx];
      if (weight == 0)
        continue;
      const int32_t *taps = phases + ((ky % r) * r + kx % r) * phase_size +
                            (ky / r) * phase_w + kx / r;
      if (wide) {
        for (int32_t o = 0; o < count; o++)
          acc_wide[o] += (int64_t)taps[o] * weight;
      } else {
        for (int32_t o = 0; o < count; o++)
          acc[o] += taps[o] * weight;
      }
    }
  }
}

/* Copies channel plane in (the patch, q with zero point zero) into the r x r phases of its
 * zero-padded plane (depthwise_phases), each phase_h x phase_w. */
static void fill_phases(const int32_t *in, int32_t in_stride, int32_t h, int32_t w,
                        int32_t pad, int32_t r, int32_t zero, int32_t phase_h,
                        int32_t phase_w, int32_t *phases) {
  int64_t phase_size = (int64_t)phase_h * phase_w;
  for (int32_t a = 0; a < r; a++) {
    for (int32_t b = 0; b < r; b++) {
      int32_t *phase = phases + (a * r + b) * phase_size;
      /* Columns x with b + x * r - pad inside [0, w) read the patch, the others are 0. */
      int32_t x_begin = pad - b > 0 ? (pad - b + r - 1) / r : 0;
      int32_t x_end = w + pad - b > 0 ? (w + pad - b + r - 1) / r : 0;
      x_begin = x_begin < phase_w ? x_begin : phase_w;
      x_end = x_end < phase_w ? x_end : phase_w;
      x_end = x_end > x_begin ? x_end : x_begin;
      for (int32_t y = 0; y < phase_h; y++) {
        int32_t *row = phase + (int64_t)y * phase_w;
        int32_t src_y = a + y * r - pad;
        if (src_y < 0 || src_y >= h) {
          memset(row, 0, sizeof(int32_t) * (size_t)phase_w);
          continue;
        }
        const int32_t *src = in + (int64_t)src_y * in_stride;
        for (int32_t x = 0; x < x_begin; x++)
          row[x] = 0;
        for (int32_t x = x_begin; x < x_end; x++)
          row[x] = src[x * r + b - pad] - zero;
        for (int32_t x = x_end; x < phase_w; x++)
          row[x] = 0;
      }
    }
  }
}

/*
 * offset_depthwise from the zero-padded phases of each channel's patch (q minus its zero
 * point): the same sums without bounds tests, since a padding tap adds 0 as the skipped tap
 * does. Narrow sums fit int32 by the plan-time bound on k * k * 255 * 128 plus the bias.
 * Wide terms are at most 2^16 * 128.
 */
static void offset_depthwise_rows(const dsr_model *model, const dsr_deform_attn *d,
                                  const deform_sections *sec, const patch_geometry *pg,
                                  int32_t ch_begin, int32_t ch_end, deform_scratch *s) {
  int32_t cg = d->channels / d->groups, k = d->offset_kernel, r = d->offset_stride;
  int64_t map = (int64_t)d->height * d->width;
  stage_info qs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_Q]);
  stage_info dws = stage(&d->stage_qparams[DSR_DEFORM_STAGE_OFFSET_DW]);
  const int8_t *dw_w = param_data(model, d, DSR_DEFORM_OFFSET_DW_W);
  const int32_t *dw_b = param_data(model, d, DSR_DEFORM_OFFSET_DW_B);
  int wide = qs.wide_in;
  /* The padded plane starts offset_pad rows and columns before the patch and ends at the
   * last tap of the last output. Each phase covers 1/r of its rows and columns. */
  int32_t plane_h = (pg->hk - 1) * r + k, plane_w = (pg->wk - 1) * r + k;
  int32_t phase_h = (plane_h + r - 1) / r, phase_w = (plane_w + r - 1) / r;
  int32_t count = (pg->hk - 1) * phase_w + pg->wk;

  for (int32_t ch = ch_begin; ch < ch_end; ch++) {
    int32_t c = ch % cg;
    const int32_t *in = s->q + (int64_t)ch * map + (int64_t)pg->p.ext_y0 * d->width + pg->p.ext_x0;
    fill_phases(in, d->width, pg->h, pg->w, d->offset_pad, r, qs.zero, phase_h, phase_w,
                s->plane);
    const int8_t *wc = dw_w + (int64_t)c * k * k;
    const int32_t *pair = sec->s[DSQ_DA_OFFSET_DW] + 2 * c;
    depthwise_phases(s->plane, (int64_t)phase_h * phase_w, phase_w, r, wc, k, count, dw_b[c],
                     wide, s->dw_sums, s->dw_sums_wide);
    if (wide)
      dsr_fixed_requant_row64(s->dw_sums_wide, count, pair, 0, s->dw_sums);
    else
      dsr_fixed_requant_row32(s->dw_sums, count, pair, 0, s->dw_sums);
    saturate_row(s->dw_sums, count, dws.zero, dws.min, dws.max);
    for (int32_t i = 0; i < pg->hk; i++)
      memcpy(s->dw + (int64_t)ch * pg->n + (int64_t)i * pg->wk,
             s->dw_sums + (int64_t)i * phase_w, sizeof(int32_t) * (size_t)pg->wk);
  }
}

/* LayerNorm, GELU and the pointwise conv to (dy, dx) of the offset network, for the grid
 * positions n_begin..n_end - 1 of every group. */
static void offset_points(const dsr_model *model, const dsr_deform_attn *d,
                          const deform_sections *sec, const patch_geometry *pg, int32_t n_begin,
                          int32_t n_end, deform_scratch *s) {
  int32_t cg = d->channels / d->groups;
  stage_info dws = stage(&d->stage_qparams[DSR_DEFORM_STAGE_OFFSET_DW]);
  stage_info lns = stage(&d->stage_qparams[DSR_DEFORM_STAGE_OFFSET_LN]);
  stage_info gs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_OFFSET_GELU]);
  stage_info os = stage(&d->stage_qparams[DSR_DEFORM_STAGE_OFFSET]);
  const int8_t *pw_w = param_data(model, d, DSR_DEFORM_OFFSET_PW_W);

  for (int32_t gi = 0; gi < d->groups; gi++) {
    int64_t group_first = (int64_t)gi * cg * pg->n;
    for (int32_t n = n_begin; n < n_end; n++) {
      int32_t *column = s->dw + (int64_t)gi * cg * pg->n + n;
      for (int32_t c = 0; c < cg; c++)
        s->ln_in[c] = column[(int64_t)c * pg->n];
      dsr_fixed_layer_norm_row(s->ln_in, dws.zero, sec->s[DSQ_DA_OFFSET_LN], lns.zero, lns.min,
                               lns.max, s->ln_d, s->ln_out);
      probe_stage(s, DSR_DEFORM_STAGE_OFFSET_LN, s->ln_out, group_first + n, pg->n, cg);
      for (int32_t c = 0; c < cg; c++)
        column[(int64_t)c * pg->n] =
            dsr_fixed_lut_apply(sec->s[DSQ_DA_OFFSET_GELU], s->ln_out[c], gs.zero, gs.min,
                                gs.max);
      for (int32_t axis = 0; axis < 2; axis++) {
        s->offset[(int64_t)(gi * 2 + axis) * pg->n + n] =
            pointwise(column, pg->n, cg, gs.zero, pw_w + (int64_t)axis * cg, 0,
                      sec->s[DSQ_DA_OFFSET_PW] + 2 * axis, gs.wide_in, os.zero, os.min, os.max);
      }
    }
    probe_stage(s, DSR_DEFORM_STAGE_OFFSET_GELU, s->dw + group_first, group_first, 1,
                (int64_t)cg * pg->n);
  }
}

/* Sum of (in[i] - zero) * 2^pre_shift, in place into values: |value| <= 2^16 and count <=
 * DSQ_LN_MAX_ELEMENTS = 2^14, so the sum stays within 2^30. */
DSR_FIXED_VECTOR_CLONES
static int32_t norm_load(int32_t *values, int32_t count, int32_t zero, int32_t pre_shift) {
  int32_t sum = 0;
  for (int32_t i = 0; i < count; i++) {
    values[i] = (values[i] - zero) * (1 << pre_shift);
    sum += values[i];
  }
  return sum;
}

/* values[i] -= mean in place; returns the sum of squares (|d| <= 2^17, under 2^48 in all). */
DSR_FIXED_VECTOR_CLONES
static int64_t norm_center(int32_t *values, int32_t count, int32_t mean) {
  int64_t squares = 0;
  for (int32_t i = 0; i < count; i++) {
    values[i] -= mean;
    squares += (int64_t)values[i] * values[i];
  }
  return squares;
}

/* out[i] = round(d[i] * reciprocal / 2^37) half away from zero, |d * reciprocal| < 2^57 (as
 * dsr_fixed_layer_norm_row bounds it). The arithmetic shift rounds toward minus infinity, so
 * x + 2^36 - (x < 0) gives the half-away rounding for either sign. */
DSR_FIXED_VECTOR_CLONES
static void norm_scale(const int32_t *restrict d, int32_t count, int64_t reciprocal,
                       int32_t *restrict out) {
  const int64_t half = (int64_t)1 << 36;
  for (int32_t i = 0; i < count; i++) {
    int64_t x = (int64_t)d[i] * reciprocal;
    out[i] = (int32_t)((x + half - (x < 0)) >> 37);
  }
}

/* values[i] = zero + round((values[i] + channel[3i + 2]) / 2^DSQ_LN_OUT_EXTRA_BITS),
 * saturated to [lo, hi], in place. */
DSR_FIXED_VECTOR_CLONES
static void norm_finish(int32_t *values, int32_t count, const int32_t *channel, int32_t zero,
                        int32_t lo, int32_t hi) {
  const int64_t half = (int64_t)1 << (DSQ_LN_OUT_EXTRA_BITS - 1);
  for (int32_t i = 0; i < count; i++) {
    int64_t x = (int64_t)values[i] + channel[3 * i + 2];
    int64_t v = zero + ((x + half - (x < 0)) >> DSQ_LN_OUT_EXTRA_BITS);
    values[i] = (int32_t)(v < lo ? lo : (v > hi ? hi : v));
  }
}

/* Computes dsr_fixed_layer_norm_row from vector steps, with the same integers. row contains
 * the raw input and is overwritten, and out receives the output values. */
static void layer_norm_fast(int32_t *row, int32_t in_zero, const int32_t *block,
                            stage_info out_stage, int32_t *out) {
  int32_t count = block[0];
  int64_t eps = (int64_t)block[3] * ((int64_t)1 << 32) + (int64_t)(uint32_t)block[2];
  const int32_t *channel = block + DSQ_LN_HEADER_WORDS;
  int32_t sum = norm_load(row, count, in_zero, block[1]);
  int32_t mean = (int32_t)dsr_fixed_div_round64(sum, count);
  int64_t variance = norm_center(row, count, mean) / count + eps;
  if (variance < 1)
    variance = 1;
  uint64_t std_q13 = dsr_fixed_fast_isqrt64((uint64_t)variance << 26);
  int64_t reciprocal = (int64_t)(((uint64_t)1 << 62) / std_q13);
  norm_scale(row, count, reciprocal, out);
  dsr_fixed_requant_row32(out, count, channel, 3, out);
  norm_finish(out, count, channel, out_stage.zero, out_stage.min, out_stage.max);
}

/* GELU through an int8 stage's direct table: dsr_fixed_lut_apply for every value. */
DSR_FIXED_VECTOR_CLONES
static void gelu_direct(const int32_t *restrict in, int32_t count, const int32_t *restrict table,
                        int32_t lo, int32_t hi, int32_t *restrict out) {
  for (int32_t i = 0; i < count; i++) {
    int32_t index = in[i] + 128;
    index = index < 0 ? 0 : (index > DSQ_LUT_DIRECT_ENTRIES - 1 ? DSQ_LUT_DIRECT_ENTRIES - 1
                                                                  : index);
    int32_t v = table[index];
    out[i] = v < lo ? lo : (v > hi ? hi : v);
  }
}

/* offset_points for the fast order: the LayerNorm, GELU and pointwise steps over contiguous
 * rows, the same values. The GELU values stay in scratch, since no later step reads them. */
static void offset_points_fast(const dsr_model *model, const dsr_deform_attn *d,
                               const deform_sections *sec, const patch_geometry *pg,
                               int32_t n_begin, int32_t n_end, deform_scratch *s) {
  int32_t cg = d->channels / d->groups;
  stage_info dws = stage(&d->stage_qparams[DSR_DEFORM_STAGE_OFFSET_DW]);
  stage_info lns = stage(&d->stage_qparams[DSR_DEFORM_STAGE_OFFSET_LN]);
  stage_info gs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_OFFSET_GELU]);
  stage_info os = stage(&d->stage_qparams[DSR_DEFORM_STAGE_OFFSET]);
  const int8_t *pw_w = param_data(model, d, DSR_DEFORM_OFFSET_PW_W);
  const int32_t *gelu = sec->s[DSQ_DA_OFFSET_GELU];

  for (int32_t gi = 0; gi < d->groups; gi++) {
    for (int32_t n = n_begin; n < n_end; n++) {
      const int32_t *column = s->dw + (int64_t)gi * cg * pg->n + n;
      for (int32_t c = 0; c < cg; c++)
        s->ln_in[c] = column[(int64_t)c * pg->n];
      layer_norm_fast(s->ln_in, dws.zero, sec->s[DSQ_DA_OFFSET_LN], lns, s->ln_out);
      if (gelu[0] == DSQ_LUT_DIRECT) {
        gelu_direct(s->ln_out, cg, gelu + 1, gs.min, gs.max, s->ln_in);
      } else {
        for (int32_t c = 0; c < cg; c++)
          s->ln_in[c] = dsr_fixed_lut_apply(gelu, s->ln_out[c], gs.zero, gs.min, gs.max);
      }
      for (int32_t axis = 0; axis < 2; axis++)
        s->offset[(int64_t)(gi * 2 + axis) * pg->n + n] = pointwise_contiguous(
            s->ln_in, cg, gs.zero, pw_w + (int64_t)axis * cg, 0,
            sec->s[DSQ_DA_OFFSET_PW] + 2 * axis, gs.wide_in, os.zero, os.min, os.max);
    }
  }
}

/* Offset network of every group: depthwise conv, LayerNorm, GELU, pointwise to (dy, dx). */
static void offset_network(const dsr_model *model, const dsr_deform_attn *d,
                           const deform_sections *sec, const patch_geometry *pg,
                           deform_scratch *s) {
  offset_depthwise(model, d, sec, pg, 0, d->channels, s);
  int32_t cg = d->channels / d->groups;
  for (int32_t gi = 0; gi < d->groups; gi++) {
    int64_t group_first = (int64_t)gi * cg * pg->n;
    probe_stage(s, DSR_DEFORM_STAGE_OFFSET_DW, s->dw + group_first, group_first, 1,
                (int64_t)cg * pg->n);
  }
  offset_points(model, d, sec, pg, 0, pg->n, s);
}

/* Sample positions of the grid positions n_begin..n_end - 1 of every group. */
static void positions_range(const dsr_deform_attn *d, const deform_sections *sec,
                            const patch_geometry *pg, int32_t n_begin, int32_t n_end,
                            deform_scratch *s) {
  /* Offsets scale with the full map (physical) or with the patch (crop). */
  int32_t span_y = pg->physical ? d->height - 1 : pg->h - 1;
  int32_t span_x = pg->physical ? d->width - 1 : pg->w - 1;
  int32_t grid_y = pg->physical ? dsr_fixed_offset_grid(d, d->height) : pg->hk;
  int32_t grid_x = pg->physical ? dsr_fixed_offset_grid(d, d->width) : pg->wk;
  int32_t o_zero = d->stage_qparams[DSR_DEFORM_STAGE_OFFSET].zero_point;
  for (int32_t gi = 0; gi < d->groups; gi++) {
    for (int32_t n = n_begin; n < n_end; n++) {
      int32_t i = n / pg->wk, j = n % pg->wk;
      {
        int32_t o_y = s->offset[(int64_t)(gi * 2) * pg->n + n];
        int32_t o_x = s->offset[(int64_t)(gi * 2 + 1) * pg->n + n];
        int64_t py = reference_q8(d->convention, i, pg->hk, pg->h);
        int64_t px = reference_q8(d->convention, j, pg->wk, pg->w);
        py += offset_q8(d, sec->s[DSQ_DA_POSITION], o_y, o_zero, span_y, grid_y);
        px += offset_q8(d, sec->s[DSQ_DA_POSITION], o_x, o_zero, span_x, grid_x);
        if (d->convention == DSR_DEFORM_DAT_PP) {
          py = dsr_fixed_clamp64(py, 0, (int64_t)(pg->h - 1) * DSR_FIXED_POS_ONE);
          px = dsr_fixed_clamp64(px, 0, (int64_t)(pg->w - 1) * DSR_FIXED_POS_ONE);
        } else {
          /* Far outside the patch every tap reads zero; the clamp keeps later sums in int32. */
          py = dsr_fixed_clamp64(py, -(1 << 28), 1 << 28);
          px = dsr_fixed_clamp64(px, -(1 << 28), 1 << 28);
        }
        s->position[(int64_t)(gi * 2) * pg->n + n] = (int32_t)py;
        s->position[(int64_t)(gi * 2 + 1) * pg->n + n] = (int32_t)px;
      }
    }
  }
}

static void positions(const dsr_deform_attn *d, const deform_sections *sec,
                      const patch_geometry *pg, deform_scratch *s) {
  positions_range(d, sec, pg, 0, pg->n, s);
}

/* The k and v projections of the samples in row order: the same values as the reference
 * loop of sample_and_project. */
static void project_kv_rows(const dsr_model *model, const dsr_node *node,
                            const deform_sections *sec, const patch_geometry *pg,
                            int32_t oc_begin, int32_t oc_end, deform_scratch *s) {
  const dsr_deform_attn *d = node->deform;
  stage_info ss = stage(&d->stage_qparams[DSR_DEFORM_STAGE_SAMPLED]);
  projection k = {param_data(model, d, DSR_DEFORM_PROJ_K_W),
                  param_data(model, d, DSR_DEFORM_PROJ_K_B), sec->s[DSQ_DA_PROJ_K], d->channels,
                  ss.wide_in, stage(&d->stage_qparams[DSR_DEFORM_STAGE_K])};
  projection v = {param_data(model, d, DSR_DEFORM_PROJ_V_W),
                  param_data(model, d, DSR_DEFORM_PROJ_V_B), sec->s[DSQ_DA_PROJ_V], d->channels,
                  ss.wide_in, stage(&d->stage_qparams[DSR_DEFORM_STAGE_V])};
  project_stage(&k, s->sampled, ss.zero, pg->n, oc_begin, oc_end, s, s->k);
  project_stage(&v, s->sampled, ss.zero, pg->n, oc_begin, oc_end, s, s->v);
}

/* Bilinear samples of x over the extended patch at the grid positions n_begin..n_end - 1 of
 * every group. */
static void sample_points(const dsr_model *model, const dsr_node *node, const void *x,
                          const patch_geometry *pg, int32_t n_begin, int32_t n_end,
                          deform_scratch *s) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int32_t cg = d->channels / d->groups;
  int64_t map = (int64_t)d->height * d->width;
  int64_t patch_base = (int64_t)pg->p.ext_y0 * d->width + pg->p.ext_x0;
  int32_t x_dtype = xt->qparams.dtype, x_zero = xt->qparams.zero_point;
  stage_info ss = stage(&d->stage_qparams[DSR_DEFORM_STAGE_SAMPLED]);

  for (int32_t gi = 0; gi < d->groups; gi++) {
    for (int32_t n = n_begin; n < n_end; n++) {
      int32_t index[4], weight[4];
      dsr_fixed_bilinear_taps(s->position[(int64_t)(gi * 2) * pg->n + n],
                              s->position[(int64_t)(gi * 2 + 1) * pg->n + n], pg->h, pg->w,
                              d->width, index, weight);
      for (int32_t c = 0; c < cg; c++) {
        int64_t plane = (int64_t)(gi * cg + c) * map + patch_base;
        /* Weights sum to 2^16 and |x - z| <= 2^15 (int16) or 255 (int8): fits int32. */
        int32_t sum = 0;
        for (int32_t t = 0; t < 4; t++) {
          if (weight[t] != 0)
            sum += weight[t] * (dsr_fixed_load(x, x_dtype, plane + index[t]) - x_zero);
        }
        s->sampled[(int64_t)(gi * cg + c) * pg->n + n] = (int32_t)dsr_fixed_clamp64(
            (int64_t)ss.zero + dsr_fixed_rdbpot(sum, 2 * DSR_FIXED_POS_FRAC_BITS), ss.min,
            ss.max);
      }
    }
  }
}

/* Samples of one int8 channel plane for count grid positions, as sample_points computes
 * them. taps[t * count + j] and taps[(4 + t) * count + j] are the index and weight of tap t
 * (dsr_fixed_bilinear_taps), and a tap of weight 0 adds 0 whatever it reads. */
DSR_FIXED_VECTOR_CLONES
static void sample_plane(const int8_t *restrict plane, const int32_t *restrict taps,
                         int32_t count, int32_t zero, stage_info out, int32_t *restrict values,
                         int8_t *restrict narrow) {
  for (int32_t j = 0; j < count; j++) {
    int32_t sum = taps[4 * count + j] * (plane[taps[j]] - zero) +
                  taps[5 * count + j] * (plane[taps[count + j]] - zero) +
                  taps[6 * count + j] * (plane[taps[2 * count + j]] - zero) +
                  taps[7 * count + j] * (plane[taps[3 * count + j]] - zero);
    int32_t v = out.zero + dsr_fixed_rdbpot(sum, 2 * DSR_FIXED_POS_FRAC_BITS);
    v = v < out.min ? out.min : (v > out.max ? out.max : v);
    values[j] = v;
    narrow[j] = (int8_t)v;
  }
}

/* sample_points for an int8 input and stage, one channel plane at a time over the grid
 * positions, with the int8 copy in sampled8. */
static void sample_points_int8(const dsr_model *model, const dsr_node *node, const void *x,
                               const patch_geometry *pg, int32_t n_begin, int32_t n_end,
                               deform_scratch *s) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int32_t cg = d->channels / d->groups, count = n_end - n_begin;
  int64_t map = (int64_t)d->height * d->width;
  const int8_t *patch = (const int8_t *)x + (int64_t)pg->p.ext_y0 * d->width + pg->p.ext_x0;
  stage_info ss = stage(&d->stage_qparams[DSR_DEFORM_STAGE_SAMPLED]);
  for (int32_t gi = 0; gi < d->groups; gi++) {
    for (int32_t j = 0; j < count; j++) {
      int32_t index[4], weight[4];
      int32_t n = n_begin + j;
      dsr_fixed_bilinear_taps(s->position[(int64_t)(gi * 2) * pg->n + n],
                              s->position[(int64_t)(gi * 2 + 1) * pg->n + n], pg->h, pg->w,
                              d->width, index, weight);
      for (int32_t t = 0; t < 4; t++) {
        s->taps[t * count + j] = index[t];
        s->taps[(4 + t) * count + j] = weight[t];
      }
    }
    for (int32_t c = gi * cg; c < (gi + 1) * cg; c++) {
      int64_t first = (int64_t)c * pg->n + n_begin;
      sample_plane(patch + c * map, s->taps, count, xt->qparams.zero_point, ss,
                   s->sampled + first, s->sampled8 + first);
    }
  }
}

/* Bilinear samples of x over the extended patch, then the k and v projections (in row order
 * when fast is set, else position by position). */
static void sample_and_project(const dsr_model *model, const dsr_node *node, const void *x,
                               const deform_sections *sec, const patch_geometry *pg,
                               deform_scratch *s, int fast) {
  const dsr_deform_attn *d = node->deform;
  int32_t c_count = d->channels;
  stage_info ss = stage(&d->stage_qparams[DSR_DEFORM_STAGE_SAMPLED]);
  sample_points(model, node, x, pg, 0, pg->n, s);

  if (fast) {
    project_kv_rows(model, node, sec, pg, 0, c_count, s);
    return;
  }
  stage_info ks = stage(&d->stage_qparams[DSR_DEFORM_STAGE_K]);
  stage_info vs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_V]);
  const int8_t *wk = param_data(model, d, DSR_DEFORM_PROJ_K_W);
  const int32_t *bk = param_data(model, d, DSR_DEFORM_PROJ_K_B);
  const int8_t *wv = param_data(model, d, DSR_DEFORM_PROJ_V_W);
  const int32_t *bv = param_data(model, d, DSR_DEFORM_PROJ_V_B);
  for (int32_t n = 0; n < pg->n; n++) {
    for (int32_t oc = 0; oc < c_count; oc++) {
      s->k[(int64_t)oc * pg->n + n] =
          pointwise(s->sampled + n, pg->n, c_count, ss.zero, wk + (int64_t)oc * c_count, bk[oc],
                    sec->s[DSQ_DA_PROJ_K] + 2 * oc, ss.wide_in, ks.zero, ks.min, ks.max);
      s->v[(int64_t)oc * pg->n + n] =
          pointwise(s->sampled + n, pg->n, c_count, ss.zero, wv + (int64_t)oc * c_count, bv[oc],
                    sec->s[DSQ_DA_PROJ_V] + 2 * oc, ss.wide_in, vs.zero, vs.min, vs.max);
    }
  }
}

/* Attention of one query pixel (full-map qy, qx) over the patch samples, then proj_out. */
static void attend_pixel(const dsr_model *model, const dsr_node *node, void *y,
                         const deform_sections *sec, const patch_geometry *pg,
                         deform_scratch *s, int32_t qy, int32_t qx) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t c_count = d->channels, hc = d->head_channels, heads_per_group = d->heads / d->groups;
  int64_t map = (int64_t)d->height * d->width;
  int64_t pixel = (int64_t)qy * d->width + qx;
  stage_info qs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_Q]);
  stage_info ks = stage(&d->stage_qparams[DSR_DEFORM_STAGE_K]);
  stage_info vs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_V]);
  stage_info ls = stage(&d->stage_qparams[DSR_DEFORM_STAGE_LOGITS]);
  stage_info as = stage(&d->stage_qparams[DSR_DEFORM_STAGE_ATTN]);
  stage_info cs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_CONTEXT]);
  int32_t table_h, table_w;
  table_size(model, d, &table_h, &table_w);
  const int16_t *table = param_data(model, d, DSR_DEFORM_RPE_TABLE);
  const int32_t *logit_pairs = sec->s[DSQ_DA_LOGITS];
  int qk_wide = qs.wide_in || ks.wide_in;
  int av_wide = as.wide_in || vs.wide_in;
  int32_t attn_bits = d->stage_qparams[DSR_DEFORM_STAGE_ATTN].dtype == DSR_DTYPE_I8 ? 8 : 15;
  /* Row and column of the table for a sample at the patch origin, in Q8. */
  int32_t row_base = bias_base_q8(d->convention, qy, d->height, pg->p.ext_y0);
  int32_t col_base = bias_base_q8(d->convention, qx, d->width, pg->p.ext_x0);
  /* Index of this query among the patch's core pixels, for stage reports. */
  int32_t core_w = pg->p.core_x1 - pg->p.core_x0;
  int64_t core_pixels = (int64_t)(pg->p.core_y1 - pg->p.core_y0) * core_w;
  int64_t core_pixel = (int64_t)(qy - pg->p.core_y0) * core_w + (qx - pg->p.core_x0);

  for (int32_t hd = 0; hd < d->heads; hd++) {
    int32_t gi = hd / heads_per_group;
    const int32_t *py = s->position + (int64_t)(gi * 2) * pg->n;
    const int32_t *px = py + pg->n;
    const int16_t *head_table = table + (int64_t)hd * table_h * table_w;
    for (int32_t n = 0; n < pg->n; n++) {
      int64_t acc = 0;
      for (int32_t c = 0; c < hc; c++) {
        int64_t ch = (int64_t)hd * hc + c;
        acc += (int64_t)(s->q[ch * map + pixel] - qs.zero) * (s->k[ch * pg->n + n] - ks.zero);
      }
      int32_t index[4], weight[4];
      dsr_fixed_bilinear_taps(table_coord(row_base - py[n], d->height, table_h),
                              table_coord(col_base - px[n], d->width, table_w), table_h, table_w,
                              table_w, index, weight);
      /* Weights sum to 2^16 and table values are int16: the sum fits int32. */
      int32_t bias = 0;
      for (int32_t t = 0; t < 4; t++)
        bias += weight[t] * head_table[index[t]];
      int64_t qk = qk_wide ? dsr_fixed_requant64(acc, logit_pairs[0], logit_pairs[1])
                           : dsr_fixed_requant32((int32_t)acc, logit_pairs[0], logit_pairs[1]);
      int64_t logit = ls.zero + qk + dsr_fixed_requant32(bias, logit_pairs[2], logit_pairs[3]);
      s->logits[n] = (int32_t)dsr_fixed_clamp64(logit, ls.min, ls.max);
    }
    dsr_fixed_softmax_row(s->logits, pg->n, sec->s[DSQ_DA_SOFTMAX][0], sec->s[DSQ_DA_SOFTMAX][1],
                          attn_bits, s->exps, s->attn);
    if (s->probe != NULL) {
      int64_t row = ((int64_t)hd * core_pixels + core_pixel) * pg->n;
      probe_stage(s, DSR_DEFORM_STAGE_LOGITS, s->logits, row, 1, pg->n);
      probe_stage(s, DSR_DEFORM_STAGE_ATTN, s->attn, row, 1, pg->n);
    }

    for (int32_t c = 0; c < hc; c++) {
      int64_t ch = (int64_t)hd * hc + c;
      int64_t acc = 0;
      for (int32_t n = 0; n < pg->n; n++)
        acc += (int64_t)(s->attn[n] - as.zero) * (s->v[ch * pg->n + n] - vs.zero);
      const int32_t *pair = sec->s[DSQ_DA_CONTEXT];
      int32_t r = av_wide ? dsr_fixed_requant64(acc, pair[0], pair[1])
                          : dsr_fixed_requant32((int32_t)acc, pair[0], pair[1]);
      s->context[ch] = (int32_t)dsr_fixed_clamp64((int64_t)cs.zero + r, cs.min, cs.max);
    }
  }
  probe_stage(s, DSR_DEFORM_STAGE_CONTEXT, s->context, core_pixel, core_pixels, c_count);

  stage_info ys = stage(&yt->qparams);
  const int8_t *wo = param_data(model, d, DSR_DEFORM_PROJ_OUT_W);
  const int32_t *bo = param_data(model, d, DSR_DEFORM_PROJ_OUT_B);
  for (int32_t oc = 0; oc < c_count; oc++) {
    int32_t v = pointwise(s->context, 1, c_count, cs.zero, wo + (int64_t)oc * c_count, bo[oc],
                          sec->s[DSQ_DA_PROJ_OUT] + 2 * oc, cs.wide_in, ys.zero, ys.min, ys.max);
    dsr_fixed_store(y, yt->qparams.dtype, (int64_t)oc * map + pixel, v);
  }
}

/*
 * Sum over count of (a[i] - a_zero) * (b[i] - b_zero) for two stage rows, each product at most
 * 2^15 * 2^15 = 2^30. wide selects the 64-bit sum. Narrow callers bound the sum by 2^31 - 1
 * (the plan-time check of the attention sums: samples * 255 * 255).
 */
DSR_FIXED_VECTOR_CLONES
static int64_t dot_stages(const int32_t *restrict a, int32_t a_zero, const int32_t *restrict b,
                          int32_t b_zero, int32_t count, int wide) {
  if (wide) {
    int64_t acc = 0;
    for (int32_t i = 0; i < count; i++)
      acc += (int64_t)((a[i] - a_zero) * (b[i] - b_zero));
    return acc;
  }
  int32_t acc = 0;
  for (int32_t i = 0; i < count; i++)
    acc += (a[i] - a_zero) * (b[i] - b_zero);
  return acc;
}

/* floor(v / 2^DSR_FIXED_POS_FRAC_BITS), as dsr_fixed_bilinear_taps computes it. */
static inline int32_t floor_position(int32_t v) {
  if (v >= 0)
    return v >> DSR_FIXED_POS_FRAC_BITS;
  return -(int32_t)((-(int64_t)v + DSR_FIXED_POS_ONE - 1) >> DSR_FIXED_POS_FRAC_BITS);
}

/*
 * Sum of weight[t] * table[index[t]] over the taps that dsr_fixed_bilinear_taps gives for
 * (py, px) over an h x w table, inline. A tap outside the table adds nothing, as its weight 0
 * does there. The weights sum to 2^16 and table values are int16, so the sum fits int32.
 */
static inline int32_t bilinear_sum(const int16_t *table, int32_t py, int32_t px, int32_t h,
                                   int32_t w) {
  int32_t y0 = floor_position(py), x0 = floor_position(px);
  int32_t fy = py - y0 * DSR_FIXED_POS_ONE, fx = px - x0 * DSR_FIXED_POS_ONE;
  int32_t wy[2] = {DSR_FIXED_POS_ONE - fy, fy};
  int32_t wx[2] = {DSR_FIXED_POS_ONE - fx, fx};
  int32_t sum = 0;
  for (int32_t t = 0; t < 4; t++) {
    int32_t row = y0 + (t >> 1), col = x0 + (t & 1);
    if (row >= 0 && row < h && col >= 0 && col < w)
      sum += wy[t >> 1] * wx[t & 1] * table[row * w + col];
  }
  return sum;
}

/*
 * q.k sums of head hd at pixel for every sample n, in row order: channel by channel over
 * contiguous rows of k. The result is acc_wide (wide) or row. Narrow sums fit int32 by the
 * plan-time bound on head_channels * 255 * 255. Wide terms, at most 2^15 * 2^15 = 2^30, go
 * straight into the int64 row.
 */
static void qk_rows(const dsr_deform_attn *d, const deform_scratch *s, const patch_geometry *pg,
                    int32_t hd, int64_t pixel, int32_t q_zero, int32_t k_zero, int wide) {
  int64_t map = (int64_t)d->height * d->width;
  for (int32_t n = 0; n < pg->n; n++) {
    s->row[n] = 0;
    s->row_wide[n] = 0;
  }
  for (int32_t c = 0; c < d->head_channels; c++) {
    int64_t ch = (int64_t)hd * d->head_channels + c;
    int32_t qv = s->q[ch * map + pixel] - q_zero;
    if (qv != 0)
      add_row32(s->row, s->row_wide, s->k + ch * pg->n, k_zero, qv, pg->n, wide);
  }
}

/* attend_pixel with the q.k sums in row order, the position bias inline, the branch-free
 * softmax row and vectorized attention sums: the same values. */
static void attend_pixel_fast(const dsr_model *model, const dsr_node *node, void *y,
                              const deform_sections *sec, const patch_geometry *pg,
                              deform_scratch *s, int32_t qy, int32_t qx) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t c_count = d->channels, hc = d->head_channels, heads_per_group = d->heads / d->groups;
  int64_t map = (int64_t)d->height * d->width;
  int64_t pixel = (int64_t)qy * d->width + qx;
  stage_info qs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_Q]);
  stage_info ks = stage(&d->stage_qparams[DSR_DEFORM_STAGE_K]);
  stage_info vs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_V]);
  stage_info ls = stage(&d->stage_qparams[DSR_DEFORM_STAGE_LOGITS]);
  stage_info as = stage(&d->stage_qparams[DSR_DEFORM_STAGE_ATTN]);
  stage_info cs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_CONTEXT]);
  int32_t table_h, table_w;
  table_size(model, d, &table_h, &table_w);
  const int16_t *table = param_data(model, d, DSR_DEFORM_RPE_TABLE);
  const int32_t *logit_pairs = sec->s[DSQ_DA_LOGITS];
  int qk_wide = qs.wide_in || ks.wide_in;
  int av_wide = as.wide_in || vs.wide_in;
  int32_t attn_bits = d->stage_qparams[DSR_DEFORM_STAGE_ATTN].dtype == DSR_DTYPE_I8 ? 8 : 15;
  /* Row and column of the table for a sample at the patch origin, in Q8. */
  int32_t row_base = bias_base_q8(d->convention, qy, d->height, pg->p.ext_y0);
  int32_t col_base = bias_base_q8(d->convention, qx, d->width, pg->p.ext_x0);

  for (int32_t hd = 0; hd < d->heads; hd++) {
    int32_t gi = hd / heads_per_group;
    const int32_t *py = s->position + (int64_t)(gi * 2) * pg->n;
    const int32_t *px = py + pg->n;
    const int16_t *head_table = table + (int64_t)hd * table_h * table_w;
    if (qk_wide) {
      qk_rows(d, s, pg, hd, pixel, qs.zero, ks.zero, qk_wide);
    } else {
      /* int8 q and k: dot products of int16 rows, four samples per pass, under the narrow
       * bound head_channels * 255 * 255. */
      for (int32_t c = 0; c < hc; c++)
        s->q16[c] = (int16_t)(s->q[((int64_t)hd * hc + c) * map + pixel] - qs.zero);
      const int16_t *head_keys = s->k16t + (int64_t)hd * pg->n * hc;
      int32_t n = 0;
      for (; n + 4 <= pg->n; n += 4)
        dsr_fixed_dot16x4(s->q16, head_keys + (int64_t)n * hc, hc, s->row + n);
      for (; n < pg->n; n++)
        s->row[n] = dsr_fixed_dot16(s->q16, head_keys + (int64_t)n * hc, hc);
    }
    for (int32_t n = 0; n < pg->n; n++) {
      int64_t acc = qk_wide ? s->row_wide[n] : s->row[n];
      int32_t bias = bilinear_sum(head_table, table_coord(row_base - py[n], d->height, table_h),
                                  table_coord(col_base - px[n], d->width, table_w), table_h,
                                  table_w);
      int64_t qk = qk_wide ? dsr_fixed_requant64(acc, logit_pairs[0], logit_pairs[1])
                           : dsr_fixed_requant32((int32_t)acc, logit_pairs[0], logit_pairs[1]);
      int64_t logit = ls.zero + qk + dsr_fixed_requant32(bias, logit_pairs[2], logit_pairs[3]);
      s->logits[n] = (int32_t)dsr_fixed_clamp64(logit, ls.min, ls.max);
    }
    dsr_fixed_fast_softmax_row(s->logits, pg->n, sec->s[DSQ_DA_SOFTMAX][0], sec->s[DSQ_DA_SOFTMAX][1],
                          attn_bits, s->exps, s->attn);

    if (!av_wide) {
      for (int32_t n = 0; n < pg->n; n++)
        s->attn16[n] = (int16_t)(s->attn[n] - as.zero);
    }
    for (int32_t c = 0; c < hc; c++) {
      int64_t ch = (int64_t)hd * hc + c;
      /* int8 attention and v: int16 rows under the narrow bound samples * 255 * 255. */
      int64_t acc = av_wide ? dot_stages(s->attn, as.zero, s->v + ch * pg->n, vs.zero, pg->n, 1)
                            : dsr_fixed_dot16(s->attn16, s->v16 + ch * pg->n, pg->n);
      const int32_t *pair = sec->s[DSQ_DA_CONTEXT];
      int32_t r = av_wide ? dsr_fixed_requant64(acc, pair[0], pair[1])
                          : dsr_fixed_requant32((int32_t)acc, pair[0], pair[1]);
      s->context[ch] = (int32_t)dsr_fixed_clamp64((int64_t)cs.zero + r, cs.min, cs.max);
    }
  }

  stage_info ys = stage(&yt->qparams);
  const int8_t *wo = param_data(model, d, DSR_DEFORM_PROJ_OUT_W);
  const int32_t *bo = param_data(model, d, DSR_DEFORM_PROJ_OUT_B);
  for (int32_t oc = 0; oc < c_count; oc++) {
    int32_t v = pointwise_contiguous(s->context, c_count, cs.zero, wo + (int64_t)oc * c_count,
                                     bo[oc], sec->s[DSQ_DA_PROJ_OUT] + 2 * oc, cs.wide_in,
                                     ys.zero, ys.min, ys.max);
    dsr_fixed_store(y, yt->qparams.dtype, (int64_t)oc * map + pixel, v);
  }
}

/* Geometry of patch (row, col) of slice. */
static void patch_init(const dsr_deform_attn *d, dsr_slice slice, int32_t row, int32_t col,
                       patch_geometry *pg) {
  dsr_slice_patch(d->height, d->width, slice, row, col, &pg->p);
  pg->h = pg->p.ext_y1 - pg->p.ext_y0;
  pg->w = pg->p.ext_x1 - pg->p.ext_x0;
  pg->hk = dsr_fixed_offset_grid(d, pg->h);
  pg->wk = dsr_fixed_offset_grid(d, pg->w);
  pg->n = pg->hk * pg->wk;
  pg->physical = slice.semantics == DSR_SLICE_PHYSICAL;
}

/* The reference order: every stage position by position, on one thread, reporting each
 * stage to s->probe when it is set. */
static void execute_reference(const dsr_model *model, const dsr_node *node, const void *x,
                              void *y, const deform_sections *sec, deform_scratch *s,
                              dsr_slice slice) {
  const dsr_deform_attn *d = node->deform;
  compute_q_reference(model, node, x, sec, s);
  probe_stage(s, DSR_DEFORM_STAGE_Q, s->q, 0, 1, (int64_t)d->channels * d->height * d->width);
  for (int32_t row = 0; row < slice.rows; row++) {
    for (int32_t col = 0; col < slice.cols; col++) {
      patch_geometry pg;
      patch_init(d, slice, row, col, &pg);
      s->patch_index = row * slice.cols + col;
      offset_network(model, d, sec, &pg, s);
      positions(d, sec, &pg, s);
      int64_t pairs = (int64_t)d->groups * 2 * pg.n, values = (int64_t)d->channels * pg.n;
      probe_stage(s, DSR_DEFORM_STAGE_OFFSET, s->offset, 0, 1, pairs);
      probe_stage(s, DSR_PROBE_POSITIONS, s->position, 0, 1, pairs);
      sample_and_project(model, node, x, sec, &pg, s, 0);
      probe_stage(s, DSR_DEFORM_STAGE_SAMPLED, s->sampled, 0, 1, values);
      probe_stage(s, DSR_DEFORM_STAGE_K, s->k, 0, 1, values);
      probe_stage(s, DSR_DEFORM_STAGE_V, s->v, 0, 1, values);
      for (int32_t qy = pg.p.core_y0; qy < pg.p.core_y1; qy++) {
        for (int32_t qx = pg.p.core_x0; qx < pg.p.core_x1; qx++)
          attend_pixel(model, node, y, sec, &pg, s, qy, qx);
      }
    }
  }
}

/* Copies channels ch_begin..ch_end - 1 of k and v, zero points subtracted, into the int16
 * rows of the attention sums: k transposed per head, v as it is. int8 stages only, whose
 * values minus zero lie in [-255, 255]. */
static void pack_kv(const dsr_deform_attn *d, const patch_geometry *pg, int32_t ch_begin,
                    int32_t ch_end, deform_scratch *s) {
  int32_t hc = d->head_channels;
  int32_t k_zero = d->stage_qparams[DSR_DEFORM_STAGE_K].zero_point;
  int32_t v_zero = d->stage_qparams[DSR_DEFORM_STAGE_V].zero_point;
  int pack_k = d->stage_qparams[DSR_DEFORM_STAGE_Q].dtype == DSR_DTYPE_I8 &&
               d->stage_qparams[DSR_DEFORM_STAGE_K].dtype == DSR_DTYPE_I8;
  int pack_v = d->stage_qparams[DSR_DEFORM_STAGE_ATTN].dtype == DSR_DTYPE_I8 &&
               d->stage_qparams[DSR_DEFORM_STAGE_V].dtype == DSR_DTYPE_I8;
  for (int32_t ch = ch_begin; ch < ch_end; ch++) {
    const int32_t *k_row = s->k + (int64_t)ch * pg->n;
    const int32_t *v_row = s->v + (int64_t)ch * pg->n;
    int16_t *k_head = s->k16t + (int64_t)(ch / hc) * pg->n * hc + ch % hc;
    int16_t *v_out = s->v16 + (int64_t)ch * pg->n;
    for (int32_t n = 0; n < pg->n && pack_k; n++)
      k_head[(int64_t)n * hc] = (int16_t)(k_row[n] - k_zero);
    for (int32_t n = 0; n < pg->n && pack_v; n++)
      v_out[n] = (int16_t)(v_row[n] - v_zero);
  }
}

/* ---------------------------------------------------------------- packed order */

/* Which stages of the fast order run as packed int8 matrix products (runtime/dsr_gemm.h):
 * each needs int8 operands on both sides. The others keep the row-order loops. */
typedef struct packed_plan {
  int q;      /* proj_q: int8 input */
  int kv;     /* proj_k and proj_v: int8 samples */
  int attend; /* q.k, attention . v and proj_out: int8 q, k, v, attention and context */
} packed_plan;

static packed_plan plan_packed(const dsr_model *model, const dsr_node *node) {
  const dsr_qparams *st = node->deform->stage_qparams;
  packed_plan p;
  p.q = model->tensors[node->inputs[0]].qparams.dtype == DSR_DTYPE_I8;
  p.kv = st[DSR_DEFORM_STAGE_SAMPLED].dtype == DSR_DTYPE_I8;
  p.attend = st[DSR_DEFORM_STAGE_Q].dtype == DSR_DTYPE_I8 &&
             st[DSR_DEFORM_STAGE_K].dtype == DSR_DTYPE_I8 &&
             st[DSR_DEFORM_STAGE_V].dtype == DSR_DTYPE_I8 &&
             st[DSR_DEFORM_STAGE_ATTN].dtype == DSR_DTYPE_I8 &&
             st[DSR_DEFORM_STAGE_CONTEXT].dtype == DSR_DTYPE_I8;
  return p;
}

/* Bytes between the packed k (and v) operands of consecutive heads. */
static int64_t head_k_bytes(const dsr_deform_attn *d) {
  dsr_gemm g = gemm_logits(1, (int32_t)deform_samples_max(d), d->head_channels, 0, 0);
  return (int64_t)dsr_gemm_columns_bytes(&g);
}

static int64_t head_v_bytes(const dsr_deform_attn *d) {
  dsr_gemm g = gemm_context(1, d->head_channels, (int32_t)deform_samples_max(d), 0, 0);
  return (int64_t)dsr_gemm_columns_bytes(&g);
}

/* Adds the bias of output channel oc to count sums, requantizes them and saturates them to
 * the stage, in place: the values of pointwise(). The narrow plan-time bound keeps sum plus
 * bias in int32. */
static void finish_sums(const projection *pr, int32_t oc, int32_t *sums, int64_t count) {
  int32_t bias = pr->bias != NULL ? pr->bias[oc] : 0;
  for (int64_t i = 0; i < count; i++)
    sums[i] += bias;
  dsr_fixed_requant_row32(sums, count, pr->pairs + 2 * oc, 0, sums);
  saturate_row(sums, count, pr->out.zero, pr->out.min, pr->out.max);
}

/* Packs the weights that the products of plan read, for output channels first..last - 1:
 * rows of proj_q, proj_k, proj_v and proj_out. */
static void pack_weights(const dsr_model *model, const dsr_deform_attn *d, packed_plan plan,
                         int32_t first, int32_t last, deform_scratch *s) {
  int32_t c = d->channels;
  dsr_gemm proj = gemm_projection(c, 1, 0);
  if (plan.q)
    dsr_gemm_pack_rows(&proj, param_data(model, d, DSR_DEFORM_PROJ_Q_W), c, 1, first, last,
                       s->packed_wq);
  if (plan.kv) {
    dsr_gemm_pack_rows(&proj, param_data(model, d, DSR_DEFORM_PROJ_K_W), c, 1, first, last,
                       s->packed_wk);
    dsr_gemm_pack_rows(&proj, param_data(model, d, DSR_DEFORM_PROJ_V_W), c, 1, first, last,
                       s->packed_wv);
  }
  if (plan.attend)
    dsr_gemm_pack_rows(&proj, param_data(model, d, DSR_DEFORM_PROJ_OUT_W), c, 1, first, last,
                       s->packed_wout);
}

/* The columns [*begin, *end) of panels first..last - 1 of count columns. */
static void panel_columns(int32_t first, int32_t last, int32_t count, int32_t *begin,
                          int32_t *end) {
  *begin = first * DSR_GEMM_PANEL_COLUMNS;
  *end = last * DSR_GEMM_PANEL_COLUMNS < count ? last * DSR_GEMM_PANEL_COLUMNS : count;
}

/* proj_q as a packed product for the pixels of panels first..last - 1 (16 pixels each) and
 * every output channel: packs those pixels of the input, then the sums land in the q rows
 * and become stage values there. */
static void compute_q_packed(const dsr_model *model, const dsr_node *node, const void *x,
                             const deform_sections *sec, int32_t first, int32_t last,
                             deform_scratch *s) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int64_t pixels = (int64_t)d->height * d->width;
  projection pr = {NULL, param_data(model, d, DSR_DEFORM_PROJ_Q_B), sec->s[DSQ_DA_PROJ_Q],
                   d->channels, 0, stage(&d->stage_qparams[DSR_DEFORM_STAGE_Q])};
  dsr_gemm g = gemm_projection(d->channels, (int32_t)pixels, xt->qparams.zero_point);
  int32_t begin, end;
  panel_columns(first, last, (int32_t)pixels, &begin, &end);
  if (begin >= end)
    return;
  dsr_gemm_pack_columns(&g, x, pixels, 1, first, last, s->packed_x);
  dsr_gemm_run(&g, s->packed_wq, s->packed_x, 0, d->channels, first, last, s->q, pixels);
  for (int32_t oc = 0; oc < d->channels; oc++)
    finish_sums(&pr, oc, s->q + oc * pixels + begin, end - begin);
}

/* proj_q as a packed product for output channels first..last - 1 and every pixel, from the
 * task's own packing of the whole input: where the weights outweigh the map, splitting the
 * weight rows between tasks reads each weight once. */
static void compute_q_packed_rows(const dsr_model *model, const dsr_node *node, const void *x,
                                  const deform_sections *sec, int32_t first, int32_t last,
                                  deform_scratch *s) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int64_t pixels = (int64_t)d->height * d->width;
  projection pr = {NULL, param_data(model, d, DSR_DEFORM_PROJ_Q_B), sec->s[DSQ_DA_PROJ_Q],
                   d->channels, 0, stage(&d->stage_qparams[DSR_DEFORM_STAGE_Q])};
  dsr_gemm g = gemm_projection(d->channels, (int32_t)pixels, xt->qparams.zero_point);
  if (first >= last)
    return;
  dsr_gemm_pack_columns(&g, x, pixels, 1, 0, dsr_gemm_panels(&g), s->packed_x_own);
  dsr_gemm_run(&g, s->packed_wq, s->packed_x_own, first, last, 0, dsr_gemm_panels(&g),
               s->q + first * pixels, pixels);
  for (int32_t oc = first; oc < last; oc++)
    finish_sums(&pr, oc, s->q + oc * pixels, pixels);
}

/* proj_k and proj_v as packed products for the samples of panels first..last - 1 (16
 * samples each) and every output channel: packs those samples, then the sums land in the k
 * and v rows. With the packed attention, also keeps the int8 copies it packs per head. */
static void project_kv_packed(const dsr_model *model, const dsr_node *node,
                              const deform_sections *sec, const patch_geometry *pg,
                              packed_plan plan, int32_t first, int32_t last,
                              deform_scratch *s) {
  const dsr_deform_attn *d = node->deform;
  int64_t n = pg->n;
  stage_info ss = stage(&d->stage_qparams[DSR_DEFORM_STAGE_SAMPLED]);
  dsr_gemm g = gemm_projection(d->channels, pg->n, ss.zero);
  projection k = {NULL, param_data(model, d, DSR_DEFORM_PROJ_K_B), sec->s[DSQ_DA_PROJ_K],
                  d->channels, 0, stage(&d->stage_qparams[DSR_DEFORM_STAGE_K])};
  projection v = {NULL, param_data(model, d, DSR_DEFORM_PROJ_V_B), sec->s[DSQ_DA_PROJ_V],
                  d->channels, 0, stage(&d->stage_qparams[DSR_DEFORM_STAGE_V])};
  int32_t begin, end;
  panel_columns(first, last, pg->n, &begin, &end);
  if (begin >= end)
    return;
  dsr_gemm_pack_columns(&g, s->sampled8, n, 1, first, last, s->packed_samp);
  dsr_gemm_run(&g, s->packed_wk, s->packed_samp, 0, d->channels, first, last, s->k, n);
  dsr_gemm_run(&g, s->packed_wv, s->packed_samp, 0, d->channels, first, last, s->v, n);
  for (int32_t oc = 0; oc < d->channels; oc++) {
    int64_t row = oc * n + begin;
    finish_sums(&k, oc, s->k + row, end - begin);
    finish_sums(&v, oc, s->v + row, end - begin);
    if (plan.attend) {
      copy_row8(s->k + row, end - begin, s->k8 + row);
      copy_row8(s->v + row, end - begin, s->v8 + row);
    }
  }
}

/* Packs k and v of heads first..last - 1 as the column operands of their q.k and
 * attention . v products. */
static void pack_heads(const dsr_deform_attn *d, const patch_geometry *pg, int32_t first,
                       int32_t last, deform_scratch *s) {
  const dsr_qparams *st = d->stage_qparams;
  int32_t hc = d->head_channels, n = pg->n;
  dsr_gemm logits = gemm_logits(1, n, hc, st[DSR_DEFORM_STAGE_Q].zero_point,
                                st[DSR_DEFORM_STAGE_K].zero_point);
  dsr_gemm context = gemm_context(1, hc, n, st[DSR_DEFORM_STAGE_ATTN].zero_point,
                                  st[DSR_DEFORM_STAGE_V].zero_point);
  for (int32_t hd = first; hd < last; hd++) {
    int64_t rows = (int64_t)hd * hc * n;
    dsr_gemm_pack_columns(&logits, s->k8 + rows, n, 1, 0, dsr_gemm_panels(&logits),
                          s->packed_k + hd * head_k_bytes(d));
    dsr_gemm_pack_columns(&context, s->v8 + rows, 1, n, 0, dsr_gemm_panels(&context),
                          s->packed_v + hd * head_v_bytes(d));
  }
}

/*
 * Row (or column) factors of the position bias taps over the samples, for a query whose table
 * row is base (Q8) before the sample position p[j] is subtracted. out[j] and out[n + j] are
 * the weights of the first and second tap row, 0 outside the table of size rows. out[2n + j]
 * and out[3n + j] are their rows times stride, a row inside the table when the weight is 0. The tap weights of dsr_fixed_bilinear_taps are products of a row and a column weight,
 * 0 when either tap lies outside. |base - p[j]| < 2^29 (positions are clamped to +-2^28), so
 * floor(v / 2^8) is ((v + 2^30) >> 8) - 2^22 with a positive shifted value.
 */
DSR_FIXED_VECTOR_CLONES
static void bias_axis(const int32_t *restrict p, int32_t n, int32_t base, int32_t map_size,
                      int32_t size, int32_t stride, int32_t *restrict out) {
  const int32_t one = DSR_FIXED_POS_ONE, bias = 1 << 30;
  const int32_t unbias = bias >> DSR_FIXED_POS_FRAC_BITS;
  for (int32_t j = 0; j < n; j++) {
    int32_t v = table_coord(base - p[j], map_size, size);
    int32_t i0 = ((v + bias) >> DSR_FIXED_POS_FRAC_BITS) - unbias;
    int32_t f = v - i0 * one;
    int in0 = i0 >= 0 && i0 < size, in1 = i0 + 1 >= 0 && i0 + 1 < size;
    out[j] = in0 ? one - f : 0;
    out[n + j] = in1 ? f : 0;
    out[2 * n + j] = (in0 ? i0 : 0) * stride;
    out[3 * n + j] = (in1 ? i0 + 1 : 0) * stride;
  }
}

/* Position bias sums of one head and query from its row and column factors (bias_axis): the
 * sums of bilinear_sum. The weights sum to at most 2^16 and table values are int16, so every
 * partial sum fits int32. */
DSR_FIXED_VECTOR_CLONES
static void bias_sums(const int32_t *restrict table, const int32_t *restrict rows,
                      const int32_t *restrict cols, int32_t n, int32_t *restrict out) {
  for (int32_t j = 0; j < n; j++) {
    int32_t wy0 = rows[j], wy1 = rows[n + j], r0 = rows[2 * n + j], r1 = rows[3 * n + j];
    int32_t wx0 = cols[j], wx1 = cols[n + j], c0 = cols[2 * n + j], c1 = cols[3 * n + j];
    out[j] = wy0 * wx0 * table[r0 + c0] + wy0 * wx1 * table[r0 + c1] +
             wy1 * wx0 * table[r1 + c0] + wy1 * wx1 * table[r1 + c1];
  }
}

#ifdef DEFORM_X86
/* bias_sums with AVX-512 gathers, which GCC does not emit for the loop above; the last
 * partial vector is masked. The same integer products and sums. */
__attribute__((target("avx512f"))) static void
bias_sums_avx512(const int32_t *table, const int32_t *rows, const int32_t *cols, int32_t n,
                 int32_t *out) {
  for (int32_t j = 0; j < n; j += 16) {
    __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1u);
    __m512i wy0 = _mm512_maskz_loadu_epi32(m, rows + j);
    __m512i wy1 = _mm512_maskz_loadu_epi32(m, rows + n + j);
    __m512i r0 = _mm512_maskz_loadu_epi32(m, rows + 2 * n + j);
    __m512i r1 = _mm512_maskz_loadu_epi32(m, rows + 3 * n + j);
    __m512i wx0 = _mm512_maskz_loadu_epi32(m, cols + j);
    __m512i wx1 = _mm512_maskz_loadu_epi32(m, cols + n + j);
    __m512i c0 = _mm512_maskz_loadu_epi32(m, cols + 2 * n + j);
    __m512i c1 = _mm512_maskz_loadu_epi32(m, cols + 3 * n + j);
    __m512i zero = _mm512_setzero_si512();
    __m512i t00 = _mm512_mask_i32gather_epi32(zero, m, _mm512_add_epi32(r0, c0), table, 4);
    __m512i t01 = _mm512_mask_i32gather_epi32(zero, m, _mm512_add_epi32(r0, c1), table, 4);
    __m512i t10 = _mm512_mask_i32gather_epi32(zero, m, _mm512_add_epi32(r1, c0), table, 4);
    __m512i t11 = _mm512_mask_i32gather_epi32(zero, m, _mm512_add_epi32(r1, c1), table, 4);
    __m512i sum = _mm512_mullo_epi32(_mm512_mullo_epi32(wy0, wx0), t00);
    sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(_mm512_mullo_epi32(wy0, wx1), t01));
    sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(_mm512_mullo_epi32(wy1, wx0), t10));
    sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(_mm512_mullo_epi32(wy1, wx1), t11));
    _mm512_mask_storeu_epi32(out + j, m, sum);
  }
}
#endif

/* Runs the gather version of bias_sums where the CPU has AVX-512.
 * NOTE: on AVX-512 machines, the tests' machine included, the portable bias_sums never runs,
 * so only CPUs without AVX-512 exercise it. */
static void bias_sums_best(const int32_t *table, const int32_t *rows, const int32_t *cols,
                           int32_t n, int32_t *out) {
#ifdef DEFORM_X86
  if (__builtin_cpu_supports("avx512f")) {
    bias_sums_avx512(table, rows, cols, n, out);
    return;
  }
#endif
  bias_sums(table, rows, cols, n, out);
}

/* Row and column factors of the bias taps of the patch's core rows and columns, for groups
 * first..last - 1. */
static void bias_factors(const dsr_model *model, const dsr_deform_attn *d,
                         const patch_geometry *pg, int32_t first,
                         int32_t last, deform_scratch *s) {
  int32_t n = pg->n, table_h, table_w;
  table_size(model, d, &table_h, &table_w);
  int64_t stride = 4 * (int64_t)n;
  for (int32_t gi = first; gi < last; gi++) {
    const int32_t *py = s->position + (int64_t)(gi * 2) * n;
    const int32_t *px = py + n;
    for (int32_t qy = pg->p.core_y0; qy < pg->p.core_y1; qy++) {
      int32_t base = bias_base_q8(d->convention, qy, d->height, pg->p.ext_y0);
      bias_axis(py, n, base, d->height, table_h, table_w,
                s->bias_rows + ((int64_t)gi * d->height + qy - pg->p.core_y0) * stride);
    }
    for (int32_t qx = pg->p.core_x0; qx < pg->p.core_x1; qx++) {
      int32_t base = bias_base_q8(d->convention, qx, d->width, pg->p.ext_x0);
      bias_axis(px, n, base, d->width, table_w, 1,
                s->bias_cols + ((int64_t)gi * d->width + qx - pg->p.core_x0) * stride);
    }
  }
}

/* Logits from requantized q.k sums and bias, as attend_pixel sums them. out may be qk. */
DSR_FIXED_VECTOR_CLONES
static void logit_values(const int32_t *qk, const int32_t *restrict bias, int32_t n,
                         int32_t zero, int32_t lo, int32_t hi, int32_t *out) {
  for (int32_t j = 0; j < n; j++) {
    int64_t v = (int64_t)zero + qk[j] + bias[j];
    out[j] = (int32_t)(v < lo ? lo : (v > hi ? hi : v));
  }
}

/* Full-map pixel index of core pixel p of the patch. */
static int64_t core_pixel_at(const dsr_deform_attn *d, const patch_geometry *pg, int32_t p) {
  int32_t core_w = pg->p.core_x1 - pg->p.core_x0;
  return (int64_t)(pg->p.core_y0 + p / core_w) * d->width + pg->p.core_x0 + p % core_w;
}

/*
 * Attention and proj_out of the core pixels first..first + count - 1 (count <= ATTEND_BLOCK)
 * with packed products. Per head: q.k of the block against every sample, the position bias
 * and logits, one softmax row per query, then attention . v. Last, proj_out of the block.
 * The values of attend_pixel.
 */
static void attend_block(const dsr_model *model, const dsr_node *node, void *y,
                         const deform_sections *sec, const patch_geometry *pg,
                         deform_scratch *s, int32_t first, int32_t count) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t c_count = d->channels, hc = d->head_channels, n = pg->n;
  int32_t heads_per_group = d->heads / d->groups;
  int32_t core_w = pg->p.core_x1 - pg->p.core_x0;
  int64_t map = (int64_t)d->height * d->width;
  stage_info qs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_Q]);
  stage_info ks = stage(&d->stage_qparams[DSR_DEFORM_STAGE_K]);
  stage_info vs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_V]);
  stage_info ls = stage(&d->stage_qparams[DSR_DEFORM_STAGE_LOGITS]);
  stage_info as = stage(&d->stage_qparams[DSR_DEFORM_STAGE_ATTN]);
  stage_info cs = stage(&d->stage_qparams[DSR_DEFORM_STAGE_CONTEXT]);
  int64_t head_table_size = table_elements(model, d) / d->heads;
  const int32_t *logit_pairs = sec->s[DSQ_DA_LOGITS];
  dsr_gemm logits = gemm_logits(count, n, hc, qs.zero, ks.zero);
  dsr_gemm context = gemm_context(count, hc, n, as.zero, vs.zero);
  int64_t k_bytes = head_k_bytes(d), v_bytes = head_v_bytes(d);
  int64_t rows = (int64_t)count * n, factors = 4 * (int64_t)n;

  for (int32_t hd = 0; hd < d->heads; hd++) {
    int32_t gi = hd / heads_per_group;
    for (int32_t i = 0; i < count; i++) {
      const int32_t *q = s->q + (int64_t)hd * hc * map + core_pixel_at(d, pg, first + i);
      for (int32_t c = 0; c < hc; c++)
        s->q_block[i * hc + c] = (int8_t)q[c * map];
    }
    dsr_gemm_pack_rows(&logits, s->q_block, hc, 1, 0, count, s->packed_q);
    dsr_gemm_run(&logits, s->packed_q, s->packed_k + hd * k_bytes, 0, count, 0,
                 dsr_gemm_panels(&logits), s->logit_block, n);
    dsr_fixed_requant_row32(s->logit_block, rows, logit_pairs, 0, s->logit_block);
    const int32_t *table = s->table32 + hd * head_table_size;
    for (int32_t i = 0; i < count; i++) {
      int32_t p = first + i;
      bias_sums_best(table, s->bias_rows + ((int64_t)gi * d->height + p / core_w) * factors,
                s->bias_cols + ((int64_t)gi * d->width + p % core_w) * factors, n,
                s->bias_block + (int64_t)i * n);
    }
    dsr_fixed_requant_row32(s->bias_block, rows, logit_pairs + 2, 0, s->bias_block);
    logit_values(s->logit_block, s->bias_block, (int32_t)rows, ls.zero, ls.min, ls.max,
                 s->logit_block);
    for (int32_t i = 0; i < count; i++) {
      dsr_fixed_fast_softmax_row(s->logit_block + (int64_t)i * n, n, sec->s[DSQ_DA_SOFTMAX][0],
                                 sec->s[DSQ_DA_SOFTMAX][1], 8, s->exps, s->attn);
      copy_row8(s->attn, n, s->attn_block + (int64_t)i * n);
    }
    dsr_gemm_pack_rows(&context, s->attn_block, n, 1, 0, count, s->packed_attn);
    dsr_gemm_run(&context, s->packed_attn, s->packed_v + hd * v_bytes, 0, count, 0,
                 dsr_gemm_panels(&context), s->context_sums + (int64_t)hd * hc, c_count);
  }
  /* Every head shares the context pair, so the block requantizes at once. */
  dsr_fixed_requant_row32(s->context_sums, (int64_t)count * c_count, sec->s[DSQ_DA_CONTEXT], 0,
                          s->context_sums);
  saturate_row8(s->context_sums, (int64_t)count * c_count, cs.zero, cs.min, cs.max,
                s->context_block);

  /* proj_out: output channels as rows, the block's pixels as columns. */
  dsr_gemm out = gemm_projection(c_count, count, cs.zero);
  projection pr = {NULL, param_data(model, d, DSR_DEFORM_PROJ_OUT_B), sec->s[DSQ_DA_PROJ_OUT],
                   c_count, 0, stage(&yt->qparams)};
  dsr_gemm_pack_columns(&out, s->context_block, 1, c_count, 0, dsr_gemm_panels(&out),
                        s->packed_context);
  dsr_gemm_run(&out, s->packed_wout, s->packed_context, 0, c_count, 0, dsr_gemm_panels(&out),
               s->out_block, count);
  /* Map pixels of the block, in s->row: H * W < 2^28 fits int32. */
  for (int32_t i = 0; i < count; i++)
    s->row[i] = (int32_t)core_pixel_at(d, pg, first + i);
  /* The pixels increase, so they are one run of the map when the ends are count - 1 apart. */
  int contiguous = s->row[count - 1] - s->row[0] == count - 1;
  for (int32_t oc = 0; oc < c_count; oc++) {
    int32_t *row = s->out_block + (int64_t)oc * count;
    finish_sums(&pr, oc, row, count);
    if (yt->qparams.dtype == DSR_DTYPE_I8) {
      /* finish_sums saturated the values to the int8 stage. */
      int8_t *plane = (int8_t *)y + (int64_t)oc * map;
      if (contiguous) {
        copy_row8(row, count, plane + s->row[0]);
      } else {
        for (int32_t i = 0; i < count; i++)
          plane[s->row[i]] = (int8_t)row[i];
      }
    } else {
      for (int32_t i = 0; i < count; i++)
        dsr_fixed_store(y, yt->qparams.dtype, (int64_t)oc * map + s->row[i], row[i]);
    }
  }
}

/* Widens the position bias table of every head to int32, for the vector gathers of
 * bias_sums. */
static void widen_table(const dsr_model *model, const dsr_deform_attn *d, deform_scratch *s) {
  const int16_t *table = param_data(model, d, DSR_DEFORM_RPE_TABLE);
  int64_t count = table_elements(model, d);
  for (int64_t i = 0; i < count; i++)
    s->table32[i] = table[i];
}

/* Stages of the fast order that run as parallel tasks, each over a share of its units. */
typedef enum deform_step {
  DEFORM_Q,           /* units: output channels of proj_q */
  DEFORM_OFFSET_DW,   /* units: channels of the offset depthwise conv */
  DEFORM_OFFSET_LN,   /* units: grid positions (LayerNorm, GELU, pointwise per group) */
  DEFORM_SAMPLE,      /* units: grid positions */
  DEFORM_PROJECT_KV,  /* units: output channels of proj_k and proj_v */
  DEFORM_PACK_KV,     /* units: channels of k and v, copied to int16 rows */
  DEFORM_ATTEND,      /* units: core pixels of the patch */
  /* packed order */
  DEFORM_PACK_WEIGHTS, /* units: output channels of the projections */
  DEFORM_Q_PACKED,     /* units: panels of 16 pixels */
  DEFORM_Q_PACKED_ROWS, /* units: output channels of proj_q */
  DEFORM_SAMPLE_KV,    /* units: panels of 16 grid positions: offsets, positions, samples,
                          proj_k and proj_v */
  DEFORM_HEADS,        /* units: heads: packed k and v, bias factors of the head's group */
  DEFORM_ATTEND_PACKED /* units: core pixels of the patch, in blocks of ATTEND_BLOCK */
} deform_step;

typedef struct deform_job {
  const dsr_model *model;
  const dsr_node *node;
  const void *x;
  void *y;
  const deform_sections *sec;
  const deform_scratch *shared;
  uint8_t *scratch;
  const patch_geometry *pg;
  packed_plan plan;
  deform_step step;
  int64_t unit_count;
  int32_t task_count;
} deform_job;

static void deform_task(void *context, int32_t task_index) {
  const deform_job *job = context;
  const dsr_deform_attn *d = job->node->deform;
  const patch_geometry *pg = job->pg;
  deform_scratch s = private_slot(job->model, d, job->shared, job->scratch, task_index);
  int64_t begin, end;
  dsr_parallel_share(job->unit_count, job->task_count, task_index, 1, &begin, &end);
  int32_t first = (int32_t)begin, last = (int32_t)end;
  switch (job->step) {
  case DEFORM_Q:
    compute_q_rows(job->model, job->node, job->x, job->sec, first, last, &s);
    break;
  case DEFORM_OFFSET_DW:
    offset_depthwise_rows(job->model, d, job->sec, pg, first, last, &s);
    break;
  case DEFORM_OFFSET_LN:
    offset_points_fast(job->model, d, job->sec, pg, first, last, &s);
    break;
  case DEFORM_SAMPLE:
    if (job->plan.kv)
      sample_points_int8(job->model, job->node, job->x, pg, first, last, &s);
    else
      sample_points(job->model, job->node, job->x, pg, first, last, &s);
    break;
  case DEFORM_PROJECT_KV:
    project_kv_rows(job->model, job->node, job->sec, pg, first, last, &s);
    break;
  case DEFORM_PACK_KV:
    pack_kv(d, pg, first, last, &s);
    break;
  case DEFORM_ATTEND: {
    int32_t core_w = pg->p.core_x1 - pg->p.core_x0;
    for (int32_t p = first; p < last; p++)
      attend_pixel_fast(job->model, job->node, job->y, job->sec, pg, &s,
                        pg->p.core_y0 + p / core_w, pg->p.core_x0 + p % core_w);
    break;
  }
  case DEFORM_PACK_WEIGHTS:
    pack_weights(job->model, d, job->plan, first, last, &s);
    break;
  case DEFORM_Q_PACKED:
    compute_q_packed(job->model, job->node, job->x, job->sec, first, last, &s);
    break;
  case DEFORM_Q_PACKED_ROWS:
    compute_q_packed_rows(job->model, job->node, job->x, job->sec, first, last, &s);
    break;
  case DEFORM_SAMPLE_KV: {
    /* Every stage here reads only its own grid positions, up to the packed k and v. */
    int32_t n_begin, n_end;
    panel_columns(first, last, pg->n, &n_begin, &n_end);
    if (n_begin >= n_end)
      break;
    offset_points_fast(job->model, d, job->sec, pg, n_begin, n_end, &s);
    positions_range(d, job->sec, pg, n_begin, n_end, &s);
    sample_points_int8(job->model, job->node, job->x, pg, n_begin, n_end, &s);
    project_kv_packed(job->model, job->node, job->sec, pg, job->plan, first, last, &s);
    break;
  }
  case DEFORM_HEADS: {
    pack_heads(d, pg, first, last, &s);
    /* Group gi's factors go with its first head. */
    int32_t heads_per_group = d->heads / d->groups;
    bias_factors(job->model, d, pg, (first + heads_per_group - 1) / heads_per_group,
                 (last + heads_per_group - 1) / heads_per_group, &s);
    break;
  }
  case DEFORM_ATTEND_PACKED:
    for (int32_t p = first; p < last; p += ATTEND_BLOCK)
      attend_block(job->model, job->node, job->y, job->sec, pg, &s, p,
                   last - p < ATTEND_BLOCK ? last - p : ATTEND_BLOCK);
    break;
  }
}

/* Runs one step over unit_count units of about unit_ops operations each. Steps whose short
 * rows take the position-major path touch every channel at once and run as one task. */
static void run_step(deform_job *job, const dsr_parallel *parallel, deform_step step,
                     int64_t unit_count, int64_t unit_ops, int splittable) {
  job->step = step;
  job->unit_count = unit_count;
  job->task_count = splittable ? dsr_parallel_tasks(parallel, unit_count, unit_ops) : 1;
  dsr_parallel_run(parallel, deform_task, job, job->task_count);
}

/*
 * Lays out the weights and table that dsr_fixed_deform_pack prepares ahead, at base (NULL:
 * sizes only), into the matching pointers of s; returns their bytes. Only what plan reads
 * gets room.
 */
static int64_t layout_packed(const dsr_model *model, const dsr_deform_attn *d, packed_plan plan,
                             uint8_t *base,
                             deform_scratch *s) {
  dsr_gemm proj = gemm_projection(d->channels, 1, 0);
  int64_t weights = (int64_t)dsr_gemm_rows_bytes(&proj), used = 0;
  if (plan.q)
    s->packed_wq = carve(base, &used, weights);
  if (plan.kv) {
    s->packed_wk = carve(base, &used, weights);
    s->packed_wv = carve(base, &used, weights);
  }
  if (plan.attend) {
    s->packed_wout = carve(base, &used, weights);
    s->table32 = carve(base, &used, table_elements(model, d) * (int64_t)sizeof(int32_t));
  }
  return used;
}

size_t dsr_fixed_deform_packed_bytes(const dsr_model *model, const dsr_node *node) {
  const dsr_deform_attn *d = node->deform;
  /* Nodes that dsr_fixed_deform_check rejects get nothing, as for the scratch. */
  if (d == NULL || node->input_count < 1 || node->inputs[0] < 0 ||
      node->inputs[0] >= model->tensor_count || dsr_fixed_deform_scratch_bytes(model, node) == 0)
    return 0;
  packed_plan plan = plan_packed(model, node);
  if (!plan.q && !plan.kv && !plan.attend)
    return 0;
  deform_scratch unused;
  return (size_t)(63 + layout_packed(model, d, plan, NULL, &unused));
}

void dsr_fixed_deform_pack(const dsr_model *model, const dsr_node *node, uint8_t *packed) {
  const dsr_deform_attn *d = node->deform;
  packed_plan plan = plan_packed(model, node);
  deform_scratch s;
  layout_packed(model, d, plan, align_scratch(packed), &s);
  pack_weights(model, d, plan, 0, d->channels, &s);
  if (plan.attend)
    widen_table(model, d, &s);
}

void dsr_fixed_deform_execute_parallel(const dsr_model *model, const dsr_node *node,
                                       const void *x, void *y, uint8_t *scratch,
                                       dsr_slice slice, int fast,
                                       const dsr_parallel *parallel) {
  dsr_fixed_deform_execute_packed(model, node, x, y, scratch, slice, fast, parallel, NULL);
}

void dsr_fixed_deform_execute_packed(const dsr_model *model, const dsr_node *node,
                                     const void *x, void *y, uint8_t *scratch, dsr_slice slice,
                                     int fast, const dsr_parallel *parallel,
                                     const uint8_t *packed) {
  const dsr_deform_attn *d = node->deform;
  deform_sections sec;
  find_sections(node, &sec);
  deform_scratch s;
  layout_scratch(model, d, scratch, 1, &s);
  s.probe = NULL;
  s.node_index = -1;
  s.patch_index = 0;
  if (!fast) {
    execute_reference(model, node, x, y, &sec, &s, slice);
    return;
  }

  int64_t c = d->channels, cg = d->channels / d->groups;
  int64_t pixels = (int64_t)d->height * d->width;
  int64_t k2 = (int64_t)d->offset_kernel * d->offset_kernel;
  packed_plan plan = plan_packed(model, node);
  deform_job job = {.model = model, .node = node, .x = x, .y = y, .sec = &sec, .shared = &s,
                    .scratch = scratch, .plan = plan};

  if (packed != NULL) {
    /* Read-only from here on: the steps only read the weights and the table. */
    layout_packed(model, d, plan, align_scratch((uint8_t *)(uintptr_t)packed), &s);
  } else if (plan.q || plan.kv || plan.attend) {
    if (plan.attend)
      widen_table(model, d, &s);
    run_step(&job, parallel, DEFORM_PACK_WEIGHTS, c, 4 * c, 1);
  }
  /* proj_q is pointwise, so one pass over the whole map serves every patch. */
  if (plan.q && c > pixels) {
    run_step(&job, parallel, DEFORM_Q_PACKED_ROWS, c, pixels * (c + 1), 1);
  } else if (plan.q) {
    run_step(&job, parallel, DEFORM_Q_PACKED,
             (pixels + DSR_GEMM_PANEL_COLUMNS - 1) / DSR_GEMM_PANEL_COLUMNS,
             DSR_GEMM_PANEL_COLUMNS * c * (c + 1), 1);
  } else {
    run_step(&job, parallel, DEFORM_Q, c, pixels * c, pixels >= PROJECTION_MIN_ROW);
  }

  for (int32_t row = 0; row < slice.rows; row++) {
    for (int32_t col = 0; col < slice.cols; col++) {
      patch_geometry pg;
      patch_init(d, slice, row, col, &pg);
      job.pg = &pg;
      int64_t n = pg.n;
      int64_t core = (int64_t)(pg.p.core_y1 - pg.p.core_y0) * (pg.p.core_x1 - pg.p.core_x0);

      run_step(&job, parallel, DEFORM_OFFSET_DW, c, n * k2, 1);
      if (plan.kv) {
        run_step(&job, parallel, DEFORM_SAMPLE_KV,
                 (n + DSR_GEMM_PANEL_COLUMNS - 1) / DSR_GEMM_PANEL_COLUMNS,
                 DSR_GEMM_PANEL_COLUMNS * (d->groups * cg * 24 + c * 8 + 2 * c * c), 1);
      } else {
        run_step(&job, parallel, DEFORM_OFFSET_LN, n, d->groups * cg * 24, 1);
        positions(d, &sec, &pg, &s);
        run_step(&job, parallel, DEFORM_SAMPLE, n, c * 8, 1);
        run_step(&job, parallel, DEFORM_PROJECT_KV, c, 2 * n * c, n >= PROJECTION_MIN_ROW);
      }
      if (plan.attend) {
        run_step(&job, parallel, DEFORM_HEADS, d->heads,
                 2 * n * d->head_channels + (int64_t)(d->height + d->width) * n * 4, 1);
        /* Per block of queries and head: q.k, bias, softmax, attention . v; then proj_out. */
        run_step(&job, parallel, DEFORM_ATTEND_PACKED, core,
                 d->heads * n * (2 * d->head_channels + 24) + c * c, 1);
        continue;
      }
      run_step(&job, parallel, DEFORM_PACK_KV, c, 2 * n, 1);
      /* Per head: q.k and attention sums over the samples, softmax; then proj_out. */
      run_step(&job, parallel, DEFORM_ATTEND, core, d->heads * n * (2 * d->head_channels + 24) + c * c,
               1);
    }
  }
}

void dsr_fixed_deform_execute(const dsr_model *model, const dsr_node *node, const void *x,
                              void *y, uint8_t *scratch, dsr_slice slice, int fast) {
  dsr_fixed_deform_execute_parallel(model, node, x, y, scratch, slice, fast, NULL);
}

void dsr_fixed_deform_execute_probed(const dsr_model *model, int32_t node_index, const void *x,
                                     void *y, uint8_t *scratch, dsr_slice slice,
                                     const dsr_probe *probe) {
  const dsr_node *node = &model->nodes[node_index];
  deform_sections sec;
  find_sections(node, &sec);
  deform_scratch s;
  layout_scratch(model, node->deform, scratch, 1, &s);
  s.probe = probe;
  s.node_index = node_index;
  s.patch_index = 0;
  execute_reference(model, node, x, y, &sec, &s, slice);
}

/* ---------------------------------------------------------------- plan-time checks */

static const char *const param_names[DSR_DEFORM_PARAM_COUNT] = {
    "proj_q weight", "proj_q bias", "offset depthwise weight", "offset depthwise bias",
    "offset LayerNorm gamma", "offset LayerNorm beta", "offset pointwise weight",
    "proj_k weight", "proj_k bias", "proj_v weight", "proj_v bias", "proj_out weight",
    "proj_out bias", "relative position bias table"};

static ds_status deform_fail(const dsr_node *node, ds_error *err, ds_status status,
                             const char *what) {
  return ds_fail(err, status, "node '%s' (DEFORM_ATTN): %s", node->name, what);
}

static ds_status check_param(const dsr_model *model, const dsr_node *node, dsr_deform_param p,
                             int32_t dtype, int32_t channels, int64_t element_count,
                             int64_t *bias_max, ds_error *err) {
  int32_t index = node->deform->params[p];
  if (index < 0 || index >= model->tensor_count)
    return ds_fail(err, DS_ERR_GRAPH, "node '%s' (DEFORM_ATTN): %s has tensor index %d, out of "
                                      "range",
                   node->name, param_names[p], index);
  const dsr_tensor *t = &model->tensors[index];
  if (t->kind != DSR_TENSOR_CONSTANT || t->data_q == NULL || !t->has_qparams ||
      t->qparams.dtype != dtype || dsr_tensor_elements(t) != element_count)
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (DEFORM_ATTN): %s '%s' must be a quantized constant of dtype %d "
                   "with %lld elements: quantize the model first",
                   node->name, param_names[p], t->name, dtype, (long long)element_count);
  if (channels > 0 && (t->channel_scales == NULL || t->channel_axis != 0 ||
                       t->channel_count != channels))
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (DEFORM_ATTN): %s '%s' needs %d per-channel scales on axis 0",
                   node->name, param_names[p], t->name, channels);
  if (bias_max != NULL) {
    *bias_max = 0;
    const int32_t *b = t->data_q;
    for (int64_t i = 0; i < element_count; i++) {
      int64_t m = b[i] < 0 ? -(int64_t)b[i] : b[i];
      if (m > *bias_max)
        *bias_max = m;
    }
  }
  return DS_OK;
}

static ds_status check_stage(const dsr_node *node, int32_t stage_index, ds_error *err) {
  const dsr_qparams *q = &node->deform->stage_qparams[stage_index];
  int32_t lo, hi;
  dsr_fixed_dtype_range(q->dtype, &lo, &hi);
  if ((q->dtype != DSR_DTYPE_I8 && q->dtype != DSR_DTYPE_I16) || !(q->scale > 0.0f) ||
      q->zero_point < lo || q->zero_point > hi ||
      (q->dtype == DSR_DTYPE_I16 && q->zero_point != 0))
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (DEFORM_ATTN): stage %d has invalid qparams (dtype %d, scale %g, "
                   "zero point %d): quantize the model first",
                   node->name, stage_index, q->dtype, (double)q->scale, q->zero_point);
  return DS_OK;
}

static int narrow_fits(int64_t terms, int64_t product_max, int64_t bias_max) {
  return terms * product_max + bias_max <= INT32_MAX;
}

static ds_status check_params(const dsr_model *model, const dsr_node *node, ds_error *err) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int64_t c = d->channels, cg = d->channels / d->groups, k = d->offset_kernel;
  int64_t bias_max[4];
  DS_TRY(check_param(model, node, DSR_DEFORM_PROJ_Q_W, DSR_DTYPE_I8, d->channels, c * c, NULL,
                     err));
  DS_TRY(check_param(model, node, DSR_DEFORM_PROJ_Q_B, DSR_DTYPE_I32, 0, c, &bias_max[0], err));
  DS_TRY(check_param(model, node, DSR_DEFORM_OFFSET_DW_W, DSR_DTYPE_I8, (int32_t)cg, cg * k * k,
                     NULL, err));
  DS_TRY(check_param(model, node, DSR_DEFORM_OFFSET_DW_B, DSR_DTYPE_I32, 0, cg, &bias_max[1],
                     err));
  DS_TRY(check_param(model, node, DSR_DEFORM_OFFSET_PW_W, DSR_DTYPE_I8, 2, 2 * cg, NULL, err));
  DS_TRY(check_param(model, node, DSR_DEFORM_PROJ_K_W, DSR_DTYPE_I8, d->channels, c * c, NULL,
                     err));
  DS_TRY(check_param(model, node, DSR_DEFORM_PROJ_K_B, DSR_DTYPE_I32, 0, c, &bias_max[2], err));
  DS_TRY(check_param(model, node, DSR_DEFORM_PROJ_V_W, DSR_DTYPE_I8, d->channels, c * c, NULL,
                     err));
  DS_TRY(check_param(model, node, DSR_DEFORM_PROJ_V_B, DSR_DTYPE_I32, 0, c, &bias_max[3], err));
  DS_TRY(check_param(model, node, DSR_DEFORM_PROJ_OUT_W, DSR_DTYPE_I8, d->channels, c * c, NULL,
                     err));
  int64_t out_bias_max;
  DS_TRY(check_param(model, node, DSR_DEFORM_PROJ_OUT_B, DSR_DTYPE_I32, 0, c, &out_bias_max,
                     err));
  int32_t table_index = d->params[DSR_DEFORM_RPE_TABLE];
  const dsr_tensor *rpe = table_index >= 0 && table_index < model->tensor_count
                              ? &model->tensors[table_index]
                              : NULL;
  if (rpe != NULL && (rpe->rank != 3 || rpe->dims[0] != d->heads || rpe->dims[1] < 1 ||
                      rpe->dims[2] < 1 || rpe->dims[1] > 65535 || rpe->dims[2] > 65535))
    return ds_fail(err, DS_ERR_SHAPE,
                   "node '%s' (DEFORM_ATTN): the position bias table '%s' must be (%d heads, "
                   "rows, columns) with 1 to 65535 rows and columns, not rank %d (%d x %d x %d)",
                   node->name, rpe->name, d->heads, rpe->rank, rpe->dims[0], rpe->dims[1],
                   rpe->dims[2]);
  DS_TRY(check_param(model, node, DSR_DEFORM_RPE_TABLE, DSR_DTYPE_I16, 0,
                     rpe != NULL ? table_elements(model, d) : 0, NULL, err));
  if (rpe->qparams.zero_point != 0)
    return deform_fail(node, err, DS_ERR_QUANT, "the position bias table must be symmetric int16");

  for (int32_t i = 0; i < DSR_DEFORM_STAGE_COUNT; i++)
    DS_TRY(check_stage(node, i, err));
  const dsr_qparams *st = d->stage_qparams;
  const dsr_qparams *sampled = &st[DSR_DEFORM_STAGE_SAMPLED];
  if (sampled->dtype != xt->qparams.dtype || sampled->scale != xt->qparams.scale ||
      sampled->zero_point != xt->qparams.zero_point)
    return deform_fail(node, err, DS_ERR_QUANT,
                       "the SAMPLED stage must share the input's qparams, because bilinear "
                       "samples are rounded once into the input's scale");
  const dsr_qparams *attn = &st[DSR_DEFORM_STAGE_ATTN];
  int attn_ok = (attn->dtype == DSR_DTYPE_I8 && attn->zero_point == -128 &&
                 attn->scale == 1.0f / 256.0f) ||
                (attn->dtype == DSR_DTYPE_I16 && attn->scale == 1.0f / 32768.0f);
  if (!attn_ok)
    return deform_fail(node, err, DS_ERR_QUANT,
                       "the ATTN stage must be int8 with scale 2^-8 and zero point -128, or "
                       "int16 with scale 2^-15");

  /* 32-bit accumulators of int8 operands must not overflow. */
  int64_t n_max = (int64_t)dsr_fixed_offset_grid(d, d->height) * dsr_fixed_offset_grid(d, d->width);
  int narrow_ok = 1;
  if (xt->qparams.dtype == DSR_DTYPE_I8)
    narrow_ok &= narrow_fits(c, 255 * 128, bias_max[0]);
  if (st[DSR_DEFORM_STAGE_Q].dtype == DSR_DTYPE_I8)
    narrow_ok &= narrow_fits(k * k, 255 * 128, bias_max[1]);
  if (sampled->dtype == DSR_DTYPE_I8)
    narrow_ok &= narrow_fits(c, 255 * 128, bias_max[2] > bias_max[3] ? bias_max[2] : bias_max[3]);
  if (st[DSR_DEFORM_STAGE_Q].dtype == DSR_DTYPE_I8 && st[DSR_DEFORM_STAGE_K].dtype == DSR_DTYPE_I8)
    narrow_ok &= narrow_fits(d->head_channels, 255 * 255, 0);
  if (attn->dtype == DSR_DTYPE_I8 && st[DSR_DEFORM_STAGE_V].dtype == DSR_DTYPE_I8)
    narrow_ok &= narrow_fits(n_max, 255 * 255, 0);
  if (st[DSR_DEFORM_STAGE_CONTEXT].dtype == DSR_DTYPE_I8)
    narrow_ok &= narrow_fits(c, 255 * 128, out_bias_max);
  if (!narrow_ok)
    return deform_fail(node, err, DS_ERR_QUANT,
                       "a 32-bit accumulator of int8 operands can overflow for this layer size: "
                       "use int16 for the stage feeding it");
  return DS_OK;
}

static int section_pairs_valid(const int32_t *section, int32_t count, int wide) {
  for (int32_t i = 0; i < count; i++) {
    if (!dsr_fixed_pair_valid(section + 2 * i, wide))
      return 0;
  }
  return 1;
}

static ds_status check_sections(const dsr_model *model, const dsr_node *node, ds_error *err) {
  const dsr_deform_attn *d = node->deform;
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_qparams *st = d->stage_qparams;
  const int32_t *q = node->qwords;
  int32_t c = d->channels, cg = d->channels / d->groups;
  if (node->qword_count < DSQ_DA_HEADER_WORDS || q[1] != DSQ_DA_SECTION_COUNT)
    return deform_fail(node, err, DS_ERR_QUANT,
                       "qwords lack the section header: re-run dsq_quantize on this model");

  int32_t offset_dtype = st[DSR_DEFORM_STAGE_OFFSET].dtype;
  int32_t lut_words = 1 + (offset_dtype == DSR_DTYPE_I8 ? DSQ_LUT_DIRECT_ENTRIES
                                                         : DSQ_LUT_INTERP_ENTRIES);
  int32_t gelu_words = 1 + (st[DSR_DEFORM_STAGE_OFFSET_LN].dtype == DSR_DTYPE_I8
                                ? DSQ_LUT_DIRECT_ENTRIES
                                : DSQ_LUT_INTERP_ENTRIES);
  int32_t expected[DSQ_DA_SECTION_COUNT] = {
      2 * c, 2 * cg, DSQ_LN_HEADER_WORDS + 3 * cg, gelu_words, 4,
      d->convention != DSR_DEFORM_DAT_PP ? 2 + lut_words : 2, 2 * c, 2 * c, 4, 2, 2, 2 * c};
  int32_t position = DSQ_DA_HEADER_WORDS;
  for (int32_t i = 0; i < DSQ_DA_SECTION_COUNT; i++) {
    if (q[2 + i] != position || (int64_t)position + expected[i] > node->qword_count)
      return ds_fail(err, DS_ERR_QUANT,
                     "node '%s' (DEFORM_ATTN): qwords section %d starts at word %d of %d, "
                     "expected start %d and %d words: re-run dsq_quantize",
                     node->name, i, q[2 + i], node->qword_count, position, expected[i]);
    position += expected[i];
  }
  if (position != node->qword_count)
    return ds_fail(err, DS_ERR_QUANT,
                   "node '%s' (DEFORM_ATTN): qwords have %d words, sections end at %d",
                   node->name, node->qword_count, position);

  deform_sections sec;
  find_sections(node, &sec);
  int x_wide = xt->qparams.dtype != DSR_DTYPE_I8;
  int q_wide = st[DSR_DEFORM_STAGE_Q].dtype != DSR_DTYPE_I8;
  int ok = section_pairs_valid(sec.s[DSQ_DA_PROJ_Q], c, x_wide) &&
           section_pairs_valid(sec.s[DSQ_DA_OFFSET_DW], cg, q_wide) &&
           dsr_fixed_ln_valid(sec.s[DSQ_DA_OFFSET_LN], expected[DSQ_DA_OFFSET_LN], cg) &&
           sec.s[DSQ_DA_OFFSET_LN][1] ==
               (st[DSR_DEFORM_STAGE_OFFSET_DW].dtype == DSR_DTYPE_I8 ? 8 : 0) &&
           dsr_fixed_lut_valid(sec.s[DSQ_DA_OFFSET_GELU], gelu_words,
                               st[DSR_DEFORM_STAGE_OFFSET_LN].dtype) &&
           section_pairs_valid(sec.s[DSQ_DA_OFFSET_PW], 2,
                               st[DSR_DEFORM_STAGE_OFFSET_GELU].dtype != DSR_DTYPE_I8) &&
           section_pairs_valid(sec.s[DSQ_DA_POSITION], 1, 0) &&
           (d->convention == DSR_DEFORM_DAT_PP ||
            dsr_fixed_lut_valid(sec.s[DSQ_DA_POSITION] + 2, lut_words, offset_dtype)) &&
           section_pairs_valid(sec.s[DSQ_DA_PROJ_K], c,
                               st[DSR_DEFORM_STAGE_SAMPLED].dtype != DSR_DTYPE_I8) &&
           section_pairs_valid(sec.s[DSQ_DA_PROJ_V], c,
                               st[DSR_DEFORM_STAGE_SAMPLED].dtype != DSR_DTYPE_I8) &&
           section_pairs_valid(sec.s[DSQ_DA_LOGITS], 1,
                               q_wide || st[DSR_DEFORM_STAGE_K].dtype != DSR_DTYPE_I8) &&
           section_pairs_valid(sec.s[DSQ_DA_LOGITS] + 2, 1, 0) &&
           section_pairs_valid(sec.s[DSQ_DA_SOFTMAX], 1, 0) && sec.s[DSQ_DA_SOFTMAX][0] >= 0 &&
           section_pairs_valid(sec.s[DSQ_DA_CONTEXT], 1,
                               st[DSR_DEFORM_STAGE_ATTN].dtype != DSR_DTYPE_I8 ||
                                   st[DSR_DEFORM_STAGE_V].dtype != DSR_DTYPE_I8) &&
           section_pairs_valid(sec.s[DSQ_DA_PROJ_OUT], c,
                               st[DSR_DEFORM_STAGE_CONTEXT].dtype != DSR_DTYPE_I8);
  if (!ok)
    return deform_fail(node, err, DS_ERR_QUANT,
                       "qwords hold a multiplier, shift or table out of range: re-run "
                       "dsq_quantize");
  return DS_OK;
}

ds_status dsr_fixed_deform_check(const dsr_model *model, const dsr_node *node, ds_error *err) {
  const dsr_deform_attn *d = node->deform;
  if (d == NULL)
    return deform_fail(node, err, DS_ERR_GRAPH, "the node has no deformable layer parameters");
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  if (d->channels < 1 || d->groups < 1 || d->heads < 1 || d->channels % d->groups != 0 ||
      d->heads % d->groups != 0 || d->head_channels * d->heads != d->channels ||
      d->offset_kernel < 1 || d->offset_stride < 1 || d->offset_pad < 0 ||
      2 * d->offset_pad < d->offset_kernel - 1 || d->height < 1 || d->width < 1 ||
      d->height > 16384 || d->width > 16384 || d->channels / d->groups > DSQ_LN_MAX_ELEMENTS ||
      (d->convention != DSR_DEFORM_DAT && d->convention != DSR_DEFORM_DAT_PP &&
       d->convention != DSR_DEFORM_DAT_CENTRED))
    return ds_fail(err, DS_ERR_SHAPE,
                   "node '%s' (DEFORM_ATTN): inconsistent layer parameters (C %d, groups %d, "
                   "heads %d x %d, kernel %d, stride %d, pad %d, map %d x %d, convention %d)",
                   node->name, d->channels, d->groups, d->heads, d->head_channels,
                   d->offset_kernel, d->offset_stride, d->offset_pad, d->height, d->width,
                   d->convention);
  int32_t expected[4] = {1, d->channels, d->height, d->width};
  for (int32_t i = 0; i < 4; i++) {
    if (xt->rank != 4 || yt->rank != 4 || xt->dims[i] != expected[i] || yt->dims[i] != expected[i])
      return ds_fail(err, DS_ERR_SHAPE,
                     "node '%s' (DEFORM_ATTN): input and output must be (1, %d, %d, %d)",
                     node->name, d->channels, d->height, d->width);
  }
  DS_TRY(check_params(model, node, err));
  return check_sections(model, node, err);
}
