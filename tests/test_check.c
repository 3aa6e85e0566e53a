/*
 * Tests of `deformslice check`: an export whose stored output matches passes, a reference
 * that differs beyond the tolerance fails, and bad arguments or files give an error status
 * without crashing.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/lib/dst_commands.h"

#define FIXTURES DS_SOURCE_DIR "/tests/fixtures/"
#define LAYER FIXTURES "deform_layer_dat_pp"

static int run_check(int argc, const char **argv) {
  fflush(stdout);
  return dst_cmd_check(argc, (char **)argv);
}

/* Copies src to a new temporary file, changing value index by delta (index < 0: no
 * change, or truncating to keep_bytes when keep_bytes > 0). Returns the path (static). */
static const char *altered_copy(const char *src, long index, float delta, long keep_bytes) {
  static char path[64];
  strcpy(path, "/tmp/ds_check_XXXXXX");
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  FILE *in = fopen(src, "rb");
  cr_assert_not_null(in, "cannot open %s", src);
  float values[4096];
  size_t count = fread(values, sizeof(float), 4096, in);
  fclose(in);
  cr_assert_gt(count, 0);
  if (index >= 0)
    values[index] += delta;
  size_t bytes = keep_bytes > 0 ? (size_t)keep_bytes : count * sizeof(float);
  cr_assert_eq(write(fd, values, bytes), (ssize_t)bytes);
  close(fd);
  return path;
}

Test(check, stored_output_passes) {
  const char *argv[] = {LAYER ".onnx", "--input", LAYER ".input.f32", "--expect",
                        LAYER ".output.f32"};
  cr_assert_eq(run_check(5, argv), 0);
}

Test(check, difference_beyond_tolerance_fails) {
  const char *expect = altered_copy(LAYER ".output.f32", 17, 1e-3f, 0);
  const char *argv[] = {LAYER ".onnx", "--input", LAYER ".input.f32", "--expect", expect,
                        "--tolerance", "1e-4"};
  int status = run_check(7, argv);
  unlink(expect);
  cr_assert_eq(status, 1);
}

Test(check, difference_within_tolerance_passes) {
  const char *expect = altered_copy(LAYER ".output.f32", 17, 1e-3f, 0);
  const char *argv[] = {LAYER ".onnx", "--input", LAYER ".input.f32", "--expect", expect,
                        "--tolerance", "2e-3"};
  int status = run_check(7, argv);
  unlink(expect);
  cr_assert_eq(status, 0);
}

Test(check, nan_reference_fails) {
  const char *expect = altered_copy(LAYER ".output.f32", 3, NAN, 0);
  const char *argv[] = {LAYER ".onnx", "--input", LAYER ".input.f32", "--expect", expect,
                        "--tolerance", "1e9"};
  int status = run_check(7, argv);
  unlink(expect);
  cr_assert_eq(status, 1);
}

Test(check, truncated_input_is_an_error) {
  const char *input = altered_copy(LAYER ".input.f32", -1, 0.0f, 100);
  const char *argv[] = {LAYER ".onnx", "--input", input, "--expect", LAYER ".output.f32"};
  int status = run_check(5, argv);
  unlink(input);
  cr_assert_eq(status, 1);
}

Test(check, missing_files_are_errors) {
  const char *no_model[] = {FIXTURES "no_such.onnx", "--input", LAYER ".input.f32",
                            "--expect", LAYER ".output.f32"};
  cr_assert_eq(run_check(5, no_model), 1);
  const char *no_input[] = {LAYER ".onnx", "--input", FIXTURES "no_such.f32", "--expect",
                            LAYER ".output.f32"};
  cr_assert_eq(run_check(5, no_input), 1);
}

Test(check, bad_usage_returns_2) {
  const char *no_expect[] = {LAYER ".onnx", "--input", LAYER ".input.f32"};
  cr_assert_eq(run_check(3, no_expect), 2);
  const char *bad_shape[] = {LAYER ".onnx", "--input", LAYER ".input.f32", "--expect",
                             LAYER ".output.f32", "--shape", "1,x,8"};
  cr_assert_eq(run_check(7, bad_shape), 2);
  const char *bad_tolerance[] = {LAYER ".onnx", "--input", LAYER ".input.f32", "--expect",
                                 LAYER ".output.f32", "--tolerance", "-1"};
  cr_assert_eq(run_check(7, bad_tolerance), 2);
}

Test(check, shape_fixes_dynamic_batch) {
  const char *base = FIXTURES "ops/deform_dynamic_batch";
  char model[512], input[512], output[512];
  snprintf(model, sizeof model, "%s.onnx", base);
  snprintf(input, sizeof input, "%s.input.f32", base);
  snprintf(output, sizeof output, "%s.output.f32", base);
  const char *argv[] = {model, "--input", input, "--expect", output, "--shape", "1,8,8,8"};
  cr_assert_eq(run_check(7, argv), 0);
}
