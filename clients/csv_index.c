/* See csv_index.h. Linear probing over a power-of-two table kept at most
 * half full; each slot caches the full 64-bit hash so that a probe compares
 * strings only when the hashes agree. */
#include "csv_index.h"

#include <string.h>

struct csv_index_slot {
  uint64_t hash;
  const char *image;
  const char *cls;
  uint32_t image_len;
  uint32_t cls_len;
  size_t value; /* CSV_INDEX_NONE = empty slot */
};

static inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v;
  h *= 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}

static uint64_t hash_bytes(uint64_t h, const char *p, size_t n) {
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = mix(h, w);
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, p, n);
  /* The length goes in so that ("ab", "c") and ("a", "bc") differ. */
  return mix(h, w ^ ((uint64_t)n << 56));
}

uint64_t csv_index_hash(const char *image, size_t image_len, const char *cls, size_t cls_len) {
  uint64_t h = hash_bytes(0x243F6A8885A308D3ull ^ image_len, image, image_len);
  h = hash_bytes(h ^ ((uint64_t)cls_len << 32), cls, cls_len);
  /* Final avalanche (murmur3 fmix64): the table uses the low bits. */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 33);
}

static int alloc_slots(struct csv_index *ix, size_t cap) {
  struct csv_index_slot *s = osseg__malloc(cap * sizeof *s);
  if (!s) return OSSEG_ENOMEM;
  for (size_t i = 0; i < cap; i++) s[i].value = CSV_INDEX_NONE;
  ix->slots = s;
  ix->mask = cap - 1;
  return 0;
}

int csv_index_init(struct csv_index *ix, enum csv_index_key key, size_t expected) {
  memset(ix, 0, sizeof *ix);
  ix->key = key;
  size_t cap = 16;
  while (cap < expected * 2 && cap < ((size_t)1 << 40)) cap *= 2;
  return alloc_slots(ix, cap);
}

void csv_index_free(struct csv_index *ix) {
  osseg__free(ix->slots);
  memset(ix, 0, sizeof *ix);
}

static void key_of(const struct csv_index *ix, const struct osseg_csv_row *row,
                   struct csv_index_slot *k) {
  k->image = row->image;
  k->image_len = ix->key == CSV_KEY_CLASS ? 0 : row->image_len;
  k->cls = row->cls;
  k->cls_len = ix->key == CSV_KEY_IMAGE ? 0 : row->cls_len;
  k->hash = csv_index_hash(k->image, k->image_len, k->cls, k->cls_len);
}

static inline int same(const struct csv_index_slot *s, uint64_t hash, const char *image,
                       size_t image_len, const char *cls, size_t cls_len) {
  return s->hash == hash && s->image_len == image_len && s->cls_len == cls_len &&
         memcmp(s->image, image, image_len) == 0 && memcmp(s->cls, cls, cls_len) == 0;
}

size_t csv_index_find(const struct csv_index *ix, uint64_t hash, const char *image,
                      size_t image_len, const char *cls, size_t cls_len) {
  for (size_t i = hash & ix->mask;; i = (i + 1) & ix->mask) {
    const struct csv_index_slot *s = &ix->slots[i];
    if (s->value == CSV_INDEX_NONE) return CSV_INDEX_NONE;
    if (same(s, hash, image, image_len, cls, cls_len)) return s->value;
  }
}

void csv_index_prefetch(const struct csv_index *ix, uint64_t hash) {
  __builtin_prefetch(&ix->slots[hash & ix->mask]);
}

/* Places a slot known to be absent. */
static void place(struct csv_index *ix, const struct csv_index_slot *k) {
  size_t i = k->hash & ix->mask;
  while (ix->slots[i].value != CSV_INDEX_NONE) i = (i + 1) & ix->mask;
  ix->slots[i] = *k;
}

size_t csv_index_insert(struct csv_index *ix, const struct osseg_csv_row *row, size_t value) {
  struct csv_index_slot k;
  key_of(ix, row, &k);
  size_t found = csv_index_find(ix, k.hash, k.image, k.image_len, k.cls, k.cls_len);
  if (found != CSV_INDEX_NONE) return found;
  if ((ix->count + 1) * 2 > ix->mask + 1) {
    struct csv_index old = *ix;
    if (alloc_slots(ix, (old.mask + 1) * 2) != 0) {
      *ix = old;
      return CSV_INDEX_NONE - 1;
    }
    for (size_t i = 0; i <= old.mask; i++)
      if (old.slots[i].value != CSV_INDEX_NONE) place(ix, &old.slots[i]);
    osseg__free(old.slots);
  }
  k.value = value;
  place(ix, &k);
  ix->count++;
  return CSV_INDEX_NONE;
}

int csv_index_build(struct csv_index *ix, const struct osseg_csv *csv, size_t *dup,
                    size_t *first) {
  int rc = csv_index_init(ix, CSV_KEY_PAIR, csv->nrows);
  if (rc < 0) return rc;
  for (size_t r = 0; r < csv->nrows; r++) {
    /* Names are spread over the whole mapped file and no longer cached
     * after the parse: fetch a few rows ahead. */
    if (r + 8 < csv->nrows) __builtin_prefetch(csv->rows[r + 8].image);
    size_t prev = csv_index_insert(ix, &csv->rows[r], r);
    if (prev == CSV_INDEX_NONE) continue;
    if (prev == CSV_INDEX_NONE - 1) return OSSEG_ENOMEM;
    *dup = r;
    *first = prev;
    return OSSEG_EDUPLICATE;
  }
  return 0;
}
