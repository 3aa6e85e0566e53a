/* State and steps of `deformslice compile`, shared by its source files. */
#ifndef DST_COMPILE_H
#define DST_COMPILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "converter/dsc_import.h"
#include "dst_data.h"
#include "dst_eval.h"
#include "dst_precision.h"
#include "dst_source.h"
#include "nas/dsn_oracle.h"
#include "nas/dsn_preset.h"
#include "nas/dsn_search.h"
#include "quant/dsq_calibration.h"
#include "runtime/dsr_schedule.h"

#define DST_COMPILE_STEPS 7

/* Calibration method and its parameters. */
typedef struct dst_calibration_choice {
  dsq_calibration_method method;
  double percentile;      /* PERCENTILE only: kept share of values, in (50, 100] */
  int32_t histogram_bins; /* KL only: linear histogram bins; 0 means DSQ_KL_BINS_DEFAULT */
} dst_calibration_choice;

/* Option text as given on the command line (or the defaults). */
typedef struct dst_compile_args {
  dst_data_args data;
  const char *model, *preset, *out;
  const char *calibration_images, *search_images, *test_images;
  const char *population, *generations, *seed, *max_drop, *semantics, *threads;
  const char *feature_buffer_bytes, *calibration, *percentile, *histogram_bins;
  const char *precision, *int16_budget_bytes, *precision_file, *precision_images;
  const char *input_shape;
} dst_compile_args;

typedef struct dst_compile_config {
  const char *model_path;
  const char *data_dir;
  dst_data_options data;
  const char *out_dir;
  dsn_preset preset;
  int32_t calibration_images;
  int32_t search_images;
  int32_t test_images;
  int32_t population;
  int32_t generations;
  uint64_t seed;
  int32_t threads;
  double max_drop_points;
  uint32_t semantics_mask;
  dst_calibration_choice calibration;
  dst_precision_config precision;
  dsc_options import_options;         /* input_rank 0: the file's input shape */
} dst_compile_config;

typedef struct dst_compile_state {
  dst_compile_config config;
  dsr_model model;
  dsc_report import_report;
  dst_dataset calibration, validation, test;
  double float_top1, fixed_top1;      /* test set, unsliced */
  char calibration_method[32];
  dst_precision_record precision;     /* int8 or int16 per activation, as quantized */
  dsn_search_result front;
  int32_t chosen;                     /* front point baked into the artifact, -1: unsliced */
  dsr_schedule schedule;
  dsn_model_cost chosen_cost;
  int32_t evaluations;
  double start_s;
  double search_start_s;
  char journal_path[4096];
  char journal_tag[1024];
} dst_compile_state;

/* Parses --calibration (minmax, percentile, mse or kl), --percentile and --histogram-bins
 * (each NULL for its default) into choice. */
ds_status dst_parse_calibration(const char *method_text, const char *percentile_text,
                                const char *bins_text, dst_calibration_choice *choice,
                                ds_error *err);

/* Adds the method and its parameters (percentile, histogram kind and bins) to object. */
struct cJSON;
void dst_calibration_describe(const dst_calibration_choice *choice, struct cJSON *object);

/*
 * Calibrates model on calibration_images with threads workers (over the slice configurations
 * compile uses) into calibration, which the caller frees with dsq_calibration_free. The
 * ranges do not depend on the thread count.
 */
ds_status dst_calibrate_model(dsr_model *model, const dst_dataset *calibration_images,
                              const dst_calibration_choice *choice, int32_t threads,
                              dsq_calibration *calibration, ds_error *err);

/*
 * Calibrates model on calibration_images with threads workers and quantizes it in place.
 * method_name receives the calibration method's name.
 */
ds_status dst_quantize_model(dsr_model *model, const dst_dataset *calibration_images,
                             const dst_calibration_choice *choice, int32_t threads,
                             char *method_name, size_t method_name_bytes, ds_error *err);

/*
 * The same with a precision choice: record receives what was chosen (free it with
 * dst_precision_record_free, also after a failure). validation provides the images that
 * mixed precision measures; other modes accept NULL.
 */
ds_status dst_quantize_model_precision(dsr_model *model, const dst_dataset *calibration_images,
                                       const dst_calibration_choice *choice, int32_t threads,
                                       const dst_precision_config *precision,
                                       const dst_dataset *validation,
                                       dst_precision_record *record, char *method_name,
                                       size_t method_name_bytes, ds_error *err);

/* Calibrates on state->calibration and quantizes state->model in place. */
ds_status dst_compile_quantize(dst_compile_state *state, ds_error *err);

/* Builds the DMA schedule and the oracle figures of the baked slice configuration. */
ds_status dst_compile_build_schedule(dst_compile_state *state, ds_error *err);

/* The artifact manifest as JSON text (free it), or NULL when out of memory. */
char *dst_compile_manifest(const dst_compile_state *state);

/* Writes report.md and report.json into the output folder. */
ds_status dst_compile_write_reports(const dst_compile_state *state, ds_error *err);

/* Prints the closing summary: accuracies, chosen configuration, traffic, files, time. */
void dst_compile_print_summary(const dst_compile_state *state, FILE *out);

void dst_compile_state_free(dst_compile_state *state);

#endif
