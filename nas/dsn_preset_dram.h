/*
 * The modelled DRAM part of a preset: the optional dram fields standard, channels, ranks,
 * bank_groups, banks, rows, columns, address_mapping and the timing object, their defaults per
 * DRAM standard, and the runtime DRAM configuration they give. Used by dsn_preset.c.
 */
#ifndef DSN_PRESET_DRAM_H
#define DSN_PRESET_DRAM_H

#include <cjson/cJSON.h>

#include "nas/dsn_preset.h"

/* Receives one problem line (without the source prefix). */
typedef void (*dsn_preset_problem_fn)(void *context, const char *line);

/* Returns 1 when key is a dram field read by dsn_preset_dram_read. */
int dsn_preset_dram_key_known(const char *key);

/*
 * Reads the optional DRAM model fields of the dram object (NULL: all defaults) into preset,
 * whose other dram fields are already read, and checks them against those. Reports each
 * problem through problem.
 */
void dsn_preset_dram_read(const cJSON *dram, dsn_preset *preset, dsn_preset_problem_fn problem,
                          void *context);

/* Fills every DRAM model field of preset that is zero or empty with its default. */
void dsn_preset_dram_defaults(dsn_preset *preset);

#endif
