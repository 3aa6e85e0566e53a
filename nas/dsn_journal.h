/*
 * Search journal and evaluation cache (internal to nas/): a hash table from configuration
 * key to accuracy, loaded from and appended to a JSON-lines file. The file format and its
 * recovery rules are described in nas/dsn_search.h.
 *
 * Not thread-safe: the search serializes calls.
 */
#ifndef DSN_JOURNAL_H
#define DSN_JOURNAL_H

#include <stdint.h>

#include "common/ds_status.h"

typedef struct dsn_journal_record {
  char *key;          /* NULL for an empty slot */
  double accuracy;
  int32_t from_file;  /* loaded from the journal file rather than evaluated in this run */
  int32_t used;       /* looked up at least once in this run */
} dsn_journal_record;

typedef struct dsn_journal {
  int fd;                      /* append descriptor, -1 without a file */
  char *path;
  char *tag;                   /* NULL when lines are not checked */
  int32_t layer_count;
  int32_t capacity;            /* power of two */
  int32_t count;
  dsn_journal_record *records;
} dsn_journal;

typedef void (*dsn_log_fn)(void *user, const char *message);

/*
 * Opens the journal at path (NULL: memory only), loads its records and prepares to append.
 * A torn last line is cut off the file and counted in *skipped_lines with a warning through
 * log. Errors: DS_ERR_JOURNAL (malformed line, wrong layer count, other tag), DS_ERR_IO.
 */
ds_status dsn_journal_open(dsn_journal *journal, const char *path, const char *tag,
                           int32_t layer_count, dsn_log_fn log, void *log_user,
                           int32_t *skipped_lines, ds_error *err);

/*
 * Returns 1 and the accuracy when key is recorded, else 0. *first_file_use is set to 1 when
 * the record came from the file and this is its first lookup in this run (a journal hit).
 */
int32_t dsn_journal_lookup(dsn_journal *journal, const char *key, double *accuracy,
                           int32_t *first_file_use);

/* Records key (copied) in memory and, with a file, appends, flushes and fsyncs its line. */
ds_status dsn_journal_add(dsn_journal *journal, const char *key, double accuracy,
                          int64_t dram_bytes, ds_error *err);

void dsn_journal_close(dsn_journal *journal);

#endif
