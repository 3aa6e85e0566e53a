#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nas/dsn_search_state.h"

#define EXHAUSTIVE_CHUNK 1024
#define NOVELTY_TRIES 8

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

/* ---- NSGA-II ------------------------------------------------------------------------------ */

typedef struct individual {
  double accuracy;
  int64_t bytes;
  double violation;   /* 0 when feasible */
  int32_t rank;
  double crowding;
} individual;

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

/*
 * Moves gene l to another candidate. Candidates are listed by rows, cols, overlap, so nearby
 * indices are similar configurations: half the moves are small steps (1 to 3 places either
 * way, wrapping around), the other half jump to any other candidate.
 */
static void move_gene(const search_state *s, int32_t *genes, int32_t l, uint64_t *rng) {
  int32_t count = s->candidates[l].count;
  if (count <= 1)
    return;
  if (rng_unit(rng) < 0.5) {
    int32_t step = 1 + rng_below(rng, count - 1 < 3 ? count - 1 : 3);
    if (rng_next(rng) & 1u)
      step = count - step;
    genes[l] = (genes[l] + step) % count;
  } else {
    int32_t value = rng_below(rng, count - 1);
    genes[l] = value >= genes[l] ? value + 1 : value;
  }
}

static void mutate(const search_state *s, int32_t *genes, double probability, uint64_t *rng) {
  for (int32_t l = 0; l < s->layer_count; l++) {
    if (rng_unit(rng) < probability)
      move_gene(s, genes, l, rng);
  }
}

/* Re-mutates one random gene of child while it repeats a visited genome or a genome already
 * in pop (at most NOVELTY_TRIES times), so that evaluations go to new genomes. */
static void make_novel(search_state *s, const population *pop, int32_t *child,
                       uint64_t *rng) {
  int32_t layers = s->layer_count;
  for (int32_t attempt = 0; attempt < NOVELTY_TRIES; attempt++) {
    int repeated = dsn_archive_find(s, child) >= 0;
    for (int32_t i = 0; i < pop->count && !repeated; i++)
      repeated = memcmp(pop->genes + (size_t)i * layers, child,
                        (size_t)layers * sizeof *child) == 0;
    if (!repeated)
      return;
    move_gene(s, child, rng_below(rng, layers), rng);
  }
}

static ds_status score(search_state *s, population *pop, int32_t first, ds_error *err) {
  int32_t count = pop->count - first;
  double *accuracy = malloc((size_t)(count > 0 ? count : 1) * sizeof *accuracy);
  if (accuracy == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot score %d genomes", count);
  ds_status status = dsn_evaluate_genomes(
      s, count, pop->genes + (size_t)first * s->layer_count, accuracy, err);
  for (int32_t i = 0; i < count && status == DS_OK; i++) {
    individual *ind = &pop->inds[first + i];
    const int32_t *genes = pop->genes + (size_t)(first + i) * s->layer_count;
    ind->accuracy = accuracy[i];
    ind->bytes = dsn_genome_bus_bytes(s, genes);
    ind->violation = dsn_drop_violation(s, accuracy[i]);
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

ds_status dsn_run_nsga2(search_state *s, ds_error *err) {
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
      make_novel(s, &merged, child1, &rng);
      merged.count++;
      if (two) {
        mutate(s, child2, mutation, &rng);
        make_novel(s, &merged, child2, &rng);
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

ds_status dsn_run_exhaustive(search_state *s, int64_t space, ds_error *err) {
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
    status = dsn_evaluate_genomes(s, chunk, genes, accuracy, err);
  }
done:
  free(genes);
  free(accuracy);
  free(counter);
  return status;
}

