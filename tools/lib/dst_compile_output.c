/* Outputs of `deformslice compile`: DMA schedule, manifest, reports and summary. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "dst_compile.h"
#include "dst_progress.h"
#include "nas/dsn_pareto.h"
#include "nas/dsn_schedule.h"

/* DRAM regions of the schedule start on 4 KiB boundaries (a common page and AXI boundary). */
#define DST_DRAM_ALIGN_BYTES 4096u

ds_status dst_compile_build_schedule(dst_compile_state *state, ds_error *err) {
  const int32_t layers = ds_model_deform_count(&state->model);
  dsr_slice *slices = calloc((size_t)(layers > 0 ? layers : 1), sizeof *slices);
  if (slices == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the slice list");
  for (int32_t i = 0; i < layers; i++)
    slices[i] = state->model.nodes[ds_model_deform_node(&state->model, i)].deform->slice;

  /* Every tensor and every node's weights get their own region, laid out one after another
   * from address 0: the FPGA loader relocates them by one base address. */
  dsn_layer_list list;
  dsn_memory_map map;
  memset(&map, 0, sizeof map);
  ds_status status = dsn_layers_from_model(&state->model, &state->config.preset, &list, err);
  if (status == DS_OK)
    status = dsn_memory_map_build(&state->model, &list, &state->config.preset, 0,
                                  DST_DRAM_ALIGN_BYTES, &map, err);
  if (status == DS_OK)
    status = dsn_schedule_build_model(&state->model, &list, slices, &state->config.preset,
                                      &map, &state->schedule, err);
  if (status == DS_OK)
    status = dsn_oracle_model(&state->model, slices, &state->config.preset, &state->chosen_cost,
                              err);
  dsn_memory_map_free(&map);
  dsn_layer_list_free(&list);
  free(slices);
  return status;
}

static const char *chosen_key(const dst_compile_state *state, char *text, size_t size) {
  const int32_t layers = state->front.layer_count;
  size_t used = 0;
  text[0] = '\0';
  for (int32_t i = 0; i < layers && used + 16 < size; i++) {
    const dsr_deform_attn *layer =
        state->model.nodes[ds_model_deform_node(&state->model, i)].deform;
    char one[32];
    dsn_slice_format(layer->slice, one, sizeof one);
    used += (size_t)snprintf(text + used, size - used, "%s%s", i > 0 ? "," : "", one);
  }
  return text;
}

/* Deformable layer i in node order, with its offset grid size. */
static const dsr_node *layer_node(const dst_compile_state *state, int32_t i, int32_t *samples) {
  const dsr_node *node = &state->model.nodes[ds_model_deform_node(&state->model, i)];
  int32_t hk = 0, wk = 0;
  dsn_offset_grid(node->deform, node->deform->height, node->deform->width, &hk, &wk);
  *samples = hk * wk;
  return node;
}

/* Validation and test top-1 of the baked configuration: a front point, or the unsliced
 * model when none was chosen. */
static void chosen_accuracy(const dst_compile_state *state, double *validation, double *test) {
  const dsn_search_result *front = &state->front;
  if (state->chosen >= 0) {
    *validation = front->points[state->chosen].accuracy;
    *test = front->points[state->chosen].test_accuracy;
  } else {
    *validation = front->reference_accuracy;
    *test = front->reference_test_accuracy;
  }
}

/* Returns why the unsliced model was baked, for the report and the summary. */
static const char *unsliced_reason(const dst_compile_state *state) {
  return state->front.reference_fits
             ? "unsliced: it fits the feature buffer and no front point within the allowed "
               "drop moves fewer bytes"
             : "unsliced: no front point is within the allowed drop, and the unsliced layers "
               "do not fit the feature buffer";
}

static double ratio(int64_t part, int64_t whole) {
  return whole > 0 ? (double)part / (double)whole : NAN;
}

/* Adds number, or null when it is not finite (cJSON would print an invalid token). */
static void add_number(cJSON *object, const char *name, double value) {
  if (isfinite(value))
    cJSON_AddNumberToObject(object, name, value);
  else
    cJSON_AddNullToObject(object, name);
}

/* Shared content of the manifest and report.json. */
static cJSON *describe(const dst_compile_state *state) {
  const dst_compile_config *c = &state->config;
  const dsn_search_result *front = &state->front;
  const dsn_model_cost *cost = &state->chosen_cost;
  const dsn_preset *preset = &c->preset;
  char key[2048];

  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "tool", "deformslice 0.1.0");
  cJSON_AddStringToObject(root, "model", state->model.name);
  cJSON_AddStringToObject(root, "source", c->model_path);
  cJSON_AddNumberToObject(root, "opset", state->import_report.opset);

  const dsr_tensor *input = &state->model.tensors[state->model.input];
  cJSON *shape = cJSON_AddArrayToObject(root, "input_shape");
  for (int32_t i = 0; i < input->rank; i++)
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(input->dims[i]));

  cJSON_AddStringToObject(root, "preset", preset->name);
  cJSON_AddNumberToObject(root, "feature_buffer_bytes", (double)preset->feature_buffer_bytes);

  cJSON *calibration = cJSON_AddObjectToObject(root, "calibration");
  dst_calibration_describe(&c->calibration, calibration);
  cJSON_AddNumberToObject(calibration, "images", state->calibration.count);
  cJSON_AddStringToObject(calibration, "split", "train");
  char source[4200];
  dst_data_describe(&c->data, source, sizeof source);
  cJSON_AddStringToObject(calibration, "data", source);
  if (c->data.preprocess_path != NULL)
    cJSON_AddStringToObject(calibration, "preprocess", c->data.preprocess_path);
  cJSON *precision = dst_precision_to_json(&state->precision, &state->model);
  if (precision != NULL)
    cJSON_AddItemToObject(root, "precision", precision);

  cJSON *accuracy = cJSON_AddObjectToObject(root, "accuracy");
  cJSON_AddNumberToObject(accuracy, "test_images", state->test.count);
  add_number(accuracy, "float_test_top1", state->float_top1);
  add_number(accuracy, "fixed_test_top1_unsliced", state->fixed_top1);
  cJSON_AddNumberToObject(accuracy, "validation_images", c->search_images);
  add_number(accuracy, "fixed_validation_top1_unsliced", front->reference_accuracy);
  double chosen_validation, chosen_test;
  chosen_accuracy(state, &chosen_validation, &chosen_test);
  add_number(accuracy, "fixed_validation_top1_sliced", chosen_validation);
  add_number(accuracy, "fixed_test_top1_sliced", chosen_test);
  add_number(accuracy, "validation_drop_points", front->reference_accuracy - chosen_validation);

  cJSON *slicing = cJSON_AddObjectToObject(root, "slicing");
  cJSON_AddStringToObject(slicing, "configuration", chosen_key(state, key, sizeof key));
  cJSON_AddBoolToObject(slicing, "unsliced", state->chosen < 0);
  add_number(slicing, "unsliced_bytes", (double)front->unsliced_bytes);
  cJSON_AddBoolToObject(slicing, "unsliced_fits", front->reference_fits);
  cJSON_AddNumberToObject(slicing, "max_drop_points", c->max_drop_points);
  cJSON_AddNumberToObject(slicing, "front_points", front->point_count);
  cJSON_AddBoolToObject(slicing, "exhaustive", front->exhaustive);
  cJSON_AddNumberToObject(slicing, "evaluations", front->evaluations);

  cJSON *dram = cJSON_AddObjectToObject(root, "dram");
  cJSON_AddNumberToObject(dram, "sliced_bytes", (double)dsn_traffic_bus_bytes(&cost->sliced, preset));
  cJSON_AddNumberToObject(dram, "gather_bytes", (double)dsn_traffic_bus_bytes(&cost->gather, preset));
  cJSON_AddNumberToObject(dram, "lower_bound_bytes",
                          (double)dsn_traffic_bus_bytes(&cost->lower_bound, preset));
  add_number(dram, "sliced_over_gather", ratio(dsn_traffic_bus_bytes(&cost->sliced, preset),
                                               dsn_traffic_bus_bytes(&cost->gather, preset)));
  add_number(dram, "sliced_over_lower_bound",
             ratio(dsn_traffic_bus_bytes(&cost->sliced, preset),
                   dsn_traffic_bus_bytes(&cost->lower_bound, preset)));
  cJSON_AddNumberToObject(dram, "sliced_bursts", (double)cost->sliced.bursts);
  cJSON_AddNumberToObject(dram, "gather_bursts", (double)cost->gather.bursts);
  cJSON_AddNumberToObject(dram, "lower_bound_bursts", (double)cost->lower_bound.bursts);
  add_number(dram, "sliced_time_us", cost->sliced.time_ns / 1000.0);
  add_number(dram, "gather_time_us", cost->gather.time_ns / 1000.0);

  cJSON *layers = cJSON_AddArrayToObject(root, "deformable_layers");
  for (int32_t i = 0; i < cost->layer_count; i++) {
    const dsn_layer_cost *lc = &cost->layers[i];
    int32_t samples;
    const dsr_node *node = layer_node(state, i, &samples);
    char slice_text[32];
    dsn_slice_format(lc->slice, slice_text, sizeof slice_text);
    cJSON *layer = cJSON_CreateObject();
    cJSON_AddStringToObject(layer, "name", node->name);
    cJSON_AddNumberToObject(layer, "height", node->deform->height);
    cJSON_AddNumberToObject(layer, "width", node->deform->width);
    cJSON_AddNumberToObject(layer, "channels", node->deform->channels);
    cJSON_AddNumberToObject(layer, "groups", node->deform->groups);
    cJSON_AddNumberToObject(layer, "samples", samples);
    cJSON_AddStringToObject(layer, "slice", slice_text);
    cJSON_AddNumberToObject(layer, "patches", lc->patch_count);
    cJSON_AddNumberToObject(layer, "buffer_bytes", (double)lc->buffer_bytes);
    cJSON_AddNumberToObject(layer, "sliced_bytes", (double)dsn_traffic_bus_bytes(&lc->sliced, preset));
    cJSON_AddNumberToObject(layer, "gather_bytes", (double)dsn_traffic_bus_bytes(&lc->gather, preset));
    cJSON_AddNumberToObject(layer, "lower_bound_bytes",
                            (double)dsn_traffic_bus_bytes(&lc->lower_bound, preset));
    cJSON_AddNumberToObject(layer, "sliced_bursts", (double)lc->sliced.bursts);
    cJSON_AddNumberToObject(layer, "gather_bursts", (double)lc->gather.bursts);
    cJSON_AddNumberToObject(layer, "lower_bound_bursts", (double)lc->lower_bound.bursts);
    cJSON_AddItemToArray(layers, layer);
  }

  cJSON *schedule = cJSON_AddObjectToObject(root, "dma_schedule");
  cJSON_AddNumberToObject(schedule, "steps", state->schedule.step_count);
  cJSON_AddNumberToObject(schedule, "descriptors", state->schedule.descriptor_count);
  cJSON_AddStringToObject(schedule, "dram_layout", "HWC, one element per channel, tensor and weight regions "
                                                   "4096-byte aligned from address 0");
  return root;
}

char *dst_compile_manifest(const dst_compile_state *state) {
  cJSON *root = describe(state);
  if (root == NULL)
    return NULL;
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  return text;
}

static void write_markdown(const dst_compile_state *state, FILE *out) {
  const dsn_search_result *front = &state->front;
  const dsn_model_cost *cost = &state->chosen_cost;
  const dsn_preset *preset = &state->config.preset;
  char key[2048];

  fprintf(out, "# deformslice compile report\n\n");
  fprintf(out, "- model: `%s` (opset %d), input %dx%d\n", state->config.model_path,
          state->import_report.opset, state->model.tensors[state->model.input].dims[2],
          state->model.tensors[state->model.input].dims[3]);
  fprintf(out, "- preset: %s, feature buffer %lld bytes\n", preset->name,
          (long long)preset->feature_buffer_bytes);
  fprintf(out, "- calibration: %s over %d training images\n", state->calibration_method,
          state->calibration.count);
  fprintf(out, "- ");
  dst_precision_print(&state->precision, out);
  fprintf(out, "- test top-1 (%d images): float %.2f%%, fixed point %.2f%% (%+.2f points)\n",
          state->test.count, state->float_top1, state->fixed_top1,
          state->fixed_top1 - state->float_top1);
  double chosen_validation, chosen_test;
  chosen_accuracy(state, &chosen_validation, &chosen_test);
  fprintf(out, "- chosen slicing: `%s`", chosen_key(state, key, sizeof key));
  if (state->chosen < 0)
    fprintf(out, " (%s)", unsliced_reason(state));
  fprintf(out, ", validation top-1 %.2f%% (unsliced %.2f%%, drop %.2f points), test top-1 %.2f%%\n",
          chosen_validation, front->reference_accuracy,
          front->reference_accuracy - chosen_validation, chosen_test);

  const int64_t sliced = dsn_traffic_bus_bytes(&cost->sliced, preset);
  const int64_t gather = dsn_traffic_bus_bytes(&cost->gather, preset);
  const int64_t lower = dsn_traffic_bus_bytes(&cost->lower_bound, preset);
  fprintf(out, "- deformable-layer DRAM traffic in bus bytes (bursts times %lld-byte bursts, "
               "what the bus moves; `deformslice cost` also gives payload bytes): %lld sliced, "
               "%.1f%% of gather (%lld), %.2fx the lower bound (%lld)\n\n",
          (long long)dsn_preset_burst_bytes(preset),
          (long long)sliced, 100.0 * ratio(sliced, gather), (long long)gather,
          ratio(sliced, lower), (long long)lower);

  fprintf(out, "DRAM bus bytes (bursts) per deformable layer; the buffer is the largest "
               "extended patch's on-chip need:\n\n");
  fprintf(out, "| layer | map | C | groups | samples | slice | patches | buffer bytes | sliced "
               "| gather | lower bound |\n");
  fprintf(out, "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int32_t i = 0; i < cost->layer_count; i++) {
    const dsn_layer_cost *lc = &cost->layers[i];
    int32_t samples;
    const dsr_node *node = layer_node(state, i, &samples);
    const dsr_deform_attn *d = node->deform;
    char slice_text[32];
    dsn_slice_format(lc->slice, slice_text, sizeof slice_text);
    fprintf(out,
            "| %s | %dx%d | %d | %d | %d | %s | %d | %lld | %lld (%lld) | %lld (%lld) | %lld "
            "(%lld) |\n",
            node->name, d->height, d->width, d->channels, d->groups, samples, slice_text,
            lc->patch_count, (long long)lc->buffer_bytes,
            (long long)dsn_traffic_bus_bytes(&lc->sliced, preset), (long long)lc->sliced.bursts,
            (long long)dsn_traffic_bus_bytes(&lc->gather, preset), (long long)lc->gather.bursts,
            (long long)dsn_traffic_bus_bytes(&lc->lower_bound, preset),
            (long long)lc->lower_bound.bursts);
  }

  fprintf(out, "\n## Pareto front\n\n```\n");
  dsn_front_print(front, out);
  fprintf(out, "```\n\nCompile time: %.1f s.\n", dst_now_s() - state->start_s);
}

ds_status dst_compile_write_reports(const dst_compile_state *state, ds_error *err) {
  char path[4096];
  char *text = NULL;
  size_t size = 0;

  FILE *memory = open_memstream(&text, &size);
  if (memory == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot buffer the report");
  write_markdown(state, memory);
  fclose(memory);
  snprintf(path, sizeof path, "%s/report.md", state->config.out_dir);
  ds_status status = ds_file_write_atomic(path, text, size, err);
  free(text);
  DS_TRY(status);

  cJSON *root = describe(state);
  char *json = root != NULL ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (json == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build report.json");
  snprintf(path, sizeof path, "%s/report.json", state->config.out_dir);
  status = ds_file_write_atomic(path, json, strlen(json), err);
  free(json);
  return status;
}

void dst_compile_print_summary(const dst_compile_state *state, FILE *out) {
  const dsn_model_cost *cost = &state->chosen_cost;
  const dsn_preset *preset = &state->config.preset;
  char key[2048];
  const int64_t sliced = dsn_traffic_bus_bytes(&cost->sliced, preset);
  const int64_t gather = dsn_traffic_bus_bytes(&cost->gather, preset);
  const int64_t lower = dsn_traffic_bus_bytes(&cost->lower_bound, preset);

  fprintf(out, "\nfloat test top-1 %.2f%%, fixed point %.2f%% (%d images)\n", state->float_top1,
          state->fixed_top1, state->test.count);
  dst_precision_print(&state->precision, out);
  double chosen_validation, chosen_test;
  chosen_accuracy(state, &chosen_validation, &chosen_test);
  fprintf(out, "chosen slicing %s", chosen_key(state, key, sizeof key));
  if (state->chosen < 0)
    fprintf(out, " (%s)", unsliced_reason(state));
  fprintf(out, ": validation drop %.2f points, test top-1 %.2f%%\n",
          state->front.reference_accuracy - chosen_validation, chosen_test);
  fprintf(out, "DRAM traffic of the deformable layers: %.1f%% of gather, %.2fx the lower "
               "bound, %.2fx the unsliced layers%s\n",
          100.0 * ratio(sliced, gather), ratio(sliced, lower),
          ratio(sliced, state->front.unsliced_bytes),
          state->front.reference_fits ? "" : " (which do not fit the buffer)");
  fprintf(out, "wrote %s/model.dslice, pareto.json, pareto.csv, report.md, report.json in "
               "%.1f s\n",
          state->config.out_dir, dst_now_s() - state->start_s);
}

void dst_compile_state_free(dst_compile_state *state) {
  if (state == NULL)
    return;
  ds_model_free(&state->model);
  dst_dataset_free(&state->calibration);
  dst_dataset_free(&state->validation);
  dst_dataset_free(&state->test);
  dsn_search_result_free(&state->front);
  dsn_schedule_free(&state->schedule);
  dsn_model_cost_free(&state->chosen_cost);
  dst_precision_record_free(&state->precision);
  free(state);
}
