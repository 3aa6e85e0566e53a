/*
 * libFuzzer target: the artifact reader and inspector must reject any input without crashing,
 * leaking or reading out of bounds.
 *
 * Each input is read twice: as given, and with every CRC-32 recomputed so that mutations get
 * past the checksums into the section decoders. Build and run it by hand (docs/format.md):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_artifact.c \
 *     formats/dsf_*.c common/ds_status.c common/ds_model.c runtime/dsr_slice.c \
 *     -lzstd -lz -lcjson -lm -o build-fmt/fuzz_artifact
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/ds_model.h"
#include "formats/dsf_artifact.h"

static uint32_t load_u32(const uint8_t *at) {
  return (uint32_t)at[0] | ((uint32_t)at[1] << 8) | ((uint32_t)at[2] << 16) |
         ((uint32_t)at[3] << 24);
}

static uint64_t load_u64(const uint8_t *at) {
  return (uint64_t)load_u32(at) | ((uint64_t)load_u32(at + 4) << 32);
}

static void store_u32(uint8_t *at, uint32_t value) {
  for (int i = 0; i < 4; i++)
    at[i] = (uint8_t)(value >> (8 * i));
}

/* Recomputes the CRC-32 of every in-bounds section and of the header and table. */
static void fix_checksums(uint8_t *data, size_t size) {
  if (size < 64)
    return;
  uint32_t count = load_u32(data + 20);
  if (count > 64 || 64 + (size_t)count * 40 > size)
    return;
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *entry = data + 64 + 40 * i;
    uint64_t offset = load_u64(entry + 8);
    uint64_t stored = load_u64(entry + 16);
    if (offset <= size && stored <= size - offset)
      store_u32(entry + 32, (uint32_t)crc32(0, data + offset, (uInt)stored));
  }
  store_u32(data + 40, 0);
  store_u32(data + 40, (uint32_t)crc32(0, data, 64 + 40 * count));
}

static void read_once(const uint8_t *data, size_t size) {
  dsr_model model;
  dsr_schedule schedule;
  char *manifest;
  ds_error err;
  ds_error_clear(&err);
  if (dsf_read_buffer(data, size, "fuzz", &model, &schedule, &manifest, &err) != DS_OK)
    return;
  ds_model_free(&model);
  dsf_schedule_free(&schedule);
  free(manifest);

  static FILE *sink;
  if (sink == NULL)
    sink = fopen("/dev/null", "w");
  if (sink != NULL)
    dsf_inspect_buffer(data, size, "fuzz", sink, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size copy, so that ASan reports a read one byte past the end. */
  uint8_t *copy = malloc(size > 0 ? size : 1);
  if (copy == NULL)
    return 0;
  memcpy(copy, data, size);
  read_once(copy, size);
  fix_checksums(copy, size);
  read_once(copy, size);
  free(copy);
  return 0;
}
