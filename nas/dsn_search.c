#include "dsn_search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nas/dsn_search_state.h"
#include "runtime/dsr_slice.h"

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
  options->population = 32;
  options->generations = 30;
  options->crossover_probability = 0.9;
  options->mutation_probability = 0.0;
  options->exhaustive_budget = 256;
  options->threads = 1;
  options->max_accuracy_drop = -1.0;
  options->semantics_mask = DSN_SEMANTICS_PHYSICAL;
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
  int64_t bx = dsn_genome_bus_bytes(s, s->archive_genes + (size_t)x * s->layer_count);
  int64_t by = dsn_genome_bus_bytes(s, s->archive_genes + (size_t)y * s->layer_count);
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
    if (dsn_drop_violation(s, s->archive_accuracy[i]) == 0)
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
    int64_t group_min =
        dsn_genome_bus_bytes(s, s->archive_genes + (size_t)order[i] * s->layer_count);
    while (j < feasible && s->archive_accuracy[order[j]] == accuracy) {
      int64_t bytes = dsn_genome_bus_bytes(s, s->archive_genes + (size_t)order[j] * s->layer_count);
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
    dsn_genome_slices(s, genes, point->slices);
    point->accuracy = s->archive_accuracy[order[i]];
    point->test_accuracy = NAN;
    point->dram_bytes = dsn_genome_bus_bytes(s, genes);
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
  if (o->threads < 1 || o->threads > DSN_MAX_THREADS)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "search options: threads is %d; expected "
                                                 "1..%d", o->threads, DSN_MAX_THREADS);
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
  status = dsn_evaluate_configs(&s, 1, unsliced, &reference_key, &reference_bytes,
                            &s.reference_accuracy, err);
  free(reference_key);
  if (status != DS_OK)
    goto done;
  result->reference_accuracy = s.reference_accuracy;

  result->space_size = space_size(&s);
  result->exhaustive = result->space_size <= options->exhaustive_budget;
  if (result->exhaustive)
    status = dsn_run_exhaustive(&s, result->space_size, err);
  else
    status = dsn_run_nsga2(&s, err);
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
