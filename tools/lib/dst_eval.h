/*
 * Top-1 evaluation of a model on a data set, in float or fixed-point mode, on several
 * threads. Each thread owns one runtime context and arena; the model is shared read-only.
 */
#ifndef DST_EVAL_H
#define DST_EVAL_H

#include <stdint.h>

#include "dst_data.h"
#include "runtime/dsr_runtime.h"

typedef struct dst_eval_options {
  dsr_mode mode;
  int32_t threads;             /* 1 or more */
  const dsr_slice *slices;     /* one per deformable layer, or NULL for the model's own */
  int32_t slice_count;
  /* Called from one worker thread now and then with the images done so far; may be NULL. */
  void (*progress)(void *user, int32_t done, int32_t total);
  void *progress_user;
} dst_eval_options;

typedef struct dst_eval_result {
  int32_t correct;
  int32_t count;
  double top1_percent;
} dst_eval_result;

/*
 * Runs images first .. first + count - 1 of data and counts top-1 hits. predictions, when not
 * NULL, receives count predicted classes. Results do not depend on the thread count. Errors
 * include DS_ERR_DATA for a label of data outside the model's output classes
 * (dst_dataset_check_labels).
 */
ds_status dst_evaluate(const dsr_model *model, const dst_dataset *data, int32_t first,
                       int32_t count, const dst_eval_options *options, dst_eval_result *result,
                       int32_t *predictions, ds_error *err);

/* Number of online processors, at least 1. */
int32_t dst_default_threads(void);

#endif
