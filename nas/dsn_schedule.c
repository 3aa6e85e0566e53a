#include "dsn_schedule.h"

#include <stdlib.h>
#include <string.h>

#include "nas/dsn_dense.h"
#include "nas/dsn_oracle_walk.h"
#include "nas/dsn_schedule_internal.h"
#include "runtime/dsr_slice.h"

ds_status dsn_builder_reserve(dsn_schedule_builder *b, int32_t steps, int32_t descriptors,
                              ds_error *err) {
  dsr_schedule *s = b->out;
  if (s->step_count + steps > b->step_capacity) {
    int32_t capacity = (s->step_count + steps) * 2;
    dsr_dma_step *grown = realloc(s->steps, (size_t)capacity * sizeof *grown);
    if (grown == NULL)
      return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot grow the schedule to %d steps",
                     capacity);
    s->steps = grown;
    b->step_capacity = capacity;
  }
  if (s->descriptor_count + descriptors > b->descriptor_capacity) {
    int32_t capacity = (s->descriptor_count + descriptors) * 2;
    dsr_dma_descriptor *grown = realloc(s->descriptors, (size_t)capacity * sizeof *grown);
    if (grown == NULL)
      return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot grow the schedule to %d descriptors",
                     capacity);
    s->descriptors = grown;
    b->descriptor_capacity = capacity;
  }
  return DS_OK;
}

ds_status dsn_builder_check_u32(int64_t value, const char *what, int32_t node,
                                ds_error *err) {
  if (value < 0 || value > (int64_t)UINT32_MAX)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "node %d: %s is %lld, outside the 32-bit field of a DMA descriptor", node,
                   what, (long long)value);
  return DS_OK;
}

static void add_descriptor(dsn_schedule_builder *b, const dsr_dma_descriptor *d) {
  b->out->descriptors[b->out->descriptor_count++] = *d;
}

static ds_status add_weight_loads(dsn_schedule_builder *b, const dsr_deform_attn *layer,
                                  int32_t node, const dsn_preset *preset,
                                  uint64_t weight_base, ds_error *err) {
  int64_t sizes[DSR_DEFORM_PARAM_COUNT];
  dsn_layer_weight_sizes(layer, preset, sizes);
  int64_t burst_bytes = dsn_preset_burst_bytes(preset);
  int64_t dram_offset = 0;
  int64_t chip_offset = 0;
  for (int32_t i = 0; i < DSR_DEFORM_PARAM_COUNT; i++) {
    if (sizes[i] == 0)
      continue;
    DS_TRY(dsn_builder_check_u32(sizes[i], "a weight tensor's bytes", node, err));
    DS_TRY(dsn_builder_check_u32(chip_offset, "the weight buffer offset", node, err));
    dsr_dma_descriptor d;
    memset(&d, 0, sizeof d);
    d.dram_address = weight_base + (uint64_t)dram_offset;
    d.row_bytes = (uint32_t)sizes[i];
    d.row_count = 1;
    d.stride_bytes = (uint32_t)sizes[i];
    d.chip_offset_bytes = (uint32_t)chip_offset;
    d.direction = DSR_DMA_LOAD;
    d.buffer = DSR_BUFFER_WEIGHTS;
    add_descriptor(b, &d);
    b->out->steps[b->out->step_count].load_count++;
    dram_offset += (sizes[i] + burst_bytes - 1) / burst_bytes * burst_bytes;
    chip_offset += sizes[i];
  }
  return DS_OK;
}

ds_status dsn_builder_add_deform(dsn_schedule_builder *b, const dsr_deform_attn *layer,
                                 int32_t node, int32_t layer_index, dsr_slice slice,
                                 const dsn_preset *preset,
                                 const dsn_layer_addresses *addresses, ds_error *err) {
  int64_t e = dsn_preset_element_bytes(preset);
  int64_t c = layer->channels;
  int64_t stride_bytes = (int64_t)layer->width * c * e;
  int32_t patch_count = slice.rows * slice.cols;
  DS_TRY(dsn_builder_check_u32(stride_bytes, "the map row stride in bytes", node, err));

  for (int32_t patch = 0; patch < patch_count; patch++) {
    DS_TRY(dsn_builder_reserve(b, 1, DSR_DEFORM_PARAM_COUNT + 2, err));
    dsr_dma_step *step = &b->out->steps[b->out->step_count];
    memset(step, 0, sizeof *step);
    step->node = node;
    step->layer = layer_index;
    step->patch = patch;
    step->first_descriptor = b->out->descriptor_count;
    if (patch == 0)
      DS_TRY(add_weight_loads(b, layer, node, preset, addresses->weights, err));

    dsr_patch p;
    dsr_slice_patch(layer->height, layer->width, slice, patch / slice.cols,
                    patch % slice.cols, &p);
    step->compute_cycles = dsn_deform_patch_cycles(
        layer, p.ext_y1 - p.ext_y0, p.ext_x1 - p.ext_x0,
        (int64_t)(p.core_y1 - p.core_y0) * (p.core_x1 - p.core_x0), preset);
    uint8_t slot = (uint8_t)(patch_count > 1 ? patch % 2 : 0);
    uint8_t bank = (uint8_t)(patch % preset->feature_banks);

    dsr_dma_descriptor load;
    memset(&load, 0, sizeof load);
    int64_t load_row_bytes = (int64_t)(p.ext_x1 - p.ext_x0) * c * e;
    DS_TRY(dsn_builder_check_u32(load_row_bytes, "the extended patch row in bytes", node,
                                 err));
    load.dram_address =
        addresses->input + (uint64_t)(((int64_t)p.ext_y0 * layer->width + p.ext_x0) * c * e);
    load.row_bytes = (uint32_t)load_row_bytes;
    load.row_count = (uint32_t)(p.ext_y1 - p.ext_y0);
    load.stride_bytes = (uint32_t)stride_bytes;
    load.direction = DSR_DMA_LOAD;
    load.buffer = DSR_BUFFER_FEATURE_IN;
    load.slot = slot;
    load.bank = bank;
    add_descriptor(b, &load);
    step->load_count++;

    dsr_dma_descriptor store = load;
    store.dram_address = addresses->output +
                         (uint64_t)(((int64_t)p.core_y0 * layer->width + p.core_x0) * c * e);
    store.row_bytes = (uint32_t)((int64_t)(p.core_x1 - p.core_x0) * c * e);
    store.row_count = (uint32_t)(p.core_y1 - p.core_y0);
    store.direction = DSR_DMA_STORE;
    store.buffer = DSR_BUFFER_FEATURE_OUT;
    add_descriptor(b, &store);
    step->store_count++;

    b->out->step_count++;
  }
  return DS_OK;
}

ds_status dsn_schedule_build(const dsr_model *model, const dsr_slice *slices,
                             const dsn_preset *preset, const dsn_layer_addresses *addresses,
                             dsr_schedule *out, ds_error *err) {
  if (model == NULL || preset == NULL || addresses == NULL || out == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_schedule_build: NULL argument");
  memset(out, 0, sizeof *out);
  dsn_schedule_builder builder = {out, 0, 0};

  int32_t layer_index = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op != DSR_OP_DEFORM_ATTN)
      continue;
    if (node->deform == NULL) {
      dsn_schedule_free(out);
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "node %d (%s) is DEFORM_ATTN without layer parameters", i, node->name);
    }
    dsr_slice slice = slices != NULL ? slices[layer_index] : node->deform->slice;

    /* The oracle validates the slice against the layer with the same rules. */
    dsn_layer_cost cost;
    ds_status status = dsn_oracle_layer(node->deform, slice, preset, &cost, err);
    if (status == DS_OK)
      status = dsn_builder_add_deform(&builder, node->deform, i, layer_index, slice, preset,
                                      &addresses[layer_index], err);
    if (status != DS_OK) {
      dsn_schedule_free(out);
      return ds_fail(err, status, "DMA schedule of deformable layer %d (node %s)",
                     layer_index, node->name);
    }
    layer_index++;
  }
  return DS_OK;
}

static uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

ds_status dsn_schedule_layout(const dsr_model *model, const dsn_preset *preset,
                              uint64_t base_address, dsn_layer_addresses *addresses,
                              uint64_t *end_address, ds_error *err) {
  if (model == NULL || preset == NULL || addresses == NULL || end_address == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_schedule_layout: NULL argument");
  uint64_t row = dsn_layout_alignment(preset);
  uint64_t burst = (uint64_t)dsn_preset_burst_bytes(preset);
  uint64_t elem = (uint64_t)dsn_preset_element_bytes(preset);
  uint64_t next = align_up(base_address, row);
  int32_t layer_index = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op != DSR_OP_DEFORM_ATTN)
      continue;
    const dsr_deform_attn *d = node->deform;
    if (d == NULL || d->channels <= 0 || d->height <= 0 || d->width <= 0)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "node %d (%s) is DEFORM_ATTN without a valid map geometry", i,
                     node->name);
    uint64_t map_bytes = (uint64_t)d->height * (uint64_t)d->width * (uint64_t)d->channels * elem;
    int64_t sizes[DSR_DEFORM_PARAM_COUNT];
    dsn_layer_weight_sizes(d, preset, sizes);
    uint64_t weight_bytes = 0;
    for (int32_t p = 0; p < DSR_DEFORM_PARAM_COUNT; p++)
      weight_bytes += align_up((uint64_t)sizes[p], burst);

    addresses[layer_index].input = next;
    next = align_up(next + map_bytes, row);
    addresses[layer_index].output = next;
    next = align_up(next + map_bytes, row);
    addresses[layer_index].weights = next;
    next = align_up(next + weight_bytes, row);
    layer_index++;
  }
  *end_address = next;
  return DS_OK;
}

void dsn_schedule_free(dsr_schedule *schedule) {
  if (schedule == NULL)
    return;
  free(schedule->steps);
  free(schedule->descriptors);
  memset(schedule, 0, sizeof *schedule);
}

void dsn_schedule_traffic(const dsr_schedule *schedule, const dsn_preset *preset,
                          int32_t layer, dsn_traffic *traffic) {
  dsn_schedule_walk(schedule, preset, layer, traffic);
}
