/*
 * The model the reference runtime executes: tensors, nodes in execution order, and the
 * lifted deformable-attention operator.
 *
 * The converter builds a dsr_model from ONNX, the quantizer adds fixed-point parameters to
 * it, the artifact writer serializes it and the artifact reader rebuilds it. The runtime only
 * reads it. Every array is owned by whoever built the model: the converter, the quantizer
 * and the artifact reader give each array its own heap block, freed by ds_model_free in
 * common/ds_model.h. The runtime never frees or resizes anything in it.
 *
 * Layout conventions:
 * - Shapes are NCHW with batch 1 for feature maps; dims[0] is the outermost axis.
 * - Element data is stored row-major, little-endian.
 * - Float weights are kept beside quantized ones so that one model runs in both modes.
 */
#ifndef DSR_MODEL_H
#define DSR_MODEL_H

#include <stdint.h>

#define DSR_MAX_RANK 6
#define DSR_MAX_NODE_INPUTS 4
#define DSR_MAX_NODE_OUTPUTS 1
#define DSR_NAME_BYTES 96

typedef enum dsr_dtype {
  DSR_DTYPE_F32 = 0,
  DSR_DTYPE_I8 = 1,
  DSR_DTYPE_I16 = 2,
  DSR_DTYPE_I32 = 3,
  DSR_DTYPE_I64 = 4, /* converter-side constants only (shape arithmetic); never executed */
} dsr_dtype;

typedef enum dsr_tensor_kind {
  DSR_TENSOR_CONSTANT = 0,   /* weights and folded constants: data is set */
  DSR_TENSOR_ACTIVATION = 1, /* produced by a node, lives in the arena */
  DSR_TENSOR_INPUT = 2,      /* the model input, written by the caller */
  DSR_TENSOR_OUTPUT = 3,     /* produced by a node and read by the caller */
} dsr_tensor_kind;

/* Affine quantization of one tensor: real = scale * (q - zero_point). */
typedef struct dsr_qparams {
  float scale;
  int32_t zero_point;
  uint8_t dtype;          /* dsr_dtype of the quantized values: I8, I16 or I32 */
  uint8_t bits;           /* 8, 16 or 32 */
  uint8_t reserved[2];
} dsr_qparams;

typedef struct dsr_tensor {
  char name[DSR_NAME_BYTES];
  uint8_t kind;           /* dsr_tensor_kind */
  uint8_t reserved[3];
  int32_t rank;
  int32_t dims[DSR_MAX_RANK];

  /* Float mode: constant values (NULL for non-constants). element_count floats. */
  const float *data_f32;

  /*
   * Fixed-point mode. For activations, qparams gives the type and scale. For constants,
   * data_q contains the quantized values (int8 weights, int32 biases) and, for per-channel
   * weights, channel_scales contains one scale per slice along channel_axis (else NULL).
   */
  dsr_qparams qparams;
  int32_t has_qparams;    /* 1 once calibrated or quantized */
  const void *data_q;
  const float *channel_scales;
  int32_t channel_axis;
  int32_t channel_count;
} dsr_tensor;

typedef enum dsr_op {
  DSR_OP_CONV2D = 1,          /* in: x, w, [b]. Grouped, strided, padded 2-D convolution */
  DSR_OP_MATMUL = 2,          /* in: a, b. Batched, numpy broadcasting over batch axes */
  DSR_OP_GEMM = 3,            /* in: a, b (K,N) or (N,K), [c]. attrs.gemm. a is (M,K), or
                                 with trans_a 0 any rank >= 2 (..., K) whose leading axes
                                 are the rows; the output is a's shape with K replaced by N.
                                 Beyond rank 2, c holds N values along its last axis. */
  DSR_OP_ADD = 4,             /* elementwise with numpy broadcasting */
  DSR_OP_SUB = 5,
  DSR_OP_MUL = 6,
  DSR_OP_DIV = 7,
  DSR_OP_LAYER_NORM = 8,      /* in: x, gamma, beta. Normalizes the last attrs.axis..end */
  DSR_OP_GELU = 9,            /* exact erf form */
  DSR_OP_SOFTMAX = 10,        /* over attrs.axis */
  DSR_OP_TRANSPOSE = 11,      /* attrs.perm */
  DSR_OP_RESHAPE = 12,        /* output shape from the output tensor; also Flatten, Squeeze,
                                 Unsqueeze and Identity */
  DSR_OP_GATHER = 13,         /* in: x, indices (constant I64 or I32). attrs.axis */
  DSR_OP_GLOBAL_AVG_POOL = 14,
  DSR_OP_DEFORM_ATTN = 15,    /* the lifted deformable attention layer: node.deform */
  DSR_OP_CONCAT = 16,         /* in: 2 to 4 tensors joined along attrs.axis */
  DSR_OP_PAD = 17,            /* in: x. Constant padding, attrs.pad */
  DSR_OP_COUNT = 18
} dsr_op;

typedef struct dsr_conv_attrs {
  int32_t stride[2];          /* h, w */
  int32_t pad[4];             /* top, left, bottom, right */
  int32_t dilation[2];
  int32_t group;
} dsr_conv_attrs;

typedef struct dsr_gemm_attrs {
  float alpha;
  float beta;
  int32_t trans_a;
  int32_t trans_b;
} dsr_gemm_attrs;

typedef union dsr_attrs {
  dsr_conv_attrs conv;
  dsr_gemm_attrs gemm;
  struct { int32_t axis; float epsilon; } norm;   /* LAYER_NORM */
  struct { int32_t axis; } softmax;               /* SOFTMAX, GATHER, CONCAT (axis) */
  struct { int32_t perm[DSR_MAX_RANK]; } transpose;
  /* PAD: begin[i] elements of value before and end[i] after axis i, both >= 0. */
  struct { int32_t begin[DSR_MAX_RANK]; int32_t end[DSR_MAX_RANK]; float value; } pad;
} dsr_attrs;

/* Offset convention of the deformable layer. */
typedef enum dsr_deform_convention {
  DSR_DEFORM_DAT = 0,    /* reference / Hk, offsets tanh(o) * factor / Hk, no clamp */
  DSR_DEFORM_DAT_PP = 1, /* reference / (Hk - 1), raw offsets, positions clamped to [-1, 1] */
  /* DAT as its 2022 code computes it. Offsets and reference points are DSR_DEFORM_DAT's, but
   * each query reads the bias table from its pixel centre normalised by H and W,
   * (y + 0.5) / H * 2 - 1, instead of y / (H - 1) * 2 - 1. */
  DSR_DEFORM_DAT_CENTRED = 2,
} dsr_deform_convention;

typedef enum dsr_slice_semantics {
  DSR_SLICE_PHYSICAL = 0, /* offsets keep full-map pixel scale, clamped into the patch */
  DSR_SLICE_CROP = 1,     /* the extended patch is a standalone image; offsets rescale */
} dsr_slice_semantics;

/* Slice configuration of one deformable layer; (1, 1, 0) is the unsliced layer. */
typedef struct dsr_slice {
  int32_t rows;
  int32_t cols;
  int32_t overlap;        /* pixels added on every side of a core patch, clipped at the map */
  int32_t semantics;      /* dsr_slice_semantics */
} dsr_slice;

/* Indices into dsr_model.tensors of the deformable layer's parameters. */
typedef enum dsr_deform_param {
  DSR_DEFORM_PROJ_Q_W = 0,    /* (C, C, 1, 1) */
  DSR_DEFORM_PROJ_Q_B,        /* (C) */
  DSR_DEFORM_OFFSET_DW_W,     /* (Cg, 1, k, k) depthwise, shared by the groups */
  DSR_DEFORM_OFFSET_DW_B,     /* (Cg) */
  DSR_DEFORM_OFFSET_LN_G,     /* (Cg) LayerNorm over channels */
  DSR_DEFORM_OFFSET_LN_B,     /* (Cg) */
  DSR_DEFORM_OFFSET_PW_W,     /* (2, Cg, 1, 1) no bias; channel 0 is dy, 1 is dx */
  DSR_DEFORM_PROJ_K_W,
  DSR_DEFORM_PROJ_K_B,
  DSR_DEFORM_PROJ_V_W,
  DSR_DEFORM_PROJ_V_B,
  DSR_DEFORM_PROJ_OUT_W,
  DSR_DEFORM_PROJ_OUT_B,
  DSR_DEFORM_RPE_TABLE,       /* (heads, 2H-1, 2W-1), or the size for another map */
  DSR_DEFORM_PARAM_COUNT
} dsr_deform_param;

/*
 * Intermediate tensors inside the deformable layer. The quantizer calibrates one qparams per
 * stage; the float kernel reports each stage to an observer during calibration.
 */
typedef enum dsr_deform_stage {
  DSR_DEFORM_STAGE_Q = 0,         /* proj_q output (C, H, W) */
  DSR_DEFORM_STAGE_OFFSET_DW,     /* depthwise conv output */
  DSR_DEFORM_STAGE_OFFSET_LN,     /* LayerNorm output */
  DSR_DEFORM_STAGE_OFFSET_GELU,   /* GELU output */
  DSR_DEFORM_STAGE_OFFSET,        /* raw offsets (2 per position), before tanh or clamp */
  DSR_DEFORM_STAGE_SAMPLED,       /* bilinear samples of x */
  DSR_DEFORM_STAGE_K,
  DSR_DEFORM_STAGE_V,
  DSR_DEFORM_STAGE_LOGITS,        /* scaled q.k plus bias, softmax input */
  DSR_DEFORM_STAGE_BIAS,          /* sampled relative position bias */
  DSR_DEFORM_STAGE_ATTN,          /* softmax output */
  DSR_DEFORM_STAGE_CONTEXT,       /* attention-weighted v, proj_out input */
  DSR_DEFORM_STAGE_COUNT
} dsr_deform_stage;

typedef struct dsr_deform_attn {
  int32_t channels;           /* C */
  int32_t height, width;      /* H, W of the full map */
  int32_t groups;             /* offset groups g; C / g channels per group */
  int32_t heads;              /* heads; heads / g per group */
  int32_t head_channels;      /* C / heads */
  int32_t offset_kernel;      /* k of the depthwise offset conv */
  int32_t offset_stride;      /* r */
  int32_t offset_pad;         /* usually k / 2 */
  int32_t convention;         /* dsr_deform_convention */
  float offset_range_factor;  /* DAT only */
  float attn_scale;           /* head_channels ^ -0.5 */
  float ln_epsilon;
  int32_t params[DSR_DEFORM_PARAM_COUNT]; /* tensor indices */
  dsr_slice slice;
  dsr_qparams stage_qparams[DSR_DEFORM_STAGE_COUNT];
} dsr_deform_attn;

typedef struct dsr_node {
  char name[DSR_NAME_BYTES];  /* the ONNX node (or block prefix) it came from */
  int32_t op;                 /* dsr_op */
  int32_t input_count;
  int32_t inputs[DSR_MAX_NODE_INPUTS];   /* tensor indices; -1 for an absent optional input */
  int32_t output;                        /* tensor index */
  dsr_attrs attrs;
  dsr_deform_attn *deform;    /* DEFORM_ATTN only */

  /*
   * Fixed-point parameters derived by the quantizer (multipliers, shifts, lookup tables),
   * as a flat array of int32 whose layout per op is documented in quant/dsq_params.h.
   */
  const int32_t *qwords;
  int32_t qword_count;
} dsr_node;

typedef struct dsr_model {
  char name[DSR_NAME_BYTES];
  int32_t tensor_count;
  dsr_tensor *tensors;
  int32_t node_count;
  dsr_node *nodes;            /* in execution order: every input is produced earlier */
  int32_t input;              /* tensor index of the single model input */
  int32_t output;             /* tensor index of the single model output */
  int32_t quantized;          /* 1 when every tensor and node has fixed-point parameters */
} dsr_model;

/* Number of elements of a tensor (product of dims; 1 for rank 0). */
static inline int64_t dsr_tensor_elements(const dsr_tensor *t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t->rank; i++)
    n *= t->dims[i];
  return n;
}

#endif
