/* Preprocessing JSON (parsed with cJSON) and its application to a decoded image. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ds_file.h"
#include "dst_data.h"
#include "dst_image.h"

#define PREPROCESS_MAX_FILE_BYTES (1u << 20)

static const char *const known_keys[] = {"resize", "antialias", "crop", "color", "alpha",
                                         "background", "mean", "std"};
#define KNOWN_KEY_LIST "resize, antialias, crop, color, alpha, background, mean, std"

void dst_preprocess_default(int32_t channels, int32_t side, dst_preprocess *out) {
  memset(out, 0, sizeof *out);
  out->resize = side;
  out->crop = side;
  out->channels = channels == 3 ? 3 : 1;
  out->color = channels == 3 ? DST_COLOR_RGB : DST_COLOR_GRAY;
  out->alpha = DST_ALPHA_DROP;
  for (int c = 0; c < DST_PREPROCESS_MAX_CHANNELS; c++) {
    out->background[c] = 255.0f;
    out->mean[c] = 0.0f;
    out->std[c] = 1.0f;
  }
}

/* Problems found so far, joined into one message. */
typedef struct problem_list {
  char text[768];
  size_t used;
  int count;
  int omitted;
} problem_list;

static void add_problem(problem_list *list, const char *key, const cJSON *value,
                        const char *format, ...) {
  list->count++;
  char value_text[48] = "";
  if (value != NULL) {
    char *printed = cJSON_PrintUnformatted(value);
    if (printed != NULL) {
      size_t length = strlen(printed);
      snprintf(value_text, sizeof value_text, length > 40 ? " = %.37s..." : " = %s", printed);
      free(printed);
    }
  }
  char reason[256];
  va_list args;
  va_start(args, format);
  vsnprintf(reason, sizeof reason, format, args);
  va_end(args);

  char entry[400];
  int length = snprintf(entry, sizeof entry, "%skey \"%s\"%s: %s", list->count > 1 ? "; " : "",
                        key, value_text, reason);
  if (length < 0 || list->used + (size_t)length >= sizeof list->text) {
    list->omitted++;
    return;
  }
  memcpy(list->text + list->used, entry, (size_t)length + 1);
  list->used += (size_t)length;
}

/* Reads an integer in [min, max] into *out, or adds a problem. */
static void read_int(problem_list *list, const cJSON *item, int32_t min, int32_t max,
                     int32_t *out) {
  double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
  if (!(v >= min && v <= max) || v != floor(v)) {
    add_problem(list, item->string, item, "expected an integer in %d..%d", min, max);
    return;
  }
  *out = (int32_t)v;
}

/* Reads a string that must be one of names[count]; returns its index, or -1. */
static int read_choice(problem_list *list, const cJSON *item, const char *const *names,
                       int count, const char *expected) {
  for (int i = 0; cJSON_IsString(item) && i < count; i++) {
    if (strcmp(item->valuestring, names[i]) == 0)
      return i;
  }
  add_problem(list, item->string, item, "expected %s", expected);
  return -1;
}

/*
 * Reads a number or an array of 1 or channels numbers, each in [min, max] (and != 0 when
 * nonzero is set), into out[channels]; one number applies to every channel.
 */
static void read_channels(problem_list *list, const cJSON *item, int32_t channels, double min,
                          double max, int nonzero, float *out) {
  float values[DST_PREPROCESS_MAX_CHANNELS];
  int count = 0, bad = 0;
  if (cJSON_IsNumber(item)) {
    values[count++] = (float)item->valuedouble;
    bad = !(item->valuedouble >= min && item->valuedouble <= max);
  } else if (cJSON_IsArray(item)) {
    const cJSON *element;
    cJSON_ArrayForEach(element, item) {
      if (!cJSON_IsNumber(element) || count >= DST_PREPROCESS_MAX_CHANNELS) {
        bad = 1;
        break;
      }
      bad |= !(element->valuedouble >= min && element->valuedouble <= max);
      values[count++] = (float)element->valuedouble;
    }
  } else {
    bad = 1;
  }
  for (int i = 0; i < count && nonzero; i++)
    bad |= values[i] == 0.0f;
  if (bad || (count != 1 && count != channels)) {
    add_problem(list, item->string, item,
                "expected a number or an array of 1 or %d numbers (one per channel of the "
                "model input), each in %g..%g%s",
                channels, min, max, nonzero ? " and not 0" : "");
    return;
  }
  for (int c = 0; c < channels; c++)
    out[c] = values[count == 1 ? 0 : c];
}

static int is_known_key(const char *key) {
  for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++) {
    if (strcmp(key, known_keys[i]) == 0)
      return 1;
  }
  return 0;
}

static void read_settings(problem_list *list, const cJSON *root, int32_t channels, int32_t side,
                          dst_preprocess *out) {
  static const char *const colors[] = {"gray", "rgb", "bgr"};
  static const char *const alphas[] = {"drop", "blend"};
  const cJSON *item;

  cJSON_ArrayForEach(item, root) {
    const char *key = item->string;
    if (!is_known_key(key)) {
      add_problem(list, key, item, "unknown key; the known keys are " KNOWN_KEY_LIST);
      continue;
    }
    for (const cJSON *other = root->child; other != item; other = other->next) {
      if (strcmp(other->string, key) == 0) {
        add_problem(list, key, item, "given twice");
        break;
      }
    }

    if (strcmp(key, "resize") == 0) {
      read_int(list, item, 0, DST_IMAGE_MAX_SIDE, &out->resize);
    } else if (strcmp(key, "antialias") == 0) {
      if (cJSON_IsBool(item))
        out->antialias = cJSON_IsTrue(item);
      else
        add_problem(list, key, item, "expected true or false");
    } else if (strcmp(key, "crop") == 0) {
      int32_t crop = side;
      read_int(list, item, 1, DST_IMAGE_MAX_SIDE, &crop);
      if (crop != side)
        add_problem(list, key, item, "the crop must be %d, the side of the model input", side);
    } else if (strcmp(key, "color") == 0) {
      int color = read_choice(list, item, colors, 3, "\"gray\", \"rgb\" or \"bgr\"");
      if (color == DST_COLOR_GRAY && channels != 1)
        add_problem(list, key, item, "the model input has %d channels; use \"rgb\" or \"bgr\"",
                    channels);
      else if (color > DST_COLOR_GRAY && channels != 3)
        add_problem(list, key, item, "the model input has %d channel; use \"gray\"", channels);
      else if (color >= 0)
        out->color = (dst_color)color;
    } else if (strcmp(key, "alpha") == 0) {
      int alpha = read_choice(list, item, alphas, 2, "\"drop\" or \"blend\"");
      if (alpha >= 0)
        out->alpha = (dst_alpha)alpha;
    } else if (strcmp(key, "background") == 0) {
      float background[DST_PREPROCESS_MAX_CHANNELS];
      read_channels(list, item, 3, 0.0, 255.0, 0, background);
      memcpy(out->background, background, sizeof background);
    } else if (strcmp(key, "mean") == 0) {
      read_channels(list, item, channels, -1e6, 1e6, 0, out->mean);
    } else {
      read_channels(list, item, channels, -1e6, 1e6, 1, out->std);
    }
  }
}

ds_status dst_preprocess_parse(const char *text, size_t size, const char *name,
                               int32_t channels, int32_t side, dst_preprocess *out,
                               ds_error *err) {
  if (channels != 1 && channels != 3)
    return ds_fail(err, DS_ERR_SHAPE,
                   "%s: the model input has %d channels; image folders feed 1 (gray) or 3 "
                   "(RGB, BGR)",
                   name, channels);
  dst_preprocess_default(channels, side, out);
  cJSON *root = cJSON_ParseWithLength(text, size);
  if (root == NULL) {
    const char *at = cJSON_GetErrorPtr();
    long offset = at != NULL && at >= text && at <= text + size ? (long)(at - text) : -1;
    return ds_fail(err, DS_ERR_DATA, "%s: invalid JSON near byte %ld; see docs/data.md for the "
                                     "preprocessing schema",
                   name, offset);
  }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return ds_fail(err, DS_ERR_DATA, "%s: expected a JSON object with the keys " KNOWN_KEY_LIST,
                   name);
  }

  problem_list list;
  memset(&list, 0, sizeof list);
  read_settings(&list, root, channels, side, out);
  if (out->resize > 0 && out->resize < side) {
    const cJSON *resize = cJSON_GetObjectItemCaseSensitive(root, "resize");
    add_problem(&list, "resize", resize,
                "the shorter side after resizing must be at least the crop, %d", side);
  }
  cJSON_Delete(root);

  if (list.count == 0)
    return DS_OK;
  char omitted[48] = "";
  if (list.omitted > 0)
    snprintf(omitted, sizeof omitted, "; %d more", list.omitted);
  return ds_fail(err, DS_ERR_DATA, "%s: %d problem%s in the preprocessing settings: %s%s", name,
                 list.count, list.count > 1 ? "s" : "", list.text, omitted);
}

ds_status dst_preprocess_read_file(const char *path, int32_t channels, int32_t side,
                                   dst_preprocess *out, ds_error *err) {
  uint8_t *data = NULL;
  size_t size = 0;
  DS_TRY(ds_file_read_all(path, PREPROCESS_MAX_FILE_BYTES, &data, &size, err));
  ds_status status = dst_preprocess_parse((const char *)data, size, path, channels, side, out,
                                          err);
  free(data);
  return status;
}

/* ---- Application ---- */

/* PyTorch's antialias filter weights for one axis: for each output index, the first input
 * index and count of taps, and the normalized weights (at most max_taps per output). */
typedef struct axis_weights {
  int32_t *first;
  int32_t *count;
  float *weights;
  int32_t max_taps;
} axis_weights;

static int make_axis_weights(int32_t in_size, int32_t out_size, axis_weights *axis) {
  const double scale = (double)in_size / out_size;
  const double support = scale >= 1.0 ? scale : 1.0;
  const double inverse = scale >= 1.0 ? 1.0 / scale : 1.0;
  axis->max_taps = (int32_t)ceil(support) * 2 + 1;
  axis->first = malloc(sizeof(int32_t) * (size_t)out_size);
  axis->count = malloc(sizeof(int32_t) * (size_t)out_size);
  axis->weights = malloc(sizeof(float) * (size_t)out_size * (size_t)axis->max_taps);
  if (axis->first == NULL || axis->count == NULL || axis->weights == NULL)
    return 0;

  for (int32_t i = 0; i < out_size; i++) {
    const double center = scale * (i + 0.5);
    int64_t lo = (int64_t)(center - support + 0.5);
    int64_t hi = (int64_t)(center + support + 0.5);
    if (lo < 0)
      lo = 0;
    if (hi > in_size)
      hi = in_size;
    int32_t taps = (int32_t)(hi - lo);
    if (taps > axis->max_taps)
      taps = axis->max_taps;
    float *w = axis->weights + (size_t)i * (size_t)axis->max_taps;
    double total = 0.0;
    for (int32_t j = 0; j < taps; j++) {
      double x = fabs((j + lo - center + 0.5) * inverse);
      double v = x < 1.0 ? 1.0 - x : 0.0;
      w[j] = (float)v;
      total += v;
    }
    for (int32_t j = 0; j < taps && total > 0.0; j++)
      w[j] = (float)(w[j] / total);
    axis->first[i] = (int32_t)lo;
    axis->count[i] = taps;
  }
  return 1;
}

static void free_axis_weights(axis_weights *axis) {
  free(axis->first);
  free(axis->count);
  free(axis->weights);
}

int dst_resize_antialias_plane(const float *src, int32_t in_height, int32_t in_width,
                               float *dst, int32_t out_height, int32_t out_width) {
  axis_weights rows = {0}, cols = {0};
  float *middle = malloc(sizeof(float) * (size_t)in_height * (size_t)out_width);
  int ok = middle != NULL && make_axis_weights(in_width, out_width, &cols) &&
           make_axis_weights(in_height, out_height, &rows);
  if (ok) {
    for (int32_t y = 0; y < in_height; y++) {
      const float *line = src + (size_t)y * (size_t)in_width;
      for (int32_t x = 0; x < out_width; x++) {
        const float *w = cols.weights + (size_t)x * (size_t)cols.max_taps;
        float sum = 0.0f;
        for (int32_t j = 0; j < cols.count[x]; j++)
          sum += w[j] * line[cols.first[x] + j];
        middle[(size_t)y * (size_t)out_width + (size_t)x] = sum;
      }
    }
    for (int32_t y = 0; y < out_height; y++) {
      const float *w = rows.weights + (size_t)y * (size_t)rows.max_taps;
      for (int32_t x = 0; x < out_width; x++) {
        float sum = 0.0f;
        for (int32_t j = 0; j < rows.count[y]; j++)
          sum += w[j] * middle[(size_t)(rows.first[y] + j) * (size_t)out_width + (size_t)x];
        dst[(size_t)y * (size_t)out_width + (size_t)x] = sum;
      }
    }
  }
  free_axis_weights(&rows);
  free_axis_weights(&cols);
  free(middle);
  return ok;
}

/* Channel c (0..2 in R, G, B order) of pixel p after alpha handling, in 0..255. */
static float pixel_channel(const dst_preprocess *pre, const dst_image *image, size_t p, int c) {
  const uint8_t *px = image->pixels + p * (size_t)image->channels;
  const int has_color = image->channels >= 3;
  float v = has_color ? px[c] : px[0];
  const int has_alpha = image->channels == 2 || image->channels == 4;
  if (has_alpha && pre->alpha == DST_ALPHA_BLEND) {
    float a = px[image->channels - 1] / 255.0f;
    v = v * a + pre->background[c] * (1.0f - a);
  }
  return v;
}

/* Writes the image's planes in the output colour order, scaled to [0, 1]. */
static void convert_color(const dst_preprocess *pre, const dst_image *image, float *planes) {
  const size_t pixels = (size_t)image->width * (size_t)image->height;
  const int has_color = image->channels >= 3;
  const int blend = (image->channels == 2 || image->channels == 4) &&
                    pre->alpha == DST_ALPHA_BLEND;
  for (size_t p = 0; p < pixels; p++) {
    if (pre->color == DST_COLOR_GRAY) {
      float luma;
      if (!has_color) {
        luma = pixel_channel(pre, image, p, 0);
      } else if (!blend) {
        /* ITU-R 601-2 luma with the integer weights of PIL's convert("L"). */
        const uint8_t *px = image->pixels + p * (size_t)image->channels;
        luma = (float)((px[0] * 19595u + px[1] * 38470u + px[2] * 7471u + 0x8000u) >> 16);
      } else {
        luma = 0.299f * pixel_channel(pre, image, p, 0) +
               0.587f * pixel_channel(pre, image, p, 1) + 0.114f * pixel_channel(pre, image, p, 2);
      }
      planes[p] = luma / 255.0f;
      continue;
    }
    for (int c = 0; c < 3; c++) {
      int source = pre->color == DST_COLOR_BGR ? 2 - c : c;
      planes[(size_t)c * pixels + p] = pixel_channel(pre, image, p, source) / 255.0f;
    }
  }
}

/* Top or left offset of a centre crop, as torchvision: int(round(excess / 2.0)), with
 * Python's round-half-to-even. */
static int32_t crop_offset(int32_t size, int32_t crop) {
  int32_t excess = size - crop;
  int32_t half = excess / 2;
  if (excess % 2 != 0 && half % 2 != 0)
    half++;
  return half;
}

ds_status dst_preprocess_apply(const dst_preprocess *pre, const dst_image *image,
                               const char *name, float *out, ds_error *err) {
  int32_t height = image->height, width = image->width;
  int32_t out_height = height, out_width = width;
  if (pre->resize > 0) {
    /* torchvision Resize(int): the shorter side becomes resize, the longer one keeps the
     * aspect ratio, truncated. */
    if (width <= height) {
      out_width = pre->resize;
      out_height = (int32_t)((int64_t)pre->resize * height / width);
    } else {
      out_height = pre->resize;
      out_width = (int32_t)((int64_t)pre->resize * width / height);
    }
  }
  if (out_height < pre->crop || out_width < pre->crop)
    return ds_fail(err, DS_ERR_DATA,
                   "%s: the image is %dx%d after resizing, smaller than the %dx%d crop; set "
                   "\"resize\" in the preprocessing settings to at least %d",
                   name, out_width, out_height, pre->crop, pre->crop, pre->crop);

  const int32_t channels = pre->channels;
  const size_t in_plane = (size_t)width * (size_t)height;
  const size_t out_plane = (size_t)out_width * (size_t)out_height;
  float *planes = malloc(sizeof(float) * in_plane * (size_t)channels);
  float *resized = malloc(sizeof(float) * out_plane * (size_t)channels);
  if (planes == NULL || resized == NULL) {
    free(planes);
    free(resized);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %dx%d planes", name, width,
                   height);
  }
  convert_color(pre, image, planes);

  int ok = 1;
  for (int32_t c = 0; c < channels && ok; c++) {
    const float *src = planes + (size_t)c * in_plane;
    float *dst = resized + (size_t)c * out_plane;
    if (out_height == height && out_width == width)
      memcpy(dst, src, sizeof(float) * in_plane);
    else if (pre->antialias)
      ok = dst_resize_antialias_plane(src, height, width, dst, out_height, out_width);
    else
      dst_resize_bilinear_plane(src, height, width, dst, out_height, out_width);
  }

  const int32_t top = crop_offset(out_height, pre->crop);
  const int32_t left = crop_offset(out_width, pre->crop);
  for (int32_t c = 0; c < channels && ok; c++) {
    const float *plane = resized + (size_t)c * out_plane;
    float *dst = out + (size_t)c * (size_t)pre->crop * (size_t)pre->crop;
    for (int32_t y = 0; y < pre->crop; y++) {
      const float *row = plane + (size_t)(top + y) * (size_t)out_width + (size_t)left;
      for (int32_t x = 0; x < pre->crop; x++)
        dst[(size_t)y * (size_t)pre->crop + (size_t)x] = (row[x] - pre->mean[c]) / pre->std[c];
    }
  }
  free(planes);
  free(resized);
  if (!ok)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: cannot allocate the resize filter", name);
  return DS_OK;
}
