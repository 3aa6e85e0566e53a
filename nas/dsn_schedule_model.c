/* DMA schedule of a whole model: DRAM layout and the steps of the dense layers. */
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "nas/dsn_dense.h"
#include "nas/dsn_schedule.h"
#include "nas/dsn_schedule_internal.h"

/* Artifact limits (docs/format.md): a larger schedule could not be stored. */
#define SCHEDULE_MAX_STEPS 16777216
#define SCHEDULE_MAX_DESCRIPTORS 67108864

static uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

/* Bytes the deformable layer's weights take in DRAM: each tensor burst-aligned, as the
 * schedule reads them. */
static uint64_t deform_weight_region(const dsr_deform_attn *layer, const dsn_preset *preset) {
  int64_t sizes[DSR_DEFORM_PARAM_COUNT];
  dsn_layer_weight_sizes(layer, preset, sizes);
  uint64_t burst = (uint64_t)dsn_preset_burst_bytes(preset);
  uint64_t total = 0;
  for (int32_t i = 0; i < DSR_DEFORM_PARAM_COUNT; i++)
    total += align_up((uint64_t)sizes[i], burst);
  return total;
}

static uint64_t tensor_bytes(const dsr_tensor *t, const dsn_preset *preset) {
  return (uint64_t)dsr_tensor_elements(t) * (uint64_t)dsn_preset_element_bytes(preset);
}

void dsn_memory_map_free(dsn_memory_map *map) {
  if (map == NULL)
    return;
  free(map->tensor_addresses);
  free(map->weight_addresses);
  memset(map, 0, sizeof *map);
}

ds_status dsn_memory_map_build(const dsr_model *model, const dsn_layer_list *layers,
                               const dsn_preset *preset, uint64_t base_address,
                               uint64_t align_bytes, dsn_memory_map *map, ds_error *err) {
  if (model == NULL || layers == NULL || preset == NULL || map == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_memory_map_build: NULL argument");
  if (align_bytes == 0 || (align_bytes & (align_bytes - 1)) != 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "DRAM alignment %llu is not a power of two; use dram.row_bytes or 4096",
                   (unsigned long long)align_bytes);
  memset(map, 0, sizeof *map);
  map->tensor_count = model->tensor_count;
  map->node_count = model->node_count;
  map->tensor_addresses = calloc((size_t)(model->tensor_count + 1), sizeof(uint64_t));
  map->weight_addresses = calloc((size_t)(model->node_count + 1), sizeof(uint64_t));
  if (map->tensor_addresses == NULL || map->weight_addresses == NULL) {
    dsn_memory_map_free(map);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the DRAM map of %d tensors",
                   model->tensor_count);
  }

  /* Weight bytes per node, from the layer list (reshapes have none). */
  int64_t *weights = calloc((size_t)(model->node_count + 1), sizeof *weights);
  if (weights == NULL) {
    dsn_memory_map_free(map);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the weight sizes");
  }
  for (int32_t i = 0; i < layers->count; i++) {
    const dsn_layer *layer = &layers->layers[i];
    if (layer->node < 0 || layer->node >= model->node_count)
      continue;
    weights[layer->node] = layer->kind == DSN_LAYER_DEFORM
                               ? (int64_t)deform_weight_region(&layer->deform, preset)
                               : layer->weight_bytes;
  }

  uint64_t next = align_up(base_address, align_bytes);
  if (model->input >= 0 && model->input < model->tensor_count) {
    map->tensor_addresses[model->input] = next;
    next = align_up(next + tensor_bytes(&model->tensors[model->input], preset), align_bytes);
  }
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->output < 0 || node->output >= model->tensor_count)
      continue;
    if (node->op == DSR_OP_RESHAPE && node->input_count > 0 && node->inputs[0] >= 0 &&
        node->inputs[0] < model->tensor_count) {
      map->tensor_addresses[node->output] = map->tensor_addresses[node->inputs[0]];
      continue;
    }
    map->tensor_addresses[node->output] = next;
    next = align_up(next + tensor_bytes(&model->tensors[node->output], preset), align_bytes);
    if (weights[i] > 0) {
      map->weight_addresses[i] = next;
      next = align_up(next + (uint64_t)weights[i], align_bytes);
    }
  }
  map->end_address = next;
  free(weights);
  return DS_OK;
}

static uint64_t role_address(const dsn_layer *layer, const dsn_memory_map *map, int32_t role) {
  int32_t tensor = -1;
  switch (role) {
  case DSN_ROLE_INPUT: tensor = layer->input_tensor; break;
  case DSN_ROLE_INPUT2: tensor = layer->input2_tensor; break;
  case DSN_ROLE_OPERAND: tensor = layer->operand_tensor; break;
  case DSN_ROLE_OUTPUT: tensor = layer->output_tensor; break;
  default: return map->weight_addresses[layer->node];
  }
  return tensor >= 0 && tensor < map->tensor_count ? map->tensor_addresses[tensor] : 0;
}

static ds_status add_dense(dsn_schedule_builder *b, const dsn_layer *layer,
                           const dsn_preset *preset, const dsn_memory_map *map,
                           ds_error *err) {
  dsn_dense_plan plan;
  DS_TRY(dsn_dense_plan_make(layer, preset, &plan, err));
  if (plan.steps > SCHEDULE_MAX_STEPS - b->out->step_count)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "node %d (%s) needs %lld DMA steps, past the artifact's limit of %d",
                   layer->node, layer->name, (long long)plan.steps, SCHEDULE_MAX_STEPS);

  int64_t index = 0;
  for (int64_t g = 0; g < layer->group_count; g++) {
    for (int64_t chunk = 0; chunk < plan.weight_chunks; chunk++) {
      for (int64_t tile = 0; tile < plan.tiles; tile++, index++) {
        dsn_tile t;
        dsn_dense_tile_transfers(layer, preset, &plan, g, chunk, tile, &t);
        if (b->out->descriptor_count > SCHEDULE_MAX_DESCRIPTORS - t.transfer_count)
          return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                         "node %d (%s): the schedule passes the artifact's limit of %d "
                         "descriptors",
                         layer->node, layer->name, SCHEDULE_MAX_DESCRIPTORS);
        DS_TRY(dsn_builder_reserve(b, 1, t.transfer_count, err));
        dsr_dma_step *step = &b->out->steps[b->out->step_count];
        memset(step, 0, sizeof *step);
        step->node = layer->node;
        step->layer = -1;
        step->patch = (int32_t)index;
        step->first_descriptor = b->out->descriptor_count;
        step->load_count = t.load_count;
        step->store_count = t.transfer_count - t.load_count;
        step->compute_cycles = t.compute_cycles;
        for (int32_t i = 0; i < t.transfer_count; i++) {
          const dsn_transfer *x = &t.transfers[i];
          DS_TRY(dsn_builder_check_u32(x->row_bytes, "a row in bytes", layer->node, err));
          DS_TRY(dsn_builder_check_u32(x->row_count, "a row count", layer->node, err));
          DS_TRY(dsn_builder_check_u32(x->stride_bytes, "a stride in bytes", layer->node, err));
          DS_TRY(dsn_builder_check_u32(x->chip_offset_bytes, "an on-chip offset", layer->node,
                                       err));
          dsr_dma_descriptor d;
          memset(&d, 0, sizeof d);
          d.dram_address = role_address(layer, map, x->role) + (uint64_t)x->dram_offset_bytes;
          d.row_bytes = (uint32_t)x->row_bytes;
          d.row_count = (uint32_t)x->row_count;
          d.stride_bytes = (uint32_t)x->stride_bytes;
          d.chip_offset_bytes = (uint32_t)x->chip_offset_bytes;
          d.direction = x->direction;
          d.buffer = x->buffer;
          d.slot = x->slot;
          d.bank = x->bank;
          b->out->descriptors[b->out->descriptor_count++] = d;
        }
        b->out->step_count++;
      }
    }
  }
  return DS_OK;
}

ds_status dsn_schedule_build_model(const dsr_model *model, const dsn_layer_list *layers,
                                   const dsr_slice *slices, const dsn_preset *preset,
                                   const dsn_memory_map *map, dsr_schedule *out,
                                   ds_error *err) {
  if (model == NULL || layers == NULL || preset == NULL || map == NULL || out == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_schedule_build_model: NULL argument");
  memset(out, 0, sizeof *out);
  if (map->tensor_count != model->tensor_count || map->node_count != model->node_count)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "the DRAM map covers %d tensors and %d nodes but the model has %d and %d; "
                   "build the map from this model",
                   map->tensor_count, map->node_count, model->tensor_count, model->node_count);
  dsn_schedule_builder builder = {out, 0, 0};

  int32_t deform_index = 0;
  for (int32_t i = 0; i < layers->count; i++) {
    const dsn_layer *layer = &layers->layers[i];
    if (layer->node < 0 || layer->node >= model->node_count) {
      dsn_schedule_free(out);
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "layer %d (%s) names node %d, outside the model's %d nodes", i,
                     layer->name, layer->node, model->node_count);
    }
    ds_status status;
    if (layer->kind == DSN_LAYER_DEFORM) {
      const dsr_node *node = &model->nodes[layer->node];
      dsr_slice slice = slices != NULL ? slices[deform_index] : layer->deform.slice;
      dsn_layer_addresses addresses = {
          map->tensor_addresses[node->inputs[0]], map->tensor_addresses[node->output],
          map->weight_addresses[layer->node]};
      dsn_layer_cost cost;
      status = dsn_oracle_layer(&layer->deform, slice, preset, &cost, err);
      if (status == DS_OK)
        status = dsn_builder_add_deform(&builder, &layer->deform, layer->node, deform_index,
                                        slice, preset, &addresses, err);
      deform_index++;
    } else {
      status = add_dense(&builder, layer, preset, map, err);
    }
    if (status != DS_OK) {
      dsn_schedule_free(out);
      return ds_fail(err, status, "DMA schedule of node %d (%s)", layer->node, layer->name);
    }
  }
  return DS_OK;
}

void dsn_schedule_node_traffic(const dsr_schedule *schedule, const dsn_preset *preset,
                               int32_t node, dsn_traffic *traffic, int64_t *compute_cycles) {
  memset(traffic, 0, sizeof *traffic);
  int64_t cycles = 0;
  for (int32_t s = 0; s < schedule->step_count; s++) {
    const dsr_dma_step *step = &schedule->steps[s];
    if (step->node != node)
      continue;
    cycles += step->compute_cycles;
    int32_t count = step->load_count + step->store_count;
    for (int32_t d = 0; d < count; d++) {
      const dsr_dma_descriptor *desc = &schedule->descriptors[step->first_descriptor + d];
      dsn_transfer_cost(desc->row_bytes, desc->row_count, desc->stride_bytes, preset,
                        traffic);
    }
  }
  dsn_traffic_finish(traffic, preset);
  if (compute_cycles != NULL)
    *compute_cycles = cycles;
}
