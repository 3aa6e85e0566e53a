/*
 * Fixed-point kernels, called by the executor in dsr_runtime.c for every node when the
 * context runs in DSR_MODE_FIXED. Tensor storage comes from dsr_tensor_data: activations in
 * the dtype of their qparams, constants as data_q. Each node's integer parameters
 * (multipliers, shifts, tables) are its qwords, laid out as quant/dsq_params.h documents.
 */
#ifndef DSR_FIXED_H
#define DSR_FIXED_H

#include <stddef.h>

#include "dsr_runtime.h"

/* Scratch bytes the fixed-point kernel of node_index needs, for any slice configuration. */
size_t dsr_fixed_scratch_bytes(const dsr_model *model, int32_t node_index);

/* Scratch bytes when the kernel splits its work into worker_count tasks (at least 1), each
 * with private scratch: dsr_fixed_scratch_bytes for worker_count 1. */
size_t dsr_fixed_scratch_bytes_for_workers(const dsr_model *model, int32_t node_index,
                                           int32_t worker_count);

/* Checks, at plan time, that node_index has every fixed-point parameter its kernel reads. */
ds_status dsr_fixed_check_node(const dsr_model *model, int32_t node_index, ds_error *err);

/*
 * Bytes of node_index's constant operand packed ahead for its kernel (0: the kernel packs
 * nothing ahead). The planner reserves them in the arena, and context init fills them with
 * dsr_fixed_pack_constants, so invokes skip the packing of weights.
 */
size_t dsr_fixed_packed_bytes(const dsr_model *model, int32_t node_index);

/* Packs node_index's constant operand into packed (dsr_fixed_packed_bytes bytes, any
 * alignment). The model must have passed dsr_fixed_check_node. */
void dsr_fixed_pack_constants(const dsr_model *model, int32_t node_index, uint8_t *packed);

/* Executes node_index. Cannot fail: dsr_fixed_check_node passed at plan time. */
void dsr_fixed_run_node(dsr_context *ctx, int32_t node_index);

#endif
