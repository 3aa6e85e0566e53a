/*
 * Float kernels of the reference runtime, one per dsr_op, the plan-time checks that let them
 * run without failing, and the arena layout. Internal to runtime/: the executor in
 * dsr_runtime.c calls the kernels through dsr_f32_run_node once dsr_plan has validated the
 * model.
 *
 * Every kernel reads its shapes from the model tensors and trusts them: dsr_validate_node
 * has checked them at plan time. None of them allocates.
 */
#ifndef DSR_KERNELS_H
#define DSR_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "dsr_runtime.h"
#include "dsr_slice.h"

/* Marks a loop whose iterations are independent: its output rows never overlap its inputs.
 * GCC then vectorizes without run-time alias checks, which it gives up on past a few rows. */
#if defined(__GNUC__) && !defined(__clang__)
#define DSR_IVDEP _Pragma("GCC ivdep")
#else
#define DSR_IVDEP
#endif

/* Alignment of every arena region and scratch sub-buffer. */
#define DSR_ALIGN_BYTES 64u

/* Arguments of one float kernel call. */
typedef struct dsr_f32_args {
  const dsr_model *model;
  const dsr_node *node;
  int32_t node_index;
  const float *in[DSR_MAX_NODE_INPUTS]; /* NULL for an absent optional input */
  float *out;
  uint8_t *scratch;                     /* aligned to DSR_ALIGN_BYTES */
  size_t scratch_bytes;
  dsr_slice slice;                      /* DEFORM_ATTN only */
  const dsr_observer *observer;         /* DEFORM_ATTN stage reports, or NULL */
  const dsr_probe *probe;               /* DEFORM_ATTN sampling positions, or NULL */
  const dsr_parallel *parallel;         /* intra-op hook, or NULL for one thread */
} dsr_f32_args;

void dsr_f32_conv2d(const dsr_f32_args *args);
void dsr_f32_matmul(const dsr_f32_args *args);
void dsr_f32_gemm(const dsr_f32_args *args);
void dsr_f32_binary(const dsr_f32_args *args); /* ADD, SUB, MUL, DIV */
void dsr_f32_layer_norm(const dsr_f32_args *args);
void dsr_f32_gelu(const dsr_f32_args *args);
void dsr_f32_softmax(const dsr_f32_args *args);
void dsr_f32_transpose(const dsr_f32_args *args);
void dsr_f32_reshape(const dsr_f32_args *args);
void dsr_f32_gather(const dsr_f32_args *args);
void dsr_f32_global_avg_pool(const dsr_f32_args *args);
void dsr_f32_deform_attn(const dsr_f32_args *args);
void dsr_f32_concat(const dsr_f32_args *args);
void dsr_f32_pad(const dsr_f32_args *args);

/* Plan-time checks of CONCAT and PAD (dsr_concat_pad.c). */
ds_status dsr_validate_concat(const dsr_model *model, int32_t node_index, ds_error *err);
ds_status dsr_validate_pad(const dsr_model *model, int32_t node_index, ds_error *err);

/* Dispatches on args->node->op. */
void dsr_f32_run_node(const dsr_f32_args *args);

/* Scratch bytes the float kernel of node_index needs, for any slice configuration. */
size_t dsr_f32_scratch_bytes(const dsr_model *model, int32_t node_index);

/* Scratch bytes of a convolution: the input columns of one group, none for a 1x1 conv. */
size_t dsr_f32_conv_scratch_bytes(const dsr_model *model, const dsr_node *node);

/* Scratch bytes of the float deformable kernel: sized for the full map (the largest
 * extended patch), so every valid slice configuration fits. */
size_t dsr_f32_deform_scratch_bytes(const dsr_deform_attn *layer);

/*
 * Pointwise helper shared by the 1x1 convolutions: out[co][p] = bias[co] +
 * sum_ci w[co][ci] * in[ci][p] for p < pixel_count, where channel rows are in_stride and
 * out_stride floats apart. bias may be NULL.
 */
void dsr_f32_pointwise(const float *w, const float *bias, const float *in, size_t in_stride,
                       float *out, size_t out_stride, int32_t in_channels, int32_t out_channels,
                       int32_t pixel_count);

/*
 * dsr_f32_pointwise split into tasks of parallel (NULL: one thread): by pixels when the rows
 * are long, else by output channels. Every output value is computed by the same operations as
 * in the serial call, so the results are identical.
 */
void dsr_f32_pointwise_parallel(const dsr_parallel *parallel, const float *w, const float *bias,
                                const float *in, size_t in_stride, float *out,
                                size_t out_stride, int32_t in_channels, int32_t out_channels,
                                int32_t pixel_count);

/* Computes the softmax of one contiguous row of length values. row may equal out_row. */
void dsr_softmax_row(const float *row, float *out_row, int32_t length);

/* Exact GELU, 0.5 x (1 + erf(x / sqrt 2)). */
float dsr_gelu_value(float x);

/* Offset grid size of the deformable offset network for an extent of size pixels. */
int32_t dsr_deform_grid_size(const dsr_deform_attn *layer, int32_t size);

/*
 * Sampling positions of one patch of the float kernel (steps 4 to 7 of the operator): from
 * raw_offsets (groups x 2 x N, dy then dx, as DSR_DEFORM_STAGE_OFFSET reports them) to
 * positions (groups x 2 x N, y then x) in pixels of the extended patch, N = grid_h * grid_w.
 * semantics is dsr_slice_semantics.
 */
void dsr_deform_positions(const dsr_deform_attn *layer, int32_t semantics,
                          const dsr_patch *patch, int32_t grid_h, int32_t grid_w,
                          const float *raw_offsets, float *positions);

/*
 * Numpy broadcasting of two shapes, right-aligned. Strides are in elements of each operand,
 * 0 along an axis the operand broadcasts.
 */
typedef struct dsr_broadcast {
  int32_t rank;
  int32_t dims[DSR_MAX_RANK];
  int64_t a_strides[DSR_MAX_RANK];
  int64_t b_strides[DSR_MAX_RANK];
} dsr_broadcast;

/* Returns 1 and fills broadcast when the shapes broadcast, else 0. */
int dsr_broadcast_init(const int32_t *a_dims, int32_t a_rank, const int32_t *b_dims,
                       int32_t b_rank, dsr_broadcast *broadcast);

/*
 * Batched matrix product geometry of numpy matmul: a rank-1 operand is promoted to a matrix
 * and its axis dropped from the output. batch strides count whole matrices of a and b.
 */
typedef struct dsr_matmul_geometry {
  int32_t m, k, n;
  dsr_broadcast batch;
  int32_t out_rank;
  int32_t out_dims[DSR_MAX_RANK];
} dsr_matmul_geometry;

/* Returns 1 and fills geometry when a and b can be multiplied, else 0. */
int dsr_matmul_geometry_init(const dsr_tensor *a, const dsr_tensor *b,
                             dsr_matmul_geometry *geometry);

/* Index value j of a Gather indices tensor: data_f32 when present, else data_q (I32 or I64). */
int64_t dsr_gather_index(const dsr_tensor *indices, int64_t j);

/* Returns the name of a dsr_op for messages, such as "CONV2D", or "?" when out of range. */
const char *dsr_op_label(int32_t op);

/* Checks node_index of model for mode: indices, input count, shapes and attributes. */
ds_status dsr_validate_node(const dsr_model *model, int32_t node_index, dsr_mode mode,
                            ds_error *err);

/* Checks the model as a whole (tensors, input, output, execution order), then every node. */
ds_status dsr_validate_model(const dsr_model *model, dsr_mode mode, ds_error *err);

/* Writes "(1,8,16,16)" into text (at least 96 bytes) and returns text. */
const char *dsr_shape_text(const dsr_tensor *tensor, char *text, size_t text_bytes);

/* Rounds bytes up to DSR_ALIGN_BYTES. */
static inline size_t dsr_align_up(size_t bytes) {
  return (bytes + (DSR_ALIGN_BYTES - 1)) & ~(size_t)(DSR_ALIGN_BYTES - 1);
}

/*
 * Arena layout shared by dsr_plan and dsr_context_init. tensor_offsets may be NULL (plan
 * only). Otherwise it receives each tensor's byte offset from the arena start, SIZE_MAX for
 * constants and unused tensors.
 */
typedef struct dsr_layout {
  size_t table_bytes;      /* tensor_offsets table, then the packed offset of each node */
  size_t input_bytes;      /* input_f32 */
  size_t output_bytes;     /* output_f32 */
  size_t activation_bytes; /* peak of the planned activations */
  size_t scratch_bytes;
  size_t packed_bytes;     /* constant operands packed for the fixed-point kernels */
  size_t arena_bytes;      /* sum of the above, each aligned */
} dsr_layout;

/* worker_count: tasks of the parallel hook (1 without one), each given private scratch.
 * tensor_offsets, when not NULL, receives tensor_count offsets and then node_count packed
 * offsets (SIZE_MAX for a node without packed constants). */
ds_status dsr_plan_layout(const dsr_model *model, dsr_mode mode, uint32_t flags,
                          int32_t worker_count, size_t *tensor_offsets, dsr_layout *layout,
                          ds_error *err);

#endif
