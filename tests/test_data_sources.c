/*
 * Data sources: JPEG and PNG decoding and preprocessing against PyTorch references
 * (tests/fixtures/images, written by tools/make_image_fixtures.py), the raw tensor format,
 * image folders, and bad input of each kind. The last tests run the deformslice command
 * end to end with KL calibration on a raw tensor folder.
 */
#define _XOPEN_SOURCE 700 /* nftw */

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/ds_file.h"
#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "tools/lib/dst_data.h"
#include "tools/lib/dst_eval.h"
#include "tools/lib/dst_image.h"
#include "tools/lib/dst_source.h"

#define IMAGES DS_SOURCE_DIR "/tests/fixtures/images"
#define TOOL DS_BINARY_DIR "/bin/deformslice"
#define FIXTURE_MODEL DS_SOURCE_DIR "/tests/fixtures/dat_pp_tiny.onnx"

static uint8_t *read_bytes(const char *path, size_t *size) {
  uint8_t *data = NULL;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(ds_file_read_all(path, 1 << 26, &data, size, &err), DS_OK, "%s", err.message);
  return data;
}

static void write_bytes(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "cannot write %s", path);
  cr_assert_eq(fwrite(data, 1, size, f), size);
  fclose(f);
}

static void write_text(const char *path, const char *text) {
  write_bytes(path, text, strlen(text));
}

static char *make_temp_dir(void) {
  char *dir = malloc(64);
  snprintf(dir, 64, "/tmp/ds_data_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  return dir;
}

static void make_dir(const char *path) {
  cr_assert(mkdir(path, 0755) == 0, "cannot create %s", path);
}

static int remove_entry(const char *path, const struct stat *info, int type, struct FTW *ftw) {
  (void)info;
  (void)type;
  (void)ftw;
  return remove(path);
}

/* Deletes dir and everything under it, for tests that write many files. */
static void remove_tree(const char *dir) {
  cr_expect_eq(nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0, "cannot delete %s", dir);
}

static void copy_file(const char *from, const char *to) {
  size_t size = 0;
  uint8_t *data = read_bytes(from, &size);
  write_bytes(to, data, size);
  free(data);
}

/* ---- Decoding and preprocessing against the PyTorch references ---- */

Test(image_decode, matches_pil_pixels) {
  static const char *const files[] = {"rgb_40x30.png", "gray_9x13.png", "rgba_12x10.png",
                                      "palette_8x8.png", "rgb_40x30.jpg", "gray_40x30.jpg"};
  static const int channels[] = {3, 1, 4, 3, 3, 1};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[512];
    snprintf(path, sizeof path, IMAGES "/%s", files[i]);
    dst_image image;
    ds_error err;
    ds_error_clear(&err);
    cr_assert_eq(dst_image_read_file(path, &image, &err), DS_OK, "%s", err.message);
    cr_expect_eq(image.channels, channels[i], "%s: %d channels", files[i], image.channels);

    snprintf(path, sizeof path, IMAGES "/decoded/%s.u8", files[i]);
    size_t size = 0;
    uint8_t *expected = read_bytes(path, &size);
    cr_assert_eq(size, (size_t)image.width * image.height * image.channels, "%s: %zu bytes",
                 files[i], size);
    int max_diff = 0;
    for (size_t p = 0; p < size; p++) {
      int diff = abs((int)expected[p] - (int)image.pixels[p]);
      max_diff = diff > max_diff ? diff : max_diff;
    }
    cr_expect_eq(max_diff, 0, "%s: largest difference %d from PIL's decoding", files[i],
                 max_diff);
    free(expected);
    dst_image_free(&image);
  }
}

Test(preprocess, matches_torch_references) {
  size_t size = 0;
  char *text = (char *)read_bytes(IMAGES "/cases.json", &size);
  cJSON *root = cJSON_ParseWithLength(text, size);
  free(text);
  cr_assert_not_null(root);
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
  cr_assert_geq(cJSON_GetArraySize(cases), 10);

  const cJSON *c;
  cJSON_ArrayForEach(c, cases) {
    const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
    const char *file = cJSON_GetObjectItemCaseSensitive(c, "image")->valuestring;
    int32_t channels = cJSON_GetObjectItemCaseSensitive(c, "channels")->valueint;
    int32_t side = cJSON_GetObjectItemCaseSensitive(c, "side")->valueint;
    char *settings = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(c, "preprocess"));

    ds_error err;
    ds_error_clear(&err);
    dst_preprocess pre;
    cr_assert_eq(dst_preprocess_parse(settings, strlen(settings), name, channels, side, &pre,
                                      &err),
                 DS_OK, "%s: %s", name, err.message);
    char path[512];
    snprintf(path, sizeof path, IMAGES "/%s", file);
    dst_image image;
    cr_assert_eq(dst_image_read_file(path, &image, &err), DS_OK, "%s", err.message);
    const size_t count = (size_t)channels * side * side;
    float *got = malloc(sizeof(float) * count);
    cr_assert_eq(dst_preprocess_apply(&pre, &image, file, got, &err), DS_OK, "%s: %s", name,
                 err.message);

    snprintf(path, sizeof path, IMAGES "/%s.f32", name);
    size_t bytes = 0;
    uint8_t *expected = read_bytes(path, &bytes);
    cr_assert_eq(bytes, sizeof(float) * count, "%s: %zu bytes", name, bytes);
    float max_diff = 0.0f;
    for (size_t i = 0; i < count; i++) {
      float want;
      memcpy(&want, expected + 4 * i, 4);
      float diff = fabsf(want - got[i]);
      max_diff = diff > max_diff ? diff : max_diff;
    }
    cr_expect_lt(max_diff, 2e-5f, "%s: largest difference %g from the torch reference", name,
                 max_diff);
    free(expected);
    free(got);
    dst_image_free(&image);
    cJSON_free(settings);
  }
  cJSON_Delete(root);
}

Test(preprocess, bilinear_plane_matches_square_resize) {
  float src[28 * 28], square[32 * 32], plane[32 * 32];
  for (int i = 0; i < 28 * 28; i++)
    src[i] = (float)((i * 37) % 255) / 255.0f;
  dst_resize_bilinear(src, 28, square, 32);
  dst_resize_bilinear_plane(src, 28, 28, plane, 32, 32);
  cr_expect_eq(memcmp(square, plane, sizeof square), 0,
               "the image-folder path must give the IDX path's floats bit for bit");
}

/* ---- Bad images ---- */

static ds_status decode_bytes(const uint8_t *data, size_t size, ds_error *err) {
  dst_image image;
  ds_status status = dst_image_decode(data, size, "bad.img", &image, err);
  dst_image_free(&image);
  return status;
}

Test(image_decode, every_truncation_is_an_error) {
  static const char *const files[] = {IMAGES "/rgba_12x10.png", IMAGES "/rgb_40x30.jpg",
                                      IMAGES "/palette_8x8.png"};
  for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
    size_t size = 0;
    uint8_t *data = read_bytes(files[f], &size);
    for (size_t cut = 0; cut < size; cut++) {
      uint8_t *copy = malloc(cut > 0 ? cut : 1);
      memcpy(copy, data, cut);
      ds_error err;
      ds_error_clear(&err);
      ds_status status = decode_bytes(copy, cut, &err);
      free(copy);
      cr_assert_eq(status, DS_ERR_DATA, "%s cut at %zu bytes: status %d", files[f], cut, status);
      cr_assert_neq(strstr(err.message, "bad.img"), NULL, "%s", err.message);
    }
    free(data);
  }
}

Test(image_decode, truncated_jpeg_names_the_file) {
  size_t size = 0;
  uint8_t *data = read_bytes(IMAGES "/rgb_40x30.jpg", &size);
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(decode_bytes(data, size / 2, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "bad.img: invalid or truncated JPEG"), NULL, "%s",
                err.message);
  free(data);
}

Test(image_decode, png_bad_crc_is_an_error) {
  size_t size = 0;
  uint8_t *data = read_bytes(IMAGES "/rgb_40x30.png", &size);
  /* IHDR: 8-byte signature, length (4), type (4), 13 data bytes, then the CRC at 29. */
  data[29] ^= 0x5A;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(decode_bytes(data, size, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "CRC"), NULL, "%s", err.message);
  data[29] ^= 0x5A;

  /* A flipped byte inside the IDAT data breaks the IDAT CRC. */
  data[size - 20] ^= 0x01;
  ds_error_clear(&err);
  cr_expect_eq(decode_bytes(data, size, &err), DS_ERR_DATA, "%s", err.message);
  free(data);
}

Test(image_decode, unknown_signature_rejected) {
  const uint8_t text[] = "GIF89a not supported";
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(decode_bytes(text, sizeof text, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "neither a PNG nor a JPEG"), NULL, "%s", err.message);
  ds_error_clear(&err);
  cr_expect_eq(decode_bytes(text, 0, &err), DS_ERR_DATA);
}

/* ---- Preprocessing settings ---- */

static ds_status parse_settings(const char *text, int32_t channels, int32_t side, ds_error *err) {
  dst_preprocess pre;
  ds_error_clear(err);
  return dst_preprocess_parse(text, strlen(text), "pre.json", channels, side, &pre, err);
}

Test(preprocess, defaults_and_valid_settings) {
  ds_error err;
  cr_expect_eq(parse_settings("{}", 1, 32, &err), DS_OK, "%s", err.message);
  cr_expect_eq(parse_settings("{\"resize\": 256, \"crop\": 224, \"antialias\": true, \"color\": "
                              "\"bgr\", \"mean\": [0.485, 0.456, 0.406], \"std\": 0.2, "
                              "\"alpha\": \"blend\", \"background\": [0, 0, 0]}",
                              3, 224, &err),
               DS_OK, "%s", err.message);
}

Test(preprocess, every_problem_named_with_key_and_value) {
  ds_error err;
  cr_expect_eq(parse_settings("{\"mena\": [0.5], \"resize\": -3, \"color\": \"rgb\", "
                              "\"std\": [1, 0, 1]}",
                              1, 32, &err),
               DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "4 problems"), NULL, "%s", err.message);
  cr_expect_neq(strstr(err.message, "key \"mena\" = [0.5]: unknown key"), NULL, "%s",
                err.message);
  cr_expect_neq(strstr(err.message, "key \"resize\" = -3"), NULL, "%s", err.message);
  cr_expect_neq(strstr(err.message, "key \"color\" = \"rgb\": the model input has 1 channel"),
                NULL, "%s", err.message);
  cr_expect_neq(strstr(err.message, "key \"std\" = [1,0,1]"), NULL, "%s", err.message);
}

Test(preprocess, settings_that_do_not_fit_the_model) {
  ds_error err;
  cr_expect_eq(parse_settings("{\"crop\": 224}", 3, 32, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "must be 32"), NULL, "%s", err.message);
  cr_expect_eq(parse_settings("{\"mean\": [0.1, 0.2]}", 3, 32, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "key \"mean\""), NULL, "%s", err.message);
  cr_expect_eq(parse_settings("{\"resize\": 16}", 1, 32, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "at least the crop, 32"), NULL, "%s", err.message);
  cr_expect_eq(parse_settings("{\"color\": \"gray\"}", 3, 32, &err), DS_ERR_DATA);
  cr_expect_eq(parse_settings("{\"antialias\": \"yes\"}", 1, 32, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "expected true or false"), NULL, "%s", err.message);
  cr_expect_eq(parse_settings("{\"resize\": 40, \"resize\": 40}", 1, 32, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "given twice"), NULL, "%s", err.message);
  cr_expect_eq(parse_settings("{}", 2, 32, &err), DS_ERR_SHAPE);
}

Test(preprocess, invalid_json_rejected) {
  ds_error err;
  cr_expect_eq(parse_settings("{\"resize\": ", 1, 32, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "invalid JSON"), NULL, "%s", err.message);
  cr_expect_eq(parse_settings("[1, 2]", 1, 32, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "expected a JSON object"), NULL, "%s", err.message);
}

Test(preprocess, image_smaller_than_crop) {
  dst_image image;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_image_read_file(IMAGES "/gray_9x13.png", &image, &err), DS_OK);
  dst_preprocess pre;
  cr_assert_eq(dst_preprocess_parse("{\"resize\": 0}", 13, "pre.json", 1, 10, &pre, &err),
               DS_OK, "%s", err.message);
  float out[100];
  cr_expect_eq(dst_preprocess_apply(&pre, &image, "small.png", out, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "small.png: the image is 9x13"), NULL, "%s", err.message);
  dst_image_free(&image);
}

/* ---- Raw tensors ---- */

/* Writes split_folder/tensors.json (header text), data and, unless labels is NULL, uint8
 * labels to labels.u8. */
static void write_raw(const char *split_folder, const char *header, const void *data,
                      size_t data_bytes, const uint8_t *labels, size_t label_count) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tensors.json", split_folder);
  write_text(path, header);
  snprintf(path, sizeof path, "%s/images.bin", split_folder);
  write_bytes(path, data, data_bytes);
  if (labels == NULL)
    return;
  snprintf(path, sizeof path, "%s/labels.u8", split_folder);
  write_bytes(path, labels, label_count);
}

#define RAW_HEADER(count, shape, dtype, extra)                                             \
  "{\"format\": \"deformslice-raw-tensors\", \"version\": 1, \"count\": " count              \
  ", \"shape\": " shape ", \"dtype\": \"" dtype "\", \"data\": \"images.bin\", "          \
  "\"labels\": \"labels.u8\"" extra "}"

Test(raw_tensors, float32_round_trip) {
  char *dir = make_temp_dir();
  float values[3 * 2 * 4 * 4];
  for (int i = 0; i < 3 * 2 * 4 * 4; i++)
    values[i] = (float)i * 0.25f - 3.0f;
  const uint8_t labels[3] = {7, 0, 2};
  write_raw(dir, RAW_HEADER("3", "[2, 4, 4]", "float32", ""), values, sizeof values, labels, 3);

  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_raw_load(dir, 2, 4, 0, &data, &err), DS_OK, "%s", err.message);
  cr_expect_eq(data.count, 3);
  cr_expect_eq(data.channels, 2);
  cr_expect_eq(data.class_count, 8);
  cr_expect_eq(memcmp(data.images, values, sizeof values), 0);
  for (int i = 0; i < 3; i++)
    cr_expect_eq(data.labels[i], labels[i], "label %d: %d", i, data.labels[i]);
  dst_dataset_free(&data);

  cr_assert_eq(dst_raw_load(dir, 2, 4, 2, &data, &err), DS_OK, "%s", err.message);
  cr_expect_eq(data.count, 2, "the limit keeps the first samples");
  dst_dataset_free(&data);
  free(dir);
}

Test(raw_tensors, uint8_with_scale) {
  char *dir = make_temp_dir();
  uint8_t values[2 * 9];
  for (int i = 0; i < 18; i++)
    values[i] = (uint8_t)(i * 10);
  const uint8_t labels[2] = {1, 1};
  write_raw(dir, RAW_HEADER("2", "[1, 3, 3]", "uint8", ", \"scale\": 0.5, \"offset\": -1"),
            values, sizeof values, labels, 2);
  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_raw_load(dir, 1, 3, 0, &data, &err), DS_OK, "%s", err.message);
  for (int i = 0; i < 18; i++)
    cr_expect_float_eq(data.images[i], values[i] * 0.5f - 1.0f, 1e-6f, "element %d", i);
  dst_dataset_free(&data);
  free(dir);
}

/* Expects dst_raw_load of dir to fail with DS_ERR_DATA and a message containing needle. */
static void expect_raw_error(const char *dir, int32_t channels, int32_t side,
                             const char *needle) {
  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dst_raw_load(dir, channels, side, 0, &data, &err), DS_ERR_DATA, "no error for %s",
               needle);
  cr_expect_neq(strstr(err.message, needle), NULL, "expected '%s' in: %s", needle, err.message);
}

Test(raw_tensors, bad_headers_and_sizes) {
  char *dir = make_temp_dir();
  float values[2 * 16] = {0};
  const uint8_t labels[3] = {0, 1, 2};

  write_raw(dir, RAW_HEADER("2", "[1, 4, 4]", "float32", ""), values, sizeof values, labels, 2);
  expect_raw_error(dir, 1, 8, "the model input takes [1, 8, 8]");
  expect_raw_error(dir, 3, 4, "samples of shape [1, 4, 4]");

  write_raw(dir, RAW_HEADER("3", "[1, 4, 4]", "float32", ""), values, sizeof values, labels, 3);
  expect_raw_error(dir, 1, 4, "128 bytes, but the header's count and shape give 192 bytes");

  write_raw(dir, RAW_HEADER("2", "[1, 4, 4]", "float32", ""), values, sizeof values, labels, 1);
  expect_raw_error(dir, 1, 4, "labels.u8: 1 bytes, but");

  write_raw(dir, RAW_HEADER("2", "[1, 4, 4]", "float64", ""), values, sizeof values, labels, 2);
  expect_raw_error(dir, 1, 4, "\"dtype\" must be");

  write_raw(dir, RAW_HEADER("2", "[1, 4]", "float32", ""), values, sizeof values, labels, 2);
  expect_raw_error(dir, 1, 4, "\"shape\" must be [channels, height, width]");

  write_raw(dir, RAW_HEADER("2", "[1, 4, 4]", "float32", ", \"lables\": 3"), values,
            sizeof values, labels, 2);
  expect_raw_error(dir, 1, 4, "unknown key \"lables\"");

  write_raw(dir, RAW_HEADER("-1", "[1, 4, 4]", "float32", ""), values, sizeof values, labels, 2);
  expect_raw_error(dir, 1, 4, "\"count\" must be an integer");

  char path[512];
  snprintf(path, sizeof path, "%s/tensors.json", dir);
  write_text(path, "{\"format\": \"deformslice-raw-tensors\", \"version\": 2}");
  expect_raw_error(dir, 1, 4, "\"version\" must be 1");
  write_text(path, "{\"format\": \"deformslice-raw-tensors\", \"version\": 1, \"count\": 2, "
                   "\"shape\": [1, 4, 4], \"dtype\": \"float32\", \"data\": \"../images.bin\", "
                   "\"labels\": \"labels.u8\"}");
  expect_raw_error(dir, 1, 4, "\"data\" must be the name of a file in the same folder");
  write_text(path, "not json");
  expect_raw_error(dir, 1, 4, "not a JSON object");

  values[5] = NAN;
  write_raw(dir, RAW_HEADER("2", "[1, 4, 4]", "float32", ""), values, sizeof values, labels, 2);
  expect_raw_error(dir, 1, 4, "sample 0 element 5 is not a finite number");
  free(dir);
}

/* Writes labels as int32 little-endian to split_folder/name. */
static void write_int32_labels(const char *split_folder, const char *name,
                               const int32_t *labels, size_t count) {
  uint8_t *bytes = malloc(4 * count + 1);
  cr_assert_not_null(bytes);
  for (size_t i = 0; i < count; i++) {
    const uint32_t bits = (uint32_t)labels[i];
    for (int b = 0; b < 4; b++)
      bytes[4 * i + (size_t)b] = (uint8_t)(bits >> (8 * b));
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", split_folder, name);
  write_bytes(path, bytes, 4 * count);
  free(bytes);
}

#define RAW_INT32_HEADER(count, labels_dtype)                                               \
  "{\"format\": \"deformslice-raw-tensors\", \"version\": 1, \"count\": " count              \
  ", \"shape\": [1, 2, 2], \"dtype\": \"uint8\", \"data\": \"images.bin\", "               \
  "\"labels\": \"labels.i32\", \"labels_dtype\": \"" labels_dtype "\"}"

Test(raw_tensors, int32_labels_round_trip) {
  char *dir = make_temp_dir();
  const uint8_t values[4 * 4] = {0};
  const int32_t labels[4] = {999, 0, 300, 65535};
  write_raw(dir, RAW_INT32_HEADER("4", "int32"), values, sizeof values, NULL, 0);
  write_int32_labels(dir, "labels.i32", labels, 4);

  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_raw_load(dir, 1, 2, 0, &data, &err), DS_OK, "%s", err.message);
  cr_expect_eq(data.count, 4);
  for (int i = 0; i < 4; i++)
    cr_expect_eq(data.labels[i], labels[i], "label %d: %d", i, data.labels[i]);
  cr_expect_eq(data.class_count, 65536);
  cr_expect_neq(strstr(data.label_source, "labels.i32"), NULL, "%s", data.label_source);
  dst_dataset_free(&data);

  /* "uint8" names the default: the same file then holds 16 one-byte labels. */
  write_raw(dir, RAW_INT32_HEADER("16", "uint8"), (const uint8_t[16 * 4]){0}, 16 * 4, NULL, 0);
  write_int32_labels(dir, "labels.i32", labels, 4);
  cr_assert_eq(dst_raw_load(dir, 1, 2, 0, &data, &err), DS_OK, "%s", err.message);
  cr_expect_eq(data.labels[0], 999 & 0xff, "first byte of 999: %d", data.labels[0]);
  cr_expect_eq(data.labels[1], 999 >> 8, "second byte of 999: %d", data.labels[1]);
  dst_dataset_free(&data);
  free(dir);
}

Test(raw_tensors, bad_int32_labels) {
  char *dir = make_temp_dir();
  const uint8_t values[2 * 4] = {0};
  const int32_t labels[2] = {1, -3};

  write_raw(dir, RAW_INT32_HEADER("2", "int64"), values, sizeof values, NULL, 0);
  write_int32_labels(dir, "labels.i32", labels, 2);
  expect_raw_error(dir, 1, 2, "\"labels_dtype\" must be \"uint8\" (the default) or \"int32\"");

  write_raw(dir, RAW_INT32_HEADER("2", "int32"), values, sizeof values, NULL, 0);
  write_int32_labels(dir, "labels.i32", labels, 1);
  expect_raw_error(dir, 1, 2, "labels.i32: 4 bytes, but the header's count and shape give 8 "
                              "bytes of int32 labels");

  write_int32_labels(dir, "labels.i32", labels, 2);
  expect_raw_error(dir, 1, 2, "labels.i32: label -3 of sample 1 is outside [0, 1048576)");

  const int32_t huge[2] = {0, DST_MAX_CLASSES};
  write_int32_labels(dir, "labels.i32", huge, 2);
  expect_raw_error(dir, 1, 2, "label 1048576 of sample 1 is outside");
  free(dir);
}

/* ---- Image folders ---- */

/* dir/test/{a_shirt, b_shoe} with PNG and JPEG files, a nested folder and a text file. */
static void make_image_folder(const char *dir) {
  char path[512], target[512];
  snprintf(path, sizeof path, "%s/test", dir);
  make_dir(path);
  snprintf(path, sizeof path, "%s/test/b_shoe", dir);
  make_dir(path);
  snprintf(path, sizeof path, "%s/test/a_shirt", dir);
  make_dir(path);
  snprintf(path, sizeof path, "%s/test/a_shirt/nested", dir);
  make_dir(path);

  snprintf(target, sizeof target, "%s/test/a_shirt/one.png", dir);
  copy_file(IMAGES "/rgb_40x30.png", target);
  snprintf(target, sizeof target, "%s/test/a_shirt/nested/two.JPG", dir);
  copy_file(IMAGES "/rgb_40x30.jpg", target);
  snprintf(target, sizeof target, "%s/test/a_shirt/notes.txt", dir);
  write_text(target, "not an image");
  snprintf(target, sizeof target, "%s/test/b_shoe/three.png", dir);
  copy_file(IMAGES "/gray_9x13.png", target);
  snprintf(target, sizeof target, "%s/test/b_shoe/four.jpeg", dir);
  copy_file(IMAGES "/gray_40x30.jpg", target);
}

Test(image_folder, labels_follow_sorted_class_folders) {
  char *dir = make_temp_dir();
  make_image_folder(dir);
  dst_data_options options = {.folder = dir, .format = DST_DATA_AUTO};
  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_data_load(&options, DST_SPLIT_TEST, 1, 8, 0, &data, &err), DS_OK, "%s",
               err.message);
  cr_expect_eq(data.count, 4, "the text file is ignored");
  cr_expect_eq(data.class_count, 2);
  const int32_t labels[4] = {0, 0, 1, 1};
  cr_expect_eq(memcmp(data.labels, labels, sizeof labels), 0);

  /* The first image is a_shirt/one.png, with the default preprocessing. */
  dst_image image;
  dst_preprocess pre;
  float expected[64];
  cr_assert_eq(dst_image_read_file(IMAGES "/rgb_40x30.png", &image, &err), DS_OK);
  dst_preprocess_default(1, 8, &pre);
  cr_assert_eq(dst_preprocess_apply(&pre, &image, "one.png", expected, &err), DS_OK);
  cr_expect_eq(memcmp(data.images, expected, sizeof expected), 0);
  dst_image_free(&image);
  dst_dataset_free(&data);

  /* A limit takes an evenly spaced subset, so both classes stay. */
  cr_assert_eq(dst_data_load(&options, DST_SPLIT_TEST, 1, 8, 2, &data, &err), DS_OK, "%s",
               err.message);
  cr_expect_eq(data.count, 2);
  cr_expect_eq(data.labels[0], 0);
  cr_expect_eq(data.labels[1], 1);
  dst_dataset_free(&data);
  free(dir);
}

Test(image_folder, corrupt_file_fails_or_is_skipped) {
  char *dir = make_temp_dir();
  make_image_folder(dir);
  char path[512];
  snprintf(path, sizeof path, "%s/test/b_shoe/five.jpg", dir);
  size_t size = 0;
  uint8_t *jpeg = read_bytes(IMAGES "/rgb_40x30.jpg", &size);
  write_bytes(path, jpeg, size / 3);
  free(jpeg);

  dst_data_options options = {.folder = dir, .format = DST_DATA_IMAGES};
  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dst_data_load(&options, DST_SPLIT_TEST, 3, 8, 0, &data, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "b_shoe/five.jpg: invalid or truncated JPEG"), NULL, "%s",
                err.message);

  options.skip_corrupt = 1;
  ds_error_clear(&err);
  cr_assert_eq(dst_data_load(&options, DST_SPLIT_TEST, 3, 8, 0, &data, &err), DS_OK, "%s",
               err.message);
  cr_expect_eq(data.count, 4, "the truncated file is skipped");
  cr_expect_eq(data.channels, 3);
  dst_dataset_free(&data);
  free(dir);
}

Test(image_folder, bad_layouts_rejected) {
  char *dir = make_temp_dir();
  dst_data_options options = {.folder = dir, .format = DST_DATA_AUTO};
  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dst_data_load(&options, DST_SPLIT_TEST, 1, 8, 0, &data, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "cannot tell the data format"), NULL, "%s", err.message);

  char path[512];
  snprintf(path, sizeof path, "%s/test", dir);
  make_dir(path);
  cr_expect_eq(dst_data_load(&options, DST_SPLIT_TEST, 1, 8, 0, &data, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "no class folders"), NULL, "%s", err.message);
  snprintf(path, sizeof path, "%s/test/empty_class", dir);
  make_dir(path);
  cr_expect_eq(dst_data_load(&options, DST_SPLIT_TEST, 1, 8, 0, &data, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "empty_class: no .jpg, .jpeg or .png file"), NULL, "%s",
                err.message);

  options.format = DST_DATA_IDX;
  cr_expect_eq(dst_data_load(&options, DST_SPLIT_TEST, 3, 8, 0, &data, &err), DS_ERR_SHAPE);
  cr_expect_neq(strstr(err.message, "IDX files hold single-channel images"), NULL, "%s",
                err.message);
  options.format = DST_DATA_RAW;
  cr_expect_eq(dst_data_load(&options, DST_SPLIT_VALIDATION, 1, 8, 0, &data, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "no val or validation subfolder"), NULL, "%s", err.message);
  options.format = DST_DATA_AUTO;
  ds_error_clear(&err);
  cr_expect_eq(dst_data_load(&options, DST_SPLIT_VALIDATION, 1, 8, 0, &data, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "no val or validation subfolder"), NULL, "%s", err.message);
  cr_expect_eq(strstr(err.message, "cannot tell the data format"), NULL, "%s", err.message);

  char missing[600];
  snprintf(missing, sizeof missing, "%s/no_such_folder", dir);
  dst_data_options absent = {.folder = missing, .format = DST_DATA_AUTO};
  ds_error_clear(&err);
  cr_expect_eq(dst_data_load(&absent, DST_SPLIT_TEST, 1, 8, 0, &data, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "no_such_folder: the folder does not exist"), NULL, "%s",
                err.message);

  dst_data_args args = {dir, "jpeg", NULL, NULL};
  cr_expect_eq(dst_data_options_parse(&args, &options, &err), DS_ERR_INVALID_ARGUMENT);
  cr_expect_neq(strstr(err.message, "--data-format 'jpeg'"), NULL, "%s", err.message);
  free(dir);
}

Test(image_folder, preprocess_with_other_formats_rejected) {
  char *dir = make_temp_dir();
  dst_data_options options = {.folder = dir, .format = DST_DATA_IDX,
                              .preprocess_path = "prep.json"};
  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dst_data_load(&options, DST_SPLIT_TEST, 1, 8, 0, &data, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_neq(strstr(err.message, "applies to image folders only"), NULL, "%s", err.message);
  cr_expect_neq(strstr(err.message, "IDX"), NULL, "%s", err.message);
  options.format = DST_DATA_RAW;
  ds_error_clear(&err);
  cr_expect_eq(dst_data_load(&options, DST_SPLIT_TEST, 1, 8, 0, &data, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_neq(strstr(err.message, "raw tensor"), NULL, "%s", err.message);
  remove_tree(dir);
  free(dir);
}

/* ---- The command end to end ---- */

/* Writes a side x side 8-bit gray PNG with every pixel equal to value. */
static void write_gray_png(const char *path, int side, uint8_t value) {
  png_image image;
  memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = (png_uint_32)side;
  image.height = (png_uint_32)side;
  image.format = PNG_FORMAT_GRAY;
  uint8_t pixels[16];
  cr_assert_leq(side * side, (int)sizeof pixels);
  memset(pixels, value, sizeof pixels);
  cr_assert(png_image_write_to_file(&image, path, 0, pixels, 0, NULL), "cannot write %s: %s",
            path, image.message);
}

#define MANY_CLASSES 300

/* dir/test/c000 .. c299, each with one 2x2 PNG whose pixels are the class index mod 256. */
static void make_many_class_folder(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/test", dir);
  make_dir(path);
  for (int c = 0; c < MANY_CLASSES; c++) {
    snprintf(path, sizeof path, "%s/test/c%03d", dir, c);
    make_dir(path);
    snprintf(path, sizeof path, "%s/test/c%03d/image.png", dir, c);
    write_gray_png(path, 2, (uint8_t)(c % 256));
  }
}

Test(image_folder, more_than_256_classes) {
  char *dir = make_temp_dir();
  make_many_class_folder(dir);
  dst_data_options options = {.folder = dir, .format = DST_DATA_IMAGES};
  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_data_load(&options, DST_SPLIT_TEST, 1, 2, 0, &data, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(data.count, MANY_CLASSES);
  cr_expect_eq(data.class_count, MANY_CLASSES);
  for (int i = 0; i < MANY_CLASSES; i++) {
    cr_expect_eq(data.labels[i], i, "image %d has label %d", i, data.labels[i]);
    cr_expect_float_eq(data.images[4 * i], (float)(i % 256) / 255.0f, 1e-6f,
                       "image %d is not the one of class folder c%03d", i, i);
  }
  cr_expect_eq(dst_dataset_check_labels(&data, MANY_CLASSES, &err), DS_OK, "%s", err.message);
  dst_dataset_free(&data);

  /* An evenly spaced subset keeps the labels of the images it picks. */
  cr_assert_eq(dst_data_load(&options, DST_SPLIT_TEST, 1, 2, 30, &data, &err), DS_OK, "%s",
               err.message);
  cr_assert_eq(data.count, 30);
  for (int k = 0; k < 30; k++)
    cr_expect_eq(data.labels[k], 10 * k, "subset image %d has label %d", k, data.labels[k]);
  dst_dataset_free(&data);
  remove_tree(dir);
  free(dir);
}

Test(labels, beyond_model_classes_rejected) {
  char *dir = make_temp_dir();
  const uint8_t values[3 * 4] = {0};
  const int32_t labels[3] = {0, 999, 1000};
  write_raw(dir, RAW_INT32_HEADER("3", "int32"), values, sizeof values, NULL, 0);
  write_int32_labels(dir, "labels.i32", labels, 3);
  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_raw_load(dir, 1, 2, 0, &data, &err), DS_OK, "%s", err.message);
  cr_expect_eq(dst_dataset_check_labels(&data, 1001, &err), DS_OK, "%s", err.message);
  cr_expect_eq(dst_dataset_check_labels(&data, 1000, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "labels.i32: label 1000 of sample 2 is outside [0, 1000)"),
                NULL, "%s", err.message);
  dst_dataset_free(&data);

  /* A subset of an image folder with 300 class folders still has 300 classes. */
  make_many_class_folder(dir);
  dst_data_options options = {.folder = dir, .format = DST_DATA_IMAGES};
  cr_assert_eq(dst_data_load(&options, DST_SPLIT_TEST, 1, 2, 2, &data, &err), DS_OK, "%s",
               err.message);
  cr_expect_eq(dst_dataset_check_labels(&data, 200, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "/test: 300 classes, but the model has 200 outputs"), NULL,
                "%s", err.message);
  cr_expect_eq(dst_dataset_check_labels(&data, 100, &err), DS_ERR_DATA);
  cr_expect_neq(strstr(err.message, "/test: label 150 of sample 1 is outside [0, 100)"), NULL,
                "%s", err.message);
  dst_dataset_free(&data);
  remove_tree(dir);
  free(dir);
}

Test(labels, evaluate_rejects_label_beyond_outputs) {
  dsr_model model = {0};
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dsc_import_file(FIXTURE_MODEL, NULL, &model, NULL, &err), DS_OK, "%s",
               err.message);
  int32_t channels = 0, side = 0;
  cr_assert_eq(dst_data_input_shape(&model, &channels, &side, &err), DS_OK, "%s", err.message);
  const int64_t classes = dsr_tensor_elements(&model.tensors[model.output]);

  char *dir = make_temp_dir();
  char header[512];
  snprintf(header, sizeof header,
           "{\"format\": \"deformslice-raw-tensors\", \"version\": 1, \"count\": 2, "
           "\"shape\": [%d, %d, %d], \"dtype\": \"uint8\", \"data\": \"images.bin\", "
           "\"labels\": \"labels.i32\", \"labels_dtype\": \"int32\"}",
           channels, side, side);
  const size_t sample_bytes = (size_t)channels * (size_t)side * (size_t)side;
  uint8_t *values = calloc(2 * sample_bytes, 1);
  write_raw(dir, header, values, 2 * sample_bytes, NULL, 0);
  const int32_t labels[2] = {0, (int32_t)classes};
  write_int32_labels(dir, "labels.i32", labels, 2);

  dst_dataset data;
  cr_assert_eq(dst_raw_load(dir, channels, side, 0, &data, &err), DS_OK, "%s", err.message);
  dst_eval_options eval = {.mode = DSR_MODE_FLOAT, .threads = 1};
  dst_eval_result result;
  int32_t predictions[2];
  cr_expect_eq(dst_evaluate(&model, &data, 0, 2, &eval, &result, predictions, &err),
               DS_ERR_DATA);
  char expected[128];
  snprintf(expected, sizeof expected, "labels.i32: label %lld of sample 1 is outside [0, %lld)",
           (long long)classes, (long long)classes);
  cr_expect_neq(strstr(err.message, expected), NULL, "expected '%s' in: %s", expected,
                err.message);

  /* With the label in range the same data evaluates. */
  data.labels[1] = (int32_t)classes - 1;
  data.class_count = (int32_t)classes;
  ds_error_clear(&err);
  cr_expect_eq(dst_evaluate(&model, &data, 0, 2, &eval, &result, predictions, &err), DS_OK, "%s",
               err.message);
  cr_expect_eq(result.count, 2);

  dst_dataset_free(&data);
  ds_model_free(&model);
  free(values);
  remove_tree(dir);
  free(dir);
}

static int have_fashion_mnist(void) {
  return access(DST_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) == 0;
}

static int run_tool(const char *command, char *output, size_t output_bytes) {
  char line[8192];
  snprintf(line, sizeof line, "%s 2>&1", command);
  FILE *pipe = popen(line, "r");
  cr_assert_not_null(pipe, "cannot run %s", command);
  size_t used = fread(output, 1, output_bytes - 1, pipe);
  output[used] = '\0';
  int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Writes limit images of an IDX split at side x side as a raw tensor split folder, with
 * int32 labels taken modulo 4 because the fixture model has 4 outputs. */
static void write_raw_split(const char *dir, const char *name, dst_split split, int32_t side,
                            int32_t limit) {
  dst_dataset data;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_dataset_load(DST_FASHION_MNIST_DIR, split, side, limit, &data, &err), DS_OK,
               "%s", err.message);
  char folder[512], header[512];
  snprintf(folder, sizeof folder, "%s/%s", dir, name);
  make_dir(folder);
  snprintf(header, sizeof header,
           "{\"format\": \"deformslice-raw-tensors\", \"version\": 1, \"count\": %d, "
           "\"shape\": [1, %d, %d], \"dtype\": \"float32\", \"data\": \"images.bin\", "
           "\"labels\": \"labels.i32\", \"labels_dtype\": \"int32\"}",
           data.count, side, side);
  write_raw(folder, header, data.images, sizeof(float) * (size_t)data.count * side * side, NULL,
            0);
  for (int32_t i = 0; i < data.count; i++)
    data.labels[i] %= 4;
  write_int32_labels(folder, "labels.i32", data.labels, (size_t)data.count);
  dst_dataset_free(&data);
}

/* Writes the Fashion-MNIST test split into dir as IDX files with labels modulo 4: a link to
 * the installed image file and a plain label file. */
static void write_four_class_idx_test(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
  cr_assert_eq(symlink(DST_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", path), 0,
               "cannot link %s", path);
  gzFile in = gzopen(DST_FASHION_MNIST_DIR "/t10k-labels-idx1-ubyte.gz", "rb");
  cr_assert_not_null(in);
  static uint8_t bytes[8 + 10000];
  int size = gzread(in, bytes, sizeof bytes);
  gzclose(in);
  cr_assert_eq(size, (int)sizeof bytes);
  for (int i = 8; i < size; i++)
    bytes[i] %= 4;
  snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", dir);
  write_bytes(path, bytes, sizeof bytes);
}

Test(cli_data, compile_kl_on_raw_tensors, .timeout = 600) {
  if (!have_fashion_mnist())
    cr_skip_test("dataset-fashion-mnist is not installed");

  char *data = make_temp_dir();
  char *out = make_temp_dir();
  write_raw_split(data, "train", DST_SPLIT_TRAIN, 16, 30);
  write_raw_split(data, "val", DST_SPLIT_VALIDATION, 16, 40);
  write_raw_split(data, "test", DST_SPLIT_TEST, 16, 60);

  static char output[1 << 16];
  char command[4096];
  snprintf(command, sizeof command,
           TOOL " compile --model " FIXTURE_MODEL " --data %s --calibration kl"
                " --histogram-bins 1024 --calibration-images 30 --search-images 40"
                " --test-images 60 --population 4 --generations 0 --threads 2 --out %s",
           data, out);
  cr_assert_eq(run_tool(command, output, sizeof output), 0, "compile failed:\n%s", output);
  cr_expect_neq(strstr(output, "from raw "), NULL, "the source is not named:\n%s", output);
  cr_expect_neq(strstr(output, "kl, 1024 bins calibration"), NULL, "%s", output);

  char path[512];
  snprintf(path, sizeof path, "%s/report.json", out);
  size_t size = 0;
  char *text = (char *)read_bytes(path, &size);
  cJSON *report = cJSON_ParseWithLength(text, size);
  free(text);
  const cJSON *calibration = cJSON_GetObjectItemCaseSensitive(report, "calibration");
  const cJSON *method = cJSON_GetObjectItemCaseSensitive(calibration, "method");
  const cJSON *bins = cJSON_GetObjectItemCaseSensitive(calibration, "histogram_bins");
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(calibration, "histogram");
  cr_assert(cJSON_IsString(method) && strcmp(method->valuestring, "kl") == 0,
            "calibration.method is not \"kl\"");
  cr_expect(cJSON_IsNumber(bins) && bins->valueint == 1024, "calibration.histogram_bins");
  cr_expect(cJSON_IsString(kind) && strcmp(kind->valuestring, "linear") == 0);
  const cJSON *source = cJSON_GetObjectItemCaseSensitive(calibration, "data");
  cr_expect(cJSON_IsString(source) && strncmp(source->valuestring, "raw ", 4) == 0,
            "calibration.data does not name the raw tensor source");
  cJSON_Delete(report);

  /* The raw test split contains the first 60 IDX test images: both give the same top-1. */
  static char raw_output[1 << 14], idx_output[1 << 14];
  snprintf(command, sizeof command, TOOL " run %s/model.dslice --data %s --threads 2", out,
           data);
  cr_assert_eq(run_tool(command, raw_output, sizeof raw_output), 0, "%s", raw_output);
  char *idx = make_temp_dir();
  write_four_class_idx_test(idx);
  snprintf(command, sizeof command, TOOL " run %s/model.dslice --data %s --limit 60 --threads 2",
           out, idx);
  cr_assert_eq(run_tool(command, idx_output, sizeof idx_output), 0, "%s", idx_output);
  const char *raw_top1 = strstr(raw_output, "on 60 test images");
  const char *idx_top1 = strstr(idx_output, "on 60 test images");
  cr_assert(raw_top1 != NULL && idx_top1 != NULL, "%s\n%s", raw_output, idx_output);
  cr_expect_eq(strcmp(raw_top1, idx_top1), 0, "raw: %s\nidx: %s", raw_top1, idx_top1);
  remove_tree(idx);
  free(idx);
  free(data);
  free(out);
}

Test(cli_data, bad_data_options_rejected) {
  static char output[1 << 14];
  cr_expect_eq(run_tool(TOOL " run x.dslice --data-format tiff", output, sizeof output), 2);
  cr_expect_neq(strstr(output, "--data-format 'tiff'"), NULL, "%s", output);
  cr_expect_eq(run_tool(TOOL " compile --calibration kl --histogram-bins 1001", output,
                        sizeof output),
               2);
  cr_expect_neq(strstr(output, "--histogram-bins '1001' is odd"), NULL, "%s", output);
  cr_expect_eq(run_tool(TOOL " audit --calibration kl --histogram-bins 64", output,
                        sizeof output),
               2);
  cr_expect_neq(strstr(output, "--histogram-bins '64'"), NULL, "%s", output);
}

/* A non-square model input is rejected with the shape and a square size to use instead. */
Test(sources, non_square_input_names_fix) {
  dsr_tensor input;
  memset(&input, 0, sizeof input);
  snprintf(input.name, sizeof input.name, "input");
  input.rank = 4;
  int32_t dims[4] = {1, 3, 8, 12};
  memcpy(input.dims, dims, sizeof dims);
  dsr_model model;
  memset(&model, 0, sizeof model);
  model.tensors = &input;
  model.tensor_count = 1;
  model.input = 0;

  int32_t channels = 0, side = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_data_input_shape(&model, &channels, &side, &err), DS_ERR_SHAPE);
  cr_expect(strstr(err.message, "(1, 3, 8, 12)") != NULL, "%s", err.message);
  cr_expect(strstr(err.message, "--input-shape such as 1x3x8x8") != NULL, "%s", err.message);
}
