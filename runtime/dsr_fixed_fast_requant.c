/*
 * Requantization and store of whole accumulator rows in one pass, with AVX-512F where the CPU
 * has it: the value of dsr_fixed_requant_row32 followed by dsr_fixed_store_row, bit for bit.
 *
 * Sixteen values at a time. Where no shift of the 16 is positive (the usual case), nothing
 * saturates: the signed 32 x 32 -> 64 products of the even and the odd lanes (vpmuldq), the
 * rounding of their doubled high halves (p + 2^30 - (p < 0)) >> 31, which is round(p / 2^31)
 * half away from zero, and the rounding right shift by -shift in 32-bit lanes. Otherwise each
 * half is widened to 64-bit lanes and the steps of dsr_fixed_requant32 run as written: the
 * left shift by max(shift, 0) (|x| <= 2^31 and left <= 30 keep it within 2^61), the
 * saturation test, the product and both roundings. Pairs interleave multiplier and shift, and
 * a permute separates them.
 */
#include "dsr_fixed_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f")))

/* round(v / 2^right) half away from zero per lane, right >= 0: (v + half - (v < 0)) >> right
 * where a shift is needed. */
AVX512_TARGET static inline __m512i round_right(__m512i v, __m512i right) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi64(1);
  __mmask8 shifted = _mm512_cmpgt_epi64_mask(right, zero);
  __m512i half = _mm512_maskz_sllv_epi64(shifted, one, _mm512_sub_epi64(right, one));
  __m512i rounded = _mm512_add_epi64(v, half);
  rounded = _mm512_mask_sub_epi64(rounded, shifted & _mm512_cmplt_epi64_mask(v, zero), rounded,
                                  one);
  return _mm512_srav_epi64(rounded, right);
}

/* The doubled high half of x * m (both within int32), rounded half away from zero. */
AVX512_TARGET static inline __m512i high_product(__m512i x, __m512i m) {
  const __m512i one = _mm512_set1_epi64(1);
  __m512i product = _mm512_mul_epi32(x, m);
  __m512i biased = _mm512_add_epi64(product, _mm512_set1_epi64((int64_t)1 << 30));
  biased = _mm512_mask_sub_epi64(biased, _mm512_cmplt_epi64_mask(product, _mm512_setzero_si512()),
                                 biased, one);
  return _mm512_srai_epi64(biased, 31);
}

/* Requantized values of 8 sums x (int64 lanes) with multipliers m and shifts s. */
AVX512_TARGET static inline __m256i requant8(__m512i x, __m512i m, __m512i s) {
  const __m512i zero = _mm512_setzero_si512();
  if (_mm512_cmpgt_epi64_mask(s, zero) == 0) {
    /* No left shift, so nothing saturates: the usual case of products and convolutions. */
    return _mm512_cvtepi64_epi32(round_right(high_product(x, m), _mm512_sub_epi64(zero, s)));
  }
  __m512i left = _mm512_max_epi64(s, zero);
  __m512i right = _mm512_max_epi64(_mm512_sub_epi64(zero, s), zero);

  __m512i scaled = _mm512_sllv_epi64(x, left);
  __mmask8 over = _mm512_cmpgt_epi64_mask(scaled, _mm512_set1_epi64(INT32_MAX)) |
                  _mm512_cmplt_epi64_mask(scaled, _mm512_set1_epi64(INT32_MIN));

  /* Lanes that saturate get a wrong product here, and the blend below drops it. */
  __m512i rounded = round_right(high_product(scaled, m), right);

  /* Saturation: the int32 limit with the sign of x * multiplier, 0 for a zero multiplier. */
  __mmask8 same_sign = (__mmask8)~(_mm512_cmpgt_epi64_mask(scaled, zero) ^
                                   _mm512_cmpgt_epi64_mask(m, zero));
  __m512i saturated = _mm512_mask_blend_epi64(same_sign, _mm512_set1_epi64(INT32_MIN),
                                              _mm512_set1_epi64(INT32_MAX));
  saturated = _mm512_mask_mov_epi64(saturated, _mm512_cmpeq_epi64_mask(m, zero), zero);
  return _mm512_cvtepi64_epi32(_mm512_mask_blend_epi64(over, rounded, saturated));
}

/*
 * requant8 for 16 lanes whose shifts are all <= 0, in 32-bit lanes: the products of the even
 * and the odd lanes (vpmuldq on each half), their doubled high halves rounded as in
 * high_product, and the rounding right shift by right = -shift written without the addition
 * that could leave int32: floor(r / 2^right) plus 1 where the dropped bits exceed half (r < 0)
 * or reach it (r >= 0), which is round half away from zero.
 */
AVX512_TARGET static inline __m512i requant16_right(__m512i x, __m512i m, __m512i right) {
  const __m512i one = _mm512_set1_epi32(1);
  __m512i even = high_product(x, m);
  __m512i odd = high_product(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(m, 32));
  __m512i r = _mm512_mask_blend_epi32((__mmask16)0xaaaa, even, _mm512_slli_epi64(odd, 32));

  __m512i floor = _mm512_srav_epi32(r, right);
  __m512i low_mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
  __m512i dropped = _mm512_and_si512(r, low_mask);
  __m512i half = _mm512_srli_epi32(_mm512_add_epi32(low_mask, one), 1);
  __mmask16 non_negative = _mm512_cmpge_epi32_mask(r, _mm512_setzero_si512());
  __m512i threshold = _mm512_mask_sub_epi32(half, non_negative, half, one);
  __mmask16 up = _mm512_cmpgt_epi32_mask(dropped, threshold) &
                 _mm512_cmpgt_epi32_mask(right, _mm512_setzero_si512());
  return _mm512_mask_add_epi32(floor, up, floor, one);
}

/* requant8 on both halves of 16 lanes, for any shifts. */
AVX512_TARGET static inline __m512i requant16_any(__m512i x, __m512i m, __m512i s) {
  __m256i low = requant8(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(x)),
                         _mm512_cvtepi32_epi64(_mm512_castsi512_si256(m)),
                         _mm512_cvtepi32_epi64(_mm512_castsi512_si256(s)));
  __m256i high = requant8(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(x, 1)),
                          _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(m, 1)),
                          _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(s, 1)));
  return _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
}

AVX512_TARGET static void requant_store_avx512(const int32_t *acc, int64_t count,
                                               const int32_t *pairs, int32_t pair_stride,
                                               int32_t zero, int32_t dtype, void *out,
                                               int64_t offset) {
  int32_t lo = (dtype == DSR_DTYPE_I8 ? INT8_MIN : INT16_MIN) - zero;
  int32_t hi = (dtype == DSR_DTYPE_I8 ? INT8_MAX : INT16_MAX) - zero;
  const __m512i even_words = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                               26, 28, 30);
  const __m512i odd_words = _mm512_add_epi32(even_words, _mm512_set1_epi32(1));
  __m512i m16 = _mm512_set1_epi32(pairs[0]), s16 = _mm512_set1_epi32(pairs[1]);
  for (int64_t i = 0; i < count; i += 16) {
    int64_t left_over = count - i;
    __mmask16 mask = left_over >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left_over) - 1u);
    __m512i x = _mm512_maskz_loadu_epi32(mask, acc + i);
    __m512i v;
    if (pair_stride == 2) {
      /* Multipliers at the even words of the pairs, shifts at the odd ones. */
      __m512i first = _mm512_maskz_loadu_epi64((__mmask8)(mask & 0xff), pairs + 2 * i);
      __m512i second = _mm512_maskz_loadu_epi64((__mmask8)(mask >> 8), pairs + 2 * i + 16);
      m16 = _mm512_permutex2var_epi32(first, even_words, second);
      s16 = _mm512_permutex2var_epi32(first, odd_words, second);
    }
    if (_mm512_cmpgt_epi32_mask(s16, _mm512_setzero_si512()) == 0) {
      v = requant16_right(x, m16, _mm512_sub_epi32(_mm512_setzero_si512(), s16));
    } else {
      v = requant16_any(x, m16, s16);
    }
    v = _mm512_min_epi32(_mm512_max_epi32(v, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi));
    v = _mm512_add_epi32(v, _mm512_set1_epi32(zero));
    if (dtype == DSR_DTYPE_I8)
      _mm512_mask_cvtepi32_storeu_epi8((int8_t *)out + offset + i, mask, v);
    else
      _mm512_mask_cvtepi32_storeu_epi16((int16_t *)out + offset + i, mask, v);
  }
}

#endif

void dsr_fixed_requant_store_row(int32_t *acc, int64_t count, const int32_t *pairs,
                                 int32_t pair_stride, int32_t zero, int32_t dtype, void *out,
                                 int64_t offset) {
#if defined(__x86_64__) && defined(__GNUC__)
  if ((dtype == DSR_DTYPE_I8 || dtype == DSR_DTYPE_I16) && dsr_fixed_rows_use_avx512()) {
    requant_store_avx512(acc, count, pairs, pair_stride, zero, dtype, out, offset);
    return;
  }
#endif
  dsr_fixed_requant_row32(acc, count, pairs, pair_stride, acc);
  dsr_fixed_store_row(acc, count, zero, dtype, out, offset);
}
