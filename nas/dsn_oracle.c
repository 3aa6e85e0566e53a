#include "dsn_oracle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nas/dsn_oracle_walk.h"
#include "nas/dsn_schedule.h"
#include "runtime/dsr_slice.h"

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

void dsn_transfer_cost(int64_t row_bytes, int64_t row_count, int64_t stride_bytes,
                       const dsn_preset *preset, dsn_traffic *add_to) {
  if (row_bytes <= 0 || row_count <= 0)
    return;
  int64_t burst_bytes = dsn_preset_burst_bytes(preset);
  int64_t run_bytes = row_bytes;
  int64_t run_count = row_count;
  /* Contiguous rows form one run: the DMA engine streams them as a 1-D copy. */
  if (stride_bytes == row_bytes) {
    run_bytes = row_bytes * row_count;
    run_count = 1;
  }
  add_to->bytes += row_bytes * row_count;
  add_to->bursts += run_count * ceil_div(run_bytes, burst_bytes);
  add_to->row_misses += run_count * ceil_div(run_bytes, preset->dram.row_bytes);
}

void dsn_traffic_finish(dsn_traffic *traffic, const dsn_preset *preset) {
  /* 1 GB/s moves one byte per nanosecond. */
  double bus_bytes = (double)traffic->bursts * (double)dsn_preset_burst_bytes(preset);
  traffic->time_ns = bus_bytes / preset->dram.peak_bandwidth_gbps +
                     (double)traffic->row_misses * preset->dram.row_miss_latency_ns;
}

int64_t dsn_traffic_bus_bytes(const dsn_traffic *traffic, const dsn_preset *preset) {
  return traffic->bursts * dsn_preset_burst_bytes(preset);
}

static void traffic_add(dsn_traffic *sum, const dsn_traffic *part) {
  sum->bytes += part->bytes;
  sum->bursts += part->bursts;
  sum->row_misses += part->row_misses;
  sum->time_ns += part->time_ns;
}

void dsn_layer_weight_sizes(const dsr_deform_attn *layer, const dsn_preset *preset,
                            int64_t sizes_bytes[DSR_DEFORM_PARAM_COUNT]) {
  int64_t c = layer->channels;
  int64_t cg = layer->groups > 0 ? c / layer->groups : c;
  int64_t k = layer->offset_kernel;
  int64_t wb = ceil_div(preset->weight_bits, 8);
  int64_t ab = ceil_div(preset->accumulator_bits, 8);
  int64_t table = (int64_t)layer->heads * (2 * (int64_t)layer->height - 1) *
                  (2 * (int64_t)layer->width - 1);

  sizes_bytes[DSR_DEFORM_PROJ_Q_W] = c * c * wb;
  sizes_bytes[DSR_DEFORM_PROJ_Q_B] = c * ab;
  sizes_bytes[DSR_DEFORM_OFFSET_DW_W] = cg * k * k * wb;
  sizes_bytes[DSR_DEFORM_OFFSET_DW_B] = cg * ab;
  sizes_bytes[DSR_DEFORM_OFFSET_LN_G] = cg * ab;
  sizes_bytes[DSR_DEFORM_OFFSET_LN_B] = cg * ab;
  sizes_bytes[DSR_DEFORM_OFFSET_PW_W] = 2 * cg * wb;
  sizes_bytes[DSR_DEFORM_PROJ_K_W] = c * c * wb;
  sizes_bytes[DSR_DEFORM_PROJ_K_B] = c * ab;
  sizes_bytes[DSR_DEFORM_PROJ_V_W] = c * c * wb;
  sizes_bytes[DSR_DEFORM_PROJ_V_B] = c * ab;
  sizes_bytes[DSR_DEFORM_PROJ_OUT_W] = c * c * wb;
  sizes_bytes[DSR_DEFORM_PROJ_OUT_B] = c * ab;
  sizes_bytes[DSR_DEFORM_RPE_TABLE] = table * wb;
}

int64_t dsn_deform_weight_bytes(const dsr_deform_attn *layer, const dsn_preset *preset) {
  int64_t sizes[DSR_DEFORM_PARAM_COUNT];
  dsn_layer_weight_sizes(layer, preset, sizes);
  int64_t total = 0;
  for (int32_t i = 0; i < DSR_DEFORM_PARAM_COUNT; i++)
    total += sizes[i];
  return total;
}

int32_t dsn_offset_grid(const dsr_deform_attn *layer, int32_t h, int32_t w, int32_t *hk,
                        int32_t *wk) {
  int32_t k = layer->offset_kernel;
  int32_t r = layer->offset_stride;
  int32_t p = layer->offset_pad;
  int32_t grid_h = h + 2 * p >= k ? (h + 2 * p - k) / r + 1 : 0;
  int32_t grid_w = w + 2 * p >= k ? (w + 2 * p - k) / r + 1 : 0;
  *hk = grid_h;
  *wk = grid_w;
  return grid_h * grid_w;
}

static ds_status check_geometry(const dsr_deform_attn *layer, ds_error *err) {
  if (layer->channels <= 0 || layer->height <= 0 || layer->width <= 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "deformable layer has channels %d, height %d, width %d; all must be "
                   "positive",
                   layer->channels, layer->height, layer->width);
  if (layer->groups <= 0 || layer->channels % layer->groups != 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "deformable layer has %d groups for %d channels; groups must be positive "
                   "and divide the channels",
                   layer->groups, layer->channels);
  if (layer->heads <= 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "deformable layer has %d heads; expected 1 "
                                                 "or more", layer->heads);
  if (layer->offset_kernel <= 0 || layer->offset_stride <= 0 || layer->offset_pad < 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "deformable layer has offset kernel %d, stride %d, pad %d; expected a "
                   "positive kernel and stride and a pad of 0 or more",
                   layer->offset_kernel, layer->offset_stride, layer->offset_pad);
  return DS_OK;
}

static ds_status check_slice(const dsr_deform_attn *layer, dsr_slice slice, ds_error *err) {
  int32_t side = layer->height > layer->width ? layer->height : layer->width;
  if (slice.rows < 1 || slice.rows > layer->height || slice.cols < 1 ||
      slice.cols > layer->width || slice.overlap < 0 || slice.overlap > side ||
      (slice.semantics != DSR_SLICE_PHYSICAL && slice.semantics != DSR_SLICE_CROP))
  {
    const char *semantics = slice.semantics == DSR_SLICE_PHYSICAL ? "physical"
                            : slice.semantics == DSR_SLICE_CROP   ? "crop"
                                                                  : "unknown";
    return ds_fail(err, DS_ERR_SLICE_CONFIG,
                   "slice %dx%d+%d%s (%s semantics) does not fit a %dx%d map; expected rows "
                   "1..%d, cols 1..%d, overlap 0..%d, and physical semantics (RxC+O) or crop "
                   "(RxC+Oc)",
                   slice.rows, slice.cols, slice.overlap,
                   slice.semantics == DSR_SLICE_CROP ? "c" : "", semantics, layer->height,
                   layer->width, layer->height, layer->width, side);
  }
  return DS_OK;
}

static void add_weights(const dsr_deform_attn *layer, const dsn_preset *preset,
                        dsn_traffic *traffic, int64_t *total_bytes) {
  int64_t sizes[DSR_DEFORM_PARAM_COUNT];
  dsn_layer_weight_sizes(layer, preset, sizes);
  int64_t total = 0;
  for (int32_t i = 0; i < DSR_DEFORM_PARAM_COUNT; i++) {
    dsn_transfer_cost(sizes[i], 1, sizes[i], preset, traffic);
    total += sizes[i];
  }
  if (total_bytes != NULL)
    *total_bytes = total;
}

static void gather_cost(const dsr_deform_attn *layer, const dsn_preset *preset,
                        dsn_traffic *traffic) {
  int64_t e = dsn_preset_element_bytes(preset);
  int64_t map_bytes = (int64_t)layer->height * layer->width * layer->channels * e;
  /* Read x, write q, read q back, write the output: four whole-map runs. */
  for (int32_t pass = 0; pass < 4; pass++)
    dsn_transfer_cost(map_bytes, 1, map_bytes, preset, traffic);

  int32_t hk = 0, wk = 0;
  int64_t samples = dsn_offset_grid(layer, layer->height, layer->width, &hk, &wk);
  int64_t vector_bytes = (int64_t)(layer->channels / layer->groups) * e;
  int64_t vectors = 4 * samples * layer->groups;
  traffic->bytes += vectors * vector_bytes;
  traffic->bursts += vectors * ceil_div(vector_bytes, dsn_preset_burst_bytes(preset));
  /* The two neighbours on one map row are adjacent in HWC, so a sample opens two DRAM rows
   * (one per neighbour row), assuming the rows opened by other samples closed them. */
  traffic->row_misses +=
      2 * samples * layer->groups * ceil_div(2 * vector_bytes, preset->dram.row_bytes);

  add_weights(layer, preset, traffic, NULL);
}

/* Prices layer with its regions at addresses (NULL: the canonical layout). */
static ds_status oracle_layer_at(const dsr_deform_attn *layer, dsr_slice slice,
                                 const dsn_preset *preset, const dsn_layer_addresses *addresses,
                                 dsn_layer_cost *cost, ds_error *err) {
  if (layer == NULL || preset == NULL || cost == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_oracle_layer: NULL argument");
  DS_TRY(check_geometry(layer, err));
  DS_TRY(check_slice(layer, slice, err));

  memset(cost, 0, sizeof *cost);
  cost->slice = slice;
  cost->patch_count = slice.rows * slice.cols;

  int64_t e = dsn_preset_element_bytes(preset);
  int64_t c = layer->channels;

  for (int32_t row = 0; row < slice.rows; row++) {
    for (int32_t col = 0; col < slice.cols; col++) {
      dsr_patch p;
      dsr_slice_patch(layer->height, layer->width, slice, row, col, &p);
      int32_t h = p.ext_y1 - p.ext_y0;
      int32_t w = p.ext_x1 - p.ext_x0;
      int32_t hk = 0, wk = 0;
      int64_t samples = dsn_offset_grid(layer, h, w, &hk, &wk);
      if (samples <= 0)
        return ds_fail(err, DS_ERR_SLICE_CONFIG,
                       "slice %dx%d+%d: patch (%d, %d) is %dx%d pixels, too small for the "
                       "%dx%d offset conv with pad %d; use fewer rows or cols or more overlap",
                       slice.rows, slice.cols, slice.overlap, row, col, h, w,
                       layer->offset_kernel, layer->offset_kernel, layer->offset_pad);

      int64_t patch_bytes = (int64_t)h * w * c * e;
      int64_t footprint = 2 * patch_bytes + 2 * c * samples * e;
      if (footprint > cost->patch_footprint_bytes)
        cost->patch_footprint_bytes = footprint;
    }
  }
  int64_t sizes[DSR_DEFORM_PARAM_COUNT];
  dsn_layer_weight_sizes(layer, preset, sizes);
  for (int32_t i = 0; i < DSR_DEFORM_PARAM_COUNT; i++)
    cost->weight_bytes += sizes[i];

  /* Sliced and lower bound: the transfers walked through the modelled DRAM, as the executor
   * serves them; the lower bound is the unsliced layer's one load and one store. */
  dsn_layer_addresses canonical;
  if (addresses == NULL) {
    dsn_oracle_canonical_addresses(layer, preset, &canonical);
    addresses = &canonical;
  }
  DS_TRY(dsn_oracle_walk(layer, slice, preset, addresses, &cost->sliced, err));
  DS_TRY(dsn_oracle_walk(layer, dsr_slice_none(), preset, addresses, &cost->lower_bound, err));
  gather_cost(layer, preset, &cost->gather);
  dsn_traffic_finish(&cost->sliced, preset);
  dsn_traffic_finish(&cost->gather, preset);
  dsn_traffic_finish(&cost->lower_bound, preset);

  cost->buffer_slots = cost->patch_count > 1 ? 2 : 1;
  cost->buffer_bytes = cost->patch_footprint_bytes * cost->buffer_slots;
  cost->fits = cost->buffer_bytes <= preset->feature_buffer_bytes;
  return DS_OK;
}

ds_status dsn_oracle_layer(const dsr_deform_attn *layer, dsr_slice slice,
                           const dsn_preset *preset, dsn_layer_cost *cost, ds_error *err) {
  return oracle_layer_at(layer, slice, preset, NULL, cost, err);
}

ds_status dsn_oracle_model(const dsr_model *model, const dsr_slice *slices,
                           const dsn_preset *preset, dsn_model_cost *cost, ds_error *err) {
  if (model == NULL || preset == NULL || cost == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_oracle_model: NULL argument");
  memset(cost, 0, sizeof *cost);

  int32_t count = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    if (model->nodes[i].op == DSR_OP_DEFORM_ATTN)
      count++;
  }
  cost->all_fit = 1;
  if (count == 0)
    return DS_OK;

  cost->layers = calloc((size_t)count, sizeof *cost->layers);
  if (cost->layers == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d layer costs", count);
  cost->layer_count = count;

  /* The regions dsn_schedule_layout gives from address 0, as the executor sees them. */
  dsn_layer_addresses *addresses = calloc((size_t)count, sizeof *addresses);
  uint64_t end_address = 0;
  if (addresses == NULL) {
    dsn_model_cost_free(cost);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d layer addresses", count);
  }
  ds_status layout_status = dsn_schedule_layout(model, preset, 0, addresses, &end_address, err);
  if (layout_status != DS_OK) {
    free(addresses);
    dsn_model_cost_free(cost);
    return layout_status;
  }

  int32_t layer_index = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op != DSR_OP_DEFORM_ATTN)
      continue;
    if (node->deform == NULL) {
      free(addresses);
      dsn_model_cost_free(cost);
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "node %d (%s) is DEFORM_ATTN without "
                                                   "layer parameters", i, node->name);
    }
    dsr_slice slice = slices != NULL ? slices[layer_index] : node->deform->slice;
    dsn_layer_cost *layer_cost = &cost->layers[layer_index];
    ds_status status = oracle_layer_at(node->deform, slice, preset, &addresses[layer_index],
                                       layer_cost, err);
    if (status != DS_OK) {
      free(addresses);
      dsn_model_cost_free(cost);
      return ds_fail(err, status, "deformable layer %d (node %s)", layer_index, node->name);
    }
    traffic_add(&cost->lower_bound, &layer_cost->lower_bound);
    traffic_add(&cost->gather, &layer_cost->gather);
    traffic_add(&cost->sliced, &layer_cost->sliced);
    cost->all_fit = cost->all_fit && layer_cost->fits;
    layer_index++;
  }
  free(addresses);
  return DS_OK;
}

void dsn_model_cost_free(dsn_model_cost *cost) {
  if (cost == NULL)
    return;
  free(cost->layers);
  memset(cost, 0, sizeof *cost);
}

static void print_traffic(const dsn_traffic *t, FILE *out) {
  fprintf(out, " %12lld %9lld %10.1f", (long long)t->bytes, (long long)t->bursts,
          t->time_ns / 1000.0);
}

void dsn_model_cost_print(const dsn_model_cost *cost, const dsn_preset *preset, FILE *out) {
  fprintf(out, "DRAM traffic per deformable layer, preset %s (%lld-byte bursts, %lld-byte "
               "feature buffer); time in microseconds\n",
          preset->name, (long long)dsn_preset_burst_bytes(preset),
          (long long)preset->feature_buffer_bytes);
  fprintf(out, "%5s %-8s %7s | %12s %9s %10s | %12s %9s %10s | %12s %9s %10s | %10s %s\n",
          "layer", "slice", "patches", "bound bytes", "bursts", "time", "gather bytes",
          "bursts", "time", "sliced bytes", "bursts", "time", "buffer", "fits");
  for (int32_t l = 0; l < cost->layer_count; l++) {
    const dsn_layer_cost *c = &cost->layers[l];
    char slice[40];
    dsn_slice_format(c->slice, slice, (int32_t)sizeof slice);
    fprintf(out, "%5d %-8s %7d |", l, slice, c->patch_count);
    print_traffic(&c->lower_bound, out);
    fprintf(out, " |");
    print_traffic(&c->gather, out);
    fprintf(out, " |");
    print_traffic(&c->sliced, out);
    fprintf(out, " | %10lld %s\n", (long long)c->buffer_bytes, c->fits ? "yes" : "no");
  }
  fprintf(out, "%5s %-8s %7s |", "total", "", "");
  print_traffic(&cost->lower_bound, out);
  fprintf(out, " |");
  print_traffic(&cost->gather, out);
  fprintf(out, " |");
  print_traffic(&cost->sliced, out);
  fprintf(out, " | %10s %s\n", "", cost->all_fit ? "yes" : "no");
}

static const int32_t overlap_choices[] = {0, 1, 2, 4};

static int every_patch_whole(const dsr_deform_attn *layer, dsr_slice slice) {
  for (int32_t row = 0; row < slice.rows; row++) {
    for (int32_t col = 0; col < slice.cols; col++) {
      dsr_patch p;
      dsr_slice_patch(layer->height, layer->width, slice, row, col, &p);
      if (p.ext_y0 != 0 || p.ext_y1 != layer->height || p.ext_x0 != 0 ||
          p.ext_x1 != layer->width)
        return 0;
    }
  }
  return 1;
}

/* Returns 1 when every extended patch of a equals that of b, which has the same rows and
 * cols, as when the map border clips an overlap away: the two configurations compute the
 * same. */
static int same_patches(const dsr_deform_attn *layer, dsr_slice a, dsr_slice b) {
  for (int32_t row = 0; row < a.rows; row++) {
    for (int32_t col = 0; col < a.cols; col++) {
      dsr_patch pa, pb;
      dsr_slice_patch(layer->height, layer->width, a, row, col, &pa);
      dsr_slice_patch(layer->height, layer->width, b, row, col, &pb);
      if (pa.ext_y0 != pb.ext_y0 || pa.ext_y1 != pb.ext_y1 || pa.ext_x0 != pb.ext_x0 ||
          pa.ext_x1 != pb.ext_x1)
        return 0;
    }
  }
  return 1;
}

/* Returns 1 when a needs less buffer than b, or as much with fewer bursts. */
static int smaller_patch(const dsn_layer_cost *a, const dsn_layer_cost *b) {
  if (a->buffer_bytes != b->buffer_bytes)
    return a->buffer_bytes < b->buffer_bytes;
  return a->sliced.bursts < b->sliced.bursts;
}

ds_status dsn_candidates_build(const dsr_deform_attn *layer, const dsn_preset *preset,
                               uint32_t semantics_mask, dsn_candidates *candidates,
                               ds_error *err) {
  if (layer == NULL || preset == NULL || candidates == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_candidates_build: NULL argument");
  memset(candidates, 0, sizeof *candidates);
  DS_TRY(check_geometry(layer, err));
  if (semantics_mask == 0)
    semantics_mask = DSN_SEMANTICS_PHYSICAL;

  int32_t max_rows = layer->height < 8 ? layer->height : 8;
  int32_t max_cols = layer->width < 8 ? layer->width : 8;
  int32_t min_side = layer->height < layer->width ? layer->height : layer->width;
  int32_t capacity = max_rows * max_cols * 4 * 2;
  candidates->slices = calloc((size_t)capacity, sizeof *candidates->slices);
  candidates->costs = calloc((size_t)capacity, sizeof *candidates->costs);
  if (candidates->slices == NULL || candidates->costs == NULL) {
    dsn_candidates_free(candidates);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d candidates", capacity);
  }

  dsn_layer_cost smallest;
  int32_t have_smallest = 0;
  for (int32_t rows = 1; rows <= max_rows; rows++) {
    for (int32_t cols = 1; cols <= max_cols; cols++) {
      for (int32_t o = 0; o < 4; o++) {
        if (overlap_choices[o] > min_side)
          continue;
        /* A larger overlap that the border clips back to the previous one adds nothing. */
        dsr_slice previous = {rows, cols, o > 0 ? overlap_choices[o - 1] : 0, 0};
        dsr_slice current = {rows, cols, overlap_choices[o], 0};
        if (o > 0 && same_patches(layer, previous, current))
          continue;
        for (int32_t semantics = 0; semantics < 2; semantics++) {
          if ((semantics_mask & (1u << semantics)) == 0)
            continue;
          dsr_slice slice = {rows, cols, overlap_choices[o], semantics};
          /* When every extended patch is the whole map, each patch computes the unsliced
           * layer, in either semantics. */
          if (every_patch_whole(layer, slice) &&
              !(rows == 1 && cols == 1 && semantics == DSR_SLICE_PHYSICAL))
            continue;
          dsn_layer_cost cost;
          ds_error local;
          ds_error_clear(&local);
          /* Configurations whose patches are too small for the offset conv are skipped. */
          if (dsn_oracle_layer(layer, slice, preset, &cost, &local) != DS_OK)
            continue;
          if (!have_smallest || smaller_patch(&cost, &smallest)) {
            smallest = cost;
            have_smallest = 1;
          }
          if (!cost.fits)
            continue;
          candidates->slices[candidates->count] = slice;
          candidates->costs[candidates->count] = cost;
          candidates->count++;
        }
      }
    }
  }

  if (candidates->count == 0) {
    if (!have_smallest) {
      dsn_candidates_free(candidates);
      return ds_fail(err, DS_ERR_SLICE_CONFIG,
                     "no slice configuration is valid for a %dx%d map with a %dx%d offset "
                     "conv",
                     layer->height, layer->width, layer->offset_kernel, layer->offset_kernel);
    }
    candidates->slices[0] = smallest.slice;
    candidates->costs[0] = smallest;
    candidates->count = 1;
    candidates->none_fit = 1;
  }

  /* Fewest bursts; among equal ones the fewest row misses, such as full-width row splits. */
  int32_t best = 0;
  for (int32_t i = 1; i < candidates->count; i++) {
    const dsn_traffic *t = &candidates->costs[i].sliced;
    const dsn_traffic *b = &candidates->costs[best].sliced;
    if (t->bursts < b->bursts || (t->bursts == b->bursts && t->row_misses < b->row_misses))
      best = i;
  }
  candidates->min_traffic = best;
  return DS_OK;
}

void dsn_candidates_free(dsn_candidates *candidates) {
  if (candidates == NULL)
    return;
  free(candidates->slices);
  free(candidates->costs);
  memset(candidates, 0, sizeof *candidates);
}

void dsn_slice_format(dsr_slice slice, char *text, int32_t size) {
  snprintf(text, (size_t)size, "%dx%d+%d%s", slice.rows, slice.cols, slice.overlap,
           slice.semantics == DSR_SLICE_CROP ? "c" : "");
}

/* Reads decimal digits at *c into *value, at most DSN_SLICE_NUMBER_MAX. Returns 0, or -1 on no
 * digits or a value past the limit (no wrap-around). */
static int32_t parse_slice_number(const char **c, int32_t *value) {
  int64_t v = 0;
  int32_t digits = 0;
  while (**c >= '0' && **c <= '9') {
    v = v * 10 + (**c - '0');
    if (v > DSN_SLICE_NUMBER_MAX)
      return -1;
    (*c)++;
    digits++;
  }
  if (digits == 0)
    return -1;
  *value = (int32_t)v;
  return 0;
}

int32_t dsn_slice_parse(const char *text, dsr_slice *slice) {
  if (text == NULL)
    return -1;
  int32_t rows = 0, cols = 0, overlap = 0;
  const char *c = text;
  if (parse_slice_number(&c, &rows) != 0 || *c++ != 'x' ||
      parse_slice_number(&c, &cols) != 0 || *c++ != '+' ||
      parse_slice_number(&c, &overlap) != 0)
    return -1;
  int32_t semantics = DSR_SLICE_PHYSICAL;
  if (*c == 'c') {
    semantics = DSR_SLICE_CROP;
    c++;
  }
  if (*c != '\0' || rows < 1 || cols < 1)
    return -1;
  slice->rows = rows;
  slice->cols = cols;
  slice->overlap = overlap;
  slice->semantics = semantics;
  return 0;
}
