/*
 * Output of a search's Pareto front: a printed table, JSON (cJSON) and CSV. Files are written
 * atomically (a temporary file, fsync, then rename), so a reader never sees half a file.
 *
 * Figures per point: the configuration of every layer ("2x2+1", "c" suffix for crop
 * semantics), validation top-1, test top-1 when measured, the drop against the unsliced
 * model's validation top-1 (positive when slicing loses accuracy), and the sliced DRAM bus
 * bytes, also as a fraction of the gather dataflow's and as a multiple of the lower bound's.
 */
#ifndef DSN_PARETO_H
#define DSN_PARETO_H

#include <stdio.h>

#include "common/ds_status.h"
#include "nas/dsn_search.h"

/* Prints the front as a table to out. */
void dsn_front_print(const dsn_search_result *result, FILE *out);

/* Writes the front as JSON to path. Errors: DS_ERR_IO, DS_ERR_OUT_OF_MEMORY. */
ds_status dsn_front_write_json(const dsn_search_result *result, const char *path,
                               ds_error *err);

/* Writes the front as CSV (a header line, then one line per point) to path. */
ds_status dsn_front_write_csv(const dsn_search_result *result, const char *path,
                              ds_error *err);

/* Writes space_size as text: the count, or "more than 9.2e18" when it reached the cap. */
void dsn_space_text(int64_t space_size, char *text, size_t text_bytes);

#endif
