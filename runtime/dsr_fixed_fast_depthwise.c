/*
 * Depthwise CONV2D with stride 1 (one input and one output channel per group), bit-identical
 * to run_conv2d in dsr_fixed.c. DAT++ runs these on small maps (7x7 to 56x56), where loops
 * over single output rows are too short to vectorize.
 *
 * Each channel's input is copied, zero point subtracted, into a zero-padded int16 plane of
 * plane_w columns. The sums are then computed on the padded grid: position p = oy * plane_w
 * + ox of acc takes w * plane[p + ky * dilation * plane_w + kx * dilation] for every tap, one
 * contiguous pass of out_h * plane_w positions per tap. Positions with ox >= out_w are not
 * outputs and are dropped when the rows are compacted. Each term is at most 128 * 32768 =
 * 2^22 in magnitude, and the check below keeps taps * 2^22 within int32, so the tap sums are
 * exact in int32. The bias is added in the reference's width: int32 for an int8 input (whose
 * bound dsr_fixed_check_node enforces) and int64 for an int16 input.
 *
 * Scratch per task: the plane (plus kw columns read past its end by the dropped positions),
 * acc and the compacted int64 sums.
 */
#include <string.h>

#include "dsr_fixed_internal.h"

typedef struct depthwise {
  int32_t batch, channels, height, width, out_h, out_w, kh, kw;
  int32_t dilation_h, dilation_w, pad_top, pad_left;
  int32_t plane_h, plane_w;
  int64_t pixels;        /* out_h * out_w */
  int64_t grid;          /* out_h * plane_w: positions summed per tap */
  int64_t plane_bytes;   /* plane and its overrun, rounded to 64 */
  int64_t acc_bytes;     /* acc, rounded to 64 */
  int64_t sums_bytes;    /* compacted sums, rounded to 64 */
  int32_t x_dtype, x_zero;
} depthwise;

static int64_t round64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

/* Fills d; returns 0 for any other convolution. */
static int depthwise_init(const dsr_model *model, const dsr_node *node, depthwise *d) {
  if (node->input_count < 2 || node->inputs[1] < 0 || node->inputs[1] >= model->tensor_count ||
      node->output < 0 || node->output >= model->tensor_count)
    return 0;

  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *wt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  const dsr_conv_attrs *a = &node->attrs.conv;
  if (xt->rank != 4 || wt->rank != 4 || yt->rank != 4 || a->group < 2 ||
      a->group != xt->dims[1] || yt->dims[1] != xt->dims[1] || a->stride[0] != 1 ||
      a->stride[1] != 1)
    return 0;

  *d = (depthwise){.batch = xt->dims[0], .channels = xt->dims[1], .height = xt->dims[2],
                   .width = xt->dims[3], .out_h = yt->dims[2], .out_w = yt->dims[3],
                   .kh = wt->dims[2], .kw = wt->dims[3], .dilation_h = a->dilation[0],
                   .dilation_w = a->dilation[1], .pad_top = a->pad[0], .pad_left = a->pad[1],
                   .x_dtype = xt->qparams.dtype, .x_zero = xt->qparams.zero_point};
  if (d->dilation_h < 1 || d->dilation_w < 1 || d->pad_top < 0 || d->pad_left < 0 ||
      d->out_h < 1 || d->out_w < 1 || d->kh < 1 || d->kw < 1 || d->batch < 1)
    return 0;

  /* Tap sums stay within int32: taps * 2^22 < 2^31. */
  if ((int64_t)d->kh * d->kw >= 512)
    return 0;
  int64_t plane_h = (int64_t)d->out_h + (int64_t)(d->kh - 1) * d->dilation_h;
  int64_t plane_w = (int64_t)d->out_w + (int64_t)(d->kw - 1) * d->dilation_w;
  if (plane_h * plane_w > INT32_MAX / 4)
    return 0;

  d->plane_h = (int32_t)plane_h;
  d->plane_w = (int32_t)plane_w;
  d->pixels = (int64_t)d->out_h * d->out_w;
  d->grid = (int64_t)d->out_h * plane_w;
  /* The last grid row reads up to (kw - 1) * dilation_w columns past the plane. */
  int64_t overrun = (int64_t)(d->kw - 1) * d->dilation_w;
  d->plane_bytes = round64((plane_h * plane_w + overrun) * (int64_t)sizeof(int16_t));
  d->acc_bytes = round64(d->grid * (int64_t)sizeof(int32_t));
  d->sums_bytes = round64(d->pixels * (int64_t)sizeof(int64_t));
  return 1;
}

size_t dsr_fixed_fast_depthwise_scratch_bytes(const dsr_model *model, const dsr_node *node,
                                              int32_t worker_count) {
  depthwise d;
  if (!depthwise_init(model, node, &d))
    return 0;
  int64_t slot = d.plane_bytes + d.acc_bytes + d.sums_bytes;
  return (size_t)slot * (size_t)(worker_count < 1 ? 1 : worker_count) + 64;
}

/* Copies channel plane (offset elements into x) into plane, zero point subtracted, at row
 * pad_top and column pad_left. The rest of plane and its overrun become 0. */
static void fill_plane(const depthwise *d, const void *x, int64_t offset, int16_t *plane) {
  memset(plane, 0, (size_t)d->plane_bytes);
  int64_t rows = d->plane_h - (int64_t)d->pad_top;
  int64_t cols = d->plane_w - (int64_t)d->pad_left;
  rows = rows < d->height ? rows : d->height;
  cols = cols < d->width ? cols : d->width;
  for (int64_t r = 0; r < rows; r++) {
    int16_t *dst = plane + (r + d->pad_top) * d->plane_w + d->pad_left;
    if (d->x_dtype == DSR_DTYPE_I8) {
      const int8_t *row = (const int8_t *)x + offset + r * d->width;
      for (int64_t c = 0; c < cols; c++)
        dst[c] = (int16_t)(row[c] - d->x_zero); /* in [-255, 255] */
    } else {
      memcpy(dst, (const int16_t *)x + offset + r * d->width, (size_t)cols * sizeof(int16_t));
    }
  }
}

/* acc[p] += w * src[p] over count positions. */
DSR_FIXED_VECTOR_CLONES
static void add_tap(int32_t *restrict acc, const int16_t *restrict src, int32_t w,
                    int64_t count) {
  for (int64_t p = 0; p < count; p++)
    acc[p] += w * src[p];
}

/* One output channel of batch item b. */
static void run_channel(const depthwise *d, const dsr_node *node, const void *const *in,
                        const dsr_tensor *yt, int32_t b, int32_t c, uint8_t *slot, void *out) {
  int16_t *plane = (int16_t *)slot;
  int32_t *acc = (int32_t *)(slot + d->plane_bytes);
  int64_t *sums = (int64_t *)(slot + d->plane_bytes + d->acc_bytes);
  int64_t channel_offset = ((int64_t)b * d->channels + c);
  fill_plane(d, in[0], channel_offset * d->height * d->width, plane);

  memset(acc, 0, (size_t)d->grid * sizeof(int32_t));
  const int8_t *w = (const int8_t *)in[1] + (int64_t)c * d->kh * d->kw;
  for (int32_t ky = 0; ky < d->kh; ky++) {
    for (int32_t kx = 0; kx < d->kw; kx++) {
      int32_t tap = w[ky * d->kw + kx];
      if (tap != 0)
        add_tap(acc, plane + (int64_t)ky * d->dilation_h * d->plane_w + (int64_t)kx * d->dilation_w,
                tap, d->grid);
    }
  }

  const int32_t *bias = node->input_count > 2 && node->inputs[2] >= 0 ? in[2] : NULL;
  int32_t bias_c = bias != NULL ? bias[c] : 0;
  const int32_t *pair = node->qwords + 2 + 2 * c;
  int64_t y_offset = channel_offset * d->pixels;
  if (d->x_dtype == DSR_DTYPE_I8) {
    /* Compacted in place: row oy moves from oy * plane_w to oy * out_w, never forward. */
    for (int32_t oy = 0; oy < d->out_h; oy++) {
      const int32_t *src = acc + (int64_t)oy * d->plane_w;
      int32_t *dst = acc + (int64_t)oy * d->out_w;
      for (int32_t ox = 0; ox < d->out_w; ox++)
        dst[ox] = src[ox] + bias_c;
    }
    dsr_fixed_requant_store_row(acc, d->pixels, pair, 0, yt->qparams.zero_point,
                                yt->qparams.dtype, out, y_offset);
    return;
  }
  for (int32_t oy = 0; oy < d->out_h; oy++) {
    for (int32_t ox = 0; ox < d->out_w; ox++)
      sums[(int64_t)oy * d->out_w + ox] = (int64_t)acc[(int64_t)oy * d->plane_w + ox] + bias_c;
  }
  dsr_fixed_requant_row64(sums, d->pixels, pair, 0, acc);
  dsr_fixed_store_row(acc, d->pixels, yt->qparams.zero_point, yt->qparams.dtype, out, y_offset);
}

typedef struct depthwise_job {
  const depthwise *d;
  const dsr_node *node;
  const void *const *in;
  const dsr_tensor *yt;
  uint8_t *slots;
  int64_t slot_bytes;
  int32_t task_count;
  void *out;
} depthwise_job;

static void depthwise_task(void *context, int32_t task_index) {
  const depthwise_job *job = context;
  const depthwise *d = job->d;
  int64_t begin, end;
  dsr_parallel_share((int64_t)d->batch * d->channels, job->task_count, task_index, 1, &begin,
                     &end);
  uint8_t *slot = job->slots + (size_t)task_index * (size_t)job->slot_bytes;
  for (int64_t unit = begin; unit < end; unit++)
    run_channel(d, job->node, job->in, job->yt, (int32_t)(unit / d->channels),
                (int32_t)(unit % d->channels), slot, job->out);
}

int dsr_fixed_fast_depthwise(const dsr_model *model, const dsr_node *node,
                             const void *const *in, void *out, uint8_t *scratch,
                             const dsr_parallel *parallel) {
  depthwise d;
  if (!depthwise_init(model, node, &d))
    return 0;
  depthwise_job job = {.d = &d, .node = node, .in = in, .yt = &model->tensors[node->output],
                       .slots = scratch + (64 - (uintptr_t)scratch % 64) % 64,
                       .slot_bytes = d.plane_bytes + d.acc_bytes + d.sums_bytes, .out = out};
  job.task_count = dsr_parallel_tasks(parallel, (int64_t)d.batch * d.channels,
                                      d.grid * d.kh * d.kw);
  dsr_parallel_run(parallel, depthwise_task, &job, job.task_count);
  return 1;
}
