/*
 * Whole-model cost report: per layer and in total, the DRAM traffic, buffer needs, compute
 * cycles and time of every strategy the cost oracle compares, for `deformslice cost`.
 *
 * Strategies differ only in the deformable layers; dense layers cost their tiled schedule
 * (nas/dsn_dense.h) under every strategy except the lower bound.
 * - lower bound: compulsory traffic, each input, output and weight once;
 * - gather: the multi-pass dataflow with on-demand bilinear neighbour reads (analytic);
 * - cache: the gather reads through an on-chip cache; only available from a simulation of
 *   real sampling positions (dsn_cost_report_set_measured);
 * - whole map: one pass with x and q of the whole map on chip; the traffic of the lower bound
 *   and the buffer that needs, which may not fit (fits = 0);
 * - sliced: the chosen slice configuration of each deformable layer.
 * Time per layer is max(compute, DRAM time): double buffering overlaps the two, and a layer
 * is compute-bound or bandwidth-bound by the larger.
 */
#ifndef DSN_COST_H
#define DSN_COST_H

#include <stdint.h>
#include <stdio.h>

#include "common/ds_status.h"
#include "nas/dsn_layer.h"
#include "nas/dsn_measure.h" /* dsn_strategy, shared with the measured baselines */
#include "nas/dsn_oracle.h"
#include "nas/dsn_preset.h"

typedef enum dsn_bound {
  DSN_BOUND_COMPUTE = 0,
  DSN_BOUND_BANDWIDTH = 1,
} dsn_bound;

typedef struct dsn_strategy_cost {
  int32_t available;          /* 0: no figure (cache without a simulation) */
  int32_t measured;           /* 1: traffic from a simulation of sampling positions */
  dsn_traffic traffic;        /* time_ns filled: DRAM time */
  int64_t stall_cycles;       /* bank-conflict stalls from a simulation, else 0; measured
                                 compute_cycles already include them */
  int64_t buffer_bytes;       /* feature buffer need */
  int32_t fits;
  int64_t compute_cycles;
  double compute_ns;
  double time_ns;             /* max(compute_ns, traffic.time_ns), or the simulated time */
  int32_t bound;              /* dsn_bound */
} dsn_strategy_cost;

typedef struct dsn_cost_row {
  char name[DSR_NAME_BYTES];
  int32_t kind;               /* dsn_layer_kind */
  int32_t node;
  int32_t stage;
  char map[48];               /* dsn_layer_map_text */
  dsr_slice slice;            /* deformable layers */
  int32_t deform_index;       /* deformable layer index, or -1 */
  int64_t steps;              /* patches or tiles of the chosen schedule */
  int64_t weight_chunks;      /* dense layers: weight chunks, else 1 */
  int64_t weight_bytes;
  int64_t weight_count;
  dsn_strategy_cost strategies[DSN_STRATEGY_COUNT];
} dsn_cost_row;

typedef struct dsn_cost_totals {
  dsn_strategy_cost strategies[DSN_STRATEGY_COUNT];
} dsn_cost_totals;

typedef struct dsn_cost_report {
  dsn_preset preset;
  char source[160];           /* what the layers came from */
  char offsets[256];          /* where sampling positions came from, or "none" */
  int32_t row_count;
  dsn_cost_row *rows;         /* owned: dsn_cost_report_free */
  int32_t deform_count;
  int64_t weight_count;
  dsn_cost_totals model;      /* every layer */
  dsn_cost_totals deform;     /* deformable layers only */
  double oracle_seconds;      /* processor time of loading, slice choice and
                                 dsn_cost_report_build, set by the caller */
} dsn_cost_report;

/* Lower-case strategy name ("lower_bound", "gather", "cache", "whole_map", "sliced"), or
 * "unknown". */
const char *dsn_cost_strategy_name(int32_t strategy);

/*
 * For each deformable layer of list, the fitting slice configuration with the fewest DRAM
 * bursts (then row misses) among the unsliced map (1, 1, 0), which has no border to
 * overlap, and the sliced ones with an overlap of at least min_overlap pixels. The search's candidate list (up to 8 x 8 patches) is tried first. When nothing
 * there fits, configurations of up to 64 x 64 patches are. When still nothing fits, the
 * candidate with the smallest buffer is taken, and the report marks it as not fitting.
 * slices receives one entry per deformable layer.
 */
ds_status dsn_cost_auto_slices(const dsn_layer_list *list, const dsn_preset *preset,
                               int32_t min_overlap, dsr_slice *slices, ds_error *err);

/*
 * Prices every layer of list under preset. slices has one configuration per deformable
 * layer (NULL: each layer's own). On success report owns its rows (dsn_cost_report_free).
 * Errors: DS_ERR_SLICE_CONFIG for a configuration that does not fit its layer (naming the
 * layer), DS_ERR_INVALID_ARGUMENT for a layer the oracle cannot price.
 */
ds_status dsn_cost_report_build(const dsn_layer_list *list, const dsr_slice *slices,
                                const dsn_preset *preset, dsn_cost_report *report,
                                ds_error *err);

void dsn_cost_report_free(dsn_cost_report *report);

/*
 * Replaces the figure of strategy for row (a deformable layer) with a measurement of the
 * modelled DRAM and on-chip memories (nas/dsn_measure.h): traffic, DRAM busy time, compute
 * cycles with bank-conflict stalls, the layer's time and bound, buffer need and fit. Marks
 * it measured and recomputes the totals.
 */
void dsn_cost_report_set_measured(dsn_cost_report *report, int32_t row, int32_t strategy,
                                  const dsn_measured *measured);

/* Recomputes the totals from the rows. */
void dsn_cost_report_total(dsn_cost_report *report);

/* Prints the per-layer table, the totals per strategy and the sliced ratios. */
void dsn_cost_report_print(const dsn_cost_report *report, FILE *out);

/* Prints the header, the totals per strategy and the sliced ratios, without the layers. */
void dsn_cost_report_print_summary(const dsn_cost_report *report, FILE *out);

/* Returns the report as JSON text (caller frees with free()), or NULL without memory. */
char *dsn_cost_report_json(const dsn_cost_report *report);

/* Returns the report as CSV text, one line per layer and strategy plus total lines (caller
 * frees with free()), or NULL without memory. */
char *dsn_cost_report_csv(const dsn_cost_report *report);

#endif
