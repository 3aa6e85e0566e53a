/*
 * Entropy (KL-divergence) calibration: a linear histogram of |x| per tensor and the clipping
 * threshold whose quantized distribution loses the least information against the observed
 * one. docs/fixed-point.md (section 1.2) specifies the method.
 *
 * The histogram has bin_count bins of width 2^exponent, covering |x| in
 * [0, bin_count * 2^exponent). The first nonzero value sets the smallest exponent that covers
 * it. A larger value raises the exponent, and each raise merges pairs of bins. Power-of-two
 * widths nest, so the final histogram depends only on the values and not on their order:
 * histograms of separate threads merge into exactly the histogram of one thread.
 *
 * Ownership: counts point into memory the caller owns (dsq_calibration allocates one block
 * for all tensors). Thread safety: none; one histogram per thread.
 */
#ifndef DSQ_ENTROPY_H
#define DSQ_ENTROPY_H

#include <stdint.h>

#define DSQ_KL_BINS_DEFAULT 2048
#define DSQ_KL_BINS_MIN 256
#define DSQ_KL_BINS_MAX 4096       /* keeps DSQ_KL_EMPTY_BIN_MASS * bins below 0.5 */
#define DSQ_KL_MIN_THRESHOLD_BINS 128 /* the smallest candidate threshold, in bins */
#define DSQ_KL_EMPTY_BIN_MASS 1e-4 /* probability given to each empty bin of the quantized
                                      distribution before the divergence is taken */
#define DSQ_KL_EXPONENT_UNSET INT32_MIN

typedef struct dsq_kl_histogram {
  int32_t bin_count; /* even, DSQ_KL_BINS_MIN..DSQ_KL_BINS_MAX */
  int32_t exponent;  /* bin width 2^exponent; DSQ_KL_EXPONENT_UNSET while only zeros were seen */
  uint64_t *counts;  /* bin_count counts; bin j counts |x| in [j, j + 1) * 2^exponent */
  double limit;      /* bin_count * 2^exponent, or 0 while unset: the first |x| not covered */
  double scale;      /* 2^-exponent */
} dsq_kl_histogram;

/* Adds one finite value. The caller skips NaN and infinities. */
void dsq_kl_histogram_add(dsq_kl_histogram *histogram, float value);

/* Adds from into into (same bin_count). from is unchanged. */
void dsq_kl_histogram_merge(dsq_kl_histogram *into, const dsq_kl_histogram *from);

/*
 * Returns the clipping threshold T (> 0) of least KL divergence for a quantizer with levels
 * steps (255 for int8, 65535 for int16) over the range [max(min, -T), min(max, T)], where min
 * and max are the observed extremes. Returns 0 when the histogram contains no nonzero value.
 * *divergence, when not NULL, receives the divergence of the chosen threshold (in nats).
 */
double dsq_kl_threshold(const dsq_kl_histogram *histogram, double min, double max,
                        int32_t levels, double *divergence);

#endif
