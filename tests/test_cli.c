/*
 * The deformslice command end to end, on the small dat_pp_tiny fixture (16x16 input, 4
 * outputs) with Fashion-MNIST images resized to 16x16 and labels modulo 4: compile, run,
 * inspect, audit, reproducibility, search resumption and bad input.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/ds_file.h"
#include "tests/ds_test_cli.h"
#include "tools/lib/dst_data.h"

#define FIXTURE_MODEL DS_SOURCE_DIR "/tests/fixtures/dat_pp_tiny.onnx"

/* Small search and data sizes keep one compile around a few seconds under sanitizers. */
#define SMALL_COMPILE                                                                     \
  " compile --model " FIXTURE_MODEL FOUR_CLASS_DATA                                       \
  " --calibration-images 40 --search-images 60"                                           \
  " --test-images 80 --population 4 --generations 1 --threads 2"

static char *make_temp_dir(void) {
  char *dir = malloc(64);
  snprintf(dir, 64, "/tmp/ds_cli_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  return dir;
}

static cJSON *read_json(const char *path) {
  uint8_t *data = NULL;
  size_t size = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(ds_file_read_all(path, 1 << 24, &data, &size, &err), DS_OK, "%s", err.message);
  cJSON *root = cJSON_ParseWithLength((const char *)data, size);
  free(data);
  cr_assert_not_null(root, "%s is not valid JSON", path);
  return root;
}

static double json_number(const cJSON *root, const char *object, const char *field) {
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, object);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  cr_assert(cJSON_IsNumber(v), "%s.%s is missing from report.json", object, field);
  return v->valuedouble;
}

static int files_equal(const char *a, const char *b) {
  uint8_t *da = NULL, *db = NULL;
  size_t sa = 0, sb = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(ds_file_read_all(a, 1 << 28, &da, &sa, &err), DS_OK, "%s", err.message);
  cr_assert_eq(ds_file_read_all(b, 1 << 28, &db, &sb, &err), DS_OK, "%s", err.message);
  int equal = sa == sb && memcmp(da, db, sa) == 0;
  free(da);
  free(db);
  return equal;
}

Test(cli, compile_run_inspect_and_resume, .timeout = 600) {
  if (!have_four_class_data())
    cr_skip_test("dataset-fashion-mnist is not installed");

  static char output[1 << 16];
  char command[4096], path[512], other[512];
  char *dir = make_temp_dir();
  char *second = make_temp_dir();

  snprintf(command, sizeof command, TOOL SMALL_COMPILE " --out %s", dir);
  cr_assert_eq(run_tool(command, output, sizeof output), 0, "compile failed:\n%s", output);
  cr_expect_neq(strstr(output, "[7/7]"), NULL, "progress lines missing:\n%s", output);
  cr_expect_neq(strstr(output, "Pareto front"), NULL, "front table missing:\n%s", output);

  const char *outputs[] = {"model.dslice", "pareto.json", "pareto.csv", "report.md",
                           "report.json", "search.journal"};
  for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, outputs[i]);
    cr_expect_eq(access(path, R_OK), 0, "%s was not written", path);
  }

  /* The artifact alone reproduces the reported fixed-point accuracy of its slicing. */
  snprintf(path, sizeof path, "%s/report.json", dir);
  cJSON *report = read_json(path);
  double reported = json_number(report, "accuracy", "fixed_test_top1_sliced");
  double evaluations = json_number(report, "slicing", "evaluations");
  cr_expect_gt(evaluations, 0.0);
  cJSON_Delete(report);

  snprintf(command, sizeof command, TOOL " run %s/model.dslice" FOUR_CLASS_DATA " --limit 80 --threads 1",
           dir);
  cr_assert_eq(run_tool(command, output, sizeof output), 0, "run failed:\n%s", output);
  char expected[64];
  snprintf(expected, sizeof expected, "80 test images: %.2f%%", reported);
  cr_expect_neq(strstr(output, expected), NULL, "expected '%s' in:\n%s", expected, output);

  snprintf(command, sizeof command, TOOL " inspect %s/model.dslice", dir);
  cr_assert_eq(run_tool(command, output, sizeof output), 0, "inspect failed:\n%s", output);
  cr_expect_neq(strstr(output, "DEFORM_ATTN"), NULL, "%s", output);

  /* Same inputs, another folder: a byte-identical artifact. */
  snprintf(command, sizeof command, TOOL SMALL_COMPILE " --out %s", second);
  cr_assert_eq(run_tool(command, output, sizeof output), 0, "second compile failed:\n%s", output);
  snprintf(path, sizeof path, "%s/model.dslice", dir);
  snprintf(other, sizeof other, "%s/model.dslice", second);
  cr_expect(files_equal(path, other), "compiling twice gave different artifacts");

  /* A rerun in the first folder takes every evaluation from the journal. */
  snprintf(command, sizeof command, TOOL SMALL_COMPILE " --out %s", dir);
  cr_assert_eq(run_tool(command, output, sizeof output), 0, "rerun failed:\n%s", output);
  snprintf(path, sizeof path, "%s/report.json", dir);
  report = read_json(path);
  cr_expect_eq(json_number(report, "slicing", "evaluations"), 0.0,
               "a resumed search evaluated configurations again");
  cJSON_Delete(report);

  free(dir);
  free(second);
}

Test(cli, audit_reports_sqnr, .timeout = 300) {
  if (!have_four_class_data())
    cr_skip_test("dataset-fashion-mnist is not installed");

  static char output[1 << 17];
  int status = run_tool(TOOL " audit --model " FIXTURE_MODEL FOUR_CLASS_DATA
                             " --test-images 40 --tensor-images 4"
                        " --calibration-images 20 --threads 2",
                        output, sizeof output);
  cr_assert_eq(status, 0, "audit failed:\n%s", output);
  cr_expect_neq(strstr(output, "test top-1 on 40 images: float"), NULL, "%s", output);
  cr_expect_neq(strstr(output, "lowest SQNR"), NULL, "%s", output);
}

Test(cli, missing_model_names_the_file) {
  static char output[1 << 14];
  int status = run_tool(TOOL " compile --model /nonexistent/model.onnx --out /tmp", output,
                        sizeof output);
  cr_expect_eq(status, 1);
  cr_expect_neq(strstr(output, "/nonexistent/model.onnx"), NULL, "%s", output);
}

Test(cli, non_onnx_model_is_rejected) {
  static char output[1 << 14];
  int status = run_tool(TOOL " compile --model " DS_SOURCE_DIR "/README.md --out /tmp", output,
                        sizeof output);
  cr_expect_eq(status, 1);
  cr_expect_neq(strstr(output, "README.md"), NULL, "%s", output);
}

Test(cli, missing_data_folder_names_the_fix) {
  static char output[1 << 14];
  int status = run_tool(TOOL " compile --model " FIXTURE_MODEL " --data /nonexistent/data"
                        " --out /tmp/ds_cli_missing_data",
                        output, sizeof output);
  cr_expect_eq(status, 1);
  cr_expect_neq(strstr(output, "/nonexistent/data"), NULL, "%s", output);
  cr_expect_neq(strstr(output, "--data"), NULL, "%s", output);
  cr_expect_neq(strstr(output, "the folder does not exist"), NULL, "%s", output);
}

Test(cli, preset_with_missing_field_names_it) {
  static char output[1 << 14];
  char *dir = make_temp_dir();
  char preset[512], command[1024];
  snprintf(preset, sizeof preset, "%s/board.json", dir);
  FILE *f = fopen(preset, "w");
  cr_assert_not_null(f);
  fputs("{\"name\": \"board\", \"clock_mhz\": 200}\n", f);
  fclose(f);

  snprintf(command, sizeof command, TOOL " compile --model " FIXTURE_MODEL " --preset %s --out %s",
           preset, dir);
  cr_expect_eq(run_tool(command, output, sizeof output), 1);
  cr_expect_neq(strstr(output, "dram"), NULL, "the missing dram fields are not named:\n%s",
                output);
  free(dir);
}

Test(cli, compile_rejects_labels_beyond_outputs, .timeout = 300) {
  if (!have_four_class_data())
    cr_skip_test("dataset-fashion-mnist is not installed");
  static char output[1 << 14];
  /* The installed Fashion-MNIST files have labels 0..9, but the fixture has 4 outputs. */
  int status = run_tool(TOOL " compile --model " FIXTURE_MODEL " --calibration-images 10"
                             " --search-images 10 --test-images 10 --out /tmp",
                        output, sizeof output);
  cr_expect_eq(status, 1, "%s", output);
  cr_expect_neq(strstr(output, "-labels-idx1-ubyte.gz: label "), NULL, "%s", output);
  cr_expect_neq(strstr(output, "is outside [0, 4), the classes of the model's output"), NULL,
                "%s", output);
}

Test(cli, bad_option_value_is_usage_error) {
  static char output[1 << 14];
  cr_expect_eq(run_tool(TOOL " compile --population 1", output, sizeof output), 2);
  cr_expect_neq(strstr(output, "--population '1'"), NULL, "%s", output);
  cr_expect_eq(run_tool(TOOL " frobnicate", output, sizeof output), 2);
  cr_expect_neq(strstr(output, "unknown command 'frobnicate'"), NULL, "%s", output);
}

Test(cli, run_rejects_wrong_magic) {
  static char output[1 << 14];
  cr_expect_eq(run_tool(TOOL " run " FIXTURE_MODEL, output, sizeof output), 1);
  cr_expect_neq(strstr(output, "dat_pp_tiny.onnx"), NULL, "%s", output);
  cr_expect_neq(strstr(output, "magic"), NULL, "%s", output);
}

Test(cli, audit_with_percentile_calibration, .timeout = 300) {
  if (!have_four_class_data())
    cr_skip_test("dataset-fashion-mnist is not installed");

  static char output[1 << 17];
  int status = run_tool(TOOL " audit --model " FIXTURE_MODEL FOUR_CLASS_DATA
                             " --test-images 20 --tensor-images 2"
                        " --calibration-images 10 --calibration percentile --percentile 99.9"
                        " --threads 2",
                        output, sizeof output);
  cr_assert_eq(status, 0, "audit failed:\n%s", output);
  cr_expect_neq(strstr(output, "lowest SQNR"), NULL, "%s", output);
}

Test(cli, unknown_calibration_method_is_rejected) {
  static char output[1 << 14];
  cr_expect_eq(run_tool(TOOL " compile --calibration entropy", output, sizeof output), 2);
  cr_expect_neq(strstr(output, "--calibration 'entropy'"), NULL, "%s", output);
  cr_expect_eq(run_tool(TOOL " audit --calibration percentile --percentile 20", output,
                        sizeof output),
               2);
  cr_expect_neq(strstr(output, "--percentile '20'"), NULL, "%s", output);
}

Test(cli, unknown_preset_name_lists_builtins) {
  static char output[1 << 14];
  cr_expect_eq(run_tool(TOOL " compile --preset zcu104", output, sizeof output), 1);
  cr_expect_neq(strstr(output, "neither a built-in preset (zcu102, kv260, pynq-z2)"), NULL, "%s",
                output);
}

Test(cli, journal_from_other_settings_is_rejected, .timeout = 300) {
  if (!have_four_class_data())
    cr_skip_test("dataset-fashion-mnist is not installed");

  static char output[1 << 16];
  char command[4096];
  char *dir = make_temp_dir();
  snprintf(command, sizeof command,
           TOOL " compile --model " FIXTURE_MODEL FOUR_CLASS_DATA
                " --calibration-images 10 --search-images 20"
                " --test-images 20 --population 4 --generations 0 --threads 2 --out %s",
           dir);
  cr_assert_eq(run_tool(command, output, sizeof output), 0, "compile failed:\n%s", output);

  /* Another calibration changes every accuracy, so the journal must not be reused. */
  snprintf(command, sizeof command,
           TOOL " compile --model " FIXTURE_MODEL FOUR_CLASS_DATA
                " --calibration-images 12 --search-images 20"
                " --test-images 20 --population 4 --generations 0 --threads 2 --out %s",
           dir);
  cr_expect_eq(run_tool(command, output, sizeof output), 1);
  cr_expect_neq(strstr(output, "search.journal was written for another model"), NULL, "%s",
                output);
  cr_expect_neq(strstr(output, "delete it or pass another --out"), NULL, "%s", output);
  free(dir);
}

/* A raw input of the wrong size names the model input in quotes and the sizes. */
Test(cli, cost_input_size_quoted) {
  char output[4096];
  int status = run_tool(TOOL " cost " DS_SOURCE_DIR "/tests/fixtures/dat_mini_64.onnx --simulate"
                        " --input-f32 " DS_SOURCE_DIR "/tests/fixtures/bad/not_onnx.txt",
                        output, sizeof output);
  cr_expect_neq(status, 0);
  cr_expect_not_null(
      strstr(output, "has 40 bytes; the model input 'input' (1x3x64x64) needs 12288"), "%s",
      output);
}
