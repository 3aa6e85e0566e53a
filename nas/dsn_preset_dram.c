/*
 * DRAM model fields of a preset (dsn_preset_dram.h) and their defaults.
 *
 * Timing defaults are the JEDEC speed bins of each standard, in DRAM clock cycles:
 * - DDR4-2400: JESD79-4 speed bin DDR4-2400R, CL-tRCD-tRP 16-16-16 at tCK 0.833 ns,
 *   tRAS 32 ns (39 cycles). Geometry of an 8 Gb x16 device: 2 bank groups of 4 banks,
 *   65536 rows of 1024 columns.
 * - DDR3-1066: JESD79-3 speed bin DDR3-1066F, CL-tRCD-tRP 7-7-7 at tCK 1.875 ns, tRAS 37.5 ns
 *   (20 cycles). Geometry of a 4 Gb x16 device: 8 banks, 32768 rows of 1024 columns.
 * - DDR3-1050: the DDR3-1066F bin run at 525 MHz (tCK 1.905 ns), as on the PYNQ-Z2: the
 *   13.125 ns of tRCD and tRP still round up to 7 cycles and tRAS to 20.
 */
#include "dsn_preset_dram.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nas/dsn_measure.h"
#include "runtime/dsr_dram.h"

typedef struct dram_standard {
  const char *name;
  double tck_ns;
  int32_t cl, trcd, trp, tras;
  int32_t bank_groups, banks, rows;
} dram_standard;

static const dram_standard standards[] = {
    {"DDR4-2400", 0.833, 16, 16, 16, 39, 2, 4, 65536},
    {"DDR3-1066", 1.875, 7, 7, 7, 20, 1, 8, 32768},
    {"DDR3-1050", 1.905, 7, 7, 7, 20, 1, 8, 32768},
};

#define STANDARD_COUNT ((int32_t)(sizeof standards / sizeof standards[0]))
#define DEFAULT_STANDARD "DDR4-2400"
#define DEFAULT_MAPPING "RoBaRaCoCh"

static const char *const geometry_keys[] = {"channels", "ranks", "bank_groups", "banks",
                                            "rows",     "columns"};
static const int64_t geometry_max[] = {64, 16, 16, 256, 1 << 24, 1 << 16};
static const char *const timing_keys[] = {"tck_ns", "cl", "trcd", "trp", "tras"};

static const dram_standard *find_standard(const char *name) {
  for (int32_t i = 0; i < STANDARD_COUNT; i++) {
    if (strcmp(standards[i].name, name) == 0)
      return &standards[i];
  }
  return NULL;
}

int dsn_preset_dram_key_known(const char *key) {
  if (strcmp(key, "standard") == 0 || strcmp(key, "address_mapping") == 0 ||
      strcmp(key, "timing") == 0)
    return 1;
  for (size_t i = 0; i < sizeof geometry_keys / sizeof geometry_keys[0]; i++) {
    if (strcmp(key, geometry_keys[i]) == 0)
      return 1;
  }
  return 0;
}

static void report(dsn_preset_problem_fn problem, void *context, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void report(dsn_preset_problem_fn problem, void *context, const char *format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof line, format, args);
  va_end(args);
  problem(context, line);
}

static void describe(const cJSON *item, char *text, size_t size) {
  if (cJSON_IsNumber(item))
    snprintf(text, size, "%.17g", item->valuedouble);
  else if (cJSON_IsString(item))
    snprintf(text, size, "the string \"%.40s\"", item->valuestring);
  else if (cJSON_IsObject(item))
    snprintf(text, size, "an object");
  else if (cJSON_IsArray(item))
    snprintf(text, size, "an array");
  else
    snprintf(text, size, "%s", cJSON_IsNull(item) ? "null" : "a boolean");
}

static int is_power_of_two(int64_t v) {
  return v > 0 && (v & (v - 1)) == 0;
}

/* Reads an optional integer field; returns 1 when present and valid. */
static int read_int(const cJSON *object, const char *path, const char *key, int64_t min,
                    int64_t max, int power_of_two, int32_t *out, dsn_preset_problem_fn problem,
                    void *context) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
  if (item == NULL)
    return 0;
  double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
  if (!isfinite(v) || floor(v) != v || v < (double)min || v > (double)max ||
      (power_of_two && !is_power_of_two((int64_t)v))) {
    char found[96];
    describe(item, found, sizeof found);
    report(problem, context, "%s.%s is %s; expected %s %lld..%lld", path, key, found,
           power_of_two ? "a power of two" : "an integer", (long long)min, (long long)max);
    return 0;
  }
  *out = (int32_t)v;
  return 1;
}

void dsn_preset_dram_defaults(dsn_preset *preset) {
  dsn_dram *d = &preset->dram;
  if (d->standard[0] == '\0')
    snprintf(d->standard, sizeof d->standard, "%s", DEFAULT_STANDARD);
  const dram_standard *std = find_standard(d->standard);
  if (std == NULL)
    std = find_standard(DEFAULT_STANDARD);
  if (d->channels == 0)
    d->channels = 1;
  if (d->ranks == 0)
    d->ranks = 1;
  if (d->bank_groups == 0)
    d->bank_groups = std->bank_groups;
  if (d->banks == 0)
    d->banks = std->banks;
  if (d->rows == 0)
    d->rows = std->rows;
  if (d->columns == 0 && d->bus_width_bits >= 8)
    d->columns = d->row_bytes / (d->bus_width_bits / 8);
  if (d->address_mapping[0] == '\0')
    snprintf(d->address_mapping, sizeof d->address_mapping, "%s", DEFAULT_MAPPING);
  if (d->tck_ns == 0.0)
    d->tck_ns = std->tck_ns;
  if (d->cl_cycles == 0)
    d->cl_cycles = std->cl;
  if (d->trcd_cycles == 0)
    d->trcd_cycles = std->trcd;
  if (d->trp_cycles == 0)
    d->trp_cycles = std->trp;
  if (d->tras_cycles == 0)
    d->tras_cycles = std->tras;
}

static void read_timing(const cJSON *timing, dsn_dram *d, dsn_preset_problem_fn problem,
                        void *context) {
  if (!cJSON_IsObject(timing)) {
    char found[96];
    describe(timing, found, sizeof found);
    report(problem, context, "dram.timing is %s; expected an object with tck_ns, cl, trcd, trp "
                             "and tras",
           found);
    return;
  }
  const cJSON *child = NULL;
  cJSON_ArrayForEach(child, timing) {
    int known = 0;
    for (size_t i = 0; i < sizeof timing_keys / sizeof timing_keys[0]; i++)
      known |= child->string != NULL && strcmp(child->string, timing_keys[i]) == 0;
    if (!known)
      report(problem, context, "dram.timing.%s is not a preset field; remove it or fix its "
                               "spelling (known: tck_ns, cl, trcd, trp, tras)",
             child->string != NULL ? child->string : "?");
  }
  const cJSON *tck = cJSON_GetObjectItemCaseSensitive(timing, "tck_ns");
  if (tck != NULL) {
    if (!cJSON_IsNumber(tck) || !isfinite(tck->valuedouble) || tck->valuedouble < 0.05 ||
        tck->valuedouble > 1000.0) {
      char found[96];
      describe(tck, found, sizeof found);
      report(problem, context, "dram.timing.tck_ns is %s; expected a number 0.05..1000", found);
    } else {
      d->tck_ns = tck->valuedouble;
    }
  }
  read_int(timing, "dram.timing", "cl", 1, 1000, 0, &d->cl_cycles, problem, context);
  read_int(timing, "dram.timing", "trcd", 1, 1000, 0, &d->trcd_cycles, problem, context);
  read_int(timing, "dram.timing", "trp", 1, 1000, 0, &d->trp_cycles, problem, context);
  read_int(timing, "dram.timing", "tras", 1, 1000, 0, &d->tras_cycles, problem, context);
}

void dsn_preset_dram_read(const cJSON *dram, dsn_preset *preset, dsn_preset_problem_fn problem,
                          void *context) {
  dsn_dram *d = &preset->dram;
  char found[96];
  if (dram != NULL) {
    const cJSON *standard = cJSON_GetObjectItemCaseSensitive(dram, "standard");
    if (standard != NULL) {
      if (!cJSON_IsString(standard) || find_standard(standard->valuestring) == NULL) {
        describe(standard, found, sizeof found);
        report(problem, context, "dram.standard is %s; expected one of DDR4-2400, DDR3-1066, "
                                 "DDR3-1050",
               found);
      } else {
        snprintf(d->standard, sizeof d->standard, "%s", standard->valuestring);
      }
    }
    int32_t *geometry[] = {&d->channels, &d->ranks, &d->bank_groups,
                           &d->banks,    &d->rows,  &d->columns};
    for (size_t i = 0; i < sizeof geometry_keys / sizeof geometry_keys[0]; i++)
      read_int(dram, "dram", geometry_keys[i], 1, geometry_max[i], 1, geometry[i], problem,
               context);
    const cJSON *mapping = cJSON_GetObjectItemCaseSensitive(dram, "address_mapping");
    if (mapping != NULL) {
      uint8_t fields[DSR_DRAM_FIELD_COUNT];
      if (!cJSON_IsString(mapping) || dsr_dram_mapping_parse(mapping->valuestring, fields) != 0) {
        describe(mapping, found, sizeof found);
        report(problem, context,
               "dram.address_mapping is %s; expected the fields Ro, Co and Ba and optionally "
               "Bg, Ra and Ch, each once, most significant first, such as \"RoBaRaCoCh\" or "
               "the bank-interleaved \"RoCoBaRaCh\"",
               found);
      } else {
        snprintf(d->address_mapping, sizeof d->address_mapping, "%s", mapping->valuestring);
      }
    }
    const cJSON *timing = cJSON_GetObjectItemCaseSensitive(dram, "timing");
    if (timing != NULL)
      read_timing(timing, d, problem, context);
  }
  dsn_preset_dram_defaults(preset);

  /* Agreement with the other dram fields. */
  if (d->bus_width_bits < 8 || d->burst_length < 1 || d->row_bytes < 1)
    return; /* already reported */
  if ((int64_t)(d->bus_width_bits / 8) * d->burst_length > d->row_bytes)
    return; /* dsn_preset.c reports a burst larger than a row */
  int64_t row_bytes = (int64_t)d->columns * (d->bus_width_bits / 8);
  if (row_bytes != d->row_bytes)
    report(problem, context,
           "dram.columns %d times the bus width of %d bytes makes rows of %lld bytes, but "
           "dram.row_bytes is %d; make them agree (or leave dram.columns out)",
           d->columns, d->bus_width_bits / 8, (long long)row_bytes, d->row_bytes);
  dsr_dram_config config;
  dsn_preset_dram_config(preset, &config);
  ds_error err;
  ds_error_clear(&err);
  if (dsr_dram_config_check(&config, &err) != DS_OK)
    report(problem, context, "%s", err.message);
}

void dsn_preset_dram_config(const dsn_preset *preset, dsr_dram_config *config) {
  dsn_preset filled = *preset;
  dsn_preset_dram_defaults(&filled);
  const dsn_dram *d = &filled.dram;
  memset(config, 0, sizeof *config);
  config->bus_width_bits = d->bus_width_bits;
  config->burst_length = d->burst_length;
  config->channels = d->channels;
  config->ranks = d->ranks;
  config->bank_groups = d->bank_groups;
  config->banks = d->banks;
  config->rows = d->rows;
  config->columns = d->columns;
  if (dsr_dram_mapping_parse(d->address_mapping, config->mapping) != 0)
    dsr_dram_mapping_parse(DEFAULT_MAPPING, config->mapping);
  config->tck_ns = d->tck_ns;
  config->cl_cycles = d->cl_cycles;
  config->trcd_cycles = d->trcd_cycles;
  config->trp_cycles = d->trp_cycles;
  config->tras_cycles = d->tras_cycles;
}
