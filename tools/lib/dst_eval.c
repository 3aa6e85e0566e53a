#include "dst_eval.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DST_MAX_THREADS 64

typedef struct eval_shared {
  const dsr_model *model;
  const dst_dataset *data;
  const dst_eval_options *options;
  dsr_plan_info plan;
  int32_t first;
  int32_t count;
  int32_t thread_count;
  int32_t *predictions;      /* count entries, always set */
  atomic_int done;
} eval_shared;

typedef struct eval_worker {
  eval_shared *shared;
  int32_t index;
  ds_status status;
  ds_error err;
  pthread_t thread;
} eval_worker;

int32_t dst_default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1)
    return 1;
  return n > DST_MAX_THREADS ? DST_MAX_THREADS : (int32_t)n;
}

static int32_t argmax(const float *values, int64_t count) {
  int32_t best = 0;
  for (int64_t i = 1; i < count; i++) {
    if (values[i] > values[best])
      best = (int32_t)i;
  }
  return best;
}

/* Images are dealt round-robin, so every thread gets a similar share and the predictions of
 * image i never depend on which thread ran it. */
static void *eval_worker_main(void *arg) {
  eval_worker *worker = arg;
  eval_shared *shared = worker->shared;
  const dsr_model *model = shared->model;
  const dst_eval_options *options = shared->options;
  const size_t arena_bytes = (shared->plan.arena_bytes + 63u) & ~(size_t)63u;

  void *arena = aligned_alloc(64, arena_bytes);
  if (arena == NULL) {
    worker->status = ds_fail(&worker->err, DS_ERR_OUT_OF_MEMORY,
                             "cannot allocate a %zu-byte runtime arena", arena_bytes);
    return NULL;
  }

  dsr_context ctx;
  worker->status = dsr_context_init(&ctx, model, options->mode, 0, arena, arena_bytes,
                                    &worker->err);
  for (int32_t i = 0; worker->status == DS_OK && options->slices != NULL &&
                      i < options->slice_count;
       i++) {
    worker->status = dsr_context_set_slice(&ctx, i, options->slices[i], &worker->err);
  }
  if (worker->status != DS_OK) {
    free(arena);
    return NULL;
  }

  const int64_t pixels = dst_dataset_image_elements(shared->data);
  const int64_t classes = dsr_tensor_elements(&model->tensors[model->output]);
  float *input = dsr_input_f32(&ctx);

  for (int32_t i = worker->index; i < shared->count; i += shared->thread_count) {
    const int32_t image = shared->first + i;
    memcpy(input, shared->data->images + (size_t)image * (size_t)pixels,
           sizeof(float) * (size_t)pixels);
    dsr_invoke(&ctx);
    shared->predictions[i] = argmax(dsr_output_f32(&ctx), classes);

    int done = atomic_fetch_add(&shared->done, 1) + 1;
    if (worker->index == 0 && options->progress != NULL && (i / shared->thread_count) % 64 == 0)
      options->progress(options->progress_user, done, shared->count);
  }

  free(arena);
  return NULL;
}

ds_status dst_evaluate(const dsr_model *model, const dst_dataset *data, int32_t first,
                       int32_t count, const dst_eval_options *options, dst_eval_result *result,
                       int32_t *predictions, ds_error *err) {
  memset(result, 0, sizeof *result);
  if (first < 0 || count < 0 || first > data->count || count > data->count - first) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "images %d..%d requested, but the data set has %d", first, first + count - 1,
                   data->count);
  }

  const dsr_tensor *input = &model->tensors[model->input];
  const int64_t pixels = dst_dataset_image_elements(data);
  if (dsr_tensor_elements(input) != pixels) {
    return ds_fail(err, DS_ERR_SHAPE,
                   "model input '%s' has %lld elements, but the images are %dx%d with %d "
                   "channels; give data of the model's input shape",
                   input->name, (long long)dsr_tensor_elements(input), data->side, data->side,
                   data->channels > 0 ? data->channels : 1);
  }
  DS_TRY(dst_dataset_check_labels(data, dsr_tensor_elements(&model->tensors[model->output]),
                                  err));

  eval_shared shared = {.model = model, .data = data, .options = options, .first = first,
                        .count = count};
  atomic_init(&shared.done, 0);
  DS_TRY(dsr_plan(model, options->mode, 0, &shared.plan, err));

  shared.thread_count = options->threads < 1 ? 1 : options->threads;
  if (shared.thread_count > DST_MAX_THREADS)
    shared.thread_count = DST_MAX_THREADS;
  if (shared.thread_count > count && count > 0)
    shared.thread_count = count;

  shared.predictions = predictions != NULL
                           ? predictions
                           : malloc(sizeof(int32_t) * (count > 0 ? (size_t)count : 1));
  eval_worker *workers = calloc((size_t)shared.thread_count, sizeof *workers);
  if (shared.predictions == NULL || workers == NULL) {
    if (predictions == NULL)
      free(shared.predictions);
    free(workers);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate evaluation state");
  }

  int32_t started = 0;
  for (; started < shared.thread_count; started++) {
    workers[started].shared = &shared;
    workers[started].index = started;
    if (pthread_create(&workers[started].thread, NULL, eval_worker_main, &workers[started]) != 0)
      break;
  }
  for (int32_t i = 0; i < started; i++)
    pthread_join(workers[i].thread, NULL);

  ds_status status = DS_OK;
  if (started < shared.thread_count)
    status = ds_fail(err, DS_ERR_INTERNAL, "cannot start evaluation thread %d", started);
  for (int32_t i = 0; i < started && status == DS_OK; i++) {
    if (workers[i].status != DS_OK) {
      if (err != NULL)
        *err = workers[i].err;
      status = workers[i].status;
    }
  }

  if (status == DS_OK) {
    for (int32_t i = 0; i < count; i++)
      result->correct += shared.predictions[i] == data->labels[first + i];
    result->count = count;
    result->top1_percent = count > 0 ? 100.0 * result->correct / count : 0.0;
    if (options->progress != NULL)
      options->progress(options->progress_user, count, count);
  }

  if (predictions == NULL)
    free(shared.predictions);
  free(workers);
  return status;
}
