/*
 * DMA schedule: the transfers an accelerator performs for one deformable layer, patch by
 * patch, and the compute step each group of transfers feeds.
 *
 * Feature maps live in DRAM channels-last (HWC) with one element of elem_bytes per channel,
 * so the extended patch of a layer is one 2-D strided copy: row_count rows of row_bytes,
 * stride_bytes apart. On chip, two slots of the feature buffer alternate (double
 * buffering): patch i loads into slot i % 2 while patch i - 1 computes from the other.
 */
#ifndef DSR_SCHEDULE_H
#define DSR_SCHEDULE_H

#include <stdint.h>

typedef enum dsr_dma_direction {
  DSR_DMA_LOAD = 0,  /* DRAM to on-chip buffer */
  DSR_DMA_STORE = 1, /* on-chip buffer to DRAM */
} dsr_dma_direction;

typedef enum dsr_dma_buffer {
  DSR_BUFFER_FEATURE_IN = 0,  /* extended patch of the layer input */
  DSR_BUFFER_FEATURE_OUT = 1, /* core patch of the layer output */
  DSR_BUFFER_WEIGHTS = 2,
} dsr_dma_buffer;

/* One 2-D strided copy. */
typedef struct dsr_dma_descriptor {
  uint64_t dram_address;      /* byte address of the first row */
  uint32_t row_bytes;
  uint32_t row_count;
  uint32_t stride_bytes;      /* distance between row starts in DRAM */
  uint32_t chip_offset_bytes; /* destination or source offset inside the buffer slot */
  uint8_t direction;          /* dsr_dma_direction */
  uint8_t buffer;             /* dsr_dma_buffer */
  uint8_t slot;               /* double-buffer slot, 0 or 1 */
  uint8_t bank;               /* first on-chip bank the rows go to */
} dsr_dma_descriptor;

/* The transfers of one patch: loads, then the compute step, then stores. */
typedef struct dsr_dma_step {
  int32_t layer;              /* deformable layer index, in node order */
  int32_t patch;              /* row * cols + col */
  int32_t first_descriptor;   /* index into dsr_schedule.descriptors */
  int32_t load_count;
  int32_t store_count;
} dsr_dma_step;

typedef struct dsr_schedule {
  int32_t step_count;
  dsr_dma_step *steps;
  int32_t descriptor_count;
  dsr_dma_descriptor *descriptors;
} dsr_schedule;

#endif
