/*
 * Tests of dsr_fixed_requant_store_row. On every CPU path it must store exactly what
 * dsr_fixed_requant32 and dsr_fixed_store give element by element. The cases cover one pair
 * per row and one pair per element, every shift, extreme sums and multipliers, int8 and int16
 * outputs, and row lengths that leave partial vectors.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "quant/dsq_params.h"
#include "runtime/dsr_fixed_internal.h"
#include "runtime/dsr_fixed_math.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

/* A sum near the interesting values: small, near the int32 limits, or any. */
static int32_t random_sum(void) {
  switch (rng_u32() % 4) {
  case 0:
    return (int32_t)(rng_u32() % 2001) - 1000;
  case 1:
    return INT32_MAX - (int32_t)(rng_u32() % 4);
  case 2:
    return INT32_MIN + (int32_t)(rng_u32() % 4);
  default:
    return (int32_t)rng_u32();
  }
}

/* A valid pair: multiplier 0 or of magnitude in [2^30, 2^31 - 1], shift in range. */
static void random_pair(int32_t pair[2]) {
  uint32_t r = rng_u32();
  int32_t magnitude = (int32_t)((1u << 30) + rng_u32() % (1u << 30));
  pair[0] = r % 16 == 0 ? 0 : (r % 2 ? magnitude : -magnitude);
  pair[1] = DSQ_SHIFT_MIN + (int32_t)(rng_u32() % (DSQ_SHIFT_MAX - DSQ_SHIFT_MIN + 1));
}

static void check_row(int64_t count, int32_t pair_stride, int32_t zero, int32_t dtype) {
  int32_t acc[80], copy[80], pairs[160];
  int16_t got[80], want[80];
  for (int64_t i = 0; i < count; i++)
    acc[i] = random_sum();
  for (int64_t i = 0; i < (pair_stride ? count : 1); i++)
    random_pair(pairs + 2 * i);
  memcpy(copy, acc, sizeof acc);
  memset(got, 0x5a, sizeof got);
  memset(want, 0x5a, sizeof want);

  dsr_fixed_requant_store_row(copy, count, pairs, pair_stride, zero, dtype, got, 0);
  for (int64_t i = 0; i < count; i++) {
    const int32_t *pair = pairs + i * pair_stride;
    int32_t value = dsr_fixed_requant32(acc[i], pair[0], pair[1]);
    dsr_fixed_store(want, dtype, i, zero + (int64_t)value);
  }
  int64_t bytes = count * (dtype == DSR_DTYPE_I8 ? 1 : 2);
  for (int64_t b = 0; b < (int64_t)sizeof got; b++) {
    uint8_t g = ((uint8_t *)got)[b], w = ((uint8_t *)want)[b];
    cr_assert_eq(g, w, "count %lld stride %d zero %d dtype %d: byte %lld is %u, want %u%s",
                 (long long)count, pair_stride, zero, dtype, (long long)b, g, w,
                 b >= bytes ? " (past the row)" : "");
  }
}

Test(requant_store, matches_the_scalar_primitives) {
  const int32_t zeros[] = {0, -128, 127, 5};
  for (int round = 0; round < 200; round++) {
    for (int64_t count = 1; count <= 40; count += 13) {
      check_row(count, 0, zeros[round % 4], DSR_DTYPE_I8);
      check_row(count, 2, zeros[round % 4], DSR_DTYPE_I8);
      check_row(count, 0, 0, DSR_DTYPE_I16);
      check_row(count, 2, 0, DSR_DTYPE_I16);
    }
  }
}

Test(requant_store, every_shift_at_the_extremes) {
  int32_t sums[] = {INT32_MIN, INT32_MIN + 1, -65536, -3, -1, 0, 1, 2, 3, 65535, INT32_MAX};
  int32_t multipliers[] = {0, 1 << 30, INT32_MAX, -(1 << 30), -INT32_MAX};
  for (int32_t shift = DSQ_SHIFT_MIN; shift <= DSQ_SHIFT_MAX; shift++) {
    for (size_t m = 0; m < sizeof multipliers / sizeof multipliers[0]; m++) {
      int32_t pair[2] = {multipliers[m], shift};
      int32_t acc[11];
      int16_t got[11];
      memcpy(acc, sums, sizeof acc);
      dsr_fixed_requant_store_row(acc, 11, pair, 0, 0, DSR_DTYPE_I16, got, 0);
      for (int i = 0; i < 11; i++) {
        int32_t value = dsr_fixed_requant32(sums[i], pair[0], shift);
        int32_t want = value < INT16_MIN ? INT16_MIN : (value > INT16_MAX ? INT16_MAX : value);
        cr_assert_eq(got[i], want, "sum %d multiplier %d shift %d: %d, want %d", sums[i],
                     pair[0], shift, got[i], want);
      }
    }
  }
}
