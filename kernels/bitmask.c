/* Bit-packed masks: allocation, painting runs, RLE encoding and counting.
 *
 * The generic references live here together with the start-up dispatch;
 * the AVX2 and AVX-512 variants are in bitmask_avx2.c and bitmask_avx512.c. */
#include "bitmask_internal.h"

#include <assert.h>
#include <pthread.h>
#include <string.h>

/* ------------------------------------------------------------ dispatch --- */

static struct osseg__bitmask_impl impl;
static pthread_once_t impl_once = PTHREAD_ONCE_INIT;

static void impl_init(void) {
  unsigned f = osseg_cpu_features();
  if (f & OSSEG_CPU_AVX512) {
    impl = (struct osseg__bitmask_impl){osseg__to_runs_avx512,
                                        osseg__popcount_avx512,
                                        osseg__popcount_and_avx512, "avx512"};
  } else if (f & OSSEG_CPU_AVX2) {
    impl = (struct osseg__bitmask_impl){osseg__to_runs_avx2, osseg__popcount_avx2,
                                        osseg__popcount_and_avx2, "avx2"};
  } else {
    impl = (struct osseg__bitmask_impl){osseg__to_runs_generic,
                                        osseg__popcount_generic,
                                        osseg__popcount_and_generic, "generic"};
  }
}

const struct osseg__bitmask_impl *osseg__bitmask_impl(void) {
  pthread_once(&impl_once, impl_init);
  return &impl;
}

/* ---------------------------------------------------- generic kernels --- */

int osseg__to_runs_generic(const uint64_t *bits, size_t nwords,
                           struct osseg_runs *out) {
  struct osseg__bm_writer w = {out, 0, 0};
  out->n = 0;
  /* A word whose transition mask is zero (all pixels equal to the previous
   * pixel) costs one xor and one branch, so empty and full stretches of the
   * mask are skipped at a word per iteration without a special case. */
  int rc = osseg__bm_encode_words(&w, bits, 0, nwords);
  return osseg__bm_finish(&w, rc, nwords);
}

/* Portable bit-parallel popcount: the reference must not depend on the
 * POPCNT instruction, and libgcc's fallback is a call per word. */
static inline uint64_t popcount_swar(uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ull);
  x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return (x * 0x0101010101010101ull) >> 56;
}

uint64_t osseg__popcount_generic(const uint64_t *w, size_t n) {
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) total += popcount_swar(w[i]);
  return total;
}

uint64_t osseg__popcount_and_generic(const uint64_t *a, const uint64_t *b,
                                     size_t n) {
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) total += popcount_swar(a[i] & b[i]);
  return total;
}

/* ----------------------------------------------------------- public API --- */

int osseg_bitmask_init(struct osseg_bitmask *m, uint32_t height, uint32_t width) {
  m->height = 0;
  m->width = 0;
  m->nwords = 0;
  m->bits = NULL;
  if (height == 0 || width == 0 || height > OSSEG_MAX_SIDE || width > OSSEG_MAX_SIDE)
    return OSSEG_ERANGE;
  uint64_t npixels = (uint64_t)height * width; /* <= 2^28, cannot overflow */
  size_t nwords = (size_t)((npixels + 63) / 64);
  /* Round the allocation up to whole 64-byte lines and zero the padding, so
   * that nothing past nwords is ever uninitialised memory; the kernels still
   * never rely on the padding being there. */
  size_t alloc_words = (nwords + 7) & ~(size_t)7, bytes;
  if (osseg__mul_size(alloc_words, sizeof(uint64_t), &bytes) != 0)
    return OSSEG_EOVERFLOW;
  uint64_t *bits = osseg__aligned_alloc(64, bytes);
  if (!bits) return OSSEG_ENOMEM;
  memset(bits, 0, bytes);
  m->height = height;
  m->width = width;
  m->nwords = nwords;
  m->bits = bits;
  return 0;
}

void osseg_bitmask_free(struct osseg_bitmask *m) {
  osseg__free(m->bits);
  m->bits = NULL;
  m->nwords = 0;
  m->height = 0;
  m->width = 0;
}

void osseg_bitmask_clear(struct osseg_bitmask *m) {
  if (m->nwords) memset(m->bits, 0, m->nwords * sizeof(uint64_t));
}

/* Sets bits [start, end) of words; end > start. */
static void set_range(uint64_t *words, uint64_t start, uint64_t end) {
  uint64_t w0 = start / 64, w1 = (end - 1) / 64;
  uint64_t head = ~0ull << (start % 64);
  uint64_t tail = ~0ull >> (63 - (end - 1) % 64);
  if (w0 == w1) {
    words[w0] |= head & tail;
    return;
  }
  words[w0] |= head;
  if (w1 > w0 + 1) memset(words + w0 + 1, 0xff, (size_t)(w1 - w0 - 1) * sizeof(uint64_t));
  words[w1] |= tail;
}

int osseg_bitmask_paint_runs(struct osseg_bitmask *m, const struct osseg_run *v,
                             size_t n) {
  uint64_t npixels = (uint64_t)m->height * m->width;
  /* Validate everything first so that a bad run leaves m untouched. */
  for (size_t i = 0; i < n; i++)
    if ((uint64_t)v[i].start + v[i].len > npixels) return OSSEG_ERANGE;
  for (size_t i = 0; i < n; i++)
    if (v[i].len) set_range(m->bits, v[i].start, (uint64_t)v[i].start + v[i].len);
  return 0;
}

int osseg_bitmask_to_runs(const struct osseg_bitmask *m, struct osseg_runs *out) {
  return osseg__bitmask_impl()->to_runs(m->bits, m->nwords, out);
}

uint64_t osseg_bitmask_count(const struct osseg_bitmask *m) {
  return osseg__bitmask_impl()->popcount(m->bits, m->nwords);
}

uint64_t osseg_bitmask_count_and(const struct osseg_bitmask *a,
                                 const struct osseg_bitmask *b) {
  /* Mismatched masks are a programming error; without assertions count the
   * common prefix rather than reading past the shorter mask. */
  assert(a->height == b->height && a->width == b->width);
  size_t n = a->nwords < b->nwords ? a->nwords : b->nwords;
  return osseg__bitmask_impl()->popcount_and(a->bits, b->bits, n);
}
