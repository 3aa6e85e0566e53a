/*
 * Optimized GELU (a lookup table) for the fixed-point runtime, bit-identical to run_gelu in
 * dsr_fixed.c. An int8 input has 256 values, so their outputs are computed once with
 * dsr_fixed_lut_apply itself and then looked up. An int16 input keeps one
 * dsr_fixed_lut_apply per element, without the dtype dispatch of every load and store.
 */
#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"

/* Writes value (already within the output dtype's range) as element i of out. */
static inline void store(void *out, int32_t dtype, int64_t i, int32_t value) {
  if (dtype == DSR_DTYPE_I8)
    ((int8_t *)out)[i] = (int8_t)value;
  else
    ((int16_t *)out)[i] = (int16_t)value;
}

int dsr_fixed_fast_gelu(const dsr_model *model, const dsr_node *node, const void *const *in,
                        void *out) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  int32_t y_dtype = yt->qparams.dtype, y_zero = yt->qparams.zero_point;
  if (y_dtype != DSR_DTYPE_I8 && y_dtype != DSR_DTYPE_I16)
    return 0;
  int32_t y_min, y_max;
  dsr_fixed_dtype_range(y_dtype, &y_min, &y_max);
  const int32_t *block = node->qwords + 1;
  int64_t count = dsr_tensor_elements(xt);
  if (xt->qparams.dtype == DSR_DTYPE_I8) {
    int32_t table[256];
    for (int32_t v = -128; v <= 127; v++)
      table[v + 128] = dsr_fixed_lut_apply(block, v, y_zero, y_min, y_max);
    const int8_t *x = in[0];
    for (int64_t i = 0; i < count; i++)
      store(out, y_dtype, i, table[x[i] + 128]);
    return 1;
  }
  const int16_t *x = in[0];
  for (int64_t i = 0; i < count; i++)
    store(out, y_dtype, i, dsr_fixed_lut_apply(block, x[i], y_zero, y_min, y_max));
  return 1;
}
