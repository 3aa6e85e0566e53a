/* `deformslice cost --simulate`: measured gather, cache, whole-map and sliced figures of the
 * deformable layers from sampling positions, on the modelled DRAM of nas/dsn_measure.h. */
#ifndef DST_COST_SIMULATE_H
#define DST_COST_SIMULATE_H

#include "common/ds_status.h"
#include "nas/dsn_cost.h"
#include "tools/lib/dst_cost.h"

typedef struct dst_simulate_options {
  const char *data_dir;          /* Fashion-MNIST folder for single-channel models */
  const char *input_f32;         /* raw float32 NCHW input for other models, or NULL */
  const char *offset_model_path; /* NULL: models/offset_model.json of the source tree */
  const char *ramulator_trace;   /* NULL: no trace */
  const char *dramsim_trace;
  int32_t trace_strategy;        /* dsn_strategy of the traced requests */
} dst_simulate_options;

/*
 * Measures every deformable layer of input under preset and replaces the report's figures
 * of those rows (every strategy) with the measured ones, and sets report->offsets to where the
 * positions came from. A model with weights gives its own positions, from one float run on
 * input_f32 or on the first Fashion-MNIST validation image. Otherwise the offset model
 * generates them, labelled "synthetic offsets (offset model)".
 */
ds_status dst_cost_simulate(const dst_cost_input *input, const dsn_preset *preset,
                            const dst_simulate_options *options, dsn_cost_report *report,
                            ds_error *err);

#endif
