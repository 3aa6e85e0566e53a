/*
 * Float kernel of the lifted deformable attention layer (DSR_OP_DEFORM_ATTN), patch by patch
 * as docs/deformable-attention.md specifies: with the slice (1, 1, 0) it computes PyTorch's
 * DAttentionBaseline, and with any other slice every bilinear sample stays inside the
 * extended patch it belongs to.
 *
 * Positions are kept in pixels of the extended patch E (align_corners semantics): normalized
 * coordinates never appear, so physical and crop slicing differ only in the offset scale.
 */
#include <math.h>
#include <string.h>

#include "dsr_kernels.h"

/* Scratch sub-buffers, each sized for the full map (the largest extended patch). */
typedef struct deform_buffers {
  float *q;           /* (C, H, W) proj_q output */
  float *net;         /* (C, N) offset network: depthwise conv, then LayerNorm, then GELU */
  float *raw_offsets; /* (g, 2, N) dy then dx per group */
  float *positions;   /* (g, 2, N) sample y then x, in pixels of E */
  float *sampled;     /* (C, N) */
  float *keys;        /* (C, N) */
  float *values;      /* (C, N) */
  float *logits;      /* (heads, Pc, N), Pc core pixels of one chunk: bias, then logits, then
                         softmax */
  float *q_core;      /* (heads, P, head_channels) core q, later (C, P) proj_out */
  float *work;        /* (Pc, N) q.k of one head, then (N, Pc) its attention transposed */
  float *context;     /* (C, P) */
} deform_buffers;

/* Most logits (heads x query pixels x samples) held at once, in floats (64 MiB). A patch with
 * more runs its query pixels in chunks, so an 800x1333 input does not need the full
 * attention matrix of a layer in the arena. */
#define DSR_DEFORM_CHUNK_FLOATS ((size_t)1 << 24)

/* Query pixels per chunk for the full map: at least 1, at most H x W. */
static size_t full_chunk_pixels(const dsr_deform_attn *layer) {
  size_t pixels = (size_t)layer->height * layer->width;
  size_t samples = (size_t)dsr_deform_grid_size(layer, layer->height) *
                   (size_t)dsr_deform_grid_size(layer, layer->width);
  size_t chunk = DSR_DEFORM_CHUNK_FLOATS / ((size_t)layer->heads * samples);
  return chunk < 1 ? 1 : (chunk > pixels ? pixels : chunk);
}

/* Lays the buffers out from base (NULL: only sizes them) and returns the total bytes. */
static size_t layout_buffers(const dsr_deform_attn *layer, uint8_t *base,
                             deform_buffers *buffers) {
  size_t c = (size_t)layer->channels;
  size_t pixels = (size_t)layer->height * layer->width;
  size_t samples = (size_t)dsr_deform_grid_size(layer, layer->height) *
                   (size_t)dsr_deform_grid_size(layer, layer->width);
  size_t groups = (size_t)layer->groups;
  size_t chunk = full_chunk_pixels(layer);
  size_t float_counts[] = {c * pixels, c * samples, 2 * groups * samples, 2 * groups * samples,
                           c * samples, c * samples, c * samples,
                           (size_t)layer->heads * chunk * samples, c * pixels,
                           chunk * samples, c * pixels};
  float **slots[] = {&buffers->q,       &buffers->net,    &buffers->raw_offsets,
                     &buffers->positions, &buffers->sampled, &buffers->keys,
                     &buffers->values,  &buffers->logits, &buffers->q_core,
                     &buffers->work,    &buffers->context};

  size_t offset = 0;
  for (size_t i = 0; i < sizeof float_counts / sizeof float_counts[0]; i++) {
    if (base != NULL)
      *slots[i] = (float *)(void *)(base + offset);
    offset += dsr_align_up(float_counts[i] * sizeof(float));
  }
  return offset;
}

size_t dsr_f32_deform_scratch_bytes(const dsr_deform_attn *layer) {
  deform_buffers unused;
  return layout_buffers(layer, NULL, &unused);
}

static void report(const dsr_f32_args *args, int32_t stage, const float *values, size_t count) {
  const dsr_observer *observer = args->observer;
  if (observer != NULL && observer->on_deform_stage != NULL)
    observer->on_deform_stage(observer->user, args->node_index, stage, values, (int64_t)count);
}

/* Bilinear sample of an height x width plane (row stride row_floats) at (y, x), with
 * align_corners pixel semantics: a neighbour outside the plane contributes zero. */
static float bilinear(const float *plane, size_t row_floats, int32_t height, int32_t width,
                      float y, float x) {
  float y_floor = floorf(y), x_floor = floorf(x);
  float fy = y - y_floor, fx = x - x_floor;
  /* Positions far outside meet only zero neighbours, and skipping them keeps the int
   * conversion below in range. */
  if (!(y_floor > -2.0f && y_floor < (float)height + 1.0f && x_floor > -2.0f &&
        x_floor < (float)width + 1.0f))
    return 0.0f;
  int32_t y0 = (int32_t)y_floor, x0 = (int32_t)x_floor;

  float sum = 0.0f;
  for (int32_t dy = 0; dy < 2; dy++) {
    int32_t yy = y0 + dy;
    if (yy < 0 || yy >= height)
      continue;
    float wy = dy ? fy : 1.0f - fy;
    for (int32_t dx = 0; dx < 2; dx++) {
      int32_t xx = x0 + dx;
      if (xx < 0 || xx >= width)
        continue;
      float wx = dx ? fx : 1.0f - fx;
      sum += wy * wx * plane[(size_t)yy * row_floats + (size_t)xx];
    }
  }
  return sum;
}

/* Parameter tensors of the layer, as float arrays. */
static const float *param(const dsr_f32_args *args, int32_t which) {
  return args->model->tensors[args->node->deform->params[which]].data_f32;
}

/* Step 3 of the operator: the offset network of every group on q restricted to patch. */
static void offset_network(const dsr_f32_args *args, const deform_buffers *b,
                           const dsr_patch *patch, int32_t grid_h, int32_t grid_w) {
  const dsr_deform_attn *layer = args->node->deform;
  int32_t channels = layer->channels, groups = layer->groups;
  int32_t group_channels = channels / groups;
  int32_t kernel = layer->offset_kernel, stride = layer->offset_stride, pad = layer->offset_pad;
  int32_t map_w = layer->width;
  int32_t patch_h = patch->ext_y1 - patch->ext_y0, patch_w = patch->ext_x1 - patch->ext_x0;
  size_t map_pixels = (size_t)layer->height * map_w;
  size_t samples = (size_t)grid_h * grid_w;
  const float *dw_w = param(args, DSR_DEFORM_OFFSET_DW_W);
  const float *dw_b = param(args, DSR_DEFORM_OFFSET_DW_B);
  const float *ln_g = param(args, DSR_DEFORM_OFFSET_LN_G);
  const float *ln_b = param(args, DSR_DEFORM_OFFSET_LN_B);
  const float *pw_w = param(args, DSR_DEFORM_OFFSET_PW_W);

  /* Depthwise k x k conv, the patch seen as a zero-padded standalone image. */
  for (int32_t c = 0; c < channels; c++) {
    int32_t cg = c % group_channels;
    const float *q_map = b->q + (size_t)c * map_pixels + (size_t)patch->ext_y0 * map_w +
                         patch->ext_x0;
    const float *taps = dw_w + (size_t)cg * kernel * kernel;
    float *plane = b->net + (size_t)c * samples;
    for (int32_t i = 0; i < grid_h; i++) {
      for (int32_t j = 0; j < grid_w; j++) {
        float acc = dw_b[cg];
        for (int32_t ky = 0; ky < kernel; ky++) {
          int32_t yy = i * stride - pad + ky;
          if (yy < 0 || yy >= patch_h)
            continue;
          for (int32_t kx = 0; kx < kernel; kx++) {
            int32_t xx = j * stride - pad + kx;
            if (xx < 0 || xx >= patch_w)
              continue;
            acc += taps[ky * kernel + kx] * q_map[(size_t)yy * map_w + xx];
          }
        }
        plane[(size_t)i * grid_w + j] = acc;
      }
    }
  }
  report(args, DSR_DEFORM_STAGE_OFFSET_DW, b->net, (size_t)channels * samples);

  /* LayerNorm over the group's channels at each position. */
  for (int32_t g = 0; g < groups; g++) {
    float *group_net = b->net + (size_t)g * group_channels * samples;
    for (size_t n = 0; n < samples; n++) {
      float sum = 0.0f;
      for (int32_t cg = 0; cg < group_channels; cg++)
        sum += group_net[(size_t)cg * samples + n];
      float mean = sum / (float)group_channels;
      float square_sum = 0.0f;
      for (int32_t cg = 0; cg < group_channels; cg++) {
        float centred = group_net[(size_t)cg * samples + n] - mean;
        square_sum += centred * centred;
      }
      float inv_std = 1.0f / sqrtf(square_sum / (float)group_channels + layer->ln_epsilon);
      for (int32_t cg = 0; cg < group_channels; cg++) {
        float *value = &group_net[(size_t)cg * samples + n];
        *value = (*value - mean) * inv_std * ln_g[cg] + ln_b[cg];
      }
    }
  }
  report(args, DSR_DEFORM_STAGE_OFFSET_LN, b->net, (size_t)channels * samples);

  for (size_t i = 0; i < (size_t)channels * samples; i++)
    b->net[i] = dsr_gelu_value(b->net[i]);
  report(args, DSR_DEFORM_STAGE_OFFSET_GELU, b->net, (size_t)channels * samples);

  /* 1x1 conv to (dy, dx), no bias. */
  for (int32_t g = 0; g < groups; g++) {
    dsr_f32_pointwise_parallel(args->parallel, pw_w, NULL, b->net + (size_t)g * group_channels * samples, samples,
                      b->raw_offsets + (size_t)g * 2 * samples, samples, group_channels, 2,
                      (int32_t)samples);
  }
  report(args, DSR_DEFORM_STAGE_OFFSET, b->raw_offsets, (size_t)groups * 2 * samples);
}

/* Reference point i of a grid of grid_size points over an extent of size pixels. */
static float reference_pixel(int32_t convention, int32_t i, int32_t grid_size, int32_t size) {
  float normalized;
  if (convention == DSR_DEFORM_DAT_PP)
    normalized = grid_size > 1 ? ((float)i + 0.5f) / (float)(grid_size - 1) * 2.0f - 1.0f : 0.0f;
  else
    normalized = ((float)i + 0.5f) / (float)grid_size * 2.0f - 1.0f;
  return (normalized + 1.0f) * 0.5f * (float)(size - 1);
}

/* Offset o in pixels of E along one axis (step 5). */
static float offset_pixels(const dsr_deform_attn *layer, int32_t semantics, float o,
                           int32_t grid_size, int32_t size, int32_t full_grid_size,
                           int32_t full_size) {
  int physical = semantics == DSR_SLICE_PHYSICAL;
  float half_extent = (float)((physical ? full_size : size) - 1) * 0.5f;
  if (layer->convention == DSR_DEFORM_DAT_PP)
    return o * half_extent;
  float grid = (float)(physical ? full_grid_size : grid_size);
  return tanhf(o) * (1.0f / grid) * layer->offset_range_factor * half_extent;
}

void dsr_deform_positions(const dsr_deform_attn *layer, int32_t semantics,
                          const dsr_patch *patch, int32_t grid_h, int32_t grid_w,
                          const float *raw_offsets, float *positions) {
  int32_t groups = layer->groups;
  int32_t patch_h = patch->ext_y1 - patch->ext_y0, patch_w = patch->ext_x1 - patch->ext_x0;
  int32_t full_grid_h = dsr_deform_grid_size(layer, layer->height);
  int32_t full_grid_w = dsr_deform_grid_size(layer, layer->width);
  size_t samples = (size_t)grid_h * grid_w;
  int clamp = layer->convention == DSR_DEFORM_DAT_PP;

  for (int32_t g = 0; g < groups; g++) {
    const float *dy = raw_offsets + (size_t)g * 2 * samples;
    const float *dx = dy + samples;
    float *pos_y = positions + (size_t)g * 2 * samples;
    float *pos_x = pos_y + samples;
    for (int32_t i = 0; i < grid_h; i++) {
      float ref_y = reference_pixel(layer->convention, i, grid_h, patch_h);
      for (int32_t j = 0; j < grid_w; j++) {
        size_t n = (size_t)i * grid_w + j;
        float ref_x = reference_pixel(layer->convention, j, grid_w, patch_w);
        float y = ref_y + offset_pixels(layer, semantics, dy[n], grid_h, patch_h, full_grid_h,
                                        layer->height);
        float x = ref_x + offset_pixels(layer, semantics, dx[n], grid_w, patch_w, full_grid_w,
                                        layer->width);
        if (clamp) {
          y = fminf(fmaxf(y, 0.0f), (float)(patch_h - 1));
          x = fminf(fmaxf(x, 0.0f), (float)(patch_w - 1));
        }
        pos_y[n] = y;
        pos_x[n] = x;
      }
    }
  }
}

/* Steps 4 to 7: sample positions and the bilinear samples of x. */
static void sample_patch(const dsr_f32_args *args, const deform_buffers *b,
                         const dsr_patch *patch, int32_t grid_h, int32_t grid_w) {
  const dsr_deform_attn *layer = args->node->deform;
  int32_t groups = layer->groups, group_channels = layer->channels / groups;
  int32_t patch_h = patch->ext_y1 - patch->ext_y0, patch_w = patch->ext_x1 - patch->ext_x0;
  size_t samples = (size_t)grid_h * grid_w;
  size_t map_pixels = (size_t)layer->height * layer->width;

  dsr_deform_positions(layer, args->slice.semantics, patch, grid_h, grid_w, b->raw_offsets,
                       b->positions);
  for (int32_t g = 0; g < groups; g++) {
    const float *pos_y = b->positions + (size_t)g * 2 * samples;
    const float *pos_x = pos_y + samples;
    for (int32_t cg = 0; cg < group_channels; cg++) {
      int32_t c = g * group_channels + cg;
      const float *plane = args->in[0] + (size_t)c * map_pixels +
                           (size_t)patch->ext_y0 * layer->width + patch->ext_x0;
      float *out = b->sampled + (size_t)c * samples;
      for (size_t n = 0; n < samples; n++)
        out[n] = bilinear(plane, (size_t)layer->width, patch_h, patch_w, pos_y[n], pos_x[n]);
    }
  }
  report(args, DSR_DEFORM_STAGE_SAMPLED, b->sampled, (size_t)layer->channels * samples);
}

/* Geometry of the relative position bias lookup (step 9). */
typedef struct bias_lookup {
  const float *rpe;
  int32_t table_h, table_w;
  float centre_y, centre_x, shift; /* centred queries: (q + shift) * centre */
  int rescale;                     /* the table was built for another map size */
  float half_h, half_w, scale_y, scale_x;
} bias_lookup;

static void bias_lookup_init(const dsr_f32_args *args, bias_lookup *l) {
  const dsr_deform_attn *layer = args->node->deform;
  int32_t map_h = layer->height, map_w = layer->width;
  const dsr_tensor *table = &args->model->tensors[layer->params[DSR_DEFORM_RPE_TABLE]];
  l->rpe = param(args, DSR_DEFORM_RPE_TABLE);
  l->table_h = table->dims[1];
  l->table_w = table->dims[2];

  /* Centred queries sit at (q + 0.5) / H of the map, which is (q + 0.5) (H - 1) / H in
   * pixels. */
  int centred = layer->convention == DSR_DEFORM_DAT_CENTRED;
  l->centre_y = centred ? (float)(map_h - 1) / (float)map_h : 1.0f;
  l->centre_x = centred ? (float)(map_w - 1) / (float)map_w : 1.0f;
  l->shift = centred ? 0.5f : 0.0f;

  /* A table of another size than 2H - 1 by 2W - 1 (built for another map) is read at the
   * displacement rescaled to it, as grid_sample's normalized coordinates do. */
  l->rescale = l->table_h != 2 * map_h - 1 || l->table_w != 2 * map_w - 1;
  l->half_h = (float)(l->table_h - 1) * 0.5f;
  l->half_w = (float)(l->table_w - 1) * 0.5f;
  l->scale_y = l->rescale ? l->half_h / (float)(map_h - 1) : 1.0f;
  l->scale_x = l->rescale ? l->half_w / (float)(map_w - 1) : 1.0f;
}

typedef struct bias_job {
  const dsr_f32_args *args;
  const deform_buffers *b;
  const bias_lookup *lookup;
  const dsr_patch *patch;
  size_t samples;
  size_t first, count; /* the chunk's core pixels */
} bias_job;

/* Bias rows [begin, end) of a chunk's logits: row r is head r / count at core pixel
 * first + r % count, read at the full-map displacement of query and sample so that sliced
 * layers read the same table. */
static void bias_rows(void *context, int64_t begin, int64_t end, int32_t task_index) {
  const bias_job *job = context;
  (void)task_index;
  const dsr_deform_attn *layer = job->args->node->deform;
  const bias_lookup *l = job->lookup;
  const dsr_patch *patch = job->patch;
  size_t samples = job->samples, count = job->count;
  int32_t map_h = layer->height, map_w = layer->width;
  int32_t group_heads = layer->heads / layer->groups;
  int32_t core_w = patch->core_x1 - patch->core_x0;
  for (int64_t r = begin; r < end; r++) {
    int32_t hd = (int32_t)((size_t)r / count);
    size_t i = (size_t)r % count;
    size_t p = job->first + i;
    const float *table = l->rpe + (size_t)hd * l->table_h * l->table_w;
    const float *pos_y = job->b->positions + (size_t)(hd / group_heads) * 2 * samples;
    const float *pos_x = pos_y + samples;
    int32_t qy = patch->core_y0 + (int32_t)(p / (size_t)core_w);
    int32_t qx = patch->core_x0 + (int32_t)(p % (size_t)core_w);
    float *row = job->b->logits + ((size_t)hd * count + i) * samples;
    float query_y = ((float)qy + l->shift) * l->centre_y;
    float query_x = ((float)qx + l->shift) * l->centre_x;
    for (size_t n = 0; n < samples; n++) {
      float table_y = (float)(map_h - 1 - patch->ext_y0) + query_y - pos_y[n];
      float table_x = (float)(map_w - 1 - patch->ext_x0) + query_x - pos_x[n];
      if (l->rescale) {
        table_y = l->half_h + (query_y - (float)patch->ext_y0 - pos_y[n]) * l->scale_y;
        table_x = l->half_w + (query_x - (float)patch->ext_x0 - pos_x[n]) * l->scale_x;
      }
      row[n] = bilinear(table, (size_t)l->table_w, l->table_h, l->table_w, table_y, table_x);
    }
  }
}

typedef struct rows_job {
  float *rows;
  int32_t length;
} rows_job;

static void softmax_rows(void *context, int64_t begin, int64_t end, int32_t task_index) {
  const rows_job *job = context;
  (void)task_index;
  for (int64_t r = begin; r < end; r++)
    dsr_softmax_row(job->rows + r * job->length, job->rows + r * job->length, job->length);
}

/* Steps 9 and 10 for the core pixels of patch: bias, logits, softmax, context. The query
 * pixels run in chunks that fit the logits buffer; each chunk reports the bias, logits and
 * attention stages for its own pixels, and the work within a chunk is split into tasks of
 * args->parallel. */
static void attend_patch(const dsr_f32_args *args, const deform_buffers *b,
                         const dsr_patch *patch, size_t samples) {
  const dsr_deform_attn *layer = args->node->deform;
  int32_t map_w = layer->width;
  int32_t heads = layer->heads, head_channels = layer->head_channels;
  int32_t core_w = patch->core_x1 - patch->core_x0;
  size_t core_pixels = (size_t)(patch->core_y1 - patch->core_y0) * core_w;
  size_t map_pixels = (size_t)layer->height * map_w;
  bias_lookup lookup;
  bias_lookup_init(args, &lookup);

  /* The patch's samples never outnumber the full map's, so a chunk holds at least one
   * pixel. */
  size_t full_samples = (size_t)dsr_deform_grid_size(layer, layer->height) *
                        (size_t)dsr_deform_grid_size(layer, layer->width);
  size_t capacity = full_chunk_pixels(layer) * full_samples;
  size_t chunk = capacity / samples;
  chunk = chunk > core_pixels ? core_pixels : chunk;

  /* Core q of every head as (P, head_channels) rows, the weights of the q.k products. */
  for (int32_t hd = 0; hd < heads; hd++) {
    float *q_head = b->q_core + (size_t)hd * core_pixels * head_channels;
    for (size_t p = 0; p < core_pixels; p++) {
      size_t q_pixel = (size_t)(patch->core_y0 + (int32_t)(p / (size_t)core_w)) * map_w +
                       (size_t)(patch->core_x0 + (int32_t)(p % (size_t)core_w));
      for (int32_t c = 0; c < head_channels; c++)
        q_head[p * head_channels + c] = b->q[((size_t)hd * head_channels + c) * map_pixels + q_pixel];
    }
  }

  for (size_t first = 0; first < core_pixels; first += chunk) {
    size_t count = core_pixels - first < chunk ? core_pixels - first : chunk;
    size_t logit_count = (size_t)heads * count * samples;
    bias_job bias = {args, b, &lookup, patch, samples, first, count};
    dsr_parallel_for(args->parallel, (int64_t)heads * (int64_t)count, 24 * (int64_t)samples, 1,
                     bias_rows, &bias);
    report(args, DSR_DEFORM_STAGE_BIAS, b->logits, logit_count);

    /* q.k of every pixel of the chunk and sample, head by head, as one matrix product each. */
    for (int32_t hd = 0; hd < heads; hd++) {
      const float *q_head = b->q_core + ((size_t)hd * core_pixels + first) * head_channels;
      dsr_f32_pointwise_parallel(args->parallel, q_head, NULL,
                                 b->keys + (size_t)hd * head_channels * samples, samples, b->work,
                                 samples, head_channels, (int32_t)count, (int32_t)samples);
      float *rows = b->logits + (size_t)hd * count * samples;
      for (size_t i = 0; i < count * samples; i++)
        rows[i] += b->work[i] * layer->attn_scale;
    }
    report(args, DSR_DEFORM_STAGE_LOGITS, b->logits, logit_count);

    rows_job softmax = {b->logits, (int32_t)samples};
    dsr_parallel_for(args->parallel, (int64_t)heads * (int64_t)count, 24 * (int64_t)samples, 1,
                     softmax_rows, &softmax);
    report(args, DSR_DEFORM_STAGE_ATTN, b->logits, logit_count);

    /* context columns of a head = its values (head_channels x N) times its attention,
     * transposed to (N x count). */
    for (int32_t hd = 0; hd < heads; hd++) {
      const float *attn = b->logits + (size_t)hd * count * samples;
      for (size_t p = 0; p < count; p++)
        for (size_t n = 0; n < samples; n++)
          b->work[n * count + p] = attn[p * samples + n];
      dsr_f32_pointwise_parallel(args->parallel, b->values + (size_t)hd * head_channels * samples,
                                 NULL, b->work, count,
                                 b->context + (size_t)hd * head_channels * core_pixels + first,
                                 core_pixels, (int32_t)samples, head_channels, (int32_t)count);
    }
  }
  report(args, DSR_DEFORM_STAGE_CONTEXT, b->context, (size_t)layer->channels * core_pixels);
}

/* Step 11: proj_out of the context, written at the core pixels of the output map. */
static void project_out(const dsr_f32_args *args, const deform_buffers *b,
                        const dsr_patch *patch) {
  const dsr_deform_attn *layer = args->node->deform;
  int32_t channels = layer->channels, map_w = layer->width;
  int32_t core_h = patch->core_y1 - patch->core_y0, core_w = patch->core_x1 - patch->core_x0;
  size_t core_pixels = (size_t)core_h * core_w;
  size_t map_pixels = (size_t)layer->height * map_w;
  const float *w = param(args, DSR_DEFORM_PROJ_OUT_W);
  const float *bias = param(args, DSR_DEFORM_PROJ_OUT_B);

  /* Full-width core rows are contiguous in the output map. Narrower patches project into
   * q_core, which is free once the logits exist, and copy the rows out. */
  if (core_w == map_w) {
    dsr_f32_pointwise_parallel(args->parallel, w, bias, b->context, core_pixels,
                      args->out + (size_t)patch->core_y0 * map_w, map_pixels, channels, channels,
                      (int32_t)core_pixels);
    return;
  }
  dsr_f32_pointwise_parallel(args->parallel, w, bias, b->context, core_pixels, b->q_core, core_pixels, channels, channels,
                    (int32_t)core_pixels);
  for (int32_t co = 0; co < channels; co++) {
    float *out_map = args->out + (size_t)co * map_pixels + (size_t)patch->core_y0 * map_w +
                     patch->core_x0;
    const float *projected = b->q_core + (size_t)co * core_pixels;
    for (int32_t y = 0; y < core_h; y++)
      memcpy(out_map + (size_t)y * map_w, projected + (size_t)y * core_w,
             (size_t)core_w * sizeof(float));
  }
}

void dsr_f32_deform_attn(const dsr_f32_args *args) {
  const dsr_deform_attn *layer = args->node->deform;
  int32_t channels = layer->channels;
  size_t map_pixels = (size_t)layer->height * layer->width;
  deform_buffers b;
  layout_buffers(layer, args->scratch, &b);

  /* Step 1: q over the whole map, since a pointwise conv gives the same numbers per patch.
   * The observer receives it once per call rather than once per patch. */
  dsr_f32_pointwise_parallel(args->parallel, param(args, DSR_DEFORM_PROJ_Q_W), param(args, DSR_DEFORM_PROJ_Q_B),
                    args->in[0], map_pixels, b.q, map_pixels, channels, channels,
                    (int32_t)map_pixels);
  report(args, DSR_DEFORM_STAGE_Q, b.q, (size_t)channels * map_pixels);

  for (int32_t row = 0; row < args->slice.rows; row++) {
    for (int32_t col = 0; col < args->slice.cols; col++) {
      dsr_patch patch;
      dsr_slice_patch(layer->height, layer->width, args->slice, row, col, &patch);
      int32_t grid_h = dsr_deform_grid_size(layer, patch.ext_y1 - patch.ext_y0);
      int32_t grid_w = dsr_deform_grid_size(layer, patch.ext_x1 - patch.ext_x0);
      size_t samples = (size_t)grid_h * grid_w;

      offset_network(args, &b, &patch, grid_h, grid_w);
      sample_patch(args, &b, &patch, grid_h, grid_w);
      if (args->probe != NULL && args->probe->on_report != NULL) {
        dsr_probe_report positions = {args->node_index, DSR_PROBE_POSITIONS,
                                      row * args->slice.cols + col, 0, 1,
                                      (int64_t)layer->groups * 2 * (int64_t)samples,
                                      b.positions, NULL};
        args->probe->on_report(args->probe->user, &positions);
      }

      /* Step 8: keys and values are 1x1 convs of the samples. */
      dsr_f32_pointwise_parallel(args->parallel, param(args, DSR_DEFORM_PROJ_K_W), param(args, DSR_DEFORM_PROJ_K_B),
                        b.sampled, samples, b.keys, samples, channels, channels, (int32_t)samples);
      report(args, DSR_DEFORM_STAGE_K, b.keys, (size_t)channels * samples);
      dsr_f32_pointwise_parallel(args->parallel, param(args, DSR_DEFORM_PROJ_V_W), param(args, DSR_DEFORM_PROJ_V_B),
                        b.sampled, samples, b.values, samples, channels, channels,
                        (int32_t)samples);
      report(args, DSR_DEFORM_STAGE_V, b.values, (size_t)channels * samples);

      attend_patch(args, &b, &patch, samples);
      project_out(args, &b, &patch);
    }
  }
}
