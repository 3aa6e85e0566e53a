/*
 * Search of the slice configuration of every deformable layer: NSGA-II over one candidate
 * (dsn_candidates_build) per layer, or exhaustive enumeration when the space is small.
 *
 * Objectives: maximize the validation top-1 accuracy that the caller's evaluate callback
 * returns, and minimize the model's sliced DRAM bus bytes from the cost oracle (bursts times
 * burst bytes, summed over the deformable layers). Constraints: every layer's extended patch
 * fits the feature buffer (candidates that do not fit are never generated), and optionally a
 * maximum accuracy drop against the unsliced model. Infeasible configurations never enter
 * the front; NSGA-II ranks them after every feasible one by their excess drop.
 *
 * Journal: every evaluation is appended to options.journal_path as one JSON object per line,
 *   {"key":"2x2+1,1x1+0","accuracy":91.5,"dram_bytes":123456,"tag":"..."}
 * written, flushed and fsynced before the search goes on. A rerun with the same journal takes
 * the recorded accuracy of every configuration it meets instead of evaluating it again. An
 * unterminated last line (a run killed while writing) is skipped with a warning and cut off
 * the file; any other malformed line is DS_ERR_JOURNAL naming its line number. A journal
 * belongs to one model and one validation set: set journal_tag to something that identifies
 * them and a journal written under another tag is rejected.
 *
 * Determinism: for a given seed, model, preset and evaluate function the visited
 * configurations, the journal's records and the front do not depend on the thread count
 * (only the order of journal lines may differ).
 */
#ifndef DSN_SEARCH_H
#define DSN_SEARCH_H

#include <stdint.h>

#include "common/ds_status.h"
#include "nas/dsn_preset.h"
#include "runtime/dsr_model.h"

/*
 * Accuracy callback: returns the top-1 accuracy in percent of the model run with slices
 * (one per deformable layer, node order). Called from several threads at once when
 * options.threads > 1, so it must be thread-safe. It reports a failure by writing err (via
 * ds_fail); a non-finite return is also a failure.
 */
typedef double (*dsn_evaluate_fn)(void *user, const dsr_slice *slices, int32_t layer_count,
                                  ds_error *err);

typedef struct dsn_search_options {
  uint64_t seed;
  int32_t population;           /* NSGA-II population size, 4 or more */
  int32_t generations;          /* offspring generations after the first */
  double crossover_probability; /* chance that a pair of parents is crossed, 0..1 */
  double mutation_probability;  /* per gene; 0 or less selects 1 / layer count */
  int64_t exhaustive_budget;    /* enumerate every configuration when there are this few */
  int32_t threads;              /* evaluation threads, 1 or more */
  double max_accuracy_drop;     /* percentage points against unsliced; negative: no limit */
  uint32_t semantics_mask;      /* DSN_SEMANTICS_* of the candidates; 0: physical only */
  const char *journal_path;     /* NULL: no journal */
  const char *journal_tag;      /* NULL or "": journal lines are not checked for a tag */

  dsn_evaluate_fn evaluate;     /* validation accuracy, required */
  void *evaluate_user;
  /* Optional test-set accuracy: called only for the reference and the front points, after
   * the search, so the test set never steers it. */
  dsn_evaluate_fn evaluate_test;
  void *evaluate_test_user;

  /* Warnings (such as a torn journal line); NULL writes them to stderr. */
  void (*log)(void *user, const char *message);
  void *log_user;
} dsn_search_options;

typedef struct dsn_front_point {
  dsr_slice *slices;            /* layer_count entries, owned by the result */
  double accuracy;              /* validation top-1, percent */
  double test_accuracy;         /* NAN without evaluate_test */
  int64_t dram_bytes;           /* sliced bus bytes of the model */
  int64_t dram_payload_bytes;   /* sliced bytes moved, before rounding to bursts */
  double dram_time_ns;
  int64_t buffer_bytes;         /* largest feature buffer need over the layers */
} dsn_front_point;

typedef struct dsn_search_result {
  int32_t layer_count;
  int32_t point_count;
  dsn_front_point *points;      /* by accuracy descending, then dram_bytes ascending */
  double reference_accuracy;    /* every layer (1, 1, 0): the unsliced model */
  double reference_test_accuracy; /* NAN without evaluate_test */
  int32_t reference_fits;       /* 1 when the unsliced model fits the feature buffer */
  int64_t gather_bytes;         /* bus bytes of the gather dataflow, whole model */
  int64_t lower_bound_bytes;    /* bus bytes of the compulsory traffic, whole model */
  int64_t unsliced_bytes;       /* bus bytes of the sliced dataflow at (1, 1, 0) */
  int32_t exhaustive;           /* 1 when every configuration was enumerated */
  int64_t space_size;           /* configurations in the search space (capped at INT64_MAX) */
  int32_t evaluations;          /* callback calls in this run */
  int32_t journal_hits;         /* configurations answered from the journal */
  int32_t journal_skipped_lines;
  char preset_name[DSN_PRESET_NAME_BYTES];
} dsn_search_result;

/* Fills options with the defaults: seed 1, population 32, 30 generations, crossover 0.9,
 * mutation 1 / layers, exhaustive budget 256, one thread, no drop limit, physical only. */
void dsn_search_options_default(dsn_search_options *options);

/*
 * Runs the search. Errors: DS_ERR_INVALID_ARGUMENT for bad options or a model without
 * deformable layers, DS_ERR_SLICE_CONFIG when some layer has no configuration that fits the
 * feature buffer, DS_ERR_JOURNAL, DS_ERR_IO, and whatever the evaluate callback reports. On
 * success result owns its arrays (dsn_search_result_free).
 */
ds_status dsn_search_run(const dsr_model *model, const dsn_preset *preset,
                         const dsn_search_options *options, dsn_search_result *result,
                         ds_error *err);

void dsn_search_result_free(dsn_search_result *result);

/* Writes the configuration of slices as the journal key: dsn_slice_format per layer, joined
 * by ",". Returns a heap string (free it) or NULL when out of memory. */
char *dsn_config_key(const dsr_slice *slices, int32_t layer_count);

#endif
