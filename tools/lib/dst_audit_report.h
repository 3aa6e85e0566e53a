/*
 * Reports of `deformslice audit`: the terminal summary, a JSON report and a Markdown report
 * of the same figures, the files written atomically (common/ds_file.h).
 *
 * JSON layout (version 1; every number is a JSON number, null where a figure does not exist):
 *   {"version": 1, "model": path, "source": "onnx" | "artifact",
 *    "test_images": N, "tensor_images": M, "slicing": "RxC+O,..." (one per deformable layer),
 *    "accuracy": {"float_top1", "fixed_top1", "fixed_sliced_top1" (percent),
 *                 "fixed_drop_points", "fixed_sliced_drop_points" (against float)},
 *    "agreement": {"float_fixed", "float_fixed_sliced", "fixed_fixed_sliced" (fractions of the
 *                  test images with the same top-1), and the same names with "_count"},
 *    "precision": {"int8_activations", "int16_activations", and, when the audit quantized
 *                  the model itself, the fields of dst_precision_to_json},
 *    "tensors": [{"index", "name", "type", "count", "sqnr_db", "max_abs_error", "cosine"}],
 *    "stages":  [{"layer", "node", "stage", "name", "type", "count", "sqnr_db",
 *                 "max_abs_error", "cosine"}],
 *    "worst":   [{"kind": "tensor" | "stage", "name", "sqnr_db", "masked_logits", and "note"
 *                 when masked_logits is true}] (the DST_AUDIT_WORST_COUNT lowest SQNR first,
 *                 then every masked attention logit tensor: the Add before a masked Softmax,
 *                 low SQNR by design)}
 */
#ifndef DST_AUDIT_REPORT_H
#define DST_AUDIT_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "dst_precision.h"
#include "quant/dsq_audit.h"

/* Entries of the "worst" list. */
#define DST_AUDIT_WORST_COUNT 10

typedef struct dst_audit_summary {
  const dsr_model *model;
  const char *model_path;
  int from_artifact;
  int32_t test_images;
  int32_t tensor_images;
  char slicing[2048];                /* the sliced configuration, one entry per layer */
  double float_top1, fixed_top1, sliced_top1;
  int32_t agree_float_fixed, agree_float_sliced, agree_fixed_sliced;
  const dst_precision_record *precision; /* NULL for an artifact */
  const dsq_audit_report *audit;
} dst_audit_summary;

/* The JSON report as text (free it), or NULL when out of memory. */
char *dst_audit_report_json(const dst_audit_summary *summary);

/* The Markdown report as text (free it), or NULL when out of memory. */
char *dst_audit_report_markdown(const dst_audit_summary *summary);

/* Writes the reports whose path is not NULL. Errors: DS_ERR_OUT_OF_MEMORY, DS_ERR_IO. */
ds_status dst_audit_report_write(const dst_audit_summary *summary, const char *json_path,
                                 const char *markdown_path, ds_error *err);

/* Prints the accuracy, agreement and worst-tensor summary to out. */
void dst_audit_report_print_summary(const dst_audit_summary *summary, FILE *out);

#endif
