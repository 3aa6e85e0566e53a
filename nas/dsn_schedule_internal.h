/* Shared by the schedule generator's files: growable step and descriptor arrays. */
#ifndef DSN_SCHEDULE_INTERNAL_H
#define DSN_SCHEDULE_INTERNAL_H

#include "nas/dsn_schedule.h"

typedef struct dsn_schedule_builder {
  dsr_schedule *out;
  int32_t step_capacity;
  int32_t descriptor_capacity;
} dsn_schedule_builder;

/* Makes room for steps more steps and descriptors more descriptors. */
ds_status dsn_builder_reserve(dsn_schedule_builder *b, int32_t steps, int32_t descriptors,
                              ds_error *err);

/* DS_ERR_INVALID_ARGUMENT naming node and what when value does not fit a u32 field. */
ds_status dsn_builder_check_u32(int64_t value, const char *what, int32_t node, ds_error *err);

/* Appends the steps of one deformable layer (model node node, deformable index
 * layer_index); the slice must have passed dsn_oracle_layer. */
ds_status dsn_builder_add_deform(dsn_schedule_builder *b, const dsr_deform_attn *layer,
                                 int32_t node, int32_t layer_index, dsr_slice slice,
                                 const dsn_preset *preset,
                                 const dsn_layer_addresses *addresses, ds_error *err);

#endif
