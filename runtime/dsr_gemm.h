/*
 * Integer matrix product of two int8 operands with zero points, exact in 32 bits:
 *
 *   C[i][j] = sum over t < k of (P[i][t] - p_zero) * (Q[t][j] - q_zero)
 *
 * for i < m and j < n. P is the row operand: each of its values is broadcast to 16 outputs.
 * Q is the column operand: 16 of its columns are loaded at once. Both are first packed into
 * caller-owned scratch, sized by the *_bytes functions. Any address works, but 64-byte
 * alignment keeps every vector load within one cache line. The layouts:
 *
 *   packed rows:    uint8 rows[m][k4], then int32 row_sums[m]
 *   packed columns: for each panel of 16 columns, for each group of 4 reduction steps,
 *                   64 bytes (column c's four values at 4 * c); then int32 col_sums[n16]
 *
 * where k4 is k rounded up to a multiple of 4 and n16 is n rounded up to a multiple of 16;
 * the padding holds zeros. One operand is stored unsigned (its value plus 128, the form the
 * u8 x s8 multiply-add instructions take) and the other signed, as dsr_gemm.p_unsigned says.
 * The kernel sums the stored products and removes the stored zero points with the row and
 * column sums:
 *
 *   C = S - cq * row_sum[i] - cp * col_sum[j] + k * cp * cq
 *
 * where S is the sum of stored products and cp, cq the stored zero points (p_zero + 128 for
 * the unsigned operand). The terms are combined modulo 2^32, so the result is exact whenever
 * the true C fits int32: callers bound k * 255 * 255 (two activations) or k * 255 * 128 (one
 * constant) by 2^31 - 1, as dsr_fixed_check_node does. Every stored product is at most
 * 255 * 128 in magnitude, so S never overflows under the same bound.
 *
 * The kernels use AVX-512 VNNI (vpdpbusd) where the CPU has it and portable C otherwise;
 * both give the same integers. No allocation, no OS calls.
 */
#ifndef DSR_GEMM_H
#define DSR_GEMM_H

#include <stddef.h>
#include <stdint.h>

/* Columns of one panel of packed Q. */
#define DSR_GEMM_PANEL_COLUMNS 16

typedef struct dsr_gemm {
  int32_t m, n, k;
  int32_t p_zero, q_zero; /* zero points of P and Q; 0 for a symmetric constant */
  int p_unsigned;         /* 1: P stored as u8 and Q as s8; 0: the reverse */
} dsr_gemm;

/* Bytes of packed P and packed Q (multiples of 64). */
size_t dsr_gemm_rows_bytes(const dsr_gemm *g);
size_t dsr_gemm_columns_bytes(const dsr_gemm *g);

/*
 * Packs rows [row_begin, row_end) of P into packed (laid out for all m rows). Element (i, t)
 * of P is p[i * i_stride + t * t_stride]. Rows may be packed by different tasks.
 */
void dsr_gemm_pack_rows(const dsr_gemm *g, const int8_t *p, int64_t i_stride, int64_t t_stride,
                        int32_t row_begin, int32_t row_end, uint8_t *packed);

/*
 * Packs the panels [panel_begin, panel_end) of Q (panel = 16 columns) into packed, laid out
 * for all n columns. Element (t, j) of Q is q[t * t_stride + j * j_stride]. Panels may be
 * packed by different tasks.
 */
void dsr_gemm_pack_columns(const dsr_gemm *g, const int8_t *q, int64_t t_stride,
                           int64_t j_stride, int32_t panel_begin, int32_t panel_end,
                           uint8_t *packed);

/* Panels of packed Q: n rounded up to 16, divided by 16. */
static inline int32_t dsr_gemm_panels(const dsr_gemm *g) {
  return (g->n + DSR_GEMM_PANEL_COLUMNS - 1) / DSR_GEMM_PANEL_COLUMNS;
}

/*
 * Writes C[i][j] for rows [row_begin, row_end) and the columns of panels
 * [panel_begin, panel_end) (clipped to n) into c[(i - row_begin) * c_stride + j]. Different
 * tasks may compute disjoint blocks from the same packed operands.
 */
void dsr_gemm_run(const dsr_gemm *g, const uint8_t *packed_rows, const uint8_t *packed_columns,
                  int32_t row_begin, int32_t row_end, int32_t panel_begin, int32_t panel_end,
                  int32_t *c, int64_t c_stride);

/*
 * Matrix-vector product without packing: out[i] = sum over t < k of (a[i][t] - a_zero) *
 * (b[t] - b_zero) for i < m, a row-major (row stride k). The bound of dsr_gemm_run applies.
 * The VNNI kernel gathers 4 bytes of 16 rows at a time, so many small products (one per
 * query of neighbourhood attention) cost no packing.
 */
void dsr_gemm_matvec(const int8_t *a, int32_t m, int32_t k, int32_t a_zero, const int8_t *b,
                     int32_t b_zero, int32_t *out);

/* dsr_gemm_matvec with the portable loop whatever the CPU, for tests. */
void dsr_gemm_matvec_portable(const int8_t *a, int32_t m, int32_t k, int32_t a_zero,
                              const int8_t *b, int32_t b_zero, int32_t *out);

/* dsr_gemm_run with the portable kernel whatever the CPU, for tests that compare the two. */
void dsr_gemm_run_portable(const dsr_gemm *g, const uint8_t *packed_rows,
                           const uint8_t *packed_columns, int32_t row_begin, int32_t row_end,
                           int32_t panel_begin, int32_t panel_end, int32_t *c,
                           int64_t c_stride);

/* 1 when dsr_gemm_run uses the VNNI kernel on this CPU, for reports. */
int dsr_gemm_uses_vnni(void);

#endif
