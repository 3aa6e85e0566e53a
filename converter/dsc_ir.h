/*
 * The converter's working graph: values (tensors) and nodes in ONNX terms, which the passes
 * fold, fuse, lift and finally lower into a dsr_model.
 *
 * Ownership: the graph owns every name, input and output array, constant buffer and deform
 * record; dsc_graph_free releases them. The parsed ModelProto stays alive while the graph
 * is used because nodes read their attributes from it.
 *
 * Values live in one growable array, so a dsc_value pointer is invalid after any call that
 * adds a value: keep indices across such calls.
 */
#ifndef DSC_IR_H
#define DSC_IR_H

#include <stdint.h>

#include "../common/ds_status.h"
#include "../runtime/dsr_model.h"
#include "dsc_import.h"
#include "onnx.pb-c.h"

/* Element types inside the converter. Every integer type is held as int64_t and BOOL as
 * int64_t 0 or 1; DOUBLE is narrowed to float. */
typedef enum dsc_dtype {
  DSC_DTYPE_UNKNOWN = 0,
  DSC_DTYPE_F32 = 1,
  DSC_DTYPE_I64 = 2,
  DSC_DTYPE_BOOL = 3,
} dsc_dtype;

/* Largest constant the converter folds or reads, in elements (256 MiB of floats). By the
 * structure of tools/models/dat.py, the largest constant of a DAT-B++ export at 224x224 is
 * the gathered neighbourhood bias of stage 1: 4 heads x 3136 x 3136 = 39.3M values. */
#define DSC_MAX_CONSTANT_ELEMENTS (INT64_C(1) << 26)
/* Largest tensor the converter accepts anywhere, in elements. */
#define DSC_MAX_TENSOR_ELEMENTS (INT64_C(1) << 31)
/* Budget for all constant storage the converter allocates while importing one model. */
#define DSC_MAX_CONSTANT_BYTES_TOTAL (INT64_C(3) << 30)
#define DSC_MAX_NODES 1000000
#define DSC_MAX_NODE_ARITY 64

typedef struct dsc_value {
  char *name;
  int32_t dtype;             /* dsc_dtype */
  int32_t rank;              /* -1 while the shape is unknown */
  int64_t dims[DSR_MAX_RANK];
  void *data;                /* float or int64_t elements; non-NULL marks a constant */
  int32_t producer;          /* node index, -1 for constants and the graph input */
  int32_t is_input;
  int32_t is_output;
} dsc_value;

typedef struct dsc_node {
  char *name;
  char *op_type;
  const Onnx__NodeProto *proto; /* attributes; NULL for nodes made by a pass */
  int32_t input_count;
  int32_t *inputs;           /* value indices, -1 for an absent optional input */
  int32_t output_count;
  int32_t *outputs;
  int32_t dead;              /* folded, fused, lifted or unreachable */
  int32_t op;                /* dsr_op once lowered, fused or lifted; 0 before */
  dsr_attrs attrs;
  dsr_deform_attn *deform;   /* DEFORM_ATTN: params hold value indices until the build */
} dsc_node;

typedef struct dsc_graph {
  const char *path;          /* for messages */
  const char *base_dir;      /* folder of the .onnx file, for external data; NULL: "." */
  dsc_value *values;
  int32_t value_count, value_capacity;
  dsc_node *nodes;
  int32_t node_count, node_capacity;
  int32_t *name_table;       /* open addressing, value index + 1, 0 when empty */
  int32_t name_table_size;   /* power of two */
  int32_t input;             /* value index of the graph input */
  int32_t output;            /* value index of the graph output */
  int32_t opset;
  int64_t ir_version;
  int64_t constant_bytes;    /* allocated so far, against DSC_MAX_CONSTANT_BYTES_TOTAL */

  /* Consumers of each value among live nodes, rebuilt by dsc_graph_index_uses. */
  int32_t *use_offsets;      /* value_count + 1 */
  int32_t *use_nodes;
  int32_t use_value_count;   /* value_count when the index was built */

  dsc_report *report;        /* never NULL inside the passes */
} dsc_graph;

/* --- dsc_ir.c --- */
void dsc_graph_free(dsc_graph *g);
/* Returns the value index of name, or -1. */
int32_t dsc_graph_find(const dsc_graph *g, const char *name);
/* Adds a value called name (copied), with unknown shape; fails on a duplicate name. */
ds_status dsc_graph_add_value(dsc_graph *g, const char *name, int32_t *index, ds_error *err);
/* Adds a value whose name is made unique from base. */
ds_status dsc_graph_add_fresh_value(dsc_graph *g, const char *base, int32_t *index,
                                    ds_error *err);
/* Adds a node (name and op_type copied) with room for the given inputs and outputs, all -1. */
ds_status dsc_graph_add_node(dsc_graph *g, const char *name, const char *op_type,
                             int32_t input_count, int32_t output_count, int32_t *index,
                             ds_error *err);
/* Rebuilds the consumer index of live nodes. */
ds_status dsc_graph_index_uses(dsc_graph *g, ds_error *err);
/* Number of live consumers of value (an input used twice by one node counts twice). */
int32_t dsc_use_count(const dsc_graph *g, int32_t value);
/* The only live consumer node of value, or -1 when it has none or several. Also -1 when the
 * value is the graph output, since that is a use outside the graph. */
int32_t dsc_single_consumer(const dsc_graph *g, int32_t value);
/* The i-th live consumer node of value. */
int32_t dsc_consumer(const dsc_graph *g, int32_t value, int32_t i);

int64_t dsc_value_elements(const dsc_value *v);
int32_t dsc_is_constant(const dsc_graph *g, int32_t value);
/* Writes "(1, 8, 8, 8)" or "(unknown)" into text. */
const char *dsc_shape_text(const dsc_value *v, char *text, size_t size);
/* Allocates zeroed element storage of count elements for dtype; NULL on failure. */
void *dsc_alloc_elements(int32_t dtype, int64_t count);
/* Charges count elements of dtype to the graph's constant budget. */
ds_status dsc_charge_constant(dsc_graph *g, int32_t dtype, int64_t count, ds_error *err);
/* Sets v's data to a freshly allocated copy, freeing what it held. */
ds_status dsc_value_set_data(dsc_graph *g, int32_t value, int32_t dtype, int32_t rank,
                             const int64_t *dims, const void *data, ds_error *err);
/* Checks dims for negatives and computes the element count with an overflow and size cap. */
ds_status dsc_checked_elements(const dsc_graph *g, const char *what, int32_t rank,
                               const int64_t *dims, int64_t cap, int64_t *count,
                               ds_error *err);
/* Reads element i of a constant as double (float) or int64. */
double dsc_get_f(const dsc_value *v, int64_t i);
int64_t dsc_get_i(const dsc_value *v, int64_t i);

/* --- dsc_attr.c: node attributes, typed, with defaults --- */
const Onnx__AttributeProto *dsc_attr_find(const dsc_node *n, const char *name);
ds_status dsc_attr_int(const dsc_graph *g, const dsc_node *n, const char *name,
                       int64_t fallback, int64_t *out, ds_error *err);
ds_status dsc_attr_float(const dsc_graph *g, const dsc_node *n, const char *name,
                         float fallback, float *out, ds_error *err);
/* ints: *count is -1 when the attribute is absent. Up to capacity values are copied. */
ds_status dsc_attr_ints(const dsc_graph *g, const dsc_node *n, const char *name,
                        int64_t *out, int32_t capacity, int32_t *count, ds_error *err);
/* Copies a string attribute (NUL-terminated, truncated to size); fallback when absent. */
ds_status dsc_attr_string(const dsc_graph *g, const dsc_node *n, const char *name,
                          const char *fallback, char *out, size_t size, ds_error *err);

/* --- dsc_tensor.c: TensorProto and Constant node reading --- */
ds_status dsc_tensor_read(dsc_graph *g, const Onnx__TensorProto *t, const char *what,
                          int32_t value, ds_error *err);
ds_status dsc_constant_node_read(dsc_graph *g, const Onnx__NodeProto *node, int32_t value,
                                 ds_error *err);

/* --- dsc_external.c --- */
/* Reads the expected_bytes of an initializer stored in an external file into *bytes (caller
 * frees), after checking its location, offset and length. */
ds_status dsc_external_read(const dsc_graph *g, const Onnx__TensorProto *t, const char *what,
                            uint64_t expected_bytes, uint8_t **bytes, ds_error *err);

/* --- dsc_parse.c --- */
ds_status dsc_graph_from_proto(dsc_graph *g, const Onnx__ModelProto *model, ds_error *err);
ds_status dsc_graph_fix_input_shape(dsc_graph *g, const Onnx__ModelProto *model,
                                    const dsc_options *options, ds_error *err);

/* --- dsc_infer.c: folding and shape inference over all nodes in order --- */
ds_status dsc_topological_order(dsc_graph *g, int32_t **order, ds_error *err);
ds_status dsc_infer_graph(dsc_graph *g, ds_error *err);
/* Fails with the node, op and message; used by every op handler. */
ds_status dsc_node_fail(const dsc_graph *g, const dsc_node *n, ds_status status,
                        ds_error *err, const char *format, ...)
    __attribute__((format(printf, 5, 6)));
/* Output dims of numpy broadcasting of a and b. */
ds_status dsc_broadcast_shape(const dsc_graph *g, const dsc_node *n, const dsc_value *a,
                              const dsc_value *b, int32_t *rank, int64_t *dims,
                              ds_error *err);
/* Sets output i of n to an unknown-data value of the given type and shape. */
ds_status dsc_set_output_shape(dsc_graph *g, dsc_node *n, int32_t i, int32_t dtype,
                               int32_t rank, const int64_t *dims, ds_error *err);

/* Helpers shared by the op handlers (dsc_infer.c). */
int32_t dsc_inputs_constant(const dsc_graph *g, const dsc_node *n);
/* Checks that inputs 0..required-1 are present and the count is at most max_count. */
ds_status dsc_require_inputs(const dsc_graph *g, const dsc_node *n, int32_t required,
                             int32_t max_count, ds_error *err);
/* Reads constant integer input k (1-D or scalar) into out; fails when it is not constant. */
ds_status dsc_input_ints(const dsc_graph *g, const dsc_node *n, int32_t k, int64_t *out,
                         int32_t capacity, int32_t *count, ds_error *err);
/* Maps axis in -rank..rank-1 onto 0..rank-1. */
ds_status dsc_normalize_axis(const dsc_graph *g, const dsc_node *n, int64_t axis,
                             int32_t rank, int32_t *out, ds_error *err);
/* Sets output i's shape and gives it zeroed constant storage in *data. */
ds_status dsc_alloc_output(dsc_graph *g, dsc_node *n, int32_t i, int32_t dtype, int32_t rank,
                           const int64_t *dims, void **data, ds_error *err);
/* Offset into v (broadcast to out_rank, out_dims) of output element flat. */
int64_t dsc_broadcast_offset(const dsc_value *v, int32_t out_rank, const int64_t *out_dims,
                             int64_t flat);

/* Slice with constant starts, ends, axes and steps, resolved against in's shape: negative
 * indices count from the end, out-of-range ones (INT64_MAX, INT64_MIN) are clamped as ONNX
 * specifies. Element i of axis a of the output is element start[a] + i * step[a] of in. */
typedef struct dsc_slice_plan {
  int64_t start[DSR_MAX_RANK];
  int64_t step[DSR_MAX_RANK];
  int64_t dims[DSR_MAX_RANK];
} dsc_slice_plan;
ds_status dsc_plan_slice(const dsc_graph *g, const dsc_node *n, const dsc_value *in,
                         dsc_slice_plan *p, ds_error *err);

/* Op handlers: each infers the output shapes and, when the inputs allow, folds. Files:
 * dsc_ops_shape.c (shape arithmetic), dsc_ops_math.c (elementwise, reductions),
 * dsc_ops_nn.c (convolution, products, sampling). */
typedef ds_status (*dsc_op_handler)(dsc_graph *g, dsc_node *n, ds_error *err);
dsc_op_handler dsc_find_handler(const char *op_type);
dsc_op_handler dsc_find_shape_handler(const char *op_type);
dsc_op_handler dsc_find_math_handler(const char *op_type);
dsc_op_handler dsc_find_nn_handler(const char *op_type);
/* Pad and Gelu (dsc_ops_extra.c). */
dsc_op_handler dsc_find_extra_handler(const char *op_type);

/* --- dsc_fuse.c --- */
ds_status dsc_fuse_layer_norm(dsc_graph *g, ds_error *err);
ds_status dsc_fuse_gelu(dsc_graph *g, ds_error *err);

/* Turns MatMul(A, B) + C with A 2-D, B a constant 2-D weight and C a constant bias of B's
 * columns into one GEMM node (dsc_fuse_matmul.c). */
ds_status dsc_fuse_matmul_add(dsc_graph *g, ds_error *err);

/* --- dsc_lift.c --- */
ds_status dsc_lift_deform_blocks(dsc_graph *g, ds_error *err);

/* --- dsc_lower.c --- */
ds_status dsc_mark_live(dsc_graph *g, ds_error *err);
ds_status dsc_lower_graph(dsc_graph *g, ds_error *err);

/* Lowers the data-movement and product ops that have no one-to-one dsr op: Slice, Concat,
 * Expand, Where, Pad and Einsum (dsc_lower_ops.c). *done is 1 when node index was lowered;
 * an op it cannot lower is left for the unsupported-op report, or fails when the node is
 * of a lowered type but its inputs rule it out (the message names node, op and shapes). */
ds_status dsc_lower_data_op(dsc_graph *g, int32_t index, int *done, ds_error *err);

/* --- dsc_passes.c --- */
/* Runs pass and appends its dsc_pass_stats to the report. changed (may be NULL) is the report
 * counter whose growth is the pass's changed_count, counted in unit ("folded", "fused"). */
ds_status dsc_run_pass(dsc_graph *g, const char *name, const char *unit,
                       ds_status (*pass)(dsc_graph *, ds_error *), const int32_t *changed,
                       ds_error *err);
/* Appends the first report row: the ONNX Constant nodes that became constant values when the
 * graph was built, so the ONNX node count leads to the first pass's count. */
ds_status dsc_record_constants_step(dsc_graph *g, int32_t onnx_node_count, ds_error *err);

/* --- dsc_build.c --- */
ds_status dsc_build_model(dsc_graph *g, dsr_model *model, ds_error *err);

#endif
