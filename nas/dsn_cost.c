#include "dsn_cost.h"

#include <stdlib.h>
#include <string.h>

#include "nas/dsn_dense.h"
#include "runtime/dsr_slice.h"

static const char *const strategy_names[DSN_STRATEGY_COUNT] = {
    "lower_bound", "gather", "cache", "whole_map", "sliced"};

const char *dsn_cost_strategy_name(int32_t strategy) {
  if (strategy < 0 || strategy >= DSN_STRATEGY_COUNT)
    return "unknown";
  return strategy_names[strategy];
}

/* Patch counts per side tried when no configuration of up to 8 x 8 patches fits. */
static const int32_t wide_splits[] = {1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64};
static const int32_t wide_overlaps[] = {0, 1, 2, 4};

/* 1 when a has fewer bursts than b, or as many and fewer row misses. */
static int less_traffic(const dsn_layer_cost *a, const dsn_layer_cost *b) {
  if (a->sliced.bursts != b->sliced.bursts)
    return a->sliced.bursts < b->sliced.bursts;
  return a->sliced.row_misses < b->sliced.row_misses;
}

/* A quick lower estimate of the double-buffered need of slice's largest patch, to skip
 * configurations that cannot fit before pricing every patch. */
static int64_t largest_patch_bytes(const dsr_deform_attn *d, dsr_slice slice,
                                   const dsn_preset *preset) {
  int64_t h = (d->height + slice.rows - 1) / slice.rows + 2 * (int64_t)slice.overlap;
  int64_t w = (d->width + slice.cols - 1) / slice.cols + 2 * (int64_t)slice.overlap;
  h = h < d->height ? h : d->height;
  w = w < d->width ? w : d->width;
  int64_t e = dsn_preset_element_bytes(preset);
  /* x and q of the patch; k and v samples and the second slot only add to it. */
  return 2 * h * w * d->channels * e * (slice.rows * slice.cols > 1 ? 2 : 1);
}

/*
 * Searches up to 64 x 64 patches for the fitting configuration with the least traffic and
 * an overlap of at least min_overlap. Returns 1 and sets *best when one fits.
 */
static int search_wide(const dsr_deform_attn *d, const dsn_preset *preset, int32_t min_overlap,
                       dsr_slice *best) {
  dsn_layer_cost best_cost;
  memset(&best_cost, 0, sizeof best_cost);
  int found = 0;
  for (size_t r = 0; r < sizeof wide_splits / sizeof wide_splits[0]; r++) {
    for (size_t c = 0; c < sizeof wide_splits / sizeof wide_splits[0]; c++) {
      for (size_t o = 0; o < sizeof wide_overlaps / sizeof wide_overlaps[0]; o++) {
        dsr_slice slice = {wide_splits[r], wide_splits[c], wide_overlaps[o],
                           DSR_SLICE_PHYSICAL};
        if (slice.rows > d->height || slice.cols > d->width || slice.overlap < min_overlap)
          continue;
        if (largest_patch_bytes(d, slice, preset) > preset->feature_buffer_bytes)
          continue;
        dsn_layer_cost cost;
        ds_error ignored;
        ds_error_clear(&ignored);
        if (dsn_oracle_layer(d, slice, preset, &cost, &ignored) != DS_OK || !cost.fits)
          continue;
        if (!found || less_traffic(&cost, &best_cost)) {
          best_cost = cost;
          *best = slice;
          found = 1;
        }
      }
    }
  }
  return found;
}

static int same_geometry(const dsr_deform_attn *a, const dsr_deform_attn *b) {
  return a->channels == b->channels && a->height == b->height && a->width == b->width &&
         a->groups == b->groups && a->heads == b->heads &&
         a->offset_kernel == b->offset_kernel && a->offset_stride == b->offset_stride &&
         a->offset_pad == b->offset_pad && a->convention == b->convention &&
         a->offset_range_factor == b->offset_range_factor;
}

ds_status dsn_cost_auto_slices(const dsn_layer_list *list, const dsn_preset *preset,
                               int32_t min_overlap, dsr_slice *slices, ds_error *err) {
  int32_t index = 0;
  for (int32_t i = 0; i < list->count; i++) {
    const dsn_layer *layer = &list->layers[i];
    if (layer->kind != DSN_LAYER_DEFORM)
      continue;
    /* Layers of the same geometry (most of a stage) get the same choice. */
    int32_t same = -1;
    for (int32_t j = 0, earlier = 0; j < i && same < 0; j++) {
      if (list->layers[j].kind != DSN_LAYER_DEFORM)
        continue;
      if (same_geometry(&list->layers[j].deform, &layer->deform))
        same = earlier;
      earlier++;
    }
    if (same >= 0) {
      slices[index] = slices[same];
      index++;
      continue;
    }
    dsn_candidates candidates;
    ds_status status = dsn_candidates_build(&layer->deform, preset, 0, &candidates, err);
    if (status != DS_OK)
      return ds_fail(err, status, "layer %s", layer->name);
    int32_t best = -1;
    for (int32_t c = 0; c < candidates.count && !candidates.none_fit; c++) {
      const dsr_slice *slice = &candidates.slices[c];
      int whole = slice->rows == 1 && slice->cols == 1;
      if (slice->overlap < min_overlap && !whole)
        continue;
      if (best < 0 || less_traffic(&candidates.costs[c], &candidates.costs[best]))
        best = c;
    }
    dsr_slice chosen = candidates.slices[best >= 0 ? best : candidates.min_traffic];
    /* Large maps may need more than 8 x 8 patches; the search list stops there. */
    if (best < 0)
      search_wide(&layer->deform, preset, min_overlap, &chosen);
    slices[index++] = chosen;
    dsn_candidates_free(&candidates);
  }
  return DS_OK;
}

/* Fills the time fields of c from its traffic and cycles. */
static void finish_strategy(dsn_strategy_cost *c, const dsn_preset *preset) {
  dsn_traffic_finish(&c->traffic, preset);
  c->compute_ns = (double)c->compute_cycles * 1000.0 / preset->clock_mhz;
  c->bound = c->traffic.time_ns > c->compute_ns ? DSN_BOUND_BANDWIDTH : DSN_BOUND_COMPUTE;
  c->time_ns = c->traffic.time_ns > c->compute_ns ? c->traffic.time_ns : c->compute_ns;
}

static void set_strategy(dsn_strategy_cost *c, const dsn_traffic *traffic, int64_t buffer_bytes,
                         int32_t fits, int64_t cycles, const dsn_preset *preset) {
  memset(c, 0, sizeof *c);
  c->available = 1;
  c->traffic = *traffic;
  c->buffer_bytes = buffer_bytes;
  c->fits = fits;
  c->compute_cycles = cycles;
  finish_strategy(c, preset);
}

static ds_status deform_row(const dsn_layer *layer, dsr_slice slice, const dsn_preset *preset,
                            dsn_cost_row *row, ds_error *err) {
  const dsr_deform_attn *d = &layer->deform;
  dsn_layer_cost chosen, whole;
  DS_TRY(dsn_oracle_layer(d, slice, preset, &chosen, err));
  dsr_slice unsliced = {1, 1, 0, DSR_SLICE_PHYSICAL};
  DS_TRY(dsn_oracle_layer(d, unsliced, preset, &whole, err));

  int64_t unsliced_cycles =
      dsn_deform_patch_cycles(d, d->height, d->width, (int64_t)d->height * d->width, preset);
  int64_t sliced_cycles = 0;
  for (int32_t r = 0; r < slice.rows; r++) {
    for (int32_t c = 0; c < slice.cols; c++) {
      dsr_patch p;
      dsr_slice_patch(d->height, d->width, slice, r, c, &p);
      sliced_cycles += dsn_deform_patch_cycles(
          d, p.ext_y1 - p.ext_y0, p.ext_x1 - p.ext_x0,
          (int64_t)(p.core_y1 - p.core_y0) * (p.core_x1 - p.core_x0), preset);
    }
  }
  row->slice = slice;
  row->steps = chosen.patch_count;
  dsn_strategy_cost *s = row->strategies;
  set_strategy(&s[DSN_STRATEGY_LOWER_BOUND], &chosen.lower_bound, 0, 1, unsliced_cycles,
               preset);
  /* The gather dataflow streams x and q through line buffers; it needs no map buffer. */
  set_strategy(&s[DSN_STRATEGY_GATHER], &chosen.gather, 0, 1, unsliced_cycles, preset);
  memset(&s[DSN_STRATEGY_CACHE], 0, sizeof s[DSN_STRATEGY_CACHE]);
  set_strategy(&s[DSN_STRATEGY_WHOLE_MAP], &whole.sliced, whole.buffer_bytes, whole.fits,
               unsliced_cycles, preset);
  set_strategy(&s[DSN_STRATEGY_SLICED], &chosen.sliced, chosen.buffer_bytes, chosen.fits,
               sliced_cycles, preset);
  return DS_OK;
}

static ds_status dense_row(const dsn_layer *layer, const dsn_preset *preset, dsn_cost_row *row,
                           ds_error *err) {
  dsn_dense_cost cost;
  DS_TRY(dsn_dense_cost_layer(layer, preset, &cost, err));
  row->steps = cost.plan.steps;
  row->weight_chunks = cost.plan.weight_chunks;
  dsn_strategy_cost *s = row->strategies;
  set_strategy(&s[DSN_STRATEGY_LOWER_BOUND], &cost.lower_bound, 0, 1, cost.compute_cycles,
               preset);
  for (int32_t k = DSN_STRATEGY_GATHER; k < DSN_STRATEGY_COUNT; k++)
    set_strategy(&s[k], &cost.traffic, cost.plan.buffer_bytes, cost.plan.fits,
                 cost.compute_cycles, preset);
  return DS_OK;
}

static void add_to_total(dsn_strategy_cost *total, const dsn_strategy_cost *part) {
  if (!part->available)
    total->available = 0;
  total->measured = total->measured || part->measured;
  total->traffic.bytes += part->traffic.bytes;
  total->traffic.bursts += part->traffic.bursts;
  total->traffic.row_misses += part->traffic.row_misses;
  total->traffic.time_ns += part->traffic.time_ns;
  total->stall_cycles += part->stall_cycles;
  if (part->buffer_bytes > total->buffer_bytes)
    total->buffer_bytes = part->buffer_bytes;
  total->fits = total->fits && part->fits;
  total->compute_cycles += part->compute_cycles;
  total->compute_ns += part->compute_ns;
  total->time_ns += part->time_ns;
}

void dsn_cost_report_total(dsn_cost_report *report) {
  dsn_cost_totals *sets[2] = {&report->model, &report->deform};
  for (int32_t t = 0; t < 2; t++) {
    memset(sets[t], 0, sizeof *sets[t]);
    for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++) {
      sets[t]->strategies[k].available = 1;
      sets[t]->strategies[k].fits = 1;
    }
  }
  for (int32_t i = 0; i < report->row_count; i++) {
    const dsn_cost_row *row = &report->rows[i];
    for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++) {
      add_to_total(&report->model.strategies[k], &row->strategies[k]);
      if (row->kind == DSN_LAYER_DEFORM)
        add_to_total(&report->deform.strategies[k], &row->strategies[k]);
    }
  }
  for (int32_t t = 0; t < 2; t++) {
    for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++) {
      dsn_strategy_cost *c = &sets[t]->strategies[k];
      c->bound = c->traffic.time_ns > c->compute_ns ? DSN_BOUND_BANDWIDTH : DSN_BOUND_COMPUTE;
    }
  }
}

ds_status dsn_cost_report_build(const dsn_layer_list *list, const dsr_slice *slices,
                                const dsn_preset *preset, dsn_cost_report *report,
                                ds_error *err) {
  if (list == NULL || preset == NULL || report == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_cost_report_build: NULL argument");
  memset(report, 0, sizeof *report);
  report->preset = *preset;
  snprintf(report->source, sizeof report->source, "%s", list->source);
  snprintf(report->offsets, sizeof report->offsets, "none");
  if (list->count == 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "%s has no layers to price", list->source);
  report->rows = calloc((size_t)list->count, sizeof *report->rows);
  if (report->rows == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d report rows", list->count);
  report->row_count = list->count;

  int32_t deform_index = 0;
  for (int32_t i = 0; i < list->count; i++) {
    const dsn_layer *layer = &list->layers[i];
    dsn_cost_row *row = &report->rows[i];
    snprintf(row->name, sizeof row->name, "%s", layer->name);
    row->kind = layer->kind;
    row->node = layer->node;
    row->stage = layer->stage;
    row->deform_index = -1;
    row->weight_chunks = 1;
    row->weight_bytes = layer->weight_bytes;
    row->weight_count = layer->weight_count;
    report->weight_count += layer->weight_count;
    dsn_layer_map_text(layer, row->map, (int32_t)sizeof row->map);
    ds_status status;
    if (layer->kind == DSN_LAYER_DEFORM) {
      row->deform_index = deform_index;
      dsr_slice slice = slices != NULL ? slices[deform_index] : layer->deform.slice;
      status = deform_row(layer, slice, preset, row, err);
      deform_index++;
    } else {
      status = dense_row(layer, preset, row, err);
    }
    if (status != DS_OK) {
      dsn_cost_report_free(report);
      return ds_fail(err, status, "layer %d (%s, %s)", i, layer->name,
                     dsn_layer_kind_name(layer->kind));
    }
  }
  report->deform_count = deform_index;
  dsn_cost_report_total(report);
  return DS_OK;
}

void dsn_cost_report_free(dsn_cost_report *report) {
  if (report == NULL)
    return;
  free(report->rows);
  memset(report, 0, sizeof *report);
}

void dsn_cost_report_set_measured(dsn_cost_report *report, int32_t row, int32_t strategy,
                                  const dsn_measured *measured) {
  if (row < 0 || row >= report->row_count || strategy < 0 || strategy >= DSN_STRATEGY_COUNT)
    return;
  dsn_strategy_cost *c = &report->rows[row].strategies[strategy];
  double cycle_ns = 1000.0 / report->preset.clock_mhz;
  memset(c, 0, sizeof *c);
  c->available = 1;
  c->measured = 1;
  c->traffic.bytes = measured->bytes;
  c->traffic.bursts = measured->bursts;
  c->traffic.row_misses = measured->row_misses;
  c->traffic.time_ns = (double)measured->dram_cycles * cycle_ns;
  c->stall_cycles = measured->bank_stall_cycles;
  c->buffer_bytes = measured->buffer_bytes;
  c->fits = measured->fits;
  c->compute_cycles = measured->compute_cycles;
  c->compute_ns = (double)measured->compute_cycles * cycle_ns;
  c->time_ns = (double)measured->cycles * cycle_ns;
  c->bound = measured->compute_bound ? DSN_BOUND_COMPUTE : DSN_BOUND_BANDWIDTH;
  dsn_cost_report_total(report);
}
