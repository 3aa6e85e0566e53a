#include "dsq_audit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/ds_model.h"
#include "dsq_audit_stages.h"

/* Running sums of one tensor. */
typedef struct audit_sums {
  double signal;  /* sum f^2 */
  double noise;   /* sum (f - q)^2 */
  double fixed;   /* sum q^2 */
  double cross;   /* sum f * q */
  double max_abs;
  int64_t count;
} audit_sums;

typedef struct audit_run {
  void *arena;
  dsr_context ctx;
} audit_run;

static ds_status start_run(const dsr_model *model, dsr_mode mode, const dsr_slice *slices,
                           audit_run *run, ds_error *err) {
  dsr_plan_info plan;
  run->arena = NULL;
  DS_TRY(dsr_plan(model, mode, DSR_PLAN_KEEP_ALL, &plan, err));
  size_t bytes = (plan.arena_bytes + 63) / 64 * 64;
  run->arena = aligned_alloc(64, bytes == 0 ? 64 : bytes);
  if (run->arena == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate a %zu-byte audit arena", bytes);
  DS_TRY(dsr_context_init(&run->ctx, model, mode, DSR_PLAN_KEEP_ALL, run->arena, bytes, err));
  if (slices != NULL) {
    for (int32_t i = 0; i < run->ctx.deform_count; i++)
      DS_TRY(dsr_context_set_slice(&run->ctx, i, slices[i], err));
  }
  return DS_OK;
}

static double dequantized(const void *data, const dsr_qparams *q, int64_t i) {
  int64_t v;
  if (q->dtype == DSR_DTYPE_I8)
    v = ((const int8_t *)data)[i];
  else if (q->dtype == DSR_DTYPE_I16)
    v = ((const int16_t *)data)[i];
  else
    v = ((const int32_t *)data)[i];
  return (double)q->scale * (double)(v - q->zero_point);
}

static void accumulate(audit_sums *sums, const float *reference, const void *fixed,
                       const dsr_qparams *q, int64_t count) {
  for (int64_t i = 0; i < count; i++) {
    double f = reference[i];
    double d = dequantized(fixed, q, i);
    double e = f - d;
    sums->signal += f * f;
    sums->noise += e * e;
    sums->fixed += d * d;
    sums->cross += f * d;
    if (fabs(e) > sums->max_abs)
      sums->max_abs = fabs(e);
  }
  sums->count += count;
}

static int64_t argmax(const float *values, int64_t count) {
  int64_t best = 0;
  for (int64_t i = 1; i < count; i++) {
    if (values[i] > values[best])
      best = i;
  }
  return best;
}

static void finish_entry(dsq_tensor_audit *entry, const audit_sums *sums) {
  entry->count = sums->count;
  entry->max_abs_error = sums->max_abs;
  if (sums->noise == 0.0)
    entry->sqnr_db = DSQ_AUDIT_SQNR_MAX_DB;
  else if (sums->signal == 0.0)
    entry->sqnr_db = -DSQ_AUDIT_SQNR_MAX_DB;
  else
    entry->sqnr_db = fmin(10.0 * log10(sums->signal / sums->noise), DSQ_AUDIT_SQNR_MAX_DB);
  double norms = sqrt(sums->signal) * sqrt(sums->fixed);
  entry->cosine = norms > 0.0 ? sums->cross / norms
                              : (sums->signal == 0.0 && sums->fixed == 0.0 ? 1.0 : 0.0);
}

ds_status dsq_audit(const dsr_model *model, const float *images, int32_t image_count,
                    const dsr_slice *slices, dsq_audit_report *report, ds_error *err) {
  if (report == NULL || model == NULL || images == NULL || image_count < 1)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "dsq_audit needs a model, a report and at least one image (got %d)",
                   image_count);
  memset(report, 0, sizeof *report);
  if (!model->quantized)
    return ds_fail(err, DS_ERR_QUANT, "model '%s' is not quantized: run dsq_quantize before "
                                      "the audit",
                   model->name);

  int32_t entry_count = model->node_count + 1;
  dsq_tensor_audit *entries = calloc((size_t)entry_count, sizeof *entries);
  audit_sums *sums = calloc((size_t)entry_count, sizeof *sums);
  audit_run float_run = {NULL, {0}}, fixed_run = {NULL, {0}};
  dsq_stage_recorder recorder;
  memset(&recorder, 0, sizeof recorder);
  ds_status status = DS_OK;
  if (entries == NULL || sums == NULL)
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate audit entries for %d tensors",
                     entry_count);
  if (status == DS_OK)
    status = start_run(model, DSR_MODE_FLOAT, slices, &float_run, err);
  if (status == DS_OK)
    status = start_run(model, DSR_MODE_FIXED, slices, &fixed_run, err);
  if (status == DS_OK)
    status = dsq_stage_recorder_init(&recorder, model, err);
  if (status == DS_OK) {
    /* The float run records each deformable stage; the fixed run compares against it. */
    dsr_context_set_observer(&float_run.ctx, &recorder.float_observer);
    dsr_context_set_probe(&float_run.ctx, &recorder.float_probe);
    dsr_context_set_probe(&fixed_run.ctx, &recorder.fixed_probe);
  }

  int32_t agreements = 0;
  int64_t input_count = dsr_tensor_elements(&model->tensors[model->input]);
  int64_t output_count = dsr_tensor_elements(&model->tensors[model->output]);
  for (int32_t image = 0; image < image_count && status == DS_OK; image++) {
    const float *pixels = images + (int64_t)image * input_count;
    memcpy(dsr_input_f32(&float_run.ctx), pixels, (size_t)input_count * sizeof(float));
    memcpy(dsr_input_f32(&fixed_run.ctx), pixels, (size_t)input_count * sizeof(float));
    dsq_stage_recorder_next_image(&recorder);
    dsr_invoke(&float_run.ctx);
    dsr_invoke(&fixed_run.ctx);
    for (int32_t e = 0; e < entry_count; e++) {
      int32_t t = e == 0 ? model->input : model->nodes[e - 1].output;
      accumulate(&sums[e], dsr_tensor_data(&float_run.ctx, t),
                 dsr_tensor_data(&fixed_run.ctx, t), &model->tensors[t].qparams,
                 dsr_tensor_elements(&model->tensors[t]));
    }
    if (argmax(dsr_output_f32(&float_run.ctx), output_count) ==
        argmax(dsr_output_f32(&fixed_run.ctx), output_count))
      agreements++;
  }
  free(float_run.arena);
  free(fixed_run.arena);
  if (status == DS_OK)
    status = dsq_stage_recorder_finish(&recorder, report, err);
  dsq_stage_recorder_free(&recorder);
  if (status != DS_OK) {
    free(report->stages);
    memset(report, 0, sizeof *report);
    free(entries);
    free(sums);
    return status;
  }

  report->image_count = image_count;
  report->tensor_count = entry_count;
  report->tensors = entries;
  report->top1_agreement_count = agreements;
  for (int32_t e = 0; e < entry_count; e++) {
    int32_t t = e == 0 ? model->input : model->nodes[e - 1].output;
    entries[e].tensor_index = t;
    memcpy(entries[e].name, model->tensors[t].name, sizeof entries[e].name);
    entries[e].name[sizeof entries[e].name - 1] = '\0';
    entries[e].dtype = model->tensors[t].qparams.dtype;
    finish_entry(&entries[e], &sums[e]);
    if (t == model->output)
      report->output_entry = e;
    if (entries[e].sqnr_db < entries[report->worst_entry].sqnr_db)
      report->worst_entry = e;
  }
  for (int32_t i = 0; i < report->stage_count; i++) {
    dsq_stage_audit *s = &report->stages[i];
    if (s->stage != DSQ_AUDIT_STAGE_OUTPUT)
      continue;
    const dsq_tensor_audit *t = &entries[s->node_index + 1]; /* entry 0 is the input */
    s->count = t->count;
    s->sqnr_db = t->sqnr_db;
    s->max_abs_error = t->max_abs_error;
    s->cosine = t->cosine;
  }
  free(sums);
  return DS_OK;
}

void dsq_audit_report_free(dsq_audit_report *report) {
  if (report == NULL)
    return;
  free(report->tensors);
  free(report->stages);
  memset(report, 0, sizeof *report);
}

void dsq_audit_report_print(const dsq_audit_report *report, FILE *out) {
  fprintf(out, "%6s  %-48s  %5s  %9s  %12s  %9s\n", "tensor", "name", "type", "SQNR dB",
          "max |error|", "cosine");
  for (int32_t e = 0; e < report->tensor_count; e++) {
    const dsq_tensor_audit *a = &report->tensors[e];
    fprintf(out, "%6d  %-48.48s  %5s  %9.2f  %12.6g  %9.6f\n", a->tensor_index, a->name,
            a->dtype == DSR_DTYPE_I8 ? "int8" : (a->dtype == DSR_DTYPE_I16 ? "int16" : "int32"),
            a->sqnr_db, a->max_abs_error, a->cosine);
  }
  if (report->stage_count > 0) {
    fprintf(out, "\n%-56s  %5s  %9s  %12s  %9s\n", "deformable stage", "type", "SQNR dB",
            "max |error|", "cosine");
    for (int32_t e = 0; e < report->stage_count; e++) {
      const dsq_stage_audit *a = &report->stages[e];
      fprintf(out, "%-56.56s  %5s  %9.2f  %12.6g  %9.6f\n", a->name,
              a->stage == DSR_PROBE_POSITIONS
                  ? "Q8"
                  : (a->dtype == DSR_DTYPE_I8 ? "int8"
                                              : (a->dtype == DSR_DTYPE_I16 ? "int16" : "int32")),
              a->sqnr_db, a->max_abs_error, a->cosine);
    }
    fprintf(out, "\n");
  }
  if (report->tensor_count > 0) {
    const dsq_tensor_audit *o = &report->tensors[report->output_entry];
    const dsq_tensor_audit *w = &report->tensors[report->worst_entry];
    fprintf(out, "images %d, top-1 agreement %d/%d, output SQNR %.2f dB, worst tensor '%s' "
                 "%.2f dB\n",
            report->image_count, report->top1_agreement_count, report->image_count, o->sqnr_db,
            w->name, w->sqnr_db);
  }
}
