#include "dsn_preset.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ds_file.h"
#include "nas/dsn_preset_dram.h"

#define PRESET_MAX_FILE_BYTES (1u << 20)

typedef enum field_kind {
  FIELD_NAME = 0,   /* string of 1..63 characters from [a-z0-9_-] */
  FIELD_INT32 = 1,
  FIELD_INT64 = 2,
  FIELD_DOUBLE = 3,
  FIELD_TEXT = 4,   /* string of 1..63 printable ASCII characters */
} field_kind;

/* One field of the description: where it lives in JSON and in dsn_preset, and its range. */
typedef struct field_spec {
  const char *parent; /* NULL at the top level, else the enclosing object */
  const char *key;
  field_kind kind;
  size_t offset;
  double min_value;
  double max_value;
  const int32_t *allowed; /* for integers: the only values allowed, ended by 0; or NULL */
  const char *expected;   /* the allowed range in words, for messages */
  int optional;           /* 1: may be absent (the parent object too, for device fields) */
} field_spec;

static const int32_t bus_widths[] = {8, 16, 32, 64, 128, 256, 512, 1024, 0};
static const int32_t row_sizes[] = {256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 0};
static const int32_t data_bits[] = {8, 16, 0};
static const int32_t accumulator_widths[] = {16, 24, 32, 48, 64, 0};

#define AT(member) offsetof(dsn_preset, member)

static const field_spec fields[] = {
    {NULL, "name", FIELD_NAME, AT(name), 0, 0, NULL,
     "a string of 1..63 characters from a-z, 0-9, '-' and '_'", 0},
    {NULL, "clock_mhz", FIELD_DOUBLE, AT(clock_mhz), 1, 5000, NULL, "a number 1..5000", 0},
    {"dram", "bus_width_bits", FIELD_INT32, AT(dram.bus_width_bits), 8, 1024, bus_widths,
     "one of 8, 16, 32, 64, 128, 256, 512, 1024", 0},
    {"dram", "burst_length", FIELD_INT32, AT(dram.burst_length), 1, 256, NULL,
     "an integer 1..256", 0},
    {"dram", "peak_bandwidth_gbps", FIELD_DOUBLE, AT(dram.peak_bandwidth_gbps), 0.001, 10000,
     NULL, "a number 0.001..10000", 0},
    {"dram", "row_bytes", FIELD_INT32, AT(dram.row_bytes), 256, 65536, row_sizes,
     "a power of two 256..65536", 0},
    {"dram", "row_miss_latency_ns", FIELD_DOUBLE, AT(dram.row_miss_latency_ns), 0, 10000, NULL,
     "a number 0..10000", 0},
    {"dram", "latency_ns", FIELD_DOUBLE, AT(dram.latency_ns), 0, 100000, NULL,
     "a number 0..100000", 0},
    {NULL, "feature_buffer_bytes", FIELD_INT64, AT(feature_buffer_bytes), 1024, 17179869184.0,
     NULL, "an integer 1024..17179869184", 0},
    {NULL, "weight_buffer_bytes", FIELD_INT64, AT(weight_buffer_bytes), 1024, 17179869184.0,
     NULL, "an integer 1024..17179869184", 1},
    {NULL, "feature_banks", FIELD_INT32, AT(feature_banks), 1, 256, NULL, "an integer 1..256", 0},
    {NULL, "sampling_lanes", FIELD_INT32, AT(sampling_lanes), 1, 1024, NULL,
     "an integer 1..1024", 0},
    {"mac_array", "rows", FIELD_INT32, AT(mac_rows), 1, 4096, NULL, "an integer 1..4096", 0},
    {"mac_array", "cols", FIELD_INT32, AT(mac_cols), 1, 4096, NULL, "an integer 1..4096", 0},
    {NULL, "activation_bits", FIELD_INT32, AT(activation_bits), 8, 16, data_bits, "8 or 16", 0},
    {NULL, "weight_bits", FIELD_INT32, AT(weight_bits), 8, 16, data_bits, "8 or 16", 0},
    {NULL, "accumulator_bits", FIELD_INT32, AT(accumulator_bits), 16, 64, accumulator_widths,
     "one of 16, 24, 32, 48, 64", 0},
    {"device", "part", FIELD_TEXT, AT(device.part), 0, 0, NULL,
     "a string of 1..63 printable characters, such as \"XCZU9EG\"", 1},
    {"device", "luts", FIELD_INT32, AT(device.luts), 1, 100000000, NULL,
     "an integer 1..100000000", 1},
    {"device", "bram36_blocks", FIELD_INT32, AT(device.bram36_blocks), 0, 100000, NULL,
     "an integer 0..100000", 1},
    {"device", "uram_blocks", FIELD_INT32, AT(device.uram_blocks), 0, 100000, NULL,
     "an integer 0..100000", 1},
    {"device", "dsp_slices", FIELD_INT32, AT(device.dsp_slices), 1, 1000000, NULL,
     "an integer 1..1000000", 1},
};

#define FIELD_COUNT ((int32_t)(sizeof fields / sizeof fields[0]))

/* Objects of the description; device is optional. */
static const char *const object_keys[] = {"dram", "mac_array", "device"};
static const int object_optional[] = {0, 0, 1};
#define OBJECT_COUNT ((int32_t)(sizeof object_keys / sizeof object_keys[0]))

#define PROBLEM_TAIL_BYTES 112

/* Problems found so far, one line each, collected into one message. */
typedef struct problem_list {
  const char *source;
  int32_t count;
  int32_t omitted; /* lines that did not fit text */
  size_t used;
  char text[sizeof(((ds_error *)0)->message)];
} problem_list;

static void add_problem(problem_list *list, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void add_problem(problem_list *list, const char *format, ...) {
  list->count++;
  char line[512];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof line, format, args);
  va_end(args);
  /* Whole lines only, leaving room for the count of lines that did not fit. */
  size_t room = sizeof list->text - PROBLEM_TAIL_BYTES;
  int needed = snprintf(NULL, 0, "%s%s: %s", list->used > 0 ? "\n" : "", list->source, line);
  if (needed < 0 || list->used + (size_t)needed >= room) {
    list->omitted++;
    return;
  }
  snprintf(list->text + list->used, sizeof list->text - list->used, "%s%s: %s",
           list->used > 0 ? "\n" : "", list->source, line);
  list->used += (size_t)needed;
}

/* Appends how many problems did not fit the message. */
static void finish_problems(problem_list *list) {
  if (list->omitted == 0)
    return;
  snprintf(list->text + list->used, sizeof list->text - list->used,
           "\n%s: %d more problems not shown; fix the ones above and load it again",
           list->source, list->omitted);
}

/* Writes a short rendering of a JSON value for messages: its number, string or type. */
static void describe_value(const cJSON *item, char *text, size_t size) {
  if (cJSON_IsNumber(item))
    snprintf(text, size, "%.17g", item->valuedouble);
  else if (cJSON_IsString(item))
    snprintf(text, size, "the string \"%.40s\"", item->valuestring);
  else if (cJSON_IsBool(item))
    snprintf(text, size, "%s", cJSON_IsTrue(item) ? "true" : "false");
  else if (cJSON_IsNull(item))
    snprintf(text, size, "null");
  else if (cJSON_IsArray(item))
    snprintf(text, size, "an array");
  else
    snprintf(text, size, "an object");
}

static int name_is_valid(const char *name) {
  size_t length = strlen(name);
  if (length == 0 || length >= DSN_PRESET_NAME_BYTES)
    return 0;
  for (size_t i = 0; i < length; i++) {
    char c = name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok)
      return 0;
  }
  return 1;
}

static int text_is_valid(const char *text) {
  size_t length = strlen(text);
  if (length == 0 || length >= DSN_PRESET_NAME_BYTES)
    return 0;
  for (size_t i = 0; i < length; i++) {
    if (text[i] < 0x20 || text[i] > 0x7e)
      return 0;
  }
  return 1;
}

static int integer_is_allowed(const field_spec *spec, double value) {
  if (value < spec->min_value || value > spec->max_value)
    return 0;
  if (spec->allowed == NULL)
    return 1;
  for (const int32_t *a = spec->allowed; *a != 0; a++) {
    if ((double)*a == value)
      return 1;
  }
  return 0;
}

/* Checks one field and stores it into preset when valid. Returns 1 when stored. */
static int read_field(const field_spec *spec, const cJSON *item, dsn_preset *preset,
                      problem_list *problems) {
  char path[96];
  if (spec->parent != NULL)
    snprintf(path, sizeof path, "%s.%s", spec->parent, spec->key);
  else
    snprintf(path, sizeof path, "%s", spec->key);

  if (item == NULL) {
    if (!spec->optional)
      add_problem(problems, "%s is missing; expected %s", path, spec->expected);
    return 0;
  }

  char found[96];
  describe_value(item, found, sizeof found);
  uint8_t *base = (uint8_t *)preset;

  if (spec->kind == FIELD_NAME || spec->kind == FIELD_TEXT) {
    int valid = cJSON_IsString(item) && (spec->kind == FIELD_NAME
                                             ? name_is_valid(item->valuestring)
                                             : text_is_valid(item->valuestring));
    if (!valid) {
      add_problem(problems, "%s is %s; expected %s", path, found, spec->expected);
      return 0;
    }
    snprintf((char *)(base + spec->offset), DSN_PRESET_NAME_BYTES, "%s", item->valuestring);
    return 1;
  }

  if (!cJSON_IsNumber(item)) {
    add_problem(problems, "%s is %s; expected %s", path, found, spec->expected);
    return 0;
  }
  double value = item->valuedouble;
  if (spec->kind == FIELD_DOUBLE) {
    if (!isfinite(value) || value < spec->min_value || value > spec->max_value) {
      add_problem(problems, "%s is %s; expected %s", path, found, spec->expected);
      return 0;
    }
    memcpy(base + spec->offset, &value, sizeof value);
    return 1;
  }

  if (!isfinite(value) || floor(value) != value || !integer_is_allowed(spec, value)) {
    add_problem(problems, "%s is %s; expected %s", path, found, spec->expected);
    return 0;
  }
  if (spec->kind == FIELD_INT32) {
    int32_t v = (int32_t)value;
    memcpy(base + spec->offset, &v, sizeof v);
  } else {
    int64_t v = (int64_t)value;
    memcpy(base + spec->offset, &v, sizeof v);
  }
  return 1;
}

static int key_is_known(const char *parent, const char *key) {
  for (int32_t i = 0; i < FIELD_COUNT; i++) {
    const field_spec *spec = &fields[i];
    int same_parent = (parent == NULL && spec->parent == NULL) ||
                      (parent != NULL && spec->parent != NULL &&
                       strcmp(parent, spec->parent) == 0);
    if (same_parent && strcmp(spec->key, key) == 0)
      return 1;
  }
  if (parent != NULL && strcmp(parent, "dram") == 0 && dsn_preset_dram_key_known(key))
    return 1;
  if (parent == NULL) {
    for (int32_t i = 0; i < OBJECT_COUNT; i++) {
      if (strcmp(object_keys[i], key) == 0)
        return 1;
    }
  }
  return 0;
}

/* Unknown keys are reported too, so that a misspelt field does not go unnoticed. */
static void check_unknown_keys(const cJSON *object, const char *parent, problem_list *problems) {
  const cJSON *child = NULL;
  cJSON_ArrayForEach(child, object) {
    if (child->string != NULL && !key_is_known(parent, child->string)) {
      add_problem(problems, "%s%s%s is not a preset field; remove it or fix its spelling",
                  parent != NULL ? parent : "", parent != NULL ? "." : "", child->string);
    }
    /* JSON leaves a repeated key to the reader; a preset takes each key once, so that no
     * value is dropped without a word. Reported at the second occurrence only. */
    int32_t earlier = 0;
    for (const cJSON *other = object->child; other != NULL && other != child;
         other = other->next) {
      if (child->string != NULL && other->string != NULL &&
          strcmp(other->string, child->string) == 0)
        earlier++;
    }
    if (earlier == 1)
      add_problem(problems, "%s%s%s appears more than once; keep one value",
                  parent != NULL ? parent : "", parent != NULL ? "." : "", child->string);
  }
}

/* Adapter for the DRAM model fields of nas/dsn_preset_dram.c. */
static void add_dram_problem(void *context, const char *line) {
  add_problem((problem_list *)context, "%s", line);
}

/* Which fields were read successfully, by index into fields[]. */
typedef struct field_flags {
  int valid[sizeof fields / sizeof fields[0]];
} field_flags;

static int field_valid(const field_flags *flags, const char *parent, const char *key) {
  for (int32_t i = 0; i < FIELD_COUNT; i++) {
    const field_spec *spec = &fields[i];
    int same_parent = (parent == NULL && spec->parent == NULL) ||
                      (parent != NULL && spec->parent != NULL &&
                       strcmp(parent, spec->parent) == 0);
    if (same_parent && strcmp(spec->key, key) == 0)
      return flags->valid[i];
  }
  return 0;
}

/*
 * Rules between fields. Each runs when the fields it compares were read successfully, so a
 * description with several problems gets every line at once.
 */
static void check_cross_fields(const dsn_preset *preset, const field_flags *flags,
                               problem_list *problems) {
  if (field_valid(flags, "dram", "bus_width_bits") && field_valid(flags, "dram", "burst_length") &&
      field_valid(flags, "dram", "row_bytes")) {
    int64_t burst_bytes = dsn_preset_burst_bytes(preset);
    if (burst_bytes > preset->dram.row_bytes) {
      add_problem(problems,
                  "a burst of %lld bytes (dram.bus_width_bits / 8 * dram.burst_length) is "
                  "larger than dram.row_bytes %d; lower dram.burst_length or raise "
                  "dram.row_bytes so that one burst fits a row",
                  (long long)burst_bytes, preset->dram.row_bytes);
    }
  }
  if (field_valid(flags, NULL, "feature_buffer_bytes") && field_valid(flags, NULL, "feature_banks") &&
      preset->feature_buffer_bytes % preset->feature_banks != 0) {
    add_problem(problems,
                "feature_buffer_bytes %lld does not split into feature_banks %d equal banks; "
                "use a multiple such as %lld",
                (long long)preset->feature_buffer_bytes, preset->feature_banks,
                (long long)(preset->feature_buffer_bytes / preset->feature_banks *
                            preset->feature_banks));
  }
  if (!preset->device.present)
    return;

  int64_t onchip = dsn_preset_onchip_bytes(preset);
  int have_ram = field_valid(flags, "device", "bram36_blocks") &&
                 field_valid(flags, "device", "uram_blocks");
  if (have_ram && field_valid(flags, NULL, "feature_buffer_bytes") &&
      field_valid(flags, NULL, "weight_buffer_bytes")) {
    int64_t buffers = preset->feature_buffer_bytes + preset->weight_buffer_bytes;
    if (buffers > onchip) {
      add_problem(problems,
                  "feature_buffer_bytes + weight_buffer_bytes = %lld exceeds the %lld bytes of "
                  "block RAM of %s (%d BRAM36, %d URAM); lower the buffers or fix device",
                  (long long)buffers, (long long)onchip, preset->device.part,
                  preset->device.bram36_blocks, preset->device.uram_blocks);
    }
  }
  if (field_valid(flags, "device", "dsp_slices") && field_valid(flags, "mac_array", "rows") &&
      field_valid(flags, "mac_array", "cols")) {
    int64_t macs = (int64_t)preset->mac_rows * preset->mac_cols;
    if (macs > preset->device.dsp_slices) {
      add_problem(problems,
                  "mac_array %d x %d needs %lld DSP slices but %s has %d (one per "
                  "multiplier); shrink mac_array",
                  preset->mac_rows, preset->mac_cols, (long long)macs, preset->device.part,
                  preset->device.dsp_slices);
    }
  }
}

ds_status dsn_preset_parse(const char *json_text, size_t length, const char *source,
                           dsn_preset *preset, ds_error *err) {
  if (json_text == NULL || preset == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_preset_parse: json_text and preset "
                                                 "must not be NULL");
  if (source == NULL)
    source = "preset";

  cJSON *root = cJSON_ParseWithLength(json_text, length);
  if (root == NULL) {
    const char *where = cJSON_GetErrorPtr();
    long offset = where != NULL && where >= json_text && where <= json_text + length
                      ? (long)(where - json_text)
                      : -1;
    return ds_fail(err, DS_ERR_PRESET,
                   "%s: not valid JSON (error near byte %ld); expected one JSON object", source,
                   offset);
  }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return ds_fail(err, DS_ERR_PRESET, "%s: the top level is not a JSON object", source);
  }

  memset(preset, 0, sizeof *preset);
  problem_list problems;
  memset(&problems, 0, sizeof problems);
  problems.source = source;

  check_unknown_keys(root, NULL, &problems);
  for (int32_t i = 0; i < OBJECT_COUNT; i++) {
    const cJSON *object = cJSON_GetObjectItemCaseSensitive(root, object_keys[i]);
    if (object == NULL) {
      if (!object_optional[i])
        add_problem(&problems, "%s is missing; expected an object", object_keys[i]);
    } else if (!cJSON_IsObject(object)) {
      char found[96];
      describe_value(object, found, sizeof found);
      add_problem(&problems, "%s is %s; expected an object", object_keys[i], found);
    } else {
      check_unknown_keys(object, object_keys[i], &problems);
    }
  }
  const cJSON *device = cJSON_GetObjectItemCaseSensitive(root, "device");
  preset->device.present = cJSON_IsObject(device);

  field_flags flags;
  memset(&flags, 0, sizeof flags);
  for (int32_t i = 0; i < FIELD_COUNT; i++) {
    const field_spec *spec = &fields[i];
    const cJSON *holder = root;
    int optional = spec->optional;
    if (spec->parent != NULL) {
      holder = cJSON_GetObjectItemCaseSensitive(root, spec->parent);
      if (!cJSON_IsObject(holder))
        continue; /* already reported once for the whole object */
      /* Inside an optional object that is present, every field is required. */
      if (strcmp(spec->parent, "device") == 0)
        optional = 0;
    }
    field_spec required = *spec;
    required.optional = optional;
    flags.valid[i] =
        read_field(&required, cJSON_GetObjectItemCaseSensitive(holder, spec->key), preset,
                   &problems);
  }
  /* An omitted weight buffer is as large as the feature buffer. */
  if (cJSON_GetObjectItemCaseSensitive(root, "weight_buffer_bytes") == NULL) {
    preset->weight_buffer_bytes = preset->feature_buffer_bytes;
    for (int32_t i = 0; i < FIELD_COUNT; i++) {
      if (fields[i].parent == NULL && strcmp(fields[i].key, "weight_buffer_bytes") == 0)
        flags.valid[i] = field_valid(&flags, NULL, "feature_buffer_bytes");
    }
  }
  const cJSON *dram = cJSON_GetObjectItemCaseSensitive(root, "dram");
  dsn_preset_dram_read(cJSON_IsObject(dram) ? dram : NULL, preset, add_dram_problem, &problems);
  cJSON_Delete(root);

  check_cross_fields(preset, &flags, &problems);
  if (problems.count > 0) {
    finish_problems(&problems);
    return ds_fail(err, DS_ERR_PRESET, "%s", problems.text);
  }
  return DS_OK;
}

ds_status dsn_preset_load_file(const char *path, dsn_preset *preset, ds_error *err) {
  uint8_t *data = NULL;
  size_t size = 0;
  ds_status status = ds_file_read_all(path, PRESET_MAX_FILE_BYTES, &data, &size, err);
  if (status != DS_OK)
    return status;

  /* The path as given, so that the user can find the file the message is about. */
  status = dsn_preset_parse((const char *)data, size, path, preset, err);
  free(data);
  return status;
}

ds_status dsn_preset_resolve(const char *name_or_path, dsn_preset *preset, ds_error *err) {
  if (name_or_path == NULL || name_or_path[0] == '\0')
    name_or_path = DSN_DEFAULT_PRESET;
  const char *json = dsn_preset_builtin_json(name_or_path);
  if (json == NULL && strchr(name_or_path, '/') == NULL && strchr(name_or_path, '.') == NULL &&
      access(name_or_path, F_OK) != 0) {
    /* A bare word that is no file: most likely a misspelled built-in name. */
    char names[256] = "";
    size_t used = 0;
    for (int32_t i = 0; i < dsn_preset_builtin_count() && used < sizeof names; i++)
      used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i > 0 ? ", " : "",
                               dsn_preset_builtin_name(i));
    return ds_fail(err, DS_ERR_PRESET,
                   "preset '%s' is neither a built-in preset (%s) nor a file; pass one of "
                   "those names or the path of a JSON description",
                   name_or_path, names);
  }
  if (json == NULL)
    return dsn_preset_load_file(name_or_path, preset, err);

  char source[DSN_PRESET_NAME_BYTES + 16];
  snprintf(source, sizeof source, "%s.json", name_or_path);
  return dsn_preset_parse(json, strlen(json), source, preset, err);
}

int64_t dsn_preset_burst_bytes(const dsn_preset *preset) {
  return (int64_t)(preset->dram.bus_width_bits / 8) * preset->dram.burst_length;
}

int64_t dsn_preset_onchip_bytes(const dsn_preset *preset) {
  if (!preset->device.present)
    return 0;
  return (int64_t)preset->device.bram36_blocks * DSN_BRAM36_BYTES +
         (int64_t)preset->device.uram_blocks * DSN_URAM_BYTES;
}

int32_t dsn_preset_element_bytes(const dsn_preset *preset) {
  return preset->activation_bits / 8;
}
