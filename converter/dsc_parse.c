/*
 * Building the working graph from a parsed ModelProto: initializers, Constant nodes, the other
 * nodes with their edges, the single graph input and output, and the input shape.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dsc_ir.h"

static int is_default_domain(const char *domain) {
  return domain == NULL || domain[0] == '\0' || strcmp(domain, "ai.onnx") == 0;
}

static void count_op_type(dsc_report *r, const char *op_type) {
  for (int32_t i = 0; i < r->op_type_count; i++) {
    if (strcmp(r->ops_before[i].op_type, op_type) == 0) {
      r->ops_before[i].count++;
      return;
    }
  }
  if (r->op_type_count == DSC_MAX_REPORT_OP_TYPES) {
    r->op_type_overflow_count++;
    return;
  }
  dsc_op_count *c = &r->ops_before[r->op_type_count++];
  snprintf(c->op_type, sizeof c->op_type, "%.*s", (int)sizeof c->op_type - 1, op_type);
  c->count = 1;
}

static ds_status read_initializers(dsc_graph *g, const Onnx__GraphProto *graph,
                                   ds_error *err) {
  for (size_t i = 0; i < graph->n_initializer; i++) {
    const Onnx__TensorProto *t = graph->initializer[i];
    if (t == NULL || t->name == NULL || t->name[0] == '\0')
      return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: initializer %zu has no name", g->path, i);
    int32_t value = -1;
    DS_TRY(dsc_graph_add_value(g, t->name, &value, err));
    char what[256];
    snprintf(what, sizeof what, "initializer '%.200s'", t->name);
    DS_TRY(dsc_tensor_read(g, t, what, value, err));
  }
  g->report->onnx_initializer_count = (int32_t)graph->n_initializer;
  return DS_OK;
}

/* Op type as the converter matches it: other domains keep their domain as a prefix so that
 * they never match a default-domain handler. */
static void node_op_type(const Onnx__NodeProto *node, char *out, size_t size) {
  const char *op = node->op_type != NULL ? node->op_type : "";
  if (is_default_domain(node->domain))
    snprintf(out, size, "%s", op);
  else
    snprintf(out, size, "%s::%s", node->domain, op);
}

static ds_status add_node_outputs(dsc_graph *g, const Onnx__NodeProto *node, size_t index,
                                  ds_error *err) {
  char op_type[160];
  node_op_type(node, op_type, sizeof op_type);
  if (op_type[0] == '\0')
    return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: node %zu has no op_type", g->path, index);
  if (node->n_input > DSC_MAX_NODE_ARITY || node->n_output > DSC_MAX_NODE_ARITY)
    return ds_fail(err, DS_ERR_GRAPH, "%s: node %zu (%s) has %zu inputs and %zu outputs, at "
                   "most %d each are supported", g->path, index, op_type, node->n_input,
                   node->n_output, DSC_MAX_NODE_ARITY);
  count_op_type(g->report, op_type);

  char name[256];
  if (node->name != NULL && node->name[0] != '\0')
    snprintf(name, sizeof name, "%s", node->name);
  else
    snprintf(name, sizeof name, "%s_%zu", op_type, index);

  if (strcmp(op_type, "Constant") == 0) {
    if (node->n_output != 1 || node->output[0] == NULL || node->output[0][0] == '\0')
      return ds_fail(err, DS_ERR_GRAPH, "%s: Constant node '%s' needs exactly one output",
                     g->path, name);
    int32_t value = -1;
    DS_TRY(dsc_graph_add_value(g, node->output[0], &value, err));
    return dsc_constant_node_read(g, node, value, err);
  }

  int32_t n = -1;
  DS_TRY(dsc_graph_add_node(g, name, op_type, (int32_t)node->n_input,
                            (int32_t)node->n_output, &n, err));
  g->nodes[n].proto = node;
  for (size_t k = 0; k < node->n_output; k++) {
    const char *output = node->output[k];
    if (output == NULL || output[0] == '\0')
      continue;
    int32_t value = -1;
    DS_TRY(dsc_graph_add_value(g, output, &value, err));
    g->values[value].producer = n;
    g->nodes[n].outputs[k] = value;
  }
  return DS_OK;
}

static ds_status link_node_inputs(dsc_graph *g, int32_t n, ds_error *err) {
  const Onnx__NodeProto *node = g->nodes[n].proto;
  for (size_t k = 0; k < node->n_input; k++) {
    const char *input = node->input[k];
    if (input == NULL || input[0] == '\0')
      continue;
    int32_t value = dsc_graph_find(g, input);
    if (value < 0)
      return ds_fail(err, DS_ERR_GRAPH,
                     "%s: input %zu ('%s') of node '%s' (%s) is not an initializer, a graph "
                     "input or the output of any node; the file is incomplete or corrupt",
                     g->path, k, input, g->nodes[n].name, g->nodes[n].op_type);
    g->nodes[n].inputs[k] = value;
  }
  return DS_OK;
}

static ds_status read_graph_input(dsc_graph *g, const Onnx__GraphProto *graph, ds_error *err) {
  g->input = -1;
  for (size_t i = 0; i < graph->n_input; i++) {
    const Onnx__ValueInfoProto *info = graph->input[i];
    if (info == NULL || info->name == NULL || info->name[0] == '\0')
      return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: graph input %zu has no name", g->path, i);
    int32_t existing = dsc_graph_find(g, info->name);
    if (existing >= 0 && g->values[existing].data != NULL)
      continue; /* older exporters list initializers as inputs too */
    if (g->input >= 0)
      return ds_fail(err, DS_ERR_GRAPH, "%s: the graph has several inputs ('%s' and '%s'); "
                     "only models with one input are supported", g->path,
                     g->values[g->input].name, info->name);
    if (existing >= 0)
      return ds_fail(err, DS_ERR_GRAPH, "%s: graph input '%s' is also a node output", g->path,
                     info->name);
    DS_TRY(dsc_graph_add_value(g, info->name, &g->input, err));
    g->values[g->input].is_input = 1;
    g->values[g->input].dtype = DSC_DTYPE_F32;
  }
  if (g->input < 0)
    return ds_fail(err, DS_ERR_GRAPH, "%s: the graph has no input besides its initializers",
                   g->path);
  return DS_OK;
}

static ds_status read_graph_output(dsc_graph *g, const Onnx__GraphProto *graph,
                                   ds_error *err) {
  if (graph->n_output != 1 || graph->output[0] == NULL || graph->output[0]->name == NULL)
    return ds_fail(err, DS_ERR_GRAPH, "%s: the graph has %zu outputs; only models with one "
                   "output are supported", g->path, graph->n_output);
  g->output = dsc_graph_find(g, graph->output[0]->name);
  if (g->output < 0)
    return ds_fail(err, DS_ERR_GRAPH, "%s: graph output '%s' is produced by no node", g->path,
                   graph->output[0]->name);
  g->values[g->output].is_output = 1;
  return DS_OK;
}

ds_status dsc_graph_from_proto(dsc_graph *g, const Onnx__ModelProto *model, ds_error *err) {
  const Onnx__GraphProto *graph = model->graph;
  DS_TRY(read_initializers(g, graph, err));
  DS_TRY(read_graph_input(g, graph, err));
  if (graph->n_node > DSC_MAX_NODES)
    return ds_fail(err, DS_ERR_GRAPH, "%s: %zu nodes, at most %d are supported", g->path,
                   graph->n_node, DSC_MAX_NODES);
  g->report->onnx_node_count = (int32_t)graph->n_node;
  for (size_t i = 0; i < graph->n_node; i++) {
    if (graph->node[i] == NULL)
      return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: node %zu is empty", g->path, i);
    DS_TRY(add_node_outputs(g, graph->node[i], i, err));
  }
  for (int32_t n = 0; n < g->node_count; n++)
    DS_TRY(link_node_inputs(g, n, err));
  return read_graph_output(g, graph, err);
}

static const Onnx__TensorShapeProto *input_shape_proto(const Onnx__GraphProto *graph,
                                                       const char *name, int32_t *elem_type) {
  *elem_type = 0;
  for (size_t i = 0; i < graph->n_input; i++) {
    const Onnx__ValueInfoProto *info = graph->input[i];
    if (strcmp(info->name, name) != 0 || info->type == NULL ||
        info->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
        info->type->tensor_type == NULL)
      continue;
    *elem_type = info->type->tensor_type->elem_type;
    return info->type->tensor_type->shape;
  }
  return NULL;
}

/* A file dim: > 0 static, 0 for a named or missing (dynamic) dim. */
static int64_t file_dim(const Onnx__TensorShapeProto *shape, int32_t i, const char **param) {
  const Onnx__TensorShapeProto__Dimension *d = shape->dim[i];
  *param = "?";
  if (d == NULL)
    return 0;
  if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0)
    return d->dim_value;
  if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param)
    *param = d->dim_param;
  return 0;
}

static ds_status check_options(const dsc_graph *g, const dsc_options *options,
                               const Onnx__TensorShapeProto *shape, const char *name,
                               ds_error *err) {
  if (options->input_rank < 1 || options->input_rank > 4)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "input shape rank %d is outside 1..4",
                   options->input_rank);
  for (int32_t i = 0; i < options->input_rank; i++) {
    if (options->input_shape[i] <= 0)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "input shape dim %d is %d; every dim must "
                     "be positive", i, options->input_shape[i]);
  }
  if (shape == NULL)
    return DS_OK;
  if ((int32_t)shape->n_dim != options->input_rank)
    return ds_fail(err, DS_ERR_SHAPE, "%s: input '%s' has rank %zu in the file, but the "
                   "requested input shape has rank %d: give %zu dims, such as 1x3x224x224 for "
                   "an image model", g->path, name, shape->n_dim, options->input_rank,
                   shape->n_dim);
  for (int32_t i = 0; i < options->input_rank; i++) {
    const char *param;
    int64_t dim = file_dim(shape, i, &param);
    if (dim > 0 && dim != options->input_shape[i])
      return ds_fail(err, DS_ERR_SHAPE, "%s: input '%s' dim %d is fixed to %" PRId64 " in the "
                     "file, but the requested input shape has %d; export the model with "
                     "that dim dynamic or request %" PRId64, g->path, name, i, dim,
                     options->input_shape[i], dim);
  }
  return DS_OK;
}

ds_status dsc_graph_fix_input_shape(dsc_graph *g, const Onnx__ModelProto *model,
                                    const dsc_options *options, ds_error *err) {
  dsc_value *input = &g->values[g->input];
  int32_t elem_type = 0;
  const Onnx__TensorShapeProto *shape = input_shape_proto(model->graph, input->name,
                                                         &elem_type);
  if (elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
    return ds_fail(err, DS_ERR_UNSUPPORTED_OP, "%s: input '%s' has element type %d; only "
                   "FLOAT (1) inputs are supported", g->path, input->name, (int)elem_type);
  if (options != NULL && options->input_rank > 0) {
    DS_TRY(check_options(g, options, shape, input->name, err));
    input->rank = options->input_rank;
    for (int32_t i = 0; i < input->rank; i++)
      input->dims[i] = options->input_shape[i];
    int64_t count = 0;
    return dsc_checked_elements(g, "the input", input->rank, input->dims,
                                DSC_MAX_TENSOR_ELEMENTS, &count, err);
  }
  if (shape == NULL)
    return ds_fail(err, DS_ERR_SHAPE, "%s: input '%s' has no shape in the file; pass the input "
                   "shape (--input-shape N,C,H,W)", g->path, input->name);
  if (shape->n_dim > DSR_MAX_RANK)
    return ds_fail(err, DS_ERR_SHAPE, "%s: input '%s' has rank %zu, at most %d is supported",
                   g->path, input->name, shape->n_dim, DSR_MAX_RANK);
  for (int32_t i = 0; i < (int32_t)shape->n_dim; i++) {
    const char *param;
    int64_t dim = file_dim(shape, i, &param);
    if (dim <= 0)
      return ds_fail(err, DS_ERR_SHAPE, "%s: input '%s' dim %d is dynamic ('%s'); pass the "
                     "input shape (--input-shape N,C,H,W) to fix it", g->path, input->name, i,
                     param);
    if (dim > INT32_MAX)
      return ds_fail(err, DS_ERR_SHAPE, "%s: input '%s' dim %d is %" PRId64 ", too large",
                     g->path, input->name, i, dim);
    input->dims[i] = dim;
  }
  input->rank = (int32_t)shape->n_dim;
  int64_t count = 0;
  return dsc_checked_elements(g, "the input", input->rank, input->dims, DSC_MAX_TENSOR_ELEMENTS,
                              &count, err);
}
