#include "dsc_ir.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dsc_graph_free(dsc_graph *g) {
  if (g == NULL)
    return;
  for (int32_t i = 0; i < g->value_count; i++) {
    free(g->values[i].name);
    free(g->values[i].data);
  }
  for (int32_t i = 0; i < g->node_count; i++) {
    free(g->nodes[i].name);
    free(g->nodes[i].op_type);
    free(g->nodes[i].inputs);
    free(g->nodes[i].outputs);
    free(g->nodes[i].deform);
  }
  free(g->values);
  free(g->nodes);
  free(g->name_table);
  free(g->use_offsets);
  free(g->use_nodes);
  memset(g, 0, sizeof *g);
}

static uint32_t hash_name(const char *name) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
    h ^= *p;
    h *= 16777619u;
  }
  return h;
}

int32_t dsc_graph_find(const dsc_graph *g, const char *name) {
  if (g->name_table_size == 0 || name == NULL)
    return -1;
  uint32_t mask = (uint32_t)g->name_table_size - 1;
  for (uint32_t slot = hash_name(name) & mask;; slot = (slot + 1) & mask) {
    int32_t entry = g->name_table[slot];
    if (entry == 0)
      return -1;
    if (strcmp(g->values[entry - 1].name, name) == 0)
      return entry - 1;
  }
}

static void insert_name(dsc_graph *g, int32_t index) {
  uint32_t mask = (uint32_t)g->name_table_size - 1;
  uint32_t slot = hash_name(g->values[index].name) & mask;
  while (g->name_table[slot] != 0)
    slot = (slot + 1) & mask;
  g->name_table[slot] = index + 1;
}

/* Keeps the table at most half full so probes stay short and always end. */
static ds_status grow_name_table(dsc_graph *g, ds_error *err) {
  if ((int64_t)(g->value_count + 1) * 2 <= g->name_table_size)
    return DS_OK;
  int32_t size = g->name_table_size == 0 ? 1024 : g->name_table_size * 2;
  if (size <= 0 || size > (1 << 28))
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: too many tensor names", g->path);
  int32_t *table = calloc((size_t)size, sizeof *table);
  if (table == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for the name table", g->path);
  free(g->name_table);
  g->name_table = table;
  g->name_table_size = size;
  for (int32_t i = 0; i < g->value_count; i++)
    insert_name(g, i);
  return DS_OK;
}

ds_status dsc_graph_add_value(dsc_graph *g, const char *name, int32_t *index, ds_error *err) {
  if (dsc_graph_find(g, name) >= 0)
    return ds_fail(err, DS_ERR_GRAPH,
                   "%s: tensor name '%s' is defined twice; every initializer and node output "
                   "needs a unique name", g->path, name);
  DS_TRY(grow_name_table(g, err));
  if (g->value_count == g->value_capacity) {
    int32_t capacity = g->value_capacity == 0 ? 256 : g->value_capacity * 2;
    dsc_value *values = realloc(g->values, (size_t)capacity * sizeof *values);
    if (values == NULL)
      return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for %d tensors", g->path,
                     capacity);
    g->values = values;
    g->value_capacity = capacity;
  }
  dsc_value *v = &g->values[g->value_count];
  memset(v, 0, sizeof *v);
  v->name = strdup(name);
  if (v->name == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for a tensor name", g->path);
  v->rank = -1;
  v->producer = -1;
  *index = g->value_count++;
  insert_name(g, *index);
  return DS_OK;
}

ds_status dsc_graph_add_fresh_value(dsc_graph *g, const char *base, int32_t *index,
                                    ds_error *err) {
  char name[256];
  for (int32_t suffix = 0; suffix < 1000000; suffix++) {
    snprintf(name, sizeof name, "%.200s_%d", base, suffix);
    if (dsc_graph_find(g, name) < 0)
      return dsc_graph_add_value(g, name, index, err);
  }
  return ds_fail(err, DS_ERR_INTERNAL, "%s: cannot make a unique name from '%s'", g->path,
                 base);
}

static int32_t *alloc_indices(int32_t count) {
  int32_t *array = malloc((size_t)(count > 0 ? count : 1) * sizeof *array);
  if (array != NULL) {
    for (int32_t i = 0; i < count; i++)
      array[i] = -1;
  }
  return array;
}

ds_status dsc_graph_add_node(dsc_graph *g, const char *name, const char *op_type,
                             int32_t input_count, int32_t output_count, int32_t *index,
                             ds_error *err) {
  if (g->node_count >= DSC_MAX_NODES)
    return ds_fail(err, DS_ERR_GRAPH, "%s: more than %d nodes", g->path, DSC_MAX_NODES);
  if (g->node_count == g->node_capacity) {
    int32_t capacity = g->node_capacity == 0 ? 256 : g->node_capacity * 2;
    dsc_node *nodes = realloc(g->nodes, (size_t)capacity * sizeof *nodes);
    if (nodes == NULL)
      return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for %d nodes", g->path,
                     capacity);
    g->nodes = nodes;
    g->node_capacity = capacity;
  }
  dsc_node *n = &g->nodes[g->node_count];
  memset(n, 0, sizeof *n);
  n->name = strdup(name);
  n->op_type = strdup(op_type);
  n->inputs = alloc_indices(input_count);
  n->outputs = alloc_indices(output_count);
  g->node_count++; /* counted first so that dsc_graph_free releases partial nodes */
  if (n->name == NULL || n->op_type == NULL || n->inputs == NULL || n->outputs == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for node '%s'", g->path, name);
  n->input_count = input_count;
  n->output_count = output_count;
  *index = g->node_count - 1;
  return DS_OK;
}

ds_status dsc_graph_index_uses(dsc_graph *g, ds_error *err) {
  free(g->use_offsets);
  free(g->use_nodes);
  g->use_nodes = NULL;
  g->use_offsets = calloc((size_t)g->value_count + 1, sizeof *g->use_offsets);
  if (g->use_offsets == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for the use index", g->path);

  int64_t total = 0;
  for (int32_t i = 0; i < g->node_count; i++) {
    const dsc_node *n = &g->nodes[i];
    for (int32_t k = 0; !n->dead && k < n->input_count; k++) {
      if (n->inputs[k] >= 0) {
        g->use_offsets[n->inputs[k] + 1]++;
        total++;
      }
    }
  }
  for (int32_t v = 0; v < g->value_count; v++)
    g->use_offsets[v + 1] += g->use_offsets[v];

  g->use_nodes = malloc((size_t)(total > 0 ? total : 1) * sizeof *g->use_nodes);
  int32_t *fill = calloc((size_t)g->value_count + 1, sizeof *fill);
  if (g->use_nodes == NULL || fill == NULL) {
    free(fill);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for the use index", g->path);
  }
  for (int32_t i = 0; i < g->node_count; i++) {
    const dsc_node *n = &g->nodes[i];
    for (int32_t k = 0; !n->dead && k < n->input_count; k++) {
      int32_t v = n->inputs[k];
      if (v >= 0)
        g->use_nodes[g->use_offsets[v] + fill[v]++] = i;
    }
  }
  free(fill);
  g->use_value_count = g->value_count;
  return DS_OK;
}

int32_t dsc_use_count(const dsc_graph *g, int32_t value) {
  if (value < 0 || value >= g->use_value_count)
    return 0;
  return g->use_offsets[value + 1] - g->use_offsets[value];
}

int32_t dsc_consumer(const dsc_graph *g, int32_t value, int32_t i) {
  if (i < 0 || i >= dsc_use_count(g, value))
    return -1;
  return g->use_nodes[g->use_offsets[value] + i];
}

int32_t dsc_single_consumer(const dsc_graph *g, int32_t value) {
  if (value < 0 || value == g->output || dsc_use_count(g, value) != 1)
    return -1;
  return dsc_consumer(g, value, 0);
}

int64_t dsc_value_elements(const dsc_value *v) {
  int64_t n = 1;
  for (int32_t i = 0; i < v->rank; i++)
    n *= v->dims[i];
  return n;
}

int32_t dsc_is_constant(const dsc_graph *g, int32_t value) {
  return value >= 0 && value < g->value_count && g->values[value].data != NULL;
}

const char *dsc_shape_text(const dsc_value *v, char *text, size_t size) {
  if (v->rank < 0) {
    snprintf(text, size, "(unknown)");
    return text;
  }
  size_t used = (size_t)snprintf(text, size, "(");
  for (int32_t i = 0; i < v->rank && used < size; i++)
    used += (size_t)snprintf(text + used, size - used, "%s%" PRId64, i > 0 ? ", " : "",
                             v->dims[i]);
  if (used < size)
    snprintf(text + used, size - used, ")");
  return text;
}

static size_t dtype_bytes(int32_t dtype) {
  return dtype == DSC_DTYPE_F32 ? sizeof(float) : sizeof(int64_t);
}

void *dsc_alloc_elements(int32_t dtype, int64_t count) {
  if (count < 0 || count > DSC_MAX_CONSTANT_ELEMENTS)
    return NULL;
  return calloc((size_t)(count > 0 ? count : 1), dtype_bytes(dtype));
}

ds_status dsc_charge_constant(dsc_graph *g, int32_t dtype, int64_t count, ds_error *err) {
  int64_t bytes = count * (int64_t)dtype_bytes(dtype);
  if (g->constant_bytes + bytes > DSC_MAX_CONSTANT_BYTES_TOTAL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: constants need more than %" PRId64 " bytes "
                   "in total", g->path, DSC_MAX_CONSTANT_BYTES_TOTAL);
  g->constant_bytes += bytes;
  return DS_OK;
}

ds_status dsc_checked_elements(const dsc_graph *g, const char *what, int32_t rank,
                               const int64_t *dims, int64_t cap, int64_t *count,
                               ds_error *err) {
  int64_t n = 1;
  for (int32_t i = 0; i < rank; i++) {
    if (dims[i] < 0)
      return ds_fail(err, DS_ERR_SHAPE, "%s: %s has negative dim %d (%" PRId64 ")", g->path,
                     what, i, dims[i]);
    if (dims[i] > 0 && n > cap / dims[i])
      return ds_fail(err, DS_ERR_SHAPE,
                     "%s: %s has more than %" PRId64 " elements (dim %d is %" PRId64 ")",
                     g->path, what, cap, i, dims[i]);
    n *= dims[i];
  }
  *count = n;
  return DS_OK;
}

ds_status dsc_value_set_data(dsc_graph *g, int32_t value, int32_t dtype, int32_t rank,
                             const int64_t *dims, const void *data, ds_error *err) {
  int64_t count = 0;
  DS_TRY(dsc_checked_elements(g, g->values[value].name, rank, dims,
                              DSC_MAX_CONSTANT_ELEMENTS, &count, err));
  DS_TRY(dsc_charge_constant(g, dtype, count, err));
  void *copy = dsc_alloc_elements(dtype, count);
  if (copy == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for %" PRId64
                   " elements of constant '%s'", g->path, count, g->values[value].name);
  if (data != NULL && count > 0)
    memcpy(copy, data, (size_t)count * dtype_bytes(dtype));
  dsc_value *v = &g->values[value];
  free(v->data);
  v->data = copy;
  v->dtype = dtype;
  v->rank = rank;
  for (int32_t i = 0; i < rank; i++)
    v->dims[i] = dims[i];
  return DS_OK;
}

double dsc_get_f(const dsc_value *v, int64_t i) {
  if (v->dtype == DSC_DTYPE_F32)
    return ((const float *)v->data)[i];
  return (double)((const int64_t *)v->data)[i];
}

int64_t dsc_get_i(const dsc_value *v, int64_t i) {
  if (v->dtype == DSC_DTYPE_F32) {
    float f = ((const float *)v->data)[i];
    if (!(f > -9.2e18f && f < 9.2e18f))
      return 0; /* NaN or out of int64 range: no meaningful integer */
    return (int64_t)f;
  }
  return ((const int64_t *)v->data)[i];
}
