#include "dst_args.h"

#include <errno.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const dst_option *find_option(const dst_option *options, int option_count,
                                     const char *name) {
  for (int i = 0; i < option_count; i++) {
    if (strcmp(options[i].name, name) == 0)
      return &options[i];
  }
  return NULL;
}

ds_status dst_args_parse(int argc, char **argv, int first, const dst_option *options,
                         int option_count, const char **positional, int max_positional,
                         int *positional_count, int *help_requested, ds_error *err) {
  *positional_count = 0;
  *help_requested = 0;

  for (int i = first; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      *help_requested = 1;
      return DS_OK;
    }

    if (strncmp(arg, "--", 2) != 0) {
      if (*positional_count >= max_positional) {
        return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                       "unexpected argument '%s'; see --help for the accepted arguments", arg);
      }
      positional[(*positional_count)++] = arg;
      continue;
    }

    const dst_option *option = find_option(options, option_count, arg + 2);
    if (option == NULL) {
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "unknown option '%s'; see --help", arg);
    }
    if (option->metavar == NULL) {
      *option->value = "1";
      continue;
    }
    if (i + 1 >= argc) {
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "option '%s' needs a value (%s)", arg,
                     option->metavar);
    }
    *option->value = argv[++i];
  }
  return DS_OK;
}

void dst_args_print_help(FILE *out, const char *usage, const dst_option *options,
                         int option_count) {
  fprintf(out, "%s\n\noptions:\n", usage);
  for (int i = 0; i < option_count; i++) {
    char left[64];
    snprintf(left, sizeof left, "--%s%s%s", options[i].name, options[i].metavar ? " " : "",
             options[i].metavar ? options[i].metavar : "");
    fprintf(out, "  %-28s %s\n", left, options[i].help);
  }
}

ds_status dst_args_int(const char *option, const char *text, int64_t min, int64_t max,
                       int64_t *value, ds_error *err) {
  char *end = NULL;
  errno = 0;
  long long parsed = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || parsed < min || parsed > max) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                   "--%s '%s' is not an integer in %lld..%lld", option, text, (long long)min,
                   (long long)max);
  }
  *value = parsed;
  return DS_OK;
}

ds_status dst_args_double(const char *option, const char *text, double min, double max,
                          double *value, ds_error *err) {
  char *end = NULL;
  errno = 0;
  double parsed = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !isfinite(parsed) || parsed < min ||
      parsed > max) {
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "--%s '%s' is not a number in %g..%g", option,
                   text, min, max);
  }
  *value = parsed;
  return DS_OK;
}

ds_status dst_args_shape(const char *option, const char *text, int32_t *dims, int32_t *rank,
                         ds_error *err) {
  *rank = 0;
  const char *p = text;
  while (*p != '\0') {
    char *end = NULL;
    errno = 0;
    long long value = strtoll(p, &end, 10);
    if (errno != 0 || end == p || value < 1 || value > INT32_MAX || *rank == 4 ||
        (*end != ',' && *end != '\0'))
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT,
                     "--%s '%s' is not a shape: give 1 to 4 positive dims separated by commas, "
                     "such as 1,3,224,224", option, text);
    dims[(*rank)++] = (int32_t)value;
    p = *end == ',' ? end + 1 : end;
    if (*end == ',' && *p == '\0')
      return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "--%s '%s' ends with a comma", option, text);
  }
  if (*rank == 0)
    return ds_fail(err, DS_ERR_INVALID_ARGUMENT, "--%s is empty: give a shape such as 1,3,224,224",
                   option);
  return DS_OK;
}
