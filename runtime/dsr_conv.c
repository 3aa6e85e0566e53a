/* 2-D convolution: grouped, strided, padded and dilated, NCHW input, OIHW weight. */
#include "dsr_kernels.h"

void dsr_f32_pointwise(const float *w, const float *bias, const float *in, size_t in_stride,
                       float *out, size_t out_stride, int32_t in_channels, int32_t out_channels,
                       int32_t pixel_count) {
  for (int32_t co = 0; co < out_channels; co++) {
    float *out_row = out + (size_t)co * out_stride;
    float b = bias != NULL ? bias[co] : 0.0f;
    for (int32_t p = 0; p < pixel_count; p++)
      out_row[p] = b;

    /* Pixels innermost and contiguous: each weight scales one whole input row. */
    const float *w_row = w + (size_t)co * in_channels;
    for (int32_t ci = 0; ci < in_channels; ci++) {
      float weight = w_row[ci];
      const float *in_row = in + (size_t)ci * in_stride;
      for (int32_t p = 0; p < pixel_count; p++)
        out_row[p] += weight * in_row[p];
    }
  }
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

void dsr_f32_conv2d(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_tensor *x = &model->tensors[node->inputs[0]];
  const dsr_tensor *w = &model->tensors[node->inputs[1]];
  const dsr_tensor *y = &model->tensors[node->output];
  const dsr_conv_attrs *a = &node->attrs.conv;
  const float *in = args->in[0];
  const float *weights = args->in[1];
  const float *bias = args->in[2];
  float *out = args->out;

  int32_t batch = x->dims[0], in_channels = x->dims[1], in_h = x->dims[2], in_w = x->dims[3];
  int32_t out_channels = y->dims[1], out_h = y->dims[2], out_w = y->dims[3];
  int32_t kernel_h = w->dims[2], kernel_w = w->dims[3];
  int32_t group_in = in_channels / a->group, group_out = out_channels / a->group;
  size_t in_plane = (size_t)in_h * in_w, out_plane = (size_t)out_h * out_w;

  int pointwise = kernel_h == 1 && kernel_w == 1 && a->stride[0] == 1 && a->stride[1] == 1 &&
                  a->pad[0] == 0 && a->pad[1] == 0 && a->pad[2] == 0 && a->pad[3] == 0;

  for (int32_t n = 0; n < batch; n++) {
    const float *in_image = in + (size_t)n * in_channels * in_plane;
    float *out_image = out + (size_t)n * out_channels * out_plane;
    for (int32_t g = 0; g < a->group; g++) {
      const float *in_group = in_image + (size_t)g * group_in * in_plane;
      const float *w_group = weights + (size_t)g * group_out * group_in * kernel_h * kernel_w;
      const float *b_group = bias != NULL ? bias + (size_t)g * group_out : NULL;
      float *out_group = out_image + (size_t)g * group_out * out_plane;

      if (pointwise) {
        dsr_f32_pointwise(w_group, b_group, in_group, in_plane, out_group, out_plane, group_in,
                          group_out, (int32_t)out_plane);
        continue;
      }

      for (int32_t co = 0; co < group_out; co++) {
        float *out_map = out_group + (size_t)co * out_plane;
        float b = b_group != NULL ? b_group[co] : 0.0f;
        for (size_t p = 0; p < out_plane; p++)
          out_map[p] = b;

        for (int32_t ci = 0; ci < group_in; ci++) {
          const float *in_map = in_group + (size_t)ci * in_plane;
          const float *w_taps = w_group + ((size_t)co * group_in + ci) * kernel_h * kernel_w;
          for (int32_t ky = 0; ky < kernel_h; ky++) {
            int32_t y_offset = ky * a->dilation[0] - a->pad[0];
            int32_t oy0, oy1;
            valid_range(y_offset, a->stride[0], in_h, out_h, &oy0, &oy1);
            for (int32_t kx = 0; kx < kernel_w; kx++) {
              float weight = w_taps[ky * kernel_w + kx];
              int32_t x_offset = kx * a->dilation[1] - a->pad[1];
              int32_t ox0, ox1;
              valid_range(x_offset, a->stride[1], in_w, out_w, &ox0, &ox1);
              for (int32_t oy = oy0; oy < oy1; oy++) {
                const float *in_row = in_map + (size_t)(oy * a->stride[0] + y_offset) * in_w;
                float *out_row = out_map + (size_t)oy * out_w;
                if (a->stride[1] == 1) {
                  for (int32_t ox = ox0; ox < ox1; ox++)
                    out_row[ox] += weight * in_row[ox + x_offset];
                } else {
                  for (int32_t ox = ox0; ox < ox1; ox++)
                    out_row[ox] += weight * in_row[ox * a->stride[1] + x_offset];
                }
              }
            }
          }
        }
      }
    }
  }
}
