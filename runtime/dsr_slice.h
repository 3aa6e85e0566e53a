/*
 * Patch geometry of a slice configuration, shared by the runtime, the cost oracle and the
 * DMA schedule generator so that all three cut the map the same way.
 *
 * Core patch (r, c) of an H x W map split into rows x cols covers rows
 * [r * H / rows, (r + 1) * H / rows) and the matching columns (integer division, so sizes
 * differ by at most one pixel). The extended patch adds overlap pixels on every side,
 * clipped to the map.
 */
#ifndef DSR_SLICE_H
#define DSR_SLICE_H

#include <stdint.h>

#include "dsr_model.h"

/* Half-open pixel ranges of one patch in full-map coordinates. */
typedef struct dsr_patch {
  int32_t core_y0, core_y1, core_x0, core_x1;
  int32_t ext_y0, ext_y1, ext_x0, ext_x1;
} dsr_patch;

/* Computes patch (row, col) of slice for an height x width map. slice must be valid. */
void dsr_slice_patch(int32_t height, int32_t width, dsr_slice slice, int32_t row, int32_t col,
                     dsr_patch *patch);

/* The unsliced configuration (1, 1, 0, physical). */
dsr_slice dsr_slice_none(void);

/* Largest extended patch, in pixels (height times width), over all patches of slice. */
int32_t dsr_slice_max_ext_pixels(int32_t height, int32_t width, dsr_slice slice);

#endif
