/*
 * Decoders of the artifact's section payloads (docs/format.md, "Sections"). Each decoder reads
 * its section with a bounds-checked cursor, caps counts before allocating, validates every
 * index and enum value where it is read, and requires the section to be consumed exactly.
 * Checksums were verified before any of this runs.
 */
#include "dsf_internal.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/ds_model.h"
#include "../runtime/dsr_slice.h"

#define CORRUPT DS_ERR_ARTIFACT_CORRUPT

typedef struct decoder {
  dsr_model *model;
  dsf_cursor weights;          /* the weights section, read through blob offsets */
  uint64_t weights_expected;   /* where the next blob must start */
  int32_t deform_count;
  int32_t *deform_nodes;       /* node index per deformable layer, in node order */
} decoder;

/* Rewinds to field_offset so that the message points at the field, then fails. */
static ds_status fail_at(dsf_cursor *cursor, size_t field_offset, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static ds_status fail_at(dsf_cursor *cursor, size_t field_offset, const char *format, ...) {
  char detail[640];
  va_list args;
  va_start(args, format);
  vsnprintf(detail, sizeof detail, format, args);
  va_end(args);
  cursor->offset = field_offset;
  return dsf_cursor_fail(cursor, CORRUPT, "%s", detail);
}

/* Reads an i32 that must lie in [low, high]. */
static ds_status take_ranged(dsf_cursor *cursor, const char *field, int32_t low, int32_t high,
                             int32_t *value) {
  size_t at = cursor->offset;
  DS_TRY(dsf_take_i32(cursor, field, value));
  if (*value < low || *value > high) {
    return fail_at(cursor, at, "%s is %" PRId32 " but must be %" PRId32 " to %" PRId32 "; the "
                   "file is corrupt", field, *value, low, high);
  }
  return DS_OK;
}

/* Reads a tensor index that must be valid, or -1 when optional is set. */
static ds_status take_tensor_index(dsf_cursor *cursor, const char *field, int32_t tensor_count,
                                   int optional, int32_t *value) {
  size_t at = cursor->offset;
  DS_TRY(dsf_take_i32(cursor, field, value));
  if ((*value == -1 && optional) || (*value >= 0 && *value < tensor_count))
    return DS_OK;
  return fail_at(cursor, at, "%s is tensor %" PRId32 " but the model has %" PRId32
                 " tensors (0 to %" PRId32 "%s); the file is corrupt",
                 field, *value, tensor_count, tensor_count - 1, optional ? ", or -1" : "");
}

static ds_status take_qparams(dsf_cursor *cursor, const char *field, dsr_qparams *q) {
  size_t at = cursor->offset;
  const uint8_t *bytes;
  DS_TRY(dsf_take_bytes(cursor, field, DSF_QPARAMS_WIRE_BYTES, &bytes));
  q->scale = dsf_f32_from_bits(dsf_load_u32(bytes));
  q->zero_point = (int32_t)dsf_load_u32(bytes + 4);
  q->dtype = bytes[8];
  q->bits = bytes[9];
  q->reserved[0] = 0;
  q->reserved[1] = 0;
  if (dsf_dtype_bytes(q->dtype) == 0 || bytes[10] != 0 || bytes[11] != 0) {
    return fail_at(cursor, at, "%s has dtype %u and reserved bytes %u %u; the dtype must be 0 "
                   "to %d and the reserved bytes zero", field, (unsigned)q->dtype,
                   (unsigned)bytes[10], (unsigned)bytes[11], DSR_DTYPE_I64);
  }
  return DS_OK;
}

/* ---- Tensors and weights ---- */

/* Reads one blob reference (u64 offset, u64 bytes) and copies the blob out of the weights. */
static ds_status take_blob(decoder *d, dsf_cursor *cursor, const char *field, int64_t elements,
                           size_t element_bytes, void **out) {
  size_t at = cursor->offset;
  uint64_t offset, bytes;
  DS_TRY(dsf_take_u64(cursor, field, &offset));
  DS_TRY(dsf_take_u64(cursor, field, &bytes));
  uint64_t expected_bytes = (uint64_t)elements * element_bytes; /* elements < 2^31 */
  if (offset != d->weights_expected || bytes != expected_bytes || offset > d->weights.size ||
      bytes > d->weights.size - offset) {
    return fail_at(cursor, at, "%s claims %" PRIu64 " bytes at weights offset %" PRIu64
                   " but must be %" PRIu64 " bytes at offset %" PRIu64 " inside the %zu-byte "
                   "weights section; the file is corrupt", field, bytes, offset, expected_bytes,
                   d->weights_expected, d->weights.size);
  }

  uint8_t *copy = malloc(bytes > 0 ? (size_t)bytes : 1);
  if (copy == NULL) {
    return ds_fail(cursor->source->err, DS_ERR_OUT_OF_MEMORY,
                   "cannot allocate %" PRIu64 " bytes for %s", bytes, field);
  }
  const uint8_t *source = d->weights.base + offset;
  for (int64_t i = 0; i < elements; i++) {
    const uint8_t *element = source + (size_t)i * element_bytes;
    uint8_t *target = copy + (size_t)i * element_bytes;
    if (element_bytes == 1) {
      target[0] = element[0];
    } else if (element_bytes == 2) {
      uint16_t v = dsf_load_u16(element);
      memcpy(target, &v, 2);
    } else if (element_bytes == 4) {
      uint32_t v = dsf_load_u32(element);
      memcpy(target, &v, 4);
    } else {
      uint64_t v = dsf_load_u64(element);
      memcpy(target, &v, 8);
    }
  }
  *out = copy;
  uint64_t end = offset + bytes;
  d->weights_expected = (end + DSF_ALIGNMENT_BYTES - 1) / DSF_ALIGNMENT_BYTES *
                        DSF_ALIGNMENT_BYTES;
  return DS_OK;
}

static ds_status take_shape(dsf_cursor *cursor, dsr_tensor *t, int64_t *elements) {
  DS_TRY(take_ranged(cursor, "tensor rank", 0, DSR_MAX_RANK, &t->rank));
  int64_t count = 1;
  for (int32_t k = 0; k < t->rank; k++) {
    size_t at = cursor->offset;
    DS_TRY(dsf_take_i32(cursor, "tensor dim", &t->dims[k]));
    int32_t dim = t->dims[k];
    if (dim < 0 || (dim > 0 && count > DSF_MAX_ELEMENTS / dim)) {
      return fail_at(cursor, at, "tensor '%s' dim %" PRId32 " is %" PRId32 ", which is negative "
                     "or makes more than %" PRId64 " elements; the file is corrupt", t->name, k,
                     dim, (int64_t)DSF_MAX_ELEMENTS);
    }
    count *= dim;
  }
  *elements = count;
  return DS_OK;
}

static ds_status take_channels(dsf_cursor *cursor, dsr_tensor *t) {
  size_t at = cursor->offset;
  DS_TRY(dsf_take_i32(cursor, "channel axis", &t->channel_axis));
  DS_TRY(dsf_take_i32(cursor, "channel count", &t->channel_count));
  if (t->channel_count == 0)
    return DS_OK;
  if (t->channel_count < 0 || t->channel_axis < 0 || t->channel_axis >= t->rank ||
      t->dims[t->channel_axis] != t->channel_count) {
    return fail_at(cursor, at, "tensor '%s' has channel axis %" PRId32 " and channel count %"
                   PRId32 " but rank %" PRId32 "; the count must be 0 or the dim of an axis "
                   "inside the rank", t->name, t->channel_axis, t->channel_count, t->rank);
  }
  return DS_OK;
}

static ds_status decode_tensor(decoder *d, dsf_cursor *cursor, dsr_tensor *t) {
  DS_TRY(dsf_take_name(cursor, "tensor name", t->name));
  int32_t kind;
  DS_TRY(take_ranged(cursor, "tensor kind", DSR_TENSOR_CONSTANT, DSR_TENSOR_OUTPUT, &kind));
  t->kind = (uint8_t)kind;
  int64_t elements = 0;
  DS_TRY(take_shape(cursor, t, &elements));
  DS_TRY(take_qparams(cursor, "tensor qparams", &t->qparams));
  DS_TRY(dsf_take_bool(cursor, "tensor has_qparams", &t->has_qparams));
  DS_TRY(take_channels(cursor, t));

  size_t at = cursor->offset;
  uint32_t blobs;
  DS_TRY(dsf_take_u32(cursor, "tensor blob flags", &blobs));
  if ((blobs & ~DSF_TENSOR_BLOBS_KNOWN) != 0) {
    return fail_at(cursor, at, "tensor '%s' blob flags 0x%08" PRIx32 " set reserved bits",
                   t->name, blobs);
  }
  if (blobs & DSF_TENSOR_HAS_F32) {
    void *data = NULL;
    DS_TRY(take_blob(d, cursor, "float data", elements, 4, &data));
    t->data_f32 = data;
  }
  if (blobs & DSF_TENSOR_HAS_Q) {
    void *data = NULL;
    DS_TRY(take_blob(d, cursor, "quantized data", elements, dsf_dtype_bytes(t->qparams.dtype),
                     &data));
    t->data_q = data;
  }
  return DS_OK;
}

static ds_status decode_tensors(decoder *d, dsf_cursor *cursor) {
  dsr_model *model = d->model;
  uint32_t count;
  DS_TRY(dsf_take_count(cursor, "tensor count", DSF_MAX_TENSORS, DSF_TENSOR_MIN_WIRE_BYTES,
                        &count));
  if (count > 0) {
    model->tensors = calloc(count, sizeof *model->tensors);
    if (model->tensors == NULL)
      return ds_fail(cursor->source->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %" PRIu32
                     " tensors", count);
  }
  model->tensor_count = (int32_t)count;
  for (uint32_t i = 0; i < count; i++)
    DS_TRY(decode_tensor(d, cursor, &model->tensors[i]));
  DS_TRY(dsf_expect_end(cursor));

  if (d->weights_expected != d->weights.size) {
    return dsf_cursor_fail(&d->weights, CORRUPT, "the tensors use %" PRIu64 " bytes of the "
                           "weights section but it holds %zu; the file is corrupt",
                           d->weights_expected, d->weights.size);
  }
  return DS_OK;
}

/* ---- Graph ---- */

static ds_status take_attrs(dsf_cursor *cursor, dsr_node *n) {
  size_t at = cursor->offset;
  uint32_t attr_bytes;
  DS_TRY(dsf_take_u32(cursor, "attribute bytes", &attr_bytes));
  if (attr_bytes != dsf_op_attr_bytes(n->op)) {
    return fail_at(cursor, at, "node '%s' has %" PRIu32 " attribute bytes but op %" PRId32
                   " takes %" PRIu32 "; the file is corrupt", n->name, attr_bytes, n->op,
                   dsf_op_attr_bytes(n->op));
  }
  dsr_attrs *a = &n->attrs;
  switch (n->op) {
  case DSR_OP_CONV2D:
    for (int i = 0; i < 2; i++)
      DS_TRY(dsf_take_i32(cursor, "conv stride", &a->conv.stride[i]));
    for (int i = 0; i < 4; i++)
      DS_TRY(dsf_take_i32(cursor, "conv pad", &a->conv.pad[i]));
    for (int i = 0; i < 2; i++)
      DS_TRY(dsf_take_i32(cursor, "conv dilation", &a->conv.dilation[i]));
    return dsf_take_i32(cursor, "conv group", &a->conv.group);
  case DSR_OP_GEMM:
    DS_TRY(dsf_take_f32(cursor, "gemm alpha", &a->gemm.alpha));
    DS_TRY(dsf_take_f32(cursor, "gemm beta", &a->gemm.beta));
    DS_TRY(dsf_take_i32(cursor, "gemm trans_a", &a->gemm.trans_a));
    return dsf_take_i32(cursor, "gemm trans_b", &a->gemm.trans_b);
  case DSR_OP_LAYER_NORM:
    DS_TRY(dsf_take_i32(cursor, "norm axis", &a->norm.axis));
    return dsf_take_f32(cursor, "norm epsilon", &a->norm.epsilon);
  case DSR_OP_SOFTMAX:
  case DSR_OP_GATHER:
  case DSR_OP_CONCAT:
    return dsf_take_i32(cursor, "axis", &a->softmax.axis);
  case DSR_OP_PAD:
    for (int i = 0; i < DSR_MAX_RANK; i++)
      DS_TRY(dsf_take_i32(cursor, "pad begin", &a->pad.begin[i]));
    for (int i = 0; i < DSR_MAX_RANK; i++)
      DS_TRY(dsf_take_i32(cursor, "pad end", &a->pad.end[i]));
    return dsf_take_f32(cursor, "pad value", &a->pad.value);
  case DSR_OP_TRANSPOSE:
    for (int i = 0; i < DSR_MAX_RANK; i++)
      DS_TRY(dsf_take_i32(cursor, "transpose perm", &a->transpose.perm[i]));
    return DS_OK;
  default:
    return DS_OK;
  }
}

static ds_status take_deform(dsf_cursor *cursor, int32_t tensor_count, dsr_deform_attn *p) {
  int32_t *positive[] = {&p->channels,      &p->height,        &p->width,
                         &p->groups,        &p->heads,         &p->head_channels,
                         &p->offset_kernel, &p->offset_stride};
  static const char *const positive_names[] = {
      "deform channels",      "deform height",      "deform width",
      "deform groups",        "deform heads",       "deform head channels",
      "deform offset kernel", "deform offset stride"};
  for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
    DS_TRY(take_ranged(cursor, positive_names[i], 1, INT32_MAX, positive[i]));
  DS_TRY(take_ranged(cursor, "deform offset pad", 0, INT32_MAX, &p->offset_pad));
  DS_TRY(take_ranged(cursor, "deform convention", DSR_DEFORM_DAT, DSR_DEFORM_DAT_CENTRED,
                     &p->convention));
  DS_TRY(dsf_take_f32(cursor, "deform offset range factor", &p->offset_range_factor));
  DS_TRY(dsf_take_f32(cursor, "deform attention scale", &p->attn_scale));
  DS_TRY(dsf_take_f32(cursor, "deform LayerNorm epsilon", &p->ln_epsilon));

  size_t at = cursor->offset;
  uint32_t param_count;
  DS_TRY(dsf_take_u32(cursor, "deform parameter count", &param_count));
  if (param_count != DSR_DEFORM_PARAM_COUNT) {
    return fail_at(cursor, at, "deform parameter count is %" PRIu32 " but must be %d",
                   param_count, DSR_DEFORM_PARAM_COUNT);
  }
  for (int i = 0; i < DSR_DEFORM_PARAM_COUNT; i++)
    DS_TRY(take_tensor_index(cursor, "deform parameter", tensor_count, 1, &p->params[i]));
  p->slice = dsr_slice_none();
  return DS_OK;
}

static ds_status decode_node(dsf_cursor *cursor, int32_t tensor_count, dsr_node *n) {
  DS_TRY(dsf_take_name(cursor, "node name", n->name));
  DS_TRY(take_ranged(cursor, "node op", DSR_OP_CONV2D, DSR_OP_COUNT - 1, &n->op));
  DS_TRY(take_ranged(cursor, "node input count", 0, DSR_MAX_NODE_INPUTS, &n->input_count));
  for (int32_t k = 0; k < DSR_MAX_NODE_INPUTS; k++) {
    size_t at = cursor->offset;
    DS_TRY(take_tensor_index(cursor, "node input", tensor_count, 1, &n->inputs[k]));
    if (k >= n->input_count && n->inputs[k] != -1) {
      return fail_at(cursor, at, "node '%s' input slot %" PRId32 " past its %" PRId32
                     " inputs holds %" PRId32 " instead of -1", n->name, k, n->input_count,
                     n->inputs[k]);
    }
  }
  DS_TRY(take_tensor_index(cursor, "node output", tensor_count, 0, &n->output));
  DS_TRY(take_attrs(cursor, n));
  if (n->op != DSR_OP_DEFORM_ATTN)
    return DS_OK;

  n->deform = calloc(1, sizeof *n->deform);
  if (n->deform == NULL)
    return ds_fail(cursor->source->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate deform params");
  return take_deform(cursor, tensor_count, n->deform);
}

static ds_status decode_graph(decoder *d, dsf_cursor *cursor) {
  dsr_model *model = d->model;
  DS_TRY(dsf_take_name(cursor, "model name", model->name));
  DS_TRY(take_tensor_index(cursor, "model input", model->tensor_count, 0, &model->input));
  DS_TRY(take_tensor_index(cursor, "model output", model->tensor_count, 0, &model->output));
  DS_TRY(dsf_take_bool(cursor, "model quantized flag", &model->quantized));

  uint32_t count;
  DS_TRY(dsf_take_count(cursor, "node count", DSF_MAX_NODES, DSF_NODE_MIN_WIRE_BYTES, &count));
  if (count > 0) {
    model->nodes = calloc(count, sizeof *model->nodes);
    if (model->nodes == NULL)
      return ds_fail(cursor->source->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %" PRIu32
                     " nodes", count);
  }
  model->node_count = (int32_t)count;
  for (uint32_t i = 0; i < count; i++)
    DS_TRY(decode_node(cursor, model->tensor_count, &model->nodes[i]));
  DS_TRY(dsf_expect_end(cursor));

  d->deform_count = ds_model_deform_count(model);
  if (d->deform_count == 0)
    return DS_OK;
  d->deform_nodes = malloc((size_t)d->deform_count * sizeof *d->deform_nodes);
  if (d->deform_nodes == NULL)
    return ds_fail(cursor->source->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %" PRId32
                   " layer indices", d->deform_count);
  int32_t layer = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    if (model->nodes[i].op == DSR_OP_DEFORM_ATTN)
      d->deform_nodes[layer++] = i;
  }
  return DS_OK;
}

/* ---- Quantization parameters ---- */

/* Reads a u32 count that must equal expected. */
static ds_status take_exact_count(dsf_cursor *cursor, const char *field, uint32_t expected) {
  size_t at = cursor->offset;
  uint32_t count;
  DS_TRY(dsf_take_u32(cursor, field, &count));
  if (count != expected) {
    return fail_at(cursor, at, "%s is %" PRIu32 " but the graph implies %" PRIu32 "; the file "
                   "is corrupt", field, count, expected);
  }
  return DS_OK;
}

static ds_status take_qwords(dsf_cursor *cursor, dsr_node *n) {
  uint32_t count;
  DS_TRY(dsf_take_count(cursor, "qword count", DSF_MAX_QWORDS, 4, &count));
  if (count == 0)
    return DS_OK;
  int32_t *words = malloc((size_t)count * sizeof *words);
  if (words == NULL)
    return ds_fail(cursor->source->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %" PRIu32
                   " qwords for node '%s'", count, n->name);
  n->qwords = words;
  n->qword_count = (int32_t)count;
  for (uint32_t k = 0; k < count; k++)
    DS_TRY(dsf_take_i32(cursor, "qword", &words[k]));
  return DS_OK;
}

static ds_status take_channel_scales(dsf_cursor *cursor, dsr_tensor *t) {
  size_t at = cursor->offset;
  uint32_t count;
  DS_TRY(dsf_take_count(cursor, "channel scale count", (uint32_t)INT32_MAX, 4, &count));
  if (count == 0)
    return DS_OK;
  if (count != (uint32_t)t->channel_count) {
    return fail_at(cursor, at, "tensor '%s' has %" PRIu32 " channel scales but channel count %"
                   PRId32 "; the file is corrupt", t->name, count, t->channel_count);
  }
  float *scales = malloc((size_t)count * sizeof *scales);
  if (scales == NULL)
    return ds_fail(cursor->source->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %" PRIu32
                   " channel scales for tensor '%s'", count, t->name);
  t->channel_scales = scales;
  for (uint32_t k = 0; k < count; k++)
    DS_TRY(dsf_take_f32(cursor, "channel scale", &scales[k]));
  return DS_OK;
}

/* Reads a deformable layer's node index, which must be the layer-th DEFORM_ATTN node. */
static ds_status take_layer_node(const decoder *d, dsf_cursor *cursor, int32_t layer,
                                 dsr_node **node) {
  size_t at = cursor->offset;
  uint32_t index;
  DS_TRY(dsf_take_u32(cursor, "deformable layer node index", &index));
  int32_t expected = d->deform_nodes[layer];
  if (index != (uint32_t)expected) {
    return fail_at(cursor, at, "deformable layer %" PRId32 " names node %" PRIu32 " but that "
                   "layer is node %" PRId32 "; the file is corrupt", layer, index, expected);
  }
  *node = &d->model->nodes[index];
  return DS_OK;
}

static ds_status decode_qparams(decoder *d, dsf_cursor *cursor) {
  dsr_model *model = d->model;
  DS_TRY(take_exact_count(cursor, "qword node count", (uint32_t)model->node_count));
  for (int32_t i = 0; i < model->node_count; i++)
    DS_TRY(take_qwords(cursor, &model->nodes[i]));

  DS_TRY(take_exact_count(cursor, "deformable layer count", (uint32_t)d->deform_count));
  for (int32_t layer = 0; layer < d->deform_count; layer++) {
    dsr_node *node = NULL;
    DS_TRY(take_layer_node(d, cursor, layer, &node));
    DS_TRY(take_exact_count(cursor, "deform stage count", DSR_DEFORM_STAGE_COUNT));
    for (int s = 0; s < DSR_DEFORM_STAGE_COUNT; s++)
      DS_TRY(take_qparams(cursor, "deform stage qparams", &node->deform->stage_qparams[s]));
  }

  DS_TRY(take_exact_count(cursor, "channel scale tensor count", (uint32_t)model->tensor_count));
  for (int32_t i = 0; i < model->tensor_count; i++)
    DS_TRY(take_channel_scales(cursor, &model->tensors[i]));
  return dsf_expect_end(cursor);
}

/* ---- Slices ---- */

static ds_status decode_slices(decoder *d, dsf_cursor *cursor) {
  DS_TRY(take_exact_count(cursor, "slice table count", (uint32_t)d->deform_count));
  for (int32_t layer = 0; layer < d->deform_count; layer++) {
    dsr_node *node = NULL;
    DS_TRY(take_layer_node(d, cursor, layer, &node));
    dsr_deform_attn *p = node->deform;
    int32_t longest = p->height > p->width ? p->height : p->width;
    DS_TRY(take_ranged(cursor, "slice rows", 1, p->height, &p->slice.rows));
    DS_TRY(take_ranged(cursor, "slice cols", 1, p->width, &p->slice.cols));
    DS_TRY(take_ranged(cursor, "slice overlap", 0, longest, &p->slice.overlap));
    DS_TRY(take_ranged(cursor, "slice semantics", DSR_SLICE_PHYSICAL, DSR_SLICE_CROP,
                       &p->slice.semantics));
  }
  return dsf_expect_end(cursor);
}

/* ---- DMA schedule ---- */

static ds_status take_step(decoder *d, dsf_cursor *cursor, uint32_t descriptor_count,
                           dsr_dma_step *s) {
  size_t at = cursor->offset;
  DS_TRY(take_ranged(cursor, "step layer", 0, d->deform_count - 1, &s->layer));
  dsr_slice slice = d->model->nodes[d->deform_nodes[s->layer]].deform->slice;
  int64_t patch_count = (int64_t)slice.rows * slice.cols;
  int32_t last_patch = patch_count > INT32_MAX ? INT32_MAX : (int32_t)(patch_count - 1);
  DS_TRY(take_ranged(cursor, "step patch", 0, last_patch, &s->patch));
  DS_TRY(take_ranged(cursor, "step first descriptor", 0, INT32_MAX, &s->first_descriptor));
  DS_TRY(take_ranged(cursor, "step load count", 0, INT32_MAX, &s->load_count));
  DS_TRY(take_ranged(cursor, "step store count", 0, INT32_MAX, &s->store_count));
  int64_t end = (int64_t)s->first_descriptor + s->load_count + s->store_count;
  if (end > (int64_t)descriptor_count) {
    return fail_at(cursor, at, "step of layer %" PRId32 " patch %" PRId32 " uses descriptors %"
                   PRId32 " to %" PRId64 " but the schedule has %" PRIu32 "; the file is "
                   "corrupt", s->layer, s->patch, s->first_descriptor, end - 1,
                   descriptor_count);
  }
  return DS_OK;
}

static ds_status take_descriptor(dsf_cursor *cursor, dsr_dma_descriptor *x) {
  DS_TRY(dsf_take_u64(cursor, "descriptor DRAM address", &x->dram_address));
  DS_TRY(dsf_take_u32(cursor, "descriptor row bytes", &x->row_bytes));
  DS_TRY(dsf_take_u32(cursor, "descriptor row count", &x->row_count));
  DS_TRY(dsf_take_u32(cursor, "descriptor stride bytes", &x->stride_bytes));
  DS_TRY(dsf_take_u32(cursor, "descriptor chip offset", &x->chip_offset_bytes));
  size_t at = cursor->offset;
  const uint8_t *b;
  DS_TRY(dsf_take_bytes(cursor, "descriptor direction, buffer, slot and bank", 4, &b));
  if (b[0] > DSR_DMA_STORE || b[1] > DSR_BUFFER_WEIGHTS || b[2] > 1) {
    return fail_at(cursor, at, "descriptor has direction %u, buffer %u and slot %u; they must "
                   "be at most %d, %d and 1", (unsigned)b[0], (unsigned)b[1], (unsigned)b[2],
                   DSR_DMA_STORE, DSR_BUFFER_WEIGHTS);
  }
  x->direction = b[0];
  x->buffer = b[1];
  x->slot = b[2];
  x->bank = b[3];
  return DS_OK;
}

/* A step runs its loads, computes, then runs its stores: directions must follow that order. */
static ds_status check_step_directions(dsf_cursor *cursor, const dsr_schedule *schedule) {
  for (int32_t i = 0; i < schedule->step_count; i++) {
    const dsr_dma_step *s = &schedule->steps[i];
    int32_t count = s->load_count + s->store_count;
    for (int32_t k = 0; k < count; k++) {
      int32_t index = s->first_descriptor + k;
      uint8_t expected = k < s->load_count ? DSR_DMA_LOAD : DSR_DMA_STORE;
      if (schedule->descriptors[index].direction == expected)
        continue;
      size_t step_offset = 8 + (size_t)i * DSF_STEP_WIRE_BYTES;
      return fail_at(cursor, step_offset, "step %" PRId32 " lists descriptor %" PRId32 " as a "
                     "%s but its direction is %u; the file is corrupt", i, index,
                     expected == DSR_DMA_LOAD ? "load" : "store",
                     (unsigned)schedule->descriptors[index].direction);
    }
  }
  return DS_OK;
}

static ds_status decode_schedule(decoder *d, dsf_cursor *cursor, dsr_schedule *schedule) {
  uint32_t step_count, descriptor_count;
  DS_TRY(dsf_take_count(cursor, "step count", DSF_MAX_STEPS, DSF_STEP_WIRE_BYTES, &step_count));
  DS_TRY(dsf_take_count(cursor, "descriptor count", DSF_MAX_DESCRIPTORS,
                        DSF_DESCRIPTOR_WIRE_BYTES, &descriptor_count));
  if (step_count > 0)
    schedule->steps = calloc(step_count, sizeof *schedule->steps);
  if (descriptor_count > 0)
    schedule->descriptors = calloc(descriptor_count, sizeof *schedule->descriptors);
  if ((step_count > 0 && schedule->steps == NULL) ||
      (descriptor_count > 0 && schedule->descriptors == NULL)) {
    return ds_fail(cursor->source->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %" PRIu32
                   " steps and %" PRIu32 " descriptors", step_count, descriptor_count);
  }
  if (step_count > 0 && d->deform_count == 0) {
    return fail_at(cursor, 0, "the schedule has %" PRIu32 " steps but the model has no "
                   "deformable layer; the file is corrupt", step_count);
  }
  schedule->step_count = (int32_t)step_count;
  schedule->descriptor_count = (int32_t)descriptor_count;
  for (uint32_t i = 0; i < step_count; i++)
    DS_TRY(take_step(d, cursor, descriptor_count, &schedule->steps[i]));
  for (uint32_t i = 0; i < descriptor_count; i++)
    DS_TRY(take_descriptor(cursor, &schedule->descriptors[i]));
  DS_TRY(dsf_expect_end(cursor));
  return check_step_directions(cursor, schedule);
}

/* ---- Manifest ---- */

static ds_status decode_manifest(dsf_cursor *cursor, char **manifest_json) {
  char *text = malloc(cursor->size + 1);
  if (text == NULL)
    return ds_fail(cursor->source->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for "
                   "the manifest", cursor->size + 1);
  memcpy(text, cursor->base, cursor->size);
  text[cursor->size] = '\0';
  *manifest_json = text;

  const char *nul = memchr(text, '\0', cursor->size);
  if (nul != NULL)
    return fail_at(cursor, (size_t)(nul - text), "the manifest contains a NUL byte");
  if (cursor->size == 0)
    return DS_OK;
  const char *end = NULL;
  cJSON *parsed = cJSON_ParseWithOpts(text, &end, 1);
  if (parsed == NULL) {
    size_t at = end != NULL ? (size_t)(end - text) : 0;
    return fail_at(cursor, at, "the manifest is not valid JSON; the file is corrupt");
  }
  cJSON_Delete(parsed);
  cursor->offset = cursor->size;
  return DS_OK;
}

/* ---- Entry point ---- */

static dsf_cursor cursor_of(const dsf_section_view *view) {
  dsf_cursor cursor = {view->data, view->size, 0, &view->source};
  return cursor;
}

ds_status dsf_decode_sections(const dsf_section_view views[DSF_SECTION_TYPE_END],
                              dsr_model *model, dsr_schedule *schedule, char **manifest_json) {
  decoder d = {.model = model, .weights = cursor_of(&views[DSF_SECTION_WEIGHTS])};
  dsf_cursor tensors = cursor_of(&views[DSF_SECTION_TENSORS]);
  dsf_cursor graph = cursor_of(&views[DSF_SECTION_GRAPH]);
  dsf_cursor qparams = cursor_of(&views[DSF_SECTION_QPARAMS]);
  dsf_cursor slices = cursor_of(&views[DSF_SECTION_SLICES]);
  dsf_cursor dma = cursor_of(&views[DSF_SECTION_SCHEDULE]);
  dsf_cursor manifest = cursor_of(&views[DSF_SECTION_MANIFEST]);

  /* Tensors come first: node indices are checked against the tensor count. */
  ds_status status = decode_tensors(&d, &tensors);
  if (status == DS_OK)
    status = decode_graph(&d, &graph);
  if (status == DS_OK)
    status = decode_qparams(&d, &qparams);
  if (status == DS_OK)
    status = decode_slices(&d, &slices);
  if (status == DS_OK)
    status = decode_schedule(&d, &dma, schedule);
  if (status == DS_OK)
    status = decode_manifest(&manifest, manifest_json);
  free(d.deform_nodes);
  return status;
}
