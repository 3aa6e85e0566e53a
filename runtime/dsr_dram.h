/*
 * Modelled DRAM: the memory the DMA schedules, the cost oracle and the baselines run against.
 *
 * Geometry: channels x ranks x bank groups x banks, each bank rows x columns, one column one
 * bus width (bus_width_bits / 8 bytes). A burst moves burst_length columns, so a row contains
 * columns / burst_length bursts. A byte address is split into fields by the address mapping:
 * the low log2(burst bytes) bits select the byte inside a burst, and the fields above them
 * follow `mapping`, most significant first, as in the Ramulator names (RoBaRaCoCh: row, bank,
 * rank, column, channel from the top; the column field counts bursts). Every count is a power
 * of two.
 *
 * Row buffer: open page. A burst to the open row of its bank is a row hit; otherwise the bank
 * is precharged when a row is open (a row conflict), the row is activated and the burst is a
 * row miss. Row misses count activations, so the first access to a closed bank is a miss too.
 * Requests are served in arrival order (no reordering), which makes the hit and miss counts a
 * function of the request order only.
 *
 * Timing, in DRAM clock cycles of tck_ns (data moves on both edges, so a burst holds the data
 * bus burst_length / 2 cycles): a hit issues its column command when the bank is ready, a miss
 * waits tRP after a precharge (no earlier than tRAS after the previous activation) and tRCD
 * after its activation; data starts cl_cycles after the column command and no earlier than the
 * channel's data bus is free. Writes use the read latency. Refresh is not modelled.
 *
 * Memory: the caller gives one buffer of dsr_dram_state_bytes(config) bytes to dsr_dram_init;
 * nothing is allocated and no OS call is made. A dsr_dram is used by one thread at a time.
 */
#ifndef DSR_DRAM_H
#define DSR_DRAM_H

#include <stddef.h>
#include <stdint.h>

#include "../common/ds_status.h"

typedef enum dsr_dram_field {
  DSR_DRAM_CHANNEL = 0,
  DSR_DRAM_RANK = 1,
  DSR_DRAM_BANK_GROUP = 2,
  DSR_DRAM_BANK = 3,
  DSR_DRAM_ROW = 4,
  DSR_DRAM_COLUMN = 5,
  DSR_DRAM_FIELD_COUNT = 6
} dsr_dram_field;

/* Largest number of banks over all channels, ranks and groups: bounds the state buffer. */
#define DSR_DRAM_MAX_BANKS 4096

/* Maximum length of a mapping text, such as "RoBgBaRaCoCh", with its terminator. */
#define DSR_DRAM_MAPPING_BYTES 16

typedef struct dsr_dram_config {
  int32_t bus_width_bits; /* data bus of one channel: 8..1024, a power of two */
  int32_t burst_length;   /* beats (columns) per burst, a power of two */
  int32_t channels;       /* each a power of two, 1 or more */
  int32_t ranks;
  int32_t bank_groups;    /* 1 for DDR3 */
  int32_t banks;          /* banks per bank group */
  int32_t rows;           /* rows per bank */
  int32_t columns;        /* columns per row */
  uint8_t mapping[DSR_DRAM_FIELD_COUNT]; /* dsr_dram_field values, most significant first */
  double tck_ns;          /* DRAM clock period */
  int32_t cl_cycles;      /* column command to first data (CAS latency) */
  int32_t trcd_cycles;    /* activate to column command */
  int32_t trp_cycles;     /* precharge to activate */
  int32_t tras_cycles;    /* activate to precharge, at least */
} dsr_dram_config;

/* What a stream of requests did. Bytes are the bytes requested; bus bytes are bursts times
 * the burst bytes. */
typedef struct dsr_dram_counts {
  int64_t read_bytes;
  int64_t write_bytes;
  int64_t read_bursts;
  int64_t write_bursts;
  int64_t row_hits;
  int64_t row_misses;    /* activations */
  int64_t row_conflicts; /* the row misses that first closed another open row */
  int64_t requests;      /* dsr_dram_access calls with at least one byte */
} dsr_dram_counts;

/* Called once per burst, in service order, with the burst-aligned address and the DRAM clock
 * cycle its request arrived at. Used to write address traces. */
typedef void (*dsr_dram_burst_hook)(void *user, uint64_t address, int32_t is_write,
                                    int64_t cycle);

/* Per-bank state, inside the caller's buffer. */
typedef struct dsr_dram_bank {
  int64_t open_row;       /* -1 when precharged */
  int64_t activate_cycle; /* of the open row */
  int64_t ready_cycle;    /* earliest column command to the open row */
} dsr_dram_bank;

typedef struct dsr_dram {
  dsr_dram_config config;
  int32_t bank_count;       /* channels * ranks * bank_groups * banks */
  int32_t field_shift[DSR_DRAM_FIELD_COUNT]; /* bit position above the burst offset */
  int32_t field_bits[DSR_DRAM_FIELD_COUNT];
  int32_t burst_shift;      /* log2(burst bytes) */
  int32_t burst_cycles;     /* burst_length / 2, at least 1 */
  dsr_dram_bank *banks;     /* bank_count entries, in the caller's buffer */
  int64_t *bus_free_cycle;  /* one per channel, in the caller's buffer */
  int64_t end_cycle;        /* the latest data beat so far */
  dsr_dram_counts counts;
  dsr_dram_burst_hook hook;
  void *hook_user;
} dsr_dram;

/*
 * Checks config: every count a power of two, banks in all at most DSR_DRAM_MAX_BANKS, each
 * field exactly once in mapping, columns a multiple of burst_length, timing positive, and the
 * whole address space at most 2^48 bytes. err names the field, the value and the range.
 */
ds_status dsr_dram_config_check(const dsr_dram_config *config, ds_error *err);

/* Bytes of the state buffer for config (0 when config is invalid). */
size_t dsr_dram_state_bytes(const dsr_dram_config *config);

/*
 * Lays dram out in state (state_bytes at least dsr_dram_state_bytes, 8-byte aligned), owned by
 * the caller and alive as long as dram, and resets it. Errors: those of dsr_dram_config_check,
 * DS_ERR_ARENA_TOO_SMALL (requested and available bytes), DS_ERR_INVALID_ARGUMENT.
 */
ds_status dsr_dram_init(dsr_dram *dram, const dsr_dram_config *config, void *state,
                        size_t state_bytes, ds_error *err);

/* Closes every row, sets the clock and the counts to zero. Keeps the hook. */
void dsr_dram_reset(dsr_dram *dram);

/* Closes every row (as a precharge-all command would) and keeps the counts and clock. */
void dsr_dram_precharge_all(dsr_dram *dram);

/* Installs a per-burst hook (NULL removes it). */
void dsr_dram_set_hook(dsr_dram *dram, dsr_dram_burst_hook hook, void *user);

/*
 * Serves one request of bytes bytes at address, arriving at start_cycle: every burst it
 * touches (from the burst holding address to the one holding its last byte) is read or
 * written. Returns the cycle after its last data beat (start_cycle when bytes is 0). Bursts
 * that stay in one open row are served as one run, so the cost grows with the rows touched,
 * not the bursts, unless a hook is installed. The request must lie below
 * dsr_dram_capacity_bytes: address bits above the mapped fields are ignored, so a larger
 * address aliases a lower one (dsr_exec_check rejects such schedules).
 */
int64_t dsr_dram_access(dsr_dram *dram, int64_t start_cycle, uint64_t address, uint64_t bytes,
                        int32_t is_write);

/*
 * Serves a 2-D strided copy (row_count rows of row_bytes, stride_bytes apart). Contiguous rows
 * (stride_bytes == row_bytes) are one request, else each row is one request. Every request
 * arrives at start_cycle and they are served in row order. Returns the cycle after the last
 * data beat.
 */
int64_t dsr_dram_access_2d(dsr_dram *dram, int64_t start_cycle, uint64_t address,
                           uint64_t row_bytes, uint64_t row_count, uint64_t stride_bytes,
                           int32_t is_write);

/* Splits address into its fields (channel, rank, bank group, bank, row, column in bursts). */
void dsr_dram_locate(const dsr_dram *dram, uint64_t address,
                     int64_t fields[DSR_DRAM_FIELD_COUNT]);

/* Bytes of one burst: bus_width_bits / 8 * burst_length. */
int64_t dsr_dram_burst_bytes(const dsr_dram_config *config);

/* Bytes of one row of one bank: bus_width_bits / 8 * columns. */
int64_t dsr_dram_row_bytes(const dsr_dram_config *config);

/*
 * Bytes of address space below the row field (2^(bit position of the row field)). Shifting
 * every address of a request stream by a multiple of it moves each request to the same bank
 * and column of another row. When the row field is the most significant one, the hit and miss
 * counts therefore do not change.
 */
uint64_t dsr_dram_stripe_bytes(const dsr_dram_config *config);

/* Total bytes of the modelled DRAM. */
uint64_t dsr_dram_capacity_bytes(const dsr_dram_config *config);

/*
 * Parses a mapping such as "RoBaRaCoCh" or "RoCoBaRaCh": two-letter fields Ch, Ra, Bg, Ba, Ro,
 * Co, most significant first, each at most once; Ro, Co and Ba are required. When Ch, Ra or
 * Bg is missing it sits directly below Ba (so "Ba" covers bank group and bank, bank group
 * bits lowest). Returns 0 on success, -1 when malformed.
 */
int32_t dsr_dram_mapping_parse(const char *text, uint8_t mapping[DSR_DRAM_FIELD_COUNT]);

/* Writes mapping as text with all six fields, such as "RoBaBgRaCoCh", into text of
 * DSR_DRAM_MAPPING_BYTES. */
void dsr_dram_mapping_format(const uint8_t mapping[DSR_DRAM_FIELD_COUNT],
                             char text[DSR_DRAM_MAPPING_BYTES]);

/* DRAM time in nanoseconds of cycles DRAM clock cycles. */
double dsr_dram_cycles_ns(const dsr_dram_config *config, int64_t cycles);

#endif
