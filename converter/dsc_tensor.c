/*
 * Reading TensorProto payloads (initializers and Constant node values) into constants.
 *
 * Every size comes from the file and is checked before use: the rank against DSR_MAX_RANK,
 * each dim for being non-negative, the element count against DSC_MAX_CONSTANT_ELEMENTS with
 * an overflow check, and raw_data or the typed field length against that count.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_ir.h"

typedef struct tensor_layout {
  int32_t rank;
  int64_t dims[DSR_MAX_RANK];
  int64_t count;
  size_t element_bytes;   /* of the stored (file) type */
  int32_t dtype;          /* dsc_dtype it becomes */
} tensor_layout;

static const char *onnx_type_name(int32_t type) {
  switch (type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return "FLOAT";
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return "UINT8";
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return "INT8";
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: return "UINT16";
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: return "INT16";
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return "INT32";
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return "INT64";
  case ONNX__TENSOR_PROTO__DATA_TYPE__STRING: return "STRING";
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return "BOOL";
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return "FLOAT16";
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return "DOUBLE";
  case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: return "BFLOAT16";
  default: return "unknown";
  }
}

static int32_t element_layout(int32_t type, size_t *bytes) {
  switch (type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: *bytes = 4; return DSC_DTYPE_F32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: *bytes = 8; return DSC_DTYPE_F32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: *bytes = 8; return DSC_DTYPE_I64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: *bytes = 4; return DSC_DTYPE_I64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: *bytes = 2; return DSC_DTYPE_I64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: *bytes = 2; return DSC_DTYPE_I64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: *bytes = 1; return DSC_DTYPE_I64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: *bytes = 1; return DSC_DTYPE_I64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: *bytes = 1; return DSC_DTYPE_BOOL;
  default: *bytes = 0; return DSC_DTYPE_UNKNOWN;
  }
}

static void shape_text(const tensor_layout *l, char *text, size_t size) {
  dsc_value v;
  memset(&v, 0, sizeof v);
  v.rank = l->rank;
  memcpy(v.dims, l->dims, sizeof v.dims);
  dsc_shape_text(&v, text, size);
}

static ds_status read_layout(dsc_graph *g, const Onnx__TensorProto *t, const char *what,
                             tensor_layout *l, ds_error *err) {
  memset(l, 0, sizeof *l);
  if (t->segment != NULL)
    return ds_fail(err, DS_ERR_UNSUPPORTED_OP, "%s: %s is segmented, which is not supported",
                   g->path, what);
  l->dtype = element_layout(t->data_type, &l->element_bytes);
  if (l->dtype == DSC_DTYPE_UNKNOWN)
    return ds_fail(err, DS_ERR_UNSUPPORTED_OP,
                   "%s: %s has element type %s (%d); supported: FLOAT, DOUBLE, INT64, INT32, "
                   "INT16, UINT16, INT8, UINT8, BOOL", g->path, what,
                   onnx_type_name(t->data_type), (int)t->data_type);
  if (t->n_dims > DSR_MAX_RANK)
    return ds_fail(err, DS_ERR_SHAPE, "%s: %s has rank %zu, at most %d is supported", g->path,
                   what, t->n_dims, DSR_MAX_RANK);
  l->rank = (int32_t)t->n_dims;
  for (int32_t i = 0; i < l->rank; i++)
    l->dims[i] = t->dims[i];
  return dsc_checked_elements(g, what, l->rank, l->dims, DSC_MAX_CONSTANT_ELEMENTS, &l->count,
                              err);
}

/* Converts count little-endian elements of the file type at bytes into out. */
static void convert_raw(int32_t type, const uint8_t *bytes, int64_t count, void *out) {
  float *f = out;
  int64_t *q = out;
  for (int64_t i = 0; i < count; i++) {
    switch (type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: memcpy(&f[i], bytes + 4 * i, 4); break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: {
      double d;
      memcpy(&d, bytes + 8 * i, 8);
      f[i] = (float)d;
      break;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: memcpy(&q[i], bytes + 8 * i, 8); break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: {
      int32_t v;
      memcpy(&v, bytes + 4 * i, 4);
      q[i] = v;
      break;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: {
      int16_t v;
      memcpy(&v, bytes + 2 * i, 2);
      q[i] = v;
      break;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: {
      uint16_t v;
      memcpy(&v, bytes + 2 * i, 2);
      q[i] = v;
      break;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: q[i] = (int8_t)bytes[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: q[i] = bytes[i]; break;
    default: q[i] = bytes[i] != 0; break; /* BOOL */
    }
  }
}

/* Typed fields: the one the ONNX spec assigns to the element type, with its length. */
static ds_status convert_typed(dsc_graph *g, const Onnx__TensorProto *t, const char *what,
                               const tensor_layout *l, void *out, ds_error *err) {
  size_t have = 0;
  const char *field = "int32_data";
  switch (t->data_type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: have = t->n_float_data; field = "float_data"; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: have = t->n_double_data; field = "double_data"; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: have = t->n_int64_data; field = "int64_data"; break;
  default: have = t->n_int32_data; break;
  }
  if ((int64_t)have != l->count) {
    char shape[128];
    shape_text(l, shape, sizeof shape);
    return ds_fail(err, DS_ERR_ONNX_PARSE,
                   "%s: %s has shape %s (%" PRId64 " elements) but %s holds %zu values; the "
                   "file is corrupt or was written by a broken exporter", g->path, what, shape,
                   l->count, field, have);
  }
  float *f = out;
  int64_t *q = out;
  for (int64_t i = 0; i < l->count; i++) {
    switch (t->data_type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: f[i] = t->float_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: f[i] = (float)t->double_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: q[i] = t->int64_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: q[i] = t->int32_data[i] != 0; break;
    default: q[i] = t->int32_data[i]; break;
    }
  }
  return DS_OK;
}

ds_status dsc_tensor_read(dsc_graph *g, const Onnx__TensorProto *t, const char *what,
                          int32_t value, ds_error *err) {
  tensor_layout l;
  DS_TRY(read_layout(g, t, what, &l, err));
  DS_TRY(dsc_charge_constant(g, l.dtype, l.count, err));
  void *data = dsc_alloc_elements(l.dtype, l.count);
  if (data == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for the %" PRId64
                   " elements of %s", g->path, l.count, what);
  ds_status status = DS_OK;
  int external = t->has_data_location &&
                 t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  if (external) {
    uint8_t *bytes = NULL;
    status = dsc_external_read(g, t, what, (uint64_t)l.count * l.element_bytes, &bytes, err);
    if (status == DS_OK)
      convert_raw(t->data_type, bytes, l.count, data);
    free(bytes);
  } else if (t->has_raw_data) {
    uint64_t expected = (uint64_t)l.count * l.element_bytes;
    if (t->raw_data.len != expected) {
      char shape[128];
      shape_text(&l, shape, sizeof shape);
      status = ds_fail(err, DS_ERR_ONNX_PARSE,
                       "%s: %s has shape %s of %s, which needs %" PRIu64 " bytes, but its "
                       "raw_data holds %zu bytes; the file is corrupt or truncated", g->path,
                       what, shape, onnx_type_name(t->data_type), expected, t->raw_data.len);
    } else {
      convert_raw(t->data_type, t->raw_data.data, l.count, data);
    }
  } else {
    status = convert_typed(g, t, what, &l, data, err);
  }
  if (status != DS_OK) {
    free(data);
    return status;
  }
  dsc_value *v = &g->values[value];
  free(v->data);
  v->data = data;
  v->dtype = l.dtype;
  v->rank = l.rank;
  memcpy(v->dims, l.dims, sizeof v->dims);
  return DS_OK;
}

static ds_status constant_from_list(dsc_graph *g, int32_t value, int32_t dtype, int32_t rank,
                                    int64_t count, const float *floats, const int64_t *ints,
                                    ds_error *err) {
  int64_t dims[1] = {count};
  DS_TRY(dsc_value_set_data(g, value, dtype, rank, dims, NULL, err));
  dsc_value *v = &g->values[value];
  for (int64_t i = 0; i < count; i++) {
    if (dtype == DSC_DTYPE_F32)
      ((float *)v->data)[i] = floats[i];
    else
      ((int64_t *)v->data)[i] = ints[i];
  }
  return DS_OK;
}

ds_status dsc_constant_node_read(dsc_graph *g, const Onnx__NodeProto *node, int32_t value,
                                 ds_error *err) {
  const char *name = node->name != NULL && node->name[0] != '\0' ? node->name : "(unnamed)";
  for (size_t i = 0; i < node->n_attribute; i++) {
    const Onnx__AttributeProto *a = node->attribute[i];
    if (a == NULL || a->name == NULL)
      continue;
    char what[256];
    snprintf(what, sizeof what, "the value of Constant node '%.180s'", name);
    if (strcmp(a->name, "value") == 0 && a->t != NULL)
      return dsc_tensor_read(g, a->t, what, value, err);
    if (strcmp(a->name, "value_float") == 0)
      return constant_from_list(g, value, DSC_DTYPE_F32, 0, 1, &a->f, NULL, err);
    if (strcmp(a->name, "value_int") == 0)
      return constant_from_list(g, value, DSC_DTYPE_I64, 0, 1, NULL, &a->i, err);
    if (strcmp(a->name, "value_floats") == 0)
      return constant_from_list(g, value, DSC_DTYPE_F32, 1, (int64_t)a->n_floats, a->floats,
                                NULL, err);
    if (strcmp(a->name, "value_ints") == 0)
      return constant_from_list(g, value, DSC_DTYPE_I64, 1, (int64_t)a->n_ints, NULL, a->ints,
                                err);
  }
  return ds_fail(err, DS_ERR_UNSUPPORTED_OP,
                 "%s: Constant node '%s' has no value, value_float(s) or value_int(s) "
                 "attribute; sparse and string constants are not supported", g->path, name);
}
