/* Run lists: growth, canonicalisation, area and intersection.
 *
 * Canonicalisation is on the hot path of every RLE parse and ensemble, and
 * its input is usually already sorted (RLE text is written in pixel order),
 * so it first checks for sorted input in one pass and only sorts when it must.
 * The sort is an LSD radix sort on the start (pixel indices are below 2^32),
 * which needs a scratch buffer; canonicalisation cannot fail, so when the
 * scratch allocation fails it falls back to an in-place heapsort. */
#include "runs_internal.h"

#include <string.h>

/* Below this many runs an insertion sort beats the radix passes. */
#define RUNS_INSERTION_MAX 48
#define RUNS_RADIX_BITS 11
#define RUNS_RADIX_SIZE (1u << RUNS_RADIX_BITS)
#define RUNS_RADIX_PASSES 3 /* 3 x 11 bits cover a 32-bit start */

int osseg_runs_reserve(struct osseg_runs *runs, size_t cap) {
  if (cap <= runs->cap) return 0;
  size_t bytes;
  if (osseg__mul_size(cap, sizeof *runs->v, &bytes) != 0) return OSSEG_EOVERFLOW;
  struct osseg_run *v = osseg__realloc(runs->v, bytes);
  if (!v) return OSSEG_ENOMEM;
  runs->v = v;
  runs->cap = cap;
  return 0;
}

int osseg__runs_grow(struct osseg_runs *runs, size_t min_cap) {
  if (runs->cap >= min_cap) return 0;
  /* Geometric growth keeps pushes amortised O(1); the floor avoids a string
   * of tiny reallocations for the first runs. */
  size_t cap = runs->cap < 32 ? 64 : runs->cap;
  while (cap < min_cap) cap = cap > SIZE_MAX / 2 ? min_cap : cap * 2;
  return osseg_runs_reserve(runs, cap);
}

int osseg_runs_push(struct osseg_runs *runs, uint32_t start, uint32_t len) {
  if (runs->n == runs->cap) {
    if (runs->n == SIZE_MAX) return OSSEG_EOVERFLOW;
    int rc = osseg__runs_grow(runs, runs->n + 1);
    if (rc < 0) return rc;
  }
  runs->v[runs->n].start = start;
  runs->v[runs->n].len = len;
  runs->n++;
  return 0;
}

void osseg_runs_free(struct osseg_runs *runs) {
  osseg__free(runs->v);
  runs->v = NULL;
  runs->n = 0;
  runs->cap = 0;
}

static void insertion_sort(struct osseg_run *v, size_t n) {
  for (size_t i = 1; i < n; i++) {
    struct osseg_run x = v[i];
    size_t j = i;
    while (j > 0 && v[j - 1].start > x.start) {
      v[j] = v[j - 1];
      j--;
    }
    v[j] = x;
  }
}

static void sift_down(struct osseg_run *v, size_t root, size_t n) {
  struct osseg_run x = v[root];
  for (;;) {
    size_t child = 2 * root + 1;
    if (child >= n) break;
    if (child + 1 < n && v[child + 1].start > v[child].start) child++;
    if (v[child].start <= x.start) break;
    v[root] = v[child];
    root = child;
  }
  v[root] = x;
}

/* In-place O(n log n) fallback for when the radix scratch is unavailable. */
static void heap_sort(struct osseg_run *v, size_t n) {
  if (n < 2) return;
  for (size_t i = n / 2; i-- > 0;) sift_down(v, i, n);
  for (size_t end = n - 1; end > 0; end--) {
    struct osseg_run t = v[0];
    v[0] = v[end];
    v[end] = t;
    sift_down(v, 0, end);
  }
}

/* Stable LSD radix sort by start. Passes whose digit is the same for every
 * run are skipped, so images up to 2^22 pixels take two passes. Returns
 * OSSEG_ENOMEM (leaving v untouched) when the scratch buffer cannot be had. */
static int radix_sort(struct osseg_run *v, size_t n) {
  /* Counts fit in uint32_t only if n does; larger lists are not realistic
   * (more runs than pixels of the largest image), so hand them to the heap
   * sort instead of widening every counter. */
  if (n > UINT32_MAX) return OSSEG_ERANGE;
  size_t bytes;
  if (osseg__mul_size(n, sizeof *v, &bytes) != 0) return OSSEG_EOVERFLOW;
  struct osseg_run *tmp = osseg__malloc(bytes);
  uint32_t *hist = osseg__calloc((size_t)RUNS_RADIX_PASSES * RUNS_RADIX_SIZE,
                                 sizeof *hist);
  if (!tmp || !hist) {
    osseg__free(tmp);
    osseg__free(hist);
    return OSSEG_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    uint32_t s = v[i].start;
    hist[s & (RUNS_RADIX_SIZE - 1)]++;
    hist[RUNS_RADIX_SIZE + ((s >> RUNS_RADIX_BITS) & (RUNS_RADIX_SIZE - 1))]++;
    hist[2 * RUNS_RADIX_SIZE + (s >> (2 * RUNS_RADIX_BITS))]++;
  }
  struct osseg_run *src = v, *dst = tmp;
  for (unsigned pass = 0; pass < RUNS_RADIX_PASSES; pass++) {
    uint32_t *h = hist + (size_t)pass * RUNS_RADIX_SIZE;
    unsigned shift = pass * RUNS_RADIX_BITS;
    /* A pass where one bucket holds everything would only copy. */
    if (h[(src[0].start >> shift) & (RUNS_RADIX_SIZE - 1)] == n) continue;
    uint32_t sum = 0;
    for (unsigned b = 0; b < RUNS_RADIX_SIZE; b++) {
      uint32_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; i++) {
      uint32_t b = (src[i].start >> shift) & (RUNS_RADIX_SIZE - 1);
      dst[h[b]++] = src[i];
    }
    struct osseg_run *t = src;
    src = dst;
    dst = t;
  }
  if (src != v) memcpy(v, src, bytes);
  osseg__free(tmp);
  osseg__free(hist);
  return 0;
}

void osseg__runs_sort(struct osseg_run *v, size_t n) {
  if (n <= RUNS_INSERTION_MAX) {
    insertion_sort(v, n);
    return;
  }
  if (radix_sort(v, n) != 0) heap_sort(v, n);
}

void osseg_runs_canonicalize(struct osseg_runs *runs) {
  struct osseg_run *v = runs->v;
  size_t n = runs->n;
  if (n == 0) return;
  size_t i = 1;
  while (i < n && v[i].start >= v[i - 1].start) i++;
  if (i < n) osseg__runs_sort(v, n);

  /* Merge in place; `out` never overtakes the read index. Ends are computed
   * in 64 bits because start + len of a run that lies in no image could
   * exceed 2^32; such ends are clamped to the largest representable pixel. */
  size_t out = 0;
  i = 0;
  while (i < n && v[i].len == 0) i++;
  if (i == n) {
    runs->n = 0;
    return;
  }
  uint64_t cur_start = v[i].start;
  uint64_t cur_end = (uint64_t)v[i].start + v[i].len;
  for (i++; i < n; i++) {
    if (v[i].len == 0) continue;
    uint64_t s = v[i].start, e = s + v[i].len;
    if (s <= cur_end) {
      if (e > cur_end) cur_end = e;
      continue;
    }
    v[out].start = (uint32_t)cur_start;
    v[out].len = (uint32_t)(cur_end > UINT32_MAX ? UINT32_MAX - cur_start
                                                 : cur_end - cur_start);
    out++;
    cur_start = s;
    cur_end = e;
  }
  v[out].start = (uint32_t)cur_start;
  v[out].len = (uint32_t)(cur_end > UINT32_MAX ? UINT32_MAX - cur_start
                                               : cur_end - cur_start);
  out++;
  runs->n = out;
}

uint64_t osseg_runs_area(const struct osseg_run *v, size_t n) {
  uint64_t a = 0;
  for (size_t i = 0; i < n; i++) a += v[i].len;
  return a;
}

uint64_t osseg_runs_intersection(const struct osseg_run *a, size_t na,
                                 const struct osseg_run *b, size_t nb) {
  uint64_t total = 0;
  size_t i = 0, j = 0;
  while (i < na && j < nb) {
    uint64_t as = a[i].start, ae = as + a[i].len;
    uint64_t bs = b[j].start, be = bs + b[j].len;
    uint64_t lo = as > bs ? as : bs;
    uint64_t hi = ae < be ? ae : be;
    if (hi > lo) total += hi - lo;
    /* Advance whichever run ends first; the other may still overlap the
     * next run of this list. */
    if (ae <= be) i++;
    if (be <= ae) j++;
  }
  return total;
}
