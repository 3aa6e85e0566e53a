#include "dsq_audit_stages.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/ds_model.h"
#include "dsq_mixed.h"

/* Float values of one stage of one node for the current image, patch after patch, and the
 * running float-versus-fixed sums over all images. */
struct stage_slot {
  float *values;
  int64_t size, capacity;
  int64_t *patch_start;    /* offset of each patch's array in values */
  int64_t *patch_size;
  int32_t patch_count, patch_capacity;
  double signal, noise, fixed, cross, max_abs;
  int64_t count;
  int reported;            /* the fixed kernel reported this stage at least once */
};

const char *dsq_audit_stage_name(int32_t stage) {
  if (stage == DSQ_AUDIT_STAGE_OUTPUT)
    return "output";
  return stage == DSR_PROBE_POSITIONS ? "positions" : dsq_stage_name(stage);
}

static stage_slot *slot_of(const dsq_stage_recorder *rec, int32_t node_index, int32_t stage) {
  if (node_index < 0 || node_index >= rec->model->node_count || stage < 0 ||
      stage >= DSR_PROBE_STAGE_COUNT)
    return NULL;
  return &rec->slots[(int64_t)node_index * DSR_PROBE_STAGE_COUNT + stage];
}

/* Appends one patch's float values to the slot. */
static void record_patch(dsq_stage_recorder *rec, int32_t node_index, int32_t stage,
                         const float *values, int64_t count) {
  stage_slot *slot = slot_of(rec, node_index, stage);
  if (slot == NULL || rec->failed)
    return;
  if (slot->size + count > slot->capacity) {
    int64_t capacity = 2 * (slot->size + count);
    float *grown = realloc(slot->values, sizeof(float) * (size_t)capacity);
    if (grown == NULL) {
      rec->failed = 1;
      return;
    }
    slot->values = grown;
    slot->capacity = capacity;
  }
  if (slot->patch_count == slot->patch_capacity) {
    int32_t capacity = 2 * slot->patch_capacity + 4;
    int64_t *starts = realloc(slot->patch_start, sizeof(int64_t) * (size_t)capacity);
    if (starts != NULL)
      slot->patch_start = starts;
    int64_t *sizes = realloc(slot->patch_size, sizeof(int64_t) * (size_t)capacity);
    if (sizes != NULL)
      slot->patch_size = sizes;
    if (starts == NULL || sizes == NULL) {
      rec->failed = 1;
      return;
    }
    slot->patch_capacity = capacity;
  }
  memcpy(slot->values + slot->size, values, sizeof(float) * (size_t)count);
  slot->patch_start[slot->patch_count] = slot->size;
  slot->patch_size[slot->patch_count] = count;
  slot->patch_count++;
  slot->size += count;
}

/*
 * NOTE: the float kernel reports the bias, logit and attention stages once per chunk when a
 * patch's logits exceed 64 MiB (maps of full-size inputs such as 800x1333), and each chunk is
 * recorded here as a patch of its own. The fixed-point probe numbers patches, not chunks, so
 * those three stages are compared against the wrong float values on such layers.
 */
static void on_float_stage(void *user, int32_t node_index, int32_t stage, const float *values,
                           int64_t count) {
  record_patch(user, node_index, stage, values, count);
}

static void on_float_probe(void *user, const dsr_probe_report *report) {
  if (report->values_f32 != NULL && report->first == 0 && report->stride == 1)
    record_patch(user, report->node_index, report->stage, report->values_f32, report->count);
}

/* Real value of a fixed-point stage value. */
static double stage_real(const dsr_model *model, int32_t node_index, int32_t stage, int32_t q) {
  if (stage == DSR_PROBE_POSITIONS)
    return q / 256.0; /* Q8 pixels */
  const dsr_node *node = &model->nodes[node_index];
  const dsr_qparams *p = stage == DSR_DEFORM_STAGE_SAMPLED
                             ? &model->tensors[node->inputs[0]].qparams
                             : &node->deform->stage_qparams[stage];
  return (double)p->scale * (double)(q - p->zero_point);
}

static void on_fixed_probe(void *user, const dsr_probe_report *report) {
  dsq_stage_recorder *rec = user;
  stage_slot *slot = slot_of(rec, report->node_index, report->stage);
  if (slot == NULL || report->values_q == NULL || report->patch_index < 0 ||
      report->patch_index >= slot->patch_count)
    return;
  const float *reference = slot->values + slot->patch_start[report->patch_index];
  int64_t size = slot->patch_size[report->patch_index];
  slot->reported = 1;
  for (int64_t k = 0; k < report->count; k++) {
    int64_t at = report->first + k * report->stride;
    if (at < 0 || at >= size)
      continue; /* a layout mismatch would be a runtime bug; never read outside */
    double f = reference[at];
    double d = stage_real(rec->model, report->node_index, report->stage, report->values_q[k]);
    double e = f - d;
    slot->signal += f * f;
    slot->noise += e * e;
    slot->fixed += d * d;
    slot->cross += f * d;
    if (fabs(e) > slot->max_abs)
      slot->max_abs = fabs(e);
    slot->count++;
  }
}

ds_status dsq_stage_recorder_init(dsq_stage_recorder *rec, const dsr_model *model,
                                  ds_error *err) {
  memset(rec, 0, sizeof *rec);
  rec->model = model;
  rec->slot_count = model->node_count * DSR_PROBE_STAGE_COUNT;
  rec->slots = calloc((size_t)rec->slot_count + 1, sizeof *rec->slots);
  if (rec->slots == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the stage audit for %d nodes",
                   model->node_count);
  rec->float_observer.on_tensor = NULL;
  rec->float_observer.on_deform_stage = on_float_stage;
  rec->float_observer.user = rec;
  rec->float_probe.on_report = on_float_probe;
  rec->float_probe.user = rec;
  rec->fixed_probe.on_report = on_fixed_probe;
  rec->fixed_probe.user = rec;
  return DS_OK;
}

void dsq_stage_recorder_next_image(dsq_stage_recorder *rec) {
  for (int32_t i = 0; i < rec->slot_count; i++) {
    rec->slots[i].size = 0;
    rec->slots[i].patch_count = 0;
  }
}

static void finish_figures(const stage_slot *slot, dsq_stage_audit *entry) {
  entry->count = slot->count;
  entry->max_abs_error = slot->max_abs;
  if (slot->noise == 0.0)
    entry->sqnr_db = DSQ_AUDIT_SQNR_MAX_DB;
  else if (slot->signal == 0.0)
    entry->sqnr_db = -DSQ_AUDIT_SQNR_MAX_DB;
  else
    entry->sqnr_db = fmin(10.0 * log10(slot->signal / slot->noise), DSQ_AUDIT_SQNR_MAX_DB);
  double norms = sqrt(slot->signal) * sqrt(slot->fixed);
  entry->cosine = norms > 0.0 ? slot->cross / norms
                              : (slot->signal == 0.0 && slot->fixed == 0.0 ? 1.0 : 0.0);
}

ds_status dsq_stage_recorder_finish(const dsq_stage_recorder *rec, dsq_audit_report *report,
                                    ds_error *err) {
  if (rec->failed)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot hold the float stage values of one image");
  const dsr_model *model = rec->model;
  int32_t count = 0;
  for (int32_t i = 0; i < rec->slot_count; i++)
    count += rec->slots[i].reported;
  for (int32_t n = 0; n < model->node_count; n++)
    count += model->nodes[n].op == DSR_OP_DEFORM_ATTN; /* the output rows */
  report->stages = calloc((size_t)count + 1, sizeof *report->stages);
  if (report->stages == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d stage entries", count);

  /* Positions first, then the stages in enum order, layer by layer. */
  int32_t layer = 0, e = 0;
  for (int32_t n = 0; n < model->node_count; n++) {
    if (model->nodes[n].op != DSR_OP_DEFORM_ATTN)
      continue;
    for (int32_t k = 0; k < DSR_PROBE_STAGE_COUNT; k++) {
      int32_t stage = k == 0 ? DSR_PROBE_POSITIONS : k - 1;
      const stage_slot *slot = slot_of(rec, n, stage);
      if (!slot->reported)
        continue;
      dsq_stage_audit *entry = &report->stages[e++];
      entry->node_index = n;
      entry->layer = layer;
      entry->stage = stage;
      snprintf(entry->name, sizeof entry->name, "%.96s:%s", model->nodes[n].name,
               dsq_audit_stage_name(stage));
      entry->dtype = stage == DSR_PROBE_POSITIONS ? DSR_DTYPE_I32
                     : stage == DSR_DEFORM_STAGE_SAMPLED
                         ? model->tensors[model->nodes[n].inputs[0]].qparams.dtype
                         : model->nodes[n].deform->stage_qparams[stage].dtype;
      finish_figures(slot, entry);
    }
    /* The output row; dsq_audit fills its figures from the tensor comparison. */
    dsq_stage_audit *output = &report->stages[e++];
    output->node_index = n;
    output->layer = layer;
    output->stage = DSQ_AUDIT_STAGE_OUTPUT;
    snprintf(output->name, sizeof output->name, "%.96s:output", model->nodes[n].name);
    output->dtype = model->tensors[model->nodes[n].output].qparams.dtype;
    layer++;
  }
  report->stage_count = e;
  return DS_OK;
}

void dsq_stage_recorder_free(dsq_stage_recorder *rec) {
  if (rec == NULL)
    return;
  for (int32_t i = 0; i < rec->slot_count && rec->slots != NULL; i++) {
    free(rec->slots[i].values);
    free(rec->slots[i].patch_start);
    free(rec->slots[i].patch_size);
  }
  free(rec->slots);
  memset(rec, 0, sizeof *rec);
}
