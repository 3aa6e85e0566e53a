/*
 * Accuracy audit of a quantized model: runs the same dsr_model in float and fixed-point mode
 * on the same images and compares every activation.
 *
 * Ownership: the report owns its tensor array (dsq_audit_report_free). Thread safety: the
 * audit only reads the model, so several audits may run on one model in parallel.
 */
#ifndef DSQ_AUDIT_H
#define DSQ_AUDIT_H

#include <stdint.h>
#include <stdio.h>

#include "../common/ds_status.h"
#include "../runtime/dsr_runtime.h"

/* SQNR reported when the quantization noise is exactly zero. */
#define DSQ_AUDIT_SQNR_MAX_DB 200.0

/* Float-versus-fixed statistics of one activation over all audited images. */
typedef struct dsq_tensor_audit {
  int32_t tensor_index;
  char name[DSR_NAME_BYTES];
  int32_t dtype;          /* dsr_dtype of its fixed-point values */
  int64_t count;          /* values compared */
  double sqnr_db;         /* 10 log10(sum float^2 / sum (float - fixed)^2), capped */
  double max_abs_error;   /* largest |float - dequantized fixed| */
  double cosine;          /* cosine similarity of the two value vectors (1 when both are 0) */
} dsq_tensor_audit;

/* Stage number of a layer's output in dsq_stage_audit (the node's output tensor, repeated
 * from the tensor list so each layer's rows end with it). */
#define DSQ_AUDIT_STAGE_OUTPUT (DSR_DEFORM_STAGE_COUNT + 1)

/* Float-versus-fixed statistics of one stage of one deformable layer, over all patches and
 * audited images. */
typedef struct dsq_stage_audit {
  int32_t node_index;
  int32_t layer;          /* deformable layer index, in node order */
  int32_t stage;          /* dsr_deform_stage, DSR_PROBE_POSITIONS (sampling positions) or
                             DSQ_AUDIT_STAGE_OUTPUT */
  char name[DSR_NAME_BYTES + 16]; /* "<node name>:<stage name>" */
  int32_t dtype;          /* dsr_dtype of the fixed-point stage (I32 for Q8 positions) */
  int64_t count;
  double sqnr_db;
  double max_abs_error;   /* positions: in pixels */
  double cosine;
} dsq_stage_audit;

typedef struct dsq_audit_report {
  int32_t image_count;
  int32_t tensor_count;        /* entries in tensors */
  dsq_tensor_audit *tensors;   /* the model input, then each node output in node order */
  int32_t output_entry;        /* index into tensors of the model output */
  int32_t worst_entry;         /* index into tensors of the lowest SQNR */
  int32_t top1_agreement_count; /* images whose float and fixed outputs have the same argmax */
  int32_t stage_count;         /* entries in stages */
  dsq_stage_audit *stages;     /* per deformable layer in node order: sampling positions, then
                                  the stages in dsr_deform_stage order (BIAS left out: the
                                  fixed kernel adds it inside the logits), then the output */
} dsq_audit_report;

/*
 * Runs model (quantized) on image_count images (dsr_tensor_elements(input) floats each, back
 * to back) in both modes with DSR_PLAN_KEEP_ALL, and fills report. slices: one per
 * deformable layer in node order, applied to both contexts, or NULL for the model's own.
 * Errors: DS_ERR_INVALID_ARGUMENT, DS_ERR_QUANT (model not quantized), DS_ERR_OUT_OF_MEMORY,
 * DS_ERR_SLICE_CONFIG and whatever dsr_plan reports. On failure report is zeroed.
 */
ds_status dsq_audit(const dsr_model *model, const float *images, int32_t image_count,
                    const dsr_slice *slices, dsq_audit_report *report, ds_error *err);

/* Name of a stage of dsq_stage_audit: "positions", "output", or dsq_stage_name's. */
const char *dsq_audit_stage_name(int32_t stage);

/* Frees the report's arrays and zeroes it. NULL is fine. */
void dsq_audit_report_free(dsq_audit_report *report);

/* Writes one line per tensor (index, name, dtype, SQNR, max error, cosine) and a summary. */
void dsq_audit_report_print(const dsq_audit_report *report, FILE *out);

#endif
