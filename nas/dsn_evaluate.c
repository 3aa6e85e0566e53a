#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nas/dsn_search_state.h"

void dsn_genome_slices(const search_state *s, const int32_t *genes, dsr_slice *slices) {
  for (int32_t l = 0; l < s->layer_count; l++)
    slices[l] = s->candidates[l].slices[genes[l]];
}

int64_t dsn_genome_bus_bytes(const search_state *s, const int32_t *genes) {
  int64_t bursts = 0;
  for (int32_t l = 0; l < s->layer_count; l++)
    bursts += s->candidates[l].costs[genes[l]].sliced.bursts;
  return bursts * dsn_preset_burst_bytes(s->preset);
}

double dsn_drop_violation(const search_state *s, double accuracy) {
  if (s->options->max_accuracy_drop < 0)
    return 0.0;
  double excess = (s->reference_accuracy - accuracy) - s->options->max_accuracy_drop;
  return excess > 0 ? excess : 0.0;
}

/* ---- Parallel evaluation ---------------------------------------------------------------- */

typedef struct eval_batch {
  search_state *state;
  int32_t count;
  const dsr_slice *configs;    /* count * layer_count */
  char **keys;
  const int64_t *dram_bytes;
  double *accuracy;
  ds_error *errors;
  int32_t next;
  int32_t failed;
  pthread_mutex_t lock;
} eval_batch;

static void *eval_worker(void *arg) {
  eval_batch *batch = arg;
  search_state *s = batch->state;
  for (;;) {
    pthread_mutex_lock(&batch->lock);
    int32_t i = batch->failed ? batch->count : batch->next++;
    pthread_mutex_unlock(&batch->lock);
    if (i >= batch->count)
      break;

    ds_error *e = &batch->errors[i];
    ds_error_clear(e);
    const dsr_slice *slices = batch->configs + (size_t)i * s->layer_count;
    double accuracy =
        s->options->evaluate(s->options->evaluate_user, slices, s->layer_count, e);
    if (e->status == DS_OK && !isfinite(accuracy))
      ds_fail(e, DS_ERR_INVALID_ARGUMENT, "the evaluate callback returned %g for %s; expected "
                                          "a finite accuracy in percent",
              accuracy, batch->keys[i]);
    batch->accuracy[i] = accuracy;

    pthread_mutex_lock(&batch->lock);
    if (e->status == DS_OK)
      dsn_journal_add(&s->journal, batch->keys[i], accuracy, batch->dram_bytes[i], e);
    if (e->status != DS_OK)
      batch->failed = 1;
    pthread_mutex_unlock(&batch->lock);
  }
  return NULL;
}

ds_status dsn_evaluate_configs(search_state *s, int32_t count, const dsr_slice *configs,
                                  char **keys, const int64_t *dram_bytes, double *accuracy,
                                  ds_error *err) {
  int32_t *pending = malloc((size_t)(count > 0 ? count : 1) * sizeof *pending);
  dsr_slice *pending_configs =
      malloc((size_t)(count > 0 ? count : 1) * s->layer_count * sizeof *pending_configs);
  char **pending_keys = malloc((size_t)(count > 0 ? count : 1) * sizeof *pending_keys);
  int64_t *pending_bytes = malloc((size_t)(count > 0 ? count : 1) * sizeof *pending_bytes);
  double *pending_accuracy = malloc((size_t)(count > 0 ? count : 1) * sizeof(double));
  ds_error *errors = malloc((size_t)(count > 0 ? count : 1) * sizeof *errors);
  ds_status status = DS_OK;
  if (pending == NULL || pending_configs == NULL || pending_keys == NULL ||
      pending_bytes == NULL || pending_accuracy == NULL || errors == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate an evaluation batch of %d",
                     count);
    goto done;
  }

  int32_t pending_count = 0;
  for (int32_t i = 0; i < count; i++) {
    int32_t first_file_use = 0;
    if (dsn_journal_lookup(&s->journal, keys[i], &accuracy[i], &first_file_use)) {
      s->journal_hits += first_file_use;
      continue;
    }
    int32_t duplicate = 0;
    for (int32_t j = 0; j < pending_count && !duplicate; j++)
      duplicate = strcmp(pending_keys[j], keys[i]) == 0;
    if (duplicate)
      continue;
    memcpy(pending_configs + (size_t)pending_count * s->layer_count,
           configs + (size_t)i * s->layer_count, (size_t)s->layer_count * sizeof *configs);
    pending_keys[pending_count] = keys[i];
    pending_bytes[pending_count] = dram_bytes[i];
    pending[pending_count++] = i;
  }

  if (pending_count > 0) {
    eval_batch batch = {s, pending_count, pending_configs, pending_keys, pending_bytes,
                        pending_accuracy, errors, 0, 0, PTHREAD_MUTEX_INITIALIZER};
    int32_t threads = s->options->threads < pending_count ? s->options->threads
                                                          : pending_count;
    pthread_t ids[DSN_MAX_THREADS];
    int32_t started = 0;
    for (int32_t t = 1; t < threads; t++) {
      if (pthread_create(&ids[started], NULL, eval_worker, &batch) != 0)
        break; /* the threads already running and this one share the rest */
      started++;
    }
    eval_worker(&batch);
    for (int32_t t = 0; t < started; t++)
      pthread_join(ids[t], NULL);
    pthread_mutex_destroy(&batch.lock);

    /* Report the failure of the lowest index, whatever the thread timing. */
    for (int32_t j = 0; j < pending_count; j++) {
      if (j < batch.next && errors[j].status != DS_OK) {
        status = ds_fail(err, errors[j].status, "evaluating %s: %s", pending_keys[j],
                         errors[j].message);
        goto done;
      }
    }
    if (batch.failed) {
      status = ds_fail(err, DS_ERR_INTERNAL, "an evaluation failed without a message");
      goto done;
    }
    s->evaluations += pending_count;
  }

  /* Every configuration, pending ones and their duplicates included, is now recorded. */
  for (int32_t i = 0; i < count; i++) {
    int32_t first_file_use = 0;
    if (!dsn_journal_lookup(&s->journal, keys[i], &accuracy[i], &first_file_use)) {
      status = ds_fail(err, DS_ERR_INTERNAL, "configuration %s was evaluated but not "
                                             "recorded", keys[i]);
      goto done;
    }
  }

done:
  free(pending);
  free(pending_configs);
  free(pending_keys);
  free(pending_bytes);
  free(pending_accuracy);
  free(errors);
  return status;
}

/* ---- Archive of visited genomes --------------------------------------------------------- */

static uint64_t hash_genes(const int32_t *genes, int32_t count) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t i = 0; i < count; i++) {
    h ^= (uint32_t)genes[i];
    h *= 1099511628211ull;
  }
  return h;
}

static int32_t *archive_slot(search_state *s, const int32_t *genes) {
  uint64_t mask = (uint64_t)s->set_capacity - 1;
  for (uint64_t i = hash_genes(genes, s->layer_count) & mask;; i = (i + 1) & mask) {
    int32_t index = s->set[i];
    if (index < 0 || memcmp(s->archive_genes + (size_t)index * s->layer_count, genes,
                            (size_t)s->layer_count * sizeof *genes) == 0)
      return &s->set[i];
  }
}

static ds_status archive_grow(search_state *s, ds_error *err) {
  int32_t capacity = s->archive_capacity == 0 ? 256 : s->archive_capacity * 2;
  int32_t *genes = realloc(s->archive_genes, (size_t)capacity * s->layer_count * sizeof *genes);
  if (genes != NULL)
    s->archive_genes = genes;
  double *accuracy = realloc(s->archive_accuracy, (size_t)capacity * sizeof *accuracy);
  if (accuracy != NULL)
    s->archive_accuracy = accuracy;
  int32_t *set = malloc((size_t)capacity * 2 * sizeof *set);
  if (genes == NULL || accuracy == NULL || set == NULL) {
    free(set);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot grow the archive to %d genomes",
                   capacity);
  }
  free(s->set);
  s->set = set;
  s->set_capacity = capacity * 2;
  for (int32_t i = 0; i < s->set_capacity; i++)
    s->set[i] = -1;
  s->archive_capacity = capacity;
  for (int32_t i = 0; i < s->archive_count; i++)
    *archive_slot(s, s->archive_genes + (size_t)i * s->layer_count) = i;
  return DS_OK;
}

int32_t dsn_archive_find(search_state *s, const int32_t *genes) {
  if (s->archive_count == 0)
    return -1;
  return *archive_slot(s, genes);
}

static ds_status archive_add(search_state *s, const int32_t *genes, double accuracy,
                             ds_error *err) {
  if (s->archive_count > 0 && *archive_slot(s, genes) >= 0)
    return DS_OK;
  if (s->archive_count == s->archive_capacity)
    DS_TRY(archive_grow(s, err));
  int32_t index = s->archive_count++;
  memcpy(s->archive_genes + (size_t)index * s->layer_count, genes,
         (size_t)s->layer_count * sizeof *genes);
  s->archive_accuracy[index] = accuracy;
  *archive_slot(s, genes) = index;
  return DS_OK;
}

ds_status dsn_evaluate_genomes(search_state *s, int32_t count, const int32_t *genes,
                                  double *accuracy, ds_error *err) {
  int32_t layers = s->layer_count;
  dsr_slice *configs = calloc((size_t)(count > 0 ? count : 1) * layers, sizeof *configs);
  char **keys = calloc((size_t)(count > 0 ? count : 1), sizeof *keys);
  int64_t *bytes = calloc((size_t)(count > 0 ? count : 1), sizeof *bytes);
  ds_status status = DS_OK;
  if (configs == NULL || keys == NULL || bytes == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d genomes", count);
    goto done;
  }
  for (int32_t i = 0; i < count; i++) {
    dsn_genome_slices(s, genes + (size_t)i * layers, configs + (size_t)i * layers);
    keys[i] = dsn_config_key(configs + (size_t)i * layers, layers);
    bytes[i] = dsn_genome_bus_bytes(s, genes + (size_t)i * layers);
    if (keys[i] == NULL) {
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build a configuration key");
      goto done;
    }
  }
  status = dsn_evaluate_configs(s, count, configs, keys, bytes, accuracy, err);
  for (int32_t i = 0; i < count && status == DS_OK; i++)
    status = archive_add(s, genes + (size_t)i * layers, accuracy[i], err);

done:
  for (int32_t i = 0; keys != NULL && i < count; i++)
    free(keys[i]);
  free(keys);
  free(configs);
  free(bytes);
  return status;
}

