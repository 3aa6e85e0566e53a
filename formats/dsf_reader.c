/*
 * Artifact reader: header, section table, checksums and decompression. The section payloads
 * are decoded in dsf_decode.c. Every byte of the input is untrusted.
 *
 * Format 2.0 in brief (docs/format.md is the full specification; all integers little-endian):
 *
 *   offset  size  field
 *   0       8     magic "DSLICE" 0x1A 0x0A
 *   8       2     version major (2); a reader takes every minor of its major
 *   10      2     version minor (0)
 *   12      4     flags: bit 0 DMA_READY (weights stored raw); other bits zero
 *   16      4     header bytes (64)
 *   20      4     section count (1 to 64)
 *   24      4     section entry bytes (40)
 *   28      4     alignment bytes (64)
 *   32      8     file bytes, equal to the file's size
 *   40      4     CRC-32 of bytes [0, 64 + 40 * count) with these four bytes read as zero
 *   44      20    zero
 *   64      40*n  section table; entry: u32 type, u32 flags (bit 0 zstd), u64 offset,
 *                 u64 stored bytes, u64 uncompressed bytes, u32 CRC-32 of the stored bytes,
 *                 u32 zero
 *
 * Sections follow in table order, each at a multiple of 64 bytes, without overlap; the gaps
 * and the tail up to file bytes are zero. Types: 1 graph, 2 tensors, 3 qparams, 4 weights,
 * 5 slices, 6 schedule, 7 manifest, each exactly once; other types are skipped after their
 * bounds and checksum are checked. A compressed section is one zstd frame that declares its
 * content size, equal to the uncompressed bytes and at most 1 GiB.
 *
 * Checks run in this order, so the error names the first problem: magic, version, flags and
 * fixed header fields, file size, table bounds, table CRC, each entry (flags, alignment,
 * bounds, overlap, zero gaps, section CRC), required types, then decompression and decoding.
 */
#include "dsf_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "../common/ds_model.h"

uint32_t dsf_table_crc32(const uint8_t *data, uint32_t section_count) {
  static const uint8_t zeros[4] = {0, 0, 0, 0};
  size_t table_end = DSF_HEADER_BYTES + (size_t)section_count * DSF_ENTRY_BYTES;
  uint32_t crc = dsf_crc32(data, DSF_HEADER_TABLE_CRC_OFFSET);
  crc = (uint32_t)crc32(crc, zeros, sizeof zeros);
  size_t rest = DSF_HEADER_TABLE_CRC_OFFSET + 4;
  return (uint32_t)crc32(crc, data + rest, (uInt)(table_end - rest));
}

static int all_zero(const uint8_t *bytes, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (bytes[i] != 0)
      return 0;
  }
  return 1;
}

/* ---- Header ---- */

static ds_status check_magic(const uint8_t *data, size_t size, const char *name,
                             ds_error *err) {
  size_t compared = size < DSF_MAGIC_BYTES ? size : DSF_MAGIC_BYTES;
  if (memcmp(data, DSF_MAGIC, compared) != 0) {
    return ds_fail(err, DS_ERR_ARTIFACT_MAGIC,
                   "%s: the file does not start with the deformslice magic \"DSLICE\\x1a\\n\" "
                   "(first bytes %02x %02x %02x %02x); it is not a deformslice artifact",
                   name, compared > 0 ? data[0] : 0, compared > 1 ? data[1] : 0,
                   compared > 2 ? data[2] : 0, compared > 3 ? data[3] : 0);
  }
  if (size < DSF_HEADER_BYTES) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                   "%s: the header needs %d bytes but the file has %zu; the file is truncated",
                   name, DSF_HEADER_BYTES, size);
  }
  return DS_OK;
}

static ds_status check_header_fields(const uint8_t *data, const char *name, dsf_layout *layout,
                                     ds_error *err) {
  layout->version_major = dsf_load_u16(data + DSF_HEADER_MAJOR_OFFSET);
  layout->version_minor = dsf_load_u16(data + DSF_HEADER_MINOR_OFFSET);
  if (layout->version_major != DSF_VERSION_MAJOR) {
    return ds_fail(err, DS_ERR_ARTIFACT_VERSION,
                   "%s: format version %u.%u is not supported; this reader takes %d.x, so "
                   "rebuild the artifact with this version of deformslice",
                   name, (unsigned)layout->version_major, (unsigned)layout->version_minor,
                   DSF_VERSION_MAJOR);
  }

  layout->flags = dsf_load_u32(data + DSF_HEADER_FLAGS_OFFSET);
  if ((layout->flags & ~DSF_FILE_FLAGS_KNOWN) != 0) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                   "%s: header at offset %d: flags 0x%08" PRIx32 " set reserved bits 0x%08" PRIx32
                   "; the file is corrupt or from a newer major version",
                   name, DSF_HEADER_FLAGS_OFFSET, layout->flags,
                   layout->flags & ~DSF_FILE_FLAGS_KNOWN);
  }

  uint32_t header_bytes = dsf_load_u32(data + DSF_HEADER_SIZE_OFFSET);
  uint32_t entry_bytes = dsf_load_u32(data + DSF_HEADER_ENTRY_SIZE_OFFSET);
  layout->alignment_bytes = dsf_load_u32(data + DSF_HEADER_ALIGNMENT_OFFSET);
  if (header_bytes != DSF_HEADER_BYTES || entry_bytes != DSF_ENTRY_BYTES ||
      layout->alignment_bytes != DSF_ALIGNMENT_BYTES) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                   "%s: header at offset %d: header bytes %" PRIu32 ", entry bytes %" PRIu32
                   " and alignment %" PRIu32 " must be %d, %d and %u in version %d",
                   name, DSF_HEADER_SIZE_OFFSET, header_bytes, entry_bytes,
                   layout->alignment_bytes, DSF_HEADER_BYTES, DSF_ENTRY_BYTES,
                   DSF_ALIGNMENT_BYTES, DSF_VERSION_MAJOR);
  }
  if (!all_zero(data + DSF_HEADER_RESERVED_OFFSET, DSF_HEADER_RESERVED_BYTES)) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                   "%s: header at offset %d: the %d reserved bytes are not zero; the file is "
                   "corrupt",
                   name, DSF_HEADER_RESERVED_OFFSET, DSF_HEADER_RESERVED_BYTES);
  }
  return DS_OK;
}

static ds_status check_sizes(const uint8_t *data, size_t size, const char *name,
                             dsf_layout *layout, ds_error *err) {
  layout->file_bytes = dsf_load_u64(data + DSF_HEADER_FILE_SIZE_OFFSET);
  if (layout->file_bytes != (uint64_t)size) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                   "%s: header at offset %d: the file should be %" PRIu64
                   " bytes but it has %zu; the file is %s",
                   name, DSF_HEADER_FILE_SIZE_OFFSET, layout->file_bytes, size,
                   layout->file_bytes > (uint64_t)size ? "truncated" : "corrupt or padded");
  }

  layout->section_count = dsf_load_u32(data + DSF_HEADER_SECTION_COUNT_OFFSET);
  if (layout->section_count == 0 || layout->section_count > DSF_MAX_SECTIONS) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                   "%s: header at offset %d: section count %" PRIu32
                   " is outside 1 to %u; the file is corrupt",
                   name, DSF_HEADER_SECTION_COUNT_OFFSET, layout->section_count,
                   DSF_MAX_SECTIONS);
  }
  size_t table_end = DSF_HEADER_BYTES + (size_t)layout->section_count * DSF_ENTRY_BYTES;
  if (table_end > size) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                   "%s: the section table of %" PRIu32 " entries ends at byte %zu but the "
                   "file has %zu; the file is truncated or corrupt",
                   name, layout->section_count, table_end, size);
  }

  layout->table_crc32 = dsf_load_u32(data + DSF_HEADER_TABLE_CRC_OFFSET);
  uint32_t computed = dsf_table_crc32(data, layout->section_count);
  if (computed != layout->table_crc32) {
    return ds_fail(err, DS_ERR_ARTIFACT_CHECKSUM,
                   "%s: header and section table (bytes 0 to %zu): CRC-32 is 0x%08" PRIx32
                   " but the header records 0x%08" PRIx32 "; the file is damaged",
                   name, table_end, computed, layout->table_crc32);
  }
  return DS_OK;
}

/* ---- Section table ---- */

static ds_status entry_fail(const char *name, uint32_t index, const dsf_section_entry *entry,
                            ds_status status, const char *detail, ds_error *err) {
  uint64_t entry_offset = DSF_HEADER_BYTES + (uint64_t)index * DSF_ENTRY_BYTES;
  return ds_fail(err, status, "%s: section %" PRIu32 " (%s), table entry at offset %" PRIu64
                 ": %s", name, index, dsf_section_type_name(entry->type), entry_offset,
                 detail);
}

static void read_entry(const uint8_t *at, dsf_section_entry *entry) {
  entry->type = dsf_load_u32(at + DSF_ENTRY_TYPE_OFFSET);
  entry->flags = dsf_load_u32(at + DSF_ENTRY_FLAGS_OFFSET);
  entry->offset = dsf_load_u64(at + DSF_ENTRY_OFFSET_OFFSET);
  entry->stored_bytes = dsf_load_u64(at + DSF_ENTRY_STORED_OFFSET);
  entry->uncompressed_bytes = dsf_load_u64(at + DSF_ENTRY_UNCOMPRESSED_OFFSET);
  entry->crc32 = dsf_load_u32(at + DSF_ENTRY_CRC_OFFSET);
}

/* Checks one entry against the file; *position is the end of the previous section. */
static ds_status check_entry(const uint8_t *data, size_t size, const char *name, uint32_t index,
                             const dsf_section_entry *entry, uint64_t *position,
                             ds_error *err) {
  char detail[512];
  const uint8_t *raw = data + DSF_HEADER_BYTES + (size_t)index * DSF_ENTRY_BYTES;
  if ((entry->flags & ~DSF_SECTION_FLAGS_KNOWN) != 0 ||
      dsf_load_u32(raw + DSF_ENTRY_RESERVED_OFFSET) != 0) {
    snprintf(detail, sizeof detail, "flags 0x%08" PRIx32 " or the reserved word set reserved "
             "bits; the file is corrupt", entry->flags);
    return entry_fail(name, index, entry, DS_ERR_ARTIFACT_CORRUPT, detail, err);
  }
  if (entry->offset % DSF_ALIGNMENT_BYTES != 0 || entry->offset < *position) {
    snprintf(detail, sizeof detail, "the section starts at offset %" PRIu64 ", which is not a "
             "multiple of %u at or after byte %" PRIu64 " where the previous part ends; the "
             "file is corrupt", entry->offset, DSF_ALIGNMENT_BYTES, *position);
    return entry_fail(name, index, entry, DS_ERR_ARTIFACT_CORRUPT, detail, err);
  }
  if (entry->offset > size || entry->stored_bytes > size - entry->offset) {
    uint64_t left = entry->offset > size ? 0 : size - entry->offset;
    snprintf(detail, sizeof detail, "the section at offset %" PRIu64 " claims %" PRIu64
             " bytes but the file has %" PRIu64 " left; the file is truncated or corrupt",
             entry->offset, entry->stored_bytes, left);
    return entry_fail(name, index, entry, DS_ERR_ARTIFACT_CORRUPT, detail, err);
  }
  if (!all_zero(data + *position, (size_t)(entry->offset - *position))) {
    snprintf(detail, sizeof detail, "the padding between byte %" PRIu64 " and the section at "
             "%" PRIu64 " is not zero; the file is corrupt", *position, entry->offset);
    return entry_fail(name, index, entry, DS_ERR_ARTIFACT_CORRUPT, detail, err);
  }

  int compressed = (entry->flags & DSF_SECTION_ZSTD) != 0;
  if ((!compressed && entry->uncompressed_bytes != entry->stored_bytes) ||
      (compressed && (entry->stored_bytes == 0 ||
                      entry->uncompressed_bytes > DSF_MAX_SECTION_BYTES))) {
    snprintf(detail, sizeof detail, "%s section of %" PRIu64 " stored bytes claims %" PRIu64
             " uncompressed bytes; raw sections must match and compressed ones hold 1 to %"
             PRIu64 " bytes", compressed ? "zstd" : "raw", entry->stored_bytes,
             entry->uncompressed_bytes, DSF_MAX_SECTION_BYTES);
    return entry_fail(name, index, entry, DS_ERR_ARTIFACT_CORRUPT, detail, err);
  }

  uint32_t computed = entry->stored_bytes > 0
                          ? dsf_crc32(data + entry->offset, (size_t)entry->stored_bytes)
                          : 0u;
  if (computed != entry->crc32) {
    snprintf(detail, sizeof detail, "CRC-32 of the %" PRIu64 " stored bytes at offset %" PRIu64
             " is 0x%08" PRIx32 " but the table records 0x%08" PRIx32 "; the section is "
             "damaged", entry->stored_bytes, entry->offset, computed, entry->crc32);
    return entry_fail(name, index, entry, DS_ERR_ARTIFACT_CHECKSUM, detail, err);
  }
  *position = entry->offset + entry->stored_bytes;
  return DS_OK;
}

static ds_status check_section_set(const uint8_t *data, size_t size, const char *name,
                                   uint64_t position, dsf_layout *layout, ds_error *err) {
  if (!all_zero(data + position, (size_t)(size - position))) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                   "%s: the %" PRIu64 " bytes after the last section (offset %" PRIu64
                   ") are not zero; the file is corrupt",
                   name, (uint64_t)size - position, position);
  }
  for (uint32_t type = 1; type < DSF_SECTION_TYPE_END; type++) {
    if (layout->index_of_type[type] < 0) {
      return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                     "%s: the section table has no %s section (type %" PRIu32
                     "); the file is corrupt",
                     name, dsf_section_type_name(type), type);
    }
  }
  const dsf_section_entry *weights =
      &layout->sections[layout->index_of_type[DSF_SECTION_WEIGHTS]];
  if ((layout->flags & DSF_FILE_DMA_READY) && (weights->flags & DSF_SECTION_ZSTD)) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                   "%s: the header flags the file DMA-ready but section %d (weights) is "
                   "compressed; the file is corrupt",
                   name, layout->index_of_type[DSF_SECTION_WEIGHTS]);
  }
  return DS_OK;
}

ds_status dsf_parse_layout(const uint8_t *data, size_t size, const char *name,
                           dsf_layout *layout, ds_error *err) {
  memset(layout, 0, sizeof *layout);
  for (int i = 0; i < DSF_SECTION_TYPE_END; i++)
    layout->index_of_type[i] = -1;
  if (size > DSF_MAX_FILE_BYTES) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT, "%s: the file has %zu bytes, above the limit "
                   "of %" PRIu64, name, size, DSF_MAX_FILE_BYTES);
  }
  DS_TRY(check_magic(data, size, name, err));
  DS_TRY(check_header_fields(data, name, layout, err));
  DS_TRY(check_sizes(data, size, name, layout, err));

  uint64_t position = DSF_HEADER_BYTES + (uint64_t)layout->section_count * DSF_ENTRY_BYTES;
  for (uint32_t i = 0; i < layout->section_count; i++) {
    dsf_section_entry *entry = &layout->sections[i];
    read_entry(data + DSF_HEADER_BYTES + (size_t)i * DSF_ENTRY_BYTES, entry);
    DS_TRY(check_entry(data, size, name, i, entry, &position, err));
    if (entry->type == 0 || entry->type >= DSF_SECTION_TYPE_END)
      continue; /* a type from a later minor version */
    if (layout->index_of_type[entry->type] >= 0) {
      return entry_fail(name, i, entry, DS_ERR_ARTIFACT_CORRUPT,
                        "the section type appears twice in the table; the file is corrupt",
                        err);
    }
    layout->index_of_type[entry->type] = (int32_t)i;
  }
  return check_section_set(data, size, name, position, layout, err);
}

/* ---- Sections ---- */

static ds_status decompress_section(const uint8_t *stored, const dsf_section_entry *entry,
                                    const dsf_section_view *view, uint8_t **owned) {
  dsf_cursor at_start = {stored, (size_t)entry->stored_bytes, 0, &view->source};
  dsf_source raw_source = view->source;
  raw_source.decompressed = 0;
  at_start.source = &raw_source;

  unsigned long long content = ZSTD_getFrameContentSize(stored, (size_t)entry->stored_bytes);
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN ||
      content != entry->uncompressed_bytes) {
    return dsf_cursor_fail(&at_start, DS_ERR_ARTIFACT_CORRUPT,
                           "the zstd frame declares %s%llu content bytes but the table says %"
                           PRIu64 "; the section is corrupt",
                           content == ZSTD_CONTENTSIZE_ERROR     ? "an invalid header, "
                           : content == ZSTD_CONTENTSIZE_UNKNOWN ? "no size, "
                                                                 : "",
                           content >= ZSTD_CONTENTSIZE_ERROR ? 0ull : content,
                           entry->uncompressed_bytes);
  }
  size_t frame_bytes = ZSTD_findFrameCompressedSize(stored, (size_t)entry->stored_bytes);
  if (ZSTD_isError(frame_bytes) || frame_bytes != entry->stored_bytes) {
    return dsf_cursor_fail(&at_start, DS_ERR_ARTIFACT_CORRUPT,
                           "the section must be exactly one zstd frame of %" PRIu64
                           " bytes but the frame is %s; the section is corrupt",
                           entry->stored_bytes,
                           ZSTD_isError(frame_bytes) ? ZSTD_getErrorName(frame_bytes)
                                                     : "shorter");
  }

  size_t capacity = (size_t)entry->uncompressed_bytes;
  uint8_t *buffer = malloc(capacity > 0 ? capacity : 1);
  if (buffer == NULL) {
    return ds_fail(view->source.err, DS_ERR_OUT_OF_MEMORY,
                   "%s: cannot allocate %zu bytes to decompress section %" PRIu32 " (%s)",
                   view->source.file_name, capacity, view->source.section_index,
                   dsf_section_type_name(entry->type));
  }
  size_t written = ZSTD_decompress(buffer, capacity, stored, (size_t)entry->stored_bytes);
  if (ZSTD_isError(written) || written != capacity) {
    free(buffer);
    return dsf_cursor_fail(&at_start, DS_ERR_ARTIFACT_CORRUPT,
                           "zstd decompression failed (%s); the section is corrupt",
                           ZSTD_isError(written) ? ZSTD_getErrorName(written)
                                                 : "short output");
  }
  *owned = buffer;
  return DS_OK;
}

/* Fills views for the known section types, decompressing into owned buffers as needed. */
static ds_status load_sections(const uint8_t *data, const char *name, const dsf_layout *layout,
                               dsf_section_view views[DSF_SECTION_TYPE_END],
                               uint8_t *owned[DSF_SECTION_TYPE_END], ds_error *err) {
  uint64_t decompressed_bytes = 0;
  for (uint32_t type = 1; type < DSF_SECTION_TYPE_END; type++) {
    const dsf_section_entry *entry = &layout->sections[layout->index_of_type[type]];
    if (entry->flags & DSF_SECTION_ZSTD)
      decompressed_bytes += entry->uncompressed_bytes; /* each at most 2^30: no overflow */
  }
  if (decompressed_bytes > DSF_MAX_SECTION_BYTES) {
    return ds_fail(err, DS_ERR_ARTIFACT_CORRUPT,
                   "%s: the compressed sections claim %" PRIu64 " bytes in all, above the limit "
                   "of %" PRIu64 "; the file is corrupt",
                   name, decompressed_bytes, DSF_MAX_SECTION_BYTES);
  }

  for (uint32_t type = 1; type < DSF_SECTION_TYPE_END; type++) {
    uint32_t index = (uint32_t)layout->index_of_type[type];
    const dsf_section_entry *entry = &layout->sections[index];
    dsf_section_view *view = &views[type];
    int compressed = (entry->flags & DSF_SECTION_ZSTD) != 0;
    view->source = (dsf_source){.file_name = name,
                                .section_index = index,
                                .section_type = type,
                                .file_offset = entry->offset,
                                .decompressed = compressed,
                                .err = err};
    if (!compressed) {
      view->data = data + entry->offset;
      view->size = (size_t)entry->stored_bytes;
      continue;
    }
    DS_TRY(decompress_section(data + entry->offset, entry, view, &owned[type]));
    view->data = owned[type];
    view->size = (size_t)entry->uncompressed_bytes;
  }
  return DS_OK;
}

void dsf_schedule_free(dsr_schedule *schedule) {
  if (schedule == NULL)
    return;
  free(schedule->steps);
  free(schedule->descriptors);
  memset(schedule, 0, sizeof *schedule);
}

ds_status dsf_read_buffer(const void *data, size_t size, const char *name, dsr_model *model,
                          dsr_schedule *schedule, char **manifest_json, ds_error *err) {
  if (name == NULL)
    name = "artifact";
  if (model == NULL || (data == NULL && size > 0))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "%s: no model or no data was given", name);
  memset(model, 0, sizeof *model);
  if (schedule != NULL)
    memset(schedule, 0, sizeof *schedule);
  if (manifest_json != NULL)
    *manifest_json = NULL;

  static const uint8_t empty[1] = {0};
  const uint8_t *bytes = data != NULL ? data : empty;
  dsf_layout layout;
  DS_TRY(dsf_parse_layout(bytes, size, name, &layout, err));

  dsf_section_view views[DSF_SECTION_TYPE_END];
  uint8_t *owned[DSF_SECTION_TYPE_END];
  memset(views, 0, sizeof views);
  memset(owned, 0, sizeof owned);
  dsr_schedule local_schedule = {0};
  char *local_manifest = NULL;
  ds_status status = load_sections(bytes, name, &layout, views, owned, err);
  if (status == DS_OK)
    status = dsf_decode_sections(views, model, &local_schedule, &local_manifest);
  for (int i = 0; i < DSF_SECTION_TYPE_END; i++)
    free(owned[i]);

  if (status != DS_OK) {
    ds_model_free(model);
    dsf_schedule_free(&local_schedule);
    free(local_manifest);
    return status;
  }
  if (schedule != NULL)
    *schedule = local_schedule;
  else
    dsf_schedule_free(&local_schedule);
  if (manifest_json != NULL)
    *manifest_json = local_manifest;
  else
    free(local_manifest);
  return DS_OK;
}

ds_status dsf_read_whole_file(const char *path, uint8_t **data_out, size_t *size_out,
                              ds_error *err) {
  *data_out = NULL;
  *size_out = 0;
  FILE *file = fopen(path, "rb");
  if (file == NULL)
    return ds_fail(err, DS_ERR_IO, "cannot open %s: %s", path, strerror(errno));

  size_t capacity = 1 << 16;
  size_t size = 0;
  uint8_t *data = malloc(capacity);
  ds_status status = data != NULL ? DS_OK
                                  : ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate a read "
                                            "buffer for %s", path);
  while (status == DS_OK) {
    if (size == capacity) {
      if ((uint64_t)capacity >= DSF_MAX_FILE_BYTES) {
        status = ds_fail(err, DS_ERR_ARTIFACT_CORRUPT, "%s: the file is larger than the limit "
                         "of %" PRIu64 " bytes", path, DSF_MAX_FILE_BYTES);
        break;
      }
      uint8_t *grown = realloc(data, capacity * 2);
      if (grown == NULL) {
        status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to read %s",
                         capacity * 2, path);
        break;
      }
      data = grown;
      capacity *= 2;
    }
    size_t got = fread(data + size, 1, capacity - size, file);
    size += got;
    if (got == 0) {
      if (ferror(file))
        status = ds_fail(err, DS_ERR_IO, "cannot read %s: %s", path, strerror(errno));
      break;
    }
  }
  fclose(file);
  if (status != DS_OK) {
    free(data);
    return status;
  }
  *data_out = data;
  *size_out = size;
  return DS_OK;
}

ds_status dsf_read_file(const char *path, dsr_model *model, dsr_schedule *schedule,
                        char **manifest_json, ds_error *err) {
  if (path == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "no artifact path was given");
  uint8_t *data;
  size_t size;
  DS_TRY(dsf_read_whole_file(path, &data, &size, err));
  ds_status status = dsf_read_buffer(data, size, path, model, schedule, manifest_json, err);
  free(data);
  return status;
}
