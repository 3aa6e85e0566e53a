/*
 * Layer lists of DAT and DAT++ built from their architecture description, for networks too
 * large to import or without trained weights. The configurations are those of
 * tools/models/dat_family.py (dims, depths, heads, offset groups, offset strides and kernels,
 * block pattern per stage), so a described model and its ONNX export have the same layers.
 *
 * Blocks (each followed by its residual additions):
 * - DAT: 4x4 stride-4 stem conv and LayerNorm; per block LayerNorm, attention, LayerNorm,
 *   MLP (linear, GELU, linear); window attention "L" and shifted window "S" (window 7) as
 *   qkv projection, fused window attention core and output projection; 2x2 stride-2
 *   down-sampling conv and LayerNorm.
 * - DAT++: two 3x3 stride-2 stem convs with LayerNorm and GELU; per block a 3x3 depthwise
 *   conv (local perception unit), LayerNorm, attention, LayerNorm, MLP (1x1 conv, residual
 *   3x3 depthwise conv, GELU, 1x1 conv); neighbourhood attention "N" (kernel 7) as qkv
 *   projection, fused neighbourhood attention core and output projection; 3x3 stride-2
 *   down-sampling conv and LayerNorm.
 * - "D" is one deformable attention layer (its projections included).
 * - Head: LayerNorm, global average pooling, linear to the classes.
 */
#ifndef DSN_ARCH_H
#define DSN_ARCH_H

#include <stdint.h>

#include "common/ds_status.h"
#include "nas/dsn_layer.h"
#include "nas/dsn_preset.h"

#define DSN_ARCH_MAX_DEPTH 18

typedef struct dsn_arch {
  const char *name;           /* "dat-t", "dat-t++", ... */
  int32_t convention;         /* dsr_deform_convention: DAT or DAT++ */
  int32_t dim_stem;
  int32_t dims[4];
  int32_t depths[4];
  int32_t heads[4];
  int32_t groups[4];          /* offset groups; 0 where a stage has no deformable block */
  int32_t offset_strides[4];
  int32_t offset_kernels[4];
  const char *patterns[4];    /* block types of each stage, one letter per block: L S N D */
  int32_t window;             /* window side of L and S blocks */
  int32_t na_kernel;          /* neighbourhood side of N blocks */
  int32_t expansion;          /* MLP hidden channels / channels */
  int32_t classes;
  int64_t published_params;   /* parameter count published for 1000 classes */
} dsn_arch;

/* Number of described architectures and the one at index (NULL when out of range). */
int32_t dsn_arch_count(void);
const dsn_arch *dsn_arch_at(int32_t index);

/* The architecture named name ("dat-t", "dat_t", "DAT-T++" and "dat_pp_t" all work), or
 * NULL. */
const dsn_arch *dsn_arch_find(const char *name);

/*
 * Builds the layers of arch at an input of height x width pixels (3 channels) for preset
 * (weight sizes use its data widths). Deformable layers get slice (1, 1, 0). Errors:
 * DS_ERR_INVALID_ARGUMENT when a map becomes smaller than a kernel (the message names the
 * stage and the minimum input), DS_ERR_OUT_OF_MEMORY.
 */
ds_status dsn_arch_layers(const dsn_arch *arch, int32_t height, int32_t width,
                          const dsn_preset *preset, dsn_layer_list *list, ds_error *err);

#endif
