/*
 * Artifact writer: encodes each section into its own buffer, compresses where asked, lays the
 * sections out on 64-byte boundaries behind the header and section table, and reads the result
 * back before handing it out. The byte layout is specified in docs/format.md.
 *
 * Reproducibility: every byte is written explicitly (padding included), nothing depends on
 * time, addresses or the host's byte order, and zstd runs single-threaded at a fixed level.
 * NOTE: zstd only promises identical frames for the same library version and parameters, so a
 * different libzstd may produce different (equally valid) compressed sections.
 */
#include "dsf_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "../common/ds_model.h"

dsf_write_options dsf_write_options_default(void) {
  dsf_write_options options = {.compress = 1, .dma_ready = 1};
  return options;
}

/* ---- Input checks: only what encoding needs to stay memory-safe ---- */

static ds_status check_name(const char *name, const char *kind, int32_t index, ds_error *err) {
  if (memchr(name, '\0', DSR_NAME_BYTES) == NULL) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "%s %" PRId32 " has a name without a terminating NUL in its %d bytes; "
                   "names must be at most %d characters",
                   kind, index, DSR_NAME_BYTES, DSF_NAME_MAX_BYTES);
  }
  return DS_OK;
}

/* Element count of t, checked against rank, negative dims and DSF_MAX_ELEMENTS. */
static ds_status tensor_element_count(const dsr_tensor *t, int32_t index, int64_t *count,
                                      ds_error *err) {
  if (t->rank < 0 || t->rank > DSR_MAX_RANK) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "tensor %" PRId32 " '%s' has rank %" PRId32 "; the artifact takes 0 to %d",
                   index, t->name, t->rank, DSR_MAX_RANK);
  }
  int64_t elements = 1;
  for (int32_t d = 0; d < t->rank; d++) {
    int32_t dim = t->dims[d];
    if (dim < 0 || (dim > 0 && elements > DSF_MAX_ELEMENTS / dim)) {
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "tensor %" PRId32 " '%s' has dim %" PRId32 " = %" PRId32
                     ", which is negative or makes more than %" PRId64 " elements",
                     index, t->name, d, dim, (int64_t)DSF_MAX_ELEMENTS);
    }
    elements *= dim;
  }
  *count = elements;
  return DS_OK;
}

static ds_status check_tensor(const dsr_tensor *t, int32_t index, ds_error *err) {
  DS_TRY(check_name(t->name, "tensor", index, err));
  int64_t elements;
  DS_TRY(tensor_element_count(t, index, &elements, err));
  if (t->data_q != NULL && dsf_dtype_bytes(t->qparams.dtype) == 0) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "tensor %" PRId32 " '%s' has quantized data of unknown dtype %u; set "
                   "qparams.dtype to a dsr_dtype",
                   index, t->name, (unsigned)t->qparams.dtype);
  }
  if (t->channel_scales != NULL && t->channel_count <= 0) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "tensor %" PRId32 " '%s' has channel scales but channel_count %" PRId32,
                   index, t->name, t->channel_count);
  }
  return DS_OK;
}

static ds_status check_node(const dsr_node *n, int32_t index, ds_error *err) {
  DS_TRY(check_name(n->name, "node", index, err));
  if (n->input_count < 0 || n->input_count > DSR_MAX_NODE_INPUTS) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "node %" PRId32 " '%s' has %" PRId32 " inputs; the artifact takes 0 to %d",
                   index, n->name, n->input_count, DSR_MAX_NODE_INPUTS);
  }
  if (n->op == DSR_OP_DEFORM_ATTN && n->deform == NULL) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "node %" PRId32 " '%s' is DEFORM_ATTN but has no deform parameters", index,
                   n->name);
  }
  if (n->qword_count < 0 || (uint32_t)n->qword_count > DSF_MAX_QWORDS ||
      (n->qword_count > 0 && n->qwords == NULL)) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "node %" PRId32 " '%s' has qword_count %" PRId32
                   " (qwords %s); it must be 0 to %u with an array when above 0",
                   index, n->name, n->qword_count, n->qwords == NULL ? "NULL" : "set",
                   DSF_MAX_QWORDS);
  }
  return DS_OK;
}

static ds_status check_inputs(const dsr_model *model, const dsr_schedule *schedule,
                              ds_error *err) {
  if (model == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "no model was given to the artifact writer");
  DS_TRY(check_name(model->name, "model", 0, err));
  if (model->tensor_count < 0 || (uint32_t)model->tensor_count > DSF_MAX_TENSORS ||
      (model->tensor_count > 0 && model->tensors == NULL)) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "the model has tensor_count %" PRId32 " (tensors %s); it must be 0 to %u",
                   model->tensor_count, model->tensors == NULL ? "NULL" : "set",
                   DSF_MAX_TENSORS);
  }
  if (model->node_count < 0 || (uint32_t)model->node_count > DSF_MAX_NODES ||
      (model->node_count > 0 && model->nodes == NULL)) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "the model has node_count %" PRId32 " (nodes %s); it must be 0 to %u",
                   model->node_count, model->nodes == NULL ? "NULL" : "set", DSF_MAX_NODES);
  }
  for (int32_t i = 0; i < model->tensor_count; i++)
    DS_TRY(check_tensor(&model->tensors[i], i, err));
  for (int32_t i = 0; i < model->node_count; i++)
    DS_TRY(check_node(&model->nodes[i], i, err));

  if (schedule == NULL)
    return DS_OK;
  if (schedule->step_count < 0 || (uint32_t)schedule->step_count > DSF_MAX_STEPS ||
      (schedule->step_count > 0 && schedule->steps == NULL) ||
      schedule->descriptor_count < 0 ||
      (uint32_t)schedule->descriptor_count > DSF_MAX_DESCRIPTORS ||
      (schedule->descriptor_count > 0 && schedule->descriptors == NULL)) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "the schedule has %" PRId32 " steps and %" PRId32
                   " descriptors; counts must be 0 to %u and %u with arrays when above 0",
                   schedule->step_count, schedule->descriptor_count, DSF_MAX_STEPS,
                   DSF_MAX_DESCRIPTORS);
  }
  return DS_OK;
}

/* ---- Section encoders ---- */

static void put_name(dsf_buffer *buffer, const char *name) {
  size_t length = strlen(name); /* bounded: check_name found a NUL */
  dsf_put_u16(buffer, (uint16_t)length);
  dsf_put_bytes(buffer, name, length);
}

static void put_qparams(dsf_buffer *buffer, const dsr_qparams *q) {
  dsf_put_f32(buffer, q->scale);
  dsf_put_i32(buffer, q->zero_point);
  dsf_put_u8(buffer, q->dtype);
  dsf_put_u8(buffer, q->bits);
  dsf_put_zeros(buffer, 2);
}

static void put_attrs(dsf_buffer *buffer, const dsr_node *n) {
  const dsr_attrs *a = &n->attrs;
  dsf_put_u32(buffer, dsf_op_attr_bytes(n->op));
  switch (n->op) {
  case DSR_OP_CONV2D:
    for (int i = 0; i < 2; i++)
      dsf_put_i32(buffer, a->conv.stride[i]);
    for (int i = 0; i < 4; i++)
      dsf_put_i32(buffer, a->conv.pad[i]);
    for (int i = 0; i < 2; i++)
      dsf_put_i32(buffer, a->conv.dilation[i]);
    dsf_put_i32(buffer, a->conv.group);
    break;
  case DSR_OP_GEMM:
    dsf_put_f32(buffer, a->gemm.alpha);
    dsf_put_f32(buffer, a->gemm.beta);
    dsf_put_i32(buffer, a->gemm.trans_a);
    dsf_put_i32(buffer, a->gemm.trans_b);
    break;
  case DSR_OP_LAYER_NORM:
    dsf_put_i32(buffer, a->norm.axis);
    dsf_put_f32(buffer, a->norm.epsilon);
    break;
  case DSR_OP_SOFTMAX:
  case DSR_OP_GATHER:
  case DSR_OP_CONCAT:
    dsf_put_i32(buffer, a->softmax.axis);
    break;
  case DSR_OP_PAD:
    for (int i = 0; i < DSR_MAX_RANK; i++)
      dsf_put_i32(buffer, a->pad.begin[i]);
    for (int i = 0; i < DSR_MAX_RANK; i++)
      dsf_put_i32(buffer, a->pad.end[i]);
    dsf_put_f32(buffer, a->pad.value);
    break;
  case DSR_OP_TRANSPOSE:
    for (int i = 0; i < DSR_MAX_RANK; i++)
      dsf_put_i32(buffer, a->transpose.perm[i]);
    break;
  default:
    break;
  }
}

static void put_deform(dsf_buffer *buffer, const dsr_deform_attn *d) {
  dsf_put_i32(buffer, d->channels);
  dsf_put_i32(buffer, d->height);
  dsf_put_i32(buffer, d->width);
  dsf_put_i32(buffer, d->groups);
  dsf_put_i32(buffer, d->heads);
  dsf_put_i32(buffer, d->head_channels);
  dsf_put_i32(buffer, d->offset_kernel);
  dsf_put_i32(buffer, d->offset_stride);
  dsf_put_i32(buffer, d->offset_pad);
  dsf_put_i32(buffer, d->convention);
  dsf_put_f32(buffer, d->offset_range_factor);
  dsf_put_f32(buffer, d->attn_scale);
  dsf_put_f32(buffer, d->ln_epsilon);
  dsf_put_u32(buffer, DSR_DEFORM_PARAM_COUNT);
  for (int i = 0; i < DSR_DEFORM_PARAM_COUNT; i++)
    dsf_put_i32(buffer, d->params[i]);
}

static void encode_graph(dsf_buffer *buffer, const dsr_model *model) {
  put_name(buffer, model->name);
  dsf_put_i32(buffer, model->input);
  dsf_put_i32(buffer, model->output);
  dsf_put_u32(buffer, model->quantized ? 1u : 0u);
  dsf_put_u32(buffer, (uint32_t)model->node_count);
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *n = &model->nodes[i];
    put_name(buffer, n->name);
    dsf_put_i32(buffer, n->op);
    dsf_put_u32(buffer, (uint32_t)n->input_count);
    for (int32_t k = 0; k < DSR_MAX_NODE_INPUTS; k++)
      dsf_put_i32(buffer, k < n->input_count ? n->inputs[k] : -1);
    dsf_put_i32(buffer, n->output);
    put_attrs(buffer, n);
    if (n->op == DSR_OP_DEFORM_ATTN)
      put_deform(buffer, n->deform);
  }
}

/* Appends count elements of element_bytes each to weights on a 64-byte boundary. */
static void put_blob(dsf_buffer *descriptors, dsf_buffer *weights, const void *data,
                     int64_t count, size_t element_bytes) {
  dsf_put_align(weights, DSF_ALIGNMENT_BYTES);
  uint64_t offset = weights->size;
  uint64_t bytes = (uint64_t)count * element_bytes;
  dsf_put_u64(descriptors, offset);
  dsf_put_u64(descriptors, bytes);

  const uint8_t *source = data;
  if (element_bytes == 1) {
    dsf_put_bytes(weights, source, (size_t)bytes);
    return;
  }
  /* Element by element so the file is little-endian whatever the host. */
  for (int64_t i = 0; i < count; i++) {
    const uint8_t *element = source + (size_t)i * element_bytes;
    if (element_bytes == 2) {
      uint16_t v;
      memcpy(&v, element, 2);
      dsf_put_u16(weights, v);
    } else if (element_bytes == 4) {
      uint32_t v;
      memcpy(&v, element, 4);
      dsf_put_u32(weights, v);
    } else {
      uint64_t v;
      memcpy(&v, element, 8);
      dsf_put_u64(weights, v);
    }
  }
}

/* Encodes the tensor descriptors and, beside them, the weights section they point into. */
static void encode_tensors(dsf_buffer *descriptors, dsf_buffer *weights,
                           const dsr_model *model) {
  dsf_put_u32(descriptors, (uint32_t)model->tensor_count);
  for (int32_t i = 0; i < model->tensor_count; i++) {
    const dsr_tensor *t = &model->tensors[i];
    put_name(descriptors, t->name);
    dsf_put_u32(descriptors, t->kind);
    dsf_put_i32(descriptors, t->rank);
    for (int32_t d = 0; d < t->rank; d++)
      dsf_put_i32(descriptors, t->dims[d]);
    put_qparams(descriptors, &t->qparams);
    dsf_put_u32(descriptors, t->has_qparams ? 1u : 0u);
    dsf_put_i32(descriptors, t->channel_axis);
    dsf_put_i32(descriptors, t->channel_count);

    uint32_t blobs = (t->data_f32 != NULL ? DSF_TENSOR_HAS_F32 : 0) |
                     (t->data_q != NULL ? DSF_TENSOR_HAS_Q : 0);
    dsf_put_u32(descriptors, blobs);
    int64_t elements = dsr_tensor_elements(t); /* checked by check_tensor */
    if (t->data_f32 != NULL)
      put_blob(descriptors, weights, t->data_f32, elements, 4);
    if (t->data_q != NULL)
      put_blob(descriptors, weights, t->data_q, elements, dsf_dtype_bytes(t->qparams.dtype));
  }
  dsf_put_align(weights, DSF_ALIGNMENT_BYTES);
}

static void encode_qparams(dsf_buffer *buffer, const dsr_model *model) {
  dsf_put_u32(buffer, (uint32_t)model->node_count);
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *n = &model->nodes[i];
    dsf_put_u32(buffer, (uint32_t)n->qword_count);
    for (int32_t k = 0; k < n->qword_count; k++)
      dsf_put_i32(buffer, n->qwords[k]);
  }

  dsf_put_u32(buffer, (uint32_t)ds_model_deform_count(model));
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *n = &model->nodes[i];
    if (n->op != DSR_OP_DEFORM_ATTN)
      continue;
    dsf_put_u32(buffer, (uint32_t)i);
    dsf_put_u32(buffer, DSR_DEFORM_STAGE_COUNT);
    for (int s = 0; s < DSR_DEFORM_STAGE_COUNT; s++)
      put_qparams(buffer, &n->deform->stage_qparams[s]);
  }

  dsf_put_u32(buffer, (uint32_t)model->tensor_count);
  for (int32_t i = 0; i < model->tensor_count; i++) {
    const dsr_tensor *t = &model->tensors[i];
    int32_t count = t->channel_scales != NULL ? t->channel_count : 0;
    dsf_put_u32(buffer, (uint32_t)count);
    for (int32_t k = 0; k < count; k++)
      dsf_put_f32(buffer, t->channel_scales[k]);
  }
}

static void encode_slices(dsf_buffer *buffer, const dsr_model *model) {
  dsf_put_u32(buffer, (uint32_t)ds_model_deform_count(model));
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *n = &model->nodes[i];
    if (n->op != DSR_OP_DEFORM_ATTN)
      continue;
    dsf_put_u32(buffer, (uint32_t)i);
    dsf_put_i32(buffer, n->deform->slice.rows);
    dsf_put_i32(buffer, n->deform->slice.cols);
    dsf_put_i32(buffer, n->deform->slice.overlap);
    dsf_put_i32(buffer, n->deform->slice.semantics);
  }
}

static void encode_schedule(dsf_buffer *buffer, const dsr_schedule *schedule) {
  int32_t step_count = schedule != NULL ? schedule->step_count : 0;
  int32_t descriptor_count = schedule != NULL ? schedule->descriptor_count : 0;
  dsf_put_u32(buffer, (uint32_t)step_count);
  dsf_put_u32(buffer, (uint32_t)descriptor_count);
  for (int32_t i = 0; i < step_count; i++) {
    const dsr_dma_step *s = &schedule->steps[i];
    dsf_put_i32(buffer, s->layer);
    dsf_put_i32(buffer, s->patch);
    dsf_put_i32(buffer, s->first_descriptor);
    dsf_put_i32(buffer, s->load_count);
    dsf_put_i32(buffer, s->store_count);
  }
  for (int32_t i = 0; i < descriptor_count; i++) {
    const dsr_dma_descriptor *d = &schedule->descriptors[i];
    dsf_put_u64(buffer, d->dram_address);
    dsf_put_u32(buffer, d->row_bytes);
    dsf_put_u32(buffer, d->row_count);
    dsf_put_u32(buffer, d->stride_bytes);
    dsf_put_u32(buffer, d->chip_offset_bytes);
    dsf_put_u8(buffer, d->direction);
    dsf_put_u8(buffer, d->buffer);
    dsf_put_u8(buffer, d->slot);
    dsf_put_u8(buffer, d->bank);
  }
}

/* ---- Layout ---- */

enum { SECTION_COUNT = DSF_SECTION_TYPE_END - 1 };

typedef struct section_out {
  uint32_t type;
  dsf_buffer raw;
  uint8_t *compressed;      /* the zstd frame when it is smaller than raw, else NULL */
  size_t compressed_bytes;
} section_out;

static ds_status compress_section(section_out *section, ds_error *err) {
  size_t bound = ZSTD_compressBound(section->raw.size);
  uint8_t *frame = malloc(bound);
  ZSTD_CCtx *context = ZSTD_createCCtx();
  if (frame == NULL || context == NULL) {
    free(frame);
    ZSTD_freeCCtx(context);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to compress the %s "
                   "section", bound, dsf_section_type_name(section->type));
  }
  ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, DSF_ZSTD_LEVEL);
  ZSTD_CCtx_setParameter(context, ZSTD_c_contentSizeFlag, 1);
  ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 0);
  size_t written = ZSTD_compress2(context, frame, bound, section->raw.data, section->raw.size);
  ZSTD_freeCCtx(context);
  if (ZSTD_isError(written)) {
    free(frame);
    return ds_fail(err, DS_ERR_INTERNAL, "zstd failed to compress the %s section: %s",
                   dsf_section_type_name(section->type), ZSTD_getErrorName(written));
  }
  if (written >= section->raw.size) {
    free(frame);
    return DS_OK;
  }
  section->compressed = frame;
  section->compressed_bytes = written;
  return DS_OK;
}

static uint64_t align_up(uint64_t value) {
  return (value + DSF_ALIGNMENT_BYTES - 1) / DSF_ALIGNMENT_BYTES * DSF_ALIGNMENT_BYTES;
}

static void put_header(dsf_buffer *out, uint32_t flags, uint64_t file_bytes) {
  dsf_put_bytes(out, DSF_MAGIC, DSF_MAGIC_BYTES);
  dsf_put_u16(out, DSF_VERSION_MAJOR);
  dsf_put_u16(out, DSF_VERSION_MINOR);
  dsf_put_u32(out, flags);
  dsf_put_u32(out, DSF_HEADER_BYTES);
  dsf_put_u32(out, SECTION_COUNT);
  dsf_put_u32(out, DSF_ENTRY_BYTES);
  dsf_put_u32(out, DSF_ALIGNMENT_BYTES);
  dsf_put_u64(out, file_bytes);
  dsf_put_u32(out, 0); /* table CRC, patched once the table is written */
  dsf_put_zeros(out, DSF_HEADER_RESERVED_BYTES);
}

/* Writes header, table and sections into out; sections are already encoded. */
static void assemble(dsf_buffer *out, section_out sections[SECTION_COUNT], uint32_t flags) {
  uint64_t offsets[SECTION_COUNT];
  uint64_t position = DSF_HEADER_BYTES + (uint64_t)SECTION_COUNT * DSF_ENTRY_BYTES;
  for (int i = 0; i < SECTION_COUNT; i++) {
    size_t stored = sections[i].compressed != NULL ? sections[i].compressed_bytes
                                                   : sections[i].raw.size;
    offsets[i] = align_up(position);
    position = offsets[i] + stored;
  }
  uint64_t file_bytes = align_up(position);

  put_header(out, flags, file_bytes);
  for (int i = 0; i < SECTION_COUNT; i++) {
    const section_out *s = &sections[i];
    const uint8_t *stored = s->compressed != NULL ? s->compressed : s->raw.data;
    size_t stored_bytes = s->compressed != NULL ? s->compressed_bytes : s->raw.size;
    dsf_put_u32(out, s->type);
    dsf_put_u32(out, s->compressed != NULL ? DSF_SECTION_ZSTD : 0u);
    dsf_put_u64(out, offsets[i]);
    dsf_put_u64(out, stored_bytes);
    dsf_put_u64(out, s->raw.size);
    dsf_put_u32(out, stored_bytes > 0 ? dsf_crc32(stored, stored_bytes) : 0u);
    dsf_put_u32(out, 0);
  }
  for (int i = 0; i < SECTION_COUNT; i++) {
    const section_out *s = &sections[i];
    dsf_put_align(out, DSF_ALIGNMENT_BYTES);
    if (s->compressed != NULL)
      dsf_put_bytes(out, s->compressed, s->compressed_bytes);
    else
      dsf_put_bytes(out, s->raw.data, s->raw.size);
  }
  dsf_put_align(out, DSF_ALIGNMENT_BYTES);
  if (!out->failed)
    dsf_store_u32(out->data + DSF_HEADER_TABLE_CRC_OFFSET, dsf_table_crc32(out->data,
                                                                           SECTION_COUNT));
}

static ds_status check_manifest(const char *manifest_json, ds_error *err) {
  if (manifest_json == NULL || manifest_json[0] == '\0')
    return DS_OK;
  const char *end = NULL;
  cJSON *parsed = cJSON_ParseWithOpts(manifest_json, &end, 1);
  if (parsed == NULL) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "the manifest is not valid JSON (error at byte %td); pass cJSON_Print "
                   "output or NULL",
                   end != NULL ? end - manifest_json : (ptrdiff_t)-1);
  }
  cJSON_Delete(parsed);
  return DS_OK;
}

/* Encodes every section and compresses those the options allow. */
static ds_status encode_sections(section_out sections[SECTION_COUNT], const dsr_model *model,
                                 const dsr_schedule *schedule, const char *manifest_json,
                                 const dsf_write_options *options, ds_error *err) {
  for (int i = 0; i < SECTION_COUNT; i++)
    sections[i].type = (uint32_t)(i + 1);
  encode_graph(&sections[DSF_SECTION_GRAPH - 1].raw, model);
  encode_tensors(&sections[DSF_SECTION_TENSORS - 1].raw, &sections[DSF_SECTION_WEIGHTS - 1].raw,
                 model);
  encode_qparams(&sections[DSF_SECTION_QPARAMS - 1].raw, model);
  encode_slices(&sections[DSF_SECTION_SLICES - 1].raw, model);
  encode_schedule(&sections[DSF_SECTION_SCHEDULE - 1].raw, schedule);
  if (manifest_json != NULL)
    dsf_put_bytes(&sections[DSF_SECTION_MANIFEST - 1].raw, manifest_json, strlen(manifest_json));

  for (int i = 0; i < SECTION_COUNT; i++) {
    section_out *s = &sections[i];
    if (s->raw.failed) {
      return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "out of memory while encoding the %s section",
                     dsf_section_type_name(s->type));
    }
    if (s->raw.size > DSF_MAX_SECTION_BYTES) {
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "the %s section would be %zu bytes, above the format limit of %" PRIu64,
                     dsf_section_type_name(s->type), s->raw.size, DSF_MAX_SECTION_BYTES);
    }
    int keep_raw = s->type == DSF_SECTION_WEIGHTS && options->dma_ready;
    if (options->compress && !keep_raw && s->raw.size > 0)
      DS_TRY(compress_section(s, err));
  }
  return DS_OK;
}

/* Reads data back so that nothing the reader rejects ever leaves the writer. */
static ds_status verify_by_reading(const uint8_t *data, size_t size, ds_error *err) {
  ds_error inner;
  ds_error_clear(&inner);
  dsr_model model = {0};
  ds_status status = dsf_read_buffer(data, size, "artifact being written", &model, NULL, NULL,
                                     &inner);
  ds_model_free(&model);
  if (status == DS_OK)
    return DS_OK;
  if (status == DS_ERR_OUT_OF_MEMORY)
    return ds_fail(err, status, "%s", inner.message);
  return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                 "the model fails the artifact reader's checks, so it was not written; fix the "
                 "field named here: %s",
                 inner.message);
}

ds_status dsf_write_buffer(const dsr_model *model, const dsr_schedule *schedule,
                           const char *manifest_json, const dsf_write_options *options,
                           uint8_t **data_out, size_t *size_out, ds_error *err) {
  *data_out = NULL;
  *size_out = 0;
  dsf_write_options defaults = dsf_write_options_default();
  if (options == NULL)
    options = &defaults;
  DS_TRY(check_inputs(model, schedule, err));
  DS_TRY(check_manifest(manifest_json, err));

  section_out sections[SECTION_COUNT];
  memset(sections, 0, sizeof sections);
  dsf_buffer out = {0};
  ds_status status = encode_sections(sections, model, schedule, manifest_json, options, err);
  if (status == DS_OK) {
    uint32_t flags = options->dma_ready ? DSF_FILE_DMA_READY : 0u;
    assemble(&out, sections, flags);
    if (out.failed)
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "out of memory while assembling the artifact");
  }
  for (int i = 0; i < SECTION_COUNT; i++) {
    dsf_buffer_free(&sections[i].raw);
    free(sections[i].compressed);
  }
  if (status == DS_OK)
    status = verify_by_reading(out.data, out.size, err);
  if (status != DS_OK) {
    dsf_buffer_free(&out);
    return status;
  }
  *data_out = out.data;
  *size_out = out.size;
  return DS_OK;
}

/* ---- Atomic file write ---- */

static ds_status write_all(int fd, const uint8_t *data, size_t size, const char *path,
                           ds_error *err) {
  while (size > 0) {
    ssize_t written = write(fd, data, size);
    if (written < 0 && errno == EINTR)
      continue;
    if (written <= 0) {
      return ds_fail(err, DS_ERR_IO, "cannot write %s: %s", path,
                     written < 0 ? strerror(errno) : "no progress");
    }
    data += written;
    size -= (size_t)written;
  }
  return DS_OK;
}

static ds_status write_atomically(const char *path, const uint8_t *data, size_t size,
                                  ds_error *err) {
  size_t path_bytes = strlen(path);
  char *temporary = malloc(path_bytes + 5);
  if (temporary == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the temporary file name");
  memcpy(temporary, path, path_bytes);
  memcpy(temporary + path_bytes, ".tmp", 5);

  int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    ds_status status = ds_fail(err, DS_ERR_IO, "cannot create %s: %s", temporary,
                               strerror(errno));
    free(temporary);
    return status;
  }
  ds_status status = write_all(fd, data, size, temporary, err);
  if (status == DS_OK && fsync(fd) != 0)
    status = ds_fail(err, DS_ERR_IO, "cannot flush %s to disk: %s", temporary, strerror(errno));
  if (close(fd) != 0 && status == DS_OK)
    status = ds_fail(err, DS_ERR_IO, "cannot close %s: %s", temporary, strerror(errno));
  if (status == DS_OK && rename(temporary, path) != 0) {
    status = ds_fail(err, DS_ERR_IO, "cannot rename %s to %s: %s", temporary, path,
                     strerror(errno));
  }
  if (status != DS_OK)
    unlink(temporary);
  free(temporary);
  return status;
}

ds_status dsf_write_file(const char *path, const dsr_model *model, const dsr_schedule *schedule,
                         const char *manifest_json, const dsf_write_options *options,
                         ds_error *err) {
  if (path == NULL || path[0] == '\0')
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "no output path was given for the artifact");
  uint8_t *data;
  size_t size;
  DS_TRY(dsf_write_buffer(model, schedule, manifest_json, options, &data, &size, err));
  ds_status status = write_atomically(path, data, size, err);
  free(data);
  return status;
}
