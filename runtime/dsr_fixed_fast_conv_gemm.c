/*
 * CONV2D with one group and an int8 input as a packed matrix product (dsr_gemm.h),
 * bit-identical to run_conv2d in dsr_fixed.c:
 *
 *   y[oc][p] = requant(bias[oc] + sum over t of w[oc][t] * (x_col[t][p] - x_zero))
 *
 * where t runs over (ic, ky, kx) in the weights' own order and x_col[t][p] is the input
 * value tap t reads for output pixel p. A 1x1 convolution with stride 1 and no padding reads
 * x itself as x_col. Any other shape first builds x_col (im2col) in scratch, writing x_zero
 * where a tap falls in the padding, so that the padding adds 0 exactly as the reference's
 * skipped taps do. The weights are the row operand (signed, zero point 0) and x_col the
 * column operand (unsigned, zero point x_zero). dsr_fixed_check_node bounds |bias| plus
 * taps * 255 * 128 by 2^31 - 1, so every sum is exact in int32.
 *
 * Scratch: shared x_col (when built), packed weights and packed x_col, then per task an
 * int32 block of ROW_BLOCK channels by all output pixels. Tasks split the pixels' panels,
 * or the channels when there are fewer panels than tasks.
 */
#include <string.h>

#include "dsr_fixed_internal.h"
#include "dsr_gemm.h"

/* Output channels whose int32 sums one task keeps at a time: a multiple of dsr_gemm's row
 * tile. */
#define ROW_BLOCK 24

typedef struct conv_gemm {
  int32_t batch, cin, height, width, cout, out_h, out_w, kh, kw;
  int32_t stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
  int64_t pixels; /* out_h * out_w */
  int direct;     /* 1x1, stride 1, no padding: x is x_col */
  dsr_gemm gemm;  /* m = cout, k = taps, n = pixels */
} conv_gemm;

static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* Fills g; returns 0 where the other CONV2D orders apply (int16 input, several groups,
 * shapes past int32 sizes). */
static int conv_gemm_init(const dsr_model *model, const dsr_node *node, conv_gemm *g) {
  if (node->input_count < 2 || node->inputs[1] < 0 || node->inputs[1] >= model->tensor_count ||
      node->output < 0 || node->output >= model->tensor_count)
    return 0;

  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *wt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  const dsr_conv_attrs *a = &node->attrs.conv;
  if (xt->rank != 4 || wt->rank != 4 || yt->rank != 4 || a->group != 1 ||
      xt->qparams.dtype != DSR_DTYPE_I8)
    return 0;

  *g = (conv_gemm){.batch = xt->dims[0], .cin = xt->dims[1], .height = xt->dims[2],
                   .width = xt->dims[3], .cout = yt->dims[1], .out_h = yt->dims[2],
                   .out_w = yt->dims[3], .kh = wt->dims[2], .kw = wt->dims[3],
                   .stride_h = a->stride[0], .stride_w = a->stride[1],
                   .dilation_h = a->dilation[0], .dilation_w = a->dilation[1],
                   .pad_top = a->pad[0], .pad_left = a->pad[1]};
  if (g->stride_h < 1 || g->stride_w < 1 || g->dilation_h < 1 || g->dilation_w < 1 ||
      g->pad_top < 0 || g->pad_left < 0 || g->out_h < 1 || g->out_w < 1 || g->batch < 1 ||
      g->cout < 1 || g->cin < 1 || g->kh < 1 || g->kw < 1)
    return 0;

  int64_t taps = (int64_t)g->cin * g->kh * g->kw;
  g->pixels = (int64_t)g->out_h * g->out_w;
  if (taps > INT32_MAX / 16 || g->pixels > INT32_MAX / 16)
    return 0;

  g->direct = g->kh == 1 && g->kw == 1 && g->stride_h == 1 && g->stride_w == 1 &&
              g->pad_top == 0 && g->pad_left == 0 && g->out_h == g->height &&
              g->out_w == g->width;
  dsr_gemm gemm = {g->cout, (int32_t)g->pixels, (int32_t)taps, 0, xt->qparams.zero_point, 0};
  g->gemm = gemm;
  return 1;
}

/* Bytes of the shared parts (x_col, packed weights, packed x_col) and of one task's block. */
static void scratch_parts(const conv_gemm *g, size_t parts[4]) {
  parts[0] = g->direct ? 0 : round64((size_t)g->gemm.k * (size_t)g->pixels);
  parts[1] = round64(dsr_gemm_rows_bytes(&g->gemm));
  parts[2] = round64(dsr_gemm_columns_bytes(&g->gemm));
  int32_t rows = g->cout < ROW_BLOCK ? g->cout : ROW_BLOCK;
  parts[3] = round64((size_t)rows * (size_t)g->pixels * sizeof(int32_t));
}

size_t dsr_fixed_fast_conv2d_gemm_scratch_bytes(const dsr_model *model, const dsr_node *node,
                                                int32_t worker_count) {
  conv_gemm g;
  if (!conv_gemm_init(model, node, &g))
    return 0;
  size_t parts[4];
  scratch_parts(&g, parts);
  /* 64 more bytes let the parts start on a cache line whatever the scratch address. */
  return parts[0] + parts[1] + parts[2] + parts[3] * (size_t)(worker_count < 1 ? 1 : worker_count) +
         64;
}

typedef enum conv_step { STEP_IM2COL, STEP_PACK, STEP_MULTIPLY } conv_step;

typedef struct conv_job {
  const conv_gemm *g;
  const dsr_node *node;
  const dsr_tensor *yt;
  const int8_t *x;       /* batch item b of the input */
  const int8_t *w;
  const int32_t *bias;   /* NULL: none */
  const int8_t *x_col;   /* the column operand's source: x itself or col_buffer */
  int8_t *col_buffer;    /* im2col output in scratch */
  uint8_t *packed_rows, *packed_columns, *blocks;
  size_t block_bytes;
  int32_t b;
  int32_t task_count;
  int split_rows;
  conv_step step;
  void *out;
} conv_job;

/* Rows [t_begin, t_end) of x_col: tap t = (ic * kh + ky) * kw + kx reads input row
 * oy * stride_h - pad_top + ky * dilation_h, and x_zero stands for the padding. */
static void im2col_rows(const conv_job *job, int64_t t_begin, int64_t t_end) {
  const conv_gemm *g = job->g;
  int8_t pad = (int8_t)g->gemm.q_zero;
  for (int64_t t = t_begin; t < t_end; t++) {
    int32_t kx = (int32_t)(t % g->kw), ky = (int32_t)(t / g->kw % g->kh);
    int32_t ic = (int32_t)(t / ((int64_t)g->kw * g->kh));
    const int8_t *plane = job->x + (int64_t)ic * g->height * g->width;
    int8_t *row = job->col_buffer + t * g->pixels;
    for (int32_t oy = 0; oy < g->out_h; oy++) {
      int32_t iy = oy * g->stride_h - g->pad_top + ky * g->dilation_h;
      int8_t *dst = row + (int64_t)oy * g->out_w;
      if (iy < 0 || iy >= g->height) {
        memset(dst, pad, (size_t)g->out_w);
        continue;
      }
      const int8_t *src = plane + (int64_t)iy * g->width;
      for (int32_t ox = 0; ox < g->out_w; ox++) {
        int32_t ix = ox * g->stride_w - g->pad_left + kx * g->dilation_w;
        dst[ox] = ix < 0 || ix >= g->width ? pad : src[ix];
      }
    }
  }
}

/* Output channels [row_begin, row_end) over the pixels of panels [panel_begin, panel_end),
 * ROW_BLOCK channels at a time through block. */
static void multiply(const conv_job *job, int32_t row_begin, int32_t row_end,
                     int32_t panel_begin, int32_t panel_end, int32_t *block) {
  const conv_gemm *g = job->g;
  int32_t n = g->gemm.n;
  int32_t j_begin = panel_begin * DSR_GEMM_PANEL_COLUMNS;
  int32_t j_end = panel_end * DSR_GEMM_PANEL_COLUMNS < n ? panel_end * DSR_GEMM_PANEL_COLUMNS : n;
  for (int32_t i0 = row_begin; i0 < row_end; i0 += ROW_BLOCK) {
    int32_t i1 = i0 + ROW_BLOCK < row_end ? i0 + ROW_BLOCK : row_end;
    dsr_gemm_run(&g->gemm, job->packed_rows, job->packed_columns, i0, i1, panel_begin, panel_end,
                 block, n);
    for (int32_t oc = i0; oc < i1; oc++) {
      int32_t *sums = block + (int64_t)(oc - i0) * n + j_begin;
      int32_t count = j_end - j_begin;
      if (job->bias != NULL) {
        /* Modulo 2^32, exact because the true sum fits int32. */
        uint32_t bias = (uint32_t)job->bias[oc];
        for (int32_t j = 0; j < count; j++)
          sums[j] = (int32_t)((uint32_t)sums[j] + bias);
      }
      int64_t offset = ((int64_t)job->b * g->cout + oc) * g->pixels + j_begin;
      dsr_fixed_requant_store_row(sums, count, job->node->qwords + 2 + 2 * oc, 0,
                                  job->yt->qparams.zero_point, job->yt->qparams.dtype, job->out,
                                  offset);
    }
  }
}

static void conv_task(void *context, int32_t task_index) {
  const conv_job *job = context;
  const conv_gemm *g = job->g;
  int32_t panels = dsr_gemm_panels(&g->gemm);
  int64_t begin, end;
  switch (job->step) {
  case STEP_IM2COL:
    dsr_parallel_share(g->gemm.k, job->task_count, task_index, 1, &begin, &end);
    im2col_rows(job, begin, end);
    break;
  case STEP_PACK:
    dsr_parallel_share(panels, job->task_count, task_index, 1, &begin, &end);
    dsr_gemm_pack_columns(&g->gemm, job->x_col, g->pixels, 1, (int32_t)begin, (int32_t)end,
                          job->packed_columns);
    dsr_parallel_share(g->cout, job->task_count, task_index, 1, &begin, &end);
    dsr_gemm_pack_rows(&g->gemm, job->w, g->gemm.k, 1, (int32_t)begin, (int32_t)end,
                       job->packed_rows);
    break;
  case STEP_MULTIPLY: {
    int32_t *block = (int32_t *)(job->blocks + (size_t)task_index * job->block_bytes);
    if (job->split_rows) {
      dsr_parallel_share(g->cout, job->task_count, task_index, 1, &begin, &end);
      multiply(job, (int32_t)begin, (int32_t)end, 0, panels, block);
    } else {
      dsr_parallel_share(panels, job->task_count, task_index, 1, &begin, &end);
      multiply(job, 0, g->cout, (int32_t)begin, (int32_t)end, block);
    }
    break;
  }
  }
}

/* Runs one step of job over unit_count units of about unit_ops operations each. */
static void run_step(conv_job *job, const dsr_parallel *parallel, conv_step step,
                     int64_t unit_count, int64_t unit_ops) {
  job->step = step;
  job->task_count = dsr_parallel_tasks(parallel, unit_count, unit_ops);
  dsr_parallel_run(parallel, conv_task, job, job->task_count);
}

int dsr_fixed_fast_conv2d_gemm(const dsr_model *model, const dsr_node *node,
                               const void *const *in, void *out, uint8_t *scratch,
                               const dsr_parallel *parallel) {
  conv_gemm g;
  if (!conv_gemm_init(model, node, &g))
    return 0;
  size_t parts[4];
  scratch_parts(&g, parts);
  uint8_t *base = scratch + (64 - (uintptr_t)scratch % 64) % 64;
  conv_job job = {.g = &g, .node = node, .yt = &model->tensors[node->output], .w = in[1],
                  .bias = node->input_count > 2 && node->inputs[2] >= 0 ? in[2] : NULL,
                  .packed_rows = base + parts[0], .packed_columns = base + parts[0] + parts[1],
                  .blocks = base + parts[0] + parts[1] + parts[2], .block_bytes = parts[3],
                  .out = out};
  int32_t panels = dsr_gemm_panels(&g.gemm);
  int64_t input_plane = (int64_t)g.height * g.width;
  for (int32_t b = 0; b < g.batch; b++) {
    job.b = b;
    job.x = (const int8_t *)in[0] + (int64_t)b * g.cin * input_plane;
    if (g.direct) {
      job.x_col = job.x;
    } else {
      job.col_buffer = (int8_t *)base;
      job.x_col = job.col_buffer;
      run_step(&job, parallel, STEP_IM2COL, g.gemm.k, g.pixels);
    }
    run_step(&job, parallel, STEP_PACK, panels, (int64_t)g.gemm.k * DSR_GEMM_PANEL_COLUMNS);

    /* Pixels are split unless there are fewer panels than workers. */
    job.split_rows = panels < dsr_parallel_workers(parallel);
    if (job.split_rows)
      run_step(&job, parallel, STEP_MULTIPLY, g.cout, (int64_t)g.pixels * g.gemm.k);
    else
      run_step(&job, parallel, STEP_MULTIPLY, panels,
               (int64_t)g.cout * g.gemm.k * DSR_GEMM_PANEL_COLUMNS);
  }
  return 1;
}
