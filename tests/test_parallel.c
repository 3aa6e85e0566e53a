/*
 * Tests of intra-op parallelism: the thread pool of tools/lib/dst_pool.c runs every task index
 * once, and a model gives the same bytes in every tensor, float and fixed point, whatever the
 * worker count of its context. Besides the real pool, a hook that runs the tasks in reverse
 * order on one thread shows that the split does not depend on the order of the tasks.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_quantize.h"
#include "ds_test_fixture.h"
#include "runtime/dsr_runtime.h"
#include "runtime/dsr_slice.h"
#include "tools/lib/dst_pool.h"

/* ------------------------------------------------------------------ the pool */

typedef struct count_job {
  atomic_int runs[512];
} count_job;

static void count_task(void *context, int32_t index) {
  count_job *job = context;
  atomic_fetch_add(&job->runs[index], 1);
}

Test(pool, runs_every_task_once) {
  dst_pool *pool;
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_pool_create(3, &pool, &err), DS_OK, "%s", err.message);
  static count_job job;
  for (int32_t round = 0; round < 2000; round++) {
    int32_t count = 1 + round % 3;
    for (int32_t i = 0; i < 512; i++)
      atomic_init(&job.runs[i], 0);
    dst_pool_run(pool, count_task, &job, count);
    for (int32_t i = 0; i < 512; i++)
      cr_assert_eq(atomic_load(&job.runs[i]), i < count ? 1 : 0,
                   "round %d: task %d ran %d times", round, i, atomic_load(&job.runs[i]));
  }
  dst_pool_destroy(pool);
}

Test(pool, rejects_bad_worker_counts) {
  dst_pool *pool = (dst_pool *)&pool;
  ds_error err;
  ds_error_clear(&err);
  cr_expect_eq(dst_pool_create(0, &pool, &err), DS_ERR_INVALID_ARGUMENT);
  cr_expect_null(pool);
  cr_expect_neq(strstr(err.message, "0 workers"), NULL, "message: %s", err.message);
  cr_expect_eq(dst_pool_create(DST_POOL_MAX_WORKERS + 1, &pool, &err), DS_ERR_INVALID_ARGUMENT);
  dst_pool_destroy(NULL);
}

/* ------------------------------------------------------------------ models */

/* Runs the tasks of a region in reverse order on the calling thread. */
static void run_reversed(void *pool, dsr_task task, void *task_context, int32_t task_count) {
  (void)pool;
  for (int32_t i = task_count - 1; i >= 0; i--)
    task(task_context, i);
}


/* A context planned with DSR_PLAN_KEEP_ALL, so every tensor can be read after the run. */
typedef struct run {
  dsr_context ctx;
  void *arena;
  size_t arena_bytes;
} run;

static void run_model(const dsr_model *model, dsr_mode mode, const dsr_parallel *parallel,
                      const float *image, dsr_slice slice, run *r) {
  ds_error err;
  ds_error_clear(&err);
  dsr_options options = {.flags = DSR_PLAN_KEEP_ALL, .parallel = parallel};
  dsr_plan_info plan;
  cr_assert_eq(dsr_plan_with_options(model, mode, &options, &plan, &err), DS_OK, "%s",
               err.message);
  r->arena_bytes = (plan.arena_bytes + 63) & ~(size_t)63;
  r->arena = aligned_alloc(64, r->arena_bytes);
  cr_assert_not_null(r->arena);
  cr_assert_eq(dsr_context_init_with_options(&r->ctx, model, mode, &options, r->arena,
                                             r->arena_bytes, &err),
               DS_OK, "%s", err.message);
  if (slice.rows > 1 || slice.cols > 1) {
    for (int32_t layer = 0; layer < r->ctx.deform_count; layer++) {
      /* Layers too small for the slice keep their own. */
      dsr_context_set_slice(&r->ctx, layer, slice, NULL);
    }
  }
  int64_t n = dsr_tensor_elements(&model->tensors[model->input]);
  memcpy(dsr_input_f32(&r->ctx), image, sizeof(float) * (size_t)n);
  dsr_invoke(&r->ctx);
}

static size_t tensor_bytes(const dsr_model *model, dsr_mode mode, int32_t t) {
  const dsr_tensor *tensor = &model->tensors[t];
  size_t element = sizeof(float);
  if (mode == DSR_MODE_FIXED)
    element = tensor->qparams.dtype == DSR_DTYPE_I8 ? 1 : (tensor->qparams.dtype == DSR_DTYPE_I16 ? 2 : 4);
  return (size_t)dsr_tensor_elements(tensor) * element;
}

/* Requires every node output of b to equal that of a, byte for byte. */
static void expect_same_tensors(const dsr_model *model, dsr_mode mode, const run *a,
                                const run *b, const char *what) {
  for (int32_t i = 0; i < model->node_count; i++) {
    int32_t t = model->nodes[i].output;
    const void *x = dsr_tensor_data(&a->ctx, t), *y = dsr_tensor_data(&b->ctx, t);
    cr_assert(x != NULL && y != NULL);
    cr_assert_eq(memcmp(x, y, tensor_bytes(model, mode, t)), 0,
                 "%s: node %d '%s' (op %d) differs from the one-thread run", what, i,
                 model->nodes[i].name, model->nodes[i].op);
  }
  int64_t outputs = dsr_tensor_elements(&model->tensors[model->output]);
  cr_assert_eq(memcmp(dsr_output_f32(&a->ctx), dsr_output_f32(&b->ctx),
                      sizeof(float) * (size_t)outputs),
               0, "%s: the float output differs", what);
}

static void free_run(run *r) { free(r->arena); }

/* Runs name in both modes, unsliced and sliced, with one thread, the reverse-order hook at 2
 * and 5 workers, and pools of 2 and 3 threads, and compares every tensor. */
static void compare_worker_counts(const char *name) {
  dsr_model model;
  float *image;
  fixture_load_quantized(name, &model, &image);

  dst_pool *pools[2];
  ds_error err;
  ds_error_clear(&err);
  cr_assert_eq(dst_pool_create(2, &pools[0], &err), DS_OK, "%s", err.message);
  cr_assert_eq(dst_pool_create(3, &pools[1], &err), DS_OK, "%s", err.message);
  /* min_task_ops 1 makes every kernel split wherever it has units, even on tiny maps. */
  dsr_parallel hooks[4] = {{run_reversed, NULL, 2, 1}, {run_reversed, NULL, 5, 1},
                           dst_pool_parallel(pools[0]), dst_pool_parallel(pools[1])};
  hooks[2].min_task_ops = 1;
  hooks[3].min_task_ops = 1;
  const char *labels[4] = {"reversed x2", "reversed x5", "pool x2", "pool x3"};
  const dsr_slice slices[2] = {dsr_slice_none(), {2, 2, 1, DSR_SLICE_PHYSICAL}};
  const dsr_mode modes[2] = {DSR_MODE_FLOAT, DSR_MODE_FIXED};

  for (int32_t m = 0; m < 2; m++) {
    for (int32_t s = 0; s < 2; s++) {
      run serial;
      run_model(&model, modes[m], NULL, image, slices[s], &serial);
      for (int32_t h = 0; h < 4; h++) {
        char what[160];
        snprintf(what, sizeof what, "%s, %s mode, slice %d, %s", name,
                 modes[m] == DSR_MODE_FIXED ? "fixed" : "float", s, labels[h]);
        run parallel;
        run_model(&model, modes[m], &hooks[h], image, slices[s], &parallel);
        expect_same_tensors(&model, modes[m], &serial, &parallel, what);
        free_run(&parallel);
      }
      free_run(&serial);
    }
  }
  dst_pool_destroy(pools[0]);
  dst_pool_destroy(pools[1]);
  free(image);
  ds_model_free(&model);
}

Test(parallel_models, deformable_layers_match_one_thread) {
  compare_worker_counts("deform_layer_dat_pp");
  compare_worker_counts("deform_layer_dat");
  compare_worker_counts("deform_layer_rect");
}

Test(parallel_models, small_models_match_one_thread) {
  compare_worker_counts("dat_pp_tiny");
  compare_worker_counts("dat_offsets_tiny");
}

Test(parallel_models, bundled_model_matches_one_thread) {
  compare_worker_counts("models/dat_pp_nano.onnx");
}

/* ------------------------------------------------------------------ bad options */

Test(parallel_options, rejects_bad_worker_counts) {
  dsr_model model;
  float *image;
  fixture_load_quantized("deform_layer_dat_pp", &model, &image);
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info plan;
  dsr_parallel zero = {run_reversed, NULL, 0, 0};
  dsr_options options = {.flags = 0, .parallel = &zero};
  cr_expect_eq(dsr_plan_with_options(&model, DSR_MODE_FIXED, &options, &plan, &err),
               DS_ERR_INVALID_ARGUMENT);
  cr_expect_neq(strstr(err.message, "0 workers"), NULL, "message: %s", err.message);
  dsr_parallel many = {run_reversed, NULL, DSR_MAX_WORKERS + 1, 0};
  options.parallel = &many;
  cr_expect_eq(dsr_plan_with_options(&model, DSR_MODE_FIXED, &options, &plan, &err),
               DS_ERR_INVALID_ARGUMENT);
  options.flags = 0x40;
  options.parallel = NULL;
  cr_expect_eq(dsr_plan_with_options(&model, DSR_MODE_FIXED, &options, &plan, &err),
               DS_ERR_INVALID_ARGUMENT);
  free(image);
  ds_model_free(&model);
}

Test(parallel_options, more_workers_need_a_larger_arena) {
  dsr_model model;
  float *image;
  fixture_load_quantized("deform_layer_dat_pp", &model, &image);
  ds_error err;
  ds_error_clear(&err);
  dsr_plan_info one, four;
  dsr_parallel hook = {run_reversed, NULL, 4, 0};
  dsr_options options = {.flags = 0, .parallel = &hook};
  cr_assert_eq(dsr_plan(&model, DSR_MODE_FIXED, 0, &one, &err), DS_OK, "%s", err.message);
  cr_assert_eq(dsr_plan_with_options(&model, DSR_MODE_FIXED, &options, &four, &err), DS_OK,
               "%s", err.message);
  cr_expect_gt(four.scratch_bytes, one.scratch_bytes);

  /* An arena sized for one worker is too small for four, and the message gives the missing
   * bytes. */
  size_t bytes = (one.arena_bytes + 63) & ~(size_t)63;
  void *arena = aligned_alloc(64, bytes);
  cr_assert_not_null(arena);
  dsr_context ctx;
  if (bytes < four.arena_bytes) {
    cr_expect_eq(dsr_context_init_with_options(&ctx, &model, DSR_MODE_FIXED, &options, arena,
                                               bytes, &err),
                 DS_ERR_ARENA_TOO_SMALL);
    cr_expect_neq(strstr(err.message, "missing"), NULL, "message: %s", err.message);
  }
  free(arena);
  free(image);
  ds_model_free(&model);
}
