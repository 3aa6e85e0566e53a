/*
 * Entry points of the importer: reading the file, unpacking the protobuf, checking versions,
 * then running the passes in order (see dsc_import.h).
 */
#include "dsc_import.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dsc_ir.h"

/* The protobuf format caps one message at 2 GiB; larger models keep their weights in
 * external data files. */
#define DSC_MAX_FILE_BYTES (INT64_C(2) << 30)

static ds_status read_file(const char *path, uint8_t **data, size_t *size, ds_error *err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return ds_fail(err, DS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat info;
  if (fstat(fileno(f), &info) != 0 || !S_ISREG(info.st_mode)) {
    fclose(f);
    return ds_fail(err, DS_ERR_IO, "%s: not a regular file; pass the path of an .onnx file",
                   path);
  }

  int64_t length = -1;
  if (fseek(f, 0, SEEK_END) == 0)
    length = ftell(f);
  if (length < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return ds_fail(err, DS_ERR_IO, "%s: cannot determine the file size", path);
  }
  if (length > DSC_MAX_FILE_BYTES) {
    fclose(f);
    return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: file of %" PRId64 " bytes exceeds the %" PRId64
                   "-byte limit of one ONNX protobuf", path, length, DSC_MAX_FILE_BYTES);
  }

  uint8_t *buffer = malloc(length > 0 ? (size_t)length : 1);
  if (buffer == NULL) {
    fclose(f);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: no memory for %" PRId64 " bytes", path,
                   length);
  }
  size_t got = fread(buffer, 1, (size_t)length, f);
  fclose(f);
  if (got != (size_t)length) {
    free(buffer);
    return ds_fail(err, DS_ERR_IO, "%s: read %zu of %" PRId64 " bytes", path, got, length);
  }
  *data = buffer;
  *size = (size_t)length;
  return DS_OK;
}

ds_status dsc_import_file(const char *path, const dsc_options *options, dsr_model *model,
                          dsc_report *report, ds_error *err) {
  if (path == NULL || model == NULL)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsc_import_file: path and model must not be "
                   "NULL");
  memset(model, 0, sizeof *model);
  uint8_t *data = NULL;
  size_t size = 0;
  DS_TRY(read_file(path, &data, &size, err));
  ds_status status = dsc_import_buffer(data, size, path, options, model, report, err);
  free(data);
  return status;
}

static ds_status check_versions(const char *path, const Onnx__ModelProto *m, dsc_report *r,
                                ds_error *err) {
  if (m->graph == NULL)
    return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: not an ONNX model: the protobuf has no graph "
                   "(empty, truncated or another kind of file)", path);
  if (!m->has_ir_version || m->ir_version < DSC_IR_VERSION_MIN || m->ir_version > 1000)
    return ds_fail(err, DS_ERR_ONNX_VERSION, "%s: IR version %" PRId64 " is not supported; "
                   "the importer needs IR version %d or newer", path,
                   m->has_ir_version ? m->ir_version : 0, DSC_IR_VERSION_MIN);
  r->ir_version = (int32_t)m->ir_version;
  int64_t opset = -1;
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    if (o != NULL && (o->domain == NULL || o->domain[0] == '\0' ||
                      strcmp(o->domain, "ai.onnx") == 0))
      opset = o->version;
  }
  if (opset < 0)
    return ds_fail(err, DS_ERR_ONNX_VERSION, "%s: the model imports no opset of the default "
                   "ONNX domain; supported opsets are %d to %d", path, DSC_OPSET_MIN,
                   DSC_OPSET_MAX);
  if (opset < DSC_OPSET_MIN || opset > DSC_OPSET_MAX)
    return ds_fail(err, DS_ERR_ONNX_VERSION, "%s: opset %" PRId64 " is not supported; "
                   "supported opsets are %d to %d: export again with opset_version in that "
                   "range", path, opset, DSC_OPSET_MIN, DSC_OPSET_MAX);
  r->opset = (int32_t)opset;
  return DS_OK;
}

static ds_status run_passes(dsc_graph *g, const Onnx__ModelProto *m,
                            const dsc_options *options, dsr_model *model, ds_error *err) {
  DS_TRY(dsc_graph_from_proto(g, m, err));
  DS_TRY(dsc_graph_fix_input_shape(g, m, options, err));
  dsc_report *r = g->report;
  DS_TRY(dsc_record_constants_step(g, r->onnx_node_count, err));
  DS_TRY(dsc_run_pass(g, "constant folding", "folded", dsc_infer_graph, &r->folded_node_count,
                      err));
  DS_TRY(dsc_run_pass(g, "LayerNorm fusion", "fused", dsc_fuse_layer_norm,
                      &r->layer_norm_fused_count, err));
  DS_TRY(dsc_run_pass(g, "GELU fusion", "fused", dsc_fuse_gelu, &r->gelu_fused_count, err));
  DS_TRY(dsc_run_pass(g, "MatMul+Add fusion", "fused", dsc_fuse_matmul_add,
                      &r->matmul_add_fused_count, err));
  DS_TRY(dsc_run_pass(g, "deformable lifting", "lifted", dsc_lift_deform_blocks,
                      &r->block_count, err));
  DS_TRY(dsc_run_pass(g, "dead-node removal", "removed", dsc_mark_live, &r->dead_node_count,
                      err));
  DS_TRY(dsc_run_pass(g, "lowering", "lowered", dsc_lower_graph, &r->lowered_node_count, err));
  return dsc_build_model(g, model, err);
}

ds_status dsc_import_buffer(const uint8_t *data, size_t size, const char *path_for_messages,
                            const dsc_options *options, dsr_model *model, dsc_report *report,
                            ds_error *err) {
  const char *path = path_for_messages != NULL ? path_for_messages : "(buffer)";
  if (model == NULL || (data == NULL && size > 0))
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "dsc_import_buffer: model must not be NULL "
                   "and data must not be NULL when size > 0");
  memset(model, 0, sizeof *model);
  dsc_report local_report;
  dsc_report *r = report != NULL ? report : &local_report;
  memset(r, 0, sizeof *r);
  if (size == 0)
    return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: the file is empty, not an ONNX model", path);

  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, size, data);
  if (m == NULL)
    return ds_fail(err, DS_ERR_ONNX_PARSE, "%s: the file is not an ONNX model protobuf: "
                   "protobuf-c rejected its %zu byte%s without naming an offset (a truncated or "
                   "corrupt model, or another kind of file); export the model again", path, size,
                   size == 1 ? "" : "s");
  ds_status status = check_versions(path, m, r, err);
  dsc_graph g;
  memset(&g, 0, sizeof g);
  g.path = path;
  char folder[4096] = ".";
  const char *slash = path_for_messages != NULL ? strrchr(path_for_messages, '/') : NULL;
  if (slash != NULL && (size_t)(slash - path_for_messages) < sizeof folder) {
    int length = slash == path_for_messages ? 1 : (int)(slash - path_for_messages);
    snprintf(folder, sizeof folder, "%.*s", length, path_for_messages);
  }
  g.base_dir = folder;
  g.report = r;
  g.input = g.output = -1;
  g.opset = r->opset;
  g.ir_version = r->ir_version;
  if (status == DS_OK)
    status = run_passes(&g, m, options, model, err);
  dsc_graph_free(&g);
  onnx__model_proto__free_unpacked(m, NULL);
  if (status != DS_OK)
    ds_model_free(model);
  return status;
}
