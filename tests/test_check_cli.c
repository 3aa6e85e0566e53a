/*
 * The check and inspect commands on ONNX exports: a matching export passes, a tolerance it
 * misses fails with exit status 1, a dynamic export takes --input-shape (or --shape), and bad
 * arguments are usage errors that name the option. A damaged artifact is reported as one.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define TOOL DS_BINARY_DIR "/bin/deformslice"
#define FIXTURES DS_SOURCE_DIR "/tests/fixtures/"

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

#define CHECK_MINI(extra)                                                                   \
  TOOL " check " FIXTURES "dat_pp_mini_64.onnx --input " FIXTURES                           \
       "dat_pp_mini_64.input.f32 --expect " FIXTURES "dat_pp_mini_64.output.f32" extra

Test(check, matching_export_passes) {
  char output[8192];
  int status = run_tool(CHECK_MINI(""), output, sizeof output);
  cr_expect_eq(status, 0, "%s", output);
  cr_expect(strstr(output, "arena:") != NULL, "%s", output);
  cr_expect(strstr(output, "max abs diff") != NULL, "%s", output);
  cr_expect(strstr(output, "PASS") != NULL, "%s", output);
}

Test(check, missed_tolerance_fails) {
  char output[8192];
  int status = run_tool(CHECK_MINI(" --tolerance 0"), output, sizeof output);
  cr_expect_eq(status, 1, "%s", output);
  cr_expect(strstr(output, "FAIL") != NULL, "%s", output);
}

Test(check, wrong_reference_size_names_file) {
  char output[8192];
  int status = run_tool(TOOL " check " FIXTURES "dat_pp_mini_64.onnx --input " FIXTURES
                             "dat_pp_mini_64.input.f32 --expect " FIXTURES
                             "dat_pp_mini_64.input.f32",
                        output, sizeof output);
  cr_expect_eq(status, 1, "%s", output);
  cr_expect(strstr(output, "dat_pp_mini_64.input.f32 holds 49152 bytes") != NULL, "%s",
            output);
}

Test(check, dynamic_export_takes_shape) {
  char output[8192];
  int status = run_tool(TOOL " check " FIXTURES "dat_pp_mini_64_dynamic.onnx --input " FIXTURES
                             "dat_pp_mini_64_dynamic.64x96.input.f32 --expect " FIXTURES
                             "dat_pp_mini_64_dynamic.64x96.output.f32 --shape 1,3,64,96",
                        output, sizeof output);
  cr_expect_eq(status, 0, "%s", output);
  cr_expect(strstr(output, "input 1x3x64x96") != NULL, "%s", output);
}

Test(check, bad_input_shape_is_usage_error) {
  char output[8192];
  int status = run_tool(CHECK_MINI(" --input-shape 1,3,x"), output, sizeof output);
  cr_expect_eq(status, 2, "%s", output);
  cr_expect(strstr(output, "--input-shape '1,3,x'") != NULL, "%s", output);
}

Test(inspect, dynamic_export_reports_arena) {
  char output[16384];
  int status = run_tool(TOOL " inspect " FIXTURES "dat_mini_64_dynamic.onnx --input-shape "
                             "1,3,72,88",
                        output, sizeof output);
  cr_expect_eq(status, 0, "%s", output);
  cr_expect(strstr(output, "float arena:") != NULL, "%s", output);
  cr_expect(strstr(output, "deformable lifting") != NULL, "%s", output);
  cr_expect(strstr(output, "PAD=") != NULL, "%s", output);
}

Test(inspect, dynamic_export_without_shape_names_option) {
  char output[8192];
  int status = run_tool(TOOL " inspect " FIXTURES "dat_mini_64_dynamic.onnx", output,
                        sizeof output);
  cr_expect_eq(status, 1, "%s", output);
  cr_expect(strstr(output, "--input-shape") != NULL, "%s", output);
}

Test(check, wrong_shape_rank_names_fix) {
  char output[8192];
  int status = run_tool(TOOL " check " FIXTURES "dat_pp_mini_64_dynamic.onnx --input " FIXTURES
                             "dat_pp_mini_64_dynamic.input.f32 --expect " FIXTURES
                             "dat_pp_mini_64_dynamic.output.f32 --input-shape 3x64x64",
                        output, sizeof output);
  cr_expect_eq(status, 1, "%s", output);
  cr_expect(strstr(output, "rank 3") != NULL, "%s", output);
  cr_expect(strstr(output, "give 4 dims") != NULL, "the message names no fix: %s", output);
}

Test(inspect, damaged_artifact_is_not_onnx) {
  const char *path = DS_BINARY_DIR "/test_check_cli_damaged.dsa";
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "cannot create %s", path);
  fputs("XXLICE this artifact lost its first bytes", f);
  fclose(f);

  char command[512], output[8192];
  snprintf(command, sizeof command, TOOL " inspect %s", path);
  int status = run_tool(command, output, sizeof output);
  remove(path);
  cr_expect_eq(status, 1, "%s", output);
  cr_expect(strstr(output, "not a deformslice artifact") != NULL, "%s", output);
  cr_expect(strstr(output, "ONNX") == NULL, "a damaged artifact read as ONNX: %s", output);
}
