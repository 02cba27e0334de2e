/* Tests of kernels/rle.c, rle_avx2.c, rle_avx512.c: golden values, every
 * error with its exact message, and every SIMD fast path against the
 * generic reference on random and adversarial texts (all lengths around the
 * block size, every digit count, every alignment, texts ending at a guard
 * page, invalid bytes at every position). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rle_internal.h"
#include "test_support.h"

/* ---------------------------------------------------------- helpers --- */

static int parse(const char *text, uint64_t npixels, struct osseg_runs *out,
                 struct osseg_diag *diag) {
  osseg_diag_clear(diag);
  return osseg_rle_parse(text, strlen(text), npixels, out, diag);
}

static void expect_runs(const struct osseg_runs *r, const uint32_t *pairs, size_t n) {
  assert_int_equal(r->n, n);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(r->v[i].start, pairs[2 * i]);
    assert_int_equal(r->v[i].len, pairs[2 * i + 1]);
  }
}

static void expect_error(const char *text, uint64_t npixels, int code, const char *msg) {
  struct osseg_runs r = {0};
  struct osseg_diag d;
  assert_int_equal(osseg_runs_push(&r, 0, 1), 0); /* must survive the error */
  int rc = parse(text, npixels, &r, &d);
  if (rc != code || strcmp(d.message, msg) != 0)
    fail_msg("'%s': got %d '%s', expected %d '%s'", text, rc, d.message, code, msg);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.v[0].start, 0);
  assert_int_equal(r.v[0].len, 1);
  osseg_runs_free(&r);
}

/* Fast-path levels this machine can run (generic is always there). */
static unsigned fast_levels(unsigned *levels) {
  unsigned n = 0, f = osseg_cpu_features();
  if (f & OSSEG_CPU_AVX2) levels[n++] = OSSEG_CPU_AVX2;
  if (f & OSSEG_CPU_AVX512) levels[n++] = OSSEG_CPU_AVX512;
  return n;
}

static int run_fast(unsigned level, const char *text, size_t len, uint64_t npixels,
                    struct osseg__rle_sink *sink) {
  return level == OSSEG_CPU_AVX512 ? osseg__rle_parse_fast_avx512(text, len, npixels, sink)
                                   : osseg__rle_parse_fast_avx2(text, len, npixels, sink);
}

/* The heart of the SIMD tests: the generic parser and every fast path on
 * one text. A fast path must either bail (-1) or produce exactly the
 * generic runs and canonicality flag; and it may bail only where the generic
 * parser fails, so a fast path that gives up too often (dead code the other
 * checks would never see) fails the tests too.
 * The public entry point must agree with the generic one in every case,
 * message included. */
static void check_text(const char *text, size_t len, uint64_t npixels) {
  size_t room = (len + 1) / 4 + 1;
  struct osseg_run *g = malloc(room * sizeof *g), *f = malloc(room * sizeof *f);
  struct osseg__rle_sink gs = {g, 0, -1, 0};
  struct osseg_diag gd;
  osseg_diag_clear(&gd);
  int grc = osseg__rle_parse_generic(text, len, npixels, &gs, &gd);
  unsigned levels[2];
  unsigned nl = fast_levels(levels);
  for (unsigned i = 0; i < nl; i++) {
    struct osseg__rle_sink fs = {f, 0, -1, 0};
    int frc = run_fast(levels[i], text, len, npixels, &fs);
    if (frc == 0) {
      if (grc != 0) fail_msg("level %u accepted '%.*s' (generic: %s)", levels[i], (int)len, text, gd.message);
      assert_int_equal(fs.nruns, gs.nruns);
      assert_memory_equal(f, g, gs.nruns * sizeof *g);
      assert_int_equal(fs.noncanonical, gs.noncanonical);
    } else if (grc == 0) {
      fail_msg("level %u bailed on valid '%.*s'", levels[i], (int)len, text);
    }
  }
  /* The public function at every level against the generic level. */
  struct osseg_runs ref = {0};
  struct osseg_diag rd;
  osseg_diag_clear(&rd);
  osseg__rle_force_level(0);
  int rrc = osseg_rle_parse(text, len, npixels, &ref, &rd);
  osseg__rle_force_level(~0u);
  struct osseg_runs got = {0};
  struct osseg_diag d;
  osseg_diag_clear(&d);
  int rc = osseg_rle_parse(text, len, npixels, &got, &d);
  assert_int_equal(rc, rrc);
  assert_int_equal(rc, grc);
  assert_string_equal(d.message, rd.message);
  assert_int_equal(got.n, ref.n);
  if (ref.n) assert_memory_equal(got.v, ref.v, ref.n * sizeof *ref.v);
  osseg_runs_free(&ref);
  osseg_runs_free(&got);
  free(g);
  free(f);
}

/* Appends a random valid canonical RLE of about `target` bytes. Numbers
 * have random digit counts so that tokens cross 16/32/64-byte boundaries at
 * every phase; separators are 1..3 spaces when `messy`. */
static size_t make_rle(struct test_rng *rng, char *buf, size_t target, uint64_t npixels,
                       int messy) {
  size_t n = 0;
  uint64_t pos = test_rng_below(rng, 5);
  if (messy) while (test_rng_below(rng, 3) == 0 && n < target) buf[n++] = ' ';
  while (n + 24 < target) {
    uint64_t gap = 1 + test_rng_below(rng, test_rng_below(rng, 2) ? 9 : 999999);
    uint64_t len = 1 + test_rng_below(rng, test_rng_below(rng, 2) ? 9 : 99999);
    if (pos + gap + len > npixels) break;
    pos += gap;
    if (n && buf[n - 1] != ' ') buf[n++] = ' ';
    n += (size_t)sprintf(buf + n, "%llu", (unsigned long long)pos + 1);
    buf[n++] = ' ';
    if (messy) while (test_rng_below(rng, 4) == 0) buf[n++] = ' ';
    n += (size_t)sprintf(buf + n, "%llu", (unsigned long long)len);
    if (messy) while (test_rng_below(rng, 4) == 0) buf[n++] = ' ';
    pos += len;
  }
  return n;
}

/* ----------------------------------------------------------- golden --- */

static void test_golden(void **state) {
  (void)state;
  struct osseg_runs r = {0};
  struct osseg_diag d;
  assert_int_equal(parse("1 3 10 2", 16, &r, &d), 0);
  expect_runs(&r, (const uint32_t[]){0, 3, 9, 2}, 2);
  r.n = 0;
  assert_int_equal(parse("", 16, &r, &d), 0);
  assert_int_equal(r.n, 0);
  assert_int_equal(parse("    ", 16, &r, &d), 0);
  assert_int_equal(r.n, 0);
  assert_int_equal(parse("  5   2  ", 16, &r, &d), 0);
  expect_runs(&r, (const uint32_t[]){4, 2}, 1);
  r.n = 0;
  /* The last pixel, and a run covering the whole image. */
  assert_int_equal(parse("16 1", 16, &r, &d), 0);
  expect_runs(&r, (const uint32_t[]){15, 1}, 1);
  r.n = 0;
  assert_int_equal(parse("1 16", 16, &r, &d), 0);
  expect_runs(&r, (const uint32_t[]){0, 16}, 1);
  r.n = 0;
  /* Leading zeros are just digits. */
  assert_int_equal(parse("0003 002", 16, &r, &d), 0);
  expect_runs(&r, (const uint32_t[]){2, 2}, 1);
  r.n = 0;
  /* 2048^2 numbers, as the competition writes them. */
  assert_int_equal(parse("4194300 5 123456 7", 2048u * 2048u, &r, &d), 0);
  expect_runs(&r, (const uint32_t[]){123455, 7, 4194299, 5}, 2);
  r.n = 0;
  /* Appending keeps earlier runs and merges across the seam. */
  assert_int_equal(parse("1 2", 16, &r, &d), 0);
  assert_int_equal(parse("3 2 8 1", 16, &r, &d), 0);
  expect_runs(&r, (const uint32_t[]){0, 4, 7, 1}, 2);
  osseg_runs_free(&r);
}

static void test_messy_runs_are_canonicalised(void **state) {
  (void)state;
  struct osseg_runs r = {0};
  struct osseg_diag d;
  /* unsorted, overlapping, touching, zero-length, duplicated */
  assert_int_equal(parse("10 3 1 2 3 1 5 0 11 5 20 1 20 1 2 1", 32, &r, &d), 0);
  expect_runs(&r, (const uint32_t[]){0, 3, 9, 6, 19, 1}, 3);
  r.n = 0;
  assert_int_equal(parse("5 0 7 0", 32, &r, &d), 0);
  assert_int_equal(r.n, 0);
  osseg_runs_free(&r);
}

static void test_errors(void **state) {
  (void)state;
  expect_error("1 2 3", 16, OSSEG_EPARSE,
               "offset 5: odd number of numbers (3): the last start has no length");
  expect_error("7", 16, OSSEG_EPARSE,
               "offset 1: odd number of numbers (1): the last start has no length");
  expect_error("0 5", 16, OSSEG_EPARSE, "offset 0: start of 0 (RLE starts are 1-based)");
  expect_error("1 2 00 1", 16, OSSEG_EPARSE, "offset 4: start of 0 (RLE starts are 1-based)");
  expect_error("1 2 x", 16, OSSEG_EPARSE,
               "offset 4: unexpected character 'x' (RLE holds digits and spaces)");
  expect_error("1 2x", 16, OSSEG_EPARSE,
               "offset 3: unexpected character 'x' (RLE holds digits and spaces)");
  expect_error("-1 2", 16, OSSEG_EPARSE,
               "offset 0: unexpected character '-' (RLE holds digits and spaces)");
  expect_error("1\t2", 16, OSSEG_EPARSE,
               "offset 1: unexpected byte 0x09 (RLE holds digits and spaces)");
  expect_error("1 2\n", 16, OSSEG_EPARSE,
               "offset 3: unexpected byte 0x0a (RLE holds digits and spaces)");
  expect_error("1 2 \xff", 16, OSSEG_EPARSE,
               "offset 4: unexpected byte 0xff (RLE holds digits and spaces)");
  expect_error("1.5 2", 16, OSSEG_EPARSE,
               "offset 1: unexpected character '.' (RLE holds digits and spaces)");
  expect_error("12345678901 1", 1u << 20, OSSEG_ERANGE,
               "offset 0: number longer than 10 digits");
  expect_error("1 00000000001", 1u << 20, OSSEG_ERANGE,
               "offset 2: number longer than 10 digits");
  expect_error("4294967296 1", 1u << 20, OSSEG_ERANGE,
               "offset 0: number 4294967296 above 4294967295");
  expect_error("1 9999999999", 1u << 20, OSSEG_ERANGE,
               "offset 2: number 9999999999 above 4294967295");
  expect_error("15 3", 16, OSSEG_ERANGE,
               "offset 0: run '15 3' ends past the image end (16 pixels)");
  expect_error("1 1 17 0", 16, OSSEG_ERANGE,
               "offset 4: run '17 0' ends past the image end (16 pixels)");
  expect_error("4294967295 4294967295", 16, OSSEG_ERANGE,
               "offset 0: run '4294967295 4294967295' ends past the image end (16 pixels)");
  /* The first problem in text order wins. */
  expect_error("0 1 x", 16, OSSEG_EPARSE, "offset 0: start of 0 (RLE starts are 1-based)");
  struct osseg_runs r = {0};
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_rle_parse("1 1", 3, 0, &r, &d), OSSEG_EINVAL);
  assert_int_equal(osseg_rle_parse("1 1", 3, OSSEG_MAX_PIXELS + 1, &r, NULL), OSSEG_EINVAL);
  /* NUL inside the text (not a terminator: the length says so). */
  osseg_diag_clear(&d);
  assert_int_equal(osseg_rle_parse("1 \0 2", 5, 16, &r, &d), OSSEG_EPARSE);
  assert_string_equal(d.message, "offset 2: unexpected byte 0x00 (RLE holds digits and spaces)");
  osseg_runs_free(&r);
}

/* ------------------------------------------------------------ SWAR --- */

static void test_token_value_every_digit_count(void **state) {
  (void)state;
  char buf[64];
  struct test_rng rng;
  test_rng_seed(&rng, 7);
  for (int digits = 1; digits <= 10; digits++) {
    for (int trial = 0; trial < 2000; trial++) {
      uint64_t lo = 1, hi = 10;
      for (int i = 1; i < digits; i++) lo *= 10, hi *= 10;
      if (digits == 1) lo = 0;
      uint64_t v = lo + test_rng_below(&rng, hi - lo);
      if (trial == 0) v = lo;
      if (trial == 1) v = hi - 1;
      /* Prefix of junk (spaces or digits) to exercise the masked bytes. */
      size_t pre = (size_t)test_rng_below(&rng, 12);
      for (size_t i = 0; i < pre; i++) buf[i] = test_rng_below(&rng, 2) ? ' ' : '9';
      int n = sprintf(buf + pre, "%llu", (unsigned long long)v);
      assert_int_equal(n, digits);
      assert_int_equal(osseg__rle_token_value(buf, pre, pre + (size_t)n), v);
    }
  }
  memcpy(buf, "12345678901", 11);
  assert_true(osseg__rle_token_value(buf, 0, 11) == UINT64_MAX);
}

/* ------------------------------------------------------- fast paths --- */

static void test_fast_paths_take_valid_text(void **state) {
  (void)state;
  unsigned levels[2];
  if (fast_levels(levels) == 0) {
    /* At the generic level the public entry must still work: covered by
     * every other test; nothing SIMD to compare here. */
    skip();
  }
  struct test_rng rng;
  test_rng_seed(&rng, 1);
  char *buf = malloc(1 << 16);
  for (int trial = 0; trial < 3000; trial++) {
    size_t target = (size_t)test_rng_below(&rng, trial < 1000 ? 200 : 20000);
    size_t n = make_rle(&rng, buf, target, 2048u * 2048u, trial & 1);
    check_text(buf, n, 2048u * 2048u);
  }
  free(buf);
}

static void test_fast_paths_messy_long_text(void **state) {
  (void)state;
  /* Long texts (many vector groups and windows) of unsorted, overlapping,
   * touching and zero-length runs, with numbers of 1..9 digits. */
  struct test_rng rng;
  test_rng_seed(&rng, 21);
  char *buf = malloc(1 << 17);
  for (int trial = 0; trial < 300; trial++) {
    size_t n = 0, runs = (size_t)test_rng_below(&rng, 4000);
    uint64_t npixels = 1 + test_rng_below(&rng, trial & 1 ? 4194304 : OSSEG_MAX_PIXELS);
    for (size_t i = 0; i < runs; i++) {
      uint64_t start = 1 + test_rng_below(&rng, npixels);
      uint64_t len = test_rng_below(&rng, 5) == 0 ? 0 : test_rng_below(&rng, npixels - start + 2);
      n += (size_t)sprintf(buf + n, "%s%llu%s%llu", i ? " " : "", (unsigned long long)start,
                           test_rng_below(&rng, 9) ? " " : "  ", (unsigned long long)len);
    }
    check_text(buf, n, npixels);
  }
  free(buf);
}

static void test_every_length_and_digit_count(void **state) {
  (void)state;
  /* All texts of length 0..2*64+1 built from numbers of one digit count
   * d = 1..10 with single or double spaces: tokens end at every position
   * of a block and cross the 16/32/64-byte boundaries at every phase. */
  char buf[160];
  for (int d = 1; d <= 10; d++) {
    for (int sep = 1; sep <= 2; sep++) {
      for (size_t len = 0; len <= 129; len++) {
        size_t n = 0, tok = 0;
        while (n < len) {
          if (tok && n < len) {
            for (int s = 0; s < sep && n < len; s++) buf[n++] = ' ';
            continue;
          }
          /* Starts 1 then 9..9 (d digits): always valid for a large
           * image unless d = 10 where the value may be too large. */
          for (int i = 0; i < d && n < len; i++) buf[n++] = (char)(i == 0 ? '1' : '0' + (i % 10));
          tok = 1;
          if (n < len) {
            for (int s = 0; s < sep && n < len; s++) buf[n++] = ' ';
            tok = 0;
          }
        }
        check_text(buf, len, OSSEG_MAX_PIXELS);
      }
    }
  }
}

static void test_alignment_and_guard_page(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 3);
  char tmp[600];
  for (size_t len = 0; len <= 300; len++) {
    size_t n = make_rle(&rng, tmp, len, 2048u * 2048u, (int)(len & 1));
    /* Ends right at a guard page: any read past the end faults. */
    char *g = test_guarded_alloc(n);
    memcpy(g, tmp, n);
    check_text(g, n, 2048u * 2048u);
    /* A token that runs into the guard page. */
    if (n > 0 && g[n - 1] != ' ') check_text(g, n, 2048u * 2048u);
    test_guarded_free(g);
  }
  /* Every alignment of the start (0..63) for one text. */
  size_t n = make_rle(&rng, tmp, 500, 2048u * 2048u, 1);
  char *base = malloc(n + 64);
  for (size_t off = 0; off < 64; off++) {
    memcpy(base + off, tmp, n);
    check_text(base + off, n, 2048u * 2048u);
  }
  free(base);
  /* The very last byte of the text is a digit that ends at the guard page,
   * at every length modulo 64. */
  for (size_t len = 1; len <= 130; len++) {
    char *g = test_guarded_alloc(len);
    memset(g, ' ', len);
    g[len - 1] = '1';
    if (len >= 3) g[0] = '1';
    check_text(g, len, 2048u * 2048u);
    test_guarded_free(g);
  }
}

static void test_invalid_byte_at_every_position(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 11);
  static const unsigned char bad[] = {0, '\t', '\n', '\r', ',', '"', '-', '+', '.', 'a',
                                      '/', ':', 0x7f, 0x80, 0xb0, 0xff};
  char tmp[256];
  size_t n = make_rle(&rng, tmp, 200, 2048u * 2048u, 1);
  for (size_t i = 0; i < n; i++) {
    for (size_t b = 0; b < sizeof bad; b++) {
      char *g = test_guarded_alloc(n);
      memcpy(g, tmp, n);
      g[i] = (char)bad[b];
      check_text(g, n, 2048u * 2048u);
      /* And the fast paths must not accept it. */
      unsigned levels[2];
      unsigned nl = fast_levels(levels);
      struct osseg_run runs[128];
      for (unsigned l = 0; l < nl; l++) {
        struct osseg__rle_sink s = {runs, 0, -1, 0};
        assert_int_equal(run_fast(levels[l], g, n, 2048u * 2048u, &s), -1);
      }
      test_guarded_free(g);
    }
  }
}

static void test_random_junk(void **state) {
  (void)state;
  /* Texts over a small alphabet where every error kind is likely: the
   * public result (runs or message) must be the same at every level. */
  struct test_rng rng;
  test_rng_seed(&rng, 5);
  static const char alphabet[] = "0123456789      0x";
  char buf[300];
  for (int trial = 0; trial < 20000; trial++) {
    size_t len = (size_t)test_rng_below(&rng, 140);
    for (size_t i = 0; i < len; i++)
      buf[i] = alphabet[test_rng_below(&rng, sizeof alphabet - 1)];
    check_text(buf, len, 1 + test_rng_below(&rng, 5000000));
  }
}

/* ----------------------------------------------------------- format --- */

static void test_format_golden(void **state) {
  (void)state;
  char out[256];
  const struct osseg_run v[] = {{0, 3}, {9, 2}, {99, 1}, {4194299, 5}};
  size_t n = osseg_rle_format(v, 4, out);
  assert_int_equal(n, strlen("1 3 10 2 100 1 4194300 5"));
  assert_memory_equal(out, "1 3 10 2 100 1 4194300 5", n);
  assert_int_equal(osseg_rle_format(v, 0, out), 0);
  const struct osseg_run big = {UINT32_MAX - 1, UINT32_MAX};
  n = osseg_rle_format(&big, 1, out);
  assert_true(n <= osseg_rle_format_bound(1));
  assert_memory_equal(out, "4294967295 4294967295", n);
  const struct osseg_run top = {UINT32_MAX, 1}; /* start + 1 needs 33 bits */
  n = osseg_rle_format(&top, 1, out);
  assert_memory_equal(out, "4294967296 1", n);
}

static void test_format_every_digit_count(void **state) {
  (void)state;
  /* Every value below 200000, and both sides of every power of ten up to
   * 2^32, as starts and lengths, against printf. */
  char out[64], want[64];
  uint64_t edges[64];
  size_t ne = 0;
  for (uint64_t p = 10; p <= 10000000000ull; p *= 10) {
    edges[ne++] = p - 1;
    edges[ne++] = p;
    edges[ne++] = p + 1;
  }
  edges[ne++] = UINT32_MAX - 1;
  edges[ne++] = UINT32_MAX;
  for (uint64_t i = 0; i < 200000 + ne; i++) {
    uint64_t v = i < 200000 ? i : edges[i - 200000];
    if (v == 0 || v > UINT32_MAX) continue;
    struct osseg_run r = {(uint32_t)(v - 1), (uint32_t)v};
    memset(out, 'x', sizeof out);
    size_t n = osseg_rle_format(&r, 1, out);
    int wn = snprintf(want, sizeof want, "%llu %llu", (unsigned long long)v, (unsigned long long)v);
    assert_int_equal(n, wn);
    assert_memory_equal(out, want, n);
    /* Nothing written past the bound. */
    for (size_t k = osseg_rle_format_bound(1); k < sizeof out; k++) assert_int_equal(out[k], 'x');
  }
  /* The same values in lists of 1..9 runs, so the vector formatter (four
   * runs per step) sees every value in every lane, starts and lengths
   * mixed, and hands over to the scalar one mid-list at big values. */
  struct osseg_run runs[9];
  char text[9 * 22 + 8], expect[9 * 22 + 8];
  uint64_t k = 0;
  for (uint64_t i = 0; i < 200000 + ne; i++) {
    uint64_t v = i < 200000 ? i : edges[i - 200000];
    if (v == 0 || v > UINT32_MAX) continue;
    size_t nr = 1 + (size_t)(k % 9), w = 0;
    for (size_t j = 0; j < nr; j++, k++) {
      uint64_t a = j & 1 ? v : 1 + (v * 7 + j) % 99999999, b = j & 2 ? v : (v + j) % 1000 + 1;
      runs[j].start = (uint32_t)(a - 1);
      runs[j].len = (uint32_t)b;
      w += (size_t)sprintf(expect + w, j ? " %llu %llu" : "%llu %llu", (unsigned long long)a,
                           (unsigned long long)b);
    }
    size_t n = osseg_rle_format(runs, nr, text);
    assert_true(n <= osseg_rle_format_bound(nr));
    if (n != w || memcmp(text, expect, n) != 0)
      fail_msg("got '%.*s', expected '%s'", (int)n, text, expect);
  }
}

static void test_format_roundtrip(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 9);
  struct osseg_runs in = {0}, back = {0};
  for (int trial = 0; trial < 2000; trial++) {
    in.n = 0;
    uint64_t pos = 0;
    size_t n = (size_t)test_rng_below(&rng, 300);
    for (size_t i = 0; i < n; i++) {
      /* Gaps and lengths of every magnitude: every digit count. */
      uint64_t gap = 1 + test_rng_below(&rng, (uint64_t)1 << test_rng_below(&rng, 26));
      uint64_t len = 1 + test_rng_below(&rng, (uint64_t)1 << test_rng_below(&rng, 26));
      if (pos + gap + len > OSSEG_MAX_PIXELS) break;
      assert_int_equal(osseg_runs_push(&in, (uint32_t)(pos + gap), (uint32_t)len), 0);
      pos += gap + len;
    }
    char *text = malloc(osseg_rle_format_bound(in.n) + 1);
    size_t tl = osseg_rle_format(in.v, in.n, text);
    assert_true(tl <= osseg_rle_format_bound(in.n));
    char *check = malloc(tl + 1);
    {
      /* Cross-check against printf. */
      size_t k = 0;
      for (size_t i = 0; i < in.n; i++)
        k += (size_t)sprintf(check + k, i ? " %u %u" : "%u %u", in.v[i].start + 1, in.v[i].len);
      assert_int_equal(k, tl);
      assert_memory_equal(check, text, tl);
    }
    back.n = 0;
    struct osseg_diag d;
    osseg_diag_clear(&d);
    assert_int_equal(osseg_rle_parse(text, tl, OSSEG_MAX_PIXELS, &back, &d), 0);
    assert_int_equal(back.n, in.n);
    if (in.n) assert_memory_equal(back.v, in.v, in.n * sizeof *in.v);
    free(text);
    free(check);
  }
  osseg_runs_free(&in);
  osseg_runs_free(&back);
}

static void test_alloc_failure(void **state) {
  (void)state;
  /* The only allocation is the output growth: failing it must leave the
   * list as it was and say so. */
  struct osseg_runs r = {0};
  struct osseg_diag d;
  osseg_diag_clear(&d);
  osseg__alloc_fail_at(1);
  int rc = osseg_rle_parse("1 2 5 1", 7, 16, &r, &d);
  osseg__alloc_fail_at(0);
  assert_int_equal(rc, OSSEG_ENOMEM);
  assert_int_equal(r.n, 0);
  assert_int_equal(osseg_rle_parse("1 2 5 1", 7, 16, &r, NULL), 0);
  assert_int_equal(r.n, 2);
  osseg_runs_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden),
      cmocka_unit_test(test_messy_runs_are_canonicalised),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_token_value_every_digit_count),
      cmocka_unit_test(test_fast_paths_take_valid_text),
      cmocka_unit_test(test_fast_paths_messy_long_text),
      cmocka_unit_test(test_every_length_and_digit_count),
      cmocka_unit_test(test_alignment_and_guard_page),
      cmocka_unit_test(test_invalid_byte_at_every_position),
      cmocka_unit_test(test_random_junk),
      cmocka_unit_test(test_format_golden),
      cmocka_unit_test(test_format_every_digit_count),
      cmocka_unit_test(test_format_roundtrip),
      cmocka_unit_test(test_alloc_failure),
  };
  printf("rle: cpu features: %s\n", osseg_cpu_features_string());
  return cmocka_run_group_tests(tests, NULL, NULL);
}
