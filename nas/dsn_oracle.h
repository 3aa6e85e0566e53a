/*
 * Cost oracle: DRAM traffic, DRAM time and on-chip buffer needs of each deformable layer
 * under three dataflows, and the candidate slice configurations of a layer.
 *
 * Model (docs/hardware-model.md gives the reasoning and a worked example):
 * - Feature maps are stored in DRAM channels-last (HWC), activation_bits per element.
 * - A transfer is rows of row_bytes, stride_bytes apart. Rows that are contiguous
 *   (stride == row_bytes) merge into one run; otherwise each row is its own run. A run of n
 *   bytes takes ceil(n / burst_bytes) bursts (burst_bytes = bus_width_bits / 8 *
 *   burst_length) and is estimated to open ceil(n / dram.row_bytes) DRAM rows.
 * - DRAM time = bursts * burst_bytes / peak bandwidth + row misses * row_miss_latency_ns.
 * - Weights are every parameter tensor of the layer, sized from the layer geometry: 1x1 and
 *   depthwise conv weights and the position bias table at weight_bits, biases and LayerNorm
 *   parameters at accumulator_bits, each tensor one run. They sit in a weight buffer beside
 *   the feature buffer and are read once per layer (assumed to fit there).
 *
 * Dataflows:
 * - lower bound: the input read once, the output written once, the weights read once.
 * - gather: read x (to compute q and the offsets), write q, gather the four bilinear
 *   neighbours of every sample (one Cg-channel pixel vector per neighbour and group, each a
 *   run of its own), read q back, write the output, plus the weights.
 * - sliced: per extended patch, one 2-D load of the extended patch and one 2-D store of the
 *   core patch, plus the weights once.
 *
 * All functions are pure and thread-safe; nothing allocated needs freeing unless stated.
 */
#ifndef DSN_ORACLE_H
#define DSN_ORACLE_H

#include <stdint.h>
#include <stdio.h>

#include "common/ds_status.h"
#include "nas/dsn_preset.h"
#include "runtime/dsr_model.h"

/* DRAM traffic of a set of transfers. bytes counts the data moved; bus bytes are
 * bursts * burst_bytes. */
typedef struct dsn_traffic {
  int64_t bytes;
  int64_t bursts;
  int64_t row_misses;
  double time_ns;
} dsn_traffic;

typedef struct dsn_layer_cost {
  dsr_slice slice;
  int32_t patch_count;
  int64_t weight_bytes;
  int64_t patch_footprint_bytes; /* largest extended patch: x plus q plus k and v samples */
  int32_t buffer_slots;          /* 2 when double buffering applies (more than one patch) */
  int64_t buffer_bytes;          /* patch_footprint_bytes * buffer_slots */
  int32_t fits;                  /* buffer_bytes <= feature_buffer_bytes */
  dsn_traffic lower_bound;
  dsn_traffic gather;
  dsn_traffic sliced;
} dsn_layer_cost;

typedef struct dsn_model_cost {
  int32_t layer_count;
  dsn_layer_cost *layers;   /* layer_count entries, owned: dsn_model_cost_free */
  dsn_traffic lower_bound;  /* sums over the layers */
  dsn_traffic gather;
  dsn_traffic sliced;
  int32_t all_fit;
} dsn_model_cost;

/* Bursts and estimated row misses of one 2-D transfer (the rule stated above). */
void dsn_transfer_cost(int64_t row_bytes, int64_t row_count, int64_t stride_bytes,
                       const dsn_preset *preset, dsn_traffic *add_to);

/* Fills time_ns of traffic from its bursts and row misses. */
void dsn_traffic_finish(dsn_traffic *traffic, const dsn_preset *preset);

/* Bus bytes of traffic: bursts * burst_bytes. */
int64_t dsn_traffic_bus_bytes(const dsn_traffic *traffic, const dsn_preset *preset);

/* Byte size of each parameter tensor of layer, in dsr_deform_param order, as the oracle
 * counts them. */
void dsn_layer_weight_sizes(const dsr_deform_attn *layer, const dsn_preset *preset,
                            int64_t sizes_bytes[DSR_DEFORM_PARAM_COUNT]);

/* Sum of dsn_layer_weight_sizes. */
int64_t dsn_deform_weight_bytes(const dsr_deform_attn *layer, const dsn_preset *preset);

/* Offset grid size of an h x w (extended) patch; 0 when the offset conv has no output. */
int32_t dsn_offset_grid(const dsr_deform_attn *layer, int32_t h, int32_t w, int32_t *hk,
                        int32_t *wk);

/*
 * Computes the cost of one deformable layer under slice. DS_ERR_SLICE_CONFIG when slice does
 * not fit the map (rows or cols outside 1..side, overlap outside 0..side, unknown semantics,
 * a patch with an empty offset grid); DS_ERR_INVALID_ARGUMENT for inconsistent geometry.
 */
ds_status dsn_oracle_layer(const dsr_deform_attn *layer, dsr_slice slice,
                           const dsn_preset *preset, dsn_layer_cost *cost, ds_error *err);

/*
 * Computes every deformable layer of model (node order) and the sums. slices gives one
 * configuration per deformable layer, or NULL for each layer's own. On success cost owns an
 * array freed by dsn_model_cost_free.
 */
ds_status dsn_oracle_model(const dsr_model *model, const dsr_slice *slices,
                           const dsn_preset *preset, dsn_model_cost *cost, ds_error *err);

void dsn_model_cost_free(dsn_model_cost *cost);

/*
 * Prints cost as a table to out: per layer the slice, patch count, bytes, bursts and DRAM
 * time of the lower bound, gather and sliced dataflows, the feature buffer need and whether
 * it fits preset; then the model totals.
 */
void dsn_model_cost_print(const dsn_model_cost *cost, const dsn_preset *preset, FILE *out);

/* Candidate slice configurations of one layer. */
typedef struct dsn_candidates {
  int32_t count;
  dsr_slice *slices;        /* owned: dsn_candidates_free */
  dsn_layer_cost *costs;    /* cost of each candidate */
  int32_t none_fit;         /* 1 when no configuration fits, and slices then contains only
                               the smallest */
  int32_t min_traffic;      /* index of the candidate with the fewest sliced bursts, then
                               the fewest row misses */
} dsn_candidates;

#define DSN_SEMANTICS_PHYSICAL (1u << DSR_SLICE_PHYSICAL)
#define DSN_SEMANTICS_CROP (1u << DSR_SLICE_CROP)

/*
 * Lists the configurations rows in 1..min(H, 8), cols in 1..min(W, 8), overlap in
 * {0, 1, 2, 4} with overlap <= min(H, W), for each semantics in semantics_mask
 * (DSN_SEMANTICS_*; 0 means physical only), that fit the feature buffer, in that loop order
 * (so (1, 1, 0) comes first when it fits). Configurations that compute the same as an
 * earlier one are left out: an overlap clipped back to the previous overlap by the map border,
 * and any configuration other than (1, 1, 0) whose extended patches are all the whole map.
 * When none fits, the list contains the one with the smallest buffer_bytes and none_fit is
 * set.
 */
ds_status dsn_candidates_build(const dsr_deform_attn *layer, const dsn_preset *preset,
                               uint32_t semantics_mask, dsn_candidates *candidates,
                               ds_error *err);

void dsn_candidates_free(dsn_candidates *candidates);

/* Writes a configuration as "RxC+O", with a "c" suffix for crop semantics. */
void dsn_slice_format(dsr_slice slice, char *text, int32_t size);

/* Largest number dsn_slice_parse takes for rows, columns or overlap. */
#define DSN_SLICE_NUMBER_MAX 1000000

/* Parses the dsn_slice_format text: decimal digits only, rows and columns 1 to
 * DSN_SLICE_NUMBER_MAX, overlap 0 to DSN_SLICE_NUMBER_MAX. Returns 0 on success, -1 when
 * malformed or out of range (a larger number is rejected, never wrapped). */
int32_t dsn_slice_parse(const char *text, dsr_slice *slice);

#endif
