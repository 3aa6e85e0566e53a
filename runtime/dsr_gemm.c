/*
 * Packed int8 matrix product (dsr_gemm.h). Packing stores each operand in the layout the
 * kernels read with unit stride. The kernels then sum stored products in int32 registers and
 * apply the zero-point corrections once per output.
 *
 * The VNNI kernel computes tiles of ROW_TILE rows by PANEL_TILE panels (6 x 64 outputs) in
 * 24 zmm accumulators: for each group of 4 reduction steps it loads 4 column vectors, and
 * broadcasts 4 bytes of each row. The portable kernel walks the same layout one output panel
 * at a time. Both compute the same integers, since integer sums modulo 2^32 do not depend on
 * the order of their terms.
 */
#include "dsr_gemm.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DSR_GEMM_X86 1
#endif

#define ROW_TILE 6
#define PANEL_TILE 4

static int32_t round4(int32_t k) { return (k + 3) / 4 * 4; }

static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* Bytes of the packed rows before the row sums, and of one packed panel. */
static size_t rows_data_bytes(const dsr_gemm *g) {
  return round64((size_t)g->m * (size_t)round4(g->k));
}

static size_t panel_bytes(const dsr_gemm *g) {
  return (size_t)round4(g->k) * DSR_GEMM_PANEL_COLUMNS;
}

static size_t columns_data_bytes(const dsr_gemm *g) {
  return (size_t)dsr_gemm_panels(g) * panel_bytes(g);
}

size_t dsr_gemm_rows_bytes(const dsr_gemm *g) {
  return rows_data_bytes(g) + round64((size_t)g->m * sizeof(int32_t));
}

size_t dsr_gemm_columns_bytes(const dsr_gemm *g) {
  return round64(columns_data_bytes(g)) +
         round64((size_t)dsr_gemm_panels(g) * DSR_GEMM_PANEL_COLUMNS * sizeof(int32_t));
}

/* Stored byte of value v: v + 128 for the unsigned operand (flipping the sign bit), v for
 * the signed one. */
static uint8_t stored_byte(int8_t v, int flip) { return (uint8_t)((uint8_t)v ^ (flip ? 0x80u : 0u)); }

/* Value the kernel multiplies for a stored byte. */
static int32_t stored_value(uint8_t b, int is_unsigned) {
  return is_unsigned ? (int32_t)b : (int32_t)(int8_t)b;
}

/*
 * Stores the first multiple of 16 values of a contiguous row and adds their stored values to
 * *sum; returns how many it stored. With SSE2, vpsadbw sums the unsigned form (value + 128)
 * of 8 bytes at a time, and the signed sum is that minus 128 per value.
 */
static int32_t pack_row_prefix(const int8_t *row, int32_t count, int flip, uint8_t *out,
                               int32_t *sum) {
#ifdef DSR_GEMM_X86
  const __m128i bias = _mm_set1_epi8((char)0x80), zero = _mm_setzero_si128();
  __m128i sums = _mm_setzero_si128();
  int32_t t = 0;
  for (; t + 16 <= count; t += 16) {
    __m128i shifted = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(row + t)), bias);
    _mm_storeu_si128((__m128i *)(out + t), flip ? shifted : _mm_xor_si128(shifted, bias));
    sums = _mm_add_epi64(sums, _mm_sad_epu8(shifted, zero));
  }
  int64_t unsigned_sum = _mm_cvtsi128_si64(sums) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums));
  *sum += (int32_t)(flip ? unsigned_sum : unsigned_sum - 128 * (int64_t)t);
  return t;
#else
  (void)row;
  (void)count;
  (void)flip;
  (void)out;
  (void)sum;
  return 0;
#endif
}

void dsr_gemm_pack_rows(const dsr_gemm *g, const int8_t *p, int64_t i_stride, int64_t t_stride,
                        int32_t row_begin, int32_t row_end, uint8_t *packed) {
  int32_t k4 = round4(g->k);
  int flip = g->p_unsigned;
  int32_t *row_sums = (int32_t *)(packed + rows_data_bytes(g));
  for (int32_t i = row_begin; i < row_end; i++) {
    uint8_t *out = packed + (size_t)i * (size_t)k4;
    const int8_t *row = p + (int64_t)i * i_stride;
    int32_t sum = 0;
    if (t_stride == 1) {
      int32_t t = pack_row_prefix(row, g->k, flip, out, &sum);
      for (; t < g->k; t++) {
        out[t] = stored_byte(row[t], flip);
        sum += stored_value(out[t], flip);
      }
    } else {
      for (int32_t t = 0; t < g->k; t++) {
        out[t] = stored_byte(row[t * t_stride], flip);
        sum += stored_value(out[t], flip);
      }
    }
    for (int32_t t = g->k; t < k4; t++)
      out[t] = 0;
    row_sums[i] = sum; /* at most 255 * k, within the bound the caller keeps */
  }
}

/* Packs one panel element by element: any strides, partial panels and quads. */
static void pack_panel_scalar(const dsr_gemm *g, const int8_t *q, int64_t t_stride,
                              int64_t j_stride, int32_t panel, uint8_t *packed) {
  int32_t quads = round4(g->k) / 4;
  int flip = !g->p_unsigned;
  int32_t *col_sums = (int32_t *)(packed + round64(columns_data_bytes(g)));
  uint8_t *out = packed + (size_t)panel * panel_bytes(g);
  int32_t j0 = panel * DSR_GEMM_PANEL_COLUMNS;
  int32_t sums[DSR_GEMM_PANEL_COLUMNS] = {0};
  for (int32_t quad = 0; quad < quads; quad++) {
    uint8_t *block = out + (size_t)quad * 64;
    for (int32_t c = 0; c < DSR_GEMM_PANEL_COLUMNS; c++) {
      int32_t j = j0 + c;
      for (int32_t u = 0; u < 4; u++) {
        int32_t t = quad * 4 + u;
        uint8_t b = 0;
        if (j < g->n && t < g->k) {
          b = stored_byte(q[(int64_t)t * t_stride + (int64_t)j * j_stride], flip);
          sums[c] += stored_value(b, flip);
        }
        block[c * 4 + u] = b;
      }
    }
  }
  memcpy(col_sums + j0, sums, sizeof sums);
}

#ifdef DSR_GEMM_X86

/*
 * Packs panel_count (1 to 4) consecutive whole panels (16 columns each, within n) of a Q whose
 * columns are contiguous (j_stride 1). Each group of 4 rows is loaded as 4 x 16 bytes per
 * panel, so one pass reads whole 64-byte lines, and interleaved byte-wise and then
 * 16-bit-wise, which puts each column's 4 values side by side. Column sums come from
 * vpmaddubsw against ones (pairs of bytes, at most 2 * 255) and vpmaddwd (the four bytes).
 */
__attribute__((target("ssse3"))) static void pack_panels_rows16(const dsr_gemm *g,
                                                                const int8_t *q,
                                                                int64_t t_stride, int32_t panel,
                                                                int32_t panel_count,
                                                                uint8_t *packed) {
  int is_unsigned = !g->p_unsigned;
  const __m128i flip = _mm_set1_epi8(is_unsigned ? (char)0x80 : 0);
  const __m128i ones8 = _mm_set1_epi8(1), ones16 = _mm_set1_epi16(1);
  int32_t full_quads = g->k / 4;
  int32_t *col_sums = (int32_t *)(packed + round64(columns_data_bytes(g)));
  size_t pb = panel_bytes(g);
  uint8_t *out = packed + (size_t)panel * pb;
  int32_t j0 = panel * DSR_GEMM_PANEL_COLUMNS;
  const int8_t *base = q + j0;
  __m128i sums[4][4];
  for (int p = 0; p < 4; p++)
    for (int c = 0; c < 4; c++)
      sums[p][c] = _mm_setzero_si128();
  for (int32_t quad = 0; quad < full_quads; quad++) {
    const int8_t *r = base + (int64_t)quad * 4 * t_stride;
    for (int p = 0; p < panel_count; p++) {
      const int8_t *rp = r + p * DSR_GEMM_PANEL_COLUMNS;
      __m128i r0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)rp), flip);
      __m128i r1 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(rp + t_stride)), flip);
      __m128i r2 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(rp + 2 * t_stride)), flip);
      __m128i r3 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(rp + 3 * t_stride)), flip);
      __m128i lo01 = _mm_unpacklo_epi8(r0, r1), hi01 = _mm_unpackhi_epi8(r0, r1);
      __m128i lo23 = _mm_unpacklo_epi8(r2, r3), hi23 = _mm_unpackhi_epi8(r2, r3);
      __m128i v[4] = {_mm_unpacklo_epi16(lo01, lo23), _mm_unpackhi_epi16(lo01, lo23),
                      _mm_unpacklo_epi16(hi01, hi23), _mm_unpackhi_epi16(hi01, hi23)};
      uint8_t *block = out + (size_t)p * pb + (size_t)quad * 64;
      for (int c = 0; c < 4; c++) {
        _mm_storeu_si128((__m128i *)(block + 16 * c), v[c]);
        __m128i pairs =
            is_unsigned ? _mm_maddubs_epi16(v[c], ones8) : _mm_maddubs_epi16(ones8, v[c]);
        sums[p][c] = _mm_add_epi32(sums[p][c], _mm_madd_epi16(pairs, ones16));
      }
    }
  }

  int32_t quads = round4(g->k) / 4;
  for (int p = 0; p < panel_count; p++) {
    int32_t tail[DSR_GEMM_PANEL_COLUMNS];
    for (int c = 0; c < 4; c++)
      _mm_storeu_si128((__m128i *)(tail + 4 * c), sums[p][c]);

    /* The last, partial group of rows, with zeros past k. */
    const int8_t *panel_base = base + p * DSR_GEMM_PANEL_COLUMNS;
    for (int32_t quad = full_quads; quad < quads; quad++) {
      uint8_t *block = out + (size_t)p * pb + (size_t)quad * 64;
      for (int32_t c = 0; c < DSR_GEMM_PANEL_COLUMNS; c++) {
        for (int32_t u = 0; u < 4; u++) {
          int32_t t = quad * 4 + u;
          uint8_t b = 0;
          if (t < g->k) {
            b = stored_byte(panel_base[(int64_t)t * t_stride + c], is_unsigned);
            tail[c] += stored_value(b, is_unsigned);
          }
          block[c * 4 + u] = b;
        }
      }
    }
    memcpy(col_sums + j0 + p * DSR_GEMM_PANEL_COLUMNS, tail, sizeof tail);
  }
}

static int has_ssse3(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("ssse3");
}

#endif

void dsr_gemm_pack_columns(const dsr_gemm *g, const int8_t *q, int64_t t_stride,
                           int64_t j_stride, int32_t panel_begin, int32_t panel_end,
                           uint8_t *packed) {
#ifdef DSR_GEMM_X86
  int vector = j_stride == 1 && has_ssse3();
#endif
  int32_t panel = panel_begin;
#ifdef DSR_GEMM_X86
  /* Whole panels, up to 4 per pass. */
  int32_t whole_end = g->n / DSR_GEMM_PANEL_COLUMNS < panel_end ? g->n / DSR_GEMM_PANEL_COLUMNS
                                                                  : panel_end;
  while (vector && panel < whole_end) {
    int32_t count = whole_end - panel < 4 ? whole_end - panel : 4;
    pack_panels_rows16(g, q, t_stride, panel, count, packed);
    panel += count;
  }
#endif
  for (; panel < panel_end; panel++)
    pack_panel_scalar(g, q, t_stride, j_stride, panel, packed);
}

/* Correction terms of dsr_gemm.h, modulo 2^32: the stored zero points and the constant. */
typedef struct corrections {
  uint32_t cp, cq, constant;
} corrections;

static corrections corrections_of(const dsr_gemm *g) {
  corrections c;
  c.cp = (uint32_t)(g->p_zero + (g->p_unsigned ? 128 : 0));
  c.cq = (uint32_t)(g->q_zero + (g->p_unsigned ? 0 : 128));
  c.constant = (uint32_t)g->k * c.cp * c.cq;
  return c;
}

/* Portable kernel: one row against one panel. */
static void panel_portable(const dsr_gemm *g, const uint8_t *row, const uint8_t *panel,
                           int32_t sums[DSR_GEMM_PANEL_COLUMNS]) {
  int32_t quads = round4(g->k) / 4;
  uint32_t acc[DSR_GEMM_PANEL_COLUMNS] = {0};
  for (int32_t quad = 0; quad < quads; quad++) {
    const uint8_t *block = panel + (size_t)quad * 64;
    const uint8_t *r = row + quad * 4;
    for (int32_t c = 0; c < DSR_GEMM_PANEL_COLUMNS; c++) {
      for (int32_t u = 0; u < 4; u++) {
        int32_t pv = stored_value(r[u], g->p_unsigned);
        int32_t qv = stored_value(block[c * 4 + u], !g->p_unsigned);
        acc[c] += (uint32_t)(pv * qv);
      }
    }
  }
  memcpy(sums, acc, sizeof acc);
}

void dsr_gemm_run_portable(const dsr_gemm *g, const uint8_t *packed_rows,
                           const uint8_t *packed_columns, int32_t row_begin, int32_t row_end,
                           int32_t panel_begin, int32_t panel_end, int32_t *c,
                           int64_t c_stride) {
  int32_t k4 = round4(g->k);
  const int32_t *row_sums = (const int32_t *)(packed_rows + rows_data_bytes(g));
  const int32_t *col_sums = (const int32_t *)(packed_columns + round64(columns_data_bytes(g)));
  corrections corr = corrections_of(g);
  for (int32_t panel = panel_begin; panel < panel_end; panel++) {
    const uint8_t *pan = packed_columns + (size_t)panel * panel_bytes(g);
    int32_t j0 = panel * DSR_GEMM_PANEL_COLUMNS;
    int32_t width = g->n - j0 < DSR_GEMM_PANEL_COLUMNS ? g->n - j0 : DSR_GEMM_PANEL_COLUMNS;
    for (int32_t i = row_begin; i < row_end; i++) {
      int32_t sums[DSR_GEMM_PANEL_COLUMNS];
      panel_portable(g, packed_rows + (size_t)i * (size_t)k4, pan, sums);
      uint32_t row_term = corr.cq * (uint32_t)row_sums[i];
      int32_t *out = c + (int64_t)(i - row_begin) * c_stride + j0;
      for (int32_t col = 0; col < width; col++)
        out[col] = (int32_t)((uint32_t)sums[col] - row_term -
                             corr.cp * (uint32_t)col_sums[j0 + col] + corr.constant);
    }
  }
}

#ifdef DSR_GEMM_X86

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* One tile of rows x panels outputs (at most ROW_TILE x PANEL_TILE), constant sizes after
 * inlining so the accumulators stay in registers. */
VNNI_TARGET static inline __attribute__((always_inline)) void
tile_vnni(const dsr_gemm *g, const uint8_t *packed_rows, const uint8_t *packed_columns,
          const int32_t *row_sums, const int32_t *col_sums, corrections corr, int32_t i0,
          int32_t panel0, const int rows, const int panels, int32_t row_begin, int32_t *c,
          int64_t c_stride) {
  int32_t k4 = round4(g->k);
  int32_t quads = k4 / 4;
  size_t pb = panel_bytes(g);
  __m512i acc[ROW_TILE][PANEL_TILE];
  for (int r = 0; r < rows; r++)
    for (int p = 0; p < panels; p++)
      acc[r][p] = _mm512_setzero_si512();
  const uint8_t *row_ptr[ROW_TILE];
  for (int r = 0; r < rows; r++)
    row_ptr[r] = packed_rows + (size_t)(i0 + r) * (size_t)k4;
  const uint8_t *col_ptr = packed_columns + (size_t)panel0 * pb;
  for (int32_t quad = 0; quad < quads; quad++) {
    __m512i q[PANEL_TILE];
    for (int p = 0; p < panels; p++)
      q[p] = _mm512_loadu_si512((const void *)(col_ptr + (size_t)p * pb + (size_t)quad * 64));
    for (int r = 0; r < rows; r++) {
      int32_t word;
      memcpy(&word, row_ptr[r] + quad * 4, 4);
      __m512i b = _mm512_set1_epi32(word);
      for (int p = 0; p < panels; p++)
        acc[r][p] = g->p_unsigned ? _mm512_dpbusd_epi32(acc[r][p], b, q[p])
                                  : _mm512_dpbusd_epi32(acc[r][p], q[p], b);
    }
  }
  __m512i cp = _mm512_set1_epi32((int32_t)corr.cp);
  for (int p = 0; p < panels; p++) {
    int32_t j0 = (panel0 + p) * DSR_GEMM_PANEL_COLUMNS;
    int32_t width = g->n - j0 < DSR_GEMM_PANEL_COLUMNS ? g->n - j0 : DSR_GEMM_PANEL_COLUMNS;
    __mmask16 mask = (__mmask16)((1u << width) - 1u);
    __m512i col_term = _mm512_mullo_epi32(cp, _mm512_loadu_si512((const void *)(col_sums + j0)));
    for (int r = 0; r < rows; r++) {
      uint32_t row_term = corr.constant - corr.cq * (uint32_t)row_sums[i0 + r];
      __m512i v = _mm512_add_epi32(acc[r][p], _mm512_set1_epi32((int32_t)row_term));
      v = _mm512_sub_epi32(v, col_term);
      _mm512_mask_storeu_epi32(c + (int64_t)(i0 + r - row_begin) * c_stride + j0, mask, v);
    }
  }
}

VNNI_TARGET static inline __attribute__((always_inline)) void tile_rows(const dsr_gemm *g, const uint8_t *packed_rows,
                                  const uint8_t *packed_columns, const int32_t *row_sums,
                                  const int32_t *col_sums, corrections corr, int32_t i0,
                                  int32_t panel0, int rows, int32_t row_begin, int32_t *c,
                                  int64_t c_stride, const int panels) {
#define TILE_CASE(R)                                                                             \
  case R:                                                                                        \
    tile_vnni(g, packed_rows, packed_columns, row_sums, col_sums, corr, i0, panel0, R, panels,  \
              row_begin, c, c_stride);                                                           \
    break;
  switch (rows) {
    TILE_CASE(1)
    TILE_CASE(2)
    TILE_CASE(3)
    TILE_CASE(4)
    TILE_CASE(5)
  default:
    tile_vnni(g, packed_rows, packed_columns, row_sums, col_sums, corr, i0, panel0, ROW_TILE,
              panels, row_begin, c, c_stride);
    break;
  }
#undef TILE_CASE
}

VNNI_TARGET static void run_vnni(const dsr_gemm *g, const uint8_t *packed_rows,
                                 const uint8_t *packed_columns, int32_t row_begin,
                                 int32_t row_end, int32_t panel_begin, int32_t panel_end,
                                 int32_t *c, int64_t c_stride) {
  const int32_t *row_sums = (const int32_t *)(packed_rows + rows_data_bytes(g));
  const int32_t *col_sums = (const int32_t *)(packed_columns + round64(columns_data_bytes(g)));
  corrections corr = corrections_of(g);
  for (int32_t panel = panel_begin; panel < panel_end; panel += PANEL_TILE) {
    int panels = panel_end - panel < PANEL_TILE ? panel_end - panel : PANEL_TILE;
    for (int32_t i = row_begin; i < row_end; i += ROW_TILE) {
      int rows = row_end - i < ROW_TILE ? row_end - i : ROW_TILE;
      switch (panels) {
      case 1:
        tile_rows(g, packed_rows, packed_columns, row_sums, col_sums, corr, i, panel, rows,
                  row_begin, c, c_stride, 1);
        break;
      case 2:
        tile_rows(g, packed_rows, packed_columns, row_sums, col_sums, corr, i, panel, rows,
                  row_begin, c, c_stride, 2);
        break;
      case 3:
        tile_rows(g, packed_rows, packed_columns, row_sums, col_sums, corr, i, panel, rows,
                  row_begin, c, c_stride, 3);
        break;
      default:
        tile_rows(g, packed_rows, packed_columns, row_sums, col_sums, corr, i, panel, rows,
                  row_begin, c, c_stride, PANEL_TILE);
        break;
      }
    }
  }
}

int dsr_gemm_uses_vnni(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
}

#else

int dsr_gemm_uses_vnni(void) { return 0; }

#endif

void dsr_gemm_matvec_portable(const int8_t *a, int32_t m, int32_t k, int32_t a_zero,
                              const int8_t *b, int32_t b_zero, int32_t *out) {
  for (int32_t i = 0; i < m; i++) {
    const int8_t *row = a + (int64_t)i * k;
    uint32_t sum = 0;
    for (int32_t t = 0; t < k; t++)
      sum += (uint32_t)((row[t] - a_zero) * (b[t] - b_zero));
    out[i] = (int32_t)sum;
  }
}

#ifdef DSR_GEMM_X86

/*
 * 16 rows per vector: lane r gathers the 4 bytes a[i0 + r][4q .. 4q + 3] of quad q, flipped to
 * unsigned (value + 128), and vpdpbusd multiplies them by the broadcast quad of b and, in a
 * second sum, by ones for the row sums. Then C = S - b_zero * row_sum - (a_zero + 128) *
 * (sum of b) + k * (a_zero + 128) * b_zero, modulo 2^32 as in dsr_gemm_run. A k that is not
 * a multiple of 4 ends in a quad whose missing bytes pair with zeros of a padded b.
 */
VNNI_TARGET static void matvec_vnni(const int8_t *a, int32_t m, int32_t k, int32_t a_zero,
                                    const int8_t *b, int32_t b_zero, int32_t *out) {
  int32_t quads = k / 4, tail = k % 4;
  uint32_t b_sum = 0;
  for (int32_t t = 0; t < k; t++)
    b_sum += (uint32_t)b[t];
  uint32_t ca = (uint32_t)(a_zero + 128);
  uint32_t constant = (uint32_t)k * ca * (uint32_t)b_zero - ca * b_sum;
  const __m512i flip = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int32_t last_word = 0;
  memcpy(&last_word, b + 4 * quads, (size_t)tail);
  for (int32_t i0 = 0; i0 < m; i0 += 16) {
    int32_t rows = m - i0 < 16 ? m - i0 : 16;
    __mmask16 mask = (__mmask16)((1u << rows) - 1u);
    __m512i index = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(k));
    const int8_t *base = a + (int64_t)i0 * k;
    __m512i sums = _mm512_setzero_si512(), row_sums = _mm512_setzero_si512();
    for (int32_t q = 0; q < quads; q++) {
      /* Lanes past m start as 0x80 bytes, which the flip turns into zeros. */
      __m512i words = _mm512_mask_i32gather_epi32(flip, mask, index,
                                                  (const void *)(base + 4 * q), 1);
      words = _mm512_xor_si512(words, flip);
      int32_t b_word;
      memcpy(&b_word, b + 4 * q, 4);
      sums = _mm512_dpbusd_epi32(sums, words, _mm512_set1_epi32(b_word));
      row_sums = _mm512_dpbusd_epi32(row_sums, words, ones);
    }
    if (tail > 0) {
      /* Bytes past k are read from the row itself (or its successor), so only whole rows
       * are gathered: the last row's tail goes through the scalar loop below. */
      __mmask16 inner = i0 + rows == m ? (__mmask16)(mask >> 1) : mask;
      __m512i words = _mm512_mask_i32gather_epi32(flip, inner, index,
                                                  (const void *)(base + 4 * quads), 1);
      __m512i keep = _mm512_set1_epi32((int32_t)((1u << (8 * tail)) - 1u));
      words = _mm512_and_si512(_mm512_xor_si512(words, flip), keep);
      sums = _mm512_dpbusd_epi32(sums, words, _mm512_set1_epi32(last_word));
      row_sums = _mm512_dpbusd_epi32(row_sums, words, ones);
      if (inner != mask) {
        const int8_t *row = base + (int64_t)(rows - 1) * k + 4 * quads;
        uint32_t s = 0, r = 0;
        for (int32_t t = 0; t < tail; t++) {
          s += (uint32_t)(((int32_t)row[t] + 128) * b[4 * quads + t]);
          r += (uint32_t)((int32_t)row[t] + 128);
        }
        __mmask16 last = (__mmask16)(1u << (rows - 1));
        sums = _mm512_mask_add_epi32(sums, last, sums, _mm512_set1_epi32((int32_t)s));
        row_sums = _mm512_mask_add_epi32(row_sums, last, row_sums, _mm512_set1_epi32((int32_t)r));
      }
    }
    __m512i c = _mm512_sub_epi32(sums, _mm512_mullo_epi32(row_sums, _mm512_set1_epi32(b_zero)));
    c = _mm512_add_epi32(c, _mm512_set1_epi32((int32_t)constant));
    _mm512_mask_storeu_epi32(out + i0, mask, c);
  }
}

#endif

void dsr_gemm_matvec(const int8_t *a, int32_t m, int32_t k, int32_t a_zero, const int8_t *b,
                     int32_t b_zero, int32_t *out) {
#ifdef DSR_GEMM_X86
  if (dsr_gemm_uses_vnni() && (int64_t)k * 16 < INT32_MAX) {
    matvec_vnni(a, m, k, a_zero, b, b_zero, out);
    return;
  }
#endif
  dsr_gemm_matvec_portable(a, m, k, a_zero, b, b_zero, out);
}

void dsr_gemm_run(const dsr_gemm *g, const uint8_t *packed_rows, const uint8_t *packed_columns,
                  int32_t row_begin, int32_t row_end, int32_t panel_begin, int32_t panel_end,
                  int32_t *c, int64_t c_stride) {
  if (row_begin >= row_end || panel_begin >= panel_end)
    return;
#ifdef DSR_GEMM_X86
  if (dsr_gemm_uses_vnni()) {
    run_vnni(g, packed_rows, packed_columns, row_begin, row_end, panel_begin, panel_end, c,
             c_stride);
    return;
  }
#endif
  dsr_gemm_run_portable(g, packed_rows, packed_columns, row_begin, row_end, panel_begin,
                        panel_end, c, c_stride);
}
