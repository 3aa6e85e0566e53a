/*
 * Optimized SOFTMAX for the fixed-point runtime over the last axis, bit-identical to
 * run_softmax in dsr_fixed.c and dsr_fixed_softmax_row in dsr_fixed_math.c. Rows are read
 * contiguously by dtype, and the requantization, exp table lookup and output scaling are
 * written without branches so that they vectorize. With AVX-512 (F, BW, DQ and VL) a whole
 * row runs as one kernel of 16 int32 lanes, softmax_row_avx512, for the exp pairs it takes.
 * dsr_fixed_fast_exp_row, which the deformable layer also calls, gathers 16 table entries at
 * a time with AVX-512 F and BW. GCC emits neither kernel from the plain loops.
 *
 * Scratch: int32 row[length] and exps[length], within the three rows of length that
 * dsr_fixed_scratch_bytes reserves for the reference kernel, once per task of the parallel
 * hook (rows are split).
 */
#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SOFTMAX_X86 1
#endif

/*
 * dsr_fixed_exp2_neg_q30 of each y (y <= 0 after the requantization of a non-positive value
 * by a non-negative multiplier) into exps, returning their sum. The table entry, at most
 * 2^30, is rounded right by k = -y >> 10 in 64 bits; k > 31 gives 0. The entries are
 * positive, so the rounding is (entry + 2^(k-1)) >> k.
 */
DSR_FIXED_VECTOR_CLONES
static int64_t exp_row_portable(const int32_t *y, int32_t count, int32_t *exps) {
  int64_t sum = 0;
  for (int32_t i = 0; i < count; i++) {
    int64_t magnitude = y[i] >= 0 ? 0 : -(int64_t)y[i];
    int64_t k = magnitude >> DSR_FIXED_EXP_FRAC_BITS;
    int64_t entry = dsr_fixed_exp2_table_q30[magnitude & (DSR_FIXED_EXP_TABLE_COUNT - 1)];
    int64_t shift = k > 31 ? 31 : k;
    int64_t half = ((int64_t)1 << shift) >> 1; /* 0 for shift 0, which leaves the entry */
    int64_t rounded = (entry + half) >> shift;
    exps[i] = k > 31 ? 0 : (int32_t)rounded;
    sum += exps[i];
  }
  return sum;
}

#ifdef SOFTMAX_X86

/*
 * exp_row_portable for count a multiple of 16, 16 lanes at a time with a gather from the
 * table. The magnitude -y is taken as an unsigned 32-bit value (2^31 for INT32_MIN, whose k
 * is far above 31), and entry + 2^(k-1) <= 2^31 stays within unsigned 32 bits, so the
 * rounding is a logical shift. The sum is kept in 64-bit lanes.
 */
__attribute__((target("avx512f"))) static int64_t exp_row_avx512(const int32_t *y, int32_t count,
                                                                  int32_t *exps) {
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
  const __m512i fraction_mask = _mm512_set1_epi32(DSR_FIXED_EXP_TABLE_COUNT - 1);
  const __m512i max_shift = _mm512_set1_epi32(31);
  __m512i sum = _mm512_setzero_si512();
  for (int32_t i = 0; i < count; i += 16) {
    __m512i v = _mm512_loadu_si512(y + i);
    __m512i magnitude = _mm512_maskz_sub_epi32(_mm512_cmplt_epi32_mask(v, zero), zero, v);
    __m512i k = _mm512_srli_epi32(magnitude, DSR_FIXED_EXP_FRAC_BITS);
    __m512i entry = _mm512_i32gather_epi32(_mm512_and_si512(magnitude, fraction_mask),
                                           dsr_fixed_exp2_table_q30, 4);
    __mmask16 vanishes = _mm512_cmpgt_epu32_mask(k, max_shift);
    __m512i shift = _mm512_min_epu32(k, max_shift);
    __m512i half = _mm512_srli_epi32(_mm512_sllv_epi32(one, shift), 1);
    __m512i rounded = _mm512_srlv_epi32(_mm512_add_epi32(entry, half), shift);
    __m512i e = _mm512_maskz_mov_epi32((__mmask16)~vanishes, rounded);
    _mm512_storeu_si512(exps + i, e);
    sum = _mm512_add_epi64(sum, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(e)));
    sum = _mm512_add_epi64(sum, _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(e, 1)));
  }
  return _mm512_reduce_add_epi64(sum);
}

#endif

int64_t dsr_fixed_fast_exp_row(const int32_t *y, int32_t count, int32_t *exps) {
  int32_t done = 0;
  int64_t sum = 0;
#ifdef SOFTMAX_X86
  if (count >= 16 && dsr_fixed_rows_use_avx512()) {
    done = count / 16 * 16;
    sum = exp_row_avx512(y, done, exps);
  }
#endif
  return sum + exp_row_portable(y + done, count - done, exps + done);
}

/* Scales the exps by the reciprocal of their sum, as dsr_fixed_softmax_row does: products
 * below 2^62, non-negative, rounded right by 62 - out_frac_bits. */
DSR_FIXED_VECTOR_CLONES
static void scale_row(const int32_t *exps, int32_t count, int64_t reciprocal,
                      int32_t out_frac_bits, int32_t *out) {
  int32_t zero = out_frac_bits == 8 ? -128 : 0;
  int32_t max_out = out_frac_bits == 8 ? 127 : 32767;
  int32_t min_out = out_frac_bits == 8 ? -128 : -32768;
  int32_t exponent = 62 - out_frac_bits;
  for (int32_t i = 0; i < count; i++) {
    int64_t p = ((int64_t)exps[i] * reciprocal + ((int64_t)1 << (exponent - 1))) >> exponent;
    out[i] = (int32_t)dsr_fixed_clamp64(zero + p, min_out, max_out);
  }
}

void dsr_fixed_fast_softmax_row(const int32_t *in, int32_t count, int32_t exp_multiplier,
                                int32_t exp_shift, int32_t out_frac_bits, int32_t *exp_scratch,
                                int32_t *out) {
  int32_t max_value = in[0];
  for (int32_t i = 1; i < count; i++)
    max_value = in[i] > max_value ? in[i] : max_value;
  for (int32_t i = 0; i < count; i++)
    out[i] = in[i] - max_value;
  const int32_t exp_pair[2] = {exp_multiplier, exp_shift};
  dsr_fixed_requant_row32(out, count, exp_pair, 0, out);
  /* The maximum contributes exactly 2^30, so 2^30 <= sum <= count * 2^30. */
  int64_t sum = dsr_fixed_fast_exp_row(out, count, exp_scratch);
  int64_t reciprocal = (int64_t)(((uint64_t)1 << 62) / (uint64_t)sum);
  scale_row(exp_scratch, count, reciprocal, out_frac_bits, out);
}

/* round(x / 2^exponent) half away from zero for exponent in 1..62 and |x| < 2^62 (see
 * dsr_fixed_fast_rows.c). */
static inline int64_t round_shift(int64_t x, int32_t exponent) {
  return (x + ((int64_t)1 << (exponent - 1)) - (x < 0)) >> exponent;
}

/* dsr_fixed_requant32 without branches, as dsr_fixed_fast_rows.c writes it: saturated when
 * x * 2^left leaves int32, else the rounded high part shifted right by max(-shift, 0). */
static inline int32_t requant32(int32_t x, int32_t multiplier, int32_t shift) {
  int32_t left = shift > 0 ? shift : 0;
  int32_t right = shift > 0 ? 0 : -shift;
  int64_t scaled = (int64_t)x * ((int64_t)1 << left);
  int64_t clamped = scaled < INT32_MIN ? INT32_MIN : (scaled > INT32_MAX ? INT32_MAX : scaled);
  int64_t high = round_shift(clamped * multiplier, 31);
  int32_t rounded = right == 0 ? (int32_t)high : (int32_t)round_shift(high, right);
  int32_t saturated = (scaled > 0) == (multiplier > 0) ? INT32_MAX : INT32_MIN;
  saturated = multiplier == 0 ? 0 : saturated;
  return scaled != clamped ? saturated : rounded;
}

typedef struct softmax_job {
  const dsr_node *node;
  const dsr_tensor *xt, *yt;
  const void *x;
  void *out;
  uint8_t *scratch;
  size_t slot_bytes;
  int32_t length, task_count;
  int use_avx512; /* rows through softmax_row_avx512 */
  int64_t rows;
} softmax_job;

/*
 * Computes rows [begin, end) of the softmax in one function, so that every step is inlined
 * in each target clone. The values are dsr_fixed_softmax_row's, from the same steps as
 * dsr_fixed_fast_softmax_row, stored in the output dtype: int8 with zero point -128 for 8
 * fraction bits, else int16. row and exps have room for length values each.
 */
DSR_FIXED_VECTOR_CLONES
static void softmax_rows(const softmax_job *job, int64_t begin, int64_t end, int32_t *row,
                         int32_t *exps) {
  const int32_t *q = job->node->qwords;
  int32_t multiplier = q[1], shift = q[2], frac_bits = q[3];
  int32_t length = job->length;
  int32_t exponent = 62 - frac_bits;
  int32_t zero = frac_bits == 8 ? -128 : 0;
  int32_t max_out = frac_bits == 8 ? 127 : 32767, min_out = frac_bits == 8 ? -128 : -32768;
  int narrow_in = job->xt->qparams.dtype == DSR_DTYPE_I8;
  int narrow_out = job->yt->qparams.dtype == DSR_DTYPE_I8;
  for (int64_t r = begin; r < end; r++) {
    int32_t max_value;
    if (narrow_in) {
      const int8_t *src = (const int8_t *)job->x + r * length;
      max_value = src[0];
      for (int32_t i = 0; i < length; i++) {
        row[i] = src[i];
        max_value = row[i] > max_value ? row[i] : max_value;
      }
    } else {
      const int16_t *src = (const int16_t *)job->x + r * length;
      max_value = src[0];
      for (int32_t i = 0; i < length; i++) {
        row[i] = src[i];
        max_value = row[i] > max_value ? row[i] : max_value;
      }
    }
    for (int32_t i = 0; i < length; i++)
      row[i] = requant32(row[i] - max_value, multiplier, shift);
    /* The maximum contributes exactly 2^30, so 2^30 <= sum <= length * 2^30. */
    int64_t sum = dsr_fixed_fast_exp_row(row, length, exps);
    int64_t reciprocal = (int64_t)(((uint64_t)1 << 62) / (uint64_t)sum);
    /* exps[i] * reciprocal <= 2^62, non-negative: the rounding adds half and shifts. */
    if (narrow_out) {
      int8_t *dst = (int8_t *)job->out + r * length;
      for (int32_t i = 0; i < length; i++) {
        int64_t p = ((int64_t)exps[i] * reciprocal + ((int64_t)1 << (exponent - 1))) >> exponent;
        int64_t v = zero + p;
        dst[i] = (int8_t)(v < min_out ? min_out : (v > max_out ? max_out : v));
      }
    } else {
      int16_t *dst = (int16_t *)job->out + r * length;
      for (int32_t i = 0; i < length; i++) {
        int64_t p = ((int64_t)exps[i] * reciprocal + ((int64_t)1 << (exponent - 1))) >> exponent;
        int64_t v = zero + p;
        dst[i] = (int16_t)(v < min_out ? min_out : (v > max_out ? max_out : v));
      }
    }
  }
}

#ifdef SOFTMAX_X86

#define SOFTMAX_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

/* Lanes [0, count) of 16 set, count in 1..16. */
static inline __mmask16 lanes_mask(int32_t count) {
  return count >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1);
}

/* 16 input values from src + i (int8 or int16), lanes outside mask zero. */
SOFTMAX_AVX512 static inline __m512i load_lanes(const void *src, int narrow_in, int32_t i,
                                                __mmask16 mask) {
  if (narrow_in)
    return _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, (const int8_t *)src + i));
  return _mm512_cvtepi16_epi32(_mm256_maskz_loadu_epi16(mask, (const int16_t *)src + i));
}

/*
 * One softmax row of length values with the arithmetic of dsr_fixed_softmax_row, 16 lanes at
 * a time, for an exp pair whose left shift is at most SOFTMAX_MAX_LEFT. Then x = q - max lies
 * in [-65535, 0], x * 2^left stays within int32 and the requantization cannot saturate: its
 * high part comes from products of even and odd lanes (vpmuldq), rounded half away from
 * zero, and the rounding right shift is taken as in dsr_fixed_fast_addrow.c. The exps are
 * stored in exps (length values) and summed in 64-bit lanes. The output is
 * (e * reciprocal + 2^(exponent - 1)) >> exponent, from vpmuludq while the reciprocal fits 32
 * bits (it reaches 2^32 only for a sum of exactly 2^30) and from vpmullq otherwise.
 */
SOFTMAX_AVX512 static void softmax_row_avx512(const void *src, int narrow_in, int32_t length,
                                              int32_t multiplier, int32_t shift,
                                              int32_t frac_bits, int32_t *exps, void *dst,
                                              int narrow_out) {
  __m512i max_lanes = _mm512_set1_epi32(INT32_MIN);
  for (int32_t i = 0; i < length; i += 16) {
    __mmask16 mask = lanes_mask(length - i);
    max_lanes = _mm512_mask_max_epi32(max_lanes, mask, max_lanes,
                                      load_lanes(src, narrow_in, i, mask));
  }
  __m512i max_value = _mm512_set1_epi32(_mm512_reduce_max_epi32(max_lanes));

  int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  const __m128i left_count = _mm_cvtsi32_si128(left), right_count = _mm_cvtsi32_si128(right);
  const __m512i m = _mm512_set1_epi32(multiplier), round31 = _mm512_set1_epi64((int64_t)1 << 30);
  const __m512i right_mask = _mm512_set1_epi32((int32_t)(((uint32_t)1 << right) - 1));
  const __m512i right_half = _mm512_set1_epi32((int32_t)(((uint32_t)1 << right) >> 1));
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
  const __m512i fraction_mask = _mm512_set1_epi32(DSR_FIXED_EXP_TABLE_COUNT - 1);
  const __m512i max_shift = _mm512_set1_epi32(31);
  __m512i sum = _mm512_setzero_si512();
  for (int32_t i = 0; i < length; i += 16) {
    __mmask16 mask = lanes_mask(length - i);
    __m512i x = _mm512_sub_epi32(load_lanes(src, narrow_in, i, mask), max_value);
    x = _mm512_sll_epi32(x, left_count);
    __m512i even = _mm512_mul_epi32(x, m);
    __m512i odd = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), m);
    even = _mm512_add_epi64(_mm512_add_epi64(even, round31), _mm512_srai_epi64(even, 63));
    odd = _mm512_add_epi64(_mm512_add_epi64(odd, round31), _mm512_srai_epi64(odd, 63));
    __m512i y = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 31),
                                        _mm512_slli_epi64(odd, 1));
    if (right > 0) {
      __m512i quotient = _mm512_sra_epi32(y, right_count);
      __m512i threshold = _mm512_sub_epi32(right_half, _mm512_srai_epi32(y, 31));
      __mmask16 up = _mm512_cmpge_epi32_mask(_mm512_and_si512(y, right_mask), threshold);
      y = _mm512_mask_add_epi32(quotient, up, quotient, one);
    }
    /* y <= 0: the exp table lookup of exp_row_avx512, lanes outside mask 0. */
    __m512i magnitude = _mm512_sub_epi32(zero, y);
    __m512i k = _mm512_srli_epi32(magnitude, DSR_FIXED_EXP_FRAC_BITS);
    __m512i entry = _mm512_mask_i32gather_epi32(zero, mask,
                                                _mm512_and_si512(magnitude, fraction_mask),
                                                dsr_fixed_exp2_table_q30, 4);
    __mmask16 kept = mask & (__mmask16)~_mm512_cmpgt_epu32_mask(k, max_shift);
    __m512i exp_shift = _mm512_min_epu32(k, max_shift);
    __m512i half = _mm512_srli_epi32(_mm512_sllv_epi32(one, exp_shift), 1);
    __m512i e = _mm512_maskz_srlv_epi32(kept, _mm512_add_epi32(entry, half), exp_shift);
    _mm512_mask_storeu_epi32(exps + i, mask, e);
    sum = _mm512_add_epi64(sum, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(e)));
    sum = _mm512_add_epi64(sum, _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(e, 1)));
  }

  /* The maximum contributes exactly 2^30, so 2^30 <= sum <= length * 2^30. */
  uint64_t total = (uint64_t)_mm512_reduce_add_epi64(sum);
  uint64_t reciprocal = ((uint64_t)1 << 62) / total;
  int32_t exponent = 62 - frac_bits;
  const __m512i recip = _mm512_set1_epi64((int64_t)reciprocal);
  const __m512i rounding = _mm512_set1_epi64((int64_t)1 << (exponent - 1));
  const __m512i out_zero = _mm512_set1_epi32(frac_bits == 8 ? -128 : 0);
  const __m512i out_min = _mm512_set1_epi32(frac_bits == 8 ? -128 : -32768);
  const __m512i out_max = _mm512_set1_epi32(frac_bits == 8 ? 127 : 32767);
  const __m128i exponent_count = _mm_cvtsi32_si128(exponent);
  int narrow_reciprocal = reciprocal < ((uint64_t)1 << 32);
  for (int32_t i = 0; i < length; i += 16) {
    __mmask16 mask = lanes_mask(length - i);
    __m512i e = _mm512_maskz_loadu_epi32(mask, exps + i);
    __m512i even, odd;
    if (narrow_reciprocal) {
      even = _mm512_mul_epu32(e, recip);
      odd = _mm512_mul_epu32(_mm512_srli_epi64(e, 32), recip);
    } else {
      even = _mm512_mullo_epi64(_mm512_and_si512(e, _mm512_set1_epi64(0xffffffff)), recip);
      odd = _mm512_mullo_epi64(_mm512_srli_epi64(e, 32), recip);
    }
    /* The products are non-negative and p <= 2^frac_bits fits the low 32 bits. */
    even = _mm512_srl_epi64(_mm512_add_epi64(even, rounding), exponent_count);
    odd = _mm512_srl_epi64(_mm512_add_epi64(odd, rounding), exponent_count);
    __m512i p = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    __m512i v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(p, out_zero), out_min),
                                 out_max);
    if (narrow_out)
      _mm_mask_storeu_epi8((int8_t *)dst + i, mask, _mm512_cvtepi32_epi8(v));
    else
      _mm256_mask_storeu_epi16((int16_t *)dst + i, mask, _mm512_cvtepi32_epi16(v));
  }
}

static int cpu_has_avx512dq(void) {
  __builtin_cpu_init();
  return dsr_fixed_rows_use_avx512() && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
}

#endif

/* Largest exp-pair left shift for softmax_row_avx512: |q - max| <= 65535 < 2^16, so the
 * shifted value stays within 2^30. */
#define SOFTMAX_MAX_LEFT 14

/* Softmax of a share of the rows, with the task's own scratch slot. */
static void softmax_task(void *context, int32_t task_index) {
  const softmax_job *job = context;
  int32_t *row = (int32_t *)(job->scratch + (size_t)task_index * job->slot_bytes);
  int32_t *exps = row + job->length;
  int64_t begin, end;
  dsr_parallel_share(job->rows, job->task_count, task_index, 1, &begin, &end);
#ifdef SOFTMAX_X86
  if (job->use_avx512) {
    const int32_t *q = job->node->qwords;
    int narrow_in = job->xt->qparams.dtype == DSR_DTYPE_I8;
    int narrow_out = job->yt->qparams.dtype == DSR_DTYPE_I8;
    size_t in_bytes = narrow_in ? 1 : 2, out_bytes = narrow_out ? 1 : 2;
    for (int64_t r = begin; r < end; r++) {
      size_t offset = (size_t)(r * job->length);
      softmax_row_avx512((const uint8_t *)job->x + offset * in_bytes, narrow_in, job->length,
                         q[1], q[2], q[3], exps, (uint8_t *)job->out + offset * out_bytes,
                         narrow_out);
    }
    return;
  }
#endif
  softmax_rows(job, begin, end, row, exps);
}

int dsr_fixed_fast_softmax_parallel(const dsr_model *model, const dsr_node *node,
                                    const void *const *in, void *out, uint8_t *scratch,
                                    size_t slot_bytes, const dsr_parallel *parallel) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  int32_t axis = node->attrs.softmax.axis < 0 ? node->attrs.softmax.axis + xt->rank
                                              : node->attrs.softmax.axis;
  if (axis != xt->rank - 1 || xt->dims[axis] < 1)
    return 0;
  softmax_job job = {.node = node, .xt = xt, .yt = &model->tensors[node->output], .x = in[0],
                     .out = out, .scratch = scratch, .slot_bytes = slot_bytes,
                     .length = xt->dims[axis]};
  job.rows = dsr_tensor_elements(xt) / job.length;
#ifdef SOFTMAX_X86
  job.use_avx512 = node->qwords[2] <= SOFTMAX_MAX_LEFT && cpu_has_avx512dq();
#endif
  /* About 8 operations per element: requantization, table lookup, scaling, stores. */
  job.task_count = dsr_parallel_tasks(parallel, job.rows, 8 * (int64_t)job.length);
  dsr_parallel_run(parallel, softmax_task, &job, job.task_count);
  return 1;
}

int dsr_fixed_fast_softmax(const dsr_model *model, const dsr_node *node, const void *const *in,
                           void *out, uint8_t *scratch) {
  return dsr_fixed_fast_softmax_parallel(model, node, in, out, scratch, 0, NULL);
}
