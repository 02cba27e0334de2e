/* Hard voting over K masks (bit-sliced counters) and over K run lists
 * (event sweep). The generic references and dispatch live here; the SIMD
 * word kernels are in vote_avx2.c and vote_avx512.c. */
#include "vote_internal.h"

#include <pthread.h>
#include <string.h>

#include "runs_internal.h"

#define VOTE_MAX_K 64
/* Up to this many lists a linear scan for the next event beats a heap. */
#define VOTE_LINEAR_MAX_K 8

/* ------------------------------------------------------------ dispatch --- */

static struct osseg__vote_impl impl;
static pthread_once_t impl_once = PTHREAD_ONCE_INIT;

static void impl_init(void) {
  unsigned f = osseg_cpu_features();
  if (f & OSSEG_CPU_AVX512)
    impl = (struct osseg__vote_impl){osseg__vote_words_avx512, "avx512"};
  else if (f & OSSEG_CPU_AVX2)
    impl = (struct osseg__vote_impl){osseg__vote_words_avx2, "avx2"};
  else
    impl = (struct osseg__vote_impl){osseg__vote_words_generic, "generic"};
}

const struct osseg__vote_impl *osseg__vote_impl(void) {
  pthread_once(&impl_once, impl_init);
  return &impl;
}

/* ------------------------------------------------------ generic words --- */

/* One word at a time; `planes` is a compile-time constant in each
 * instantiation below, so the counter array lives in registers. */
static inline __attribute__((always_inline)) void
vote_range(const uint64_t *const *in, size_t k, unsigned min_votes, uint64_t *out,
           size_t begin, size_t end, const unsigned planes) {
  for (size_t i = begin; i < end; i++) {
    uint64_t c[7] = {0};
    for (size_t j = 0; j < k; j++) {
      /* Ripple-carry add of one vote into the bit-sliced counter. */
      uint64_t carry = in[j][i];
      for (unsigned b = 0; b < planes; b++) {
        uint64_t t = c[b] & carry;
        c[b] ^= carry;
        carry = t;
      }
    }
    /* count >= min_votes, compared bit-serially from the top plane: `gt`
     * collects pixels already known greater, `eq` those equal so far. */
    uint64_t gt = 0, eq = ~0ull;
    for (unsigned b = planes; b-- > 0;) {
      if ((min_votes >> b) & 1) {
        eq &= c[b];
      } else {
        gt |= eq & c[b];
        eq &= ~c[b];
      }
    }
    out[i] = gt | eq;
  }
}

void osseg__vote_words_range_generic(const uint64_t *const *in, size_t k,
                                     unsigned min_votes, uint64_t *out,
                                     size_t begin, size_t end) {
  switch (osseg__vote_planes(k)) {
    case 1: vote_range(in, k, min_votes, out, begin, end, 1); break;
    case 2: vote_range(in, k, min_votes, out, begin, end, 2); break;
    case 3: vote_range(in, k, min_votes, out, begin, end, 3); break;
    case 4: vote_range(in, k, min_votes, out, begin, end, 4); break;
    case 5: vote_range(in, k, min_votes, out, begin, end, 5); break;
    case 6: vote_range(in, k, min_votes, out, begin, end, 6); break;
    default: vote_range(in, k, min_votes, out, begin, end, 7); break;
  }
}

void osseg__vote_words_generic(const uint64_t *const *in, size_t k,
                               unsigned min_votes, uint64_t *out, size_t nwords) {
  osseg__vote_words_range_generic(in, k, min_votes, out, 0, nwords);
}

/* ---------------------------------------------------------- mask vote --- */

int osseg_vote_masks(const struct osseg_bitmask *const *masks, size_t k,
                     unsigned min_votes, struct osseg_bitmask *out) {
  if (!masks || !out || k == 0 || k > VOTE_MAX_K || min_votes == 0)
    return OSSEG_EINVAL;
  const uint64_t *in[VOTE_MAX_K];
  for (size_t j = 0; j < k; j++) {
    if (!masks[j]) return OSSEG_EINVAL;
    if (masks[j]->height != out->height || masks[j]->width != out->width ||
        masks[j]->nwords != out->nwords)
      return OSSEG_ESHAPE;
    in[j] = masks[j]->bits;
  }
  if (min_votes > k) {
    osseg_bitmask_clear(out);
    return 0;
  }
  if (k == 1) {
    /* memmove: out may be the input itself. */
    memmove(out->bits, in[0], out->nwords * sizeof(uint64_t));
    return 0;
  }
  osseg__vote_impl()->vote_words(in, k, min_votes, out->bits, out->nwords);
  return 0;
}

/* ----------------------------------------------------------- run vote --- */

#define NO_EVENT UINT64_MAX

/* One input list during the sweep: its next event is the start of run j
 * (outside a run) or the end of run j (inside it). */
struct cursor {
  const struct osseg_run *v;
  size_t n, j;
  int inside;
};

static uint64_t cursor_pos(const struct cursor *c) {
  if (c->j >= c->n) return NO_EVENT;
  const struct osseg_run *r = &c->v[c->j];
  return c->inside ? (uint64_t)r->start + r->len : r->start;
}

/* Consumes the cursor's event; returns the change of the vote count. */
static int cursor_advance(struct cursor *c) {
  if (c->inside) {
    c->inside = 0;
    c->j++;
    return -1;
  }
  c->inside = 1;
  return 1;
}

static int is_canonical(const struct osseg_runs *r) {
  for (size_t i = 0; i < r->n; i++) {
    if (r->v[i].len == 0) return 0;
    if ((uint64_t)r->v[i].start + r->v[i].len > UINT32_MAX) return 0;
    if (i > 0 && r->v[i].start <= (uint64_t)r->v[i - 1].start + r->v[i - 1].len)
      return 0;
  }
  return 1;
}

/* Checks arguments, sizes the output for the worst case (every output run
 * begins at a distinct input start, so the total input count bounds it) and
 * sets up the cursors. Returns 1 when the result is already final (empty). */
static int vote_runs_prepare(const struct osseg_runs *const *lists, size_t k,
                             unsigned min_votes, struct osseg_runs *out,
                             struct cursor *cur) {
  if (!lists || !out || k == 0 || k > VOTE_MAX_K || min_votes == 0)
    return OSSEG_EINVAL;
  size_t total = 0;
  for (size_t i = 0; i < k; i++) {
    /* Writing into an input would destroy it mid-sweep. */
    if (!lists[i] || lists[i] == out) return OSSEG_EINVAL;
    if (!is_canonical(lists[i])) return OSSEG_EINVAL;
    if (osseg__add_size(total, lists[i]->n, &total) != 0) return OSSEG_EOVERFLOW;
    cur[i] = (struct cursor){lists[i]->v, lists[i]->n, 0, 0};
  }
  out->n = 0;
  if (min_votes > k || total == 0) return 1;
  int rc = osseg_runs_reserve(out, total);
  return rc < 0 ? rc : 0;
}

/* Output state shared by both merge strategies. */
struct sweep {
  struct osseg_runs *out;
  unsigned count, min_votes;
  uint64_t start;
};

static inline void sweep_emit(struct sweep *s, unsigned before, uint64_t p) {
  /* All events at p were applied before looking at the count, so a run that
   * ends where another begins never splits the output. */
  if (before < s->min_votes && s->count >= s->min_votes) {
    s->start = p;
  } else if (before >= s->min_votes && s->count < s->min_votes) {
    struct osseg_run *r = &s->out->v[s->out->n++];
    r->start = (uint32_t)s->start;
    r->len = (uint32_t)(p - s->start);
  }
}

/* The sweep with a linear scan for the next event; `k` is a compile-time
 * constant in the common instantiations below, so both scans unroll. */
static inline __attribute__((always_inline)) void
sweep_linear(struct cursor *cur, uint64_t *pos, const size_t k, struct sweep *s) {
  for (;;) {
    uint64_t p = NO_EVENT;
    for (size_t i = 0; i < k; i++) p = pos[i] < p ? pos[i] : p;
    if (p == NO_EVENT) break;
    unsigned before = s->count;
    for (size_t i = 0; i < k; i++) {
      if (pos[i] != p) continue;
      s->count = (unsigned)((int)s->count + cursor_advance(&cur[i]));
      pos[i] = cursor_pos(&cur[i]);
    }
    sweep_emit(s, before, p);
  }
}

int osseg__vote_runs_linear(const struct osseg_runs *const *lists, size_t k,
                            unsigned min_votes, struct osseg_runs *out) {
  struct cursor cur[VOTE_MAX_K];
  uint64_t pos[VOTE_MAX_K];
  int rc = vote_runs_prepare(lists, k, min_votes, out, cur);
  if (rc != 0) return rc < 0 ? rc : 0;
  for (size_t i = 0; i < k; i++) pos[i] = cursor_pos(&cur[i]);
  struct sweep s = {out, 0, min_votes, 0};
  switch (k) {
    case 2: sweep_linear(cur, pos, 2, &s); break;
    case 3: sweep_linear(cur, pos, 3, &s); break; /* the usual ensemble */
    default: sweep_linear(cur, pos, k, &s); break;
  }
  return 0;
}

/* Binary min-heap of list indices keyed by their next event position. */
static void heap_sift_down(uint8_t *h, size_t n, const uint64_t *pos, size_t i) {
  uint8_t x = h[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && pos[h[c + 1]] < pos[h[c]]) c++;
    if (pos[h[c]] >= pos[x]) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

int osseg__vote_runs_heap(const struct osseg_runs *const *lists, size_t k,
                          unsigned min_votes, struct osseg_runs *out) {
  struct cursor cur[VOTE_MAX_K];
  uint64_t pos[VOTE_MAX_K];
  uint8_t heap[VOTE_MAX_K];
  int rc = vote_runs_prepare(lists, k, min_votes, out, cur);
  if (rc != 0) return rc < 0 ? rc : 0;
  size_t n = 0;
  for (size_t i = 0; i < k; i++) {
    pos[i] = cursor_pos(&cur[i]);
    if (pos[i] != NO_EVENT) heap[n++] = (uint8_t)i;
  }
  for (size_t i = n / 2; i-- > 0;) heap_sift_down(heap, n, pos, i);
  struct sweep s = {out, 0, min_votes, 0};
  while (n > 0) {
    uint64_t p = pos[heap[0]];
    unsigned before = s.count;
    /* Each list has at most one event at p (its runs neither overlap nor
     * touch), so every pop at p belongs to a different list. */
    while (n > 0 && pos[heap[0]] == p) {
      size_t i = heap[0];
      s.count = (unsigned)((int)s.count + cursor_advance(&cur[i]));
      pos[i] = cursor_pos(&cur[i]);
      if (pos[i] == NO_EVENT) heap[0] = heap[--n];
      heap_sift_down(heap, n, pos, 0);
    }
    sweep_emit(&s, before, p);
  }
  return 0;
}

int osseg_vote_runs(const struct osseg_runs *const *lists, size_t k,
                    unsigned min_votes, struct osseg_runs *out) {
  /* For the usual k = 3 a scan over k cursors per event costs less than
   * maintaining a heap; beyond a handful of lists the heap keeps the sweep
   * at O(total runs * log k). */
  if (k <= VOTE_LINEAR_MAX_K) return osseg__vote_runs_linear(lists, k, min_votes, out);
  return osseg__vote_runs_heap(lists, k, min_votes, out);
}
