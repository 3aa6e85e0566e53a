/*
 * Benchmark of the main job. It runs `deformslice compile` with the given arguments (by
 * default the bundled model, Fashion-MNIST and zcu102) and times it on a monotonic clock.
 * Then it prints the figures docs/benchmarks.md records from the run's report.json: float
 * and fixed-point test top-1, the chosen slicing's drop, its DRAM traffic relative to the
 * gather dataflow and to the compulsory lower bound, and the wall time against the budget.
 *
 * Usage: bench_compile DESLICE_BINARY OUT_DIR [compile options...]
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/ds_file.h"

/* The budget a compile with no arguments must meet on a 2-core machine, in seconds. */
#define COMPILE_BUDGET_S 600.0

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double number(const cJSON *root, const char *object, const char *field) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, object),
                                                    field);
  return cJSON_IsNumber(v) ? v->valuedouble : -1.0;
}

static const char *text(const cJSON *root, const char *object, const char *field) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, object),
                                                    field);
  return cJSON_IsString(v) ? v->valuestring : "?";
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_compile DEFORMSLICE OUT_DIR [compile options...]\n");
    return 2;
  }

  char command[8192];
  int used = snprintf(command, sizeof command, "%s compile --out %s", argv[1], argv[2]);
  for (int i = 3; i < argc && used < (int)sizeof command; i++)
    used += snprintf(command + used, sizeof command - (size_t)used, " %s", argv[i]);

  double start_s = now_s();
  int status = system(command);
  double wall_s = now_s() - start_s;
  if (status != 0) {
    fprintf(stderr, "bench_compile: '%s' failed with status %d\n", command, status);
    return 1;
  }

  char path[4096];
  snprintf(path, sizeof path, "%s/report.json", argv[2]);
  uint8_t *data = NULL;
  size_t size = 0;
  ds_error err;
  ds_error_clear(&err);
  if (ds_file_read_all(path, 1 << 24, &data, &size, &err) != DS_OK) {
    fprintf(stderr, "bench_compile: %s\n", err.message);
    return 1;
  }
  cJSON *report = cJSON_ParseWithLength((const char *)data, size);
  free(data);
  if (report == NULL) {
    fprintf(stderr, "bench_compile: %s is not valid JSON\n", path);
    return 1;
  }

  printf("\n| figure | value |\n|---|---|\n");
  printf("| float test top-1 (%g images) | %.2f%% |\n", number(report, "accuracy", "test_images"),
         number(report, "accuracy", "float_test_top1"));
  printf("| fixed-point test top-1, unsliced | %.2f%% |\n",
         number(report, "accuracy", "fixed_test_top1_unsliced"));
  printf("| fixed-point test top-1, chosen slicing | %.2f%% |\n",
         number(report, "accuracy", "fixed_test_top1_sliced"));
  printf("| chosen slicing | `%s` |\n", text(report, "slicing", "configuration"));
  printf("| validation drop of the chosen slicing (%g images) | %.2f points |\n",
         number(report, "accuracy", "validation_images"),
         number(report, "accuracy", "validation_drop_points"));
  printf("| deformable-layer DRAM bytes: sliced / gather | %.1f%% (%.0f / %.0f) |\n",
         100.0 * number(report, "dram", "sliced_over_gather"),
         number(report, "dram", "sliced_bytes"), number(report, "dram", "gather_bytes"));
  printf("| deformable-layer DRAM bytes: sliced / lower bound | %.3fx (%.0f / %.0f) |\n",
         number(report, "dram", "sliced_over_lower_bound"), number(report, "dram", "sliced_bytes"),
         number(report, "dram", "lower_bound_bytes"));
  printf("| search evaluations (front points) | %.0f (%.0f) |\n",
         number(report, "slicing", "evaluations"), number(report, "slicing", "front_points"));
  printf("| compile wall time | %.1f s (%.0f%% of the %.0f s budget) |\n", wall_s,
         100.0 * wall_s / COMPILE_BUDGET_S, COMPILE_BUDGET_S);

  cJSON_Delete(report);
  return 0;
}
