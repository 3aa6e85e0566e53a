#include "dsn_arch.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nas/dsn_oracle.h"

static const dsn_arch archs[] = {
    {"dat-t", DSR_DEFORM_DAT, 96, {96, 192, 384, 768}, {2, 2, 6, 2}, {3, 6, 12, 24},
     {0, 0, 3, 6}, {0, 0, 1, 1}, {0, 0, 5, 3}, {"LS", "LS", "LDLDLD", "LD"}, 7, 7, 4, 1000,
     28300000},
    {"dat-s", DSR_DEFORM_DAT, 96, {96, 192, 384, 768}, {2, 2, 18, 2}, {3, 6, 12, 24},
     {0, 0, 3, 6}, {0, 0, 1, 1}, {0, 0, 5, 3},
     {"LS", "LS", "LDLDLDLDLDLDLDLDLD", "LD"}, 7, 7, 4, 1000, 49700000},
    {"dat-b", DSR_DEFORM_DAT, 128, {128, 256, 512, 1024}, {2, 2, 18, 2}, {4, 8, 16, 32},
     {0, 0, 4, 8}, {0, 0, 1, 1}, {0, 0, 5, 3},
     {"LS", "LS", "LDLDLDLDLDLDLDLDLD", "LD"}, 7, 7, 4, 1000, 87900000},
    {"dat-t++", DSR_DEFORM_DAT_PP, 64, {64, 128, 256, 512}, {2, 4, 18, 2}, {2, 4, 8, 16},
     {1, 2, 4, 8}, {8, 4, 2, 1}, {9, 7, 5, 3},
     {"ND", "NDND", "NDNDNDNDNDNDNDNDND", "DD"}, 7, 7, 4, 1000, 23960000},
    {"dat-s++", DSR_DEFORM_DAT_PP, 96, {96, 192, 384, 768}, {2, 4, 18, 2}, {3, 6, 12, 24},
     {1, 2, 3, 6}, {8, 4, 2, 1}, {9, 7, 5, 3},
     {"ND", "NDND", "NDNDNDNDNDNDNDNDND", "DD"}, 7, 7, 4, 1000, 53130000},
    {"dat-b++", DSR_DEFORM_DAT_PP, 128, {128, 256, 512, 1024}, {2, 4, 18, 2}, {4, 8, 16, 32},
     {2, 4, 8, 16}, {8, 4, 2, 1}, {9, 7, 5, 3},
     {"ND", "NDND", "NDNDNDNDNDNDNDNDND", "DD"}, 7, 7, 4, 1000, 93690000},
};

#define ARCH_COUNT ((int32_t)(sizeof archs / sizeof archs[0]))

int32_t dsn_arch_count(void) {
  return ARCH_COUNT;
}

const dsn_arch *dsn_arch_at(int32_t index) {
  return index >= 0 && index < ARCH_COUNT ? &archs[index] : NULL;
}

/* Folds "DAT_PP_T", "dat-t++" and "dat_t_pp" to one spelling: lower case, '_' as '-',
 * "pp" as "++", the size letter before the "++". */
static void normalize_name(const char *name, char *out, size_t size) {
  char plain[32];
  size_t n = 0;
  for (const char *c = name; *c != '\0' && n + 1 < sizeof plain; c++)
    plain[n++] = *c == '_' ? '-' : (char)tolower((unsigned char)*c);
  plain[n] = '\0';
  /* "dat-pp-t" and "dat-t-pp" become "dat-t++". */
  if (strncmp(plain, "dat-pp-", 7) == 0 && plain[7] != '\0' && plain[8] == '\0')
    snprintf(out, size, "dat-%c++", plain[7]);
  else if (strncmp(plain, "dat-", 4) == 0 && plain[4] != '\0' && strcmp(plain + 5, "-pp") == 0)
    snprintf(out, size, "dat-%c++", plain[4]);
  else
    snprintf(out, size, "%s", plain);
}

const dsn_arch *dsn_arch_find(const char *name) {
  if (name == NULL)
    return NULL;
  char wanted[40];
  normalize_name(name, wanted, sizeof wanted);
  for (int32_t i = 0; i < ARCH_COUNT; i++) {
    if (strcmp(archs[i].name, wanted) == 0)
      return &archs[i];
  }
  return NULL;
}

/* ---- Layer builders ---- */

typedef struct arch_builder {
  dsn_layer_list *list;
  const dsn_preset *preset;
  int64_t weight_bytes_per_elem;
  int64_t bias_bytes_per_elem;
  int32_t stage;
  ds_error *err;
} arch_builder;

static dsn_layer base_layer(const arch_builder *b, const char *name, int32_t kind) {
  dsn_layer layer;
  memset(&layer, 0, sizeof layer);
  snprintf(layer.name, sizeof layer.name, "%s", name);
  layer.kind = kind;
  layer.node = -1;
  layer.stage = b->stage;
  layer.input_tensor = layer.input2_tensor = layer.operand_tensor = layer.output_tensor = -1;
  layer.group_count = 1;
  layer.kernel = 1;
  layer.stride = 1;
  layer.kernel_w = 1;
  layer.stride_w = 1;
  layer.out_width = 1;
  return layer;
}

static void set_weights(const arch_builder *b, dsn_layer *layer, int64_t weights,
                        int64_t biases) {
  layer->weight_count = weights + biases;
  layer->weight_bytes = weights * b->weight_bytes_per_elem + biases * b->bias_bytes_per_elem;
}

/* A conv on an h x w x cin map, in HWC rows; depthwise when groups == cin. */
static ds_status add_conv(arch_builder *b, const char *name, int32_t h, int32_t w, int32_t cin,
                          int32_t cout, int32_t kernel, int32_t stride, int32_t pad,
                          int32_t groups, int bias, int32_t *ho, int32_t *wo) {
  dsn_layer layer = base_layer(b, name, DSN_LAYER_CONV);
  *ho = (h + 2 * pad - kernel) / stride + 1;
  *wo = (w + 2 * pad - kernel) / stride + 1;
  if (h + 2 * pad < kernel || w + 2 * pad < kernel)
    return ds_fail(b->err, DS_ERR_INVALID_ARGUMENT,
                   "%s: a %dx%d map is smaller than its %dx%d kernel; use a larger input",
                   name, h, w, kernel, kernel);
  layer.out_rows = *ho;
  layer.out_width = *wo;
  layer.out_cols = cout;
  layer.in_rows = h;
  layer.in_row_elems = (int64_t)w * cin;
  layer.kernel = kernel;
  layer.stride = stride;
  layer.pad = pad;
  layer.in_width = w;
  layer.kernel_w = kernel;
  layer.stride_w = stride;
  layer.pad_w = pad;
  layer.macs_per_output = (int64_t)(cin / groups) * kernel * kernel;
  set_weights(b, &layer, (int64_t)cout * (cin / groups) * kernel * kernel, bias ? cout : 0);
  return dsn_layer_list_append(b->list, &layer, b->err);
}

/* A per-pixel linear layer (1x1 conv or Linear) over tokens rows. */
static ds_status add_linear(arch_builder *b, const char *name, int64_t tokens, int32_t cin,
                            int32_t cout, int32_t kind) {
  dsn_layer layer = base_layer(b, name, kind);
  layer.out_rows = tokens;
  layer.out_cols = cout;
  layer.in_rows = tokens;
  layer.in_row_elems = cin;
  layer.macs_per_output = cin;
  set_weights(b, &layer, (int64_t)cin * cout, cout);
  return dsn_layer_list_append(b->list, &layer, b->err);
}

/* A row-aligned vector layer over an h x w x c map: norm, GELU or a residual addition. */
static ds_status add_vector(arch_builder *b, const char *name, int32_t kind, int32_t h,
                            int32_t w, int32_t c, int64_t ops, int second_input,
                            int64_t params) {
  dsn_layer layer = base_layer(b, name, kind);
  layer.out_rows = h;
  layer.out_width = w;
  layer.out_cols = c;
  layer.in_rows = h;
  layer.in_row_elems = (int64_t)w * c;
  layer.in_width = w;
  layer.second_input = second_input;
  layer.vector_ops_per_elem = ops;
  set_weights(b, &layer, 0, params);
  return dsn_layer_list_append(b->list, &layer, b->err);
}

/* Vector operations per element (the same modelling choices as for imported models). */
enum { OPS_ADD = 1, OPS_GELU = 4, OPS_NORM = 5, OPS_SOFTMAX = 4 };

static ds_status add_norm(arch_builder *b, const char *name, int32_t h, int32_t w, int32_t c) {
  return add_vector(b, name, DSN_LAYER_NORM, h, w, c, OPS_NORM, 0, 2 * (int64_t)c);
}

static ds_status add_residual(arch_builder *b, const char *name, int32_t h, int32_t w,
                              int32_t c) {
  return add_vector(b, name, DSN_LAYER_ELEMENTWISE, h, w, c, OPS_ADD, 1, 0);
}

/*
 * The fused core of window or neighbourhood attention on an h x w map with c channels. q, k
 * and v come in as one 3c-channel map. Every query meets side * side keys, with c products
 * each for the scores and for the context, and the bias table has (2 side - 1)^2 entries per
 * head.
 */
static ds_status add_local_attention(arch_builder *b, const char *name, char type, int32_t h,
                                     int32_t w, int32_t c, int32_t heads, int32_t side) {
  dsn_layer layer = base_layer(b, name, DSN_LAYER_ATTENTION);
  int64_t keys = (int64_t)side * side;
  layer.macs_per_output = 2 * keys;
  layer.vector_ops_per_elem = (OPS_SOFTMAX * keys * heads + c - 1) / c;
  set_weights(b, &layer, (int64_t)heads * (2 * side - 1) * (2 * side - 1), 0);
  if (type == 'N') {
    /* Rows with a halo of side / 2 above and below, as a side x side conv would read. */
    layer.out_rows = h;
    layer.out_width = w;
    layer.out_cols = c;
    layer.in_rows = h;
    layer.in_row_elems = (int64_t)w * 3 * c;
    layer.kernel = side;
    layer.pad = side / 2;
    layer.in_width = w;
    layer.kernel_w = side;
    layer.pad_w = side / 2;
    return dsn_layer_list_append(b->list, &layer, b->err);
  }
  /* Windows of side x side tokens, the map padded up to whole windows. */
  int64_t windows = (int64_t)((h + side - 1) / side) * ((w + side - 1) / side);
  layer.group_count = windows;
  layer.out_rows = keys;
  layer.out_cols = c;
  layer.in_rows = keys;
  layer.in_row_elems = 3 * (int64_t)c;
  return dsn_layer_list_append(b->list, &layer, b->err);
}

static ds_status add_deform(arch_builder *b, const dsn_arch *arch, const char *name,
                            int32_t stage, int32_t h, int32_t w) {
  dsn_layer layer = base_layer(b, name, DSN_LAYER_DEFORM);
  dsr_deform_attn *d = &layer.deform;
  d->channels = arch->dims[stage];
  d->height = h;
  d->width = w;
  d->groups = arch->groups[stage];
  d->heads = arch->heads[stage];
  d->head_channels = d->channels / d->heads;
  d->offset_kernel = arch->offset_kernels[stage];
  d->offset_stride = arch->offset_strides[stage];
  d->offset_pad = d->offset_kernel / 2;
  d->convention = arch->convention;
  d->offset_range_factor = arch->convention == DSR_DEFORM_DAT ? 2.0f : 0.0f;
  d->attn_scale = 1.0f / sqrtf((float)d->head_channels);
  d->ln_epsilon = 1e-5f;
  for (int32_t p = 0; p < DSR_DEFORM_PARAM_COUNT; p++)
    d->params[p] = -1;
  d->slice = (dsr_slice){1, 1, 0, DSR_SLICE_PHYSICAL};
  int32_t hk = 0, wk = 0;
  if (dsn_offset_grid(d, h, w, &hk, &wk) <= 0)
    return ds_fail(b->err, DS_ERR_INVALID_ARGUMENT,
                   "%s: a %dx%d map has no offset grid for kernel %d and stride %d; use a "
                   "larger input",
                   name, h, w, d->offset_kernel, d->offset_stride);
  layer.weight_bytes = dsn_deform_weight_bytes(d, b->preset);
  int64_t c = d->channels, cg = c / d->groups, k = d->offset_kernel;
  layer.weight_count = 4 * (c * c + c) + cg * k * k + cg + 2 * cg + 2 * cg +
                       (int64_t)d->heads * (2 * h - 1) * (2 * w - 1);
  return dsn_layer_list_append(b->list, &layer, b->err);
}

static ds_status add_block(arch_builder *b, const dsn_arch *arch, int32_t stage, int32_t index,
                           int32_t h, int32_t w) {
  int32_t c = arch->dims[stage];
  int64_t tokens = (int64_t)h * w;
  char type = arch->patterns[stage][index];
  int plus = arch->convention == DSR_DEFORM_DAT_PP;
  char name[DSR_NAME_BYTES];
  int32_t ho, wo;

#define NAME(suffix) (snprintf(name, sizeof name, "s%d.b%d.%s", stage + 1, index, suffix), name)
  if (plus) {
    DS_TRY(add_conv(b, NAME("lpu"), h, w, c, c, 3, 1, 1, c, 1, &ho, &wo));
    DS_TRY(add_residual(b, NAME("lpu.add"), h, w, c));
  }
  DS_TRY(add_norm(b, NAME("norm1"), h, w, c));
  if (type == 'D') {
    DS_TRY(add_deform(b, arch, NAME("attn"), stage, h, w));
  } else {
    int32_t side = type == 'N' ? arch->na_kernel : arch->window;
    DS_TRY(add_linear(b, NAME("attn.qkv"), tokens, c, 3 * c, DSN_LAYER_LINEAR));
    DS_TRY(add_local_attention(b, NAME(type == 'N' ? "attn.na" : "attn.window"), type, h, w,
                               c, arch->heads[stage], side));
    DS_TRY(add_linear(b, NAME("attn.proj"), tokens, c, c, DSN_LAYER_LINEAR));
  }
  DS_TRY(add_residual(b, NAME("attn.add"), h, w, c));
  DS_TRY(add_norm(b, NAME("norm2"), h, w, c));
  int32_t hidden = c * arch->expansion;
  DS_TRY(add_linear(b, NAME("mlp.fc1"), tokens, c, hidden, DSN_LAYER_LINEAR));
  if (plus) {
    DS_TRY(add_conv(b, NAME("mlp.dwc"), h, w, hidden, hidden, 3, 1, 1, hidden, 1, &ho, &wo));
    DS_TRY(add_residual(b, NAME("mlp.dwc.add"), h, w, hidden));
  }
  DS_TRY(add_vector(b, NAME("mlp.gelu"), DSN_LAYER_ELEMENTWISE, h, w, hidden, OPS_GELU, 0, 0));
  DS_TRY(add_linear(b, NAME("mlp.fc2"), tokens, hidden, c, DSN_LAYER_LINEAR));
  DS_TRY(add_residual(b, NAME("mlp.add"), h, w, c));
#undef NAME
  return DS_OK;
}

static ds_status add_stem(arch_builder *b, const dsn_arch *arch, int32_t *h, int32_t *w) {
  int32_t ho, wo;
  if (arch->convention == DSR_DEFORM_DAT_PP) {
    int32_t half = arch->dim_stem / 2;
    DS_TRY(add_conv(b, "stem.conv1", *h, *w, 3, half, 3, 2, 1, 1, 1, &ho, &wo));
    DS_TRY(add_norm(b, "stem.norm1", ho, wo, half));
    DS_TRY(add_vector(b, "stem.gelu", DSN_LAYER_ELEMENTWISE, ho, wo, half, OPS_GELU, 0, 0));
    *h = ho;
    *w = wo;
    DS_TRY(add_conv(b, "stem.conv2", *h, *w, half, arch->dim_stem, 3, 2, 1, 1, 1, &ho, &wo));
  } else {
    DS_TRY(add_conv(b, "stem.conv", *h, *w, 3, arch->dim_stem, 4, 4, 0, 1, 1, &ho, &wo));
  }
  *h = ho;
  *w = wo;
  return add_norm(b, "stem.norm", *h, *w, arch->dim_stem);
}

ds_status dsn_arch_layers(const dsn_arch *arch, int32_t height, int32_t width,
                          const dsn_preset *preset, dsn_layer_list *list, ds_error *err) {
  if (arch == NULL || preset == NULL || list == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsn_arch_layers: NULL argument");
  memset(list, 0, sizeof *list);
  if (height < 32 || width < 32 || height > 16384 || width > 16384)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "input %dx%d is outside 32..16384 pixels per side; %s needs at least 32",
                   height, width, arch->name);
  snprintf(list->source, sizeof list->source, "%s at %dx%d (architecture description)",
           arch->name, height, width);

  arch_builder b = {list, preset, (preset->weight_bits + 7) / 8,
                    (preset->accumulator_bits + 7) / 8, -1, err};
  int32_t h = height, w = width;
  ds_status status = add_stem(&b, arch, &h, &w);
  for (int32_t stage = 0; stage < 4 && status == DS_OK; stage++) {
    b.stage = stage;
    int32_t c = arch->dims[stage];
    int32_t cin = stage == 0 ? arch->dim_stem : arch->dims[stage - 1];
    if (stage == 0 && cin != c)
      status = add_linear(&b, "s1.proj", (int64_t)h * w, cin, c, DSN_LAYER_LINEAR);
    for (int32_t i = 0; i < arch->depths[stage] && status == DS_OK; i++)
      status = add_block(&b, arch, stage, i, h, w);
    if (stage < 3 && status == DS_OK) {
      char name[32];
      int32_t ho, wo;
      snprintf(name, sizeof name, "down%d", stage + 1);
      int plus = arch->convention == DSR_DEFORM_DAT_PP;
      status = add_conv(&b, name, h, w, c, arch->dims[stage + 1], plus ? 3 : 2, 2, plus ? 1 : 0,
                        1, 0, &ho, &wo);
      h = ho;
      w = wo;
      if (status == DS_OK) {
        snprintf(name, sizeof name, "down%d.norm", stage + 1);
        status = add_norm(&b, name, h, w, arch->dims[stage + 1]);
      }
    }
  }
  if (status == DS_OK) {
    b.stage = 3;
    int32_t c = arch->dims[3];
    status = add_norm(&b, "head.norm", h, w, c);
    if (status == DS_OK) {
      dsn_layer pool = base_layer(&b, "head.pool", DSN_LAYER_POOL);
      pool.in_rows = h;
      pool.in_row_elems = (int64_t)w * c;
      pool.out_rows = 1;
      pool.out_cols = c;
      pool.kernel = h;
      pool.reduce = 1;
      pool.vector_ops_per_elem = 1;
      status = dsn_layer_list_append(list, &pool, err);
    }
    if (status == DS_OK)
      status = add_linear(&b, "head.fc", 1, c, arch->classes, DSN_LAYER_HEAD);
  }
  if (status != DS_OK)
    dsn_layer_list_free(list);
  return status;
}
