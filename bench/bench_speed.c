/*
 * Speed of the C runtime at batch 1, for the comparison with ONNX Runtime and PyTorch that
 * bench/speed.py runs. Two steps, so that the timed process holds only what running needs:
 *
 *   bench_speed prepare MODEL.onnx OUT.dsa [CALIBRATION_IMAGES] [--input-shape N,C,H,W]
 *       imports MODEL.onnx, at the given shape for an export with dynamic axes. It then
 *       calibrates on random images in [-1, 1) (default 2), quantizes and writes an artifact
 *       with the float and fixed-point weights;
 *   bench_speed run OUT.dsa --mode float|fixed [--threads N] [--iterations N] [--warmup N]
 *       reads the artifact, plans one context with a pool of N workers (intra-op threads),
 *       runs the warm-up and timed invokes on one random image, and prints one JSON line:
 *       images per second, the arena bytes, the constant bytes the mode reads and the peak
 *       resident memory of the process (VmHWM from /proc/self/status). --profile also
 *       prints the time of each op type to stderr.
 *
 * Random calibration gives representative times, not accuracy: the kernels do the same work
 * whatever the values. Exit status 0 on success, 2 on bad arguments, 1 on any other error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "formats/dsf_artifact.h"
#include "quant/dsq_calibration.h"
#include "quant/dsq_quantize.h"
#include "runtime/dsr_fixed.h"
#include "runtime/dsr_kernels.h"
#include "runtime/dsr_runtime.h"
#include "tools/lib/dst_args.h"
#include "tools/lib/dst_pool.h"
#include "tools/lib/dst_progress.h"

static int fail(const ds_error *err) {
  fprintf(stderr, "bench_speed: error: %s\n", err->message);
  return 1;
}

static int usage(void) {
  fprintf(stderr,
          "usage: bench_speed prepare MODEL.onnx OUT.dsa [CALIBRATION_IMAGES] "
          "[--input-shape N,C,H,W]\n"
          "       bench_speed run ARTIFACT.dsa --mode float|fixed [--threads N] "
          "[--iterations N] [--warmup N] [--profile]\n");
  return 2;
}

/* Fills count values with a fixed pseudo-random sequence in [-1, 1). */
static void fill_random(float *values, int64_t count, uint32_t seed) {
  uint32_t state = seed;
  for (int64_t i = 0; i < count; i++) {
    state = state * 1664525u + 1013904223u;
    values[i] = (float)(state >> 8) / 8388608.0f - 1.0f;
  }
}

/* Peak resident set size of this process in bytes, 0 where /proc is missing. */
static long long peak_rss_bytes(void) {
  FILE *status = fopen("/proc/self/status", "r");
  if (status == NULL)
    return 0;
  char line[256];
  long long kib = 0;
  while (fgets(line, sizeof line, status) != NULL) {
    if (sscanf(line, "VmHWM: %lld kB", &kib) == 1)
      break;
  }
  fclose(status);
  return kib * 1024;
}

static int prepare(int argc, char **argv) {
  ds_error err;
  ds_error_clear(&err);
  dsc_options options;
  memset(&options, 0, sizeof options);
  /* An optional --input-shape N,C,H,W fixes the shape of a model exported with dynamic axes. */
  if (argc >= 6 && strcmp(argv[argc - 2], "--input-shape") == 0) {
    if (dst_args_shape("--input-shape", argv[argc - 1], options.input_shape, &options.input_rank,
                       &err) != DS_OK)
      return fail(&err) + 1;
    argc -= 2;
  }
  if (argc < 4 || argc > 5)
    return usage();
  int64_t images = 2;
  if (argc == 5 &&
      dst_args_int("CALIBRATION_IMAGES", argv[4], 1, 64, &images, &err) != DS_OK)
    return fail(&err) + 1;

  double start_s = dst_now_s();
  dsr_model model = {0};
  if (dsc_import_file(argv[2], &options, &model, NULL, &err) != DS_OK)
    return fail(&err);
  int64_t count = dsr_tensor_elements(&model.tensors[model.input]);
  float *inputs = malloc(sizeof(float) * (size_t)(count * images));
  if (inputs == NULL) {
    ds_model_free(&model);
    ds_fail(&err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %lld calibration images",
            (long long)images);
    return fail(&err);
  }
  fill_random(inputs, count * images, 7u);

  dsq_calibration calibration;
  ds_status status = dsq_calibration_init(&calibration, &model, DSQ_CALIBRATION_MINMAX, &err);
  if (status == DS_OK) {
    status = dsq_calibration_run(&calibration, &model, inputs, (int32_t)images, &err);
    if (status == DS_OK)
      status = dsq_quantize(&model, &calibration, NULL, &err);
    dsq_calibration_free(&calibration);
  }
  free(inputs);
  if (status == DS_OK)
    status = dsf_write_file(argv[3], &model, NULL, NULL, NULL, &err);
  ds_model_free(&model);
  if (status != DS_OK)
    return fail(&err);
  fprintf(stderr, "bench_speed: wrote %s in %.1f s\n", argv[3], dst_now_s() - start_s);
  return 0;
}

/* Bytes of the constants mode reads: float32 data in float mode, data_q in fixed mode. */
static long long constant_bytes(const dsr_model *model, dsr_mode mode) {
  long long total = 0;
  for (int32_t i = 0; i < model->tensor_count; i++) {
    const dsr_tensor *t = &model->tensors[i];
    if (t->kind != DSR_TENSOR_CONSTANT)
      continue;
    int64_t elements = dsr_tensor_elements(t);
    if (mode == DSR_MODE_FLOAT) {
      total += elements * (long long)sizeof(float);
    } else if (t->data_q != NULL) {
      int32_t dtype = t->qparams.dtype;
      total += elements * (dtype == DSR_DTYPE_I8 ? 1 : (dtype == DSR_DTYPE_I16 ? 2 : 4));
    }
  }
  return total;
}

/* Seconds per op type, for --profile. */
typedef struct op_profile {
  double seconds[DSR_OP_COUNT];
  int64_t calls[DSR_OP_COUNT];
  const dsr_model *model;
  double last_s;
  int32_t next_node;
  double *node_seconds; /* per node */
} op_profile;

/* Float mode: the observer receives every node's output right after the node ran. */
static void profile_tensor(void *user, int32_t tensor_index, const float *values, int64_t count) {
  (void)tensor_index;
  (void)values;
  (void)count;
  op_profile *profile = user;
  double now_s = dst_now_s();
  int32_t op = profile->model->nodes[profile->next_node].op;
  profile->seconds[op] += now_s - profile->last_s;
  profile->node_seconds[profile->next_node] += now_s - profile->last_s;
  profile->calls[op]++;
  profile->next_node = (profile->next_node + 1) % profile->model->node_count;
  profile->last_s = dst_now_s();
}

/* Times each op type over iterations runs and prints the shares to stderr, then the nodes
 * that take the most time. */
static void print_profile(dsr_context *ctx, int64_t iterations) {
  op_profile profile;
  memset(&profile, 0, sizeof profile);
  double *node_seconds = calloc((size_t)ctx->model->node_count, sizeof(double));
  if (node_seconds == NULL)
    return;
  profile.node_seconds = node_seconds;
  profile.model = ctx->model;
  dsr_observer observer = {.on_tensor = profile_tensor, .user = &profile};
  for (int64_t it = 0; it < iterations; it++) {
    if (ctx->mode == DSR_MODE_FLOAT) {
      dsr_context_set_observer(ctx, &observer);
      profile.last_s = dst_now_s();
      dsr_invoke(ctx);
      dsr_context_set_observer(ctx, NULL);
      continue;
    }
    dsr_invoke(ctx);
    for (int32_t i = 0; i < ctx->model->node_count; i++) {
      double start_s = dst_now_s();
      dsr_fixed_run_node(ctx, i);
      node_seconds[i] += dst_now_s() - start_s;
      profile.seconds[ctx->model->nodes[i].op] += dst_now_s() - start_s;
      profile.calls[ctx->model->nodes[i].op]++;
    }
  }

  double total = 0.0;
  for (int32_t op = 0; op < DSR_OP_COUNT; op++)
    total += profile.seconds[op];
  for (int32_t op = 0; op < DSR_OP_COUNT; op++) {
    if (profile.calls[op] > 0)
      fprintf(stderr, "  %-16s %8.2f ms per image %5.1f%%  (%lld nodes)\n", dsr_op_label(op),
              1e3 * profile.seconds[op] / (double)iterations, 100.0 * profile.seconds[op] / total,
              (long long)(profile.calls[op] / iterations));
  }

  for (int32_t rank = 0; rank < 40; rank++) {
    int32_t best = 0;
    for (int32_t i = 1; i < ctx->model->node_count; i++)
      best = node_seconds[i] > node_seconds[best] ? i : best;
    const dsr_node *node = &ctx->model->nodes[best];
    char in_shape[96], out_shape[96];
    fprintf(stderr, "  %7.2f ms  %-12s %s -> %s  %s\n", 1e3 * node_seconds[best] / (double)iterations,
            dsr_op_label(node->op), dsr_shape_text(&ctx->model->tensors[node->inputs[0]], in_shape, 96),
            dsr_shape_text(&ctx->model->tensors[node->output], out_shape, 96), node->name);
    node_seconds[best] = -1.0;
  }
  free(node_seconds);
}

static int run(int argc, char **argv) {
  const char *mode_text = NULL, *threads_text = "1", *iterations_text = "20", *warmup_text = "3";
  const char *profile_text = NULL;
  const dst_option options[] = {
      {"mode", "MODE", "float or fixed", &mode_text},
      {"threads", "N", "intra-op worker threads (default 1)", &threads_text},
      {"iterations", "N", "timed invokes (default 20)", &iterations_text},
      {"warmup", "N", "untimed invokes first (default 3)", &warmup_text},
      {"profile", NULL, "also print the time of each op type to stderr", &profile_text},
  };
  const char *positional[1];
  int positional_count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);
  if (dst_args_parse(argc, argv, 1, options, 5, positional, 1, &positional_count, &help,
                     &err) != DS_OK)
    return fail(&err) + 1;
  if (help || positional_count != 1 || mode_text == NULL)
    return usage();
  int64_t threads, iterations, warmup;
  if (dst_args_int("threads", threads_text, 1, DST_POOL_MAX_WORKERS, &threads, &err) != DS_OK ||
      dst_args_int("iterations", iterations_text, 1, 1000000, &iterations, &err) != DS_OK ||
      dst_args_int("warmup", warmup_text, 0, 1000000, &warmup, &err) != DS_OK)
    return fail(&err) + 1;
  dsr_mode mode;
  if (strcmp(mode_text, "float") == 0) {
    mode = DSR_MODE_FLOAT;
  } else if (strcmp(mode_text, "fixed") == 0) {
    mode = DSR_MODE_FIXED;
  } else {
    ds_fail(&err, DS_ERR_INVALID_ARGUMENT, "--mode '%s' is not a mode; use float or fixed",
            mode_text);
    return fail(&err) + 1;
  }

  dsr_model model = {0};
  if (dsf_read_file(positional[0], &model, NULL, NULL, &err) != DS_OK)
    return fail(&err);
  dst_pool *pool = NULL;
  ds_status status = dst_pool_create((int32_t)threads, &pool, &err);
  dsr_parallel parallel = dst_pool_parallel(pool);
  dsr_options run_options = {.flags = 0, .parallel = threads > 1 ? &parallel : NULL};
  dsr_plan_info plan = {0};
  void *arena = NULL;
  dsr_context ctx;
  if (status == DS_OK)
    status = dsr_plan_with_options(&model, mode, &run_options, &plan, &err);
  if (status == DS_OK) {
    size_t bytes = (plan.arena_bytes + 63) & ~(size_t)63;
    arena = aligned_alloc(64, bytes);
    status = arena != NULL ? dsr_context_init_with_options(&ctx, &model, mode, &run_options,
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

  const dsr_tensor *input = &model.tensors[model.input];
  fill_random(dsr_input_f32(&ctx), dsr_tensor_elements(input), 12345u);
  for (int64_t i = 0; i < warmup; i++)
    dsr_invoke(&ctx);
  double start_s = dst_now_s();
  for (int64_t i = 0; i < iterations; i++)
    dsr_invoke(&ctx);
  double seconds = dst_now_s() - start_s;

  if (profile_text != NULL)
    print_profile(&ctx, iterations);

  /* A checksum of the logits shows that every thread count computed the same numbers. */
  double checksum = 0.0;
  const float *logits = dsr_output_f32(&ctx);
  int64_t classes = dsr_tensor_elements(&model.tensors[model.output]);
  for (int64_t i = 0; i < classes; i++)
    checksum += (double)logits[i] * (double)((i % 7) + 1);

  printf("{\"runtime\": \"deformslice\", \"model\": \"%s\", \"mode\": \"%s\", \"threads\": %lld, "
         "\"iterations\": %lld, \"input_shape\": [%d, %d, %d, %d], \"ms_per_image\": %.4f, "
         "\"images_per_second\": %.4f, \"arena_bytes\": %zu, \"packed_bytes\": %zu, "
         "\"constant_bytes\": %lld, \"peak_rss_bytes\": %lld, \"logit_checksum\": %.9g}\n",
         positional[0], mode_text, (long long)threads, (long long)iterations, input->dims[0],
         input->dims[1], input->dims[2], input->dims[3], 1e3 * seconds / (double)iterations,
         (double)iterations / seconds, plan.arena_bytes, plan.packed_bytes,
         constant_bytes(&model, mode),
         peak_rss_bytes(), checksum);

  free(arena);
  dst_pool_destroy(pool);
  ds_model_free(&model);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "prepare") == 0)
    return prepare(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "run") == 0)
    return run(argc - 1, argv + 1);
  return usage();
}
