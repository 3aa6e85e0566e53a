/*
 * Row helpers of the optimized fixed-point kernels: requantization of whole accumulator rows,
 * saturating stores and int16 dot products.
 *
 * The requantization here gives exactly the values of dsr_fixed_requant32 and
 * dsr_fixed_requant64, written without branches so that the compiler can vectorize it. The
 * rounding "half away from zero" of x / 2^e (e >= 1) is computed as
 * (x + 2^(e-1) - (x < 0)) >> e with an arithmetic right shift (GCC and Clang define >> on
 * negative values so). For x >= 0 that is the reference (x + half) >> e. For x < 0 the
 * reference -((-x + half) >> e) equals ceil((x - half) / 2^e), and
 * floor((x - half + 2^e - 1) / 2^e) is the same ceiling.
 */
#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"

/* round(x / 2^exponent) half away from zero, exponent in 1..62 and |x| + 2^61 < 2^63. */
static inline int64_t round_shift(int64_t x, int32_t exponent) {
  return (x + ((int64_t)1 << (exponent - 1)) - (x < 0)) >> exponent;
}

/*
 * round_shift for |x| < 2^62 through a logical shift, which AVX2 has for 64-bit lanes:
 * adding 2^62 makes the operand non-negative and adds exactly 2^(62 - exponent) to the
 * quotient, which is then taken back out.
 */
static inline int64_t round_shift_biased(int64_t x, int32_t exponent) {
  uint64_t biased = (uint64_t)(x + ((int64_t)1 << (exponent - 1)) - (x < 0)) + ((uint64_t)1 << 62);
  return (int64_t)(biased >> exponent) - ((int64_t)1 << (62 - exponent));
}

/*
 * dsr_fixed_requant32 without branches. The scaled value x * 2^left (|x| <= 2^31, left <= 30)
 * fits int64. When it leaves int32 the result is the saturated value the reference returns.
 * Otherwise srdhm is round(scaled * m / 2^31): |scaled * m| < 2^62, and m != INT32_MIN after
 * the plan-time check, so the reference's own saturation case cannot occur. Then comes the
 * rounding right shift by right = max(-shift, 0).
 */
static inline int32_t requant32(int32_t x, int32_t multiplier, int32_t shift) {
  int32_t left = shift > 0 ? shift : 0;
  int32_t right = shift > 0 ? 0 : -shift;
  int64_t scaled = (int64_t)x * ((int64_t)1 << left);
  int64_t clamped = scaled < INT32_MIN ? INT32_MIN : (scaled > INT32_MAX ? INT32_MAX : scaled);
  int64_t high = round_shift_biased(clamped * multiplier, 31);
  int32_t rounded = right == 0 ? (int32_t)high : (int32_t)round_shift_biased(high, right);
  int32_t saturated = (scaled > 0) == (multiplier > 0) ? INT32_MAX : INT32_MIN;
  if (multiplier == 0)
    saturated = 0;
  return scaled != clamped ? saturated : rounded;
}

/* requant32 for shift <= 0, where nothing saturates and right = -shift. |x * m| < 2^62, and
 * the high part is within 2^31. */
static inline int32_t requant32_right(int32_t x, int32_t multiplier, int32_t right) {
  int64_t high = round_shift_biased((int64_t)x * multiplier, 31);
  return right == 0 ? (int32_t)high : (int32_t)round_shift_biased(high, right);
}

DSR_FIXED_VECTOR_CLONES
void dsr_fixed_requant_row32(const int32_t *acc, int64_t count, const int32_t *pairs,
                             int32_t pair_stride, int32_t *values) {
  if (pair_stride == 0) {
    int32_t multiplier = pairs[0], shift = pairs[1];
    if (shift <= 0) {
      for (int64_t i = 0; i < count; i++)
        values[i] = requant32_right(acc[i], multiplier, -shift);
    } else {
      for (int64_t i = 0; i < count; i++)
        values[i] = requant32(acc[i], multiplier, shift);
    }
    return;
  }
  for (int64_t i = 0; i < count; i++)
    values[i] = requant32(acc[i], pairs[i * pair_stride], pairs[i * pair_stride + 1]);
}

/*
 * dsr_fixed_requant64 with the Q15 multiplier m15 and exponent = 15 - shift, which the
 * plan-time check keeps in 1..46: x saturated to +-2^47 times |m15| <= 2^15 stays within 2^62.
 */
static inline int32_t requant64_q15(int64_t x, int64_t m15, int32_t exponent) {
  const int64_t limit = (int64_t)1 << 47;
  int64_t clamped = x < -limit ? -limit : (x > limit - 1 ? limit - 1 : x);
  return dsr_fixed_sat32(round_shift(clamped * m15, exponent));
}

/* The Q15 reduction of a multiplier, as dsr_fixed_requant64 does it. */
static int64_t multiplier_q15(int32_t multiplier) {
  int64_t magnitude = multiplier >= 0 ? (int64_t)multiplier : -(int64_t)multiplier;
  int64_t m15 = (magnitude + ((int64_t)1 << 15)) >> 16;
  return multiplier < 0 ? -m15 : m15;
}

DSR_FIXED_VECTOR_CLONES
void dsr_fixed_requant_row64(const int64_t *acc, int64_t count, const int32_t *pairs,
                             int32_t pair_stride, int32_t *values) {
  int64_t distinct = pair_stride == 0 ? 1 : count;
  for (int64_t i = 0; i < distinct; i++) {
    int32_t exponent = 15 - pairs[i * pair_stride + 1];
    if (exponent < 1 || exponent > 46) {
      for (int64_t k = 0; k < count; k++) {
        const int32_t *pair = pairs + k * pair_stride;
        values[k] = dsr_fixed_requant64(acc[k], pair[0], pair[1]);
      }
      return;
    }
  }
  if (pair_stride == 0) {
    int64_t m15 = multiplier_q15(pairs[0]);
    int32_t exponent = 15 - pairs[1];
    for (int64_t i = 0; i < count; i++)
      values[i] = requant64_q15(acc[i], m15, exponent);
    return;
  }
  for (int64_t i = 0; i < count; i++) {
    const int32_t *pair = pairs + i * pair_stride;
    values[i] = requant64_q15(acc[i], multiplier_q15(pair[0]), 15 - pair[1]);
  }
}

DSR_FIXED_VECTOR_CLONES
void dsr_fixed_store_row(const int32_t *values, int64_t count, int32_t zero, int32_t dtype,
                         void *out, int64_t offset) {
  /* clamp(zero + v, lo, hi) equals zero + clamp(v, lo - zero, hi - zero), whose terms all
   * fit int32 for int8 and int16 outputs (|zero| <= 2^15), so the loops stay in 32 bits. */
  if (dtype == DSR_DTYPE_I8) {
    int8_t *dst = (int8_t *)out + offset;
    int32_t lo = INT8_MIN - zero, hi = INT8_MAX - zero;
    for (int64_t i = 0; i < count; i++) {
      int32_t v = values[i] < lo ? lo : (values[i] > hi ? hi : values[i]);
      dst[i] = (int8_t)(v + zero);
    }
  } else if (dtype == DSR_DTYPE_I16) {
    int16_t *dst = (int16_t *)out + offset;
    int32_t lo = INT16_MIN - zero, hi = INT16_MAX - zero;
    for (int64_t i = 0; i < count; i++) {
      int32_t v = values[i] < lo ? lo : (values[i] > hi ? hi : values[i]);
      dst[i] = (int16_t)(v + zero);
    }
  } else {
    for (int64_t i = 0; i < count; i++)
      dsr_fixed_store(out, dtype, offset + i, zero + (int64_t)values[i]);
  }
}

DSR_FIXED_VECTOR_CLONES
int32_t dsr_fixed_dot16(const int16_t *restrict a, const int16_t *restrict b, int32_t count) {
  int32_t acc = 0;
  for (int32_t i = 0; i < count; i++)
    acc += a[i] * b[i];
  return acc;
}

DSR_FIXED_VECTOR_CLONES
int64_t dsr_fixed_dot16_wide(const int16_t *restrict a, const int16_t *restrict b, int32_t count,
                             int32_t chunk) {
  int64_t acc = 0;
  if (chunk <= 1) {
    for (int32_t i = 0; i < count; i++)
      acc += (int64_t)(a[i] * b[i]);
    return acc;
  }
  for (int32_t start = 0; start < count; start += chunk) {
    int32_t end = count - start > chunk ? start + chunk : count;
    int32_t part = 0;
    for (int32_t i = start; i < end; i++)
      part += a[i] * b[i];
    acc += part;
  }
  return acc;
}

DSR_FIXED_VECTOR_CLONES
void dsr_fixed_dot16x4(const int16_t *restrict x, const int16_t *restrict rows, int32_t count,
                       int32_t sums[4]) {
  const int16_t *r0 = rows, *r1 = rows + count, *r2 = r1 + count, *r3 = r2 + count;
  int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int32_t i = 0; i < count; i++) {
    s0 += x[i] * r0[i];
    s1 += x[i] * r1[i];
    s2 += x[i] * r2[i];
    s3 += x[i] * r3[i];
  }
  sums[0] = s0;
  sums[1] = s1;
  sums[2] = s2;
  sums[3] = s3;
}

DSR_FIXED_VECTOR_CLONES
void dsr_fixed_dot16x4x2(const int16_t *restrict x0, const int16_t *restrict x1,
                         const int16_t *restrict rows, int32_t count, int32_t sums[8]) {
  const int16_t *r0 = rows, *r1 = rows + count, *r2 = r1 + count, *r3 = r2 + count;
  int32_t s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
  for (int32_t i = 0; i < count; i++) {
    s00 += x0[i] * r0[i];
    s01 += x0[i] * r1[i];
    s02 += x0[i] * r2[i];
    s03 += x0[i] * r3[i];
    s10 += x1[i] * r0[i];
    s11 += x1[i] * r1[i];
    s12 += x1[i] * r2[i];
    s13 += x1[i] * r3[i];
  }
  sums[0] = s00;
  sums[1] = s01;
  sums[2] = s02;
  sums[3] = s03;
  sums[4] = s10;
  sums[5] = s11;
  sums[6] = s12;
  sums[7] = s13;
}
