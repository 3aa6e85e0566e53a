/*
 * DMA schedule generator: turns a model, a slice configuration per deformable layer and an
 * accelerator description into the transfers of runtime/dsr_schedule.h.
 *
 * dsn_schedule_build_model schedules every layer: dense layers tile by tile as
 * nas/dsn_dense.h plans them, deformable layers patch by patch as below.
 * dsn_schedule_build schedules the deformable layers only.
 *
 * Per deformable layer (node order), one step per patch (row-major). The layer's first step
 * starts with one load per parameter tensor (dsr_deform_param order, each tensor one run,
 * laid out from the layer's weight base at burst-aligned offsets, into the weight buffer at
 * consecutive offsets); then, in every step, the 2-D load of the extended patch:
 *   row_bytes = ext_w * C * elem, row_count = ext_h, stride_bytes = W * C * elem,
 *   dram_address = input base + (ext_y0 * W + ext_x0) * C * elem,
 * into slot patch % 2 of the feature buffer (slot 0 only when the layer has one patch), bank
 * patch % feature_banks; and the 2-D store of the core patch from the same slot and bank to
 * output base + (core_y0 * W + core_x0) * C * elem. The core output is written over the x
 * region of the slot once sampling is done, so chip offsets are 0 within the slot.
 *
 * Running the descriptors through the executor gives exactly the oracle's sliced figures.
 */
#ifndef DSN_SCHEDULE_H
#define DSN_SCHEDULE_H

#include <stdint.h>

#include "common/ds_status.h"
#include "nas/dsn_layer.h"
#include "nas/dsn_oracle.h"
#include "nas/dsn_preset.h"
#include "runtime/dsr_model.h"
#include "runtime/dsr_schedule.h"

/* DRAM base addresses of one deformable layer's input map, output map and weights. */
typedef struct dsn_layer_addresses {
  uint64_t input;
  uint64_t output;
  uint64_t weights;
} dsn_layer_addresses;

/*
 * Builds the schedule of every deformable layer of model. slices has one configuration per
 * deformable layer (NULL: each layer's own); addresses has one entry per deformable layer.
 * On success out owns its arrays (dsn_schedule_free). Errors: DS_ERR_SLICE_CONFIG for a
 * configuration that does not fit its layer, DS_ERR_INVALID_ARGUMENT for a transfer field
 * that overflows 32 bits, DS_ERR_OUT_OF_MEMORY.
 */
ds_status dsn_schedule_build(const dsr_model *model, const dsr_slice *slices,
                             const dsn_preset *preset, const dsn_layer_addresses *addresses,
                             dsr_schedule *out, ds_error *err);

void dsn_schedule_free(dsr_schedule *schedule);

/*
 * Lays out the DRAM of every deformable layer from base_address: the layer's input map, its
 * output map, then its weights (each tensor burst-aligned, as dsn_schedule_build reads them),
 * each region starting on a boundary of the DRAM bytes below the row field
 * (dsr_dram_stripe_bytes), so that each layer's row hits and misses are those the oracle
 * prices. addresses receives one entry per
 * deformable layer and *end_address the first byte after the last region. This is one valid
 * layout, for tools and tests that have no memory map of their own.
 */
ds_status dsn_schedule_layout(const dsr_model *model, const dsn_preset *preset,
                              uint64_t base_address, dsn_layer_addresses *addresses,
                              uint64_t *end_address, ds_error *err);

/*
 * Traffic of the descriptors of schedule that belong to deformable layer layer, or of all
 * layers when layer is -1, as the executor (runtime/dsr_exec.h) counts it on preset's
 * modelled DRAM; time_ns is filled with the oracle's time rule. All zero when the schedule
 * does not pass dsr_exec_check, such as an address beyond the modelled DRAM.
 */
void dsn_schedule_traffic(const dsr_schedule *schedule, const dsn_preset *preset,
                          int32_t layer, dsn_traffic *traffic);

/* Sums the traffic of the steps of model node node, with the oracle's transfer rule, and
 * their compute cycles; time_ns is filled. */
void dsn_schedule_node_traffic(const dsr_schedule *schedule, const dsn_preset *preset,
                               int32_t node, dsn_traffic *traffic, int64_t *compute_cycles);

/* DRAM addresses of every tensor and of each node's weights. */
typedef struct dsn_memory_map {
  int32_t tensor_count;
  uint64_t *tensor_addresses; /* per tensor; a reshape output shares its input's address,
                                 constants have 0 (they live in their node's weights) */
  int32_t node_count;
  uint64_t *weight_addresses; /* per node: its constants, packed; 0 when it has none */
  uint64_t end_address;       /* first byte after the last region */
} dsn_memory_map;

/*
 * Lays out the DRAM of model from base_address: the model input, then per node (in node
 * order) its output tensor and its weights, each region starting on an align_bytes boundary
 * (a power of two, such as dram.row_bytes or 4096). layers is dsn_layers_from_model's list
 * of model, whose weight sizes it uses. On success map owns two arrays (dsn_memory_map_free).
 */
ds_status dsn_memory_map_build(const dsr_model *model, const dsn_layer_list *layers,
                               const dsn_preset *preset, uint64_t base_address,
                               uint64_t align_bytes, dsn_memory_map *map, ds_error *err);

void dsn_memory_map_free(dsn_memory_map *map);

/*
 * Builds the schedule of every layer of model: layers is dsn_layers_from_model's list,
 * slices one configuration per deformable layer (NULL: each layer's own), map from
 * dsn_memory_map_build. On success out owns its arrays (dsn_schedule_free). Errors as
 * dsn_schedule_build, plus DS_ERR_INVALID_ARGUMENT when the schedule would exceed the
 * artifact's limits (16,777,216 steps or 67,108,864 descriptors).
 */
ds_status dsn_schedule_build_model(const dsr_model *model, const dsn_layer_list *layers,
                                   const dsr_slice *slices, const dsn_preset *preset,
                                   const dsn_memory_map *map, dsr_schedule *out,
                                   ds_error *err);

#endif
