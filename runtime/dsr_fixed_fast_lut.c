/*
 * Optimized GELU (a lookup table) for the fixed-point runtime, bit-identical to run_gelu in
 * dsr_fixed.c. An int8 input has 256 values, so their outputs are computed once with
 * dsr_fixed_lut_apply itself and then looked up. On x86-64 with AVX-512 VBMI, two byte
 * permutes map 64 bytes at a time: vpermi2b picks from 128 table bytes by the low 7 index
 * bits, and the top bit selects between the two halves. Elsewhere each element is one load. An int16
 * input keeps one dsr_fixed_lut_apply per element, without the dtype dispatch of every load
 * and store. The elements are split into contiguous shares between the tasks of the
 * parallel hook.
 */
#include "dsr_fixed_internal.h"
#include "dsr_fixed_math.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LUT_X86 1
#endif

typedef struct gelu_job {
  const void *x;
  void *out;
  const int32_t *block;
  int32_t x_dtype, y_dtype, y_zero, y_min, y_max;
  int use_vbmi;
  int8_t table8[256];   /* int8 input and output: entry q + 128 */
  int16_t table16[256]; /* int8 input, int16 output */
} gelu_job;

#ifdef LUT_X86

#define VBMI_TARGET __attribute__((target("avx512f,avx512bw,avx512vbmi")))

/* out[i] = table[x[i] + 128] for count elements, count a multiple of 64. */
VBMI_TARGET static void lookup_vbmi(const int8_t *x, int64_t count, const int8_t *table,
                                    int8_t *out) {
  __m512i low = _mm512_loadu_si512(table), high = _mm512_loadu_si512(table + 64);
  __m512i low2 = _mm512_loadu_si512(table + 128), high2 = _mm512_loadu_si512(table + 192);
  __m512i flip = _mm512_set1_epi8((char)0x80);
  for (int64_t i = 0; i < count; i += 64) {
    /* q + 128 as an unsigned byte: bit 7 chooses the table half, bits 0..6 the entry. */
    __m512i index = _mm512_xor_si512(_mm512_loadu_si512(x + i), flip);
    __m512i first = _mm512_permutex2var_epi8(low, index, high);
    __m512i second = _mm512_permutex2var_epi8(low2, index, high2);
    __mmask64 upper = _mm512_movepi8_mask(index);
    _mm512_storeu_si512(out + i, _mm512_mask_blend_epi8(upper, first, second));
  }
}

static int cpu_has_vbmi(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw");
}

#endif

/* Elements [begin, end). */
static void gelu_range(void *context, int64_t begin, int64_t end, int32_t task_index) {
  (void)task_index;
  const gelu_job *job = context;
  if (job->x_dtype == DSR_DTYPE_I8) {
    const int8_t *x = (const int8_t *)job->x;
    if (job->y_dtype == DSR_DTYPE_I8) {
      int8_t *y = (int8_t *)job->out;
      int64_t i = begin;
#ifdef LUT_X86
      if (job->use_vbmi) {
        int64_t whole = (end - begin) / 64 * 64;
        lookup_vbmi(x + begin, whole, job->table8, y + begin);
        i += whole;
      }
#endif
      for (; i < end; i++)
        y[i] = job->table8[x[i] + 128];
    } else {
      int16_t *y = (int16_t *)job->out;
      for (int64_t i = begin; i < end; i++)
        y[i] = job->table16[x[i] + 128];
    }
    return;
  }
  const int16_t *x = (const int16_t *)job->x;
  for (int64_t i = begin; i < end; i++) {
    int32_t v = dsr_fixed_lut_apply(job->block, x[i], job->y_zero, job->y_min, job->y_max);
    if (job->y_dtype == DSR_DTYPE_I8)
      ((int8_t *)job->out)[i] = (int8_t)v;
    else
      ((int16_t *)job->out)[i] = (int16_t)v;
  }
}

int dsr_fixed_fast_gelu_parallel(const dsr_model *model, const dsr_node *node,
                                 const void *const *in, void *out,
                                 const dsr_parallel *parallel) {
  const dsr_tensor *xt = &model->tensors[node->inputs[0]];
  const dsr_tensor *yt = &model->tensors[node->output];
  gelu_job job = {.x = in[0], .out = out, .block = node->qwords + 1,
                  .x_dtype = xt->qparams.dtype, .y_dtype = yt->qparams.dtype,
                  .y_zero = yt->qparams.zero_point};
  if (job.y_dtype != DSR_DTYPE_I8 && job.y_dtype != DSR_DTYPE_I16)
    return 0;
  dsr_fixed_dtype_range(job.y_dtype, &job.y_min, &job.y_max);
  int64_t count = dsr_tensor_elements(xt);
  int64_t unit_ops = 8;
  if (job.x_dtype == DSR_DTYPE_I8) {
    /* The outputs lie within the output dtype's range, so the narrow tables hold them. */
    for (int32_t v = -128; v <= 127; v++) {
      int32_t y = dsr_fixed_lut_apply(job.block, v, job.y_zero, job.y_min, job.y_max);
      job.table8[v + 128] = (int8_t)y;
      job.table16[v + 128] = (int16_t)y;
    }
    unit_ops = 1;
#ifdef LUT_X86
    job.use_vbmi = job.y_dtype == DSR_DTYPE_I8 && cpu_has_vbmi();
#endif
  }
  /* Shares start on multiples of 64 elements, the vector kernel's step. */
  dsr_parallel_for(parallel, count, unit_ops, 64, gelu_range, &job);
  return 1;
}

int dsr_fixed_fast_gelu(const dsr_model *model, const dsr_node *node, const void *const *in,
                        void *out) {
  return dsr_fixed_fast_gelu_parallel(model, node, in, out, NULL);
}
