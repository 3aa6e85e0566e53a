/*
 * Static shape inference and constant folding, one pass over the nodes in topological order.
 *
 * Each op handler sets its output shapes and, when every input it needs is constant, computes
 * the outputs. A node whose outputs all became constant is folded away. Nodes of op types
 * without a handler keep unknown output shapes, and so do the nodes fed by them; the lowering
 * step lists every such op type in one error.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_ir.h"

ds_status dsc_node_fail(const dsc_graph *g, const dsc_node *n, ds_status status,
                        ds_error *err, const char *format, ...) {
  char detail[512];
  va_list args;
  va_start(args, format);
  vsnprintf(detail, sizeof detail, format, args);
  va_end(args);

  char shapes[384];
  size_t used = 0;
  shapes[0] = '\0';
  for (int32_t k = 0; k < n->input_count && used < sizeof shapes; k++) {
    char one[96] = "absent";
    if (n->inputs[k] >= 0)
      dsc_shape_text(&g->values[n->inputs[k]], one, sizeof one);
    used += (size_t)snprintf(shapes + used, sizeof shapes - used, "%s%s", k > 0 ? ", " : "",
                             one);
  }
  return ds_fail(err, status, "%s: node '%s' (%s, input shapes %s): %s", g->path, n->name,
                 n->op_type, n->input_count > 0 ? shapes : "none", detail);
}

ds_status dsc_broadcast_shape(const dsc_graph *g, const dsc_node *n, const dsc_value *a,
                              const dsc_value *b, int32_t *rank, int64_t *dims,
                              ds_error *err) {
  int32_t r = a->rank > b->rank ? a->rank : b->rank;
  for (int32_t i = 0; i < r; i++) {
    int32_t ia = i - (r - a->rank), ib = i - (r - b->rank);
    int64_t da = ia >= 0 ? a->dims[ia] : 1;
    int64_t db = ib >= 0 ? b->dims[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "shapes cannot be broadcast: axis %d has "
                           "%" PRId64 " and %" PRId64, i, da, db);
    dims[i] = da == 1 ? db : da;
  }
  *rank = r;
  return DS_OK;
}

ds_status dsc_set_output_shape(dsc_graph *g, dsc_node *n, int32_t i, int32_t dtype,
                               int32_t rank, const int64_t *dims, ds_error *err) {
  if (i >= n->output_count || n->outputs[i] < 0)
    return DS_OK;
  if (rank < 0 || rank > DSR_MAX_RANK)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "output rank %d is outside 0..%d", rank,
                         DSR_MAX_RANK);
  int64_t count = 0;
  char what[160];
  snprintf(what, sizeof what, "output of node '%.120s'", n->name);
  DS_TRY(dsc_checked_elements(g, what, rank, dims, DSC_MAX_TENSOR_ELEMENTS, &count, err));
  dsc_value *v = &g->values[n->outputs[i]];
  v->dtype = dtype;
  v->rank = rank;
  for (int32_t k = 0; k < rank; k++)
    v->dims[k] = dims[k];
  return DS_OK;
}

dsc_op_handler dsc_find_handler(const char *op_type) {
  dsc_op_handler h = dsc_find_shape_handler(op_type);
  if (h == NULL)
    h = dsc_find_math_handler(op_type);
  if (h == NULL)
    h = dsc_find_nn_handler(op_type);
  if (h == NULL)
    h = dsc_find_extra_handler(op_type);
  return h;
}

static ds_status report_cycle(const dsc_graph *g, const int32_t *pending, ds_error *err) {
  for (int32_t i = 0; i < g->node_count; i++) {
    if (!g->nodes[i].dead && pending[i] > 0)
      return ds_fail(err, DS_ERR_GRAPH, "%s: the graph has a cycle through node '%s' (%s)",
                     g->path, g->nodes[i].name, g->nodes[i].op_type);
  }
  return ds_fail(err, DS_ERR_INTERNAL, "%s: topological sort lost a node", g->path);
}

/* Kahn's algorithm over live nodes; *order (caller frees) lists them producers first. */
ds_status dsc_topological_order(dsc_graph *g, int32_t **order, ds_error *err) {
  DS_TRY(dsc_graph_index_uses(g, err));
  int32_t *pending = calloc((size_t)g->node_count + 1, sizeof *pending);
  int32_t *queue = malloc(((size_t)g->node_count + 1) * sizeof *queue);
  if (pending == NULL || queue == NULL) {
    free(pending);
    free(queue);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory to sort nodes", g->path);
  }

  int32_t head = 0, tail = 0, live = 0;
  for (int32_t i = 0; i < g->node_count; i++) {
    const dsc_node *n = &g->nodes[i];
    if (n->dead)
      continue;
    live++;
    for (int32_t k = 0; k < n->input_count; k++) {
      int32_t v = n->inputs[k];
      if (v >= 0 && g->values[v].producer >= 0 && !g->nodes[g->values[v].producer].dead)
        pending[i]++;
    }
    if (pending[i] == 0)
      queue[tail++] = i;
  }

  while (head < tail) {
    const dsc_node *n = &g->nodes[queue[head++]];
    for (int32_t o = 0; o < n->output_count; o++) {
      for (int32_t c = 0; n->outputs[o] >= 0 && c < dsc_use_count(g, n->outputs[o]); c++) {
        int32_t consumer = dsc_consumer(g, n->outputs[o], c);
        if (--pending[consumer] == 0)
          queue[tail++] = consumer;
      }
    }
  }

  ds_status status = tail == live ? DS_OK : report_cycle(g, pending, err);
  free(pending);
  if (status != DS_OK) {
    free(queue);
    return status;
  }
  *order = queue;
  return DS_OK;
}

static int inputs_known(const dsc_graph *g, const dsc_node *n) {
  for (int32_t k = 0; k < n->input_count; k++) {
    if (n->inputs[k] >= 0 && g->values[n->inputs[k]].rank < 0)
      return 0;
  }
  return 1;
}

static int outputs_constant(const dsc_graph *g, const dsc_node *n) {
  int32_t present = 0;
  for (int32_t o = 0; o < n->output_count; o++) {
    if (n->outputs[o] < 0)
      continue;
    present++;
    if (g->values[n->outputs[o]].data == NULL)
      return 0;
  }
  return present > 0;
}

static ds_status infer_node(dsc_graph *g, int32_t index, ds_error *err) {
  dsc_node *n = &g->nodes[index];
  dsc_op_handler handler = dsc_find_handler(n->op_type);
  if (handler == NULL || !inputs_known(g, n))
    return DS_OK; /* outputs stay unknown; the lowering step reports the op type */
  DS_TRY(handler(g, n, err));
  n = &g->nodes[index];
  if (outputs_constant(g, n)) {
    n->dead = 1;
    for (int32_t o = 0; o < n->output_count; o++) {
      if (n->outputs[o] >= 0)
        g->values[n->outputs[o]].producer = -1;
    }
    g->report->folded_node_count++;
  }
  return DS_OK;
}

ds_status dsc_infer_graph(dsc_graph *g, ds_error *err) {
  int32_t *order = NULL;
  DS_TRY(dsc_topological_order(g, &order, err));
  int32_t live = 0;
  for (int32_t i = 0; i < g->node_count; i++)
    live += !g->nodes[i].dead;
  ds_status status = DS_OK;
  for (int32_t i = 0; i < live && status == DS_OK; i++)
    status = infer_node(g, order[i], err);
  free(order);
  return status;
}

int32_t dsc_inputs_constant(const dsc_graph *g, const dsc_node *n) {
  for (int32_t k = 0; k < n->input_count; k++) {
    if (n->inputs[k] >= 0 && g->values[n->inputs[k]].data == NULL)
      return 0;
  }
  return 1;
}

ds_status dsc_require_inputs(const dsc_graph *g, const dsc_node *n, int32_t required,
                             int32_t max_count, ds_error *err) {
  if (n->input_count < required || n->input_count > max_count)
    return dsc_node_fail(g, n, DS_ERR_GRAPH, err, "has %d inputs, expected %d to %d",
                         n->input_count, required, max_count);
  for (int32_t k = 0; k < required; k++) {
    if (n->inputs[k] < 0)
      return dsc_node_fail(g, n, DS_ERR_GRAPH, err, "required input %d is missing", k);
  }
  if (n->output_count < 1 || n->outputs[0] < 0)
    return dsc_node_fail(g, n, DS_ERR_GRAPH, err, "has no output");
  return DS_OK;
}

ds_status dsc_input_ints(const dsc_graph *g, const dsc_node *n, int32_t k, int64_t *out,
                         int32_t capacity, int32_t *count, ds_error *err) {
  if (k >= n->input_count || n->inputs[k] < 0)
    return dsc_node_fail(g, n, DS_ERR_GRAPH, err, "input %d is missing", k);
  const dsc_value *v = &g->values[n->inputs[k]];
  if (v->data == NULL)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "input %d ('%s') is not constant after "
                         "folding, so the shape is dynamic; the converter needs static shapes "
                         "(export with a fixed input size)", k, v->name);
  if (v->rank > 1)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "input %d ('%s') must be 1-D, has rank %d",
                         k, v->name, v->rank);
  int64_t elements = dsc_value_elements(v);
  if (elements > capacity)
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "input %d ('%s') has %" PRId64 " values, at "
                         "most %d are supported", k, v->name, elements, capacity);
  for (int64_t i = 0; i < elements; i++)
    out[i] = dsc_get_i(v, i);
  *count = (int32_t)elements;
  return DS_OK;
}

ds_status dsc_normalize_axis(const dsc_graph *g, const dsc_node *n, int64_t axis,
                             int32_t rank, int32_t *out, ds_error *err) {
  if (axis < -rank || axis >= (rank > 0 ? rank : 1))
    return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "axis %" PRId64 " is outside %d..%d", axis,
                         -rank, rank - 1);
  *out = (int32_t)(axis < 0 ? axis + rank : axis);
  return DS_OK;
}

ds_status dsc_alloc_output(dsc_graph *g, dsc_node *n, int32_t i, int32_t dtype, int32_t rank,
                           const int64_t *dims, void **data, ds_error *err) {
  *data = NULL;
  DS_TRY(dsc_set_output_shape(g, n, i, dtype, rank, dims, err));
  if (n->outputs[i] < 0)
    return dsc_node_fail(g, n, DS_ERR_GRAPH, err, "output %d is absent", i);
  DS_TRY(dsc_value_set_data(g, n->outputs[i], dtype, rank, dims, NULL, err));
  *data = g->values[n->outputs[i]].data;
  return DS_OK;
}

int64_t dsc_broadcast_offset(const dsc_value *v, int32_t out_rank, const int64_t *out_dims,
                             int64_t flat) {
  int64_t offset = 0, stride = 1;
  for (int32_t i = out_rank - 1; i >= 0; i--) {
    int64_t coord = flat % out_dims[i];
    flat /= out_dims[i];
    int32_t vi = i - (out_rank - v->rank);
    if (vi < 0)
      continue;
    if (v->dims[vi] != 1)
      offset += coord * stride;
    stride *= v->dims[vi];
  }
  return offset;
}
