/* deformslice cost: DRAM traffic, buffers and cycles of every layer under every strategy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/ds_file.h"
#include "dst_args.h"
#include "dst_commands.h"
#include "dst_cost.h"
#include "dst_data.h"
#include "dst_cost_simulate.h"
#include "nas/dsn_cost.h"
#include "nas/dsn_preset.h"

/* Processor time of this process: on a shared machine it measures the work, where the wall
 * clock also counts waiting for a core. */
static double seconds_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Writes text to path atomically, naming what it is in errors. */
static ds_status write_text(const char *path, char *text, const char *what, ds_error *err) {
  if (text == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot render the %s report", what);
  ds_status status = ds_file_write_atomic(path, text, strlen(text), err);
  free(text);
  return status;
}

int dst_cmd_cost(int argc, char **argv) {
  const char *preset_name = NULL, *input_shape = NULL, *slices_text = NULL;
  const char *json_path = NULL, *csv_path = NULL, *quiet = NULL;
  const char *simulate = NULL, *data_dir = NULL, *input_f32 = NULL, *offset_model = NULL;
  const char *ramulator = NULL, *dramsim = NULL, *trace_strategy = NULL;
  const dst_option options[] = {
      {"preset", "NAME|FILE", "accelerator: zcu102 (default), kv260, pynq-z2 or a JSON file",
       &preset_name},
      {"input-shape", "SHAPE",
       "input size: NxCxHxW for ONNX, HxW for a described architecture (default 224x224)",
       &input_shape},
      {"slices", "TEXT",
       "auto (least traffic that fits), auto+O (the same among slicings with overlap >= O; "
       "an unsliced 1x1+0 layer stays a candidate), own (an artifact's stored slices), RxC+O "
       "for every layer (R rows and C columns of patches, O pixels of overlap; RxC+Oc for "
       "crop semantics, plain RxC+O for physical), or a comma-separated list, one per "
       "deformable layer",
       &slices_text},
      {"json", "FILE", "also write the report as JSON (atomically)", &json_path},
      {"csv", "FILE", "also write the report as CSV, one line per layer and strategy",
       &csv_path},
      {"quiet", NULL, "print the totals without the per-layer table", &quiet},
      {"simulate", NULL,
       "measure the deformable layers on the modelled DRAM and on-chip memories from sampling "
       "positions (adds the cache strategy, row hits and bank-conflict stalls)",
       &simulate},
      {"data", "DIR", "Fashion-MNIST folder for the positions of single-channel models "
                      "(default " DST_FASHION_MNIST_DIR ")",
       &data_dir},
      {"input-f32", "FILE", "raw float32 NCHW input to capture the positions on", &input_f32},
      {"offset-model", "FILE",
       "offset model for models without weights (default models/offset_model.json)",
       &offset_model},
      {"trace-ramulator", "FILE", "with --simulate: write a Ramulator 2 trace", &ramulator},
      {"trace-dramsim3", "FILE", "with --simulate: write a DRAMsim3 trace", &dramsim},
      {"trace-strategy", "NAME",
       "strategy whose DRAM requests the traces hold: gather, cache, whole_map, sliced "
       "(default) or lower_bound",
       &trace_strategy},
  };
  const int option_count = (int)(sizeof options / sizeof options[0]);
  const char *positional[1];
  int positional_count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);
  if (dst_args_parse(argc, argv, 0, options, option_count, positional, 1, &positional_count,
                     &help, &err) != DS_OK)
    return dst_report_error(&err);
  if (help || positional_count != 1) {
    dst_args_print_help(
        help ? stdout : stderr,
        "usage: deformslice cost MODEL.onnx|ARTIFACT|ARCH [options]\n\n"
        "Prices every layer under the accelerator preset: DRAM bytes, bursts, row misses,\n"
        "buffer bytes and cycles of the lower bound, gather, cache, whole-map and sliced\n"
        "strategies, and the totals. ARCH is a described architecture without weights:\n"
        "dat-t, dat-s, dat-b, dat-t++, dat-s++ or dat-b++.",
        options, option_count);
    return help ? 0 : 2;
  }

  dsn_preset preset;
  if (dsn_preset_resolve(preset_name, &preset, &err) != DS_OK)
    return dst_report_error(&err);

  double start = seconds_now();
  dst_cost_input input;
  if (dst_cost_load(positional[0], input_shape, &preset, &input, &err) != DS_OK)
    return dst_report_error(&err);
  dsn_cost_report report;
  ds_status status = dst_cost_choose_slices(&input, slices_text, &preset, &err);
  if (status == DS_OK)
    status = dsn_cost_report_build(&input.layers, input.slices, &preset, &report, &err);
  if (status != DS_OK) {
    dst_cost_input_free(&input);
    return dst_report_error(&err);
  }
  report.oracle_seconds = seconds_now() - start;

  if (simulate == NULL && (ramulator != NULL || dramsim != NULL || data_dir != NULL ||
                           input_f32 != NULL || offset_model != NULL || trace_strategy != NULL)) {
    ds_fail(&err, DS_ERR_INVALID_ARGUMENT,
            "--data, --input-f32, --offset-model and the trace options need --simulate");
    status = DS_ERR_INVALID_ARGUMENT;
  }
  if (status == DS_OK && simulate != NULL) {
    dst_simulate_options sim = {data_dir, input_f32, offset_model, ramulator, dramsim,
                                DSN_STRATEGY_SLICED};
    if (trace_strategy != NULL) {
      sim.trace_strategy = -1;
      for (int32_t k = 0; k < DSN_STRATEGY_COUNT; k++) {
        if (strcmp(trace_strategy, dsn_cost_strategy_name(k)) == 0)
          sim.trace_strategy = k;
      }
      if (sim.trace_strategy < 0)
        status = ds_fail(&err, DS_ERR_INVALID_ARGUMENT,
                         "--trace-strategy '%s' is not a strategy; use lower_bound, gather, "
                         "cache, whole_map or sliced",
                         trace_strategy);
    }
    if (status == DS_OK)
      status = dst_cost_simulate(&input, &preset, &sim, &report, &err);
  }
  if (status != DS_OK) {
    dsn_cost_report_free(&report);
    dst_cost_input_free(&input);
    return dst_report_error(&err);
  }

  if (quiet == NULL)
    dsn_cost_report_print(&report, stdout);
  else
    dsn_cost_report_print_summary(&report, stdout);
  dst_cost_check_stored(&input, &report, stdout);
  fprintf(stdout, "oracle run time: %.3f s of processor time\n", report.oracle_seconds);

  if (json_path != NULL)
    status = write_text(json_path, dsn_cost_report_json(&report), "JSON", &err);
  if (status == DS_OK && csv_path != NULL)
    status = write_text(csv_path, dsn_cost_report_csv(&report), "CSV", &err);
  dsn_cost_report_free(&report);
  dst_cost_input_free(&input);
  return status == DS_OK ? 0 : dst_report_error(&err);
}
