/* State and steps of `deformslice compile`, shared by its source files. */
#ifndef DST_COMPILE_H
#define DST_COMPILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "converter/dsc_import.h"
#include "dst_data.h"
#include "dst_eval.h"
#include "nas/dsn_oracle.h"
#include "nas/dsn_preset.h"
#include "nas/dsn_search.h"
#include "quant/dsq_calibration.h"
#include "runtime/dsr_schedule.h"

#define DST_COMPILE_STEPS 7

/* Calibration method and its parameter. */
typedef struct dst_calibration_choice {
  dsq_calibration_method method;
  double percentile;      /* PERCENTILE only: kept share of values, in (50, 100] */
} dst_calibration_choice;

/* Option text as given on the command line (or the defaults). */
typedef struct dst_compile_args {
  const char *model, *data, *preset, *out;
  const char *calibration_images, *search_images, *test_images;
  const char *population, *generations, *seed, *max_drop, *semantics, *threads;
  const char *feature_buffer_bytes, *calibration, *percentile, *input_shape;
} dst_compile_args;

typedef struct dst_compile_config {
  const char *model_path;
  const char *data_dir;
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
  dsc_options import_options;         /* input_rank 0: the file's input shape */
} dst_compile_config;

typedef struct dst_compile_state {
  dst_compile_config config;
  dsr_model model;
  dsc_report import_report;
  dst_dataset calibration, validation, test;
  double float_top1, fixed_top1;      /* test set, unsliced */
  char calibration_method[32];
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

/* Parses --calibration (minmax, percentile or mse) and --percentile into choice. */
ds_status dst_parse_calibration(const char *method_text, const char *percentile_text,
                                dst_calibration_choice *choice, ds_error *err);

/*
 * Calibrates model on calibration_images with threads workers and quantizes it in place.
 * method_name receives the calibration method's name.
 */
ds_status dst_quantize_model(dsr_model *model, const dst_dataset *calibration_images,
                             const dst_calibration_choice *choice, int32_t threads,
                             char *method_name, size_t method_name_bytes, ds_error *err);

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
