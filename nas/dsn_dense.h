/*
 * Tiling, DMA transfers and analytic cost of the dense layers (every dsn_layer kind but
 * DSN_LAYER_DEFORM), and the compute cycles of a deformable patch.
 *
 * Tiling (docs/hardware-model.md gives the reasoning):
 * - Weights: read once when they fit the weight buffer. Otherwise they are split into
 *   weight_chunks chunks of output columns, each at most half the weight buffer (two slots
 *   alternate), and every chunk streams the input again.
 * - Rows: one tile when the whole group (input, second input, operand and output) fits the
 *   feature buffer. Otherwise tiles of tile_rows output rows whose footprint fits half the
 *   buffer (two slots alternate), next to the operand, which is held whole. A convolution
 *   tile loads its input rows with the halo of the kernel.
 * - Order: group, then weight chunk, then row tile, then band of the row. Each tile is one
 *   step: its loads (the weight chunk on the chunk's first tile, the operand on the group's
 *   first tile of a chunk, the input band, the second input band), the compute step, then
 *   the store of its output (for a reduction, only after the last tile).
 *
 * The schedule generator (nas/dsn_schedule.h) emits exactly the transfers of
 * dsn_dense_tile_transfers, so the schedule's traffic equals dsn_dense_cost_layer's.
 * All functions are pure and thread-safe.
 */
#ifndef DSN_DENSE_H
#define DSN_DENSE_H

#include <stdint.h>

#include "common/ds_status.h"
#include "nas/dsn_layer.h"
#include "nas/dsn_oracle.h"
#include "nas/dsn_preset.h"
#include "runtime/dsr_schedule.h"

typedef struct dsn_dense_plan {
  int64_t weight_chunks;       /* 1 when the weights fit the weight buffer */
  int64_t chunk_cols;          /* output columns per chunk; the last chunk may have fewer */
  int64_t tile_rows;           /* output rows per tile (input rows for a reduction) */
  int64_t tile_cols;           /* output pixels per band of a row; out_width when rows are
                                  not split */
  int64_t col_tiles;           /* bands per row */
  int64_t tiles;               /* tiles per chunk and group: row tiles * col_tiles */
  int64_t steps;               /* group_count * weight_chunks * tiles */
  int32_t feature_slots;       /* 2 when a group needs more than one tile */
  int64_t buffer_bytes;        /* feature buffer need: operand + slots * largest tile */
  int64_t weight_buffer_bytes; /* weight buffer need */
  int32_t fits;                /* both needs fit the preset */
} dsn_dense_plan;

/* One transfer of a tile, relative to the base address of the tensor it touches. */
typedef enum dsn_tensor_role {
  DSN_ROLE_INPUT = 0,   /* streamed input 0 */
  DSN_ROLE_INPUT2 = 1,  /* streamed input 1 */
  DSN_ROLE_OPERAND = 2, /* input held whole */
  DSN_ROLE_WEIGHTS = 3,
  DSN_ROLE_OUTPUT = 4,
} dsn_tensor_role;

typedef struct dsn_transfer {
  int32_t role;               /* dsn_tensor_role */
  uint8_t direction;          /* dsr_dma_direction */
  uint8_t buffer;             /* dsr_dma_buffer */
  uint8_t slot;
  uint8_t bank;
  int64_t dram_offset_bytes;  /* from the tensor's base address */
  int64_t row_bytes;
  int64_t row_count;
  int64_t stride_bytes;
  int64_t chip_offset_bytes;
} dsn_transfer;

#define DSN_TILE_MAX_TRANSFERS 5

typedef struct dsn_tile {
  int64_t group;
  int64_t chunk;
  int64_t tile;
  int32_t transfer_count;     /* loads first, then stores */
  int32_t load_count;
  dsn_transfer transfers[DSN_TILE_MAX_TRANSFERS];
  int64_t compute_cycles;
} dsn_tile;

typedef struct dsn_dense_cost {
  dsn_dense_plan plan;
  dsn_traffic traffic;        /* the tiled schedule, time_ns filled */
  dsn_traffic lower_bound;    /* every input pixel the layer reads, operand, weight and
                                 output once */
  int64_t compute_cycles;
} dsn_dense_cost;

/*
 * Plans the tiling of a dense layer. DS_ERR_INVALID_ARGUMENT for a deformable layer or a
 * geometry with a non-positive size (the message names the layer and the field).
 */
ds_status dsn_dense_plan_make(const dsn_layer *layer, const dsn_preset *preset,
                              dsn_dense_plan *plan, ds_error *err);

/* Fills tile with the transfers and compute cycles of step (group, chunk, tile) of plan. */
void dsn_dense_tile_transfers(const dsn_layer *layer, const dsn_preset *preset,
                              const dsn_dense_plan *plan, int64_t group, int64_t chunk,
                              int64_t tile, dsn_tile *out);

/* Plans layer and sums the cost of every tile. */
ds_status dsn_dense_cost_layer(const dsn_layer *layer, const dsn_preset *preset,
                               dsn_dense_cost *cost, ds_error *err);

/* Bytes of the tensors of a dense layer, per group for the activations. */
int64_t dsn_dense_input_bytes(const dsn_layer *layer, const dsn_preset *preset);
int64_t dsn_dense_output_bytes(const dsn_layer *layer, const dsn_preset *preset);

/* Bytes of the input a dense layer reads, per group: the rows and pixels its kernel windows
 * touch. A strided convolution whose windows stop short of the last input row or column
 * never reads it, so this can be less than dsn_dense_input_bytes. The lower bound counts
 * these bytes. */
int64_t dsn_dense_read_input_bytes(const dsn_layer *layer, const dsn_preset *preset);

/*
 * Compute cycles of one deformable patch of ext_h x ext_w pixels (the extended patch, halo
 * included) whose core_pixels queries it answers, on the MAC array and the vector unit: the
 * q projection over the extended patch, the offset convs, k and v over the offset grid,
 * scores, context and output projection over the core (over mac_rows * mac_cols
 * multipliers), and the softmax over mac_cols vector lanes. Bilinear sampling is not
 * included: the measured model adds it through the banks.
 */
int64_t dsn_deform_patch_array_cycles(const dsr_deform_attn *layer, int32_t ext_h,
                                      int32_t ext_w, int64_t core_pixels,
                                      const dsn_preset *preset);

/*
 * dsn_deform_patch_array_cycles plus bilinear sampling without bank conflicts: one cycle per
 * sampling_lanes samples (one pixel vector per lane) per offset group. The analytic cost, the
 * schedule generator and the measured model without stalls all use this one formula, so a
 * strategy's compute cycles agree with and without --simulate except for bank-conflict
 * stall cycles.
 */
int64_t dsn_deform_patch_cycles(const dsr_deform_attn *layer, int32_t ext_h, int32_t ext_w,
                                int64_t core_pixels, const dsn_preset *preset);

#endif
