/*
 * Tests of nas/: accelerator presets, the cost oracle, DMA schedules, the NSGA-II search with
 * its journal, and the Pareto front output. Models are built by hand with DEFORM_ATTN nodes
 * only, since the oracle and the search read nothing else.
 */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "nas/dsn_oracle.h"
#include "nas/dsn_pareto.h"
#include "nas/dsn_preset.h"
#include "nas/dsn_schedule.h"
#include "nas/dsn_search.h"
#include "runtime/dsr_slice.h"

/* ---- Helpers ------------------------------------------------------------------------------ */

static dsn_preset load_builtin(const char *name) {
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dsn_preset_resolve(name, &preset, &err);
  cr_assert_eq(status, DS_OK, "preset %s: %s", name, err.message);
  return preset;
}

static dsr_deform_attn make_layer(int32_t channels, int32_t height, int32_t width,
                                  int32_t groups, int32_t heads, int32_t kernel,
                                  int32_t stride) {
  dsr_deform_attn layer;
  memset(&layer, 0, sizeof layer);
  layer.channels = channels;
  layer.height = height;
  layer.width = width;
  layer.groups = groups;
  layer.heads = heads;
  layer.head_channels = channels / heads;
  layer.offset_kernel = kernel;
  layer.offset_stride = stride;
  layer.offset_pad = kernel / 2;
  layer.convention = DSR_DEFORM_DAT_PP;
  layer.attn_scale = 1.0f / sqrtf((float)layer.head_channels);
  layer.ln_epsilon = 1e-5f;
  for (int32_t i = 0; i < DSR_DEFORM_PARAM_COUNT; i++)
    layer.params[i] = -1;
  layer.slice = dsr_slice_none();
  return layer;
}

/* A model whose nodes are the given deformable layers, plus one GELU in between, so that
 * layer and node indices differ. The model does not own layers. */
typedef struct test_model {
  dsr_model model;
  dsr_node nodes[8];
} test_model;

static void make_model(test_model *t, dsr_deform_attn *layers, int32_t count) {
  memset(t, 0, sizeof *t);
  snprintf(t->model.name, sizeof t->model.name, "hand_built");
  int32_t n = 0;
  for (int32_t i = 0; i < count; i++) {
    if (i == 1) {
      t->nodes[n].op = DSR_OP_GELU;
      snprintf(t->nodes[n].name, sizeof t->nodes[n].name, "gelu");
      n++;
    }
    t->nodes[n].op = DSR_OP_DEFORM_ATTN;
    t->nodes[n].deform = &layers[i];
    snprintf(t->nodes[n].name, sizeof t->nodes[n].name, "deform%d", i);
    n++;
  }
  t->model.nodes = t->nodes;
  t->model.node_count = n;
}

static char *read_text(const char *path) {
  uint8_t *data = NULL;
  size_t size = 0;
  ds_error err;
  ds_error_clear(&err);
  ds_status status = ds_file_read_all(path, 1u << 24, &data, &size, &err);
  cr_assert_eq(status, DS_OK, "%s", err.message);
  char *text = realloc(data, size + 1);
  cr_assert_not_null(text);
  text[size] = '\0';
  return text;
}

static void test_path(char *path, size_t size, const char *name) {
  snprintf(path, size, "%s/nas-test-%ld-%s", DS_BINARY_DIR, (long)getpid(), name);
  remove(path);
}

/* ---- Presets ------------------------------------------------------------------------------ */

static const char *valid_preset =
    "{\"name\": \"test\", \"clock_mhz\": 200,"
    " \"dram\": {\"bus_width_bits\": 64, \"burst_length\": 8, \"peak_bandwidth_gbps\": 19.2,"
    " \"row_bytes\": 8192, \"row_miss_latency_ns\": 28, \"latency_ns\": 100},"
    " \"feature_buffer_bytes\": 65536, \"feature_banks\": 8, \"sampling_lanes\": 4,"
    " \"mac_array\": {\"rows\": 16, \"cols\": 16},"
    " \"activation_bits\": 8, \"weight_bits\": 8, \"accumulator_bits\": 32}";

/* Parses valid_preset with one substring replaced. */
static ds_status parse_edited(const char *from, const char *to, ds_error *err) {
  char text[2048];
  const char *at = strstr(valid_preset, from);
  cr_assert_not_null(at, "test bug: %s not in the preset", from);
  snprintf(text, sizeof text, "%.*s%s%s", (int)(at - valid_preset), valid_preset, to,
           at + strlen(from));
  dsn_preset preset;
  ds_error_clear(err);
  return dsn_preset_parse(text, strlen(text), "zcu102.json", &preset, err);
}

Test(preset, valid_text_parses) {
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_parse(valid_preset, strlen(valid_preset), "t.json", &preset, &err),
               DS_OK, "%s", err.message);
  cr_assert_str_eq(preset.name, "test");
  cr_assert_eq(preset.dram.burst_length, 8);
  cr_assert_eq(preset.feature_buffer_bytes, 65536);
  cr_assert_eq(preset.mac_cols, 16);
  cr_assert_eq(dsn_preset_burst_bytes(&preset), 64);
  cr_assert_float_eq(preset.dram.peak_bandwidth_gbps, 19.2, 1e-12);
}

Test(preset, builtins_parse_and_default_is_zcu102) {
  cr_assert_eq(dsn_preset_builtin_count(), 3);
  for (int32_t i = 0; i < dsn_preset_builtin_count(); i++) {
    dsn_preset preset = load_builtin(dsn_preset_builtin_name(i));
    cr_assert_str_eq(preset.name, dsn_preset_builtin_name(i));
  }
  dsn_preset fallback = load_builtin(NULL);
  cr_assert_str_eq(fallback.name, "zcu102");
  dsn_preset pynq = load_builtin("pynq-z2");
  cr_assert_eq(pynq.dram.bus_width_bits, 16);
  cr_assert_eq(dsn_preset_burst_bytes(&pynq), 16);
  cr_assert_null(dsn_preset_builtin_name(3));
  cr_assert_null(dsn_preset_builtin_json("vcu118"));
}

Test(preset, embedded_text_equals_files) {
  int32_t files = 0;
  DIR *dir = opendir(DS_SOURCE_DIR "/presets");
  cr_assert_not_null(dir);
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL) {
    size_t length = strlen(entry->d_name);
    if (length < 6 || strcmp(entry->d_name + length - 5, ".json") != 0)
      continue;
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(length - 5), entry->d_name);
    char path[1024];
    snprintf(path, sizeof path, "%s/presets/%s", DS_SOURCE_DIR, entry->d_name);
    char *text = read_text(path);
    const char *embedded = dsn_preset_builtin_json(name);
    cr_assert_not_null(embedded, "presets/%s has no built-in copy in nas/dsn_presets.c",
                       entry->d_name);
    cr_assert_str_eq(embedded, text, "nas/dsn_presets.c and presets/%s differ",
                     entry->d_name);
    free(text);
    files++;
  }
  closedir(dir);
  cr_assert_eq(files, dsn_preset_builtin_count(), "every built-in preset needs a file");
}

Test(preset, file_loads_by_path) {
  dsn_preset preset = load_builtin(DS_SOURCE_DIR "/presets/kv260.json");
  cr_assert_str_eq(preset.name, "kv260");
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_resolve(DS_SOURCE_DIR "/presets/missing.json", &preset, &err),
               DS_ERR_IO);
}

Test(preset, missing_field_named) {
  ds_error err;
  ds_status status = parse_edited("\"burst_length\": 8, ", "", &err);
  cr_assert_eq(status, DS_ERR_PRESET);
  cr_assert_str_eq(err.message,
                   "zcu102.json: dram.burst_length is missing; expected an integer 1..256");
}

Test(preset, wrong_type_named) {
  ds_error err;
  cr_assert_eq(parse_edited("\"clock_mhz\": 200", "\"clock_mhz\": \"fast\"", &err),
               DS_ERR_PRESET);
  cr_assert_not_null(strstr(err.message, "clock_mhz is the string \"fast\"; expected a "
                                         "number"),
                     "%s", err.message);
  cr_assert_eq(parse_edited("\"rows\": 16", "\"rows\": 16.5", &err), DS_ERR_PRESET);
  cr_assert_not_null(strstr(err.message, "mac_array.rows is 16.5; expected an integer"),
                     "%s", err.message);
  cr_assert_eq(parse_edited("\"dram\": {", "\"dram\": [], \"x\": {", &err), DS_ERR_PRESET);
  cr_assert_not_null(strstr(err.message, "dram is an array; expected an object"), "%s",
                     err.message);
}

Test(preset, negative_value_named) {
  ds_error err;
  cr_assert_eq(parse_edited("65536", "-5", &err), DS_ERR_PRESET);
  cr_assert_str_eq(err.message, "zcu102.json: feature_buffer_bytes is -5; expected an "
                                "integer 1024..17179869184");
}

Test(preset, several_problems_at_once) {
  char text[2048];
  snprintf(text, sizeof text, "%s", valid_preset);
  const char *edits[][2] = {
      {"\"bus_width_bits\": 64", "\"bus_width_bits\": 48"},
      {"\"weight_bits\": 8", "\"weight_bits\": true"},
      {"\"sampling_lanes\": 4", "\"sampling_lanes\": 0"},
      {"\"latency_ns\": 100", "\"latency_nsec\": 100"},
  };
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    char *at = strstr(text, edits[i][0]);
    cr_assert_not_null(at);
    char rest[2048];
    snprintf(rest, sizeof rest, "%s", at + strlen(edits[i][0]));
    snprintf(at, sizeof text - (size_t)(at - text), "%s%s", edits[i][1], rest);
  }
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_parse(text, strlen(text), "board.json", &preset, &err),
               DS_ERR_PRESET);
  const char *expected[] = {
      "board.json: dram.bus_width_bits is 48; expected one of 8, 16",
      "board.json: weight_bits is true; expected 8 or 16",
      "board.json: sampling_lanes is 0; expected an integer 1..1024",
      "board.json: dram.latency_ns is missing",
      "board.json: dram.latency_nsec is not a preset field",
  };
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
    cr_assert_not_null(strstr(err.message, expected[i]), "missing \"%s\" in:\n%s",
                       expected[i], err.message);
  int32_t lines = 1;
  for (const char *p = err.message; *p != '\0'; p++)
    lines += *p == '\n';
  cr_assert_eq(lines, 5, "one line per problem:\n%s", err.message);
}

Test(preset, malformed_json_rejected) {
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_parse("{\"name\": ", 9, "cut.json", &preset, &err), DS_ERR_PRESET);
  cr_assert_not_null(strstr(err.message, "cut.json: not valid JSON"), "%s", err.message);
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_parse("[1, 2]", 6, "list.json", &preset, &err), DS_ERR_PRESET);
  cr_assert_not_null(strstr(err.message, "not a JSON object"), "%s", err.message);
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_parse("", 0, "empty.json", &preset, &err), DS_ERR_PRESET);
}

Test(preset, burst_larger_than_row_rejected) {
  ds_error err;
  cr_assert_eq(parse_edited("\"row_bytes\": 8192", "\"row_bytes\": 256", &err), DS_OK,
               "%s", err.message);
  cr_assert_eq(parse_edited("\"burst_length\": 8, \"peak_bandwidth_gbps\": 19.2, "
                            "\"row_bytes\": 8192",
                            "\"burst_length\": 64, \"peak_bandwidth_gbps\": 19.2, "
                            "\"row_bytes\": 256",
                            &err),
               DS_ERR_PRESET);
  cr_assert_not_null(strstr(err.message, "a burst of 512 bytes"), "%s", err.message);
  cr_assert_not_null(strstr(err.message, "larger than dram.row_bytes 256"), "%s",
                     err.message);
}

/* ---- Cost oracle -------------------------------------------------------------------------- */

Test(oracle, transfer_rows_not_burst_aligned) {
  dsn_preset zcu = load_builtin("zcu102"); /* 64-byte bursts, 8192-byte DRAM rows */
  dsn_traffic t;
  memset(&t, 0, sizeof t);
  /* Three rows of 100 bytes, 200 apart: each row is its own run of ceil(100 / 64) = 2. */
  dsn_transfer_cost(100, 3, 200, &zcu, &t);
  cr_assert_eq(t.bytes, 300);
  cr_assert_eq(t.bursts, 6);
  cr_assert_eq(t.row_misses, 3);

  /* The same rows back to back are one run of 300 bytes: ceil(300 / 64) = 5 bursts. */
  memset(&t, 0, sizeof t);
  dsn_transfer_cost(100, 3, 100, &zcu, &t);
  cr_assert_eq(t.bursts, 5);
  cr_assert_eq(t.row_misses, 1);

  /* Exactly one burst per row, and a run spanning three DRAM rows. */
  memset(&t, 0, sizeof t);
  dsn_transfer_cost(64, 2, 128, &zcu, &t);
  dsn_transfer_cost(20000, 1, 20000, &zcu, &t);
  cr_assert_eq(t.bursts, 2 + 313);
  cr_assert_eq(t.row_misses, 2 + 3);

  dsn_traffic_finish(&t, &zcu);
  cr_assert_float_eq(t.time_ns, 315.0 * 64 / 19.2 + 5 * 28.0, 1e-6);
}

/*
 * Hand-computed layer: C = 12, 5 x 6 map, 2 groups (Cg = 6), 2 heads, 3 x 3 offset conv,
 * stride 1, pad 1; int8 features, int8 weights, int32 biases; 64-byte bursts.
 */
Test(oracle, hand_built_layer_figures) {
  dsn_preset zcu = load_builtin("zcu102");
  dsr_deform_attn layer = make_layer(12, 5, 6, 2, 2, 3, 1);
  dsr_slice slice = {2, 2, 1, DSR_SLICE_PHYSICAL};
  dsn_layer_cost cost;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_oracle_layer(&layer, slice, &zcu, &cost, &err), DS_OK, "%s", err.message);

  /*
   * Weights (bytes -> bursts): proj_q 144 -> 3, bias 48 -> 1, depthwise 54 -> 1, its bias
   * 24 -> 1, LayerNorm 24 + 24 -> 1 + 1, pointwise 12 -> 1, proj_k, proj_v, proj_out
   * 3 x (144 -> 3, 48 -> 1), bias table 2 * 9 * 11 = 198 -> 4.
   */
  int64_t weight_bytes = 144 + 48 + 54 + 24 + 24 + 24 + 12 + 3 * (144 + 48) + 198;
  int64_t weight_bursts = 3 + 1 + 1 + 1 + 1 + 1 + 1 + 3 * (3 + 1) + 4;
  cr_assert_eq(cost.weight_bytes, weight_bytes);
  cr_assert_eq(weight_bytes, 1104);

  /*
   * 2 x 2 split: core rows [0, 2) and [2, 5), cols [0, 3) and [3, 6); overlap 1 gives
   * extended rows [0, 3) and [1, 5), cols [0, 4) and [2, 6). A map row is 6 * 12 = 72 bytes.
   * Loads: rows of 4 * 12 = 48 bytes (1 burst each), 3 + 3 + 4 + 4 = 14 rows.
   * Stores: rows of 3 * 12 = 36 bytes (1 burst each), 2 + 2 + 3 + 3 = 10 rows.
   */
  cr_assert_eq(cost.patch_count, 4);
  cr_assert_eq(cost.sliced.bytes, 14 * 48 + 10 * 36 + weight_bytes);
  /*
   * Bursts are those a row touches: a load row of patch (r, c) starts at byte
   * y * 72 + 24 * c, so rows that cross a 64-byte boundary take two. Loads: patch 0 rows at
   * 0, 72, 144 take 1 each (3); patch 1 at 24, 96, 168 take 2 each (6); patch 2 at 72, 144,
   * 216, 288 take 1, 1, 2, 2 (6); patch 3 at 96, 168, 240, 312 take 2 each (8): 23.
   * Stores (36-byte rows at y * 72 + 36 * c): 1 + 1, 2 + 2, 1 + 1 + 2, 2 + 2 + 1: 15.
   */
  cr_assert_eq(cost.sliced.bursts, 23 + 15 + weight_bursts);
  /*
   * Row misses: zcu102 maps RoBaRaCoCh, so the input (at 0), output (at 65536) and weights
   * (at 131072, one 64 KiB stripe apart) are rows 0, 1 and 2 of bank 0. In the order
   * weights, load 0, load 1, store 0, load 2, store 1, load 3, store 2, store 3, every
   * switch of region opens a row: 7 misses.
   */
  cr_assert_eq(cost.sliced.row_misses, 7);
  cr_assert_float_eq(cost.sliced.time_ns, (23 + 15 + weight_bursts) * 64 / 19.2 + 7 * 28.0,
                     1e-6);

  /* Lower bound: the 360-byte map read and written once (6 bursts each), plus weights; the
   * weights, the load and the store open one row each. */
  cr_assert_eq(cost.lower_bound.bytes, 2 * 360 + weight_bytes);
  cr_assert_eq(cost.lower_bound.bursts, 2 * 6 + weight_bursts);
  cr_assert_eq(cost.lower_bound.row_misses, 3);

  /*
   * Gather: four whole-map passes (x, q written, q read, output) of 6 bursts, and a 5 x 6
   * offset grid (30 samples) times 2 groups times 4 neighbours of 6 bytes, one burst each.
   */
  cr_assert_eq(cost.gather.bytes, 4 * 360 + 30 * 2 * 4 * 6 + weight_bytes);
  cr_assert_eq(cost.gather.bursts, 4 * 6 + 240 + weight_bursts);
  cr_assert_eq(cost.gather.row_misses, 4 + 2 * 30 * 2 + 14);

  /*
   * Buffer: the largest extended patch is 4 x 4: x and q 192 bytes each, and a 4 x 4 offset
   * grid of k and v samples, 2 * 12 * 16 = 384 bytes; two slots for double buffering.
   */
  cr_assert_eq(cost.patch_footprint_bytes, 192 + 192 + 384);
  cr_assert_eq(cost.buffer_slots, 2);
  cr_assert_eq(cost.buffer_bytes, 2 * 768);
  cr_assert(cost.fits);
}

Test(oracle, unsliced_equals_whole_map_traffic) {
  dsn_preset zcu = load_builtin("zcu102");
  dsr_deform_attn layers[] = {make_layer(12, 5, 6, 2, 2, 3, 1),
                              make_layer(64, 56, 56, 1, 2, 9, 8),
                              make_layer(512, 7, 7, 8, 16, 3, 1)};
  for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
    dsn_layer_cost cost;
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(dsn_oracle_layer(&layers[i], dsr_slice_none(), &zcu, &cost, &err), DS_OK);
    int64_t map_bytes = (int64_t)layers[i].height * layers[i].width * layers[i].channels;
    cr_assert_eq(cost.patch_count, 1);
    cr_assert_eq(cost.buffer_slots, 1);
    cr_assert_eq(cost.sliced.bytes, 2 * map_bytes + cost.weight_bytes);
    cr_assert_eq(cost.sliced.bytes, cost.lower_bound.bytes);
    cr_assert_eq(cost.sliced.bursts, cost.lower_bound.bursts);
    cr_assert_eq(cost.sliced.row_misses, cost.lower_bound.row_misses);
  }
}

/* DAT-T++ geometry at 224 x 224: stages 1 to 4. */
static void realistic_layers(dsr_deform_attn layers[4]) {
  layers[0] = make_layer(64, 56, 56, 1, 2, 9, 8);
  layers[1] = make_layer(128, 28, 28, 2, 4, 7, 4);
  layers[2] = make_layer(256, 14, 14, 4, 8, 5, 2);
  layers[3] = make_layer(512, 7, 7, 8, 16, 3, 1);
}

Test(oracle, gather_above_sliced_above_bound) {
  dsr_deform_attn layers[4];
  realistic_layers(layers);
  const char *presets[] = {"zcu102", "kv260", "pynq-z2"};
  dsr_slice slices[] = {{1, 1, 0, 0}, {2, 2, 0, 0}, {2, 2, 1, 0}, {2, 1, 2, 1}};
  for (size_t p = 0; p < 3; p++) {
    dsn_preset preset = load_builtin(presets[p]);
    for (int32_t l = 0; l < 4; l++) {
      for (size_t s = 0; s < sizeof slices / sizeof slices[0]; s++) {
        dsn_layer_cost c;
        ds_error err;
        ds_error_clear(&err);
        cr_assert_eq(dsn_oracle_layer(&layers[l], slices[s], &preset, &c, &err), DS_OK, "%s",
                     err.message);
        cr_assert_geq(c.gather.bursts, c.sliced.bursts, "%s layer %d slice %zu", presets[p],
                      l, s);
        cr_assert_geq(c.sliced.bursts, c.lower_bound.bursts);
        cr_assert_geq(c.gather.bytes, c.sliced.bytes);
        cr_assert_geq(c.sliced.bytes, c.lower_bound.bytes);
        cr_assert_geq(c.gather.time_ns, c.sliced.time_ns);
        cr_assert_geq(c.sliced.time_ns, c.lower_bound.time_ns);
      }
    }
  }
}

Test(oracle, model_sums_layers) {
  dsn_preset zcu = load_builtin("zcu102");
  dsr_deform_attn layers[4];
  realistic_layers(layers);
  test_model t;
  make_model(&t, layers, 4);
  dsr_slice slices[4] = {{2, 2, 1, 0}, {1, 1, 0, 0}, {4, 2, 2, 0}, {1, 3, 0, 1}};
  dsn_model_cost cost;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_oracle_model(&t.model, slices, &zcu, &cost, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(cost.layer_count, 4);
  int64_t bursts = 0, bytes = 0;
  for (int32_t l = 0; l < 4; l++) {
    cr_assert_eq(cost.layers[l].slice.rows, slices[l].rows);
    bursts += cost.layers[l].sliced.bursts;
    bytes += cost.layers[l].sliced.bytes;
  }
  cr_assert_eq(cost.sliced.bursts, bursts);
  cr_assert_eq(cost.sliced.bytes, bytes);

  char *table = NULL;
  size_t table_size = 0;
  FILE *out = open_memstream(&table, &table_size);
  dsn_model_cost_print(&cost, &zcu, out);
  fclose(out);
  cr_assert_not_null(strstr(table, "4x2+2"), "%s", table);
  cr_assert_not_null(strstr(table, "1x3+0c"), "%s", table);
  char total[64];
  snprintf(total, sizeof total, "%lld", (long long)cost.sliced.bytes);
  cr_assert_not_null(strstr(table, total), "%s", table);
  free(table);
  dsn_model_cost_free(&cost);
}

Test(oracle, bad_slice_and_geometry_rejected) {
  dsn_preset zcu = load_builtin("zcu102");
  dsr_deform_attn layer = make_layer(12, 5, 6, 2, 2, 3, 1);
  dsn_layer_cost cost;
  ds_error err;
  dsr_slice too_many = {6, 1, 0, 0};
  ds_error_clear(&err);
  cr_assert_eq(dsn_oracle_layer(&layer, too_many, &zcu, &cost, &err), DS_ERR_SLICE_CONFIG);
  cr_assert_not_null(strstr(err.message, "6x1+0"), "%s", err.message);
  dsr_slice bad_semantics = {1, 1, 0, 7};
  ds_error_clear(&err);
  cr_assert_eq(dsn_oracle_layer(&layer, bad_semantics, &zcu, &cost, &err),
               DS_ERR_SLICE_CONFIG);

  /* A 1-pixel patch cannot feed a 5 x 5 offset conv with no padding. */
  dsr_deform_attn no_pad = layer;
  no_pad.offset_kernel = 5;
  no_pad.offset_pad = 0;
  dsr_slice thin = {5, 1, 0, 0};
  ds_error_clear(&err);
  cr_assert_eq(dsn_oracle_layer(&no_pad, thin, &zcu, &cost, &err), DS_ERR_SLICE_CONFIG);
  cr_assert_not_null(strstr(err.message, "too small"), "%s", err.message);

  dsr_deform_attn bad_groups = layer;
  bad_groups.groups = 5;
  ds_error_clear(&err);
  cr_assert_eq(dsn_oracle_layer(&bad_groups, dsr_slice_none(), &zcu, &cost, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "5 groups for 12 channels"), "%s", err.message);
}

/* Returns 1 when slices a and b cut the same extended patches. */
static int same_extended_patches(const dsr_deform_attn *layer, dsr_slice a, dsr_slice b) {
  if (a.rows != b.rows || a.cols != b.cols)
    return 0;
  for (int32_t i = 0; i < a.rows * a.cols; i++) {
    dsr_patch pa, pb;
    dsr_slice_patch(layer->height, layer->width, a, i / a.cols, i % a.cols, &pa);
    dsr_slice_patch(layer->height, layer->width, b, i / b.cols, i % b.cols, &pb);
    if (memcmp(&pa, &pb, sizeof pa) != 0)
      return 0;
  }
  return 1;
}

Test(oracle, candidates_fit_and_start_unsliced) {
  dsn_preset zcu = load_builtin("zcu102");
  dsr_deform_attn layer = make_layer(12, 3, 5, 2, 2, 3, 1);
  dsn_candidates c;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_candidates_build(&layer, &zcu, 0, &c, &err), DS_OK, "%s", err.message);
  cr_assert_eq(c.none_fit, 0);
  cr_assert_eq(c.slices[0].rows, 1);
  cr_assert_eq(c.slices[0].cols, 1);
  cr_assert_eq(c.slices[0].overlap, 0);

  /* rows 1..3, cols 1..5 and overlaps 0, 1, 2 (4 is larger than the 3-pixel side), less
   * the configurations that repeat another, such as 1x1+1. */
  cr_assert_lt(c.count, 3 * 5 * 3);
  cr_assert_gt(c.count, 3 * 5);
  for (int32_t i = 0; i < c.count; i++) {
    cr_assert(c.costs[i].fits);
    cr_assert_leq(c.slices[i].overlap, 3);
    cr_assert_geq(c.costs[i].sliced.bursts, c.costs[c.min_traffic].sliced.bursts);
    for (int32_t j = 0; j < i; j++)
      cr_assert(!same_extended_patches(&layer, c.slices[i], c.slices[j]), "%d and %d repeat",
                i, j);
    if (i > 0)
      cr_assert(!same_extended_patches(&layer, dsr_slice_none(), c.slices[i]) ||
                    c.slices[i].rows * c.slices[i].cols > 1,
                "candidate %d is the unsliced layer again", i);
  }
  int32_t physical_count = c.count;
  dsn_candidates_free(&c);

  /* Crop semantics doubles every configuration except the unsliced one. */
  ds_error_clear(&err);
  cr_assert_eq(dsn_candidates_build(&layer, &zcu, DSN_SEMANTICS_PHYSICAL | DSN_SEMANTICS_CROP,
                                    &c, &err),
               DS_OK);
  cr_assert_eq(c.count, 2 * physical_count - 1);
  cr_assert_eq(c.slices[0].semantics, DSR_SLICE_PHYSICAL);
  cr_assert_eq(c.slices[1].semantics, DSR_SLICE_PHYSICAL);
  cr_assert_eq(c.slices[2].semantics, DSR_SLICE_CROP);
  dsn_candidates_free(&c);
}

static int32_t find_slice(const dsn_candidates *c, dsr_slice slice) {
  for (int32_t i = 0; i < c->count; i++) {
    if (memcmp(&c->slices[i], &slice, sizeof slice) == 0)
      return i;
  }
  return -1;
}

Test(oracle, candidates_skip_whole_map_patches) {
  dsn_preset zcu = load_builtin("zcu102");
  dsr_deform_attn layer = make_layer(12, 3, 3, 2, 2, 1, 1);
  dsn_candidates c;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_candidates_build(&layer, &zcu, 0, &c, &err), DS_OK, "%s", err.message);
  /*
   * On a 3-pixel side, 1 part covers the side whatever the overlap; 2 or 3 parts with overlap
   * 2 extend every part to the whole side. So each split other than 1x1 keeps overlaps 0 and
   * 1 only (8 splits times 2), plus 1x1+0.
   */
  cr_assert_eq(c.count, 17);
  dsr_slice unsliced_again = {2, 1, 2, DSR_SLICE_PHYSICAL};
  dsr_slice clipped = {1, 1, 1, DSR_SLICE_PHYSICAL};
  dsr_slice kept = {2, 3, 1, DSR_SLICE_PHYSICAL};
  cr_assert_lt(find_slice(&c, unsliced_again), 0);
  cr_assert_lt(find_slice(&c, clipped), 0);
  cr_assert_geq(find_slice(&c, kept), 0);
  dsn_candidates_free(&c);
}

Test(oracle, candidates_limited_by_buffer) {
  dsn_preset pynq = load_builtin("pynq-z2"); /* 147456-byte feature buffer */
  dsr_deform_attn layer = make_layer(64, 56, 56, 1, 2, 9, 8);
  dsn_candidates c;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_candidates_build(&layer, &pynq, 0, &c, &err), DS_OK, "%s", err.message);
  cr_assert_eq(c.none_fit, 0);
  cr_assert_gt(c.count, 0);
  for (int32_t i = 0; i < c.count; i++) {
    cr_assert_leq(c.costs[i].buffer_bytes, pynq.feature_buffer_bytes);
    cr_assert(c.slices[i].rows * c.slices[i].cols > 1, "the whole map cannot fit");
  }
  dsn_candidates_free(&c);

  /* With a 1 KiB buffer nothing fits: the smallest patch is returned, flagged. */
  pynq.feature_buffer_bytes = 1024;
  ds_error_clear(&err);
  cr_assert_eq(dsn_candidates_build(&layer, &pynq, 0, &c, &err), DS_OK);
  cr_assert_eq(c.none_fit, 1);
  cr_assert_eq(c.count, 1);
  cr_assert_eq(c.slices[0].rows, 8);
  cr_assert_eq(c.slices[0].cols, 8);
  cr_assert_eq(c.slices[0].overlap, 0);
  cr_assert_eq(c.costs[0].fits, 0);
  dsn_candidates_free(&c);
}

Test(oracle, slice_text_round_trip) {
  char text[40];
  dsr_slice slice = {2, 3, 4, DSR_SLICE_CROP};
  dsn_slice_format(slice, text, (int32_t)sizeof text);
  cr_assert_str_eq(text, "2x3+4c");
  dsr_slice back;
  cr_assert_eq(dsn_slice_parse(text, &back), 0);
  cr_assert_eq(memcmp(&back, &slice, sizeof slice), 0);
  cr_assert_eq(dsn_slice_parse("2x2+1", &back), 0);
  cr_assert_eq(back.semantics, DSR_SLICE_PHYSICAL);
  cr_assert_eq(dsn_slice_parse("2x2", &back), -1);
  cr_assert_eq(dsn_slice_parse("2x2+1cc", &back), -1);
  cr_assert_eq(dsn_slice_parse("0x2+1", &back), -1);
}

/* ---- DMA schedules ------------------------------------------------------------------------ */

Test(schedule, sums_equal_oracle) {
  const char *presets[] = {"zcu102", "pynq-z2"};
  dsr_deform_attn layers[4];
  realistic_layers(layers);
  layers[1] = make_layer(12, 5, 6, 2, 2, 3, 1);
  test_model t;
  make_model(&t, layers, 4);
  dsr_slice configs[][4] = {
      {{1, 1, 0, 0}, {1, 1, 0, 0}, {1, 1, 0, 0}, {1, 1, 0, 0}},
      {{2, 2, 1, 0}, {2, 2, 1, 0}, {3, 2, 2, 0}, {7, 7, 4, 0}},
      {{8, 8, 4, 0}, {5, 6, 1, 1}, {1, 8, 2, 0}, {2, 3, 0, 0}},
  };
  /* Regions on 64 KiB boundaries inside pynq-z2's 512 MiB. */
  dsn_layer_addresses addresses[4] = {
      {0x1000000, 0x2000000, 0x3000000}, {0x1100000, 0x2100000, 0x3100000},
      {0x1200000, 0x2200000, 0x3200000}, {0x1300000, 0x2300000, 0x3300000}};
  for (size_t p = 0; p < 2; p++) {
    dsn_preset preset = load_builtin(presets[p]);
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
      dsr_schedule schedule;
      dsn_model_cost cost;
      ds_error err;
      ds_error_clear(&err);
      cr_assert_eq(dsn_schedule_build(&t.model, configs[c], &preset, addresses, &schedule,
                                      &err),
                   DS_OK, "%s", err.message);
      cr_assert_eq(dsn_oracle_model(&t.model, configs[c], &preset, &cost, &err), DS_OK);
      for (int32_t l = 0; l < 4; l++) {
        dsn_traffic traffic;
        dsn_schedule_traffic(&schedule, &preset, l, &traffic);
        cr_assert_eq(traffic.bytes, cost.layers[l].sliced.bytes, "%s config %zu layer %d",
                     presets[p], c, l);
        cr_assert_eq(traffic.bursts, cost.layers[l].sliced.bursts);
        cr_assert_eq(traffic.row_misses, cost.layers[l].sliced.row_misses);
      }
      dsn_traffic total;
      dsn_schedule_traffic(&schedule, &preset, -1, &total);
      cr_assert_eq(total.bytes, cost.sliced.bytes);
      cr_assert_eq(total.bursts, cost.sliced.bursts);
      int32_t steps = 0;
      for (int32_t l = 0; l < 4; l++)
        steps += configs[c][l].rows * configs[c][l].cols;
      cr_assert_eq(schedule.step_count, steps);
      dsn_model_cost_free(&cost);
      dsn_schedule_free(&schedule);
    }
  }
}

Test(schedule, descriptors_of_hand_built_layer) {
  dsn_preset zcu = load_builtin("zcu102");
  dsr_deform_attn layer = make_layer(12, 5, 6, 2, 2, 3, 1);
  test_model t;
  make_model(&t, &layer, 1);
  dsr_slice slice = {2, 2, 1, 0};
  dsn_layer_addresses addresses = {0x1000, 0x8000, 0x40000};
  dsr_schedule s;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_schedule_build(&t.model, &slice, &zcu, &addresses, &s, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(s.step_count, 4);
  cr_assert_eq(s.steps[0].load_count, DSR_DEFORM_PARAM_COUNT + 1);
  cr_assert_eq(s.steps[1].load_count, 1);
  cr_assert_eq(s.descriptor_count, DSR_DEFORM_PARAM_COUNT + 4 * 2);

  /* Weights: proj_q weight (144 bytes) at the base, its bias after two 64-byte bursts. */
  const dsr_dma_descriptor *w = &s.descriptors[0];
  cr_assert_eq(w->buffer, DSR_BUFFER_WEIGHTS);
  cr_assert_eq(w->dram_address, 0x40000);
  cr_assert_eq(w->row_bytes, 144);
  cr_assert_eq(s.descriptors[1].dram_address, 0x40000 + 192);
  cr_assert_eq(s.descriptors[1].chip_offset_bytes, 144);

  /* Patch 3 = (1, 1): extended rows [1, 5), cols [2, 6); core rows [2, 5), cols [3, 6). */
  const dsr_dma_step *step = &s.steps[3];
  cr_assert_eq(step->patch, 3);
  const dsr_dma_descriptor *load = &s.descriptors[step->first_descriptor];
  const dsr_dma_descriptor *store = &s.descriptors[step->first_descriptor + 1];
  cr_assert_eq(load->direction, DSR_DMA_LOAD);
  cr_assert_eq(load->buffer, DSR_BUFFER_FEATURE_IN);
  cr_assert_eq(load->dram_address, 0x1000 + (1 * 6 + 2) * 12);
  cr_assert_eq(load->row_bytes, 4 * 12);
  cr_assert_eq(load->row_count, 4);
  cr_assert_eq(load->stride_bytes, 6 * 12);
  cr_assert_eq(load->slot, 1);
  cr_assert_eq(load->bank, 3);
  cr_assert_eq(store->direction, DSR_DMA_STORE);
  cr_assert_eq(store->buffer, DSR_BUFFER_FEATURE_OUT);
  cr_assert_eq(store->dram_address, 0x8000 + (2 * 6 + 3) * 12);
  cr_assert_eq(store->row_bytes, 3 * 12);
  cr_assert_eq(store->row_count, 3);
  cr_assert_eq(store->stride_bytes, 6 * 12);
  cr_assert_eq(store->slot, 1);

  /* Slots alternate patch by patch. */
  for (int32_t i = 0; i < 4; i++) {
    const dsr_dma_descriptor *d =
        &s.descriptors[s.steps[i].first_descriptor + s.steps[i].load_count - 1];
    cr_assert_eq(d->slot, i % 2);
    cr_assert_eq(d->bank, i % zcu.feature_banks);
  }
  dsn_schedule_free(&s);

  /* The default layout keeps the regions apart, each on a DRAM stripe boundary: 8 banks of
   * 8 KiB rows make 64 KiB below the row field. */
  dsn_layer_addresses layout;
  uint64_t end = 0;
  ds_error_clear(&err);
  cr_assert_eq(dsn_schedule_layout(&t.model, &zcu, 100, &layout, &end, &err), DS_OK);
  cr_assert_eq(layout.input, 65536);
  cr_assert_eq(layout.output, 2 * 65536);
  cr_assert_eq(layout.weights, 3 * 65536);
  cr_assert_eq(end, 4 * 65536, "25 bursts of weights (1600 bytes) fit one stripe");

  dsr_slice too_many = {1, 7, 0, 0};
  ds_error_clear(&err);
  cr_assert_eq(dsn_schedule_build(&t.model, &too_many, &zcu, &addresses, &s, &err),
               DS_ERR_SLICE_CONFIG);
  cr_assert_eq(s.step_count, 0);
}

/* ---- Search ------------------------------------------------------------------------------- */

/* Records the configurations the search requests (thread-safe). */
typedef struct eval_log {
  pthread_mutex_t lock;
  int32_t calls;
  int32_t capacity;
  char **keys;
  const char *fail_key;  /* report an error for this configuration */
  int32_t return_nan;
} eval_log;

static void eval_log_init(eval_log *log) {
  memset(log, 0, sizeof *log);
  pthread_mutex_init(&log->lock, NULL);
}

static void eval_log_free(eval_log *log) {
  for (int32_t i = 0; i < log->calls; i++)
    free(log->keys[i]);
  free(log->keys);
  pthread_mutex_destroy(&log->lock);
}

static int32_t eval_log_has(const eval_log *log, const char *key) {
  for (int32_t i = 0; i < log->calls; i++) {
    if (strcmp(log->keys[i], key) == 0)
      return 1;
  }
  return 0;
}

/*
 * Synthetic validation accuracy: 90 % for an unsliced layer; a sliced layer loses a penalty
 * that overlap shrinks (2 / (1 + overlap)) and that grows slowly with the patch count and
 * with the cols more than the rows, weighted more in later layers. Overlap costs DRAM traffic
 * and buffer space, so the front trades the two.
 */
static double synthetic_accuracy(void *user, const dsr_slice *slices, int32_t layer_count,
                                 ds_error *err) {
  eval_log *log = user;
  char *key = dsn_config_key(slices, layer_count);
  if (log != NULL) {
    pthread_mutex_lock(&log->lock);
    if (log->calls == log->capacity) {
      log->capacity = log->capacity == 0 ? 256 : log->capacity * 2;
      log->keys = realloc(log->keys, (size_t)log->capacity * sizeof *log->keys);
    }
    log->keys[log->calls++] = key;
    pthread_mutex_unlock(&log->lock);
    if (log->fail_key != NULL && strcmp(log->fail_key, key) == 0)
      ds_fail(err, DS_ERR_DATA, "validation images are missing");
    if (log->return_nan)
      return NAN;
  }
  double accuracy = 90.0;
  for (int32_t l = 0; l < layer_count; l++) {
    int32_t patches = slices[l].rows * slices[l].cols;
    if (patches == 1)
      continue;
    accuracy -= (l + 1) * (2.0 / (1.0 + slices[l].overlap) + 0.125 * (patches - 1));
    accuracy -= 0.01 * (slices[l].rows + 2 * slices[l].cols);
  }
  if (log == NULL)
    free(key);
  return accuracy;
}

static double synthetic_test_accuracy(void *user, const dsr_slice *slices,
                                      int32_t layer_count, ds_error *err) {
  (void)user;
  return synthetic_accuracy(NULL, slices, layer_count, err) - 1.0;
}

/*
 * Two layers, 16 x 16 x 16 and 32 x 8 x 8, and a 6000-byte feature buffer: neither layer
 * fits unsliced, so the front trades overlap (accuracy) against traffic.
 */
static void search_layers(dsr_deform_attn layers[2]) {
  layers[0] = make_layer(16, 16, 16, 2, 2, 3, 1);
  layers[1] = make_layer(32, 8, 8, 2, 2, 3, 1);
}

static dsn_preset search_preset(void) {
  dsn_preset preset = load_builtin("zcu102");
  preset.feature_buffer_bytes = 6000;
  return preset;
}

static void options_for_test(dsn_search_options *o, eval_log *log) {
  dsn_search_options_default(o);
  o->seed = 7;
  o->population = 32;
  o->generations = 60;
  o->exhaustive_budget = 0;
  o->evaluate = synthetic_accuracy;
  o->evaluate_user = log;
}

static void run_search(const test_model *t, const dsn_search_options *o,
                       dsn_search_result *result) {
  dsn_preset zcu = search_preset();
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dsn_search_run(&t->model, &zcu, o, result, &err);
  cr_assert_eq(status, DS_OK, "%s", err.message);
}

/* Brute-force front over every combination: the keys and objectives of the non-dominated
 * configurations. */
typedef struct front_set {
  int32_t count;
  char keys[4096][64];
  double accuracy[4096];
  int64_t bytes[4096];
} front_set;

static int32_t brute_force_front(const dsr_deform_attn layers[2], double max_drop,
                                 front_set *set, int64_t *space) {
  dsn_preset zcu = search_preset();
  dsn_candidates c[2];
  ds_error err;
  for (int32_t l = 0; l < 2; l++) {
    ds_error_clear(&err);
    cr_assert_eq(dsn_candidates_build(&layers[l], &zcu, 0, &c[l], &err), DS_OK);
  }
  int32_t n = c[0].count * c[1].count;
  *space = n;
  double *accuracy = malloc((size_t)n * sizeof *accuracy);
  int64_t *bytes = malloc((size_t)n * sizeof *bytes);
  dsr_slice unsliced[2] = {dsr_slice_none(), dsr_slice_none()};
  double reference = synthetic_accuracy(NULL, unsliced, 2, &err);
  for (int32_t i = 0; i < n; i++) {
    dsr_slice pair[2] = {c[0].slices[i % c[0].count], c[1].slices[i / c[0].count]};
    accuracy[i] = synthetic_accuracy(NULL, pair, 2, &err);
    bytes[i] = 64 * (c[0].costs[i % c[0].count].sliced.bursts +
                     c[1].costs[i / c[0].count].sliced.bursts);
  }
  int32_t front = 0;
  for (int32_t i = 0; i < n; i++) {
    if (max_drop >= 0 && reference - accuracy[i] > max_drop)
      continue;
    int dominated = 0;
    for (int32_t j = 0; j < n && !dominated; j++) {
      if (bytes[j] > bytes[i])
        continue;
      if (max_drop >= 0 && reference - accuracy[j] > max_drop)
        continue;
      dominated = accuracy[j] >= accuracy[i] && bytes[j] <= bytes[i] &&
                  (accuracy[j] > accuracy[i] || bytes[j] < bytes[i]);
    }
    if (dominated)
      continue;
    dsr_slice pair[2] = {c[0].slices[i % c[0].count], c[1].slices[i / c[0].count]};
    char *key = dsn_config_key(pair, 2);
    snprintf(set->keys[front], 64, "%s", key);
    set->accuracy[front] = accuracy[i];
    set->bytes[front] = bytes[i];
    front++;
    free(key);
  }
  set->count = front;
  free(accuracy);
  free(bytes);
  dsn_candidates_free(&c[0]);
  dsn_candidates_free(&c[1]);
  return front;
}

static int32_t find_key(const front_set *set, const char *key) {
  for (int32_t j = 0; j < set->count; j++) {
    if (strcmp(set->keys[j], key) == 0)
      return j;
  }
  return -1;
}

static void assert_front_sorted(const dsn_search_result *r) {
  for (int32_t i = 1; i < r->point_count; i++) {
    if (r->points[i].accuracy == r->points[i - 1].accuracy) {
      cr_assert_eq(r->points[i].dram_bytes, r->points[i - 1].dram_bytes);
    } else {
      cr_assert_lt(r->points[i].accuracy, r->points[i - 1].accuracy);
      cr_assert_lt(r->points[i].dram_bytes, r->points[i - 1].dram_bytes);
    }
  }
}

/* The front contains exactly the configurations of set, tied ones included. */
static void assert_front_is(const dsn_search_result *r, const front_set *set) {
  cr_assert_eq(r->point_count, set->count, "front has %d points, expected %d",
               r->point_count, set->count);
  for (int32_t i = 0; i < r->point_count; i++) {
    char *key = dsn_config_key(r->points[i].slices, r->layer_count);
    cr_assert_geq(find_key(set, key), 0, "front point %s is not on the true front", key);
    free(key);
  }
  assert_front_sorted(r);
}

/*
 * Every point of the front is on the true front and every objective vector of the true
 * front is reached. Configurations tied in both objectives share one vector, so a search
 * may keep only some of them.
 */
static void assert_front_covers(const dsn_search_result *r, const front_set *set) {
  for (int32_t i = 0; i < r->point_count; i++) {
    char *key = dsn_config_key(r->points[i].slices, r->layer_count);
    int32_t j = find_key(set, key);
    cr_assert_geq(j, 0, "front point %s is not on the true front", key);
    cr_assert_eq(r->points[i].accuracy, set->accuracy[j]);
    cr_assert_eq(r->points[i].dram_bytes, set->bytes[j]);
    free(key);
  }
  for (int32_t j = 0; j < set->count; j++) {
    int reached = 0;
    for (int32_t i = 0; i < r->point_count && !reached; i++)
      reached = r->points[i].accuracy == set->accuracy[j] &&
                r->points[i].dram_bytes == set->bytes[j];
    cr_assert(reached, "true front point %s (%.4f %%, %lld bytes) was not found",
              set->keys[j], set->accuracy[j], (long long)set->bytes[j]);
  }
  assert_front_sorted(r);
}

static void assert_same_front(const dsn_search_result *a, const dsn_search_result *b) {
  cr_assert_eq(a->point_count, b->point_count);
  for (int32_t i = 0; i < a->point_count; i++) {
    cr_assert_eq(memcmp(a->points[i].slices, b->points[i].slices,
                        (size_t)a->layer_count * sizeof(dsr_slice)),
                 0, "point %d differs", i);
    cr_assert_eq(a->points[i].accuracy, b->points[i].accuracy);
    cr_assert_eq(a->points[i].dram_bytes, b->points[i].dram_bytes);
  }
}

/* Number of distinct accuracies on a front. */
static int32_t distinct_accuracies(const dsn_search_result *r) {
  int32_t count = 0;
  for (int32_t i = 0; i < r->point_count; i++)
    count += i == 0 || r->points[i].accuracy != r->points[i - 1].accuracy;
  return count;
}

Test(search, exhaustive_finds_true_front) {
  dsr_deform_attn layers[2];
  search_layers(layers);
  test_model t;
  make_model(&t, layers, 2);
  static front_set expected;
  int64_t space = 0;
  brute_force_front(layers, -1, &expected, &space);

  eval_log log;
  eval_log_init(&log);
  dsn_search_options o;
  options_for_test(&o, &log);
  o.exhaustive_budget = 100000;
  dsn_search_result r;
  run_search(&t, &o, &r);
  cr_assert_eq(r.exhaustive, 1);
  cr_assert_eq(r.space_size, space);
  /* Every configuration, plus the unsliced reference, which does not fit this buffer. */
  cr_assert_eq(r.evaluations, space + 1);
  cr_assert_eq(log.calls, space + 1);
  assert_front_is(&r, &expected);
  /* Rows that start inside a burst cost a burst more, which makes some overlaps dearer than
   * others; the front still trades accuracy against traffic. */
  cr_assert_geq(distinct_accuracies(&r), 3, "the synthetic problem should trade accuracy "
                                            "against traffic");
  cr_assert_float_eq(r.reference_accuracy, 90.0, 1e-12);
  cr_assert_eq(r.reference_fits, 0);
  cr_assert_gt(r.gather_bytes, r.points[0].dram_bytes);
  cr_assert_eq(r.unsliced_bytes, r.lower_bound_bytes);
  for (int32_t i = 0; i < r.point_count; i++)
    cr_assert_leq(r.points[i].buffer_bytes, 6000);
  dsn_search_result_free(&r);
  eval_log_free(&log);
}

Test(search, nsga2_recovers_front) {
  dsr_deform_attn layers[2];
  search_layers(layers);
  test_model t;
  make_model(&t, layers, 2);
  static front_set expected;
  int64_t space = 0;
  brute_force_front(layers, -1, &expected, &space);

  /* Several seeds, so that a pass is not one lucky draw. */
  for (uint64_t seed = 1; seed <= 4; seed++) {
    eval_log log;
    eval_log_init(&log);
    dsn_search_options o;
    options_for_test(&o, &log);
    o.seed = seed;
    dsn_search_result r;
    run_search(&t, &o, &r);
    cr_assert_eq(r.exhaustive, 0);
    cr_assert_lt(r.evaluations, space / 4, "NSGA-II should need far fewer evaluations");
    assert_front_covers(&r, &expected);

    /* The first generation contains the per-layer minimal-traffic configuration. */
    dsn_preset preset = search_preset();
    dsn_candidates c[2];
    dsr_slice minimal[2];
    ds_error err;
    for (int32_t l = 0; l < 2; l++) {
      ds_error_clear(&err);
      cr_assert_eq(dsn_candidates_build(&layers[l], &preset, 0, &c[l], &err), DS_OK);
      minimal[l] = c[l].slices[c[l].min_traffic];
      dsn_candidates_free(&c[l]);
    }
    char *key = dsn_config_key(minimal, 2);
    cr_assert_str_eq(log.keys[0], "1x1+0,1x1+0", "the unsliced reference comes first");
    cr_assert_str_eq(log.keys[1], key);
    free(key);
    dsn_search_result_free(&r);
    eval_log_free(&log);
  }
}

Test(search, unsliced_wins_when_it_fits) {
  dsr_deform_attn layers[2];
  search_layers(layers);
  test_model t;
  make_model(&t, layers, 2);
  eval_log log;
  eval_log_init(&log);
  dsn_search_options o;
  options_for_test(&o, &log);
  o.generations = 3;
  dsn_preset zcu = load_builtin("zcu102");
  dsn_search_result r;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_search_run(&t.model, &zcu, &o, &r, &err), DS_OK, "%s", err.message);
  /* With the whole map on chip, one pass is both the most accurate and the least traffic. */
  cr_assert_eq(r.reference_fits, 1);
  cr_assert_eq(r.point_count, 1);
  cr_assert_eq(r.points[0].slices[0].rows, 1);
  cr_assert_eq(r.points[0].slices[1].cols, 1);
  cr_assert_eq(r.points[0].dram_bytes, r.lower_bound_bytes);
  cr_assert_str_eq(log.keys[0], "1x1+0,1x1+0");
  cr_assert_eq(r.evaluations, log.calls);
  dsn_search_result_free(&r);
  eval_log_free(&log);
}

Test(search, deterministic_for_a_seed) {
  dsr_deform_attn layers[2];
  search_layers(layers);
  test_model t;
  make_model(&t, layers, 2);
  dsn_search_options o;
  eval_log first_log, second_log;
  eval_log_init(&first_log);
  eval_log_init(&second_log);
  options_for_test(&o, &first_log);
  o.generations = 5;
  dsn_search_result first, second;
  run_search(&t, &o, &first);
  o.evaluate_user = &second_log;
  run_search(&t, &o, &second);
  assert_same_front(&first, &second);
  cr_assert_eq(first_log.calls, second_log.calls);
  for (int32_t i = 0; i < first_log.calls; i++)
    cr_assert_str_eq(first_log.keys[i], second_log.keys[i]);
  dsn_search_result_free(&first);
  dsn_search_result_free(&second);
  eval_log_free(&first_log);
  eval_log_free(&second_log);
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lines of a journal file, sorted. */
static int32_t sorted_lines(const char *path, char ***lines) {
  char *text = read_text(path);
  int32_t count = 0;
  for (char *p = text; *p != '\0'; p++)
    count += *p == '\n';
  *lines = calloc((size_t)count + 1, sizeof **lines);
  int32_t i = 0;
  for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n"))
    (*lines)[i++] = strdup(line);
  free(text);
  qsort(*lines, (size_t)i, sizeof **lines, compare_strings);
  return i;
}

Test(search, thread_count_does_not_change_result) {
  dsr_deform_attn layers[2];
  search_layers(layers);
  test_model t;
  make_model(&t, layers, 2);
  char journal1[512], journal2[512];
  test_path(journal1, sizeof journal1, "threads1.jsonl");
  test_path(journal2, sizeof journal2, "threads2.jsonl");

  dsn_search_options o;
  options_for_test(&o, NULL);
  o.generations = 8;
  o.journal_path = journal1;
  dsn_search_result one, two;
  run_search(&t, &o, &one);
  o.threads = 2;
  o.journal_path = journal2;
  run_search(&t, &o, &two);
  assert_same_front(&one, &two);
  cr_assert_eq(one.evaluations, two.evaluations);

  char **lines1, **lines2;
  int32_t count1 = sorted_lines(journal1, &lines1);
  int32_t count2 = sorted_lines(journal2, &lines2);
  cr_assert_eq(count1, one.evaluations);
  cr_assert_eq(count1, count2);
  for (int32_t i = 0; i < count1; i++) {
    cr_assert_str_eq(lines1[i], lines2[i]);
    free(lines1[i]);
    free(lines2[i]);
  }
  free(lines1);
  free(lines2);
  dsn_search_result_free(&one);
  dsn_search_result_free(&two);
  remove(journal1);
  remove(journal2);
}

/* Keys recorded on complete lines of a journal. */
static int32_t journal_keys(const char *path, char keys[][64]) {
  char *text = read_text(path);
  int32_t count = 0;
  char *line = text;
  for (char *newline; (newline = strchr(line, '\n')) != NULL; line = newline + 1) {
    *newline = '\0';
    cJSON *root = cJSON_Parse(line);
    cr_assert_not_null(root, "journal line is not JSON: %s", line);
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(root, "key");
    cr_assert(cJSON_IsString(key));
    snprintf(keys[count++], 64, "%s", key->valuestring);
    cJSON_Delete(root);
  }
  free(text);
  return count;
}

static void warning_counter(void *user, const char *message) {
  (void)message;
  (*(int32_t *)user)++;
}

Test(search, journal_resume_after_kill) {
  dsr_deform_attn layers[2];
  search_layers(layers);
  test_model t;
  make_model(&t, layers, 2);
  char journal[512];
  test_path(journal, sizeof journal, "resume.jsonl");

  dsn_search_options o;
  options_for_test(&o, NULL);
  o.generations = 6;
  o.journal_path = journal;
  o.journal_tag = "synthetic v1";
  dsn_search_result full;
  run_search(&t, &o, &full);
  cr_assert_gt(full.evaluations, 10);

  /* Simulate a kill during the last write: cut the file in the middle of its last line. */
  char *text = read_text(journal);
  size_t length = strlen(text);
  cr_assert_eq(text[length - 1], '\n');
  size_t last_start = length - 1;
  while (last_start > 0 && text[last_start - 1] != '\n')
    last_start--;
  size_t cut = last_start + (length - last_start) / 2;
  cr_assert_eq(truncate(journal, (off_t)cut), 0);
  free(text);

  static char recorded[4096][64];
  int32_t recorded_count = journal_keys(journal, recorded);
  cr_assert_eq(recorded_count, full.evaluations - 1);

  eval_log log;
  eval_log_init(&log);
  int32_t warnings = 0;
  o.evaluate_user = &log;
  o.log = warning_counter;
  o.log_user = &warnings;
  dsn_search_result resumed;
  run_search(&t, &o, &resumed);
  cr_assert_eq(resumed.journal_skipped_lines, 1);
  cr_assert_eq(warnings, 1);
  cr_assert_eq(resumed.journal_hits, recorded_count, "hits %d, recorded %d",
               resumed.journal_hits, recorded_count);
  cr_assert_eq(resumed.evaluations, 1, "only the torn record is evaluated again");
  cr_assert_eq(log.calls, 1);
  for (int32_t i = 0; i < recorded_count; i++)
    cr_assert(!eval_log_has(&log, recorded[i]), "%s was evaluated again", recorded[i]);
  assert_same_front(&full, &resumed);

  /* The torn bytes are gone: every line of the journal parses, one per configuration. */
  static char after[4096][64];
  cr_assert_eq(journal_keys(journal, after), full.evaluations);

  /* A third run evaluates nothing at all. */
  dsn_search_result again;
  o.log = NULL;
  run_search(&t, &o, &again);
  cr_assert_eq(again.evaluations, 0);
  cr_assert_eq(again.journal_skipped_lines, 0);
  assert_same_front(&full, &again);

  dsn_search_result_free(&full);
  dsn_search_result_free(&resumed);
  dsn_search_result_free(&again);
  eval_log_free(&log);
  remove(journal);
}

static ds_status search_with_journal_text(const char *name, const char *text,
                                          const char *tag, ds_error *err) {
  dsr_deform_attn layers[2];
  search_layers(layers);
  test_model t;
  make_model(&t, layers, 2);
  char journal[512];
  test_path(journal, sizeof journal, name);
  ds_error io;
  cr_assert_eq(ds_file_write_atomic(journal, text, strlen(text), &io), DS_OK);
  dsn_search_options o;
  options_for_test(&o, NULL);
  o.generations = 1;
  o.journal_path = journal;
  o.journal_tag = tag;
  dsn_preset zcu = load_builtin("zcu102");
  dsn_search_result r;
  ds_error_clear(err);
  ds_status status = dsn_search_run(&t.model, &zcu, &o, &r, err);
  if (status == DS_OK)
    dsn_search_result_free(&r);
  remove(journal);
  return status;
}

Test(search, journal_malformed_line_rejected) {
  ds_error err;
  const char *middle = "{\"key\":\"1x1+0,1x1+0\",\"accuracy\":90}\n"
                       "{\"key\":\"2x2+0,1x1+0\",\"accur\n"
                       "{\"key\":\"1x2+0,1x1+0\",\"accuracy\":89}\n";
  cr_assert_eq(search_with_journal_text("bad-line.jsonl", middle, NULL, &err),
               DS_ERR_JOURNAL);
  cr_assert_not_null(strstr(err.message, "line 2: not a JSON object"), "%s", err.message);

  const char *layers = "{\"key\":\"1x1+0\",\"accuracy\":90}\n";
  cr_assert_eq(search_with_journal_text("layers.jsonl", layers, NULL, &err), DS_ERR_JOURNAL);
  cr_assert_not_null(strstr(err.message, "line 1: \"key\""), "%s", err.message);

  const char *no_accuracy = "\n{\"key\":\"1x1+0,1x1+0\",\"accuracy\":\"high\"}\n";
  cr_assert_eq(search_with_journal_text("accuracy.jsonl", no_accuracy, NULL, &err),
               DS_ERR_JOURNAL);
  cr_assert_not_null(strstr(err.message, "line 2: \"accuracy\""), "%s", err.message);

  const char *tagged = "{\"key\":\"1x1+0,1x1+0\",\"accuracy\":90,\"tag\":\"model A\"}\n";
  cr_assert_eq(search_with_journal_text("tag.jsonl", tagged, "model B", &err),
               DS_ERR_JOURNAL);
  cr_assert_not_null(strstr(err.message, "tag \"model A\" differs"), "%s", err.message);
  cr_assert_eq(search_with_journal_text("tag-ok.jsonl", tagged, "model A", &err), DS_OK,
               "%s", err.message);
}

Test(search, accuracy_drop_limit_respected) {
  dsr_deform_attn layers[2];
  search_layers(layers);
  test_model t;
  make_model(&t, layers, 2);
  static front_set expected;
  int64_t space = 0;
  brute_force_front(layers, 3.0, &expected, &space);

  dsn_search_options o;
  options_for_test(&o, NULL);
  o.max_accuracy_drop = 3.0;
  o.exhaustive_budget = 100000;
  dsn_search_result r;
  run_search(&t, &o, &r);
  assert_front_is(&r, &expected);
  for (int32_t i = 0; i < r.point_count; i++)
    cr_assert_leq(r.reference_accuracy - r.points[i].accuracy, 3.0);
  dsn_search_result_free(&r);

  /* NSGA-II under the same limit. */
  o.exhaustive_budget = 0;
  run_search(&t, &o, &r);
  assert_front_covers(&r, &expected);
  dsn_search_result_free(&r);
}

Test(search, failures_reported) {
  dsr_deform_attn layers[2];
  search_layers(layers);
  test_model t;
  make_model(&t, layers, 2);
  dsn_preset zcu = load_builtin("zcu102");
  dsn_search_options o;
  dsn_search_result r;
  ds_error err;

  eval_log log;
  eval_log_init(&log);
  options_for_test(&o, &log);
  o.threads = 2;
  log.fail_key = "1x1+0,1x1+0";
  ds_error_clear(&err);
  cr_assert_eq(dsn_search_run(&t.model, &zcu, &o, &r, &err), DS_ERR_DATA);
  cr_assert_not_null(strstr(err.message, "evaluating 1x1+0,1x1+0: validation images are "
                                         "missing"),
                     "%s", err.message);
  log.fail_key = NULL;
  log.return_nan = 1;
  ds_error_clear(&err);
  cr_assert_eq(dsn_search_run(&t.model, &zcu, &o, &r, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "expected a finite accuracy"), "%s", err.message);
  eval_log_free(&log);

  options_for_test(&o, NULL);
  o.population = 2;
  ds_error_clear(&err);
  cr_assert_eq(dsn_search_run(&t.model, &zcu, &o, &r, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "population is 2"), "%s", err.message);
  options_for_test(&o, NULL);
  o.evaluate = NULL;
  ds_error_clear(&err);
  cr_assert_eq(dsn_search_run(&t.model, &zcu, &o, &r, &err), DS_ERR_INVALID_ARGUMENT);

  /* A model without deformable layers has nothing to search. */
  options_for_test(&o, NULL);
  test_model empty;
  make_model(&empty, layers, 0);
  ds_error_clear(&err);
  cr_assert_eq(dsn_search_run(&empty.model, &zcu, &o, &r, &err), DS_ERR_INVALID_ARGUMENT);

  /* A layer that fits no configuration stops the search with the sizes involved. */
  dsr_deform_attn big[2] = {make_layer(64, 56, 56, 1, 2, 9, 8), layers[1]};
  test_model too_big;
  make_model(&too_big, big, 2);
  dsn_preset tiny = zcu;
  tiny.feature_buffer_bytes = 4096;
  ds_error_clear(&err);
  cr_assert_eq(dsn_search_run(&too_big.model, &tiny, &o, &r, &err), DS_ERR_SLICE_CONFIG);
  cr_assert_not_null(strstr(err.message, "layer 0 (node deform0, 64x56x56)"), "%s",
                     err.message);
  cr_assert_not_null(strstr(err.message, "4096-byte feature buffer"), "%s", err.message);

  char journal[512];
  test_path(journal, sizeof journal, "no-folder");
  strcat(journal, "/missing/journal.jsonl");
  o.journal_path = journal;
  ds_error_clear(&err);
  cr_assert_eq(dsn_search_run(&t.model, &zcu, &o, &r, &err), DS_ERR_IO);
}

/* ---- Pareto output ------------------------------------------------------------------------ */

Test(pareto, json_and_csv_written_and_parseable) {
  dsr_deform_attn layers[2];
  search_layers(layers);
  test_model t;
  make_model(&t, layers, 2);
  dsn_search_options o;
  options_for_test(&o, NULL);
  o.exhaustive_budget = 100000;
  o.evaluate_test = synthetic_test_accuracy;
  dsn_search_result r;
  run_search(&t, &o, &r);
  cr_assert_float_eq(r.reference_test_accuracy, 89.0, 1e-12);
  cr_assert_float_eq(r.points[0].test_accuracy, r.points[0].accuracy - 1.0, 1e-12);

  char json_path[512], csv_path[512];
  test_path(json_path, sizeof json_path, "front.json");
  test_path(csv_path, sizeof csv_path, "front.csv");
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_front_write_json(&r, json_path, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsn_front_write_csv(&r, csv_path, &err), DS_OK, "%s", err.message);

  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp", json_path);
  cr_assert_neq(access(tmp, F_OK), 0, "temporary file left behind");

  char *json_text = read_text(json_path);
  cJSON *root = cJSON_Parse(json_text);
  cr_assert_not_null(root);
  const cJSON *front = cJSON_GetObjectItemCaseSensitive(root, "front");
  cr_assert_eq(cJSON_GetArraySize(front), r.point_count);
  const cJSON *first = cJSON_GetArrayItem(front, 0);
  const cJSON *config = cJSON_GetObjectItemCaseSensitive(first, "config");
  cr_assert_eq(cJSON_GetArraySize(config), 2);
  char layer0[40], layer1[40], expected_config[96];
  dsn_slice_format(r.points[0].slices[0], layer0, (int32_t)sizeof layer0);
  dsn_slice_format(r.points[0].slices[1], layer1, (int32_t)sizeof layer1);
  snprintf(expected_config, sizeof expected_config, "%s %s", layer0, layer1);
  cr_assert_str_eq(cJSON_GetArrayItem(config, 0)->valuestring, layer0);
  cr_assert_str_eq(cJSON_GetArrayItem(config, 1)->valuestring, layer1);
  cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(first, "accuracy")->valuedouble,
                     r.points[0].accuracy, 1e-9);
  cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(first, "dram_bytes")->valuedouble,
                     (double)r.points[0].dram_bytes, 0.5);
  cr_assert_float_eq(
      cJSON_GetObjectItemCaseSensitive(first, "relative_to_gather")->valuedouble,
      (double)r.points[0].dram_bytes / (double)r.gather_bytes, 1e-9);
  cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(root, "lower_bound_bytes")->valuedouble,
                     (double)r.lower_bound_bytes, 0.5);
  const cJSON *last = cJSON_GetArrayItem(front, r.point_count - 1);
  cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(last, "drop")->valuedouble,
                     r.reference_accuracy - r.points[r.point_count - 1].accuracy, 1e-9);
  cJSON_Delete(root);
  free(json_text);

  char *csv_text = read_text(csv_path);
  int32_t lines = 0;
  for (char *p = csv_text; *p != '\0'; p++)
    lines += *p == '\n';
  cr_assert_eq(lines, r.point_count + 1);
  cr_assert_eq(strncmp(csv_text, "index,config,accuracy,test_accuracy,drop,dram_bytes,", 52),
               0);
  char *row = strchr(csv_text, '\n') + 1;
  int index = -1;
  char first_config[64];
  double accuracy = 0, test_accuracy = 0;
  cr_assert_eq(sscanf(row, "%d,%63[^,],%lf,%lf", &index, first_config, &accuracy,
                      &test_accuracy),
               4);
  cr_assert_eq(index, 0);
  cr_assert_str_eq(first_config, expected_config);
  cr_assert_float_eq(accuracy, r.points[0].accuracy, 1e-4);
  free(csv_text);

  char *table = NULL;
  size_t table_size = 0;
  FILE *out = open_memstream(&table, &table_size);
  dsn_front_print(&r, out);
  fclose(out);
  cr_assert_not_null(strstr(table, expected_config), "%s", table);
  cr_assert_not_null(strstr(table, "test top1"), "%s", table);
  cr_assert_not_null(strstr(table, "exhaustive"), "%s", table);
  free(table);

  ds_error_clear(&err);
  cr_assert_eq(dsn_front_write_json(&r, "/nonexistent-folder/front.json", &err), DS_ERR_IO);
  dsn_search_result_free(&r);
  remove(json_path);
  remove(csv_path);
}

/* ---- A converted model -------------------------------------------------------------------- */

/* Index of the report block that describes deformable node node, or -1. */
static int32_t find_block(const dsc_report *report, const dsr_node *node) {
  for (int32_t b = 0; b < report->block_count; b++) {
    if (strcmp(report->blocks[b].name, node->name) == 0)
      return b;
  }
  for (int32_t b = 0; b < report->block_count; b++) {
    const dsc_block_info *info = &report->blocks[b];
    if (info->channels == node->deform->channels && info->height == node->deform->height &&
        info->width == node->deform->width)
      return b;
  }
  return -1;
}

Test(fixture, dat_pp_tiny_costs_agree_with_model) {
  dsr_model model;
  dsc_report report;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(DS_SOURCE_DIR "/tests/fixtures/dat_pp_tiny.onnx", NULL, &model,
                               &report, &err),
               DS_OK, "%s", err.message);
  int32_t layers = ds_model_deform_count(&model);
  cr_assert_gt(layers, 0);
  dsn_preset zcu = load_builtin("zcu102");
  int32_t weight_bytes = zcu.weight_bits / 8;
  int32_t wide_bytes = zcu.accumulator_bits / 8;

  dsr_slice *slices = calloc((size_t)layers, sizeof *slices);
  dsn_layer_addresses *addresses = calloc((size_t)layers, sizeof *addresses);
  for (int32_t l = 0; l < layers; l++) {
    const dsr_node *node = &model.nodes[ds_model_deform_node(&model, l)];
    const dsr_deform_attn *d = node->deform;

    /* The oracle sizes the weights from the geometry: they must match the real tensors. */
    int64_t sizes[DSR_DEFORM_PARAM_COUNT];
    dsn_layer_weight_sizes(d, &zcu, sizes);
    for (int32_t p = 0; p < DSR_DEFORM_PARAM_COUNT; p++) {
      if (d->params[p] < 0)
        continue;
      int64_t elements = dsr_tensor_elements(&model.tensors[d->params[p]]);
      int wide = p == DSR_DEFORM_PROJ_Q_B || p == DSR_DEFORM_OFFSET_DW_B ||
                 p == DSR_DEFORM_OFFSET_LN_G || p == DSR_DEFORM_OFFSET_LN_B ||
                 p == DSR_DEFORM_PROJ_K_B || p == DSR_DEFORM_PROJ_V_B ||
                 p == DSR_DEFORM_PROJ_OUT_B;
      cr_assert_eq(sizes[p], elements * (wide ? wide_bytes : weight_bytes),
                   "layer %d parameter %d: %lld bytes for %lld elements", l, p,
                   (long long)sizes[p], (long long)elements);
    }

    /* Same offset grid as the converter found. */
    int32_t b = find_block(&report, node);
    cr_assert_geq(b, 0, "no report block for node %s", node->name);
    int32_t hk = 0, wk = 0;
    dsn_offset_grid(d, d->height, d->width, &hk, &wk);
    cr_assert_eq(hk, report.blocks[b].samples_h);
    cr_assert_eq(wk, report.blocks[b].samples_w);

    dsn_candidates c;
    ds_error_clear(&err);
    cr_assert_eq(dsn_candidates_build(d, &zcu, 0, &c, &err), DS_OK, "%s", err.message);
    slices[l] = c.slices[c.count - 1];
    dsn_candidates_free(&c);
    addresses[l].input = 0x100000u * (uint64_t)(3 * l + 1);
    addresses[l].output = 0x100000u * (uint64_t)(3 * l + 2);
    addresses[l].weights = 0x100000u * (uint64_t)(3 * l + 3);
  }

  dsn_model_cost cost;
  dsr_schedule schedule;
  ds_error_clear(&err);
  cr_assert_eq(dsn_oracle_model(&model, slices, &zcu, &cost, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsn_schedule_build(&model, slices, &zcu, addresses, &schedule, &err), DS_OK,
               "%s", err.message);
  dsn_traffic total;
  dsn_schedule_traffic(&schedule, &zcu, -1, &total);
  cr_assert_eq(total.bytes, cost.sliced.bytes);
  cr_assert_eq(total.bursts, cost.sliced.bursts);
  cr_assert_geq(cost.gather.bursts, cost.lower_bound.bursts);

  dsn_schedule_free(&schedule);
  dsn_model_cost_free(&cost);
  free(slices);
  free(addresses);
  ds_model_free(&model);
}

Test(pareto, space_text_names_the_cap) {
  char text[48];
  dsn_space_text(1234, text, sizeof text);
  cr_assert_str_eq(text, "1234");
  dsn_space_text(INT64_MAX, text, sizeof text);
  cr_assert_str_eq(text, "more than 9.2e18", "a capped space reads %s", text);
}
