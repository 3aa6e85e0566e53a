/*
 * Dead node removal and the mapping of the remaining ONNX nodes onto dsr ops. Nodes that map
 * onto no dsr op are collected and reported together in one error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_ir.h"

#define DSC_MAX_UNSUPPORTED_TYPES 32

static const char supported_text[] =
    "Conv, MatMul, Gemm, Add, Sub, Mul, Div, Softmax, Transpose, Reshape, Flatten, Squeeze, "
    "Unsqueeze, Identity, Cast (float to float), Gather (constant indices), Slice, Concat, "
    "Expand, Pad (constant), Where (constant condition), GlobalAveragePool, "
    "LayerNormalization, Gelu, Einsum (batched products), the decomposed LayerNorm and exact "
    "GELU patterns, deformable attention blocks, and any op whose inputs are all constant";

typedef struct unsupported_list {
  int32_t count;
  int32_t overflow_count;
  struct {
    char op_type[64];
    char node[DSR_NAME_BYTES];
    char shape[64]; /* of the node's input 0 */
  } entries[DSC_MAX_UNSUPPORTED_TYPES];
} unsupported_list;

ds_status dsc_mark_live(dsc_graph *g, ds_error *err) {
  const dsc_value *out = &g->values[g->output];
  if (out->data != NULL)
    return ds_fail(err, DS_ERR_GRAPH, "%s: the graph output '%s' is a constant: the model "
                   "does not depend on its input", g->path, out->name);
  if (out->producer < 0)
    return ds_fail(err, DS_ERR_GRAPH, "%s: the graph output '%s' is produced by no node",
                   g->path, out->name);
  uint8_t *live = calloc((size_t)g->node_count, 1);
  int32_t *stack = malloc((size_t)g->node_count * sizeof *stack);
  if (live == NULL || stack == NULL) {
    free(live);
    free(stack);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory to mark live nodes", g->path);
  }

  int32_t top = 0;
  stack[top++] = out->producer;
  live[out->producer] = 1;
  while (top > 0) {
    const dsc_node *n = &g->nodes[stack[--top]];
    for (int32_t k = 0; k < n->input_count; k++) {
      int32_t p = n->inputs[k] >= 0 ? g->values[n->inputs[k]].producer : -1;
      if (p >= 0 && !g->nodes[p].dead && !live[p]) {
        live[p] = 1;
        stack[top++] = p;
      }
    }
  }

  for (int32_t i = 0; i < g->node_count; i++) {
    if (!live[i] && !g->nodes[i].dead) {
      g->nodes[i].dead = 1;
      g->report->dead_node_count++;
    }
  }
  free(live);
  free(stack);
  return DS_OK;
}

static void add_unsupported(const dsc_graph *g, unsupported_list *list, const dsc_node *n) {
  for (int32_t i = 0; i < list->count; i++) {
    if (strcmp(list->entries[i].op_type, n->op_type) == 0)
      return;
  }
  if (list->count == DSC_MAX_UNSUPPORTED_TYPES) {
    list->overflow_count++;
    return;
  }
  snprintf(list->entries[list->count].op_type, sizeof list->entries[0].op_type, "%s",
           n->op_type);
  snprintf(list->entries[list->count].node, sizeof list->entries[0].node, "%s", n->name);
  snprintf(list->entries[list->count].shape, sizeof list->entries[0].shape, "none");
  if (n->input_count > 0 && n->inputs[0] >= 0)
    dsc_shape_text(&g->values[n->inputs[0]], list->entries[list->count].shape,
                   sizeof list->entries[0].shape);
  list->count++;
}

static int is_float(const dsc_graph *g, int32_t value) {
  return value >= 0 && g->values[value].dtype == DSC_DTYPE_F32;
}

static int same_shape(const dsc_value *a, const dsc_value *b) {
  return a->rank >= 0 && a->rank == b->rank &&
         memcmp(a->dims, b->dims, sizeof a->dims[0] * (size_t)a->rank) == 0;
}

/* Ops that only move or relabel elements become RESHAPE with one input. */
static int lower_reshape_like(dsc_graph *g, dsc_node *n) {
  static const char *const names[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze",
                                      "Identity"};
  int reshape = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    reshape |= strcmp(n->op_type, names[i]) == 0;
  int32_t in = n->input_count > 0 ? n->inputs[0] : -1, out = n->outputs[0];
  if (in < 0 || out < 0 || !is_float(g, in))
    return 0;
  /* Cast to float, and Expand that keeps the shape, copy their input unchanged. */
  if (!reshape && (strcmp(n->op_type, "Cast") == 0 || strcmp(n->op_type, "Expand") == 0))
    reshape = is_float(g, out) && same_shape(&g->values[in], &g->values[out]);
  if (!reshape)
    return 0;
  n->op = DSR_OP_RESHAPE;
  n->input_count = 1;
  return 1;
}

static int lower_direct(dsc_graph *g, dsc_node *n) {
  static const struct { const char *op_type; int32_t op; } table[] = {
      {"MatMul", DSR_OP_MATMUL},   {"Gemm", DSR_OP_GEMM},
      {"Add", DSR_OP_ADD},         {"Sub", DSR_OP_SUB},
      {"Mul", DSR_OP_MUL},         {"Div", DSR_OP_DIV},
      {"Softmax", DSR_OP_SOFTMAX}, {"Transpose", DSR_OP_TRANSPOSE},
      {"GlobalAveragePool", DSR_OP_GLOBAL_AVG_POOL},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    if (strcmp(n->op_type, table[i].op_type) != 0)
      continue;
    if (!is_float(g, n->outputs[0]))
      return 0;
    n->op = table[i].op;
    return 1;
  }
  if (strcmp(n->op_type, "Conv") == 0 && dsc_is_constant(g, n->inputs[1]) &&
      (n->input_count < 3 || n->inputs[2] < 0 || dsc_is_constant(g, n->inputs[2]))) {
    n->op = DSR_OP_CONV2D;
    return 1;
  }
  if (strcmp(n->op_type, "Gather") == 0 && dsc_is_constant(g, n->inputs[1]) &&
      is_float(g, n->inputs[0])) {
    n->op = DSR_OP_GATHER;
    return 1;
  }
  return 0;
}

/* Gives a Gather with negative indices its own copy with the indices made non-negative,
 * since the same constant may serve Gathers of different axis sizes. */
static ds_status resolve_gather_indices(dsc_graph *g, int32_t index, ds_error *err) {
  const dsc_node *n = &g->nodes[index];
  const dsc_value *indices = &g->values[n->inputs[1]];
  int64_t size = g->values[n->inputs[0]].dims[n->attrs.softmax.axis];
  int64_t count = dsc_value_elements(indices);
  int negative = 0;
  for (int64_t i = 0; i < count; i++)
    negative |= dsc_get_i(indices, i) < 0;
  if (!negative)
    return DS_OK;
  char base[160];
  snprintf(base, sizeof base, "%.140s_resolved", indices->name);
  int32_t copy = -1;
  DS_TRY(dsc_graph_add_fresh_value(g, base, &copy, err));
  indices = &g->values[g->nodes[index].inputs[1]];
  DS_TRY(dsc_value_set_data(g, copy, DSC_DTYPE_I64, indices->rank, indices->dims, NULL, err));
  indices = &g->values[g->nodes[index].inputs[1]];
  int64_t *data = g->values[copy].data;
  for (int64_t i = 0; i < count; i++) {
    int64_t v = dsc_get_i(indices, i);
    data[i] = v < 0 ? v + size : v;
  }
  g->nodes[index].inputs[1] = copy;
  return DS_OK;
}

static ds_status lower_node(dsc_graph *g, int32_t index, unsupported_list *list,
                            ds_error *err) {
  dsc_node *n = &g->nodes[index];
  if (n->dead || n->op != 0)
    return DS_OK;
  if (n->outputs[0] >= 0 && (lower_reshape_like(g, n) || lower_direct(g, n)))
    return n->op == DSR_OP_GATHER ? resolve_gather_indices(g, index, err) : DS_OK;
  int done = 0;
  DS_TRY(dsc_lower_data_op(g, index, &done, err));
  if (!done)
    add_unsupported(g, list, &g->nodes[index]);
  return DS_OK;
}

static ds_status report_unsupported(const dsc_graph *g, const unsupported_list *list,
                                    ds_error *err) {
  char text[768];
  size_t used = 0;
  text[0] = '\0';
  for (int32_t i = 0; i < list->count && used < sizeof text; i++)
    used += (size_t)snprintf(text + used, sizeof text - used,
                             "%s%s (first at node %s, input shape %s)", i > 0 ? ", " : "",
                             list->entries[i].op_type, list->entries[i].node,
                             list->entries[i].shape);
  return ds_fail(err, DS_ERR_UNSUPPORTED_OP, "%s: %d unsupported op type%s: %s%s; supported: "
                 "%s", g->path, list->count + list->overflow_count,
                 list->count + list->overflow_count == 1 ? "" : "s", text,
                 list->overflow_count > 0 ? " and more" : "", supported_text);
}

/* Every live node's inputs and outputs need static shapes. */
static ds_status check_static(const dsc_graph *g, ds_error *err) {
  for (int32_t i = 0; i < g->node_count; i++) {
    const dsc_node *n = &g->nodes[i];
    for (int32_t o = 0; !n->dead && o < n->output_count; o++) {
      if (n->outputs[o] >= 0 && g->values[n->outputs[o]].rank < 0)
        return dsc_node_fail(g, n, DS_ERR_SHAPE, err, "the shape of output '%s' could not "
                             "be inferred", g->values[n->outputs[o]].name);
    }
  }
  return DS_OK;
}

ds_status dsc_lower_graph(dsc_graph *g, ds_error *err) {
  DS_TRY(dsc_graph_index_uses(g, err));
  unsupported_list list;
  memset(&list, 0, sizeof list);
  int32_t original = g->node_count;
  for (int32_t i = 0; i < original; i++)
    DS_TRY(lower_node(g, i, &list, err));
  if (list.count > 0)
    return report_unsupported(g, &list, err);
  return check_static(g, err);
}
