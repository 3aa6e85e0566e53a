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

ds_status dsn_cost_auto_slices(const dsn_layer_list *list, const dsn_preset *preset,
                               int32_t min_overlap, dsr_slice *slices, ds_error *err) {
  int32_t index = 0;
  for (int32_t i = 0; i < list->count; i++) {
    const dsn_layer *layer = &list->layers[i];
    if (layer->kind != DSN_LAYER_DEFORM)
      continue;
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
      const dsn_traffic *t = &candidates.costs[c].sliced;
      const dsn_traffic *b = best >= 0 ? &candidates.costs[best].sliced : NULL;
      if (b == NULL || t->bursts < b->bursts ||
          (t->bursts == b->bursts && t->row_misses < b->row_misses))
        best = c;
    }
    slices[index++] = candidates.slices[best >= 0 ? best : candidates.min_traffic];
    dsn_candidates_free(&candidates);
  }
  return DS_OK;
}

/* Fills the time fields of c from its traffic, cycles and stalls. */
static void finish_strategy(dsn_strategy_cost *c, const dsn_preset *preset) {
  dsn_traffic_finish(&c->traffic, preset);
  double cycle_ns = 1000.0 / preset->clock_mhz;
  c->compute_ns = (double)c->compute_cycles * cycle_ns;
  double busy_ns = c->compute_ns + (double)c->stall_cycles * cycle_ns;
  c->bound = c->traffic.time_ns > busy_ns ? DSN_BOUND_BANDWIDTH : DSN_BOUND_COMPUTE;
  c->time_ns = c->traffic.time_ns > busy_ns ? c->traffic.time_ns : busy_ns;
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

  int64_t unsliced_cycles = dsn_deform_patch_cycles(d, d->height, d->width, preset);
  int64_t sliced_cycles = 0;
  for (int32_t r = 0; r < slice.rows; r++) {
    for (int32_t c = 0; c < slice.cols; c++) {
      dsr_patch p;
      dsr_slice_patch(d->height, d->width, slice, r, c, &p);
      sliced_cycles +=
          dsn_deform_patch_cycles(d, p.ext_y1 - p.ext_y0, p.ext_x1 - p.ext_x0, preset);
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
      double busy = c->compute_ns +
                    (double)c->stall_cycles * 1000.0 / report->preset.clock_mhz;
      c->bound = c->traffic.time_ns > busy ? DSN_BOUND_BANDWIDTH : DSN_BOUND_COMPUTE;
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
                                  const dsn_traffic *traffic, int64_t stall_cycles) {
  if (row < 0 || row >= report->row_count || strategy < 0 || strategy >= DSN_STRATEGY_COUNT)
    return;
  dsn_strategy_cost *c = &report->rows[row].strategies[strategy];
  const dsn_strategy_cost *reference = &report->rows[row].strategies[DSN_STRATEGY_GATHER];
  if (!c->available) {
    /* A strategy without an analytic figure takes the gather dataflow's compute. */
    c->compute_cycles = reference->compute_cycles;
    c->fits = 1;
  }
  c->available = 1;
  c->measured = 1;
  c->traffic = *traffic;
  c->stall_cycles = stall_cycles;
  finish_strategy(c, &report->preset);
  dsn_cost_report_total(report);
}
