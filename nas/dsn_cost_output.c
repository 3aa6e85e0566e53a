/* Text table, JSON and CSV renderings of a dsn_cost_report. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "nas/dsn_cost.h"

static void format_count(int64_t value, char *text, size_t size) {
  snprintf(text, size, "%lld", (long long)value);
}

static const char *bound_name(int32_t bound) {
  return bound == DSN_BOUND_BANDWIDTH ? "bandwidth" : "compute";
}

/* ratio = part / whole, or -1 when whole is 0 or a side is unavailable. */
static double ratio(double part, double whole) {
  return whole > 0 ? part / whole : -1.0;
}

static void print_row(const dsn_cost_report *report, int32_t index, FILE *out) {
  const dsn_cost_row *row = &report->rows[index];
  const dsn_strategy_cost *s = row->strategies;
  const dsn_strategy_cost *chosen = &s[DSN_STRATEGY_SLICED];
  char config[32];
  if (row->kind == DSN_LAYER_DEFORM)
    dsn_slice_format(row->slice, config, (int32_t)sizeof config);
  else if (row->weight_chunks > 1)
    snprintf(config, sizeof config, "%lldt/%lldw", (long long)row->steps,
             (long long)row->weight_chunks);
  else
    snprintf(config, sizeof config, "%lldt", (long long)row->steps);

  char gather[24] = "-", cache[24] = "-", whole[24] = "-";
  if (row->kind == DSN_LAYER_DEFORM) {
    format_count(s[DSN_STRATEGY_GATHER].traffic.bytes, gather, sizeof gather);
    if (s[DSN_STRATEGY_CACHE].available)
      format_count(s[DSN_STRATEGY_CACHE].traffic.bytes, cache, sizeof cache);
    else
      snprintf(cache, sizeof cache, "n/a");
    snprintf(whole, sizeof whole, "%lld%s", (long long)s[DSN_STRATEGY_WHOLE_MAP].traffic.bytes,
             s[DSN_STRATEGY_WHOLE_MAP].fits ? "" : "*");
  }
  fprintf(out,
          "%4d %-22.22s %-9s %-14s %-10s %12lld %12s %12s %12s | %12lld %9lld %8lld %9lld %-3s "
          "%11lld %10.1f %s\n",
          index, row->name, dsn_layer_kind_name(row->kind), row->map, config,
          (long long)s[DSN_STRATEGY_LOWER_BOUND].traffic.bytes, gather, cache, whole,
          (long long)chosen->traffic.bytes, (long long)chosen->traffic.bursts,
          (long long)chosen->traffic.row_misses, (long long)chosen->buffer_bytes,
          chosen->fits ? "yes" : "no", (long long)chosen->compute_cycles,
          chosen->time_ns / 1000.0, bound_name(chosen->bound));
}

/* " (measured)" when every row of the scope has a measured figure for strategy, " (partly
 * measured)" when some have, else "". */
static const char *measured_note(const dsn_cost_report *report, int deform_only,
                                 int32_t strategy) {
  int32_t rows = 0, measured = 0;
  for (int32_t i = 0; i < report->row_count; i++) {
    if (deform_only && report->rows[i].kind != DSN_LAYER_DEFORM)
      continue;
    rows++;
    measured += report->rows[i].strategies[strategy].measured;
  }
  if (measured == 0)
    return "";
  return measured == rows ? " (measured)" : " (partly measured)";
}

/* 1 when a and b differ by more than a millionth of the larger. */
static int differs(double a, double b) {
  double scale = a > b ? a : b;
  return a - b > 1e-6 * scale || b - a > 1e-6 * scale;
}

/* "-" for the lower bound, which needs no buffer, else whether the strategy's buffer fits. */
static const char *fits_text(int32_t strategy, const dsn_strategy_cost *cost) {
  if (strategy == DSN_STRATEGY_LOWER_BOUND)
    return "-";
  return cost->fits ? "yes" : "no";
}

/* Prints why sliced takes another time than whole_map when both move the same bytes. */
static void print_same_bytes_note(const dsn_strategy_cost *sliced,
                                  const dsn_strategy_cost *whole, FILE *out) {
  if (!sliced->available || !whole->available ||
      sliced->traffic.bytes != whole->traffic.bytes ||
      sliced->traffic.bursts != whole->traffic.bursts ||
      (!differs(sliced->time_ns, whole->time_ns) &&
       !differs(sliced->traffic.time_ns, whole->traffic.time_ns)))
    return;
  fprintf(out, "note: sliced moves the bytes of whole_map but takes %.3f us against %.3f us "
               "(DRAM %.3f against %.3f us):",
          sliced->time_ns / 1e3, whole->time_ns / 1e3, sliced->traffic.time_ns / 1e3,
          whole->traffic.time_ns / 1e3);
  if (sliced->measured)
    fprintf(out, " the sliced figure runs the DMA schedule step by step on the modelled DRAM, "
                 "where a patch's loads and stores overlap compute only across neighbouring "
                 "steps (one patch overlaps nothing) and the requests meet other row hits; "
                 "whole_map assumes a perfect overlap, the larger of DRAM and compute time.");
  else if (sliced->compute_cycles != whole->compute_cycles)
    fprintf(out, " the sliced compute counts every patch (%lld against %lld cycles): the halo "
                 "is recomputed and each query attends only the samples of its patch.",
            (long long)sliced->compute_cycles, (long long)whole->compute_cycles);
  else
    fprintf(out, " their row misses differ (%lld against %lld).",
            (long long)sliced->traffic.row_misses, (long long)whole->traffic.row_misses);
  fprintf(out, "\n");
}

static void print_totals(const dsn_cost_report *report, const dsn_cost_totals *totals,
                         const char *title, FILE *out) {
  int deform_only = totals == &report->deform;
  fprintf(out, "\n%s\n", title);
  fprintf(out, "%-12s %14s %14s %11s %10s %11s %14s %11s %11s %12s %-4s %s\n", "strategy",
          "payload bytes", "bus bytes", "bursts", "row misses", "DRAM ms", "cycles",
          "compute ms", "time ms", "peak buffer", "fits", "bound");
  for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++) {
    const dsn_strategy_cost *c = &totals->strategies[k];
    if (!c->available) {
      fprintf(out, "%-12s %14s %14s  (needs sampling positions: run with --simulate)\n",
              dsn_cost_strategy_name(k), "n/a", "n/a");
      continue;
    }
    /* The lower bound is traffic only: it has no schedule, so no buffer to size. */
    char buffer[24] = "n/a";
    if (k != DSN_STRATEGY_LOWER_BOUND)
      format_count(c->buffer_bytes, buffer, sizeof buffer);
    fprintf(out,
            "%-12s %14lld %14lld %11lld %10lld %11.3f %14lld %11.3f %11.3f %12s %-4s %s%s\n",
            dsn_cost_strategy_name(k), (long long)c->traffic.bytes,
            (long long)dsn_traffic_bus_bytes(&c->traffic, &report->preset),
            (long long)c->traffic.bursts,
            (long long)c->traffic.row_misses, c->traffic.time_ns / 1e6,
            (long long)c->compute_cycles, c->compute_ns / 1e6, c->time_ns / 1e6, buffer,
            fits_text(k, c), bound_name(c->bound),
            measured_note(report, deform_only, k));
  }
  const dsn_strategy_cost *sliced = &totals->strategies[DSN_STRATEGY_SLICED];
  print_same_bytes_note(sliced, &totals->strategies[DSN_STRATEGY_WHOLE_MAP], out);
  fprintf(out, "sliced relative to:  %12s %9s %9s\n", "bytes", "bursts", "DRAM time");
  for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++) {
    const dsn_strategy_cost *c = &totals->strategies[k];
    if (k == DSN_STRATEGY_SLICED || !c->available)
      continue;
    fprintf(out, "  %-18s %11.1f%% %8.1f%% %8.1f%%\n", dsn_cost_strategy_name(k),
            100.0 * ratio((double)sliced->traffic.bytes, (double)c->traffic.bytes),
            100.0 * ratio((double)sliced->traffic.bursts, (double)c->traffic.bursts),
            100.0 * ratio(sliced->traffic.time_ns, c->traffic.time_ns));
  }
}

static void print_header(const dsn_cost_report *report, FILE *out) {
  const dsn_preset *p = &report->preset;
  fprintf(out, "cost of %s\n", report->source);
  fprintf(out, "preset %s: %.0f MHz, %lld-byte bursts at %.3g GB/s, %lld-byte feature buffer "
               "(%d banks), %lld-byte weight buffer, %dx%d MACs\n",
          p->name, p->clock_mhz, (long long)dsn_preset_burst_bytes(p),
          p->dram.peak_bandwidth_gbps, (long long)p->feature_buffer_bytes, p->feature_banks,
          (long long)p->weight_buffer_bytes, p->mac_rows, p->mac_cols);
  fprintf(out, "sampling positions: %s\n", report->offsets);
  fprintf(out, "%d layers, %d deformable, %lld parameters\n", report->row_count,
          report->deform_count, (long long)report->weight_count);
}

static void print_all_totals(const dsn_cost_report *report, FILE *out) {
  print_totals(report, &report->model, "totals, whole model (dense layers and weights included)",
               out);
  if (report->deform_count > 0)
    print_totals(report, &report->deform, "totals, deformable layers only", out);
}

void dsn_cost_report_print_summary(const dsn_cost_report *report, FILE *out) {
  print_header(report, out);
  print_all_totals(report, out);
}

void dsn_cost_report_print(const dsn_cost_report *report, FILE *out) {
  print_header(report, out);
  fprintf(out,
          "\n%4s %-22s %-9s %-14s %-10s %12s %12s %12s %12s | %12s %9s %8s %9s %-3s %11s %10s "
          "%s\n",
          "#", "layer", "kind", "map", "config", "bound bytes", "gather", "cache",
          "whole map", "bytes", "bursts", "row miss", "buffer", "fit", "cycles", "time us",
          "bound");
  for (int32_t i = 0; i < report->row_count; i++)
    print_row(report, i, out);
  fprintf(out, "config: deformable layers show their slice RxC+O; dense layers their tiles "
               "(t) and weight chunks (w).\n"
               "Bytes are payload bytes (what the transfers name); bus bytes (bursts times "
               "the burst size, as in the compile report) are in the totals.\n"
               "Columns right of | are the chosen schedule (sliced; tiled for dense layers, "
               "which cost the same under every strategy). * whole map does not fit.\n");
  print_all_totals(report, out);
}

/* ---- JSON ---- */

static cJSON *strategy_json(const dsn_strategy_cost *c, const dsn_preset *preset) {
  if (!c->available)
    return cJSON_CreateNull();
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "dram_bytes", (double)c->traffic.bytes);
  cJSON_AddNumberToObject(o, "bus_bytes", (double)dsn_traffic_bus_bytes(&c->traffic, preset));
  cJSON_AddNumberToObject(o, "bursts", (double)c->traffic.bursts);
  cJSON_AddNumberToObject(o, "row_misses", (double)c->traffic.row_misses);
  cJSON_AddNumberToObject(o, "dram_ns", c->traffic.time_ns);
  cJSON_AddNumberToObject(o, "stall_cycles", (double)c->stall_cycles);
  cJSON_AddNumberToObject(o, "buffer_bytes", (double)c->buffer_bytes);
  cJSON_AddBoolToObject(o, "fits", c->fits);
  cJSON_AddNumberToObject(o, "compute_cycles", (double)c->compute_cycles);
  cJSON_AddNumberToObject(o, "compute_ns", c->compute_ns);
  cJSON_AddNumberToObject(o, "time_ns", c->time_ns);
  cJSON_AddStringToObject(o, "bound", bound_name(c->bound));
  cJSON_AddBoolToObject(o, "measured", c->measured);
  return o;
}

static cJSON *strategies_json(const dsn_strategy_cost *strategies, const dsn_preset *preset) {
  cJSON *o = cJSON_CreateObject();
  for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++)
    cJSON_AddItemToObject(o, dsn_cost_strategy_name(k), strategy_json(&strategies[k], preset));
  return o;
}

static cJSON *ratios_json(const dsn_cost_totals *totals) {
  cJSON *o = cJSON_CreateObject();
  const dsn_strategy_cost *sliced = &totals->strategies[DSN_STRATEGY_SLICED];
  for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++) {
    const dsn_strategy_cost *c = &totals->strategies[k];
    if (k == DSN_STRATEGY_SLICED)
      continue;
    char key[40];
    snprintf(key, sizeof key, "sliced_vs_%s", dsn_cost_strategy_name(k));
    if (!c->available) {
      cJSON_AddNullToObject(o, key);
      continue;
    }
    cJSON *r = cJSON_AddObjectToObject(o, key);
    cJSON_AddNumberToObject(r, "bytes", ratio((double)sliced->traffic.bytes,
                                              (double)c->traffic.bytes));
    cJSON_AddNumberToObject(r, "bursts", ratio((double)sliced->traffic.bursts,
                                               (double)c->traffic.bursts));
    cJSON_AddNumberToObject(r, "dram_time", ratio(sliced->traffic.time_ns, c->traffic.time_ns));
  }
  return o;
}

char *dsn_cost_report_json(const dsn_cost_report *report) {
  cJSON *root = cJSON_CreateObject();
  if (root == NULL)
    return NULL;
  cJSON_AddStringToObject(root, "source", report->source);
  cJSON_AddStringToObject(root, "sampling_positions", report->offsets);
  cJSON *preset = cJSON_AddObjectToObject(root, "preset");
  cJSON_AddStringToObject(preset, "name", report->preset.name);
  cJSON_AddNumberToObject(preset, "clock_mhz", report->preset.clock_mhz);
  cJSON_AddNumberToObject(preset, "burst_bytes", (double)dsn_preset_burst_bytes(&report->preset));
  cJSON_AddNumberToObject(preset, "peak_bandwidth_gbps", report->preset.dram.peak_bandwidth_gbps);
  cJSON_AddNumberToObject(preset, "feature_buffer_bytes",
                          (double)report->preset.feature_buffer_bytes);
  cJSON_AddNumberToObject(preset, "weight_buffer_bytes",
                          (double)report->preset.weight_buffer_bytes);
  cJSON_AddNumberToObject(root, "oracle_seconds", report->oracle_seconds);
  cJSON_AddNumberToObject(root, "layer_count", report->row_count);
  cJSON_AddNumberToObject(root, "deformable_layer_count", report->deform_count);
  cJSON_AddNumberToObject(root, "parameters", (double)report->weight_count);

  cJSON *layers = cJSON_AddArrayToObject(root, "layers");
  for (int32_t i = 0; i < report->row_count; i++) {
    const dsn_cost_row *row = &report->rows[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", i);
    cJSON_AddStringToObject(o, "name", row->name);
    cJSON_AddStringToObject(o, "kind", dsn_layer_kind_name(row->kind));
    cJSON_AddNumberToObject(o, "node", row->node);
    cJSON_AddNumberToObject(o, "stage", row->stage);
    cJSON_AddStringToObject(o, "map", row->map);
    if (row->kind == DSN_LAYER_DEFORM) {
      char slice[32];
      dsn_slice_format(row->slice, slice, (int32_t)sizeof slice);
      cJSON_AddStringToObject(o, "slice", slice);
      cJSON_AddNumberToObject(o, "deformable_index", row->deform_index);
    } else {
      cJSON_AddNullToObject(o, "slice");
    }
    cJSON_AddNumberToObject(o, "steps", (double)row->steps);
    cJSON_AddNumberToObject(o, "weight_chunks", (double)row->weight_chunks);
    cJSON_AddNumberToObject(o, "weight_bytes", (double)row->weight_bytes);
    cJSON_AddItemToObject(o, "strategies", strategies_json(row->strategies, &report->preset));
    cJSON_AddItemToArray(layers, o);
  }
  cJSON *totals = cJSON_AddObjectToObject(root, "totals");
  cJSON_AddItemToObject(totals, "model", strategies_json(report->model.strategies, &report->preset));
  cJSON_AddItemToObject(totals, "deformable", strategies_json(report->deform.strategies, &report->preset));
  cJSON *ratios = cJSON_AddObjectToObject(root, "ratios");
  cJSON_AddItemToObject(ratios, "model", ratios_json(&report->model));
  cJSON_AddItemToObject(ratios, "deformable", ratios_json(&report->deform));

  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  return text;
}

/* ---- CSV ---- */

typedef struct text_buffer {
  char *data;
  size_t used;
  size_t capacity;
  int failed;
} text_buffer;

static void append(text_buffer *b, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void append(text_buffer *b, const char *format, ...) {
  if (b->failed)
    return;
  for (;;) {
    va_list args;
    va_start(args, format);
    int n = vsnprintf(b->data + b->used, b->capacity - b->used, format, args);
    va_end(args);
    if (n < 0) {
      b->failed = 1;
      return;
    }
    if ((size_t)n < b->capacity - b->used) {
      b->used += (size_t)n;
      return;
    }
    size_t grown = (b->capacity + (size_t)n + 1) * 2;
    char *data = realloc(b->data, grown);
    if (data == NULL) {
      b->failed = 1;
      return;
    }
    b->data = data;
    b->capacity = grown;
  }
}

/* Writes one CSV field, quoted when it contains a comma, quote or newline. */
static void append_field(text_buffer *b, const char *text) {
  if (strpbrk(text, ",\"\n") == NULL) {
    append(b, "%s,", text);
    return;
  }
  append(b, "\"");
  for (const char *c = text; *c != '\0'; c++)
    append(b, *c == '"' ? "\"\"" : "%c", *c);
  append(b, "\",");
}

/* Where a line's sampling positions came from: "" for a dense layer, which samples nothing;
 * "none" without a simulation; "synthetic" from the offset model; "measured" from running
 * the model's own offset network. */
static const char *positions_kind(const dsn_cost_report *report, int deform) {
  if (!deform)
    return "";
  if (strcmp(report->offsets, "none") == 0)
    return "none";
  return strncmp(report->offsets, "measured", 8) == 0 ? "measured" : "synthetic";
}

static void append_strategy(text_buffer *b, int32_t k, const dsn_strategy_cost *c,
                            const dsn_preset *preset, const char *positions) {
  append(b, "%s,%d,%d,", dsn_cost_strategy_name(k), c->available, c->measured);
  if (!c->available) {
    append(b, ",,,,,,,,,,,,%s\n", positions);
    return;
  }
  char buffer[24] = "";
  if (k != DSN_STRATEGY_LOWER_BOUND)
    format_count(c->buffer_bytes, buffer, sizeof buffer);
  append(b, "%lld,%lld,%lld,%lld,%.3f,%lld,%s,%d,%lld,%.3f,%.3f,%s,%s\n",
         (long long)c->traffic.bytes, (long long)dsn_traffic_bus_bytes(&c->traffic, preset),
         (long long)c->traffic.bursts,
         (long long)c->traffic.row_misses, c->traffic.time_ns, (long long)c->stall_cycles,
         buffer, c->fits, (long long)c->compute_cycles, c->compute_ns, c->time_ns,
         bound_name(c->bound), positions);
}

char *dsn_cost_report_csv(const dsn_cost_report *report) {
  text_buffer b = {NULL, 0, 0, 0};
  b.data = malloc(4096);
  if (b.data == NULL)
    return NULL;
  b.capacity = 4096;
  append(&b, "index,name,kind,map,slice,strategy,available,measured,dram_bytes,bus_bytes,bursts,"
             "row_misses,dram_ns,stall_cycles,buffer_bytes,fits,compute_cycles,compute_ns,"
             "time_ns,bound,sampling_positions\n");
  for (int32_t i = 0; i < report->row_count; i++) {
    const dsn_cost_row *row = &report->rows[i];
    char slice[32] = "";
    if (row->kind == DSN_LAYER_DEFORM)
      dsn_slice_format(row->slice, slice, (int32_t)sizeof slice);
    for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++) {
      append(&b, "%d,", i);
      append_field(&b, row->name);
      append(&b, "%s,%s,%s,", dsn_layer_kind_name(row->kind), row->map, slice);
      append_strategy(&b, k, &row->strategies[k], &report->preset,
                      positions_kind(report, row->kind == DSN_LAYER_DEFORM));
    }
  }
  const struct {
    const char *name;
    const dsn_cost_totals *totals;
  } sets[] = {{"total", &report->model}, {"deformable_total", &report->deform}};
  for (size_t t = 0; t < sizeof sets / sizeof sets[0]; t++) {
    for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++) {
      append(&b, "%s,%s,,,,", sets[t].name, sets[t].name);
      append_strategy(&b, k, &sets[t].totals->strategies[k], &report->preset,
                      positions_kind(report, 1));
    }
  }
  if (b.failed) {
    free(b.data);
    return NULL;
  }
  return b.data;
}
