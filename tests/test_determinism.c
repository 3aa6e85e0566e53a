/*
 * Determinism of the fixed-point outputs: bit-identical across runs, thread counts and build
 * types. Each case calibrates and quantizes a model, runs a fixed set of images under every
 * thread option below, hashes the raw integer outputs (FNV-1a, 64 bits) and compares the hash
 * with tests/fixtures/determinism.json. `make test` runs this program in the Release and the
 * ASan+UBSan builds, so one stored hash checks both.
 *
 * To record new hashes after a deliberate change of the arithmetic, run the program with
 * DS_WRITE_DETERMINISM=1 in the environment and commit the rewritten fixture.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_quantize.h"
#include "tools/lib/dst_compile.h"
#include "tools/lib/dst_data.h"
#include "tools/lib/dst_eval.h"

#define HASH_FIXTURE DS_SOURCE_DIR "/tests/fixtures/determinism.json"
#define BUNDLED_MODEL DS_SOURCE_DIR "/models/dat_pp_nano.onnx"

/*
 * Ways to spread the images over threads. Each worker owns a context and runs a contiguous
 * share of the images. NOTE: when the runtime gains threading inside a kernel, add options
 * here that enable it, so the stored hash checks that path too.
 */
typedef struct thread_option {
  const char *name;
  int32_t workers;
} thread_option;

static const thread_option thread_options[] = {
    {"1 worker", 1},
    {"2 workers", 2},
    {"3 workers", 3},
};
#define THREAD_OPTION_COUNT ((int32_t)(sizeof thread_options / sizeof thread_options[0]))

typedef struct worker {
  const dsr_model *model;
  const float *images;
  int32_t first, count;
  uint8_t *outputs;        /* raw fixed-point outputs of all images */
  size_t output_bytes;     /* per image */
  int ok;
  pthread_t thread;
} worker;

static uint64_t fnv1a(const uint8_t *data, size_t size) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; i++) {
    hash ^= data[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  const dsr_model *model = w->model;
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info plan;
  if (dsr_plan(model, DSR_MODE_FIXED, 0, &plan, &err) != DS_OK)
    return NULL;
  size_t bytes = (plan.arena_bytes + 63) / 64 * 64;
  void *arena = aligned_alloc(64, bytes);
  dsr_context ctx;
  if (arena == NULL ||
      dsr_context_init(&ctx, model, DSR_MODE_FIXED, 0, arena, bytes, &err) != DS_OK) {
    free(arena);
    return NULL;
  }
  int64_t input_count = dsr_tensor_elements(&model->tensors[model->input]);
  for (int32_t i = w->first; i < w->first + w->count; i++) {
    memcpy(dsr_input_f32(&ctx), w->images + (int64_t)i * input_count,
           sizeof(float) * (size_t)input_count);
    dsr_invoke(&ctx);
    memcpy(w->outputs + (size_t)i * w->output_bytes, dsr_tensor_data(&ctx, model->output),
           w->output_bytes);
  }
  free(arena);
  w->ok = 1;
  return NULL;
}

/* Runs count images with the given thread option and returns the hash of the raw outputs. */
static uint64_t hash_outputs(const dsr_model *model, const float *images, int32_t count,
                             const thread_option *option) {
  const dsr_tensor *out = &model->tensors[model->output];
  size_t output_bytes = (size_t)dsr_tensor_elements(out) *
                        (out->qparams.dtype == DSR_DTYPE_I8 ? 1 : 2);
  uint8_t *outputs = calloc((size_t)count, output_bytes);
  cr_assert_not_null(outputs);
  worker workers[8];
  int32_t n = option->workers;
  cr_assert_leq(n, 8);
  for (int32_t t = 0; t < n; t++) {
    int32_t first = (int32_t)((int64_t)count * t / n);
    int32_t end = (int32_t)((int64_t)count * (t + 1) / n);
    workers[t] = (worker){model, images, first, end - first, outputs, output_bytes, 0, 0};
    cr_assert_eq(pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]), 0);
  }
  for (int32_t t = 0; t < n; t++) {
    pthread_join(workers[t].thread, NULL);
    cr_assert(workers[t].ok, "%s: worker %d failed", option->name, t);
  }
  uint64_t hash = fnv1a(outputs, (size_t)count * output_bytes);
  free(outputs);
  return hash;
}

/* Stored hash of a case, or 0 when the fixture lacks it. */
static uint64_t stored_hash(const char *key) {
  uint8_t *data = NULL;
  size_t size = 0;
  ds_error err;
  ds_error_clear(&err);
  if (ds_file_read_all(HASH_FIXTURE, 1 << 20, &data, &size, &err) != DS_OK)
    return 0;
  cJSON *root = cJSON_ParseWithLength((const char *)data, size);
  free(data);
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
  uint64_t hash = 0;
  if (cJSON_IsString(item))
    hash = strtoull(item->valuestring, NULL, 16);
  cJSON_Delete(root);
  return hash;
}

/* With DS_WRITE_DETERMINISM=1, records hash under key in the fixture. */
static void maybe_record(const char *key, uint64_t hash) {
  const char *write = getenv("DS_WRITE_DETERMINISM");
  if (write == NULL || strcmp(write, "1") != 0)
    return;
  uint8_t *data = NULL;
  size_t size = 0;
  ds_error err;
  ds_error_clear(&err);
  cJSON *root = NULL;
  if (ds_file_read_all(HASH_FIXTURE, 1 << 20, &data, &size, &err) == DS_OK) {
    root = cJSON_ParseWithLength((const char *)data, size);
    free(data);
  }
  if (root == NULL)
    root = cJSON_CreateObject();
  char text[32];
  snprintf(text, sizeof text, "%016llx", (unsigned long long)hash);
  cJSON_DeleteItemFromObjectCaseSensitive(root, key);
  cJSON_AddStringToObject(root, key, text);
  char *printed = cJSON_Print(root);
  cr_assert_eq(ds_file_write_atomic(HASH_FIXTURE, printed, strlen(printed), &err), DS_OK, "%s",
               err.message);
  free(printed);
  cJSON_Delete(root);
}

/* Hashes under every thread option, checks they agree and match the stored hash. */
static void check_case(const char *key, const dsr_model *model, const float *images,
                       int32_t count) {
  uint64_t first = hash_outputs(model, images, count, &thread_options[0]);
  for (int32_t k = 1; k < THREAD_OPTION_COUNT; k++) {
    uint64_t hash = hash_outputs(model, images, count, &thread_options[k]);
    cr_expect_eq(hash, first, "%s: %s gives %016llx, %s gives %016llx", key,
                 thread_options[k].name, (unsigned long long)hash, thread_options[0].name,
                 (unsigned long long)first);
  }
  uint64_t again = hash_outputs(model, images, count, &thread_options[0]);
  cr_expect_eq(again, first, "%s: a second run gives another hash", key);
  maybe_record(key, first);
  uint64_t stored = stored_hash(key);
  cr_expect_neq(stored, 0, "%s has no hash for '%s'", HASH_FIXTURE, key);
  cr_expect_eq(first, stored,
               "%s: fixed-point outputs hash to %016llx, the stored hash is %016llx; if the "
               "arithmetic changed on purpose, rerun with DS_WRITE_DETERMINISM=1",
               key, (unsigned long long)first, (unsigned long long)stored);
}

static uint64_t rng_state;

static float rng_uniform(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

Test(determinism, fixture_model_hash) {
  dsr_model model = {0};
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(DS_SOURCE_DIR "/tests/fixtures/dat_pp_tiny.onnx", NULL, &model,
                               NULL, &err),
               DS_OK, "%s", err.message);
  const int32_t count = 16;
  int64_t n = dsr_tensor_elements(&model.tensors[model.input]);
  float *images = malloc(sizeof(float) * (size_t)(n * count));
  cr_assert_not_null(images);
  rng_state = 0x853c49e6748fea9bull;
  for (int64_t i = 0; i < n * count; i++)
    images[i] = rng_uniform();

  /* Calibration on the first 8 images with every thread option gives the same ranges. */
  dst_dataset data = {.count = 8, .side = model.tensors[model.input].dims[3], .images = images};
  const dst_calibration_choice choice = {.method = DSQ_CALIBRATION_MINMAX,
                                         .percentile = DSQ_PERCENTILE_DEFAULT};
  uint64_t calibrated[2];
  for (int32_t k = 0; k < 2; k++) {
    dsq_calibration calib;
    cr_assert_eq(dst_calibrate_model(&model, &data, &choice, k == 0 ? 1 : 3, &calib, &err),
                 DS_OK, "%s", err.message);
    cr_assert_eq(dsq_quantize(&model, &calib, NULL, &err), DS_OK, "%s", err.message);
    dsq_calibration_free(&calib);
    calibrated[k] = hash_outputs(&model, images, count, &thread_options[0]);
  }
  cr_expect_eq(calibrated[0], calibrated[1], "calibration on 1 and 3 threads differs");
  check_case("dat_pp_tiny_16_random", &model, images, count);

  free(images);
  ds_model_free(&model);
}

Test(determinism, bundled_model_hash, .timeout = 600) {
  if (access(DST_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0)
    cr_skip_test("dataset-fashion-mnist is not installed");
  dsr_model model = {0};
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(BUNDLED_MODEL, NULL, &model, NULL, &err), DS_OK, "%s",
               err.message);
  dst_dataset calibration, test;
  cr_assert_eq(dst_dataset_load(DST_FASHION_MNIST_DIR, DST_SPLIT_TRAIN, 32, 8, &calibration,
                                &err),
               DS_OK, "%s", err.message);
  cr_assert_eq(dst_dataset_load(DST_FASHION_MNIST_DIR, DST_SPLIT_TEST, 32, 12, &test, &err),
               DS_OK, "%s", err.message);
  char method[32];
  const dst_calibration_choice choice = {.method = DSQ_CALIBRATION_MINMAX,
                                         .percentile = DSQ_PERCENTILE_DEFAULT};
  cr_assert_eq(dst_quantize_model(&model, &calibration, &choice, 2, method, sizeof method, &err),
               DS_OK, "%s", err.message);
  check_case("dat_pp_nano_train8_test12", &model, test.images, test.count);

  /* The evaluator's own threads give the same predictions. */
  int32_t one[12], three[12];
  dst_eval_result result;
  dst_eval_options eval = {.mode = DSR_MODE_FIXED, .threads = 1};
  cr_assert_eq(dst_evaluate(&model, &test, 0, test.count, &eval, &result, one, &err), DS_OK);
  eval.threads = 3;
  cr_assert_eq(dst_evaluate(&model, &test, 0, test.count, &eval, &result, three, &err), DS_OK);
  cr_expect_eq(memcmp(one, three, sizeof one), 0, "predictions differ between 1 and 3 threads");

  dst_dataset_free(&calibration);
  dst_dataset_free(&test);
  ds_model_free(&model);
}
