/*
 * DMA schedule: the transfers an accelerator performs for every layer of a model, tile by
 * tile, and the compute step each group of transfers feeds.
 *
 * Steps follow the model's node order. A node that moves data gets one or more steps:
 * - a deformable layer (DSR_OP_DEFORM_ATTN) one step per patch of its slice configuration,
 *   with layer set to its deformable layer index;
 * - every other node that reads or writes a feature map (conv, matmul, gemm, layer norm,
 *   elementwise, softmax, GELU, transpose, gather, pooling) one step per tile, with layer -1.
 * Reshapes are views of the same bytes and have no steps.
 *
 * Tensors live in DRAM as dense row-major arrays: feature maps channels-last (HWC), other
 * activations with their last axis innermost, one element of activation_bits per value. A
 * tile is one 2-D strided copy or a few of them: row_count rows of row_bytes, stride_bytes
 * apart. On chip, each buffer has two slots that alternate (double buffering): tile i loads
 * into slot i % 2 while tile i - 1 computes from the other.
 */
#ifndef DSR_SCHEDULE_H
#define DSR_SCHEDULE_H

#include <stdint.h>

typedef enum dsr_dma_direction {
  DSR_DMA_LOAD = 0,  /* DRAM to on-chip buffer */
  DSR_DMA_STORE = 1, /* on-chip buffer to DRAM */
} dsr_dma_direction;

typedef enum dsr_dma_buffer {
  DSR_BUFFER_FEATURE_IN = 0,  /* input tile, or the extended patch of a deformable layer */
  DSR_BUFFER_FEATURE_OUT = 1, /* output tile, or the core patch of a deformable layer */
  DSR_BUFFER_WEIGHTS = 2,     /* weight tile: constant tensors of the node */
  DSR_BUFFER_OPERAND = 3,     /* second activation input: the right-hand matrix of an
                                 activation-by-activation matmul, the other input of an
                                 elementwise op; held in the feature buffer beside the tile */
  DSR_BUFFER_COUNT = 4
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

/* The transfers of one tile or patch: loads, then the compute step, then stores. */
typedef struct dsr_dma_step {
  int32_t layer;              /* deformable layer index (node order), or -1 for a dense tile */
  int32_t patch;              /* deformable: row * cols + col; dense: tile index in the node */
  int32_t first_descriptor;   /* index into dsr_schedule.descriptors */
  int32_t load_count;
  int32_t store_count;
  int32_t node;               /* index into dsr_model.nodes of the node this step computes */
  int64_t compute_cycles;     /* accelerator cycles of the compute step (MAC array, vector
                                 lanes or sampling lanes), 0 when the node only moves data */
} dsr_dma_step;

typedef struct dsr_schedule {
  int32_t step_count;
  dsr_dma_step *steps;
  int32_t descriptor_count;
  dsr_dma_descriptor *descriptors;
} dsr_schedule;

#endif
