/* Whole-file reads and atomic writes (temporary file, fsync, rename). */
#ifndef DS_FILE_H
#define DS_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "ds_status.h"

/*
 * Writes size bytes to path through path.tmp and rename(2), so a reader never sees a partial
 * file and a crash leaves the previous version in place.
 */
ds_status ds_file_write_atomic(const char *path, const void *data, size_t size, ds_error *err);

/*
 * Reads the whole of path into a new heap buffer owned by the caller (free it). Files larger
 * than max_bytes are rejected with DS_ERR_IO naming the size and the limit.
 */
ds_status ds_file_read_all(const char *path, size_t max_bytes, uint8_t **data, size_t *size,
                           ds_error *err);

/* Creates folder path and any missing parents; an existing folder is fine. */
ds_status ds_file_make_dir(const char *path, ds_error *err);

#endif
