#include "ds_model.h"

#include <stdlib.h>
#include <string.h>

void ds_model_free(dsr_model *model) {
  if (model == NULL)
    return;

  for (int32_t i = 0; i < model->tensor_count && model->tensors != NULL; i++) {
    dsr_tensor *t = &model->tensors[i];
    free((void *)t->data_f32);
    free((void *)t->data_q);
    free((void *)t->channel_scales);
  }
  free(model->tensors);

  for (int32_t i = 0; i < model->node_count && model->nodes != NULL; i++) {
    free(model->nodes[i].deform);
    free((void *)model->nodes[i].qwords);
  }
  free(model->nodes);

  memset(model, 0, sizeof *model);
}

int32_t ds_model_find_tensor(const dsr_model *model, const char *name) {
  for (int32_t i = 0; i < model->tensor_count; i++) {
    if (strcmp(model->tensors[i].name, name) == 0)
      return i;
  }
  return -1;
}

int32_t ds_model_deform_count(const dsr_model *model) {
  int32_t count = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    if (model->nodes[i].op == DSR_OP_DEFORM_ATTN)
      count++;
  }
  return count;
}

int32_t ds_model_deform_node(const dsr_model *model, int32_t layer_index) {
  int32_t seen = 0;
  for (int32_t i = 0; i < model->node_count; i++) {
    if (model->nodes[i].op != DSR_OP_DEFORM_ATTN)
      continue;
    if (seen == layer_index)
      return i;
    seen++;
  }
  return -1;
}
