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
#include "tools/lib/dst_data.h"

#define TOOL DS_BINARY_DIR "/bin/deformslice"
#define FIXTURE_MODEL DS_SOURCE_DIR "/tests/fixtures/dat_pp_tiny.onnx"

/* Small search and data sizes keep one compile around a few seconds under sanitizers. */
#define SMALL_COMPILE                                                                     \
  " compile --model " FIXTURE_MODEL FOUR_CLASS_DATA                                       \
  " --calibration-images 40 --search-images 60"                                           \
  " --test-images 80 --population 4 --generations 1 --threads 2"

/*
 * The tiny fixture models have 4 outputs, and evaluation rejects labels outside a model's
 * outputs. FOUR_CLASS_DIR holds the Fashion-MNIST IDX files with every label taken modulo 4:
 * links to the installed image files and plain label files.
 */
#define FOUR_CLASS_DIR DS_BINARY_DIR "/fashion_mnist_4class"
#define FOUR_CLASS_DATA " --data " FOUR_CLASS_DIR

static void write_four_class_labels(const char *folder, const char *stem) {
  char from[512], to[512];
  snprintf(from, sizeof from, "%s/%s.gz", DST_FASHION_MNIST_DIR, stem);
  snprintf(to, sizeof to, "%s/%s", folder, stem);
  gzFile in = gzopen(from, "rb");
  cr_assert_not_null(in, "cannot open %s", from);
  static uint8_t bytes[8 + 60000];
  int size = gzread(in, bytes, sizeof bytes);
  gzclose(in);
  cr_assert_gt(size, 8, "%s is too short", from);
  for (int i = 8; i < size; i++)
    bytes[i] %= 4;
  FILE *out = fopen(to, "wb");
  cr_assert_not_null(out, "cannot write %s", to);
  cr_assert_eq(fwrite(bytes, 1, (size_t)size, out), (size_t)size);
  fclose(out);
}

/*
 * Returns whether Fashion-MNIST is installed, and then makes FOUR_CLASS_DIR once. Test
 * processes run in parallel, so each builds a private folder and renames it into place.
 */
static int have_four_class_data(void) {
  if (access(DST_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
    return 0;
  if (access(FOUR_CLASS_DIR "/t10k-labels-idx1-ubyte", R_OK) == 0)
    return 1;
  char folder[512], link_path[600];
  snprintf(folder, sizeof folder, "%s/fashion_mnist_4class.XXXXXX", DS_BINARY_DIR);
  cr_assert_not_null(mkdtemp(folder));
  const char *images[2] = {"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"};
  for (int i = 0; i < 2; i++) {
    char target[512];
    snprintf(target, sizeof target, "%s/%s", DST_FASHION_MNIST_DIR, images[i]);
    snprintf(link_path, sizeof link_path, "%s/%s", folder, images[i]);
    cr_assert_eq(symlink(target, link_path), 0, "cannot link %s", link_path);
  }
  write_four_class_labels(folder, "train-labels-idx1-ubyte");
  write_four_class_labels(folder, "t10k-labels-idx1-ubyte");
  if (rename(folder, FOUR_CLASS_DIR) != 0) {
    /* Another process was first: its folder has the same content. */
    char command[1200];
    snprintf(command, sizeof command, "rm -rf '%s'", folder);
    cr_expect_eq(system(command), 0);
  }
  return access(FOUR_CLASS_DIR "/t10k-labels-idx1-ubyte", R_OK) == 0;
}

/* Runs command with stdout and stderr captured into output; returns the exit status. */
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
