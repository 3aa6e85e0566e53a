/* deformslice run: an artifact on a data set, printing top-1 accuracy. */
#include <stdio.h>
#include <string.h>

#include "common/ds_model.h"
#include "dst_args.h"
#include "dst_commands.h"
#include "dst_data.h"
#include "dst_eval.h"
#include "dst_progress.h"
#include "dst_source.h"
#include "formats/dsf_artifact.h"

int dst_exit_status(ds_status status) {
  return status == DS_ERR_INVALID_ARGUMENT ? 2 : 1;
}

int dst_report_error(const ds_error *err) {
  fprintf(stderr, "deformslice: error: %s\n",
          err->message[0] != '\0' ? err->message : ds_status_name(err->status));
  return dst_exit_status(err->status);
}

/* Parses "train", "validation" (or "val") and "test". */
static ds_status parse_split(const char *text, dst_split *split, ds_error *err) {
  if (strcmp(text, "train") == 0)
    *split = DST_SPLIT_TRAIN;
  else if (strcmp(text, "validation") == 0 || strcmp(text, "val") == 0)
    *split = DST_SPLIT_VALIDATION;
  else if (strcmp(text, "test") == 0)
    *split = DST_SPLIT_TEST;
  else
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--split '%s' is not a split; use train, validation or test", text);
  return DS_OK;
}

int dst_cmd_run(int argc, char **argv) {
  dst_data_args data_args = DST_DATA_ARGS_DEFAULT;
  const char *split_text = "test", *limit_text = "0";
  const char *mode_text = "fixed", *threads_text = NULL;
  const dst_option options[] = {
      DST_DATA_OPTION_ROWS(data_args),
      {"split", "NAME", "train, validation or test (default test)", &split_text},
      {"limit", "N", "evaluate the first N images only (default 0: all)", &limit_text},
      {"mode", "MODE", "fixed (integer kernels, default) or float; both apply the slicing "
                       "baked into the artifact",
       &mode_text},
      {"threads", "N", "worker threads (default: one per core)", &threads_text},
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
    dst_args_print_help(help ? stdout : stderr, "usage: deformslice run ARTIFACT [options]",
                        options, option_count);
    return help ? 0 : 2;
  }

  int64_t limit = 0, threads = dst_default_threads();
  dst_split split = DST_SPLIT_TEST;
  if (dst_args_int("limit", limit_text, 0, 1000000000, &limit, &err) != DS_OK ||
      (threads_text != NULL && dst_args_int("threads", threads_text, 1, 64, &threads, &err)) ||
      parse_split(split_text, &split, &err) != DS_OK)
    return dst_report_error(&err);
  dst_data_options data_options;
  if (dst_data_options_parse(&data_args, &data_options, &err) != DS_OK)
    return dst_report_error(&err);
  dsr_mode mode;
  if (strcmp(mode_text, "fixed") == 0) {
    mode = DSR_MODE_FIXED;
  } else if (strcmp(mode_text, "float") == 0) {
    mode = DSR_MODE_FLOAT;
  } else {
    ds_fail(&err, DS_ERR_INVALID_ARGUMENT, "--mode '%s' is not a mode; use fixed or float",
            mode_text);
    return dst_report_error(&err);
  }

  dsr_model model = {0};
  dst_dataset data = {0};
  int32_t channels = 0, side = 0;
  ds_status status = dsf_read_file(positional[0], &model, NULL, NULL, &err);
  if (status == DS_OK)
    status = dst_data_input_shape(&model, &channels, &side, &err);
  if (status == DS_OK && mode == DSR_MODE_FIXED && !model.quantized)
    status = ds_fail(&err, DS_ERR_QUANT, "%s holds no fixed-point parameters; use --mode float",
                     positional[0]);
  if (status == DS_OK)
    status = dst_data_load(&data_options, split, channels, side, (int32_t)limit, &data, &err);

  dst_eval_result result = {0};
  if (status == DS_OK) {
    dst_progress progress;
    dst_progress_start(&progress, "evaluating");
    dst_eval_options eval = {.mode = mode, .threads = (int32_t)threads,
                             .progress = dst_progress_update, .progress_user = &progress};
    status = dst_evaluate(&model, &data, 0, data.count, &eval, &result, NULL, &err);
  }
  if (status == DS_OK) {
    printf("%s: %s top-1 on %d %s images: %.2f%% (%d correct), with the artifact's slicing\n",
           positional[0], mode == DSR_MODE_FIXED ? "fixed-point" : "float", result.count,
           dst_split_name(split), result.top1_percent, result.correct);
  }

  dst_dataset_free(&data);
  ds_model_free(&model);
  return status == DS_OK ? 0 : dst_report_error(&err);
}
