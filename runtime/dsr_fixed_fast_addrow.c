/*
 * Row steps of the optimized ADD and SUB (dsr_fixed_fast_binary.c): the rescaling of an
 * operand row and the requantized store of a sum row, both with a requant pair whose shift
 * is -right <= 0, so nothing saturates before the final clamp.
 *
 * Each step has a portable loop, written without branches for GCC's vectorizer, and on
 * x86-64 with AVX-512 a kernel of intrinsics picked at run time. The kernel computes
 * dsr_fixed_requant32 in the form of the portable loop: the high part round(x * m / 2^31)
 * from 64-bit products of even and odd lanes (vpmuldq, one instruction for 8 products where
 * GCC emits three-micro-op vpmullq), then the rounding right shift by right in 32-bit lanes as
 * floor(h / 2^right) plus one when the remainder reaches half + (h < 0). That is
 * floor((h + half - (h < 0)) / 2^right) without the sum that could leave int32. Both give
 * the reference's values; tests compare them on random and extreme rows.
 */
#include "dsr_fixed_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ADDROW_X86 1
#endif

/* round(x / 2^exponent) half away from zero for exponent 1..62 and |x| < 2^62 (see
 * dsr_fixed_fast_rows.c): a logical shift after a bias of 2^62, which vectorizes on AVX2. */
static inline int64_t round_shift_biased(int64_t x, int32_t exponent) {
  uint64_t biased = (uint64_t)(x + ((int64_t)1 << (exponent - 1)) - (x < 0)) + ((uint64_t)1 << 62);
  return (int64_t)(biased >> exponent) - ((int64_t)1 << (62 - exponent));
}

/* dsr_fixed_requant32 for shift = -right <= 0: |x * m| < 2^62 (m != INT32_MIN after the
 * plan-time check), so the reference's saturation cannot occur. */
static inline int32_t requant_right(int32_t x, int32_t multiplier, int32_t right) {
  int64_t high = round_shift_biased((int64_t)x * multiplier, 31);
  return right == 0 ? (int32_t)high : (int32_t)round_shift_biased(high, right);
}

DSR_FIXED_VECTOR_CLONES
void dsr_fixed_rescale_row_i8_portable(const int8_t *src, int64_t count, int32_t zero,
                                       int32_t left, int32_t multiplier, int32_t right,
                                       int32_t *row) {
  for (int64_t i = 0; i < count; i++)
    row[i] = requant_right((src[i] - zero) * (1 << left), multiplier, right);
}

DSR_FIXED_VECTOR_CLONES
void dsr_fixed_rescale_row_i16_portable(const int16_t *src, int64_t count, int32_t zero,
                                        int32_t left, int32_t multiplier, int32_t right,
                                        int32_t *row) {
  for (int64_t i = 0; i < count; i++)
    row[i] = requant_right((src[i] - zero) * (1 << left), multiplier, right);
}

DSR_FIXED_VECTOR_CLONES
static void add_store_i8(const int32_t *ra, const int32_t *rb, int64_t count, int32_t multiplier,
                         int32_t right, int32_t zero, int8_t *dst) {
  int32_t lo = INT8_MIN - zero, hi = INT8_MAX - zero;
  for (int64_t i = 0; i < count; i++) {
    int32_t v = requant_right(ra[i] + rb[i], multiplier, right);
    v = v < lo ? lo : (v > hi ? hi : v);
    dst[i] = (int8_t)(v + zero);
  }
}

DSR_FIXED_VECTOR_CLONES
static void add_store_i16(const int32_t *ra, const int32_t *rb, int64_t count,
                          int32_t multiplier, int32_t right, int32_t zero, int16_t *dst) {
  int32_t lo = INT16_MIN - zero, hi = INT16_MAX - zero;
  for (int64_t i = 0; i < count; i++) {
    int32_t v = requant_right(ra[i] + rb[i], multiplier, right);
    v = v < lo ? lo : (v > hi ? hi : v);
    dst[i] = (int16_t)(v + zero);
  }
}

void dsr_fixed_add_store_row_portable(const int32_t *ra, const int32_t *rb, int64_t count,
                                      int32_t multiplier, int32_t right, int32_t zero,
                                      int32_t dtype, void *out, int64_t offset) {
  if (dtype == DSR_DTYPE_I8)
    add_store_i8(ra, rb, count, multiplier, right, zero, (int8_t *)out + offset);
  else
    add_store_i16(ra, rb, count, multiplier, right, zero, (int16_t *)out + offset);
}

#ifdef ADDROW_X86

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw")))

/* The constants of one requant pair with right >= 1, broadcast to every lane. */
typedef struct pair_lanes {
  __m512i multiplier, round, mask, half;
  __m128i right;
} pair_lanes;

AVX512_TARGET static inline pair_lanes pair_lanes_init(int32_t multiplier, int32_t right) {
  pair_lanes p;
  p.multiplier = _mm512_set1_epi32(multiplier);
  p.round = _mm512_set1_epi64((int64_t)1 << 30);
  p.mask = _mm512_set1_epi32((int32_t)(((uint32_t)1 << right) - 1));
  p.half = _mm512_set1_epi32((int32_t)(((uint32_t)1 << right) >> 1));
  p.right = _mm_cvtsi32_si128(right);
  return p;
}

/*
 * requant_right of 16 lanes, right >= 1. Even lanes: the product's rounded high part sits in
 * bits 31..62 of the 64-bit lane, so a logical shift by 31 leaves it in the low half. Odd
 * lanes: a shift left by 1 moves the same bits into the high half. (p >> 63) is -1 for a
 * negative product, which gives the reference's rounding half away from zero.
 */
AVX512_TARGET static inline __m512i requant_lanes(__m512i x, const pair_lanes *p) {
  __m512i even = _mm512_mul_epi32(x, p->multiplier);
  __m512i odd = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), p->multiplier);
  even = _mm512_add_epi64(_mm512_add_epi64(even, p->round), _mm512_srai_epi64(even, 63));
  odd = _mm512_add_epi64(_mm512_add_epi64(odd, p->round), _mm512_srai_epi64(odd, 63));
  __m512i high = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 31),
                                         _mm512_slli_epi64(odd, 1));
  __m512i quotient = _mm512_sra_epi32(high, p->right);
  __m512i remainder = _mm512_and_si512(high, p->mask);
  /* half + (high < 0): high >> 31 is -1 for a negative high part. */
  __m512i threshold = _mm512_sub_epi32(p->half, _mm512_srai_epi32(high, 31));
  __mmask16 up = _mm512_cmpge_epi32_mask(remainder, threshold);
  return _mm512_mask_add_epi32(quotient, up, quotient, _mm512_set1_epi32(1));
}

AVX512_TARGET static void rescale_i8_avx512(const int8_t *src, int64_t count, int32_t zero,
                                            int32_t left, int32_t multiplier, int32_t right,
                                            int32_t *row) {
  pair_lanes p = pair_lanes_init(multiplier, right);
  __m512i zeros = _mm512_set1_epi32(zero);
  __m128i shift = _mm_cvtsi32_si128(left);
  for (int64_t i = 0; i < count; i += 16) {
    __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
    __m512i x = _mm512_sll_epi32(_mm512_sub_epi32(q, zeros), shift);
    _mm512_storeu_si512(row + i, requant_lanes(x, &p));
  }
}

AVX512_TARGET static void rescale_i16_avx512(const int16_t *src, int64_t count, int32_t zero,
                                             int32_t left, int32_t multiplier, int32_t right,
                                             int32_t *row) {
  pair_lanes p = pair_lanes_init(multiplier, right);
  __m512i zeros = _mm512_set1_epi32(zero);
  __m128i shift = _mm_cvtsi32_si128(left);
  for (int64_t i = 0; i < count; i += 16) {
    __m512i q = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
    __m512i x = _mm512_sll_epi32(_mm512_sub_epi32(q, zeros), shift);
    _mm512_storeu_si512(row + i, requant_lanes(x, &p));
  }
}

AVX512_TARGET static void add_store_avx512(const int32_t *ra, const int32_t *rb, int64_t count,
                                           int32_t multiplier, int32_t right, int32_t zero,
                                           int32_t dtype, void *out) {
  pair_lanes p = pair_lanes_init(multiplier, right);
  int32_t lo = dtype == DSR_DTYPE_I8 ? INT8_MIN : INT16_MIN;
  int32_t hi = dtype == DSR_DTYPE_I8 ? INT8_MAX : INT16_MAX;
  __m512i low = _mm512_set1_epi32(lo - zero), high = _mm512_set1_epi32(hi - zero);
  __m512i zeros = _mm512_set1_epi32(zero);
  for (int64_t i = 0; i < count; i += 16) {
    __m512i sum = _mm512_add_epi32(_mm512_loadu_si512(ra + i), _mm512_loadu_si512(rb + i));
    __m512i v = requant_lanes(sum, &p);
    v = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, low), high), zeros);
    if (dtype == DSR_DTYPE_I8)
      _mm_storeu_si128((__m128i *)((int8_t *)out + i), _mm512_cvtepi32_epi8(v));
    else
      _mm256_storeu_si256((__m256i *)((int16_t *)out + i), _mm512_cvtepi32_epi16(v));
  }
}

int dsr_fixed_rows_use_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

#else

int dsr_fixed_rows_use_avx512(void) { return 0; }

#endif

/* Elements the vector kernels take: whole groups of 16, when the CPU has them and right >= 1
 * (right 0 leaves the high part as it is, which the portable loop handles). */
static int64_t vector_count(int64_t count, int32_t right) {
#ifdef ADDROW_X86
  if (right >= 1 && count >= 16 && dsr_fixed_rows_use_avx512())
    return count / 16 * 16;
#endif
  (void)right;
  return 0;
}

void dsr_fixed_rescale_row_i8(const int8_t *src, int64_t count, int32_t zero, int32_t left,
                              int32_t multiplier, int32_t right, int32_t *row) {
  int64_t done = vector_count(count, right);
#ifdef ADDROW_X86
  if (done > 0)
    rescale_i8_avx512(src, done, zero, left, multiplier, right, row);
#endif
  dsr_fixed_rescale_row_i8_portable(src + done, count - done, zero, left, multiplier, right,
                                    row + done);
}

void dsr_fixed_rescale_row_i16(const int16_t *src, int64_t count, int32_t zero, int32_t left,
                               int32_t multiplier, int32_t right, int32_t *row) {
  int64_t done = vector_count(count, right);
#ifdef ADDROW_X86
  if (done > 0)
    rescale_i16_avx512(src, done, zero, left, multiplier, right, row);
#endif
  dsr_fixed_rescale_row_i16_portable(src + done, count - done, zero, left, multiplier, right,
                                     row + done);
}

void dsr_fixed_add_store_row(const int32_t *ra, const int32_t *rb, int64_t count,
                             int32_t multiplier, int32_t right, int32_t zero, int32_t dtype,
                             void *out, int64_t offset) {
  int64_t done = vector_count(count, right);
  size_t element_bytes = dtype == DSR_DTYPE_I8 ? 1 : 2;
#ifdef ADDROW_X86
  if (done > 0)
    add_store_avx512(ra, rb, done, multiplier, right, zero, dtype,
                     (uint8_t *)out + (size_t)offset * element_bytes);
#endif
  (void)element_bytes;
  dsr_fixed_add_store_row_portable(ra + done, rb + done, count - done, multiplier, right, zero,
                                   dtype, out, offset + done);
}
