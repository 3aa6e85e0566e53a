/*
 * Fixed-point CONCAT and PAD (dsr_fixed_layout.c). Both only move elements: PAD writes the
 * quantized pad value around its input, and CONCAT copies each input, requantizing the ones
 * whose qparams differ from the output's. Qword layouts are in quant/dsq_params.h.
 */
#ifndef DSR_FIXED_LAYOUT_H
#define DSR_FIXED_LAYOUT_H

#include "common/ds_status.h"
#include "dsr_model.h"

/* Checks node's qparams and qwords (dsr_plan checks the shapes in every mode); fails naming
 * the node and the fix. */
ds_status dsr_fixed_layout_check(const dsr_model *model, const dsr_node *node, ds_error *err);

/* Run a node that dsr_fixed_layout_check accepted; they allocate nothing. */
void dsr_fixed_concat(const dsr_model *model, const dsr_node *node,
                      const void *const *inputs, void *output);
void dsr_fixed_pad(const dsr_model *model, const dsr_node *node, const void *input,
                   void *output);

#endif
