/*
 * The deformslice artifact: one binary file that carries a dsr_model, its DMA schedule and a
 * JSON manifest, for the reference runtime and the FPGA loader.
 *
 * The byte-level specification is docs/format.md; the reader (dsf_reader.c) repeats a summary
 * in its top comment. In short: a 64-byte little-endian header, a table of 40-byte section
 * entries (type, flags, offset, stored and uncompressed size, CRC-32), then seven sections,
 * each starting on a 64-byte boundary and optionally zstd-compressed.
 *
 * Ownership: dsf_read_* build every array of the model with its own malloc, so the caller
 * frees the model with ds_model_free (common/ds_model.h), the schedule with dsf_schedule_free
 * and the manifest with free(). On failure every output is left zeroed (NULL), with nothing
 * to free.
 *
 * Errors: bad files return DS_ERR_ARTIFACT_MAGIC, _VERSION, _CORRUPT or _CHECKSUM with a
 * message naming the file, the section, the offset and the value. I/O failures return
 * DS_ERR_IO, allocation failures DS_ERR_OUT_OF_MEMORY, and models the writer cannot store
 * DS_ERR_INVALID_ARGUMENT. Nothing aborts on bad input.
 *
 * Thread safety: the functions keep no global state of their own, so different threads may
 * read and write different artifacts at the same time. (cJSON, which checks the manifest,
 * records its last parse error in a global that this code never reads.)
 */
#ifndef DSF_ARTIFACT_H
#define DSF_ARTIFACT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/ds_status.h"
#include "../runtime/dsr_model.h"
#include "../runtime/dsr_schedule.h"

/* "DSLICE", then 0x1A (stops a DOS `type`) and 0x0A (detects newline translation). */
#define DSF_MAGIC "DSLICE\x1a\n"
#define DSF_MAGIC_BYTES 8

/* A reader takes every minor version of its major version: minors only add section types. */
#define DSF_VERSION_MAJOR 2
#define DSF_VERSION_MINOR 0

/* Header flags. Every other bit is reserved and must be zero. */
#define DSF_FILE_DMA_READY 0x1u /* the weights section is stored uncompressed */
#define DSF_FILE_FLAGS_KNOWN DSF_FILE_DMA_READY

/* Section flags. Every other bit is reserved and must be zero. */
#define DSF_SECTION_ZSTD 0x1u /* the stored bytes are one zstd frame */
#define DSF_SECTION_FLAGS_KNOWN DSF_SECTION_ZSTD

/* Section types, pinned: a retired type stays listed and its number is never reused. */
typedef enum dsf_section_type {
  DSF_SECTION_GRAPH = 1,    /* model name, input, output, nodes with attributes */
  DSF_SECTION_TENSORS = 2,  /* tensor descriptors with offsets into the weights section */
  DSF_SECTION_QPARAMS = 3,  /* qwords per node, deform stage qparams, channel scales */
  DSF_SECTION_WEIGHTS = 4,  /* float and quantized constant data, 64-byte aligned blobs */
  DSF_SECTION_SLICES = 5,   /* slice configuration per deformable layer */
  DSF_SECTION_SCHEDULE = 6, /* DMA steps of every layer and their descriptors */
  DSF_SECTION_MANIFEST = 7, /* UTF-8 JSON text, no terminating NUL */
  DSF_SECTION_TYPE_END = 8  /* one past the last type this version defines */
} dsf_section_type;

/* zstd level used for every compressed section; fixed so that output is reproducible. */
#define DSF_ZSTD_LEVEL 19

typedef struct dsf_write_options {
  int compress;  /* 1: zstd-compress each section whose frame is smaller than its raw bytes */
  int dma_ready; /* 1: keep the weights section uncompressed so it can be DMA'd in place */
} dsf_write_options;

/* Options used when dsf_write_* get NULL: compress everything but the weights. */
dsf_write_options dsf_write_options_default(void);

/*
 * Serializes model, schedule (NULL: no DMA steps) and manifest_json (NULL: empty manifest;
 * otherwise it must parse as JSON) into a new heap buffer that the caller frees with free().
 * The same inputs always give the same bytes. Before returning, the buffer is read back with
 * dsf_read_buffer, so a model the reader would reject (say, a node input past the tensor
 * count) fails here with DS_ERR_INVALID_ARGUMENT and the reader's message.
 */
ds_status dsf_write_buffer(const dsr_model *model, const dsr_schedule *schedule,
                           const char *manifest_json, const dsf_write_options *options,
                           uint8_t **data_out, size_t *size_out, ds_error *err);

/*
 * Writes the artifact to path atomically: the bytes go to "<path>.tmp", which is flushed with
 * fsync and then renamed over path, so readers never see a partial file. On failure the
 * temporary file is removed and path is left as it was.
 */
ds_status dsf_write_file(const char *path, const dsr_model *model, const dsr_schedule *schedule,
                         const char *manifest_json, const dsf_write_options *options,
                         ds_error *err);

/*
 * Reads an artifact from size bytes at data, which are untrusted. name labels error messages
 * (a file name; NULL gives "artifact"). schedule and manifest_json may be NULL when the caller
 * does not want them; their sections are still validated. On success *model is heap-built
 * (free with ds_model_free), *schedule with dsf_schedule_free and *manifest_json (never NULL,
 * possibly "") with free(). data is not retained.
 */
ds_status dsf_read_buffer(const void *data, size_t size, const char *name, dsr_model *model,
                          dsr_schedule *schedule, char **manifest_json, ds_error *err);

/* Reads the file at path into memory and decodes it as dsf_read_buffer does. */
ds_status dsf_read_file(const char *path, dsr_model *model, dsr_schedule *schedule,
                        char **manifest_json, ds_error *err);

/* Frees the arrays of a schedule built by the reader and zeroes it. NULL is fine. */
void dsf_schedule_free(dsr_schedule *schedule);

/*
 * Prints a human-readable summary of an artifact to out. It lists the header, the section
 * table (type, offset, stored and uncompressed bytes, compression ratio, CRC-32), an op
 * histogram, the slice tables and the DMA schedule per layer (steps, descriptors, load and
 * store bytes).
 * The whole artifact is validated first, so a corrupt file prints nothing and returns the
 * reader's error.
 */
ds_status dsf_inspect_buffer(const void *data, size_t size, const char *name, FILE *out,
                             ds_error *err);
ds_status dsf_inspect_file(const char *path, FILE *out, ds_error *err);

/* Returns the lower-case name of a section type ("graph", "weights"), or "unknown". */
const char *dsf_section_type_name(uint32_t type);

#endif
