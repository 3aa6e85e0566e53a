/*
 * Internals shared by the artifact writer, reader and inspector: the on-disk layout constants,
 * a growable little-endian byte buffer for writing and a bounds-checked cursor for reading.
 * Not part of the public API.
 */
#ifndef DSF_INTERNAL_H
#define DSF_INTERNAL_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>

#include "dsf_artifact.h"

/* Header: byte offsets of each field (see docs/format.md). */
enum {
  DSF_HEADER_MAGIC_OFFSET = 0,
  DSF_HEADER_MAJOR_OFFSET = 8,
  DSF_HEADER_MINOR_OFFSET = 10,
  DSF_HEADER_FLAGS_OFFSET = 12,
  DSF_HEADER_SIZE_OFFSET = 16,
  DSF_HEADER_SECTION_COUNT_OFFSET = 20,
  DSF_HEADER_ENTRY_SIZE_OFFSET = 24,
  DSF_HEADER_ALIGNMENT_OFFSET = 28,
  DSF_HEADER_FILE_SIZE_OFFSET = 32,
  DSF_HEADER_TABLE_CRC_OFFSET = 40,
  DSF_HEADER_RESERVED_OFFSET = 44,
  DSF_HEADER_RESERVED_BYTES = 20,
  DSF_HEADER_BYTES = 64,
};

/* Section table entry: byte offsets inside one entry. */
enum {
  DSF_ENTRY_TYPE_OFFSET = 0,
  DSF_ENTRY_FLAGS_OFFSET = 4,
  DSF_ENTRY_OFFSET_OFFSET = 8,
  DSF_ENTRY_STORED_OFFSET = 16,
  DSF_ENTRY_UNCOMPRESSED_OFFSET = 24,
  DSF_ENTRY_CRC_OFFSET = 32,
  DSF_ENTRY_RESERVED_OFFSET = 36,
  DSF_ENTRY_BYTES = 40,
};

/* The writer never packs a struct: these only pin the documented layout. */
_Static_assert(DSF_MAGIC_BYTES == sizeof(DSF_MAGIC) - 1, "magic is 8 bytes");
_Static_assert(DSF_HEADER_RESERVED_OFFSET + DSF_HEADER_RESERVED_BYTES == DSF_HEADER_BYTES,
               "header fields fill 64 bytes");
_Static_assert(DSF_HEADER_TABLE_CRC_OFFSET + 4 == DSF_HEADER_RESERVED_OFFSET, "header order");
_Static_assert(DSF_ENTRY_RESERVED_OFFSET + 4 == DSF_ENTRY_BYTES, "entry fields fill 40 bytes");
_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24, "floats are IEEE-754 binary32");

#define DSF_ALIGNMENT_BYTES 64u

/* Limits applied before allocating; a file claiming more is rejected as corrupt. */
#define DSF_MAX_SECTIONS 64u
/* Decompressed bytes of one section, and of all compressed sections together. DAT-B's 87.9M
 * parameters as float plus int8 take about 440 MB, an estimate from the parameter count. */
#define DSF_MAX_SECTION_BYTES ((uint64_t)1 << 30)
#define DSF_MAX_FILE_BYTES ((uint64_t)1 << 36)
#define DSF_MAX_TENSORS 1000000u
#define DSF_MAX_NODES 1000000u
#define DSF_MAX_QWORDS 16777216u                    /* per node */
#define DSF_MAX_ELEMENTS ((int64_t)1 << 31)         /* per tensor */
#define DSF_MAX_STEPS 16777216u
#define DSF_MAX_DESCRIPTORS 67108864u
#define DSF_NAME_MAX_BYTES (DSR_NAME_BYTES - 1)      /* stored without the NUL */

/* Wire sizes of fixed records inside sections. */
enum {
  DSF_QPARAMS_WIRE_BYTES = 12, /* f32 scale, i32 zero point, u8 dtype, u8 bits, 2 zero bytes */
  DSF_STEP_WIRE_BYTES = 20,
  DSF_DESCRIPTOR_WIRE_BYTES = 28,
  DSF_SLICE_WIRE_BYTES = 20,
  DSF_NODE_MIN_WIRE_BYTES = 2 + 4 + 4 + 16 + 4 + 4, /* empty name, no attributes */
  DSF_TENSOR_MIN_WIRE_BYTES = 2 + 4 + 4 + DSF_QPARAMS_WIRE_BYTES + 4 + 4 + 4 + 4,
};

/* Attribute payload sizes per op, in bytes. */
enum {
  DSF_ATTR_CONV_BYTES = 9 * 4,
  DSF_ATTR_GEMM_BYTES = 4 * 4,
  DSF_ATTR_NORM_BYTES = 2 * 4,
  DSF_ATTR_AXIS_BYTES = 4,
  DSF_ATTR_TRANSPOSE_BYTES = DSR_MAX_RANK * 4,
  DSF_ATTR_PAD_BYTES = 2 * DSR_MAX_RANK * 4 + 4,
  DSF_DEFORM_WIRE_BYTES = 10 * 4 + 3 * 4 + 4 + DSR_DEFORM_PARAM_COUNT * 4,
};

/* Attribute payload size of op in bytes; 0 for ops without attributes or outside dsr_op. */
static inline uint32_t dsf_op_attr_bytes(int32_t op) {
  switch (op) {
  case DSR_OP_CONV2D: return DSF_ATTR_CONV_BYTES;
  case DSR_OP_GEMM: return DSF_ATTR_GEMM_BYTES;
  case DSR_OP_LAYER_NORM: return DSF_ATTR_NORM_BYTES;
  case DSR_OP_SOFTMAX:
  case DSR_OP_GATHER:
  case DSR_OP_CONCAT: return DSF_ATTR_AXIS_BYTES;
  case DSR_OP_PAD: return DSF_ATTR_PAD_BYTES;
  case DSR_OP_TRANSPOSE: return DSF_ATTR_TRANSPOSE_BYTES;
  default: return 0;
  }
}

/* Tensor blob flags in the tensor descriptor. */
#define DSF_TENSOR_HAS_F32 0x1u
#define DSF_TENSOR_HAS_Q 0x2u
#define DSF_TENSOR_BLOBS_KNOWN (DSF_TENSOR_HAS_F32 | DSF_TENSOR_HAS_Q)

/* ---- Writing ---- */

/* Growable byte buffer; an allocation failure sets failed and later appends do nothing. */
typedef struct dsf_buffer {
  uint8_t *data;
  size_t size;
  size_t capacity;
  int failed;
} dsf_buffer;

void dsf_put_bytes(dsf_buffer *buffer, const void *bytes, size_t count);
void dsf_put_zeros(dsf_buffer *buffer, size_t count);
void dsf_put_u8(dsf_buffer *buffer, uint8_t value);
void dsf_put_u16(dsf_buffer *buffer, uint16_t value);
void dsf_put_u32(dsf_buffer *buffer, uint32_t value);
void dsf_put_u64(dsf_buffer *buffer, uint64_t value);
void dsf_put_i32(dsf_buffer *buffer, int32_t value);
void dsf_put_f32(dsf_buffer *buffer, float value);
/* Appends zeros until size is a multiple of alignment_bytes. */
void dsf_put_align(dsf_buffer *buffer, size_t alignment_bytes);
void dsf_buffer_free(dsf_buffer *buffer);

/* Little-endian stores and loads on raw memory. */
void dsf_store_u32(uint8_t *at, uint32_t value);
void dsf_store_u64(uint8_t *at, uint64_t value);
uint16_t dsf_load_u16(const uint8_t *at);
uint32_t dsf_load_u32(const uint8_t *at);
uint64_t dsf_load_u64(const uint8_t *at);
uint32_t dsf_f32_bits(float value);
float dsf_f32_from_bits(uint32_t bits);

/* CRC-32 (zlib's crc32) of count bytes; handles counts above UINT_MAX. */
uint32_t dsf_crc32(const uint8_t *bytes, size_t count);

/* Size in bytes of one element of dtype, or 0 for a value outside dsr_dtype. */
size_t dsf_dtype_bytes(uint32_t dtype);

/* ---- Reading ---- */

/* Where a cursor reads, for error messages. */
typedef struct dsf_source {
  const char *file_name;
  uint32_t section_index;   /* position in the section table */
  uint32_t section_type;
  uint64_t file_offset;     /* file offset of byte 0 of the cursor's data */
  int decompressed;         /* 1: offsets are inside the decompressed section */
  ds_error *err;
} dsf_source;

/* Bounds-checked reader over untrusted bytes. */
typedef struct dsf_cursor {
  const uint8_t *base;
  size_t size;
  size_t offset;
  const dsf_source *source;
} dsf_cursor;

/*
 * Records status with the prefix "<file>: section <i> (<type>) at offset <n>: " and the
 * formatted detail, and returns status. The offset is the cursor's current position.
 */
ds_status dsf_cursor_fail(const dsf_cursor *cursor, ds_status status, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Each take checks the remaining bytes, then reads a little-endian value. field labels messages. */
ds_status dsf_take_bytes(dsf_cursor *cursor, const char *field, size_t count,
                         const uint8_t **bytes);
ds_status dsf_take_u8(dsf_cursor *cursor, const char *field, uint8_t *value);
ds_status dsf_take_u16(dsf_cursor *cursor, const char *field, uint16_t *value);
ds_status dsf_take_u32(dsf_cursor *cursor, const char *field, uint32_t *value);
ds_status dsf_take_u64(dsf_cursor *cursor, const char *field, uint64_t *value);
ds_status dsf_take_i32(dsf_cursor *cursor, const char *field, int32_t *value);
ds_status dsf_take_f32(dsf_cursor *cursor, const char *field, float *value);
/* Reads a u32 that must be 0 or 1. */
ds_status dsf_take_bool(dsf_cursor *cursor, const char *field, int32_t *value);
/* Reads a u16 length and that many name bytes (at most 95, no NUL) into name. */
ds_status dsf_take_name(dsf_cursor *cursor, const char *field, char name[DSR_NAME_BYTES]);
/*
 * Reads a u32 count and rejects it when above max_count or when count records of
 * min_record_bytes each cannot fit in the remaining bytes, so callers may allocate count.
 */
ds_status dsf_take_count(dsf_cursor *cursor, const char *field, uint32_t max_count,
                         size_t min_record_bytes, uint32_t *count);
/* Fails unless every byte was consumed. */
ds_status dsf_expect_end(const dsf_cursor *cursor);

/* ---- Parsed header and section table ---- */

typedef struct dsf_section_entry {
  uint32_t type;
  uint32_t flags;
  uint64_t offset;
  uint64_t stored_bytes;
  uint64_t uncompressed_bytes;
  uint32_t crc32;
} dsf_section_entry;

typedef struct dsf_layout {
  uint16_t version_major;
  uint16_t version_minor;
  uint32_t flags;
  uint32_t alignment_bytes;
  uint64_t file_bytes;
  uint32_t table_crc32;
  uint32_t section_count;
  dsf_section_entry sections[DSF_MAX_SECTIONS];
  int32_t index_of_type[DSF_SECTION_TYPE_END]; /* table position per known type, or -1 */
} dsf_layout;

/*
 * Validates the header, the section table (bounds, alignment, order, zero gaps) and every
 * section checksum, and fills layout. Does not decompress or decode anything.
 */
ds_status dsf_parse_layout(const uint8_t *data, size_t size, const char *name,
                           dsf_layout *layout, ds_error *err);

/* The bytes of one section after decompression, with where they came from. */
typedef struct dsf_section_view {
  const uint8_t *data;
  size_t size;
  dsf_source source;
} dsf_section_view;

/*
 * Decodes the seven known sections (views indexed by dsf_section_type; index 0 unused) into
 * a heap-built model, schedule and manifest. On failure the outputs may hold partial arrays
 * that the caller frees.
 */
ds_status dsf_decode_sections(const dsf_section_view views[DSF_SECTION_TYPE_END],
                              dsr_model *model, dsr_schedule *schedule, char **manifest_json);

/* Reads the whole file at path into a heap buffer that the caller frees. */
ds_status dsf_read_whole_file(const char *path, uint8_t **data_out, size_t *size_out,
                              ds_error *err);

/* CRC-32 of the header and section table with the table_crc32 field read as zero. */
uint32_t dsf_table_crc32(const uint8_t *data, uint32_t section_count);

#endif
