/*
 * On-chip memories in front of the modelled DRAM: the banked feature buffer that parallel
 * sampling lanes read, and a set-associative cache for the cache baseline.
 *
 * Feature buffer banks. The buffered map (an extended patch, or the whole map) is stored in
 * feature_banks banks, each split into four parity sub-banks by (y mod 2, x mod 2), so the
 * four bilinear neighbours of one sample always sit in four different sub-banks. Pixel
 * (y, x) of a map w pixels wide lives in bank ((y / 2) * ceil(w / 2) + x / 2) mod banks.
 * Each sub-bank serves one pixel vector per cycle. Every cycle the sampling lanes take the
 * next `lanes` samples; their reads of distinct pixels that fall in one sub-bank are served
 * one per cycle (lanes that read the same pixel share the read), so a group takes as many
 * cycles as the busiest sub-bank has distinct pixels. Cycles beyond the first are
 * bank-conflict stall cycles. Neighbours outside the map read nothing (zero padding).
 *
 * Cache. line_bytes lines, `ways` ways per set, capacity_bytes in all, least recently used
 * replacement, read only (the samples of x never change while a layer runs). A miss fills the
 * whole line from the DRAM model.
 *
 * Memory: caller buffers only, sized by the *_state_bytes functions; no allocation, no OS
 * calls. Each object is used by one thread at a time.
 */
#ifndef DSR_ONCHIP_H
#define DSR_ONCHIP_H

#include <stddef.h>
#include <stdint.h>

#include "../common/ds_status.h"
#include "dsr_dram.h"

/* Most lanes dsr_banks_sample accepts. */
#define DSR_BANKS_MAX_LANES 1024

typedef struct dsr_bank_counts {
  int64_t samples;      /* samples taken */
  int64_t reads;        /* distinct pixel vectors read, summed over the groups */
  int64_t groups;       /* cycles the lanes issued a group */
  int64_t cycles;       /* cycles the groups took, stalls included */
  int64_t stall_cycles; /* cycles - groups */
} dsr_bank_counts;

/* Bank of pixel (y, x) of a width-wide map held in bank_count banks (see above). */
int32_t dsr_bank_of_pixel(int32_t bank_count, int32_t width, int32_t y, int32_t x);

/*
 * Runs count samples through lanes parallel lanes on a height x width buffered map, in the
 * given order (lanes consecutive samples per group). y and x are sampling positions in
 * pixels of that map (the top-left neighbour is (floor(y), floor(x))); stride is the distance
 * in floats between consecutive samples' entries. Adds the figures to counts. lanes must be
 * 1..DSR_BANKS_MAX_LANES and bank_count at least 1; otherwise nothing is added.
 */
void dsr_banks_sample(int32_t bank_count, int32_t lanes, int32_t height, int32_t width,
                      const float *y, const float *x, int64_t count, int64_t stride,
                      dsr_bank_counts *counts);

typedef struct dsr_cache_config {
  int32_t line_bytes;     /* a power of two, at least 1 */
  int32_t ways;           /* 1 or more */
  int64_t capacity_bytes; /* line_bytes * ways * sets, sets a power of two */
} dsr_cache_config;

typedef struct dsr_cache_counts {
  int64_t accesses;   /* lines looked up */
  int64_t hits;
  int64_t misses;     /* lines filled from DRAM */
  int64_t fill_bytes; /* misses * line_bytes */
} dsr_cache_counts;

typedef struct dsr_cache_line {
  uint64_t tag;       /* line address; UINT64_MAX when empty */
  uint64_t last_used; /* access number of the last hit or fill */
} dsr_cache_line;

typedef struct dsr_cache {
  dsr_cache_config config;
  int32_t set_count;
  int32_t line_shift;
  dsr_cache_line *lines; /* set_count * ways, in the caller's buffer */
  uint64_t clock;        /* access number, for LRU */
  dsr_cache_counts counts;
} dsr_cache;

/* Checks config (line_bytes a power of two up to 1 MiB, ways 1..64, capacity a whole power of
 * two number of sets). */
ds_status dsr_cache_config_check(const dsr_cache_config *config, ds_error *err);

/* Bytes of the state buffer for config (0 when invalid). */
size_t dsr_cache_state_bytes(const dsr_cache_config *config);

/* Lays cache out in state (8-byte aligned, owned by the caller) and empties it. Errors: those
 * of dsr_cache_config_check, DS_ERR_ARENA_TOO_SMALL, DS_ERR_INVALID_ARGUMENT. */
ds_status dsr_cache_init(dsr_cache *cache, const dsr_cache_config *config, void *state,
                         size_t state_bytes, ds_error *err);

/* Empties the cache and zeroes its counts. */
void dsr_cache_reset(dsr_cache *cache);

/*
 * Reads [address, address + bytes) through the cache: each line it touches is looked up, and
 * a missing line is read from dram (line_bytes from the line's address, arriving at cycle) and
 * replaces the least recently used line of its set. dram may be NULL to count hits only.
 * Returns the cycle the data is available (cycle when every line hits).
 */
int64_t dsr_cache_read(dsr_cache *cache, dsr_dram *dram, int64_t cycle, uint64_t address,
                       uint64_t bytes);

#endif
