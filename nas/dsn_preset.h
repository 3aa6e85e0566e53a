/*
 * Accelerator descriptions: the DRAM, the on-chip feature buffer and the compute array that
 * the cost oracle, the DMA schedule generator and the search model.
 *
 * A preset is a JSON object (see docs/hardware-model.md for every field, its unit and which
 * figures are vendor figures and which are modelling choices). The presets zcu102 (the
 * default), kv260 and pynq-z2 ship as presets/<name>.json and are also built into the binary.
 *
 * docs/preset.schema.json is the JSON Schema of a description. The parser implements the same
 * rules plus the cross-field checks that a schema cannot express: a burst larger than a DRAM
 * row, buffers larger than the part's block RAM, a MAC array larger than its DSP slices and a
 * feature buffer that does not split evenly into its banks.
 *
 * Every parser here reports all problems of a description at once: each line of the message
 * names the source, the field, the value found and the allowed range or the fix, and the
 * status is DS_ERR_PRESET. Nothing is allocated that the caller must free.
 */
#ifndef DSN_PRESET_H
#define DSN_PRESET_H

#include <stddef.h>
#include <stdint.h>

#include "common/ds_status.h"

#define DSN_PRESET_NAME_BYTES 64
#define DSN_DEFAULT_PRESET "zcu102"
#define DSN_DRAM_STANDARD_BYTES 16
#define DSN_DRAM_MAPPING_BYTES 16

typedef struct dsn_dram {
  int32_t bus_width_bits;     /* data bus width */
  int32_t burst_length;       /* beats per burst */
  double peak_bandwidth_gbps; /* peak transfer rate in GB/s (1e9 bytes per second) */
  int32_t row_bytes;          /* bytes of one open DRAM row (page) across the rank */
  double row_miss_latency_ns; /* precharge plus activate, paid once per row opened */
  double latency_ns;          /* request-to-first-data latency, hidden by pipelined bursts */

  /* Geometry, address mapping and timing of the modelled DRAM (runtime/dsr_dram.h). All
   * optional in JSON; the defaults come from `standard` (dsn_preset_dram.c). */
  char standard[DSN_DRAM_STANDARD_BYTES]; /* "DDR4-2400", "DDR3-1050" or "DDR3-1066" */
  int32_t channels;
  int32_t ranks;
  int32_t bank_groups;
  int32_t banks;              /* per bank group */
  int32_t rows;               /* per bank */
  int32_t columns;            /* per row, one bus width each: row_bytes / (bus_width_bits / 8) */
  char address_mapping[DSN_DRAM_MAPPING_BYTES]; /* such as "RoBaRaCoCh" */
  double tck_ns;              /* DRAM clock period */
  int32_t cl_cycles;
  int32_t trcd_cycles;
  int32_t trp_cycles;
  int32_t tras_cycles;
} dsn_dram;

/* The FPGA part, from the vendor's product table (optional in a description). */
typedef struct dsn_device {
  int32_t present;            /* 1 when the description has a "device" object */
  char part[DSN_PRESET_NAME_BYTES];
  int32_t luts;
  int32_t bram36_blocks;      /* 36 Kb block RAMs, 4608 bytes each */
  int32_t uram_blocks;        /* 288 Kb UltraRAMs, 36864 bytes each */
  int32_t dsp_slices;
} dsn_device;

#define DSN_BRAM36_BYTES 4608
#define DSN_URAM_BYTES 36864

typedef struct dsn_preset {
  char name[DSN_PRESET_NAME_BYTES];
  dsn_device device;
  double clock_mhz;
  dsn_dram dram;
  int64_t feature_buffer_bytes; /* on-chip buffer for feature map tiles and patches */
  int64_t weight_buffer_bytes;  /* on-chip buffer for weight tiles; defaults to
                                   feature_buffer_bytes when the description omits it */
  int32_t feature_banks;
  int32_t sampling_lanes;       /* bilinear samples computed per cycle */
  int32_t mac_rows;             /* mac_array.rows */
  int32_t mac_cols;             /* mac_array.cols */
  int32_t activation_bits;      /* 8 or 16: one feature map element */
  int32_t weight_bits;          /* 8 or 16 */
  int32_t accumulator_bits;     /* 16, 24, 32, 48 or 64: biases and LayerNorm parameters */
} dsn_preset;

/*
 * Parses and validates a preset from json_text (length bytes, no terminator needed).
 * source names the text in messages, such as "zcu102.json". On failure *preset is
 * unspecified and err lists every problem, one per line.
 */
ds_status dsn_preset_parse(const char *json_text, size_t length, const char *source,
                           dsn_preset *preset, ds_error *err);

/* Reads and parses the preset file at path (at most 1 MiB). DS_ERR_IO if it cannot be read. */
ds_status dsn_preset_load_file(const char *path, dsn_preset *preset, ds_error *err);

/*
 * Loads a built-in preset when name_or_path is one of their names, else the file at that
 * path. NULL or "" selects DSN_DEFAULT_PRESET.
 */
ds_status dsn_preset_resolve(const char *name_or_path, dsn_preset *preset, ds_error *err);

/* Built-in presets: count, the name of index (NULL when out of range), and the JSON text of
 * a name (NULL when there is no such built-in preset). The strings are static. */
int32_t dsn_preset_builtin_count(void);
const char *dsn_preset_builtin_name(int32_t index);
const char *dsn_preset_builtin_json(const char *name);

/* Bytes of one DRAM burst: bus_width_bits / 8 * burst_length. */
int64_t dsn_preset_burst_bytes(const dsn_preset *preset);

/* Bytes of on-chip RAM of the part (BRAM36 plus URAM); 0 without a device object. */
int64_t dsn_preset_onchip_bytes(const dsn_preset *preset);

/* Bytes of one feature map element: activation_bits / 8. */
int32_t dsn_preset_element_bytes(const dsn_preset *preset);

#endif
