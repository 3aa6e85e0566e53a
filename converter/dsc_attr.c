#include <string.h>

#include "dsc_ir.h"

const Onnx__AttributeProto *dsc_attr_find(const dsc_node *n, const char *name) {
  if (n->proto == NULL)
    return NULL;
  for (size_t i = 0; i < n->proto->n_attribute; i++) {
    const Onnx__AttributeProto *a = n->proto->attribute[i];
    if (a != NULL && a->name != NULL && strcmp(a->name, name) == 0)
      return a;
  }
  return NULL;
}

static ds_status wrong_type(const dsc_graph *g, const dsc_node *n, const char *name,
                            const char *expected, ds_error *err) {
  return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err,
                       "attribute '%s' is not of type %s", name, expected);
}

ds_status dsc_attr_int(const dsc_graph *g, const dsc_node *n, const char *name,
                       int64_t fallback, int64_t *out, ds_error *err) {
  const Onnx__AttributeProto *a = dsc_attr_find(n, name);
  *out = fallback;
  if (a == NULL)
    return DS_OK;
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)
    return wrong_type(g, n, name, "INT", err);
  *out = a->i;
  return DS_OK;
}

ds_status dsc_attr_float(const dsc_graph *g, const dsc_node *n, const char *name,
                         float fallback, float *out, ds_error *err) {
  const Onnx__AttributeProto *a = dsc_attr_find(n, name);
  *out = fallback;
  if (a == NULL)
    return DS_OK;
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
    return wrong_type(g, n, name, "FLOAT", err);
  *out = a->f;
  return DS_OK;
}

ds_status dsc_attr_ints(const dsc_graph *g, const dsc_node *n, const char *name,
                        int64_t *out, int32_t capacity, int32_t *count, ds_error *err) {
  const Onnx__AttributeProto *a = dsc_attr_find(n, name);
  *count = -1;
  if (a == NULL)
    return DS_OK;
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)
    return wrong_type(g, n, name, "INTS", err);
  if (a->n_ints > (size_t)capacity)
    return dsc_node_fail(g, n, DS_ERR_UNSUPPORTED_OP, err,
                         "attribute '%s' has %zu values, at most %d are supported", name,
                         a->n_ints, capacity);
  for (size_t i = 0; i < a->n_ints; i++)
    out[i] = a->ints[i];
  *count = (int32_t)a->n_ints;
  return DS_OK;
}

ds_status dsc_attr_string(const dsc_graph *g, const dsc_node *n, const char *name,
                          const char *fallback, char *out, size_t size, ds_error *err) {
  const Onnx__AttributeProto *a = dsc_attr_find(n, name);
  if (size == 0)
    return DS_OK;
  if (a == NULL) {
    strncpy(out, fallback, size - 1);
    out[size - 1] = '\0';
    return DS_OK;
  }
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING)
    return wrong_type(g, n, name, "STRING", err);
  size_t length = a->s.len < size - 1 ? a->s.len : size - 1;
  if (length > 0)
    memcpy(out, a->s.data, length);
  out[length] = '\0';
  return DS_OK;
}
