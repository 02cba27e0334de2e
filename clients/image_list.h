/* The images a command was given: files, and every *.png of a folder in
 * name order (osseg predict, segment and batch take the same arguments). */
#ifndef OSSEG_CLIENTS_IMAGE_LIST_H
#define OSSEG_CLIENTS_IMAGE_LIST_H

#include <stddef.h>

struct image_list {
  char **paths; /* owned */
  size_t n, cap;
};

/* Adds a file, or every *.png of a folder (hidden ones skipped) in name
 * order; an empty or unreadable folder is reported as "osseg CMD: ...".
 * Returns 0 or -1. */
int image_list_add(struct image_list *l, const char *cmd, const char *arg);
void image_list_free(struct image_list *l);

/* The file name of a path (what the CSV calls image_name). */
const char *image_base_name(const char *path);

#endif
