/*
 * Optimized LAYER_NORM for the fixed-point runtime, bit-identical to run_layer_norm in
 * dsr_fixed.c and dsr_fixed_layer_norm_row in dsr_fixed_math.c. It runs the same integer
 * steps. The row sums are 32-bit where they fit, and the integer square root starts from the
 * double one. The per-element steps have no branches and read the channel words from
 * separate arrays, so they vectorize, and they store the output directly. With AVX-512 the
 * output step runs as a kernel of intrinsics, 8 lanes at a time.
 *
 * Scratch: int32 d[count] and the channel multipliers, shifts and biases as three int32
 * arrays of count, within what dsr_fixed_scratch_bytes reserves for the reference kernel
 * (count * 16 bytes), once per task of the parallel hook (rows are split).
 */
#include <math.h>

#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"
#include "quant/dsq_params.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NORM_X86 1
#endif

/*
 * floor(sqrt(v)) for v < 2^62, as dsr_fixed_isqrt64 gives it: the double square root is
 * within one of the result (v rounds to 53 bits, and sqrt is correctly rounded), and the two
 * steps after it make the result exact. Every square stays below 2^62.
 */
static uint64_t isqrt_small(uint64_t v) {
  uint64_t root = (uint64_t)sqrt((double)v);
  root -= root * root > v;
  root += (root + 1) * (root + 1) <= v;
  return root;
}

uint64_t dsr_fixed_fast_isqrt64(uint64_t v) {
  if (v < ((uint64_t)1 << 62))
    return isqrt_small(v);
  uint64_t root = 0;
  uint64_t bit = (uint64_t)1 << 62;
  for (; bit != 0; bit >>= 2) {
    uint64_t trial = root + bit;
    uint64_t take = (uint64_t)0 - (uint64_t)(v >= trial); /* all ones or zero */
    v -= trial & take;
    root = (root >> 1) + (bit & take);
  }
  return root;
}

/*
 * Loads one row as d[i] = (q - zero) * 2^pre_shift and returns its sum. |d| <= 2^16 and
 * count <= DSQ_LN_MAX_ELEMENTS = 2^14, so the sum stays within 2^30.
 */
static inline int32_t load_row(const void *x, int32_t dtype, int64_t offset, int32_t zero,
                        int32_t pre_shift, int32_t count, int32_t *d) {
  int32_t sum = 0;
  if (dtype == DSR_DTYPE_I8) {
    const int8_t *row = (const int8_t *)x + offset;
    for (int32_t i = 0; i < count; i++) {
      d[i] = (row[i] - zero) * (1 << pre_shift);
      sum += d[i];
    }
  } else {
    const int16_t *row = (const int16_t *)x + offset;
    for (int32_t i = 0; i < count; i++) {
      d[i] = (row[i] - zero) * (1 << pre_shift);
      sum += d[i];
    }
  }
  return sum;
}

/* Subtracts the mean from d and returns the sum of squares: |d| <= 2^17, so each square is
 * at most 2^34 and count of them stay under 2^48. */
static inline int64_t center_row(int32_t *d, int32_t count, int32_t mean) {
  int64_t squares = 0;
  for (int32_t i = 0; i < count; i++) {
    d[i] -= mean;
    squares += (int64_t)d[i] * d[i];
  }
  return squares;
}

/* round(x / 2^exponent) half away from zero for exponent in 1..62 and |x| <= 2^62: an
 * arithmetic right shift of x + 2^(exponent-1) - (x < 0) (see dsr_fixed_fast_rows.c). */
static inline int64_t round_shift(int64_t x, int32_t exponent) {
  return (x + ((int64_t)1 << (exponent - 1)) - (x < 0)) >> exponent;
}

/*
 * dsr_fixed_requant32 without branches, for a shift that differs from lane to lane: the
 * scaled value x * 2^left (|x| < 2^31, left <= 30) fits int64, and when it leaves int32 the
 * result is the reference's saturated value. Otherwise the high part is
 * round(scaled * m / 2^31), |high| <= 2^31, and the rounding right shift by
 * right = max(-shift, 0) <= 31 is taken as round(high * 2^(31 - right) / 2^31), the same
 * quotient with a shift by a constant (GCC does not vectorize a variable arithmetic right
 * shift of 64-bit lanes here). The product stays within 2^62.
 */
static inline int32_t requant32(int32_t x, int32_t multiplier, int32_t shift) {
  int32_t left = shift > 0 ? shift : 0;
  int32_t up = shift > 0 ? 31 : 31 + shift;
  /* Shifts of the two's-complement bits, the products by powers of two without a multiply. */
  int64_t scaled = (int64_t)((uint64_t)(int64_t)x << left);
  int64_t clamped = scaled < INT32_MIN ? INT32_MIN : (scaled > INT32_MAX ? INT32_MAX : scaled);
  int64_t high = round_shift(clamped * multiplier, 31);
  int32_t rounded = (int32_t)round_shift((int64_t)((uint64_t)high << up), 31);
  int32_t saturated = (scaled > 0) == (multiplier > 0) ? INT32_MAX : INT32_MIN;
  saturated = multiplier == 0 ? 0 : saturated;
  return scaled != clamped ? saturated : rounded;
}

/* The channel words of the block, one array per field, so that the row loop reads them
 * with unit stride. */
typedef struct channel_arrays {
  int32_t *multiplier, *shift, *bias;
  /* 0 when no channel shifts left by more than NO_SATURATION_MAX_LEFT, so no requantization
   * can saturate */
  int can_saturate;
} channel_arrays;

/* |normalized_q12| < 2^20 (d * reciprocal < 2^57, shifted by 37), so a left shift up to 10
 * keeps the scaled value within 2^30, inside int32. */
#define NO_SATURATION_MAX_LEFT 10

/*
 * Scales the centered row to the output and stores it, as dsr_fixed_layer_norm_row does:
 * normalized Q12 from d * reciprocal (below 2^57), the channel's requant pair, its bias and
 * the final rounding by DSQ_LN_OUT_EXTRA_BITS, clamped to [out_min, out_max].
 */
static inline void scale_row_i8(const int32_t *d, int32_t count, int64_t reciprocal,
                         const int32_t *multiplier, const int32_t *shift, const int32_t *bias,
                         int32_t out_zero, int8_t *out) {
  for (int32_t i = 0; i < count; i++) {
    int32_t normalized_q12 = (int32_t)round_shift(d[i] * reciprocal, 37);
    int32_t scaled = requant32(normalized_q12, multiplier[i], shift[i]);
    int64_t value = out_zero + round_shift((int64_t)scaled + bias[i], DSQ_LN_OUT_EXTRA_BITS);
    out[i] = (int8_t)(value < INT8_MIN ? INT8_MIN : (value > INT8_MAX ? INT8_MAX : value));
  }
}

static inline void scale_row_i16(const int32_t *d, int32_t count, int64_t reciprocal,
                          const int32_t *multiplier, const int32_t *shift, const int32_t *bias,
                          int32_t out_zero, int16_t *out) {
  for (int32_t i = 0; i < count; i++) {
    int32_t normalized_q12 = (int32_t)round_shift(d[i] * reciprocal, 37);
    int32_t scaled = requant32(normalized_q12, multiplier[i], shift[i]);
    int64_t value = out_zero + round_shift((int64_t)scaled + bias[i], DSQ_LN_OUT_EXTRA_BITS);
    out[i] = (int16_t)(value < INT16_MIN ? INT16_MIN : (value > INT16_MAX ? INT16_MAX : value));
  }
}

#ifdef NORM_X86

#define NORM_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))

/* round_shift of 8 int64 lanes by a constant exponent: (x + 2^(e-1) + (x >> 63)) >> e, with
 * x >> 63 = -1 for a negative x. */
#define ROUND_SHIFT_LANES(x, e)                                                                \
  _mm512_srai_epi64(_mm512_add_epi64(_mm512_add_epi64((x), _mm512_set1_epi64((int64_t)1 << ((e) - 1))), \
                                     _mm512_srai_epi64((x), 63)),                              \
                    (e))

/*
 * Computes scale_row_i8 or scale_row_i16, for count a multiple of 8, in 8 int64 lanes with
 * the same steps. The per-channel shifts become variable lane shifts (vpsllvq, vpsravq), and
 * the product of the clamped value and the multiplier, both within int32, is vpmuldq. The
 * rounding right shift by right adds 2^(right-1) - (high < 0) for right >= 1, else nothing.
 */
NORM_AVX512 static void scale_row_avx512(const int32_t *d, int32_t count, int64_t reciprocal,
                                         const int32_t *multiplier, const int32_t *shift,
                                         const int32_t *bias, int32_t out_zero, int narrow_out,
                                         int can_saturate, void *out) {
  const __m512i recip = _mm512_set1_epi64(reciprocal);
  const __m512i zeros = _mm512_setzero_si512(), ones = _mm512_set1_epi64(1);
  const __m512i int32_min = _mm512_set1_epi64(INT32_MIN), int32_max = _mm512_set1_epi64(INT32_MAX);
  const __m512i y_zero = _mm512_set1_epi64(out_zero);
  const __m512i low = _mm512_set1_epi64(narrow_out ? INT8_MIN : INT16_MIN);
  const __m512i high_limit = _mm512_set1_epi64(narrow_out ? INT8_MAX : INT16_MAX);
  for (int32_t i = 0; i < count; i += 8) {
    __m512i dv = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(d + i)));
    __m512i normalized = ROUND_SHIFT_LANES(_mm512_mullo_epi64(dv, recip), 37);
    __m512i sh = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(shift + i)));
    __m512i m = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(multiplier + i)));
    __m512i left = _mm512_max_epi64(sh, zeros);
    __m512i right = _mm512_max_epi64(_mm512_sub_epi64(zeros, sh), zeros);
    /* |normalized| < 2^20 and left <= 30: the scaled value fits int64. */
    __m512i scaled = _mm512_sllv_epi64(normalized, left);
    __m512i clamped = scaled;
    if (can_saturate)
      clamped = _mm512_min_epi64(_mm512_max_epi64(scaled, int32_min), int32_max);
    __m512i high = ROUND_SHIFT_LANES(_mm512_mul_epi32(clamped, m), 31);
    __m512i half = _mm512_srli_epi64(_mm512_sllv_epi64(ones, right), 1);
    __m512i negative = _mm512_maskz_mov_epi64(_mm512_cmpgt_epi64_mask(right, zeros),
                                              _mm512_srai_epi64(high, 63));
    __m512i rounded = _mm512_srav_epi64(_mm512_add_epi64(_mm512_add_epi64(high, half), negative),
                                        right);
    __m512i value = rounded;
    if (can_saturate) {
      /* Where the scaled value left int32: INT32_MAX when it and m have the same sign, else
       * INT32_MIN, and 0 for m = 0. */
      __mmask8 same_sign = (__mmask8)~(_mm512_cmpgt_epi64_mask(scaled, zeros) ^
                                       _mm512_cmpgt_epi64_mask(m, zeros));
      __m512i saturated = _mm512_maskz_mov_epi64(_mm512_cmpneq_epi64_mask(m, zeros),
                                                 _mm512_mask_blend_epi64(same_sign, int32_min,
                                                                         int32_max));
      value = _mm512_mask_blend_epi64(_mm512_cmpneq_epi64_mask(scaled, clamped), rounded,
                                      saturated);
    }
    value = _mm512_add_epi64(
        value, _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(bias + i))));
    value = _mm512_add_epi64(ROUND_SHIFT_LANES(value, DSQ_LN_OUT_EXTRA_BITS), y_zero);
    value = _mm512_min_epi64(_mm512_max_epi64(value, low), high_limit);
    if (narrow_out)
      _mm_storel_epi64((__m128i *)((int8_t *)out + i), _mm512_cvtepi64_epi8(value));
    else
      _mm_storeu_si128((__m128i *)((int16_t *)out + i), _mm512_cvtepi64_epi16(value));
  }
}

static int cpu_has_avx512dq(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

#endif

typedef struct norm_job {
  const dsr_tensor *xt, *yt;
  const int32_t *block;
  const void *x;
  void *out;
  uint8_t *scratch;
  size_t slot_bytes;
  int32_t task_count;
  int use_avx512; /* scale the rows with scale_row_avx512 */
  int64_t rows;
} norm_job;

/*
 * LayerNorm of the rows [begin, end) in one function, so that the row steps are inlined in
 * each target clone. d has room for count values, and arrays contains the channel words.
 */
DSR_FIXED_VECTOR_CLONES
static void norm_rows(const norm_job *job, int64_t begin, int64_t end, int32_t *d,
                      const channel_arrays *arrays) {
  const int32_t *block = job->block;
  int32_t count = block[0], pre_shift = block[1];
  int64_t eps = (int64_t)block[3] * ((int64_t)1 << 32) + (int64_t)(uint32_t)block[2];
  const dsr_tensor *xt = job->xt, *yt = job->yt;
  int32_t x_dtype = xt->qparams.dtype, x_zero = xt->qparams.zero_point;
  int32_t y_zero = yt->qparams.zero_point;
  int narrow_out = yt->qparams.dtype == DSR_DTYPE_I8;
  int32_t half = count / 2;
  for (int64_t r = begin; r < end; r++) {
    int32_t sum = load_row(job->x, x_dtype, r * count, x_zero, pre_shift, count, d);
    /* dsr_fixed_div_round64 in 32 bits: |sum| <= 2^30 and half < 2^13. */
    int32_t mean = sum >= 0 ? (sum + half) / count : -((-sum + half) / count);
    int64_t variance = center_row(d, count, mean) / count + eps;
    if (variance < 1)
      variance = 1;
    /* The reference's bounds: variance <= 2^35, so the shifted value stays under 2^61. */
    uint64_t std_q13 = dsr_fixed_fast_isqrt64((uint64_t)variance << 26);
    int64_t reciprocal = (int64_t)(((uint64_t)1 << 62) / std_q13);
    int32_t done = 0;
#ifdef NORM_X86
    if (job->use_avx512) {
      done = count / 8 * 8;
      scale_row_avx512(d, done, reciprocal, arrays->multiplier, arrays->shift, arrays->bias,
                       y_zero, narrow_out, arrays->can_saturate,
                       (uint8_t *)job->out + (size_t)(r * count) * (narrow_out ? 1 : 2));
    }
#endif
    if (narrow_out)
      scale_row_i8(d + done, count - done, reciprocal, arrays->multiplier + done,
                   arrays->shift + done, arrays->bias + done, y_zero,
                   (int8_t *)job->out + r * count + done);
    else
      scale_row_i16(d + done, count - done, reciprocal, arrays->multiplier + done,
                    arrays->shift + done, arrays->bias + done, y_zero,
                    (int16_t *)job->out + r * count + done);
  }
}

/* LayerNorm of a share of the rows, with the task's own scratch slot: d[count] and the
 * three channel arrays, 16 bytes per element as dsr_fixed_scratch_bytes reserves. */
static void norm_task(void *context, int32_t task_index) {
  const norm_job *job = context;
  int32_t count = job->block[0];
  const int32_t *channel = job->block + DSQ_LN_HEADER_WORDS;
  int32_t *d = (int32_t *)(job->scratch + (size_t)task_index * job->slot_bytes);
  channel_arrays arrays = {d + count, d + 2 * (size_t)count, d + 3 * (size_t)count, 0};
  for (int32_t i = 0; i < count; i++) {
    arrays.multiplier[i] = channel[3 * i];
    arrays.shift[i] = channel[3 * i + 1];
    arrays.bias[i] = channel[3 * i + 2];
    arrays.can_saturate |= arrays.shift[i] > NO_SATURATION_MAX_LEFT;
  }
  int64_t begin, end;
  dsr_parallel_share(job->rows, job->task_count, task_index, 1, &begin, &end);
  norm_rows(job, begin, end, d, &arrays);
}

int dsr_fixed_fast_layer_norm_parallel(const dsr_model *model, const dsr_node *node,
                                       const void *const *in, void *out, uint8_t *scratch,
                                       size_t slot_bytes, const dsr_parallel *parallel) {
  norm_job job = {.xt = &model->tensors[node->inputs[0]], .yt = &model->tensors[node->output],
                  .block = node->qwords + 1, .x = in[0], .out = out, .scratch = scratch,
                  .slot_bytes = slot_bytes};
  int32_t count = job.block[0];
  job.rows = dsr_tensor_elements(job.xt) / count;
#ifdef NORM_X86
  job.use_avx512 = cpu_has_avx512dq();
#endif
  /* About 16 operations per element: load, centre, square, scale, requantize, store. */
  job.task_count = dsr_parallel_tasks(parallel, job.rows, 16 * (int64_t)count);
  dsr_parallel_run(parallel, norm_task, &job, job.task_count);
  return 1;
}

int dsr_fixed_fast_layer_norm(const dsr_model *model, const dsr_node *node,
                              const void *const *in, void *out, uint8_t *scratch) {
  return dsr_fixed_fast_layer_norm_parallel(model, node, in, out, scratch, 0, NULL);
}
