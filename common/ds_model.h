/*
 * Host-side ownership of a dsr_model built by the converter, the quantizer or the artifact
 * reader: every array a model points to is a separate heap block owned by the model.
 */
#ifndef DS_MODEL_H
#define DS_MODEL_H

#include "../runtime/dsr_model.h"

/* Frees every array of model and zeroes it. NULL and an already freed model are fine. */
void ds_model_free(dsr_model *model);

/* Returns the index of the tensor called name, or -1. */
int32_t ds_model_find_tensor(const dsr_model *model, const char *name);

/* Number of DEFORM_ATTN nodes. */
int32_t ds_model_deform_count(const dsr_model *model);

/* Node index of deformable layer layer_index (node order), or -1. */
int32_t ds_model_deform_node(const dsr_model *model, int32_t layer_index);

#endif
