/*
 * Dead node removal and the mapping of the remaining ONNX nodes onto dsr ops. Nodes that map
 * onto no dsr op are collected and reported together in one error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_ir.h"

/* The supported list, appended item by item to the error while it fits. */
static const char *const supported_ops[] = {
    "Conv", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Softmax", "Transpose", "Reshape",
    "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast (float to float)",
    "Gather (constant indices)", "Slice", "Concat", "Expand", "Pad (constant)",
    "Where (constant condition)", "GlobalAveragePool", "LayerNormalization", "Gelu",
    "Einsum (batched products)", "the decomposed LayerNorm and exact GELU patterns",
    "deformable attention blocks", "any op whose inputs are all constant"};

/* The nodes that map onto no dsr op, in graph order. */
typedef struct unsupported_list {
  int32_t count;
  int32_t *nodes;
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

static void add_unsupported(unsupported_list *list, int32_t index) {
  list->nodes[list->count++] = index;
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
  if (n->outputs[0] >= 0 && (lower_reshape_like(g, n) || lower_direct(g, n))) {
    g->report->lowered_node_count++;
    return n->op == DSR_OP_GATHER ? resolve_gather_indices(g, index, err) : DS_OK;
  }
  int done = 0;
  DS_TRY(dsc_lower_data_op(g, index, &done, err));
  if (done)
    g->report->lowered_node_count++;
  else
    add_unsupported(list, index);
  return DS_OK;
}

/* A message under construction. Items are appended whole or not at all, so the text is never
 * cut mid-word. Items that do not fit are counted and reported as "... and N more". */
typedef struct message_text {
  char text[800];
  size_t used;
  int32_t left_off_count;
} message_text;

/* Room kept for the closing "... and N more ..." and the supported list's tail. */
#define DSC_MESSAGE_RESERVE_BYTES 40

static int text_append(message_text *m, size_t reserve_bytes, const char *format, ...) {
  char item[400];
  va_list args;
  va_start(args, format);
  int length = vsnprintf(item, sizeof item, format, args);
  va_end(args);
  if (length < 0 || (size_t)length >= sizeof item ||
      m->used + (size_t)length + reserve_bytes >= sizeof m->text) {
    m->left_off_count++;
    return 0;
  }
  memcpy(m->text + m->used, item, (size_t)length + 1);
  m->used += (size_t)length;
  return 1;
}

/* Writes "(1, 8, 8, 8) and (8)" for the node's inputs. */
static void input_shapes_text(const dsc_graph *g, const dsc_node *n, char *text, size_t size) {
  size_t used = 0;
  text[0] = '\0';
  for (int32_t k = 0; k < n->input_count && used + 1 < size; k++) {
    char shape[64] = "none";
    if (n->inputs[k] >= 0)
      dsc_shape_text(&g->values[n->inputs[k]], shape, sizeof shape);
    int length = snprintf(text + used, size - used, "%s%s", k == 0 ? "" : ", ", shape);
    if (length < 0 || (size_t)length >= size - used) {
      text[used] = '\0';
      break;
    }
    used += (size_t)length;
  }
  if (n->input_count == 0)
    snprintf(text, size, "no inputs");
}

/* A root cause is a node whose op type the converter does not know at all (no shape handler);
 * the others usually fail because the patterns around a root could not fuse. When every
 * failing op type is known, the roots are the failing nodes fed by no other failing node. */
static int is_root(const dsc_graph *g, const unsupported_list *list, int32_t i,
                   int unknown_types_exist) {
  const dsc_node *n = &g->nodes[list->nodes[i]];
  if (unknown_types_exist)
    return dsc_find_handler(n->op_type) == NULL;
  for (int32_t k = 0; k < n->input_count; k++) {
    int32_t p = n->inputs[k] >= 0 ? g->values[n->inputs[k]].producer : -1;
    for (int32_t j = 0; p >= 0 && j < list->count; j++) {
      if (list->nodes[j] == p)
        return 0;
    }
  }
  return 1;
}

static ds_status report_unsupported(const dsc_graph *g, const unsupported_list *list,
                                    ds_error *err) {
  int unknown_types_exist = 0;
  for (int32_t i = 0; i < list->count; i++)
    unknown_types_exist |= dsc_find_handler(g->nodes[list->nodes[i]].op_type) == NULL;
  uint8_t *root = malloc((size_t)list->count);
  if (root == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for the unsupported-op report",
                   g->path);
  int32_t root_count = 0;
  for (int32_t i = 0; i < list->count; i++) {
    root[i] = (uint8_t)is_root(g, list, i, unknown_types_exist);
    root_count += root[i];
  }

  message_text m;
  memset(&m, 0, sizeof m);
  text_append(&m, 0, "%.200s: ", g->path);
  int32_t roots_written = 0;
  for (int32_t i = 0; i < list->count; i++) {
    if (!root[i])
      continue;
    const dsc_node *n = &g->nodes[list->nodes[i]];
    char shapes[160];
    input_shapes_text(g, n, shapes, sizeof shapes);
    const char *reason = dsc_find_handler(n->op_type) == NULL
                          ? "the converter does not support this op type"
                          : "it maps onto no runtime op with these inputs";
    if (roots_written == 0)
      text_append(&m, 200, "node '%.64s' (op %.64s, input shapes %s): %s", n->name,
                  n->op_type, shapes, reason);
    else if (!text_append(&m, 430, "%s'%.64s' (%.64s, %s)",
                          roots_written == 1 ? "; also unsupported: " : ", ", n->name,
                          n->op_type, shapes))
      continue;
    roots_written++;
  }
  if (root_count > roots_written)
    text_append(&m, 0, " ... and %d more", root_count - roots_written);
  m.left_off_count = 0;

  int32_t others = list->count - root_count;
  if (others > 0) {
    text_append(&m, 0, "; as a consequence %d other node%s could not be lowered (ops:", others,
                others == 1 ? "" : "s");
    int32_t types_written = 0;
    for (int32_t i = 0; i < list->count; i++) {
      const dsc_node *n = &g->nodes[list->nodes[i]];
      if (root[i])
        continue;
      int seen = 0;
      for (int32_t j = 0; j < i && !seen; j++)
        seen = !root[j] &&
               strcmp(g->nodes[list->nodes[j]].op_type, n->op_type) == 0;
      if (!seen)
        types_written += text_append(&m, 220, "%s %.64s", types_written == 0 ? "" : ",",
                                     n->op_type);
    }
    if (m.left_off_count > 0)
      text_append(&m, 0, " ... and %d more", m.left_off_count);
    text_append(&m, 0, "): they take their input from an unsupported node, or belong to a "
                "LayerNorm, GELU or deformable attention pattern that cannot fuse around one");
  }
  m.left_off_count = 0;
  text_append(&m, 0, "; supported:");
  int32_t count = (int32_t)(sizeof supported_ops / sizeof supported_ops[0]);
  for (int32_t i = 0; i < count; i++)
    text_append(&m, DSC_MESSAGE_RESERVE_BYTES, "%s %s", i == 0 ? "" : ",", supported_ops[i]);
  if (m.left_off_count > 0)
    text_append(&m, 0, " ... and %d more", m.left_off_count);
  free(root);
  return ds_fail(err, DS_ERR_UNSUPPORTED_OP, "%s", m.text);
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
  int32_t original = g->node_count;
  unsupported_list list = {0, malloc((size_t)(original > 0 ? original : 1) * sizeof(int32_t))};
  if (list.nodes == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for the lowering pass", g->path);
  ds_status status = DS_OK;
  for (int32_t i = 0; i < original && status == DS_OK; i++)
    status = lower_node(g, i, &list, err);
  if (status == DS_OK && list.count > 0)
    status = report_unsupported(g, &list, err);
  free(list.nodes);
  return status != DS_OK ? status : check_static(g, err);
}
