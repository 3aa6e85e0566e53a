/* Matrix products: numpy-style batched MatMul and ONNX Gemm. */
#include <string.h>

#include "dsr_kernels.h"

/* out (m x n) = a (m x k) times b (k x n), all row-major and contiguous: the pointwise
 * kernel with a as its weights and the rows of b as its input channels. */
static void matrix_product(const float *a, const float *b, float *out, int32_t m, int32_t k,
                           int32_t n) {
  dsr_f32_pointwise(a, NULL, b, (size_t)n, out, (size_t)n, k, m, n);
}

typedef struct matmul_job {
  const dsr_matmul_geometry *geometry;
  const float *a, *b;
  float *out;
} matmul_job;

/* Products of the batch matrices [begin, end), each operand's matrix found through the
 * broadcast strides of the batch axes. */
static void matmul_batches(void *context, int64_t begin, int64_t end, int32_t task_index) {
  const matmul_job *job = context;
  (void)task_index;
  const dsr_matmul_geometry *geometry = job->geometry;
  const dsr_broadcast *batch = &geometry->batch;
  size_t a_matrix = (size_t)geometry->m * geometry->k;
  size_t b_matrix = (size_t)geometry->k * geometry->n;
  size_t out_matrix = (size_t)geometry->m * geometry->n;
  for (int64_t t = begin; t < end; t++) {
    int64_t rest = t, a_index = 0, b_index = 0;
    for (int32_t axis = batch->rank - 1; axis >= 0; axis--) {
      int64_t coordinate = rest % batch->dims[axis];
      rest /= batch->dims[axis];
      a_index += coordinate * batch->a_strides[axis];
      b_index += coordinate * batch->b_strides[axis];
    }
    matrix_product(job->a + (size_t)a_index * a_matrix, job->b + (size_t)b_index * b_matrix,
                   job->out + (size_t)t * out_matrix, geometry->m, geometry->k, geometry->n);
  }
}

/*
 * The geometry of node's product and its batch count. When B is shared by every batch and A
 * is stored batch after batch, the batches become the rows of one taller product (batch count
 * 1), which reads B once instead of once per batch.
 */
static int64_t matmul_plan(const dsr_model *model, const dsr_node *node,
                           dsr_matmul_geometry *geometry) {
  dsr_matmul_geometry_init(&model->tensors[node->inputs[0]], &model->tensors[node->inputs[1]],
                           geometry);
  int64_t batch_count = 1;
  for (int32_t axis = 0; axis < geometry->batch.rank; axis++)
    batch_count *= geometry->batch.dims[axis];
  int fold = batch_count > 1;
  int64_t contiguous = 1;
  for (int32_t axis = geometry->batch.rank - 1; axis >= 0 && fold; axis--) {
    fold = geometry->batch.b_strides[axis] == 0 &&
           (geometry->batch.dims[axis] == 1 || geometry->batch.a_strides[axis] == contiguous);
    contiguous *= geometry->batch.dims[axis];
  }
  if (fold && batch_count * (int64_t)geometry->m <= INT32_MAX) {
    geometry->m = (int32_t)(batch_count * geometry->m);
    batch_count = 1;
  }
  return batch_count;
}

void dsr_f32_matmul(const dsr_f32_args *args) {
  dsr_matmul_geometry geometry;
  int64_t batch_count = matmul_plan(args->model, args->node, &geometry);

  /* One matrix: split its product. Several: split the batch. */
  if (batch_count == 1) {
    dsr_f32_pointwise_parallel(args->parallel, args->in[0], NULL, args->in[1],
                               (size_t)geometry.n, args->out, (size_t)geometry.n, geometry.k,
                               geometry.m, geometry.n);
    return;
  }
  matmul_job job = {&geometry, args->in[0], args->in[1], args->out};
  dsr_parallel_for(args->parallel, batch_count,
                   2 * (int64_t)geometry.m * geometry.k * geometry.n, 1, matmul_batches, &job);
}

/* Adds beta * c to out (rows x n). A rank-2 GEMM broadcasts c to (rows, n) as ONNX does;
 * beyond rank 2 c has one value per column (checked at plan time). */
static void gemm_add_c(const dsr_model *model, const dsr_node *node, const float *c_data,
                       float *out, int32_t rows, int32_t n) {
  const dsr_tensor *c = &model->tensors[node->inputs[2]];
  const dsr_tensor *a = &model->tensors[node->inputs[0]];
  float beta = node->attrs.gemm.beta;
  int64_t row_stride = 0, col_stride = 1;
  if (a->rank == 2) {
    int32_t yd[2] = {rows, n};
    dsr_broadcast broadcast;
    dsr_broadcast_init(c->dims, c->rank, yd, 2, &broadcast);
    row_stride = broadcast.a_strides[0];
    col_stride = broadcast.a_strides[1];
  }
  for (int32_t i = 0; i < rows; i++) {
    float *out_row = out + (size_t)i * n;
    const float *c_row = c_data + i * row_stride;
    for (int32_t j = 0; j < n; j++)
      out_row[j] += beta * c_row[j * col_stride];
  }
}

/*
 * ONNX Gemm on a (M, K), and the fused MatMul plus bias Add on a (..., K) whose leading axes
 * are the M rows. Without transposes the product is the one dsr_f32_matmul computes for the
 * same operands, and c is added after it, so a fused MatMul and Add give the unfused sums bit
 * for bit.
 */
void dsr_f32_gemm(const dsr_f32_args *args) {
  const dsr_model *model = args->model;
  const dsr_node *node = args->node;
  const dsr_gemm_attrs *g = &node->attrs.gemm;
  const dsr_tensor *a = &model->tensors[node->inputs[0]];
  const dsr_tensor *y = &model->tensors[node->output];
  const float *a_data = args->in[0];
  const float *b_data = args->in[1];
  const float *c_data = args->in[2];
  float *out = args->out;

  int32_t n = y->dims[y->rank - 1];
  if (n == 0)
    return;
  int32_t m = (int32_t)(dsr_tensor_elements(y) / n);
  int32_t k = g->trans_a ? a->dims[0] : a->dims[a->rank - 1];

  if (!g->trans_a && !g->trans_b) {
    dsr_f32_pointwise_parallel(args->parallel, a_data, NULL, b_data, (size_t)n, out, (size_t)n,
                               k, m, n);
    for (int64_t i = 0; g->alpha != 1.0f && i < (int64_t)m * n; i++)
      out[i] *= g->alpha;
  } else {
    /* Element (i, p) of op(a) and (p, j) of op(b), as strides over the stored layout. */
    size_t a_row_stride = g->trans_a ? 1 : (size_t)k, a_col_stride = g->trans_a ? (size_t)m : 1;
    size_t b_row_stride = g->trans_b ? 1 : (size_t)n, b_col_stride = g->trans_b ? (size_t)k : 1;
    for (int32_t i = 0; i < m; i++) {
      float *out_row = out + (size_t)i * n;
      for (int32_t j = 0; j < n; j++)
        out_row[j] = 0.0f;
      for (int32_t p = 0; p < k; p++) {
        float a_value = a_data[i * a_row_stride + p * a_col_stride];
        const float *b_col = b_data + p * b_row_stride;
        for (int32_t j = 0; j < n; j++)
          out_row[j] += a_value * b_col[j * b_col_stride];
      }
      for (int32_t j = 0; j < n; j++)
        out_row[j] *= g->alpha;
    }
  }

  if (c_data == NULL || g->beta == 0.0f)
    return;
  gemm_add_c(model, node, c_data, out, m, n);
}
