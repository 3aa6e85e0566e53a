/*
 * Schedule executor: runs a dsr_schedule against the modelled DRAM (dsr_dram.h) and counts
 * bytes, bursts, row hits and misses, DMA and compute cycles per layer.
 *
 * Units. Consecutive steps of one deformable layer (step.layer >= 0) form one unit, and so do
 * consecutive steps of one dense node (step.layer == -1, grouped by step.node). Units run one
 * after another, since each reads what the ones before it wrote.
 *
 * Order. One DMA engine serves the transfers of a unit one after another; one compute engine
 * runs the steps. A unit starts with every DRAM bank precharged (a deformable layer's
 * neighbours in the network use the DRAM in between). Within a layer, a step is double buffered with the
 * step before it when their feature loads go to different slots. Its loads are then issued
 * before the previous step's stores, so the load of patch i + 1 overlaps the compute of
 * patch i. The DMA issue order of a layer is therefore, for steps 0..n-1:
 *   loads(0), loads(1), stores(0), loads(2), stores(1), ..., stores(n-1)
 * with double buffering, and loads(i), stores(i) in turn without it. The cost oracle walks
 * the same order.
 *
 * Timing, in accelerator cycles (clock_mhz): a load starts when the DMA engine is free and,
 * double buffered, when the stores of the step that last used its slot are done; a compute
 * step starts when its loads are done and the previous step has computed; a store starts when
 * its step has computed and the DMA engine is free. DRAM cycles become accelerator cycles
 * through tck_ns and clock_mhz, rounded up per transfer.
 *
 * No allocation, no OS calls: the caller gives the DRAM and the result arrays.
 */
#ifndef DSR_EXEC_H
#define DSR_EXEC_H

#include <stdint.h>

#include "../common/ds_status.h"
#include "dsr_dram.h"
#include "dsr_schedule.h"

/* Compute cycles of one step (MAC array and sampling lanes, stalls included), at the
 * accelerator clock. */
typedef int64_t (*dsr_exec_compute_fn)(void *user, const dsr_dma_step *step);

struct dsr_exec_layer;

typedef struct dsr_exec_config {
  double clock_mhz;            /* accelerator clock */
  dsr_exec_compute_fn compute; /* NULL: each step's own compute_cycles */
  void *compute_user;
  struct dsr_exec_layer *nodes; /* optional: node_capacity entries, filled per step.node */
  int32_t node_capacity;
} dsr_exec_config;

/* Figures of one deformable layer, one node, or the whole schedule. */
typedef struct dsr_exec_layer {
  int32_t layer;              /* deformable layer index, node index, or -1 for a total */
  int32_t step_count;
  int64_t load_bytes;
  int64_t store_bytes;
  dsr_dram_counts dram;     /* bytes, bursts, row hits and misses of this layer */
  int64_t dram_cycles;      /* DRAM clock cycles the DMA engine was busy */
  int64_t dma_cycles;       /* the same at the accelerator clock */
  int64_t compute_cycles;   /* sum over the steps */
  int64_t cycles;           /* first load to last store, overlap included */
  int32_t compute_bound;    /* 1 when compute_cycles >= dma_cycles */
} dsr_exec_layer;

/*
 * Checks schedule before a run: descriptors inside the array, steps of one deformable layer
 * contiguous, layer indices -1 (a dense step) or 0..layer_capacity-1, loads before stores in
 * a step, slots 0 or 1, row_count and row_bytes positive, a stride of at least a row, rows
 * inside the modelled DRAM. err names the step or descriptor.
 */
ds_status dsr_exec_check(const dsr_schedule *schedule, const dsr_dram *dram,
                         int32_t layer_capacity, ds_error *err);

/*
 * Runs schedule on dram (reset first), filling layers[0..layer_capacity-1] for the deformable
 * layers (entries without steps stay zero, with layer set), config->nodes when given (per
 * step.node; nodes outside node_capacity are left out) and *total (every step, dense ones
 * included). Call dsr_exec_check first: run assumes a schedule that passed it. A hook
 * installed on dram is called for every burst.
 */
void dsr_exec_run(const dsr_schedule *schedule, dsr_dram *dram, const dsr_exec_config *config,
                  dsr_exec_layer *layers, int32_t layer_capacity, dsr_exec_layer *total);

#endif
