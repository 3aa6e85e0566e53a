/*
 * Throughput of the packed int8 product (runtime/dsr_gemm.h) on the matrix shapes of DAT-T
 * and DAT-T++ at 224, one thread: the kernel dsr_gemm_run picks on this CPU against the
 * portable kernel, in the same run. For each shape it times packing (both operands) and the
 * product separately, keeps the fastest of several rounds, and prints GMAC/s and the ratio.
 *
 *   bench_gemm [ROUNDS]        (default 5)
 *
 * Exit status 0, or 1 when memory runs out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/dsr_gemm.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct shape {
  const char *what;
  int32_t m, k, n;
} shape;

static const shape shapes[] = {
    {"DAT-T stage 1 MLP linear1 (56x56 tokens)", 3136, 96, 384},
    {"DAT-T stage 1 MLP linear2", 3136, 384, 96},
    {"DAT-T stage 3 MLP linear1 (14x14 tokens)", 196, 384, 1536},
    {"DAT-T stage 4 MLP linear1 (7x7 tokens)", 49, 768, 3072},
    {"DAT-T stage 4 MLP linear2", 49, 3072, 768},
    {"DAT-T++ stage 1 1x1 conv (64 -> 256, 56x56)", 256, 64, 3136},
    {"window attention q.k (49 x 32 x 49)", 49, 32, 49},
};

typedef void (*run_fn)(const dsr_gemm *, const uint8_t *, const uint8_t *, int32_t, int32_t,
                       int32_t, int32_t, int32_t *, int64_t);

/* Fastest time of rounds runs of the product, in seconds. */
static double time_run(run_fn run, const dsr_gemm *g, const uint8_t *rows, const uint8_t *cols,
                       int32_t *c, int rounds, int repeats) {
  double best = 1e30;
  for (int r = 0; r < rounds; r++) {
    double start = now_s();
    for (int i = 0; i < repeats; i++)
      run(g, rows, cols, 0, g->m, 0, dsr_gemm_panels(g), c, g->n);
    double elapsed = (now_s() - start) / repeats;
    best = elapsed < best ? elapsed : best;
  }
  return best;
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 5;
  if (rounds < 1)
    rounds = 1;
  printf("kernel picked on this CPU: %s\n\n", dsr_gemm_uses_vnni() ? "AVX-512 VNNI" : "portable");
  printf("| shape | m x k x n | pack ms | product ms | GMAC/s | portable GMAC/s | ratio |\n");
  printf("|---|---|---|---|---|---|---|\n");
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const shape *sh = &shapes[s];
    dsr_gemm g = {sh->m, sh->n, sh->k, -3, 0, 1};
    int8_t *a = malloc((size_t)sh->m * sh->k), *b = malloc((size_t)sh->k * sh->n);
    uint8_t *rows = aligned_alloc(64, dsr_gemm_rows_bytes(&g));
    uint8_t *cols = aligned_alloc(64, dsr_gemm_columns_bytes(&g));
    int32_t *c = malloc((size_t)sh->m * sh->n * sizeof(int32_t));
    if (a == NULL || b == NULL || rows == NULL || cols == NULL || c == NULL) {
      fprintf(stderr, "bench_gemm: out of memory\n");
      return 1;
    }
    for (int64_t i = 0; i < (int64_t)sh->m * sh->k; i++)
      a[i] = (int8_t)(i * 7 + 3);
    for (int64_t i = 0; i < (int64_t)sh->k * sh->n; i++)
      b[i] = (int8_t)(i * 13 + 5);

    double macs = (double)sh->m * sh->k * sh->n;
    int repeats = (int)(2e8 / macs) + 1;
    double pack_best = 1e30;
    for (int r = 0; r < rounds; r++) {
      double start = now_s();
      dsr_gemm_pack_rows(&g, a, sh->k, 1, 0, sh->m, rows);
      dsr_gemm_pack_columns(&g, b, sh->n, 1, 0, dsr_gemm_panels(&g), cols);
      double elapsed = now_s() - start;
      pack_best = elapsed < pack_best ? elapsed : pack_best;
    }
    double fast = time_run(dsr_gemm_run, &g, rows, cols, c, rounds, repeats);
    double portable = time_run(dsr_gemm_run_portable, &g, rows, cols, c, rounds,
                               repeats / 8 + 1);
    printf("| %s | %d x %d x %d | %.3f | %.3f | %.1f | %.1f | %.1fx |\n", sh->what, sh->m,
           sh->k, sh->n, pack_best * 1e3, fast * 1e3, macs / fast * 1e-9,
           macs / portable * 1e-9, portable / fast);
    free(a);
    free(b);
    free(rows);
    free(cols);
    free(c);
  }
  return 0;
}
