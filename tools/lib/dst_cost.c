#include "dst_cost.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/ds_model.h"
#include "dst_args.h"
#include "converter/dsc_import.h"
#include "formats/dsf_artifact.h"
#include "nas/dsn_arch.h"
#include "nas/dsn_schedule.h"

/* 1 when path starts with the artifact magic number. */
static int is_artifact(const char *path) {
  char magic[DSF_MAGIC_BYTES];
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return 0;
  size_t got = fread(magic, 1, sizeof magic, f);
  fclose(f);
  return got == sizeof magic && memcmp(magic, DSF_MAGIC, DSF_MAGIC_BYTES) == 0;
}

static ds_status load_arch(const dsn_arch *arch, const char *input_shape,
                           const dsn_preset *preset, dst_cost_input *input, ds_error *err) {
  int32_t dims[4] = {0, 0, 0, 0};
  int32_t height = 224, width = 224;
  if (input_shape != NULL) {
    int32_t count = 0;
    DS_TRY(dst_args_shape("input-shape", input_shape, dims, &count, err));
    if (count == 2) {
      height = dims[0];
      width = dims[1];
    } else if (count == 4 && dims[0] == 1 && dims[1] == 3) {
      height = dims[2];
      width = dims[3];
    } else {
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--input-shape '%s' is not HxW or 1x3xHxW; use, say, 224x224 or 800x1333",
                     input_shape);
    }
  }
  input->source = DST_COST_ARCH;
  return dsn_arch_layers(arch, height, width, preset, &input->layers, err);
}

static ds_status load_model(const char *path, const char *input_shape,
                            const dsn_preset *preset, dst_cost_input *input, ds_error *err) {
  if (is_artifact(path)) {
    if (input_shape != NULL)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--input-shape does not apply to an artifact, which keeps the shape it "
                     "was compiled for; drop the option or pass the ONNX model");
    input->source = DST_COST_ARTIFACT;
    char *manifest = NULL;
    DS_TRY(dsf_read_file(path, &input->model, &input->stored, &manifest, err));
    cJSON *root = cJSON_Parse(manifest);
    const cJSON *preset_name = cJSON_GetObjectItemCaseSensitive(root, "preset");
    if (cJSON_IsString(preset_name))
      snprintf(input->stored_preset, sizeof input->stored_preset, "%s",
               preset_name->valuestring);
    cJSON_Delete(root);
    free(manifest);
  } else {
    dsc_options options;
    memset(&options, 0, sizeof options);
    if (input_shape != NULL) {
      int32_t count = 0;
      DS_TRY(dst_args_shape("input-shape", input_shape, options.input_shape, &count, err));
      if (count != 4)
        return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                       "--input-shape '%s' is not NxCxHxW; an ONNX model needs all four, "
                       "such as 1x3x224x224",
                       input_shape);
      options.input_rank = 4;
    }
    dsc_report report;
    input->source = DST_COST_ONNX;
    DS_TRY(dsc_import_file(path, &options, &input->model, &report, err));
  }
  DS_TRY(dsn_layers_from_model(&input->model, preset, &input->layers, err));
  const char *base = strrchr(path, '/');
  snprintf(input->layers.source, sizeof input->layers.source, "%s %s",
           input->source == DST_COST_ARTIFACT ? "artifact" : "ONNX model",
           base != NULL ? base + 1 : path);
  return DS_OK;
}

ds_status dst_cost_load(const char *what, const char *input_shape, const dsn_preset *preset,
                        dst_cost_input *input, ds_error *err) {
  memset(input, 0, sizeof *input);
  ds_status status;
  const dsn_arch *arch = access(what, F_OK) == 0 ? NULL : dsn_arch_find(what);
  if (arch != NULL) {
    status = load_arch(arch, input_shape, preset, input, err);
  } else if (access(what, F_OK) == 0) {
    status = load_model(what, input_shape, preset, input, err);
  } else {
    char names[256] = "";
    size_t used = 0;
    for (int32_t i = 0; i < dsn_arch_count() && used < sizeof names; i++)
      used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i > 0 ? ", " : "",
                               dsn_arch_at(i)->name);
    return ds_fail(err, DS_ERR_IO,
                   "'%s' is neither a file nor a described architecture (%s); pass an ONNX "
                   "model, an artifact or one of those names",
                   what, names);
  }
  if (status != DS_OK) {
    dst_cost_input_free(input);
    return status;
  }
  input->deform_count = dsn_layer_list_deform_count(&input->layers);
  if (input->deform_count == 0) {
    ds_status result = ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                               "%s has no deformable attention layer; the cost command "
                               "compares slicing strategies of those layers, so pass a DAT "
                               "or DAT++ model",
                               input->layers.source);
    dst_cost_input_free(input);
    return result;
  }
  input->slices = calloc((size_t)input->deform_count, sizeof *input->slices);
  if (input->slices == NULL) {
    dst_cost_input_free(input);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d slice configurations",
                   input->deform_count);
  }
  return DS_OK;
}

/* Copies each deformable layer's own configuration. */
static void own_slices(dst_cost_input *input) {
  int32_t index = 0;
  for (int32_t i = 0; i < input->layers.count; i++) {
    if (input->layers.layers[i].kind == DSN_LAYER_DEFORM)
      input->slices[index++] = input->layers.layers[i].deform.slice;
  }
}

static ds_status parse_list(dst_cost_input *input, const char *text, ds_error *err) {
  int32_t items = 1;
  for (const char *c = text; *c != '\0'; c++)
    items += *c == ',';
  if (items != 1 && items != input->deform_count)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--slices lists %d configurations but the model has %d deformable layers; "
                   "give one per layer, one for all, 'auto' or 'own'",
                   items, input->deform_count);
  const char *start = text;
  for (int32_t i = 0; i < items; i++) {
    const char *end = strchr(start, ',');
    size_t length = end != NULL ? (size_t)(end - start) : strlen(start);
    char item[32];
    dsr_slice slice;
    if (length == 0 || length >= sizeof item)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--slices item %d ('%.*s') is not a configuration; write RxC+O such as "
                     "2x2+1, with a 'c' suffix for crop semantics",
                     i + 1, (int)(length < 40 ? length : 40), start);
    memcpy(item, start, length);
    item[length] = '\0';
    if (dsn_slice_parse(item, &slice) != 0)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--slices item %d ('%s') is not a configuration; write RxC+O such as "
                     "2x2+1 (rows and columns 1 to %d, overlap 0 to %d pixels), with a 'c' "
                     "suffix for crop semantics",
                     i + 1, item, DSN_SLICE_NUMBER_MAX, DSN_SLICE_NUMBER_MAX);
    if (items == 1) {
      for (int32_t k = 0; k < input->deform_count; k++)
        input->slices[k] = slice;
    } else {
      input->slices[i] = slice;
    }
    start = end != NULL ? end + 1 : start + length;
  }
  return DS_OK;
}

ds_status dst_cost_choose_slices(dst_cost_input *input, const char *text,
                                 const dsn_preset *preset, ds_error *err) {
  if (text == NULL)
    text = input->source == DST_COST_ARTIFACT ? "own" : "auto";
  if (strcmp(text, "own") == 0) {
    if (input->source != DST_COST_ARTIFACT)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--slices own takes the slices stored in an artifact, but %s stores none; "
                     "pass an artifact, or use auto, auto+O or RxC+O",
                     input->layers.source);
    own_slices(input);
    return DS_OK;
  }
  if (strcmp(text, "auto") == 0)
    return dsn_cost_auto_slices(&input->layers, preset, 0, input->slices, err);
  if (strncmp(text, "auto+", 5) == 0) {
    char *end = NULL;
    long overlap = strtol(text + 5, &end, 10);
    if (end == text + 5 || *end != '\0' || overlap < 0 || overlap > 64)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--slices '%s' is not auto+O with an overlap O of 0 to 64 pixels", text);
    return dsn_cost_auto_slices(&input->layers, preset, (int32_t)overlap, input->slices, err);
  }
  return parse_list(input, text, err);
}

void dst_cost_input_free(dst_cost_input *input) {
  if (input == NULL)
    return;
  ds_model_free(&input->model);
  dsf_schedule_free(&input->stored);
  dsn_layer_list_free(&input->layers);
  free(input->slices);
  memset(input, 0, sizeof *input);
}

void dst_cost_check_stored(const dst_cost_input *input, const dsn_cost_report *report,
                           FILE *out) {
  if (input->source != DST_COST_ARTIFACT)
    return;
  if (input->stored.step_count == 0) {
    fprintf(out, "stored DMA schedule: none in the artifact\n");
    return;
  }
  if (input->stored_preset[0] != '\0' && strcmp(input->stored_preset, report->preset.name) != 0) {
    fprintf(out, "stored DMA schedule: %d steps, built for preset %s; this report prices %s, "
                 "so the two are not compared\n",
            input->stored.step_count, input->stored_preset, report->preset.name);
    return;
  }
  int32_t compared = 0, differ = 0, first = -1;
  int64_t first_stored = 0;
  for (int32_t r = 0; r < report->row_count; r++) {
    const dsn_cost_row *row = &report->rows[r];
    if (row->node < 0)
      continue;
    dsn_traffic stored;
    dsn_schedule_node_traffic(&input->stored, &report->preset, row->node, &stored, NULL);
    compared++;
    if (stored.bytes != row->strategies[DSN_STRATEGY_SLICED].traffic.bytes) {
      if (first < 0) {
        first = r;
        first_stored = stored.bytes;
      }
      differ++;
    }
  }
  if (differ == 0) {
    fprintf(out, "stored DMA schedule: %d steps; its DRAM bytes match this report in all %d "
                 "layers\n",
            input->stored.step_count, compared);
    return;
  }
  fprintf(out, "stored DMA schedule: %d steps; DRAM bytes differ in %d of %d layers (first: "
               "%s, stored %lld, now %lld), as when it was compiled with other slices or "
               "buffer sizes\n",
          input->stored.step_count, differ, compared, report->rows[first].name,
          (long long)first_stored,
          (long long)report->rows[first].strategies[DSN_STRATEGY_SLICED].traffic.bytes);
}
