/*
 * ImageNet-style image folders: split_folder/CLASS/.../FILE.{jpg,jpeg,png}. Classes are the
 * subfolders in byte order of their names (torchvision's ImageFolder sorts them the same
 * way), and label i is the i-th class. Files are found recursively inside each class folder
 * and sorted by folder, then by name; other extensions are ignored.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dst_image.h"
#include "dst_source.h"

#define IMAGES_MAX_DEPTH 16
#define IMAGES_MAX_FILES 10000000

typedef struct image_entry {
  char *folder; /* relative to the split folder */
  char *name;
  int32_t label;
} image_entry;

typedef struct entry_list {
  image_entry *items;
  size_t count, capacity;
} entry_list;

typedef struct name_list {
  char **items;
  size_t count, capacity;
} name_list;

static int push_name(name_list *list, const char *name) {
  if (list->count == list->capacity) {
    size_t capacity = list->capacity ? list->capacity * 2 : 64;
    char **items = realloc(list->items, capacity * sizeof *items);
    if (items == NULL)
      return 0;
    list->items = items;
    list->capacity = capacity;
  }
  list->items[list->count] = strdup(name);
  return list->items[list->count++] != NULL;
}

static void free_names(name_list *list) {
  for (size_t i = 0; i < list->count; i++)
    free(list->items[i]);
  free(list->items);
  memset(list, 0, sizeof *list);
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int compare_entries(const void *a, const void *b) {
  const image_entry *x = a, *y = b;
  if (x->label != y->label)
    return x->label < y->label ? -1 : 1;
  int order = strcmp(x->folder, y->folder);
  return order != 0 ? order : strcmp(x->name, y->name);
}

static int has_image_extension(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot != NULL && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
                         strcasecmp(dot, ".png") == 0);
}

/* Lists the entries of folder (without . and ..) into files and subfolders, sorted. */
static ds_status list_folder(const char *folder, name_list *files, name_list *folders,
                             ds_error *err) {
  DIR *dir = opendir(folder);
  if (dir == NULL)
    return ds_fail(err, DS_ERR_DATA, "%s: cannot open the folder (%s)", folder, strerror(errno));
  ds_status status = DS_OK;
  struct dirent *entry;
  char path[4096];
  while (status == DS_OK && (entry = readdir(dir)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof path, "%s/%s", folder, entry->d_name);
    struct stat info;
    if (stat(path, &info) != 0)
      continue; /* a dangling link or an entry removed meanwhile: not an image */
    int ok = 1;
    if (S_ISDIR(info.st_mode) && folders != NULL)
      ok = push_name(folders, entry->d_name);
    else if (S_ISREG(info.st_mode) && files != NULL)
      ok = push_name(files, entry->d_name);
    if (!ok)
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: cannot list the folder", folder);
  }
  closedir(dir);
  if (files != NULL && files->count > 1)
    qsort(files->items, files->count, sizeof *files->items, compare_strings);
  if (folders != NULL && folders->count > 1)
    qsort(folders->items, folders->count, sizeof *folders->items, compare_strings);
  return status;
}

static ds_status push_entry(entry_list *list, const char *folder, const char *name,
                            int32_t label, ds_error *err) {
  if (list->count >= IMAGES_MAX_FILES)
    return ds_fail(err, DS_ERR_DATA, "more than %d image files", IMAGES_MAX_FILES);
  if (list->count == list->capacity) {
    size_t capacity = list->capacity ? list->capacity * 2 : 1024;
    image_entry *items = realloc(list->items, capacity * sizeof *items);
    if (items == NULL)
      return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot list %zu image files", list->count);
    list->items = items;
    list->capacity = capacity;
  }
  image_entry *e = &list->items[list->count];
  e->folder = strdup(folder);
  e->name = strdup(name);
  e->label = label;
  if (e->folder == NULL || e->name == NULL) {
    free(e->folder);
    free(e->name);
    return ds_fail(err, DS_ERR_OUT_OF_MEMORY, "cannot list %zu image files", list->count);
  }
  list->count++;
  return DS_OK;
}

static void free_entries(entry_list *list) {
  for (size_t i = 0; i < list->count; i++) {
    free(list->items[i].folder);
    free(list->items[i].name);
  }
  free(list->items);
  memset(list, 0, sizeof *list);
}

/* Writes "a/b" into out; returns 0 when it does not fit. */
static int join_path(char *out, size_t out_bytes, const char *a, const char *b) {
  int length = snprintf(out, out_bytes, "%s/%s", a, b);
  return length >= 0 && (size_t)length < out_bytes;
}

/* Adds every image file under root/relative (recursively) with label. */
static ds_status scan_class(const char *root, const char *relative, int32_t label, int depth,
                            entry_list *entries, ds_error *err) {
  if (depth > IMAGES_MAX_DEPTH)
    return ds_fail(err, DS_ERR_DATA, "%s/%s: folders nested more than %d deep", root, relative,
                   IMAGES_MAX_DEPTH);
  char folder[4096];
  if (!join_path(folder, sizeof folder, root, relative))
    return ds_fail(err, DS_ERR_DATA, "%s/%s: path longer than %zu bytes", root, relative,
                   sizeof folder - 1);
  name_list files = {0}, folders = {0};
  ds_status status = list_folder(folder, &files, &folders, err);
  for (size_t i = 0; i < files.count && status == DS_OK; i++) {
    if (has_image_extension(files.items[i]))
      status = push_entry(entries, relative, files.items[i], label, err);
  }
  for (size_t i = 0; i < folders.count && status == DS_OK; i++) {
    char child[4096];
    if (!join_path(child, sizeof child, relative, folders.items[i]))
      status = ds_fail(err, DS_ERR_DATA, "%s/%s: path longer than %zu bytes", folder,
                       folders.items[i], sizeof child - 1);
    else
      status = scan_class(root, child, label, depth + 1, entries, err);
  }
  free_names(&files);
  free_names(&folders);
  return status;
}

static ds_status scan_split(const char *split_folder, entry_list *entries, int32_t *class_count,
                            ds_error *err) {
  name_list classes = {0};
  DS_TRY(list_folder(split_folder, NULL, &classes, err));
  ds_status status = DS_OK;
  if (classes.count == 0)
    status = ds_fail(err, DS_ERR_DATA,
                     "%s: no class folders; an image folder holds one subfolder of images per "
                     "class",
                     split_folder);
  else if (classes.count > DST_MAX_CLASSES)
    status = ds_fail(err, DS_ERR_DATA,
                     "%s: %zu class folders, more than the %d supported; check that this is "
                     "a split folder with one subfolder per class",
                     split_folder, classes.count, DST_MAX_CLASSES);

  for (size_t c = 0; c < classes.count && status == DS_OK; c++) {
    size_t before = entries->count;
    status = scan_class(split_folder, classes.items[c], (int32_t)c, 0, entries, err);
    if (status == DS_OK && entries->count == before)
      status = ds_fail(err, DS_ERR_DATA,
                       "%s/%s: no .jpg, .jpeg or .png file in this class folder", split_folder,
                       classes.items[c]);
  }
  *class_count = (int32_t)classes.count;
  free_names(&classes);
  if (status == DS_OK && entries->count > 1)
    qsort(entries->items, entries->count, sizeof *entries->items, compare_entries);
  return status;
}

/* Decodes and preprocesses one file into dst. */
static ds_status load_one(const char *split_folder, const image_entry *entry,
                          const dst_preprocess *pre, float *dst, ds_error *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s/%s", split_folder, entry->folder, entry->name);
  dst_image image;
  DS_TRY(dst_image_read_file(path, &image, err));
  ds_status status = dst_preprocess_apply(pre, &image, path, dst, err);
  dst_image_free(&image);
  return status;
}

ds_status dst_images_load(const char *split_folder, const char *preprocess_path,
                          int skip_corrupt, int32_t channels, int32_t side, int32_t limit,
                          dst_dataset *out, ds_error *err) {
  memset(out, 0, sizeof *out);
  dst_preprocess pre;
  if (preprocess_path != NULL) {
    DS_TRY(dst_preprocess_read_file(preprocess_path, channels, side, &pre, err));
  } else {
    DS_TRY(dst_preprocess_parse("{}", 2, "default preprocessing", channels, side, &pre, err));
  }

  entry_list entries = {0};
  int32_t class_count = 0;
  ds_status status = scan_split(split_folder, &entries, &class_count, err);
  const size_t total = entries.count;
  const size_t count = limit > 0 && (size_t)limit < total ? (size_t)limit : total;
  const int64_t elements = (int64_t)channels * side * side;
  if (status == DS_OK) {
    out->images = malloc(sizeof(float) * count * (size_t)elements);
    out->labels = malloc(sizeof(int32_t) * count);
    if (out->images == NULL || out->labels == NULL)
      status = ds_fail(err, DS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu images",
                       split_folder, count);
  }

  /* An evenly spaced subset: the sorted list groups the classes. */
  size_t loaded = 0, skipped = 0;
  for (size_t i = 0; i < count && status == DS_OK; i++) {
    const image_entry *entry = &entries.items[(size_t)((uint64_t)i * total / count)];
    ds_error image_err;
    ds_error_clear(&image_err);
    ds_status image_status = load_one(split_folder, entry, &pre,
                                      out->images + loaded * (size_t)elements, &image_err);
    if ((image_status == DS_ERR_DATA || image_status == DS_ERR_IO) && skip_corrupt) {
      fprintf(stderr, "deformslice: warning: skipping %s\n", image_err.message);
      skipped++;
      continue;
    }
    if (image_status != DS_OK) {
      if (err != NULL)
        *err = image_err;
      status = image_status;
      break;
    }
    out->labels[loaded++] = entry->label;
  }
  if (status == DS_OK && loaded == 0)
    status = ds_fail(err, DS_ERR_DATA, "%s: all %zu selected images were unreadable",
                     split_folder, count);
  if (status == DS_OK && skipped > 0)
    fprintf(stderr, "deformslice: warning: skipped %zu of %zu images in %s\n", skipped, count,
            split_folder);
  free_entries(&entries);
  if (status != DS_OK) {
    dst_dataset_free(out);
    return status;
  }
  out->count = (int32_t)loaded;
  out->side = side;
  out->channels = channels;
  out->class_count = class_count;
  snprintf(out->label_source, sizeof out->label_source, "%s", split_folder);
  return DS_OK;
}
