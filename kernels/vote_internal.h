/* Internals of the voting kernels shared by vote.c, its ISA variants and
 * the tests. */
#ifndef OSSEG_VOTE_INTERNAL_H
#define OSSEG_VOTE_INTERNAL_H

#include "osseg_kernels.h"

/* out[i] = bits where at least min_votes of in[0..k)[i] are set, for
 * i < nwords. Preconditions (asserted by the public wrapper, not here):
 * 1 <= min_votes <= k <= 64. out may equal any in[j]: every word (or
 * vector block) is read from all inputs before it is written. The counters
 * are bit-sliced: plane b holds bit b of the per-pixel vote count, so one
 * 64-bit (256, 512-bit) operation counts 64 (256, 512) pixels at once. */
typedef void (*osseg__vote_words_fn)(const uint64_t *const *in, size_t k,
                                     unsigned min_votes, uint64_t *out,
                                     size_t nwords);
void osseg__vote_words_generic(const uint64_t *const *in, size_t k,
                               unsigned min_votes, uint64_t *out, size_t nwords);
void osseg__vote_words_avx2(const uint64_t *const *in, size_t k,
                            unsigned min_votes, uint64_t *out, size_t nwords);
void osseg__vote_words_avx512(const uint64_t *const *in, size_t k,
                              unsigned min_votes, uint64_t *out, size_t nwords);

/* Generic word kernel for words [begin, end): the SIMD variants use it for
 * their tails. */
void osseg__vote_words_range_generic(const uint64_t *const *in, size_t k,
                                     unsigned min_votes, uint64_t *out,
                                     size_t begin, size_t end);

/* Number of bit planes needed to count up to k votes (1 <= k <= 64). */
static inline unsigned osseg__vote_planes(size_t k) {
  return 64u - (unsigned)__builtin_clzll((unsigned long long)k);
}

struct osseg__vote_impl {
  osseg__vote_words_fn vote_words;
  const char *name;
};
const struct osseg__vote_impl *osseg__vote_impl(void);

/* The run-list vote with an explicit merge strategy, so tests can check the
 * linear-scan merge (used for small k) against the heap merge (large k). */
int osseg__vote_runs_linear(const struct osseg_runs *const *lists, size_t k,
                            unsigned min_votes, struct osseg_runs *out);
int osseg__vote_runs_heap(const struct osseg_runs *const *lists, size_t k,
                          unsigned min_votes, struct osseg_runs *out);

#endif
