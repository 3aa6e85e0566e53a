/*
 * Helpers shared by the tests that quantize a fixture model and run it node by node or
 * through a context: import, two calibration images and min/max quantization. The tests
 * compare kernels or worker counts with each other, so any calibration images serve. Include
 * it from one test program at a time, because the functions are static.
 */
#ifndef DS_TEST_FIXTURE_H
#define DS_TEST_FIXTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_quantize.h"

/* Path of fixture name: tests/fixtures/NAME.onnx, or name itself under the source tree when
 * it contains a slash. */
static inline void fixture_path(const char *name, char *path, size_t path_bytes) {
  if (strchr(name, '/') != NULL)
    snprintf(path, path_bytes, "%s/%s", DS_SOURCE_DIR, name);
  else
    snprintf(path, path_bytes, "%s/tests/fixtures/%s.onnx", DS_SOURCE_DIR, name);
}

/*
 * Imports fixture name into model and returns two calibration images, owned by the caller:
 * the fixture's stored input (tests/fixtures/NAME.input.f32) when the fixture has one, else
 * a pseudo-random image, then a pseudo-random image in [-1, 1].
 */
static inline float *fixture_import(const char *name, dsr_model *model) {
  char path[1024];
  ds_error err;
  ds_error_clear(&err);
  fixture_path(name, path, sizeof path);
  memset(model, 0, sizeof *model);
  cr_assert_eq(dsc_import_file(path, NULL, model, NULL, &err), DS_OK, "%s: %s", name,
               err.message);

  int64_t n = dsr_tensor_elements(&model->tensors[model->input]);
  float *images = malloc(sizeof(float) * (size_t)n * 2);
  cr_assert_not_null(images);
  uint32_t state = 99u;
  for (int64_t i = 0; i < 2 * n; i++) {
    state = state * 1664525u + 1013904223u;
    images[i] = (float)((state >> 8) % 2001) / 1000.0f - 1.0f;
  }

  snprintf(path, sizeof path, "%s/tests/fixtures/%s.input.f32", DS_SOURCE_DIR, name);
  FILE *f = strchr(name, '/') == NULL ? fopen(path, "rb") : NULL;
  if (f != NULL) {
    cr_assert_eq(fread(images, sizeof(float), (size_t)n, f), (size_t)n, "short input %s", path);
    fclose(f);
  }
  return images;
}

/* Calibrates model with min/max on the two images and quantizes it with options (NULL: the
 * defaults). */
static inline void fixture_quantize(dsr_model *model, const float *images, const dsq_options *options) {
  ds_error err;
  ds_error_clear(&err);
  dsq_calibration calib;
  cr_assert_eq(dsq_calibration_init(&calib, model, DSQ_CALIBRATION_MINMAX, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(dsq_calibration_run(&calib, model, images, 2, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsq_quantize(model, &calib, options, &err), DS_OK, "%s", err.message);
  dsq_calibration_free(&calib);
}

/* fixture_import and fixture_quantize with the default options. *image receives the first
 * calibration image, owned by the caller. */
static inline void fixture_load_quantized(const char *name, dsr_model *model, float **image) {
  float *images = fixture_import(name, model);
  fixture_quantize(model, images, NULL);
  *image = images;
}

#endif
