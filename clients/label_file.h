/* --labels DIR of osseg predict, segment and batch, and --gt LABEL.json of
 * osseg overlay: the dataset's label JSON of an image, read by one code
 * path for all four commands. */
#ifndef OSSEG_CLIENTS_LABEL_FILE_H
#define OSSEG_CLIENTS_LABEL_FILE_H

#include <stddef.h>

/* The largest label file read: the daemon's default frame (a larger file
 * could not travel with a request anyway; a sample phantom's is 17 KB). */
#define LABEL_FILE_MAX_BYTES ((size_t)64 << 20)

struct label_file {
  char path[4096]; /* DIR/<image>.json */
  char *text;      /* the file, NUL-terminated (malloc'ed) */
  size_t len;
};

/* Reads the label file of image_path from dir: DIR/X.json for X.png (the
 * image's file name without .png, or with .json added when it has no such
 * suffix). Returns 0, or -1 with msg (msg_size bytes) saying why, starting
 * with the label file's path: missing, unreadable, a folder, over
 * LABEL_FILE_MAX_BYTES, or holding a NUL byte (no JSON text has one, and
 * the protocol's string would stop there). */
int label_file_read(struct label_file *f, const char *dir, const char *image_path, char *msg,
                    size_t msg_size);
/* Reads the label file at path itself (osseg overlay --gt LABEL.json),
 * with the same checks and messages. */
int label_file_read_path(struct label_file *f, const char *path, char *msg, size_t msg_size);
void label_file_free(struct label_file *f);

#endif
