/*
 * Integer primitives of the fixed-point runtime: rounding, requantization, integer square
 * root, exp, LayerNorm and softmax rows, lookup tables and bilinear taps.
 *
 * These functions are the arithmetic an FPGA implementation must reproduce bit for bit, and
 * docs/fixed-point.md states each one in prose. They return no status and never allocate.
 * Callers keep inputs within the documented ranges, which the quantizer and
 * dsr_fixed_check_node establish for the kernels. Every function is pure and thread safe.
 *
 * Rounding is "half away from zero" everywhere (round(2.5) = 3, round(-2.5) = -3).
 */
#ifndef DSR_FIXED_MATH_H
#define DSR_FIXED_MATH_H

#include <stdint.h>

#include "dsr_model.h"

/* Fractional bits of sampling positions (pixels): the largest value for which a bilinear
 * sum of int16 values, sum(w * v) with weights summing to 2^16, fits int32. */
#define DSR_FIXED_POS_FRAC_BITS 8
#define DSR_FIXED_POS_ONE (1 << DSR_FIXED_POS_FRAC_BITS)

/* Fractional bits of the log2-domain argument of the softmax exp, and its table size. */
#define DSR_FIXED_EXP_FRAC_BITS 10
#define DSR_FIXED_EXP_TABLE_COUNT (1 << DSR_FIXED_EXP_FRAC_BITS)

/* Entry i is round(2^30 * 2^(-i / 1024)), i = 0..1023: values in (2^29, 2^30]. */
extern const int32_t dsr_fixed_exp2_table_q30[DSR_FIXED_EXP_TABLE_COUNT];

/* Saturates v to [lo, hi]. */
static inline int64_t dsr_fixed_clamp64(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/* Saturates v to int32. */
static inline int32_t dsr_fixed_sat32(int64_t v) {
  return (int32_t)dsr_fixed_clamp64(v, INT32_MIN, INT32_MAX);
}

/*
 * Rounds x / 2^exponent half away from zero. exponent in 0..62, |x| < 2^62.
 */
static inline int64_t dsr_fixed_round_shift64(int64_t x, int32_t exponent) {
  if (exponent <= 0)
    return x;
  int64_t half = (int64_t)1 << (exponent - 1);
  if (x >= 0)
    return (x + half) >> exponent;
  return -((-x + half) >> exponent);
}

/*
 * Rounds num / den half away from zero. den > 0; |num| < 2^62.
 */
int64_t dsr_fixed_div_round64(int64_t num, int64_t den);

/*
 * Saturating rounding doubling high multiply: round(a * b / 2^31), half away from zero,
 * saturated to int32 (only a = b = INT32_MIN saturates).
 */
static inline int32_t dsr_fixed_srdhm(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN)
    return INT32_MAX;
  /* |a * b| <= 2^62, so the product and its rounding fit int64. */
  return (int32_t)dsr_fixed_round_shift64((int64_t)a * b, 31);
}

/*
 * Rounding divide by a power of two: round(x / 2^exponent), half away from zero.
 * exponent in 0..31.
 */
static inline int32_t dsr_fixed_rdbpot(int32_t x, int32_t exponent) {
  return (int32_t)dsr_fixed_round_shift64(x, exponent);
}

/*
 * Requantizes a 32-bit accumulator by the real factor multiplier * 2^(shift - 31).
 * x is first multiplied by 2^max(shift, 0). If that leaves the int32 range, the result is
 * the int32 limit with the sign of x * multiplier (0 when multiplier is 0). Otherwise it is
 * dsr_fixed_rdbpot(dsr_fixed_srdhm(x * 2^max(shift, 0), multiplier), max(-shift, 0)).
 * shift in [-31, 30]. The two roundings put the result within 1 of the exact product.
 */
static inline int32_t dsr_fixed_requant32(int32_t x, int32_t multiplier, int32_t shift) {
  int32_t left = shift > 0 ? shift : 0;
  int32_t right = shift > 0 ? 0 : -shift;
  /* |x| <= 2^31 and left <= 30: the scaled value fits int64. */
  int64_t scaled = (int64_t)x * ((int64_t)1 << left);
  if (scaled > INT32_MAX || scaled < INT32_MIN) {
    /* |x * 2^shift| >= 2^31 and the multiplier is at least 1/2: saturate. */
    if (multiplier == 0)
      return 0;
    return (scaled > 0) == (multiplier > 0) ? INT32_MAX : INT32_MIN;
  }
  return dsr_fixed_rdbpot(dsr_fixed_srdhm((int32_t)scaled, multiplier), right);
}

/*
 * Requantizes a 64-bit accumulator: x is saturated to [-2^47, 2^47 - 1], the multiplier
 * is reduced to Q15 as m15 = sign(m) * ((|m| + 2^15) >> 16), and the result is
 * round(x * m15 / 2^(15 - shift)) saturated to int32. shift in [-31, 14].
 */
int32_t dsr_fixed_requant64(int64_t x, int32_t multiplier, int32_t shift);

/* floor(sqrt(v)) for any uint64 v, by the bit-by-bit (restoring) method. */
uint64_t dsr_fixed_isqrt64(uint64_t v);

/*
 * 2^(y / 2^10) in Q30 for y <= 0 (y in Q10 log2 units): k = (-y) >> 10, f = (-y) & 1023,
 * rdbpot(table[f], k); 0 for k > 31.
 */
int32_t dsr_fixed_exp2_neg_q30(int32_t y_q10);

/*
 * Softmax of one row. in: count raw quantized values (zero point cancels); exp_scratch:
 * count int32. exp_multiplier/exp_shift: the SOFTMAX pair_exp. Writes output values with
 * out_frac_bits (8: zero point -128, range [-128, 127]; 15: zero point 0, range
 * [-32768, 32767]). count >= 1, |in[i] - in[j]| < 2^17.
 */
void dsr_fixed_softmax_row(const int32_t *in, int32_t count, int32_t exp_multiplier,
                           int32_t exp_shift, int32_t out_frac_bits, int32_t *exp_scratch,
                           int32_t *out);

/*
 * LayerNorm of one row of D = block[0] values (the LN block of quant/dsq_params.h).
 * in: raw input values with zero point in_zero; d_scratch: D int64. Writes D output values
 * with out_zero added, saturated to [out_min, out_max].
 */
void dsr_fixed_layer_norm_row(const int32_t *in, int32_t in_zero, const int32_t *block,
                              int32_t out_zero, int32_t out_min, int32_t out_max,
                              int64_t *d_scratch, int32_t *out);

/*
 * Applies a LUT block (quant/dsq_params.h) to q. Direct tables return the entry; interpolated
 * tables return out_zero + round(v / 2^8) where v is the Q8 interpolation. The result is
 * saturated to [out_min, out_max].
 */
int32_t dsr_fixed_lut_apply(const int32_t *block, int32_t q, int32_t out_zero, int32_t out_min,
                            int32_t out_max);

/*
 * Bilinear taps at position (py, px), Q8 pixels, over an h x w plane: index[t] = row *
 * row_stride + col and weight[t] in Q16 (the four weights sum to 2^16). A tap outside the plane gets
 * weight 0 and index 0, which is the zero padding of grid_sample. Tap order: (y0, x0),
 * (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1) with y0 = floor(py / 2^8).
 */
void dsr_fixed_bilinear_taps(int32_t py, int32_t px, int32_t h, int32_t w, int32_t row_stride,
                             int32_t index[4], int32_t weight[4]);

/* Value range of a quantized dtype (dsr_dtype I8, I16 or I32). */
void dsr_fixed_dtype_range(int32_t dtype, int32_t *min_value, int32_t *max_value);

/* Reads element i of a buffer of dtype I8, I16 or I32. */
static inline int32_t dsr_fixed_load(const void *data, int32_t dtype, int64_t i) {
  if (dtype == DSR_DTYPE_I8)
    return ((const int8_t *)data)[i];
  if (dtype == DSR_DTYPE_I16)
    return ((const int16_t *)data)[i];
  return ((const int32_t *)data)[i];
}

/* Writes element i of a buffer of dtype I8, I16 or I32, saturating to the dtype. */
static inline void dsr_fixed_store(void *data, int32_t dtype, int64_t i, int64_t v) {
  if (dtype == DSR_DTYPE_I8)
    ((int8_t *)data)[i] = (int8_t)dsr_fixed_clamp64(v, INT8_MIN, INT8_MAX);
  else if (dtype == DSR_DTYPE_I16)
    ((int16_t *)data)[i] = (int16_t)dsr_fixed_clamp64(v, INT16_MIN, INT16_MAX);
  else
    ((int32_t *)data)[i] = dsr_fixed_sat32(v);
}

#endif
