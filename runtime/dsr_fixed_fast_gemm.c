/*
 * Optimized GEMM (activations times a constant weight plus a per-column bias) for an int8
 * input, bit-identical to run_gemm in dsr_fixed.c:
 *
 *   y[i][j] = requant_j(bias[j] + sum over t of (a[i][t] - a_zero) * w(t, j))
 *
 * where w(t, j) is w[t][j], or w[j][t] with trans_b. The input's leading axes are rows: m is
 * the output's element count over n. The product goes through dsr_gemm with A as the
 * unsigned row operand and the weight as signed panels. dsr_fixed_check_node bounds |bias|
 * plus k * 255 * 128 by 2^31 - 1, so the sums and the bias add are exact in int32.
 *
 * Scratch: packed A, packed weights, then per task an int32 block of ROW_BLOCK rows by n.
 * Tasks split the rows, or the panels when there are too few rows for every task.
 */
#include "dsr_fixed_internal.h"
#include "dsr_gemm.h"

/* Rows whose int32 sums one task keeps at a time: a multiple of dsr_gemm's row tile. */
#define ROW_BLOCK 48

typedef struct gemm_geometry {
  int32_t m, n, k;
  int trans_b;
  dsr_gemm gemm;
} gemm_geometry;

static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* Fills g; returns 0 where the reference kernel runs (int16 input, transposed A). */
static int geometry_init(const dsr_model *model, const dsr_node *node, gemm_geometry *g) {
  if (node->input_count < 2 || node->inputs[1] < 0 || node->inputs[1] >= model->tensor_count ||
      node->output < 0 || node->output >= model->tensor_count || node->qwords == NULL)
    return 0;
  const dsr_tensor *at = &model->tensors[node->inputs[0]];
  const dsr_tensor *wt = &model->tensors[node->inputs[1]];
  const dsr_tensor *yt = &model->tensors[node->output];
  if (at->qparams.dtype != DSR_DTYPE_I8 || node->attrs.gemm.trans_a || at->rank < 1 ||
      wt->rank != 2 || yt->rank < 1)
    return 0;
  g->trans_b = node->attrs.gemm.trans_b != 0;
  g->k = at->dims[at->rank - 1];
  g->n = g->trans_b ? wt->dims[0] : wt->dims[1];
  if (g->k < 1 || g->n < 1 || yt->dims[yt->rank - 1] != g->n)
    return 0;
  int64_t m = dsr_tensor_elements(yt) / g->n;
  if (m < 1 || m > INT32_MAX / 16)
    return 0;
  g->m = (int32_t)m;
  dsr_gemm gemm = {g->m, g->n, g->k, at->qparams.zero_point, 0, 1};
  g->gemm = gemm;
  return 1;
}

/* Bytes of packed A, packed weights and one task's block. */
static void scratch_parts(const gemm_geometry *g, size_t parts[3]) {
  parts[0] = round64(dsr_gemm_rows_bytes(&g->gemm));
  parts[1] = round64(dsr_gemm_columns_bytes(&g->gemm));
  parts[2] = round64((size_t)(g->m < ROW_BLOCK ? g->m : ROW_BLOCK) * (size_t)g->n *
                     sizeof(int32_t));
}

size_t dsr_fixed_fast_gemm_scratch_bytes(const dsr_model *model, const dsr_node *node,
                                         int32_t worker_count) {
  gemm_geometry g;
  if (!geometry_init(model, node, &g))
    return 0;
  size_t parts[3];
  scratch_parts(&g, parts);
  /* 64 more bytes let the parts start on a cache line whatever the scratch address. */
  return parts[0] + parts[1] + parts[2] * (size_t)(worker_count < 1 ? 1 : worker_count) + 64;
}

typedef struct gemm_job {
  const gemm_geometry *g;
  const dsr_node *node;
  const dsr_tensor *yt;
  const int8_t *a, *w;
  const int32_t *bias; /* NULL: none */
  uint8_t *packed_rows, *packed_columns, *blocks;
  size_t block_bytes;
  int32_t task_count;
  int split_panels;
  int weight_packed; /* packed_columns was filled ahead by dsr_fixed_fast_gemm_pack */
  void *out;
} gemm_job;

/* Packs task_index's share of the weight panels and of A's rows. */
static void pack_task(void *context, int32_t task_index) {
  const gemm_job *job = context;
  const gemm_geometry *g = job->g;
  int64_t begin, end;
  if (!job->weight_packed) {
    dsr_parallel_share(dsr_gemm_panels(&g->gemm), job->task_count, task_index, 1, &begin, &end);
    dsr_gemm_pack_columns(&g->gemm, job->w, g->trans_b ? 1 : g->n, g->trans_b ? g->k : 1,
                          (int32_t)begin, (int32_t)end, job->packed_columns);
  }
  dsr_parallel_share(g->m, job->task_count, task_index, 1, &begin, &end);
  dsr_gemm_pack_rows(&g->gemm, job->a, g->k, 1, (int32_t)begin, (int32_t)end, job->packed_rows);
}

/* Rows [row_begin, row_end) over the columns of panels [panel_begin, panel_end). */
static void multiply(const gemm_job *job, int32_t row_begin, int32_t row_end,
                     int32_t panel_begin, int32_t panel_end, int32_t *block) {
  const gemm_geometry *g = job->g;
  int32_t j_begin = panel_begin * DSR_GEMM_PANEL_COLUMNS;
  int32_t j_end = panel_end * DSR_GEMM_PANEL_COLUMNS < g->n ? panel_end * DSR_GEMM_PANEL_COLUMNS
                                                            : g->n;
  for (int32_t i0 = row_begin; i0 < row_end; i0 += ROW_BLOCK) {
    int32_t i1 = i0 + ROW_BLOCK < row_end ? i0 + ROW_BLOCK : row_end;
    dsr_gemm_run(&g->gemm, job->packed_rows, job->packed_columns, i0, i1, panel_begin, panel_end,
                 block, g->n);
    for (int32_t i = i0; i < i1; i++) {
      int32_t *sums = block + (int64_t)(i - i0) * g->n;
      if (job->bias != NULL) {
        /* Modulo 2^32, exact because the true sum fits int32. */
        for (int32_t j = j_begin; j < j_end; j++)
          sums[j] = (int32_t)((uint32_t)sums[j] + (uint32_t)job->bias[j]);
      }
      dsr_fixed_requant_store_row(sums + j_begin, j_end - j_begin,
                                  job->node->qwords + 2 + 2 * j_begin, 2,
                                  job->yt->qparams.zero_point, job->yt->qparams.dtype, job->out,
                                  (int64_t)i * g->n + j_begin);
    }
  }
}

static void multiply_task(void *context, int32_t task_index) {
  const gemm_job *job = context;
  const gemm_geometry *g = job->g;
  int32_t *block = (int32_t *)(job->blocks + (size_t)task_index * job->block_bytes);
  int32_t panels = dsr_gemm_panels(&g->gemm);
  int64_t begin, end;
  if (job->split_panels) {
    dsr_parallel_share(panels, job->task_count, task_index, 1, &begin, &end);
    multiply(job, 0, g->m, (int32_t)begin, (int32_t)end, block);
  } else {
    dsr_parallel_share(g->m, job->task_count, task_index, 1, &begin, &end);
    multiply(job, (int32_t)begin, (int32_t)end, 0, panels, block);
  }
}

size_t dsr_fixed_fast_gemm_packed_bytes(const dsr_model *model, const dsr_node *node) {
  gemm_geometry g;
  if (!geometry_init(model, node, &g) || model->tensors[node->inputs[1]].data_q == NULL)
    return 0;
  return dsr_gemm_columns_bytes(&g.gemm);
}

void dsr_fixed_fast_gemm_pack(const dsr_model *model, const dsr_node *node, uint8_t *packed) {
  gemm_geometry g;
  if (!geometry_init(model, node, &g) || model->tensors[node->inputs[1]].data_q == NULL)
    return;
  dsr_gemm_pack_columns(&g.gemm, model->tensors[node->inputs[1]].data_q, g.trans_b ? 1 : g.n,
                        g.trans_b ? g.k : 1, 0, dsr_gemm_panels(&g.gemm), packed);
}

int dsr_fixed_fast_gemm_parallel(const dsr_model *model, const dsr_node *node,
                                 const void *const *in, void *out, uint8_t *scratch,
                                 const dsr_parallel *parallel, const uint8_t *packed_weight) {
  gemm_geometry g;
  if (!geometry_init(model, node, &g))
    return 0;
  size_t parts[3];
  scratch_parts(&g, parts);
  uint8_t *base = scratch + (64 - (uintptr_t)scratch % 64) % 64;
  gemm_job job = {.g = &g, .node = node, .yt = &model->tensors[node->output], .a = in[0],
                  .w = in[1], .bias = node->input_count > 2 && node->inputs[2] >= 0 ? in[2] : NULL,
                  .packed_rows = base, .packed_columns = base + parts[0],
                  .blocks = base + parts[0] + parts[1], .block_bytes = parts[2], .out = out};
  if (packed_weight != NULL) {
    /* Read only: the packed region of the arena. */
    job.packed_columns = (uint8_t *)(uintptr_t)packed_weight;
    job.weight_packed = 1;
  }
  int32_t panels = dsr_gemm_panels(&g.gemm);
  job.split_panels = g.m < ROW_BLOCK * dsr_parallel_workers(parallel);
  if (job.split_panels)
    job.task_count = dsr_parallel_tasks(parallel, panels,
                                        (int64_t)g.m * g.k * DSR_GEMM_PANEL_COLUMNS);
  else
    job.task_count = dsr_parallel_tasks(parallel, g.m, (int64_t)g.n * g.k);
  dsr_parallel_run(parallel, pack_task, &job, job.task_count);
  dsr_parallel_run(parallel, multiply_task, &job, job.task_count);
  return 1;
}

int dsr_fixed_fast_gemm(const dsr_model *model, const dsr_node *node, const void *const *in,
                        void *out, uint8_t *scratch) {
  return dsr_fixed_fast_gemm_parallel(model, node, in, out, scratch, NULL, NULL);
}
