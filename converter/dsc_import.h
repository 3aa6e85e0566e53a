/*
 * The ONNX importer: turns an ONNX file exported from PyTorch (DAT, DAT++ and plain CNN or
 * transformer parts) into a float dsr_model the reference runtime can execute.
 *
 * Steps, in order:
 *   1. Parse the protobuf (every byte untrusted), check the IR version (>= 3) and the opset of
 *      the default domain (DSC_OPSET_MIN..DSC_OPSET_MAX), read initializers (raw_data, the
 *      typed fields, or external data files in the model's folder) and Constant nodes.
 *   2. Fix the input shape from the options or from the file's static shape.
 *   3. Fold every node whose inputs are all constant and infer every static shape.
 *   4. Fuse the decomposed LayerNorm and exact GELU patterns, map LayerNormalization and
 *      Gelu, and fuse MatMul with a constant 2-D weight plus a bias Add into GEMM.
 *   5. Lift each deformable attention block (found by its PREFIX.proj_q/k/v/out and
 *      PREFIX.conv_offset.* initializers) into one DSR_OP_DEFORM_ATTN node.
 *   6. Remove dead nodes, map the rest onto dsr ops (Slice and Expand become GATHER, Einsum
 *      becomes MATMUL between transposes, Where with a constant condition becomes MUL and
 *      ADD), order the nodes topologically and build the model. Unsupported op types are
 *      reported together in one error.
 *
 * Constants in the built model:
 *   - Weights and every float constant: data_f32.
 *   - Gather indices, already made non-negative: data_f32 contains them as floats (exact
 *     for axes shorter than 2^24) and data_q as int32 (always exact), with qparams
 *     {scale 1, zero_point 0, DSR_DTYPE_I32, 32 bits} and has_qparams 1.
 *
 * Thread safety: the functions keep no global state; separate calls may run in parallel.
 */
#ifndef DSC_IMPORT_H
#define DSC_IMPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/ds_model.h"
#include "../common/ds_status.h"

#define DSC_OPSET_MIN 13
#define DSC_OPSET_MAX 21
#define DSC_IR_VERSION_MIN 3

#define DSC_MAX_REPORT_BLOCKS 64
#define DSC_MAX_REPORT_OP_TYPES 64
#define DSC_MAX_REPORT_PASSES 12

typedef struct dsc_options {
  int32_t input_shape[4]; /* used when input_rank > 0 */
  int32_t input_rank;     /* 0: take the file's static shape */
} dsc_options;

/* One lifted deformable attention block. */
typedef struct dsc_block_info {
  char name[96];              /* the parameter prefix, such as "stages.2.attns.1" */
  int32_t channels, height, width;
  int32_t groups, heads;
  int32_t offset_kernel, offset_stride;
  int32_t samples_h, samples_w; /* offset grid Hk x Wk of the full map */
  int32_t convention;         /* dsr_deform_convention */
  float offset_range_factor;  /* DAT only, else 0 */
} dsc_block_info;

typedef struct dsc_op_count {
  char op_type[32];
  int32_t count;
} dsc_op_count;

/* Graph size around one pass. Nodes are the live nodes of the working graph (Constant nodes
 * are constants, not nodes); tensors are the distinct values those nodes read or write,
 * constants included. */
typedef struct dsc_pass_stats {
  char name[32];
  int32_t nodes_before, nodes_after;
  int32_t tensors_before, tensors_after;
  int32_t changed_count; /* nodes folded or removed, patterns fused, blocks lifted, nodes
                            lowered, counted in unit */
  char unit[16];          /* "folded", "fused", "lifted", "removed", "lowered" */
} dsc_pass_stats;

typedef struct dsc_report {
  int32_t ir_version;
  int32_t opset;                  /* of the default domain */
  int32_t onnx_node_count;        /* Constant nodes included */
  int32_t onnx_initializer_count;

  /* ONNX op types of the file and their counts, in first-seen order. Types past
   * DSC_MAX_REPORT_OP_TYPES are counted in op_type_overflow_count. */
  int32_t op_type_count;
  dsc_op_count ops_before[DSC_MAX_REPORT_OP_TYPES];
  int32_t op_type_overflow_count;

  int32_t folded_node_count;      /* nodes replaced by constants */
  int32_t layer_norm_fused_count; /* decomposed LayerNorm patterns and LayerNormalization ops */
  int32_t gelu_fused_count;       /* decomposed exact GELU patterns and Gelu ops */
  int32_t matmul_add_fused_count; /* MatMul plus bias Add pairs turned into GEMM */
  int32_t dead_node_count;        /* live nodes no path leads from to the output */
  int32_t lowered_node_count;     /* ONNX nodes mapped onto one runtime op or a chain of them */

  /* The passes in the order they ran. */
  int32_t pass_count;
  dsc_pass_stats passes[DSC_MAX_REPORT_PASSES];

  int32_t node_count_after;
  int32_t tensor_count_after;
  int32_t constant_count_after;
  int64_t constant_element_count; /* float values held by the model's constants */
  int32_t ops_after[DSR_OP_COUNT]; /* indexed by dsr_op */

  int32_t block_count;
  dsc_block_info blocks[DSC_MAX_REPORT_BLOCKS];
} dsc_report;

/*
 * Imports the ONNX file at path into model, which the caller frees with ds_model_free.
 * options may be NULL (take the file's input shape); report may be NULL.
 * On failure model is left zeroed and err names the file, the node or initializer, the value
 * and the fix. Statuses: DS_ERR_IO (cannot read), DS_ERR_ONNX_PARSE, DS_ERR_ONNX_VERSION,
 * DS_ERR_UNSUPPORTED_OP, DS_ERR_SHAPE, DS_ERR_GRAPH, DS_ERR_OUT_OF_MEMORY,
 * DS_ERR_INVALID_ARGUMENT.
 */
ds_status dsc_import_file(const char *path, const dsc_options *options, dsr_model *model,
                          dsc_report *report, ds_error *err);

/* Same as dsc_import_file for bytes already in memory; path_for_messages names them in
 * errors and may be NULL. External data files are looked up in the folder of
 * path_for_messages, or in the working directory when it has none. data is only read. */
ds_status dsc_import_buffer(const uint8_t *data, size_t size, const char *path_for_messages,
                            const dsc_options *options, dsr_model *model, dsc_report *report,
                            ds_error *err);

/* Writes the report as text: versions, op histograms before and after, fused patterns and
 * the table of deformable blocks. */
void dsc_report_print(const dsc_report *report, FILE *out);

/* Name of a dsr_op, such as "DEFORM_ATTN"; "?" when out of range. */
const char *dsc_op_name(int32_t op);

#endif
