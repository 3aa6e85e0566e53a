/*
 * Optimized CONV2D for the fixed-point runtime, bit-identical to run_conv2d in dsr_fixed.c.
 *
 * Each input plane of a batch item is first copied, zero point subtracted, into a zero-padded
 * int16 plane in scratch. x - zero lies in [-255, 255] for int8 and in [-32768, 32767] for
 * int16 (zero point 0). The padding is the real value 0 that the reference skips. The
 * tap loops then run over whole output rows with neither bounds tests nor dtype dispatch:
 * for each output channel, each weight tap adds w * plane[...] to an accumulator row over all
 * output pixels. Integer sums do not depend on the order of their terms as long as no partial
 * sum overflows, which the accumulator comments below show, so the results equal the
 * reference ones.
 *
 * Convolutions with many taps per output (cin_group * kh * kw >= PATCH_MIN_TAPS) and few
 * pixels would spend their time in short rows, so they take another order: the taps of each
 * output pixel are gathered from the planes into a contiguous int16 patch row, and each
 * output is a dot product of the channel's weights (widened to int16) with a patch row.
 *
 * Scratch layout (each part a multiple of 8 bytes), the first two parts once per task of the
 * parallel hook (output channels are split between tasks), the others shared:
 *   int64 acc_wide[pixels]                 64-bit sums of int16 inputs
 *   int32 acc[pixels]                      32-bit sums (4 * pixels in the patch order)
 *   int16 planes[cin][plane_h][plane_w]    padded input planes of one batch item
 *   int16 patches[pixels][taps]            patch path only: one group's patch rows
 *   int16 weights[cout_group][taps]        patch path only: one group's weights
 * where pixels = out_h * out_w and taps = cin_group * kh * kw.
 */
#include <string.h>

#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"

/* Taps summed in 32 bits before a wide accumulator takes them: each term w * x has magnitude
 * at most 128 * 32768 = 2^22, so 256 of them stay within 2^30 < 2^31. */
#define WIDE_CHUNK_TAPS 256

/* Taps per output from which the patch order is used. */
#define PATCH_MIN_TAPS 32

typedef struct conv_geometry {
  int32_t batch, cin, height, width;
  int32_t cout, out_h, out_w, kh, kw;
  int32_t cin_group, cout_group;
  int32_t stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
  int32_t plane_h, plane_w; /* padded plane: rows and columns any tap reads */
  int64_t pixels;           /* out_h * out_w */
  int64_t plane_elements;   /* plane_h * plane_w */
  int32_t taps;             /* cin_group * kh * kw */
  int patches;              /* the patch order applies */
} conv_geometry;

static size_t round8(size_t bytes) { return (bytes + 7) / 8 * 8; }

/* Fills g from node; returns 0 for attributes this kernel leaves to the reference one
 * (non-positive stride or dilation, negative padding, an empty output). */
static int geometry_init(const dsr_model *model, const dsr_node *node, conv_geometry *g) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *wt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  const dsr_conv_attrs *a = &node->attrs.conv;
  if (xt->rank != 4 || wt->rank != 4 || yt->rank != 4 || a->group < 1)
    return 0;

  *g = (conv_geometry){
      .batch = xt->dims[0], .cin = xt->dims[1], .height = xt->dims[2], .width = xt->dims[3],
      .cout = yt->dims[1], .out_h = yt->dims[2], .out_w = yt->dims[3],
      .kh = wt->dims[2], .kw = wt->dims[3],
      .cin_group = xt->dims[1] / a->group, .cout_group = yt->dims[1] / a->group,
      .stride_h = a->stride[0], .stride_w = a->stride[1],
      .dilation_h = a->dilation[0], .dilation_w = a->dilation[1],
      .pad_top = a->pad[0], .pad_left = a->pad[1]};

  if (g->stride_h < 1 || g->stride_w < 1 || g->dilation_h < 1 || g->dilation_w < 1 ||
      g->pad_top < 0 || g->pad_left < 0 || g->out_h < 1 || g->out_w < 1 || g->kh < 1 ||
      g->kw < 1 || g->cin_group < 1 || g->cout_group < 1 || g->batch < 1)
    return 0;

  int64_t plane_h = (int64_t)(g->out_h - 1) * g->stride_h + (int64_t)(g->kh - 1) * g->dilation_h + 1;
  int64_t plane_w = (int64_t)(g->out_w - 1) * g->stride_w + (int64_t)(g->kw - 1) * g->dilation_w + 1;
  if (plane_h > INT32_MAX || plane_w > INT32_MAX)
    return 0;
  g->plane_h = (int32_t)plane_h;
  g->plane_w = (int32_t)plane_w;

  int64_t taps = (int64_t)g->cin_group * g->kh * g->kw;
  if (taps > INT32_MAX)
    return 0;
  g->pixels = (int64_t)g->out_h * g->out_w;
  g->plane_elements = plane_h * plane_w;
  g->taps = (int32_t)taps;
  g->patches = taps >= PATCH_MIN_TAPS;
  return 1;
}

/* Bytes of each scratch part, in layout order: parts 0 and 1 are private to each task,
 * parts 2 to 4 shared by all. */
static void scratch_parts(const conv_geometry *g, size_t parts[5]) {
  parts[0] = round8((size_t)g->pixels * sizeof(int64_t));
  /* The patch order sums 4 output channels at once. */
  parts[1] = round8((size_t)g->pixels * (g->patches ? 4 : 1) * sizeof(int32_t));
  parts[2] = round8((size_t)g->cin * (size_t)g->plane_elements * sizeof(int16_t));
  parts[3] = g->patches ? round8((size_t)g->pixels * (size_t)g->taps * sizeof(int16_t)) : 0;
  parts[4] = g->patches ? round8((size_t)g->cout_group * (size_t)g->taps * sizeof(int16_t)) : 0;
}

static size_t scratch_bytes(const conv_geometry *g, int32_t worker_count) {
  size_t parts[5];
  scratch_parts(g, parts);
  return (parts[0] + parts[1]) * (size_t)worker_count + parts[2] + parts[3] + parts[4];
}

size_t dsr_fixed_fast_conv2d_scratch_bytes_for_workers(const dsr_model *model,
                                                       const dsr_node *node,
                                                       int32_t worker_count) {
  conv_geometry g;
  if (node->input_count < 2 || node->inputs[1] < 0 || node->inputs[1] >= model->tensor_count ||
      node->output < 0 || node->output >= model->tensor_count || !geometry_init(model, node, &g))
    return 0;
  size_t gemm_bytes = dsr_fixed_fast_conv2d_gemm_scratch_bytes(model, node, worker_count);
  if (gemm_bytes > 0)
    return gemm_bytes;
  size_t depthwise_bytes = dsr_fixed_fast_depthwise_scratch_bytes(model, node, worker_count);
  if (depthwise_bytes > 0)
    return depthwise_bytes;
  return scratch_bytes(&g, worker_count < 1 ? 1 : worker_count);
}

size_t dsr_fixed_fast_conv2d_scratch_bytes(const dsr_model *model, const dsr_node *node) {
  return dsr_fixed_fast_conv2d_scratch_bytes_for_workers(model, node, 1);
}

/* Copies input plane (offset elements into x) into plane, zero point subtracted, at row
 * pad_top and column pad_left; every other element of plane becomes 0. */
static void fill_plane(const void *x, int32_t dtype, int32_t zero, int64_t offset,
                       const conv_geometry *g, int16_t *plane) {
  memset(plane, 0, (size_t)g->plane_elements * sizeof(int16_t));
  int64_t rows = g->plane_h - (int64_t)g->pad_top;
  int64_t cols = g->plane_w - (int64_t)g->pad_left;
  rows = rows < g->height ? rows : g->height;
  cols = cols < g->width ? cols : g->width;
  for (int64_t r = 0; r < rows; r++) {
    int16_t *dst = plane + (r + g->pad_top) * g->plane_w + g->pad_left;
    int64_t src = offset + r * g->width;
    if (dtype == DSR_DTYPE_I8) {
      const int8_t *row = (const int8_t *)x + src;
      for (int64_t c = 0; c < cols; c++)
        dst[c] = (int16_t)(row[c] - zero); /* in [-255, 255] */
    } else {
      const int16_t *row = (const int16_t *)x + src;
      memcpy(dst, row, (size_t)cols * sizeof(int16_t)); /* zero point 0 */
    }
  }
}

/*
 * acc[p] += w * plane[tap position of p] over every output pixel p, for the tap (ky, kx).
 * Each term has magnitude at most 128 * 32768 = 2^22; the callers bound the sums.
 */
DSR_FIXED_VECTOR_CLONES
static void add_tap(int32_t *restrict acc, const int16_t *restrict plane, int32_t w,
                    const conv_geometry *g, int32_t ky, int32_t kx) {
  const int16_t *origin = plane + (int64_t)ky * g->dilation_h * g->plane_w + (int64_t)kx * g->dilation_w;
  if (g->stride_h == 1 && g->stride_w == 1 && g->plane_w == g->out_w) {
    /* Output rows are consecutive plane rows: one contiguous run. */
    for (int64_t p = 0; p < g->pixels; p++)
      acc[p] += w * origin[p];
    return;
  }
  for (int32_t oy = 0; oy < g->out_h; oy++) {
    const int16_t *src = origin + (int64_t)oy * g->stride_h * g->plane_w;
    int32_t *dst = acc + (int64_t)oy * g->out_w;
    if (g->stride_w == 1) {
      for (int32_t ox = 0; ox < g->out_w; ox++)
        dst[ox] += w * src[ox];
    } else {
      for (int32_t ox = 0; ox < g->out_w; ox++)
        dst[ox] += w * src[(int64_t)ox * g->stride_w];
    }
  }
}

/*
 * acc[p] += w0 * x0 + w1 * x1 + w2 * x2 over every output pixel p, where xk is the plane value
 * tap (ky, k) reads: a kernel row of 3 taps per pass over the output rows. int8 input only,
 * whose partial sums the bound of sum_narrow covers.
 */
DSR_FIXED_VECTOR_CLONES
static void add_kernel_row3(int32_t *restrict acc, const int16_t *restrict plane,
                            const int8_t *w, const conv_geometry *g, int32_t ky) {
  int32_t w0 = w[0], w1 = w[1], w2 = w[2];
  int64_t step = g->dilation_w;
  const int16_t *origin = plane + (int64_t)ky * g->dilation_h * g->plane_w;
  for (int32_t oy = 0; oy < g->out_h; oy++) {
    const int16_t *src = origin + (int64_t)oy * g->stride_h * g->plane_w;
    int32_t *dst = acc + (int64_t)oy * g->out_w;
    if (g->stride_w == 1) {
      for (int32_t ox = 0; ox < g->out_w; ox++)
        dst[ox] += w0 * src[ox] + w1 * src[ox + step] + w2 * src[ox + 2 * step];
    } else {
      for (int32_t ox = 0; ox < g->out_w; ox++) {
        const int16_t *x = src + (int64_t)ox * g->stride_w;
        dst[ox] += w0 * x[0] + w1 * x[step] + w2 * x[2 * step];
      }
    }
  }
}

/*
 * Sums the taps of output channel oc with int8 input into acc, starting from the bias.
 * dsr_fixed_check_node bounds |bias| + taps * 255 * 128 by 2^31 - 1, and every partial sum
 * is within that bound, so no int32 sum overflows.
 */
static void sum_narrow(const int16_t *planes, const int8_t *wc, int32_t bias, int32_t oc,
                       const conv_geometry *g, int32_t *acc) {
  for (int64_t p = 0; p < g->pixels; p++)
    acc[p] = bias;
  const int16_t *group_planes = planes + (int64_t)(oc / g->cout_group) * g->cin_group * g->plane_elements;
  for (int32_t ic = 0; ic < g->cin_group; ic++) {
    for (int32_t ky = 0; ky < g->kh; ky++) {
      const int8_t *w_row = wc + ((int64_t)ic * g->kh + ky) * g->kw;
      if (g->kw == 3) {
        add_kernel_row3(acc, group_planes + ic * g->plane_elements, w_row, g, ky);
        continue;
      }
      for (int32_t kx = 0; kx < g->kw; kx++) {
        if (w_row[kx] != 0)
          add_tap(acc, group_planes + ic * g->plane_elements, w_row[kx], g, ky, kx);
      }
    }
  }
}

/* Adds the 32-bit partial sums into the 64-bit ones and clears them. */
static void flush_wide(int32_t *acc, int64_t *acc_wide, int64_t pixels) {
  for (int64_t p = 0; p < pixels; p++) {
    acc_wide[p] += acc[p];
    acc[p] = 0;
  }
}

/*
 * Sums the taps of output channel oc with int16 input into acc_wide, starting from the bias,
 * as the reference does in 64 bits. Taps go through the int32 acc in chunks of
 * WIDE_CHUNK_TAPS, whose sums stay within 2^30.
 */
static void sum_wide(const int16_t *planes, const int8_t *wc, int32_t bias, int32_t oc,
                     const conv_geometry *g, int32_t *acc, int64_t *acc_wide) {
  for (int64_t p = 0; p < g->pixels; p++) {
    acc_wide[p] = bias;
    acc[p] = 0;
  }
  const int16_t *group_planes = planes + (int64_t)(oc / g->cout_group) * g->cin_group * g->plane_elements;
  int32_t pending = 0;
  for (int32_t ic = 0; ic < g->cin_group; ic++) {
    for (int32_t ky = 0; ky < g->kh; ky++) {
      for (int32_t kx = 0; kx < g->kw; kx++) {
        int32_t w = wc[((int64_t)ic * g->kh + ky) * g->kw + kx];
        if (w == 0)
          continue;
        add_tap(acc, group_planes + ic * g->plane_elements, w, g, ky, kx);
        if (++pending == WIDE_CHUNK_TAPS) {
          flush_wide(acc, acc_wide, g->pixels);
          pending = 0;
        }
      }
    }
  }
  flush_wide(acc, acc_wide, g->pixels);
}

/* Requantizes one output channel's sums with pair and stores them, y_zero added. The
 * requantized values replace acc. */
static void store_channel(int32_t *acc, const int64_t *acc_wide, const int32_t *pair,
                          const dsr_tensor *yt, int64_t offset, int64_t pixels, void *out) {
  if (acc_wide != NULL)
    dsr_fixed_requant_row64(acc_wide, pixels, pair, 0, acc);
  else
    dsr_fixed_requant_row32(acc, pixels, pair, 0, acc);
  dsr_fixed_store_row(acc, pixels, yt->qparams.zero_point, yt->qparams.dtype, out, offset);
}

/* Tap order: output channels oc_begin..oc_end - 1 of one batch item, from the planes. */
static void run_taps(const int16_t *planes, const int8_t *w, const int32_t *bias,
                     const int32_t *pairs, int wide, const conv_geometry *g, const dsr_tensor *yt,
                     int32_t b, int32_t oc_begin, int32_t oc_end, int32_t *acc,
                     int64_t *acc_wide, void *out) {
  for (int32_t oc = oc_begin; oc < oc_end; oc++) {
    const int8_t *wc = w + (int64_t)oc * g->taps;
    int32_t bias_oc = bias != NULL ? bias[oc] : 0;
    if (wide)
      sum_wide(planes, wc, bias_oc, oc, g, acc, acc_wide);
    else
      sum_narrow(planes, wc, bias_oc, oc, g, acc);
    store_channel(acc, wide ? acc_wide : NULL, pairs + 2 * oc, yt,
                  ((int64_t)b * g->cout + oc) * g->pixels, g->pixels, out);
  }
}

/* Gathers the patch row of every output pixel of group from the planes: patches[p][t] is the
 * plane value that tap t = (ic * kh + ky) * kw + kx of pixel p reads. The loops run tap by tap
 * over whole output rows, which keeps them long for small kernels. */
static void fill_patches(const int16_t *planes, int32_t group, int32_t ic_begin, int32_t ic_end,
                         const conv_geometry *g, int16_t *patches) {
  const int16_t *group_planes = planes + (int64_t)group * g->cin_group * g->plane_elements;
  int32_t t = ic_begin * g->kh * g->kw;
  for (int32_t ic = ic_begin; ic < ic_end; ic++) {
    for (int32_t ky = 0; ky < g->kh; ky++) {
      for (int32_t kx = 0; kx < g->kw; kx++, t++) {
        const int16_t *origin = group_planes + ic * g->plane_elements +
                                (int64_t)ky * g->dilation_h * g->plane_w +
                                (int64_t)kx * g->dilation_w;
        for (int32_t oy = 0; oy < g->out_h; oy++) {
          const int16_t *src = origin + (int64_t)oy * g->stride_h * g->plane_w;
          int16_t *dst = patches + (int64_t)oy * g->out_w * g->taps + t;
          for (int32_t ox = 0; ox < g->out_w; ox++)
            dst[(int64_t)ox * g->taps] = src[(int64_t)ox * g->stride_w];
        }
      }
    }
  }
}

/*
 * Sums one output channel over the patch rows into acc (int8 input) or acc_wide (int16
 * input), starting from the bias. The int8 bound is the one of sum_narrow. For int16 input
 * each int32 partial sum takes WIDE_CHUNK_TAPS terms of at most 2^22, within 2^30.
 */
static void sum_patches(const int16_t *patches, const int16_t *weights, int32_t bias, int wide,
                        const conv_geometry *g, int32_t *acc, int64_t *acc_wide) {
  for (int64_t p = 0; p < g->pixels; p++) {
    const int16_t *patch = patches + p * g->taps;
    if (wide)
      acc_wide[p] = bias + dsr_fixed_dot16_wide(weights, patch, g->taps, WIDE_CHUNK_TAPS);
    else
      acc[p] = bias + dsr_fixed_dot16(weights, patch, g->taps);
  }
}

/* sum_patches for int8 input and the 4 output channels first..first + 3 of the group's
 * weights at once, into acc rows of pixels each. Each sum has the bound of sum_narrow. */
static void sum_patches4(const int16_t *patches, const int16_t *weights, const int32_t *bias,
                         int32_t first, const conv_geometry *g, int32_t *acc) {
  int64_t p = 0;
  for (; p + 2 <= g->pixels; p += 2) {
    int32_t sums[8];
    dsr_fixed_dot16x4x2(patches + p * g->taps, patches + (p + 1) * g->taps, weights, g->taps,
                        sums);
    for (int32_t j = 0; j < 4; j++) {
      int32_t b = bias != NULL ? bias[first + j] : 0;
      acc[j * g->pixels + p] = b + sums[j];
      acc[j * g->pixels + p + 1] = b + sums[4 + j];
    }
  }
  for (; p < g->pixels; p++) {
    int32_t sums[4];
    dsr_fixed_dot16x4(patches + p * g->taps, weights, g->taps, sums);
    for (int32_t j = 0; j < 4; j++)
      acc[j * g->pixels + p] = (bias != NULL ? bias[first + j] : 0) + sums[j];
  }
}

/* Patch order: channels k_begin..k_end - 1 of group (counted inside the group) of one batch
 * item, from the group's patch rows and weights. */
static void run_patches(const int16_t *patches, const int16_t *weights, const int32_t *bias,
                        const int32_t *pairs, int wide, const conv_geometry *g,
                        const dsr_tensor *yt, int32_t b, int32_t group, int32_t k_begin,
                        int32_t k_end, int32_t *acc, int64_t *acc_wide, void *out) {
  int32_t first = group * g->cout_group;
  int32_t k = k_begin;
  for (; !wide && k + 4 <= k_end; k += 4) {
    sum_patches4(patches, weights + (int64_t)k * g->taps, bias, first + k, g, acc);
    for (int32_t j = 0; j < 4; j++)
      store_channel(acc + j * g->pixels, NULL, pairs + 2 * (first + k + j), yt,
                    ((int64_t)b * g->cout + first + k + j) * g->pixels, g->pixels, out);
  }
  for (; k < k_end; k++) {
    int32_t oc = first + k;
    sum_patches(patches, weights + (int64_t)k * g->taps, bias != NULL ? bias[oc] : 0, wide, g,
                acc, acc_wide);
    store_channel(acc, wide ? acc_wide : NULL, pairs + 2 * oc, yt,
                  ((int64_t)b * g->cout + oc) * g->pixels, g->pixels, out);
  }
}

/* One step of a batch item, split into tasks: each task takes a contiguous share of the
 * channels and, for the sums, its own accumulator rows. */
typedef enum conv_step { CONV_FILL_PLANES, CONV_FILL_PATCHES, CONV_TAPS, CONV_PATCHES } conv_step;

typedef struct conv_job {
  conv_step step;
  const conv_geometry *g;
  const dsr_tensor *yt;
  const void *x;
  int32_t x_dtype, x_zero;
  const int8_t *w;
  const int32_t *bias;
  const int32_t *pairs;
  int wide;
  int32_t b, group, task_count;
  int16_t *planes, *patches, *weights;
  uint8_t *private_base; /* task i's accumulators start at private_base + i * private_bytes */
  size_t private_bytes, acc_offset;
  void *out;
} conv_job;

static void conv_task(void *context, int32_t task_index) {
  const conv_job *job = context;
  const conv_geometry *g = job->g;
  int64_t begin, end;
  int64_t in_plane = (int64_t)g->height * g->width;
  int64_t *acc_wide = (int64_t *)(job->private_base + (size_t)task_index * job->private_bytes);
  int32_t *acc = (int32_t *)((uint8_t *)acc_wide + job->acc_offset);
  switch (job->step) {
  case CONV_FILL_PLANES:
    dsr_parallel_share(g->cin, job->task_count, task_index, 1, &begin, &end);
    for (int64_t c = begin; c < end; c++)
      fill_plane(job->x, job->x_dtype, job->x_zero, ((int64_t)job->b * g->cin + c) * in_plane, g,
                 job->planes + c * g->plane_elements);
    break;
  case CONV_FILL_PATCHES:
    dsr_parallel_share(g->cin_group, job->task_count, task_index, 1, &begin, &end);
    fill_patches(job->planes, job->group, (int32_t)begin, (int32_t)end, g, job->patches);
    break;
  case CONV_TAPS:
    dsr_parallel_share(g->cout, job->task_count, task_index, 1, &begin, &end);
    run_taps(job->planes, job->w, job->bias, job->pairs, job->wide, g, job->yt, job->b,
             (int32_t)begin, (int32_t)end, acc, acc_wide, job->out);
    break;
  case CONV_PATCHES:
    /* Shares of whole blocks of 4 channels keep the 4-channel sums together. */
    dsr_parallel_share(g->cout_group, job->task_count, task_index, 4, &begin, &end);
    run_patches(job->patches, job->weights, job->bias, job->pairs, job->wide, g, job->yt,
                job->b, job->group, (int32_t)begin, (int32_t)end, acc, acc_wide, job->out);
    break;
  }
}

/* Runs one step of job over unit_count units of about unit_ops operations each. */
static void run_step(conv_job *job, const dsr_parallel *parallel, conv_step step,
                     int64_t unit_count, int64_t unit_ops) {
  job->step = step;
  job->task_count = dsr_parallel_tasks(parallel, unit_count, unit_ops);
  dsr_parallel_run(parallel, conv_task, job, job->task_count);
}

int dsr_fixed_fast_conv2d_parallel(const dsr_model *model, const dsr_node *node,
                                   const void *const *in, void *out, uint8_t *scratch,
                                   const dsr_parallel *parallel) {
  conv_geometry g;
  if (!geometry_init(model, node, &g))
    return 0;
  if (dsr_fixed_fast_conv2d_gemm(model, node, in, out, scratch, parallel) ||
      dsr_fixed_fast_depthwise(model, node, in, out, scratch, parallel))
    return 1;
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  size_t parts[5];
  scratch_parts(&g, parts);
  int32_t worker_count = dsr_parallel_workers(parallel);
  uint8_t *shared = scratch + (parts[0] + parts[1]) * (size_t)worker_count;
  conv_job job = {
      .g = &g, .yt = &model->tensors[node->output], .x = in[0],
      .x_dtype = xt->qparams.dtype, .x_zero = xt->qparams.zero_point,
      .w = in[1], .bias = node->input_count > 2 && node->inputs[2] >= 0 ? in[2] : NULL,
      .pairs = node->qwords + 2, .wide = xt->qparams.dtype != DSR_DTYPE_I8,
      .planes = (int16_t *)shared,
      .patches = (int16_t *)(shared + parts[2]),
      .weights = (int16_t *)(shared + parts[2] + parts[3]),
      .private_base = scratch, .private_bytes = parts[0] + parts[1], .acc_offset = parts[0],
      .out = out};

  int64_t pixel_taps = g.pixels * g.taps;
  for (int32_t b = 0; b < g.batch; b++) {
    job.b = b;
    run_step(&job, parallel, CONV_FILL_PLANES, g.cin, g.plane_elements);
    if (!g.patches) {
      run_step(&job, parallel, CONV_TAPS, g.cout, pixel_taps);
      continue;
    }
    for (int32_t group = 0; group < g.cout / g.cout_group; group++) {
      job.group = group;
      run_step(&job, parallel, CONV_FILL_PATCHES, g.cin_group, g.pixels * g.kh * g.kw);
      int32_t first = group * g.cout_group;
      int64_t weight_count = (int64_t)g.cout_group * g.taps;
      for (int64_t i = 0; i < weight_count; i++)
        job.weights[i] = job.w[(int64_t)first * g.taps + i];
      run_step(&job, parallel, CONV_PATCHES, g.cout_group, pixel_taps);
    }
  }
  return 1;
}

int dsr_fixed_fast_conv2d(const dsr_model *model, const dsr_node *node, const void *const *in,
                          void *out, uint8_t *scratch) {
  return dsr_fixed_fast_conv2d_parallel(model, node, in, out, scratch, NULL);
}
