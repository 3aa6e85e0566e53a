/* The modelled DRAM, the feature buffer banks, the cache, the schedule executor against the
 * cost oracle, the measured strategies and the address traces. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "nas/dsn_layer.h"
#include "nas/dsn_measure.h"
#include "nas/dsn_oracle.h"
#include "nas/dsn_oracle_walk.h"
#include "nas/dsn_preset.h"
#include "nas/dsn_schedule.h"
#include "runtime/dsr_dram.h"
#include "runtime/dsr_exec.h"
#include "runtime/dsr_onchip.h"
#include "runtime/dsr_slice.h"

#define BUNDLED_MODEL DS_SOURCE_DIR "/models/dat_pp_nano.onnx"
#define FIXTURES DS_SOURCE_DIR "/tests/fixtures"

/* 64-bit bus, bursts of 8 (64 bytes), one channel and rank, 4 banks of 1024 rows of 128
 * columns: a row contains 1 KiB, 16 bursts. */
static dsr_dram_config small_config(const char *mapping) {
  dsr_dram_config c;
  memset(&c, 0, sizeof c);
  c.bus_width_bits = 64;
  c.burst_length = 8;
  c.channels = 1;
  c.ranks = 1;
  c.bank_groups = 1;
  c.banks = 4;
  c.rows = 1024;
  c.columns = 128;
  cr_assert_eq(dsr_dram_mapping_parse(mapping, c.mapping), 0, "mapping %s", mapping);
  c.tck_ns = 1.0;
  c.cl_cycles = 10;
  c.trcd_cycles = 12;
  c.trp_cycles = 14;
  c.tras_cycles = 30;
  return c;
}

/* The state buffer lives in the test's static storage: no allocation in the DRAM model. */
static uint64_t dram_state[4096];

static void open_dram(dsr_dram *dram, const dsr_dram_config *config) {
  ds_error err;
  ds_error_clear(&err);
  cr_assert_leq(dsr_dram_state_bytes(config), sizeof dram_state);
  cr_assert_eq(dsr_dram_init(dram, config, dram_state, sizeof dram_state, &err), DS_OK, "%s",
               err.message);
}

static dsn_preset load_preset(const char *name) {
  dsn_preset preset;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_preset_resolve(name, &preset, &err), DS_OK, "%s: %s", name, err.message);
  return preset;
}

/* ---- DRAM model ---------------------------------------------------------------------------- */

Test(dram, sequential_stream_row_major_mapping) {
  dsr_dram_config c = small_config("RoBaRaCoCh");
  dsr_dram dram;
  open_dram(&dram, &c);
  /* 2 KiB from 0: the first KiB is row 0 of bank 0, the second row 0 of bank 1. */
  dsr_dram_access(&dram, 0, 0, 2048, 0);
  cr_assert_eq(dram.counts.read_bursts, 32);
  cr_assert_eq(dram.counts.row_misses, 2);
  cr_assert_eq(dram.counts.row_hits, 30);
  cr_assert_eq(dram.counts.row_conflicts, 0);
  cr_assert_eq(dram.counts.read_bytes, 2048);
}

Test(dram, sequential_stream_bank_interleaved_mapping) {
  dsr_dram_config c = small_config("RoCoBaRaCh");
  dsr_dram dram;
  open_dram(&dram, &c);
  /* Bursts go round the 4 banks; each bank opens row 0 once and takes 8 bursts. */
  dsr_dram_access(&dram, 0, 0, 2048, 0);
  cr_assert_eq(dram.counts.read_bursts, 32);
  cr_assert_eq(dram.counts.row_misses, 4);
  cr_assert_eq(dram.counts.row_hits, 28);
  int64_t fields[DSR_DRAM_FIELD_COUNT];
  dsr_dram_locate(&dram, 3 * 64, fields);
  cr_assert_eq(fields[DSR_DRAM_BANK], 3);
  cr_assert_eq(fields[DSR_DRAM_COLUMN], 0);
  dsr_dram_locate(&dram, 5 * 64, fields);
  cr_assert_eq(fields[DSR_DRAM_BANK], 1);
  cr_assert_eq(fields[DSR_DRAM_COLUMN], 1);
  /* 4 banks of 16 bursts lie below the row field: 4 KiB. */
  cr_assert_eq(dsr_dram_stripe_bytes(&c), 4096);
  cr_assert_eq(dsr_dram_capacity_bytes(&c), (uint64_t)4 * 1024 * 1024);
}

Test(dram, two_rows_of_one_bank_always_miss) {
  dsr_dram_config c = small_config("RoBaRaCoCh");
  dsr_dram dram;
  open_dram(&dram, &c);
  /* Rows 0 and 1 of bank 0 are 4 KiB apart (4 banks of 1 KiB between them). */
  for (int i = 0; i < 10; i++)
    dsr_dram_access(&dram, 0, (uint64_t)(i % 2) * 4096 + (uint64_t)i * 64, 64, i % 2);
  cr_assert_eq(dram.counts.row_misses, 10);
  cr_assert_eq(dram.counts.row_hits, 0);
  cr_assert_eq(dram.counts.row_conflicts, 9);
  cr_assert_eq(dram.counts.read_bursts, 5);
  cr_assert_eq(dram.counts.write_bursts, 5);
}

Test(dram, timing_of_hit_miss_and_conflict) {
  dsr_dram_config c = small_config("RoBaRaCoCh");
  dsr_dram dram;
  open_dram(&dram, &c);
  /* Closed bank: activate at 0, column command at tRCD = 12, data from 12 + CL = 22 for
   * BL / 2 = 4 cycles. */
  cr_assert_eq(dsr_dram_access(&dram, 0, 0, 64, 0), 26);
  /* A hit to the open row: column at 16 (one burst after the first), data 26..30. */
  cr_assert_eq(dsr_dram_access(&dram, 0, 64, 64, 0), 30);
  /* Another row of bank 0: precharge no earlier than tRAS = 30 after the activation, then
   * tRP = 14 to activate at 44, column at 56, data 66..70. */
  cr_assert_eq(dsr_dram_access(&dram, 0, 4096, 64, 0), 70);
  cr_assert_eq(dram.end_cycle, 70);
  /* A run of 16 bursts in a fresh bank streams one burst every 4 cycles. */
  dsr_dram_reset(&dram);
  cr_assert_eq(dsr_dram_access(&dram, 0, 1024, 1024, 0), 22 + 16 * 4);
  cr_assert_float_eq(dsr_dram_cycles_ns(&c, 86), 86.0, 1e-9);
}

Test(dram, unaligned_requests_touch_extra_bursts) {
  dsr_dram_config c = small_config("RoBaRaCoCh");
  dsr_dram dram;
  open_dram(&dram, &c);
  dsr_dram_access(&dram, 0, 60, 8, 0); /* bytes 60..67: bursts 0 and 1 */
  cr_assert_eq(dram.counts.read_bursts, 2);
  /* Three rows of 100 bytes, 200 apart, from 0: bursts {0, 1}, {3, 4}, {6, 7}. */
  dsr_dram_reset(&dram);
  dsr_dram_access_2d(&dram, 0, 0, 100, 3, 200, 1);
  cr_assert_eq(dram.counts.write_bursts, 6);
  cr_assert_eq(dram.counts.write_bytes, 300);
  cr_assert_eq(dram.counts.requests, 3);
  /* Contiguous rows are one request. */
  dsr_dram_reset(&dram);
  dsr_dram_access_2d(&dram, 0, 0, 100, 3, 100, 0);
  cr_assert_eq(dram.counts.requests, 1);
  cr_assert_eq(dram.counts.read_bursts, 5);
}

static int32_t hook_calls;
static uint64_t hook_last_address;

static void count_hook(void *user, uint64_t address, int32_t is_write, int64_t cycle) {
  (void)user;
  (void)is_write;
  (void)cycle;
  hook_calls++;
  hook_last_address = address;
}

Test(dram, hook_sees_every_burst) {
  dsr_dram_config c = small_config("RoBaRaCoCh");
  dsr_dram dram;
  open_dram(&dram, &c);
  hook_calls = 0;
  dsr_dram_set_hook(&dram, count_hook, NULL);
  dsr_dram_access(&dram, 0, 100, 2000, 0);
  cr_assert_eq(hook_calls, dram.counts.read_bursts);
  cr_assert_eq(hook_last_address, 2048); /* byte 2099 is in the burst from 2048 */
}

Test(dram, mapping_text) {
  uint8_t m[DSR_DRAM_FIELD_COUNT];
  char text[DSR_DRAM_MAPPING_BYTES];
  cr_assert_eq(dsr_dram_mapping_parse("RoBaRaCoCh", m), 0);
  dsr_dram_mapping_format(m, text);
  cr_assert_str_eq(text, "RoBaBgRaCoCh");
  cr_assert_eq(dsr_dram_mapping_parse("RoCoBa", m), 0);
  dsr_dram_mapping_format(m, text);
  cr_assert_str_eq(text, "RoCoBaBgRaCh");
  cr_assert_eq(dsr_dram_mapping_parse("ChRaBgBaRoCo", m), 0);
  cr_assert_eq(dsr_dram_mapping_parse("RoBaRaCoCo", m), -1);
  cr_assert_eq(dsr_dram_mapping_parse("RoBaRa", m), -1); /* no column */
  cr_assert_eq(dsr_dram_mapping_parse("RoBaXxCo", m), -1);
  cr_assert_eq(dsr_dram_mapping_parse("RoBaC", m), -1);
  cr_assert_eq(dsr_dram_mapping_parse("", m), -1);
  cr_assert_eq(dsr_dram_mapping_parse(NULL, m), -1);
}

Test(dram, bad_configurations_are_rejected) {
  ds_error err;
  dsr_dram_config c = small_config("RoBaRaCoCh");
  c.banks = 3;
  ds_error_clear(&err);
  cr_assert_eq(dsr_dram_config_check(&c, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "banks is 3"), "%s", err.message);
  cr_assert_eq(dsr_dram_state_bytes(&c), 0);

  c = small_config("RoBaRaCoCh");
  c.columns = 4;
  ds_error_clear(&err);
  cr_assert_eq(dsr_dram_config_check(&c, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "columns 4"), "%s", err.message);

  c = small_config("RoBaRaCoCh");
  c.mapping[0] = c.mapping[1];
  ds_error_clear(&err);
  cr_assert_eq(dsr_dram_config_check(&c, &err), DS_ERR_INVALID_ARGUMENT);

  c = small_config("RoBaRaCoCh");
  c.trcd_cycles = 0;
  ds_error_clear(&err);
  cr_assert_eq(dsr_dram_config_check(&c, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "trcd_cycles is 0"), "%s", err.message);

  c = small_config("RoBaRaCoCh");
  c.tck_ns = NAN;
  cr_assert_eq(dsr_dram_config_check(&c, NULL), DS_ERR_INVALID_ARGUMENT);

  c = small_config("RoBaRaCoCh");
  c.rows = 1 << 24;
  c.columns = 1 << 16;
  c.channels = 64;
  c.ranks = 16;
  ds_error_clear(&err);
  cr_assert_eq(dsr_dram_config_check(&c, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "2^55"), "%s", err.message);

  c = small_config("RoBaRaCoCh");
  dsr_dram dram;
  uint64_t tiny[2];
  ds_error_clear(&err);
  cr_assert_eq(dsr_dram_init(&dram, &c, tiny, sizeof tiny, &err), DS_ERR_ARENA_TOO_SMALL);
  cr_assert_not_null(strstr(err.message, "missing"), "%s", err.message);
  cr_assert_eq(dsr_dram_init(&dram, &c, (uint8_t *)dram_state + 1, 1024, &err),
               DS_ERR_INVALID_ARGUMENT);
}

/* ---- Feature buffer banks ------------------------------------------------------------------ */

Test(banks, lanes_in_distinct_banks_do_not_stall) {
  /* 4 banks, 8 x 8 map: 2 x 2 blocks along a row go to banks 0, 1, 2, 3. */
  float y[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  float x[4] = {0.5f, 2.5f, 4.5f, 6.5f};
  dsr_bank_counts counts;
  memset(&counts, 0, sizeof counts);
  dsr_banks_sample(4, 4, 8, 8, y, x, 4, 1, &counts);
  cr_assert_eq(counts.groups, 1);
  cr_assert_eq(counts.cycles, 1);
  cr_assert_eq(counts.stall_cycles, 0);
  cr_assert_eq(counts.reads, 16);
}

Test(banks, lanes_in_one_bank_stall) {
  /* Blocks (0, 0), (1, 0), (2, 0), (3, 0) are blocks 0, 4, 8, 12: all bank 0, and each
   * sample's four neighbours use the same four parity sub-banks. */
  float y[4] = {0.5f, 2.5f, 4.5f, 6.5f};
  float x[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  dsr_bank_counts counts;
  memset(&counts, 0, sizeof counts);
  dsr_banks_sample(4, 4, 8, 8, y, x, 4, 1, &counts);
  cr_assert_eq(counts.cycles, 4);
  cr_assert_eq(counts.stall_cycles, 3);
  /* Two lanes per cycle: two groups of two samples, each 2 cycles. */
  memset(&counts, 0, sizeof counts);
  dsr_banks_sample(4, 2, 8, 8, y, x, 4, 1, &counts);
  cr_assert_eq(counts.groups, 2);
  cr_assert_eq(counts.cycles, 4);
  cr_assert_eq(counts.stall_cycles, 2);
}

Test(banks, shared_pixels_and_straddling_samples) {
  /* Four lanes reading the same pixels share each read. */
  float y[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  float x[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  dsr_bank_counts counts;
  memset(&counts, 0, sizeof counts);
  dsr_banks_sample(4, 4, 8, 8, y, x, 4, 1, &counts);
  cr_assert_eq(counts.cycles, 1);
  cr_assert_eq(counts.reads, 4);
  /* A sample across four blocks still reads its neighbours from four sub-banks. */
  float ys = 1.5f, xs = 1.5f;
  memset(&counts, 0, sizeof counts);
  dsr_banks_sample(4, 1, 8, 8, &ys, &xs, 1, 1, &counts);
  cr_assert_eq(counts.cycles, 1);
  cr_assert_eq(counts.reads, 4);
  /* Outside the map nothing is read; on the last row and column only one neighbour. */
  float yo[2] = {-5.0f, 7.0f}, xo[2] = {3.0f, 7.0f};
  memset(&counts, 0, sizeof counts);
  dsr_banks_sample(4, 2, 8, 8, yo, xo, 2, 1, &counts);
  cr_assert_eq(counts.reads, 1);
  cr_assert_eq(counts.stall_cycles, 0);
  /* Bad arguments add nothing. */
  memset(&counts, 0, sizeof counts);
  dsr_banks_sample(0, 4, 8, 8, y, x, 4, 1, &counts);
  dsr_banks_sample(4, 0, 8, 8, y, x, 4, 1, &counts);
  dsr_banks_sample(4, DSR_BANKS_MAX_LANES + 1, 8, 8, y, x, 4, 1, &counts);
  cr_assert_eq(counts.groups, 0);
  cr_assert_eq(dsr_bank_of_pixel(4, 8, 2, 0), 0);
  cr_assert_eq(dsr_bank_of_pixel(4, 8, 0, 2), 1);
  cr_assert_eq(dsr_bank_of_pixel(4, 7, 2, 0), 0); /* 4 blocks per row when w = 7 */
}

/* ---- Cache ---------------------------------------------------------------------------------- */

Test(cache, lru_on_a_hand_made_stream) {
  /* 64-byte lines, 2 ways, 2 sets: lines 0, 2, 4 share set 0. */
  dsr_cache_config config = {64, 2, 256};
  uint64_t state[64];
  dsr_cache cache;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_cache_init(&cache, &config, state, sizeof state, &err), DS_OK, "%s",
               err.message);
  dsr_dram_config c = small_config("RoBaRaCoCh");
  dsr_dram dram;
  open_dram(&dram, &c);
  uint64_t stream[] = {0, 128, 0, 256, 128, 256, 64, 0};
  /* miss, miss, hit, miss (evicts line 2), miss (evicts line 0), hit, miss (set 1),
   * miss (line 0 was evicted). */
  for (size_t i = 0; i < sizeof stream / sizeof stream[0]; i++)
    dsr_cache_read(&cache, &dram, 0, stream[i], 8);
  cr_assert_eq(cache.counts.accesses, 8);
  cr_assert_eq(cache.counts.hits, 2);
  cr_assert_eq(cache.counts.misses, 6);
  cr_assert_eq(cache.counts.fill_bytes, 6 * 64);
  cr_assert_eq(dram.counts.read_bursts, 6);
  /* A read across a line boundary looks up both lines. */
  dsr_cache_reset(&cache);
  dsr_cache_read(&cache, NULL, 0, 60, 8);
  cr_assert_eq(cache.counts.accesses, 2);
  cr_assert_eq(cache.counts.misses, 2);
  dsr_cache_read(&cache, NULL, 0, 0, 128);
  cr_assert_eq(cache.counts.hits, 2);
}

Test(cache, bad_configurations_are_rejected) {
  ds_error err;
  dsr_cache_config bad_line = {48, 2, 192};
  ds_error_clear(&err);
  cr_assert_eq(dsr_cache_config_check(&bad_line, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "line_bytes is 48"), "%s", err.message);
  dsr_cache_config bad_sets = {64, 2, 384}; /* 3 sets */
  cr_assert_eq(dsr_cache_config_check(&bad_sets, NULL), DS_ERR_INVALID_ARGUMENT);
  dsr_cache_config bad_ways = {64, 0, 256};
  cr_assert_eq(dsr_cache_config_check(&bad_ways, NULL), DS_ERR_INVALID_ARGUMENT);
  dsr_cache_config good = {64, 2, 256};
  uint64_t small[2];
  dsr_cache cache;
  cr_assert_eq(dsr_cache_init(&cache, &good, small, sizeof small, &err),
               DS_ERR_ARENA_TOO_SMALL);
}

/* ---- Executor against the oracle ------------------------------------------------------------ */

static dsr_model bundled;
static int bundled_loaded;

static const dsr_model *load_bundled(void) {
  if (!bundled_loaded) {
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(dsc_import_file(BUNDLED_MODEL, NULL, &bundled, NULL, &err), DS_OK, "%s",
                 err.message);
    bundled_loaded = 1;
  }
  return &bundled;
}

static void parse_slices(const char *const texts[5], dsr_slice slices[5]) {
  for (int i = 0; i < 5; i++)
    cr_assert_eq(dsn_slice_parse(texts[i], &slices[i]), 0, "%s", texts[i]);
}

static const char *const slice_sets[][5] = {
    {"1x1+0", "1x1+0", "1x1+0", "1x1+0", "1x1+0"},
    {"2x2+1", "2x2+0", "2x2+1", "2x1+0", "1x2+1"},
    {"4x4+2", "3x2+1", "1x4+0", "2x2+0", "1x1+0"},
    {"5x5+0", "1x6+4", "2x2+1c", "1x1+0", "2x1+0"},
    {"3x7+1", "8x8+0", "4x4+0", "2x2+1", "2x2+0"},
};

Test(executor, equals_the_oracle_on_the_bundled_model, .timeout = 120) {
  const dsr_model *model = load_bundled();
  ds_error err;
  for (int32_t p = 0; p < dsn_preset_builtin_count(); p++) {
    dsn_preset preset = load_preset(dsn_preset_builtin_name(p));
    for (size_t set = 0; set < sizeof slice_sets / sizeof slice_sets[0]; set++) {
      dsr_slice slices[5];
      parse_slices(slice_sets[set], slices);
      dsn_model_cost cost;
      ds_error_clear(&err);
      cr_assert_eq(dsn_oracle_model(model, slices, &preset, &cost, &err), DS_OK, "%s",
                   err.message);
      cr_assert_eq(cost.layer_count, 5);

      dsn_layer_addresses addresses[5];
      uint64_t end = 0;
      dsr_schedule schedule;
      cr_assert_eq(dsn_schedule_layout(model, &preset, 0, addresses, &end, &err), DS_OK);
      cr_assert_eq(dsn_schedule_build(model, slices, &preset, addresses, &schedule, &err),
                   DS_OK, "%s", err.message);
      dsr_exec_layer layers[5], total;
      cr_assert_eq(dsn_execute_schedule(model, &schedule, &preset, NULL, layers, 5, &total,
                                        &err),
                   DS_OK, "%s", err.message);
      for (int32_t l = 0; l < 5; l++) {
        const dsn_traffic *o = &cost.layers[l].sliced;
        const dsr_exec_layer *x = &layers[l];
        cr_assert_eq(x->dram.read_bytes + x->dram.write_bytes, o->bytes,
                     "%s set %zu layer %d bytes", preset.name, set, l);
        cr_assert_eq(x->dram.read_bursts + x->dram.write_bursts, o->bursts,
                     "%s set %zu layer %d bursts", preset.name, set, l);
        cr_assert_eq(x->dram.row_misses, o->row_misses, "%s set %zu layer %d row misses",
                     preset.name, set, l);
        cr_assert_eq(x->step_count, slices[l].rows * slices[l].cols);
        cr_assert_gt(x->compute_cycles, 0);
        cr_assert_geq(x->cycles, x->compute_cycles > x->dma_cycles ? x->compute_cycles
                                                                   : x->dma_cycles);
        dsn_traffic walked;
        dsn_schedule_traffic(&schedule, &preset, l, &walked);
        cr_assert_eq(walked.bytes, o->bytes);
        cr_assert_eq(walked.bursts, o->bursts);
        cr_assert_eq(walked.row_misses, o->row_misses);
        /* The unsliced layer moves the lower bound's traffic. */
        if (slices[l].rows * slices[l].cols == 1) {
          cr_assert_eq(o->bursts, cost.layers[l].lower_bound.bursts);
          cr_assert_eq(o->row_misses, cost.layers[l].lower_bound.row_misses);
        }
      }
      cr_assert_eq(total.dram.read_bursts + total.dram.write_bursts, cost.sliced.bursts);
      cr_assert_eq(total.dram.row_misses, cost.sliced.row_misses);
      dsn_schedule_free(&schedule);
      dsn_model_cost_free(&cost);
    }
  }
}

Test(executor, runs_whole_model_schedules, .timeout = 120) {
  const dsr_model *model = load_bundled();
  dsn_preset preset = load_preset("zcu102");
  ds_error err;
  ds_error_clear(&err);
  dsn_layer_list list;
  cr_assert_eq(dsn_layers_from_model(model, &preset, &list, &err), DS_OK, "%s", err.message);
  dsn_memory_map map;
  cr_assert_eq(dsn_memory_map_build(model, &list, &preset, 0, dsn_layout_alignment(&preset), &map,
                                    &err),
               DS_OK, "%s", err.message);
  dsr_slice slices[5];
  parse_slices(slice_sets[1], slices);
  dsr_schedule schedule;
  cr_assert_eq(dsn_schedule_build_model(model, &list, slices, &preset, &map, &schedule, &err),
               DS_OK, "%s", err.message);

  int64_t bytes = 0, dense_steps = 0, dense_compute = 0;
  for (int32_t s = 0; s < schedule.step_count; s++) {
    const dsr_dma_step *step = &schedule.steps[s];
    for (int32_t d = 0; d < step->load_count + step->store_count; d++) {
      const dsr_dma_descriptor *desc = &schedule.descriptors[step->first_descriptor + d];
      bytes += (int64_t)desc->row_bytes * desc->row_count;
    }
    if (step->layer < 0) {
      dense_steps++;
      dense_compute += step->compute_cycles;
    }
  }
  cr_assert_gt(dense_steps, 0);

  dsr_exec_layer layers[5], total;
  dsr_exec_layer *nodes = calloc((size_t)model->node_count, sizeof *nodes);
  dsr_dram dram;
  void *state = NULL;
  cr_assert_eq(dsn_dram_open(&preset, &dram, &state, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsr_exec_check(&schedule, &dram, 5, &err), DS_OK, "%s", err.message);
  dsr_exec_config config = {preset.clock_mhz, NULL, NULL, nodes, model->node_count};
  dsr_exec_run(&schedule, &dram, &config, layers, 5, &total);
  cr_assert_eq(total.step_count, schedule.step_count);
  cr_assert_eq(total.load_bytes + total.store_bytes, bytes);
  cr_assert_eq(total.dram.read_bytes + total.dram.write_bytes, bytes);
  int64_t node_bursts = 0, node_compute = 0;
  for (int32_t n = 0; n < model->node_count; n++) {
    node_bursts += nodes[n].dram.read_bursts + nodes[n].dram.write_bursts;
    node_compute += nodes[n].compute_cycles;
  }
  cr_assert_eq(node_bursts, total.dram.read_bursts + total.dram.write_bursts);
  cr_assert_eq(node_compute, total.compute_cycles);
  cr_assert_geq(total.compute_cycles, dense_compute);
  for (int32_t l = 0; l < 5; l++)
    cr_assert_eq(layers[l].step_count, slices[l].rows * slices[l].cols);

  /* The measured executor prices the deformable steps itself and takes the dense ones'. */
  dsr_exec_layer measured_layers[5], measured_total;
  cr_assert_eq(dsn_execute_schedule(model, &schedule, &preset, NULL, measured_layers, 5,
                                    &measured_total, &err),
               DS_OK, "%s", err.message);
  cr_assert_eq(measured_total.dram.row_misses, total.dram.row_misses);
  cr_assert_geq(measured_total.compute_cycles, dense_compute);

  free(state);
  free(nodes);
  dsn_schedule_free(&schedule);
  dsn_memory_map_free(&map);
  dsn_layer_list_free(&list);
}

Test(executor, overlaps_loads_with_compute) {
  /* Two patches of one layer, double buffered: load 1 runs while patch 0 computes. */
  dsr_dram_config c = small_config("RoBaRaCoCh");
  dsr_dram dram;
  open_dram(&dram, &c);
  dsr_dma_descriptor d[4];
  memset(d, 0, sizeof d);
  for (int i = 0; i < 4; i++) {
    d[i].row_bytes = 1024;
    d[i].row_count = 1;
    d[i].stride_bytes = 1024;
    d[i].slot = (uint8_t)(i / 2);
    d[i].direction = (uint8_t)(i % 2 ? DSR_DMA_STORE : DSR_DMA_LOAD);
    d[i].buffer = (uint8_t)(i % 2 ? DSR_BUFFER_FEATURE_OUT : DSR_BUFFER_FEATURE_IN);
  }
  d[0].dram_address = 0;     /* bank 0 */
  d[1].dram_address = 8192;  /* bank 0, row 2 */
  d[2].dram_address = 1024;  /* bank 1 */
  d[3].dram_address = 9216;  /* bank 1, row 2 */
  dsr_dma_step steps[2] = {{0, 0, 0, 1, 1, 0, 0}, {0, 1, 2, 1, 1, 0, 0}};
  dsr_schedule s = {2, steps, 4, d};
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_exec_check(&s, &dram, 1, &err), DS_OK, "%s", err.message);
  dsr_exec_layer layer, total;
  dsr_exec_config config = {1000.0, NULL, NULL, NULL, 0}; /* 1 ns per accelerator cycle */
  dsr_exec_run(&s, &dram, &config, &layer, 1, &total);
  /* Order load 0, load 1, store 0, store 1: loads hit banks 0 and 1, then each store
   * conflicts with the load's row: 4 misses. */
  cr_assert_eq(layer.dram.row_misses, 4);
  cr_assert_eq(layer.dram.row_conflicts, 2);
  cr_assert_eq(layer.load_bytes, 2048);
  cr_assert_eq(layer.store_bytes, 2048);
  cr_assert_eq(layer.compute_bound, 0);
  cr_assert_eq(total.dram.read_bursts, 32);
  cr_assert_eq(total.cycles, layer.cycles);
}

Test(executor, bad_schedules_are_rejected) {
  dsr_dram_config c = small_config("RoBaRaCoCh");
  dsr_dram dram;
  open_dram(&dram, &c);
  dsr_dma_descriptor d[2];
  memset(d, 0, sizeof d);
  d[0].row_bytes = 64;
  d[0].row_count = 2;
  d[0].stride_bytes = 128;
  d[0].direction = DSR_DMA_LOAD;
  d[1] = d[0];
  d[1].direction = DSR_DMA_STORE;
  dsr_dma_step step = {0, 0, 0, 1, 1, 0, 0};
  dsr_schedule s = {1, &step, 2, d};
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsr_exec_check(&s, &dram, 1, &err), DS_OK, "%s", err.message);

  step.first_descriptor = 1;
  ds_error_clear(&err);
  cr_assert_eq(dsr_exec_check(&s, &dram, 1, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "outside the 2 descriptors"), "%s", err.message);
  step.first_descriptor = 0;

  step.layer = 3;
  ds_error_clear(&err);
  cr_assert_eq(dsr_exec_check(&s, &dram, 1, &err), DS_ERR_INVALID_ARGUMENT);
  step.layer = 0;

  d[0].direction = DSR_DMA_STORE;
  cr_assert_eq(dsr_exec_check(&s, &dram, 1, NULL), DS_ERR_INVALID_ARGUMENT);
  d[0].direction = DSR_DMA_LOAD;

  d[0].stride_bytes = 32;
  cr_assert_eq(dsr_exec_check(&s, &dram, 1, NULL), DS_ERR_INVALID_ARGUMENT);
  d[0].stride_bytes = 128;

  d[1].dram_address = dsr_dram_capacity_bytes(&c) - 64;
  ds_error_clear(&err);
  cr_assert_eq(dsr_exec_check(&s, &dram, 1, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "outside the modelled DRAM"), "%s", err.message);
  d[1].dram_address = 0;

  d[1].slot = 2;
  cr_assert_eq(dsr_exec_check(&s, &dram, 1, NULL), DS_ERR_INVALID_ARGUMENT);
  d[1].slot = 0;

  dsr_dma_step split[3] = {{0, 0, 0, 1, 0, 0, 0}, {1, 0, 1, 0, 1, 0, 0}, {0, 1, 0, 1, 0, 0, 0}};
  dsr_schedule resumed = {3, split, 2, d};
  ds_error_clear(&err);
  cr_assert_eq(dsr_exec_check(&resumed, &dram, 2, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "contiguous"), "%s", err.message);
}

/* Random schedules: each is either rejected with a message or runs without a fault. */
Test(executor, random_schedules_never_fault) {
  dsr_dram_config c = small_config("RoCoBaRaCh");
  dsr_dram dram;
  open_dram(&dram, &c);
  uint64_t seed = 12345;
  int32_t accepted = 0;
  for (int32_t trial = 0; trial < 500; trial++) {
    dsr_dma_descriptor d[6];
    dsr_dma_step steps[3];
    for (int32_t i = 0; i < 6; i++) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      uint64_t r = seed >> 11;
      d[i].dram_address = (r % 5 == 0) ? (r & 0xffffffffu) : (r % 65536);
      d[i].row_bytes = (uint32_t)((r >> 17) % 300);
      d[i].row_count = (uint32_t)((r >> 27) % 5);
      d[i].stride_bytes = (uint32_t)((r >> 31) % 700);
      d[i].chip_offset_bytes = 0;
      d[i].direction = (uint8_t)((r >> 41) % 3);
      d[i].buffer = (uint8_t)((r >> 43) % 5);
      d[i].slot = (uint8_t)((r >> 46) % 3);
      d[i].bank = 0;
    }
    for (int32_t i = 0; i < 3; i++) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      uint64_t r = seed >> 11;
      steps[i].layer = (int32_t)(r % 4) - 1;
      steps[i].patch = i;
      steps[i].first_descriptor = (int32_t)((r >> 8) % 8) - 1;
      steps[i].load_count = (int32_t)((r >> 12) % 4);
      steps[i].store_count = (int32_t)((r >> 16) % 3);
      steps[i].node = (int32_t)((r >> 20) % 4);
      steps[i].compute_cycles = (int64_t)((r >> 24) % 100);
    }
    /* Most trials repair all but one field, so that both outcomes occur. */
    if (trial % 4 != 0) {
      for (int32_t i = 0; i < 3; i++) {
        steps[i].first_descriptor = 2 * i;
        steps[i].load_count = 1;
        steps[i].store_count = 1;
        if (trial % 4 != 1)
          steps[i].layer = trial % 4 == 2 ? -1 : 1;
      }
      for (int32_t i = 0; i < 6; i++) {
        d[i].direction = (uint8_t)(i % 2 ? DSR_DMA_STORE : DSR_DMA_LOAD);
        d[i].row_bytes += 1;
        d[i].row_count += 1;
        d[i].stride_bytes = d[i].row_bytes + d[i].stride_bytes % 64;
        d[i].slot = (uint8_t)(d[i].slot % 2);
        d[i].dram_address %= 65536;
      }
    }
    dsr_schedule s = {3, steps, 6, d};
    ds_error err;
    ds_error_clear(&err);
    if (dsr_exec_check(&s, &dram, 2, &err) != DS_OK) {
      cr_assert_neq(err.message[0], '\0');
      continue;
    }
    accepted++;
    dsr_exec_layer layers[2], nodes[4], total;
    dsr_exec_config config = {200.0, NULL, NULL, nodes, 4};
    dsr_exec_run(&s, &dram, &config, layers, 2, &total);
    cr_assert_eq(total.step_count, 3);
    cr_assert_geq(total.cycles, 0);
  }
  cr_assert_gt(accepted, 100, "most repaired schedules are valid");
  cr_assert_lt(accepted, 500, "some schedules are rejected");
}

/* ---- Measured strategies and traces --------------------------------------------------------- */

static void read_image(float *image, size_t count) {
  uint8_t *data = NULL;
  size_t size = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(ds_file_read_all(FIXTURES "/fashion_test3_32.f32", 1 << 20, &data, &size, &err),
               DS_OK, "%s", err.message);
  cr_assert_geq(size, count * sizeof(float));
  memcpy(image, data, count * sizeof(float));
  free(data);
}

Test(measure, strategies_on_a_real_image, .timeout = 120) {
  const dsr_model *model = load_bundled();
  float image[32 * 32];
  read_image(image, 32 * 32);
  dsr_slice slices[5];
  parse_slices(slice_sets[1], slices);
  dsn_positions unsliced, sliced;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_positions_capture(model, NULL, image, &unsliced, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(dsn_positions_capture(model, slices, image, &sliced, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(unsliced.layer_count, 5);
  cr_assert_eq(sliced.layers[0].patch_count, 4);
  /* DAT++ clamps every position into the map it samples. */
  for (int32_t l = 0; l < unsliced.layer_count; l++) {
    const dsn_layer_positions *lp = &unsliced.layers[l];
    const dsr_deform_attn *d = model->nodes[lp->node].deform;
    for (int64_t i = 0; i < lp->patch_first[1]; i++) {
      cr_assert(lp->y[i] >= 0.0f && lp->y[i] <= (float)(d->height - 1));
      cr_assert(lp->x[i] >= 0.0f && lp->x[i] <= (float)(d->width - 1));
    }
  }

  dsn_preset preset = load_preset("zcu102");
  dsn_model_measure m;
  cr_assert_eq(dsn_measure_model(model, slices, &preset, &unsliced, &sliced, NULL, &m, &err),
               DS_OK, "%s", err.message);
  cr_assert_eq(m.layer_count, 5);
  const dsn_measured *t = m.total;
  int64_t gather_samples = 0;
  for (int32_t l = 0; l < 5; l++) {
    const dsn_layer_measure *lm = &m.layers[l];
    const dsr_deform_attn *d = model->nodes[lm->node].deform;
    const dsn_measured *lb = &lm->strategy[DSN_STRATEGY_LOWER_BOUND];
    const dsn_measured *g = &lm->strategy[DSN_STRATEGY_GATHER];
    const dsn_measured *c = &lm->strategy[DSN_STRATEGY_CACHE];
    const dsn_measured *w = &lm->strategy[DSN_STRATEGY_WHOLE_MAP];
    /* Gather moves the lower bound plus q twice plus one read per in-map neighbour; a
     * position on the last row or column has neighbours outside the map. */
    int64_t map = (int64_t)d->height * d->width * d->channels;
    int64_t vector = d->channels / d->groups;
    const dsn_layer_positions *lp = &unsliced.layers[l];
    int64_t neighbours = 0;
    for (int64_t i = 0; i < lp->patch_first[1]; i++) {
      int32_t y0 = (int32_t)floorf(lp->y[i]), x0 = (int32_t)floorf(lp->x[i]);
      neighbours += (1 + (y0 + 1 < d->height)) * (1 + (x0 + 1 < d->width));
    }
    cr_assert_eq(lp->patch_first[1], lm->samples);
    cr_assert_eq(g->bytes - lb->bytes - 2 * map, neighbours * vector, "layer %d", l);
    cr_assert_geq(neighbours, lm->samples);
    cr_assert_leq(neighbours, 4 * lm->samples);
    gather_samples += neighbours;
    cr_assert_gt(g->bursts, lb->bursts);
    cr_assert_leq(c->bursts, g->bursts, "the cache never reads more than gather (layer %d)", l);
    /* A vector that straddles two cache lines looks both up. */
    cr_assert_geq(c->cache_hits + c->cache_misses, neighbours);
    cr_assert_leq(c->cache_hits + c->cache_misses, 2 * neighbours);
    cr_assert_eq(w->bytes, lb->bytes);
    cr_assert_eq(w->buffer_bytes, 2 * map + 2 * d->channels * lm->samples / d->groups);
    cr_assert_geq(w->compute_cycles, lb->compute_cycles);
    cr_assert_eq(w->compute_cycles - lb->compute_cycles, w->bank_stall_cycles);
    cr_assert_geq(lm->strategy[DSN_STRATEGY_SLICED].bytes, lb->bytes);
    cr_assert_gt(lm->strategy[DSN_STRATEGY_SLICED].cycles, 0);
  }
  cr_assert_gt(t[DSN_STRATEGY_WHOLE_MAP].bank_stall_cycles, 0,
               "samples of real images collide in the banks");

  /* The sliced stalls are those of each patch's captured positions in its own buffer. */
  for (int32_t l = 0; l < 5; l++) {
    const dsn_layer_positions *lp = &sliced.layers[l];
    const dsr_deform_attn *d = model->nodes[lp->node].deform;
    dsr_bank_counts counts;
    memset(&counts, 0, sizeof counts);
    for (int32_t patch = 0; patch < lp->patch_count; patch++) {
      dsr_patch p;
      dsr_slice_patch(d->height, d->width, lp->slice, patch / lp->slice.cols,
                      patch % lp->slice.cols, &p);
      int64_t n = (int64_t)lp->patch_grid[2 * patch] * lp->patch_grid[2 * patch + 1];
      for (int32_t g = 0; g < d->groups; g++)
        dsr_banks_sample(preset.feature_banks, preset.sampling_lanes, p.ext_y1 - p.ext_y0,
                         p.ext_x1 - p.ext_x0, lp->y + lp->patch_first[patch] + g * n,
                         lp->x + lp->patch_first[patch] + g * n, n, 1, &counts);
    }
    cr_assert_eq(m.layers[l].strategy[DSN_STRATEGY_SLICED].bank_stall_cycles,
                 counts.stall_cycles, "layer %d", l);
  }
  cr_assert_gt(t[DSN_STRATEGY_CACHE].cache_hits, 0);
  cr_assert_gt(t[DSN_STRATEGY_GATHER].bursts, t[DSN_STRATEGY_SLICED].bursts);

  /* The sliced figures are the executor's, equal to the oracle's. */
  dsn_model_cost cost;
  cr_assert_eq(dsn_oracle_model(model, slices, &preset, &cost, &err), DS_OK);
  cr_assert_eq(t[DSN_STRATEGY_SLICED].bursts, cost.sliced.bursts);
  cr_assert_eq(t[DSN_STRATEGY_SLICED].row_misses, cost.sliced.row_misses);
  cr_assert_eq(t[DSN_STRATEGY_LOWER_BOUND].bursts, cost.lower_bound.bursts);
  cr_assert_eq(t[DSN_STRATEGY_LOWER_BOUND].row_misses, cost.lower_bound.row_misses);
  dsn_model_cost_free(&cost);

  char *text = NULL;
  size_t text_size = 0;
  FILE *out = open_memstream(&text, &text_size);
  dsn_model_measure_print(&m, &preset, out);
  fclose(out);
  cr_assert_not_null(strstr(text, "whole_map"));
  cr_assert_not_null(strstr(text, "total"));
  free(text);

  dsn_model_measure_free(&m);

  /* Unsliced, the sliced strategy computes what the whole map does, from the same samples. */
  cr_assert_eq(dsn_measure_model(model, NULL, &preset, &unsliced, &unsliced, NULL, &m, &err),
               DS_OK, "%s", err.message);
  for (int32_t l = 0; l < 5; l++) {
    const dsn_measured *w = &m.layers[l].strategy[DSN_STRATEGY_WHOLE_MAP];
    const dsn_measured *sl = &m.layers[l].strategy[DSN_STRATEGY_SLICED];
    cr_assert_eq(sl->compute_cycles, w->compute_cycles, "layer %d", l);
    cr_assert_eq(sl->bank_stall_cycles, w->bank_stall_cycles, "layer %d", l);
    cr_assert_eq(sl->bursts, w->bursts, "layer %d", l);
    cr_assert_eq(sl->row_misses, w->row_misses, "layer %d", l);
    cr_assert_eq(sl->buffer_bytes, w->buffer_bytes, "layer %d", l);
  }
  cr_assert_gt(gather_samples, 0);
  dsn_model_measure_free(&m);
  dsn_positions_free(&unsliced);
  dsn_positions_free(&sliced);
}

Test(measure, bad_input_is_rejected) {
  const dsr_model *model = load_bundled();
  float image[32 * 32];
  memset(image, 0, sizeof image);
  dsn_positions positions;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_positions_capture(model, NULL, NULL, &positions, &err),
               DS_ERR_INVALID_ARGUMENT);
  dsr_slice bad[5];
  parse_slices(slice_sets[0], bad);
  bad[2].rows = 9; /* a 4 x 4 map */
  ds_error_clear(&err);
  cr_assert_eq(dsn_positions_capture(model, bad, image, &positions, &err), DS_ERR_SLICE_CONFIG);
  cr_assert_eq(positions.layer_count, 0);

  dsn_preset preset = load_preset("zcu102");
  dsn_model_measure m;
  dsn_measure_options options;
  memset(&options, 0, sizeof options);
  options.cache.line_bytes = 64;
  options.cache.ways = 3;
  options.cache.capacity_bytes = 64 * 3 * 4;
  ds_error_clear(&err);
  cr_assert_eq(dsn_measure_model(model, NULL, &preset, NULL, NULL, &options, &m, &err), DS_OK,
               "%s", err.message);
  dsn_model_measure_free(&m);
  options.cache.ways = 0;
  cr_assert_eq(dsn_measure_model(model, NULL, &preset, NULL, NULL, &options, &m, &err),
               DS_ERR_INVALID_ARGUMENT);
  memset(&options, 0, sizeof options);
  options.ramulator_trace_path = "/nonexistent-folder/trace.txt";
  ds_error_clear(&err);
  cr_assert_eq(dsn_measure_model(model, NULL, &preset, NULL, NULL, &options, &m, &err),
               DS_ERR_IO);
  cr_assert_not_null(strstr(err.message, "nonexistent-folder"), "%s", err.message);
}

static void trace_paths(char *ramulator, char *dramsim, size_t size, const char *tag) {
  snprintf(ramulator, size, "%s/test_dram_%s_%ld.ramulator.trace", DS_BINARY_DIR, tag,
           (long)getpid());
  snprintf(dramsim, size, "%s/test_dram_%s_%ld.dramsim.trace", DS_BINARY_DIR, tag,
           (long)getpid());
}

Test(trace, files_reparse_to_the_burst_counts, .timeout = 120) {
  const dsr_model *model = load_bundled();
  float image[32 * 32];
  read_image(image, 32 * 32);
  dsn_positions unsliced;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsn_positions_capture(model, NULL, image, &unsliced, &err), DS_OK, "%s",
               err.message);
  dsr_slice slices[5];
  parse_slices(slice_sets[2], slices);
  dsn_preset preset = load_preset("pynq-z2");
  const int32_t strategies[] = {DSN_STRATEGY_SLICED, DSN_STRATEGY_GATHER};
  for (size_t i = 0; i < 2; i++) {
    char ramulator[512], dramsim[512];
    trace_paths(ramulator, dramsim, sizeof ramulator, dsn_strategy_name(strategies[i]));
    dsn_measure_options options;
    memset(&options, 0, sizeof options);
    options.ramulator_trace_path = ramulator;
    options.dramsim_trace_path = dramsim;
    options.trace_strategy = strategies[i];
    dsn_model_measure m;
    cr_assert_eq(dsn_measure_model(model, slices, &preset, &unsliced, NULL, &options, &m, &err),
                 DS_OK, "%s", err.message);
    const dsn_measured *t = &m.total[strategies[i]];
    int64_t reads = 0, writes = 0;
    cr_assert_eq(dsn_trace_count(ramulator, DSN_TRACE_RAMULATOR2, &reads, &writes, &err), DS_OK,
                 "%s", err.message);
    cr_assert_eq(reads + writes, t->bursts, "%s", dsn_strategy_name(strategies[i]));
    cr_assert_gt(writes, 0);
    int64_t reads3 = 0, writes3 = 0;
    cr_assert_eq(dsn_trace_count(dramsim, DSN_TRACE_DRAMSIM3, &reads3, &writes3, &err), DS_OK,
                 "%s", err.message);
    cr_assert_eq(reads3, reads);
    cr_assert_eq(writes3, writes);

    /* Lines look as the simulators read them; no temporary file is left behind. */
    FILE *f = fopen(ramulator, "r");
    char line[128];
    cr_assert_not_null(fgets(line, sizeof line, f));
    fclose(f);
    cr_assert(strncmp(line, "LD 0x", 5) == 0, "%s", line);
    f = fopen(dramsim, "r");
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_not_null(strstr(line, " READ "), "%s", line);
    long long previous = -1;
    do {
      const char *space = strrchr(line, ' ');
      cr_assert_not_null(space);
      long long cycle = atoll(space + 1);
      cr_assert_geq(cycle, previous, "cycles must not decrease: %s", line);
      previous = cycle;
    } while (fgets(line, sizeof line, f) != NULL);
    fclose(f);
    cr_assert_gt(previous, 0, "later layers arrive later");
    char temp[600];
    snprintf(temp, sizeof temp, "%s.tmp.%ld", ramulator, (long)getpid());
    cr_assert_neq(access(temp, F_OK), 0);
    remove(ramulator);
    remove(dramsim);
    dsn_model_measure_free(&m);
  }
  dsn_positions_free(&unsliced);
}

Test(trace, malformed_lines_are_reported) {
  char path[512];
  snprintf(path, sizeof path, "%s/test_dram_bad_%ld.trace", DS_BINARY_DIR, (long)getpid());
  const char *bad[] = {"LD 0x40\nXX 0x80\n", "LD 0x40 extra\n", "LD 0x40", "0x40 READ\n",
                       "0x40 READS 3\n", "LD  0x40\n"};
  const dsn_trace_format formats[] = {DSN_TRACE_RAMULATOR2, DSN_TRACE_RAMULATOR2,
                                      DSN_TRACE_RAMULATOR2, DSN_TRACE_DRAMSIM3,
                                      DSN_TRACE_DRAMSIM3,   DSN_TRACE_RAMULATOR2};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    FILE *f = fopen(path, "w");
    fputs(bad[i], f);
    fclose(f);
    int64_t reads = 0, writes = 0;
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(dsn_trace_count(path, formats[i], &reads, &writes, &err), DS_ERR_DATA,
                 "case %zu", i);
    cr_assert_not_null(strstr(err.message, path), "%s", err.message);
  }
  FILE *f = fopen(path, "w");
  fputs("LD 0x40\nST 0x80\nLD 0xc0\n", f);
  fclose(f);
  int64_t reads = 0, writes = 0;
  cr_assert_eq(dsn_trace_count(path, DSN_TRACE_RAMULATOR2, &reads, &writes, NULL), DS_OK);
  cr_assert_eq(reads, 2);
  cr_assert_eq(writes, 1);
  remove(path);
  cr_assert_eq(dsn_trace_count(path, DSN_TRACE_RAMULATOR2, &reads, &writes, NULL), DS_ERR_IO);
}

/* ---- Preset fields of the DRAM model ------------------------------------------------------- */

static ds_status parse_with_dram(const char *extra, dsn_preset *preset, ds_error *err) {
  char text[2048];
  snprintf(text, sizeof text,
           "{\"name\": \"t\", \"clock_mhz\": 300, \"dram\": {\"bus_width_bits\": 64, "
           "\"burst_length\": 8, \"peak_bandwidth_gbps\": 19.2, \"row_bytes\": 8192, "
           "\"row_miss_latency_ns\": 28, \"latency_ns\": 100%s}, \"feature_buffer_bytes\": "
           "589824, \"feature_banks\": 16, \"sampling_lanes\": 16, \"mac_array\": {\"rows\": "
           "32, \"cols\": 32}, \"activation_bits\": 8, \"weight_bits\": 8, "
           "\"accumulator_bits\": 32}",
           extra);
  ds_error_clear(err);
  return dsn_preset_parse(text, strlen(text), "t.json", preset, err);
}

Test(preset_dram, defaults_and_builtins) {
  dsn_preset p;
  ds_error err;
  cr_assert_eq(parse_with_dram("", &p, &err), DS_OK, "%s", err.message);
  cr_assert_str_eq(p.dram.standard, "DDR4-2400");
  cr_assert_eq(p.dram.columns, 1024);
  cr_assert_eq(p.dram.bank_groups, 2);
  cr_assert_eq(p.dram.banks, 4);
  cr_assert_eq(p.dram.trcd_cycles, 16);
  cr_assert_str_eq(p.dram.address_mapping, "RoBaRaCoCh");

  dsn_preset pynq = load_preset("pynq-z2");
  cr_assert_str_eq(pynq.dram.standard, "DDR3-1050");
  cr_assert_eq(pynq.dram.bank_groups, 1);
  cr_assert_eq(pynq.dram.banks, 8);
  cr_assert_eq(pynq.dram.columns, 1024);
  dsr_dram_config c;
  dsn_preset_dram_config(&pynq, &c);
  cr_assert_eq(dsr_dram_config_check(&c, NULL), DS_OK);
  /* 8 banks of 32768 rows of 2 KiB: the board's 512 MiB. */
  cr_assert_eq(dsr_dram_capacity_bytes(&c), (uint64_t)512 << 20);
  dsn_preset zcu = load_preset("zcu102");
  dsn_preset_dram_config(&zcu, &c);
  cr_assert_eq(dsr_dram_capacity_bytes(&c), (uint64_t)4 << 30);
  /* Peak bandwidth agrees with the bus and the clock: 8 bytes twice per 0.833 ns. */
  cr_assert_float_eq(8.0 * 2.0 / c.tck_ns, zcu.dram.peak_bandwidth_gbps, 0.01);

  cr_assert_eq(parse_with_dram(", \"address_mapping\": \"RoCoBaRaCh\", \"channels\": 2, "
                               "\"timing\": {\"tck_ns\": 1.25, \"cl\": 11, \"trcd\": 11, "
                               "\"trp\": 11, \"tras\": 28}",
                               &p, &err),
               DS_OK, "%s", err.message);
  dsn_preset_dram_config(&p, &c);
  cr_assert_eq(c.channels, 2);
  cr_assert_eq(c.cl_cycles, 11);
  cr_assert_float_eq(c.tck_ns, 1.25, 1e-12);
  cr_assert_eq(c.mapping[0], DSR_DRAM_ROW);
  cr_assert_eq(c.mapping[1], DSR_DRAM_COLUMN);
}

Test(preset_dram, too_small_dram_is_rejected) {
  dsn_preset p;
  ds_error err;
  /* 8 banks of one 8 KiB row: 64 KiB, one stripe, too small for a layer's three regions. */
  cr_assert_eq(parse_with_dram(", \"rows\": 1", &p, &err), DS_OK, "%s", err.message);
  const dsr_model *model = load_bundled();
  dsn_model_cost cost;
  ds_error_clear(&err);
  cr_assert_eq(dsn_oracle_model(model, NULL, &p, &cost, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_not_null(strstr(err.message, "beyond the 65536 bytes of the modelled DRAM"), "%s",
                     err.message);
  dsn_model_measure m;
  ds_error_clear(&err);
  cr_assert_eq(dsn_measure_model(model, NULL, &p, NULL, NULL, NULL, &m, &err),
               DS_ERR_INVALID_ARGUMENT);
}

Test(preset_dram, bad_fields_are_reported_together) {
  dsn_preset p;
  ds_error err;
  cr_assert_eq(parse_with_dram(", \"address_mapping\": \"RoRoCo\", \"banks\": 6, "
                               "\"standard\": \"DDR5-4800\", \"timing\": {\"cl\": 0, "
                               "\"tfaw\": 20}",
                               &p, &err),
               DS_ERR_PRESET);
  cr_assert_not_null(strstr(err.message, "dram.address_mapping is the string \"RoRoCo\""), "%s",
                     err.message);
  cr_assert_not_null(strstr(err.message, "dram.banks is 6; expected a power of two"), "%s",
                     err.message);
  cr_assert_not_null(strstr(err.message, "dram.standard is the string \"DDR5-4800\""), "%s",
                     err.message);
  cr_assert_not_null(strstr(err.message, "dram.timing.cl is 0"), "%s", err.message);
  cr_assert_not_null(strstr(err.message, "dram.timing.tfaw is not a preset field"), "%s",
                     err.message);

  cr_assert_eq(parse_with_dram(", \"columns\": 512", &p, &err), DS_ERR_PRESET);
  cr_assert_not_null(strstr(err.message, "dram.row_bytes is 8192"), "%s", err.message);
  cr_assert_eq(parse_with_dram(", \"timing\": 5", &p, &err), DS_ERR_PRESET);
  cr_assert_not_null(strstr(err.message, "dram.timing is 5"), "%s", err.message);
  cr_assert_eq(parse_with_dram(", \"rows\": 16777216, \"ranks\": 16, \"channels\": 32", &p,
                               &err),
               DS_ERR_PRESET);
  cr_assert_not_null(strstr(err.message, "2^"), "%s", err.message);
}
