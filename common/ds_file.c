#include "ds_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ds_status ds_file_write_atomic(const char *path, const void *data, size_t size, ds_error *err) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "%s: path too long", path);

  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    return ds_fail(err, DS_ERR_IO, "%s: cannot create (%s)", tmp, strerror(errno));

  const uint8_t *bytes = data;
  size_t written = 0;
  while (written < size) {
    ssize_t n = write(fd, bytes + written, size - written);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int saved = errno;
      close(fd);
      unlink(tmp);
      return ds_fail(err, DS_ERR_IO, "%s: write failed after %zu of %zu bytes (%s)", tmp, written,
                     size, strerror(saved));
    }
    written += (size_t)n;
  }

  if (fsync(fd) != 0 || close(fd) != 0) {
    int saved = errno;
    unlink(tmp);
    return ds_fail(err, DS_ERR_IO, "%s: cannot flush to disk (%s)", tmp, strerror(saved));
  }
  if (rename(tmp, path) != 0) {
    int saved = errno;
    unlink(tmp);
    return ds_fail(err, DS_ERR_IO, "cannot rename %s to %s (%s)", tmp, path, strerror(saved));
  }
  return DS_OK;
}

ds_status ds_file_read_all(const char *path, size_t max_bytes, uint8_t **data, size_t *size,
                           ds_error *err) {
  *data = NULL;
  *size = 0;

  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return ds_fail(err, DS_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));

  struct stat info;
  if (fstat(fileno(f), &info) != 0 || !S_ISREG(info.st_mode)) {
    fclose(f);
    return ds_fail(err, DS_ERR_IO, "%s: not a regular file", path);
  }
  if ((uint64_t)info.st_size > max_bytes) {
    fclose(f);
    return ds_fail(err, DS_ERR_IO, "%s: %lld bytes, larger than the %zu-byte limit", path,
                   (long long)info.st_size, max_bytes);
  }

  size_t length = (size_t)info.st_size;
  uint8_t *buffer = malloc(length > 0 ? length : 1);
  if (buffer == NULL) {
    fclose(f);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", path, length);
  }
  if (fread(buffer, 1, length, f) != length) {
    fclose(f);
    free(buffer);
    return ds_fail(err, DS_ERR_IO, "%s: read failed", path);
  }
  fclose(f);

  *data = buffer;
  *size = length;
  return DS_OK;
}

ds_status ds_file_make_dir(const char *path, ds_error *err) {
  char partial[4096];
  size_t length = strlen(path);
  if (length == 0 || length >= sizeof partial)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "folder path '%s' is empty or too long", path);

  /* Create each missing parent in turn, as mkdir -p does. */
  memcpy(partial, path, length + 1);
  for (size_t i = 1; i <= length; i++) {
    if (partial[i] != '/' && partial[i] != '\0')
      continue;
    char saved = partial[i];
    partial[i] = '\0';
    if (mkdir(partial, 0755) != 0 && errno != EEXIST)
      return ds_fail(err, DS_ERR_IO, "%s: cannot create folder (%s)", partial, strerror(errno));
    partial[i] = saved;
  }

  struct stat info;
  if (stat(path, &info) != 0 || !S_ISDIR(info.st_mode))
    return ds_fail(err, DS_ERR_IO, "%s exists but is not a folder; pass another --out", path);
  return DS_OK;
}
