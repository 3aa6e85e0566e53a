/*
 * Precision options and audit reports through the deformslice command, on the small
 * dat_pp_tiny fixture (4 outputs) with Fashion-MNIST images resized to 16x16 and labels
 * modulo 4.
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
#define SMALL_AUDIT                                                                       \
  TOOL " audit --model " FIXTURE_MODEL FOUR_CLASS_DATA                                      \
       " --test-images 20 --tensor-images 2"                                              \
       " --calibration-images 8 --threads 2"

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

static const cJSON *field(const cJSON *object, const char *name) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
  cr_assert_not_null(item, "missing '%s'", name);
  return item;
}

Test(precision_cli, audit_int8_sliced_reports, .timeout = 300) {
  if (!have_four_class_data())
    cr_skip_test("dataset-fashion-mnist is not installed");
  static char output[1 << 17];
  char command[4096], json_path[128], markdown_path[128];
  snprintf(json_path, sizeof json_path, "/tmp/ds_pcli_%d.json", (int)getpid());
  snprintf(markdown_path, sizeof markdown_path, "/tmp/ds_pcli_%d.md", (int)getpid());
  snprintf(command, sizeof command,
           SMALL_AUDIT " --precision int8 --slices 2x2+1 --json %s --markdown %s", json_path,
           markdown_path);
  cr_assert_eq(run_tool(command, output, sizeof output), 0, "audit failed:\n%s", output);
  cr_expect_neq(strstr(output, "fixed point sliced"), NULL, "%s", output);
  const char *pairs[] = {"float and fixed point ", "float and sliced ", "fixed and sliced "};
  for (int i = 0; i < 3; i++) {
    const char *at = strstr(output, pairs[i]);
    int agree = -1, total = -1;
    cr_expect(at != NULL && sscanf(at + strlen(pairs[i]), "%d of %d", &agree, &total) == 2 &&
                  total == 20,
              "'%s' lacks 'N of 20':\n%s", pairs[i], output);
  }

  cJSON *root = read_json(json_path);
  const cJSON *precision = field(root, "precision");
  cr_expect_str_eq(field(precision, "mode")->valuestring, "int8");
  cr_expect_eq(field(precision, "int16_activations")->valueint, 0);
  cr_expect_eq(field(precision, "int16_bytes")->valueint, 0);
  const char *slicing = field(root, "slicing")->valuestring;
  cr_expect_eq(strncmp(slicing, "2x2+1", 5), 0, "slicing '%s'", slicing);
  cr_expect_eq(field(root, "test_images")->valueint, 20);
  const cJSON *agreement = field(root, "agreement");
  const char *shares[] = {"float_fixed", "float_fixed_sliced", "fixed_fixed_sliced"};
  for (int i = 0; i < 3; i++) {
    double share = field(agreement, shares[i])->valuedouble;
    cr_expect(share >= 0.0 && share <= 1.0, "%s = %f", shares[i], share);
  }
  cr_expect_gt(cJSON_GetArraySize(field(root, "stages")), 0);
  /* The fixture's masked attention logits come after every other entry, flagged. */
  const cJSON *worst = field(root, "worst");
  cr_expect_gt(cJSON_GetArraySize(worst), 0);
  int masked_seen = 0, masked_then_plain = 0;
  const cJSON *entry;
  cJSON_ArrayForEach(entry, worst) {
    int masked = cJSON_IsTrue(field(entry, "masked_logits"));
    masked_then_plain |= masked_seen && !masked;
    masked_seen |= masked;
    if (masked)
      cr_expect_str_eq(field(entry, "note")->valuestring, "masked logits, low SQNR by design");
  }
  cr_expect(masked_seen, "no masked logits entry in the worst list");
  cr_expect(!masked_then_plain, "a masked logits entry ranks before another entry");
  cr_expect_neq(strstr(output, "masked logits, low SQNR by design"), NULL, "%s", output);
  cJSON_Delete(root);

  uint8_t *data = NULL;
  size_t size = 0;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(ds_file_read_all(markdown_path, 1 << 24, &data, &size, &err), DS_OK);
  char *markdown = calloc(size + 1, 1);
  cr_assert_not_null(markdown);
  memcpy(markdown, data, size);
  free(data);
  cr_expect_neq(strstr(markdown, "## Deformable-layer stages"), NULL, "%s", markdown);
  cr_expect_neq(strstr(markdown, "| fixed point, sliced |"), NULL, "%s", markdown);
  cr_expect_neq(strstr(markdown, "| masked logits, low SQNR by design |"), NULL, "%s", markdown);
  free(markdown);
  unlink(json_path);
  unlink(markdown_path);
}

Test(precision_cli, compile_records_mixed_choice, .timeout = 600) {
  if (!have_four_class_data())
    cr_skip_test("dataset-fashion-mnist is not installed");
  static char output[1 << 17];
  char command[4096], dir[64];
  snprintf(dir, sizeof dir, "/tmp/ds_pcli_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  snprintf(command, sizeof command,
           TOOL " compile --model " FIXTURE_MODEL FOUR_CLASS_DATA
                " --calibration-images 8 --search-images 8"
                " --test-images 8 --population 4 --generations 0 --threads 2"
                " --precision mixed --int16-budget-bytes 3000 --precision-images 1 --out %s",
           dir);
  cr_assert_eq(run_tool(command, output, sizeof output), 0, "compile failed:\n%s", output);
  cr_expect_neq(strstr(output, "precision mixed"), NULL, "%s", output);

  snprintf(command, sizeof command, TOOL " inspect %s/model.dslice", dir);
  cr_assert_eq(run_tool(command, output, sizeof output), 0, "inspect failed:\n%s", output);
  cr_expect_neq(strstr(output, "mode mixed"), NULL, "%s", output);
  cr_expect_neq(strstr(output, "of a 3000-byte budget"), NULL, "%s", output);

  /* The manifest's int16 bytes fit the budget. */
  const char *at = strstr(output, "int16 extra bytes ");
  cr_assert_not_null(at, "%s", output);
  long bytes = strtol(at + strlen("int16 extra bytes "), NULL, 10);
  cr_expect(bytes >= 0 && bytes <= 3000, "int16 bytes %ld", bytes);

  /* An artifact is audited with its own precision; precision options are refused. */
  snprintf(command, sizeof command, TOOL " audit --artifact %s/model.dslice --precision int8",
           dir);
  cr_expect_neq(run_tool(command, output, sizeof output), 0);
  cr_expect_neq(strstr(output, "already quantized"), NULL, "%s", output);
  snprintf(command, sizeof command, "rm -rf %s", dir);
  cr_expect_eq(system(command), 0);
}

typedef struct bad_case {
  const char *arguments;
  const char *expected;
} bad_case;

Test(precision_cli, bad_precision_options_are_rejected, .timeout = 300) {
  if (!have_four_class_data())
    cr_skip_test("dataset-fashion-mnist is not installed");
  static char output[1 << 17];
  char file_path[128], command[4096];
  snprintf(file_path, sizeof file_path, "/tmp/ds_pcli_bad_%d.json", (int)getpid());
  FILE *f = fopen(file_path, "w");
  cr_assert_not_null(f);
  fputs("{\"no_such_tensor\": \"int16\"}", f);
  fclose(f);
  char unknown[256];
  snprintf(unknown, sizeof unknown, "--precision-file %s", file_path);
  const bad_case cases[] = {
      {"--precision mixed", "needs --int16-budget-bytes"},
      {"--precision float", "not a precision mode"},
      {"--precision int8 --int16-budget-bytes 10", "mixed only"},
      {"--int16-budget-bytes 10", "add --precision mixed"},
      {"--percentile 99.9", "add --calibration percentile"},
      {"--histogram-bins 1024", "add --calibration kl"},
      {unknown, "'no_such_tensor' is not an activation"},
      {"--precision-file /nonexistent/p.json", "/nonexistent/p.json"},
      {"--slices 2y2", "not a slice configuration"},
      {"--slices 1x1+0,1x1+0,1x1+0,1x1+0,1x1+0,1x1+0,1x1+0", "deformable layers"},
      {"--slices 99x99+0", "--slices"},
      {"--json /nonexistent/dir/a.json", "/nonexistent/dir/a.json"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    snprintf(command, sizeof command, SMALL_AUDIT " %s", cases[k].arguments);
    int status = run_tool(command, output, sizeof output);
    cr_expect_neq(status, 0, "'%s' was accepted", cases[k].arguments);
    cr_expect_neq(strstr(output, cases[k].expected), NULL, "'%s': expected '%s' in:\n%s",
                  cases[k].arguments, cases[k].expected, output);
  }
  unlink(file_path);
}
