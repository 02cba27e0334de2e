/* An open-addressing hash table over the rows of a prediction CSV, keyed by
 * the exact (image_name, class) pair. Keys are never joined into one string
 * (the competition script joined them with '_' and split them again, which
 * broke on image names that contain '_').
 *
 * The same table serves as a set of image names (class ignored) or of class
 * names (image ignored), for counting images and ordering classes in Dice
 * reports. Keys point into the csv, which must outlive the index. Lookups
 * are read-only and may run on several threads at once. */
#ifndef OSSEG_CLIENTS_CSV_INDEX_H
#define OSSEG_CLIENTS_CSV_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_kernels.h"

enum csv_index_key { CSV_KEY_PAIR, CSV_KEY_IMAGE, CSV_KEY_CLASS };

struct csv_index_slot;

struct csv_index {
  struct csv_index_slot *slots;
  size_t mask; /* capacity - 1, capacity a power of two */
  size_t count;
  enum csv_index_key key;
};

#define CSV_INDEX_NONE SIZE_MAX

/* Hash of a key; pass the same (image, class) to find. For CSV_KEY_IMAGE
 * pass cls_len 0, for CSV_KEY_CLASS image_len 0. */
uint64_t csv_index_hash(const char *image, size_t image_len, const char *cls, size_t cls_len);

/* An empty table sized for `expected` keys. OSSEG_ENOMEM or 0. */
int csv_index_init(struct csv_index *ix, enum csv_index_key key, size_t expected);
void csv_index_free(struct csv_index *ix);

/* Inserts row `value` with key taken from row (as selected by ix->key)
 * unless the key is present; returns the value already stored for the key,
 * or CSV_INDEX_NONE if the row was inserted. Grows as needed; returns
 * CSV_INDEX_NONE - 1 when growing fails for lack of memory. */
size_t csv_index_insert(struct csv_index *ix, const struct osseg_csv_row *row, size_t value);

/* The value stored for the key, or CSV_INDEX_NONE. */
size_t csv_index_find(const struct csv_index *ix, uint64_t hash, const char *image,
                      size_t image_len, const char *cls, size_t cls_len);

/* Hints that a find with this hash is coming (a prefetch of its slot), so
 * the cache miss overlaps other work. */
void csv_index_prefetch(const struct csv_index *ix, uint64_t hash);

/* Builds a pair index of all rows of csv (value = row number). On a
 * duplicate (image, class) stores the later and the earlier row numbers in
 * *dup and *first and returns OSSEG_EDUPLICATE; else 0 or OSSEG_ENOMEM. */
int csv_index_build(struct csv_index *ix, const struct osseg_csv *csv, size_t *dup,
                    size_t *first);

#endif
