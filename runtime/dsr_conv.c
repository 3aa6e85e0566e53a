/* 2-D convolution: grouped, strided, padded and dilated, NCHW input, OIHW weight. */
#include "dsr_kernels.h"

/* Wider vectors where the CPU has them (AVX-512 as in x86-64-v4, AVX2). Each clone computes
 * the same sums in the same order, and in ISO C mode GCC does not fuse a * b + c into an FMA,
 * so results do not depend on the clone chosen. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define DSR_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#endif
#endif
#ifndef DSR_VECTOR_CLONES
#define DSR_VECTOR_CLONES
#endif

/*
 * Adds the input channels [ci_begin, ci_end) to 4 output rows: each pass over the pixels loads
 * 4 input rows and adds one sum of 4 products to each of the 4 output rows, which saves 3 of
 * every 4 load-store round trips of an output row. Pixels stay innermost and contiguous. The
 * weights are copied into locals and the output rows never overlap the inputs, so the pixel
 * loops vectorize. ci_begin is a multiple of 4, and only the last range has channels after
 * its last block of 4.
 */
DSR_VECTOR_CLONES
static void accumulate_rows4(const float *w, int32_t in_channels, const float *in,
                             size_t in_stride, float *out, size_t out_stride, int32_t ci_begin,
                             int32_t ci_end, int32_t pixel_count) {
  float *o0 = out;
  float *o1 = o0 + out_stride;
  float *o2 = o1 + out_stride;
  float *o3 = o2 + out_stride;
  const float *w0 = w, *w1 = w0 + in_channels;
  const float *w2 = w1 + in_channels, *w3 = w2 + in_channels;
  int32_t ci = ci_begin;
  for (; ci + 4 <= ci_end; ci += 4) {
    const float *i0 = in + (size_t)ci * in_stride;
    const float *i1 = i0 + in_stride;
    const float *i2 = i1 + in_stride;
    const float *i3 = i2 + in_stride;
    float a00 = w0[ci], a01 = w0[ci + 1], a02 = w0[ci + 2], a03 = w0[ci + 3];
    float a10 = w1[ci], a11 = w1[ci + 1], a12 = w1[ci + 2], a13 = w1[ci + 3];
    float a20 = w2[ci], a21 = w2[ci + 1], a22 = w2[ci + 2], a23 = w2[ci + 3];
    float a30 = w3[ci], a31 = w3[ci + 1], a32 = w3[ci + 2], a33 = w3[ci + 3];
    DSR_IVDEP
    for (int32_t p = 0; p < pixel_count; p++) {
      float x0 = i0[p], x1 = i1[p], x2 = i2[p], x3 = i3[p];
      o0[p] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3;
      o1[p] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3;
      o2[p] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3;
      o3[p] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3;
    }
  }
  for (; ci < ci_end; ci++) {
    const float *i0 = in + (size_t)ci * in_stride;
    float a0 = w0[ci], a1 = w1[ci], a2 = w2[ci], a3 = w3[ci];
    DSR_IVDEP
    for (int32_t p = 0; p < pixel_count; p++) {
      float x0 = i0[p];
      o0[p] += a0 * x0;
      o1[p] += a1 * x0;
      o2[p] += a2 * x0;
      o3[p] += a3 * x0;
    }
  }
}

/* accumulate_rows4 for one output row, with the same sums per element. */
DSR_VECTOR_CLONES
static void accumulate_row1(const float *w0, const float *in, size_t in_stride, float *o0,
                            int32_t ci_begin, int32_t ci_end, int32_t pixel_count) {
  int32_t ci = ci_begin;
  for (; ci + 4 <= ci_end; ci += 4) {
    const float *i0 = in + (size_t)ci * in_stride;
    const float *i1 = i0 + in_stride;
    const float *i2 = i1 + in_stride;
    const float *i3 = i2 + in_stride;
    float a0 = w0[ci], a1 = w0[ci + 1], a2 = w0[ci + 2], a3 = w0[ci + 3];
    DSR_IVDEP
    for (int32_t p = 0; p < pixel_count; p++)
      o0[p] += a0 * i0[p] + a1 * i1[p] + a2 * i2[p] + a3 * i3[p];
  }
  for (; ci < ci_end; ci++) {
    const float *i0 = in + (size_t)ci * in_stride;
    float a0 = w0[ci];
    DSR_IVDEP
    for (int32_t p = 0; p < pixel_count; p++)
      o0[p] += a0 * i0[p];
  }
}

/* Bytes of input rows that one pass over the output rows reuses: about half a typical L2
 * cache, so a block of input channels stays cached while every output row takes it. */
#define POINTWISE_BLOCK_BYTES (128 * 1024)

/*
 * Every output row starts at its bias, then takes the input channels in blocks of a multiple
 * of 4 channels, all output rows per block. Each output element still adds its groups of 4
 * products in increasing channel order, so blocking does not change the sums.
 */
void dsr_f32_pointwise(const float *w, const float *bias, const float *in, size_t in_stride,
                       float *out, size_t out_stride, int32_t in_channels, int32_t out_channels,
                       int32_t pixel_count) {
  for (int32_t co = 0; co < out_channels; co++) {
    float *row = out + (size_t)co * out_stride;
    float b = bias != NULL ? bias[co] : 0.0f;
    for (int32_t p = 0; p < pixel_count; p++)
      row[p] = b;
  }
  int64_t block = POINTWISE_BLOCK_BYTES / ((int64_t)sizeof(float) * (pixel_count > 0 ? pixel_count : 1));
  block = block < 4 ? 4 : block / 4 * 4;
  for (int32_t ci_begin = 0; ci_begin < in_channels; ci_begin += (int32_t)block) {
    int32_t ci_end = in_channels - ci_begin > block ? ci_begin + (int32_t)block : in_channels;
    int32_t co = 0;
    for (; co + 4 <= out_channels; co += 4)
      accumulate_rows4(w + (size_t)co * in_channels, in_channels, in, in_stride,
                       out + (size_t)co * out_stride, out_stride, ci_begin, ci_end, pixel_count);
    for (; co < out_channels; co++)
      accumulate_row1(w + (size_t)co * in_channels, in, in_stride, out + (size_t)co * out_stride,
                      ci_begin, ci_end, pixel_count);
  }
}

typedef struct pointwise_job {
  const float *w, *bias, *in;
  size_t in_stride, out_stride;
  float *out;
  int32_t in_channels, out_channels, pixel_count;
} pointwise_job;

static void pointwise_pixels(void *context, int64_t begin, int64_t end, int32_t task_index) {
  const pointwise_job *job = context;
  (void)task_index;
  dsr_f32_pointwise(job->w, job->bias, job->in + begin, job->in_stride, job->out + begin,
                    job->out_stride, job->in_channels, job->out_channels,
                    (int32_t)(end - begin));
}

static void pointwise_channels(void *context, int64_t begin, int64_t end, int32_t task_index) {
  const pointwise_job *job = context;
  (void)task_index;
  dsr_f32_pointwise(job->w + begin * job->in_channels, job->bias != NULL ? job->bias + begin : NULL,
                    job->in, job->in_stride, job->out + (size_t)begin * job->out_stride,
                    job->out_stride, job->in_channels, (int32_t)(end - begin), job->pixel_count);
}

/* Pixels per task below which the pointwise kernel splits output channels instead. */
#define POINTWISE_MIN_TASK_PIXELS 256

void dsr_f32_pointwise_parallel(const dsr_parallel *parallel, const float *w, const float *bias,
                                const float *in, size_t in_stride, float *out,
                                size_t out_stride, int32_t in_channels, int32_t out_channels,
                                int32_t pixel_count) {
  pointwise_job job = {w, bias, in, in_stride, out_stride, out, in_channels, out_channels,
                       pixel_count};
  int32_t workers = dsr_parallel_workers(parallel);
  if (workers == 1) {
    dsr_f32_pointwise(w, bias, in, in_stride, out, out_stride, in_channels, out_channels,
                      pixel_count);
    return;
  }
  int64_t pixel_ops = 2 * (int64_t)in_channels * out_channels;
  if (pixel_count >= POINTWISE_MIN_TASK_PIXELS * workers) {
    /* Shares of whole 16-pixel blocks keep the vector loops aligned alike in every task. */
    dsr_parallel_for(parallel, pixel_count, pixel_ops, 16, pointwise_pixels, &job);
    return;
  }
  /* Shares of whole 4-channel blocks keep the kernel's 4-row sums. */
  dsr_parallel_for(parallel, out_channels, 2 * (int64_t)in_channels * pixel_count, 4,
                   pointwise_channels, &job);
}

/* First output index o >= 0 with o * stride + offset >= 0, and the end with
 * o * stride + offset < size, clipped to [0, count). */
static void valid_range(int32_t offset, int32_t stride, int32_t size, int32_t count,
                        int32_t *begin, int32_t *end) {
  int32_t first = 0;
  if (offset < 0)
    first = (-offset + stride - 1) / stride;
  int32_t last = 0;
  if (size - offset > 0)
    last = (size - offset - 1) / stride + 1;
  if (last > count)
    last = count;
  if (first > last)
    first = last;
  *begin = first;
  *end = last;
}

/* Whether a conv reads each input pixel once at the same position (1x1, stride 1, no pad). */
static int conv_is_pointwise(const dsr_tensor *w, const dsr_conv_attrs *a) {
  return w->dims[2] == 1 && w->dims[3] == 1 && a->stride[0] == 1 && a->stride[1] == 1 &&
         a->pad[0] == 0 && a->pad[1] == 0 && a->pad[2] == 0 && a->pad[3] == 0;
}

/* Whether a conv is depthwise 3x3 with stride 1, dilation 1 and padding 1 on every side, the
 * shape of the local perception units and MLP convs of DAT, which has its own loop. */
static int conv_is_depthwise3x3(const dsr_tensor *x, const dsr_tensor *w, const dsr_conv_attrs *a) {
  return a->group == x->dims[1] && w->dims[0] == a->group && w->dims[1] == 1 &&
         w->dims[2] == 3 && w->dims[3] == 3 && a->stride[0] == 1 && a->stride[1] == 1 &&
         a->dilation[0] == 1 && a->dilation[1] == 1 && a->pad[0] == 1 && a->pad[1] == 1 &&
         a->pad[2] == 1 && a->pad[3] == 1;
}

size_t dsr_f32_conv_scratch_bytes(const dsr_model *model, const dsr_node *node) {
  const dsr_tensor *x = &model->tensors[node->inputs[0]];
  const dsr_tensor *w = &model->tensors[node->inputs[1]];
  const dsr_tensor *y = &model->tensors[node->output];
  if (conv_is_pointwise(w, &node->attrs.conv))
    return 0;
  if (conv_is_depthwise3x3(x, w, &node->attrs.conv))
    return (size_t)x->dims[3] * sizeof(float);
  size_t rows = (size_t)(x->dims[1] / node->attrs.conv.group) * w->dims[2] * w->dims[3];
  return rows * (size_t)y->dims[2] * y->dims[3] * sizeof(float);
}

/*
 * Copies the input taps of one group into columns: row (ci, ky, kx) of columns holds, for
 * every output pixel, the input value that tap multiplies (zero in the padding). The conv
 * is then one pointwise product over those rows, with output pixels innermost.
 */
static void gather_columns(const float *in_group, int32_t group_in, int32_t in_h, int32_t in_w,
                           int32_t kernel_h, int32_t kernel_w, const dsr_conv_attrs *a,
                           int32_t out_h, int32_t out_w, float *columns) {
  size_t in_plane = (size_t)in_h * in_w, out_plane = (size_t)out_h * out_w;
  for (int32_t ci = 0; ci < group_in; ci++) {
    const float *in_map = in_group + (size_t)ci * in_plane;
    for (int32_t ky = 0; ky < kernel_h; ky++) {
      int32_t y_offset = ky * a->dilation[0] - a->pad[0];
      int32_t oy0, oy1;
      valid_range(y_offset, a->stride[0], in_h, out_h, &oy0, &oy1);
      for (int32_t kx = 0; kx < kernel_w; kx++) {
        int32_t x_offset = kx * a->dilation[1] - a->pad[1];
        int32_t ox0, ox1;
        valid_range(x_offset, a->stride[1], in_w, out_w, &ox0, &ox1);
        float *row = columns + ((size_t)(ci * kernel_h + ky) * kernel_w + kx) * out_plane;

        for (size_t p = 0; p < (size_t)oy0 * out_w; p++)
          row[p] = 0.0f;
        for (int32_t oy = oy0; oy < oy1; oy++) {
          const float *in_row = in_map + (size_t)(oy * a->stride[0] + y_offset) * in_w;
          float *out_row = row + (size_t)oy * out_w;
          for (int32_t ox = 0; ox < ox0; ox++)
            out_row[ox] = 0.0f;
          if (a->stride[1] == 1) {
            for (int32_t ox = ox0; ox < ox1; ox++)
              out_row[ox] = in_row[ox + x_offset];
          } else {
            for (int32_t ox = ox0; ox < ox1; ox++)
              out_row[ox] = in_row[ox * a->stride[1] + x_offset];
          }
          for (int32_t ox = ox1; ox < out_w; ox++)
            out_row[ox] = 0.0f;
        }
        for (size_t p = (size_t)oy1 * out_w; p < out_plane; p++)
          row[p] = 0.0f;
      }
    }
  }
}

/*
 * Depthwise 3x3, stride 1, padding 1: one pass per output row over three input rows, rows
 * outside the map read zero_row. Columns 1..w-2 need no bounds check, and the two
 * border columns read zero outside the map.
 */
static void depthwise3x3(const float *in_map, const float *taps, float bias, int32_t height,
                         int32_t width, const float *zero_row, float *out_map) {
  for (int32_t oy = 0; oy < height; oy++) {
    const float *r0 = oy > 0 ? in_map + (size_t)(oy - 1) * width : zero_row;
    const float *r1 = in_map + (size_t)oy * width;
    const float *r2 = oy + 1 < height ? in_map + (size_t)(oy + 1) * width : zero_row;
    float *out_row = out_map + (size_t)oy * width;

    DSR_IVDEP
    for (int32_t ox = 1; ox < width - 1; ox++)
      out_row[ox] = bias + taps[0] * r0[ox - 1] + taps[1] * r0[ox] + taps[2] * r0[ox + 1] +
                    taps[3] * r1[ox - 1] + taps[4] * r1[ox] + taps[5] * r1[ox + 1] +
                    taps[6] * r2[ox - 1] + taps[7] * r2[ox] + taps[8] * r2[ox + 1];

    int32_t border[2] = {0, width - 1};
    for (int32_t e = 0; e < (width > 1 ? 2 : 1); e++) {
      int32_t ox = border[e];
      const float *rows[3] = {r0, r1, r2};
      float sum = bias;
      for (int32_t ky = 0; ky < 3; ky++) {
        for (int32_t kx = 0; kx < 3; kx++) {
          int32_t ix = ox + kx - 1;
          if (ix >= 0 && ix < width)
            sum += taps[ky * 3 + kx] * rows[ky][ix];
        }
      }
      out_row[ox] = sum;
    }
  }
}

typedef struct depthwise_job {
  const float *in, *w, *bias, *zero_row;
  float *out;
  int32_t channels, height, width;
} depthwise_job;

static void depthwise_planes(void *context, int64_t begin, int64_t end, int32_t task_index) {
  const depthwise_job *job = context;
  (void)task_index;
  size_t plane = (size_t)job->height * job->width;
  for (int64_t c = begin; c < end; c++) {
    int32_t channel = (int32_t)(c % job->channels);
    depthwise3x3(job->in + (size_t)c * plane, job->w + (size_t)channel * 9,
                 job->bias != NULL ? job->bias[channel] : 0.0f, job->height, job->width,
                 job->zero_row, job->out + (size_t)c * plane);
  }
}

void dsr_f32_conv2d(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_tensor *x = &model->tensors[node->inputs[0]];
  const dsr_tensor *w = &model->tensors[node->inputs[1]];
  const dsr_tensor *y = &model->tensors[node->output];
  const dsr_conv_attrs *a = &node->attrs.conv;
  const float *bias = args->in[2];

  int32_t batch = x->dims[0], in_channels = x->dims[1], in_h = x->dims[2], in_w = x->dims[3];
  int32_t out_channels = y->dims[1], out_h = y->dims[2], out_w = y->dims[3];
  int32_t kernel_h = w->dims[2], kernel_w = w->dims[3];
  int32_t group_in = in_channels / a->group, group_out = out_channels / a->group;
  int32_t taps = group_in * kernel_h * kernel_w;
  size_t in_plane = (size_t)in_h * in_w, out_plane = (size_t)out_h * out_w;
  int pointwise = conv_is_pointwise(w, a);
  float *columns = (float *)(void *)args->scratch;

  if (conv_is_depthwise3x3(x, w, a)) {
    float *zero_row = columns;
    for (int32_t i = 0; i < in_w; i++)
      zero_row[i] = 0.0f;
    depthwise_job job = {args->in[0], args->in[1], bias, zero_row, args->out, in_channels,
                         in_h, in_w};
    dsr_parallel_for(args->parallel, (int64_t)batch * in_channels, 18 * (int64_t)in_plane, 1,
                     depthwise_planes, &job);
    return;
  }

  for (int32_t n = 0; n < batch; n++) {
    const float *in_image = args->in[0] + (size_t)n * in_channels * in_plane;
    float *out_image = args->out + (size_t)n * out_channels * out_plane;
    for (int32_t g = 0; g < a->group; g++) {
      const float *in_group = in_image + (size_t)g * group_in * in_plane;
      const float *w_group = args->in[1] + (size_t)g * group_out * taps;
      const float *b_group = bias != NULL ? bias + (size_t)g * group_out : NULL;
      float *out_group = out_image + (size_t)g * group_out * out_plane;

      if (pointwise) {
        dsr_f32_pointwise_parallel(args->parallel, w_group, b_group, in_group, in_plane,
                                   out_group, out_plane, group_in, group_out,
                                   (int32_t)out_plane);
      } else {
        gather_columns(in_group, group_in, in_h, in_w, kernel_h, kernel_w, a, out_h, out_w,
                       columns);
        dsr_f32_pointwise_parallel(args->parallel, w_group, b_group, columns, out_plane,
                                   out_group, out_plane, taps, group_out, (int32_t)out_plane);
      }
    }
  }
}
