/* The deformslice subcommands. Each takes argv after the subcommand name and returns the
 * process exit status: 0 on success, 2 for bad usage, 1 for any other failure. */
#ifndef DST_COMMANDS_H
#define DST_COMMANDS_H

#include "common/ds_status.h"

/* Bundled defaults, relative to the source tree the tool was built from. */
#ifndef DS_SOURCE_DIR
#define DS_SOURCE_DIR "."
#endif
#define DST_DEFAULT_MODEL DS_SOURCE_DIR "/models/dat_pp_nano.onnx"
#define DST_DEFAULT_PRESET "zcu102"
#define DST_DEFAULT_OUT "out"

int dst_cmd_compile(int argc, char **argv);
int dst_cmd_run(int argc, char **argv);
int dst_cmd_inspect(int argc, char **argv);
int dst_cmd_audit(int argc, char **argv);
int dst_cmd_check(int argc, char **argv);

/* Prints "deformslice: error: MESSAGE" and returns the exit status for status. */
int dst_report_error(const ds_error *err);

/* Exit status for a failed status: 2 for DS_ERR_INVALID_ARGUMENT, else 1. */
int dst_exit_status(ds_status status);

#endif
