/*
 * Building the dsr_model from the lowered graph: live nodes in topological order, and only
 * the tensors they use. Every array is its own heap block, as ds_model_free expects.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_ir.h"

typedef struct builder {
  dsc_graph *g;
  dsr_model *model;
  int32_t *tensor_of_value;   /* value index -> tensor index, -1 when not added */
  int32_t tensor_capacity;
} builder;

/* Names longer than DSR_NAME_BYTES - 1 keep their end, which is the distinctive part of
 * ONNX names, plus the value index so that two shortened names never collide. */
static void tensor_name(const dsc_graph *g, int32_t value, char *out) {
  const char *name = g->values[value].name;
  size_t length = strlen(name);
  if (length < DSR_NAME_BYTES) {
    memcpy(out, name, length + 1);
    return;
  }
  snprintf(out, DSR_NAME_BYTES, "~%d~%s", value, name + length - 70);
}

static ds_status float_data(builder *b, dsr_tensor *t, int32_t value, ds_error *err) {
  const dsc_value *v = &b->g->values[value];
  if (v->dtype != DSC_DTYPE_F32)
    return ds_fail(err, DS_ERR_UNSUPPORTED_OP, "%s: constant '%s' is an integer tensor used "
                   "as a float operand; only Gather indices may be integers", b->g->path,
                   v->name);
  int64_t count = dsc_value_elements(v);
  float *data = malloc((size_t)(count > 0 ? count : 1) * sizeof *data);
  if (data == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for constant '%s'", b->g->path,
                   v->name);
  if (count > 0)
    memcpy(data, v->data, (size_t)count * sizeof *data);
  t->data_f32 = data;
  return DS_OK;
}

/* Gather indices, already non-negative (see the lowering), as floats in data_f32 and as
 * int32 in data_q. */
static ds_status index_data(builder *b, dsr_tensor *t, int32_t value, int64_t axis_size,
                            ds_error *err) {
  const dsc_value *v = &b->g->values[value];
  int64_t count = dsc_value_elements(v);
  float *floats = malloc((size_t)(count > 0 ? count : 1) * sizeof *floats);
  int32_t *ints = malloc((size_t)(count > 0 ? count : 1) * sizeof *ints);
  t->data_f32 = floats;
  t->data_q = ints;
  if (floats == NULL || ints == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for indices '%s'", b->g->path,
                   v->name);
  for (int64_t i = 0; i < count; i++) {
    int64_t index = dsc_get_i(v, i);
    index = index < 0 ? index + axis_size : index;
    if (index < 0 || index >= axis_size)
      return ds_fail(err, DS_ERR_SHAPE, "%s: Gather index %" PRId64 " of '%s' is outside "
                     "0..%" PRId64, b->g->path, dsc_get_i(v, i), v->name, axis_size - 1);
    floats[i] = (float)index;
    ints[i] = (int32_t)index;
  }
  t->qparams.scale = 1.0f;
  t->qparams.zero_point = 0;
  t->qparams.dtype = DSR_DTYPE_I32;
  t->qparams.bits = 32;
  t->has_qparams = 1;
  return DS_OK;
}

static ds_status grow_tensors(builder *b, ds_error *err) {
  dsr_model *m = b->model;
  if (m->tensor_count < b->tensor_capacity)
    return DS_OK;
  int32_t capacity = b->tensor_capacity == 0 ? 256 : b->tensor_capacity * 2;
  dsr_tensor *tensors = realloc(m->tensors, (size_t)capacity * sizeof *tensors);
  if (tensors == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for %d tensors", b->g->path,
                   capacity);
  m->tensors = tensors;
  b->tensor_capacity = capacity;
  return DS_OK;
}

/* Adds value as a tensor once; index_axis_size >= 0 marks Gather indices. */
static ds_status tensor_of(builder *b, int32_t value, int64_t index_axis_size, int32_t *out,
                           ds_error *err) {
  if (value < 0) {
    *out = -1;
    return DS_OK;
  }
  if (b->tensor_of_value[value] >= 0) {
    *out = b->tensor_of_value[value];
    return DS_OK;
  }
  const dsc_graph *g = b->g;
  const dsc_value *v = &g->values[value];
  if (v->rank < 0 || (v->data == NULL && v->dtype != DSC_DTYPE_F32))
    return ds_fail(err, DS_ERR_SHAPE, "%s: tensor '%s' has no static float shape", g->path,
                   v->name);
  DS_TRY(grow_tensors(b, err));
  dsr_model *m = b->model;
  dsr_tensor *t = &m->tensors[m->tensor_count];
  memset(t, 0, sizeof *t);
  *out = b->tensor_of_value[value] = m->tensor_count++;
  tensor_name(g, value, t->name);
  t->rank = v->rank;
  for (int32_t i = 0; i < v->rank; i++) {
    if (v->dims[i] > INT32_MAX)
      return ds_fail(err, DS_ERR_SHAPE, "%s: tensor '%s' dim %d is %" PRId64 ", too large",
                     g->path, v->name, i, v->dims[i]);
    t->dims[i] = (int32_t)v->dims[i];
  }
  t->channel_axis = -1;
  if (v->data != NULL) {
    t->kind = DSR_TENSOR_CONSTANT;
    return index_axis_size >= 0 ? index_data(b, t, value, index_axis_size, err)
                                : float_data(b, t, value, err);
  }
  t->kind = v->is_input ? DSR_TENSOR_INPUT
            : value == g->output ? DSR_TENSOR_OUTPUT : DSR_TENSOR_ACTIVATION;
  return DS_OK;
}

static ds_status build_deform(builder *b, dsr_node *out, const dsc_node *n, ds_error *err) {
  out->deform = malloc(sizeof *out->deform);
  if (out->deform == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for a deformable layer",
                   b->g->path);
  *out->deform = *n->deform;
  for (int32_t p = 0; p < DSR_DEFORM_PARAM_COUNT; p++)
    DS_TRY(tensor_of(b, n->deform->params[p], -1, &out->deform->params[p], err));
  return DS_OK;
}

static ds_status build_node(builder *b, int32_t index, ds_error *err) {
  const dsc_node *n = &b->g->nodes[index];
  dsr_model *m = b->model;
  dsr_node *out = &m->nodes[m->node_count++];
  memset(out, 0, sizeof *out);
  snprintf(out->name, sizeof out->name, "%s", n->name);
  out->op = n->op;
  out->attrs = n->attrs;
  if (n->input_count > DSR_MAX_NODE_INPUTS)
    return dsc_node_fail(b->g, n, DS_ERR_UNSUPPORTED_OP, err,
                         "has %d inputs, the runtime takes at most %d", n->input_count,
                         DSR_MAX_NODE_INPUTS);
  out->input_count = n->input_count;
  for (int32_t k = 0; k < DSR_MAX_NODE_INPUTS; k++)
    out->inputs[k] = -1;
  for (int32_t k = 0; k < n->input_count; k++) {
    int64_t axis_size = -1;
    if (n->op == DSR_OP_GATHER && k == 1)
      axis_size = b->g->values[n->inputs[0]].dims[n->attrs.softmax.axis];
    DS_TRY(tensor_of(b, n->inputs[k], axis_size, &out->inputs[k], err));
  }
  DS_TRY(tensor_of(b, n->outputs[0], -1, &out->output, err));
  if (n->deform != NULL)
    DS_TRY(build_deform(b, out, n, err));
  b->g->report->ops_after[n->op]++;
  return DS_OK;
}

static void summarize(dsc_report *r, const dsr_model *m) {
  r->node_count_after = m->node_count;
  r->tensor_count_after = m->tensor_count;
  for (int32_t i = 0; i < m->tensor_count; i++) {
    if (m->tensors[i].kind != DSR_TENSOR_CONSTANT)
      continue;
    r->constant_count_after++;
    r->constant_element_count += dsr_tensor_elements(&m->tensors[i]);
  }
}

static ds_status build_all(builder *b, const int32_t *order, int32_t live, ds_error *err) {
  dsr_model *m = b->model;
  m->nodes = calloc((size_t)(live > 0 ? live : 1), sizeof *m->nodes);
  if (m->nodes == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for %d nodes", b->g->path, live);
  DS_TRY(tensor_of(b, b->g->input, -1, &m->input, err));
  for (int32_t i = 0; i < live; i++)
    DS_TRY(build_node(b, order[i], err));
  m->output = b->tensor_of_value[b->g->output];
  if (m->output < 0 || m->tensors[m->output].kind != DSR_TENSOR_OUTPUT)
    return ds_fail(err, DS_ERR_GRAPH, "%s: the graph output is not produced by the model",
                   b->g->path);
  summarize(b->g->report, m);
  return DS_OK;
}

ds_status dsc_build_model(dsc_graph *g, dsr_model *model, ds_error *err) {
  int32_t *order = NULL;
  DS_TRY(dsc_topological_order(g, &order, err));
  int32_t live = 0;
  for (int32_t i = 0; i < g->node_count; i++)
    live += !g->nodes[i].dead;
  builder b;
  memset(&b, 0, sizeof b);
  b.g = g;
  b.model = model;
  b.tensor_of_value = malloc((size_t)g->value_count * sizeof *b.tensor_of_value);
  ds_status status = DS_OK;
  if (b.tensor_of_value == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for the tensor map", g->path);
  } else {
    for (int32_t v = 0; v < g->value_count; v++)
      b.tensor_of_value[v] = -1;
    const char *base = strrchr(g->path, '/');
    snprintf(model->name, sizeof model->name, "%s", base != NULL ? base + 1 : g->path);
    status = build_all(&b, order, live, err);
  }
  free(b.tensor_of_value);
  free(order);
  return status;
}
