/* AVX2 bit-sliced vote: four words (256 pixels) per step. */
#include <immintrin.h>

#include "vote_internal.h"

/* The plane count is a compile-time constant in each instantiation (see the
 * switch below), so the loops over planes unroll and the counters live in
 * registers instead of a stack array. */
static inline __attribute__((always_inline)) void
vote_blocks(const uint64_t *const *in, size_t k, unsigned min_votes,
            uint64_t *out, size_t nblocks, const unsigned planes) {
  for (size_t blk = 0; blk < nblocks; blk++) {
    size_t i = blk * 4;
    __m256i c[7];
#pragma GCC unroll 7
    for (unsigned b = 0; b < planes; b++) c[b] = _mm256_setzero_si256();
    for (size_t j = 0; j < k; j++) {
      __m256i carry = _mm256_loadu_si256((const __m256i *)(in[j] + i));
#pragma GCC unroll 7
      for (unsigned b = 0; b < planes; b++) {
        __m256i t = _mm256_and_si256(c[b], carry);
        c[b] = _mm256_xor_si256(c[b], carry);
        carry = t;
      }
    }
    __m256i gt = _mm256_setzero_si256(), eq = _mm256_set1_epi64x(-1);
#pragma GCC unroll 7
    for (unsigned b = planes; b-- > 0;) {
      if ((min_votes >> b) & 1) {
        eq = _mm256_and_si256(eq, c[b]);
      } else {
        gt = _mm256_or_si256(gt, _mm256_and_si256(eq, c[b]));
        eq = _mm256_andnot_si256(c[b], eq);
      }
    }
    _mm256_storeu_si256((__m256i *)(out + i), _mm256_or_si256(gt, eq));
  }
}

void osseg__vote_words_avx2(const uint64_t *const *in, size_t k,
                            unsigned min_votes, uint64_t *out, size_t nwords) {
  size_t nblocks = nwords / 4;
  switch (osseg__vote_planes(k)) {
    case 1: vote_blocks(in, k, min_votes, out, nblocks, 1); break;
    case 2: vote_blocks(in, k, min_votes, out, nblocks, 2); break;
    case 3: vote_blocks(in, k, min_votes, out, nblocks, 3); break;
    case 4: vote_blocks(in, k, min_votes, out, nblocks, 4); break;
    case 5: vote_blocks(in, k, min_votes, out, nblocks, 5); break;
    case 6: vote_blocks(in, k, min_votes, out, nblocks, 6); break;
    default: vote_blocks(in, k, min_votes, out, nblocks, 7); break;
  }
  osseg__vote_words_range_generic(in, k, min_votes, out, nblocks * 4, nwords);
}
