/* deformslice: DAT and DAT++ from ONNX to a sliced fixed-point artifact. */
#include <stdio.h>
#include <string.h>

#include "tools/lib/dst_commands.h"

static const char usage[] =
    "usage: deformslice COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  compile   ONNX model, calibration data and accelerator preset in; artifact, Pareto\n"
    "            front of slice configurations and accuracy report out. With no arguments:\n"
    "            the bundled DAT++ nano, Fashion-MNIST and the zcu102 preset.\n"
    "  run       run an artifact on a data set and print top-1 accuracy\n"
    "  inspect   print an artifact's sections, slice tables and DMA schedule, or an ONNX\n"
    "            model's import report\n"
    "  audit     float against fixed-point accuracy and per-tensor quantization noise\n"
    "  check     run an ONNX model in float on a stored input and compare the output with a\n"
    "            stored reference\n"
    "\n"
    "`deformslice COMMAND --help` lists the options of a command.\n";

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }

  const char *command = argv[1];
  if (strcmp(command, "compile") == 0)
    return dst_cmd_compile(argc - 2, argv + 2);
  if (strcmp(command, "run") == 0)
    return dst_cmd_run(argc - 2, argv + 2);
  if (strcmp(command, "inspect") == 0)
    return dst_cmd_inspect(argc - 2, argv + 2);
  if (strcmp(command, "audit") == 0)
    return dst_cmd_audit(argc - 2, argv + 2);
  if (strcmp(command, "check") == 0)
    return dst_cmd_check(argc - 2, argv + 2);

  fprintf(stderr, "deformslice: error: unknown command '%s'\n\n%s", command, usage);
  return 2;
}
