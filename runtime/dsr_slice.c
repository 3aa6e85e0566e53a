#include "dsr_slice.h"

static int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

void dsr_slice_patch(int32_t height, int32_t width, dsr_slice slice, int32_t row, int32_t col,
                     dsr_patch *patch) {
  patch->core_y0 = (int32_t)((int64_t)row * height / slice.rows);
  patch->core_y1 = (int32_t)((int64_t)(row + 1) * height / slice.rows);
  patch->core_x0 = (int32_t)((int64_t)col * width / slice.cols);
  patch->core_x1 = (int32_t)((int64_t)(col + 1) * width / slice.cols);

  patch->ext_y0 = clamp_i32(patch->core_y0 - slice.overlap, 0, height);
  patch->ext_y1 = clamp_i32(patch->core_y1 + slice.overlap, 0, height);
  patch->ext_x0 = clamp_i32(patch->core_x0 - slice.overlap, 0, width);
  patch->ext_x1 = clamp_i32(patch->core_x1 + slice.overlap, 0, width);
}

dsr_slice dsr_slice_none(void) {
  dsr_slice slice = {1, 1, 0, DSR_SLICE_PHYSICAL};
  return slice;
}

int32_t dsr_slice_max_ext_pixels(int32_t height, int32_t width, dsr_slice slice) {
  int32_t max_pixels = 0;
  for (int32_t r = 0; r < slice.rows; r++) {
    for (int32_t c = 0; c < slice.cols; c++) {
      dsr_patch p;
      dsr_slice_patch(height, width, slice, r, c, &p);
      int32_t pixels = (p.ext_y1 - p.ext_y0) * (p.ext_x1 - p.ext_x0);
      if (pixels > max_pixels)
        max_pixels = pixels;
    }
  }
  return max_pixels;
}
