/* Per-pass statistics of the import report: live nodes and the tensors they touch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_ir.h"

/* Counts live nodes and the distinct values they read or write. */
static ds_status measure(const dsc_graph *g, int32_t *nodes, int32_t *tensors, ds_error *err) {
  uint8_t *seen = calloc((size_t)g->value_count + 1, 1);
  if (seen == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory to count tensors", g->path);
  *nodes = *tensors = 0;
  for (int32_t i = 0; i < g->node_count; i++) {
    const dsc_node *n = &g->nodes[i];
    if (n->dead)
      continue;
    (*nodes)++;
    for (int32_t k = 0; k < n->input_count + n->output_count; k++) {
      int32_t v = k < n->input_count ? n->inputs[k] : n->outputs[k - n->input_count];
      if (v >= 0 && !seen[v]) {
        seen[v] = 1;
        (*tensors)++;
      }
    }
    /* A lifted deformable block's weights become model tensors too. */
    for (int32_t p = 0; n->deform != NULL && p < DSR_DEFORM_PARAM_COUNT; p++) {
      int32_t v = n->deform->params[p];
      if (v >= 0 && !seen[v]) {
        seen[v] = 1;
        (*tensors)++;
      }
    }
  }
  free(seen);
  return DS_OK;
}

ds_status dsc_record_constants_step(dsc_graph *g, int32_t onnx_node_count, ds_error *err) {
  dsc_pass_stats stats;
  memset(&stats, 0, sizeof stats);
  snprintf(stats.name, sizeof stats.name, "Constant nodes");
  snprintf(stats.unit, sizeof stats.unit, "made values");
  DS_TRY(measure(g, &stats.nodes_after, &stats.tensors_after, err));
  stats.nodes_before = onnx_node_count;
  stats.tensors_before = stats.tensors_after;
  stats.changed_count = onnx_node_count - stats.nodes_after;
  dsc_report *r = g->report;
  if (r->pass_count < DSC_MAX_REPORT_PASSES)
    r->passes[r->pass_count++] = stats;
  return DS_OK;
}

ds_status dsc_run_pass(dsc_graph *g, const char *name, const char *unit,
                       ds_status (*pass)(dsc_graph *, ds_error *), const int32_t *changed,
                       ds_error *err) {
  dsc_pass_stats stats;
  memset(&stats, 0, sizeof stats);
  snprintf(stats.name, sizeof stats.name, "%s", name);
  snprintf(stats.unit, sizeof stats.unit, "%s", unit);
  int32_t changed_before = changed != NULL ? *changed : 0;
  DS_TRY(measure(g, &stats.nodes_before, &stats.tensors_before, err));
  DS_TRY(pass(g, err));
  DS_TRY(measure(g, &stats.nodes_after, &stats.tensors_after, err));
  stats.changed_count = changed != NULL ? *changed - changed_before : 0;
  dsc_report *r = g->report;
  if (r->pass_count < DSC_MAX_REPORT_PASSES)
    r->passes[r->pass_count++] = stats;
  return DS_OK;
}
