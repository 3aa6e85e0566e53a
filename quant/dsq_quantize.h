/*
 * Quantization of a float dsr_model to the fixed-point arithmetic of docs/fixed-point.md.
 *
 * dsq_quantize fills, in place: every activation's qparams (int8 asymmetric by default, int16
 * symmetric where dsq_options selects it), every weight's int8 data_q with per-output-channel
 * scales, every bias as int32 at scale input_scale * weight_scale, other constants as int16,
 * every node's qwords (quant/dsq_params.h) and every deformable layer's stage_qparams, then
 * sets model->quantized. Float data stays, so the same model runs in both modes.
 *
 * Ownership: data_q, channel_scales and qwords are heap blocks owned by the model (freed by
 * ds_model_free). Quantizing again replaces them. Thread safety: dsq_quantize writes the
 * model, so no context may use it meanwhile.
 */
#ifndef DSQ_QUANTIZE_H
#define DSQ_QUANTIZE_H

#include <stdint.h>

#include "../common/ds_status.h"
#include "../runtime/dsr_model.h"
#include "dsq_calibration.h"

/* Tensors that get int16 (symmetric) instead of int8 (asymmetric), as dsq_options.int16. */
#define DSQ_INT16_LOGITS 0x01u      /* softmax inputs, the operands of an ADD or SUB producing
                                       one, and the LOGITS stage of deformable layers */
#define DSQ_INT16_RESIDUAL 0x02u    /* ADD and SUB outputs that feed an ADD, SUB or LayerNorm */
#define DSQ_INT16_NORM_INPUT 0x04u  /* LayerNorm inputs, and the OFFSET_DW stage */
#define DSQ_INT16_OFFSETS 0x08u     /* the OFFSET stage (raw offsets) of deformable layers */
#define DSQ_INT16_ATTENTION 0x10u   /* softmax outputs and the ATTN stage */
#define DSQ_INT16_OUTPUT 0x20u      /* the model output (logits: fewer argmax ties) */
#define DSQ_INT16_ALL_ACTIVATIONS 0x40u /* every activation: an accuracy reference point */
#define DSQ_INT16_NORM_OUTPUT 0x80u /* LayerNorm outputs and the OFFSET_LN stage: for trained
                                       transformers whose gamma gives a few channels outliers
                                       that would set the int8 scale of all the others */

#define DSQ_INT16_DEFAULT                                                                 \
  (DSQ_INT16_LOGITS | DSQ_INT16_RESIDUAL | DSQ_INT16_NORM_INPUT | DSQ_INT16_OFFSETS |    \
   DSQ_INT16_OUTPUT)

/* Per-tensor and per-stage choice of dsq_options.tensor_precision and stage_precision. */
typedef enum dsq_precision {
  DSQ_PRECISION_BY_CLASS = 0, /* as the DSQ_INT16_* flags decide */
  DSQ_PRECISION_INT8 = 1,
  DSQ_PRECISION_INT16 = 2,
} dsq_precision;

typedef struct dsq_options {
  uint32_t int16;     /* DSQ_INT16_* flags */
  /*
   * Optional per-activation overrides of the flags, dsq_precision values indexed by tensor
   * (model->tensor_count entries), or NULL. TRANSPOSE, RESHAPE and GATHER give their input
   * and output one qparams, so one alias group takes one type: int16 when any member says
   * INT16, else int8 when any member says INT8, else the flags decide. Entries of constants
   * are ignored. Softmax outputs stay fixed-scale (int8 2^-8 or int16 2^-15).
   */
  const uint8_t *tensor_precision;
  /*
   * Optional per-stage overrides of the deformable layers, dsq_precision values indexed by
   * node_index * DSR_DEFORM_STAGE_COUNT + stage, or NULL. SAMPLED always shares the layer
   * input's qparams and BIAS is int16 for reports only, so their entries are ignored.
   */
  const uint8_t *stage_precision;
} dsq_options;

/* The defaults: int16 = DSQ_INT16_DEFAULT, no overrides. */
dsq_options dsq_options_default(void);

/*
 * Quantizes model with the ranges of calib (made for this model). options may be NULL for
 * the defaults. Deterministic: the same model, calibration and options give the same bytes.
 * On failure every fixed-point field is cleared again and model->quantized is 0.
 * Errors: DS_ERR_INVALID_ARGUMENT (calibration of another model), DS_ERR_QUANT (a tensor
 * never observed, a non-finite range, a multiplier out of range, a constant in two
 * incompatible roles), DS_ERR_UNSUPPORTED_OP, DS_ERR_SHAPE, DS_ERR_OUT_OF_MEMORY.
 */
ds_status dsq_quantize(dsr_model *model, const dsq_calibration *calib, const dsq_options *options,
                       ds_error *err);

/*
 * Removes every fixed-point field the quantizer sets (qparams of activations and constants,
 * data_q, channel_scales, qwords, stage_qparams) and clears model->quantized. Integer gather
 * indices (I32 or I64 data_q of a GATHER's second input) are kept.
 */
void dsq_clear(dsr_model *model);

/*
 * Splits a real factor into a requant pair (quant/dsq_params.h): multiplier with magnitude
 * in [2^30, 2^31) and the sign of real, and shift, so that real = multiplier * 2^(shift - 31)
 * to within 2^-31 relative. Factors below 2^-32 become (0, 0): they round every int32 to 0.
 * wide selects the 64-bit accumulator limit on shift. Returns 0 when real is not finite or
 * too large (shift above DSQ_SHIFT_MAX, or DSQ_SHIFT_MAX_WIDE when wide).
 */
int dsq_quantize_multiplier(double real, int wide, int32_t *multiplier, int32_t *shift);

/* Affine int8 qparams covering [min, max] (widened to include 0). */
dsr_qparams dsq_qparams_int8(float min, float max);

/* Symmetric int16 qparams covering [-bound, bound]. */
dsr_qparams dsq_qparams_int16(float bound);

#endif
