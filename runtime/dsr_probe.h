/*
 * Stage probe: lets an audit read the internal stages of DEFORM_ATTN layers, so the float and
 * fixed-point values of each stage can be compared element by element.
 *
 * Install one with dsr_context_set_probe. In fixed mode, every deformable layer then runs its
 * reference kernel (the same values as the fast one) and reports each stage of each patch as
 * it is computed; in float mode only the sampling positions are reported (the other float
 * stages reach dsr_observer.on_deform_stage). Reports arrive in patch order, and within a
 * patch in stage order. The probe's callback must not call back into the runtime.
 *
 * Element order of a stage's values within one patch (the order of the float observer's
 * arrays): Q is C x H x W over the whole map (reported once per node, patch 0); OFFSET_DW,
 * OFFSET_LN, OFFSET_GELU, SAMPLED, K and V are C x N (channel-major, N = Hk x Wk samples of
 * the patch); OFFSET and DSR_PROBE_POSITIONS are groups x 2 x N ((dy, dx) or (y, x));
 * LOGITS and ATTN are heads x P x N (P core pixels of the patch in row-major order); CONTEXT
 * is C x P.
 */
#ifndef DSR_PROBE_H
#define DSR_PROBE_H

#include <stdint.h>

#include "dsr_model.h"

/* Stage number of the sampling positions (pixels of the extended patch; Q8 in fixed mode). */
#define DSR_PROBE_POSITIONS DSR_DEFORM_STAGE_COUNT
#define DSR_PROBE_STAGE_COUNT (DSR_DEFORM_STAGE_COUNT + 1)

typedef struct dsr_probe_report {
  int32_t node_index;
  int32_t stage;          /* dsr_deform_stage, or DSR_PROBE_POSITIONS */
  int32_t patch_index;    /* row * cols + col of the slice configuration; 0 for Q */
  int64_t first;          /* values[k] is element first + k * stride of the stage's patch */
  int64_t stride;         /* array in the order above */
  int64_t count;
  const float *values_f32;  /* float mode, else NULL */
  const int32_t *values_q;  /* fixed mode: integers in the stage's qparams (the layer input's
                               for SAMPLED), positions in Q8 pixels; else NULL */
} dsr_probe_report;

typedef struct dsr_probe {
  void (*on_report)(void *user, const dsr_probe_report *report);
  void *user;
} dsr_probe;

#endif
