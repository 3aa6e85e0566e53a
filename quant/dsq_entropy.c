#include "dsq_entropy.h"

#include <math.h>
#include <string.h>

/* Smallest exponent e with magnitude < bin_count * 2^e, for a finite magnitude > 0. */
static int32_t covering_exponent(double magnitude, int32_t bin_count) {
  int power;
  frexp(magnitude / bin_count, &power); /* magnitude / bin_count < 2^power */
  int32_t exponent = power;
  while (exponent > INT32_MIN + 1 && magnitude < ldexp(bin_count, exponent - 1))
    exponent--;
  while (magnitude >= ldexp(bin_count, exponent))
    exponent++;
  return exponent;
}

static void set_exponent(dsq_kl_histogram *histogram, int32_t exponent) {
  histogram->exponent = exponent;
  histogram->limit = ldexp(histogram->bin_count, exponent);
  histogram->scale = ldexp(1.0, -exponent);
}

/* Raises the exponent by shift, adding each bin into bin (index >> shift). */
static void raise_exponent(dsq_kl_histogram *histogram, int32_t exponent) {
  int32_t shift = exponent - histogram->exponent;
  uint64_t *counts = histogram->counts;
  set_exponent(histogram, exponent);
  if (shift <= 0)
    return;
  if (shift >= 30) {
    uint64_t sum = 0;
    for (int32_t j = 0; j < histogram->bin_count; j++)
      sum += counts[j];
    memset(counts, 0, sizeof *counts * (size_t)histogram->bin_count);
    counts[0] = sum;
    return;
  }
  /* Ascending order: the target j >> shift is never a bin still to be read. */
  for (int32_t j = 1; j < histogram->bin_count; j++) {
    uint64_t count = counts[j];
    counts[j] = 0;
    counts[j >> shift] += count;
  }
}

void dsq_kl_histogram_add(dsq_kl_histogram *histogram, float value) {
  double magnitude = fabs((double)value);
  if (magnitude == 0.0) {
    histogram->counts[0]++;
    return;
  }
  /* limit is 0 until the first nonzero value sets the exponent. */
  if (magnitude >= histogram->limit) {
    int32_t exponent = covering_exponent(magnitude, histogram->bin_count);
    if (histogram->exponent == DSQ_KL_EXPONENT_UNSET)
      set_exponent(histogram, exponent);
    else
      raise_exponent(histogram, exponent);
  }
  /* Scaling by a power of two is exact in double, so the bin is exactly floor(|x| / width). */
  int32_t bin = (int32_t)(magnitude * histogram->scale);
  histogram->counts[bin]++;
}

void dsq_kl_histogram_merge(dsq_kl_histogram *into, const dsq_kl_histogram *from) {
  if (from->exponent == DSQ_KL_EXPONENT_UNSET) {
    into->counts[0] += from->counts[0];
    return;
  }
  if (into->exponent == DSQ_KL_EXPONENT_UNSET)
    set_exponent(into, from->exponent);
  else if (from->exponent > into->exponent)
    raise_exponent(into, from->exponent);

  int32_t shift = into->exponent - from->exponent;
  for (int32_t j = 0; j < from->bin_count; j++) {
    int32_t target = shift >= 30 ? 0 : j >> shift;
    into->counts[target] += from->counts[j];
  }
}

/* Prefix sums over bins 0..j-1: counts, counts * log(counts) and nonempty bins. */
typedef struct prefix_sums {
  double count[DSQ_KL_BINS_MAX + 1];
  double count_log_count[DSQ_KL_BINS_MAX + 1];
  int32_t nonempty[DSQ_KL_BINS_MAX + 1];
} prefix_sums;

static double count_log_count(double count) {
  return count > 0.0 ? count * log(count) : 0.0;
}

/*
 * KL(P || Q) for the threshold of i bins, with nq quantization bins over them. P: the counts
 * of bins 0..i-1, the outliers added to bin i-1. Q: each of the nq groups of bins
 * [g * i / nq, (g + 1) * i / nq) quantized to one level, its count spread evenly over its
 * nonempty bins. Both are then smoothed: each empty bin gets DSQ_KL_EMPTY_BIN_MASS and the
 * nonempty bins shrink in proportion to keep the sum 1. Bins empty in both add nothing.
 */
static double divergence(const uint64_t *counts, const prefix_sums *sums, int32_t i,
                         int32_t nq, double total) {
  const double inside = sums->count[i];
  const double outliers = total - inside;
  const double last = (double)counts[i - 1];
  const int32_t empty_q = i - sums->nonempty[i];
  const int32_t empty_p = empty_q - (last == 0.0 && outliers > 0.0 ? 1 : 0);
  const double shrink_p = 1.0 - DSQ_KL_EMPTY_BIN_MASS * empty_p;
  const double shrink_q = 1.0 - DSQ_KL_EMPTY_BIN_MASS * empty_q;
  const double log_total = log(total), log_shrink_p = log(shrink_p);
  double kl = 0.0;
  double last_q = DSQ_KL_EMPTY_BIN_MASS;

  if (nq >= i) {
    /* One bin per level: p_j / q_j is the same for every nonempty bin below i - 1. */
    double below = inside - last;
    if (below > 0.0)
      kl += shrink_p * below / total * log(shrink_p * inside / (shrink_q * total));
    if (last > 0.0)
      last_q = shrink_q * last / inside;
  } else {
    for (int32_t g = 0; g < nq; g++) {
      int32_t a = (int32_t)((int64_t)g * i / nq);
      int32_t b = (int32_t)((int64_t)(g + 1) * i / nq);
      double group_count = sums->count[b] - sums->count[a];
      int32_t group_nonempty = sums->nonempty[b] - sums->nonempty[a];
      if (group_nonempty == 0)
        continue;
      double q = shrink_q * group_count / group_nonempty / inside;
      double c = group_count, c_log_c = sums->count_log_count[b] - sums->count_log_count[a];
      if (b == i) { /* bin i - 1 carries the outliers: it is added below */
        c -= last;
        c_log_c -= count_log_count(last);
        if (last > 0.0)
          last_q = q;
      }
      /* sum of p_j log(p_j / q) with p_j = shrink_p * c_j / total */
      if (c > 0.0)
        kl += shrink_p / total * (c_log_c + c * (log_shrink_p - log_total - log(q)));
    }
  }

  double last_p = shrink_p * (last + outliers) / total;
  if (last_p > 0.0)
    kl += last_p * log(last_p / last_q);
  return kl;
}

double dsq_kl_threshold(const dsq_kl_histogram *histogram, double min, double max,
                        int32_t levels, double *divergence_out) {
  if (divergence_out != NULL)
    *divergence_out = 0.0;
  if (histogram->exponent == DSQ_KL_EXPONENT_UNSET || levels < 1)
    return 0.0;
  const uint64_t *counts = histogram->counts;
  int32_t used = histogram->bin_count;
  while (used > 0 && counts[used - 1] == 0)
    used--;
  if (used == 0)
    return 0.0;

  prefix_sums storage; /* about 90 KB of stack */
  prefix_sums *sums = &storage;
  sums->count[0] = 0.0;
  sums->count_log_count[0] = 0.0;
  sums->nonempty[0] = 0;
  for (int32_t j = 0; j < used; j++) {
    double c = (double)counts[j];
    sums->count[j + 1] = sums->count[j] + c;
    sums->count_log_count[j + 1] = sums->count_log_count[j] + count_log_count(c);
    sums->nonempty[j + 1] = sums->nonempty[j] + (counts[j] > 0);
  }
  const double total = sums->count[used];
  const double width = ldexp(1.0, histogram->exponent);
  const int32_t first = used < DSQ_KL_MIN_THRESHOLD_BINS ? used : DSQ_KL_MIN_THRESHOLD_BINS;

  /* Descending with a strict comparison: on a tie the larger threshold (less clipping) wins. */
  double best_threshold = used * width, best_kl = INFINITY;
  for (int32_t i = used; i >= first; i--) {
    if (sums->count[i] <= 0.0)
      continue;
    double threshold = i * width;
    double lo = fmin(fmax(min, -threshold), 0.0);
    double hi = fmax(fmin(max, threshold), 0.0);
    double step = (hi - lo) / levels;
    if (!(step > 0.0))
      continue;
    double levels_inside = threshold / step;
    int32_t nq = levels_inside >= i ? i : (int32_t)floor(levels_inside + 0.5);
    if (nq < 1)
      nq = 1;
    double kl = divergence(counts, sums, i, nq, total);
    if (kl < best_kl) {
      best_kl = kl;
      best_threshold = threshold;
    }
  }
  if (divergence_out != NULL)
    *divergence_out = isfinite(best_kl) ? best_kl : 0.0;
  return best_threshold;
}
