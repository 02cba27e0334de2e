/* Internals of the bitmask kernels, shared by bitmask.c, its ISA variants
 * (bitmask_avx2.c, bitmask_avx512.c), other kernels and the tests. The
 * variants work on raw word arrays so that tests can hand them buffers that
 * end at a guard page; none of them reads past the n words it is given or
 * assumes any alignment. */
#ifndef OSSEG_BITMASK_INTERNAL_H
#define OSSEG_BITMASK_INTERNAL_H

#include "osseg_kernels.h"
#include "runs_internal.h"

/* RLE-encodes nwords words (bits past the mask's pixels must be 0) into
 * out, replacing its contents. 0 or OSSEG_ENOMEM / OSSEG_EOVERFLOW; on
 * failure out->n is 0. */
typedef int (*osseg__to_runs_fn)(const uint64_t *bits, size_t nwords,
                                 struct osseg_runs *out);
typedef uint64_t (*osseg__popcount_fn)(const uint64_t *w, size_t n);
typedef uint64_t (*osseg__popcount_and_fn)(const uint64_t *a, const uint64_t *b,
                                           size_t n);

int osseg__to_runs_generic(const uint64_t *bits, size_t nwords,
                           struct osseg_runs *out);
int osseg__to_runs_avx2(const uint64_t *bits, size_t nwords,
                        struct osseg_runs *out);
int osseg__to_runs_avx512(const uint64_t *bits, size_t nwords,
                          struct osseg_runs *out);

uint64_t osseg__popcount_generic(const uint64_t *w, size_t n);
uint64_t osseg__popcount_avx2(const uint64_t *w, size_t n);
uint64_t osseg__popcount_avx512(const uint64_t *w, size_t n);

uint64_t osseg__popcount_and_generic(const uint64_t *a, const uint64_t *b,
                                     size_t n);
uint64_t osseg__popcount_and_avx2(const uint64_t *a, const uint64_t *b,
                                  size_t n);
uint64_t osseg__popcount_and_avx512(const uint64_t *a, const uint64_t *b,
                                    size_t n);

/* The variants chosen for this CPU (once, thread-safe). */
struct osseg__bitmask_impl {
  osseg__to_runs_fn to_runs;
  osseg__popcount_fn popcount;
  osseg__popcount_and_fn popcount_and;
  const char *name; /* "generic", "avx2" or "avx512" */
};
const struct osseg__bitmask_impl *osseg__bitmask_impl(void);

/* Incremental run writer used by every to_runs variant: transitions (bits
 * where a pixel differs from its predecessor) alternately open and close a
 * run. Kept inline so that each ISA file compiles it with its own flags. */
struct osseg__bm_writer {
  struct osseg_runs *out;
  uint64_t start; /* start of the open run */
  int open;
};

static inline int osseg__bm_push(struct osseg_runs *out, uint64_t start,
                                  uint64_t end) {
  if (out->n == out->cap) {
    int rc = osseg__runs_grow(out, out->n + 1);
    if (rc < 0) return rc;
  }
  out->v[out->n].start = (uint32_t)start;
  out->v[out->n].len = (uint32_t)(end - start);
  out->n++;
  return 0;
}

/* Feeds the transition bits t of the word whose first pixel is base. */
static inline int osseg__bm_transitions(struct osseg__bm_writer *w, uint64_t t,
                                         uint64_t base) {
  while (t) {
    uint64_t p = base + (uint64_t)__builtin_ctzll(t);
    t &= t - 1;
    if (!w->open) {
      w->start = p;
      w->open = 1;
    } else {
      int rc = osseg__bm_push(w->out, w->start, p);
      if (rc < 0) return rc;
      w->open = 0;
    }
  }
  return 0;
}

/* Encodes words [begin, end) given the last bit of word begin - 1 (0 for the
 * first word) as carry; the scalar path of every variant and its tail. */
static inline int osseg__bm_encode_words(struct osseg__bm_writer *w,
                                   const uint64_t *bits, size_t begin,
                                   size_t end) {
  uint64_t carry = begin > 0 ? bits[begin - 1] >> 63 : 0;
  for (size_t i = begin; i < end; i++) {
    uint64_t x = bits[i];
    uint64_t t = x ^ ((x << 1) | carry);
    carry = x >> 63;
    if (t) {
      int rc = osseg__bm_transitions(w, t, (uint64_t)i * 64);
      if (rc < 0) return rc;
    }
  }
  return 0;
}

/* Closes a run still open after the last word (the mask ends with a set
 * pixel) and reports the result; on error leaves the list empty. */
static inline int osseg__bm_finish(struct osseg__bm_writer *w, int rc,
                                    size_t nwords) {
  if (rc == 0 && w->open) rc = osseg__bm_push(w->out, w->start, (uint64_t)nwords * 64);
  if (rc < 0) w->out->n = 0;
  return rc;
}

#endif
