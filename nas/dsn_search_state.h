/*
 * State shared by the parts of the slice search (internal to nas/): the driver in
 * dsn_search.c, evaluation and the archive in dsn_evaluate.c, NSGA-II and enumeration in
 * dsn_nsga2.c. A genome is one candidate index per deformable layer.
 */
#ifndef DSN_SEARCH_STATE_H
#define DSN_SEARCH_STATE_H

#include <stdint.h>

#include "common/ds_status.h"
#include "nas/dsn_journal.h"
#include "nas/dsn_oracle.h"
#include "nas/dsn_search.h"

#define DSN_MAX_THREADS 256

typedef struct search_state {
  const dsn_preset *preset;
  const dsn_search_options *options;
  int32_t layer_count;
  dsn_candidates *candidates;  /* one list per layer */
  dsn_journal journal;
  double reference_accuracy;
  int32_t evaluations;
  int32_t journal_hits;

  /* Archive: every genome visited in this run, in visiting order. */
  int32_t archive_count;
  int32_t archive_capacity;
  int32_t *archive_genes;
  double *archive_accuracy;
  int32_t set_capacity;        /* power of two */
  int32_t *set;                /* archive index per slot, -1 when empty */
} search_state;

/* Writes the slice configuration of genes into slices (layer_count entries). */
void dsn_genome_slices(const search_state *s, const int32_t *genes, dsr_slice *slices);

/* Sliced DRAM bus bytes of the model under genes. */
int64_t dsn_genome_bus_bytes(const search_state *s, const int32_t *genes);

/* Archive index of genes, or -1 when this run has not visited it. */
int32_t dsn_archive_find(search_state *s, const int32_t *genes);

/* Excess accuracy drop over options.max_accuracy_drop; 0 when feasible or without a limit. */
double dsn_drop_violation(const search_state *s, double accuracy);

/*
 * Finds the accuracy of count configurations: from the journal when recorded, else through
 * the callback on options.threads threads. keys[i] names configs[i].
 */
ds_status dsn_evaluate_configs(search_state *s, int32_t count, const dsr_slice *configs,
                               char **keys, const int64_t *dram_bytes, double *accuracy,
                               ds_error *err);

/* Evaluates count genomes (through the journal where possible) and adds them to the
 * archive; accuracy receives one value per genome. */
ds_status dsn_evaluate_genomes(search_state *s, int32_t count, const int32_t *genes,
                               double *accuracy, ds_error *err);

/* Runs NSGA-II from options.seed; every genome it meets lands in the archive. */
ds_status dsn_run_nsga2(search_state *s, ds_error *err);

/* Evaluates all space genomes (the product of the candidate counts). */
ds_status dsn_run_exhaustive(search_state *s, int64_t space, ds_error *err);

#endif
