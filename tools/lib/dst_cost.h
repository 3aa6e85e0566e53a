/* Inputs of `deformslice cost` and the cost benchmark: the layers to price, from an ONNX
 * model, an artifact or an architecture description, and the slice configurations. */
#ifndef DST_COST_H
#define DST_COST_H

#include <stdint.h>
#include <stdio.h>

#include "common/ds_status.h"
#include "nas/dsn_cost.h"
#include "nas/dsn_layer.h"
#include "nas/dsn_preset.h"
#include "runtime/dsr_model.h"

typedef enum dst_cost_source {
  DST_COST_ONNX = 0,
  DST_COST_ARTIFACT = 1,
  DST_COST_ARCH = 2,
} dst_cost_source;

typedef struct dst_cost_input {
  int32_t source;             /* dst_cost_source */
  dsr_model model;            /* ONNX and artifact inputs; zeroed for a description */
  dsn_layer_list layers;
  int32_t deform_count;
  dsr_slice *slices;          /* one per deformable layer, after dst_cost_choose_slices */
  dsr_schedule stored;        /* an artifact's own DMA schedule; empty otherwise */
  char stored_preset[64];     /* the preset named in the artifact's manifest, or "" */
} dst_cost_input;

/*
 * Loads what: the path of an artifact (by its magic number) or an ONNX model, or the name of
 * a described architecture ("dat-t", "dat-t++"; see nas/dsn_arch.h). input_shape (NULL for
 * the model's own) is "NxCxHxW" for ONNX, "HxW" or "1x3xHxW" for a description (default
 * 224x224); an artifact keeps the shape it was built for. A model without deformable layers
 * is rejected: the command compares strategies of those layers.
 */
ds_status dst_cost_load(const char *what, const char *input_shape, const dsn_preset *preset,
                        dst_cost_input *input, ds_error *err);

/*
 * Sets input->slices from text: "auto" (the fitting configuration with the least traffic
 * per layer), "auto+O" (the same among configurations with an overlap of at least O pixels), "own" (each layer's own: the artifact's search result, or unsliced), one
 * configuration "RxC+O" (a "c" suffix for crop semantics) for every layer, or a
 * comma-separated list with one per deformable layer. NULL means "own" for an artifact and
 * "auto" otherwise.
 */
ds_status dst_cost_choose_slices(dst_cost_input *input, const char *text,
                                 const dsn_preset *preset, ds_error *err);

void dst_cost_input_free(dst_cost_input *input);

/*
 * Compares an artifact's stored DMA schedule with report, layer by layer: the DRAM bytes of
 * each node's stored steps against the report's chosen schedule. Prints one line to out: the
 * agreement, the layers that differ (the first named), or that the schedule was built for
 * another preset. Prints nothing for other inputs.
 */
void dst_cost_check_stored(const dst_cost_input *input, const dsn_cost_report *report,
                           FILE *out);

#endif
