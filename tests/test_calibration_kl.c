/* Range choice of the four calibration methods on synthetic distributions with known answers,
 * and the entropy (KL) histogram's merge and bad-parameter behaviour. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/dsq_calibration.h"
#include "quant/dsq_entropy.h"

#define SAMPLE_COUNT 100000
#define OUTLIERS_PER_SIDE 5

/* A model with one tensor and no nodes: enough for dsq_calibration_init. */
static dsr_model one_tensor_model(void) {
  dsr_model model;
  memset(&model, 0, sizeof model);
  snprintf(model.name, sizeof model.name, "synthetic");
  model.tensor_count = 1;
  return model;
}

static uint64_t rng_state;

static double uniform01(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return ((rng_state >> 11) + 0.5) * 0x1p-53;
}

static double gaussian(void) {
  return sqrt(-2.0 * log(uniform01())) * cos(6.283185307179586 * uniform01());
}

/* N(0, 1) samples with OUTLIERS_PER_SIDE values at +100 and at -100; returns the count. */
static int64_t gaussian_with_outliers(float *values) {
  rng_state = 12345;
  int64_t n = 0;
  for (; n < SAMPLE_COUNT; n++)
    values[n] = (float)gaussian();
  for (int i = 0; i < OUTLIERS_PER_SIDE; i++) {
    values[n++] = 100.0f;
    values[n++] = -100.0f;
  }
  return n;
}

static int64_t uniform_values(float *values) {
  rng_state = 777;
  for (int64_t n = 0; n < SAMPLE_COUNT; n++)
    values[n] = (float)(2.0 * uniform01() - 1.0);
  return SAMPLE_COUNT;
}

/* Range that method picks for values at levels quantization steps. */
static void range_of(dsq_calibration_method method, const float *values, int64_t count,
                     int32_t levels, float *min, float *max) {
  dsr_model model = one_tensor_model();
  dsq_calibration calib;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsq_calibration_init(&calib, &model, method, &err), DS_OK, "%s", err.message);
  dsq_calibration_observe_tensor(&calib, 0, values, count);
  cr_assert_eq(dsq_calibration_range(&calib, 0, -1, levels, min, max, &err), DS_OK, "%s",
               err.message);
  dsq_calibration_free(&calib);
}

Test(calibration_methods, outliers_clipped_except_minmax) {
  float *values = malloc(sizeof(float) * (SAMPLE_COUNT + 2 * OUTLIERS_PER_SIDE));
  cr_assert_not_null(values);
  int64_t n = gaussian_with_outliers(values);
  float min, max;

  range_of(DSQ_CALIBRATION_MINMAX, values, n, 255, &min, &max);
  cr_expect_eq(max, 100.0f, "min/max keeps the outliers: max %g", max);
  cr_expect_eq(min, -100.0f, "min/max keeps the outliers: min %g", min);

  range_of(DSQ_CALIBRATION_PERCENTILE, values, n, 255, &min, &max);
  cr_expect(max > 3.0f && max < 10.0f, "percentile 99.99 clips at the tail: max %g", max);
  cr_expect(min < -3.0f && min > -10.0f, "percentile 99.99 clips at the tail: min %g", min);

  range_of(DSQ_CALIBRATION_KL, values, n, 255, &min, &max);
  cr_expect(max > 3.0f && max < 20.0f, "KL clips the outliers but keeps the body: max %g", max);
  cr_expect(min < -3.0f && min > -20.0f, "KL clips the outliers but keeps the body: min %g", min);
  cr_expect_eq(min, -max, "KL clips both ends at one threshold: %g, %g", min, max);

  /* MSE weighs each outlier's squared clipping error (about 100^2) against the rounding noise
   * of every value, so ten outliers in 100,000 are enough for it to keep most of the range. */
  range_of(DSQ_CALIBRATION_MSE, values, n, 255, &min, &max);
  cr_expect(max > 3.0f && max <= 100.0f, "MSE stays within the observed range: max %g", max);
  free(values);
}

Test(calibration_methods, uniform_keeps_nearly_full_range) {
  float *values = malloc(sizeof(float) * SAMPLE_COUNT);
  cr_assert_not_null(values);
  int64_t n = uniform_values(values);
  float min_all, max_all, min, max;
  range_of(DSQ_CALIBRATION_MINMAX, values, n, 255, &min_all, &max_all);

  const dsq_calibration_method methods[] = {DSQ_CALIBRATION_PERCENTILE, DSQ_CALIBRATION_MSE,
                                            DSQ_CALIBRATION_KL};
  for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
    range_of(methods[m], values, n, 255, &min, &max);
    const char *name = dsq_calibration_method_name(methods[m]);
    cr_expect_geq(max, 0.95f * max_all, "%s: max %g of %g", name, max, max_all);
    cr_expect_leq(min, 0.95f * min_all, "%s: min %g of %g", name, min, min_all);
    cr_expect_leq(max, max_all, "%s: max %g beyond the observed %g", name, max, max_all);
  }
  free(values);
}

Test(calibration_methods, kl_int16_keeps_outliers) {
  float *values = malloc(sizeof(float) * (SAMPLE_COUNT + 2 * OUTLIERS_PER_SIDE));
  cr_assert_not_null(values);
  int64_t n = gaussian_with_outliers(values);
  float min, max;
  /* 65535 levels resolve every histogram bin, so clipping only loses information. */
  range_of(DSQ_CALIBRATION_KL, values, n, 65535, &min, &max);
  cr_expect_eq(max, 100.0f, "max %g", max);
  cr_expect_eq(min, -100.0f, "min %g", min);
  /* levels 0 forbids clipping. */
  range_of(DSQ_CALIBRATION_KL, values, n, 0, &min, &max);
  cr_expect_eq(max, 100.0f, "max %g", max);
  free(values);
}

Test(calibration_methods, kl_one_sided_distribution) {
  /* |N(0, 1)| with outliers: a ReLU-like tensor, quantized asymmetrically over [0, T]. */
  float *values = malloc(sizeof(float) * (SAMPLE_COUNT + 2 * OUTLIERS_PER_SIDE));
  cr_assert_not_null(values);
  int64_t n = gaussian_with_outliers(values);
  for (int64_t i = 0; i < n; i++)
    values[i] = fabsf(values[i]);
  float min, max;
  range_of(DSQ_CALIBRATION_KL, values, n, 255, &min, &max);
  cr_expect(min >= 0.0f && min < 1e-3f, "min %g stays the observed minimum", min);
  cr_expect(max > 3.0f && max < 20.0f, "max %g", max);
  free(values);
}

Test(kl_histogram, merge_equals_single_pass) {
  float *values = malloc(sizeof(float) * (SAMPLE_COUNT + 2 * OUTLIERS_PER_SIDE));
  cr_assert_not_null(values);
  int64_t n = gaussian_with_outliers(values);
  dsr_model model = one_tensor_model();
  ds_error err;
  ds_error_clear(&err);

  dsq_calibration whole, first, second;
  cr_assert_eq(dsq_calibration_init(&whole, &model, DSQ_CALIBRATION_KL, &err), DS_OK);
  cr_assert_eq(dsq_calibration_init(&first, &model, DSQ_CALIBRATION_KL, &err), DS_OK);
  cr_assert_eq(dsq_calibration_init(&second, &model, DSQ_CALIBRATION_KL, &err), DS_OK);
  dsq_calibration_observe_tensor(&whole, 0, values, n);
  /* The second share holds the outliers, so merging must raise the first one's exponent. */
  dsq_calibration_observe_tensor(&first, 0, values, 1000);
  dsq_calibration_observe_tensor(&second, 0, values + 1000, n - 1000);
  cr_assert_eq(dsq_calibration_merge(&first, &second, &err), DS_OK, "%s", err.message);

  const dsq_kl_histogram *a = &whole.kl_histograms[0], *b = &first.kl_histograms[0];
  cr_expect_eq(a->exponent, b->exponent);
  cr_expect_eq(memcmp(a->counts, b->counts, sizeof(uint64_t) * (size_t)a->bin_count), 0,
               "merged bins differ from one pass over the same values");
  uint64_t sum = 0;
  for (int32_t j = 0; j < a->bin_count; j++)
    sum += a->counts[j];
  cr_expect_eq(sum, (uint64_t)n);

  dsq_calibration_free(&whole);
  dsq_calibration_free(&first);
  dsq_calibration_free(&second);
  free(values);
}

Test(kl_histogram, bins_are_floor_of_magnitude_over_width) {
  uint64_t counts[256] = {0};
  dsq_kl_histogram h = {256, DSQ_KL_EXPONENT_UNSET, counts, 0.0, 0.0};
  dsq_kl_histogram_add(&h, 0.0f);
  cr_expect_eq(h.exponent, DSQ_KL_EXPONENT_UNSET, "zeros set no width");
  dsq_kl_histogram_add(&h, 1.0f); /* covered by 256 bins of 2^-7 (range [0, 2)) */
  cr_expect_eq(h.exponent, -7);
  cr_expect_eq(counts[128], 1u);
  dsq_kl_histogram_add(&h, -3.0f); /* needs [0, 4): width 2^-6, bins merge in pairs */
  cr_expect_eq(h.exponent, -6);
  cr_expect_eq(counts[64], 1u, "1.0 moved to bin 64");
  cr_expect_eq(counts[192], 1u, "-3.0 in bin 192");
  cr_expect_eq(counts[0], 1u, "the zero stays in bin 0");
  cr_expect_eq(counts[128], 0u);
}

Test(kl_histogram, empty_histogram_keeps_minmax) {
  dsr_model model = one_tensor_model();
  ds_error err;
  ds_error_clear(&err);
  dsq_calibration calib;
  cr_assert_eq(dsq_calibration_init(&calib, &model, DSQ_CALIBRATION_KL, &err), DS_OK);
  const float zeros[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  dsq_calibration_observe_tensor(&calib, 0, zeros, 4);
  float min = 1.0f, max = 1.0f;
  cr_assert_eq(dsq_calibration_range(&calib, 0, -1, 255, &min, &max, &err), DS_OK);
  cr_expect_eq(min, 0.0f);
  cr_expect_eq(max, 0.0f);
  dsq_calibration_free(&calib);
}

Test(kl_histogram, bad_bin_count_rejected) {
  dsr_model model = one_tensor_model();
  ds_error err;
  ds_error_clear(&err);
  dsq_calibration calib;
  dsq_calibration_options options = dsq_calibration_options_default(DSQ_CALIBRATION_KL);
  const int32_t bad[] = {0, 255, 257, DSQ_KL_BINS_MAX + 2, -2};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    options.kl_bins = bad[i];
    cr_expect_eq(dsq_calibration_init_options(&calib, &model, &options, &err),
                 DS_ERR_INVALID_ARGUMENT, "%d bins accepted", bad[i]);
    cr_expect_neq(strstr(err.message, "KL histogram bins"), NULL, "%s", err.message);
  }
  options.kl_bins = 512;
  cr_expect_eq(dsq_calibration_init_options(&calib, &model, &options, &err), DS_OK, "%s",
               err.message);
  cr_expect_eq(calib.kl_histograms[0].bin_count, 512);
  dsq_calibration_free(&calib);
}

Test(kl_histogram, method_names_parse) {
  dsq_calibration_method method;
  cr_expect(dsq_calibration_method_parse("kl", &method));
  cr_expect_eq(method, DSQ_CALIBRATION_KL);
  cr_expect(dsq_calibration_method_parse("minmax", &method));
  cr_expect_eq(method, DSQ_CALIBRATION_MINMAX);
  cr_expect_not(dsq_calibration_method_parse("entropy", &method));
  cr_expect_str_eq(dsq_calibration_method_name(DSQ_CALIBRATION_KL), "kl");
}
