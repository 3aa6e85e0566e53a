/*
 * Measured costs of the deformable layers: every dataflow run against the modelled DRAM of
 * runtime/dsr_dram.h and the on-chip memories of runtime/dsr_onchip.h, with the sampling
 * positions the model really produces.
 *
 * Strategies (docs/hardware-model.md, "Measured costs"):
 * - lower bound: the input map read once, the output written once, the weights read once.
 * - gather: the multi-pass dataflow: read x, write q, gather the four neighbour pixel vectors
 *   (Cg channels) of every sample of every group from x in DRAM on demand, each read rounded
 *   up to whole bursts, read q back, write the output; plus the weights.
 * - cache: the same passes, the neighbour reads going through an on-chip cache.
 * - whole map: one pass (the lower bound's traffic) with x, q and the k and v samples of the
 *   whole map on chip; buffer_bytes is what that needs, and fits says whether it fits.
 * - sliced: the DMA schedule of dsn_schedule_build, run by the executor (runtime/dsr_exec.h).
 *
 * DRAM addresses come from dsn_schedule_layout with base 0. Each layer and strategy starts
 * with every DRAM bank precharged. Compute cycles: MACs of the layer over the MAC array
 * (mac_rows * mac_cols per cycle) plus one cycle per group of sampling_lanes samples plus the
 * bank-conflict stall cycles of on-chip sampling (whole map, sliced). Cycles of the sliced
 * strategy come from the executor's overlap of DMA and compute; the other strategies are
 * assumed to overlap perfectly (cycles = max(compute, DRAM)).
 *
 * All functions are thread-safe on distinct outputs.
 */
#ifndef DSN_MEASURE_H
#define DSN_MEASURE_H

#include <stdint.h>
#include <stdio.h>

#include "common/ds_status.h"
#include "nas/dsn_preset.h"
#include "runtime/dsr_dram.h"
#include "runtime/dsr_exec.h"
#include "runtime/dsr_model.h"
#include "runtime/dsr_onchip.h"
#include "runtime/dsr_schedule.h"

typedef enum dsn_strategy {
  DSN_STRATEGY_LOWER_BOUND = 0,
  DSN_STRATEGY_GATHER = 1,
  DSN_STRATEGY_CACHE = 2,
  DSN_STRATEGY_WHOLE_MAP = 3,
  DSN_STRATEGY_SLICED = 4,
  DSN_STRATEGY_COUNT = 5
} dsn_strategy;

/* Name of a strategy: "lower_bound", "gather", "cache", "whole_map", "sliced". */
const char *dsn_strategy_name(dsn_strategy strategy);

/* Figures of one strategy on one layer, or summed over the layers. */
typedef struct dsn_measured {
  int64_t bytes;              /* bytes requested (read plus written) */
  int64_t bursts;             /* bursts moved; bus bytes = bursts * burst bytes */
  int64_t row_hits;
  int64_t row_misses;
  int64_t bank_stall_cycles;  /* sampling lanes waiting on a feature buffer bank */
  int64_t buffer_bytes;       /* on-chip bytes the strategy needs */
  int64_t cache_hits;         /* cache strategy: lines found */
  int64_t cache_misses;       /* cache strategy: lines filled from DRAM */
  int64_t dram_cycles;        /* DRAM busy time, in accelerator cycles */
  int64_t compute_cycles;     /* MAC array and sampling lanes, stalls included */
  int64_t cycles;             /* the layer's time in accelerator cycles */
  int32_t compute_bound;      /* 1 when compute_cycles >= dram_cycles */
  int32_t fits;               /* buffer_bytes <= the preset's feature buffer (gather, cache and
                                 lower bound always 1) */
} dsn_measured;

typedef struct dsn_layer_measure {
  int32_t node;               /* node index */
  dsr_slice slice;            /* the sliced strategy's configuration */
  int64_t samples;            /* unsliced samples (grid points times groups) */
  dsn_measured strategy[DSN_STRATEGY_COUNT];
} dsn_layer_measure;

typedef struct dsn_model_measure {
  int32_t layer_count;
  dsn_layer_measure *layers;  /* owned: dsn_model_measure_free */
  dsn_measured total[DSN_STRATEGY_COUNT];
} dsn_model_measure;

/* Sampling positions of every deformable layer, as one float invoke produced them. */
typedef struct dsn_layer_positions {
  int32_t node;
  dsr_slice slice;            /* the configuration they were captured under */
  int32_t patch_count;        /* slice.rows * slice.cols */
  int64_t *patch_first;       /* patch_count + 1 offsets into the arrays below, per patch */
  int32_t *patch_grid;        /* 2 per patch: grid_h, grid_w */
  float *y;                   /* per patch: group-major, then grid row-major; pixels of the */
  float *x;                   /* extended patch (the whole map when unsliced) */
} dsn_layer_positions;

typedef struct dsn_positions {
  int32_t layer_count;
  dsn_layer_positions *layers; /* owned: dsn_positions_free */
} dsn_positions;

/*
 * Runs model in float mode on image (the model input, NCHW float) with slices (one per
 * deformable layer; NULL: the unsliced (1, 1, 0) everywhere) and records the bilinear sampling
 * position of every sample through the runtime observer. On success out owns its arrays.
 */
ds_status dsn_positions_capture(const dsr_model *model, const dsr_slice *slices,
                                const float *image, dsn_positions *out, ds_error *err);

void dsn_positions_free(dsn_positions *positions);

/* The runtime DRAM configuration of preset (geometry, mapping and timing). */
void dsn_preset_dram_config(const dsn_preset *preset, dsr_dram_config *config);

typedef struct dsn_measure_options {
  dsr_cache_config cache;           /* line_bytes 0: 64-byte lines, 8 ways, half the feature
                                       buffer */
  const char *ramulator_trace_path; /* NULL: none. Ramulator 2 LoadStoreTrace text */
  const char *dramsim_trace_path;   /* NULL: none. DRAMsim3 trace text */
  int32_t trace_strategy;           /* dsn_strategy whose requests the traces hold */
} dsn_measure_options;

/*
 * Measures every deformable layer of model under every strategy. slices gives the sliced
 * strategy's configuration per layer (NULL: each layer's own). unsliced holds positions
 * captured with (1, 1, 0), for gather, cache and whole map. sliced holds positions captured
 * with slices, for the bank conflicts of the sliced strategy. Either may be NULL, and then
 * those strategies count no sample reads or stalls. options may be NULL. On success out owns
 * its array. Errors: DS_ERR_SLICE_CONFIG, DS_ERR_INVALID_ARGUMENT (cache, trace strategy,
 * DRAM geometry), DS_ERR_IO (a trace file), DS_ERR_OUT_OF_MEMORY.
 */
ds_status dsn_measure_model(const dsr_model *model, const dsr_slice *slices,
                            const dsn_preset *preset, const dsn_positions *unsliced,
                            const dsn_positions *sliced, const dsn_measure_options *options,
                            dsn_model_measure *out, ds_error *err);

void dsn_model_measure_free(dsn_model_measure *measure);

/* Prints measure as a table: per layer and strategy bytes, bursts, row misses, stalls,
 * buffer bytes, cycles and the bound, then the totals. */
void dsn_model_measure_print(const dsn_model_measure *measure, const dsn_preset *preset,
                             FILE *out);

/*
 * Runs schedule through the executor on preset's DRAM. A deformable step's compute cycles come
 * from the MAC array and sampling lanes, with bank stalls when sliced positions are given; a
 * dense step (layer -1) keeps its own compute_cycles. layers has layer_capacity entries. For
 * the deformable layers of dsn_schedule_build, counts equal the oracle's sliced figures.
 * Errors: those of dsr_exec_check, DS_ERR_INVALID_ARGUMENT for a DRAM geometry the model
 * rejects, DS_ERR_OUT_OF_MEMORY.
 */
ds_status dsn_execute_schedule(const dsr_model *model, const dsr_schedule *schedule,
                               const dsn_preset *preset, const dsn_positions *sliced,
                               dsr_exec_layer *layers, int32_t layer_capacity,
                               dsr_exec_layer *total, ds_error *err);

/* Address trace formats. */
typedef enum dsn_trace_format {
  DSN_TRACE_RAMULATOR2 = 0, /* "LD 0x..." or "ST 0x..." per line */
  DSN_TRACE_DRAMSIM3 = 1,   /* "0x... READ|WRITE cycle" per line, cycle the request's
                               arrival in DRAM clock cycles, never decreasing */
} dsn_trace_format;

/*
 * Counts the requests of a trace file written here, checking every line: reads and writes.
 * DS_ERR_DATA names the line that does not parse.
 */
ds_status dsn_trace_count(const char *path, dsn_trace_format format, int64_t *reads,
                          int64_t *writes, ds_error *err);

#endif
