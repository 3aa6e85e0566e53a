/*
 * Tests of the cost model over whole networks: the preset schema, dense-layer tiling and
 * schedules against the analytic oracle, the artifact's schedule of every layer, described
 * architectures and the `deformslice cost` command with its JSON and CSV outputs.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "formats/dsf_artifact.h"
#include "nas/dsn_arch.h"
#include "nas/dsn_cost.h"
#include "nas/dsn_dense.h"
#include "nas/dsn_layer.h"
#include "nas/dsn_measure.h"
#include "nas/dsn_offset_model.h"
#include "nas/dsn_pareto.h"
#include "nas/dsn_preset.h"
#include "nas/dsn_schedule.h"
#include "tools/lib/dst_args.h"
#include "tools/lib/dst_commands.h"
#include "tools/lib/dst_cost.h"

#define TINY_MODEL DS_SOURCE_DIR "/tests/fixtures/dat_pp_tiny.onnx"

static dsn_preset builtin(const char *name) {
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_resolve(name, &preset, &err), DS_OK, "%s", err.message);
  return preset;
}

/* A preset with buffers small enough that dense layers need row tiles and weight chunks. */
static dsn_preset small_preset(void) {
  static const char *text =
      "{\"name\": \"small\", \"clock_mhz\": 100,"
      " \"dram\": {\"bus_width_bits\": 32, \"burst_length\": 8, \"peak_bandwidth_gbps\": 4,"
      " \"row_bytes\": 1024, \"row_miss_latency_ns\": 30, \"latency_ns\": 100},"
      " \"feature_buffer_bytes\": 4096, \"weight_buffer_bytes\": 2048, \"feature_banks\": 4,"
      " \"sampling_lanes\": 2, \"mac_array\": {\"rows\": 4, \"cols\": 4},"
      " \"activation_bits\": 8, \"weight_bits\": 8, \"accumulator_bits\": 32}";
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_parse(text, strlen(text), "small.json", &preset, &err), DS_OK, "%s",
               err.message);
  return preset;
}

static void import_tiny(dsr_model *model) {
  dsc_report report;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(TINY_MODEL, NULL, model, &report, &err), DS_OK, "%s",
               err.message);
}

static void temp_path(char *path, size_t size, const char *name) {
  snprintf(path, size, "%s/cost-test-%ld-%s", DS_BINARY_DIR, (long)getpid(), name);
  remove(path);
}

/* ---- Preset schema ---------------------------------------------------------------------- */

Test(preset_schema, every_problem_listed_at_once) {
  const char *text =
      "{\"name\": \"Bad Name\", \"clock_mhz\": \"fast\","
      " \"device\": {\"part\": \"XC7Z020\", \"luts\": 53200, \"bram36_blocks\": 10,"
      " \"uram_blocks\": 0, \"dsp_slices\": 16},"
      " \"dram\": {\"bus_width_bits\": 48, \"burst_length\": 8, \"peak_bandwidth_gbps\": 2.1,"
      " \"row_bytes\": 2048, \"row_miss_latency_ns\": 28},"
      " \"feature_buffer_bytes\": 65537, \"weight_buffer_bytes\": 65536,"
      " \"feature_banks\": 8, \"sampling_lanes\": 4, \"mac_array\": {\"rows\": 8, \"cols\": 8},"
      " \"activation_bits\": 8, \"weight_bits\": 8, \"accumulator_bits\": 32,"
      " \"bram_mode\": 1}";
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_parse(text, strlen(text), "board.json", &preset, &err),
               DS_ERR_PRESET);
  const char *expected[] = {
      "board.json: bram_mode is not a preset field",
      "name is the string \"Bad Name\"",
      "clock_mhz is the string \"fast\"; expected a number 1..5000",
      "dram.bus_width_bits is 48; expected one of 8, 16",
      "dram.latency_ns is missing",
      "feature_buffer_bytes 65537 does not split into feature_banks 8 equal banks",
      "exceeds the 46080 bytes of block RAM of XC7Z020",
      "needs 64 DSP slices but XC7Z020 has 16",
  };
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
    cr_expect_not_null(strstr(err.message, expected[i]), "no '%s' in:\n%s", expected[i],
                       err.message);
}

Test(preset_schema, device_is_optional_but_complete) {
  const char *text =
      "{\"name\": \"x\", \"clock_mhz\": 100, \"device\": {\"part\": \"XC7Z020\"},"
      " \"dram\": {\"bus_width_bits\": 16, \"burst_length\": 8, \"peak_bandwidth_gbps\": 2.1,"
      " \"row_bytes\": 2048, \"row_miss_latency_ns\": 28, \"latency_ns\": 100},"
      " \"feature_buffer_bytes\": 65536, \"feature_banks\": 8, \"sampling_lanes\": 4,"
      " \"mac_array\": {\"rows\": 8, \"cols\": 8},"
      " \"activation_bits\": 8, \"weight_bits\": 8, \"accumulator_bits\": 32}";
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_parse(text, strlen(text), "x.json", &preset, &err), DS_ERR_PRESET);
  cr_expect_not_null(strstr(err.message, "device.dsp_slices is missing"), "%s", err.message);
  cr_expect_not_null(strstr(err.message, "device.bram36_blocks is missing"), "%s",
                     err.message);
}

/* Loads the schema document and the zcu102 preset, which has every field. */
static cJSON *load_json(const char *path) {
  uint8_t *data = NULL;
  size_t size = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(ds_file_read_all(path, 1 << 20, &data, &size, &err), DS_OK, "%s", err.message);
  cJSON *json = cJSON_ParseWithLength((const char *)data, size);
  free(data);
  cr_assert_not_null(json, "%s is not JSON", path);
  return json;
}

static int is_required(const cJSON *schema_object, const char *key) {
  const cJSON *item = NULL;
  cJSON_ArrayForEach(item, cJSON_GetObjectItem(schema_object, "required")) {
    if (strcmp(item->valuestring, key) == 0)
      return 1;
  }
  return 0;
}

/* Removing a key the schema requires must fail; removing an optional one must not. */
Test(preset_schema, schema_document_matches_validator) {
  cJSON *schema = load_json(DS_SOURCE_DIR "/docs/preset.schema.json");
  cJSON *preset_json = load_json(DS_SOURCE_DIR "/presets/zcu102.json");
  const cJSON *properties = cJSON_GetObjectItem(schema, "properties");
  cr_assert_not_null(properties);
  int checked = 0;
  const cJSON *top = NULL;
  cJSON_ArrayForEach(top, properties) {
    cr_assert_not_null(cJSON_GetObjectItem(preset_json, top->string),
                       "zcu102.json lacks schema key %s", top->string);
    const cJSON *nested = cJSON_GetObjectItem(top, "properties");
    const cJSON *keys[32];
    const cJSON *parents[32];
    int count = 0;
    if (nested == NULL) {
      keys[count] = top;
      parents[count++] = NULL;
    } else {
      const cJSON *inner = NULL;
      cJSON_ArrayForEach(inner, nested) {
        keys[count] = inner;
        parents[count++] = top;
      }
    }
    for (int i = 0; i < count; i++) {
      cJSON *copy = cJSON_Duplicate(preset_json, 1);
      int required;
      if (parents[i] == NULL) {
        cJSON_DeleteItemFromObject(copy, keys[i]->string);
        required = is_required(schema, keys[i]->string);
      } else {
        cJSON_DeleteItemFromObject(cJSON_GetObjectItem(copy, parents[i]->string),
                                   keys[i]->string);
        required = is_required(parents[i], keys[i]->string);
      }
      char *text = cJSON_PrintUnformatted(copy);
      dsn_preset preset;
      ds_error err;
      ds_error_clear(&err);
      ds_status status = dsn_preset_parse(text, strlen(text), "copy.json", &preset, &err);
      cr_expect_eq(status == DS_OK, !required, "removing %s%s%s: status %d, %s",
                   parents[i] != NULL ? parents[i]->string : "", parents[i] != NULL ? "." : "",
                   keys[i]->string, status, err.message);
      free(text);
      cJSON_Delete(copy);
      checked++;
    }
  }
  cr_expect_eq(checked, 22, "every field of the schema, nested ones included");
  cJSON_Delete(schema);
  cJSON_Delete(preset_json);
}

Test(preset_schema, builtins_match_vendor_figures) {
  const struct {
    const char *name;
    const char *part;
    int32_t luts, bram, uram, dsp, bus_bits;
    double transfers_per_us; /* DDR data rate in MT/s */
  } boards[] = {
      {"zcu102", "XCZU9EG", 274080, 912, 0, 2520, 64, 2400},
      {"kv260", "XCK26", 117120, 144, 64, 1248, 64, 2400},
      {"pynq-z2", "XC7Z020", 53200, 140, 0, 220, 16, 1050},
  };
  for (size_t i = 0; i < sizeof boards / sizeof boards[0]; i++) {
    dsn_preset p = builtin(boards[i].name);
    cr_expect_str_eq(p.device.part, boards[i].part);
    cr_expect_eq(p.device.luts, boards[i].luts, "%s", boards[i].name);
    cr_expect_eq(p.device.bram36_blocks, boards[i].bram, "%s", boards[i].name);
    cr_expect_eq(p.device.uram_blocks, boards[i].uram, "%s", boards[i].name);
    cr_expect_eq(p.device.dsp_slices, boards[i].dsp, "%s", boards[i].name);
    cr_expect_eq(p.dram.bus_width_bits, boards[i].bus_bits, "%s", boards[i].name);
    /* Peak bandwidth is bus bytes times the transfer rate. */
    double peak = boards[i].bus_bits / 8.0 * boards[i].transfers_per_us / 1000.0;
    cr_expect_float_eq(p.dram.peak_bandwidth_gbps, peak, 1e-9, "%s", boards[i].name);
    cr_expect_leq(p.feature_buffer_bytes + p.weight_buffer_bytes, dsn_preset_onchip_bytes(&p));
  }
}

/* ---- Dense tiling against the oracle ------------------------------------------------------ */

/* Sums every tile of every group, without the oracle's shortcut over identical groups. */
static void sum_all_tiles(const dsn_layer *layer, const dsn_preset *preset,
                          const dsn_dense_plan *plan, dsn_traffic *traffic, int64_t *cycles) {
  memset(traffic, 0, sizeof *traffic);
  *cycles = 0;
  for (int64_t g = 0; g < layer->group_count; g++) {
    for (int64_t chunk = 0; chunk < plan->weight_chunks; chunk++) {
      for (int64_t tile = 0; tile < plan->tiles; tile++) {
        dsn_tile t;
        dsn_dense_tile_transfers(layer, preset, plan, g, chunk, tile, &t);
        for (int32_t i = 0; i < t.transfer_count; i++)
          dsn_transfer_cost(t.transfers[i].row_bytes, t.transfers[i].row_count,
                            t.transfers[i].stride_bytes, preset, traffic);
        *cycles += t.compute_cycles;
      }
    }
  }
}

Test(dense, tiles_sum_to_oracle_on_described_models) {
  dsn_preset presets[] = {builtin("zcu102"), builtin("pynq-z2"), small_preset()};
  const char *archs[] = {"dat-t", "dat-t++"};
  for (size_t a = 0; a < 2; a++) {
    for (size_t p = 0; p < 3; p++) {
      dsn_layer_list list;
      ds_error err;
      ds_error_clear(&err);
      cr_assert_eq(dsn_arch_layers(dsn_arch_find(archs[a]), 64, 64, &presets[p], &list, &err),
                   DS_OK, "%s", err.message);
      for (int32_t i = 0; i < list.count; i++) {
        const dsn_layer *layer = &list.layers[i];
        if (layer->kind == DSN_LAYER_DEFORM)
          continue;
        dsn_dense_cost cost;
        cr_assert_eq(dsn_dense_cost_layer(layer, &presets[p], &cost, &err), DS_OK, "%s",
                     err.message);
        dsn_traffic all;
        int64_t cycles;
        sum_all_tiles(layer, &presets[p], &cost.plan, &all, &cycles);
        cr_expect_eq(all.bytes, cost.traffic.bytes, "%s %s %s", archs[a], presets[p].name,
                     layer->name);
        cr_expect_eq(all.bursts, cost.traffic.bursts, "%s %s", archs[a], layer->name);
        cr_expect_eq(all.row_misses, cost.traffic.row_misses, "%s", layer->name);
        cr_expect_eq(cycles, cost.compute_cycles, "%s", layer->name);
        cr_expect_geq(cost.traffic.bytes, cost.lower_bound.bytes, "%s", layer->name);
      }
      dsn_layer_list_free(&list);
    }
  }
}

Test(dense, large_models_fit_both_boards) {
  const char *boards[] = {"zcu102", "pynq-z2"};
  for (int b = 0; b < 2; b++) {
    dsn_preset preset = builtin(boards[b]);
    dsn_layer_list list;
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(dsn_arch_layers(dsn_arch_find("dat-t++"), 800, 1333, &preset, &list, &err),
                 DS_OK, "%s", err.message);
    for (int32_t i = 0; i < list.count; i++) {
      if (list.layers[i].kind == DSN_LAYER_DEFORM)
        continue;
      dsn_dense_plan plan;
      cr_assert_eq(dsn_dense_plan_make(&list.layers[i], &preset, &plan, &err), DS_OK, "%s",
                   err.message);
      cr_expect(plan.fits, "%s on %s needs %lld feature and %lld weight bytes",
                list.layers[i].name, boards[b], (long long)plan.buffer_bytes,
                (long long)plan.weight_buffer_bytes);
    }
    dsn_layer_list_free(&list);
  }
}

Test(dense, small_buffers_force_tiles_and_chunks) {
  dsn_preset small = small_preset();
  dsn_layer_list list;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_arch_layers(dsn_arch_find("dat-t++"), 64, 64, &small, &list, &err), DS_OK,
               "%s", err.message);
  int tiled = 0, chunked = 0, halo = 0, banded = 0, fitting = 0, dense = 0;
  for (int32_t i = 0; i < list.count; i++) {
    const dsn_layer *layer = &list.layers[i];
    if (layer->kind == DSN_LAYER_DEFORM)
      continue;
    dsn_dense_cost cost;
    cr_assert_eq(dsn_dense_cost_layer(layer, &small, &cost, &err), DS_OK, "%s", err.message);
    tiled += cost.plan.tiles > 1;
    chunked += cost.plan.weight_chunks > 1;
    banded += cost.plan.col_tiles > 1;
    fitting += cost.plan.fits;
    dense++;
    if (cost.plan.fits) {
      cr_expect_leq(cost.plan.buffer_bytes, small.feature_buffer_bytes, "%s", layer->name);
      cr_expect_leq(cost.plan.weight_buffer_bytes, small.weight_buffer_bytes, "%s",
                    layer->name);
    }
    /* A 3x3 conv tiled by rows reads the halo rows again. */
    if (layer->kind == DSN_LAYER_CONV && layer->kernel > layer->stride && cost.plan.tiles > 1 &&
        cost.plan.weight_chunks == 1) {
      halo++;
      cr_expect_gt(cost.traffic.bytes, cost.lower_bound.bytes, "%s", layer->name);
    }
  }
  cr_expect_gt(tiled, 10);
  cr_expect_gt(chunked, 5);
  cr_expect_gt(halo, 0);
  cr_expect_gt(banded, 0, "no layer needed bands of its rows");
  /* A 7x7 neighbourhood of 3C channels cannot fit 4 KiB even for one pixel. */
  cr_expect_gt(fitting, dense / 2, "%d of %d dense layers fit 4 KiB", fitting, dense);
  dsn_layer_list_free(&list);
}

/* Builds the whole-model schedule of model under preset with each layer's own slices. */
static void schedule_model(const dsr_model *model, const dsn_preset *preset,
                           dsn_layer_list *list, dsr_schedule *schedule) {
  dsn_memory_map map;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_layers_from_model(model, preset, list, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsn_memory_map_build(model, list, preset, 0, 4096, &map, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(dsn_schedule_build_model(model, list, NULL, preset, &map, schedule, &err), DS_OK,
               "%s", err.message);
  dsn_memory_map_free(&map);
}

Test(dense, schedule_sums_equal_oracle_for_every_layer) {
  dsr_model model;
  import_tiny(&model);
  dsn_preset presets[] = {builtin("zcu102"), builtin("pynq-z2"), small_preset()};
  for (size_t p = 0; p < 3; p++) {
    dsn_layer_list list;
    dsr_schedule schedule;
    schedule_model(&model, &presets[p], &list, &schedule);
    int dense = 0;
    for (int32_t i = 0; i < list.count; i++) {
      const dsn_layer *layer = &list.layers[i];
      dsn_traffic from_schedule;
      int64_t cycles = 0;
      dsn_schedule_node_traffic(&schedule, &presets[p], layer->node, &from_schedule, &cycles);
      ds_error err;
      ds_error_clear(&err);
      if (layer->kind == DSN_LAYER_DEFORM) {
        dsn_layer_cost cost;
        cr_assert_eq(dsn_oracle_layer(&layer->deform, layer->deform.slice, &presets[p], &cost,
                                      &err),
                     DS_OK, "%s", err.message);
        cr_expect_eq(from_schedule.bytes, cost.sliced.bytes, "%s", layer->name);
        cr_expect_eq(from_schedule.bursts, cost.sliced.bursts, "%s", layer->name);
        continue;
      }
      dense++;
      dsn_dense_cost cost;
      cr_assert_eq(dsn_dense_cost_layer(layer, &presets[p], &cost, &err), DS_OK, "%s",
                   err.message);
      cr_expect_eq(from_schedule.bytes, cost.traffic.bytes, "%s on %s", layer->name,
                   presets[p].name);
      cr_expect_eq(from_schedule.bursts, cost.traffic.bursts, "%s", layer->name);
      cr_expect_eq(from_schedule.row_misses, cost.traffic.row_misses, "%s", layer->name);
      cr_expect_eq(cycles, cost.compute_cycles, "%s", layer->name);
    }
    cr_expect_gt(dense, 20);
    dsn_schedule_free(&schedule);
    dsn_layer_list_free(&list);
  }
  ds_model_free(&model);
}

Test(dense, schedule_uses_every_buffer_and_both_slots) {
  dsr_model model;
  import_tiny(&model);
  dsn_preset small = small_preset();
  dsn_layer_list list;
  dsr_schedule schedule;
  schedule_model(&model, &small, &list, &schedule);
  int buffers[DSR_BUFFER_COUNT] = {0};
  int slots[2] = {0, 0};
  int banks = 0;
  int32_t previous_node = -1;
  for (int32_t s = 0; s < schedule.step_count; s++) {
    const dsr_dma_step *step = &schedule.steps[s];
    cr_assert_geq(step->node, previous_node, "steps out of node order at %d", s);
    previous_node = step->node;
    int deform = model.nodes[step->node].op == DSR_OP_DEFORM_ATTN;
    cr_expect_eq(step->layer >= 0, deform, "step %d", s);
    for (int32_t d = 0; d < step->load_count + step->store_count; d++) {
      const dsr_dma_descriptor *x = &schedule.descriptors[step->first_descriptor + d];
      buffers[x->buffer]++;
      slots[x->slot]++;
      banks |= 1 << (x->bank & 7);
    }
  }
  for (int b = 0; b < DSR_BUFFER_COUNT; b++)
    cr_expect_gt(buffers[b], 0, "buffer %d unused", b);
  cr_expect_gt(slots[1], 0);
  cr_expect_gt(__builtin_popcount((unsigned)banks), 1);
  dsn_schedule_free(&schedule);
  dsn_layer_list_free(&list);
  ds_model_free(&model);
}

/* ---- Artifact round trip ------------------------------------------------------------------ */

static void expect_same_schedule(const dsr_schedule *a, const dsr_schedule *b) {
  cr_assert_eq(a->step_count, b->step_count);
  cr_assert_eq(a->descriptor_count, b->descriptor_count);
  for (int32_t i = 0; i < a->descriptor_count; i++) {
    const dsr_dma_descriptor *x = &a->descriptors[i], *y = &b->descriptors[i];
    cr_expect_eq(x->dram_address, y->dram_address, "descriptor %d", i);
    cr_expect_eq(x->row_bytes, y->row_bytes, "descriptor %d", i);
    cr_expect_eq(x->row_count, y->row_count, "descriptor %d", i);
    cr_expect_eq(x->stride_bytes, y->stride_bytes, "descriptor %d", i);
    cr_expect_eq(x->chip_offset_bytes, y->chip_offset_bytes, "descriptor %d", i);
    cr_expect_eq(x->direction, y->direction, "descriptor %d", i);
    cr_expect_eq(x->buffer, y->buffer, "descriptor %d", i);
    cr_expect_eq(x->slot, y->slot, "descriptor %d", i);
    cr_expect_eq(x->bank, y->bank, "descriptor %d", i);
  }
  for (int32_t i = 0; i < a->step_count; i++) {
    cr_expect_eq(a->steps[i].node, b->steps[i].node);
    cr_expect_eq(a->steps[i].layer, b->steps[i].layer);
    cr_expect_eq(a->steps[i].patch, b->steps[i].patch);
    cr_expect_eq(a->steps[i].first_descriptor, b->steps[i].first_descriptor);
    cr_expect_eq(a->steps[i].load_count, b->steps[i].load_count);
    cr_expect_eq(a->steps[i].store_count, b->steps[i].store_count);
    cr_expect_eq(a->steps[i].compute_cycles, b->steps[i].compute_cycles);
  }
}

Test(artifact_schedule, every_layer_round_trips_deterministically) {
  dsr_model model;
  import_tiny(&model);
  dsn_preset small = small_preset();
  dsn_layer_list list;
  dsr_schedule schedule;
  schedule_model(&model, &small, &list, &schedule);
  ds_error err;
  ds_error_clear(&err);
  uint8_t *first = NULL, *second = NULL;
  size_t first_size = 0, second_size = 0;
  cr_assert_eq(dsf_write_buffer(&model, &schedule, NULL, NULL, &first, &first_size, &err), DS_OK,
               "%s", err.message);
  cr_assert_eq(dsf_write_buffer(&model, &schedule, NULL, NULL, &second, &second_size, &err),
               DS_OK, "%s", err.message);
  cr_assert_eq(first_size, second_size);
  cr_expect_eq(memcmp(first, second, first_size), 0, "two writes differ");

  dsr_model back;
  dsr_schedule read;
  cr_assert_eq(dsf_read_buffer(first, first_size, "tiny", &back, &read, NULL, &err), DS_OK, "%s",
               err.message);
  expect_same_schedule(&schedule, &read);
  dsf_schedule_free(&read);
  ds_model_free(&back);
  free(first);
  free(second);
  dsn_schedule_free(&schedule);
  dsn_layer_list_free(&list);
  ds_model_free(&model);
}

/* Writes model with schedule and returns the writer's status (it reads the bytes back). */
static ds_status write_with(const dsr_model *model, const dsr_schedule *schedule, ds_error *err) {
  uint8_t *data = NULL;
  size_t size = 0;
  ds_error_clear(err);
  ds_status status = dsf_write_buffer(model, schedule, NULL, NULL, &data, &size, err);
  free(data);
  return status;
}

Test(artifact_schedule, reader_rejects_inconsistent_steps) {
  dsr_model model;
  import_tiny(&model);
  dsn_preset zcu = builtin("zcu102");
  dsn_layer_list list;
  dsr_schedule schedule;
  schedule_model(&model, &zcu, &list, &schedule);
  ds_error err;
  int32_t dense = -1, deform = -1;
  for (int32_t s = 0; s < schedule.step_count; s++) {
    if (schedule.steps[s].layer < 0 && dense < 0)
      dense = s;
    if (schedule.steps[s].layer >= 0 && deform < 0)
      deform = s;
  }
  cr_assert_geq(dense, 0);
  cr_assert_geq(deform, 0);

  dsr_dma_step saved = schedule.steps[dense];
  schedule.steps[dense].layer = 0;
  cr_expect_eq(write_with(&model, &schedule, &err), DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "names deformable layer 0; expected -1"), "%s",
                     err.message);
  schedule.steps[dense] = saved;

  saved = schedule.steps[deform];
  schedule.steps[deform].layer = -1;
  cr_expect_eq(write_with(&model, &schedule, &err), DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "expected the node's deformable layer index"), "%s",
                     err.message);
  schedule.steps[deform] = saved;

  saved = schedule.steps[1];
  schedule.steps[1].node = model.node_count - 1;
  cr_expect_eq(write_with(&model, &schedule, &err), DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "steps must follow node order"), "%s", err.message);
  schedule.steps[1] = saved;

  schedule.steps[0].compute_cycles = -1;
  cr_expect_eq(write_with(&model, &schedule, &err), DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "compute cycles"), "%s", err.message);
  schedule.steps[0].compute_cycles = 0;

  schedule.descriptors[0].buffer = DSR_BUFFER_COUNT;
  cr_expect_eq(write_with(&model, &schedule, &err), DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "buffer 4"), "%s", err.message);
  schedule.descriptors[0].buffer = 0;

  cr_expect_eq(write_with(&model, &schedule, &err), DS_OK, "%s", err.message);
  dsn_schedule_free(&schedule);
  dsn_layer_list_free(&list);
  ds_model_free(&model);
}

/* ---- Described architectures -------------------------------------------------------------- */

Test(arch, parameter_counts_match_published) {
  dsn_preset zcu = builtin("zcu102");
  for (int32_t i = 0; i < dsn_arch_count(); i++) {
    const dsn_arch *arch = dsn_arch_at(i);
    dsn_layer_list list;
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(dsn_arch_layers(arch, 224, 224, &zcu, &list, &err), DS_OK, "%s", err.message);
    int64_t params = 0;
    for (int32_t l = 0; l < list.count; l++)
      params += list.layers[l].weight_count;
    double relative = (double)params / (double)arch->published_params - 1.0;
    cr_expect_lt(relative < 0 ? -relative : relative, 0.001, "%s: %lld parameters, published %lld",
                 arch->name, (long long)params, (long long)arch->published_params);
    dsn_layer_list_free(&list);
  }
}

Test(arch, names_and_sizes) {
  cr_expect_not_null(dsn_arch_find("DAT_PP_T"));
  cr_expect_eq(dsn_arch_find("dat_t_pp"), dsn_arch_find("dat-t++"));
  cr_expect_null(dsn_arch_find("dat-x"));
  dsn_preset zcu = builtin("zcu102");
  dsn_layer_list list;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dsn_arch_layers(dsn_arch_find("dat-t"), 16, 16, &zcu, &list, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "at least 32"), "%s", err.message);
  ds_error_clear(&err);
  cr_assert_eq(dsn_arch_layers(dsn_arch_find("dat-t++"), 800, 1333, &zcu, &list, &err), DS_OK,
               "%s", err.message);
  cr_expect_eq(dsn_layer_list_deform_count(&list), 14);
  int found = 0;
  for (int32_t i = 0; i < list.count; i++) {
    if (list.layers[i].kind == DSN_LAYER_DEFORM && list.layers[i].stage == 0) {
      cr_expect_eq(list.layers[i].deform.height, 200);
      cr_expect_eq(list.layers[i].deform.width, 334);
      found = 1;
    }
  }
  cr_expect(found);
  dsn_layer_list_free(&list);
}

/* ---- The cost command --------------------------------------------------------------------- */

static int run_cost(const char **args, int count) {
  char *argv[16];
  for (int i = 0; i < count; i++)
    argv[i] = (char *)args[i];
  return dst_cmd_cost(count, argv);
}

Test(cost_command, json_and_csv_agree_with_table_totals) {
  char json_path[512], csv_path[512];
  temp_path(json_path, sizeof json_path, "cost.json");
  temp_path(csv_path, sizeof csv_path, "cost.csv");
  const char *args[] = {"dat-t++", "--preset", "pynq-z2", "--input-shape", "224x224",
                        "--slices", "auto+1", "--json", json_path, "--csv", csv_path, "--quiet"};
  cr_assert_eq(run_cost(args, 12), 0);

  cJSON *json = load_json(json_path);
  const cJSON *layers = cJSON_GetObjectItem(json, "layers");
  int count = cJSON_GetArraySize(layers);
  cr_expect_eq(count, (int)cJSON_GetObjectItem(json, "layer_count")->valuedouble);
  cr_expect_eq((int)cJSON_GetObjectItem(json, "deformable_layer_count")->valuedouble, 14);
  double bytes[DSN_STRATEGY_COUNT] = {0};
  int cache_null = 0;
  const cJSON *layer = NULL;
  cJSON_ArrayForEach(layer, layers) {
    const cJSON *strategies = cJSON_GetObjectItem(layer, "strategies");
    for (int k = 0; k < DSN_STRATEGY_COUNT; k++) {
      const cJSON *s = cJSON_GetObjectItem(strategies, dsn_cost_strategy_name(k));
      if (cJSON_IsNull(s)) {
        cache_null += k == DSN_STRATEGY_CACHE;
        continue;
      }
      bytes[k] += cJSON_GetObjectItem(s, "dram_bytes")->valuedouble;
    }
  }
  cr_expect_eq(cache_null, 14, "only deformable layers lack a cache figure");
  const cJSON *totals = cJSON_GetObjectItem(cJSON_GetObjectItem(json, "totals"), "model");
  for (int k = 0; k < DSN_STRATEGY_COUNT; k++) {
    if (k == DSN_STRATEGY_CACHE)
      continue;
    const cJSON *s = cJSON_GetObjectItem(totals, dsn_cost_strategy_name(k));
    cr_expect_float_eq(cJSON_GetObjectItem(s, "dram_bytes")->valuedouble, bytes[k], 0.5,
                       "%s", dsn_cost_strategy_name(k));
  }
  const cJSON *ratio = cJSON_GetObjectItem(
      cJSON_GetObjectItem(cJSON_GetObjectItem(json, "ratios"), "deformable"), "sliced_vs_gather");
  double r = cJSON_GetObjectItem(ratio, "bytes")->valuedouble;
  cr_expect(r > 0.0 && r < 1.0, "sliced relative to gather: %f", r);
  cr_expect_str_eq(cJSON_GetObjectItem(json, "sampling_positions")->valuestring, "none");
  cJSON_Delete(json);

  uint8_t *csv = NULL;
  size_t csv_size = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(ds_file_read_all(csv_path, 1 << 24, &csv, &csv_size, &err), DS_OK, "%s",
               err.message);
  int lines = 0;
  for (size_t i = 0; i < csv_size; i++)
    lines += csv[i] == '\n';
  cr_expect_eq(lines, 1 + count * DSN_STRATEGY_COUNT + 2 * DSN_STRATEGY_COUNT);
  cr_expect_eq(strncmp((const char *)csv, "index,name,kind,map,slice,strategy", 34), 0);
  free(csv);
  remove(json_path);
  remove(csv_path);
}

Test(cost_command, table_lists_layers_and_ratios) {
  dsn_preset zcu = builtin("zcu102");
  dst_cost_input input;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_cost_load(TINY_MODEL, NULL, &zcu, &input, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dst_cost_choose_slices(&input, "2x2+1", &zcu, &err), DS_OK, "%s", err.message);
  dsn_cost_report report;
  cr_assert_eq(dsn_cost_report_build(&input.layers, input.slices, &zcu, &report, &err), DS_OK,
               "%s", err.message);
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  dsn_cost_report_print(&report, out);
  fclose(out);
  const char *expected[] = {"deform", "2x2+1", "conv", "totals, whole model",
                            "totals, deformable layers only", "sliced relative to",
                            "lower_bound", "gather", "whole_map", "bandwidth"};
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
    cr_expect_not_null(strstr(text, expected[i]), "no '%s' in:\n%s", expected[i], text);

  /* Slicing with overlap reads more than the lower bound, never less. */
  const dsn_strategy_cost *t = report.deform.strategies;
  cr_expect_gt(t[DSN_STRATEGY_SLICED].traffic.bytes, t[DSN_STRATEGY_LOWER_BOUND].traffic.bytes);
  cr_expect_gt(t[DSN_STRATEGY_GATHER].traffic.bytes, t[DSN_STRATEGY_LOWER_BOUND].traffic.bytes);
  free(text);
  dsn_cost_report_free(&report);
  dst_cost_input_free(&input);
}

Test(cost_command, measured_figures_replace_missing_cache) {
  dsn_preset zcu = builtin("zcu102");
  dst_cost_input input;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_cost_load("dat-t", NULL, &zcu, &input, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dst_cost_choose_slices(&input, NULL, &zcu, &err), DS_OK, "%s", err.message);
  dsn_cost_report report;
  cr_assert_eq(dsn_cost_report_build(&input.layers, input.slices, &zcu, &report, &err), DS_OK,
               "%s", err.message);
  cr_expect_eq(report.model.strategies[DSN_STRATEGY_CACHE].available, 0);
  for (int32_t i = 0; i < report.row_count; i++) {
    if (report.rows[i].kind != DSN_LAYER_DEFORM)
      continue;
    dsn_measured m;
    memset(&m, 0, sizeof m);
    m.bytes = 1000;
    m.bursts = 20;
    m.row_misses = 3;
    m.bank_stall_cycles = 7;
    m.dram_cycles = 300;
    m.compute_cycles = 100;
    m.cycles = 300;
    m.fits = 1;
    dsn_cost_report_set_measured(&report, i, DSN_STRATEGY_CACHE, &m);
  }
  const dsn_strategy_cost *cache = &report.deform.strategies[DSN_STRATEGY_CACHE];
  cr_expect_eq(cache->available, 1);
  cr_expect_eq(cache->measured, 1);
  cr_expect_eq(cache->traffic.bytes, 1000 * report.deform_count);
  cr_expect_eq(cache->stall_cycles, 7 * report.deform_count);
  cr_expect_eq(cache->bound, DSN_BOUND_BANDWIDTH);
  /* 300 cycles at 300 MHz: one microsecond per layer. */
  cr_expect_float_eq(cache->time_ns, 1000.0 * report.deform_count, 1e-6);
  dsn_cost_report_free(&report);
  dst_cost_input_free(&input);
}

Test(cost_command, bad_input_gets_clear_errors) {
  const char *unknown_preset[] = {"dat-t", "--preset", "zcu999"};
  cr_expect_eq(run_cost(unknown_preset, 3), 1);
  const char *bad_slices[] = {"dat-t", "--slices", "2x2+x"};
  cr_expect_eq(run_cost(bad_slices, 3), 2);
  const char *wrong_count[] = {"dat-t", "--slices", "1x1+0,2x2+1"};
  cr_expect_eq(run_cost(wrong_count, 3), 2);
  const char *missing[] = {"/nonexistent/model.onnx"};
  cr_expect_eq(run_cost(missing, 1), 1);

  dsn_preset zcu = builtin("zcu102");
  dst_cost_input input;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dst_cost_load(DS_SOURCE_DIR "/tests/fixtures/ops/layer_normalization.onnx", NULL,
                             &zcu, &input, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "has no deformable attention layer"), "%s",
                     err.message);

  ds_error_clear(&err);
  cr_assert_eq(dst_cost_load("dat-t", "224x", &zcu, &input, &err), DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "'224x' ends with a separator"), "%s", err.message);

  ds_error_clear(&err);
  cr_assert_eq(dst_cost_load("dat-t", NULL, &zcu, &input, &err), DS_OK, "%s", err.message);
  cr_expect_eq(dst_cost_choose_slices(&input, "2x2+1,3x", &zcu, &err), DS_ERR_INVALID_ARGUMENT);
  cr_expect_not_null(strstr(err.message, "lists 2 configurations but the model has 4"), "%s",
                     err.message);
  ds_error_clear(&err);
  cr_expect_eq(dst_cost_choose_slices(&input, "9x9+0", &zcu, &err), DS_OK);
  dsn_cost_report report;
  cr_expect_eq(dsn_cost_report_build(&input.layers, input.slices, &zcu, &report, &err),
               DS_ERR_SLICE_CONFIG);
  cr_expect_not_null(strstr(err.message, "does not fit a 7x7 map"), "%s", err.message);
  dst_cost_input_free(&input);
}

/* ---- Offset model and simulation ---------------------------------------------------------- */

static dsr_deform_attn pp_layer(int32_t side, int32_t stride) {
  dsr_deform_attn d;
  memset(&d, 0, sizeof d);
  d.channels = 8;
  d.height = side;
  d.width = side;
  d.groups = 2;
  d.heads = 2;
  d.head_channels = 4;
  d.offset_kernel = 3;
  d.offset_stride = stride;
  d.offset_pad = 1;
  d.convention = DSR_DEFORM_DAT_PP;
  d.slice = (dsr_slice){1, 1, 0, DSR_SLICE_PHYSICAL};
  return d;
}

Test(offset_model, fit_recovers_known_offsets) {
  dsr_deform_attn d = pp_layer(9, 1); /* a 9x9 offset grid */
  float raw[2 * 2 * 81];
  for (int32_t g = 0; g < 2; g++) {
    for (int32_t n = 0; n < 81; n++) {
      raw[g * 162 + n] = 0.25f;       /* dy: a quarter of the half extent, 1 pixel */
      raw[g * 162 + 81 + n] = -0.5f;  /* dx: 2 pixels */
    }
  }
  dsn_offset_stats stats;
  memset(&stats, 0, sizeof stats);
  dsn_offset_stats_add(&stats, &d, 0, 0, raw, 2 * 2 * 81);
  dsn_offset_stats_add(&stats, &d, 0, 0, raw, 5); /* a wrong count is ignored */
  dsn_offset_model model;
  dsn_offset_stats_fit(&stats, "known", 1, &model);
  cr_assert_eq(model.stage_count, 1);
  const dsn_offset_stage *s = &model.stages[0];
  cr_expect_eq(s->sample_count, 162);
  cr_expect_eq(s->layer_count, 1);
  cr_expect_float_eq(s->mean_y, 0.25, 1e-6);
  cr_expect_float_eq(s->mean_x, -0.5, 1e-6);
  cr_expect_float_eq(s->sd_y, 0.0, 1e-6);
  cr_expect_float_eq(s->mean_magnitude_pixels, sqrt(1.0 + 4.0), 1e-5);
  /* The DAT++ reference points sit at pixels i + 0.5 of the 9x9 map. Moving 2 pixels left
   * leaves the map in columns 0 and 1, moving 1 pixel down in rows 7 and 8: 1 - (7/9)^2. */
  cr_expect_float_eq(s->clamped_fraction, 32.0 / 81.0, 1e-9);
}

Test(offset_model, positions_follow_the_distribution) {
  dsn_offset_model model;
  memset(&model, 0, sizeof model);
  model.stage_count = 1;
  model.stages[0].sd_y = 0.02;
  model.stages[0].sd_x = 0.04;
  dsr_deform_attn d = pp_layer(201, 1);
  int32_t hk = 0, wk = 0;
  int64_t n = dsn_offset_grid(&d, 201, 201, &hk, &wk) * d.groups;
  float *y = malloc((size_t)n * sizeof *y), *x = malloc((size_t)n * sizeof *x);
  float *y2 = malloc((size_t)n * sizeof *y2), *x2 = malloc((size_t)n * sizeof *x2);
  dsn_offset_model_positions(&model, &d, 0, 42, y, x);
  dsn_offset_model_positions(&model, &d, 0, 42, y2, x2);
  cr_expect_eq(memcmp(y, y2, (size_t)n * sizeof *y), 0, "the same seed gives other positions");
  double sum = 0, square = 0;
  int64_t count = 0;
  for (int32_t g = 0; g < d.groups; g++) {
    for (int32_t i = 20; i < hk - 20; i++) {
      for (int32_t j = 20; j < wk - 20; j++) {
        int64_t k = ((int64_t)g * hk + i) * wk + j;
        cr_assert(y[k] >= 0 && y[k] <= 200 && x[k] >= 0 && x[k] <= 200);
        double reference = ((i + 0.5) / (hk - 1) * 2.0 - 1.0 + 1.0) * 100.0;
        double dy = y[k] - reference;
        sum += dy;
        square += dy * dy;
        count++;
      }
    }
  }
  double mean = sum / count, sd = sqrt(square / count - mean * mean);
  cr_expect_lt(fabs(mean), 0.2, "mean dy %f pixels", mean);
  cr_expect_float_eq(sd, 0.02 * 100.0, 0.15, "sd dy %f pixels", sd);
  free(y);
  free(x);
  free(y2);
  free(x2);
}

Test(offset_model, bundled_fit_loads_and_bad_files_fail) {
  dsn_offset_model model;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_offset_model_load(DS_SOURCE_DIR "/models/offset_model.json", &model, &err),
               DS_OK, "%s", err.message);
  cr_expect_eq(model.stage_count, 4);
  cr_expect_not_null(strstr(model.source, "Fashion-MNIST"));
  for (int32_t k = 0; k < model.stage_count; k++)
    cr_expect_gt(model.stages[k].sample_count, 0);

  char path[512];
  temp_path(path, sizeof path, "offsets.json");
  const char *bad = "{\"stages\": [{\"mean_y\": 0, \"mean_x\": 0, \"sd_y\": -1, \"sd_x\": 0}]}";
  ds_file_write_atomic(path, bad, strlen(bad), &err);
  ds_error_clear(&err);
  cr_expect_eq(dsn_offset_model_load(path, &model, &err), DS_ERR_DATA);
  cr_expect_not_null(strstr(err.message, "stage 0 has no valid sd_y"), "%s", err.message);
  remove(path);
}

Test(cost_command, simulate_labels_synthetic_offsets_and_writes_traces) {
  char json_path[512], trace_path[512];
  temp_path(json_path, sizeof json_path, "sim.json");
  temp_path(trace_path, sizeof trace_path, "sim.trace");
  const char *args[] = {"dat-t++", "--input-shape", "64x64", "--slices", "2x2+1",
                        "--simulate", "--trace-ramulator", trace_path, "--trace-strategy",
                        "gather", "--json", json_path, "--quiet"};
  cr_assert_eq(run_cost(args, 13), 0);
  cJSON *json = load_json(json_path);
  const char *label = cJSON_GetObjectItem(json, "sampling_positions")->valuestring;
  cr_expect_not_null(strstr(label, "synthetic offsets (offset model)"), "%s", label);
  const cJSON *cache = cJSON_GetObjectItem(
      cJSON_GetObjectItem(cJSON_GetObjectItem(json, "totals"), "deformable"), "cache");
  cr_assert(cJSON_IsObject(cache), "the cache strategy has no measured figure");
  cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(cache, "measured")));
  cr_expect_gt(cJSON_GetObjectItem(cache, "dram_bytes")->valuedouble, 0);
  cJSON_Delete(json);

  int64_t reads = 0, writes = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_trace_count(trace_path, DSN_TRACE_RAMULATOR2, &reads, &writes, &err), DS_OK,
               "%s", err.message);
  cr_expect_gt(reads, 0);
  remove(json_path);
  remove(trace_path);

  const char *without[] = {"dat-t", "--trace-ramulator", trace_path};
  cr_expect_eq(run_cost(without, 3), 2);
  const char *strategy[] = {"dat-t", "--simulate", "--trace-strategy", "fastest"};
  cr_expect_eq(run_cost(strategy, 4), 2);
}

Test(cost_command, simulate_executes_dense_layers_of_a_model) {
  char json_path[512];
  temp_path(json_path, sizeof json_path, "tiny.json");
  const char *args[] = {TINY_MODEL, "--simulate", "--json", json_path, "--quiet"};
  cr_assert_eq(run_cost(args, 5), 0);
  cJSON *json = load_json(json_path);
  int dense = 0;
  const cJSON *layer = NULL;
  cJSON_ArrayForEach(layer, cJSON_GetObjectItem(json, "layers")) {
    const cJSON *strategies = cJSON_GetObjectItem(layer, "strategies");
    const cJSON *sliced = cJSON_GetObjectItem(strategies, "sliced");
    const cJSON *bound = cJSON_GetObjectItem(strategies, "lower_bound");
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(sliced, "measured")), "%s not measured",
              cJSON_GetObjectItem(layer, "name")->valuestring);
    if (strcmp(cJSON_GetObjectItem(layer, "kind")->valuestring, "deform") == 0)
      continue;
    dense++;
    /* The tiler's lower bound stays analytic; the executed schedule moves at least that. */
    cr_expect(cJSON_IsFalse(cJSON_GetObjectItem(bound, "measured")));
    cr_expect_geq(cJSON_GetObjectItem(sliced, "dram_bytes")->valuedouble,
                  cJSON_GetObjectItem(bound, "dram_bytes")->valuedouble);
  }
  cr_expect_gt(dense, 20);
  cJSON_Delete(json);
  remove(json_path);
}

Test(cost_command, artifact_schedule_is_checked_against_report) {
  dsr_model model;
  import_tiny(&model);
  dsn_preset zcu = builtin("zcu102");
  dsn_layer_list list;
  dsr_schedule schedule;
  schedule_model(&model, &zcu, &list, &schedule);
  char path[512];
  temp_path(path, sizeof path, "tiny.dslice");
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsf_write_file(path, &model, &schedule, "{\"preset\": \"zcu102\"}", NULL, &err),
               DS_OK, "%s", err.message);
  dsn_schedule_free(&schedule);
  dsn_layer_list_free(&list);
  ds_model_free(&model);

  const char *cases[][2] = {{"own", "match this report in all"},
                            {"2x2+1", "differ in"}};
  for (int i = 0; i < 2; i++) {
    dst_cost_input input;
    cr_assert_eq(dst_cost_load(path, NULL, &zcu, &input, &err), DS_OK, "%s", err.message);
    cr_assert_gt(input.stored.step_count, 0);
    cr_assert_eq(dst_cost_choose_slices(&input, cases[i][0], &zcu, &err), DS_OK, "%s",
                 err.message);
    dsn_cost_report report;
    cr_assert_eq(dsn_cost_report_build(&input.layers, input.slices, &zcu, &report, &err), DS_OK,
                 "%s", err.message);
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    dst_cost_check_stored(&input, &report, out);
    fclose(out);
    cr_expect_not_null(strstr(text, cases[i][1]), "slices %s: %s", cases[i][0], text);
    free(text);
    dsn_cost_report_free(&report);
    dst_cost_input_free(&input);
  }
  remove(path);
}

/* ---- Properties over described models ----------------------------------------------------- */

/* No strategy moves fewer bytes or bursts than the compulsory lower bound, in any layer of
 * several described models at sizes with odd sides (strided convs that skip the last column),
 * on every built-in preset. */
Test(cost_property, no_strategy_below_the_lower_bound) {
  const char *models[] = {"dat-t", "dat-s", "dat-b", "dat-t++"};
  const char *shapes[] = {"225x225", "333x333", "200x333"};
  const char *presets[] = {"zcu102", "kv260", "pynq-z2"};
  int checked = 0;
  for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
    dsn_preset preset = builtin(presets[p]);
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
      for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        dst_cost_input input;
        ds_error err;
        ds_error_clear(&err);
        cr_assert_eq(dst_cost_load(models[m], shapes[s], &preset, &input, &err), DS_OK, "%s",
                     err.message);
        cr_assert_eq(dst_cost_choose_slices(&input, "auto", &preset, &err), DS_OK, "%s",
                     err.message);
        dsn_cost_report report;
        cr_assert_eq(dsn_cost_report_build(&input.layers, input.slices, &preset, &report, &err),
                     DS_OK, "%s", err.message);
        for (int32_t i = 0; i < report.row_count; i++) {
          const dsn_strategy_cost *k = report.rows[i].strategies;
          const dsn_traffic *bound = &k[DSN_STRATEGY_LOWER_BOUND].traffic;
          for (int32_t s2 = 0; s2 < DSN_STRATEGY_COUNT; s2++) {
            if (!k[s2].available)
              continue;
            cr_expect_geq(k[s2].traffic.bytes, bound->bytes, "%s %s %s layer %d (%s): %s",
                          models[m], shapes[s], presets[p], i, report.rows[i].name,
                          dsn_cost_strategy_name(s2));
            cr_expect_geq(k[s2].traffic.bursts, bound->bursts, "%s %s %s layer %d (%s): %s",
                          models[m], shapes[s], presets[p], i, report.rows[i].name,
                          dsn_cost_strategy_name(s2));
            checked++;
          }
        }
        dsn_cost_report_free(&report);
        dst_cost_input_free(&input);
      }
    }
  }
  cr_expect_gt(checked, 1000);
}

/* ---- Problems a first user met ------------------------------------------------------------ */

/* Runs the cost command with stdout and stderr sent to files; returns its exit code and the
 * stderr text (caller frees). */
static int run_cost_capture(const char **args, int count, char **errors) {
  char err_path[512];
  temp_path(err_path, sizeof err_path, "stderr.txt");
  fflush(stdout);
  fflush(stderr);
  FILE *saved_out = stdout, *saved_err = stderr;
  FILE *out = fopen("/dev/null", "w");
  FILE *errf = fopen(err_path, "w+");
  cr_assert(out != NULL && errf != NULL);
  stdout = out;
  stderr = errf;
  int code = run_cost(args, count);
  fflush(errf);
  stdout = saved_out;
  stderr = saved_err;
  fclose(out);
  fclose(errf);
  uint8_t *data = NULL;
  size_t size = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(ds_file_read_all(err_path, 1 << 20, &data, &size, &err), DS_OK, "%s",
               err.message);
  char *text = malloc(size + 1);
  cr_assert_not_null(text);
  memcpy(text, data, size);
  text[size] = '\0';
  free(data);
  remove(err_path);
  *errors = text;
  return code;
}

Test(cost_fixes, whole_map_trace_holds_its_requests) {
  char trace_path[512];
  temp_path(trace_path, sizeof trace_path, "whole.trace");
  const char *args[] = {"dat-t++", "--input-shape", "64x64", "--slices", "2x2+1", "--simulate",
                        "--trace-ramulator", trace_path, "--trace-strategy", "whole_map",
                        "--quiet"};
  char *errors = NULL;
  cr_assert_eq(run_cost_capture(args, 11, &errors), 0, "%s", errors);
  free(errors);
  int64_t reads = 0, writes = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_trace_count(trace_path, DSN_TRACE_RAMULATOR2, &reads, &writes, &err), DS_OK,
               "%s", err.message);
  cr_expect_gt(reads, 0);
  cr_expect_gt(writes, 0);
  remove(trace_path);
}

Test(cost_fixes, slice_numbers_are_range_checked) {
  dsr_slice slice;
  cr_expect_eq(dsn_slice_parse("4294967297x1+0", &slice), -1);
  cr_expect_eq(dsn_slice_parse("99999999999x1+0", &slice), -1);
  cr_expect_eq(dsn_slice_parse("1x1+4294967296", &slice), -1);
  cr_expect_eq(dsn_slice_parse("2x2+-1", &slice), -1);
  cr_expect_eq(dsn_slice_parse(" 2x2+1", &slice), -1);
  cr_expect_eq(dsn_slice_parse("+2x2+1", &slice), -1);
  cr_expect_eq(dsn_slice_parse("1000001x1+0", &slice), -1);
  cr_assert_eq(dsn_slice_parse("1000000x3+2c", &slice), 0);
  cr_expect_eq(slice.rows, 1000000);
  cr_expect_eq(slice.cols, 3);
  cr_expect_eq(slice.overlap, 2);
  cr_expect_eq(slice.semantics, DSR_SLICE_CROP);

  const char *args[] = {"dat-t", "--slices", "4294967297x1+0"};
  char *errors = NULL;
  cr_expect_eq(run_cost_capture(args, 3, &errors), 2);
  cr_expect_not_null(strstr(errors, "'4294967297x1+0'"), "%s", errors);
  cr_expect_not_null(strstr(errors, "1 to 1000000"), "%s", errors);
  free(errors);
}

Test(cost_fixes, own_slices_need_an_artifact) {
  const char *models[] = {"dat-t", TINY_MODEL};
  for (int i = 0; i < 2; i++) {
    const char *args[] = {models[i], "--slices", "own"};
    char *errors = NULL;
    cr_expect_eq(run_cost_capture(args, 3, &errors), 2, "%s", models[i]);
    cr_expect_not_null(strstr(errors, "--slices own takes the slices stored in an artifact"),
                       "%s", errors);
    free(errors);
  }
}

Test(cost_fixes, auto_overlap_help_and_choice_agree) {
  /* The help says the unsliced map stays a candidate of auto+O ... */
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  FILE *saved = stdout;
  stdout = out;
  const char *help[] = {"cost", "--help"};
  int code = run_cost(help, 2);
  stdout = saved;
  fclose(out);
  cr_expect_eq(code, 0);
  cr_expect_not_null(strstr(text, "unsliced 1x1+0"), "%s", text);
  free(text);
  /* ... and every layer gets either that or an overlap of at least O. */
  dsn_preset zcu = builtin("zcu102");
  dst_cost_input input;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_cost_load("dat-t++", "224x224", &zcu, &input, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(dst_cost_choose_slices(&input, "auto+2", &zcu, &err), DS_OK, "%s", err.message);
  int unsliced = 0;
  for (int32_t i = 0; i < input.deform_count; i++) {
    dsr_slice s = input.slices[i];
    int whole = s.rows == 1 && s.cols == 1;
    unsliced += whole;
    cr_expect(whole || s.overlap >= 2, "layer %d: %dx%d+%d", i, s.rows, s.cols, s.overlap);
  }
  cr_expect_gt(unsliced, 0, "no layer fits unsliced, so the case is not covered");
  dst_cost_input_free(&input);
}

Test(cost_fixes, input_f32_needs_weights) {
  const char *args[] = {"dat-t", "--simulate", "--input-f32", "/nonexistent.f32", "--quiet"};
  char *errors = NULL;
  cr_expect_eq(run_cost_capture(args, 5, &errors), 2);
  cr_expect_not_null(strstr(errors, "a described architecture has no weights"), "%s", errors);
  free(errors);

  char path[512];
  temp_path(path, sizeof path, "short.f32");
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  fwrite("abcd", 1, 4, f);
  fclose(f);
  const char *wrong[] = {DS_SOURCE_DIR "/tests/fixtures/dat_mini_64.onnx", "--simulate",
                         "--input-f32", path, "--quiet"};
  cr_expect_neq(run_cost_capture(wrong, 5, &errors), 0);
  cr_expect_not_null(strstr(errors, "has 4 bytes"), "%s", errors);
  cr_expect_not_null(strstr(errors, "(1x3x64x64) needs 12288 float32 values, 49152 bytes"),
                     "%s", errors);
  cr_expect_not_null(strstr(errors, "raw little-endian float32"), "%s", errors);
  free(errors);
  /* Too large gets the same advice. */
  f = fopen(path, "wb");
  cr_assert_not_null(f);
  static const uint8_t zeros[60000];
  fwrite(zeros, 1, sizeof zeros, f);
  fclose(f);
  cr_expect_neq(run_cost_capture(wrong, 5, &errors), 0);
  cr_expect_not_null(strstr(errors, "has 60000 bytes"), "%s", errors);
  cr_expect_not_null(strstr(errors, "49152 bytes"), "%s", errors);
  free(errors);
  remove(path);
}

Test(cost_fixes, csv_names_the_source_of_positions) {
  const char *cases[][2] = {{NULL, "none"}, {"--simulate", "synthetic"}};
  for (int i = 0; i < 2; i++) {
    char csv_path[512];
    temp_path(csv_path, sizeof csv_path, "positions.csv");
    const char *args[6] = {"dat-t++", "--input-shape", "64x64", "--csv", csv_path, "--quiet"};
    const char *sim[7] = {"dat-t++", "--input-shape", "64x64", "--csv", csv_path, "--quiet",
                          "--simulate"};
    char *errors = NULL;
    cr_assert_eq(run_cost_capture(i == 0 ? args : sim, i == 0 ? 6 : 7, &errors), 0, "%s",
                 errors);
    free(errors);
    uint8_t *csv = NULL;
    size_t size = 0;
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(ds_file_read_all(csv_path, 1 << 24, &csv, &size, &err), DS_OK, "%s",
                 err.message);
    char *text = malloc(size + 1);
    memcpy(text, csv, size);
    text[size] = '\0';
    free(csv);
    cr_expect_not_null(strstr(text, ",bound,sampling_positions\n"), "header");
    int deform = 0, dense = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
      const char *last = strrchr(line, ',') + 1;
      if (strstr(line, ",deform,") != NULL) {
        cr_expect_str_eq(last, cases[i][1], "%s", line);
        deform++;
      } else if (strncmp(line, "index,", 6) != 0 && strncmp(line, "total", 5) != 0 &&
                 strncmp(line, "deformable_total", 16) != 0) {
        cr_expect_str_eq(last, "", "%s", line);
        dense++;
      }
    }
    cr_expect_gt(deform, 0);
    cr_expect_gt(dense, 0);
    free(text);
    remove(csv_path);
  }
}

Test(cost_fixes, every_converter_op_is_priced) {
  const char *fixtures[] = {"pad_constant", "pad_axes_op18", "concat_many", "roll", "expand",
                            "where_mask", "einsum_general", "slice_negative", "matmul_add",
                            "gelu_softmax_op20", "layer_normalization"};
  dsn_preset zcu = builtin("zcu102");
  int ops_seen[DSR_OP_COUNT] = {0};
  for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
    char path[512];
    snprintf(path, sizeof path, DS_SOURCE_DIR "/tests/fixtures/ops/%s.onnx", fixtures[i]);
    dsr_model model;
    dsc_report report;
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(dsc_import_file(path, NULL, &model, &report, &err), DS_OK, "%s: %s",
                 fixtures[i], err.message);
    for (int32_t n = 0; n < model.node_count; n++)
      ops_seen[model.nodes[n].op]++;
    dsn_layer_list list;
    cr_assert_eq(dsn_layers_from_model(&model, &zcu, &list, &err), DS_OK, "%s: %s",
                 fixtures[i], err.message);
    for (int32_t l = 0; l < list.count; l++) {
      dsn_dense_cost cost;
      cr_expect_eq(dsn_dense_cost_layer(&list.layers[l], &zcu, &cost, &err), DS_OK, "%s: %s",
                   fixtures[i], err.message);
      cr_expect_geq(cost.traffic.bytes, cost.lower_bound.bytes, "%s layer %d", fixtures[i], l);
    }
    dsn_layer_list_free(&list);

    /* An op past the list gets a message with the next step. */
    if (i == 0) {
      model.nodes[0].op = DSR_OP_COUNT;
      cr_expect_eq(dsn_layers_from_model(&model, &zcu, &list, &err), DS_ERR_INVALID_ARGUMENT);
      cr_expect_not_null(strstr(err.message, "convert the model again"), "%s", err.message);
      model.nodes[0].op = DSR_OP_PAD;
    }
    ds_model_free(&model);
  }
  cr_expect_gt(ops_seen[DSR_OP_PAD], 0);
  cr_expect_gt(ops_seen[DSR_OP_CONCAT], 0);

  /* A windowed model whose map needs padding prices and simulates end to end. */
  const char *args[] = {DS_SOURCE_DIR "/tests/fixtures/dat_mini_64_dynamic.onnx",
                        "--input-shape", "1x3x72x88", "--simulate", "--quiet"};
  char *errors = NULL;
  cr_expect_eq(run_cost_capture(args, 5, &errors), 0, "%s", errors);
  free(errors);
}

Test(cost_fixes, shapes_take_commas_or_x_everywhere) {
  const char *texts[] = {"1,3,72,88", "1x3x72x88", "1X3x72,88"};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    int32_t dims[4] = {0}, rank = 0;
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(dst_args_shape("input-shape", texts[i], dims, &rank, &err), DS_OK, "%s",
                 err.message);
    cr_expect_eq(rank, 4);
    cr_expect(dims[0] == 1 && dims[1] == 3 && dims[2] == 72 && dims[3] == 88, "%s", texts[i]);
  }
  const char *bad[] = {"1x3x", "x3", "1;3", "1x-3", "1x3x4x5x6", "1x 3"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int32_t dims[4] = {0}, rank = 0;
    ds_error err;
    ds_error_clear(&err);
    cr_expect_eq(dst_args_shape("input-shape", bad[i], dims, &rank, &err),
                 DS_ERR_INVALID_ARGUMENT, "%s", bad[i]);
    cr_expect_not_null(strstr(err.message, bad[i]), "%s", err.message);
  }
  /* The cost command reads the comma form through the same parser. */
  const char *args[] = {DS_SOURCE_DIR "/tests/fixtures/dat_mini_64_dynamic.onnx",
                        "--input-shape", "1,3,72,88", "--quiet"};
  char *errors = NULL;
  cr_expect_eq(run_cost_capture(args, 4, &errors), 0, "%s", errors);
  free(errors);
}

Test(cost_fixes, messages_use_the_names_users_type) {
  /* A preset file is named by the path given, and a repeated key is refused. */
  const char *text =
      "{\"name\": \"dup\", \"clock_mhz\": 100, \"clock_mhz\": 200,"
      " \"dram\": {\"bus_width_bits\": 16, \"burst_length\": 8, \"burst_length\": 4,"
      " \"peak_bandwidth_gbps\": 2.1, \"row_bytes\": 2048, \"row_miss_latency_ns\": 28,"
      " \"latency_ns\": 100},"
      " \"feature_buffer_bytes\": 65536, \"feature_banks\": 8, \"sampling_lanes\": 4,"
      " \"mac_array\": {\"rows\": 8, \"cols\": 8},"
      " \"activation_bits\": 8, \"weight_bits\": 8, \"accumulator_bits\": 32}";
  char path[512];
  temp_path(path, sizeof path, "dup.json");
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_resolve(path, &preset, &err), DS_ERR_PRESET);
  char expected[600];
  snprintf(expected, sizeof expected, "%s: clock_mhz appears more than once", path);
  cr_expect_not_null(strstr(err.message, expected), "%s", err.message);
  cr_expect_not_null(strstr(err.message, "dram.burst_length appears more than once"), "%s",
                     err.message);
  remove(path);

  /* Slice errors name the semantics as written on the command line. */
  dsn_preset zcu = builtin("zcu102");
  dst_cost_input input;
  ds_error_clear(&err);
  cr_assert_eq(dst_cost_load("dat-t", NULL, &zcu, &input, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dst_cost_choose_slices(&input, "9x9+0c", &zcu, &err), DS_OK, "%s", err.message);
  dsn_cost_report report;
  cr_expect_eq(dsn_cost_report_build(&input.layers, input.slices, &zcu, &report, &err),
               DS_ERR_SLICE_CONFIG);
  cr_expect_not_null(strstr(err.message, "slice 9x9+0c (crop semantics)"), "%s", err.message);
  cr_expect_null(strstr(err.message, "semantics 0"), "%s", err.message);
  dst_cost_input_free(&input);

  /* The lower bound needs no buffer, so the totals print n/a rather than 0. */
  cr_assert_eq(dst_cost_load("dat-t", NULL, &zcu, &input, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dst_cost_choose_slices(&input, "auto", &zcu, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsn_cost_report_build(&input.layers, input.slices, &zcu, &report, &err), DS_OK,
               "%s", err.message);
  char *out_text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&out_text, &size);
  dsn_cost_report_print_summary(&report, out);
  fclose(out);
  const char *line = strstr(out_text, "\nlower_bound ");
  cr_assert_not_null(line, "%s", out_text);
  const char *end = strchr(line + 1, '\n');
  char bound_line[256];
  snprintf(bound_line, sizeof bound_line, "%.*s", (int)(end - line - 1), line + 1);
  cr_expect_not_null(strstr(bound_line, " n/a "), "%s", bound_line);
  free(out_text);
  dsn_cost_report_free(&report);
  dst_cost_input_free(&input);
}

Test(cost_fixes, payload_and_bus_bytes_are_labelled_apart) {
  char json_path[512];
  temp_path(json_path, sizeof json_path, "bus.json");
  const char *args[] = {"dat-t", "--json", json_path, "--quiet"};
  char *errors = NULL;
  cr_assert_eq(run_cost_capture(args, 4, &errors), 0, "%s", errors);
  free(errors);
  cJSON *json = load_json(json_path);
  double burst = cJSON_GetObjectItem(cJSON_GetObjectItem(json, "preset"), "burst_bytes")->valuedouble;
  int differ = 0;
  const cJSON *layer = NULL;
  cJSON_ArrayForEach(layer, cJSON_GetObjectItem(json, "layers")) {
    const cJSON *sliced = cJSON_GetObjectItem(cJSON_GetObjectItem(layer, "strategies"), "sliced");
    double payload = cJSON_GetObjectItem(sliced, "dram_bytes")->valuedouble;
    double bus = cJSON_GetObjectItem(sliced, "bus_bytes")->valuedouble;
    cr_expect_float_eq(bus, cJSON_GetObjectItem(sliced, "bursts")->valuedouble * burst, 0.5);
    cr_expect_geq(bus, payload);
    differ += bus != payload;
  }
  cr_expect_gt(differ, 0, "no layer shows the two apart");
  cJSON_Delete(json);
  remove(json_path);

  /* The text outputs name which is which. */
  dsn_preset zcu = builtin("zcu102");
  dst_cost_input input;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_cost_load("dat-t", NULL, &zcu, &input, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dst_cost_choose_slices(&input, "auto", &zcu, &err), DS_OK, "%s", err.message);
  dsn_cost_report report;
  cr_assert_eq(dsn_cost_report_build(&input.layers, input.slices, &zcu, &report, &err), DS_OK,
               "%s", err.message);
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  dsn_cost_report_print(&report, out);
  dsn_search_result front;
  memset(&front, 0, sizeof front);
  dsn_front_print(&front, out);
  fclose(out);
  const char *expected[] = {"payload bytes", "bus bytes", "Bytes are payload bytes",
                            "DRAM bus bytes   /gather", "DRAM 0 bus bytes"};
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
    cr_expect_not_null(strstr(text, expected[i]), "no '%s' in:\n%s", expected[i], text);
  free(text);
  dsn_cost_report_free(&report);
  dst_cost_input_free(&input);
}

/* Compute cycles of a deformable layer come from one formula with and without --simulate;
 * the simulation only adds the bank-conflict stalls it finds, and says how many. */
Test(cost_fixes, simulate_keeps_the_analytic_compute_cycles) {
  char plain_path[512], sim_path[512];
  temp_path(plain_path, sizeof plain_path, "plain.json");
  temp_path(sim_path, sizeof sim_path, "sim.json");
  const char *plain[] = {"dat-t++", "--input-shape", "96x160", "--slices", "2x2+1", "--json",
                         plain_path, "--quiet"};
  const char *sim[] = {"dat-t++", "--input-shape", "96x160", "--slices", "2x2+1", "--json",
                       sim_path, "--quiet", "--simulate"};
  char *errors = NULL;
  cr_assert_eq(run_cost_capture(plain, 8, &errors), 0, "%s", errors);
  free(errors);
  cr_assert_eq(run_cost_capture(sim, 9, &errors), 0, "%s", errors);
  free(errors);
  cJSON *a = load_json(plain_path);
  cJSON *b = load_json(sim_path);
  const cJSON *la = cJSON_GetObjectItem(a, "layers"), *lb = cJSON_GetObjectItem(b, "layers");
  int checked = 0, stalled = 0;
  for (int i = 0; i < cJSON_GetArraySize(la); i++) {
    const cJSON *ra = cJSON_GetArrayItem(la, i), *rb = cJSON_GetArrayItem(lb, i);
    if (strcmp(cJSON_GetObjectItem(ra, "kind")->valuestring, "deform") != 0)
      continue;
    for (int k = 0; k < DSN_STRATEGY_COUNT; k++) {
      if (k == DSN_STRATEGY_CACHE)
        continue;
      const char *name = dsn_cost_strategy_name(k);
      const cJSON *sa = cJSON_GetObjectItem(cJSON_GetObjectItem(ra, "strategies"), name);
      const cJSON *sb = cJSON_GetObjectItem(cJSON_GetObjectItem(rb, "strategies"), name);
      double analytic = cJSON_GetObjectItem(sa, "compute_cycles")->valuedouble;
      double measured = cJSON_GetObjectItem(sb, "compute_cycles")->valuedouble;
      double stalls = cJSON_GetObjectItem(sb, "stall_cycles")->valuedouble;
      cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(sb, "measured")));
      cr_expect_float_eq(measured - stalls, analytic, 0.5, "layer %d %s: %.0f - %.0f vs %.0f",
                         i, name, measured, stalls, analytic);
      stalled += stalls > 0;
      checked++;
    }
  }
  cr_expect_gt(checked, 10);
  cr_expect_gt(stalled, 0, "no stalls: the case does not show the labelled difference");
  cJSON_Delete(a);
  cJSON_Delete(b);
  remove(plain_path);
  remove(sim_path);
}

/* A sliced figure with whole_map's bytes but another time comes with the reason. */
Test(cost_fixes, same_bytes_other_time_is_explained) {
  dsn_preset zcu = builtin("zcu102");
  dsn_cost_report report;
  memset(&report, 0, sizeof report);
  report.preset = zcu;
  snprintf(report.offsets, sizeof report.offsets, "none");
  dsn_strategy_cost *s = report.model.strategies;
  for (int k = 0; k < DSN_STRATEGY_COUNT; k++) {
    s[k].available = 1;
    s[k].fits = 1;
    s[k].traffic.bytes = 1000;
    s[k].traffic.bursts = 16;
    s[k].compute_cycles = 300;
    s[k].time_ns = 1000.0;
  }
  s[DSN_STRATEGY_SLICED].compute_cycles = 600;
  s[DSN_STRATEGY_SLICED].time_ns = 2000.0;
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  dsn_cost_report_print_summary(&report, out);
  fclose(out);
  cr_expect_not_null(strstr(text, "note: sliced moves the bytes of whole_map but takes 2.000 us"),
                     "%s", text);
  cr_expect_not_null(strstr(text, "halo is recomputed"), "%s", text);
  free(text);

  s[DSN_STRATEGY_SLICED].measured = 1;
  out = open_memstream(&text, &size);
  dsn_cost_report_print_summary(&report, out);
  fclose(out);
  cr_expect_not_null(strstr(text, "assumes a perfect overlap"), "%s", text);
  free(text);

  s[DSN_STRATEGY_SLICED] = s[DSN_STRATEGY_WHOLE_MAP];
  out = open_memstream(&text, &size);
  dsn_cost_report_print_summary(&report, out);
  fclose(out);
  cr_expect_null(strstr(text, "note:"), "%s", text);
  free(text);
}
