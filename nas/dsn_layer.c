#include "dsn_layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nas/dsn_oracle.h"

static const char *const kind_names[DSN_LAYER_KIND_COUNT] = {
    "conv", "linear", "matmul", "attention", "norm", "eltwise",
    "softmax", "layout", "pool", "head", "deform"};

const char *dsn_layer_kind_name(int32_t kind) {
  if (kind < 0 || kind >= DSN_LAYER_KIND_COUNT)
    return "unknown";
  return kind_names[kind];
}

ds_status dsn_layer_list_append(dsn_layer_list *list, const dsn_layer *layer, ds_error *err) {
  if (list->count == list->capacity) {
    int32_t wanted = list->capacity > 0 ? list->capacity * 2 : 64;
    dsn_layer *grown = realloc(list->layers, (size_t)wanted * sizeof *grown);
    if (grown == NULL)
      return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot grow the layer list to %d layers",
                     wanted);
    list->layers = grown;
    list->capacity = wanted;
  }
  list->layers[list->count++] = *layer;
  return DS_OK;
}

void dsn_layer_list_free(dsn_layer_list *list) {
  if (list == NULL)
    return;
  free(list->layers);
  memset(list, 0, sizeof *list);
}

int32_t dsn_layer_list_deform_count(const dsn_layer_list *list) {
  int32_t count = 0;
  for (int32_t i = 0; i < list->count; i++) {
    if (list->layers[i].kind == DSN_LAYER_DEFORM)
      count++;
  }
  return count;
}

void dsn_layer_map_text(const dsn_layer *layer, char *text, int32_t size) {
  if (layer->kind == DSN_LAYER_DEFORM) {
    snprintf(text, (size_t)size, "%dx%dx%d", layer->deform.height, layer->deform.width,
             layer->deform.channels);
  } else if (layer->reduce) {
    snprintf(text, (size_t)size, "%lldx%lld", (long long)layer->in_rows,
             (long long)layer->in_row_elems);
  } else if (layer->out_width > 1) {
    snprintf(text, (size_t)size, "%lldx%lldx%lld", (long long)layer->out_rows,
             (long long)layer->out_width, (long long)layer->out_cols);
  } else if (layer->group_count > 1) {
    snprintf(text, (size_t)size, "%lldx%lldx%lld", (long long)layer->group_count,
             (long long)layer->out_rows, (long long)layer->out_cols);
  } else {
    snprintf(text, (size_t)size, "%lldx%lld", (long long)layer->out_rows,
             (long long)layer->out_cols);
  }
}

/* ---- From a converted model ---- */

static int is_constant(const dsr_model *model, int32_t tensor) {
  return tensor >= 0 && model->tensors[tensor].kind == DSR_TENSOR_CONSTANT;
}

static int64_t ceil_bytes(int32_t bits) {
  return (bits + 7) / 8;
}

/* Bytes of a constant: 1-D tensors (biases, norm parameters) at accumulator_bits, others at
 * weight_bits. */
static int64_t constant_bytes(const dsr_tensor *t, const dsn_preset *preset) {
  int32_t bits = t->rank <= 1 ? preset->accumulator_bits : preset->weight_bits;
  return dsr_tensor_elements(t) * ceil_bytes(bits);
}

/* Rows and row length of a tensor in DRAM: a rank-4 (N, C, H, W) map is N * H rows of
 * W * C elements (HWC); otherwise every axis but the last makes rows. */
static void tensor_rows(const dsr_tensor *t, int64_t *rows, int64_t *row_elems) {
  if (t->rank == 4) {
    *rows = (int64_t)t->dims[0] * t->dims[2];
    *row_elems = (int64_t)t->dims[3] * t->dims[1];
    return;
  }
  if (t->rank == 0) {
    *rows = 1;
    *row_elems = 1;
    return;
  }
  int64_t last = t->dims[t->rank - 1];
  *row_elems = last > 0 ? last : 1;
  *rows = dsr_tensor_elements(t) / *row_elems;
}

/* Sets the output geometry of a row-aligned layer from its output tensor. */
static void set_output_rows(dsn_layer *layer, const dsr_tensor *out) {
  tensor_rows(out, &layer->out_rows, &layer->out_cols);
  layer->out_width = 1;
  if (out->rank == 4) {
    layer->out_width = out->dims[3];
    layer->out_cols = out->dims[1];
  }
  layer->in_rows = layer->out_rows;
  layer->in_row_elems = layer->out_width * layer->out_cols;
  layer->in_width = out->rank == 4 ? out->dims[3] : 0;
}

/* Adds a constant tensor to the layer's weights. */
static void add_constant(dsn_layer *layer, const dsr_tensor *t, const dsn_preset *preset) {
  layer->weight_bytes += constant_bytes(t, preset);
  layer->weight_count += dsr_tensor_elements(t);
}

static ds_status shape_error(const dsr_node *node, int32_t index, const char *what,
                             ds_error *err) {
  return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                 "node %d (%s): %s; the cost model cannot price this node", index, node->name,
                 what);
}

static ds_status conv_layer(const dsr_model *model, const dsr_node *node, int32_t index,
                            const dsn_preset *preset, dsn_layer *layer, ds_error *err) {
  const dsr_tensor *x = &model->tensors[node->inputs[0]];
  const dsr_tensor *w = &model->tensors[node->inputs[1]];
  const dsr_tensor *y = &model->tensors[node->output];
  if (x->rank != 4 || w->rank != 4 || y->rank != 4)
    return shape_error(node, index, "a convolution without rank-4 input, weight and output",
                       err);
  layer->kind = DSN_LAYER_CONV;
  layer->out_rows = y->dims[2];
  layer->out_width = y->dims[3];
  layer->out_cols = y->dims[1];
  layer->in_rows = x->dims[2];
  layer->in_row_elems = (int64_t)x->dims[3] * x->dims[1];
  layer->kernel = w->dims[2];
  layer->stride = node->attrs.conv.stride[0] > 0 ? node->attrs.conv.stride[0] : 1;
  layer->pad = node->attrs.conv.pad[0];
  layer->in_width = x->dims[3];
  layer->kernel_w = w->dims[3];
  layer->stride_w = node->attrs.conv.stride[1] > 0 ? node->attrs.conv.stride[1] : 1;
  layer->pad_w = node->attrs.conv.pad[1];
  layer->macs_per_output = (int64_t)w->dims[1] * w->dims[2] * w->dims[3];
  add_constant(layer, w, preset);
  if (node->input_count > 2 && node->inputs[2] >= 0)
    add_constant(layer, &model->tensors[node->inputs[2]], preset);
  return DS_OK;
}

static ds_status matmul_layer(const dsr_model *model, const dsr_node *node, int32_t index,
                              const dsn_preset *preset, dsn_layer *layer, ds_error *err) {
  const dsr_tensor *a = &model->tensors[node->inputs[0]];
  const dsr_tensor *b = &model->tensors[node->inputs[1]];
  const dsr_tensor *y = &model->tensors[node->output];
  if (a->rank < 2 || b->rank < 2 || y->rank < 2)
    return shape_error(node, index, "a matrix product with an input or output of rank below 2",
                       err);
  int64_t m = y->dims[y->rank - 2];
  int64_t n = y->dims[y->rank - 1];
  int64_t k = node->op == DSR_OP_GEMM && node->attrs.gemm.trans_a ? a->dims[0]
                                                                  : a->dims[a->rank - 1];
  layer->out_width = 1;
  layer->out_cols = n;
  layer->macs_per_output = k;
  if (is_constant(model, node->inputs[1])) {
    /* Activation times weights: every leading axis of the input makes rows. */
    layer->kind = DSN_LAYER_LINEAR;
    layer->out_rows = dsr_tensor_elements(y) / (n > 0 ? n : 1);
    layer->in_rows = layer->out_rows;
    layer->in_row_elems = k;
    add_constant(layer, b, preset);
    if (node->op == DSR_OP_GEMM && node->input_count > 2 && node->inputs[2] >= 0) {
      /* The bias is int32 at any rank: a fused MatMul and Add keeps the Add's (1, 1, N). */
      const dsr_tensor *c = &model->tensors[node->inputs[2]];
      layer->weight_bytes += dsr_tensor_elements(c) * ceil_bytes(preset->accumulator_bits);
      layer->weight_count += dsr_tensor_elements(c);
    }
    if (node->output == model->output)
      layer->kind = DSN_LAYER_HEAD;
    return DS_OK;
  }
  layer->kind = DSN_LAYER_MATMUL;
  layer->group_count = dsr_tensor_elements(y) / (m * n > 0 ? m * n : 1);
  layer->out_rows = m;
  layer->operand_elems = k * n;
  layer->operand_tensor = node->inputs[1];
  if (is_constant(model, node->inputs[0])) {
    /* Weights times activation: the activation is held whole, the weights stream. */
    layer->input_tensor = -1;
    layer->in_rows = 0;
    layer->in_row_elems = 0;
    add_constant(layer, a, preset);
  } else {
    layer->in_rows = m;
    layer->in_row_elems = k;
  }
  return DS_OK;
}

static ds_status elementwise_layer(const dsr_model *model, const dsr_node *node,
                                   const dsn_preset *preset, dsn_layer *layer) {
  const dsr_tensor *y = &model->tensors[node->output];
  set_output_rows(layer, y);
  int64_t out_elems = dsr_tensor_elements(y);
  int streamed = 0;
  layer->input_tensor = -1;
  for (int32_t i = 0; i < node->input_count; i++) {
    int32_t input = node->inputs[i];
    if (input < 0)
      continue;
    const dsr_tensor *t = &model->tensors[input];
    if (t->kind == DSR_TENSOR_CONSTANT) {
      add_constant(layer, t, preset);
    } else if (dsr_tensor_elements(t) == out_elems && streamed < 2) {
      if (streamed == 1) {
        layer->second_input = 1;
        layer->input2_tensor = input;
      } else {
        layer->input_tensor = input;
      }
      streamed++;
    } else if (layer->operand_tensor < 0) {
      layer->operand_elems = dsr_tensor_elements(t);
      layer->operand_tensor = input;
    } else {
      /* NOTE: a third activation input is not priced; no op of the runtime has one that
       * is neither streamed nor the operand. */
    }
  }
  if (streamed == 0) {
    layer->in_rows = 0;
    layer->in_row_elems = 0;
  }
  return DS_OK;
}

/* Vector-unit operations per element: modelling choices, see docs/hardware-model.md. */
enum {
  OPS_ELEMENTWISE = 1,
  OPS_GELU = 4,    /* polynomial or table plus a product */
  OPS_NORM = 5,    /* mean, variance, inverse square root, scale, shift */
  OPS_SOFTMAX = 4, /* maximum, exponential, sum, division */
};

static ds_status node_layer(const dsr_model *model, int32_t index, const dsn_preset *preset,
                            dsn_layer *layer, int *skip, ds_error *err) {
  const dsr_node *node = &model->nodes[index];
  memset(layer, 0, sizeof *layer);
  snprintf(layer->name, sizeof layer->name, "%s", node->name);
  layer->node = index;
  layer->stage = -1;
  layer->input_tensor = node->inputs[0];
  layer->input2_tensor = -1;
  layer->operand_tensor = -1;
  layer->output_tensor = node->output;
  layer->group_count = 1;
  layer->kernel = 1;
  layer->stride = 1;
  layer->kernel_w = 1;
  layer->stride_w = 1;
  *skip = 0;

  for (int32_t i = 0; i < node->input_count; i++) {
    if (node->inputs[i] >= model->tensor_count)
      return shape_error(node, index, "an input tensor index past the tensor list", err);
  }
  if (node->output < 0 || node->output >= model->tensor_count)
    return shape_error(node, index, "an output tensor index past the tensor list", err);
  if (node->input_count < 1 || node->inputs[0] < 0)
    return shape_error(node, index, "no first input", err);

  const dsr_tensor *y = &model->tensors[node->output];
  switch (node->op) {
  case DSR_OP_RESHAPE:
    *skip = 1; /* a view of the same bytes */
    return DS_OK;
  case DSR_OP_CONV2D:
    if (node->input_count < 2 || node->inputs[1] < 0)
      return shape_error(node, index, "a convolution without weights", err);
    return conv_layer(model, node, index, preset, layer, err);
  case DSR_OP_MATMUL:
  case DSR_OP_GEMM:
    if (node->input_count < 2 || node->inputs[1] < 0)
      return shape_error(node, index, "a matrix product without a second input", err);
    return matmul_layer(model, node, index, preset, layer, err);
  case DSR_OP_ADD:
  case DSR_OP_SUB:
  case DSR_OP_MUL:
  case DSR_OP_DIV:
    layer->kind = DSN_LAYER_ELEMENTWISE;
    layer->vector_ops_per_elem = OPS_ELEMENTWISE;
    return elementwise_layer(model, node, preset, layer);
  case DSR_OP_GELU:
    layer->kind = DSN_LAYER_ELEMENTWISE;
    layer->vector_ops_per_elem = OPS_GELU;
    return elementwise_layer(model, node, preset, layer);
  case DSR_OP_LAYER_NORM:
    layer->kind = DSN_LAYER_NORM;
    layer->vector_ops_per_elem = OPS_NORM;
    return elementwise_layer(model, node, preset, layer);
  case DSR_OP_SOFTMAX:
    layer->kind = DSN_LAYER_SOFTMAX;
    layer->vector_ops_per_elem = OPS_SOFTMAX;
    return elementwise_layer(model, node, preset, layer);
  case DSR_OP_TRANSPOSE:
  case DSR_OP_GATHER:
    /* NOTE: priced as a copy of equal tiles. Where a transpose moves elements across tiles,
     * a real accelerator needs strided accesses that this does not count. */
    layer->kind = DSN_LAYER_LAYOUT;
    set_output_rows(layer, y);
    return DS_OK;
  case DSR_OP_GLOBAL_AVG_POOL: {
    const dsr_tensor *x = &model->tensors[node->inputs[0]];
    layer->kind = DSN_LAYER_POOL;
    tensor_rows(x, &layer->in_rows, &layer->in_row_elems);
    layer->out_rows = 1;
    layer->out_width = 1;
    layer->out_cols = x->rank == 4 ? x->dims[1] : layer->in_row_elems;
    layer->kernel = (int32_t)layer->in_rows;
    layer->reduce = 1;
    layer->vector_ops_per_elem = 1;
    return DS_OK;
  }
  case DSR_OP_DEFORM_ATTN:
    if (node->deform == NULL)
      return shape_error(node, index, "a deformable attention node without its parameters",
                         err);
    layer->kind = DSN_LAYER_DEFORM;
    layer->deform = *node->deform;
    layer->weight_bytes = dsn_deform_weight_bytes(node->deform, preset);
    for (int32_t p = 0; p < DSR_DEFORM_PARAM_COUNT; p++) {
      int32_t t = node->deform->params[p];
      if (t >= 0 && t < model->tensor_count)
        layer->weight_count += dsr_tensor_elements(&model->tensors[t]);
    }
    return DS_OK;
  case DSR_OP_PAD:
  case DSR_OP_CONCAT: {
    /* A copy into the output: the first input streams with its own rows (a pad or a
     * concatenation along H reads fewer rows than it writes, one along C or W shorter
     * rows). */
    const dsr_tensor *x = &model->tensors[node->inputs[0]];
    layer->kind = DSN_LAYER_LAYOUT;
    set_output_rows(layer, y);
    tensor_rows(x, &layer->in_rows, &layer->in_row_elems);
    layer->in_width = x->rank == 4 && y->rank == 4 ? x->dims[3] : 0;
    if (node->op == DSR_OP_CONCAT && node->input_count > 1) {
      /* The other inputs are held whole as the operand; their bytes are read once.
       * NOTE: with three or four inputs the schedule reads them as one run from the second
       * input's address, so the bytes are right but not every address is. */
      for (int32_t i = 1; i < node->input_count; i++) {
        if (node->inputs[i] < 0)
          continue;
        const dsr_tensor *t = &model->tensors[node->inputs[i]];
        if (t->kind == DSR_TENSOR_CONSTANT) {
          add_constant(layer, t, preset);
          continue;
        }
        if (layer->operand_tensor < 0)
          layer->operand_tensor = node->inputs[i];
        layer->operand_elems += dsr_tensor_elements(t);
      }
    }
    return DS_OK;
  }
  default: {
    char what[200];
    snprintf(what, sizeof what,
             "op %d, which the cost model does not know (it prices every op the converter "
             "emits, 1 to %d); convert the model again with this build's deformslice, or "
             "report the op with the model",
             node->op, DSR_OP_COUNT - 1);
    return shape_error(node, index, what, err);
  }
  }
}

ds_status dsn_layers_from_model(const dsr_model *model, const dsn_preset *preset,
                                dsn_layer_list *list, ds_error *err) {
  if (model == NULL || preset == NULL || list == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_layers_from_model: NULL argument");
  memset(list, 0, sizeof *list);
  snprintf(list->source, sizeof list->source, "model %s", model->name);
  for (int32_t i = 0; i < model->node_count; i++) {
    dsn_layer layer;
    int skip = 0;
    ds_status status = node_layer(model, i, preset, &layer, &skip, err);
    if (status == DS_OK && !skip)
      status = dsn_layer_list_append(list, &layer, err);
    if (status != DS_OK) {
      dsn_layer_list_free(list);
      return status;
    }
  }
  return DS_OK;
}
