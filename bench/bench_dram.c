/*
 * DRAM model benchmark.
 *
 * 1. The oracle's analytic evaluation of DAT-T++ at 800x1333 (14 deformable layers with the
 *    reference geometry, maps 200x334 down to 25x42): wall time of one dsn_oracle_model call
 *    per preset and slicing, next to the executor running the same schedule in the same run.
 * 2. The bundled model on real test images: every strategy measured on the modelled DRAM per
 *    preset, with ratios against the lower bound.
 *
 * Usage: bench_dram [MODEL.onnx (default models/dat_pp_nano.onnx)] [IMAGES.f32]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "nas/dsn_measure.h"
#include "nas/dsn_oracle.h"
#include "nas/dsn_schedule.h"
#include "runtime/dsr_slice.h"
#include "tools/lib/dst_progress.h"

static int fail(const ds_error *err) {
  fprintf(stderr, "bench_dram: %s\n", err->message);
  return 1;
}

#define LARGE_LAYERS 14

/* DAT-T++ at 800x1333: stage maps after strides 4, 8, 16, 32 (stride-2 convolutions with
 * padding 1 round up, so 1333 gives 667, 334, 167, 84, 42); depths 2, 4, 18, 2 with every
 * other block deformable in stages 1-3 and both blocks of stage 4; dims 64..512; groups 1, 2, 4, 8; heads 2, 4, 8, 16; offset kernels
 * 9, 7, 5, 3 with strides 8, 4, 2, 1. */
static void large_model(dsr_model *model, dsr_node *nodes, dsr_deform_attn *layers) {
  static const int32_t heights[4] = {200, 100, 50, 25}, widths[4] = {334, 167, 84, 42};
  static const int32_t dims[4] = {64, 128, 256, 512}, groups[4] = {1, 2, 4, 8};
  static const int32_t heads[4] = {2, 4, 8, 16}, kernels[4] = {9, 7, 5, 3};
  static const int32_t strides[4] = {8, 4, 2, 1}, blocks[4] = {1, 2, 9, 2};
  memset(model, 0, sizeof *model);
  snprintf(model->name, sizeof model->name, "dat_t_pp_800x1333");
  int32_t n = 0;
  for (int32_t s = 0; s < 4; s++) {
    for (int32_t b = 0; b < blocks[s]; b++, n++) {
      dsr_deform_attn *d = &layers[n];
      memset(d, 0, sizeof *d);
      d->channels = dims[s];
      d->height = heights[s];
      d->width = widths[s];
      d->groups = groups[s];
      d->heads = heads[s];
      d->head_channels = dims[s] / heads[s];
      d->offset_kernel = kernels[s];
      d->offset_stride = strides[s];
      d->offset_pad = kernels[s] / 2;
      d->convention = DSR_DEFORM_DAT_PP;
      d->slice = dsr_slice_none();
      memset(&nodes[n], 0, sizeof nodes[n]);
      nodes[n].op = DSR_OP_DEFORM_ATTN;
      nodes[n].deform = d;
      snprintf(nodes[n].name, sizeof nodes[n].name, "stage%d.block%d", s + 1,
               s == 3 ? b : 2 * b + 1);
    }
  }
  model->node_count = n;
  model->nodes = nodes;
}

static int bench_large(void) {
  dsr_model model;
  dsr_node nodes[LARGE_LAYERS];
  dsr_deform_attn layers[LARGE_LAYERS];
  large_model(&model, nodes, layers);
  dsr_slice sliced[LARGE_LAYERS];
  for (int32_t l = 0; l < LARGE_LAYERS; l++) {
    dsr_slice s = {l == 0 ? 8 : (l < 3 ? 4 : 2), l == 0 ? 8 : (l < 3 ? 4 : 2), 2, 0};
    sliced[l] = l == LARGE_LAYERS - 1 ? dsr_slice_none() : s;
  }
  printf("== DAT-T++ at 800x1333, %d deformable layers ==\n", LARGE_LAYERS);
  printf("%-18s %-9s %14s %10s %10s %12s %12s %11s\n", "preset", "slicing", "sliced bytes",
         "bursts", "row miss", "oracle ms", "executor ms", "exec/oracle");
  /* The built-in presets, then zcu102 with the bank-interleaved mapping, which the DRAM walk
   * serves one burst at a time. */
  for (int32_t p = 0; p <= dsn_preset_builtin_count(); p++) {
    dsn_preset preset;
    ds_error err;
    ds_error_clear(&err);
    int interleaved = p == dsn_preset_builtin_count();
    if (dsn_preset_resolve(interleaved ? "zcu102" : dsn_preset_builtin_name(p), &preset, &err) !=
        DS_OK)
      return fail(&err);
    if (interleaved) {
      snprintf(preset.dram.address_mapping, sizeof preset.dram.address_mapping, "RoCoBaRaCh");
      snprintf(preset.name, sizeof preset.name, "zcu102-rocobarach");
    }
    for (int32_t k = 0; k < 2; k++) {
      const dsr_slice *slices = k == 0 ? NULL : sliced;
      dsn_model_cost cost;
      double start_s = dst_now_s();
      if (dsn_oracle_model(&model, slices, &preset, &cost, &err) != DS_OK)
        return fail(&err);
      double oracle_s = dst_now_s() - start_s;

      dsn_layer_addresses addresses[LARGE_LAYERS];
      uint64_t end = 0;
      dsr_schedule schedule;
      if (dsn_schedule_layout(&model, &preset, 0, addresses, &end, &err) != DS_OK ||
          dsn_schedule_build(&model, slices, &preset, addresses, &schedule, &err) != DS_OK)
        return fail(&err);
      dsr_exec_layer exec_layers[LARGE_LAYERS], total;
      start_s = dst_now_s();
      if (dsn_execute_schedule(&model, &schedule, &preset, NULL, exec_layers, LARGE_LAYERS,
                               &total, &err) != DS_OK)
        return fail(&err);
      double exec_s = dst_now_s() - start_s;
      int64_t exec_bursts = total.dram.read_bursts + total.dram.write_bursts;
      if (exec_bursts != cost.sliced.bursts || total.dram.row_misses != cost.sliced.row_misses) {
        fprintf(stderr, "bench_dram: executor %lld bursts %lld misses, oracle %lld %lld\n",
                (long long)exec_bursts, (long long)total.dram.row_misses,
                (long long)cost.sliced.bursts, (long long)cost.sliced.row_misses);
        return 1;
      }
      printf("%-18s %-9s %14lld %10lld %10lld %12.1f %12.1f %10.2fx\n", preset.name,
             k == 0 ? "unsliced" : "sliced", (long long)cost.sliced.bytes,
             (long long)cost.sliced.bursts, (long long)cost.sliced.row_misses, oracle_s * 1e3,
             exec_s * 1e3, exec_s / (oracle_s > 0 ? oracle_s : 1e-9));
      dsn_schedule_free(&schedule);
      dsn_model_cost_free(&cost);
    }
  }
  printf("(sliced: 8x8+2 in stage 1, 4x4+2 in stage 2, 2x2+2 in stage 3, unsliced stage 4)\n");

  /* The search prices every candidate of every layer once. */
  for (int32_t p = 0; p < dsn_preset_builtin_count(); p++) {
    dsn_preset preset;
    ds_error err;
    ds_error_clear(&err);
    if (dsn_preset_resolve(dsn_preset_builtin_name(p), &preset, &err) != DS_OK)
      return fail(&err);
    int64_t candidates = 0;
    double start_s = dst_now_s();
    for (int32_t l = 0; l < LARGE_LAYERS; l++) {
      dsn_candidates c;
      if (dsn_candidates_build(&layers[l], &preset, DSN_SEMANTICS_PHYSICAL, &c, &err) != DS_OK)
        return fail(&err);
      candidates += c.count;
      dsn_candidates_free(&c);
    }
    printf("%s: candidate lists of all %d layers (%lld fitting candidates) in %.1f ms\n",
           preset.name, LARGE_LAYERS, (long long)candidates, (dst_now_s() - start_s) * 1e3);
  }
  printf("\n");
  return 0;
}

static int bench_bundled(const char *model_path, const char *images_path) {
  ds_error err;
  ds_error_clear(&err);
  dsr_model model = {0};
  if (dsc_import_file(model_path, NULL, &model, NULL, &err) != DS_OK)
    return fail(&err);
  uint8_t *data = NULL;
  size_t size = 0;
  const dsr_tensor *input = &model.tensors[model.input];
  size_t image_floats = (size_t)dsr_tensor_elements(input);
  if (ds_file_read_all(images_path, 64u << 20, &data, &size, &err) != DS_OK)
    return fail(&err);
  if (size < image_floats * sizeof(float)) {
    fprintf(stderr, "bench_dram: %s has %zu bytes, less than one %zu-float image; pass a raw "
            "float32 file of whole images\n",
            images_path, size, image_floats);
    return 1;
  }
  float *image = malloc(image_floats * sizeof(float));
  memcpy(image, data, image_floats * sizeof(float));
  free(data);

  dsn_positions unsliced;
  double start_s = dst_now_s();
  if (dsn_positions_capture(&model, NULL, image, &unsliced, &err) != DS_OK)
    return fail(&err);
  double capture_s = dst_now_s() - start_s;
  printf("== %s, first image of %s ==\n", model.name, images_path);
  printf("position capture (one float invoke): %.1f ms\n", capture_s * 1e3);
  for (int32_t p = 0; p < dsn_preset_builtin_count(); p++) {
    dsn_preset preset;
    if (dsn_preset_resolve(dsn_preset_builtin_name(p), &preset, &err) != DS_OK)
      return fail(&err);
    dsn_model_measure m;
    start_s = dst_now_s();
    if (dsn_measure_model(&model, NULL, &preset, &unsliced, &unsliced, NULL, &m, &err) != DS_OK)
      return fail(&err);
    double measure_s = dst_now_s() - start_s;
    dsn_model_measure_print(&m, &preset, stdout);
    const dsn_measured *lb = &m.total[DSN_STRATEGY_LOWER_BOUND];
    printf("bus bytes against the lower bound:");
    for (int32_t s = 0; s < DSN_STRATEGY_COUNT; s++)
      printf(" %s %.2fx", dsn_strategy_name((dsn_strategy)s),
             (double)m.total[s].bursts / (double)lb->bursts);
    printf("\nmeasured in %.1f ms\n\n", measure_s * 1e3);
    dsn_model_measure_free(&m);
  }
  dsn_positions_free(&unsliced);
  free(image);
  ds_model_free(&model);
  return 0;
}

int main(int argc, char **argv) {
  const char *model_path = argc > 1 ? argv[1] : "models/dat_pp_nano.onnx";
  const char *images_path = argc > 2 ? argv[2] : "tests/fixtures/fashion_test3_32.f32";
  if (bench_large() != 0)
    return 1;
  return bench_bundled(model_path, images_path);
}
