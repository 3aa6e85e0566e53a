/* Precision choice of compile and audit: class flags, pure int8, or mixed under a budget. */
#include "dst_precision.h"

#include <stdlib.h>
#include <string.h>

#include "common/ds_file.h"
#include "dst_args.h"
#include "dst_progress.h"

/* Override files larger than this are rejected before parsing. */
#define OVERRIDE_FILE_MAX_BYTES (16u << 20)

const char *dst_precision_mode_name(dst_precision_mode mode) {
  switch (mode) {
  case DST_PRECISION_CLASS:
    return "class";
  case DST_PRECISION_INT8:
    return "int8";
  case DST_PRECISION_MIXED:
    return "mixed";
  }
  return "unknown";
}

ds_status dst_parse_precision(const char *mode_text, const char *budget_text,
                              const char *override_path, dst_precision_config *config,
                              ds_error *err) {
  memset(config, 0, sizeof *config);
  config->mode = DST_PRECISION_CLASS;
  config->int16_budget_bytes = -1;
  config->override_path = override_path;
  config->search_images = DST_PRECISION_SEARCH_IMAGES;

  if (mode_text == NULL)
    config->mode = DST_PRECISION_CLASS;
  else if (strcmp(mode_text, "class") == 0)
    config->mode = DST_PRECISION_CLASS;
  else if (strcmp(mode_text, "int8") == 0)
    config->mode = DST_PRECISION_INT8;
  else if (strcmp(mode_text, "mixed") == 0)
    config->mode = DST_PRECISION_MIXED;
  else
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--precision '%s' is not a precision mode; use class, int8 or mixed",
                   mode_text);

  if (budget_text != NULL) {
    if (config->mode != DST_PRECISION_MIXED)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--int16-budget-bytes applies to --precision mixed only, not '%s'; add "
                     "--precision mixed or drop --int16-budget-bytes",
                     mode_text != NULL ? mode_text : "class (the default)");
    DS_TRY(dst_args_int("int16-budget-bytes", budget_text, 0, INT64_MAX / 4,
                        &config->int16_budget_bytes, err));
  } else if (config->mode == DST_PRECISION_MIXED) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--precision mixed needs --int16-budget-bytes N: the on-chip bytes that "
                   "int16 tensors may add (docs/fixed-point.md, section 1.2)");
  }
  return DS_OK;
}

ds_status dst_parse_precision_images(const char *text, dst_precision_config *config,
                                     ds_error *err) {
  int64_t value;
  DS_TRY(dst_args_int("precision-images", text, 1, 5000, &value, err));
  config->search_images = (int32_t)value;
  return DS_OK;
}

/* Writes every valid name to log and a short list into text. */
static void list_valid_names(const dsq_precision_plan *plan, FILE *log, char *text,
                             size_t text_bytes) {
  size_t used = 0;
  text[0] = '\0';
  for (int32_t i = 0; i < plan->item_count; i++) {
    if (log != NULL)
      fprintf(log, "  %s\n", plan->items[i].name);
    if (i < 4) {
      int n = snprintf(text + used, text_bytes - used, "%s'%s'", i > 0 ? ", " : "",
                       plan->items[i].name);
      if (n > 0 && (size_t)n < text_bytes - used)
        used += (size_t)n;
    }
  }
}

static ds_status apply_override(const char *path, const cJSON *entry, const dsr_model *model,
                                dsq_precision_plan *plan, FILE *log, ds_error *err) {
  int32_t item = dsq_precision_find(plan, model, entry->string);
  if (item < 0) {
    char names[512];
    if (log != NULL)
      fprintf(log, "valid names in %s (%d):\n", model->name, plan->item_count);
    list_valid_names(plan, log, names, sizeof names);
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "%s: '%s' is not an activation or deformable stage of model '%s'; valid "
                   "names are %s and %d more%s",
                   path, entry->string, model->name, names,
                   plan->item_count > 4 ? plan->item_count - 4 : 0,
                   log != NULL ? " (all listed above)" : "");
  }
  if (!cJSON_IsString(entry))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "%s: the value of '%s' is not a string; use \"int8\" or \"int16\"", path,
                   entry->string);
  if (strcmp(entry->valuestring, "int8") == 0)
    plan->items[item].precision = DSQ_PRECISION_INT8;
  else if (strcmp(entry->valuestring, "int16") == 0)
    plan->items[item].precision = DSQ_PRECISION_INT16;
  else
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "%s: '%s' has precision \"%s\"; use \"int8\" or \"int16\"", path,
                   entry->string, entry->valuestring);
  return DS_OK;
}

ds_status dst_precision_load_overrides(const char *path, const dsr_model *model,
                                       dsq_precision_plan *plan, FILE *log, int32_t *count,
                                       ds_error *err) {
  uint8_t *data = NULL;
  size_t size = 0;
  *count = 0;
  DS_TRY(ds_file_read_all(path, OVERRIDE_FILE_MAX_BYTES, &data, &size, err));
  cJSON *root = cJSON_ParseWithLength((const char *)data, size);
  free(data);
  if (root == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "%s is not valid JSON; expected an object such as {\"tensor name\": "
                   "\"int16\"}",
                   path);
  ds_status status = DS_OK;
  if (!cJSON_IsObject(root))
    status = ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "%s: the top level is not a JSON object; expected {\"tensor name\": "
                     "\"int8\" or \"int16\", ...}",
                     path);
  const cJSON *entry = NULL;
  if (status == DS_OK) {
    cJSON_ArrayForEach(entry, root) {
      status = apply_override(path, entry, model, plan, log, err);
      if (status != DS_OK)
        break;
      (*count)++;
    }
  }
  cJSON_Delete(root);
  return status;
}

ds_status dst_precision_quantize(dsr_model *model, const dsq_calibration *calib,
                                 const dst_precision_config *config, const dst_dataset *search,
                                 int32_t threads, dst_precision_record *record, ds_error *err) {
  memset(record, 0, sizeof *record);
  record->mode = config->mode;
  record->int16_budget_bytes = config->mode == DST_PRECISION_MIXED ? config->int16_budget_bytes
                                                                   : -1;
  DS_TRY(dsq_precision_plan_init(model, &record->plan, err));
  if (config->override_path != NULL) {
    snprintf(record->override_path, sizeof record->override_path, "%s", config->override_path);
    DS_TRY(dst_precision_load_overrides(config->override_path, model, &record->plan, stderr,
                                        &record->override_count, err));
  }

  dsq_options options;
  if (config->mode == DST_PRECISION_MIXED) {
    if (search == NULL || search->count < 1)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--precision mixed needs validation images to measure the tensors");
    int32_t images = config->search_images < search->count ? config->search_images
                                                           : search->count;
    record->search_images = images;
    double start_s = dst_now_s();
    DS_TRY(dsq_mixed_choose(model, calib, search->images, images, config->int16_budget_bytes,
                            threads, &record->plan, err));
    fprintf(stderr, "  mixed precision: %d tensors and stages measured on %d validation "
                    "images in %.1f s\n",
            record->plan.item_count, images, dst_now_s() - start_s);
  } else {
    uint32_t flags = config->mode == DST_PRECISION_CLASS ? DSQ_INT16_DEFAULT : 0;
    dsq_precision_plan_options(&record->plan, flags, &options);
    DS_TRY(dsq_quantize(model, calib, &options, err));
  }
  record->int16_bytes = dsq_precision_int16_bytes(&record->plan, model, &record->int16_items);
  return DS_OK;
}

cJSON *dst_precision_to_json(const dst_precision_record *record, const dsr_model *model) {
  cJSON *root = cJSON_CreateObject();
  if (root == NULL)
    return NULL;
  cJSON_AddStringToObject(root, "mode", dst_precision_mode_name(record->mode));
  if (record->int16_budget_bytes >= 0)
    cJSON_AddNumberToObject(root, "int16_budget_bytes", (double)record->int16_budget_bytes);
  else
    cJSON_AddNullToObject(root, "int16_budget_bytes");
  cJSON_AddNumberToObject(root, "int16_bytes", (double)record->int16_bytes);
  cJSON_AddNumberToObject(root, "int16_items", record->int16_items);
  cJSON_AddNumberToObject(root, "items", record->plan.item_count);
  cJSON_AddNumberToObject(root, "search_images", record->search_images);
  if (record->override_path[0] != '\0')
    cJSON_AddStringToObject(root, "override_file", record->override_path);
  else
    cJSON_AddNullToObject(root, "override_file");
  cJSON_AddNumberToObject(root, "overrides", record->override_count);
  cJSON *list = cJSON_AddArrayToObject(root, "int16");
  for (int32_t i = 0; list != NULL && i < record->plan.item_count; i++) {
    const dsq_precision_item *it = &record->plan.items[i];
    if (!dsq_precision_item_is_int16(it, model))
      continue;
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "name", it->name);
    cJSON_AddNumberToObject(item, "bytes", (double)it->int16_extra_bytes);
    if (record->mode == DST_PRECISION_MIXED)
      cJSON_AddNumberToObject(item, "gain", it->gain);
    cJSON_AddItemToArray(list, item);
  }
  return root;
}

void dst_precision_print(const dst_precision_record *record, FILE *out) {
  fprintf(out, "precision %s: %d of %d tensors and stages int16, %lld extra bytes",
          dst_precision_mode_name(record->mode), record->int16_items, record->plan.item_count,
          (long long)record->int16_bytes);
  if (record->int16_budget_bytes >= 0)
    fprintf(out, " (budget %lld)", (long long)record->int16_budget_bytes);
  if (record->override_path[0] != '\0')
    fprintf(out, ", %d overrides from %s", record->override_count, record->override_path);
  fprintf(out, "\n");
}

void dst_precision_record_free(dst_precision_record *record) {
  if (record == NULL)
    return;
  dsq_precision_plan_free(&record->plan);
  memset(record, 0, sizeof *record);
}
