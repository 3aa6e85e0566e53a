/*
 * Speed of the fixed-point deformable attention kernel on the layers of a real model, and a
 * check that its fast order matches the reference order byte for byte on real activations:
 *
 *   bench_deform ARTIFACT.dsa [--threads N] [--iterations N] [--no-check]
 *
 * reads an artifact written by `bench_speed prepare` and runs the model once in fixed point
 * on bench_speed's pseudo-random image, keeping a copy of the input of every DEFORM_ATTN
 * node. For each such node it then times the fast kernel, split over N workers and with its
 * weights packed ahead as context init packs them. It also runs the reference kernel once,
 * unless --no-check (for profiles). It prints one line per layer (milliseconds per call, and
 * whether the output bytes match the reference) and the total, then a JSON line. Exit status
 * 0 when every layer matches, 1 on a mismatch or error, 2 on bad arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "formats/dsf_artifact.h"
#include "runtime/dsr_fixed.h"
#include "runtime/dsr_fixed_internal.h"
#include "runtime/dsr_runtime.h"
#include "tools/lib/dst_args.h"
#include "tools/lib/dst_pool.h"
#include "tools/lib/dst_progress.h"

static int fail(const ds_error *err) {
  fprintf(stderr, "bench_deform: error: %s\n", err->message);
  return 1;
}

static int usage(void) {
  fprintf(stderr, "usage: bench_deform ARTIFACT.dsa [--threads N] [--iterations N] [--no-check]\n");
  return 2;
}

/* The pseudo-random image of bench_speed: values in [-1, 1). */
static void fill_random(float *values, int64_t count, uint32_t seed) {
  uint32_t state = seed;
  for (int64_t i = 0; i < count; i++) {
    state = state * 1664525u + 1013904223u;
    values[i] = (float)(state >> 8) / 8388608.0f - 1.0f;
  }
}

static size_t tensor_bytes(const dsr_tensor *t) {
  int32_t dtype = t->qparams.dtype;
  size_t element = dtype == DSR_DTYPE_I8 ? 1 : (dtype == DSR_DTYPE_I16 ? 2 : 4);
  return (size_t)dsr_tensor_elements(t) * element;
}

/* Times node i of model on the input copy x and compares it with the reference. Returns 1
 * when the bytes match, 0 when they differ, -1 when memory runs out. */
static int bench_node(const dsr_model *model, int32_t i, const void *x, int64_t iterations,
                      const dsr_parallel *parallel, int32_t workers, int check,
                      double *ms_per_call) {
  const dsr_node *node = &model->nodes[i];
  size_t out_bytes = tensor_bytes(&model->tensors[node->output]);
  size_t scratch_bytes = dsr_fixed_scratch_bytes_for_workers(model, i, workers);
  size_t reference_scratch = dsr_fixed_scratch_bytes(model, i);
  scratch_bytes = scratch_bytes > reference_scratch ? scratch_bytes : reference_scratch;
  uint8_t *scratch = aligned_alloc(64, (scratch_bytes + 63) / 64 * 64);
  uint8_t *fast = malloc(out_bytes), *reference = malloc(out_bytes);
  size_t packed_bytes = dsr_fixed_packed_bytes(model, i);
  uint8_t *packed = packed_bytes > 0 ? aligned_alloc(64, (packed_bytes + 63) / 64 * 64) : NULL;
  if (scratch == NULL || fast == NULL || reference == NULL ||
      (packed_bytes > 0 && packed == NULL)) {
    free(packed);
    free(scratch);
    free(fast);
    free(reference);
    return -1;
  }
  const void *inputs[DSR_MAX_NODE_INPUTS] = {x, NULL, NULL, NULL};
  dsr_slice slice = node->deform->slice;
  if (packed != NULL)
    dsr_fixed_pack_constants(model, i, packed);
  dsr_fixed_execute_packed(model, i, inputs, fast, scratch, slice, parallel, packed); /* warm */
  double start_s = dst_now_s();
  for (int64_t it = 0; it < iterations; it++)
    dsr_fixed_execute_packed(model, i, inputs, fast, scratch, slice, parallel, packed);
  *ms_per_call = 1e3 * (dst_now_s() - start_s) / (double)iterations;
  int same = 1;
  if (check) {
    memset(reference, 0, out_bytes);
    dsr_fixed_execute_reference(model, i, inputs, reference, scratch, slice);
    same = memcmp(fast, reference, out_bytes) == 0;
  }
  free(packed);
  free(scratch);
  free(fast);
  free(reference);
  return same;
}

int main(int argc, char **argv) {
  const char *threads_text = "1", *iterations_text = "10", *no_check = NULL;
  const dst_option options[] = {
      {"threads", "N", "intra-op worker threads (default 1)", &threads_text},
      {"iterations", "N", "timed calls per layer (default 10)", &iterations_text},
      {"no-check", NULL, "skip the reference kernel", &no_check},
  };
  const char *positional[1];
  int positional_count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);
  if (dst_args_parse(argc, argv, 1, options, 3, positional, 1, &positional_count, &help,
                     &err) != DS_OK)
    return fail(&err) + 1;
  if (help || positional_count != 1)
    return usage();
  int64_t threads, iterations;
  if (dst_args_int("threads", threads_text, 1, DST_POOL_MAX_WORKERS, &threads, &err) != DS_OK ||
      dst_args_int("iterations", iterations_text, 1, 1000000, &iterations, &err) != DS_OK)
    return fail(&err) + 1;

  dsr_model model = {0};
  if (dsf_read_file(positional[0], &model, NULL, NULL, &err) != DS_OK)
    return fail(&err);
  dst_pool *pool = NULL;
  ds_status status = dst_pool_create((int32_t)threads, &pool, &err);
  dsr_parallel parallel = dst_pool_parallel(pool);
  const dsr_parallel *hook = threads > 1 ? &parallel : NULL;
  dsr_plan_info plan = {0};
  void *arena = NULL;
  dsr_context ctx;
  if (status == DS_OK)
    status = dsr_plan_with_options(&model, DSR_MODE_FIXED, NULL, &plan, &err);
  if (status == DS_OK) {
    size_t bytes = (plan.arena_bytes + 63) & ~(size_t)63;
    arena = aligned_alloc(64, bytes);
    status = arena != NULL ? dsr_context_init_with_options(&ctx, &model, DSR_MODE_FIXED, NULL,
                                                           arena, bytes, &err)
                           : ds_fail(&err, DS_ERR_OUT_OF_MEMORY,
                                     "cannot allocate a %zu-byte arena", bytes);
  }
  if (status != DS_OK) {
    free(arena);
    dst_pool_destroy(pool);
    ds_model_free(&model);
    return fail(&err);
  }

  /* Real activations: invoke once, then run the nodes again one by one, copying the input of
   * each deformable layer before later nodes reuse its storage. */
  fill_random(dsr_input_f32(&ctx), dsr_tensor_elements(&model.tensors[model.input]), 12345u);
  dsr_invoke(&ctx);
  void **copies = calloc((size_t)model.node_count, sizeof(void *));
  for (int32_t i = 0; i < model.node_count && copies != NULL; i++) {
    const dsr_node *node = &model.nodes[i];
    if (node->op == DSR_OP_DEFORM_ATTN) {
      const dsr_tensor *xt = &model.tensors[node->inputs[0]];
      copies[i] = malloc(tensor_bytes(xt));
      if (copies[i] != NULL)
        memcpy(copies[i], dsr_tensor_data(&ctx, node->inputs[0]), tensor_bytes(xt));
    }
    dsr_fixed_run_node(&ctx, i);
  }

  int exit_code = copies != NULL ? 0 : 1;
  double total_ms = 0.0;
  int32_t layers = 0;
  for (int32_t i = 0; i < model.node_count && copies != NULL; i++) {
    const dsr_node *node = &model.nodes[i];
    if (node->op != DSR_OP_DEFORM_ATTN)
      continue;
    double ms = 0.0;
    int same = copies[i] != NULL ? bench_node(&model, i, copies[i], iterations, hook,
                                              (int32_t)threads, no_check == NULL, &ms)
                                 : -1;
    if (same < 0) {
      fprintf(stderr, "bench_deform: error: out of memory for node '%s'\n", node->name);
      exit_code = 1;
      continue;
    }
    const dsr_deform_attn *d = node->deform;
    /* Stage widths in bits, in the order x, q, sampled, k, v, attention, context. */
    const int32_t stages[] = {DSR_DEFORM_STAGE_Q, DSR_DEFORM_STAGE_SAMPLED, DSR_DEFORM_STAGE_K,
                              DSR_DEFORM_STAGE_V, DSR_DEFORM_STAGE_ATTN, DSR_DEFORM_STAGE_CONTEXT};
    char widths[32];
    int used = snprintf(widths, sizeof widths, "%d",
                        model.tensors[node->inputs[0]].qparams.dtype == DSR_DTYPE_I8 ? 8 : 16);
    for (size_t k = 0; k < sizeof stages / sizeof stages[0] && used < 28; k++)
      used += snprintf(widths + used, sizeof widths - (size_t)used, "/%d",
                       d->stage_qparams[stages[k]].dtype == DSR_DTYPE_I8 ? 8 : 16);
    int32_t samples = dsr_fixed_offset_grid(d, d->height) * dsr_fixed_offset_grid(d, d->width);
    printf("  %8.2f ms  C %4d  %3dx%-3d  heads %2d  groups %2d  samples %4d  offset conv "
           "%dx%d/%d  bits %s  %s  %s\n",
           ms, d->channels, d->height, d->width, d->heads, d->groups, samples, d->offset_kernel,
           d->offset_kernel, d->offset_stride, widths, no_check != NULL ? "unchecked" : (same ? "same" : "DIFFERS"), node->name);
    total_ms += ms;
    layers++;
    if (!same)
      exit_code = 1;
  }
  printf("{\"model\": \"%s\", \"threads\": %lld, \"iterations\": %lld, \"deform_layers\": %d, "
         "\"deform_ms\": %.3f, \"match_reference\": %s}\n",
         positional[0], (long long)threads, (long long)iterations, layers, total_ms,
         exit_code == 0 ? "true" : "false");

  for (int32_t i = 0; i < model.node_count && copies != NULL; i++)
    free(copies[i]);
  free(copies);
  free(arena);
  dst_pool_destroy(pool);
  ds_model_free(&model);
  return exit_code;
}
