/*
 * Calibration methods compared: fixed-point top-1 of one model with each method (min/max,
 * percentile, MSE, KL) and the time each calibration and quantization takes, all in one run.
 * Calibration runs as compile's does: the first CALIBRATION training images under compile's
 * seven slice configurations, on THREADS threads.
 *
 * With --images DIR it instead checks an image folder against the IDX files: DIR/test must
 * hold test images 0..N-1 written by tools/export_images.py (file names are the image
 * indices). The model is quantized once (min/max), and the folder's predictions are compared
 * image by image with the IDX path's.
 *
 * Usage: bench_calibration MODEL.onnx [--test N] [--calibration N] [--threads N]
 *                          [--images DIR [--preprocess FILE]] [--data IDX_DIR]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "tools/lib/dst_compile.h"
#include "tools/lib/dst_eval.h"
#include "tools/lib/dst_progress.h"
#include "tools/lib/dst_source.h"

typedef struct bench_args {
  const char *model;
  const char *data;
  const char *images;
  const char *preprocess;
  int32_t test_images;
  int32_t calibration_images;
  int32_t threads;
} bench_args;

static int fail(const ds_error *err) {
  fprintf(stderr, "bench_calibration: %s\n", err->message);
  return 1;
}

static int parse_args(int argc, char **argv, bench_args *args) {
  *args = (bench_args){.data = DST_FASHION_MNIST_DIR, .test_images = 10000,
                       .calibration_images = 500, .threads = dst_default_threads()};
  for (int i = 1; i < argc; i++) {
    const char *value = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--test") == 0 && value != NULL)
      args->test_images = atoi(argv[++i]);
    else if (strcmp(argv[i], "--calibration") == 0 && value != NULL)
      args->calibration_images = atoi(argv[++i]);
    else if (strcmp(argv[i], "--threads") == 0 && value != NULL)
      args->threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--images") == 0 && value != NULL)
      args->images = argv[++i];
    else if (strcmp(argv[i], "--preprocess") == 0 && value != NULL)
      args->preprocess = argv[++i];
    else if (strcmp(argv[i], "--data") == 0 && value != NULL)
      args->data = argv[++i];
    else if (argv[i][0] != '-' && args->model == NULL)
      args->model = argv[i];
    else
      return 0;
  }
  return args->model != NULL && args->test_images > 0 && args->calibration_images > 0 &&
         args->threads > 0;
}

static ds_status fixed_top1(const dsr_model *model, const dst_dataset *test, int32_t threads,
                            int32_t *predictions, dst_eval_result *result, ds_error *err) {
  dst_eval_options eval = {.mode = DSR_MODE_FIXED, .threads = threads};
  return dst_evaluate(model, test, 0, test->count, &eval, result, predictions, err);
}

static int compare_methods(const bench_args *args, dsr_model *model, const dst_dataset *train,
                           const dst_dataset *test) {
  ds_error err;
  ds_error_clear(&err);
  dst_eval_options float_eval = {.mode = DSR_MODE_FLOAT, .threads = args->threads};
  dst_eval_result float_result;
  if (dst_evaluate(model, test, 0, test->count, &float_eval, &float_result, NULL, &err) != DS_OK)
    return fail(&err);

  const dst_calibration_choice choices[] = {
      {DSQ_CALIBRATION_MINMAX, DSQ_PERCENTILE_DEFAULT, 0},
      {DSQ_CALIBRATION_PERCENTILE, 99.99, 0},
      {DSQ_CALIBRATION_MSE, DSQ_PERCENTILE_DEFAULT, 0},
      {DSQ_CALIBRATION_KL, DSQ_PERCENTILE_DEFAULT, DSQ_KL_BINS_DEFAULT},
  };
  printf("\n%s: %d calibration images (7 slice configurations), %d test images, %d threads\n",
         args->model, train->count, test->count, args->threads);
  printf("float top-1: %.2f%%\n\n", float_result.top1_percent);
  printf("| method | fixed-point top-1 | change against float | calibration and "
         "quantization s |\n|---|---|---|---|\n");
  for (size_t m = 0; m < sizeof choices / sizeof choices[0]; m++) {
    char method[64];
    double start_s = dst_now_s();
    if (dst_quantize_model(model, train, &choices[m], args->threads, method, sizeof method,
                           &err) != DS_OK)
      return fail(&err);
    double seconds = dst_now_s() - start_s;
    dst_eval_result result;
    if (fixed_top1(model, test, args->threads, NULL, &result, &err) != DS_OK)
      return fail(&err);
    printf("| %s | %.2f%% | %+.2f points | %.1f |\n", method, result.top1_percent,
           result.top1_percent - float_result.top1_percent, seconds);
    fflush(stdout);
  }
  return 0;
}

/* Sorts IDX image indices by (label, index): the order of an exported image folder. */
static const int32_t *sort_labels;
static int by_label_then_index(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  if (sort_labels[x] != sort_labels[y])
    return sort_labels[x] < sort_labels[y] ? -1 : 1;
  return x < y ? -1 : (x > y);
}

static int compare_folder(const bench_args *args, dsr_model *model, const dst_dataset *train,
                          const dst_dataset *idx_test) {
  ds_error err;
  ds_error_clear(&err);
  int32_t channels = 0, side = 0;
  if (dst_data_input_shape(model, &channels, &side, &err) != DS_OK)
    return fail(&err);
  dst_data_options options = {.folder = args->images, .format = DST_DATA_IMAGES,
                              .preprocess_path = args->preprocess};
  dst_dataset folder_test;
  double start_s = dst_now_s();
  if (dst_data_load(&options, DST_SPLIT_TEST, channels, side, 0, &folder_test, &err) != DS_OK)
    return fail(&err);
  double load_s = dst_now_s() - start_s;
  if (folder_test.count > idx_test->count) {
    fprintf(stderr, "bench_calibration: %s/test contains %d images, more than the %d IDX test "
                    "images loaded; pass --test %d\n",
            args->images, folder_test.count, idx_test->count, folder_test.count);
    return 1;
  }

  char method[64];
  const dst_calibration_choice choice = {DSQ_CALIBRATION_MINMAX, DSQ_PERCENTILE_DEFAULT, 0};
  if (dst_quantize_model(model, train, &choice, args->threads, method, sizeof method, &err) !=
      DS_OK)
    return fail(&err);

  const int32_t n = folder_test.count;
  int32_t *idx_predictions = malloc(sizeof(int32_t) * (size_t)idx_test->count);
  int32_t *folder_predictions = malloc(sizeof(int32_t) * (size_t)n);
  int32_t *order = malloc(sizeof(int32_t) * (size_t)n);
  dst_eval_result idx_result, folder_result;
  dst_eval_options eval = {.mode = DSR_MODE_FIXED, .threads = args->threads};
  if (idx_predictions == NULL || folder_predictions == NULL || order == NULL)
    return fprintf(stderr, "bench_calibration: out of memory\n"), 1;
  if (dst_evaluate(model, idx_test, 0, n, &eval, &idx_result, idx_predictions, &err) != DS_OK ||
      fixed_top1(model, &folder_test, args->threads, folder_predictions, &folder_result,
                 &err) != DS_OK)
    return fail(&err);

  for (int32_t i = 0; i < n; i++)
    order[i] = i;
  sort_labels = idx_test->labels;
  qsort(order, (size_t)n, sizeof *order, by_label_then_index);
  int32_t label_mismatches = 0, prediction_mismatches = 0;
  for (int32_t k = 0; k < n; k++) {
    label_mismatches += folder_test.labels[k] != idx_test->labels[order[k]];
    prediction_mismatches += folder_predictions[k] != idx_predictions[order[k]];
  }

  printf("\n%s, fixed point (%s calibration over %d training images from the IDX files)\n",
         args->model, method, train->count);
  printf("| source | images | top-1 | correct |\n|---|---|---|---|\n");
  printf("| IDX files, first %d test images | %d | %.2f%% | %d |\n", n, n,
         idx_result.top1_percent, idx_result.correct);
  printf("| image folder %s/test | %d | %.2f%% | %d |\n", args->images, n,
         folder_result.top1_percent, folder_result.correct);
  printf("\nlabels that differ: %d; predictions that differ, image by image: %d\n",
         label_mismatches, prediction_mismatches);
  printf("decoding and preprocessing %d images took %.2f s\n", n, load_s);
  free(idx_predictions);
  free(folder_predictions);
  free(order);
  dst_dataset_free(&folder_test);
  return label_mismatches == 0 && prediction_mismatches == 0 ? 0 : 3;
}

int main(int argc, char **argv) {
  bench_args args;
  if (!parse_args(argc, argv, &args)) {
    fprintf(stderr, "usage: bench_calibration MODEL.onnx [--test N] [--calibration N] "
                    "[--threads N] [--images DIR [--preprocess FILE]] [--data IDX_DIR]\n");
    return 2;
  }
  ds_error err;
  ds_error_clear(&err);
  dsr_model model = {0};
  if (dsc_import_file(args.model, NULL, &model, NULL, &err) != DS_OK)
    return fail(&err);
  int32_t channels = 0, side = 0;
  if (dst_data_input_shape(&model, &channels, &side, &err) != DS_OK)
    return fail(&err);

  dst_dataset train, test;
  if (dst_dataset_load(args.data, DST_SPLIT_TRAIN, side, args.calibration_images, &train,
                       &err) != DS_OK ||
      dst_dataset_load(args.data, DST_SPLIT_TEST, side, args.test_images, &test, &err) != DS_OK)
    return fail(&err);

  int status = args.images != NULL ? compare_folder(&args, &model, &train, &test)
                                   : compare_methods(&args, &model, &train, &test);
  dst_dataset_free(&train);
  dst_dataset_free(&test);
  ds_model_free(&model);
  return status;
}
