/*
 * Persistent thread pool for the runtime's parallel hook. A region is published under the
 * mutex with a new generation number. Workers and the caller then claim task indices from an
 * atomic counter, so each index runs exactly once. A worker joins a region under the mutex
 * and counts itself in busy until it stops claiming, and the caller publishes the next region
 * only when busy is 0, so no worker reads the region's fields while they change.
 *
 * Waiting threads spin briefly before they block on a condition variable: regions follow
 * each other closely inside one invoke, and a short spin saves the wake-up latency without
 * burning a core between invokes.
 */
#include "dst_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

/* Polls of the generation or finished counter before a thread blocks. */
#define SPIN_POLLS 20000

struct dst_pool {
  int32_t worker_count;
  int32_t thread_count; /* started threads: worker_count - 1 on success */
  pthread_t threads[DST_POOL_MAX_WORKERS];

  pthread_mutex_t mutex;
  pthread_cond_t work_ready; /* a new generation or stop */
  pthread_cond_t work_done;  /* finished reached task_count */

  /* The current region, written under the mutex before generation advances. */
  dsr_task task;
  void *task_context;
  int32_t task_count;
  atomic_int next_index;
  atomic_int finished;
  atomic_uint generation;
  atomic_int busy; /* workers that joined the current region and may still claim indices */
  atomic_int stop;
};

/* Claims and runs task indices of the current region until none is left. */
static void drain(dst_pool *pool) {
  for (;;) {
    int index = atomic_fetch_add(&pool->next_index, 1);
    if (index >= pool->task_count)
      return;
    pool->task(pool->task_context, index);
    if (atomic_fetch_add(&pool->finished, 1) + 1 == pool->task_count) {
      pthread_mutex_lock(&pool->mutex);
      pthread_cond_broadcast(&pool->work_done);
      pthread_mutex_unlock(&pool->mutex);
    }
  }
}

static void *worker_main(void *arg) {
  dst_pool *pool = arg;
  unsigned seen = 0;
  for (;;) {
    unsigned current = atomic_load(&pool->generation);
    for (int32_t poll = 0; current == seen && poll < SPIN_POLLS && !atomic_load(&pool->stop);
         poll++)
      current = atomic_load(&pool->generation);
    (void)current;
    pthread_mutex_lock(&pool->mutex);
    while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
      pthread_cond_wait(&pool->work_ready, &pool->mutex);
    if (atomic_load(&pool->stop)) {
      pthread_mutex_unlock(&pool->mutex);
      return NULL;
    }
    seen = atomic_load(&pool->generation);
    atomic_fetch_add(&pool->busy, 1);
    pthread_mutex_unlock(&pool->mutex);
    drain(pool);
    atomic_fetch_sub(&pool->busy, 1);
  }
}

ds_status dst_pool_create(int32_t worker_count, dst_pool **pool_out, ds_error *err) {
  *pool_out = NULL;
  if (worker_count < 1 || worker_count > DST_POOL_MAX_WORKERS)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "a pool of %d workers was requested: give 1 to %d",
                   worker_count, DST_POOL_MAX_WORKERS);
  dst_pool *pool = calloc(1, sizeof *pool);
  if (pool == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate a thread pool");
  pool->worker_count = worker_count;
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->work_ready, NULL);
  pthread_cond_init(&pool->work_done, NULL);
  atomic_init(&pool->next_index, 0);
  atomic_init(&pool->finished, 0);
  atomic_init(&pool->generation, 0);
  atomic_init(&pool->busy, 0);
  atomic_init(&pool->stop, 0);

  for (int32_t i = 0; i < worker_count - 1; i++) {
    if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
      dst_pool_destroy(pool);
      return ds_fail(err, DS_ERR_INTERNAL, "cannot start pool thread %d of %d", i + 1,
                     worker_count - 1);
    }
    pool->thread_count++;
  }
  *pool_out = pool;
  return DS_OK;
}

void dst_pool_destroy(dst_pool *pool) {
  if (pool == NULL)
    return;
  pthread_mutex_lock(&pool->mutex);
  atomic_store(&pool->stop, 1);
  pthread_cond_broadcast(&pool->work_ready);
  pthread_mutex_unlock(&pool->mutex);
  for (int32_t i = 0; i < pool->thread_count; i++)
    pthread_join(pool->threads[i], NULL);
  pthread_cond_destroy(&pool->work_ready);
  pthread_cond_destroy(&pool->work_done);
  pthread_mutex_destroy(&pool->mutex);
  free(pool);
}

void dst_pool_run(void *pool_pointer, dsr_task task, void *task_context, int32_t task_count) {
  dst_pool *pool = pool_pointer;
  if (task_count < 1)
    return;
  if (pool->thread_count == 0 || task_count == 1) {
    for (int32_t i = 0; i < task_count; i++)
      task(task_context, i);
    return;
  }

  pthread_mutex_lock(&pool->mutex);
  /* Workers still leaving the previous region read its fields until they stop claiming. */
  while (atomic_load(&pool->busy) != 0) {
    pthread_mutex_unlock(&pool->mutex);
    sched_yield();
    pthread_mutex_lock(&pool->mutex);
  }
  pool->task = task;
  pool->task_context = task_context;
  pool->task_count = task_count;
  atomic_store(&pool->finished, 0);
  atomic_store(&pool->next_index, 0);
  atomic_fetch_add(&pool->generation, 1);
  pthread_cond_broadcast(&pool->work_ready);
  pthread_mutex_unlock(&pool->mutex);

  drain(pool);

  for (int32_t poll = 0; atomic_load(&pool->finished) < task_count && poll < SPIN_POLLS; poll++)
    continue;
  if (atomic_load(&pool->finished) < task_count) {
    pthread_mutex_lock(&pool->mutex);
    while (atomic_load(&pool->finished) < task_count)
      pthread_cond_wait(&pool->work_done, &pool->mutex);
    pthread_mutex_unlock(&pool->mutex);
  }
}

dsr_parallel dst_pool_parallel(dst_pool *pool) {
  dsr_parallel parallel = {.run = dst_pool_run, .pool = pool,
                           .worker_count = pool != NULL ? pool->worker_count : 1};
  if (pool == NULL)
    parallel.run = NULL;
  return parallel;
}
