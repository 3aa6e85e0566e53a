/*
 * Feature buffer banks and the set-associative cache of dsr_onchip.h.
 */
#include "dsr_onchip.h"

#include <math.h>
#include <string.h>

int32_t dsr_bank_of_pixel(int32_t bank_count, int32_t width, int32_t y, int32_t x) {
  int64_t blocks_per_row = ((int64_t)width + 1) / 2;
  int64_t block = (int64_t)(y / 2) * blocks_per_row + x / 2;
  return (int32_t)(block % bank_count);
}

/* Sorts keys ascending (Shell sort with Ciura's gaps; groups are at most 4096 keys). */
static void sort_keys(uint64_t *keys, int32_t count) {
  static const int32_t gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};
  for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
    int32_t gap = gaps[g];
    for (int32_t i = gap; i < count; i++) {
      uint64_t key = keys[i];
      int32_t j = i;
      while (j >= gap && keys[j - gap] > key) {
        keys[j] = keys[j - gap];
        j -= gap;
      }
      keys[j] = key;
    }
  }
}

/* Cycles one group of reads takes: the largest count of distinct pixels in one sub-bank.
 * Keys are (sub-bank << 32) | pixel; duplicates are one shared read. */
static int64_t group_cycles(uint64_t *keys, int32_t count, int64_t *distinct) {
  if (count == 0) {
    *distinct = 0;
    return 1;
  }
  sort_keys(keys, count);
  int64_t busiest = 0, reads = 0, run = 0;
  for (int32_t i = 0; i < count; i++) {
    if (i > 0 && keys[i] == keys[i - 1])
      continue;
    reads++;
    if (i > 0 && (keys[i] >> 32) == (keys[i - 1] >> 32))
      run++;
    else
      run = 1;
    if (run > busiest)
      busiest = run;
  }
  *distinct = reads;
  return busiest > 0 ? busiest : 1;
}

void dsr_banks_sample(int32_t bank_count, int32_t lanes, int32_t height, int32_t width,
                      const float *y, const float *x, int64_t count, int64_t stride,
                      dsr_bank_counts *counts) {
  if (bank_count < 1 || lanes < 1 || lanes > DSR_BANKS_MAX_LANES || count <= 0 || height <= 0 ||
      width <= 0)
    return;
  uint64_t keys[4 * DSR_BANKS_MAX_LANES];
  for (int64_t first = 0; first < count; first += lanes) {
    int64_t end = first + lanes < count ? first + lanes : count;
    int32_t used = 0;
    for (int64_t s = first; s < end; s++) {
      float sy = y[s * stride], sx = x[s * stride];
      if (!(sy > -2.0f && sy < (float)height + 1.0f && sx > -2.0f && sx < (float)width + 1.0f))
        continue; /* every neighbour is outside: nothing to read */
      int32_t y0 = (int32_t)floorf(sy), x0 = (int32_t)floorf(sx);
      for (int32_t dy = 0; dy < 2; dy++) {
        int32_t yy = y0 + dy;
        if (yy < 0 || yy >= height)
          continue;
        for (int32_t dx = 0; dx < 2; dx++) {
          int32_t xx = x0 + dx;
          if (xx < 0 || xx >= width)
            continue;
          uint64_t sub_bank =
              (uint64_t)dsr_bank_of_pixel(bank_count, width, yy, xx) * 4u + (uint64_t)((yy & 1) * 2 + (xx & 1));
          uint64_t pixel = (uint64_t)yy * (uint64_t)width + (uint64_t)xx;
          keys[used++] = (sub_bank << 32) | pixel;
        }
      }
    }
    int64_t distinct = 0;
    int64_t cycles = group_cycles(keys, used, &distinct);
    counts->samples += end - first;
    counts->reads += distinct;
    counts->groups++;
    counts->cycles += cycles;
    counts->stall_cycles += cycles - 1;
  }
}

static int is_power_of_two(int64_t value) {
  return value > 0 && (value & (value - 1)) == 0;
}

ds_status dsr_cache_config_check(const dsr_cache_config *config, ds_error *err) {
  if (config == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsr_cache_config_check: NULL config");
  if (!is_power_of_two(config->line_bytes) || config->line_bytes > (1 << 20))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "cache line_bytes is %d; expected a power of two 1..1048576",
                   config->line_bytes);
  if (config->ways < 1 || config->ways > 64)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "cache ways is %d; expected 1..64",
                   config->ways);
  int64_t set_bytes = (int64_t)config->line_bytes * config->ways;
  if (config->capacity_bytes < set_bytes || config->capacity_bytes % set_bytes != 0 ||
      !is_power_of_two(config->capacity_bytes / set_bytes) ||
      config->capacity_bytes / set_bytes > (1 << 24))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "cache capacity_bytes is %lld; expected line_bytes %d x ways %d x a power "
                   "of two 1..16777216 sets",
                   (long long)config->capacity_bytes, config->line_bytes, config->ways);
  return DS_OK;
}

size_t dsr_cache_state_bytes(const dsr_cache_config *config) {
  if (dsr_cache_config_check(config, NULL) != DS_OK)
    return 0;
  return (size_t)(config->capacity_bytes / config->line_bytes) * sizeof(dsr_cache_line);
}

ds_status dsr_cache_init(dsr_cache *cache, const dsr_cache_config *config, void *state,
                         size_t state_bytes, ds_error *err) {
  if (cache == NULL || state == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsr_cache_init: NULL cache or state");
  DS_TRY(dsr_cache_config_check(config, err));
  if (((uintptr_t)state & 7u) != 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "dsr_cache_init: the state buffer is not 8-byte aligned");
  size_t needed = dsr_cache_state_bytes(config);
  if (state_bytes < needed)
    return ds_fail(err, DS_ERR_ARENA_TOO_SMALL,
                   "cache state needs %zu bytes, %zu available (%zu missing)", needed,
                   state_bytes, needed - state_bytes);
  memset(cache, 0, sizeof *cache);
  cache->config = *config;
  cache->set_count = (int32_t)(config->capacity_bytes / ((int64_t)config->line_bytes * config->ways));
  int32_t shift = 0;
  while ((1 << shift) < config->line_bytes)
    shift++;
  cache->line_shift = shift;
  cache->lines = (dsr_cache_line *)state;
  dsr_cache_reset(cache);
  return DS_OK;
}

void dsr_cache_reset(dsr_cache *cache) {
  int64_t count = (int64_t)cache->set_count * cache->config.ways;
  for (int64_t i = 0; i < count; i++) {
    cache->lines[i].tag = UINT64_MAX;
    cache->lines[i].last_used = 0;
  }
  cache->clock = 0;
  memset(&cache->counts, 0, sizeof cache->counts);
}

int64_t dsr_cache_read(dsr_cache *cache, dsr_dram *dram, int64_t cycle, uint64_t address,
                       uint64_t bytes) {
  if (bytes == 0)
    return cycle;
  int64_t done = cycle;
  int32_t ways = cache->config.ways;
  uint64_t first = address >> cache->line_shift;
  uint64_t last = (address + bytes - 1) >> cache->line_shift;
  for (uint64_t line = first; line <= last; line++) {
    cache->clock++;
    cache->counts.accesses++;
    dsr_cache_line *set = &cache->lines[(line & (uint64_t)(cache->set_count - 1)) * (uint64_t)ways];
    int32_t victim = 0;
    int32_t hit = -1;
    for (int32_t w = 0; w < ways; w++) {
      if (set[w].tag == line) {
        hit = w;
        break;
      }
      /* Empty lines have last_used 0 and are taken first. */
      if (set[w].last_used < set[victim].last_used)
        victim = w;
    }
    if (hit >= 0) {
      cache->counts.hits++;
      set[hit].last_used = cache->clock;
      continue;
    }
    cache->counts.misses++;
    cache->counts.fill_bytes += cache->config.line_bytes;
    set[victim].tag = line;
    set[victim].last_used = cache->clock;
    if (dram != NULL) {
      int64_t filled = dsr_dram_access(dram, cycle, line << cache->line_shift,
                                       (uint64_t)cache->config.line_bytes, 0);
      if (filled > done)
        done = filled;
    }
  }
  return done;
}
