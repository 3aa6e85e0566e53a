/*
 * Modelled DRAM (dsr_dram.h): address decoding by field, open-page row buffers and an
 * in-order timing model. Requests are walked one row segment at a time: the bursts of a
 * request that stay in one bank row are served as a run, with the same figures as serving
 * them one by one.
 */
#include "dsr_dram.h"

#include <string.h>

static const char field_names[DSR_DRAM_FIELD_COUNT][3] = {"Ch", "Ra", "Bg", "Ba", "Ro", "Co"};

static int is_power_of_two(int64_t value) {
  return value > 0 && (value & (value - 1)) == 0;
}

static int32_t log2_exact(int64_t value) {
  int32_t bits = 0;
  while (value > 1) {
    value >>= 1;
    bits++;
  }
  return bits;
}

static int64_t max_i64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

int64_t dsr_dram_burst_bytes(const dsr_dram_config *config) {
  return (int64_t)(config->bus_width_bits / 8) * config->burst_length;
}

int64_t dsr_dram_row_bytes(const dsr_dram_config *config) {
  return (int64_t)(config->bus_width_bits / 8) * config->columns;
}

/* Number of values of each field (the column field counts bursts). */
static void field_sizes(const dsr_dram_config *config, int64_t sizes[DSR_DRAM_FIELD_COUNT]) {
  sizes[DSR_DRAM_CHANNEL] = config->channels;
  sizes[DSR_DRAM_RANK] = config->ranks;
  sizes[DSR_DRAM_BANK_GROUP] = config->bank_groups;
  sizes[DSR_DRAM_BANK] = config->banks;
  sizes[DSR_DRAM_ROW] = config->rows;
  sizes[DSR_DRAM_COLUMN] = config->burst_length > 0 ? config->columns / config->burst_length : 0;
}

ds_status dsr_dram_config_check(const dsr_dram_config *config, ds_error *err) {
  if (config == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsr_dram_config_check: NULL config");
  const struct {
    const char *name;
    int64_t value;
    int64_t max;
  } counts[] = {
      {"bus_width_bits", config->bus_width_bits, 1024},
      {"burst_length", config->burst_length, 256},
      {"channels", config->channels, 64},
      {"ranks", config->ranks, 16},
      {"bank_groups", config->bank_groups, 16},
      {"banks", config->banks, 256},
      {"rows", config->rows, 1 << 24},
      {"columns", config->columns, 1 << 16},
  };
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
    if (!is_power_of_two(counts[i].value) || counts[i].value > counts[i].max)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "DRAM %s is %lld; expected a power of two 1..%lld", counts[i].name,
                     (long long)counts[i].value, (long long)counts[i].max);
  }
  if (config->bus_width_bits < 8)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "DRAM bus_width_bits is %d; expected at least 8", config->bus_width_bits);
  if (config->columns < config->burst_length)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "DRAM columns %d are fewer than burst_length %d; a row must hold a burst",
                   config->columns, config->burst_length);
  int64_t bank_count = (int64_t)config->channels * config->ranks * config->bank_groups *
                       config->banks;
  if (bank_count > DSR_DRAM_MAX_BANKS)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "DRAM has %lld banks (channels x ranks x bank_groups x banks); expected at "
                   "most %d",
                   (long long)bank_count, DSR_DRAM_MAX_BANKS);
  int seen[DSR_DRAM_FIELD_COUNT] = {0};
  for (int32_t i = 0; i < DSR_DRAM_FIELD_COUNT; i++) {
    if (config->mapping[i] >= DSR_DRAM_FIELD_COUNT || seen[config->mapping[i]]++)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "DRAM address mapping repeats or lacks a field at position %d; expected "
                     "each of Ch, Ra, Bg, Ba, Ro, Co once",
                     i);
  }
  int64_t sizes[DSR_DRAM_FIELD_COUNT];
  field_sizes(config, sizes);
  int32_t bits = log2_exact(dsr_dram_burst_bytes(config));
  for (int32_t i = 0; i < DSR_DRAM_FIELD_COUNT; i++)
    bits += log2_exact(sizes[i]);
  if (bits > 48)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "DRAM geometry spans 2^%d bytes; expected at most 2^48", bits);
  if (!(config->tck_ns > 0.0 && config->tck_ns <= 1000.0))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "DRAM tck_ns is %g; expected 0 < tck_ns <= 1000",
                   config->tck_ns);
  const struct {
    const char *name;
    int32_t value;
  } timings[] = {{"cl_cycles", config->cl_cycles},
                 {"trcd_cycles", config->trcd_cycles},
                 {"trp_cycles", config->trp_cycles},
                 {"tras_cycles", config->tras_cycles}};
  for (size_t i = 0; i < sizeof timings / sizeof timings[0]; i++) {
    if (timings[i].value < 1 || timings[i].value > 1000)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "DRAM %s is %d; expected 1..1000",
                     timings[i].name, timings[i].value);
  }
  return DS_OK;
}

static size_t bank_count_of(const dsr_dram_config *config) {
  return (size_t)config->channels * (size_t)config->ranks * (size_t)config->bank_groups *
         (size_t)config->banks;
}

size_t dsr_dram_state_bytes(const dsr_dram_config *config) {
  if (dsr_dram_config_check(config, NULL) != DS_OK)
    return 0;
  return bank_count_of(config) * sizeof(dsr_dram_bank) + (size_t)config->channels * sizeof(int64_t);
}

ds_status dsr_dram_init(dsr_dram *dram, const dsr_dram_config *config, void *state,
                        size_t state_bytes, ds_error *err) {
  if (dram == NULL || state == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsr_dram_init: NULL dram or state");
  DS_TRY(dsr_dram_config_check(config, err));
  if (((uintptr_t)state & 7u) != 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "dsr_dram_init: the state buffer is not 8-byte aligned");
  size_t needed = dsr_dram_state_bytes(config);
  if (state_bytes < needed)
    return ds_fail(err, DS_ERR_ARENA_TOO_SMALL,
                   "DRAM state needs %zu bytes, %zu available (%zu missing)", needed,
                   state_bytes, needed - state_bytes);

  memset(dram, 0, sizeof *dram);
  dram->config = *config;
  dram->bank_count = (int32_t)bank_count_of(config);
  int64_t sizes[DSR_DRAM_FIELD_COUNT];
  field_sizes(config, sizes);
  int32_t shift = 0;
  for (int32_t i = DSR_DRAM_FIELD_COUNT - 1; i >= 0; i--) {
    int32_t field = config->mapping[i];
    dram->field_shift[field] = shift;
    dram->field_bits[field] = log2_exact(sizes[field]);
    shift += dram->field_bits[field];
  }
  dram->burst_shift = log2_exact(dsr_dram_burst_bytes(config));
  dram->burst_cycles = config->burst_length >= 2 ? config->burst_length / 2 : 1;
  dram->banks = (dsr_dram_bank *)state;
  dram->bus_free_cycle = (int64_t *)(void *)(dram->banks + dram->bank_count);
  dsr_dram_reset(dram);
  return DS_OK;
}

void dsr_dram_reset(dsr_dram *dram) {
  for (int32_t i = 0; i < dram->bank_count; i++) {
    dram->banks[i].open_row = -1;
    dram->banks[i].activate_cycle = 0;
    dram->banks[i].ready_cycle = 0;
  }
  for (int32_t c = 0; c < dram->config.channels; c++)
    dram->bus_free_cycle[c] = 0;
  dram->end_cycle = 0;
  memset(&dram->counts, 0, sizeof dram->counts);
}

void dsr_dram_precharge_all(dsr_dram *dram) {
  for (int32_t i = 0; i < dram->bank_count; i++) {
    dsr_dram_bank *bank = &dram->banks[i];
    if (bank->open_row >= 0) {
      int64_t precharge = max_i64(bank->ready_cycle,
                                  bank->activate_cycle + dram->config.tras_cycles);
      bank->ready_cycle = precharge + dram->config.trp_cycles;
    }
    bank->open_row = -1;
  }
}

void dsr_dram_set_hook(dsr_dram *dram, dsr_dram_burst_hook hook, void *user) {
  dram->hook = hook;
  dram->hook_user = user;
}

static int64_t field_of(const dsr_dram *dram, uint64_t burst, int32_t field) {
  return (int64_t)((burst >> dram->field_shift[field]) &
                   ((UINT64_C(1) << dram->field_bits[field]) - 1));
}

void dsr_dram_locate(const dsr_dram *dram, uint64_t address,
                     int64_t fields[DSR_DRAM_FIELD_COUNT]) {
  uint64_t burst = address >> dram->burst_shift;
  for (int32_t f = 0; f < DSR_DRAM_FIELD_COUNT; f++)
    fields[f] = field_of(dram, burst, f);
}

static int32_t bank_index(const dsr_dram *dram, uint64_t burst) {
  const dsr_dram_config *c = &dram->config;
  int64_t index = field_of(dram, burst, DSR_DRAM_CHANNEL);
  index = index * c->ranks + field_of(dram, burst, DSR_DRAM_RANK);
  index = index * c->bank_groups + field_of(dram, burst, DSR_DRAM_BANK_GROUP);
  index = index * c->banks + field_of(dram, burst, DSR_DRAM_BANK);
  return (int32_t)index;
}

/* Serves run bursts starting at burst, all in one bank row, arriving at start. Returns the
 * cycle after the last data beat. */
static int64_t serve_run(dsr_dram *dram, int64_t start, uint64_t burst, int64_t run,
                         int32_t is_write) {
  const dsr_dram_config *c = &dram->config;
  dsr_dram_bank *bank = &dram->banks[bank_index(dram, burst)];
  int64_t row = field_of(dram, burst, DSR_DRAM_ROW);
  int64_t channel = field_of(dram, burst, DSR_DRAM_CHANNEL);
  int64_t column_cycle;
  if (bank->open_row == row) {
    dram->counts.row_hits += run;
    column_cycle = max_i64(start, bank->ready_cycle);
  } else {
    int64_t activate;
    if (bank->open_row >= 0) {
      dram->counts.row_conflicts++;
      int64_t precharge = max_i64(max_i64(start, bank->ready_cycle),
                                  bank->activate_cycle + c->tras_cycles);
      activate = precharge + c->trp_cycles;
    } else {
      activate = max_i64(start, bank->ready_cycle);
    }
    dram->counts.row_misses++;
    dram->counts.row_hits += run - 1;
    bank->open_row = row;
    bank->activate_cycle = activate;
    column_cycle = activate + c->trcd_cycles;
  }
  int64_t burst_cycles = dram->burst_cycles;
  int64_t data = max_i64(column_cycle + c->cl_cycles, dram->bus_free_cycle[channel]);
  /* The run's later bursts follow one burst time apart: each is a hit whose column command
   * is ready as the previous burst leaves the bus. */
  int64_t end = data + run * burst_cycles;
  bank->ready_cycle = column_cycle + run * burst_cycles;
  dram->bus_free_cycle[channel] = end;
  if (end > dram->end_cycle)
    dram->end_cycle = end;
  if (is_write)
    dram->counts.write_bursts += run;
  else
    dram->counts.read_bursts += run;
  if (dram->hook != NULL) {
    for (int64_t k = 0; k < run; k++)
      dram->hook(dram->hook_user, (burst + (uint64_t)k) << dram->burst_shift, is_write, start);
  }
  return end;
}

int64_t dsr_dram_access(dsr_dram *dram, int64_t start_cycle, uint64_t address, uint64_t bytes,
                        int32_t is_write) {
  if (bytes == 0)
    return start_cycle;
  dram->counts.requests++;
  if (is_write)
    dram->counts.write_bytes += (int64_t)bytes;
  else
    dram->counts.read_bytes += (int64_t)bytes;

  uint64_t burst = address >> dram->burst_shift;
  uint64_t last = (address + bytes - 1) >> dram->burst_shift;
  int64_t end = start_cycle;
  /* Consecutive bursts share a row only when the column field is the lowest field with
   * bits; the run then lasts to the end of the row. */
  int column_lowest = dram->field_shift[DSR_DRAM_COLUMN] == 0;
  uint64_t row_bursts = UINT64_C(1) << dram->field_bits[DSR_DRAM_COLUMN];
  while (burst <= last) {
    uint64_t run = 1;
    if (column_lowest) {
      uint64_t column = burst & (row_bursts - 1);
      run = row_bursts - column;
      if (run > last - burst + 1)
        run = last - burst + 1;
    }
    int64_t done = serve_run(dram, start_cycle, burst, (int64_t)run, is_write);
    if (done > end)
      end = done;
    burst += run;
  }
  return end;
}

int64_t dsr_dram_access_2d(dsr_dram *dram, int64_t start_cycle, uint64_t address,
                           uint64_t row_bytes, uint64_t row_count, uint64_t stride_bytes,
                           int32_t is_write) {
  if (row_bytes == 0 || row_count == 0)
    return start_cycle;
  if (stride_bytes == row_bytes)
    return dsr_dram_access(dram, start_cycle, address, row_bytes * row_count, is_write);
  int64_t end = start_cycle;
  for (uint64_t r = 0; r < row_count; r++) {
    int64_t done =
        dsr_dram_access(dram, start_cycle, address + r * stride_bytes, row_bytes, is_write);
    if (done > end)
      end = done;
  }
  return end;
}

uint64_t dsr_dram_stripe_bytes(const dsr_dram_config *config) {
  /* Bits below the row field: the burst offset and every field after Ro in the mapping. */
  int64_t sizes[DSR_DRAM_FIELD_COUNT];
  field_sizes(config, sizes);
  int32_t bits = log2_exact(dsr_dram_burst_bytes(config));
  int below = 0;
  for (int32_t i = 0; i < DSR_DRAM_FIELD_COUNT; i++) {
    if (below)
      bits += log2_exact(sizes[config->mapping[i]]);
    if (config->mapping[i] == DSR_DRAM_ROW)
      below = 1;
  }
  return UINT64_C(1) << bits;
}

uint64_t dsr_dram_capacity_bytes(const dsr_dram_config *config) {
  return (uint64_t)bank_count_of(config) * (uint64_t)config->rows *
         (uint64_t)dsr_dram_row_bytes(config);
}

int32_t dsr_dram_mapping_parse(const char *text, uint8_t mapping[DSR_DRAM_FIELD_COUNT]) {
  if (text == NULL)
    return -1;
  size_t length = strlen(text);
  if (length % 2 != 0 || length < 6 || length > 12)
    return -1;
  int seen[DSR_DRAM_FIELD_COUNT] = {0};
  uint8_t given[DSR_DRAM_FIELD_COUNT];
  int32_t count = 0;
  for (size_t i = 0; i < length; i += 2) {
    int32_t field = -1;
    for (int32_t f = 0; f < DSR_DRAM_FIELD_COUNT; f++) {
      if (text[i] == field_names[f][0] && text[i + 1] == field_names[f][1])
        field = f;
    }
    if (field < 0 || seen[field])
      return -1;
    seen[field] = 1;
    given[count++] = (uint8_t)field;
  }
  if (!seen[DSR_DRAM_ROW] || !seen[DSR_DRAM_COLUMN] || !seen[DSR_DRAM_BANK])
    return -1;
  /* Missing fields go directly below Ba: bank group, then rank, then channel. */
  static const uint8_t fill_order[] = {DSR_DRAM_BANK_GROUP, DSR_DRAM_RANK, DSR_DRAM_CHANNEL};
  int32_t out = 0;
  for (int32_t i = 0; i < count && out < DSR_DRAM_FIELD_COUNT; i++) {
    mapping[out++] = given[i];
    if (given[i] == DSR_DRAM_BANK) {
      for (size_t m = 0; m < sizeof fill_order && out < DSR_DRAM_FIELD_COUNT; m++) {
        if (!seen[fill_order[m]])
          mapping[out++] = fill_order[m];
      }
    }
  }
  return out == DSR_DRAM_FIELD_COUNT ? 0 : -1;
}

void dsr_dram_mapping_format(const uint8_t mapping[DSR_DRAM_FIELD_COUNT],
                             char text[DSR_DRAM_MAPPING_BYTES]) {
  int32_t used = 0;
  for (int32_t i = 0; i < DSR_DRAM_FIELD_COUNT; i++) {
    uint8_t f = mapping[i] < DSR_DRAM_FIELD_COUNT ? mapping[i] : 0;
    text[used++] = field_names[f][0];
    text[used++] = field_names[f][1];
  }
  text[used] = '\0';
}

double dsr_dram_cycles_ns(const dsr_dram_config *config, int64_t cycles) {
  return (double)cycles * config->tck_ns;
}
