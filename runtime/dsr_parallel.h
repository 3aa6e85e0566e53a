/*
 * Intra-op parallelism through a caller-supplied hook. The runtime makes no OS calls, so it
 * starts no threads itself. The caller passes a dsr_parallel whose run function executes
 * independent tasks on the caller's workers, and the heavy kernels split their work into at
 * most worker_count tasks. tools/lib/dst_pool.h is a pthreads implementation.
 *
 * Results do not depend on the worker count. Each task owns a disjoint range of outputs and
 * computes every output element with the same operations in the same order as a serial run,
 * so float outputs are identical and fixed-point outputs bit-identical for any count.
 */
#ifndef DSR_PARALLEL_H
#define DSR_PARALLEL_H

#include <stdint.h>

/* One task of a parallel region: task_index is in [0, task_count). */
typedef void (*dsr_task)(void *task_context, int32_t task_index);

typedef struct dsr_parallel {
  /*
   * Runs task(task_context, i) once for every i in [0, task_count), possibly at the same time
   * on different threads, and returns after all of them have finished. task_count is in
   * [2, worker_count]. The runtime gives each task index its own scratch, so any task may run
   * on any thread. NULL: the runtime runs every task in order on the calling thread.
   */
  void (*run)(void *pool, dsr_task task, void *task_context, int32_t task_count);
  void *pool;           /* passed to run; owned by the caller, outlives the context */
  int32_t worker_count; /* threads run may use at once, 1 or more */
  int64_t min_task_ops; /* operations below which work stays on one task; 0: the default
                           DSR_PARALLEL_MIN_TASK_OPS, 1: split wherever there are units */
} dsr_parallel;

/* Workers of parallel: worker_count when it has a run function, else 1. */
int32_t dsr_parallel_workers(const dsr_parallel *parallel);

/*
 * Runs task over [0, task_count): through parallel->run when parallel has one and
 * task_count > 1, else in order on the calling thread. task_count must not exceed
 * dsr_parallel_workers(parallel).
 */
void dsr_parallel_run(const dsr_parallel *parallel, dsr_task task, void *task_context,
                      int32_t task_count);

/*
 * Number of tasks worth splitting unit_count independent units into, when one unit costs
 * about unit_ops arithmetic operations: at most the worker count and the unit count, and few
 * enough that each task does min_task_ops operations or more. 1 when the work is too small to
 * pay for a hand-over to other threads.
 */
int32_t dsr_parallel_tasks(const dsr_parallel *parallel, int64_t unit_count, int64_t unit_ops);

/* Operations below which a task is not worth handing to another thread. */
#define DSR_PARALLEL_MIN_TASK_OPS 65536

/*
 * The units [*begin, *end) of task task_index when unit_count units are split into
 * task_count near-equal contiguous shares whose boundaries are multiples of granule (the last
 * share ends at unit_count). granule >= 1.
 */
void dsr_parallel_share(int64_t unit_count, int32_t task_count, int32_t task_index,
                        int64_t granule, int64_t *begin, int64_t *end);

/* Work on the units [begin, end) of a dsr_parallel_for, as task task_index. */
typedef void (*dsr_range_task)(void *task_context, int64_t begin, int64_t end,
                               int32_t task_index);

/*
 * Splits unit_count units of about unit_ops operations each into dsr_parallel_tasks shares
 * (boundaries multiples of granule) and runs task on each share. Returns the task count
 * used, so that callers can size private scratch by it.
 */
int32_t dsr_parallel_for(const dsr_parallel *parallel, int64_t unit_count, int64_t unit_ops,
                         int64_t granule, dsr_range_task task, void *task_context);

#endif
