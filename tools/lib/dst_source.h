/*
 * Data sources of the commands that take images (compile, run, audit): a folder of
 * Fashion-MNIST style IDX files, a folder of raw tensor files, or an ImageNet-style folder of
 * JPEG and PNG images. docs/data.md specifies the layouts, the raw tensor format and the
 * preprocessing JSON.
 *
 * Raw tensors and image folders keep each split in a subfolder: train/, val/ (or
 * validation/) and test/. IDX folders hold all splits in four files, the validation split
 * being training images DST_VALIDATION_START and later.
 */
#ifndef DST_SOURCE_H
#define DST_SOURCE_H

#include <stdint.h>

#include "common/ds_status.h"
#include "dst_data.h"
#include "runtime/dsr_model.h"

typedef enum dst_data_format {
  DST_DATA_AUTO = 0,   /* IDX files if present, else per split: tensors.json, else images */
  DST_DATA_IDX = 1,
  DST_DATA_RAW = 2,
  DST_DATA_IMAGES = 3,
} dst_data_format;

typedef struct dst_data_options {
  const char *folder;
  dst_data_format format;
  const char *preprocess_path; /* images: preprocessing JSON, or NULL for the defaults */
  int skip_corrupt;            /* images: skip an unreadable file with a warning instead of
                                  failing */
} dst_data_options;

/* Option text of the data options, as given on the command line. */
typedef struct dst_data_args {
  const char *folder, *format, *preprocess, *skip_corrupt;
} dst_data_args;

#define DST_DATA_ARGS_DEFAULT {DST_FASHION_MNIST_DIR, "auto", NULL, NULL}

/* The dst_option rows of the data options, for a command's option table. */
#define DST_DATA_OPTION_ROWS(args)                                                          \
  {"data", "DIR", "data folder: IDX files, or train/ val/ test/ subfolders of raw tensors "  \
                  "or images (default " DST_FASHION_MNIST_DIR ")",                          \
   &(args).folder},                                                                         \
      {"data-format", "NAME", "auto (default), idx, raw or images", &(args).format},        \
      {"preprocess", "FILE", "preprocessing JSON for image folders: resize, crop, colour, "  \
                             "mean and std (default: resize and crop to the model input)", \
       &(args).preprocess},                                                                 \
      {"skip-corrupt", NULL, "skip unreadable images with a warning instead of failing",    \
       &(args).skip_corrupt}

/* Converts the option text into options, rejecting an unknown format name. */
ds_status dst_data_options_parse(const dst_data_args *args, dst_data_options *options,
                                 ds_error *err);

const char *dst_data_format_name(dst_data_format format);

/*
 * Reads the channel count and side of model's input, which must be (1, C, S, S) with C 1
 * or 3. Errors: DS_ERR_SHAPE naming the shape.
 */
ds_status dst_data_input_shape(const dsr_model *model, int32_t *channels, int32_t *side,
                               ds_error *err);

/*
 * Loads split as count x channels x side x side floats with labels. At most limit images
 * are kept (0: all): the first ones for IDX and raw tensors, and an evenly spaced subset of
 * the sorted file list for image folders (whose order groups the classes). Frees with
 * dst_dataset_free. Errors: DS_ERR_DATA (missing, malformed or mismatched files, each named
 * with the fix), DS_ERR_INVALID_ARGUMENT, DS_ERR_OUT_OF_MEMORY.
 */
ds_status dst_data_load(const dst_data_options *options, dst_split split, int32_t channels,
                        int32_t side, int32_t limit, dst_dataset *out, ds_error *err);

/* Writes "FORMAT FOLDER" (the format auto resolves to) into text, for messages. */
void dst_data_describe(const dst_data_options *options, char *text, size_t text_bytes);

/* Raw tensors of split_folder (holding tensors.json); see docs/data.md. */
ds_status dst_raw_load(const char *split_folder, int32_t channels, int32_t side, int32_t limit,
                       dst_dataset *out, ds_error *err);

/*
 * Images of an ImageNet-style split_folder: one subfolder per class, labels by sorted folder
 * name. preprocess_path may be NULL. skip_corrupt: warn on stderr and skip unreadable files.
 */
ds_status dst_images_load(const char *split_folder, const char *preprocess_path,
                          int skip_corrupt, int32_t channels, int32_t side, int32_t limit,
                          dst_dataset *out, ds_error *err);

#endif
