/*
 * Fixed-point kernels below the executor: the same code dsr_fixed_run_node calls, with the
 * tensor storage passed explicitly so that tests and tools can run one node without a
 * planned context.
 */
#ifndef DSR_FIXED_INTERNAL_H
#define DSR_FIXED_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "../common/ds_status.h"
#include "dsr_model.h"
#include "dsr_probe.h"
#include "dsr_parallel.h"

/*
 * Executes node_index of model. inputs[i] is the storage of the node's input i: data_q for a
 * constant, NULL for an absent optional input. output is the storage of its output. scratch
 * holds at least dsr_fixed_scratch_bytes(model, node_index) bytes, aligned to 8. slice is the
 * layer's slice configuration, read by DEFORM_ATTN only, and must be valid for the layer.
 * dsr_fixed_check_node must have passed.
 */
void dsr_fixed_execute(const dsr_model *model, int32_t node_index,
                       const void *const inputs[DSR_MAX_NODE_INPUTS], void *output,
                       uint8_t *scratch, dsr_slice slice);

/*
 * dsr_fixed_execute with the heavy kernels split into tasks of parallel (NULL: one thread).
 * scratch has at least dsr_fixed_scratch_bytes_for_workers(model, node_index,
 * dsr_parallel_workers(parallel)) bytes. The output bytes are the same for every worker count.
 */
void dsr_fixed_execute_parallel(const dsr_model *model, int32_t node_index,
                                const void *const inputs[DSR_MAX_NODE_INPUTS], void *output,
                                uint8_t *scratch, dsr_slice slice, const dsr_parallel *parallel);

/* dsr_fixed_execute_parallel with node_index's constant operand already packed by
 * dsr_fixed_pack_constants (NULL: the kernel packs it itself). */
void dsr_fixed_execute_packed(const dsr_model *model, int32_t node_index,
                              const void *const inputs[DSR_MAX_NODE_INPUTS], void *output,
                              uint8_t *scratch, dsr_slice slice, const dsr_parallel *parallel,
                              const uint8_t *packed);

/*
 * Same contract as dsr_fixed_execute, but every op runs its reference kernel: the plain loop
 * nest that documents the arithmetic. The optimized kernels that dsr_fixed_execute picks
 * where they apply must produce the same bytes; tests compare the two.
 */
void dsr_fixed_execute_reference(const dsr_model *model, int32_t node_index,
                                 const void *const inputs[DSR_MAX_NODE_INPUTS], void *output,
                                 uint8_t *scratch, dsr_slice slice);

/*
 * Optimized kernels (dsr_fixed_fast_*.c), bit-identical to the reference ones. Each returns 1
 * after writing the output, or 0 without touching anything when the node's attributes fall
 * outside what it handles (the caller then runs the reference kernel). scratch has at least
 * the kernel's *_scratch_bytes, aligned to 8. Those functions return 0 for such nodes too.
 * dsr_fixed_check_node must have passed.
 */
int dsr_fixed_fast_conv2d(const dsr_model *model, const dsr_node *node, const void *const *in,
                          void *out, uint8_t *scratch);
size_t dsr_fixed_fast_conv2d_scratch_bytes(const dsr_model *model, const dsr_node *node);
/* The _parallel variants split their work into tasks of parallel (NULL: one thread), with
 * scratch from the matching _for_workers size. */
int dsr_fixed_fast_conv2d_parallel(const dsr_model *model, const dsr_node *node,
                                   const void *const *in, void *out, uint8_t *scratch,
                                   const dsr_parallel *parallel);
size_t dsr_fixed_fast_conv2d_scratch_bytes_for_workers(const dsr_model *model,
                                                       const dsr_node *node,
                                                       int32_t worker_count);
/* CONV2D with one group and an int8 input as a packed matrix product
 * (dsr_fixed_fast_conv_gemm.c); dsr_fixed_fast_conv2d_parallel tries it first. */
int dsr_fixed_fast_conv2d_gemm(const dsr_model *model, const dsr_node *node,
                               const void *const *in, void *out, uint8_t *scratch,
                               const dsr_parallel *parallel);
size_t dsr_fixed_fast_conv2d_gemm_scratch_bytes(const dsr_model *model, const dsr_node *node,
                                                int32_t worker_count);
/* Depthwise CONV2D with stride 1 on the padded grid (dsr_fixed_fast_depthwise.c);
 * dsr_fixed_fast_conv2d_parallel tries it second. */
int dsr_fixed_fast_depthwise(const dsr_model *model, const dsr_node *node,
                             const void *const *in, void *out, uint8_t *scratch,
                             const dsr_parallel *parallel);
size_t dsr_fixed_fast_depthwise_scratch_bytes(const dsr_model *model, const dsr_node *node,
                                              int32_t worker_count);
/* GEMM with an int8 input as a packed matrix product (dsr_fixed_fast_gemm.c). */
int dsr_fixed_fast_gemm_parallel(const dsr_model *model, const dsr_node *node,
                                 const void *const *in, void *out, uint8_t *scratch,
                                 const dsr_parallel *parallel, const uint8_t *packed_weight);
/* Bytes of the weight packed ahead (0 where the kernel does not apply) and the packing. */
size_t dsr_fixed_fast_gemm_packed_bytes(const dsr_model *model, const dsr_node *node);
void dsr_fixed_fast_gemm_pack(const dsr_model *model, const dsr_node *node, uint8_t *packed);
size_t dsr_fixed_fast_gemm_scratch_bytes(const dsr_model *model, const dsr_node *node,
                                         int32_t worker_count);
int dsr_fixed_fast_gemm(const dsr_model *model, const dsr_node *node, const void *const *in,
                        void *out, uint8_t *scratch);
int dsr_fixed_fast_matmul(const dsr_model *model, const dsr_node *node, const void *const *in,
                          void *out, uint8_t *scratch);
size_t dsr_fixed_fast_matmul_scratch_bytes(const dsr_model *model, const dsr_node *node);
int dsr_fixed_fast_matmul_parallel(const dsr_model *model, const dsr_node *node,
                                   const void *const *in, void *out, uint8_t *scratch,
                                   const dsr_parallel *parallel, const uint8_t *packed_b);
/* Bytes of a constant B packed ahead (0 where the packed order does not apply to a single
 * constant B) and the packing. */
size_t dsr_fixed_fast_matmul_packed_bytes(const dsr_model *model, const dsr_node *node);
void dsr_fixed_fast_matmul_pack(const dsr_model *model, const dsr_node *node, uint8_t *packed);
size_t dsr_fixed_fast_matmul_scratch_bytes_for_workers(const dsr_model *model,
                                                       const dsr_node *node,
                                                       int32_t worker_count);
int dsr_fixed_fast_binary(const dsr_model *model, const dsr_node *node, const void *const *in,
                          void *out, uint8_t *scratch);
size_t dsr_fixed_fast_binary_scratch_bytes(const dsr_model *model, const dsr_node *node);
/* Pieces of the output are split between tasks; task i uses the slot_bytes of scratch from
 * i * slot_bytes. */
int dsr_fixed_fast_binary_parallel(const dsr_model *model, const dsr_node *node,
                                   const void *const *in, void *out, uint8_t *scratch,
                                   size_t slot_bytes, const dsr_parallel *parallel);
/* dsr_fixed_isqrt64: from the double square root below 2^62, else with the same restoring
 * steps, each one a select instead of a branch. */
uint64_t dsr_fixed_fast_isqrt64(uint64_t v);
int dsr_fixed_fast_layer_norm(const dsr_model *model, const dsr_node *node,
                              const void *const *in, void *out, uint8_t *scratch);
/* Rows are split between tasks; task i uses the slot_bytes of scratch from i * slot_bytes. */
int dsr_fixed_fast_layer_norm_parallel(const dsr_model *model, const dsr_node *node,
                                       const void *const *in, void *out, uint8_t *scratch,
                                       size_t slot_bytes, const dsr_parallel *parallel);
/* Writes exps[i] = dsr_fixed_exp2_neg_q30(y[i]) for y[i] <= 0 and returns their sum. */
int64_t dsr_fixed_fast_exp_row(const int32_t *y, int32_t count, int32_t *exps);
/* dsr_fixed_softmax_row, the same values from branch-free row steps. out must not overlap
 * in or exp_scratch. */
void dsr_fixed_fast_softmax_row(const int32_t *in, int32_t count, int32_t exp_multiplier,
                                int32_t exp_shift, int32_t out_frac_bits, int32_t *exp_scratch,
                                int32_t *out);
int dsr_fixed_fast_softmax(const dsr_model *model, const dsr_node *node, const void *const *in,
                           void *out, uint8_t *scratch);
/* Rows are split between tasks; task i uses the slot_bytes of scratch from i * slot_bytes. */
int dsr_fixed_fast_softmax_parallel(const dsr_model *model, const dsr_node *node,
                                    const void *const *in, void *out, uint8_t *scratch,
                                    size_t slot_bytes, const dsr_parallel *parallel);
int dsr_fixed_fast_gelu(const dsr_model *model, const dsr_node *node, const void *const *in,
                        void *out);
/* GELU with the elements split between tasks. */
int dsr_fixed_fast_gelu_parallel(const dsr_model *model, const dsr_node *node,
                                 const void *const *in, void *out,
                                 const dsr_parallel *parallel);
int dsr_fixed_fast_transpose(const dsr_model *model, const dsr_node *node,
                             const void *const *in, void *out);
/* TRANSPOSE with the output split between tasks (block copies, tiles or strided rows). */
int dsr_fixed_fast_transpose_parallel(const dsr_model *model, const dsr_node *node,
                                      const void *const *in, void *out,
                                      const dsr_parallel *parallel);
/* GATHER as block copies of runs of consecutive indices (dsr_fixed_fast_gather.c), the
 * output split between tasks. */
int dsr_fixed_fast_gather_parallel(const dsr_model *model, const dsr_node *node,
                                   const void *const *in, void *out,
                                   const dsr_parallel *parallel);
/* RESHAPE: nothing when the output has the input's bytes (the planner's alias), else the copy
 * split between tasks; 0 when the two overlap in part. */
int dsr_fixed_fast_reshape_parallel(const dsr_model *model, const dsr_node *node,
                                    const void *const *in, void *out,
                                    const dsr_parallel *parallel);

/*
 * Row helpers of the optimized kernels (dsr_fixed_fast_rows.c). The requant functions write
 * values[i] = dsr_fixed_requant32 (or 64) of acc[i] with the pair at pairs + i * pair_stride
 * (pair_stride 0: one pair for the row, 2: one pair per element), bit for bit. values may be
 * acc for the 32-bit one. Pairs must have passed dsr_fixed_pair_valid.
 */
void dsr_fixed_requant_row32(const int32_t *acc, int64_t count, const int32_t *pairs,
                             int32_t pair_stride, int32_t *values);
void dsr_fixed_requant_row64(const int64_t *acc, int64_t count, const int32_t *pairs,
                             int32_t pair_stride, int32_t *values);

/* Stores zero + values[i] into element offset + i of out (dtype I8, I16 or I32), saturated
 * like dsr_fixed_store. zero is in [-32768, 32767], as every activation zero point is. */
void dsr_fixed_store_row(const int32_t *values, int64_t count, int32_t zero, int32_t dtype,
                         void *out, int64_t offset);

/*
 * Row steps of ADD and SUB (dsr_fixed_fast_addrow.c) for a requant pair (multiplier,
 * -right) with right in 0..31 that passed dsr_fixed_pair_valid. The rescale functions write
 * row[i] = dsr_fixed_requant32((src[i] - zero) * 2^left, multiplier, -right), where the
 * product must fit int32. dsr_fixed_add_store_row stores zero + dsr_fixed_requant32(ra[i] +
 * rb[i], multiplier, -right), saturated to dtype (I8 or I16), as element offset + i of out.
 * They use AVX-512 kernels where dsr_fixed_rows_use_avx512 returns 1, else the _portable
 * loops, which give the same values.
 */
void dsr_fixed_rescale_row_i8(const int8_t *src, int64_t count, int32_t zero, int32_t left,
                              int32_t multiplier, int32_t right, int32_t *row);
void dsr_fixed_rescale_row_i16(const int16_t *src, int64_t count, int32_t zero, int32_t left,
                               int32_t multiplier, int32_t right, int32_t *row);
void dsr_fixed_add_store_row(const int32_t *ra, const int32_t *rb, int64_t count,
                             int32_t multiplier, int32_t right, int32_t zero, int32_t dtype,
                             void *out, int64_t offset);
void dsr_fixed_rescale_row_i8_portable(const int8_t *src, int64_t count, int32_t zero,
                                       int32_t left, int32_t multiplier, int32_t right,
                                       int32_t *row);
void dsr_fixed_rescale_row_i16_portable(const int16_t *src, int64_t count, int32_t zero,
                                        int32_t left, int32_t multiplier, int32_t right,
                                        int32_t *row);
void dsr_fixed_add_store_row_portable(const int32_t *ra, const int32_t *rb, int64_t count,
                                      int32_t multiplier, int32_t right, int32_t zero,
                                      int32_t dtype, void *out, int64_t offset);
/* 1 when the CPU runs the AVX-512 row kernels (x86-64 with AVX-512 F and BW). */
int dsr_fixed_rows_use_avx512(void);

/* dsr_fixed_requant_row32 of acc followed by dsr_fixed_store_row, in one pass (AVX-512F where
 * the CPU has it). acc may be overwritten. */
void dsr_fixed_requant_store_row(int32_t *acc, int64_t count, const int32_t *pairs,
                                 int32_t pair_stride, int32_t zero, int32_t dtype, void *out,
                                 int64_t offset);

/* Dot product of two int16 rows in 32 bits: the caller bounds every partial sum by 2^31 - 1. */
int32_t dsr_fixed_dot16(const int16_t *a, const int16_t *b, int32_t count);

/* Four dot products of x with the consecutive rows rows[k * count .. (k + 1) * count), k < 4,
 * in 32 bits under the bound of dsr_fixed_dot16. */
void dsr_fixed_dot16x4(const int16_t *x, const int16_t *rows, int32_t count, int32_t sums[4]);

/* dsr_fixed_dot16x4 of two rows x0 and x1 at once: sums[k] for x0, sums[4 + k] for x1. Each
 * loaded row of rows serves both, which halves the loads per product. */
void dsr_fixed_dot16x4x2(const int16_t *x0, const int16_t *x1, const int16_t *rows,
                         int32_t count, int32_t sums[8]);

/* Dot product of two int16 rows in 64 bits, summing chunk terms at a time in 32 bits: the
 * caller picks chunk so that chunk products cannot leave int32 (chunk <= 1: no 32-bit sums). */
int64_t dsr_fixed_dot16_wide(const int16_t *a, const int16_t *b, int32_t count, int32_t chunk);

/* Offset of the matrix of batch index batch (over out's leading rank - 2 axes) inside t, with
 * numpy broadcasting of the batch axes. */
int64_t dsr_fixed_batch_offset(const dsr_tensor *t, const dsr_tensor *out, int64_t batch);

/* Lets GCC and Clang build AVX-512 (x86-64-v4) and AVX2 clones of a hot loop next to the
 * baseline one, picked at load time by the CPU's features. Integer sums do not depend on the
 * clone, so neither do the results. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define DSR_FIXED_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#endif
#endif
#ifndef DSR_FIXED_VECTOR_CLONES
#define DSR_FIXED_VECTOR_CLONES
#endif

/* DEFORM_ATTN parts of dsr_fixed_execute, dsr_fixed_check_node and dsr_fixed_scratch_bytes.
 * fast selects the row-order projections and q.k sums and the branch-free softmax rows. With
 * fast 0 the reference loops run, which give the same values. */
void dsr_fixed_deform_execute(const dsr_model *model, const dsr_node *node, const void *x,
                              void *y, uint8_t *scratch, dsr_slice slice, int fast);
/* The reference DEFORM_ATTN kernel of node_index, reporting every stage to probe
 * (runtime/dsr_probe.h). */
void dsr_fixed_deform_execute_probed(const dsr_model *model, int32_t node_index, const void *x,
                                     void *y, uint8_t *scratch, dsr_slice slice,
                                     const dsr_probe *probe);
/* The fast order split into tasks of parallel; the reference order always runs on one
 * thread. scratch: dsr_fixed_deform_scratch_bytes_for_workers. */
void dsr_fixed_deform_execute_parallel(const dsr_model *model, const dsr_node *node,
                                       const void *x, void *y, uint8_t *scratch,
                                       dsr_slice slice, int fast, const dsr_parallel *parallel);
size_t dsr_fixed_deform_scratch_bytes_for_workers(const dsr_model *model, const dsr_node *node,
                                                  int32_t worker_count);
/* dsr_fixed_deform_execute_parallel with the projection weights and the widened position
 * bias table prepared by dsr_fixed_deform_pack (NULL: the fast order prepares them in
 * scratch at every call). */
void dsr_fixed_deform_execute_packed(const dsr_model *model, const dsr_node *node,
                                     const void *x, void *y, uint8_t *scratch, dsr_slice slice,
                                     int fast, const dsr_parallel *parallel,
                                     const uint8_t *packed);
/* Bytes that dsr_fixed_deform_pack fills (0 when the fast order packs no weight), and the
 * packing into packed, at any alignment. The node must have passed dsr_fixed_deform_check. */
size_t dsr_fixed_deform_packed_bytes(const dsr_model *model, const dsr_node *node);
void dsr_fixed_deform_pack(const dsr_model *model, const dsr_node *node, uint8_t *packed);
ds_status dsr_fixed_deform_check(const dsr_model *model, const dsr_node *node, ds_error *err);
size_t dsr_fixed_deform_scratch_bytes(const dsr_model *model, const dsr_node *node);

/* Offset grid size of the deformable layer's offset conv over a map side of size pixels. */
static inline int32_t dsr_fixed_offset_grid(const dsr_deform_attn *layer, int32_t size) {
  return (size + 2 * layer->offset_pad - layer->offset_kernel) / layer->offset_stride + 1;
}

/* Checks one requant pair; wide selects the 64-bit accumulator's shift limit. */
int dsr_fixed_pair_valid(const int32_t *pair, int wide);

/* Checks a LUT block of block_words words for an input of in_dtype. */
int dsr_fixed_lut_valid(const int32_t *block, int32_t block_words, int32_t in_dtype);

/* Checks an LN block of block_words words for a row of count elements. */
int dsr_fixed_ln_valid(const int32_t *block, int32_t block_words, int32_t count);

/* Checks that a tensor has usable activation qparams (I8, or I16 with zero point 0). */
ds_status dsr_fixed_check_qparams(const dsr_model *model, const dsr_node *node,
                                  int32_t tensor_index, const char *role, ds_error *err);

#endif
