/*
 * Helpers shared by the tests that run the deformslice command: the command's path, a
 * four-class copy of Fashion-MNIST for the 4-output fixture models, and a runner that
 * captures the command's output. Include it from one test program at a time; the functions
 * are static.
 */
#ifndef DS_TEST_CLI_H
#define DS_TEST_CLI_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "tools/lib/dst_data.h"

#define TOOL DS_BINARY_DIR "/bin/deformslice"

/*
 * The tiny fixture models have 4 outputs, and evaluation rejects labels outside a model's
 * outputs. FOUR_CLASS_DIR holds the Fashion-MNIST IDX files with every label taken modulo 4:
 * links to the installed image files and plain label files.
 */
#define FOUR_CLASS_DIR DS_BINARY_DIR "/fashion_mnist_4class"
#define FOUR_CLASS_DATA " --data " FOUR_CLASS_DIR

static void write_four_class_labels(const char *folder, const char *stem) {
  char from[512], to[512];
  snprintf(from, sizeof from, "%s/%s.gz", DST_FASHION_MNIST_DIR, stem);
  snprintf(to, sizeof to, "%s/%s", folder, stem);
  gzFile in = gzopen(from, "rb");
  cr_assert_not_null(in, "cannot open %s", from);
  static uint8_t bytes[8 + 60000];
  int size = gzread(in, bytes, sizeof bytes);
  gzclose(in);
  cr_assert_gt(size, 8, "%s is too short", from);
  for (int i = 8; i < size; i++)
    bytes[i] %= 4;
  FILE *out = fopen(to, "wb");
  cr_assert_not_null(out, "cannot write %s", to);
  cr_assert_eq(fwrite(bytes, 1, (size_t)size, out), (size_t)size);
  fclose(out);
}

/*
 * Returns whether Fashion-MNIST is installed, and then makes FOUR_CLASS_DIR once. Test
 * processes run in parallel, so each builds a private folder and renames it into place.
 */
static int have_four_class_data(void) {
  if (access(DST_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
    return 0;
  if (access(FOUR_CLASS_DIR "/t10k-labels-idx1-ubyte", R_OK) == 0)
    return 1;
  char folder[512], link_path[600];
  snprintf(folder, sizeof folder, "%s/fashion_mnist_4class.XXXXXX", DS_BINARY_DIR);
  cr_assert_not_null(mkdtemp(folder));
  const char *images[2] = {"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"};
  for (int i = 0; i < 2; i++) {
    char target[512];
    snprintf(target, sizeof target, "%s/%s", DST_FASHION_MNIST_DIR, images[i]);
    snprintf(link_path, sizeof link_path, "%s/%s", folder, images[i]);
    cr_assert_eq(symlink(target, link_path), 0, "cannot link %s", link_path);
  }
  write_four_class_labels(folder, "train-labels-idx1-ubyte");
  write_four_class_labels(folder, "t10k-labels-idx1-ubyte");
  if (rename(folder, FOUR_CLASS_DIR) != 0) {
    /* Another process was first: its folder has the same content. */
    char command[1200];
    snprintf(command, sizeof command, "rm -rf '%s'", folder);
    cr_expect_eq(system(command), 0);
  }
  return access(FOUR_CLASS_DIR "/t10k-labels-idx1-ubyte", R_OK) == 0;
}

/* Runs command with stdout and stderr captured into output; returns the exit status. */
static int run_tool(const char *command, char *output, size_t output_bytes) {
  char line[8192];
  snprintf(line, sizeof line, "%s 2>&1", command);
  FILE *pipe = popen(line, "r");
  cr_assert_not_null(pipe, "cannot run %s", command);
  size_t used = fread(output, 1, output_bytes - 1, pipe);
  output[used] = '\0';
  int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#endif
