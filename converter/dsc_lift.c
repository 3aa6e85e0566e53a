/*
 * Lifting deformable attention blocks (DAttentionBaseline of DAT and DAT++) into one
 * DSR_OP_DEFORM_ATTN node each.
 *
 * A block is found by the parameter names that survive export: PREFIX.proj_q.weight with
 * PREFIX.proj_k.weight, PREFIX.proj_v.weight, PREFIX.proj_out.weight, PREFIX.conv_offset.0.weight
 * and PREFIX.conv_offset.3.weight. Its input x is the input of the proj_q Conv and its output
 * is the proj_out Conv output. Every node between them (the backward closure of the output,
 * stopping at x and at constants) is replaced. The parameters are read from the graph:
 *   - groups = C / Cg, with Cg the depthwise offset conv's output channels;
 *   - kernel, stride and pad from that Conv node;
 *   - LayerNorm gamma, beta and epsilon from PREFIX.conv_offset.1.norm.* or else from the
 *     fused LayerNorm node inside the block (the exporter renames coinciding initializers);
 *   - the relative position bias table from the GridSample whose X input is constant,
 *     shaped (groups, heads / groups, 2H - 1, 2W - 1), which gives heads;
 *   - the convention: a Tanh inside the block means DAT, a Clip means DAT++; DAT's
 *     offset_range_factor is the product of the constants multiplying tanh, times Hk.
 *
 * NOTE: the structure between x and the output is checked by op counts (two GridSample, one
 * Softmax, one LayerNorm, one GELU), parameter shapes and the main data flow (offsets from q,
 * samples of x, k and v from the samples), not node by node. A graph that keeps all of that
 * but computes something else in between would still be lifted as DAttentionBaseline.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_ir.h"

#define DSC_MAX_BLOCK_NODES 4096

typedef struct block {
  char prefix[DSR_NAME_BYTES];
  char name[DSR_NAME_BYTES];
  int32_t x, y;
  int32_t q_conv, k_conv, v_conv, out_conv, offset_conv, offset_pw_conv;
  int32_t *nodes;       /* the closure */
  int32_t node_count;
  uint8_t *in_block;    /* per node */
  int32_t layer_norm, gelu, tanh_node, clip_count, tanh_count, softmax_count;
  int32_t grid_samples[4];
  int32_t grid_sample_count;
  dsr_deform_attn d;
} block;

static ds_status block_fail(const dsc_graph *g, const block *b, ds_error *err,
                            const char *detail) {
  return ds_fail(err, DS_ERR_UNSUPPORTED_OP, "%s: deformable attention block '%s': %s",
                 g->path, b->name, detail);
}

static int32_t param(const dsc_graph *g, const block *b, const char *suffix) {
  char name[512];
  snprintf(name, sizeof name, "%s%s", b->prefix, suffix);
  int32_t v = dsc_graph_find(g, name);
  return dsc_is_constant(g, v) ? v : -1;
}

/* The live Conv node that takes constant weight as its weight input. */
static int32_t conv_of_weight(const dsc_graph *g, int32_t weight) {
  for (int32_t i = 0; weight >= 0 && i < dsc_use_count(g, weight); i++) {
    int32_t c = dsc_consumer(g, weight, i);
    const dsc_node *n = &g->nodes[c];
    if (!n->dead && strcmp(n->op_type, "Conv") == 0 && n->input_count >= 2 &&
        n->inputs[1] == weight)
      return c;
  }
  return -1;
}

static ds_status find_convs(dsc_graph *g, block *b, ds_error *err) {
  const char *suffixes[6] = {"proj_q.weight", "proj_k.weight", "proj_v.weight",
                             "proj_out.weight", "conv_offset.0.weight", "conv_offset.3.weight"};
  int32_t *slots[6] = {&b->q_conv, &b->k_conv, &b->v_conv, &b->out_conv, &b->offset_conv,
                       &b->offset_pw_conv};
  for (int32_t i = 0; i < 6; i++) {
    *slots[i] = conv_of_weight(g, param(g, b, suffixes[i]));
    if (*slots[i] < 0) {
      char detail[160];
      snprintf(detail, sizeof detail, "no Conv node uses %s%s as its weight", b->prefix,
               suffixes[i]);
      return block_fail(g, b, err, detail);
    }
  }
  b->x = g->nodes[b->q_conv].inputs[0];
  b->y = g->nodes[b->out_conv].outputs[0];
  return DS_OK;
}

/* Collects the backward closure of y, stopping at x and at constants. */
static ds_status collect_closure(dsc_graph *g, block *b, ds_error *err) {
  b->in_block = calloc((size_t)g->node_count, 1);
  b->nodes = malloc(DSC_MAX_BLOCK_NODES * sizeof *b->nodes);
  if (b->in_block == NULL || b->nodes == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory to lift a block", g->path);
  b->nodes[b->node_count++] = b->out_conv;
  b->in_block[b->out_conv] = 1;
  for (int32_t next = 0; next < b->node_count; next++) {
    const dsc_node *n = &g->nodes[b->nodes[next]];
    for (int32_t k = 0; k < n->input_count; k++) {
      int32_t v = n->inputs[k];
      if (v < 0 || v == b->x || dsc_is_constant(g, v))
        continue;
      int32_t p = g->values[v].producer;
      if (p < 0) {
        char detail[256];
        snprintf(detail, sizeof detail, "it reads '%.120s', which is neither the block input "
                 "nor a constant", g->values[v].name);
        return block_fail(g, b, err, detail);
      }
      if (b->in_block[p])
        continue;
      if (b->node_count == DSC_MAX_BLOCK_NODES)
        return block_fail(g, b, err, "more than 4096 nodes between its input and output");
      b->in_block[p] = 1;
      b->nodes[b->node_count++] = p;
    }
  }
  return DS_OK;
}

/* Internal tensors must not be read outside the block, since they disappear. */
static ds_status check_escapes(const dsc_graph *g, const block *b, ds_error *err) {
  for (int32_t i = 0; i < b->node_count; i++) {
    const dsc_node *n = &g->nodes[b->nodes[i]];
    for (int32_t o = 0; o < n->output_count; o++) {
      int32_t v = n->outputs[o];
      if (v < 0 || v == b->y)
        continue;
      for (int32_t c = 0; c < dsc_use_count(g, v); c++) {
        int32_t consumer = dsc_consumer(g, v, c);
        if (!b->in_block[consumer] || v == g->output) {
          char detail[320];
          snprintf(detail, sizeof detail, "its internal tensor '%.100s' is also read by node "
                   "'%.100s' outside the block", g->values[v].name, g->nodes[consumer].name);
          return block_fail(g, b, err, detail);
        }
      }
    }
  }
  return DS_OK;
}

static void classify_nodes(const dsc_graph *g, block *b) {
  b->layer_norm = b->gelu = b->tanh_node = -1;
  for (int32_t i = 0; i < b->node_count; i++) {
    int32_t index = b->nodes[i];
    const dsc_node *n = &g->nodes[index];
    if (n->op == DSR_OP_LAYER_NORM)
      b->layer_norm = b->layer_norm < 0 ? index : -2;
    else if (n->op == DSR_OP_GELU)
      b->gelu = b->gelu < 0 ? index : -2;
    else if (strcmp(n->op_type, "Tanh") == 0) {
      b->tanh_node = index;
      b->tanh_count++;
    } else if (strcmp(n->op_type, "Clip") == 0)
      b->clip_count++;
    else if (strcmp(n->op_type, "Softmax") == 0)
      b->softmax_count++;
    else if (strcmp(n->op_type, "GridSample") == 0 && b->grid_sample_count < 4)
      b->grid_samples[b->grid_sample_count++] = index;
  }
}

static ds_status check_grid_sample(const dsc_graph *g, const block *b, int32_t node,
                                   ds_error *err) {
  const dsc_node *n = &g->nodes[node];
  char mode[32], padding[32];
  int64_t align = 0;
  DS_TRY(dsc_attr_string(g, n, "mode", "bilinear", mode, sizeof mode, err));
  DS_TRY(dsc_attr_string(g, n, "padding_mode", "zeros", padding, sizeof padding, err));
  DS_TRY(dsc_attr_int(g, n, "align_corners", 0, &align, err));
  if (strcmp(mode, "bilinear") != 0 || strcmp(padding, "zeros") != 0 || align != 1) {
    char detail[384];
    snprintf(detail, sizeof detail, "GridSample '%.100s' uses mode '%s', padding '%s', "
             "align_corners %d; only bilinear, zeros, align_corners=1 is supported", n->name,
             mode, padding, (int)align);
    return block_fail(g, b, err, detail);
  }
  return DS_OK;
}

static ds_status read_geometry(const dsc_graph *g, block *b, ds_error *err) {
  const dsc_value *x = &g->values[b->x];
  const dsc_value *wq = &g->values[g->nodes[b->q_conv].inputs[1]];
  const dsc_value *wdw = &g->values[g->nodes[b->offset_conv].inputs[1]];
  const dsc_value *offset = &g->values[g->nodes[b->offset_conv].outputs[0]];
  if (x->rank != 4 || x->dims[0] != 1 || wq->rank != 4 || wq->dims[0] != x->dims[1]) {
    char xs[96], ws[96], detail[320];
    snprintf(detail, sizeof detail, "its input '%.80s' has shape %s and proj_q.weight %s; the "
             "input must be (1, C, H, W) with C the proj_q channels", x->name,
             dsc_shape_text(x, xs, sizeof xs), dsc_shape_text(wq, ws, sizeof ws));
    return block_fail(g, b, err, detail);
  }
  if (wdw->rank != 4 || wdw->dims[1] != 1 || wdw->dims[2] != wdw->dims[3] ||
      wdw->dims[0] <= 0 || x->dims[1] % wdw->dims[0] != 0 || offset->rank != 4)
    return block_fail(g, b, err, "conv_offset.0.weight must be a depthwise (Cg, 1, k, k) "
                      "weight with Cg dividing C");
  const dsr_conv_attrs *c = &g->nodes[b->offset_conv].attrs.conv;
  if (c->group != wdw->dims[0])
    return block_fail(g, b, err, "the offset conv must be depthwise (group = Cg)");
  if (c->stride[0] != c->stride[1] || c->pad[0] != c->pad[1] || c->pad[0] != c->pad[2] ||
      c->pad[0] != c->pad[3] || c->dilation[0] != 1 || c->dilation[1] != 1)
    return block_fail(g, b, err, "the offset conv needs equal strides, equal pads on all "
                      "sides and no dilation");

  dsr_deform_attn *d = &b->d;
  d->channels = (int32_t)x->dims[1];
  d->height = (int32_t)x->dims[2];
  d->width = (int32_t)x->dims[3];
  d->groups = (int32_t)(x->dims[1] / wdw->dims[0]);
  d->offset_kernel = (int32_t)wdw->dims[2];
  d->offset_stride = c->stride[0];
  d->offset_pad = c->pad[0];

  const dsc_node *pw = &g->nodes[b->offset_pw_conv];
  const dsc_value *wpw = &g->values[pw->inputs[1]];
  if (wpw->rank != 4 || wpw->dims[0] != 2 || wpw->dims[1] != wdw->dims[0] ||
      wpw->dims[2] != 1 || wpw->dims[3] != 1 || pw->attrs.conv.group != 1 ||
      pw->attrs.conv.stride[0] != 1 || pw->attrs.conv.stride[1] != 1 ||
      pw->attrs.conv.pad[0] != 0 || pw->attrs.conv.pad[2] != 0 ||
      (pw->input_count > 2 && pw->inputs[2] >= 0))
    return block_fail(g, b, err, "conv_offset.3 must be a (2, Cg, 1, 1) conv without bias");
  return DS_OK;
}

/* The GridSample reading a constant table gives heads and the bias table. */
static ds_status read_rpe_table(dsc_graph *g, block *b, ds_error *err) {
  int32_t table = -1;
  for (int32_t i = 0; i < b->grid_sample_count; i++) {
    int32_t in = g->nodes[b->grid_samples[i]].inputs[0];
    if (dsc_is_constant(g, in))
      table = in;
  }
  if (table < 0)
    return block_fail(g, b, err, "no GridSample reads a constant relative position bias "
                      "table");
  const dsc_value *t = &g->values[table];
  dsr_deform_attn *d = &b->d;
  /* A table built for another map size is read rescaled (float mode only), as PyTorch's
   * grid_sample does when a dynamic-axes export runs at a new size. */
  int other_size = t->dims[2] != 2 * d->height - 1 || t->dims[3] != 2 * d->width - 1;
  if (t->rank != 4 || t->dtype != DSC_DTYPE_F32 || t->dims[0] != d->groups ||
      (other_size && (d->height < 2 || d->width < 2 || t->dims[2] < 1 || t->dims[3] < 1))) {
    char shape[96], detail[512];
    dsc_shape_text(t, shape, sizeof shape);
    snprintf(detail, sizeof detail, "the bias table '%.80s' has shape %s, expected a float "
             "(%d, heads / groups, rows, cols) table for groups %d, such as (%d, heads / "
             "groups, %d, %d) for the %dx%d map (a table of another size needs a map of at "
             "least 2x2)", t->name, shape, d->groups, d->groups, d->groups, 2 * d->height - 1,
             2 * d->width - 1, d->height, d->width);
    return block_fail(g, b, err, detail);
  }
  d->heads = (int32_t)(t->dims[0] * t->dims[1]);
  if (d->heads <= 0 || d->channels % d->heads != 0)
    return block_fail(g, b, err, "the heads of the bias table do not divide the channels");
  d->head_channels = d->channels / d->heads;

  int64_t dims[3] = {d->heads, t->dims[2], t->dims[3]};
  char name[DSR_NAME_BYTES + 16];
  snprintf(name, sizeof name, "%srpe_table", b->prefix);
  int32_t value = -1;
  DS_TRY(dsc_graph_add_fresh_value(g, name, &value, err));
  DS_TRY(dsc_value_set_data(g, value, DSC_DTYPE_F32, 3, dims, g->values[table].data, err));
  d->params[DSR_DEFORM_RPE_TABLE] = value;
  return DS_OK;
}

static ds_status read_layer_norm(const dsc_graph *g, block *b, ds_error *err) {
  if (b->layer_norm < 0)
    return block_fail(g, b, err, "its offset network needs exactly one LayerNorm (the "
                      "decomposed pattern was not recognised)");
  if (b->gelu < 0)
    return block_fail(g, b, err, "its offset network needs exactly one exact GELU (the "
                      "decomposed pattern was not recognised)");
  const dsc_node *ln = &g->nodes[b->layer_norm];
  int32_t cg = b->d.channels / b->d.groups;
  int32_t gamma = param(g, b, "conv_offset.1.norm.weight");
  int32_t beta = param(g, b, "conv_offset.1.norm.bias");
  if (gamma < 0 || dsc_value_elements(&g->values[gamma]) != cg)
    gamma = ln->inputs[1];
  if (beta < 0 || dsc_value_elements(&g->values[beta]) != cg)
    beta = ln->inputs[2];
  if (dsc_value_elements(&g->values[gamma]) != cg || dsc_value_elements(&g->values[beta]) != cg)
    return block_fail(g, b, err, "the offset LayerNorm does not normalize Cg channels");
  b->d.params[DSR_DEFORM_OFFSET_LN_G] = gamma;
  b->d.params[DSR_DEFORM_OFFSET_LN_B] = beta;
  b->d.ln_epsilon = ln->attrs.norm.epsilon;
  return DS_OK;
}

/* DAT: offset = tanh(o) * c1 * c2 ...; factor = product * Hk, the same on both axes. */
static ds_status read_range_factor(const dsc_graph *g, block *b, int64_t hk, int64_t wk,
                                   ds_error *err) {
  double scale[2] = {1.0, 1.0};
  int32_t steps = 0;
  int32_t value = g->nodes[b->tanh_node].outputs[0];
  for (int32_t node = dsc_single_consumer(g, value); node >= 0 && b->in_block[node];
       node = dsc_single_consumer(g, value)) {
    const dsc_node *n = &g->nodes[node];
    if (strcmp(n->op_type, "Mul") != 0 || n->input_count != 2)
      break;
    int32_t c = n->inputs[0] == value ? n->inputs[1] : n->inputs[0];
    int64_t count = dsc_is_constant(g, c) ? dsc_value_elements(&g->values[c]) : 0;
    if (count != 1 && count != 2)
      break;
    scale[0] *= dsc_get_f(&g->values[c], 0);
    scale[1] *= dsc_get_f(&g->values[c], count - 1);
    value = n->outputs[0];
    steps++;
  }
  double factor_y = scale[0] * (double)hk, factor_x = scale[1] * (double)wk;
  if (steps == 0 || fabs(factor_y - factor_x) > 1e-4 * fabs(factor_y))
    return block_fail(g, b, err, "the offset range after tanh is not factor / Hk and factor "
                      "/ Wk with one factor");
  b->d.offset_range_factor = (float)factor_y;
  return DS_OK;
}

static ds_status read_convention(const dsc_graph *g, block *b, ds_error *err) {
  const dsc_value *offset = &g->values[g->nodes[b->offset_conv].outputs[0]];
  if (b->tanh_count == 1 && b->clip_count == 0) {
    b->d.convention = DSR_DEFORM_DAT;
    return read_range_factor(g, b, offset->dims[2], offset->dims[3], err);
  }
  if (b->tanh_count == 0 && b->clip_count >= 1) {
    b->d.convention = DSR_DEFORM_DAT_PP;
    b->d.offset_range_factor = 0.0f;
    return DS_OK;
  }
  return block_fail(g, b, err, "cannot tell DAT (one Tanh) from DAT++ (a Clip) offsets");
}

/* The query grid of the bias lookup, from the constant grid that the displacement Sub reads:
 * its first y is -1 when queries sit at pixel corners over H - 1 (DAT++ and this project's
 * DAT fixtures) and -1 + 1 / H at pixel centres over H (the 2022 DAT code). */
static ds_status read_query_grid(const dsc_graph *g, block *b, ds_error *err) {
  int64_t grid_values = (int64_t)b->d.height * b->d.width * 2;
  for (int32_t i = 0; i < b->node_count; i++) {
    const dsc_node *n = &g->nodes[b->nodes[i]];
    if (strcmp(n->op_type, "Sub") != 0 || n->input_count != 2 ||
        !dsc_is_constant(g, n->inputs[0]))
      continue;
    const dsc_value *grid = &g->values[n->inputs[0]];
    int64_t count = dsc_value_elements(grid);
    if (grid->dtype != DSC_DTYPE_F32 || grid->rank < 1 || grid->dims[grid->rank - 1] != 2 ||
        count % grid_values != 0 || count / grid_values > b->d.groups)
      continue;
    double first = dsc_get_f(grid, 0);
    if (fabs(first + 1.0) < 1e-6)
      return DS_OK;
    if (fabs(first - (-1.0 + 1.0 / b->d.height)) < 1e-6) {
      if (b->d.convention != DSR_DEFORM_DAT)
        return block_fail(g, b, err, "its queries sit at pixel centres, which only DAT "
                          "(tanh offsets) combines with; DAT++ places them at pixel corners");
      b->d.convention = DSR_DEFORM_DAT_CENTRED;
      return DS_OK;
    }
    char detail[256];
    snprintf(detail, sizeof detail, "the query grid of its position bias starts at %g, "
             "neither -1 (pixel corners) nor %g (pixel centres)", first,
             -1.0 + 1.0 / b->d.height);
    return block_fail(g, b, err, detail);
  }
  /* NOTE: no constant query grid found; the pixel-corner grid of DAT++ is assumed. */
  return DS_OK;
}

/* attn_scale = head_channels ^ -0.5, checked against a scalar Mul on a product output. */
static ds_status check_attn_scale(const dsc_graph *g, block *b, ds_error *err) {
  b->d.attn_scale = (float)(1.0 / sqrt((double)b->d.head_channels));
  for (int32_t i = 0; i < b->node_count; i++) {
    const dsc_node *n = &g->nodes[b->nodes[i]];
    if (strcmp(n->op_type, "Mul") != 0 || n->input_count != 2)
      continue;
    for (int32_t k = 0; k < 2; k++) {
      int32_t p = n->inputs[k] >= 0 ? g->values[n->inputs[k]].producer : -1;
      int32_t c = n->inputs[1 - k];
      if (p < 0 || (strcmp(g->nodes[p].op_type, "Einsum") != 0 &&
                    strcmp(g->nodes[p].op_type, "MatMul") != 0) ||
          !dsc_is_constant(g, c) || dsc_value_elements(&g->values[c]) != 1)
        continue;
      double found = dsc_get_f(&g->values[c], 0);
      if (fabs(found - b->d.attn_scale) > 1e-5 * b->d.attn_scale) {
        char detail[256];
        snprintf(detail, sizeof detail, "the attention scale in the graph is %g but %d heads "
                 "of %d channels give %g", found, b->d.heads, b->d.head_channels,
                 b->d.attn_scale);
        return block_fail(g, b, err, detail);
      }
    }
  }
  return DS_OK;
}

static ds_status set_conv_params(const dsc_graph *g, block *b, ds_error *err) {
  struct { int32_t conv, weight, bias; } map[5] = {
      {b->q_conv, DSR_DEFORM_PROJ_Q_W, DSR_DEFORM_PROJ_Q_B},
      {b->k_conv, DSR_DEFORM_PROJ_K_W, DSR_DEFORM_PROJ_K_B},
      {b->v_conv, DSR_DEFORM_PROJ_V_W, DSR_DEFORM_PROJ_V_B},
      {b->out_conv, DSR_DEFORM_PROJ_OUT_W, DSR_DEFORM_PROJ_OUT_B},
      {b->offset_conv, DSR_DEFORM_OFFSET_DW_W, DSR_DEFORM_OFFSET_DW_B},
  };
  for (int32_t i = 0; i < 5; i++) {
    const dsc_node *n = &g->nodes[map[i].conv];
    if (n->input_count < 3 || !dsc_is_constant(g, n->inputs[2]))
      return block_fail(g, b, err, "its projections and offset conv need constant biases");
    const dsc_value *w = &g->values[n->inputs[1]];
    const dsr_conv_attrs *c = &n->attrs.conv;
    int pointwise = w->dims[0] == b->d.channels && w->dims[1] == b->d.channels &&
                    w->dims[2] == 1 && w->dims[3] == 1 && c->group == 1 &&
                    c->stride[0] == 1 && c->stride[1] == 1 && c->pad[0] == 0 &&
                    c->pad[1] == 0 && c->pad[2] == 0 && c->pad[3] == 0;
    if (i < 4 && !pointwise)
      return block_fail(g, b, err, "proj_q, proj_k, proj_v and proj_out must be (C, C, 1, 1) "
                        "convs with group 1, stride 1 and no padding");
    b->d.params[map[i].weight] = n->inputs[1];
    b->d.params[map[i].bias] = n->inputs[2];
  }
  b->d.params[DSR_DEFORM_OFFSET_PW_W] = g->nodes[b->offset_pw_conv].inputs[1];
  return DS_OK;
}

/* True when value is target, or target reshaped by a chain of Reshape or Identity nodes. */
static int reshaped_from(const dsc_graph *g, int32_t value, int32_t target) {
  for (int32_t steps = 0; steps < 16 && value >= 0; steps++) {
    if (value == target)
      return 1;
    int32_t p = g->values[value].producer;
    if (p < 0 || (strcmp(g->nodes[p].op_type, "Reshape") != 0 &&
                  strcmp(g->nodes[p].op_type, "Identity") != 0))
      return 0;
    value = g->nodes[p].inputs[0];
  }
  return 0;
}

/* The data flow the operator assumes: offsets from q, samples of x, k and v from samples. */
static ds_status check_data_flow(const dsc_graph *g, const block *b, ds_error *err) {
  int32_t q = g->nodes[b->q_conv].outputs[0];
  if (!reshaped_from(g, g->nodes[b->offset_conv].inputs[0], q))
    return block_fail(g, b, err, "the offset conv does not read the proj_q output");
  int32_t sampler = -1;
  for (int32_t i = 0; i < b->grid_sample_count; i++) {
    if (!dsc_is_constant(g, g->nodes[b->grid_samples[i]].inputs[0]))
      sampler = b->grid_samples[i];
  }
  if (sampler < 0 || !reshaped_from(g, g->nodes[sampler].inputs[0], b->x))
    return block_fail(g, b, err, "the sampling GridSample does not read the block input");
  int32_t samples = g->nodes[sampler].outputs[0];
  if (!reshaped_from(g, g->nodes[b->k_conv].inputs[0], samples) ||
      !reshaped_from(g, g->nodes[b->v_conv].inputs[0], samples))
    return block_fail(g, b, err, "proj_k and proj_v do not read the sampled values");
  return DS_OK;
}

static ds_status read_parameters(dsc_graph *g, block *b, ds_error *err) {
  classify_nodes(g, b);
  if (b->grid_sample_count != 2 || b->softmax_count != 1)
    return block_fail(g, b, err, "expected two GridSample nodes and one Softmax between its "
                      "input and output");
  for (int32_t i = 0; i < 2; i++)
    DS_TRY(check_grid_sample(g, b, b->grid_samples[i], err));
  DS_TRY(check_data_flow(g, b, err));
  DS_TRY(read_geometry(g, b, err));
  DS_TRY(read_layer_norm(g, b, err));
  DS_TRY(read_convention(g, b, err));
  DS_TRY(set_conv_params(g, b, err));
  DS_TRY(read_rpe_table(g, b, err));
  DS_TRY(read_query_grid(g, b, err));
  DS_TRY(check_attn_scale(g, b, err));
  b->d.slice.rows = b->d.slice.cols = 1;
  b->d.slice.semantics = DSR_SLICE_PHYSICAL;
  return DS_OK;
}

static ds_status append_report(dsc_graph *g, const block *b, ds_error *err) {
  dsc_report *r = g->report;
  if (r->block_count == DSC_MAX_REPORT_BLOCKS)
    return ds_fail(err, DS_ERR_UNSUPPORTED_OP, "%s: more than %d deformable attention "
                   "blocks; the runtime supports at most %d", g->path, DSC_MAX_REPORT_BLOCKS,
                   DSC_MAX_REPORT_BLOCKS);
  const dsc_value *offset = &g->values[g->nodes[b->offset_conv].outputs[0]];
  dsc_block_info *info = &r->blocks[r->block_count++];
  memset(info, 0, sizeof *info);
  snprintf(info->name, sizeof info->name, "%s", b->name);
  info->channels = b->d.channels;
  info->height = b->d.height;
  info->width = b->d.width;
  info->groups = b->d.groups;
  info->heads = b->d.heads;
  info->offset_kernel = b->d.offset_kernel;
  info->offset_stride = b->d.offset_stride;
  info->samples_h = (int32_t)offset->dims[2];
  info->samples_w = (int32_t)offset->dims[3];
  info->convention = b->d.convention;
  info->offset_range_factor = b->d.offset_range_factor;
  return DS_OK;
}

static ds_status replace_block(dsc_graph *g, block *b, ds_error *err) {
  int32_t node = -1;
  DS_TRY(dsc_graph_add_node(g, b->name, "DeformAttn", 1, 1, &node, err));
  dsc_node *n = &g->nodes[node];
  n->deform = malloc(sizeof *n->deform);
  if (n->deform == NULL)
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for a deformable layer", g->path);
  *n->deform = b->d;
  n->op = DSR_OP_DEFORM_ATTN;
  n->inputs[0] = b->x;
  n->outputs[0] = b->y;
  for (int32_t i = 0; i < b->node_count; i++)
    g->nodes[b->nodes[i]].dead = 1;
  g->values[b->y].producer = node;
  return append_report(g, b, err);
}

static ds_status lift_block(dsc_graph *g, const char *prefix, ds_error *err) {
  block b;
  memset(&b, 0, sizeof b);
  snprintf(b.prefix, sizeof b.prefix, "%s", prefix);
  size_t length = strlen(b.prefix);
  snprintf(b.name, sizeof b.name, "%.*s", (int)(length > 0 ? length - 1 : 0), b.prefix);
  if (length == 0)
    snprintf(b.name, sizeof b.name, "deform_attn");
  ds_status status = find_convs(g, &b, err);
  if (status == DS_OK && g->values[b.x].rank < 0) {
    /* An op without shape inference feeds the block; the lowering step names it. */
    return DS_OK;
  }
  if (status == DS_OK)
    status = collect_closure(g, &b, err);
  if (status == DS_OK)
    status = check_escapes(g, &b, err);
  if (status == DS_OK)
    status = read_parameters(g, &b, err);
  if (status == DS_OK)
    status = replace_block(g, &b, err);
  free(b.nodes);
  free(b.in_block);
  return status;
}

static int has_suffix(const char *name, const char *suffix, size_t *prefix_length) {
  size_t n = strlen(name), s = strlen(suffix);
  if (n < s || strcmp(name + n - s, suffix) != 0)
    return 0;
  if (n > s && name[n - s - 1] != '.')
    return 0;
  *prefix_length = n - s;
  return 1;
}

ds_status dsc_lift_deform_blocks(dsc_graph *g, ds_error *err) {
  int32_t original = g->value_count;
  for (int32_t v = 0; v < original; v++) {
    size_t prefix_length = 0;
    if (!dsc_is_constant(g, v) || !has_suffix(g->values[v].name, "proj_q.weight",
                                              &prefix_length))
      continue;
    if (prefix_length >= DSR_NAME_BYTES - 32)
      return ds_fail(err, DS_ERR_UNSUPPORTED_OP, "%s: parameter prefix of '%s' is longer "
                     "than %d characters", g->path, g->values[v].name, DSR_NAME_BYTES - 32);
    char prefix[DSR_NAME_BYTES];
    snprintf(prefix, sizeof prefix, "%.*s", (int)prefix_length, g->values[v].name);
    char probe[DSR_NAME_BYTES + 32];
    snprintf(probe, sizeof probe, "%sconv_offset.0.weight", prefix);
    if (!dsc_is_constant(g, dsc_graph_find(g, probe)))
      continue; /* attention without offsets: not a deformable block */
    DS_TRY(dsc_graph_index_uses(g, err));
    DS_TRY(lift_block(g, prefix, err));
  }
  return DS_OK;
}
