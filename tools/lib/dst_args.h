/* Command line options of the deformslice subcommands: --name VALUE pairs and flags. */
#ifndef DST_ARGS_H
#define DST_ARGS_H

#include <stdint.h>
#include <stdio.h>

#include "common/ds_status.h"

typedef struct dst_option {
  const char *name;     /* without the leading dashes */
  const char *metavar;  /* NULL for a flag */
  const char *help;     /* one line: what it sets, the unit and the default */
  const char **value;   /* receives the argument, or "1" for a flag */
} dst_option;

/*
 * Parses argv[first..argc) against options. Positional arguments go to positional (up to
 * max_positional). Unknown options, missing values and surplus positionals are errors that
 * name the argument and point to --help. Returns DS_OK with *help_requested = 1 for --help.
 */
ds_status dst_args_parse(int argc, char **argv, int first, const dst_option *options,
                         int option_count, const char **positional, int max_positional,
                         int *positional_count, int *help_requested, ds_error *err);

/* Prints the option table, one line per option. */
void dst_args_print_help(FILE *out, const char *usage, const dst_option *options,
                         int option_count);

/* Converts an option value to an integer in [min, max], naming the option on error. */
ds_status dst_args_int(const char *option, const char *text, int64_t min, int64_t max,
                       int64_t *value, ds_error *err);

/* Parses a shape such as "1,3,224,224" (1 to 4 positive dims) into dims and *rank. */
ds_status dst_args_shape(const char *option, const char *text, int32_t *dims, int32_t *rank,
                         ds_error *err);

/* Converts an option value to a finite double in [min, max]. */
ds_status dst_args_double(const char *option, const char *text, double min, double max,
                          double *value, ds_error *err);

#endif
