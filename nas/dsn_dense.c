#include "dsn_dense.h"

#include <string.h>

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

static void input_band(const dsn_layer *layer, int64_t o0, int64_t o1, int64_t *r0,
                       int64_t *r1);
static void input_columns(const dsn_layer *layer, int64_t p0, int64_t p1, int64_t *x0,
                          int64_t *x1);
static int64_t input_channels(const dsn_layer *layer);

int64_t dsn_dense_input_bytes(const dsn_layer *layer, const dsn_preset *preset) {
  return layer->in_rows * layer->in_row_elems * dsn_preset_element_bytes(preset);
}

int64_t dsn_dense_read_input_bytes(const dsn_layer *layer, const dsn_preset *preset) {
  if (layer->reduce || layer->in_rows <= 0 || layer->in_row_elems <= 0)
    return dsn_dense_input_bytes(layer, preset);
  int64_t r0 = 0, r1 = 0;
  input_band(layer, 0, layer->out_rows, &r0, &r1);
  int64_t row_elems = layer->in_row_elems;
  if (layer->in_width > 0) {
    int64_t x0 = 0, x1 = 0;
    input_columns(layer, 0, layer->out_width, &x0, &x1);
    row_elems = (x1 - x0) * input_channels(layer);
  }
  return (r1 - r0) * row_elems * dsn_preset_element_bytes(preset);
}

int64_t dsn_dense_output_bytes(const dsn_layer *layer, const dsn_preset *preset) {
  return layer->out_rows * layer->out_width * layer->out_cols *
         dsn_preset_element_bytes(preset);
}

/* Input rows [r0, r1) that output rows [o0, o1) read: the kernel window, clipped. */
static void input_band(const dsn_layer *layer, int64_t o0, int64_t o1, int64_t *r0,
                       int64_t *r1) {
  int64_t first = o0 * layer->stride - layer->pad;
  int64_t last = (o1 - 1) * layer->stride - layer->pad + layer->kernel;
  *r0 = max64(first, 0);
  *r1 = min64(last, layer->in_rows);
  if (*r1 < *r0)
    *r1 = *r0;
}

/* Input pixels [x0, x1) that output pixels [p0, p1) of a row read, clipped to the row. */
static void input_columns(const dsn_layer *layer, int64_t p0, int64_t p1, int64_t *x0,
                          int64_t *x1) {
  int64_t first = p0 * layer->stride_w - layer->pad_w;
  int64_t last = (p1 - 1) * layer->stride_w - layer->pad_w + layer->kernel_w;
  *x0 = max64(first, 0);
  *x1 = min64(last, layer->in_width);
  if (*x1 < *x0)
    *x1 = *x0;
}

/* Channels per input pixel of a map (in_width > 0). */
static int64_t input_channels(const dsn_layer *layer) {
  return layer->in_row_elems / layer->in_width;
}

/* Feature buffer bytes of a tile of rows output rows (input rows for a reduction), pixels
 * output pixels per row (a band; out_width for whole rows) and cols output channels, without
 * the operand. */
static int64_t tile_bytes(const dsn_layer *layer, int64_t rows, int64_t pixels, int64_t cols,
                          int64_t e) {
  int64_t in_rows;
  int64_t out_rows = rows;
  if (layer->reduce) {
    in_rows = rows;
    out_rows = layer->out_rows;
  } else {
    in_rows = min64((rows - 1) * layer->stride + layer->kernel, layer->in_rows);
  }
  int64_t in_row = layer->in_row_elems;
  if (pixels < layer->out_width && layer->in_width > 0) {
    int64_t in_pixels = min64((pixels - 1) * layer->stride_w + layer->kernel_w, layer->in_width);
    in_row = in_pixels * input_channels(layer);
  }
  int64_t bytes = in_rows * in_row * e;
  bytes += out_rows * pixels * cols * e;
  if (layer->second_input)
    bytes += out_rows * pixels * layer->out_cols * e;
  return bytes;
}

static ds_status check_layer(const dsn_layer *layer, ds_error *err) {
  if (layer->kind == DSN_LAYER_DEFORM || layer->kind < 0 || layer->kind >= DSN_LAYER_KIND_COUNT)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "layer %s has kind %d; the dense tiler takes every kind but deform",
                   layer->name, layer->kind);
  const struct {
    const char *field;
    int64_t value;
    int64_t minimum;
  } checks[] = {
      {"group_count", layer->group_count, 1},   {"out_rows", layer->out_rows, 1},
      {"out_width", layer->out_width, 1},       {"out_cols", layer->out_cols, 1},
      {"in_rows", layer->in_rows, 0},           {"in_row_elems", layer->in_row_elems, 0},
      {"kernel", layer->kernel, 1},             {"stride", layer->stride, 1},
      {"pad", layer->pad, 0},                   {"operand_elems", layer->operand_elems, 0},
      {"weight_bytes", layer->weight_bytes, 0}, {"macs_per_output", layer->macs_per_output, 0},
      {"vector_ops_per_elem", layer->vector_ops_per_elem, 0},
      {"in_width", layer->in_width, 0},
  };
  for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
    if (checks[i].value < checks[i].minimum)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "layer %s (%s) has %s %lld; expected %lld or more", layer->name,
                     dsn_layer_kind_name(layer->kind), checks[i].field,
                     (long long)checks[i].value, (long long)checks[i].minimum);
  }
  if (layer->in_width > 0 &&
      (layer->in_row_elems % layer->in_width != 0 || layer->kernel_w < 1 ||
       layer->stride_w < 1 || layer->pad_w < 0))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "layer %s (%s) has rows of %lld elements over %d pixels with a kernel of %d, "
                   "stride %d and pad %d along the row; expected whole channels per pixel, a "
                   "positive kernel and stride and a pad of 0 or more",
                   layer->name, dsn_layer_kind_name(layer->kind),
                   (long long)layer->in_row_elems, layer->in_width, layer->kernel_w,
                   layer->stride_w, layer->pad_w);
  /* Keeps every product of the tiler below 2^62. */
  int64_t limit = (int64_t)1 << 40;
  if (layer->out_rows * layer->out_width > limit / layer->out_cols ||
      layer->in_rows > limit / (layer->in_row_elems > 0 ? layer->in_row_elems : 1) ||
      layer->operand_elems > limit || layer->weight_bytes > limit)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "layer %s (%s) has a tensor of more than 2^40 elements; the cost model "
                   "takes smaller layers",
                   layer->name, dsn_layer_kind_name(layer->kind));
  return DS_OK;
}

ds_status dsn_dense_plan_make(const dsn_layer *layer, const dsn_preset *preset,
                              dsn_dense_plan *plan, ds_error *err) {
  DS_TRY(check_layer(layer, err));
  memset(plan, 0, sizeof *plan);
  int64_t e = dsn_preset_element_bytes(preset);

  /* Weight chunks of whole output columns, each at most half the weight buffer. */
  plan->weight_chunks = 1;
  plan->chunk_cols = layer->out_cols;
  plan->weight_buffer_bytes = layer->weight_bytes;
  if (layer->weight_bytes > preset->weight_buffer_bytes) {
    int64_t slot = preset->weight_buffer_bytes / 2;
    int64_t chunks = min64(ceil_div(layer->weight_bytes, slot), layer->out_cols);
    plan->chunk_cols = ceil_div(layer->out_cols, chunks);
    /* Whole channels per chunk round the chunk up: take more chunks until one fits. */
    while (plan->chunk_cols > 1 &&
           ceil_div(layer->weight_bytes * plan->chunk_cols, layer->out_cols) > slot)
      plan->chunk_cols--;
    plan->weight_chunks = ceil_div(layer->out_cols, plan->chunk_cols);
    int64_t chunk_bytes = ceil_div(layer->weight_bytes * plan->chunk_cols, layer->out_cols);
    plan->weight_buffer_bytes = 2 * chunk_bytes;
  }

  /* Rows per tile: one tile when the whole group fits, else the most that fit half of what
   * the operand leaves. */
  int64_t operand_bytes = layer->operand_elems * e;
  int64_t rows_total = layer->reduce ? max64(layer->in_rows, 1) : layer->out_rows;
  int64_t whole = operand_bytes + tile_bytes(layer, rows_total, layer->out_width,
                                             plan->chunk_cols, e);
  int fits = 1;
  plan->tile_cols = layer->out_width;
  plan->col_tiles = 1;
  if (whole <= preset->feature_buffer_bytes) {
    plan->tile_rows = rows_total;
    plan->feature_slots = 1;
    plan->buffer_bytes = whole;
  } else {
    int64_t half = (preset->feature_buffer_bytes - operand_bytes) / 2;
    int64_t pixels = layer->out_width;
    /* One whole row too large: cut rows into bands of output pixels (maps only). */
    if (half > 0 && tile_bytes(layer, 1, pixels, plan->chunk_cols, e) > half &&
        layer->in_width > 0 && !layer->reduce && layer->out_width > 1) {
      int64_t low_p = 1, high_p = layer->out_width;
      while (low_p < high_p) {
        int64_t mid = low_p + (high_p - low_p + 1) / 2;
        if (tile_bytes(layer, 1, mid, plan->chunk_cols, e) <= half)
          low_p = mid;
        else
          high_p = mid - 1;
      }
      pixels = low_p;
      plan->tile_cols = pixels;
      plan->col_tiles = ceil_div(layer->out_width, pixels);
    }
    /* tile_bytes grows with rows: search the largest count that fits. With both bands and
     * weight chunks a tile is one row, so that its output stays one 2-D store. */
    int64_t low = 1, high = rows_total;
    if (plan->col_tiles > 1 && plan->weight_chunks > 1)
      high = 1;
    if (half <= 0 || tile_bytes(layer, 1, pixels, plan->chunk_cols, e) > half) {
      high = 1;
      fits = 0;
    }
    while (low < high) {
      int64_t mid = low + (high - low + 1) / 2;
      if (tile_bytes(layer, mid, pixels, plan->chunk_cols, e) <= half)
        low = mid;
      else
        high = mid - 1;
    }
    plan->tile_rows = low;
    plan->feature_slots = 2;
    plan->buffer_bytes =
        operand_bytes + 2 * tile_bytes(layer, low, pixels, plan->chunk_cols, e);
  }
  plan->tiles = ceil_div(rows_total, plan->tile_rows) * plan->col_tiles;
  if (plan->tiles == 1)
    plan->feature_slots = 1;
  plan->steps = layer->group_count * plan->weight_chunks * plan->tiles;
  plan->fits = fits && plan->buffer_bytes <= preset->feature_buffer_bytes &&
               plan->weight_buffer_bytes <= preset->weight_buffer_bytes;
  return DS_OK;
}

static void add_transfer(dsn_tile *out, int32_t role, uint8_t direction, uint8_t buffer,
                         uint8_t slot, uint8_t bank, int64_t dram_offset, int64_t row_bytes,
                         int64_t row_count, int64_t stride_bytes, int64_t chip_offset) {
  if (row_bytes <= 0 || row_count <= 0)
    return;
  dsn_transfer *t = &out->transfers[out->transfer_count++];
  t->role = role;
  t->direction = direction;
  t->buffer = buffer;
  t->slot = slot;
  t->bank = bank;
  t->dram_offset_bytes = dram_offset;
  t->row_bytes = row_bytes;
  t->row_count = row_count;
  t->stride_bytes = stride_bytes;
  t->chip_offset_bytes = chip_offset;
  if (direction == DSR_DMA_LOAD)
    out->load_count++;
}

void dsn_dense_tile_transfers(const dsn_layer *layer, const dsn_preset *preset,
                              const dsn_dense_plan *plan, int64_t group, int64_t chunk,
                              int64_t tile, dsn_tile *out) {
  memset(out, 0, sizeof *out);
  out->group = group;
  out->chunk = chunk;
  out->tile = tile;
  int64_t e = dsn_preset_element_bytes(preset);
  int64_t col0 = chunk * plan->chunk_cols;
  int64_t col1 = min64(col0 + plan->chunk_cols, layer->out_cols);
  int64_t rows_total = layer->reduce ? max64(layer->in_rows, 1) : layer->out_rows;
  int64_t row_tile = tile / plan->col_tiles;
  int64_t band = tile % plan->col_tiles;
  int64_t row0 = row_tile * plan->tile_rows;
  int64_t row1 = min64(row0 + plan->tile_rows, rows_total);
  int64_t p0 = band * plan->tile_cols;
  int64_t p1 = min64(p0 + plan->tile_cols, layer->out_width);
  int banded = plan->col_tiles > 1;
  int64_t step_in_group = chunk * plan->tiles + tile;
  uint8_t slot = (uint8_t)(plan->feature_slots > 1 ? tile % 2 : 0);
  uint8_t bank = (uint8_t)(step_in_group % preset->feature_banks);

  /* Output rows of this tile and the input rows they read. */
  int64_t o0 = row0, o1 = row1, r0 = row0, r1 = row1;
  if (layer->reduce) {
    o0 = 0;
    o1 = layer->out_rows;
    r1 = min64(r1, layer->in_rows);
  } else {
    input_band(layer, o0, o1, &r0, &r1);
  }
  /* Input pixels of the band, or the whole row. */
  int64_t x0 = 0, x1 = 0;
  if (banded)
    input_columns(layer, p0, p1, &x0, &x1);

  int64_t out_row_elems = layer->out_width * layer->out_cols;
  int64_t in_row_bytes = layer->in_row_elems * e;
  int64_t out_row_bytes = out_row_elems * e;

  if (tile == 0 && (plan->weight_chunks > 1 || group == 0) && layer->weight_bytes > 0) {
    int64_t w0 = layer->weight_bytes * col0 / layer->out_cols;
    int64_t w1 = layer->weight_bytes * col1 / layer->out_cols;
    uint8_t weight_slot = (uint8_t)(plan->weight_chunks > 1 ? chunk % 2 : 0);
    add_transfer(out, DSN_ROLE_WEIGHTS, DSR_DMA_LOAD, DSR_BUFFER_WEIGHTS, weight_slot, 0, w0,
                 w1 - w0, 1, w1 - w0, 0);
  }
  if (tile == 0 && layer->operand_elems > 0) {
    int64_t operand_bytes = layer->operand_elems * e;
    add_transfer(out, DSN_ROLE_OPERAND, DSR_DMA_LOAD, DSR_BUFFER_OPERAND, 0, 0,
                 group * operand_bytes, operand_bytes, 1, operand_bytes, 0);
  }
  int64_t in_tile_bytes = 0;
  if (layer->in_rows > 0 && layer->in_row_elems > 0 && r1 > r0) {
    int64_t first = (group * layer->in_rows + r0) * in_row_bytes;
    int64_t row_bytes = in_row_bytes;
    if (banded) {
      first += x0 * input_channels(layer) * e;
      row_bytes = (x1 - x0) * input_channels(layer) * e;
    }
    in_tile_bytes = (r1 - r0) * row_bytes;
    add_transfer(out, DSN_ROLE_INPUT, DSR_DMA_LOAD, DSR_BUFFER_FEATURE_IN, slot, bank, first,
                 row_bytes, r1 - r0, in_row_bytes, 0);
  }
  /* Bytes of the output pixels of the band in one output row, all channels. */
  int64_t band_bytes = (p1 - p0) * layer->out_cols * e;
  int64_t band_offset = p0 * layer->out_cols * e;
  if (layer->second_input) {
    add_transfer(out, DSN_ROLE_INPUT2, DSR_DMA_LOAD, DSR_BUFFER_FEATURE_IN, slot, bank,
                 (group * layer->out_rows + o0) * out_row_bytes + band_offset,
                 banded ? band_bytes : out_row_bytes, o1 - o0, out_row_bytes, in_tile_bytes);
  }

  /* A reduction writes its output after the last input tile. */
  int64_t cols = col1 - col0;
  int store = !layer->reduce || row1 == rows_total;
  if (store) {
    int64_t dram = (group * layer->out_rows + o0) * out_row_bytes + band_offset + col0 * e;
    if (cols == layer->out_cols)
      add_transfer(out, DSN_ROLE_OUTPUT, DSR_DMA_STORE, DSR_BUFFER_FEATURE_OUT, slot, 0, dram,
                   banded ? band_bytes : out_row_bytes, o1 - o0, out_row_bytes, 0);
    else
      /* A channel chunk: one row of cols channels per pixel. A banded tile is one row (the
       * plan guarantees it), so its pixels are out_cols apart too. */
      add_transfer(out, DSN_ROLE_OUTPUT, DSR_DMA_STORE, DSR_BUFFER_FEATURE_OUT, slot, 0, dram,
                   cols * e, (o1 - o0) * (p1 - p0), layer->out_cols * e, 0);
  }

  int64_t out_elems = layer->reduce ? 0 : (o1 - o0) * (p1 - p0) * cols;
  int64_t vector_elems = layer->reduce ? (r1 - r0) * layer->in_row_elems : out_elems;
  int64_t mac_count = (int64_t)preset->mac_rows * preset->mac_cols;
  out->compute_cycles = ceil_div(out_elems * layer->macs_per_output, mac_count) +
                        ceil_div(vector_elems * layer->vector_ops_per_elem, preset->mac_cols);
}

static void traffic_scale_add(dsn_traffic *sum, const dsn_traffic *part, int64_t times) {
  sum->bytes += part->bytes * times;
  sum->bursts += part->bursts * times;
  sum->row_misses += part->row_misses * times;
}

ds_status dsn_dense_cost_layer(const dsn_layer *layer, const dsn_preset *preset,
                               dsn_dense_cost *cost, ds_error *err) {
  memset(cost, 0, sizeof *cost);
  DS_TRY(dsn_dense_plan_make(layer, preset, &cost->plan, err));
  const dsn_dense_plan *plan = &cost->plan;

  /* Group 0 carries the weights when they are read once; every other group costs the same
   * as group 1. */
  int64_t groups = layer->group_count;
  for (int64_t g = 0; g < (groups > 1 ? 2 : 1); g++) {
    dsn_traffic group_traffic = {0};
    int64_t group_cycles = 0;
    for (int64_t chunk = 0; chunk < plan->weight_chunks; chunk++) {
      for (int64_t tile = 0; tile < plan->tiles; tile++) {
        dsn_tile t;
        dsn_dense_tile_transfers(layer, preset, plan, g, chunk, tile, &t);
        for (int32_t i = 0; i < t.transfer_count; i++)
          dsn_transfer_cost(t.transfers[i].row_bytes, t.transfers[i].row_count,
                            t.transfers[i].stride_bytes, preset, &group_traffic);
        group_cycles += t.compute_cycles;
      }
    }
    int64_t times = g == 0 ? 1 : groups - 1;
    traffic_scale_add(&cost->traffic, &group_traffic, times);
    cost->compute_cycles += group_cycles * times;
  }
  dsn_traffic_finish(&cost->traffic, preset);

  /* Compulsory traffic: each tensor once, as one run per tensor and group. */
  int64_t e = dsn_preset_element_bytes(preset);
  dsn_traffic one_group = {0};
  int64_t in_bytes = dsn_dense_read_input_bytes(layer, preset);
  int64_t out_bytes = dsn_dense_output_bytes(layer, preset);
  dsn_transfer_cost(in_bytes, 1, in_bytes, preset, &one_group);
  if (layer->second_input)
    dsn_transfer_cost(out_bytes, 1, out_bytes, preset, &one_group);
  dsn_transfer_cost(layer->operand_elems * e, 1, layer->operand_elems * e, preset, &one_group);
  dsn_transfer_cost(out_bytes, 1, out_bytes, preset, &one_group);
  traffic_scale_add(&cost->lower_bound, &one_group, groups);
  dsn_transfer_cost(layer->weight_bytes, 1, layer->weight_bytes, preset, &cost->lower_bound);
  dsn_traffic_finish(&cost->lower_bound, preset);
  return DS_OK;
}

int64_t dsn_deform_patch_array_cycles(const dsr_deform_attn *layer, int32_t ext_h,
                                      int32_t ext_w, int64_t core_pixels,
                                      const dsn_preset *preset) {
  int32_t hk = 0, wk = 0;
  int64_t samples = dsn_offset_grid(layer, ext_h, ext_w, &hk, &wk);
  int64_t c = layer->channels;
  int64_t k = layer->offset_kernel;
  int64_t ext_pixels = (int64_t)ext_h * ext_w;
  /* q projection over the extended patch, the depthwise and pointwise offset convs over the
   * offset grid (2 outputs per group), k and v over the samples, then scores and context
   * (every core query against every sample of its group: C products each) and the output
   * projection over the core. */
  int64_t macs = ext_pixels * c * c + samples * c * k * k + 2 * samples * c +
                 2 * samples * c * c + 2 * core_pixels * samples * c + core_pixels * c * c;
  int64_t mac_count = (int64_t)preset->mac_rows * preset->mac_cols;
  int64_t softmax = core_pixels * samples * layer->heads * 4;
  return ceil_div(macs, mac_count) + ceil_div(softmax, preset->mac_cols);
}

int64_t dsn_deform_patch_cycles(const dsr_deform_attn *layer, int32_t ext_h, int32_t ext_w,
                                int64_t core_pixels, const dsn_preset *preset) {
  int32_t hk = 0, wk = 0;
  int64_t samples = dsn_offset_grid(layer, ext_h, ext_w, &hk, &wk);
  return dsn_deform_patch_array_cycles(layer, ext_h, ext_w, core_pixels, preset) +
         (int64_t)layer->groups * ceil_div(samples, preset->sampling_lanes);
}
