#include "dst_progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double dst_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dst_progress_start(dst_progress *progress, const char *label) {
  progress->label = label;
  progress->start_s = dst_now_s();
  progress->last_percent = -1;
  progress->tty = isatty(STDERR_FILENO);
}

void dst_progress_update(void *user, int32_t done, int32_t total) {
  dst_progress *progress = user;
  int32_t percent = total > 0 ? (int32_t)((int64_t)done * 100 / total) : 100;
  int32_t step = progress->tty ? 1 : 10;
  if (percent / step == progress->last_percent / step && percent != 100)
    return;
  if (percent == progress->last_percent)
    return;
  progress->last_percent = percent;

  double elapsed_s = dst_now_s() - progress->start_s;
  if (progress->tty) {
    fprintf(stderr, "\r  %s: %d/%d (%d%%, %.1f s)%s", progress->label, done, total, percent,
            elapsed_s, percent == 100 ? "\n" : "");
  } else {
    fprintf(stderr, "  %s: %d/%d (%d%%, %.1f s)\n", progress->label, done, total, percent,
            elapsed_s);
  }
  fflush(stderr);
}
