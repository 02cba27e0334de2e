/* AVX-512 bit-sliced vote: eight words (512 pixels) per step. */
#include <immintrin.h>

#include "vote_internal.h"

/* See vote_avx2.c: a constant plane count per instantiation keeps the
 * counters in registers. vpternlogq fuses the comparator's and/or steps. */
static inline __attribute__((always_inline)) void
vote_blocks(const uint64_t *const *in, size_t k, unsigned min_votes,
            uint64_t *out, size_t nblocks, const unsigned planes) {
  for (size_t blk = 0; blk < nblocks; blk++) {
    size_t i = blk * 8;
    __m512i c[7];
#pragma GCC unroll 7
    for (unsigned b = 0; b < planes; b++) c[b] = _mm512_setzero_si512();
    for (size_t j = 0; j < k; j++) {
      __m512i carry = _mm512_loadu_si512((const void *)(in[j] + i));
#pragma GCC unroll 7
      for (unsigned b = 0; b < planes; b++) {
        __m512i t = _mm512_and_si512(c[b], carry);
        c[b] = _mm512_xor_si512(c[b], carry);
        carry = t;
      }
    }
    __m512i gt = _mm512_setzero_si512(), eq = _mm512_set1_epi64(-1);
#pragma GCC unroll 7
    for (unsigned b = planes; b-- > 0;) {
      if ((min_votes >> b) & 1) {
        eq = _mm512_and_si512(eq, c[b]);
      } else {
        /* gt | (eq & c): truth table 0xF8 over (gt, eq, c). */
        gt = _mm512_ternarylogic_epi64(gt, eq, c[b], 0xF8);
        eq = _mm512_andnot_si512(c[b], eq);
      }
    }
    _mm512_storeu_si512((void *)(out + i), _mm512_or_si512(gt, eq));
  }
}

void osseg__vote_words_avx512(const uint64_t *const *in, size_t k,
                              unsigned min_votes, uint64_t *out, size_t nwords) {
  size_t nblocks = nwords / 8;
  switch (osseg__vote_planes(k)) {
    case 1: vote_blocks(in, k, min_votes, out, nblocks, 1); break;
    case 2: vote_blocks(in, k, min_votes, out, nblocks, 2); break;
    case 3: vote_blocks(in, k, min_votes, out, nblocks, 3); break;
    case 4: vote_blocks(in, k, min_votes, out, nblocks, 4); break;
    case 5: vote_blocks(in, k, min_votes, out, nblocks, 5); break;
    case 6: vote_blocks(in, k, min_votes, out, nblocks, 6); break;
    default: vote_blocks(in, k, min_votes, out, nblocks, 7); break;
  }
  osseg__vote_words_range_generic(in, k, min_votes, out, nblocks * 8, nwords);
}
