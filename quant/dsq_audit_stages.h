/*
 * Per-stage comparison inside the deformable layers for dsq_audit: records the float stage
 * values of one image (through dsr_observer and the float probe), then compares the
 * fixed-point probe reports against them element by element. Internal to quant/.
 */
#ifndef DSQ_AUDIT_STAGES_H
#define DSQ_AUDIT_STAGES_H

#include <stdint.h>

#include "../common/ds_status.h"
#include "../runtime/dsr_runtime.h"
#include "dsq_audit.h"

typedef struct stage_slot stage_slot;

typedef struct dsq_stage_recorder {
  const dsr_model *model;
  int32_t slot_count;        /* node_count * DSR_PROBE_STAGE_COUNT */
  stage_slot *slots;
  int failed;                /* an allocation failed while recording */
  dsr_observer float_observer;
  dsr_probe float_probe;
  dsr_probe fixed_probe;
} dsq_stage_recorder;

ds_status dsq_stage_recorder_init(dsq_stage_recorder *rec, const dsr_model *model,
                                  ds_error *err);

/* Forgets the float values of the previous image (keeps the statistics). */
void dsq_stage_recorder_next_image(dsq_stage_recorder *rec);

/* Fills the report's stage entries (allocated here) from the statistics. */
ds_status dsq_stage_recorder_finish(const dsq_stage_recorder *rec, dsq_audit_report *report,
                                    ds_error *err);

void dsq_stage_recorder_free(dsq_stage_recorder *rec);

#endif
