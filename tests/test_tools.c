/* The command line layer: data loading, option parsing and the compile pipeline. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/ds_file.h"
#include "tools/lib/dst_args.h"
#include "tools/lib/dst_data.h"

#define FIXTURES DS_SOURCE_DIR "/tests/fixtures"

static int have_fashion_mnist(void) {
  return access(DST_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", R_OK) == 0;
}

Test(data, test_split_matches_pytorch_resize) {
  if (!have_fashion_mnist())
    cr_skip_test("dataset-fashion-mnist is not installed");

  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_dataset_load(DST_FASHION_MNIST_DIR, DST_SPLIT_TEST, 32, 3, &data, &err), DS_OK,
               "%s", err.message);
  cr_assert_eq(data.count, 3);
  cr_assert_eq(data.labels[0], 9);
  cr_assert_eq(data.labels[1], 2);
  cr_assert_eq(data.labels[2], 1);

  uint8_t *expected = NULL;
  size_t size = 0;
  cr_assert_eq(ds_file_read_all(FIXTURES "/fashion_test3_32.f32", 1 << 20, &expected, &size, &err),
               DS_OK, "%s", err.message);
  cr_assert_eq(size, sizeof(float) * 3 * 32 * 32);

  float max_diff = 0.0f;
  for (int i = 0; i < 3 * 32 * 32; i++) {
    float want;
    memcpy(&want, expected + 4 * i, 4);
    float diff = fabsf(want - data.images[i]);
    if (diff > max_diff)
      max_diff = diff;
  }
  cr_expect_lt(max_diff, 1e-6f, "max abs difference %g against PyTorch's resize", max_diff);

  free(expected);
  dst_dataset_free(&data);
}

Test(data, validation_split_follows_training_split) {
  if (!have_fashion_mnist())
    cr_skip_test("dataset-fashion-mnist is not installed");

  dst_dataset validation;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_dataset_load(DST_FASHION_MNIST_DIR, DST_SPLIT_VALIDATION, 28, 0, &validation,
                                &err),
               DS_OK, "%s", err.message);
  cr_expect_eq(validation.count, 60000 - DST_VALIDATION_START);
  cr_expect_eq(validation.class_count, 10);
  dst_dataset_free(&validation);
}

Test(data, missing_folder_names_the_file) {
  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  ds_status status = dst_dataset_load("/nonexistent/fashion", DST_SPLIT_TEST, 32, 0, &data, &err);
  cr_assert_eq(status, DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "/nonexistent/fashion/t10k-images-idx3-ubyte.gz"), NULL, "%s",
                err.message);
  cr_expect_neq(strstr(err.message, "--data"), NULL, "the message should name the fix: %s",
                err.message);
  cr_expect_null(data.images);
}

/* Writes a gzip file of the given bytes. */
static void write_gz(const char *path, const void *bytes, unsigned size) {
  gzFile f = gzopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(gzwrite(f, bytes, size), (int)size);
  gzclose(f);
}

static char *make_temp_dir(void) {
  static char dir[64];
  snprintf(dir, sizeof dir, "/tmp/ds_tools_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  return dir;
}

Test(data, wrong_magic_is_rejected) {
  char *dir = make_temp_dir();
  char path[256];
  const uint8_t images[16] = {0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28};
  const uint8_t labels[9] = {0, 0, 8, 1, 0, 0, 0, 1, 3};
  snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
  write_gz(path, images, sizeof images);
  snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
  write_gz(path, labels, sizeof labels);

  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_dataset_load(dir, DST_SPLIT_TEST, 32, 0, &data, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "magic number 0x00000801"), NULL, "%s", err.message);
}

Test(data, truncated_images_are_rejected) {
  char *dir = make_temp_dir();
  char path[256];
  /* The header promises 2 images of 28x28 but only 100 pixel bytes follow. */
  uint8_t images[16 + 100] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28};
  const uint8_t labels[10] = {0, 0, 8, 1, 0, 0, 0, 2, 3, 4};
  snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
  write_gz(path, images, sizeof images);
  snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
  write_gz(path, labels, sizeof labels);

  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_dataset_load(dir, DST_SPLIT_TEST, 32, 0, &data, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "truncated"), NULL, "%s", err.message);
  cr_expect_null(data.images);
}

Test(data, label_count_mismatch_is_rejected) {
  char *dir = make_temp_dir();
  char path[256];
  uint8_t images[16 + 2 * 4] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2};
  const uint8_t labels[11] = {0, 0, 8, 1, 0, 0, 0, 3, 3, 4, 5};
  snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
  write_gz(path, images, sizeof images);
  snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
  write_gz(path, labels, sizeof labels);

  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_dataset_load(dir, DST_SPLIT_TEST, 2, 0, &data, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "3 labels for 2 images"), NULL, "%s", err.message);
}

Test(args, integer_out_of_range_names_the_option) {
  ds_error err;
  ds_error_clear(&err);
  int64_t value = 0;
  cr_assert_eq(dst_args_int("population", "2", 4, 100, &value, &err), DS_ERR_INVALID_ARGUMENT);
  cr_expect_neq(strstr(err.message, "--population '2'"), NULL, "%s", err.message);
  ds_error_clear(&err);
  cr_assert_eq(dst_args_int("population", "12x", 4, 100, &value, &err), DS_ERR_INVALID_ARGUMENT);
  cr_assert_eq(dst_args_int("population", "12", 4, 100, &value, &err), DS_OK);
  cr_expect_eq(value, 12);
}

Test(args, unknown_option_is_rejected) {
  const char *model = NULL;
  const dst_option options[] = {{"model", "FILE", "model", &model}};
  char *argv[] = {"--modle", "x.onnx"};
  const char *positional[1];
  int count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_args_parse(2, argv, 0, options, 1, positional, 0, &count, &help, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_neq(strstr(err.message, "--modle"), NULL, "%s", err.message);
}

Test(args, missing_value_is_rejected) {
  const char *model = NULL;
  const dst_option options[] = {{"model", "FILE", "model", &model}};
  char *argv[] = {"--model"};
  const char *positional[1];
  int count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_args_parse(1, argv, 0, options, 1, positional, 0, &count, &help, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_neq(strstr(err.message, "needs a value"), NULL, "%s", err.message);
}
