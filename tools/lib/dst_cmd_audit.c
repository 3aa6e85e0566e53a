/*
 * deformslice audit: top-1 of float, fixed point and fixed point with a slicing, the share of
 * images on which each pair agrees, and float-against-fixed figures (SQNR, max error,
 * cosine) of every tensor and of every stage inside the deformable layers, printed and
 * written as JSON and Markdown reports (tools/lib/dst_audit_report.h).
 *
 * The model comes from an artifact (its own quantization and slice table) or from an ONNX
 * file, which is then calibrated and quantized here as compile does, with the same precision
 * options.
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
#include "dst_audit_report.h"
#include "dst_precision.h"
#include "dst_source.h"
#include "formats/dsf_artifact.h"
#include "nas/dsn_oracle.h"
#include "quant/dsq_audit.h"
#include "runtime/dsr_slice.h"

typedef struct audit_config {
  const char *model_path;
  const char *artifact_path;
  dst_data_options data;
  const char *slices_text;        /* --slices, or NULL */
  const char *json_path;          /* --json, or NULL */
  const char *markdown_path;      /* --markdown, or NULL */
  int32_t test_images;
  int32_t tensor_images;
  int32_t calibration_images;
  int32_t threads;
  dst_calibration_choice calibration;
  dst_precision_config precision;
  int precision_given;            /* a precision option was on the command line */
  dsc_options import_options; /* input_rank 0: the file's input shape */
} audit_config;

static ds_status load_model(const audit_config *c, dsr_model *model,
                            dst_precision_record *record, ds_error *err) {
  if (c->artifact_path != NULL) {
    if (c->precision_given)
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--precision, --int16-budget-bytes and --precision-file choose how an "
                     "ONNX model is quantized; %s is already quantized, so drop them or pass "
                     "--model",
                     c->artifact_path);
    return dsf_read_file(c->artifact_path, model, NULL, NULL, err);
  }

  DS_TRY(dsc_import_file(c->model_path, &c->import_options, model, NULL, err));
  int32_t channels = 0, side = 0;
  DS_TRY(dst_data_input_shape(model, &channels, &side, err));
  dst_dataset calibration = {0}, validation = {0};
  ds_status status = dst_data_load(&c->data, DST_SPLIT_TRAIN, channels, side,
                                   c->calibration_images, &calibration, err);
  if (status == DS_OK && calibration.count < c->calibration_images)
    fprintf(stderr, "deformslice: warning: --calibration-images is %d, but the training split "
            "has %d images: calibrating on %d\n",
            c->calibration_images, (int)calibration.count, (int)calibration.count);
  if (status == DS_OK && c->precision.mode == DST_PRECISION_MIXED)
    status = dst_data_load(&c->data, DST_SPLIT_VALIDATION, channels, side,
                           c->precision.search_images, &validation, err);
  char method[32];
  if (status == DS_OK)
    status = dst_quantize_model_precision(model, &calibration, &c->calibration, c->threads,
                                          &c->precision, &validation, record, method,
                                          sizeof method, err);
  dst_dataset_free(&calibration);
  dst_dataset_free(&validation);
  return status;
}

/*
 * The sliced configuration: --slices (one "RxC+O" for every layer, or one per layer separated
 * by commas), else the model's own slice table.
 */
static ds_status resolve_slices(const audit_config *c, const dsr_model *model, dsr_slice *slices,
                                int32_t layers, char *text, size_t text_bytes, ds_error *err) {
  for (int32_t i = 0; i < layers; i++)
    slices[i] = model->nodes[ds_model_deform_node(model, i)].deform->slice;
  if (c->slices_text != NULL) {
    char copy[2048];
    snprintf(copy, sizeof copy, "%s", c->slices_text);
    int32_t count = 0;
    char *save = NULL;
    for (char *part = strtok_r(copy, ",", &save); part != NULL;
         part = strtok_r(NULL, ",", &save)) {
      dsr_slice slice;
      if (dsn_slice_parse(part, &slice) != 0)
        return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                       "--slices: '%s' is not a slice configuration; write ROWSxCOLS+OVERLAP, "
                       "such as 2x2+1 (rows and columns 1 to %d, overlap 0 to %d pixels; a c "
                       "suffix selects crop semantics)",
                       part, DSN_SLICE_NUMBER_MAX, DSN_SLICE_NUMBER_MAX);
      if (count < layers)
        slices[count] = slice;
      count++;
    }
    if (count == 1) {
      for (int32_t i = 1; i < layers; i++)
        slices[i] = slices[0];
    } else if (count != layers) {
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--slices gives %d configurations, but the model has %d deformable layers: "
                     "give one for all layers or one per layer",
                     count, layers);
    }
  }
  size_t used = 0;
  text[0] = '\0';
  for (int32_t i = 0; i < layers; i++) {
    const dsr_deform_attn *layer = model->nodes[ds_model_deform_node(model, i)].deform;
    ds_status status = dsr_slice_validate(layer, slices[i], err);
    if (status != DS_OK)
      return ds_fail(err, status, "--slices, deformable layer %d", i);
    char one[64];
    dsn_slice_format(slices[i], one, sizeof one);
    int n = snprintf(text + used, text_bytes - used, "%s%s", i > 0 ? "," : "", one);
    if (n > 0 && (size_t)n < text_bytes - used)
      used += (size_t)n;
  }
  return DS_OK;
}

/* Predictions of every test image in one mode and slicing (NULL: the model's own). */
static ds_status predict(const dsr_model *model, const dst_dataset *test, dsr_mode mode,
                         const dsr_slice *slices, int32_t layers, const char *label,
                         int32_t threads, int32_t *predictions, double *top1, ds_error *err) {
  dst_progress progress;
  dst_progress_start(&progress, label);
  dst_eval_options eval = {.mode = mode, .threads = threads, .slices = slices,
                           .slice_count = layers, .progress = dst_progress_update,
                           .progress_user = &progress};
  dst_eval_result result;
  DS_TRY(dst_evaluate(model, test, 0, test->count, &eval, &result, predictions, err));
  *top1 = result.top1_percent;
  return DS_OK;
}

static int32_t count_same(const int32_t *a, const int32_t *b, int32_t count) {
  int32_t same = 0;
  for (int32_t i = 0; i < count; i++)
    same += a[i] == b[i];
  return same;
}

static ds_status run_audit(const audit_config *c, ds_error *err) {
  dsr_model model = {0};
  dst_dataset test = {0};
  dst_precision_record precision;
  memset(&precision, 0, sizeof precision);
  int32_t *predictions = NULL;
  dsr_slice unsliced[DSR_MAX_DEFORM_LAYERS], sliced[DSR_MAX_DEFORM_LAYERS];
  dsq_audit_report report = {0};
  dst_audit_summary summary;
  memset(&summary, 0, sizeof summary);

  ds_status status = load_model(c, &model, &precision, err);
  if (status == DS_OK && !model.quantized)
    status = ds_fail(err, DS_ERR_QUANT, "%s holds no fixed-point parameters to audit",
                     c->artifact_path != NULL ? c->artifact_path : c->model_path);
  int32_t layers = status == DS_OK ? ds_model_deform_count(&model) : 0;
  if (status == DS_OK && layers > DSR_MAX_DEFORM_LAYERS) {
    status = ds_fail(err, DS_ERR_SHAPE, "the model has %d deformable layers, more than %d",
                     layers, DSR_MAX_DEFORM_LAYERS);
    layers = 0;
  }
  for (int32_t i = 0; i < layers; i++)
    unsliced[i] = dsr_slice_none();
  if (status == DS_OK)
    status = resolve_slices(c, &model, sliced, layers, summary.slicing, sizeof summary.slicing,
                            err);
  int32_t channels = 0, side = 0;
  if (status == DS_OK)
    status = dst_data_input_shape(&model, &channels, &side, err);
  if (status == DS_OK)
    status = dst_data_load(&c->data, DST_SPLIT_TEST, channels, side, c->test_images, &test,
                           err);
  if (status == DS_OK) {
    predictions = malloc(sizeof(int32_t) * (3 * (size_t)test.count + 1));
    if (predictions == NULL)
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot allocate %d predictions", test.count);
  }

  int32_t *float_predictions = predictions;
  int32_t *fixed_predictions = predictions + (status == DS_OK ? test.count : 0);
  int32_t *sliced_predictions = fixed_predictions + (status == DS_OK ? test.count : 0);
  if (status == DS_OK)
    status = predict(&model, &test, DSR_MODE_FLOAT, unsliced, layers, "float", c->threads,
                     float_predictions, &summary.float_top1, err);
  if (status == DS_OK)
    status = predict(&model, &test, DSR_MODE_FIXED, unsliced, layers, "fixed point",
                     c->threads, fixed_predictions, &summary.fixed_top1, err);
  if (status == DS_OK)
    status = predict(&model, &test, DSR_MODE_FIXED, sliced, layers, "fixed point, sliced",
                     c->threads, sliced_predictions, &summary.sliced_top1, err);

  int32_t tensor_images = c->tensor_images < test.count ? c->tensor_images : test.count;
  if (status == DS_OK) {
    fprintf(stderr, "  comparing every tensor and deformable stage on %d images\n",
            tensor_images);
    status = dsq_audit(&model, test.images, tensor_images, layers > 0 ? unsliced : NULL,
                       &report, err);
  }

  if (status == DS_OK) {
    summary.model = &model;
    summary.model_path = c->artifact_path != NULL ? c->artifact_path : c->model_path;
    summary.from_artifact = c->artifact_path != NULL;
    summary.test_images = test.count;
    summary.tensor_images = tensor_images;
    summary.agree_float_fixed = count_same(float_predictions, fixed_predictions, test.count);
    summary.agree_float_sliced = count_same(float_predictions, sliced_predictions, test.count);
    summary.agree_fixed_sliced = count_same(fixed_predictions, sliced_predictions, test.count);
    summary.precision = c->artifact_path != NULL ? NULL : &precision;
    summary.audit = &report;

    dsq_audit_report_print(&report, stdout);
    dst_audit_report_print_summary(&summary, stdout);
    status = dst_audit_report_write(&summary, c->json_path, c->markdown_path, err);
    if (status == DS_OK && c->json_path != NULL)
      printf("wrote %s\n", c->json_path);
    if (status == DS_OK && c->markdown_path != NULL)
      printf("wrote %s\n", c->markdown_path);
  }

  dsq_audit_report_free(&report);
  free(predictions);
  dst_dataset_free(&test);
  dst_precision_record_free(&precision);
  ds_model_free(&model);
  return status;
}

int dst_cmd_audit(int argc, char **argv) {
  const char *model = DST_DEFAULT_MODEL, *artifact = NULL;
  dst_data_args data = DST_DATA_ARGS_DEFAULT;
  const char *test_images = "10000", *tensor_images = "100", *calibration_images = "500";
  const char *threads = NULL, *calibration = "minmax", *percentile = NULL, *bins = NULL;
  const char *precision = NULL, *budget = NULL, *precision_file = NULL, *slices = NULL;
  const char *json = NULL, *markdown = NULL, *precision_images = NULL;
  const char *shape = NULL;
  const dst_option options[] = {
      {"model", "FILE", "ONNX model, calibrated and quantized here (default: the bundled model)",
       &model},
      {"artifact", "FILE", "audit an artifact's own quantization and slicing instead", &artifact},
      DST_DATA_OPTION_ROWS(data),
      {"test-images", "N", "test images for top-1 and agreement (default 10000)", &test_images},
      {"tensor-images", "N", "test images for the per-tensor comparison (default 100)",
       &tensor_images},
      {"calibration-images", "N", "training images for calibration (default 500)",
       &calibration_images},
      {"calibration", "METHOD", "range choice: minmax (default), percentile, mse or kl",
       &calibration},
      {"percentile", "P", "kept share of values for --calibration percentile (default 99.99)",
       &percentile},
      {"histogram-bins", "N", "linear histogram bins for --calibration kl (default 2048)", &bins},
      {"precision", "MODE", "activation types of an ONNX model: class (default), int8 or "
                            "mixed",
       &precision},
      {"int16-budget-bytes", "N", "on-chip bytes int16 tensors may add (needs --precision mixed)",
       &budget},
      {"precision-file", "FILE", "JSON object of tensor name -> \"int8\" or \"int16\"",
       &precision_file},
      {"precision-images", "N", "validation images mixed precision measures each tensor on "
                                "(default 64)",
       &precision_images},
      {"slices", "LIST", "slicing of the sliced run: one ROWSxCOLS+OVERLAP for every layer or "
                         "one per layer, comma-separated (default: the model's slice table)",
       &slices},
      {"json", "FILE", "write the JSON report to FILE", &json},
      {"markdown", "FILE", "write the Markdown report to FILE", &markdown},
      {"threads", "N", "worker threads (default: one per core)", &threads},
      {"input-shape", "NxCxHxW", "input shape for a model exported with dynamic axes "
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

  audit_config config = {.model_path = model, .artifact_path = artifact,
                         .slices_text = slices, .json_path = json, .markdown_path = markdown};
  if (dst_data_options_parse(&data, &config.data, &err) != DS_OK)
    return dst_report_error(&err);
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
  if (dst_parse_calibration(calibration, percentile, bins, &config.calibration, &err) != DS_OK)
    return dst_report_error(&err);
  if (dst_parse_precision(precision, budget, precision_file, &config.precision, &err) != DS_OK)
    return dst_report_error(&err);
  if (precision_images != NULL &&
      dst_parse_precision_images(precision_images, &config.precision, &err) != DS_OK)
    return dst_report_error(&err);
  config.precision_given = precision != NULL || budget != NULL || precision_file != NULL ||
                           precision_images != NULL;
  if (shape != NULL && dst_args_shape("input-shape", shape, config.import_options.input_shape,
                                      &config.import_options.input_rank, &err) != DS_OK)
    return dst_report_error(&err);

  ds_status status = run_audit(&config, &err);
  return status == DS_OK ? 0 : dst_report_error(&err);
}
