/*
 * Offset model: a per-stage statistical description of the sampling offsets a trained DAT++
 * predicts, measured on the bundled model and used to generate sampling positions for large
 * models without trained weights ("synthetic offsets (offset model)" in every output).
 *
 * Units. Offsets are kept in half-extent units, the frame the layer predicts them in: an
 * offset o moves a sample by o * (side - 1) / 2 pixels along an axis of side pixels (the
 * align_corners=1 convention of the runtime). A model fitted on 16x16 maps thus spreads
 * samples over the same fraction of a 200x334 map. docs/hardware-model.md gives the
 * derivation, the measured figures and the limits of this choice.
 *
 * The model: per stage, dy and dx independent normal distributions with the measured means
 * and standard deviations. Positions are the layer's reference points (its convention) plus
 * the offsets, clamped into the map for DAT++; DAT offsets are first bounded to
 * factor / Hk half-extent units, as tanh bounds them in the layer.
 */
#ifndef DSN_OFFSET_MODEL_H
#define DSN_OFFSET_MODEL_H

#include <stdint.h>

#include "common/ds_status.h"
#include "runtime/dsr_model.h"

#define DSN_OFFSET_MAX_STAGES 4
#define DSN_OFFSET_LABEL "synthetic offsets (offset model)"

typedef struct dsn_offset_stage {
  int32_t layer_count;        /* deformable layers of the stage that were measured */
  int32_t map_height;         /* their map */
  int32_t map_width;
  int64_t sample_count;       /* offsets measured: grid points x groups x images x layers */
  double mean_y, mean_x;      /* half-extent units */
  double sd_y, sd_x;
  double mean_magnitude_pixels; /* mean |(dy, dx)| in pixels of the measured map */
  double clamped_fraction;    /* share of positions that the DAT++ clamp moved */
} dsn_offset_stage;

typedef struct dsn_offset_model {
  char source[160];           /* model and data the fit came from */
  int32_t image_count;
  int32_t stage_count;
  dsn_offset_stage stages[DSN_OFFSET_MAX_STAGES];
} dsn_offset_model;

/* Running sums of a measurement in one stage. */
typedef struct dsn_offset_sums {
  int32_t map_height, map_width;
  uint64_t layers_seen;       /* bit i: deformable layer i contributed */
  int64_t count;
  double sum_y, sum_x, square_y, square_x, magnitude, clamped;
} dsn_offset_sums;

typedef struct dsn_offset_stats {
  int32_t stage_count;
  dsn_offset_sums stages[DSN_OFFSET_MAX_STAGES];
} dsn_offset_stats;

/*
 * Stage of each deformable layer of model: the rank of its map height among the distinct
 * deformable map heights, largest first (so stage 0 is the largest map). stages receives one
 * entry per deformable layer; returns the stage count (at most DSN_OFFSET_MAX_STAGES, more
 * map sizes share the last stage).
 */
int32_t dsn_offset_layer_stages(const dsr_model *model, int32_t *stages);

/*
 * Adds the raw offsets of one unsliced deformable layer, deformable layer index layer_index
 * (the DSR_DEFORM_STAGE_OFFSET values of the runtime observer: groups x 2 x Hk x Wk, dy plane
 * then dx plane per group). Values of another count are ignored.
 */
void dsn_offset_stats_add(dsn_offset_stats *stats, const dsr_deform_attn *layer,
                          int32_t layer_index, int32_t stage, const float *raw, int64_t count);

/* Turns the sums into a model. */
void dsn_offset_stats_fit(const dsn_offset_stats *stats, const char *source,
                          int32_t image_count, dsn_offset_model *model);

/* Returns the model as JSON text (free() it), or NULL without memory. */
char *dsn_offset_model_json(const dsn_offset_model *model);

/* Reads a model written by dsn_offset_model_json. DS_ERR_DATA names the file and the field
 * that is missing or out of range. */
ds_status dsn_offset_model_load(const char *path, dsn_offset_model *model, ds_error *err);

/*
 * Generates the unsliced sampling positions of layer, in pixels of its map, from the
 * distribution of stage (clipped to the model's last stage): y and x receive
 * groups * Hk * Wk values, group-major then grid row-major. seed makes the draw
 * reproducible.
 */
void dsn_offset_model_positions(const dsn_offset_model *model, const dsr_deform_attn *layer,
                                int32_t stage, uint64_t seed, float *y, float *x);

/*
 * Generates the sampling positions of one extended patch of layer, in pixels of the patch.
 * The patch has its own offset grid (grid_h x grid_w, from its size) and reference points.
 * Offsets keep the full map's pixel scale under physical semantics and the patch's under crop
 * semantics, and positions are clamped into the patch. y and x receive
 * groups * grid_h * grid_w values, group-major.
 */
void dsn_offset_model_patch_positions(const dsn_offset_model *model, const dsr_deform_attn *layer,
                                      int32_t stage, int32_t semantics, int32_t patch_h,
                                      int32_t patch_w, uint64_t seed, float *y, float *x);

#endif
