/*
 * Measured strategies (dsn_measure.h): positions captured from a float invoke, each strategy's
 * requests served by the modelled DRAM, on-chip sampling through the banked feature buffer,
 * and the sliced schedule through the executor.
 */
#include "dsn_measure.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nas/dsn_dense.h"
#include "nas/dsn_oracle.h"
#include "nas/dsn_oracle_walk.h"
#include "nas/dsn_schedule.h"
#include "runtime/dsr_kernels.h"
#include "runtime/dsr_runtime.h"
#include "runtime/dsr_slice.h"

static const char *const strategy_names[DSN_STRATEGY_COUNT] = {"lower_bound", "gather", "cache",
                                                               "whole_map", "sliced"};

const char *dsn_strategy_name(dsn_strategy strategy) {
  if ((int32_t)strategy < 0 || strategy >= DSN_STRATEGY_COUNT)
    return "unknown";
  return strategy_names[strategy];
}

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

static uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

/* ---- Positions ----------------------------------------------------------------------------- */

/* Deformable layers of model in node order: node index per layer. */
static int32_t deform_nodes(const dsr_model *model, int32_t *nodes, int32_t capacity) {
  int32_t count = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    if (model->nodes[i].op == DSR_OP_DEFORM_ATTN && model->nodes[i].deform != NULL) {
      if (nodes != NULL && count < capacity)
        nodes[count] = i;
      count++;
    }
  }
  return count;
}

void dsn_positions_free(dsn_positions *positions) {
  if (positions == NULL)
    return;
  for (int32_t l = 0; l < positions->layer_count; l++) {
    free(positions->layers[l].patch_first);
    free(positions->layers[l].patch_grid);
    free(positions->layers[l].y);
    free(positions->layers[l].x);
  }
  free(positions->layers);
  memset(positions, 0, sizeof *positions);
}

typedef struct capture_state {
  const dsr_model *model;
  dsn_positions *out;
  int32_t *layer_of_node; /* node_count entries, -1 for other nodes */
  int32_t *next_patch;    /* per layer */
  float *scratch;         /* groups * 2 * largest grid */
  int32_t mismatch;       /* 1 when a report did not have the expected size */
} capture_state;

static void capture_stage(void *user, int32_t node_index, int32_t stage, const float *values,
                          int64_t count) {
  capture_state *state = user;
  if (stage != DSR_DEFORM_STAGE_OFFSET || node_index < 0 ||
      node_index >= state->model->node_count)
    return;
  int32_t l = state->layer_of_node[node_index];
  if (l < 0)
    return;
  dsn_layer_positions *lp = &state->out->layers[l];
  int32_t patch = state->next_patch[l]++;
  if (patch >= lp->patch_count) {
    state->mismatch = 1;
    return;
  }
  const dsr_deform_attn *layer = state->model->nodes[node_index].deform;
  int32_t grid_h = lp->patch_grid[2 * patch], grid_w = lp->patch_grid[2 * patch + 1];
  int64_t samples = (int64_t)grid_h * grid_w;
  if (count != (int64_t)layer->groups * 2 * samples) {
    state->mismatch = 1;
    return;
  }
  dsr_patch p;
  dsr_slice_patch(layer->height, layer->width, lp->slice, patch / lp->slice.cols,
                  patch % lp->slice.cols, &p);
  dsr_deform_positions(layer, lp->slice.semantics, &p, grid_h, grid_w, values, state->scratch);
  int64_t first = lp->patch_first[patch];
  for (int32_t g = 0; g < layer->groups; g++) {
    memcpy(lp->y + first + g * samples, state->scratch + (size_t)g * 2 * (size_t)samples,
           (size_t)samples * sizeof(float));
    memcpy(lp->x + first + g * samples, state->scratch + ((size_t)g * 2 + 1) * (size_t)samples,
           (size_t)samples * sizeof(float));
  }
}

/* Sizes the arrays of one layer's positions under slice. */
static ds_status positions_layer_init(const dsr_deform_attn *layer, int32_t node, dsr_slice slice,
                                      dsn_layer_positions *lp, int64_t *largest, ds_error *err) {
  lp->node = node;
  lp->slice = slice;
  lp->patch_count = slice.rows * slice.cols;
  lp->patch_first = calloc((size_t)lp->patch_count + 1, sizeof *lp->patch_first);
  lp->patch_grid = calloc((size_t)lp->patch_count * 2, sizeof *lp->patch_grid);
  if (lp->patch_first == NULL || lp->patch_grid == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the patch table of node %d", node);
  int64_t total = 0;
  for (int32_t patch = 0; patch < lp->patch_count; patch++) {
    dsr_patch p;
    dsr_slice_patch(layer->height, layer->width, slice, patch / slice.cols, patch % slice.cols,
                    &p);
    int32_t grid_h = dsr_deform_grid_size(layer, p.ext_y1 - p.ext_y0);
    int32_t grid_w = dsr_deform_grid_size(layer, p.ext_x1 - p.ext_x0);
    lp->patch_grid[2 * patch] = grid_h;
    lp->patch_grid[2 * patch + 1] = grid_w;
    lp->patch_first[patch] = total;
    int64_t samples = (int64_t)grid_h * grid_w;
    total += samples * layer->groups;
    if (samples * layer->groups > *largest)
      *largest = samples * layer->groups;
  }
  lp->patch_first[lp->patch_count] = total;
  lp->y = calloc((size_t)(total > 0 ? total : 1), sizeof(float));
  lp->x = calloc((size_t)(total > 0 ? total : 1), sizeof(float));
  if (lp->y == NULL || lp->x == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %lld sampling positions of node %d",
                   (long long)total, node);
  return DS_OK;
}

ds_status dsn_positions_capture(const dsr_model *model, const dsr_slice *slices,
                                const float *image, dsn_positions *out, ds_error *err) {
  if (model == NULL || image == NULL || out == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_positions_capture: NULL argument");
  memset(out, 0, sizeof *out);
  int32_t count = deform_nodes(model, NULL, 0);
  if (count > DSR_MAX_DEFORM_LAYERS)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "model has %d deformable layers; the runtime takes at most %d", count,
                   DSR_MAX_DEFORM_LAYERS);
  capture_state state;
  memset(&state, 0, sizeof state);
  state.model = model;
  state.out = out;
  ds_status status = DS_OK;
  void *arena = NULL;
  int32_t *nodes = calloc((size_t)(count > 0 ? count : 1), sizeof *nodes);
  state.layer_of_node = malloc((size_t)(model->node_count > 0 ? model->node_count : 1) *
                               sizeof *state.layer_of_node);
  state.next_patch = calloc((size_t)(count > 0 ? count : 1), sizeof *state.next_patch);
  out->layers = calloc((size_t)(count > 0 ? count : 1), sizeof *out->layers);
  if (nodes == NULL || state.layer_of_node == NULL || state.next_patch == NULL ||
      out->layers == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the position capture");
    goto done;
  }
  out->layer_count = count;
  deform_nodes(model, nodes, count);
  for (int32_t i = 0; i < model->node_count; i++)
    state.layer_of_node[i] = -1;

  int64_t largest = 0;
  for (int32_t l = 0; l < count; l++) {
    const dsr_deform_attn *layer = model->nodes[nodes[l]].deform;
    dsr_slice slice = slices != NULL ? slices[l] : dsr_slice_none();
    status = dsr_slice_validate(layer, slice, err);
    if (status == DS_OK)
      status = positions_layer_init(layer, nodes[l], slice, &out->layers[l], &largest, err);
    if (status != DS_OK)
      goto done;
    state.layer_of_node[nodes[l]] = l;
  }
  state.scratch = malloc((size_t)(largest > 0 ? largest : 1) * 2 * sizeof(float));
  if (state.scratch == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %lld floats of positions",
                     (long long)largest * 2);
    goto done;
  }

  dsr_plan_info plan;
  status = dsr_plan(model, DSR_MODE_FLOAT, 0, &plan, err);
  if (status != DS_OK)
    goto done;
  size_t arena_bytes = (plan.arena_bytes + 63) & ~(size_t)63;
  arena = aligned_alloc(64, arena_bytes > 0 ? arena_bytes : 64);
  if (arena == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the %zu-byte arena",
                     arena_bytes);
    goto done;
  }
  dsr_context ctx;
  status = dsr_context_init(&ctx, model, DSR_MODE_FLOAT, 0, arena, plan.arena_bytes, err);
  for (int32_t l = 0; l < count && status == DS_OK; l++)
    status = dsr_context_set_slice(&ctx, l, out->layers[l].slice, err);
  if (status != DS_OK)
    goto done;
  dsr_observer observer = {NULL, capture_stage, &state};
  dsr_context_set_observer(&ctx, &observer);
  const dsr_tensor *input = &model->tensors[model->input];
  memcpy(dsr_input_f32(&ctx), image, (size_t)dsr_tensor_elements(input) * sizeof(float));
  dsr_invoke(&ctx);
  for (int32_t l = 0; l < count; l++) {
    if (state.next_patch[l] != out->layers[l].patch_count)
      state.mismatch = 1;
  }
  if (state.mismatch)
    status = ds_fail(err, DS_ERR_INTERNAL,
                     "the float kernel reported offsets that do not match the patches of the "
                     "slice configuration; please report this");

done:
  free(arena);
  free(nodes);
  free(state.layer_of_node);
  free(state.next_patch);
  free(state.scratch);
  if (status != DS_OK)
    dsn_positions_free(out);
  return status;
}

/* ---- Compute model ------------------------------------------------------------------------- */

/* Sampling cycles of one patch: with positions, through the banks (stalls added to
 * *stalls); without, one cycle per group of lanes. */
static int64_t sampling_cycles(const dsn_preset *preset, const dsr_deform_attn *d, int32_t h,
                               int32_t w, int64_t samples, const float *y, const float *x,
                               int64_t *stalls) {
  if (y == NULL || x == NULL)
    return (int64_t)d->groups * ceil_div(samples, preset->sampling_lanes);
  dsr_bank_counts counts;
  memset(&counts, 0, sizeof counts);
  for (int32_t g = 0; g < d->groups; g++)
    dsr_banks_sample(preset->feature_banks, preset->sampling_lanes, h, w, y + g * samples,
                     x + g * samples, samples, 1, &counts);
  if (stalls != NULL)
    *stalls += counts.stall_cycles;
  return counts.cycles;
}

static int64_t dram_to_accel_cycles(const dsr_dram *dram, const dsn_preset *preset,
                                    int64_t dram_cycles) {
  double ns = (double)dram_cycles * dram->config.tck_ns;
  return (int64_t)((ns * preset->clock_mhz / 1000.0) + 0.999999);
}

/* Positions of one layer when they match it (node and slice), else NULL. */
static const dsn_layer_positions *layer_positions(const dsn_positions *positions, int32_t layer,
                                                  int32_t node, dsr_slice slice) {
  if (positions == NULL || layer >= positions->layer_count)
    return NULL;
  const dsn_layer_positions *lp = &positions->layers[layer];
  if (lp->node != node || lp->slice.rows != slice.rows || lp->slice.cols != slice.cols ||
      lp->slice.overlap != slice.overlap || lp->slice.semantics != slice.semantics)
    return NULL;
  return lp;
}

/* ---- Traces -------------------------------------------------------------------------------- */

typedef struct trace_file {
  FILE *file;
  char path[4096];
  char temp_path[4200];
  dsn_trace_format format;
  int32_t failed;
} trace_file;

typedef struct trace_sink {
  trace_file files[2];
  int32_t count;
  int64_t cycle_offset; /* added to the cycles of strategies that restart the DRAM clock */
} trace_sink;

static void trace_hook(void *user, uint64_t address, int32_t is_write, int64_t cycle) {
  trace_sink *sink = user;
  for (int32_t i = 0; i < sink->count; i++) {
    trace_file *t = &sink->files[i];
    int written;
    if (t->format == DSN_TRACE_RAMULATOR2)
      written = fprintf(t->file, "%s 0x%llx\n", is_write ? "ST" : "LD",
                        (unsigned long long)address);
    else
      written = fprintf(t->file, "0x%llx %s %lld\n", (unsigned long long)address,
                        is_write ? "WRITE" : "READ", (long long)(cycle + sink->cycle_offset));
    if (written < 0)
      t->failed = 1;
  }
}

static ds_status trace_open(trace_sink *sink, const char *path, dsn_trace_format format,
                            ds_error *err) {
  trace_file *t = &sink->files[sink->count];
  memset(t, 0, sizeof *t);
  if (strlen(path) >= sizeof t->path)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "trace path '%.80s...' is too long", path);
  snprintf(t->path, sizeof t->path, "%s", path);
  snprintf(t->temp_path, sizeof t->temp_path, "%s.tmp.%ld", path, (long)getpid());
  t->format = format;
  t->file = fopen(t->temp_path, "w");
  if (t->file == NULL)
    return ds_fail(err, DS_ERR_IO, "cannot create the trace file %s: %s; check that its folder "
                                   "exists and is writable",
                   t->temp_path, strerror(errno));
  sink->count++;
  return DS_OK;
}

/* Closes every file; when commit, renames each into place (all or nothing per file). */
static ds_status trace_close(trace_sink *sink, int commit, ds_error *err) {
  ds_status status = DS_OK;
  for (int32_t i = 0; i < sink->count; i++) {
    trace_file *t = &sink->files[i];
    int failed = t->failed || fflush(t->file) != 0 || fsync(fileno(t->file)) != 0;
    failed |= fclose(t->file) != 0;
    if (commit && !failed && status == DS_OK) {
      if (rename(t->temp_path, t->path) != 0)
        status = ds_fail(err, DS_ERR_IO, "cannot rename %s to %s: %s", t->temp_path, t->path,
                         strerror(errno));
    } else if (commit && failed && status == DS_OK) {
      status = ds_fail(err, DS_ERR_IO, "cannot write the trace file %s: %s; check the free space",
                       t->temp_path, strerror(errno));
    }
    if (status != DS_OK || !commit)
      remove(t->temp_path);
  }
  sink->count = 0;
  return status;
}

/* Reads "0x" and 1..16 hex digits; *end is the character after them. */
static int parse_hex(const char *text, const char **end) {
  if (text[0] != '0' || text[1] != 'x')
    return 0;
  int digits = 0;
  const char *c = text + 2;
  while ((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F')) {
    c++;
    digits++;
  }
  *end = c;
  return digits >= 1 && digits <= 16;
}

/* Returns 1 when text is 1..19 decimal digits and nothing else. */
static int parse_decimal(const char *text) {
  int digits = 0;
  while (text[digits] >= '0' && text[digits] <= '9')
    digits++;
  return digits >= 1 && digits <= 19 && text[digits] == '\0';
}

ds_status dsn_trace_count(const char *path, dsn_trace_format format, int64_t *reads,
                          int64_t *writes, ds_error *err) {
  *reads = 0;
  *writes = 0;
  FILE *file = fopen(path, "r");
  if (file == NULL)
    return ds_fail(err, DS_ERR_IO, "cannot open the trace %s: %s", path, strerror(errno));
  char line[256];
  int64_t number = 0;
  ds_status status = DS_OK;
  while (fgets(line, sizeof line, file) != NULL) {
    number++;
    size_t length = strlen(line);
    if (length == 0 || line[length - 1] != '\n') {
      status = ds_fail(err, DS_ERR_DATA, "%s:%lld: line too long or not ended by a newline",
                       path, (long long)number);
      break;
    }
    line[length - 1] = '\0';
    int ok = 0;
    const char *rest = NULL;
    if (format == DSN_TRACE_RAMULATOR2) {
      int is_load = strncmp(line, "LD ", 3) == 0, is_store = strncmp(line, "ST ", 3) == 0;
      ok = (is_load || is_store) && parse_hex(line + 3, &rest) && *rest == '\0';
      if (ok)
        *(is_store ? writes : reads) += 1;
    } else {
      ok = parse_hex(line, &rest) && *rest == ' ';
      int is_write = 0;
      if (ok && strncmp(rest, " READ ", 6) == 0) {
        rest += 6;
      } else if (ok && strncmp(rest, " WRITE ", 7) == 0) {
        rest += 7;
        is_write = 1;
      } else {
        ok = 0;
      }
      ok = ok && parse_decimal(rest);
      if (ok)
        *(is_write ? writes : reads) += 1;
    }
    if (!ok) {
      status = ds_fail(err, DS_ERR_DATA, "%s:%lld: '%.60s' is not a %s request line", path,
                       (long long)number, line,
                       format == DSN_TRACE_RAMULATOR2 ? "Ramulator 2 LD/ST" : "DRAMsim3");
      break;
    }
  }
  if (status == DS_OK && ferror(file))
    status = ds_fail(err, DS_ERR_IO, "cannot read the trace %s", path);
  fclose(file);
  return status;
}

/* ---- Schedule execution -------------------------------------------------------------------- */

typedef struct compute_context {
  const dsr_model *model;
  const dsn_preset *preset;
  const int32_t *nodes;        /* node per deformable layer */
  int32_t layer_count;
  const dsn_positions *sliced; /* may be NULL */
  int64_t *stalls;             /* per layer */
} compute_context;

static const dsr_dma_descriptor *find_descriptor(const dsr_schedule *schedule,
                                                 const dsr_dma_step *step, int32_t buffer) {
  int32_t count = step->load_count + step->store_count;
  for (int32_t d = 0; d < count; d++) {
    const dsr_dma_descriptor *desc = &schedule->descriptors[step->first_descriptor + d];
    if (desc->buffer == buffer)
      return desc;
  }
  return NULL;
}

typedef struct step_compute {
  compute_context *context;
  const dsr_schedule *schedule;
} step_compute;

static int64_t compute_step(void *user, const dsr_dma_step *step) {
  step_compute *sc = user;
  compute_context *cc = sc->context;
  /* Dense steps carry their compute cycles from the schedule generator. */
  if (step->layer < 0 || step->layer >= cc->layer_count)
    return step->compute_cycles;
  const dsr_deform_attn *d = cc->model->nodes[cc->nodes[step->layer]].deform;
  const dsr_dma_descriptor *load = find_descriptor(sc->schedule, step, DSR_BUFFER_FEATURE_IN);
  const dsr_dma_descriptor *store = find_descriptor(sc->schedule, step, DSR_BUFFER_FEATURE_OUT);
  int64_t pixel_bytes = (int64_t)d->channels * dsn_preset_element_bytes(cc->preset);
  if (load == NULL || store == NULL || pixel_bytes <= 0)
    return 0;
  int32_t ext_w = (int32_t)(load->row_bytes / pixel_bytes);
  int32_t ext_h = (int32_t)load->row_count;
  int64_t core = (int64_t)(store->row_bytes / pixel_bytes) * store->row_count;
  int32_t grid_h = dsr_deform_grid_size(d, ext_h), grid_w = dsr_deform_grid_size(d, ext_w);
  int64_t samples = (int64_t)grid_h * grid_w;
  int64_t cycles = dsn_deform_patch_array_cycles(d, ext_h, ext_w, core, cc->preset);

  const float *y = NULL, *x = NULL;
  if (cc->sliced != NULL && step->layer < cc->sliced->layer_count) {
    const dsn_layer_positions *lp = &cc->sliced->layers[step->layer];
    if (lp->node == cc->nodes[step->layer] && step->patch >= 0 &&
        step->patch < lp->patch_count && lp->patch_grid[2 * step->patch] == grid_h &&
        lp->patch_grid[2 * step->patch + 1] == grid_w) {
      y = lp->y + lp->patch_first[step->patch];
      x = lp->x + lp->patch_first[step->patch];
    }
  }
  return cycles + sampling_cycles(cc->preset, d, ext_h, ext_w, samples, y, x,
                                  &cc->stalls[step->layer]);
}

/* Runs schedule with dram (already open; a hook may be installed). */
static ds_status execute(const dsr_model *model, const dsr_schedule *schedule,
                         const dsn_preset *preset, const dsn_positions *sliced, dsr_dram *dram,
                         dsr_exec_layer *layers, int32_t layer_capacity, dsr_exec_layer *total,
                         int64_t *stalls, ds_error *err) {
  DS_TRY(dsr_exec_check(schedule, dram, layer_capacity, err));
  int32_t count = deform_nodes(model, NULL, 0);
  int32_t *nodes = calloc((size_t)(count > 0 ? count : 1), sizeof *nodes);
  int64_t *own_stalls = calloc((size_t)(count > 0 ? count : 1), sizeof *own_stalls);
  if (nodes == NULL || own_stalls == NULL) {
    free(nodes);
    free(own_stalls);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the executor's layer table");
  }
  deform_nodes(model, nodes, count);
  compute_context cc = {model, preset, nodes, count, sliced, own_stalls};
  step_compute sc = {&cc, schedule};
  dsr_exec_config config = {preset->clock_mhz, compute_step, &sc, NULL, 0};
  dsr_exec_run(schedule, dram, &config, layers, layer_capacity, total);
  if (stalls != NULL)
    memcpy(stalls, own_stalls, (size_t)count * sizeof *stalls);
  free(nodes);
  free(own_stalls);
  return DS_OK;
}

ds_status dsn_execute_schedule(const dsr_model *model, const dsr_schedule *schedule,
                               const dsn_preset *preset, const dsn_positions *sliced,
                               dsr_exec_layer *layers, int32_t layer_capacity,
                               dsr_exec_layer *total, ds_error *err) {
  if (model == NULL || schedule == NULL || preset == NULL || layers == NULL || total == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_execute_schedule: NULL argument");
  dsr_dram dram;
  void *state = NULL;
  DS_TRY(dsn_dram_open(preset, &dram, &state, err));
  ds_status status = execute(model, schedule, preset, sliced, &dram, layers, layer_capacity,
                             total, NULL, err);
  free(state);
  return status;
}

/* ---- Strategies ---------------------------------------------------------------------------- */

typedef struct measure_context {
  const dsr_model *model;
  const dsn_preset *preset;
  dsr_dram *dram;
  dsr_cache *cache;
  trace_sink *sink;      /* NULL when no trace */
  int32_t trace_strategy;
  uint64_t q_address;    /* scratch region of the gather dataflow's q */
} measure_context;

static void dram_begin(measure_context *mc, int32_t strategy) {
  dsr_dram_reset(mc->dram);
  int traced = mc->sink != NULL && mc->trace_strategy == strategy;
  dsr_dram_set_hook(mc->dram, traced ? trace_hook : NULL, traced ? mc->sink : NULL);
}

static void dram_end(measure_context *mc, int32_t strategy, dsn_measured *m) {
  const dsr_dram_counts *c = &mc->dram->counts;
  m->bytes = c->read_bytes + c->write_bytes;
  m->bursts = c->read_bursts + c->write_bursts;
  m->row_hits = c->row_hits;
  m->row_misses = c->row_misses;
  m->dram_cycles = dram_to_accel_cycles(mc->dram, mc->preset, mc->dram->end_cycle);
  if (mc->sink != NULL && mc->trace_strategy == strategy)
    mc->sink->cycle_offset += mc->dram->end_cycle;
  dsr_dram_set_hook(mc->dram, NULL, NULL);
}

static void finish_cycles(dsn_measured *m) {
  m->cycles = m->compute_cycles > m->dram_cycles ? m->compute_cycles : m->dram_cycles;
  m->compute_bound = m->compute_cycles >= m->dram_cycles;
}

/* Reads the four neighbours of every sample from x in DRAM (through the cache when given),
 * group by group. */
static void gather_samples(measure_context *mc, const dsr_deform_attn *d, uint64_t input,
                           const dsn_layer_positions *lp, int32_t use_cache) {
  if (lp == NULL)
    return;
  int64_t e = dsn_preset_element_bytes(mc->preset);
  int64_t cg = d->channels / d->groups;
  int64_t samples = (int64_t)lp->patch_grid[0] * lp->patch_grid[1];
  for (int32_t g = 0; g < d->groups; g++) {
    const float *ys = lp->y + g * samples;
    const float *xs = lp->x + g * samples;
    for (int64_t n = 0; n < samples; n++) {
      float sy = ys[n], sx = xs[n];
      if (!(sy > -2.0f && sy < (float)d->height + 1.0f && sx > -2.0f &&
            sx < (float)d->width + 1.0f))
        continue;
      int32_t y0 = (int32_t)floorf(sy), x0 = (int32_t)floorf(sx);
      for (int32_t dy = 0; dy < 2; dy++) {
        for (int32_t dx = 0; dx < 2; dx++) {
          int32_t yy = y0 + dy, xx = x0 + dx;
          if (yy < 0 || yy >= d->height || xx < 0 || xx >= d->width)
            continue;
          uint64_t address = input + (uint64_t)((((int64_t)yy * d->width + xx) * d->channels +
                                                 g * cg) * e);
          if (use_cache)
            dsr_cache_read(mc->cache, mc->dram, 0, address, (uint64_t)(cg * e));
          else
            dsr_dram_access(mc->dram, 0, address, (uint64_t)(cg * e), 0);
        }
      }
    }
  }
}

static void measure_layer(measure_context *mc, int32_t l, int32_t node,
                          const dsn_layer_addresses *a, const dsn_positions *unsliced,
                          dsn_layer_measure *out) {
  const dsr_deform_attn *d = mc->model->nodes[node].deform;
  const dsn_preset *preset = mc->preset;
  uint64_t e = (uint64_t)dsn_preset_element_bytes(preset);
  uint64_t map_bytes = (uint64_t)d->height * (uint64_t)d->width * (uint64_t)d->channels * e;
  int32_t grid_h = dsr_deform_grid_size(d, d->height), grid_w = dsr_deform_grid_size(d, d->width);
  int64_t samples = (int64_t)grid_h * grid_w;
  int64_t pixels = (int64_t)d->height * d->width;
  int64_t macs_cycles = dsn_deform_patch_array_cycles(d, d->height, d->width, pixels, preset);
  int64_t ideal_sampling = sampling_cycles(preset, d, d->height, d->width, samples, NULL, NULL,
                                           NULL);
  const dsn_layer_positions *lp = layer_positions(unsliced, l, node, dsr_slice_none());
  out->node = node;
  out->samples = samples * d->groups;

  /* Lower bound: weights, x once, the output once. */
  dsn_measured *m = &out->strategy[DSN_STRATEGY_LOWER_BOUND];
  dram_begin(mc, DSN_STRATEGY_LOWER_BOUND);
  dsn_walk_weights(mc->dram, d, preset, a->weights);
  dsr_dram_access(mc->dram, 0, a->input, map_bytes, 0);
  dsr_dram_access(mc->dram, 0, a->output, map_bytes, 1);
  dram_end(mc, DSN_STRATEGY_LOWER_BOUND, m);
  m->compute_cycles = macs_cycles + ideal_sampling;
  m->fits = 1;
  finish_cycles(m);

  /* Gather and cache: x, q out, the samples, q back, the output. */
  for (int32_t use_cache = 0; use_cache < 2; use_cache++) {
    int32_t strategy = use_cache ? DSN_STRATEGY_CACHE : DSN_STRATEGY_GATHER;
    m = &out->strategy[strategy];
    dram_begin(mc, strategy);
    if (use_cache)
      dsr_cache_reset(mc->cache);
    dsn_walk_weights(mc->dram, d, preset, a->weights);
    dsr_dram_access(mc->dram, 0, a->input, map_bytes, 0);
    dsr_dram_access(mc->dram, 0, mc->q_address, map_bytes, 1);
    gather_samples(mc, d, a->input, lp, use_cache);
    dsr_dram_access(mc->dram, 0, mc->q_address, map_bytes, 0);
    dsr_dram_access(mc->dram, 0, a->output, map_bytes, 1);
    dram_end(mc, strategy, m);
    if (use_cache) {
      m->cache_hits = mc->cache->counts.hits;
      m->cache_misses = mc->cache->counts.misses;
      m->buffer_bytes = mc->cache->config.capacity_bytes;
    } else {
      /* The neighbour vectors of one group of lanes in flight. */
      m->buffer_bytes = (int64_t)preset->sampling_lanes * 4 * (d->channels / d->groups) * (int64_t)e;
    }
    m->compute_cycles = macs_cycles + ideal_sampling;
    m->fits = 1;
    finish_cycles(m);
  }

  /* Whole map: the lower bound's traffic, x, q and the samples on chip. */
  m = &out->strategy[DSN_STRATEGY_WHOLE_MAP];
  *m = out->strategy[DSN_STRATEGY_LOWER_BOUND];
  /* The same requests again, so that a trace of this strategy holds them. */
  dram_begin(mc, DSN_STRATEGY_WHOLE_MAP);
  dsn_walk_weights(mc->dram, d, preset, a->weights);
  dsr_dram_access(mc->dram, 0, a->input, map_bytes, 0);
  dsr_dram_access(mc->dram, 0, a->output, map_bytes, 1);
  dram_end(mc, DSN_STRATEGY_WHOLE_MAP, m);
  m->buffer_bytes = 2 * (int64_t)map_bytes + 2 * (int64_t)d->channels * samples * (int64_t)e;
  m->fits = m->buffer_bytes <= preset->feature_buffer_bytes;
  int64_t stalls = 0;
  m->compute_cycles = macs_cycles + sampling_cycles(preset, d, d->height, d->width, samples,
                                                    lp != NULL ? lp->y : NULL,
                                                    lp != NULL ? lp->x : NULL, &stalls);
  m->bank_stall_cycles = stalls;
  finish_cycles(m);
}

static void measured_add(dsn_measured *sum, const dsn_measured *part) {
  sum->bytes += part->bytes;
  sum->bursts += part->bursts;
  sum->row_hits += part->row_hits;
  sum->row_misses += part->row_misses;
  sum->bank_stall_cycles += part->bank_stall_cycles;
  if (part->buffer_bytes > sum->buffer_bytes)
    sum->buffer_bytes = part->buffer_bytes;
  sum->cache_hits += part->cache_hits;
  sum->cache_misses += part->cache_misses;
  sum->dram_cycles += part->dram_cycles;
  sum->compute_cycles += part->compute_cycles;
  sum->cycles += part->cycles;
}

void dsn_model_measure_free(dsn_model_measure *measure) {
  if (measure == NULL)
    return;
  free(measure->layers);
  memset(measure, 0, sizeof *measure);
}

static void default_cache(const dsn_preset *preset, dsr_cache_config *cache) {
  cache->line_bytes = (int32_t)dsn_preset_burst_bytes(preset);
  cache->ways = 8;
  int64_t set_bytes = (int64_t)cache->line_bytes * cache->ways;
  int64_t sets = 1;
  while (set_bytes * sets * 2 <= preset->feature_buffer_bytes / 2)
    sets *= 2;
  cache->capacity_bytes = set_bytes * sets;
}

ds_status dsn_measure_model(const dsr_model *model, const dsr_slice *slices,
                            const dsn_preset *preset, const dsn_positions *unsliced,
                            const dsn_positions *sliced, const dsn_measure_options *options,
                            dsn_model_measure *out, ds_error *err) {
  if (model == NULL || preset == NULL || out == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_measure_model: NULL argument");
  memset(out, 0, sizeof *out);
  dsn_measure_options defaults;
  memset(&defaults, 0, sizeof defaults);
  if (options == NULL)
    options = &defaults;
  dsr_cache_config cache_config = options->cache;
  if (cache_config.line_bytes == 0)
    default_cache(preset, &cache_config);
  DS_TRY(dsr_cache_config_check(&cache_config, err));
  if (options->trace_strategy < 0 || options->trace_strategy >= DSN_STRATEGY_COUNT)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "trace strategy %d; expected 0..%d",
                   options->trace_strategy, DSN_STRATEGY_COUNT - 1);

  int32_t count = deform_nodes(model, NULL, 0);
  ds_status status = DS_OK;
  int32_t *nodes = calloc((size_t)(count > 0 ? count : 1), sizeof *nodes);
  dsn_layer_addresses *addresses = calloc((size_t)(count > 0 ? count : 1), sizeof *addresses);
  dsr_exec_layer *exec_layers = calloc((size_t)(count > 0 ? count : 1), sizeof *exec_layers);
  int64_t *stalls = calloc((size_t)(count > 0 ? count : 1), sizeof *stalls);
  size_t cache_bytes = dsr_cache_state_bytes(&cache_config);
  void *cache_state = malloc(cache_bytes);
  void *dram_state = NULL;
  dsr_dram dram;
  dsr_cache cache;
  trace_sink sink;
  memset(&sink, 0, sizeof sink);
  dsr_schedule schedule;
  memset(&schedule, 0, sizeof schedule);
  out->layers = calloc((size_t)(count > 0 ? count : 1), sizeof *out->layers);
  if (nodes == NULL || addresses == NULL || exec_layers == NULL || stalls == NULL ||
      cache_state == NULL || out->layers == NULL) {
    status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate the measurement of %d layers",
                     count);
    goto done;
  }
  out->layer_count = count;
  deform_nodes(model, nodes, count);

  status = dsn_dram_open(preset, &dram, &dram_state, err);
  if (status == DS_OK)
    status = dsr_cache_init(&cache, &cache_config, cache_state, cache_bytes, err);
  uint64_t end_address = 0;
  if (status == DS_OK)
    status = dsn_schedule_layout(model, preset, 0, addresses, &end_address, err);
  if (status == DS_OK)
    status = dsn_schedule_build(model, slices, preset, addresses, &schedule, err);
  if (status == DS_OK && options->ramulator_trace_path != NULL)
    status = trace_open(&sink, options->ramulator_trace_path, DSN_TRACE_RAMULATOR2, err);
  if (status == DS_OK && options->dramsim_trace_path != NULL)
    status = trace_open(&sink, options->dramsim_trace_path, DSN_TRACE_DRAMSIM3, err);
  if (status != DS_OK)
    goto done;

  measure_context mc;
  memset(&mc, 0, sizeof mc);
  mc.model = model;
  mc.preset = preset;
  mc.dram = &dram;
  mc.cache = &cache;
  mc.sink = sink.count > 0 ? &sink : NULL;
  mc.trace_strategy = options->trace_strategy;
  mc.q_address = align_up(end_address, dsn_layout_alignment(preset));
  uint64_t largest_map = 0;
  for (int32_t l = 0; l < count; l++) {
    const dsr_deform_attn *d = model->nodes[nodes[l]].deform;
    uint64_t map = (uint64_t)d->height * (uint64_t)d->width * (uint64_t)d->channels *
                   (uint64_t)dsn_preset_element_bytes(preset);
    if (map > largest_map)
      largest_map = map;
  }
  if (mc.q_address + largest_map > dsr_dram_capacity_bytes(&dram.config)) {
    status = ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "the layout of %d deformable layers and a q scratch map needs %llu bytes, "
                     "more than the %llu bytes of the modelled DRAM; give the preset more "
                     "rows, ranks or channels",
                     count, (unsigned long long)(mc.q_address + largest_map),
                     (unsigned long long)dsr_dram_capacity_bytes(&dram.config));
    goto done;
  }

  for (int32_t l = 0; l < count; l++) {
    dsn_layer_measure *lm = &out->layers[l];
    measure_layer(&mc, l, nodes[l], &addresses[l], unsliced, lm);
    dsr_slice slice = slices != NULL ? slices[l] : model->nodes[nodes[l]].deform->slice;
    lm->slice = slice;
    dsn_layer_cost cost;
    status = dsn_oracle_layer(model->nodes[nodes[l]].deform, slice, preset, &cost, err);
    if (status != DS_OK)
      goto done;
    lm->strategy[DSN_STRATEGY_SLICED].buffer_bytes = cost.buffer_bytes;
    lm->strategy[DSN_STRATEGY_SLICED].fits = cost.fits;
  }

  /* Sliced: the schedule through the executor, one run for every layer. */
  dsr_dram_reset(&dram);
  int traced = mc.sink != NULL && mc.trace_strategy == DSN_STRATEGY_SLICED;
  dsr_dram_set_hook(&dram, traced ? trace_hook : NULL, traced ? &sink : NULL);
  dsr_exec_layer total;
  status = execute(model, &schedule, preset, sliced, &dram, exec_layers, count, &total, stalls,
                   err);
  dsr_dram_set_hook(&dram, NULL, NULL);
  if (status != DS_OK)
    goto done;
  for (int32_t l = 0; l < count; l++) {
    dsn_measured *m = &out->layers[l].strategy[DSN_STRATEGY_SLICED];
    const dsr_exec_layer *x = &exec_layers[l];
    m->bytes = x->dram.read_bytes + x->dram.write_bytes;
    m->bursts = x->dram.read_bursts + x->dram.write_bursts;
    m->row_hits = x->dram.row_hits;
    m->row_misses = x->dram.row_misses;
    m->bank_stall_cycles = stalls[l];
    m->dram_cycles = x->dma_cycles;
    m->compute_cycles = x->compute_cycles;
    m->cycles = x->cycles;
    m->compute_bound = x->compute_bound;
  }

  for (int32_t s = 0; s < DSN_STRATEGY_COUNT; s++) {
    out->total[s].fits = 1;
    for (int32_t l = 0; l < count; l++) {
      measured_add(&out->total[s], &out->layers[l].strategy[s]);
      out->total[s].fits = out->total[s].fits && out->layers[l].strategy[s].fits;
    }
    out->total[s].compute_bound = out->total[s].compute_cycles >= out->total[s].dram_cycles;
  }

done:
  if (sink.count > 0) {
    ds_status closed = trace_close(&sink, status == DS_OK, err);
    if (status == DS_OK)
      status = closed;
  }
  dsn_schedule_free(&schedule);
  free(nodes);
  free(addresses);
  free(exec_layers);
  free(stalls);
  free(cache_state);
  free(dram_state);
  if (status != DS_OK)
    dsn_model_measure_free(out);
  return status;
}

void dsn_model_measure_print(const dsn_model_measure *measure, const dsn_preset *preset,
                             FILE *out) {
  fprintf(out, "Measured deformable layers, preset %s (%lld-byte bursts, %lld-byte feature "
               "buffer, %d lanes, %d banks); cycles at %.0f MHz\n",
          preset->name, (long long)dsn_preset_burst_bytes(preset),
          (long long)preset->feature_buffer_bytes, preset->sampling_lanes,
          preset->feature_banks, preset->clock_mhz);
  fprintf(out, "%5s %-11s %12s %9s %9s %8s %10s %4s %11s %11s %11s %s\n", "layer", "strategy",
          "DRAM bytes", "bursts", "row miss", "stalls", "buffer", "fits", "compute", "DRAM",
          "cycles", "bound");
  for (int32_t l = 0; l <= measure->layer_count; l++) {
    const dsn_measured *rows = l < measure->layer_count ? measure->layers[l].strategy
                                                        : measure->total;
    char label[16];
    if (l < measure->layer_count)
      snprintf(label, sizeof label, "%d", l);
    else
      snprintf(label, sizeof label, "total");
    for (int32_t s = 0; s < DSN_STRATEGY_COUNT; s++) {
      const dsn_measured *m = &rows[s];
      fprintf(out, "%5s %-11s %12lld %9lld %9lld %8lld %10lld %4s %11lld %11lld %11lld %s\n",
              s == 0 ? label : "", strategy_names[s], (long long)m->bytes, (long long)m->bursts,
              (long long)m->row_misses, (long long)m->bank_stall_cycles,
              (long long)m->buffer_bytes, m->fits ? "yes" : "no",
              (long long)m->compute_cycles, (long long)m->dram_cycles, (long long)m->cycles,
              m->compute_bound ? "compute" : "bandwidth");
    }
  }
}
