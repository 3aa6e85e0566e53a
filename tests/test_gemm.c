/*
 * Tests of the packed int8 matrix product (runtime/dsr_gemm.h). Every block it computes must
 * equal the plain triple loop in 64 bits, with both kernels (VNNI where the CPU has it, and
 * the portable one). The cases cover both signedness assignments, any zero points, strided
 * operands, sizes that are not multiples of the tiles, and blocks split between tasks.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dsr_gemm.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

static int8_t rng_i8(void) { return (int8_t)(rng_u32() & 0xff); }

static void *aligned(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
  cr_assert_not_null(p);
  memset(p, 0xa5, (bytes + 63) / 64 * 64); /* garbage the packing must overwrite */
  return p;
}

/* P is m x k stored with strides (pi, pt), Q is k x n with strides (qt, qj). */
typedef struct case_spec {
  int32_t m, n, k, p_zero, q_zero;
  int p_unsigned, transposed_p, transposed_q;
} case_spec;

static void check_case(case_spec cs) {
  dsr_gemm g = {cs.m, cs.n, cs.k, cs.p_zero, cs.q_zero, cs.p_unsigned};
  int8_t *p = malloc((size_t)cs.m * cs.k);
  int8_t *q = malloc((size_t)cs.k * cs.n);
  cr_assert(p != NULL && q != NULL);
  for (int64_t i = 0; i < (int64_t)cs.m * cs.k; i++)
    p[i] = rng_i8();
  for (int64_t i = 0; i < (int64_t)cs.k * cs.n; i++)
    q[i] = rng_i8();
  int64_t pi = cs.transposed_p ? 1 : cs.k, pt = cs.transposed_p ? cs.m : 1;
  int64_t qt = cs.transposed_q ? 1 : cs.n, qj = cs.transposed_q ? cs.k : 1;

  uint8_t *rows = aligned(dsr_gemm_rows_bytes(&g));
  uint8_t *cols = aligned(dsr_gemm_columns_bytes(&g));
  int32_t panels = dsr_gemm_panels(&g);
  /* Packed in two shares, as two tasks would. */
  dsr_gemm_pack_rows(&g, p, pi, pt, 0, cs.m / 2, rows);
  dsr_gemm_pack_rows(&g, p, pi, pt, cs.m / 2, cs.m, rows);
  dsr_gemm_pack_columns(&g, q, qt, qj, 0, panels / 2, cols);
  dsr_gemm_pack_columns(&g, q, qt, qj, panels / 2, panels, cols);

  int64_t stride = cs.n + 3;
  int32_t *fast = calloc((size_t)cs.m * stride, sizeof(int32_t));
  int32_t *portable = calloc((size_t)cs.m * stride, sizeof(int32_t));
  cr_assert(fast != NULL && portable != NULL);
  /* Four blocks: rows and panels each split in two. */
  int32_t row_cut = cs.m / 3, panel_cut = panels / 2;
  int32_t row_ranges[2][2] = {{0, row_cut}, {row_cut, cs.m}};
  int32_t panel_ranges[2][2] = {{0, panel_cut}, {panel_cut, panels}};
  for (int a = 0; a < 2; a++) {
    for (int b = 0; b < 2; b++) {
      int32_t r0 = row_ranges[a][0], r1 = row_ranges[a][1];
      dsr_gemm_run(&g, rows, cols, r0, r1, panel_ranges[b][0], panel_ranges[b][1],
                   fast + (int64_t)r0 * stride, stride);
      dsr_gemm_run_portable(&g, rows, cols, r0, r1, panel_ranges[b][0], panel_ranges[b][1],
                            portable + (int64_t)r0 * stride, stride);
    }
  }

  for (int32_t i = 0; i < cs.m; i++) {
    for (int32_t j = 0; j < cs.n; j++) {
      int64_t want = 0;
      for (int32_t t = 0; t < cs.k; t++)
        want += (int64_t)(p[i * pi + t * pt] - cs.p_zero) * (q[t * qt + j * qj] - cs.q_zero);
      int32_t got = fast[i * stride + j], got_portable = portable[i * stride + j];
      cr_assert_eq(got, want, "m %d n %d k %d zeros %d %d unsigned %d: C[%d][%d] = %d, want %lld",
                   cs.m, cs.n, cs.k, cs.p_zero, cs.q_zero, cs.p_unsigned, i, j, got,
                   (long long)want);
      cr_assert_eq(got_portable, want, "portable kernel: C[%d][%d] = %d, want %lld", i, j,
                   got_portable, (long long)want);
    }
    for (int64_t j = cs.n; j < stride; j++)
      cr_assert_eq(fast[i * stride + j], 0, "wrote past column n at row %d", i);
  }
  free(p);
  free(q);
  free(rows);
  free(cols);
  free(fast);
  free(portable);
}

Test(gemm, matches_triple_loop_over_shapes) {
  const int32_t sizes[][3] = {{1, 1, 1},   {1, 16, 4},  {6, 64, 8},   {7, 65, 9},
                              {13, 17, 3}, {49, 96, 37}, {25, 130, 96}, {2, 200, 5}};
  const int32_t zeros[][2] = {{0, 0}, {-128, 0}, {127, -128}, {-3, 77}};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (size_t z = 0; z < sizeof zeros / sizeof zeros[0]; z++)
      for (int u = 0; u < 2; u++) {
        case_spec cs = {sizes[s][0], sizes[s][1], sizes[s][2], zeros[z][0], zeros[z][1], u,
                        (int)(s % 2), (int)((s + z) % 2)};
        check_case(cs);
      }
}

Test(gemm, long_reductions_at_the_int32_bound) {
  /* k * 255 * 255 just under 2^31: every value at its extreme, so the true sums are the
   * largest the callers allow. */
  int32_t k = 33000;
  dsr_gemm g = {3, 20, k, 127, -128, 1};
  int8_t *p = malloc((size_t)3 * k), *q = malloc((size_t)k * 20);
  cr_assert(p != NULL && q != NULL);
  for (int64_t i = 0; i < 3 * (int64_t)k; i++)
    p[i] = -128; /* p - 127 = -255 */
  for (int64_t i = 0; i < 20 * (int64_t)k; i++)
    q[i] = 127; /* q + 128 = 255 */
  uint8_t *rows = aligned(dsr_gemm_rows_bytes(&g)), *cols = aligned(dsr_gemm_columns_bytes(&g));
  dsr_gemm_pack_rows(&g, p, k, 1, 0, 3, rows);
  dsr_gemm_pack_columns(&g, q, 20, 1, 0, dsr_gemm_panels(&g), cols);
  int32_t c[3 * 20];
  dsr_gemm_run(&g, rows, cols, 0, 3, 0, dsr_gemm_panels(&g), c, 20);
  for (int i = 0; i < 60; i++)
    cr_assert_eq(c[i], -255 * 255 * k, "C[%d] = %d", i, c[i]);
  free(p);
  free(q);
  free(rows);
  free(cols);
}

Test(gemm, matrix_vector_matches_the_plain_loop) {
  const int32_t sizes[][2] = {{49, 32}, {1, 1}, {16, 4}, {17, 7}, {33, 30}, {5, 3}, {64, 100}};
  const int32_t zeros[][2] = {{0, 0}, {-128, 127}, {127, -128}, {-5, 9}};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    for (size_t z = 0; z < sizeof zeros / sizeof zeros[0]; z++) {
      int32_t m = sizes[s][0], k = sizes[s][1];
      /* Exactly m * k bytes, so a read past the last row shows under AddressSanitizer. */
      int8_t *a = malloc((size_t)m * k), *b = malloc((size_t)k);
      int32_t *fast = malloc((size_t)m * sizeof(int32_t));
      int32_t *portable = malloc((size_t)m * sizeof(int32_t));
      cr_assert(a != NULL && b != NULL && fast != NULL && portable != NULL);
      for (int64_t i = 0; i < (int64_t)m * k; i++)
        a[i] = rng_i8();
      for (int32_t t = 0; t < k; t++)
        b[t] = rng_i8();
      dsr_gemm_matvec(a, m, k, zeros[z][0], b, zeros[z][1], fast);
      dsr_gemm_matvec_portable(a, m, k, zeros[z][0], b, zeros[z][1], portable);
      for (int32_t i = 0; i < m; i++) {
        int64_t want = 0;
        for (int32_t t = 0; t < k; t++)
          want += (int64_t)(a[(int64_t)i * k + t] - zeros[z][0]) * (b[t] - zeros[z][1]);
        cr_assert_eq(fast[i], want, "m %d k %d zeros %d %d: row %d is %d, want %lld", m, k,
                     zeros[z][0], zeros[z][1], i, fast[i], (long long)want);
        cr_assert_eq(portable[i], want, "portable: row %d is %d, want %lld", i, portable[i],
                     (long long)want);
      }
      free(a);
      free(b);
      free(fast);
      free(portable);
    }
  }
}
