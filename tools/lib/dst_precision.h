/*
 * Precision options of `deformslice compile` and `audit`: which activations are int16.
 *
 *   --precision class   int16 by tensor class (DSQ_INT16_DEFAULT), the default
 *   --precision int8    every activation int8 (flags 0)
 *   --precision mixed   automatic choice under --int16-budget-bytes (quant/dsq_mixed.h),
 *                       measured on validation images
 *   --precision-file F  JSON object {"tensor or layer:stage name": "int8" | "int16", ...}
 *                       applied on top of any mode; in mixed mode these are fixed first.
 */
#ifndef DST_PRECISION_H
#define DST_PRECISION_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "dst_data.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_mixed.h"

typedef enum dst_precision_mode {
  DST_PRECISION_CLASS = 0,
  DST_PRECISION_INT8 = 1,
  DST_PRECISION_MIXED = 2,
} dst_precision_mode;

/* Images of the validation split that mixed mode measures by default. */
#define DST_PRECISION_SEARCH_IMAGES 64

typedef struct dst_precision_config {
  dst_precision_mode mode;
  int64_t int16_budget_bytes;  /* mixed mode only */
  const char *override_path;   /* JSON override file, or NULL */
  int32_t search_images;       /* mixed mode: validation images measured per item */
} dst_precision_config;

/* What was chosen, for the manifest, the reports and the terminal. */
typedef struct dst_precision_record {
  dst_precision_mode mode;
  int64_t int16_budget_bytes;  /* -1 when the mode has no budget */
  int64_t int16_bytes;         /* extra bytes of the int16 items (dsq_precision_int16_bytes) */
  int32_t int16_items;
  int32_t override_count;      /* entries of the override file */
  int32_t search_images;       /* images measured by mixed mode, 0 otherwise */
  char override_path[1024];    /* empty when none */
  dsq_precision_plan plan;     /* owned; precisions as applied */
} dst_precision_record;

/* "class", "int8" or "mixed". */
const char *dst_precision_mode_name(dst_precision_mode mode);

/*
 * Parses --precision, --int16-budget-bytes and --precision-file (each may be NULL for its
 * default). The budget needs --precision mixed and mixed needs a budget; either one alone is
 * DS_ERR_INVALID_ARGUMENT.
 */
ds_status dst_parse_precision(const char *mode_text, const char *budget_text,
                              const char *override_path, dst_precision_config *config,
                              ds_error *err);

/* Parses --precision-images (validation images mixed mode measures, 1 to 5000) into config. */
ds_status dst_parse_precision_images(const char *text, dst_precision_config *config,
                                     ds_error *err);

/*
 * Reads the JSON override file at path into the plan's item precisions. An unknown name fails
 * with DS_ERR_INVALID_ARGUMENT; the message names it and the first valid names, and every
 * valid name is written to log (when not NULL), one per line. *count receives the entries.
 */
ds_status dst_precision_load_overrides(const char *path, const dsr_model *model,
                                       dsq_precision_plan *plan, FILE *log, int32_t *count,
                                       ds_error *err);

/*
 * Quantizes model with calib under config, filling record (free with
 * dst_precision_record_free). search is the validation data that mixed mode measures (its
 * first config->search_images images); other modes ignore it and it may be NULL.
 */
ds_status dst_precision_quantize(dsr_model *model, const dsq_calibration *calib,
                                 const dst_precision_config *config, const dst_dataset *search,
                                 int32_t threads, dst_precision_record *record, ds_error *err);

/* The record as a JSON object for manifests and reports: mode, budget, bytes, the int16
 * items. NULL when out of memory. */
cJSON *dst_precision_to_json(const dst_precision_record *record, const dsr_model *model);

/* One line: mode, int16 items and bytes, budget. */
void dst_precision_print(const dst_precision_record *record, FILE *out);

void dst_precision_record_free(dst_precision_record *record);

#endif
