#include "dst_cost_simulate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "nas/dsn_measure.h"
#include "nas/dsn_offset_model.h"
#include "nas/dsn_oracle_walk.h"
#include "nas/dsn_schedule.h"
#include "runtime/dsr_exec.h"
#include "runtime/dsr_slice.h"
#include "tools/lib/dst_commands.h"
#include "tools/lib/dst_data.h"

#define DEFAULT_OFFSET_MODEL DS_SOURCE_DIR "/models/offset_model.json"

/* A model holding only the deformable layers of a described architecture, each with its own
 * input and output map: what the measurement reads (geometry and slices, no weights). */
static ds_status deform_only_model(const dsn_layer_list *layers, dsr_model *model,
                                   ds_error *err) {
  memset(model, 0, sizeof *model);
  int32_t count = dsn_layer_list_deform_count(layers);
  model->nodes = calloc((size_t)count, sizeof *model->nodes);
  model->tensors = calloc((size_t)count * 2, sizeof *model->tensors);
  if (model->nodes == NULL || model->tensors == NULL) {
    ds_model_free(model);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d deformable layers", count);
  }
  snprintf(model->name, sizeof model->name, "deformable layers");
  for (int32_t i = 0; i < layers->count; i++) {
    const dsn_layer *layer = &layers->layers[i];
    if (layer->kind != DSN_LAYER_DEFORM)
      continue;
    int32_t n = model->node_count;
    dsr_node *node = &model->nodes[n];
    node->deform = malloc(sizeof *node->deform);
    if (node->deform == NULL) {
      ds_model_free(model);
      return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate a deformable layer");
    }
    *node->deform = layer->deform;
    snprintf(node->name, sizeof node->name, "%s", layer->name);
    node->op = DSR_OP_DEFORM_ATTN;
    node->input_count = 1;
    node->inputs[0] = 2 * n;
    node->inputs[1] = node->inputs[2] = node->inputs[3] = -1;
    node->output = 2 * n + 1;
    for (int32_t t = 0; t < 2; t++) {
      dsr_tensor *tensor = &model->tensors[2 * n + t];
      snprintf(tensor->name, sizeof tensor->name, "%.80s.%s", layer->name, t == 0 ? "in" : "out");
      tensor->kind = t == 0 && n == 0 ? DSR_TENSOR_INPUT : DSR_TENSOR_ACTIVATION;
      tensor->rank = 4;
      tensor->dims[0] = 1;
      tensor->dims[1] = layer->deform.channels;
      tensor->dims[2] = layer->deform.height;
      tensor->dims[3] = layer->deform.width;
    }
    model->node_count++;
    model->tensor_count += 2;
  }
  model->input = 0;
  model->output = model->tensor_count - 1;
  return DS_OK;
}

/* Sizes one layer's position arrays for slice, as the measurement expects them. */
static ds_status init_layer(const dsr_deform_attn *d, int32_t node, dsr_slice slice,
                            dsn_layer_positions *lp, ds_error *err) {
  lp->node = node;
  lp->slice = slice;
  lp->patch_count = slice.rows * slice.cols;
  lp->patch_first = calloc((size_t)lp->patch_count + 1, sizeof *lp->patch_first);
  lp->patch_grid = calloc((size_t)lp->patch_count * 2, sizeof *lp->patch_grid);
  if (lp->patch_first == NULL || lp->patch_grid == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the patch table of node %d",
                   node);
  int64_t total = 0;
  for (int32_t patch = 0; patch < lp->patch_count; patch++) {
    dsr_patch p;
    dsr_slice_patch(d->height, d->width, slice, patch / slice.cols, patch % slice.cols, &p);
    int32_t hk = 0, wk = 0;
    int64_t samples = dsn_offset_grid(d, p.ext_y1 - p.ext_y0, p.ext_x1 - p.ext_x0, &hk, &wk);
    lp->patch_grid[2 * patch] = hk;
    lp->patch_grid[2 * patch + 1] = wk;
    lp->patch_first[patch] = total;
    total += samples * d->groups;
  }
  lp->patch_first[lp->patch_count] = total;
  lp->y = calloc((size_t)(total > 0 ? total : 1), sizeof(float));
  lp->x = calloc((size_t)(total > 0 ? total : 1), sizeof(float));
  if (lp->y == NULL || lp->x == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %lld positions of node %d",
                   (long long)total, node);
  return DS_OK;
}

/*
 * Positions of every deformable layer of model from the offset model: slices NULL gives the
 * unsliced positions, otherwise each patch's. stages gives the offset-model stage per layer.
 */
static ds_status synthetic_positions(const dsr_model *model, const dsr_slice *slices,
                                     const int32_t *stages, const dsn_offset_model *offsets,
                                     dsn_positions *out, ds_error *err) {
  memset(out, 0, sizeof *out);
  int32_t count = ds_model_deform_count(model);
  out->layers = calloc((size_t)count, sizeof *out->layers);
  if (out->layers == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate positions of %d layers", count);
  out->layer_count = count;
  for (int32_t l = 0; l < count; l++) {
    int32_t node = ds_model_deform_node(model, l);
    const dsr_deform_attn *d = model->nodes[node].deform;
    dsr_slice slice = slices != NULL ? slices[l] : (dsr_slice){1, 1, 0, DSR_SLICE_PHYSICAL};
    dsn_layer_positions *lp = &out->layers[l];
    DS_TRY(init_layer(d, node, slice, lp, err));
    for (int32_t patch = 0; patch < lp->patch_count; patch++) {
      dsr_patch p;
      dsr_slice_patch(d->height, d->width, slice, patch / slice.cols, patch % slice.cols, &p);
      int64_t first = lp->patch_first[patch];
      /* One seed per layer and patch: the same positions on every run. */
      uint64_t seed = 0x5eed0000ull + (uint64_t)l * 4096u + (uint64_t)patch;
      dsn_offset_model_patch_positions(offsets, d, stages[l], slice.semantics,
                                       p.ext_y1 - p.ext_y0, p.ext_x1 - p.ext_x0, seed,
                                       lp->y + first, lp->x + first);
    }
  }
  return DS_OK;
}

/* Loads the model input the positions are captured on. Returns DS_OK with *image NULL when
 * there is none (the offset model is used then). */
static ds_status load_image(const dsr_model *model, const dst_simulate_options *options,
                            float **image, char *label, size_t label_size, ds_error *err) {
  *image = NULL;
  const dsr_tensor *input = &model->tensors[model->input];
  int64_t elements = dsr_tensor_elements(input);
  if (options->input_f32 != NULL) {
    uint8_t *data = NULL;
    size_t size = 0;
    DS_TRY(ds_file_read_all(options->input_f32, (size_t)elements * 4 + 1, &data, &size, err));
    if (size != (size_t)elements * 4) {
      free(data);
      return ds_fail(err, DS_ERR_DATA,
                     "%s has %zu bytes; the model input '%s' needs %lld float32 values (%lld "
                     "bytes)",
                     options->input_f32, size, input->name, (long long)elements,
                     (long long)elements * 4);
    }
    *image = (float *)data;
    snprintf(label, label_size, "measured offsets (the model's own, input %s)",
             options->input_f32);
    return DS_OK;
  }
  if (input->rank != 4 || input->dims[1] != 1 || input->dims[2] != input->dims[3])
    return DS_OK;
  dst_dataset data;
  const char *folder = options->data_dir != NULL ? options->data_dir : DST_FASHION_MNIST_DIR;
  DS_TRY(dst_dataset_load(folder, DST_SPLIT_VALIDATION, input->dims[2], 1, &data, err));
  *image = malloc((size_t)elements * sizeof(float));
  if (*image == NULL) {
    dst_dataset_free(&data);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the input image");
  }
  memcpy(*image, data.images, (size_t)elements * sizeof(float));
  dst_dataset_free(&data);
  snprintf(label, label_size,
           "measured offsets (the model's own, first Fashion-MNIST validation image)");
  return DS_OK;
}

/* Whether every deformable layer of model carries float weights to run. */
static int has_weights(const dsr_model *model) {
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op != DSR_OP_DEFORM_ATTN || node->deform == NULL)
      continue;
    int32_t w = node->deform->params[DSR_DEFORM_PROJ_Q_W];
    if (w < 0 || w >= model->tensor_count || model->tensors[w].data_f32 == NULL)
      return 0;
  }
  return model->node_count > 0;
}

static ds_status make_positions(const dsr_model *model, const dst_cost_input *input,
                                const dst_simulate_options *options, dsn_positions *unsliced,
                                dsn_positions *sliced, char *label, size_t label_size,
                                ds_error *err) {
  float *image = NULL;
  if (input->source != DST_COST_ARCH && has_weights(model))
    DS_TRY(load_image(model, options, &image, label, label_size, err));
  if (image != NULL) {
    ds_status status = dsn_positions_capture(model, NULL, image, unsliced, err);
    if (status == DS_OK)
      status = dsn_positions_capture(model, input->slices, image, sliced, err);
    free(image);
    return status;
  }

  dsn_offset_model offsets;
  const char *path =
      options->offset_model_path != NULL ? options->offset_model_path : DEFAULT_OFFSET_MODEL;
  DS_TRY(dsn_offset_model_load(path, &offsets, err));
  int32_t *stages = calloc((size_t)input->deform_count, sizeof *stages);
  if (stages == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the stage list");
  if (input->source == DST_COST_ARCH) {
    int32_t l = 0;
    for (int32_t i = 0; i < input->layers.count; i++) {
      if (input->layers.layers[i].kind == DSN_LAYER_DEFORM)
        stages[l++] = input->layers.layers[i].stage;
    }
  } else {
    dsn_offset_layer_stages(model, stages);
  }
  ds_status status = synthetic_positions(model, NULL, stages, &offsets, unsliced, err);
  if (status == DS_OK)
    status = synthetic_positions(model, input->slices, stages, &offsets, sliced, err);
  free(stages);
  snprintf(label, label_size, "%s, fitted to %s", DSN_OFFSET_LABEL, offsets.source);
  return status;
}

/*
 * Runs the whole-model DMA schedule of a converted model through the executor and replaces the
 * dense rows' figures (every strategy but the lower bound) with the executed ones: DRAM
 * traffic with row hits and misses, the DMA and compute overlap of the unit.
 */
static ds_status execute_dense(const dst_cost_input *input, const dsn_preset *preset,
                               dsn_cost_report *report, ds_error *err) {
  const dsr_model *model = &input->model;
  dsn_memory_map map;
  dsr_schedule schedule;
  memset(&map, 0, sizeof map);
  memset(&schedule, 0, sizeof schedule);
  dsr_dram dram;
  void *state = NULL;
  dsr_exec_layer *nodes = calloc((size_t)model->node_count + 1, sizeof *nodes);
  dsr_exec_layer *layers = calloc((size_t)input->deform_count + 1, sizeof *layers);
  ds_status status = DS_OK;
  if (nodes == NULL || layers == NULL)
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the executor's records");
  if (status == DS_OK)
    status = dsn_memory_map_build(model, &input->layers, preset, 0,
                                  dsn_layout_alignment(preset), &map, err);
  if (status == DS_OK)
    status = dsn_schedule_build_model(model, &input->layers, input->slices, preset, &map,
                                      &schedule, err);
  if (status == DS_OK)
    status = dsn_dram_open(preset, &dram, &state, err);
  if (status == DS_OK)
    status = dsr_exec_check(&schedule, &dram, input->deform_count, err);
  if (status == DS_OK) {
    dsr_exec_config config = {preset->clock_mhz, NULL, NULL, nodes, model->node_count};
    dsr_exec_layer total;
    dsr_exec_run(&schedule, &dram, &config, layers, input->deform_count, &total);
    for (int32_t r = 0; r < report->row_count; r++) {
      const dsn_cost_row *row = &report->rows[r];
      if (row->kind == DSN_LAYER_DEFORM || row->node < 0 || row->node >= model->node_count)
        continue;
      const dsr_exec_layer *e = &nodes[row->node];
      dsn_measured m;
      memset(&m, 0, sizeof m);
      m.bytes = e->dram.read_bytes + e->dram.write_bytes;
      m.bursts = e->dram.read_bursts + e->dram.write_bursts;
      m.row_hits = e->dram.row_hits;
      m.row_misses = e->dram.row_misses;
      m.buffer_bytes = row->strategies[DSN_STRATEGY_SLICED].buffer_bytes;
      m.fits = row->strategies[DSN_STRATEGY_SLICED].fits;
      m.dram_cycles = e->dma_cycles;
      m.compute_cycles = e->compute_cycles;
      m.cycles = e->cycles;
      m.compute_bound = e->compute_bound;
      for (int32_t k = DSN_STRATEGY_GATHER; k < DSN_STRATEGY_COUNT; k++)
        dsn_cost_report_set_measured(report, r, k, &m);
    }
  }
  free(state);
  free(nodes);
  free(layers);
  dsn_schedule_free(&schedule);
  dsn_memory_map_free(&map);
  return status;
}

ds_status dst_cost_simulate(const dst_cost_input *input, const dsn_preset *preset,
                            const dst_simulate_options *options, dsn_cost_report *report,
                            ds_error *err) {
  dsr_model described;
  memset(&described, 0, sizeof described);
  const dsr_model *model = &input->model;
  if (input->source == DST_COST_ARCH) {
    DS_TRY(deform_only_model(&input->layers, &described, err));
    model = &described;
  }

  dsn_positions unsliced, sliced;
  memset(&unsliced, 0, sizeof unsliced);
  memset(&sliced, 0, sizeof sliced);
  char label[sizeof report->offsets];
  ds_status status =
      make_positions(model, input, options, &unsliced, &sliced, label, sizeof label, err);

  dsn_model_measure measure;
  memset(&measure, 0, sizeof measure);
  if (status == DS_OK) {
    dsn_measure_options measure_options;
    memset(&measure_options, 0, sizeof measure_options);
    measure_options.ramulator_trace_path = options->ramulator_trace;
    measure_options.dramsim_trace_path = options->dramsim_trace;
    measure_options.trace_strategy = options->trace_strategy;
    status = dsn_measure_model(model, input->slices, preset, &unsliced, &sliced,
                               &measure_options, &measure, err);
  }
  if (status == DS_OK) {
    for (int32_t r = 0; r < report->row_count; r++) {
      int32_t l = report->rows[r].deform_index;
      if (l < 0 || l >= measure.layer_count)
        continue;
      for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++)
        dsn_cost_report_set_measured(report, r, k, &measure.layers[l].strategy[k]);
    }
    snprintf(report->offsets, sizeof report->offsets, "%s", label);
  }
  /* A converted model has a graph to schedule, so its dense layers run in the executor too;
   * a described architecture keeps their analytic figures. */
  if (status == DS_OK && input->source != DST_COST_ARCH)
    status = execute_dense(input, preset, report, err);
  dsn_model_measure_free(&measure);
  dsn_positions_free(&unsliced);
  dsn_positions_free(&sliced);
  ds_model_free(&described);
  return status;
}
