/*
 * A persistent pthreads pool that implements the runtime's intra-op parallelism hook
 * (runtime/dsr_parallel.h): worker_count - 1 threads wait for work, and the calling thread
 * takes part in every parallel region.
 *
 * Use:
 *   dst_pool *pool;
 *   dst_pool_create(2, &pool, &err);
 *   dsr_parallel parallel = dst_pool_parallel(pool);
 *   dsr_options options = {.flags = 0, .parallel = &parallel};
 *   dsr_plan_with_options(model, mode, &options, &plan, &err);  ... then init and invoke
 *   dst_pool_destroy(pool);                                     // after the last invoke
 *
 * Thread safety: one region at a time; the pool serves the contexts of one thread.
 */
#ifndef DST_POOL_H
#define DST_POOL_H

#include <stdint.h>

#include "common/ds_status.h"
#include "runtime/dsr_parallel.h"

typedef struct dst_pool dst_pool;

/* Most threads a pool runs, the calling thread included. */
#define DST_POOL_MAX_WORKERS 64

/*
 * Starts a pool of worker_count workers (1..DST_POOL_MAX_WORKERS), the calling thread
 * included, so worker_count - 1 threads. The caller frees it with dst_pool_destroy. Errors:
 * DS_ERR_INVALID_ARGUMENT for a count out of range, DS_ERR_OUT_OF_MEMORY, DS_ERR_INTERNAL
 * when a thread cannot start.
 */
ds_status dst_pool_create(int32_t worker_count, dst_pool **pool, ds_error *err);

/* Stops and joins the threads and frees the pool. NULL does nothing. */
void dst_pool_destroy(dst_pool *pool);

/* The runtime hook that runs tasks on pool. */
dsr_parallel dst_pool_parallel(dst_pool *pool);

/* Runs task(task_context, i) for i in [0, task_count) on the pool and the calling thread,
 * returning when all have finished: the run function of dst_pool_parallel. */
void dst_pool_run(void *pool, dsr_task task, void *task_context, int32_t task_count);

#endif
