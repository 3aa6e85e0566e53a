/*
 * The quantizer: chooses every tensor's fixed-point type and scale from calibration ranges,
 * quantizes the constants and derives each node's qwords. The arithmetic the numbers feed is
 * documented in docs/fixed-point.md and quant/dsq_params.h.
 *
 * Order of work (each step needs the previous one):
 *   1. roles of constants (weight, bias, plain operand, ...) and int16 demands of activations;
 *   2. alias groups: TRANSPOSE, RESHAPE and GATHER move data, so input and output share one
 *      qparams, chosen from the union of their ranges;
 *   3. activation and stage qparams;
 *   4. weights (per channel), then biases (at input scale times weight scale), then the
 *      remaining constants;
 *   5. qwords of every node.
 */
#include "dsq_quantize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/dsr_fixed_math.h"
#include "dsq_params.h"

/* Softmax inputs more than this far below the largest value saturate. exp(-64) is far below
 * the 2^-15 resolution of the probabilities, so clipping them changes nothing. Without the
 * clip, a mask value such as -10^4 would set the scale of the whole tensor. */
#define DSQ_SOFTMAX_INPUT_SPAN 64.0f

#define DSQ_LOG2_E 1.4426950408889634074

/* int16_demand values of a dsq_options.tensor_precision override. */
#define DEMAND_FORCE_INT16 2
#define DEMAND_FORCE_INT8 3

typedef enum constant_role {
  ROLE_NONE = 0,
  ROLE_WEIGHT,    /* int8 per channel along role_axis */
  ROLE_BIAS,      /* int32 at input scale times weight scale */
  ROLE_PLAIN,     /* int16 symmetric per tensor (or the qparams of its alias group) */
  ROLE_INDEX,     /* gather indices: left as the converter made them */
  ROLE_FLOAT,     /* read from data_f32 into qwords only (LayerNorm gamma/beta, divisors) */
  ROLE_TABLE,     /* the deformable layer's bias table: int16 symmetric */
} constant_role;

typedef struct quant_state {
  dsr_model *model;
  const dsq_calibration *calib;
  dsq_options options;
  ds_error *err;
  int32_t *parent;          /* alias group union-find */
  uint8_t *role;            /* constant_role per tensor */
  int32_t *role_axis;       /* channel axis of weights */
  uint8_t *int16_demand;    /* per tensor: 0, 1 (the flags demand int16) or DEMAND_FORCE_* */
  uint8_t *softmax_input;   /* per tensor */
  uint8_t *softmax_output;  /* per tensor */
  float *clip_bound;        /* ADD/SUB constant operands: 0 = none */
} quant_state;

/* ------------------------------------------------------------------ small helpers */

dsq_options dsq_options_default(void) {
  dsq_options options;
  memset(&options, 0, sizeof options);
  options.int16 = DSQ_INT16_DEFAULT;
  return options;
}

int dsq_quantize_multiplier(double real, int wide, int32_t *multiplier, int32_t *shift) {
  *multiplier = 0;
  *shift = 0;
  if (!isfinite(real))
    return 0;
  if (real == 0.0)
    return 1;
  int exponent;
  double fraction = frexp(fabs(real), &exponent); /* in [0.5, 1) */
  int64_t q = llround(fraction * 2147483648.0);
  if (q == ((int64_t)1 << 31)) {
    q >>= 1;
    exponent++;
  }
  if (exponent < DSQ_SHIFT_MIN)
    return 1; /* |x * real| < 1/2 for every int32 x: the result is 0 */
  if (exponent > (wide ? DSQ_SHIFT_MAX_WIDE : DSQ_SHIFT_MAX))
    return 0;
  *multiplier = (int32_t)(real < 0 ? -q : q);
  *shift = exponent;
  return 1;
}

dsr_qparams dsq_qparams_int8(float min, float max) {
  dsr_qparams q;
  memset(&q, 0, sizeof q);
  double lo = min < 0.0f ? min : 0.0;
  double hi = max > 0.0f ? max : 0.0;
  if (hi - lo < 1e-8)
    hi = lo + 1e-8; /* a constant-zero tensor still needs a positive scale */
  double scale = (hi - lo) / 255.0;
  double zero = -128.0 - lo / scale;
  long zero_point = lround(zero);
  q.scale = (float)scale;
  q.zero_point = (int32_t)(zero_point < -128 ? -128 : (zero_point > 127 ? 127 : zero_point));
  q.dtype = DSR_DTYPE_I8;
  q.bits = 8;
  return q;
}

dsr_qparams dsq_qparams_int16(float bound) {
  dsr_qparams q;
  memset(&q, 0, sizeof q);
  double b = fabs((double)bound);
  if (!(b > 1e-8))
    b = 1e-8;
  q.scale = (float)(b / 32767.0);
  q.zero_point = 0;
  q.dtype = DSR_DTYPE_I16;
  q.bits = 16;
  return q;
}

static dsr_qparams qparams_softmax_output(int int16) {
  dsr_qparams q;
  memset(&q, 0, sizeof q);
  q.scale = int16 ? 1.0f / 32768.0f : 1.0f / 256.0f;
  q.zero_point = int16 ? 0 : -128;
  q.dtype = int16 ? DSR_DTYPE_I16 : DSR_DTYPE_I8;
  q.bits = int16 ? 16 : 8;
  return q;
}

static dsr_qparams qparams_for_range(float min, float max, int int16) {
  if (int16)
    return dsq_qparams_int16(fmaxf(fabsf(min), fabsf(max)));
  return dsq_qparams_int8(min, max);
}

static int32_t find_root(int32_t *parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

static void unite(int32_t *parent, int32_t a, int32_t b) {
  int32_t ra = find_root(parent, a), rb = find_root(parent, b);
  /* The smaller index becomes the root, so the grouping does not depend on visit order. */
  if (ra < rb)
    parent[rb] = ra;
  else if (rb < ra)
    parent[ra] = rb;
}

static int is_constant(const dsr_model *model, int32_t index) {
  return index >= 0 && index < model->tensor_count &&
         model->tensors[index].kind == DSR_TENSOR_CONSTANT;
}

static const char *op_label(int32_t op) {
  static const char *const names[DSR_OP_COUNT] = {
      "?",       "CONV2D",    "MATMUL",     "GEMM",    "ADD",    "SUB",
      "MUL",     "DIV",       "LAYER_NORM", "GELU",    "SOFTMAX", "TRANSPOSE",
      "RESHAPE", "GATHER",    "GLOBAL_AVG_POOL",      "DEFORM_ATTN",
      "CONCAT",  "PAD"};
  return op > 0 && op < DSR_OP_COUNT ? names[op] : "unknown op";
}

/* ------------------------------------------------------------------ clearing */

static int is_gather_index(const dsr_model *model, int32_t tensor) {
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op == DSR_OP_GATHER && node->input_count > 1 && node->inputs[1] == tensor)
      return 1;
  }
  return 0;
}

void dsq_clear(dsr_model *model) {
  if (model == NULL)
    return;
  for (int32_t i = 0; i < model->tensor_count && model->tensors != NULL; i++) {
    dsr_tensor *t = &model->tensors[i];
    if (t->kind == DSR_TENSOR_CONSTANT && is_gather_index(model, i))
      continue;
    free((void *)t->data_q);
    free((void *)t->channel_scales);
    t->data_q = NULL;
    t->channel_scales = NULL;
    t->channel_axis = 0;
    t->channel_count = 0;
    t->has_qparams = 0;
    memset(&t->qparams, 0, sizeof t->qparams);
  }
  for (int32_t i = 0; i < model->node_count && model->nodes != NULL; i++) {
    dsr_node *node = &model->nodes[i];
    free((void *)node->qwords);
    node->qwords = NULL;
    node->qword_count = 0;
    if (node->deform != NULL)
      memset(node->deform->stage_qparams, 0, sizeof node->deform->stage_qparams);
  }
  model->quantized = 0;
}

/* ------------------------------------------------------------------ step 1: roles */

static ds_status set_role(quant_state *st, const dsr_node *node, int32_t tensor,
                          constant_role role, int32_t axis) {
  if (!is_constant(st->model, tensor))
    return DS_OK;
  dsr_tensor *t = &st->model->tensors[tensor];
  if (st->role[tensor] == ROLE_NONE) {
    st->role[tensor] = (uint8_t)role;
    st->role_axis[tensor] = axis;
    return DS_OK;
  }
  if (role == ROLE_WEIGHT && st->role[tensor] == ROLE_WEIGHT) {
    /* Two uses on different axes (a MATMUL constant as both operands): one scale for all. */
    if (st->role_axis[tensor] != axis)
      st->role_axis[tensor] = -1;
    return DS_OK;
  }
  if (st->role[tensor] != role || st->role_axis[tensor] != axis)
    return ds_fail(st->err, DS_ERR_QUANT,
                   "constant '%s' is used by node '%s' (%s) in a role (%d, axis %d) other than "
                   "its earlier one (%d, axis %d): give each use its own copy in the model",
                   t->name, node->name, op_label(node->op), role, axis, st->role[tensor],
                   st->role_axis[tensor]);
  return DS_OK;
}

static ds_status require_float(quant_state *st, const dsr_node *node, int32_t tensor) {
  const dsr_tensor *t = &st->model->tensors[tensor];
  if (t->data_f32 == NULL)
    return ds_fail(st->err, DS_ERR_QUANT, "node '%s' (%s): constant '%s' has no float data to "
                                          "quantize",
                   node->name, op_label(node->op), t->name);
  return DS_OK;
}

static ds_status assign_roles(quant_state *st) {
  dsr_model *model = st->model;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    const int32_t *in = node->inputs;
    for (int32_t j = 0; j < node->input_count; j++) {
      if (is_constant(model, in[j]) && !(node->op == DSR_OP_GATHER && j == 1))
        DS_TRY(require_float(st, node, in[j]));
    }
    switch (node->op) {
    case DSR_OP_CONV2D:
      DS_TRY(set_role(st, node, in[1], ROLE_WEIGHT, 0));
      if (node->input_count > 2 && in[2] >= 0)
        DS_TRY(set_role(st, node, in[2], ROLE_BIAS, 0));
      if (is_constant(model, in[0]) || !is_constant(model, in[1]))
        return ds_fail(st->err, DS_ERR_UNSUPPORTED_OP,
                       "node '%s' (CONV2D): fixed point needs an activation input and constant "
                       "weights",
                       node->name);
      break;
    case DSR_OP_GEMM:
      if (is_constant(model, in[0]) || !is_constant(model, in[1]))
        return ds_fail(st->err, DS_ERR_UNSUPPORTED_OP,
                       "node '%s' (GEMM): fixed point needs an activation A and a constant B",
                       node->name);
      DS_TRY(set_role(st, node, in[1], ROLE_WEIGHT, node->attrs.gemm.trans_b ? 0 : 1));
      if (node->input_count > 2 && in[2] >= 0)
        DS_TRY(set_role(st, node, in[2], ROLE_BIAS, 0));
      break;
    case DSR_OP_MATMUL:
      if (is_constant(model, in[0]) && is_constant(model, in[1]))
        return ds_fail(st->err, DS_ERR_UNSUPPORTED_OP,
                       "node '%s' (MATMUL): both operands are constant: fold it in the converter",
                       node->name);
      /* A constant operand is a weight: per column for b, per row for a. */
      if (is_constant(model, in[0]))
        DS_TRY(set_role(st, node, in[0], ROLE_WEIGHT, model->tensors[in[0]].rank - 2));
      if (is_constant(model, in[1]))
        DS_TRY(set_role(st, node, in[1], ROLE_WEIGHT, model->tensors[in[1]].rank - 1));
      break;
    case DSR_OP_ADD:
    case DSR_OP_SUB:
    case DSR_OP_MUL:
      if (is_constant(model, in[0]) && is_constant(model, in[1]))
        return ds_fail(st->err, DS_ERR_UNSUPPORTED_OP,
                       "node '%s' (%s): both operands are constant: fold it in the converter",
                       node->name, op_label(node->op));
      DS_TRY(set_role(st, node, in[0], ROLE_PLAIN, 0));
      DS_TRY(set_role(st, node, in[1], ROLE_PLAIN, 0));
      break;
    case DSR_OP_DIV:
      if (is_constant(model, in[0]))
        return ds_fail(st->err, DS_ERR_UNSUPPORTED_OP,
                       "node '%s' (DIV): a constant numerator is not supported in fixed point",
                       node->name);
      DS_TRY(set_role(st, node, in[1], ROLE_FLOAT, 0));
      break;
    case DSR_OP_LAYER_NORM:
      for (int32_t j = 1; j < node->input_count; j++)
        DS_TRY(set_role(st, node, in[j], ROLE_FLOAT, 0));
      break;
    case DSR_OP_GATHER:
      DS_TRY(set_role(st, node, in[1], ROLE_INDEX, 0));
      DS_TRY(set_role(st, node, in[0], ROLE_PLAIN, 0));
      break;
    case DSR_OP_CONCAT:
    case DSR_OP_PAD:
      for (int32_t j = 0; j < node->input_count; j++)
        DS_TRY(set_role(st, node, in[j], ROLE_PLAIN, 0));
      break;
    case DSR_OP_DEFORM_ATTN: {
      if (node->deform == NULL)
        return ds_fail(st->err, DS_ERR_GRAPH, "node '%s' (DEFORM_ATTN) has no layer parameters",
                       node->name);
      static const uint8_t roles[DSR_DEFORM_PARAM_COUNT] = {
          ROLE_WEIGHT, ROLE_BIAS,   ROLE_WEIGHT, ROLE_BIAS, ROLE_FLOAT,
          ROLE_FLOAT,  ROLE_WEIGHT, ROLE_WEIGHT, ROLE_BIAS, ROLE_WEIGHT,
          ROLE_BIAS,   ROLE_WEIGHT, ROLE_BIAS,   ROLE_TABLE};
      for (int32_t p = 0; p < DSR_DEFORM_PARAM_COUNT; p++) {
        int32_t index = node->deform->params[p];
        if (!is_constant(model, index) || model->tensors[index].data_f32 == NULL)
          return ds_fail(st->err, DS_ERR_GRAPH,
                         "node '%s' (DEFORM_ATTN): parameter %d (tensor %d) is not a float "
                         "constant",
                         node->name, p, index);
        DS_TRY(set_role(st, node, index, (constant_role)roles[p], 0));
      }
      break;
    }
    default:
      /* Unary ops and data movement: a constant input is a plain operand. */
      DS_TRY(set_role(st, node, in[0], ROLE_PLAIN, 0));
      break;
    }
  }
  return DS_OK;
}

/* Marks which activations need int16 and which tensors are softmax inputs and outputs. */
static void mark_demands(quant_state *st) {
  dsr_model *model = st->model;
  uint32_t flags = st->options.int16;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    int32_t x = node->inputs[0], y = node->output;
    if (flags & DSQ_INT16_ALL_ACTIVATIONS) {
      st->int16_demand[y] = 1;
      st->int16_demand[x] = 1;
    }
    if (node->op == DSR_OP_SOFTMAX) {
      st->softmax_input[x] = 1;
      st->softmax_output[y] = 1;
      if (flags & DSQ_INT16_LOGITS)
        st->int16_demand[x] = 1;
    }
    if (node->op == DSR_OP_LAYER_NORM && (flags & DSQ_INT16_NORM_INPUT))
      st->int16_demand[x] = 1;
    if (node->op == DSR_OP_LAYER_NORM && (flags & DSQ_INT16_NORM_OUTPUT))
      st->int16_demand[y] = 1;
    if ((node->op == DSR_OP_ADD || node->op == DSR_OP_SUB) && (flags & DSQ_INT16_RESIDUAL)) {
      for (int32_t j = 0; j < model->node_count; j++) {
        const dsr_node *consumer = &model->nodes[j];
        int feeds = consumer->op == DSR_OP_ADD || consumer->op == DSR_OP_SUB ||
                    consumer->op == DSR_OP_LAYER_NORM;
        for (int32_t k = 0; feeds && k < consumer->input_count; k++) {
          if (consumer->inputs[k] == y)
            st->int16_demand[y] = 1;
        }
      }
    }
  }
  if (flags & DSQ_INT16_LOGITS) {
    /* The operands of an ADD or SUB that produces a softmax input carry the logits too. */
    for (int32_t i = 0; i < model->node_count; i++) {
      const dsr_node *node = &model->nodes[i];
      if ((node->op == DSR_OP_ADD || node->op == DSR_OP_SUB) && st->softmax_input[node->output]) {
        for (int32_t k = 0; k < 2; k++) {
          if (!is_constant(model, node->inputs[k]))
            st->int16_demand[node->inputs[k]] = 1;
        }
      }
    }
  }
  if (flags & DSQ_INT16_OUTPUT)
    st->int16_demand[model->output] = 1;

  /* Overrides replace the flags' demand; alias groups resolve them later. */
  const uint8_t *choice = st->options.tensor_precision;
  for (int32_t i = 0; choice != NULL && i < model->tensor_count; i++) {
    if (model->tensors[i].kind == DSR_TENSOR_CONSTANT)
      continue;
    if (choice[i] == DSQ_PRECISION_INT16)
      st->int16_demand[i] = DEMAND_FORCE_INT16;
    else if (choice[i] == DSQ_PRECISION_INT8)
      st->int16_demand[i] = DEMAND_FORCE_INT8;
  }
}

/* ------------------------------------------------------------------ step 2 and 3 */

static ds_status constant_range(quant_state *st, int32_t index, float *min, float *max) {
  const dsr_tensor *t = &st->model->tensors[index];
  int64_t count = dsr_tensor_elements(t);
  *min = 0.0f;
  *max = 0.0f;
  for (int64_t i = 0; i < count; i++) {
    float v = t->data_f32[i];
    if (!isfinite(v))
      return ds_fail(st->err, DS_ERR_QUANT, "constant '%s' holds a non-finite value at element "
                                            "%lld: fix the exported model",
                     t->name, (long long)i);
    *min = fminf(*min, v);
    *max = fmaxf(*max, v);
  }
  return DS_OK;
}


/* Qparams of every activation, one decision per alias group. */
static ds_status assign_activation_qparams(quant_state *st) {
  dsr_model *model = st->model;
  int32_t count = model->tensor_count;
  for (int32_t i = 0; i < count; i++)
    st->parent[i] = i;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    /* PAD shares them too: its output range includes the pad value. */
    if (node->op == DSR_OP_TRANSPOSE || node->op == DSR_OP_RESHAPE ||
        node->op == DSR_OP_GATHER || node->op == DSR_OP_PAD)
      unite(st->parent, node->inputs[0], node->output);
  }

  /* Gather each group's range and flags at its root. */
  float *lo = malloc(sizeof(float) * (size_t)count);
  float *hi = malloc(sizeof(float) * (size_t)count);
  uint8_t *state = calloc((size_t)count, 4); /* [seen, int16, softmax in, softmax out] */
  if (lo == NULL || hi == NULL || state == NULL) {
    free(lo);
    free(hi);
    free(state);
    return ds_fail(st->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate quantizer state for %d "
                                                  "tensors",
                   count);
  }
  int32_t *group_size = calloc((size_t)count, sizeof(int32_t));
  if (group_size == NULL) {
    free(lo);
    free(hi);
    free(state);
    return ds_fail(st->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate quantizer state");
  }
  /* The type decides how far ranges may clip, so it is settled first: per group, an int16
   * override wins, then an int8 override, then any demand of the flags. */
  uint8_t *forced = calloc((size_t)count, 1); /* bit 0: int16 forced, bit 1: int8 forced */
  if (forced == NULL) {
    free(lo);
    free(hi);
    free(state);
    free(group_size);
    return ds_fail(st->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate quantizer state");
  }
  for (int32_t i = 0; i < count; i++) {
    int32_t root = find_root(st->parent, i);
    group_size[root]++;
    if (st->int16_demand[i] == DEMAND_FORCE_INT16)
      forced[root] |= 1;
    else if (st->int16_demand[i] == DEMAND_FORCE_INT8)
      forced[root] |= 2;
    else
      state[4 * root + 1] |= st->int16_demand[i];
  }
  for (int32_t i = 0; i < count; i++) {
    if (forced[i] & 1)
      state[4 * i + 1] = 1;
    else if (forced[i] & 2)
      state[4 * i + 1] = 0;
  }
  ds_status status = DS_OK;
  for (int32_t i = 0; i < count && status == DS_OK; i++) {
    const dsr_tensor *t = &model->tensors[i];
    int32_t root = find_root(st->parent, i);
    int grouped = group_size[root] > 1;
    if (t->kind == DSR_TENSOR_CONSTANT && !(grouped && st->role[i] == ROLE_PLAIN))
      continue;
    float mn = 0.0f, mx = 0.0f;
    if (t->kind == DSR_TENSOR_CONSTANT) {
      status = constant_range(st, i, &mn, &mx);
    } else {
      /* The largest logit and the output logits decide the result: never clip them. */
      int clip = !st->softmax_input[i] && i != model->output;
      int32_t levels = !clip ? 0 : (state[4 * root + 1] ? 65535 : 255);
      status = dsq_calibration_range(st->calib, i, -1, levels, &mn, &mx, st->err);
      if (status != DS_OK)
        status = ds_fail(st->err, status, "tensor %d '%.96s'", i, t->name);
    }
    if (status != DS_OK)
      break;
    uint8_t *s = state + 4 * root;
    lo[root] = s[0] ? fminf(lo[root], mn) : mn;
    hi[root] = s[0] ? fmaxf(hi[root], mx) : mx;
    s[0] = 1;
    s[2] |= st->softmax_input[i];
    s[3] |= st->softmax_output[i];
  }

  for (int32_t i = 0; i < count && status == DS_OK; i++) {
    dsr_tensor *t = &model->tensors[i];
    int32_t root = find_root(st->parent, i);
    const uint8_t *s = state + 4 * root;
    if (!s[0])
      continue;
    if (s[3]) {
      int overridden = (forced[root] & 3) == 2; /* int8 forced, int16 not */
      t->qparams = qparams_softmax_output(
          ((st->options.int16 & DSQ_INT16_ATTENTION) && !overridden) || s[1]);
    } else {
      float mn = lo[root], mx = hi[root];
      if (s[2] && mn < mx - DSQ_SOFTMAX_INPUT_SPAN)
        mn = mx - DSQ_SOFTMAX_INPUT_SPAN;
      t->qparams = qparams_for_range(mn, mx, s[1]);
    }
    t->has_qparams = 1;
  }
  free(lo);
  free(hi);
  free(state);
  free(group_size);
  free(forced);
  return status;
}

static ds_status stage_range(quant_state *st, int32_t node_index, int32_t stage, int int16,
                             float *min, float *max) {
  int32_t levels = stage == DSR_DEFORM_STAGE_LOGITS ? 0 : (int16 ? 65535 : 255);
  ds_status status =
      dsq_calibration_range(st->calib, node_index, stage, levels, min, max, st->err);
  if (status != DS_OK)
    return ds_fail(st->err, status, "stage %d of deformable node '%.96s'", stage,
                   st->model->nodes[node_index].name);
  return DS_OK;
}

static ds_status assign_stage_qparams(quant_state *st, int32_t node_index) {
  dsr_node *node = &st->model->nodes[node_index];
  dsr_deform_attn *d = node->deform;
  uint32_t flags = st->options.int16;
  int all = (flags & DSQ_INT16_ALL_ACTIVATIONS) != 0;
  for (int32_t s = 0; s < DSR_DEFORM_STAGE_COUNT; s++) {
    if (s == DSR_DEFORM_STAGE_SAMPLED) {
      d->stage_qparams[s] = st->model->tensors[node->inputs[0]].qparams;
      continue;
    }
    const uint8_t *choice =
        st->options.stage_precision != NULL
            ? st->options.stage_precision + (size_t)node_index * DSR_DEFORM_STAGE_COUNT
            : NULL;
    if (s == DSR_DEFORM_STAGE_ATTN) {
      int int16 = (flags & DSQ_INT16_ATTENTION) || all;
      if (choice != NULL && choice[s] != DSQ_PRECISION_BY_CLASS)
        int16 = choice[s] == DSQ_PRECISION_INT16;
      d->stage_qparams[s] = qparams_softmax_output(int16);
      continue;
    }
    int int16 = all;
    if (s == DSR_DEFORM_STAGE_LOGITS)
      int16 |= (flags & DSQ_INT16_LOGITS) != 0;
    if (s == DSR_DEFORM_STAGE_OFFSET_DW)
      int16 |= (flags & DSQ_INT16_NORM_INPUT) != 0;
    if (s == DSR_DEFORM_STAGE_OFFSET_LN)
      int16 |= (flags & DSQ_INT16_NORM_OUTPUT) != 0;
    if (s == DSR_DEFORM_STAGE_OFFSET)
      int16 |= (flags & DSQ_INT16_OFFSETS) != 0;
    if (choice != NULL && choice[s] != DSQ_PRECISION_BY_CLASS)
      int16 = choice[s] == DSQ_PRECISION_INT16;
    if (s == DSR_DEFORM_STAGE_BIAS)
      int16 = 1; /* recorded for reports; the kernel adds the bias at the LOGITS scale */
    float mn = 0.0f, mx = 0.0f;
    DS_TRY(stage_range(st, node_index, s, int16, &mn, &mx));
    if (s == DSR_DEFORM_STAGE_LOGITS && mn < mx - DSQ_SOFTMAX_INPUT_SPAN)
      mn = mx - DSQ_SOFTMAX_INPUT_SPAN;
    d->stage_qparams[s] = qparams_for_range(mn, mx, int16);
  }
  return DS_OK;
}

/* ------------------------------------------------------------------ step 4: constants */

static ds_status quantize_weight(quant_state *st, int32_t index) {
  dsr_tensor *t = &st->model->tensors[index];
  int32_t axis = st->role_axis[index]; /* -1: one scale for the whole tensor */
  if (axis < -1 || axis >= t->rank)
    return ds_fail(st->err, DS_ERR_SHAPE, "weight '%s': channel axis %d is outside rank %d",
                   t->name, axis, t->rank);
  int64_t count = dsr_tensor_elements(t);
  int32_t channels = axis >= 0 ? t->dims[axis] : 1;
  int64_t inner = axis >= 0 ? 1 : (count > 0 ? count : 1);
  for (int32_t k = axis + 1; axis >= 0 && k < t->rank; k++)
    inner *= t->dims[k];
  int8_t *q = malloc((size_t)(count > 0 ? count : 1));
  float *scales = malloc(sizeof(float) * (size_t)channels);
  if (q == NULL || scales == NULL) {
    free(q);
    free(scales);
    return ds_fail(st->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate quantized weight '%s'",
                   t->name);
  }
  for (int32_t c = 0; c < channels; c++)
    scales[c] = 0.0f;
  for (int64_t i = 0; i < count; i++) {
    int32_t c = (int32_t)((i / inner) % channels);
    scales[c] = fmaxf(scales[c], fabsf(t->data_f32[i]));
  }
  float largest_scale = 0.0f;
  for (int32_t c = 0; c < channels; c++) {
    /* An all-zero channel keeps scale 1, so its factor stays finite. */
    scales[c] = scales[c] > 0.0f ? scales[c] / 127.0f : 1.0f;
    largest_scale = fmaxf(largest_scale, scales[c]);
  }
  for (int64_t i = 0; i < count; i++) {
    int32_t c = (int32_t)((i / inner) % channels);
    long v = lround((double)t->data_f32[i] / scales[c]);
    q[i] = (int8_t)(v < -127 ? -127 : (v > 127 ? 127 : v));
  }
  t->data_q = q;
  t->channel_scales = scales;
  t->channel_axis = axis >= 0 ? axis : 0;
  t->channel_count = channels;
  memset(&t->qparams, 0, sizeof t->qparams);
  t->qparams.scale = largest_scale;
  t->qparams.dtype = DSR_DTYPE_I8;
  t->qparams.bits = 8;
  t->has_qparams = 1;
  return DS_OK;
}

/*
 * Quantizes bias tensor index at scale input_scale * channel_scales[c] * factor (one value per
 * channel). The magnitude is capped at headroom so a 32-bit accumulator cannot overflow.
 */
static ds_status quantize_bias(quant_state *st, const dsr_node *node, int32_t index,
                               double input_scale, const float *channel_scales,
                               int32_t scale_count, double factor, double value_factor,
                               int64_t headroom) {
  dsr_tensor *t = &st->model->tensors[index];
  if (t->data_q != NULL)
    return ds_fail(st->err, DS_ERR_QUANT,
                   "node '%s' (%s): bias '%s' is shared with another node, but its scale "
                   "depends on each node's input: give each node its own bias",
                   node->name, op_label(node->op), t->name);
  int64_t count = dsr_tensor_elements(t);
  int32_t *q = malloc(sizeof(int32_t) * (size_t)(count > 0 ? count : 1));
  float *scales = malloc(sizeof(float) * (size_t)(count > 0 ? count : 1));
  if (q == NULL || scales == NULL) {
    free(q);
    free(scales);
    return ds_fail(st->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate quantized bias '%s'", t->name);
  }
  float largest = 0.0f;
  for (int64_t c = 0; c < count; c++) {
    double scale = input_scale * channel_scales[scale_count == 1 ? 0 : c] * factor;
    double v = (double)t->data_f32[c] * value_factor / scale;
    double capped = fmax(fmin(v, (double)headroom), -(double)headroom);
    q[c] = (int32_t)llround(capped);
    scales[c] = (float)fabs(scale);
    largest = fmaxf(largest, scales[c]);
  }
  t->data_q = q;
  t->channel_scales = scales;
  t->channel_axis = 0;
  t->channel_count = (int32_t)count;
  memset(&t->qparams, 0, sizeof t->qparams);
  t->qparams.scale = largest;
  t->qparams.dtype = DSR_DTYPE_I32;
  t->qparams.bits = 32;
  t->has_qparams = 1;
  return DS_OK;
}

/* Plain constants: int16 symmetric, clipped where an ADD or SUB saturates anyway. */
static ds_status quantize_plain(quant_state *st, int32_t index) {
  dsr_tensor *t = &st->model->tensors[index];
  if (t->has_qparams == 0) {
    float mn = 0.0f, mx = 0.0f;
    DS_TRY(constant_range(st, index, &mn, &mx));
    float bound = fmaxf(fabsf(mn), fabsf(mx));
    if (st->clip_bound[index] > 0.0f && bound > st->clip_bound[index])
      bound = st->clip_bound[index];
    t->qparams = dsq_qparams_int16(bound);
    t->has_qparams = 1;
  }
  int64_t count = dsr_tensor_elements(t);
  size_t bytes = t->qparams.dtype == DSR_DTYPE_I8 ? 1 : 2;
  void *q = malloc(bytes * (size_t)(count > 0 ? count : 1));
  if (q == NULL)
    return ds_fail(st->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate quantized constant '%s'",
                   t->name);
  for (int64_t i = 0; i < count; i++) {
    double v = (double)t->data_f32[i] / t->qparams.scale + t->qparams.zero_point;
    dsr_fixed_store(q, t->qparams.dtype, i, (int64_t)llround(fmax(fmin(v, 4e9), -4e9)));
  }
  t->data_q = q;
  return DS_OK;
}

/* Bound of the real values an activation's qparams can represent. */
static float real_bound(const dsr_tensor *t) {
  int32_t lo, hi;
  dsr_fixed_dtype_range(t->qparams.dtype, &lo, &hi);
  float a = fabsf(t->qparams.scale * (float)(lo - t->qparams.zero_point));
  float b = fabsf(t->qparams.scale * (float)(hi - t->qparams.zero_point));
  return fmaxf(a, b);
}

static void mark_add_clips(quant_state *st) {
  dsr_model *model = st->model;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op != DSR_OP_ADD && node->op != DSR_OP_SUB)
      continue;
    for (int32_t k = 0; k < 2; k++) {
      int32_t c = node->inputs[k], other = node->inputs[1 - k];
      if (!is_constant(model, c) || is_constant(model, other))
        continue;
      /* Beyond |y| + |other| the sum saturates whatever the constant's exact value. */
      st->clip_bound[c] = real_bound(&model->tensors[node->output]) +
                          real_bound(&model->tensors[other]);
    }
  }
}

static int64_t narrow_headroom(int wide, int64_t terms) {
  if (wide)
    return INT64_C(1) << 40;
  int64_t room = (int64_t)INT32_MAX - terms * 255 * 128;
  return room > 0 ? room : 0;
}

static ds_status quantize_deform_params(quant_state *st, const dsr_node *node) {
  const dsr_deform_attn *d = node->deform;
  dsr_model *model = st->model;
  const dsr_qparams *sq = d->stage_qparams;
  double s_x = model->tensors[node->inputs[0]].qparams.scale;
  struct {
    int32_t weight, bias;
    double input_scale;
    int wide;
    int64_t terms;
  } convs[5] = {
      {DSR_DEFORM_PROJ_Q_W, DSR_DEFORM_PROJ_Q_B, s_x,
       model->tensors[node->inputs[0]].qparams.dtype != DSR_DTYPE_I8, d->channels},
      {DSR_DEFORM_OFFSET_DW_W, DSR_DEFORM_OFFSET_DW_B, sq[DSR_DEFORM_STAGE_Q].scale,
       sq[DSR_DEFORM_STAGE_Q].dtype != DSR_DTYPE_I8, (int64_t)d->offset_kernel * d->offset_kernel},
      {DSR_DEFORM_PROJ_K_W, DSR_DEFORM_PROJ_K_B, sq[DSR_DEFORM_STAGE_SAMPLED].scale,
       sq[DSR_DEFORM_STAGE_SAMPLED].dtype != DSR_DTYPE_I8, d->channels},
      {DSR_DEFORM_PROJ_V_W, DSR_DEFORM_PROJ_V_B, sq[DSR_DEFORM_STAGE_SAMPLED].scale,
       sq[DSR_DEFORM_STAGE_SAMPLED].dtype != DSR_DTYPE_I8, d->channels},
      {DSR_DEFORM_PROJ_OUT_W, DSR_DEFORM_PROJ_OUT_B, sq[DSR_DEFORM_STAGE_CONTEXT].scale,
       sq[DSR_DEFORM_STAGE_CONTEXT].dtype != DSR_DTYPE_I8, d->channels},
  };
  for (int32_t i = 0; i < 5; i++) {
    int32_t w = d->params[convs[i].weight], b = d->params[convs[i].bias];
    if (model->tensors[w].data_q == NULL)
      DS_TRY(quantize_weight(st, w));
    DS_TRY(quantize_bias(st, node, b, convs[i].input_scale, model->tensors[w].channel_scales,
                         model->tensors[w].channel_count, 1.0, 1.0,
                         narrow_headroom(convs[i].wide, convs[i].terms)));
  }
  int32_t pw = d->params[DSR_DEFORM_OFFSET_PW_W];
  if (model->tensors[pw].data_q == NULL)
    DS_TRY(quantize_weight(st, pw));
  int32_t table = d->params[DSR_DEFORM_RPE_TABLE];
  if (model->tensors[table].data_q == NULL)
    DS_TRY(quantize_plain(st, table));
  return DS_OK;
}

static ds_status quantize_constants(quant_state *st) {
  dsr_model *model = st->model;
  /* Weights first: biases need their channel scales. */
  for (int32_t i = 0; i < model->tensor_count; i++) {
    if (st->role[i] == ROLE_WEIGHT && model->tensors[i].data_q == NULL)
      DS_TRY(quantize_weight(st, i));
  }
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op == DSR_OP_DEFORM_ATTN) {
      DS_TRY(quantize_deform_params(st, node));
      continue;
    }
    if ((node->op != DSR_OP_CONV2D && node->op != DSR_OP_GEMM) || node->input_count < 3 ||
        node->inputs[2] < 0)
      continue;
    const dsr_tensor *x = &model->tensors[node->inputs[0]];
    const dsr_tensor *w = &model->tensors[node->inputs[1]];
    int wide = x->qparams.dtype != DSR_DTYPE_I8;
    int32_t out_channels = node->op == DSR_OP_CONV2D ? w->dims[0] : w->channel_count;
    if (dsr_tensor_elements(&model->tensors[node->inputs[2]]) != out_channels)
      return ds_fail(st->err, DS_ERR_SHAPE,
                     "node '%s' (%s): bias has %lld values, expected one per output channel "
                     "(%d)",
                     node->name, op_label(node->op),
                     (long long)dsr_tensor_elements(&model->tensors[node->inputs[2]]),
                     out_channels);
    int64_t terms = dsr_tensor_elements(w) / out_channels;
    double alpha = node->op == DSR_OP_GEMM ? node->attrs.gemm.alpha : 1.0;
    double beta = node->op == DSR_OP_GEMM ? node->attrs.gemm.beta : 1.0;
    if (alpha == 0.0)
      return ds_fail(st->err, DS_ERR_UNSUPPORTED_OP, "node '%s' (GEMM): alpha 0 is not supported",
                     node->name);
    DS_TRY(quantize_bias(st, node, node->inputs[2], x->qparams.scale, w->channel_scales,
                         w->channel_count, alpha,
                         beta, narrow_headroom(wide, terms)));
  }
  for (int32_t i = 0; i < model->tensor_count; i++) {
    if ((st->role[i] == ROLE_PLAIN || st->role[i] == ROLE_TABLE) &&
        model->tensors[i].data_q == NULL)
      DS_TRY(quantize_plain(st, i));
  }
  return DS_OK;
}

/* ------------------------------------------------------------------ step 5: qwords */

typedef struct words {
  int32_t *data;
  int32_t count;
  int32_t capacity;
  int failed; /* an allocation failed */
} words;

static void push(words *w, int32_t value) {
  if (w->failed)
    return;
  if (w->count == w->capacity) {
    int32_t capacity = w->capacity ? w->capacity * 2 : 64;
    int32_t *grown = realloc(w->data, sizeof(int32_t) * (size_t)capacity);
    if (grown == NULL) {
      w->failed = 1;
      return;
    }
    w->data = grown;
    w->capacity = capacity;
  }
  w->data[w->count++] = value;
}

/* Appends the requant pair of real, or fails naming the node and the factor. */
static ds_status push_pair(quant_state *st, words *w, const dsr_node *node, double real, int wide,
                           const char *what) {
  int32_t multiplier, shift;
  if (!dsq_quantize_multiplier(real, wide, &multiplier, &shift))
    return ds_fail(st->err, DS_ERR_QUANT,
                   "node '%s' (%s): the %s factor %g cannot be a requant pair (shift above %d): "
                   "the calibration ranges of its input and output are too far apart",
                   node->name, op_label(node->op), what, real,
                   wide ? DSQ_SHIFT_MAX_WIDE : DSQ_SHIFT_MAX);
  push(w, multiplier);
  push(w, shift);
  return DS_OK;
}

static const dsr_qparams *qp(const quant_state *st, int32_t tensor) {
  return &st->model->tensors[tensor].qparams;
}

static int is_wide(const dsr_qparams *q) { return q->dtype != DSR_DTYPE_I8; }

static double gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

/* LUT block of f from input qparams in to output qparams out (scale and zero point). */
static void push_lut(words *w, double (*f)(double), const dsr_qparams *in, double out_scale,
                     int32_t out_zero, int32_t out_min, int32_t out_max) {
  if (in->dtype == DSR_DTYPE_I8) {
    push(w, DSQ_LUT_DIRECT);
    for (int32_t q = -128; q <= 127; q++) {
      double y = f((double)in->scale * (q - in->zero_point)) / out_scale + out_zero;
      double clamped = fmax(fmin(y, (double)out_max), (double)out_min);
      push(w, (int32_t)llround(clamped));
    }
    return;
  }
  push(w, DSQ_LUT_INTERP);
  for (int32_t k = 0; k < DSQ_LUT_INTERP_ENTRIES; k++) {
    double x = (double)in->scale * (256.0 * k - 32768.0);
    double y = f(x) / out_scale * 256.0;
    double bound = (double)(1 << 30);
    push(w, (int32_t)llround(fmax(fmin(y, bound), -bound)));
  }
}

static ds_status push_ln_block(quant_state *st, words *w, const dsr_node *node,
                               const dsr_qparams *in, const dsr_qparams *out, int32_t count,
                               const float *gamma, const float *beta, double epsilon) {
  int32_t pre_shift = in->dtype == DSR_DTYPE_I8 ? 8 : 0;
  double unit = (double)in->scale / (double)(1 << pre_shift);
  double eps = epsilon / (unit * unit);
  int64_t eps_q = (int64_t)llround(fmin(fmax(eps, 0.0), (double)DSQ_LN_EPS_MAX));
  push(w, count);
  push(w, pre_shift);
  push(w, (int32_t)(uint32_t)(eps_q & 0xffffffff));
  push(w, (int32_t)(eps_q >> 32));
  for (int32_t c = 0; c < count; c++) {
    double g = gamma != NULL ? gamma[c] : 1.0;
    double b = beta != NULL ? beta[c] : 0.0;
    /* Q12 normalized value to output LSBs with 8 extra fractional bits. */
    DS_TRY(push_pair(st, w, node, g * 256.0 / (4096.0 * out->scale), 0, "LayerNorm gamma"));
    double beta_q8 = b * 256.0 / out->scale;
    push(w, (int32_t)llround(fmax(fmin(beta_q8, 1073741824.0), -1073741824.0)));
  }
  return DS_OK;
}

static double tanh_of(double x) { return tanh(x); }

static ds_status build_deform_qwords(quant_state *st, const dsr_node *node, words *w) {
  const dsr_deform_attn *d = node->deform;
  const dsr_model *model = st->model;
  const dsr_qparams *sq = d->stage_qparams;
  const dsr_qparams *x = qp(st, node->inputs[0]);
  const dsr_qparams *y = qp(st, node->output);
  int32_t c = d->channels, cg = d->channels / d->groups;
  const dsr_tensor *t = model->tensors;
  const float *wq = t[d->params[DSR_DEFORM_PROJ_Q_W]].channel_scales;
  const float *wdw = t[d->params[DSR_DEFORM_OFFSET_DW_W]].channel_scales;
  const float *wpw = t[d->params[DSR_DEFORM_OFFSET_PW_W]].channel_scales;
  const float *wk = t[d->params[DSR_DEFORM_PROJ_K_W]].channel_scales;
  const float *wv = t[d->params[DSR_DEFORM_PROJ_V_W]].channel_scales;
  const float *wo = t[d->params[DSR_DEFORM_PROJ_OUT_W]].channel_scales;
  if (t[d->params[DSR_DEFORM_OFFSET_DW_W]].channel_count != cg ||
      t[d->params[DSR_DEFORM_OFFSET_PW_W]].channel_count != 2 ||
      t[d->params[DSR_DEFORM_PROJ_Q_W]].channel_count != c ||
      dsr_tensor_elements(&t[d->params[DSR_DEFORM_OFFSET_LN_G]]) != cg)
    return ds_fail(st->err, DS_ERR_SHAPE,
                   "node '%s' (DEFORM_ATTN): parameter shapes do not match %d channels in %d "
                   "groups",
                   node->name, c, d->groups);

  push(w, DSQ_TAG(DSR_OP_DEFORM_ATTN));
  push(w, DSQ_DA_SECTION_COUNT);
  int32_t header_at = w->count;
  for (int32_t i = 0; i < DSQ_DA_SECTION_COUNT; i++)
    push(w, 0);
  int32_t starts[DSQ_DA_SECTION_COUNT];

  starts[DSQ_DA_PROJ_Q] = w->count;
  for (int32_t i = 0; i < c; i++)
    DS_TRY(push_pair(st, w, node, (double)x->scale * wq[i] / sq[DSR_DEFORM_STAGE_Q].scale,
                     is_wide(x), "proj_q"));
  starts[DSQ_DA_OFFSET_DW] = w->count;
  for (int32_t i = 0; i < cg; i++)
    DS_TRY(push_pair(st, w, node,
                     (double)sq[DSR_DEFORM_STAGE_Q].scale * wdw[i] /
                         sq[DSR_DEFORM_STAGE_OFFSET_DW].scale,
                     is_wide(&sq[DSR_DEFORM_STAGE_Q]), "offset depthwise"));
  starts[DSQ_DA_OFFSET_LN] = w->count;
  DS_TRY(push_ln_block(st, w, node, &sq[DSR_DEFORM_STAGE_OFFSET_DW],
                       &sq[DSR_DEFORM_STAGE_OFFSET_LN], cg,
                       t[d->params[DSR_DEFORM_OFFSET_LN_G]].data_f32,
                       t[d->params[DSR_DEFORM_OFFSET_LN_B]].data_f32, d->ln_epsilon));
  starts[DSQ_DA_OFFSET_GELU] = w->count;
  {
    const dsr_qparams *g = &sq[DSR_DEFORM_STAGE_OFFSET_GELU];
    int32_t lo, hi;
    dsr_fixed_dtype_range(g->dtype, &lo, &hi);
    push_lut(w, gelu, &sq[DSR_DEFORM_STAGE_OFFSET_LN], g->scale, g->zero_point, lo, hi);
  }
  starts[DSQ_DA_OFFSET_PW] = w->count;
  for (int32_t i = 0; i < 2; i++)
    DS_TRY(push_pair(st, w, node,
                     (double)sq[DSR_DEFORM_STAGE_OFFSET_GELU].scale * wpw[i] /
                         sq[DSR_DEFORM_STAGE_OFFSET].scale,
                     is_wide(&sq[DSR_DEFORM_STAGE_OFFSET_GELU]), "offset pointwise"));
  starts[DSQ_DA_POSITION] = w->count;
  if (d->convention == DSR_DEFORM_DAT_PP) {
    DS_TRY(push_pair(st, w, node,
                     (double)sq[DSR_DEFORM_STAGE_OFFSET].scale * DSR_FIXED_POS_ONE / 2.0, 0,
                     "offset to pixels"));
  } else {
    /* t (Q15) * span * factor * 2^8 * 2^8 / (2 * 2^15) = factor * t * span. */
    DS_TRY(push_pair(st, w, node, (double)d->offset_range_factor, 0, "offset range"));
    push_lut(w, tanh_of, &sq[DSR_DEFORM_STAGE_OFFSET], 1.0 / 32768.0, 0, -32767, 32767);
  }
  starts[DSQ_DA_PROJ_K] = w->count;
  for (int32_t i = 0; i < c; i++)
    DS_TRY(push_pair(st, w, node,
                     (double)sq[DSR_DEFORM_STAGE_SAMPLED].scale * wk[i] /
                         sq[DSR_DEFORM_STAGE_K].scale,
                     is_wide(&sq[DSR_DEFORM_STAGE_SAMPLED]), "proj_k"));
  starts[DSQ_DA_PROJ_V] = w->count;
  for (int32_t i = 0; i < c; i++)
    DS_TRY(push_pair(st, w, node,
                     (double)sq[DSR_DEFORM_STAGE_SAMPLED].scale * wv[i] /
                         sq[DSR_DEFORM_STAGE_V].scale,
                     is_wide(&sq[DSR_DEFORM_STAGE_SAMPLED]), "proj_v"));
  starts[DSQ_DA_LOGITS] = w->count;
  const dsr_qparams *logits = &sq[DSR_DEFORM_STAGE_LOGITS];
  DS_TRY(push_pair(st, w, node,
                   (double)d->attn_scale * sq[DSR_DEFORM_STAGE_Q].scale *
                       sq[DSR_DEFORM_STAGE_K].scale / logits->scale,
                   is_wide(&sq[DSR_DEFORM_STAGE_Q]) || is_wide(&sq[DSR_DEFORM_STAGE_K]),
                   "q.k logit"));
  DS_TRY(push_pair(st, w, node,
                   (double)t[d->params[DSR_DEFORM_RPE_TABLE]].qparams.scale / 65536.0 /
                       logits->scale,
                   0, "position bias"));
  starts[DSQ_DA_SOFTMAX] = w->count;
  DS_TRY(push_pair(st, w, node,
                   (double)logits->scale * DSQ_LOG2_E * (double)(1 << DSR_FIXED_EXP_FRAC_BITS), 0,
                   "softmax exponent"));
  starts[DSQ_DA_CONTEXT] = w->count;
  DS_TRY(push_pair(st, w, node,
                   (double)sq[DSR_DEFORM_STAGE_ATTN].scale * sq[DSR_DEFORM_STAGE_V].scale /
                       sq[DSR_DEFORM_STAGE_CONTEXT].scale,
                   is_wide(&sq[DSR_DEFORM_STAGE_ATTN]) || is_wide(&sq[DSR_DEFORM_STAGE_V]),
                   "attention context"));
  starts[DSQ_DA_PROJ_OUT] = w->count;
  for (int32_t i = 0; i < c; i++)
    DS_TRY(push_pair(st, w, node, (double)sq[DSR_DEFORM_STAGE_CONTEXT].scale * wo[i] / y->scale,
                     is_wide(&sq[DSR_DEFORM_STAGE_CONTEXT]), "proj_out"));
  if (!w->failed) {
    for (int32_t i = 0; i < DSQ_DA_SECTION_COUNT; i++)
      w->data[header_at + i] = starts[i];
  }
  return DS_OK;
}

static int32_t normalized(int32_t axis, int32_t rank) { return axis < 0 ? axis + rank : axis; }

/* Scale of output channel c of a weight: per channel, or the one scale of a shared weight. */
static double weight_scale(const dsr_tensor *weight, int32_t c) {
  return weight->channel_scales[weight->channel_count == 1 ? 0 : c];
}

static ds_status build_qwords(quant_state *st, const dsr_node *node, words *w) {
  const dsr_model *model = st->model;
  if (node->op == DSR_OP_DEFORM_ATTN)
    return build_deform_qwords(st, node, w);

  const dsr_qparams *x = qp(st, node->inputs[0]);
  const dsr_qparams *y = qp(st, node->output);
  push(w, DSQ_TAG(node->op));
  switch (node->op) {
  case DSR_OP_CONV2D:
  case DSR_OP_GEMM: {
    const dsr_tensor *wt = &model->tensors[node->inputs[1]];
    const dsr_tensor *yt = &model->tensors[node->output];
    double alpha = node->op == DSR_OP_GEMM ? node->attrs.gemm.alpha : 1.0;
    /* Output channels: axis 1 of a convolution, the last axis of a GEMM of any rank. */
    int32_t channels = node->op == DSR_OP_GEMM ? yt->dims[yt->rank - 1] : yt->dims[1];
    push(w, channels);
    for (int32_t c = 0; c < channels; c++)
      DS_TRY(push_pair(st, w, node, alpha * x->scale * weight_scale(wt, c) / y->scale,
                       is_wide(x), "output"));
    return DS_OK;
  }
  case DSR_OP_MATMUL: {
    const dsr_tensor *at = &model->tensors[node->inputs[0]];
    const dsr_tensor *bt = &model->tensors[node->inputs[1]];
    const dsr_tensor *yt = &model->tensors[node->output];
    if (at->kind == DSR_TENSOR_CONSTANT) {
      int32_t rows = yt->dims[yt->rank - 2];
      push(w, DSQ_MATMUL_CONSTANT_A);
      push(w, rows);
      for (int32_t c = 0; c < rows; c++)
        DS_TRY(push_pair(st, w, node, weight_scale(at, c) * bt->qparams.scale / y->scale,
                         is_wide(&bt->qparams), "output"));
    } else if (bt->kind == DSR_TENSOR_CONSTANT) {
      int32_t columns = yt->dims[yt->rank - 1];
      push(w, DSQ_MATMUL_CONSTANT_B);
      push(w, columns);
      for (int32_t c = 0; c < columns; c++)
        DS_TRY(push_pair(st, w, node, (double)x->scale * weight_scale(bt, c) / y->scale,
                         is_wide(x), "output"));
    } else {
      push(w, DSQ_MATMUL_ACTIVATIONS);
      DS_TRY(push_pair(st, w, node, (double)x->scale * bt->qparams.scale / y->scale,
                       is_wide(x) || is_wide(&bt->qparams), "output"));
    }
    return DS_OK;
  }
  case DSR_OP_ADD:
  case DSR_OP_SUB: {
    const dsr_qparams *b = qp(st, node->inputs[1]);
    int narrow = x->dtype == DSR_DTYPE_I8 && b->dtype == DSR_DTYPE_I8;
    int32_t left = narrow ? DSQ_ADD_SHIFT_NARROW : DSQ_ADD_SHIFT_WIDE;
    double twice_max = 2.0 * fmax(x->scale, b->scale);
    push(w, left);
    DS_TRY(push_pair(st, w, node, x->scale / twice_max, 0, "first operand"));
    DS_TRY(push_pair(st, w, node, b->scale / twice_max, 0, "second operand"));
    DS_TRY(push_pair(st, w, node, twice_max / ((double)(1 << left) * y->scale), 0, "output"));
    return DS_OK;
  }
  case DSR_OP_MUL: {
    const dsr_qparams *b = qp(st, node->inputs[1]);
    return push_pair(st, w, node, (double)x->scale * b->scale / y->scale, 0, "output");
  }
  case DSR_OP_DIV: {
    const dsr_tensor *bt = &model->tensors[node->inputs[1]];
    if (bt->kind != DSR_TENSOR_CONSTANT) {
      push(w, DSQ_DIV_ACTIVATION);
      return push_pair(st, w, node, (double)x->scale / (bt->qparams.scale * y->scale * 65536.0),
                       1, "quotient");
    }
    int64_t count = dsr_tensor_elements(bt);
    push(w, DSQ_DIV_CONSTANT);
    push(w, (int32_t)count);
    for (int64_t i = 0; i < count; i++) {
      double divisor = bt->data_f32[i];
      if (divisor == 0.0 || !isfinite(divisor))
        return ds_fail(st->err, DS_ERR_QUANT,
                       "node '%s' (DIV): divisor '%s' element %lld is %g: a constant divisor "
                       "must be finite and nonzero",
                       node->name, bt->name, (long long)i, divisor);
      DS_TRY(push_pair(st, w, node, (double)x->scale / (divisor * y->scale), 0, "quotient"));
    }
    return DS_OK;
  }
  case DSR_OP_LAYER_NORM: {
    const dsr_tensor *xt = &model->tensors[node->inputs[0]];
    int32_t axis = normalized(node->attrs.norm.axis, xt->rank);
    if (axis < 0 || axis >= xt->rank)
      return ds_fail(st->err, DS_ERR_SHAPE, "node '%s' (LAYER_NORM): axis %d outside rank %d",
                     node->name, node->attrs.norm.axis, xt->rank);
    int64_t count = 1;
    for (int32_t k = axis; k < xt->rank; k++)
      count *= xt->dims[k];
    if (count > DSQ_LN_MAX_ELEMENTS)
      return ds_fail(st->err, DS_ERR_SHAPE,
                     "node '%s' (LAYER_NORM): %lld normalized elements exceed the fixed-point "
                     "limit %d",
                     node->name, (long long)count, DSQ_LN_MAX_ELEMENTS);
    const float *gamma = NULL, *beta = NULL;
    for (int32_t j = 1; j < node->input_count && j < 3; j++) {
      if (node->inputs[j] < 0)
        continue;
      const dsr_tensor *p = &model->tensors[node->inputs[j]];
      if (dsr_tensor_elements(p) != count)
        return ds_fail(st->err, DS_ERR_SHAPE,
                       "node '%s' (LAYER_NORM): '%s' has %lld values, expected %lld", node->name,
                       p->name, (long long)dsr_tensor_elements(p), (long long)count);
      if (j == 1)
        gamma = p->data_f32;
      else
        beta = p->data_f32;
    }
    return push_ln_block(st, w, node, x, y, (int32_t)count, gamma, beta, node->attrs.norm.epsilon);
  }
  case DSR_OP_GELU: {
    int32_t lo, hi;
    dsr_fixed_dtype_range(y->dtype, &lo, &hi);
    push_lut(w, gelu, x, y->scale, y->zero_point, lo, hi);
    return DS_OK;
  }
  case DSR_OP_SOFTMAX:
    DS_TRY(push_pair(st, w, node, (double)x->scale * DSQ_LOG2_E * (1 << DSR_FIXED_EXP_FRAC_BITS), 0,
                     "exponent"));
    push(w, y->dtype == DSR_DTYPE_I8 ? 8 : 15);
    return DS_OK;
  case DSR_OP_TRANSPOSE:
  case DSR_OP_RESHAPE:
    return DS_OK;
  case DSR_OP_GATHER: {
    const dsr_tensor *xt = &model->tensors[node->inputs[0]];
    const dsr_tensor *it = &model->tensors[node->inputs[1]];
    int32_t axis = normalized(node->attrs.softmax.axis, xt->rank);
    int64_t count = dsr_tensor_elements(it);
    if (axis < 0 || axis >= xt->rank || it->kind != DSR_TENSOR_CONSTANT)
      return ds_fail(st->err, DS_ERR_UNSUPPORTED_OP,
                     "node '%s' (GATHER): needs constant indices and an axis inside rank %d",
                     node->name, xt->rank);
    push(w, axis);
    push(w, (int32_t)count);
    for (int64_t i = 0; i < count; i++) {
      int64_t index;
      if (it->data_q != NULL && it->qparams.dtype == DSR_DTYPE_I32)
        index = ((const int32_t *)it->data_q)[i];
      else if (it->data_q != NULL && it->qparams.dtype == DSR_DTYPE_I64)
        index = ((const int64_t *)it->data_q)[i];
      else if (it->data_f32 != NULL)
        index = (int64_t)it->data_f32[i];
      else
        return ds_fail(st->err, DS_ERR_QUANT, "node '%s' (GATHER): indices '%s' hold no data",
                       node->name, it->name);
      if (index < 0)
        index += xt->dims[axis];
      if (index < 0 || index >= xt->dims[axis])
        return ds_fail(st->err, DS_ERR_SHAPE,
                       "node '%s' (GATHER): index %lld is outside axis size %d", node->name,
                       (long long)index, xt->dims[axis]);
      push(w, (int32_t)index);
    }
    return DS_OK;
  }
  case DSR_OP_PAD: {
    /* The pad value rounded as the runtime quantizes its input, so 0 maps onto the zero
     * point. */
    double q = (double)roundf(node->attrs.pad.value / y->scale) + y->zero_point;
    int32_t low = 0, high = 0;
    dsr_fixed_dtype_range(y->dtype, &low, &high);
    push(w, (int32_t)(q < low ? low : q > high ? high : q));
    return DS_OK;
  }
  case DSR_OP_CONCAT: {
    push(w, normalized(node->attrs.softmax.axis, model->tensors[node->output].rank));
    for (int32_t j = 0; j < node->input_count; j++) {
      const dsr_qparams *xj = qp(st, node->inputs[j]);
      if (xj->dtype == y->dtype && xj->scale == y->scale && xj->zero_point == y->zero_point) {
        push(w, 1);
        push(w, 0);
        push(w, 0);
        continue;
      }
      push(w, 0);
      DS_TRY(push_pair(st, w, node, (double)xj->scale / y->scale, 0, "input requant"));
    }
    return DS_OK;
  }
  case DSR_OP_GLOBAL_AVG_POOL: {
    const dsr_tensor *xt = &model->tensors[node->inputs[0]];
    double pixels = xt->rank == 4 ? (double)xt->dims[2] * xt->dims[3] : 1.0;
    return push_pair(st, w, node, x->scale / (pixels * y->scale), 0, "average");
  }
  default:
    return ds_fail(st->err, DS_ERR_UNSUPPORTED_OP, "node '%s': op %d has no fixed-point kernel",
                   node->name, node->op);
  }
}

static ds_status build_all_qwords(quant_state *st) {
  dsr_model *model = st->model;
  for (int32_t i = 0; i < model->node_count; i++) {
    dsr_node *node = &model->nodes[i];
    words w = {NULL, 0, 0, 0};
    ds_status status = build_qwords(st, node, &w);
    if (status == DS_OK && w.failed)
      status = ds_fail(st->err, DS_ERR_OUT_OF_MEMORY, "node '%s': cannot allocate qwords",
                       node->name);
    if (status != DS_OK) {
      free(w.data);
      return status;
    }
    node->qwords = w.data;
    node->qword_count = w.count;
  }
  return DS_OK;
}

/* ------------------------------------------------------------------ entry point */

static ds_status check_inputs(const dsr_model *model, const dsq_calibration *calib,
                              ds_error *err) {
  if (model == NULL || calib == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsq_quantize needs a model and a calibration");
  if (calib->tensors == NULL || calib->tensor_count != model->tensor_count ||
      calib->node_count != model->node_count)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "calibration was made for %d tensors and %d nodes, model '%s' has %d and %d: "
                   "calibrate this model",
                   calib->tensor_count, calib->node_count, model->name, model->tensor_count,
                   model->node_count);
  if (model->input < 0 || model->input >= model->tensor_count || model->output < 0 ||
      model->output >= model->tensor_count)
    return ds_fail(err, DS_ERR_GRAPH, "model '%s': input %d or output %d is not a tensor index",
                   model->name, model->input, model->output);
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    int32_t needed = node->op == DSR_OP_CONV2D || node->op == DSR_OP_MATMUL ||
                             node->op == DSR_OP_GEMM || node->op == DSR_OP_ADD ||
                             node->op == DSR_OP_SUB || node->op == DSR_OP_MUL ||
                             node->op == DSR_OP_DIV || node->op == DSR_OP_GATHER
                         ? 2
                         : 1;
    if (node->input_count < needed || node->input_count > DSR_MAX_NODE_INPUTS ||
        node->output < 0 || node->output >= model->tensor_count)
      return ds_fail(err, DS_ERR_GRAPH, "node '%s' (%s): %d inputs or output %d out of range",
                     node->name, op_label(node->op), node->input_count, node->output);
    for (int32_t j = 0; j < node->input_count; j++) {
      if ((j < needed && node->inputs[j] < 0) || node->inputs[j] >= model->tensor_count)
        return ds_fail(err, DS_ERR_GRAPH, "node '%s' (%s): input %d has tensor index %d",
                       node->name, op_label(node->op), j, node->inputs[j]);
    }
  }
  return DS_OK;
}

ds_status dsq_quantize(dsr_model *model, const dsq_calibration *calib, const dsq_options *options,
                       ds_error *err) {
  DS_TRY(check_inputs(model, calib, err));
  dsq_clear(model);

  quant_state st;
  memset(&st, 0, sizeof st);
  st.model = model;
  st.calib = calib;
  st.options = options != NULL ? *options : dsq_options_default();
  st.err = err;
  size_t n = (size_t)model->tensor_count;
  st.parent = malloc(n * sizeof(int32_t));
  st.role = calloc(n, 1);
  st.role_axis = calloc(n, sizeof(int32_t));
  st.int16_demand = calloc(n, 1);
  st.softmax_input = calloc(n, 1);
  st.softmax_output = calloc(n, 1);
  st.clip_bound = calloc(n, sizeof(float));

  ds_status status = DS_OK;
  if (st.parent == NULL || st.role == NULL || st.role_axis == NULL || st.int16_demand == NULL ||
      st.softmax_input == NULL || st.softmax_output == NULL || st.clip_bound == NULL)
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate quantizer state for %zu tensors",
                     n);
  if (status == DS_OK)
    status = assign_roles(&st);
  if (status == DS_OK) {
    mark_demands(&st);
    status = assign_activation_qparams(&st);
  }
  for (int32_t i = 0; i < model->node_count && status == DS_OK; i++) {
    if (model->nodes[i].op == DSR_OP_DEFORM_ATTN)
      status = assign_stage_qparams(&st, i);
  }
  if (status == DS_OK) {
    mark_add_clips(&st);
    status = quantize_constants(&st);
  }
  if (status == DS_OK)
    status = build_all_qwords(&st);

  free(st.parent);
  free(st.role);
  free(st.role_axis);
  free(st.int16_demand);
  free(st.softmax_input);
  free(st.softmax_output);
  free(st.clip_bound);
  if (status != DS_OK) {
    dsq_clear(model);
    return status;
  }
  model->quantized = 1;
  return DS_OK;
}
