/*
 * Artifact writer and reader: round trips, reproducibility and rejection of damaged files.
 *
 * Corrupt variants are made by patching bytes at the offsets docs/format.md gives and, where
 * the test wants to reach a decoder rather than the checksum, recomputing the CRC-32 values
 * with zlib here, independently of the reader's own helpers.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "formats/dsf_artifact.h"

/* ---- A small model built by hand ---- */

typedef struct sample {
  dsr_model model;
  dsr_tensor tensors[8];
  dsr_node nodes[2];
  dsr_deform_attn deform;
  float conv_w_f32[16];
  int8_t conv_w_q[16];
  float conv_w_scales[4];
  float conv_b_f32[4];
  int32_t conv_b_q[4];
  float rpe_f32[1 * 7 * 7];
  float tail_f32[3];
  int32_t conv_qwords[4];
  int32_t deform_qwords[5];
  dsr_dma_step steps[3];
  dsr_dma_descriptor descriptors[6];
  dsr_schedule schedule;
} sample;

static const char *const sample_manifest = "{\"model\":\"tiny\",\"format\":1,\"layers\":[2,2]}";

static void set_tensor(dsr_tensor *t, const char *name, dsr_tensor_kind kind, int32_t rank,
                       const int32_t *dims) {
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->kind = (uint8_t)kind;
  t->rank = rank;
  memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
  t->channel_axis = -1;
}

static dsr_qparams qparams(float scale, int32_t zero_point, dsr_dtype dtype, uint8_t bits) {
  dsr_qparams q = {.scale = scale, .zero_point = zero_point, .dtype = (uint8_t)dtype,
                   .bits = bits};
  return q;
}

static void build_tensors(sample *s) {
  static const int32_t map[4] = {1, 4, 4, 4};
  static const int32_t conv_w[4] = {4, 4, 1, 1};
  static const int32_t vector[1] = {4};
  static const int32_t rpe[3] = {1, 7, 7};

  set_tensor(&s->tensors[0], "input", DSR_TENSOR_INPUT, 4, map);
  s->tensors[0].qparams = qparams(0.05f, -3, DSR_DTYPE_I8, 8);
  s->tensors[0].has_qparams = 1;

  set_tensor(&s->tensors[1], "conv.weight", DSR_TENSOR_CONSTANT, 4, conv_w);
  for (int i = 0; i < 16; i++) {
    s->conv_w_f32[i] = 0.125f * (float)(i - 7);
    s->conv_w_q[i] = (int8_t)(i * 9 - 70);
  }
  for (int i = 0; i < 4; i++)
    s->conv_w_scales[i] = 0.01f * (float)(i + 1);
  s->tensors[1].data_f32 = s->conv_w_f32;
  s->tensors[1].data_q = s->conv_w_q;
  s->tensors[1].channel_scales = s->conv_w_scales;
  s->tensors[1].channel_axis = 0;
  s->tensors[1].channel_count = 4;
  s->tensors[1].qparams = qparams(0.04f, 0, DSR_DTYPE_I8, 8);
  s->tensors[1].has_qparams = 1;

  set_tensor(&s->tensors[2], "conv.bias", DSR_TENSOR_CONSTANT, 1, vector);
  for (int i = 0; i < 4; i++) {
    s->conv_b_f32[i] = -1.5f + (float)i;
    s->conv_b_q[i] = -100000 + 77777 * i;
  }
  s->tensors[2].data_f32 = s->conv_b_f32;
  s->tensors[2].data_q = s->conv_b_q;
  s->tensors[2].qparams = qparams(0.002f, 0, DSR_DTYPE_I32, 32);
  s->tensors[2].has_qparams = 1;

  set_tensor(&s->tensors[3], "conv.out", DSR_TENSOR_ACTIVATION, 4, map);
  s->tensors[3].qparams = qparams(0.1f, 5, DSR_DTYPE_I16, 16);
  s->tensors[3].has_qparams = 1;

  set_tensor(&s->tensors[4], "attn.rpe_table", DSR_TENSOR_CONSTANT, 3, rpe);
  for (int i = 0; i < 49; i++)
    s->rpe_f32[i] = (float)i / 49.0f;
  s->tensors[4].data_f32 = s->rpe_f32;

  set_tensor(&s->tensors[5], "output", DSR_TENSOR_OUTPUT, 4, map);
  s->tensors[5].qparams = qparams(0.2f, 0, DSR_DTYPE_I8, 8);
  s->tensors[5].has_qparams = 1;

  /* A constant with no elements between two blobs: its blob is empty but still placed. */
  static const int32_t empty[1] = {0};
  static const int32_t three[1] = {3};
  set_tensor(&s->tensors[6], "empty.const", DSR_TENSOR_CONSTANT, 1, empty);
  s->tensors[6].data_f32 = s->rpe_f32;
  set_tensor(&s->tensors[7], "tail.const", DSR_TENSOR_CONSTANT, 1, three);
  for (int i = 0; i < 3; i++)
    s->tail_f32[i] = -0.0f - (float)i;
  s->tensors[7].data_f32 = s->tail_f32;
}

static void build_nodes(sample *s) {
  dsr_node *conv = &s->nodes[0];
  memset(conv, 0, sizeof *conv);
  snprintf(conv->name, sizeof conv->name, "stem.conv");
  conv->op = DSR_OP_CONV2D;
  conv->input_count = 3;
  conv->inputs[0] = 0;
  conv->inputs[1] = 1;
  conv->inputs[2] = 2;
  conv->inputs[3] = -1;
  conv->output = 3;
  conv->attrs.conv = (dsr_conv_attrs){.stride = {1, 2}, .pad = {0, 1, 2, 3},
                                      .dilation = {1, 1}, .group = 1};
  int32_t conv_words[4] = {1073741824, -5, 127, -128};
  memcpy(s->conv_qwords, conv_words, sizeof conv_words);
  conv->qwords = s->conv_qwords;
  conv->qword_count = 4;

  dsr_deform_attn *p = &s->deform;
  memset(p, 0, sizeof *p);
  *p = (dsr_deform_attn){.channels = 4, .height = 4, .width = 4, .groups = 1, .heads = 2,
                         .head_channels = 2, .offset_kernel = 3, .offset_stride = 1,
                         .offset_pad = 1, .convention = DSR_DEFORM_DAT_PP,
                         .offset_range_factor = 2.0f, .attn_scale = 0.70710678f,
                         .ln_epsilon = 1e-5f};
  for (int i = 0; i < DSR_DEFORM_PARAM_COUNT; i++)
    p->params[i] = (i == DSR_DEFORM_RPE_TABLE) ? 4 : 1 + i % 2;
  p->params[DSR_DEFORM_OFFSET_DW_B] = -1;
  p->slice = (dsr_slice){.rows = 2, .cols = 2, .overlap = 1, .semantics = DSR_SLICE_CROP};
  for (int i = 0; i < DSR_DEFORM_STAGE_COUNT; i++)
    p->stage_qparams[i] = qparams(0.01f * (float)(i + 1), i - 6,
                                  i % 2 ? DSR_DTYPE_I16 : DSR_DTYPE_I8, i % 2 ? 16 : 8);

  dsr_node *deform = &s->nodes[1];
  memset(deform, 0, sizeof *deform);
  snprintf(deform->name, sizeof deform->name, "stage1.attn");
  deform->op = DSR_OP_DEFORM_ATTN;
  deform->input_count = 1;
  deform->inputs[0] = 3;
  deform->inputs[1] = deform->inputs[2] = deform->inputs[3] = -1;
  deform->output = 5;
  deform->deform = p;
  int32_t deform_words[5] = {7, 8, 9, INT32_MIN, INT32_MAX};
  memcpy(s->deform_qwords, deform_words, sizeof deform_words);
  deform->qwords = s->deform_qwords;
  deform->qword_count = 5;
}

static void build_schedule(sample *s) {
  /* A dense tile of the conv (node 0): its weights, then its output. */
  s->steps[0] = (dsr_dma_step){.node = 0, .layer = -1, .patch = 0, .first_descriptor = 0,
                               .load_count = 1, .store_count = 1, .compute_cycles = 77};
  s->descriptors[0] = (dsr_dma_descriptor){
      .dram_address = 0x70000000ull, .row_bytes = 16, .row_count = 1, .stride_bytes = 16,
      .direction = DSR_DMA_LOAD, .buffer = DSR_BUFFER_WEIGHTS};
  s->descriptors[1] = (dsr_dma_descriptor){
      .dram_address = 0x70001000ull, .row_bytes = 48, .row_count = 4, .stride_bytes = 48,
      .direction = DSR_DMA_STORE, .buffer = DSR_BUFFER_FEATURE_OUT, .bank = 1};
  /* Two patches of the deformable layer (node 1). */
  for (int i = 0; i < 2; i++) {
    int d = 2 + 2 * i;
    s->steps[i + 1] = (dsr_dma_step){.node = 1, .layer = 0, .patch = i, .first_descriptor = d,
                                     .load_count = 1, .store_count = 1,
                                     .compute_cycles = 1000 + i};
    s->descriptors[d] = (dsr_dma_descriptor){
        .dram_address = 0x80000000ull + 64u * (uint64_t)i, .row_bytes = 48, .row_count = 3,
        .stride_bytes = 64, .chip_offset_bytes = 0, .direction = DSR_DMA_LOAD,
        .buffer = DSR_BUFFER_FEATURE_IN, .slot = (uint8_t)(i % 2), .bank = 2};
    s->descriptors[d + 1] = (dsr_dma_descriptor){
        .dram_address = 0x90000000ull + 32u * (uint64_t)i, .row_bytes = 32, .row_count = 2,
        .stride_bytes = 64, .chip_offset_bytes = 128, .direction = DSR_DMA_STORE,
        .buffer = DSR_BUFFER_FEATURE_OUT, .slot = (uint8_t)(i % 2), .bank = 5};
  }
  s->schedule = (dsr_schedule){.step_count = 3, .steps = s->steps, .descriptor_count = 6,
                               .descriptors = s->descriptors};
}

/* Builds the sample in place: the model points into s. */
static void build_sample(sample *s) {
  memset(s, 0, sizeof *s);
  build_tensors(s);
  build_nodes(s);
  build_schedule(s);
  snprintf(s->model.name, sizeof s->model.name, "tiny");
  s->model.tensor_count = 8;
  s->model.tensors = s->tensors;
  s->model.node_count = 2;
  s->model.nodes = s->nodes;
  s->model.input = 0;
  s->model.output = 5;
  s->model.quantized = 1;
}

static uint8_t *write_sample_with(const sample *s, int compress, int dma_ready, size_t *size) {
  dsf_write_options options = {.compress = compress, .dma_ready = dma_ready};
  uint8_t *data = NULL;
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dsf_write_buffer(&s->model, &s->schedule, sample_manifest, &options, &data,
                                      size, &err);
  cr_assert_eq(status, DS_OK, "writing the sample failed: %s", err.message);
  return data;
}

static uint8_t *write_sample(const sample *s, int compress, size_t *size) {
  return write_sample_with(s, compress, 1, size);
}

/* ---- Byte patching per docs/format.md ---- */

static uint32_t load_u32(const uint8_t *at) {
  return (uint32_t)at[0] | ((uint32_t)at[1] << 8) | ((uint32_t)at[2] << 16) |
         ((uint32_t)at[3] << 24);
}

static uint64_t load_u64(const uint8_t *at) {
  return (uint64_t)load_u32(at) | ((uint64_t)load_u32(at + 4) << 32);
}

static void store_u32(uint8_t *at, uint32_t value) {
  for (int i = 0; i < 4; i++)
    at[i] = (uint8_t)(value >> (8 * i));
}

static void store_u64(uint8_t *at, uint64_t value) {
  for (int i = 0; i < 8; i++)
    at[i] = (uint8_t)(value >> (8 * i));
}

static uint8_t *entry_of_type(uint8_t *data, uint32_t type) {
  uint32_t count = load_u32(data + 20);
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *entry = data + 64 + 40 * i;
    if (load_u32(entry) == type)
      return entry;
  }
  cr_assert_fail("no section of type %u", type);
  return NULL;
}

static uint8_t *section_bytes(uint8_t *data, uint32_t type) {
  return data + load_u64(entry_of_type(data, type) + 8);
}

/* Recomputes every in-bounds section CRC, then the header and table CRC. */
static void fix_checksums(uint8_t *data, size_t size) {
  uint32_t count = load_u32(data + 20);
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *entry = data + 64 + 40 * i;
    uint64_t offset = load_u64(entry + 8);
    uint64_t stored = load_u64(entry + 16);
    if (offset > size || stored > size - offset)
      continue;
    store_u32(entry + 32, (uint32_t)crc32(0, data + offset, (uInt)stored));
  }
  store_u32(data + 40, 0);
  store_u32(data + 40, (uint32_t)crc32(0, data, 64 + 40 * count));
}

/* Reads size bytes from an exact-size heap copy, so that ASan reports any overread. */
static ds_status read_copy(const uint8_t *data, size_t size, ds_error *err) {
  uint8_t *copy = malloc(size > 0 ? size : 1);
  cr_assert_not_null(copy);
  memcpy(copy, data, size);
  dsr_model model;
  dsr_schedule schedule;
  char *manifest;
  ds_error_clear(err);
  ds_status status = dsf_read_buffer(copy, size, "test.dslice", &model, &schedule, &manifest,
                                     err);
  if (status == DS_OK) {
    ds_model_free(&model);
    dsf_schedule_free(&schedule);
    free(manifest);
  } else {
    cr_assert_null(model.tensors);
    cr_assert_null(model.nodes);
    cr_assert_null(schedule.steps);
    cr_assert_null(manifest);
  }
  free(copy);
  return status;
}

/* ---- Field-by-field comparison ---- */

static void expect_qparams_equal(const dsr_qparams *a, const dsr_qparams *b, const char *what) {
  cr_expect_eq(a->scale, b->scale, "%s scale", what);
  cr_expect_eq(a->zero_point, b->zero_point, "%s zero point", what);
  cr_expect_eq(a->dtype, b->dtype, "%s dtype", what);
  cr_expect_eq(a->bits, b->bits, "%s bits", what);
}

static void expect_tensor_equal(const dsr_tensor *a, const dsr_tensor *b) {
  cr_expect_str_eq(a->name, b->name);
  cr_expect_eq(a->kind, b->kind, "tensor %s kind", a->name);
  cr_assert_eq(a->rank, b->rank, "tensor %s rank", a->name);
  for (int32_t d = 0; d < a->rank; d++)
    cr_expect_eq(a->dims[d], b->dims[d], "tensor %s dim %d", a->name, d);
  expect_qparams_equal(&a->qparams, &b->qparams, a->name);
  cr_expect_eq(a->has_qparams, b->has_qparams, "tensor %s has_qparams", a->name);
  cr_expect_eq(a->channel_count, b->channel_count, "tensor %s channel count", a->name);
  if (a->channel_count > 0)
    cr_expect_eq(a->channel_axis, b->channel_axis, "tensor %s channel axis", a->name);

  int64_t elements = dsr_tensor_elements(a);
  cr_assert_eq(a->data_f32 == NULL, b->data_f32 == NULL, "tensor %s float data", a->name);
  if (a->data_f32 != NULL)
    cr_expect_arr_eq(a->data_f32, b->data_f32, (size_t)elements * 4, "tensor %s floats",
                     a->name);
  cr_assert_eq(a->data_q == NULL, b->data_q == NULL, "tensor %s quantized data", a->name);
  if (a->data_q != NULL) {
    static const size_t dtype_bytes[] = {4, 1, 2, 4, 8}; /* F32, I8, I16, I32, I64 */
    cr_assert_lt(a->qparams.dtype, 5, "tensor %s dtype", a->name);
    size_t element_bytes = dtype_bytes[a->qparams.dtype];
    cr_expect_arr_eq(a->data_q, b->data_q, (size_t)elements * element_bytes,
                     "tensor %s quantized values", a->name);
  }
  cr_assert_eq(a->channel_scales == NULL, b->channel_scales == NULL, "tensor %s scales",
               a->name);
  if (a->channel_scales != NULL)
    cr_expect_arr_eq(a->channel_scales, b->channel_scales, (size_t)a->channel_count * 4);
}

static void expect_deform_equal(const dsr_deform_attn *a, const dsr_deform_attn *b) {
  cr_expect_eq(a->channels, b->channels);
  cr_expect_eq(a->height, b->height);
  cr_expect_eq(a->width, b->width);
  cr_expect_eq(a->groups, b->groups);
  cr_expect_eq(a->heads, b->heads);
  cr_expect_eq(a->head_channels, b->head_channels);
  cr_expect_eq(a->offset_kernel, b->offset_kernel);
  cr_expect_eq(a->offset_stride, b->offset_stride);
  cr_expect_eq(a->offset_pad, b->offset_pad);
  cr_expect_eq(a->convention, b->convention);
  cr_expect_eq(a->offset_range_factor, b->offset_range_factor);
  cr_expect_eq(a->attn_scale, b->attn_scale);
  cr_expect_eq(a->ln_epsilon, b->ln_epsilon);
  for (int i = 0; i < DSR_DEFORM_PARAM_COUNT; i++)
    cr_expect_eq(a->params[i], b->params[i], "deform param %d", i);
  cr_expect_eq(a->slice.rows, b->slice.rows);
  cr_expect_eq(a->slice.cols, b->slice.cols);
  cr_expect_eq(a->slice.overlap, b->slice.overlap);
  cr_expect_eq(a->slice.semantics, b->slice.semantics);
  for (int i = 0; i < DSR_DEFORM_STAGE_COUNT; i++)
    expect_qparams_equal(&a->stage_qparams[i], &b->stage_qparams[i], "deform stage");
}

static void expect_node_equal(const dsr_node *a, const dsr_node *b) {
  cr_expect_str_eq(a->name, b->name);
  cr_assert_eq(a->op, b->op, "node %s op", a->name);
  cr_assert_eq(a->input_count, b->input_count, "node %s input count", a->name);
  for (int32_t k = 0; k < DSR_MAX_NODE_INPUTS; k++) {
    int32_t expected = k < a->input_count ? a->inputs[k] : -1;
    cr_expect_eq(b->inputs[k], expected, "node %s input %d", a->name, k);
  }
  cr_expect_eq(a->output, b->output, "node %s output", a->name);
  if (a->op == DSR_OP_CONV2D) {
    cr_expect_arr_eq(a->attrs.conv.stride, b->attrs.conv.stride, sizeof a->attrs.conv.stride);
    cr_expect_arr_eq(a->attrs.conv.pad, b->attrs.conv.pad, sizeof a->attrs.conv.pad);
    cr_expect_arr_eq(a->attrs.conv.dilation, b->attrs.conv.dilation,
                     sizeof a->attrs.conv.dilation);
    cr_expect_eq(a->attrs.conv.group, b->attrs.conv.group);
  }
  cr_assert_eq(a->deform == NULL, b->deform == NULL, "node %s deform", a->name);
  if (a->deform != NULL)
    expect_deform_equal(a->deform, b->deform);
  cr_assert_eq(a->qword_count, b->qword_count, "node %s qword count", a->name);
  if (a->qword_count > 0)
    cr_expect_arr_eq(a->qwords, b->qwords, (size_t)a->qword_count * 4);
}

static void expect_model_equal(const dsr_model *a, const dsr_model *b) {
  cr_expect_str_eq(a->name, b->name);
  cr_expect_eq(a->input, b->input);
  cr_expect_eq(a->output, b->output);
  cr_expect_eq(a->quantized, b->quantized);
  cr_assert_eq(a->tensor_count, b->tensor_count);
  for (int32_t i = 0; i < a->tensor_count; i++)
    expect_tensor_equal(&a->tensors[i], &b->tensors[i]);
  cr_assert_eq(a->node_count, b->node_count);
  for (int32_t i = 0; i < a->node_count; i++)
    expect_node_equal(&a->nodes[i], &b->nodes[i]);
}

static void expect_schedule_equal(const dsr_schedule *a, const dsr_schedule *b) {
  cr_assert_eq(a->step_count, b->step_count);
  cr_assert_eq(a->descriptor_count, b->descriptor_count);
  for (int32_t i = 0; i < a->step_count; i++) {
    cr_expect_eq(a->steps[i].node, b->steps[i].node);
    cr_expect_eq(a->steps[i].layer, b->steps[i].layer);
    cr_expect_eq(a->steps[i].compute_cycles, b->steps[i].compute_cycles);
    cr_expect_eq(a->steps[i].patch, b->steps[i].patch);
    cr_expect_eq(a->steps[i].first_descriptor, b->steps[i].first_descriptor);
    cr_expect_eq(a->steps[i].load_count, b->steps[i].load_count);
    cr_expect_eq(a->steps[i].store_count, b->steps[i].store_count);
  }
  for (int32_t i = 0; i < a->descriptor_count; i++) {
    const dsr_dma_descriptor *x = &a->descriptors[i], *y = &b->descriptors[i];
    cr_expect_eq(x->dram_address, y->dram_address, "descriptor %d address", i);
    cr_expect_eq(x->row_bytes, y->row_bytes);
    cr_expect_eq(x->row_count, y->row_count);
    cr_expect_eq(x->stride_bytes, y->stride_bytes);
    cr_expect_eq(x->chip_offset_bytes, y->chip_offset_bytes);
    cr_expect_eq(x->direction, y->direction);
    cr_expect_eq(x->buffer, y->buffer);
    cr_expect_eq(x->slot, y->slot);
    cr_expect_eq(x->bank, y->bank);
  }
}

/* ---- Round trips ---- */

static void check_round_trip(int compress, int dma_ready) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample_with(&s, compress, dma_ready, &size);

  dsr_model model;
  dsr_schedule schedule;
  char *manifest;
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dsf_read_buffer(data, size, "sample", &model, &schedule, &manifest, &err);
  cr_assert_eq(status, DS_OK, "%s", err.message);
  expect_model_equal(&s.model, &model);
  expect_schedule_equal(&s.schedule, &schedule);
  cr_expect_str_eq(manifest, sample_manifest);

  ds_model_free(&model);
  dsf_schedule_free(&schedule);
  free(manifest);
  free(data);
}

Test(formats, round_trip_raw_sections) {
  check_round_trip(0, 1);
}

Test(formats, round_trip_compressed_sections) {
  check_round_trip(1, 1);
}

Test(formats, round_trip_compressed_weights) {
  check_round_trip(1, 0);
}

Test(formats, layout_is_aligned_and_flagged) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 1, &size);
  cr_assert_eq(memcmp(data, "DSLICE\x1a\n", 8), 0);
  cr_expect_eq(load_u64(data + 32), size);
  cr_expect_eq(size % 64, 0);
  cr_expect_eq(load_u32(data + 12), DSF_FILE_DMA_READY);
  for (uint32_t i = 0; i < load_u32(data + 20); i++) {
    const uint8_t *entry = data + 64 + 40 * i;
    cr_expect_eq(load_u64(entry + 8) % 64, 0, "section %u offset", i);
  }
  const uint8_t *weights = entry_of_type(data, DSF_SECTION_WEIGHTS);
  cr_expect_eq(load_u32(weights + 4), 0u, "DMA-ready weights must stay uncompressed");
  const uint8_t *graph = entry_of_type(data, DSF_SECTION_GRAPH);
  cr_expect_eq(load_u32(graph + 4), DSF_SECTION_ZSTD, "the graph section compresses");
  free(data);
}

Test(formats, optional_parts_read_back_empty) {
  sample s;
  build_sample(&s);
  uint8_t *data;
  size_t size;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsf_write_buffer(&s.model, NULL, NULL, NULL, &data, &size, &err), DS_OK, "%s",
               err.message);
  dsr_model model;
  dsr_schedule schedule;
  char *manifest;
  cr_assert_eq(dsf_read_buffer(data, size, "bare", &model, &schedule, &manifest, &err), DS_OK,
               "%s", err.message);
  cr_expect_eq(schedule.step_count, 0);
  cr_expect_null(schedule.steps);
  cr_expect_str_eq(manifest, "");
  ds_model_free(&model);
  free(manifest);
  free(data);
}

/* A converted DAT++ model from the test fixtures, through a file and back. */
Test(formats, round_trip_converted_model) {
  char onnx[512], artifact[512];
  snprintf(onnx, sizeof onnx, "%s/tests/fixtures/dat_pp_tiny.onnx", DS_SOURCE_DIR);
  snprintf(artifact, sizeof artifact, "%s/formats_dat_pp_tiny.dslice", DS_BINARY_DIR);
  dsr_model converted;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(onnx, NULL, &converted, NULL, &err), DS_OK, "%s", err.message);
  cr_assert_gt(ds_model_deform_count(&converted), 0);
  cr_assert_eq(dsf_write_file(artifact, &converted, NULL, "{}", NULL, &err), DS_OK, "%s",
               err.message);

  dsr_model model;
  char *manifest;
  cr_assert_eq(dsf_read_file(artifact, &model, NULL, &manifest, &err), DS_OK, "%s",
               err.message);
  expect_model_equal(&converted, &model);
  cr_expect_str_eq(manifest, "{}");
  ds_model_free(&converted);
  ds_model_free(&model);
  free(manifest);
  remove(artifact);
}

/* ---- Reproducibility and files ---- */

static uint8_t *slurp(const char *path, size_t *size) {
  FILE *file = fopen(path, "rb");
  cr_assert_not_null(file, "cannot open %s", path);
  fseek(file, 0, SEEK_END);
  long length = ftell(file);
  fseek(file, 0, SEEK_SET);
  uint8_t *data = malloc((size_t)length + 1);
  cr_assert_eq(fread(data, 1, (size_t)length, file), (size_t)length);
  fclose(file);
  *size = (size_t)length;
  return data;
}

Test(formats, same_inputs_give_identical_files) {
  sample s;
  build_sample(&s);
  char first[512], second[512], temporary[520];
  snprintf(first, sizeof first, "%s/formats_first.dslice", DS_BINARY_DIR);
  snprintf(second, sizeof second, "%s/formats_second.dslice", DS_BINARY_DIR);
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsf_write_file(first, &s.model, &s.schedule, sample_manifest, NULL, &err), DS_OK,
               "%s", err.message);
  cr_assert_eq(dsf_write_file(second, &s.model, &s.schedule, sample_manifest, NULL, &err),
               DS_OK, "%s", err.message);

  size_t first_size, second_size;
  uint8_t *a = slurp(first, &first_size);
  uint8_t *b = slurp(second, &second_size);
  cr_assert_eq(first_size, second_size);
  cr_expect_arr_eq(a, b, first_size, "two writes of the same model differ");
  snprintf(temporary, sizeof temporary, "%s.tmp", first);
  struct stat info;
  cr_expect_neq(stat(temporary, &info), 0, "the temporary file was left behind");

  dsr_model model;
  cr_assert_eq(dsf_read_file(first, &model, NULL, NULL, &err), DS_OK, "%s", err.message);
  expect_model_equal(&s.model, &model);
  ds_model_free(&model);
  free(a);
  free(b);
  remove(first);
  remove(second);
}

/*
 * Pins the bytes of the uncompressed sample (no zstd, so independent of the libzstd version).
 * A change here changes format 2.0: bump the version in docs/format.md and dsf_artifact.h.
 */
Test(formats, raw_sample_bytes_are_pinned) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample_with(&s, 0, 0, &size);
  cr_expect_eq(size, 2624u, "size is %zu", size);
  uint32_t crc = (uint32_t)crc32(0, data, (uInt)size);
  cr_expect_eq(crc, 0xe5a68743u, "CRC-32 is 0x%08x", crc);
  free(data);
}

Test(formats, missing_file_is_io_error) {
  dsr_model model;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dsf_read_file("/nonexistent/model.dslice", &model, NULL, NULL, &err), DS_ERR_IO);
  cr_expect_not_null(strstr(err.message, "/nonexistent/model.dslice"), "%s", err.message);
}

/* ---- Header checks ---- */

Test(formats, wrong_magic_is_rejected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 1, &size);
  data[0] = 'X';
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_MAGIC, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "test.dslice"), "%s", err.message);
  cr_expect_eq(read_copy((const uint8_t *)"PK\x03\x04", 4, &err), DS_ERR_ARTIFACT_MAGIC);
  free(data);
}

Test(formats, unsupported_major_version_is_rejected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 1, &size);
  data[8] = 3;
  fix_checksums(data, size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_VERSION, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "3.0"), "%s", err.message);
  data[8] = 1; /* format 1 had 20-byte schedule steps */
  fix_checksums(data, size);
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_VERSION, "%s", err.message);
  data[8] = 0;
  fix_checksums(data, size);
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_VERSION, "%s", err.message);
  free(data);
}

Test(formats, newer_minor_version_is_read) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 1, &size);
  data[10] = 7;
  fix_checksums(data, size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_OK, "%s", err.message);
  free(data);
}

Test(formats, reserved_flag_bits_are_rejected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 1, &size);
  store_u32(data + 12, DSF_FILE_DMA_READY | 0x100u);
  fix_checksums(data, size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "reserved bits 0x00000100"), "%s", err.message);

  store_u32(data + 12, DSF_FILE_DMA_READY);
  uint8_t *entry = entry_of_type(data, DSF_SECTION_SLICES);
  store_u32(entry + 4, 0x2u);
  fix_checksums(data, size);
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "(slices)"), "%s", err.message);
  free(data);
}

/* ---- Truncation and damage ---- */

static void check_every_truncation(int compress) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, compress, &size);
  ds_error err;
  for (size_t length = 0; length < size; length++) {
    ds_status status = read_copy(data, length, &err);
    cr_assert_neq(status, DS_OK, "a file cut to %zu of %zu bytes was accepted", length, size);
    cr_assert_neq(err.message[0], '\0', "no message for a cut at %zu", length);
  }
  cr_expect_eq(read_copy(data, size, &err), DS_OK, "%s", err.message);
  free(data);
}

Test(formats, truncation_at_every_byte_fails_raw) {
  check_every_truncation(0);
}

Test(formats, truncation_at_every_byte_fails_compressed) {
  check_every_truncation(1);
}

/*
 * Cuts each raw section's payload at every length while keeping the file consistent (sizes
 * and checksums recomputed), so that every decoder meets its end of data at every field.
 */
Test(formats, section_cut_at_every_byte_fails) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 0, &size);
  uint8_t *patched = malloc(size);
  ds_error err;
  for (uint32_t type = DSF_SECTION_GRAPH; type <= DSF_SECTION_MANIFEST; type++) {
    uint64_t stored = load_u64(entry_of_type(data, type) + 16);
    for (uint64_t length = 0; length < stored; length++) {
      if (type == DSF_SECTION_MANIFEST && length == 0)
        continue; /* an empty manifest is valid */
      memcpy(patched, data, size);
      uint8_t *entry = entry_of_type(patched, type);
      store_u64(entry + 16, length);
      store_u64(entry + 24, length);
      uint8_t *bytes = section_bytes(patched, type);
      memset(bytes + length, 0, (size_t)(stored - length));
      fix_checksums(patched, size);
      ds_status status = read_copy(patched, size, &err);
      cr_assert_eq(status, DS_ERR_ARTIFACT_CORRUPT,
                   "section type %u cut to %llu of %llu bytes gave %s: %s", type,
                   (unsigned long long)length, (unsigned long long)stored,
                   ds_status_name(status), err.message);
    }
  }
  free(patched);
  free(data);
}

/*
 * Rebuilds a valid file from data with the section of one type replaced by stored bytes
 * (flags and uncompressed size as given), laying the sections out again on 64-byte
 * boundaries and recomputing every size and checksum.
 */
static uint8_t *replace_section(const uint8_t *data, uint32_t type, const void *stored,
                                size_t stored_bytes, uint64_t uncompressed_bytes,
                                uint32_t flags, size_t *size) {
  uint32_t count = load_u32(data + 20);
  uint64_t offsets[16], sizes[16];
  uint64_t position = 64 + 40 * (uint64_t)count;
  cr_assert_leq(count, 16);
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *entry = data + 64 + 40 * i;
    sizes[i] = load_u32(entry) == type ? stored_bytes : load_u64(entry + 16);
    offsets[i] = (position + 63) / 64 * 64;
    position = offsets[i] + sizes[i];
  }
  *size = (size_t)((position + 63) / 64 * 64);

  uint8_t *out = calloc(1, *size);
  cr_assert_not_null(out);
  memcpy(out, data, 64 + 40 * (size_t)count);
  store_u64(out + 32, *size);
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *entry = out + 64 + 40 * i;
    const uint8_t *source = data + load_u64(entry + 8);
    if (load_u32(entry) == type) {
      source = stored;
      store_u32(entry + 4, flags);
      store_u64(entry + 24, uncompressed_bytes);
    }
    store_u64(entry + 8, offsets[i]);
    store_u64(entry + 16, sizes[i]);
    memcpy(out + offsets[i], source, (size_t)sizes[i]);
  }
  fix_checksums(out, *size);
  return out;
}

/*
 * Like section_cut_at_every_byte_fails, but each cut section is stored zstd-compressed, so the
 * decoders read from an exact-size decompression buffer where ASan reports any overread.
 */
Test(formats, compressed_section_cut_fails) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample_with(&s, 0, 0, &size);
  uint8_t frame[4096];
  ds_error err;
  for (uint32_t type = DSF_SECTION_GRAPH; type <= DSF_SECTION_MANIFEST; type++) {
    const uint8_t *raw = section_bytes(data, type);
    uint64_t raw_bytes = load_u64(entry_of_type(data, type) + 16);
    cr_assert_leq(ZSTD_compressBound((size_t)raw_bytes), sizeof frame);
    for (uint64_t length = 0; length < raw_bytes; length++) {
      if (type == DSF_SECTION_MANIFEST && length == 0)
        continue; /* an empty manifest is valid */
      size_t frame_bytes = ZSTD_compress(frame, sizeof frame, raw, (size_t)length, 1);
      cr_assert(!ZSTD_isError(frame_bytes));
      size_t patched_size;
      uint8_t *patched = replace_section(data, type, frame, frame_bytes, length,
                                         DSF_SECTION_ZSTD, &patched_size);
      ds_status status = read_copy(patched, patched_size, &err);
      cr_assert_eq(status, DS_ERR_ARTIFACT_CORRUPT,
                   "section type %u cut to %llu of %llu bytes gave %s: %s", type,
                   (unsigned long long)length, (unsigned long long)raw_bytes,
                   ds_status_name(status), err.message);
      free(patched);
    }
    /* The whole section, compressed, reads back. */
    size_t frame_bytes = ZSTD_compress(frame, sizeof frame, raw, (size_t)raw_bytes, 1);
    size_t patched_size;
    uint8_t *patched = replace_section(data, type, frame, frame_bytes, raw_bytes,
                                       DSF_SECTION_ZSTD, &patched_size);
    cr_expect_eq(read_copy(patched, patched_size, &err), DS_OK, "type %u: %s", type,
                 err.message);
    free(patched);
  }
  free(data);
}

Test(formats, every_flipped_byte_is_detected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 1, &size);
  ds_error err;
  for (size_t i = 0; i < size; i++) {
    data[i] ^= 0x01;
    ds_status status = read_copy(data, size, &err);
    data[i] ^= 0x01;
    cr_assert_neq(status, DS_OK, "flipping bit 0 of byte %zu went unnoticed", i);
  }
  free(data);
}

Test(formats, flipped_section_byte_names_section) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 1, &size);
  uint8_t *weights = section_bytes(data, DSF_SECTION_WEIGHTS);
  weights[5] ^= 0x40;
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CHECKSUM, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "section 3 (weights)"), "%s", err.message);
  cr_expect_not_null(strstr(err.message, "test.dslice"), "%s", err.message);
  free(data);
}

Test(formats, section_outside_file_is_rejected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 1, &size);
  uint8_t *entry = entry_of_type(data, DSF_SECTION_MANIFEST);
  store_u64(entry + 8, (uint64_t)size + 4096);
  fix_checksums(data, size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "(manifest)"), "%s", err.message);
  cr_expect_not_null(strstr(err.message, "the file has 0 left"), "%s", err.message);

  /* A stored size reaching past the end of the file. */
  free(data);
  data = write_sample(&s, 1, &size);
  entry = entry_of_type(data, DSF_SECTION_WEIGHTS);
  store_u64(entry + 16, 9000000);
  store_u64(entry + 24, 9000000);
  fix_checksums(data, size);
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "claims 9000000 bytes"), "%s", err.message);
  free(data);
}

Test(formats, overlapping_sections_are_rejected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 0, &size);
  uint8_t *graph = entry_of_type(data, DSF_SECTION_GRAPH);
  uint8_t *tensors = entry_of_type(data, DSF_SECTION_TENSORS);
  store_u64(tensors + 8, load_u64(graph + 8));
  fix_checksums(data, size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "previous part ends"), "%s", err.message);
  free(data);
}

Test(formats, huge_count_is_rejected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 0, &size);
  store_u32(section_bytes(data, DSF_SECTION_TENSORS), 0xFFFFFFFFu);
  fix_checksums(data, size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "tensor count is 4294967295"), "%s", err.message);

  /* Below the cap but more records than the section could hold. */
  store_u32(section_bytes(data, DSF_SECTION_TENSORS), 50000);
  fix_checksums(data, size);
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "bytes left"), "%s", err.message);
  free(data);
}

/*
 * Graph section layout of the sample: name "tiny" (2 + 4 bytes), input, output, quantized,
 * node count (4 each), then node 0: name "stem.conv" (2 + 9), op, input count, four inputs and
 * the output.
 */
enum { NODE0_OUTPUT_OFFSET = 6 + 16 + 11 + 4 + 4 + 16 };

Test(formats, out_of_range_tensor_index_is_rejected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 0, &size);
  uint8_t *graph = section_bytes(data, DSF_SECTION_GRAPH);
  cr_assert_eq(load_u32(graph + NODE0_OUTPUT_OFFSET), 3u, "the test's offset is stale");
  store_u32(graph + NODE0_OUTPUT_OFFSET, 99);
  fix_checksums(data, size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "node output is tensor 99"), "%s", err.message);
  cr_expect_not_null(strstr(err.message, "section 0 (graph)"), "%s", err.message);
  free(data);
}

Test(formats, bad_enum_in_schedule_is_rejected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 0, &size);
  uint8_t *schedule = section_bytes(data, DSF_SECTION_SCHEDULE);
  /* Counts (8 bytes), three steps (96), then descriptor 0's direction at byte 24 of it. */
  schedule[8 + 96 + 24] = 7;
  fix_checksums(data, size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "direction 7"), "%s", err.message);
  free(data);
}

Test(formats, wrong_declared_content_size_is_rejected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 1, &size);
  uint8_t *entry = entry_of_type(data, DSF_SECTION_GRAPH);
  cr_assert_eq(load_u32(entry + 4), DSF_SECTION_ZSTD);
  store_u64(entry + 24, load_u64(entry + 24) + 1);
  fix_checksums(data, size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "zstd frame declares"), "%s", err.message);

  store_u64(entry + 24, (uint64_t)1 << 40);
  fix_checksums(data, size);
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  free(data);
}

/* The sample's table of 7 entries ends at byte 344 and its first section starts at 384, which
 * leaves room for an eighth entry. */
static uint8_t *write_with_extra_entry(const sample *s, uint32_t type, size_t *size) {
  uint8_t *data = write_sample(s, 0, size);
  cr_assert_eq(load_u64(data + 64 + 8), 384u, "the first section moved");
  store_u32(data + 20, 8);
  uint8_t *entry = data + 64 + 7 * 40;
  memset(entry, 0, 40);
  store_u32(entry, type);
  store_u64(entry + 8, *size); /* empty, at the end of the file */
  fix_checksums(data, *size);
  return data;
}

Test(formats, unknown_section_type_is_skipped) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_with_extra_entry(&s, 99, &size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_OK, "%s", err.message);
  free(data);
}

Test(formats, duplicate_section_type_is_rejected) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_with_extra_entry(&s, DSF_SECTION_SLICES, &size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "appears twice"), "%s", err.message);
  free(data);
}

Test(formats, dma_ready_flag_needs_raw_weights) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample_with(&s, 1, 0, &size);
  cr_assert_eq(load_u32(entry_of_type(data, DSF_SECTION_WEIGHTS) + 4), DSF_SECTION_ZSTD);
  store_u32(data + 12, DSF_FILE_DMA_READY);
  fix_checksums(data, size);
  ds_error err;
  cr_expect_eq(read_copy(data, size, &err), DS_ERR_ARTIFACT_CORRUPT, "%s", err.message);
  cr_expect_not_null(strstr(err.message, "DMA-ready"), "%s", err.message);
  free(data);
}

/* ---- Writer input checks ---- */

Test(formats, writer_rejects_bad_tensor_index) {
  sample s;
  build_sample(&s);
  s.nodes[1].inputs[0] = 42;
  uint8_t *data;
  size_t size;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dsf_write_buffer(&s.model, &s.schedule, NULL, NULL, &data, &size, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "node input is tensor 42"), "%s", err.message);
  cr_expect_null(data);
}

Test(formats, writer_rejects_invalid_manifest) {
  sample s;
  build_sample(&s);
  uint8_t *data;
  size_t size;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dsf_write_buffer(&s.model, NULL, "{\"open\": ", NULL, &data, &size, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "manifest"), "%s", err.message);
}

Test(formats, writer_rejects_bad_rank_and_schedule) {
  sample s;
  build_sample(&s);
  s.tensors[2].rank = 9;
  uint8_t *data;
  size_t size;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dsf_write_buffer(&s.model, NULL, NULL, NULL, &data, &size, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "conv.bias"), "%s", err.message);

  build_sample(&s);
  s.steps[1].patch = 4; /* a 2 x 2 slice has patches 0 to 3 */
  ds_error_clear(&err);
  cr_expect_eq(dsf_write_buffer(&s.model, &s.schedule, NULL, NULL, &data, &size, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "step patch is 4"), "%s", err.message);
}

/* ---- Inspection ---- */

Test(formats, inspect_prints_every_part) {
  sample s;
  build_sample(&s);
  size_t size;
  uint8_t *data = write_sample(&s, 1, &size);
  char *text = NULL;
  size_t text_size = 0;
  FILE *out = open_memstream(&text, &text_size);
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsf_inspect_buffer(data, size, "tiny.dslice", out, &err), DS_OK, "%s",
               err.message);
  fclose(out);
  const char *expected[] = {"format version 2.0", "weights", "zstd", "CONV2D",
                            "DEFORM_ATTN", "stage1.attn", "crop", "total", "manifest",
                            "load payload", "store payload"};
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
    cr_expect_not_null(strstr(text, expected[i]), "no '%s' in:\n%s", expected[i], text);
  /* Two loads of 48 x 3 bytes and two stores of 32 x 2 bytes. */
  cr_expect_not_null(strstr(text, "288"), "load bytes missing:\n%s", text);
  cr_expect_not_null(strstr(text, "128"), "store bytes missing:\n%s", text);
  free(text);

  data[0] = 'Z';
  out = fopen("/dev/null", "w");
  cr_expect_eq(dsf_inspect_buffer(data, size, "tiny.dslice", out, &err), DS_ERR_ARTIFACT_MAGIC);
  fclose(out);
  free(data);
}

/* Leaves the sample artifacts in the build folder as the fuzzer's seed corpus. */
Test(formats, writes_fuzz_seeds) {
  sample s;
  build_sample(&s);
  char folder[512], path[600];
  snprintf(folder, sizeof folder, "%s/fuzz-seeds", DS_BINARY_DIR);
  mkdir(folder, 0755);
  dsf_write_options variants[2] = {{.compress = 0, .dma_ready = 0},
                                   {.compress = 1, .dma_ready = 1}};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/sample-%d.dslice", folder, i);
    ds_error err;
    ds_error_clear(&err);
    cr_expect_eq(dsf_write_file(path, &s.model, &s.schedule, sample_manifest, &variants[i],
                                &err), DS_OK, "%s", err.message);
  }
}
