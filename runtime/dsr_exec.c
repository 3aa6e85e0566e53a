/*
 * Schedule executor (dsr_exec.h): issues a layer's transfers in double-buffered order to the
 * modelled DRAM and overlaps them with the compute steps on a nanosecond timeline.
 */
#include "dsr_exec.h"

#include <math.h>
#include <string.h>

static const dsr_dma_descriptor *step_descriptor(const dsr_schedule *schedule,
                                                 const dsr_dma_step *step, int32_t index) {
  return &schedule->descriptors[step->first_descriptor + index];
}

/* Layers below SEEN_WORDS * 64 are tracked in a bitmap; larger indices are searched. */
#define SEEN_WORDS 64

/* Returns 1 when layer already had steps before step s, and marks it as seen. */
static int layer_seen(const dsr_schedule *schedule, int32_t s, int32_t layer, uint64_t *seen) {
  if (layer < SEEN_WORDS * 64) {
    uint64_t bit = UINT64_C(1) << (layer % 64);
    int was_seen = (seen[layer / 64] & bit) != 0;
    seen[layer / 64] |= bit;
    return was_seen;
  }
  for (int32_t t = 0; t < s; t++) {
    if (schedule->steps[t].layer == layer)
      return 1;
  }
  return 0;
}

ds_status dsr_exec_check(const dsr_schedule *schedule, const dsr_dram *dram,
                         int32_t layer_capacity, ds_error *err) {
  if (schedule == NULL || dram == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsr_exec_check: NULL schedule or dram");
  if (schedule->step_count < 0 || schedule->descriptor_count < 0 ||
      (schedule->step_count > 0 && schedule->steps == NULL) ||
      (schedule->descriptor_count > 0 && schedule->descriptors == NULL))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "schedule has %d steps and %d descriptors but no arrays for them",
                   schedule->step_count, schedule->descriptor_count);
  uint64_t capacity = dsr_dram_capacity_bytes(&dram->config);
  int32_t previous_layer = -1;
  uint64_t seen[SEEN_WORDS];
  memset(seen, 0, sizeof seen);
  for (int32_t s = 0; s < schedule->step_count; s++) {
    const dsr_dma_step *step = &schedule->steps[s];
    if (step->layer < -1 || step->layer >= layer_capacity)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "schedule step %d: layer %d is outside -1..%d; give room for every "
                     "deformable layer",
                     s, step->layer, layer_capacity - 1);
    if (step->layer >= 0 && step->layer != previous_layer &&
        layer_seen(schedule, s, step->layer, seen))
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "schedule step %d: layer %d resumes after step %d of another layer; a "
                     "layer's steps must be contiguous",
                     s, step->layer, s - 1);
    previous_layer = step->layer;
    int64_t first = step->first_descriptor;
    int64_t count = (int64_t)step->load_count + step->store_count;
    if (first < 0 || step->load_count < 0 || step->store_count < 0 ||
        first + count > schedule->descriptor_count)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "schedule step %d: descriptors %lld..%lld (%d loads, %d stores) are "
                     "outside the %d descriptors",
                     s, (long long)first, (long long)(first + count - 1), step->load_count,
                     step->store_count, schedule->descriptor_count);
    for (int32_t d = 0; d < count; d++) {
      const dsr_dma_descriptor *desc = step_descriptor(schedule, step, d);
      int32_t expected = d < step->load_count ? DSR_DMA_LOAD : DSR_DMA_STORE;
      if (desc->direction != expected)
        return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                       "schedule step %d descriptor %lld: direction %u, expected %d (%s); "
                       "loads come first in a step, then stores",
                       s, (long long)(first + d), desc->direction, expected,
                       expected == DSR_DMA_LOAD ? "load" : "store");
      if (desc->slot > 1)
        return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                       "schedule step %d descriptor %lld: slot %u; expected 0 or 1", s,
                       (long long)(first + d), desc->slot);
      if (desc->row_bytes == 0 || desc->row_count == 0 ||
          (desc->row_count > 1 && desc->stride_bytes < desc->row_bytes))
        return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                       "schedule step %d descriptor %lld: %u rows of %u bytes, stride %u; "
                       "expected rows and bytes of 1 or more and a stride of at least the row",
                       s, (long long)(first + d), desc->row_count, desc->row_bytes,
                       desc->stride_bytes);
      uint64_t end = desc->dram_address + (uint64_t)(desc->row_count - 1) * desc->stride_bytes +
                     desc->row_bytes;
      if (desc->dram_address >= capacity || end > capacity)
        return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                       "schedule step %d descriptor %lld: bytes 0x%llx..0x%llx lie outside the "
                       "modelled DRAM of %llu bytes",
                       s, (long long)(first + d), (unsigned long long)desc->dram_address,
                       (unsigned long long)end, (unsigned long long)capacity);
    }
  }
  return DS_OK;
}

/* Slot of a step's first feature load, or -1 when it loads no feature patch. */
static int32_t feature_slot(const dsr_schedule *schedule, const dsr_dma_step *step) {
  for (int32_t d = 0; d < step->load_count; d++) {
    const dsr_dma_descriptor *desc = step_descriptor(schedule, step, d);
    if (desc->buffer == DSR_BUFFER_FEATURE_IN)
      return desc->slot;
  }
  return -1;
}

/* The timeline of one run, in nanoseconds. */
typedef struct exec_state {
  dsr_dram *dram;
  double tck_ns;
  double dma_free_ns;
  double dram_busy_ns;
  int64_t dram_cycles;
} exec_state;

/* Issues count descriptors of step from index first, no earlier than ready_ns; returns the
 * time the last one is done. */
static double issue(exec_state *state, const dsr_schedule *schedule, const dsr_dma_step *step,
                    int32_t first, int32_t count, double ready_ns, dsr_exec_layer *layer) {
  if (count == 0)
    return ready_ns;
  double start_ns = ready_ns > state->dma_free_ns ? ready_ns : state->dma_free_ns;
  int64_t start = (int64_t)ceil(start_ns / state->tck_ns - 1e-9);
  int64_t end = start;
  for (int32_t d = first; d < first + count; d++) {
    const dsr_dma_descriptor *desc = step_descriptor(schedule, step, d);
    int32_t is_write = desc->direction == DSR_DMA_STORE;
    int64_t done = dsr_dram_access_2d(state->dram, start, desc->dram_address, desc->row_bytes,
                                      desc->row_count, desc->stride_bytes, is_write);
    if (done > end)
      end = done;
    int64_t bytes = (int64_t)desc->row_bytes * desc->row_count;
    if (is_write)
      layer->store_bytes += bytes;
    else
      layer->load_bytes += bytes;
  }
  state->dram_cycles += end - start;
  double end_ns = (double)end * state->tck_ns;
  state->dma_free_ns = end_ns;
  return end_ns;
}

static void counts_diff(const dsr_dram_counts *after, const dsr_dram_counts *before,
                        dsr_dram_counts *out) {
  out->read_bytes = after->read_bytes - before->read_bytes;
  out->write_bytes = after->write_bytes - before->write_bytes;
  out->read_bursts = after->read_bursts - before->read_bursts;
  out->write_bursts = after->write_bursts - before->write_bursts;
  out->row_hits = after->row_hits - before->row_hits;
  out->row_misses = after->row_misses - before->row_misses;
  out->row_conflicts = after->row_conflicts - before->row_conflicts;
  out->requests = after->requests - before->requests;
}

static void counts_add(dsr_dram_counts *sum, const dsr_dram_counts *part) {
  sum->read_bytes += part->read_bytes;
  sum->write_bytes += part->write_bytes;
  sum->read_bursts += part->read_bursts;
  sum->write_bursts += part->write_bursts;
  sum->row_hits += part->row_hits;
  sum->row_misses += part->row_misses;
  sum->row_conflicts += part->row_conflicts;
  sum->requests += part->requests;
}

static int64_t ns_to_cycles(double ns, double clock_mhz) {
  return (int64_t)ceil(ns * clock_mhz / 1000.0 - 1e-6);
}

/* Runs steps first..end-1, all of one layer, from start_ns; returns the time it ends. */
static double run_layer(exec_state *state, const dsr_schedule *schedule, int32_t first,
                        int32_t end, const dsr_exec_config *config, double start_ns,
                        dsr_exec_layer *layer) {
  double clock_mhz = config->clock_mhz;
  double compute_free_ns = start_ns;
  double previous_compute_ns = start_ns;
  state->dma_free_ns = start_ns;
  state->dram_cycles = 0;
  dsr_dram_precharge_all(state->dram);
  dsr_dram_counts before = state->dram->counts;
  int32_t previous_slot = -1;

  for (int32_t s = first; s < end; s++) {
    const dsr_dma_step *step = &schedule->steps[s];
    int32_t slot = feature_slot(schedule, step);
    int double_buffered = s > first && slot >= 0 && previous_slot >= 0 && slot != previous_slot;
    if (s > first && !double_buffered) {
      const dsr_dma_step *prev = &schedule->steps[s - 1];
      issue(state, schedule, prev, prev->load_count, prev->store_count, previous_compute_ns,
            layer);
    }
    double loaded_ns = issue(state, schedule, step, 0, step->load_count, start_ns, layer);
    int64_t compute_cycles = config->compute != NULL ? config->compute(config->compute_user, step)
                                                     : step->compute_cycles;
    if (compute_cycles < 0)
      compute_cycles = 0;
    layer->compute_cycles += compute_cycles;
    double compute_start_ns = loaded_ns > compute_free_ns ? loaded_ns : compute_free_ns;
    double compute_done_ns = compute_start_ns + (double)compute_cycles * 1000.0 / clock_mhz;
    if (s > first && double_buffered) {
      const dsr_dma_step *prev = &schedule->steps[s - 1];
      issue(state, schedule, prev, prev->load_count, prev->store_count, previous_compute_ns,
            layer);
    }
    compute_free_ns = compute_done_ns;
    previous_compute_ns = compute_done_ns;
    previous_slot = slot;
  }
  const dsr_dma_step *last = &schedule->steps[end - 1];
  double done_ns = issue(state, schedule, last, last->load_count, last->store_count,
                         previous_compute_ns, layer);
  if (done_ns < compute_free_ns)
    done_ns = compute_free_ns;

  counts_diff(&state->dram->counts, &before, &layer->dram);
  layer->step_count = end - first;
  layer->dram_cycles = state->dram_cycles;
  layer->dma_cycles = ns_to_cycles((double)state->dram_cycles * state->tck_ns, clock_mhz);
  layer->cycles = ns_to_cycles(done_ns - start_ns, clock_mhz);
  layer->compute_bound = layer->compute_cycles >= layer->dma_cycles;
  return done_ns;
}

/* Steps of one unit: the same deformable layer, or the same dense node. */
static int same_unit(const dsr_dma_step *a, const dsr_dma_step *b) {
  if (a->layer >= 0 || b->layer >= 0)
    return a->layer == b->layer;
  return a->node == b->node;
}

/* Adds unit's figures to sum and recomputes its bound. */
static void exec_add(dsr_exec_layer *sum, const dsr_exec_layer *unit) {
  sum->step_count += unit->step_count;
  sum->load_bytes += unit->load_bytes;
  sum->store_bytes += unit->store_bytes;
  counts_add(&sum->dram, &unit->dram);
  sum->dram_cycles += unit->dram_cycles;
  sum->dma_cycles += unit->dma_cycles;
  sum->compute_cycles += unit->compute_cycles;
  sum->cycles += unit->cycles;
  sum->compute_bound = sum->compute_cycles >= sum->dma_cycles;
}

void dsr_exec_run(const dsr_schedule *schedule, dsr_dram *dram, const dsr_exec_config *config,
                  dsr_exec_layer *layers, int32_t layer_capacity, dsr_exec_layer *total) {
  dsr_dram_reset(dram);
  for (int32_t l = 0; l < layer_capacity; l++) {
    memset(&layers[l], 0, sizeof layers[l]);
    layers[l].layer = l;
  }
  memset(total, 0, sizeof *total);
  total->layer = -1;

  for (int32_t n = 0; config->nodes != NULL && n < config->node_capacity; n++) {
    memset(&config->nodes[n], 0, sizeof config->nodes[n]);
    config->nodes[n].layer = n;
  }

  exec_state state;
  memset(&state, 0, sizeof state);
  state.dram = dram;
  state.tck_ns = dram->config.tck_ns;
  double now_ns = 0.0;
  int32_t s = 0;
  while (s < schedule->step_count) {
    const dsr_dma_step *first = &schedule->steps[s];
    int32_t end = s + 1;
    while (end < schedule->step_count && same_unit(first, &schedule->steps[end]))
      end++;
    dsr_exec_layer unit;
    memset(&unit, 0, sizeof unit);
    /* Units run one after another: each reads what the ones before it wrote. */
    now_ns = run_layer(&state, schedule, s, end, config, now_ns, &unit);
    if (first->layer >= 0) {
      unit.layer = first->layer;
      exec_add(&layers[first->layer], &unit);
    }
    if (config->nodes != NULL && first->node >= 0 && first->node < config->node_capacity)
      exec_add(&config->nodes[first->node], &unit);
    exec_add(total, &unit);
    s = end;
  }
}
