/* JSON and Markdown reports of `deformslice audit`. */
#include "dst_audit_report.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_file.h"
#include "runtime/dsr_probe.h"

typedef struct ranked_entry {
  int is_stage;
  int masked; /* masked attention logits: low SQNR by design, ranked after the others */
  int32_t index;
  double sqnr_db;
} ranked_entry;

/* Note on masked logits, which every report lists last. */
#define MASKED_NOTE "masked logits, low SQNR by design"

/* Largest mask value: masked logits contain -100 or -10^4, far below any real logit. */
#define MASK_VALUE_MAX (-100.0f)

/*
 * Returns 1 when the tensor is the output of an Add that feeds a Softmax and has a constant
 * input containing a mask value (-100 or lower). The masked values saturate at the bottom of
 * the range, which changes no probability (docs/fixed-point.md, section 6).
 */
static int is_masked_logits(const dsr_model *model, int32_t tensor) {
  if (model == NULL || tensor < 0 || tensor >= model->tensor_count)
    return 0;
  int feeds_softmax = 0;
  const dsr_node *producer = NULL;
  for (int32_t n = 0; n < model->node_count; n++) {
    const dsr_node *node = &model->nodes[n];
    if (node->output == tensor)
      producer = node;
    if (node->op == DSR_OP_SOFTMAX && node->input_count > 0 && node->inputs[0] == tensor)
      feeds_softmax = 1;
  }
  if (!feeds_softmax || producer == NULL || producer->op != DSR_OP_ADD)
    return 0;
  for (int32_t k = 0; k < producer->input_count; k++) {
    int32_t input = producer->inputs[k];
    if (input < 0 || input >= model->tensor_count)
      continue;
    const dsr_tensor *t = &model->tensors[input];
    if (t->kind != DSR_TENSOR_CONSTANT || t->data_f32 == NULL)
      continue;
    int64_t elements = dsr_tensor_elements(t);
    for (int64_t e = 0; e < elements; e++) {
      if (t->data_f32[e] <= MASK_VALUE_MAX)
        return 1;
    }
  }
  return 0;
}

static const char *type_name(int32_t dtype) {
  switch (dtype) {
  case DSR_DTYPE_I8:
    return "int8";
  case DSR_DTYPE_I16:
    return "int16";
  case DSR_DTYPE_I32:
    return "int32";
  default:
    return "float";
  }
}

static const char *stage_type(const dsq_stage_audit *s) {
  return s->stage == DSR_PROBE_POSITIONS ? "Q8" : type_name(s->dtype);
}

static double share(int32_t count, int32_t total) {
  return total > 0 ? (double)count / total : 0.0;
}

static int compare_ranked(const void *a, const void *b) {
  const ranked_entry *x = a, *y = b;
  if (x->masked != y->masked)
    return x->masked - y->masked;
  if (x->sqnr_db != y->sqnr_db)
    return x->sqnr_db < y->sqnr_db ? -1 : 1;
  if (x->is_stage != y->is_stage)
    return x->is_stage - y->is_stage;
  return x->index - y->index;
}

/*
 * Tensors (the model input left out: its error is the input rounding) and stages, lowest
 * SQNR first, masked attention logits after all the others. Returns the entry count written to ranked (capacity tensor + stage count), or
 * -1 when out of memory.
 */
static int32_t rank_worst(const dsr_model *model, const dsq_audit_report *audit,
                          ranked_entry **out) {
  int32_t capacity = audit->tensor_count + audit->stage_count;
  ranked_entry *ranked = malloc(sizeof *ranked * (size_t)(capacity > 0 ? capacity : 1));
  if (ranked == NULL)
    return -1;
  int32_t count = 0;
  for (int32_t i = 1; i < audit->tensor_count; i++)
    ranked[count++] = (ranked_entry){0, is_masked_logits(model, audit->tensors[i].tensor_index),
                                     i, audit->tensors[i].sqnr_db};
  for (int32_t i = 0; i < audit->stage_count; i++) {
    if (audit->stages[i].stage != DSQ_AUDIT_STAGE_OUTPUT) /* already ranked as a tensor */
      ranked[count++] = (ranked_entry){1, 0, i, audit->stages[i].sqnr_db};
  }
  qsort(ranked, (size_t)count, sizeof *ranked, compare_ranked);
  *out = ranked;
  return count;
}

static void count_types(const dsr_model *model, int32_t *int8_count, int32_t *int16_count) {
  *int8_count = 0;
  *int16_count = 0;
  for (int32_t i = 0; i < model->tensor_count; i++) {
    const dsr_tensor *t = &model->tensors[i];
    if (t->kind == DSR_TENSOR_CONSTANT)
      continue;
    *int8_count += t->qparams.dtype == DSR_DTYPE_I8;
    *int16_count += t->qparams.dtype == DSR_DTYPE_I16;
  }
}

static void add_figures(cJSON *object, int64_t count, double sqnr_db, double max_abs_error,
                        double cosine) {
  cJSON_AddNumberToObject(object, "count", (double)count);
  cJSON_AddNumberToObject(object, "sqnr_db", sqnr_db);
  cJSON_AddNumberToObject(object, "max_abs_error", max_abs_error);
  cJSON_AddNumberToObject(object, "cosine", cosine);
}

static cJSON *build_json(const dst_audit_summary *s) {
  const dsq_audit_report *audit = s->audit;
  int32_t n = s->test_images;
  cJSON *root = cJSON_CreateObject();
  if (root == NULL)
    return NULL;
  cJSON_AddNumberToObject(root, "version", 1);
  cJSON_AddStringToObject(root, "model", s->model_path);
  cJSON_AddStringToObject(root, "source", s->from_artifact ? "artifact" : "onnx");
  cJSON_AddNumberToObject(root, "test_images", n);
  cJSON_AddNumberToObject(root, "tensor_images", s->tensor_images);
  cJSON_AddStringToObject(root, "slicing", s->slicing);

  cJSON *accuracy = cJSON_AddObjectToObject(root, "accuracy");
  cJSON_AddNumberToObject(accuracy, "float_top1", s->float_top1);
  cJSON_AddNumberToObject(accuracy, "fixed_top1", s->fixed_top1);
  cJSON_AddNumberToObject(accuracy, "fixed_sliced_top1", s->sliced_top1);
  cJSON_AddNumberToObject(accuracy, "fixed_drop_points", s->float_top1 - s->fixed_top1);
  cJSON_AddNumberToObject(accuracy, "fixed_sliced_drop_points", s->float_top1 - s->sliced_top1);

  cJSON *agreement = cJSON_AddObjectToObject(root, "agreement");
  cJSON_AddNumberToObject(agreement, "float_fixed", share(s->agree_float_fixed, n));
  cJSON_AddNumberToObject(agreement, "float_fixed_sliced", share(s->agree_float_sliced, n));
  cJSON_AddNumberToObject(agreement, "fixed_fixed_sliced", share(s->agree_fixed_sliced, n));
  cJSON_AddNumberToObject(agreement, "float_fixed_count", s->agree_float_fixed);
  cJSON_AddNumberToObject(agreement, "float_fixed_sliced_count", s->agree_float_sliced);
  cJSON_AddNumberToObject(agreement, "fixed_fixed_sliced_count", s->agree_fixed_sliced);

  cJSON *precision = s->precision != NULL ? dst_precision_to_json(s->precision, s->model)
                                          : cJSON_CreateObject();
  int32_t int8_count, int16_count;
  count_types(s->model, &int8_count, &int16_count);
  if (precision != NULL) {
    cJSON_AddNumberToObject(precision, "int8_activations", int8_count);
    cJSON_AddNumberToObject(precision, "int16_activations", int16_count);
    cJSON_AddItemToObject(root, "precision", precision);
  }

  cJSON *tensors = cJSON_AddArrayToObject(root, "tensors");
  for (int32_t i = 0; tensors != NULL && i < audit->tensor_count; i++) {
    const dsq_tensor_audit *a = &audit->tensors[i];
    cJSON *item = cJSON_CreateObject();
    cJSON_AddNumberToObject(item, "index", a->tensor_index);
    cJSON_AddStringToObject(item, "name", a->name);
    cJSON_AddStringToObject(item, "type", type_name(a->dtype));
    add_figures(item, a->count, a->sqnr_db, a->max_abs_error, a->cosine);
    cJSON_AddItemToArray(tensors, item);
  }
  cJSON *stages = cJSON_AddArrayToObject(root, "stages");
  for (int32_t i = 0; stages != NULL && i < audit->stage_count; i++) {
    const dsq_stage_audit *a = &audit->stages[i];
    cJSON *item = cJSON_CreateObject();
    cJSON_AddNumberToObject(item, "layer", a->layer);
    cJSON_AddStringToObject(item, "node", s->model->nodes[a->node_index].name);
    cJSON_AddStringToObject(item, "stage", dsq_audit_stage_name(a->stage));
    cJSON_AddStringToObject(item, "name", a->name);
    cJSON_AddStringToObject(item, "type", stage_type(a));
    add_figures(item, a->count, a->sqnr_db, a->max_abs_error, a->cosine);
    cJSON_AddItemToArray(stages, item);
  }

  ranked_entry *ranked = NULL;
  int32_t ranked_count = rank_worst(s->model, audit, &ranked);
  if (ranked_count < 0) {
    cJSON_Delete(root);
    return NULL;
  }
  cJSON *worst = cJSON_AddArrayToObject(root, "worst");
  for (int32_t i = 0; worst != NULL && i < ranked_count; i++) {
    const ranked_entry *r = &ranked[i];
    if (i >= DST_AUDIT_WORST_COUNT && !r->masked)
      continue;
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "kind", r->is_stage ? "stage" : "tensor");
    cJSON_AddStringToObject(item, "name", r->is_stage ? audit->stages[r->index].name
                                                       : audit->tensors[r->index].name);
    cJSON_AddNumberToObject(item, "sqnr_db", r->sqnr_db);
    cJSON_AddBoolToObject(item, "masked_logits", r->masked);
    if (r->masked)
      cJSON_AddStringToObject(item, "note", MASKED_NOTE);
    cJSON_AddItemToArray(worst, item);
  }
  free(ranked);
  return root;
}

char *dst_audit_report_json(const dst_audit_summary *summary) {
  cJSON *root = build_json(summary);
  if (root == NULL)
    return NULL;
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  return text;
}

static void write_markdown(const dst_audit_summary *s, FILE *out) {
  const dsq_audit_report *audit = s->audit;
  int32_t n = s->test_images;
  fprintf(out, "# deformslice audit report\n\n");
  fprintf(out, "- model: `%s` (%s)\n", s->model_path, s->from_artifact ? "artifact" : "ONNX");
  if (s->precision != NULL) {
    fprintf(out, "- ");
    dst_precision_print(s->precision, out);
  }
  int32_t int8_count, int16_count;
  count_types(s->model, &int8_count, &int16_count);
  fprintf(out, "- activations: %d int8, %d int16\n", int8_count, int16_count);
  fprintf(out, "- slicing: `%s`\n\n", s->slicing);

  fprintf(out, "## Accuracy on %d test images\n\n", n);
  fprintf(out, "| model | top-1 | drop vs float (points) |\n|---|---|---|\n");
  fprintf(out, "| float | %.2f%% | - |\n", s->float_top1);
  fprintf(out, "| fixed point | %.2f%% | %.2f |\n", s->fixed_top1, s->float_top1 - s->fixed_top1);
  fprintf(out, "| fixed point, sliced | %.2f%% | %.2f |\n\n", s->sliced_top1,
          s->float_top1 - s->sliced_top1);
  fprintf(out, "| agreement (same top-1) | images | share |\n|---|---|---|\n");
  fprintf(out, "| float, fixed point | %d | %.4f |\n", s->agree_float_fixed,
          share(s->agree_float_fixed, n));
  fprintf(out, "| float, fixed point sliced | %d | %.4f |\n", s->agree_float_sliced,
          share(s->agree_float_sliced, n));
  fprintf(out, "| fixed point, fixed point sliced | %d | %.4f |\n\n", s->agree_fixed_sliced,
          share(s->agree_fixed_sliced, n));

  ranked_entry *ranked = NULL;
  int32_t ranked_count = rank_worst(s->model, audit, &ranked);
  fprintf(out, "## Lowest SQNR (%d images, unsliced)\n\n", s->tensor_images);
  fprintf(out, "Masked attention logits (the Add before a masked Softmax) come last: their "
               "masked values saturate, which changes no probability.\n\n");
  fprintf(out, "| rank | kind | name | SQNR dB | note |\n|---|---|---|---|---|\n");
  for (int32_t i = 0; i < ranked_count; i++) {
    const ranked_entry *r = &ranked[i];
    if (i >= DST_AUDIT_WORST_COUNT && !r->masked)
      continue;
    char rank[16] = "-"; /* masked logits are listed, not ranked */
    if (!r->masked)
      snprintf(rank, sizeof rank, "%d", i + 1);
    fprintf(out, "| %s | %s | `%s` | %.2f | %s |\n", rank, r->is_stage ? "stage" : "tensor",
            r->is_stage ? audit->stages[r->index].name : audit->tensors[r->index].name,
            r->sqnr_db, r->masked ? MASKED_NOTE : "");
  }
  free(ranked);

  fprintf(out, "\n## Deformable-layer stages\n\n");
  fprintf(out, "| layer | stage | type | SQNR dB | max abs error | cosine |\n"
               "|---|---|---|---|---|---|\n");
  for (int32_t i = 0; i < audit->stage_count; i++) {
    const dsq_stage_audit *a = &audit->stages[i];
    fprintf(out, "| %d `%s` | %s | %s | %.2f | %.6g | %.6f |\n", a->layer,
            s->model->nodes[a->node_index].name, dsq_audit_stage_name(a->stage), stage_type(a),
            a->sqnr_db, a->max_abs_error, a->cosine);
  }

  fprintf(out, "\n## Tensors\n\n");
  fprintf(out, "| index | name | type | SQNR dB | max abs error | cosine |\n"
               "|---|---|---|---|---|---|\n");
  for (int32_t i = 0; i < audit->tensor_count; i++) {
    const dsq_tensor_audit *a = &audit->tensors[i];
    fprintf(out, "| %d | `%s` | %s | %.2f | %.6g | %.6f |\n", a->tensor_index, a->name,
            type_name(a->dtype), a->sqnr_db, a->max_abs_error, a->cosine);
  }
}

char *dst_audit_report_markdown(const dst_audit_summary *summary) {
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  if (out == NULL)
    return NULL;
  write_markdown(summary, out);
  if (fclose(out) != 0) {
    free(text);
    return NULL;
  }
  return text;
}

static ds_status write_text(const char *path, char *text, const char *what, ds_error *err) {
  if (text == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build the %s report", what);
  ds_status status = ds_file_write_atomic(path, text, strlen(text), err);
  free(text);
  return status;
}

ds_status dst_audit_report_write(const dst_audit_summary *summary, const char *json_path,
                                 const char *markdown_path, ds_error *err) {
  if (json_path != NULL)
    DS_TRY(write_text(json_path, dst_audit_report_json(summary), "JSON", err));
  if (markdown_path != NULL)
    DS_TRY(write_text(markdown_path, dst_audit_report_markdown(summary), "Markdown", err));
  return DS_OK;
}

void dst_audit_report_print_summary(const dst_audit_summary *s, FILE *out) {
  int32_t n = s->test_images > 0 ? s->test_images : 1;
  fprintf(out, "\nmodel: %s\n", s->model_path);
  if (s->precision != NULL)
    dst_precision_print(s->precision, out);
  fprintf(out, "test top-1 on %d images: float %.2f%%, fixed point %.2f%% (%+.2f points), "
               "fixed point sliced %.2f%% (%+.2f points) with %s\n",
          s->test_images, s->float_top1, s->fixed_top1, s->fixed_top1 - s->float_top1,
          s->sliced_top1, s->sliced_top1 - s->float_top1, s->slicing);
  fprintf(out, "same top-1: float and fixed point %d of %d (%.2f%%), float and sliced %d of %d "
               "(%.2f%%), fixed and sliced %d of %d (%.2f%%)\n",
          s->agree_float_fixed, s->test_images, 100.0 * s->agree_float_fixed / n,
          s->agree_float_sliced, s->test_images, 100.0 * s->agree_float_sliced / n,
          s->agree_fixed_sliced, s->test_images, 100.0 * s->agree_fixed_sliced / n);
  ranked_entry *ranked = NULL;
  int32_t ranked_count = rank_worst(s->model, s->audit, &ranked);
  if (ranked_count > 0) {
    fprintf(out, "lowest SQNR:");
    for (int32_t i = 0; i < ranked_count && i < 5; i++) {
      const ranked_entry *r = &ranked[i];
      fprintf(out, "%s %s %.1f dB%s", i > 0 ? "," : "",
              r->is_stage ? s->audit->stages[r->index].name
                          : s->audit->tensors[r->index].name,
              r->sqnr_db, r->masked ? " (" MASKED_NOTE ")" : "");
    }
    fprintf(out, "\n");
    /* Masked logits rank last, so they may fall outside the first five: name them here. */
    int32_t masked_count = 0;
    for (int32_t i = 0; i < ranked_count; i++) {
      const ranked_entry *r = &ranked[i];
      if (!r->masked || i < 5)
        continue;
      fprintf(out, "%s %s %.1f dB", masked_count == 0 ? MASKED_NOTE ":" : ",",
              s->audit->tensors[r->index].name, r->sqnr_db);
      masked_count++;
    }
    if (masked_count > 0)
      fprintf(out, "\n");
  }
  free(ranked);
}
