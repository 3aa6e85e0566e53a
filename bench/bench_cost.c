/*
 * Cost benchmark: sliced DRAM traffic against the gather, cache and whole-map baselines and
 * the lower bound, for the bundled model on a real Fashion-MNIST input and for DAT-T and
 * DAT-T++ (described, synthetic offsets from the offset model) at 224x224 and 800x1333, on
 * the zcu102 and pynq-z2 presets. Every strategy is measured on the modelled DRAM
 * (`deformslice cost --simulate`). Also times the analytic oracle on DAT-T++ at 800x1333
 * against the simulation of the same model in the same run.
 *
 * Usage: bench_cost [SLICES (default auto+1)] [REPEATS (default 20)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nas/dsn_cost.h"
#include "tools/lib/dst_commands.h" /* DST_DEFAULT_MODEL */
#include "tools/lib/dst_cost.h"
#include "tools/lib/dst_cost_simulate.h"

/* Processor time: the machine may be shared, and waiting for a core is not the oracle's. */
static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int fail(const ds_error *err) {
  fprintf(stderr, "bench_cost: %s\n", err->message);
  return 1;
}

/* Analytic report of what under preset; with simulate, the deformable layers measured. */
static ds_status run_one(const char *what, const char *shape, const dsn_preset *preset,
                         const char *slices, int simulate, dsn_cost_report *report,
                         ds_error *err) {
  dst_cost_input input;
  DS_TRY(dst_cost_load(what, shape, preset, &input, err));
  ds_status status = dst_cost_choose_slices(&input, slices, preset, err);
  if (status == DS_OK)
    status = dsn_cost_report_build(&input.layers, input.slices, preset, report, err);
  if (status == DS_OK && simulate) {
    dst_simulate_options options;
    memset(&options, 0, sizeof options);
    options.trace_strategy = DSN_STRATEGY_SLICED;
    status = dst_cost_simulate(&input, preset, &options, report, err);
    if (status != DS_OK)
      dsn_cost_report_free(report);
  }
  dst_cost_input_free(&input);
  return status;
}

static double percent(double part, double whole) {
  return whole > 0 ? 100.0 * part / whole : -1.0;
}

/* One line per scope: sliced relative to each baseline in bytes, bursts and DRAM time. */
static void print_ratios(const char *model, const char *shape, const char *preset,
                         const char *scope, const dsn_cost_totals *totals) {
  const dsn_strategy_cost *s = totals->strategies;
  const dsn_strategy_cost *sliced = &s[DSN_STRATEGY_SLICED];
  printf("%-9s %-9s %-8s %-6s", model, shape, preset, scope);
  const int32_t baselines[] = {DSN_STRATEGY_GATHER, DSN_STRATEGY_CACHE, DSN_STRATEGY_WHOLE_MAP,
                               DSN_STRATEGY_LOWER_BOUND};
  for (size_t i = 0; i < sizeof baselines / sizeof baselines[0]; i++) {
    const dsn_strategy_cost *b = &s[baselines[i]];
    printf(" | %6.1f %6.1f %6.1f", percent((double)sliced->traffic.bytes, (double)b->traffic.bytes),
           percent((double)sliced->traffic.bursts, (double)b->traffic.bursts),
           percent(sliced->traffic.time_ns, b->traffic.time_ns));
  }
  printf(" | %10.2f %-3s %s\n", (double)sliced->traffic.bytes / 1e6, sliced->fits ? "yes" : "no",
         s[DSN_STRATEGY_WHOLE_MAP].fits ? "yes" : "no");
}

int main(int argc, char **argv) {
  const char *slices = argc > 1 ? argv[1] : "auto+1";
  const int32_t repeats = argc > 2 ? atoi(argv[2]) : 20;
  ds_error err;
  ds_error_clear(&err);

  const char *presets[] = {"zcu102", "pynq-z2"};
  const struct {
    const char *what;
    const char *label;
    const char *shape;
    const char *slices;
  } models[] = {
      {DST_DEFAULT_MODEL, "nano", NULL, "1x1+0"}, /* unsliced, as compile keeps it */
      {"dat-t", "DAT-T", "224x224", NULL},
      {"dat-t++", "DAT-T++", "224x224", NULL},
      {"dat-t", "DAT-T", "800x1333", NULL},
      {"dat-t++", "DAT-T++", "800x1333", NULL},
  };

  printf("sliced traffic as %% of each baseline (bytes, bursts, DRAM time), slices %s\n",
         slices);
  printf("%-9s %-9s %-8s %-6s | %-20s | %-20s | %-20s | %-20s | %10s %-3s %s\n", "model",
         "input", "preset", "scope", "vs gather", "vs cache", "vs whole map", "vs lower bound",
         "sliced MB", "fit", "whole map fits");
  for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
    for (size_t p = 0; p < 2; p++) {
      dsn_preset preset;
      if (dsn_preset_resolve(presets[p], &preset, &err) != DS_OK)
        return fail(&err);
      dsn_cost_report report;
      const char *chosen = models[m].slices != NULL ? models[m].slices : slices;
      if (run_one(models[m].what, models[m].shape, &preset, chosen, 1, &report, &err) != DS_OK)
        return fail(&err);
      const char *shape = models[m].shape != NULL ? models[m].shape : "32x32";
      print_ratios(models[m].label, shape, presets[p], "deform", &report.deform);
      print_ratios(models[m].label, shape, presets[p], "model", &report.model);
      if (m == 0 && p == 0)
        printf("  (positions: %s)\n", report.offsets);
      if (m == 1 && p == 0)
        printf("  (positions: %s)\n", report.offsets);
      dsn_cost_report_free(&report);
    }
  }

  /* Oracle run time: the analytic report against the simulation, same model, same run. */
  dsn_preset zcu;
  if (dsn_preset_resolve("zcu102", &zcu, &err) != DS_OK)
    return fail(&err);
  double start = now_s();
  for (int32_t i = 0; i < repeats; i++) {
    dsn_cost_report report;
    if (run_one("dat-t++", "800x1333", &zcu, slices, 0, &report, &err) != DS_OK)
      return fail(&err);
    dsn_cost_report_free(&report);
  }
  double analytic_s = (now_s() - start) / repeats;
  start = now_s();
  dsn_cost_report simulated;
  if (run_one("dat-t++", "800x1333", &zcu, slices, 1, &simulated, &err) != DS_OK)
    return fail(&err);
  double simulated_s = now_s() - start;
  dsn_cost_report_free(&simulated);
  start = now_s();
  for (int32_t i = 0; i < repeats; i++) {
    dsn_cost_report report;
    if (run_one("dat-t++", "800x1333", &zcu, "4x4+1", 0, &report, &err) != DS_OK)
      return fail(&err);
    dsn_cost_report_free(&report);
  }
  double fixed_s = (now_s() - start) / repeats;
  printf("\nanalytic oracle, DAT-T++ at 800x1333 on zcu102, processor time per run (mean of "
         "%d):\n", repeats);
  printf("  given slices (4x4+1), layer list and every layer: %.4f s\n", fixed_s);
  printf("  slices %s chosen per layer, then every layer:    %.4f s\n", slices, analytic_s);
  printf("  the same with --simulate:                          %.4f s, %.0fx the analytic run\n",
         simulated_s, simulated_s / analytic_s);
  return 0;
}
