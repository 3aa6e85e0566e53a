/*
 * Layer list of the cost model: every layer of a network reduced to the geometry that DRAM
 * traffic, on-chip buffers and compute cycles depend on.
 *
 * A list comes from a converted model (dsn_layers_from_model, one layer per node that moves
 * data) or from an architecture description (nas/dsn_arch.h), so that networks too large to
 * import can be priced the same way.
 *
 * Geometry of a dense layer, as the tiler sees it. Tensors are stored row-major in DRAM:
 * feature maps channels-last (HWC), so one map row is W * C elements; other activations with
 * their last axis innermost. A layer computes group_count independent groups (heads or
 * windows of a batched matmul); per group:
 * - the output is out_rows rows of out_width * out_cols elements, where out_cols is the axis
 *   the weights produce (output channels), so weight chunks split it;
 * - input 0 (streamed) is in_rows rows of in_row_elems; output rows [o0, o1) need input rows
 *   [o0 * stride - pad, (o1 - 1) * stride - pad + kernel), clipped to the map: the halo of a
 *   kernel taller than its stride is read again by the next tile;
 * - input 1 (optional, streamed) has the output's rows (a residual addition);
 * - the operand (optional) is held whole on chip: the right-hand matrix of an
 *   activation-by-activation matmul or a broadcast input;
 * - weights are constants, read once when they fit half the weight buffer and otherwise in
 *   chunks of output columns, each chunk streaming the input again.
 * A reduction (global pooling) streams its input in any tiles and writes its output once.
 * When one output row of a map does not fit the feature buffer, rows are also split into
 * bands of output pixels, each reading the kernel's halo columns (in_width, kernel_w,
 * stride_w, pad_w).
 */
#ifndef DSN_LAYER_H
#define DSN_LAYER_H

#include <stdint.h>

#include "common/ds_status.h"
#include "nas/dsn_preset.h"
#include "runtime/dsr_model.h"

typedef enum dsn_layer_kind {
  DSN_LAYER_CONV = 0,        /* 2-D convolution (stem, downsampling, depthwise) */
  DSN_LAYER_LINEAR = 1,      /* activation times constant matrix (projections, MLP) */
  DSN_LAYER_MATMUL = 2,      /* activation times activation (attention scores, context) */
  DSN_LAYER_ATTENTION = 3,   /* fused local attention core: window, shifted window or
                                neighbourhood (scores, softmax, context in one pass) */
  DSN_LAYER_NORM = 4,        /* LayerNorm */
  DSN_LAYER_ELEMENTWISE = 5, /* add, sub, mul, div, GELU */
  DSN_LAYER_SOFTMAX = 6,
  DSN_LAYER_LAYOUT = 7,      /* transpose, gather: data movement only */
  DSN_LAYER_POOL = 8,        /* global average pooling */
  DSN_LAYER_HEAD = 9,        /* the classifier: a linear layer that writes the model output */
  DSN_LAYER_DEFORM = 10,     /* deformable attention: sliced, see nas/dsn_oracle.h */
  DSN_LAYER_KIND_COUNT = 11
} dsn_layer_kind;

typedef struct dsn_layer {
  char name[DSR_NAME_BYTES];
  int32_t kind;               /* dsn_layer_kind */
  int32_t node;               /* index into dsr_model.nodes, or -1 for a described layer */
  int32_t input_tensor;       /* tensor indices in dsr_model.tensors, or -1: input 0 */
  int32_t input2_tensor;      /* input 1 */
  int32_t operand_tensor;
  int32_t output_tensor;
  int32_t stage;              /* 0-based network stage for described layers, else -1 */

  int64_t group_count;        /* independent groups, at least 1 */
  int64_t out_rows;
  int64_t out_width;          /* out_width * out_cols elements per output row */
  int64_t out_cols;
  int64_t in_rows;            /* streamed input 0 */
  int64_t in_row_elems;
  int32_t kernel;             /* rows of input 0 per output row; 1 for row-aligned layers */
  int32_t stride;
  int32_t pad;
  int32_t in_width;           /* pixels per input row when a row is in_width pixels of
                                 in_row_elems / in_width channels (a map); 0 for a matrix,
                                 whose rows are never split */
  int32_t kernel_w;           /* the kernel along a row: input pixels per output pixel */
  int32_t stride_w;
  int32_t pad_w;
  int32_t second_input;       /* 1: input 1 is streamed with the output's rows and shape */
  int32_t reduce;             /* 1: the output is written once after the whole input */
  int64_t operand_elems;      /* per group, held whole on chip; 0 when absent */
  int64_t weight_bytes;       /* all constant tensors of the layer */
  int64_t weight_count;       /* their elements (parameters) */

  int64_t macs_per_output;    /* multiply-accumulates per output element, on the MAC array */
  int64_t vector_ops_per_elem; /* vector-unit operations per output element (per input
                                  element for a reduction) */

  dsr_deform_attn deform;     /* DSN_LAYER_DEFORM only: geometry, slice and parameters */
} dsn_layer;

typedef struct dsn_layer_list {
  int32_t count;
  int32_t capacity;
  dsn_layer *layers;          /* owned: dsn_layer_list_free */
  char source[160];           /* what the list was built from, for reports */
} dsn_layer_list;

/* Lower-case kind name ("conv", "deform"), or "unknown". */
const char *dsn_layer_kind_name(int32_t kind);

/*
 * Builds one layer per node of model that moves data, in node order: reshapes (views of the
 * same bytes) are left out. Constants count as weights at weight_bits, 1-D constants (biases,
 * LayerNorm parameters) at accumulator_bits. Errors: DS_ERR_INVALID_ARGUMENT for a node
 * whose shapes the cost model cannot read (the message names the node), DS_ERR_OUT_OF_MEMORY.
 */
ds_status dsn_layers_from_model(const dsr_model *model, const dsn_preset *preset,
                                dsn_layer_list *list, ds_error *err);

/* Appends a copy of layer, growing the array. DS_ERR_OUT_OF_MEMORY on failure. */
ds_status dsn_layer_list_append(dsn_layer_list *list, const dsn_layer *layer, ds_error *err);

void dsn_layer_list_free(dsn_layer_list *list);

/* Number of DSN_LAYER_DEFORM layers. */
int32_t dsn_layer_list_deform_count(const dsn_layer_list *list);

/* Writes the map size of layer for tables: "HxWxC" for maps, "RxC" for matrices. */
void dsn_layer_map_text(const dsn_layer *layer, char *text, int32_t size);

#endif
