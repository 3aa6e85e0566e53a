/* Human-readable summary of an artifact, printed only after the whole file validates. */
#include "dsf_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../common/ds_model.h"

static const char *op_name(int32_t op) {
  static const char *const names[DSR_OP_COUNT] = {
      "(none)",     "CONV2D",    "MATMUL",  "GEMM",      "ADD",     "SUB",
      "MUL",        "DIV",       "LAYER_NORM", "GELU",   "SOFTMAX", "TRANSPOSE",
      "RESHAPE",    "GATHER",    "GLOBAL_AVG_POOL", "DEFORM_ATTN",
      "CONCAT",     "PAD"};
  return op > 0 && op < DSR_OP_COUNT ? names[op] : "unknown";
}

static void print_header(FILE *out, const char *name, const dsf_layout *layout) {
  fprintf(out, "artifact %s\n", name);
  fprintf(out, "  format version %u.%u, %" PRIu64 " bytes, alignment %" PRIu32
          ", flags 0x%08" PRIx32 "%s\n",
          (unsigned)layout->version_major, (unsigned)layout->version_minor, layout->file_bytes,
          layout->alignment_bytes, layout->flags,
          (layout->flags & DSF_FILE_DMA_READY) ? " (DMA-ready weights)" : "");
  fprintf(out, "  header and table CRC-32 0x%08" PRIx32 "\n\n", layout->table_crc32);

  fprintf(out, "sections (%" PRIu32 ")\n", layout->section_count);
  fprintf(out, "  %2s  %-9s %10s %12s %12s %7s  %-5s %s\n", "#", "type", "offset", "stored",
          "uncompressed", "ratio", "codec", "crc32");
  for (uint32_t i = 0; i < layout->section_count; i++) {
    const dsf_section_entry *e = &layout->sections[i];
    double ratio = e->stored_bytes > 0 ? (double)e->uncompressed_bytes / (double)e->stored_bytes
                                       : 1.0;
    fprintf(out, "  %2" PRIu32 "  %-9s %10" PRIu64 " %12" PRIu64 " %12" PRIu64 " %6.2fx  %-5s "
            "0x%08" PRIx32 "\n", i, dsf_section_type_name(e->type), e->offset, e->stored_bytes,
            e->uncompressed_bytes, ratio, (e->flags & DSF_SECTION_ZSTD) ? "zstd" : "raw",
            e->crc32);
  }
  fputc('\n', out);
}

static void print_graph(FILE *out, const dsr_model *model) {
  int64_t weight_bytes = 0;
  for (int32_t i = 0; i < model->tensor_count; i++) {
    const dsr_tensor *t = &model->tensors[i];
    int64_t elements = dsr_tensor_elements(t);
    if (t->data_f32 != NULL)
      weight_bytes += elements * 4;
    if (t->data_q != NULL)
      weight_bytes += elements * (int64_t)dsf_dtype_bytes(t->qparams.dtype);
  }
  fprintf(out, "graph '%s': %" PRId32 " nodes, %" PRId32 " tensors, %" PRId64 " bytes of "
          "constant data, input tensor %" PRId32 ", output tensor %" PRId32 ", %s\n",
          model->name, model->node_count, model->tensor_count, weight_bytes, model->input,
          model->output, model->quantized ? "quantized" : "float only");

  int64_t histogram[DSR_OP_COUNT] = {0};
  for (int32_t i = 0; i < model->node_count; i++)
    histogram[model->nodes[i].op]++; /* the reader checked the op range */
  for (int32_t op = 1; op < DSR_OP_COUNT; op++) {
    if (histogram[op] > 0)
      fprintf(out, "  %-16s %6" PRId64 "\n", op_name(op), histogram[op]);
  }
  fputc('\n', out);
}

static void print_slices(FILE *out, const dsr_model *model) {
  int32_t layers = ds_model_deform_count(model);
  fprintf(out, "slice tables (%" PRId32 " deformable layers)\n", layers);
  if (layers > 0) {
    fprintf(out, "  %5s %5s  %-24s %9s %5s %5s %7s  %s\n", "layer", "node", "name", "map",
            "rows", "cols", "overlap", "semantics");
  }
  int32_t layer = 0;
  for (int32_t index = 0; index < model->node_count; index++) {
    const dsr_node *n = &model->nodes[index];
    if (n->op != DSR_OP_DEFORM_ATTN)
      continue;
    const dsr_deform_attn *p = n->deform;
    char map[32];
    snprintf(map, sizeof map, "%" PRId32 "x%" PRId32, p->height, p->width);
    fprintf(out, "  %5" PRId32 " %5" PRId32 "  %-24.24s %9s %5" PRId32 " %5" PRId32 " %7" PRId32
            "  %s\n", layer, index, n->name, map, p->slice.rows, p->slice.cols,
            p->slice.overlap, p->slice.semantics == DSR_SLICE_CROP ? "crop" : "physical");
    layer++;
  }
  fputc('\n', out);
}

typedef struct layer_traffic {
  int64_t steps;
  int64_t descriptors;
  uint64_t load_bytes;
  uint64_t store_bytes;
} layer_traffic;

static void print_schedule(FILE *out, const dsr_model *model, const dsr_schedule *schedule) {
  int32_t layers = ds_model_deform_count(model);
  fprintf(out, "DMA schedule: %" PRId32 " steps, %" PRId32 " descriptors\n",
          schedule->step_count, schedule->descriptor_count);
  if (layers == 0 || schedule->step_count == 0)
    return;

  layer_traffic *per_layer = calloc((size_t)layers, sizeof *per_layer);
  if (per_layer == NULL) {
    fprintf(out, "  (no memory for the per-layer summary)\n");
    return;
  }
  layer_traffic total = {0};
  for (int32_t i = 0; i < schedule->step_count; i++) {
    const dsr_dma_step *s = &schedule->steps[i];
    layer_traffic *t = &per_layer[s->layer]; /* the reader checked the layer range */
    t->steps++;
    for (int32_t k = 0; k < s->load_count + s->store_count; k++) {
      const dsr_dma_descriptor *x = &schedule->descriptors[s->first_descriptor + k];
      uint64_t bytes = (uint64_t)x->row_bytes * x->row_count;
      t->descriptors++;
      if (x->direction == DSR_DMA_LOAD)
        t->load_bytes += bytes;
      else
        t->store_bytes += bytes;
    }
  }
  fprintf(out, "  %5s %7s %11s %14s %14s\n", "layer", "steps", "descriptors", "load bytes",
          "store bytes");
  for (int32_t layer = 0; layer < layers; layer++) {
    const layer_traffic *t = &per_layer[layer];
    fprintf(out, "  %5" PRId32 " %7" PRId64 " %11" PRId64 " %14" PRIu64 " %14" PRIu64 "\n",
            layer, t->steps, t->descriptors, t->load_bytes, t->store_bytes);
    total.steps += t->steps;
    total.descriptors += t->descriptors;
    total.load_bytes += t->load_bytes;
    total.store_bytes += t->store_bytes;
  }
  fprintf(out, "  %5s %7" PRId64 " %11" PRId64 " %14" PRIu64 " %14" PRIu64 "\n", "total",
          total.steps, total.descriptors, total.load_bytes, total.store_bytes);
  free(per_layer);
}

ds_status dsf_inspect_buffer(const void *data, size_t size, const char *name, FILE *out,
                             ds_error *err) {
  if (name == NULL)
    name = "artifact";
  if (out == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "%s: no output stream was given", name);
  dsr_model model;
  dsr_schedule schedule;
  char *manifest;
  DS_TRY(dsf_read_buffer(data, size, name, &model, &schedule, &manifest, err));
  dsf_layout layout;
  /* The read above validated these bytes, so parsing the layout again succeeds. */
  ds_status status = dsf_parse_layout(data, size, name, &layout, err);
  if (status == DS_OK) {
    print_header(out, name, &layout);
    print_graph(out, &model);
    print_slices(out, &model);
    print_schedule(out, &model, &schedule);
    fprintf(out, "\nmanifest: %zu bytes of JSON\n", strlen(manifest));
  }
  ds_model_free(&model);
  dsf_schedule_free(&schedule);
  free(manifest);
  return status;
}

ds_status dsf_inspect_file(const char *path, FILE *out, ds_error *err) {
  if (path == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "no artifact path was given");
  uint8_t *data;
  size_t size;
  DS_TRY(dsf_read_whole_file(path, &data, &size, err));
  ds_status status = dsf_inspect_buffer(data, size, path, out, err);
  free(data);
  return status;
}
