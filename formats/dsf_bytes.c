/* Little-endian byte buffer, bounds-checked cursor and small helpers of the artifact code. */
#include "dsf_internal.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- Writing ---- */

static int buffer_reserve(dsf_buffer *buffer, size_t count) {
  if (buffer->failed)
    return 0;
  if (count > SIZE_MAX - buffer->size) {
    buffer->failed = 1;
    return 0;
  }
  size_t needed = buffer->size + count;
  if (needed <= buffer->capacity)
    return 1;

  size_t capacity = buffer->capacity < 4096 ? 4096 : buffer->capacity;
  while (capacity < needed)
    capacity = capacity > SIZE_MAX / 2 ? needed : capacity * 2;
  uint8_t *grown = realloc(buffer->data, capacity);
  if (grown == NULL) {
    buffer->failed = 1;
    return 0;
  }
  buffer->data = grown;
  buffer->capacity = capacity;
  return 1;
}

void dsf_put_bytes(dsf_buffer *buffer, const void *bytes, size_t count) {
  if (count == 0 || !buffer_reserve(buffer, count))
    return;
  memcpy(buffer->data + buffer->size, bytes, count);
  buffer->size += count;
}

void dsf_put_zeros(dsf_buffer *buffer, size_t count) {
  if (count == 0 || !buffer_reserve(buffer, count))
    return;
  memset(buffer->data + buffer->size, 0, count);
  buffer->size += count;
}

void dsf_put_u8(dsf_buffer *buffer, uint8_t value) {
  dsf_put_bytes(buffer, &value, 1);
}

void dsf_put_u16(dsf_buffer *buffer, uint16_t value) {
  uint8_t bytes[2] = {(uint8_t)value, (uint8_t)(value >> 8)};
  dsf_put_bytes(buffer, bytes, sizeof bytes);
}

void dsf_put_u32(dsf_buffer *buffer, uint32_t value) {
  uint8_t bytes[4];
  dsf_store_u32(bytes, value);
  dsf_put_bytes(buffer, bytes, sizeof bytes);
}

void dsf_put_u64(dsf_buffer *buffer, uint64_t value) {
  uint8_t bytes[8];
  dsf_store_u64(bytes, value);
  dsf_put_bytes(buffer, bytes, sizeof bytes);
}

void dsf_put_i32(dsf_buffer *buffer, int32_t value) {
  dsf_put_u32(buffer, (uint32_t)value);
}

void dsf_put_f32(dsf_buffer *buffer, float value) {
  dsf_put_u32(buffer, dsf_f32_bits(value));
}

void dsf_put_align(dsf_buffer *buffer, size_t alignment_bytes) {
  size_t remainder = buffer->size % alignment_bytes;
  if (remainder != 0)
    dsf_put_zeros(buffer, alignment_bytes - remainder);
}

void dsf_buffer_free(dsf_buffer *buffer) {
  free(buffer->data);
  memset(buffer, 0, sizeof *buffer);
}

void dsf_store_u32(uint8_t *at, uint32_t value) {
  for (int i = 0; i < 4; i++)
    at[i] = (uint8_t)(value >> (8 * i));
}

void dsf_store_u64(uint8_t *at, uint64_t value) {
  for (int i = 0; i < 8; i++)
    at[i] = (uint8_t)(value >> (8 * i));
}

uint16_t dsf_load_u16(const uint8_t *at) {
  return (uint16_t)(at[0] | (at[1] << 8));
}

uint32_t dsf_load_u32(const uint8_t *at) {
  return (uint32_t)at[0] | ((uint32_t)at[1] << 8) | ((uint32_t)at[2] << 16) |
         ((uint32_t)at[3] << 24);
}

uint64_t dsf_load_u64(const uint8_t *at) {
  return (uint64_t)dsf_load_u32(at) | ((uint64_t)dsf_load_u32(at + 4) << 32);
}

uint32_t dsf_f32_bits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  return bits;
}

float dsf_f32_from_bits(uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

uint32_t dsf_crc32(const uint8_t *bytes, size_t count) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (count > 0) {
    uInt chunk = count > UINT_MAX ? UINT_MAX : (uInt)count;
    crc = crc32(crc, bytes, chunk);
    bytes += chunk;
    count -= chunk;
  }
  return (uint32_t)crc;
}

size_t dsf_dtype_bytes(uint32_t dtype) {
  switch (dtype) {
  case DSR_DTYPE_F32: return 4;
  case DSR_DTYPE_I8: return 1;
  case DSR_DTYPE_I16: return 2;
  case DSR_DTYPE_I32: return 4;
  case DSR_DTYPE_I64: return 8;
  default: return 0;
  }
}

const char *dsf_section_type_name(uint32_t type) {
  switch (type) {
  case DSF_SECTION_GRAPH: return "graph";
  case DSF_SECTION_TENSORS: return "tensors";
  case DSF_SECTION_QPARAMS: return "qparams";
  case DSF_SECTION_WEIGHTS: return "weights";
  case DSF_SECTION_SLICES: return "slices";
  case DSF_SECTION_SCHEDULE: return "schedule";
  case DSF_SECTION_MANIFEST: return "manifest";
  default: return "unknown";
  }
}

/* ---- Reading ---- */

ds_status dsf_cursor_fail(const dsf_cursor *cursor, ds_status status, const char *format, ...) {
  const dsf_source *source = cursor->source;
  char detail[768];
  va_list args;
  va_start(args, format);
  vsnprintf(detail, sizeof detail, format, args);
  va_end(args);

  if (source->decompressed) {
    return ds_fail(source->err, status,
                   "%s: section %" PRIu32 " (%s) at offset %zu of the decompressed bytes: %s",
                   source->file_name, source->section_index,
                   dsf_section_type_name(source->section_type), cursor->offset, detail);
  }
  return ds_fail(source->err, status, "%s: section %" PRIu32 " (%s) at offset %" PRIu64 ": %s",
                 source->file_name, source->section_index,
                 dsf_section_type_name(source->section_type),
                 source->file_offset + (uint64_t)cursor->offset, detail);
}

ds_status dsf_take_bytes(dsf_cursor *cursor, const char *field, size_t count,
                         const uint8_t **bytes) {
  size_t remaining = cursor->size - cursor->offset;
  if (count > remaining) {
    return dsf_cursor_fail(cursor, DS_ERR_ARTIFACT_CORRUPT,
                           "%s needs %zu bytes but the section has %zu left; the file is "
                           "truncated or corrupt",
                           field, count, remaining);
  }
  *bytes = cursor->base + cursor->offset;
  cursor->offset += count;
  return DS_OK;
}

ds_status dsf_take_u8(dsf_cursor *cursor, const char *field, uint8_t *value) {
  const uint8_t *bytes = NULL;
  DS_TRY(dsf_take_bytes(cursor, field, 1, &bytes));
  *value = bytes[0];
  return DS_OK;
}

ds_status dsf_take_u16(dsf_cursor *cursor, const char *field, uint16_t *value) {
  const uint8_t *bytes = NULL;
  DS_TRY(dsf_take_bytes(cursor, field, 2, &bytes));
  *value = dsf_load_u16(bytes);
  return DS_OK;
}

ds_status dsf_take_u32(dsf_cursor *cursor, const char *field, uint32_t *value) {
  const uint8_t *bytes = NULL;
  DS_TRY(dsf_take_bytes(cursor, field, 4, &bytes));
  *value = dsf_load_u32(bytes);
  return DS_OK;
}

ds_status dsf_take_u64(dsf_cursor *cursor, const char *field, uint64_t *value) {
  const uint8_t *bytes = NULL;
  DS_TRY(dsf_take_bytes(cursor, field, 8, &bytes));
  *value = dsf_load_u64(bytes);
  return DS_OK;
}

ds_status dsf_take_i32(dsf_cursor *cursor, const char *field, int32_t *value) {
  uint32_t bits;
  DS_TRY(dsf_take_u32(cursor, field, &bits));
  *value = (int32_t)bits;
  return DS_OK;
}

ds_status dsf_take_f32(dsf_cursor *cursor, const char *field, float *value) {
  uint32_t bits;
  DS_TRY(dsf_take_u32(cursor, field, &bits));
  *value = dsf_f32_from_bits(bits);
  return DS_OK;
}

ds_status dsf_take_bool(dsf_cursor *cursor, const char *field, int32_t *value) {
  size_t at = cursor->offset;
  uint32_t raw;
  DS_TRY(dsf_take_u32(cursor, field, &raw));
  if (raw > 1) {
    dsf_cursor rewound = *cursor;
    rewound.offset = at;
    return dsf_cursor_fail(&rewound, DS_ERR_ARTIFACT_CORRUPT, "%s is %" PRIu32
                           " but must be 0 or 1", field, raw);
  }
  *value = (int32_t)raw;
  return DS_OK;
}

ds_status dsf_take_name(dsf_cursor *cursor, const char *field, char name[DSR_NAME_BYTES]) {
  size_t at = cursor->offset;
  uint16_t length;
  DS_TRY(dsf_take_u16(cursor, field, &length));
  if (length > DSF_NAME_MAX_BYTES) {
    cursor->offset = at;
    return dsf_cursor_fail(cursor, DS_ERR_ARTIFACT_CORRUPT,
                           "%s is %u bytes long but names hold at most %d", field,
                           (unsigned)length, DSF_NAME_MAX_BYTES);
  }
  const uint8_t *bytes = NULL;
  DS_TRY(dsf_take_bytes(cursor, field, length, &bytes));
  if (memchr(bytes, '\0', length) != NULL) {
    cursor->offset = at;
    return dsf_cursor_fail(cursor, DS_ERR_ARTIFACT_CORRUPT, "%s contains a NUL byte", field);
  }
  memcpy(name, bytes, length);
  memset(name + length, 0, DSR_NAME_BYTES - length);
  return DS_OK;
}

ds_status dsf_take_count(dsf_cursor *cursor, const char *field, uint32_t max_count,
                         size_t min_record_bytes, uint32_t *count) {
  size_t at = cursor->offset;
  uint32_t value;
  DS_TRY(dsf_take_u32(cursor, field, &value));
  if (value > max_count) {
    cursor->offset = at;
    return dsf_cursor_fail(cursor, DS_ERR_ARTIFACT_CORRUPT,
                           "%s is %" PRIu32 ", above the limit of %" PRIu32
                           "; the file is corrupt",
                           field, value, max_count);
  }
  size_t remaining = cursor->size - cursor->offset;
  if (min_record_bytes > 0 && value > remaining / min_record_bytes) {
    cursor->offset = at;
    return dsf_cursor_fail(cursor, DS_ERR_ARTIFACT_CORRUPT,
                           "%s is %" PRIu32 " records of at least %zu bytes but the section "
                           "has %zu bytes left; the file is truncated or corrupt",
                           field, value, min_record_bytes, remaining);
  }
  *count = value;
  return DS_OK;
}

ds_status dsf_expect_end(const dsf_cursor *cursor) {
  if (cursor->offset != cursor->size) {
    return dsf_cursor_fail(cursor, DS_ERR_ARTIFACT_CORRUPT,
                           "%zu bytes follow the last record; the section is corrupt",
                           cursor->size - cursor->offset);
  }
  return DS_OK;
}
