/*
 * The oracle's sliced and lower-bound traffic: the layer's transfers walked through the
 * modelled DRAM (runtime/dsr_dram.h) in the executor's issue order, so that bursts and row
 * misses are those the executor counts for the same schedule. Each call walks one row segment
 * of DRAM at a time, so the cost grows with the DRAM rows a layer touches, not its bursts.
 */
#include "dsn_oracle_walk.h"

#include <stdlib.h>
#include <string.h>

#include "nas/dsn_measure.h"
#include "runtime/dsr_slice.h"

static uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

uint64_t dsn_layout_alignment(const dsn_preset *preset) {
  dsr_dram_config config;
  dsn_preset_dram_config(preset, &config);
  if (dsr_dram_config_check(&config, NULL) != DS_OK)
    return (uint64_t)(preset->dram.row_bytes > 0 ? preset->dram.row_bytes : 1);
  uint64_t stripe = dsr_dram_stripe_bytes(&config);
  return stripe > 0 ? stripe : 1;
}

void dsn_oracle_canonical_addresses(const dsr_deform_attn *layer, const dsn_preset *preset,
                                    dsn_layer_addresses *addresses) {
  uint64_t alignment = dsn_layout_alignment(preset);
  uint64_t map_bytes = (uint64_t)layer->height * (uint64_t)layer->width *
                       (uint64_t)layer->channels * (uint64_t)dsn_preset_element_bytes(preset);
  addresses->input = 0;
  addresses->output = align_up(map_bytes, alignment);
  addresses->weights = addresses->output + align_up(map_bytes, alignment);
}

ds_status dsn_dram_open(const dsn_preset *preset, dsr_dram *dram, void **state, ds_error *err) {
  dsr_dram_config config;
  dsn_preset_dram_config(preset, &config);
  DS_TRY(dsr_dram_config_check(&config, err));
  size_t bytes = dsr_dram_state_bytes(&config);
  *state = malloc(bytes);
  if (*state == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes of DRAM state", bytes);
  ds_status status = dsr_dram_init(dram, &config, *state, bytes, err);
  if (status != DS_OK) {
    free(*state);
    *state = NULL;
  }
  return status;
}

void dsn_walk_weights(dsr_dram *dram, const dsr_deform_attn *layer, const dsn_preset *preset,
                         uint64_t base) {
  int64_t sizes[DSR_DEFORM_PARAM_COUNT];
  dsn_layer_weight_sizes(layer, preset, sizes);
  uint64_t burst = (uint64_t)dsn_preset_burst_bytes(preset);
  uint64_t offset = 0;
  for (int32_t i = 0; i < DSR_DEFORM_PARAM_COUNT; i++) {
    if (sizes[i] <= 0)
      continue;
    dsr_dram_access(dram, 0, base + offset, (uint64_t)sizes[i], 0);
    offset += align_up((uint64_t)sizes[i], burst);
  }
}

static void walk_patch(dsr_dram *dram, const dsr_deform_attn *layer, dsr_slice slice,
                       int32_t patch, const dsn_layer_addresses *addresses, uint64_t elem,
                       int32_t is_store) {
  dsr_patch p;
  dsr_slice_patch(layer->height, layer->width, slice, patch / slice.cols, patch % slice.cols, &p);
  uint64_t c = (uint64_t)layer->channels;
  uint64_t stride = (uint64_t)layer->width * c * elem;
  if (!is_store) {
    uint64_t address = addresses->input +
                       ((uint64_t)p.ext_y0 * (uint64_t)layer->width + (uint64_t)p.ext_x0) * c * elem;
    dsr_dram_access_2d(dram, 0, address, (uint64_t)(p.ext_x1 - p.ext_x0) * c * elem,
                       (uint64_t)(p.ext_y1 - p.ext_y0), stride, 0);
  } else {
    uint64_t address = addresses->output + ((uint64_t)p.core_y0 * (uint64_t)layer->width +
                                            (uint64_t)p.core_x0) * c * elem;
    dsr_dram_access_2d(dram, 0, address, (uint64_t)(p.core_x1 - p.core_x0) * c * elem,
                       (uint64_t)(p.core_y1 - p.core_y0), stride, 1);
  }
}

ds_status dsn_oracle_walk(const dsr_deform_attn *layer, dsr_slice slice, const dsn_preset *preset,
                          const dsn_layer_addresses *addresses, dsn_traffic *add_to,
                          ds_error *err) {
  dsr_dram dram;
  void *state = NULL;
  DS_TRY(dsn_dram_open(preset, &dram, &state, err));
  uint64_t elem = (uint64_t)dsn_preset_element_bytes(preset);
  uint64_t map_bytes = (uint64_t)layer->height * (uint64_t)layer->width *
                       (uint64_t)layer->channels * elem;
  uint64_t end = addresses->weights + (uint64_t)dsn_deform_weight_bytes(layer, preset) +
                 (uint64_t)DSR_DEFORM_PARAM_COUNT * (uint64_t)dsn_preset_burst_bytes(preset);
  if (addresses->input + map_bytes > end)
    end = addresses->input + map_bytes;
  if (addresses->output + map_bytes > end)
    end = addresses->output + map_bytes;
  uint64_t capacity = dsr_dram_capacity_bytes(&dram.config);
  if (end > capacity) {
    free(state);
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "the layer's input, output and weights reach byte %llu, beyond the %llu "
                   "bytes of the modelled DRAM; give the preset more rows, ranks or channels",
                   (unsigned long long)end, (unsigned long long)capacity);
  }

  dsn_walk_weights(&dram, layer, preset, addresses->weights);
  /* The executor's order: the load of patch i + 1 goes before the store of patch i. */
  int32_t patch_count = slice.rows * slice.cols;
  for (int32_t patch = 0; patch < patch_count; patch++) {
    walk_patch(&dram, layer, slice, patch, addresses, elem, 0);
    if (patch > 0)
      walk_patch(&dram, layer, slice, patch - 1, addresses, elem, 1);
  }
  walk_patch(&dram, layer, slice, patch_count - 1, addresses, elem, 1);

  const dsr_dram_counts *counts = &dram.counts;
  add_to->bytes += counts->read_bytes + counts->write_bytes;
  add_to->bursts += counts->read_bursts + counts->write_bursts;
  add_to->row_misses += counts->row_misses;
  free(state);
  return DS_OK;
}

void dsn_traffic_from_exec(const dsr_exec_layer *layer, const dsn_preset *preset,
                           dsn_traffic *traffic) {
  memset(traffic, 0, sizeof *traffic);
  traffic->bytes = layer->dram.read_bytes + layer->dram.write_bytes;
  traffic->bursts = layer->dram.read_bursts + layer->dram.write_bursts;
  traffic->row_misses = layer->dram.row_misses;
  dsn_traffic_finish(traffic, preset);
}

void dsn_schedule_walk(const dsr_schedule *schedule, const dsn_preset *preset, int32_t layer,
                       dsn_traffic *traffic) {
  memset(traffic, 0, sizeof *traffic);
  int32_t layer_count = 0;
  for (int32_t s = 0; s < schedule->step_count; s++) {
    if (schedule->steps[s].layer + 1 > layer_count)
      layer_count = schedule->steps[s].layer + 1;
  }
  if (layer >= layer_count)
    return;
  if (layer_count == 0)
    layer_count = 1; /* dense steps only: the total still counts */
  dsr_dram dram;
  void *state = NULL;
  dsr_exec_layer *layers = calloc((size_t)layer_count, sizeof *layers);
  if (layers == NULL || dsn_dram_open(preset, &dram, &state, NULL) != DS_OK ||
      dsr_exec_check(schedule, &dram, layer_count, NULL) != DS_OK) {
    free(layers);
    free(state);
    return;
  }
  dsr_exec_config config = {1000.0, NULL, NULL, NULL, 0};
  dsr_exec_layer total;
  dsr_exec_run(schedule, &dram, &config, layers, layer_count, &total);
  dsn_traffic_from_exec(layer >= 0 ? &layers[layer] : &total, preset, traffic);
  free(layers);
  free(state);
}
