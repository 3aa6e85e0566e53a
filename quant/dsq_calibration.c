#include "dsq_calibration.h"

#include "../common/ds_model.h"
#include "../runtime/dsr_slice.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[DSQ_CALIBRATION_METHOD_COUNT] = {"minmax", "percentile",
                                                                       "mse", "kl"};

const char *dsq_calibration_method_name(dsq_calibration_method method) {
  if ((int)method < 0 || method >= DSQ_CALIBRATION_METHOD_COUNT)
    return "unknown";
  return method_names[method];
}

int dsq_calibration_method_parse(const char *name, dsq_calibration_method *method) {
  for (int i = 0; name != NULL && i < DSQ_CALIBRATION_METHOD_COUNT; i++) {
    if (strcmp(name, method_names[i]) == 0) {
      *method = (dsq_calibration_method)i;
      return 1;
    }
  }
  return 0;
}

dsq_calibration_options dsq_calibration_options_default(dsq_calibration_method method) {
  dsq_calibration_options options = {method, DSQ_PERCENTILE_DEFAULT, DSQ_KL_BINS_DEFAULT};
  return options;
}

/* Number of histogram slots: every tensor, then DSR_DEFORM_STAGE_COUNT per node. */
static size_t slot_count(int32_t tensor_count, int32_t node_count) {
  return (size_t)tensor_count + (size_t)(node_count > 0 ? node_count : 1) * DSR_DEFORM_STAGE_COUNT;
}

static ds_status allocate_kl(dsq_calibration *calib, size_t slots, int32_t bins) {
  calib->kl_bins = bins;
  calib->kl_histograms = calloc(slots, sizeof *calib->kl_histograms);
  calib->kl_counts = calloc(slots * (size_t)bins, sizeof *calib->kl_counts);
  if (calib->kl_histograms == NULL || calib->kl_counts == NULL)
    return DS_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; i < slots; i++) {
    calib->kl_histograms[i].bin_count = bins;
    calib->kl_histograms[i].exponent = DSQ_KL_EXPONENT_UNSET;
    calib->kl_histograms[i].counts = calib->kl_counts + i * (size_t)bins;
  }
  return DS_OK;
}

ds_status dsq_calibration_init(dsq_calibration *calib, const dsr_model *model,
                               dsq_calibration_method method, ds_error *err) {
  dsq_calibration_options options = dsq_calibration_options_default(method);
  return dsq_calibration_init_options(calib, model, &options, err);
}

ds_status dsq_calibration_init_options(dsq_calibration *calib, const dsr_model *model,
                                       const dsq_calibration_options *options, ds_error *err) {
  if (calib == NULL || model == NULL || options == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsq_calibration_init: calib, model and "
                                                 "options must not be NULL");
  memset(calib, 0, sizeof *calib);
  const dsq_calibration_method method = options->method;
  if ((int)method < 0 || method >= DSQ_CALIBRATION_METHOD_COUNT)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "unknown calibration method %d: use minmax (%d), percentile (%d), mse (%d) "
                   "or kl (%d)",
                   (int)method, DSQ_CALIBRATION_MINMAX, DSQ_CALIBRATION_PERCENTILE,
                   DSQ_CALIBRATION_MSE, DSQ_CALIBRATION_KL);
  if (!(options->percentile > 50.0 && options->percentile <= 100.0))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "percentile %g is outside (50, 100]: give the share of values to keep, such "
                   "as %g",
                   options->percentile, DSQ_PERCENTILE_DEFAULT);
  if (method == DSQ_CALIBRATION_KL &&
      (options->kl_bins < DSQ_KL_BINS_MIN || options->kl_bins > DSQ_KL_BINS_MAX ||
       options->kl_bins % 2 != 0))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "%d KL histogram bins: use an even count in %d..%d, such as %d",
                   options->kl_bins, DSQ_KL_BINS_MIN, DSQ_KL_BINS_MAX, DSQ_KL_BINS_DEFAULT);
  if (model->tensor_count < 1 || model->node_count < 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "model '%s' has %d tensors: nothing to "
                                                 "calibrate",
                   model->name, model->tensor_count);

  calib->tensors = calloc((size_t)model->tensor_count, sizeof *calib->tensors);
  calib->stages = calloc((size_t)(model->node_count > 0 ? model->node_count : 1) *
                             DSR_DEFORM_STAGE_COUNT,
                         sizeof *calib->stages);
  size_t slots = slot_count(model->tensor_count, model->node_count);
  int histograms = method == DSQ_CALIBRATION_PERCENTILE || method == DSQ_CALIBRATION_MSE;
  if (histograms)
    calib->histograms = calloc(slots * DSQ_HISTOGRAM_BINS, sizeof *calib->histograms);
  ds_status kl_status = method == DSQ_CALIBRATION_KL ? allocate_kl(calib, slots, options->kl_bins)
                                                     : DS_OK;
  if (calib->tensors == NULL || calib->stages == NULL ||
      (histograms && calib->histograms == NULL) || kl_status != DS_OK) {
    dsq_calibration_free(calib);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate calibration ranges for %d "
                                              "tensors",
                   model->tensor_count);
  }
  calib->method = method;
  calib->percentile = options->percentile;
  calib->tensor_count = model->tensor_count;
  calib->node_count = model->node_count;
  return DS_OK;
}

void dsq_calibration_free(dsq_calibration *calib) {
  if (calib == NULL)
    return;
  free(calib->tensors);
  free(calib->stages);
  free(calib->histograms);
  free(calib->kl_histograms);
  free(calib->kl_counts);
  memset(calib, 0, sizeof *calib);
}

/* Histogram bin of a finite value (see DSQ_HISTOGRAM_OCTAVES). */
static int32_t histogram_bin(float v) {
  float magnitude = fabsf(v);
  if (magnitude < 0x1p-24f)
    return DSQ_HISTOGRAM_SIDE_BINS;
  int exponent;
  float fraction = frexpf(magnitude, &exponent); /* magnitude in [2^(e-1), 2^e) */
  int32_t octave = exponent - 1 + DSQ_HISTOGRAM_OCTAVES / 2;
  int32_t step = (int32_t)((fraction * 2.0f - 1.0f) * DSQ_HISTOGRAM_STEPS);
  if (octave >= DSQ_HISTOGRAM_OCTAVES) {
    octave = DSQ_HISTOGRAM_OCTAVES - 1;
    step = DSQ_HISTOGRAM_STEPS - 1;
  }
  if (step >= DSQ_HISTOGRAM_STEPS)
    step = DSQ_HISTOGRAM_STEPS - 1;
  int32_t k = octave * DSQ_HISTOGRAM_STEPS + step;
  return v > 0 ? DSQ_HISTOGRAM_SIDE_BINS + 1 + k : DSQ_HISTOGRAM_SIDE_BINS - 1 - k;
}

/* Magnitude range [low, high) of side bin k (k = octave * steps + step). */
static double bin_magnitude(int32_t k, int high) {
  int32_t octave = k / DSQ_HISTOGRAM_STEPS, step = k % DSQ_HISTOGRAM_STEPS;
  return ldexp(1.0 + (double)(step + (high ? 1 : 0)) / DSQ_HISTOGRAM_STEPS,
               octave - DSQ_HISTOGRAM_OCTAVES / 2);
}

/* The value edge of bin b toward +infinity (upper) or -infinity (lower). */
static double bin_edge(int32_t b, int upper) {
  if (b == DSQ_HISTOGRAM_SIDE_BINS)
    return upper ? 0x1p-24 : -0x1p-24;
  if (b > DSQ_HISTOGRAM_SIDE_BINS)
    return bin_magnitude(b - DSQ_HISTOGRAM_SIDE_BINS - 1, upper);
  return -bin_magnitude(DSQ_HISTOGRAM_SIDE_BINS - 1 - b, !upper);
}

static void observe(dsq_range *range, uint64_t *histogram, dsq_kl_histogram *kl,
                    const float *values, int64_t count) {
  for (int64_t i = 0; i < count; i++) {
    float v = values[i];
    if (!isfinite(v)) {
      range->nonfinite_count++;
      continue;
    }
    if (histogram != NULL)
      histogram[histogram_bin(v)]++;
    if (kl != NULL)
      dsq_kl_histogram_add(kl, v);
    if (range->count == 0 || v < range->min)
      range->min = v;
    if (range->count == 0 || v > range->max)
      range->max = v;
    range->count++;
  }
}

void dsq_calibration_observe_tensor(dsq_calibration *calib, int32_t tensor_index,
                                    const float *values, int64_t count) {
  if (calib == NULL || calib->tensors == NULL || tensor_index < 0 ||
      tensor_index >= calib->tensor_count || values == NULL)
    return;
  uint64_t *histogram = calib->histograms != NULL
                           ? calib->histograms + (size_t)tensor_index * DSQ_HISTOGRAM_BINS
                           : NULL;
  dsq_kl_histogram *kl = calib->kl_histograms != NULL ? &calib->kl_histograms[tensor_index] : NULL;
  observe(&calib->tensors[tensor_index], histogram, kl, values, count);
}

void dsq_calibration_observe_stage(dsq_calibration *calib, int32_t node_index, int32_t stage,
                                   const float *values, int64_t count) {
  if (calib == NULL || calib->stages == NULL || node_index < 0 ||
      node_index >= calib->node_count || stage < 0 || stage >= DSR_DEFORM_STAGE_COUNT ||
      values == NULL)
    return;
  int64_t slot = (int64_t)node_index * DSR_DEFORM_STAGE_COUNT + stage;
  uint64_t *histogram =
      calib->histograms != NULL
          ? calib->histograms + ((size_t)calib->tensor_count + (size_t)slot) * DSQ_HISTOGRAM_BINS
          : NULL;
  dsq_kl_histogram *kl = calib->kl_histograms != NULL
                            ? &calib->kl_histograms[(size_t)calib->tensor_count + (size_t)slot]
                            : NULL;
  observe(&calib->stages[slot], histogram, kl, values, count);
}

static void on_tensor(void *user, int32_t tensor_index, const float *values, int64_t count) {
  dsq_calibration_observe_tensor(user, tensor_index, values, count);
}

static void on_deform_stage(void *user, int32_t node_index, int32_t stage, const float *values,
                            int64_t count) {
  dsq_calibration_observe_stage(user, node_index, stage, values, count);
}

dsr_observer dsq_calibration_observer(dsq_calibration *calib) {
  dsr_observer observer;
  observer.on_tensor = on_tensor;
  observer.on_deform_stage = on_deform_stage;
  observer.user = calib;
  return observer;
}

static ds_status check_matches(const dsq_calibration *calib, const dsr_model *model,
                               ds_error *err) {
  if (calib->tensors == NULL || calib->tensor_count != model->tensor_count ||
      calib->node_count != model->node_count)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "calibration was made for %d tensors and %d nodes, model '%s' has %d and %d: "
                   "initialize it with dsq_calibration_init for this model",
                   calib->tensor_count, calib->node_count, model->name, model->tensor_count,
                   model->node_count);
  return DS_OK;
}

/* Runs every image under each configuration (configs NULL: once, with the model's own). */
static ds_status run_images(dsq_calibration *calib, const dsr_model *model, const float *images,
                            int32_t image_count, const dsr_slice *configs,
                            int32_t config_count, ds_error *err) {
  DS_TRY(check_matches(calib, model, err));
  dsr_plan_info plan;
  DS_TRY(dsr_plan(model, DSR_MODE_FLOAT, 0, &plan, err));
  size_t arena_bytes = (plan.arena_bytes + 63) / 64 * 64;
  void *arena = aligned_alloc(64, arena_bytes == 0 ? 64 : arena_bytes);
  if (arena == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate a %zu-byte calibration arena",
                   arena_bytes);
  dsr_context ctx;
  ds_status status = dsr_context_init(&ctx, model, DSR_MODE_FLOAT, 0, arena, arena_bytes, err);
  dsr_observer observer = dsq_calibration_observer(calib);
  int64_t input_count = dsr_tensor_elements(&model->tensors[model->input]);
  int32_t passes = configs != NULL ? config_count : 1;
  for (int32_t c = 0; c < passes && status == DS_OK; c++) {
    for (int32_t layer = 0; configs != NULL && layer < ctx.deform_count && status == DS_OK;
         layer++) {
      int32_t node = ds_model_deform_node(model, layer);
      dsr_slice slice = configs[c];
      if (node < 0 || dsr_slice_validate(model->nodes[node].deform, slice, NULL) != DS_OK)
        slice = dsr_slice_none();
      status = dsr_context_set_slice(&ctx, layer, slice, err);
    }
    dsr_context_set_observer(&ctx, &observer);
    for (int32_t i = 0; i < image_count && status == DS_OK; i++) {
      const float *image = images + (int64_t)i * input_count;
      memcpy(dsr_input_f32(&ctx), image, (size_t)input_count * sizeof(float));
      dsq_calibration_observe_tensor(calib, model->input, image, input_count);
      dsr_invoke(&ctx);
      calib->image_count++;
    }
  }
  free(arena);
  return status;
}

ds_status dsq_calibration_run(dsq_calibration *calib, const dsr_model *model,
                              const float *images, int32_t image_count, ds_error *err) {
  if (calib == NULL || model == NULL || images == NULL || image_count < 1)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "dsq_calibration_run needs a calibration, a model and at least one image "
                   "(got %d)",
                   image_count);
  return run_images(calib, model, images, image_count, NULL, 0, err);
}

ds_status dsq_calibration_run_slices(dsq_calibration *calib, const dsr_model *model,
                                     const float *images, int32_t image_count,
                                     const dsr_slice *configs, int32_t config_count,
                                     ds_error *err) {
  if (calib == NULL || model == NULL || images == NULL || image_count < 1 || configs == NULL ||
      config_count < 1)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "dsq_calibration_run_slices needs a calibration, a model, at least one image "
                   "(got %d) and one slice configuration (got %d)",
                   image_count, config_count);
  return run_images(calib, model, images, image_count, configs, config_count, err);
}

static void merge_range(dsq_range *into, const dsq_range *from) {
  if (from->count > 0) {
    if (into->count == 0 || from->min < into->min)
      into->min = from->min;
    if (into->count == 0 || from->max > into->max)
      into->max = from->max;
  }
  into->count += from->count;
  into->nonfinite_count += from->nonfinite_count;
}

ds_status dsq_calibration_merge(dsq_calibration *into, const dsq_calibration *from,
                                ds_error *err) {
  if (into == NULL || from == NULL || into->tensors == NULL || from->tensors == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsq_calibration_merge needs two initialized "
                                                 "calibrations");
  if (into->tensor_count != from->tensor_count || into->node_count != from->node_count ||
      into->method != from->method || into->kl_bins != from->kl_bins)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "cannot merge a calibration of %d tensors, %d nodes (%s) into one of %d "
                   "tensors, %d nodes (%s): both must come from the same model and method",
                   from->tensor_count, from->node_count,
                   dsq_calibration_method_name(from->method), into->tensor_count,
                   into->node_count, dsq_calibration_method_name(into->method));
  for (int32_t i = 0; i < into->tensor_count; i++)
    merge_range(&into->tensors[i], &from->tensors[i]);
  for (int64_t i = 0; i < (int64_t)into->node_count * DSR_DEFORM_STAGE_COUNT; i++)
    merge_range(&into->stages[i], &from->stages[i]);
  const size_t slots = slot_count(into->tensor_count, into->node_count);
  if (into->histograms != NULL && from->histograms != NULL) {
    for (size_t i = 0; i < slots * DSQ_HISTOGRAM_BINS; i++)
      into->histograms[i] += from->histograms[i];
  }
  if (into->kl_histograms != NULL && from->kl_histograms != NULL) {
    for (size_t i = 0; i < slots; i++)
      dsq_kl_histogram_merge(&into->kl_histograms[i], &from->kl_histograms[i]);
  }
  into->image_count += from->image_count;
  return DS_OK;
}

/*
 * Shrinks [min, max] toward 0 by the factor 2^(-k/8), k = 0..32, that minimizes the estimated
 * squared error: each bin's count times (distance to the range)^2 outside it, or step^2 / 12
 * inside. Bin values are taken at bin centres, kept within the observed extremes.
 */
static void mse_range(const uint64_t *histogram, int32_t levels, float *min, float *max) {
  double lo0 = fmin(*min, 0.0), hi0 = fmax(*max, 0.0);
  double best_error = INFINITY, best_factor = 1.0;
  for (int32_t k = 0; k <= 32; k++) {
    double factor = exp2(-k / 8.0);
    double lo = lo0 * factor, hi = hi0 * factor;
    double step = (hi - lo) / levels;
    if (!(step > 0.0))
      continue;
    double error = 0.0;
    for (int32_t b = 0; b < DSQ_HISTOGRAM_BINS; b++) {
      if (histogram[b] == 0)
        continue;
      double v = 0.5 * (bin_edge(b, 0) + bin_edge(b, 1));
      v = fmin(fmax(v, *min), *max);
      double e = v > hi ? v - hi : (v < lo ? lo - v : 0.0);
      error += (double)histogram[b] * (e > 0.0 ? e * e : step * step / 12.0);
    }
    if (error < best_error) {
      best_error = error;
      best_factor = factor;
    }
  }
  *min = (float)fmax(*min, lo0 * best_factor);
  *max = (float)fmin(*max, hi0 * best_factor);
}

ds_status dsq_calibration_range(const dsq_calibration *calib, int32_t node_or_tensor,
                                int32_t stage, int32_t levels, float *min, float *max,
                                ds_error *err) {
  if (calib == NULL || calib->tensors == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsq_calibration_range needs a calibration");
  int64_t slot;
  const dsq_range *range;
  if (stage < 0) {
    if (node_or_tensor < 0 || node_or_tensor >= calib->tensor_count)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "tensor index %d is outside 0..%d",
                     node_or_tensor, calib->tensor_count - 1);
    slot = node_or_tensor;
    range = &calib->tensors[node_or_tensor];
  } else {
    if (node_or_tensor < 0 || node_or_tensor >= calib->node_count ||
        stage >= DSR_DEFORM_STAGE_COUNT)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "node %d stage %d is out of range",
                     node_or_tensor, stage);
    int64_t stage_slot = (int64_t)node_or_tensor * DSR_DEFORM_STAGE_COUNT + stage;
    slot = calib->tensor_count + stage_slot;
    range = &calib->stages[stage_slot];
  }
  if (range->count == 0)
    return ds_fail(err, DS_ERR_QUANT,
                   "never observed during calibration: run dsq_calibration_run over at least one "
                   "image first");
  if (!isfinite(range->min) || !isfinite(range->max))
    return ds_fail(err, DS_ERR_QUANT, "the calibration range is not finite");
  *min = range->min;
  *max = range->max;
  if (levels > 0 && calib->method == DSQ_CALIBRATION_KL && calib->kl_histograms != NULL) {
    double threshold = dsq_kl_threshold(&calib->kl_histograms[slot], range->min, range->max,
                                        levels, NULL);
    if (threshold > 0.0) {
      *min = (float)fmax(range->min, -threshold);
      *max = (float)fmin(range->max, threshold);
    }
    return DS_OK;
  }
  if (levels <= 0 || calib->method == DSQ_CALIBRATION_MINMAX || calib->histograms == NULL)
    return DS_OK;
  const uint64_t *histogram = calib->histograms + (size_t)slot * DSQ_HISTOGRAM_BINS;
  if (calib->method == DSQ_CALIBRATION_MSE) {
    mse_range(histogram, levels, min, max);
    return DS_OK;
  }

  /* Walk in from each end until more than the clipped share has been passed. */
  if (!(calib->percentile > 50.0 && calib->percentile <= 100.0))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "percentile %g is outside (50, 100]: set dsq_calibration.percentile to the "
                   "share of values to keep, such as %g",
                   calib->percentile, DSQ_PERCENTILE_DEFAULT);
  uint64_t tail = (uint64_t)floor((double)range->count * (100.0 - calib->percentile) / 100.0);
  uint64_t passed = 0;
  for (int32_t b = DSQ_HISTOGRAM_BINS - 1; b >= 0; b--) {
    if (passed + histogram[b] > tail) {
      *max = (float)fmin(*max, bin_edge(b, 1));
      break;
    }
    passed += histogram[b];
  }
  passed = 0;
  for (int32_t b = 0; b < DSQ_HISTOGRAM_BINS; b++) {
    if (passed + histogram[b] > tail) {
      *min = (float)fmax(*min, bin_edge(b, 0));
      break;
    }
    passed += histogram[b];
  }
  return DS_OK;
}
