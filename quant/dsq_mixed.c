#include "dsq_mixed.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/dsr_runtime.h"

/* Stages whose type a user may choose: SAMPLED shares the layer input's qparams and BIAS is
 * recorded for reports only. */
static const int32_t choosable_stages[] = {
    DSR_DEFORM_STAGE_Q,      DSR_DEFORM_STAGE_OFFSET_DW, DSR_DEFORM_STAGE_OFFSET_LN,
    DSR_DEFORM_STAGE_OFFSET_GELU, DSR_DEFORM_STAGE_OFFSET, DSR_DEFORM_STAGE_K,
    DSR_DEFORM_STAGE_V,      DSR_DEFORM_STAGE_LOGITS,    DSR_DEFORM_STAGE_ATTN,
    DSR_DEFORM_STAGE_CONTEXT};
#define CHOOSABLE_STAGE_COUNT ((int32_t)(sizeof choosable_stages / sizeof choosable_stages[0]))

const char *dsq_stage_name(int32_t stage) {
  static const char *const names[DSR_DEFORM_STAGE_COUNT] = {
      "q", "offset_dw", "offset_ln", "offset_gelu", "offset", "sampled",
      "k", "v",         "logits",    "bias",        "attn",   "context"};
  return stage >= 0 && stage < DSR_DEFORM_STAGE_COUNT ? names[stage] : "?";
}

static int32_t find_root(int32_t *parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

/* Offset grid side over a map side of size pixels, as the kernels compute it. */
static int64_t grid_side(const dsr_deform_attn *d, int32_t size) {
  if (d->offset_stride < 1)
    return 0;
  return (size + 2 * d->offset_pad - d->offset_kernel) / d->offset_stride + 1;
}

static int64_t stage_bytes(const dsr_deform_attn *d, int32_t stage) {
  int64_t c = d->channels, g = d->groups > 0 ? d->groups : 1;
  int64_t n = grid_side(d, d->height) * grid_side(d, d->width);
  switch (stage) {
  case DSR_DEFORM_STAGE_Q:
    return c * d->height * d->width;
  case DSR_DEFORM_STAGE_OFFSET_DW:
  case DSR_DEFORM_STAGE_OFFSET_GELU:
  case DSR_DEFORM_STAGE_K:
  case DSR_DEFORM_STAGE_V:
    return c * n;
  case DSR_DEFORM_STAGE_OFFSET_LN:
    return c / g;
  case DSR_DEFORM_STAGE_OFFSET:
    return 2 * g * n;
  case DSR_DEFORM_STAGE_LOGITS:
  case DSR_DEFORM_STAGE_ATTN:
    return n;
  default:
    return c;
  }
}

void dsq_precision_plan_free(dsq_precision_plan *plan) {
  if (plan == NULL)
    return;
  free(plan->items);
  free(plan->tensor_precision);
  free(plan->stage_precision);
  free(plan->tensor_item);
  memset(plan, 0, sizeof *plan);
}

/* Lists the activation alias groups as items; returns the item count, or -1 without memory. */
static int32_t list_tensor_items(const dsr_model *model, dsq_precision_plan *plan,
                                 int32_t *parent) {
  int32_t count = model->tensor_count;
  for (int32_t i = 0; i < count; i++)
    parent[i] = i;
  uint8_t *view = calloc((size_t)count, 1); /* RESHAPE outputs own no storage */
  if (view == NULL)
    return -1;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op == DSR_OP_TRANSPOSE || node->op == DSR_OP_RESHAPE ||
        node->op == DSR_OP_GATHER) {
      int32_t a = find_root(parent, node->inputs[0]), b = find_root(parent, node->output);
      if (a < b)
        parent[b] = a;
      else if (b < a)
        parent[a] = b;
    }
    if (node->op == DSR_OP_RESHAPE)
      view[node->output] = 1;
  }

  int32_t items = 0;
  for (int32_t i = 0; i < count; i++) {
    plan->tensor_item[i] = -1;
    if (model->tensors[i].kind == DSR_TENSOR_CONSTANT)
      continue;
    int32_t root = find_root(parent, i);
    /* The first activation of a group (in index order) names it and holds its item. */
    int32_t item = -1;
    for (int32_t j = root; j < i && item < 0; j++) {
      if (model->tensors[j].kind != DSR_TENSOR_CONSTANT && find_root(parent, j) == root)
        item = plan->tensor_item[j];
    }
    if (item < 0) {
      item = items++;
      dsq_precision_item *it = &plan->items[item];
      memset(it, 0, sizeof *it);
      snprintf(it->name, sizeof it->name, "%s", model->tensors[i].name);
      it->tensor = i;
      it->node = -1;
      it->stage = -1;
    }
    plan->tensor_item[i] = item;
    if (!view[i])
      plan->items[item].int16_extra_bytes += dsr_tensor_elements(&model->tensors[i]);
  }
  free(view);
  return items;
}

ds_status dsq_precision_plan_init(const dsr_model *model, dsq_precision_plan *plan,
                                  ds_error *err) {
  if (model == NULL || plan == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsq_precision_plan_init needs a model and a "
                                                 "plan");
  memset(plan, 0, sizeof *plan);
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    for (int32_t j = 0; j < node->input_count; j++) {
      if (node->inputs[j] >= model->tensor_count || (j == 0 && node->inputs[j] < 0))
        return ds_fail(err, DS_ERR_GRAPH, "node '%s': input %d has tensor index %d",
                       node->name, j, node->inputs[j]);
    }
    if (node->output < 0 || node->output >= model->tensor_count)
      return ds_fail(err, DS_ERR_GRAPH, "node '%s': output tensor index %d is out of range",
                     node->name, node->output);
  }

  int32_t deform_count = 0;
  for (int32_t i = 0; i < model->node_count; i++)
    deform_count += model->nodes[i].op == DSR_OP_DEFORM_ATTN && model->nodes[i].deform != NULL;
  size_t capacity = (size_t)model->tensor_count + (size_t)deform_count * CHOOSABLE_STAGE_COUNT;
  plan->tensor_count = model->tensor_count;
  plan->node_count = model->node_count;
  plan->items = calloc(capacity > 0 ? capacity : 1, sizeof *plan->items);
  plan->tensor_item = calloc((size_t)model->tensor_count + 1, sizeof(int32_t));
  plan->tensor_precision = calloc((size_t)model->tensor_count + 1, 1);
  plan->stage_precision =
      calloc((size_t)model->node_count * DSR_DEFORM_STAGE_COUNT + 1, 1);
  int32_t *parent = calloc((size_t)model->tensor_count + 1, sizeof(int32_t));
  int32_t items = -1;
  if (plan->items != NULL && plan->tensor_item != NULL && plan->tensor_precision != NULL &&
      plan->stage_precision != NULL && parent != NULL)
    items = list_tensor_items(model, plan, parent);
  free(parent);
  if (items < 0) {
    dsq_precision_plan_free(plan);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate a precision plan for %d tensors",
                   model->tensor_count);
  }

  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op != DSR_OP_DEFORM_ATTN || node->deform == NULL)
      continue;
    for (int32_t k = 0; k < CHOOSABLE_STAGE_COUNT; k++) {
      dsq_precision_item *it = &plan->items[items++];
      memset(it, 0, sizeof *it);
      snprintf(it->name, sizeof it->name, "%s:%s", node->name,
               dsq_stage_name(choosable_stages[k]));
      it->tensor = -1;
      it->node = i;
      it->stage = choosable_stages[k];
      it->int16_extra_bytes = stage_bytes(node->deform, it->stage);
    }
  }
  plan->item_count = items;
  return DS_OK;
}

int32_t dsq_precision_find(const dsq_precision_plan *plan, const dsr_model *model,
                           const char *name) {
  for (int32_t i = 0; i < plan->item_count; i++) {
    if (strcmp(plan->items[i].name, name) == 0)
      return i;
  }
  int32_t tensor = -1;
  for (int32_t i = 0; i < model->tensor_count && i < plan->tensor_count; i++) {
    if (strcmp(model->tensors[i].name, name) == 0) {
      tensor = i;
      break;
    }
  }
  return tensor >= 0 ? plan->tensor_item[tensor] : -1;
}

void dsq_precision_plan_set_all(dsq_precision_plan *plan, dsq_precision precision) {
  for (int32_t i = 0; i < plan->item_count; i++)
    plan->items[i].precision = (uint8_t)precision;
}

void dsq_precision_plan_options(dsq_precision_plan *plan, uint32_t flags, dsq_options *options) {
  memset(options, 0, sizeof *options);
  options->int16 = flags;
  memset(plan->tensor_precision, 0, (size_t)plan->tensor_count);
  memset(plan->stage_precision, 0, (size_t)plan->node_count * DSR_DEFORM_STAGE_COUNT);
  for (int32_t t = 0; t < plan->tensor_count; t++) {
    if (plan->tensor_item[t] >= 0)
      plan->tensor_precision[t] = plan->items[plan->tensor_item[t]].precision;
  }
  for (int32_t i = 0; i < plan->item_count; i++) {
    const dsq_precision_item *it = &plan->items[i];
    if (it->node >= 0)
      plan->stage_precision[(size_t)it->node * DSR_DEFORM_STAGE_COUNT + it->stage] =
          it->precision;
  }
  options->tensor_precision = plan->tensor_precision;
  options->stage_precision = plan->stage_precision;
}

int dsq_precision_item_is_int16(const dsq_precision_item *item, const dsr_model *model) {
  if (item->node >= 0) {
    const dsr_deform_attn *d = model->nodes[item->node].deform;
    return d != NULL && d->stage_qparams[item->stage].dtype == DSR_DTYPE_I16;
  }
  return model->tensors[item->tensor].qparams.dtype == DSR_DTYPE_I16;
}

int64_t dsq_precision_int16_bytes(const dsq_precision_plan *plan, const dsr_model *model,
                                  int32_t *int16_items) {
  int64_t bytes = 0;
  int32_t count = 0;
  for (int32_t i = 0; i < plan->item_count; i++) {
    if (dsq_precision_item_is_int16(&plan->items[i], model)) {
      bytes += plan->items[i].int16_extra_bytes;
      count++;
    }
  }
  if (int16_items != NULL)
    *int16_items = count;
  return bytes;
}

/* ------------------------------------------------------------------ automatic choice */

typedef struct noise_worker {
  const dsr_model *model;
  const float *images;
  const float *reference;   /* float logits of the worker's images */
  int32_t count;
  int64_t input_count, output_count;
  double *noise;            /* per image of the worker: sum of squared logit errors */
  ds_status status;
  ds_error err;
  pthread_t thread;
} noise_worker;

static void *noise_main(void *arg) {
  noise_worker *w = arg;
  dsr_plan_info info;
  w->status = dsr_plan(w->model, DSR_MODE_FIXED, 0, &info, &w->err);
  if (w->status != DS_OK)
    return NULL;
  size_t bytes = (info.arena_bytes + 63) / 64 * 64;
  void *arena = aligned_alloc(64, bytes > 0 ? bytes : 64);
  if (arena == NULL) {
    w->status = ds_fail(&w->err, DS_ERR_OUT_OF_MEMORY, "cannot allocate a %zu-byte arena", bytes);
    return NULL;
  }
  dsr_context ctx;
  w->status = dsr_context_init(&ctx, w->model, DSR_MODE_FIXED, 0, arena, bytes, &w->err);
  for (int32_t i = 0; i < w->count && w->status == DS_OK; i++) {
    memcpy(dsr_input_f32(&ctx), w->images + (int64_t)i * w->input_count,
           (size_t)w->input_count * sizeof(float));
    dsr_invoke(&ctx);
    const float *out = dsr_output_f32(&ctx);
    const float *ref = w->reference + (int64_t)i * w->output_count;
    double sum = 0.0;
    for (int64_t k = 0; k < w->output_count; k++) {
      double e = (double)out[k] - ref[k];
      sum += e * e;
    }
    w->noise[i] = sum;
  }
  free(arena);
  return NULL;
}

typedef struct noise_job {
  dsr_model *model;
  const dsq_calibration *calib;
  const float *images;
  const float *reference;
  int32_t image_count;
  int32_t threads;
  double *per_image;        /* image_count sums, added in image order */
  ds_error *err;
} noise_job;

/* Quantizes with options and returns the summed squared logit error in *noise. The per-image
 * sums are added in image order, so the total does not depend on the thread count. */
static ds_status measure_noise(const noise_job *job, const dsq_options *options, double *noise) {
  DS_TRY(dsq_quantize(job->model, job->calib, options, job->err));
  int32_t threads = job->threads < job->image_count ? job->threads : job->image_count;
  noise_worker workers[64];
  if (threads > 64)
    threads = 64;
  int64_t input_count = dsr_tensor_elements(&job->model->tensors[job->model->input]);
  int64_t output_count = dsr_tensor_elements(&job->model->tensors[job->model->output]);
  int32_t started = 0;
  ds_status status = DS_OK;
  for (int32_t t = 0; t < threads; t++) {
    int32_t first = (int32_t)((int64_t)job->image_count * t / threads);
    int32_t end = (int32_t)((int64_t)job->image_count * (t + 1) / threads);
    noise_worker *w = &workers[t];
    memset(w, 0, sizeof *w);
    w->model = job->model;
    w->images = job->images + (int64_t)first * input_count;
    w->reference = job->reference + (int64_t)first * output_count;
    w->noise = job->per_image + first;
    w->count = end - first;
    w->input_count = input_count;
    w->output_count = output_count;
    ds_error_clear(&w->err);
  }
  for (; started < threads; started++) {
    if (pthread_create(&workers[started].thread, NULL, noise_main, &workers[started]) != 0) {
      status = ds_fail(job->err, DS_ERR_INTERNAL, "cannot start precision worker %d", started);
      break;
    }
  }
  for (int32_t t = 0; t < started; t++)
    pthread_join(workers[t].thread, NULL);
  *noise = 0.0;
  for (int32_t t = 0; t < started && status == DS_OK; t++) {
    if (workers[t].status != DS_OK) {
      *job->err = workers[t].err;
      status = workers[t].status;
    }
  }
  for (int32_t i = 0; i < job->image_count && status == DS_OK; i++)
    *noise += job->per_image[i];
  return status;
}

static ds_status float_logits(const dsr_model *model, const float *images, int32_t count,
                              float *logits, ds_error *err) {
  dsr_plan_info info;
  DS_TRY(dsr_plan(model, DSR_MODE_FLOAT, 0, &info, err));
  size_t bytes = (info.arena_bytes + 63) / 64 * 64;
  void *arena = aligned_alloc(64, bytes > 0 ? bytes : 64);
  if (arena == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate a %zu-byte arena", bytes);
  dsr_context ctx;
  ds_status status = dsr_context_init(&ctx, model, DSR_MODE_FLOAT, 0, arena, bytes, err);
  int64_t input_count = dsr_tensor_elements(&model->tensors[model->input]);
  int64_t output_count = dsr_tensor_elements(&model->tensors[model->output]);
  for (int32_t i = 0; i < count && status == DS_OK; i++) {
    memcpy(dsr_input_f32(&ctx), images + (int64_t)i * input_count,
           (size_t)input_count * sizeof(float));
    dsr_invoke(&ctx);
    memcpy(logits + (int64_t)i * output_count, dsr_output_f32(&ctx),
           (size_t)output_count * sizeof(float));
  }
  free(arena);
  return status;
}

typedef struct ranked_item {
  int32_t item;
  double value; /* gain per extra byte */
} ranked_item;

static int compare_ranked(const void *a, const void *b) {
  const ranked_item *x = a, *y = b;
  if (x->value != y->value)
    return x->value > y->value ? -1 : 1;
  return x->item - y->item; /* ties keep item order, so the result is deterministic */
}

ds_status dsq_mixed_choose(dsr_model *model, const dsq_calibration *calib, const float *images,
                           int32_t image_count, int64_t budget_bytes, int32_t threads,
                           dsq_precision_plan *plan, ds_error *err) {
  if (model == NULL || calib == NULL || images == NULL || plan == NULL || image_count < 1 ||
      budget_bytes < 0 || threads < 1)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "dsq_mixed_choose needs a model, a calibration, at least one image (got %d), "
                   "a budget of 0 or more bytes (got %lld) and at least one thread (got %d)",
                   image_count, (long long)budget_bytes, threads);
  if (plan->tensor_count != model->tensor_count || plan->node_count != model->node_count)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "the precision plan was made for another model (%d tensors, %d nodes; this "
                   "one has %d and %d)",
                   plan->tensor_count, plan->node_count, model->tensor_count, model->node_count);

  int64_t output_count = dsr_tensor_elements(&model->tensors[model->output]);
  float *reference = malloc(sizeof(float) * (size_t)(output_count * image_count));
  ranked_item *ranked = malloc(sizeof(ranked_item) * (size_t)(plan->item_count + 1));
  double *per_image = calloc((size_t)image_count, sizeof(double));
  if (reference == NULL || ranked == NULL || per_image == NULL) {
    free(reference);
    free(ranked);
    free(per_image);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the precision search buffers");
  }
  noise_job job = {model, calib, images, reference, image_count, threads, per_image, err};
  dsq_options options;
  double base_noise = 0.0;
  ds_status status = DS_OK;

  /* Hand choices stay; their int16 bytes are spent first. */
  uint8_t *fixed = calloc((size_t)plan->item_count + 1, 1);
  int64_t used = 0;
  if (fixed == NULL)
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the precision search state");
  for (int32_t i = 0; i < plan->item_count && status == DS_OK; i++) {
    dsq_precision_item *it = &plan->items[i];
    fixed[i] = it->precision != DSQ_PRECISION_BY_CLASS;
    if (it->precision == DSQ_PRECISION_INT16)
      used += it->int16_extra_bytes;
    else
      it->precision = DSQ_PRECISION_INT8;
  }
  if (status == DS_OK && used > budget_bytes)
    status = ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "the tensors chosen int16 by hand take %lld bytes, over the int16 budget "
                     "of %lld bytes: raise the budget or choose fewer int16 tensors",
                     (long long)used, (long long)budget_bytes);
  if (status == DS_OK)
    status = float_logits(model, images, image_count, reference, err);
  if (status == DS_OK) {
    dsq_precision_plan_options(plan, 0, &options);
    status = measure_noise(&job, &options, &base_noise);
  }

  int32_t ranked_count = 0;
  for (int32_t i = 0; i < plan->item_count && status == DS_OK; i++) {
    dsq_precision_item *it = &plan->items[i];
    if (fixed[i] || used + it->int16_extra_bytes > budget_bytes)
      continue;
    it->precision = DSQ_PRECISION_INT16;
    dsq_precision_plan_options(plan, 0, &options);
    double noise = 0.0;
    status = measure_noise(&job, &options, &noise);
    it->precision = DSQ_PRECISION_INT8;
    it->gain = base_noise > 0.0 ? (base_noise - noise) / base_noise : 0.0;
    if (status == DS_OK && it->gain > 0.0) {
      ranked[ranked_count].item = i;
      ranked[ranked_count].value = it->gain / (double)(it->int16_extra_bytes + 1);
      ranked_count++;
    }
  }

  /* Errors of promoted tensors do not add up exactly (they can cancel), so each candidate is
   * kept only when the error of the whole choice so far drops: the result never measures
   * worse than pure int8 on these images. */
  if (status == DS_OK) {
    qsort(ranked, (size_t)ranked_count, sizeof *ranked, compare_ranked);
    double noise = base_noise;
    for (int32_t r = 0; r < ranked_count && status == DS_OK; r++) {
      dsq_precision_item *it = &plan->items[ranked[r].item];
      if (used + it->int16_extra_bytes > budget_bytes)
        continue;
      it->precision = DSQ_PRECISION_INT16;
      dsq_precision_plan_options(plan, 0, &options);
      double trial = 0.0;
      status = measure_noise(&job, &options, &trial);
      if (status == DS_OK && trial < noise) {
        noise = trial;
        used += it->int16_extra_bytes;
      } else {
        it->precision = DSQ_PRECISION_INT8;
      }
    }
    if (status == DS_OK) {
      dsq_precision_plan_options(plan, 0, &options);
      status = dsq_quantize(model, calib, &options, err);
    }
  }
  free(fixed);
  free(reference);
  free(ranked);
  free(per_image);
  return status;
}
