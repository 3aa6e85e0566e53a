#include "dsn_offset_model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_file.h"
#include "nas/dsn_oracle.h"

#define OFFSET_MODEL_MAX_FILE_BYTES (1u << 20)

int32_t dsn_offset_layer_stages(const dsr_model *model, int32_t *stages) {
  int32_t heights[64];
  int32_t distinct = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op != DSR_OP_DEFORM_ATTN || node->deform == NULL)
      continue;
    int32_t h = node->deform->height;
    int known = 0;
    for (int32_t k = 0; k < distinct; k++)
      known = known || heights[k] == h;
    if (!known && distinct < 64)
      heights[distinct++] = h;
  }
  int32_t layer = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op != DSR_OP_DEFORM_ATTN || node->deform == NULL)
      continue;
    int32_t rank = 0;
    for (int32_t k = 0; k < distinct; k++)
      rank += heights[k] > node->deform->height;
    stages[layer++] = rank < DSN_OFFSET_MAX_STAGES ? rank : DSN_OFFSET_MAX_STAGES - 1;
  }
  return distinct < DSN_OFFSET_MAX_STAGES ? distinct : DSN_OFFSET_MAX_STAGES;
}

/* Reference point i of a grid of grid_size points, in half-extent units ([-1, 1]). */
static double reference(int32_t convention, int32_t i, int32_t grid_size) {
  if (convention == DSR_DEFORM_DAT_PP)
    return grid_size > 1 ? (i + 0.5) / (grid_size - 1) * 2.0 - 1.0 : 0.0;
  return (i + 0.5) / grid_size * 2.0 - 1.0;
}

/* The layer's offset in half-extent units: raw for DAT++, tanh-bounded for DAT. */
static double effective_offset(const dsr_deform_attn *layer, double raw, int32_t grid_size) {
  if (layer->convention == DSR_DEFORM_DAT_PP)
    return raw;
  return tanh(raw) * layer->offset_range_factor / grid_size;
}

void dsn_offset_stats_add(dsn_offset_stats *stats, const dsr_deform_attn *layer,
                          int32_t layer_index, int32_t stage, const float *raw, int64_t count) {
  if (stage < 0 || stage >= DSN_OFFSET_MAX_STAGES)
    return;
  int32_t hk = 0, wk = 0;
  int64_t samples = dsn_offset_grid(layer, layer->height, layer->width, &hk, &wk);
  if (samples <= 0 || count != (int64_t)layer->groups * 2 * samples)
    return;
  if (stage + 1 > stats->stage_count)
    stats->stage_count = stage + 1;
  double half_h = (layer->height - 1) * 0.5, half_w = (layer->width - 1) * 0.5;
  dsn_offset_sums *s = &stats->stages[stage];
  if (layer_index >= 0 && layer_index < 64)
    s->layers_seen |= (uint64_t)1 << layer_index;
  s->map_height = layer->height;
  s->map_width = layer->width;
  for (int32_t g = 0; g < layer->groups; g++) {
    const float *dy = raw + (int64_t)g * 2 * samples;
    const float *dx = dy + samples;
    for (int32_t i = 0; i < hk; i++) {
      for (int32_t j = 0; j < wk; j++) {
        int64_t n = (int64_t)i * wk + j;
        double oy = effective_offset(layer, dy[n], hk);
        double ox = effective_offset(layer, dx[n], wk);
        double y = reference(layer->convention, i, hk) + oy;
        double x = reference(layer->convention, j, wk) + ox;
        s->count++;
        s->sum_y += oy;
        s->sum_x += ox;
        s->square_y += oy * oy;
        s->square_x += ox * ox;
        s->magnitude += sqrt(oy * half_h * oy * half_h + ox * half_w * ox * half_w);
        s->clamped += y < -1.0 || y > 1.0 || x < -1.0 || x > 1.0;
      }
    }
  }
}

void dsn_offset_stats_fit(const dsn_offset_stats *stats, const char *source,
                          int32_t image_count, dsn_offset_model *model) {
  memset(model, 0, sizeof *model);
  snprintf(model->source, sizeof model->source, "%s", source != NULL ? source : "");
  model->image_count = image_count;
  model->stage_count = stats->stage_count;
  for (int32_t k = 0; k < stats->stage_count; k++) {
    const dsn_offset_sums *s = &stats->stages[k];
    dsn_offset_stage *m = &model->stages[k];
    m->map_height = s->map_height;
    m->map_width = s->map_width;
    m->sample_count = s->count;
    m->layer_count = __builtin_popcountll(s->layers_seen);
    if (s->count == 0)
      continue;
    double n = (double)s->count;
    m->mean_y = s->sum_y / n;
    m->mean_x = s->sum_x / n;
    m->sd_y = sqrt(fmax(s->square_y / n - m->mean_y * m->mean_y, 0.0));
    m->sd_x = sqrt(fmax(s->square_x / n - m->mean_x * m->mean_x, 0.0));
    m->mean_magnitude_pixels = s->magnitude / n;
    m->clamped_fraction = s->clamped / n;
  }
}

/* ---- JSON ---- */

char *dsn_offset_model_json(const dsn_offset_model *model) {
  cJSON *root = cJSON_CreateObject();
  if (root == NULL)
    return NULL;
  cJSON_AddStringToObject(root, "description",
                          "Sampling offsets of a trained DAT++ per stage: independent normal "
                          "dy and dx in half-extent units (pixels / ((side - 1) / 2)). "
                          "docs/hardware-model.md gives the derivation.");
  cJSON_AddStringToObject(root, "source", model->source);
  cJSON_AddNumberToObject(root, "images", model->image_count);
  cJSON *stages = cJSON_AddArrayToObject(root, "stages");
  for (int32_t k = 0; k < model->stage_count; k++) {
    const dsn_offset_stage *m = &model->stages[k];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "stage", k);
    cJSON_AddNumberToObject(o, "layers", m->layer_count);
    cJSON *map = cJSON_AddArrayToObject(o, "map");
    cJSON_AddItemToArray(map, cJSON_CreateNumber(m->map_height));
    cJSON_AddItemToArray(map, cJSON_CreateNumber(m->map_width));
    cJSON_AddNumberToObject(o, "samples", (double)m->sample_count);
    /* Six significant digits keep the file small and stable across runs. */
    char text[32];
    const struct {
      const char *key;
      double value;
    } numbers[] = {{"mean_y", m->mean_y},
                   {"mean_x", m->mean_x},
                   {"sd_y", m->sd_y},
                   {"sd_x", m->sd_x},
                   {"mean_magnitude_pixels", m->mean_magnitude_pixels},
                   {"clamped_fraction", m->clamped_fraction}};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
      snprintf(text, sizeof text, "%.6g", numbers[i].value);
      cJSON_AddItemToObject(o, numbers[i].key, cJSON_CreateRaw(text));
    }
    cJSON_AddItemToArray(stages, o);
  }
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  return text;
}

static int read_number(const cJSON *object, const char *key, double low, double high,
                       double *value) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
  if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < low ||
      item->valuedouble > high)
    return 0;
  *value = item->valuedouble;
  return 1;
}

ds_status dsn_offset_model_load(const char *path, dsn_offset_model *model, ds_error *err) {
  memset(model, 0, sizeof *model);
  uint8_t *data = NULL;
  size_t size = 0;
  DS_TRY(ds_file_read_all(path, OFFSET_MODEL_MAX_FILE_BYTES, &data, &size, err));
  cJSON *root = cJSON_ParseWithLength((const char *)data, size);
  free(data);
  if (root == NULL)
    return ds_fail(err, DS_ERR_DATA, "%s: not valid JSON; expected an offset model written by "
                                     "bench_offsets", path);

  const cJSON *source = cJSON_GetObjectItemCaseSensitive(root, "source");
  if (cJSON_IsString(source))
    snprintf(model->source, sizeof model->source, "%s", source->valuestring);
  double images = 0;
  if (read_number(root, "images", 0, 1e9, &images))
    model->image_count = (int32_t)images;

  const cJSON *stages = cJSON_GetObjectItemCaseSensitive(root, "stages");
  int count = cJSON_IsArray(stages) ? cJSON_GetArraySize(stages) : 0;
  if (count < 1 || count > DSN_OFFSET_MAX_STAGES) {
    cJSON_Delete(root);
    return ds_fail(err, DS_ERR_DATA, "%s: stages has %d entries; expected an array of 1 to %d",
                   path, count, DSN_OFFSET_MAX_STAGES);
  }
  model->stage_count = count;

  for (int k = 0; k < count; k++) {
    const cJSON *o = cJSON_GetArrayItem(stages, k);
    dsn_offset_stage *m = &model->stages[k];
    double layers = 0, samples = 0;
    const char *bad = NULL;
    if (!read_number(o, "mean_y", -100, 100, &m->mean_y))
      bad = "mean_y";
    else if (!read_number(o, "mean_x", -100, 100, &m->mean_x))
      bad = "mean_x";
    else if (!read_number(o, "sd_y", 0, 100, &m->sd_y))
      bad = "sd_y";
    else if (!read_number(o, "sd_x", 0, 100, &m->sd_x))
      bad = "sd_x";
    if (bad != NULL) {
      cJSON_Delete(root);
      return ds_fail(err, DS_ERR_DATA,
                     "%s: stage %d has no valid %s; expected a number (half-extent units, a "
                     "standard deviation of 0 to 100)",
                     path, k, bad);
    }

    if (read_number(o, "layers", 0, 1000, &layers))
      m->layer_count = (int32_t)layers;
    if (read_number(o, "samples", 0, 1e15, &samples))
      m->sample_count = (int64_t)samples;
    read_number(o, "mean_magnitude_pixels", 0, 1e9, &m->mean_magnitude_pixels);
    read_number(o, "clamped_fraction", 0, 1, &m->clamped_fraction);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(o, "map");
    if (cJSON_GetArraySize(map) == 2) {
      m->map_height = (int32_t)cJSON_GetArrayItem(map, 0)->valuedouble;
      m->map_width = (int32_t)cJSON_GetArrayItem(map, 1)->valuedouble;
    }
  }
  cJSON_Delete(root);
  return DS_OK;
}

/* ---- Generation ---- */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in (0, 1). */
static double uniform(uint64_t *state) {
  return ((double)(splitmix64(state) >> 11) + 0.5) / 9007199254740992.0;
}

/* Standard normal by the Box-Muller transform. */
static double normal(uint64_t *state) {
  double u = uniform(state), v = uniform(state);
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Draws positions on a grid_h x grid_w grid over an extent_h x extent_w region (reference
 * points and clamp), with offsets scaled by half_h and half_w pixels per unit. */
static void draw_positions(const dsn_offset_model *model, const dsr_deform_attn *layer,
                           int32_t stage, int32_t grid_h, int32_t grid_w, int32_t extent_h,
                           int32_t extent_w, double half_h, double half_w, int32_t bound_h,
                           int32_t bound_w, uint64_t seed, float *y, float *x) {
  if (grid_h <= 0 || grid_w <= 0 || model->stage_count < 1)
    return;
  if (stage < 0)
    stage = 0;
  if (stage >= model->stage_count)
    stage = model->stage_count - 1;
  const dsn_offset_stage *m = &model->stages[stage];
  /* DAT bounds offsets with tanh to factor / Hk half-extent units of the full grid. */
  double limit_y = layer->offset_range_factor / bound_h;
  double limit_x = layer->offset_range_factor / bound_w;
  double extent_half_h = (extent_h - 1) * 0.5, extent_half_w = (extent_w - 1) * 0.5;
  uint64_t state = seed;
  for (int32_t g = 0; g < layer->groups; g++) {
    for (int32_t i = 0; i < grid_h; i++) {
      for (int32_t j = 0; j < grid_w; j++) {
        double oy = m->mean_y + m->sd_y * normal(&state);
        double ox = m->mean_x + m->sd_x * normal(&state);
        if (layer->convention == DSR_DEFORM_DAT) {
          oy = fmax(-limit_y, fmin(limit_y, oy));
          ox = fmax(-limit_x, fmin(limit_x, ox));
        }
        double py = (reference(layer->convention, i, grid_h) + 1.0) * extent_half_h + oy * half_h;
        double px = (reference(layer->convention, j, grid_w) + 1.0) * extent_half_w + ox * half_w;
        /* DAT++ clamps the position into the map. NOTE: DAT reads zeros outside the map,
         * which needs no DRAM access; clamping those samples to the border instead
         * slightly overstates DAT's gather traffic. */
        int64_t n = ((int64_t)g * grid_h + i) * grid_w + j;
        y[n] = (float)fmin(fmax(py, 0.0), extent_h - 1);
        x[n] = (float)fmin(fmax(px, 0.0), extent_w - 1);
      }
    }
  }
}

void dsn_offset_model_positions(const dsn_offset_model *model, const dsr_deform_attn *layer,
                                int32_t stage, uint64_t seed, float *y, float *x) {
  int32_t hk = 0, wk = 0;
  if (dsn_offset_grid(layer, layer->height, layer->width, &hk, &wk) <= 0)
    return;
  draw_positions(model, layer, stage, hk, wk, layer->height, layer->width,
                 (layer->height - 1) * 0.5, (layer->width - 1) * 0.5, hk, wk, seed, y, x);
}

void dsn_offset_model_patch_positions(const dsn_offset_model *model, const dsr_deform_attn *layer,
                                      int32_t stage, int32_t semantics, int32_t patch_h,
                                      int32_t patch_w, uint64_t seed, float *y, float *x) {
  int32_t hk = 0, wk = 0, full_hk = 0, full_wk = 0;
  if (dsn_offset_grid(layer, patch_h, patch_w, &hk, &wk) <= 0)
    return;
  dsn_offset_grid(layer, layer->height, layer->width, &full_hk, &full_wk);
  int physical = semantics == DSR_SLICE_PHYSICAL;
  double half_h = ((physical ? layer->height : patch_h) - 1) * 0.5;
  double half_w = ((physical ? layer->width : patch_w) - 1) * 0.5;
  draw_positions(model, layer, stage, hk, wk, patch_h, patch_w, half_h, half_w,
                 physical ? full_hk : hk, physical ? full_wk : wk, seed, y, x);
}
