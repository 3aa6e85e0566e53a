/*
 * Measures the sampling offsets of a trained model's deformable layers on real Fashion-MNIST
 * images through the runtime observer (float mode, unsliced), fits the per-stage offset model
 * of nas/dsn_offset_model.h and writes it as JSON (atomically). The validation split is used,
 * never the test set. Prints the figures per stage.
 *
 * Usage: bench_offsets MODEL.onnx OUT.json [IMAGES (default 1000)] [DATA_DIR]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "nas/dsn_offset_model.h"
#include "runtime/dsr_runtime.h"
#include "tools/lib/dst_data.h"

typedef struct measure {
  const dsr_model *model;
  int32_t *layer_of_node;     /* deformable layer index per node, -1 for others */
  int32_t *stage_of_layer;
  dsn_offset_stats stats;
} measure;

static void on_stage(void *user, int32_t node, int32_t stage, const float *values,
                     int64_t count) {
  measure *m = user;
  if (stage != DSR_DEFORM_STAGE_OFFSET || m->layer_of_node[node] < 0)
    return;
  int32_t layer = m->layer_of_node[node];
  dsn_offset_stats_add(&m->stats, m->model->nodes[node].deform, layer, m->stage_of_layer[layer],
                       values, count);
}

static int fail(const ds_error *err) {
  fprintf(stderr, "bench_offsets: %s\n", err->message);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_offsets MODEL.onnx OUT.json [IMAGES] [DATA_DIR]\n");
    return 2;
  }
  const int32_t images = argc > 3 ? atoi(argv[3]) : 1000;
  const char *data_dir = argc > 4 ? argv[4] : DST_FASHION_MNIST_DIR;
  ds_error err;
  ds_error_clear(&err);

  dsr_model model = {0};
  if (dsc_import_file(argv[1], NULL, &model, NULL, &err) != DS_OK)
    return fail(&err);
  const int32_t side = model.tensors[model.input].dims[3];
  dst_dataset data;
  if (dst_dataset_load(data_dir, DST_SPLIT_VALIDATION, side, images, &data, &err) != DS_OK)
    return fail(&err);

  measure m;
  memset(&m, 0, sizeof m);
  m.model = &model;
  m.layer_of_node = malloc((size_t)model.node_count * sizeof *m.layer_of_node);
  m.stage_of_layer = calloc(64, sizeof *m.stage_of_layer);
  if (m.layer_of_node == NULL || m.stage_of_layer == NULL) {
    fprintf(stderr, "bench_offsets: out of memory\n");
    return 1;
  }
  int32_t layers = 0;
  for (int32_t i = 0; i < model.node_count; i++)
    m.layer_of_node[i] = model.nodes[i].op == DSR_OP_DEFORM_ATTN ? layers++ : -1;
  dsn_offset_layer_stages(&model, m.stage_of_layer);

  dsr_plan_info plan;
  if (dsr_plan(&model, DSR_MODE_FLOAT, 0, &plan, &err) != DS_OK)
    return fail(&err);
  void *arena = aligned_alloc(64, (plan.arena_bytes + 63) / 64 * 64);
  dsr_context ctx;
  if (arena == NULL ||
      dsr_context_init(&ctx, &model, DSR_MODE_FLOAT, 0, arena, plan.arena_bytes, &err) != DS_OK)
    return arena == NULL ? (fprintf(stderr, "bench_offsets: out of memory\n"), 1) : fail(&err);
  dsr_observer observer = {NULL, on_stage, &m};
  dsr_context_set_observer(&ctx, &observer);

  const int64_t pixels = (int64_t)side * side;
  for (int32_t i = 0; i < data.count; i++) {
    memcpy(dsr_input_f32(&ctx), data.images + i * pixels, (size_t)pixels * sizeof(float));
    dsr_invoke(&ctx);
  }

  char source[160];
  const char *base = strrchr(argv[1], '/');
  snprintf(source, sizeof source, "%s, %d Fashion-MNIST validation images at %dx%d",
           base != NULL ? base + 1 : argv[1], data.count, side, side);
  dsn_offset_model fitted;
  dsn_offset_stats_fit(&m.stats, source, data.count, &fitted);

  printf("offset model of %s\n", source);
  printf("%5s %6s %7s %10s %9s %9s %9s %9s %12s %9s\n", "stage", "layers", "map", "samples",
         "mean dy", "mean dx", "sd dy", "sd dx", "|o| pixels", "clamped");
  for (int32_t k = 0; k < fitted.stage_count; k++) {
    const dsn_offset_stage *s = &fitted.stages[k];
    char map[16];
    snprintf(map, sizeof map, "%dx%d", s->map_height, s->map_width);
    printf("%5d %6d %7s %10lld %9.4f %9.4f %9.4f %9.4f %12.3f %8.1f%%\n", k, s->layer_count, map,
           (long long)s->sample_count, s->mean_y, s->mean_x, s->sd_y, s->sd_x,
           s->mean_magnitude_pixels, 100.0 * s->clamped_fraction);
  }
  char *json = dsn_offset_model_json(&fitted);
  ds_status status = json != NULL ? ds_file_write_atomic(argv[2], json, strlen(json), &err)
                                  : ds_fail(&err, DS_ERR_OUT_OF_MEMORY, "cannot render JSON");
  free(json);
  free(arena);
  free(m.layer_of_node);
  free(m.stage_of_layer);
  dst_dataset_free(&data);
  ds_model_free(&model);
  if (status != DS_OK)
    return fail(&err);
  printf("wrote %s\n", argv[2]);
  return 0;
}
