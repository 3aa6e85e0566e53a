/* Choice of data source and split folders for compile, run and audit. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dst_source.h"

static const char *const format_names[] = {"auto", "idx", "raw", "images"};

const char *dst_data_format_name(dst_data_format format) {
  if ((int)format < 0 || (int)format > DST_DATA_IMAGES)
    return "unknown";
  return format_names[format];
}

ds_status dst_data_options_parse(const dst_data_args *args, dst_data_options *options,
                                 ds_error *err) {
  memset(options, 0, sizeof *options);
  options->folder = args->folder != NULL ? args->folder : DST_FASHION_MNIST_DIR;
  options->preprocess_path = args->preprocess;
  options->skip_corrupt = args->skip_corrupt != NULL;
  const char *format = args->format != NULL ? args->format : "auto";
  for (int i = 0; i <= DST_DATA_IMAGES; i++) {
    if (strcmp(format, format_names[i]) == 0) {
      options->format = (dst_data_format)i;
      return DS_OK;
    }
  }
  return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                 "--data-format '%s' is not a format; use auto, idx, raw or images", format);
}

/* NOTE: the loaders produce square images only, so compile and audit cannot calibrate a
 * model whose input is not square (224x320, 800x1333), which check still runs in float. */
ds_status dst_data_input_shape(const dsr_model *model, int32_t *channels, int32_t *side,
                               ds_error *err) {
  const dsr_tensor *input = &model->tensors[model->input];
  if (input->rank != 4 || input->dims[0] != 1 || (input->dims[1] != 1 && input->dims[1] != 3) ||
      input->dims[2] != input->dims[3]) {
    return ds_fail(err, DS_ERR_SHAPE,
                   "model input '%s' has shape (%d, %d, %d, %d) over rank %d, but the data loaders "
                   "feed square images of shape (1, C, S, S) with C 1 or 3: calibrate at a "
                   "square --input-shape such as 1x%dx%dx%d, or check other sizes in float "
                   "with 'deformslice check'",
                   input->name, input->dims[0], input->dims[1], input->dims[2], input->dims[3],
                   input->rank, input->dims[1], input->dims[2], input->dims[2]);
  }
  *channels = input->dims[1];
  *side = input->dims[2];
  return DS_OK;
}

static int is_file(const char *path) {
  struct stat info;
  return stat(path, &info) == 0 && S_ISREG(info.st_mode);
}

static int is_folder(const char *path) {
  struct stat info;
  return stat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

static int has_idx_files(const char *folder) {
  static const char *const stems[] = {"train-images-idx3-ubyte", "t10k-images-idx3-ubyte"};
  char path[4096];
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s.gz", folder, stems[i]);
    if (is_file(path))
      return 1;
    snprintf(path, sizeof path, "%s/%s", folder, stems[i]);
    if (is_file(path))
      return 1;
  }
  return 0;
}

/* The split's subfolder: train, val (or validation) and test. */
static ds_status split_folder(const char *folder, dst_split split, char *out, size_t out_bytes,
                              ds_error *err) {
  const char *names[2] = {dst_split_name(split), NULL};
  if (split == DST_SPLIT_VALIDATION) {
    names[0] = "val";
    names[1] = "validation";
  }
  for (int i = 0; i < 2 && names[i] != NULL; i++) {
    snprintf(out, out_bytes, "%s/%s", folder, names[i]);
    if (is_folder(out))
      return DS_OK;
  }
  return ds_fail(err, DS_ERR_DATA,
                 "%s: no %s%s subfolder for the %s split; raw tensor and image folders keep each "
                 "split in train/, val/ and test/",
                 folder, names[0], split == DST_SPLIT_VALIDATION ? " or validation" : "",
                 dst_split_name(split));
}

/* Resolves DST_DATA_AUTO to the format of this folder and split. */
static dst_data_format resolve_format(const dst_data_options *options, dst_split split) {
  if (options->format != DST_DATA_AUTO)
    return options->format;
  if (has_idx_files(options->folder))
    return DST_DATA_IDX;
  char folder[4096], header[4200];
  if (split_folder(options->folder, split, folder, sizeof folder, NULL) != DS_OK)
    return DST_DATA_AUTO;
  snprintf(header, sizeof header, "%s/tensors.json", folder);
  return is_file(header) ? DST_DATA_RAW : DST_DATA_IMAGES;
}

void dst_data_describe(const dst_data_options *options, char *text, size_t text_bytes) {
  dst_data_format format = resolve_format(options, DST_SPLIT_TEST);
  snprintf(text, text_bytes, "%s %s", dst_data_format_name(format), options->folder);
}

ds_status dst_data_load(const dst_data_options *options, dst_split split, int32_t channels,
                        int32_t side, int32_t limit, dst_dataset *out, ds_error *err) {
  memset(out, 0, sizeof *out);
  char folder[4096];
  if (!is_folder(options->folder))
    return ds_fail(err, DS_ERR_DATA,
                   "--data %s: the folder does not exist; pass --data with a folder of IDX "
                   "files, raw tensors or images (docs/data.md)",
                   options->folder);
  dst_data_format format = resolve_format(options, split);
  if (options->preprocess_path != NULL && (format == DST_DATA_IDX || format == DST_DATA_RAW))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--preprocess %s: %s contains %s data, and --preprocess applies to image "
                   "folders only; drop --preprocess",
                   options->preprocess_path, options->folder,
                   format == DST_DATA_IDX ? "IDX" : "raw tensor");
  switch (format) {
  case DST_DATA_IDX:
    if (channels != 1)
      return ds_fail(err, DS_ERR_SHAPE,
                     "%s: IDX files hold single-channel images, but the model input has %d "
                     "channels; give raw tensors or an image folder with --data-format",
                     options->folder, channels);
    return dst_dataset_load(options->folder, split, side, limit, out, err);
  case DST_DATA_RAW:
    DS_TRY(split_folder(options->folder, split, folder, sizeof folder, err));
    return dst_raw_load(folder, channels, side, limit, out, err);
  case DST_DATA_IMAGES:
    DS_TRY(split_folder(options->folder, split, folder, sizeof folder, err));
    return dst_images_load(folder, options->preprocess_path, options->skip_corrupt, channels,
                           side, limit, out, err);
  case DST_DATA_AUTO:
    break;
  }
  /* Another split's folder shows the layout is right and only this split is missing. */
  static const char *const split_names[] = {"train", "val", "validation", "test"};
  for (int i = 0; i < 4; i++) {
    snprintf(folder, sizeof folder, "%s/%s", options->folder, split_names[i]);
    if (is_folder(folder))
      return split_folder(options->folder, split, folder, sizeof folder, err);
  }
  return ds_fail(err, DS_ERR_DATA,
                 "%s: cannot tell the data format: no IDX files (train-images-idx3-ubyte.gz, "
                 "t10k-images-idx3-ubyte.gz) and no %s subfolder; pass --data with a data "
                 "folder, see docs/data.md",
                 options->folder, split == DST_SPLIT_VALIDATION ? "val/" : dst_split_name(split));
}
