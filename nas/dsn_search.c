#include "dsn_search.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nas/dsn_journal.h"
#include "nas/dsn_oracle.h"
#include "runtime/dsr_slice.h"

#define MAX_THREADS 256
#define EXHAUSTIVE_CHUNK 1024

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

/* splitmix64: small, fast and fully determined by the seed. */
static uint64_t rng_next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double rng_unit(uint64_t *state) {
  return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

static int32_t rng_below(uint64_t *state, int32_t n) {
  return (int32_t)(rng_next(state) % (uint64_t)n);
}

char *dsn_config_key(const dsr_slice *slices, int32_t layer_count) {
  size_t capacity = (size_t)layer_count * 40 + 1;
  char *key = malloc(capacity);
  if (key == NULL)
    return NULL;
  size_t used = 0;
  key[0] = '\0';
  for (int32_t i = 0; i < layer_count; i++) {
    char part[40];
    dsn_slice_format(slices[i], part, (int32_t)sizeof part);
    used += (size_t)snprintf(key + used, capacity - used, "%s%s", i > 0 ? "," : "", part);
  }
  return key;
}

void dsn_search_options_default(dsn_search_options *options) {
  memset(options, 0, sizeof *options);
  options->seed = 1;
  options->population = 24;
  options->generations = 20;
  options->crossover_probability = 0.9;
  options->mutation_probability = 0.0;
  options->exhaustive_budget = 256;
  options->threads = 1;
  options->max_accuracy_drop = -1.0;
  options->semantics_mask = DSN_SEMANTICS_PHYSICAL;
}

static void genome_slices(const search_state *s, const int32_t *genes, dsr_slice *slices) {
  for (int32_t l = 0; l < s->layer_count; l++)
    slices[l] = s->candidates[l].slices[genes[l]];
}

static int64_t genome_bus_bytes(const search_state *s, const int32_t *genes) {
  int64_t bursts = 0;
  for (int32_t l = 0; l < s->layer_count; l++)
    bursts += s->candidates[l].costs[genes[l]].sliced.bursts;
  return bursts * dsn_preset_burst_bytes(s->preset);
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

/*
 * Finds the accuracy of count configurations: from the journal when recorded, else through
 * the callback on options.threads threads. keys[i] names configs[i].
 */
static ds_status evaluate_configs(search_state *s, int32_t count, const dsr_slice *configs,
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
    pthread_t ids[MAX_THREADS];
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

/* Evaluates count genomes (through the journal where possible) and adds them to the
 * archive; accuracy receives one value per genome. */
static ds_status evaluate_genomes(search_state *s, int32_t count, const int32_t *genes,
                                  double *accuracy, ds_error *err) {
  int32_t layers = s->layer_count;
  dsr_slice *configs = malloc((size_t)(count > 0 ? count : 1) * layers * sizeof *configs);
  char **keys = calloc((size_t)(count > 0 ? count : 1), sizeof *keys);
  int64_t *bytes = malloc((size_t)(count > 0 ? count : 1) * sizeof *bytes);
  ds_status status = DS_OK;
  if (configs == NULL || keys == NULL || bytes == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d genomes", count);
    goto done;
  }
  for (int32_t i = 0; i < count; i++) {
    genome_slices(s, genes + (size_t)i * layers, configs + (size_t)i * layers);
    keys[i] = dsn_config_key(configs + (size_t)i * layers, layers);
    bytes[i] = genome_bus_bytes(s, genes + (size_t)i * layers);
    if (keys[i] == NULL) {
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build a configuration key");
      goto done;
    }
  }
  status = evaluate_configs(s, count, configs, keys, bytes, accuracy, err);
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

/* ---- NSGA-II ------------------------------------------------------------------------------ */

typedef struct individual {
  double accuracy;
  int64_t bytes;
  double violation;   /* 0 when feasible */
  int32_t rank;
  double crowding;
} individual;

static double drop_violation(const search_state *s, double accuracy) {
  if (s->options->max_accuracy_drop < 0)
    return 0.0;
  double excess = (s->reference_accuracy - accuracy) - s->options->max_accuracy_drop;
  return excess > 0 ? excess : 0.0;
}

/* Constrained domination: feasible beats infeasible, less violation beats more, and among
 * feasible ones Pareto dominance on (accuracy up, bytes down). */
static int dominates(const individual *a, const individual *b) {
  if (a->violation == 0 && b->violation > 0)
    return 1;
  if (a->violation > 0 || b->violation > 0)
    return a->violation > 0 && b->violation > 0 && a->violation < b->violation;
  int no_worse = a->accuracy >= b->accuracy && a->bytes <= b->bytes;
  int better = a->accuracy > b->accuracy || a->bytes < b->bytes;
  return no_worse && better;
}

/* Fast non-dominated sort: sets rank (0 = first front) of n individuals. */
static ds_status nondominated_sort(individual *pop, int32_t n, ds_error *err) {
  int32_t *dominated_count = calloc((size_t)n, sizeof *dominated_count);
  int32_t *dominates_list = malloc((size_t)n * n * sizeof *dominates_list);
  int32_t *dominates_len = calloc((size_t)n, sizeof *dominates_len);
  int32_t *current = malloc((size_t)n * sizeof *current);
  int32_t *next = malloc((size_t)n * sizeof *next);
  if (dominated_count == NULL || dominates_list == NULL || dominates_len == NULL ||
      current == NULL || next == NULL) {
    free(dominated_count);
    free(dominates_list);
    free(dominates_len);
    free(current);
    free(next);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot sort %d individuals", n);
  }

  int32_t current_len = 0;
  for (int32_t p = 0; p < n; p++) {
    for (int32_t q = 0; q < n; q++) {
      if (p == q)
        continue;
      if (dominates(&pop[p], &pop[q]))
        dominates_list[(size_t)p * n + dominates_len[p]++] = q;
      else if (dominates(&pop[q], &pop[p]))
        dominated_count[p]++;
    }
    if (dominated_count[p] == 0) {
      pop[p].rank = 0;
      current[current_len++] = p;
    }
  }
  int32_t rank = 0;
  while (current_len > 0) {
    int32_t next_len = 0;
    for (int32_t i = 0; i < current_len; i++) {
      int32_t p = current[i];
      for (int32_t k = 0; k < dominates_len[p]; k++) {
        int32_t q = dominates_list[(size_t)p * n + k];
        if (--dominated_count[q] == 0) {
          pop[q].rank = rank + 1;
          next[next_len++] = q;
        }
      }
    }
    rank++;
    memcpy(current, next, (size_t)next_len * sizeof *next);
    current_len = next_len;
  }
  free(dominated_count);
  free(dominates_list);
  free(dominates_len);
  free(current);
  free(next);
  return DS_OK;
}

/* Sort context for the crowding distance (qsort has no user pointer). Indices tie-break,
 * so the order is total and the result deterministic. */
typedef struct sort_item {
  double key;
  int32_t index;
} sort_item;

static int compare_items(const void *a, const void *b) {
  const sort_item *x = a;
  const sort_item *y = b;
  if (x->key != y->key)
    return x->key < y->key ? -1 : 1;
  return x->index - y->index;
}

static ds_status crowding_distance(individual *pop, const int32_t *members, int32_t count,
                                   ds_error *err) {
  sort_item *items = malloc((size_t)(count > 0 ? count : 1) * sizeof *items);
  if (items == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the crowding sort");
  for (int32_t i = 0; i < count; i++)
    pop[members[i]].crowding = 0.0;
  for (int32_t objective = 0; objective < 2; objective++) {
    for (int32_t i = 0; i < count; i++) {
      const individual *ind = &pop[members[i]];
      items[i].key = objective == 0 ? -ind->accuracy : (double)ind->bytes;
      items[i].index = members[i];
    }
    qsort(items, (size_t)count, sizeof *items, compare_items);
    double range = items[count - 1].key - items[0].key;
    pop[items[0].index].crowding = INFINITY;
    pop[items[count - 1].index].crowding = INFINITY;
    if (range <= 0)
      continue;
    for (int32_t i = 1; i + 1 < count; i++)
      pop[items[i].index].crowding += (items[i + 1].key - items[i - 1].key) / range;
  }
  free(items);
  return DS_OK;
}

/* Crowded comparison: lower rank, then larger crowding distance. */
static int better_crowded(const individual *a, const individual *b) {
  if (a->rank != b->rank)
    return a->rank < b->rank;
  return a->crowding > b->crowding;
}

typedef struct population {
  int32_t count;
  int32_t *genes;      /* count * layer_count */
  individual *inds;
} population;

/* Ranks and crowding distances for every front of pop. */
static ds_status rank_population(population *pop, ds_error *err) {
  DS_TRY(nondominated_sort(pop->inds, pop->count, err));
  int32_t *members = malloc((size_t)(pop->count > 0 ? pop->count : 1) * sizeof *members);
  if (members == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot rank the population");
  ds_status status = DS_OK;
  for (int32_t rank = 0; status == DS_OK; rank++) {
    int32_t count = 0;
    for (int32_t i = 0; i < pop->count; i++) {
      if (pop->inds[i].rank == rank)
        members[count++] = i;
    }
    if (count == 0)
      break;
    status = crowding_distance(pop->inds, members, count, err);
  }
  free(members);
  return status;
}

static int32_t tournament(const population *pop, uint64_t *rng) {
  int32_t a = rng_below(rng, pop->count);
  int32_t b = rng_below(rng, pop->count);
  if (better_crowded(&pop->inds[b], &pop->inds[a]))
    return b;
  return a;
}

static void mutate(const search_state *s, int32_t *genes, double probability, uint64_t *rng) {
  for (int32_t l = 0; l < s->layer_count; l++) {
    int32_t count = s->candidates[l].count;
    if (count > 1 && rng_unit(rng) < probability) {
      int32_t value = rng_below(rng, count - 1);
      genes[l] = value >= genes[l] ? value + 1 : value;
    }
  }
}

static ds_status score(search_state *s, population *pop, int32_t first, ds_error *err) {
  int32_t count = pop->count - first;
  double *accuracy = malloc((size_t)(count > 0 ? count : 1) * sizeof *accuracy);
  if (accuracy == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot score %d genomes", count);
  ds_status status = evaluate_genomes(
      s, count, pop->genes + (size_t)first * s->layer_count, accuracy, err);
  for (int32_t i = 0; i < count && status == DS_OK; i++) {
    individual *ind = &pop->inds[first + i];
    const int32_t *genes = pop->genes + (size_t)(first + i) * s->layer_count;
    ind->accuracy = accuracy[i];
    ind->bytes = genome_bus_bytes(s, genes);
    ind->violation = drop_violation(s, accuracy[i]);
  }
  free(accuracy);
  return status;
}

/* Order of survivor selection: rank, then crowding (descending), then position. */
static _Thread_local const individual *g_selection_inds;

static int compare_survivors(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a;
  int32_t y = *(const int32_t *)b;
  const individual *ix = &g_selection_inds[x];
  const individual *iy = &g_selection_inds[y];
  if (ix->rank != iy->rank)
    return ix->rank < iy->rank ? -1 : 1;
  if (ix->crowding != iy->crowding)
    return ix->crowding > iy->crowding ? -1 : 1;
  return x - y;
}

/* Keeps the best size members of merged (duplicates removed) in next. merged is ranked here.
 * The comparators read thread-local pointers because qsort takes no user argument. */
static ds_status select_survivors(const search_state *s, population *merged, int32_t size,
                                  population *next, ds_error *err) {
  int32_t layers = s->layer_count;
  int32_t unique = 0;
  for (int32_t i = 0; i < merged->count; i++) {
    const int32_t *genes = merged->genes + (size_t)i * layers;
    int duplicate = 0;
    for (int32_t j = 0; j < unique && !duplicate; j++)
      duplicate = memcmp(merged->genes + (size_t)j * layers, genes,
                         (size_t)layers * sizeof *genes) == 0;
    if (duplicate)
      continue;
    memmove(merged->genes + (size_t)unique * layers, genes, (size_t)layers * sizeof *genes);
    merged->inds[unique++] = merged->inds[i];
  }
  merged->count = unique;
  DS_TRY(rank_population(merged, err));

  int32_t *order = malloc((size_t)unique * sizeof *order);
  if (order == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot order the survivors");
  for (int32_t i = 0; i < unique; i++)
    order[i] = i;
  g_selection_inds = merged->inds;
  qsort(order, (size_t)unique, sizeof *order, compare_survivors);
  g_selection_inds = NULL;

  next->count = unique < size ? unique : size;
  for (int32_t i = 0; i < next->count; i++) {
    memcpy(next->genes + (size_t)i * layers, merged->genes + (size_t)order[i] * layers,
           (size_t)layers * sizeof *next->genes);
    next->inds[i] = merged->inds[order[i]];
  }
  free(order);
  /* The survivors' crowding distances are recomputed within the new population. */
  return rank_population(next, err);
}

static ds_status run_nsga2(search_state *s, ds_error *err) {
  const dsn_search_options *o = s->options;
  int32_t layers = s->layer_count;
  int32_t size = o->population;
  double mutation = o->mutation_probability > 0 ? o->mutation_probability : 1.0 / layers;
  uint64_t rng = o->seed;

  population parents = {0, malloc((size_t)size * layers * sizeof(int32_t)),
                        calloc((size_t)size, sizeof(individual))};
  population merged = {0, malloc((size_t)size * 2 * layers * sizeof(int32_t)),
                       calloc((size_t)size * 2, sizeof(individual))};
  ds_status status = DS_OK;
  if (parents.genes == NULL || parents.inds == NULL || merged.genes == NULL ||
      merged.inds == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate a population of %d", size);
    goto done;
  }

  /* First generation: the unsliced model (when every layer can run it), the per-layer
   * minimal-traffic configuration, then random genomes. */
  int32_t unsliced_ok = 1;
  for (int32_t l = 0; l < layers; l++) {
    dsr_slice first = s->candidates[l].slices[0];
    unsliced_ok = unsliced_ok && first.rows == 1 && first.cols == 1 && first.overlap == 0 &&
                  first.semantics == DSR_SLICE_PHYSICAL;
  }
  if (unsliced_ok) {
    for (int32_t l = 0; l < layers; l++)
      parents.genes[(size_t)parents.count * layers + l] = 0;
    parents.count++;
  }
  for (int32_t l = 0; l < layers; l++)
    parents.genes[(size_t)parents.count * layers + l] = s->candidates[l].min_traffic;
  parents.count++;
  while (parents.count < size) {
    for (int32_t l = 0; l < layers; l++)
      parents.genes[(size_t)parents.count * layers + l] =
          rng_below(&rng, s->candidates[l].count);
    parents.count++;
  }
  status = score(s, &parents, 0, err);
  if (status == DS_OK)
    status = rank_population(&parents, err);

  for (int32_t generation = 0; generation < o->generations && status == DS_OK; generation++) {
    memcpy(merged.genes, parents.genes, (size_t)parents.count * layers * sizeof(int32_t));
    memcpy(merged.inds, parents.inds, (size_t)parents.count * sizeof(individual));
    merged.count = parents.count;

    /* Offspring by binary tournament, uniform crossover and mutation. */
    while (merged.count < parents.count + size) {
      const int32_t *a = parents.genes + (size_t)tournament(&parents, &rng) * layers;
      const int32_t *b = parents.genes + (size_t)tournament(&parents, &rng) * layers;
      int32_t *child1 = merged.genes + (size_t)merged.count * layers;
      int32_t *child2 = child1 + layers;
      int two = merged.count + 1 < parents.count + size;
      int cross = rng_unit(&rng) < o->crossover_probability;
      for (int32_t l = 0; l < layers; l++) {
        int swap = cross && (rng_next(&rng) & 1u);
        child1[l] = swap ? b[l] : a[l];
        if (two)
          child2[l] = swap ? a[l] : b[l];
      }
      mutate(s, child1, mutation, &rng);
      merged.count++;
      if (two) {
        mutate(s, child2, mutation, &rng);
        merged.count++;
      }
    }
    status = score(s, &merged, parents.count, err);
    if (status == DS_OK)
      status = select_survivors(s, &merged, size, &parents, err);
  }

done:
  free(parents.genes);
  free(parents.inds);
  free(merged.genes);
  free(merged.inds);
  return status;
}

static ds_status run_exhaustive(search_state *s, int64_t space, ds_error *err) {
  int32_t layers = s->layer_count;
  int32_t *genes = malloc((size_t)EXHAUSTIVE_CHUNK * layers * sizeof *genes);
  double *accuracy = malloc((size_t)EXHAUSTIVE_CHUNK * sizeof *accuracy);
  int32_t *counter = calloc((size_t)layers, sizeof *counter);
  ds_status status = DS_OK;
  if (genes == NULL || accuracy == NULL || counter == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the enumeration");
    goto done;
  }
  for (int64_t done_count = 0; done_count < space && status == DS_OK;) {
    int32_t chunk = 0;
    while (chunk < EXHAUSTIVE_CHUNK && done_count < space) {
      memcpy(genes + (size_t)chunk * layers, counter, (size_t)layers * sizeof *counter);
      chunk++;
      done_count++;
      /* Mixed-radix increment, layer 0 fastest. */
      for (int32_t l = 0; l < layers; l++) {
        if (++counter[l] < s->candidates[l].count)
          break;
        counter[l] = 0;
      }
    }
    status = evaluate_genomes(s, chunk, genes, accuracy, err);
  }
done:
  free(genes);
  free(accuracy);
  free(counter);
  return status;
}

/* ---- Front and result --------------------------------------------------------------------- */

static _Thread_local const search_state *g_front_state;

static int compare_front(const void *a, const void *b) {
  const search_state *s = g_front_state;
  int32_t x = *(const int32_t *)a;
  int32_t y = *(const int32_t *)b;
  double ax = s->archive_accuracy[x];
  double ay = s->archive_accuracy[y];
  if (ax != ay)
    return ax > ay ? -1 : 1;
  int64_t bx = genome_bus_bytes(s, s->archive_genes + (size_t)x * s->layer_count);
  int64_t by = genome_bus_bytes(s, s->archive_genes + (size_t)y * s->layer_count);
  if (bx != by)
    return bx < by ? -1 : 1;
  const int32_t *gx = s->archive_genes + (size_t)x * s->layer_count;
  const int32_t *gy = s->archive_genes + (size_t)y * s->layer_count;
  for (int32_t l = 0; l < s->layer_count; l++) {
    if (gx[l] != gy[l])
      return gx[l] < gy[l] ? -1 : 1;
  }
  return 0;
}

/* Fills result->points with the feasible non-dominated genomes of the archive. */
static ds_status build_front(const search_state *s, dsn_search_result *result,
                             ds_error *err) {
  int32_t n = s->archive_count;
  int32_t *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
  if (order == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot sort the archive");
  int32_t feasible = 0;
  for (int32_t i = 0; i < n; i++) {
    if (drop_violation(s, s->archive_accuracy[i]) == 0)
      order[feasible++] = i;
  }
  g_front_state = s;
  qsort(order, (size_t)feasible, sizeof *order, compare_front);
  g_front_state = NULL;

  /* Sorted by accuracy descending: a genome is on the front when its bytes are the lowest of
   * its accuracy and lower than those of every more accurate genome. */
  int32_t front = 0;
  int64_t best_bytes = INT64_MAX;
  for (int32_t i = 0; i < feasible;) {
    int32_t j = i;
    double accuracy = s->archive_accuracy[order[i]];
    int64_t group_min = genome_bus_bytes(s, s->archive_genes + (size_t)order[i] * s->layer_count);
    while (j < feasible && s->archive_accuracy[order[j]] == accuracy) {
      int64_t bytes = genome_bus_bytes(s, s->archive_genes + (size_t)order[j] * s->layer_count);
      if (bytes == group_min && group_min < best_bytes)
        order[front++] = order[j];
      j++;
    }
    if (group_min < best_bytes)
      best_bytes = group_min;
    i = j;
  }

  result->points = calloc((size_t)(front > 0 ? front : 1), sizeof *result->points);
  if (result->points == NULL) {
    free(order);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the front");
  }
  ds_status status = DS_OK;
  for (int32_t i = 0; i < front && status == DS_OK; i++) {
    const int32_t *genes = s->archive_genes + (size_t)order[i] * s->layer_count;
    dsn_front_point *point = &result->points[i];
    point->slices = malloc((size_t)s->layer_count * sizeof *point->slices);
    if (point->slices == NULL) {
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate a front point");
      break;
    }
    result->point_count++;
    genome_slices(s, genes, point->slices);
    point->accuracy = s->archive_accuracy[order[i]];
    point->test_accuracy = NAN;
    point->dram_bytes = genome_bus_bytes(s, genes);
    for (int32_t l = 0; l < s->layer_count; l++) {
      const dsn_layer_cost *cost = &s->candidates[l].costs[genes[l]];
      point->dram_payload_bytes += cost->sliced.bytes;
      point->dram_time_ns += cost->sliced.time_ns;
      if (cost->buffer_bytes > point->buffer_bytes)
        point->buffer_bytes = cost->buffer_bytes;
    }
  }
  free(order);
  return status;
}

static ds_status check_options(const dsn_search_options *o, ds_error *err) {
  if (o->evaluate == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "search options: evaluate is NULL; supply the "
                                                 "validation accuracy callback");
  if (o->population < 4 || o->population > 100000)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "search options: population is %d; expected "
                                                 "4..100000", o->population);
  if (o->generations < 0 || o->generations > 1000000)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "search options: generations is %d; "
                                                 "expected 0..1000000", o->generations);
  if (!(o->crossover_probability >= 0 && o->crossover_probability <= 1))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "search options: crossover_probability is "
                                                 "%g; expected 0..1", o->crossover_probability);
  if (!(o->mutation_probability <= 1))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "search options: mutation_probability is "
                                                 "%g; expected at most 1",
                   o->mutation_probability);
  if (o->threads < 1 || o->threads > MAX_THREADS)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "search options: threads is %d; expected "
                                                 "1..%d", o->threads, MAX_THREADS);
  if (o->exhaustive_budget < 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "search options: exhaustive_budget is %lld; "
                                                 "expected 0 or more",
                   (long long)o->exhaustive_budget);
  if ((o->semantics_mask & ~(DSN_SEMANTICS_PHYSICAL | DSN_SEMANTICS_CROP)) != 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "search options: semantics_mask is 0x%x; "
                                                 "expected DSN_SEMANTICS_* bits",
                   o->semantics_mask);
  return DS_OK;
}

/* Builds the candidate lists and the whole-model reference figures. */
static ds_status prepare_layers(search_state *s, const dsr_model *model,
                                dsn_search_result *result, dsr_slice *unsliced,
                                ds_error *err) {
  int32_t l = 0;
  result->reference_fits = 1;
  for (int32_t i = 0; i < model->node_count; i++) {
    const dsr_node *node = &model->nodes[i];
    if (node->op != DSR_OP_DEFORM_ATTN)
      continue;
    if (node->deform == NULL)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "node %d (%s) is DEFORM_ATTN without layer parameters", i, node->name);
    DS_TRY(dsn_candidates_build(node->deform, s->preset, s->options->semantics_mask,
                                &s->candidates[l], err));
    if (s->candidates[l].none_fit) {
      const dsn_layer_cost *smallest = &s->candidates[l].costs[0];
      char text[40];
      dsn_slice_format(smallest->slice, text, (int32_t)sizeof text);
      return ds_fail(err, DS_ERR_SLICE_CONFIG,
                     "deformable layer %d (node %s, %dx%dx%d): no slice configuration fits "
                     "the %lld-byte feature buffer of preset %s; the smallest, %s, needs "
                     "%lld bytes. Use a preset with a larger feature_buffer_bytes",
                     l, node->name, node->deform->channels, node->deform->height,
                     node->deform->width, (long long)s->preset->feature_buffer_bytes,
                     s->preset->name, text, (long long)smallest->buffer_bytes);
    }
    unsliced[l] = dsr_slice_none();
    dsn_layer_cost cost;
    DS_TRY(dsn_oracle_layer(node->deform, unsliced[l], s->preset, &cost, err));
    result->gather_bytes += dsn_traffic_bus_bytes(&cost.gather, s->preset);
    result->lower_bound_bytes += dsn_traffic_bus_bytes(&cost.lower_bound, s->preset);
    result->unsliced_bytes += dsn_traffic_bus_bytes(&cost.sliced, s->preset);
    result->reference_fits = result->reference_fits && cost.fits;
    l++;
  }
  return DS_OK;
}

static int64_t space_size(const search_state *s) {
  int64_t space = 1;
  for (int32_t l = 0; l < s->layer_count; l++) {
    if (space > INT64_MAX / s->candidates[l].count)
      return INT64_MAX;
    space *= s->candidates[l].count;
  }
  return space;
}

static ds_status add_test_accuracy(const search_state *s, dsn_search_result *result,
                                   const dsr_slice *unsliced, ds_error *err) {
  const dsn_search_options *o = s->options;
  result->reference_test_accuracy = NAN;
  if (o->evaluate_test == NULL)
    return DS_OK;
  ds_error local;
  ds_error_clear(&local);
  result->reference_test_accuracy =
      o->evaluate_test(o->evaluate_test_user, unsliced, s->layer_count, &local);
  if (local.status != DS_OK)
    return ds_fail(err, local.status, "test accuracy of the unsliced model: %s",
                   local.message);
  for (int32_t i = 0; i < result->point_count; i++) {
    dsn_front_point *point = &result->points[i];
    point->test_accuracy =
        o->evaluate_test(o->evaluate_test_user, point->slices, s->layer_count, &local);
    if (local.status != DS_OK)
      return ds_fail(err, local.status, "test accuracy of front point %d: %s", i,
                     local.message);
  }
  return DS_OK;
}

ds_status dsn_search_run(const dsr_model *model, const dsn_preset *preset,
                         const dsn_search_options *options, dsn_search_result *result,
                         ds_error *err) {
  if (model == NULL || preset == NULL || options == NULL || result == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_search_run: NULL argument");
  memset(result, 0, sizeof *result);
  result->reference_test_accuracy = NAN;
  DS_TRY(check_options(options, err));

  int32_t layers = 0;
  for (int32_t i = 0; i < model->node_count; i++)
    layers += model->nodes[i].op == DSR_OP_DEFORM_ATTN;
  if (layers == 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "model %s has no deformable attention layer "
                                                 "to slice", model->name);

  search_state s;
  memset(&s, 0, sizeof s);
  s.preset = preset;
  s.options = options;
  s.layer_count = layers;
  s.journal.fd = -1;
  s.candidates = calloc((size_t)layers, sizeof *s.candidates);
  dsr_slice *unsliced = calloc((size_t)layers, sizeof *unsliced);
  ds_status status = DS_OK;
  if (s.candidates == NULL || unsliced == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d candidate lists", layers);
    goto done;
  }
  result->layer_count = layers;
  snprintf(result->preset_name, sizeof result->preset_name, "%s", preset->name);

  status = prepare_layers(&s, model, result, unsliced, err);
  if (status == DS_OK)
    status = dsn_journal_open(&s.journal, options->journal_path, options->journal_tag, layers,
                              options->log, options->log_user,
                              &result->journal_skipped_lines, err);
  if (status != DS_OK)
    goto done;

  /* The unsliced model is the accuracy reference, evaluated even when it does not fit. */
  char *reference_key = dsn_config_key(unsliced, layers);
  int64_t reference_bytes = result->unsliced_bytes;
  if (reference_key == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot build the reference key");
    goto done;
  }
  status = evaluate_configs(&s, 1, unsliced, &reference_key, &reference_bytes,
                            &s.reference_accuracy, err);
  free(reference_key);
  if (status != DS_OK)
    goto done;
  result->reference_accuracy = s.reference_accuracy;

  result->space_size = space_size(&s);
  result->exhaustive = result->space_size <= options->exhaustive_budget;
  if (result->exhaustive)
    status = run_exhaustive(&s, result->space_size, err);
  else
    status = run_nsga2(&s, err);
  if (status == DS_OK)
    status = build_front(&s, result, err);
  if (status == DS_OK)
    status = add_test_accuracy(&s, result, unsliced, err);
  result->evaluations = s.evaluations;
  result->journal_hits = s.journal_hits;

done:
  for (int32_t l = 0; s.candidates != NULL && l < layers; l++)
    dsn_candidates_free(&s.candidates[l]);
  free(s.candidates);
  free(unsliced);
  free(s.archive_genes);
  free(s.archive_accuracy);
  free(s.set);
  dsn_journal_close(&s.journal);
  if (status != DS_OK)
    dsn_search_result_free(result);
  return status;
}

void dsn_search_result_free(dsn_search_result *result) {
  if (result == NULL)
    return;
  for (int32_t i = 0; result->points != NULL && i < result->point_count; i++)
    free(result->points[i].slices);
  free(result->points);
  memset(result, 0, sizeof *result);
}
