/* Image arguments: files and folders of PNGs. */
#include "image_list.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_util.h"

static int push(struct image_list *l, const char *path) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    char **p = realloc(l->paths, cap * sizeof *p);
    if (!p) return -1;
    l->paths = p;
    l->cap = cap;
  }
  if (!(l->paths[l->n] = strdup(path))) return -1;
  l->n++;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_png_suffix(const char *name) {
  size_t n = strlen(name);
  return n > 4 && (strcmp(name + n - 4, ".png") == 0 || strcmp(name + n - 4, ".PNG") == 0);
}

int image_list_add(struct image_list *l, const char *cmd, const char *arg) {
  struct stat st;
  if (stat(arg, &st) != 0 || !S_ISDIR(st.st_mode)) return push(l, arg);
  DIR *d = opendir(arg);
  if (!d) {
    cli_error(cmd, "%s: cannot open directory: %s", arg, strerror(errno));
    return -1;
  }
  size_t first = l->n;
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || !has_png_suffix(e->d_name)) continue;
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/%s", arg, e->d_name);
    if (len < 0 || (size_t)len >= sizeof path) continue;
    rc = push(l, path);
  }
  closedir(d);
  if (rc == 0 && l->n == first) cli_error(cmd, "%s: no .png files in this directory", arg);
  qsort(l->paths + first, l->n - first, sizeof *l->paths, cmp_str);
  return rc;
}

void image_list_free(struct image_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->paths[i]);
  free(l->paths);
  l->paths = NULL;
  l->n = l->cap = 0;
}

const char *image_base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}
