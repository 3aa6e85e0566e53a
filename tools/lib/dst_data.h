/*
 * Image data sets for calibration, search and evaluation: Fashion-MNIST style gzip IDX files
 * read with zlib, converted to float in [0, 1] and resized to the model's input side.
 * dst_source.h adds raw tensor files and folders of JPEG and PNG images.
 */
#ifndef DST_DATA_H
#define DST_DATA_H

#include <stdint.h>

#include "common/ds_status.h"

/* Default folder of Debian's dataset-fashion-mnist package. */
#define DST_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/*
 * Training images from this index on form the validation split; the training script
 * (tools/train_nano.py) holds out the same images.
 */
#define DST_VALIDATION_START 55000

/*
 * Maximum number of classes of a data set, so labels are in 0 .. DST_MAX_CLASSES - 1. The
 * bound is far above common classifier sizes (ImageNet-21k has 21,841 classes) and keeps
 * class_count and label + 1 within int32_t. dst_dataset_check_labels checks a model's own
 * output size.
 */
#define DST_MAX_CLASSES (1 << 20)

typedef enum dst_split {
  DST_SPLIT_TRAIN = 0,      /* training images 0 .. DST_VALIDATION_START - 1 */
  DST_SPLIT_VALIDATION = 1, /* training images DST_VALIDATION_START .. end */
  DST_SPLIT_TEST = 2,       /* the t10k files */
} dst_split;

/* Images as float32, count x channels x side x side (NCHW), owned by the data set. */
typedef struct dst_dataset {
  int32_t count;
  int32_t side;          /* pixels per row and column after resizing */
  float *images;
  int32_t *labels;       /* count entries, each in 0 .. class_count - 1 */
  int32_t class_count;   /* largest label + 1; for image folders, the number of class folders */
  int32_t channels;      /* 1 for IDX files; 1 or 3 for raw tensors and image folders */
  char label_source[4096]; /* the label file or image folder, for messages */
} dst_dataset;

/* Floats per image: channels * side * side (channels 0 counts as 1). */
int64_t dst_dataset_image_elements(const dst_dataset *dataset);

/*
 * Loads split from folder (the four files train-images-idx3-ubyte.gz,
 * train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; plain
 * uncompressed files with the same names without .gz are accepted too). At most limit images
 * are kept (0: all). Images are scaled to [0, 1] and resized to side x side with bilinear
 * interpolation (half-pixel centres, no antialiasing: PyTorch's
 * F.interpolate(mode="bilinear", align_corners=False)). Frees with dst_dataset_free.
 */
ds_status dst_dataset_load(const char *folder, dst_split split, int32_t side, int32_t limit,
                           dst_dataset *out, ds_error *err);

void dst_dataset_free(dst_dataset *dataset);

/*
 * Checks that every label of dataset is below class_count, the model's output size, and that
 * the data set has no more classes than that. Errors: DS_ERR_DATA naming the label file (or
 * image folder), the sample index and the label.
 */
ds_status dst_dataset_check_labels(const dst_dataset *dataset, int64_t class_count,
                                   ds_error *err);

/* Name of a split for messages: "train", "validation" or "test". */
const char *dst_split_name(dst_split split);

/*
 * Resizes one single-channel image from in_side x in_side to out_side x out_side as
 * PyTorch's bilinear interpolation with align_corners=False does.
 */
void dst_resize_bilinear(const float *src, int32_t in_side, float *dst, int32_t out_side);

/* Same for a rectangular plane: in_height x in_width to out_height x out_width. A square
 * plane gives the same floats as dst_resize_bilinear. */
void dst_resize_bilinear_plane(const float *src, int32_t in_height, int32_t in_width,
                               float *dst, int32_t out_height, int32_t out_width);

#endif
