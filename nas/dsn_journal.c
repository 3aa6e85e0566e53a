#include "dsn_journal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ds_file.h"
#include "nas/dsn_oracle.h"

#define JOURNAL_MAX_BYTES ((size_t)1 << 30)

static uint64_t hash_key(const char *key) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
    h ^= *p;
    h *= 1099511628211ull;
  }
  return h;
}

static char *copy_string(const char *text) {
  size_t length = strlen(text);
  char *copy = malloc(length + 1);
  if (copy != NULL)
    memcpy(copy, text, length + 1);
  return copy;
}

static dsn_journal_record *find_slot(dsn_journal_record *records, int32_t capacity,
                                     const char *key) {
  uint64_t mask = (uint64_t)capacity - 1;
  for (uint64_t i = hash_key(key) & mask;; i = (i + 1) & mask) {
    if (records[i].key == NULL || strcmp(records[i].key, key) == 0)
      return &records[i];
  }
}

static ds_status grow(dsn_journal *journal, ds_error *err) {
  int32_t capacity = journal->capacity == 0 ? 64 : journal->capacity * 2;
  dsn_journal_record *records = calloc((size_t)capacity, sizeof *records);
  if (records == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot grow the evaluation cache to %d "
                                              "entries", capacity);
  for (int32_t i = 0; i < journal->capacity; i++) {
    if (journal->records[i].key != NULL)
      *find_slot(records, capacity, journal->records[i].key) = journal->records[i];
  }
  free(journal->records);
  journal->records = records;
  journal->capacity = capacity;
  return DS_OK;
}

/* Inserts key in memory; a key already present keeps its first accuracy. */
static ds_status insert(dsn_journal *journal, const char *key, double accuracy,
                        int32_t from_file, ds_error *err) {
  if ((journal->count + 1) * 2 > journal->capacity)
    DS_TRY(grow(journal, err));
  dsn_journal_record *slot = find_slot(journal->records, journal->capacity, key);
  if (slot->key != NULL)
    return DS_OK;
  slot->key = copy_string(key);
  if (slot->key == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot copy a configuration key");
  slot->accuracy = accuracy;
  slot->from_file = from_file;
  slot->used = !from_file;
  journal->count++;
  return DS_OK;
}

int32_t dsn_journal_lookup(dsn_journal *journal, const char *key, double *accuracy,
                           int32_t *first_file_use) {
  *first_file_use = 0;
  if (journal->capacity == 0)
    return 0;
  dsn_journal_record *slot = find_slot(journal->records, journal->capacity, key);
  if (slot->key == NULL)
    return 0;
  *accuracy = slot->accuracy;
  *first_file_use = slot->from_file && !slot->used;
  slot->used = 1;
  return 1;
}

/* Checks that key names layer_count valid configurations. */
static int key_is_valid(const char *key, int32_t layer_count) {
  int32_t layers = 0;
  const char *start = key;
  for (;;) {
    const char *end = strchr(start, ',');
    size_t length = end != NULL ? (size_t)(end - start) : strlen(start);
    char part[32];
    if (length == 0 || length >= sizeof part)
      return 0;
    memcpy(part, start, length);
    part[length] = '\0';
    dsr_slice slice;
    if (dsn_slice_parse(part, &slice) != 0)
      return 0;
    layers++;
    if (end == NULL)
      break;
    start = end + 1;
  }
  return layers == layer_count;
}

static ds_status parse_line(dsn_journal *journal, const char *line, size_t length,
                            int64_t line_number, ds_error *err) {
  cJSON *root = cJSON_ParseWithLength(line, length);
  if (root == NULL || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return ds_fail(err, DS_ERR_JOURNAL,
                   "%s line %lld: not a JSON object; fix or delete the line, or use a new "
                   "journal file",
                   journal->path, (long long)line_number);
  }
  const cJSON *key = cJSON_GetObjectItemCaseSensitive(root, "key");
  const cJSON *accuracy = cJSON_GetObjectItemCaseSensitive(root, "accuracy");
  const cJSON *tag = cJSON_GetObjectItemCaseSensitive(root, "tag");
  ds_status status = DS_OK;
  if (!cJSON_IsString(key) || !key_is_valid(key->valuestring, journal->layer_count)) {
    status = ds_fail(err, DS_ERR_JOURNAL,
                     "%s line %lld: \"key\" is missing or does not name %d slice "
                     "configurations such as \"2x2+1\"; the journal may belong to another "
                     "model",
                     journal->path, (long long)line_number, journal->layer_count);
  } else if (!cJSON_IsNumber(accuracy) || !isfinite(accuracy->valuedouble)) {
    status = ds_fail(err, DS_ERR_JOURNAL, "%s line %lld: \"accuracy\" is missing or not a "
                                          "finite number",
                     journal->path, (long long)line_number);
  } else if (journal->tag != NULL &&
             (!cJSON_IsString(tag) || strcmp(tag->valuestring, journal->tag) != 0)) {
    status = ds_fail(err, DS_ERR_JOURNAL,
                     "%s line %lld: tag \"%s\" differs from this search's \"%s\"; the journal "
                     "was written for another model or data set, so use another journal file",
                     journal->path, (long long)line_number,
                     cJSON_IsString(tag) ? tag->valuestring : "", journal->tag);
  } else {
    status = insert(journal, key->valuestring, accuracy->valuedouble, 1, err);
  }
  cJSON_Delete(root);
  return status;
}

/* Loads the records of data; returns in *valid_bytes the length up to the last full line. */
static ds_status load_records(dsn_journal *journal, const char *data, size_t size,
                              size_t *valid_bytes, int32_t *skipped_lines, dsn_log_fn log,
                              void *log_user, ds_error *err) {
  size_t offset = 0;
  int64_t line_number = 0;
  while (offset < size) {
    line_number++;
    const char *line = data + offset;
    const char *newline = memchr(line, '\n', size - offset);
    if (newline == NULL) {
      /* A line is written with its newline in one call, so an unterminated one is torn. */
      char message[512];
      snprintf(message, sizeof message,
               "%s line %lld: incomplete last line (%zu bytes), probably from a run that was "
               "stopped while writing; skipped and removed",
               journal->path, (long long)line_number, size - offset);
      if (log != NULL)
        log(log_user, message);
      else
        fprintf(stderr, "warning: %s\n", message);
      (*skipped_lines)++;
      break;
    }
    size_t length = (size_t)(newline - line);
    int blank = 1;
    for (size_t i = 0; i < length && blank; i++)
      blank = line[i] == ' ' || line[i] == '\t' || line[i] == '\r';
    if (!blank)
      DS_TRY(parse_line(journal, line, length, line_number, err));
    offset += length + 1;
  }
  *valid_bytes = offset;
  return DS_OK;
}

ds_status dsn_journal_open(dsn_journal *journal, const char *path, const char *tag,
                           int32_t layer_count, dsn_log_fn log, void *log_user,
                           int32_t *skipped_lines, ds_error *err) {
  memset(journal, 0, sizeof *journal);
  journal->fd = -1;
  journal->layer_count = layer_count;
  *skipped_lines = 0;
  if (tag != NULL && tag[0] != '\0') {
    journal->tag = copy_string(tag);
    if (journal->tag == NULL)
      return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot copy the journal tag");
  }
  if (path == NULL)
    return DS_OK;
  journal->path = copy_string(path);
  if (journal->path == NULL) {
    dsn_journal_close(journal);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot copy the journal path");
  }

  struct stat info;
  size_t valid_bytes = 0;
  int exists = stat(path, &info) == 0;
  if (exists) {
    uint8_t *data = NULL;
    size_t size = 0;
    ds_status status = ds_file_read_all(path, JOURNAL_MAX_BYTES, &data, &size, err);
    if (status == DS_OK)
      status = load_records(journal, (const char *)data, size, &valid_bytes, skipped_lines,
                            log, log_user, err);
    free(data);
    if (status != DS_OK) {
      dsn_journal_close(journal);
      return status;
    }
    if (valid_bytes < size && truncate(path, (off_t)valid_bytes) != 0) {
      int code = errno;
      dsn_journal_close(journal);
      return ds_fail(err, DS_ERR_IO, "%s: cannot cut the torn last line: %s", path,
                     strerror(code));
    }
  }

  journal->fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (journal->fd < 0) {
    int code = errno;
    dsn_journal_close(journal);
    return ds_fail(err, DS_ERR_IO, "%s: cannot open the journal for appending: %s", path,
                   strerror(code));
  }
  return DS_OK;
}

static ds_status write_all(int fd, const char *text, size_t length, const char *path,
                           ds_error *err) {
  while (length > 0) {
    ssize_t written = write(fd, text, length);
    if (written < 0 && errno == EINTR)
      continue;
    if (written <= 0)
      return ds_fail(err, DS_ERR_IO, "%s: cannot append to the journal: %s", path,
                     strerror(errno));
    text += written;
    length -= (size_t)written;
  }
  return DS_OK;
}

ds_status dsn_journal_add(dsn_journal *journal, const char *key, double accuracy,
                          int64_t dram_bytes, ds_error *err) {
  DS_TRY(insert(journal, key, accuracy, 0, err));
  if (journal->fd < 0)
    return DS_OK;

  cJSON *root = cJSON_CreateObject();
  if (root == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build a journal line");
  cJSON_AddStringToObject(root, "key", key);
  /* %.17g round-trips every double; cJSON's own printing may drop the last bit, and a
   * resumed search must see exactly the accuracy the first run saw. */
  char number[40];
  snprintf(number, sizeof number, "%.17g", accuracy);
  cJSON_AddRawToObject(root, "accuracy", number);
  cJSON_AddNumberToObject(root, "dram_bytes", (double)dram_bytes);
  if (journal->tag != NULL)
    cJSON_AddStringToObject(root, "tag", journal->tag);
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (text == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot print a journal line");

  /* One write of the line and its newline, so a torn line is always the unterminated one. */
  size_t length = strlen(text);
  char *line = malloc(length + 2);
  if (line == NULL) {
    cJSON_free(text);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build a journal line");
  }
  memcpy(line, text, length);
  line[length] = '\n';
  line[length + 1] = '\0';
  cJSON_free(text);

  ds_status status = write_all(journal->fd, line, length + 1, journal->path, err);
  free(line);
  if (status == DS_OK && fsync(journal->fd) != 0)
    status = ds_fail(err, DS_ERR_IO, "%s: fsync failed: %s", journal->path, strerror(errno));
  return status;
}

void dsn_journal_close(dsn_journal *journal) {
  if (journal == NULL)
    return;
  if (journal->fd >= 0)
    close(journal->fd);
  for (int32_t i = 0; i < journal->capacity; i++)
    free(journal->records[i].key);
  free(journal->records);
  free(journal->path);
  free(journal->tag);
  memset(journal, 0, sizeof *journal);
  journal->fd = -1;
}
