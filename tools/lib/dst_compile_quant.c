/* Calibration and quantization step of `deformslice compile`. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dst_args.h"
#include "dst_compile.h"
#include "dst_progress.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_quantize.h"

/*
 * Slice configurations every calibration runs, applied to each deformable layer whose map
 * fits them. Small patches have fewer samples per query, so some ranges (the attention
 * context) grow under slicing; calibrating unsliced only would saturate them in the search.
 */
static const dsr_slice calibration_slices[] = {
    {1, 1, 0, DSR_SLICE_PHYSICAL}, {2, 2, 0, DSR_SLICE_PHYSICAL}, {2, 2, 1, DSR_SLICE_PHYSICAL},
    {4, 4, 0, DSR_SLICE_PHYSICAL}, {4, 4, 1, DSR_SLICE_PHYSICAL}, {2, 2, 1, DSR_SLICE_CROP},
    {4, 4, 1, DSR_SLICE_CROP},
};

typedef struct calibration_worker {
  const dsr_model *model;
  const float *images;
  int32_t count;
  dsq_calibration calibration;
  ds_status status;
  ds_error err;
  pthread_t thread;
} calibration_worker;

static void *calibration_main(void *arg) {
  calibration_worker *worker = arg;
  const int32_t config_count = (int32_t)(sizeof calibration_slices / sizeof calibration_slices[0]);
  worker->status = dsq_calibration_run_slices(&worker->calibration, worker->model, worker->images,
                                              worker->count, calibration_slices, config_count,
                                              &worker->err);
  return NULL;
}

/* Runs the calibration images in contiguous shares on several threads and merges the ranges.
 * Min/max merging is order-independent, so the result does not depend on the thread count. */
static ds_status calibrate_parallel(dsr_model *model, const dst_dataset *data,
                                    const dst_calibration_choice *choice, int32_t threads,
                                    dsq_calibration *merged, ds_error *err) {
  const int64_t pixels = dst_dataset_image_elements(data);
  if (threads > data->count)
    threads = data->count;

  dsq_calibration_options options = dsq_calibration_options_default(choice->method);
  options.percentile = choice->percentile;
  if (choice->histogram_bins > 0)
    options.kl_bins = choice->histogram_bins;

  calibration_worker *workers = calloc((size_t)threads, sizeof *workers);
  if (workers == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate calibration workers");

  ds_status status = DS_OK;
  int32_t initialized = 0, started = 0;
  for (; initialized < threads && status == DS_OK; initialized++) {
    calibration_worker *w = &workers[initialized];
    const int32_t first = (int32_t)((int64_t)data->count * initialized / threads);
    const int32_t end = (int32_t)((int64_t)data->count * (initialized + 1) / threads);
    w->model = model;
    w->images = data->images + first * pixels;
    w->count = end - first;
    status = dsq_calibration_init_options(&w->calibration, model, &options, err);
  }
  for (; status == DS_OK && started < initialized; started++) {
    if (pthread_create(&workers[started].thread, NULL, calibration_main, &workers[started]) != 0)
      status = ds_fail(err, DS_ERR_INTERNAL, "cannot start calibration thread %d", started);
  }
  for (int32_t i = 0; i < started; i++)
    pthread_join(workers[i].thread, NULL);

  if (status == DS_OK)
    status = dsq_calibration_init_options(merged, model, &options, err);
  for (int32_t i = 0; i < initialized && status == DS_OK; i++) {
    if (workers[i].status != DS_OK) {
      *err = workers[i].err;
      status = workers[i].status;
    } else {
      status = dsq_calibration_merge(merged, &workers[i].calibration, err);
    }
  }

  for (int32_t i = 0; i < initialized; i++)
    dsq_calibration_free(&workers[i].calibration);
  free(workers);
  return status;
}

ds_status dst_calibrate_model(dsr_model *model, const dst_dataset *calibration_images,
                              const dst_calibration_choice *choice, int32_t threads,
                              dsq_calibration *calibration, ds_error *err) {
  return calibrate_parallel(model, calibration_images, choice, threads, calibration, err);
}

ds_status dst_parse_calibration(const char *method_text, const char *percentile_text,
                                const char *bins_text, dst_calibration_choice *choice,
                                ds_error *err) {
  choice->percentile = DSQ_PERCENTILE_DEFAULT;
  choice->histogram_bins = DSQ_KL_BINS_DEFAULT;
  if (method_text == NULL)
    method_text = "minmax";
  if (!dsq_calibration_method_parse(method_text, &choice->method))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--calibration '%s' is not a method; use minmax, percentile, mse or kl",
                   method_text);
  /* A setting for another method would be ignored, so it is rejected. */
  if (percentile_text != NULL && choice->method != DSQ_CALIBRATION_PERCENTILE)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--percentile '%s' applies to --calibration percentile only, not '%s'; add "
                   "--calibration percentile or drop --percentile",
                   percentile_text, method_text);
  if (bins_text != NULL && choice->method != DSQ_CALIBRATION_KL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--histogram-bins '%s' applies to --calibration kl only, not '%s'; add "
                   "--calibration kl or drop --histogram-bins",
                   bins_text, method_text);
  if (bins_text != NULL) {
    int64_t bins;
    DS_TRY(dst_args_int("histogram-bins", bins_text, DSQ_KL_BINS_MIN, DSQ_KL_BINS_MAX, &bins,
                        err));
    if (bins % 2 != 0)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--histogram-bins '%s' is odd; use an even count such as %d", bins_text,
                     DSQ_KL_BINS_DEFAULT);
    choice->histogram_bins = (int32_t)bins;
  }

  /* The method keeps more than half of the values, so the share is in (50, 100]. */
  if (percentile_text != NULL) {
    DS_TRY(dst_args_double("percentile", percentile_text, 50.0, 100.0, &choice->percentile,
                           err));
    if (choice->percentile <= 50.0)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--percentile '%s' is not a number in (50, 100]", percentile_text);
  }
  return DS_OK;
}

void dst_calibration_describe(const dst_calibration_choice *choice, cJSON *object) {
  cJSON_AddStringToObject(object, "method", dsq_calibration_method_name(choice->method));
  switch (choice->method) {
  case DSQ_CALIBRATION_PERCENTILE:
    cJSON_AddNumberToObject(object, "percentile", choice->percentile);
    cJSON_AddStringToObject(object, "histogram", "log2");
    cJSON_AddNumberToObject(object, "histogram_bins", DSQ_HISTOGRAM_BINS);
    cJSON_AddNumberToObject(object, "histogram_bins_per_octave", DSQ_HISTOGRAM_STEPS);
    break;
  case DSQ_CALIBRATION_MSE:
    cJSON_AddStringToObject(object, "histogram", "log2");
    cJSON_AddNumberToObject(object, "histogram_bins", DSQ_HISTOGRAM_BINS);
    cJSON_AddNumberToObject(object, "histogram_bins_per_octave", DSQ_HISTOGRAM_STEPS);
    break;
  case DSQ_CALIBRATION_KL:
    cJSON_AddStringToObject(object, "histogram", "linear");
    cJSON_AddNumberToObject(object, "histogram_bins",
                            choice->histogram_bins > 0 ? choice->histogram_bins
                                                       : DSQ_KL_BINS_DEFAULT);
    cJSON_AddNumberToObject(object, "min_threshold_bins", DSQ_KL_MIN_THRESHOLD_BINS);
    break;
  default:
    break;
  }
}

ds_status dst_quantize_model_precision(dsr_model *model, const dst_dataset *calibration_images,
                                       const dst_calibration_choice *choice, int32_t threads,
                                       const dst_precision_config *precision,
                                       const dst_dataset *validation,
                                       dst_precision_record *record, char *method,
                                       size_t method_bytes, ds_error *err) {
  dsq_calibration calibration;
  memset(&calibration, 0, sizeof calibration);
  double start_s = dst_now_s();

  ds_status status =
      calibrate_parallel(model, calibration_images, choice, threads, &calibration, err);
  if (status == DS_OK)
    status = dst_precision_quantize(model, &calibration, precision, validation, threads, record,
                                    err);
  if (status == DS_OK) {
    if (choice->method == DSQ_CALIBRATION_PERCENTILE)
      snprintf(method, method_bytes, "percentile %g", choice->percentile);
    else if (choice->method == DSQ_CALIBRATION_KL)
      snprintf(method, method_bytes, "kl, %d bins",
               choice->histogram_bins > 0 ? choice->histogram_bins : DSQ_KL_BINS_DEFAULT);
    else
      snprintf(method, method_bytes, "%s", dsq_calibration_method_name(choice->method));
    fprintf(stderr,
            "  %s calibration over %d training images and %d slice configurations, quantized "
            "in %.1f s\n",
            method, calibration_images->count,
            (int)(sizeof calibration_slices / sizeof calibration_slices[0]),
            dst_now_s() - start_s);
    fprintf(stderr, "  ");
    dst_precision_print(record, stderr);
  }
  dsq_calibration_free(&calibration);
  return status;
}

ds_status dst_quantize_model(dsr_model *model, const dst_dataset *calibration_images,
                             const dst_calibration_choice *choice, int32_t threads,
                             char *method, size_t method_bytes, ds_error *err) {
  dst_precision_config precision;
  dst_precision_record record;
  DS_TRY(dst_parse_precision(NULL, NULL, NULL, &precision, err));
  ds_status status = dst_quantize_model_precision(model, calibration_images, choice, threads,
                                                  &precision, NULL, &record, method,
                                                  method_bytes, err);
  dst_precision_record_free(&record);
  return status;
}

ds_status dst_compile_quantize(dst_compile_state *state, ds_error *err) {
  return dst_quantize_model_precision(&state->model, &state->calibration,
                                      &state->config.calibration, state->config.threads,
                                      &state->config.precision, &state->validation,
                                      &state->precision, state->calibration_method,
                                      sizeof state->calibration_method, err);
}
