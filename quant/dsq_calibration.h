/*
 * Calibration: the value ranges of every activation and of every internal stage of each
 * deformable layer, observed while the float runtime runs on calibration images.
 *
 * Use:
 *   dsq_calibration calib;
 *   dsq_calibration_init(&calib, model, DSQ_CALIBRATION_MINMAX, &err);
 *   dsq_calibration_run(&calib, model, images, image_count, &err);  // or install
 *                                              // dsq_calibration_observer on your own context
 *   dsq_quantize(model, &calib, NULL, &err);
 *   dsq_calibration_free(&calib);
 *
 * Ownership: the calibration owns its arrays (freed by dsq_calibration_free). It keeps no
 * pointer to the model. Thread safety: one calibration per thread; combine them with
 * dsq_calibration_merge.
 */
#ifndef DSQ_CALIBRATION_H
#define DSQ_CALIBRATION_H

#include <stdint.h>

#include "../common/ds_status.h"
#include "../runtime/dsr_runtime.h"
#include "dsq_entropy.h"

/* How observed values become a range. */
typedef enum dsq_calibration_method {
  DSQ_CALIBRATION_MINMAX = 0,     /* the smallest and largest value seen */
  DSQ_CALIBRATION_PERCENTILE = 1, /* clips (100 - percentile)% of the values at each end */
  DSQ_CALIBRATION_MSE = 2,        /* the range of least estimated squared error: clipping
                                     plus rounding noise, from the histograms */
  DSQ_CALIBRATION_KL = 3,         /* the clipping threshold of least KL divergence between the
                                     observed and the quantized distribution (dsq_entropy.h) */
  DSQ_CALIBRATION_METHOD_COUNT = 4
} dsq_calibration_method;

/*
 * Histogram of one tensor for the percentile and MSE methods: bins on a signed log2 scale, so that
 * ranges need not be known in advance and histograms of separate runs add up. Magnitudes
 * from 2^-24 to 2^24 have DSQ_HISTOGRAM_STEPS bins per octave (edges 6.25% apart at most);
 * smaller magnitudes share the middle bin and larger ones the outermost bins. Bin 0 is the
 * most negative, bin DSQ_HISTOGRAM_BINS - 1 the most positive.
 */
#define DSQ_HISTOGRAM_OCTAVES 48
#define DSQ_HISTOGRAM_STEPS 16
#define DSQ_HISTOGRAM_SIDE_BINS (DSQ_HISTOGRAM_OCTAVES * DSQ_HISTOGRAM_STEPS)
#define DSQ_HISTOGRAM_BINS (2 * DSQ_HISTOGRAM_SIDE_BINS + 1)
#define DSQ_PERCENTILE_DEFAULT 99.99

/* Range of one tensor or stage. count == 0 means it was never observed. */
typedef struct dsq_range {
  float min;
  float max;
  int64_t count;           /* finite values observed */
  int64_t nonfinite_count; /* NaN and infinite values, skipped */
} dsq_range;

typedef struct dsq_calibration {
  dsq_calibration_method method;
  double percentile;     /* PERCENTILE only: kept share of values, in (50, 100]; the default
                            DSQ_PERCENTILE_DEFAULT */
  int32_t tensor_count;  /* of the model it was made for */
  int32_t node_count;
  dsq_range *tensors;    /* tensor_count ranges, by tensor index */
  dsq_range *stages;     /* node_count * DSR_DEFORM_STAGE_COUNT; used for DEFORM_ATTN nodes */
  uint64_t *histograms;  /* PERCENTILE and MSE (else NULL): DSQ_HISTOGRAM_BINS counts per tensor,
                            then per stage, in the order of tensors and stages */
  int32_t image_count;   /* images run by dsq_calibration_run */
  int32_t kl_bins;       /* KL only: bins of each linear histogram */
  dsq_kl_histogram *kl_histograms; /* KL (else NULL): one per tensor, then per stage */
  uint64_t *kl_counts;   /* KL: the bins of every kl_histograms entry, one block */
} dsq_calibration;

/* Method and parameters for dsq_calibration_init_options. */
typedef struct dsq_calibration_options {
  dsq_calibration_method method;
  double percentile;   /* PERCENTILE: kept share of values, in (50, 100] */
  int32_t kl_bins;     /* KL: histogram bins, even, DSQ_KL_BINS_MIN..DSQ_KL_BINS_MAX */
} dsq_calibration_options;

/* Returns "minmax", "percentile", "mse" or "kl"; "unknown" when out of range. */
const char *dsq_calibration_method_name(dsq_calibration_method method);

/* Parses a name that dsq_calibration_method_name returns; returns 0 for any other name. */
int dsq_calibration_method_parse(const char *name, dsq_calibration_method *method);

/* The defaults for method: DSQ_PERCENTILE_DEFAULT and DSQ_KL_BINS_DEFAULT. */
dsq_calibration_options dsq_calibration_options_default(dsq_calibration_method method);

/*
 * Allocates empty ranges (and histograms for the percentile, MSE and KL methods) for model,
 * with the default parameters of method. Rejects an unknown method with
 * DS_ERR_INVALID_ARGUMENT. On failure calib is zeroed.
 */
ds_status dsq_calibration_init(dsq_calibration *calib, const dsr_model *model,
                               dsq_calibration_method method, ds_error *err);

/* Same as dsq_calibration_init with explicit parameters. Rejects a percentile outside
 * (50, 100] or a bin count that is odd or outside DSQ_KL_BINS_MIN..DSQ_KL_BINS_MAX. */
ds_status dsq_calibration_init_options(dsq_calibration *calib, const dsr_model *model,
                                       const dsq_calibration_options *options, ds_error *err);

/* Frees the arrays and zeroes calib. NULL and a zeroed calibration are fine. */
void dsq_calibration_free(dsq_calibration *calib);

/* Adds count values of tensor_index to its range. Out-of-range indices are ignored. */
void dsq_calibration_observe_tensor(dsq_calibration *calib, int32_t tensor_index,
                                    const float *values, int64_t count);

/* Adds count values of one stage of the DEFORM_ATTN node node_index. */
void dsq_calibration_observe_stage(dsq_calibration *calib, int32_t node_index, int32_t stage,
                                   const float *values, int64_t count);

/* An observer for dsr_context_set_observer that feeds calib. The model input is not a node
 * output: callers running their own contexts observe it with dsq_calibration_observe_tensor. */
dsr_observer dsq_calibration_observer(dsq_calibration *calib);

/*
 * Runs model in float mode on image_count images (each dsr_tensor_elements(input) floats,
 * back to back), observing the input, every activation and every deformable stage. Allocates
 * and frees its own arena. Errors: DS_ERR_INVALID_ARGUMENT (a calibration made for another
 * model, no images), DS_ERR_OUT_OF_MEMORY, and whatever dsr_plan reports.
 */
ds_status dsq_calibration_run(dsq_calibration *calib, const dsr_model *model,
                              const float *images, int32_t image_count, ds_error *err);

/*
 * Same as dsq_calibration_run, repeated for each of config_count slice configurations: each
 * configuration is applied to every deformable layer whose map it fits (the others run
 * unsliced). Small patches have fewer samples per query, so stage ranges such as the
 * attention context grow under slicing: calibrate over the configurations a search will
 * evaluate, or the fixed-point model saturates there.
 */
ds_status dsq_calibration_run_slices(dsq_calibration *calib, const dsr_model *model,
                                     const float *images, int32_t image_count,
                                     const dsr_slice *configs, int32_t config_count,
                                     ds_error *err);

/*
 * Computes the range the quantizer uses for a tensor (stage < 0) or for stage of the
 * DEFORM_ATTN node node_or_tensor. levels is the number of quantization steps of the target
 * type (255 for int8, 65535 for int16), or 0 to forbid clipping. With levels 0 or the min/max
 * method, the range is the observed min and max; otherwise it is the percentile, MSE or KL
 * range within them. Errors: DS_ERR_QUANT when the tensor was never observed or its range is not
 * finite, DS_ERR_INVALID_ARGUMENT for an index or percentile out of range.
 */
ds_status dsq_calibration_range(const dsq_calibration *calib, int32_t node_or_tensor,
                                int32_t stage, int32_t levels, float *min, float *max,
                                ds_error *err);

/* Widens into's ranges by from's (same model, method and KL bins), for per-thread
 * calibrations. Histograms add up, so the result does not depend on how images were split. */
ds_status dsq_calibration_merge(dsq_calibration *into, const dsq_calibration *from,
                                ds_error *err);

#endif
