#include "dsn_pareto.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_file.h"
#include "nas/dsn_oracle.h"

static double ratio(int64_t part, int64_t whole) {
  return whole > 0 ? (double)part / (double)whole : NAN;
}

/* Writes the configuration of point joined by separator. */
static void format_config(const dsn_search_result *result, const dsn_front_point *point,
                          const char *separator, char *text, size_t size) {
  size_t used = 0;
  text[0] = '\0';
  for (int32_t l = 0; l < result->layer_count && used < size; l++) {
    char part[40];
    dsn_slice_format(point->slices[l], part, (int32_t)sizeof part);
    int written = snprintf(text + used, size - used, "%s%s", l > 0 ? separator : "", part);
    if (written < 0)
      break;
    used += (size_t)written;
  }
}

void dsn_space_text(int64_t space_size, char *text, size_t text_bytes) {
  if (space_size == INT64_MAX)
    snprintf(text, text_bytes, "more than 9.2e18");
  else
    snprintf(text, text_bytes, "%lld", (long long)space_size);
}

void dsn_front_print(const dsn_search_result *result, FILE *out) {
  int has_test = !isnan(result->reference_test_accuracy);
  char space[48];
  dsn_space_text(result->space_size, space, sizeof space);
  fprintf(out, "Pareto front: %d point(s), %d deformable layer(s), preset %s, %s search over "
               "%s configurations (%d evaluated, %d from the journal)\n",
          result->point_count, result->layer_count, result->preset_name,
          result->exhaustive ? "exhaustive" : "NSGA-II", space, result->evaluations,
          result->journal_hits);
  fprintf(out, "unsliced: validation top-1 %.2f%%", result->reference_accuracy);
  if (has_test)
    fprintf(out, ", test top-1 %.2f%%", result->reference_test_accuracy);
  fprintf(out, ", DRAM %lld bus bytes%s; gather %lld bus bytes; lower bound %lld bus bytes\n",
          (long long)result->unsliced_bytes,
          result->reference_fits ? "" : " (does not fit the feature buffer)",
          (long long)result->gather_bytes, (long long)result->lower_bound_bytes);

  fprintf(out, "%3s  %-32s %9s", "#", "slices per layer", "val top1");
  if (has_test)
    fprintf(out, " %9s", "test top1");
  fprintf(out, " %7s %14s %9s %9s\n", "drop", "DRAM bus bytes", "/gather", "/bound");
  for (int32_t i = 0; i < result->point_count; i++) {
    const dsn_front_point *point = &result->points[i];
    char config[1024];
    format_config(result, point, " ", config, sizeof config);
    fprintf(out, "%3d  %-32s %8.2f%%", i, config, point->accuracy);
    if (has_test)
      fprintf(out, " %8.2f%%", point->test_accuracy);
    fprintf(out, " %7.2f %14lld %8.1f%% %8.2fx\n", result->reference_accuracy - point->accuracy,
            (long long)point->dram_bytes,
            100.0 * ratio(point->dram_bytes, result->gather_bytes),
            ratio(point->dram_bytes, result->lower_bound_bytes));
  }
}

/* Adds number, or null when it is NaN (no test set). */
static void add_number_or_null(cJSON *object, const char *name, double number) {
  if (isnan(number))
    cJSON_AddNullToObject(object, name);
  else
    cJSON_AddNumberToObject(object, name, number);
}

static cJSON *point_json(const dsn_search_result *result, const dsn_front_point *point) {
  cJSON *object = cJSON_CreateObject();
  cJSON *config = cJSON_AddArrayToObject(object, "config");
  cJSON *slices = cJSON_AddArrayToObject(object, "slices");
  for (int32_t l = 0; l < result->layer_count; l++) {
    char text[40];
    dsn_slice_format(point->slices[l], text, (int32_t)sizeof text);
    cJSON_AddItemToArray(config, cJSON_CreateString(text));
    cJSON *slice = cJSON_CreateObject();
    cJSON_AddNumberToObject(slice, "rows", point->slices[l].rows);
    cJSON_AddNumberToObject(slice, "cols", point->slices[l].cols);
    cJSON_AddNumberToObject(slice, "overlap", point->slices[l].overlap);
    cJSON_AddStringToObject(slice, "semantics",
                            point->slices[l].semantics == DSR_SLICE_CROP ? "crop" : "physical");
    cJSON_AddItemToArray(slices, slice);
  }
  cJSON_AddNumberToObject(object, "accuracy", point->accuracy);
  add_number_or_null(object, "test_accuracy", point->test_accuracy);
  cJSON_AddNumberToObject(object, "drop", result->reference_accuracy - point->accuracy);
  cJSON_AddNumberToObject(object, "dram_bytes", (double)point->dram_bytes);
  cJSON_AddNumberToObject(object, "dram_payload_bytes", (double)point->dram_payload_bytes);
  cJSON_AddNumberToObject(object, "dram_time_ns", point->dram_time_ns);
  cJSON_AddNumberToObject(object, "buffer_bytes", (double)point->buffer_bytes);
  add_number_or_null(object, "relative_to_gather",
                     ratio(point->dram_bytes, result->gather_bytes));
  add_number_or_null(object, "relative_to_lower_bound",
                     ratio(point->dram_bytes, result->lower_bound_bytes));
  return object;
}

ds_status dsn_front_write_json(const dsn_search_result *result, const char *path,
                               ds_error *err) {
  cJSON *root = cJSON_CreateObject();
  if (root == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build the front JSON");
  cJSON_AddStringToObject(root, "preset", result->preset_name);
  cJSON_AddNumberToObject(root, "layers", result->layer_count);
  cJSON_AddStringToObject(root, "search", result->exhaustive ? "exhaustive" : "nsga2");
  cJSON_AddNumberToObject(root, "space_size", (double)result->space_size);
  cJSON_AddNumberToObject(root, "evaluations", result->evaluations);
  cJSON_AddNumberToObject(root, "journal_hits", result->journal_hits);
  cJSON *reference = cJSON_AddObjectToObject(root, "unsliced");
  cJSON_AddNumberToObject(reference, "accuracy", result->reference_accuracy);
  add_number_or_null(reference, "test_accuracy", result->reference_test_accuracy);
  cJSON_AddNumberToObject(reference, "dram_bytes", (double)result->unsliced_bytes);
  cJSON_AddBoolToObject(reference, "fits", result->reference_fits);
  cJSON_AddNumberToObject(root, "gather_bytes", (double)result->gather_bytes);
  cJSON_AddNumberToObject(root, "lower_bound_bytes", (double)result->lower_bound_bytes);
  cJSON *front = cJSON_AddArrayToObject(root, "front");
  for (int32_t i = 0; i < result->point_count; i++)
    cJSON_AddItemToArray(front, point_json(result, &result->points[i]));

  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (text == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot print the front JSON");
  ds_status status = ds_file_write_atomic(path, text, strlen(text), err);
  cJSON_free(text);
  return status;
}

ds_status dsn_front_write_csv(const dsn_search_result *result, const char *path,
                              ds_error *err) {
  size_t line_bytes = (size_t)result->layer_count * 40 + 256;
  size_t capacity = line_bytes * ((size_t)result->point_count + 1);
  char *text = malloc(capacity);
  if (text == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build the front CSV");
  char *config = malloc(line_bytes);
  if (config == NULL) {
    free(text);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build the front CSV");
  }

  size_t used = (size_t)snprintf(text, capacity,
                                 "index,config,accuracy,test_accuracy,drop,dram_bytes,"
                                 "relative_to_gather,relative_to_lower_bound,dram_time_ns,"
                                 "buffer_bytes\n");
  for (int32_t i = 0; i < result->point_count && used < capacity; i++) {
    const dsn_front_point *point = &result->points[i];
    format_config(result, point, " ", config, line_bytes);
    char test[32] = "";
    if (!isnan(point->test_accuracy))
      snprintf(test, sizeof test, "%.6g", point->test_accuracy);
    int written = snprintf(text + used, capacity - used,
                           "%d,%s,%.6g,%s,%.6g,%lld,%.6g,%.6g,%.6g,%lld\n", i, config,
                           point->accuracy, test, result->reference_accuracy - point->accuracy,
                           (long long)point->dram_bytes,
                           ratio(point->dram_bytes, result->gather_bytes),
                           ratio(point->dram_bytes, result->lower_bound_bytes),
                           point->dram_time_ns, (long long)point->buffer_bytes);
    if (written < 0)
      break;
    used += (size_t)written;
  }
  free(config);
  ds_status status = DS_OK;
  if (used >= capacity)
    status = ds_fail(err, DS_ERR_INTERNAL, "front CSV longer than its %zu-byte estimate",
                     capacity);
  else
    status = ds_file_write_atomic(path, text, used, err);
  free(text);
  return status;
}
