/*
 * deformslice audit: float against fixed-point top-1, their agreement, and the per-tensor
 * signal-to-quantization-noise ratio.
 *
 * The model comes from an artifact (its own quantization and slicing) or from an ONNX file,
 * which is then calibrated and quantized here as compile does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_model.h"
#include "converter/dsc_import.h"
#include "dst_args.h"
#include "dst_commands.h"
#include "dst_compile.h"
#include "dst_progress.h"
#include "formats/dsf_artifact.h"
#include "quant/dsq_audit.h"

typedef struct audit_config {
  const char *model_path;
  const char *artifact_path;
  const char *data_dir;
  int32_t test_images;
  int32_t tensor_images;
  int32_t calibration_images;
  int32_t threads;
  dst_calibration_choice calibration;
  dsc_options import_options; /* input_rank 0: the file's input shape */
} audit_config;

static ds_status load_model(const audit_config *c, dsr_model *model, ds_error *err) {
  if (c->artifact_path != NULL)
    return dsf_read_file(c->artifact_path, model, NULL, NULL, err);

  DS_TRY(dsc_import_file(c->model_path, &c->import_options, model, NULL, err));
  const dsr_tensor *input = &model->tensors[model->input];
  dst_dataset calibration;
  DS_TRY(dst_dataset_load(c->data_dir, DST_SPLIT_TRAIN, input->dims[input->rank - 1],
                          c->calibration_images, &calibration, err));
  char method[32];
  ds_status status = dst_quantize_model(model, &calibration, &c->calibration, c->threads, method,
                                        sizeof method, err);
  dst_dataset_free(&calibration);
  return status;
}

/* Predictions of every test image in one mode, with the model's own slicing. */
static ds_status predict(const dsr_model *model, const dst_dataset *test, dsr_mode mode,
                         int32_t threads, uint8_t *predictions, double *top1, ds_error *err) {
  dst_progress progress;
  dst_progress_start(&progress, mode == DSR_MODE_FIXED ? "fixed point" : "float");
  dst_eval_options eval = {.mode = mode, .threads = threads, .progress = dst_progress_update,
                           .progress_user = &progress};
  dst_eval_result result;
  DS_TRY(dst_evaluate(model, test, 0, test->count, &eval, &result, predictions, err));
  *top1 = result.top1_percent;
  return DS_OK;
}

static ds_status run_audit(const audit_config *c, ds_error *err) {
  dsr_model model = {0};
  dst_dataset test = {0};
  uint8_t *float_predictions = NULL, *fixed_predictions = NULL;
  dsq_audit_report report = {0};

  ds_status status = load_model(c, &model, err);
  if (status == DS_OK && !model.quantized)
    status = ds_fail(err, DS_ERR_QUANT, "%s holds no fixed-point parameters to audit",
                     c->artifact_path != NULL ? c->artifact_path : c->model_path);
  const dsr_tensor *input = status == DS_OK ? &model.tensors[model.input] : NULL;
  if (status == DS_OK)
    status = dst_dataset_load(c->data_dir, DST_SPLIT_TEST, input->dims[input->rank - 1],
                              c->test_images, &test, err);
  if (status == DS_OK) {
    float_predictions = malloc((size_t)test.count);
    fixed_predictions = malloc((size_t)test.count);
    if (float_predictions == NULL || fixed_predictions == NULL)
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d predictions", test.count);
  }

  double float_top1 = 0.0, fixed_top1 = 0.0;
  if (status == DS_OK)
    status = predict(&model, &test, DSR_MODE_FLOAT, c->threads, float_predictions, &float_top1,
                     err);
  if (status == DS_OK)
    status = predict(&model, &test, DSR_MODE_FIXED, c->threads, fixed_predictions, &fixed_top1,
                     err);

  int32_t tensor_images = c->tensor_images < test.count ? c->tensor_images : test.count;
  if (status == DS_OK) {
    fprintf(stderr, "  comparing every tensor on %d images\n", tensor_images);
    status = dsq_audit(&model, test.images, tensor_images, NULL, &report, err);
  }

  if (status == DS_OK) {
    int32_t agree = 0;
    for (int32_t i = 0; i < test.count; i++)
      agree += float_predictions[i] == fixed_predictions[i];

    dsq_audit_report_print(&report, stdout);
    printf("\nmodel: %s\n", c->artifact_path != NULL ? c->artifact_path : c->model_path);
    printf("test top-1 on %d images: float %.2f%%, fixed point %.2f%% (%+.2f points)\n",
           test.count, float_top1, fixed_top1, fixed_top1 - float_top1);
    printf("float and fixed point agree on %d of %d images (%.2f%%)\n", agree, test.count,
           100.0 * agree / (test.count > 0 ? test.count : 1));
    if (report.tensor_count > 0) {
      const dsq_tensor_audit *worst = &report.tensors[report.worst_entry];
      const dsq_tensor_audit *output = &report.tensors[report.output_entry];
      printf("lowest SQNR: %s at %.1f dB; model output %s at %.1f dB\n", worst->name,
             worst->sqnr_db, output->name, output->sqnr_db);
    }
  }

  dsq_audit_report_free(&report);
  free(float_predictions);
  free(fixed_predictions);
  dst_dataset_free(&test);
  ds_model_free(&model);
  return status;
}

int dst_cmd_audit(int argc, char **argv) {
  const char *model = DST_DEFAULT_MODEL, *artifact = NULL, *data = DST_FASHION_MNIST_DIR;
  const char *test_images = "10000", *tensor_images = "100", *calibration_images = "500";
  const char *threads = NULL, *calibration = "minmax", *percentile = NULL, *shape = NULL;
  const dst_option options[] = {
      {"model", "FILE", "ONNX model, calibrated and quantized here (default: the bundled model)",
       &model},
      {"artifact", "FILE", "audit an artifact's own quantization and slicing instead", &artifact},
      {"data", "DIR", "folder with the gzip IDX files (default " DST_FASHION_MNIST_DIR ")", &data},
      {"test-images", "N", "test images for top-1 and agreement (default 10000)", &test_images},
      {"tensor-images", "N", "test images for the per-tensor comparison (default 100)",
       &tensor_images},
      {"calibration-images", "N", "training images for calibration (default 500)",
       &calibration_images},
      {"calibration", "METHOD", "range choice: minmax (default), percentile or mse",
       &calibration},
      {"percentile", "P", "kept share of values for --calibration percentile (default 99.99)",
       &percentile},
      {"threads", "N", "worker threads (default: one per core)", &threads},
      {"input-shape", "N,C,H,W", "input shape for a model exported with dynamic axes "
                                 "(default: the shape in the file)", &shape},
  };
  const int option_count = (int)(sizeof options / sizeof options[0]);
  const char *positional[1];
  int positional_count = 0, help = 0;
  ds_error err;
  ds_error_clear(&err);

  if (dst_args_parse(argc, argv, 0, options, option_count, positional, 0, &positional_count,
                     &help, &err) != DS_OK)
    return dst_report_error(&err);
  if (help) {
    dst_args_print_help(stdout, "usage: deformslice audit [options]", options, option_count);
    return 0;
  }

  audit_config config = {.model_path = model, .artifact_path = artifact, .data_dir = data};
  int64_t value;
  if (dst_args_int("test-images", test_images, 1, 10000, &value, &err) != DS_OK)
    return dst_report_error(&err);
  config.test_images = (int32_t)value;
  if (dst_args_int("tensor-images", tensor_images, 1, 10000, &value, &err) != DS_OK)
    return dst_report_error(&err);
  config.tensor_images = (int32_t)value;
  if (dst_args_int("calibration-images", calibration_images, 1, 55000, &value, &err) != DS_OK)
    return dst_report_error(&err);
  config.calibration_images = (int32_t)value;
  value = dst_default_threads();
  if (threads != NULL && dst_args_int("threads", threads, 1, 64, &value, &err) != DS_OK)
    return dst_report_error(&err);
  config.threads = (int32_t)value;
  if (dst_parse_calibration(calibration, percentile, &config.calibration, &err) != DS_OK)
    return dst_report_error(&err);
  if (shape != NULL && dst_args_shape("input-shape", shape, config.import_options.input_shape,
                                      &config.import_options.input_rank, &err) != DS_OK)
    return dst_report_error(&err);

  ds_status status = run_audit(&config, &err);
  return status == DS_OK ? 0 : dst_report_error(&err);
}
