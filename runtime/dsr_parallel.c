/* Task splitting for the intra-op parallelism hook (dsr_parallel.h). */
#include <stddef.h>

#include "dsr_parallel.h"

int32_t dsr_parallel_workers(const dsr_parallel *parallel) {
  if (parallel == NULL || parallel->run == NULL || parallel->worker_count < 1)
    return 1;
  return parallel->worker_count;
}

void dsr_parallel_run(const dsr_parallel *parallel, dsr_task task, void *task_context,
                      int32_t task_count) {
  if (task_count > 1 && dsr_parallel_workers(parallel) > 1) {
    parallel->run(parallel->pool, task, task_context, task_count);
    return;
  }
  for (int32_t i = 0; i < task_count; i++)
    task(task_context, i);
}

int32_t dsr_parallel_tasks(const dsr_parallel *parallel, int64_t unit_count, int64_t unit_ops) {
  int64_t tasks = dsr_parallel_workers(parallel);
  if (tasks > unit_count)
    tasks = unit_count;
  int64_t total_ops = unit_count * (unit_ops > 0 ? unit_ops : 1);
  int64_t min_ops = parallel != NULL && parallel->min_task_ops > 0 ? parallel->min_task_ops
                                                                    : DSR_PARALLEL_MIN_TASK_OPS;
  int64_t affordable = total_ops / min_ops;
  if (tasks > affordable)
    tasks = affordable;
  return tasks < 1 ? 1 : (int32_t)tasks;
}

void dsr_parallel_share(int64_t unit_count, int32_t task_count, int32_t task_index,
                        int64_t granule, int64_t *begin, int64_t *end) {
  int64_t blocks = (unit_count + granule - 1) / granule;
  int64_t first = blocks * task_index / task_count;
  int64_t last = blocks * (task_index + 1) / task_count;
  *begin = first * granule;
  *end = last * granule < unit_count ? last * granule : unit_count;
  if (*begin > *end)
    *begin = *end;
}

typedef struct range_job {
  dsr_range_task task;
  void *task_context;
  int64_t unit_count, granule;
  int32_t task_count;
} range_job;

static void range_task(void *context, int32_t task_index) {
  const range_job *job = context;
  int64_t begin, end;
  dsr_parallel_share(job->unit_count, job->task_count, task_index, job->granule, &begin, &end);
  if (begin < end)
    job->task(job->task_context, begin, end, task_index);
}

int32_t dsr_parallel_for(const dsr_parallel *parallel, int64_t unit_count, int64_t unit_ops,
                         int64_t granule, dsr_range_task task, void *task_context) {
  if (unit_count < 1)
    return 0;
  range_job job = {.task = task, .task_context = task_context, .unit_count = unit_count,
                   .granule = granule < 1 ? 1 : granule};
  int64_t blocks = (unit_count + job.granule - 1) / job.granule;
  job.task_count = dsr_parallel_tasks(parallel, blocks, unit_ops * job.granule);
  dsr_parallel_run(parallel, range_task, &job, job.task_count);
  return job.task_count;
}
