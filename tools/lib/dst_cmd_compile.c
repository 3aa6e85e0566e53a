/*
 * deformslice compile: the main job. ONNX model, calibration data and accelerator preset in;
 * artifact, Pareto front of slice configurations and accuracy report out.
 *
 * Steps: import the ONNX graph, then load the training (calibration), validation (search) and
 * test (report) images. Measure float top-1, calibrate and quantize, and measure unsliced
 * fixed-point top-1. Search the slice configurations with NSGA-II, scoring validation top-1
 * with the fixed-point runtime and DRAM traffic with the cost oracle. Bake the chosen
 * configuration (the lowest traffic within the allowed drop) into the model, build its DMA
 * schedule, and write the artifact, the front and the report.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "dst_args.h"
#include "dst_commands.h"
#include "dst_compile.h"
#include "dst_progress.h"
#include "formats/dsf_artifact.h"
#include "nas/dsn_pareto.h"
#include "nas/dsn_schedule.h"
#include "runtime/dsr_slice.h"

static void print_step(int32_t step, const char *what) {
  fprintf(stderr, "[%d/%d] %s\n", step, DST_COMPILE_STEPS, what);
  fflush(stderr);
}

static ds_status parse_compile_options(const dst_compile_args *args, dst_compile_config *config,
                                       ds_error *err) {
  int64_t value;
  double number;

  memset(config, 0, sizeof *config);
  config->model_path = args->model;
  DS_TRY(dst_data_options_parse(&args->data, &config->data, err));
  config->data_dir = config->data.folder;
  config->out_dir = args->out;
  config->semantics_mask = DSN_SEMANTICS_PHYSICAL;
  if (args->input_shape != NULL)
    DS_TRY(dst_args_shape("input-shape", args->input_shape, config->import_options.input_shape,
                          &config->import_options.input_rank, err));

  DS_TRY(dst_args_int("calibration-images", args->calibration_images, 1, DST_VALIDATION_START,
                      &value, err));
  config->calibration_images = (int32_t)value;
  DS_TRY(dst_args_int("search-images", args->search_images, 1, 60000 - DST_VALIDATION_START,
                      &value, err));
  config->search_images = (int32_t)value;
  DS_TRY(dst_args_int("test-images", args->test_images, 1, 10000, &value, err));
  config->test_images = (int32_t)value;
  DS_TRY(dst_args_int("population", args->population, 4, 4096, &value, err));
  config->population = (int32_t)value;
  DS_TRY(dst_args_int("generations", args->generations, 0, 10000, &value, err));
  config->generations = (int32_t)value;
  DS_TRY(dst_args_int("seed", args->seed, 0, INT64_MAX, &value, err));
  config->seed = (uint64_t)value;
  value = dst_default_threads();
  if (args->threads != NULL)
    DS_TRY(dst_args_int("threads", args->threads, 1, 64, &value, err));
  config->threads = (int32_t)value;
  DS_TRY(dst_args_double("max-drop", args->max_drop, 0.0, 100.0, &number, err));
  config->max_drop_points = number;

  if (strcmp(args->semantics, "physical") == 0) {
    config->semantics_mask = DSN_SEMANTICS_PHYSICAL;
  } else if (strcmp(args->semantics, "crop") == 0) {
    config->semantics_mask = DSN_SEMANTICS_CROP;
  } else if (strcmp(args->semantics, "both") == 0) {
    config->semantics_mask = DSN_SEMANTICS_PHYSICAL | DSN_SEMANTICS_CROP;
  } else {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--semantics '%s' is not a slicing semantics; use physical, crop or both",
                   args->semantics);
  }

  DS_TRY(dst_parse_calibration(args->calibration, args->percentile, args->histogram_bins,
                               &config->calibration, err));
  DS_TRY(dst_parse_precision(args->precision, args->int16_budget_bytes, args->precision_file,
                             &config->precision, err));
  if (args->precision_images != NULL)
    DS_TRY(dst_parse_precision_images(args->precision_images, &config->precision, err));
  DS_TRY(dsn_preset_resolve(args->preset, &config->preset, err));
  if (args->feature_buffer_bytes != NULL) {
    DS_TRY(dst_args_int("feature-buffer-bytes", args->feature_buffer_bytes, 1, INT64_MAX / 4,
                        &value, err));
    config->preset.feature_buffer_bytes = value;
  }
  return DS_OK;
}

/* Accuracy callback of the search: fixed-point top-1 on the first search_images validation
 * images with the given slices. */
static double evaluate_slices(void *user, const dsr_slice *slices, int32_t layer_count,
                              const dst_dataset *data, int32_t count, ds_error *err) {
  dst_compile_state *state = user;
  dst_eval_options eval = {.mode = DSR_MODE_FIXED, .threads = state->config.threads,
                           .slices = slices, .slice_count = layer_count};
  dst_eval_result result;
  if (dst_evaluate(&state->model, data, 0, count, &eval, &result, NULL, err) != DS_OK)
    return NAN;
  return result.top1_percent;
}

static double evaluate_validation(void *user, const dsr_slice *slices, int32_t layer_count,
                                  ds_error *err) {
  dst_compile_state *state = user;
  double top1 = evaluate_slices(user, slices, layer_count, &state->validation,
                                state->config.search_images, err);
  state->evaluations++;

  /* A terminal gets one line redrawn; a log gets a line every 10 evaluations. */
  if (isatty(STDERR_FILENO))
    fprintf(stderr, "\r  search: %d evaluations (%.0f s)", state->evaluations,
            dst_now_s() - state->search_start_s);
  else if (state->evaluations % 10 == 0)
    fprintf(stderr, "  search: %d evaluations (%.0f s)\n", state->evaluations,
            dst_now_s() - state->search_start_s);
  fflush(stderr);
  return top1;
}

static double evaluate_test(void *user, const dsr_slice *slices, int32_t layer_count,
                            ds_error *err) {
  dst_compile_state *state = user;
  return evaluate_slices(user, slices, layer_count, &state->test, state->test.count, err);
}

static ds_status measure_top1(dst_compile_state *state, dsr_mode mode, const char *label,
                              double *top1, ds_error *err) {
  dst_progress progress;
  dst_progress_start(&progress, label);
  dst_eval_options eval = {.mode = mode, .threads = state->config.threads,
                           .progress = dst_progress_update, .progress_user = &progress};
  dst_eval_result result;
  DS_TRY(dst_evaluate(&state->model, &state->test, 0, state->test.count, &eval, &result, NULL,
                      err));
  *top1 = result.top1_percent;
  return DS_OK;
}

/*
 * Index of the front point with the fewest DRAM bytes whose validation drop is within
 * max_drop_points, or -1 for the unsliced model. The unsliced model is a candidate too when
 * it fits the feature buffer, and it wins ties: a configuration that only scores higher on
 * the validation images, at the same traffic, is not worth slicing for.
 */
static int32_t choose_point(const dsn_search_result *front, double max_drop_points) {
  int32_t best = -1;
  int64_t best_bytes = front->reference_fits ? front->unsliced_bytes : INT64_MAX;
  for (int32_t i = 0; i < front->point_count; i++) {
    const dsn_front_point *p = &front->points[i];
    if (front->reference_accuracy - p->accuracy > max_drop_points + 1e-9)
      continue;
    if (p->dram_bytes < best_bytes) {
      best = i;
      best_bytes = p->dram_bytes;
    }
  }
  return best;
}

static ds_status import_model(dst_compile_state *state, ds_error *err) {
  print_step(1, "importing the ONNX model");
  DS_TRY(dsc_import_file(state->config.model_path, &state->config.import_options, &state->model,
                         &state->import_report, err));

  const dsc_report *r = &state->import_report;
  fprintf(stderr, "  %s: opset %d, %d ONNX nodes -> %d runtime nodes, %d deformable blocks\n",
          state->config.model_path, r->opset, r->onnx_node_count, r->node_count_after,
          r->block_count);
  for (int32_t i = 0; i < r->block_count; i++) {
    const dsc_block_info *b = &r->blocks[i];
    fprintf(stderr,
            "    %-20s map %2dx%-2d  C %3d  groups %d  heads %d  stride %d  kernel %d  "
            "samples %dx%d\n",
            b->name, b->height, b->width, b->channels, b->groups, b->heads, b->offset_stride,
            b->offset_kernel, b->samples_h, b->samples_w);
  }
  if (r->block_count == 0) {
    return ds_fail(err, DS_ERR_GRAPH,
                   "%s: no deformable attention block found; compile needs a DAT or DAT++ model "
                   "(blocks are found by their proj_q/proj_k/proj_v/proj_out and conv_offset "
                   "parameters)",
                   state->config.model_path);
  }
  return DS_OK;
}

static ds_status load_data(dst_compile_state *state, ds_error *err) {
  print_step(2, "loading calibration, validation and test images");

  int32_t channels = 0, side = 0;
  DS_TRY(dst_data_input_shape(&state->model, &channels, &side, err));
  const dst_compile_config *c = &state->config;

  DS_TRY(dst_data_load(&c->data, DST_SPLIT_TRAIN, channels, side, c->calibration_images,
                       &state->calibration, err));
  if (state->calibration.count < c->calibration_images)
    fprintf(stderr, "deformslice: warning: --calibration-images is %d, but the training split "
            "has %d images: calibrating on %d\n",
            c->calibration_images, (int)state->calibration.count,
            (int)state->calibration.count);
  DS_TRY(dst_data_load(&c->data, DST_SPLIT_VALIDATION, channels, side, c->search_images,
                       &state->validation, err));
  DS_TRY(dst_data_load(&c->data, DST_SPLIT_TEST, channels, side, c->test_images, &state->test,
                       err));
  /* The search and the report evaluate these splits, so bad labels fail before calibration. */
  const int64_t classes = dsr_tensor_elements(&state->model.tensors[state->model.output]);
  DS_TRY(dst_dataset_check_labels(&state->validation, classes, err));
  DS_TRY(dst_dataset_check_labels(&state->test, classes, err));
  if (state->validation.count < c->search_images)
    state->config.search_images = state->validation.count;

  char source[4200];
  dst_data_describe(&c->data, source, sizeof source);
  fprintf(stderr, "  %d calibration, %d validation, %d test images at %dx%d from %s\n",
          state->calibration.count, state->validation.count, state->test.count, side, side,
          source);
  return DS_OK;
}

/*
 * Journal tag: everything that changes the accuracy of a configuration (the model bytes, its
 * calibration, the validation images) or the search itself, so a journal written under other
 * settings is rejected instead of silently reused.
 */
static ds_status make_journal_tag(dst_compile_state *state, ds_error *err) {
  uint8_t *bytes = NULL;
  size_t size = 0;
  DS_TRY(ds_file_read_all(state->config.model_path, (size_t)1 << 32, &bytes, &size, err));
  uLong model_crc = crc32(0L, Z_NULL, 0);
  for (size_t done = 0; done < size;) {
    uInt chunk = size - done > (1u << 30) ? (1u << 30) : (uInt)(size - done);
    model_crc = crc32(model_crc, bytes + done, chunk);
    done += chunk;
  }
  free(bytes);

  const dst_compile_config *c = &state->config;
  snprintf(state->journal_tag, sizeof state->journal_tag,
           "model crc32 %08lx (%zu bytes)|calibration %s %g %d over %d images|data %s %s %s|"
           "%d validation images|preset %s, buffer %lld bytes|semantics %u|seed %llu",
           (unsigned long)model_crc, size, dsq_calibration_method_name(c->calibration.method),
           c->calibration.percentile, c->calibration.histogram_bins, c->calibration_images,
           dst_data_format_name(c->data.format), c->data_dir,
           c->data.preprocess_path != NULL ? c->data.preprocess_path : "-", c->search_images,
           c->preset.name, (long long)c->preset.feature_buffer_bytes, c->semantics_mask,
           (unsigned long long)c->seed);
  /* Only the precision file's path enters the tag. NOTE: editing the file in place and
   * resuming reuses the journal's accuracies. */
  size_t used = strlen(state->journal_tag);
  snprintf(state->journal_tag + used, sizeof state->journal_tag - used,
           "|precision %s, budget %lld, %d images, file %s",
           dst_precision_mode_name(c->precision.mode), (long long)c->precision.int16_budget_bytes,
           c->precision.search_images,
           c->precision.override_path != NULL ? c->precision.override_path : "none");
  snprintf(state->journal_path, sizeof state->journal_path, "%s/search.journal", c->out_dir);
  return DS_OK;
}

/*
 * Rejects, before the long steps, a journal in the output folder that was written under
 * other settings. Only the first line is read: the search checks every line again.
 */
static ds_status check_journal(const dst_compile_state *state, ds_error *err) {
  FILE *f = fopen(state->journal_path, "r");
  if (f == NULL)
    return DS_OK;
  char line[8192];
  char *got = fgets(line, sizeof line, f);
  fclose(f);
  if (got == NULL)
    return DS_OK;

  cJSON *record = cJSON_Parse(line);
  const cJSON *tag = cJSON_GetObjectItemCaseSensitive(record, "tag");
  int same = cJSON_IsString(tag) && strcmp(tag->valuestring, state->journal_tag) == 0;
  cJSON_Delete(record);
  if (same)
    return DS_OK;
  return ds_fail(err, DS_ERR_JOURNAL,
                 "%s was written for another model, calibration, data set or search setting, "
                 "so it cannot resume this search; delete it or pass another --out",
                 state->journal_path);
}

static ds_status search_slices(dst_compile_state *state, ds_error *err) {
  print_step(6, "searching slice configurations (NSGA-II)");

  const char *journal_path = state->journal_path;
  const char *tag = state->journal_tag;

  dsn_search_options options;
  dsn_search_options_default(&options);
  options.seed = state->config.seed;
  options.population = state->config.population;
  options.generations = state->config.generations;
  options.threads = 1; /* each evaluation already uses every core */
  options.max_accuracy_drop = -1.0;
  options.semantics_mask = state->config.semantics_mask;
  options.journal_path = journal_path;
  options.journal_tag = tag;
  options.evaluate = evaluate_validation;
  options.evaluate_user = state;
  options.evaluate_test = evaluate_test;
  options.evaluate_test_user = state;

  double start_s = dst_now_s();
  state->search_start_s = start_s;
  ds_status status = dsn_search_run(&state->model, &state->config.preset, &options,
                                    &state->front, err);
  if (isatty(STDERR_FILENO))
    fprintf(stderr, "\n");
  if (status != DS_OK)
    return status;

  char space[48];
  dsn_space_text(state->front.space_size, space, sizeof space);
  fprintf(stderr, "  %d new evaluations, %d from the journal, %s configurations in the space, "
                  "%.1f s\n",
          state->front.evaluations, state->front.journal_hits,
          space, dst_now_s() - start_s);
  return DS_OK;
}

static ds_status bake_and_write(dst_compile_state *state, ds_error *err) {
  print_step(7, "writing the artifact, the Pareto front and the report");

  const int32_t chosen = choose_point(&state->front, state->config.max_drop_points);
  state->chosen = chosen;
  const int32_t layers = state->front.layer_count;
  for (int32_t i = 0; i < layers; i++) {
    int32_t node = ds_model_deform_node(&state->model, i);
    state->model.nodes[node].deform->slice =
        chosen >= 0 ? state->front.points[chosen].slices[i] : dsr_slice_none();
  }

  DS_TRY(dst_compile_build_schedule(state, err));

  char path[4096];
  char *manifest = dst_compile_manifest(state);
  if (manifest == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build the artifact manifest");
  snprintf(path, sizeof path, "%s/model.dslice", state->config.out_dir);
  dsf_write_options write_options = dsf_write_options_default();
  ds_status status = dsf_write_file(path, &state->model, &state->schedule, manifest,
                                    &write_options, err);
  free(manifest);
  DS_TRY(status);

  snprintf(path, sizeof path, "%s/pareto.json", state->config.out_dir);
  DS_TRY(dsn_front_write_json(&state->front, path, err));
  snprintf(path, sizeof path, "%s/pareto.csv", state->config.out_dir);
  DS_TRY(dsn_front_write_csv(&state->front, path, err));
  DS_TRY(dst_compile_write_reports(state, err));
  return DS_OK;
}

static ds_status compile_main(dst_compile_state *state, ds_error *err) {
  DS_TRY(import_model(state, err));
  DS_TRY(load_data(state, err));
  DS_TRY(make_journal_tag(state, err));
  DS_TRY(check_journal(state, err));
  DS_TRY(ds_file_make_dir(state->config.out_dir, err));

  print_step(3, "measuring float top-1 on the test images");
  DS_TRY(measure_top1(state, DSR_MODE_FLOAT, "float", &state->float_top1, err));

  print_step(4, "calibrating and quantizing");
  DS_TRY(dst_compile_quantize(state, err));

  print_step(5, "measuring unsliced fixed-point top-1 on the test images");
  DS_TRY(measure_top1(state, DSR_MODE_FIXED, "fixed point", &state->fixed_top1, err));
  fprintf(stderr, "  float %.2f%%, fixed point %.2f%% (%+.2f points)\n", state->float_top1,
          state->fixed_top1, state->fixed_top1 - state->float_top1);

  DS_TRY(search_slices(state, err));
  DS_TRY(bake_and_write(state, err));
  return DS_OK;
}

int dst_cmd_compile(int argc, char **argv) {
  dst_compile_args args = {
      .data = DST_DATA_ARGS_DEFAULT, .model = DST_DEFAULT_MODEL, .preset = DST_DEFAULT_PRESET,
      .out = DST_DEFAULT_OUT, .calibration_images = "500", .search_images = "1000",
      .test_images = "10000", .population = "12", .generations = "5", .seed = "1",
      .max_drop = "0.5", .semantics = "physical", .calibration = "minmax"};
  const dst_option options[] = {
      {"model", "FILE", "ONNX model (default: the bundled models/dat_pp_nano.onnx)", &args.model},
      DST_DATA_OPTION_ROWS(args.data),
      {"preset", "NAME|FILE", "accelerator: zcu102 (default), kv260, pynq-z2 or a JSON file",
       &args.preset},
      {"out", "DIR", "output folder, created if missing (default out)", &args.out},
      {"calibration-images", "N", "training images used for calibration (default 500)",
       &args.calibration_images},
      {"calibration", "METHOD", "range choice: minmax (default), percentile, mse or kl",
       &args.calibration},
      {"percentile", "P", "kept share of values for --calibration percentile (default 99.99)",
       &args.percentile},
      {"histogram-bins", "N", "linear histogram bins for --calibration kl (default 2048)",
       &args.histogram_bins},
      {"precision", "MODE", "activation types: class (default: int16 by tensor class), int8, "
                            "or mixed (chosen under --int16-budget-bytes)",
       &args.precision},
      {"int16-budget-bytes", "N", "on-chip bytes int16 tensors may add (needs --precision mixed)",
       &args.int16_budget_bytes},
      {"precision-file", "FILE", "JSON object of tensor name -> \"int8\" or \"int16\", applied "
                                 "on top of the mode",
       &args.precision_file},
      {"precision-images", "N", "validation images mixed precision measures each tensor on "
                                "(default 64)",
       &args.precision_images},
      {"search-images", "N", "validation images scored per configuration (default 1000)",
       &args.search_images},
      {"test-images", "N", "test images for the reported accuracy (default 10000)",
       &args.test_images},
      {"population", "N", "NSGA-II population (default 12)", &args.population},
      {"generations", "N", "NSGA-II generations after the first (default 5)",
       &args.generations},
      {"seed", "N", "search seed (default 1)", &args.seed},
      {"max-drop", "POINTS", "largest validation top-1 drop of the chosen configuration "
                             "against unsliced fixed point (default 0.5)",
       &args.max_drop},
      {"semantics", "NAME", "slicing semantics searched: physical (default), crop or both",
       &args.semantics},
      {"feature-buffer-bytes", "N", "override the preset's feature buffer size in bytes "
                                    "(what-if studies of smaller on-chip buffers)",
       &args.feature_buffer_bytes},
      {"threads", "N", "worker threads (default: one per core)", &args.threads},
      {"input-shape", "NxCxHxW", "input shape for a model exported with dynamic axes "
                                 "(default: the shape in the file)", &args.input_shape},
  };
  const int option_count = (int)(sizeof options / sizeof options[0]);
  const char *positional[1];
  int positional_count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);

  if (dst_args_parse(argc, argv, 0, options, option_count, positional, 0, &positional_count,
                     &help, &err) != DS_OK)
    return dst_report_error(&err);
  if (help) {
    dst_args_print_help(stdout, "usage: deformslice compile [options]", options, option_count);
    return 0;
  }

  dst_compile_state *state = calloc(1, sizeof *state);
  if (state == NULL) {
    fprintf(stderr, "deformslice: error: out of memory\n");
    return 1;
  }
  state->chosen = -1;
  state->start_s = dst_now_s();

  ds_status status = parse_compile_options(&args, &state->config, &err);
  if (status == DS_OK)
    status = compile_main(state, &err);
  if (status == DS_OK) {
    dsn_front_print(&state->front, stdout);
    dst_compile_print_summary(state, stdout);
  }

  dst_compile_state_free(state);
  return status == DS_OK ? 0 : dst_report_error(&err);
}
