/* Progress lines for long steps, written to stderr. */
#ifndef DST_PROGRESS_H
#define DST_PROGRESS_H

#include <stdint.h>

typedef struct dst_progress {
  const char *label;
  double start_s;
  int32_t last_percent;  /* last percentage printed, -1 before the first */
  int tty;               /* 1: redraw one line; 0: a line per 10 percent */
} dst_progress;

void dst_progress_start(dst_progress *progress, const char *label);

/* Callback form for dst_evaluate: user is a dst_progress. */
void dst_progress_update(void *user, int32_t done, int32_t total);

/* Seconds on a monotonic clock. */
double dst_now_s(void);

#endif
